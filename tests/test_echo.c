/*
 * The echo server, in-process: 50 clients exchange data, SIGTERM arrives
 * through a signalfd read on io_uring, and graceful shutdown must give
 * every client "bye\n" then EOF, with no fd leak and no op in flight.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo_accept.h"
#include "signal_wait.h"
#include "testutil.h"

#define CLIENTS 50

struct server {
    pd_runtime *rt;
    int lfd, sfd;
    long live;
    struct sockaddr_in addr;
    pd_task *acc, *sw;
};

static void server_start(struct server *s, long max_conns)
{
    sigset_t mask;

    s->rt = pd_test_rt();
    s->live = 0;
    s->lfd = pd_test_listener(&s->addr);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    ck_assert_int_eq(sigprocmask(SIG_BLOCK, &mask, NULL), 0);
    s->sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    ck_assert_int_ge(s->sfd, 0);
    s->acc = echo_accept_spawn(s->rt, s->lfd, max_conns, &s->live, NULL, 2000);
    s->sw = signal_wait_spawn(s->rt, s->sfd);
    ck_assert_ptr_nonnull(s->acc);
    ck_assert_ptr_nonnull(s->sw);
}

static void server_free(struct server *s)
{
    pd_task_release(s->acc);
    pd_task_release(s->sw);
    pd_runtime_free(s->rt);
    close(s->sfd);
    close(s->lfd);
}

static int client_connect(const struct server *s)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(c, 0);
    ck_assert_int_eq(connect(c, (const struct sockaddr *)&s->addr, sizeof(s->addr)), 0);
    fcntl(c, F_SETFL, O_NONBLOCK);
    return c;
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
    server_start(&s, 1000);
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
    ck_assert_int_eq(s.live, CLIENTS);

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
    ck_assert_int_eq(s.live, 0);
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

    fds = pd_test_fd_count();
    server_start(&s, 2);
    for (i = 0; i < 3; i++) {
        c[i] = client_connect(&s);
        pd_test_write(c[i], "hi", 2);
    }
    pump(&s, c, 2, got, have, want, 0, eof);
    /* The third waits in the listen backlog: not served, not refused. */
    for (i = 0; i < 1000; i++)
        ck_assert_int_ge(pd_run_once(s.rt, 0), 0);
    ck_assert_int_eq(read(c[2], got[2], sizeof(got[2])), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(s.live, 2);
    /* The first leaves; its slot goes to the third. */
    close(c[0]);
    pump(&s, c + 2, 1, got + 2, have + 2, want + 2, 0, eof + 2);
    ck_assert_mem_eq(got[2], "hi", 2);
    ck_assert_int_eq(s.live, 2);
    ck_assert_int_eq(kill(getpid(), SIGTERM), 0);
    have[1] = have[2] = 0;
    pump(&s, c + 1, 2, got + 1, have + 1, want + 1, 1, eof + 1);
    for (i = 1; i < 3; i++) {
        ck_assert_int_eq(have[i], 4);
        ck_assert_mem_eq(got[i], "bye\n", 4);
        close(c[i]);
    }
    ck_assert_int_eq(pd_run(s.rt), 0);
    ck_assert_int_eq(s.live, 0);
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
    static char blob[1 << 20];
    int c, fds, i;
    ssize_t n;

    fds = pd_test_fd_count();
    server_start(&s, 10);
    c = client_connect(&s);
    memset(blob, 'x', sizeof(blob));
    for (i = 0; i < 2000; i++) {
        n = write(c, blob, sizeof(blob));
        (void)n;
        ck_assert_int_ge(pd_run_once(s.rt, 0), 0);
    }
    ck_assert_int_eq(pd_shutdown(s.rt), 0); /* returns: nothing waits forever */
    ck_assert_int_eq(s.live, 0);
    close(c);
    server_free(&s);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

Suite *pd_suite_echo(void)
{
    Suite *s = suite_create("echo server");
    TCase *tc = tcase_create("echo");

    tcase_add_test(tc, echo_graceful_shutdown_says_bye_to_everyone);
    tcase_add_test(tc, echo_connections_over_the_limit_wait_for_a_slot);
    tcase_add_test(tc, echo_client_that_stopped_reading_cannot_stall_shutdown);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
