"""Integration: neural networks from PyTorch through ONNX, served.  The MLP
and the CNN trained on scikit-learn's digits and a BERT-style encoder (4
layers, hidden 256, 4 heads, seeded random weights) are exported with
torch.onnx.export, translated by scripts/amaas-export, and served by two
workers; their answers are compared with PyTorch's own on the same inputs
(within 1e-4 of the output's largest magnitude, labels equal).  Requests of
several sequence lengths are pipelined together, so that the workers batch
the jobs of one length and keep the others for their own batches.  Bad
requests (a missing mask, a token id outside the vocabulary, a sequence
longer than the position table, a wrong rank or datatype) are answered
INVALID_ARGUMENT with a message that says why, and the workers go on serving.
Run: ctest -R integration_onnx, or pytest --build-dir BUILD tests/integration/test_onnx.py"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fidelity"))
from harness import Cluster, build_dir  # noqa: E402
import pyamaas  # noqa: E402

torch = pytest.importorskip("torch")
import zoo_onnx  # noqa: E402

BUILD = build_dir()
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"
RTOL = 1e-4
VOCAB = 1000


def close(got, want):
    """max |got - want| <= RTOL * max |want|, shapes equal."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = float(np.max(np.abs(want))) or 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    assert err <= RTOL * scale, "max error %.3g, %.3g of the largest magnitude" % (err, err / scale)


def export(module, name, folder, opset):
    onnx_path = os.path.join(folder, name + ".onnx")
    zoo_onnx.export(module, onnx_path, opset=opset)
    r = subprocess.run([PY, os.path.join(ROOT, "scripts", "amaas-export"), onnx_path,
                        os.path.join(folder, "models", name + ".amm")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def served():
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="amaas-onnx-")
    os.makedirs(os.path.join(tmp, "models"))
    nets = {"mlp": zoo_onnx.train_mlp(seed=0), "cnn": zoo_onnx.train_cnn(seed=0),
            "encoder": zoo_onnx.make_encoder(layers=4, hidden=256, heads=4, vocab=VOCAB,
                                             max_positions=128, seed=0)}
    export(nets["mlp"], "mlp", tmp, 13)
    export(nets["cnn"], "cnn", tmp, 11)
    export(nets["encoder"], "encoder", tmp, 14)
    with Cluster(BUILD, os.path.join(tmp, "models"), workers=2,
                 worker_args=["--batch-delay-us", "2000"]) as cluster:
        cluster.wait_workers(2, model="encoder", timeout=120)
        yield cluster, nets


def torch_outputs(module, *inputs):
    with torch.inference_mode():
        return [o.numpy() for o in module(*[torch.from_numpy(x) for x in inputs])]


def test_mlp_and_cnn_match_pytorch(served):
    cluster, nets = served
    _, x, _, y = zoo_onnx.digits()
    x = x[:200]
    with pyamaas.Client(cluster.frontend, timeout_ms=60000) as c:
        out = c.predict("mlp", {"input": x})
        proba, label = torch_outputs(nets["mlp"], x)
        close(out["probabilities"], proba)
        assert np.array_equal(out["label"], label)
        images = x.reshape(-1, 1, 8, 8)
        out = c.predict("cnn", {"input": images})
        proba, label = torch_outputs(nets["cnn"], images)
        close(out["probabilities"], proba)
        assert np.array_equal(out["label"], label)
        assert np.mean(out["label"] == y[:200]) > 0.85  # a trained network, not noise


def test_encoder_lengths_batched_and_pipelined(served):
    cluster, nets = served
    jobs = []
    with pyamaas.Client(cluster.frontend, timeout_ms=120000) as c:
        # Sequence lengths interleaved: jobs of one length batch together
        for i, lens in enumerate([[128], [7, 3], [64], [7, 5], [1], [128, 100, 17], [64, 2]] * 2):
            ids, mask = zoo_onnx.encoder_inputs(len(lens), lens, VOCAB, seed=i)
            jobs.append((c.send("encoder", {"input_ids": ids, "attention_mask": mask}), ids, mask))
        for job, ids, mask in jobs:
            out, _ = c.recv(job)
            hidden, logits, label = torch_outputs(nets["encoder"], ids, mask)
            close(out["hidden"], hidden)
            close(out["logits"], logits)
            assert np.array_equal(out["label"], label)
        # INT32 ids convert; one output asked for
        ids, mask = zoo_onnx.encoder_inputs(2, [9, 4], VOCAB, seed=99)
        out = c.predict("encoder", {"input_ids": ids.astype(np.int32),
                                    "attention_mask": mask.astype(np.int32)}, outputs=["logits"])
        assert list(out) == ["logits"]
        close(out["logits"], torch_outputs(nets["encoder"], ids, mask)[1])


def bad(c, inputs, *words):
    with pytest.raises(pyamaas.AmaasError) as e:
        c.predict("encoder", inputs)
    assert e.value.name == "INVALID_ARGUMENT", e.value
    for w in words:
        assert w in str(e.value), e.value


def test_bad_requests_are_refused_and_service_goes_on(served):
    cluster, nets = served
    ids, mask = zoo_onnx.encoder_inputs(2, [5, 3], VOCAB, seed=1)
    with pyamaas.Client(cluster.frontend, timeout_ms=60000) as c:
        bad(c, {"input_ids": ids}, "attention_mask")
        bad(c, {"input_ids": ids, "mask": mask}, "attention_mask")
        hostile = ids.copy()
        hostile[1, 2] = VOCAB + 5
        bad(c, {"input_ids": hostile, "attention_mask": mask}, "input_ids", str(VOCAB + 5))
        hostile[1, 2] = -(2 ** 40)
        bad(c, {"input_ids": hostile, "attention_mask": mask}, "input_ids")
        long_ids, long_mask = zoo_onnx.encoder_inputs(1, [129], VOCAB, seed=2)
        bad(c, {"input_ids": long_ids, "attention_mask": long_mask}, "gather")
        bad(c, {"input_ids": ids[:, :, None], "attention_mask": mask}, "input_ids", "shape")
        bad(c, {"input_ids": ids.astype(np.float32), "attention_mask": mask}, "datatype")
        bad(c, {"input_ids": ids, "attention_mask": mask[:, :2]}, "sequence")
        # ... and the same workers still answer right
        out = c.predict("encoder", {"input_ids": ids, "attention_mask": mask})
        close(out["logits"], torch_outputs(nets["encoder"], ids, mask)[1])
    for w in cluster.workers:
        assert w.poll() is None, "a worker exited"
