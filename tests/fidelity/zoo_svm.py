"""zoo_svm - fitted models of the svm family for tests/fidelity/zoo.py:
SVMs and the linear models that reduce to dense ops.  build() returns zoo.Case objects (seeded: the same models every run)."""


def build():
    """The family's cases, fitted."""
    return []
