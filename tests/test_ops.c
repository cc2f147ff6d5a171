/*
 * The io ops of the op table beyond the first thirteen: file-system ops
 * (fs_ops), pipe ops (pipe_ops) and socket ops (net_ops), each on its happy
 * path, cancelled, and under the cancel-at-every-suspension-point harness.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_ops.h"
#include "harness.h"
#include "listen_ops.h"
#include "net_ops.h"
#include "paren_ms.h"
#include "pipe_ops.h"
#include "testutil.h"
#include "zc_send.h"

/* Whether path is gone: what every destruction of fs_ops must leave. */
static int pd_gone(const char *path)
{
    struct stat st;

    return stat(path, &st) < 0 && errno == ENOENT;
}

/* --- fs_ops: mkdirat, openat2, writev, ftruncate, statx, renameat, unlinkat --- */

START_TEST(fs_ops_runs_every_op)
{
    char dir[128];
    long out = 0;
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count();

    pd_test_tmp_path(dir, sizeof(dir), "fsops");
    ck_assert_int_eq(fs_ops_block_on(rt, dir, &out), 0);
    /* 10 bytes written, truncated to 7 where the kernel has ftruncate. */
    ck_assert_int_eq(out, rt->has_ftruncate ? 7 : 10);
    ck_assert(pd_gone(dir));
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_runtime_free(rt);
}
END_TEST

/* Where the kernel lacks IORING_OP_FTRUNCATE, the op says so at once. */
START_TEST(fs_ops_ftruncate_missing_is_eopnotsupp)
{
    char dir[128];
    long out = 0;
    pd_runtime *rt = pd_test_rt();
    pd_stats before, after;

    rt->has_ftruncate = 0; /* what the probe finds on kernels before 6.9 */
    pd_test_tmp_path(dir, sizeof(dir), "fsops");
    pd_runtime_stats(rt, &before);
    ck_assert_int_eq(fs_ops_block_on(rt, dir, &out), 0);
    pd_runtime_stats(rt, &after);
    ck_assert_int_eq(out, 10);
    /* Eight ops reached the kernel: mkdir, open, writev, close, statx,
     * rename and two unlinks; the ftruncate did not. */
    ck_assert_uint_eq(after.ops_submitted - before.ops_submitted, 8);
    ck_assert(pd_gone(dir));
    pd_runtime_free(rt);
}
END_TEST

START_TEST(fs_ops_existing_dir_is_eexist)
{
    char dir[128];
    long out = 0;
    pd_runtime *rt = pd_test_rt();

    pd_test_tmp_path(dir, sizeof(dir), "fsops");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(fs_ops_block_on(rt, dir, &out), 0);
    ck_assert_int_eq(out, -EEXIST);
    ck_assert_int_eq(rmdir(dir), 0); /* ours, not removed by the future */
    pd_runtime_free(rt);
}
END_TEST

/* Cancelled after the file was created: the teardown removes file and dir. */
START_TEST(fs_ops_cancel_removes_what_it_made)
{
    char dir[128], file[160];
    pd_runtime *rt = pd_test_rt();
    struct stat st;
    pd_task *t;
    int turns = 0;

    pd_test_tmp_path(dir, sizeof(dir), "fsops");
    snprintf(file, sizeof(file), "%s/a", dir);
    t = fs_ops_spawn(rt, dir);
    ck_assert_ptr_nonnull(t);
    while (stat(file, &st) < 0 && turns++ < 100)
        ck_assert_int_ge(pd_run_once(rt, 1), 1);
    ck_assert_int_eq(stat(file, &st), 0);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert(pd_gone(dir));
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

/* --- pipe_ops: poll_add, splice, readv --- */

START_TEST(pipe_ops_moves_and_reads_back)
{
    int in[2], mid[2];
    long out = 0;
    pd_runtime *rt = pd_test_rt();
    pipe_ops f;

    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(mid, O_CLOEXEC), 0);
    pd_test_write(in[1], "abcdefgh", 8);
    pipe_ops_init(&f, in[0], mid);
    ck_assert_int_eq(pd_block_on(rt, pipe_ops_dyn(&f), &out), 0);
    ck_assert_int_eq(out, 8);
    pd_test_kernel_wrote(f.a, sizeof(f.a));
    pd_test_kernel_wrote(f.b, sizeof(f.b));
    /* readv filled the first iovec's 3 bytes, then the second's. */
    ck_assert_mem_eq(f.a, "abc", 3);
    ck_assert_mem_eq(f.b, "defgh", 5);
    close(in[0]);
    close(in[1]);
    close(mid[0]);
    close(mid[1]);
    pd_runtime_free(rt);
}
END_TEST

/* A cancelled poll_add takes nothing: data written later is all there. */
START_TEST(pipe_ops_cancelled_poll_takes_nothing)
{
    int in[2], mid[2];
    char buf[16];
    pd_runtime *rt = pd_test_rt();
    pd_task *t;

    ck_assert_int_eq(pipe2(in, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(pipe2(mid, O_CLOEXEC | O_NONBLOCK), 0);
    t = pipe_ops_spawn(rt, in[0], mid);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 1);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    pd_test_write(in[1], "late", 4);
    ck_assert_int_eq(read(in[0], buf, sizeof(buf)), 4);
    ck_assert_int_eq(read(mid[0], buf, sizeof(buf)), -1);
    ck_assert_int_eq(errno, EAGAIN);
    pd_task_release(t);
    pd_runtime_free(rt);
    close(in[0]);
    close(in[1]);
    close(mid[0]);
    close(mid[1]);
}
END_TEST

/* --- net_ops: accept with addr, recvmsg, sendmsg, send_zc, poll_add --- */

/* Connects a blocking client to addr; returns it and its port (host order). */
static int pd_client(const struct sockaddr_in *addr, long *port)
{
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&me, &len), 0);
    *port = ntohs(me.sin_port);
    return fd;
}

START_TEST(net_ops_echoes_twice_and_names_the_peer)
{
    struct sockaddr_in addr;
    char buf[16];
    long port;
    pd_runtime *rt = pd_test_rt();
    int lfd = pd_test_listener(&addr), cfd, got = 0;
    pd_task *t = net_ops_spawn(rt, lfd);
    pd_stats s;

    ck_assert_ptr_nonnull(t);
    cfd = pd_client(&addr, &port);
    pd_test_write(cfd, "ping", 4);
    fcntl(cfd, F_SETFL, O_NONBLOCK);
    while (got < 8) {
        ssize_t n = read(cfd, buf + got, sizeof(buf) - (size_t)got);

        if (n > 0)
            got += (int)n;
        else
            ck_assert_int_ge(pd_run_once(rt, 1), 1);
    }
    ck_assert_mem_eq(buf, "pingping", 8);
    shutdown(cfd, SHUT_WR);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_eq(*(const long *)pd_task_output(t), port);
    /* Both completions of the zero-copy send were awaited: none is owed. */
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_uint_eq(s.ops_submitted, s.ops_completed);
    /* The teardown closed the connection: the client reads end of stream. */
    fcntl(cfd, F_SETFL, 0);
    ck_assert_int_eq(read(cfd, buf, sizeof(buf)), 0);
    pd_task_release(t);
    pd_runtime_free(rt);
    close(cfd);
    close(lfd);
}
END_TEST

/*
 * A zero-copy send that waits is cancelled by its task's cancel: the
 * cancel names the request's user_data, which is tagged (PD__TAG_RARE), so
 * the cancel must carry the tag to find it. The send waits on a connection
 * that cannot complete (the listener's queue is full), so it takes no byte
 * (a byte taken would keep its notification owed until the peer read it).
 * A cancel that missed would leave the send, and pd_task_wait, waiting for
 * as long as the connection does (minutes of SYN retries).
 */
START_TEST(zc_send_waiting_is_cancelled)
{
    static const char buf[64];
    struct sockaddr_in addr;
    long port;
    pd_runtime *rt = pd_test_rt();
    int lfd = pd_test_listener(&addr), full, fd, i;
    pd_task *t;

    /* A queue of one, filled: the next connection's SYNs are dropped. */
    ck_assert_int_eq(listen(lfd, 0), 0);
    full = pd_client(&addr, &port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (const struct sockaddr *)&addr, sizeof(addr)), -1);
    ck_assert_int_eq(errno, EINPROGRESS);
    t = zc_send_spawn(rt, fd, buf, sizeof(buf));
    ck_assert_ptr_nonnull(t);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(pd_run_once(rt, 0), 1);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_RUNNING);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_int_eq(pd_run(rt), 0);
    pd_task_release(t);
    pd_runtime_free(rt);
    close(fd);
    close(full);
    close(lfd);
}
END_TEST

/* A cancelled accept takes no connection: it stays queued for the next. */
START_TEST(net_ops_cancelled_accept_leaves_the_connection_queued)
{
    struct sockaddr_in addr;
    long port;
    pd_runtime *rt = pd_test_rt();
    int lfd = pd_test_listener(&addr), cfd, afd;
    pd_task *t = net_ops_spawn(rt, lfd);

    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 1);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    cfd = pd_client(&addr, &port);
    afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(afd, 0);
    close(afd);
    close(cfd);
    pd_task_release(t);
    pd_runtime_free(rt);
    close(lfd);
}
END_TEST

/* --- listen_ops: socket, bind, listen in the spec --- */

/*
 * The listener the spec made takes a connection and its byte, through the
 * kernel's ops (_i == 0, where the probe found them: 7 requests reach the
 * engine) or their syscalls (_i == 1, as on kernels before 6.11: bind and
 * listen do not reach it, and the spec sees the same results).
 */
START_TEST(listen_ops_listens_in_the_spec)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    pd_runtime *rt = pd_test_rt();
    int port = 0, cfd, fds = pd_test_fd_count(), turns = 0;
    pd_stats before, after;
    pd_task *t;

    if (_i == 1)
        rt->has_bind = rt->has_listen = 0;
    pd_runtime_stats(rt, &before);
    t = listen_ops_spawn(rt, &port);
    ck_assert_ptr_nonnull(t);
    /* Turns without waiting: the accept after the listen would not end. */
    while (port == 0 && turns++ < 100000)
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_int_gt(port, 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(cfd, 0);
    ck_assert_int_eq(connect(cfd, (const struct sockaddr *)&addr, sizeof(addr)), 0);
    pd_test_write(cfd, "L", 1);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_eq(*(const int *)pd_task_output(t), 'L');
    pd_runtime_stats(rt, &after);
    ck_assert_uint_eq(after.ops_submitted - before.ops_submitted, _i == 1 ? 5 : 7);
    pd_task_release(t);
    close(cfd);
    /* The teardown closed the listener and the connection. */
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_runtime_free(rt);
}
END_TEST

/* --- the harness over the three --- */

struct fs_ctx {
    char dir[128];
};

static void fs_setup(void *v)
{
    struct fs_ctx *c = v;

    pd_test_tmp_path(c->dir, sizeof(c->dir), "fsops-h");
}

static void fs_init(void *self, void *v)
{
    struct fs_ctx *c = v;

    fs_ops_init(self, c->dir);
}

/* On every path, what the future created is gone afterwards. */
static void fs_after(void *v, const void *out)
{
    struct fs_ctx *c = v;

    if (out)
        ck_assert_int_ge(*(const long *)out, 7);
    ck_assert_msg(pd_gone(c->dir), "%s was left behind", c->dir);
}

static void fs_cleanup(void *v)
{
    struct fs_ctx *c = v;
    char path[160];

    snprintf(path, sizeof(path), "%s/a", c->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/b", c->dir);
    unlink(path);
    rmdir(c->dir);
}

struct pops_ctx {
    int in[2], mid[2];
    int fed;
};

static void pops_setup(void *v)
{
    struct pops_ctx *c = v;

    ck_assert_int_eq(pipe2(c->in, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(pipe2(c->mid, O_CLOEXEC | O_NONBLOCK), 0);
    c->fed = 0;
}

static void pops_init(void *self, void *v)
{
    struct pops_ctx *c = v;

    pipe_ops_init(self, c->in[0], c->mid);
}

/* The poll waits until the harness would block: then the data comes. */
static void pops_progress(void *v, int when)
{
    struct pops_ctx *c = v;

    if (when == PD_HARNESS_WAITING && c->fed++ == 0)
        pd_test_write(c->in[1], "abcdef", 6);
}

/* Every byte is accounted for: read by the future, or still in a pipe. */
static void pops_after(void *v, const void *out)
{
    struct pops_ctx *c = v;
    char buf[64];
    ssize_t in = read(c->in[0], buf, sizeof(buf));
    ssize_t mid = read(c->mid[0], buf, sizeof(buf));

    if (out) {
        ck_assert_int_eq(*(const long *)out, 6);
        ck_assert_int_lt(in, 0);
        ck_assert_int_lt(mid, 0);
    } else {
        ck_assert_int_le((in > 0 ? in : 0) + (mid > 0 ? mid : 0), 6);
    }
}

static void pops_cleanup(void *v)
{
    struct pops_ctx *c = v;

    close(c->in[0]);
    close(c->in[1]);
    close(c->mid[0]);
    close(c->mid[1]);
}

struct nops_ctx {
    int lfd, cfd, step;
    char buf[16];
    int got;
    struct sockaddr_in addr;
};

static void nops_setup(void *v)
{
    struct nops_ctx *c = v;

    c->lfd = pd_test_listener(&c->addr);
    c->cfd = -1;
    c->step = 0;
    c->got = 0;
}

static void nops_init(void *self, void *v)
{
    struct nops_ctx *c = v;

    net_ops_init(self, c->lfd);
}

/*
 * The peer acts only when the harness would block, one step at a time:
 * connect, send "ping", read the two echoes, hang up. So every suspension
 * of the future has a request in flight.
 */
static void nops_progress(void *v, int when)
{
    struct nops_ctx *c = v;
    ssize_t n;

    if (when != PD_HARNESS_WAITING)
        return;
    switch (c->step) {
    case 0:
        c->cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        PD_CHECK(c->cfd >= 0);
        PD_CHECK(connect(c->cfd, (const struct sockaddr *)&c->addr, sizeof(c->addr)) == 0);
        fcntl(c->cfd, F_SETFL, O_NONBLOCK);
        c->step = 1;
        break;
    case 1:
        PD_CHECK(write(c->cfd, "ping", 4) == 4);
        c->step = 2;
        break;
    case 2:
        n = read(c->cfd, c->buf + c->got, sizeof(c->buf) - (size_t)c->got);
        if (n > 0)
            c->got += (int)n;
        if (c->got >= 8) {
            shutdown(c->cfd, SHUT_WR);
            c->step = 3;
        }
        break;
    default:
        break;
    }
}

static void nops_after(void *v, const void *out)
{
    struct nops_ctx *c = v;

    if (out) {
        struct sockaddr_in me;
        socklen_t len = sizeof(me);

        ck_assert_int_eq(getsockname(c->cfd, (struct sockaddr *)&me, &len), 0);
        ck_assert_int_eq(*(const long *)out, ntohs(me.sin_port));
    }
}

static void nops_cleanup(void *v)
{
    struct nops_ctx *c = v;

    if (c->cfd >= 0)
        close(c->cfd);
    close(c->lfd);
}

struct lops_ctx {
    int port, cfd;
};

static void lops_setup(void *v)
{
    struct lops_ctx *c = v;

    c->port = 0;
    c->cfd = -1;
}

static void lops_init(void *self, void *v)
{
    struct lops_ctx *c = v;

    listen_ops_init(self, &c->port);
}

/* Connects and sends a byte once the spec listens and the harness would block. */
static void lops_progress(void *v, int when)
{
    struct lops_ctx *c = v;
    struct sockaddr_in a = { .sin_family = AF_INET };

    if (when != PD_HARNESS_WAITING || c->port == 0 || c->cfd >= 0)
        return;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)c->port);
    c->cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    PD_CHECK(c->cfd >= 0);
    PD_CHECK(connect(c->cfd, (const struct sockaddr *)&a, sizeof(a)) == 0);
    PD_CHECK(write(c->cfd, "L", 1) == 1);
}

static void lops_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const int *)out, 'L');
}

static void lops_cleanup(void *v)
{
    struct lops_ctx *c = v;

    if (c->cfd >= 0)
        close(c->cfd);
}

static struct fs_ctx fs_c;
static struct lops_ctx lops_c;
static struct pops_ctx pops_c;
static struct nops_ctx nops_c;

static const struct {
    const char *label;
    pd_harness_case c;
    int min_points;
} op_cases[] = {
    { "fs_ops", { "fs_ops", &fs_ops_vtable, 1, &fs_c, fs_setup, fs_init, NULL,
                  fs_after, fs_cleanup }, 9 },
    { "pipe_ops", { "pipe_ops", &pipe_ops_vtable, 0, &pops_c, pops_setup, pops_init,
                    pops_progress, pops_after, pops_cleanup }, 3 },
    { "net_ops", { "net_ops", &net_ops_vtable, 1, &nops_c, nops_setup, nops_init,
                   nops_progress, nops_after, nops_cleanup }, 5 },
    { "listen_ops", { "listen_ops", &listen_ops_vtable, 1, &lops_c, lops_setup, lops_init,
                      lops_progress, lops_after, lops_cleanup }, 5 },
};

START_TEST(op_cancel_points)
{
    pd_harness_stats st;

    pd_harness_run(&op_cases[_i].c, &st);
    ck_assert_int_ge(st.points, op_cases[_i].min_points);
}
END_TEST

/* --- user expressions in generated arithmetic --- */

/*
 * `timeout: {ms: self->a + self->b}` is one value of milliseconds: with
 * a = 50 and b = 0 it is 50 ms, and the 5 ms timer declared first wins.
 * Unparenthesised, the generated `a + b * 1000000LL` was 50 ns, and the
 * sum won. (Had both fired by the reap, the first declared wins the tie,
 * so the test cannot fail because the machine is slow.)
 */
START_TEST(timeout_ms_sum_is_one_value)
{
    pd_runtime *rt = pd_test_rt();
    int out = 0;
    paren_ms f;

    paren_ms_init(&f, 50, 0, 5000000);
    ck_assert_int_eq(pd_block_on(rt, paren_ms_dyn(&f), &out), 0);
    ck_assert_int_eq(out, 1);
    pd_test_quiet(rt);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_io_ops(void)
{
    Suite *s = suite_create("io ops");
    TCase *tc = tcase_create("ops");
    TCase *h = tcase_create("cancel points");

    tcase_add_test(tc, fs_ops_runs_every_op);
    tcase_add_test(tc, fs_ops_ftruncate_missing_is_eopnotsupp);
    tcase_add_test(tc, fs_ops_existing_dir_is_eexist);
    tcase_add_test(tc, fs_ops_cancel_removes_what_it_made);
    tcase_add_test(tc, pipe_ops_moves_and_reads_back);
    tcase_add_test(tc, pipe_ops_cancelled_poll_takes_nothing);
    tcase_add_test(tc, net_ops_echoes_twice_and_names_the_peer);
    tcase_add_test(tc, net_ops_cancelled_accept_leaves_the_connection_queued);
    tcase_add_test(tc, zc_send_waiting_is_cancelled);
    tcase_add_test(tc, timeout_ms_sum_is_one_value);
    tcase_add_loop_test(tc, listen_ops_listens_in_the_spec, 0, 2);
    suite_add_tcase(s, tc);
    tcase_add_loop_test(h, op_cancel_points, 0, (int)(sizeof(op_cases) / sizeof(op_cases[0])));
    tcase_set_timeout(h, 120);
    /* The cancel-point tests: make explore runs them under the simulator. */
    tcase_set_tags(h, "harness");
    suite_add_tcase(s, h);
    return s;
}
