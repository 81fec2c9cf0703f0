"""Writes amaas model files of plain dense layers with random weights, to
give tests a model whose compute time they control (rows x layer sizes).

    write_mlp(path, "slow", [256, 2048, 2048, 16])   # FP32, relu between layers
"""
import msgpack
import numpy as np


def write_mlp(path, name, widths, dtype="FP32", seed=0, version="1"):
    rng = np.random.default_rng(seed)
    np_dtype = np.dtype("<f4") if dtype == "FP32" else np.dtype("<f8")
    ops = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np_dtype)
        b = rng.standard_normal(n_out).astype(np_dtype) * 0.1
        ops.append({"op": "dense", "in": n_in, "out": n_out, "weights": w.tobytes(),
                    "bias": b.tobytes()})
        if i < len(widths) - 2:
            ops.append({"op": "relu"})
    ops.append({"op": "output", "name": "y"})
    model = {"format": "amaas-model", "format_version": 1, "name": name, "version": version,
             "datatype": dtype, "input": {"name": "input", "width": widths[0]},
             "outputs": [{"name": "y", "datatype": dtype, "shape": [-1, widths[-1]]}],
             "ops": ops}
    with open(path, "wb") as f:
        f.write(msgpack.packb(model, use_bin_type=True))
