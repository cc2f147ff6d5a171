/*
 * echo_server: an echo server written as polldrop specs.
 *
 *   build/echo_server [-p PORT] [-a ADDR] [-m MAX_CONNS] [-i IDLE_MS] [-q]
 *
 * One echo_accept task spawns an echo_conn task per connection. SIGINT and
 * SIGTERM arrive as a read on a signalfd submitted through io_uring
 * (signal_wait), which calls pd_shutdown: the accept is cancelled without
 * leaking an accepted fd, every connection's teardown says "bye" and
 * closes its socket gracefully (a lingering close), and the process exits
 * 0 with 0 ops in flight. Running out of descriptors or memory, or
 * reaching MAX_CONNS, only pauses accepting; a connection silent for
 * IDLE_MS is closed the same graceful way, by one echo_idle task that
 * sweeps the list of connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "args.h"
#include "echo_accept.h"
#include "echo_idle.h"
#include "signal_wait.h"

/* A lingering close reads what a peer still sends for at most this long. */
#define LINGER_MS 2000

static void usage(FILE *f)
{
    fprintf(f, "usage: echo_server [-p PORT] [-a ADDR] [-m MAX_CONNS] [-i IDLE_MS] [-q]\n"
               "  -p PORT       TCP port (default 7777; 0 picks a free one)\n"
               "  -a ADDR       IPv4 or IPv6 address to bind (default 127.0.0.1)\n"
               "  -m MAX_CONNS  connections served at once; more wait in the\n"
               "                listen backlog (default 1024)\n"
               "  -i IDLE_MS    close a connection silent this long (default\n"
               "                60000; 0: never)\n"
               "  -q            print nothing but errors\n");
}

int main(int argc, char **argv)
{
    struct sockaddr_storage addr;
    const char *host = "127.0.0.1";
    long port = 7777, max_conns = 1024, idle_ms = 60000, live = 0, sig = 0, acc_out = 0;
    int quiet = 0, opt, lfd, sfd, one = 1, ret;
    socklen_t alen;
    char where[INET6_ADDRSTRLEN + 16];
    pd_runtime *rt;
    pd_task *acc, *sw, *idle = NULL;
    echo_conn *conns = NULL;
    sigset_t mask;
    pd_stats st;

    while ((opt = getopt(argc, argv, "p:a:m:i:qh")) != -1) {
        switch (opt) {
        case 'p':
            if (parse_long(optarg, 0, 65535, &port) < 0) {
                fprintf(stderr, "echo_server: bad port '%s' (0-65535)\n", optarg);
                return 2;
            }
            break;
        case 'a':
            host = optarg;
            break;
        case 'm':
            if (parse_long(optarg, 1, LONG_MAX, &max_conns) < 0) {
                fprintf(stderr, "echo_server: bad connection count '%s'\n", optarg);
                return 2;
            }
            break;
        case 'i':
            if (parse_long(optarg, 0, LONG_MAX / 1000, &idle_ms) < 0) {
                fprintf(stderr, "echo_server: bad idle time '%s' (milliseconds, 0: never)\n",
                        optarg);
                return 2;
            }
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    alen = parse_addr(host, port, &addr);
    if (alen == 0) {
        fprintf(stderr, "echo_server: bad address '%s' (numeric IPv4 or IPv6)\n", host);
        return 2;
    }
    format_addr(&addr, where, sizeof(where));

    lfd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        fprintf(stderr, "echo_server: socket: %s\n", strerror(errno));
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&addr, alen) < 0) {
        fprintf(stderr, "echo_server: cannot bind %s: %s\n", where, strerror(errno));
        return 1;
    }
    if (listen(lfd, 4096) < 0) {
        fprintf(stderr, "echo_server: listen: %s\n", strerror(errno));
        return 1;
    }
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    format_addr(&addr, where, sizeof(where));

    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("echo_server: signalfd");
        return 1;
    }

    ret = pd_runtime_new(&rt, NULL);
    if (ret < 0) {
        fprintf(stderr, "echo_server: io_uring is not available: %s\n", strerror(-ret));
        return 1;
    }
    /* Connections are listed for the idle sweep only when there is one. */
    acc = echo_accept_spawn(rt, lfd, max_conns, &live, idle_ms > 0 ? &conns : NULL,
                            LINGER_MS);
    sw = signal_wait_spawn(rt, sfd);
    if (idle_ms > 0)
        idle = echo_idle_spawn(rt, &conns, idle_ms, -1);
    if (!acc || !sw || (idle_ms > 0 && !idle)) {
        fprintf(stderr, "echo_server: out of memory\n");
        return 1;
    }
    if (!quiet) {
        printf("echo_server: listening on %s (at most %ld connections)\n", where,
               max_conns);
        fflush(stdout);
    }
    ret = pd_run(rt);
    if (pd_task_output(sw))
        sig = *(const int *)pd_task_output(sw);
    if (pd_task_output(acc))
        acc_out = *(const long *)pd_task_output(acc);
    pd_runtime_stats(rt, &st);
    if (!quiet)
        printf("echo_server: signal %ld: shut down; %llu ops in flight, %ld connections "
               "left\n", sig, (unsigned long long)st.inflight_ops, live);
    pd_task_release(acc);
    pd_task_release(sw);
    if (idle)
        pd_task_release(idle);
    pd_runtime_free(rt);
    close(sfd);
    close(lfd);
    if (ret < 0) {
        fprintf(stderr, "echo_server: %s\n", strerror(-ret));
        return 1;
    }
    if (acc_out < 0) {
        fprintf(stderr, "echo_server: accept failed: %s\n", strerror((int)-acc_out));
        return 1;
    }
    return st.inflight_ops == 0 && live == 0 ? 0 : 1;
}
