"""test_exporter - scripts/amaas-export against docs/MODEL_FORMAT.md and scikit-learn.

Runs the exporter (as a subprocess, like a user) on every model kind it
accepts and checks that each file decodes with msgpack and follows the format
(tests/amm_reference.py checks every rule: op chain widths, bin sizes, output
declarations), that every weight bin starts at a file offset that is a
multiple of 64, that FP32 files hold 4-byte weights, and that interpreting the
file with numpy (amm_reference.run) reproduces sklearn's predict /
predict_proba / transform to 1e-12 (FP64; 1e-5 for FP32, the fidelity test's
criterion: |got - ref| <= rtol * max(1, |ref|)).  Then it checks that what the
exporter must refuse is refused with exit status 2 and one clear line on
stderr, and the command line (--name default, --version, --help).

No C code is involved: this proves the exporter on its own.

    ctest -R exporter, or /usr/bin/python3 -m pytest tests/test_exporter.py
"""

import contextlib
import importlib.machinery
import importlib.util
import io
import json
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "fidelity"))

import joblib  # noqa: E402
import msgpack  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import amm_reference  # noqa: E402
import zoo  # noqa: E402

EXPORTER = os.path.join(os.path.dirname(HERE), "scripts", "amaas-export")
PYTHON = "/usr/bin/python3"
def export(src, dst, *args):
    """Runs the exporter as a user does: a subprocess."""
    return subprocess.run([PYTHON, EXPORTER, src, dst, *args], capture_output=True, text=True,
                          timeout=120)


_module = None


def export_inproc(src, dst, *args):
    """Runs the exporter's main() in this process (the same code, without paying
    for a Python start and a scikit-learn import per file).  Returns (status, stderr)."""
    global _module
    if _module is None:
        sys.dont_write_bytecode = True       # no scripts/__pycache__
        loader = importlib.machinery.SourceFileLoader("amaas_export", EXPORTER)
        spec = importlib.util.spec_from_loader("amaas_export", loader)
        _module = importlib.util.module_from_spec(spec)
        loader.exec_module(_module)
    err = io.StringIO()
    saved = warnings.showwarning
    try:
        with contextlib.redirect_stderr(err):
            status = _module.main([src, dst, *args])
    finally:
        warnings.showwarning = saved
    return status, err.getvalue()


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_file(path, dtype):
    """Decodes the file, checks it against the format, returns the checked model."""
    data = open(path, "rb").read()
    raw = msgpack.unpackb(data, raw=False)          # plain msgpack decoding works
    expect(isinstance(raw, dict) and raw["format"] == "amaas-model", "not an amaas model map")
    model = amm_reference.load_bytes(data)          # every rule of the format
    expect(model["datatype"] == dtype, "datatype %s, wanted %s" % (model["datatype"], dtype))
    expect(model["input"] == "input", "input named %r" % model["input"])
    size = 8 if dtype == "FP64" else 4
    weights = [(p, off, n) for p, off, n in amm_reference.bin_offsets(data)
               if not p.endswith("/pad")]
    expect(weights, "no weight bins")
    for p, off, n in weights:
        expect(off % 64 == 0, "%s starts at offset %d, not a multiple of 64" % (p, off))
        if p.rsplit("/", 1)[-1] in ("weights", "bias", "mean", "scale"):
            expect(n % size == 0, "%s holds %d bytes, not %d-byte values" % (p, n, size))
    #  bin sizes versus declared shapes, stated here once more on the raw map
    w = raw["input"]["width"]
    for i, op in enumerate(raw["ops"]):
        if op["op"] == "dense":
            expect(op["in"] == w, "op %d in %d != width %d" % (i, op["in"], w))
            expect(len(op["weights"]) == op["in"] * op["out"] * size, "op %d weights size" % i)
            expect(len(op["bias"]) == op["out"] * size, "op %d bias size" % i)
            w = op["out"]
        elif op["op"] not in ("scale", "binary") + amm_reference.ELEMENTWISE:
            break                       # a family op: amm_reference checked the rest
        elif op["op"] == "scale":
            expect(op["width"] == w and len(op["mean"]) == len(op["scale"]) == w * size,
                   "op %d scale sizes" % i)
        elif op["op"] == "binary":
            w = 2
    return model


def _export_status(*args):
    r = export(*args)
    return r.returncode, r.stderr


CASES = zoo.build()


@pytest.mark.parametrize("dtype,rtol", [("FP64", 1e-12), ("FP32", 1e-5)])
@pytest.mark.parametrize("index", range(len(CASES)), ids=[case.name for case in CASES])
def test_kind(index, dtype, rtol, tmp_path):
    """Every 10th kind exported as a subprocess, the others in this process."""
    case = CASES[index]
    tmp = str(tmp_path)
    src = os.path.join(tmp, case.name + ".joblib")
    joblib.dump(case.model, src)
    x = case.rows(300)
    ref = case.reference(x)
    out = os.path.join(tmp, "%s_%s.amm" % (case.name, dtype))
    status, stderr = (export_inproc if index % 10 else _export_status)(src, out, "--dtype", dtype)
    expect(status == 0, "exit %d: %s" % (status, stderr.strip()))
    model = check_file(out, dtype)
    expect(model["name"] == "%s_%s" % (case.name, dtype), "name %r" % model["name"])
    expect(model["width"] == case.width, "width %d" % model["width"])
    got = amm_reference.run(model, x)
    if case.rtol:
        rtol = max(rtol, case.rtol[dtype])
    err, ok, note = zoo.compare(ref, got, rtol, allow_ties=(dtype == "FP32"))
    expect(ok, "%s (max error %.3g)" % (note, err))
    print("%-30s %s max error %.2e %s" % (case.name, dtype, err, note))


def refused_cases():
    """(name, object to pickle, words the message must contain)."""
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA, KernelPCA
    from sklearn.impute import SimpleImputer
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.multioutput import MultiOutputClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import (FunctionTransformer, MinMaxScaler, OneHotEncoder,
                                       StandardScaler)
    from sklearn.linear_model import RidgeClassifier, TweedieRegressor
    from sklearn.svm import SVC
    import scipy.sparse

    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    Y2 = np.c_[y, X[:, 1] > 0].astype(int)
    cats = rng.integers(0, 6, size=(60, 1)) ** 2
    sparse = LogisticRegression().fit(X, y)
    sparse.sparsify()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        multilabel = MLPClassifier((4,), max_iter=20, random_state=0).fit(X, Y2)
    return [
        ("unfitted", LinearRegression(), "not fitted"),
        ("unfitted_pipeline", make_pipeline(StandardScaler(), LogisticRegression()), "not fitted"),
        ("forest_multi_output", RandomForestClassifier(n_estimators=3).fit(X, Y2),
         "single-output"),
        ("gb_init_estimator", GradientBoostingRegressor(init=LinearRegression(), n_estimators=3)
         .fit(X, X[:, 0]), "init=LinearRegression"),
        *_xgboost_refused(X, y),
        ("svc_precomputed", SVC(kernel="precomputed").fit(X @ X.T, y), "precomputed"),
        ("svc_sparse", SVC().fit(scipy.sparse.csr_matrix(X), y), "sparse"),
        ("ridge_multilabel", RidgeClassifier().fit(X, Y2), "multilabel"),
        ("tweedie", TweedieRegressor().fit(X, np.abs(X[:, 0])), "TweedieRegressor"),
        ("kmeans", KMeans(2, n_init=2).fit(X), "KMeans"),
        ("multioutput", MultiOutputClassifier(LogisticRegression()).fit(X, Y2),
         "MultiOutputClassifier"),
        ("multilabel_mlp", multilabel, "multilabel"),
        ("sparse_coef", sparse, "sparse"),
        ("float_classes", LogisticRegression().fit(X, y.astype(float)), "float class labels"),
        ("bool_classes", LogisticRegression().fit(X, y.astype(bool)), "boolean"),
        ("kernel_pca_pipeline", make_pipeline(StandardScaler(), KernelPCA(2), LinearRegression())
         .fit(X, X[:, 0]), "KernelPCA"),
        ("onehot_strings", OneHotEncoder().fit(np.array([["a"], ["b"], ["a"]])),
         "only numeric categories"),
        ("onehot_infrequent", OneHotEncoder(min_frequency=5).fit(cats), "infrequent"),
        ("imputer_not_nan", SimpleImputer(missing_values=-1.0).fit(X), "missing_values=-1.0"),
        ("ct_weights", ColumnTransformer([("a", StandardScaler(), [0]), ("b", "passthrough", [1])],
                                         transformer_weights={"a": 2.0}).fit(X),
         "transformer_weights"),
        ("ct_function_part", ColumnTransformer([("f", FunctionTransformer(np.log1p), [0])])
         .fit(np.abs(X)), "(FunctionTransformer) cannot be exported"),
        ("ct_estimator_in_part_pipeline",
         ColumnTransformer([("p", make_pipeline(StandardScaler(), PCA(1)), [0, 1]),
                            ("k", make_pipeline(MinMaxScaler(), KernelPCA(1)), [2])]).fit(X),
         "(KernelPCA) cannot be exported"),
        ("estimator_not_last", Pipeline([("lr", LinearRegression().fit(X, y)),
                                         ("sc", StandardScaler().fit(X[:, :1]))]),
         "not the last step"),
        ("only_passthrough", Pipeline([("a", "passthrough")]), "no steps"),
        ("not_an_estimator", {"coef": [1, 2, 3]}, "not a scikit-learn estimator"),
        ("numpy_array", np.zeros(3), "not a scikit-learn estimator"),
    ]


def _xgboost_refused(X, y):
    """XGBoost models of objectives and boosters amaas does not compute."""
    try:
        import xgboost as xgb
    except ImportError:  # pragma: no cover
        return []
    return [
        ("xgb_objective", xgb.XGBRegressor(objective="reg:pseudohubererror", n_estimators=2)
         .fit(X, X[:, 0]), "reg:pseudohubererror"),
        ("xgb_dart", xgb.XGBClassifier(booster="dart", n_estimators=2).fit(X, y), "dart"),
    ]


REFUSED = refused_cases()


@pytest.mark.parametrize("name,obj,words", REFUSED, ids=[name for name, _, _ in REFUSED])
def test_refused(name, obj, words, tmp_path):
    tmp = str(tmp_path)
    src = os.path.join(tmp, "bad_%s.joblib" % name)
    joblib.dump(obj, src)
    out = os.path.join(tmp, "bad_%s.amm" % name)
    r = export(src, out)
    expect(r.returncode == 2, "exit %d, wanted 2; stderr: %s" % (r.returncode, r.stderr.strip()))
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("amaas-export: warning:")]
    expect(len(lines) == 1, "stderr is not one line: %r" % r.stderr)
    expect("Traceback" not in r.stderr, "traceback on stderr")
    expect(lines[0].startswith("amaas-export: error:"), "message %r" % lines[0])
    expect(words.lower() in lines[0].lower(), "message %r lacks %r" % (lines[0], words))
    expect(not os.path.exists(out), "an output file was written")
    expect(not [f for f in os.listdir(tmp) if f.startswith(".bad_")], "a temp file was left")
    print(lines[0])


@pytest.fixture
def cli(tmp_path):
    """(a fitted linear model's joblib file, the folder it is in)"""
    from sklearn.linear_model import LinearRegression
    tmp = str(tmp_path)
    src = os.path.join(tmp, "cli.joblib")
    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [1.0, 3.0]), src)
    return src, tmp


def test_cli_name_default(cli):
    src, tmp = cli
    out = os.path.join(tmp, "my-model.v2.amm")
    r = export(src, out)
    expect(r.returncode == 0, r.stderr)
    m = amm_reference.load(out)
    expect(m["name"] == "my-model.v2", "name %r" % m["name"])
    expect(m["version"] == "1", "version %r" % m["version"])
    expect(m["datatype"] == "FP64", "default dtype %r" % m["datatype"])


def test_cli_name_version_given(cli):
    src, tmp = cli
    out = os.path.join(tmp, "whatever.amm")
    r = export(src, out, "--name", "lin", "--version", "2024.06-a", "--dtype", "fp32")
    expect(r.returncode == 0, r.stderr)
    m = amm_reference.load(out)
    expect((m["name"], m["version"], m["datatype"]) == ("lin", "2024.06-a", "FP32"),
           "got %r" % ((m["name"], m["version"], m["datatype"]),))
    got = amm_reference.run(m, np.array([[0.5], [2.0]]))["predictions"]
    expect(got.dtype == np.float32 and np.allclose(got, [2.0, 5.0], rtol=1e-6),
           "predictions %r" % got)


def test_cli_replaces_atomically(cli):
    src, tmp = cli
    out = os.path.join(tmp, "replace.amm")
    with open(out, "wb") as f:
        f.write(b"old")
    r = export(src, out)
    expect(r.returncode == 0, r.stderr)
    amm_reference.load(out)
    expect(not [f for f in os.listdir(tmp) if f.startswith(".replace")], "temp file left")


def test_cli_bad_names(cli):
    src, tmp = cli
    for args, out in ((["--name", "has space"], "x.amm"), ([], "has space.amm"),
                      (["--name", "x" * 128], "x.amm"), (["--version", ""], "x.amm"),
                      (["--version", "1 2"], "x.amm"), (["--dtype", "INT8"], "x.amm")):
        r = export(src, os.path.join(tmp, out), *args)
        expect(r.returncode == 2, "%s: exit %d" % (args, r.returncode))
        expect("Traceback" not in r.stderr, "traceback")


def test_cli_missing_and_garbage_input(cli):
    src, tmp = cli
    r = export(os.path.join(tmp, "nope.joblib"), os.path.join(tmp, "nope.amm"))
    expect(r.returncode == 1 and "no such file" in r.stderr, "missing: %d %r"
           % (r.returncode, r.stderr))
    garbage = os.path.join(tmp, "garbage.joblib")
    with open(garbage, "wb") as f:
        f.write(b"this is not a pickle\n" * 10)
    r = export(garbage, os.path.join(tmp, "garbage.amm"))
    expect(r.returncode == 1 and "Traceback" not in r.stderr and
           len(r.stderr.strip().splitlines()) == 1, "garbage: %d %r" % (r.returncode, r.stderr))


def test_cli_unwritable_output(cli):
    src, tmp = cli
    r = export(src, os.path.join(tmp, "no", "such", "dir.amm"))
    expect(r.returncode == 1 and "cannot write" in r.stderr, "%d %r" % (r.returncode, r.stderr))


def test_cli_help_text(cli):
    src, tmp = cli
    r = subprocess.run([EXPORTER, "--help"], capture_output=True, text=True)
    expect(r.returncode == 0, "exit %d" % r.returncode)
    for word in ("--name", "--version", "--dtype", "runs code", "trust", "Pipeline"):
        expect(word in r.stdout, "--help lacks %r" % word)


def test_cli_is_executable(cli):
    src, tmp = cli
    expect(os.access(EXPORTER, os.X_OK), "not executable")
    expect(open(EXPORTER).readline().strip() == "#!/usr/bin/python3", "shebang")


def test_reference_rejects(tmp_path):
    """The reference reader itself refuses broken files (so its approval means something)."""
    tmp = str(tmp_path)
    src = os.path.join(tmp, "ref.joblib")
    from sklearn.linear_model import LogisticRegression
    joblib.dump(LogisticRegression().fit([[0.0, 1], [1, 0], [1, 1], [0, 0]], [0, 1, 1, 0]), src)
    out = os.path.join(tmp, "ref.amm")
    expect(export(src, out).returncode == 0, "export failed")
    good = msgpack.unpackb(open(out, "rb").read(), raw=False)

    def mutated(fn):
        m = msgpack.unpackb(msgpack.packb(good, use_bin_type=True), raw=False)
        fn(m)
        return msgpack.packb(m, use_bin_type=True)

    bad = {
        "format": lambda m: m.update(format="other"),
        "version": lambda m: m.update(format_version=2),
        "dtype": lambda m: m.update(datatype="FP16"),
        "width chain": lambda m: m["ops"][0].update({"in": 3}),
        "bin size": lambda m: m["ops"][0].update(bias=b"\0" * 7),
        "output name": lambda m: m["outputs"][0].update(name="probs"),
        "output shape": lambda m: m["outputs"][1].update(shape=[-1, 1]),
        "missing output": lambda m: m["outputs"].pop(),
        "op after argmax": lambda m: m["ops"].insert(-1, {"op": "relu"}),
        "binary width": lambda m: m["ops"].insert(1, {"op": "binary"}),
        "unknown op": lambda m: m["ops"].insert(1, {"op": "gelu"}),
    }

    amm_reference.load_bytes(mutated(lambda m: None))
    for what, fn in bad.items():
        try:
            amm_reference.load_bytes(mutated(fn))
        except amm_reference.FormatError:
            continue
        raise AssertionError("reference accepted a file with a bad " + what)


def test_xgboost_json_file(tmp_path):
    """An XGBoost JSON model file is exported as is (exporter in a subprocess,
    which never imports xgboost for it), early-stopped rounds left out; a
    broken JSON file or one of another objective is refused."""
    xgb = pytest.importorskip("xgboost")
    tmp = str(tmp_path)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 6))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) + rng.normal(size=300) > 0).astype(int)
    m = xgb.XGBClassifier(n_estimators=50, max_depth=4, learning_rate=0.5,
                          early_stopping_rounds=3, random_state=0)
    m.fit(X[:200], y[:200], eval_set=[(X[200:], y[200:])], verbose=False)
    src = os.path.join(tmp, "clf.json")
    m.get_booster().save_model(src)
    x = rng.normal(size=(200, 6))
    x[rng.random(x.shape) < 0.1] = np.nan
    for dtype in ("FP64", "FP32"):
        out = os.path.join(tmp, "clf_%s.amm" % dtype)
        r = export(src, out, "--dtype", dtype)
        expect(r.returncode == 0, r.stderr)
        got = amm_reference.run(check_file(out, dtype), x)
        ref = {"probabilities": m.predict_proba(x), "label": m.predict(x)}
        err, ok, note = zoo.compare(ref, got, 1e-5, allow_ties=True)
        expect(ok, "%s %s (max error %.3g)" % (dtype, note, err))
        print("xgboost json %s max error %.2e, %d of 50 rounds" % (dtype, err,
                                                                  m.best_iteration + 1))
    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as f:
        f.write("{not json")
    r = export(bad, os.path.join(tmp, "bad.amm"))
    expect(r.returncode == 1 and "not an XGBoost JSON model" in r.stderr, r.stderr)
    booster = xgb.train({"objective": "reg:logistic"}, xgb.DMatrix(X, label=y),
                        num_boost_round=2)
    booster.save_model(bad)
    r = export(bad, os.path.join(tmp, "bad.amm"))
    expect(r.returncode == 2 and "objective reg:logistic" in r.stderr, r.stderr)
    #  A file cut or edited by hand: one line naming what is wrong, no traceback
    doc = json.load(open(src))
    cut = json.loads(json.dumps(doc))
    del cut["learner"]["gradient_booster"]["model"]["trees"]
    edited = json.loads(json.dumps(doc))
    edited["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"] = [1]
    garbled = json.loads(json.dumps(doc))
    garbled["learner"]["gradient_booster"]["model"]["trees"][0]["split_conditions"] = "x"
    for what, d, words in (("cut", cut, "no key 'trees'"), ("edited", edited, "not a valid"),
                           ("garbled", garbled, "not a valid")):
        with open(bad, "w") as f:
            json.dump(d, f)
        r = export(bad, os.path.join(tmp, "bad.amm"))
        lines = r.stderr.strip().splitlines()
        expect(r.returncode == 2 and len(lines) == 1 and words in lines[0]
               and "Traceback" not in r.stderr, "%s: %s" % (what, r.stderr))
