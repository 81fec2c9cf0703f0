"""pytest settings for amaas's Python tests (tests/integration, tests/fidelity,
tests/test_exporter.py).

The tests start the programs of one build folder, given as --build-dir BUILD
(ctest passes its own) or in the environment as AMAAS_BUILD_DIR; test modules
read it with harness.build_dir().  Timeouts per test come from pytest-timeout
(Debian's python3-pytest-timeout, `timeout` in tests/pytest.ini, --timeout=S
on the command line); ctest's TIMEOUT bounds each file as a whole.
"""
import os


def pytest_addoption(parser):
    parser.addoption("--build-dir", default=os.environ.get("AMAAS_BUILD_DIR"),
                     help="the amaas build folder whose programs the tests run "
                          "(default: $AMAAS_BUILD_DIR)")


def pytest_configure(config):
    build = config.getoption("--build-dir")
    if build:
        os.environ["AMAAS_BUILD_DIR"] = os.path.abspath(build)
