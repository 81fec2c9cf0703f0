"""amm_ref_trees - the numpy reference of the trees ops (docs/MODEL_FORMAT.md,
"Operations: trees"), for tests/amm_reference.py, which imports this module:
it registers each op in amm_reference.FAMILY as name -> (check, run).

Written from the format's page: the nodes are walked as the page states them
(all rows of a batch at once, one tree after the other), not as the C
runtime lays them out."""

import numpy as np

import amm_reference as ref

I32 = np.dtype("<i4")
U32 = np.dtype("<u4")
U8 = np.dtype("u1")


def _check_trees(op, where, w, dtype):
    need = ref._need
    _need_eq = ref._uint(op, "in", where, 1, ref.MAX_WIDTH)
    need(_need_eq == w, "%s: in %d, current width %d" % (where, _need_eq, w))
    k = ref._uint(op, "out", where, 1, ref.MAX_WIDTH)
    n = ref._uint(op, "nodes", where, 1, ref.amaas_defs.NODES_MAX)
    t = ref._uint(op, "trees", where, 1, n)
    leaves = ref._uint(op, "leaves", where, 1, n)
    lw = ref._uint(op, "leaf_width", where, 1, ref.MAX_WIDTH)
    need(lw in (1, k), "%s: leaf_width %d is neither 1 nor out (%d)" % (where, lw, k))
    sets = ref._uint(op, "sets", where, 0, n)
    c = {"k": k, "lw": lw}
    feature = ref._bin(op, "feature", where, n, I32).astype(np.int64)
    c["threshold"] = ref._bin(op, "threshold", where, n, dtype)
    left = ref._bin(op, "left", where, n, I32).astype(np.int64)
    right = ref._bin(op, "right", where, n, I32).astype(np.int64)
    flags = ref._bin(op, "flags", where, n, U8)
    roots = ref._bin(op, "roots", where, t, I32).astype(np.int64)
    c["values"] = ref._bin(op, "values", where, leaves * lw, dtype).reshape(leaves, lw)
    c["base"] = ref._bin(op, "base", where, k, dtype)
    c["column"] = (ref._bin(op, "column", where, t, I32).astype(np.int64) if lw == 1 else None)
    cats = ref._bin(op, "categories", where, 8 * sets, U32).reshape(sets, 8) if sets else \
        np.zeros((0, 8), np.uint32)
    need(np.all(flags & ~np.uint8(3) == 0), where + ": flags with unknown bits")
    leaf = feature == -1
    need(np.all(leaf | ((feature >= 0) & (feature < w))), where + ": feature out of range")
    need(np.all(~leaf | ((left >= 0) & (left < leaves))), where + ": leaf value index out of range")
    idx = np.arange(n)
    inner = ~leaf
    need(np.all(~inner | ((left > idx) & (left < n) & (right > idx) & (right < n))),
         where + ": a child is not after its parent")
    need(np.all((roots >= 0) & (roots < n)), where + ": root out of range")
    refs = np.bincount(np.concatenate([roots, left[inner], right[inner]]), minlength=n)
    need(np.all(refs == 1), where + ": a node is not reached exactly once")
    if c["column"] is not None:
        need(np.all((c["column"] >= 0) & (c["column"] < k)), where + ": column out of range")
    categorical = inner & (flags & 2 != 0)
    need(int(categorical.sum()) == sets, where + ": sets != categorical nodes")
    set_of = np.zeros(n, np.int64)
    set_of[categorical] = np.arange(sets)
    c.update(feature=feature, left=left, right=right, roots=roots, cats=cats, set_of=set_of,
             missing_left=flags & 1 != 0, categorical=categorical, leaf=leaf)
    return c, k


def _run_trees(c, x, dt):
    rows = x.shape[0]
    y = np.tile(c["base"].astype(dt), (rows, 1))
    r = np.arange(rows)
    for t, root in enumerate(c["roots"]):
        node = np.full(rows, root)
        while True:
            active = ~c["leaf"][node]
            if not active.any():
                break
            nd = node[active]
            v = x[r[active], c["feature"][nd]]
            nan = np.isnan(v)
            with np.errstate(invalid="ignore"):
                go = v <= c["threshold"][nd]
                # categorical: x < 0 and NaN are missing; category: trunc(x) mod 256
                # below 2^31, else 0
                cat = c["categorical"][nd]
                miss = nan | (cat & (v < 0))
                vv = np.where(cat & ~miss, v, 0).astype(np.float64)
                code = np.where(vv < 2**31, np.trunc(vv), 0).astype(np.int64) & 255
            bits = (c["cats"][c["set_of"][nd], code // 32] >> (code % 32).astype(np.uint32)) & 1 \
                if len(c["cats"]) else np.zeros(len(nd), np.uint32)
            go = np.where(cat, bits == 1, go)
            go = np.where(miss, c["missing_left"][nd], go)
            node[active] = np.where(go, c["left"][nd], c["right"][nd])
        vals = c["values"][c["left"][node]]
        if c["lw"] == 1:
            y[:, c["column"][t]] += vals[:, 0]
        else:
            y += vals
    return y


def _check_none(op, where, w, dtype):
    return {}, w


def _run_round32(c, x, dt):
    return x.astype(np.float32).astype(dt)


def _run_exp(c, x, dt):
    return np.exp(x)


ref.FAMILY["trees"] = (_check_trees, _run_trees)
ref.FAMILY["round32"] = (_check_none, _run_round32)
ref.FAMILY["exp"] = (_check_none, _run_exp)
