"""Integration: what security protects.  (1) A capture on the loopback
interface while a job runs: without security the job's tensor bytes are in
it (so the capture can see them), with security they are not.  (2) One
client flooding at 10x capacity while another sends at a modest rate: the
modest client's jobs all succeed; its p99 latency is printed next to its
unloaded p99.  Run: ctest -R integration_privacy, or pytest --build-dir BUILD tests/integration/test_privacy.py"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import slow_model  # noqa: E402
from harness import Cluster, build_dir, control_json, wait_for  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")
TMP = tempfile.mkdtemp(prefix="amaas-privacy-")
SECRET_VALUE = 0.8137241900237314  # its 8 bytes are what the capture looks for


def keygen(name, folder=None):
    subprocess.run([os.path.join(BUILD, "amaas"), "keygen", name, "--dir", TMP], check=True,
                   capture_output=True, timeout=10)
    if folder:
        os.makedirs(os.path.join(TMP, folder), exist_ok=True)
        shutil.copy(os.path.join(TMP, name + ".key"), os.path.join(TMP, folder))
    return os.path.join(TMP, name + ".key")


BROKER, CLIENT, WORKER = keygen("broker"), keygen("client", "clients"), keygen("worker", "workers")
os.makedirs(os.path.join(TMP, "operators"), exist_ok=True)
SECURE_BROKER = ["--curve-cert", BROKER, "--clients", os.path.join(TMP, "clients"),
                 "--workers", os.path.join(TMP, "workers"),
                 "--operators", os.path.join(TMP, "operators")]


def closings(pcap, port):
    """TCP segments with FIN or RST sent to port, in the capture file so far
    (complete records only: tcpdump may be writing the next one)."""
    data = open(pcap, "rb").read()
    if len(data) < 24:
        return 0
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    link = struct.unpack(endian + "I", data[20:24])[0]
    link_header = {1: 14, 113: 16, 276: 20}[link]  # Ethernet (lo), Linux cooked v1, v2
    n, at = 0, 24
    while at + 16 <= len(data):
        size = struct.unpack(endian + "I", data[at + 8:at + 12])[0]
        packet = data[at + 16:at + 16 + size]
        if len(packet) < size:
            break
        at += 16 + size
        ip = packet[link_header:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        tcp = ip[(ip[0] & 0xF) * 4:]
        if len(tcp) >= 14 and struct.unpack(">H", tcp[2:4])[0] == port and tcp[13] & 0x05:
            n += 1
    return n


def capture(c, cli_keys):
    """Bytes tcpdump saw on the frontend port while one job ran; None if
    this machine cannot capture."""
    if not shutil.which("tcpdump"):
        return None
    port = int(c.frontend.rsplit(":", 1)[1])
    pcap = os.path.join(c.tmp, "capture.pcap")
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-Z", "root", "-w", pcap,
                             "tcp port %s" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait until it listens
    line = dump.stderr.readline().decode()
    if "listening" not in line:
        dump.kill()
        return None
    # the filter is in place once a probe connection's end is in the file
    def probe():
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return closings(pcap, port) > 0
    wait_for("tcpdump to capture a probe connection", probe)
    before = closings(pcap, port)
    r = subprocess.run([os.path.join(BUILD, "amaas"), "--broker", c.frontend] + cli_keys +
                       ["predict", "--model", "linear", "--input", "[[%r]]" % SECRET_VALUE],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # every packet of the job's connection is in the file once its end is
    wait_for("the capture of the job's connection", lambda: closings(pcap, port) > before)
    dump.send_signal(signal.SIGINT)
    dump.wait(timeout=10)
    return open(pcap, "rb").read()


def test_capture_sees_tensors_only_without_security():
    needle = struct.pack("<d", SECRET_VALUE)
    with Cluster(BUILD, EXAMPLES, workers=1) as c:
        plain = capture(c, [])
    if plain is None:
        pytest.skip("tcpdump cannot capture on lo here (needs root and tcpdump)")
    assert needle in plain, "the capture should see the plaintext tensor bytes"
    keys = ["--server-key", BROKER, "--cert", CLIENT]
    with Cluster(BUILD, EXAMPLES, workers=1, broker_args=SECURE_BROKER,
                 worker_args=["--server-key", BROKER, "--cert", WORKER], cli_args=keys) as c:
        secret = capture(c, keys)
    assert len(secret) > 1000, "the secured capture should hold the job's traffic"
    assert needle not in secret, "tensor bytes visible despite CURVE"
    print("capture: %d bytes plaintext (tensor visible), %d bytes with CURVE (not visible)"
          % (len(plain), len(secret)))


def bench(c, rate, duration, extra=()):
    return subprocess.Popen([os.path.join(BUILD, "amaas"), "--broker", c.frontend, "bench",
                             "--model", "slow", "--rows", "300", "--datatype", "FP32",
                             "--rate", str(rate), "--duration", str(duration), "--warmup", "0.5",
                             "--json"] + list(extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_flooding_client_does_not_starve_another():
    slow_dir = os.path.join(TMP, "slow")
    os.makedirs(slow_dir, exist_ok=True)
    slow_model.write_mlp(os.path.join(slow_dir, "slow.amm"), "slow", [256, 2048, 2048, 16])
    # credit 2: the broker's fair share decides the order; a worker's credit
    # bounds how many others' jobs a job can wait behind once dispatched
    with Cluster(BUILD, slow_dir, workers=1, broker_args=["--max-client-jobs", "20"],
                 worker_args=["--credit", "2"]) as c:
        alone = json.loads(bench(c, 4, 4).communicate(timeout=60)[0])[0]
        capacity = 1e6 / max(alone["server_us"]["compute_mean"], 1.0)
        flood = bench(c, capacity * 10, 8)
        # the flood is on once the flooder has jobs refused (over its 20)
        wait_for("the flooder's first refusals", lambda: flood.poll() is not None or control_json(
            c, "status")["jobs"].get("RESOURCE_EXHAUSTED", 0) > 0)
        modest = json.loads(bench(c, 4, 4).communicate(timeout=60)[0])[0]
        flooded = json.loads(flood.communicate(timeout=60)[0])[0]
    print("fair share: capacity %.0f jobs/s; flooder sent %.0f jobs/s: ok %d, refused %s"
          % (capacity, capacity * 10, flooded["ok"], flooded["errors"]))
    print("fair share: modest client p99 %.0f ms unloaded, %.0f ms under the flood "
          "(p50 %.0f -> %.0f ms), %d of %d ok"
          % (alone["latency_us"]["p99"] / 1e3, modest["latency_us"]["p99"] / 1e3,
             alone["latency_us"]["p50"] / 1e3, modest["latency_us"]["p50"] / 1e3,
             modest["ok"], modest["jobs"]))
    assert modest["errors"] == {} and modest["ok"] == modest["jobs"] > 0, modest
    assert flooded["errors"].get("RESOURCE_EXHAUSTED", 0) > 0, flooded


def teardown_module():
    shutil.rmtree(TMP, ignore_errors=True)
