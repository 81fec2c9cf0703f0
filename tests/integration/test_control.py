"""Integration: the operator commands on the broker's control endpoint:
amaas status, workers, models, drain WORKER, shutdown (tables and --json).
Run: ctest -R integration_control, or pytest --build-dir BUILD tests/integration/test_control.py"""
import json
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import pyamaas  # noqa: E402
from harness import Cluster, build_dir, outcome, wait_for  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")


def amaas(c, *args):
    return subprocess.run([os.path.join(BUILD, "amaas"), "--control", c.control,
                           "--broker", c.frontend] + list(args),
                          capture_output=True, text=True, timeout=30)


def status(c):
    """`amaas status --json` as a dict."""
    r = amaas(c, "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_and_workers():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        with pyamaas.Client(c.frontend) as client:
            for _ in range(10):
                client.predict("linear", {"input": np.array([[1.0]])})
            try:
                client.predict("ghost", {"input": np.array([[1.0]])})
            except pyamaas.AmaasError:
                pass
        r = amaas(c, "status", "--json")
        assert r.returncode == 0, r.stderr
        status = json.loads(r.stdout)
        assert status["workers"] == 2 and status["jobs"]["OK"] == 10, status
        assert status["jobs"]["NOT_FOUND"] == 1 and status["queued"]["linear"] == 0, status
        assert status["uptime_s"] > 0
        r = amaas(c, "status")
        assert r.returncode == 0 and "OK=10" in r.stdout, r.stdout
        r = amaas(c, "workers", "--json")
        workers = json.loads(r.stdout)["workers"]
        assert len(workers) == 2, workers
        assert sum(w["done"] for w in workers) == 10, workers
        for w in workers:
            assert sorted(w["models"]) == ["iris@1", "linear@1"] and w["credit"] == 32
            assert w["pid"] in [p.pid for p in c.workers] and not w["draining"]
            assert 0 <= w["last_heartbeat_ms"] < 2000
        r = amaas(c, "workers")
        assert r.returncode == 0 and "serving" in r.stdout, r.stdout
        r = amaas(c, "drain", "nope")
        assert r.returncode == 1 and "NOT_FOUND" in r.stderr, r.stderr


def test_drain_a_worker_under_load():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        workers = json.loads(amaas(c, "workers", "--json").stdout)["workers"]
        victim = workers[0]
        with pyamaas.Client(c.frontend, timeout_ms=20000) as client:
            ids = [client.send("iris", {"input": np.ones((50, 4))}) for _ in range(400)]
            r = amaas(c, "drain", victim["id"])
            assert r.returncode == 0 and "draining" in r.stdout, (r.stdout, r.stderr)
            for j in ids:
                client.recv(j)  # every job succeeds
        proc = [p for p in c.workers if p.pid == victim["pid"]][0]
        assert proc.wait(timeout=10) == 0  # it finished and left on its own
        c.expected_exits.add(proc)
        left = json.loads(amaas(c, "workers", "--json").stdout)["workers"]
        assert [w["pid"] for w in left] == [workers[1]["pid"]], left


def test_shutdown():
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        r = amaas(c, "shutdown")
        assert r.returncode == 0 and "shutting down" in r.stdout, r.stdout
        assert c.broker.wait(timeout=10) == 0
        c.expected_exits.add(c.broker)


def test_config_files_and_flags():
    tmp = tempfile.mkdtemp(prefix="amaas-config-")
    broker_conf = os.path.join(tmp, "broker.conf")
    worker_conf = os.path.join(tmp, "worker.conf")
    with open(broker_conf, "w") as f:
        f.write("# amaas broker settings\nbroker\n    max-queue = 2\n    max-lost = 5\n"
                "    log-level = \"warn\"\n")
    with open(worker_conf, "w") as f:
        f.write("worker\n    credit = 3\n    max-batch = 1\n")
    # the command line wins over the file: credit 3 from the file, then 1.
    # A long heartbeat: the worker is stopped below while the test looks
    with Cluster(BUILD, EXAMPLES, workers=1, heartbeat_ms=10000,
                 broker_args=["--config", broker_conf],
                 worker_args=["--config", worker_conf, "--credit", "1"]) as c:
        workers = json.loads(amaas(c, "workers", "--json").stdout)["workers"]
        assert workers[0]["credit"] == 1, workers
        worker = c.workers[0]
        with pyamaas.Client(c.frontend) as client:
            # credit 1 and a queue of 2: with the worker stopped, one job is
            # held by it, two wait in the queue, and the next are refused at
            # once, before the worker could have freed a place
            job = {"input": np.ones((1, 4))}
            worker.send_signal(signal.SIGSTOP)
            try:
                held = client.send("iris", job)
                wait_for("the worker to hold one job", lambda: status(c)["in_flight"] == 1)
                queued = [client.send("iris", job) for _ in range(2)]
                wait_for("two jobs in the queue", lambda: status(c)["queued"].get("iris") == 2)
                refused = [client.send("iris", job) for _ in range(3)]
                assert [outcome(client, j) for j in refused] == ["RESOURCE_EXHAUSTED"] * 3
                assert status(c)["queued"]["iris"] == 2 and status(c)["in_flight"] == 1
            finally:
                worker.send_signal(signal.SIGCONT)
            assert [outcome(client, j) for j in [held] + queued] == ["OK"] * 3
        # stopped while the broker is there to acknowledge its drain (with the
        # broker gone too, it would wait three long heartbeats for it)
        assert c.kill_worker(0, signal.SIGTERM) == 0
        assert "info" not in open(os.path.join(c.tmp, "broker.log")).read()  # log-level warn
    r = subprocess.run([os.path.join(BUILD, "amaas-worker"), "--config", "/nonexistent"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "config" in r.stderr, r.stderr


def test_control_defaults_to_loopback():
    r = subprocess.run([os.path.join(BUILD, "amaas-broker"), "--help"], capture_output=True,
                       text=True, timeout=10)
    assert "--control ENDPOINT" in r.stdout and "tcp://127.0.0.1:5557" in r.stdout, r.stdout

