/*
 * pd_join: a future awaits a task it spawned, and cancels it (awaiting its
 * async drop) when it is itself destroyed (tests/specs/join_task.yaml).
 */
#include <fcntl.h>
#include <unistd.h>

#include "harness.h"
#include "join_task.h"
#include "join_timeout.h"
#include "testutil.h"

struct jt_fix {
    int p[2], bye[2];
};

static void jt_open(struct jt_fix *f)
{
    ck_assert_int_eq(pipe2(f->p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(pipe2(f->bye, O_CLOEXEC | O_NONBLOCK), 0);
}

static void jt_close(struct jt_fix *f)
{
    close(f->p[0]);
    close(f->p[1]);
    close(f->bye[0]);
    close(f->bye[1]);
}

static int jt_byes(struct jt_fix *f)
{
    char buf[16];
    ssize_t n = read(f->bye[0], buf, sizeof(buf));

    return n > 0 ? (int)n / 3 : 0;
}


START_TEST(join_handle_passes_the_tasks_output)
{
    struct jt_fix f;
    pd_runtime *rt = pd_test_rt();
    long out = 0, before;

    jt_open(&f);
    pd_test_write(f.p[1], "hello", 5);
    before = pd_test_allocs;
    PD_CHECK(join_task_block_on(rt, f.p[0], f.bye[1], &out) == 0);
    /* The spawned task is the one allocation. */
    PD_CHECK(pd_test_allocs - before == 1);
    ck_assert_int_eq(out, 5);
    ck_assert_int_eq(jt_byes(&f), 1); /* the task was async-dropped */
    pd_test_quiet(rt);
    jt_close(&f);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(cancelling_the_waiter_cancels_the_task)
{
    struct jt_fix f;
    pd_runtime *rt = pd_test_rt();
    pd_task *t;
    char buf[8];

    jt_open(&f);
    pd_test_rec_start();
    t = join_task_spawn(rt, f.p[0], f.bye[1]);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 2); /* the waiter and its task */
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    /* The task's async drop ran (its goodbye), before the waiter's end. */
    ck_assert_int_eq(jt_byes(&f), 1);
    ck_assert_int_lt(pd_test_rec_find("pipe_read", PD_TRACE_DROP, 0),
                     pd_test_rec_find("join_task", PD_TRACE_DROP, 0));
    /* Cancelled means cancelled: the read took nothing. */
    pd_test_write(f.p[1], "late", 4);
    ck_assert_int_eq(read(f.p[0], buf, sizeof(buf)), 4);
    pd_task_release(t);
    pd_test_quiet(rt);
    jt_close(&f);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(sync_drop_of_the_waiter_sync_drops_the_task)
{
    struct jt_fix f;
    pd_runtime *rt = pd_test_rt();
    pd_task *t;
    void *mem;

    jt_open(&f);
    pd_test_rec_start();
    t = pd_task_new(rt, &join_task_vtable, &mem);
    ck_assert_ptr_nonnull(t);
    join_task_init(mem, f.p[0], f.bye[1]);
    pd_task_start(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 2);
    pd__task_drop_sync(t); /* join_task_drop on the task's future */
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 1);
    ck_assert_int_eq(jt_byes(&f), 0); /* no teardown on a sync drop */
    pd_task_release(t);
    pd_runtime_free(rt);
    jt_close(&f);
}
END_TEST

START_TEST(a_failed_spawn_is_enomem)
{
    pd_runtime *rt = pd_test_rt();
    pd_join j;
    int out = 0;

    pd_join_init(&j, NULL, NULL);
    ck_assert_int_eq(pd_block_on(rt, (pd_dyn){ &j, &pd_join_vtable }, &out), 0);
    ck_assert_int_eq(out, -ENOMEM);
    pd_runtime_free(rt);
}
END_TEST

/* --- the harness --- */

struct jt_ctx {
    struct jt_fix f;
    int fed;
};

static void jt_setup(void *v)
{
    struct jt_ctx *c = v;

    jt_open(&c->f);
    c->fed = 0;
}

static void jt_init(void *self, void *v)
{
    struct jt_ctx *c = v;

    join_task_init(self, c->f.p[0], c->f.bye[1]);
}

static void jt_progress(void *v, int when)
{
    struct jt_ctx *c = v;
    char sink[16];

    if (when == PD_HARNESS_WAITING && c->fed++ == 0)
        pd_test_write(c->f.p[1], "abc", 3);
    while (read(c->f.bye[0], sink, sizeof(sink)) > 0)
        ;
}

static void jt_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const long *)out, 3);
}

static void jt_cleanup(void *v)
{
    struct jt_ctx *c = v;

    jt_close(&c->f);
}

static struct jt_ctx jt_c;

START_TEST(join_task_cancel_points)
{
    static const pd_harness_case c = { "join_task", &join_task_vtable, 0, &jt_c, jt_setup,
                                       jt_init, jt_progress, jt_after, jt_cleanup };
    pd_harness_stats st;

    pd_harness_run_spawning(&c, 1, &st);
    ck_assert_int_ge(st.points, 1);
}
END_TEST

/*
 * The same, under a one-hour deadline: while the future waits for its
 * task, the task is runnable, and the harness must poll it rather than
 * wait for the kernel, where only the far timer is in flight (it waited
 * for that timer at every point, and for good once the task's read was
 * in flight and the task had been cancelled). No duration is asserted:
 * a harness that waited would hold the test until its timeout.
 */
static void jto_init(void *self, void *v)
{
    struct jt_ctx *c = v;

    join_timeout_init(self, c->f.p[0], c->f.bye[1], 3600LL * 1000);
}

START_TEST(join_timeout_cancel_points)
{
    static const pd_harness_case c = { "join_timeout", &join_timeout_vtable, 0, &jt_c,
                                       jt_setup, jto_init, jt_progress, jt_after,
                                       jt_cleanup };
    pd_harness_stats st;

    pd_harness_run_spawning(&c, 1, &st);
    ck_assert_int_ge(st.points, 1);
    /* Each kernel state was reached at some point. */
    ck_assert_int_gt(st.completed, 0);
    ck_assert_int_gt(st.queued, 0);
}
END_TEST

Suite *pd_suite_join_task(void)
{
    Suite *s = suite_create("join handles on spawned tasks");
    TCase *tc = tcase_create("pd_join"), *h;

    tcase_add_test(tc, join_handle_passes_the_tasks_output);
    tcase_add_test(tc, cancelling_the_waiter_cancels_the_task);
    tcase_add_test(tc, sync_drop_of_the_waiter_sync_drops_the_task);
    tcase_add_test(tc, a_failed_spawn_is_enomem);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    /* The cancel-point tests: make explore runs them under the simulator. */
    h = tcase_create("pd_join cancel points, under a far deadline too");
    tcase_set_tags(h, "harness");
    tcase_add_test(h, join_task_cancel_points);
    tcase_add_test(h, join_timeout_cancel_points);
    tcase_set_timeout(h, 120);
    suite_add_tcase(s, h);
    return s;
}
