#!/usr/bin/python3
"""torch_compute.py - what PyTorch eager costs on a graph model, on one thread:
the baseline side of scripts/bench's graph compute rows (bench/model_compute
on the model's .amm is the amaas side, with the same inputs' shapes).

    torch_compute.py MODEL.pt [--spec MODEL.json] [--rows N] [--dim NAME=VALUE]...
                     [--repeats R] [--min-time S] [--warmup N] [--threads T]

Loads the module that bench/graph_models.py saved (torch.load; the classes
come from tests/fidelity/zoo_onnx.py) and the inputs of its spec (MODEL.json
beside it by default), and generates the inputs as model_compute does: the
first dimension is --rows (default 1), other named dimensions come from --dim
(e.g. --dim sequence=128); INT64 inputs random in [0, bound), all 1 for an
input named like a mask (or 0 without a bound); FP32 inputs random in
[-1, 1).  Times module(*inputs) under torch.inference_mode() with
torch.set_num_threads(--threads, default 1), the inputs made once
beforehand.  One repeat is as many calls as fill --min-time seconds (at
least one); the figure is the median of --repeats, after --warmup calls.
Prints one JSON object: {"framework", "rows", "shapes", "batch_us",
"rows_per_s", "repeats"}.
"""

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fidelity"))


def parse_dims(items, p):
    dims = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit() or int(value) < 1:
            p.error("--dim wants NAME=VALUE with VALUE >= 1, got %r" % item)
        dims[name] = int(value)
    return dims


def make_inputs(spec, rows, dims, seed=1):
    """numpy arrays of the spec's inputs, generated as the module doc says."""
    import numpy as np
    rng = np.random.default_rng(seed)
    arrays = []
    for io in spec["inputs"]:
        shape = [rows]
        for d in io["shape"][1:]:
            if isinstance(d, int):
                shape.append(d)
            elif d in dims:
                shape.append(dims[d])
            else:
                raise ValueError("input %s: dimension %r not set (--dim %s=VALUE)"
                                 % (io["name"], d, d))
        if io["datatype"] == "INT64":
            if "mask" in io["name"].lower():
                arrays.append(np.ones(shape, dtype=np.int64))
            elif io.get("bound", 0) > 0:
                arrays.append(rng.integers(0, io["bound"], size=shape, dtype=np.int64))
            else:
                arrays.append(np.zeros(shape, dtype=np.int64))
        else:
            arrays.append(rng.uniform(-1, 1, size=shape).astype(np.float32))
    return arrays


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", metavar="MODEL.pt")
    p.add_argument("--spec", metavar="MODEL.json")
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--dim", action="append", metavar="NAME=VALUE")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.rows < 1 or args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--rows, --repeats and --threads must be >= 1, --warmup >= 0")
    dims = parse_dims(args.dim, p)
    spec_path = args.spec or os.path.splitext(args.model)[0] + ".json"
    with open(spec_path) as f:
        spec = json.load(f)

    import torch
    torch.set_num_threads(args.threads)
    try:
        module = torch.load(args.model, weights_only=False)
    except TypeError:  # torch < 2.0: no weights_only, always a full unpickle
        module = torch.load(args.model)
    module.eval()
    try:
        arrays = make_inputs(spec, args.rows, dims)
    except ValueError as e:
        p.error(str(e))
    inputs = [torch.from_numpy(a) for a in arrays]
    times = []
    with torch.inference_mode():
        for _ in range(args.warmup):
            module(*inputs)
        for _ in range(args.repeats):
            n = 0
            start = now = time.perf_counter()
            while n == 0 or now - start < args.min_time:
                module(*inputs)
                n += 1
                now = time.perf_counter()
            times.append((now - start) / n)
    batch = statistics.median(times)
    json.dump({"framework": "PyTorch %s eager, %d thread%s" % (torch.__version__, args.threads,
                                                               "" if args.threads == 1 else "s"),
               "model": os.path.basename(args.model), "rows": args.rows,
               "shapes": [list(a.shape) for a in arrays], "batch_us": batch * 1e6,
               "rows_per_s": args.rows / batch, "repeats": args.repeats}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
