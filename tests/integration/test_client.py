#!/usr/bin/python3
"""Integration: the C client library (tests/test_client.c, linked against the
shared libamaas) against a real broker and two workers.
Usage: test_client.py BUILD_DIR"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import runner  # noqa: E402
from harness import Cluster  # noqa: E402

BUILD = os.path.abspath(sys.argv[1])
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")


def test_libamaas():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        env = dict(os.environ, AMAAS_TEST_FRONTEND=c.frontend)
        r = subprocess.run([os.path.join(BUILD, "tests", "test_client")], env=env,
                           capture_output=True, text=True, timeout=300)
        sys.stdout.write(r.stdout + r.stderr)
        assert r.returncode == 0, "test_client failed"


if __name__ == "__main__":
    runner.run([test_libamaas])
