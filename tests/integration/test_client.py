"""Integration: the C client library (tests/test_client.c, linked against the
shared libamaas) against a real broker and two workers; and the models list
(`amaas models --json`, pyamaas's models()) with each model's input,
datatype and outputs as its model file declares them.
Run: ctest -R integration_client, or pytest --build-dir BUILD tests/integration/test_client.py"""
import os
import json
import subprocess
import sys

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import pyamaas  # noqa: E402
from harness import Cluster, build_dir  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")


def test_libamaas():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        env = dict(os.environ, AMAAS_TEST_FRONTEND=c.frontend)
        r = subprocess.run([os.path.join(BUILD, "tests", "test_client")], env=env,
                           capture_output=True, text=True, timeout=300)
        sys.stdout.write(r.stdout + r.stderr)
        assert r.returncode == 0, "test_client failed"



def _declared(model_file):
    """input, datatype, inputs and outputs of a model file's header, as the
    models list reports them (an output of shape [-1, k] has width k, [-1]
    0; the one input is [-1, width] of the model's datatype)."""
    with open(os.path.join(EXAMPLES, model_file), "rb") as f:
        h = msgpack.unpackb(f.read(), raw=False)
    outputs = [{"name": o["name"], "datatype": o["datatype"],
                "width": o["shape"][1] if len(o["shape"]) == 2 else 0, "shape": o["shape"]}
               for o in h["outputs"]]
    inputs = [{"name": h["input"]["name"], "datatype": h["datatype"],
               "shape": [-1, h["input"]["width"]]}]
    return {"input": h["input"]["name"], "datatype": h["datatype"], "outputs": outputs,
            "width": h["input"]["width"], "inputs": inputs}


def test_models_metadata():
    want = {"iris": _declared("iris.amm"), "linear": _declared("linear.amm")}
    # what the example models declare (examples/train_examples.py)
    assert want["iris"]["outputs"] == [
        {"name": "probabilities", "datatype": "FP64", "width": 3, "shape": [-1, 3]},
        {"name": "label", "datatype": "INT64", "width": 0, "shape": [-1]}], want
    assert want["linear"]["outputs"] == [{"name": "predictions", "datatype": "FP64",
                                          "width": 0, "shape": [-1]}], want
    assert want["iris"]["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        r = subprocess.run([os.path.join(BUILD, "amaas"), "--broker", c.frontend, "models",
                            "--json"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        assert [m["name"] for m in listed] == ["iris", "linear"], listed
        with pyamaas.Client(c.frontend) as client:
            from_protocol = client.models()
        for models in (listed, from_protocol):
            for m in models:
                got = {k: m[k] for k in ("input", "datatype", "outputs", "width", "inputs")}
                assert got == want[m["name"]], (m, want[m["name"]])
