"""svm - support vector machines and the linear models that reduce to dense."""


def kinds():
    """({estimator class: translator}, {transformer class: translator})."""
    return {}, {}
