"""test_exporter_onnx - scripts/amaas-export on ONNX files against PyTorch.

The test models of tests/fidelity/zoo_onnx.py (an MLP and a CNN trained on
the digits, a 4-layer BERT-style encoder with random weights) and a few small
modules are exported by torch.onnx.export at opsets 11, 13 and 17, then by
amaas-export (a subprocess, as a user runs it) to graph models.  Each file is
checked against the format by tests/amm_ref_graph.py and run by it in numpy:
its outputs must be PyTorch's own within 1e-4 relative (max |a - b| <=
1e-4 * max |b| per output tensor), its labels equal.  The fusions are checked
by counting nodes in the files; the refusals by exit status 2 and one line
on stderr.  No C code is involved.

    ctest -R exporter_onnx, or /usr/bin/python3 -m pytest tests/test_exporter_onnx.py
"""

import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "fidelity"))

import msgpack  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnx.numpy_helper  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import amm_ref_graph  # noqa: E402
import zoo_onnx  # noqa: E402

EXPORTER = os.path.join(os.path.dirname(HERE), "scripts", "amaas-export")
PYTHON = "/usr/bin/python3"
OPSETS = (11, 13, 17)
RTOL = 1e-4


def export(src, dst, *args):
    return subprocess.run([PYTHON, EXPORTER, src, dst, *args], capture_output=True, text=True,
                          timeout=300)


def to_amm(tmp, module, name, opset):
    """module -> ONNX (zoo_onnx.export) -> .amm; returns the checked model."""
    src, dst = str(tmp / ("%s%d.onnx" % (name, opset))), str(tmp / ("%s%d.amm" % (name, opset)))
    zoo_onnx.export(module, src, opset)
    r = export(src, dst)
    assert r.returncode == 0, r.stderr
    return amm_ref_graph.load(dst), dst


def compare(ref, got):
    assert list(got) == list(ref), (list(got), list(ref))
    for k, b in ref.items():
        a = got[k]
        assert a.shape == b.shape, (k, a.shape, b.shape)
        if b.dtype.kind in "iu":
            assert a.dtype == np.int64 and np.array_equal(a, b), (k, a, b)
        else:
            err = float(np.max(np.abs(a.astype(np.float64) - b)))
            assert err <= RTOL * float(np.max(np.abs(b))), (k, err, float(np.max(np.abs(b))))


def ops(model):
    counts = {}
    for n in model["nodes"]:
        counts[n["op"]] = counts.get(n["op"], 0) + 1
    return counts


def torch_out(module, *args):
    with torch.no_grad():
        return [t.numpy() for t in module(*(torch.from_numpy(a) for a in args))]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def digits():
    return zoo_onnx.digits()


@pytest.fixture(scope="module")
def mlp(tmp):
    m = zoo_onnx.train_mlp()
    return m, {op: to_amm(tmp, m, "mlp", op) for op in OPSETS}


@pytest.fixture(scope="module")
def cnn(tmp):
    m = zoo_onnx.train_cnn()
    return m, {op: to_amm(tmp, m, "cnn", op) for op in OPSETS}


@pytest.fixture(scope="module")
def encoder(tmp):
    m = zoo_onnx.make_encoder(layers=4, hidden=256, heads=4)
    return m, {op: to_amm(tmp, m, "enc", op) for op in OPSETS}


#  -- the models of the zoo

def test_zoo_accuracy(mlp, cnn, digits):
    _, X_test, _, y_test = digits
    assert np.mean(torch_out(mlp[0], X_test)[1] == y_test) > 0.9
    assert np.mean(torch_out(cnn[0], X_test.reshape(-1, 1, 8, 8))[1] == y_test) > 0.9


@pytest.mark.parametrize("opset", OPSETS)
def test_mlp(mlp, digits, opset):
    module, files = mlp
    model, _ = files[opset]
    X = digits[1]
    for x in (X[:1], X):
        p, label = torch_out(module, x)
        compare({"probabilities": p, "label": label}, amm_ref_graph.run(model, {"input": x}))
    #  three gemm nodes, the ReLUs fused into the first two
    assert ops(model) == {"gemm": 3, "softmax": 1, "argmax": 1}
    acts = [n.get("activation", "none") for n in model["nodes"] if n["op"] == "gemm"]
    assert acts == ["relu", "relu", "none"]
    assert [(n, d, s) for n, d, s in model["inputs"]] == [("input", "FP32", ["batch", 64])]
    assert model["outputs"] == [("probabilities", "FP32", ["batch", 10]),
                                ("label", "INT64", ["batch"])]


@pytest.mark.parametrize("opset", OPSETS)
def test_cnn(cnn, digits, opset):
    module, files = cnn
    model, _ = files[opset]
    X = digits[1].reshape(-1, 1, 8, 8)
    for x in (X[:1], X[:200]):
        p, label = torch_out(module, x)
        compare({"probabilities": p, "label": label}, amm_ref_graph.run(model, {"input": x}))
    counts = ops(model)
    assert counts["conv"] == 2 and "relu" not in counts and "batch_norm" not in counts
    assert [n.get("activation") for n in model["nodes"] if n["op"] == "conv"] == ["relu"] * 2


@pytest.mark.parametrize("opset", OPSETS)
def test_encoder(encoder, opset):
    module, files = encoder
    model, _ = files[opset]
    for lens in ([128], [9], [128, 5, 64, 17], [3, 30, 1]):
        ids, mask = zoo_onnx.encoder_inputs(len(lens), lens, 1000, seed=len(lens))
        h, logits, label = torch_out(module, ids, mask)
        got = amm_ref_graph.run(model, {"input_ids": ids, "attention_mask": mask})
        compare({"hidden": h, "logits": logits, "label": label}, got)
    counts = ops(model)
    #  Q, K, V, output, FFN in, FFN out per layer; pooler; classifier
    assert counts["gemm"] == 6 * 4 + 2
    assert counts["layer_norm"] == 2 * 4 + 1
    for gone in ("erf", "pow", "sqrt", "reduce_mean", "gelu", "tanh"):
        assert gone not in counts, gone
    acts = [n.get("activation", "none") for n in model["nodes"] if n["op"] == "gemm"]
    assert acts.count("gelu") == 4 and acts.count("tanh") == 1
    assert [i[:2] for i in model["inputs"]] == [("input_ids", "INT64"),
                                               ("attention_mask", "INT64")]
    assert model["inputs"][0][2] == ["batch", "sequence"]
    assert model["outputs"][0] == ("hidden", "FP32", ["batch", "sequence", 256])


def test_encoder_where_mask(tmp):
    """The Equal/Where form of the attention mask."""
    module = zoo_onnx.make_encoder(layers=1, hidden=64, heads=2, mask="where", seed=3)
    model, _ = to_amm(tmp, module, "encw", 13)
    assert {"equal", "where"} <= set(ops(model))
    ids, mask = zoo_onnx.encoder_inputs(3, [4, 11, 2], 1000, seed=5)
    h, logits, label = torch_out(module, ids, mask)
    compare({"hidden": h, "logits": logits, "label": label},
            amm_ref_graph.run(model, {"input_ids": ids, "attention_mask": mask}))


def test_constants_aligned(encoder):
    _, files = encoder
    data = open(files[13][1], "rb").read()
    offsets = amm_ref_graph.bin_offsets(data)
    assert len(offsets) == len(files[13][0]["constants"]) > 0
    assert all(off % 64 == 0 for off in offsets.values())
    raw = msgpack.unpackb(data, raw=False)             # plain msgpack decodes it
    assert raw["format_version"] == 2 and raw["datatype"] == "FP32"


def test_position_table_bound(encoder):
    """A sequence longer than the position table is a run error, not a crash."""
    model = encoder[1][13][0]
    ids, mask = zoo_onnx.encoder_inputs(1, [129], 1000)
    with pytest.raises(amm_ref_graph.RunError, match="gather"):
        amm_ref_graph.run(model, {"input_ids": ids, "attention_mask": mask})


#  -- more ops, and the fusions one by one

class _Misc(nn.Module):
    """Pools with padding and ceil_mode, LeakyReLU, sigmoid, split, slices,
    concat, squeeze, expand, softmax over a middle axis, log-softmax, ArgMax,
    Equal, Where."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=(1, 2), dilation=1, groups=2)
        self.lin = nn.Linear(12, 6)

    def forward(self, x):                                  # x [b, 2, 9, 7]
        y = F.leaky_relu(self.conv(x), 0.2)                # [b, 4, 5, 5]
        a = F.avg_pool2d(y, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        m = F.max_pool2d(y, 2, stride=2, ceil_mode=True)   # [b, 4, 3, 3]
        u, v = torch.chunk(a + m, 2, dim=1)                # Split
        z = torch.cat([torch.sigmoid(u), v[:, :, 1:, :1].expand(-1, -1, -1, 3)[:, :, :1]], 2)
        z = z.flatten(1)                                   # [b, 2 * 4 * 3] = 24
        w = self.lin(z[:, :12] - z[:, 12:].pow(2)) / 3.0
        s = F.softmax(w.reshape(-1, 2, 3), dim=1)           # a middle axis
        first = torch.argmax(s, 1, keepdim=True) == 0       # ArgMax, Equal
        out = torch.where(first, F.log_softmax(w, -1).reshape(-1, 2, 3), s)
        first_row = out[:, 0:1, :].flatten(1).unsqueeze(2).squeeze(2)    # Unsqueeze, Squeeze
        return torch.cat([out.flatten(1), first_row], 1), torch.argmax(w, 1)


class _Gelus(nn.Module):
    """The erf GELU pattern alone, in torch's order and in the hand-written one."""

    def forward(self, x):
        hand = x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
        return F.gelu(x) - 0.25 * hand, torch.argmax(x, -1)


def _export_module(tmp, module, args, name, opset, inputs, outputs, dyn):
    src, dst = str(tmp / ("%s%d.onnx" % (name, opset))), str(tmp / ("%s%d.amm" % (name, opset)))
    with torch.no_grad():
        torch.onnx.export(module, args, src, opset_version=opset, input_names=inputs,
                          output_names=outputs, dynamic_axes=dyn)
    r = export(src, dst)
    assert r.returncode == 0, r.stderr
    return amm_ref_graph.load(dst)


@pytest.mark.parametrize("opset", OPSETS)
def test_misc_ops(tmp, opset):
    module = _Misc().eval()
    x = np.random.default_rng(opset).normal(size=(3, 2, 9, 7)).astype(np.float32)
    model = _export_module(tmp, module, (torch.from_numpy(x),), "misc", opset, ["x"],
                           ["out", "label"], {"x": {0: "batch"}, "out": {0: "batch"},
                                              "label": {0: "batch"}})
    out, label = torch_out(module, x)
    compare({"out": out, "label": label}, amm_ref_graph.run(model, {"x": x}))
    for x1 in (x[:1], np.concatenate([x, -x])):
        out, label = torch_out(module, x1)
        compare({"out": out, "label": label}, amm_ref_graph.run(model, {"x": x1}))


@pytest.mark.parametrize("opset", (11, 17))
def test_gelu_pattern_alone(tmp, opset):
    model = _export_module(tmp, _Gelus(), (torch.zeros(2, 5),), "gelus", opset, ["x"],
                           ["y", "label"], {"x": {0: "batch"}, "y": {0: "batch"},
                                            "label": {0: "batch"}})
    counts = ops(model)
    assert counts.get("gelu") == 2 and "erf" not in counts, counts
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32) * 3
    y, label = torch_out(_Gelus(), x)
    compare({"y": y, "label": label}, amm_ref_graph.run(model, {"x": x}))


def _onnx_file(tmp, name, nodes, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    path = str(tmp / (name + ".onnx"))
    onnx.save(m, path)
    return path


def _tensor(name, arr):
    return onnx.numpy_helper.from_array(np.asarray(arr), name)


def test_conv_batchnorm_fused(tmp):
    """Conv, then BatchNormalization, then Relu: one conv node, folded weights."""
    rng = np.random.default_rng(3)
    W = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    B = rng.normal(size=4).astype(np.float32)
    sc, bi = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    mu, var = rng.normal(size=4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], "conv", pads=[1, 1, 1, 1],
                              strides=[2, 1]),
             helper.make_node("BatchNormalization", ["c", "sc", "bi", "mu", "var"], ["n"], "bn",
                              epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"], "relu")]
    src = _onnx_file(tmp, "convbn", nodes,
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 5])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3, 5])],
                     [_tensor(k, v) for k, v in (("W", W), ("B", B), ("sc", sc), ("bi", bi),
                                                 ("mu", mu), ("var", var))])
    r = export(src, str(tmp / "convbn.amm"))
    assert r.returncode == 0, r.stderr
    model = amm_ref_graph.load(str(tmp / "convbn.amm"))
    assert ops(model) == {"conv": 1} and model["nodes"][0]["activation"] == "relu"
    x = rng.normal(size=(2, 3, 6, 5)).astype(np.float32)
    with torch.no_grad():
        t = F.conv2d(torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(B), (2, 1), 1)
        t = F.relu(F.batch_norm(t, torch.from_numpy(mu), torch.from_numpy(var),
                                torch.from_numpy(sc), torch.from_numpy(bi), eps=1e-3))
    compare({"y": t.numpy()}, amm_ref_graph.run(model, {"x": x}))


def test_transpose_gemm_fusions(tmp):
    """A Transpose of the last two axes feeding MatMul becomes trans_b; Gemm with
    transB, alpha and beta folds them into its weights; MatMul + Add of a
    constant bias + Tanh -> one gemm with activation tanh."""
    rng = np.random.default_rng(4)
    Wg = rng.normal(size=(6, 4)).astype(np.float32)     # transB: [N, K]
    C = rng.normal(size=6).astype(np.float32)
    Wm = rng.normal(size=(6, 3)).astype(np.float32)
    bm = rng.normal(size=3).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["b"], ["bt"], "t", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["a", "bt"], ["ab"], "mm"),
             helper.make_node("Gemm", ["x", "Wg", "C"], ["g"], "gemm", transB=1, alpha=0.5,
                              beta=2.0),
             helper.make_node("MatMul", ["g", "Wm"], ["gm"], "mm2"),
             helper.make_node("Add", ["bm", "gm"], ["y"], "bias"),
             helper.make_node("Tanh", ["y"], ["yt"], "tanh")]
    src = _onnx_file(tmp, "fusions", nodes,
                     [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3, 4]),
                      helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 5, 4]),
                      helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                     [helper.make_tensor_value_info("ab", TensorProto.FLOAT, ["N", 3, 5]),
                      helper.make_tensor_value_info("yt", TensorProto.FLOAT, ["N", 3])],
                     [_tensor("Wg", Wg), _tensor("C", C), _tensor("Wm", Wm), _tensor("bm", bm)])
    r = export(src, str(tmp / "fusions.amm"))
    assert r.returncode == 0, r.stderr
    model = amm_ref_graph.load(str(tmp / "fusions.amm"))
    counts = ops(model)
    assert counts == {"matmul": 1, "gemm": 2}, counts
    mm = next(n for n in model["nodes"] if n["op"] == "matmul")
    assert mm.get("trans_b") is True and not mm.get("trans_a")
    assert [n.get("activation", "none") for n in model["nodes"] if n["op"] == "gemm"] == \
        ["none", "tanh"]
    a = rng.normal(size=(3, 3, 4)).astype(np.float32)
    b = rng.normal(size=(3, 5, 4)).astype(np.float32)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    g = 0.5 * x.astype(np.float64) @ Wg.T + 2.0 * C
    want = {"ab": a @ np.swapaxes(b, 1, 2), "yt": np.tanh(g @ Wm + bm)}
    compare(want, amm_ref_graph.run(model, {"a": a, "b": b, "x": x}))


#  -- refusals

def _refused(tmp, src, *args):
    r = export(src, str(tmp / "refused.amm"), *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert not os.path.exists(str(tmp / "refused.amm"))
    return lines[0]


def test_refuse_unsupported_op(tmp):
    nodes = [helper.make_node("Relu", ["x"], ["r"], "relu"),
             helper.make_node("TopK", ["r", "k"], ["v", "i"], "my_topk", axis=-1)]
    src = _onnx_file(tmp, "topk", nodes,
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                     [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["N", 3])],
                     [_tensor("k", np.array([3], np.int64))])
    line = _refused(tmp, src)
    assert "node 'my_topk' (TopK) is not supported; amaas takes: Gemm, MatMul" in line
    nodes = [helper.make_node("Einsum", ["x", "x"], ["y"], "ein", equation="ij,ij->i")]
    src = _onnx_file(tmp, "einsum", nodes,
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
    assert "node 'ein' (Einsum) is not supported" in _refused(tmp, src)


@pytest.mark.parametrize("opset", (10, 18))
def test_refuse_opset(tmp, opset):
    nodes = [helper.make_node("Relu", ["x"], ["y"], "relu")]
    src = _onnx_file(tmp, "opset%d" % opset, nodes,
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
                     opset=opset)
    line = _refused(tmp, src)
    assert "opset %d" % opset in line and "opsets 11 to 17" in line


def test_refuse_fp64(tmp, mlp):
    src = str(tmp / "mlp13.onnx")
    line = _refused(tmp, src, "--dtype", "FP64")
    assert "FP64" in line and "FP32" in line
    r = export(src, str(tmp / "fp32.amm"), "--dtype", "fp32", "--name", "digits",
               "--version", "2.0")
    assert r.returncode == 0, r.stderr
    model = amm_ref_graph.load(str(tmp / "fp32.amm"))
    assert (model["name"], model["version"]) == ("digits", "2.0")


def test_refuse_bad_files(tmp):
    bad = tmp / "garbage.onnx"
    bad.write_bytes(b"\x08\x07 this is not protobuf \xff\xff")
    r = export(str(bad), str(tmp / "garbage.amm"))
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = export(str(tmp / "missing.onnx"), str(tmp / "missing.amm"))
    assert r.returncode == 1 and "no such file" in r.stderr


def test_help_mentions_onnx():
    r = subprocess.run([PYTHON, EXPORTER, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ONNX" in r.stdout and "LayerNormalization" in r.stdout


def test_external_data_only_from_the_models_folder(tmp):
    """Weights kept beside the file (as ONNX does over 2 GB) are read from its
    folder; a location outside it (absolute, or climbing out with '..') is
    refused, so that a hostile file cannot turn another file into weights."""
    from onnx import external_data_helper as ext
    folder = tmp / "external"
    folder.mkdir()
    w = np.arange(32, dtype=np.float32).reshape(8, 4) / 10
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], "mm")]

    def model():
        graph = helper.make_graph(nodes, "ext", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, ["N", 8])], [helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, ["N", 4])], initializer=[_tensor("w", w)])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        return m

    m = model()
    ext.convert_model_to_external_data(m, all_tensors_to_one_file=True, location="w.bin",
                                       size_threshold=0)
    onnx.save(m, str(folder / "ext.onnx"))
    assert (folder / "w.bin").stat().st_size == w.nbytes
    r = export(str(folder / "ext.onnx"), str(tmp / "ext.amm"))
    assert r.returncode == 0, r.stderr
    x = np.ones((2, 8), np.float32)
    got = amm_ref_graph.run(str(tmp / "ext.amm"), {"x": x})["y"]
    assert np.allclose(got, x @ w, rtol=1e-6)
    secret = tmp / "secret.bin"
    secret.write_bytes(np.full(32, 7, np.float32).tobytes())
    for location in ("../secret.bin", str(secret)):
        m = model()
        ext.convert_model_to_external_data(m, all_tensors_to_one_file=True, location="w.bin",
                                           size_threshold=0)
        for t in m.graph.initializer:
            for entry in t.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(m, str(folder / "hostile.onnx"), save_as_external_data=False)
        line = _refused(tmp, str(folder / "hostile.onnx"))
        assert "not a file in the model's folder" in line and "'w'" in line, line
