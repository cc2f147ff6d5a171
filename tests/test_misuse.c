/*
 * Misuse caught by the checked build (-DPD_CHECKED, the sanitized runner):
 * each mistake aborts with a message naming the future, its state and the
 * mistake. Each test makes the mistake in a child process and checks the
 * message. The plain runner does not register this suite.
 */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "pipe_read.h"
#include "ready_now.h"
#include "testutil.h"

#ifdef PD_CHECKED

/* A task that is alive: a read on a pipe nobody writes. */
static pd_task *reading_task(pd_runtime *rt)
{
    int p[2];
    pd_task *t;

    if (pipe2(p, O_CLOEXEC) < 0)
        return NULL;
    t = pipe_read_spawn(rt, p[0], -1);
    pd_run_once(rt, 0);
    return t;
}

/*
 * A task that finished, and whose last reference is gone: freed (on a
 * runtime of its own, as the child process ends with the mistake).
 */
static pd_task *freed_task(void)
{
    pd_runtime *rt;
    pd_task *t;

    pd_runtime_new(&rt, NULL);
    t = ready_now_spawn(rt);
    pd_run(rt);
    pd_task_release(t);
    return t;
}

static void double_release(void)
{
    pd_runtime *rt;
    pd_task *t;

    pd_runtime_new(&rt, NULL);
    t = reading_task(rt);
    pd_task_release(t);
    pd_task_release(t);
}

START_TEST(release_twice)
{
    pd_test_expect_abort(double_release, "polldrop checked build: pipe_read (state "
                         "running): pd_task_release twice: the caller's reference was "
                         "already released");
}
END_TEST

static void release_freed(void)
{
    pd_task_release(freed_task());
}

START_TEST(release_after_the_last_release)
{
    pd_test_expect_abort(release_freed, "polldrop checked build: ready_now (state freed): "
                         "pd_task_release on a task already freed (released twice, or "
                         "used after its last pd_task_release)");
}
END_TEST

static void use_freed(void)
{
    (void)pd_task_state(freed_task());
}

START_TEST(use_after_the_last_release)
{
    pd_test_expect_abort(use_freed, "polldrop checked build: ready_now (state freed): "
                         "pd_task_state on a task already freed");
}
END_TEST

static void cancel_freed(void)
{
    pd_task_cancel(freed_task());
}

START_TEST(cancel_after_release)
{
    pd_test_expect_abort(cancel_freed, "polldrop checked build: ready_now (state freed): "
                         "pd_task_cancel on a task already freed");
}
END_TEST

/* Freed with its runtime: the reference the caller kept is dead too. */
static void use_after_runtime_free(void)
{
    pd_runtime *rt;
    pd_task *t;

    pd_runtime_new(&rt, NULL);
    t = reading_task(rt);
    pd_runtime_free(rt);
    pd_task_cancel(t);
}

START_TEST(cancel_after_the_runtime_is_freed)
{
    pd_test_expect_abort(use_after_runtime_free, "polldrop checked build: pipe_read "
                         "(state freed): pd_task_cancel on a task already freed");
}
END_TEST

/* A cx of a task that is never started: enough to poll a future by hand. */
static void poll_ready_twice(void)
{
    pd_runtime *rt;
    pd_task *host;
    void *mem;
    ready_now f;
    int out;

    pd_runtime_new(&rt, NULL);
    host = pd_task_new(rt, &ready_now_vtable, &mem);
    pd_cx cx = { rt, host, NULL };
    ready_now_init(&f);
    ready_now_poll(&f, &cx, &out);
    ready_now_poll(&f, &cx, &out);
}

START_TEST(poll_after_ready)
{
    pd_test_expect_abort(poll_ready_twice, "polldrop checked build: ready_now (state "
                         "ready): F_poll after it returned Ready");
}
END_TEST

static void poll_after_drop(void)
{
    pd_runtime *rt;
    pd_task *host;
    void *mem;
    ready_now f;
    int out;

    pd_runtime_new(&rt, NULL);
    host = pd_task_new(rt, &ready_now_vtable, &mem);
    pd_cx cx = { rt, host, NULL };
    ready_now_init(&f);
    ready_now_drop(&f);
    ready_now_poll(&f, &cx, &out);
}

START_TEST(poll_after_destruction)
{
    pd_test_expect_abort(poll_after_drop, "polldrop checked build: ready_now (state "
                         "ready): F_poll after its destruction (F_init it again first)");
}
END_TEST

/* The case: pd_block_on twice on the same struct. */
static void block_on_twice(void)
{
    pd_runtime *rt;
    ready_now f;
    int out;

    pd_runtime_new(&rt, NULL);
    ready_now_init(&f);
    pd_block_on(rt, ready_now_dyn(&f), &out);
    pd_block_on(rt, ready_now_dyn(&f), &out);
}

START_TEST(block_on_a_destroyed_future)
{
    pd_test_expect_abort(block_on_twice, "polldrop checked build: ready_now (state "
                         "ready): F_poll after its destruction");
}
END_TEST

static void init_twice(void)
{
    ready_now f;

    ready_now_init(&f);
    ready_now_init(&f);
}

START_TEST(init_on_a_live_future)
{
    pd_test_expect_abort(init_twice, "polldrop checked build: ready_now (state live): "
                         "F_init (or F_block_on, START, await) on a future that is still "
                         "live");
}
END_TEST

static void *run_elsewhere(void *rt)
{
    pd_run_once(rt, 0);
    return NULL;
}

static void other_thread(void)
{
    pd_runtime *rt;
    pthread_t th;

    pd_runtime_new(&rt, NULL);
    pthread_create(&th, NULL, run_elsewhere, rt);
    pthread_join(th, NULL);
}

START_TEST(runtime_driven_from_another_thread)
{
    pd_test_expect_abort(other_thread, "polldrop checked build: runtime (state -): "
                         "running its loop (pd_run, pd_run_once, pd_block_on) from a "
                         "thread other than the runtime's owner");
}
END_TEST

/*
 * Starting destruction twice: a new destruction of a future whose
 * destruction completed. A pipe_read on the stack, polled once by hand
 * (its read in flight), destroyed one way, then again.
 */
static pd_runtime *dd_rt;
static pd_task *dd_host;
static int dd_pipe[2];

static void armed_read(pipe_read *f)
{
    void *mem;
    pd_cx cx;

    pd_runtime_new(&dd_rt, NULL);
    dd_host = pd_task_new(dd_rt, &pipe_read_vtable, &mem);
    if (pipe2(dd_pipe, O_CLOEXEC) < 0)
        return;
    cx = (pd_cx){ dd_rt, dd_host, NULL };
    pipe_read_init(f, dd_pipe[0], -1);
    pipe_read_poll(f, &cx, NULL);
}

/* One F_poll_drop, as a task's runtime would call it. */
static pd_poll poll_drop_once(pipe_read *f)
{
    pd_cx cx = { dd_rt, dd_host, NULL };

    return pipe_read_poll_drop(f, &cx);
}

/*
 * F_poll_drop until Ready. The runtime is driven by halves, whose reaps
 * only queue the host: a whole turn would poll it in place, and the host's
 * own storage holds no future.
 */
static void poll_drop_to_end(pipe_read *f)
{
    while (poll_drop_once(f) == PD_PENDING) {
        pd__run_polls(dd_rt);
        pd__run_enter(dd_rt, 1);
    }
}

static void drop_drop(void)
{
    pipe_read f;

    armed_read(&f);
    pipe_read_drop(&f);
    pipe_read_drop(&f);
}

static void drop_poll_drop(void)
{
    pipe_read f;

    armed_read(&f);
    pipe_read_drop(&f);
    poll_drop_once(&f);
}

static void poll_drop_poll_drop(void)
{
    pipe_read f;

    armed_read(&f);
    poll_drop_to_end(&f);
    poll_drop_once(&f);
}

static void poll_drop_drop(void)
{
    pipe_read f;

    armed_read(&f);
    poll_drop_to_end(&f);
    pipe_read_drop(&f);
}

START_TEST(drop_after_drop)
{
    pd_test_expect_abort(drop_drop, "polldrop checked build: pipe_read (state read): "
                         "F_drop on a future already destroyed (F_drop returned, or "
                         "F_poll_drop returned Ready): destruction happens once");
}
END_TEST

START_TEST(poll_drop_after_drop)
{
    pd_test_expect_abort(drop_poll_drop, "polldrop checked build: pipe_read (state "
                         "read): F_poll_drop on a future already destroyed (F_drop "
                         "returned, or F_poll_drop returned Ready): destruction happens "
                         "once");
}
END_TEST

START_TEST(poll_drop_after_poll_drop_completed)
{
    /* Its async drop ran teardown: the state is the teardown's. */
    pd_test_expect_abort(poll_drop_poll_drop, "polldrop checked build: pipe_read (state "
                         "bye): F_poll_drop on a future already destroyed");
}
END_TEST

START_TEST(drop_after_poll_drop_completed)
{
    pd_test_expect_abort(poll_drop_drop, "polldrop checked build: pipe_read (state "
                         "bye): F_drop on a future already destroyed");
}
END_TEST

/*
 * Not mistakes: F_poll_drop called again while it is Pending (that is how
 * it progresses), and F_drop in the middle of an async drop (escalation),
 * which completes the destruction once.
 */
START_TEST(escalation_is_fine)
{
    pd_runtime *rt = pd_test_rt();
    int p[2];
    pd_task *t;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_test_rec_start();
    t = pipe_read_spawn(rt, p[0], -1);
    ck_assert_int_ge(pd_run_once(rt, 0), 0); /* the read is in flight */
    pd_task_cancel(t);
    ck_assert_int_ge(pd_run_once(rt, 0), 0); /* F_poll_drop: Pending */
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DROPPING);
    pd__task_drop_sync(t); /* F_drop on the future mid async drop */
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 1);
    ck_assert_int_eq(pd_run(rt), 0);
    pd_test_quiet(rt);
    pd_task_release(t);
    pd_runtime_free(rt);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 1);
    pd_set_trace(NULL, NULL);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* And what is not a mistake: cancelling a released task that still runs. */
START_TEST(cancel_of_a_released_live_task_is_fine)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t = reading_task(rt);

    pd_task_release(t);
    pd_task_cancel(t); /* alive: the runtime holds it while its future lives */
    ck_assert_int_eq(pd_run(rt), 0);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_misuse(void)
{
    Suite *s = suite_create("misuse caught by the checked build");
    TCase *tc = tcase_create("misuse");

    tcase_add_test(tc, release_twice);
    tcase_add_test(tc, release_after_the_last_release);
    tcase_add_test(tc, use_after_the_last_release);
    tcase_add_test(tc, cancel_after_release);
    tcase_add_test(tc, cancel_after_the_runtime_is_freed);
    tcase_add_test(tc, poll_after_ready);
    tcase_add_test(tc, poll_after_destruction);
    tcase_add_test(tc, block_on_a_destroyed_future);
    tcase_add_test(tc, init_on_a_live_future);
    tcase_add_test(tc, runtime_driven_from_another_thread);
    tcase_add_test(tc, cancel_of_a_released_live_task_is_fine);
    tcase_add_test(tc, drop_after_drop);
    tcase_add_test(tc, poll_drop_after_drop);
    tcase_add_test(tc, poll_drop_after_poll_drop_completed);
    tcase_add_test(tc, drop_after_poll_drop_completed);
    tcase_add_test(tc, escalation_is_fine);
    suite_add_tcase(s, tc);
    return s;
}

#endif /* PD_CHECKED */
