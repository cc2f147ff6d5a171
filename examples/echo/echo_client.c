/*
 * echo_client: load for an echo server, written as polldrop specs.
 *
 *   build/echo_client [-a ADDR] [-p PORT] [-c CONNS] [-n ROUNDS] [-s SIZE] [-t MS]
 *
 * CONNS echo_client tasks on one runtime, each doing ROUNDS round trips of
 * SIZE bytes, with an optional per-reply deadline of MS milliseconds.
 * Prints the round trips per second.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../args.h"
#include "echo_client.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct sockaddr_storage addr;
    socklen_t alen;
    const char *host = "127.0.0.1";
    long port = 7777, conns = 64, rounds = 1000, size = 64, timeout = 0, ok = 0;
    int opt, ret, i, failed = 0;
    pd_task **tasks;
    pd_runtime *rt;
    double t0, dt;

    while ((opt = getopt(argc, argv, "a:p:c:n:s:t:")) != -1) {
        long *dst = opt == 'p' ? &port : opt == 'c' ? &conns : opt == 'n' ? &rounds
                  : opt == 's' ? &size : &timeout;
        long max = opt == 'p' ? 65535 : opt == 's' ? 4096 : INT_MAX;

        if (opt == 'a') {
            host = optarg;
            continue;
        }
        if (opt == '?' || parse_long(optarg, opt == 't' ? 0 : 1, max, dst) < 0) {
            fprintf(stderr, "usage: echo_client [-a ADDR] [-p PORT] [-c CONNS] "
                            "[-n ROUNDS] [-s SIZE<=4096] [-t MS]\n");
            return 2;
        }
    }
    alen = parse_addr(host, port, &addr);
    if (alen == 0) {
        fprintf(stderr, "echo_client: bad address '%s' (numeric IPv4 or IPv6)\n", host);
        return 2;
    }
    ret = pd_runtime_new(&rt, NULL);
    if (ret < 0) {
        fprintf(stderr, "echo_client: cannot make a runtime: %s\n", strerror(-ret));
        return 1;
    }
    tasks = calloc((size_t)conns, sizeof(*tasks));
    if (!tasks)
        return 1;
    t0 = now();
    for (i = 0; i < conns; i++)
        if (!(tasks[i] = echo_client_spawn(rt, (const struct sockaddr *)&addr, alen,
                                           (size_t)size, rounds, timeout)))
            return 1;
    ret = pd_run(rt);
    dt = now() - t0;
    for (i = 0; i < conns; i++) {
        long r = *(const long *)pd_task_output(tasks[i]);

        if (r < 0) {
            if (!failed++)
                fprintf(stderr, "echo_client: connection %d: %s\n", i, strerror((int)-r));
        } else {
            ok += r;
        }
        pd_task_release(tasks[i]);
    }
    free(tasks);
    pd_runtime_free(rt);
    printf("%ld round trips of %ld bytes over %ld connections in %.3f s: %.0f round "
           "trips/s\n", ok, size, conns, dt, (double)ok / dt);
    if (ret < 0 || failed) {
        fprintf(stderr, "echo_client: %d connections failed\n", failed);
        return 1;
    }
    return 0;
}
