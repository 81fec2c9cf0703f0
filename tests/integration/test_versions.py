"""Integration: versions of a model side by side.  Workers on two folders
serve `linear` version 1 and version 2 (other coefficients); MODELS lists
both, each with its own workers; a request without a version gets the
highest, a request with one gets that one; a version disappears with its
last worker, and what one worker announces never changes what another
serves.  Then a hostile peer on the unsecured backend floods READYs with
made-up versions and bad frames: afterwards only the real version is
listed, with its width, and the broker's log stays bounded.
Run: ctest -R integration_versions, or pytest --build-dir BUILD tests/integration/test_versions.py"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Cluster, build_dir, wait_for  # noqa: E402

BUILD = build_dir()
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"


def export_linear(folder, version, coef):
    """A LinearRegression y = coef * x + 1, exported as `linear` `version`."""
    os.makedirs(folder, exist_ok=True)
    joblib_path = os.path.join(folder, "linear.joblib")
    subprocess.run([PY, "-c", """
import joblib, numpy as np, sys
from sklearn.linear_model import LinearRegression
x = np.arange(10.0).reshape(-1, 1)
joblib.dump(LinearRegression().fit(x, float(sys.argv[2]) * x[:, 0] + 1), sys.argv[1])
""", joblib_path, str(coef)], check=True, timeout=120)
    subprocess.run([PY, os.path.join(ROOT, "scripts", "amaas-export"), joblib_path,
                    os.path.join(folder, "linear.amm"), "--version", version],
                   check=True, capture_output=True, timeout=120)
    os.unlink(joblib_path)
    return folder


TMP = tempfile.mkdtemp(prefix="amaas-versions-")
V1 = export_linear(os.path.join(TMP, "v1"), "1", 2.0)    # y = 2x + 1
V2 = export_linear(os.path.join(TMP, "v2"), "2", 10.0)   # y = 10x + 1
V10 = export_linear(os.path.join(TMP, "v10"), "10", 100.0)


def predict(c, version=None):
    """(y at x = 1 to 9 decimals, version that answered), or (None, error text)."""
    args = [c.bin("amaas"), "--broker", c.frontend, "--timeout", "10000", "predict",
            "--model", "linear", "--input", "[[1.0]]", "--info"]
    if version:
        args += ["--version", version]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return None, r.stderr
    y = json.loads(r.stdout)["predictions"][0]
    return round(y, 9), re.search(r"version=(\S+)", r.stderr).group(1)


def versions(c):
    return {m["version"]: m for m in c.models() if m["name"] == "linear"}


def wait_versions(c, want, timeout=15.0):
    return wait_for("versions %s of linear" % want,
                    lambda: (lambda v: v if sorted(v) == sorted(want) else None)(versions(c)),
                    timeout)


def test_side_by_side():
    with Cluster(BUILD, V1, workers=1) as c:
        c.start_worker(V2)
        c.start_worker(V1)
        wait_versions(c, ["1", "2"])
        listed = wait_for("two workers on version 1",
                          lambda: (lambda v: v if v["1"]["workers"] == 2 else None)(versions(c)))
        assert listed["1"]["workers"] == 2 and listed["2"]["workers"] == 1, listed
        assert listed["1"]["width"] == 1 and listed["2"]["width"] == 1, listed
        assert listed["1"]["mapped"] > 0, listed
        # No version: the highest; a version: that one, computed by its workers
        for _ in range(5):
            assert predict(c) == (11.0, "2")
        assert predict(c, "1") == (3.0, "1")
        assert predict(c, "2") == (11.0, "2")
        y, err = predict(c, "7")
        assert y is None and "NOT_FOUND" in err and "'7'" in err, err
        # Version 10 is higher than 2 (numbers compare as numbers)
        w10 = c.start_worker(V10)
        wait_versions(c, ["1", "2", "10"])
        assert predict(c) == (101.0, "10")
        # Its last worker leaves: it disappears, the highest left serves
        c.kill_worker(c.workers.index(w10))
        wait_versions(c, ["1", "2"])
        assert predict(c) == (11.0, "2")
        y, err = predict(c, "10")
        assert y is None and "NOT_FOUND" in err, err
        c.kill_worker(1)  # the version 2 worker
        wait_versions(c, ["1"])
        assert predict(c) == (3.0, "1")
        print("versions: side by side, highest by default, gone with their last worker")


def test_hostile_readies_change_nothing():
    with Cluster(BUILD, V1, workers=1) as c:
        wait_versions(c, ["1"])
        ctx = zmq.Context.instance()
        peer = ctx.socket(zmq.DEALER)
        peer.setsockopt(zmq.LINGER, 0)
        peer.connect(c.backend)
        rng = random.Random(7)
        sent = 0
        for i in range(3000):
            kind = i % 3
            if kind == 0:  # a READY with made-up versions and widths
                header = {"models": [{"name": "linear", "version": "%08x" % rng.getrandbits(32),
                                      "width": rng.randrange(0, 5)}],
                          "credit": 1}
                peer.send_multipart([b"AMAAS01", b"\x10", msgpack.packb(header)])
            elif kind == 1:  # garbage frames
                peer.send_multipart([rng.randbytes(rng.randrange(1, 40))
                                     for _ in range(rng.randrange(1, 5))])
            else:  # a bad header
                peer.send_multipart([b"AMAAS01", b"\x12", b"\xc1\xff"])
            sent += 1
        # The broker answered at least one READY of the peer's: all are read
        peer.RCVTIMEO = 10000
        while True:
            frames = peer.recv_multipart()
            if frames[:2] == [b"AMAAS01", b"\x10"]:
                break
        peer.close()
        # The peer is gone: its versions go with it (heartbeat expiry)
        listed = wait_versions(c, ["1"], timeout=30)
        assert listed["1"]["width"] == 1 and listed["1"]["workers"] == 1, listed
        answer = predict(c)
        assert answer == (3.0, "1"), answer
        broker_log = open(sorted(p for p in c._log_files if "broker" in p)[0]).read()
        lines = broker_log.splitlines()
        suppressed = sum(int(m) for m in re.findall(r"log lines suppressed peer=\S+ count=(\d+)",
                                                    broker_log))
        print("hostile peer: %d bad messages, broker log %d lines, %d lines suppressed"
              % (sent, len(lines), suppressed))
        # Lines about one peer's bad input are rate-limited: far fewer lines
        # than messages, and what was not written is counted
        assert len(lines) < sent / 10, len(lines)
        assert suppressed > sent / 2, suppressed

