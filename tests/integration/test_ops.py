"""Integration: scripts/amaas-cluster, the operator's tool for a local cluster.
(a) start, status, scale up and down, stop, and its errors; the settings file,
add-worker, start-broker, and stop of a worker just spawned; (b) a rolling
restart of every worker while `amaas bench` loads the cluster: no job fails,
and every original worker is gone, replaced by a new one.  Bounded to about
a minute.  Run: ctest -R integration_ops, or pytest --build-dir BUILD tests/integration/test_ops.py"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from harness import build_dir, wait_for  # noqa: E402

BUILD = build_dir()
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(ROOT, "examples", "models")
SCRIPT = os.path.join(ROOT, "scripts", "amaas-cluster")
RANDOM_PORTS = ["--frontend", "tcp://127.0.0.1:!", "--backend", "tcp://127.0.0.1:!",
                "--control", "tcp://127.0.0.1:!"]


class LocalCluster:
    """amaas-cluster on a fresh state folder; stopped (killed if need be) on exit."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="amaas-ops-")
        self.endpoints = {}

    def run(self, *args, timeout=60, bin_dir=BUILD):
        r = subprocess.run([SCRIPT] + list(args) + ["--dir", self.dir, "--bin", bin_dir],
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        print("$ amaas-cluster %s -> %d" % (" ".join(args), r.returncode))
        for line in (r.stdout + r.stderr).splitlines():
            print("    " + line)
        return r

    def start(self, workers):
        r = self.run("start", "--workers", str(workers), "--models", EXAMPLES, *RANDOM_PORTS)
        assert r.returncode == 0, r.stderr
        self.endpoints = dict(line.split("=", 1) for line in r.stdout.split())
        assert set(self.endpoints) == {"frontend", "backend", "control"}, r.stdout
        return r

    def amaas(self, *args):
        return subprocess.run([os.path.join(BUILD, "amaas"), "--control", self.endpoints["control"],
                               "--broker", self.endpoints["frontend"]] + list(args),
                              capture_output=True, text=True, timeout=30)

    def workers(self):
        r = self.amaas("workers", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["workers"]

    def pid_files(self):
        return sorted(f for f in os.listdir(self.dir) if f.endswith(".pid"))

    def status_of(self, name):
        with open(os.path.join(self.dir, name + ".status")) as f:
            return int(f.read())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # Whatever happened: stop through the script, then make sure
        pids = []
        for f in self.pid_files():
            with open(os.path.join(self.dir, f)) as fh:
                pids.append(int(fh.read()))
        if pids:
            self.run("stop")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                print("had to kill pid %d" % pid)
            except ProcessLookupError:
                pass
        if exc[0] is not None:
            for f in sorted(os.listdir(self.dir)):
                if f.endswith(".log"):
                    with open(os.path.join(self.dir, f), errors="replace") as fh:
                        sys.stderr.write("==> %s <==\n%s\n" % (f, fh.read()[-3000:]))
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


def served(c):
    """Jobs the cluster's broker answered OK (amaas status)."""
    r = c.amaas("status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["jobs"].get("OK", 0)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive either (the wrapper has reaped it by then anyway)
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_start_status_scale_stop():
    with LocalCluster() as c:
        r = c.run("status")
        assert r.returncode == 3 and "no cluster" in r.stdout, r.stdout
        c.start(2)
        workers = c.workers()
        assert len(workers) == 2 and not any(w["draining"] for w in workers), workers
        first = {w["pid"] for w in workers}

        r = c.run("start", "--workers", "1", *RANDOM_PORTS)
        assert r.returncode == 1 and "already running" in r.stderr, r.stderr
        r = c.run("scale")
        assert r.returncode == 2 and "needs the number" in r.stderr, r.stderr

        r = c.run("status")
        assert r.returncode == 0, r.stderr
        assert "broker: running" in r.stdout and r.stdout.count(" serving ") == 2, r.stdout

        r = c.run("scale", "4")
        assert r.returncode == 0 and "scaled up from 2 to 4" in r.stderr, r.stderr
        assert len(c.workers()) == 4
        r = c.amaas("predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 0, r.stderr

        r = c.run("scale", "1")
        assert r.returncode == 0 and "scaled down from 4 to 1" in r.stderr, r.stderr
        left = c.workers()
        assert len(left) == 1 and left[0]["pid"] in first, left  # the newest ones went
        for k in (2, 3, 4):
            assert c.status_of("worker-%d" % k) == 0  # drained, exited 0
        r = c.run("scale", "1")
        assert r.returncode == 0 and "already 1" in r.stderr, r.stderr

        pids = []
        for f in c.pid_files():
            with open(os.path.join(c.dir, f)) as fh:
                pids.append(int(fh.read()))
        assert len(pids) == 2, c.pid_files()  # the broker and one worker
        r = c.run("stop")
        assert r.returncode == 0 and "stopped" in r.stderr, r.stderr
        assert r.stdout.count(": exit 0") == 2, r.stdout
        assert not any(alive(p) for p in pids), pids
        assert c.status_of("broker") == 0
        r = c.run("status")
        assert r.returncode == 3 and "not running" in r.stdout, r.stdout


def test_settings_add_worker_and_broker_restart():
    """The settings file (what the systemd units read too), start --workers 0,
    add-worker (its number and pid; --models, --worker-arg, --no-wait),
    start-broker on the same endpoints after a kill, and stop's report."""
    models = tempfile.mkdtemp(prefix="amaas-ops-models-")
    empty = tempfile.mkdtemp(prefix="amaas-ops-empty-")
    shutil.copy(os.path.join(EXAMPLES, "linear.amm"), models)
    try:
        with LocalCluster() as c:
            config = os.path.join(c.dir, "amaas.env")
            with open(config, "w") as f:
                f.write("# this machine\nAMAAS_MODELS=%s\nAMAAS_FRONTEND=tcp://127.0.0.1:!\n"
                        "AMAAS_BACKEND='tcp://127.0.0.1:!'\n  AMAAS_CONTROL=\"tcp://127.0.0.1:!\"\n"
                        "AMAAS_WORKER_ARGS=--credit 3\n" % models)
            r = c.run("start", "--workers", "0", "--config", config)
            assert r.returncode == 0, r.stderr
            c.endpoints = dict(line.split("=", 1) for line in r.stdout.split())
            assert not c.endpoints["frontend"].endswith(":5555"), c.endpoints  # the file's '!'
            assert c.workers() == []

            r = c.run("add-worker")
            assert r.returncode == 0, r.stderr
            number, pid = r.stdout.split()
            listed = c.workers()
            assert number == "1" and [w["pid"] for w in listed] == [int(pid)], (r.stdout, listed)
            assert listed[0]["credit"] == 3, listed  # AMAAS_WORKER_ARGS
            r = c.amaas("models", "--json")
            assert [m["name"] for m in json.loads(r.stdout)] == ["linear"], r.stdout  # AMAAS_MODELS

            r = c.run("add-worker", "--models", EXAMPLES, "--worker-arg", "--credit",
                      "--worker-arg", "5")
            assert r.returncode == 0 and r.stdout.split()[0] == "2", (r.stdout, r.stderr)
            assert sorted(w["credit"] for w in c.workers()) == [3, 5]  # its flags come last
            r = c.amaas("models", "--json")
            assert sorted(m["name"] for m in json.loads(r.stdout)) == ["iris", "linear"], r.stdout

            # A worker with nothing to serve: --no-wait returns, the worker exits 1
            r = c.run("add-worker", "--no-wait", "--models", empty)
            assert r.returncode == 0 and r.stdout.split()[0] == "3", (r.stdout, r.stderr)
            wait_for("worker-3's exit status",
                     lambda: os.path.exists(os.path.join(c.dir, "worker-3.status")))
            assert c.status_of("worker-3") == 1
            r = c.run("add-worker", "--models", empty)
            assert r.returncode == 1 and "before it registered" in r.stderr, r.stderr

            # The broker killed, then started again on the same endpoints
            with open(os.path.join(c.dir, "broker.pid")) as f:
                os.kill(int(f.read()), signal.SIGKILL)
            wait_for("the broker's exit status",
                     lambda: os.path.exists(os.path.join(c.dir, "broker.status")))
            assert c.status_of("broker") == 128 + signal.SIGKILL
            assert c.run("status").returncode == 3
            r = c.run("start-broker")
            assert r.returncode == 0, r.stderr
            assert dict(line.split("=", 1) for line in r.stdout.split()) == c.endpoints, r.stdout
            assert c.run("start-broker").returncode == 1  # it runs already
            wait_for("both workers back", lambda: len(c.workers()) == 2)

            r = c.run("stop")
            assert r.returncode == 1 and "status 1" in r.stdout, r.stdout  # worker-3
            assert r.stdout.count(": exit 0") == 3, r.stdout  # workers 1 and 2, the broker

            with open(config, "a") as f:
                f.write("AMAAS_COLOUR=blue\n")
            r = c.run("start", "--config", config)
            assert r.returncode == 1 and "unknown setting AMAAS_COLOUR" in r.stderr, r.stderr
            r = c.run("add-worker", "--heartbeat-ms", "5")
            assert r.returncode == 2 and "of 'start' only" in r.stderr, r.stderr
    finally:
        shutil.rmtree(models)
        shutil.rmtree(empty)


def test_stop_waits_until_a_young_worker_handles_signals():
    """A worker stopped before it installed its signal handlers still exits
    0: stop SIGTERMs it only once it catches SIGTERM.  The workers here take
    a second to get there (a script that waits, then execs amaas-worker)."""
    slow_bin = tempfile.mkdtemp(prefix="amaas-ops-bin-")
    try:
        for name in ("amaas-broker", "amaas"):
            os.symlink(os.path.join(BUILD, name), os.path.join(slow_bin, name))
        with open(os.path.join(slow_bin, "amaas-worker"), "w") as f:
            f.write("#!/bin/bash\nsleep 1\nexec %s \"$@\"\n" % os.path.join(BUILD, "amaas-worker"))
        os.chmod(os.path.join(slow_bin, "amaas-worker"), 0o755)
        with LocalCluster() as c:
            r = c.run("start", "--workers", "0", "--models", EXAMPLES, *RANDOM_PORTS,
                      bin_dir=slow_bin)
            assert r.returncode == 0, r.stderr
            for _ in range(2):
                r = c.run("add-worker", "--no-wait", bin_dir=slow_bin)
                assert r.returncode == 0, r.stderr
            r = c.run("stop", bin_dir=slow_bin)
            assert r.returncode == 0 and r.stdout.count(": exit 0") == 3, r.stdout
    finally:
        shutil.rmtree(slow_bin)


def test_rolling_restart_under_load():
    with LocalCluster() as c:
        c.start(3)
        original = {w["pid"] for w in c.workers()}
        assert len(original) == 3
        bench = subprocess.Popen(
            [os.path.join(BUILD, "amaas"), "--broker", c.endpoints["frontend"], "bench",
             "--model", "linear", "--concurrency", "16", "--warmup", "0", "--duration", "20",
             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # no warmup: every job of the bench is measured, the restart's too
            wait_for("the bench's first jobs", lambda: served(c) > 0 or bench.poll() is not None)
            assert bench.poll() is None, bench.communicate()
            t0 = time.monotonic()
            r = c.run("rolling-restart")
            took = time.monotonic() - t0
            assert r.returncode == 0, r.stderr
            assert "rolling restart done: 3 worker(s) replaced" in r.stderr, r.stderr
            mid = c.workers()
            assert bench.poll() is None, "the restart should have ended while the bench ran"
            out, err = bench.communicate(timeout=60)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
        assert bench.returncode == 0, err
        result = json.loads(out)[0]
        print("bench during the rolling restart (%.1f s of 20 s): jobs=%d ok=%d errors=%s, "
              "%.0f jobs/s" % (took, result["jobs"], result["ok"], result["errors"],
                               result["jobs_per_s"]))
        errors = sum(result["errors"].values()) if isinstance(result["errors"], dict) \
            else result["errors"]
        assert errors == 0 and result["jobs"] > 0 and result["ok"] == result["jobs"], result
        now = c.workers()
        new = {w["pid"] for w in now}
        assert len(now) == 3 and len(mid) == 3 and not (new & original), (original, now)
        assert all(not alive(p) for p in original), original
        assert all(w["done"] > 0 for w in now), now  # the replacements served the load
        for k in (1, 2, 3):
            assert c.status_of("worker-%d" % k) == 0  # every original exited 0
        r = c.run("stop")
        assert r.returncode == 0, r.stderr

