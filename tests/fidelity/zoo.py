"""zoo - one fitted scikit-learn model of every kind amaas-export accepts.

Used by tests/test_exporter.py (exporter + numpy reference interpreter) and by
tests/fidelity/test_fidelity.py (the served models).  Everything is seeded, so
the same models come out on every run.

    for case in zoo.build():           # case.name, case.model, case.kind, case.width
        x = case.rows(400)              # random rows from the training distribution
        ref = case.reference(x)         # sklearn's answers, by amaas output name
        err, ok, note = zoo.compare(ref, got, rtol=1e-9)

Comparison criterion (both tests use it): for every value,
    |got - ref| <= rtol * max(1, |ref|)
i.e. relative error rtol, with an absolute floor of rtol for values below 1 in
magnitude (probabilities near 0, predictions near 0).  Shapes must be equal.
Class labels must be identical, except that with allow_ties a row whose two
largest reference probabilities are within rtol of each other (a tie at that
precision, which FP32 arithmetic may break either way) may differ; such rows
are counted in the note.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


@dataclass
class Case:
    name: str                 # model name (also the .amm file name)
    model: object             # fitted estimator or pipeline
    kind: str                 # "regressor", "classifier" or "transformer"
    width: int                # input features
    loc: np.ndarray = field(repr=False, default=None)     # feature means
    scale: np.ndarray = field(repr=False, default=None)   # feature spreads
    seed: int = 0
    #  Optional, for the families' cases (zoo_trees.py, zoo_svm.py, zoo_prep.py):
    make_rows: object = field(repr=False, default=None)  # (n, rng) -> rows, e.g. with NaNs
    ref: object = field(repr=False, default=None)        # x -> {output name: array}
    rtol: dict = field(default=None)   # {"FP64": r, "FP32": r} when the framework itself
    #                                    computes in lower precision (XGBoost: FP32)

    def rows(self, n, seed=None):
        """n random rows from (a slightly wider version of) the training data."""
        rng = np.random.default_rng(self.seed + 1000 if seed is None else seed)
        if self.make_rows is not None:
            return self.make_rows(n, rng)
        return self.loc + 1.5 * self.scale * rng.normal(size=(n, self.width))

    def reference(self, x):
        """The framework's own answers, keyed by the amaas output names."""
        m = self.model
        if self.ref is not None:
            return self.ref(x)
        if self.kind == "regressor":
            return {"predictions": m.predict(x)}
        if self.kind == "classifier":
            return {"probabilities": m.predict_proba(x), "label": m.predict(x)}
        return {"transformed": m.transform(x)}


def _data(rng, n, width, loc=0.0, spread=1.0):
    loc = np.broadcast_to(np.asarray(loc, float), (width,)).copy()
    scale = np.broadcast_to(np.asarray(spread, float), (width,)).copy()
    return loc + scale * rng.normal(size=(n, width)), loc, scale


def _classes(score, labels):
    """Class index per row from a [n, k] score with noise, mapped to labels."""
    return np.asarray(labels)[np.argmax(score, axis=1)]


def build():
    """Every case, fitted.  Takes a few seconds."""
    cases = []
    rng = np.random.default_rng(20240601)

    def add(name, model, kind, X, y, loc, scale):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if y is None:
                model.fit(X)
            else:
                model.fit(X, y)
        cases.append(Case(name, model, kind, X.shape[1], loc, scale, seed=len(cases)))

    #  Linear regression: single target, several targets, a [n, 1] target, no intercept
    X, loc, sc = _data(rng, 200, 5, 0.5, [1, 2, 0.5, 1, 3])
    w = rng.normal(size=(5, 3))
    Y = X @ w + [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=(200, 3))
    add("linreg", LinearRegression(), "regressor", X, Y[:, 0], loc, sc)
    add("linreg_multi", LinearRegression(), "regressor", X, Y, loc, sc)
    add("linreg_column", LinearRegression(), "regressor", X, Y[:, :1], loc, sc)
    add("linreg_noint", LinearRegression(fit_intercept=False), "regressor", X, Y[:, 1], loc, sc)
    add("ridge", Ridge(alpha=2.0), "regressor", X, Y[:, 2], loc, sc)
    add("ridge_multi", Ridge(alpha=0.5), "regressor", X, Y[:, :2], loc, sc)

    #  Logistic regression: binary (ovr and multinomial), multi-class multinomial and ovr
    X, loc, sc = _data(rng, 300, 4, [0, 1, -1, 0], [1, 1, 2, 0.5])
    S = X @ rng.normal(size=(4, 4)) + rng.normal(size=(300, 4))
    for labels, tag in (([-3, 7], "int"), (["no", "yes"], "str")):
        y = _classes(S[:, :2], labels)
        add("logreg_bin_" + tag, LogisticRegression(), "classifier", X, y, loc, sc)
    add("logreg_bin_multinomial", LogisticRegression(multi_class="multinomial"), "classifier",
        X, _classes(S[:, :2], [0, 1]), loc, sc)
    for labels, tag in (([10, 20, 30, 40], "int"), (["ant", "bee", "cat", "dog"], "str")):
        y = _classes(S, labels)
        add("logreg_multinomial_" + tag, LogisticRegression(multi_class="multinomial"),
            "classifier", X, y, loc, sc)
        add("logreg_ovr_" + tag, LogisticRegression(multi_class="ovr"), "classifier", X, y,
            loc, sc)
    add("logreg_liblinear", LogisticRegression(solver="liblinear"), "classifier", X,
        _classes(S[:, :3], [0, 1, 2]), loc, sc)

    #  MLPs: regressors and classifiers, with each hidden activation
    X, loc, sc = _data(rng, 300, 6, 0.0, 1.0)
    yr = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=300)
    S = np.c_[X[:, 0] * X[:, 1], X[:, 2] ** 2 - 1, X[:, 3] + X[:, 4], -X[:, 5]]
    for act in ACTIVATIONS:
        add("mlpreg_" + act, MLPRegressor((16, 8), activation=act, max_iter=300,
                                          random_state=1), "regressor", X, yr, loc, sc)
        add("mlpclf_bin_" + act, MLPClassifier((12,), activation=act, max_iter=300,
                                               random_state=2), "classifier", X,
            _classes(S[:, :2], [0, 1]), loc, sc)
        labels = ["red", "green", "blue", "gray"] if act in ("tanh", "relu") else [5, 6, 7, 8]
        add("mlpclf_multi_" + act, MLPClassifier((16, 8), activation=act, max_iter=300,
                                                 random_state=3), "classifier", X,
            _classes(S, labels), loc, sc)
    add("mlpreg_multi", MLPRegressor((10,), max_iter=300, random_state=4), "regressor", X,
        np.c_[yr, X[:, 3] - X[:, 4]], loc, sc)
    add("mlpclf_bin_str", MLPClassifier((8,), max_iter=300, random_state=5), "classifier", X,
        _classes(S[:, 1:3], ["left", "right"]), loc, sc)

    #  Scalers, alone and in pipelines (features with very different means and spreads)
    X, loc, sc = _data(rng, 300, 5, [10, -3, 0, 100, 0.01], [5, 0.5, 1, 20, 0.001])
    Z = (X - loc) / sc
    add("scaler", StandardScaler(), "transformer", X, None, loc, sc)
    add("scaler_nomean", StandardScaler(with_mean=False), "transformer", X, None, loc, sc)
    add("scaler_nostd", StandardScaler(with_std=False), "transformer", X, None, loc, sc)
    add("scaler_neither", StandardScaler(with_mean=False, with_std=False), "transformer", X,
        None, loc, sc)
    add("pipe_scalers", make_pipeline(StandardScaler(), StandardScaler(with_mean=False)),
        "transformer", X, None, loc, sc)
    yr = Z @ [1.0, -2.0, 0.5, 3.0, 1.5] + 4.0
    add("pipe_linreg", make_pipeline(StandardScaler(), LinearRegression()), "regressor", X, yr,
        loc, sc)
    add("pipe_ridge_passthrough", Pipeline([("scale", StandardScaler()), ("skip", "passthrough"),
                                            ("ridge", Ridge())]), "regressor", X, yr, loc, sc)
    Sc = Z[:, :3] + 0.5 * rng.normal(size=(300, 3))
    add("pipe_logreg", make_pipeline(StandardScaler(), LogisticRegression()), "classifier", X,
        _classes(Sc, ["x", "y", "z"]), loc, sc)
    add("pipe_mlpclf", make_pipeline(StandardScaler(), MLPClassifier((10,), max_iter=500,
                                                                     random_state=6)),
        "classifier", X, _classes(Sc, [0, 1, 2]), loc, sc)
    add("pipe_mlpreg", make_pipeline(StandardScaler(), MLPRegressor((8,), activation="tanh",
                                                                    max_iter=500,
                                                                    random_state=7)),
        "regressor", X, yr / 4, loc, sc)
    add("pipe_nested", Pipeline([("pre", make_pipeline(StandardScaler())),
                                 ("clf", LogisticRegression(multi_class="ovr"))]), "classifier",
        X, _classes(Sc, [1, 2, 3]), loc, sc)
    add("pipe_scaler_only_passthrough", Pipeline([("a", "passthrough"),
                                                  ("s", StandardScaler())]),
        "transformer", X, None, loc, sc)

    #  The families' cases
    import zoo_prep
    import zoo_svm
    import zoo_trees
    for family in (zoo_trees, zoo_svm, zoo_prep):
        for case in family.build():
            case.seed = len(cases)
            cases.append(case)
    return cases


def to_text(labels):
    """Labels as a list of Python values (bytes decoded), for comparing."""
    out = []
    for v in np.asarray(labels).reshape(-1).tolist():
        out.append(v.decode("utf-8") if isinstance(v, bytes) else v)
    return out


def compare(ref, got, rtol, allow_ties=False):
    """(max error, ok, note) of got (dict name -> array) against ref.

    Error is max |got - ref| / max(1, |ref|) over all float outputs; labels must
    be identical (see the module comment for allow_ties)."""
    worst = 0.0
    ok = True
    notes = []
    if set(got) != set(ref):
        return float("inf"), False, "outputs %s, expected %s" % (sorted(got), sorted(ref))
    for name, r in ref.items():
        g = got[name]
        r = np.asarray(r)
        g = np.asarray(g)
        if g.shape != r.shape:
            ok = False
            notes.append("%s shape %s, expected %s" % (name, g.shape, r.shape))
            continue
        if name == "label":
            gl, rl = to_text(g), to_text(r)
            bad = [i for i in range(len(rl)) if gl[i] != rl[i] or type(gl[i]) is not type(rl[i])]
            if bad and allow_ties and "probabilities" in ref:
                p = np.sort(np.asarray(ref["probabilities"]), axis=1)
                ties = [i for i in bad if p[i, -1] - p[i, -2] <= rtol]
                if ties:
                    notes.append("%d near-tie label(s)" % len(ties))
                bad = [i for i in bad if i not in ties]
            if bad:
                ok = False
                notes.append("%d label(s) differ, first row %d: %r, expected %r"
                             % (len(bad), bad[0], gl[bad[0]], rl[bad[0]]))
            continue
        g = g.astype(np.float64)
        r = r.astype(np.float64)
        if not np.all(np.isfinite(g)):
            ok = False
            notes.append("%s has non-finite values" % name)
            continue
        err = np.max(np.abs(g - r) / np.maximum(1.0, np.abs(r))) if r.size else 0.0
        worst = max(worst, float(err))
        if err > rtol:
            ok = False
            notes.append("%s error %.3g > %.0e" % (name, err, rtol))
    return worst, ok, "; ".join(notes)
