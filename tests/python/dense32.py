"""dense32, the FP32 model of tests/python: y = x W + b, input "features",
output "y", in two versions whose weights differ, so that a test can tell
which version answered."""
import msgpack
import numpy as np

W = {"1": np.array([[1.0, -2.0], [0.5, 0.25], [3.0, 0.0]], dtype=np.float32),
     "2": np.array([[2.0, 1.0], [-1.0, 0.5], [0.0, 4.0]], dtype=np.float32)}
B = {"1": np.array([0.5, -1.0], dtype=np.float32), "2": np.array([1.0, 2.0], dtype=np.float32)}


def write(path, version):
    """Writes version `version` of dense32 to path (an amaas model file)."""
    weights, bias = W[version], B[version]
    model = {"format": "amaas-model", "format_version": 1, "name": "dense32", "version": version,
             "datatype": "FP32", "input": {"name": "features", "width": weights.shape[0]},
             "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, weights.shape[1]]}],
             "ops": [{"op": "dense", "in": weights.shape[0], "out": weights.shape[1],
                      "weights": weights.astype("<f4").tobytes(),
                      "bias": bias.astype("<f4").tobytes()},
                     {"op": "output", "name": "y"}]}
    with open(path, "wb") as f:
        f.write(msgpack.packb(model, use_bin_type=True))
