/*
 * One suite per library spec (happy path and error paths), and the
 * cancel-at-every-suspension-point suite over every spec in specs/.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy_file.h"
#include "copy_one.h"
#include "echo_accept.h"
#include "echo_client.h"
#include "echo_conn.h"
#include "echo_idle.h"
#include "first_of.h"
#include "harness.h"
#include "pair_copy.h"
#include "read_deadline.h"
#include "read_timeout.h"
#include "read_file.h"
#include "signal_wait.h"
#include "sleep_ms.h"
#include "td_child.h"
#include "testutil.h"
#include "write_all.h"

/* --- read_file --- */

START_TEST(read_file_reads_a_file)
{
    char path[128], buf[8192], want[8192];
    ssize_t out = 0;
    pd_runtime *rt = pd_test_rt();
    int fd;

    pd_test_tmp_path(path, sizeof(path), "rf");
    pd_test_make_file(path, 5000, 7);
    ck_assert_int_eq(read_file_block_on(rt, path, buf, sizeof(buf), &out), 0);
    ck_assert_int_eq(out, 5000);
    fd = open(path, O_RDONLY);
    ck_assert_int_eq(read(fd, want, sizeof(want)), 5000);
    close(fd);
    pd_test_kernel_wrote(buf, 5000);
    ck_assert_mem_eq(buf, want, 5000);
    pd_runtime_free(rt);
    unlink(path);
}
END_TEST

START_TEST(read_file_stops_at_cap)
{
    char path[128], buf[100];
    ssize_t out = 0;
    pd_runtime *rt = pd_test_rt();

    pd_test_tmp_path(path, sizeof(path), "rf");
    pd_test_make_file(path, 5000, 7);
    ck_assert_int_eq(read_file_block_on(rt, path, buf, sizeof(buf), &out), 0);
    ck_assert_int_eq(out, 100);
    pd_runtime_free(rt);
    unlink(path);
}
END_TEST

START_TEST(read_file_missing_file_is_enoent)
{
    char buf[16];
    ssize_t out = 0;
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count();

    ck_assert_int_eq(read_file_block_on(rt, "/nonexistent/polldrop", buf, sizeof(buf),
                                        &out), 0);
    ck_assert_int_eq(out, -ENOENT);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(read_file_directory_is_eisdir)
{
    char buf[16];
    ssize_t out = 0;
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count();

    ck_assert_int_eq(read_file_block_on(rt, "/tmp", buf, sizeof(buf), &out), 0);
    ck_assert_int_eq(out, -EISDIR);
    ck_assert_int_eq(pd_test_fd_count(), fds); /* teardown closed the fd */
    pd_runtime_free(rt);
}
END_TEST

START_TEST(read_file_pipe_until_eof)
{
    char path[64], buf[64];
    ssize_t out = 0;
    pd_runtime *rt = pd_test_rt();
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_test_write(p[1], "hello", 5);
    close(p[1]);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", p[0]);
    ck_assert_int_eq(read_file_block_on(rt, path, buf, sizeof(buf), &out), 0);
    ck_assert_int_eq(out, 5);
    pd_test_kernel_wrote(buf, 5);
    ck_assert_mem_eq(buf, "hello", 5);
    close(p[0]);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_read_file(void)
{
    Suite *s = suite_create("spec read_file");
    TCase *tc = tcase_create("read_file");

    tcase_add_test(tc, read_file_reads_a_file);
    tcase_add_test(tc, read_file_stops_at_cap);
    tcase_add_test(tc, read_file_missing_file_is_enoent);
    tcase_add_test(tc, read_file_directory_is_eisdir);
    tcase_add_test(tc, read_file_pipe_until_eof);
    suite_add_tcase(s, tc);
    return s;
}

/* --- write_all --- */

START_TEST(write_all_short_writes_are_resubmitted)
{
    enum { LEN = 256 * 1024 };
    char *data = malloc(LEN), *got = malloc(LEN);
    pd_runtime *rt = pd_test_rt();
    pd_task *t;
    size_t have = 0;
    int p[2];

    ck_assert_ptr_nonnull(data);
    ck_assert_ptr_nonnull(got);
    for (size_t i = 0; i < LEN; i++)
        data[i] = (char)(i * 7);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    /* A 4 KiB pipe forces many short writes. */
    ck_assert_int_ge(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    t = write_all_spawn(rt, p[1], data, LEN);
    ck_assert_ptr_nonnull(t);
    while (pd_task_state(t) != PD_TASK_DONE) {
        ssize_t n;

        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        while ((n = read(p[0], got + have, LEN - have)) > 0)
            have += (size_t)n;
    }
    while (have < LEN) {
        ssize_t n = read(p[0], got + have, LEN - have);

        ck_assert_int_gt(n, 0);
        have += (size_t)n;
    }
    ck_assert_int_eq(*(const ssize_t *)pd_task_output(t), (ssize_t)LEN);
    ck_assert_mem_eq(got, data, LEN);
    pd_task_release(t);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
    free(data);
    free(got);
}
END_TEST

START_TEST(write_all_closed_pipe_is_epipe)
{
    pd_runtime *rt = pd_test_rt();
    ssize_t out = 0;
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(write_all_block_on(rt, p[1], "x", 1, &out), 0);
    ck_assert_int_eq(out, -EPIPE);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(write_all_bad_fd_is_ebadf)
{
    pd_runtime *rt = pd_test_rt();
    ssize_t out = 0;

    ck_assert_int_eq(write_all_block_on(rt, 1000000, "x", 1, &out), 0);
    ck_assert_int_eq(out, -EBADF);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(write_all_nothing_to_write)
{
    pd_runtime *rt = pd_test_rt();
    ssize_t out = -1;
    pd_stats s;

    ck_assert_int_eq(write_all_block_on(rt, 1000000, "", 0, &out), 0);
    ck_assert_int_eq(out, 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.ops_submitted, 0);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_write_all(void)
{
    Suite *s = suite_create("spec write_all");
    TCase *tc = tcase_create("write_all");

    tcase_add_test(tc, write_all_short_writes_are_resubmitted);
    tcase_add_test(tc, write_all_closed_pipe_is_epipe);
    tcase_add_test(tc, write_all_bad_fd_is_ebadf);
    tcase_add_test(tc, write_all_nothing_to_write);
    suite_add_tcase(s, tc);
    return s;
}

/* --- copy_file --- */

static void copy_case(size_t size)
{
    char src[128], dst[128];
    pd_runtime *rt = pd_test_rt();
    ssize_t out = 0;
    int fds = pd_test_fd_count();

    pd_test_tmp_path(src, sizeof(src), "src");
    pd_test_tmp_path(dst, sizeof(dst), "dst");
    pd_test_make_file(src, size, (unsigned)size);
    ck_assert_int_eq(copy_file_block_on(rt, src, dst, &out), 0);
    ck_assert_int_eq(out, (ssize_t)size);
    ck_assert(pd_test_same_file(src, dst));
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_runtime_free(rt);
    unlink(src);
    unlink(dst);
}

START_TEST(copy_file_empty) { copy_case(0); }
END_TEST
START_TEST(copy_file_one_chunk) { copy_case(1000); }
END_TEST
START_TEST(copy_file_chunk_boundary) { copy_case(65536); }
END_TEST
START_TEST(copy_file_many_chunks) { copy_case(3 * 1024 * 1024 + 17); }
END_TEST

START_TEST(copy_file_missing_source)
{
    pd_runtime *rt = pd_test_rt();
    ssize_t out = 0;
    int fds = pd_test_fd_count();

    ck_assert_int_eq(copy_file_block_on(rt, "/nonexistent/a", "/tmp/polldrop-never", &out),
                     0);
    ck_assert_int_eq(out, -ENOENT);
    ck_assert_int_eq(access("/tmp/polldrop-never", F_OK), -1);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(copy_file_unwritable_destination)
{
    char src[128];
    pd_runtime *rt = pd_test_rt();
    ssize_t out = 0;
    int fds = pd_test_fd_count();

    pd_test_tmp_path(src, sizeof(src), "src");
    pd_test_make_file(src, 100, 1);
    ck_assert_int_eq(copy_file_block_on(rt, src, "/nonexistent/dir/x", &out), 0);
    ck_assert_int_eq(out, -ENOENT);
    ck_assert_int_eq(pd_test_fd_count(), fds); /* the source was closed */
    pd_runtime_free(rt);
    unlink(src);
}
END_TEST

Suite *pd_suite_copy_file(void)
{
    Suite *s = suite_create("spec copy_file");
    TCase *tc = tcase_create("copy_file");

    tcase_add_test(tc, copy_file_empty);
    tcase_add_test(tc, copy_file_one_chunk);
    tcase_add_test(tc, copy_file_chunk_boundary);
    tcase_add_test(tc, copy_file_many_chunks);
    tcase_add_test(tc, copy_file_missing_source);
    tcase_add_test(tc, copy_file_unwritable_destination);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

/* --- sleep_ms --- */

START_TEST(sleep_ms_elapses)
{
    pd_runtime *rt = pd_test_rt();
    int out = -1;
    long long t0 = pd_clock_ms();

    ck_assert_int_eq(sleep_ms_block_on(rt, 30, &out), 0);
    ck_assert_int_eq(out, 0); /* -ETIME is mapped to 0 */
    /* A lower bound only: a sleep never ends early (on the runtime's clock,
       which is virtual under the simulator). */
    ck_assert_int_ge(pd_clock_ms() - t0, 29);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(sleep_ms_cancelled_mid_flight)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t = sleep_ms_spawn(rt, 60 * 60 * 1000);
    pd_stats s;

    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 1);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_ptr_null(pd_task_output(t));
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_uint_eq(s.cancels_submitted, 1);
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_sleep_ms(void)
{
    Suite *s = suite_create("spec sleep_ms");
    TCase *tc = tcase_create("sleep_ms");

    tcase_add_test(tc, sleep_ms_elapses);
    tcase_add_test(tc, sleep_ms_cancelled_mid_flight);
    suite_add_tcase(s, tc);
    return s;
}

/* --- cancel at every suspension point, every spec --- */

struct pipe_ctx {
    int p[2];
    int fed;
    int susp;
    char path[64];
    char buf[64];
    char data[16384];
};

static void pipe_setup(void *v)
{
    struct pipe_ctx *c = v;

    ck_assert_int_eq(pipe2(c->p, O_CLOEXEC), 0);
    fcntl(c->p[0], F_SETFL, O_NONBLOCK);
    c->fed = 0;
    c->susp = 0;
    snprintf(c->path, sizeof(c->path), "/proc/self/fd/%d", c->p[0]);
}

static void pipe_cleanup(void *v)
{
    struct pipe_ctx *c = v;

    close(c->p[0]);
    if (c->p[1] >= 0)
        close(c->p[1]);
}

static void rf_pipe_init(void *self, void *v)
{
    struct pipe_ctx *c = v;

    read_file_init(self, c->path, c->buf, sizeof(c->buf));
}

/*
 * One byte per suspension, then EOF: the reads complete one by one. None
 * at the first suspension (the open's), so that the first read finds the
 * pipe empty and waits, whether the open completed at once (io_uring
 * opens inline) or was still running (on a worker, as epoll's may be).
 */
static void rf_pipe_feed(void *v, int when)
{
    struct pipe_ctx *c = v;

    if (when != PD_HARNESS_RUN_SUSPENDED || c->susp++ == 0)
        return;
    if (c->fed < 3) {
        char b = (char)('a' + c->fed++);

        pd_test_write(c->p[1], &b, 1);
    } else if (c->p[1] >= 0) {
        close(c->p[1]);
        c->p[1] = -1;
    }
}

/* Invariant 7: data written after the drop is still there for the next reader. */
static void rf_pipe_after(void *v, const void *out)
{
    struct pipe_ctx *c = v;
    char got[16];
    ssize_t n;

    (void)out;
    if (c->p[1] < 0)
        return;
    pd_test_write(c->p[1], "Z", 1);
    n = read(c->p[0], got, sizeof(got));
    ck_assert_int_ge(n, 1);
    ck_assert_int_eq(got[n - 1], 'Z');
}

struct file_ctx {
    char src[128], dst[128];
    char buf[4096];
};

static void file_setup(void *v)
{
    struct file_ctx *c = v;

    pd_test_tmp_path(c->src, sizeof(c->src), "src");
    pd_test_tmp_path(c->dst, sizeof(c->dst), "dst");
    pd_test_make_file(c->src, 150000, 3);
}

static void file_cleanup(void *v)
{
    struct file_ctx *c = v;

    unlink(c->src);
    unlink(c->dst);
}

static void rf_file_init(void *self, void *v)
{
    struct file_ctx *c = v;

    read_file_init(self, c->src, c->buf, sizeof(c->buf));
}

static void rf_file_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const ssize_t *)out, 4096);
}

static void wa_init(void *self, void *v)
{
    struct pipe_ctx *c = v;

    ck_assert_int_ge(fcntl(c->p[1], F_SETPIPE_SZ, 4096), 4096);
    memset(c->data, 'w', sizeof(c->data));
    write_all_init(self, c->p[1], c->data, sizeof(c->data));
}

/*
 * The pipe is drained only when the harness is about to block: at every
 * suspension the 4 KiB pipe is full and the write waits in the kernel.
 */
static void wa_drain(void *v, int when)
{
    struct pipe_ctx *c = v;
    char sink[4096];

    if (when != PD_HARNESS_WAITING)
        return;
    while (read(c->p[0], sink, sizeof(sink)) > 0)
        ;
}

static void wa_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const ssize_t *)out, 16384);
}

static void cf_init(void *self, void *v)
{
    struct file_ctx *c = v;

    copy_file_init(self, c->src, c->dst);
}

static void cf_after(void *v, const void *out)
{
    struct file_ctx *c = v;

    if (out) {
        ck_assert_int_eq(*(const ssize_t *)out, 150000);
        ck_assert(pd_test_same_file(c->src, c->dst));
    }
}

static void co_init(void *self, void *v)
{
    struct file_ctx *c = v;

    copy_one_init(self, c->src, c->dst);
}

/* Done: a whole copy. Destroyed first: no dst, or a complete one (kept). */
static void co_after(void *v, const void *out)
{
    struct file_ctx *c = v;

    if (out) {
        ck_assert_int_eq(*(const long *)out, 150000);
        ck_assert(pd_test_same_file(c->src, c->dst));
    } else {
        ck_assert_msg(access(c->dst, F_OK) != 0 || pd_test_same_file(c->src, c->dst),
                      "a half-written %s was left behind", c->dst);
    }
}

static void nothing(void *v)
{
    (void)v;
}

static void sl_init(void *self, void *v)
{
    (void)v;
    sleep_ms_init(self, 2);
}

static void rt_init(void *self, void *v)
{
    struct pipe_ctx *c = v;

    read_timeout_init(self, c->p[0], c->buf, sizeof(c->buf), 3);
}

static void rd_init(void *self, void *v)
{
    struct pipe_ctx *c = v;

    read_deadline_init(self, c->p[0], c->buf, sizeof(c->buf), 3);
}

/* Either the deadline or the data; data written later is never lost. */
static void deadline_after(void *v, const void *out)
{
    struct pipe_ctx *c = v;
    char got[16];

    if (out)
        ck_assert_int_eq(*(const ssize_t *)out, -ETIMEDOUT);
    pd_test_write(c->p[1], "Z", 1);
    ck_assert_int_eq(read(c->p[0], got, sizeof(got)), 1);
}

static void fo_init(void *self, void *v)
{
    struct file_ctx *c = v;

    first_of_init(self, c->src, "/etc/hostname");
}

static void fo_after(void *v, const void *out)
{
    (void)v;
    if (out) {
        int fd = *(const int *)out;

        ck_assert_int_ge(fd, 0);
        close(fd); /* the winner's fd is the caller's */
    }
}

struct pair_ctx {
    struct file_ctx a, b;
};

static void pc_setup(void *v)
{
    struct pair_ctx *c = v;

    file_setup(&c->a);
    file_setup(&c->b);
}

static void pc_cleanup(void *v)
{
    struct pair_ctx *c = v;

    file_cleanup(&c->a);
    file_cleanup(&c->b);
}

static void pc_init(void *self, void *v)
{
    struct pair_ctx *c = v;

    pair_copy_init(self, c->a.src, c->a.dst, c->b.src, c->b.dst);
}

static void pc_after(void *v, const void *out)
{
    struct pair_ctx *c = v;

    if (out) {
        ck_assert_int_eq(*(const ssize_t *)out, 300000);
        ck_assert(pd_test_same_file(c->a.src, c->a.dst));
        ck_assert(pd_test_same_file(c->b.src, c->b.dst));
    }
}

struct td_ctx {
    struct pipe_ctx in;
    int bye[2];
    int drained;
};

static void td_setup(void *v)
{
    struct td_ctx *c = v;

    pipe_setup(&c->in);
    ck_assert_int_eq(pipe2(c->bye, O_CLOEXEC | O_NONBLOCK), 0);
    /* A 4 KiB pipe, full: the goodbye blocks until the fixture drains it. */
    ck_assert_int_ge(fcntl(c->bye[1], F_SETPIPE_SZ, 4096), 4096);
    memset(c->in.data, 'f', 4096);
    pd_test_write(c->bye[1], c->in.data, 4096);
    c->drained = 0;
}

static void td_cleanup(void *v)
{
    struct td_ctx *c = v;

    pipe_cleanup(&c->in);
    close(c->bye[0]);
    close(c->bye[1]);
}

static void td_init(void *self, void *v)
{
    struct td_ctx *c = v;

    td_child_init(self, c->in.p[0], c->bye[1]);
}

/*
 * Feeds the read after the first run suspension. The goodbye pipe is
 * drained only when the harness is about to wait, so at every suspension
 * the goodbye is still blocked: a sync drop then finds it in flight.
 */
static void td_progress(void *v, int when)
{
    struct td_ctx *c = v;
    char sink[4096];

    if (when == PD_HARNESS_RUN_SUSPENDED && c->in.fed++ == 0)
        pd_test_write(c->in.p[1], "x", 1);
    if (when == PD_HARNESS_WAITING)
        while (read(c->bye[0], sink, sizeof(sink)) > 0)
            c->drained++;
}

/* echo_conn: the fixture is the peer of a socketpair; the future owns sv[0]. */
struct conn_ctx {
    int sv[2];
    int fed;
};

static void conn_setup(void *v)
{
    struct conn_ctx *c = v;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->sv), 0);
    fcntl(c->sv[1], F_SETFL, O_NONBLOCK);
    c->fed = 0;
}

static void conn_init(void *self, void *v)
{
    struct conn_ctx *c = v;

    echo_conn_init(self, c->sv[0], NULL, NULL, 50);
}

/* Two messages, then the peer's end of stream; echoes are drained. */
static void conn_progress(void *v, int when)
{
    struct conn_ctx *c = v;
    char sink[256];

    if (when == PD_HARNESS_RUN_SUSPENDED && c->fed < 3) {
        if (c->fed++ < 2)
            pd_test_write(c->sv[1], "ping", 4);
        else
            shutdown(c->sv[1], SHUT_WR);
    }
    while (read(c->sv[1], sink, sizeof(sink)) > 0)
        ;
}

/*
 * The future closed its end on every path: the peer sees end of stream, or
 * a reset when a cancelled recv left our ping unread (cancelled means
 * cancelled). EAGAIN would mean the socket is still open.
 */
static void conn_after(void *v, const void *out)
{
    struct conn_ctx *c = v;
    char sink[256];
    ssize_t n;

    if (out)
        ck_assert_int_eq(*(const long long *)out, 8);
    while ((n = read(c->sv[1], sink, sizeof(sink))) > 0)
        ;
    ck_assert_msg(n == 0 || errno == ECONNRESET, "peer read: %s", strerror(errno));
}

static void conn_cleanup(void *v)
{
    struct conn_ctx *c = v;

    close(c->sv[1]);
}

/* echo_accept: a listener that is shut down after the first suspension. */
struct acc_ctx {
    int lfd;
    long live;
    struct sockaddr_in addr;
};

static void acc_setup(void *v)
{
    struct acc_ctx *c = v;

    c->lfd = pd_test_listener(&c->addr);
    c->live = 0;
}

static void acc_init(void *self, void *v)
{
    struct acc_ctx *c = v;

    echo_accept_init(self, c->lfd, 8, &c->live, NULL, 50);
}

static void acc_progress(void *v, int when)
{
    struct acc_ctx *c = v;

    if (when == PD_HARNESS_RUN_SUSPENDED)
        shutdown(c->lfd, SHUT_RDWR); /* the pending accept fails: -EINVAL */
}

static void acc_after(void *v, const void *out)
{
    struct acc_ctx *c = v;

    if (out)
        ck_assert_int_eq(*(const long *)out, -EINVAL);
    ck_assert_int_eq(c->live, 0);
}

static void acc_cleanup(void *v)
{
    struct acc_ctx *c = v;

    close(c->lfd);
}

/* echo_client: the fixture is the echo server, one step at a time. */
struct cli_ctx {
    int lfd, conn;
    struct sockaddr_in addr;
};

static void cli_setup(void *v)
{
    struct cli_ctx *c = v;

    c->lfd = pd_test_listener(&c->addr);
    fcntl(c->lfd, F_SETFL, O_NONBLOCK);
    c->conn = -1;
}

static void cli_init(void *self, void *v)
{
    struct cli_ctx *c = v;

    echo_client_init(self, (const struct sockaddr *)&c->addr, sizeof(c->addr), 16, 2, 5000);
}

/* Echoes only when the harness would wait: every suspension sees I/O pending. */
static void cli_progress(void *v, int when)
{
    struct cli_ctx *c = v;
    char buf[64];
    ssize_t n;

    if (when != PD_HARNESS_WAITING)
        return;
    if (c->conn < 0) {
        c->conn = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c->conn < 0)
            return;
    }
    /*
     * The echo peer. A client that gave up (a reset or error the simulator
     * injected) may have closed its end with data unread: the write then
     * fails, and the peer stops echoing, as a real server would.
     */
    while ((n = read(c->conn, buf, sizeof(buf))) > 0)
        if (write(c->conn, buf, (size_t)n) != n)
            break;
}

static void cli_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const long *)out, 2);
}

static void cli_cleanup(void *v)
{
    struct cli_ctx *c = v;

    if (c->conn >= 0)
        close(c->conn);
    close(c->lfd);
}

/* signal_wait: SIGUSR1, blocked, raised after the first suspension. */
struct sig_ctx {
    int sfd;
    sigset_t mask;
};

static void sig_setup(void *v)
{
    struct sig_ctx *c = v;

    sigemptyset(&c->mask);
    sigaddset(&c->mask, SIGUSR1);
    ck_assert_int_eq(sigprocmask(SIG_BLOCK, &c->mask, NULL), 0);
    c->sfd = signalfd(-1, &c->mask, SFD_CLOEXEC);
    ck_assert_int_ge(c->sfd, 0);
}

static void sig_init(void *self, void *v)
{
    struct sig_ctx *c = v;

    signal_wait_init(self, c->sfd);
}

static void sig_progress(void *v, int when)
{
    (void)v;
    if (when == PD_HARNESS_RUN_SUSPENDED)
        kill(getpid(), SIGUSR1);
}

static void sig_after(void *v, const void *out)
{
    (void)v;
    if (out) {
        pd_test_kernel_wrote((void *)out, sizeof(int));
        ck_assert_int_eq(*(const int *)out, SIGUSR1);
    }
}

/* A signal the cancelled read did not take is consumed here. */
static void sig_cleanup(void *v)
{
    struct sig_ctx *c = v;
    struct timespec zero = { 0, 0 };

    while (sigtimedwait(&c->mask, NULL, &zero) > 0)
        ;
    close(c->sfd);
}

/*
 * echo_idle: two sweeps of an empty list of connections. What matters
 * here is the sweeper's own destruction at each of its timeouts; the
 * sweeps themselves are tested through the echo server's idle timeout.
 */
struct idle_ctx {
    echo_link *head;
};

static void idle_setup(void *v)
{
    struct idle_ctx *c = v;

    c->head = NULL;
}

static void idle_init(void *self, void *v)
{
    struct idle_ctx *c = v;

    echo_idle_init(self, &c->head, 10, 2);
}

static void idle_after(void *v, const void *out)
{
    struct idle_ctx *c = v;

    if (out)
        ck_assert_int_eq(*(const int *)out, 0);
    ck_assert_ptr_null(c->head);
}

/*
 * Every spec in specs/ (and td_child, a teardown that awaits a child), with
 * a fixture and the least number of suspension points its run must have.
 */
static struct pipe_ctx rf_pipe_c, wa_c, rt_c, rd_c;
static struct file_ctx rf_file_c, cf_c, co_c, fo_c;
static struct pair_ctx pc_c;
static struct td_ctx td_c;
static struct conn_ctx conn_c;
static struct acc_ctx acc_c;
static struct cli_ctx cli_c;
static struct sig_ctx sig_c;
static struct idle_ctx idle_c;

/*
 * inline: the spec's requests all complete at submission on these
 * fixtures (an openat of a local path, a read of a cached file: io_uring
 * tries them without blocking first), so no destruction can find one in
 * flight; the harness still catches them queued and completed-not-reaped.
 */
static const struct {
    const char *label;
    pd_harness_case c;
    int min_points;
    int inline_only;
} cases[] = {
    { "read_file (pipe)", { "read_file", &read_file_vtable, 1, &rf_pipe_c, pipe_setup,
                            rf_pipe_init, rf_pipe_feed, rf_pipe_after, pipe_cleanup }, 4, 0 },
    { "read_file (file)", { "read_file", &read_file_vtable, 1, &rf_file_c, file_setup,
                            rf_file_init, NULL, rf_file_after, file_cleanup }, 2, 1 },
    { "write_all", { "write_all", &write_all_vtable, 0, &wa_c, pipe_setup, wa_init,
                     wa_drain, wa_after, pipe_cleanup }, 2, 0 },
    { "copy_file", { "copy_file", &copy_file_vtable, 1, &cf_c, file_setup, cf_init,
                     NULL, cf_after, file_cleanup }, 8, 0 },
    { "copy_one", { "copy_one", &copy_one_vtable, 0, &co_c, file_setup, co_init,
                    NULL, co_after, file_cleanup }, 8, 0 },
    { "sleep_ms", { "sleep_ms", &sleep_ms_vtable, 0, NULL, nothing, sl_init, NULL,
                    NULL, nothing }, 1, 0 },
    { "read_timeout", { "read_timeout", &read_timeout_vtable, 0, &rt_c, pipe_setup,
                        rt_init, NULL, deadline_after, pipe_cleanup }, 1, 0 },
    { "read_deadline", { "read_deadline", &read_deadline_vtable, 0, &rd_c, pipe_setup,
                         rd_init, NULL, deadline_after, pipe_cleanup }, 1, 0 },
    { "first_of", { "first_of", &first_of_vtable, 0, &fo_c, file_setup, fo_init, NULL,
                    fo_after, file_cleanup }, 1, 1 },
    { "pair_copy", { "pair_copy", &pair_copy_vtable, 0, &pc_c, pc_setup, pc_init, NULL,
                     pc_after, pc_cleanup }, 10, 0 },
    { "echo_conn", { "echo_conn", &echo_conn_vtable, 1, &conn_c, conn_setup, conn_init,
                     conn_progress, conn_after, conn_cleanup }, 4, 0 },
    { "echo_accept", { "echo_accept", &echo_accept_vtable, 0, &acc_c, acc_setup,
                       acc_init, acc_progress, acc_after, acc_cleanup }, 1, 0 },
    { "echo_client", { "echo_client", &echo_client_vtable, 0, &cli_c, cli_setup,
                       cli_init, cli_progress, cli_after, cli_cleanup }, 5, 0 },
    { "echo_idle", { "echo_idle", &echo_idle_vtable, 0, &idle_c, idle_setup,
                     idle_init, NULL, idle_after, idle_setup }, 2, 0 },
    { "signal_wait", { "signal_wait", &signal_wait_vtable, 0, &sig_c, sig_setup,
                       sig_init, sig_progress, sig_after, sig_cleanup }, 1, 0 },
    { "td_child (test)", { "td_child", &td_child_vtable, 1, &td_c, td_setup, td_init,
                           td_progress, NULL, td_cleanup }, 1, 0 },
};

START_TEST(cancel_points)
{
    pd_harness_stats st;

    pd_harness_run(&cases[_i].c, &st);
    fprintf(stderr, "  cancel points: %-18s %3d suspension points, %4d destructions "
            "checked (%d in flight, %d queued, %d completed)\n", cases[_i].label,
            st.points, st.runs, st.in_flight, st.queued, st.completed);
    ck_assert_int_ge(st.points, cases[_i].min_points);
    /* Every kernel state was reached: the fixture keeps requests pending. */
    ck_assert_int_gt(st.queued, 0);
    ck_assert_int_gt(st.completed, 0);
    /*
     * The simulator without faults runs every file op at once (with
     * faults, some wait "on a worker" for a few turns).
     */
    if (!cases[_i].inline_only && !pd_test_sim_inline())
        ck_assert_int_gt(st.in_flight, 0);
}
END_TEST

Suite *pd_suite_cancel_points(void)
{
    Suite *s = suite_create("cancel at every suspension point");
    TCase *tc = tcase_create("specs");

    tcase_add_loop_test(tc, cancel_points, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_set_timeout(tc, 120);
    /* The cancel-point tests: make explore runs them under the simulator. */
    tcase_set_tags(tc, "harness");
    suite_add_tcase(s, tc);
    return s;
}
