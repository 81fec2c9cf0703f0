#!/usr/bin/python3
"""graph_load.py - load generator for a served graph model of several inputs.

    bench/graph_load.py --broker tcp://127.0.0.1:5555 --model encoder --spec DIR/encoder.json
        [--rows N] [--dim NAME=VALUE]... [--concurrency C[,C...]] [--duration S]
        [--warmup S] [--outputs NAME[,NAME...]] [--deadline-ms MS]

`amaas bench` for models whose inputs are not one row of features: each job
holds every input of the spec (bench/graph_models.py's NAME.json, the names
the .amm declares), generated as bench/torch_compute.py and model_compute do
(--rows the batch, --dim the other named dimensions; INT64 token ids random
below the bound, masks all 1), 16 different requests cycled.  The header asks
for --outputs only (e.g. logits: the worker then computes every output but
encodes and sends only those).  Closed loop: keeps C jobs in flight for
--duration seconds after --warmup, for each C of the sweep; the jobs
answered within those seconds count.  It speaks the
protocol with tests/pyamaas.py (the C library and the Python package cannot
ask for some outputs only).  Prints one JSON array, one object per level:
{"concurrency", "rows", "jobs", "ok", "errors": {CODE: n}, "jobs_per_s",
"rows_per_s", "latency_us": {"p50", "p90", "p99", "mean"}, "server_us":
{"queue_mean", "compute_mean"}, "batch_jobs_mean"}.
Exit status: 0, or 1 when no job could be run (no broker, no such model).
"""

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)
import pyamaas  # noqa: E402
import torch_compute  # noqa: E402  (make_inputs, parse_dims: the same inputs as its side)


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    rank = int(math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[max(rank, 1) - 1]


def run_level(client, args, requests, concurrency, state):
    """One level: a list of (sent_at, answered_at, header) of the jobs
    answered in the measured window (after the warm-up).  Jobs are counted
    when they are answered, not when they are sent: a batch of long jobs
    (hundreds of milliseconds) sent during the warm-up and answered in the
    window counts, so that a short window still sees the steady state."""
    start = time.monotonic()
    measure_from = start + args.warmup
    end = measure_from + args.duration
    sent_at = {}
    done = []
    while True:
        now = time.monotonic()
        sending = now < end
        if not sending and not sent_at:
            break
        while sending and len(sent_at) < concurrency:
            jid = client.send(args.model, requests[state["n"] % len(requests)],
                              outputs=args.outputs, deadline_ms=args.deadline_ms)
            state["n"] += 1
            sent_at[jid] = time.monotonic()
        frames = client.recv_raw(100 if sending else args.deadline_ms + 5000)
        if frames is None:
            if not sending:
                raise RuntimeError("%d jobs unanswered" % len(sent_at))
            continue
        header = pyamaas.decode_header(frames[2]) if len(frames) >= 3 else {}
        t = sent_at.pop(header.get("id"), None)
        if t is None:
            continue  # an answer to no job of ours (a late duplicate)
        if header.get("code", pyamaas.OK) == pyamaas.OK and frames[1][0] != pyamaas.REPLY:
            header["code"] = pyamaas.UNKNOWN
        answered = time.monotonic()
        if measure_from <= answered < end:
            done.append((t, answered, header))
    return done


def report(concurrency, rows, duration, done):
    ok = [(a, b, h) for a, b, h in done if h.get("code", pyamaas.OK) == pyamaas.OK]
    errors = {}
    for _, _, h in done:
        code = h.get("code", pyamaas.OK)
        if code != pyamaas.OK:
            name = pyamaas.CODE_NAMES.get(code, str(code))
            errors[name] = errors.get(name, 0) + 1
    lat = sorted((b - a) * 1e6 for a, b, _ in ok)
    n = max(len(ok), 1)
    return {"concurrency": concurrency, "rows": rows, "duration_s": duration, "jobs": len(done),
            "ok": len(ok), "errors": errors, "jobs_per_s": round(len(ok) / duration, 2),
            "rows_per_s": round(len(ok) * rows / duration, 2),
            "latency_us": {"p50": round(percentile(lat, 50), 1),
                           "p90": round(percentile(lat, 90), 1),
                           "p99": round(percentile(lat, 99), 1),
                           "mean": round(sum(lat) / n, 1)},
            "server_us": {"queue_mean": round(sum(h.get("queue_us", 0) for _, _, h in ok) / n, 1),
                          "compute_mean": round(sum(h.get("compute_us", 0) for _, _, h in ok) / n,
                                                1)},
            "batch_jobs_mean": round(sum(h.get("batch", 1) for _, _, h in ok) / n, 2)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", default="tcp://127.0.0.1:5555")
    p.add_argument("--model", required=True)
    p.add_argument("--spec", required=True, metavar="MODEL.json")
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--dim", action="append", metavar="NAME=VALUE")
    p.add_argument("--concurrency", default="1")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--outputs", default=None, help="comma-separated output names (default: all)")
    p.add_argument("--deadline-ms", type=int, default=120000)
    args = p.parse_args(argv)
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1 or args.rows < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--concurrency wants positive integers; --rows >= 1, --duration > 0")
    args.outputs = args.outputs.split(",") if args.outputs else None
    dims = torch_compute.parse_dims(args.dim, p)
    with open(args.spec) as f:
        spec = json.load(f)
    names = [io["name"] for io in spec["inputs"]]
    try:
        requests = [dict(zip(names, torch_compute.make_inputs(spec, args.rows, dims, seed=s)))
                    for s in range(16)]
    except ValueError as e:
        p.error(str(e))
    out = []
    with pyamaas.Client(args.broker, timeout_ms=10000) as client:
        try:
            client.predict(args.model, requests[0], outputs=args.outputs,
                           timeout_ms=args.deadline_ms)  # the model is there, and warm
        except pyamaas.AmaasError as e:
            sys.stderr.write("graph_load: %s\n" % e)
            return 1
        state = {"n": 0}
        for c in levels:
            out.append(report(c, args.rows, args.duration,
                              run_level(client, args, requests, c, state)))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
