"""test_fidelity - served predictions match scikit-learn's own.

    ctest -R fidelity, or
    AMAAS_FIDELITY_ROWS=N /usr/bin/python3 -m pytest --build-dir BUILD tests/fidelity

Trains one model of every kind scripts/amaas-export accepts (tests/fidelity/zoo.py:
linear and ridge regression with one and several targets, logistic regression
binary / multinomial / one-vs-rest with integer and string labels, MLP
regressors and classifiers with each hidden activation, StandardScaler alone
and pipelines), exports each in FP64 (model NAME) and in FP32 (model
NAME_fp32) into a temporary model repository, starts a real broker and worker
from BUILD_DIR (tests/harness.py), sends N random rows (default 400) to each
model (AMAAS_FIDELITY_ROWS) through tests/pyamaas.py and compares the outputs with sklearn's
predict / predict_proba / transform on the same rows.

The rows of one model go as several pipelined requests of different sizes
(1, 7, 92 and the rest), so that dynamic batching and splitting the batch back
per job are part of what is checked.

Criterion, for every value of every float output (predictions, probabilities,
transformed):

    |served - sklearn| <= rtol * max(1, |sklearn|)

with rtol = 1e-9 for FP64 models and 1e-5 for FP32 models: a relative error,
with an absolute floor of rtol for values of magnitude below 1 (probabilities
near 0 or 1, predictions near 0).  Output names, shapes and datatypes must be
what the model file declares (FP64 or FP32 values as the model's datatype,
labels INT64 or BYTES).  Class labels must be identical to sklearn's predict;
for FP32 models only, a row whose two largest sklearn probabilities are within
1e-5 of each other is a tie at that precision and may get either label (such
rows are counted in the notes).

One test per model and datatype; each prints its largest error.
"""

import contextlib
import importlib.machinery
import importlib.util
import io
import os
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, HERE)

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pyamaas  # noqa: E402
from harness import Cluster, build_dir, wait_for  # noqa: E402
import zoo  # noqa: E402

EXPORTER = os.path.join(ROOT, "scripts", "amaas-export")
RTOL = {"FP64": 1e-9, "FP32": 1e-5}
CHUNKS = (1, 7, 92)          # request sizes; the rest of the rows go in a last request
ROWS = int(os.environ.get("AMAAS_FIDELITY_ROWS", "400"))
CASES = zoo.build()


def load_exporter():
    """scripts/amaas-export as a module (it has no .py extension)."""
    sys.dont_write_bytecode = True           # no scripts/__pycache__
    loader = importlib.machinery.SourceFileLoader("amaas_export", EXPORTER)
    spec = importlib.util.spec_from_loader("amaas_export", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def model_name(case, dtype):
    return case.name if dtype == "FP64" else case.name + "_fp32"


def export_all(cases, models_dir):
    """Exports every case in FP64 and FP32 (AssertionError if one fails)."""
    exporter = load_exporter()
    for case in cases:
        src = os.path.join(os.path.dirname(models_dir), case.name + ".joblib")
        joblib.dump(case.model, src)
        for dtype in ("FP64", "FP32"):
            name = model_name(case, dtype)
            err = io.StringIO()
            saved = warnings.showwarning
            try:
                with contextlib.redirect_stderr(err):
                    status = exporter.main([src, os.path.join(models_dir, name + ".amm"),
                                            "--dtype", dtype])
            finally:
                warnings.showwarning = saved
            assert status == 0, "export of %s %s failed: %s" % (case.name, dtype,
                                                                 err.getvalue().strip())


def models_served(client, names):
    """True once the broker knows every model of names (a worker registered them)."""
    try:
        return set(names) <= {m.get("name") for m in client.models(timeout_ms=1000)}
    except pyamaas.AmaasError:
        return False


def serve_rows(client, name, x):
    """Outputs of model `name` for rows x, sent as pipelined requests of several sizes."""
    bounds = [0]
    for n in CHUNKS:
        if bounds[-1] + n < len(x):
            bounds.append(bounds[-1] + n)
    bounds.append(len(x))
    ids = [client.send(name, {"input": x[a:b]}) for a, b in zip(bounds, bounds[1:])]
    parts = [client.recv(i)[0] for i in ids]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def check_types(got, dtype, case):
    """Datatypes of the served outputs; returns a note ('' if right)."""
    want_float = np.float64 if dtype == "FP64" else np.float32
    for k, v in got.items():
        if k == "label":
            labels = case.model.classes_ if hasattr(case.model, "classes_") else None
            want = object if labels is not None and np.asarray(labels).dtype.kind in "UO" \
                else np.int64
            if v.dtype != want:
                return "label dtype %s, expected %s" % (v.dtype, np.dtype(want))
        elif v.dtype != want_float:
            return "%s dtype %s, expected %s" % (k, v.dtype, np.dtype(want_float))
    return ""


@pytest.fixture(scope="module")
def client():
    """A client of a broker and a worker serving every case in both datatypes."""
    with tempfile.TemporaryDirectory(prefix="amaas-fidelity-") as tmp:
        models_dir = os.path.join(tmp, "models")
        os.mkdir(models_dir)
        export_all(CASES, models_dir)
        with Cluster(build_dir(), models_dir, workers=1) as cluster:
            with pyamaas.Client(cluster.frontend, timeout_ms=10000) as c:
                names = [model_name(case, dtype) for case in CASES for dtype in RTOL]
                wait_for("the worker to serve %d models" % len(names),
                         lambda: models_served(c, names), timeout=120)
                yield c


@pytest.mark.parametrize("dtype", list(RTOL))
@pytest.mark.parametrize("index", range(len(CASES)), ids=[case.name for case in CASES])
def test_served_matches_sklearn(client, index, dtype):
    case = CASES[index]
    name = model_name(case, dtype)
    x = case.rows(ROWS)
    ref = case.reference(x)
    got = serve_rows(client, name, x)
    rtol = case.rtol[dtype] if case.rtol else RTOL[dtype]
    err, ok, note = zoo.compare(ref, got, rtol, allow_ties=(dtype == "FP32" or bool(case.rtol)))
    print("%-36s %-5s max error %12.3e  %s" % (name, dtype, err, note))
    assert ok, "%s: max error %.3e, rtol %g: %s" % (name, err, rtol, note)
    type_note = check_types(got, dtype, case)
    assert not type_note, type_note
