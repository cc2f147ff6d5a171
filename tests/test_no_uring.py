"""No silent skip: without io_uring the Check runner fails, saying why.

build/no_uring runs a program under a seccomp filter that makes
io_uring_setup fail with ENOSYS, as on a kernel built without io_uring.
"""
import os
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "build", "check_polldrop")
NO_URING = os.path.join(ROOT, "build", "no_uring")


def run(env_extra):
    env = {k: v for k, v in os.environ.items() if k != "PD_TESTS_ALLOW_NO_URING"}
    env.update(env_extra)
    return subprocess.run([NO_URING, RUNNER], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)


class NoUring(unittest.TestCase):
    def setUp(self):
        for path in (RUNNER, NO_URING):
            if not os.access(path, os.X_OK):
                self.fail(f"{path} is not built (make test builds it)")

    def test_fails_without_io_uring(self):
        r = run({})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("io_uring is not available here (pd_runtime_new: "
                      "Function not implemented)", r.stderr)
        self.assertIn("set PD_TESTS_ALLOW_NO_URING=1", r.stderr)

    def test_passes_only_when_told_to(self):
        r = run({"PD_TESTS_ALLOW_NO_URING": "1"})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("exiting 0 with 0 tests run", r.stderr)
        # Any other value is not permission.
        r = run({"PD_TESTS_ALLOW_NO_URING": "yes"})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
