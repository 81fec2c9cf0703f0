"""zoo_trees - fitted models of the trees family for tests/fidelity/zoo.py:
decision trees, forests, boosting (scikit-learn and XGBoost).  build() returns zoo.Case objects (seeded: the same models every run)."""


def build():
    """The family's cases, fitted."""
    return []
