"""Integration: N workers on one machine share one copy of a model's weights.
Run: ctest -R integration_memory, or pytest --build-dir BUILD tests/integration/test_memory.py

A model of 256 MiB (one dense FP32 layer, 8192 x 8192, written with the
exporter's own encoder) is served by 4 workers; each computes at least one
job (so that each has read every weight page), then the test reads Rss and
Pss from /proc/PID/smaps_rollup.  The weights are used in place from a
read-only file mapping, so the page cache holds them once and Pss (each
shared page counted 1/N in each of the N processes) adds up to about one
copy: the 4 workers' total Pss must stay under 2x the file (4 private
copies would be 4x), while each worker's Rss is at least the file.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
import pyamaas  # noqa: E402
from harness import Cluster, build_dir, load_exporter  # noqa: E402

BUILD = build_dir()
WIDTH = 8192  # 8192 x 8192 FP32 weights: 256 MiB
WORKERS = 4
TIMEOUT = 30.0


def write_big_model(path):
    """A 256 MiB model: predictions = x . W + b with W all 1/1024, b = 0."""
    export = load_exporter()
    weights = np.full((WIDTH, WIDTH), 1.0 / 1024, dtype=np.float32)
    ops = [{"op": "dense", "in": WIDTH, "out": WIDTH, "weights": weights,
            "bias": np.zeros(WIDTH, dtype=np.float32)},
           {"op": "output", "name": "predictions", "flatten": False}]
    data = export.encode("big", "1", "FP32", WIDTH, ops, [("predictions", None, [-1, WIDTH])],
                         "test_memory.py")
    export.write_atomic(path, data)


def smaps(pid):
    """Rss and Pss of a process, bytes."""
    text = open("/proc/%d/smaps_rollup" % pid).read()
    kb = {k: int(v) for k, v in re.findall(r"^(Rss|Pss):\s+(\d+) kB", text, re.M)}
    return kb["Rss"] * 1024, kb["Pss"] * 1024


def workers(c):
    r = subprocess.run([os.path.join(BUILD, "amaas"), "--control", c.control, "--timeout",
                        "5000", "workers", "--json"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["workers"]


def test_workers_share_the_weights():
    if not os.path.exists("/proc/self/smaps_rollup"):
        pytest.skip("no /proc/PID/smaps_rollup (Linux 4.14 or later)")
    d = tempfile.mkdtemp(prefix="amaas-memory-")
    try:
        path = os.path.join(d, "big.amm")
        t0 = time.monotonic()
        write_big_model(path)
        size = os.path.getsize(path)
        print("model file %d bytes (%.1f MiB) written in %.1f s"
              % (size, size / 2**20, time.monotonic() - t0))
        assert size >= 256 * 2**20
        with Cluster(BUILD, d, workers=WORKERS, ready_timeout=TIMEOUT) as c:
            pids = {w.pid for w in c.workers}
            # Jobs until every worker has computed one (`amaas workers` done counts)
            x = np.linspace(-1, 1, WIDTH).reshape(1, WIDTH)
            expect = x.sum() / 1024
            deadline = time.monotonic() + TIMEOUT
            done = {}
            with pyamaas.Client(c.frontend, timeout_ms=20000) as client:
                while True:
                    ids = [client.send("big", {"input": x}) for _ in range(2 * WORKERS)]
                    for jid in ids:
                        out, _ = client.recv(jid)
                        np.testing.assert_allclose(out["predictions"][0], expect, atol=1e-2)
                    done = {w["pid"]: w["done"] for w in workers(c)}
                    if set(done) == pids and all(n > 0 for n in done.values()):
                        break
                    assert time.monotonic() < deadline, "not every worker computed: %s" % done
            figures = {pid: smaps(pid) for pid in sorted(pids)}
            loads = re.findall(r"model loaded name=big .* load_us=(\d+)",
                               "\n".join(open(p).read() for p in c._log_files))
        total_pss = sum(pss for _, pss in figures.values())
        for pid, (rss, pss) in figures.items():
            print("worker pid=%d jobs=%d Rss=%.1f MiB Pss=%.1f MiB"
                  % (pid, done[pid], rss / 2**20, pss / 2**20))
        print("total Pss of %d workers: %.1f MiB = %.2f x the file (4 private copies: 4x); "
              "load times: %s ms" % (len(figures), total_pss / 2**20, total_pss / size,
                                     ", ".join("%.1f" % (int(us) / 1000) for us in loads)))
        assert total_pss < 2 * size, (total_pss, size)
        assert all(rss >= size for rss, _ in figures.values()), (figures, size)
    finally:
        shutil.rmtree(d, ignore_errors=True)

