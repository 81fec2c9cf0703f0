"""Start and stop a real amaas cluster (broker + workers) for tests.

    with Cluster(build_dir, models_dir, workers=2) as c:
        c.frontend          # client endpoint, e.g. tcp://127.0.0.1:41234
        c.start_worker()    # one more worker
        c.kill_worker(0)    # SIGKILL the first
        c.models()          # [{"name", "version", "workers"}] via `amaas models --json`

The broker binds random free ports on 127.0.0.1 (czmq's tcp://127.0.0.1:!) and
writes the ports it got to a file, so tests never assume a port is free, and
two suites running at once on one machine do not meet on the same ports.  Every
process is stopped on exit, killed if it does not stop in time.  Logs go to
files in a temporary folder; c.logs() returns them, and they are printed when
the with-block raises.
"""
import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


class Cluster:
    def __init__(self, build_dir, models_dir, workers=1, heartbeat_ms=500,
                 broker_args=(), worker_args=(), ready_timeout=15.0, cli_args=(), env=None):
        self.build_dir = os.path.abspath(build_dir)
        self.models_dir = models_dir
        self.n_workers = workers
        self.heartbeat_ms = heartbeat_ms
        self.broker_args = list(broker_args)
        self.worker_args = list(worker_args)
        self.cli_args = list(cli_args)  # e.g. CURVE keys for `amaas models`
        self.env = dict(os.environ, **env) if env else None  # broker and workers only
        self.ready_timeout = ready_timeout
        self.tmp = tempfile.mkdtemp(prefix="amaas-test-")
        self.broker = None
        self.workers = []
        self.frontend = self.backend = None
        self._log_files = []
        self.expected_exits = set()  # processes a test stopped or killed on purpose

    def bin(self, name):
        return os.path.join(self.build_dir, name)

    def _spawn(self, args, label):
        path = os.path.join(self.tmp, "%s.log" % label)
        log = open(path, "wb")
        self._log_files.append(path)
        self._last_spawn = time.monotonic()
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.env)

    def start_broker(self):
        ep_file = os.path.join(self.tmp, "endpoints")
        if os.path.exists(ep_file):
            os.unlink(ep_file)
        # Reuse the same ports after a restart, so that workers and clients
        # find the broker again; first start takes ephemeral ones.
        front = self.frontend or "tcp://127.0.0.1:!"
        back = self.backend or "tcp://127.0.0.1:!"
        ctl = getattr(self, "control", None) or "tcp://127.0.0.1:!"
        self.broker = self._spawn(
            [self.bin("amaas-broker"), "--frontend", front, "--backend", back,
             "--control", ctl, "--endpoints-file", ep_file, "--heartbeat-ms", str(self.heartbeat_ms)]
            + self.broker_args, "broker-%d" % len(self._log_files))
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if self.broker.poll() is not None:
                raise RuntimeError("broker exited with %s\n%s" % (self.broker.returncode, self.logs()))
            if os.path.exists(ep_file):
                eps = dict(line.split("=", 1) for line in open(ep_file).read().split())
                if "control" in eps:
                    self.frontend, self.backend = eps["frontend"], eps["backend"]
                    self.control = eps["control"]
                    return
            time.sleep(0.02)
        raise RuntimeError("broker did not start\n" + self.logs())

    def start_worker(self, models_dir=None, extra_args=()):
        w = self._spawn(
            [self.bin("amaas-worker"), "--broker", self.backend,
             "--models", models_dir or self.models_dir,
             "--heartbeat-ms", str(self.heartbeat_ms)] + self.worker_args + list(extra_args),
            "worker-%d" % len(self._log_files))
        self.workers.append(w)
        return w

    def kill_worker(self, index, sig=signal.SIGKILL):
        w = self.workers[index]
        self.expected_exits.add(w)
        w.send_signal(sig)
        w.wait(timeout=10)
        return w.returncode

    def models(self):
        """Models the broker serves, from `amaas models --json`."""
        out = subprocess.run([self.bin("amaas"), "--broker", self.frontend, "--timeout", "2000"]
                             + self.cli_args + ["models", "--json"], capture_output=True,
                             timeout=10)
        if out.returncode != 0:
            return []
        return json.loads(out.stdout)

    def wait_workers(self, n, model=None, timeout=None):
        """Wait until `model` (or every model) is served by n workers."""
        deadline = time.time() + (timeout or self.ready_timeout)
        while time.time() < deadline:
            models = self.models()
            if models and all(m["workers"] == n for m in models
                              if model is None or m["name"] == model) \
                    and (model is None or any(m["name"] == model for m in models)):
                return models
            time.sleep(0.05)
        raise RuntimeError("workers did not register: %s\n%s" % (self.models(), self.logs()))

    def logs(self):
        text = []
        for path in self._log_files:
            try:
                data = open(path, "rb").read().decode("utf-8", "replace")
            except OSError:
                continue
            text.append("==> %s <==\n%s" % (os.path.basename(path), data[-4000:]))
        return "\n".join(text)

    def __enter__(self):
        try:
            self.start_broker()
            for _ in range(self.n_workers):
                self.start_worker()
            if self.n_workers:
                self.wait_workers(self.n_workers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """SIGTERM every process.  Returns the processes that did not exit 0
        of their own (crash, sanitizer report, hang), other than those a test
        stopped on purpose."""
        procs = [p for p in self.workers + [self.broker] if p is not None]
        # A process signalled before its main() installed its handlers dies
        # of the signal: give the youngest a moment to start
        young = getattr(self, "_last_spawn", 0) + 0.3 - time.monotonic()
        if young > 0:
            time.sleep(young)
        bad = [p for p in procs if p.poll() is not None and p.returncode != 0
               and p not in self.expected_exits]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                bad.append(p)
            if p.returncode != 0 and p not in self.expected_exits and p not in bad:
                bad.append(p)
            self.expected_exits.add(p)
        return bad

    def __exit__(self, kind, value, tb):
        bad = self.stop()
        if kind is not None and not issubclass(kind, KeyboardInterrupt):
            sys.stderr.write(self.logs() + "\n")
        elif bad:
            raise RuntimeError("processes exited badly: %s\n%s"
                               % ([(p.args[0], p.returncode) for p in bad], self.logs()))
        return False


def wait_for(what, condition, timeout=30.0):
    """The first true value of condition(), polled until timeout seconds;
    AssertionError naming `what` if it never comes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.05)


def load_exporter():
    """scripts/amaas-export as a Python module (its main() takes argv)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                        "amaas-export")
    loader = importlib.machinery.SourceFileLoader("amaas_export", path)
    spec = importlib.util.spec_from_loader("amaas_export", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def build_dir():
    """The build folder under test: pytest's --build-dir (tests/conftest.py)
    or AMAAS_BUILD_DIR; RuntimeError saying how to give it if neither is set."""
    path = os.environ.get("AMAAS_BUILD_DIR")
    if not path:
        raise RuntimeError("no build folder: run pytest with --build-dir BUILD "
                           "(or set AMAAS_BUILD_DIR)")
    return os.path.abspath(path)


def control_json(cluster, *command):
    """`amaas COMMAND --json` on the cluster's control endpoint (status,
    workers, ...), with the CLI of build_dir(), decoded; AssertionError with
    its stderr if it fails."""
    r = subprocess.run([os.path.join(build_dir(), "amaas"), "--control", cluster.control]
                       + list(getattr(cluster, "cli_args", [])) + list(command) + ["--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "amaas %s: %s" % (" ".join(command), r.stderr)
    return json.loads(r.stdout)


class stopped:
    """A process stopped (SIGSTOP) for the block, continued (SIGCONT) after,
    whatever happens: a worker that cannot finish a job until the test lets
    it.  The broker must not declare it dead meanwhile: give the cluster a
    heartbeat long enough for what the block does."""

    def __init__(self, proc):
        self.proc = proc

    def __enter__(self):
        self.proc.send_signal(signal.SIGSTOP)
        return self.proc

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGCONT)
        return False
