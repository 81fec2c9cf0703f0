"""svm - support vector machines and the linear models that reduce to dense.

SVC, NuSVC, SVR, NuSVR and OneClassSVM become svm_kernel (K(x, sv) for each
support vector), a dense op with the dual coefficients (one column per
one-vs-one pair, libsvm's sign: the values libsvm's predict votes with) and,
for classifiers, ovr_decision / ovo_proba / ovo_votes (docs/MODEL_FORMAT.md,
"Operations: svm").  Where several outputs derive from the one-vs-one values,
a columns op whose parts end in an output emits them, and select keeps the
values for the votes.

The linear models (LinearSVC, SGDClassifier, Perceptron, RidgeClassifier,
PassiveAggressiveClassifier; Lasso, ElasticNet, BayesianRidge, ...) are a
dense op with coef_ and intercept_, as scikit-learn's decision_function and
predict compute them.
"""

from .common import DEFS, Refused, _check_fitted, _dense_array, _dense_op, _labels, _np  # noqa: F401
from .linear import _linear_regressor

MAX_DEGREE = DEFS.DEGREE_MAX                # the loader's limits
MAX_PROBA_CLASSES = DEFS.PROBA_CLASSES_MAX


def _fork(width, branches):
    """Ops that run each branch (ops ending in an output, giving `bw` columns)
    on the current [rows, width] tensor and leave the tensor as it was."""
    parts = [{"columns": list(range(width)), "ops": ops} for ops, _ in branches]
    parts.append({"columns": list(range(width)), "ops": []})
    total = sum(bw for _, bw in branches)
    return [{"op": "columns", "parts": parts},
            {"op": "select", "columns": list(range(total, total + width))}]


def _kernel_op(est, what, width):
    np = _np()
    kernel = est.kernel
    if callable(kernel) or kernel not in ("linear", "poly", "rbf", "sigmoid"):
        raise Refused("%s: kernel %r cannot be exported (linear, poly, rbf and sigmoid can)"
                      % (what, kernel if isinstance(kernel, str) else "callable"))
    if getattr(est, "_sparse", False):
        raise Refused("%s was fitted on a sparse matrix: refit it on a dense array" % what)
    sv = _dense_array(est.support_vectors_, what + " support_vectors_", (2,))
    if sv.shape[1] != width or sv.shape[0] < 1:
        raise Refused("%s: support_vectors_ %s do not fit %d features" % (what, sv.shape, width))
    degree = int(est.degree)
    if not 0 <= degree <= MAX_DEGREE:
        raise Refused("%s: degree %d is outside 0..%d" % (what, degree, MAX_DEGREE))
    gamma, coef0 = float(est._gamma), float(est.coef0)
    if not (np.isfinite(gamma) and np.isfinite(coef0)):
        raise Refused("%s: gamma or coef0 is not finite" % what)
    return {"op": "svm_kernel", "kernel": kernel, "gamma": gamma, "coef0": coef0,
            "degree": degree, "count": int(sv.shape[0]), "vectors": sv}


def _svr(est, what, width, dtype=None):
    """SVR, NuSVR: predictions = dual_coef_ . K + intercept_."""
    ops = [_kernel_op(est, what, width)]
    coef = _dense_array(est._dual_coef_, what + " dual_coef_", (2,))
    b = _dense_array(est._intercept_, what + " intercept_", (1,))
    ops += [_dense_op(coef.T.copy(), b), {"op": "output", "name": "predictions", "flatten": True}]
    return ops, [("predictions", None, [-1])]


def _one_class(est, what, width, dtype=None):
    """OneClassSVM: decision_function, and label +1 where it is > 0, else -1."""
    np = _np()
    ops = [_kernel_op(est, what, width)]
    coef = _dense_array(est._dual_coef_, what + " dual_coef_", (2,))
    b = _dense_array(est._intercept_, what + " intercept_", (1,))
    ops += [_dense_op(coef.T.copy(), b),
            {"op": "output", "name": "decision_function", "flatten": True},
            #  [0, d]: argmax picks +1 only for d > 0 (the first of a tie is -1)
            _dense_op(np.array([[0.0, 1.0]]), np.zeros(2)),
            {"op": "argmax", "labels": [-1, 1]},
            {"op": "output", "name": "label"}]
    return ops, [("decision_function", None, [-1]), ("label", "INT64", [-1])]


def _ovo_dense(est, what, k):
    """[n_sv][P] dual coefficients and [P] intercepts of the one-vs-one pairs,
    libsvm's sign (internal _dual_coef_ / _intercept_)."""
    np = _np()
    dual = _dense_array(est._dual_coef_, what + " dual_coef_", (2,))
    b = _dense_array(est._intercept_, what + " intercept_", (1,))
    counts = [int(c) for c in est._n_support]
    n_sv = dual.shape[1]
    P = k * (k - 1) // 2
    if len(counts) != k or sum(counts) != n_sv or dual.shape[0] != k - 1 or b.shape != (P,):
        raise Refused("%s: dual_coef_ %s, intercept_ %s and n_support_ %s do not fit %d classes"
                      % (what, dual.shape, b.shape, counts, k))
    start = np.concatenate([[0], np.cumsum(counts)])
    W = np.zeros((n_sv, P))
    p = 0
    for i in range(k):
        for j in range(i + 1, k):
            si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
            W[si, p] = dual[j - 1, si]
            W[sj, p] = dual[i, sj]
            p += 1
    return W, b


def _svc(est, what, width, dtype=None):
    """SVC, NuSVC: decision_function (ovr or ovo), probabilities when
    probability=True, label by libsvm's one-vs-one votes."""
    np = _np()
    labels, label_dtype = _labels(est, what)
    k = len(labels)
    P = k * (k - 1) // 2
    ops = [_kernel_op(est, what, width)]
    W, b = _ovo_dense(est, what, k)
    ops.append(_dense_op(W, b))
    shape = est.decision_function_shape
    if shape not in ("ovr", "ovo"):
        raise Refused("%s: decision_function_shape %r is not ovr or ovo" % (what, shape))
    break_ties = bool(getattr(est, "break_ties", False)) and k > 2
    if break_ties and shape == "ovo":
        raise Refused("%s: break_ties=True needs decision_function_shape='ovr'" % what)
    outputs = []
    branches = []
    proba = None
    if est.probability:
        if k > MAX_PROBA_CLASSES:
            raise Refused("%s: probabilities of %d classes; amaas computes them for at most %d"
                          % (what, k, MAX_PROBA_CLASSES))
        pa = _dense_array(est._probA, what + " probA_", (1,))
        pb = _dense_array(est._probB, what + " probB_", (1,))
        if pa.shape != (P,) or pb.shape != (P,):
            raise Refused("%s: probA_/probB_ do not have %d values" % (what, P))
        proba = ([{"op": "ovo_proba", "k": k, "prob_a": pa, "prob_b": pb},
                  {"op": "output", "name": "probabilities"}], k)
    votes = [{"op": "ovo_votes", "k": k}]
    if break_ties:
        #  predict = argmax of the ovr decision_function (first on ties)
        if proba:
            ops += _fork(P, [proba])
            outputs.append(("probabilities", None, [-1, k]))
        ops += [{"op": "ovr_decision", "k": k}, {"op": "output", "name": "decision_function"}]
        outputs.append(("decision_function", None, [-1, k]))
    elif k == 2 and not proba:
        #  scikit-learn's binary decision_function is minus libsvm's value:
        #  negated twice (exactly), so that the votes see libsvm's sign
        neg = _dense_op(np.array([[-1.0]]), np.zeros(1))
        ops += [neg, {"op": "output", "name": "decision_function", "flatten": True}, neg] + votes
        outputs.append(("decision_function", None, [-1]))
    elif shape == "ovo" and k > 2:
        ops.append({"op": "output", "name": "decision_function"})
        outputs.append(("decision_function", None, [-1, P]))
        if proba:
            ops += _fork(P, [proba])
            outputs.append(("probabilities", None, [-1, k]))
        ops += votes
    else:
        if k == 2:
            df = ([_dense_op(np.array([[-1.0]]), np.zeros(1)),
                   {"op": "output", "name": "decision_function", "flatten": True}], 1)
            outputs.append(("decision_function", None, [-1]))
        else:
            df = ([{"op": "ovr_decision", "k": k},
                   {"op": "output", "name": "decision_function"}], k)
            outputs.append(("decision_function", None, [-1, k]))
        branches = [df]
        if proba:
            branches.append(proba)
            outputs.append(("probabilities", None, [-1, k]))
        ops += _fork(P, branches) + votes
    ops += [{"op": "argmax", "labels": labels}, {"op": "output", "name": "label"}]
    outputs.append(("label", label_dtype, [-1]))
    return ops, outputs


def _linear_classifier(est, what, width, dtype=None):
    """decision_function = X coef_^T + intercept_; label: binary classes_[1]
    where it is > 0, else argmax; probabilities for SGDClassifier's log_loss."""
    np = _np()
    y_type = getattr(getattr(est, "_label_binarizer", None), "y_type_", "")
    if y_type.startswith("multilabel"):
        raise Refused("%s is a multilabel classifier: amaas serves single-label classifiers "
                      "only" % what)
    labels, label_dtype = _labels(est, what)
    k = len(labels)
    coef = _dense_array(est.coef_, what + " coef_", (2,))
    b = _dense_array(est.intercept_, what + " intercept_", (0, 1))
    rows = 1 if k == 2 else k
    b = np.broadcast_to(b, (coef.shape[0],)).copy() if b.size in (1, coef.shape[0]) else b
    if coef.shape != (rows, width) or b.shape != (rows,):
        raise Refused("%s: coef_ %s and intercept_ %s do not fit %d classes and %d features"
                      % (what, coef.shape, b.shape, k, width))
    ops = [_dense_op(coef.T.copy(), b),
           {"op": "output", "name": "decision_function", "flatten": k == 2}]
    outputs = [("decision_function", None, [-1] if k == 2 else [-1, k])]
    if getattr(est, "loss", None) in ("log_loss", "log") and hasattr(est, "predict_proba"):
        #  scikit-learn's _predict_proba_lr: expit, then [1 - p, p] or / sum
        tail = [{"op": "binary"}] if k == 2 else [{"op": "normalize"}]
        ops += _fork(rows, [([{"op": "sigmoid"}] + tail +
                             [{"op": "output", "name": "probabilities"}], k)])
        outputs.append(("probabilities", None, [-1, k]))
    if k == 2:
        #  argmax of [-d, d]: classes_[1] only for d > 0 (d = 0 ties to classes_[0])
        ops.append(_dense_op(np.array([[-1.0, 1.0]]), np.zeros(2)))
    ops += [{"op": "argmax", "labels": labels}, {"op": "output", "name": "label"}]
    outputs.append(("label", label_dtype, [-1]))
    return ops, outputs


LINEAR_REGRESSORS = ("Lasso", "LassoCV", "ElasticNet", "ElasticNetCV", "Lars", "LarsCV",
                     "LassoLars", "LassoLarsCV", "LassoLarsIC", "OrthogonalMatchingPursuit",
                     "BayesianRidge", "ARDRegression", "SGDRegressor", "HuberRegressor",
                     "PassiveAggressiveRegressor", "LinearSVR", "RidgeCV", "QuantileRegressor",
                     "TheilSenRegressor", "MultiTaskLasso", "MultiTaskElasticNet")
LINEAR_CLASSIFIERS = ("SGDClassifier", "Perceptron", "RidgeClassifier", "RidgeClassifierCV",
                      "PassiveAggressiveClassifier", "LinearSVC")


def kinds():
    """({estimator class: translator}, {transformer class: translator})."""
    import sklearn.linear_model as lm
    import sklearn.svm as svm
    estimators = {svm.SVC: _svc, svm.NuSVC: _svc, svm.SVR: _svr, svm.NuSVR: _svr,
                  svm.OneClassSVM: _one_class}
    for name in LINEAR_REGRESSORS:
        cls = getattr(lm, name, None) or getattr(svm, name, None)
        if cls is not None:
            estimators[cls] = _linear_regressor
    for name in LINEAR_CLASSIFIERS:
        cls = getattr(lm, name, None) or getattr(svm, name, None)
        if cls is not None:
            estimators[cls] = _linear_classifier
    return estimators, {}
