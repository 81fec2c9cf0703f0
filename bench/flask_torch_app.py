"""flask_torch_app.py - the usual way to serve a PyTorch model, for comparison.

    AMAAS_BENCH_MODELS=DIR gunicorn --chdir bench -w 2 -b 127.0.0.1:8000 flask_torch_app:app

Loads every DIR/*.pt module that bench/graph_models.py saved (torch.load: the
classes come from tests/fidelity/zoo_onnx.py) with its DIR/NAME.json spec, on
one torch thread per process (torch.set_num_threads(1), set when the app is
imported, in each gunicorn worker without --preload), and serves

    POST /predict/<name>   {"input_ids": [...], "attention_mask": [...]}
                           ->  {"logits": [...]}

the inputs by the names of the spec, the outputs its "reply" names (the
encoders: logits only; their hidden states are not sent back).  Each input
is one row (the batch dimension is added) or a list of rows, converted to
the spec's datatype; the module runs under torch.inference_mode().  An unknown model is
404, a body that does not fit 400.  scripts/bench runs it under gunicorn with
2 sync workers and drives it with wrk (bench/wrk_post.lua --body).
"""

import glob
import json
import os
import sys

import numpy as np
import torch
from flask import Flask, abort, jsonify, request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fidelity"))

torch.set_num_threads(1)

app = Flask(__name__)

MODELS = {}
for path in sorted(glob.glob(os.path.join(os.environ.get("AMAAS_BENCH_MODELS", "."), "*.pt"))):
    name = os.path.splitext(os.path.basename(path))[0]
    with open(os.path.splitext(path)[0] + ".json") as f:
        spec = json.load(f)
    try:
        module = torch.load(path, weights_only=False)
    except TypeError:  # torch < 2.0: no weights_only
        module = torch.load(path)
    MODELS[name] = (module.eval(), spec)

DTYPES = {"INT64": np.int64, "FP32": np.float32}


@app.post("/predict/<name>")
def predict(name):
    entry = MODELS.get(name)
    if entry is None:
        abort(404)
    module, spec = entry
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400)
    inputs = []
    try:
        for io in spec["inputs"]:
            x = np.asarray(body[io["name"]], dtype=DTYPES[io["datatype"]])
            if x.ndim == len(io["shape"]) - 1:
                x = x[np.newaxis]
            inputs.append(torch.from_numpy(x))
        with torch.inference_mode():
            out = module(*inputs)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError):
        abort(400)
    return jsonify({n: out[spec["outputs"].index(n)].tolist() for n in spec["reply"]})
