"""Integration: bad input of every kind gets a clear error, and the broker and
workers keep serving.  Run: ctest -R integration_bad_input, or pytest --build-dir BUILD tests/integration/test_bad_input.py"""
import os
import random
import shutil
import socket
import sys
import tempfile

import msgpack
import numpy as np
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import amm_reference  # noqa: E402
import pyamaas  # noqa: E402
from harness import Cluster, build_dir, wait_for  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
SIG = pyamaas.SIGNATURE
LINEAR = amm_reference.load(os.path.join(EXAMPLES, "linear.amm"))


def pong(client):
    """True if the broker answers a PING within half a second."""
    try:
        client.ping(500)
        return True
    except pyamaas.AmaasError:
        return False


def still_serving(c, client=None):
    """The cluster answers a good job correctly and every process is alive."""
    own = client is None
    client = client or pyamaas.Client(c.frontend)
    try:
        out = client.predict("linear", {"input": np.array([[0.5]])})
        assert out["predictions"].shape == (1,)
    finally:
        if own:
            client.close()
    for p in [c.broker] + c.workers:
        assert p.poll() is None, "a process died:\n" + c.logs()


def expect_error(client, frames, code, needle, want_id=None):
    """Sends raw frames and checks the answer: REPLY (with want_id) or ERROR."""
    client.send_raw(frames)
    reply = client.recv_raw(5000)
    assert reply is not None, "no answer to %r" % (frames[:2],)
    assert reply[0] == SIG, reply
    header = msgpack.unpackb(reply[2], raw=False)
    assert header["code"] == code, header
    assert needle in header["message"], header
    if want_id is not None:
        assert reply[1] == bytes([pyamaas.REPLY]) and header["id"] == want_id, header
    return header


def tensor(name="input", datatype="FP64", shape=(1, 1), data=None):
    if data is None:
        data = np.zeros(shape, dtype="<f8").tobytes()
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": data}


def request(header, payload):
    return [SIG, bytes([pyamaas.REQUEST]), msgpack.packb(header),
            msgpack.packb(payload, use_bin_type=True)]


def test_malformed_messages_on_the_frontend():
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        with pyamaas.Client(c.frontend) as client:
            inv = pyamaas.INVALID_ARGUMENT
            # another protocol's signature
            expect_error(client, [b"MDPC01", b"\x01", b"\x80"], inv, "signature")
            expect_error(client, [b"GET / HTTP/1.1\r\n\r\n"], inv, "signature")
            # malformed msgpack header, truncated header, header not a map
            expect_error(client, [SIG, b"\x01", b"\xc1\x00", b"\x90"], inv, "msgpack")
            expect_error(client, [SIG, b"\x01", b"\x82\xa2id", b"\x90"], inv, "msgpack")
            expect_error(client, [SIG, b"\x01", b"\x93\x01\x02\x03", b"\x90"], inv, "map")
            # a container claiming 2^32-1 elements in a few bytes
            expect_error(client, [SIG, b"\x01", b"\xdf\xff\xff\xff\xff\x00"], inv, "msgpack")
            # unknown command, missing frames, wrong id type
            expect_error(client, [SIG, b"\x7e", b"\x80"], inv, "unknown command")
            expect_error(client, [SIG], inv, "command")
            expect_error(client, [SIG, b"\x01", msgpack.packb({"id": "x", "model": "linear"}),
                                  b"\x90"], inv, "'id'")
            # a request without payload, with the id known: REPLY with that id
            expect_error(client, [SIG, b"\x01", msgpack.packb({"id": 5, "model": "linear"})],
                         inv, "frame", want_id=5)
            # malformed payload: the worker answers, with the job's id
            expect_error(client, [SIG, b"\x01", msgpack.packb({"id": 6, "model": "linear"}),
                                  b"\xc1"], inv, "payload", want_id=6)
            still_serving(c, client)


def test_wrong_datatype_shape_and_model():
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        with pyamaas.Client(c.frontend) as client:
            inv = pyamaas.INVALID_ARGUMENT
            cases = [
                (tensor(shape=(2, 3), data=np.zeros(6).tobytes()), "expects [rows, 1]"),
                (tensor(shape=(2,), data=np.zeros(2).tobytes()), "expects [rows, 1]"),
                (tensor(datatype="BYTES", shape=(1, 1), data=b"\x01\x00\x00\x00a"), "BYTES"),
                (tensor(datatype="FP16", shape=(1, 1), data=b"\x00\x00"), "datatype"),
                (tensor(shape=(2, 1), data=b"\x00" * 8), "holds 8 bytes"),
                (tensor(shape=(0, 1), data=b""), "rows >= 1"),
                (tensor(shape=(1 << 40, 1 << 30), data=b""), "elements"),
            ]
            for i, (t, needle) in enumerate(cases):
                expect_error(client, request({"id": 100 + i, "model": "linear"}, [t]), inv,
                             needle, want_id=100 + i)
            # two inputs where the model takes one
            expect_error(client, request({"id": 200, "model": "linear"}, [tensor(), tensor()]),
                         inv, "1 input", want_id=200)
            # unknown output name
            expect_error(client, request({"id": 201, "model": "linear", "outputs": ["nope"]},
                                         [tensor()]), inv, "no output 'nope'", want_id=201)
            # unknown model, unknown version
            expect_error(client, request({"id": 202, "model": "ghost"}, [tensor()]),
                         pyamaas.NOT_FOUND, "ghost", want_id=202)
            expect_error(client, request({"id": 203, "model": "linear", "version": "7"},
                                         [tensor()]), pyamaas.NOT_FOUND, "version", want_id=203)
            # a wanted output works
            out = client.predict("iris", {"input": np.ones((3, 4))}, outputs=["label"])
            assert list(out) == ["label"] and out["label"].shape == (3,)
            still_serving(c, client)


def test_message_over_the_size_limit():
    with Cluster(BUILD, EXAMPLES, workers=1, broker_args=["--max-message", "100000"]) as c:
        with pyamaas.Client(c.frontend) as client:
            x = np.zeros((20000, 1))  # 160 kB of data
            expect_error(client, request({"id": 9, "model": "linear"},
                                        [tensor(shape=x.shape, data=x.tobytes())]),
                         pyamaas.INVALID_ARGUMENT, "exceeds the broker's limit", want_id=9)
            # a message so big that ZeroMQ drops the connection (over 4x the
            # limit) does not hurt the broker either
            big = np.zeros((60000, 1))
            client.send_raw(request({"id": 10, "model": "linear"},
                                    [tensor(shape=big.shape, data=big.tobytes())]))
            # the broker has read it (and dropped the connection) once a PING
            # sent after it on the same socket is answered
            wait_for("a PONG after the big message", lambda: pong(client))
        still_serving(c)


def test_random_bytes_on_both_ports():
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        rng = random.Random(7)
        for endpoint in (c.frontend, c.backend):
            host, port = endpoint.replace("tcp://", "").rsplit(":", 1)
            # raw TCP garbage, not even ZMTP
            for _ in range(20):
                s = socket.create_connection((host, int(port)), timeout=2)
                try:
                    s.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000))))
                except OSError:
                    pass
                s.close()
            # a ZeroMQ peer sending random frames
            ctx = zmq.Context.instance()
            d = ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            d.connect(endpoint)
            for _ in range(300):
                frames = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
                          for _ in range(rng.randint(1, 5))]
                if rng.random() < 0.5:
                    frames[0] = SIG
                d.send_multipart(frames)
            # every message that could not be handled got an ERROR back
            answers = 0
            while d.poll(1000):
                msg = d.recv_multipart()
                assert msg[0] == SIG
                answers += 1
            d.close()
            assert answers > 0
        still_serving(c)
        # a fake worker that registers, takes a job and never answers is
        # purged, and its job served by the real worker
        ctx = zmq.Context.instance()
        fake = ctx.socket(zmq.DEALER)
        fake.setsockopt(zmq.LINGER, 0)
        fake.connect(c.backend)
        fake.send_multipart([SIG, bytes([pyamaas.READY]), msgpack.packb(
            {"models": [{"name": "linear", "version": "1"}], "credit": 1000, "pid": 1,
             "host": "fake"})])
        c.wait_workers(2, "linear")
        with pyamaas.Client(c.frontend, timeout_ms=10000) as client:
            ids = [client.send("linear", {"input": np.array([[float(i)]])}) for i in range(20)]
            for i, jid in enumerate(ids):
                out, _ = client.recv(jid)
                ref = amm_reference.run(LINEAR, np.array([[float(i)]]))["predictions"]
                np.testing.assert_allclose(out["predictions"], ref, rtol=1e-12)
        fake.close()


def test_corrupt_model_file_is_refused_others_served():
    tmp = tempfile.mkdtemp(prefix="amaas-models-")
    try:
        shutil.copy(os.path.join(EXAMPLES, "linear.amm"), tmp)
        data = open(os.path.join(EXAMPLES, "iris.amm"), "rb").read()
        open(os.path.join(tmp, "truncated.amm"), "wb").write(data[: len(data) // 2])
        open(os.path.join(tmp, "garbage.amm"), "wb").write(os.urandom(4096))
        open(os.path.join(tmp, "empty.amm"), "wb").write(b"")
        bad = msgpack.unpackb(data, raw=False)
        bad["name"] = "inconsistent"
        bad["input"]["width"] = 5  # the first dense layer takes 4
        open(os.path.join(tmp, "inconsistent.amm"), "wb").write(msgpack.packb(bad))
        with Cluster(BUILD, tmp, workers=1) as c:
            assert [m["name"] for m in c.models()] == ["linear"]
            log = c.logs()
            for name in ("truncated.amm", "garbage.amm", "empty.amm", "inconsistent.amm"):
                line = [l for l in log.splitlines() if name in l and "refused" in l]
                assert line, "no log line for %s:\n%s" % (name, log)
            still_serving(c)
        # a folder with no valid model: the worker exits with a clear error
        os.unlink(os.path.join(tmp, "linear.amm"))
        with Cluster(BUILD, tmp, workers=0) as c:
            w = c.start_worker()
            c.expected_exits.add(w)
            assert w.wait(timeout=10) == 1
            assert "no model to serve" in c.logs()
    finally:
        shutil.rmtree(tmp)

