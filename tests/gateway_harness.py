"""Start and stop amaas-gateway for tests (tests/integration/test_gateway.py,
test_docs_page.py).

    with Gateway(cluster.frontend, tmp, "--max-body", "1000") as g:
        requests.get(g.url + "/v2/health/live")

The gateway listens on a free port of 127.0.0.1 (--listen 127.0.0.1:0) and
is ready once it wrote the port it got to its --port-file; its log is in a
folder of its own under tmp, printed when the with-block raises.  It is
stopped with SIGTERM and must exit 0 (no crash, no sanitizer report).
"""
import os
import signal
import subprocess
import sys
import tempfile

from harness import build_dir, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# swagger-ui-dist, from tools/node (scripts/install-deps --test): /docs's assets
DOCS_DIR = os.path.join(ROOT, "tools", "node", "node_modules", "swagger-ui-dist")


class Gateway:
    """amaas-gateway on a free port of 127.0.0.1, ready once it wrote its
    port file; stopped with SIGTERM at the end, which it must survive with
    exit status 0 (no crash, no sanitizer report)."""

    def __init__(self, broker, tmp, *args, scheme="http"):
        self.dir = tempfile.mkdtemp(prefix="gateway-", dir=tmp)
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "gateway.log")
        self.args = [os.path.join(build_dir(), "amaas-gateway"), "--broker", broker,
                     "--listen", "127.0.0.1:0", "--port-file", self.port_file,
                     "--docs-dir", DOCS_DIR] + list(args)
        self.scheme = scheme
        self.proc = None

    def __enter__(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_for("the gateway's port file",
                     lambda: self.proc.poll() is not None or os.path.exists(self.port_file))
            assert self.proc.poll() is None, "the gateway exited %d:\n%s" % (
                self.proc.returncode, self.logs())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        with open(self.port_file) as f:
            self.port = int(f.read())
        self.url = "%s://127.0.0.1:%d" % (self.scheme, self.port)
        return self

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-6000:]

    def alive(self):
        assert self.proc.poll() is None, "the gateway exited %d:\n%s" % (
            self.proc.returncode, self.logs())

    def __exit__(self, kind, value, tb):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = "killed after 40 s"
        self.log.close()
        if kind is not None:
            sys.stderr.write(self.logs() + "\n")
        elif code != 0:
            raise AssertionError("the gateway exited %s:\n%s" % (code, self.logs()))
        return False
