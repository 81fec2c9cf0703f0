"""zoo_prep - fitted models of the prep family for tests/fidelity/zoo.py:
preprocessing transformers, ColumnTransformer and pipelines of them.  build()
returns zoo.Case objects (seeded: the same models every run).

Data: generated rows with NaNs (SimpleImputer), integer category columns with
values unseen in fit (OneHotEncoder's handle_unknown="ignore") and NaN as a
category, rows of zeros and of tiny values (Normalizer's zero norms), rows
outside the fitted range (MinMaxScaler's clip), and the data sets
scikit-learn ships (wine, diabetes, breast_cancer, iris, digits)."""

import warnings

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (MaxAbsScaler, MinMaxScaler, Normalizer, OneHotEncoder,
                                   PolynomialFeatures, RobustScaler, StandardScaler)

from zoo import Case


def _dense(a):
    return a.toarray() if hasattr(a, "toarray") else np.asarray(a)


def _gauss(loc, spread, widen=1.5):
    loc = np.asarray(loc, float)
    spread = np.asarray(spread, float)

    def rows(n, rng):
        return loc + widen * spread * rng.normal(size=(n, loc.size))
    return rows


def _with_nans(base, frac, columns=None):
    """Rows of base with a fraction frac of NaNs (in `columns` only, if given)."""
    def rows(n, rng):
        x = base(n, rng)
        mask = rng.random(x.shape) < frac
        if columns is not None:
            keep = np.zeros(x.shape[1], bool)
            keep[list(columns)] = True
            mask &= keep
        x[mask] = np.nan
        return x
    return rows


def _with_zero_rows(base):
    """Rows of base, some all zeros, some tiny (norms below 10 eps: left as they are)."""
    def rows(n, rng):
        x = base(n, rng)
        x[::7] = 0
        x[3::11] *= 1e-17
        return x
    return rows


def _mixed(n_num, cats, unseen, nan_cat=False):
    """Rows of n_num gaussian columns then one integer column per entry of cats
    (values 0..cats[i]-1, plus `unseen` more values never seen in fit);
    with nan_cat, NaN is also a category of the last column."""
    def rows(n, rng):
        num = rng.normal(size=(n, n_num)) * np.arange(1, n_num + 1) + np.arange(n_num)
        cat = np.column_stack([rng.integers(0, k + unseen, size=n) for k in cats]).astype(float)
        if nan_cat:
            cat[rng.random(n) < 0.15, -1] = np.nan
        return np.hstack([num, cat])
    return rows


def build():
    """The family's cases, fitted."""
    cases = []
    rng = np.random.default_rng(20240612)

    def fit(model, X, y=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            model.fit(X) if y is None else model.fit(X, y)
        return model

    def add(name, model, kind, X, y, make_rows, ref=None, width=None):
        fit(model, X, y)
        if ref is None:
            def ref(x, m=model, kind=kind):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)   # unknown categories
                    if kind == "transformer":
                        return {"transformed": _dense(m.transform(x))}
                    if kind == "regressor":
                        return {"predictions": m.predict(x)}
                    return {"probabilities": m.predict_proba(x), "label": m.predict(x)}
        cases.append(Case(name, model, kind, width or X.shape[1], make_rows=make_rows,
                          ref=ref))

    # --- each transformer alone ------------------------------------------
    loc, spread = [10, -3, 0, 20, 0.01], [5, 0.5, 1, 4, 0.001]
    g = _gauss(loc, spread)
    X = g(300, rng)
    wide = _gauss(loc, spread, widen=3.0)          # beyond the fitted range
    add("minmax", MinMaxScaler(), "transformer", X, None, wide)
    add("minmax_range_clip", MinMaxScaler(feature_range=(-2, 3), clip=True), "transformer", X,
        None, wide)
    add("maxabs", MaxAbsScaler(), "transformer", X, None, g)
    add("robust", RobustScaler(), "transformer", X, None, g)
    add("robust_noscale", RobustScaler(with_scaling=False, quantile_range=(10, 90)),
        "transformer", X, None, g)
    add("robust_nocenter", RobustScaler(with_centering=False), "transformer", X, None, g)
    for norm in ("l1", "l2", "max"):
        add("normalizer_" + norm, make_pipeline(MaxAbsScaler(), Normalizer(norm=norm)),
            "transformer", X, None, _with_zero_rows(g))
    add("pca", PCA(3), "transformer", X, None, g)
    add("pca_whiten", PCA(4, whiten=True), "transformer", X, None, g)
    small = _gauss([1, -1, 0.5], [1, 2, 0.5])
    Xs = small(200, rng)
    add("poly2", PolynomialFeatures(2), "transformer", Xs, None, small)
    add("poly3_interaction", PolynomialFeatures(3, interaction_only=True, include_bias=False),
        "transformer", Xs, None, small)
    add("poly_degrees_2_3", PolynomialFeatures((2, 3)), "transformer", Xs, None, small)

    nan_rows = _with_nans(g, 0.2)
    Xn = nan_rows(300, rng)
    Xn[:, 2] = np.nan                                # a column seen empty: dropped
    for strategy in ("mean", "median", "most_frequent"):
        add("imputer_" + strategy, SimpleImputer(strategy=strategy), "transformer", Xn, None,
            nan_rows)
    add("imputer_constant_indicator", SimpleImputer(strategy="constant", fill_value=-1.5,
                                                    add_indicator=True),
        "transformer", Xn, None, nan_rows)
    add("imputer_mean_indicator", SimpleImputer(add_indicator=True), "transformer",
        np.where(np.arange(5) == 4, 1.0, Xn), None, nan_rows)      # column 4 had no NaN
    add("imputer_keep_empty", SimpleImputer(keep_empty_features=True), "transformer", Xn, None,
        nan_rows)

    cat_rows = _mixed(0, [4, 3, 6], unseen=2, nan_cat=True)
    known_rows = _mixed(0, [4, 3, 6], unseen=0, nan_cat=True)
    Xc = known_rows(300, rng)
    add("onehot_ignore", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
        "transformer", Xc, None, cat_rows)
    add("onehot_drop_first", OneHotEncoder(drop="first", handle_unknown="ignore"),
        "transformer", Xc, None, cat_rows)
    Xb = _mixed(0, [2, 5], unseen=0)(200, rng)
    add("onehot_if_binary", OneHotEncoder(drop="if_binary", sparse_output=False),
        "transformer", Xb, None, _mixed(0, [2, 5], unseen=0))
    add("onehot_drop_explicit", OneHotEncoder(drop=[1, 4], sparse_output=False),
        "transformer", Xb, None, _mixed(0, [2, 5], unseen=0))

    # --- pipelines -----------------------------------------------------------
    y = (np.nan_to_num(Xn[:, 0], nan=10) - 10) / 5 + (np.nan_to_num(Xn[:, 1], nan=-3) + 3) * 2
    y_cls = np.where(y > 0.5, "high", np.where(y < -0.5, "low", "mid"))
    add("pipe_impute_logreg", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler(),
                                            LogisticRegression()),
        "classifier", Xn, y_cls, nan_rows)
    add("pipe_impute_scaler", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
        "transformer", Xn, None, nan_rows)

    mixed = _mixed(3, [4, 5], unseen=1)
    Xm = _mixed(3, [4, 5], unseen=0)(400, rng)
    ym = Xm[:, 0] - 0.5 * Xm[:, 1] + (Xm[:, 3] == 2) * 2.0 - (Xm[:, 4] >= 3) * 1.5
    ct = ColumnTransformer([("num", StandardScaler(), [0, 1, 2]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), [3, 4])])
    add("ct_onehot_logreg", make_pipeline(ct, LogisticRegression(max_iter=500)), "classifier",
        Xm, (ym > np.median(ym)).astype(int) * 7 + 1, mixed)
    ct = ColumnTransformer([("cat", OneHotEncoder(drop="first", handle_unknown="ignore",
                                                  sparse_output=False), [4, 3]),
                            ("num", RobustScaler(), [2, 0])], remainder="passthrough")
    add("ct_onehot_ridge", make_pipeline(ct, Ridge(alpha=0.3)), "regressor", Xm, ym, mixed)

    #  A wide mixed ColumnTransformer: bool mask, slice, passthrough, drop,
    #  pipelines in parts, a nested ColumnTransformer, an empty selection, the
    #  remainder (columns 8, 9) through a Normalizer
    wide_rows = _with_nans(_mixed(10, [3, 4, 5], unseen=1, nan_cat=True), 0.1, columns=[0, 1, 2])
    Xw = _with_nans(_mixed(10, [3, 4, 5], unseen=0, nan_cat=True), 0.1, columns=[0, 1, 2])(
        500, rng)
    inner = ColumnTransformer([("a", MinMaxScaler(clip=True), [1]), ("b", "passthrough", [0])])
    mask = np.zeros(13, bool)
    mask[[3, 4]] = True
    ct = ColumnTransformer([
        ("imp", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), [0, 1, 2]),
        ("poly", PolynomialFeatures(2, include_bias=False), mask),
        ("pass", "passthrough", slice(5, 6)),
        ("gone", "drop", [6]),
        ("nest", inner, [7, 5]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), [10, 11, 12]),
        ("none", MaxAbsScaler(), []),
    ], remainder=Normalizer())
    yw = np.nan_to_num(Xw[:, 0]) + Xw[:, 3] * Xw[:, 4] + (Xw[:, 11] == 1) - Xw[:, 7]
    add("ct_wide_transform", ct, "transformer", Xw, None, wide_rows)
    add("ct_wide_linreg", make_pipeline(ColumnTransformer(ct.transformers, remainder=Normalizer()),
                                        LinearRegression()), "regressor", Xw, yw, wide_rows)
    add("ct_wide_mlp", make_pipeline(ColumnTransformer(ct.transformers, remainder="drop"),
                                     MLPClassifier((8,), max_iter=300, random_state=3)),
        "classifier", Xw, np.digitize(yw, np.quantile(yw, [0.33, 0.66])), wide_rows)

    # --- scikit-learn's data sets ------------------------------------------------
    def data_rows(X):
        return _gauss(X.mean(axis=0), X.std(axis=0), widen=1.2)

    Xd, yd = load_wine(return_X_y=True)
    add("wine_robust_pca_logreg", make_pipeline(RobustScaler(), PCA(5), LogisticRegression()),
        "classifier", Xd, yd, data_rows(Xd))
    Xd, yd = load_diabetes(return_X_y=True)
    add("diabetes_poly_ridge", make_pipeline(PolynomialFeatures(2), Ridge(alpha=0.1)),
        "regressor", Xd, yd, data_rows(Xd))
    Xd, yd = load_breast_cancer(return_X_y=True)
    add("cancer_minmax_logreg", make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=500)),
        "classifier", Xd, yd, data_rows(Xd))
    Xd, yd = load_iris(return_X_y=True)
    add("iris_normalizer_logreg", make_pipeline(Normalizer(), StandardScaler(),
                                                LogisticRegression()),
        "classifier", Xd, yd, data_rows(Xd))
    Xd, yd = load_digits(return_X_y=True)
    Xd, yd = Xd[:600], yd[:600]
    add("digits_maxabs_pca_whiten_logreg", make_pipeline(MaxAbsScaler(), PCA(12, whiten=True),
                                                         LogisticRegression(max_iter=300)),
        "classifier", Xd, yd, data_rows(Xd))
    return cases
