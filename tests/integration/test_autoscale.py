"""Integration: elastic workers (scripts/amaas-autoscaler, `amaas-cluster
autoscale`) and the broker's gauges for autoscalers.

(a) The policy alone, on made-up samples and times: the HPA formula and its
tolerance, the bounds, the upscale and downscale delays, the downscale
stabilization window, and the merge of several brokers' answers.  (b) A
broker that does not answer is skipped and logged; SIGTERM stops the
autoscaler with exit 0.  (c) The issue's load step: workers whose jobs take
200 ms each, one at a time (tests/fake_worker.py run as amaas-worker from a
--bin folder: capacity 5 jobs/s per worker whatever the CPU does, so the
test means the same on 2 cores), `amaas bench --rate 5` (1 x one worker's
capacity), then 35 more jobs/s (8 x): the pool grows to 8 workers or more,
the broker's p99 queue wait gauge rises above 0.5 s and falls back under it
while the 8 x load goes on, and once the load stops the pool drains back to
--min; the benches saw no failed job and every drained worker exited 0.
Waits are polls with generous bounds.  About a minute.
Run: ctest -R integration_autoscale, or
pytest --build-dir BUILD tests/integration/test_autoscale.py"""
import importlib.machinery
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from harness import Cluster, build_dir, control_json, wait_for  # noqa: E402

BUILD = build_dir()
ROOT = os.path.dirname(os.path.dirname(HERE))
TESTS = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "examples", "models")
CLUSTER = os.path.join(ROOT, "scripts", "amaas-cluster")
AUTOSCALER = os.path.join(ROOT, "scripts", "amaas-autoscaler")
DELAY_MS = 200      # a job's time at a fake worker: 5 jobs/s per worker
TARGET_WAIT_S = 0.5  # the p99 queue wait the test expects the pool to restore


def load_autoscaler():
    loader = importlib.machinery.SourceFileLoader("amaas_autoscaler", AUTOSCALER)
    spec = importlib.util.spec_from_loader("amaas_autoscaler", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


auto = load_autoscaler()


def sample(held=0, queued=0, serving=1, wait=0.0):
    s = auto.Sample()
    s.held, s.queued, s.serving, s.queue_wait_s = held, queued, serving, wait
    s.answered = s.brokers = 1
    return s


# ---- (a) the policy ---------------------------------------------------------------


def test_hpa_formula_tolerance_and_bounds():
    p = auto.Policy(1, 10, target=2.0, tolerance=0.1, upscale_delay_s=0, downscale_delay_s=0,
                    downscale_stabilization_s=0)
    # 4 workers, 8 jobs: the target exactly
    assert p.recommend(4, sample(held=8, serving=4))[0] == 4
    # within 10 %: no change; past it: ceil(current x metric / target)
    assert p.recommend(4, sample(held=8, queued=0.6, serving=4))[0] == 4
    assert p.recommend(4, sample(held=8, queued=1, serving=4))[0] == 5   # 4 x 2.25/2 = 4.5
    assert p.recommend(4, sample(held=8, queued=16, serving=4))[0] == 10  # 12, held at --max
    assert p.recommend(4, sample(held=1, serving=4))[0] == 1              # 0.25, at --min
    assert p.recommend(4, sample(held=4, serving=4))[0] == 2
    # jobs queued for no worker: as many as allowed; no worker, no job: --min
    assert p.recommend(0, sample(queued=3, serving=0))[0] == 1
    # the queue wait proposes too, when asked: the higher proposal wins
    q = auto.Policy(1, 10, target=2.0, target_wait_s=0.5)
    assert q.recommend(4, sample(held=8, serving=4, wait=1.0))[0] == 8
    assert q.recommend(4, sample(held=8, serving=4, wait=0.1))[0] == 4
    assert q.recommend(4, sample(held=16, serving=4, wait=0.6))[0] == 8


def test_upscale_delay():
    p = auto.Policy(1, 20, target=1.0, upscale_delay_s=3, downscale_delay_s=100,
                    downscale_stabilization_s=100)
    assert p.decide(0.0, 2, sample(held=2, queued=6, serving=2))[:2] == (2, None)  # wants 8
    assert p.decide(1.0, 2, sample(held=2, queued=4, serving=2))[:2] == (2, None)  # 6
    # a sample at the target: the condition broke, the delay starts again
    assert p.decide(2.0, 2, sample(held=2, serving=2))[:2] == (2, None)
    assert p.decide(3.0, 2, sample(held=2, queued=8, serving=2))[:2] == (2, None)  # 10
    assert p.decide(4.5, 2, sample(held=2, queued=4, serving=2))[:2] == (2, None)  # 6
    # held for 3 s: up, to the lowest recommendation of those 3 s
    desired, direction, reason = p.decide(6.0, 2, sample(held=2, queued=10, serving=2))
    assert (desired, direction) == (6, "up"), reason
    # with no delay, at once
    q = auto.Policy(1, 20, target=1.0, upscale_delay_s=0)
    assert q.decide(0.0, 2, sample(held=2, queued=2, serving=2))[:2] == (4, "up")


def test_downscale_delay_and_stabilization():
    p = auto.Policy(1, 20, target=1.0, upscale_delay_s=0, downscale_delay_s=2,
                    downscale_stabilization_s=5)
    assert p.decide(0.0, 8, sample(held=8, serving=8))[:2] == (8, None)      # steady
    assert p.decide(1.0, 8, sample(held=6, serving=8))[:2] == (8, None)      # 6: pending
    assert p.decide(2.0, 8, sample(held=2, serving=8))[:2] == (8, None)      # 2
    # 2 s below: down, but to the highest of the last 5 s (8, then 6...):
    # 8 was recommended at 0.0, so not yet
    desired, direction, reason = p.decide(3.0, 8, sample(held=2, serving=8))
    assert (desired, direction) == (8, None) and "stabilization" in reason, reason
    # at 5.5 the 8 of 0.0 left the window: down to 6, the highest left
    assert p.decide(5.5, 8, sample(held=1, serving=8))[:2] == (6, "down")
    # the next scale-down waits its own delay
    assert p.decide(6.0, 6, sample(serving=6))[:2] == (6, None)
    assert p.decide(7.0, 6, sample(serving=6))[:2] == (6, None)
    # 2 s below 6: down to the highest of 3.0 .. 8.0, the 2 of 3.0
    assert p.decide(8.0, 6, sample(serving=6))[:2] == (2, "down")
    assert p.decide(9.0, 2, sample(serving=2))[:2] == (2, None)
    assert p.decide(11.0, 2, sample(serving=2))[:2] == (1, "down")
    # a count outside the bounds is corrected at once
    assert p.decide(13.0, 30, sample(serving=30))[:2] == (20, "down")


def test_merge_of_several_brokers():
    w = lambda host, pid, held, credit, draining=False: {  # noqa: E731
        "host": host, "pid": pid, "in_flight": held, "credit": credit, "draining": draining}
    a = ({"queued": {"m": 3, "n": 1}, "queue_wait_s": {"m": 0.2, "n": 0.1},
          "queue_wait_p99_s": {"m": 0.4, "n": 0.0}},
         {"workers": [w("h1", 1, 2, 2), w("h1", 2, 1, 2), w("h2", 1, 0, 2, True)]})
    b = ({"queued": {"m": 2}, "queue_wait_s": {"m": 0.7}, "queue_wait_p99_s": {"m": 0.3}},
         {"workers": [w("h1", 1, 1, 2), w("h1", 2, 0, 2), w("h2", 1, 1, 2)]})
    s = auto.merge([a, None, b])
    assert (s.brokers, s.answered) == (3, 2)
    assert s.queued == 6
    # each worker once: (h1, 1) and (h1, 2) serve, (h2, 1) drains (one
    # broker says so); their jobs add up over the brokers
    assert (s.serving, s.draining) == (2, 1)
    assert s.held == 5
    assert s.in_flight_per_worker == (5 + 6) / 2
    assert s.busy_ratio == 4 / 8
    assert (s.queue_wait_s, s.queue_wait_p99_s) == (0.7, 0.4)
    assert auto.merge([None]).answered == 0
    assert math.isinf(auto.merge([({"queued": {"m": 1}}, {"workers": []})]).in_flight_per_worker)


# ---- the processes ----------------------------------------------------------------------


def fake_bin():
    """A --bin folder: the real broker and CLI, and an amaas-worker that is
    tests/fake_worker.py serving 'sleepy', one job at a time, DELAY_MS each."""
    folder = tempfile.mkdtemp(prefix="amaas-autoscale-bin-")
    for name in ("amaas-broker", "amaas"):
        os.symlink(os.path.join(BUILD, name), os.path.join(folder, name))
    path = os.path.join(folder, "amaas-worker")
    with open(path, "w") as f:
        f.write("#!/usr/bin/python3\nimport sys\nsys.path.insert(0, %r)\nimport fake_worker\n"
                "sys.exit(fake_worker.main(sys.argv[1:] + ['--credit', '1', '--delay-ms', '%d']))\n"
                % (TESTS, DELAY_MS))
    os.chmod(path, 0o755)
    return folder


def start_autoscaler(cluster, *args):
    log = open(os.path.join(cluster.tmp, "autoscaler.log"), "w")
    proc = subprocess.Popen([CLUSTER, "autoscale", "--dir", cluster.tmp] + list(args),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            env=dict(os.environ, AMAAS_CONFIG=""))
    log.close()
    proc.log_path = os.path.join(cluster.tmp, "autoscaler.log")
    return proc


def read_log(proc):
    with open(proc.log_path) as f:
        return f.read()


def scrape(url):
    """{series: value} of a Prometheus text page."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def serving(cluster):
    return [w for w in control_json(cluster, "workers")["workers"] if not w["draining"]]


def stop_autoscaler(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=60) == 0, read_log(proc)
    finally:
        if proc.poll() is None:
            proc.kill()


# ---- (b) errors and a broker that does not answer ------------------------------------


def test_usage_errors_and_a_silent_broker():
    r = subprocess.run([AUTOSCALER, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--target-in-flight" in r.stdout
    for bad in (["--max", "2"],                                              # no --control
                ["--control", "tcp://127.0.0.1:1", "--max", "2", "--min", "3", "--dry-run"],
                ["--control", "tcp://127.0.0.1:1", "--max", "2", "--tolerance", "1.5",
                 "--dry-run"],
                ["--control", "tcp://127.0.0.1:1", "--max", "2"],          # no --dir
                ["--control", "tcp://127.0.0.1:1", "--max", "2", "--dir", "/nonexistent"]):
        r = subprocess.run([AUTOSCALER] + bad, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (bad, r.stderr)
        assert "amaas-autoscaler: error:" in r.stderr, r.stderr
    with Cluster(fake_bin(), EXAMPLES, workers=1) as c:
        # a second broker that does not exist: skipped, logged once; the
        # live one's figures still make decisions
        dead = "tcp://127.0.0.1:%d" % free_port()
        proc = start_autoscaler(c, "--max", "3", "--dry-run", "--interval", "0.2",
                                "--control", dead, "--metrics", "127.0.0.1:0")
        try:
            url = wait_for("the autoscaler's metrics", lambda: re.search(
                r"url=(\S+)", read_log(proc)), timeout=30).group(1)
            wait_for("the autoscaler to skip the silent broker and decide",
                     lambda: "decision hold" in read_log(proc)
                     and "broker does not answer" in read_log(proc), timeout=30)
            own = wait_for("three more samples", lambda: (
                lambda m: m if m["amaas_autoscaler_samples_total"] >= 4 else None)(scrape(url)),
                timeout=60)
            assert own["amaas_autoscaler_brokers"] == 2, own
            assert own["amaas_autoscaler_brokers_answering"] == 1, own
        finally:
            stop_autoscaler(proc)
        text = read_log(proc)
        # logged once, when it was first found silent
        assert text.count("broker does not answer") == 1, text
        assert "current=1 " in text and "autoscaler stopped" in text, text


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- (c) the load step ----------------------------------------------------------------


def bench(cluster, rate, duration):
    return subprocess.Popen([os.path.join(BUILD, "amaas"), "--broker", cluster.frontend,
                             "--timeout", "120000", "bench", "--model", "sleepy", "--rate",
                             str(rate), "--duration", str(duration), "--warmup", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def bench_result(proc):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (level,) = json.loads(out)
    return level


def test_load_step_grows_and_shrinks_the_pool():
    with Cluster(fake_bin(), EXAMPLES, workers=1,
                 broker_args=["--metrics", "127.0.0.1:0"]) as c:
        with open(os.path.join(c.tmp, "endpoints")) as f:
            metrics_url = "http://%s/metrics" % re.search(r"^metrics=(.*)$", f.read(),
                                                          re.M).group(1)
        autoscaler = start_autoscaler(
            c, "--min", "1", "--max", "12", "--target-in-flight", "0.75", "--interval", "0.5",
            "--upscale-delay-s", "1", "--downscale-delay-s", "3",
            "--downscale-stabilization-s", "5", "--metrics", "127.0.0.1:0")
        try:
            url = wait_for("the autoscaler's metrics", lambda: re.search(
                r"url=(\S+)", read_log(autoscaler)), timeout=30).group(1)
            # 1 x one worker's capacity: 5 jobs/s
            base = bench(c, 5, 45)
            wait_for("jobs answered at 1 x", lambda: control_json(c, "status")["jobs"].get(
                "OK", 0) >= 10, timeout=30)
            # 8 x: 35 jobs/s more
            step = bench(c, 35, 35)
            most = 0
            rose = False
            fell = None
            deadline = time.monotonic() + 60
            while step.poll() is None and time.monotonic() < deadline:
                most = max(most, len(serving(c)))
                p99 = scrape(metrics_url).get('amaas_queue_wait_p99_seconds{model="sleepy"}', 0)
                rose = rose or p99 > TARGET_WAIT_S
                if rose and most >= 8 and p99 < TARGET_WAIT_S:
                    fell = p99
                    break
                time.sleep(0.25)
            assert rose, "the p99 queue wait never rose above %g s" % TARGET_WAIT_S
            assert most >= 8, "the pool grew to %d workers only" % most
            assert fell is not None and step.poll() is None, \
                "the p99 queue wait did not fall under %g s while the load went on" \
                % TARGET_WAIT_S
            print("pool grew to %d workers; p99 queue wait back at %.3f s" % (most, fell))
            step_level, base_level = bench_result(step), bench_result(base)
            for level in (base_level, step_level):
                assert level["errors"] == {} and level["ok"] == level["jobs"] > 0, level
            # after the load, back to --min: every drained worker exited 0
            wait_for("the pool back at --min", lambda: len(serving(c)) == 1
                     and len(control_json(c, "workers")["workers"]) == 1, timeout=60)
            # its own figures, once it sampled the pool at --min
            own = wait_for("the autoscaler to see 1 worker", lambda: (
                lambda m: m if m["amaas_autoscaler_current_workers"] == 1 else None)(scrape(url)),
                timeout=30)
            assert own['amaas_autoscaler_decisions_total{direction="up"}'] >= 1, own
            assert own['amaas_autoscaler_decisions_total{direction="down"}'] >= 1, own
            assert own["amaas_autoscaler_scale_failures_total"] == 0, own
        finally:
            stop_autoscaler(autoscaler)
        text = read_log(autoscaler)
        assert "decision scale up" in text and "decision scale down" in text, text
        statuses = {}
        for name in os.listdir(c.tmp):
            if re.match(r"worker-\d+\.status$", name):
                with open(os.path.join(c.tmp, name)) as f:
                    statuses[name] = f.read().strip()
        assert len(statuses) >= 7 and set(statuses.values()) == {"0"}, statuses
        print("autoscaler log:\n" + text)
