"""common - what every translator of the exporter shares.

A translator turns one fitted estimator into ops of the amaas model format
(docs/MODEL_FORMAT.md).  Each family module (linear, trees, svm, prep) has a
function kinds() that returns {class: translator}, imported lazily so that
scikit-learn or XGBoost are only imported when a file is exported:

  estimators:   translate(est, what, width, dtype) -> (ops, outputs)
  transformers: translate(est, what, width, dtype) -> (ops, new_width)

what names the estimator in messages ("step 'clf' (SVC)"), width is the
current width, dtype "FP64" or "FP32" (the model's datatype: a translator
that must round a value the way the worker compares it needs it).  ops is a
list of dicts; a value that is a numpy array is written as a 64-byte-aligned
bin: float arrays in the model's datatype, int32 / uint32 / uint8 arrays as
those (little-endian).  outputs is a list of (name, datatype or None for the
model's, shape).  A model that cannot be exported raises Refused.
"""

import os
import sys


def _import_defs():
    """defs/amaas_defs.py: beside the source tree's scripts/, or installed in
    PREFIX/share/amaas (this package is PREFIX/share/amaas/amaas_export)."""
    here = os.path.dirname(os.path.realpath(__file__))
    for folder in (os.path.join(here, "..", "..", "defs"), os.path.join(here, "..")):
        if os.path.isfile(os.path.join(folder, "amaas_defs.py")):
            if os.path.normpath(folder) not in sys.path:
                sys.path.insert(0, os.path.normpath(folder))
            break
    import amaas_defs
    return amaas_defs


DEFS = _import_defs()
MAX_LABEL = DEFS.LABEL_MAX      # bytes in one string label
MAX_WIDTH = DEFS.WIDTH_MAX


class AlignedWriter:
    """Packs msgpack into a list of chunks, tracking the file offset."""

    def __init__(self):
        import msgpack
        self.packer = msgpack.Packer(use_bin_type=True)
        self.chunks = []
        self.pos = 0

    def raw(self, data):
        self.chunks.append(data)
        self.pos += len(data)

    def obj(self, value):
        self.raw(self.packer.pack(value))

    def map_header(self, n):
        self.raw(self.packer.pack_map_header(n))

    def array_header(self, n):
        self.raw(self.packer.pack_array_header(n))

    @staticmethod
    def bin_header(n):
        if n < 1 << 8:
            return b"\xc4" + n.to_bytes(1, "big")
        if n < 1 << 16:
            return b"\xc5" + n.to_bytes(2, "big")
        if n < 1 << 32:
            return b"\xc6" + n.to_bytes(4, "big")
        raise Refused("a weight array of %d bytes is over msgpack's 4 GiB limit" % n)

    def aligned_bin(self, key, data):
        """Writes `pad: bin`, then `key: bin(data)` with data at a file offset that is a
        multiple of DEFS.ALIGN (64)."""
        key_bytes = self.packer.pack(key)
        header = self.bin_header(len(data))
        pad_key = self.packer.pack("pad")
        start = self.pos + len(pad_key) + 2 + len(key_bytes) + len(header)
        n = (-start) % DEFS.ALIGN
        self.raw(pad_key)
        self.raw(b"\xc4" + bytes([n]) + bytes(n))
        self.raw(key_bytes)
        self.raw(header)
        assert self.pos % DEFS.ALIGN == 0
        self.raw(data)

    def getvalue(self):
        return b"".join(self.chunks)


class Refused(Exception):
    """The model cannot be exported; the message says why, in one line."""


def _np():
    import numpy
    return numpy


def _check_fitted(est, what):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted
    try:
        check_is_fitted(est)
    except NotFittedError:
        raise Refused("%s is not fitted: fit it before saving it" % what)


def _dense_array(value, what, ndim):
    """value as a float64 ndarray with ndim in ndim; refuses sparse or non-finite."""
    np = _np()
    try:
        import scipy.sparse
        if scipy.sparse.issparse(value):
            raise Refused("%s is a sparse matrix (sparsify() was called): call densify() "
                          "before saving the model" % what)
    except ImportError:  # pragma: no cover - scipy comes with sklearn
        pass
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Refused("%s is not an array of numbers" % what)
    if arr.ndim not in ndim:
        raise Refused("%s has %d dimensions, expected %s" % (what, arr.ndim,
                                                             " or ".join(map(str, ndim))))
    if not np.all(np.isfinite(arr)):
        raise Refused("%s holds NaN or infinite values" % what)
    return arr


def _width(est, what, fallback=None):
    n = getattr(est, "n_features_in_", fallback)
    if n is None:
        raise Refused("%s has no n_features_in_: refit it with scikit-learn >= 1.0" % what)
    n = int(n)
    if not 1 <= n <= MAX_WIDTH:
        raise Refused("%s has %d input features; the format allows 1..%d" % (what, n, MAX_WIDTH))
    return n


def _dense_op(W, b):
    return {"op": "dense", "in": int(W.shape[0]), "out": int(W.shape[1]),
            "weights": W, "bias": b}


def _labels(est, what):
    """classes_ as a list of Python ints or strs, and the label datatype."""
    np = _np()
    classes = getattr(est, "classes_", None)
    if classes is None:
        raise Refused("%s has no classes_" % what)
    classes = np.asarray(classes)
    if classes.ndim != 1:
        raise Refused("%s is a multi-output classifier (classes_ is %d-D): amaas serves "
                      "single-output classifiers only" % (what, classes.ndim))
    if classes.size < 2:
        raise Refused("%s has %d class: a classifier needs at least 2" % (what, classes.size))
    kind = classes.dtype.kind
    values = classes.tolist()
    if kind in "iu" or (kind == "O" and all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in values)):
        values = [int(v) for v in values]
        if any(v < -(1 << 63) or v >= (1 << 63) for v in values):
            raise Refused("%s has integer classes outside the INT64 range" % what)
        return values, "INT64"
    if kind == "U" or (kind == "O" and all(isinstance(v, str) for v in values)):
        values = [str(v) for v in values]
        for v in values:
            try:
                n = len(v.encode("utf-8"))
            except UnicodeEncodeError:
                raise Refused("%s has a class label that is not valid UTF-8: %r" % (what, v))
            if n > MAX_LABEL:
                raise Refused("%s has a class label of %d bytes; the format allows %d"
                              % (what, n, MAX_LABEL))
        return values, "BYTES"
    if kind == "f":
        raise Refused("%s has float class labels (%s): refit it with integer or string "
                      "labels" % (what, ", ".join(repr(v) for v in values[:3])))
    if kind == "b":
        raise Refused("%s has boolean class labels: refit it with integer or string labels"
                      % what)
    raise Refused("%s has class labels of type %s: only integer or string labels can be "
                  "exported" % (what, classes.dtype))


def _classifier_tail(est, what, k):
    """ops after the probabilities: output, argmax, output; and the outputs."""
    labels, label_dtype = _labels(est, what)
    if len(labels) != k:
        raise Refused("%s has %d classes but %d probability columns" % (what, len(labels), k))
    ops = [{"op": "output", "name": "probabilities"},
           {"op": "argmax", "labels": labels},
           {"op": "output", "name": "label"}]
    outputs = [("probabilities", None, [-1, k]), ("label", label_dtype, [-1])]
    return ops, outputs
