"""linear - linear models, logistic regression, MLPs and StandardScaler."""

from .common import (Refused, _check_fitted, _classifier_tail, _dense_array, _dense_op,  # noqa: F401
                     _labels, _np)


def _linear_regressor(est, what, width, dtype=None):
    np = _np()
    coef = _dense_array(est.coef_, what + " coef_", (1, 2))
    single = coef.ndim == 1
    W = coef.reshape(-1, 1) if single else coef.T
    m = W.shape[1]
    if W.shape[0] != width:
        raise Refused("%s: coef_ has %d features, n_features_in_ is %d" % (what, W.shape[0], width))
    b = _dense_array(est.intercept_, what + " intercept_", (0, 1))
    try:
        b = np.broadcast_to(b, (m,)).copy()
    except ValueError:
        raise Refused("%s: intercept_ has %d values for %d targets" % (what, b.size, m))
    ops = [_dense_op(W, b), {"op": "output", "name": "predictions", "flatten": single}]
    return ops, [("predictions", None, [-1] if single else [-1, m])]


def _logistic(est, what, width, dtype=None):
    np = _np()
    labels, _ = _labels(est, what)
    k = len(labels)
    coef = _dense_array(est.coef_, what + " coef_", (2,))
    b = _dense_array(est.intercept_, what + " intercept_", (1,))
    if coef.shape[1] != width:
        raise Refused("%s: coef_ has %d features, n_features_in_ is %d" % (what, coef.shape[1], width))
    rows = 1 if k == 2 else k
    if coef.shape[0] != rows or b.shape != (rows,):
        raise Refused("%s: coef_ %s and intercept_ %s do not fit %d classes"
                      % (what, coef.shape, b.shape, k))
    #  Same decision as LogisticRegression.predict_proba (scikit-learn 1.2).
    multi_class = getattr(est, "multi_class", "auto")
    if multi_class == "deprecated":      # scikit-learn >= 1.5 dropped the parameter
        multi_class = "auto"
    ovr = multi_class in ("ovr", "warn") or (
        multi_class == "auto" and (k <= 2 or est.solver in ("liblinear", "newton-cholesky")))
    if k == 2 and ovr:
        #  p = expit(d); proba = [1 - p, p]
        ops = [_dense_op(coef.T, b), {"op": "sigmoid"}, {"op": "binary"}]
    elif k == 2:
        #  multinomial with 2 classes: softmax([-d, d])
        W = np.concatenate([-coef.T, coef.T], axis=1)
        ops = [_dense_op(W, np.concatenate([-b, b])), {"op": "softmax"}]
    elif ovr:
        ops = [_dense_op(coef.T, b), {"op": "sigmoid"}, {"op": "normalize"}]
    else:
        ops = [_dense_op(coef.T, b), {"op": "softmax"}]
    tail, outputs = _classifier_tail(est, what, k)
    return ops + tail, outputs


HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def _mlp_layers(est, what, width):
    if est.activation not in HIDDEN:
        raise Refused("%s: hidden activation %r is not supported (identity, logistic, tanh, "
                      "relu are)" % (what, est.activation))
    coefs, intercepts = est.coefs_, est.intercepts_
    if len(coefs) != len(intercepts) or not coefs:
        raise Refused("%s: coefs_ and intercepts_ do not match" % what)
    ops = []
    w = width
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        W = _dense_array(W, "%s coefs_[%d]" % (what, i), (2,))
        b = _dense_array(b, "%s intercepts_[%d]" % (what, i), (1,))
        if W.shape[0] != w or b.shape != (W.shape[1],):
            raise Refused("%s: layer %d has shape %s, bias %s after width %d"
                          % (what, i, W.shape, b.shape, w))
        ops.append(_dense_op(W, b))
        w = W.shape[1]
        if i < len(coefs) - 1:
            ops.append({"op": HIDDEN[est.activation]})
    return ops, w


def _mlp_regressor(est, what, width, dtype=None):
    if est.out_activation_ != "identity":
        raise Refused("%s: output activation %r is not supported" % (what, est.out_activation_))
    ops, m = _mlp_layers(est, what, width)
    single = m == 1          # MLPRegressor.predict ravels a single output
    ops.append({"op": "output", "name": "predictions", "flatten": single})
    return ops, [("predictions", None, [-1] if single else [-1, m])]


def _mlp_classifier(est, what, width, dtype=None):
    y_type = getattr(getattr(est, "_label_binarizer", None), "y_type_", None)
    if y_type == "multilabel-indicator":
        raise Refused("%s is a multilabel classifier: amaas serves single-label classifiers "
                      "only" % what)
    labels, _ = _labels(est, what)
    k = len(labels)
    ops, m = _mlp_layers(est, what, width)
    if k == 2 and y_type == "binary" and est.out_activation_ == "logistic" and m == 1:
        ops += [{"op": "sigmoid"}, {"op": "binary"}]
    elif k > 2 and y_type == "multiclass" and est.out_activation_ == "softmax" and m == k:
        ops += [{"op": "softmax"}]
    else:
        raise Refused("%s: unsupported output (%s, %s activation, %d outputs, %d classes)"
                      % (what, y_type, est.out_activation_, m, k))
    tail, outputs = _classifier_tail(est, what, k)
    return ops + tail, outputs


def _scaler(est, what, width, dtype=None):
    np = _np()
    mean = (_dense_array(est.mean_, what + " mean_", (1,)) if est.with_mean
            else np.zeros(width))
    scale = (_dense_array(est.scale_, what + " scale_", (1,)) if est.with_std
             else np.ones(width))
    if mean.shape != (width,) or scale.shape != (width,):
        raise Refused("%s: mean_/scale_ do not have %d values" % (what, width))
    if np.any(scale == 0):
        raise Refused("%s: scale_ holds zeros" % what)
    return [{"op": "scale", "width": width, "mean": mean, "scale": scale}], width




def kinds():
    """({estimator class: translator}, {transformer class: translator})."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler
    return ({LinearRegression: _linear_regressor, Ridge: _linear_regressor,
             LogisticRegression: _logistic, MLPRegressor: _mlp_regressor,
             MLPClassifier: _mlp_classifier},
            {StandardScaler: _scaler})
