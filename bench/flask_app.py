"""flask_app.py - the usual way to serve scikit-learn models, for comparison.

    AMAAS_BENCH_MODELS=DIR gunicorn --chdir bench -w 2 -b 127.0.0.1:8000 flask_app:app

Loads every DIR/*.joblib at start (joblib, as most tutorials do) and serves

    POST /predict/<name>   {"X": [...]}  ->  {"y_pred": [...]}

where X is one row or a list of rows and y_pred is model.predict(X) as a
list (labels for a classifier, values for a regressor): the request and
answer of the Flask app amaas-gateway's /predict/{name} route stands in
for (docs/HTTP.md).  An unknown model is 404, a bad body 400.
scripts/bench runs it under gunicorn, one worker process per core, and drives
it with wrk (bench/wrk_post.lua).
"""

import glob
import os

import joblib
import numpy as np
from flask import Flask, abort, jsonify, request

app = Flask(__name__)

MODELS = {}
for path in sorted(glob.glob(os.path.join(os.environ.get("AMAAS_BENCH_MODELS", "."),
                                          "*.joblib"))):
    MODELS[os.path.splitext(os.path.basename(path))[0]] = joblib.load(path)


@app.post("/predict/<name>")
def predict(name):
    model = MODELS.get(name)
    if model is None:
        abort(404)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "X" not in body:
        abort(400)
    try:
        x = np.asarray(body["X"], dtype=np.float64)
        if x.ndim == 1:
            x = x[np.newaxis, :]
        y = model.predict(x)
    except (ValueError, TypeError):
        abort(400)
    return jsonify({"y_pred": y.tolist()})
