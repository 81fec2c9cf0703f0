"""Allocations on the hot path: the broker and a worker run with
tools/liballoc_count.so preloaded, which counts every malloc, calloc and
realloc by the library that called it.  After a warm-up, 20,000 pipelined
jobs (tests/chaos_client.c, no chaos) must cost no allocation in amaas's
own code, czmq or msgpack-c: fewer than one per 100 jobs, a margin for
heartbeats and timers.  What libzmq allocates inside (the body of each
frame it sends over 33 bytes) is printed, not checked.
Run: ctest -R integration_allocations, or pytest --build-dir BUILD tests/integration/test_allocations.py"""
import os
import struct
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Cluster, build_dir  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
PRELOAD = os.path.join(BUILD, "tools", "liballoc_count.so")
JOBS = 20000
LIBZMQ = ("libzmq.so.5", "libstdc++.so.6")  # libzmq allocates through operator new too


def counts(path):
    """{object name: allocations} from an alloc_count file."""
    data = open(path, "rb").read()
    out = {}
    for offset in range(0, len(data), 64):
        name, count = struct.unpack_from("<56sQ", data, offset)
        name = name.rstrip(b"\0").decode()
        if name:
            out[name] = count
    return out


def run_jobs(c, n):
    r = subprocess.run([os.path.join(BUILD, "tests", "chaos_client"), c.frontend, str(n), "100",
                        "1e9", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lost=0" in r.stdout, r.stdout
    return r.stdout.splitlines()[0]


def test_no_allocation_per_job():
    if os.environ.get("AMAAS_SANITIZED"):
        pytest.skip("ASan replaces malloc itself: the counter cannot be preloaded")
    tmp = tempfile.mkdtemp(prefix="amaas-alloc-")
    env = {"LD_PRELOAD": PRELOAD, "AMAAS_ALLOC_COUNT": os.path.join(tmp, "alloc-%p")}
    with Cluster(BUILD, EXAMPLES, workers=1, env=env) as c:
        procs = {"broker": c.broker.pid, "worker": c.workers[0].pid}
        run_jobs(c, 2000)  # warm-up: pools, buffers and zones reach their size
        before = {name: counts(os.path.join(tmp, "alloc-%d" % pid)) for name, pid in procs.items()}
        print(run_jobs(c, JOBS))
        after = {name: counts(os.path.join(tmp, "alloc-%d" % pid)) for name, pid in procs.items()}
        for name in procs:
            per_job = {obj: (after[name][obj] - before[name].get(obj, 0)) / JOBS
                       for obj in after[name]}
            print("allocations per job, %s: %s" % (name, ", ".join(
                "%s %.3f" % (obj, n) for obj, n in sorted(per_job.items()) if n)))
            ours = {obj: n for obj, n in per_job.items() if obj not in LIBZMQ}
            assert all(n < 0.01 for n in ours.values()), (name, ours)
            # the counter did count: the process's own start allocated
            assert sum(after[name].values()) > 0, after[name]



def _family_models(folder):
    """Exports a RandomForest, an SVC with probabilities and a ColumnTransformer +
    HistGradientBoosting pipeline (iris) into folder; returns {name: width}."""
    import joblib
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures
    from sklearn.svm import SVC
    from harness import load_exporter
    x, y = load_iris(return_X_y=True)
    models = {
        "forest": RandomForestClassifier(n_estimators=20, random_state=0),
        "svc": SVC(probability=True, random_state=0),
        "prep_hgb": make_pipeline(
            ColumnTransformer([("poly", PolynomialFeatures(2), [0, 1]),
                               ("minmax", MinMaxScaler(), [2, 3])]),
            HistGradientBoostingClassifier(max_iter=20, random_state=0)),
    }
    exporter = load_exporter()
    for name, model in models.items():
        model.fit(x, y)
        src = os.path.join(folder, name + ".joblib")
        joblib.dump(model, src)
        assert exporter.main([src, os.path.join(folder, name + ".amm")]) == 0
        os.unlink(src)
    return {name: x.shape[1] for name in models}, np.asarray(x)


def test_no_allocation_per_job_new_kinds():
    """The model families (trees, svm, prep) allocate nothing per job either:
    pipelined jobs of 1 and 7 rows, batched together by the worker."""
    if os.environ.get("AMAAS_SANITIZED"):
        pytest.skip("ASan replaces malloc itself: the counter cannot be preloaded")
    import pyamaas
    from harness import wait_for
    tmp = tempfile.mkdtemp(prefix="amaas-alloc-")
    models_dir = os.path.join(tmp, "models")
    os.mkdir(models_dir)
    widths, x = _family_models(models_dir)
    env = {"LD_PRELOAD": PRELOAD, "AMAAS_ALLOC_COUNT": os.path.join(tmp, "alloc-%p")}
    with Cluster(BUILD, models_dir, workers=1, env=env) as c:
        pid = c.workers[0].pid
        with pyamaas.Client(c.frontend, timeout_ms=20000) as client:
            wait_for("the worker to serve %s" % sorted(widths),
                     lambda: set(widths) <= {m["name"] for m in client.models()}, timeout=15)

            def jobs(n):
                ids = []
                for i in range(n):
                    name = sorted(widths)[i % len(widths)]
                    rows = 1 if i % 2 else 7
                    start = (i * 7) % (len(x) - rows)
                    ids.append(client.send(name, {"input": x[start:start + rows]}))
                    if len(ids) == 64:          # 64 in flight
                        client.recv(ids.pop(0))
                for jid in ids:
                    client.recv(jid)

            jobs(1500)                          # warm-up: buffers reach their size
            before = counts(os.path.join(tmp, "alloc-%d" % pid))
            n = 6000
            jobs(n)
            after = counts(os.path.join(tmp, "alloc-%d" % pid))
    per_job = {obj: (after[obj] - before.get(obj, 0)) / n for obj in after}
    print("allocations per job, worker, forest + svc + prep_hgb: %s" % ", ".join(
        "%s %.3f" % (obj, k) for obj, k in sorted(per_job.items()) if k))
    ours = {obj: k for obj, k in per_job.items() if obj not in LIBZMQ}
    assert all(k < 0.01 for k in ours.values()), ours
    assert sum(after.values()) > 0, after
