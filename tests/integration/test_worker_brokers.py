"""Integration: a worker of two brokers shares its credit so that the brokers
together can never hand it more jobs than it holds, against two fake brokers
(pyzmq ROUTERs on 127.0.0.1) that decide when to answer.

A broker takes a READY's credit when it receives it; so at every READY a
fake broker receives, the credits of the latest READY each broker received
(on the worker's current connection to it) must add up to at most the
worker's --credit (4); a broker kept silent does not count, once the worker
has given its connection up (it reads nothing more from it).  The test walks the worker through: both brokers
answering (2 + 2); one silent (the other gets 4 - its reserve of 1 = 3); the
silent one back (the worker reconnects to it with its reserve, 1, and lowers
the other to 2) while the other withholds its answer to the lowering READY:
the one back must not get more than 1 until that answer comes; then 2 + 2.
Run: ctest -R integration_worker_brokers, or pytest --build-dir BUILD
tests/integration/test_worker_brokers.py
"""
import os
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import build_dir  # noqa: E402

BUILD = build_dir()
SIG = b"AMAAS01"
READY, HEARTBEAT = 0x10, 0x13
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
CREDIT = 4


class Fake:
    """One fake broker: the worker's latest connection, the credit of the
    latest READY received on it, and the READYs it has not answered."""

    def __init__(self, ctx, name):
        self.name = name
        self.sock = ctx.socket(zmq.ROUTER)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.identity = None
        self.credit = 0         # of the latest READY on the latest connection
        self.credits = []       # every READY's credit on the latest connection
        self.unanswered = 0
        self.answer_ready = True
        self.alive = True       # answers heartbeats (and READYs, if answer_ready)

    def send(self, cmd):
        self.sock.send_multipart([self.identity, SIG, bytes([cmd]), msgpack.packb({})])

    def answer_all(self):
        while self.unanswered:
            self.send(READY)
            self.unanswered -= 1


def pump(fakes, until, what, timeout=20.0):
    """Handles the worker's messages until until() is true; at every READY,
    checks the credits of all the fake brokers against CREDIT."""
    deadline = time.monotonic() + timeout
    poller = zmq.Poller()
    for f in fakes:
        poller.register(f.sock, zmq.POLLIN)
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for " + what + ": " + str(
            [(f.name, f.credits) for f in fakes])
        for sock, _ in poller.poll(50):
            f = next(f for f in fakes if f.sock is sock)
            frames = sock.recv_multipart()
            assert frames[1] == SIG, frames
            cmd = frames[2][0]
            if frames[0] != f.identity:
                # a new connection: what the old one held is gone with it
                f.identity, f.credit, f.credits, f.unanswered = frames[0], 0, [], 0
            if cmd == READY:
                header = msgpack.unpackb(frames[3], raw=False)
                f.credit = header["credit"]
                f.credits.append(f.credit)
                # a silent broker's connection is given up by the worker,
                # which reads nothing more from it: its credit is void
                total = sum(g.credit for g in fakes if g.alive)
                assert total <= CREDIT, "brokers hold %d > %d: %s" % (
                    total, CREDIT, [(g.name, g.credits) for g in fakes])
                f.unanswered += 1
                if f.alive and f.answer_ready:
                    f.answer_all()
            elif cmd == HEARTBEAT and f.alive:
                # silent (not alive), it answers nothing: the worker gives
                # the connection up, and connects again after a backoff
                if f.answer_ready:
                    f.answer_all()
                f.send(HEARTBEAT)


def test_credit_is_shared_and_never_overcommitted():
    ctx = zmq.Context()
    a, b = Fake(ctx, "a"), Fake(ctx, "b")
    log = tempfile.NamedTemporaryFile(prefix="amaas-worker-brokers-", suffix=".log")
    proc = subprocess.Popen(
        [os.path.join(BUILD, "amaas-worker"), "--models", EXAMPLES, "--credit", str(CREDIT),
         "--heartbeat-ms", "200", "--liveness", "3",
         "--broker", "tcp://127.0.0.1:%d,tcp://127.0.0.1:%d" % (a.port, b.port)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        pump([a, b], lambda: a.credit == 2 and b.credit == 2 and not a.unanswered
             and not b.unanswered, "2 + 2")
        # b falls silent: its share, but the reserve of 1, goes to a
        b.alive = False
        pump([a, b], lambda: a.credit == 3, "a to get 3 when b is silent")
        # b is back, and a withholds its answers: the worker reconnects to b
        # with its reserve (1) and lowers a to 2, but cannot raise b until a
        # has answered the READY that lowered it
        a.answer_ready = False
        b.alive = True
        pump([a, b], lambda: b.credits == [1] and not b.unanswered and a.credit == 2,
             "b's new connection with 1, a lowered to 2")
        watched = time.monotonic() + 2.0  # 10 heartbeats: the window the rule is watched in
        pump([a, b], lambda: time.monotonic() > watched, "the window")
        assert b.credits == [1], "b was raised before a answered: %s" % b.credits
        assert a.unanswered, "a's READY was answered"
        a.answer_ready = True
        a.answer_all()
        pump([a, b], lambda: a.credit == 2 and b.credit == 2, "2 + 2 again")
        assert proc.poll() is None, "the worker stopped"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for f in (a, b):
            f.sock.close(0)
        ctx.term()
        log.seek(0)
        sys.stdout.write(log.read().decode(errors="replace")[-3000:])
        log.close()
