#!/usr/bin/python3
"""Integration: a worker whose broker goes silent waits out its reconnect
backoff inside its event loop, not in a sleep: meanwhile it still handles
signals (SIGHUP rescans at once, without cutting the backoff short), and a
SIGTERM during the wait stops it cleanly without connecting again.  The
broker is a pyzmq ROUTER on 127.0.0.1 that never answers.
Run: ctest -R integration_worker_reconnect, or pytest --build-dir BUILD tests/integration/test_worker_reconnect.py
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402
import slow_model  # noqa: E402

BUILD = harness.build_dir()
SIG = b"AMAAS01"
READY = 0x10


def test_signals_handled_during_reconnect_backoff():
    d = tempfile.mkdtemp(prefix="amaas-reconnect-")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    proc = None
    try:
        slow_model.write_mlp(os.path.join(d, "fast.amm"), "fast", [4, 2])
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        log_path = os.path.join(d, "worker.log.txt")
        log = open(log_path, "wb")
        # Silent after 3 s; the first backoff is one heartbeat: 3 s
        proc = subprocess.Popen(
            [os.path.join(BUILD, "amaas-worker"), "--broker", "tcp://127.0.0.1:%d" % port,
             "--models", d, "--heartbeat-ms", "3000", "--liveness", "1"],
            stdout=log, stderr=subprocess.STDOUT)

        def text():
            with open(log_path) as f:
                return f.read()

        readies = []

        def receive():
            """Every message the worker sent so far; READYs are kept."""
            while sock.poll(0):
                frames = sock.recv_multipart()
                assert frames[1] == SIG, frames
                if frames[2][0] == READY:
                    readies.append((frames[0], msgpack.unpackb(frames[3], raw=False)))
            return readies

        harness.wait_for("the first READY", receive)
        assert len(readies) == 1, readies
        # The broker never answers: the worker gives the connection up and
        # waits its backoff before connecting again
        harness.wait_for("the worker to find the broker silent",
                         lambda: "broker silent, reconnecting" in text())
        assert "after=3000ms" in text(), text()
        # SIGHUP during the wait: handled now (the folder is rescanned), and
        # the wait goes on (a sleep cut short by the signal would reconnect)
        proc.send_signal(signal.SIGHUP)
        harness.wait_for("the SIGHUP rescan", lambda: "reason=SIGHUP" in text())
        # SIGTERM during the wait: the worker drains (it holds no job) and
        # stops, without connecting again
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        assert rc == 0, (rc, text())
        out = text()
        assert "worker stopping" in out, out
        receive()
        assert len(readies) == 1, ("connected again during the backoff", readies, out)
        # Nothing happened between the SIGHUP and the stop but the rescan
        after = out[out.index("reason=SIGHUP"):]
        assert "ready sent" not in after, out
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close(0)
        ctx.term()
        shutil.rmtree(d, ignore_errors=True)

