"""Chaos with two brokers, all active: 2 brokers, 3 workers (each connected
to both), and 2 C clients (tests/chaos_client.c, libamaas, given both
frontends) pipelining 20,000 jobs in all, whose answers they check.
Meanwhile this script kills -9 the first broker and starts it again, then
the second, then freezes the first (SIGSTOP) for 5 s.  A client whose broker
is gone sends its jobs to the other; the workers go on serving the broker
that lives.  Every job must succeed, once, with the right answer: lost 0,
answered twice 0, wrong 0.  Bounded to about two minutes.
AMAAS_CHAOS_JOBS=N sends N jobs per client instead of 10,000.
Run: ctest -R integration_chaos_brokers, or pytest --build-dir BUILD
tests/integration/test_chaos_brokers.py"""
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Cluster, build_dir, wait_for  # noqa: E402

BUILD = build_dir()
JOBS = int(os.environ.get("AMAAS_CHAOS_JOBS", "10000"))  # per client
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
RATE = 400  # jobs per second per client: the run lasts about 25 s


def workers_of(c, k):
    """The workers broker k (0-based) has registered ([] if it does not
    answer), as `amaas workers --json` lists them."""
    r = subprocess.run([c.bin("amaas"), "--control", c.controls[k], "--timeout", "2000",
                        "workers", "--json"], capture_output=True, text=True, timeout=10)
    return json.loads(r.stdout)["workers"] if r.returncode == 0 else []


def serving_workers(c, k):
    return sum(not w["draining"] for w in workers_of(c, k))


def test_two_brokers_killed_restarted_and_frozen():
    with Cluster(BUILD, EXAMPLES, workers=3, brokers=2, heartbeat_ms=200) as c:
        for k in range(2):
            wait_for("3 workers at broker %d" % (k + 1), lambda: serving_workers(c, k) == 3)
        clients = [subprocess.Popen(
            [os.path.join(BUILD, "tests", "chaos_client"), c.frontend, str(JOBS), "100",
             str(RATE), "10"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
        running = lambda: all(p.poll() is None for p in clients)  # noqa: E731
        events = []
        try:
            for k in (0, 1):
                # killed while its workers hold jobs of it
                wait_for("broker %d to hold jobs" % (k + 1), lambda: not running() or sum(
                    w["in_flight"] for w in workers_of(c, k)) > 0)
                if not running():
                    break
                done = sum(w["done"] for w in workers_of(c, 1 - k))
                b = c.brokers[k]
                c.expected_exits.add(b)
                b.send_signal(signal.SIGKILL)
                b.wait(timeout=10)
                events.append("killed broker %d" % (k + 1))
                # restarted once the other broker carries the load alone
                wait_for("broker %d to carry 500 more jobs" % (2 - k), lambda: not running() or sum(
                    w["done"] for w in workers_of(c, 1 - k)) > done + 500, timeout=60)
                c.start_broker()
                wait_for("3 workers back at broker %d" % (k + 1),
                         lambda: serving_workers(c, k) == 3, timeout=60)
                events.append("restarted broker %d" % (k + 1))
            if running():
                b = c.brokers[0]
                b.send_signal(signal.SIGSTOP)
                time.sleep(5)  # the freeze the test is about, not a wait for readiness
                b.send_signal(signal.SIGCONT)
                events.append("froze broker 1 for 5 s")
            outs = [p.communicate(timeout=180)[0] for p in clients]
        finally:
            for p in clients:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for out in outs:
            print(out)
        print("events:", events)
        assert len(events) == 5, "the clients finished before every event: %s" % events
        for p, out in zip(clients, outs):
            assert p.returncode == 0, out
            assert "sent=%d ok=%d failed=0" % (JOBS, JOBS) in out, out
            assert "lost=0 answered_twice=0 wrong=0" in out, out


def credits(c, k):
    """The credit broker k (0-based) gives each worker it has, by pid; {}
    if it does not answer."""
    r = subprocess.run([c.bin("amaas"), "--control", c.controls[k], "--timeout", "2000",
                        "workers", "--json"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return {}
    return {w["pid"]: w["credit"] for w in json.loads(r.stdout)["workers"]}


def test_a_workers_credit_is_shared_by_the_brokers():
    """A worker of credit 9 gives 5 and 4 to two brokers; with one gone,
    the other gets all but the reserve of 1 kept for it (8); back, 5 and 4
    again.  Each broker shows the credit it holds (`amaas workers`)."""
    with Cluster(BUILD, EXAMPLES, workers=1, brokers=2, heartbeat_ms=200,
                 worker_args=["--credit", "9"]) as c:
        pid = c.workers[0].pid
        shared = lambda: sorted([credits(c, 0).get(pid), credits(c, 1).get(pid)],  # noqa: E731
                                key=lambda x: x or 0) == [4, 5]
        wait_for("the credit shared 5 + 4", shared)
        # the CLI's control commands take the list of brokers: one entry each
        both = ",".join(c.controls)
        r = subprocess.run([c.bin("amaas"), "--control", both, "workers", "--json"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        assert [b["control"] for b in listed] == c.controls, listed
        assert all([w["pid"] for w in b["workers"]] == [pid] for b in listed), listed
        r = subprocess.run([c.bin("amaas"), "--control", both, "status"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0 and r.stdout.count("==== broker ") == 2, r.stdout + r.stderr
        b = c.brokers[1]
        c.expected_exits.add(b)
        b.send_signal(signal.SIGKILL)
        b.wait(timeout=10)
        wait_for("broker 1 to hold 8 of the worker's 9", lambda: credits(c, 0).get(pid) == 8)
        c.start_broker()
        wait_for("the credit shared again", shared, timeout=60)
