"""amm_ref_svm - the numpy reference of the svm ops (docs/MODEL_FORMAT.md), for
tests/amm_reference.py, which imports this module: it registers each op in
amm_reference.FAMILY as name -> (check, run)."""

import amm_reference as ref  # noqa: F401

