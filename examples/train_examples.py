#!/usr/bin/python3
"""train_examples - trains the example models and exports them to examples/models/.

    /usr/bin/python3 examples/train_examples.py [--joblib-dir DIR]

Writes, with scripts/amaas-export:

  models/linear.amm  LinearRegression on 100 points, x uniform in [0, 1),
                     y = 2x + 1 + noise uniform in [0, 1) (so about y = 2x + 1.5).
                     input [rows, 1] -> predictions [rows]
  models/iris.amm    StandardScaler + MLPClassifier(10 relu units) on scikit-learn's
                     shipped iris data set (4 features: sepal length, sepal width,
                     petal length, petal width, in cm).
                     input [rows, 4] -> probabilities [rows, 3], label [rows]
                     (INT64: 0 setosa, 1 versicolor, 2 virginica)

Everything is seeded: a rerun with the same scikit-learn gives the same files.
The fitted scikit-learn objects are saved as joblib files in a temporary
directory (or in --joblib-dir), never in models/: only .amm files are kept in
the repository.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import warnings

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "models")
EXPORTER = os.path.join(os.path.dirname(HERE), "scripts", "amaas-export")
SEED = 42


def train_linear():
    rng = np.random.default_rng(SEED)
    x = rng.uniform(0.0, 1.0, size=(100, 1))
    y = 2.0 * x[:, 0] + 1.0 + rng.uniform(0.0, 1.0, size=100)
    model = LinearRegression().fit(x, y)
    print("linear: y = %.4f x + %.4f (R^2 %.3f)"
          % (model.coef_[0], model.intercept_, model.score(x, y)))
    return model


def train_iris():
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, stratify=data.target, random_state=SEED)
    model = make_pipeline(StandardScaler(),
                          MLPClassifier(hidden_layer_sizes=(10,), max_iter=3000,
                                        random_state=SEED))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a ConvergenceWarning fails the script
        model.fit(x_train, y_train)
    print("iris: %d iterations, accuracy %.3f train, %.3f held out (%s)"
          % (model[-1].n_iter_, model.score(x_train, y_train), model.score(x_test, y_test),
             ", ".join("%d %s" % (i, n) for i, n in enumerate(data.target_names))))
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--joblib-dir", help="keep the fitted joblib files here (default: a "
                   "temporary directory, removed at the end)")
    args = p.parse_args()
    os.makedirs(MODELS, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amaas-examples-") as tmp:
        jdir = args.joblib_dir or tmp
        os.makedirs(jdir, exist_ok=True)
        for name, train in (("linear", train_linear), ("iris", train_iris)):
            src = os.path.join(jdir, name + ".joblib")
            joblib.dump(train(), src)
            r = subprocess.run(["/usr/bin/python3", EXPORTER, src,
                                os.path.join(MODELS, name + ".amm")])
            if r.returncode != 0:
                return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
