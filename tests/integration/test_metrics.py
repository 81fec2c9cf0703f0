"""Integration: the broker's Prometheus metrics (amaas-broker --metrics).

A broker started with --metrics 127.0.0.1:0 serves GET /metrics on a free
port and writes it to the endpoints file as metrics=127.0.0.1:PORT.  The
tests send jobs, read /metrics, check it with `promtool check metrics`, then
start a real Prometheus server scraping the broker every second and read
amaas_jobs_total back through its query API.  Needs the Debian package
prometheus (promtool and the server).  Run: ctest -R integration_metrics, or pytest --build-dir BUILD tests/integration/test_metrics.py"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import pyamaas  # noqa: E402
from harness import Cluster, build_dir  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
BROKER_ARGS = ["--metrics", "127.0.0.1:0"]
N_OK, N_IRIS, N_NOT_FOUND = 12, 5, 2


def metrics_address(c, timeout=5.0):
    """127.0.0.1:PORT from the metrics= line of the broker's endpoints file."""
    path = os.path.join(c.tmp, "endpoints")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            eps = dict(line.split("=", 1) for line in open(path).read().split())
        except (OSError, ValueError):
            eps = {}
        if "metrics" in eps:
            return eps["metrics"]
        time.sleep(0.05)
    raise AssertionError("no metrics= line in %s\n%s" % (path, c.logs()))


def http_get(url, timeout=5.0):
    """(status, content type, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8", "replace")


def samples(text):
    """{(name, frozenset of (label, value)): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, "bad sample line: %r" % line
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


def send_jobs(c):
    """N_OK linear and N_IRIS iris jobs that succeed, N_NOT_FOUND for a model
    nobody serves."""
    with pyamaas.Client(c.frontend, timeout_ms=10000) as client:
        ids = [client.send("linear", {"input": np.array([[float(i)]])}) for i in range(N_OK)]
        ids += [client.send("iris", {"input": np.ones((3, 4))}) for _ in range(N_IRIS)]
        for j in ids:
            client.recv(j)
        for _ in range(N_NOT_FOUND):
            try:
                client.predict("ghost", {"input": np.array([[1.0]])})
                raise AssertionError("model 'ghost' answered")
            except pyamaas.AmaasError as e:
                assert e.code == pyamaas.NOT_FOUND, e


def wait_metrics(url, check, timeout=10.0):
    """The /metrics text once check(samples) is true (the broker publishes
    about once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, text = http_get(url)
        if status == 200 and check(samples(text)):
            return text
        if time.monotonic() > deadline:
            raise AssertionError("metrics never matched; last:\n%s" % text)
        time.sleep(0.2)


def test_metrics_endpoint():
    with Cluster(BUILD, EXAMPLES, workers=1, broker_args=BROKER_ARGS) as c:
        address = metrics_address(c)
        url = "http://%s/metrics" % address
        send_jobs(c)
        text = wait_metrics(url, lambda s: value(s, "amaas_jobs_total", model="linear",
                                                  code="OK") == N_OK)
        status, content_type, _ = http_get(url)
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), \
            (status, content_type)
        s = samples(text)
        assert value(s, "amaas_jobs_total", model="iris", code="OK") == N_IRIS, text
        assert value(s, "amaas_jobs_total", model="ghost", code="NOT_FOUND") == N_NOT_FOUND, text
        assert value(s, "amaas_workers") == 1, text
        assert value(s, "amaas_uptime_seconds") > 0, text
        for model in ("linear", "iris"):
            assert value(s, "amaas_queue_depth", model=model) == 0, text
            assert value(s, "amaas_jobs_in_flight", model=model) == 0, text
        # Histograms: every answered job of a served model is observed once;
        # buckets are cumulative and end with +Inf == _count
        for name in ("amaas_queue_seconds", "amaas_compute_seconds", "amaas_latency_seconds",
                     "amaas_batch_size"):
            for model, n in (("linear", N_OK), ("iris", N_IRIS)):
                assert value(s, name + "_count", model=model) == n, (name, model, text)
                buckets = sorted((float(dict(k[1])["le"]), v) for k, v in s.items()
                                 if k[0] == name + "_bucket" and dict(k[1])["model"] == model)
                assert buckets[-1] == (float("inf"), n), (name, buckets)
                counts = [v for _, v in buckets]
                assert counts == sorted(counts), (name, buckets)
            assert value(s, name + "_count", model="ghost") in (None, 0), (name, text)
        assert value(s, "amaas_batch_size_sum", model="iris") >= N_IRIS, text
        assert 0 < value(s, "amaas_latency_seconds_sum", model="linear") < N_OK * 5.0, text
        for family, kind in (("amaas_jobs_total", "counter"), ("amaas_workers", "gauge"),
                             ("amaas_latency_seconds", "histogram")):
            assert "# TYPE %s %s\n" % (family, kind) in text and "# HELP %s " % family in text
        # The format and the conventions, as Prometheus' own linter sees them
        lint = subprocess.run(["promtool", "check", "metrics"], input=text,
                              capture_output=True, text=True, timeout=30)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), \
            (lint.returncode, lint.stdout, lint.stderr)
        status, _, _ = http_get("http://%s/other" % address)
        assert status == 404, status


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(prometheus, expr):
    """The result vector of an instant query, [] if none."""
    url = "http://%s/api/v1/query?%s" % (prometheus, urllib.parse.urlencode({"query": expr}))
    status, _, body = http_get(url)
    if status != 200:
        return []
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def start_prometheus(tmp, target):
    """A Prometheus server scraping target every second; returns (process,
    its address, its log path)."""
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: amaas\n    static_configs:\n"
                "      - targets: ['%s']\n" % target)
    log_path = os.path.join(tmp, "prometheus.log")
    for _ in range(3):  # the free port may be taken before Prometheus binds it
        address = "127.0.0.1:%d" % free_port()
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            ["prometheus", "--config.file=" + config, "--web.listen-address=" + address,
             "--storage.tsdb.path=" + os.path.join(tmp, "data"), "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http_get("http://%s/-/ready" % address, timeout=1)[0] == 200:
                    return proc, address, log_path
            except OSError:
                pass
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    raise AssertionError("prometheus did not start:\n" + open(log_path).read()[-4000:])


def test_prometheus_scrapes_the_broker():
    tmp = tempfile.mkdtemp(prefix="amaas-prometheus-")
    proc = None
    try:
        with Cluster(BUILD, EXAMPLES, workers=1, broker_args=BROKER_ARGS) as c:
            address = metrics_address(c)
            send_jobs(c)
            proc, prometheus, log_path = start_prometheus(tmp, address)
            # Wait for a scrape that saw every job: the broker publishes
            # about once a second and Prometheus scrapes every second
            deadline = time.monotonic() + 20
            got = {}
            while time.monotonic() < deadline:
                got = {(r["metric"]["model"], r["metric"]["code"]): float(r["value"][1])
                       for r in query(prometheus, "amaas_jobs_total")}
                if got.get(("linear", "OK")) == N_OK and got.get(("iris", "OK")) == N_IRIS:
                    break
                time.sleep(0.25)
            log = open(log_path).read()[-4000:]
            assert got == {("linear", "OK"): N_OK, ("iris", "OK"): N_IRIS,
                           ("ghost", "NOT_FOUND"): N_NOT_FOUND}, (got, log)
            up = query(prometheus, 'up{job="amaas"}')
            assert [float(r["value"][1]) for r in up] == [1.0], (up, log)
            # Histograms aggregate in PromQL: jobs observed across models, and
            # a quantile computed from the buckets
            total = query(prometheus, "sum(amaas_latency_seconds_count)")
            assert float(total[0]["value"][1]) == N_OK + N_IRIS, total
            p99 = query(prometheus, "histogram_quantile(0.99, sum by (le) "
                                    "(amaas_latency_seconds_bucket))")
            assert 0 < float(p99[0]["value"][1]) <= 10, p99
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

