"""amm_ref_graph - a numpy reference reader and interpreter of graph models.

Written from docs/MODEL_FORMAT.md, "Graph models (format_version 2)" alone,
independently of the exporter (scripts/amaas_export/onnx_graph.py) and of the
C runtime (worker/graph.c): `load` checks a file against the rules of that
section (keys, limits, datatypes, constants' sizes, names defined once and
before they are read, static inputs static, attributes' types) and `run`
computes every node with numpy in FP32 (INT64 and BOOL where the op says).

    model = amm_ref_graph.load("enc.amm")                   # raises FormatError
    outs = amm_ref_graph.run(model, {"input_ids": ids, "attention_mask": mask})
    amm_ref_graph.bin_offsets(data)                         # constant -> file offset

run also takes a path or the bytes of a file.
"""

import math

import msgpack
import numpy as np

MAX_INPUTS, MAX_OUTPUTS, MAX_CONSTANTS, MAX_NODES = 16, 8, 65536, 4096
MAX_DIMS, MAX_NODE_IO = 8, 64
DTYPES = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8"), "BOOL": np.dtype("u1")}
ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh")

#  op -> (min inputs, max inputs, indices of static inputs)
OPS = {
    "add": (2, 2, ()), "sub": (2, 2, ()), "mul": (2, 2, ()), "div": (2, 2, ()),
    "pow": (2, 2, ()), "equal": (2, 2, ()), "where": (3, 3, ()),
    "sqrt": (1, 1, ()), "reciprocal": (1, 1, ()), "tanh": (1, 1, ()), "sigmoid": (1, 1, ()),
    "erf": (1, 1, ()), "exp": (1, 1, ()), "neg": (1, 1, ()), "relu": (1, 1, ()),
    "leaky_relu": (1, 1, ()), "gelu": (1, 1, ()), "cast": (1, 1, ()), "identity": (1, 1, ()),
    "softmax": (1, 1, ()), "log_softmax": (1, 1, ()), "layer_norm": (2, 3, ()),
    "batch_norm": (5, 5, ()), "gemm": (2, 3, ()), "matmul": (2, 2, ()), "conv": (2, 3, ()),
    "max_pool": (1, 1, ()), "avg_pool": (1, 1, ()), "global_avg_pool": (1, 1, ()),
    "reduce_mean": (1, 1, ()), "argmax": (1, 1, ()), "reshape": (2, 2, (1,)),
    "flatten": (1, 1, ()), "transpose": (1, 1, ()), "squeeze": (1, 2, (1,)),
    "unsqueeze": (2, 2, (1,)), "concat": (1, 64, ()), "split": (1, 2, (1,)),
    "slice": (3, 5, (1, 2, 3, 4)), "gather": (2, 2, ()), "expand": (2, 2, (1,)),
    "range": (3, 3, (0, 1, 2)), "shape": (1, 1, ()), "constant_of_shape": (1, 1, (0,)),
}
CONST_INPUTS = {"gemm": (1, 2), "conv": (1, 2), "batch_norm": (1, 2, 3, 4)}


class FormatError(Exception):
    """The file breaks a rule of the format."""


class RunError(Exception):
    """The shapes or the data do not fit the graph (INVALID_ARGUMENT)."""


def _need(cond, msg):
    if not cond:
        raise FormatError(msg)


def _pairs(pairs):
    out = {}
    _need(len(pairs) <= 64, "a map has %d keys, at most 64" % len(pairs))
    for k, v in pairs:
        _need(isinstance(k, str), "a map key is not a str")
        if k == "pad":
            _need(isinstance(v, bytes), "pad is not a bin")
            continue
        _need(k not in out, "key %r repeats in a map" % k)
        out[k] = v
    return out


def _tensor_name(v, where):
    _need(isinstance(v, str) and 1 <= len(v.encode()) <= 127
          and not any(ord(c) < 32 or ord(c) == 127 for c in v),
          "%s: tensor name %r is not 1..127 bytes without control characters" % (where, v))
    return v


def _io(entries, what, lo, hi):
    _need(isinstance(entries, list) and lo <= len(entries) <= hi,
          "%s: %d to %d entries" % (what, lo, hi))
    out = []
    batch = None
    for e in entries:
        _need(isinstance(e, dict), "%s entry is not a map" % what)
        name = _tensor_name(e.get("name"), what)
        dt = e.get("datatype")
        _need(dt in ("FP32", "INT64"), "%s %r: datatype %r is not FP32 or INT64" % (what, name, dt))
        shape = e.get("shape")
        _need(isinstance(shape, list) and 1 <= len(shape) <= MAX_DIMS,
              "%s %r: shape of 1 to %d dimensions" % (what, name, MAX_DIMS))
        for i, d in enumerate(shape):
            if isinstance(d, str):
                _need(1 <= len(d.encode()) <= 31, "%s %r: dimension name %r" % (what, name, d))
            else:
                _need(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1 << 24,
                      "%s %r: dimension %r" % (what, name, d))
        _need(isinstance(shape[0], str), "%s %r: the first dimension is not the batch" % (what, name))
        out.append((name, dt, shape))
        batch = batch or shape[0]
    return out


def load_bytes(data):
    """The checked model: a dict with "inputs", "outputs", "constants" (name ->
    ndarray), "nodes" (list of dicts)."""
    try:
        m = msgpack.unpackb(data, raw=False, object_pairs_hook=_pairs, strict_map_key=False)
    except FormatError:
        raise
    except Exception as e:
        raise FormatError("not one msgpack object: %s" % e)
    return check(m)


def load(path):
    with open(path, "rb") as f:
        return load_bytes(f.read())


def check(m):
    _need(isinstance(m, dict), "top level is not a map")
    _need(m.get("format") == "amaas-model", "format is not amaas-model")
    _need(m.get("format_version") == 2, "format_version is %r, not 2" % m.get("format_version"))
    for k in ("name", "version"):
        _need(isinstance(m.get(k), str), "%s is not a str" % k)
    _need(m.get("datatype") == "FP32", "datatype is %r, not FP32" % m.get("datatype"))
    inputs = _io(m.get("inputs"), "inputs", 1, MAX_INPUTS)
    outputs = _io(m.get("outputs"), "outputs", 1, MAX_OUTPUTS)
    _need(len({d[2][0] for d in inputs + outputs}) == 1, "the batch dimension has several names")
    dtypes, static, consts = {}, set(), {}
    for name, dt, _ in inputs:
        _need(name not in dtypes, "tensor %r defined twice" % name)
        dtypes[name] = dt
    cl = m.get("constants", [])
    _need(isinstance(cl, list) and len(cl) <= MAX_CONSTANTS, "constants: at most 65536")
    for c in cl:
        _need(isinstance(c, dict), "a constant is not a map")
        name = _tensor_name(c.get("name"), "constant")
        dt = c.get("datatype")
        _need(dt in DTYPES, "constant %r: datatype %r" % (name, dt))
        shape = c.get("shape")
        _need(isinstance(shape, list) and len(shape) <= MAX_DIMS
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape),
              "constant %r: shape %r" % (name, shape))
        data = c.get("data")
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        _need(isinstance(data, bytes) and len(data) == n * DTYPES[dt].itemsize,
              "constant %r: data of %s bytes, %d values need %d" % (
                  name, len(data) if isinstance(data, bytes) else "no", n,
                  n * DTYPES[dt].itemsize))
        arr = np.frombuffer(data, DTYPES[dt]).reshape(shape)
        if dt == "BOOL":
            _need(bool(np.all(arr <= 1)), "constant %r: BOOL values are 0 or 1" % name)
            arr = arr.astype(bool)
        _need(name not in dtypes, "tensor %r defined twice" % name)
        dtypes[name] = dt
        consts[name] = arr
        static.add(name)
    nodes = m.get("nodes")
    _need(isinstance(nodes, list) and 1 <= len(nodes) <= MAX_NODES, "nodes: 1 to 4096")
    for i, n in enumerate(nodes):
        _need(isinstance(n, dict), "node %d is not a map" % i)
        op = n.get("op")
        where = "node %d (%s, %r)" % (i, op, n.get("name"))
        _need(op in OPS, "%s: unknown op" % where)
        ins, outs = n.get("inputs"), n.get("outputs")
        _need(isinstance(ins, list) and isinstance(outs, list) and len(ins) <= MAX_NODE_IO
              and 1 <= len(outs) <= MAX_NODE_IO, "%s: inputs and outputs" % where)
        lo, hi, st = OPS[op]
        _need(lo <= len(ins) <= hi, "%s: %d inputs, takes %d to %d" % (where, len(ins), lo, hi))
        for j, t in enumerate(ins):
            _need(isinstance(t, str), "%s: an input is not a str" % where)
            if t == "":
                _need(j >= lo or (op == "squeeze" and j == 1), "%s: input %d is required" % (where, j))
                continue
            _need(t in dtypes, "%s: input %r is not defined before" % (where, t))
            if j in st:
                _need(t in static, "%s: input %r must be static" % (where, t))
                _need(dtypes[t] == "INT64" or op == "range", "%s: input %r must be INT64" % (where, t))
            if j in CONST_INPUTS.get(op, ()):
                _need(t in consts, "%s: input %r must be a constant" % (where, t))
        _check_attrs(n, op, where)
        dts = [dtypes.get(t) for t in ins if t]
        out_dt = _out_dtype(n, op, dts, where)
        if op != "split":
            _need(len(outs) == 1, "%s: one output" % where)
        for t in outs:
            _tensor_name(t, where)
            _need(t not in dtypes, "%s: tensor %r defined twice" % (where, t))
            dtypes[t] = out_dt
        if op == "shape" or all(t == "" or t in static for t in ins):
            static.update(outs)
    for name, dt, _ in outputs:
        _need(name in dtypes, "output %r is not a tensor of the graph" % name)
        _need(dtypes[name] == dt, "output %r is %s, declared %s" % (name, dtypes[name], dt))
    return {"inputs": inputs, "outputs": outputs, "constants": consts, "nodes": nodes,
            "dtypes": dtypes, "name": m["name"], "version": m["version"],
            "source": m.get("source")}


def _check_attrs(n, op, where):
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    for k in ("axis", "start", "end", "group"):
        if k in n:
            _need(is_int(n[k]), "%s: %s is not an int" % (where, k))
    for k in ("alpha", "epsilon", "value"):
        if k in n:
            _need(isinstance(n[k], (int, float)) and not isinstance(n[k], bool),
                  "%s: %s is not a number" % (where, k))
    for k in ("keepdims", "trans_a", "trans_b", "ceil_mode", "count_include_pad",
              "select_last_index", "allowzero"):
        if k in n:
            _need(isinstance(n[k], bool), "%s: %s is not a bool" % (where, k))
    for k, size in (("strides", 2), ("dilations", 2), ("kernel", 2), ("pads", 4)):
        if k in n:
            _need(isinstance(n[k], list) and len(n[k]) == size and all(is_int(v) for v in n[k]),
                  "%s: %s is not %d ints" % (where, k, size))
    for k in ("axes", "perm"):
        if k in n:
            _need(isinstance(n[k], list) and all(is_int(v) for v in n[k]),
                  "%s: %s is not an array of ints" % (where, k))
    if op in ("gemm", "conv"):
        _need(n.get("activation", "none") in ACTIVATIONS, "%s: activation" % where)
    if op == "gelu":
        _need(n.get("approximate", "none") in ("none", "tanh"), "%s: approximate" % where)
    if op == "cast":
        _need(n.get("to") in DTYPES, "%s: to" % where)
    if op == "constant_of_shape":
        _need(n.get("datatype", "FP32") in DTYPES, "%s: datatype" % where)
    if op in ("concat",):
        _need("axis" in n, "%s: axis is required" % where)
    if op in ("max_pool", "avg_pool"):
        _need("kernel" in n, "%s: kernel is required" % where)


FLOAT_OPS = ("pow", "sqrt", "reciprocal", "tanh", "sigmoid", "erf", "exp", "relu", "leaky_relu",
             "gelu", "softmax", "log_softmax", "layer_norm", "batch_norm", "gemm", "matmul",
             "conv", "max_pool", "avg_pool", "global_avg_pool", "reduce_mean", "argmax")


def _out_dtype(n, op, dts, where):
    if op in FLOAT_OPS:
        _need(all(d == "FP32" for d in dts), "%s: takes FP32 inputs, has %s" % (where, dts))
        return "INT64" if op == "argmax" else "FP32"
    if op in ("add", "sub", "mul", "div", "equal"):
        _need(dts[0] == dts[1], "%s: inputs of different datatypes" % where)
        _need(dts[0] != "BOOL" or op == "equal", "%s: BOOL inputs" % where)
        return "BOOL" if op == "equal" else dts[0]
    if op == "where":
        _need(dts[0] == "BOOL" and dts[1] == dts[2] and dts[1] != "BOOL", "%s: datatypes" % where)
        return dts[1]
    if op == "neg":
        _need(dts[0] != "BOOL", "%s: BOOL input" % where)
        return dts[0]
    if op == "cast":
        return n["to"]
    if op == "shape":
        return "INT64"
    if op == "constant_of_shape":
        return n.get("datatype", "FP32")
    if op == "concat":
        _need(len(set(dts)) == 1, "%s: inputs of different datatypes" % where)
    if op == "gather":
        _need(dts[1] == "INT64", "%s: indices are not INT64" % where)
    if op == "range":
        _need(len(set(dts)) == 1 and dts[0] in ("FP32", "INT64"), "%s: datatypes" % where)
    return dts[0]


# ---------------------------------------------------------------------------
#  The run

def _axis(a, rank):
    if not -rank <= a < max(rank, 1):
        raise RunError("axis %d out of range for rank %d" % (a, rank))
    return a + rank if a < 0 else a


def _erf(x):
    try:
        from scipy.special import erf
        return erf(x.astype(np.float64)).astype(np.float32)
    except ImportError:  # pragma: no cover
        return np.vectorize(math.erf, otypes=[np.float64])(x).astype(np.float32)


def _act(y, kind, alpha):
    if kind == "relu":
        return np.maximum(y, np.float32(0))
    if kind == "leaky_relu":
        return np.where(y < 0, np.float32(alpha) * y, y)
    if kind == "tanh":
        return np.tanh(y)
    if kind == "sigmoid":
        return (1 / (1 + np.exp(-y.astype(np.float64)))).astype(np.float32)
    if kind == "gelu":
        return (0.5 * y * (1 + _erf(y / np.float32(math.sqrt(2))))).astype(np.float32)
    if kind == "gelu_tanh":
        y64 = y.astype(np.float64)
        return (0.5 * y64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (y64 + 0.044715 * y64 ** 3)))
                ).astype(np.float32)
    return y


def _window(size, pad0, pad1, k, s, d, ceil_mode):
    """Output size of a conv or pool along one axis (ONNX's rule, with the last
    window dropped when it starts in the end padding)."""
    eff = (k - 1) * d + 1
    span = size + pad0 + pad1 - eff
    if span < 0:
        raise RunError("the window (%d) is larger than the padded input (%d)" % (eff, size + pad0 + pad1))
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + pad0:
            out -= 1
    else:
        out = span // s + 1
    return out


def _conv(x, w, b, n):
    N, C, H, W = x.shape
    M, Cg, kh, kw = w.shape
    g = n.get("group", 1)
    sh, sw = n.get("strides", [1, 1])
    dh, dw = n.get("dilations", [1, 1])
    pt, pl, pb, pr = n.get("pads", [0, 0, 0, 0])
    if g < 1 or C % g or M % g or C // g != Cg:
        raise RunError("conv: channels %d, weight %s, group %d" % (C, w.shape, g))
    OH = _window(H, pt, pb, kh, sh, dh, False)
    OW = _window(W, pl, pr, kw, sw, dw, False)
    xp = np.zeros((N, C, H + pt + pb, W + pl + pr), np.float32)
    xp[:, :, pt:pt + H, pl:pl + W] = x
    cols = np.empty((N, C, kh, kw, OH, OW), np.float32)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * (OH - 1) + 1:sh,
                                  j * dw:j * dw + sw * (OW - 1) + 1:sw]
    y = np.empty((N, M, OH, OW), np.float32)
    Mg = M // g
    for gi in range(g):
        c = cols[:, gi * Cg:(gi + 1) * Cg].reshape(N, Cg * kh * kw, OH * OW)
        wg = w[gi * Mg:(gi + 1) * Mg].reshape(Mg, Cg * kh * kw)
        y[:, gi * Mg:(gi + 1) * Mg] = np.matmul(wg, c).reshape(N, Mg, OH, OW)
    if b is not None:
        y += b.reshape(1, M, 1, 1)
    return _act(y, n.get("activation", "none"), n.get("alpha", 0.01))


def _pool(x, n, op):
    N, C, H, W = x.shape
    kh, kw = n["kernel"]
    sh, sw = n.get("strides", [1, 1])
    dh, dw = n.get("dilations", [1, 1]) if op == "max_pool" else (1, 1)
    pt, pl, pb, pr = n.get("pads", [0, 0, 0, 0])
    ceil = n.get("ceil_mode", False)
    OH = _window(H, pt, pb, kh, sh, dh, ceil)
    OW = _window(W, pl, pr, kw, sw, dw, ceil)
    y = np.empty((N, C, OH, OW), np.float32)
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * sh - pt, ow * sw - pl
            rows = [h0 + i * dh for i in range(kh)]
            cols = [w0 + j * dw for j in range(kw)]
            vr = [r for r in rows if 0 <= r < H]
            vc = [c for c in cols if 0 <= c < W]
            win = x[:, :, vr][:, :, :, vc]
            if op == "max_pool":
                y[:, :, oh, ow] = win.max(axis=(2, 3))
            else:
                if n.get("count_include_pad", False):
                    # the window's positions inside the padded input
                    ih = sum(1 for r in rows if -pt <= r < H + pb)
                    iw = sum(1 for c in cols if -pl <= c < W + pr)
                    cnt = ih * iw
                else:
                    cnt = len(vr) * len(vc)
                y[:, :, oh, ow] = win.sum(axis=(2, 3), dtype=np.float64) / cnt
    return y


def _slice(x, starts, ends, axes, steps):
    k = len(starts)
    axes = list(range(k)) if axes is None else [_axis(int(a), x.ndim) for a in axes]
    steps = [1] * k if steps is None else [int(s) for s in steps]
    if len(ends) != k or len(axes) != k or len(steps) != k or len(set(axes)) != k:
        raise RunError("slice: starts, ends, axes, steps differ in length or axes repeat")
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise RunError("slice: step 0")
        n = x.shape[a]
        s, e = int(s), int(e)
        s = s + n if s < 0 else s
        e = e + n if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
            sl[a] = slice(s, e, st)
        else:
            s, e = min(max(s, -1), n - 1), min(max(e, -1), n - 1)
            sl[a] = slice(s, e if e >= 0 else None, st)
    return x[tuple(sl)]


def _reshape(x, shape, allowzero):
    shape = [int(v) for v in shape]
    out = []
    for i, v in enumerate(shape):
        if v == 0 and not allowzero:
            if i >= x.ndim:
                raise RunError("reshape: 0 at %d beyond the input's rank" % i)
            out.append(x.shape[i])
        else:
            out.append(v)
    if out.count(-1) > 1 or any(v < -1 for v in out):
        raise RunError("reshape: shape %s" % shape)
    if -1 in out:
        rest = int(np.prod([v for v in out if v != -1]))
        if rest == 0 or x.size % rest:
            raise RunError("reshape: %s does not fit %d elements" % (shape, x.size))
        out[out.index(-1)] = x.size // rest
    if int(np.prod(out)) != x.size:
        raise RunError("reshape: %s does not keep %d elements" % (shape, x.size))
    return x.reshape(out)


def _node(n, v):
    """The outputs of node n from its input values v (None for "")."""
    op = n["op"]
    x = v[0]
    f32 = np.float32
    if op in ("add", "sub", "mul", "div"):
        a, b = v
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise RunError("%s: shapes %s and %s do not broadcast" % (op, a.shape, b.shape))
        if op == "div" and a.dtype.kind == "i":
            q = np.abs(a) // np.where(b == 0, 1, np.abs(b))
            return [np.where(b == 0, 0, np.sign(a) * np.sign(b) * q).astype(np.int64)]
        with np.errstate(all="ignore"):
            return [{"add": np.add, "sub": np.subtract, "mul": np.multiply,
                     "div": np.divide}[op](a, b)]
    if op == "pow":
        with np.errstate(all="ignore"):
            return [np.power(x, v[1]).astype(f32)]
    if op == "equal":
        return [np.equal(x, v[1])]
    if op == "where":
        return [np.where(x, v[1], v[2])]
    if op in ("sqrt", "reciprocal", "tanh", "exp", "erf", "sigmoid", "relu"):
        with np.errstate(all="ignore"):
            if op == "sqrt":
                return [np.sqrt(x)]
            if op == "reciprocal":
                return [(f32(1) / x).astype(f32)]
            if op == "exp":
                return [np.exp(x)]
            if op == "erf":
                return [_erf(x)]
            return [_act(x, op, 0)]
    if op == "neg":
        return [-x]
    if op == "leaky_relu":
        return [_act(x, "leaky_relu", n.get("alpha", 0.01))]
    if op == "gelu":
        return [_act(x, "gelu_tanh" if n.get("approximate", "none") == "tanh" else "gelu", 0)]
    if op == "cast":
        to = n["to"]
        if to == "INT64" and x.dtype.kind == "f":
            y = np.trunc(x.astype(np.float64))
            y = np.where(np.isnan(y), 0, np.clip(y, -2.0 ** 63, 2.0 ** 63 - 1024))
            return [y.astype(np.int64)]
        if to == "BOOL":
            return [x != 0]
        return [x.astype(DTYPES[to].newbyteorder("="))]
    if op == "identity":
        return [x.copy()]
    if op in ("softmax", "log_softmax"):
        a = _axis(n.get("axis", -1), x.ndim)
        x64 = x.astype(np.float64)
        z = x64 - x64.max(axis=a, keepdims=True)
        s = np.exp(z).sum(axis=a, keepdims=True)
        return [(np.exp(z) / s if op == "softmax" else z - np.log(s)).astype(f32)]
    if op == "layer_norm":
        a = _axis(n.get("axis", -1), x.ndim)
        axes = tuple(range(a, x.ndim))
        x64 = x.astype(np.float64)
        mu = x64.mean(axis=axes, keepdims=True)
        var = ((x64 - mu) ** 2).mean(axis=axes, keepdims=True)
        if v[1].shape != x.shape[a:] or (v[2] is not None and v[2].shape != x.shape[a:]):
            raise RunError("layer_norm: scale %s for dimensions %s" % (v[1].shape, x.shape[a:]))
        y = (x64 - mu) / np.sqrt(var + n.get("epsilon", 1e-5)) * v[1]
        if v[2] is not None:
            y = y + v[2]
        return [y.astype(f32)]
    if op == "batch_norm":
        C = x.shape[1]
        shp = (1, C) + (1,) * (x.ndim - 2)
        sc, b, m, var = (t.astype(np.float64).reshape(shp) for t in v[1:])
        return [((x - m) / np.sqrt(var + n.get("epsilon", 1e-5)) * sc + b).astype(f32)]
    if op == "gemm":
        w = v[1]
        if x.shape[-1] != w.shape[0]:
            raise RunError("gemm: x %s, w %s" % (x.shape, w.shape))
        y = np.matmul(x, w)
        if v[2] is not None:
            y = y + v[2]
        return [_act(y.astype(f32), n.get("activation", "none"), n.get("alpha", 0.01))]
    if op == "matmul":
        a, b = v
        if a.ndim < 2 or b.ndim < 2:
            raise RunError("matmul: ranks %d and %d, both must be >= 2" % (a.ndim, b.ndim))
        if n.get("trans_a", False):
            a = np.swapaxes(a, -1, -2)
        if n.get("trans_b", False):
            b = np.swapaxes(b, -1, -2)
        try:
            return [np.matmul(a, b)]
        except ValueError as e:
            raise RunError("matmul: %s" % e)
    if op == "conv":
        return [_conv(x, v[1], v[2], n)]
    if op in ("max_pool", "avg_pool"):
        return [_pool(x, n, op)]
    if op == "global_avg_pool":
        return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float64).astype(f32)]
    if op == "reduce_mean":
        axes = n.get("axes")
        axes = None if axes is None else tuple(_axis(a, x.ndim) for a in axes)
        return [x.mean(axis=axes, keepdims=n.get("keepdims", True), dtype=np.float64).astype(f32)]
    if op == "argmax":
        a = _axis(n.get("axis", 0), x.ndim)
        if n.get("select_last_index", False):
            y = x.shape[a] - 1 - np.argmax(np.flip(x, a), axis=a)
        else:
            y = np.argmax(x, axis=a)
        if n.get("keepdims", True):
            y = np.expand_dims(y, a)
        return [y.astype(np.int64)]
    if op == "reshape":
        return [_reshape(x, v[1], n.get("allowzero", False))]
    if op == "flatten":
        a = n.get("axis", 1)
        if not 0 <= a <= x.ndim:
            raise RunError("flatten: axis %d" % a)
        return [x.reshape(int(np.prod(x.shape[:a])), int(np.prod(x.shape[a:])))]
    if op == "transpose":
        perm = n.get("perm", list(range(x.ndim))[::-1])
        if sorted(perm) != list(range(x.ndim)):
            raise RunError("transpose: perm %s for rank %d" % (perm, x.ndim))
        return [np.transpose(x, perm)]
    if op == "squeeze":
        if v[1] is None:
            return [np.squeeze(x)]
        axes = tuple(_axis(int(a), x.ndim) for a in v[1])
        if any(x.shape[a] != 1 for a in axes):
            raise RunError("squeeze: a dimension is not 1")
        return [np.squeeze(x, axes)]
    if op == "unsqueeze":
        r = x.ndim + len(v[1])
        axes = sorted(_axis(int(a), r) for a in v[1])
        if len(set(axes)) != len(axes):
            raise RunError("unsqueeze: axes repeat")
        y = x
        for a in axes:
            y = np.expand_dims(y, a)
        return [y]
    if op == "concat":
        a = _axis(n["axis"], x.ndim)
        try:
            return [np.concatenate(v, axis=a)]
        except ValueError as e:
            raise RunError("concat: %s" % e)
    if op == "split":
        a = _axis(n.get("axis", 0), x.ndim)
        k = len(n["outputs"])
        if v[1] is not None:
            sizes = [int(s) for s in v[1]]
            if len(sizes) != k or sum(sizes) != x.shape[a] or min(sizes) < 0:
                raise RunError("split: sizes %s of %d" % (sizes, x.shape[a]))
        else:
            if x.shape[a] % k:
                raise RunError("split: %d in %d equal parts" % (x.shape[a], k))
            sizes = [x.shape[a] // k] * k
        return np.split(x, np.cumsum(sizes)[:-1], axis=a)
    if op == "slice":
        return [_slice(x, v[1], v[2], v[3] if len(v) > 3 else None,
                       v[4] if len(v) > 4 else None)]
    if op == "gather":
        a = _axis(n.get("axis", 0), x.ndim)
        idx = v[1]
        d = x.shape[a]
        if idx.size and (idx.min() < -d or idx.max() >= d):
            raise RunError("gather: an index is out of range [-%d, %d)" % (d, d))
        return [np.take(x, np.where(idx < 0, idx + d, idx), axis=a)]
    if op == "expand":
        try:
            shape = np.broadcast_shapes(x.shape, tuple(int(s) for s in v[1]))
        except ValueError:
            raise RunError("expand: %s to %s" % (x.shape, list(v[1])))
        return [np.broadcast_to(x, shape).copy()]
    if op == "range":
        start, limit, delta = (t.reshape(()) for t in v)
        if delta == 0:
            raise RunError("range: delta 0")
        cnt = max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)
        return [(start + np.arange(cnt).astype(start.dtype) * delta).astype(start.dtype)]
    if op == "shape":
        r = x.ndim
        s, e = n.get("start", 0), n.get("end", r)
        s = min(max(s + r if s < 0 else s, 0), r)
        e = min(max(e + r if e < 0 else e, 0), r)
        return [np.array(x.shape[s:e], np.int64)]
    if op == "constant_of_shape":
        dt = DTYPES[n.get("datatype", "FP32")].newbyteorder("=")
        value = n.get("value", 0)
        return [np.full([int(d) for d in x], value, bool if n.get("datatype") == "BOOL" else dt)]
    raise FormatError("op %s has no reference" % op)  # pragma: no cover


def run(model, inputs):
    """Runs a graph model (a checked model, a path or the bytes of a file) on
    inputs {name: array}; returns {output name: array} in the declared order."""
    if isinstance(model, (str, bytes)) and not isinstance(model, dict):
        model = load(model) if isinstance(model, str) else load_bytes(model)
    env = {}
    dims = {}
    batch = None
    for name, dt, shape in model["inputs"]:
        if name not in inputs:
            raise RunError("input %r is missing" % name)
        x = np.asarray(inputs[name])
        if dt == "INT64" and x.dtype.kind not in "iu":
            raise RunError("input %r is INT64, given %s" % (name, x.dtype))
        x = x.astype(np.float32 if dt == "FP32" else np.int64)
        if x.ndim != len(shape):
            raise RunError("input %r: rank %d, declared %d" % (name, x.ndim, len(shape)))
        for d, want in zip(x.shape, shape):
            if isinstance(want, str):
                if dims.setdefault(want, d) != d:
                    raise RunError("dimension %r is %d and %d" % (want, dims[want], d))
            elif d != want:
                raise RunError("input %r: dimension %d, declared %d" % (name, d, want))
        batch = x.shape[0]
        env[name] = x
    env.update(model["constants"])
    for i, n in enumerate(model["nodes"]):
        vals = [env[t] if t else None for t in n["inputs"]]
        if n["op"] != "concat":
            vals += [None] * (OPS[n["op"]][1] - len(vals))       # absent optional inputs
        try:
            outs = _node(n, vals)
        except RunError as e:
            raise RunError("node %d (%s, %r): %s" % (i, n["op"], n.get("name"), e))
        for t, y in zip(n["outputs"], outs):
            y = np.asarray(y)
            dt = model["dtypes"][t]
            if dt == "FP32":
                y = y.astype(np.float32)
            elif dt == "INT64":
                y = y.astype(np.int64)
            if y.size >= 1 << 31:
                raise RunError("node %d: a tensor above 2^31 elements" % i)
            env[t] = y
    result = {}
    for name, dt, shape in model["outputs"]:
        y = env[name]
        if y.ndim != len(shape) or y.shape[0] != batch:
            raise RunError("output %r: shape %s, declared %s (batch %d)" % (name, y.shape, shape, batch))
        for d, want in zip(y.shape, shape):
            if isinstance(want, int) and d != want:
                raise RunError("output %r: dimension %d, declared %d" % (name, d, want))
        result[name] = y
    return result


def bin_offsets(data):
    """{constant name: file offset of its data's first byte} of a file's bytes."""
    up = msgpack.Unpacker(raw=False, strict_map_key=False)
    up.feed(data)
    offsets = {}
    # Walk the top map by hand: the offsets of the constants' "data" bins.
    n = up.read_map_header()
    for _ in range(n):
        key = up.unpack()
        if key != "constants":
            up.skip()
            continue
        for _ in range(up.read_array_header()):
            name = offset = None
            for _ in range(up.read_map_header()):
                k = up.unpack()
                if k == "data":
                    header = up.read_bytes(1)[0]
                    size = {0xc4: 1, 0xc5: 2, 0xc6: 4}[header]
                    length = int.from_bytes(up.read_bytes(size), "big")
                    offset = up.tell()
                    up.read_bytes(length)
                elif k == "name":
                    name = up.unpack()
                else:
                    up.skip()
            offsets[name] = offset
    return offsets
