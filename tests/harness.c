#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define PD_HARNESS_MAX_POINTS 400

enum { MODE_ASYNC, MODE_SYNC, MODE_ASYNC_THEN_SYNC };

static const char *const mode_names[] = { "async", "sync", "async+sync" };

/* One turn of the runtime; waits only when the task has nothing to do. */
static int turn(const pd_harness_case *c, pd_runtime *rt, pd_task *t)
{
    pd_stats s;
    uint64_t polls;

    pd_runtime_stats(rt, &s);
    polls = s.polls;
    /* No ck_assert here: this runs while allocations are counted. */
    if (!t->queued) {
        if (s.inflight_ops == 0 && rt->ready_head == NULL)
            ck_abort_msg("%s: the future is stuck: not runnable, nothing in flight",
                         t->vt->name);
        if (c->progress)
            c->progress(c->ctx, PD_HARNESS_WAITING);
        PD_CHECK(pd_run_once(rt, 1) >= 0);
        return 0;
    }
    PD_CHECK(pd_run_once(rt, 0) >= 0);
    pd_runtime_stats(rt, &s);
    return s.polls > polls;
}

/*
 * Runs one destruction. Returns 1 if the future completed before its k-th
 * suspension (so larger k add nothing), and sets *drop_done when a
 * MODE_ASYNC_THEN_SYNC run found the async drop finished before j.
 */
static int run_one(const pd_harness_case *c, int k, int mode, int j,
                   int *drop_done, pd_harness_stats *st)
{
    char what[128];
    pd_runtime *rt;
    pd_task *t;
    void *self;
    int fds, susp = 0, completed, dsusp = 0;
    long allocs, teardowns_at_drop, own_teardowns;
    pd_stats s;

    snprintf(what, sizeof(what), "%s k=%d %s j=%d", c->future, k, mode_names[mode], j);
    fds = pd_test_fd_count();
    c->setup(c->ctx);
    rt = pd_test_rt();
    pd_test_rec_start();
    t = pd_task_new(rt, c->vt, &self);
    ck_assert_ptr_nonnull(t);
    c->init(self, c->ctx);
    pd_task_start(t);
    allocs = pd_test_allocs;

    while (pd_task_state(t) == PD_TASK_RUNNING && susp < k) {
        if (turn(c, rt, t) && pd_task_state(t) == PD_TASK_RUNNING) {
            susp++;
            if (c->progress)
                c->progress(c->ctx, PD_HARNESS_RUN_SUSPENDED);
        }
    }
    completed = pd_task_state(t) != PD_TASK_RUNNING;
    teardowns_at_drop = pd_rec.teardowns;

    if (mode == MODE_SYNC) {
        /* What pd_runtime_free does to a live task, observed directly. */
        c->vt->drop(self);
    } else {
        pd_task_cancel(t);
        while (pd_task_state(t) == PD_TASK_RUNNING ||
               pd_task_state(t) == PD_TASK_DROPPING) {
            if (mode == MODE_ASYNC_THEN_SYNC && dsusp == j) {
                c->vt->drop(self); /* sync drop in the middle of async drop */
                break;
            }
            if (turn(c, rt, t)) {
                dsusp++;
                if (c->progress)
                    c->progress(c->ctx, PD_HARNESS_DROP_SUSPENDED);
            }
        }
        if (mode == MODE_ASYNC_THEN_SYNC && dsusp < j)
            *drop_done = 1;
    }

    allocs = pd_test_allocs - allocs;
    pd_runtime_stats(rt, &s);
    ck_assert_msg(s.inflight_ops == 0, "%s: %llu ops still in flight after the drop",
                  what, (unsigned long long)s.inflight_ops);
    ck_assert_msg(allocs == 0, "%s: %ld allocations after spawn", what, allocs);
    ck_assert_msg(pd_test_rec_count(c->future, PD_TRACE_DROP) == 1,
                  "%s: drop code ran %ld times", what,
                  pd_test_rec_count(c->future, PD_TRACE_DROP));
    ck_assert_msg(pd_rec.double_init == 0 && pd_rec.stray_drop == 0 && pd_rec.nlive == 0,
                  "%s: children not destroyed exactly once (double init %ld, stray "
                  "drop %ld, alive %d)", what, pd_rec.double_init, pd_rec.stray_drop,
                  pd_rec.nlive);
    own_teardowns = pd_test_rec_count(c->future, PD_TRACE_TEARDOWN);
    if (mode == MODE_ASYNC)
        ck_assert_msg(own_teardowns == (c->has_teardown ? 1 : 0),
                      "%s: teardown ran %ld times on an async drop", what, own_teardowns);
    else if (mode == MODE_SYNC)
        ck_assert_msg(pd_rec.teardowns == teardowns_at_drop,
                      "%s: teardown ran on a sync drop", what);
    else
        ck_assert_msg(own_teardowns <= 1, "%s: teardown ran %ld times", what,
                      own_teardowns);

    {
        /* The output, copied out before the task goes. */
        unsigned char out[64];
        const void *o = pd_task_output(t);

        ck_assert_uint_le(c->vt->out_size, sizeof(out));
        if (o && c->vt->out_size)
            memcpy(out, o, c->vt->out_size);
        pd_task_release(t);
        pd_runtime_free(rt);
        pd_set_trace(NULL, NULL);
        if (c->after)
            c->after(c->ctx, o ? out : NULL);
    }
    c->cleanup(c->ctx);
    ck_assert_msg(pd_test_fd_count() == fds, "%s: fd count went from %d to %d", what,
                  fds, pd_test_fd_count());
    st->runs++;
    return completed;
}

void pd_harness_run(const pd_harness_case *c, pd_harness_stats *st)
{
    int k;

    memset(st, 0, sizeof(*st));
    for (k = 0; k < PD_HARNESS_MAX_POINTS; k++) {
        int done = 0, j, completed;

        completed = run_one(c, k, MODE_ASYNC, -1, &done, st);
        if (!completed)
            run_one(c, k, MODE_SYNC, -1, &done, st);
        for (j = 0; !done && j < PD_HARNESS_MAX_POINTS; j++)
            run_one(c, k, MODE_ASYNC_THEN_SYNC, j, &done, st);
        if (completed) {
            st->points = k - 1; /* it suspended k-1 times, not k */
            return;
        }
    }
    ck_abort_msg("%s: still running after %d suspensions", c->future, k);
}
