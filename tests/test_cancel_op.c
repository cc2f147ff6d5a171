/*
 * pd_task_cancel_op: cancelling one await of a task's future, not the
 * future, on every engine (io_uring where the kernel allows it, epoll and
 * the simulator, chosen explicitly so that each runs whatever PD_ENGINE
 * says). The future is tests/specs/cancel_op.yaml: it hands out its
 * read's slot (OP(read)) while the read waits.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include "cancel_op.h"
#include "harness_hooks.h"
#include "testutil.h"

static const pd_engine engines[] = { PD_ENGINE_URING, PD_ENGINE_EPOLL, PD_ENGINE_SIM };
#define NENGINES (int)(sizeof(engines) / sizeof(engines[0]))

/* A runtime on engine e (no sim faults: the tests assert results), or NULL without io_uring. */
static pd_runtime *rt_on(pd_engine e, unsigned entries)
{
    pd_config cfg = { .entries = entries, .engine = e, .sim_flags = PD_SIM_NO_FAULTS };
    pd_runtime *rt = NULL;
    int why;

    if (e == PD_ENGINE_URING && !pd_test_uring_ok(&why))
        return NULL;
    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    return rt;
}

/* Turns until the task's read is submitted and waits (its slot handed out). */
static void until_waiting(pd_runtime *rt, pd_op *const *slot)
{
    int i;

    for (i = 0; i < 100 && (*slot == NULL || pd__sq_unsubmitted(rt) != 0); i++)
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_ptr_nonnull(*slot);
}

static ssize_t output(const pd_task *t)
{
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    return *(const ssize_t *)pd_task_output(t);
}

/*
 * A read waiting on an empty pipe, cancelled: 0, and a second cancel of
 * the same request -EALREADY; the await completes with -ECANCELED and the
 * future returns that as its output (it is not destroyed: the task is
 * DONE, not CANCELLED). Once the task is over, its slot is refused.
 */
START_TEST(cancels_the_await_not_the_future)
{
    int k;

    for (k = 0; k < NENGINES; k++) {
        pd_runtime *rt = rt_on(engines[k], 0);
        pd_op *slot = NULL, *was;
        int p[2];
        pd_task *t;

        if (rt == NULL)
            continue;
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        t = cancel_op_spawn(rt, p[0], &slot);
        ck_assert_ptr_nonnull(t);
        until_waiting(rt, &slot);
        was = slot;
        ck_assert_int_eq(pd_task_cancel_op(t, slot), 0);
        ck_assert_int_eq(pd_task_cancel_op(t, slot), -EALREADY);
        ck_assert_int_eq(pd_task_wait(t), 0);
        ck_assert_msg(output(t) == -ECANCELED, "%s: output %zd", pd_runtime_engine(rt),
                      output(t));
        ck_assert_ptr_null(slot);
        ck_assert_int_eq(pd_task_cancel_op(t, was), -EINVAL);
        pd_task_release(t);
        close(p[0]);
        close(p[1]);
        pd_runtime_free(rt);
    }
}
END_TEST

/*
 * Not suspended at the await: the read's result is in (reaped, the task
 * queued but not yet polled, as the harness's halves leave it), so there
 * is nothing to cancel: -ENOENT, and the future gets its bytes.
 */
START_TEST(result_in_means_nothing_to_cancel)
{
    int k;

    for (k = 0; k < NENGINES; k++) {
        pd_runtime *rt = rt_on(engines[k], 0);
        pd_op *slot = NULL;
        int p[2];
        pd_task *t;
        int i;

        if (rt == NULL)
            continue;
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        t = cancel_op_spawn(rt, p[0], &slot);
        ck_assert_int_eq(pd__run_polls(rt), 1);
        ck_assert_int_eq(pd__run_enter(rt, 0), 0);
        ck_assert_ptr_nonnull(slot);
        pd_test_write(p[1], "abc", 3);
        for (i = 0; i < 1000 && !pd__task_queued(t); i++)
            ck_assert_int_eq(pd__run_enter(rt, 1), 0);
        ck_assert(pd__task_queued(t));
        ck_assert_int_eq(pd_task_cancel_op(t, slot), -ENOENT);
        ck_assert_int_eq(pd__run_polls(rt), 1);
        ck_assert_msg(output(t) == 3, "%s: output %zd", pd_runtime_engine(rt), output(t));
        pd_task_release(t);
        close(p[0]);
        close(p[1]);
        pd_runtime_free(rt);
    }
}
END_TEST

/*
 * What is not a slot of t's future in flight is refused: NULL, another
 * task's slot (-EINVAL), and nothing is queued for it.
 */
START_TEST(refuses_what_is_not_the_tasks)
{
    int k;

    for (k = 0; k < NENGINES; k++) {
        pd_runtime *rt = rt_on(engines[k], 0);
        pd_op *sa = NULL, *sb = NULL;
        int p[2];
        pd_task *a, *b;
        pd_stats s;

        if (rt == NULL)
            continue;
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        a = cancel_op_spawn(rt, p[0], &sa);
        b = cancel_op_spawn(rt, p[0], &sb);
        until_waiting(rt, &sa);
        until_waiting(rt, &sb);
        ck_assert_int_eq(pd_task_cancel_op(a, NULL), -EINVAL);
        ck_assert_int_eq(pd_task_cancel_op(a, sb), -EINVAL);
        ck_assert_int_eq(pd_task_cancel_op(b, sa), -EINVAL);
        pd_runtime_stats(rt, &s);
        ck_assert_uint_eq(s.cancels_submitted, 0);
        ck_assert_int_eq(pd_task_state(a), PD_TASK_RUNNING);
        pd_task_cancel(a);
        pd_task_cancel(b);
        ck_assert_int_eq(pd_run(rt), 0);
        ck_assert_int_eq(pd_task_state(a), PD_TASK_CANCELLED);
        pd_task_release(a);
        pd_task_release(b);
        close(p[0]);
        close(p[1]);
        pd_runtime_free(rt);
    }
}
END_TEST

/*
 * 64 reads in flight on a submission queue of 4 entries: each cancel
 * finds room (the full queue is submitted first), none is lost, and every
 * read completes with -ECANCELED.
 */
START_TEST(cancels_with_a_full_submission_queue)
{
    int k;

    for (k = 0; k < NENGINES; k++) {
        pd_runtime *rt = rt_on(engines[k], 4);
        pd_op *slot[64] = { NULL };
        pd_task *t[64];
        int p[2];
        pd_stats s;
        int i;

        if (rt == NULL)
            continue;
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        for (i = 0; i < 64; i++)
            t[i] = cancel_op_spawn(rt, p[0], &slot[i]);
        for (i = 0; i < 64; i++)
            until_waiting(rt, &slot[i]);
        for (i = 0; i < 64; i++)
            ck_assert_int_eq(pd_task_cancel_op(t[i], slot[i]), 0);
        ck_assert_int_eq(pd_run(rt), 0);
        pd_runtime_stats(rt, &s);
        ck_assert_uint_eq(s.cancels_submitted, 64);
        for (i = 0; i < 64; i++) {
            ck_assert_int_eq(output(t[i]), -ECANCELED);
            pd_task_release(t[i]);
        }
        close(p[0]);
        close(p[1]);
        pd_runtime_free(rt);
    }
}
END_TEST

/*
 * A cancel that has to make room first: four cancels fill a submission
 * queue of 4 entries, and the read to be cancelled has its bytes waiting.
 * Making room submits and reaps, and what it reaps is that read's result:
 * nothing is left to cancel (-ENOENT, no cancel queued for it), and the
 * future gets its bytes while the four cancelled reads get -ECANCELED.
 */
START_TEST(room_made_reaps_the_result)
{
    int k;

    for (k = 0; k < NENGINES; k++) {
        pd_runtime *rt = rt_on(engines[k], 4);
        pd_op *slot[5] = { NULL };
        pd_task *t[5];
        int p[2], q[2];
        pd_stats s;
        int i;

        if (rt == NULL)
            continue;
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
        t[0] = cancel_op_spawn(rt, p[0], &slot[0]);
        for (i = 1; i < 5; i++)
            t[i] = cancel_op_spawn(rt, q[0], &slot[i]);
        for (i = 0; i < 5; i++)
            until_waiting(rt, &slot[i]);
        pd_test_write(p[1], "abc", 3);
        for (i = 1; i < 5; i++)
            ck_assert_int_eq(pd_task_cancel_op(t[i], slot[i]), 0);
        ck_assert_uint_eq(pd__sq_unsubmitted(rt), 4);
        ck_assert_msg(pd_task_cancel_op(t[0], slot[0]) == -ENOENT, "%s",
                      pd_runtime_engine(rt));
        ck_assert_int_eq(pd_run(rt), 0);
        pd_runtime_stats(rt, &s);
        ck_assert_uint_eq(s.cancels_submitted, 4);
        ck_assert_msg(output(t[0]) == 3, "%s: output %zd", pd_runtime_engine(rt),
                      output(t[0]));
        for (i = 0; i < 5; i++) {
            if (i > 0)
                ck_assert_int_eq(output(t[i]), -ECANCELED);
            pd_task_release(t[i]);
        }
        close(p[0]);
        close(p[1]);
        close(q[0]);
        close(q[1]);
        pd_runtime_free(rt);
    }
}
END_TEST

Suite *pd_suite_cancel_op(void)
{
    Suite *s = suite_create("pd_task_cancel_op");
    TCase *tc = tcase_create("cancel one await");

    tcase_add_test(tc, cancels_the_await_not_the_future);
    tcase_add_test(tc, result_in_means_nothing_to_cancel);
    tcase_add_test(tc, refuses_what_is_not_the_tasks);
    tcase_add_test(tc, cancels_with_a_full_submission_queue);
    tcase_add_test(tc, room_made_reaps_the_result);
    tcase_set_timeout(tc, 60);
    tcase_set_tags(tc, PD_TEST_OWN_ENGINE);
    suite_add_tcase(s, tc);
    return s;
}
