/*
 * Arrays of child futures: START, await/select/join over an array (with
 * and without a deadline), and the library spec built on them, copy_tree.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy_tree.h"
#include "harness.h"
#include "pipe_pool.h"
#include "testutil.h"

#define PD_FAR_MS 600000L

/* Four pipes for pipe_pool, and one for the members' goodbyes. */
struct pool_fix {
    int r[4], w[4];
    int bye[2];
};

static void pool_open(struct pool_fix *f)
{
    int i, p[2];

    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        f->r[i] = p[0];
        f->w[i] = p[1];
    }
    ck_assert_int_eq(pipe2(f->bye, O_CLOEXEC | O_NONBLOCK), 0);
}

static void pool_close(struct pool_fix *f)
{
    int i;

    for (i = 0; i < 4; i++) {
        close(f->r[i]);
        close(f->w[i]);
    }
    close(f->bye[0]);
    close(f->bye[1]);
}

/* How many goodbyes the members' teardowns wrote. */
static int pool_byes(struct pool_fix *f)
{
    char buf[64];
    ssize_t n = read(f->bye[0], buf, sizeof(buf));

    return n > 0 ? (int)n / 3 : 0;
}


START_TEST(await_each_member_as_it_finishes)
{
    struct pool_fix f;
    pd_runtime *rt = pd_test_rt();
    long out = 0;

    pool_open(&f);
    pd_test_write(f.w[2], "ab", 2);
    pd_test_write(f.w[0], "abc", 3);
    pd_test_write(f.w[3], "a", 1);
    pd_test_write(f.w[1], "abcd", 4);
    pd_test_rec_start();
    ck_assert_int_eq(pipe_pool_block_on(rt, f.r, f.bye[1], 0, 0, &out), 0);
    ck_assert_int_eq(out, 10);
    /* Each member was initialised and destroyed once, with its teardown. */
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_INIT), 4);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 4);
    ck_assert_int_eq(pool_byes(&f), 4);
    pool_close(&f);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(select_over_an_array_quiesces_the_others)
{
    struct pool_fix f;
    pd_runtime *rt = pd_test_rt();
    long out = 0;
    int i;

    pool_open(&f);
    pd_test_write(f.w[2], "xyz", 3);
    pd_test_rec_start();
    ck_assert_int_eq(pipe_pool_block_on(rt, f.r, f.bye[1], 1, 0, &out), 0);
    ck_assert_int_eq(out, 203);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 4);
    ck_assert_int_eq(pool_byes(&f), 4);
    /* The cancelled members took nothing. */
    for (i = 0; i < 4; i++)
        if (i != 2)
            pd_test_nothing_taken(f.r[i], f.w[i]);
    pool_close(&f);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(join_over_an_array_waits_for_all)
{
    struct pool_fix f;
    pd_runtime *rt = pd_test_rt();
    long out = 0;
    int i;

    pool_open(&f);
    for (i = 0; i < 4; i++)
        pd_test_write(f.w[i], "ab", 2);
    ck_assert_int_eq(pipe_pool_block_on(rt, f.r, f.bye[1], 2, PD_FAR_MS, &out), 0);
    ck_assert_int_eq(out, 8);
    pool_close(&f);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(join_over_an_array_times_out)
{
    struct pool_fix f;
    pd_runtime *rt = pd_test_rt();
    long out = 0;

    pool_open(&f);
    pd_test_write(f.w[1], "ab", 2); /* one member finishes, three do not */
    pd_test_rec_start();
    ck_assert_int_eq(pipe_pool_block_on(rt, f.r, f.bye[1], 2, 2, &out), 0);
    ck_assert_int_eq(out, -ETIMEDOUT);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 4);
    ck_assert_int_eq(pool_byes(&f), 4);
    pool_close(&f);
    pd_test_rt_done(rt);
}
END_TEST

/*
 * The deadline of a join over an array fires while three members wait:
 * then runs only once every member is quiesced, each with its teardown
 * done (IDLE: destroyed and seen), and only the member that returned
 * has COMPLETED (pipe_pool mode 4 outputs that set, or -EBUSY).
 */
START_TEST(array_deadline_quiesces_every_member_before_then)
{
    struct pool_fix f;
    pd_runtime *rt = pd_test_rt();
    long out = 0;

    pool_open(&f);
    pd_test_write(f.w[1], "ab", 2);
    pd_test_rec_start();
    ck_assert_int_eq(pipe_pool_block_on(rt, f.r, f.bye[1], 4, 50, &out), 0);
    ck_assert_int_ne(out, -EBUSY);
    ck_assert_int_eq(pool_byes(&f), 4);
    pool_close(&f);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(completed_is_false_for_a_member_cancelled_before_it_returned)
{
    struct pool_fix f;
    pd_runtime *rt = pd_test_rt();
    long out = 0;

    pool_open(&f);
    pd_test_write(f.w[1], "ab", 2); /* member 1 returns; 0, 2 and 3 are cancelled */
    ck_assert_int_eq(pipe_pool_block_on(rt, f.r, f.bye[1], 4, 50, &out), 0);
    ck_assert_int_eq(out, 1L << 1);
    pool_close(&f);
    pd_test_rt_done(rt);
}
END_TEST

/* Destroyed while members run: every member is destroyed exactly once. */
START_TEST(members_are_quiesced_when_the_parent_is_cancelled)
{
    struct pool_fix f;
    pd_runtime *rt = pd_test_rt();
    pd_task *t;

    pool_open(&f);
    pd_test_rec_start();
    t = pipe_pool_spawn(rt, f.r, f.bye[1], 0, 0);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 1);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_INIT), 4);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 4);
    ck_assert_int_eq(pd_rec.stray_drop, 0);
    ck_assert_int_eq(pool_byes(&f), 4);
    pd_task_release(t);
    pool_close(&f);
    pd_test_rt_done(rt);
}
END_TEST

START_TEST(members_are_sync_dropped_with_the_parent)
{
    struct pool_fix f;
    pd_runtime *rt = pd_test_rt();
    pd_task *t;
    void *mem;

    pool_open(&f);
    pd_test_rec_start();
    t = pd_task_new(rt, &pipe_pool_vtable, &mem);
    ck_assert_ptr_nonnull(t);
    pipe_pool_init(mem, f.r, f.bye[1], 0, 0);
    pd_task_start(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 1);
    pd__task_drop_sync(t); /* pipe_pool_drop on the task's future */
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 4);
    ck_assert_int_eq(pool_byes(&f), 0); /* no teardown on a sync drop */
    pd_task_release(t);
    pd_runtime_free(rt);
    pool_close(&f);
}
END_TEST

/* --- START misuse aborts with a message naming the future and member --- */

/* pipe_pool's fill starts member 0 twice when its mode is 3. */
static void start_running_member(void)
{
    struct pool_fix f;
    pd_runtime *rt;
    long out;

    pool_open(&f);
    pd_runtime_new(&rt, NULL);
    pipe_pool_block_on(rt, f.r, -1, 3, 0, &out);
}

START_TEST(start_on_a_running_member_aborts)
{
    pd_test_expect_abort(start_running_member, "polldrop: pipe_pool: START(kids, 0): member 0 "
                    "is still running");
}
END_TEST

/* --- copy_tree --- */

struct tree {
    char dir[128];
    char src[12][160], dst[12][160];
    const char *srcp[12], *dstp[12];
    int n;
};

/*
 * n files of size + i * 1000 bytes in a new directory under base (NULL:
 * /tmp).
 */
static void tree_make(struct tree *t, int n, size_t size, const char *base)
{
    char tmp[128], dir[128];
    int i;

    pd_test_tmp_path(tmp, sizeof(tmp), "tree");
    if (base)
        snprintf(dir, sizeof(dir), "%s/%s", base, strrchr(tmp, '/') + 1);
    else
        snprintf(dir, sizeof(dir), "%s", tmp);
    memcpy(t->dir, dir, sizeof(dir));
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    t->n = n;
    for (i = 0; i < n; i++) {
        snprintf(t->src[i], sizeof(t->src[i]), "%s/s%d", dir, i);
        snprintf(t->dst[i], sizeof(t->dst[i]), "%s/d%d", dir, i);
        pd_test_make_file(t->src[i], size + (size_t)i * 1000, (unsigned)i);
        t->srcp[i] = t->src[i];
        t->dstp[i] = t->dst[i];
    }
}

/* tmpfs when there is one: fsync costs nothing there, and the tests copy a lot. */
static const char *pd_shm(void)
{
    return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
}

static int tree_dsts(const struct tree *t)
{
    struct stat st;
    int i, k = 0;

    for (i = 0; i < t->n; i++)
        k += stat(t->dst[i], &st) == 0;
    return k;
}

static void tree_remove(struct tree *t)
{
    int i;

    for (i = 0; i < t->n; i++) {
        unlink(t->src[i]);
        unlink(t->dst[i]);
    }
    rmdir(t->dir);
}

START_TEST(copy_tree_copies_every_file_eight_at_a_time)
{
    struct tree t;
    pd_runtime *rt = pd_test_rt();
    long out = 0;
    int i, fds = pd_test_fd_count();

    tree_make(&t, 12, 70000, pd_shm());
    pd_test_rec_start();
    ck_assert_int_eq(copy_tree_block_on(rt, t.srcp, t.dstp, t.n, PD_FAR_MS, &out), 0);
    ck_assert_int_eq(out, 12);
    for (i = 0; i < t.n; i++)
        ck_assert_msg(pd_test_same_file(t.src[i], t.dst[i]), "%s differs", t.dst[i]);
    ck_assert_int_eq(pd_test_rec_count("copy_one", PD_TRACE_INIT), 12);
    ck_assert_int_eq(pd_test_rec_count("copy_one", PD_TRACE_DROP), 12);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_test_quiet(rt);
    tree_remove(&t);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(copy_tree_failure_removes_half_written_files)
{
    struct tree t;
    pd_runtime *rt = pd_test_rt();
    long out = 0;
    int fds = pd_test_fd_count();

    tree_make(&t, 6, 1 << 20, pd_shm());
    unlink(t.src[0]); /* the first copy fails at once */
    ck_assert_int_eq(copy_tree_block_on(rt, t.srcp, t.dstp, t.n, PD_FAR_MS, &out), 0);
    ck_assert_int_eq(out, -ENOENT);
    /* The others were cancelled mid-copy: nothing half-written remains. */
    ck_assert_int_eq(tree_dsts(&t), 0);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_test_quiet(rt);
    tree_remove(&t);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(copy_tree_deadline_removes_half_written_files)
{
    struct tree t;
    pd_runtime *rt;
    long out = 0;
    int i, fds;

    if (pd_test_skip_on_sim("copy_tree_deadline_removes_half_written_files",
                            "it counts on copies of 10 MiB outlasting a 1 ms deadline, "
                            "and file ops take no virtual time"))
        return;
    rt = pd_test_rt();
    fds = pd_test_fd_count();
    tree_make(&t, 10, 1 << 20, pd_shm());
    ck_assert_int_eq(copy_tree_block_on(rt, t.srcp, t.dstp, t.n, 1, &out), 0);
    /* Whatever finished within the deadline is whole; the rest is gone. */
    ck_assert_int_eq(out, -ETIMEDOUT);
    for (i = 0; i < t.n; i++) {
        struct stat st;

        if (stat(t.dst[i], &st) == 0)
            ck_assert_msg(pd_test_same_file(t.src[i], t.dst[i]), "%s is partial",
                          t.dst[i]);
    }
    ck_assert_int_lt(tree_dsts(&t), t.n);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_test_quiet(rt);
    tree_remove(&t);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(copy_tree_of_nothing)
{
    pd_runtime *rt = pd_test_rt();
    long out = -1;

    ck_assert_int_eq(copy_tree_block_on(rt, NULL, NULL, 0, PD_FAR_MS, &out), 0);
    ck_assert_int_eq(out, 0);
    pd_runtime_free(rt);
}
END_TEST

/* --- the harness --- */

struct pool_ctx {
    struct pool_fix f;
    int fed;
};

static void pool_setup(void *v)
{
    struct pool_ctx *c = v;

    pool_open(&c->f);
    c->fed = 0;
}

static void pool_init(void *self, void *v)
{
    struct pool_ctx *c = v;

    pipe_pool_init(self, c->f.r, c->f.bye[1], 0, 0);
}

/* One pipe gets a byte each time the harness would wait. */
static void pool_progress(void *v, int when)
{
    struct pool_ctx *c = v;
    char sink[64];

    if (when != PD_HARNESS_WAITING)
        return;
    if (c->fed < 4)
        pd_test_write(c->f.w[c->fed++], "x", 1);
    while (read(c->f.bye[0], sink, sizeof(sink)) > 0)
        ;
}

static void pool_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const long *)out, 4);
}

static void pool_cleanup(void *v)
{
    struct pool_ctx *c = v;

    pool_close(&c->f);
}

struct tree_ctx {
    struct tree t;
};

static void tree_setup(void *v)
{
    struct tree_ctx *c = v;

    tree_make(&c->t, 2, 100, pd_shm());
}

static void tree_init(void *self, void *v)
{
    struct tree_ctx *c = v;

    copy_tree_init(self, c->t.srcp, c->t.dstp, c->t.n, PD_FAR_MS);
}

/* Every dst is whole or absent, on every path; all of them if it completed. */
static void tree_after(void *v, const void *out)
{
    struct tree_ctx *c = v;
    int i;

    for (i = 0; i < c->t.n; i++) {
        struct stat st;

        if (stat(c->t.dst[i], &st) == 0)
            ck_assert_msg(pd_test_same_file(c->t.src[i], c->t.dst[i]),
                          "%s is half-written", c->t.dst[i]);
    }
    if (out) {
        ck_assert_int_eq(*(const long *)out, c->t.n);
        ck_assert_int_eq(tree_dsts(&c->t), c->t.n);
    }
}

static void tree_cleanup(void *v)
{
    struct tree_ctx *c = v;

    tree_remove(&c->t);
}

static struct pool_ctx pool_c;
static struct tree_ctx tree_c;

static const struct {
    const char *label;
    pd_harness_case c;
    int min_points;
} arr_cases[] = {
    { "pipe_pool", { "pipe_pool", &pipe_pool_vtable, 0, &pool_c, pool_setup, pool_init,
                     pool_progress, pool_after, pool_cleanup }, 4 },
    { "copy_tree", { "copy_tree", &copy_tree_vtable, 0, &tree_c, tree_setup, tree_init,
                     NULL, tree_after, tree_cleanup }, 6 },
};

START_TEST(array_cancel_points)
{
    pd_harness_stats st;

    pd_harness_run(&arr_cases[_i].c, &st);
    fprintf(stderr, "  cancel points: %-18s %3d suspension points, %4d destructions "
            "checked\n", arr_cases[_i].label, st.points, st.runs);
    ck_assert_int_ge(st.points, arr_cases[_i].min_points);
}
END_TEST

Suite *pd_suite_arrays(void)
{
    Suite *s = suite_create("arrays of child futures");
    TCase *tc = tcase_create("arrays");
    TCase *ct = tcase_create("copy_tree");
    TCase *h = tcase_create("cancel points");

    tcase_add_test(tc, await_each_member_as_it_finishes);
    tcase_add_test(tc, select_over_an_array_quiesces_the_others);
    tcase_add_test(tc, join_over_an_array_waits_for_all);
    tcase_add_test(tc, join_over_an_array_times_out);
    tcase_add_test(tc, array_deadline_quiesces_every_member_before_then);
    tcase_add_test(tc, completed_is_false_for_a_member_cancelled_before_it_returned);
    tcase_add_test(tc, members_are_quiesced_when_the_parent_is_cancelled);
    tcase_add_test(tc, members_are_sync_dropped_with_the_parent);
    tcase_add_test(tc, start_on_a_running_member_aborts);
    suite_add_tcase(s, tc);
    tcase_add_test(ct, copy_tree_copies_every_file_eight_at_a_time);
    tcase_add_test(ct, copy_tree_failure_removes_half_written_files);
    tcase_add_test(ct, copy_tree_deadline_removes_half_written_files);
    tcase_add_test(ct, copy_tree_of_nothing);
    tcase_set_timeout(ct, 30);
    suite_add_tcase(s, ct);
    tcase_add_loop_test(h, array_cancel_points, 0,
                        (int)(sizeof(arr_cases) / sizeof(arr_cases[0])));
    tcase_set_timeout(h, 300);
    /* The cancel-point tests: make explore runs them under the simulator. */
    tcase_set_tags(h, "harness");
    suite_add_tcase(s, h);
    return s;
}
