"""The amaas client: predictions from an amaas broker, through libamaas.

A Client holds one libamaas connection (one ZeroMQ socket).  predict() sends
a job and waits for its result; submit() sends a job and returns a Future at
once, so that thousands of jobs may be in flight on the one connection.  The
results are taken in (amaas_recv) when some Future's result() is asked for,
or by Client.poll() / wait() / as_completed(): there is no background thread.
Jobs are sent again, deduplicated and given up exactly as libamaas does
(client/amaas.h): each job gets exactly one result.

A Client is meant for one thread.  Its calls into libamaas are serialized by
a lock, so that sharing one is safe, but not concurrent.

Tensors are numpy arrays.  Inputs keep their dtype (float32 is sent as FP32,
float64 as FP64, int32, int64, uint8 and bool as INT32, INT64, UINT8 and
BOOL, arrays of bytes or str as BYTES); Python lists become float64.
Outputs come with the dtype of the tensor the model answered (FP32 ->
float32, FP64 -> float64, INT64 -> int64, ...; BYTES -> an object array of
Python bytes) and its shape, copied out of libamaas's result.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures._base as _futures_base
import ctypes
import dataclasses
import struct
import threading
import time
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np

from . import _lib
from .errors import AmaasError, Code

ArrayLike = Any  # a numpy array, or what numpy.asarray takes
Inputs = Union[ArrayLike, Mapping[str, ArrayLike]]

# numpy dtype (little-endian) -> amaas datatype
_DTYPE_OF = {np.dtype("<f4"): _lib.FP32, np.dtype("<f8"): _lib.FP64, np.dtype("<i4"): _lib.INT32,
             np.dtype("<i8"): _lib.INT64, np.dtype("u1"): _lib.UINT8, np.dtype("?"): _lib.BOOL}
# amaas datatype -> numpy dtype of outputs
_NUMPY_OF = {_lib.FP32: np.dtype("<f4"), _lib.FP64: np.dtype("<f8"), _lib.INT32: np.dtype("<i4"),
             _lib.INT64: np.dtype("<i8"), _lib.UINT8: np.dtype("u1"), _lib.BOOL: np.dtype("?")}

# Longest single wait in libamaas, so that Ctrl-C is seen while waiting
_WAIT_SLICE_MS = 200


class OutputInfo(NamedTuple):
    """An output of a model: name, datatype ("INT64"...), shape: -1 for the
    batch (shape[0]) and for each dimension the request sets, e.g. (-1,),
    (-1, k) or a graph model's (-1, -1, 256)."""

    name: str
    datatype: str
    shape: Tuple[int, ...]


class InputInfo(NamedTuple):
    """An input of a model: name, datatype ("FP64", "INT64"...), shape as
    OutputInfo's, e.g. (-1, 4) or a graph model's (-1, -1)."""

    name: str
    datatype: str
    shape: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A model (one version of it) the broker can serve, as amaas_models says.

    input, datatype, inputs and outputs are empty when the broker does not
    say (a broker older than these fields).  inputs lists every input (a
    graph model may have several); input and datatype are the first one's."""

    name: str
    version: str
    workers: int  # workers that serve this version now
    width: int  # features per input row (0 when not fixed)
    queued: int  # jobs waiting for this version
    input: str  # name of its (first) input tensor, e.g. "input"
    datatype: str  # that input's datatype, e.g. "FP32", "FP64", "INT64"
    outputs: List[OutputInfo]  # in the model's order
    mapped: int = 0  # bytes of its model file a worker maps
    inputs: List[InputInfo] = dataclasses.field(default_factory=list)  # in the model's order


def _error(err: _lib.Error) -> AmaasError:
    return AmaasError(err.code, err.message.decode("utf-8", "replace"))


def _version_key(version: str) -> Tuple[int, Union[int, str]]:
    """Versions compare as numbers when they are numbers, as the broker does."""
    return (1, int(version)) if version.isdigit() else (0, version)


class Future(concurrent.futures.Future):
    """The result of a job sent with Client.submit: a concurrent.futures.Future
    whose result() (and exception()) takes in results from libamaas until its
    own has come, so it needs no thread of its own.  result() returns a dict
    of output name -> numpy array, or raises the job's AmaasError.

    Once done: job_id is libamaas's id of the job, model_version the
    version that answered, queue_us / compute_us / batch the server's
    timings (None before, and for errors made by the client).

    concurrent.futures.wait() and as_completed() do not take results in: use
    Client.wait() and Client.as_completed() (or poll()) instead."""

    def __init__(self, client: "Client", job_id: int, outputs: Optional[Sequence[str]]) -> None:
        # What concurrent.futures.Future.__init__ sets, but with the client's
        # one Condition: a Condition per job would cost as much as the rest
        # of submit().  Futures only hold it while they change state.
        self._condition = client._condition
        self._state = _futures_base.PENDING
        self._result = None
        self._exception = None
        self._waiters: List[Any] = []
        self._done_callbacks: List[Any] = []
        self._client = client
        self.job_id = job_id
        self._outputs = outputs
        self.model_version: Optional[str] = None
        self.queue_us: Optional[int] = None
        self.compute_us: Optional[int] = None
        self.batch: Optional[int] = None

    def _finished(self) -> bool:
        return concurrent.futures.Future.done(self)

    def done(self) -> bool:
        """True once the job has its result; takes in the results waiting
        (without blocking) first."""
        if not self._finished():
            self._client.poll(0)
        return self._finished()

    def result(self, timeout: Optional[float] = None) -> Dict[str, np.ndarray]:
        """The job's outputs (name -> numpy array), waiting up to timeout
        seconds (None: until the job's deadline, when libamaas answers it
        DEADLINE_EXCEEDED).  Raises the job's AmaasError, or
        concurrent.futures.TimeoutError if timeout passed first."""
        if not self._finished():
            self._client._wait_for(self, timeout)
        return super().result(0)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The job's AmaasError, or None if it succeeded; waits as result()."""
        if not self._finished():
            self._client._wait_for(self, timeout)
        return super().exception(0)

    def cancel(self) -> bool:
        """Gives the job up (amaas_cancel: the broker drops it if it still
        can) unless it is done; True if it is cancelled."""
        if not self._finished():
            self._client._cancel(self)
        return super().cancel()


class Client:
    """A connection to an amaas broker (libamaas's amaas_client_t).

        with amaas.Client("tcp://127.0.0.1:5555") as client:
            y = client.predict("iris", np.array([[5.1, 3.5, 1.4, 0.2]]))["label"]

    endpoint may list several brokers, all active: "EP1,EP2" (libamaas
    spreads jobs over those that answer and resends to the others the jobs
    of one that stops answering).

    timeout (seconds) bounds the connection's round trip and is the
    deadline of a job sent without one.  server_key (the broker's public
    certificate) and cert (the client's key pair: cert and cert + "_secret",
    as `amaas keygen` writes them) connect over CURVE.  retries is the number
    of times a job is sent at most (libamaas's attempts; 1: never resent): a
    job is resent only when the broker is gone or a worker is lost, never
    because it is slow.  heartbeat (seconds) is how often the client checks
    the broker while jobs are pending.

    Raises AmaasError (Unavailable when the broker does not answer in
    time, InvalidArgument for unreadable keys; LibraryNotFound when
    libamaas cannot be loaded)."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", timeout: float = 30.0,
                 server_key: Optional[str] = None, cert: Optional[str] = None,
                 retries: int = 3, heartbeat: float = 1.0) -> None:
        self._handle: Optional[int] = None  # first: close() must work if __init__ fails
        if (server_key is None) != (cert is None):
            raise AmaasError(Code.INVALID_ARGUMENT,
                             "CURVE needs both server_key (the broker's public certificate) "
                             "and cert (this client's key pair)")
        if not timeout > 0 or retries < 1 or not heartbeat > 0:
            raise AmaasError(Code.INVALID_ARGUMENT,
                             "timeout and heartbeat must be > 0 seconds, retries >= 1")
        lib = _lib.load_library()
        self._lib = lib
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self._timeout_ms = max(1, int(round(self.timeout * 1000)))
        self._lock = threading.Lock()
        self._condition = threading.Condition()  # of every Future of this client
        self._err = _lib.Error()
        self._err_ref = ctypes.byref(self._err)
        self._opts = _lib.Options()
        self._opts_ref = ctypes.byref(self._opts)
        self._tensors = (_lib.Tensor * _lib.MAX_TENSORS)()
        self._pending: Dict[int, Future] = {}
        self._names: Dict[str, bytes] = {}  # model name -> its bytes
        self._inputs: Dict[Tuple[str, Optional[str]], bytes] = {}  # (model, version) -> input name
        self._inputs_fetched = -1e9  # when models() last filled _inputs (monotonic)
        if server_key is None:
            handle = lib.amaas_connect(endpoint.encode(), self._timeout_ms, self._err_ref)
        else:
            handle = lib.amaas_connect_curve(endpoint.encode(), self._timeout_ms,
                                             str(server_key).encode(), str(cert).encode(),
                                             self._err_ref)
        if not handle:
            raise _error(self._err)
        self._handle = handle
        lib.amaas_set_timeout(handle, self._timeout_ms)
        lib.amaas_set_retry(handle, int(retries), max(1, int(round(heartbeat * 1000))))
        # bound once: the hot paths call these for every job
        self._send = lib.amaas_send_opts
        self._recv = lib.amaas_recv
        self._destroy = lib.amaas_result_destroy

    # -- life ---------------------------------------------------------------

    def close(self) -> None:
        """Closes the connection.  Jobs still pending are given up: their
        Futures fail with Cancelled.  Calling it again does nothing."""
        with self._lock:
            if self._handle is None:
                return
            handle = ctypes.c_void_p(self._handle)
            self._handle = None
            self._lib.amaas_close(ctypes.byref(handle))
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future._finished():
                future.set_exception(AmaasError(Code.CANCELLED, "the client was closed"))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _live(self) -> int:
        if self._handle is None:
            raise AmaasError(Code.CANCELLED, "the client is closed")
        return self._handle

    # -- jobs ---------------------------------------------------------------

    def submit(self, model: str, X: Inputs, *, version: Optional[str] = None,
               outputs: Optional[Sequence[str]] = None, deadline: Optional[float] = None,
               priority: int = 0) -> Future:
        """Sends one job without waiting; returns its Future.

        X is the model's input: an array (sent as the tensor the model's
        metadata names, else "input"), or a dict of input name -> array.
        version asks for that version of the model (default: the highest the
        broker serves).  outputs names the outputs wanted (default: all; an
        unknown name fails the job with InvalidArgument).  deadline (seconds)
        is the job's lifetime (default: the client's timeout); priority is
        0 (default) .. 3 (most urgent).  Raises AmaasError (InvalidArgument)
        at once for a job that cannot be sent."""
        if isinstance(X, Mapping):
            named = list(X.items())
        else:
            named = [(self._input_name(model, version), X)]
        if not 1 <= len(named) <= _lib.MAX_TENSORS:
            raise AmaasError(Code.INVALID_ARGUMENT,
                             "a job takes 1..%d input tensors" % _lib.MAX_TENSORS)
        if not isinstance(priority, (int, np.integer)) or not 0 <= priority <= 3:
            raise AmaasError(Code.INVALID_ARGUMENT, "priority must be 0..3, got %r" % (priority,))
        deadline_ms = 0
        if deadline is not None:
            if not deadline > 0:
                raise AmaasError(Code.INVALID_ARGUMENT,
                                 "deadline must be > 0 seconds, got %r" % (deadline,))
            deadline_ms = min(max(1, int(round(deadline * 1000))), 0xFFFFFFFF)
        if outputs is not None:
            if isinstance(outputs, str):
                outputs = [outputs]
            outputs = list(outputs)
        name = self._names.get(model)
        if name is None:
            name = self._names[model] = model.encode()
        keep = []  # what the tensors point to, alive until amaas_send_opts returns
        tensors = self._tensors
        with self._lock:
            handle = self._live()
            for i, (input_name, value) in enumerate(named):
                keep.append(_fill(tensors[i], input_name, value))
            opts = self._opts
            opts.deadline_ms = deadline_ms
            opts.priority = int(priority)
            opts.version = str(version).encode() if version is not None else None
            job_id = self._send(handle, name, tensors, len(named), self._opts_ref, self._err_ref)
            if not job_id:
                raise _error(self._err)
            future = Future(self, job_id, outputs)
            self._pending[job_id] = future
        return future

    def predict(self, model: str, X: Inputs, *, version: Optional[str] = None,
                outputs: Optional[Sequence[str]] = None, deadline: Optional[float] = None,
                priority: int = 0) -> Dict[str, np.ndarray]:
        """Sends one job and waits for its outputs: a dict of output name ->
        numpy array.  Arguments as submit(); raises the job's AmaasError
        (NotFound, InvalidArgument, DeadlineExceeded, Unavailable...)."""
        return self.submit(model, X, version=version, outputs=outputs, deadline=deadline,
                           priority=priority).result()

    @property
    def pending(self) -> int:
        """Jobs submitted whose Future has no result yet."""
        return len(self._pending)

    def poll(self, timeout: float = 0.0) -> int:
        """Takes in the results that have come, waiting up to timeout seconds
        for the first if none has; completes their Futures.  Returns how
        many were taken in."""
        return self._collect(max(0, int(timeout * 1000)))

    def wait(self, futures: Optional[Iterable[Future]] = None,
             timeout: Optional[float] = None) -> bool:
        """Takes in results until every future given (default: every job
        pending) is done, or timeout seconds passed.  True if all are done."""
        todo = list(self._pending.values()) if futures is None else list(futures)
        end = None if timeout is None else time.monotonic() + timeout
        for future in todo:
            if future._finished():
                continue
            left = None if end is None else max(0.0, end - time.monotonic())
            self._wait_for(future, left)
            if not future._finished():
                return False
        return True

    def as_completed(self, futures: Iterable[Future],
                     timeout: Optional[float] = None) -> Iterator[Future]:
        """Yields the futures given as they complete, taking results in as it
        goes; concurrent.futures.TimeoutError if timeout seconds pass first."""
        todo = set(futures)
        end = None if timeout is None else time.monotonic() + timeout
        while todo:
            done = [f for f in todo if f._finished()]
            for future in done:
                todo.discard(future)
                yield future
            if not todo:
                return
            if end is not None and time.monotonic() >= end:
                raise concurrent.futures.TimeoutError("%d futures not done" % len(todo))
            left = _WAIT_SLICE_MS if end is None else \
                min(_WAIT_SLICE_MS, int((end - time.monotonic()) * 1000))
            self._collect(max(0, left))

    def stats(self) -> Tuple[int, int]:
        """(attempts resent, answers dropped as duplicates) since connect,
        libamaas's counters."""
        resent, duplicates = ctypes.c_uint64(), ctypes.c_uint64()
        with self._lock:
            self._lib.amaas_stats(self._live(), ctypes.byref(resent), ctypes.byref(duplicates))
        return resent.value, duplicates.value

    # -- models ---------------------------------------------------------------

    def models(self) -> List[ModelInfo]:
        """The models (each version) the broker serves.  Raises AmaasError
        (Unavailable when the broker does not answer within the timeout)."""
        size = 64
        while True:
            table = (_lib.ModelInfo * size)()  # zeroed: fields a broker does not fill stay ""
            with self._lock:
                n = self._lib.amaas_models(self._live(), table, size, self._err_ref)
            if n < 0:
                raise _error(self._err)
            if n <= size:
                break
            size = n
        return [_model_info(table[i]) for i in range(n)]

    def _input_name(self, model: str, version: Optional[Any]) -> str:
        """Name of the model's input tensor from its metadata (models(),
        asked once per model, at most once a second), "input" if unknown."""
        if version is not None:
            version = str(version)
        name = self._inputs.get((model, version))
        if name is None and time.monotonic() - self._inputs_fetched > 1.0:
            self._inputs_fetched = time.monotonic()
            try:
                listed = self.models()
            except AmaasError:
                listed = []
            highest: Dict[str, ModelInfo] = {}
            for m in listed:
                self._inputs[(m.name, m.version)] = m.input or "input"
                if m.name not in highest or \
                        _version_key(m.version) > _version_key(highest[m.name].version):
                    highest[m.name] = m
            for m in highest.values():
                self._inputs[(m.name, None)] = m.input or "input"
            name = self._inputs.get((model, version))
        return name or self._inputs.get((model, None)) or "input"

    # -- results --------------------------------------------------------------

    def _cancel(self, future: Future) -> None:
        with self._lock:
            if self._pending.pop(future.job_id, None) is not None and self._handle is not None:
                self._lib.amaas_cancel(self._handle, future.job_id)

    def _wait_for(self, future: Future, timeout: Optional[float]) -> None:
        """Takes in results until future is done or timeout seconds passed."""
        end = None if timeout is None else time.monotonic() + timeout
        while not future._finished():
            if end is None:
                wait_ms = _WAIT_SLICE_MS
            else:
                left = end - time.monotonic()
                if left <= 0:
                    return
                wait_ms = min(_WAIT_SLICE_MS, max(1, int(left * 1000)))
            if self._collect(wait_ms) == 0 and not future._finished() \
                    and future.job_id not in self._pending:
                return  # cancelled, or the client closed: the future says so

    def _collect(self, wait_ms: int) -> int:
        """amaas_recv: waits up to wait_ms for a result, then takes in every
        result waiting.  Returns how many."""
        taken = 0
        recv, destroy, err_ref = self._recv, self._destroy, self._err_ref
        while True:
            with self._lock:
                if self._handle is None:
                    return taken
                r = recv(self._handle, wait_ms if taken == 0 else 0, err_ref)
                if not r:
                    return taken
                try:
                    result = r.contents
                    future = self._pending.pop(result.id, None)
                    if future is not None:
                        outcome = _outcome(result, future)
                finally:
                    destroy(ctypes.byref(r))
            taken += 1
            if future is None:
                continue  # cancelled meanwhile
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _fill(t: _lib.Tensor, name: str, value: ArrayLike) -> Tuple[Any, ...]:
    """Fills amaas_tensor_t t with input `name` = value; returns what t points
    to, which must stay alive while t is used."""
    arr = value if type(value) is np.ndarray else _as_array(name, value)
    datatype = _DTYPE_OF.get(arr.dtype)
    if datatype is None:
        arr, datatype = _convert(name, arr)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    ndim = arr.ndim
    if not 1 <= ndim <= _lib.MAX_DIMS:
        raise AmaasError(Code.INVALID_ARGUMENT,
                         "input '%s' has %d dimensions; a tensor has 1..%d (rows first)"
                         % (name, ndim, _lib.MAX_DIMS))
    encoded = name.encode()
    t.name = encoded
    t.datatype = datatype
    t.ndim = ndim
    shape = t.shape
    for d, n in enumerate(arr.shape):
        shape[d] = n
    if datatype == _lib.BYTES:
        data = _bytes_payload(name, arr)
        t.data = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)
        t.size = len(data)
        return encoded, data
    try:
        # the fast way to the address (arr.ctypes.data takes several times as long)
        t.data = _addressof(_char_at(arr))
    except (TypeError, ValueError):  # read-only or empty
        t.data = arr.ctypes.data
    t.size = arr.nbytes
    return encoded, arr


_char_at = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def _as_array(name: str, value: ArrayLike) -> np.ndarray:
    """A numpy array of value: numpy arrays as they are, other values (lists)
    as float64."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AmaasError(Code.INVALID_ARGUMENT,
                         "input '%s' is not an array of numbers (%s); pass a numpy array "
                         "for other datatypes" % (name, e)) from None


def _convert(name: str, arr: np.ndarray) -> Tuple[np.ndarray, int]:
    """An array of a dtype with no fast path: big-endian numbers (swapped),
    bytes and str (BYTES); InvalidArgument for the rest."""
    if arr.dtype.kind in "SUO":
        return arr, _lib.BYTES
    native = arr.dtype.newbyteorder("<")
    if native in _DTYPE_OF:
        return arr.astype(native), _DTYPE_OF[native]
    raise AmaasError(Code.INVALID_ARGUMENT,
                     "input '%s' has dtype %s; amaas takes float32, float64, int32, int64, "
                     "uint8, bool, and bytes or str (BYTES)" % (name, arr.dtype))


def _bytes_payload(name: str, arr: np.ndarray) -> bytes:
    """BYTES data: each element as a 4-byte little-endian length and its bytes
    (str as UTF-8)."""
    parts = []
    for element in arr.reshape(-1):
        if isinstance(element, str):
            element = element.encode("utf-8")
        elif not isinstance(element, (bytes, np.bytes_)):
            raise AmaasError(Code.INVALID_ARGUMENT,
                             "input '%s': a BYTES tensor holds bytes or str, not %s"
                             % (name, type(element).__name__))
        parts.append(struct.pack("<I", len(element)))
        parts.append(bytes(element))
    return b"".join(parts)


def _outcome(result: _lib.Result, future: Future) -> Union[Dict[str, np.ndarray], AmaasError]:
    """The outputs of a result, or its error; records its version and timings
    on future.  Copies the data: the result is freed after."""
    code = result.error.code
    if code:
        return _error(result.error)
    version = result.version
    future.model_version = version.decode() if version else None
    future.queue_us = result.queue_us
    future.compute_us = result.compute_us
    future.batch = result.batch
    outputs = {}
    tensors = result.outputs
    for i in range(result.n_outputs):
        t = tensors[i]
        name = t.name.decode()
        try:
            outputs[name] = _output_array(t)
        except ValueError as e:
            return AmaasError(Code.INTERNAL, "output '%s': %s" % (name, e))
    wanted = future._outputs
    if wanted is None:
        return outputs
    missing = [w for w in wanted if w not in outputs]
    if missing:
        return AmaasError(Code.INVALID_ARGUMENT,
                          "model '%s' has no output %s; it has %s"
                          % (result.model.decode(), ", ".join(repr(m) for m in missing),
                             ", ".join(repr(n) for n in outputs)))
    return {w: outputs[w] for w in wanted}


def _output_array(t: _lib.Tensor) -> np.ndarray:
    """A numpy array holding a copy of tensor t's data."""
    shape = tuple(t.shape[:t.ndim])
    size = t.size
    dtype = _NUMPY_OF.get(t.datatype)
    if dtype is not None:
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != size:
            raise ValueError("%d bytes for shape %s of %s" % (size, list(shape), dtype))
        arr = np.empty(shape, dtype)
        if size:
            ctypes.memmove(_addressof(_char_at(arr)), t.data, size)
        return arr
    if t.datatype == _lib.BYTES:
        data = ctypes.string_at(t.data, size) if size else b""
        elements = []
        at = 0
        while at < size:
            if at + 4 > size:
                raise ValueError("BYTES data cut inside a length")
            (n,) = struct.unpack_from("<I", data, at)
            at += 4
            if at + n > size:
                raise ValueError("BYTES element longer than the data")
            elements.append(data[at:at + n])
            at += n
        arr = np.empty(len(elements), dtype=object)
        arr[:] = elements
        try:
            return arr.reshape(shape)
        except ValueError:
            raise ValueError("%d BYTES elements for shape %s" % (len(elements), list(shape)))
    raise ValueError("unknown datatype %d" % t.datatype)


def _shape(t: Union[_lib.InputInfo, _lib.OutputInfo]) -> Tuple[int, ...]:
    return tuple(t.shape[d] for d in range(max(0, min(t.ndim, _lib.MAX_DIMS))))


def _model_info(m: _lib.ModelInfo) -> ModelInfo:
    outputs = []
    for i in range(min(m.n_outputs, _lib.MAX_OUTPUTS)):
        o = m.outputs[i]
        outputs.append(OutputInfo(o.name.decode(), _lib.DTYPE_NAMES.get(o.datatype, ""),
                                  _shape(o)))
    inputs = []
    for i in range(min(m.n_inputs, _lib.MAX_INPUTS)):
        t = m.inputs[i]
        inputs.append(InputInfo(t.name.decode(), _lib.DTYPE_NAMES.get(t.datatype, ""), _shape(t)))
    return ModelInfo(name=m.name.decode(), version=m.version.decode(), workers=m.workers,
                     width=m.width, queued=m.queued, input=m.input.decode(),
                     datatype=_lib.DTYPE_NAMES.get(m.datatype, ""), outputs=outputs,
                     mapped=m.mapped, inputs=inputs)
