"""Integration: the C client library (tests/test_client.c, linked against the
shared libamaas) against a real broker and two workers.
Run: ctest -R integration_client, or pytest --build-dir BUILD tests/integration/test_client.py"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Cluster, build_dir  # noqa: E402

BUILD = build_dir()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")


def test_libamaas():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        env = dict(os.environ, AMAAS_TEST_FRONTEND=c.frontend)
        r = subprocess.run([os.path.join(BUILD, "tests", "test_client")], env=env,
                           capture_output=True, text=True, timeout=300)
        sys.stdout.write(r.stdout + r.stderr)
        assert r.returncode == 0, "test_client failed"

