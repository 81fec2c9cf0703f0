"""amm_reference - a pure-numpy reference reader and interpreter of amaas model files.

Written from docs/MODEL_FORMAT.md alone, independently of the exporter and of
the C runtime: `load` checks a file against every rule of the format and
`run` computes its ops with numpy, in the model's datatype.  The tests use it
to prove that an exported file reproduces scikit-learn, and `bin_offsets`
to check where each bin lies in the file (the 64-byte alignment).

    model = amm_reference.load("iris.amm")          # raises FormatError
    outs = amm_reference.run(model, x)               # {"probabilities": ..., "label": ...}
"""

import os
import re
import sys

import msgpack
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "defs"))
import amaas_defs  # noqa: E402  the format's limits, shared with the C runtime (defs/amaas.defs)

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,%d}$" % amaas_defs.NAME_MAX)
VERSION_RE = re.compile(r"^[A-Za-z0-9._+-]{1,%d}$" % amaas_defs.VERSION_MAX)
TENSOR_RE = re.compile(r"^[A-Za-z0-9._-]{1,%d}$" % amaas_defs.TENSOR_NAME_MAX)
MAX_LABEL = amaas_defs.LABEL_MAX
MAX_KEYS = amaas_defs.KEYS_MAX
MAX_DEPTH = amaas_defs.DEPTH_MAX
DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
MAX_WIDTH = amaas_defs.WIDTH_MAX
MAX_OPS = amaas_defs.OPS_MAX
MAX_OUTPUTS = amaas_defs.OUTPUTS_MAX
ELEMENTWISE = ("identity", "relu", "tanh", "sigmoid", "softmax", "normalize")


#  Ops of the families (trees, svm, prep), registered by tests/amm_ref_*.py:
#  name -> (check, run).  check(op, where, w, dtype) returns (c, new_width),
#  c being what run needs; run(c, x, dt) returns the new current tensor.
FAMILY = {}


class FormatError(Exception):
    """The file breaks a rule of docs/MODEL_FORMAT.md."""


def _pairs_hook(pairs):
    """Map decoding: refuse repeated keys other than `pad`, drop `pad`."""
    _need(len(pairs) <= MAX_KEYS, "a map has %d keys, at most %d" % (len(pairs), MAX_KEYS))
    out = {}
    for k, v in pairs:
        if not isinstance(k, str):
            raise FormatError("map key %r is not a str" % (k,))
        if k == "pad":
            if not isinstance(v, bytes):
                raise FormatError("pad is not a bin")
            continue
        if k in out:
            raise FormatError("key %r repeats in a map" % k)
        out[k] = v
    return out


def _need(cond, msg):
    if not cond:
        raise FormatError(msg)


def _uint(m, key, where, lo=0, hi=1 << 64):
    v = m.get(key)
    _need(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
          "%s: %r must be an integer in %d..%d, is %r" % (where, key, lo, hi, v))
    return v


def _str(m, key, where):
    v = m.get(key)
    _need(isinstance(v, str), "%s: %r must be a str, is %r" % (where, key, type(v).__name__))
    return v


def _bin(m, key, where, count, dtype):
    v = m.get(key)
    _need(isinstance(v, bytes), "%s: %r must be a bin" % (where, key))
    _need(len(v) == count * dtype.itemsize, "%s: %r holds %d bytes, %d values of %d bytes need %d"
          % (where, key, len(v), count, dtype.itemsize, count * dtype.itemsize))
    return np.frombuffer(v, dtype=dtype)


def _depth(obj):
    if isinstance(obj, dict):
        return 1 + max([_depth(v) for v in obj.values()], default=0)
    if isinstance(obj, list):
        return 1 + max([_depth(v) for v in obj], default=0)
    return 0


def load_bytes(data):
    """A checked model (a dict with numpy weights) from the bytes of a file."""
    try:
        m = msgpack.unpackb(data, raw=False, object_pairs_hook=_pairs_hook,
                            strict_map_key=False)
    except FormatError:
        raise
    except Exception as e:
        raise FormatError("not one msgpack object: %s" % e)
    _need(isinstance(m, dict), "top level is not a map")
    _need(_depth(m) <= MAX_DEPTH, "containers nest deeper than %d" % MAX_DEPTH)
    _need(m.get("format") == "amaas-model", "format is %r, not 'amaas-model'" % m.get("format"))
    _need(m.get("format_version") == 1, "format_version is %r, not 1" % m.get("format_version"))
    _need(NAME_RE.match(_str(m, "name", "top")), "name %r is not 1..%d of [A-Za-z0-9._-]"
          % (m["name"], amaas_defs.NAME_MAX))
    _need(VERSION_RE.match(_str(m, "version", "top")), "version %r is not 1..%d of [A-Za-z0-9._+-]"
          % (m["version"], amaas_defs.VERSION_MAX))
    _need(m.get("datatype") in DTYPES, "datatype is %r, not FP32 or FP64" % m.get("datatype"))
    dtype = DTYPES[m["datatype"]]
    inp = m.get("input")
    _need(isinstance(inp, dict), "input is not a map")
    _need(TENSOR_RE.match(_str(inp, "name", "input")), "input name is not 1..%d of [A-Za-z0-9._-]"
          % amaas_defs.TENSOR_NAME_MAX)
    width = _uint(inp, "width", "input", 1, MAX_WIDTH)
    if "source" in m:
        _str(m, "source", "top")

    outs = m.get("outputs")
    _need(isinstance(outs, list) and 1 <= len(outs) <= MAX_OUTPUTS,
          "outputs must be an array of 1..%d maps" % MAX_OUTPUTS)
    names = set()
    for i, o in enumerate(outs):
        where = "outputs[%d]" % i
        _need(isinstance(o, dict), where + " is not a map")
        _need(TENSOR_RE.match(_str(o, "name", where)), where + ": name is not 1..%d of [A-Za-z0-9._-]"
              % amaas_defs.TENSOR_NAME_MAX)
        _need(o["name"] not in names, where + ": name %r repeats" % o["name"])
        names.add(o["name"])
        _need(o.get("datatype") in ("FP32", "FP64", "INT64", "BYTES"), where + ": bad datatype")
        s = o.get("shape")
        _need(isinstance(s, list) and len(s) in (1, 2) and s[0] == -1
              and (len(s) == 1 or (isinstance(s[1], int) and 1 <= s[1] <= MAX_WIDTH)),
              where + ": shape must be [-1] or [-1, k]")

    ops = m.get("ops")
    _need(isinstance(ops, list) and 1 <= len(ops) <= MAX_OPS, "ops must be an array of 1..%d maps"
          % MAX_OPS)
    emitted = []
    counted = [0]
    state = {"label_dtype": None}

    def check_list(ops, w, depth, prefix):
        """(checked ops, width after them) of a list of ops on width w."""
        checked = []
        for i, op in enumerate(ops):
            counted[0] += 1
            _need(counted[0] <= MAX_OPS, "more than %d ops, counting those in parts" % MAX_OPS)
            _need(isinstance(op, dict), "%sop %d is not a map" % (prefix, i))
            kind = _str(op, "op", "%sop %d" % (prefix, i))
            where = "%sop %d (%s)" % (prefix, i, kind)
            c = {"op": kind}
            if w is None:
                _need(kind == "output", where + ": only output may follow argmax")
            _need(not (depth and kind == "argmax"), where + ": argmax may not be in a part")
            w = check_op(op, c, kind, where, w, depth)
            checked.append(c)
        return checked, w

    def columns_of(op, where, w):
        cols = op.get("columns")
        _need(isinstance(cols, list) and 1 <= len(cols) <= MAX_WIDTH
              and all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < w
                      for j in cols),
              where + ": columns must be 1..%d indices below the width %d" % (MAX_WIDTH, w))
        return np.array(cols, dtype=np.int64)

    def check_op(op, c, kind, where, w, depth):
        if kind == "scale":
            _need(_uint(op, "width", where, 1, MAX_WIDTH) == w, where + ": width %d, current width %d"
                  % (op["width"], w))
            c["mean"] = _bin(op, "mean", where, w, dtype)
            c["scale"] = _bin(op, "scale", where, w, dtype)
        elif kind == "dense":
            _need(_uint(op, "in", where, 1, MAX_WIDTH) == w, where + ": in %d, current width %d"
                  % (op["in"], w))
            m_out = _uint(op, "out", where, 1, MAX_WIDTH)
            c["weights"] = _bin(op, "weights", where, w * m_out, dtype).reshape(w, m_out)
            c["bias"] = _bin(op, "bias", where, m_out, dtype)
            w = m_out
        elif kind in ELEMENTWISE:
            pass
        elif kind == "select":
            c["columns"] = columns_of(op, where, w)
            w = len(c["columns"])
        elif kind == "columns":
            _need(depth < amaas_defs.NESTING_MAX, where + ": columns ops nest deeper than %d"
                  % amaas_defs.NESTING_MAX)
            parts = op.get("parts")
            _need(isinstance(parts, list) and 1 <= len(parts) <= amaas_defs.PARTS_MAX,
                  where + ": parts must be an array of 1..%d maps" % amaas_defs.PARTS_MAX)
            c["parts"] = []
            total = 0
            for j, part in enumerate(parts):
                pw = "%s: parts[%d]" % (where, j)
                _need(isinstance(part, dict), pw + " is not a map")
                cols = columns_of(part, pw, w)
                sub = part.get("ops")
                _need(isinstance(sub, list), pw + ": ops must be an array")
                sub_checked, sub_w = check_list(sub, len(cols), depth + 1, pw + ": ")
                c["parts"].append({"columns": cols, "ops": sub_checked})
                total += sub_w
            w = total
        elif kind in FAMILY:
            got, w = FAMILY[kind][0](op, where, w, dtype)
            c.update(got)
        elif kind == "binary":
            _need(w == 1, where + ": needs width 1, current width %d" % w)
            w = 2
        elif kind == "argmax":
            labels = op.get("labels")
            _need(isinstance(labels, list) and len(labels) == w,
                  where + ": labels must be an array of %d (the current width)" % w)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
                _need(all(-(1 << 63) <= v < (1 << 63) for v in labels), where + ": label out of INT64")
                state["label_dtype"] = "INT64"
                c["labels"] = np.array(labels, dtype=np.int64)
            elif all(isinstance(v, str) for v in labels):
                state["label_dtype"] = "BYTES"
                c["labels"] = [v.encode("utf-8") for v in labels]
                _need(all(len(v) <= MAX_LABEL for v in c["labels"]),
                      where + ": a label is over %d bytes" % MAX_LABEL)
            else:
                raise FormatError(where + ": labels must be all ints or all strs")
            w = None
        elif kind == "output":
            name = _str(op, "name", where)
            flatten = op.get("flatten", False)
            _need(isinstance(flatten, bool), where + ": flatten is not a bool")
            if w is None:
                out_dtype, shape = state["label_dtype"], [-1]
            elif flatten:
                _need(w == 1, where + ": flatten needs width 1, current width %d" % w)
                out_dtype, shape = m["datatype"], [-1]
            else:
                out_dtype, shape = m["datatype"], [-1, w]
            j = len(emitted)
            _need(j < len(outs), where + ": more output ops than outputs")
            decl = outs[j]
            _need((decl["name"], decl["datatype"], decl["shape"]) == (name, out_dtype, shape),
                  where + ": emits %s %s %s, outputs[%d] declares %s %s %s"
                  % (name, out_dtype, shape, j, decl["name"], decl["datatype"], decl["shape"]))
            c["name"], c["flatten"] = name, flatten
            emitted.append(name)
        else:
            raise FormatError(where + ": unknown op")
        return w

    checked, _ = check_list(ops, width, 0, "")
    _need(len(emitted) == len(outs), "%d outputs declared, %d output ops" % (len(outs), len(emitted)))
    return {"name": m["name"], "version": m["version"], "datatype": m["datatype"],
            "dtype": dtype, "input": inp["name"], "width": width, "outputs": outs,
            "ops": checked, "source": m.get("source")}


def load(path):
    with open(path, "rb") as f:
        return load_bytes(f.read())


def run(model, x):
    """{output name: numpy array} for input x [rows, width] (any numeric dtype).

    Computes in the model's datatype exactly as the format defines each op.
    Labels come back as int64 arrays, or object arrays of bytes."""
    dt = model["dtype"].newbyteorder("=")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != model["width"]:
        raise ValueError("input must be [rows, %d], is %s" % (model["width"], x.shape))
    x = x.astype(dt, copy=True)
    result = {}
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        _run_list(model["ops"], x, dt, result)

    return result


def _run_list(ops, x, dt, result):
    """Runs ops on x; fills result with the outputs; returns the last tensor."""
    for op in ops:
        k = op["op"]
        if k == "scale":
            x = (x - op["mean"]) / op["scale"]
        elif k == "dense":
            x = x @ op["weights"] + op["bias"]
        elif k == "identity":
            pass
        elif k == "relu":
            x = np.maximum(x, 0)
        elif k == "tanh":
            x = np.tanh(x)
        elif k == "sigmoid":
            x = dt.type(1) / (dt.type(1) + np.exp(-x))
        elif k == "softmax":
            e = np.exp(x - x.max(axis=1, keepdims=True))
            x = e / e.sum(axis=1, keepdims=True)
        elif k == "normalize":
            x = x / x.sum(axis=1, keepdims=True)
        elif k == "binary":
            x = np.hstack([dt.type(1) - x, x])
        elif k == "argmax":
            idx = np.argmax(x, axis=1)
            labels = op["labels"]
            if isinstance(labels, np.ndarray):
                x = labels[idx]
            else:
                x = np.empty(len(idx), dtype=object)
                x[:] = [labels[i] for i in idx]
        elif k == "select":
            x = x[:, op["columns"]]
        elif k == "columns":
            x = np.hstack([_run_list(p["ops"], x[:, p["columns"]], dt, result)
                           for p in op["parts"]])
        elif k in FAMILY:
            x = FAMILY[k][1](op, x, dt)
        elif k == "output":
            result[op["name"]] = x.reshape(-1) if op["flatten"] else x.copy()
    return x


# ---------------------------------------------------------------------------
#  Where each bin lies in the file: a minimal msgpack walker

def bin_offsets(data):
    """[(path, offset, length)] for every bin value in the file, in file order.

    path names the key chain, e.g. "ops/2/weights"; offset is where the bin's
    bytes start in the file."""
    found = []

    def be(pos, n):
        return int.from_bytes(data[pos:pos + n], "big"), pos + n

    def walk(pos, path):
        t = data[pos]
        pos += 1
        if t <= 0x7f or t >= 0xe0 or t in (0xc0, 0xc2, 0xc3):
            return pos
        if 0xa0 <= t <= 0xbf:
            return pos + (t & 0x1f)
        if 0x80 <= t <= 0x8f:
            return walk_map(pos, t & 0x0f, path)
        if 0x90 <= t <= 0x9f:
            return walk_array(pos, t & 0x0f, path)
        sizes = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8,
                 0xca: 4, 0xcb: 8}
        if t in sizes:
            return pos + sizes[t]
        if t in (0xc4, 0xc5, 0xc6):
            n, pos = be(pos, {0xc4: 1, 0xc5: 2, 0xc6: 4}[t])
            found.append((path, pos, n))
            return pos + n
        if t in (0xd9, 0xda, 0xdb):
            n, pos = be(pos, {0xd9: 1, 0xda: 2, 0xdb: 4}[t])
            return pos + n
        if t in (0xdc, 0xdd):
            n, pos = be(pos, 2 if t == 0xdc else 4)
            return walk_array(pos, n, path)
        if t in (0xde, 0xdf):
            n, pos = be(pos, 2 if t == 0xde else 4)
            return walk_map(pos, n, path)
        raise FormatError("msgpack type 0x%02x not expected in a model file" % t)

    def walk_array(pos, n, path):
        for i in range(n):
            pos = walk(pos, "%s/%d" % (path, i) if path else str(i))
        return pos

    def walk_map(pos, n, path):
        for _ in range(n):
            key = msgpack.Unpacker(raw=False)
            kpos = pos
            pos = walk(pos, path + "/?key")
            key.feed(data[kpos:pos])
            k = next(key)
            pos = walk(pos, "%s/%s" % (path, k) if path else str(k))
        return pos

    end = walk(0, "")
    if end != len(data):
        raise FormatError("%d bytes after the msgpack map" % (len(data) - end))
    return found


#  The families register their ops in FAMILY (they import this module's helpers)
import amm_ref_prep  # noqa: E402,F401
import amm_ref_svm  # noqa: E402,F401
import amm_ref_trees  # noqa: E402,F401
