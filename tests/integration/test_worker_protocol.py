"""Integration: the worker's side of the protocol against a fake broker (a
pyzmq ROUTER on 127.0.0.1), so that it does not depend on the broker's
version: READY entries carry `mapped` and the model's metadata (input,
datatype, outputs with their widths and shapes, inputs with their shapes)
and READY carries `model_errors`; a
READY is answered; JOBs resolve by version (none: the highest, by
strverscmp); a version not served is UNAVAILABLE; CANCEL_JOB answers a
waiting job CANCELLED and leaves a computing one alone.  Then the broker's
side of READY, with a fake worker against a real broker: a READY whose
metadata is malformed (wrong types, 9 outputs, an unknown datatype, bad
inputs or shapes) is answered ERROR INVALID_ARGUMENT and registers nothing,
as other malformed READYs are; a READY without metadata (an older worker)
is served, and `amaas models --json` reports it with input "", datatype ""
and inputs and outputs []; one without inputs and shapes gets them from
input, width and the outputs' widths; a graph model's metadata (two inputs
[-1, -1], outputs of rank 3) is listed whole, in JSON and in the table.
Run: ctest -R integration_worker_protocol, or pytest --build-dir BUILD tests/integration/test_worker_protocol.py
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import msgpack
import numpy as np
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import pyamaas  # noqa: E402
import slow_model  # noqa: E402

from fake_worker import GRAPH_MODEL  # noqa: E402
from harness import Cluster, build_dir  # noqa: E402

BUILD = build_dir()
SIG = b"AMAAS01"
READY, JOB, RESULT, HEARTBEAT, CANCEL_JOB = 0x10, 0x11, 0x12, 0x13, 0x16
ERROR = 0x0F
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")


class FakeBroker:
    def __init__(self, models_dir, extra=()):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.log = open(os.path.join(models_dir, "worker.log.txt"), "wb")
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "amaas-worker"), "--broker", "tcp://127.0.0.1:%d" % port,
             "--models", models_dir, "--max-batch", "1", "--heartbeat-ms", "500"] + list(extra),
            stdout=self.log, stderr=subprocess.STDOUT)
        self.identity = None

    def recv(self, want, timeout_ms=20000):
        """The next message with command want.  Heartbeats are answered, as
        the broker does, so that the worker, however slow the test, never
        finds its broker silent and connects again."""
        while True:
            if not self.sock.poll(timeout_ms):
                raise AssertionError("no message 0x%02x from the worker" % want)
            frames = self.sock.recv_multipart()
            self.identity = frames[0]
            assert frames[1] == SIG, frames
            cmd = frames[2][0]
            if cmd == HEARTBEAT:
                self.send(HEARTBEAT, {})
                continue
            assert cmd == want, (hex(cmd), frames)
            return msgpack.unpackb(frames[3], raw=False), frames[4:]

    def send(self, cmd, header, payload=None):
        frames = [self.identity, SIG, bytes([cmd]), msgpack.packb(header, use_bin_type=True)]
        if payload is not None:
            frames.append(payload)
        self.sock.send_multipart(frames)

    def close(self):
        self.proc.terminate()
        rc = self.proc.wait(timeout=15)
        self.sock.close(0)
        self.ctx.term()
        return rc


def inputs(rows, width):
    x = np.random.default_rng(0).standard_normal((rows, width))
    return msgpack.packb([pyamaas.encode_tensor("input", x)], use_bin_type=True)


def test_versions_cancel_and_ready_answer():
    d = tempfile.mkdtemp(prefix="amaas-proto-")
    try:
        slow_model.write_mlp(os.path.join(d, "slow.amm"), "slow", [256, 2048, 2048, 16])
        fast = os.path.join(d, "fast-2.amm")
        slow_model.write_mlp(fast, "fast", [4, 2])
        with open(fast, "r+b") as f:  # same model as version 10, in a second file
            data = f.read()
        v10 = data.replace(msgpack.packb("version") + msgpack.packb("1"),
                           msgpack.packb("version") + msgpack.packb("10"))
        assert v10 != data
        with open(os.path.join(d, "fast-10.amm"), "wb") as f:
            f.write(v10)
        with open(os.path.join(d, "broken.amm"), "wb") as f:
            f.write(b"garbage")
        b = FakeBroker(d)
        ready, _ = b.recv(READY)
        entries = {(m["name"], m["version"]): m for m in ready["models"]}
        assert set(entries) == {("slow", "1"), ("fast", "1"), ("fast", "10")}, ready
        assert entries[("slow", "1")]["mapped"] == os.path.getsize(os.path.join(d, "slow.amm"))
        # The model file's header: input name, datatype, outputs [-1, k] -> width k,
        # and with their shapes: the one input [-1, width], each output's
        slow = entries[("slow", "1")]
        assert slow["input"] == "input" and slow["datatype"] == "FP32", slow
        assert slow["outputs"] == [{"name": "y", "datatype": "FP32", "width": 16,
                                    "shape": [-1, 16]}], slow
        assert slow["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 256]}]
        assert entries[("fast", "10")]["outputs"] == [{"name": "y", "datatype": "FP32",
                                                       "width": 2, "shape": [-1, 2]}], entries
        assert entries[("fast", "10")]["inputs"] == [{"name": "input", "datatype": "FP32",
                                                      "shape": [-1, 4]}], entries
        assert ready["model_errors"] == 1, ready
        b.send(READY, {})  # the answer the broker gives

        # Versions: none -> the highest (10 > 1 by strverscmp); 9 -> UNAVAILABLE
        b.send(JOB, {"job": 1, "model": "fast"}, inputs(1, 4))
        r, _ = b.recv(RESULT)
        assert r["code"] == 0 and r["version"] == "10", r
        b.send(JOB, {"job": 2, "model": "fast", "version": "1"}, inputs(1, 4))
        r, _ = b.recv(RESULT)
        assert r["code"] == 0 and r["version"] == "1", r
        b.send(JOB, {"job": 3, "model": "fast", "version": "9"}, inputs(1, 4))
        r, _ = b.recv(RESULT)
        assert r["code"] == pyamaas.UNAVAILABLE and "version '9'" in r["message"], r

        # Job 10 is long.  Once the I/O thread has answered job 4 (sent after
        # it), job 10 is at the compute thread, which takes it at once; job
        # 11 waits behind it (--max-batch 1): cancelling 11 answers it at
        # once, not computed.  Cancelling 10 then finds it computing (it is
        # left alone: OK) or, if the compute thread was not scheduled yet,
        # still waiting (CANCELLED): either way exactly one RESULT.
        b.send(JOB, {"job": 10, "model": "slow"}, inputs(3000, 256))
        b.send(JOB, {"job": 4, "model": "fast", "version": "9"}, inputs(1, 4))
        r, _ = b.recv(RESULT)
        assert r["job"] == 4 and r["code"] == pyamaas.UNAVAILABLE, r
        b.send(JOB, {"job": 11, "model": "slow"}, inputs(1, 256))
        b.send(CANCEL_JOB, {"job": 11})
        b.send(CANCEL_JOB, {"job": 10})
        b.send(CANCEL_JOB, {"job": 999})  # unknown: ignored
        r, _ = b.recv(RESULT)
        assert r["job"] == 11 and r["code"] == pyamaas.CANCELLED, r
        assert r["message"] == "cancelled by the client", r
        r, payload = b.recv(RESULT)
        assert r["job"] == 10 and r["code"] in (0, pyamaas.CANCELLED), r
        print("job 10 cancelled while computing: %s" % ("ignored, computed (OK)" if r["code"] == 0
                                                       else "it still waited: CANCELLED"))
        cancelled = 1 + (r["code"] == pyamaas.CANCELLED)
        # A job done: CANCEL_JOB is ignored, and no second RESULT comes
        b.send(CANCEL_JOB, {"job": 1})
        b.send(JOB, {"job": 12, "model": "fast"}, inputs(1, 4))
        r, _ = b.recv(RESULT)
        assert r["job"] == 12 and r["code"] == 0, r
        assert b.close() == 0
        log = open(os.path.join(d, "worker.log.txt")).read()
        assert "cancelled=%d " % cancelled in log and "unserved=2 " in log, log
    finally:
        shutil.rmtree(d, ignore_errors=True)



def _output(name="label", datatype="INT64", width=0):
    return {"name": name, "datatype": datatype, "width": width}


def _input(name="x", datatype="FP32", shape=(-1, 3)):
    return {"name": name, "datatype": datatype,
            "shape": list(shape) if isinstance(shape, tuple) else shape}


#  (what is wrong, the metadata keys of a models entry, a word the ERROR names)
BAD_METADATA = [
    ("input not a str", {"input": 7}, "input"),
    ("input empty", {"input": ""}, "input"),
    ("input of 64 bytes", {"input": "i" * 64}, "input"),
    ("datatype not a str", {"datatype": 11}, "datatype"),
    ("unknown datatype", {"datatype": "FP16"}, "datatype"),
    ("outputs not an array", {"outputs": {"name": "label"}}, "outputs"),
    ("no outputs", {"outputs": []}, "outputs"),
    ("9 outputs", {"outputs": [_output("o%d" % i) for i in range(9)]}, "outputs"),
    ("output not a map", {"outputs": ["label"]}, "output 0"),
    ("output with unknown datatype", {"outputs": [_output(), _output("p", "DOUBLE")]},
     "output 1"),
    ("output name too long", {"outputs": [_output("o" * 64)]}, "output 0"),
    ("output width negative", {"outputs": [_output(width=-1)]}, "output 0"),
    ("output width a float", {"outputs": [_output(width=2.0)]}, "output 0"),
    ("output without width", {"outputs": [{"name": "label", "datatype": "INT64"}]}, "output 0"),
    ("output shape not starting -1", {"outputs": [dict(_output(), shape=[3])]}, "output 0"),
    ("output shape of 9 dimensions", {"outputs": [dict(_output(), shape=[-1] * 9)]},
     "output 0"),
    ("output shape with a 0", {"outputs": [dict(_output(), shape=[-1, 0])]}, "output 0"),
    ("inputs not an array", {"inputs": {"name": "x"}}, "inputs"),
    ("no inputs", {"inputs": []}, "inputs"),
    ("17 inputs", {"inputs": [_input("i%d" % i) for i in range(17)]}, "inputs"),
    ("input without shape", {"inputs": [{"name": "x", "datatype": "FP32"}]}, "input 0"),
    ("input name of 128 bytes", {"inputs": [_input("i" * 128)]}, "input 0"),
    ("input of unknown datatype", {"inputs": [_input(), _input("y", "FP16")]}, "input 1"),
    ("input shape a str", {"inputs": [_input(shape="[-1, 4]")]}, "input 0"),
    ("input dimension over 2^32-1", {"inputs": [_input(shape=[-1, 2 ** 32])]}, "input 0"),
    ("input dimension -2", {"inputs": [_input(shape=[-1, -2])]}, "input 0"),
]


def _ready(sock, models):
    sock.send_multipart([SIG, bytes([READY]), msgpack.packb(
        {"models": models, "credit": 1, "pid": 1, "host": "fake"}, use_bin_type=True)])


def _answer(sock):
    """(command, header) of the broker's next message to a fake worker but
    HEARTBEATs, which are answered, so that the broker finds it alive."""
    while True:
        assert sock.poll(10000), "the broker did not answer"
        frames = sock.recv_multipart()
        assert frames[0] == SIG, frames
        if frames[1][0] != HEARTBEAT:
            return frames[1][0], msgpack.unpackb(frames[2], raw=False)
        sock.send_multipart([SIG, bytes([HEARTBEAT]), msgpack.packb({})])


def test_broker_refuses_malformed_metadata_serves_older_workers():
    # heartbeats of 2 s: the fake worker, silent while the test asks the
    # broker, stays alive for 3 of them however slow the machine
    with Cluster(BUILD, EXAMPLES, workers=0, heartbeat_ms=2000) as c:
        ctx = zmq.Context.instance()
        fake = ctx.socket(zmq.DEALER)
        fake.setsockopt(zmq.LINGER, 0)
        fake.connect(c.backend)
        try:
            for what, meta, word in BAD_METADATA:
                entry = dict({"name": "fake", "version": "1", "width": 3}, **meta)
                _ready(fake, [entry])
                cmd, h = _answer(fake)
                assert cmd == ERROR, (what, hex(cmd), h)
                assert h["code"] == pyamaas.INVALID_ARGUMENT, (what, h)
                assert "'models' entry 0" in h["message"] and word in h["message"], (what, h)
            # none of them registered the worker: the broker serves nothing
            assert c.models() == []
            # A READY without metadata, as an older worker sends it: served
            _ready(fake, [{"name": "fake", "version": "1", "width": 3, "mapped": 0}])
            cmd, h = _answer(fake)
            assert cmd == READY, (hex(cmd), h)
            models = c.models()
            assert models == [{"name": "fake", "version": "1", "width": 3, "workers": 1,
                               "mapped": 0, "queued": 0, "input": "", "datatype": "",
                               "inputs": [], "outputs": []}], models
            with pyamaas.Client(c.frontend) as client:
                m, = client.models()
                assert m["input"] == "" and m["datatype"] == "" and m["outputs"] == [], m
            # An update with metadata (as a worker that reloaded its models)
            _ready(fake, [{"name": "fake", "version": "1", "width": 3, "input": "x",
                           "datatype": "FP32", "outputs": [_output("y", "FP32", 2)]}])
            cmd, h = _answer(fake)
            assert cmd == READY, (hex(cmd), h)
            m, = c.models()
            assert (m["input"], m["datatype"]) == ("x", "FP32"), m
            # without inputs and shapes (a worker older than them): libamaas
            # says what input, width and each output's width mean
            assert m["outputs"] == [{"name": "y", "datatype": "FP32", "width": 2,
                                     "shape": [-1, 2]}], m
            assert m["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}], m
            # An update with a graph model's metadata: every input and
            # output with its shape, in JSON and in the table
            _ready(fake, [GRAPH_MODEL])
            cmd, h = _answer(fake)
            assert cmd == READY, (hex(cmd), h)
            m, = c.models()
            assert (m["name"], m["input"], m["datatype"], m["width"]) == (
                "graph", "input_ids", "INT64", 0), m
            assert m["inputs"] == GRAPH_MODEL["inputs"], m
            assert m["outputs"] == GRAPH_MODEL["outputs"], m
            with pyamaas.Client(c.frontend) as client:
                m, = client.models()
                assert m["inputs"] == GRAPH_MODEL["inputs"], m
            r = subprocess.run([os.path.join(BUILD, "amaas"), "--broker", c.frontend, "models"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            lines = r.stdout.splitlines()
            assert re.match(r"^graph\s+1\s+\[-1,-1\]\s+1\s+0\s+0 B$", lines[1]), r.stdout
            assert [line.split() for line in lines[2:]] == [
                ["input", "input_ids", "INT64", "[-1,-1]"],
                ["input", "attention_mask", "INT64", "[-1,-1]"],
                ["output", "hidden", "FP32", "[-1,-1,4]"],
                ["output", "logits", "FP32", "[-1,2]"],
                ["output", "label", "INT64", "[-1]"]], r.stdout
        finally:
            fake.close(0)
