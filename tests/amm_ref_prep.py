"""amm_ref_prep - the numpy reference of the prep ops (docs/MODEL_FORMAT.md,
"Operations: prep"), for tests/amm_reference.py, which imports this module: it
registers each op in amm_reference.FAMILY as name -> (check, run).

Written from the format's page: check enforces the rules the page states for
each op's fields, run computes the op with numpy in the model's datatype."""

import math

import numpy as np

import amm_reference as ref

INT32 = np.dtype("<i4")
MAX_WIDTH = ref.MAX_WIDTH
MAX_FACTORS = ref.amaas_defs.FACTORS_MAX


def _width_is(op, key, where, w):
    v = ref._uint(op, key, where, 1, MAX_WIDTH)
    ref._need(v == w, "%s: %s is %d, the current width is %d" % (where, key, v, w))


def _in_range(values, key, where, low, high):
    ref._need(np.all((values >= low) & (values <= high)),
              "%s: %s has values outside %d..%d" % (where, key, low, high))


def _number(op, key, where):
    v = op.get(key)
    ref._need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
              "%s: %s must be a finite number" % (where, key))
    return float(v)


# ---------------------------------------------------------------------------
#  impute: NaN -> values per kept column, then the indicator columns

def check_impute(op, where, w, dtype):
    _width_is(op, "in", where, w)
    k = ref._uint(op, "kept", where, 0, MAX_WIDTH)
    n = ref._uint(op, "indicated", where, 0, MAX_WIDTH)
    ref._need(1 <= k + n <= MAX_WIDTH, where + ": kept + indicated must be 1..2^24")
    columns = ref._bin(op, "columns", where, k, INT32).astype(np.int64)
    values = ref._bin(op, "values", where, k, dtype)
    indicators = ref._bin(op, "indicators", where, n, INT32).astype(np.int64)
    _in_range(columns, "columns", where, 0, w - 1)
    _in_range(indicators, "indicators", where, 0, w - 1)
    return {"columns": columns, "values": values, "indicators": indicators}, k + n


def run_impute(c, x, dt):
    data = x[:, c["columns"]]
    data = np.where(np.isnan(data), c["values"].astype(dt), data)
    ind = np.isnan(x[:, c["indicators"]]).astype(dt)
    return np.hstack([data, ind]).astype(dt)


# ---------------------------------------------------------------------------
#  affine, clip, norms

def check_affine(op, where, w, dtype):
    _width_is(op, "width", where, w)
    return {"mul": ref._bin(op, "mul", where, w, dtype),
            "add": ref._bin(op, "add", where, w, dtype)}, w


def run_affine(c, x, dt):
    return x * c["mul"] + c["add"]


def check_clip(op, where, w, dtype):
    _width_is(op, "width", where, w)
    low, high = _number(op, "low", where), _number(op, "high", where)
    ref._need(low <= high, where + ": low is above high")
    if dtype.itemsize == 4:
        big = float(np.finfo(np.float32).max)
        ref._need(abs(low) <= big and abs(high) <= big, where + ": low or high outside FP32")
    return {"low": low, "high": high}, w


def run_clip(c, x, dt):
    return np.minimum(np.maximum(x, dt.type(c["low"])), dt.type(c["high"]))


def check_norm(op, where, w, dtype):
    _width_is(op, "width", where, w)
    return {}, w


def _norm_run(norm_of):
    def run(c, x, dt):
        norms = norm_of(x).astype(dt)
        norms[norms < 10 * np.finfo(dt).eps] = 1
        return x / norms[:, None]
    return run


# ---------------------------------------------------------------------------
#  poly: products of input columns

def check_poly(op, where, w, dtype):
    _width_is(op, "in", where, w)
    m = ref._uint(op, "out", where, 1, MAX_WIDTH)
    n = ref._uint(op, "factors", where, 0, MAX_FACTORS)
    offsets = ref._bin(op, "offsets", where, m + 1, INT32).astype(np.int64)
    indices = ref._bin(op, "indices", where, n, INT32).astype(np.int64)
    _in_range(indices, "indices", where, 0, w - 1)
    ref._need(offsets[0] == 0 and np.all(np.diff(offsets) >= 0) and offsets[-1] == n,
              where + ": offsets must rise from 0 to factors")
    return {"terms": [indices[offsets[j]:offsets[j + 1]] for j in range(m)]}, m


def run_poly(c, x, dt):
    out = np.empty((x.shape[0], len(c["terms"])), dtype=dt)
    for j, t in enumerate(c["terms"]):
        p = np.ones(x.shape[0], dtype=dt)
        if len(t):
            p = x[:, t[-1]].copy()
            for k in t[-2::-1]:
                p = p * x[:, k]
        out[:, j] = p
    return out


# ---------------------------------------------------------------------------
#  onehot

def check_onehot(op, where, w, dtype):
    _width_is(op, "in", where, w)
    m = ref._uint(op, "out", where, 1, MAX_WIDTH)
    n = ref._uint(op, "n_categories", where, 1, MAX_FACTORS)
    counts = ref._bin(op, "counts", where, w, INT32).astype(np.int64)
    _in_range(counts, "counts", where, 1, MAX_WIDTH)
    ref._need(counts.sum() == n, where + ": counts add up to %d, n_categories is %d"
              % (counts.sum(), n))
    cats = ref._bin(op, "categories", where, n, dtype)
    columns = ref._bin(op, "columns", where, n, INT32).astype(np.int64)
    _in_range(columns, "columns", where, -1, m - 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    per = []
    for i in range(w):
        v = cats[starts[i]:starts[i + 1]]
        col = columns[starts[i]:starts[i + 1]]
        nan = np.isnan(v)
        ref._need(not nan[:-1].any(), where + ": column %d has NaN before its last category" % i)
        nums = v[~nan]
        ref._need(np.all(nums[1:] > nums[:-1]), where + ": column %d's categories are not "
                  "strictly increasing" % i)
        per.append((v, col))
    return {"per": per, "out": m}, m


def run_onehot(c, x, dt):
    rows = x.shape[0]
    out = np.zeros((rows, c["out"]), dtype=dt)
    for i, (v, col) in enumerate(c["per"]):
        for j in range(len(v)):
            if col[j] < 0:
                continue
            hit = np.isnan(x[:, i]) if np.isnan(v[j]) else x[:, i] == v[j]
            out[hit, col[j]] = 1
    return out


ref.FAMILY.update({
    "impute": (check_impute, run_impute),
    "affine": (check_affine, run_affine),
    "clip": (check_clip, run_clip),
    "l1_normalize": (check_norm, _norm_run(lambda x: np.abs(x).sum(axis=1))),
    "l2_normalize": (check_norm, _norm_run(lambda x: np.sqrt((x * x).sum(axis=1)))),
    "max_normalize": (check_norm, _norm_run(lambda x: np.max(np.abs(x), axis=1))),
    "poly": (check_poly, run_poly),
    "onehot": (check_onehot, run_onehot),
})
