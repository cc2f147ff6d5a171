"""The mutants of `make mutate` still fit the code, and make mutate's
runner stops at what it must stop at.

Each mutant replaces one exact piece of text; when the code it targets is
rewritten, the mutant no longer applies and `make mutate` (a slow target,
not part of `make test`) reports it only when someone runs it. This test
keeps the table in step on every `make test`: every mutant's text occurs
exactly once in its file, names are unique, and each names a runner make
test builds. The runner's own behaviour is tested on a stand-in for the
Check runner: a failing test ends the run while the suite is still going,
a hung suite is caught and every process it left is stopped, and a mutant
that no longer applies stops the run before anything is built.
"""
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import unittest
from unittest import mock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_mutate():
    spec = importlib.util.spec_from_file_location(
        "mutate", os.path.join(ROOT, "tests", "mutants", "mutate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_mutants():
    return load_mutate().MUTANTS


class MutantsApply(unittest.TestCase):
    def test_every_mutant_applies_once(self):
        for m in load_mutants():
            with self.subTest(mutant=m["name"]):
                with open(os.path.join(ROOT, m["file"]), encoding="utf-8") as f:
                    text = f.read()
                self.assertEqual(text.count(m["old"]), 1,
                                 f"{m['name']}: its text must occur exactly once "
                                 f"in {m['file']}")
                self.assertNotEqual(m["old"], m["new"])

    def test_names_are_unique(self):
        names = [m["name"] for m in load_mutants()]
        self.assertEqual(len(names), len(set(names)))

    def test_every_mutant_runs_against_a_build_of_make_test(self):
        mod = load_mutate()
        for m in mod.MUTANTS:
            with self.subTest(mutant=m["name"]):
                self.assertIn(m["run"], mod.KIND)
                binary = mod.RUNNERS[mod.KIND[m["run"]]][0]
                self.assertIn(binary, ("build/check_polldrop", "build/check_polldrop_asan"))


# A stand-in for a Check runner, by CK_RUN_SUITE: "pass" passes; "fail"
# reports a failed test in its TAP log and then keeps running; "hang" puts
# a child in a process group of its own (as Check does with each test),
# writes the child's pid to PD_FAKE_PIDS, and never ends.
FAKE = """#!{python}
import os, sys, time
suite = os.environ["CK_RUN_SUITE"]
if suite == "pass":
    print("1 passed, 0 failed")
    sys.exit(0)
if suite == "fail":
    with open(os.environ["CK_TAP_LOG_FILE_NAME"], "w") as f:
        f.write("not ok 1 - t.c:tc:the_test: Assertion failed\\n")
if suite == "hang":
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        time.sleep(120)
        os._exit(0)
    with open(os.environ["PD_FAKE_PIDS"], "a") as f:
        f.write(f"{{pid}}\\n")
time.sleep(120)
"""


def alive(pid):
    """pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class MutateRunner(unittest.TestCase):
    def setUp(self):
        self.mod = load_mutate()
        self.dir = tempfile.mkdtemp(prefix="pd-mutate-test-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        for name in ("WORK", "TREE"):
            patcher = mock.patch.object(self.mod, name, self.dir)
            patcher.start()
            self.addCleanup(patcher.stop)
        with open(os.path.join(self.dir, "fake"), "w") as f:
            f.write(FAKE.format(python=sys.executable))
        os.chmod(os.path.join(self.dir, "fake"), 0o755)
        self.pids = os.path.join(self.dir, "pids")
        self.suites = self.mod.Suites("plain")
        self.suites.binary = "fake"
        self.suites.env = {"PD_FAKE_PIDS": self.pids}

    def test_a_failing_test_ends_the_run_while_its_suite_still_runs(self):
        self.suites.names = ["pass", "fail"]
        t0 = time.monotonic()
        caught, detail, suite = self.suites.run()
        self.assertIs(caught, True)
        self.assertEqual(suite, "fail")
        self.assertIn("tc:the_test", detail)
        # The suite sleeps 120 s after its failure: it was stopped.
        self.assertLess(time.monotonic() - t0, 60)

    def test_a_hung_suite_is_caught_and_everything_it_left_is_stopped(self):
        self.suites.names = ["pass", "hang"]
        with mock.patch.object(self.mod, "HANG_S", 2):
            caught, detail, suite = self.suites.run()
        self.assertIs(caught, True)
        self.assertEqual(suite, "hang")
        self.assertIn("hung", detail)
        with open(self.pids) as f:
            child = int(f.read())
        self.assertFalse(alive(child), "the hung suite's test process was left running")

    def test_suites_that_pass_are_not_a_catch(self):
        self.suites.names = ["pass", "pass"]
        caught, detail, _ = self.suites.run(baseline=True)
        self.assertIs(caught, False, detail)

    def test_a_mutant_that_no_longer_applies_stops_the_run_before_any_build(self):
        stale = dict(name="stale", file="runtime/loop.c", old="no such text anywhere",
                     new="", inv="", run="plain")
        with mock.patch.object(self.mod, "MUTANTS", [stale]), \
                mock.patch.object(self.mod, "TREE", os.path.join(self.dir, "tree")), \
                mock.patch.object(self.mod, "build") as build, \
                mock.patch("sys.stderr"):
            self.assertEqual(self.mod.main([]), 2)
        build.assert_not_called()


if __name__ == "__main__":
    unittest.main()
