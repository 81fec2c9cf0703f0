#!/usr/bin/python3
"""models.py - trains the benchmark models and writes them to a folder.

    /usr/bin/python3 bench/models.py DIR

Writes, for each model NAME, DIR/NAME.joblib (the fitted scikit-learn object,
served by bench/flask_app.py) and DIR/NAME.amm (exported with
scripts/amaas-export, served by amaas-worker --models DIR):

  linear  the example LinearRegression (examples/train_examples.py's recipe):
          input [rows, 1] -> predictions [rows], FP64
  iris    the example StandardScaler + MLPClassifier(10 relu units) on iris
          (same recipe): input [rows, 4] -> probabilities [rows, 3], label, FP64
  mlp     MLPClassifier 256 -> 1024 -> 1024 -> 10 (relu, softmax) trained for a
          few iterations on random data with 10 classes, exported --dtype FP32:
          the compute benchmark, 2 * (256*1024 + 1024*1024 + 1024*10) flops per row
  forest  RandomForestClassifier, 100 trees (scikit-learn's defaults: grown to pure
          leaves) on a generated 20-feature, 4-class problem, FP64
  svc     SVC, rbf kernel, on a generated 20-feature, 3-class problem with label
          noise so that it keeps about 1,000 support vectors (1,026), FP64
  xgb500  XGBRegressor, 500 trees of depth 6 on a generated 20-feature regression;
          DIR/xgb500.json is XGBoost's own model file (exported from it), no
          .joblib; FP32, as XGBoost computes

and DIR/x20.f64: 4,096 rows of 20 features (raw FP64) from the same distribution,
the input of the compute comparisons (bench/model_compute.c and
bench/framework_compute.py).

Everything is seeded.  Training takes about half a minute.
"""

import os
import subprocess
import sys
import warnings

import joblib
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXPORTER = os.path.join(ROOT, "scripts", "amaas-export")
sys.path.insert(0, os.path.join(ROOT, "examples"))
import train_examples  # noqa: E402  (the example models' recipes)

SEED = 42
MLP_LAYERS = (256, 1024, 1024, 10)


def train_mlp():
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((2000, MLP_LAYERS[0]))
    y = rng.integers(0, MLP_LAYERS[-1], size=2000)
    model = MLPClassifier(hidden_layer_sizes=MLP_LAYERS[1:-1], max_iter=3, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few iterations, on purpose
        model.fit(x, y)
    print("mlp: %s, %d iterations" % ("-".join(map(str, MLP_LAYERS)), model.n_iter_))
    return model


WIDE = 20                 # features of forest, svc, xgb500 and x20.f64


def wide_rows(rng, n):
    return rng.standard_normal((n, WIDE))


def wide_classes(rng, x, k, noise):
    """k classes from a fixed random linear score of x, a fraction noise relabelled."""
    w = np.random.default_rng(SEED + 1).standard_normal((WIDE, k))
    y = np.argmax(x @ w + 0.5 * rng.standard_normal((len(x), k)), axis=1)
    flip = rng.random(len(x)) < noise
    y[flip] = rng.integers(0, k, size=int(flip.sum()))
    return y


def train_forest():
    from sklearn.ensemble import RandomForestClassifier
    rng = np.random.default_rng(SEED + 2)
    x = wide_rows(rng, 2000)
    model = RandomForestClassifier(n_estimators=100, random_state=SEED)
    model.fit(x, wide_classes(rng, x, 4, 0.05))
    print("forest: 100 trees, %d nodes" % sum(t.tree_.node_count for t in model.estimators_))
    return model


def train_svc():
    from sklearn.svm import SVC
    rng = np.random.default_rng(SEED + 3)
    x = wide_rows(rng, 1400)
    model = SVC(kernel="rbf", C=1.0).fit(x, wide_classes(rng, x, 3, 0.15))
    print("svc: %d support vectors" % len(model.support_))
    return model


def train_xgb500(out):
    """Writes out/xgb500.json; returns the path (exported from it, not from a joblib)."""
    import xgboost
    rng = np.random.default_rng(SEED + 4)
    x = wide_rows(rng, 5000)
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.standard_normal(len(x))
    model = xgboost.XGBRegressor(n_estimators=500, max_depth=6, learning_rate=0.05,
                                 n_jobs=1, random_state=SEED)
    model.fit(x, y)
    path = os.path.join(out, "xgb500.json")
    model.get_booster().save_model(path)
    print("xgb500: 500 trees, depth 6")
    return path


MODELS = (("linear", train_examples.train_linear, "FP64"),
          ("iris", train_examples.train_iris, "FP64"),
          ("mlp", train_mlp, "FP32"),
          ("forest", train_forest, "FP64"),
          ("svc", train_svc, "FP64"),
          ("xgb500", train_xgb500, "FP32"))


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write(__doc__)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    wide_rows(np.random.default_rng(SEED + 5), 4096).astype("<f8").tofile(
        os.path.join(out, "x20.f64"))
    for name, train, dtype in MODELS:
        if name == "xgb500":
            src = train(out)
        else:
            src = os.path.join(out, name + ".joblib")
            joblib.dump(train(), src)
        r = subprocess.run(["/usr/bin/python3", EXPORTER, "--dtype", dtype, src,
                            os.path.join(out, name + ".amm")])
        if r.returncode != 0:
            return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
