/*
 * echo_server: an echo server written as polldrop specs.
 *
 *   build/echo_server [-p PORT] [-a ADDR] [-m MAX_CONNS] [-q]
 *
 * One echo_accept task spawns an echo_conn task per connection. SIGINT and
 * SIGTERM arrive as a read on a signalfd submitted through io_uring
 * (signal_wait), which calls pd_shutdown: the accept is cancelled without
 * leaking an accepted fd, every connection's teardown says "bye" and
 * closes its socket, and the process exits 0 with 0 ops in flight.
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
#include "signal_wait.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: echo_server [-p PORT] [-a ADDR] [-m MAX_CONNS] [-q]\n"
               "  -p PORT       TCP port (default 7777; 0 picks a free one)\n"
               "  -a ADDR       IPv4 address to bind (default 127.0.0.1)\n"
               "  -m MAX_CONNS  connections served at once (default 1024)\n"
               "  -q            print nothing but errors\n");
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    const char *host = "127.0.0.1";
    long port = 7777, max_conns = 1024, live = 0, sig = 0, acc_out = 0;
    int quiet = 0, opt, lfd, sfd, one = 1, ret;
    socklen_t alen = sizeof(addr);
    pd_runtime *rt;
    pd_task *acc, *sw;
    sigset_t mask;
    pd_stats st;

    while ((opt = getopt(argc, argv, "p:a:m:qh")) != -1) {
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
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "echo_server: bad IPv4 address '%s'\n", host);
        return 2;
    }
    addr.sin_port = htons((uint16_t)port);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        perror("echo_server: socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "echo_server: cannot bind %s:%ld: %s\n", host, port,
                strerror(errno));
        return 1;
    }
    if (listen(lfd, 4096) < 0) {
        perror("echo_server: listen");
        return 1;
    }
    getsockname(lfd, (struct sockaddr *)&addr, &alen);

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
    acc = echo_accept_spawn(rt, lfd, max_conns, &live);
    sw = signal_wait_spawn(rt, sfd);
    if (!acc || !sw) {
        fprintf(stderr, "echo_server: out of memory\n");
        return 1;
    }
    if (!quiet) {
        printf("echo_server: listening on %s:%d (at most %ld connections)\n", host,
               ntohs(addr.sin_port), max_conns);
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
