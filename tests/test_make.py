"""The Makefile's dependencies: an object is rebuilt when a header it
includes changes, so that a stale object is never linked. Asked of make
itself (`make -n -W HEADER OBJECT...`: what it would do were the header
new), on the tree make test has just built."""
import os
import re
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN_TEST = os.path.join(ROOT, "build", "gen-test")


def make_env():
    """The environment for a make of its own (not the jobserver of ours)."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}


def would_build(objects, header=None):
    """The objects make would rebuild (were header changed). The lists of
    spec names under build/list are remade on every make and rewritten only
    when they change: make -n cannot know that, so they are taken as old."""
    lists = [a for f in sorted(os.listdir(os.path.join(ROOT, "build", "list")))
             for a in ("-o", f"build/list/{f}")]
    what_if = ["-W", header] if header else []
    r = subprocess.run(["make", "-n", "--no-print-directory", *lists, *what_if, *objects],
                       cwd=ROOT, env=make_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"make -n failed:\n{r.stdout}\n{r.stderr}")
    return {o for o in objects if re.search(rf"-o {re.escape(o)}(\s|$)", r.stdout)}


class Python(unittest.TestCase):
    """make's PYTHON is the interpreter itself, not a wrapper that finds one
    (a version manager's shim costs a tenth of a CPU-second a start), and
    the makes and scripts it runs get it from the environment rather than
    finding it again."""

    def test_python_is_the_interpreter_and_exported(self):
        env = {k: v for k, v in make_env().items() if k != "PYTHON"}
        r = subprocess.run(["make", "-s", "--no-print-directory", "--eval",
                            "pd-test-python: ; @echo '$(PYTHON)'; echo \"$$PYTHON\"",
                            "pd-test-python"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        made, exported = r.stdout.splitlines()
        self.assertEqual(exported, made)
        real = subprocess.run([made, "-c", "import sys; print(sys.executable)"],
                              capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual(made, real)


@unittest.skipUnless(os.path.isdir(GEN_TEST), "needs the test specs generated (make test)")
class TestSpecObjects(unittest.TestCase):
    def test_a_tests_header_rebuilds_the_test_specs_that_include_it(self):
        # The headers of tests/ that the test specs' snippets include.
        users = {}
        # (Each test spec's object compiles its .c, which includes its .h.)
        for n in sorted(os.listdir(GEN_TEST)):
            if not n.endswith((".c", ".h")):
                continue
            with open(os.path.join(GEN_TEST, n)) as f:
                for h in re.findall(r'^#include "([^"/]+)"', f.read(), re.M):
                    if os.path.isfile(os.path.join(ROOT, "tests", h)) and \
                            n[:-2] not in users.get(h, []):
                        users.setdefault(h, []).append(n[:-2])
        self.assertIn("hop_ctx.h", users)
        for h, names in users.items():
            objects = [o for n in names
                       for o in (f"build/obj/gen-test/{n}.o", f"build/asan/gen-test/{n}.o",
                                 f"build/obj/bench/{n}.o")
                       if os.path.exists(os.path.join(ROOT, o))]
            # The benchmark's objects, when built, may be older than the
            # rest: make test does not build them. Only those up to date can
            # tell whether the header would rebuild them.
            stale = would_build(objects)
            self.assertFalse([o for o in stale if "/bench/" not in o], "not up to date")
            objects = [o for o in objects if o not in stale]
            with self.subTest(header=h):
                self.assertEqual(sorted(set(objects) - would_build(objects, f"tests/{h}")), [])


class TestObjects(unittest.TestCase):
    def test_an_examples_header_rebuilds_the_tests_that_include_it(self):
        # tests/test_httpd.c includes examples/httpd/http.h and server.h
        # (the runner links it with the examples' objects, built from the
        # same headers: a struct that changes under one must change both).
        headers = {}
        for d in sorted(os.listdir(os.path.join(ROOT, "examples"))):
            ex = os.path.join(ROOT, "examples", d)
            if os.path.isdir(ex):
                for h in os.listdir(ex):
                    if h.endswith(".h"):
                        headers.setdefault(h, f"examples/{d}/{h}")
        users = {}
        for n in sorted(os.listdir(os.path.join(ROOT, "tests"))):
            if n.endswith(".c"):
                with open(os.path.join(ROOT, "tests", n)) as f:
                    for h in re.findall(r'^#include "([^"/]+)"', f.read(), re.M):
                        if h in headers:
                            users.setdefault(headers[h], []).append(n[:-2])
        self.assertIn("examples/httpd/server.h", users)
        for h, names in sorted(users.items()):
            objects = [o for n in names
                       for o in (f"build/obj/tests/{n}.o", f"build/asan/tests/{n}.o")
                       if os.path.exists(os.path.join(ROOT, o))]
            if not objects or would_build(objects):
                continue   # not built, or not up to date: nothing to tell
            with self.subTest(header=h):
                self.assertEqual(sorted(set(objects) - would_build(objects, h)), [])


if __name__ == "__main__":
    unittest.main()
