"""Integration: the worker's side of the protocol against a fake broker (a
pyzmq ROUTER on 127.0.0.1), so that it does not depend on the broker's
version: READY entries carry `mapped` and READY carries `model_errors`; a
READY is answered; JOBs resolve by version (none: the highest, by
strverscmp); a version not served is UNAVAILABLE; CANCEL_JOB answers a
waiting job CANCELLED and leaves a computing one alone.
Run: ctest -R integration_worker_protocol, or pytest --build-dir BUILD tests/integration/test_worker_protocol.py
"""
import os
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

from harness import build_dir  # noqa: E402

BUILD = build_dir()
SIG = b"AMAAS01"
READY, JOB, RESULT, HEARTBEAT, CANCEL_JOB = 0x10, 0x11, 0x12, 0x13, 0x16


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

