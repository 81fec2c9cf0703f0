"""Integration: the /docs page of amaas-gateway, rendered by a real browser.
A headless Chromium loads /docs (swagger-ui, whose assets the gateway serves
from --docs-dir, reading /openapi.json) and the DOM it renders lists the
routes of docs/openapi.yaml.
Run: ctest -R integration_docs_page, or
pytest --build-dir BUILD tests/integration/test_docs_page.py"""
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from gateway_harness import ROOT, Gateway  # noqa: E402
from harness import Cluster, build_dir  # noqa: E402

BUILD = build_dir()
CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/install-deps --test)


def render(url, profile):
    """The DOM of url once its scripts ran (up to 20 s of virtual time)."""
    args = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update",
            "--disable-dev-shm-usage", "--user-data-dir=" + profile,
            "--virtual-time-budget=20000", "--dump-dom", url]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses root
    r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "chromium exited %d: %s" % (r.returncode, r.stderr[-3000:])
    return r.stdout


def test_docs_page_lists_every_route():
    assert os.access(CHROMIUM, os.X_OK), "no %s: run scripts/install-deps --test" % CHROMIUM
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        doc = yaml.safe_load(f)
    tmp = tempfile.mkdtemp(prefix="amaas-docs-")
    try:
        with Cluster(BUILD, os.path.join(ROOT, "examples", "models"), workers=0) as c, \
                Gateway(c.frontend, tmp) as g:
            dom = render(g.url + "/docs", os.path.join(tmp, "profile"))
            g.alive()
        # swagger-ui rendered the document: its title and every path, as
        # the operations' data-path attributes
        assert doc["info"]["title"] in dom, dom[:3000]
        assert "errors-wrapper" not in dom, "swagger-ui shows errors:\n" + dom[:5000]
        missing = [path for path in doc["paths"] if 'data-path="%s"' % path not in dom]
        assert not missing, "routes not on the rendered page: %s\n%s" % (missing, dom[:3000])
        for route in ("/v2/models/{name}/infer", "/predict/{name}", "/v2/health/ready"):
            assert route in dom
        print("/docs rendered by Chromium: %d routes listed" % len(doc["paths"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
