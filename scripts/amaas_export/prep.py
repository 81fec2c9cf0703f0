"""prep - preprocessing transformers and ColumnTransformer.

Each translator reproduces the transformer's transform in scikit-learn 1.2,
operation for operation (docs/MODEL_FORMAT.md, "From scikit-learn", "prep"):

  MinMaxScaler        affine(scale_, min_) [clip(feature_range)]
  MaxAbsScaler        scale(0, scale_)
  RobustScaler        scale(center_ or 0, scale_ or 1)
  Normalizer          l1_normalize | l2_normalize | max_normalize
  SimpleImputer       impute (NaN -> statistics_, empty columns dropped, indicators)
  PCA                 scale(mean_, 1) dense(components_.T, 0) [scale(0, sqrt(explained_variance_))]
  PolynomialFeatures  poly (powers_)
  OneHotEncoder       onehot (categories_, drop_idx_)
  ColumnTransformer   columns (a part per transformer, Pipelines in parts chained)
"""

from .common import Refused, _dense_array, _np


def _vector(value, what, width):
    """value as a finite float64 vector of `width` values."""
    arr = _dense_array(value, what, (1,))
    if arr.shape != (width,):
        raise Refused("%s has %d values, expected %d" % (what, arr.size, width))
    return arr


def _fits(arr, what, dtype):
    """Refuses finite values that overflow the model's datatype (bins that may
    hold NaN skip the encoder's own check)."""
    np = _np()
    if dtype == "FP32":
        finite = arr[np.isfinite(arr)]
        if finite.size and np.max(np.abs(finite)) > np.finfo(np.float32).max:
            raise Refused("%s overflows FP32: export it as FP64" % what)


def _minmax(est, what, width, dtype):
    mul = _vector(est.scale_, what + " scale_", width)
    add = _vector(est.min_, what + " min_", width)
    ops = [{"op": "affine", "width": width, "mul": mul, "add": add}]
    if getattr(est, "clip", False):
        low, high = (float(v) for v in est.feature_range)
        ops.append({"op": "clip", "width": width, "low": low, "high": high})
    return ops, width


def _maxabs(est, what, width, dtype):
    np = _np()
    scale = _vector(est.scale_, what + " scale_", width)
    if np.any(scale == 0):
        raise Refused("%s: scale_ holds zeros" % what)
    return [{"op": "scale", "width": width, "mean": np.zeros(width), "scale": scale}], width


def _robust(est, what, width, dtype):
    np = _np()
    center = (_vector(est.center_, what + " center_", width) if est.with_centering
              else np.zeros(width))
    scale = (_vector(est.scale_, what + " scale_", width) if est.with_scaling
             else np.ones(width))
    if np.any(scale == 0):
        raise Refused("%s: scale_ holds zeros" % what)
    return [{"op": "scale", "width": width, "mean": center, "scale": scale}], width


def _normalizer(est, what, width, dtype):
    ops = {"l1": "l1_normalize", "l2": "l2_normalize", "max": "max_normalize"}
    if est.norm not in ops:
        raise Refused("%s: norm %r is not supported (l1, l2, max are)" % (what, est.norm))
    return [{"op": ops[est.norm], "width": width}], width


def _imputer(est, what, width, dtype):
    np = _np()
    mv = est.missing_values
    if not (isinstance(mv, float) and np.isnan(mv)):
        raise Refused("%s: missing_values=%r is not supported (np.nan is)" % (what, mv))
    try:
        stats = np.asarray(est.statistics_, dtype=np.float64)
    except (TypeError, ValueError):
        raise Refused("%s: statistics_ are not numbers (fill_value %r): only numeric "
                      "imputation is supported" % (what, est.fill_value))
    if stats.shape != (width,):
        raise Refused("%s: statistics_ has %d values, expected %d" % (what, stats.size, width))
    if np.any(np.isinf(stats)):
        raise Refused("%s: statistics_ holds infinite values" % what)
    #  SimpleImputer.transform drops the columns whose statistic is NaN
    #  (no value seen in fit), unless strategy is constant or keep_empty_features
    if est.strategy == "constant" or getattr(est, "keep_empty_features", False):
        kept = np.arange(width)
    else:
        kept = np.flatnonzero(~np.isnan(stats))
    values = stats[kept]
    _fits(values, what + " statistics_", dtype)
    indicators = np.zeros(0, dtype=np.int32)
    if est.add_indicator:
        ind = est.indicator_
        if not (isinstance(ind.missing_values, float) and np.isnan(ind.missing_values)):
            raise Refused("%s: the missing indicator's missing_values is not np.nan" % what)
        indicators = np.asarray(ind.features_, dtype=np.int64)
        if indicators.ndim != 1 or np.any(indicators < 0) or np.any(indicators >= width):
            raise Refused("%s: indicator_.features_ is not a list of columns" % what)
    out = len(kept) + len(indicators)
    if out < 1:
        raise Refused("%s gives no columns: every feature was empty in fit" % what)
    op = {"op": "impute", "in": width, "kept": int(len(kept)), "indicated": int(len(indicators)),
          "nan_ok": True, "columns": kept.astype(np.int32), "values": values,
          "indicators": indicators.astype(np.int32)}
    return [op], out


def _pca(est, what, width, dtype):
    np = _np()
    comps = _dense_array(est.components_, what + " components_", (2,))
    k = comps.shape[0]
    if comps.shape[1] != width:
        raise Refused("%s: components_ has %d features, expected %d" % (what, comps.shape[1], width))
    mean = (_vector(est.mean_, what + " mean_", width) if est.mean_ is not None
            else np.zeros(width))
    #  PCA.transform: (X - mean_) @ components_.T, then / sqrt(explained_variance_)
    ops = [{"op": "scale", "width": width, "mean": mean, "scale": np.ones(width)},
           {"op": "dense", "in": width, "out": k, "weights": np.ascontiguousarray(comps.T),
            "bias": np.zeros(k)}]
    if est.whiten:
        var = _vector(est.explained_variance_, what + " explained_variance_", k)
        if np.any(var <= 0):
            raise Refused("%s: whiten with an explained variance of 0" % what)
        ops.append({"op": "scale", "width": k, "mean": np.zeros(k), "scale": np.sqrt(var)})
    return ops, k


def _poly(est, what, width, dtype):
    np = _np()
    powers = np.asarray(est.powers_)
    if powers.ndim != 2 or powers.shape[1] != width or np.any(powers < 0):
        raise Refused("%s: powers_ has shape %s, expected [n, %d]" % (what, powers.shape, width))
    m = powers.shape[0]
    #  term j: the input columns with multiplicity, ascending (the worker
    #  multiplies them from the last to the first, as scikit-learn does)
    terms = [np.repeat(np.arange(width), row) for row in powers]
    offsets = np.zeros(m + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in terms])
    if offsets[-1] >= 1 << 30:
        raise Refused("%s has %d factors in its terms; the format allows %d"
                      % (what, offsets[-1], (1 << 30) - 1))
    indices = np.concatenate(terms) if m else np.zeros(0)
    op = {"op": "poly", "in": width, "out": int(m), "factors": int(offsets[-1]),
          "offsets": offsets.astype(np.int32), "indices": indices.astype(np.int32)}
    return [op], int(m)


def _onehot(est, what, width, dtype):
    np = _np()
    if getattr(est, "_infrequent_enabled", False):
        raise Refused("%s: infrequent categories (min_frequency, max_categories) are not "
                      "supported" % what)
    if est.handle_unknown not in ("error", "ignore", "infrequent_if_exist"):
        raise Refused("%s: handle_unknown=%r is not supported (error, ignore are)"
                      % (what, est.handle_unknown))
    cats = est.categories_
    if len(cats) != width:
        raise Refused("%s has %d categories_ for %d features" % (what, len(cats), width))
    drop = est.drop_idx_
    np_dt = np.float64 if dtype == "FP64" else np.float32
    counts, values, columns = [], [], []
    out = 0
    for i, c in enumerate(cats):
        c = np.asarray(c)
        if c.dtype.kind not in "iuf":
            raise Refused("%s: column %d has categories of type %s: only numeric categories "
                          "are supported" % (what, i, c.dtype))
        v = c.astype(np.float64)
        if c.dtype.kind in "iu" and np.any(np.abs(c.astype(object)) > 1 << 53):
            raise Refused("%s: column %d has integer categories beyond 2^53" % (what, i))
        cast = v.astype(np_dt)
        nums = cast[~np.isnan(cast)]
        if np.any(np.isinf(cast) & ~np.isinf(v)):
            raise Refused("%s: column %d has categories that overflow %s" % (what, i, dtype))
        if np.any(np.isnan(cast)[:-1]) or np.any(np.diff(nums) <= 0):
            raise Refused("%s: column %d has categories that are not distinct in %s"
                          % (what, i, dtype))
        d = None if drop is None else drop[i]
        col = []
        for j in range(len(v)):
            if d is not None and j == int(d):
                col.append(-1)
            else:
                col.append(out + (j if d is None or j < int(d) else j - 1))
        out += len(v) - (0 if d is None else 1)
        counts.append(len(v))
        values.append(v)
        columns.extend(col)
    if out != sum(est._n_features_outs):
        raise Refused("%s: %d output columns, scikit-learn says %d"
                      % (what, out, sum(est._n_features_outs)))
    if out < 1:
        raise Refused("%s gives no columns" % what)
    allv = np.concatenate(values)
    op = {"op": "onehot", "in": width, "out": int(out), "n_categories": int(len(allv)),
          "nan_ok": True, "counts": np.asarray(counts, dtype=np.int32), "categories": allv,
          "columns": np.asarray(columns, dtype=np.int32)}
    return [op], int(out)


def _part_ops(est, what, width, dtype):
    """(ops, width) of a ColumnTransformer's transformer: one, or a Pipeline of
    them chained."""
    from . import translate
    ops = []
    w = width
    for name, step in translate.steps(est):
        step_what = ("%s step %r (%s)" % (what, name, type(step).__name__)
                     if step is not est else what)
        step_ops, w = translate.transformer_ops(step, step_what, w, dtype)
        ops += step_ops
    return ops, w


def _column_transformer(est, what, width, dtype):
    np = _np()
    if est.transformer_weights:
        raise Refused("%s: transformer_weights are not supported" % what)
    indices = getattr(est, "_transformer_to_input_indices", None)
    if indices is None:
        raise Refused("%s: no _transformer_to_input_indices: refit it with scikit-learn >= 1.1"
                      % what)
    parts = []
    out = 0
    for name, trans, _ in est.transformers_:
        cols = [int(c) for c in np.asarray(indices.get(name, []), dtype=np.int64)]
        if (isinstance(trans, str) and trans == "drop") or not cols:
            continue
        if any(c < 0 or c >= width for c in cols):
            raise Refused("%s: transformer %r takes columns outside 0..%d" % (what, name, width - 1))
        if isinstance(trans, str) and trans == "passthrough":
            ops, w = [], len(cols)
        elif isinstance(trans, str):
            raise Refused("%s: transformer %r is %r" % (what, name, trans))
        else:
            part_what = "%s transformer %r (%s)" % (what, name, type(trans).__name__)
            ops, w = _part_ops(trans, part_what, len(cols), dtype)
        parts.append({"columns": cols, "ops": ops})
        out += w
    if not parts:
        raise Refused("%s gives no columns (every transformer is 'drop')" % what)
    return [{"op": "columns", "parts": parts}], out


def kinds():
    """({estimator class: translator}, {transformer class: translator})."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (MaxAbsScaler, MinMaxScaler, Normalizer, OneHotEncoder,
                                       PolynomialFeatures, RobustScaler)
    return {}, {MinMaxScaler: _minmax, MaxAbsScaler: _maxabs, RobustScaler: _robust,
                Normalizer: _normalizer, SimpleImputer: _imputer, PCA: _pca,
                PolynomialFeatures: _poly, OneHotEncoder: _onehot,
                ColumnTransformer: _column_transformer}
