"""prep - preprocessing transformers and ColumnTransformer."""


def kinds():
    """({estimator class: translator}, {transformer class: translator})."""
    return {}, {}
