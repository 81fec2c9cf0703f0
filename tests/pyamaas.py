"""pyamaas - a Python client for amaas, written from docs/PROTOCOL.md alone.

One Client wraps one ZeroMQ DEALER socket connected to the broker's frontend.
predict() sends a REQUEST and waits for its REPLY; send()/recv() pipeline many
jobs on the one socket; send_raw()/recv_raw() move frames as they are, for
tests that speak the protocol wrongly on purpose.

    from pyamaas import Client, AmaasError
    with Client("tcp://127.0.0.1:5555", timeout_ms=5000) as c:
        out = c.predict("iris", {"input": np.array([[5.1, 3.5, 1.4, 0.2]])})
        out["probabilities"], out["label"]        # numpy arrays

Tensors map to numpy arrays: FP32/FP64/INT32/INT64/UINT8/BOOL as the numpy
dtypes of those names (little-endian on the wire), BYTES as an object array of
Python bytes.  Errors raise AmaasError with the gRPC code and the message.
"""

import itertools
import time

import msgpack
import numpy as np
import zmq

SIGNATURE = b"AMAAS01"

REQUEST = 0x01
REPLY = 0x02
MODELS = 0x03
MODELS_REPLY = 0x04
PING = 0x05
PONG = 0x06
ERROR = 0x0F
READY = 0x10
JOB = 0x11
RESULT = 0x12
HEARTBEAT = 0x13
DISCONNECT = 0x14

OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

CODE_NAMES = {OK: "OK", CANCELLED: "CANCELLED", UNKNOWN: "UNKNOWN",
              INVALID_ARGUMENT: "INVALID_ARGUMENT", DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
              NOT_FOUND: "NOT_FOUND", PERMISSION_DENIED: "PERMISSION_DENIED",
              RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED", INTERNAL: "INTERNAL",
              UNAVAILABLE: "UNAVAILABLE", UNAUTHENTICATED: "UNAUTHENTICATED"}

#  wire datatype <-> numpy dtype (fixed-size types)
DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "INT32": np.dtype("<i4"),
          "INT64": np.dtype("<i8"), "UINT8": np.dtype("u1"), "BOOL": np.dtype("?")}
MAX_DIMS = 8


class AmaasError(Exception):
    """An error reply (or a client-side failure such as a timeout).

    code is the gRPC code number (e.g. pyamaas.NOT_FOUND), name its name,
    message the text for a person."""

    def __init__(self, code, message):
        self.code = int(code)
        self.name = CODE_NAMES.get(self.code, "CODE_%d" % self.code)
        self.message = message
        super().__init__("%s: %s" % (self.name, message))


class ProtocolError(AmaasError):
    """The broker sent something that does not follow docs/PROTOCOL.md."""

    def __init__(self, message):
        super().__init__(INTERNAL, "protocol error from the broker: " + message)


# ---------------------------------------------------------------------------
#  Tensors

def encode_tensor(name, value):
    """A tensor map for msgpack from a numpy array (or anything np.asarray takes).

    str / bytes arrays (or object arrays of them) become BYTES."""
    a = np.asarray(value)
    if a.ndim == 0:
        raise ValueError("tensor %r: a scalar has no batch dimension" % name)
    if a.ndim > MAX_DIMS:
        raise ValueError("tensor %r: %d dimensions, at most %d" % (name, a.ndim, MAX_DIMS))
    shape = [int(n) for n in a.shape]
    if a.dtype.kind in "USO":
        parts = []
        for v in a.reshape(-1).tolist():
            b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
            parts.append(len(b).to_bytes(4, "little") + b)
        return {"name": name, "datatype": "BYTES", "shape": shape, "data": b"".join(parts)}
    for wire, dt in DTYPES.items():
        if a.dtype.kind == dt.kind and a.dtype.itemsize == dt.itemsize:
            data = np.ascontiguousarray(a, dtype=dt).tobytes()
            return {"name": name, "datatype": wire, "shape": shape, "data": data}
    raise ValueError("tensor %r: numpy dtype %s has no amaas datatype (FP32, FP64, INT32, "
                     "INT64, UINT8, BOOL, BYTES)" % (name, a.dtype))


def decode_tensor(t):
    """(name, numpy array) from a decoded tensor map; raises ProtocolError."""
    if not isinstance(t, dict):
        raise ProtocolError("a tensor is not a map")
    name, dtype, shape, data = t.get("name"), t.get("datatype"), t.get("shape"), t.get("data")
    if not isinstance(name, str):
        raise ProtocolError("tensor name is not a str")
    if not (isinstance(shape, list) and 1 <= len(shape) <= MAX_DIMS
            and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise ProtocolError("tensor %r: bad shape %r" % (name, shape))
    if not isinstance(data, bytes):
        raise ProtocolError("tensor %r: data is not a bin" % name)
    count = 1
    for n in shape:
        count *= n
    if dtype in DTYPES:
        dt = DTYPES[dtype]
        if len(data) != count * dt.itemsize:
            raise ProtocolError("tensor %r: %d bytes of data for %s %s" % (name, len(data),
                                                                            dtype, shape))
        return name, np.frombuffer(data, dtype=dt).astype(dt.newbyteorder("="))\
            .reshape(shape)
    if dtype == "BYTES":
        out = np.empty(count, dtype=object)
        pos = 0
        for i in range(count):
            if pos + 4 > len(data):
                raise ProtocolError("tensor %r: BYTES data ends inside element %d" % (name, i))
            n = int.from_bytes(data[pos:pos + 4], "little")
            if pos + 4 + n > len(data):
                raise ProtocolError("tensor %r: BYTES element %d runs past the data" % (name, i))
            out[i] = data[pos + 4:pos + 4 + n]
            pos += 4 + n
        if pos != len(data):
            raise ProtocolError("tensor %r: %d bytes after the last BYTES element"
                                % (name, len(data) - pos))
        return name, out.reshape(shape)
    raise ProtocolError("tensor %r: unknown datatype %r" % (name, dtype))


def decode_header(frame):
    """The header frame as a dict; raises ProtocolError."""
    try:
        h = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as e:  # noqa: BLE001 - any decoding failure
        raise ProtocolError("header is not msgpack: %s" % e)
    if not isinstance(h, dict):
        raise ProtocolError("header is not a map")
    return h


# ---------------------------------------------------------------------------
#  Client

class Client:
    """A connection to an amaas broker's frontend.  Not thread-safe."""

    def __init__(self, endpoint, timeout_ms=5000, context=None):
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._ids = itertools.count(1)
        self._done = {}          # id -> (command, header, frames) received while waiting

    def close(self):
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- raw frames -----------------------------------------------------

    def send_raw(self, frames):
        """Sends a multipart message as it is (list of bytes)."""
        self._sock.send_multipart([bytes(f) for f in frames])

    def recv_raw(self, timeout_ms=None):
        """The next message as a list of bytes frames, or None after timeout_ms
        (default: the client's timeout) without one."""
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        if not self._sock.poll(t, zmq.POLLIN):
            return None
        return self._sock.recv_multipart()

    # --- messages -------------------------------------------------------

    def _send(self, command, header, payload=None):
        frames = [SIGNATURE, bytes([command]), msgpack.packb(header, use_bin_type=True)]
        if payload is not None:
            frames.append(msgpack.packb(payload, use_bin_type=True))
        self._sock.send_multipart(frames)

    def _recv_message(self, timeout_ms):
        """(command, header, frames) of the next message; None on timeout."""
        frames = self.recv_raw(timeout_ms)
        if frames is None:
            return None
        if len(frames) < 3 or frames[0] != SIGNATURE or len(frames[1]) != 1:
            raise ProtocolError("bad message: %d frames, signature %r"
                                % (len(frames), frames[0][:16] if frames else b""))
        return frames[1][0], decode_header(frames[2]), frames

    def _wait(self, want_id, timeout_ms):
        """The message answering want_id (REPLY, MODELS_REPLY, PONG or ERROR)."""
        if want_id in self._done:
            return self._done.pop(want_id)
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        deadline = time.monotonic() + t / 1000.0
        while True:
            left = int(max(0.0, deadline - time.monotonic()) * 1000)
            msg = self._recv_message(left)
            if msg is None:
                raise AmaasError(DEADLINE_EXCEEDED, "no answer from %s within %d ms"
                                 % (self.endpoint, t))
            command, header, _ = msg
            mid = header.get("id")
            if command == ERROR and mid is None:
                #  An error about a message we sent that had no readable id: in a
                #  synchronous exchange, the one we are waiting for.
                raise AmaasError(header.get("code", UNKNOWN), header.get("message", ""))
            if mid == want_id:
                return msg
            if isinstance(mid, int):
                self._done[mid] = msg       # another job's answer: keep it for recv()
            if len(self._done) > 100000:    # answers nobody waits for (timed-out jobs)
                self._done.clear()

    @staticmethod
    def _check(command, header, frames, expected):
        if command == ERROR:
            raise AmaasError(header.get("code", UNKNOWN), header.get("message", ""))
        if command != expected:
            raise ProtocolError("command 0x%02x in answer, expected 0x%02x" % (command, expected))
        code = header.get("code", OK)
        if code != OK:
            raise AmaasError(code, header.get("message", ""))

    def send(self, model, inputs, version=None, outputs=None, job_id=None, deadline_ms=None,
             priority=None):
        """Sends a REQUEST without waiting; returns its id.

        inputs: dict name -> array (or a list of (name, array) to control order)."""
        jid = next(self._ids) if job_id is None else job_id
        header = {"id": jid, "model": model}
        if deadline_ms is not None:
            header["deadline_ms"] = deadline_ms
        if priority is not None:
            header["priority"] = priority
        if version is not None:
            header["version"] = version
        if outputs is not None:
            header["outputs"] = list(outputs)
        items = inputs.items() if isinstance(inputs, dict) else inputs
        payload = [encode_tensor(n, v) for n, v in items]
        self._send(REQUEST, header, payload)
        return jid

    def recv(self, job_id, timeout_ms=None):
        """The outputs of job job_id (dict name -> array) and its reply header.

        Raises AmaasError for an error reply or DEADLINE_EXCEEDED on timeout."""
        command, header, frames = self._wait(job_id, timeout_ms)
        self._check(command, header, frames, REPLY)
        if len(frames) != 4:
            raise ProtocolError("REPLY with code 0 has %d frames, not 4" % len(frames))
        try:
            tensors = msgpack.unpackb(frames[3], raw=False, strict_map_key=False)
        except Exception as e:  # noqa: BLE001
            raise ProtocolError("payload is not msgpack: %s" % e)
        if not isinstance(tensors, list):
            raise ProtocolError("payload is not an array of tensors")
        out = {}
        for t in tensors:
            name, arr = decode_tensor(t)
            out[name] = arr
        return out, header

    def predict(self, model, inputs, version=None, outputs=None, timeout_ms=None):
        """Runs one job and returns its outputs: dict name -> numpy array."""
        jid = self.send(model, inputs, version=version, outputs=outputs)
        out, _ = self.recv(jid, timeout_ms)
        return out

    def models(self, timeout_ms=None):
        """The versions of models live workers serve, sorted by name then
        version: [{name, version, workers, width, mapped, queued, input,
        datatype, inputs: [{name, datatype, shape}], outputs: [{name,
        datatype, width, shape?}]}], width 0 of an output meaning shape
        [rows], k [rows, k]; shapes have -1 for the batch and for dimensions
        the request sets.  Metadata a worker did not announce (an older one)
        is input "", datatype "", inputs [] and outputs [], as sent (no
        shapes made up from widths)."""
        jid = next(self._ids)
        self._send(MODELS, {"id": jid})
        command, header, frames = self._wait(jid, timeout_ms)
        self._check(command, header, frames, MODELS_REPLY)
        models = header.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise ProtocolError("MODELS_REPLY 'models' is not an array of maps")
        for m in models:
            m.setdefault("input", "")
            m.setdefault("datatype", "")
            m.setdefault("outputs", [])
            m.setdefault("inputs", [])
        return models

    def ping(self, timeout_ms=None):
        """Round-trip time to the broker in seconds; raises on timeout."""
        jid = next(self._ids)
        t0 = time.monotonic()
        self._send(PING, {"id": jid})
        command, header, frames = self._wait(jid, timeout_ms)
        self._check(command, header, frames, PONG)
        return time.monotonic() - t0
