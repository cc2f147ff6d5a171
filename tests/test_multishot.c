/*
 * Multishot requests and provided buffer rings: buffer group API, multishot
 * accept cancelled at a random completion, multishot recv cancelled while
 * data keeps arriving, an empty ring (-ENOBUFS, then no spinning until a
 * buffer is back), KEEP and pd_buf members, sync drops and pd_runtime_free
 * with a multishot request armed, and the out-of-line completions a sync
 * drop may need; and the same requests as select branches (ms_select,
 * ms_sel_recv), whose then runs per completion while the select waits and
 * which are quiesced when another branch wins or the state is left; and
 * which buffers a group hands out (a window of few, hot buffers in the
 * ring, topped up as they are taken, widened by each -ENOBUFS).
 * Invariant 8 of docs/design.md: after any destruction every buffer is
 * back in its ring or held by a live pd_buf.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "grp_recv.h"
#include "ms_accept.h"
#include "ms_ids.h"
#include "ms_poll.h"
#include "ms_sel_mix.h"
#include "ms_recv.h"
#include "ms_sel_recv.h"
#include "ms_select.h"
#include "ms_stop.h"
#include "nops.h"
#include "sleep_ms.h"
#include "testutil.h"

/* Rounds of the randomised tests; `make soak` raises it. */
static int rounds(int dflt)
{
    const char *s = getenv("PD_SOAK_ROUNDS");
    int n = s ? atoi(s) : 0;

    return n > 0 ? n : dflt;
}

static pd_stats stats(pd_runtime *rt)
{
    pd_stats st;

    pd_runtime_stats(rt, &st);
    return st;
}

/* Nothing is owed by the kernel and nothing waits in the completion queue. */
static void assert_quiet(pd_runtime *rt)
{
    ck_assert_uint_eq(stats(rt).inflight_ops, 0);
    ck_assert_uint_eq(io_uring_cq_ready(&rt->ring), 0);
}

static int connect_to(const struct sockaddr_in *addr)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(c, 0);
    ck_assert_int_eq(connect(c, (const struct sockaddr *)addr, sizeof(*addr)), 0);
    return c;
}

/* The peer of c closed its end: c reads EOF (waits at most 5 s for it). */
static int sees_eof(int c)
{
    struct pollfd p = { .fd = c, .events = POLLIN };
    char b;

    if (poll(&p, 1, 5000) != 1)
        return 0;
    return read(c, &b, 1) == 0;
}

/* Accepts and closes whatever is left in the listener's backlog. */
static void drain_backlog(int lfd)
{
    int fl = fcntl(lfd, F_GETFL), fd;

    ck_assert_int_eq(fcntl(lfd, F_SETFL, fl | O_NONBLOCK), 0);
    while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(fd);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(fcntl(lfd, F_SETFL, fl), 0);
}

/*
 * Runs turns until *v reaches want. pd_run_once(rt, 1) would block after
 * the poll that got there, so this waits for the kernel only when nothing
 * is runnable.
 */
static void run_until(pd_runtime *rt, const long *v, long want)
{
    while (*v < want) {
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        if (*v < want && rt->ready_head == NULL)
            ck_assert_int_ge(pd__ring_submit_wait(rt, 1), 0);
    }
}

static void *task_self(pd_task *t)
{
    return t->self;
}

/* Runs rt until nothing is left; the long output of t, which must be DONE. */
static long run_long(pd_runtime *rt, pd_task *t)
{
    const long *out;

    ck_assert_int_eq(pd_run(rt), 0);
    out = pd_task_output(t);
    ck_assert_ptr_nonnull(out);
    return *out;
}

/* --- the group API --- */

START_TEST(test_bufgroup_api)
{
    pd_runtime *rt = pd_test_rt();
    pd_bufgroup *a, *b, *c;
    pd_buf empty = PD_BUF_EMPTY;

    ck_assert_int_eq(pd_bufgroup_new(rt, 0, 64, &a), -EINVAL);
    ck_assert_ptr_null(a);
    ck_assert_int_eq(pd_bufgroup_new(rt, 3, 64, &a), -EINVAL);
    ck_assert_int_eq(pd_bufgroup_new(rt, 65536, 64, &a), -EINVAL);
    ck_assert_int_eq(pd_bufgroup_new(rt, 4, 0, &a), -EINVAL);
    ck_assert_int_eq(pd_bufgroup_new(rt, 4, 64, &a), 0);
    ck_assert_int_eq(pd_bufgroup_new(rt, 8, 128, &b), 0);
    ck_assert_uint_eq(pd_bufgroup_available(a), 4);
    ck_assert_uint_eq(pd_bufgroup_available(b), 8);
    ck_assert_uint_ne(a->bgid, b->bgid);
    /* A freed id is reused: ids stay small however often groups come and go. */
    pd_bufgroup_free(a);
    ck_assert_int_eq(pd_bufgroup_new(rt, 2, 32, &c), 0);
    ck_assert_uint_eq(c->bgid, 0);
    pd_buf_release(&empty);
    pd_buf_release(&empty);
    ck_assert_ptr_null(empty.group);
    pd_bufgroup_free(NULL);
    pd_bufgroup_free(c);
    /* b is freed by pd_runtime_free. */
    pd_runtime_free(rt);
}
END_TEST

/*
 * Many groups: each gets an id no live group has, and a freed id is
 * reused before a new one is made. Taking an id costs O(1) amortised, so
 * this is quick; a search of the live groups for each candidate id would
 * be cubic in the groups made and outlast the test's timeout.
 */
#define MANY_GROUPS 4096

START_TEST(test_bufgroup_many_ids)
{
    static pd_bufgroup *g[MANY_GROUPS];
    static unsigned char used[65536];
    pd_runtime *rt = pd_test_rt();
    int i;

    memset(used, 0, sizeof(used));
    for (i = 0; i < MANY_GROUPS; i++) {
        ck_assert_int_eq(pd_bufgroup_new(rt, 1, 16, &g[i]), 0);
        ck_assert_msg(!used[g[i]->bgid], "group %d got id %u twice", i, g[i]->bgid);
        used[g[i]->bgid] = 1;
    }
    /* Every other one goes; the next ones take the freed ids. */
    for (i = 0; i < MANY_GROUPS; i += 2) {
        used[g[i]->bgid] = 0;
        pd_bufgroup_free(g[i]);
    }
    for (i = 0; i < MANY_GROUPS; i += 2) {
        ck_assert_int_eq(pd_bufgroup_new(rt, 1, 16, &g[i]), 0);
        ck_assert_uint_lt(g[i]->bgid, MANY_GROUPS);
        ck_assert_msg(!used[g[i]->bgid], "group %d got id %u twice", i, g[i]->bgid);
        used[g[i]->bgid] = 1;
    }
    /* A recv on a reused id works: it is the kernel's id too. */
    {
        int sv[2];
        long out = 0;
        ms_recv f;

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        pd_test_write(sv[1], "abc", 3);
        shutdown(sv[1], SHUT_WR);
        ms_recv_init(&f, sv[0], g[MANY_GROUPS - 2], 1L << 40, 0);
        ck_assert_int_eq(pd_block_on(rt, ms_recv_dyn(&f), &out), 0);
        ck_assert_int_eq(out, 3);
        close(sv[0]);
        close(sv[1]);
    }
    /* Once every group is gone, ids start from 0 again. */
    for (i = 0; i < MANY_GROUPS; i++)
        pd_bufgroup_free(g[i]);
    ck_assert_int_eq(pd_bufgroup_new(rt, 1, 16, &g[0]), 0);
    ck_assert_uint_eq(g[0]->bgid, 0);
    pd_runtime_free(rt); /* frees g[0] */
}
END_TEST

/*
 * pd_bufgroup_free on a group that is still in use aborts, saying why,
 * rather than free what the kernel or a future will touch again. Each case
 * makes the mistake in a child process (pd_test_expect_abort).
 */

/* A multishot recv armed on the group, before any data: no buffer taken. */
static void free_group_under_armed_recv(void)
{
    pd_runtime *rt = pd_test_rt();
    pd_bufgroup *g;
    int sv[2];

    PD_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    PD_CHECK(pd_bufgroup_new(rt, 4, 64, &g) == 0);
    PD_CHECK(ms_recv_spawn(rt, sv[0], g, 1L << 40, 0) != NULL);
    PD_CHECK(pd_run_once(rt, 0) >= 0); /* armed */
    PD_CHECK(pd_bufgroup_available(g) == 4);
    pd_bufgroup_free(g);
    /* Not reached: the next completion would write the freed group. */
    pd_test_write(sv[1], "x", 1);
    PD_CHECK(pd_run_once(rt, 1) >= 0);
}

START_TEST(test_bufgroup_free_with_a_recv_armed_aborts)
{
    pd_test_expect_abort(free_group_under_armed_recv, "polldrop: pd_bufgroup_free: "
                         "group 0 still in use (0 buffers held, 1 recvs armed on it)");
}
END_TEST

/*
 * A future holds one of its buffers, and has no recv on the group: an
 * ms_recv on the caller's stack that kept the buffer of its first
 * completion and returned (its recv quiesced), not yet destroyed. It is
 * polled through the cx of a host task, an idle recv on another group.
 */
static void free_group_under_kept_buffer(void)
{
    pd_runtime *rt = pd_test_rt();
    pd_bufgroup *g, *other;
    int sv[2], sv2[2], i;
    pd_task *host;
    pd_cx cx;
    ms_recv f;
    long out = 0;

    PD_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    PD_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2) == 0);
    PD_CHECK(pd_bufgroup_new(rt, 4, 64, &g) == 0);
    PD_CHECK(pd_bufgroup_new(rt, 4, 64, &other) == 0);
    PD_CHECK((host = ms_recv_spawn(rt, sv2[0], other, 1L << 40, 0)) != NULL);
    cx = (pd_cx){ rt, host, NULL };
    ms_recv_init(&f, sv[0], g, 1, 1);
    pd_test_write(sv[1], "x", 1);
    for (i = 0; i < 5000 && ms_recv_poll(&f, &cx, &out) == PD_PENDING; i++) {
        PD_CHECK(pd_run_once(rt, 0) >= 0);
        usleep(1000);
    }
    PD_CHECK(out == 1);
    PD_CHECK(f.kept.group == g);
    PD_CHECK(g->held == 1 && g->armed == 0 && g->waiters == NULL);
    pd_bufgroup_free(g);
    /* Not reached: the drop code would put the buffer back into freed memory. */
    ms_recv_drop(&f);
}

START_TEST(test_bufgroup_free_with_a_buffer_held_aborts)
{
    pd_test_expect_abort(free_group_under_kept_buffer, "polldrop: pd_bufgroup_free: "
                         "group 0 still in use (1 buffers held, 0 recvs armed on it)");
}
END_TEST

/* --- multishot accept --- */

/*
 * One round: q connections queued, a multishot accept that keeps up to
 * `limit` of them, destroyed after `turns` turns, asynchronously or (sync)
 * by pd_runtime_free while it is live. Every connection it accepted is
 * closed: each client whose connection left the backlog sees EOF.
 */
static void accept_round(int lfd, const struct sockaddr_in *addr, int q,
                         int limit, int turns, int sync)
{
    int clients[8], i, fds = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    pd_task *t;

    for (i = 0; i < q; i++)
        clients[i] = connect_to(addr);
    t = ms_accept_spawn(rt, lfd, limit);
    ck_assert_ptr_nonnull(t);
    for (i = 0; i < turns; i++)
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
    if (sync) {
        pd_task_release(t);
        pd_runtime_free(rt);
    } else {
        pd_task_cancel(t);
        ck_assert_int_eq(pd_run(rt), 0);
        assert_quiet(rt);
        pd_task_release(t);
        pd_runtime_free(rt);
    }
    drain_backlog(lfd);
    for (i = 0; i < q; i++) {
        ck_assert_msg(sees_eof(clients[i]), "client %d of %d: no EOF", i, q);
        close(clients[i]);
    }
    ck_assert_int_eq(pd_test_fd_count(), fds);
}

START_TEST(test_accept_cancelled_at_random_completion)
{
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), n = rounds(1000), r;
    int fds = pd_test_fd_count();
    unsigned seed = 12345;

    for (r = 0; r < n; r++) {
        int q = 1 + rand_r(&seed) % 8;
        int limit = 1 + rand_r(&seed) % 9;
        int turns = rand_r(&seed) % 4;

        accept_round(lfd, &addr, q, limit, turns, rand_r(&seed) % 4 == 0);
    }
    ck_assert_int_eq(pd_test_fd_count(), fds);
    close(lfd);
}
END_TEST

/* Completions reaped but not yet delivered when the future is dropped. */
START_TEST(test_accept_queued_then_dropped)
{
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), fds = pd_test_fd_count();
    int clients[8], i;
    pd_runtime *rt = pd_test_rt();
    pd_task *t = ms_accept_spawn(rt, lfd, 9);
    ms_accept *f = task_self(t);

    ck_assert_int_ge(pd_run_once(rt, 0), 0); /* armed */
    for (i = 0; i < 8; i++)
        clients[i] = connect_to(&addr);
    /* Posted by the kernel; the future is not polled before it is cancelled. */
    while (io_uring_cq_ready(&rt->ring) < 8)
        ck_assert_int_ge(pd__ring_submit_wait(rt, 1), 0);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    assert_quiet(rt);
    ck_assert_int_eq(f->n, 0);
    pd_task_release(t);
    pd_runtime_free(rt);
    drain_backlog(lfd);
    for (i = 0; i < 8; i++) {
        ck_assert(sees_eof(clients[i]));
        close(clients[i]);
    }
    ck_assert_int_eq(pd_test_fd_count(), fds);
    close(lfd);
}
END_TEST

/* The kernel's multishot accept delivers every connection, in order, once. */
START_TEST(test_accept_delivers_each_once)
{
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), clients[8], i, out = -1;
    pd_runtime *rt = pd_test_rt();
    ms_accept f;

    for (i = 0; i < 8; i++)
        clients[i] = connect_to(&addr);
    ms_accept_init(&f, lfd, 8);
    ck_assert_int_eq(pd_block_on(rt, ms_accept_dyn(&f), &out), 0);
    ck_assert_int_eq(out, 8);
    /* One request served all eight: it was armed once. */
    ck_assert_uint_eq(stats(rt).ops_submitted, 1);
    assert_quiet(rt);
    for (i = 0; i < 8; i++) {
        ck_assert(sees_eof(clients[i]));
        close(clients[i]);
    }
    pd_runtime_free(rt);
    close(lfd);
}
END_TEST

/*
 * Out of descriptors (RLIMIT_NOFILE), a multishot accept does not end and
 * does not spin: its then never sees -EMFILE, the slot waits
 * PD__ACCEPT_BACKOFF_MS (100 ms) and accepts again, and once a descriptor is free the
 * connection that waited meanwhile is served.
 */
START_TEST(test_accept_backs_off_out_of_descriptors)
{
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), c1 = connect_to(&addr), c2, low;
    pd_runtime *rt = pd_test_rt();
    struct rlimit old, lim;
    sleep_ms nap;
    uint64_t subs;
    int out = -1, quit[2];
    pd_task *t;

    /* An io state (ms_accept), then a select branch (ms_select, raced by a quiet pipe). */
    ck_assert_int_eq(pipe2(quit, O_CLOEXEC), 0);
    t = _i == 0 ? ms_accept_spawn(rt, lfd, 2) : ms_select_spawn(rt, lfd, quit[0], 2);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = fcntl(lfd, F_DUPFD_CLOEXEC, 0);   /* the lowest free descriptor */
    ck_assert_int_ge(low, 0);
    close(low);
    lim = old;
    lim.rlim_cur = (rlim_t)low;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    /* Three backoffs and more: the accept fails each time it is tried. */
    subs = stats(rt).ops_submitted;
    sleep_ms_init(&nap, 350);
    ck_assert_int_eq(pd_block_on(rt, sleep_ms_dyn(&nap), &out), 0);
    ck_assert_int_eq(out, 0);
    ck_assert_msg(pd_task_state(t) == PD_TASK_RUNNING, "the accept ended: %d",
                  pd_task_output(t) ? *(const int *)pd_task_output(t) : 0);
    /* An accept and a timer a backoff, not a spin (each is under 1 ms). */
    ck_assert_uint_lt(stats(rt).ops_submitted - subs, 1000);
    ck_assert_uint_ge(stats(rt).ops_submitted - subs, 2);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    c2 = connect_to(&addr);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_eq(*(const int *)pd_task_output(t), 2);
    pd_task_release(t);
    ck_assert(sees_eof(c1));
    ck_assert(sees_eof(c2));
    close(c1);
    close(c2);
    close(quit[0]);
    close(quit[1]);
    pd_runtime_free(rt);
    close(lfd);
}
END_TEST

/*
 * A sync drop reaping past a multishot slot whose queue is full: the excess
 * is stored out of line (counted), nothing is lost, and the owner later
 * closes every fd.
 */
START_TEST(test_sync_drop_overflows_a_full_queue)
{
    struct sockaddr_in a1, a2;
    int l1 = pd_test_listener(&a1), l2 = pd_test_listener(&a2);
    int fds = pd_test_fd_count(), clients[8], i;
    pd_runtime *rt = pd_test_rt();
    pd_task *ta = ms_accept_spawn(rt, l1, 9);
    ms_accept *a = task_self(ta), b;
    pd_cx cx = { rt, ta, NULL };
    const int *out;

    /* b lives on this stack; its completions wake a's task, which is harmless. */
    ms_accept_init(&b, l2, 9);
    ck_assert_int_eq(ms_accept_poll(&b, &cx, NULL), PD_PENDING);
    ck_assert_int_ge(pd_run_once(rt, 0), 0); /* both armed */
    for (i = 0; i < 8; i++)
        clients[i] = connect_to(&a1);
    while (io_uring_cq_ready(&rt->ring) < 8)
        ck_assert_int_ge(pd__ring_submit_wait(rt, 1), 0);
    /* One turn reaps: a's queue fills and the reap stops, a is not polled. */
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_int_eq(a->pd__accept_op.qlen, PD__MOP_Q);
    ck_assert_uint_eq(io_uring_cq_ready(&rt->ring), 8 - PD__MOP_Q);
    ms_accept_drop(&b); /* blocks; must reap past a's completions */
    ck_assert_uint_eq(stats(rt).cqe_overflow, 8 - PD__MOP_Q);
    /* a gets all eight, in order, once each. */
    ck_assert_int_eq(pd_run(rt), 0);
    out = pd_task_output(ta);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(*out, 8);
    assert_quiet(rt);
    pd_task_release(ta);
    pd_runtime_free(rt);
    drain_backlog(l1);
    for (i = 0; i < 8; i++) {
        ck_assert(sees_eof(clients[i]));
        close(clients[i]);
    }
    ck_assert_int_eq(pd_test_fd_count(), fds);
    close(l1);
    close(l2);
}
END_TEST

/* pd_runtime_free with a multishot accept armed and idle: no hang (tokio-uring #102). */
START_TEST(test_runtime_free_with_accept_armed)
{
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), fds = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    pd_task *t = ms_accept_spawn(rt, lfd, 9);
    ms_accept f;

    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_uint_eq(stats(rt).inflight_ops, 1);
    /* And a sync drop of a future on the caller's stack, armed. */
    ms_accept_init(&f, lfd, 9);
    {
        pd_cx cx = { rt, t, NULL };

        ck_assert_int_eq(ms_accept_poll(&f, &cx, NULL), PD_PENDING);
    }
    ck_assert_int_eq(pd__ring_submit(rt), 1);
    ms_accept_drop(&f);
#ifndef PD_CHECKED
    ms_accept_drop(&f); /* a no-op here; the checked build aborts (test_misuse.c) */
#endif
    pd_task_release(t);
    pd_runtime_free(rt);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    close(lfd);
}
END_TEST

/* --- multishot recv on a buffer group --- */

/* Writes n chunks of len bytes to fd (blocking), a turn of rt between each. */
static void feed(pd_runtime *rt, int fd, int n, size_t len)
{
    char chunk[256];
    int i;

    memset(chunk, 'x', sizeof(chunk));
    for (i = 0; i < n; i++) {
        pd_test_write(fd, chunk, len);
        PD_CHECK(pd_run_once(rt, 0) >= 0);
    }
}

/*
 * What the recv tests start from: a runtime, one buffer group of count
 * buffers of size bytes, a connected socket pair (the future reads sv[0],
 * the test writes sv[1]) and a pipe q for a select's quit word. The fd
 * count is taken first, so that recv_fix_close can check it is flat.
 */
struct recv_fix {
    pd_runtime *rt;
    pd_bufgroup *g;
    int sv[2], q[2], fds;
};

static void recv_fix_open(struct recv_fix *x, unsigned count, size_t size)
{
    x->fds = pd_test_fd_count();
    x->rt = pd_test_rt();
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x->sv), 0);
    ck_assert_int_eq(pipe2(x->q, O_CLOEXEC), 0);
    ck_assert_int_eq(pd_bufgroup_new(x->rt, count, size, &x->g), 0);
}

/*
 * Frees the runtime (its groups with it) and closes the fixture's fds; a
 * test that closed one early must have set it to -1. Nothing may be left.
 */
static void recv_fix_close(struct recv_fix *x)
{
    pd_runtime_free(x->rt);
    close(x->sv[0]);
    close(x->sv[1]);
    close(x->q[0]);
    close(x->q[1]);
    ck_assert_int_eq(pd_test_fd_count(), x->fds);
}

/* Closes the writing end early: the future reads EOF. */
static void recv_fix_eof(struct recv_fix *x)
{
    close(x->sv[1]);
    x->sv[1] = -1;
}

/*
 * Feeds 50 chunks of 64 bytes, then EOF, into t's recv and runs it to the
 * end: nothing is allocated and nothing overflows the slot's queue, and
 * every buffer is back. No ck_assert while counting: each allocates.
 */
static void runs_without_allocating(struct recv_fix *x, pd_task *t)
{
    long before = pd_test_allocs;

    feed(x->rt, x->sv[1], 50, 64);
    recv_fix_eof(x);
    PD_CHECK(pd_run(x->rt) == 0);
    PD_CHECK(pd_test_allocs == before);
    ck_assert_int_eq(*(const long *)pd_task_output(t), 50 * 64);
    ck_assert_uint_eq(stats(x->rt).cqe_overflow, 0);
    ck_assert_uint_eq(pd_bufgroup_available(x->g), 8);
}

/* A parked request: turns pass and nothing is submitted. */
static void assert_parked(pd_runtime *rt)
{
    uint64_t submitted = stats(rt).ops_submitted;
    int i;

    for (i = 0; i < 20; i++)
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_uint_eq(stats(rt).ops_submitted, submitted);
}

/*
 * Data keeps arriving while the multishot recv is cancelled at a random
 * turn, asynchronously or by pd_runtime_free: every buffer is back.
 */
START_TEST(test_recv_cancelled_while_data_arrives)
{
    int n = rounds(200), r;
    unsigned seed = 777;

    for (r = 0; r < n; r++) {
        struct recv_fix x;
        int keep = rand_r(&seed) % 4, turns = rand_r(&seed) % 6;
        int sync = rand_r(&seed) % 3 == 0;
        pd_task *t;

        recv_fix_open(&x, 8, 64);
        t = ms_recv_spawn(x.rt, x.sv[0], x.g, 1L << 40, keep);
        ck_assert_ptr_nonnull(t);
        feed(x.rt, x.sv[1], turns, 1 + (size_t)rand_r(&seed) % 200);
        pd_test_write(x.sv[1], "tail", 4); /* still arriving as it is cancelled */
        if (!sync) {
            pd_task_cancel(t);
            ck_assert_int_eq(pd_run(x.rt), 0);
            assert_quiet(x.rt);
            ck_assert_uint_eq(pd_bufgroup_available(x.g), 8);
        }
        /* Else pd_runtime_free's sync drop returns every buffer before the group goes. */
        pd_task_release(t);
        if (!sync)
            pd_bufgroup_free(x.g);
        recv_fix_close(&x);
    }
}
END_TEST

/*
 * The only buffer is kept: the next data gets -ENOBUFS, which then sees;
 * the request is not re-armed (no spinning) until the buffer is released,
 * then it resumes and receives what waited in the socket.
 */
START_TEST(test_recv_empty_ring_waits_for_a_buffer)
{
    struct recv_fix x;
    pd_task *t;
    ms_recv *f;

    recv_fix_open(&x, 1, 64);
    t = ms_recv_spawn(x.rt, x.sv[0], x.g, 1L << 40, 1);
    f = task_self(t);
    ck_assert_int_ge(pd_run_once(x.rt, 0), 0);
    pd_test_write(x.sv[1], "a", 1);
    run_until(x.rt, &f->completions, 1);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 0);
    ck_assert_ptr_nonnull(f->kept.data);
    pd_test_kernel_wrote(f->kept.data, f->kept.len);
    ck_assert_int_eq(((char *)f->kept.data)[0], 'a');
    ck_assert_uint_eq(f->kept.len, 1);
    pd_test_write(x.sv[1], "bc", 2);
    run_until(x.rt, &f->nobufs, 1);
    ck_assert_int_eq(f->ends, 1);
    assert_parked(x.rt);
    ck_assert_int_eq(f->bytes, 1);
    pd_buf_release(&f->kept);
    pd_buf_release(&f->kept); /* idempotent */
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 1);
    run_until(x.rt, &f->bytes, 3);
    recv_fix_eof(&x);
    ck_assert_int_eq(run_long(x.rt, t), 3);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 1);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/* GOTO out of a multishot state while data keeps coming: quiesced first. */
START_TEST(test_recv_goto_leaves_quiesced)
{
    struct recv_fix x;
    pd_task *t;

    recv_fix_open(&x, 4, 16);
    t = ms_recv_spawn(x.rt, x.sv[0], x.g, 40, 2);
    feed(x.rt, x.sv[1], 10, 16);
    ck_assert_int_ge(run_long(x.rt, t), 40);
    assert_quiet(x.rt);
    /* The kept buffer went back when the future was destroyed. */
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 4);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/*
 * STOP() ends the request but leaves the future in its state: the data the
 * kernel had already received in three completions (12 bytes, 4-byte
 * buffers) all reaches then, where a GOTO would have discarded two, and the
 * request's last completion comes after them.
 */
START_TEST(test_recv_stop_delivers_what_is_owed)
{
    struct recv_fix x;
    pd_task *t;
    const ms_stop *f;

    recv_fix_open(&x, 4, 4);
    pd_test_write(x.sv[1], "abcdefghijkl", 12);
    t = ms_stop_spawn(x.rt, x.sv[0], x.g);
    ck_assert_int_eq(run_long(x.rt, t), 12);
    f = task_self(t);
    ck_assert_mem_eq(f->got, "abcdefghijkl", 12);
    ck_assert_int_eq(f->calls, 4);
    /* This kernel ends a cancelled multishot recv with -ECANCELED; 6.0-6.4 with -ENOBUFS. */
    ck_assert(f->last == -ECANCELED || f->last == -ENOBUFS);
    assert_quiet(x.rt);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 4);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/* A multishot recv polls no allocation per completion. */
START_TEST(test_recv_allocates_nothing)
{
    struct recv_fix x;
    pd_task *t;

    recv_fix_open(&x, 8, 64);
    t = ms_recv_spawn(x.rt, x.sv[0], x.g, 1L << 40, 3);
    runs_without_allocating(&x, t);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/*
 * A cancel of a multishot request that misses while the request is still
 * armed (it fell between two completions: liburing #1375) is sent again.
 * The kernel's timing makes such a miss rare, so this makes it certain:
 * the cancel queued for slot m, not yet submitted, is pointed at a
 * user_data no request has, and the kernel answers it -ENOENT. Returns how
 * many such cancels it found.
 */
static int make_cancel_miss(pd_runtime *rt, const pd__mop *m)
{
    struct io_uring_sq *sq = &rt->ring.sq;
    uint64_t ud = (uint64_t)(uintptr_t)m | PD__TAG_EXT | PD__TAG_CANCEL;
    unsigned i;
    int n = 0;

    for (i = sq->sqe_head; i != sq->sqe_tail; i++) {
        struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];

        if (sqe->opcode == IORING_OP_ASYNC_CANCEL && sqe->user_data == ud) {
            sqe->addr = PD__UD_RESERVED - 1;
            n++;
        }
    }
    return n;
}

/* Turns without blocking until t is over (at most about 5 s). */
static void run_until_over(pd_runtime *rt, pd_task *t)
{
    int i;

    for (i = 0; i < 5000 && pd_task_state(t) < PD_TASK_DONE; i++) {
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        usleep(1000);
    }
}

/*
 * STOP() whose cancel missed: the request is still armed, so the cancel is
 * sent again (by fd and user_data) and the stream does pause: the future
 * sees the request's last completion and finishes with what it had, and
 * what is written afterwards stays in the socket.
 */
START_TEST(test_stop_that_misses_is_sent_again)
{
    struct recv_fix x;
    pd_task *t;
    ms_stop *f;
    char got[8];

    recv_fix_open(&x, 4, 64);
    t = ms_stop_spawn(x.rt, x.sv[0], x.g);
    f = task_self(t);
    ck_assert_int_ge(pd_run_once(x.rt, 0), 0); /* armed */
    pd_test_write(x.sv[1], "ab", 2);
    while (!pd__task_queued(t)) /* the completion is reaped, then not yet seen */
        ck_assert_int_eq(pd__run_enter(x.rt, 1), 0);
    ck_assert_int_eq(pd__run_polls(x.rt), 1); /* then: STOP() */
    ck_assert_int_eq(f->calls, 1);
    ck_assert_int_eq(make_cancel_miss(x.rt, &f->pd__recv_op), 1);
    ck_assert_int_eq(pd__run_enter(x.rt, 0), 0);
    run_until_over(x.rt, t);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_eq(*(const long *)pd_task_output(t), 2);
    ck_assert_uint_eq(stats(x.rt).cancels_submitted, 2);
    ck_assert(f->last == -ECANCELED || f->last == -ENOBUFS);
    pd_test_write(x.sv[1], "cd", 2);
    ck_assert_int_eq(recv(x.sv[0], got, sizeof(got), MSG_DONTWAIT), 2);
    ck_assert_mem_eq(got, "cd", 2);
    assert_quiet(x.rt);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 4);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/*
 * The same for the cancel of a multishot recv whose task is cancelled: the
 * miss is answered while the request is still armed, the cancel is sent
 * again, and the async drop ends with nothing armed; data written
 * afterwards stays in the socket (invariants 7, 8).
 */
START_TEST(test_cancel_that_misses_is_sent_again)
{
    struct recv_fix x;
    pd_task *t;
    ms_recv *f;
    char got[8];

    recv_fix_open(&x, 4, 64);
    t = ms_recv_spawn(x.rt, x.sv[0], x.g, 1L << 40, 0);
    f = task_self(t);
    ck_assert_int_ge(pd_run_once(x.rt, 0), 0); /* armed */
    pd_task_cancel(t);
    ck_assert_int_eq(pd__run_polls(x.rt), 1); /* poll_drop: the cancel */
    ck_assert_int_eq(make_cancel_miss(x.rt, &f->pd__recv_op), 1);
    ck_assert_int_eq(pd__run_enter(x.rt, 0), 0);
    run_until_over(x.rt, t);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_uint_eq(stats(x.rt).cancels_submitted, 2);
    pd_test_write(x.sv[1], "cd", 2);
    ck_assert_int_eq(recv(x.sv[0], got, sizeof(got), MSG_DONTWAIT), 2);
    ck_assert_mem_eq(got, "cd", 2);
    assert_quiet(x.rt);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 4);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/* --- single-shot recv with group, in an io state and a select --- */

START_TEST(test_group_recv_single_shot)
{
    pd_runtime *rt = pd_test_rt();
    pd_bufgroup *g;
    int sv[2];
    long out = 0;
    grp_recv f;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(pd_bufgroup_new(rt, 2, 32, &g), 0);
    pd_test_write(sv[1], "0123456789", 10);
    shutdown(sv[1], SHUT_WR);
    grp_recv_init(&f, sv[0], g, 10000);
    ck_assert_int_eq(pd_block_on(rt, grp_recv_dyn(&f), &out), 0);
    ck_assert_int_eq(out, 10);
    ck_assert_uint_eq(pd_bufgroup_available(g), 2);
    /* With the only buffer kept, the select's recv parks and the timer wins. */
    pd_bufgroup_free(g);
    ck_assert_int_eq(pd_bufgroup_new(rt, 1, 32, &g), 0);
    close(sv[0]);
    close(sv[1]);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pd_test_write(sv[1], "ab", 2);
    grp_recv_init(&f, sv[0], g, 20);
    ck_assert_int_eq(pd_block_on(rt, grp_recv_dyn(&f), &out), 0);
    ck_assert_int_eq(out, -ETIMEDOUT);
    ck_assert_int_eq(f.nobufs, 0);
    ck_assert_uint_eq(pd_bufgroup_available(g), 1);
    assert_quiet(rt);
    pd_runtime_free(rt);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* --- multishot poll_add --- */

/*
 * A pipe made readable five times: the poll's then runs for each, the
 * request armed once; the writer's close ends it (EOF).
 */
START_TEST(test_poll_pipe_readable_repeatedly)
{
    int p[2], i, fds = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    pd_task *t;
    ms_poll *f;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    t = ms_poll_spawn(rt, p[0], 1000);
    f = task_self(t);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    for (i = 1; i <= 5; i++) {
        pd_test_write(p[1], "x", 1);
        run_until(rt, &f->bytes, i);
    }
    ck_assert_int_ge(f->completions, 5);
    ck_assert_int_eq(f->ends, 0);
    ck_assert_uint_eq(stats(rt).ops_submitted, 1);
    close(p[1]);
    ck_assert_int_eq(run_long(rt, t), 5);
    assert_quiet(rt);
    pd_task_release(t);
    pd_runtime_free(rt);
    close(p[0]);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

/* GOTO out at stop_after: the poll is cancelled and reaped first. */
START_TEST(test_poll_goto_leaves_quiesced)
{
    int p[2], fds = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    pd_task *t;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    t = ms_poll_spawn(rt, p[0], 3);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    feed(rt, p[1], 5, 1);
    ck_assert_int_ge(run_long(rt, t), 3);
    assert_quiet(rt);
    pd_task_release(t);
    pd_runtime_free(rt);
    close(p[0]);
    close(p[1]);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

/*
 * Cancelled while armed -- idle, or with completions queued and unseen --
 * asynchronously, by a sync drop of a future on this stack, or by
 * pd_runtime_free: nothing is left in flight, and data written afterwards
 * is still in the pipe.
 */
START_TEST(test_poll_cancelled_while_armed)
{
    int how;

    for (how = 0; how < 6; how++) {
        int p[2], fds = pd_test_fd_count();
        pd_runtime *rt = pd_test_rt();
        pd_task *t;
        ms_poll on_stack, *f;
        char c;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        if (how / 2 == 1) {
            pd_task *host = ms_poll_spawn(rt, -1, 0); /* its poll fails at once */
            pd_cx cx = { rt, host, NULL };

            ms_poll_init(&on_stack, p[0], 1000);
            ck_assert_int_eq(ms_poll_poll(&on_stack, &cx, NULL), PD_PENDING);
            t = host;
            f = &on_stack;
        } else {
            t = ms_poll_spawn(rt, p[0], 1000);
            f = task_self(t);
        }
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        if (how % 2) {
            /* A completion posted, reaped into the slot, never seen. */
            pd_test_write(p[1], "q", 1);
            while (io_uring_cq_ready(&rt->ring) < 1)
                ck_assert_int_ge(pd__ring_submit_wait(rt, 1), 0);
        }
        switch (how / 2) {
        case 0:
            pd_task_cancel(t);
            ck_assert_int_eq(pd_run(rt), 0);
            assert_quiet(rt);
            ck_assert_int_eq(f->completions, 0);
            break;
        case 1:
            ms_poll_drop(&on_stack);
            ck_assert_int_eq(f->completions, 0);
            ck_assert_int_eq(pd_run(rt), 0);
            assert_quiet(rt);
            break;
        default:
            break; /* pd_runtime_free below drops it, armed */
        }
        pd_task_release(t);
        pd_runtime_free(rt);
        pd_test_write(p[1], "z", 1);
        ck_assert_int_eq(read(p[0], &c, 1), 1);
        ck_assert_int_eq(c, how % 2 ? 'q' : 'z');
        close(p[0]);
        close(p[1]);
        ck_assert_int_eq(pd_test_fd_count(), fds);
    }
}
END_TEST

/* --- multishot branches of a select --- */

/* Writes the 8-byte word that makes ms_select's quit branch complete. */
static void say_quit(int fd)
{
    uint64_t w = 1;

    pd_test_write(fd, &w, sizeof(w));
}

/* Connects n clients and waits until the kernel has posted want completions. */
static void queue_clients(pd_runtime *rt, const struct sockaddr_in *addr,
                          int *clients, int n, unsigned want)
{
    int i;

    for (i = 0; i < n; i++)
        clients[i] = connect_to(addr);
    while (io_uring_cq_ready(&rt->ring) < want)
        ck_assert_int_ge(pd__ring_submit_wait(rt, 1), 0);
}

/* Every client sees EOF (its connection was closed by someone), then closes. */
static void clients_see_eof(int lfd, int *clients, int n)
{
    int i;

    drain_backlog(lfd);
    for (i = 0; i < n; i++) {
        ck_assert_msg(sees_eof(clients[i]), "client %d of %d: no EOF", i, n);
        close(clients[i]);
    }
}

/* One ms_select task, armed, on its own listener, quit pipe and runtime. */
struct sel_fix {
    struct sockaddr_in addr;
    int lfd, q[2], fds, clients[8], nclients;
    pd_runtime *rt;
    pd_task *t;
    ms_select *f;
};

static void sel_open(struct sel_fix *x, int limit)
{
    x->lfd = pd_test_listener(&x->addr);
    x->fds = pd_test_fd_count();
    x->rt = pd_test_rt();
    ck_assert_int_eq(pipe2(x->q, O_CLOEXEC), 0);
    x->t = ms_select_spawn(x->rt, x->lfd, x->q[0], limit);
    ck_assert_ptr_nonnull(x->t);
    x->f = task_self(x->t);
    x->nclients = 0;
    ck_assert_int_ge(pd_run_once(x->rt, 0), 0); /* both branches armed */
}

/* Connects n clients and waits until the kernel has posted want completions. */
static void sel_queue(struct sel_fix *x, int n, unsigned want)
{
    ck_assert_int_le(x->nclients + n, 8);
    queue_clients(x->rt, &x->addr, x->clients + x->nclients, n, want);
    x->nclients += n;
}

/* Runs the task to its end: its output, with nothing left in flight. */
static int sel_run(struct sel_fix *x)
{
    const int *out;

    ck_assert_int_eq(pd_run(x->rt), 0);
    out = pd_task_output(x->t);
    ck_assert_ptr_nonnull(out);
    assert_quiet(x->rt);
    return *out;
}

/* Frees everything; every client sees EOF, and the fd count is flat. */
static void sel_close(struct sel_fix *x)
{
    pd_task_release(x->t);
    pd_runtime_free(x->rt);
    clients_see_eof(x->lfd, x->clients, x->nclients);
    close(x->q[0]);
    close(x->q[1]);
    ck_assert_int_eq(pd_test_fd_count(), x->fds);
    close(x->lfd);
}

/*
 * Six connections reaped in one turn (more than the slot's inline queue):
 * the accept's then runs once for each, in order, the request armed once
 * and the select still waiting; then the quit branch wins.
 */
START_TEST(test_sel_accept_several_in_one_reap)
{
    struct sel_fix x;
    int i;

    sel_open(&x, 8);
    sel_queue(&x, 6, 6);
    for (i = 0; i < 3 && x.f->n < 6; i++)
        ck_assert_int_ge(pd_run_once(x.rt, 0), 0);
    ck_assert_int_eq(x.f->n, 6);
    ck_assert_int_eq(x.f->ends, 0);
    ck_assert_uint_eq(stats(x.rt).ops_submitted, 2);
    for (i = 1; i < 6; i++)
        ck_assert_int_gt(x.f->fds[i], x.f->fds[i - 1]); /* in order, none twice */
    say_quit(x.q[1]);
    ck_assert_int_eq(sel_run(&x), 6);
    ck_assert_uint_eq(stats(x.rt).cqe_overflow, 0);
    sel_close(&x);
}
END_TEST

/*
 * The then leaves (GOTO) at the second of five completions of one reap:
 * the three behind it are never delivered, their fds are closed, and the
 * quit read is cancelled, before the next state runs.
 */
START_TEST(test_sel_accept_goto_between_completions)
{
    struct sel_fix x;
    uint64_t w = 0;

    sel_open(&x, 2);
    sel_queue(&x, 5, 5);
    ck_assert_int_eq(sel_run(&x), 2);
    ck_assert_int_eq(x.f->n, 2);
    /* The quit read was cancelled: a word written now is still in the pipe. */
    say_quit(x.q[1]);
    ck_assert_int_eq(read(x.q[0], &w, sizeof(w)), (ssize_t)sizeof(w));
    sel_close(&x);
}
END_TEST

/*
 * The quit word and three connections reaped in one turn: quit, declared
 * first, wins, and the three accepted fds queued in the slot are closed
 * without ever reaching the accept's then.
 */
START_TEST(test_sel_other_branch_wins_with_queued)
{
    struct sel_fix x;

    sel_open(&x, 8);
    say_quit(x.q[1]);
    sel_queue(&x, 3, 4);
    ck_assert_int_eq(sel_run(&x), 0);
    ck_assert_int_eq(x.f->n, 0);
    sel_close(&x);
}
END_TEST

/*
 * Random rounds: q connections, maybe the quit word, a limit, a number of
 * turns, then destruction by cancellation, by pd_runtime_free (a sync drop
 * with the accept armed) or by a sync drop of a future on this stack.
 * Every connection that left the backlog is closed; fd count flat.
 */
START_TEST(test_sel_accept_random_destruction)
{
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), n = rounds(300), r;
    int fds = pd_test_fd_count();
    unsigned seed = 4242;

    for (r = 0; r < n; r++) {
        int qn = rand_r(&seed) % 7, limit = 1 + rand_r(&seed) % 9;
        int turns = rand_r(&seed) % 4, how = rand_r(&seed) % 3, quit = rand_r(&seed) % 3 == 0;
        int q[2], clients[6], i;
        pd_runtime *rt = pd_test_rt();
        pd_task *t = NULL;
        ms_select on_stack;

        ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
        if (how == 2) {
            pd_task *host = ms_select_spawn(rt, lfd, q[0], 0);
            pd_cx cx = { rt, host, NULL };

            /* The host's own accept is never polled; on_stack borrows its task. */
            ms_select_init(&on_stack, lfd, q[0], limit);
            ck_assert_int_eq(ms_select_poll(&on_stack, &cx, NULL), PD_PENDING);
            t = host;
        } else {
            t = ms_select_spawn(rt, lfd, q[0], limit);
            ck_assert_int_ge(pd_run_once(rt, 0), 0);
        }
        if (quit)
            say_quit(q[1]);
        for (i = 0; i < qn; i++)
            clients[i] = connect_to(&addr);
        for (i = 0; i < turns; i++)
            ck_assert_int_ge(pd_run_once(rt, 0), 0);
        if (how == 2) {
            ms_select_drop(&on_stack);
#ifndef PD_CHECKED
            /* A no-op here; the checked build aborts (test_misuse.c). */
            ms_select_drop(&on_stack);
#endif
        }
        if (how == 0) {
            pd_task_cancel(t);
            ck_assert_int_eq(pd_run(rt), 0);
            assert_quiet(rt);
        }
        pd_task_release(t);
        pd_runtime_free(rt);
        clients_see_eof(lfd, clients, qn);
        close(q[0]);
        close(q[1]);
        ck_assert_int_eq(pd_test_fd_count(), fds);
    }
    close(lfd);
}
END_TEST

/*
 * A multishot poll raced against a child future: leaving from the poll's
 * then by GOTO (how 0) or RETURN (how 1), or the child winning, or a sync
 * drop with both running -- the child is destroyed exactly once, the poll
 * and the child's timer are quiesced, and fd counts are flat.
 */
START_TEST(test_sel_poll_with_a_child)
{
    int how;

    for (how = 0; how < 4; how++) {
        int p[2], fds = pd_test_fd_count();
        pd_runtime *rt = pd_test_rt();
        long out = 0;
        ms_sel_mix f;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        pd_test_rec_start();
        ms_sel_mix_init(&f, p[0], 3, how & 1, how == 2 ? 1 : 600000);
        if (how < 2) {
            pd_test_write(p[1], "ab", 2);
            pd_test_write(p[1], "c", 1);
        }
        if (how < 3) {
            ck_assert_int_eq(pd_block_on(rt, ms_sel_mix_dyn(&f), &out), 0);
            ck_assert_int_eq(out, how == 0 ? 1003 : how == 1 ? 3 : -ETIMEDOUT);
        } else {
            pd_task *host = ms_poll_spawn(rt, -1, 0);
            pd_cx cx = { rt, host, NULL };

            ck_assert_int_eq(ms_sel_mix_poll(&f, &cx, NULL), PD_PENDING);
            ck_assert_int_ge(pd__ring_submit(rt), 1);
            ms_sel_mix_drop(&f);
            ck_assert_int_eq(pd_run(rt), 0);
            pd_task_release(host);
        }
        ck_assert_int_eq(pd_test_rec_count("sleep_ms", PD_TRACE_INIT), 1);
        ck_assert_int_eq(pd_test_rec_count("sleep_ms", PD_TRACE_DROP), 1);
        ck_assert_int_eq(pd_test_rec_count("ms_sel_mix", PD_TRACE_DROP), 1);
        pd_set_trace(NULL, NULL);
        assert_quiet(rt);
        pd_runtime_free(rt);
        close(p[0]);
        close(p[1]);
        ck_assert_int_eq(pd_test_fd_count(), fds);
    }
}
END_TEST

/*
 * A multishot recv branch on a one-buffer group: the first completion
 * keeps the buffer, the next data ends the request with -ENOBUFS (its then
 * sees it), the branch parks without submitting anything, and resumes once
 * the buffer is released; EOF leaves the select with GOTO.
 */
START_TEST(test_sel_recv_empty_ring_resumes)
{
    struct recv_fix x;
    pd_task *t;
    ms_sel_recv *f;

    recv_fix_open(&x, 1, 64);
    t = ms_sel_recv_spawn(x.rt, x.sv[0], x.q[0], x.g, 100000, 1);
    f = task_self(t);
    ck_assert_int_ge(pd_run_once(x.rt, 0), 0);
    pd_test_write(x.sv[1], "a", 1);
    run_until(x.rt, &f->completions, 1);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 0);
    ck_assert_ptr_nonnull(f->kept.data);
    pd_test_write(x.sv[1], "bc", 2);
    run_until(x.rt, &f->nobufs, 1);
    ck_assert_int_eq(f->ends, 1);
    assert_parked(x.rt);
    ck_assert_int_eq(f->bytes, 1);
    pd_buf_release(&f->kept);
    run_until(x.rt, &f->bytes, 3);
    recv_fix_eof(&x);
    ck_assert_int_eq(run_long(x.rt, t), 3);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 1);
    assert_quiet(x.rt);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/*
 * A multishot recv branch under a select deadline, and raced by a quit
 * read: whichever ends it -- the deadline, the quit word, a cancellation
 * or a sync drop while data keeps arriving -- every buffer is back (the
 * kept one after the future is destroyed) and nothing is left in flight.
 */
START_TEST(test_sel_recv_ends_every_way)
{
    int n = rounds(120), r;
    unsigned seed = 99;

    for (r = 0; r < n; r++) {
        int how = r % 4, turns = rand_r(&seed) % 5;
        struct recv_fix x;
        pd_task *t;

        recv_fix_open(&x, 4, 32);
        t = ms_sel_recv_spawn(x.rt, x.sv[0], x.q[0], x.g, how == 0 ? 5 : 100000,
                              rand_r(&seed) % 3);
        feed(x.rt, x.sv[1], turns, 1 + (size_t)rand_r(&seed) % 40);
        pd_test_write(x.sv[1], "tail", 4);
        if (how == 0 || how == 1) {
            if (how == 1)
                pd_test_write(x.q[1], "quitquit", 8);
            ck_assert_int_eq(run_long(x.rt, t), how == 0 ? -ETIMEDOUT : -1);
        } else if (how == 2) {
            pd_task_cancel(t);
            ck_assert_int_eq(pd_run(x.rt), 0);
        }
        if (how != 3) {
            assert_quiet(x.rt);
            ck_assert_uint_eq(pd_bufgroup_available(x.g), 4);
        }
        pd_task_release(t);
        recv_fix_close(&x); /* how 3: a sync drop, the recv armed */
    }
}
END_TEST

/* A multishot recv branch allocates nothing per completion either. */
START_TEST(test_sel_recv_allocates_nothing)
{
    struct recv_fix x;
    pd_task *t;

    recv_fix_open(&x, 8, 64);
    t = ms_sel_recv_spawn(x.rt, x.sv[0], x.q[0], x.g, 600000, 3);
    runs_without_allocating(&x, t);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/* --- a full submission queue in an ordinary turn (issue 17, item 4) --- */

/* A runtime on a ring of `entries` submission entries. */
static pd_runtime *small_rt(unsigned entries)
{
    const pd_config cfg = { .entries = entries };
    pd_runtime *rt = NULL;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    return rt;
}

/*
 * A multishot accept whose eight connections wait in the backlog, and
 * four tasks doing nops behind it, on a 2-entry ring (4 completion
 * entries): the nops fill the submission queue, and go the slow way, in
 * the turn that arms the accept and in the next, while the accept's
 * completions fill its queue and the completion queue. Nothing is stored
 * out of line, nor allocated at all (invariant 4: only a blocking sync
 * drop may): what the accept's queue cannot hold stays in the completion
 * queue until its owner has run. Every connection is delivered, once.
 */
START_TEST(test_full_sq_in_a_turn_stores_nothing)
{
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), fds = pd_test_fd_count();
    int clients[8], i;
    pd_runtime *rt = small_rt(2);
    pd_task *nops[4], *ta;
    const int *out;
    long allocs;

    for (i = 0; i < 8; i++)
        clients[i] = connect_to(&addr);
    ta = ms_accept_spawn(rt, lfd, 8);
    for (i = 0; i < 4; i++)
        ck_assert_ptr_nonnull(nops[i] = nops_spawn(rt, 2));
    allocs = pd_test_allocs;
    PD_CHECK(pd_run(rt) == 0);
    PD_CHECK(pd_test_allocs == allocs);
    ck_assert_uint_eq(stats(rt).cqe_overflow, 0);
    out = pd_task_output(ta);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(*out, 8);
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(*(const long *)pd_task_output(nops[i]), 2);
        pd_task_release(nops[i]);
    }
    assert_quiet(rt);
    pd_task_release(ta);
    pd_runtime_free(rt);
    for (i = 0; i < 8; i++) {
        ck_assert(sees_eof(clients[i]));
        close(clients[i]);
    }
    ck_assert_int_eq(pd_test_fd_count(), fds);
    close(lfd);
}
END_TEST

/*
 * A multishot recv is cancelled while two tasks ahead of it fill a 2-entry
 * ring, and its last completion (EOF) is posted as the cancel goes the
 * slow way. The cancel must not go to a request that has ended: before the
 * fix the slow way reaped that completion behind the cancel's back and a
 * cancel went out for a finished request, which the checked build aborts
 * on and which left the plain build owing -1 completions (pd_run then
 * blocked forever once the last task had ended).
 */
START_TEST(test_cancel_in_a_full_sq_sees_the_end)
{
    struct recv_fix x;
    pd_task *t, *nops[2];
    int i;

    recv_fix_open(&x, 4, 64);
    pd_runtime_free(x.rt);
    x.rt = small_rt(2);
    ck_assert_int_eq(pd_bufgroup_new(x.rt, 4, 64, &x.g), 0);
    t = ms_recv_spawn(x.rt, x.sv[0], x.g, 1L << 40, 0);
    ck_assert_int_ge(pd_run_once(x.rt, 0), 0); /* armed */
    recv_fix_eof(&x); /* the recv ends: its last completion is on its way */
    for (i = 0; i < 2; i++)
        ck_assert_ptr_nonnull(nops[i] = nops_spawn(x.rt, 1));
    pd_task_cancel(t);
    for (i = 0; i < 100 && stats(x.rt).live_tasks > 0; i++)
        ck_assert_int_ge(pd_run_once(x.rt, 0), 0);
    ck_assert_uint_eq(stats(x.rt).live_tasks, 0);
    assert_quiet(x.rt);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), 4);
    for (i = 0; i < 2; i++)
        pd_task_release(nops[i]);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/* --- which buffers a group hands out: a small, hot set --- */

/* Buffers of the groups of the window tests; far more than any of them uses. */
#define WIN_COUNT 1024u

/*
 * The window tests below count exact messages, buffers and -ENOBUFS
 * results, and wait for every message they sent: a fault the simulator
 * injects (an -ECONNRESET or -ENOBUFS that ends a recv, which ms_ids
 * returns) would leave them waiting for messages that no recv will bring.
 * They assume a fault-free engine, so on the simulator they run without
 * faults (PD_SIM_NO_FAULTS; nothing changes on another engine).
 */
static void recv_fix_open_calm(struct recv_fix *x, unsigned count, size_t size)
{
    const pd_config cfg = { .sim_flags = PD_SIM_NO_FAULTS };

    x->fds = pd_test_fd_count();
    x->rt = NULL;
    ck_assert_int_eq(pd_runtime_new(&x->rt, &cfg), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x->sv), 0);
    ck_assert_int_eq(pipe2(x->q, O_CLOEXEC), 0);
    ck_assert_int_eq(pd_bufgroup_new(x->rt, count, size, &x->g), 0);
}

/* Turns, blocking when nothing is ready, until f[0..n)'s messages add up to want. */
static long msgs_sum(ms_ids **f, int n)
{
    long sum = 0;
    int i;

    for (i = 0; i < n; i++)
        sum += f[i]->msgs;
    return sum;
}

static void run_until_sum(pd_runtime *rt, ms_ids **f, int n, long want)
{
    while (msgs_sum(f, n) < want) {
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        if (msgs_sum(f, n) < want && rt->ready_head == NULL)
            ck_assert_int_ge(pd__ring_submit_wait(rt, 1), 0);
    }
}

/*
 * 500 messages of 16 bytes, each received (and its buffer given back)
 * before the next is sent, as an echo server's connections that each say
 * one thing: the group hands out the same few buffers again and again,
 * rather than every buffer of the group in turn, so that the memory such
 * traffic touches stays a few buffers whatever the group's size (the echo
 * server's RSS per connection, docs/echo.md).
 */
START_TEST(test_recv_reuses_a_few_buffers)
{
    static unsigned char seen[WIN_COUNT];
    struct recv_fix x;
    ms_ids *f;
    pd_task *t;
    int i;

    memset(seen, 0, sizeof(seen));
    recv_fix_open_calm(&x, WIN_COUNT, 64);
    t = ms_ids_spawn(x.rt, x.sv[0], x.g, seen, NULL, 0);
    ck_assert_ptr_nonnull(t);
    f = task_self(t);
    for (i = 0; i < 500; i++) {
        pd_test_write(x.sv[1], "0123456789abcdef", 16);
        run_until_sum(x.rt, &f, 1, i + 1);
    }
    ck_assert_int_eq(f->msgs, 500);
    ck_assert_int_eq(f->nobufs, 0);
    ck_assert_int_le(f->distinct, 64);
    recv_fix_eof(&x);
    ck_assert_int_eq(run_long(x.rt, t), 500 * 16);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), WIN_COUNT);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/*
 * A future that keeps 200 buffers, received one at a time, never finds
 * the ring empty: the ring is topped up as each buffer is taken, not only
 * when one comes back. Every buffer is back once they are released.
 */
START_TEST(test_recv_holding_many_never_starves)
{
    static unsigned char seen[WIN_COUNT];
    static pd_buf store[200];
    struct recv_fix x;
    ms_ids *f;
    pd_task *t;
    int i;

    memset(seen, 0, sizeof(seen));
    recv_fix_open_calm(&x, WIN_COUNT, 64);
    t = ms_ids_spawn(x.rt, x.sv[0], x.g, seen, store, 200);
    ck_assert_ptr_nonnull(t);
    f = task_self(t);
    for (i = 0; i < 200; i++) {
        pd_test_write(x.sv[1], "0123456789abcdef", 16);
        run_until_sum(x.rt, &f, 1, i + 1);
    }
    ck_assert_int_eq(f->held, 200);
    ck_assert_int_eq(f->nobufs, 0);
    ck_assert_int_eq(f->distinct, 200);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), WIN_COUNT - 200);
    for (i = 0; i < 200; i++)
        pd_buf_release(&store[i]);
    ck_assert_uint_eq(pd_bufgroup_available(x.g), WIN_COUNT);
    recv_fix_eof(&x);
    ck_assert_int_eq(run_long(x.rt, t), 200 * 16);
    pd_task_release(t);
    recv_fix_close(&x);
}
END_TEST

/*
 * 96 connections each send 16 bytes at once, for 8 rounds: more buffers
 * may be taken between two reaps than the group keeps in its ring at
 * first, so the first rounds may find the ring empty (-ENOBUFS, and the
 * recvs are armed again), and the ring grows to what that traffic takes:
 * from the fourth round on, no recv finds it empty. Nothing is lost, and
 * every buffer is back at the end. Run with the ring's default flags
 * (Linux 6.18 runs at most about 20 deferred completions per enter, fewer
 * than the first window) and with PD_CONFIG_NO_DEFER_TASKRUN, where every
 * recv takes its buffer as the test's write returns, before any reap: the
 * ring does start empty there (and on epoll, whose turn reads every ready
 * socket before the runtime reaps).
 */
START_TEST(test_recv_ring_grows_with_a_burst)
{
    enum { CONNS = 96, ROUNDS = 8 };
    static unsigned char seen[CONNS][WIN_COUNT];
    const pd_config cfg = { .flags = _i ? PD_CONFIG_NO_DEFER_TASKRUN : 0,
                            .sim_flags = PD_SIM_NO_FAULTS };
    int sv[CONNS][2], fds = pd_test_fd_count(), i, r, starts_empty;
    pd_runtime *rt = NULL;
    pd_task *t[CONNS];
    ms_ids *f[CONNS];
    pd_bufgroup *g;
    long settled = 0, total = 0;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    starts_empty = _i || strcmp(pd_runtime_engine(rt), "epoll") == 0;
    memset(seen, 0, sizeof(seen));
    ck_assert_int_eq(pd_bufgroup_new(rt, WIN_COUNT, 64, &g), 0);
    for (i = 0; i < CONNS; i++) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        t[i] = ms_ids_spawn(rt, sv[i][0], g, seen[i], NULL, 0);
        ck_assert_ptr_nonnull(t[i]);
        f[i] = task_self(t[i]);
    }
    ck_assert_int_ge(pd_run_once(rt, 0), 0); /* every recv armed */
    for (r = 0; r < ROUNDS; r++) {
        if (r == 3)
            for (i = 0; i < CONNS; i++)
                settled += f[i]->nobufs;
        for (i = 0; i < CONNS; i++)
            pd_test_write(sv[i][1], "0123456789abcdef", 16);
        run_until_sum(rt, f, CONNS, (long)CONNS * (r + 1));
    }
    for (i = 0; i < CONNS; i++)
        total += f[i]->nobufs;
    if (starts_empty)
        ck_assert_int_gt(settled, 0);
    /* No recv found the ring empty in the last five rounds. */
    ck_assert_int_eq(total, settled);
    for (i = 0; i < CONNS; i++) {
        ck_assert_int_eq(f[i]->msgs, ROUNDS);
        close(sv[i][1]);
    }
    ck_assert_int_eq(pd_run(rt), 0);
    for (i = 0; i < CONNS; i++) {
        ck_assert_int_eq(*(const long *)pd_task_output(t[i]), ROUNDS * 16);
        pd_task_release(t[i]);
        close(sv[i][0]);
    }
    ck_assert_uint_eq(pd_bufgroup_available(g), WIN_COUNT);
    pd_runtime_free(rt);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

Suite *pd_suite_multishot(void)
{
    Suite *s = suite_create("multishot");
    TCase *tc = tcase_create("multishot");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bufgroup_api);
    tcase_add_test(tc, test_bufgroup_many_ids);
    tcase_add_test(tc, test_bufgroup_free_with_a_recv_armed_aborts);
    tcase_add_test(tc, test_bufgroup_free_with_a_buffer_held_aborts);
    tcase_add_test(tc, test_accept_cancelled_at_random_completion);
    tcase_add_test(tc, test_accept_queued_then_dropped);
    tcase_add_test(tc, test_accept_delivers_each_once);
    tcase_add_loop_test(tc, test_accept_backs_off_out_of_descriptors, 0, 2);
    tcase_add_test(tc, test_sync_drop_overflows_a_full_queue);
    tcase_add_test(tc, test_runtime_free_with_accept_armed);
    tcase_add_test(tc, test_recv_cancelled_while_data_arrives);
    tcase_add_test(tc, test_recv_empty_ring_waits_for_a_buffer);
    tcase_add_test(tc, test_recv_goto_leaves_quiesced);
    tcase_add_test(tc, test_recv_stop_delivers_what_is_owed);
    tcase_add_test(tc, test_recv_allocates_nothing);
    tcase_add_test(tc, test_stop_that_misses_is_sent_again);
    tcase_add_test(tc, test_cancel_that_misses_is_sent_again);
    tcase_add_test(tc, test_group_recv_single_shot);
    suite_add_tcase(s, tc);
    tc = tcase_create("poll");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_poll_pipe_readable_repeatedly);
    tcase_add_test(tc, test_poll_goto_leaves_quiesced);
    tcase_add_test(tc, test_poll_cancelled_while_armed);
    suite_add_tcase(s, tc);
    tc = tcase_create("select");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sel_accept_several_in_one_reap);
    tcase_add_test(tc, test_sel_accept_goto_between_completions);
    tcase_add_test(tc, test_sel_other_branch_wins_with_queued);
    tcase_add_test(tc, test_sel_accept_random_destruction);
    tcase_add_test(tc, test_sel_poll_with_a_child);
    tcase_add_test(tc, test_sel_recv_empty_ring_resumes);
    tcase_add_test(tc, test_sel_recv_ends_every_way);
    tcase_add_test(tc, test_sel_recv_allocates_nothing);
    suite_add_tcase(s, tc);
    tc = tcase_create("window");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_recv_reuses_a_few_buffers);
    tcase_add_test(tc, test_recv_holding_many_never_starves);
    tcase_add_loop_test(tc, test_recv_ring_grows_with_a_burst, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("slow_path");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_full_sq_in_a_turn_stores_nothing);
    tcase_add_test(tc, test_cancel_in_a_full_sq_sees_the_end);
    suite_add_tcase(s, tc);
    return s;
}
