"""Soak: 200,000 pipelined jobs through a broker and two workers (the C client
tests/chaos_client.c, no chaos).  Prints broker and worker memory (RSS) after
a warm-up and at the end; memory must stay flat: no per-job leak.
AMAAS_SOAK_JOBS=N sends N jobs instead.
Run: ctest -R integration_soak, or pytest --build-dir BUILD tests/integration/test_soak.py"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import Cluster, build_dir  # noqa: E402

BUILD = build_dir()
JOBS = int(os.environ.get("AMAAS_SOAK_JOBS", "200000"))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_jobs(c, n):
    r = subprocess.run([os.path.join(BUILD, "tests", "chaos_client"), c.frontend, str(n), "200",
                        "1e9", "3"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()[0]


def test_memory_stays_flat():
    with Cluster(BUILD, EXAMPLES, workers=2) as c:
        procs = {"broker": c.broker, "worker 1": c.workers[0], "worker 2": c.workers[1]}
        run_jobs(c, 20000)  # warm-up: pools, buffers and caches reach their size
        start = {name: rss_kb(p.pid) for name, p in procs.items()}
        summary = run_jobs(c, JOBS)
        end = {name: rss_kb(p.pid) for name, p in procs.items()}
        print(summary)
        for name in procs:
            print("soak: %-8s RSS %6d kB after warm-up, %6d kB after %d jobs (%+d kB)"
                  % (name, start[name], end[name], JOBS, end[name] - start[name]))
        if os.environ.get("AMAAS_SANITIZED"):
            print("soak: memory bound not checked under ASan (its quarantine keeps freed "
                  "memory); LeakSanitizer checks leaks at exit instead")
            return
        for name in procs:
            # a leak of even 50 bytes a job would show as 10 MB here
            assert end[name] - start[name] < 8 * 1024, (name, start[name], end[name])

