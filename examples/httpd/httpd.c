/*
 * httpd: an HTTP/1.1 static file server written as polldrop specs.
 *
 *   build/httpd [-p PORT] [-a ADDR] [-r ROOT] [-t THREADS] [-d DRAIN_MS]
 *               [-H HEADER_MS] [-k IDLE_MS] [-m MAX_CONNS] [-q]
 *
 * Each thread owns a runtime, a listener (SO_REUSEPORT when there are
 * several) and a server (http.h): an http_accept task spawns an http_conn
 * task per connection, and an http_drain task waits for the main thread's
 * word. The main thread only waits for SIGINT or SIGTERM, tells every
 * thread to drain through its eventfd, and joins them. The process exits
 * 0 when every thread drained with 0 ops in flight on its ring.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../args.h"
#include "http.h"
#include "http_accept.h"
#include "http_drain.h"

/* A lingering close discards the peer's input for at most this long. */
#define LINGER_MS 1000
/* The accept loop's pause while the thread is full or out of descriptors. */
#define PAUSE_MS 20

typedef struct worker {
    pthread_t th;
    int idx, lfd, evfd;
    long long drain_ms;
    http_srv srv;
    int ret;                 /* 0, or -errno of the runtime or the listener */
    long drain_out;          /* http_drain's output: 1 if the drain was cut */
    pd_stats st;
} worker;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: httpd [-p PORT] [-a ADDR] [-r ROOT] [-t THREADS] [-d DRAIN_MS]\n"
            "             [-H HEADER_MS] [-k IDLE_MS] [-m MAX_CONNS] [-q]\n"
            "  -p PORT       TCP port (default 8080; 0 picks a free one)\n"
            "  -a ADDR       IPv4 or IPv6 address to bind (default 127.0.0.1)\n"
            "  -r ROOT       directory served (default .)\n"
            "  -t THREADS    threads, one runtime and listener each (default 1)\n"
            "  -d DRAIN_MS   on SIGINT/SIGTERM, time left to requests in progress\n"
            "                (default 5000)\n"
            "  -H HEADER_MS  time to receive a request's head (default 10000)\n"
            "  -k IDLE_MS    keep-alive idle time (default 5000)\n"
            "  -m MAX_CONNS  connections served at once (default 10000)\n"
            "  -q            print nothing but errors\n");
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pd_runtime *rt;
    pd_task *acc, *dr;
    int ret = pd_runtime_new(&rt, NULL);

    if (ret < 0) {
        fprintf(stderr, "httpd: thread %d: io_uring is not available: %s\n", w->idx,
                strerror(-ret));
        w->ret = ret;
        kill(getpid(), SIGTERM); /* the main thread is waiting for a signal */
        return NULL;
    }
    acc = http_accept_spawn(rt, w->lfd, &w->srv, PAUSE_MS);
    dr = http_drain_spawn(rt, w->evfd, &w->srv, w->drain_ms);
    if (acc == NULL || dr == NULL) {
        fprintf(stderr, "httpd: thread %d: out of memory\n", w->idx);
        w->ret = -ENOMEM;
        kill(getpid(), SIGTERM);
        if (acc)
            pd_task_release(acc);
        if (dr)
            pd_task_release(dr);
        pd_runtime_free(rt);
        return NULL;
    }
    w->srv.accept_task = acc;
    w->srv.drain_task = dr;
    ret = pd_run(rt);
    if (ret == 0 && pd_task_output(acc) != NULL) {
        long a = *(const long *)pd_task_output(acc);

        fprintf(stderr, "httpd: thread %d: accept failed: %s\n", w->idx, strerror((int)-a));
        ret = (int)a;
    }
    if (pd_task_output(dr) != NULL)
        w->drain_out = *(const int *)pd_task_output(dr);
    w->srv.accept_task = NULL;
    w->srv.drain_task = NULL;
    pd_runtime_stats(rt, &w->st);
    pd_task_release(acc);
    pd_task_release(dr);
    pd_runtime_free(rt);
    w->ret = ret;
    if (ret < 0)
        kill(getpid(), SIGTERM);
    return NULL;
}

/* A listener on addr; with reuse set, others may bind the same port. */
static int listener(const struct sockaddr_storage *addr, socklen_t alen, int reuse)
{
    int one = 1, fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)addr, alen) < 0 || listen(fd, 4096) < 0)
        goto fail;
    return fd;
fail:
    {
        int err = -errno;

        close(fd);
        return err;
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_storage addr;
    socklen_t alen;
    const char *host = "127.0.0.1", *root = ".";
    long port = 8080, threads = 1, max_conns = 10000, drain_ms = 5000, header_ms = 10000,
         idle_ms = 5000;
    int quiet = 0, opt, rootfd, ret = 0, sig;
    worker *ws;
    sigset_t mask;
    char shown[INET6_ADDRSTRLEN];

    while ((opt = getopt(argc, argv, "p:a:r:t:d:H:k:m:qh")) != -1) {
        long *dst = NULL, lo = 1, hi = LONG_MAX;

        switch (opt) {
        case 'p': dst = &port, lo = 0, hi = 65535; break;
        case 't': dst = &threads, hi = 1024; break;
        case 'd': dst = &drain_ms, lo = 0; break;
        case 'H': dst = &header_ms; break;
        case 'k': dst = &idle_ms; break;
        case 'm': dst = &max_conns; break;
        case 'a': host = optarg; break;
        case 'r': root = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (dst != NULL && parse_long(optarg, lo, hi, dst) < 0) {
            fprintf(stderr, "httpd: bad value '%s' for -%c (%ld-%ld)\n", optarg, opt, lo, hi);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    memset(&addr, 0, sizeof(addr));
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&addr)->sin_addr) == 1) {
        addr.ss_family = AF_INET;
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)port);
        alen = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&addr)->sin6_addr) == 1) {
        addr.ss_family = AF_INET6;
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)port);
        alen = sizeof(struct sockaddr_in6);
    } else {
        fprintf(stderr, "httpd: bad address '%s' (IPv4 or IPv6)\n", host);
        return 2;
    }
    rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        fprintf(stderr, "httpd: root '%s': %s\n", root, strerror(errno));
        return 1;
    }
    ws = calloc((size_t)threads, sizeof(*ws));
    if (ws == NULL) {
        fprintf(stderr, "httpd: out of memory\n");
        return 1;
    }
    for (long i = 0; i < threads; i++) {
        worker *w = &ws[i];

        w->idx = (int)i;
        w->drain_ms = drain_ms;
        w->lfd = listener(&addr, alen, threads > 1);
        if (w->lfd < 0) {
            fprintf(stderr, "httpd: cannot listen on %s port %ld: %s\n", host, port,
                    strerror(-w->lfd));
            return 1;
        }
        if (i == 0) {
            /* Port 0: the others bind the port the kernel chose. */
            getsockname(w->lfd, (struct sockaddr *)&addr, &alen);
        }
        w->evfd = eventfd(0, EFD_CLOEXEC);
        if (w->evfd < 0) {
            perror("httpd: eventfd");
            return 1;
        }
        http_srv_init(&w->srv, rootfd, header_ms, idle_ms, LINGER_MS,
                      (max_conns + threads - 1) / threads);
        w->srv.quiet = quiet;
    }
    port = ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_port
                                           : ((struct sockaddr_in6 *)&addr)->sin6_port);

    /* Every thread inherits the mask: only sigwaitinfo below sees them. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (long i = 0; i < threads; i++) {
        ret = pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
        if (ret != 0) {
            fprintf(stderr, "httpd: pthread_create: %s\n", strerror(ret));
            return 1;
        }
    }
    if (!quiet) {
        inet_ntop(addr.ss_family, addr.ss_family == AF_INET
                  ? (void *)&((struct sockaddr_in *)&addr)->sin_addr
                  : (void *)&((struct sockaddr_in6 *)&addr)->sin6_addr, shown, sizeof(shown));
        printf("httpd: listening on %s port %ld, root %s, %ld thread%s\n", shown, port, root,
               threads, threads > 1 ? "s" : "");
        fflush(stdout);
    }
    do
        sig = sigwaitinfo(&mask, NULL);
    while (sig < 0 && errno == EINTR);
    for (long i = 0; i < threads; i++) {
        uint64_t one = 1;

        if (write(ws[i].evfd, &one, sizeof(one)) != sizeof(one))
            perror("httpd: eventfd write");
    }
    ret = 0;
    for (long i = 0; i < threads; i++) {
        worker *w = &ws[i];

        pthread_join(w->th, NULL);
        if (w->ret < 0 || w->st.inflight_ops != 0 || w->srv.live != 0)
            ret = 1;
        if (!quiet)
            printf("httpd: thread %ld: signal %d: %llu responses, %llu connections; drain %s; "
                   "%llu ops in flight, %ld connections left\n", i, sig,
                   (unsigned long long)w->srv.responses, (unsigned long long)w->srv.accepted,
                   w->drain_out ? "cut at the deadline" : "complete",
                   (unsigned long long)w->st.inflight_ops, w->srv.live);
        http_srv_fini(&w->srv);
        close(w->lfd);
        close(w->evfd);
    }
    free(ws);
    close(rootfd);
    return ret;
}
