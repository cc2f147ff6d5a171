/*
 * The echo server, in-process: 50 clients exchange data, SIGTERM arrives
 * through a signalfd read on io_uring, and graceful shutdown must give
 * every client "bye\n" then EOF, with no fd leak and no op in flight. Each
 * test runs against both designs: _i == 0 is the single-shot one
 * (echo_accept, echo_conn), _i == 1 the multishot one (echo_ms_accept,
 * echo_ms_conn on a buffer group), whose group must be full again at the
 * end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo_accept.h"
#include "echo_client.h"
#include "echo_ms_accept.h"
#include "echo_ms_conn.h"
#include "signal_wait.h"
#include "testutil.h"

#define CLIENTS 50

struct server {
    pd_runtime *rt;
    int lfd, sfd;
    long live;
    struct sockaddr_in addr;
    pd_task *acc, *sw;
    unsigned nbufs;   /* multishot: the group's buffers; 0: single-shot */
    echo_ms_ctx *ctx;
};

/* Multishot servers get a group of nbufs buffers of size bytes. */
static void server_start_group(struct server *s, long max_conns, int multishot,
                               unsigned nbufs, size_t size)
{
    sigset_t mask;

    s->rt = pd_test_rt();
    s->live = 0;
    s->nbufs = multishot ? nbufs : 0;
    s->ctx = NULL;
    s->lfd = pd_test_listener(&s->addr);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    ck_assert_int_eq(sigprocmask(SIG_BLOCK, &mask, NULL), 0);
    s->sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    ck_assert_int_ge(s->sfd, 0);
    if (multishot) {
        s->ctx = calloc(1, sizeof(*s->ctx));
        ck_assert_ptr_nonnull(s->ctx);
        ck_assert_int_eq(pd_bufgroup_new(s->rt, nbufs, size, &s->ctx->group), 0);
        s->ctx->max_conns = max_conns;
        s->ctx->linger_ms = 2000;
        s->acc = echo_ms_accept_spawn(s->rt, s->lfd, s->ctx);
    } else {
        s->acc = echo_accept_spawn(s->rt, s->lfd, max_conns, &s->live, NULL, 2000);
    }
    s->sw = signal_wait_spawn(s->rt, s->sfd);
    ck_assert_ptr_nonnull(s->acc);
    ck_assert_ptr_nonnull(s->sw);
}

static void server_start(struct server *s, long max_conns, int multishot)
{
    server_start_group(s, max_conns, multishot, 4096, 4096);
}

/* Connections served now, in either design. */
static long server_live(const struct server *s)
{
    return s->ctx ? s->ctx->live : s->live;
}

/*
 * Ends the server; a multishot one must have every buffer back first, and
 * every spill freed.
 */
static void server_free(struct server *s)
{
    if (s->ctx) {
        ck_assert_uint_eq(pd_bufgroup_available(s->ctx->group), s->nbufs);
        ck_assert_uint_eq(s->ctx->spilled, 0);
        ck_assert_int_eq(s->ctx->live, 0);
    }
    pd_task_release(s->acc);
    pd_task_release(s->sw);
    pd_runtime_free(s->rt);
    close(s->sfd);
    close(s->lfd);
    free(s->ctx);
}

/* A client; with bufs > 0, its socket buffers are that small. */
static int client_connect_bufs(const struct server *s, int bufs)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(c, 0);
    if (bufs > 0) {
        ck_assert_int_eq(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &bufs, sizeof(bufs)), 0);
        ck_assert_int_eq(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &bufs, sizeof(bufs)), 0);
    }
    ck_assert_int_eq(connect(c, (const struct sockaddr *)&s->addr, sizeof(s->addr)), 0);
    fcntl(c, F_SETFL, O_NONBLOCK);
    return c;
}

static int client_connect(const struct server *s)
{
    return client_connect_bufs(s, 0);
}

/*
 * Turns the runtime until every client has read `want` bytes into its
 * buffer (or EOF when stop_at_eof). Bounded: it fails rather than hang.
 */
static void pump(struct server *s, int *c, int n, char (*got)[64], int *have,
                 const int *want, int until_eof, int *eof)
{
    int turns, i, left = n;

    for (turns = 0; left > 0 && turns < 200000; turns++) {
        struct pollfd pfd[CLIENTS];

        ck_assert_int_ge(pd_run_once(s->rt, 0), 0);
        for (i = 0; i < n; i++) {
            pfd[i].fd = c[i];
            pfd[i].events = POLLIN;
        }
        poll(pfd, (nfds_t)n, 1);
        for (i = 0, left = 0; i < n; i++) {
            ssize_t r = -1;

            while (have[i] < 64 && (r = read(c[i], got[i] + have[i], 64 - (size_t)have[i])) > 0)
                have[i] += (int)r;
            if (until_eof && r == 0)
                eof[i] = 1;
            if (until_eof ? !eof[i] : have[i] < want[i])
                left++;
        }
    }
    ck_assert_int_eq(left, 0);
}

START_TEST(echo_graceful_shutdown_says_bye_to_everyone)
{
    struct server s;
    int c[CLIENTS], have[CLIENTS], want[CLIENTS], eof[CLIENTS], fds, i;
    char got[CLIENTS][64], msg[32];
    pd_stats st;

    fds = pd_test_fd_count();
    server_start(&s, 1000, _i);
    for (i = 0; i < CLIENTS; i++) {
        c[i] = client_connect(&s);
        want[i] = snprintf(msg, sizeof(msg), "ping %d\n", i);
        pd_test_write(c[i], msg, (size_t)want[i]);
        have[i] = 0;
        eof[i] = 0;
    }
    pump(&s, c, CLIENTS, got, have, want, 0, eof);
    for (i = 0; i < CLIENTS; i++) {
        snprintf(msg, sizeof(msg), "ping %d\n", i);
        ck_assert_int_eq(have[i], want[i]);
        ck_assert_mem_eq(got[i], msg, (size_t)want[i]);
        have[i] = 0;
    }
    ck_assert_int_eq(server_live(&s), CLIENTS);

    /* SIGTERM, as from kill(1): read by signal_wait through io_uring. */
    ck_assert_int_eq(kill(getpid(), SIGTERM), 0);
    pump(&s, c, CLIENTS, got, have, want, 1, eof);
    for (i = 0; i < CLIENTS; i++) {
        ck_assert_int_eq(have[i], 4);
        ck_assert_mem_eq(got[i], "bye\n", 4);
        close(c[i]); /* the server's lingering close sees our end of stream */
    }
    ck_assert_int_eq(pd_run(s.rt), 0);
    /* The signal number came from a signalfd read that io_uring performed. */
    pd_test_kernel_wrote((void *)pd_task_output(s.sw), sizeof(int));
    ck_assert_int_eq(*(const int *)pd_task_output(s.sw), SIGTERM);
    ck_assert_int_eq(pd_task_state(s.acc), PD_TASK_CANCELLED);
    ck_assert_int_eq(server_live(&s), 0);
    pd_runtime_stats(s.rt, &st);
    ck_assert_uint_eq(st.inflight_ops, 0);
    ck_assert_uint_eq(st.live_tasks, 0);
    server_free(&s);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

START_TEST(echo_connections_over_the_limit_wait_for_a_slot)
{
    struct server s;
    int c[3], have[3] = { 0 }, want[3] = { 2, 2, 2 }, eof[3] = { 0 }, fds, i;
    char got[3][64];

    if (pd_test_skip_on_sim("echo_connections_over_the_limit_wait_for_a_slot",
                            "it turns with pd_run_once(rt, 0) until real time passes, and "
                            "the virtual clock moves only when the runtime waits"))
        return;
    fds = pd_test_fd_count();
    server_start(&s, 2, _i);
    /*
     * One at a time: a multishot accept takes every connection already
     * queued when it runs, so a burst can pass the limit by what was in
     * the listen backlog (served, not refused). Here the limit is reached
     * before the third arrives.
     */
    for (i = 0; i < 3; i++) {
        c[i] = client_connect(&s);
        pd_test_write(c[i], "hi", 2);
        if (i < 2)
            pump(&s, c + i, 1, got + i, have + i, want + i, 0, eof + i);
    }
    /* The third waits in the listen backlog: not served, not refused. */
    for (i = 0; i < 1000; i++)
        ck_assert_int_ge(pd_run_once(s.rt, 0), 0);
    ck_assert_int_eq(read(c[2], got[2], sizeof(got[2])), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(server_live(&s), 2);
    /* The first leaves; its slot goes to the third. */
    close(c[0]);
    pump(&s, c + 2, 1, got + 2, have + 2, want + 2, 0, eof + 2);
    ck_assert_mem_eq(got[2], "hi", 2);
    ck_assert_int_eq(server_live(&s), 2);
    ck_assert_int_eq(kill(getpid(), SIGTERM), 0);
    have[1] = have[2] = 0;
    pump(&s, c + 1, 2, got + 1, have + 1, want + 1, 1, eof + 1);
    for (i = 1; i < 3; i++) {
        ck_assert_int_eq(have[i], 4);
        ck_assert_mem_eq(got[i], "bye\n", 4);
        close(c[i]);
    }
    ck_assert_int_eq(pd_run(s.rt), 0);
    ck_assert_int_eq(server_live(&s), 0);
    server_free(&s);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

START_TEST(echo_client_that_stopped_reading_cannot_stall_shutdown)
{
    /*
     * A client that sends a lot and never reads: the server's send blocks
     * on a full socket buffer. Shutdown must still finish: the goodbye has
     * a linked timeout, so teardown cannot wait forever.
     */
    struct server s;
    size_t blob_len = 1 << 20;
    char *blob = malloc(blob_len);
    int c, fds, i;
    ssize_t n;

    fds = pd_test_fd_count();
    server_start(&s, 10, _i);
    c = client_connect(&s);
    ck_assert_ptr_nonnull(blob);
    memset(blob, 'x', blob_len);
    for (i = 0; i < 2000; i++) {
        n = write(c, blob, blob_len);
        (void)n;
        ck_assert_int_ge(pd_run_once(s.rt, 0), 0);
    }
    ck_assert_int_eq(pd_shutdown(s.rt), 0); /* returns: nothing waits forever */
    ck_assert_int_eq(server_live(&s), 0);
    close(c);
    server_free(&s);
    free(blob);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

/*
 * A group of 2 buffers of 64 bytes for 20 clients that all send at once:
 * the ring runs dry again and again (multishot recvs end with -ENOBUFS and
 * wait for a buffer), and the clients, with small socket buffers on both
 * sides, read only once they sent half of it, so echoes stall on full
 * sockets too (and the server stops reading them). Every byte still comes back, in order,
 * and the group is full again at the end.
 */
#define TINY_CLIENTS 20
#define TINY_BYTES (256 << 10)

/*
 * What client i sends from offset k on: pat + (k + i * 7919) % TINY_PERIOD,
 * random bytes with a prime period, so a chunk out of place does not match.
 */
#define TINY_PERIOD 65521
#define TINY_CHUNK 16384
static unsigned char pat[TINY_PERIOD + TINY_CHUNK];

static const unsigned char *tiny_at(int i, size_t k)
{
    return pat + (k + (size_t)i * 7919) % TINY_PERIOD;
}

/* Fills pat, the same bytes for every test. */
static void pat_init(void)
{
    int i;

    srand(7);
    for (i = 0; i < TINY_PERIOD; i++)
        pat[i] = (unsigned char)rand();
    memcpy(pat + TINY_PERIOD, pat, TINY_CHUNK);
}

START_TEST(echo_tiny_group_echoes_every_byte_in_order)
{
    size_t out[TINY_CLIENTS] = { 0 }, in[TINY_CLIENTS] = { 0 }, bad = 0;
    unsigned char chunk[TINY_CHUNK];
    struct server s;
    int c[TINY_CLIENTS], fds, i, turns, left = TINY_CLIENTS;
    int eof[TINY_CLIENTS] = { 0 }, have[TINY_CLIENTS] = { 0 }, want[TINY_CLIENTS] = { 0 };
    char bye[TINY_CLIENTS][64];

    pat_init();
    fds = pd_test_fd_count();
    server_start_group(&s, 100, 1, 2, 64);
    /* Accepted sockets inherit them: the server's sends fill up soon. */
    ck_assert_int_eq(setsockopt(s.lfd, SOL_SOCKET, SO_SNDBUF, &(int){ 4096 }, sizeof(int)), 0);
    ck_assert_int_eq(setsockopt(s.lfd, SOL_SOCKET, SO_RCVBUF, &(int){ 4096 }, sizeof(int)), 0);
    for (i = 0; i < TINY_CLIENTS; i++)
        c[i] = client_connect_bufs(&s, 4096);
    for (turns = 0; left > 0 && turns < 1000000; turns++) {
        ck_assert_int_ge(pd_run_once(s.rt, 0), 0);
        for (i = 0, left = 0; i < TINY_CLIENTS; i++) {
            size_t len = TINY_BYTES - out[i] < TINY_CHUNK ? TINY_BYTES - out[i] : TINY_CHUNK;
            ssize_t n;

            if (len > 0 && (n = write(c[i], tiny_at(i, out[i]), len)) > 0)
                out[i] += (size_t)n;
            /* Clients stop reading now and then: the echoes back up. */
            while ((turns & 256) == 0 && in[i] < TINY_BYTES &&
                   (n = read(c[i], chunk, sizeof(chunk))) > 0) {
                bad += memcmp(chunk, tiny_at(i, in[i]), (size_t)n) != 0;
                in[i] += (size_t)n;
            }
            left += in[i] < TINY_BYTES;
        }
    }
    ck_assert_int_eq(left, 0);
    ck_assert_uint_eq(bad, 0);
    for (i = 0; i < TINY_CLIENTS; i++)
        ck_assert_uint_eq(in[i], TINY_BYTES);
    /* Both hard paths were taken: an empty ring, and a full socket. */
    ck_assert_uint_gt(s.ctx->nobufs, 0);
    ck_assert_uint_gt(s.ctx->stalls, 0);
    ck_assert_int_eq(server_live(&s), TINY_CLIENTS);
    ck_assert_int_eq(kill(getpid(), SIGTERM), 0);
    pump(&s, c, TINY_CLIENTS, bye, have, want, 1, eof);
    for (i = 0; i < TINY_CLIENTS; i++) {
        ck_assert_int_eq(have[i], 4);
        ck_assert_mem_eq(bye[i], "bye\n", 4);
        close(c[i]);
    }
    ck_assert_int_eq(pd_run(s.rt), 0);
    server_free(&s);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

/*
 * More peers that send and never read than the group has buffers (80 for
 * 64), with small socket buffers on both sides so that every echo soon
 * waits for room. Each can send only what fits in the sockets and in what
 * the server copied aside before its recv stopped (well under HOG_MAX);
 * then the group is full (a stalled connection holds none of it), and a
 * fresh client is echoed straight away, not when an idle sweep closes the
 * hogs. A hog that then reads gets every byte it sent, in order; the group
 * is full and no fd is left at the end.
 */
#define HOGS 80
#define HOG_BUFS 64
#define HOG_MAX (1 << 20)

/* Turns the runtime until fd has read want bytes into got; the count read. */
static size_t pump_one(struct server *s, int fd, int hog, size_t want, size_t *bad)
{
    unsigned char chunk[TINY_CHUNK];
    size_t in = 0;
    int turns;

    for (turns = 0; in < want && turns < 100000; turns++) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;

        ck_assert_int_ge(pd_run_once(s->rt, 0), 0);
        poll(&pfd, 1, 1);
        while (in < want && (n = read(fd, chunk, sizeof(chunk))) > 0) {
            *bad += memcmp(chunk, tiny_at(hog, in), (size_t)n) != 0;
            in += (size_t)n;
        }
    }
    return in;
}

START_TEST(echo_hogs_cannot_starve_a_fresh_client)
{
    size_t out[HOGS] = { 0 }, bad = 0;
    struct server s;
    int c[HOGS + 1], have[2] = { 0 }, want[2] = { 0 }, eof[2] = { 0 };
    int fds, i, turns, quiet;
    unsigned avail;
    char got[2][64];

    pat_init();
    fds = pd_test_fd_count();
    server_start_group(&s, 1000, 1, HOG_BUFS, 4096);
    ck_assert_int_eq(setsockopt(s.lfd, SOL_SOCKET, SO_SNDBUF, &(int){ 4096 }, sizeof(int)), 0);
    ck_assert_int_eq(setsockopt(s.lfd, SOL_SOCKET, SO_RCVBUF, &(int){ 4096 }, sizeof(int)), 0);
    for (i = 0; i < HOGS; i++)
        c[i] = client_connect_bufs(&s, 4096);
    /* Every hog sends until nothing more goes in for 200 turns. */
    for (turns = 0, quiet = 0; quiet < 200 && turns < 200000; turns++) {
        int moved = 0;

        ck_assert_int_ge(pd_run_once(s.rt, 0), 0);
        for (i = 0; i < HOGS; i++) {
            ssize_t n;

            while ((n = write(c[i], tiny_at(i, out[i]), TINY_CHUNK)) > 0) {
                out[i] += (size_t)n;
                moved = 1;
            }
            /* About 35 KiB fit in the sockets: the server stopped reading. */
            ck_assert_uint_lt(out[i], HOG_MAX);
        }
        quiet = moved ? 0 : quiet + 1;
    }
    ck_assert_int_eq(quiet, 200);
    ck_assert_int_eq(server_live(&s), HOGS);
    avail = pd_bufgroup_available(s.ctx->group);

    /*
     * A fresh client: its echo comes back. Bounded at 10,000 turns of a
     * 1 ms poll (10 s or more): without the fix it waits for good.
     */
    c[HOGS] = client_connect(&s);
    pd_test_write(c[HOGS], "hello\n", 6);
    want[1] = 6;
    for (turns = 0; have[1] < 6 && turns < 10000; turns++) {
        struct pollfd pfd = { .fd = c[HOGS], .events = POLLIN };
        ssize_t n;

        ck_assert_int_ge(pd_run_once(s.rt, 0), 0);
        poll(&pfd, 1, 1);
        if ((n = read(c[HOGS], got[1] + have[1], 6 - (size_t)have[1])) > 0)
            have[1] += (int)n;
    }
    ck_assert_int_eq(have[1], 6);
    ck_assert_mem_eq(got[1], "hello\n", 6);
    /* The hogs held none of the group while they waited. */
    ck_assert_uint_eq(avail, HOG_BUFS);
    ck_assert_uint_ge(s.ctx->stalls, HOGS);

    /* Hog 0 reads at last: everything it sent comes back, in order. */
    ck_assert_uint_eq(pump_one(&s, c[0], 0, out[0], &bad), out[0]);
    ck_assert_uint_eq(bad, 0);
    /* Hogs that leave with unread data reset their connections. */
    for (i = 1; i < HOGS; i++)
        close(c[i]);
    for (turns = 0; server_live(&s) > 2 && turns < 100000; turns++) {
        ck_assert_int_ge(pd_run_once(s.rt, 0), 0);
        poll(NULL, 0, server_live(&s) > 2);
    }
    ck_assert_int_eq(server_live(&s), 2);
    c[1] = c[HOGS];
    have[1] = 0;
    ck_assert_int_eq(kill(getpid(), SIGTERM), 0);
    pump(&s, c, 2, got, have, want, 1, eof);
    for (i = 0; i < 2; i++) {
        ck_assert_int_eq(have[i], 4);
        ck_assert_mem_eq(got[i], "bye\n", 4);
        close(c[i]);
    }
    ck_assert_int_eq(pd_run(s.rt), 0);
    server_free(&s);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

/*
 * echo_ms_conn under the harness: destroyed at every suspension point, by
 * every path, between any two completions of its multishot recv, with its
 * group (4 buffers of 16 bytes, so that two pings take several) back to
 * full after each destruction. The peer sends two pings, then its end of
 * stream, and drains the echoes; the future owns sv[0].
 */
#define HMS_BUFS 4
struct hms_ctx {
    int sv[2];
    int fed;
    echo_ms_ctx ms;
};

static struct hms_ctx hms_c;
static const pd_harness_group hms_groups[] = { { HMS_BUFS, 16, &hms_c.ms.group } };

static void hms_setup(void *v)
{
    struct hms_ctx *c = v;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->sv), 0);
    fcntl(c->sv[1], F_SETFL, O_NONBLOCK);
    c->fed = 0;
}

static void hms_init(void *self, void *v)
{
    struct hms_ctx *c = v;

    c->ms.conns = NULL;
    c->ms.live = 1;
    c->ms.max_conns = 1;
    c->ms.linger_ms = 50;
    echo_ms_conn_init(self, &c->ms, c->sv[0]);
}

static void hms_progress(void *v, int when)
{
    struct hms_ctx *c = v;
    char sink[256];

    if (when == PD_HARNESS_RUN_SUSPENDED && c->fed < 3) {
        if (c->fed++ < 2)
            pd_test_write(c->sv[1], "ping ping ping ping ping", 24);
        else
            shutdown(c->sv[1], SHUT_WR);
    }
    while (read(c->sv[1], sink, sizeof(sink)) > 0)
        ;
}

/* Closed on every path (end of stream, or a reset over unread input). */
static void hms_after(void *v, const void *out)
{
    struct hms_ctx *c = v;
    char sink[256];
    ssize_t n;

    if (out)
        ck_assert_int_eq(*(const int *)out, 0);
    while ((n = read(c->sv[1], sink, sizeof(sink))) > 0)
        ;
    ck_assert_msg(n == 0 || errno == ECONNRESET, "peer read: %s", strerror(errno));
    ck_assert_int_eq(c->ms.live, 0);
}

static void hms_cleanup(void *v)
{
    struct hms_ctx *c = v;

    close(c->sv[1]);
}

START_TEST(echo_ms_conn_every_destruction)
{
    const pd_harness_case c = { .future = "echo_ms_conn", .vt = &echo_ms_conn_vtable,
                                .has_teardown = 1, .ctx = &hms_c, .setup = hms_setup,
                                .init = hms_init, .progress = hms_progress,
                                .after = hms_after, .cleanup = hms_cleanup };
    const pd_harness_opts o = { .groups = hms_groups, .ngroups = 1, .multishot = 1 };
    pd_harness_stats st;

    pd_harness_run_with(&c, &o, &st);
    ck_assert_int_ge(st.points, 4);
    ck_assert_int_gt(st.reaped, 0);
}
END_TEST

/*
 * echo_ms_accept under the harness: its multishot accept is armed, then
 * the listener is shut down and the accept's completion ends the loop with
 * -EINVAL. Every destruction, at every point and in every kernel state,
 * leaves no fd and no request behind. (A connection accepted here would
 * be a task of its own, with its recv in flight after the accept loop is
 * gone: the server's own tests cover that.)
 */
struct hma_ctx {
    int lfd;
    struct sockaddr_in addr;
    echo_ms_ctx ms;
};

static struct hma_ctx hma_c;
static const pd_harness_group hma_groups[] = { { HMS_BUFS, 16, &hma_c.ms.group } };

static void hma_setup(void *v)
{
    struct hma_ctx *c = v;

    c->lfd = pd_test_listener(&c->addr);
}

static void hma_init(void *self, void *v)
{
    struct hma_ctx *c = v;

    c->ms.conns = NULL;
    c->ms.live = 0;
    c->ms.max_conns = 8;
    c->ms.linger_ms = 50;
    echo_ms_accept_init(self, c->lfd, &c->ms);
}

static void hma_progress(void *v, int when)
{
    struct hma_ctx *c = v;

    if (when == PD_HARNESS_RUN_SUSPENDED)
        shutdown(c->lfd, SHUT_RDWR); /* the armed accept fails: -EINVAL */
}

static void hma_after(void *v, const void *out)
{
    struct hma_ctx *c = v;

    if (out)
        ck_assert_int_eq(*(const long *)out, -EINVAL);
    ck_assert_int_eq(c->ms.live, 0);
}

static void hma_cleanup(void *v)
{
    struct hma_ctx *c = v;

    close(c->lfd);
}

START_TEST(echo_ms_accept_every_destruction)
{
    const pd_harness_case c = { .future = "echo_ms_accept", .vt = &echo_ms_accept_vtable,
                                .ctx = &hma_c, .setup = hma_setup, .init = hma_init,
                                .progress = hma_progress, .after = hma_after,
                                .cleanup = hma_cleanup };
    const pd_harness_opts o = { .groups = hma_groups, .ngroups = 1, .multishot = 1 };
    pd_harness_stats st;

    pd_harness_run_with(&c, &o, &st);
    ck_assert_int_ge(st.points, 1);
}
END_TEST

/* A client refused for its size (0 or over 4096) leaks no socket. */
START_TEST(echo_client_with_a_bad_size_leaks_no_fd)
{
    int before = pd_test_fd_count();
    pd_runtime *rt = pd_test_rt();
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(9),
                                .sin_addr = { htonl(INADDR_LOOPBACK) } };
    long out = 0;

    ck_assert_int_eq(echo_client_block_on(rt, (const struct sockaddr *)&addr,
                                          sizeof(addr), 0, 1, 0, &out), 0);
    ck_assert_int_eq(out, -EINVAL);
    pd_test_rt_done(rt);
    ck_assert_int_eq(pd_test_fd_count(), before);
}
END_TEST

Suite *pd_suite_echo(void)
{
    Suite *s = suite_create("echo server");
    TCase *tc = tcase_create("echo");

    /* _i: 0 single-shot, 1 multishot. */
    tcase_add_loop_test(tc, echo_graceful_shutdown_says_bye_to_everyone, 0, 2);
    tcase_add_loop_test(tc, echo_connections_over_the_limit_wait_for_a_slot, 0, 2);
    tcase_add_loop_test(tc, echo_client_that_stopped_reading_cannot_stall_shutdown, 0, 2);
    tcase_add_test(tc, echo_tiny_group_echoes_every_byte_in_order);
    tcase_add_test(tc, echo_hogs_cannot_starve_a_fresh_client);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    /* The cancel-point tests: make explore runs them under the simulator. */
    tc = tcase_create("cancel points");
    tcase_set_tags(tc, "harness");
    tcase_add_test(tc, echo_ms_conn_every_destruction);
    tcase_add_test(tc, echo_ms_accept_every_destruction);
    tcase_add_test(tc, echo_client_with_a_bad_size_leaks_no_fd);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
