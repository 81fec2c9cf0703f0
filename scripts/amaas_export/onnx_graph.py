"""onnx_graph - an ONNX model to a graph model (format_version 2).

docs/MODEL_FORMAT.md, "Graph models (format_version 2)" is the format and
"From ONNX" the translation.  The ONNX file is read here, with the onnx
package (the worker never sees protobuf), checked with onnx.checker, and
turned into the format's nodes in four steps:

  1. translate: each ONNX node becomes zero or more amaas nodes (initializers
     and Constant nodes become constants, Identity and Dropout aliases, every
     integer type INT64 and every float type FP32);
  2. fold: a node whose inputs are all constants is computed here with numpy
     and becomes a constant;
  3. fuse: MatMul with a constant 2-D weight (and a following bias Add) into
     gemm, a following activation into the gemm's or conv's, Conv +
     BatchNormalization into one conv, the erf GELU pattern into gelu, the
     layer-norm pattern of opsets < 17 into layer_norm, a Transpose of the
     last two axes into matmul's trans_a / trans_b;
  4. prune what no output reads, check, and write with every constant's
     bytes at a 64-byte file offset.

    translate_onnx(path) -> Graph; encode_graph(graph, name, version) -> bytes

Anything the format cannot compute is refused with Refused (one line naming
the node and its op).
"""

import math
import os

from .common import AlignedWriter, Refused

OPSET_MIN, OPSET_MAX = 11, 17
MAX_INPUTS, MAX_OUTPUTS, MAX_CONSTANTS, MAX_NODES = 16, 8, 65536, 4096
MAX_DIMS = 8
MAX_ELEMENTS = 1 << 31
TENSOR_NAME_MAX, DIM_NAME_MAX, NODE_NAME_MAX = 127, 31, 255
FLT_MAX = 3.4028234663852886e38

SUPPORTED = (
    "Gemm, MatMul, Add, Sub, Mul, Div, Pow, Sqrt, Reciprocal, Neg, Exp, Relu, LeakyRelu, "
    "Tanh, Sigmoid, Erf, Gelu, Softmax, LogSoftmax, LayerNormalization, BatchNormalization, "
    "Conv (2-D), MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape, Transpose, "
    "Squeeze, Unsqueeze, Concat, Split, Slice, Gather, ReduceMean, Expand, Range, Shape, "
    "Constant, ConstantOfShape, Where, Equal, Cast, ArgMax, Identity, Dropout")

#  ONNX TensorProto data types -> amaas datatypes (None: refused)
_ONNX_TYPES = {1: "FP32", 2: "INT64", 3: "INT64", 4: "INT64", 5: "INT64", 6: "INT64",
               7: "INT64", 9: "BOOL", 10: "FP32", 11: "FP32", 12: "INT64", 13: "INT64",
               16: "FP32"}
_ONNX_TYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128"}
_NP = {"FP32": "<f4", "INT64": "<i8", "BOOL": "u1"}
_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu")
_ELEMENTWISE = ("sqrt", "reciprocal", "tanh", "sigmoid", "erf", "exp", "relu", "leaky_relu",
                "gelu", "softmax", "log_softmax", "layer_norm", "batch_norm", "global_avg_pool")
_STATIC_SLOTS = {"reshape": (1,), "squeeze": (1,), "unsqueeze": (1,), "split": (1,),
                 "slice": (1, 2, 3, 4), "expand": (1,), "range": (0, 1, 2),
                 "constant_of_shape": (0,)}


def _np():
    import numpy
    return numpy


def _contig(arr, dtype=None):
    """arr as a C-contiguous array of dtype, keeping rank 0 (which
    numpy.ascontiguousarray makes 1-D)."""
    return _np().array(arr, dtype=dtype, order="C", copy=False)


class Node:
    """One amaas node: op, input and output names, ONNX name, attributes."""

    __slots__ = ("op", "inputs", "outputs", "name", "attrs")

    def __init__(self, op, inputs, outputs, name, attrs):
        self.op, self.inputs, self.outputs, self.name, self.attrs = op, inputs, outputs, name, attrs

    def __repr__(self):
        return "Node(%s %s -> %s %s)" % (self.op, self.inputs, self.outputs, self.attrs)


class Graph:
    """The translated graph: inputs [(name, datatype, dims)], outputs [(name,
    datatype, dims)], constants {name: ndarray}, nodes [Node], datatypes and
    (where ONNX's shape inference knows them) shapes of tensors."""

    def __init__(self):
        self.inputs, self.outputs, self.nodes = [], [], []
        self.consts = {}
        self.dtypes = {}
        self.shapes = {}          # name -> [int or str or None, ...] (ONNX's inference)
        self.ranks, self.lengths = {}, {}
        self.source = ""
        self._n = 0

    def new_name(self, hint):
        while True:
            self._n += 1
            name = "amaas/%s_%d" % (hint, self._n)
            if name not in self.dtypes:
                return name

    def rank(self, name):
        if name in self.consts:
            return self.consts[name].ndim
        if name in self.ranks:
            return self.ranks[name]
        s = self.shapes.get(name)
        return None if s is None else len(s)

    def length(self, name):
        """The number of elements of a 1-D tensor, when known."""
        if name in self.consts:
            c = self.consts[name]
            return c.size if c.ndim == 1 else None
        return self.lengths.get(name)

    def infer(self, n):
        """Records the rank of n's outputs (and the length of 1-D INT64 ones) where
        it follows from the ranks of its inputs: ONNX's shape inference does not
        follow reshapes to shapes computed at run time."""
        r = [self.rank(i) if i else None for i in n.inputs]
        op, a = n.op, n.attrs
        rank = length = None
        known = all(v is not None for v in r)
        if op in ("add", "sub", "mul", "div", "pow", "equal", "where", "matmul"):
            rank = max(r) if known else None
            if op != "matmul" and rank == 1 and known:
                lens = [self.length(i) if self.rank(i) == 1 else 1 for i in n.inputs]
                length = max(lens) if None not in lens else None
        elif op in ("conv", "max_pool", "avg_pool"):
            rank = 4
        elif op == "reduce_mean":
            if r[0] is not None:
                rank = r[0] if a.get("keepdims", True) else (
                    0 if a.get("axes") is None else r[0] - len(a["axes"]))
        elif op == "argmax":
            rank = None if r[0] is None else r[0] - (0 if a.get("keepdims", True) else 1)
        elif op in ("reshape", "constant_of_shape"):
            rank = self.length(n.inputs[-1])
        elif op == "flatten":
            rank = 2
        elif op in ("squeeze", "unsqueeze"):
            k = self.length(n.inputs[1]) if len(n.inputs) > 1 and n.inputs[1] else None
            if r[0] is not None and k is not None:
                rank = r[0] - k if op == "squeeze" else r[0] + k
                if rank == 1 and op == "unsqueeze" and r[0] == 0:
                    length = 1
        elif op == "gather":
            if r[0] is not None and r[1] is not None:
                rank = r[0] - 1 + r[1]
                if rank == 1 and r[0] == 1:
                    length = self.length(n.inputs[1])
        elif op == "expand":
            k = self.length(n.inputs[1])
            rank = None if r[0] is None or k is None else max(r[0], k)
        elif op == "range":
            rank = 1
        elif op == "shape":
            rank = 1
            if r[0] is not None:
                st, en = a.get("start", 0), a.get("end", r[0])
                st = min(max(st + r[0] if st < 0 else st, 0), r[0])
                en = min(max(en + r[0] if en < 0 else en, 0), r[0])
                length = max(en - st, 0)
        elif op == "concat":
            rank = r[0]
            if rank == 1 and known:
                lens = [self.length(i) for i in n.inputs]
                length = sum(lens) if None not in lens else None
        elif op in ("gemm", "cast", "identity", "neg", "slice", "split", "transpose") \
                or op in _ELEMENTWISE:
            rank = r[0]
            if op in ("cast", "identity", "neg") and rank == 1:
                length = self.length(n.inputs[0])
        for o in n.outputs:
            if rank is not None:
                self.ranks[o] = rank
            if length is not None:
                self.lengths[o] = length

    def add_const(self, value, hint="const", name=None):
        np = _np()
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            dt = "FP32"
        elif arr.dtype.kind in "iu":
            dt = "INT64"
        elif arr.dtype.kind == "b":
            dt = "BOOL"
        else:
            raise Refused("constant %s has numpy type %s, which the format does not hold"
                          % (name or hint, arr.dtype))
        name = name or self.new_name(hint)
        self.consts[name] = _contig(arr, dtype=_NP[dt])
        self.dtypes[name] = dt
        return name


def _node_what(onnx_node):
    return "node '%s' (%s)" % (onnx_node.name or (onnx_node.output[0] if onnx_node.output
                                                   else "?"), onnx_node.op_type)


# ---------------------------------------------------------------------------
#  Numpy computation of the amaas ops on constants (folding)

def _fold(node, vals):
    """The outputs of node computed from its constant inputs, or None when the
    op is not folded here (it then stays a node; the worker computes it once
    per plan as a static tensor)."""
    np = _np()
    op, a = node.op, node.attrs
    x = vals[0] if vals else None

    def ax(axis, rank):
        return axis + rank if axis < 0 else axis

    with np.errstate(all="ignore"):
        if op in ("add", "sub", "mul"):
            return [{"add": np.add, "sub": np.subtract, "mul": np.multiply}[op](x, vals[1])]
        if op == "div":
            if x.dtype.kind == "f":
                return [x / vals[1]]
            b = vals[1]
            q = np.where(b == 0, 0, np.abs(x) // np.where(b == 0, 1, np.abs(b)))
            return [(np.sign(x) * np.sign(b) * q).astype(np.int64)]
        if op == "pow":
            return [np.power(x, vals[1])]
        if op == "equal":
            return [np.equal(x, vals[1])]
        if op == "where":
            return [np.where(x, vals[1], vals[2])]
        if op in ("sqrt", "reciprocal", "tanh", "exp", "neg", "relu", "identity", "sigmoid"):
            f = {"sqrt": np.sqrt, "reciprocal": lambda v: 1 / v, "tanh": np.tanh, "exp": np.exp,
                 "neg": np.negative, "relu": lambda v: np.maximum(v, 0),
                 "identity": np.copy, "sigmoid": lambda v: 1 / (1 + np.exp(-v))}[op]
            return [f(x)]
        if op == "erf":
            return [np.vectorize(math.erf, otypes=[np.float64])(x)]
        if op == "cast":
            to = a["to"]
            if to == "INT64" and x.dtype.kind == "f":
                y = np.nan_to_num(np.trunc(x.astype(np.float64)), nan=0.0)
                return [np.clip(y, -2.0 ** 63, 2.0 ** 63 - 1024).astype(np.int64)]
            if to == "BOOL":
                return [x != 0]
            return [x.astype(_NP[to])]
        if op == "reshape":
            shape = [int(v) for v in vals[1]]
            if not a.get("allowzero"):
                shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return [x.reshape(shape)]
        if op == "flatten":
            k = a.get("axis", 1)
            k = ax(k, x.ndim)
            return [x.reshape(int(np.prod(x.shape[:k])), int(np.prod(x.shape[k:])))]
        if op == "transpose":
            return [np.transpose(x, a.get("perm"))]
        if op == "squeeze":
            if len(vals) > 1 and vals[1] is not None:
                return [np.squeeze(x, tuple(ax(int(v), x.ndim) for v in vals[1]))]
            return [np.squeeze(x)]
        if op == "unsqueeze":
            r = x.ndim + len(vals[1])
            y = x
            for v in sorted(ax(int(v), r) for v in vals[1]):
                y = np.expand_dims(y, v)
            return [y]
        if op == "concat":
            return [np.concatenate(vals, axis=a["axis"])]
        if op == "gather":
            axis = ax(a.get("axis", 0), x.ndim)
            idx = vals[1]
            if np.any(idx < -x.shape[axis]) or np.any(idx >= x.shape[axis]):
                return None          # the run reports it
            return [np.take(x, np.where(idx < 0, idx + x.shape[axis], idx), axis=axis)]
        if op == "slice":
            starts, ends = vals[1], vals[2]
            axes = vals[3] if len(vals) > 3 and vals[3] is not None else range(len(starts))
            steps = vals[4] if len(vals) > 4 and vals[4] is not None else [1] * len(starts)
            sl = [slice(None)] * x.ndim
            for s, e, axis, st in zip(starts, ends, axes, steps):
                axis = ax(int(axis), x.ndim)
                n = x.shape[axis]
                s, e, st = int(s), int(e), int(st)
                s = s + n if s < 0 else s
                e = e + n if e < 0 else e
                if st > 0:
                    s, e = min(max(s, 0), n), min(max(e, 0), n)
                else:
                    s, e = min(max(s, -1), n - 1), min(max(e, -1), n - 1)
                sl[axis] = slice(s, e if e >= 0 else None, st)
            return [x[tuple(sl)]]
        if op == "expand":
            shape = np.broadcast_shapes(x.shape, tuple(int(v) for v in vals[1]))
            return [np.broadcast_to(x, shape).copy()]
        if op == "range":
            start, limit, delta = (v.reshape(()) for v in vals)
            n = max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)
            return [(start + np.arange(n, dtype=start.dtype) * delta).astype(start.dtype)]
        if op == "shape":
            s = list(x.shape)
            r = len(s)
            st, en = a.get("start", 0), a.get("end", r)
            st = min(max(st + r if st < 0 else st, 0), r)
            en = min(max(en + r if en < 0 else en, 0), r)
            return [np.array(s[st:en], np.int64)]
        if op == "constant_of_shape":
            return [np.full([int(v) for v in x], a.get("value", 0), _NP[a.get("datatype", "FP32")])]
        if op == "reduce_mean":
            axes = a.get("axes")
            return [np.mean(x, axis=None if axes is None else tuple(axes),
                            keepdims=a.get("keepdims", True), dtype=np.float64)]
        if op == "split":
            axis = ax(a.get("axis", 0), x.ndim)
            if len(vals) > 1 and vals[1] is not None:
                cuts = np.cumsum([int(v) for v in vals[1]])[:-1]
            else:
                n = len(node.outputs)
                if x.shape[axis] % n:
                    return None
                cuts = [x.shape[axis] // n * i for i in range(1, n)]
            return np.split(x, cuts, axis=axis)
    return None


_FOLDED = ("add", "sub", "mul", "div", "pow", "equal", "where", "sqrt", "reciprocal", "tanh",
           "exp", "neg", "relu", "identity", "sigmoid", "erf", "cast", "reshape", "flatten",
           "transpose", "squeeze", "unsqueeze", "concat", "gather", "slice", "expand", "range",
           "shape", "constant_of_shape", "reduce_mean", "split")


# ---------------------------------------------------------------------------
#  ONNX -> amaas nodes

class _Translator:
    def __init__(self, model):
        self.model = model
        self.g = Graph()
        self.alias = {}                 # ONNX name -> amaas name
        self.opset = None
        self.where = None

    #  -- helpers
    def refuse(self, msg):
        raise Refused("%s: %s" % (self.where, msg))

    def name(self, onnx_name):
        while onnx_name in self.alias:
            onnx_name = self.alias[onnx_name]
        return onnx_name

    def inp(self, n, i):
        """The amaas name of input i of ONNX node n, or "" when absent."""
        if i >= len(n.input) or n.input[i] == "":
            return ""
        return self.name(n.input[i])

    def const(self, name):
        return self.g.consts.get(name) if name else None

    def need_const(self, name, what):
        v = self.const(name)
        if v is None:
            self.refuse("%s must be a constant" % what)
        return v

    def dtype(self, name):
        return self.g.dtypes[name]

    def emit(self, op, inputs, outputs, **attrs):
        g = self.g
        for i in inputs:
            if i and i not in g.dtypes:
                self.refuse("input %r is not defined before the node" % i)
        dts = [g.dtypes[i] if i else None for i in inputs]
        if op == "equal":
            out = ["BOOL"]
        elif op == "cast":
            out = [attrs["to"]]
        elif op in ("shape", "argmax"):
            out = ["INT64"]
        elif op == "constant_of_shape":
            out = [attrs.get("datatype", "FP32")]
        elif op == "where":
            out = [dts[1]]
        else:
            out = [dts[0]] * len(outputs)
        for o, dt in zip(outputs, out):
            if o in g.dtypes:
                self.refuse("tensor %r is defined twice" % o)
            g.dtypes[o] = dt
        node = Node(op, list(inputs), list(outputs), self.node_name, attrs)
        g.nodes.append(node)
        g.infer(node)
        return node

    def tmp(self, hint):
        return self.g.new_name(hint)

    def out(self, n, i=0):
        return n.output[i]

    def used(self, onnx_name):
        return onnx_name in self.readers or onnx_name in self.graph_outputs

    def float_inputs(self, n, names, what="input"):
        for nm in names:
            if nm and self.dtype(nm) != "FP32":
                self.refuse("%s %r is %s; this op takes FP32" % (what, nm, self.dtype(nm)))

    def same_types(self, names):
        dts = {self.dtype(x) for x in names if x}
        if len(dts) > 1:
            self.refuse("inputs of different datatypes (%s)" % ", ".join(sorted(dts)))

    def as_int64(self, name):
        """An integer tensor input (already INT64: every integer type is)."""
        if name and self.dtype(name) != "INT64":
            self.refuse("%r is %s; an INT64 tensor is needed" % (name, self.dtype(name)))
        return name

    #  -- reading the model
    def check_opset(self):
        for imp in self.model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                self.opset = imp.version
        if self.opset is None:
            raise Refused("the model imports no opset of the default ONNX domain")
        if not OPSET_MIN <= self.opset <= OPSET_MAX:
            raise Refused("the model uses opset %d of the default ONNX domain; amaas takes "
                          "opsets %d to %d (re-export with opset_version=%d, for example)"
                          % (self.opset, OPSET_MIN, OPSET_MAX, 13 if self.opset < 11 else 17))

    def run(self):
        import onnx
        model = self.model
        g = self.g
        self.check_opset()
        graph = model.graph
        g.source = "ONNX opset %d%s%s" % (
            self.opset, ", from %s %s" % (model.producer_name, model.producer_version)
            if model.producer_name else "", ": graph %s" % graph.name if graph.name else "")
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
            infos = list(inferred.graph.value_info) + list(inferred.graph.output)
        except Exception:
            infos = []
        for vi in list(graph.input) + infos:
            t = vi.type.tensor_type
            if t.HasField("shape"):
                g.shapes[vi.name] = [d.dim_value if d.HasField("dim_value")
                                     else (d.dim_param or None) for d in t.shape.dim]

        for init in graph.initializer:
            self.where = "initializer '%s'" % init.name
            g.add_const(self._tensor(init), name=init.name)
        for sp in graph.sparse_initializer:
            raise Refused("sparse initializer '%s': sparse tensors are not supported"
                          % sp.values.name)
        self._inputs(graph)
        self.readers = {}
        for n in graph.node:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in graph.output}
        for n in graph.node:
            self.where = _node_what(n)
            self.node_name = (n.name or n.output[0])[:NODE_NAME_MAX] if n.output else n.name
            if n.domain not in ("", "ai.onnx"):
                self.unsupported(n)
            f = getattr(self, "op_" + n.op_type, None)
            if f is None:
                self.unsupported(n)
            for i in n.input:
                if i and self.name(i) not in g.dtypes:
                    self.refuse("input %r is not defined before the node" % i)
            f(n, {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
        self._outputs(graph)
        return g

    def unsupported(self, n):
        raise Refused("%s is not supported; amaas takes: %s" % (_node_what(n), SUPPORTED))

    def _tensor(self, t):
        import onnx.numpy_helper
        if t.data_type not in _ONNX_TYPES:
            self.refuse("tensor of type %s, which amaas does not hold"
                        % _ONNX_TYPE_NAMES.get(t.data_type, t.data_type))
        arr = onnx.numpy_helper.to_array(t)
        return self._fix(arr)

    def _fix(self, arr):
        """arr in an amaas datatype; a float ±inf becomes ±FLT_MAX, NaN is refused."""
        np = _np()
        arr = np.asarray(arr)
        if arr.dtype.kind == "f":
            if np.any(np.isnan(arr)):
                self.refuse("a constant holds NaN")
            arr = np.clip(arr.astype(np.float64), -FLT_MAX, FLT_MAX).astype(np.float32)
        elif arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and np.any(arr >= 1 << 63):
            self.refuse("a UINT64 constant beyond INT64")
        return arr

    def _inputs(self, graph):
        g = self.g
        inits = {t.name for t in graph.initializer}
        real = [vi for vi in graph.input if vi.name not in inits]
        if not 1 <= len(real) <= MAX_INPUTS:
            raise Refused("the graph has %d inputs; amaas takes 1 to %d" % (len(real), MAX_INPUTS))
        self.dim_names = {}
        self.batch = None
        for vi in real:
            self.where = "input '%s'" % vi.name
            _check_io_name(vi.name, "input")
            t = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                self.refuse("not a tensor")
            dt = _ONNX_TYPES.get(t.elem_type)
            if dt not in ("FP32", "INT64"):
                self.refuse("its datatype %s is not taken: graph inputs are FP32 or INT64 "
                            "(or an integer or float type, read as those)"
                            % _onnx_type_name(t.elem_type))
            if not t.HasField("shape") or not 1 <= len(t.shape.dim) <= MAX_DIMS:
                self.refuse("an input needs a shape of 1 to %d dimensions" % MAX_DIMS)
            dims = [self._dim(d, i == 0) for i, d in enumerate(t.shape.dim)]
            g.inputs.append((vi.name, dt, dims))
            g.dtypes[vi.name] = dt
            g.shapes[vi.name] = dims

    def _dim(self, d, first):
        """A dimension of an input or output: an int, or a name."""
        if first:
            if self.batch is None:
                p = d.dim_param if d.HasField("dim_param") else ""
                self.batch = p if _dim_name_ok(p) else "batch"
            return self.batch
        if d.HasField("dim_value") and d.dim_value > 0:
            if d.dim_value > 1 << 24:
                self.refuse("dimension %d is above 2^24" % d.dim_value)
            return int(d.dim_value)
        p = d.dim_param if d.HasField("dim_param") else ""
        if p and p in self.dim_names:
            return self.dim_names[p]
        if p == self.batch and p:
            return p
        name = p if _dim_name_ok(p) else "dim_%d" % (len(self.dim_names) + 1)
        if p:
            self.dim_names[p] = name
        else:
            self.dim_names["\0%d" % len(self.dim_names)] = name
        return name

    def _outputs(self, graph):
        g = self.g
        if not 1 <= len(graph.output) <= MAX_OUTPUTS:
            raise Refused("the graph has %d outputs; amaas takes 1 to %d"
                          % (len(graph.output), MAX_OUTPUTS))
        for vo in graph.output:
            self.where = "output '%s'" % vo.name
            _check_io_name(vo.name, "output")
            self.node_name = vo.name
            src = self.name(vo.name)
            if src in g.consts:
                self.refuse("the output is a constant: its first dimension cannot be the batch")
            dt = g.dtypes[src]
            if dt == "BOOL":
                self.refuse("the output is BOOL: outputs are FP32 or INT64 (cast it)")
            if src != vo.name:
                self.emit("identity", [src], [vo.name])
            t = vo.type.tensor_type
            shape = None
            if t.HasField("shape") and len(t.shape.dim) > 0:
                shape = t.shape.dim
            else:
                inferred = g.shapes.get(vo.name)
                if inferred:
                    import onnx
                    shape = []
                    for v in inferred:
                        d = onnx.TensorShapeProto.Dimension()
                        if isinstance(v, int):
                            d.dim_value = v
                        elif v:
                            d.dim_param = v
                        shape.append(d)
            if not shape:
                self.refuse("the output's rank is not known (give it a shape in the ONNX "
                            "graph): its first dimension must be the batch")
            if len(shape) > MAX_DIMS:
                self.refuse("the output has %d dimensions; at most %d" % (len(shape), MAX_DIMS))
            g.outputs.append((vo.name, dt, [self._dim(d, i == 0) for i, d in enumerate(shape)]))

    #  -- aliases and constants
    def op_Identity(self, n, a):
        self.alias[n.output[0]] = self.inp(n, 0)

    def op_Dropout(self, n, a):
        if len(n.output) > 1 and n.output[1] and self.used(n.output[1]):
            self.refuse("its mask output is used; amaas computes inference only")
        if len(n.input) > 2 and n.input[2]:
            t = self.const(self.inp(n, 2))
            if t is None or bool(t.reshape(-1)[0]):
                self.refuse("training_mode must be a constant false")
        self.alias[n.output[0]] = self.inp(n, 0)

    def op_Constant(self, n, a):
        np = _np()
        if "value" in a:
            arr = self._tensor(a["value"])
        elif "value_float" in a:
            arr = np.array(a["value_float"], np.float32)
        elif "value_floats" in a:
            arr = np.array(a["value_floats"], np.float32)
        elif "value_int" in a:
            arr = np.array(a["value_int"], np.int64)
        elif "value_ints" in a:
            arr = np.array(a["value_ints"], np.int64)
        else:
            self.refuse("only numeric Constant values (value, value_float(s), value_int(s)) "
                        "are supported")
        self.g.add_const(self._fix(arr), name=n.output[0])

    #  -- elementwise
    def _binary(self, op, n):
        a, b = self.inp(n, 0), self.inp(n, 1)
        self.same_types([a, b])
        if self.dtype(a) == "BOOL":
            self.refuse("BOOL inputs are not taken (cast them)")
        self.emit(op, [a, b], [self.out(n)])

    def op_Add(self, n, a):
        self._binary("add", n)

    def op_Sub(self, n, a):
        self._binary("sub", n)

    def op_Mul(self, n, a):
        self._binary("mul", n)

    def op_Div(self, n, a):
        self._binary("div", n)

    def op_Pow(self, n, a):
        x, e = self.inp(n, 0), self.inp(n, 1)
        self.float_inputs(n, [x], "base")
        if self.dtype(e) != "FP32":
            c = self.const(e)
            if c is not None:
                e = self.g.add_const(c.astype(_NP["FP32"]), "exponent")
            else:
                t = self.tmp("exponent")
                self.emit("cast", [e], [t], to="FP32")
                e = t
        self.emit("pow", [x, e], [self.out(n)])

    def _unary(self, op, n, floats=True, **attrs):
        x = self.inp(n, 0)
        if floats:
            self.float_inputs(n, [x])
        elif self.dtype(x) == "BOOL":
            self.refuse("BOOL input is not taken")
        self.emit(op, [x], [self.out(n)], **attrs)

    def op_Sqrt(self, n, a):
        self._unary("sqrt", n)

    def op_Reciprocal(self, n, a):
        self._unary("reciprocal", n)

    def op_Neg(self, n, a):
        self._unary("neg", n, floats=False)

    def op_Exp(self, n, a):
        self._unary("exp", n)

    def op_Relu(self, n, a):
        self._unary("relu", n)

    def op_LeakyRelu(self, n, a):
        self._unary("leaky_relu", n, alpha=float(a.get("alpha", 0.01)))

    def op_Tanh(self, n, a):
        self._unary("tanh", n)

    def op_Sigmoid(self, n, a):
        self._unary("sigmoid", n)

    def op_Erf(self, n, a):
        self._unary("erf", n)

    def op_Gelu(self, n, a):
        approx = a.get("approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        if approx not in ("none", "tanh"):
            self.refuse("approximate=%r; amaas takes none or tanh" % approx)
        self._unary("gelu", n, approximate=approx)

    def _softmax(self, op, n, a):
        x = self.inp(n, 0)
        self.float_inputs(n, [x])
        if self.opset >= 13:
            self.emit(op, [x], [self.out(n)], axis=int(a.get("axis", -1)))
            return
        #  opsets < 13: over the dimensions axis .. last, flattened
        axis = int(a.get("axis", 1))
        r = self.g.rank(x)
        if r is not None:
            axis = axis + r if axis < 0 else axis
            if axis == r - 1:
                self.emit(op, [x], [self.out(n)], axis=-1)
                return
        elif axis == -1:
            self.emit(op, [x], [self.out(n)], axis=-1)
            return
        if r is None and axis < 0:
            self.refuse("axis %d of an input of unknown rank" % axis)
        flat, y, shape = self.tmp("flat"), self.tmp(op), self.tmp("shape")
        self.emit("flatten", [x], [flat], axis=axis)
        self.emit(op, [flat], [y], axis=-1)
        self.emit("shape", [x], [shape])
        self.emit("reshape", [y, shape], [self.out(n)])

    def op_Softmax(self, n, a):
        self._softmax("softmax", n, a)

    def op_LogSoftmax(self, n, a):
        self._softmax("log_softmax", n, a)

    def op_Equal(self, n, a):
        x, y = self.inp(n, 0), self.inp(n, 1)
        self.same_types([x, y])
        self.emit("equal", [x, y], [self.out(n)])

    def op_Where(self, n, a):
        c, x, y = self.inp(n, 0), self.inp(n, 1), self.inp(n, 2)
        if self.dtype(c) != "BOOL":
            self.refuse("the condition is %s, not BOOL" % self.dtype(c))
        self.same_types([x, y])
        if self.dtype(x) == "BOOL":
            self.refuse("BOOL values are not taken (cast them)")
        self.emit("where", [c, x, y], [self.out(n)])

    def op_Cast(self, n, a):
        x = self.inp(n, 0)
        to = _ONNX_TYPES.get(a.get("to"))
        if to is None:
            self.refuse("cast to %s: amaas holds FP32, INT64 and BOOL"
                        % _onnx_type_name(a.get("to")))
        if to == self.dtype(x):
            self.alias[n.output[0]] = x
        else:
            self.emit("cast", [x], [self.out(n)], to=to)

    def op_ArgMax(self, n, a):
        x = self.inp(n, 0)
        if self.dtype(x) != "FP32":
            t = self.tmp("argmax_input")
            self.emit("cast", [x], [t], to="FP32")
            x = t
        self.emit("argmax", [x], [self.out(n)], axis=int(a.get("axis", 0)),
                  keepdims=bool(a.get("keepdims", 1)),
                  select_last_index=bool(a.get("select_last_index", 0)))

    #  -- normalisation
    def op_LayerNormalization(self, n, a):
        if any(o and self.used(o) for o in n.output[1:]):
            self.refuse("its Mean and InvStdDev outputs are not computed by amaas")
        x, s, b = self.inp(n, 0), self.inp(n, 1), self.inp(n, 2)
        self.float_inputs(n, [x, s, b])
        self.emit("layer_norm", [x, s, b], [self.out(n)], axis=int(a.get("axis", -1)),
                  epsilon=float(a.get("epsilon", 1e-5)))

    def op_BatchNormalization(self, n, a):
        if a.get("training_mode", 0):
            self.refuse("training_mode=1: amaas computes inference only")
        if any(o and self.used(o) for o in n.output[1:]):
            self.refuse("its running mean and variance outputs are not computed by amaas")
        ins = [self.inp(n, i) for i in range(5)]
        for i, what in zip(ins[1:], ("scale", "B", "input_mean", "input_var")):
            self.need_const(i, what)
        self.float_inputs(n, ins)
        self.emit("batch_norm", ins, [self.out(n)], epsilon=float(a.get("epsilon", 1e-5)))

    #  -- linear algebra
    def op_MatMul(self, n, a):
        x, w = self.inp(n, 0), self.inp(n, 1)
        self.float_inputs(n, [x, w])
        rx, rw = self.g.rank(x), self.g.rank(w)
        y = self.out(n)
        if rx == 1:
            t = self.tmp("unsqueezed")
            self.emit("unsqueeze", [x, self.g.add_const([0], "axes")], [t])
            x = t
        if rw == 1:
            t = self.tmp("unsqueezed")
            self.emit("unsqueeze", [w, self.g.add_const([-1], "axes")], [t])
            w = t
        if rx == 1 or rw == 1:
            t = self.tmp("matmul")
            self.emit("matmul", [x, w], [t])
            axes = ([-2] if rx == 1 else []) + ([-1] if rw == 1 else [])
            if rx == 1 and rw == 1:
                axes = [-2, -1]
            self.emit("squeeze", [t, self.g.add_const(axes, "axes")], [y])
        else:
            self.emit("matmul", [x, w], [y])

    def op_Gemm(self, n, a):
        np = _np()
        A, B, C = self.inp(n, 0), self.inp(n, 1), self.inp(n, 2)
        self.float_inputs(n, [A, B, C])
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        ta, tb = bool(a.get("transA", 0)), bool(a.get("transB", 0))
        y = self.out(n)
        if ta:
            t = self.tmp("transposed")
            self.emit("transpose", [A], [t], perm=[1, 0])
            A = t
        Bc, Cc = self.const(B), self.const(C)
        if Bc is not None and Bc.ndim == 2:
            w = (Bc.T if tb else Bc).astype(np.float64) * alpha
            N = w.shape[1]
            bias = ""
            if C and Cc is not None and Cc.size in (1, N) and (Cc.ndim < 2 or Cc.shape[0] == 1):
                bias = self.g.add_const((np.broadcast_to(Cc.reshape(-1), (N,)).astype(np.float64)
                                         * beta).astype(np.float32), "bias")
                C = ""
            wname = self.g.add_const(w.astype(np.float32), "weights")
            if not C:
                self.emit("gemm", [A, wname, bias], [y])
                return
            t = self.tmp("gemm")
            self.emit("gemm", [A, wname, bias], [t])
        else:
            t = self.tmp("matmul")
            self.emit("matmul", [A, B], [t], trans_b=tb)
            if alpha != 1.0:
                t2 = self.tmp("scaled")
                self.emit("mul", [t, self.g.add_const(np.float32(alpha), "alpha")], [t2])
                t = t2
            if not C:
                self.emit("identity", [t], [y])
                return
        if Cc is not None:
            c = self.g.add_const((Cc.astype(np.float64) * beta).astype(np.float32), "c")
        elif beta != 1.0:
            c = self.tmp("c")
            self.emit("mul", [C, self.g.add_const(np.float32(beta), "beta")], [c])
        else:
            c = C
        self.emit("add", [t, c], [y])

    def _pads(self, n, a, x, kernel, strides, dilations):
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            pads = list(a.get("pads", [0, 0, 0, 0]))
            if len(pads) != 4:
                self.refuse("pads has %d values; a 2-D op takes 4" % len(pads))
            return [int(p) for p in pads]
        if auto == "VALID":
            return [0, 0, 0, 0]
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            self.refuse("auto_pad=%s is not known" % auto)
        shape = self.g.shapes.get(x)
        begin, end = [], []
        for i in range(2):
            k = (kernel[i] - 1) * dilations[i] + 1
            if strides[i] == 1:
                total = k - 1
            else:
                size = shape[2 + i] if shape and len(shape) == 4 else None
                if not isinstance(size, int) or size <= 0:
                    self.refuse("auto_pad=%s with stride %d needs the input's size, which is "
                                "not fixed: give explicit pads" % (auto, strides[i]))
                out = -(-size // strides[i])
                total = max((out - 1) * strides[i] + k - size, 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            begin.append(lo)
            end.append(total - lo)
        return begin + end

    def _two(self, a, key, default, what):
        v = list(a.get(key, default))
        if len(v) != 2:
            self.refuse("%s has %d values: amaas takes 2-D %s only" % (key, len(v), what))
        return [int(t) for t in v]

    def op_Conv(self, n, a):
        x, w, b = self.inp(n, 0), self.inp(n, 1), self.inp(n, 2)
        W = self.need_const(w, "the weight")
        if W.ndim != 4:
            self.refuse("a %d-D convolution: amaas takes 2-D convolutions only" % (W.ndim - 2))
        if b:
            self.need_const(b, "the bias")
        self.float_inputs(n, [x, w, b])
        kernel = self._two(a, "kernel_shape", W.shape[2:], "convolutions")
        if kernel != list(W.shape[2:]):
            self.refuse("kernel_shape %s differs from the weight's %s" % (kernel, W.shape[2:]))
        strides = self._two(a, "strides", [1, 1], "convolutions")
        dil = self._two(a, "dilations", [1, 1], "convolutions")
        pads = self._pads(n, a, x, kernel, strides, dil)
        self.emit("conv", [x, w, b], [self.out(n)], strides=strides, pads=pads, dilations=dil,
                  group=int(a.get("group", 1)))

    def _pool(self, op, n, a):
        if len(n.output) > 1 and n.output[1] and self.used(n.output[1]):
            self.refuse("its Indices output is not computed by amaas")
        x = self.inp(n, 0)
        self.float_inputs(n, [x])
        if "kernel_shape" not in a:
            self.refuse("kernel_shape is missing")
        kernel = self._two(a, "kernel_shape", None, "pools")
        strides = self._two(a, "strides", [1, 1], "pools")
        dil = self._two(a, "dilations", [1, 1], "pools")
        if op == "avg_pool" and dil != [1, 1]:
            self.refuse("dilations of an AveragePool are not supported")
        attrs = dict(kernel=kernel, strides=strides, pads=self._pads(n, a, x, kernel, strides, dil),
                     ceil_mode=bool(a.get("ceil_mode", 0)))
        if op == "max_pool":
            attrs["dilations"] = dil
        else:
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        self.emit(op, [x], [self.out(n)], **attrs)

    def op_MaxPool(self, n, a):
        if a.get("storage_order", 0):
            self.refuse("storage_order=1 is not supported")
        self._pool("max_pool", n, a)

    def op_AveragePool(self, n, a):
        self._pool("avg_pool", n, a)

    def op_GlobalAveragePool(self, n, a):
        self._unary("global_avg_pool", n)

    def op_ReduceMean(self, n, a):
        x = self.inp(n, 0)
        self.float_inputs(n, [x])
        attrs = {"keepdims": bool(a.get("keepdims", 1))}
        if "axes" in a:
            attrs["axes"] = [int(v) for v in a["axes"]]
        self.emit("reduce_mean", [x], [self.out(n)], **attrs)

    #  -- shapes
    def _axes_input(self, n, a, key="axes"):
        """axes as an input: the attribute of opsets < 13, else input 1."""
        if self.opset < 13:
            if key in a:
                return self.g.add_const([int(v) for v in a[key]], key)
            return ""
        return self.as_int64(self.inp(n, 1))

    def op_Flatten(self, n, a):
        x = self.inp(n, 0)
        axis = int(a.get("axis", 1))
        if axis < 0:
            r = self.g.rank(x)
            if r is None:
                self.refuse("a negative axis on an input of unknown rank")
            axis += r
        self.emit("flatten", [x], [self.out(n)], axis=axis)

    def op_Reshape(self, n, a):
        attrs = {"allowzero": True} if a.get("allowzero", 0) else {}
        self.emit("reshape", [self.inp(n, 0), self.as_int64(self.inp(n, 1))], [self.out(n)],
                  **attrs)

    def op_Transpose(self, n, a):
        attrs = {"perm": [int(v) for v in a["perm"]]} if "perm" in a else {}
        self.emit("transpose", [self.inp(n, 0)], [self.out(n)], **attrs)

    def op_Squeeze(self, n, a):
        self.emit("squeeze", [self.inp(n, 0), self._axes_input(n, a)], [self.out(n)])

    def op_Unsqueeze(self, n, a):
        axes = self._axes_input(n, a)
        if not axes:
            self.refuse("axes is missing")
        self.emit("unsqueeze", [self.inp(n, 0), axes], [self.out(n)])

    def op_Concat(self, n, a):
        ins = [self.inp(n, i) for i in range(len(n.input))]
        self.same_types(ins)
        self.emit("concat", ins, [self.out(n)], axis=int(a["axis"]))

    def op_Split(self, n, a):
        split = self._axes_input(n, a, "split")
        self.emit("split", [self.inp(n, 0), split], list(n.output), axis=int(a.get("axis", 0)))

    def op_Slice(self, n, a):
        ins = [self.inp(n, 0)] + [self.as_int64(self.inp(n, i)) for i in range(1, 5)]
        while len(ins) > 3 and not ins[-1]:
            ins.pop()
        self.emit("slice", ins, [self.out(n)])

    def op_Gather(self, n, a):
        self.emit("gather", [self.inp(n, 0), self.as_int64(self.inp(n, 1))], [self.out(n)],
                  axis=int(a.get("axis", 0)))

    def op_Expand(self, n, a):
        self.emit("expand", [self.inp(n, 0), self.as_int64(self.inp(n, 1))], [self.out(n)])

    def op_Range(self, n, a):
        ins = [self.inp(n, i) for i in range(3)]
        self.same_types(ins)
        if self.dtype(ins[0]) not in ("FP32", "INT64"):
            self.refuse("Range of %s" % self.dtype(ins[0]))
        self.emit("range", ins, [self.out(n)])

    def op_Shape(self, n, a):
        attrs = {}
        if "start" in a:
            attrs["start"] = int(a["start"])
        if "end" in a:
            attrs["end"] = int(a["end"])
        self.emit("shape", [self.inp(n, 0)], [self.out(n)], **attrs)

    def op_ConstantOfShape(self, n, a):
        value, dt = 0.0, "FP32"
        if "value" in a:
            v = self._tensor(a["value"])
            if v.size != 1:
                self.refuse("value must hold one element")
            dt = {"f": "FP32", "i": "INT64", "u": "INT64", "b": "BOOL"}[v.dtype.kind]
            value = v.reshape(-1)[0].item()
            value = float(value) if dt == "FP32" else int(value)
        attrs = {"datatype": dt, "value": value}
        self.emit("constant_of_shape", [self.as_int64(self.inp(n, 0))], [self.out(n)], **attrs)


def _onnx_type_name(t):
    try:
        import onnx
        return onnx.TensorProto.DataType.Name(t)
    except Exception:
        return str(t)


def _dim_name_ok(p):
    return bool(p) and len(p.encode("utf-8")) <= DIM_NAME_MAX and p.isprintable()


def _tensor_name_ok(name):
    return (0 < len(name.encode("utf-8", "replace")) <= TENSOR_NAME_MAX
            and not any(ord(c) < 32 or ord(c) == 127 for c in name))


def _check_io_name(name, what):
    if not _tensor_name_ok(name):
        raise Refused("graph %s %r: a name is 1 to %d bytes of UTF-8 without control "
                      "characters (name it with input_names / output_names)"
                      % (what, name, TENSOR_NAME_MAX))


# ---------------------------------------------------------------------------
#  Folding, fusion, pruning

class _Passes:
    def __init__(self, g):
        self.g = g
        self.outputs = {name for name, _, _ in g.outputs}

    def readers(self):
        r = {}
        for n in self.g.nodes:
            for i in n.inputs:
                if i:
                    r.setdefault(i, []).append(n)
        return r

    def producers(self):
        return {o: n for n in self.g.nodes for o in n.outputs}

    def scalar(self, name):
        c = self.g.consts.get(name)
        if c is None or c.size != 1 or c.dtype.kind != "f":
            return None
        return float(c.reshape(-1)[0])

    def only_reader(self, t, node, readers):
        """True when node is t's only reader and t is not a graph output."""
        return t not in self.outputs and readers.get(t, []) == [node]

    #  -- folding
    def fold(self):
        np = _np()
        g = self.g
        kept = []
        for n in g.nodes:
            if (n.op in _FOLDED and all(i == "" or i in g.consts for i in n.inputs)
                    and not any(o in self.outputs for o in n.outputs)):
                vals = [g.consts[i] if i else None for i in n.inputs]
                while vals and vals[-1] is None:
                    vals.pop()
                try:
                    res = _fold(n, vals)
                except (ValueError, IndexError, TypeError, OverflowError):
                    res = None
                if res is not None and all(np.asarray(r).size <= MAX_ELEMENTS for r in res):
                    out = []
                    for o, r in zip(n.outputs, res):
                        r = np.asarray(r)
                        if g.dtypes[o] == "FP32":
                            if r.dtype.kind == "f" and np.any(np.isnan(r)):
                                break
                            r = np.clip(r, -FLT_MAX, FLT_MAX)
                        out.append((o, _contig(r, dtype=_NP[g.dtypes[o]])))
                    else:
                        g.consts.update(out)
                        continue
            kept.append(n)
        g.nodes = kept

    #  -- fusions
    def transposes(self):
        """transpose of the last two axes feeding a matmul -> trans_a / trans_b."""
        prod = self.producers()
        changed = False
        for n in self.g.nodes:
            if n.op != "matmul":
                continue
            for slot, key in ((0, "trans_a"), (1, "trans_b")):
                t = prod.get(n.inputs[slot])
                if t is None or t.op != "transpose" or "perm" not in t.attrs:
                    continue
                p = t.attrs["perm"]
                r = len(p)
                if r >= 2 and p == list(range(r - 2)) + [r - 1, r - 2]:
                    n.inputs[slot] = t.inputs[0]
                    n.attrs[key] = not n.attrs.get(key, False)
                    changed = True
        return changed

    def gemms(self):
        """matmul(x, W constant 2-D) -> gemm; gemm without bias + add(constant
        [N] or scalar) -> gemm with bias."""
        np = _np()
        g = self.g
        changed = False
        for n in g.nodes:
            if n.op == "matmul" and not n.attrs.get("trans_a"):
                W = g.consts.get(n.inputs[1])
                if W is not None and W.ndim == 2:
                    if n.attrs.get("trans_b"):
                        W = _contig(W.T)
                    n.op, n.attrs = "gemm", {}
                    n.inputs = [n.inputs[0], g.add_const(W, "weights"), ""]
                    changed = True
        readers = self.readers()
        dead = set()
        for n in g.nodes:
            if n.op != "gemm" or n.inputs[2] or n.attrs.get("activation", "none") != "none":
                continue
            y = n.outputs[0]
            rs = readers.get(y, [])
            if len(rs) != 1 or rs[0].op != "add" or not self.only_reader(y, rs[0], readers):
                continue
            add = rs[0]
            other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
            b = g.consts.get(other)
            N = g.consts[n.inputs[1]].shape[1]
            if b is None or b.dtype.kind != "f" or not (b.ndim == 1 and b.size == N
                                                         or b.ndim == 0):
                continue
            n.inputs[2] = g.add_const(np.broadcast_to(b, (N,)).astype(np.float32), "bias")
            n.outputs = list(add.outputs)
            dead.add(id(add))
            changed = True
        self._drop(dead)
        return changed

    def conv_bn(self):
        np = _np()
        g = self.g
        readers = self.readers()
        dead = set()
        for n in g.nodes:
            if n.op != "conv" or n.attrs.get("activation", "none") != "none":
                continue
            y = n.outputs[0]
            rs = readers.get(y, [])
            if len(rs) != 1 or rs[0].op != "batch_norm" or rs[0].inputs[0] != y \
                    or not self.only_reader(y, rs[0], readers):
                continue
            bn = rs[0]
            scale, bias, mean, var = (g.consts[i].astype(np.float64) for i in bn.inputs[1:5])
            W = g.consts[n.inputs[1]].astype(np.float64)
            if scale.shape != (W.shape[0],):
                continue
            s = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
            b = g.consts[n.inputs[2]].astype(np.float64) if n.inputs[2] else 0.0
            n.inputs[1] = g.add_const((W * s[:, None, None, None]).astype(np.float32), "weights")
            n.inputs[2] = g.add_const(((b - mean) * s + bias).astype(np.float32), "bias")
            n.outputs = list(bn.outputs)
            dead.add(id(bn))
        self._drop(dead)
        return bool(dead)

    def _close(self, name, value):
        v = self.scalar(name)
        return v is not None and abs(v - value) <= 1e-6 * max(1.0, abs(value))

    def gelus(self):
        """x * 0.5 * (1 + erf(x / sqrt(2))) in the orders torch writes -> gelu."""
        g = self.g
        readers, prod = self.readers(), self.producers()
        dead = set()

        def one(t):
            rs = readers.get(t, [])
            return rs[0] if len(rs) == 1 and t not in self.outputs else None

        for e in g.nodes:
            if e.op != "erf" or id(e) in dead:
                continue
            d = prod.get(e.inputs[0])
            if d is None or one(d.outputs[0]) is not e:
                continue
            if d.op == "div" and self._close(d.inputs[1], math.sqrt(2)):
                x = d.inputs[0]
            elif d.op == "mul" and self._close(d.inputs[1], 1 / math.sqrt(2)):
                x = d.inputs[0]
            elif d.op == "mul" and self._close(d.inputs[0], 1 / math.sqrt(2)):
                x = d.inputs[1]
            else:
                continue
            a = one(e.outputs[0])
            if a is None or a.op != "add":
                continue
            other = a.inputs[1] if a.inputs[0] == e.outputs[0] else a.inputs[0]
            if not self._close(other, 1.0):
                continue
            m1 = one(a.outputs[0])
            if m1 is None or m1.op != "mul":
                continue
            o1 = m1.inputs[1] if m1.inputs[0] == a.outputs[0] else m1.inputs[0]
            pattern = [d, e, a, m1]
            if o1 == x:                                   # (x * (1 + erf)) * 0.5
                m2 = one(m1.outputs[0])
                if m2 is None or m2.op != "mul":
                    continue
                o2 = m2.inputs[1] if m2.inputs[0] == m1.outputs[0] else m2.inputs[0]
                if not self._close(o2, 0.5):
                    continue
                pattern.append(m2)
            elif self._close(o1, 0.5):                    # ((1 + erf) * 0.5) * x
                m2 = one(m1.outputs[0])
                if m2 is None or m2.op != "mul" or x not in m2.inputs:
                    continue
                o2 = m2.inputs[1] if m2.inputs[0] == m1.outputs[0] else m2.inputs[0]
                if o2 != x:
                    continue
                pattern.append(m2)
            else:                                         # (x * 0.5) * (1 + erf)
                h = prod.get(o1)
                if h is None or h.op != "mul" or one(o1) is not m1:
                    continue
                if not ((h.inputs[0] == x and self._close(h.inputs[1], 0.5))
                        or (h.inputs[1] == x and self._close(h.inputs[0], 0.5))):
                    continue
                pattern.insert(0, h)
            #  x's readers are the pattern's and others (the residual); fine
            last = pattern[-1]
            last.op, last.inputs, last.attrs = "gelu", [x], {}
            last.name = e.name
            dead.update(id(p) for p in pattern[:-1])
        self._drop(dead)
        return bool(dead)

    def layer_norms(self):
        """ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div(/Mul/Add) -> layer_norm."""
        np = _np()
        g = self.g
        readers = self.readers()
        dead = set()

        def one(t, op):
            rs = readers.get(t, [])
            return rs[0] if len(rs) == 1 and t not in self.outputs and rs[0].op == op else None

        def other(n, t):
            return n.inputs[1] if n.inputs[0] == t else n.inputs[0]

        for m1 in g.nodes:
            if m1.op != "reduce_mean" or id(m1) in dead or not m1.attrs.get("keepdims", True):
                continue
            x = m1.inputs[0]
            sub = one(m1.outputs[0], "sub")
            if sub is None or sub.inputs != [x, m1.outputs[0]]:
                continue
            dvt = sub.outputs[0]
            rs = readers.get(dvt, [])
            if dvt in self.outputs or len(rs) != 2:
                continue
            pw = next((r for r in rs if r.op == "pow"), None)
            dv = next((r for r in rs if r.op == "div"), None)
            if pw is None or dv is None or pw.inputs[0] != dvt or dv.inputs[0] != dvt \
                    or not self._close(pw.inputs[1], 2.0):
                continue
            m2 = one(pw.outputs[0], "reduce_mean")
            if m2 is None or m2.attrs.get("axes") != m1.attrs.get("axes") \
                    or not m2.attrs.get("keepdims", True):
                continue
            ad = one(m2.outputs[0], "add")
            if ad is None:
                continue
            eps = self.scalar(other(ad, m2.outputs[0]))
            sq = one(ad.outputs[0], "sqrt")
            if eps is None or sq is None or one(sq.outputs[0], "div") is not dv \
                    or dv.inputs[1] != sq.outputs[0]:
                continue
            axes = m1.attrs.get("axes")
            rank = g.rank(x)
            if axes is None:
                if rank is None:
                    continue
                axes = list(range(rank))
            if any(v >= 0 for v in axes):
                if rank is None:
                    continue
                axes = [v - rank if v >= 0 else v for v in axes]
            k = len(axes)
            if sorted(axes) != list(range(-k, 0)):
                continue
            pattern = [m1, sub, pw, m2, ad, sq, dv]
            y = dv.outputs[0]
            shp = g.shapes.get(x)
            dims = shp[-k:] if shp and len(shp) >= k else None
            if dims is not None and not all(isinstance(v, int) and v > 0 for v in dims):
                dims = None

            def trailing(name):
                c = g.consts.get(name)
                if c is None or c.dtype.kind != "f" or c.ndim > k and any(
                        v != 1 for v in c.shape[:c.ndim - k]):
                    return None
                c = c.reshape(c.shape[max(c.ndim - k, 0):])
                if dims is not None:
                    try:
                        return np.broadcast_to(c, dims)
                    except ValueError:
                        return None
                return c if c.ndim == k and 1 not in c.shape else None

            scale = bias = None
            mul = one(y, "mul")
            if mul is not None:
                scale = trailing(other(mul, y))
            if scale is not None:
                pattern.append(mul)
                y = mul.outputs[0]
                add = one(y, "add")
                if add is not None:
                    bias = trailing(other(add, y))
                    if bias is not None and bias.shape == scale.shape:
                        pattern.append(add)
                        y = add.outputs[0]
                    else:
                        bias = None
            elif dims is None:
                continue
            else:
                scale = np.ones(dims, np.float32)
            last = pattern[-1]
            last.op, last.attrs = "layer_norm", {"axis": -k, "epsilon": eps}
            last.inputs = [x, g.add_const(_contig(scale, np.float32), "scale"),
                           g.add_const(_contig(bias, np.float32), "bias")
                           if bias is not None else ""]
            last.outputs = [y]
            dead.update(id(p) for p in pattern[:-1])
        self._drop(dead)
        return bool(dead)

    def activations(self):
        """gemm / conv followed by an activation -> the gemm's / conv's activation."""
        readers = self.readers()
        dead = set()
        for n in self.g.nodes:
            if n.op not in ("gemm", "conv") or n.attrs.get("activation", "none") != "none" \
                    or id(n) in dead:
                continue
            y = n.outputs[0]
            rs = readers.get(y, [])
            if len(rs) != 1 or rs[0].op not in _ACTIVATIONS or not self.only_reader(y, rs[0],
                                                                                    readers):
                continue
            act = rs[0]
            kind = act.op
            if kind == "gelu" and act.attrs.get("approximate", "none") == "tanh":
                kind = "gelu_tanh"
            n.attrs["activation"] = kind
            if kind == "leaky_relu":
                n.attrs["alpha"] = act.attrs.get("alpha", 0.01)
            n.outputs = list(act.outputs)
            dead.add(id(act))
        self._drop(dead)
        return bool(dead)

    def _drop(self, dead):
        if dead:
            self.g.nodes = [n for n in self.g.nodes if id(n) not in dead]

    def prune(self):
        g = self.g
        needed = set(self.outputs)
        kept = []
        for n in reversed(g.nodes):
            if any(o in needed for o in n.outputs):
                kept.append(n)
                needed.update(i for i in n.inputs if i)
        g.nodes = kept[::-1]
        g.consts = {k: v for k, v in g.consts.items() if k in needed}

    def run(self):
        self.fold()
        self.transposes()
        self.fold()
        self.gemms()
        self.conv_bn()
        self.layer_norms()
        self.gelus()
        self.activations()
        self.prune()


def _static(g):
    """Checks that the inputs the format wants static are (constants, shapes and
    what only those make)."""
    static = set(g.consts)
    for n in g.nodes:
        for slot in _STATIC_SLOTS.get(n.op, ()):
            if slot < len(n.inputs) and n.inputs[slot] and n.inputs[slot] not in static:
                raise Refused("node '%s' (%s): its input %r depends on the request's data; "
                              "amaas needs shapes, axes and sizes that depend only on the "
                              "inputs' shapes" % (n.name, n.op, n.inputs[slot]))
        if n.op == "shape" or all(i == "" or i in static for i in n.inputs):
            static.update(n.outputs)


def _rename(g):
    """Tensor names the format takes (1 to 127 bytes, no control characters)."""
    io = {name for name, _, _ in g.inputs} | {name for name, _, _ in g.outputs}
    ren = {}
    for name in list(g.consts) + [o for n in g.nodes for o in n.outputs]:
        if name not in io and not _tensor_name_ok(name):
            ren[name] = g.new_name("t")
    if not ren:
        return
    g.consts = {ren.get(k, k): v for k, v in g.consts.items()}
    for n in g.nodes:
        n.inputs = [ren.get(i, i) for i in n.inputs]
        n.outputs = [ren.get(o, o) for o in n.outputs]


def _load_external_data(model, path):
    """Reads the weights an ONNX file keeps in files beside it (models over
    2 GB), only from files in its own folder: a location that is absolute,
    climbs out with '..' or is a link is refused, so that a hostile file
    cannot make its weights out of another file of this machine."""
    from onnx import external_data_helper as ext
    folder = os.path.dirname(os.path.abspath(path))
    tensors = []

    def walk(graph):
        tensors.extend(graph.initializer)
        for node in graph.node:
            for a in node.attribute:
                if a.HasField("t"):
                    tensors.append(a.t)
                tensors.extend(a.tensors)
                if a.HasField("g"):
                    walk(a.g)
                for sub in a.graphs:
                    walk(sub)
    walk(model.graph)
    for t in tensors:
        if not ext.uses_external_data(t):
            continue
        location = ext.ExternalDataInfo(t).location
        full = os.path.normpath(os.path.join(folder, location))
        if (os.path.isabs(location) or os.path.commonpath([folder, full]) != folder
                or os.path.islink(full) or not os.path.isfile(full)):
            raise Refused("initializer %r keeps its data in %r, which is not a file in the "
                          "model's folder" % (t.name, location))
    if any(ext.uses_external_data(t) for t in tensors):
        ext.load_external_data_for_model(model, folder)


def translate_onnx(path):
    """The graph of the ONNX file at path (read, checked, translated, folded,
    fused and pruned).  Raises Refused, or OSError / ValueError when the file
    cannot be read as ONNX."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    _load_external_data(model, path)
    _Translator(model).check_opset()
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise Refused("onnx.checker refuses the model: %s" % str(e).strip().splitlines()[0])
    g = _Translator(model).run()
    _Passes(g).run()
    _static(g)
    _rename(g)
    if not 1 <= len(g.nodes) <= MAX_NODES:
        raise Refused("the graph has %d nodes after translation; amaas takes 1 to %d"
                      % (len(g.nodes), MAX_NODES))
    if len(g.consts) > MAX_CONSTANTS:
        raise Refused("the graph has %d constants; amaas takes at most %d"
                      % (len(g.consts), MAX_CONSTANTS))
    for n in g.nodes:
        if len(n.inputs) > 64 or len(n.outputs) > 64:
            raise Refused("node '%s' (%s) has more than 64 inputs or outputs" % (n.name, n.op))
    for name, v in g.consts.items():
        if v.ndim > MAX_DIMS:
            raise Refused("constant %r has %d dimensions; at most %d" % (name, v.ndim, MAX_DIMS))
    return g


def encode_graph(g, name, version):
    """The bytes of the format_version 2 file of graph g."""
    w = AlignedWriter()
    w.map_header(10)
    for k, v in (("format", "amaas-model"), ("format_version", 2), ("name", name),
                 ("version", version), ("datatype", "FP32"), ("source", g.source)):
        w.obj(k)
        w.obj(v)
    w.obj("inputs")
    w.obj([{"name": n, "datatype": dt, "shape": dims} for n, dt, dims in g.inputs])
    w.obj("outputs")
    w.obj([{"name": n, "datatype": dt, "shape": dims} for n, dt, dims in g.outputs])
    w.obj("constants")
    w.array_header(len(g.consts))
    for cname, arr in g.consts.items():
        w.map_header(5)
        w.obj("name"), w.obj(cname)
        w.obj("datatype"), w.obj(g.dtypes.get(cname) or _dtype_of(arr))
        w.obj("shape"), w.obj([int(d) for d in arr.shape])
        w.aligned_bin("data", arr.tobytes())
    w.obj("nodes")
    w.array_header(len(g.nodes))
    for n in g.nodes:
        m = {"op": n.op, "inputs": n.inputs, "outputs": n.outputs}
        if n.name:
            m["name"] = n.name.encode("utf-8")[:NODE_NAME_MAX].decode("utf-8", "ignore")
        m.update(n.attrs)
        w.obj(m)
    return w.getvalue()


def _dtype_of(arr):
    return {"f": "FP32", "i": "INT64", "u": "BOOL", "b": "BOOL"}[arr.dtype.kind]


def summary(g):
    """'N nodes (gemm 3, relu 2, ...), C constants' for the exporter's message."""
    counts = {}
    for n in g.nodes:
        counts[n.op] = counts.get(n.op, 0) + 1
    return "%d nodes (%s), %d constants" % (
        len(g.nodes), ", ".join("%s %d" % kv for kv in sorted(counts.items())), len(g.consts))

