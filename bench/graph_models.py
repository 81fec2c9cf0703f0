#!/usr/bin/python3
"""graph_models.py - builds the graph benchmark models (PyTorch -> ONNX -> .amm).

    /usr/bin/python3 bench/graph_models.py DIR [--models encoder,cnn,bert]

Builds each model with tests/fidelity/zoo_onnx.py (seeded) and writes, for
each NAME, into DIR:

  NAME.pt     the PyTorch module (torch.save), for bench/torch_compute.py and
              bench/flask_torch_app.py (which import zoo_onnx to load it)
  NAME.onnx   zoo_onnx.export (opset 13)
  NAME.amm    scripts/amaas-export NAME.onnx NAME.amm, served by amaas-worker
  NAME.json   the inputs, as both sides generate them: {"inputs": [{"name",
              "datatype", "shape" (ints, or names of dimensions: "batch", ...),
              "bound" (INT64 indices: values in [0, bound); 0: none)}],
              "outputs": names of what forward returns, "reply": those the Flask
              app sends back (an encoder: logits), "recipe", "parameters"}; the
              inputs' names and shapes as the .amm declares them

The models (default: encoder,cnn):

  encoder  make_encoder(layers=4, hidden=256, heads=4): a BERT-like encoder,
           FFN 1024, vocabulary 1,000, 128 positions, 2 classes; inputs
           input_ids and attention_mask [batch, sequence] INT64
  cnn      train_cnn(seed 0): the digits CNN, input [batch, 1, 8, 8] FP32
  bert     make_encoder(layers=12, hidden=768, heads=12, vocab=30522,
           max_positions=512): BERT-base size, about 110 M parameters, seeded
           random weights (a .amm of about 440 MB); only on request

Everything is seeded: the same files come out each time.  A model whose
NAME.amm and NAME.json exist already is kept (delete them to rebuild).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXPORTER = os.path.join(ROOT, "scripts", "amaas-export")
sys.path.insert(0, os.path.join(ROOT, "tests", "fidelity"))

SEED = 0
ENCODER = dict(layers=4, hidden=256, heads=4, vocab=1000, max_positions=128, classes=2)
BERT = dict(layers=12, hidden=768, heads=12, vocab=30522, max_positions=512, classes=2)


def encoder_inputs(vocab):
    return [{"name": "input_ids", "datatype": "INT64", "shape": ["batch", "sequence"],
             "bound": vocab},
            {"name": "attention_mask", "datatype": "INT64", "shape": ["batch", "sequence"],
             "bound": 0}]


def build(name):
    """(module, inputs, outputs, recipe) of model NAME: outputs names what the
    module's forward returns, in order."""
    import zoo_onnx
    if name in ("encoder", "bert"):
        kwargs = dict(ENCODER if name == "encoder" else BERT, seed=SEED)
        return zoo_onnx.make_encoder(**kwargs), encoder_inputs(kwargs["vocab"]), \
            ["hidden", "logits", "label"], "make_encoder(%s)" % ", ".join("%s=%s" % kv for kv in kwargs.items())
    if name == "cnn":
        return zoo_onnx.train_cnn(SEED), \
            [{"name": "input", "datatype": "FP32", "shape": ["batch", 1, 8, 8], "bound": 0}], \
            ["probabilities", "label"], "train_cnn(%d)" % SEED
    raise ValueError("no model %r" % name)


def amm_inputs(path):
    """The "inputs" of a .amm file's top-level map, read without loading the
    weights (msgpack's Unpacker skips the other values); None if absent."""
    import msgpack
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30)
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == "inputs":
                return unpacker.unpack()
            unpacker.skip()
    return None


def make(out, name):
    amm = os.path.join(out, name + ".amm")
    spec_path = os.path.join(out, name + ".json")
    if os.path.exists(amm) and os.path.exists(spec_path):
        print("%s: kept %s" % (name, amm))
        return 0
    import torch
    import zoo_onnx
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    module, inputs, outputs, recipe = build(name)
    module.eval()
    torch.save(module, os.path.join(out, name + ".pt"))
    onnx_path = os.path.join(out, name + ".onnx")
    zoo_onnx.export(module, onnx_path, opset=13)
    r = subprocess.run(["/usr/bin/python3", EXPORTER, onnx_path, amm])
    if r.returncode != 0:
        return r.returncode
    # The names and dimensions the exporter gave the inputs, where they
    # differ from the recipe's (the bound stays the recipe's)
    declared = amm_inputs(amm) or []
    for spec, got in zip(inputs, declared):
        spec["name"] = got.get("name", spec["name"])
        spec["shape"] = got.get("shape", spec["shape"])
    params = sum(p.numel() for p in module.parameters())
    with open(spec_path, "w") as f:
        json.dump({"name": name, "recipe": recipe, "parameters": params, "inputs": inputs,
                   "outputs": outputs, "reply": ["logits"] if "logits" in outputs else outputs},
                  f, indent=1)
    print("%s: %s, %s parameters, %s: %.1f MB" % (name, recipe, "{:,}".format(params), amm,
                                                   os.path.getsize(amm) / 1e6))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir")
    p.add_argument("--models", default="encoder,cnn", help="comma-separated: encoder,cnn,bert")
    args = p.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    for name in args.models.split(","):
        rc = make(args.dir, name)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
