"""zoo_svm - fitted models of the svm family for tests/fidelity/zoo.py:
SVMs and the linear models that reduce to dense ops.  build() returns
zoo.Case objects (seeded: the same models every run)."""

import warnings

import numpy as np
from sklearn import datasets
from sklearn import linear_model as lm
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR, NuSVC, NuSVR, OneClassSVM

import zoo


def _svc_ref(m):
    def ref(x):
        out = {"decision_function": m.decision_function(x)}
        if getattr(m, "probability", False) or getattr(m[-1] if hasattr(m, "steps") else m,
                                                       "probability", False):
            out["probabilities"] = m.predict_proba(x)
        out["label"] = m.predict(x)
        return out
    return ref


def _linear_clf_ref(m):
    def ref(x):
        out = {"decision_function": m.decision_function(x)}
        est = m[-1] if hasattr(m, "steps") else m
        if getattr(est, "loss", None) == "log_loss":
            out["probabilities"] = m.predict_proba(x)
        out["label"] = m.predict(x)
        return out
    return ref


#  In FP32, a decision value sums a kernel value times a coefficient over
#  every support vector (hundreds here), with cancellation: its rounding
#  error is about n * eps32 * sum|terms|, which a relative 1e-5 of the
#  result does not bound, and the summation order is the CPU's BLIS kernel's
#  (AVX2 or AVX-512 differ).  2e-5 was seen on an AVX-512 machine; 1e-4
#  bounds it with room.  FP64 keeps the default 1e-9.
SVM_RTOL = {"FP64": 1e-9, "FP32": 1e-4}


def build():
    """The family's cases, fitted."""
    cases = []
    rng = np.random.default_rng(20240612)

    def add(name, model, kind, X, y, ref=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if y is None:
                model.fit(X)
            else:
                model.fit(X, y)
        loc, scale = X.mean(axis=0), X.std(axis=0) + 1e-12
        cases.append(zoo.Case(name, model, kind, X.shape[1], loc, scale,
                              ref=ref(model) if ref else None, rtol=SVM_RTOL))

    iris = datasets.load_iris()
    Xi, yi = iris.data, iris.target
    yi_str = np.array(["setosa", "versicolor", "virginica"])[yi]
    wine = datasets.load_wine()
    Xw, yw = wine.data, wine.target
    cancer = datasets.load_breast_cancer()
    Xc, yc = cancer.data[:, :10], cancer.target
    diabetes = datasets.load_diabetes()
    Xd, yd = diabetes.data, diabetes.target

    #  SVC / NuSVC: kernels, ovr and ovo shapes, probabilities, binary, break_ties
    add("svc_rbf_iris", SVC(), "classifier", Xi, yi_str, _svc_ref)
    add("svc_rbf_iris_proba", SVC(probability=True, random_state=0), "classifier", Xi, yi,
        _svc_ref)
    add("svc_poly_wine_ovo", make_pipeline(StandardScaler(), SVC(kernel="poly", degree=3,
                                                                 coef0=1.0,
                                                                 decision_function_shape="ovo")),
        "classifier", Xw, yw + 5, _svc_ref)
    add("svc_linear_wine_ovo_proba",
        make_pipeline(StandardScaler(), SVC(kernel="linear", C=0.5, probability=True,
                                            decision_function_shape="ovo", random_state=1)),
        "classifier", Xw, yw, _svc_ref)
    add("svc_rbf_cancer_binary", make_pipeline(StandardScaler(), SVC(C=2.0, gamma=0.05)),
        "classifier", Xc, np.array(["benign", "malignant"])[1 - yc], _svc_ref)
    add("svc_sigmoid_binary_proba",
        make_pipeline(StandardScaler(), SVC(kernel="sigmoid", gamma=0.02, coef0=0.5,
                                            probability=True, random_state=2)),
        "classifier", Xc, yc, _svc_ref)
    add("svc_break_ties", SVC(gamma=2.0, break_ties=True), "classifier", Xi, yi, _svc_ref)
    X5 = rng.normal(size=(250, 6))
    y5 = np.argmax(X5[:, :5] + 0.8 * rng.normal(size=(250, 5)), axis=1)
    add("nusvc_rbf_5class_proba", NuSVC(nu=0.3, probability=True, random_state=3), "classifier",
        X5, y5, _svc_ref)
    add("nusvc_poly_5class", NuSVC(kernel="poly", degree=2, coef0=1.0, nu=0.5), "classifier", X5, y5,
        _svc_ref)

    #  SVR / NuSVR / OneClassSVM
    add("svr_rbf_diabetes", SVR(C=50.0, epsilon=5.0), "regressor", Xd, yd)
    add("svr_linear_diabetes", SVR(kernel="linear", C=100.0), "regressor", Xd, yd)
    add("nusvr_poly", NuSVR(kernel="poly", degree=2, coef0=1.0, C=1.0), "regressor", X5,
        X5[:, 0] * X5[:, 1] + X5[:, 2])
    add("nusvr_sigmoid", NuSVR(kernel="sigmoid", gamma=0.1, nu=0.4), "regressor", X5,
        X5[:, 0] - X5[:, 1])
    add("oneclass_rbf", OneClassSVM(nu=0.2, gamma=0.3), "classifier", X5, None,
        lambda m: lambda x: {"decision_function": m.decision_function(x),
                             "label": m.predict(x)})

    #  Linear classifiers: decision_function and label (and log_loss probabilities)
    Xl = rng.normal(size=(300, 5)) + [0, 1, -1, 0, 2]
    S = Xl @ rng.normal(size=(5, 4)) + 0.5 * rng.normal(size=(300, 4))
    y2 = np.array(["no", "yes"])[np.argmax(S[:, :2], axis=1)]
    y4 = np.array([3, 5, 7, 9])[np.argmax(S, axis=1)]
    for tag, y in (("bin", y2), ("multi", y4)):
        add("linearsvc_" + tag, LinearSVC(random_state=0, max_iter=5000), "classifier", Xl, y,
            _linear_clf_ref)
        add("sgd_log_" + tag, lm.SGDClassifier(loss="log_loss", random_state=0), "classifier",
            Xl, y, _linear_clf_ref)
        add("perceptron_" + tag, lm.Perceptron(random_state=0), "classifier", Xl, y,
            _linear_clf_ref)
        add("ridgeclf_" + tag, lm.RidgeClassifier(alpha=0.5), "classifier", Xl, y,
            _linear_clf_ref)
    add("sgd_hinge_multi", lm.SGDClassifier(random_state=1), "classifier", Xl, y4,
        _linear_clf_ref)
    add("sgd_huber_bin", make_pipeline(StandardScaler(), lm.SGDClassifier(
        loss="modified_huber", alpha=0.01, random_state=1)), "classifier", Xl, y2, _linear_clf_ref)
    add("passive_aggressive_multi", lm.PassiveAggressiveClassifier(random_state=0),
        "classifier", Xl, y4, _linear_clf_ref)
    add("linearsvc_crammer", LinearSVC(multi_class="crammer_singer", random_state=0,
                                       max_iter=5000), "classifier", Xl, y4, _linear_clf_ref)

    #  Linear regressors
    yl = Xl @ [1.0, -2.0, 0.5, 0.0, 3.0] + 0.3 * rng.normal(size=300)
    Yl = np.c_[yl, Xl[:, 0] - Xl[:, 4]]
    for name, model in (("lasso", lm.Lasso(alpha=0.05)), ("elasticnet", lm.ElasticNet(alpha=0.1, l1_ratio=0.3)),
                        ("elasticnet_multi", lm.ElasticNet(alpha=0.05)),
                        ("bayesridge", lm.BayesianRidge()), ("ard", lm.ARDRegression()),
                        ("sgdreg", lm.SGDRegressor(random_state=0)),
                        ("huber", lm.HuberRegressor()), ("lassolars", lm.LassoLars(alpha=0.01)),
                        ("linearsvr", LinearSVR(random_state=0, max_iter=5000)),
                        ("pa_reg", lm.PassiveAggressiveRegressor(random_state=0))):
        add(name, model, "regressor", Xl, Yl if name.endswith("_multi") else yl)
    add("pipe_lasso", make_pipeline(StandardScaler(), lm.Lasso(alpha=0.1)), "regressor", Xl, yl)
    return cases
