"""The command line: python3 -m gen [-o OUTDIR] [-I DIR]... SPEC.yaml...

The only part of the generator that touches files. Every diagnostic is one
line on stderr, FILE:LINE:COL: error: MESSAGE; the exit status is 1 if there
was any error (2 for a usage error), and a spec in error writes no output
file. The program's name in messages comes from POLLDROP_GEN_PROG (the
installed polldrop-gen wrapper sets it), by default `python3 -m gen`.
"""
import argparse
import errno
import os
import shlex
import subprocess
import sys
import tempfile

from gen import __version__, link, loader, model, render, validate
from gen.errors import Diagnostics, Pos, SpecError, one_line

# The directory above gen/: templates/ and specs/ sit next to the package,
# in the repository and in the install (PREFIX/share/polldrop).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_SPECS = os.path.join(ROOT, "specs")


def prog():
    return os.environ.get("POLLDROP_GEN_PROG") or "python3 -m gen"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {one_line(message)}\n")
        sys.exit(2)


def _args(argv):
    p = _Parser(prog=prog(),
                description="Generate C futures (poll/poll_drop) from polldrop YAML specs.")
    p.add_argument("specs", nargs="+", metavar="SPEC.yaml")
    p.add_argument("-o", dest="out", default="build/gen", metavar="OUTDIR",
                   help="output directory (default: build/gen)")
    p.add_argument("-I", dest="include", action="append", default=[], metavar="DIR",
                   help="where to find child futures' specs as DIR/TYPE.yaml; the "
                        "library specs are searched last")
    p.add_argument("--check", action="store_true", help="validate only, write nothing")
    p.add_argument("--dot", action="store_true", help="also write OUTDIR/NAME.dot")
    p.add_argument("--harness", action="store_true",
                   help="also write OUTDIR/NAME_harness_test.c, a Check test skeleton "
                        "for the harness (never overwritten)")
    p.add_argument("--stats", action="store_true",
                   help="print each future's sizeof and its size without state overlap "
                        "(compiles a probe with $CC)")
    p.add_argument("--version", action="version", version=f"polldrop-gen {__version__}")
    return p.parse_args(argv)


def _write_atomic(path, text):
    """Writes through a temporary in the same directory, then renames.

    The temporary is created like any new file (mode 0666 less the umask),
    not with mkstemp's 0600, so the result has the usual mode.
    """
    d = os.path.dirname(path) or "."
    base = os.path.basename(path)
    for attempt in range(100):
        tmp = os.path.join(d, f".{base}.{os.getpid()}.{attempt}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name", tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_all(paths, include_dirs, diags):
    """Loads and validates the named specs and the child specs they need.

    Returns (specs by future name, names of the specs named on the command line).
    """
    specs, named, by_file = {}, [], {}

    def take(path, is_named):
        try:
            root = loader.load_file(path)
        except SpecError as e:
            diags.errors.append(e)
            return None
        s = validate.validate(path, root, diags)
        if s is None or s.name is None:
            return None
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem != s.name:
            diags.warning(s.name_pos, f"future '{s.name}' is in {os.path.basename(path)}; "
                          f"-I finds it only as {s.name}.yaml")
        if s.name in specs:
            other = specs[s.name]
            if os.path.realpath(other.file) != os.path.realpath(path):
                diags.error(s.name_pos, f"future '{s.name}' is also defined in {other.file}")
            return specs[s.name]
        # The library's futures are the specs of LIBRARY_SPECS: another
        # spec of one of their names takes the library's place as a child,
        # and its header and symbols clash with the installed ones.
        lib = os.path.join(LIBRARY_SPECS, s.name + ".yaml")
        if os.path.isfile(lib) and os.path.realpath(lib) != os.path.realpath(path):
            diags.warning(root.key_pos.get("future", s.name_pos),
                          f"future '{s.name}' has the name of a library future ({lib}): "
                          "this spec shadows it, and its header and symbols clash with "
                          "the library's; choose another name")
        specs[s.name] = s
        by_file[os.path.realpath(path)] = s
        if is_named:
            named.append(s.name)
        return s

    for p in paths:
        if os.path.realpath(p) in by_file:
            continue
        take(p, True)
    # Children not named on the command line come from the -I path.
    todo = list(specs.values())
    while todo:
        s = todo.pop()
        # The futures it contains, and those its code spawns.
        for need in [v.child for v in s.members()] + [n for _, n, _ in s.spawns]:
            if not need or need in specs:
                continue
            for d in include_dirs:
                cand = os.path.join(d, need + ".yaml")
                if os.path.isfile(cand):
                    found = take(cand, False)
                    if found is not None:
                        todo.append(found)
                    break
    link.resolve_children(specs, diags)
    link.probe_names(specs, diags)
    return specs, named


def main(argv=None):
    args = _args(sys.argv[1:] if argv is None else argv)
    diags = Diagnostics()
    try:
        # After the user's -I directories, the library specs.
        include = args.include + ([LIBRARY_SPECS] if os.path.isdir(LIBRARY_SPECS) else [])
        specs, named = _load_all(args.specs, include, diags)
        bad_files = diags.files_in_error()
        # A spec is in error if it, or a child it contains, has an error.
        outputs = []
        for name in named:
            s = specs[name]
            if _tainted(s, specs, bad_files):
                continue
            m = model.build(s, s.file, args.out)
            outputs.append((m, render.render(m)))
        for line in diags.lines():
            sys.stderr.write(line + "\n")
        if args.stats and outputs:
            ok = _stats([m for m, _ in outputs], [t for _, t in outputs])
            if not ok:
                return 1
        if args.check:
            return 1 if diags.errors else 0
        if outputs:
            os.makedirs(args.out, exist_ok=True)
        for m, text in outputs:
            _write_atomic(os.path.join(args.out, m.name + ".h"), text["h"])
            _write_atomic(os.path.join(args.out, m.name + ".c"), text["c"])
            if args.dot:
                _write_atomic(os.path.join(args.out, m.name + ".dot"), text["dot"])
            if args.harness:
                _write_skeleton(os.path.join(args.out, m.name + "_harness_test.c"), m)
        return 1 if diags.errors else 0
    except OSError as e:
        sys.stderr.write(f"{prog()}: error: {one_line(e.filename or '')}: "
                         f"{e.strerror}\n")
        return 1
    except Exception as e:  # a generator bug must still not print a traceback
        where = Pos(args.specs[0], 1, 1)
        sys.stderr.write(f"{where}: error: internal generator error: "
                         f"{type(e).__name__}: {one_line(e)}\n")
        return 1


def _write_skeleton(path, m):
    """Writes the harness test skeleton, which the user edits: an existing
    file is left alone, with a warning."""
    if os.path.exists(path):
        sys.stderr.write(f"{one_line(path)}:1:1: warning: exists, not overwritten "
                         "(it is yours to edit; remove it for a fresh skeleton)\n")
        return
    _write_atomic(path, render.render_harness(m))
    print(f"{prog()}: wrote {one_line(path)}")


def _stats(models, texts):
    """Compiles and runs the layout probe; prints one line per future."""
    root = os.path.dirname(render.TEMPLATES)
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory(prefix="pd-stats-") as d:
        for m, t in zip(models, texts):
            for ext in ("h", "c"):
                with open(os.path.join(d, f"{m.name}.{ext}"), "w") as f:
                    f.write(t[ext])
        # Children not in this run: their headers come from the -o directory.
        probe = os.path.join(d, "probe.c")
        with open(probe, "w") as f:
            f.write(render.render_stats(models))
        exe = os.path.join(d, "probe")
        # A spec's "quoted" includes are found next to it, as a compiler
        # finds them next to a source file.
        own = dict.fromkeys(os.path.dirname(os.path.abspath(m.spec_path)) for m in models)
        cmd = [cc, "-std=gnu11", "-I", d, "-I", os.path.join(root, "runtime"),
               "-I", os.path.abspath(models[0].out_dir), *[a for x in own for a in ("-I", x)],
               *shlex.split(os.environ.get("CPPFLAGS", "")), probe, "-o", exe]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode == 0:
                r = subprocess.run([exe], capture_output=True, text=True)
        except OSError as e:
            sys.stderr.write(f"{prog()}: error: --stats needs a C compiler: {one_line(e)}\n")
            return False
        if r.returncode != 0:
            sys.stderr.write(f"{prog()}: error: --stats probe failed:\n" + r.stderr)
            return False
    print(f"{'future':<16} {'sizeof':>8} {'naive':>8} {'saved':>8}")
    for line in r.stdout.split("\n"):
        if line:
            name, size, naive = line.split()
            print(f"{name:<16} {size:>8} {naive:>8} {int(naive) - int(size):>8}")
    return True


def _tainted(s, specs, bad_files, seen=None):
    seen = seen or set()
    if s.name in seen:
        return False
    seen.add(s.name)
    if s.file in bad_files:
        return True
    return any(_tainted(specs[v.child], specs, bad_files, seen)
               for v in s.members() if v.child in specs)
