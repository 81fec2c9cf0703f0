"""A fake worker for the integration tests: a pyzmq DEALER on a real
broker's backend that announces whatever models entries it is given (READY,
with any metadata) and answers every JOB with what a handler computes, on a
thread of its own.  So a test can describe and call a model that no model
file holds (a graph model's metadata: several named N-d inputs, outputs of
rank 3) through the real broker, libamaas, the CLI and the gateway, and see
the inputs exactly as they reached a worker.

GRAPH_MODEL is such an entry, as a worker announces a graph model
(docs/PROTOCOL.md, READY), and graph_outputs what the fake computes for it.

Run as a program (main), it is a worker process that amaas-cluster can
start in place of amaas-worker (a --bin folder whose amaas-worker runs it):
it serves one model of width 1 whose jobs take a fixed time each, one after
another (--delay-ms, --credit; the answer is 2 x the input), heartbeats,
and drains as amaas-worker does (SIGTERM/SIGINT, or the broker's DRAIN:
no new job, the held ones answered, DISCONNECT, exit 0).  So a worker's
capacity is 1000 / delay-ms jobs per second whatever the CPU does: what a
test of autoscaling on a small machine needs.
"""
import argparse
import collections
import os
import signal
import socket
import sys
import threading
import time

import msgpack
import numpy as np
import zmq

import pyamaas

SIG = b"AMAAS01"
ERROR, READY, JOB, RESULT, HEARTBEAT, DISCONNECT, DRAIN = 0x0F, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15

# A transformer classifier's metadata: two INT64 inputs [batch, sequence],
# outputs hidden [batch, sequence, 4], logits [batch, 2], label [batch]
GRAPH_MODEL = {
    "name": "graph", "version": "1", "width": 0, "mapped": 0,
    "input": "input_ids", "datatype": "INT64",
    "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
               {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]}],
    "outputs": [{"name": "hidden", "datatype": "FP32", "width": 0, "shape": [-1, -1, 4]},
                {"name": "logits", "datatype": "FP32", "width": 2, "shape": [-1, 2]},
                {"name": "label", "datatype": "INT64", "width": 0, "shape": [-1]}]}


def graph_outputs(inputs):
    """What the fake computes for GRAPH_MODEL from {name: array}: a list of
    (name, array), every value a function of the inputs so that a test can
    tell they arrived unchanged."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    kept = (ids * mask).astype(np.float32)
    hidden = kept[:, :, None] * np.arange(1, 5, dtype=np.float32)
    logits = np.stack([kept.sum(axis=1), mask.sum(axis=1).astype(np.float32)], axis=1)
    return [("hidden", hidden), ("logits", logits),
            ("label", np.argmax(logits, axis=1).astype(np.int64))]


class FakeWorker:
    """with FakeWorker(backend, [entry, ...], handler) as w: ... -- connected
    and announced once the broker answered its READY (an ERROR answer
    raises).  handler(header, {name: array}) returns [(name, array)];
    w.jobs lists (header, {name: array}) of every JOB received."""

    def __init__(self, backend, models, handler=None):
        self.backend = backend
        self.models = models
        self.handler = handler or (lambda header, inputs: graph_outputs(inputs))
        self.jobs = []
        self.answer = None  # (command, header) the broker answered READY with
        self._answered = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._failure = None

    def __enter__(self):
        self._thread.start()
        if not self._answered.wait(20):
            self.__exit__(None, None, None)
            raise AssertionError("the broker did not answer the fake worker's READY")
        if self.answer[0] != READY:
            self.__exit__(None, None, None)
            raise AssertionError("the broker answered READY with %r" % (self.answer,))
        return self

    def __exit__(self, kind, value, tb):
        self._stop.set()
        self._thread.join(10)
        if self._failure and kind is None:
            raise AssertionError("the fake worker failed: %s" % self._failure)

    def _send(self, sock, command, header, payload=None):
        frames = [SIG, bytes([command]), msgpack.packb(header, use_bin_type=True)]
        if payload is not None:
            frames.append(payload)
        sock.send_multipart(frames)

    def _run(self):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.backend)
        try:
            self._send(sock, READY, {"models": self.models, "credit": 4, "pid": os.getpid(),
                                     "host": "fake"})
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                frames = sock.recv_multipart()
                command = frames[1][0]
                header = msgpack.unpackb(frames[2], raw=False)
                if command == HEARTBEAT:
                    self._send(sock, HEARTBEAT, {})
                elif command in (READY, ERROR):
                    self.answer = (command, header)
                    self._answered.set()
                elif command == JOB:
                    self._job(sock, header, frames[3])
            self._send(sock, DISCONNECT, {})
        except Exception as e:  # noqa: BLE001 - reported by __exit__
            self._failure = repr(e)
            self._answered.set()
        finally:
            sock.close(0)

    def _job(self, sock, header, payload):
        inputs = dict(pyamaas.decode_tensor(t) for t in msgpack.unpackb(payload, raw=False))
        self.jobs.append((header, inputs))
        answer = {"job": header["job"], "model": header["model"],
                  "version": header.get("version", ""), "compute_us": 1}
        try:
            outputs = self.handler(header, inputs)
        except Exception as e:  # noqa: BLE001 - the job's answer
            self._send(sock, RESULT, dict(answer, code=pyamaas.INVALID_ARGUMENT,
                                          message="fake worker: %r" % e))
            return
        self._send(sock, RESULT, dict(answer, code=0), msgpack.packb(
            [pyamaas.encode_tensor(name, array) for name, array in outputs],
            use_bin_type=True))


def _log(level, text):
    t = time.time()
    sys.stderr.write("%s.%03dZ fake-worker[%d] %s %s\n" % (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)), int(t * 1000) % 1000, os.getpid(),
        level, text))
    sys.stderr.flush()


def main(argv=None):
    """A worker process: `fake_worker.py --broker EP [--models DIR]
    [--heartbeat-ms N] [--credit N] [--delay-ms N] [--model NAME]`; the
    flags amaas-cluster gives amaas-worker are taken (--models is ignored:
    the model is made up).  Returns the exit status."""
    ap = argparse.ArgumentParser(prog="fake-worker", description=main.__doc__)
    ap.add_argument("--broker", required=True, help="the broker's backend (one endpoint)")
    ap.add_argument("--models", help="ignored (amaas-cluster passes its folder)")
    ap.add_argument("--heartbeat-ms", type=int, default=1000)
    ap.add_argument("--liveness", type=int, default=3)
    ap.add_argument("--credit", type=int, default=1)
    ap.add_argument("--delay-ms", type=float, default=200.0, help="time each job takes")
    ap.add_argument("--model", default="sleepy")
    args = ap.parse_args(argv)
    if "," in args.broker:
        ap.error("one broker only, not %r" % args.broker)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stop.append(number))
    entry = {"name": args.model, "version": "1", "width": 1, "mapped": 0, "input": "input",
             "datatype": "FP64", "outputs": [{"name": "y", "datatype": "FP64", "width": 0}]}
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.connect(args.broker)

    def send(command, header, payload=None):
        frames = [SIG, bytes([command]), msgpack.packb(header, use_bin_type=True)]
        if payload is not None:
            frames.append(payload)
        sock.send_multipart(frames)

    send(READY, {"models": [entry], "credit": args.credit, "pid": os.getpid(),
                 "host": socket.gethostname()})
    _log("info", "fake worker ready broker=%s model=%s credit=%d delay_ms=%g"
         % (args.broker, args.model, args.credit, args.delay_ms))
    beat = args.heartbeat_ms / 1000.0
    delay = args.delay_ms / 1000.0
    held = collections.deque()  # (due, header, payload): computed one after another
    draining = drain_acked = False
    done = 0
    next_beat = time.monotonic() + beat
    last_heard = time.monotonic()
    while True:
        now = time.monotonic()
        if stop and not draining:
            _log("info", "worker draining jobs_held=%d" % len(held))
            draining = True
            send(DRAIN, {})
        while held and held[0][0] <= now:
            _, header, payload = held.popleft()
            inputs = dict(pyamaas.decode_tensor(t) for t in msgpack.unpackb(payload, raw=False))
            y = 2 * np.asarray(inputs["input"], dtype=np.float64).reshape(-1)
            send(RESULT, {"job": header["job"], "code": 0, "model": header["model"],
                          "version": header.get("version", ""),
                          "compute_us": int(args.delay_ms * 1000)},
                 msgpack.packb([pyamaas.encode_tensor("y", y)], use_bin_type=True))
            done += 1
        if draining and drain_acked and not held:
            send(DISCONNECT, {})
            _log("info", "worker stopping jobs_done=%d jobs_held=0" % done)
            sock.close()
            return 0
        if now >= next_beat:
            send(HEARTBEAT, {})
            next_beat = now + beat
        if now - last_heard > args.liveness * beat * 4:
            _log("error", "the broker is silent: exiting")
            sock.close(0)
            return 1
        wake = min(next_beat, held[0][0]) if held else next_beat
        timeout_ms = max(0, min(100, int((wake - now) * 1000) + 1))
        if not sock.poll(timeout_ms):
            continue
        while sock.poll(0):
            frames = sock.recv_multipart()
            last_heard = time.monotonic()
            command = frames[1][0]
            header = msgpack.unpackb(frames[2], raw=False)
            if command == JOB:
                start = max(time.monotonic(), held[-1][0] if held else 0)
                held.append((start + delay, header, frames[3]))
            elif command == DRAIN:
                # the answer to our DRAIN, or an operator's drain
                if not draining:
                    _log("info", "worker draining on the broker's request jobs_held=%d"
                         % len(held))
                draining = drain_acked = True
            elif command == DISCONNECT:
                if draining:
                    drain_acked = True
                else:
                    send(READY, {"models": [entry], "credit": args.credit, "pid": os.getpid(),
                                 "host": socket.gethostname()})
            elif command == ERROR:
                _log("error", "broker error %r" % (header,))


if __name__ == "__main__":
    sys.exit(main())
