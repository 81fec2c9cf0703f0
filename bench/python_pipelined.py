#!/usr/bin/python3
"""python_pipelined - throughput of the Python package amaas (python/), pipelined.

    bench/python_pipelined.py --broker tcp://127.0.0.1:5555 --model linear \\
        [--jobs N] [--window W] [--rows R] [--datatype FP64|FP32] [--warmup N]

Connects one amaas.Client to the broker and sends N jobs of R random rows
(of the model's input width, from models()) with Client.submit, keeping W
jobs in flight (a closed loop, as `amaas bench --concurrency W`): each
result taken in lets the next job go.  Prints one JSON object:
{"jobs_per_s", "rows_per_s", "jobs", "ok", "errors": {CODE: count},
"seconds", ...}.  The rows are drawn once, 64 different requests cycled, so
that the figure is the client's and the service's, not numpy's random
generator's.  The --warmup jobs before are not measured.

The package is the one installed (import amaas), else python/ of this
source tree; libamaas is AMAAS_LIBRARY, else --library, else build/libamaas.so
of this tree if it is there, else what the package finds.
Exit status: 0, or 1 when the run could not be made (no broker, no model).
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_amaas(library):
    """The amaas package, with libamaas chosen as the module doc says."""
    if not os.environ.get("AMAAS_LIBRARY"):
        if library:
            os.environ["AMAAS_LIBRARY"] = library
        elif os.path.exists(os.path.join(ROOT, "build", "libamaas.so")):
            os.environ["AMAAS_LIBRARY"] = os.path.join(ROOT, "build", "libamaas.so")
    try:
        import amaas
    except ImportError:
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import amaas
    return amaas


def main(argv=None):
    p = argparse.ArgumentParser(description="Pipelined throughput of the amaas Python package.")
    p.add_argument("--broker", default="tcp://127.0.0.1:5555", help="the broker's frontend")
    p.add_argument("--model", required=True)
    p.add_argument("--version", default=None, help="model version (default: the highest)")
    p.add_argument("--jobs", type=int, default=20000, help="jobs measured [20000]")
    p.add_argument("--window", "--concurrency", type=int, default=100,
                   help="jobs in flight [100]")
    p.add_argument("--rows", type=int, default=1, help="rows per job [1]")
    p.add_argument("--datatype", choices=["FP64", "FP32"], default="FP64",
                   help="input rows' datatype [FP64]")
    p.add_argument("--warmup", type=int, default=1000, help="unmeasured jobs before [1000]")
    p.add_argument("--timeout", type=float, default=30.0, help="client timeout, seconds [30]")
    p.add_argument("--library", default=None, help="path of libamaas.so")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.window < 1 or args.rows < 1 or args.warmup < 0:
        p.error("--jobs, --window and --rows must be >= 1, --warmup >= 0")

    amaas = import_amaas(args.library)
    import numpy as np

    try:
        client = amaas.Client(args.broker, timeout=args.timeout)
        width = [m.width for m in client.models() if m.name == args.model]
    except amaas.AmaasError as e:
        sys.stderr.write("python_pipelined: %s\n" % e)
        return 1
    if not width:
        sys.stderr.write("python_pipelined: the broker serves no model '%s'\n" % args.model)
        return 1
    rng = np.random.default_rng(1)
    dtype = np.float64 if args.datatype == "FP64" else np.float32
    requests = [rng.random((args.rows, width[0])).astype(dtype) for _ in range(64)]

    def run(n):
        """Sends n jobs, W in flight; returns (seconds, ok, errors by code name)."""
        state = {"in_flight": 0, "ok": 0}
        errors = {}

        def finished(future):
            state["in_flight"] -= 1
            e = future.exception(0)
            if e is None:
                state["ok"] += 1
            else:
                name = e.code.name if isinstance(e, amaas.AmaasError) else type(e).__name__
                errors[name] = errors.get(name, 0) + 1

        submit, poll = client.submit, client.poll
        model, version = args.model, args.version
        sent = 0
        started = time.perf_counter()
        while sent < n or state["in_flight"]:
            while sent < n and state["in_flight"] < args.window:
                future = submit(model, requests[sent & 63], version=version)
                state["in_flight"] += 1
                sent += 1
                future.add_done_callback(finished)
            poll(1.0)  # waits for one result at least, takes in all that came
        return time.perf_counter() - started, state["ok"], errors

    try:
        if args.warmup:
            run(args.warmup)
        seconds, ok, errors = run(args.jobs)
    except amaas.AmaasError as e:
        sys.stderr.write("python_pipelined: %s\n" % e)
        return 1
    finally:
        client.close()
    print(json.dumps({"model": args.model, "rows": args.rows, "window": args.window,
                      "datatype": args.datatype, "jobs": args.jobs, "ok": ok, "errors": errors,
                      "seconds": round(seconds, 4),
                      "jobs_per_s": round(args.jobs / seconds, 1),
                      "rows_per_s": round(args.jobs * args.rows / seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
