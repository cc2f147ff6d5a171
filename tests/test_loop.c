/*
 * The loop suite: a call that runs the loop for a goal (pd_block_on,
 * F_block_on, pd_task_wait) returns once its goal is met, and never waits
 * for another task's request first.
 *
 * The unrelated task is a one-hour timer. No test asserts a duration: each
 * asserts that the timer is still pending when the call returned, so a
 * call that waited for it would hold the test until Check's timeout (30 s
 * here: a generous bound on work that takes milliseconds, and far less
 * than the hour).
 */
#include <fcntl.h>
#include <stdalign.h>
#include <string.h>
#include <unistd.h>

#include "nops.h"
#include "pipe_read.h"
#include "read_file.h"
#include "sleep_ms.h"
#include "testutil.h"

#define LOOP_HOUR_MS (3600LL * 1000)

/* Starts the unrelated task and runs a turn, so that its timer is in flight. */
static pd_task *unrelated_timer(pd_runtime *rt)
{
    pd_task *t = sleep_ms_spawn(rt, LOOP_HOUR_MS);
    pd_stats s;

    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 1);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 1);
    return t;
}

/* The timer never fired; then it is cancelled, and the runtime freed. */
static void unrelated_timer_end(pd_runtime *rt, pd_task *t)
{
    ck_assert_int_eq(pd_task_state(t), PD_TASK_RUNNING);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    pd_task_release(t);
    pd_test_rt_done(rt);
}

START_TEST(block_on_does_not_wait_for_an_unrelated_timer)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *timer = unrelated_timer(rt);
    char path[128], buf[4096];
    ssize_t got = 0;
    long n = 0;
    int i;

    pd_test_tmp_path(path, sizeof(path), "loop");
    ck_assert_int_eq(pd_test_make_file(path, 100, 17), 0);
    /*
     * read_file completes, then its teardown closes the file: the root
     * finishes in a poll, after which nothing of its own is in flight.
     */
    for (i = 0; i < 3; i++) {
        got = 0;
        ck_assert_int_eq(read_file_block_on(rt, path, buf, sizeof(buf), &got), 0);
        ck_assert_int_eq(got, 100);
        ck_assert_int_eq(pd_task_state(timer), PD_TASK_RUNNING);
    }
    /* A future without teardown, through pd_block_on's generated wrapper. */
    ck_assert_int_eq(nops_block_on(rt, 3, &n), 0);
    ck_assert_int_eq(n, 3);
    unlink(path);
    unrelated_timer_end(rt, timer);
}
END_TEST

START_TEST(task_wait_for_a_done_task)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *timer = unrelated_timer(rt);
    pd_task *t = nops_spawn(rt, 5);
    pd_stats before, after;

    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_eq(*(const long *)pd_task_output(t), 5);
    ck_assert_int_eq(pd_task_state(timer), PD_TASK_RUNNING);
    /* Over already: returns at once, without a turn. */
    pd_runtime_stats(rt, &before);
    ck_assert_int_eq(pd_task_wait(t), 0);
    pd_runtime_stats(rt, &after);
    ck_assert_uint_eq(after.polls, before.polls);
    ck_assert_uint_eq(after.enter_calls, before.enter_calls);
    pd_task_release(t);
    unrelated_timer_end(rt, timer);
}
END_TEST

/*
 * The recipe of docs/api.md: cancel one task and wait for its teardown.
 * pipe_read's teardown writes "bye" through io_uring, so the wait spans
 * the cancel's completion, the teardown's write and the drop code.
 */
START_TEST(task_wait_for_a_cancelled_task_runs_its_teardown)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *timer = unrelated_timer(rt);
    int p[2], bye[2];
    char got[8];
    pd_task *t;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(bye, O_CLOEXEC | O_NONBLOCK), 0);
    pd_test_rec_start();
    t = pipe_read_spawn(rt, p[0], bye[1]);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 2); /* its read is in flight */
    pd_task_cancel(t);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_ptr_null(pd_task_output(t));
    /* Its teardown ran to the end, then its drop code, once. */
    ck_assert_int_eq(read(bye[0], got, sizeof(got)), 3);
    ck_assert_mem_eq(got, "bye", 3);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_TEARDOWN), 1);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 1);
    ck_assert_int_eq(pd_task_state(timer), PD_TASK_RUNNING);
    /* Cancelled means cancelled: the read took nothing. */
    ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    pd_test_nothing_taken(p[0], p[1]);
    pd_task_release(t);
    pd_set_trace(NULL, NULL);
    close(p[0]);
    close(p[1]);
    close(bye[0]);
    close(bye[1]);
    unrelated_timer_end(rt, timer);
}
END_TEST

/* A future that calls pd_task_wait from inside its poll: refused. */
struct waiter {
    pd_task *other;
    int ret;
};

static pd_poll waiter_poll(void *self, pd_cx *cx, void *out)
{
    struct waiter *w = self;

    (void)cx, (void)out;
    w->ret = pd_task_wait(w->other);
    return PD_READY;
}

static pd_poll waiter_poll_drop(void *self, pd_cx *cx)
{
    (void)self, (void)cx;
    return PD_READY;
}

static void waiter_drop(void *self)
{
    (void)self;
}

static const pd_vtable waiter_vtable = {
    "waiter", sizeof(struct waiter), alignof(struct waiter), 0, waiter_poll,
    waiter_poll_drop, waiter_drop,
};

START_TEST(task_wait_from_inside_a_task_is_ebusy)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *timer = unrelated_timer(rt);
    struct waiter *w;
    pd_task *t;

    /* It waits for the timer, which is not over: refused all the same. */
    t = pd_task_new(rt, &waiter_vtable, (void **)&w);
    ck_assert_ptr_nonnull(t);
    w->other = timer;
    w->ret = 1;
    pd_task_start(t);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(w->ret, -EBUSY);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    pd_task_release(t);
    unrelated_timer_end(rt, timer);
}
END_TEST

static pd_poll idle_poll(void *self, pd_cx *cx, void *out)
{
    (void)self, (void)cx, (void)out;
    return PD_PENDING;
}

static const pd_vtable idle_vtable = {
    "idle", sizeof(struct waiter), alignof(struct waiter), 0, idle_poll,
    waiter_poll_drop, waiter_drop,
};

START_TEST(task_wait_on_a_task_never_started_or_stuck)
{
    pd_runtime *rt = pd_test_rt();
    void *mem;
    pd_task *t = pd_task_new(rt, &idle_vtable, &mem);

    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_task_wait(t), -EINVAL);
    pd_task_start(t);
    /* Pending with nothing in flight: nothing can wake it. */
    ck_assert_int_eq(pd_task_wait(t), -EDEADLK);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_RUNNING);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    pd_task_release(t);
    pd_test_rt_done(rt);
}
END_TEST

/*
 * A turn's reap polls a running task whose op completed there and then,
 * as a raw liburing loop handles each completion in place: once the turn
 * that submitted the first nop returns, the task has had its second poll
 * and its second nop waits, queued in the ring, for the next turn's entry.
 * Nothing is left on the ready queue for another pass.
 */
START_TEST(reap_polls_a_completed_task_in_place)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t = nops_spawn(rt, 3);
    pd_stats s;

    ck_assert_ptr_nonnull(t);
    /* Polls t (its first nop), submits it, waits for it and reaps it. */
    ck_assert_int_eq(pd_run_once(rt, 1), 1);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.ops_completed, 1);
    ck_assert_uint_eq(s.polls, 2);
    ck_assert_int_eq(pd__task_queued(t), 0);
    ck_assert_uint_eq(pd__sq_unsubmitted(rt), 1);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_RUNNING);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(*(const long *)pd_task_output(t), 3);
    pd_task_release(t);
    pd_test_rt_done(rt);
}
END_TEST

/*
 * Polls in place that fill a small submission queue: each such poll makes
 * room by submitting and reaping, in the middle of the reap that polled
 * it. No completion may be dispatched twice (the checked build aborts on a
 * completion its slot is not owed) and none lost: every task counts all
 * its nops, and every op submitted completed once.
 */
#define LOOP_SMALL_TASKS 40
#define LOOP_SMALL_NOPS 200L

START_TEST(polls_in_place_that_fill_a_small_queue)
{
    const pd_config cfg = { .entries = 4 };
    pd_task *t[LOOP_SMALL_TASKS];
    pd_runtime *rt;
    pd_stats s;
    int i;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    for (i = 0; i < LOOP_SMALL_TASKS; i++) {
        t[i] = nops_spawn(rt, LOOP_SMALL_NOPS);
        ck_assert_ptr_nonnull(t[i]);
    }
    ck_assert_int_eq(pd_run(rt), 0);
    for (i = 0; i < LOOP_SMALL_TASKS; i++) {
        ck_assert_int_eq(pd_task_state(t[i]), PD_TASK_DONE);
        ck_assert_int_eq(*(const long *)pd_task_output(t[i]), LOOP_SMALL_NOPS);
        pd_task_release(t[i]);
    }
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.ops_submitted, LOOP_SMALL_TASKS * LOOP_SMALL_NOPS);
    ck_assert_uint_eq(s.ops_completed, LOOP_SMALL_TASKS * LOOP_SMALL_NOPS);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_loop(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("goal");

    tcase_add_test(tc, block_on_does_not_wait_for_an_unrelated_timer);
    tcase_add_test(tc, task_wait_for_a_done_task);
    tcase_add_test(tc, task_wait_for_a_cancelled_task_runs_its_teardown);
    tcase_add_test(tc, task_wait_from_inside_a_task_is_ebusy);
    tcase_add_test(tc, task_wait_on_a_task_never_started_or_stuck);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    tc = tcase_create("in_place");
    tcase_add_test(tc, reap_polls_a_completed_task_in_place);
    tcase_add_test(tc, polls_in_place_that_fill_a_small_queue);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}
