"""The product outside its repository.

The README's example, extracted from README.md and built with the README's
own commands, in the tree and against an install; `make install` in its
PREFIX form (from a fresh clone of the repository) and its DESTDIR form;
an install moved elsewhere as a whole; `make uninstall` removing exactly
what was installed; polldrop-gen run from elsewhere; and libpolldrop.a
holding the runtime and the current library specs only. Builds against an install see nothing of the repository:
only PATH and the pkg-config variables point into the install.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(test, cmd, cwd=None, env=None, stdin=None, shell=False):
    """Runs cmd; fails test with its output unless it exits 0. Returns stdout."""
    r = subprocess.run(cmd, cwd=cwd, env=env, shell=shell, text=True,
                       stdin=stdin if stdin is not None else subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    test.assertEqual(r.returncode, 0, f"{cmd} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def readme():
    """The README's app.c and its two build commands (in the tree, installed)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
    apps = [b for lang, b in blocks if lang == "c" and b.startswith("/* app.c")]
    cmds = [line for lang, b in blocks if lang == "sh"
            for line in b.splitlines() if line.startswith("cc app.c")]
    return apps, cmds


def make_env():
    """The environment for a make of its own (not the jobserver of ours)."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}


def readme_app(test, cwd, cmd, env=None):
    """Writes the README's app.c into cwd, builds it with cmd as the README
    writes it, and runs it on a file of 12 bytes."""
    apps, _ = readme()
    with open(os.path.join(cwd, "app.c"), "w") as f:
        f.write(apps[0])
    run(test, cmd, cwd=cwd, env=env, shell=True)
    data = os.path.join(cwd, "data.txt")
    with open(data, "w") as f:
        f.write("twelve bytes")
    # stdin is a pipe nobody writes to: only the cancel can end that read.
    p = subprocess.Popen([os.path.join(cwd, "app"), data], cwd=cwd, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    test.assertEqual(p.returncode, 0, err)
    test.assertEqual(out, f"read 12 bytes of {data}\nstdin read cancelled\n")


def installed_env(prefix, sysroot=None):
    """An environment that reaches polldrop only through the install."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PKG_CONFIG", "PYTHON", "POLLDROP", "MAKE", "MFLAGS"))}
    env["PATH"] = os.path.join(prefix, "bin") + os.pathsep + os.environ.get("PATH", "")
    env["PKG_CONFIG_PATH"] = os.path.join(prefix, "lib", "pkgconfig")
    if sysroot:
        env["PKG_CONFIG_SYSROOT_DIR"] = sysroot
    return env


def outside(test, where, env):
    """Copies examples/outside to where, builds it (its default goal) and
    runs its make test with env; then checks polldrop.mk's dependencies and
    that a C error in a snippet is reported at the spec's line."""
    dst = os.path.join(where, "outside")
    shutil.copytree(os.path.join(ROOT, "examples", "outside"), dst,
                    ignore=shutil.ignore_patterns("build"))
    run(test, ["make"], cwd=dst, env=env)
    test.assertTrue(os.access(os.path.join(dst, "build", "check_greeter"), os.X_OK))
    # The generator's compiled templates, for its next run (POLLDROP_GEN_CACHE).
    test.assertTrue(os.listdir(os.path.join(dst, "build", "polldrop", ".cache")))
    out = run(test, ["make", "test"], cwd=dst, env=env)
    test.assertIn("100%: Checks: 1, Failures: 0, Errors: 0", out)

    def up_to_date():
        return subprocess.run(["make", "-q", "build/greet"], cwd=dst, env=env,
                              capture_output=True).returncode == 0
    test.assertTrue(up_to_date())
    spec = os.path.join(dst, "specs", "greeter.yaml")
    later = time.time() + 10   # copytree kept the repository's old mtime
    os.utime(spec, (later, later))
    test.assertFalse(up_to_date(), "a changed spec must regenerate")

    with open(spec) as f:
        lines = f.read().split("\n")
    bad = next(i for i, l in enumerate(lines) if "GOTO(say);" in l)
    lines[bad] = lines[bad].replace("GOTO(say);", "no_such_variable = 1; GOTO(say);")
    with open(spec, "w") as f:
        f.write("\n".join(lines))
    r = subprocess.run(["make", "build/greet"], cwd=dst, env=env, capture_output=True, text=True)
    test.assertNotEqual(r.returncode, 0)
    test.assertIn(f"specs/greeter.yaml:{bad + 1}:", r.stderr)
    # polldrop-clean leaves nothing of the generator's behind, its cache included.
    run(test, ["make", "polldrop-clean"], cwd=dst, env=env)
    test.assertFalse(os.path.exists(os.path.join(dst, "build", "polldrop", ".cache")))
    return dst


def pc_dirs(flags):
    """pkg-config's flags with each -I and -L directory normalised: a
    relocatable .pc names them through its own directory (DIR/../..)."""
    return " ".join(f[:2] + os.path.normpath(f[2:]) if f[:2] in ("-I", "-L") else f
                    for f in flags.split())


def tree(top):
    """Every path under top, relative to it."""
    out = set()
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), top))
    return out


class Readme(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pd-readme-")
        self.apps, self.cmds = readme()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_readme_has_one_example_and_both_commands(self):
        self.assertEqual(len(self.apps), 1)
        self.assertEqual(len(self.cmds), 2, self.cmds)
        self.assertIn("pkg-config --cflags --libs polldrop", self.cmds[1])

    def test_in_tree_command_as_written(self):
        # The command names runtime/ and build/ relative to the repository
        # root; the example's directory mirrors them with links.
        os.symlink(os.path.join(ROOT, "runtime"), os.path.join(self.dir, "runtime"))
        os.symlink(os.path.join(ROOT, "build"), os.path.join(self.dir, "build"))
        readme_app(self, self.dir, self.cmds[0])


def library_symbols(archive):
    """The global symbols archive defines."""
    out = subprocess.run(["nm", "-g", "--defined-only", archive], capture_output=True,
                         text=True, check=True).stdout
    return {f[2] for f in (line.split() for line in out.splitlines()) if len(f) == 3}


@unittest.skipUnless(shutil.which("nm"), "needs nm")
class Archive(unittest.TestCase):
    """libpolldrop.a holds the runtime and the futures of specs/ as the list
    is now: no example's futures, nothing of a spec deleted since the last
    build. Built in a copy of the tree, whose specs/ this test may change,
    with what the tree's own build has of the library (its times kept, so
    that make rebuilds only what is stale in the copy): a deleted spec is
    deleted from a library built before, as in a user's tree."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pd-archive-")
        self.tree = os.path.join(self.dir, "tree")
        shutil.copytree(ROOT, self.tree,
                        ignore=shutil.ignore_patterns("build", ".git", "__pycache__"))
        build = os.path.join(ROOT, "build")
        for d in ("list", "gen", "obj/gen"):
            if os.path.isdir(os.path.join(build, d)):
                shutil.copytree(os.path.join(build, d), os.path.join(self.tree, "build", d))
        for f in glob.glob(os.path.join(build, "obj", "*.o")) + \
                glob.glob(os.path.join(build, "libpolldrop.a")):
            dst = os.path.join(self.tree, os.path.relpath(f, ROOT))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(f, dst)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def build(self):
        """Builds the copy's library; returns (its spec names, its symbols)."""
        run(self, ["make", "-s", "--no-print-directory", "build/libpolldrop.a"],
            cwd=self.tree, env=make_env())
        names = {f[:-5] for f in os.listdir(os.path.join(self.tree, "specs"))
                 if f.endswith(".yaml")}
        return names, library_symbols(os.path.join(self.tree, "build", "libpolldrop.a"))

    def assert_only_runtime_and(self, names, symbols):
        strays = sorted(s for s in symbols
                        if not s.startswith("pd_")
                        and not any(s.startswith(n + "_") for n in names))
        self.assertEqual(strays, [])
        for n in names:
            self.assertIn(n + "_vtable", symbols)

    def test_holds_the_runtime_and_the_library_futures_only(self):
        names, symbols = self.build()
        self.assertIn("write_all", names)
        self.assertNotIn("echo_conn", names)
        self.assert_only_runtime_and(names, symbols)
        self.assertFalse([s for s in symbols if s.startswith("echo_")])

    def test_a_deleted_spec_leaves_nothing_behind(self):
        self.build()
        # signal_wait: a library future no other library spec embeds.
        os.unlink(os.path.join(self.tree, "specs", "signal_wait.yaml"))
        names, symbols = self.build()
        self.assertNotIn("signal_wait", names)
        self.assertFalse([s for s in symbols if s.startswith("signal_wait_")])
        self.assert_only_runtime_and(names, symbols)
        # Nor can its generated header be included, or its object linked.
        build = os.path.join(self.tree, "build")
        left = [p for p in ("gen/signal_wait.h", "gen/signal_wait.c", "obj/gen/signal_wait.o")
                if os.path.exists(os.path.join(build, p))]
        self.assertEqual(left, [])


class Install(unittest.TestCase):
    """make install and uninstall, DESTDIR form, from the working tree."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pd-install-")
        self.stage = os.path.join(self.dir, "stage")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def make(self, *args):
        return run(self, ["make", "-s", "--no-print-directory", *args], cwd=ROOT,
                   env=make_env())

    def test_destdir_stages_a_package_under_prefix_usr(self):
        self.make("install", f"DESTDIR={self.stage}", "PREFIX=/usr")
        files = tree(self.stage)
        for f in ("usr/bin/polldrop-gen", "usr/lib/libpolldrop.a",
                  "usr/include/polldrop/polldrop.h", "usr/include/polldrop/pd_internal.h",
                  "usr/include/polldrop/write_all.h", "usr/lib/pkgconfig/polldrop.pc",
                  "usr/share/polldrop/polldrop.mk", "usr/share/polldrop/gen/cli.py",
                  "usr/share/polldrop/templates/future.c.j2",
                  "usr/share/polldrop/specs/write_all.yaml"):
            self.assertIn(f, files)
        self.assertFalse([f for f in files if "__pycache__" in f or f.endswith(".pyc")])
        # The library, not the examples: no echo server spec, header or code.
        self.assertFalse([f for f in files if "echo" in os.path.basename(f)])
        self.assertFalse([s for s in library_symbols(
            os.path.join(self.stage, "usr/lib/libpolldrop.a")) if s.startswith("echo_")])
        with open(os.path.join(self.stage, "usr/lib/pkgconfig/polldrop.pc")) as f:
            pc = f.read()
        # Relative to the .pc file's directory: the staged tree is the package.
        self.assertIn("prefix=${pcfiledir}/../..\n", pc)
        self.assertIn("libdir=${prefix}/lib\n", pc)
        self.assertNotIn(self.stage, pc)
        self.assertIn("Requires.private: liburing", pc)

        env = installed_env(os.path.join(self.stage, "usr"), sysroot=self.stage)
        flags = pc_dirs(run(self, ["pkg-config", "--cflags", "--libs", "polldrop"], env=env))
        self.assertIn(f"-I{self.stage}/usr/include/polldrop", flags)
        self.assertIn("-lpolldrop", flags)

        # Staged files are the package: the app builds against them as written.
        app = os.path.join(self.dir, "app")
        os.mkdir(app)
        readme_app(self, app, readme()[1][1], env)
        outside(self, self.dir, env)

        self.make("uninstall", f"DESTDIR={self.stage}", "PREFIX=/usr")
        self.assertEqual(tree(self.stage), set())

    def test_uninstall_keeps_what_it_did_not_install(self):
        prefix = os.path.join(self.dir, "p")
        os.makedirs(os.path.join(prefix, "lib", "pkgconfig"))
        mine = os.path.join(prefix, "lib", "pkgconfig", "other.pc")
        with open(mine, "w") as f:
            f.write("not polldrop's\n")
        self.make("install", f"PREFIX={prefix}")
        self.make("install", f"PREFIX={prefix}")   # a reinstall forgets nothing
        self.make("uninstall", f"PREFIX={prefix}")
        self.assertEqual(tree(prefix), {"lib", "lib/pkgconfig", "lib/pkgconfig/other.pc"})

    def test_reinstall_removes_what_the_older_install_had_and_this_one_has_not(self):
        prefix = os.path.join(self.dir, "p")
        self.make("install", f"PREFIX={prefix}")
        # As if an older version had installed a library spec since removed.
        stale = os.path.join(prefix, "share", "polldrop", "specs", "gone.yaml")
        with open(stale, "w") as f:
            f.write("future: gone\n")
        with open(os.path.join(prefix, "share", "polldrop", "install-manifest"), "a") as f:
            f.write(f"f {stale}\n")
        self.make("install", f"PREFIX={prefix}")
        self.assertFalse(os.path.exists(stale))
        self.assertTrue(os.path.exists(os.path.join(prefix, "lib", "libpolldrop.a")))
        self.make("uninstall", f"PREFIX={prefix}")
        self.assertFalse(os.path.exists(prefix))

    def test_a_moved_install_still_builds_the_outside_project(self):
        # The .pc files name their prefix from their own directory
        # (${pcfiledir}) and polldrop-gen and polldrop.mk find theirs from
        # their own paths, so the tree works wherever it is moved to.
        prefix = os.path.join(self.dir, "p")
        self.make("install", f"PREFIX={prefix}")
        moved = os.path.join(self.dir, "moved", "elsewhere")
        os.makedirs(os.path.dirname(moved))
        os.rename(prefix, moved)
        env = installed_env(moved)
        flags = pc_dirs(run(self, ["pkg-config", "--cflags", "--libs", "polldrop"], env=env))
        self.assertIn(f"-I{moved}/include/polldrop", flags)
        self.assertIn(f"-L{moved}/lib", flags)
        mk = run(self, ["pkg-config", "--variable=polldrop_mk", "polldrop"], env=env)
        self.assertEqual(os.path.normpath(mk.strip()), f"{moved}/share/polldrop/polldrop.mk")
        app = os.path.join(self.dir, "app")
        os.mkdir(app)
        readme_app(self, app, readme()[1][1], env)
        outside(self, self.dir, env)

    def test_relative_prefix_is_refused(self):
        r = subprocess.run(["make", "-s", "install", "PREFIX=relative/dir"], cwd=ROOT,
                           env=make_env(), capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("must be absolute paths", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(ROOT, "relative")))

    def test_polldrop_gen_runs_from_elsewhere(self):
        self.make("install", f"DESTDIR={self.stage}", "PREFIX=/opt/pd")
        env = installed_env(os.path.join(self.stage, "opt/pd"), sysroot=self.stage)
        work = os.path.join(self.dir, "work")
        # A gen package in the caller's directory must not shadow the generator.
        os.makedirs(os.path.join(work, "gen"))
        with open(os.path.join(work, "gen", "__init__.py"), "w") as f:
            f.write("raise SystemExit('the wrong gen')\n")
        with open(os.path.join(work, "w.yaml"), "w") as f:
            f.write("future: w\nparams:\n  - {name: fd, type: int}\n"
                    "fields:\n  - {name: wr, future: write_all}\n"
                    "states:\n  go:\n    await: wr\n"
                    "    args: [self->fd, '\"hi\\n\"', 3]\n    then: RETURN((int)out);\n")
        # Through a symlink, as a packager's alternatives or a user's ~/bin do.
        link = os.path.join(self.dir, "polldrop-gen")
        os.symlink(os.path.join(self.stage, "opt/pd/bin/polldrop-gen"), link)
        # The library spec write_all is found without -I.
        # A wrapper that finds the interpreter (a version manager's shim) is
        # started once, to find it: the generator runs under the
        # interpreter's own sys.executable.
        starts = os.path.join(self.dir, "starts")
        shim = os.path.join(self.dir, "shim")
        with open(shim, "w") as f:
            f.write(f'#!/bin/sh\necho start >>"{starts}"\nexec "{sys.executable}" "$@"\n')
        os.chmod(shim, 0o755)
        run(self, [link, "-o", "out", "w.yaml"], cwd=work, env=dict(env, POLLDROP_PYTHON=shim))
        self.assertTrue(os.path.isfile(os.path.join(work, "out", "w.c")))
        with open(starts) as f:
            self.assertEqual(f.read(), "start\n")
        self.assertFalse(os.path.exists(os.path.join(work, "gen", "__pycache__")))
        # --stats compiles a probe against the installed runtime headers.
        out = run(self, [link, "--stats", "-o", "out", "w.yaml"], cwd=work, env=env)
        self.assertRegex(out, r"\nw +\d+ +\d+ +\d+\n")
        # The version, in --version and in what it generates.
        from gen import __version__
        self.assertEqual(run(self, [link, "--version"], cwd=work, env=env),
                         f"polldrop-gen {__version__}\n")
        with open(os.path.join(work, "out", "w.h")) as f:
            self.assertIn(f"polldrop-gen {__version__}", f.read())
        # Its messages carry its own name.
        r = subprocess.run([link], cwd=work, env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"(?m)^polldrop-gen: error: ")
        # A harness skeleton for the spec compiles against the install as written.
        run(self, [link, "--harness", "-o", "out", "w.yaml"], cwd=work, env=env)
        flags = run(self, ["pkg-config", "--cflags", "polldrop", "polldrop-harness"], env=env)
        run(self, f"cc -std=gnu11 -Wall -Wextra -Werror -c out/w_harness_test.c -I out "
                  f"{flags.strip()} -o out/t.o", cwd=work, env=env, shell=True)

        # Without a usable Python: one line that says what to install.
        r = subprocess.run([link, "w.yaml"], cwd=work, capture_output=True, text=True,
                           env=dict(env, POLLDROP_PYTHON="/bin/false"))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"^polldrop-gen: error: no Python 3 with PyYAML and "
                                   r"Jinja2 among: /bin/false \(Debian: apt-get install "
                                   r"python3-yaml python3-jinja2; or set POLLDROP_PYTHON\)\n\Z")


@unittest.skipUnless(os.path.exists(os.path.join(ROOT, ".git")) and shutil.which("git"),
                     "needs git and the repository's history to clone it")
class FreshClone(unittest.TestCase):
    """make install PREFIX=DIR from a fresh clone of the committed tree, and
    a user's build against it with only PATH and PKG_CONFIG_PATH."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pd-clone-")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_prefix_install_from_a_fresh_clone(self):
        clone = os.path.join(self.dir, "polldrop")
        prefix = os.path.join(self.dir, "inst")
        run(self, ["git", "clone", "-q", ROOT, clone])
        # At -O0: what is tested is that a fresh clone builds and installs;
        # make test's own build compiles the same files at -O2.
        run(self, ["make", "-s", "install", f"PREFIX={prefix}", "CFLAGS=-O0"], cwd=clone,
            env=make_env())
        shutil.rmtree(clone)

        env = installed_env(prefix)
        app = os.path.join(self.dir, "app")
        os.mkdir(app)
        readme_app(self, app, readme()[1][1], env)
        outside(self, self.dir, env)

        run(self, ["make", "-s", "uninstall", f"PREFIX={prefix}"], cwd=ROOT)
        self.assertFalse(os.path.exists(prefix))


if __name__ == "__main__":
    unittest.main()
