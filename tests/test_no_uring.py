"""No silent run: without io_uring the Check runner runs on epoll and says so.

build/seccomp_run -e ENOSYS runs a program under a seccomp filter that makes
io_uring_setup fail with ENOSYS, as on a kernel built without io_uring (or
under Podman's default profile). pd_runtime_new's auto engine falls back to
epoll there: the runner must say that it runs on epoll, and why, and its
tests of io_uring itself must say they were skipped; asked for io_uring
itself (PD_ENGINE=uring), it must fail, saying why.
"""
import os
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "build", "check_polldrop")
SECCOMP_RUN = os.path.join(ROOT, "build", "seccomp_run")


def run(env_extra):
    env = {k: v for k, v in os.environ.items() if k != "PD_ENGINE"}
    env.update(env_extra)
    return subprocess.run([SECCOMP_RUN, "-e", "ENOSYS", RUNNER], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600)


class NoUring(unittest.TestCase):
    def setUp(self):
        for path in (RUNNER, SECCOMP_RUN):
            if not os.access(path, os.X_OK):
                self.fail(f"{path} is not built (make test builds it)")

    def test_runs_on_epoll_and_says_so(self):
        # Two suites, to keep it short: the runtime's, and the engines' own
        # (whose io_uring checks must say they were skipped).
        r = run({"CK_RUN_SUITE": "runtime"})
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("polldrop: io_uring is not available here (Function not "
                      "implemented): the C suites run on the epoll engine", r.stderr)
        self.assertRegex(r.stdout, r"\nepoll: [1-9]\d* passed, 0 failed\n")
        r = run({"CK_RUN_SUITE": "engine"})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("engine:config_chooses_the_engine: skipped: io_uring is not "
                      "available here", r.stdout)
        self.assertRegex(r.stdout, r"\nepoll: [1-9]\d* passed, 0 failed\n")

    def test_fails_when_io_uring_is_required(self):
        r = run({"PD_ENGINE": "uring", "CK_RUN_SUITE": "runtime"})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("polldrop: no runtime can be made here (pd_runtime_new with "
                      "PD_ENGINE=uring: Function not implemented)", r.stderr)

    def test_an_unknown_engine_fails(self):
        r = run({"PD_ENGINE": "kqueue", "CK_RUN_SUITE": "runtime"})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("PD_ENGINE=kqueue: Invalid argument", r.stderr)


if __name__ == "__main__":
    unittest.main()
