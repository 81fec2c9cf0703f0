"""Integration: a smoke test of amaas-gateway, the HTTP front of a broker.

A broker and a worker on examples/models (tests/harness.py Cluster), and a
gateway started here on a free port (--listen 127.0.0.1:0 --port-file):
health, model metadata, a KServe v2 inference, the Flask route, and the
errors a caller meets first (unknown model 404, malformed JSON 400, a body
over --max-body 413, a body trickling in past --request-timeout-s 408 while
other requests are served).  SIGTERM stops the gateway with exit 0, after
it answered a request in flight.  The full HTTP suite is
tests/integration/test_gateway.py.
Run: ctest -R integration_gateway_smoke, or
pytest --build-dir BUILD tests/integration/test_gateway_smoke.py"""
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Cluster, build_dir  # noqa: E402
from slow_model import write_mlp  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
MAX_BODY = 4096
REQUEST_TIMEOUT_S = 2


class Gateway:
    """amaas-gateway in front of a cluster, on a port it picked."""

    def __init__(self, cluster, *args):
        self.tmp = tempfile.mkdtemp(prefix="amaas-gateway-")
        port_file = os.path.join(self.tmp, "port")
        self.log_path = os.path.join(self.tmp, "gateway.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "amaas-gateway"), "--listen", "127.0.0.1:0",
             "--port-file", port_file, "--broker", cluster.frontend, "--threads", "2"]
            + list(args), stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not os.path.exists(port_file):
            assert self.proc.poll() is None, "the gateway exited: " + self.logs()
            assert time.monotonic() < deadline, "no port file: " + self.logs()
            time.sleep(0.01)
        with open(port_file) as f:
            self.port = int(f.read())

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def request(self, method, path, body=None, headers=None):
        """(status, headers, body as JSON when it is JSON)"""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = dict({"Content-Type": "application/json"}, **(headers or {}))
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            if r.getheader("Content-Type", "").startswith("application/json"):
                data = json.loads(data)
            return r.status, r, data
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self.log.close()
        return code


@pytest.fixture(scope="module")
def cluster():
    """The example models, and `slow` (an MLP: a job of 3,000 rows takes a
    while) to have a job in flight"""
    models = tempfile.mkdtemp(prefix="amaas-gateway-models-")
    for name in os.listdir(EXAMPLES):
        shutil.copy(os.path.join(EXAMPLES, name), models)
    write_mlp(os.path.join(models, "slow.amm"), "slow", [256, 2048, 2048, 16])
    with Cluster(BUILD, models, workers=1) as c:
        yield c


@pytest.fixture(scope="module")
def gateway(cluster):
    g = Gateway(cluster, "--max-body", str(MAX_BODY),
                "--request-timeout-s", str(REQUEST_TIMEOUT_S))
    try:
        yield g
    finally:
        code = g.stop()
        print(g.logs())
    assert code == 0, "the gateway did not stop cleanly on SIGTERM"


def test_health(gateway):
    status, _, body = gateway.request("GET", "/v2/health/live")
    assert (status, body) == (200, {"live": True})
    status, _, body = gateway.request("GET", "/v2/health/ready")
    assert (status, body) == (200, {"ready": True})
    status, _, body = gateway.request("GET", "/v2")
    assert status == 200 and body["name"] == "amaas"
    assert "binary_tensor_data" in body["extensions"]


def test_model_metadata(gateway):
    status, _, body = gateway.request("GET", "/v2/models/iris")
    assert status == 200, body
    assert body["name"] == "iris" and body["platform"] == "amaas"
    assert body["versions"] == ["1"]
    assert body["inputs"][0]["shape"] == [-1, 4]
    status, _, body = gateway.request("GET", "/v2/models/iris/versions/1/ready")
    assert (status, body) == (200, {"name": "iris", "ready": True})


def test_infer_json(gateway):
    request = {"id": "r1", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64",
                                       "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}
    status, r, body = gateway.request("POST", "/v2/models/iris/infer", request)
    assert status == 200, body
    assert r.getheader("Inference-Header-Content-Length") is None
    assert body["model_name"] == "iris" and body["model_version"] == "1"
    assert body["id"] == "r1"
    assert body["outputs"], body
    for out in body["outputs"]:
        assert out["shape"][0] == 2 and len(out["data"]) >= 2


def test_predict_flask_route(gateway):
    status, _, body = gateway.request("POST", "/predict/linear", {"X": [0.5]})
    assert status == 200, body
    assert isinstance(body["y_pred"], list) and len(body["y_pred"]) == 1
    status, _, rows = gateway.request("POST", "/predict/linear", {"X": [[0.5], [1.0]]})
    assert status == 200 and len(rows["y_pred"]) == 2
    assert rows["y_pred"][0] == body["y_pred"][0]


def test_unknown_model_404(gateway):
    status, r, body = gateway.request("GET", "/v2/models/nosuchmodel")
    assert status == 404 and "nosuchmodel" in body["error"]
    assert r.getheader("Content-Type").startswith("application/json")
    request = {"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [1]}]}
    status, _, body = gateway.request("POST", "/v2/models/nosuchmodel/infer", request)
    assert status == 404 and body["error"]
    status, _, body = gateway.request("GET", "/no/such/route")
    assert status == 404 and body["error"]


def test_malformed_json_400(gateway):
    status, _, body = gateway.request("POST", "/v2/models/iris/infer", b'{"inputs": [',
                                      {"Content-Type": "application/json"})
    assert status == 400 and body["error"]
    status, _, body = gateway.request("POST", "/predict/linear", b"not json")
    assert status == 400 and body["error"]


def test_body_too_large_413(gateway):
    big = {"X": [0.5] * MAX_BODY}
    status, _, body = gateway.request("POST", "/predict/linear", big)
    assert status == 413 and "--max-body" in body["error"]
    # still serving
    status, _, _ = gateway.request("POST", "/predict/linear", {"X": [0.5]})
    assert status == 200


def test_slow_body_408(gateway):
    """Headers, then one byte of body a second: 408 after --request-timeout-s,
    and other requests are served meanwhile."""
    s = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    try:
        s.sendall(b"POST /predict/linear HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        body = b'{"X": [0.5' + b" " * 100
        started = time.monotonic()
        answer = b""
        for i in range(REQUEST_TIMEOUT_S + 10):
            s.sendall(body[i:i + 1])
            # meanwhile, another caller is served
            status, _, _ = gateway.request("GET", "/v2/health/live")
            assert status == 200
            readable, _, _ = select.select([s], [], [], 1.0)
            if readable:
                break
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head
    assert "request-timeout" in json.loads(payload)["error"]
    assert elapsed >= REQUEST_TIMEOUT_S - 0.5


def in_flight(g):
    _, _, text = g.request("GET", "/metrics")
    return int(re.search(rb"^amaas_gateway_in_flight (\d+)$", text, re.M).group(1))


def test_sigterm_answers_the_request_in_flight(cluster):
    g = Gateway(cluster)
    try:
        rows = 3000
        body = json.dumps({"inputs": [{"name": "input", "shape": [rows, 256],
                                       "datatype": "FP32", "data": [0] * (rows * 256)}]})
        answer = {}

        def call():
            answer["status"], _, answer["body"] = g.request(
                "POST", "/v2/models/slow/infer", body, {"Content-Type": "application/json"})

        caller = threading.Thread(target=call)
        caller.start()
        # observed in flight: /metrics counts it and itself
        deadline = time.monotonic() + 30
        while in_flight(g) < 2 and caller.is_alive():
            assert time.monotonic() < deadline
        if not caller.is_alive():
            pytest.skip("the job was done before it was seen in flight (a fast machine)")
        g.proc.send_signal(signal.SIGTERM)
        caller.join(timeout=60)
        assert answer.get("status") == 200, answer
        assert answer["body"]["outputs"][0]["shape"] == [rows, 16]
    finally:
        code = g.stop()
        print(g.logs())
    assert code == 0
