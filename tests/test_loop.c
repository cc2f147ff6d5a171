/*
 * The loop suite: a call that runs the loop for a goal (pd_block_on,
 * F_block_on) returns once its goal is met, and never waits for another
 * task's request first.
 *
 * The unrelated task is a one-hour timer. No test asserts a duration: each
 * asserts that the timer is still pending when the call returned, so a
 * call that waited for it would hold the test until Check's timeout (30 s
 * here: a generous bound on work that takes milliseconds, and far less
 * than the hour).
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "nops.h"
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

Suite *pd_suite_loop(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("goal");

    tcase_add_test(tc, block_on_does_not_wait_for_an_unrelated_timer);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}
