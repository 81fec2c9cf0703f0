"""amm_ref_svm - the numpy reference of the svm ops (docs/MODEL_FORMAT.md), for
tests/amm_reference.py, which imports this module: it registers each op in
amm_reference.FAMILY as name -> (check, run).

Written from the format's text: kernels computed directly (rbf as the sum of
squared differences, as libsvm does, not through a GEMM), votes, the
one-vs-rest shape and the probability coupling as loops over the pairs."""

import numpy as np

import amm_reference as ref

KERNELS = ("linear", "poly", "rbf", "sigmoid")
MAX_CLASSES = int((1 + (1 + 8 * ref.MAX_WIDTH) ** 0.5) / 2)   # k (k - 1) / 2 pairs fit a width
MAX_PROBA_CLASSES = ref.amaas_defs.PROBA_CLASSES_MAX


def _number(op, key, where):
    v = op.get(key)
    ref._need(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v),
              "%s: %r must be a finite number, is %r" % (where, key, v))
    return float(v)


def _check_kernel(op, where, w, dtype):
    kernel = ref._str(op, "kernel", where)
    ref._need(kernel in KERNELS, "%s: kernel %r is not one of %s" % (where, kernel, KERNELS))
    c = {"kernel": kernel, "gamma": _number(op, "gamma", where),
         "coef0": _number(op, "coef0", where),
         "degree": ref._uint(op, "degree", where, 0, ref.amaas_defs.DEGREE_MAX)}
    n = ref._uint(op, "count", where, 1, ref.MAX_WIDTH)
    c["vectors"] = ref._bin(op, "vectors", where, n * w, dtype).reshape(n, w)
    ref._need(np.all(np.isfinite(c["vectors"])), where + ": vectors hold NaN or infinity")
    return c, n


def _powi(base, times):
    tmp, ret = base.copy(), np.ones_like(base)
    t = times
    while t > 0:
        if t % 2 == 1:
            ret = ret * tmp
        tmp = tmp * tmp
        t //= 2
    return ret


def _run_kernel(c, x, dt):
    sv = c["vectors"].astype(dt)
    gamma, coef0 = dt.type(c["gamma"]), dt.type(c["coef0"])
    if c["kernel"] == "rbf":
        d = np.empty((x.shape[0], sv.shape[0]), dtype=dt)
        for r in range(x.shape[0]):
            d[r] = ((x[r] - sv) ** 2).sum(axis=1)
        return np.exp(-gamma * d)
    dot = x @ sv.T
    if c["kernel"] == "linear":
        return dot
    if c["kernel"] == "poly":
        return _powi(gamma * dot + coef0, c["degree"])
    return np.tanh(gamma * dot + coef0)


def _check_k(op, where, w, max_k):
    k = ref._uint(op, "k", where, 2, max_k)
    ref._need(k * (k - 1) // 2 == w, "%s: %d classes make %d pairs, the width is %d"
              % (where, k, k * (k - 1) // 2, w))
    return k


def _pairs(k):
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def _check_votes(op, where, w, dtype):
    k = _check_k(op, where, w, MAX_CLASSES)
    return {"k": k}, k


def _run_votes(c, x, dt):
    k = c["k"]
    y = np.zeros((x.shape[0], k), dtype=dt)
    for p, (i, j) in enumerate(_pairs(k)):
        win = x[:, p] > 0
        y[win, i] += 1
        y[~win, j] += 1
    return y


def _run_ovr(c, x, dt):
    k = c["k"]
    votes = np.zeros((x.shape[0], k), dtype=dt)
    s = np.zeros((x.shape[0], k), dtype=dt)
    for p, (i, j) in enumerate(_pairs(k)):
        s[:, i] += x[:, p]
        s[:, j] -= x[:, p]
        first = ~(x[:, p] < 0)
        votes[first, i] += 1
        votes[~first, j] += 1
    return votes + s / (3 * (np.abs(s) + 1))


def _check_proba(op, where, w, dtype):
    k = _check_k(op, where, w, MAX_PROBA_CLASSES)
    return {"k": k, "prob_a": ref._bin(op, "prob_a", where, w, dtype),
            "prob_b": ref._bin(op, "prob_b", where, w, dtype)}, k


def _couple(k, r):
    """Wu, Lin and Weng's method 2 as the format states it (libsvm's loop)."""
    Q = np.zeros((k, k))
    for t in range(k):
        for j in range(k):
            if j != t:
                Q[t, t] += r[j, t] * r[j, t]
                Q[t, j] = -r[j, t] * r[t, j]
    p = np.full(k, 1.0 / k)
    eps = 0.005 / k
    for _ in range(max(100, k)):
        Qp = Q @ p
        pQp = p @ Qp
        if np.max(np.abs(Qp - pQp)) < eps:
            break
        for t in range(k):
            diff = (-Qp[t] + pQp) / Q[t, t]
            p[t] += diff
            pQp = (pQp + diff * (diff * Q[t, t] + 2 * Qp[t])) / (1 + diff) / (1 + diff)
            Qp = (Qp + diff * Q[t]) / (1 + diff)
            p = p / (1 + diff)
    return p


def _run_proba(c, x, dt):
    k = c["k"]
    a = c["prob_a"].astype(np.float64)
    b = c["prob_b"].astype(np.float64)
    y = np.empty((x.shape[0], k), dtype=dt)
    for row in range(x.shape[0]):
        f = x[row].astype(np.float64) * a + b
        with np.errstate(over="ignore"):
            s = np.where(f >= 0, np.exp(-f) / (1 + np.exp(-f)), 1 / (1 + np.exp(f)))
        s = np.clip(s, 1e-7, 1 - 1e-7)
        r = np.zeros((k, k))
        for p, (i, j) in enumerate(_pairs(k)):
            r[i, j], r[j, i] = s[p], 1 - s[p]
        y[row] = _couple(k, r)
    return y


ref.FAMILY["svm_kernel"] = (_check_kernel, _run_kernel)
ref.FAMILY["ovo_votes"] = (_check_votes, _run_votes)
ref.FAMILY["ovr_decision"] = (_check_votes, _run_ovr)
ref.FAMILY["ovo_proba"] = (_check_proba, _run_proba)
