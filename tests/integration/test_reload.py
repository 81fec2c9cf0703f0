"""Integration: a worker loads, reloads and removes models without a restart
(inotify on its models folder, and SIGHUP).  Run: ctest -R integration_reload, or pytest --build-dir BUILD tests/integration/test_reload.py

Models are made here: scikit-learn LinearRegression fitted on exact points
(y = a x + b), exported with scripts/amaas-export, which writes a temporary
file in the same folder and renames it into place.  Every wait polls a
condition with a bounded timeout.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

import joblib
import numpy as np
from sklearn.linear_model import LinearRegression

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
import pyamaas  # noqa: E402
from harness import Cluster, build_dir, load_exporter, wait_for  # noqa: E402

BUILD = build_dir()
TIMEOUT = 15.0
X = np.array([[0.5], [2.0]])


EXPORT = load_exporter()


def export_linear(path, version, a, b, name="linear"):
    """Writes a model y = a x + b to path (by rename, as the exporter does)."""
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LinearRegression().fit(x, a * x[:, 0] + b)
    with tempfile.TemporaryDirectory() as tmp:
        pkl = os.path.join(tmp, "m.joblib")
        joblib.dump(model, pkl)
        rc = EXPORT.main([pkl, path, "--name", name, "--version", str(version)])
    assert rc == 0, rc


def replace_with_bytes(path, data):
    """Puts data at path by rename: a temporary file in the same folder."""
    tmp = os.path.join(os.path.dirname(path), ".incoming.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def versions(c, name):
    return sorted(m["version"] for m in c.models() if m["name"] == name)


def predict(c, name, version=None):
    with pyamaas.Client(c.frontend) as client:
        out, header = client.recv(client.send(name, {"input": X}, version=version),
                                  timeout_ms=5000)
        return out["predictions"], header["version"]


def worker_log(c):
    return "\n".join(open(p, errors="replace").read() for p in c._log_files
                     if os.path.basename(p).startswith("worker"))


def workers(c):
    r = subprocess.run([os.path.join(BUILD, "amaas"), "--control", c.control, "--timeout",
                        "2000", "workers", "--json"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["workers"]


def model_errors_reported(c):
    """model_errors of the worker's last READY: from `amaas workers --json` if
    the broker shows it, else from the worker's log ('ready sent ...')."""
    ws = workers(c)
    if ws and "model_errors" in ws[0]:
        return ws[0]["model_errors"], "amaas workers"
    found = re.findall(r"ready sent models=\d+ model_errors=(\d+)", worker_log(c))
    return (int(found[-1]) if found else 0), "worker log"


def refusals(c, path):
    return worker_log(c).count("model refused path=%s" % path)


def folder():
    d = tempfile.mkdtemp(prefix="amaas-reload-")
    export_linear(os.path.join(d, "linear.amm"), 1, 2.0, 1.0)
    return d


def test_replace_under_load_no_failed_job():
    d = folder()
    path = os.path.join(d, "linear.amm")
    with Cluster(BUILD, d, workers=1) as c:
        assert versions(c, "linear") == ["1"]
        bench = subprocess.Popen(
            [os.path.join(BUILD, "amaas"), "--broker", c.frontend, "bench", "--model", "linear",
             "--concurrency", "8", "--duration", "6", "--warmup", "0", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The bench is under way once the broker has answered jobs
            def answered():
                r = subprocess.run([os.path.join(BUILD, "amaas"), "--control", c.control,
                                    "--timeout", "2000", "status", "--json"],
                                   capture_output=True, text=True, timeout=10)
                return r.returncode == 0 and json.loads(r.stdout)["jobs"].get("OK", 0) > 200
            wait_for("the bench to run", answered)
            export_linear(path, 2, -3.0, 0.5)
            wait_for("version 2", lambda: versions(c, "linear") == ["2"])
            during = bench.poll() is None
            out, err = bench.communicate(timeout=60)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
        assert bench.returncode == 0, err
        result = json.loads(out)[0]
        errors = sum(result["errors"].values())
        print("bench while linear.amm was replaced (v1 -> v2%s): jobs=%d ok=%d errors=%s "
              "%.0f jobs/s" % ("" if during else ", after the bench ended!", result["jobs"],
                               result["ok"], result["errors"], result["jobs_per_s"]))
        assert errors == 0 and result["jobs"] > 0 and result["ok"] == result["jobs"], result
        values, version = predict(c, "linear")
        assert version == "2", version
        np.testing.assert_allclose(values, -3.0 * X[:, 0] + 0.5, rtol=1e-9)
        r = subprocess.run([os.path.join(BUILD, "amaas"), "--broker", c.frontend, "predict",
                            "--model", "linear", "--input", "[[0.5],[2.0]]"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(json.loads(r.stdout)["predictions"], [-1.0, -5.5], rtol=1e-9)
        assert "model loaded name=linear version=2" in worker_log(c)


def test_broken_files_keep_the_old_model_then_a_fix_is_picked_up():
    d = folder()
    path = os.path.join(d, "linear.amm")
    export_linear(path, 2, -3.0, 0.5)
    good = open(path, "rb").read()
    with Cluster(BUILD, d, workers=1) as c:
        assert versions(c, "linear") == ["2"]
        # Garbage bytes, by rename
        replace_with_bytes(path, b"\x93not a model\xff" * 100)
        wait_for("the garbage file refused", lambda: refusals(c, path) >= 1)
        # A truncated copy of a valid file, by rename
        replace_with_bytes(path, good[:len(good) // 2])
        wait_for("the truncated file refused", lambda: refusals(c, path) >= 2)
        values, version = predict(c, "linear")
        assert version == "2", version
        np.testing.assert_allclose(values, -3.0 * X[:, 0] + 0.5, rtol=1e-9)
        assert versions(c, "linear") == ["2"]
        errors, source = wait_for("model_errors >= 2 reported",
                                  lambda: (lambda e: e if e[0] >= 2 else None)(
                                      model_errors_reported(c)))
        print("model_errors=%d (seen in the %s)" % (errors, source))
        log = worker_log(c)
        assert "error" in log and "model refused path=%s" % path in log
        # A fixed file: version 3 serves
        export_linear(path, 3, 4.0, -1.0)
        wait_for("version 3", lambda: versions(c, "linear") == ["3"])
        values, version = predict(c, "linear")
        assert version == "3", version
        np.testing.assert_allclose(values, 4.0 * X[:, 0] - 1.0, rtol=1e-9)


def test_new_file_served_then_removed():
    d = folder()
    other = os.path.join(d, "other.amm")
    with Cluster(BUILD, d, workers=1) as c:
        export_linear(other, 1, 7.0, 0.0, name="other")
        wait_for("other served", lambda: versions(c, "other") == ["1"])
        values, _ = predict(c, "other")
        np.testing.assert_allclose(values, 7.0 * X[:, 0], rtol=1e-9)
        os.unlink(other)
        wait_for("other gone", lambda: versions(c, "other") == [])
        try:
            predict(c, "other")
        except pyamaas.AmaasError as e:
            assert e.code == pyamaas.NOT_FOUND, e
        else:
            raise AssertionError("a removed model still answers")
        r = subprocess.run([os.path.join(BUILD, "amaas"), "--broker", c.frontend, "predict",
                            "--model", "other", "--input", "[[1.0]]"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and "NOT_FOUND" in r.stderr, r.stderr
        assert versions(c, "linear") == ["1"]  # the other model never stopped


def test_last_model_removed_then_back():
    d = folder()
    path = os.path.join(d, "linear.amm")
    with Cluster(BUILD, d, workers=1) as c:
        os.unlink(path)
        # The worker serves nothing, stays registered, and the model is gone
        wait_for("linear gone", lambda: versions(c, "linear") == [])
        assert len(workers(c)) == 1 and workers(c)[0]["models"] == [], workers(c)
        try:
            predict(c, "linear")
        except pyamaas.AmaasError as e:
            assert e.code == pyamaas.NOT_FOUND, e
        else:
            raise AssertionError("a removed model still answers")
        export_linear(path, 2, 3.0, 0.0)
        wait_for("linear back", lambda: versions(c, "linear") == ["2"])
        values, version = predict(c, "linear")
        assert version == "2"
        np.testing.assert_allclose(values, 3.0 * X[:, 0], rtol=1e-9)


def test_two_versions_side_by_side():
    d = folder()
    with Cluster(BUILD, d, workers=1) as c:
        export_linear(os.path.join(d, "linear-10.amm"), 10, 5.0, 0.0)
        # Both files load; a JOB without version gets the highest (strverscmp: 10 > 1)
        wait_for("version 10 loaded",
                 lambda: "model loaded name=linear version=10" in worker_log(c))
        values, version = wait_for("version 10 served", lambda: (
            lambda r: r if r[1] == "10" else None)(predict(c, "linear")))
        np.testing.assert_allclose(values, 5.0 * X[:, 0], rtol=1e-9)


def test_sighup_rescans():
    d = folder()
    staging = tempfile.mkdtemp(prefix="amaas-staging-")
    export_linear(os.path.join(staging, "other.amm"), 1, 7.0, 0.0, name="other")
    with Cluster(BUILD, d, workers=1) as c:
        # A hard link makes only IN_CREATE, which the worker does not watch:
        # the file is picked up by the SIGHUP
        os.link(os.path.join(staging, "other.amm"), os.path.join(d, "other.amm"))
        c.workers[0].send_signal(signal.SIGHUP)
        wait_for("other served after SIGHUP", lambda: versions(c, "other") == ["1"])
        assert "rescanning models folder=%s reason=SIGHUP" % d in worker_log(c)
        assert c.workers[0].poll() is None  # SIGHUP does not stop the worker

