"""A spec fuzzer for the generator: mutates the project's own specs and checks
the generator's contract on every mutant.

    python3 tests/fuzz_specs.py [-n CASES] [--seed SEED] [-v]

Each case takes one spec of specs/, tests/specs/ or examples/echo/, applies
one to three mutations (keys deleted, duplicated and retyped, lists for
maps, huge and unicode strings, deep nesting, anchors and aliases, tabs,
binary junk, long names, C-looking names, comment-breaking text, ...) and
runs the generator on it. It checks, per case:

- the exit status is 0 or 1, and there is no traceback;
- every diagnostic is one line, `FILE:LINE:COL: (error|warning): ...`;
- on error, nothing is written;
- the case finishes within a time limit (a hang is a failure): 30 s of
  the generator's CPU time, so that a machine loaded by other work does
  not turn a slow case into a failure, and ten times that of wall time;
- an accepted spec compiles with `cc -std=gnu11 -Wall -Wextra -Werror -c`.
  Mutations that keep the C text intact ("clean" ones: consistent renames,
  doc text, formatting) must compile without a diagnostic; the others may
  have broken the C in a snippet (a deleted field that code still uses),
  and then every compiler error must point into a spec (through #line),
  never into generated code.

The generator runs in a worker process that is killed and restarted when a
case exceeds the limit, so a slice of a few hundred cases costs seconds of
interpreter start-up, not minutes. `make test` runs a small seeded slice
through unittest (tests/test_fuzz.py); `make fuzz N=5000 SEED=1` runs more.
Exit status 0 when every case passed; failures are listed with their seed
and written under the work directory for replay.
"""
import argparse
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_DIRS = [os.path.join(ROOT, "specs"), os.path.join(ROOT, "tests", "specs"),
               os.path.join(ROOT, "examples", "echo")]
DIAG = re.compile(r"^(?P<file>.+?):\d+:\d+: (error|warning): \S")
CC_ERROR = re.compile(r"^(?P<file>[^:\n]+):\d+(?::\d+)?: (?:fatal )?error: ", re.M)
CASE_SECONDS = 30
# A case that has not used CASE_SECONDS of CPU is still given this many
# times CASE_SECONDS of wall time before it counts as a hang.
WALL_FACTOR = 10


def cpu_seconds(pid):
    """The CPU time of process pid and of the children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0

# Names that look like C but are not usable, or are and must work.
C_NAMES = ["printf", "dup", "memcpy", "rename", "getpid", "size_t", "FILE", "uint8_t",
           "pid_t", "ptrdiff_t", "io_uring", "unix", "linux", "errno", "BUFSIZ", "EOF",
           "alignas", "self", "cx", "res", "out", "cqe_flags", "rt", "mem", "t", "fut",
           "int", "struct", "pd_x", "PD_X", "pd__st", "__int128", "_Bool", "main",
           "stdin", "NULL", "true", "GOTO", "RETURN", "kid", "Kid", "x" * 64, "y" * 65,
           "a\nb", "a b", "1x", "x-y", "é", "名前", "x*/", "", "_", "__", "S_a"]
HOSTILE_TEXT = ["/* open", "*/ int injected; /*", "??/", "??=", "\\", "\"", "'", "\t",
                "a: b", "# c", " #c", "&x", "*x", "!x", "%x", "@x", "`x`", "{", "[",
                "\u2028", "\u0085", "\ufeff", "x" * 100000, "é" * 5000, "\x01", "\x7f"]


def corpus():
    out = []
    for d in CORPUS_DIRS:
        for name in sorted(os.listdir(d)):
            if name.endswith(".yaml"):
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    out.append((name[:-5], f.read()))
    return out


# --- structural mutations: on the parsed spec, emitted again as YAML ---

def _nodes(doc, path=()):
    """Every (container, key) pair of the document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield doc, k
            yield from _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield doc, i
            yield from _nodes(v, path + (i,))


def _retype(v, rng):
    choices = [None, 0, True, 3.5, [], {}, [v], {"k": v}, "", "x"]
    if isinstance(v, dict):
        choices += [list(v.items()), list(v.keys())]
    if isinstance(v, list):
        choices += [{str(i): x for i, x in enumerate(v)}]
    return rng.choice(choices)


def m_delete_key(doc, rng):
    pairs = [(c, k) for c, k in _nodes(doc)]
    c, k = rng.choice(pairs)
    del c[k]
    return False


def m_retype(doc, rng):
    c, k = rng.choice(list(_nodes(doc)))
    c[k] = _retype(c[k], rng)
    return False


def m_hostile_value(doc, rng):
    pairs = [(c, k) for c, k in _nodes(doc) if isinstance(c[k], str)]
    if pairs:
        c, k = rng.choice(pairs)
        c[k] = rng.choice([c[k] + rng.choice(HOSTILE_TEXT), rng.choice(HOSTILE_TEXT)])
    return False


def m_deep(doc, rng):
    c, k = rng.choice(list(_nodes(doc)))
    depth = rng.choice([10, 63, 65, 200, 400])
    v = c[k]
    for _ in range(depth):
        v = [v]
    c[k] = v
    return False


def m_doc(doc, rng):
    """Doc text is a comment in C: whatever it holds, the C stays clean."""
    doc["doc"] = rng.choice(HOSTILE_TEXT[:8] + ["/* a */ ??/ b\n*/ c", "x" * 50000,
                                                "line\nbreak", "é\u2028"])
    return True


MUTATIONS_DOC = [m_delete_key, m_retype, m_hostile_value, m_deep, m_doc]


# PyYAML's loader and dumper for the structural mutations: libyaml's where
# PyYAML was built with it (seven times faster), else the pure Python ones.
# They read the same documents, but write a few hostile values differently
# (libyaml writes U+0085 as "\N", the pure Python dumper a quoted line
# break: 12 of 3,000 cases of seed 1), so a seed names the same case only
# under the same kind of PyYAML (Debian's has libyaml); a failed case's
# text is written under the work directory, which replays it anywhere.
LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def emit(doc, rng, dumper=None):
    """The document as YAML: JSON (a YAML subset) or PyYAML's block style."""
    if rng.random() < 0.5:
        return json.dumps(doc, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))
    return yaml.dump(doc, Dumper=dumper or DUMPER, default_flow_style=False,
                     allow_unicode=True, width=1 << 20)


# --- text mutations: on the spec's source ---

IDENT_WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def _declared(text):
    """The names the spec declares (future, members, states, branches), and
    the future's own name; found with regexes, the text may be broken."""
    names = set(re.findall(r"\bname:\s*([A-Za-z_]\w*)", text))
    names.update(re.findall(r"^  ([A-Za-z_]\w*):", text, re.M))       # states
    names.update(re.findall(r"^      ([A-Za-z_]\w*): \{", text, re.M))  # branches
    future = re.search(r"^future:\s*([A-Za-z_]\w*)", text, re.M)
    return sorted(names), future.group(1) if future else None


def t_rename(text, name, rng):
    """Renames one name the spec declares, consistently everywhere: the C
    stays valid, unless the new name collides with something, which the
    generator must then refuse."""
    names, future = _declared(text)
    if not names and not future:
        return text, False
    old = rng.choice(names + [future] * 3 if future else names)
    new = rng.choice(C_NAMES)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", new):
        new = json.dumps(new)
    # Clean only when every use is one the rename keeps valid: not a call
    # (a state named close), not another struct's member (cx->rt), not part
    # of a longer name (an include "F_ctx.h").
    o = re.escape(old)
    total = len(re.findall(r"\b" + o + r"\b", text))
    kept = sum(len(re.findall(p, text, re.M)) for p in (
        r"\bname:\s*" + o + r"\b", r"^\s+" + o + r":", r"\bself->" + o + r"\b",
        r"\b(?:GOTO|YIELD)\(\s*" + o + r"\s*\)", r"\b(?:next|await|future):\s*" + o + r"\b"))
    clean = total == kept and not re.search(r"\b" + o + r"_", text)
    return re.sub(r"\b" + o + r"\b", lambda m: new, text), clean


def t_duplicate_line(text, name, rng):
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return "\n".join(lines), False


def t_delete_line(text, name, rng):
    lines = text.split("\n")
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines), False


def t_junk(text, name, rng):
    i = rng.randrange(len(text) + 1)
    junk = rng.choice(["\t", "\x00", "\x01\x02", "\xff", "\ufffe", "\ud7ff", "&a ", "*a ",
                       "!!str ", "? ", ": ", " # x", "- ", "[", "]", "{", "}", "\"", "'",
                       "|", ">", "%YAML 1.1\n", "---\n", "...\n", "\r", "\r\n", "\\",
                       "\udcff\udcfe"])
    return text[:i] + junk + text[i:], False


def t_tabs(text, name, rng):
    return text.replace("  ", "\t", rng.randrange(1, 4)), False


def t_bomb(text, name, rng):
    lines = ["x0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for i in range(1, 8):
        lines.append(f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return text + "\n" + "\n".join(lines) + "\n", False


def t_comment(text, name, rng):
    """A YAML comment after a value: the generator warns when it eats C."""
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    lines[i] += " # trailing " + rng.choice(["remark", "*/", "??/", "x"])
    return "\n".join(lines), False


def t_deep(text, name, rng):
    """Nesting far deeper than any emitter or composer would recurse."""
    depth = rng.choice([64, 65, 500, 5000])
    return text + "\ndeep: " + "[" * depth + "]" * depth + "\n", False


def t_many_states(text, name, rng):
    n = rng.choice([100, 4095, 4097])
    body = "".join(f"  z{i}: {{do: RETURN(0);}}\n" for i in range(n))
    return re.sub(r"^states:\n", lambda m: "states:\n" + body, text, count=1, flags=re.M), False


TEXT_MUTATIONS = [t_rename, t_rename, t_rename, t_duplicate_line, t_delete_line, t_junk,
                  t_junk, t_tabs, t_bomb, t_comment, t_deep, t_many_states]


def mutate(name, text, rng, loader=None, dumper=None):
    """Returns (mutated text, clean): clean when the C text was kept valid.
    loader and dumper: PyYAML's classes for the structural mutations
    (LOADER and DUMPER when None)."""
    clean = True

    for _ in range(rng.choice([1, 1, 2, 3])):
        # Structural mutations parse the text: not when it holds aliases
        # (a bomb would expand here) or nesting PyYAML cannot take.
        if rng.random() < 0.4 and "*a" not in text:
            try:
                doc = yaml.load(text, Loader=loader or LOADER)  # strings stay strings
            except Exception:
                doc = None
            if isinstance(doc, dict) and doc:
                m = rng.choice(MUTATIONS_DOC)
                ok = m(doc, rng)
                try:
                    text = emit(doc, rng, dumper)
                except RecursionError:
                    continue        # too deep for the emitters: t_deep covers it
                clean = ok and clean
                continue
        text, ok = rng.choice(TEXT_MUTATIONS)(text, name, rng)
        clean = ok and clean
    return text, clean


# --- running the generator ---

WORKER = r"""
import contextlib, io, json, sys, traceback
sys.path.insert(0, sys.argv[1])
from gen import cli
for line in sys.stdin:
    argv = json.loads(line)
    err = io.StringIO()
    tb = ""
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    except BaseException:
        code, tb = -1, traceback.format_exc()
    print(json.dumps({"code": code, "stderr": err.getvalue(), "traceback": tb}), flush=True)
"""


class Worker:
    """The generator, imported once, in a process that can be killed."""

    def __init__(self):
        self.p = None

    def run(self, argv, timeout):
        """The worker's answer, with "wall": the seconds it took; None when
        it used `timeout` seconds of CPU, or WALL_FACTOR times that of
        wall time, without answering."""
        if self.p is None:
            self.p = subprocess.Popen([sys.executable, "-c", WORKER, ROOT],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, encoding="utf-8")
        import selectors
        import time
        start, cpu0 = time.monotonic(), cpu_seconds(self.p.pid)
        self.p.stdin.write(json.dumps(argv) + "\n")
        self.p.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        while not sel.select(1.0):
            if cpu_seconds(self.p.pid) - cpu0 > timeout or \
                    time.monotonic() - start > WALL_FACTOR * timeout:
                sel.close()
                self.close()
                return None
        sel.close()
        wall = time.monotonic() - start
        line = self.p.stdout.readline()
        if not line:
            self.close()
            return {"code": -1, "stderr": "", "traceback": "worker died", "wall": wall}
        return dict(json.loads(line), wall=wall)

    def close(self):
        if self.p is not None:
            self.p.kill()
            self.p.wait()
            self.p.stdin.close()
            self.p.stdout.close()
            self.p = None


def check_cflags():
    try:
        r = subprocess.run(["pkg-config", "--cflags", "check"], capture_output=True,
                           text=True)
        return shlex.split(r.stdout)
    except OSError:
        return []


def compile_c(path, inc, cflags, extra=()):
    cc = shlex.split(os.environ.get("CC", "cc"))
    cmd = [*cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", *[f"-I{d}" for d in inc],
           *cflags, *extra, "-c", path, "-o", os.devnull]
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    return r.returncode, r.stderr


class Fuzzer:
    def __init__(self, work, verbose=False, base=None):
        """base: the directory of a corpus another Fuzzer prepared (it is
        only read), or None to generate one in work."""
        self.work = work
        self.verbose = verbose
        self.worker = Worker()
        self.prepared = base is not None
        self.base = base if base is not None else os.path.join(work, "base")
        # The corpus directories too: a spec's "quoted" headers sit next to it.
        self.inc = [os.path.join(ROOT, "runtime"), self.base, os.path.join(ROOT, "tests"),
                    *CORPUS_DIRS]
        self.cflags = check_cflags()
        self.stats = {"cases": 0, "accepted": 0, "rejected": 0, "compiled": 0,
                      "snippet_c_errors": 0, "failures": 0, "hangs": 0,
                      "slow_under_load": 0, "tracebacks": 0,
                      "compile_failures": 0}
        self.failures = []

    def prepare(self):
        """Generates the unmutated corpus once: the headers children need."""
        specs = [os.path.join(d, n) for d in CORPUS_DIRS for n in sorted(os.listdir(d))
                 if n.endswith(".yaml")]
        r = self.worker.run(["-o", self.base, *sum((["-I", d] for d in CORPUS_DIRS), []),
                             *specs], 600)
        if r is None or r["code"] != 0:
            raise SystemExit(f"fuzz_specs: the corpus itself does not generate: {r}")
        self.prepared = True

    def fail(self, case, why, text):
        self.stats["failures"] += 1
        keep = os.path.join(self.work, "failures", f"case{case}")
        os.makedirs(keep, exist_ok=True)
        with open(os.path.join(keep, "spec.yaml"), "w", encoding="utf-8",
                  errors="surrogateescape") as f:
            f.write(text)
        self.failures.append(f"case {case}: {why} (spec kept in {keep})")
        if self.verbose:
            print(self.failures[-1], file=sys.stderr)

    def case(self, i, rng, inputs):
        name, text = rng.choice(inputs)
        mutated, clean = mutate(name, text, rng)
        d = os.path.join(self.work, "case")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        spec = os.path.join(d, name + ".yaml")
        with open(spec, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(mutated)
        out = os.path.join(d, "out")
        self.stats["cases"] += 1
        r = self.worker.run(["-o", out, *sum((["-I", x] for x in CORPUS_DIRS), []), spec],
                            CASE_SECONDS)
        if r is None:
            self.stats["hangs"] += 1
            return self.fail(i, f"no answer within {CASE_SECONDS} s of CPU time (or "
                             f"{WALL_FACTOR * CASE_SECONDS} s)", mutated)
        if r["wall"] > CASE_SECONDS:
            # Not a failure: it used less than CASE_SECONDS of CPU.
            self.stats["slow_under_load"] += 1
        if r["traceback"] or "Traceback" in r["stderr"]:
            self.stats["tracebacks"] += 1
            return self.fail(i, "traceback: " + (r["traceback"] or r["stderr"])[-400:], mutated)
        if r["code"] not in (0, 1):
            return self.fail(i, f"exit status {r['code']}", mutated)
        for line in r["stderr"].splitlines():
            m = DIAG.match(line)
            if not m or not os.path.exists(m.group("file")):
                return self.fail(i, f"not a one-line diagnostic at a spec: {line!r}", mutated)
            if "internal generator error" in line:
                return self.fail(i, line, mutated)
        written = os.listdir(out) if os.path.isdir(out) else []
        if r["code"] == 1:
            self.stats["rejected"] += 1
            if written:
                return self.fail(i, f"error, but wrote {written}", mutated)
            return None
        self.stats["accepted"] += 1
        cs = [x for x in written if x.endswith(".c")]
        if len(cs) != 1:
            return self.fail(i, f"accepted, but wrote {written}", mutated)
        status, err = compile_c(os.path.join(out, cs[0]), [out] + self.inc, self.cflags)
        if status == 0:
            self.stats["compiled"] += 1
            return None
        # A mutant's own bad C is reported at the spec (later errors may
        # follow from it anywhere: a snippet with a stray brace). An error
        # inside a macro (GOTO) is located at its use for this question.
        if not clean:
            status, err = compile_c(os.path.join(out, cs[0]), [out] + self.inc, self.cflags,
                                    ["-ftrack-macro-expansion=0"])
        first = CC_ERROR.search(err)
        if not clean and first and first.group("file").endswith(".yaml"):
            self.stats["snippet_c_errors"] += 1
            return None
        self.stats["compile_failures"] += 1
        return self.fail(i, ("clean mutant " if clean else "") + "accepted but does not "
                         "compile: " + err[:600], mutated)

    def run(self, n, seed, first=0, step=1):
        """Runs n cases: first, first + step, ... Case i is the same whatever
        the split (its random generator is seeded SEED:i), so that slices of
        a run can go side by side."""
        inputs = corpus()
        if not self.prepared:
            self.prepare()
        for i in range(first, first + n * step, step):
            rng = random.Random(f"{seed}:{i}")
            self.case(i, rng, inputs)
            if self.verbose and (i + 1) % 100 == 0:
                print(f"fuzz_specs: {i + 1} cases, {self.stats}", file=sys.stderr)
        self.worker.close()
        return self.stats, self.failures


def main(argv=None):
    p = argparse.ArgumentParser(description="Fuzz the generator with mutated specs.")
    p.add_argument("-n", type=int, default=500, help="number of cases (default 500)")
    p.add_argument("--seed", default="1", help="seed; case i uses SEED:i")
    p.add_argument("--keep", metavar="DIR", help="work directory (kept); default: temporary")
    p.add_argument("--first", type=int, default=0, metavar="I",
                   help="start at case I (to replay one: --first I -n 1)")
    p.add_argument("-v", action="store_true",
                   help="report failures as they happen, progress every 100 cases")
    a = p.parse_args(argv)
    work = a.keep or tempfile.mkdtemp(prefix="pd-fuzz-")
    os.makedirs(work, exist_ok=True)
    stats, failures = Fuzzer(work, a.v).run(a.n, a.seed, a.first)
    for f in failures:
        print(f, file=sys.stderr)
    print("fuzz_specs: seed {} | {}".format(a.seed, ", ".join(f"{k} {v}" for k, v in
                                                            stats.items())))
    if not failures and not a.keep:
        shutil.rmtree(work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
