"""zoo_trees - fitted models of the trees family for tests/fidelity/zoo.py:
decision trees, forests, boosting (scikit-learn and XGBoost).  build() returns
zoo.Case objects (seeded: the same models every run).

Data: the sets scikit-learn ships (iris, wine, breast_cancer, diabetes) and
generated ones with NaNs and categorical columns.  Models are kept small
(tens of trees) so that the suite stays fast."""

import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor,
                              GradientBoostingClassifier, GradientBoostingRegressor,
                              HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import zoo

#  XGBoost computes in float32 (sums included); an FP64 model sums in float64
XGB_RTOL = {"FP64": 1e-5, "FP32": 1e-5}


def _proba(m, with_decision=False):
    def ref(x):
        out = {"probabilities": m.predict_proba(x), "label": m.predict(x)}
        if with_decision:
            out["decision_function"] = m.decision_function(x)
        return out
    return ref


def _with_nans(loc, scale, frac, rng_cols=None):
    """make_rows: rows around the data with a fraction frac of NaNs."""
    def make(n, rng):
        x = loc + 1.5 * scale * rng.normal(size=(n, len(loc)))
        x[rng.random(x.shape) < frac] = np.nan
        return x
    return make


def _categorical_rows(n_num, n_cat, frac):
    """make_rows: numeric columns, then categorical ones holding known
    categories 0..5, unknown ones (6, 9, 300), negatives, fractions, NaN."""
    def make(n, rng):
        num = rng.normal(size=(n, n_num))
        cat = rng.choice([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 6, 9, 300, -1, 2.5, 1e10],
                         size=(n, n_cat)).astype(float)
        cat[rng.random(cat.shape) < frac] = np.nan
        return np.c_[num, cat]
    return make


def build():
    """The family's cases, fitted."""
    cases = []
    rng = np.random.default_rng(7)

    def add(name, model, kind, X, y, ref=None, make_rows=None, rtol=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        loc, scale = np.nanmean(X, axis=0), np.nanstd(X, axis=0) + 1e-3
        cases.append(zoo.Case(name, model, kind, X.shape[1], loc, scale, make_rows=make_rows,
                              ref=ref, rtol=rtol))

    Xi, yi = load_iris(return_X_y=True)
    Xw, yw = load_wine(return_X_y=True)
    Xb, yb = load_breast_cancer(return_X_y=True)
    Xd, yd = load_diabetes(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])

    #  Single trees
    add("tree_clf_iris", DecisionTreeClassifier(random_state=0), "classifier", Xi, names[yi])
    add("tree_clf_weighted", DecisionTreeClassifier(max_depth=4, class_weight="balanced",
                                                    random_state=0), "classifier", Xw, yw + 1)
    add("tree_reg_diabetes", DecisionTreeRegressor(max_depth=8, random_state=0), "regressor",
        Xd, yd)

    #  Forests
    add("forest_clf_wine", RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0),
        "classifier", Xw, yw)
    add("forest_reg_diabetes", RandomForestRegressor(n_estimators=15, max_depth=7,
                                                     random_state=0), "regressor", Xd, yd)
    add("extra_clf_cancer", ExtraTreesClassifier(n_estimators=15, max_depth=6, random_state=0),
        "classifier", Xb, np.array(["benign", "malignant"])[yb])
    add("extra_reg_diabetes", ExtraTreesRegressor(n_estimators=10, max_depth=6, random_state=0),
        "regressor", Xd, yd)
    add("pipe_scaler_forest", make_pipeline(StandardScaler(), RandomForestClassifier(
        n_estimators=10, max_depth=5, random_state=1)), "classifier", Xi, yi)

    #  Gradient boosting: each loss, the prior and zero inits
    gb = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0)
    add("gb_clf_binary", gb, "classifier", Xb, yb, ref=_proba(gb, True))
    gb = GradientBoostingClassifier(n_estimators=15, max_depth=2, learning_rate=0.2,
                                    random_state=0)
    add("gb_clf_multi", gb, "classifier", Xw, yw * 10, ref=_proba(gb, True))
    gb = GradientBoostingClassifier(loss="exponential", n_estimators=15, max_depth=2,
                                    random_state=0)
    add("gb_clf_exponential", gb, "classifier", Xb, np.array(["no", "yes"])[yb],
        ref=_proba(gb, True))
    gb = GradientBoostingClassifier(init="zero", n_estimators=10, max_depth=2, random_state=0)
    add("gb_clf_zero", gb, "classifier", Xi, yi, ref=_proba(gb, True))
    for loss in ("squared_error", "absolute_error", "huber", "quantile"):
        add("gb_reg_" + loss, GradientBoostingRegressor(loss=loss, n_estimators=15, max_depth=3,
                                                        random_state=0), "regressor", Xd, yd)
    add("gb_reg_zero", GradientBoostingRegressor(init="zero", n_estimators=10, max_depth=3,
                                                 random_state=0), "regressor", Xd, yd)

    #  HistGradientBoosting: NaNs, categorical splits, losses
    X = rng.normal(size=(400, 5))
    y = X[:, 0] + np.sin(2 * X[:, 1]) + 0.1 * rng.normal(size=400)
    X[rng.random(X.shape) < 0.1] = np.nan
    loc, scale = np.zeros(5), np.ones(5)
    add("hgb_reg_nan", HistGradientBoostingRegressor(max_iter=20, random_state=0), "regressor",
        X, y, make_rows=_with_nans(loc, scale, 0.15))
    add("hgb_reg_absolute", HistGradientBoostingRegressor(loss="absolute_error", max_iter=15,
                                                          random_state=0), "regressor", X, y,
        make_rows=_with_nans(loc, scale, 0.15))
    add("hgb_reg_quantile", HistGradientBoostingRegressor(loss="quantile", quantile=0.8,
                                                          max_iter=15, random_state=0),
        "regressor", X, y, make_rows=_with_nans(loc, scale, 0.15))
    add("hgb_reg_poisson", HistGradientBoostingRegressor(loss="poisson", max_iter=15,
                                                         random_state=0), "regressor", X,
        np.exp(y / 2), make_rows=_with_nans(loc, scale, 0.15))
    yc = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 2]) > 0).astype(int)
    hgb = HistGradientBoostingClassifier(max_iter=15, random_state=0)
    add("hgb_clf_binary", hgb, "classifier", X, yc, ref=_proba(hgb, True),
        make_rows=_with_nans(loc, scale, 0.15))
    hgb = HistGradientBoostingClassifier(max_iter=10, random_state=0)
    add("hgb_clf_multi", hgb, "classifier", Xi, names[yi], ref=_proba(hgb, True))
    #  Categorical columns 5 and 6 (categories 0..5, NaN in training)
    cat = rng.integers(0, 6, size=(500, 2)).astype(float)
    cat[rng.random(cat.shape) < 0.05] = np.nan
    Xc = np.c_[rng.normal(size=(500, 5)), cat]
    effect = np.array([0.0, 2.0, -1.0, 0.5, 3.0, -2.0, 1.0])
    cat_idx = np.where(np.isnan(cat), 6, cat).astype(int)
    yr = Xc[:, 0] + effect[cat_idx[:, 0]] - effect[cat_idx[:, 1]] + 0.1 * rng.normal(size=500)
    add("hgb_reg_categorical", HistGradientBoostingRegressor(
        categorical_features=[5, 6], max_iter=20, random_state=0), "regressor", Xc, yr,
        make_rows=_categorical_rows(5, 2, 0.1))
    hgb = HistGradientBoostingClassifier(categorical_features=[5, 6], max_iter=15,
                                         random_state=0)
    add("hgb_clf_categorical", hgb, "classifier", Xc, (yr > 0).astype(int) + 2 * (yr > 2),
        ref=_proba(hgb, True), make_rows=_categorical_rows(5, 2, 0.1))

    #  XGBoost (when installed): regressor, binary, multi-class, NaNs, early stopping
    try:
        import xgboost as xgb
    except ImportError:   # pragma: no cover
        return cases
    loc, scale = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    add("xgb_reg_nan", xgb.XGBRegressor(n_estimators=30, max_depth=4, random_state=0),
        "regressor", X, y, make_rows=_with_nans(loc, scale, 0.15), rtol=XGB_RTOL)
    m = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0)
    add("xgb_clf_binary", m, "classifier", Xb, yb, rtol=XGB_RTOL)
    m = xgb.XGBClassifier(n_estimators=15, max_depth=3, random_state=0)
    add("xgb_clf_multi_nan", m, "classifier", X, yc + (np.nan_to_num(X[:, 1]) > 0.5),
        make_rows=_with_nans(loc, scale, 0.15), rtol=XGB_RTOL)
    m = xgb.XGBRegressor(n_estimators=200, max_depth=3, learning_rate=0.3,
                         early_stopping_rounds=5, base_score=20.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(Xd[:300], yd[:300], eval_set=[(Xd[300:], yd[300:])], verbose=False)
    cases.append(zoo.Case("xgb_reg_early_stop", m, "regressor", Xd.shape[1], Xd.mean(axis=0),
                          Xd.std(axis=0), rtol=XGB_RTOL))
    add("pipe_scaler_xgb", make_pipeline(StandardScaler(), xgb.XGBRegressor(
        n_estimators=20, max_depth=3, random_state=0)), "regressor", Xd, yd, rtol=XGB_RTOL)
    m = xgb.XGBClassifier(n_estimators=10, max_depth=3, base_score=0.3, random_state=0)
    add("xgb_clf_base_score", m, "classifier", Xb, yb, rtol=XGB_RTOL)
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3,
                         "seed": 0}, xgb.DMatrix(Xi, label=yi), num_boost_round=10)

    def booster_ref(x, booster=booster):
        p = booster.inplace_predict(x)
        return {"probabilities": p, "label": np.argmax(p, axis=1)}
    cases.append(zoo.Case("xgb_booster_multi", booster, "classifier", 4, Xi.mean(axis=0),
                          Xi.std(axis=0), ref=booster_ref, rtol=XGB_RTOL))
    return cases
