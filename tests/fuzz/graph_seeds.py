#!/usr/bin/python3
"""Writes small valid graph models (format_version 2) into the fuzz_model seed
corpus (tests/fuzz/corpus/model/graph_*.amm): constants' data aligned at 64
bytes after a pad, as the exporter writes them.

Usage: /usr/bin/python3 tests/fuzz/graph_seeds.py
"""
import os
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
packer = msgpack.Packer(use_bin_type=True)


def pack(out, value):
    """Appends value to out; a "data" bin in a map gets a pad before it."""
    if isinstance(value, dict):
        items = list(value.items())
        pads = sum(1 for k, v in items if k == "data" and isinstance(v, bytes))
        out += packer.pack_map_header(len(items) + pads)
        for key, item in items:
            if key == "data" and isinstance(item, bytes):
                header = 2 if len(item) < 256 else 3 if len(item) < 65536 else 5
                at = len(out) + 4 + 2 + 5 + header
                out += packer.pack("pad") + packer.pack(bytes((64 - at % 64) % 64))
            out += packer.pack(key)
            pack(out, item)
    elif isinstance(value, list):
        out += packer.pack_array_header(len(value))
        for item in value:
            pack(out, item)
    else:
        out += packer.pack(value)


def floats(*values):
    return struct.pack("<%df" % len(values), *values)


def ints(*values):
    return struct.pack("<%dq" % len(values), *values)


def model(name, inputs, outputs, constants, nodes):
    top = {"format": "amaas-model", "format_version": 2, "name": name, "version": "1",
           "datatype": "FP32", "source": "graph_seeds.py", "inputs": inputs,
           "outputs": outputs, "constants": constants, "nodes": nodes}
    out = bytearray()
    pack(out, top)
    path = os.path.join(HERE, "corpus", "model", name + ".amm")
    with open(path, "wb") as f:
        f.write(out)


def io(name, dtype, shape):
    return {"name": name, "datatype": dtype, "shape": shape}


def const(name, dtype, shape, data):
    return {"name": name, "datatype": dtype, "shape": shape, "data": data}


def node(op, inputs, outputs, **attrs):
    return dict(op=op, inputs=inputs, outputs=outputs, **attrs)


# An MLP: gemm relu gemm softmax argmax
model("graph_mlp", [io("x", "FP32", ["batch", 3])],
      [io("p", "FP32", ["batch", 2]), io("label", "INT64", ["batch"])],
      [const("w1", "FP32", [3, 4], floats(*[0.1 * i - 0.5 for i in range(12)])),
       const("b1", "FP32", [4], floats(0.1, 0.2, 0.3, 0.4)),
       const("w2", "FP32", [4, 2], floats(1, -1, 0.5, 0.25, -0.5, 2, 1, 0))],
      [node("gemm", ["x", "w1", "b1"], ["h"], activation="relu", name="fc1"),
       node("gemm", ["h", "w2", ""], ["z"], name="fc2"),
       node("softmax", ["z"], ["p"]),
       node("argmax", ["z"], ["label"], axis=1, keepdims=False)])

# A tiny encoder: token and position embeddings (a static Range chain),
# layer norm, attention-like matmul, reshape from Shape
model("graph_encoder", [io("ids", "INT64", ["batch", "seq"])],
      [io("y", "FP32", ["batch", "seq", 4]), io("s", "FP32", ["batch", "seq", "seq"])],
      [const("tok", "FP32", [6, 4], floats(*[0.05 * i for i in range(24)])),
       const("pos", "FP32", [8, 4], floats(*[0.01 * i - 0.1 for i in range(32)])),
       const("zero", "INT64", [], ints(0)), const("one", "INT64", [], ints(1)),
       const("ax0", "INT64", [1], ints(0)), const("four", "INT64", [1], ints(4)),
       const("g", "FP32", [4], floats(1, 1, 1, 1)), const("b", "FP32", [4], floats(0, 0, 0, 0))],
      [node("gather", ["tok", "ids"], ["te"]),
       node("shape", ["ids"], ["sh"]),
       node("gather", ["sh", "one"], ["seq"]),
       node("range", ["zero", "seq", "one"], ["pid"]),
       node("gather", ["pos", "pid"], ["pe"]),
       node("add", ["te", "pe"], ["e"]),
       node("layer_norm", ["e", "g", "b"], ["n"], epsilon=1e-5),
       node("matmul", ["n", "n"], ["s0"], trans_b=True),
       node("softmax", ["s0"], ["s"], axis=-1),
       node("matmul", ["s", "n"], ["a"]),
       node("gather", ["sh", "zero"], ["bt"]),
       node("unsqueeze", ["bt", "ax0"], ["bt1"]),
       node("unsqueeze", ["seq", "ax0"], ["seq1"]),
       node("concat", ["bt1", "seq1", "four"], ["ns"], axis=0),
       node("reshape", ["a", "ns"], ["y"])])

# A small CNN: conv batch_norm max_pool global_avg_pool flatten
model("graph_cnn", [io("img", "FP32", ["batch", 1, 6, 6])], [io("f", "FP32", ["batch", 2])],
      [const("w", "FP32", [2, 1, 3, 3], floats(*[0.1 * (i % 5) - 0.2 for i in range(18)])),
       const("bias", "FP32", [2], floats(0.1, -0.1)),
       const("s", "FP32", [2], floats(1, 2)), const("bb", "FP32", [2], floats(0, 1)),
       const("m", "FP32", [2], floats(0, 0.5)), const("v", "FP32", [2], floats(1, 4))],
      [node("conv", ["img", "w", "bias"], ["c"], pads=[1, 1, 1, 1], activation="relu"),
       node("batch_norm", ["c", "s", "bb", "m", "v"], ["bn"]),
       node("max_pool", ["bn"], ["mp"], kernel=[2, 2], strides=[2, 2]),
       node("global_avg_pool", ["mp"], ["gp"]),
       node("flatten", ["gp"], ["f"])])
