"""The checks of tests/python/test_package.py, run by the Python of a venv into
which the amaas package (python/) was installed, so that what they exercise
is the installed package.

    V/bin/python tests/python/checks.py CHECK [ARGS...]

Each check asserts what it expects and ends by printing one JSON line (what
test_package.py may look at); a failed check exits non-zero with its
traceback.  pyamaas (tests/pyamaas.py, a client written from
docs/PROTOCOL.md alone) gives the reference answers.
"""
import concurrent.futures
import json
import os
import random
import sys

import numpy as np

import amaas
from amaas import Code

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(TESTS)  # after site-packages: `amaas` must be the installed one
import pyamaas  # noqa: E402

from dense32 import B, W  # noqa: E402  the FP32 model's weights


def expect_error(cls, code, function, *args, **kw):
    """The AmaasError that function(*args, **kw) raises, checked to be a cls
    with code."""
    try:
        function(*args, **kw)
    except amaas.AmaasError as e:
        assert isinstance(e, cls) and e.code == code and e.code.name == code.name, repr(e)
        assert str(e).startswith(code.name + ": ") and e.message, str(e)
        return e
    raise AssertionError("no %s from %s" % (code.name, function.__name__))


def reference(endpoint, model, X):
    with pyamaas.Client(endpoint, timeout_ms=10000) as c:
        return c.predict(model, {"input": X})


def check_installed():
    """The package imported is the venv's; without libamaas, a clear error."""
    assert os.path.realpath(amaas.__file__).startswith(os.path.realpath(sys.prefix)), \
        (amaas.__file__, sys.prefix)
    assert os.path.exists(os.path.join(os.path.dirname(amaas.__file__), "py.typed"))
    assert amaas.Code.NOT_FOUND == 5 and amaas.Code(14) is Code.UNAVAILABLE
    e = amaas.AmaasError(Code.NOT_FOUND, "no model 'x'")
    assert type(e) is amaas.NotFound and e.code is Code.NOT_FOUND, repr(e)
    assert amaas.AmaasError(99, "?").code is Code.UNKNOWN
    check_tensors()
    if os.environ.get("AMAAS_LIBRARY") == "/nonexistent/libamaas.so":
        try:
            amaas.Client("tcp://127.0.0.1:1", timeout=0.1)
            raise AssertionError("a Client without libamaas")
        except amaas.LibraryNotFound as e:
            assert isinstance(e, ImportError) and isinstance(e, amaas.AmaasError), repr(e)
            assert e.code is Code.UNAVAILABLE and "AMAAS_LIBRARY" in e.message, e.message
            assert "/nonexistent/libamaas.so" in e.message, e.message
    print(json.dumps({"file": amaas.__file__}))


def check_tensors():
    """Inputs to amaas_tensor_t and back to numpy (as outputs are read), for
    every datatype, BYTES included; no broker needed, only libamaas's structs."""
    lib = amaas.client._lib
    for arr, datatype in ((np.arange(6, dtype=np.float32).reshape(2, 3), lib.FP32),
                          (np.arange(6.0).reshape(3, 2)[::2], lib.FP64),  # not contiguous
                          (np.arange(4, dtype=np.int32), lib.INT32),
                          (np.arange(4, dtype=">i8"), lib.INT64),  # big-endian
                          (np.arange(4, dtype=np.uint8).reshape(1, 4), lib.UINT8),
                          (np.array([[True, False]]), lib.BOOL),
                          (np.array([b"ab", b"", "\u00e9t\u00e9"], dtype=object), lib.BYTES)):
        t = lib.Tensor()
        keep = amaas.client._fill(t, "x", arr)
        assert t.name == b"x" and t.datatype == datatype and t.ndim == arr.ndim, (arr, t.datatype)
        assert tuple(t.shape[:t.ndim]) == arr.shape
        back = amaas.client._output_array(t)
        del keep
        if datatype == lib.BYTES:
            assert back.dtype == object and list(back) == [b"ab", b"", "\u00e9t\u00e9".encode()]
            assert t.size == 4 * 3 + 2 + len("\u00e9t\u00e9".encode())
        else:
            assert back.dtype == arr.dtype.newbyteorder("<") and np.array_equal(back, arr), back
    readonly = np.ones((2, 2))
    readonly.flags.writeable = False
    t = lib.Tensor()
    keep = amaas.client._fill(t, "x", readonly)
    assert np.array_equal(amaas.client._output_array(t), readonly)


def check_predict(endpoint):
    """FP64 and FP32 in and out, lists, named inputs and outputs, versions."""
    rng = np.random.default_rng(1)
    with amaas.Client(endpoint, timeout=10) as client:
        # FP64 models: the outputs pyamaas gets, with the tensors' dtypes
        X = rng.random((5, 1))
        out = client.predict("linear", X)
        assert list(out) == ["predictions"], out
        assert out["predictions"].dtype == np.float64 and out["predictions"].shape == (5,)
        assert np.array_equal(out["predictions"], reference(endpoint, "linear", X)["predictions"])
        # a list is float64 rows
        listed = client.predict("linear", X.tolist())
        assert np.array_equal(listed["predictions"], out["predictions"])
        Xi = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
        out = client.predict("iris", Xi)
        ref = reference(endpoint, "iris", Xi)
        assert out["label"].dtype == np.int64 and out["label"].shape == (3,), out
        assert out["probabilities"].dtype == np.float64 and out["probabilities"].shape == (3, 3)
        assert np.array_equal(out["label"], ref["label"]) and \
            np.array_equal(out["probabilities"], ref["probabilities"])
        assert list(out["label"]) == [0, 2, 1], out["label"]
        # FP32 in is sent as FP32: the FP64 model answers in FP64 all the same
        t = amaas.client._lib.Tensor()
        amaas.client._fill(t, "input", Xi.astype(np.float32))
        assert t.datatype == amaas.client._lib.FP32 and t.size == Xi.size * 4
        amaas.client._fill(t, "input", Xi.astype(">f8"))  # big-endian: swapped, FP64
        assert t.datatype == amaas.client._lib.FP64 and t.size == Xi.size * 8
        out32 = client.predict("iris", Xi.astype(np.float32))
        assert out32["probabilities"].dtype == np.float64
        assert list(out32["label"]) == [0, 2, 1]
        # Named outputs, in the order asked for; an unknown one is refused
        only = client.predict("iris", Xi, outputs=["label"])
        assert list(only) == ["label"] and np.array_equal(only["label"], ref["label"]), only
        both = client.predict("iris", Xi, outputs=["probabilities", "label"])
        assert list(both) == ["probabilities", "label"], list(both)
        e = expect_error(amaas.InvalidArgument, Code.INVALID_ARGUMENT, client.predict, "iris", Xi,
                         outputs=["nope"])
        assert "'nope'" in e.message, e.message
        # The FP32 model: float32 out whatever comes in; versions
        X3 = rng.random((4, 3)).astype(np.float32)
        want = {v: X3 @ W[v] + B[v] for v in W}
        for X in (X3, X3.astype(np.float64), {"features": X3}):
            future = client.submit("dense32", X)
            out = future.result(timeout=10)
            assert list(out) == ["y"] and out["y"].dtype == np.float32 and out["y"].shape == (4, 2)
            assert np.allclose(out["y"], want["2"], rtol=1e-5, atol=1e-6), (out, want["2"])
            assert future.model_version == "2" and future.batch >= 1, future.model_version
        for v in ("1", "2"):
            future = client.submit("dense32", X3, version=v)
            assert np.allclose(future.result()["y"], want[v], rtol=1e-5, atol=1e-6)
            assert future.model_version == v
        expect_error(amaas.NotFound, Code.NOT_FOUND, client.predict, "dense32", X3, version="7")
        # The input's name comes from the model's metadata, when the broker gives it
        named = {m.name: m.input for m in client.models()}
        assert client._input_name("dense32", None) == (named["dense32"] or "input")
        # a priority and a deadline that leave time to compute
        out = client.predict("linear", X3[:, :1], priority=3, deadline=10.0)
        assert out["predictions"].shape == (4,)
    print(json.dumps({"ok": True}))


def check_pipeline(endpoint, jobs):
    """`jobs` futures on one connection, collected in a random order and by
    wait() / as_completed(): each exactly once, each right."""
    jobs = int(jobs)
    with amaas.Client(endpoint, timeout=60) as client:
        b = client.predict("linear", np.zeros((1, 1)))["predictions"][0]
        a = client.predict("linear", np.ones((1, 1)))["predictions"][0] - b
        xs = np.arange(jobs, dtype=np.float64) / jobs
        done = []
        futures = []
        for x in xs:
            future = client.submit("linear", np.array([[x]]))
            future.add_done_callback(lambda f: done.append(f.job_id))
            futures.append(future)
        assert len({f.job_id for f in futures}) == jobs
        # one given up before its result is asked for
        spare = client.submit("linear", np.array([[0.5]]))
        assert spare.cancel() and spare.cancelled()
        try:
            spare.result()
            raise AssertionError("a cancelled future has a result")
        except concurrent.futures.CancelledError:
            pass
        order = list(range(jobs))
        random.Random(7).shuffle(order)
        first, second, third = order[:jobs // 2], order[jobs // 2:3 * jobs // 4], order[3 * jobs // 4:]
        for i in first:
            y = futures[i].result(timeout=60)["predictions"]
            assert y.shape == (1,) and abs(y[0] - (a * xs[i] + b)) <= 1e-9 * max(1, abs(y[0])), \
                (i, y, a * xs[i] + b)
        assert client.wait([futures[i] for i in second], timeout=60)
        seen = [f for f in client.as_completed([futures[i] for i in third], timeout=60)]
        assert len(seen) == len(third) and set(seen) == {futures[i] for i in third}
        for i in second + third:
            assert futures[i].done() and futures[i].exception() is None
            y = futures[i].result(0)["predictions"][0]
            assert abs(y - (a * xs[i] + b)) <= 1e-9 * max(1, abs(y)), (i, y)
        assert sorted(done) == sorted(f.job_id for f in futures), "callbacks not once each"
        assert client.pending == 0
        resent, duplicates = client.stats()
    print(json.dumps({"jobs": jobs, "resent": resent, "duplicates": duplicates}))


def check_models(endpoint):
    with amaas.Client(endpoint, timeout=10) as client:
        models = client.models()
    by = {(m.name, m.version): m for m in models}
    assert set(by) == {("linear", "1"), ("iris", "1"), ("dense32", "1"), ("dense32", "2")}, by
    assert by[("iris", "1")].width == 4 and by[("linear", "1")].width == 1
    assert by[("dense32", "2")].width == 3 and all(m.workers == 1 for m in models), models
    assert all(isinstance(m, amaas.ModelInfo) and m.queued == 0 and m.mapped > 0 for m in models)
    d = by[("dense32", "2")]
    # input, datatype and outputs: empty while the broker does not fill them
    if d.input:
        assert d.input == "features" and d.datatype == "FP32", d
        assert d.outputs == [("y", "FP32", (-1, 2))], d.outputs
        assert d.inputs == [("features", "FP32", (-1, 3))], d.inputs
        iris = by[("iris", "1")]
        assert iris.outputs == [("probabilities", "FP64", (-1, 3)), ("label", "INT64", (-1,))]
        assert iris.inputs == [amaas.InputInfo("input", "FP64", (-1, 4))], iris.inputs
        assert isinstance(iris.inputs[0], amaas.InputInfo) and iris.inputs[0].shape == (-1, 4)
    else:
        assert d.datatype == "" and d.outputs == [] and d.inputs == [], d
    print(json.dumps([[m.name, m.version, m.input] for m in models]))


def check_graph_models(endpoint):
    """A fake worker serves `graph` (a graph model's metadata: two INT64
    inputs [-1, -1], outputs of rank 3, 2, 1) and `old` (announced as a
    worker older than inputs and shapes: input x, width 3, an output of
    width 2): models() lists every input and output with its shape, and a
    dict of two INT64 [2, 3] arrays reaches the worker and its outputs come
    back with their shapes."""
    with amaas.Client(endpoint, timeout=10) as client:
        by = {m.name: m for m in client.models()}
        g, old = by["graph"], by["old"]
        assert (g.input, g.datatype, g.width) == ("input_ids", "INT64", 0), g
        assert g.inputs == [("input_ids", "INT64", (-1, -1)),
                            ("attention_mask", "INT64", (-1, -1))], g.inputs
        assert g.outputs == [("hidden", "FP32", (-1, -1, 4)), ("logits", "FP32", (-1, 2)),
                             ("label", "INT64", (-1,))], g.outputs
        assert old.inputs == [("x", "FP32", (-1, 3))], old.inputs
        assert old.outputs == [("y", "FP32", (-1, 2))], old.outputs
        ids = np.array([[101, 7, 102], [101, -5, 2 ** 62]], dtype=np.int64)
        mask = np.array([[1, 1, 1], [1, 1, 0]], dtype=np.int64)
        out = client.predict("graph", {"input_ids": ids, "attention_mask": mask})
        kept = (ids * mask).astype(np.float32)
        assert out["hidden"].dtype == np.float32 and out["hidden"].shape == (2, 3, 4)
        assert np.array_equal(out["hidden"], kept[:, :, None] * np.arange(1, 5, dtype=np.float32))
        assert out["logits"].shape == (2, 2) and out["label"].dtype == np.int64
    print(json.dumps({"inputs": [list(i) for i in g.inputs]}))


def check_errors(endpoint):
    with amaas.Client(endpoint, timeout=10) as client:
        e = expect_error(amaas.NotFound, Code.NOT_FOUND, client.predict, "nosuch", [[1.0]])
        assert "nosuch" in e.message, e.message
        e = expect_error(amaas.InvalidArgument, Code.INVALID_ARGUMENT, client.predict, "iris",
                         np.ones((2, 3)))
        assert "4" in e.message, e.message  # the width the model wants
        future = client.submit("iris", np.ones((2, 5)))
        assert isinstance(future.exception(10), amaas.InvalidArgument)
        # refused before sending
        for kw in ({"priority": 4}, {"deadline": 0}, {"deadline": -1.0}):
            expect_error(amaas.InvalidArgument, Code.INVALID_ARGUMENT, client.submit, "iris",
                         np.ones((1, 4)), **kw)
        expect_error(amaas.InvalidArgument, Code.INVALID_ARGUMENT, client.submit, "iris",
                     np.ones((1, 4), dtype=np.complex128))
        expect_error(amaas.InvalidArgument, Code.INVALID_ARGUMENT, client.submit, "iris",
                     np.float64(1.0))
        expect_error(amaas.InvalidArgument, Code.INVALID_ARGUMENT, client.submit, "iris",
                     [["a", "b"]])
        # the client still works
        assert client.predict("iris", np.ones((1, 4)))["label"].shape == (1,)
    expect_error(amaas.InvalidArgument, Code.INVALID_ARGUMENT, amaas.Client, endpoint,
                 server_key="/nonexistent")
    closed = amaas.Client(endpoint, timeout=10)
    pending = closed.submit("linear", np.ones((1, 1)))
    closed.close()
    closed.close()
    assert isinstance(pending.exception(), amaas.Cancelled)
    expect_error(amaas.Cancelled, Code.CANCELLED, closed.submit, "linear", np.ones((1, 1)))
    print(json.dumps({"ok": True}))


def check_deadline(endpoint):
    """Every worker is stopped (test_package.py): a job ends at its deadline."""
    with amaas.Client(endpoint, timeout=10) as client:
        e = expect_error(amaas.DeadlineExceeded, Code.DEADLINE_EXCEEDED, client.predict, "linear",
                         np.ones((1, 1)), deadline=0.2)
        futures = [client.submit("linear", np.ones((1, 1)), deadline=0.1) for _ in range(3)]
        assert client.wait(futures, timeout=30)
        assert all(isinstance(f.exception(), amaas.DeadlineExceeded) for f in futures)
        # a result() that times out is not the job's end
        slow = client.submit("linear", np.ones((1, 1)), deadline=5.0)
        try:
            slow.result(timeout=0.05)
            raise AssertionError("a result from a stopped worker")
        except concurrent.futures.TimeoutError:
            assert not slow.done()
        slow.cancel()
    print(json.dumps({"message": e.message}))


def check_curve(endpoint, server_key, cert):
    with amaas.Client(endpoint, timeout=10, server_key=server_key, cert=cert) as client:
        y = client.predict("linear", np.ones((2, 1)))["predictions"]
        assert y.shape == (2,)
    # plaintext to a CURVE broker: no answer
    expect_error(amaas.Unavailable, Code.UNAVAILABLE, amaas.Client, endpoint, timeout=1.0)
    expect_error(amaas.InvalidArgument, Code.INVALID_ARGUMENT, amaas.Client, endpoint,
                 timeout=1.0, server_key=server_key, cert=cert + ".missing")
    print(json.dumps({"ok": True}))


def check_restart(endpoint):
    """Talks with test_package.py on stdin/stdout: 'ready' once connected,
    waits for 'go' (the broker frozen), sends a job, says 'sent', then
    waits for its result, which comes from the restarted broker."""
    with amaas.Client(endpoint, timeout=60, retries=10) as client:
        b = client.predict("linear", np.zeros((1, 1)))["predictions"][0]
        a = client.predict("linear", np.ones((1, 1)))["predictions"][0] - b
        print("ready", flush=True)
        assert sys.stdin.readline().strip() == "go"
        future = client.submit("linear", np.array([[0.25]]))
        print("sent", flush=True)
        y = future.result(timeout=60)["predictions"][0]
        assert abs(y - (0.25 * a + b)) <= 1e-9 * max(1.0, abs(y)), y
        resent, duplicates = client.stats()
        assert client.pending == 0
    print(json.dumps({"resent": resent, "duplicates": duplicates, "y": y}))


if __name__ == "__main__":
    globals()["check_" + sys.argv[1]](*sys.argv[2:])
