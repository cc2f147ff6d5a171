/*
 * The runtime suite: setup, tasks and references, turns, the full
 * submission queue, shutdown, deadlock detection; and pd_drop_async.
 */
#include <fcntl.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nops.h"
#include "pipe_read.h"
#include "quitter.h"
#include "read_deadline.h"
#include "testutil.h"

START_TEST(runtime_new_and_free)
{
    pd_runtime *rt = NULL;
    pd_config cfg = { .entries = 8, .flags = 0 };
    pd_stats s;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    ck_assert_ptr_nonnull(rt);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.live_tasks, 0);
    ck_assert_uint_eq(s.inflight_ops, 0);
    pd_runtime_free(rt);
    cfg.flags = PD_CONFIG_NO_DEFER_TASKRUN;
    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.ring_flags & IORING_SETUP_DEFER_TASKRUN, 0);
    pd_runtime_free(rt);
    pd_runtime_free(NULL);
}
END_TEST

START_TEST(runtime_bad_config_is_errno)
{
    pd_runtime *rt = (pd_runtime *)1;
    pd_config cfg = { .entries = 1u << 30, .flags = 0 };

    ck_assert_int_lt(pd_runtime_new(&rt, &cfg), 0);
    ck_assert_ptr_null(rt);
}
END_TEST

START_TEST(block_on_returns_output)
{
    pd_runtime *rt = pd_test_rt();
    long out = 0;
    pd_stats s;

    ck_assert_int_eq(nops_block_on(rt, 100, &out), 0);
    ck_assert_int_eq(out, 100);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.ops_submitted, 100);
    ck_assert_uint_eq(s.ops_completed, 100);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_uint_eq(s.live_tasks, 0);
    ck_assert_uint_gt(s.enter_calls, 0);
    ck_assert_uint_ge(s.polls, 100);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(spawned_tasks_run_concurrently)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t[50];
    pd_stats s;
    int i;

    for (i = 0; i < 50; i++)
        ck_assert_ptr_nonnull(t[i] = nops_spawn(rt, i));
    ck_assert_int_eq(pd_run(rt), 0);
    for (i = 0; i < 50; i++) {
        ck_assert_int_eq(pd_task_state(t[i]), PD_TASK_DONE);
        ck_assert_int_eq(*(const long *)pd_task_output(t[i]), i);
        pd_task_release(t[i]);
    }
    pd_runtime_stats(rt, &s);
    /* 50 tasks in lockstep: far fewer turns than ops. */
    ck_assert_uint_lt(s.enter_calls, 100);
    pd_runtime_free(rt);
}
END_TEST

/*
 * A turn that reaps a full budget of deferred-work completions (twenty or
 * more) enters the kernel again only while cancels are recent: 64 tasks
 * doing nops in lockstep cost one io_uring_enter per turn, not two.
 */
START_TEST(busy_turns_enter_once)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t[64];
    pd_stats s;
    int i;

    for (i = 0; i < 64; i++)
        ck_assert_ptr_nonnull(t[i] = nops_spawn(rt, 50));
    ck_assert_int_eq(pd_run(rt), 0);
    for (i = 0; i < 64; i++) {
        ck_assert_int_eq(*(const long *)pd_task_output(t[i]), 50);
        pd_task_release(t[i]);
    }
    pd_runtime_stats(rt, &s);
    /* 50 turns of 64 nops, the turn that finishes them, and a spare. */
    ck_assert_uint_le(s.enter_calls, 52);
    pd_runtime_free(rt);
}
END_TEST

/*
 * A chain of ops in pd_block_on, one at a time (make bench's nop_chain):
 * each turn's one entry submits the op the last poll queued and reaps its
 * completion, whose task the reap polls in place, which queues the next.
 * So the chain costs one entry per op, as a raw liburing loop does, and
 * no more: not a second entry for the kernel's deferred work (a short
 * batch after which the kernel says none is left), and not one for the
 * poll that a reap which only queued the task would leave to the next turn.
 */
START_TEST(chain_enters_once_per_op)
{
    pd_runtime *rt = pd_test_rt();
    long out = 0;
    pd_stats s;

    ck_assert_int_eq(nops_block_on(rt, 1000, &out), 0);
    ck_assert_int_eq(out, 1000);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.enter_calls, 1000);
    ck_assert_uint_eq(s.polls, 1001); /* the first poll, and one per completion */
    pd_runtime_free(rt);
}
END_TEST

/*
 * 64 reads cancelled in one turn: with DEFER_TASKRUN the kernel posts the
 * cancelled reads' completions as deferred work, and runs at most twenty
 * items of it per entry (Linux 6.13 and later). The turn that submitted
 * the cancels enters again while the kernel says work is left (its
 * IORING_SQ_TASKRUN flag), or while a full budget was reaped with cancels
 * recent, so that one turn collects every completion: a cancelled request
 * stays in the kernel's cancel lookup until its work has run.
 */
START_TEST(cancels_leftover_work_runs_in_their_turn)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t[64];
    pd_stats s;
    int p[2], i;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    for (i = 0; i < 64; i++)
        ck_assert_ptr_nonnull(t[i] = pipe_read_spawn(rt, p[0], -1));
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 64);
    for (i = 0; i < 64; i++)
        pd_task_cancel(t[i]);
    ck_assert_int_ge(pd_run_once(rt, 0), 0); /* the drops submit the cancels */
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_uint_eq(s.ops_completed, 64);
    ck_assert_int_eq(pd_run(rt), 0);
    for (i = 0; i < 64; i++) {
        ck_assert_int_eq(pd_task_state(t[i]), PD_TASK_CANCELLED);
        pd_task_release(t[i]);
    }
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(released_task_finishes_and_is_freed)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t = nops_spawn(rt, 10);

    pd_task_release(t); /* fire and forget; ASan reports a leak if not freed */
    ck_assert_int_eq(pd_run(rt), 0);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(run_once_returns_live_tasks)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t = nops_spawn(rt, 3);
    int live;

    ck_assert_int_eq(pd_run_once(rt, 0), 1);
    while ((live = pd_run_once(rt, 1)) > 0)
        ;
    ck_assert_int_eq(live, 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(full_submission_queue_loses_nothing)
{
    pd_runtime *rt = NULL;
    pd_config cfg = { .entries = 4, .flags = 0 };
    pd_task *t[200];
    pd_stats s;
    int i;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    for (i = 0; i < 200; i++)
        t[i] = nops_spawn(rt, 5);
    ck_assert_int_eq(pd_run(rt), 0);
    for (i = 0; i < 200; i++) {
        ck_assert_int_eq(*(const long *)pd_task_output(t[i]), 5);
        pd_task_release(t[i]);
    }
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.ops_completed, 1000);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(cancels_with_a_full_submission_queue)
{
    pd_runtime *rt = NULL;
    pd_config cfg = { .entries = 4, .flags = 0 };
    pd_task *t[64];
    pd_stats s;
    int p[2], i;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    for (i = 0; i < 64; i++)
        t[i] = pipe_read_spawn(rt, p[0], -1);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 64);
    for (i = 0; i < 64; i++)
        pd_task_cancel(t[i]);
    ck_assert_int_eq(pd_run(rt), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_uint_eq(s.cancels_submitted, 64);
    for (i = 0; i < 64; i++) {
        ck_assert_int_eq(pd_task_state(t[i]), PD_TASK_CANCELLED);
        pd_task_release(t[i]);
    }
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(shutdown_async_drops_everything)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t[8];
    int p[2], bye[2], i;
    char got[64];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(bye, O_CLOEXEC), 0);
    pd_test_rec_start();
    for (i = 0; i < 8; i++)
        t[i] = pipe_read_spawn(rt, p[0], bye[1]);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_int_eq(pd_shutdown(rt), 0);
    for (i = 0; i < 8; i++) {
        ck_assert_int_eq(pd_task_state(t[i]), PD_TASK_CANCELLED);
        pd_task_release(t[i]);
    }
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_TEARDOWN), 8);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 8);
    ck_assert_int_eq(read(bye[0], got, sizeof(got)), 24); /* 8 x "bye" */
    close(p[0]);
    close(p[1]);
    close(bye[0]);
    close(bye[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(shutdown_from_inside_a_task)
{
    pd_runtime *rt = pd_test_rt();
    int p[2];
    pd_task *reader, *q;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    reader = pipe_read_spawn(rt, p[0], -1);
    q = quitter_spawn(rt);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(reader), PD_TASK_CANCELLED);
    /* The quitter returned in the same poll that asked for shutdown. */
    ck_assert_int_eq(pd_task_state(q), PD_TASK_DONE);
    pd_task_release(reader);
    pd_task_release(q);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

static pd_poll never_poll(void *self, pd_cx *cx, void *out)
{
    (void)self, (void)cx, (void)out;
    return PD_PENDING;
}

static pd_poll never_poll_drop(void *self, pd_cx *cx)
{
    (void)cx;
    ++*(int *)self;
    return PD_READY;
}

static void never_drop(void *self)
{
    *(int *)self += 100;
}

static const pd_vtable never_vtable = {
    "never", sizeof(int), sizeof(int), 0, never_poll, never_poll_drop, never_drop,
};

START_TEST(block_on_a_stuck_future_is_edeadlk)
{
    pd_runtime *rt = pd_test_rt();
    int fut = 0;
    pd_dyn d = { &fut, &never_vtable };

    ck_assert_int_eq(pd_block_on(rt, d, NULL), -EDEADLK);
    ck_assert_int_eq(fut, 100); /* destroyed, synchronously, once */
    pd_runtime_free(rt);
}
END_TEST

/*
 * A future that calls the runtime back from inside its poll: every call
 * that would run the loop is refused with -EBUSY, pd_runtime_free is
 * ignored, and pd_shutdown only cancels.
 */
struct nester {
    pd_runtime *rt;
    int run, run_once, block_on, f_block_on, shutdown;
    int inner;   /* the future handed to pd_block_on (never_vtable) */
    long f_out;
};

static pd_poll nester_poll(void *self, pd_cx *cx, void *out)
{
    struct nester *n = self;
    pd_dyn inner = { &n->inner, &never_vtable };

    (void)cx, (void)out;
    n->run = pd_run(n->rt);
    n->run_once = pd_run_once(n->rt, 1);
    n->block_on = pd_block_on(n->rt, inner, NULL);
    n->f_block_on = nops_block_on(n->rt, 3, &n->f_out);
    pd_runtime_free(n->rt);
    n->shutdown = pd_shutdown(n->rt);
    return PD_READY;
}

static void nester_drop(void *self)
{
    (void)self;
}

static const pd_vtable nester_vtable = {
    "nester", sizeof(struct nester), alignof(struct nester), 0, nester_poll,
    never_poll_drop, nester_drop,
};

START_TEST(runtime_calls_from_inside_a_task)
{
    pd_runtime *rt = pd_test_rt();
    struct nester *n;
    pd_task *t, *reader;
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    reader = pipe_read_spawn(rt, p[0], -1);
    t = pd_task_new(rt, &nester_vtable, (void **)&n);
    ck_assert_ptr_nonnull(t);
    memset(n, 0, sizeof(*n));
    n->rt = rt;
    n->f_out = -1;
    pd_task_start(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(n->run, -EBUSY);
    ck_assert_int_eq(n->run_once, -EBUSY);
    ck_assert_int_eq(n->block_on, -EBUSY);
    ck_assert_int_eq(n->inner, 100); /* refused, yet destroyed: drop ran once */
    ck_assert_int_eq(n->f_block_on, -EBUSY);
    ck_assert_int_eq(n->f_out, -1);  /* no output was written */
    ck_assert_int_eq(n->shutdown, 0);
    /* The ignored free left the runtime working: shutdown finished here. */
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_eq(pd_task_state(reader), PD_TASK_CANCELLED);
    pd_task_release(t);
    pd_task_release(reader);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(waking_a_queued_task_does_nothing)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t = nops_spawn(rt, 1);
    pd_task *q;
    int n = 0;

    pd__wake(t);
    pd__wake(t);
    for (q = rt->ready_head; q; q = q->next)
        n++;
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(pd_run(rt), 0);
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(free_sync_drops_live_tasks)
{
    pd_runtime *rt = pd_test_rt();
    int p[2], bye[2];
    char got[8];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(bye, O_CLOEXEC | O_NONBLOCK), 0);
    pd_test_rec_start();
    pd_task_release(pipe_read_spawn(rt, p[0], bye[1]));
    pd_task_release(pipe_read_spawn(rt, p[0], bye[1]));
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    pd_runtime_free(rt);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 2);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_TEARDOWN), 0);
    ck_assert_int_eq(read(bye[0], got, sizeof(got)), -1); /* no goodbye */
    close(p[0]);
    close(p[1]);
    close(bye[0]);
    close(bye[1]);
}
END_TEST

START_TEST(spawn_during_shutdown_is_cancelled)
{
    pd_runtime *rt = pd_test_rt();
    int p[2];
    pd_task *t;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_task_release(pipe_read_spawn(rt, p[0], -1));
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    rt->shutting_down = 1; /* as seen by a task spawning from a teardown */
    t = pipe_read_spawn(rt, p[0], -1);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DROPPING);
    ck_assert_int_eq(pd_shutdown(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    pd_task_release(t);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(finished_task_still_queued_at_free_is_not_leaked)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *kept, *dropped;
    long out = 0;

    /* Both finish in their first poll, then are woken again while done. */
    kept = nops_spawn(rt, 0);
    dropped = nops_spawn(rt, 0);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_int_eq(pd_task_state(kept), PD_TASK_DONE);
    pd__wake(kept);
    pd__wake(dropped);
    pd_task_release(dropped); /* queued: it cannot be freed yet */
    pd_runtime_free(rt);      /* frees `dropped`; ASan reports it otherwise */
    out = *(const long *)pd_task_output(kept);
    ck_assert_int_eq(out, 0);
    pd_task_release(kept);    /* still valid after the runtime went */
}
END_TEST

START_TEST(one_entry_ring_is_einval)
{
    pd_runtime *rt = (pd_runtime *)1;
    pd_config cfg = { .entries = 1, .flags = 0 };

    /* A linked timeout needs two entries at once: it could never go in. */
    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), -EINVAL);
    ck_assert_ptr_null(rt);
    cfg.flags = PD_CONFIG_NO_DEFER_TASKRUN;
    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), -EINVAL);
    ck_assert_ptr_null(rt);
}
END_TEST

/*
 * The smallest rings run everything: ops with linked timeouts (two entries
 * each), with many more of them than entries, some expiring, some
 * completing, the rest cancelled by pd_task_cancel or pd_shutdown. Loop i
 * picks the size (2 or 4 entries) and the ring flags.
 */
#define SMALL_TASKS 24

START_TEST(small_rings_run_timeouts_and_cancels)
{
    pd_config cfg = { .entries = 2u << (_i / 2),
                      .flags = (_i & 1) ? PD_CONFIG_NO_DEFER_TASKRUN : 0 };
    pd_runtime *rt = NULL;
    pd_task *t[SMALL_TASKS];
    char buf[SMALL_TASKS][4];
    ssize_t out = 0;
    int p[2], i, left;
    pd_stats s;

    if (pd_test_skip_on_sim("small_rings_run_timeouts_and_cancels",
                            "it turns with pd_run_once(rt, 0) until 1 real ms passes, and "
                            "the virtual clock moves only when the runtime waits"))
        return;
    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    /* Alone on the ring: the deadline passes. */
    ck_assert_int_eq(read_deadline_block_on(rt, p[0], buf[0], 4, 1, &out), 0);
    ck_assert_int_eq(out, -ETIMEDOUT);
    /* A third have a 1 ms deadline, a third's worth of bytes arrive, the
       rest are cancelled: half by pd_task_cancel, half by pd_shutdown. */
    for (i = 0; i < SMALL_TASKS; i++)
        t[i] = read_deadline_spawn(rt, p[0], buf[i], 1, i % 3 == 0 ? 1 : 60000);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    pd_runtime_stats(rt, &s);
    /* Every read went in despite the small ring; only a 1 ms one may
       already be over (a loaded machine can take that long for a turn). */
    ck_assert_uint_le(s.inflight_ops, SMALL_TASKS);
    ck_assert_uint_ge(s.inflight_ops, SMALL_TASKS - (SMALL_TASKS + 2) / 3);
    pd_test_write(p[1], "12345678", SMALL_TASKS / 3);
    /* Turn until every short deadline has passed (bounded: no hang). */
    for (i = 0, left = SMALL_TASKS; left > 0 && i < 100000; i++) {
        int k;

        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        for (k = 0, left = 0; k < SMALL_TASKS; k += 3)
            left += pd_task_state(t[k]) != PD_TASK_DONE;
        usleep(100);
    }
    ck_assert_int_eq(left, 0);
    for (i = 1; i < SMALL_TASKS; i += 3)
        pd_task_cancel(t[i]);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_int_eq(pd_shutdown(rt), 0);
    for (i = 0; i < SMALL_TASKS; i++) {
        ssize_t r = pd_task_output(t[i]) ? *(const ssize_t *)pd_task_output(t[i]) : 0;

        /* The bytes went to whichever readers the pipe woke first. */
        if (i % 3 == 0)
            ck_assert_msg(r == -ETIMEDOUT || r == 1, "task %d: %zd", i, r);
        else if (pd_task_state(t[i]) == PD_TASK_DONE)
            ck_assert_int_eq(r, 1);
        else
            ck_assert_int_eq(pd_task_state(t[i]), PD_TASK_CANCELLED);
        pd_task_release(t[i]);
    }
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_uint_eq(s.live_tasks, 0);
    ck_assert_uint_ge(s.cancels_submitted, SMALL_TASKS / 3);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

/*
 * An op with a linked timeout, prepared when one submission entry is left
 * (a nop polled just before took the other of a 2-entry ring), claims two
 * adjacent entries: the queue is submitted first. Claiming the one entry
 * left would leave its timeout none. Both ways such a deadline ends: it
 * passes, or the data comes first. Loop i picks the ring flags.
 */
START_TEST(linked_timeout_with_one_entry_left)
{
    pd_config cfg = { .entries = 2, .flags = _i ? PD_CONFIG_NO_DEFER_TASKRUN : 0 };
    pd_runtime *rt = NULL;
    pd_task *n, *t;
    char buf[4];
    int p[2], round;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    for (round = 0; round < 2; round++) {
        if (round == 1)
            pd_test_write(p[1], "z", 1);
        n = nops_spawn(rt, 1);
        t = read_deadline_spawn(rt, p[0], buf, 1, round == 0 ? 1 : 3600000);
        ck_assert_ptr_nonnull(n);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(pd_run(rt), 0);
        ck_assert_int_eq(*(const long *)pd_task_output(n), 1);
        ck_assert_int_eq(*(const ssize_t *)pd_task_output(t), round == 0 ? -ETIMEDOUT : 1);
        pd_task_release(n);
        pd_task_release(t);
    }
    ck_assert_int_eq(buf[0], 'z');
    pd_test_rt_done(rt);
    close(p[0]);
    close(p[1]);
}
END_TEST

/*
 * The tests' assertions (testutil.h): one that passes again where the last
 * one passed sends Check no second mark point in a forked test; one at
 * another line does. Without forks (CK_FORK=no) every one is sent. The
 * counts are read before each check's own mark point is passed on.
 */
START_TEST(repeated_assertions_send_one_mark_point)
{
    const char *fork = getenv("CK_FORK");
    /* Without forks one test cannot tell where the last one ended: all are sent. */
    long once = fork != NULL && strcmp(fork, "no") == 0 ? 1000 : 1;
    long before;
    int i;

    ck_assert_int_ge(0, 0);
    before = pd_test_marks_sent;
    for (i = 0; i < 1000; i++)
        ck_assert_int_ge(i, 0);
    ck_assert_int_eq(pd_test_marks_sent - before, once);
    before = pd_test_marks_sent;
    for (i = 0; i < 10; i++) {
        ck_assert_int_ge(i, 0);
        ck_assert_int_le(i, 10);
    }
    ck_assert_int_eq(pd_test_marks_sent - before, 20);
}
END_TEST

Suite *pd_suite_runtime(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("runtime");

    tcase_add_test(tc, runtime_new_and_free);
    tcase_add_test(tc, runtime_bad_config_is_errno);
    tcase_add_test(tc, block_on_returns_output);
    tcase_add_test(tc, spawned_tasks_run_concurrently);
    tcase_add_test(tc, busy_turns_enter_once);
    tcase_add_test(tc, chain_enters_once_per_op);
    tcase_add_test(tc, cancels_leftover_work_runs_in_their_turn);
    tcase_add_test(tc, released_task_finishes_and_is_freed);
    tcase_add_test(tc, run_once_returns_live_tasks);
    tcase_add_test(tc, full_submission_queue_loses_nothing);
    tcase_add_test(tc, cancels_with_a_full_submission_queue);
    tcase_add_test(tc, shutdown_async_drops_everything);
    tcase_add_test(tc, shutdown_from_inside_a_task);
    tcase_add_test(tc, block_on_a_stuck_future_is_edeadlk);
    tcase_add_test(tc, waking_a_queued_task_does_nothing);
    tcase_add_test(tc, free_sync_drops_live_tasks);
    tcase_add_test(tc, spawn_during_shutdown_is_cancelled);
    tcase_add_test(tc, finished_task_still_queued_at_free_is_not_leaked);
    tcase_add_test(tc, runtime_calls_from_inside_a_task);
    tcase_add_test(tc, one_entry_ring_is_einval);
    tcase_add_loop_test(tc, small_rings_run_timeouts_and_cancels, 0, 4);
    tcase_add_loop_test(tc, linked_timeout_with_one_entry_left, 0, 2);
    tcase_add_test(tc, repeated_assertions_send_one_mark_point);
    suite_add_tcase(s, tc);
    return s;
}

/* --- pd_drop_async --- */

START_TEST(drop_async_runs_the_victims_teardown)
{
    pd_runtime *rt = pd_test_rt();
    pipe_read victim;
    pd_drop_async d;
    int p[2], bye[2];
    char got[8];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(bye, O_CLOEXEC), 0);
    pd_test_rec_start();
    pipe_read_init(&victim, p[0], bye[1]);
    pd_drop_async_init(&d, pipe_read_dyn(&victim));
    ck_assert_int_eq(pd_block_on(rt, (pd_dyn){ &d, &pd_drop_async_vtable }, NULL), 0);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_TEARDOWN), 1);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 1);
    ck_assert_int_eq(read(bye[0], got, sizeof(got)), 3);
    close(p[0]);
    close(p[1]);
    close(bye[0]);
    close(bye[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(drop_async_sync_dropped_midway_destroys_once)
{
    pd_runtime *rt = pd_test_rt();
    pipe_read victim;
    pd_drop_async *d;
    pd_task *t;
    int p[2], bye[2];
    char fill[4096];
    pd_stats s;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(bye, O_CLOEXEC), 0);
    /* The goodbye blocks on a full pipe, so the drop stays in teardown. */
    ck_assert_int_ge(fcntl(bye[1], F_SETPIPE_SZ, 4096), 4096);
    memset(fill, 'f', sizeof(fill));
    pd_test_write(bye[1], fill, sizeof(fill));
    pd_test_rec_start();
    pipe_read_init(&victim, p[0], bye[1]);
    t = pd_task_new(rt, &pd_drop_async_vtable, (void **)&d);
    pd_drop_async_init(d, pipe_read_dyn(&victim));
    pd_task_start(t);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_TEARDOWN), 1);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 1); /* the goodbye write */
    pd_drop_async_vtable.drop(d);          /* sync drop during async drop */
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 1);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    pd_runtime_free(rt); /* drops the task again: no effect */
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 1);
    close(p[0]);
    close(p[1]);
    close(bye[0]);
    close(bye[1]);
}
END_TEST

Suite *pd_suite_drop_async(void)
{
    Suite *s = suite_create("pd_drop_async");
    TCase *tc = tcase_create("drop_async");

    tcase_add_test(tc, drop_async_runs_the_victims_teardown);
    tcase_add_test(tc, drop_async_sync_dropped_midway_destroys_once);
    suite_add_tcase(s, tc);
    return s;
}
