"""Start and stop a real amaas cluster (broker + workers) for tests.

    with Cluster(build_dir, models_dir, workers=2) as c:
        c.frontend          # client endpoint, e.g. tcp://127.0.0.1:41234
        c.start_worker()    # one more worker
        c.kill_worker(0)    # SIGKILL the first
        g = c.start_gateway(["--api-keys", keys])   # an amaas-gateway: g.url
        c.models()          # [{"name", "version", "workers"}] via `amaas models --json`

Processes are started by scripts/amaas-cluster, the operators' tool, on a
state folder of their own (c.tmp: logs, pids, exit statuses, endpoints):
the broker binds random free ports on 127.0.0.1 (czmq's tcp://127.0.0.1:!)
and writes the ports it got to a file, so tests never assume a port is free,
and two suites running at once on one machine do not meet on the same ports.
c.broker and c.workers are Process objects, as much of subprocess.Popen as
tests use (pid, args, poll, wait, send_signal, kill, returncode).  Every
process is stopped on exit (`amaas-cluster stop`, which waits until a process
handles signals before it sends SIGTERM), killed if it does not stop in time.
c.logs() returns the logs; they are printed when the with-block raises.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AMAAS_CLUSTER = os.path.join(ROOT, "scripts", "amaas-cluster")
RANDOM_PORT = "tcp://127.0.0.1:!"


class Process:
    """A broker or worker that amaas-cluster started: not our child, so its
    exit status comes from the NAME.status file amaas-cluster's wrapper
    writes when it ends (128+N for signal N, which returncode gives as -N,
    as Popen does)."""

    def __init__(self, cluster_dir, name, pid, args):
        self.name = name  # broker, worker-K
        self.pid = pid
        self.args = args
        self._status_path = os.path.join(cluster_dir, name + ".status")
        self._returncode = None

    def poll(self):
        """The exit status, or None while the process runs."""
        if self._returncode is None:
            try:
                with open(self._status_path) as f:
                    text = f.read().strip()
            except FileNotFoundError:
                return None
            if not text:
                return None
            code = int(text)
            self._returncode = 128 - code if code > 128 else code
        return self._returncode

    @property
    def returncode(self):
        return self.poll()

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self._returncode

    def send_signal(self, sig):
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def __repr__(self):
        return "<%s pid %d>" % (self.name, self.pid)


class Cluster:
    def __init__(self, build_dir, models_dir, workers=1, heartbeat_ms=500,
                 broker_args=(), worker_args=(), ready_timeout=15.0, cli_args=(), env=None,
                 brokers=1):
        self.build_dir = os.path.abspath(build_dir)
        self.models_dir = models_dir
        self.n_workers = workers
        self.heartbeat_ms = heartbeat_ms
        self.broker_args = list(broker_args)
        self.worker_args = list(worker_args)
        self.cli_args = list(cli_args)  # e.g. CURVE keys for `amaas models`
        self.env = dict(env or {})  # broker and workers only
        self.ready_timeout = ready_timeout
        self.tmp = tempfile.mkdtemp(prefix="amaas-test-")
        self.n_brokers = brokers
        self.broker = None  # the first broker
        self.brokers = []  # every broker (amaas-cluster start --brokers N)
        self.controls = []  # their control endpoints
        self.workers = []
        self.gateways = []
        self.frontend = self.backend = self.control = None
        self._log_files = []
        self._started = False
        self.expected_exits = set()  # processes a test stopped or killed on purpose

    def bin(self, name):
        return os.path.join(self.build_dir, name)

    def _cluster(self, *args, timeout=None):
        """Runs `amaas-cluster ARGS` on our state folder: its stdout, or
        RuntimeError with its stderr and the logs."""
        # AMAAS_CONFIG='': no /etc/amaas/amaas.env of this machine
        env = dict(os.environ, AMAAS_CONFIG="")
        r = subprocess.run([AMAAS_CLUSTER] + list(args) + [
            "--dir", self.tmp, "--bin", self.build_dir,
            "--timeout", str(max(1, int(timeout or self.ready_timeout)))],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
        if r.returncode != 0:
            raise RuntimeError("amaas-cluster %s: exit %d\n%s\n%s"
                               % (" ".join(args), r.returncode, r.stderr, self.logs()))
        return r.stdout

    def _pid(self, name):
        with open(os.path.join(self.tmp, name + ".pid")) as f:
            return int(f.read())

    def _endpoints(self, text):
        eps = dict(line.split("=", 1) for line in text.split())
        # with several brokers, frontend and backend are lists (EP1,EP2)
        self.frontend, self.backend, self.control = eps["frontend"], eps["backend"], eps["control"]
        self.controls = eps.get("controls", self.control).split(",")

    def _add_log(self, name):
        path = os.path.join(self.tmp, name + ".log")
        if path not in self._log_files:
            self._log_files.append(path)

    def _adopt_brokers(self):
        """Every broker whose pid is new (started, or started again)."""
        for k in range(1, self.n_brokers + 1):
            name = "broker" if k == 1 else "broker-%d" % k
            try:
                pid = self._pid(name)
            except FileNotFoundError:
                continue
            if k <= len(self.brokers) and self.brokers[k - 1].pid == pid:
                continue
            proc = Process(self.tmp, name, pid, [self.bin("amaas-broker")])
            if k <= len(self.brokers):
                self.brokers[k - 1] = proc
            else:
                self.brokers.append(proc)
            self._add_log(name)
        self.broker = self.brokers[0]

    def _adopt_worker(self, number, pid):
        name = "worker-%d" % number
        w = Process(self.tmp, name, pid, [self.bin("amaas-worker")])
        self.workers.append(w)
        self._add_log(name)
        return w

    def start_broker(self):
        """The first time: the brokers (`amaas-cluster start --workers 0`);
        after one was killed: the brokers not running, again on the same
        endpoints, so that workers and clients find them (`amaas-cluster
        start-broker`)."""
        if not self._started:
            # --attached: in our session, scheduled with us as the processes
            # the tests were written with (a session per process would give
            # each its own CPU share)
            args = ["start", "--workers", "0", "--brokers", str(self.n_brokers), "--attached",
                    "--models", self.models_dir,
                    "--frontend", RANDOM_PORT, "--backend", RANDOM_PORT, "--control", RANDOM_PORT,
                    "--heartbeat-ms", str(self.heartbeat_ms)]
            for a in self.broker_args:
                args += ["--broker-arg", a]
            for a in self.worker_args:
                args += ["--worker-arg", a]
            for name, value in self.env.items():
                args += ["--env", "%s=%s" % (name, value)]
            self._started = True
            self._endpoints(self._cluster(*args))
        else:
            self._endpoints(self._cluster("start-broker"))
        self._adopt_brokers()

    def start_worker(self, models_dir=None, extra_args=()):
        """One more worker (`amaas-cluster add-worker --no-wait`): returns its
        Process once it runs; wait_workers waits for it to register."""
        args = ["add-worker", "--no-wait"]
        if models_dir:
            args += ["--models", models_dir]
        for a in extra_args:
            args += ["--worker-arg", a]
        number, pid = self._cluster(*args).split()
        return self._adopt_worker(int(number), int(pid))

    def start_gateway(self, extra_args=(), listen="127.0.0.1:0"):
        """One more amaas-gateway in front of the broker (`amaas-cluster
        add-gateway`): returns its Process, with .url (http://127.0.0.1:PORT,
        https with --tls-cert), once it listens."""
        args = ["add-gateway", "--gateway", listen]
        for a in extra_args:
            args += ["--gateway-arg", a]
        out = self._cluster(*args)
        url = [line.split("=", 1)[1] for line in out.split() if line.startswith("gateway=")][-1]
        number = len(self.gateways) + 1
        name = "gateway-%d" % number
        g = Process(self.tmp, name, self._pid(name), [self.bin("amaas-gateway")])
        g.url = url
        self.gateways.append(g)
        self._add_log(name)
        return g

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
                # through the frontend, with cli_args: the control socket of
                # a CURVE broker would want an operator's key
                self.wait_workers(self.n_workers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stops every process (`amaas-cluster stop`: gateways, workers, then
        the broker, each SIGTERMed once it handles signals, killed after 10 s).
        Returns the processes that did not exit 0 of their own (crash,
        sanitizer report, hang), other than those a test stopped on purpose."""
        procs = [p for p in self.gateways + self.workers + self.brokers if p is not None]
        if self._started:
            env = dict(os.environ, AMAAS_CONFIG="")
            # exit 1 when a process exited badly: told apart below, by process
            subprocess.run([AMAAS_CLUSTER, "stop", "--dir", self.tmp, "--timeout", "10"],
                           capture_output=True, stdin=subprocess.DEVNULL, env=env)
        bad = []
        for p in procs:
            try:
                p.wait(timeout=10)  # recorded right after it ended
            except subprocess.TimeoutExpired:
                p.kill()
                bad.append(p)
                continue
            if p.returncode != 0 and p not in self.expected_exits:
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


def outcome(client, job_id, timeout_ms=60000):
    """'OK', or the name of the error that job_id (sent by a tests/pyamaas.py
    client) was answered with."""
    import pyamaas  # tests/, beside this file
    try:
        client.recv(job_id, timeout_ms)
        return "OK"
    except pyamaas.AmaasError as e:
        return e.name


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
