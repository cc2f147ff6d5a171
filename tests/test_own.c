/*
 * Owned resources, why teardown runs, detached tasks (docs/spec-language.md,
 * "Owned resources", "Why teardown runs" and "Detached tasks"): owns: fd
 * and owns: file release what the future holds on every destruction path,
 * CANCELLED() tells a destruction before RETURN from one after, SPAWN
 * starts a task the runtime owns. Each spec is also run through the
 * harness, destroyed at every suspension point by every path, which
 * counts descriptors before and after.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "own_close.h"
#include "own_commit.h"
#include "own_fd.h"
#include "own_file.h"
#include "own_kid.h"
#include "spawn_big.h"
#include "spawner.h"
#include "testutil.h"
#include "why_td.h"

/* Whether fd is an open descriptor of this process. */
static int is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static int file_exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* Runs rt until t is destroyed. */
static void run_until_destroyed(pd_runtime *rt, pd_task *t)
{
    (void)rt;
    ck_assert_int_ge(pd_task_wait(t), 0);
    ck_assert_int_ge(pd_task_state(t), PD_TASK_DONE);
}

/* Runs rt until t has suspended with its work in flight. */
static void run_until_waiting(pd_runtime *rt, int turns)
{
    for (int i = 0; i < turns; i++)
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
}

/*
 * Runs rt until the future has created path: each turn waits for a
 * completion, and the open's is the first, so this cannot wait for the
 * read that follows it.
 */
static void run_until_created(pd_runtime *rt, const char *path)
{
    for (int i = 0; i < 100 && !file_exists(path); i++)
        ck_assert_int_ge(pd_run_once(rt, 1), 0);
    ck_assert(file_exists(path));
}

/* --- owns: fd --- */

START_TEST(owned_fd_closed_after_return)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    int p[2];
    int out = -1;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_test_write(p[1], "abc", 3);
    close(p[1]);
    ck_assert_int_eq(own_fd_block_on(rt, p[0], &out), 0);
    ck_assert_int_eq(out, 3);
    /* Nobody closed p[0] by hand: the future owned it. */
    ck_assert(!is_open(p[0]));
    ck_assert_int_eq(pd_test_fd_count(), before + pd_test_rt_fds(rt));
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(owned_fd_closed_on_cancel)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    int p[2];
    pd_task *t;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    t = own_fd_spawn(rt, p[0]);
    ck_assert_ptr_nonnull(t);
    run_until_waiting(rt, 4); /* null_fd open, the read in flight */
    pd_task_cancel(t);
    run_until_destroyed(rt, t);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    pd_task_release(t);
    ck_assert(!is_open(p[0]));
    close(p[1]);
    ck_assert_int_eq(pd_test_fd_count(), before + pd_test_rt_fds(rt));
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(owned_fd_closed_by_sync_drop)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    int p[2];
    own_fd f;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    own_fd_init(&f, p[0]);
    own_fd_drop(&f);
    ck_assert(!is_open(p[0]));
    close(p[1]);
    ck_assert_int_eq(pd_test_fd_count(), before + pd_test_rt_fds(rt));
    pd_test_rt_done(rt);
}
END_TEST

/*
 * A close of the owned field in a state forgets it: the number, reused by
 * the open that follows, is not closed again by the destruction.
 */
START_TEST(close_of_owned_fd_forgets_it)
{
    pd_runtime *rt = pd_test_rt();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = -1;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(own_close_block_on(rt, fd, &out), 0);
    ck_assert_int_eq(out, fd); /* the lowest free number: fd's */
    ck_assert(is_open(out));
    close(out);
    pd_test_rt_done(rt);
}
END_TEST

/* --- owns: file --- */

START_TEST(owned_file_kept_after_keep)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    char path[128];
    int p[2];
    long out = 0;

    pd_test_tmp_path(path, sizeof(path), "own_keep");
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_test_write(p[1], "hello", 5);
    close(p[1]);
    ck_assert_int_eq(own_file_block_on(rt, path, p[0], &out), 0);
    ck_assert_int_eq(out, 5);
    ck_assert(file_exists(path));
    ck_assert_int_eq(pd_test_fd_count(), before + pd_test_rt_fds(rt));
    unlink(path);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(owned_file_removed_on_cancel)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    char path[128];
    int p[2];
    pd_task *t;

    pd_test_tmp_path(path, sizeof(path), "own_cancel");
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_test_write(p[1], "half", 4);
    t = own_file_spawn(rt, path, p[0]);
    ck_assert_ptr_nonnull(t);
    run_until_created(rt, path);
    pd_task_cancel(t);
    run_until_destroyed(rt, t);
    pd_task_release(t);
    ck_assert(!file_exists(path)); /* no half-written file */
    close(p[1]);
    ck_assert_int_eq(pd_test_fd_count(), before + pd_test_rt_fds(rt));
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(owned_file_removed_by_sync_drop)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    char path[128];
    int p[2];
    pd_task *t;

    pd_test_tmp_path(path, sizeof(path), "own_sync");
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    t = own_file_spawn(rt, path, p[0]);
    ck_assert_ptr_nonnull(t);
    run_until_created(rt, path);
    /* The runtime's free sync-drops the live task. */
    pd_task_release(t);
    pd_runtime_free(rt);
    ck_assert(!file_exists(path));
    close(p[1]);
    ck_assert_int_eq(pd_test_fd_count(), before);
}
END_TEST

/* An open that failed made no file of the future's: an existing one stays. */
START_TEST(owned_file_not_made_is_not_removed)
{
    pd_runtime *rt = pd_test_rt();
    char path[128];
    int p[2];
    long out = 0;

    pd_test_tmp_path(path, sizeof(path), "own_exists");
    ck_assert_int_eq(pd_test_make_file(path, 10, 1), 0);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(own_file_block_on(rt, path, p[0], &out), 0);
    ck_assert_int_eq(out, -EEXIST);
    ck_assert(file_exists(path));
    unlink(path);
    close(p[1]);
    pd_test_rt_done(rt);
}
END_TEST

/* A rename of the owned file away (a commit) ends its ownership. */
START_TEST(owned_file_renamed_is_no_longer_owned)
{
    pd_runtime *rt = pd_test_rt();
    char tmp[128], dst[128];
    int out = -1;

    pd_test_tmp_path(tmp, sizeof(tmp), "own_tmp");
    pd_test_tmp_path(dst, sizeof(dst), "own_dst");
    ck_assert_int_eq(own_commit_block_on(rt, tmp, dst, &out), 0);
    ck_assert_int_eq(out, 0);
    ck_assert(file_exists(dst));
    ck_assert(file_exists(tmp)); /* made again by open(2): not the future's */
    unlink(tmp);
    unlink(dst);
    pd_test_rt_done(rt);
}
END_TEST

/* --- CANCELLED() --- */

START_TEST(cancelled_is_false_after_return)
{
    pd_runtime *rt = pd_test_rt();
    int p[2], log[2] = { 0, 0 }, out = 0;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_test_write(p[1], "x", 1);
    ck_assert_int_eq(why_td_block_on(rt, p[0], log, &out), 0);
    ck_assert_int_eq(out, 1);
    ck_assert_int_eq(log[0], 0); /* no goodbye after RETURN */
    ck_assert_int_eq(log[1], 2);
    close(p[0]);
    close(p[1]);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(cancelled_is_true_when_cancelled)
{
    pd_runtime *rt = pd_test_rt();
    int p[2], log[2] = { 0, 0 };
    pd_task *t;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    t = why_td_spawn(rt, p[0], log);
    ck_assert_ptr_nonnull(t);
    run_until_waiting(rt, 2);
    pd_task_cancel(t);
    run_until_destroyed(rt, t);
    pd_task_release(t);
    ck_assert_int_eq(log[0], 1);
    ck_assert_int_eq(log[1], 1);
    close(p[0]);
    close(p[1]);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(cancelled_is_true_in_a_sync_drop_before_return)
{
    int p[2], log[2] = { 0, 0 };
    why_td f;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    why_td_init(&f, p[0], log);
    why_td_drop(&f);
    ck_assert_int_eq(log[0], 0); /* no teardown on a sync drop */
    ck_assert_int_eq(log[1], 1);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* --- SPAWN --- */

START_TEST(spawned_tasks_belong_to_the_runtime)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    int ctl[2], hold[2];
    int out = -1;
    pd_stats s;

    ck_assert_int_eq(pipe2(ctl, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
    pd_test_write(ctl[1], "abc", 3);
    close(ctl[1]);
    pd_test_rec_start();
    ck_assert_int_eq(spawner_block_on(rt, ctl[0], hold[0], true, &out), 0);
    ck_assert_int_eq(out, 3);
    /* The kids run on, detached: the runtime holds them. */
    pd_runtime_stats(rt, &s);
    ck_assert_int_eq(s.live_tasks, 3);
    ck_assert_int_eq(pd_shutdown(rt), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_int_eq(s.live_tasks, 0);
    ck_assert_int_eq(pd_test_rec_count("own_kid", PD_TRACE_DROP), 3);
    close(ctl[0]);
    close(hold[0]);
    close(hold[1]);
    pd_test_rt_done(rt);
    /* Every kid's descriptor was closed (owns: fd): nothing leaked. */
    ck_assert_int_eq(pd_test_fd_count(), before);
}
END_TEST

START_TEST(spawned_task_that_ends_is_freed)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    int ctl[2], hold[2];
    int out = -1;
    pd_stats s;

    ck_assert_int_eq(pipe2(ctl, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
    pd_test_write(ctl[1], "a", 1);
    close(ctl[1]);
    ck_assert_int_eq(spawner_block_on(rt, ctl[0], hold[0], true, &out), 0);
    ck_assert_int_eq(out, 1);
    close(hold[1]); /* the kid's read ends */
    ck_assert_int_eq(pd_run(rt), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_int_eq(s.live_tasks, 0);
    close(ctl[0]);
    close(hold[0]);
    pd_test_rt_done(rt);
    ck_assert_int_eq(pd_test_fd_count(), before);
}
END_TEST

/*
 * A spawn that cannot allocate its task closes the descriptor given to the
 * owned param. The task is too large for any allocator; ASan aborts on such
 * a request instead of failing it, so the sanitized build skips this case.
 */
START_TEST(failed_spawn_closes_owned_fd)
{
#if defined(__SANITIZE_ADDRESS__)
    return;
#else
    pd_runtime *rt = pd_test_rt();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = -1;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(spawn_big_block_on(rt, fd, &out), 0);
    ck_assert_int_eq(out, 0); /* not started */
    ck_assert(!is_open(fd));
    pd_test_rt_done(rt);
#endif
}
END_TEST

/* --- every suspension point, every path (the harness counts fds) --- */

struct own_ctx {
    int p[2];
    int fed;
    char path[128];
    char dst[160];
    int log[2];
};

static struct own_ctx oc;

static void own_setup(void *v)
{
    struct own_ctx *c = v;

    /* A write after the future closed the read end fails with EPIPE. */
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(pipe2(c->p, O_CLOEXEC | O_NONBLOCK), 0);
    c->fed = 0;
    c->log[0] = c->log[1] = 0;
    pd_test_tmp_path(c->path, sizeof(c->path), "own_h");
}

/* Data only when the harness is about to block: the read is in flight at every point. */
static void own_progress(void *v, int when)
{
    struct own_ctx *c = v;

    if (when != PD_HARNESS_WAITING || c->p[1] < 0)
        return;
    if (c->fed++ < 2) {
        (void)!write(c->p[1], "data", 4);
    } else {
        close(c->p[1]);
        c->p[1] = -1;
    }
}

/* The read end was given to the future (owns: fd): only the write end is the fixture's. */
static void own_cleanup(void *v)
{
    struct own_ctx *c = v;

    if (c->p[1] >= 0)
        close(c->p[1]);
}

static void ofd_init(void *self, void *v)
{
    own_fd_init(self, ((struct own_ctx *)v)->p[0]);
}

static void ofile_init(void *self, void *v)
{
    struct own_ctx *c = v;

    own_file_init(self, c->path, c->p[0]);
}

/*
 * Kept when it completed; otherwise no half-written file. A future that
 * returned may be destroyed by a path that reports no output (a runtime
 * freed during its async drop): a file left must then be whole.
 */
static void ofile_after(void *v, const void *out)
{
    struct own_ctx *c = v;
    char buf[16];
    ssize_t n = -1;
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        n = read(fd, buf, sizeof(buf));
        close(fd);
        unlink(c->path);
    }
    if (out != NULL && *(const long *)out >= 0)
        ck_assert_int_eq(n, 8);
    else
        ck_assert_msg(fd < 0 || (n == 8 && memcmp(buf, "datadata", 8) == 0),
                      "a half-written file was left (%zd bytes)", n);
}

static void oclose_setup(void *v)
{
    struct own_ctx *c = v;

    c->p[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(c->p[0], 0);
    c->p[1] = -1;
}

static void oclose_init(void *self, void *v)
{
    own_close_init(self, ((struct own_ctx *)v)->p[0]);
}

/* The descriptor it returned is the caller's. */
static void oclose_after(void *v, const void *out)
{
    (void)v;
    if (out != NULL && *(const int *)out >= 0) {
        ck_assert(is_open(*(const int *)out));
        close(*(const int *)out);
    }
}

static void ocommit_setup(void *v)
{
    struct own_ctx *c = v;

    c->p[0] = c->p[1] = -1;
    pd_test_tmp_path(c->path, sizeof(c->path), "own_ct");
}

static void ocommit_init(void *self, void *v)
{
    struct own_ctx *c = v;

    /* The destination is the tmp path with a suffix. */
    snprintf(c->dst, sizeof(c->dst), "%s.done", c->path);
    own_commit_init(self, c->path, c->dst);
}

/* Committed, or nothing at tmp or dst; a file at tmp is only one made after the commit. */
static void ocommit_after(void *v, const void *out)
{
    struct own_ctx *c = v;
    int committed = file_exists(c->dst);

    if (out != NULL && *(const int *)out == 0)
        ck_assert(committed && file_exists(c->path));
    if (!committed)
        ck_assert_msg(!file_exists(c->path), "a half-written tmp file was left");
    unlink(c->path);
    unlink(c->dst);
}

static void why_init(void *self, void *v)
{
    struct own_ctx *c = v;

    why_td_init(self, c->p[0], c->log);
}

/* Drop saw CANCELLED() true exactly when the future had not returned. */
static void why_after(void *v, const void *out)
{
    struct own_ctx *c = v;

    ck_assert_int_eq(c->log[1], out != NULL ? 2 : 1);
    if (out != NULL)
        ck_assert_int_eq(c->log[0], 0);
}

static void why_cleanup(void *v)
{
    struct own_ctx *c = v;

    own_cleanup(v);
    close(c->p[0]);
}

static void sp_setup(void *v)
{
    struct own_ctx *c = v;

    own_setup(v);
    /* hold: the kids wait on its read end (log[0] and log[1] hold it). */
    ck_assert_int_eq(pipe2(c->log, O_CLOEXEC), 0);
}

static void sp_init(void *self, void *v)
{
    struct own_ctx *c = v;

    spawner_init(self, c->p[0], c->log[0], false);
}

/* Two spawns, one byte at a time, then the end of ctl. */
static void sp_progress(void *v, int when)
{
    struct own_ctx *c = v;

    if (when != PD_HARNESS_WAITING || c->p[1] < 0)
        return;
    if (c->fed++ < 2) {
        (void)!write(c->p[1], "k", 1);
    } else {
        close(c->p[1]);
        c->p[1] = -1;
    }
}

static void sp_cleanup(void *v)
{
    struct own_ctx *c = v;

    own_cleanup(v);
    close(c->p[0]);
    close(c->log[0]);
    close(c->log[1]);
}

static const struct {
    const char *label;
    pd_harness_case c;
    int spawns;
    int min_points;
} own_cases[] = {
    { "own_fd", { "own_fd", &own_fd_vtable, 1, &oc, own_setup, ofd_init, own_progress,
                  NULL, own_cleanup }, 0, 3 },
    { "own_file", { "own_file", &own_file_vtable, 0, &oc, own_setup, ofile_init,
                    own_progress, ofile_after, own_cleanup }, 0, 4 },
    { "own_close", { "own_close", &own_close_vtable, 0, &oc, oclose_setup, oclose_init,
                     NULL, oclose_after, own_cleanup }, 0, 1 },
    { "own_commit", { "own_commit", &own_commit_vtable, 0, &oc, ocommit_setup, ocommit_init,
                      NULL, ocommit_after, own_cleanup }, 0, 2 },
    { "why_td", { "why_td", &why_td_vtable, 1, &oc, own_setup, why_init, own_progress,
                  why_after, why_cleanup }, 0, 1 },
    { "spawner", { "spawner", &spawner_vtable, 0, &oc, sp_setup, sp_init,
                   sp_progress, NULL, sp_cleanup }, 2, 2 },
};

START_TEST(own_cancel_points)
{
    pd_harness_stats st;

    pd_harness_run_spawning(&own_cases[_i].c, own_cases[_i].spawns, &st);
    fprintf(stderr, "  cancel points: %-12s %3d suspension points, %4d destructions checked\n",
            own_cases[_i].label, st.points, st.runs);
    ck_assert_int_ge(st.points, own_cases[_i].min_points);
}
END_TEST

Suite *pd_suite_owned(void)
{
    Suite *s = suite_create("owned");
    TCase *tc = tcase_create("owns");

    tcase_add_test(tc, owned_fd_closed_after_return);
    tcase_add_test(tc, owned_fd_closed_on_cancel);
    tcase_add_test(tc, owned_fd_closed_by_sync_drop);
    tcase_add_test(tc, close_of_owned_fd_forgets_it);
    tcase_add_test(tc, owned_file_kept_after_keep);
    tcase_add_test(tc, owned_file_removed_on_cancel);
    tcase_add_test(tc, owned_file_removed_by_sync_drop);
    tcase_add_test(tc, owned_file_not_made_is_not_removed);
    tcase_add_test(tc, owned_file_renamed_is_no_longer_owned);
    tcase_add_test(tc, cancelled_is_false_after_return);
    tcase_add_test(tc, cancelled_is_true_when_cancelled);
    tcase_add_test(tc, cancelled_is_true_in_a_sync_drop_before_return);
    tcase_add_test(tc, spawned_tasks_belong_to_the_runtime);
    tcase_add_test(tc, spawned_task_that_ends_is_freed);
    tcase_add_test(tc, failed_spawn_closes_owned_fd);
    suite_add_tcase(s, tc);
    tc = tcase_create("cancel points");
    tcase_add_loop_test(tc, own_cancel_points, 0, (int)(sizeof(own_cases) / sizeof(own_cases[0])));
    tcase_set_timeout(tc, 300);
    tcase_set_tags(tc, "harness");
    suite_add_tcase(s, tc);
    return s;
}
