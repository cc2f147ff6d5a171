/*
 * The openat2 io op: RESOLVE_BENEATH through io_uring keeps every path
 * beneath the directory it is resolved from, which is what httpd relies on
 * to keep requests inside its root. Cancellation must not leak the fd.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "open_beneath.h"
#include "testutil.h"

/*
 * A directory tree in a fresh mkdtemp directory D:
 * D/root/{in.txt, sub/, up -> ../, out -> D/secret} and the file D/secret,
 * which lies outside the root. mkdtemp rather than a name derived from the
 * PID, so that a tree left behind by a killed run never collides.
 */
typedef struct tree {
    char top[32], root[64], outside[64];
    int dfd;
} tree;

static void tree_make(tree *t)
{
    char p[160];
    int fd;

    snprintf(t->top, sizeof(t->top), "/tmp/pd-openat2.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->top));
    snprintf(t->root, sizeof(t->root), "%s/root", t->top);
    snprintf(t->outside, sizeof(t->outside), "%s/secret", t->top);
    ck_assert_int_eq(mkdir(t->root, 0700), 0);
    snprintf(p, sizeof(p), "%s/sub", t->root);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/in.txt", t->root);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    fd = open(t->outside, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(p, sizeof(p), "%s/up", t->root);
    ck_assert_int_eq(symlink("..", p), 0);
    snprintf(p, sizeof(p), "%s/out", t->root);
    ck_assert_int_eq(symlink(t->outside, p), 0);
    t->dfd = open(t->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(t->dfd, 0);
}

static void tree_remove(tree *t)
{
    static const char *names[] = { "in.txt", "sub", "up", "out" };
    char p[160];

    close(t->dfd);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", t->root, names[i]);
        if (unlink(p) < 0)
            rmdir(p);
    }
    rmdir(t->root);
    unlink(t->outside);
    rmdir(t->top);
}

static int open_in(pd_runtime *rt, int dfd, const char *path)
{
    int out = 0;

    ck_assert_int_eq(open_beneath_block_on(rt, dfd, path, &out), 0);
    if (out >= 0)
        close(out);
    return out;
}

START_TEST(openat2_beneath_allows_inside_refuses_outside)
{
    pd_runtime *rt = pd_test_rt();
    tree t;

    tree_make(&t);
    ck_assert_int_ge(open_in(rt, t.dfd, "in.txt"), 0);
    ck_assert_int_ge(open_in(rt, t.dfd, "sub/../in.txt"), 0);
    ck_assert_int_eq(open_in(rt, t.dfd, "missing"), -ENOENT);
    /* Every way out is refused by the kernel with EXDEV. */
    ck_assert_int_eq(open_in(rt, t.dfd, ".."), -EXDEV);
    ck_assert_int_eq(open_in(rt, t.dfd, "sub/../../etc/hostname"), -EXDEV);
    ck_assert_int_eq(open_in(rt, t.dfd, "/etc/hostname"), -EXDEV);
    ck_assert_int_eq(open_in(rt, t.dfd, "up/etc/hostname"), -EXDEV);
    ck_assert_int_eq(open_in(rt, t.dfd, "out"), -EXDEV);
    pd_runtime_free(rt);
    tree_remove(&t);
}
END_TEST

/* Cancelled at its only suspension point, by every destruction path. */
static tree harness_tree;

static void beneath_setup(void *ctx)
{
    tree_make(ctx);
}

static void beneath_init(void *self, void *ctx)
{
    open_beneath_init(self, ((tree *)ctx)->dfd, "in.txt");
}

static void beneath_after(void *ctx, const void *out)
{
    (void)ctx;
    /* A completed open hands the fd to the caller: close it. */
    if (out && *(const int *)out >= 0)
        close(*(const int *)out);
}

static void beneath_cleanup(void *ctx)
{
    tree_remove(ctx);
}

START_TEST(openat2_cancel_points)
{
    pd_harness_case c = {
        .future = "open_beneath", .vt = &open_beneath_vtable, .ctx = &harness_tree,
        .setup = beneath_setup, .init = beneath_init, .after = beneath_after,
        .cleanup = beneath_cleanup,
    };
    pd_harness_stats st;

    pd_harness_run(&c, &st);
    ck_assert_int_ge(st.points, 1);
}
END_TEST

Suite *pd_suite_openat2(void)
{
    Suite *s = suite_create("openat2");
    TCase *tc = tcase_create("openat2");

    tcase_add_test(tc, openat2_beneath_allows_inside_refuses_outside);
    suite_add_tcase(s, tc);
    /* The cancel-point tests: make explore runs them under the simulator. */
    tc = tcase_create("cancel points");
    tcase_set_tags(tc, "harness");
    tcase_add_test(tc, openat2_cancel_points);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
