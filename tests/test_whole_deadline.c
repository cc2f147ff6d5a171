/*
 * timeout_ms over a whole await, join or select: one deadline, every
 * branch cancelled and quiesced when it fires, then `then` with timed_out.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "await_deadline.h"
#include "harness.h"
#include "join_deadline.h"
#include "select_deadline.h"
#include "testutil.h"

/* A deadline no test reaches, and one that fires at once for a test. */
#define PD_FAR_MS 600000L
#define PD_NEAR_MS 2L

/* --- join --- */

START_TEST(join_done_before_the_deadline_cancels_the_timer)
{
    pd_runtime *rt = pd_test_rt();
    pd_test_pipe p = pd_test_pipe_open();
    long out = 0;
    pd_stats s;

    pd_test_write(p.w, "hi", 2);
    ck_assert_int_eq(join_deadline_block_on(rt, p.r, 1, PD_FAR_MS, &out), 0);
    ck_assert_int_eq(out, 2);
    /* The timer was cancelled (not waited for) once both branches were done. */
    pd_runtime_stats(rt, &s);
    ck_assert_uint_ge(s.cancels_submitted, 1);
    pd_test_pipe_close(p);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(join_deadline_cancels_and_quiesces_every_branch)
{
    pd_runtime *rt = pd_test_rt();
    pd_test_pipe p = pd_test_pipe_open();
    long out = 0;

    pd_test_rec_start();
    ck_assert_int_eq(join_deadline_block_on(rt, p.r, PD_FAR_MS, PD_NEAR_MS, &out), 0);
    ck_assert_int_eq(out, -ETIMEDOUT);
    /* The nap was async-dropped exactly once before then ran. */
    ck_assert_int_eq(pd_test_rec_count("sleep_ms", PD_TRACE_INIT), 1);
    ck_assert_int_eq(pd_test_rec_count("sleep_ms", PD_TRACE_DROP), 1);
    ck_assert_int_eq(pd_rec.stray_drop, 0);
    /* The cancelled read took nothing: what comes later is all there. */
    pd_test_nothing_taken(p.r, p.w);
    pd_test_pipe_close(p);
    pd_test_rt_done(rt);
}
END_TEST

/* One branch finished, the other not: still timed out, still quiesced. */
START_TEST(join_deadline_with_one_branch_done)
{
    pd_runtime *rt = pd_test_rt();
    pd_test_pipe p = pd_test_pipe_open();
    long out = 0;

    pd_test_write(p.w, "abc", 3);
    pd_test_rec_start();
    ck_assert_int_eq(join_deadline_block_on(rt, p.r, PD_FAR_MS, PD_NEAR_MS, &out), 0);
    ck_assert_int_eq(out, -ETIMEDOUT);
    ck_assert_int_eq(pd_test_rec_count("sleep_ms", PD_TRACE_DROP), 1);
    pd_test_pipe_close(p);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(join_deadline_allocates_nothing)
{
    pd_runtime *rt = pd_test_rt();
    pd_test_pipe p = pd_test_pipe_open();
    long out = 0, before;
    join_deadline f;

    join_deadline_init(&f, p.r, PD_FAR_MS, PD_NEAR_MS);
    before = pd_test_allocs;
    PD_CHECK(pd_block_on(rt, join_deadline_dyn(&f), &out) == 0);
    PD_CHECK(pd_test_allocs == before);
    ck_assert_int_eq(out, -ETIMEDOUT);
    pd_test_pipe_close(p);
    pd_runtime_free(rt);
}
END_TEST

/* --- select --- */

START_TEST(select_branch_wins_before_the_deadline)
{
    pd_runtime *rt = pd_test_rt();
    pd_test_pipe p = pd_test_pipe_open();
    long out = 0;

    pd_test_write(p.w, "abcd", 4);
    ck_assert_int_eq(select_deadline_block_on(rt, p.r, PD_FAR_MS, PD_FAR_MS, &out), 0);
    ck_assert_int_eq(out, 1004);
    ck_assert_int_eq(select_deadline_block_on(rt, p.r, 1, PD_FAR_MS, &out), 0);
    ck_assert_int_eq(out, 2);
    pd_test_pipe_close(p);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(select_deadline_runs_the_states_then)
{
    pd_runtime *rt = pd_test_rt();
    pd_test_pipe p = pd_test_pipe_open();
    long out = 0;

    pd_test_rec_start();
    ck_assert_int_eq(select_deadline_block_on(rt, p.r, PD_FAR_MS, PD_NEAR_MS, &out), 0);
    ck_assert_int_eq(out, -ETIMEDOUT);
    ck_assert_int_eq(pd_test_rec_count("sleep_ms", PD_TRACE_DROP), 1);
    pd_test_nothing_taken(p.r, p.w);
    pd_test_pipe_close(p);
    pd_test_rt_done(rt);
}
END_TEST

/* --- await --- */

START_TEST(await_deadline_drops_the_child_with_its_teardown)
{
    pd_runtime *rt = pd_test_rt();
    pd_test_pipe p = pd_test_pipe_open();
    char path[64], buf[16];
    long out = 0;
    int fds = pd_test_fd_count();

    snprintf(path, sizeof(path), "/proc/self/fd/%d", p.r);
    pd_test_rec_start();
    ck_assert_int_eq(await_deadline_block_on(rt, path, buf, sizeof(buf), PD_NEAR_MS, &out),
                     0);
    ck_assert_int_eq(out, -ETIMEDOUT);
    /* read_file's teardown ran (it closes its fd through io_uring). */
    ck_assert_int_eq(pd_test_rec_count("read_file", PD_TRACE_TEARDOWN), 1);
    ck_assert_int_eq(pd_test_rec_count("read_file", PD_TRACE_DROP), 1);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_test_pipe_close(p);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(await_deadline_passes_the_output_through)
{
    pd_runtime *rt = pd_test_rt();
    char path[128], buf[64];
    long out = 0;

    pd_test_tmp_path(path, sizeof(path), "awdl");
    pd_test_make_file(path, 40, 3);
    ck_assert_int_eq(await_deadline_block_on(rt, path, buf, sizeof(buf), PD_FAR_MS, &out),
                     0);
    ck_assert_int_eq(out, 40);
    unlink(path);
    pd_test_rt_done(rt);
}
END_TEST

/* --- the harness: deadlines that fire while the harness waits --- */

struct dl_ctx {
    pd_test_pipe p;
    char path[64];
    char buf[16];
};

static void dl_setup(void *v)
{
    struct dl_ctx *c = v;

    c->p = pd_test_pipe_open();
    snprintf(c->path, sizeof(c->path), "/proc/self/fd/%d", c->p.r);
}

static void dl_cleanup(void *v)
{
    struct dl_ctx *c = v;

    pd_test_pipe_close(c->p);
}

static void jd_init(void *self, void *v)
{
    struct dl_ctx *c = v;

    join_deadline_init(self, c->p.r, PD_FAR_MS, PD_NEAR_MS);
}

static void sd_init(void *self, void *v)
{
    struct dl_ctx *c = v;

    select_deadline_init(self, c->p.r, PD_FAR_MS, PD_NEAR_MS);
}

static void ad_init(void *self, void *v)
{
    struct dl_ctx *c = v;

    await_deadline_init(self, c->path, c->buf, sizeof(c->buf), PD_NEAR_MS);
}

/* Completed means timed out: the pipe never has data. */
static void dl_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const long *)out, -ETIMEDOUT);
}

static struct dl_ctx jd_c, sd_c, ad_c;

static const struct {
    const char *label;
    pd_harness_case c;
} dl_cases[] = {
    { "join_deadline", { "join_deadline", &join_deadline_vtable, 0, &jd_c, dl_setup,
                         jd_init, NULL, dl_after, dl_cleanup } },
    { "select_deadline", { "select_deadline", &select_deadline_vtable, 0, &sd_c, dl_setup,
                           sd_init, NULL, dl_after, dl_cleanup } },
    { "await_deadline", { "await_deadline", &await_deadline_vtable, 0, &ad_c, dl_setup,
                          ad_init, NULL, dl_after, dl_cleanup } },
};

START_TEST(deadline_cancel_points)
{
    pd_harness_stats st;

    pd_harness_run(&dl_cases[_i].c, &st);
    ck_assert_int_ge(st.points, 1);
}
END_TEST

Suite *pd_suite_whole_deadline(void)
{
    Suite *s = suite_create("timeout_ms over a whole await, join or select");
    TCase *tc = tcase_create("deadlines");
    TCase *h = tcase_create("cancel points");

    tcase_add_test(tc, join_done_before_the_deadline_cancels_the_timer);
    tcase_add_test(tc, join_deadline_cancels_and_quiesces_every_branch);
    tcase_add_test(tc, join_deadline_with_one_branch_done);
    tcase_add_test(tc, join_deadline_allocates_nothing);
    tcase_add_test(tc, select_branch_wins_before_the_deadline);
    tcase_add_test(tc, select_deadline_runs_the_states_then);
    tcase_add_test(tc, await_deadline_drops_the_child_with_its_teardown);
    tcase_add_test(tc, await_deadline_passes_the_output_through);
    suite_add_tcase(s, tc);
    tcase_add_loop_test(h, deadline_cancel_points, 0,
                        (int)(sizeof(dl_cases) / sizeof(dl_cases[0])));
    tcase_set_timeout(h, 120);
    /* The cancel-point tests: make explore runs them under the simulator. */
    tcase_set_tags(h, "harness");
    suite_add_tcase(s, h);
    return s;
}
