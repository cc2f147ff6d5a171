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
#   "gen"   the generator's unittest suite, then build/check_polldrop;
#   "san-epoll" (or "c-epoll") build/check_polldrop_asan with PD_ENGINE=epoll:
#           every runtime the suites make runs on the epoll engine, as make
#           test's third Check run does.
# Pick "plain" when the plain runner catches the mutant: it rebuilds faster.
MUTANTS = [
    # --- the five an audit found surviving ---
    dict(name="free-skips-dropping",
         file="runtime/task.c",
         old="        if (pd__task_live(t)) {\n            t->flags |= PD__TASK_FREED_DROP;",
         new="        if (pd__task_live(t) && t->state == PD_TASK_RUNNING) {\n"
             "            t->flags |= PD__TASK_FREED_DROP;",
         inv="2 exactly once; 1 kernel owns buffers: pd_runtime_free frees a "
             "task mid async drop without sync-dropping it",
         run="plain"),
    dict(name="linked-timeout-not-owed",
         file="runtime/complete.c",
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
         file="runtime/task.c",
         old="void pd_task_cancel(pd_task *t)\n{\n",
         new="void pd_task_cancel(pd_task *t)\n{\n    free(strdup(t->vt->name));\n",
         inv="4 no allocation after spawn",
         run="plain"),
    dict(name="poll-drop-dead-guard",
         file="templates/destroy.c.j2",
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
         old="    if (had && (op->fdret & PD__OP_FDRET) && op->res >= 0)\n        close(op->res);\n",
         new="",
         inv="5 no fd leak: an fd from a discarded completion is not closed",
         run="plain"),
    dict(name="cancel-not-sent",
         file="runtime/complete.c",
         old="    if (op->st != PD__OP_BUSY || op->cancelled)\n        return;\n",
         new="    if (op->st == PD__OP_BUSY || op->cancelled)\n        return;\n",
         inv="7 cancelled means cancelled: no cancel request reaches the kernel",
         run="plain"),
    dict(name="quiesce-sync-no-wait",
         file="runtime/complete.c",
         old="        while (op->st == PD__OP_BUSY) {\n            int ret;\n\n"
             "            pd__op_cancel(op);",
         new="        if (op->st == PD__OP_BUSY) {\n            int ret;\n\n"
             "            pd__op_cancel(op);",
         inv="1 a sync drop returns before the kernel gave the buffer back",
         run="plain"),
    dict(name="free-no-sync-drop",
         file="runtime/task.c",
         old="            t->flags |= PD__TASK_FREED_DROP;\n            t->vt->drop(t->self);\n",
         new="            t->flags |= PD__TASK_FREED_DROP;\n",
         inv="2 exactly once; 1: pd_runtime_free drops no live task",
         run="plain"),
    dict(name="child-drop-sync-skips-dropping",
         file="runtime/pd_children.h",
         old="    if ((*cs & 3) == PD__CH_RUN || (*cs & 3) == PD__CH_DROP)\n        vt->drop(child);",
         new="    if ((*cs & 3) == PD__CH_RUN)\n        vt->drop(child);",
         inv="2 exactly once: a child mid async drop is never dropped by its "
             "parent's sync drop",
         run="plain"),
    dict(name="child-cancel-noop",
         file="runtime/pd_children.h",
         old="    if ((*cs & 3) == PD__CH_RUN)\n        *cs = PD__CH_DROP;",
         new="    (void)cs;",
         inv="6 order: select losers and quiesced children are not cancelled",
         run="plain"),
    dict(name="task-free-ignores-refs",
         file="runtime/rt_internal.h",
         old="    if (t->refs == 0 && !t->queued && !(t->flags & PD__TASK_ROOT)) {",
         new="    if (!t->queued && !(t->flags & PD__TASK_ROOT)) {",
         inv="runtime: a task freed while its caller holds a reference",
         run="san"),
    dict(name="completion-no-wake",
         file="runtime/rt_internal.h",
         old="    rt->stats.ops_completed++;\n    pd__wake_on(rt, op->task);",
         new="    rt->stats.ops_completed++;",
         inv="runtime: a completion does not wake its task (lost wakeup)",
         run="plain"),
    dict(name="cancel-no-wake",
         file="runtime/task.c",
         old="    t->state = PD_TASK_DROPPING;\n    pd__wake(t);\n}",
         new="    t->state = PD_TASK_DROPPING;\n}",
         inv="3 teardown on every async drop: a cancelled idle task never drops",
         run="plain"),
    dict(name="cq-not-advanced",
         file="runtime/rt_internal.h",
         old="    if (n != 0)\n        io_uring_smp_store_release(cq->khead, head);\n    return n;",
         new="    return n;",
         inv="1 runtime: completions dispatched again (a slot completed twice)",
         run="plain"),
    # --- more of our own ---
    dict(name="sync-drop-dead-guard",
         file="templates/destroy.c.j2",
         old="    if (self->pd__phase == PD__PH_DEAD) {\n#ifdef PD_CHECKED",
         new="    if (0) {\n#ifdef PD_CHECKED",
         inv="2 exactly once: a second sync drop runs drop code again",
         run="plain"),
    dict(name="sync-quiesce-cancel-only",
         file="templates/destroy.c.j2",
         old="{% else %}\n            pd__{{ b.fam }}_quiesce_sync(&self->{{ b.slot }});",
         new="{% else %}\n            pd__{{ b.fam }}_cancel(&self->{{ b.slot }});",
         inv="1 a sync drop cancels its ops but does not wait for them",
         run="plain"),
    dict(name="async-quiesce-no-wait",
         file="templates/destroy.c.j2",
         old="            if (pd__busy)\n                return PD_PENDING;\n"
             "{% for b in s.ops|reverse %}",
         new="            if (pd__busy < 0)\n                return PD_PENDING;\n"
             "{% for b in s.ops|reverse %}",
         inv="1 poll_drop goes on to teardown while its ops are in flight",
         run="plain"),
    dict(name="select-winner-before-losers",
         file="templates/macros.c.j2",
         old="            if (pd__busy)\n                return PD_PENDING;\n        }\n"
             "        switch (self->pd__sub - 2) {",
         new="            if (pd__busy < 0)\n                return PD_PENDING;\n        }\n"
             "        switch (self->pd__sub - 2) {",
         inv="6 order: a select's winner runs before its losers are quiesced",
         run="plain"),
    dict(name="teardown-before-quiesce",
         file="templates/destroy.c.j2",
         old="    case PD__PH_QUIESCE:\n        if ({{ f.name }}__quiesce(self, cx) == PD_PENDING)\n"
             "            return PD_PENDING;",
         new="    case PD__PH_QUIESCE:\n        {{ f.name }}__quiesce(self, cx);",
         inv="6 order: teardown begins while children and ops are not quiesced",
         run="plain"),
    dict(name="sync-close-fd-kept",
         file="templates/destroy.c.j2",
         old="            if (pd__op_quiesce_sync(&self->{{ b.slot }}) && "
             "pd__op_closed(&self->{{ b.slot }}))\n                {{ b.closes }} = -1;",
         new="            if (pd__op_quiesce_sync(&self->{{ b.slot }}) && "
             "pd__op_closed(&self->{{ b.slot }}))\n                (void)0;",
         inv="5 an fd closed by a close completed during a sync drop is closed "
             "again by drop code",
         run="plain"),
    dict(name="teardown-on-sync-drop",
         file="templates/destroy.c.j2",
         old="{% endif %}\n{% for a in f.arrays|reverse %}",
         new="{% endif %}\n"
             "    pd__trace(PD__FUT, PD_TRACE_TEARDOWN, self);\n"
             "{% for a in f.arrays|reverse %}",
         inv="3 teardown never on a sync drop",
         run="plain"),
    dict(name="drop-code-not-dead",
         file="templates/destroy.c.j2",
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
         file="runtime/complete.c",
         old="        if (rt->spare_sqe.opcode == IORING_OP_CLOSE)\n",
         new="        if (0)\n",
         inv="5 no fd leak: a close that got no submission entry (ring broken) "
             "completes with the ring's error and its fd, forgotten by the "
             "future, stays open",
         run="plain"),
    # --- multishot requests and provided buffers (invariant 8) ---
    dict(name="ms-queued-lost-on-cancel",
         file="runtime/multishot.c",
         old="    m->discard = 1;\n    pd__mop_drain(m);\n",
         new="    m->discard = 1;\n    m->qlen = 0;\n",
         inv="5/8: completions queued in a multishot slot are forgotten when it is "
             "cancelled (accepted fds left open, buffers never returned)",
         run="plain"),
    dict(name="ms-sync-discard-lost",
         file="runtime/multishot.c",
         old="    if (m->discard)\n        pd__mop_release(m, c);\n    else\n"
             "        pd__mop_push(rt, m, c);",
         new="    if (m->discard && !force)\n        pd__mop_release(m, c);\n"
             "    else if (!m->discard)\n        pd__mop_push(rt, m, c);",
         inv="5/8: a completion a sync drop reaps for a cancelled multishot slot "
             "is not released (its buffer never goes back, its fd stays open)",
         run="plain"),
    dict(name="ms-slot-idle-while-more",
         file="runtime/multishot.c",
         old="    pd__wake(m->op.task);\n    if (!(c.flags & IORING_CQE_F_MORE))\n"
             "        pd__mop_unpend(rt, m);\n    return 0;",
         new="    pd__wake(m->op.task);\n    pd__mop_unpend(rt, m);\n    return 0;",
         inv="1: a multishot slot counts as finished at a completion that has "
             "IORING_CQE_F_MORE (the kernel still holds the request)",
         run="plain"),
    dict(name="ms-kept-buffer-not-returned",
         file="templates/destroy.c.j2",
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
    # --- issue 17: the loop's goal, pd_task_wait, the harness, late tasks under a deadline ---
    dict(name="turn-waits-before-goal",
         file="runtime/loop.c",
         old="    wait = rt->ready_head == NULL && (goal == NULL || !pd__task_over(goal));",
         new="    wait = rt->ready_head == NULL;",
         inv="loop: pd_block_on and pd_task_wait decide to wait without checking "
             "their goal, so they return only when an unrelated task's request "
             "completes (a one-hour timer)",
         run="c"),
    dict(name="task-wait-skips-teardown",
         file="runtime/loop.c",
         old="    return t->state >= PD_TASK_DONE;",
         new="    return t->state != PD_TASK_RUNNING;",
         inv="loop: pd_task_wait (and pd_block_on) return when the task leaves "
             "its run phase, before its teardown and drop code ran",
         run="c"),
    dict(name="harness-waits-while-runnable",
         file="runtime/harness.c",
         old="            if (pd__runtime_ready(r->rt)) {\n"
             "                PD_HARNESS_CHECK(pd__run_polls(r->rt) >= 1);",
         new="            if (0) {\n"
             "                PD_HARNESS_CHECK(pd__run_polls(r->rt) >= 1);",
         inv="harness: at the completed-not-reaped point it blocks for a "
             "completion while a spawned task is runnable (a pd_join under a "
             "far timeout_ms waits for the deadline, or for good)",
         run="c"),
    dict(name="late-task-not-forced",
         file="runtime/task.c",
         old="    if (PD__UNLIKELY(rt->forcing))\n        pd__task_force(rt, t);\n",
         new="",
         inv="a shutdown ends: a task started after the deadline passed (spawned "
             "by a teardown, or sent from another thread) is not forced and its "
             "teardown holds the shutdown",
         run="c"),
    # --- issue 17: ring, slow path, multishot, buffer groups ---
    dict(name="slow-path-cancel-after-end",
         file="runtime/multishot.c",
         old="        if (!m->armed)\n            return;\n    }\n    sqe = pd__sq_claim(rt);",
         new="    }\n    sqe = pd__sq_claim(rt);",
         inv="1: a multishot cancel that had to make room in a full submission "
             "queue is sent although the reap that made room ended the request "
             "(owed a result nobody counts on: inflight_ops -1, pd_run hangs)",
         run="c"),
    dict(name="slow-path-reaps-with-force",
         file="runtime/complete.c",
         old="        reaped = pd__reap(rt, 0);",
         new="        reaped = pd__reap(rt, 1);",
         inv="4 no allocation after spawn: a full submission queue in an "
             "ordinary poll stores multishot completions out of line",
         run="c"),
    dict(name="bufgroup-free-ignores-armed",
         file="runtime/multishot.c",
         old="    if (g->held != 0 || g->armed != 0 || g->waiters != NULL) {",
         new="    if (g->held != 0 || g->waiters != NULL) {",
         inv="1/8: pd_bufgroup_free frees a group a recv is armed on (its next "
             "completion writes freed memory)",
         run="c"),
    dict(name="bufgroup-free-ignores-held",
         file="runtime/multishot.c",
         old="    if (g->held != 0 || g->armed != 0 || g->waiters != NULL) {",
         new="    if (g->armed != 0 || g->waiters != NULL) {",
         inv="8: pd_bufgroup_free frees a group while a future holds one of its "
             "buffers (its release writes freed memory)",
         run="c"),
    dict(name="ms-stop-miss-not-resent",
         file="runtime/pd_multishot.h",
         old="    if (PD__UNLIKELY(m->stop && m->armed && !m->op.cancelled))",
         new="    if (PD__UNLIKELY(0 && m->stop && m->armed && !m->op.cancelled))",
         inv="8: a STOP() whose cancel missed is never sent again: the request "
             "stays armed and the stream is not paused",
         run="c"),
    dict(name="ms-cancel-miss-not-resent",
         file="runtime/multishot.c",
         old="            m->op.cancelled = 0;\n            pd__wake(m->op.task);",
         new="            pd__wake(m->op.task);",
         inv="8: a multishot cancel that missed while the request is still armed "
             "is not sent again (liburing #1375): the request is never ended",
         run="c"),
    dict(name="linked-timeout-one-entry",
         file="runtime/complete.c",
         old="    unsigned need = cx->link_ts ? 2 : 1;",
         new="    unsigned need = 1;",
         inv="1: an op with a linked timeout, on the slow way, claims one "
             "submission entry instead of two adjacent ones (its timeout has none)",
         run="c"),
    # --- issue 17: the generator's broken C, #line, arrays' deadlines ---
    dict(name="gen-line-in-macro-args",
         file="templates/macros.c.j2",
         old='            {{ "return " if tail }}pd__prep_{{ b.prep }}'
             '(cx, &self->{{ b.slot }}{{ b.args|call_args(16) }});',
         new='            {{ "return PD__UNLIKELY(" if tail }}pd__prep_{{ b.prep }}'
             '(cx, &self->{{ b.slot }}{{ b.args|call_args(16) }}){{ ")" if tail }};',
         inv="generator: a C error in the args of a state's only op is reported "
             "against the generated .c (#line inside a macro's arguments)",
         run="gen"),
    dict(name="gen-group-recv-without-fd",
         file="gen/validate.py",
         old='                        and a not in named and a not in ("buf", "len")]:',
         new='                        and a not in named and a not in ("buf", "len", "fd")]:',
         inv="generator: a recv with group and no fd is accepted (None reaches the C)",
         run="gen"),
    dict(name="gen-future-named-cx",
         file="gen/validate.py",
         old="            if s.name in GENERATED_LOCALS:\n",
         new="            if s.name in GENERATED_LOCALS - {\"cx\"}:\n",
         inv="generator: a future named after a generated local (cx) is accepted "
             "and does not compile",
         run="gen"),
    dict(name="gen-yaml-null-is-c",
         file="gen/validate.py",
         old="        if node.style is None and node.value in YAML_NULLS:\n",
         new="        if node.style is None and node.value in YAML_NULLS - {\"null\"}:\n",
         inv="generator: timeout_ms: null reaches the C as an undeclared name",
         run="gen"),
    dict(name="gen-nesting-unbounded",
         file="gen/cscan.py",
         old="    if depth > MAX_NESTING:\n        raise TooDeep(base + i)\n",
         new="    if depth > 100 * MAX_NESTING:\n        raise TooDeep(base + i)\n",
         inv="generator: deeply nested code is an internal error (RecursionError), "
             "not a limit at the spec",
         run="gen"),
    dict(name="gen-stop-in-ms-select",
         file="gen/link.py",
         old='            elif macro == "STOP" and (branch is None or not branch.multishot\n'
             '                                      or st.kind != "io"):\n',
         new='            elif macro == "STOP" and (branch is None or not branch.multishot):\n',
         inv="generator: STOP() in the then of a multishot select branch is accepted "
             "(its wait never sends a missed stop again)",
         run="gen"),
    dict(name="gen-snippet-unbraced",
         file="gen/render.py",
         old='    return f"{pad}{{\\n{_line(s)}\\n{text}\\n{last}\\n{pad}}}\\n{RESTORE}"',
         new='    return f"{_line(s)}\\n{text}\\n{RESTORE}"',
         inv="generator: code that ends mid-statement takes the generated code that "
             "follows as its rest, and is reported against the generated .c",
         run="gen"),
    dict(name="completed-after-cancel",
         file="templates/future.c.j2",
         old="#define COMPLETED(a, i) ((self->pd__##a##_cs[(i)] & PD__CH_OK) != 0)",
         new="#define COMPLETED(a, i) ((self->pd__##a##_cs[(i)] & 3) == PD__CH_DONE)",
         inv="arrays: COMPLETED(a, i) is true for a member cancelled before it "
             "returned (its output is not valid)",
         run="c"),
    dict(name="arr-cancel-marks-completed",
         file="runtime/children.c",
         old="        pd__child_cancel(&cs[i]);\n        if (!pd__child_poll(&cs[i], vt,",
         new="        if ((cs[i] & 3) == PD__CH_RUN)\n"
             "            cs[i] = PD__CH_DROP | PD__CH_OK;\n"
             "        if (!pd__child_poll(&cs[i], vt,",
         inv="arrays: a member the parent cancels is counted as returned "
             "(COMPLETED true, OUTPUT not valid)",
         run="c"),
    dict(name="arr-deadline-then-before-quiesce",
         file="templates/macros.c.j2",
         old="                pd__busy = !pd__arr_quiesce(self->{{ a.cs }}, {{ a.count }}, "
             "{{ a.args() }}, cx, -1);\n",
         new="                pd__busy = 0;\n"
             "                (void)pd__arr_quiesce(self->{{ a.cs }}, {{ a.count }}, "
             "{{ a.args() }}, cx, -1);\n",
         inv="6 order: timeout_ms over an await or join of an array runs then "
             "before the members are quiesced",
         run="c"),
    # --- issue 17: httpd under hostile peers ---
    dict(name="httpd-linger-guard-inverted",
         file="examples/httpd/http_conn.yaml",
         old="    when: self->fd >= 0 && !self->peer_closed && !self->stalled && self->left > 0\n",
         new="    when: self->fd >= 0 && self->peer_closed && !self->stalled && self->left > 0\n",
         inv="httpd: the lingering close is skipped while the peer still sends: "
             "the socket is closed with unread input and the peer is reset",
         run="c"),
    dict(name="httpd-head-limit-1k",
         file="examples/httpd/http.h",
         old="#define HTTP_IN_CAP 8192u\n",
         new="#define HTTP_IN_CAP 1024u\n",
         inv="httpd: heads of up to 8 KiB, which docs/httpd.md promises to serve, get 431",
         run="c"),
    dict(name="httpd-send-blocks",
         file="examples/httpd/http_conn.yaml",
         old="      flags: \"MSG_DONTWAIT | MSG_NOSIGNAL | (self->sf ? MSG_MORE : 0)\"\n",
         new="      flags: \"MSG_NOSIGNAL | (self->sf ? MSG_MORE : 0)\"\n",
         inv="httpd: a send to a peer that stopped reading waits in the ring with no "
             "deadline: MAX_CONNS such peers lock the server out",
         run="c"),
    dict(name="httpd-send-wait-no-deadline",
         file="examples/httpd/http_conn.yaml",
         old="    args: {fd: self->fd, events: POLLOUT}\n    timeout_ms: self->srv->send_ms\n",
         new="    args: {fd: self->fd, events: POLLOUT}\n",
         inv="httpd: a full socket is waited for with no deadline",
         run="c"),
    dict(name="httpd-stalled-lingers",
         file="examples/httpd/http_conn.yaml",
         old="      if (res == -ECANCELED) {\n          self->stalled = true;\n",
         new="      if (res == -ECANCELED) {\n",
         inv="httpd: a peer cut at the send deadline gets a lingering close, which "
             "waits for it again: its place under MAX_CONNS comes back late",
         run="c"),
    dict(name="httpd-space-in-field-name",
         file="examples/httpd/http.c",
         old="    if (memchr(at, ' ', len) != NULL)\n        return stop(p, 400);\n",
         new="",
         inv="httpd: 'Content-Length : N' is a field of another name, its body the "
             "next request (RFC 9112 5.1)",
         run="c"),
    dict(name="httpd-http10-te-keeps",
         file="examples/httpd/http.c",
         old="    if (p->uses_transfer_encoding && r->minor == 0)\n        r->keep = 0;\n",
         new="",
         inv="httpd: an HTTP/1.0 request with Transfer-Encoding keeps its connection "
             "(RFC 9112 6.1)",
         run="c"),
    dict(name="httpd-blank-lines-renew-deadline",
         file="examples/httpd/http_conn.yaml",
         old="      if (!in_msg && self->ctx.req.in_msg && !self->ctx.req.complete)\n",
         new="      if (!in_msg)\n",
         inv="httpd: empty lines renew the head deadline: a peer sending them holds "
             "its connection for good",
         run="c"),
    dict(name="httpd-dot-after-file",
         file="examples/httpd/http.c",
         old="                o = seg;\n                trailing = 1;\n                continue;\n",
         new="                o = seg;\n",
         inv="httpd: /file.txt/. opens the file (a file's URL ending in a directory "
             "is 404)",
         run="c"),
    dict(name="httpd-host-optional",
         file="examples/httpd/http.c",
         old="    if (r->hosts > 1 || (r->hosts == 0 && r->minor > 0))\n",
         new="    if (r->hosts > 1)\n",
         inv="httpd: an HTTP/1.1 request without Host is served (RFC 9112 3.2)",
         run="c"),
    # --- issue 17: echo_server's stalled connections and the buffer group ---
    dict(name="echo-stall-keeps-reading",
         file="examples/echo/echo_ms_conn.yaml",
         old="                  RETURN(-ENOMEM);\n              STOP();\n",
         new="                  RETURN(-ENOMEM);\n",
         inv="echo_server: the recv of a connection whose echo waits for room is "
             "not stopped, so what it holds (its spill) has no cap",
         run="c"),
    dict(name="echo-stall-holds-buffer",
         file="examples/echo/echo_ms_conn.yaml",
         old="                  RETURN(-ENOMEM);\n              STOP();\n",
         new="                  RETURN(-ENOMEM);\n              buf = PD_BUF_EMPTY;\n"
             "              STOP();\n",
         inv="echo_server: a connection whose echo waits for room keeps the buffer "
             "of the group it could not send, so peers that never read take the "
             "group from the others",
         run="c"),
    dict(name="echo-drop-keeps-spill",
         file="examples/echo/echo_ms_conn.yaml",
         old="  echo_spill_free(self->ctx, &self->spill);\n  self->ctx->live--;",
         new="  self->ctx->live--;",
         inv="echo_server: a connection destroyed while its echo waits for room "
             "leaks its spill",
         run="c"),
    # --- issue 19: the epoll engine ---
    dict(name="ep-cancel-running-stops",
         file="runtime/engine_epoll_work.c",
         old="    int ret = -EALREADY;\n\n    if (!e->work_inited) {",
         new="    int ret = 0;\n\n    if (!e->work_inited) {",
         inv="1: a cancelled op a worker is running is reported stopped (-ECANCELED) "
             "while the worker may still write its buffer",
         run="c"),
    dict(name="ep-drained-after-hangup",
         file="runtime/engine_epoll_ops.c",
         old="           !(f->maybe & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));",
         new="           1;",
         inv="epoll engine: a read waiting behind a short read never sees the end "
             "of the stream whose event the short read took (it hangs)",
         run="c"),
    dict(name="ep-grace-never-checks",
         file="runtime/engine_epoll_fd.c",
         old="    f->check_at = pd__ep_clock(e) + PD__EP_GRACE_NS;",
         new="    f->check_at = INT64_MAX;",
         inv="epoll engine: an op on an fd number closed and reused behind the "
             "engine's back waits on a registration that is gone (forever)",
         run="c"),
    dict(name="ep-overflow-jumps-queue",
         file="runtime/engine_epoll.c",
         old="    return e->ovf_len == 0 && pd__ep_cq_ready(e) < e->m.cq_entries;",
         new="    return pd__ep_cq_ready(e) < e->m.cq_entries;",
         inv="epoll engine: after a CQ overflow, new completions overtake the "
             "overflowed ones (a multishot slot's order is lost)",
         run="c"),
    dict(name="ep-linked-timeout-left-armed",
         file="runtime/engine_epoll_rec.c",
         old="    pd__ep_op *lt = r->link;\n",
         new="    pd__ep_op *lt = NULL;\n",
         inv="1: an op that completed after waiting leaves its linked timeout "
             "armed: its completion never comes (or comes for a reused record)",
         run="c"),
    # --- issue 18: the library is the library ---
    dict(name="gen-shadow-unwarned",
         file="gen/cli.py",
         old="        if os.path.isfile(lib) and os.path.realpath(lib) != os.path.realpath(path):\n",
         new="        if False:\n",
         inv="generator: a user's spec with a library future's name silently shadows "
             "the library's as a child and clashes with its header and symbols",
         run="gen"),
    dict(name="gen-library-shadows-itself",
         file="gen/cli.py",
         old=" and os.path.realpath(lib) != os.path.realpath(path):\n",
         new=":\n",
         inv="generator: the library's own specs, generated as the library, are "
             "warned about as shadows of themselves",
         run="gen"),
    # --- issue 18: generator modules ---
    dict(name="gen-slot-names-meet",
         file="gen/model.py",
         old="        while any(base + s in self.taken for s in suffixes):\n",
         new="        while False:\n",
         inv="generated C: two op slots named after their states meet (state a_b's "
             "and branch b of state a): a duplicate member, or an array macro "
             "reaching a state's child bookkeeping",
         run="gen"),
    dict(name="gen-init-run-across-gap",
         file="gen/render.py",
         old="            if last is None or (s.file, s.line) != (last.file, last.line + 1):\n",
         new="            if last is None:\n",
         inv="#line: an initialiser after a gap in the spec shares the run's #line, "
             "and the compiler reports its error at the wrong spec line",
         run="gen"),
    # --- issue 17: httpd's response cache ---
    dict(name="httpd-cache-never-revalidates",
         file="examples/httpd/http.c",
         old="    if (e->state != HTTP_CE_VALID || now - e->stamp >= c->valid_ms)\n",
         new="    if ((void)now, e->state != HTTP_CE_VALID)\n",
         inv="httpd: a cached file answers past its validity: a file rewritten, "
             "renamed over, removed or replaced by a link out of the root is served "
             "as it was, for good",
         run="plain"),
    dict(name="httpd-cache-evicts-most-recent",
         file="examples/httpd/http.c",
         old="    uint32_t i = c->tail;\n\n    for (int k = 0; k < 8",
         new="    uint32_t i = c->head;\n\n    for (int k = 0; k < 8",
         inv="httpd: a new file takes the most recently used entry, not the least",
         run="plain"),
    dict(name="httpd-cache-fill-ignores-change",
         file="examples/httpd/http.c",
         old="    if ((off_t)len != e->csize || !same_file(e, st)) {\n",
         new="    if ((void)st, (void)same_file, (off_t)len != e->csize) {\n",
         inv="httpd: a file that changed between its open and its read is kept in the "
             "cache, with a stamp older than its bytes",
         run="plain"),
    dict(name="httpd-cache-fill-ignores-gen",
         file="examples/httpd/http.c",
         old="    if (e->gen != gen || !e->claimed || e->state == HTTP_CE_FREE)\n",
         new="    if ((void)gen, !e->claimed || e->state == HTTP_CE_FREE)\n",
         inv="httpd: a late fill writes over an entry another request has claimed "
             "since: a body under another claim's stamp (or another key)",
         run="plain"),
    # --- issue 19: the runtime on its engines ---
    dict(name="engine-fallback-hides-errors",
         file="runtime/setup.c",
         old="    return err == -EPERM || err == -ENOSYS || err == -EINVAL;",
         new="    return err < 0;",
         inv="engines: auto hides an io_uring setup failure that is not "
             "'switched off' (ENOMEM, EMFILE) behind the epoll fallback",
         run="c"),
    dict(name="engine-never-falls-back",
         file="runtime/setup.c",
         old="        if (ret == 0 || kind == PD_ENGINE_URING || !pd__engine_fallback(ret))",
         new="        if (ret == 0 || kind == PD_ENGINE_URING || !pd__engine_fallback(ret) || 1)",
         inv="engines: auto fails where a seccomp profile refuses io_uring_setup "
             "instead of running on epoll",
         run="c"),
    dict(name="engine-env-ignored",
         file="runtime/setup.c",
         old='    env = getenv("PD_ENGINE");',
         new="    env = NULL;",
         inv="engines: PD_ENGINE does not choose the engine under PD_ENGINE_AUTO",
         run="c"),
    dict(name="ep-accept-forgets-family",
         file="runtime/engine_epoll_ops.c",
         old="        inet = f->inet;",
         new="        inet = 0;",
         inv="epoll engine: a connection accepted after the accept waited is not "
             "taken for an inet socket: send_zc on it fails with -EOPNOTSUPP",
         run="c"),
    dict(name="ep-dontwait-waits",
         file="runtime/engine_epoll_ops.c",
         old="        return !!(s->msg_flags & MSG_DONTWAIT);",
         new="        return 0;",
         inv="epoll engine: a send or recv with MSG_DONTWAIT waits instead of "
             "completing with -EAGAIN (httpd's send deadline never starts)",
         run="c"),
    dict(name="ep-splice-ignores-sndtimeo",
         file="runtime/engine_epoll_ops.c",
         old="    r->flags |= PD__EPF_SOCKTO;\n",
         new="",
         inv="epoll engine: a splice into a socket that takes nothing waits past "
             "the socket's SO_SNDTIMEO (httpd's stalled readers hold their slots)",
         run="c"),
    dict(name="ep-workers-start-late",
         file="runtime/engine_epoll_work.c",
         old="    while (e->started < e->nthreads)\n        pthread_cond_wait(&e->cond, &e->lock);\n",
         new="",
         inv="4 no allocation after spawn (epoll): the workers' start-up "
             "allocations land while futures run",
         run="san-epoll"),
    # --- issue 21: owned resources, CANCELLED(), SPAWN ---
    dict(name="owned-fd-not-closed",
         file="templates/destroy.c.j2",
         old="            (void)pd__prep_close(cx, &self->pd__own_op, self->{{ o.name }});\n",
         new="            (void)pd__prep_nop(cx, &self->pd__own_op);\n",
         inv="5 no fd leak: an async drop forgets an owned fd without closing it",
         run="plain"),
    dict(name="owned-fd-sync-kept",
         file="templates/destroy.c.j2",
         old="        close(self->{{ o.name }});\n        self->{{ o.name }} = -1;\n"
             "{% else %}\n        (void)unlinkat",
         new="        self->{{ o.name }} = -1;\n{% else %}\n        (void)unlinkat",
         inv="5 no fd leak: a sync drop forgets an owned fd without closing it",
         run="plain"),
    dict(name="owned-close-not-forgotten",
         file="templates/macros.c.j2",
         old="                {{ b.closes }} = -1; /* owned: the close released it */",
         new="                (void)0;",
         inv="5: a close of an owned fd in a state leaves the field set, and the "
             "destruction closes the number again (someone else's descriptor by then)",
         run="plain"),
    dict(name="owned-file-not-removed",
         file="templates/destroy.c.j2",
         old="            (void)pd__prep_unlinkat(cx, &self->pd__own_op, self->{{ o.name }}, "
             "0, AT_FDCWD);",
         new="            (void)pd__prep_nop(cx, &self->pd__own_op);",
         inv="owns: file: an async drop before KEEP leaves the half-written file",
         run="plain"),
    dict(name="owned-file-not-armed",
         file="templates/macros.c.j2",
         old="                {{ b.arms }} = 1; /* owned: the file is this future's until KEEP */",
         new="                (void)0;",
         inv="owns: file: a file the future created is not its own: destruction "
             "leaves it half-written",
         run="plain"),
    dict(name="owned-file-not-armed-on-reap",
         file="templates/macros.c.j2",
         old="{{ pad }}    {{ o.arms }} = 1;",
         new="{{ pad }}    (void)0;",
         inv="owns: file: an open that created the file, reaped while its state was "
             "quiesced, leaves it behind",
         run="plain"),
    dict(name="owned-file-commit-forgotten",
         file="templates/macros.c.j2",
         old="                {{ b.disarms }} = 0; /* owned: the file is gone from that path */",
         new="                (void)0;",
         inv="owns: file: after a rename commits the file, destruction still removes "
             "whatever is at its old path",
         run="plain"),
    dict(name="cancelled-always",
         file="templates/future.c.j2",
         old="#define CANCELLED() (!self->pd__returned)",
         new="#define CANCELLED() (1)",
         inv="CANCELLED() is true after RETURN: a server says its shutdown goodbye "
             "on every end",
         run="plain"),
    dict(name="spawn-fail-leaks-fd",
         file="templates/entry.c.j2",
         old="            close({{ n }}); /* the future owned it from the call on */\n"
             "{% endfor %}\n        return NULL;",
         new="{% endfor %}\n        return NULL;",
         inv="5 no fd leak: a spawn that fails leaves the descriptor given to an "
             "owned param open",
         run="plain"),
    # --- issue 19: epoll bench ---
    dict(name="ep-ready-entries-never-poll",
         file="runtime/engine_epoll.c",
         old="    e->polled_last = polled;",
         new="    e->polled_last = 1;",
         inv="epoll engine: an entry that has its completions at once never "
             "collects readiness, so a loop of such entries never sees its "
             "fds become ready",
         run="plain"),
    # --- issue 22: memory that does not grow with traffic (buffer windows) ---
    dict(name="bufwin-starts-full",
         file="runtime/bufwin.h",
         old="    g->window = g->count < PD__BUF_WINDOW ? g->count : PD__BUF_WINDOW;",
         new="    g->window = g->count;",
         inv="a buffer group's written set stays small: every buffer is in the "
             "ring, so one-at-a-time traffic writes each buffer of the group in turn",
         run="plain"),
    dict(name="bufwin-put-under-the-spares",
         file="runtime/bufwin.h",
         old="        g->spare[g->nspare++] = bid;",
         new="        __builtin_memmove(g->spare + 1, g->spare, g->nspare * sizeof(g->spare[0]));\n"
             "        g->spare[0] = bid;\n        g->nspare++;",
         inv="a buffer group's written set stays small: a buffer given back goes "
             "under the spares (a queue, not a stack), so the ring is topped up "
             "with a buffer never written, a new one for every message",
         run="plain"),
    dict(name="bufwin-not-topped-up-when-taken",
         file="runtime/bufwin.h",
         old="    g->held++;\n    pd__bufwin_fill(g);",
         new="    g->held++;",
         inv="no spurious -ENOBUFS: a future holding more buffers than the window "
             "empties the ring while spares wait",
         run="plain"),
    dict(name="bufwin-never-widens",
         file="runtime/bufwin.h",
         old="    if (g->window < g->count)\n        g->window++;",
         new="",
         inv="the ring grows with demand: a burst larger than the window finds it "
             "empty at every round",
         run="plain"),
    # --- issue 22: the hot path at raw speed ---
    dict(name="sq-limit-past-room",
         file="runtime/pd_internal.h",
         old="    rt->sq_limit = head + sq->ring_entries;\n",
         new="    rt->sq_limit = head + 2 * sq->ring_entries;\n",
         inv="the submission queue is claimed only while it has room: a "
             "cached limit past the kernel's head plus the ring's entries "
             "overwrites entries not yet submitted",
         run="plain"),
    dict(name="ready-queue-unended",
         file="runtime/loop.c",
         old="    *rt->ready_tailp = NULL; /* ends the queue (pd__wake_on) */\n"
             "    batch = rt->ready_head;\n",
         new="    batch = rt->ready_head;\n",
         inv="a turn polls exactly the tasks queued: the last queued task's "
             "next is stale until the walk ends the queue",
         run="san"),
    # --- issue 22: httpd's keep-alive sweeper and sendfile ---
    dict(name="httpd-sweep-keeps-pages",
         file="examples/httpd/http.c",
         old="        ret = pd_task_cancel_op(l->task, l->op);\n",
         new="        ret = 0;\n",
         inv="httpd: a keep-alive connection quiet for HTTP_HOT_MS keeps its block: "
             "idle memory grows with every connection that made a request",
         run="plain"),
    dict(name="httpd-sweep-idle-late",
         file="examples/httpd/http.c",
         old="        if (now >= l->deadline) {\n            http_srv_ka_del(srv, l);\n",
         new="        if (now > l->deadline + HTTP_SWEEP_MS) {\n            http_srv_ka_del(srv, l);\n",
         inv="httpd: a keep-alive connection waiting between requests outlives its "
             "IDLE_MS deadline",
         run="plain"),
    dict(name="httpd-ka-stays-listed",
         file="examples/httpd/http_conn.yaml",
         old="      http_srv_ka_del(self->srv, &self->link);\n      self->link.idle = false;\n",
         new="      self->link.idle = false;\n",
         inv="httpd: a connection that got its next request stays on the keep-alive "
             "lists: the sweeper cancels it mid-request, or the lists are corrupted "
             "when it waits again",
         run="plain"),
    dict(name="httpd-sendfile-ignores-eof",
         file="examples/httpd/http_conn.yaml",
         old="        if (res <= 0)\n            RETURN(res < 0 ? -errno : -EIO);\n",
         new="        if (res < 0)\n            RETURN(-errno);\n",
         inv="httpd: a file that shrank under sendfile makes the connection spin on "
             "a sendfile that sends nothing instead of ending it",
         run="plain"),
    # --- issue 21: directories, signals, listeners ---
    dict(name="sigset-drop-keeps-blocked",
         file="specs/sigset_wait.yaml",
         old="      pthread_sigmask(SIG_UNBLOCK, &self->unblock, NULL);",
         new="      (void)self->unblock;",
         inv="signals: a destroyed sigset_wait leaves its signals blocked "
             "(SIGTERM ignored for the rest of the program)",
         run="plain"),
    dict(name="sigset-unblocks-what-was-blocked",
         file="specs/sigset_wait.yaml",
         old="sigismember(&old, sig) != 1)",
         new="1)",
         inv="signals: sigset_wait's drop unblocks signals the program had "
             "blocked before it started",
         run="plain"),
    dict(name="sigset-loses-unseen-signal",
         file="specs/sigset_wait.yaml",
         old="      kill(getpid(), (int)self->info.ssi_signo);",
         new="      (void)0;",
         inv="signals: a signal the read took, destroyed before its then, is "
             "lost instead of raised again",
         run="plain"),
    dict(name="read-dir-no-seek-back",
         file="specs/read_dir.yaml",
         old="                  if (lseek(self->dfd,",
         new="                  if (0 && lseek(self->dfd,",
         inv="directories: entries read past cap are lost (each entry exactly once)",
         run="plain"),
    dict(name="read-dir-gives-dots",
         file="specs/read_dir.yaml",
         old="              if (d->name[0] == '.' && (len == 1",
         new="              if (0 && d->name[0] == '.' && (len == 1",
         inv="directories: . and .. are given as entries (a tree walk loops)",
         run="plain"),
    dict(name="read-dir-no-turn",
         file="specs/read_dir.yaml",
         old="    do: YIELD(read);",
         new="    do: GOTO(read);",
         inv="directories: a walk of a huge directory never lets the other "
             "tasks run (read_dir has no suspension point)",
         run="plain"),
    dict(name="bind-fallback-skips-bind",
         file="runtime/pd_prep.h",
         old="        pd__op_fail(cx, op, bind(fd, (const struct sockaddr *)addr,\n"
             "                                 (socklen_t)addrlen) < 0 ? -errno : 0, 0);",
         new="        pd__op_fail(cx, op, 0, 0);",
         inv="listeners: where the kernel lacks IORING_OP_BIND the op completes "
             "without binding (listen auto-binds to any address)",
         run="plain"),
    dict(name="listen-fallback-skips-listen",
         file="runtime/pd_prep.h",
         old="        pd__op_fail(cx, op, listen(fd, backlog) < 0 ? -errno : 0, 0);",
         new="        pd__op_fail(cx, op, 0, 0);",
         inv="listeners: where the kernel lacks IORING_OP_LISTEN the op "
             "completes without listening",
         run="plain"),
    dict(name="ep-bind-listen-unprobed",
         file="runtime/engine_epoll.c",
         old="    case IORING_OP_SOCKET:\n    case PD__EP_OP_BIND:\n    case PD__EP_OP_LISTEN:\n",
         new="    case IORING_OP_SOCKET:\n",
         inv="epoll engine: bind and listen complete with -EOPNOTSUPP",
         run="plain"),
    # --- issue 20: the deterministic simulator engine ---
    dict(name="sim-seed-ignored",
         file="runtime/engine_sim.c",
         old="    x = s->seed;\n",
         new="    x = s->seed ^ (uint64_t)random();\n",
         inv="simulator determinism: two runs with one seed post different orders",
         run="plain"),
    dict(name="sim-posts-fifo",
         file="runtime/engine_sim.c",
         old="    pick = pd__sim_below(s, n);\n",
         new="    pick = 0 * pd__sim_below(s, n);\n",
         inv="simulator exploration: every seed posts completions in the order "
             "they were made (B never completes before A)",
         run="plain"),
    dict(name="sim-ignores-order-gates",
         file="runtime/engine_sim.c",
         old="    return (force || c->ready_at <= s->enters) && !pd__sim_unposted(s, c->after1) &&\n"
             "           !pd__sim_unposted(s, c->after2);",
         new="    return (force || c->ready_at <= s->enters) && !pd__sim_unposted(s, 0);",
         inv="simulator legality: a cancel's target completes before the cancel, "
             "a linked timeout before its op (orders the kernel never makes)",
         run="plain"),
    dict(name="sim-clock-never-jumps",
         file="runtime/engine_sim.c",
         old="        if (to > s->now)\n            s->now = to;\n",
         new="        (void)to;\n",
         inv="virtual time: the clock never jumps to the next timer, so a "
             "one-hour timeout never fires",
         run="plain"),
    # --- issue 21: the line server in 100 lines (tcp_listen, send_all, the accept's backoff) ---
    dict(name="accept-backoff-none",
         file="runtime/multishot.c",
         old="    if (PD__LIKELY(c->res >= 0) || !pd__mop_out_of_fds(m, c) || m->qlen || m->ovf)",
         new="    if (1 || !pd__mop_out_of_fds(m, c))",
         inv="servers: a multishot accept out of descriptors ends (its then sees "
             "-EMFILE) and a server stops serving",
         run="plain"),
    dict(name="accept-backoff-spins",
         file="runtime/multishot.c",
         old="    .tv_nsec = PD__ACCEPT_BACKOFF_MS % 1000 * 1000000L,",
         new="    .tv_nsec = 0,",
         inv="servers: out of descriptors, the accept is tried again at once, "
             "over and over (a spin)",
         run="plain"),
    dict(name="accept-backoff-end-delivered",
         file="runtime/multishot.c",
         old="        if (m->stop && !m->discard)\n            pd__mop_push(rt, m, (pd__cqe){ -ECANCELED, 0 });",
         new="        if (!m->discard)\n            pd__mop_push(rt, m, (pd__cqe){ -ECANCELED, 0 });",
         inv="servers: the backoff timer's end reaches then as the accept's end",
         run="plain"),
    dict(name="accept-backoff-on-reap",
         file="runtime/multishot.c",
         old="    while (pd__mop_take(m, &c))\n        pd__mop_release(m, c);",
         new="    while (pd__mop_pop(m, &c))\n        pd__mop_release(m, c);",
         inv="servers: a destroyed accept whose queued end was EMFILE arms its "
             "backoff timer while it is reaped: a request in flight after destruction",
         run="plain"),
    dict(name="tcp-listen-not-owned",
         file="specs/tcp_listen.yaml",
         old='  - {name: fd,  type: int, init: "-1", owns: fd}',
         new='  - {name: fd,  type: int, init: "-1"}',
         inv="listeners: a tcp_listen that fails or is destroyed before it "
             "returns leaves its socket open",
         run="plain"),
    dict(name="tcp-listen-closes-what-it-gave",
         file="specs/tcp_listen.yaml",
         old="      self->fd = -1;            /* the caller's from now on: not closed here */",
         new="      (void)0;",
         inv="listeners: the socket tcp_listen hands over is closed by its "
             "destruction (the caller's fd is closed under it)",
         run="plain"),
    dict(name="tcp-listen-no-reuseaddr",
         file="specs/tcp_listen.yaml",
         old="SO_REUSEADDR, &(int){ 1 }",
         new="SO_REUSEADDR, &(int){ 0 }",
         inv="listeners: a restarted server cannot bind its port while old "
             "connections are in TIME_WAIT",
         run="plain"),
    dict(name="send-all-no-resume",
         file="specs/send_all.yaml",
         old="      self->off += (size_t)res;\n      GOTO(send);",
         new="      self->off += (size_t)res;\n      RETURN((ssize_t)self->off);",
         inv="sends: send_all returns after a short send, the rest unsent",
         run="plain"),
    # --- issue 20: completion-queue overflow ---
    dict(name="sim-overflow-never-busy",
         file="runtime/engine_sim.c",
         old="    if (s->ovf_len != 0 && s->busy_on_ovf && ring->sq.sqe_tail != ring->sq.sqe_head) {\n",
         new="    if (0 && s->busy_on_ovf && ring->sq.sqe_tail != ring->sq.sqe_head) {\n",
         inv="simulator faults: no seed's kernel refuses submissions (-EBUSY) while "
             "its completion queue overflows",
         run="plain"),
    dict(name="sim-overflow-flag-unset",
         file="runtime/engine_sim.c",
         old="    IO_URING_WRITE_ONCE(s->m.sq_kflags, s->m.sq_kflags | IORING_SQ_CQ_OVERFLOW);\n",
         new="    (void)0;\n",
         inv="completion-queue overflow: IORING_SQ_CQ_OVERFLOW is never set while "
             "completions wait on the overflow list",
         run="plain"),
    dict(name="harness-submit-refusal-fails",
         file="runtime/harness.c",
         old="    PD_HARNESS_CHECK(ret >= 0 || ret == -EBUSY);\n",
         new="    PD_HARNESS_CHECK(ret >= 0);\n",
         inv="the harness fails a run where the kernel refuses a submission while "
             "its completion queue overflows",
         run="plain"),
    dict(name="wait-hook-refusal-fails",
         file="runtime/ring.h",
         old="    if (ret == -EBUSY && io_uring_cq_ready(&rt->ring) != 0)\n        return 0;\n",
         new="",
         inv="pd__ring_wait_cqe fails with -EBUSY on a simulated ring whose full "
             "completion queue refused what the wait submitted",
         run="plain"),
    dict(name="explore-faulted-unsummed",
         file="runtime/harness.c",
         old="        st->faulted += one.faulted;\n",
         new="",
         inv="pd_harness_explore reports no faulted destruction whatever its seeds "
             "injected",
         run="plain"),
    # --- issue 22: the hot path at raw speed (polls in place) ---
    dict(name="reap-queues-only",
         file="runtime/loop.c",
         old="    n = pd__reap_polling(rt, cx);\n    rt->in_turn = 0;\n",
         new="    n = pd__reap_inline(rt, 0);\n    (void)cx;\n    rt->in_turn = 0;\n",
         inv="a turn's reap queues every task it wakes for another pass "
             "instead of polling it in place (the old hot path)",
         run="plain"),
    dict(name="reap-in-place-unpublished-head",
         file="runtime/loop.c",
         old="        io_uring_smp_store_release(khead, head);\n        cx->task = t;\n",
         new="        cx->task = t;\n",
         inv="a poll in place that reaps (making room in a full submission "
             "queue) dispatches again the completions the reap that polled it "
             "had taken",
         run="c"),
    dict(name="reap-in-place-stale-head",
         file="runtime/loop.c",
         old="         */\n        head = *khead;\n    }\n",
         new="         */\n    }\n",
         inv="after a poll in place that reaped, the reap goes on from its own "
             "head and dispatches again what the nested reap took",
         run="c"),
    dict(name="reap-in-place-polls-dropping",
         file="runtime/loop.c",
         old="        if (PD__UNLIKELY(pd__task_state_queued(t) != PD_TASK_RUNNING)) {",
         new="        if (PD__UNLIKELY(t->queued)) {",
         inv="a reap polls in place a task that is not running (being dropped, "
             "or over): its future's poll is called after its drop began",
         run="c"),
    dict(name="reap-in-place-outside-turn",
         file="runtime/loop.c",
         old="    rt->in_turn = 1;\n    n = pd__reap_polling(rt, cx);\n",
         new="    n = pd__reap_polling(rt, cx);\n",
         inv="a task polled in place may run the loop (pd_task_wait, pd_run) "
             "from inside its poll",
         run="c"),
    dict(name="harness-halves-poll-in-place",
         file="runtime/loop.c",
         old="    rt->halves = 1;\n    return pd__polls(rt);\n}\n\n"
             "int pd__run_enter(pd_runtime *rt, int wait)\n{\n    rt->halves = 1;\n",
         new="    return pd__polls(rt);\n}\n\n"
             "int pd__run_enter(pd_runtime *rt, int wait)\n{\n",
         inv="harness: a runtime driven by halves still polls in place in its "
             "reaps, so the harness cannot stop a future between the poll "
             "that queued its requests and their submission",
         run="c"),
    # --- issue 22: httpd's request path against h2o (the cache refreshed ahead, sent from) ---
    dict(name="httpd-cache-no-refresh-ahead",
         file="examples/httpd/http.c",
         old="    if (now - e->stamp >= c->valid_ms - c->valid_ms / 2 &&\n",
         new="    if (0 && now - e->stamp >= c->valid_ms - c->valid_ms / 2 &&\n",
         inv="httpd: a file asked for without pause is not refreshed before its entry "
             "expires: every request between the expiry and the refill opens it",
         run="plain"),
    dict(name="httpd-cache-claim-cancels-fill",
         file="examples/httpd/http.c",
         old="    if (i != HTTP_CNIL && c->e[i].claimed && stamp - c->e[i].cstamp < quarter(c))\n",
         new="    if (0 && i != HTTP_CNIL && c->e[i].claimed && stamp - c->e[i].cstamp < quarter(c))\n",
         inv="httpd: each request that misses an expired entry claims it again and "
             "cancels the fill on its way, so that none fills it",
         run="plain"),
    dict(name="httpd-cache-fill-overwrites-pinned",
         file="examples/httpd/http.c",
         old="    if (e->pins > 0) {\n",
         new="    if (0 && e->pins > 0) {\n",
         inv="httpd: a refill writes over the body of an entry a send in flight is "
             "sending from",
         run="plain"),
    dict(name="httpd-cache-victim-ignores-pins",
         file="examples/httpd/http.c",
         old="        if (c->e[i].pins == 0)\n            return i;\n",
         new="        if (1)\n            return i;\n",
         inv="httpd: a new file takes the entry a send in flight is sending from",
         run="plain"),
    dict(name="httpd-cache-head-ignores-kind",
         file="examples/httpd/http.c",
         old="        if (e->hsec != sec || e->hflav != HFLAV(keep, r->minor)) {\n",
         new="        if (e->hsec != sec) {\n",
         inv="httpd: a kept head answers a request of another kind (Connection: close, "
             "HTTP/1.0 keep-alive) with the wrong Connection field",
         run="plain"),
    dict(name="httpd-cache-sent-loses-offset",
         file="examples/httpd/http.c",
         old="        memcpy(out, http_cache_resp(srv, pin) + done, (size_t)(len - done));\n",
         new="        memcpy(out, http_cache_resp(srv, pin), (size_t)(len - done));\n",
         inv="httpd: what a short send of a cached response leaves is not the rest "
             "of the response",
         run="plain"),
    # --- issue 22: httpd's large bodies by the thread's own splices ---
    dict(name="httpd-splice-blocking-socket",
         file="examples/httpd/http_accept.yaml",
         old='      flags: "SOCK_CLOEXEC | (self->srv->body != HTTP_BODY_COPY ? SOCK_NONBLOCK : 0)"\n',
         new='      flags: "SOCK_CLOEXEC | (self->srv->body == HTTP_BODY_SENDFILE ? SOCK_NONBLOCK : 0)"\n',
         inv="httpd: a splice into a full socket blocks the thread (every connection "
             "of it) until the peer reads",
         run="c"),
    dict(name="httpd-splice-drops-the-pipes-rest",
         file="examples/httpd/http_conn.yaml",
         old="        self->inpipe -= (uint32_t)res;\n        if (self->inpipe > 0)\n"
             "            GOTO(send_wait);\n",
         new="        self->inpipe -= (uint32_t)res;\n",
         inv="httpd: what a full socket did not take of a pipeful is never sent",
         run="c"),
    dict(name="httpd-pipe-reused-unemptied",
         file="examples/httpd/http_conn.yaml",
         old="  http_pipe_close(&self->pipe_r, &self->pipe_w);\n  http_srv_unlink",
         new="  http_pipe_put(&self->srv->pipes, &self->pipe_r, &self->pipe_w, true);\n"
             "  http_srv_unlink",
         inv="httpd: a pipe left with bytes by a connection that ended mid-body "
             "is given to the next response",
         run="c"),
    # --- issue 22: httpd's cold blocks ---
    dict(name="httpd-sweep-cancels-connection",
         file="examples/httpd/http.c",
         old="        ret = pd_task_cancel_op(l->task, l->op);\n",
         new="        pd_task_cancel(l->task);\n        ret = 0;\n",
         inv="httpd: the end of a keep-alive connection's hot period ends the connection, "
             "and a request the kernel already received into its block is lost",
         run="plain"),
    dict(name="httpd-cold-keeps-block",
         file="examples/httpd/http_conn.yaml",
         old="          /* The hot period is over and nothing came: wait without the block. */\n"
             "          http_pool_put(&self->srv->pool, self->blk);\n",
         new="          /* The hot period is over and nothing came: wait without the block. */\n",
         inv="httpd: a keep-alive connection whose hot period ended keeps its block "
             "while it waits, and leaks it when it takes another",
         run="plain"),
    # --- issue 22: httpd's large bodies (files by the megabyte) ---
    dict(name="httpd-unspliceable-ends-connection",
         file="examples/httpd/http_conn.yaml",
         old="        if (self->inpipe == 0 && http_no_splice(res)) {\n",
         new="        if (self->inpipe == 0 && http_no_splice(res) && 0) {\n",
         inv="httpd: a file that cannot be spliced ends its connection instead of "
             "being read and sent",
         run="plain"),
    dict(name="httpd-unsendfileable-ends-connection",
         file="examples/httpd/http_conn.yaml",
         old="        if (res < 0 && http_no_splice(-errno)) {\n",
         new="        if (res < 0 && http_no_splice(-errno) && 0) {\n",
         inv="httpd -L sendfile: a file that sendfile cannot send ends its connection "
             "instead of being read and sent",
         run="plain"),
    dict(name="httpd-ofile-past-validity",
         file="examples/httpd/http.c",
         old="        if (now - f->stamp >= o->valid_ms) {\n",
         new="        if (now - f->stamp >= o->valid_ms + 3600000) {\n",
         inv="httpd: a large file kept open answers past its validity: a file renamed "
             "over or removed is served as it was, and its descriptor is never closed",
         run="plain"),
    dict(name="httpd-ofile-lends-its-descriptor",
         file="examples/httpd/http.c",
         old="            fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0);\n",
         new="            fd = f->fd;\n",
         inv="httpd: a response sends from the kept descriptor itself and closes it, "
             "leaving the slot with a closed (or reused) descriptor",
         run="plain"),
    # --- issue 22: httpd's keep-alive receive polls first ---
    dict(name="gen-ioprio-with-group",
         file="gen/validate.py",
         old='            if "ioprio" in named:\n',
         new='            if False:\n',
         inv="generator: ioprio given to a recv with group is dropped without a word",
         run="gen"),
    # --- issue 22: the hot path at raw speed ---
    dict(name="zc-cancel-untagged",
         file="runtime/complete.c",
         old="    io_uring_prep_cancel64(sqe, PD__OP_UD(op, op->fdret), 0);\n",
         new="    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);\n",
         inv="7 cancelled means cancelled: the cancel of a zero-copy send (its "
             "user_data tagged PD__TAG_RARE) names the untagged address and misses",
         run="plain"),
    dict(name="zc-send-untagged",
         file="runtime/pd_internal.h",
         old="     (((fdret) & (PD__OP_ZC | PD__OP_LINKED)) ? PD__TAG_RARE : 0))",
         new="     (((fdret) & PD__OP_LINKED) ? PD__TAG_RARE : 0))",
         inv="1 kernel owns buffers: a zero-copy send's result, untagged, readies "
             "the op before its notification, while the kernel still reads the buffer",
         run="c"),
    dict(name="linked-op-untagged",
         file="runtime/complete.c",
         old="    if (cx->link_ts != NULL)\n        fdret |= PD__OP_LINKED;\n",
         new="",
         inv="an op with a linked timeout, untagged, is ready at its own completion "
             "while the timeout's is still owed to its slot",
         run="c"),
    dict(name="link-next-keeps-limit",
         file="runtime/pd_internal.h",
         old="    cx->rt->sq_limit = cx->rt->ring.sq.sqe_tail;\n",
         new="",
         inv="an op with a linked timeout takes PD__PREP's inline way, which "
             "submits it without its timeout",
         run="plain"),
    dict(name="ud-plain-ignores-tags",
         file="runtime/rt_internal.h",
         old="    return PD__LIKELY((ud & 7) == 0);",
         new="    return PD__LIKELY((ud & 4) == 0);",
         inv="the reap takes a tagged or reserved completion (a linked timeout, a "
             "cancel's result, the wake) for a plain op's result",
         run="plain"),
    dict(name="reaped-aside-uncounted",
         file="runtime/complete.c",
         old="    rt->reaped_aside += n;\n",
         new="",
         inv="a turn's reap counts as its own polls the completions a nested "
             "reap took: ops_completed and polls overcount",
         run="plain"),
    dict(name="task-poll-uncached",
         file="runtime/task.c",
         old="    t->poll = vt->poll;\n",
         new="",
         inv="a spawned task's header has no poll function: the turn calls NULL",
         run="plain"),
    dict(name="goto-self-skips-start",
         file="templates/future.c.j2",
         old="#define PD__GOTO_1(s) \\\n    do { \\\n        goto pd__again_##s;",
         new="#define PD__GOTO_1(s) \\\n    do { \\\n        goto pd__at_##s;",
         inv="a GOTO to the state it is in jumps to its top with its sub-state "
             "still 1: it takes the old result again instead of starting the op",
         run="gen"),
    # --- engine cleanups and cancel API ---
    dict(name="list-append-keeps-tail",
         file="runtime/list.h",
         old="        *head = l;\n    *tail = l;\n",
         new="        *head = l;\n",
         inv="engines: a queue on list.h (the epoll engine's fd waiters and worker "
             "queue, the simulator's live records) loses what is appended behind "
             "its first entry",
         run="plain"),
    dict(name="ep-pool-never-started",
         file="runtime/engine_epoll_work.c",
         old="    if (!e->work_inited) {\n        int ret = pd__ep_work_start(e);\n",
         new="    if (0) {\n        int ret = pd__ep_work_start(e);\n",
         inv="epoll engine: a runtime's first file op does not start the worker pool "
             "it needs: the op never completes",
         run="c"),
    dict(name="ep-overflow-flag-never-set",
         file="runtime/engine_epoll.c",
         old="    if (e->ovf_len++ == 0)\n"
             "        IO_URING_WRITE_ONCE(e->m.sq_kflags, e->m.sq_kflags | IORING_SQ_CQ_OVERFLOW);\n",
         new="    e->ovf_len++;\n",
         inv="epoll engine: completions wait on the overflow list without "
             "IORING_SQ_CQ_OVERFLOW (the kernel sets it with IORING_FEAT_NODROP)",
         run="c"),
    dict(name="ep-overflow-flag-never-cleared",
         file="runtime/engine_epoll.c",
         old="    if (e->ovf_len == 0)\n"
             "        IO_URING_WRITE_ONCE(e->m.sq_kflags, e->m.sq_kflags & ~IORING_SQ_CQ_OVERFLOW);\n",
         new="",
         inv="epoll engine: IORING_SQ_CQ_OVERFLOW stays set once the overflow list "
             "is empty again",
         run="c"),
    dict(name="cancel-op-sent-twice",
         file="runtime/task.c",
         old="    if (op->cancelled)\n        return -EALREADY;\n",
         new="",
         inv="pd_task_cancel_op: a second cancel of one request reports a cancel "
             "queued (0) instead of -EALREADY",
         run="plain"),
    dict(name="cancel-op-foreign-slot",
         file="runtime/task.c",
         old="    if (op == NULL || at < self || at + sizeof(*op) > self + t->vt->size ||\n"
             "        t->state == PD_TASK_DONE || t->state == PD_TASK_CANCELLED)\n"
             "        return -EINVAL;\n"
             "    if (op->st != PD__OP_BUSY)\n"
             "        return -ENOENT;\n"
             "    if (op->task != t)\n"
             "        return -EINVAL;\n",
         new="    (void)at;\n    (void)self;\n"
             "    if (op == NULL || t->state == PD_TASK_DONE || t->state == PD_TASK_CANCELLED)\n"
             "        return -EINVAL;\n"
             "    if (op->st != PD__OP_BUSY)\n"
             "        return -ENOENT;\n",
         inv="pd_task_cancel_op: another task's slot is not refused",
         run="plain"),
    dict(name="read-file-fd-unowned",
         file="specs/read_file.yaml",
         old='  - {name: fd,  type: int,    init: "-1", owns: fd}\n',
         new='  - {name: fd,  type: int,    init: "-1"}\n',
         inv="5 no fd leak: read_file's descriptor is not the future's: a sync drop "
             "after the open leaks it",
         run="plain"),
    # --- lead: pd_task_cancel_op making room ---
    dict(name="cancel-op-room-reaped",
         file="runtime/task.c",
         old="            return ret;\n"
             "        if (op->st != PD__OP_BUSY)\n"
             "            return -ENOENT;\n",
         new="            return ret;\n",
         inv="pd_task_cancel_op: a request whose result the room-making reap took "
             "is cancelled anyway (0 and a cancel queued, where -ENOENT is due)",
         run="plain"),
    # --- issue 22: httpd's congestion control (-T) ---
    dict(name="httpd-cc-ignored",
         file="examples/httpd/server.c",
         old="    if (cc != NULL && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, "
             "(socklen_t)strlen(cc)) < 0)\n        goto fail;\n",
         new="    (void)cc;\n",
         inv="httpd -T: the listeners keep the system's congestion control, and "
             "so does every connection",
         run="plain"),
    # --- issue 22: httpd's fast path for plain request heads ---
    dict(name="httpd-fast-takes-connection",
         file="examples/httpd/http.c",
         old='            if (fast_name_is(name, name_len, "connection", 10))\n                return 0;\n',
         new='            if (fast_name_is(name, name_len, "connection", 10))\n                break;\n',
         inv="httpd: the fast path reads a head with Connection: close as keep-alive, "
             "which the parser would close",
         run="plain"),
    dict(name="httpd-fast-keeps-http10",
         file="examples/httpd/http.c",
         old="    r->keep = minor > 0; /* http_should_keep_alive without a Connection field */\n",
         new="    r->keep = 1;\n",
         inv="httpd: the fast path keeps an HTTP/1.0 connection open without keep-alive",
         run="plain"),
    dict(name="httpd-fast-two-hosts",
         file="examples/httpd/http.c",
         old="    if (hosts > 1 || (hosts == 0 && minor > 0))\n        return 0;\n",
         new="    if (hosts == 0 && minor > 0)\n        return 0;\n",
         inv="httpd: the fast path serves a head with two Host fields (RFC 9112 3.2: 400)",
         run="plain"),
    dict(name="httpd-fast-takes-content-length",
         file="examples/httpd/http.c",
         old='            if (fast_name_is(name, name_len, "content-length", 14))\n                return 0;\n',
         new='            if (fast_name_is(name, name_len, "content-length", 14))\n                break;\n',
         inv="httpd: the fast path ignores a body's Content-Length and reads the body "
             "as the next request",
         run="plain"),
    # --- issue 18: make test's run CPU ---
    dict(name="mark-point-per-file",
         file="tests/testutil.c",
         old="    if (pd_test_mark_forked && __atomic_load_n(&pd_test_mark_file, __ATOMIC_RELAXED) == file &&\n"
             "        __atomic_load_n(&pd_test_mark_line, __ATOMIC_RELAXED) == line)\n",
         new="    if (pd_test_mark_forked && __atomic_load_n(&pd_test_mark_file, __ATOMIC_RELAXED) == file)\n",
         inv="a test that crashes is located at the last assertion it passed: "
             "a mark point at another line of the same file is not passed on to Check",
         run="plain"),
    dict(name="mark-point-always-sent",
         file="tests/testutil.c",
         old="        __atomic_load_n(&pd_test_mark_line, __ATOMIC_RELAXED) == line)\n"
             "        return;\n",
         new="        __atomic_load_n(&pd_test_mark_line, __ATOMIC_RELAXED) == line && 0)\n"
             "        return;\n",
         inv="make test's CPU: an assertion repeated in a loop sends Check a mark point "
             "(an allocation and a write) every time",
         run="plain"),
    # --- issue 22: nop_chain at raw speed (the run loops' common turn) ---
    dict(name="turn-rare-ignored",
         file="runtime/loop.c",
         old="                       rt->turn_rare == 0 &&\n",
         new="",
         inv="the run loops' common turn ignores turn_rare: the wake's read is "
             "never queued again, a deadline is not waited against, and another "
             "engine is entered as io_uring",
         run="c"),
    dict(name="wake-first-unarmed",
         file="runtime/setup.c",
         old="    rt->wake_unarmed = 1; /* the first entry queues the wake's read */\n",
         new="",
         inv="a new runtime never queues the read of its wake eventfd: a wake from "
             "another thread does not end a blocking wait",
         run="c"),
    dict(name="not-uring-unset",
         file="runtime/setup.c",
         old="    rt->not_uring = rt->engine != NULL;\n",
         new="",
         inv="a runtime on epoll enters through the io_uring system call on its "
             "common turns",
         run="san-epoll"),
    dict(name="run-end-taken-for-deadlock",
         file="runtime/loop.c",
         old="    if (pd__stuck(rt) && (goal != NULL ? !pd__task_over(goal) : rt->live_head != NULL))\n",
         new="    if (pd__stuck(rt))\n",
         inv="pd_run returns -EDEADLK when its last task ends in a turn's polls, "
             "instead of 0",
         run="c"),
    dict(name="reap-aside-kept",
         file="runtime/loop.c",
         old="    rt->reaped_aside = 0;\n",
         new="",
         inv="a turn's reap subtracts the completions reaps outside turns took: "
             "polls and ops_completed undercount, and a run that can never "
             "progress waits for good",
         run="c"),
    dict(name="reap-cold-wake-polled",
         file="runtime/loop.c",
         old="            rt->stats.ops_completed++;\n            rt->reaped_aside++;\n",
         new="            rt->stats.ops_completed++;\n",
         inv="a completion whose task was not running is counted as a poll in "
             "place too: ops_completed counts it twice, and a run stops before "
             "its requests completed",
         run="c"),
    dict(name="enter-tail-unpublished",
         file="runtime/ring.h",
         old="    IO_URING_WRITE_ONCE(*sq->ktail, tail);\n",
         new="",
         inv="the turn's entry does not publish the submission queue's tail: the "
             "kernel never sees what the turn queued",
         run="plain"),
    dict(name="drain-check-skipped",
         file="runtime/rt_internal.h",
         old="        return;\n    }\n    pd__drain_check(rt, n);\n",
         new="        return;\n    }\n",
         inv="an entry after which the kernel says deferred work is left never "
             "enters again for it: cancelled requests linger in the kernel's "
             "cancel lookup",
         run="plain"),
    # --- issue 18: make test's build CPU ---
    dict(name="gen-cache-never-used",
         file="gen/render.py",
         old="    env.bytecode_cache = _template_cache(env)\n",
         new="    env.bytecode_cache = None\n",
         inv="generator: POLLDROP_GEN_CACHE is ignored: every run compiles the "
             "templates again",
         run="gen"),
    dict(name="gen-cache-unreadable-is-an-error",
         file="gen/render.py",
         old="        try:\n            super().load_bytecode(bucket)\n        except Exception:\n"
             "            bucket.reset()\n",
         new="        super().load_bytecode(bucket)\n",
         inv="generator: a cache of compiled templates that cannot be read (a path "
             "under a regular file) fails the run instead of being ignored",
         run="gen"),
    dict(name="gen-cache-keyed-by-path",
         file="gen/render.py",
         old="        return hashlib.sha1(name.encode(\"utf-8\")).hexdigest()\n",
         new="        return super().get_cache_key(name, filename)\n",
         inv="generator: the compiled templates are keyed by their path: a fresh "
             "clone's or an install's templates compile again what is cached",
         run="gen"),
    # --- issue 22: httpd's kept-open large files folded into the open path ---
    dict(name="httpd-kept-file-kept-again",
         file="examples/httpd/http_conn.yaml",
         old="        if (!self->kept && st.st_size >= HTTP_SPLICE_MIN && !self->index)\n",
         new="        if (st.st_size >= HTTP_SPLICE_MIN && !self->index)\n",
         inv="httpd: a request served from a kept descriptor keeps it again with "
             "its own stamp: a file requested often enough is never opened by its "
             "path again, and is served as it was after it was renamed over or removed",
         run="plain"),
    # --- issue 22: polish: cached templates name this tree's files ---
    dict(name="gen-cache-names-the-compiling-tree",
         file="gen/render.py",
         old="            bucket.code = _refiled(bucket.code, filename)\n",
         new="            pass\n",
         inv="generator: a template loaded from the cache names the file of the "
             "tree that compiled it (another clone's, an install's): a traceback "
             "through it points at a file that was not rendered",
         run="gen"),
    # --- issue 22: adversary of the epoll engine and the simulator ---
    dict(name="epoll-waitall-unclassified-short",
         file="runtime/engine_epoll_ops.c",
         old="        if (f->kind == PD__FK_UNKNOWN)\n            (void)pd__ep_fd_kind(e, fd);\n",
         new="",
         inv="engines: a MSG_WAITALL recv on a socket the epoll engine (or the "
             "simulator) never waited on completes short with the part that was "
             "there, where the kernel's waits for the rest",
         run="plain"),
    dict(name="epoll-stopped-partial-cancelled",
         file="runtime/engine_epoll_rec.c",
         old="    return r->done ? (int32_t)r->done : -ECANCELED;\n",
         new="    (void)r;\n    return -ECANCELED;\n",
         inv="engines: a MSG_WAITALL recv stopped by a cancel or its linked timeout "
             "after it received part of its bytes completes -ECANCELED on the epoll "
             "engine and the simulator: the bytes are gone from the socket and the "
             "caller is told none came, where the kernel returns them",
         run="plain"),
    dict(name="engine-deadline-wraps",
         file="runtime/engine_epoll.h",
         old="    return ns > INT64_MAX / 2 - now ? INT64_MAX / 2 : now + ns;\n",
         new="    return (int64_t)((uint64_t)now + (uint64_t)ns);\n",
         inv="engines: a timeout, linked timeout or entry limit too long to ever "
             "pass wraps around into the past on the epoll engine and the "
             "simulator, and fires at once",
         run="plain"),
    dict(name="epoll-send-sigpipe",
         file="runtime/engine_epoll_ops.c",
         old="        flags = (int)s->msg_flags | MSG_NOSIGNAL;\n",
         new="        flags = (int)s->msg_flags;\n",
         inv="engines: a send without MSG_NOSIGNAL to a peer that is gone raises "
             "SIGPIPE on the epoll engine and the simulator (a program that did not "
             "ignore it ends), where io_uring adds MSG_NOSIGNAL to every send",
         run="plain"),
    dict(name="sim-poll-no-rdhup",
         file="runtime/engine_sim_ops.c",
         old="                                                      ? (uint32_t)POLLRDHUP\n",
         new="                                                      ? 0u\n",
         inv="engines: a poll request on the simulator does not report POLLRDHUP "
             "(a peer that shut down its side), which the kernel's and the epoll "
             "engine's report whether asked for or not",
         run="plain"),
    dict(name="sim-splice-no-socket-timeout",
         file="runtime/engine_sim_cancel.c",
         old="    return op->state == PD__SIM_TIMER || op->state == PD__SIM_LTIMER ||\n"
             "           (op->state == PD__SIM_FDWAIT && (op->r.flags & PD__EPF_INHEAP));\n",
         new="    return op->state == PD__SIM_TIMER || op->state == PD__SIM_LTIMER;\n",
         inv="engines: a splice into a full socket waits for good on the simulator, "
             "past the socket's SO_SNDTIMEO (httpd's send deadline for a spliced "
             "file), where the kernel and the epoll engine end it with -EAGAIN",
         run="plain"),
    dict(name="sim-file-poll-waits",
         file="runtime/engine_sim_ops.c",
         old="            if (pd__ep_fd_kind(s->ep, op->r.fd) == PD__FK_FILE) {\n",
         new="            if (0) {\n",
         inv="engines: a multishot poll on a regular file keeps posting F_MORE "
             "completions on the simulator, where the kernel and the epoll engine "
             "complete it once",
         run="plain"),
    dict(name="sim-multishot-poll-every-enter",
         file="runtime/engine_sim_ops.c",
         old="            (op->refires >= PD__SIM_REFIRES && !pd__sim_woken(s, op) && "
             "s->refire != s->enters &&\n",
         new="            (0 && s->refire != s->enters &&\n",
         inv="engines: a multishot poll whose fd stays ready fires in every enter of "
             "the simulator, and virtual time never reaches a timer (a linked "
             "timeout, a deadline): a livelock",
         run="plain"),
    dict(name="epoll-socket-timeout-wraps",
         file="runtime/engine_epoll_ops.c",
         old="    r->deadline = pd__ep_after(pd__ep_clock(e), pd__ep_ts_ns(&ts));\n",
         new="    r->deadline = (int64_t)((uint64_t)pd__ep_clock(e) + (uint64_t)ts.tv_sec * "
             "1000000000u + (uint64_t)ts.tv_nsec);\n",
         inv="engines: a splice under a socket timeout too long to pass ends at once "
             "with -EAGAIN on the epoll engine and the simulator (its deadline "
             "wrapped into the past), where the kernel's waits",
         run="plain"),
    dict(name="epoll-waitall-seqpacket-short",
         file="runtime/engine_epoll_ops.c",
         old="           v == SOCK_SEQPACKET;\n",
         new="           v == -1;\n",
         inv="engines: a MSG_WAITALL recv on a SOCK_SEQPACKET socket completes with "
             "the first record on the epoll engine and the simulator, where the "
             "kernel's waits for the buffer to fill",
         run="plain"),
    dict(name="epoll-fd-above-limit-ebadf",
         file="runtime/engine_epoll_fd.c",
         old="    if (fd >= 1 << 24 || fcntl(fd, F_GETFD) < 0)\n",
         new="    if (1)\n",
         inv="engines: an op on an open fd above a lowered RLIMIT_NOFILE fails with "
             "-EBADF on the epoll engine and the simulator, where the kernel's works",
         run="plain"),
    dict(name="epoll-multishot-poll-skip-taken",
         file="runtime/engine_epoll_ops.c",
         old="        ((s->len & IORING_POLL_ADD_MULTI) && (s->flags & IOSQE_CQE_SKIP_SUCCESS))) {\n",
         new="        0) {\n",
         inv="engines: a multishot poll with IOSQE_CQE_SKIP_SUCCESS runs on the epoll "
             "engine and the simulator, where the kernel refuses it (-EINVAL)",
         run="plain"),
    dict(name="epoll-zc-usage-unreported",
         file="runtime/engine_epoll.c",
         old="                    (sqe->ioprio & PD__EP_ZC_REPORT_USAGE) ? (int32_t)PD__EP_ZC_COPIED : 0,\n",
         new="                    0,\n",
         inv="engines: a send_zc that asked IORING_SEND_ZC_REPORT_USAGE is told its data "
             "went without a copy on the epoll engine and the simulator, which always copy",
         run="plain"),
    dict(name="epoll-stale-waiter-retried",
         file="runtime/engine_epoll_fd.c",
         old="            (synthetic && r->sqe.opcode == IORING_OP_POLL_ADD) || r->stale) {\n",
         new="            (synthetic && r->sqe.opcode == IORING_OP_POLL_ADD)) {\n",
         inv="engines: a recv still waiting on an fd the program closed with a close op "
             "reads the data of the next file the engine gives that number (an accepted "
             "connection): one client's bytes go to another's reader",
         run="plain"),
    dict(name="sim-stale-waiter-polled",
         file="runtime/engine_sim_ops.c",
         old="        if (op->state != PD__SIM_FDWAIT || (skip_fired && pd__sim_fired(s, op)) ||\n"
             "            pd__sim_stale(s, op))\n",
         new="        if (op->state != PD__SIM_FDWAIT || (skip_fired && pd__sim_fired(s, op)) ||\n"
             "            (0 && pd__sim_stale(s, op)))\n",
         inv="engines: on the simulator, a recv still waiting on an fd the program closed "
             "with a close op reads the data of the next file that number names",
         run="plain"),
    # --- issue 22: httpd's adversary (hostile peers and resources) ---
    dict(name="httpd-fd-budget-no-kept-files",
         file="examples/httpd/server.c",
         old="(o->cache_entries > 0 && o->cache_valid_ms > 0 ? HTTP_OFILES + 1 : 0)",
         new="(o->cache_entries > 0 && o->cache_valid_ms > 0 ? 0 : 0)",
         inv="httpd: the descriptor budget leaves out the large files each thread "
             "keeps open: under a low ulimit -n the connections accepted find no "
             "descriptor to open their file (503)",
         run="plain"),
    dict(name="httpd-error-http10-as-11",
         file="examples/httpd/http_conn.yaml",
         old="r->complete ? r->minor : 1);",
         new="r->minor ? r->minor : 1);",
         inv="httpd: an error response to an HTTP/1.0 keep-alive request keeps the "
             "connection without saying Connection: keep-alive",
         run="plain"),
    dict(name="httpd-fast-takes-te-prefix",
         file="examples/httpd/http.c",
         old="        if (name_len >= 17 && fast_name_is(name, 17, \"transfer-encoding\", 17))\n",
         new="        if (name_len == 17 && fast_name_is(name, 17, \"transfer-encoding\", 17))\n",
         inv="httpd: the fast path reads a head with a field named Transfer-Encoding-X, "
             "which http-parser answers 400: one request is answered 200 whole and "
             "400 in pieces",
         run="plain"),
    dict(name="httpd-sweep-keeps-expired-files",
         file="examples/httpd/http_sweep.yaml",
         old="        http_ofiles_expire(&self->srv->ofiles, now);\n",
         new="",
         inv="httpd: a large file kept open and removed stays open on an idle "
             "server until the thread's next large-file request: its blocks do "
             "not go back to the file system",
         run="plain"),
    dict(name="httpd-stale-upgrade-400",
         file="examples/httpd/http.c",
         old="        c->req.status = 400;\n    return n;\n}\n",
         new="        c->req.status = 400;\n"
             "    else if (e == HPE_OK && c->parser.upgrade && !c->req.status)\n"
             "        c->req.status = 400;\n    return n;\n}\n",
         inv="httpd: the parser's upgrade flag of the request before turns the "
             "next head, while it is in pieces, into a 400 (200 whole, 400 in pieces)",
         run="plain"),
    # --- issue 22: httpd answers a refused Expect request at its head ---
    dict(name="httpd-expect-waits-for-body",
         file="examples/httpd/http.c",
         old="        return stop(p, 405);\n",
         new="        (void)0;\n",
         inv="httpd: a refused request whose client expects 100-continue waits for a "
             "body that never comes, until the head's deadline",
         run="plain"),
    # --- issue 22: generator adversary ---
    dict(name="gen-open-comment-accepted",
         file="gen/cscan.py",
         old='c[0] == "/*" and c[2] is None), None)',
         new='c[0] == "/*" and c[2] is None and False), None)',
         inv="generator: a snippet that leaves a /* comment open is accepted, and "
             "comments out the generated code after it",
         run="gen"),
    dict(name="gen-open-conditional-accepted",
         file="gen/cscan.py",
         old="    if opened:\n        at, shown = opened[-1]\n",
         new="    if opened and not opened:\n        at, shown = opened[-1]\n",
         inv="generator: an #if that a snippet leaves open is accepted: its #endif in "
             "another state's code silently removes the generated code between them",
         run="gen"),
    dict(name="gen-line-directive-accepted",
         file="gen/cscan.py",
         old="        if name == \"line\" or name.isdigit():\n",
         new="        if name == \"line\" and name.isdigit():\n",
         inv="generator: a #line in spec text is accepted, and the compiler blames "
             "another file for the snippet's errors",
         run="gen"),
    dict(name="gen-digraphs-not-brackets",
         file="gen/cscan.py",
         old="    for i, c in enumerate(undigraph(clean)):\n",
         new="    for i, c in enumerate(clean):\n",
         inv="generator: a %> in spec text is not a brace to the bracket check, and "
             "closes the generated function around the snippet",
         run="gen"),
    dict(name="gen-const-output-accepted",
         file="gen/validate.py",
         old="        elif outer_const(t):\n",
         new="        elif outer_const(t) and not t:\n",
         inv="generator: a const output type is accepted, and the compiler's error is "
             "in the generated RETURN, not at the spec",
         run="gen"),
    dict(name="gen-const-member-accepted",
         file="gen/validate.py",
         old="        if outer_const(ctype):\n",
         new="        if outer_const(ctype) and not ctype:\n",
         inv="generator: a const param is accepted, and F_init's copy of it fails to "
             "compile in generated code",
         run="gen"),
    dict(name="gen-join-branch-hides-state",
         file="gen/validate.py",
         old="                if st.kind == \"join\" and b.name in api:\n",
         new="                if st.kind == \"join\" and b.name in api and not api:\n",
         inv="generator: a join branch named F_S_B is accepted, and GOTO(B) in its "
             "then stores the branch's result as the state",
         run="gen"),
    dict(name="gen-folded-comment-accepted",
         file="gen/loader.py",
         old="    for i, lo, text in segments[:-1]:\n",
         new="    for i, lo, text in segments[:0]:\n",
         inv="generator: a // comment in a plain or folded snippet is accepted, and "
             "the code YAML folds into its line is silently commented out",
         run="gen"),
    dict(name="gen-op-pastes-state-name",
         file="templates/future.c.j2",
         old="#define OP(s) (&self->PD__OP_##s)\n",
         new="#define OP(s) (&self->pd__##s##_op)\n",
         inv="generator: OP(s) pastes the state's name into a slot name, and names "
             "another state's slot when the names of the two were made unique",
         run="gen"),
    dict(name="gen-macro-state-name-accepted",
         file="gen/link.py",
         old="            kinds.append((\"state\", st))\n",
         new="",
         inv="generator: a state named after a macro (linux) is accepted, and GOTO "
             "to it fails to compile in generated code",
         run="gen"),
    dict(name="gen-snippet-macro-leaks",
         file="gen/cscan.py",
         old="    if defined:\n",
         new="    if defined and not defined:\n",
         inv="generator: a #define in a snippet is accepted without its #undef, and "
             "reaches (and breaks) the generated code after the snippet",
         run="gen"),
    # --- issue 22: engine overflow ---
    dict(name="epoll-multishot-overflow-keeps-more",
         file="runtime/engine_epoll.c",
         old="    if (!pd__ep_cq_room(e))\n        return -EOVERFLOW;\n"
             "    pd__ep_cq_put(e, ud, res, flags | IORING_CQE_F_MORE);\n",
         new="    pd__ep_post(e, ud, res, flags | IORING_CQE_F_MORE);\n",
         inv="engines: a multishot request whose completion finds the CQ full goes on "
             "posting F_MORE completions into the overflow list on the epoll engine, "
             "where the kernel's ends it there: the overflow grows without bound",
         run="plain"),
    dict(name="epoll-overflow-room-not-made",
         file="runtime/engine_epoll.c",
         old="    if (need <= e->ovf_cap)\n        return 0;\n",
         new="    if (1 || need <= e->ovf_cap)\n        return 0;\n",
         inv="engines: the epoll engine's enter does not make the overflow's room for "
             "what its requests can post: completions overflowed past it overwrite "
             "older ones",
         run="plain"),
    dict(name="sim-multishot-overflow-keeps-more",
         file="runtime/engine_sim_ops.c",
         old="    s->ep->m.cq_entries = room < s->ep->m.cq_kentries ? room : s->ep->m.cq_kentries;\n",
         new="    (void)room;\n",
         inv="engines: on the simulator, a multishot request whose completion finds "
             "the CQ full goes on posting F_MORE completions, where the kernel's ends",
         run="plain"),
    dict(name="sim-overflow-room-not-made",
         file="runtime/engine_sim.c",
         old="    if (pd__sim_reserve(s, ring->sq.sqe_tail - ring->sq.sqe_head) < 0)\n"
             "        return -ENOMEM;\n",
         new="    if (0 && pd__sim_reserve(s, ring->sq.sqe_tail - ring->sq.sqe_head) < 0)\n"
             "        return -ENOMEM;\n",
         inv="engines: the simulator's enter does not make the pending and overflow "
             "lists' room for what its requests can post: an overflow past its room "
             "from init writes beyond it",
         run="san"),

    dict(name="epoll-overflow-room-failure-ignored",
         file="runtime/engine_epoll.c",
         old="    if (pd__ep_ovf_reserve(e, ring->sq.sqe_tail - ring->sq.sqe_head) < 0)\n"
             "        return -ENOMEM;\n",
         new="    (void)pd__ep_ovf_reserve(e, ring->sq.sqe_tail - ring->sq.sqe_head);\n",
         inv="engines: an epoll enter that cannot make the overflow's room starts its "
             "requests anyway, whose completions may then overwrite older ones",
         run="plain"),
    # --- issue 22: simulator review fixes ---
    dict(name="sim-stream-waits-for-time",
         file="runtime/engine_sim_ops.c",
         old="            (op->refires >= PD__SIM_REFIRES && !pd__sim_woken(s, op) && "
             "s->refire != s->enters &&\n",
         new="            (op->refires >= PD__SIM_REFIRES && "
             "s->refire != s->enters &&\n",
         inv="engines: a multishot poll on data left there that waits for virtual "
             "time on the simulator does not fire on a new write (a wakeup), and a "
             "pending timer fires first, where the kernel's poll fires on the wakeup",
         run="plain"),
    dict(name="sim-stream-refires-never-reset",
         file="runtime/engine_sim_ops.c",
         old="            op->refires = op->fired && !pd__sim_woken(s, op) ? "
             "op->refires + 1 : 0;\n",
         new="            op->refires = op->fired ? op->refires + 1 : 0;\n",
         inv="engines: the simulator's count of a multishot poll's refires with no "
             "wakeup does not restart on a wakeup, so data left after a stream lets "
             "time jump at once",
         run="plain"),
    dict(name="sim-add-counts-as-wakeup",
         file="runtime/engine_sim_ops.c",
         old="                pd__sim_wakeups(s);\n            }\n",
         new="            }\n",
         inv="engines: the report that adding a ready fd to the simulator's "
             "edge-triggered instance makes counts as a wakeup, so a poll on data "
             "left there fires once more than PD__SIM_REFIRES times again",
         run="plain"),

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
           "san": ("build/check_polldrop_asan", SAN_ENV),
           "san-epoll": ("build/check_polldrop_asan", dict(SAN_ENV, PD_ENGINE="epoll"))}
KIND = {"plain": "plain", "san": "san", "c": "san", "gen": "plain",
        "san-epoll": "san-epoll", "c-epoll": "san-epoll"}


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
FLAVOUR = "make test's builds: plain -O2, ASan+UBSan+PD_CHECKED (its test code -O0)\n"


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
                        # The unmutated run has no time to compare with: a
                        # suite longer than HANG_S is not a hang there.
                        limit = BUILD_TIMEOUT if baseline else \
                            max(HANG_S, HANG_X * self.took.get(name, 0))
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
        st, out = sh([PYTHON, "-m", "unittest", "tests.test_gen",
                      "tests.test_gen_adversary"],
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
