/*
 * The greeter spec under polldrop's harness: destroyed at every suspension
 * point, by every destruction path, with the invariants checked each time.
 * The fixture is a pipe the greeter writes into; it is drained after every
 * destruction, so the pipe never fills up.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <polldrop/harness.h>
#include "greeter.h"

typedef struct {
    int fds[2];
} fixture;

static void setup(void *ctx)
{
    fixture *f = ctx;

    ck_assert_int_eq(pipe2(f->fds, O_CLOEXEC | O_NONBLOCK), 0);
}

static void init(void *self, void *ctx)
{
    fixture *f = ctx;

    greeter_init(self, f->fds[1], "harness");
}

/* A greeter that completed wrote its whole line, before any "bye". */
static void after(void *ctx, const void *out)
{
    static const char hello[] = "hello, harness\n";
    fixture *f = ctx;
    char buf[256];
    ssize_t n = read(f->fds[0], buf, sizeof buf);

    if (out == NULL)
        return;
    ck_assert_int_eq(*(const greeter_out *)out, (ssize_t)strlen(hello));
    ck_assert_int_ge(n, (ssize_t)strlen(hello));
    ck_assert_mem_eq(buf, hello, strlen(hello));
}

static void cleanup(void *ctx)
{
    fixture *f = ctx;

    close(f->fds[0]);
    close(f->fds[1]);
}

START_TEST(greeter_every_point)
{
    fixture f;
    pd_harness_case c = {
        .future = "greeter",
        .vt = &greeter_vtable,
        .has_teardown = 1,
        .ctx = &f,
        .setup = setup,
        .init = init,
        .after = after,
        .cleanup = cleanup,
    };
    pd_harness_stats st; /* filled by pd_harness_run */

    pd_harness_run(&c, &st);
    /* At least the write_all await; every point is destroyed three ways. */
    ck_assert_int_ge(st.points, 1);
    ck_assert_int_ge(st.runs, 3 * st.points);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("greeter");
    TCase *tc = tcase_create("harness");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, greeter_every_point);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
