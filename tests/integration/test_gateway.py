"""Integration: amaas-gateway, the HTTP API (docs/HTTP.md, docs/openapi.yaml).

A cluster serves the example models (iris, linear), `wide` (width 100, FP32:
y = 2x + 0.5, exact in FP32), `slow` (a big MLP) and `linear` version 2
(y = 10x + 1) on a second worker; amaas-gateway runs in front of it on a
free port (--port-file).  Every route is called with curl and with Python
requests; a client written for a Flask `POST /predict` app gets the answers
`amaas predict` gets; a 1,000 x 100 FP32 tensor goes both ways through the
binary extension; bad requests get the status the document lists (400, 404,
405, 408, 413, 415, 431), and the gateway serves on after each; a client
over its share at the broker gets 429, a job past its deadline 504, a
gateway without a broker 503.  HTTPS with a
self-signed certificate; API keys in front of a CURVE broker with an ACL
(401, 403); /metrics counts by route and code.  Every response is checked
against docs/openapi.yaml by tests/openapi_check.py.
Run: ctest -R integration_gateway, or
pytest --build-dir BUILD tests/integration/test_gateway.py"""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading

import msgpack
import numpy as np
import pytest
import requests
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Cluster, build_dir, control_json, stopped, wait_for  # noqa: E402
from gateway_harness import DOCS_DIR, Gateway  # noqa: E402
from openapi_check import CheckedSession, Spec  # noqa: E402
from slow_model import write_mlp  # noqa: E402
from fake_worker import GRAPH_MODEL, FakeWorker, graph_outputs  # noqa: E402

BUILD = build_dir()
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(ROOT, "examples", "models")
SPEC = Spec()
TMP = tempfile.mkdtemp(prefix="amaas-gateway-")
MAX_BODY = 2 << 20  # the gateways' --max-body: a 1,000 x 100 FP32 tensor fits
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5],
             [6.3, 3.3, 6.0, 2.5], [4.9, 3.0, 1.4, 0.2]]


def write_model(path, name, version, dtype, width, weights, bias, outputs_shape, flatten=False):
    """An amaas model file of one dense layer (docs/MODEL_FORMAT.md):
    y = x W + b, output `predictions`/`y`."""
    np_dtype = np.dtype("<f4") if dtype == "FP32" else np.dtype("<f8")
    w = np.asarray(weights, dtype=np_dtype)
    out_name = "predictions" if flatten else "y"
    ops = [{"op": "dense", "in": width, "out": w.shape[1], "weights": w.tobytes(),
            "bias": np.asarray(bias, dtype=np_dtype).tobytes()},
           {"op": "output", "name": out_name, "flatten": flatten}]
    model = {"format": "amaas-model", "format_version": 1, "name": name, "version": version,
             "datatype": dtype, "input": {"name": "input", "width": width},
             "outputs": [{"name": out_name, "datatype": dtype, "shape": outputs_shape}],
             "ops": ops}
    with open(path, "wb") as f:
        f.write(msgpack.packb(model, use_bin_type=True))


MODELS = os.path.join(TMP, "models")
V2 = os.path.join(TMP, "v2")
os.makedirs(MODELS)
os.makedirs(V2)
for name in ("iris.amm", "linear.amm"):
    shutil.copy(os.path.join(EXAMPLES, name), MODELS)
write_model(os.path.join(MODELS, "wide.amm"), "wide", "1", "FP32", 100, 2.0 * np.eye(100),
            np.full(100, 0.5), [-1, 100])
write_mlp(os.path.join(MODELS, "slow.amm"), "slow", [256, 2048, 2048, 16])
write_model(os.path.join(V2, "linear.amm"), "linear", "2", "FP64", 1, [[10.0]], [1.0], [-1],
            flatten=True)


# -- the gateway ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    with Cluster(BUILD, MODELS, workers=1) as c:
        c.start_worker(V2)
        wait_for("linear versions 1 and 2",
                 lambda: sorted(m["version"] for m in c.models() if m["name"] == "linear")
                 == ["1", "2"])
        yield c


@pytest.fixture(scope="module")
def gw(cluster):
    with Gateway(cluster.frontend, TMP, "--max-body", str(MAX_BODY),
                 "--request-timeout-s", "2") as g:
        yield g


@pytest.fixture
def http(gw):
    """A requests.Session on the gateway that checks every response."""
    with CheckedSession(SPEC, gw.url) as s:
        yield s
    gw.alive()


def curl(base, method, path, data=None, headers=(), extra=()):
    """curl METHOD base+path: (status, headers, body bytes), the response
    checked against the document."""
    head = os.path.join(TMP, "curl-head")
    body = os.path.join(TMP, "curl-body")
    args = ["curl", "-sS", "-X", method, "-D", head, "-o", body, "-w", "%{http_code}",
            "--max-time", "60"] + list(extra)
    for h in headers:
        args += ["-H", h]
    if data is not None:
        args += ["--data-binary", "@-"]
    r = subprocess.run(args + [base + path], input=data if isinstance(data, bytes)
                       else (data or "").encode(), capture_output=True, timeout=90)
    assert r.returncode == 0, "curl %s %s: %s" % (method, path, r.stderr.decode())
    status = int(r.stdout)
    with open(head, "rb") as f:
        blocks = f.read().decode("latin-1").strip().split("\r\n\r\n")
    fields = {}
    for line in blocks[-1].split("\r\n")[1:]:  # the last response (not a 100 Continue)
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    with open(body, "rb") as f:
        content = f.read()
    SPEC.check(SPEC.match(path), method, status, fields, content)
    return status, fields, content


def cli_predict(cluster, model, rows):
    """`amaas predict` of rows: {output: list}."""
    r = subprocess.run([cluster.bin("amaas"), "--broker", cluster.frontend, "--timeout", "10000",
                        "predict", "--model", model, "--input", json.dumps(rows)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def v2_input(rows, name="input", datatype="FP64"):
    rows = np.asarray(rows)
    return {"name": name, "shape": list(rows.shape), "datatype": datatype,
            "data": rows.ravel().tolist()}


JSON = {"Content-Type": "application/json"}


# -- every route ----------------------------------------------------------------

# (method, path, body, status): one call of every route of the document
ROUTES = [
    ("GET", "/v2/health/live", None, 200),
    ("GET", "/v2/health/ready", None, 200),
    ("GET", "/v2", None, 200),
    ("GET", "/v2/models/iris", None, 200),
    ("GET", "/v2/models/linear/versions/1", None, 200),
    ("GET", "/v2/models/iris/ready", None, 200),
    ("GET", "/v2/models/linear/versions/2/ready", None, 200),
    ("POST", "/v2/models/iris/infer", {"inputs": [v2_input(IRIS_ROWS[:1])]}, 200),
    ("POST", "/v2/models/linear/versions/1/infer", {"inputs": [v2_input([[0.5]])]}, 200),
    ("POST", "/predict/iris", {"X": IRIS_ROWS[0]}, 200),
    ("GET", "/metrics", None, 200),
    ("GET", "/openapi.json", None, 200),
    ("GET", "/docs", None, 200),
    ("GET", "/docs/swagger-ui/swagger-ui-bundle.js", None, 200),
]


def test_every_route_with_curl_and_requests(gw, http):
    assert {SPEC.match(path) for _, path, _, _ in ROUTES} == set(SPEC.doc["paths"])
    for method, path, body, status in ROUTES:
        data = json.dumps(body) if body is not None else None
        got, headers, content = curl(gw.url, method, path, data,
                                     ["Content-Type: application/json"] if data else [])
        assert got == status, (method, path, got, content[:300])
        r = http.request(method, path, data=data, headers=JSON if data else {})
        assert r.status_code == status, (method, path, r.status_code, r.text[:300])
        if path.startswith("/v2") or path.startswith("/predict"):
            assert r.headers["Content-Type"].startswith("application/json"), r.headers
    print("every route: %d calls with curl and with requests" % len(ROUTES))


def test_health_and_server_metadata(http):
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    meta = http.get("/v2").json()
    assert meta["name"] == "amaas" and meta["version"] == "0.1.0", meta
    assert {"binary_tensor_data", "model_versions"} <= set(meta["extensions"]), meta


def test_model_metadata_versions_and_ready(http):
    iris = http.get("/v2/models/iris").json()
    assert iris == {"name": "iris", "versions": ["1"], "platform": "amaas",
                    "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
                    "outputs": [{"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
                                {"name": "label", "datatype": "INT64", "shape": [-1]}]}, iris
    linear = http.get("/v2/models/linear").json()
    assert linear["versions"] == ["1", "2"], linear
    assert linear["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
    assert http.get("/v2/models/linear/versions/1").json()["versions"] == ["1", "2"]
    wide = http.get("/v2/models/wide").json()
    assert wide["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 100]}], wide
    assert http.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert http.get("/v2/models/linear/versions/2/ready").json()["ready"] is True
    for path in ("/v2/models/nosuch", "/v2/models/nosuch/ready", "/v2/models/linear/versions/7",
                 "/v2/models/linear/versions/7/ready", "/v2/models/nosuch/infer"):
        r = http.request("POST" if path.endswith("infer") else "GET", path,
                         json={"inputs": [v2_input([[1.0]])]} if path.endswith("infer") else None)
        assert r.status_code == 404 and r.json()["error"], (path, r.status_code, r.text)


# -- inference ---------------------------------------------------------------------

def test_infer_json_equals_the_cli(cluster, http):
    want = cli_predict(cluster, "iris", IRIS_ROWS)
    r = http.post("/v2/models/iris/infer", json={"id": "req-7", "inputs": [v2_input(IRIS_ROWS)]})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["model_name"] == "iris" and got["model_version"] == "1" and got["id"] == "req-7"
    outputs = {o["name"]: o for o in got["outputs"]}
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["shape"] == [5]
    assert outputs["label"]["data"] == want["label"], (outputs, want)
    assert outputs["probabilities"]["shape"] == [5, 3]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (5, 3)),
                               np.asarray(want["probabilities"]).reshape(5, 3), rtol=1e-12)
    # nested data, FP32 and INT64 inputs (converted)
    nested = {"name": "input", "shape": [5, 4], "datatype": "FP32", "data": IRIS_ROWS}
    r = http.post("/v2/models/iris/infer", json={"inputs": [nested]})
    assert r.status_code == 200, r.text
    assert {o["name"]: o["data"] for o in r.json()["outputs"]}["label"] == want["label"]
    ints = {"name": "input", "shape": [1, 1], "datatype": "INT64", "data": [2]}
    r = http.post("/v2/models/linear/versions/2/infer", json={"inputs": [ints]})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [21.0], r.text
    # priority and deadline, as headers and as parameters
    r = http.post("/v2/models/iris/infer", json={"inputs": [v2_input(IRIS_ROWS)], "parameters": {
        "priority": 3, "deadline_ms": 20000}}, headers={"X-Amaas-Priority": "2",
                                                        "X-Amaas-Deadline-Ms": "15000"})
    assert r.status_code == 200 and r.json()["outputs"][1]["data"] == want["label"], r.text
    # Content-Type with a charset, or none at all
    for headers in ({"Content-Type": "application/json; charset=utf-8"}, {}):
        r = http.post("/v2/models/iris/infer", data=json.dumps({"inputs": [v2_input(IRIS_ROWS)]}),
                      headers=headers)
        assert r.status_code == 200 and r.json()["outputs"][1]["data"] == want["label"], r.text


def test_requested_outputs(cluster, http):
    """"outputs" names the outputs wanted, in that order; an unknown one is a 400."""
    want = cli_predict(cluster, "iris", IRIS_ROWS)
    for names in (["label"], ["probabilities"], ["label", "probabilities"]):
        r = http.post("/v2/models/iris/infer", json={"inputs": [v2_input(IRIS_ROWS)],
                                                     "outputs": [{"name": n} for n in names]})
        assert r.status_code == 200, r.text
        assert [o["name"] for o in r.json()["outputs"]] == names, (names, r.json())
        if "label" in names:
            assert r.json()["outputs"][names.index("label")]["data"] == want["label"]
    r = http.post("/v2/models/iris/infer", json={"inputs": [v2_input(IRIS_ROWS)],
                                                 "outputs": [{"name": "nosuch"}]})
    assert r.status_code == 400 and "nosuch" in r.json()["error"], r.text


def test_versions(http):
    def y(path):
        r = http.post(path, json={"inputs": [v2_input([[1.0]])]})
        assert r.status_code == 200, r.text
        return r.json()["model_version"], round(r.json()["outputs"][0]["data"][0], 9)

    assert y("/v2/models/linear/infer") == ("2", 11.0)
    assert y("/v2/models/linear/versions/2/infer") == ("2", 11.0)
    version, value = y("/v2/models/linear/versions/1/infer")
    assert version == "1" and value != 11.0 and 3.0 < value < 4.0  # about 2x + 1.5
    r = http.post("/predict/linear?version=2", json={"X": [1.0]})
    assert r.status_code == 200 and r.json() == {"y_pred": [11.0]}, r.text
    r = http.post("/v2/models/linear/versions/7/infer", json={"inputs": [v2_input([[1.0]])]})
    assert r.status_code == 404 and "7" in r.json()["error"], r.text
    r = http.post("/predict/linear?version=7", json={"X": [1.0]})
    assert r.status_code == 404, r.text


def test_a_flask_client_works_unchanged(cluster, gw):
    """What a client of the Flask app sends, with plain requests."""
    url = gw.url
    want = cli_predict(cluster, "iris", IRIS_ROWS)["label"]
    r = requests.post(url + '/predict/iris', data=json.dumps({'X': [5.1, 3.5, 1.4, 0.2]}),
                      headers={'Content-Type': 'application/json'}, timeout=60)
    SPEC.check_response(r)
    assert r.status_code == 200 and r.json() == {"y_pred": [want[0]]}, r.text
    r = requests.post(url + '/predict/iris', data=json.dumps({'X': IRIS_ROWS}),
                      headers={'Content-Type': 'application/json'}, timeout=60)
    SPEC.check_response(r)
    assert r.status_code == 200 and r.json() == {"y_pred": want}, r.text
    # a regressor: its predictions, as scikit-learn's predict
    linear = cli_predict(cluster, "linear", [[0.25], [0.75]])["predictions"]
    r = requests.post(url + '/predict/linear', json={'X': [[0.25], [0.75]]}, timeout=60)
    SPEC.check_response(r)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["y_pred"], linear, rtol=1e-12)
    # an output [rows, k]: an array per row
    r = requests.post(url + '/predict/wide', json={'X': [[1.0] * 100, [2.0] * 100]}, timeout=60)
    SPEC.check_response(r)
    assert r.status_code == 200 and r.json() == {"y_pred": [[2.5] * 100, [4.5] * 100]}, r.text
    # with curl, as a shell script would
    status, _, body = curl(url, "POST", "/predict/iris", json.dumps({"X": IRIS_ROWS}),
                           ["Content-Type: application/json"])
    assert status == 200 and json.loads(body) == {"y_pred": want}, body


def binary_request(inputs, outputs=None, parameters=None):
    """(body, json length) of a binary-extension request: inputs is
    [(name, array, datatype)]."""
    specs, raw = [], b""
    for name, array, datatype in inputs:
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        specs.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                      "parameters": {"binary_data_size": len(data)}})
        raw += data
    header = {"inputs": specs}
    if outputs is not None:
        header["outputs"] = outputs
    if parameters is not None:
        header["parameters"] = parameters
    text = json.dumps(header).encode()
    return text + raw, len(text)


def binary_outputs(response):
    """{name: (output json, raw bytes)} of a binary response."""
    n = int(response.headers["Inference-Header-Content-Length"])
    head = json.loads(response.content[:n])
    offset, out = n, {}
    for o in head["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        raw = None
        if size is not None:
            raw = response.content[offset:offset + size]
            offset += size
        out[o["name"]] = (o, raw)
    assert offset == len(response.content), (offset, len(response.content))
    return out


def test_binary_round_trip_1000_x_100_fp32(gw, http):
    x = np.random.default_rng(7).standard_normal((1000, 100)).astype(np.float32)
    want = (np.float32(2) * x + np.float32(0.5)).astype(np.float32)  # exact in FP32
    body, n = binary_request([("input", x, "FP32")], parameters={"binary_data_output": True})
    headers = {"Inference-Header-Content-Length": str(n),
               "Content-Type": "application/octet-stream"}
    r = http.post("/v2/models/wide/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("application/octet-stream"), r.headers
    (meta, raw), = binary_outputs(r).values()
    assert meta["datatype"] == "FP32" and meta["shape"] == [1000, 100], meta
    assert meta["parameters"]["binary_data_size"] == 400000
    got = np.frombuffer(raw, dtype="<f4").reshape(1000, 100)
    assert np.array_equal(got, want)
    # the same binary input, JSON output (no binary: application/json, no header)
    body, n = binary_request([("input", x[:10], "FP32")])
    r = http.post("/v2/models/wide/infer", data=body, headers={
        "Inference-Header-Content-Length": str(n)})
    assert r.status_code == 200, r.text[:500]
    assert "Inference-Header-Content-Length" not in r.headers
    assert r.headers["Content-Type"].startswith("application/json")
    out = r.json()["outputs"][0]
    assert np.array_equal(np.asarray(out["data"], dtype=np.float32).reshape(10, 100), want[:10])
    # JSON input, one output binary by its own parameter
    r = http.post("/v2/models/iris/infer", json={"inputs": [v2_input(IRIS_ROWS)], "outputs": [
        {"name": "label", "parameters": {"binary_data": True}}, {"name": "probabilities"}]})
    assert r.status_code == 200, r.text[:500]
    outputs = binary_outputs(r)
    assert np.frombuffer(outputs["label"][1], dtype="<i8").tolist() == \
        [o for o in http.post("/predict/iris", json={"X": IRIS_ROWS}).json()["y_pred"]]
    assert outputs["probabilities"][1] is None and len(outputs["probabilities"][0]["data"]) == 15
    # the big one with curl
    body, n = binary_request([("input", x, "FP32")], parameters={"binary_data_output": True})
    status, fields, content = curl(gw.url, "POST", "/v2/models/wide/infer", body, [
        "Inference-Header-Content-Length: %d" % n, "Content-Type: application/octet-stream"])
    assert status == 200
    json_len = int({k.lower(): v for k, v in fields.items()}["inference-header-content-length"])
    assert np.array_equal(np.frombuffer(content[json_len:], dtype="<f4").reshape(1000, 100), want)


def test_graph_model_metadata_and_multi_input_nd():
    """A model with a graph model's metadata (two INT64 inputs [batch,
    sequence], outputs of rank 3, 2 and 1), served by a fake worker on the
    cluster's broker: its KServe metadata lists every input and output with
    its shape, and two INT64 [2, 3] inputs, in JSON and binary, reach the
    worker unchanged (names, datatypes, shapes, values) and its outputs come
    back (no graph model file needed)."""
    ids = np.array([[101, 7592, 102], [101, -5, 2 ** 62]], dtype=np.int64)
    mask = np.array([[1, 1, 1], [1, 1, 0]], dtype=np.int64)
    want = dict(graph_outputs({"input_ids": ids, "attention_mask": mask}))
    with Cluster(BUILD, MODELS, workers=0) as c, FakeWorker(c.backend, [GRAPH_MODEL]) as w, \
            Gateway(c.frontend, TMP) as g, CheckedSession(SPEC, g.url) as http:
        meta = {"name": "graph", "versions": ["1"], "platform": "amaas",
                "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
                           {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]}],
                "outputs": [{"name": "hidden", "datatype": "FP32", "shape": [-1, -1, 4]},
                            {"name": "logits", "datatype": "FP32", "shape": [-1, 2]},
                            {"name": "label", "datatype": "INT64", "shape": [-1]}]}
        for path in ("/v2/models/graph", "/v2/models/graph/versions/1"):
            r = http.get(path)
            assert r.status_code == 200 and r.json() == meta, (path, r.text)

        def sent_unchanged():
            header, inputs = w.jobs[-1]
            assert header["model"] == "graph", header
            assert list(inputs) == ["input_ids", "attention_mask"], inputs
            for name, array in (("input_ids", ids), ("attention_mask", mask)):
                assert inputs[name].dtype == np.int64 and inputs[name].shape == (2, 3)
                assert np.array_equal(inputs[name], array), (name, inputs[name])

        # JSON: one input nested, one flat
        r = http.post("/v2/models/graph/infer", json={"inputs": [
            {"name": "input_ids", "shape": [2, 3], "datatype": "INT64", "data": ids.tolist()},
            {"name": "attention_mask", "shape": [2, 3], "datatype": "INT64",
             "data": mask.ravel().tolist()}]})
        assert r.status_code == 200, r.text
        sent_unchanged()
        got = {o["name"]: o for o in r.json()["outputs"]}
        assert [o["name"] for o in r.json()["outputs"]] == ["hidden", "logits", "label"]
        assert got["hidden"]["datatype"] == "FP32" and got["hidden"]["shape"] == [2, 3, 4]
        assert np.array_equal(np.asarray(got["hidden"]["data"], dtype=np.float32).reshape(2, 3, 4),
                              want["hidden"])
        assert got["logits"]["shape"] == [2, 2] and got["label"]["shape"] == [2]
        assert got["label"]["data"] == want["label"].tolist()
        # Binary both ways
        body, n = binary_request([("input_ids", ids, "INT64"), ("attention_mask", mask, "INT64")],
                                 parameters={"binary_data_output": True})
        r = http.post("/v2/models/graph/infer", data=body, headers={
            "Inference-Header-Content-Length": str(n), "Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text[:500]
        sent_unchanged()
        outputs = binary_outputs(r)
        assert outputs["hidden"][0]["shape"] == [2, 3, 4], outputs["hidden"][0]
        assert np.array_equal(np.frombuffer(outputs["hidden"][1], dtype="<f4").reshape(2, 3, 4),
                              want["hidden"])
        assert np.array_equal(np.frombuffer(outputs["logits"][1], dtype="<f4").reshape(2, 2),
                              want["logits"])
        assert np.frombuffer(outputs["label"][1], dtype="<i8").tolist() == want["label"].tolist()
        assert len(w.jobs) == 2, len(w.jobs)
        g.alive()


# -- bad requests -------------------------------------------------------------------

def still_serves(http):
    r = http.post("/predict/iris", json={"X": IRIS_ROWS[0]})
    assert r.status_code == 200, r.text


def test_bad_requests(gw, http):
    iris = "/v2/models/iris/infer"
    cases = [
        # (what, method, path, body, headers, status, words in the error)
        ("malformed JSON", "POST", iris, b'{"inputs": [', JSON, 400, []),
        ("not an object", "POST", iris, b'[1, 2]', JSON, 400, []),
        ("no inputs", "POST", iris, b'{}', JSON, 400, ["inputs"]),
        ("data short of the shape", "POST", iris, json.dumps({"inputs": [
            {"name": "input", "shape": [2, 4], "datatype": "FP64", "data": [1.0] * 7}]}),
         JSON, 400, []),
        ("wrong width", "POST", iris, json.dumps({"inputs": [v2_input([[1.0, 2.0, 3.0]])]}),
         JSON, 400, []),
        ("unknown datatype", "POST", iris, json.dumps({"inputs": [
            {"name": "input", "shape": [1, 4], "datatype": "FP16", "data": [1.0] * 4}]}),
         JSON, 400, ["FP16"]),
        ("bad priority", "POST", iris, json.dumps({"inputs": [v2_input(IRIS_ROWS)],
                                                   "parameters": {"priority": 9}}),
         JSON, 400, ["priority"]),
        ("bad priority header", "POST", iris, json.dumps({"inputs": [v2_input(IRIS_ROWS)]}),
         dict(JSON, **{"X-Amaas-Priority": "nine"}), 400, []),
        ("binary size not the shape's", "POST", iris, *(lambda b: (
            b[0], {"Inference-Header-Content-Length": str(b[1])}))(binary_request(
                [("input", np.zeros((2, 3)), "FP64")])), 400, []),
        ("header length past the body", "POST", iris, b'{"inputs": []}',
         {"Inference-Header-Content-Length": "1000"}, 400, []),
        ("rows of different lengths", "POST", "/predict/iris", json.dumps({"X": [[1.0, 2.0],
                                                                                 [1.0]]}),
         JSON, 400, []),
        ("no X", "POST", "/predict/iris", json.dumps({"Y": [1.0]}), JSON, 400, ["X"]),
        ("text/plain", "POST", iris, json.dumps({"inputs": [v2_input(IRIS_ROWS)]}),
         {"Content-Type": "text/plain"}, 415, []),
        ("octet-stream without the header", "POST", iris, b'{}',
         {"Content-Type": "application/octet-stream"}, 415, []),
        ("form", "POST", "/predict/iris", b"X=1", {"Content-Type":
                                                   "application/x-www-form-urlencoded"}, 415, []),
        ("unknown route", "GET", "/v3/nothing", None, {}, 404, []),
        ("unknown route POST", "POST", "/predict", b"{}", JSON, 404, []),
        ("unknown model", "POST", "/predict/nosuch", json.dumps({"X": [1.0]}), JSON, 404,
         ["nosuch"]),
        ("headers over --max-header", "GET", "/v2/models/iris", None,
         {"X-Padding": "x" * 20000}, 431, None),
        ("GET on infer", "GET", iris, None, {}, 405, []),
        ("POST on live", "POST", "/v2/health/live", b"{}", JSON, 405, []),
        ("DELETE on a model", "DELETE", "/v2/models/iris", None, {}, 405, []),
    ]
    for what, method, path, body, headers, status, words in cases:
        r = http.request(method, path, data=body, headers=headers)
        assert r.status_code == status, (what, r.status_code, r.text[:300])
        if words is not None:  # None: an answer of libmicrohttpd's (431), not JSON
            error = r.json()["error"]
            for word in words:
                assert word in error, (what, error)
        if status == 405:
            assert r.headers["Allow"], (what, r.headers)
        still_serves(http)
    # the same with curl: the statuses do not depend on the client
    for what, method, path, body, headers, status, words in cases[:1] + cases[12:13] + cases[-3:]:
        got, _, _ = curl(gw.url, method, path, body, ["%s: %s" % h for h in headers.items()])
        assert got == status, (what, got)
    print("bad requests: %d kinds answered with their status; the gateway serves on" % len(cases))


def read_response(sock):
    """(status, headers, body) of the HTTP response that comes on sock
    (up to its Content-Length, or to the end of the connection)."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            m = re.search(rb"(?im)^content-length:\s*(\d+)", data[:end])
            if m and len(data) >= end + 4 + int(m.group(1)):
                break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    assert head, "no response"
    lines = head.decode("latin-1").split("\r\n")
    fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    return int(lines[0].split()[1]), fields, content


def test_a_body_over_max_body_is_413(gw, http):
    """Refused on its Content-Length, before it is sent: with curl (which
    waits for 100 Continue) and with a client that sends headers only."""
    big = os.path.join(TMP, "big.json")
    with open(big, "wb") as f:
        f.write(b" " * (MAX_BODY + 1))
    status, _, body = curl(gw.url, "POST", "/v2/models/iris/infer", None,
                           ["Content-Type: application/json", "Expect: 100-continue"],
                           ["--data-binary", "@" + big])
    assert status == 413 and json.loads(body)["error"], body
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(b"POST /predict/iris HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % (MAX_BODY + 1))
        status, fields, content = read_response(sock)
    SPEC.check("/predict/{name}", "POST", status, fields, content)
    assert status == 413, content
    still_serves(http)


def test_a_slow_client_gets_408_while_others_are_served(gw, http):
    """A client that sends one byte a second: 408 after --request-timeout-s 2,
    and meanwhile the gateway serves others."""
    body = json.dumps({"inputs": [v2_input(IRIS_ROWS)]}).encode()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    sock.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    done = threading.Event()

    def dribble():
        for byte in body:
            if done.wait(1.0):  # the pace of the slow client, not a wait for readiness
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return

    sender = threading.Thread(target=dribble, daemon=True)
    sender.start()
    try:
        # another client is served while the slow one sends
        for _ in range(3):
            still_serves(http)
        status, fields, content = read_response(sock)
    finally:
        done.set()
        sender.join()
        sock.close()
    assert status == 408, (status, content)
    SPEC.check("/v2/models/{name}/infer", "POST", status, fields, content)
    still_serves(http)


# -- deadlines and an absent broker ---------------------------------------------------

def test_deadline_exceeded_is_504(http):
    """A job of about a billion multiply-adds with a deadline of 1 ms."""
    rows = np.random.default_rng(1).standard_normal((200, 256)).astype(np.float32)
    body, n = binary_request([("input", rows, "FP32")])
    r = http.post("/v2/models/slow/infer", data=body, headers={
        "Inference-Header-Content-Length": str(n), "X-Amaas-Deadline-Ms": "1"})
    assert r.status_code == 504, r.text[:300]
    still_serves(http)


def test_no_broker_is_503():
    with socket.socket() as s:  # a port nothing listens on (closed right after)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Gateway("tcp://127.0.0.1:%d" % port, TMP, "--timeout-ms", "1000") as g, \
            CheckedSession(SPEC, g.url) as http:
        assert http.get("/v2/health/live").status_code == 200
        r = http.get("/v2/health/ready")
        assert r.status_code == 503 and r.json()["ready"] is False and r.json()["error"], r.text
        r = http.post("/predict/iris", json={"X": IRIS_ROWS[0]})
        assert r.status_code in (503, 504), r.text
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "1"


def test_a_client_over_its_share_gets_429():
    """The broker lets a client have one job (--max-client-jobs 1): while
    the gateway's first job waits for a stopped worker, a second gets 429
    with Retry-After; the first is answered once the worker goes on."""
    with Cluster(BUILD, MODELS, workers=1, heartbeat_ms=10000,
                 broker_args=["--max-client-jobs", "1"]) as c, Gateway(c.frontend, TMP) as g:
        first = {}

        def send_first():
            with CheckedSession(SPEC, g.url) as http:
                first["r"] = http.post("/predict/iris", json={"X": IRIS_ROWS[0]})

        thread = threading.Thread(target=send_first, daemon=True)
        with stopped(c.workers[0]), CheckedSession(SPEC, g.url) as http:
            thread.start()
            wait_for("the first job at the broker",
                     lambda: control_json(c, "status")["in_flight"] == 1)
            r = http.post("/predict/iris", json={"X": IRIS_ROWS[1]})
            assert r.status_code == 429 and r.headers["Retry-After"] == "1", r.text
            assert "max-client-jobs" in r.json()["error"], r.text
        thread.join(timeout=60)
        assert first["r"].status_code == 200 and len(first["r"].json()["y_pred"]) == 1
        g.alive()


# -- metrics and the document ---------------------------------------------------------

def metric(text, name, **labels):
    """The value of a sample of the Prometheus text, 0 if absent."""
    for line in text.splitlines():
        m = re.match(r"^%s(\{.*\})?\s+(\S+)$" % re.escape(name), line)  # values hold braces
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return 0.0


def test_metrics_count_by_route_and_code(http):
    before = http.get("/metrics").text
    for _ in range(3):
        still_serves(http)
    assert http.post("/predict/iris", json={"Y": 1}).status_code == 400
    assert http.get("/no/such/route").status_code == 404
    assert http.post("/v2/models/iris/infer", json={"inputs": [v2_input(IRIS_ROWS)]}
                     ).status_code == 200
    r = http.get("/metrics")
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    after = r.text
    total = "amaas_gateway_requests_total"
    for route, code, n in (("/predict/{name}", "200", 3), ("/predict/{name}", "400", 1),
                           ("other", "404", 1), ("/v2/models/{name}/infer", "200", 1),
                           ("/metrics", "200", 1)):
        delta = metric(after, total, route=route, code=code) - \
            metric(before, total, route=route, code=code)
        assert delta == n, (route, code, delta, after)
    count = "amaas_gateway_request_duration_seconds_count"
    assert metric(after, count, route="/predict/{name}") - \
        metric(before, count, route="/predict/{name}") == 4, after
    assert metric(after, "amaas_gateway_request_duration_seconds_bucket",
                  route="/predict/{name}", le="+Inf") >= 4, after
    assert re.search(r"^amaas_gateway_in_flight \d+", after, re.M), after


def test_openapi_json_and_docs(http):
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        assert http.get("/openapi.json").json() == json.loads(json.dumps(yaml.safe_load(f)))
    page = http.get("/docs")
    assert page.headers["Content-Type"].startswith("text/html")
    assert "swagger-ui-bundle.js" in page.text and "openapi.json" in page.text, page.text
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        r = http.get("/docs/swagger-ui/" + asset)
        assert r.status_code == 200 and kind in r.headers["Content-Type"], (asset, r.headers)
        with open(os.path.join(DOCS_DIR, asset), "rb") as f:
            assert r.content == f.read()
    assert http.get("/docs/swagger-ui/no-such-file.js").status_code == 404
    assert http.get("/docs/swagger-ui/..%2F..%2Fpackage.json").status_code == 404


# -- HTTPS ----------------------------------------------------------------------------

def test_https(cluster):
    cert, key = os.path.join(TMP, "tls.crt"), os.path.join(TMP, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    with Gateway(cluster.frontend, TMP, "--tls-cert", cert, "--tls-key", key,
                 scheme="https") as g, CheckedSession(SPEC, g.url) as http:
        http.verify = cert
        assert http.get("/v2/health/live").json() == {"live": True}
        r = http.post("/predict/iris", json={"X": IRIS_ROWS})
        assert r.status_code == 200 and len(r.json()["y_pred"]) == 5, r.text
        status, _, body = curl(g.url, "POST", "/predict/iris", json.dumps({"X": IRIS_ROWS}),
                               ["Content-Type: application/json"], ["--cacert", cert])
        assert status == 200 and json.loads(body) == r.json()
        # without the certificate: refused by the client; plain HTTP: no answer
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(g.url + "/v2/health/live", timeout=30)
        with pytest.raises(requests.exceptions.RequestException):
            requests.get("http://127.0.0.1:%d/v2/health/live" % g.port, timeout=30)
        # the handshake names the certificate we made
        ctx = ssl.create_default_context(cafile=cert)
        with socket.create_connection(("127.0.0.1", g.port), timeout=30) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)
        g.alive()


# -- API keys and the broker's ACL ----------------------------------------------------

def test_api_keys_and_acl():
    keys = os.path.join(TMP, "keys")
    os.makedirs(os.path.join(keys, "clients"))
    os.makedirs(os.path.join(keys, "workers"))
    os.makedirs(os.path.join(keys, "operators"))
    gateway_keys = os.path.join(keys, "gateway")  # --client-keys: NAME and NAME_secret
    os.makedirs(gateway_keys)

    def keygen(name, folder=None):
        r = subprocess.run([os.path.join(BUILD, "amaas"), "keygen", name, "--dir", keys],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        path = os.path.join(keys, name + ".key")
        if folder:
            shutil.copy(path, os.path.join(keys, folder))
        return path

    broker = keygen("broker")
    worker = keygen("w1", "workers")
    for name in ("alice", "bob"):
        path = keygen(name, "clients")
        shutil.copy(path, os.path.join(gateway_keys, name))
        shutil.copy(path + "_secret", os.path.join(gateway_keys, name + "_secret"))
    with open(os.path.join(keys, "acl"), "w") as f:
        f.write("alice: *\nbob: iris\n")
    api_keys = os.path.join(keys, "api-keys")
    with open(api_keys, "w") as f:
        f.write("# NAME: TOKEN\nalice: alice-token-0123456789\nbob: bob-token-0123456789\n")
    alice = {"Authorization": "Bearer alice-token-0123456789"}
    bob = {"Authorization": "Bearer bob-token-0123456789"}
    with Cluster(BUILD, EXAMPLES, workers=1,
                 broker_args=["--curve-cert", broker, "--clients", os.path.join(keys, "clients"),
                              "--workers", os.path.join(keys, "workers"),
                              "--operators", os.path.join(keys, "operators"),
                              "--acl", os.path.join(keys, "acl")],
                 worker_args=["--server-key", broker, "--cert", worker],
                 cli_args=["--server-key", broker, "--cert", os.path.join(keys, "alice.key")]) \
            as c, Gateway(c.frontend, TMP, "--api-keys", api_keys, "--server-key", broker,
                          "--client-keys", gateway_keys) as g, \
            CheckedSession(SPEC, g.url) as http:
        # no key, an unknown key, a malformed header: 401 with WWW-Authenticate
        for headers in ({}, {"Authorization": "Bearer mallory"}, {"Authorization": "Basic eA=="},
                        {"Authorization": "Bearer alice-token-012345678"}):
            for method, path in (("POST", "/predict/iris"), ("GET", "/v2/models/iris"),
                                 ("GET", "/v2")):
                r = http.request(method, path, json={"X": IRIS_ROWS[0]} if method == "POST"
                                 else None, headers=headers)
                assert r.status_code == 401, (headers, path, r.status_code, r.text)
                assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers
        status, fields, _ = curl(g.url, "POST", "/predict/iris", json.dumps({"X": [1, 2, 3, 4]}),
                                 ["Content-Type: application/json"])
        assert status == 401
        # the open routes need no key
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json",
                     "/docs"):
            assert http.get(path).status_code == 200, path
        # good keys work, within the broker's ACL of their NAME
        r = http.post("/predict/linear", json={"X": [0.5]}, headers=alice)
        assert r.status_code == 200, r.text
        r = http.post("/predict/iris", json={"X": IRIS_ROWS}, headers=bob)
        assert r.status_code == 200 and len(r.json()["y_pred"]) == 5, r.text
        assert http.get("/v2/models/iris", headers=bob).status_code == 200
        status, _, _ = curl(g.url, "POST", "/predict/iris", json.dumps({"X": IRIS_ROWS[0]}),
                            ["Content-Type: application/json",
                             "Authorization: Bearer bob-token-0123456789"])
        assert status == 200
        for path, body in (("/predict/linear", {"X": [0.5]}),
                           ("/v2/models/linear/infer", {"inputs": [v2_input([[0.5]])]})):
            r = http.post(path, json=body, headers=bob)
            assert r.status_code == 403 and r.json()["error"], (path, r.status_code, r.text)
        r = http.post("/predict/linear", json={"X": [0.5]}, headers=alice)
        assert r.status_code == 200, r.text
        g.alive()
        wait_for("bob's refusal in the broker's log",
                 lambda: "job refused key=bob model=linear" in c.logs())


def teardown_module():
    shutil.rmtree(TMP, ignore_errors=True)
