"""The Python package amaas (python/): installed with pip into a fresh venv
(Debian's python3, --system-site-packages, offline), then run by that venv's
Python against real clusters (tests/python/checks.py holds the checks):
predictions in FP64 and FP32 with named inputs, outputs and versions, 5,000
futures pipelined on one connection, models() (with a graph model's inputs
and shapes, from a fake worker), errors as exceptions with
their codes, deadlines, CURVE, and a job sent again after a broker restart.
Run: ctest -R python_package, or pytest --build-dir BUILD tests/python/test_package.py"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, HERE)
import dense32  # noqa: E402
from fake_worker import GRAPH_MODEL, FakeWorker  # noqa: E402
from harness import Cluster, build_dir, stopped, wait_for  # noqa: E402

BUILD = build_dir()
LIBRARY = os.path.join(BUILD, "libamaas.so")
EXAMPLES = os.path.join(ROOT, "examples", "models")
PY = "/usr/bin/python3"
CHECKS = os.path.join(HERE, "checks.py")
# long enough (3 x 10 s) that the broker keeps a worker the test stopped
STOPPABLE = 10000


def models_dir():
    """linear and iris of examples/models, and dense32 versions 1 and 2 (the
    weights tests/python/checks.py expects)."""
    folder = tempfile.mkdtemp(prefix="amaas-py-models-")
    for name in ("linear.amm", "iris.amm"):
        shutil.copy(os.path.join(EXAMPLES, name), folder)
    for v in ("1", "2"):
        dense32.write(os.path.join(folder, "dense32-v%s.amm" % v), v)
    return folder


def sanitized():
    """Whether BUILD is an ASan + UBSan build (its libamaas needs the
    sanitizers' runtimes preloaded into Python)."""
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            return "AMAAS_SANITIZE:BOOL=ON" in f.read()
    except OSError:
        return False


def venv_env(**extra):
    env = dict(os.environ, AMAAS_LIBRARY=LIBRARY, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    if sanitized():
        runtimes = []
        for name in ("libasan.so", "libubsan.so"):
            path = subprocess.run(["gcc", "-print-file-name=" + name], capture_output=True,
                                  text=True).stdout.strip()
            runtimes.append(path)
        env["LD_PRELOAD"] = ":".join(runtimes)
        # Python itself leaks on purpose at exit: libamaas's leaks are the
        # C tests' business
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv():
    """A venv with the package installed from a copy of python/ (so that the
    build leaves nothing in the source tree); its python's path."""
    tmp = tempfile.mkdtemp(prefix="amaas-py-venv-")
    source = os.path.join(tmp, "src")
    shutil.copytree(os.path.join(ROOT, "python"), source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    v = os.path.join(tmp, "venv")
    subprocess.run([PY, "-m", "venv", "--system-site-packages", v], check=True, timeout=120)
    r = subprocess.run([os.path.join(v, "bin", "pip"), "install", "--no-index",
                        "--no-build-isolation", "--no-cache-dir", "--disable-pip-version-check",
                        source], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "pip install failed:\n%s\n%s" % (r.stdout, r.stderr)
    yield os.path.join(v, "bin", "python")
    shutil.rmtree(tmp, ignore_errors=True)


def check(python, name, *args, env=None, timeout=180):
    """Runs check_NAME of checks.py with the venv's python; its JSON line."""
    r = subprocess.run([python, CHECKS, name] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, env=env or venv_env(), cwd=tempfile.gettempdir())
    assert r.returncode == 0, "check %s failed (exit %d):\n%s\n%s" % (name, r.returncode,
                                                                      r.stdout, r.stderr)
    print(r.stdout.strip())
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster():
    with Cluster(BUILD, models_dir(), workers=1, heartbeat_ms=STOPPABLE) as c:
        yield c


def test_installed(venv):
    out = check(venv, "installed")
    assert out["file"].startswith(os.path.dirname(os.path.dirname(venv))), out
    check(venv, "installed", env=venv_env(AMAAS_LIBRARY="/nonexistent/libamaas.so"))


def test_predict(venv, cluster):
    check(venv, "predict", cluster.frontend)


def test_pipeline_5000_futures(venv, cluster):
    out = check(venv, "pipeline", cluster.frontend, 5000)
    assert out["jobs"] == 5000 and out["resent"] == 0, out


def test_models(venv, cluster):
    check(venv, "models", cluster.frontend)


def test_graph_models(venv):
    """models() of a graph model's metadata and of an older worker's, and a
    job of two named INT64 inputs, against a fake worker (no model file)."""
    old = {"name": "old", "version": "1", "width": 3, "mapped": 0, "input": "x",
           "datatype": "FP32", "outputs": [{"name": "y", "datatype": "FP32", "width": 2}]}
    with Cluster(BUILD, models_dir(), workers=0) as c, \
            FakeWorker(c.backend, [GRAPH_MODEL, old]) as w:
        out = check(venv, "graph_models", c.frontend)
        assert out["inputs"][1] == ["attention_mask", "INT64", [-1, -1]], out
        header, inputs = w.jobs[-1]
        assert sorted(inputs) == ["attention_mask", "input_ids"], inputs


def test_errors(venv, cluster):
    check(venv, "errors", cluster.frontend)


def test_deadline(venv, cluster):
    with stopped(cluster.workers[0]):
        out = check(venv, "deadline", cluster.frontend)
    print(out)


def keygen(folder, name):
    r = subprocess.run([os.path.join(BUILD, "amaas"), "keygen", name, "--dir", folder],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return os.path.join(folder, name + ".key")


def test_curve(venv):
    keys = tempfile.mkdtemp(prefix="amaas-py-keys-")
    broker, worker, alice, ops = (keygen(keys, n) for n in ("broker", "w1", "alice", "ops"))
    for folder, key in (("clients", alice), ("workers", worker), ("operators", ops)):
        os.makedirs(os.path.join(keys, folder))
        shutil.copy(key, os.path.join(keys, folder))
    with Cluster(BUILD, EXAMPLES, workers=1,
                 broker_args=["--curve-cert", broker, "--clients", os.path.join(keys, "clients"),
                              "--workers", os.path.join(keys, "workers"),
                              "--operators", os.path.join(keys, "operators")],
                 worker_args=["--server-key", broker, "--cert", worker],
                 cli_args=["--server-key", broker, "--cert", alice]) as c:
        check(venv, "curve", c.frontend, broker, alice)


def unread_bytes(endpoint):
    """Bytes that reached the process listening on endpoint over its open
    connections and that it has not read (/proc/net/tcp), as test_chaos.py."""
    port = int(endpoint.rsplit(":", 1)[1])
    total = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                total += int(fields[4].split(":")[1], 16)
    return total


def test_resent_after_broker_restart(venv):
    # The broker frozen until the job reached it, then killed and started
    # again: libamaas sees the new epoch and sends the job again, once
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        p = subprocess.Popen([venv, CHECKS, "restart", c.frontend], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=venv_env(), cwd=tempfile.gettempdir())
        try:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
            c.expected_exits.add(c.broker)
            c.broker.send_signal(signal.SIGSTOP)
            p.stdin.write("go\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "sent", p.stderr.read()
            wait_for("the job to reach the frozen broker", lambda: unread_bytes(c.frontend) > 0)
            c.broker.send_signal(signal.SIGKILL)
            c.broker.wait(timeout=30)
            c.start_broker()
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, "restart check failed:\n%s\n%s" % (out, err)
        result = json.loads(out.strip().splitlines()[-1])
        print(result)
        assert result["resent"] >= 1, result
