"""make test's runner (tests/run_tests.py): what it counts, that a job that
hangs is stopped with every process it left, and that it finds every suite
of the Check runner it splits into jobs."""
import os
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_tests  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def job(kind, out, status):
    j = run_tests.Job("k", "title", [], {}, (kind,))
    j.out, j.status = out, status
    return j


class Counts(unittest.TestCase):
    def test_unittest_summaries(self):
        ok = job("py", "...\nRan 12 tests in 1.0s\n\nOK (skipped=2)\n", 0)
        self.assertEqual(run_tests.counts(ok), (12, 0, 2))
        bad = job("py", "FE.\nRan 3 tests in 1.0s\n\nFAILED (failures=1, errors=2, "
                        "skipped=1)\n", 1)
        self.assertEqual(run_tests.counts(bad), (3, 3, 1))
        self.assertEqual(run_tests.py_failures(bad.out), (1, 2))

    def test_check_summaries(self):
        self.assertEqual(run_tests.counts(job("c", "Running suite(s): x\n25 passed, 1 failed\n",
                                              1)), (26, 1, 0))

    def test_a_job_that_failed_without_a_summary_is_a_failure(self):
        for kind in ("py", "c"):
            with self.subTest(kind=kind):
                self.assertEqual(run_tests.counts(job(kind, "Segmentation fault\n", 139))[1], 1)


class Jobs(unittest.TestCase):
    def test_a_job_that_hangs_is_stopped_with_what_it_left(self):
        pids = tempfile.mktemp(prefix="pd-run-tests-")
        self.addCleanup(lambda: os.path.exists(pids) and os.unlink(pids))
        # A child in a process group of its own, as Check makes each test.
        code = ("import os, time\n"
                "pid = os.fork()\n"
                "if pid == 0:\n"
                "    os.setpgid(0, 0)\n"
                "    time.sleep(120)\n"
                "    os._exit(0)\n"
                f"open({pids!r}, 'w').write(str(pid))\n"
                "time.sleep(120)\n")
        j = run_tests.Job("k", "hangs", [sys.executable, "-c", code], dict(os.environ), ("py",))
        with mock.patch.object(run_tests, "JOB_TIMEOUT", 2):
            run_tests.run_job(j)
        self.assertEqual(j.status, 124)
        self.assertIn("stopped after 2 s", j.out)
        with open(pids) as f:
            child = int(f.read())
        try:
            with open(f"/proc/{child}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
        self.assertIn(state, ("gone", "Z"))


@unittest.skipUnless(os.access(os.path.join(ROOT, "build", "check_polldrop_asan"), os.X_OK),
                     "make test builds build/check_polldrop_asan")
class Suites(unittest.TestCase):
    def test_every_suite_of_the_checked_runner_is_found(self):
        names = run_tests.check_suites(os.path.join(ROOT, "build", "check_polldrop_asan"),
                                       run_tests.SAN_ENV)
        with open(os.path.join(ROOT, "tests", "check_main.c")) as f:
            listed = f.read().count("    pd_suite_")
        self.assertEqual(len(names), listed)
        self.assertEqual(len(set(names)), len(names))
        self.assertIn("httpd", names)
        self.assertIn("misuse caught by the checked build", names)


if __name__ == "__main__":
    unittest.main()
