"""bench/dispatch_pool (scripts/bench row q) against a real broker: N fake
workers on DEALER sockets in one process and a libamaas client thread.  No
figure is asserted: only that the tool measures what it says it does (every
job answered, by every worker of the pool, the broker's CPU read), and that
its workers leave the broker as they came."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE)))
import harness  # noqa: E402


def pool(*args):
    return subprocess.run([os.path.join(harness.build_dir(), "bench", "dispatch_pool")]
                          + [str(a) for a in args], capture_output=True, text=True, timeout=120)


def test_every_job_answered_by_every_worker(tmp_path):
    with harness.Cluster(harness.build_dir(), str(tmp_path), workers=0) as c:
        r = pool("--frontend", c.frontend, "--backend", c.backend, "--broker-pid", c.broker.pid,
                 "--workers", 50, "--credit", 2, "--window", 20, "--jobs", 500,
                 "--warmup", 0.2, "--duration", 60)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["workers"] == 50 and out["credit"] == 2 and out["window"] == 20
        # --jobs bounds the measured part, well before --duration
        assert out["jobs"] == 500 and 0 < out["duration_s"] < 60
        assert abs(out["jobs_per_s"] - out["jobs"] / out["duration_s"]) <= 0.01 * out["jobs_per_s"]
        # every job sent was answered, once, without error, through the broker
        assert out["errors"] == 0 and out["sent"] == out["ok"] == out["answered"] >= 500
        # the least loaded worker, given a job longest ago: an idle pool is
        # used in turn, so that every worker of the 50 gets jobs
        assert out["workers_used"] == 50
        assert out["register_s"] >= 0
        assert out["broker_cpu_s"] >= 0
        assert abs(out["broker_cpu_us_per_job"] - out["broker_cpu_s"] * 1e6 / out["jobs"]) \
            <= 0.01 * out["broker_cpu_us_per_job"] + 0.01
        # the pool's workers said DISCONNECT: the broker forgets them
        harness.wait_for("the broker to forget the pool's workers",
                         lambda: harness.control_json(c, "status")["workers"] == 0, 10)


def test_scheduler_alone():
    r = pool("--scheduler", "--workers", 50, "--credit", 4, "--window", 100, "--jobs", 5000)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["workers"] == 50 and out["jobs"] == 5000 and out["ns_per_job"] > 0


def test_refusals():
    r = pool("--workers", 2)
    assert r.returncode == 2 and "usage" in r.stderr
    # a broker pid whose CPU cannot be read
    r = pool("--frontend", "tcp://127.0.0.1:1", "--backend", "tcp://127.0.0.1:2",
             "--broker-pid", 999999999)
    assert r.returncode == 2 and "/proc/999999999/stat" in r.stderr
