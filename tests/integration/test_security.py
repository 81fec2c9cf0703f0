"""Integration: security.  A broker with CURVE on and three allow-lists; the
allowed paths work, and plaintext clients, unknown keys, keys of the wrong
role and calls outside the ACL are refused, the refusals logged with the key's
name.  Run: ctest -R integration_security, or pytest --build-dir BUILD tests/integration/test_security.py"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import msgpack
import numpy as np
import zmq
import zmq.auth

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import pyamaas  # noqa: E402
from harness import Cluster, build_dir, wait_for  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
KEYS = tempfile.mkdtemp(prefix="amaas-keys-")


def keygen(name, folder=None):
    r = subprocess.run([os.path.join(BUILD, "amaas"), "keygen", name, "--dir", KEYS],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    if folder:
        os.makedirs(os.path.join(KEYS, folder), exist_ok=True)
        shutil.copy(os.path.join(KEYS, name + ".key"), os.path.join(KEYS, folder))
    return os.path.join(KEYS, name + ".key")


BROKER = keygen("broker")
ALICE = keygen("alice", "clients")
BOB = keygen("bob", "clients")
WORKER = keygen("w1", "workers")
OPERATOR = keygen("ops", "operators")
MALLORY = keygen("mallory")  # in no list
with open(os.path.join(KEYS, "acl"), "w") as f:
    f.write("# client: models\nalice: *\nbob: iris\nops: *\n")


def secured(**kw):
    return Cluster(BUILD, EXAMPLES, workers=1,
                   broker_args=["--curve-cert", BROKER, "--clients", os.path.join(KEYS, "clients"),
                                "--workers", os.path.join(KEYS, "workers"),
                                "--operators", os.path.join(KEYS, "operators"),
                                "--acl", os.path.join(KEYS, "acl")],
                   worker_args=["--server-key", BROKER, "--cert", WORKER],
                   cli_args=["--server-key", BROKER, "--cert", ALICE], **kw)


def amaas(c, key, *args, timeout_ms=2000):
    keys = ["--server-key", BROKER, "--cert", key] if key else []
    return subprocess.run([os.path.join(BUILD, "amaas"), "--broker", c.frontend, "--control",
                           c.control, "--timeout", str(timeout_ms)] + keys + list(args),
                          capture_output=True, text=True, timeout=30)


def test_allowed_paths_work():
    with secured() as c:
        r = amaas(c, ALICE, "predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 0 and "predictions" in r.stdout, r.stderr
        r = amaas(c, BOB, "predict", "--model", "iris", "--input", "[[5.1,3.5,1.4,0.2]]")
        assert r.returncode == 0 and "label" in r.stdout, r.stderr
        r = amaas(c, OPERATOR, "status", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["workers"] == 1, r.stderr


def test_plaintext_and_unknown_keys_are_refused():
    with secured() as c:
        r = amaas(c, None, "predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, (r.stdout, r.stderr)
        r = amaas(c, MALLORY, "predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, (r.stdout, r.stderr)
        r = amaas(c, MALLORY, "status")
        assert r.returncode == 1, r.stdout


def test_wrong_roles_are_refused_and_logged():
    with secured() as c:
        # a worker with a client key cannot register, gets no job, and stops
        w = c.start_worker(extra_args=["--cert", ALICE])
        c.expected_exits.add(w)
        assert w.wait(timeout=15) == 1
        r = amaas(c, ALICE, "predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 0, r.stderr
        assert json.loads(amaas(c, OPERATOR, "status", "--json").stdout)["workers"] == 1
        # a worker key cannot send jobs
        r = amaas(c, WORKER, "predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr, r.stderr
        # a client key cannot drive the control endpoint
        r = amaas(c, ALICE, "shutdown")
        assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr, r.stderr
        assert c.broker.poll() is None
        # the model ACL: bob may call iris only
        r = amaas(c, BOB, "predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr, r.stderr
        needles = ("refused key=alice socket=worker", "refused key=w1 socket=client",
                   "refused key=alice socket=operator", "job refused key=bob model=linear")
        wait_for("the refusals in the broker's log",
                 lambda: all(needle in c.logs() for needle in needles))
        wlog = open(os.path.join(c.tmp, "worker-%d.log" % (len(c._log_files) - 1))).read()
        assert "PERMISSION_DENIED" in wlog and "JOB" not in wlog, wlog


def test_a_key_added_to_a_list_works_without_restart():
    with secured() as c:
        carol = keygen("carol")
        r = amaas(c, carol, "predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, r.stderr  # handshake refused
        # the key, and a modification time for the folder and the file that
        # the broker has not seen (whole seconds: no need to wait for the clock)
        folder = os.path.join(KEYS, "clients")
        later = 2 + max(os.stat(os.path.join(root, name)).st_mtime
                        for root, dirs, files in os.walk(KEYS) for name in dirs + files)
        shutil.copy(carol, folder)
        for path in (os.path.join(folder, os.path.basename(carol)), folder):
            os.utime(path, (later, later))
        # now admitted: past the handshake and the role check, stopped only
        # by the ACL (read at start), which does not list carol
        r = amaas(c, carol, "predict", "--model", "linear", "--input", "[[0.5]]")
        assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr and "ACL" in r.stderr, \
            r.stderr


CONTROL = 0x20


def curve_dealer(ctx, endpoint, key, routing_id):
    """A DEALER with the key pair of `key` and the routing id the peer chose."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(key + "_secret")
    sock.curve_serverkey = zmq.auth.load_certificate(BROKER)[0]
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(endpoint)
    return sock


def ask(sock, command, header, payload=None, timeout_ms=2000):
    """Sends one message and returns the header of the answer, or None when
    none came within timeout_ms."""
    frames = [pyamaas.SIGNATURE, bytes([command]), msgpack.packb(header, use_bin_type=True)]
    if payload is not None:
        frames.append(msgpack.packb(payload, use_bin_type=True))
    sock.send_multipart(frames)
    if not sock.poll(timeout_ms, zmq.POLLIN):
        return None
    return pyamaas.decode_header(sock.recv_multipart()[2])


def ask_as(ctx, endpoint, key, routing_id, command, header, payload=None):
    """(socket, answer header) of a first message from a new connection with
    routing_id.  The broker may not yet have seen the last connection with
    that id go (it then ignores the new one), so an unanswered connection is
    replaced by a fresh one, a bounded number of times."""
    for _ in range(20):
        sock = curve_dealer(ctx, endpoint, key, routing_id)
        answer = ask(sock, command, header, payload, timeout_ms=500)
        if answer is not None:
            return sock, answer
        sock.close(0)
    raise AssertionError("no answer to %s from %s" % (key, endpoint))


def test_a_routing_id_does_not_carry_a_key_s_rights():
    """Peers choose their routing ids: one taken over from an operator or
    from another client grants nothing; rights follow the CURVE key."""
    ctx = zmq.Context()
    try:
        with secured() as c:
            # an operator, with routing id X, runs status and goes
            sock, answer = ask_as(ctx, c.control, OPERATOR, b"X", CONTROL,
                                  {"id": 1, "command": "status"})
            assert answer.get("code") == pyamaas.OK, answer
            sock.close(0)
            # a client key with routing id X: status and shutdown refused
            sock, answer = ask_as(ctx, c.control, ALICE, b"X", CONTROL,
                                  {"id": 2, "command": "status"})
            assert answer.get("code") == pyamaas.PERMISSION_DENIED, answer
            answer = ask(sock, CONTROL, {"id": 3, "command": "shutdown"})
            assert answer is not None and answer.get("code") == pyamaas.PERMISSION_DENIED, answer
            sock.close(0)
            r = amaas(c, ALICE, "predict", "--model", "linear", "--input", "[[0.5]]")
            assert r.returncode == 0 and "predictions" in r.stdout, r.stderr
            assert c.broker.poll() is None
            # the frontend: alice (ACL *) calls linear with routing id Y and
            # goes; bob (ACL: iris) with routing id Y may not call linear
            inputs = [pyamaas.encode_tensor("input", np.array([[0.5]]))]
            sock, answer = ask_as(ctx, c.frontend, ALICE, b"Y", pyamaas.REQUEST,
                                  {"id": 4, "model": "linear"}, inputs)
            assert answer.get("code", pyamaas.OK) == pyamaas.OK, answer
            sock.close(0)
            sock, answer = ask_as(ctx, c.frontend, BOB, b"Y", pyamaas.REQUEST,
                                  {"id": 5, "model": "linear"}, inputs)
            assert answer.get("code") == pyamaas.PERMISSION_DENIED, answer
            sock.close(0)
            assert c.broker.poll() is None
    finally:
        ctx.destroy(linger=0)


def teardown_module():
    shutil.rmtree(KEYS, ignore_errors=True)
