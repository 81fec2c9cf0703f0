"""Chaos: a broker and 3 workers; a C client (tests/chaos_client.c, libamaas)
pipelines 20,000 jobs whose answers it checks, while this script kills -9 a
random worker every half second and starts a new one, and restarts the broker
once.  Every job must end with exactly one outcome, every result must be
right, none lost, none delivered twice, and every job must succeed: libamaas
sends a job again after a loss, up to 10 times, and the restarted broker
answers UNAVAILABLE (which libamaas retries), not NOT_FOUND, for the jobs it
gets before a worker has registered with it.  Bounded to about a minute.
AMAAS_CHAOS_JOBS=N sends N jobs instead of 20,000.
Run: ctest -R integration_chaos, or pytest --build-dir BUILD tests/integration/test_chaos.py"""
import os
import random
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Cluster, build_dir, control_json, wait_for  # noqa: E402

BUILD = build_dir()
JOBS = int(os.environ.get("AMAAS_CHAOS_JOBS", "20000"))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
RATE = 1000  # jobs per second: 20,000 jobs take about 20 s of chaos


def unread_bytes(endpoint):
    """Bytes that reached the process listening on endpoint (tcp://127.0.0.1:PORT)
    over its open connections and that it has not read (from /proc/net/tcp)."""
    port = int(endpoint.rsplit(":", 1)[1])
    total = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            # local address, remote address, state (01: established), tx:rx queues
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                total += int(fields[4].split(":")[1], 16)
    return total


def test_chaos():
    rng = random.Random(2026)
    with Cluster(BUILD, EXAMPLES, workers=3, heartbeat_ms=100) as c:
        client = subprocess.Popen(
            [os.path.join(BUILD, "tests", "chaos_client"), c.frontend, str(JOBS), "200",
             str(RATE), "10"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        kills = restarts = 0
        started = time.monotonic()
        while client.poll() is None and time.monotonic() - started < 90:
            time.sleep(0.5)
            if client.poll() is not None:
                break
            live = [i for i, w in enumerate(c.workers) if w.poll() is None]
            if live:
                c.kill_worker(rng.choice(live))
                kills += 1
            c.start_worker()
            if restarts == 0 and time.monotonic() - started > JOBS / RATE / 2:
                # Freeze the broker until the client has sent it something
                # it cannot read (a job, or the PING the client sends only
                # while jobs are pending), then kill it: every job it had
                # taken in is lost with it, and the client must send those
                # again to the new broker
                c.expected_exits.add(c.broker)
                c.broker.send_signal(signal.SIGSTOP)
                wait_for("the client to send to the frozen broker", lambda:
                         client.poll() is not None or unread_bytes(c.frontend) > 0)
                c.broker.send_signal(signal.SIGKILL)
                c.broker.wait()
                c.start_broker()
                restarts += 1
                # no kill until every live worker has registered again
                live = sum(w.poll() is None for w in c.workers)
                wait_for("%d workers to register with the new broker" % live, lambda: any(
                    m["name"] == "linear" and m["workers"] == live for m in c.models()))
        try:
            out, _ = client.communicate(timeout=120)
        finally:
            if client.poll() is None:
                client.kill()
        print(out.strip())
        print("chaos: workers killed=%d broker restarts=%d" % (kills, restarts))
        assert client.returncode == 0, "lost, duplicated, failed or wrong answers: " + out
        assert kills >= 10 and restarts == 1, (kills, restarts)
        resent = int(out.split("retried=")[1].split()[0])
        failed = int(out.split("failed=")[1].split()[0])
        assert failed == 0, out
        assert control_json(c, "status")["jobs"].get("NOT_FOUND", 0) == 0
        assert resent > 0, "the broker restart should have made the client resend jobs"

