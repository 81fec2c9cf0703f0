"""Integration: a real broker and workers on 127.0.0.1, clients in Python
(tests/pyamaas.py) and the amaas CLI.  Run: ctest -R integration_service, or pytest --build-dir BUILD tests/integration/test_service.py"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import amm_reference  # noqa: E402
import pyamaas  # noqa: E402
from harness import Cluster, build_dir  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
LINEAR = amm_reference.load(os.path.join(EXAMPLES, "linear.amm"))
IRIS = amm_reference.load(os.path.join(EXAMPLES, "iris.amm"))


def expect_linear(x):
    return amm_reference.run(LINEAR, x)["predictions"]


def jobs_done(cluster, index):
    """jobs_done= from a worker's last log line (written when it stops)."""
    log = open(os.path.join(cluster.tmp, "worker-%d.log" % (index + 1))).read()
    found = re.findall(r"jobs_done=(\d+)", log)
    return int(found[-1]) if found else None


def test_predictions_two_workers_share_the_work():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        rng = np.random.default_rng(1)
        with pyamaas.Client(c.frontend) as client:
            ids = {}
            for _ in range(400):
                x = rng.uniform(0, 1, size=(int(rng.integers(1, 5)), 1))
                ids[client.send("linear", {"input": x})] = x
            for jid, x in ids.items():
                out, header = client.recv(jid)
                np.testing.assert_allclose(out["predictions"], expect_linear(x), rtol=1e-12)
                assert header["model"] == "linear" and header["version"] == "1"
                assert header["queue_us"] >= 0 and header["compute_us"] >= 0
            x = rng.normal(5, 2, size=(50, 4))
            out = client.predict("iris", {"input": x})
            ref = amm_reference.run(IRIS, x)
            np.testing.assert_allclose(out["probabilities"], ref["probabilities"], rtol=1e-9)
            assert list(out["label"]) == list(ref["label"])
            assert sorted(m["name"] for m in client.models()) == ["iris", "linear"]
        assert not c.stop(), c.logs()
        done = [jobs_done(c, 0), jobs_done(c, 1)]
        assert sum(done) == 401, done
        assert min(done) > 0, "both workers must receive work: %s" % done


def test_kill_one_worker_the_other_serves():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        with pyamaas.Client(c.frontend, timeout_ms=10000) as client:
            x = np.array([[0.25]])
            np.testing.assert_allclose(client.predict("linear", {"input": x})["predictions"],
                                       expect_linear(x))
            assert c.kill_worker(0) == -signal.SIGKILL
            # Jobs sent right after the kill may be dispatched to the dead
            # worker before the broker notices: they must be requeued and
            # served by the survivor, none lost.
            xs = [np.array([[i / 100.0]]) for i in range(100)]
            ids = [client.send("linear", {"input": x}) for x in xs]
            for jid, x in zip(ids, xs):
                out, _ = client.recv(jid)
                np.testing.assert_allclose(out["predictions"], expect_linear(x), rtol=1e-12)
            c.wait_workers(1, "linear")
            out = client.predict("linear", {"input": np.array([[0.5]])})
            assert out["predictions"].shape == (1,)


def test_no_worker_for_model_is_not_found():
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        with pyamaas.Client(c.frontend) as client:
            try:
                client.predict("no-such-model", {"input": np.zeros((1, 1))})
            except pyamaas.AmaasError as e:
                assert e.code == pyamaas.NOT_FOUND, e
                assert "no-such-model" in e.message
            else:
                raise AssertionError("expected NOT_FOUND")
            # after the last worker leaves, its model is NOT_FOUND, not a hang
            assert c.kill_worker(0, signal.SIGTERM) == 0, c.logs()
            c.wait_workers(0, None, timeout=5) if c.models() else None
            try:
                client.predict("linear", {"input": np.zeros((1, 1))}, timeout_ms=5000)
            except pyamaas.AmaasError as e:
                assert e.code == pyamaas.NOT_FOUND, e
            else:
                raise AssertionError("expected NOT_FOUND")


def cli(c, *args, input_text=None):
    return subprocess.run([os.path.join(BUILD, "amaas"), "--broker", c.frontend] + list(args),
                          capture_output=True, text=True, timeout=30, input=input_text)


def test_cli_predict_and_models():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        r = cli(c, "predict", "--model", "linear", "--input", "[[0.5],[1.0]]")
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        np.testing.assert_allclose(got["predictions"], expect_linear(np.array([[0.5], [1.0]])),
                                   rtol=1e-15)
        tmp = tempfile.mkdtemp()
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        with open(os.path.join(tmp, "rows.json"), "w") as f:
            json.dump(rows, f)
        r = cli(c, "predict", "--model", "iris", "--input", "@" + os.path.join(tmp, "rows.json"))
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        ref = amm_reference.run(IRIS, np.array(rows))
        assert got["label"] == [int(v) for v in ref["label"]], (got, ref)
        np.testing.assert_allclose(got["probabilities"], ref["probabilities"], rtol=1e-12)
        shutil.rmtree(tmp)
        r = cli(c, "models")
        # name, version, input, workers, queued, bytes mapped
        assert r.returncode == 0 and re.search(r"^linear\s+1\s+\[-1,1\]\s+2\s+0\s+\d+ B$",
                                               r.stdout, re.M), r.stdout
        r = cli(c, "models", "--json")
        assert {m["name"]: m["workers"] for m in json.loads(r.stdout)} == {"iris": 2, "linear": 2}
        # errors: a clear message and exit status 1 or 2
        r = cli(c, "predict", "--model", "nope", "--input", "[[1]]")
        assert r.returncode == 1 and "NOT_FOUND" in r.stderr, r.stderr
        r = cli(c, "predict", "--model", "linear", "--input", "[[1, 2]]")
        assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr and "[rows, 1]" in r.stderr, r.stderr
        r = cli(c, "predict", "--model", "linear", "--input", "[[1],")
        assert r.returncode == 2 and "not valid JSON" in r.stderr, r.stderr
    r = subprocess.run([os.path.join(BUILD, "amaas"), "--broker", "tcp://127.0.0.1:1",
                        "--timeout", "300", "models"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, r.stderr


def test_batching_gives_identical_results():
    rng = np.random.default_rng(9)
    rows = [rng.normal(5, 2, size=(int(rng.integers(1, 4)), 4)) for _ in range(300)]
    results = {}
    for max_batch in ("1", "256"):
        with Cluster(BUILD, EXAMPLES, workers=1,
                     worker_args=["--max-batch", max_batch, "--credit", "64"]) as c:
            with pyamaas.Client(c.frontend) as client:
                ids = [client.send("iris", {"input": x}) for x in rows]
                got = [client.recv(j) for j in ids]
        results[max_batch] = got
        batches = [h.get("batch", 0) for _, h in got]
        if max_batch == "1":
            assert set(batches) == {1}, set(batches)
        else:
            assert max(batches) > 1, "no batch formed with 300 pipelined jobs"
            print("batching: largest batch %d jobs, mean %.1f" % (max(batches), np.mean(batches)))
    for (a, _), (b, _) in zip(results["1"], results["256"]):
        assert a["probabilities"].tobytes() == b["probabilities"].tobytes()
        assert list(a["label"]) == list(b["label"])


def test_small_job_alone_computed_by_the_io_thread_same_answer():
    # A small job that comes alone, while the compute thread is idle, is
    # computed on the worker's I/O thread; pipelined ones go to the compute
    # thread and batch.  The answers must not depend on which thread
    # computed them, and the worker must count every job it computed.
    rng = np.random.default_rng(11)
    rows = [rng.normal(0, 3, size=(1, 4)) for _ in range(100)]
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        with pyamaas.Client(c.frontend) as client:
            alone = [client.predict("iris", {"input": x}) for x in rows]
            ids = [client.send("iris", {"input": x}) for x in rows]
            together = [client.recv(j) for j in ids]
        assert not c.stop()
        log = open(os.path.join(c.tmp, "worker-1.log")).read()
    for a, (b, _) in zip(alone, together):
        assert a["probabilities"].tobytes() == b["probabilities"].tobytes()
        assert list(a["label"]) == list(b["label"])
    assert max(h.get("batch", 0) for _, h in together) > 1, "pipelined jobs did not batch"
    line = [l for l in log.splitlines() if "worker stopping" in l][-1]
    assert "computed=200 " in line, line
    # most of the jobs sent one at a time were computed on the I/O thread (and
    # perhaps a pipelined one that came alone), not the batched ones
    inlined = int(re.search(r"inlined=(\d+)", line).group(1))
    assert 50 <= inlined < 200, line


def test_help_on_every_program():
    for prog in ("amaas-broker", "amaas-worker", "amaas"):
        r = subprocess.run([os.path.join(BUILD, prog), "--help"], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 0 and "Usage" in r.stdout, (prog, r.stdout, r.stderr)
        r = subprocess.run([os.path.join(BUILD, prog), "--no-such-flag"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 2 and r.stderr, (prog, r.stderr)

