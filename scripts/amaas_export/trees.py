"""trees - decision trees and their ensembles (scikit-learn, XGBoost).

Every model here becomes one `trees` op (docs/MODEL_FORMAT.md, "Operations:
trees"): leaf values summed into k columns in tree order from a base vector,
a node going left when x <= threshold.  The translation turns each
framework's own rule into that one exactly:

  scikit-learn trees, forests, GradientBoosting: float32(x) <= t (float64):
    FP64 models: `round32` first, t kept; FP32 models: t rounded down to
    float32 (the largest float32 <= t), since x is float32 already.
  HistGradientBoosting: x <= t in float64: t kept (FP64), rounded down (FP32).
  XGBoost: float32(x) < t (float32): t' = the float32 just below t, then as
    scikit-learn's trees.

What the frameworks do after the comparison (learning rates, class
normalisation, priors) is folded into the leaf values and the base, with the
same float64 operations the frameworks make, so FP64 sums are identical.
"""

import json

from .common import DEFS, Refused, _classifier_tail, _np

FLAG_MISSING_LEFT = 1
FLAG_CATEGORICAL = 2


def _round_down32(t):
    """float32 values v with v the largest float32 <= t (t float64 array)."""
    np = _np()
    t = np.asarray(t, dtype=np.float64)
    f = t.astype(np.float32)
    over = f.astype(np.float64) > t
    f[over] = np.nextafter(f[over], np.float32(-np.inf))
    return f


class Ensemble:
    """The trees of one `trees` op, added one by one, in the order they sum."""

    def __init__(self, width, k, leaf_width, rule, dtype):
        np = _np()
        self.width, self.k, self.leaf_width = width, k, leaf_width
        self.rule, self.dtype = rule, dtype        # rule: "le" (x <= t) or "lt32"
        self.parts = {n: [] for n in ("feature", "threshold", "left", "right", "flags")}
        self.roots, self.columns, self.values, self.sets = [], [], [], []
        self.nodes = self.leaves = 0
        self.base = np.zeros(k)

    def add(self, left, right, feature, threshold, values, column=0, missing_left=None,
            sets=None):
        """One tree from per-node arrays (a node is a leaf when left[i] < 0);
        values [nodes, leaf_width] (read at leaves); sets {node: 8 uint32}
        for categorical nodes.  Nodes are renumbered in pre-order from node 0,
        so children come after their parent and unreachable nodes go."""
        np = _np()
        left = np.asarray(left).tolist()
        right = np.asarray(right).tolist()
        order, stack = [], [0]
        while stack:
            i = stack.pop()
            order.append(i)
            if left[i] >= 0:
                stack.append(right[i])
                stack.append(left[i])
        new = {old: self.nodes + j for j, old in enumerate(order)}
        n = len(order)
        feat = np.full(n, -1, dtype=np.int32)
        lft = np.zeros(n, dtype=np.int32)
        rgt = np.zeros(n, dtype=np.int32)
        flags = np.zeros(n, dtype=np.uint8)
        thr = np.zeros(n, dtype=np.float64)
        leaf_rows = []
        for j, i in enumerate(order):
            if left[i] < 0:
                lft[j] = self.leaves + len(leaf_rows)
                leaf_rows.append(i)
                continue
            feat[j] = feature[i]
            thr[j] = threshold[i]
            lft[j], rgt[j] = new[left[i]], new[right[i]]
            if missing_left is not None and missing_left[i]:
                flags[j] |= FLAG_MISSING_LEFT
            if sets is not None and i in sets:
                flags[j] |= FLAG_CATEGORICAL
                self.sets.append(np.asarray(sets[i], dtype=np.uint32))
        for name, arr in (("feature", feat), ("threshold", thr), ("left", lft), ("right", rgt),
                          ("flags", flags)):
            self.parts[name].append(arr)
        self.values.append(np.asarray(values, dtype=np.float64)[leaf_rows].reshape(
            len(leaf_rows), self.leaf_width))
        self.roots.append(self.nodes)
        self.columns.append(column)
        self.nodes += n
        self.leaves += len(leaf_rows)

    def op(self):
        """The `trees` op."""
        np = _np()
        if not self.roots:
            raise Refused("the model has no trees")
        if self.nodes > DEFS.NODES_MAX:
            raise Refused("the model has %d nodes; the format allows %d" % (self.nodes,
                                                                           DEFS.NODES_MAX))
        thr = np.concatenate(self.parts["threshold"])
        feat = np.concatenate(self.parts["feature"])
        if self.rule == "lt32":
            t32 = thr.astype(np.float32)
            thr = np.nextafter(t32, np.float32(-np.inf)).astype(np.float64)
        if self.dtype == "FP32":
            thr = _round_down32(thr)
        thr[feat < 0] = 0
        op = {"op": "trees", "in": self.width, "out": self.k, "nodes": self.nodes,
              "trees": len(self.roots), "leaves": self.leaves, "leaf_width": self.leaf_width,
              "sets": len(self.sets),
              "feature": feat, "threshold": thr,
              "left": np.concatenate(self.parts["left"]),
              "right": np.concatenate(self.parts["right"]),
              "flags": np.concatenate(self.parts["flags"]),
              "roots": np.asarray(self.roots, dtype=np.int32),
              "values": np.concatenate(self.values).reshape(-1),
              "base": np.asarray(self.base, dtype=np.float64)}
        if self.leaf_width == 1:
            op["column"] = np.asarray(self.columns, dtype=np.int32)
        if self.sets:
            op["categories"] = np.concatenate(self.sets)
        return op


# ---------------------------------------------------------------------------
#  scikit-learn: DecisionTree, RandomForest, ExtraTrees, GradientBoosting

def _single_output(est, what):
    if getattr(est, "n_outputs_", 1) != 1:
        raise Refused("%s is fitted on %d outputs: amaas serves single-output trees only"
                      % (what, est.n_outputs_))


def _add_sklearn_tree(ens, tree, classifier, scale=None, column=0):
    """A fitted tree_ (sklearn.tree._tree.Tree), with predict_proba's
    normalisation (classifiers) or scale * value (gradient boosting)."""
    np = _np()
    value = tree.value
    if classifier:
        v = np.ascontiguousarray(value[:, 0, :])
        normalizer = v.sum(axis=1)[:, np.newaxis]
        normalizer[normalizer == 0.0] = 1.0
        v = v / normalizer
    else:
        v = np.ascontiguousarray(value[:, 0, :1])
        if scale is not None:
            v = scale * v
    ens.add(tree.children_left, tree.children_right, tree.feature, tree.threshold, v, column)


def _round32(dtype):
    return [{"op": "round32"}] if dtype == "FP64" else []


def _decision_tree(est, what, width, dtype):
    _single_output(est, what)
    from sklearn.base import is_classifier
    if is_classifier(est):
        k = int(est.n_classes_)
        ens = Ensemble(width, k, k, "le", dtype)
        _add_sklearn_tree(ens, est.tree_, True)
        tail, outputs = _classifier_tail(est, what, k)
        return _round32(dtype) + [ens.op()] + tail, outputs
    ens = Ensemble(width, 1, 1, "le", dtype)
    _add_sklearn_tree(ens, est.tree_, False)
    return (_round32(dtype) + [ens.op(), {"op": "output", "name": "predictions", "flatten": True}],
            [("predictions", None, [-1])])


def _forest(est, what, width, dtype):
    np = _np()
    _single_output(est, what)
    from sklearn.base import is_classifier
    n = len(est.estimators_)
    divide = {"op": "scale", "width": None, "mean": None, "scale": None}
    if is_classifier(est):
        k = int(est.n_classes_)
        ens = Ensemble(width, k, k, "le", dtype)
        for tree in est.estimators_:
            _add_sklearn_tree(ens, tree.tree_, True)
        divide.update(width=k, mean=np.zeros(k), scale=np.full(k, float(n)))
        tail, outputs = _classifier_tail(est, what, k)
        return _round32(dtype) + [ens.op(), divide] + tail, outputs
    ens = Ensemble(width, 1, 1, "le", dtype)
    for tree in est.estimators_:
        _add_sklearn_tree(ens, tree.tree_, False)
    divide.update(width=1, mean=np.zeros(1), scale=np.full(1, float(n)))
    return (_round32(dtype) + [ens.op(), divide,
                               {"op": "output", "name": "predictions", "flatten": True}],
            [("predictions", None, [-1])])


def _gb_base(est, what, width):
    """The constant raw prediction of init_ (float64 [K]), as sklearn computes it."""
    np = _np()
    from sklearn.dummy import DummyClassifier, DummyRegressor
    init = est.init_
    if isinstance(init, str) and init == "zero":
        return np.zeros(est.estimators_.shape[1])
    if type(init) not in (DummyClassifier, DummyRegressor) or \
            getattr(init, "strategy", None) == "stratified":
        raise Refused("%s has init=%s: amaas takes init='zero' or the default (a constant "
                      "DummyClassifier/DummyRegressor)" % (what, type(init).__name__))
    return est._raw_predict_init(np.zeros((1, width), dtype=np.float32))[0].astype(np.float64)


def _gradient_boosting(est, what, width, dtype):
    np = _np()
    from sklearn.base import is_classifier
    stages, K = est.estimators_.shape
    ens = Ensemble(width, K, 1, "le", dtype)
    ens.base = _gb_base(est, what, width)
    lr = float(est.learning_rate)
    for i in range(stages):
        for k in range(K):
            _add_sklearn_tree(ens, est.estimators_[i, k].tree_, False, scale=lr, column=k)
    ops = _round32(dtype) + [ens.op()]
    if not is_classifier(est):
        return (ops + [{"op": "output", "name": "predictions", "flatten": True}],
                [("predictions", None, [-1])])
    loss = type(est._loss).__name__
    decision = [("decision_function", None, [-1] if K == 1 else [-1, K])]
    ops.append({"op": "output", "name": "decision_function", "flatten": K == 1})
    if loss == "BinomialDeviance":
        ops += [{"op": "sigmoid"}, {"op": "binary"}]
    elif loss == "MultinomialDeviance":
        ops += [{"op": "softmax"}]
    elif loss == "ExponentialLoss":
        ops += [{"op": "dense", "in": 1, "out": 1, "weights": np.full((1, 1), 2.0),
                 "bias": np.zeros(1)}, {"op": "sigmoid"}, {"op": "binary"}]
    else:
        raise Refused("%s has loss %s: amaas takes log_loss and exponential" % (what, loss))
    tail, outputs = _classifier_tail(est, what, 2 if K == 1 else K)
    return ops + tail, decision + outputs


# ---------------------------------------------------------------------------
#  scikit-learn: HistGradientBoosting

def _hist_gradient_boosting(est, what, width, dtype):
    np = _np()
    from sklearn.base import is_classifier
    K = int(est.n_trees_per_iteration_)
    ens = Ensemble(width, K, 1, "le", dtype)
    ens.base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1)
    if ens.base.shape != (K,):
        raise Refused("%s has a baseline of shape %s for %d trees per iteration"
                      % (what, np.shape(est._baseline_prediction), K))
    known, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
    for predictors in est._predictors:
        for k, predictor in enumerate(predictors):
            nodes = predictor.nodes
            left = np.where(nodes["is_leaf"], -1, nodes["left"].astype(np.int64))
            sets = {}
            for i in np.flatnonzero(nodes["is_categorical"] & ~nodes["is_leaf"]):
                # Known categories in raw_left go left, other known ones right,
                # unknown ones as missing values
                raw = predictor.raw_left_cat_bitsets[nodes["bitset_idx"][i]]
                kn = known[f_idx_map[nodes["feature_idx"][i]]]
                goes = raw | (~kn if nodes["missing_go_to_left"][i] else 0)
                sets[int(i)] = np.asarray(goes, dtype=np.uint32)
            ens.add(left, nodes["right"], nodes["feature_idx"], nodes["num_threshold"],
                    nodes["value"].reshape(-1, 1), column=k,
                    missing_left=nodes["missing_go_to_left"], sets=sets)
    ops = [ens.op()]
    loss = type(est._loss).__name__
    if not is_classifier(est):
        if loss == "HalfPoissonLoss" or loss == "HalfGammaLoss":
            ops.append({"op": "exp"})
        elif loss not in ("HalfSquaredError", "AbsoluteError", "PinballLoss"):
            raise Refused("%s has loss %s: amaas takes squared_error, absolute_error, quantile "
                          "and poisson" % (what, loss))
        return (ops + [{"op": "output", "name": "predictions", "flatten": True}],
                [("predictions", None, [-1])])
    decision = [("decision_function", None, [-1] if K == 1 else [-1, K])]
    ops.append({"op": "output", "name": "decision_function", "flatten": K == 1})
    if loss == "HalfBinomialLoss":
        ops += [{"op": "sigmoid"}, {"op": "binary"}]
    elif loss == "HalfMultinomialLoss":
        ops += [{"op": "softmax"}]
    else:
        raise Refused("%s has loss %s: amaas takes log_loss" % (what, loss))
    tail, outputs = _classifier_tail(est, what, 2 if K == 1 else K)
    return ops + tail, decision + outputs


# ---------------------------------------------------------------------------
#  XGBoost: its JSON model (from a file, or save_raw("json") of a Booster)

class XGBoostJSON:
    """An XGBoost JSON model file, parsed (exported without importing xgboost)."""

    def __init__(self, doc, path):
        self.doc, self.path = doc, path


def read_xgboost_json(path):
    """The parsed JSON model at path; ValueError when it is not one."""
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
    if not isinstance(doc, dict) or "learner" not in doc:
        raise ValueError("no \"learner\" at the top")
    return XGBoostJSON(doc, path)


def _xgb_ops(doc, what, dtype, classes=None):
    """(width, ops, outputs) of an XGBoost JSON model; classes: labels of an
    XGBClassifier (else 0..k-1)."""
    np = _np()
    try:
        learner = doc["learner"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
        mparam = learner["learner_model_param"]
        width = int(mparam["num_feature"])
        num_class = int(mparam.get("num_class", "0"))
        base_score = np.float32(float(mparam["base_score"]))
        attributes = learner.get("attributes", {}) or {}
    except KeyError as e:
        raise Refused("%s is not a complete XGBoost JSON model: no key %s" % (what, e))
    except (TypeError, ValueError) as e:
        raise Refused("%s is not a valid XGBoost JSON model: %s" % (what, e))
    if booster.get("name") != "gbtree":
        raise Refused("%s uses booster %r: amaas takes gbtree" % (what, booster.get("name")))
    if objective not in ("reg:squarederror", "binary:logistic", "multi:softprob"):
        raise Refused("%s has objective %s: amaas takes reg:squarederror, binary:logistic and "
                      "multi:softprob" % (what, objective))
    if int(mparam.get("num_target", "1")) != 1:
        raise Refused("%s has %s targets: amaas takes one" % (what, mparam["num_target"]))
    if not 1 <= width:
        raise Refused("%s has %d features" % (what, width))
    model = booster["model"]
    trees = model["trees"]
    info = model["tree_info"]
    groups = max(num_class, 1)
    per_round = int(model["gbtree_model_param"].get("num_parallel_tree", "1")) * groups
    if "best_iteration" in attributes:
        trees = trees[:(int(attributes["best_iteration"]) + 1) * per_round]
    k = groups
    ens = Ensemble(width, k, 1, "lt32", dtype)
    if objective == "binary:logistic":
        if not 0 < base_score < 1:
            raise Refused("%s has base_score %g, outside (0, 1)" % (what, base_score))
        one = np.float32(1)
        margin = -np.log(one / base_score - one)
        ens.base = np.full(k, np.float32(margin), dtype=np.float64)
    else:
        ens.base = np.full(k, base_score, dtype=np.float64)
    for t, tree in enumerate(trees):
        if any(int(s) != 0 for s in tree.get("split_type", ())):
            raise Refused("%s has categorical splits: amaas takes numerical XGBoost trees"
                          % what)
        left = np.asarray(tree["left_children"], dtype=np.int64)
        feature = np.asarray(tree["split_indices"], dtype=np.int64)
        cond = np.asarray(tree["split_conditions"], dtype=np.float32).astype(np.float64)
        internal = left >= 0
        if np.any(feature[internal] >= width) or np.any(feature[internal] < 0):
            raise Refused("%s: tree %d splits on a feature outside 0..%d" % (what, t, width - 1))
        column = int(info[t])
        if not 0 <= column < k:
            raise Refused("%s: tree %d adds to group %d of %d" % (what, t, column, k))
        ens.add(left, tree["right_children"], feature, cond, cond.reshape(-1, 1), column,
                missing_left=np.asarray(tree["default_left"]).astype(bool))
    ops = _round32(dtype) + [ens.op()]
    if objective == "reg:squarederror":
        return width, ops + [{"op": "output", "name": "predictions", "flatten": True}], \
            [("predictions", None, [-1])]
    if objective == "binary:logistic":
        ops += [{"op": "sigmoid"}, {"op": "binary"}]
        k = 2
    else:
        ops += [{"op": "softmax"}]
    labels = list(range(k)) if classes is None else classes
    if len(labels) != k:
        raise Refused("%s has %d classes but %d probability columns" % (what, len(labels), k))
    ops += [{"op": "output", "name": "probabilities"}, {"op": "argmax", "labels": labels},
            {"op": "output", "name": "label"}]
    return width, ops, [("probabilities", None, [-1, k]), ("label", "INT64", [-1])]


def _booster_json(booster):
    return json.loads(bytes(booster.save_raw("json")).decode("utf-8"))


def _xgb_sklearn(est, what, width, dtype):
    np = _np()
    from sklearn.base import is_classifier
    classes = None
    if is_classifier(est):
        classes = np.asarray(est.classes_)
        if classes.dtype.kind not in "iu":
            raise Refused("%s has classes of type %s: amaas takes XGBClassifier's integer "
                          "classes" % (what, classes.dtype))
        classes = [int(c) for c in classes]
    n, ops, outputs = _xgb_ops(_booster_json(est.get_booster()), what, dtype, classes)
    if n != width:
        raise Refused("%s has %d features, expected %d" % (what, n, width))
    return ops, outputs


def is_xgboost_whole(model):
    """True for what translate_xgboost takes (a JSON model or a Booster)."""
    t = type(model)
    return isinstance(model, XGBoostJSON) or (t.__module__.startswith("xgboost")
                                              and t.__name__ == "Booster")


def translate_xgboost(model, dtype):
    """(width, ops, outputs, source) of an XGBoost JSON model or Booster."""
    if isinstance(model, XGBoostJSON):
        doc, what = model.doc, "the XGBoost model"
    else:
        doc, what = _booster_json(model), "Booster"
    try:
        width, ops, outputs = _xgb_ops(doc, what, dtype)
        version = ".".join(str(v) for v in doc.get("version", ())) or "?"
        objective = doc["learner"]["objective"]["name"]
    except KeyError as e:               # a file cut or edited by hand: say so, no traceback
        raise Refused("%s is not a complete XGBoost JSON model: no key %s" % (what, e))
    except (TypeError, ValueError, IndexError, AttributeError) as e:
        raise Refused("%s is not a valid XGBoost JSON model: %s" % (what, e))
    return width, ops, outputs, "XGBoost %s: %s" % (version, objective)


def kinds():
    """({estimator class: translator}, {transformer class: translator})."""
    from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor,
                                  GradientBoostingClassifier, GradientBoostingRegressor,
                                  HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
    estimators = {
        DecisionTreeClassifier: _decision_tree, DecisionTreeRegressor: _decision_tree,
        RandomForestClassifier: _forest, RandomForestRegressor: _forest,
        ExtraTreesClassifier: _forest, ExtraTreesRegressor: _forest,
        GradientBoostingClassifier: _gradient_boosting,
        GradientBoostingRegressor: _gradient_boosting,
        HistGradientBoostingClassifier: _hist_gradient_boosting,
        HistGradientBoostingRegressor: _hist_gradient_boosting,
    }
    try:
        import xgboost
        estimators[xgboost.XGBClassifier] = _xgb_sklearn
        estimators[xgboost.XGBRegressor] = _xgb_sklearn
    except ImportError:   # pragma: no cover - XGBoost is optional
        pass
    return estimators, {}
