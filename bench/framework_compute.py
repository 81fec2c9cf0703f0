#!/usr/bin/python3
"""framework_compute.py - what the framework's own predictor costs, on one thread:
the baseline side of scripts/bench's compute comparisons (bench/model_compute.c
is the amaas side, on the same rows).

    framework_compute.py (--xgboost MODEL.json | --sklearn MODEL.joblib) INPUT.f64
                         --width W [--rows N] [--repeats R] [--min-time S]

INPUT.f64 holds raw little-endian FP64 rows of W values.  Times, on batches of
--rows rows taken in turn from it:
  --xgboost   xgboost.Booster.inplace_predict (nthread=1) on float32 rows (XGBoost's
              own datatype: the conversion is not timed, to its advantage)
  --sklearn   the estimator's predict (run with OMP/BLAS threads set to 1 by the caller)
One repeat is as many batches as fill --min-time seconds; the figure is the median
of --repeats.  Prints one JSON object: {"framework", "rows", "batch_us", "rows_per_s"}.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--xgboost", metavar="MODEL.json")
    src.add_argument("--sklearn", metavar="MODEL.joblib")
    p.add_argument("input", metavar="INPUT.f64")
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.5)
    args = p.parse_args()

    x = np.fromfile(args.input, dtype="<f8").reshape(-1, args.width)
    if len(x) < args.rows:
        p.error("%s has %d rows, fewer than --rows %d" % (args.input, len(x), args.rows))
    batches = [x[i:i + args.rows] for i in range(0, len(x) - args.rows + 1, args.rows)]
    if args.xgboost:
        import xgboost
        booster = xgboost.Booster()
        booster.load_model(args.xgboost)
        booster.set_param({"nthread": 1})
        batches = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
        predict = booster.inplace_predict
        framework = "xgboost %s inplace_predict" % xgboost.__version__
    else:
        import joblib
        import sklearn
        model = joblib.load(args.sklearn)
        predict = model.predict
        framework = "scikit-learn %s %s.predict" % (sklearn.__version__, type(model).__name__)
    for b in batches[:3]:                 # warm-up
        predict(b)
    times = []
    k = 0
    for _ in range(args.repeats):
        n = 0
        start = now = time.perf_counter()
        while now - start < args.min_time:
            predict(batches[k % len(batches)])
            k += 1
            n += 1
            now = time.perf_counter()
        times.append((now - start) / n)
    batch = statistics.median(times)
    json.dump({"framework": framework, "rows": args.rows, "batch_us": batch * 1e6,
               "rows_per_s": args.rows / batch}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
