"""translate - a fitted model (estimator or Pipeline) to the format's ops."""

from . import linear, prep, svm, trees
from .common import MAX_WIDTH, Refused, _check_fitted, _width  # noqa: F401

FAMILIES = (linear, trees, svm, prep)
_KINDS = None


def kinds():
    """({estimator class: translator}, {transformer class: translator}) of every family."""
    global _KINDS
    if _KINDS is None:
        estimators, transformers = {}, {}
        for family in FAMILIES:
            e, t = family.kinds()
            estimators.update(e)
            transformers.update(t)
        _KINDS = estimators, transformers
    return _KINDS


def supported():
    """The class names accepted, for messages: 'LinearRegression, Ridge, ...'."""
    estimators, transformers = kinds()
    return ", ".join(sorted(c.__name__ for c in list(estimators) + list(transformers)))


def steps(model):
    """The pipeline's steps, flattened, without passthrough steps: [(name, est)]."""
    from sklearn.pipeline import Pipeline
    if type(model) is not Pipeline:
        return [(type(model).__name__, model)]
    out = []
    for name, est in model.steps:
        if est is None or (isinstance(est, str) and est == "passthrough"):
            continue
        for sub, e in steps(est):
            out.append(("%s/%s" % (name, sub) if type(est) is Pipeline else name, e))
    return out


def transformer_ops(est, what, width, dtype):
    """(ops, new_width) of one transformer (not a Pipeline), fitted on `width`
    features; Refused if it is not a transformer amaas can compute."""
    _, transformers = kinds()
    t = type(est)
    if t not in transformers:
        raise Refused("%s cannot be exported: amaas takes %s, or a Pipeline of those"
                      % (what, supported()))
    _check_fitted(est, what)
    n = _width(est, what, fallback=width)
    if n != width:
        raise Refused("%s takes %d features but gets %d" % (what, n, width))
    return transformers[t](est, what, width, dtype)


def translate(model, dtype="FP64"):
    """(width, ops, outputs, source) for a fitted model; raises Refused."""
    import sklearn
    from sklearn.base import BaseEstimator
    from sklearn.pipeline import Pipeline

    estimators, transformers = kinds()
    is_pipe = type(model) is Pipeline
    foreign = not isinstance(model, BaseEstimator) and type(model) not in estimators
    if not is_pipe and foreign:
        raise Refused("the file holds a %s.%s, not a scikit-learn estimator"
                      % (type(model).__module__, type(model).__name__))
    chain = steps(model)
    if not chain:
        raise Refused("the pipeline has no steps other than 'passthrough'")
    ops = []
    outputs = None
    width = None
    w = None
    for i, (name, est) in enumerate(chain):
        what = ("step %r (%s)" % (name, type(est).__name__)) if is_pipe else type(est).__name__
        last = i == len(chain) - 1
        t = type(est)
        if t not in transformers and t not in estimators:
            raise Refused("%s cannot be exported: amaas takes %s, or a Pipeline of those"
                          % (what, supported()))
        _check_fitted(est, what)
        n = _width(est, what, fallback=w)
        if w is None:
            width = w = n
        elif n != w:
            raise Refused("%s takes %d features but the step before gives %d" % (what, n, w))
        if t in transformers:
            step_ops, w = transformers[t](est, what, w, dtype)
            ops += step_ops
            if not 1 <= w <= MAX_WIDTH:
                raise Refused("%s gives %d features; the format allows 1..%d"
                              % (what, w, MAX_WIDTH))
            continue
        if not last:
            raise Refused("%s is not the last step: only transformers may come before the "
                          "estimator" % what)
        est_ops, outputs = estimators[t](est, what, w, dtype)
        ops += est_ops
    if outputs is None:                 # transformers only
        ops.append({"op": "output", "name": "transformed"})
        outputs = [("transformed", None, [-1, w])]
    desc = ", ".join(type(e).__name__ for _, e in chain)
    source = "scikit-learn %s: %s" % (sklearn.__version__,
                                      "Pipeline(%s)" % desc if is_pipe else desc)
    return width, ops, outputs, source
