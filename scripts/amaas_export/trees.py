"""trees - decision trees and their ensembles (scikit-learn, XGBoost)."""


def kinds():
    """({estimator class: translator}, {transformer class: translator})."""
    return {}, {}
