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

Everything is seeded.  Training the mlp takes a few seconds.
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


MODELS = (("linear", train_examples.train_linear, "FP64"),
          ("iris", train_examples.train_iris, "FP64"),
          ("mlp", train_mlp, "FP32"))


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write(__doc__)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    for name, train, dtype in MODELS:
        src = os.path.join(out, name + ".joblib")
        joblib.dump(train(), src)
        r = subprocess.run(["/usr/bin/python3", EXPORTER, "--dtype", dtype, src,
                            os.path.join(out, name + ".amm")])
        if r.returncode != 0:
            return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
