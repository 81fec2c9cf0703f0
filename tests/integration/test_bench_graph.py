"""The benchmark tools of graph models (scripts/bench rows l..p) on a small
encoder: bench/graph_models.py, model_compute's graph mode,
bench/torch_compute.py, bench/graph_load.py against a cluster,
bench/flask_torch_app.py, and scripts/bench's /proc/PID/smaps reading.
No figure is asserted: only that each tool measures what it says it does
(the shapes it ran, the jobs answered, the outputs asked for)."""
import importlib.machinery
import json
import mmap
import os
import subprocess
import sys
import types

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fidelity"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import harness  # noqa: E402
import pyamaas  # noqa: E402

PY = "/usr/bin/python3"
SMALL = dict(layers=1, hidden=32, heads=2, vocab=50, max_positions=16, classes=2)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A folder with a small encoder built by graph_models.py's make()."""
    import graph_models
    folder = str(tmp_path_factory.mktemp("graph"))
    saved = graph_models.ENCODER
    graph_models.ENCODER = SMALL
    try:
        assert graph_models.make(folder, "encoder") == 0
    finally:
        graph_models.ENCODER = saved
    return folder


def run_json(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_spec_follows_the_file(models):
    spec = json.load(open(os.path.join(models, "encoder.json")))
    assert [io["name"] for io in spec["inputs"]] == ["input_ids", "attention_mask"]
    assert [io["datatype"] for io in spec["inputs"]] == ["INT64", "INT64"]
    assert all(io["shape"][0] == "batch" and len(io["shape"]) == 2 for io in spec["inputs"])
    assert spec["inputs"][0]["bound"] == SMALL["vocab"]
    assert spec["reply"] == ["logits"]
    for ext in (".pt", ".onnx", ".amm"):
        assert os.path.getsize(os.path.join(models, "encoder" + ext)) > 0


def test_generated_inputs():
    import torch_compute
    spec = {"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": ["batch", "seq"],
                        "bound": 7},
                       {"name": "Attention_Mask", "datatype": "INT64", "shape": ["batch", "seq"],
                        "bound": 0},
                       {"name": "x", "datatype": "FP32", "shape": ["batch", 3]}]}
    ids, mask, x = torch_compute.make_inputs(spec, 4, {"seq": 9})
    assert ids.shape == (4, 9) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < 7 and len(np.unique(ids)) > 1
    assert mask.shape == (4, 9) and (mask == 1).all()
    assert x.shape == (4, 3) and x.dtype == np.float32 and (np.abs(x) <= 1).all()
    with pytest.raises(ValueError, match="seq"):
        torch_compute.make_inputs(spec, 4, {})


def model_compute(models, *args):
    return subprocess.run([os.path.join(harness.build_dir(), "bench", "model_compute"),
                           os.path.join(models, "encoder.amm")] + list(args),
                          capture_output=True, text=True, timeout=300)


def test_model_compute_graph(models):
    r = model_compute(models, "--rows", "3", "--dim", "sequence=16", "--repeats", "2",
                      "--min-time", "0", "--warmup", "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "encoder" and out["rows"] == 3
    assert out["shapes"] == [[3, 16], [3, 16]]
    assert out["runs"] == 3  # one warm-up, then one run per repeat (--min-time 0)
    assert out["batch_us"] > 0 and out["rows_per_s"] > 0 and out["workspace_bytes"] > 0


def test_model_compute_graph_refusals(models):
    r = model_compute(models, "--rows", "2")
    assert r.returncode == 1 and "--dim sequence=" in r.stderr
    r = model_compute(models, "--rows", "2", "--dim", "sequence=17")  # past 16 positions
    assert r.returncode == 1 and r.stderr.startswith("model_compute: ")
    r = model_compute(models, "--dim", "sequence")
    assert r.returncode == 2 and "NAME=N" in r.stderr
    r = model_compute(models, os.path.join(models, "encoder.json"))
    assert r.returncode == 2 and "takes no input file" in r.stderr


def test_torch_compute(models):
    out = run_json([PY, os.path.join(ROOT, "bench", "torch_compute.py"),
                    os.path.join(models, "encoder.pt"), "--rows", "2", "--dim", "sequence=16",
                    "--repeats", "1", "--min-time", "0", "--warmup", "0"])
    assert out["rows"] == 2 and out["shapes"] == [[2, 16], [2, 16]]
    assert out["framework"].endswith("1 thread") and out["rows_per_s"] > 0


def test_graph_load(models):
    with harness.Cluster(harness.build_dir(), models, workers=1) as c:
        c.wait_workers(1, model="encoder")
        out = run_json([PY, os.path.join(ROOT, "bench", "graph_load.py"), "--broker", c.frontend,
                        "--model", "encoder", "--spec", os.path.join(models, "encoder.json"),
                        "--dim", "sequence=16", "--concurrency", "1,8", "--duration", "1",
                        "--warmup", "0.2", "--outputs", "logits"])
        assert [o["concurrency"] for o in out] == [1, 8]
        for o in out:
            assert o["jobs"] > 0 and o["ok"] == o["jobs"] and o["errors"] == {}
            assert o["rows_per_s"] == o["jobs_per_s"] > 0
            assert o["batch_jobs_mean"] >= 1
        # What it measures: the worker sends back the outputs asked for only
        with pyamaas.Client(c.frontend, timeout_ms=30000) as client:
            ids = np.arange(16, dtype=np.int64)[None] % SMALL["vocab"]
            got = client.predict("encoder", {"input_ids": ids,
                                             "attention_mask": np.ones_like(ids)},
                                 outputs=["logits"])
        assert list(got) == ["logits"] and got["logits"].shape == (1, SMALL["classes"])


def test_flask_torch_app(models, monkeypatch):
    import torch
    monkeypatch.setenv("AMAAS_BENCH_MODELS", models)
    sys.modules.pop("flask_torch_app", None)
    import flask_torch_app
    client = flask_torch_app.app.test_client()
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    r = client.post("/predict/encoder", json={"input_ids": ids, "attention_mask": [1] * 8})
    assert r.status_code == 200
    module = torch.load(os.path.join(models, "encoder.pt"))
    with torch.inference_mode():
        _, logits, _ = module(torch.tensor([ids]), torch.ones(1, 8, dtype=torch.int64))
    assert list(r.get_json()) == ["logits"]
    np.testing.assert_allclose(r.get_json()["logits"], logits.numpy(), rtol=1e-6)
    assert client.post("/predict/encoder", json={"input_ids": ids}).status_code == 400
    assert client.post("/predict/nothing", json={}).status_code == 404


def test_smaps_counts_a_mapping(tmp_path):
    loader = importlib.machinery.SourceFileLoader("bench_script",
                                                  os.path.join(ROOT, "scripts", "bench"))
    bench = types.ModuleType(loader.name)
    bench.__file__ = loader.path
    loader.exec_module(bench)
    path = tmp_path / "weights.bin"
    size = 64 * 4096
    path.write_bytes(b"\x01" * size)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert sum(m[i] for i in range(0, size, 4096)) == size // 4096  # every page touched
        total, mapped = bench.smaps(os.getpid(), str(path))
        assert mapped["Rss"] == size // 1024
        assert 0 < mapped["Pss"] <= mapped["Rss"]
        assert total["Rss"] >= mapped["Rss"] and total["Pss"] >= mapped["Pss"]
    _, gone = bench.smaps(os.getpid(), str(path))
    assert gone == {"Rss": 0, "Pss": 0}
