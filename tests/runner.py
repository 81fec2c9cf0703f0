"""A minimal test runner for the multi-process tests: runs the functions
given, prints one line per test and ends with 'N passed, N failed'.
Exit status 0 only if none failed."""
import sys
import time
import traceback


def run(tests):
    passed = failed = 0
    for test in tests:
        t0 = time.monotonic()
        try:
            test()
        except Exception:  # noqa: BLE001 - report every failure, go on
            failed += 1
            print("FAIL %s (%.1fs)" % (test.__name__, time.monotonic() - t0))
            traceback.print_exc()
        else:
            passed += 1
            print("ok   %s (%.1fs)" % (test.__name__, time.monotonic() - t0))
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
