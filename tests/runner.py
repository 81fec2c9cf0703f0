"""A minimal test runner for the multi-process tests: runs the functions
given, prints one line per test and ends with 'N passed, N failed' (and
', N skipped' when a test raised Skip: it cannot run here, e.g. it needs
root).  Exit status 0 only if none failed."""
import sys
import time
import traceback


class Skip(Exception):
    """Raised by a test that cannot run on this machine; the message says why."""


def run(tests):
    passed = failed = skipped = 0
    for test in tests:
        t0 = time.monotonic()
        try:
            test()
        except Skip as why:
            skipped += 1
            print("SKIP %s: %s" % (test.__name__, why))
        except Exception:  # noqa: BLE001 - report every failure, go on
            failed += 1
            print("FAIL %s (%.1fs)" % (test.__name__, time.monotonic() - t0))
            traceback.print_exc()
        else:
            passed += 1
            print("ok   %s (%.1fs)" % (test.__name__, time.monotonic() - t0))
        sys.stdout.flush()
    print("%d passed, %d failed%s" % (passed, failed,
                                      ", %d skipped" % skipped if skipped else ""))
    sys.exit(1 if failed else 0)
