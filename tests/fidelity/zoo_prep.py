"""zoo_prep - fitted models of the prep family for tests/fidelity/zoo.py:
preprocessing transformers, ColumnTransformer and pipelines of them.  build() returns zoo.Case objects (seeded: the same models every run)."""


def build():
    """The family's cases, fitted."""
    return []
