"""build/dcopy (examples/dcopy) as a process, on real trees: everything is
copied and equal; a deadline or SIGINT mid-copy, and an unreadable file,
leave no half-written file (every file in the destination equals its
source) with the exit status the tool promises. build/uv_dcopy, the libuv
version of the same tool (bench/uv_dcopy.c), is held to the same contract
when it is built (make test builds it where libuv is installed)."""
import filecmp
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DcopyContract(unittest.TestCase):
    TOOL = os.path.join(ROOT, "build", "dcopy")
    ENGINE = None           # PD_ENGINE for the tool: None leaves it as it is

    def setUp(self):
        if not os.access(self.TOOL, os.X_OK):
            self.skipTest(f"{self.TOOL} is not built")
        self.tmp = tempfile.mkdtemp(prefix="pd-dcopy-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.src = os.path.join(self.tmp, "src")
        self.dst = os.path.join(self.tmp, "dst")

    def make_tree(self, big=0):
        """A tree of small files in three levels, a symbolic link and a FIFO
        (skipped by both tools), and `big` sparse files of 256 MiB each."""
        for d in ["", "a", "a/b", "c"]:
            os.makedirs(os.path.join(self.src, d), exist_ok=True)
            for i in range(12):
                with open(os.path.join(self.src, d, f"f{i}"), "wb") as f:
                    f.write(os.urandom(i * 997))
        os.symlink("f1", os.path.join(self.src, "link"))
        os.mkfifo(os.path.join(self.src, "fifo"))
        for i in range(big):
            with open(os.path.join(self.src, "c", f"big{i}"), "wb") as f:
                f.truncate(256 << 20)

    def env(self):
        return dict(os.environ, PD_ENGINE=self.ENGINE) if self.ENGINE else None

    def run_tool(self, *args, **kw):
        return subprocess.run([self.TOOL, *args], capture_output=True, text=True,
                              timeout=120, env=self.env(), **kw)

    def assert_nothing_half_written(self):
        """Every regular file under dst equals its source; returns how many."""
        n = 0
        for root, _, files in os.walk(self.dst):
            for name in files:
                d = os.path.join(root, name)
                s = os.path.join(self.src, os.path.relpath(d, self.dst))
                self.assertTrue(os.path.isfile(s), d)
                self.assertEqual(os.path.getsize(d), os.path.getsize(s), f"{d} is half-written")
                self.assertTrue(filecmp.cmp(s, d, shallow=False), f"{d} differs")
                n += 1
        return n

    def test_copies_everything_equal(self):
        self.make_tree()
        r = self.run_tool(self.src, self.dst)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.assert_nothing_half_written(), 48)
        self.assertFalse(os.path.lexists(os.path.join(self.dst, "link")))
        self.assertFalse(os.path.lexists(os.path.join(self.dst, "fifo")))
        self.assertTrue(os.path.isdir(os.path.join(self.dst, "a", "b")))

    def test_existing_destination_is_an_error(self):
        self.make_tree()
        os.mkdir(self.dst)
        r = self.run_tool(self.src, self.dst)
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.dst, r.stderr)
        self.assertEqual(os.listdir(self.dst), [])

    def test_deadline_mid_copy_leaves_no_half_written_file(self):
        # 2 GiB to copy in 200 ms: the deadline passes mid-copy.
        self.make_tree(big=8)
        r = self.run_tool("-t", "200", self.src, self.dst)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("deadline", r.stderr)
        self.assert_nothing_half_written()

    def test_sigint_mid_copy_leaves_no_half_written_file(self):
        self.make_tree(big=8)
        p = subprocess.Popen([self.TOOL, self.src, self.dst], stderr=subprocess.PIPE, text=True,
                             env=self.env())
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        end = time.monotonic() + 30
        while not os.path.exists(os.path.join(self.dst, "c")) and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.1)     # copies under way (2 GiB take far longer)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 2, err)
        self.assert_nothing_half_written()

    def test_unreadable_file_is_an_error_and_nothing_is_half_written(self):
        self.make_tree(big=2)
        os.chmod(os.path.join(self.src, "a", "f5"), 0)
        kw = {}
        if os.getuid() == 0:
            # root reads anything: run as nobody, in a tree nobody may walk.
            os.chmod(self.tmp, 0o777)
            for root, dirs, _ in os.walk(self.tmp):
                for d in dirs:
                    os.chmod(os.path.join(root, d), 0o777)

            def nobody():
                os.setgid(65534)
                os.setuid(65534)
            kw["preexec_fn"] = nobody
        r = self.run_tool(self.src, self.dst, **kw)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("f5", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dst, "a", "f5")))
        self.assert_nothing_half_written()

    def test_bad_arguments(self):
        for args in [[], [self.src], ["-t", "x", "a", "b"], ["-z", "a", "b"]]:
            r = self.run_tool(*args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn("usage", r.stderr)


class DcopyOnEpoll(DcopyContract):
    """build/dcopy again on the epoll engine."""
    ENGINE = "epoll"


class UvDcopyContract(DcopyContract):
    """The same tests against the libuv version."""
    TOOL = os.path.join(ROOT, "build", "uv_dcopy")

    def test_bad_arguments(self):
        # uv_dcopy takes -t as atoll does: only the argument count and options are checked.
        for args in [[], [self.src], ["-z", "a", "b"]]:
            r = self.run_tool(*args)
            self.assertEqual(r.returncode, 1, args)


if __name__ == "__main__":
    unittest.main()
