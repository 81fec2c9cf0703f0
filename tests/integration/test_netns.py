"""Integration: amaas across machines, each machine a Linux network namespace.

    broker host   10.77.0.1  amaas-broker (frontend and backend on 10.77.0.1)
    worker host a 10.77.0.2  2 amaas-worker, host name amaas-host-a
    worker host b 10.77.0.3  2 amaas-worker, host name amaas-host-b
    client host   10.77.0.4  tests/chaos_client
    all four plugged into a bridge in a fifth namespace (the switch)

The namespaces are created here and have no link to the machine's own
network: every packet stays inside them.  While the client pipelines jobs
(each answer checked), host a's cable is pulled (its switch port set down):
the broker declares its workers dead and gives their jobs to host b, and no
job is lost.  When the cable is back, host a's workers reconnect, register
again (amaas workers lists them) and compute jobs again.

test_a_broker_host_loses_its_link: two brokers on two hosts (broker and
broker2, 10.77.0.5), a worker on hosts a and b connected to both, the client
to both; host broker's cable is pulled while the client pipelines checked
jobs: the client resends what it had there to broker2, the workers serve
broker2 alone, and with the cable back they register with broker again.

Needs root and iproute2 (ip netns); without them the test is skipped.
Namespaces and processes are removed on every exit path (and those left by
an earlier run that was killed, on the next run).  About 30 s each.
Run: ctest -R integration_netns, or pytest --build-dir BUILD tests/integration/test_netns.py"""
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import build_dir, wait_for  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
PREFIX = "amaas-nt"  # namespaces: amaas-nt<PID>-<host>
HEARTBEAT_MS = 200   # the broker declares a silent worker dead after 3 x 200 ms
SUBNET = "10.77.0"   # only inside the namespaces below
HOSTS = {"broker": 1, "a": 2, "b": 3, "client": 4, "broker2": 5}


def sh(*args, check=True, timeout=20):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def remove_namespace(name):
    """Kill what still runs in the namespace (only our processes run there), delete it."""
    r = sh("ip", "netns", "pids", name, check=False)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", name, check=False)


def run_alive(pid):
    """Is pid a live (not zombie) run of this test?"""
    try:
        with open("/proc/%s/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return b"test_netns" in f.read()
    except (OSError, IndexError):
        return False


def remove_stale_namespaces():
    """Namespaces of earlier runs whose process is gone (e.g. killed by a timeout)."""
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"(%s(\d+)-\S+)" % PREFIX, line)
        if m and not run_alive(m.group(2)):
            print("removing stale namespace %s" % m.group(1))
            remove_namespace(m.group(1))
    for path in glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*-*")):
        m = re.match(r"%s(\d+)-" % PREFIX, os.path.basename(path))
        if m and os.path.isdir(path) and not run_alive(m.group(1)):
            shutil.rmtree(path, ignore_errors=True)


class Machines:
    """The namespaces, the switch and every process started in them."""

    def __init__(self):
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.namespaces = []
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="%s%d-" % (PREFIX, os.getpid()))
        self.logs = []

    def ns(self, host):
        return "%s-%s" % (self.tag, host)

    def addr(self, host):
        return "%s.%d" % (SUBNET, HOSTS[host])

    def add_namespace(self, host):
        sh("ip", "netns", "add", self.ns(host))
        self.namespaces.append(self.ns(host))
        sh("ip", "-n", self.ns(host), "link", "set", "lo", "up")

    def build(self, hosts):
        self.add_namespace("switch")
        sw = self.ns("switch")
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for host in hosts:
            self.add_namespace(host)
            # the cable: port-HOST on the switch, eth0 on the host; created
            # inside the namespaces, never in the machine's own
            sh("ip", "-n", sw, "link", "add", "port-" + host, "type", "veth",
               "peer", "name", "eth0", "netns", self.ns(host))
            sh("ip", "-n", sw, "link", "set", "port-" + host, "master", "br0", "up")
            sh("ip", "-n", self.ns(host), "addr", "add", self.addr(host) + "/24", "dev", "eth0")
            sh("ip", "-n", self.ns(host), "link", "set", "eth0", "up")

    def cable(self, host, up):
        sh("ip", "-n", self.ns("switch"), "link", "set", "port-" + host, "up" if up else "down")

    def spawn(self, host, args, label, hostname=None, stdout=None):
        """Run args on a host (in its namespace; with its own host name if given)."""
        cmd = ["ip", "netns", "exec", self.ns(host)]
        if hostname:
            # a UTS namespace, so that the worker reports this host name
            cmd += ["unshare", "--uts", "/bin/sh", "-c", 'hostname "$0" && exec "$@"', hostname]
        path = os.path.join(self.tmp, label + ".log")
        self.logs.append(path)
        log = open(path, "wb")
        p = subprocess.Popen(cmd + args, stdout=stdout or log,
                             stderr=subprocess.STDOUT if stdout is None else log,
                             stdin=subprocess.DEVNULL, text=stdout is not None)
        self.procs.append(p)
        return p

    def run_in(self, host, args, timeout=30):
        return sh("ip", "netns", "exec", self.ns(host), *args, check=False, timeout=timeout)

    def dump_logs(self):
        for path in self.logs:
            try:
                with open(path, errors="replace") as f:
                    sys.stderr.write("==> %s <==\n%s\n" % (os.path.basename(path), f.read()[-3000:]))
            except OSError:
                pass

    def stop(self):
        """SIGTERM every process, SIGKILL those that linger; processes that did
        not exit 0.  Idempotent."""
        bad = []
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.returncode != 0:
                bad.append((p.args[-1] if p.args else "?", p.pid, p.returncode))
        self.procs = []
        return bad

    def cleanup(self):
        self.stop()
        for name in reversed(self.namespaces):
            remove_namespace(name)
        self.namespaces = []
        shutil.rmtree(self.tmp, ignore_errors=True)


def can_make_namespaces():
    """None if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not shutil.which("ip"):
        return "needs iproute2 (ip netns): apt-get install iproute2"
    if not shutil.which("unshare"):
        return "needs unshare (util-linux)"
    probe = "%s%d-probe" % (PREFIX, os.getpid())
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return "cannot create a network namespace: %s" % r.stderr.strip()
    try:
        r = sh("ip", "-n", probe, "link", "add", "br0", "type", "bridge", check=False)
        if r.returncode != 0:
            return "cannot create a bridge in a namespace: %s" % r.stderr.strip()
        r = sh("ip", "netns", "exec", probe, "unshare", "--uts", "true", check=False)
        if r.returncode != 0:
            return "cannot create a UTS namespace: %s" % r.stderr.strip()
    finally:
        remove_namespace(probe)
    return None


@contextlib.contextmanager
def machines(hosts=("broker", "a", "b", "client")):
    """The machines of a test, built (the test is skipped where namespaces
    cannot be made).  On the way out every process is stopped, the logs are
    shown if the test failed, and the namespaces are removed."""
    why = can_make_namespaces()
    if why:
        print("SKIP: %s" % why)
        pytest.skip(why)
    remove_stale_namespaces()
    m = Machines()
    try:
        m.build(hosts)
        yield m
    except BaseException:
        m.stop()
        m.dump_logs()
        raise
    finally:
        m.cleanup()


def workers(m, control, host="broker"):
    r = m.run_in(host, [os.path.join(BUILD, "amaas"), "--control", control, "--timeout",
                        "2000", "workers", "--json"])
    if r.returncode != 0:
        return []
    return json.loads(r.stdout)["workers"]


def by_host(ws):
    out = {}
    for w in ws:
        out.setdefault(w["host"], []).append(w)
    return out


def test_a_worker_host_loses_its_link():
    with machines() as m:
        # the client host reaches the broker host through the switch
        r = m.run_in("client", ["ping", "-c", "1", "-W", "2", m.addr("broker")]) \
            if shutil.which("ping") else None
        assert r is None or r.returncode == 0, r.stdout + r.stderr

        ep_file = os.path.join(m.tmp, "endpoints")
        broker = m.spawn("broker", [
            os.path.join(BUILD, "amaas-broker"),
            "--frontend", "tcp://%s:!" % m.addr("broker"),
            "--backend", "tcp://%s:!" % m.addr("broker"),
            "--control", "tcp://127.0.0.1:!", "--endpoints-file", ep_file,
            "--heartbeat-ms", str(HEARTBEAT_MS)], "broker")
        eps = wait_for("the broker's endpoints", lambda: (
            os.path.exists(ep_file) and "control=" in open(ep_file).read()
            and dict(line.split("=", 1) for line in open(ep_file).read().split())), 10)
        assert broker.poll() is None
        frontend, backend, control = eps["frontend"], eps["backend"], eps["control"]
        print("broker on %s: frontend %s, backend %s" % (m.ns("broker"), frontend, backend))

        for host in ("a", "b"):
            for i in range(2):
                m.spawn(host, [os.path.join(BUILD, "amaas-worker"), "--broker", backend,
                               "--models", EXAMPLES, "--heartbeat-ms", str(HEARTBEAT_MS),
                               "--credit", "8"],
                        "worker-%s%d" % (host, i), hostname="amaas-host-" + host)
        hosts = wait_for("4 workers on 2 hosts", lambda: (
            lambda h: h if len(h.get("amaas-host-a", [])) == 2
            and len(h.get("amaas-host-b", [])) == 2 else None)(by_host(workers(m, control))), 15)
        pids_a = {w["pid"] for w in hosts["amaas-host-a"]}
        print("registered: %s" % {h: [w["pid"] for w in ws] for h, ws in hosts.items()})

        # 12,000 checked jobs at 1,000/s from the client host, 200 in flight,
        # up to 10 attempts each
        client = m.spawn("client", [os.path.join(BUILD, "tests", "chaos_client"), frontend,
                                    "12000", "200", "1000", "10"], "client",
                         stdout=subprocess.PIPE)
        # cut while host a holds jobs: they are stranded there
        wait_for("host a to hold jobs", lambda: client.poll() is not None or sum(
            w["in_flight"] for w in by_host(workers(m, control)).get("amaas-host-a", [])), 30)
        assert client.poll() is None, "the client ended early"

        print("cutting host a's link")
        m.cable("a", up=False)
        t_cut = time.monotonic()
        # Until the broker declares them dead, it gives host a's workers jobs
        # that cannot arrive: they are stranded there, then requeued
        stranded = 0
        while True:
            h = by_host(workers(m, control))
            stranded = max(stranded, sum(w["in_flight"] for w in h.get("amaas-host-a", [])))
            if "amaas-host-a" not in h and len(h.get("amaas-host-b", [])) == 2:
                only_b = h
                break
            assert time.monotonic() - t_cut < 10, "the broker did not drop host a: %s" % h
            time.sleep(0.02)
        print("host a dropped after %.1f s, holding %d jobs that went back to the queue; "
              "host b serves alone" % (time.monotonic() - t_cut, stranded))
        assert stranded > 0, "no job was stranded on host a: the cut proves nothing"
        done_b = sum(w["done"] for w in only_b["amaas-host-b"])
        wait_for("host b to carry the load: 1000 more jobs", lambda: sum(
            w["done"] for w in by_host(workers(m, control))["amaas-host-b"]) > done_b + 1000, 60)

        print("restoring host a's link")
        m.cable("a", up=True)
        t_up = time.monotonic()
        back = wait_for("host a to register again", lambda: (
            lambda h: h if len(h.get("amaas-host-a", [])) == 2 else None)(
                by_host(workers(m, control))), 30)
        print("host a registered again after %.1f s" % (time.monotonic() - t_up))
        assert {w["pid"] for w in back["amaas-host-a"]} == pids_a, "the same processes rejoin"

        out, _ = client.communicate(timeout=120)
        print(out.strip())
        assert client.returncode == 0, "jobs were lost, answered twice or wrong"
        stats = dict(kv.split("=") for kv in out.split("\n")[0].split()[1:])
        assert stats["lost"] == "0" and stats["sent"] == "12000", stats
        assert out.split("\n")[1].strip().endswith("none"), "some jobs failed: " + out

        # the rejoined host takes jobs again
        before = {w["id"]: w["done"] for w in by_host(workers(m, control))["amaas-host-a"]}
        second = m.spawn("client", [os.path.join(BUILD, "tests", "chaos_client"), frontend,
                                    "2000", "100", "2000", "3"], "client-2",
                         stdout=subprocess.PIPE)
        out2, _ = second.communicate(timeout=60)
        print(out2.strip())
        assert second.returncode == 0, out2
        after = by_host(workers(m, control))["amaas-host-a"]
        assert sum(w["done"] for w in after) > sum(before.values()), (before, after)

        with open(m.logs[0]) as f:
            blog = f.read()
        assert "workers declared dead count=2" in blog, blog[-2000:]
        bad = m.stop()
        assert not bad, "processes exited badly: %s" % bad


def on_signal(sig, frame):
    raise SystemExit(128 + sig)  # so that the finally blocks remove the namespaces


def setup_module():
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)


def teardown_module():
    """The namespaces of this run, whatever ended it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if shutil.which("ip"):
        for name in sh("ip", "netns", "list", check=False).stdout.split():
            if name.startswith("%s%d-" % (PREFIX, os.getpid())):
                remove_namespace(name)


def start_broker(m, host):
    """A broker on host, frontend and backend on its address: its endpoints."""
    ep_file = os.path.join(m.tmp, "endpoints-" + host)
    m.spawn(host, [
        os.path.join(BUILD, "amaas-broker"),
        "--frontend", "tcp://%s:!" % m.addr(host), "--backend", "tcp://%s:!" % m.addr(host),
        "--control", "tcp://127.0.0.1:!", "--endpoints-file", ep_file,
        "--heartbeat-ms", str(HEARTBEAT_MS)], host)
    return wait_for("the endpoints of the broker on " + host, lambda: (
        os.path.exists(ep_file) and "control=" in open(ep_file).read()
        and dict(line.split("=", 1) for line in open(ep_file).read().split())), 10)


def test_a_broker_host_loses_its_link():
    """Two brokers on two hosts, all active; a worker on each of two worker
    hosts connects to both, the client host to both.  Host broker's cable
    is pulled while the client pipelines checked jobs: the client sends the
    jobs it had there to broker2, the workers serve broker2 alone; with the
    cable back, the workers register with broker again.  No job is lost,
    answered twice or wrong."""
    with machines(("broker", "broker2", "a", "b", "client")) as m:
        eps = {h: start_broker(m, h) for h in ("broker", "broker2")}
        frontends = ",".join(eps[h]["frontend"] for h in ("broker", "broker2"))
        backends = ",".join(eps[h]["backend"] for h in ("broker", "broker2"))
        for host in ("a", "b"):
            m.spawn(host, [os.path.join(BUILD, "amaas-worker"), "--broker", backends,
                           "--models", EXAMPLES, "--heartbeat-ms", str(HEARTBEAT_MS),
                           "--credit", "8"], "worker-" + host, hostname="amaas-host-" + host)
        for h in ("broker", "broker2"):
            wait_for("2 workers at " + h, lambda: len(workers(m, eps[h]["control"], h)) == 2, 15)
        client = m.spawn("client", [os.path.join(BUILD, "tests", "chaos_client"), frontends,
                                    "12000", "200", "1000", "10"], "client",
                         stdout=subprocess.PIPE)
        wait_for("the broker on host broker to hold jobs", lambda: client.poll() is not None or
                 sum(w["in_flight"] for w in workers(m, eps["broker"]["control"])), 30)
        assert client.poll() is None, "the client ended early"

        print("cutting host broker's link")
        m.cable("broker", up=False)
        done2 = sum(w["done"] for w in workers(m, eps["broker2"]["control"], "broker2"))
        wait_for("broker2 to carry the load: 2000 more jobs", lambda: sum(
            w["done"] for w in workers(m, eps["broker2"]["control"], "broker2"))
            > done2 + 2000, 60)

        print("restoring host broker's link")
        m.cable("broker", up=True)
        wait_for("the workers to register with broker again",
                 lambda: len(workers(m, eps["broker"]["control"])) == 2, 60)

        out, _ = client.communicate(timeout=120)
        print(out.strip())
        assert client.returncode == 0, "jobs were lost, answered twice or wrong: " + out
        stats = dict(kv.split("=") for kv in out.split("\n")[0].split()[1:])
        assert stats["sent"] == "12000" and stats["ok"] == "12000", stats
        assert stats["lost"] == "0" and stats["answered_twice"] == "0", stats
        assert stats["wrong"] == "0", stats
        assert int(stats["retried"]) > 0, "no job was resent: the cut proves nothing"
        bad = m.stop()
        assert not bad, "processes exited badly: %s" % bad
