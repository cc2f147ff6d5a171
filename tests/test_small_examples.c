/*
 * The small examples (examples/dcopy, examples/lines, docs/examples.md)
 * under the harness: dcopy_job, the directory copy's walk and its copies,
 * and lines_conn, the line server's connection, destroyed at every
 * suspension point by every path, and the futures their programs run,
 * dcopy (the job under a deadline, raced by a signal) and lines_server
 * (the listener and its accept loop, raced by a signal). Whatever the
 * path, the copy leaves no half-written file (every file in the
 * destination equals its source) and no descriptor; lines_conn closes the
 * connection it owns, lines_server its listener. The programs
 * themselves are tested as processes by tests/test_dcopy.py and
 * tests/test_lines.py.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dcopy.h"
#include "dcopy_job.h"
#include "harness.h"
#include "lines_conn.h"
#include "lines_server.h"
#include "testutil.h"

/* The files of the tree dcopy_job copies, with their contents. */
static const char *const dc_files[][2] = {
    { "a", "first file\n" }, { "b", "" }, { "sub/c", "third, one level down\n" },
};
#define DC_NFILES (sizeof(dc_files) / sizeof(dc_files[0]))

struct dc_ctx {
    char src[128], dst[140];
};

static void dc_write(const char *root, const char *name, const char *text)
{
    char path[300];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", root, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Whether root/name holds exactly text; -1 if it does not exist. */
static int dc_holds(const char *root, const char *name, const char *text)
{
    char path[300], buf[256];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", root, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf));
    close(fd);
    return n == (ssize_t)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
}

static void dc_rm(const char *root)
{
    char path[300];

    for (size_t i = 0; i < DC_NFILES; i++) {
        snprintf(path, sizeof(path), "%s/%s", root, dc_files[i][0]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/sub", root);
    rmdir(path);
    rmdir(root);
}

static void dc_setup(void *v)
{
    struct dc_ctx *c = v;
    char sub[160];

    pd_test_tmp_path(c->src, sizeof(c->src), "dcopy");
    snprintf(c->dst, sizeof(c->dst), "%s.dst", c->src);
    ck_assert_int_eq(mkdir(c->src, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/sub", c->src);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    for (size_t i = 0; i < DC_NFILES; i++)
        dc_write(c->src, dc_files[i][0], dc_files[i][1]);
}

static void dc_init(void *self, void *v)
{
    struct dc_ctx *c = v;

    dcopy_job_init(self, c->src, c->dst);
}

/* The whole tool's future: no deadline within the test, SIGUSR2 never sent. */
static void dcopy_init_(void *self, void *v)
{
    struct dc_ctx *c = v;
    sigset_t sigs;

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGUSR2);
    dcopy_init(self, c->src, c->dst, 1LL << 40, sigs);
}

/* Every file in dst is whole; when the job completed, every file is there. */
static void dc_after(void *v, const void *out)
{
    struct dc_ctx *c = v;

    for (size_t i = 0; i < DC_NFILES; i++) {
        int held = dc_holds(c->dst, dc_files[i][0], dc_files[i][1]);

        ck_assert_msg(held != 0, "%s/%s is half-written", c->dst, dc_files[i][0]);
        if (out)
            ck_assert_int_eq(held, 1);
    }
    if (out)
        ck_assert_int_eq(*(const int *)out, 0);
}

static void dc_cleanup(void *v)
{
    struct dc_ctx *c = v;

    dc_rm(c->dst);
    dc_rm(c->src);
}

/* lines_conn on one end of a socketpair; the test is the peer. */
struct lc_ctx {
    int sv[2];
    int waits;
};

static void lc_setup(void *v)
{
    struct lc_ctx *c = v;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->sv), 0);
    c->waits = 0;
}

static void lc_init(void *self, void *v)
{
    struct lc_ctx *c = v;

    lines_conn_init(self, fcntl(c->sv[0], F_DUPFD_CLOEXEC, 0), 60000);
}

/* A line when the connection first waits; then its echo is taken and the peer closes. */
static void lc_progress(void *v, int when)
{
    struct lc_ctx *c = v;
    char buf[64];

    if (when != PD_HARNESS_WAITING)
        return;
    if (c->waits++ == 0) {
        if (write(c->sv[1], "hi\n", 3) != 3)
            ck_abort_msg("write to the connection failed");
        return;
    }
    while (recv(c->sv[1], buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
    shutdown(c->sv[1], SHUT_WR);
}

static void lc_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const int *)out, 0);
}

static void lc_cleanup(void *v)
{
    struct lc_ctx *c = v;

    close(c->sv[0]);
    close(c->sv[1]);
}

/*
 * lines_server: SIGUSR2 ends it, raised whenever the harness is about to
 * block (caught by a handler until the server's signal branch blocks it,
 * then read from its signalfd).
 */
static void ls_caught(int sig)
{
    (void)sig;
}

struct ls_ctx {
    struct sigaction old;
};

static void ls_setup(void *v)
{
    struct ls_ctx *c = v;
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ls_caught;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR2, &sa, &c->old), 0);
}

static void ls_init(void *self, void *v)
{
    sigset_t sigs;

    (void)v;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGUSR2);
    lines_server_init(self, 0, 60000, sigs);
}

static void ls_progress(void *v, int when)
{
    (void)v;
    if (when == PD_HARNESS_WAITING)
        kill(getpid(), SIGUSR2);
}

static void ls_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const int *)out, 0);
}

static void ls_cleanup(void *v)
{
    struct ls_ctx *c = v;

    sigaction(SIGUSR2, &c->old, NULL);
}

static struct dc_ctx dc_c;
static struct lc_ctx lc_c;
static struct ls_ctx ls_c;

static const struct {
    pd_harness_case c;
    int min_points;
} small_cases[] = {
    { { "dcopy_job", &dcopy_job_vtable, 0, &dc_c, dc_setup, dc_init, NULL, dc_after,
        dc_cleanup }, 10 },
    { { "dcopy", &dcopy_vtable, 0, &dc_c, dc_setup, dcopy_init_, NULL, dc_after, dc_cleanup },
      10 },
    { { "lines_conn", &lines_conn_vtable, 1, &lc_c, lc_setup, lc_init, lc_progress, lc_after,
        lc_cleanup }, 2 },
    { { "lines_server", &lines_server_vtable, 0, &ls_c, ls_setup, ls_init, ls_progress, ls_after,
        ls_cleanup }, 2 },
};

START_TEST(small_examples_cancel_points)
{
    pd_harness_stats st;

    pd_harness_run(&small_cases[_i].c, &st);
    ck_assert_int_ge(st.points, small_cases[_i].min_points);
}
END_TEST

Suite *pd_suite_small_examples(void)
{
    Suite *s = suite_create("examples dcopy and lines");
    TCase *tc = tcase_create("cancel points");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, small_examples_cancel_points, 0,
                        (int)(sizeof(small_cases) / sizeof(small_cases[0])));
    tcase_set_tags(tc, "harness");
    suite_add_tcase(s, tc);
    return s;
}
