"""Mutation testing: does the suite catch what it claims to?

Each mutant is one small edit of the runtime, the templates or the
generator that breaks one invariant of docs/design.md. `make mutate` copies
the tree to build/mutate/tree (the worktree is never touched; the scratch
tree's build is kept from one run to the next), builds there what make test
builds and runs the unmutated suites once (they must pass), then for each
mutant applies the edit, rebuilds the one runner its kind names, runs that
runner's suites side by side until one test fails, restores the file and
its build, and prints whether the suite caught it. A mutant whose text no
longer occurs exactly once stops the run before anything is built.
Exit status 1 if any mutant survived or does not build, 2 if one no longer
applies or the unmutated suites fail.

A hang is caught too: a suite that is still running 60 s after it started
(or three times as long as it took unmutated, if that is longer: a loaded
machine) is stopped with every process it left, and the mutant counts as
caught.

Usage: python3 tests/mutants/mutate.py [NAME...]   (default: every mutant)
  MUTATE_JOBS: suites at a time (default 3 per CPU); MUTATE_DIR: another
  scratch directory, for a second run alongside.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from run_tests import SAN_ENV, check_suites, kill_session  # noqa: E402

# Each mutant: name, file, exact text to replace (must occur exactly once),
# replacement, the invariant it breaks, and what runs against it, always a
# runner that make test builds and runs:
#   "plain" build/check_polldrop (make test's plain build, -O2);
#   "san"   build/check_polldrop_asan: ASan+UBSan and PD_CHECKED (the
#           registry of live op slots aborts on a late completion);
#   "c"     the same as "san": the checked build;
#   "gen"   the generator's unittest suite, then build/check_polldrop.
# Pick "plain" when the plain runner catches the mutant: it rebuilds faster.
MUTANTS = [
    # --- the five an audit found surviving ---
    dict(name="free-skips-dropping",
         file="runtime/runtime.c",
         old="        if (pd__task_live(t)) {\n            t->flags |= PD__TASK_FREED_DROP;",
         new="        if (pd__task_live(t) && t->state == PD_TASK_RUNNING) {\n"
             "            t->flags |= PD__TASK_FREED_DROP;",
         inv="2 exactly once; 1 kernel owns buffers: pd_runtime_free frees a "
             "task mid async drop without sync-dropping it",
         run="plain"),
    dict(name="linked-timeout-not-owed",
         file="runtime/runtime.c",
         old="    op->pending = 2;\n",
         new="",
         inv="1 no slot released while the kernel owes it a completion (the "
             "linked timeout's)",
         run="plain"),
    dict(name="op-closed-always",
         file="runtime/pd_internal.h",
         old="    return op->res != -ECANCELED;",
         new="    return (void)op, 1;",
         inv="5 no fd leak: a cancelled close counted as closed",
         run="plain"),
    dict(name="strdup-on-cancel",
         file="runtime/runtime.c",
         old="void pd_task_cancel(pd_task *t)\n{\n",
         new="void pd_task_cancel(pd_task *t)\n{\n    free(strdup(t->vt->name));\n",
         inv="4 no allocation after spawn",
         run="plain"),
    dict(name="poll-drop-dead-guard",
         file="templates/future.c.j2",
         old="    default:\n        /*\n         * Destroyed already",
         new="    default:\n        break;\n        /*\n         * Destroyed already",
         inv="2 exactly once: poll_drop on a destroyed future runs drop code again",
         run="plain"),
    # --- what the suite already caught, reconstructed ---
    dict(name="wake-twice",
         file="runtime/pd_internal.h",
         old="    if (t->queued)\n        return;\n    t->queued = 1;",
         new="    t->queued = 1;",
         inv="runtime: waking a queued task queues it twice (ready list corrupt)",
         run="plain"),
    dict(name="reap-keeps-fd",
         file="runtime/pd_internal.h",
         old="    if (had && op->fdret && op->res >= 0)\n        close(op->res);\n",
         new="",
         inv="5 no fd leak: an fd from a discarded completion is not closed",
         run="plain"),
    dict(name="cancel-not-sent",
         file="runtime/runtime.c",
         old="    if (op->st != PD__OP_BUSY || op->cancelled)\n        return;\n",
         new="    if (op->st == PD__OP_BUSY || op->cancelled)\n        return;\n",
         inv="7 cancelled means cancelled: no cancel request reaches the kernel",
         run="plain"),
    dict(name="quiesce-sync-no-wait",
         file="runtime/runtime.c",
         old="        while (op->st == PD__OP_BUSY) {\n            int ret;\n\n"
             "            pd__op_cancel(op);",
         new="        if (op->st == PD__OP_BUSY) {\n            int ret;\n\n"
             "            pd__op_cancel(op);",
         inv="1 a sync drop returns before the kernel gave the buffer back",
         run="plain"),
    dict(name="free-no-sync-drop",
         file="runtime/runtime.c",
         old="            t->flags |= PD__TASK_FREED_DROP;\n            t->vt->drop(t->self);\n",
         new="            t->flags |= PD__TASK_FREED_DROP;\n",
         inv="2 exactly once; 1: pd_runtime_free drops no live task",
         run="plain"),
    dict(name="child-drop-sync-skips-dropping",
         file="runtime/pd_internal.h",
         old="    if ((*cs & 3) == PD__CH_RUN || (*cs & 3) == PD__CH_DROP)\n        vt->drop(child);",
         new="    if ((*cs & 3) == PD__CH_RUN)\n        vt->drop(child);",
         inv="2 exactly once: a child mid async drop is never dropped by its "
             "parent's sync drop",
         run="plain"),
    dict(name="child-cancel-noop",
         file="runtime/pd_internal.h",
         old="    if ((*cs & 3) == PD__CH_RUN)\n        *cs = PD__CH_DROP;",
         new="    (void)cs;",
         inv="6 order: select losers and quiesced children are not cancelled",
         run="plain"),
    dict(name="task-free-ignores-refs",
         file="runtime/runtime.c",
         old="    if (t->refs == 0 && !t->queued && !(t->flags & PD__TASK_ROOT)) {",
         new="    if (!t->queued && !(t->flags & PD__TASK_ROOT)) {",
         inv="runtime: a task freed while its caller holds a reference",
         run="san"),
    dict(name="completion-no-wake",
         file="runtime/runtime.c",
         old="    rt->stats.ops_completed++;\n    pd__wake_on(rt, op->task);",
         new="    rt->stats.ops_completed++;",
         inv="runtime: a completion does not wake its task (lost wakeup)",
         run="plain"),
    dict(name="cancel-no-wake",
         file="runtime/runtime.c",
         old="    t->state = PD_TASK_DROPPING;\n    pd__wake(t);\n}",
         new="    t->state = PD_TASK_DROPPING;\n}",
         inv="3 teardown on every async drop: a cancelled idle task never drops",
         run="plain"),
    dict(name="cq-not-advanced",
         file="runtime/runtime.c",
         old="    if (n != 0)\n        io_uring_smp_store_release(cq->khead, head);\n    return n;",
         new="    return n;",
         inv="1 runtime: completions dispatched again (a slot completed twice)",
         run="plain"),
    # --- more of our own ---
    dict(name="sync-drop-dead-guard",
         file="templates/future.c.j2",
         old="    if (self->pd__phase == PD__PH_DEAD) {\n#ifdef PD_CHECKED",
         new="    if (0) {\n#ifdef PD_CHECKED",
         inv="2 exactly once: a second sync drop runs drop code again",
         run="plain"),
    dict(name="sync-quiesce-cancel-only",
         file="templates/future.c.j2",
         old="{% else %}\n            pd__{{ b.fam }}_quiesce_sync(&self->{{ b.slot }});",
         new="{% else %}\n            pd__{{ b.fam }}_cancel(&self->{{ b.slot }});",
         inv="1 a sync drop cancels its ops but does not wait for them",
         run="plain"),
    dict(name="async-quiesce-no-wait",
         file="templates/future.c.j2",
         old="            if (pd__busy)\n                return PD_PENDING;\n"
             "{% for b in s.ops|reverse %}",
         new="            if (pd__busy < 0)\n                return PD_PENDING;\n"
             "{% for b in s.ops|reverse %}",
         inv="1 poll_drop goes on to teardown while its ops are in flight",
         run="plain"),
    dict(name="select-winner-before-losers",
         file="templates/future.c.j2",
         old="            if (pd__busy)\n                return PD_PENDING;\n        }\n"
             "        switch (self->pd__sub - 2) {",
         new="            if (pd__busy < 0)\n                return PD_PENDING;\n        }\n"
             "        switch (self->pd__sub - 2) {",
         inv="6 order: a select's winner runs before its losers are quiesced",
         run="plain"),
    dict(name="teardown-before-quiesce",
         file="templates/future.c.j2",
         old="    case PD__PH_QUIESCE:\n        if ({{ f.name }}__quiesce(self, cx) == PD_PENDING)\n"
             "            return PD_PENDING;",
         new="    case PD__PH_QUIESCE:\n        {{ f.name }}__quiesce(self, cx);",
         inv="6 order: teardown begins while children and ops are not quiesced",
         run="plain"),
    dict(name="sync-close-fd-kept",
         file="templates/future.c.j2",
         old="            if (pd__op_quiesce_sync(&self->{{ b.slot }}) && "
             "pd__op_closed(&self->{{ b.slot }}))\n                {{ b.closes }} = -1;",
         new="            if (pd__op_quiesce_sync(&self->{{ b.slot }}) && "
             "pd__op_closed(&self->{{ b.slot }}))\n                (void)0;",
         inv="5 an fd closed by a close completed during a sync drop is closed "
             "again by drop code",
         run="plain"),
    dict(name="teardown-on-sync-drop",
         file="templates/future.c.j2",
         old="    {{ f.name }}__quiesce_sync(self);\n{% for a in f.arrays|reverse %}",
         new="    {{ f.name }}__quiesce_sync(self);\n"
             "    pd__trace(PD__FUT, PD_TRACE_TEARDOWN, self);\n"
             "{% for a in f.arrays|reverse %}",
         inv="3 teardown never on a sync drop",
         run="plain"),
    dict(name="drop-code-not-dead",
         file="templates/future.c.j2",
         old="    self->pd__phase = PD__PH_DEAD;\n    pd__checked_dead(self);",
         new="    pd__checked_dead(self);",
         inv="2 exactly once: drop code does not mark the future dead",
         run="plain"),
    # (An unreduced tv_nsec in pd__prep_timeout was tried and dropped: the
    # kernel accepts tv_nsec >= 1e9 in a timeout and adds it up, so on
    # Linux only the length of a sleep of 1 s or more changes, which no
    # test may measure.)
    dict(name="cancel-from-keeps-owner",
         file="runtime/pd_internal.h",
         old="    op->task = cx->task;\n    pd__op_cancel(op);",
         new="    (void)cx;\n    pd__op_cancel(op);",
         inv="1/2: an op cancelled by the task that now owns its future still "
             "wakes the task that submitted it (a future handed to pd_drop_async)",
         run="plain"),
    dict(name="close-without-sqe-leaks",
         file="runtime/runtime.c",
         old="        if (rt->spare_sqe.opcode == IORING_OP_CLOSE)\n",
         new="        if (0)\n",
         inv="5 no fd leak: a close that got no submission entry (ring broken) "
             "completes with the ring's error and its fd, forgotten by the "
             "future, stays open",
         run="plain"),
    # --- multishot requests and provided buffers (invariant 8) ---
    dict(name="ms-queued-lost-on-cancel",
         file="runtime/runtime.c",
         old="    m->discard = 1;\n    pd__mop_drain(m);\n",
         new="    m->discard = 1;\n    m->qlen = 0;\n",
         inv="5/8: completions queued in a multishot slot are forgotten when it is "
             "cancelled (accepted fds left open, buffers never returned)",
         run="plain"),
    dict(name="ms-sync-discard-lost",
         file="runtime/runtime.c",
         old="    if (m->discard)\n        pd__mop_release(m, c);\n    else\n"
             "        pd__mop_push(rt, m, c);",
         new="    if (m->discard && !force)\n        pd__mop_release(m, c);\n"
             "    else if (!m->discard)\n        pd__mop_push(rt, m, c);",
         inv="5/8: a completion a sync drop reaps for a cancelled multishot slot "
             "is not released (its buffer never goes back, its fd stays open)",
         run="plain"),
    dict(name="ms-slot-idle-while-more",
         file="runtime/runtime.c",
         old="    pd__wake(m->op.task);\n    if (!(c.flags & IORING_CQE_F_MORE))\n"
             "        pd__mop_unpend(rt, m);\n    return 0;",
         new="    pd__wake(m->op.task);\n    pd__mop_unpend(rt, m);\n    return 0;",
         inv="1: a multishot slot counts as finished at a completion that has "
             "IORING_CQE_F_MORE (the kernel still holds the request)",
         run="plain"),
    dict(name="ms-kept-buffer-not-returned",
         file="templates/future.c.j2",
         old="    pd_buf_release(&self->{{ v.name }}); /* a buffer still held goes back last */",
         new="    (void)self->{{ v.name }};",
         inv="8: a pd_buf member still holding a buffer is not returned by the "
             "drop code",
         run="plain"),
    dict(name="gen-keyword-check",
         file="gen/validate.py",
         old="            self.err(pos, f\"{what} '{name}' is a C keyword\")",
         new="            pass",
         inv="generator: a field named after a C keyword reaches the compiler",
         run="gen"),
    dict(name="gen-line-off-by-one",
         file="gen/render.py",
         old="    return f'#line {s.line} \"{c_string(s.file)}\"'",
         new="    return f'#line {s.line + 1} \"{c_string(s.file)}\"'",
         inv="generator: compiler errors in a snippet point at the wrong spec line",
         run="gen"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.environ.get("MUTATE_DIR", os.path.join(ROOT, "build", "mutate"))
TREE = os.path.join(WORK, "tree")
# The scratch tree's build as the unmutated tree left it: restored after
# each mutant, so that the next one rebuilds only what its own edit touches.
PRISTINE = os.path.join(WORK, "pristine-build")
# Which suite caught each mutant last time: it runs first the next time.
HISTORY = os.path.join(WORK, "caught.json")
PYTHON = os.environ.get("PYTHON", sys.executable)
JOBS = int(os.environ.get("MUTATE_JOBS", "0")) or 3 * (os.cpu_count() or 2)
BUILD_TIMEOUT = 900
# A suite still running HANG_S seconds after it started, or HANG_X times as
# long as it took on the unmutated tree if that is longer (a loaded
# machine), is taken for a hang: the mutant is caught.
HANG_S, HANG_X = 60, 3
RUNNERS = {"plain": ("build/check_polldrop", {}),
           "san": ("build/check_polldrop_asan", SAN_ENV)}
KIND = {"plain": "plain", "san": "san", "c": "san", "gen": "plain"}


def clean_env(extra=None):
    """Our environment without the variables of a make that runs us, and
    without Check's selections (each suite is chosen here)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CK_RUN_SUITE", "CK_RUN_CASE",
                        "CK_INCLUDE_TAGS", "CK_EXCLUDE_TAGS", "CK_FORK")}
    env.update(extra or {})
    return env


def sh(cmd, env=None, timeout=BUILD_TIMEOUT):
    """Runs cmd in the scratch tree, in a session of its own; returns
    (status, combined output). The output goes through a file, so that a
    process left behind cannot hold the runner up."""
    with tempfile.TemporaryFile(mode="w+", errors="replace") as log:
        p = subprocess.Popen(cmd, cwd=TREE, env=env or clean_env(), stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        try:
            status = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = 124
        kill_session(p.pid)
        p.wait()
        log.seek(0)
        out = log.read()
    if status == 124:
        out += f"\n(stopped after {timeout} s)"
    return status, out


# What the scratch tree's build is: a build of another kind (an older
# mutate built -O1 -DPD_CHECKED into build/obj) is thrown away.
FLAVOUR = "make test's builds: plain -O2, ASan+UBSan+PD_CHECKED\n"


def sync_tree():
    """Makes TREE hold the worktree's files (tracked and untracked, not
    ignored). A file whose content changed gets the current time, so that
    make rebuilds what depends on it; an unchanged one keeps its time, so
    that the build kept from the last run stays valid."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                           cwd=ROOT, stdout=subprocess.PIPE, check=True).stdout
    keep = set()
    for f in files.decode().split("\0"):
        src = os.path.join(ROOT, f)
        if not f or not os.path.isfile(src) or f.startswith("build/"):
            continue
        keep.add(f)
        dst = os.path.join(TREE, f)
        with open(src, "rb") as a:
            data = a.read()
        try:
            with open(dst, "rb") as b:
                if b.read() == data and os.stat(dst).st_mode == os.stat(src).st_mode:
                    continue
        except OSError:
            pass
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as b:
            b.write(data)
        shutil.copymode(src, dst)
    marker = os.path.join(WORK, "flavour")
    try:
        with open(marker) as f:
            same = f.read() == FLAVOUR
    except OSError:
        same = False
    if not same:
        shutil.rmtree(os.path.join(TREE, "build"), ignore_errors=True)
        with open(marker, "w") as f:
            f.write(FLAVOUR)
    for d, dirs, names in os.walk(TREE):
        rel = os.path.relpath(d, TREE)
        if rel == "build" or rel.startswith("build" + os.sep):
            dirs[:] = []
            continue
        for n in names:
            f = os.path.normpath(os.path.join(rel, n))
            if f not in keep:
                os.unlink(os.path.join(d, n))


def snapshot_build():
    """Keeps a copy of TREE/build (without build/mutate) as PRISTINE."""
    shutil.rmtree(PRISTINE, ignore_errors=True)
    shutil.copytree(os.path.join(TREE, "build"), PRISTINE, symlinks=True,
                    ignore=lambda d, names: ["mutate"] if d == os.path.join(TREE, "build") else [])


def build_files(top):
    """{relative path: (mtime_ns, size)} of the regular files under top."""
    out = {}
    for d, dirs, names in os.walk(top):
        if d == top and "mutate" in dirs:
            dirs.remove("mutate")
        for n in names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            out[os.path.relpath(p, top)] = (st.st_mtime_ns, st.st_size)
    return out


def restore_build(pristine):
    """Puts TREE/build back as PRISTINE has it: what a mutant's build
    changed or added goes, what it removed comes back."""
    top = os.path.join(TREE, "build")
    now = build_files(top)
    for f, sig in now.items():
        if pristine.get(f) != sig:
            os.unlink(os.path.join(top, f))
    for f, sig in pristine.items():
        if now.get(f) != sig:
            dst = os.path.join(top, f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(PRISTINE, f), dst)


def failed_tests(out):
    """Names of the failing Check tests (or the generator tests) in out."""
    names = re.findall(r"^[^\s:]+:\d+:[FE]:([^:]+:[^:]+:\d+): ", out, re.M)
    names += re.findall(r"^(?:FAIL|ERROR): (\S+)", out, re.M)
    if not names and "checked build" in out:
        names = ["the checked build's registry (abort)"]
    return names


class Suites:
    """One Check runner's suites, run side by side, each in a session of
    its own with its results in a TAP file read as they come."""

    def __init__(self, kind):
        self.binary, self.env = RUNNERS[kind]
        self.names = []
        self.took = {}        # seconds each suite took on the unmutated tree

    def run(self, first=None, baseline=False):
        """Runs every suite (first, if given, ahead of the others; then the
        longest first). Returns (caught, detail, suite): caught is True at
        the first failing test, crash or hang, and the suites still running
        are stopped; False if every suite passed. The baseline run (the
        unmutated tree) runs every suite to its end and records how long
        each took."""
        order = sorted(self.names, key=lambda n: (n != first, -self.took.get(n, 0)))
        tapdir = tempfile.mkdtemp(prefix="tap-", dir=WORK)
        running, found = {}, []
        try:
            while order or running:
                while order and len(running) < JOBS:
                    name = order.pop(0)
                    tap = os.path.join(tapdir, f"{len(order)}.tap")
                    log = tempfile.TemporaryFile(mode="w+", errors="replace")
                    env = clean_env(dict(self.env, CK_RUN_SUITE=name, CK_VERBOSITY="normal",
                                         CK_TAP_LOG_FILE_NAME=tap))
                    p = subprocess.Popen([os.path.join(TREE, self.binary)], cwd=TREE, env=env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
                    running[tap] = (name, p, log, time.monotonic())
                time.sleep(0.1)
                for tap, (name, p, log, t0) in list(running.items()):
                    status = p.poll()
                    elapsed = time.monotonic() - t0
                    try:
                        with open(tap, errors="replace") as f:
                            # not ok N - FILE:TCASE:TEST: MESSAGE
                            bad = [l.split(" - ", 1)[-1].split(":")[1:3] for l in f
                                   if l.startswith("not ok")]
                    except OSError:
                        bad = []
                    why = None
                    if bad:
                        why = ", ".join(":".join(b) for b in bad[:3])
                    elif status is None:
                        limit = max(HANG_S, HANG_X * self.took.get(name, 0))
                        if elapsed <= limit:
                            continue
                        why = f"hung: still running after {limit:.0f} s"
                    elif status != 0:
                        log.seek(0)
                        names = failed_tests(log.read())
                        why = ", ".join(n.rsplit(":", 1)[0] for n in names[:3]) if names \
                            else f"the runner exited {status}"
                    del running[tap]
                    kill_session(p.pid)
                    p.wait()
                    log.close()
                    if why is None:
                        if baseline:
                            self.took[name] = elapsed
                        continue
                    if baseline:
                        found.append(f"{name}: {why}")
                        continue
                    return True, f"{name}: {why}", name
            if found:
                return True, "; ".join(found), None
            return False, "every test passed", None
        finally:
            for name, p, log, t0 in running.values():
                kill_session(p.pid)
                p.wait()
                log.close()
            shutil.rmtree(tapdir, ignore_errors=True)


def build(kind):
    """Builds kind's runner in the scratch tree: None, or why it failed."""
    st, out = sh(["make", "-s", f"-j{os.cpu_count() or 2}", RUNNERS[KIND[kind]][0]])
    if st == 0:
        return None
    errors = [l for l in out.splitlines() if "error:" in l]
    return "does not build: " + (errors[0] if errors else out[-300:])


def run_mutant(m, suites, history):
    """Builds and tests the tree with m applied. Returns (caught, detail)."""
    if m["run"] == "gen":
        st, out = sh([PYTHON, "-m", "unittest", "tests.test_gen"],
                     env=clean_env({"PYTHONPATH": TREE}))
        if st != 0:
            return True, "generator tests: " + ", ".join(failed_tests(out)[:3])
    why = build(m["run"])
    if why:
        return None, why
    caught, detail, suite = suites[KIND[m["run"]]].run(first=history.get(m["name"]))
    if caught:
        history[m["name"]] = suite
    return caught, detail


def main(argv):
    chosen = [m for m in MUTANTS if not argv or m["name"] in argv]
    unknown = set(argv) - {m["name"] for m in MUTANTS}
    if unknown:
        print("mutate: no such mutant: " + ", ".join(sorted(unknown)), file=sys.stderr)
        return 2
    bad_kind = [m["name"] for m in chosen if m["run"] not in KIND]
    if bad_kind:
        print("mutate: unknown run kind: " + ", ".join(bad_kind), file=sys.stderr)
        return 2
    t_start = time.monotonic()
    os.makedirs(TREE, exist_ok=True)
    sync_tree()
    stale = []
    for m in chosen:
        with open(os.path.join(TREE, m["file"])) as f:
            n = f.read().count(m["old"])
        if n != 1:
            stale.append(f"{m['name']} ({m['file']}: its text occurs {n} times)")
    if stale:
        print("mutate: these mutants no longer apply; update them to the code:\n  "
              + "\n  ".join(stale), file=sys.stderr)
        return 2
    kinds = sorted({KIND[m["run"]] for m in chosen})
    print(f"mutate: {len(chosen)} mutants, scratch tree {os.path.relpath(TREE, ROOT)}, "
          f"{JOBS} suites at a time", flush=True)
    suites = {}
    for kind in kinds:
        why = build(kind)
        if why:
            print(f"mutate: the unmutated tree {why}", file=sys.stderr)
            return 2
    for kind in kinds:
        s = suites[kind] = Suites(kind)
        s.names = check_suites(os.path.join(TREE, s.binary), s.env, cwd=TREE)
        if not s.names:
            print(f"mutate: {s.binary} lists no suite (no io_uring?)", file=sys.stderr)
            return 2
        t0 = time.monotonic()
        caught, detail, _ = s.run(baseline=True)
        if caught is not False:
            print(f"mutate: the unmutated tree fails ({s.binary}): {detail}", file=sys.stderr)
            return 2
        print(f"mutate: unmutated {s.binary}: {len(s.names)} suites pass "
              f"({time.monotonic() - t0:.0f} s)", flush=True)
    snapshot_build()
    pristine = build_files(PRISTINE)
    try:
        with open(HISTORY) as f:
            history = json.load(f)
    except (OSError, ValueError):
        history = {}
    rows, bad = [], 0
    try:
        for m in chosen:
            path = os.path.join(TREE, m["file"])
            with open(path) as f:
                orig = f.read()
            st = os.stat(path)
            t0 = time.monotonic()
            with open(path, "w") as f:
                f.write(orig.replace(m["old"], m["new"]))
            try:
                caught, detail = run_mutant(m, suites, history)
            finally:
                with open(path, "w") as f:
                    f.write(orig)
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
                restore_build(pristine)
            verdict = {True: "caught", False: "SURVIVED", None: "BROKEN"}[caught]
            bad += verdict != "caught"
            rows.append((m, verdict, detail))
            print(f"  {m['name']:<32} {verdict:<8} {KIND[m['run']]:<5} "
                  f"{time.monotonic() - t0:4.0f} s  {detail}", flush=True)
    finally:
        with open(HISTORY, "w") as f:
            json.dump(history, f, indent=0, sort_keys=True)
    print()
    print("| mutant | file | invariant broken | result | caught by |")
    print("|---|---|---|---|---|")
    for m, verdict, detail in rows:
        print(f"| `{m['name']}` | {m['file']} | {m['inv']} | {verdict} | {detail} |")
    caught = sum(1 for _, v, _ in rows if v == "caught")
    print(f"\nmutate: {caught} of {len(rows)} mutants caught in "
          f"{time.monotonic() - t_start:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
