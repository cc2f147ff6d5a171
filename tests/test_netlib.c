/*
 * The library futures for servers: tcp_listen (a listener in one await,
 * IPv4 and IPv6, the port it got, every failure closing what it opened)
 * and send_all (all of a buffer on a socket, short sends resumed, a peer
 * that is gone giving -EPIPE rather than SIGPIPE), on real sockets, each
 * also under the cancel-at-every-suspension-point harness; and a multishot
 * accept out of descriptors, which waits and accepts again (the runtime's
 * backoff), destroyed at every point of it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "ms_accept.h"
#include "send_all.h"
#include "tcp_listen.h"
#include "testutil.h"

/* --- tcp_listen --- */

/* Runs tcp_listen(host, port, backlog, &bound) to its end; its output. */
static int listen_on(const char *host, int port, int *bound)
{
    pd_runtime *rt = pd_test_rt();
    tcp_listen f;
    int out = -1;

    tcp_listen_init(&f, host, port, 16, bound);
    ck_assert_int_eq(pd_block_on(rt, tcp_listen_dyn(&f), &out), 0);
    pd_runtime_free(rt);
    return out;
}

/* A connection to host:port is accepted on lfd and carries a byte. */
static void assert_serves(int lfd, int family, const char *host, int port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), a;
    char b = 0;

    ck_assert_int_ge(c, 0);
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        ck_assert_int_eq(inet_pton(AF_INET, host, &v4->sin_addr), 1);
    } else {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        ck_assert_int_eq(inet_pton(AF_INET6, host, &v6->sin6_addr), 1);
    }
    ck_assert_int_eq(connect(c, (struct sockaddr *)&ss, sizeof(ss)), 0);
    a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(a, 0);
    ck_assert_int_eq(write(c, "x", 1), 1);
    ck_assert_int_eq(read(a, &b, 1), 1);
    ck_assert_int_eq(b, 'x');
    close(a);
    close(c);
}

START_TEST(tcp_listen_ipv4_free_port)
{
    int fds = pd_test_fd_count(), port = -1, lfd, on = 0;
    socklen_t len = sizeof(on);

    lfd = listen_on("127.0.0.1", 0, &port);
    ck_assert_msg(lfd >= 0, "tcp_listen: %s", strerror(-lfd));
    ck_assert_int_gt(port, 0);
    /* The caller's, listening, close-on-exec, and restartable at once. */
    ck_assert_int_eq(pd_test_fd_count(), fds + 1);
    ck_assert_int_eq(fcntl(lfd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    ck_assert_int_eq(getsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, &len), 0);
    ck_assert_int_ne(on, 0);
    assert_serves(lfd, AF_INET, "127.0.0.1", port);
    close(lfd);
}
END_TEST

START_TEST(tcp_listen_ipv6)
{
    int port = -1, lfd, probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (probe < 0) {
        fprintf(stderr, "tcp_listen_ipv6: skipped, no IPv6 (%s)\n", strerror(errno));
        return;
    }
    close(probe);
    lfd = listen_on("::1", 0, &port);
    if (lfd == -EADDRNOTAVAIL) {
        fprintf(stderr, "tcp_listen_ipv6: skipped, no ::1\n");
        return;
    }
    ck_assert_msg(lfd >= 0, "tcp_listen: %s", strerror(-lfd));
    ck_assert_int_gt(port, 0);
    assert_serves(lfd, AF_INET6, "::1", port);
    close(lfd);
}
END_TEST

/* A given port is the port bound; bound may be NULL. */
START_TEST(tcp_listen_given_port_and_no_bound)
{
    int port = -1, lfd = listen_on("127.0.0.1", 0, &port), again;

    ck_assert_int_ge(lfd, 0);
    close(lfd);
    /* SO_REUSEADDR: the same port again at once, whatever TIME_WAIT says. */
    again = listen_on("127.0.0.1", port, NULL);
    ck_assert_msg(again >= 0, "tcp_listen: %s", strerror(-again));
    assert_serves(again, AF_INET, "127.0.0.1", port);
    close(again);
}
END_TEST

/* Every failure closes the socket it made, and says why. */
START_TEST(tcp_listen_failures_close_what_they_opened)
{
    int fds = pd_test_fd_count(), port = -1, lfd, bound = -7;

    ck_assert_int_eq(listen_on("localhost", 0, &bound), -EINVAL);   /* numeric only */
    ck_assert_int_eq(listen_on("127.0.0.1", 65536, &bound), -EINVAL);
    ck_assert_int_eq(listen_on("127.0.0.1", -1, &bound), -EINVAL);
    ck_assert_int_eq(listen_on("192.0.2.1", 0, &bound), -EADDRNOTAVAIL); /* not ours */
    ck_assert_int_eq(bound, -7);     /* set only on success */
    ck_assert_int_eq(pd_test_fd_count(), fds);
    lfd = listen_on("127.0.0.1", 0, &port);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(listen_on("127.0.0.1", port, &bound), -EADDRINUSE);
    ck_assert_int_eq(pd_test_fd_count(), fds + 1);
    close(lfd);
}
END_TEST

/* Out of descriptors: -EMFILE, and nothing is left open. */
START_TEST(tcp_listen_emfile)
{
    pd_runtime *rt = pd_test_rt();
    struct rlimit old, lim;
    tcp_listen f;
    int out = 0, low = fcntl(0, F_DUPFD_CLOEXEC, 0), fds;

    ck_assert_int_ge(low, 0);
    close(low);
    fds = pd_test_fd_count();
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)low;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    tcp_listen_init(&f, "127.0.0.1", 0, 16, NULL);
    ck_assert_int_eq(pd_block_on(rt, tcp_listen_dyn(&f), &out), 0);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_int_eq(out, -EMFILE);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_runtime_free(rt);
}
END_TEST

/* --- send_all --- */

/* A socketpair whose first end takes few bytes at a time. */
static void small_pair(int sv[2])
{
    int sz = 4096;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
}

/* 1 MiB through a small socket buffer: many short sends, every byte once, in order. */
START_TEST(send_all_resumes_short_sends)
{
    enum { LEN = 1 << 20 };
    char *src = malloc(LEN), *got = malloc(LEN);
    pd_runtime *rt = pd_test_rt();
    size_t have = 0;
    pd_stats st;
    pd_task *t;
    int sv[2];

    ck_assert_ptr_nonnull(src);
    ck_assert_ptr_nonnull(got);
    for (size_t i = 0; i < LEN; i++)
        src[i] = (char)(i * 131 + i / 4099);
    small_pair(sv);
    t = send_all_spawn(rt, sv[0], src, LEN);
    ck_assert_ptr_nonnull(t);
    /* The test reads as the future sends; once it is done, what is left. */
    for (int done = 0; !done;) {
        ssize_t n = 0;

        done = pd_task_state(t) != PD_TASK_RUNNING;
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        while (have < LEN && (n = recv(sv[1], got + have, LEN - have, MSG_DONTWAIT)) > 0)
            have += (size_t)n;
        ck_assert(have == LEN || (n < 0 && errno == EAGAIN));
    }
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_eq(*(const ssize_t *)pd_task_output(t), LEN);
    ck_assert_uint_eq(have, LEN);
    ck_assert(memcmp(src, got, LEN) == 0);
    pd_runtime_stats(rt, &st);
    ck_assert_uint_gt(st.ops_submitted, 2);   /* it did resume */
    pd_task_release(t);
    pd_runtime_free(rt);
    close(sv[0]);
    close(sv[1]);
    free(src);
    free(got);
}
END_TEST

/* A peer that is gone: -EPIPE, and no SIGPIPE (its default action would end the test). */
START_TEST(send_all_peer_gone_is_epipe_not_sigpipe)
{
    pd_runtime *rt = pd_test_rt();
    ssize_t out = 0;
    send_all f;
    int sv[2];

    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    close(sv[1]);
    send_all_init(&f, sv[0], "hello", 5);
    ck_assert_int_eq(pd_block_on(rt, send_all_dyn(&f), &out), 0);
    ck_assert_int_eq(out, -EPIPE);
    send_all_init(&f, sv[0], "", 0);      /* nothing to send: done at once */
    ck_assert_int_eq(pd_block_on(rt, send_all_dyn(&f), &out), 0);
    ck_assert_int_eq(out, 0);
    pd_runtime_free(rt);
    close(sv[0]);
}
END_TEST

/* --- the harness --- */

/* tcp_listen: a listener on a free loopback port; its output is closed by the test. */
static int tl_port;

static void tl_nothing(void *v)
{
    (void)v;
}

static void tl_init(void *self, void *v)
{
    (void)v;
    tl_port = -1;
    tcp_listen_init(self, "127.0.0.1", 0, 4, &tl_port);
}

static void tl_after(void *v, const void *out)
{
    (void)v;
    if (out) {
        int lfd = *(const int *)out;

        ck_assert_int_ge(lfd, 0);
        ck_assert_int_gt(tl_port, 0);
        close(lfd);
    }
}

/* send_all: 256 KiB into a small socket buffer, drained whenever it waits. */
enum { SA_LEN = 256 << 10 };
struct sa_ctx {
    int sv[2];
    char buf[SA_LEN];
    char sink[16384];
};

static void sa_setup(void *v)
{
    struct sa_ctx *c = v;

    small_pair(c->sv);
    memset(c->buf, 'q', sizeof(c->buf));
}

static void sa_init(void *self, void *v)
{
    struct sa_ctx *c = v;

    send_all_init(self, c->sv[0], c->buf, SA_LEN);
}

static void sa_progress(void *v, int when)
{
    struct sa_ctx *c = v;

    if (when == PD_HARNESS_WAITING)
        while (recv(c->sv[1], c->sink, sizeof(c->sink), MSG_DONTWAIT) > 0)
            ;
}

static void sa_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const ssize_t *)out, SA_LEN);
}

static void sa_cleanup(void *v)
{
    struct sa_ctx *c = v;

    close(c->sv[0]);
    close(c->sv[1]);
}

static struct sa_ctx sa_c;

/*
 * ms_accept out of descriptors: a connection waits in the backlog, and
 * RLIMIT_NOFILE leaves no descriptor free from init on, so the accept
 * fails with EMFILE and backs off; the limit is given back while the
 * backoff's timer runs (the second wait), and the next accept takes the
 * connection. Every suspension point of that, the timer's included.
 */
struct ab_ctx {
    int lfd, c, waits, lowered;
    struct rlimit old;
};

static void ab_restore(struct ab_ctx *c)
{
    if (c->lowered) {
        setrlimit(RLIMIT_NOFILE, &c->old);
        c->lowered = 0;
    }
}

static void ab_setup(void *v)
{
    struct ab_ctx *c = v;
    struct sockaddr_in addr;

    c->lfd = pd_test_listener(&addr);
    c->c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c->c, 0);
    ck_assert_int_eq(connect(c->c, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &c->old), 0);
    c->lowered = 0;
}

static void ab_init(void *self, void *v)
{
    struct ab_ctx *c = v;
    struct rlimit lim = c->old;
    int low = fcntl(c->lfd, F_DUPFD_CLOEXEC, 0);

    ms_accept_init(self, c->lfd, 1);
    c->waits = 0;
    if (low < 0)
        return;
    close(low);
    lim.rlim_cur = (rlim_t)low;
    c->lowered = setrlimit(RLIMIT_NOFILE, &lim) == 0;
}

static void ab_progress(void *v, int when)
{
    struct ab_ctx *c = v;

    if (when == PD_HARNESS_WAITING && ++c->waits == 2)
        ab_restore(c);
}

static void ab_after(void *v, const void *out)
{
    struct ab_ctx *c = v;

    ab_restore(c);
    if (out)
        ck_assert_int_eq(*(const int *)out, 1);
}

static void ab_cleanup(void *v)
{
    struct ab_ctx *c = v;

    ab_restore(c);
    close(c->c);
    close(c->lfd);
}

static struct ab_ctx ab_c;

static const struct {
    pd_harness_case c;
    int min_points;
} net_cases[] = {
    { { "tcp_listen", &tcp_listen_vtable, 0, NULL, tl_nothing, tl_init, NULL, tl_after,
        tl_nothing }, 3 },
    { { "send_all", &send_all_vtable, 0, &sa_c, sa_setup, sa_init, sa_progress, sa_after,
        sa_cleanup }, 2 },
    { { "ms_accept", &ms_accept_vtable, 0, &ab_c, ab_setup, ab_init, ab_progress, ab_after,
        ab_cleanup }, 3 },
};

START_TEST(net_cancel_points)
{
    pd_harness_stats st;

    pd_harness_run(&net_cases[_i].c, &st);
    ck_assert_int_ge(st.points, net_cases[_i].min_points);
}
END_TEST

Suite *pd_suite_netlib(void)
{
    Suite *s = suite_create("spec tcp_listen and send_all");
    TCase *tc = tcase_create("tcp_listen and send_all");
    TCase *h = tcase_create("cancel points");

    tcase_add_test(tc, tcp_listen_ipv4_free_port);
    tcase_add_test(tc, tcp_listen_ipv6);
    tcase_add_test(tc, tcp_listen_given_port_and_no_bound);
    tcase_add_test(tc, tcp_listen_failures_close_what_they_opened);
    tcase_add_test(tc, tcp_listen_emfile);
    tcase_add_test(tc, send_all_resumes_short_sends);
    tcase_add_test(tc, send_all_peer_gone_is_epipe_not_sigpipe);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tcase_add_loop_test(h, net_cancel_points, 0, (int)(sizeof(net_cases) / sizeof(net_cases[0])));
    tcase_set_timeout(h, 120);
    tcase_set_tags(h, "harness");
    suite_add_tcase(s, h);
    return s;
}
