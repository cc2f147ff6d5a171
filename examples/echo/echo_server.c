/*
 * echo_server: an echo server written as polldrop specs.
 *
 *   build/echo_server [-p PORT] [-a ADDR] [-m MAX_CONNS] [-i IDLE_MS]
 *                     [-t THREADS] [-d DRAIN_MS] [-b COUNT] [-s SIZE] [-1]
 *                     [-e ENGINE] [-q]
 *
 * Thread-per-core: each of THREADS threads owns a runtime and a listener
 * of its own on the same address (SO_REUSEPORT when there are several, so
 * the kernel spreads the connections); threads share nothing. Each thread
 * has one multishot accept (echo_ms_accept) that spawns an echo_ms_conn
 * task per connection, and one buffer group of COUNT buffers of SIZE bytes
 * that every connection's multishot recv shares: a connection waiting for
 * data holds no buffer, nor does one waiting for its peer to read (what it
 * could not send is copied into a spill of its own, and its recv stays
 * stopped until that is sent), and the group is back to COUNT when the
 * thread ends (the exit line says so). With -1, the single-shot design
 * instead: echo_accept and echo_conn, one accept and one recv into a 4 KiB
 * buffer inside each connection's future per request. Signals are handled
 * in one place: SIGINT and SIGTERM are blocked in every thread
 * and read from a signalfd by the main thread, which then asks every
 * runtime to shut down (pd_shutdown_remote_deadline): each accept is
 * cancelled without leaking an accepted fd, every connection's teardown
 * says "bye" and closes its socket gracefully (a lingering close). A
 * teardown still running DRAIN_MS after the signal -- a client that stopped
 * reading with a full receive window, say -- is cut short: its send is
 * cancelled, and its socket closed by its drop code. The process exits 0
 * with 0 ops in flight on every ring. Running out of descriptors or memory,
 * or reaching MAX_CONNS, only pauses accepting; a connection silent for
 * IDLE_MS is closed the same graceful way, by one echo_idle task per
 * thread that sweeps the thread's list of connections. Each runtime runs on
 * the engine -e names (by default auto: io_uring, or epoll where io_uring
 * is switched off; PD_ENGINE may choose), and says which at start.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../args.h"
#include "echo_accept.h"
#include "echo_idle.h"
#include "echo_ms_accept.h"

/* A lingering close reads what a peer still sends for at most this long. */
#define LINGER_MS 2000
/* echo_conn's own deadline for its goodbye (its spec's timeout_ms). */
#define BYE_TIMEOUT_MS 1000
#define MAX_THREADS 256
/* Bounds of -b (pd_bufgroup_new's) and -s. */
#define MAX_BUFS 32768
#define MIN_BUF_SIZE 64
#define MAX_BUF_SIZE (1 << 20)

static void usage(FILE *f)
{
    fprintf(f, "usage: echo_server [-p PORT] [-a ADDR] [-m MAX_CONNS] [-i IDLE_MS]\n"
               "                   [-t THREADS] [-d DRAIN_MS] [-b COUNT] [-s SIZE] [-1]\n"
               "                   [-e ENGINE] [-q]\n"
               "  -p PORT       TCP port (default 7777; 0 picks a free one)\n"
               "  -a ADDR       IPv4 or IPv6 address to bind (default 127.0.0.1)\n"
               "  -m MAX_CONNS  connections served at once, shared out between the\n"
               "                threads; more wait in the listen backlog (default 1024)\n"
               "  -i IDLE_MS    close a connection silent this long (default\n"
               "                60000; 0: never)\n"
               "  -t THREADS    threads, each with its own runtime and listener\n"
               "                (default 1)\n"
               "  -d DRAIN_MS   on SIGINT/SIGTERM, cut short the teardowns still\n"
               "                running this long after the signal (default %d:\n"
               "                1000 more than the goodbye's own timeout)\n"
               "  -b COUNT      buffers in each thread's buffer group, a power of\n"
               "                two from 1 to %d (default 4096)\n"
               "  -s SIZE       bytes per buffer, a power of two from %d to %d\n"
               "                (default 4096)\n"
               "  -1            single-shot accept and recv, a buffer inside each\n"
               "                connection (the design before multishot; -b and -s\n"
               "                do not apply)\n"
               "  -e ENGINE     what runs the requests: auto (the default: io_uring,\n"
               "                or epoll where io_uring is switched off; the PD_ENGINE\n"
               "                variable may choose), uring, epoll or sim\n"
               "  -q            print nothing but errors\n", BYE_TIMEOUT_MS + 1000, MAX_BUFS,
            MIN_BUF_SIZE, MAX_BUF_SIZE);
}

/* What the threads share: two meeting points and the main thread's alarm. */
typedef struct server {
    pthread_barrier_t started; /* every worker has its runtime, or failed to */
    pthread_barrier_t done;    /* nobody calls into a runtime any more */
    int ended_fd;              /* eventfd: a worker's run has ended */
} server;

/* One thread: its runtime, its listener, its connections. */
typedef struct worker {
    server *srv;
    pthread_t tid;
    int lfd;
    long max_conns, live;
    long long idle_ms;
    echo_link *conns; /* the list echo_idle sweeps, when idle_ms > 0 */
    pd_runtime *rt;  /* made, run and freed by the worker's own thread */
    int ret;         /* pd_run's result, or the -errno of the setup */
    long acc_out;    /* echo_accept's output: -errno if the listener failed */
    pd_stats st;
    int single;      /* -1: echo_accept and echo_conn */
    unsigned nbufs;  /* -b */
    size_t bufsize;  /* -s */
    pd_engine engine; /* -e */
    unsigned avail;  /* buffers back in the group once the run ended */
    size_t spill_peak; /* the most its connections' spills held at once */
    echo_ms_ctx *ctx; /* the multishot connections' context */
} worker;

/* The multishot server's accept task and what its connections share. */
static pd_task *start_multishot(worker *w)
{
    echo_ms_ctx *c = calloc(1, sizeof(*c));

    w->ctx = c;
    if (c == NULL)
        return NULL;
    w->ret = pd_bufgroup_new(w->rt, w->nbufs, w->bufsize, &c->group);
    if (w->ret < 0)
        return NULL;
    c->conns = w->idle_ms > 0 ? &w->conns : NULL;
    c->max_conns = w->max_conns;
    c->linger_ms = LINGER_MS;
    return echo_ms_accept_spawn(w->rt, w->lfd, c);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pd_task *acc = NULL, *idle = NULL;
    uint64_t one = 1;
    const pd_config cfg = { .engine = w->engine };

    w->ret = pd_runtime_new(&w->rt, &cfg);
    if (w->ret == 0) {
        /* Connections are listed for the idle sweep only when there is one. */
        if (w->single)
            acc = echo_accept_spawn(w->rt, w->lfd, w->max_conns, &w->live,
                                    w->idle_ms > 0 ? &w->conns : NULL, LINGER_MS);
        else
            acc = start_multishot(w);
        if (w->idle_ms > 0 && w->ret == 0)
            idle = echo_idle_spawn(w->rt, &w->conns, w->idle_ms, -1);
        if (w->ret == 0 && (acc == NULL || (w->idle_ms > 0 && idle == NULL)))
            w->ret = -ENOMEM;
    }
    pthread_barrier_wait(&w->srv->started);
    if (w->ret == 0) {
        w->ret = pd_run(w->rt);
        if (pd_task_output(acc))
            w->acc_out = *(const long *)pd_task_output(acc);
        pd_runtime_stats(w->rt, &w->st);
        if (w->ctx != NULL) {
            w->live = w->ctx->live;
            w->avail = pd_bufgroup_available(w->ctx->group);
            w->spill_peak = w->ctx->spill_peak;
        }
    }
    /* The main thread waits for a signal or for this. */
    if (write(w->srv->ended_fd, &one, sizeof(one)) < 0)
        w->ret = w->ret < 0 ? w->ret : -errno;
    pthread_barrier_wait(&w->srv->done);
    if (acc != NULL)
        pd_task_release(acc);
    if (idle != NULL)
        pd_task_release(idle);
    /* pd_runtime_free frees the group. */
    pd_runtime_free(w->rt);
    free(w->ctx);
    close(w->lfd);
    return NULL;
}

/*
 * A listener on addr; with reuseport, one of several on the same address.
 * Returns the socket, or -1 after saying why.
 */
static int listener(struct sockaddr_storage *addr, socklen_t alen, int reuseport,
                    const char *where)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0) {
        fprintf(stderr, "echo_server: socket: %s\n", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        fprintf(stderr, "echo_server: SO_REUSEPORT: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)addr, alen) < 0) {
        fprintf(stderr, "echo_server: cannot bind %s: %s\n", where, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, 4096) < 0) {
        fprintf(stderr, "echo_server: listen: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    struct sockaddr_storage addr;
    const char *host = "127.0.0.1";
    long port = 7777, max_conns = 1024, idle_ms = 60000, threads = 1;
    long drain_ms = BYE_TIMEOUT_MS + 1000, sig = 0, live = 0, i, started = 0;
    long nbufs = 4096, bufsize = 4096;
    int quiet = 0, opt, sfd, ok = 1, single = 0;
    pd_engine engine = PD_ENGINE_AUTO;
    unsigned long long inflight = 0, forced = 0, avail = 0, total = 0, spilled = 0;
    socklen_t alen;
    char where[INET6_ADDRSTRLEN + 16];
    struct signalfd_siginfo info;
    struct pollfd pfd[2];
    worker *w;
    server srv;
    sigset_t mask;

    while ((opt = getopt(argc, argv, "p:a:m:i:t:d:b:s:1e:qh")) != -1) {
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
        case 't':
            if (parse_long(optarg, 1, MAX_THREADS, &threads) < 0) {
                fprintf(stderr, "echo_server: bad thread count '%s' (1-%d)\n", optarg,
                        MAX_THREADS);
                return 2;
            }
            break;
        case 'd':
            if (parse_long(optarg, 0, LONG_MAX / 1000, &drain_ms) < 0) {
                fprintf(stderr, "echo_server: bad drain time '%s' (milliseconds)\n",
                        optarg);
                return 2;
            }
            break;
        case 'b':
            if (parse_long(optarg, 1, MAX_BUFS, &nbufs) < 0 || (nbufs & (nbufs - 1)) != 0) {
                fprintf(stderr, "echo_server: bad buffer count '%s' (a power of two, "
                        "1-%d)\n", optarg, MAX_BUFS);
                return 2;
            }
            break;
        case 's':
            if (parse_long(optarg, MIN_BUF_SIZE, MAX_BUF_SIZE, &bufsize) < 0 ||
                (bufsize & (bufsize - 1)) != 0) {
                fprintf(stderr, "echo_server: bad buffer size '%s' (a power of two, "
                        "%d-%d bytes)\n", optarg, MIN_BUF_SIZE, MAX_BUF_SIZE);
                return 2;
            }
            break;
        case '1':
            single = 1;
            break;
        case 'e':
            if (parse_engine(optarg, &engine) < 0) {
                fprintf(stderr, "echo_server: bad engine '%s' (auto, uring, epoll or sim)\n",
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

    w = calloc((size_t)threads, sizeof(*w));
    if (w == NULL) {
        fprintf(stderr, "echo_server: out of memory\n");
        return 1;
    }
    /* The first listener picks the port (-p 0); the others share it. */
    for (i = 0; i < threads; i++) {
        w[i].lfd = listener(&addr, alen, threads > 1, where);
        if (w[i].lfd < 0) {
            while (i-- > 0)
                close(w[i].lfd);
            free(w);
            return 1;
        }
        if (i == 0) {
            getsockname(w[0].lfd, (struct sockaddr *)&addr, &alen);
            format_addr(&addr, where, sizeof(where));
        }
        w[i].max_conns = (max_conns + threads - 1) / threads;
        w[i].idle_ms = idle_ms;
        w[i].srv = &srv;
        w[i].single = single;
        w[i].nbufs = (unsigned)nbufs;
        w[i].bufsize = (size_t)bufsize;
        w[i].engine = engine;
    }

    /* Blocked before any thread starts, so every thread inherits the mask. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    srv.ended_fd = eventfd(0, EFD_CLOEXEC);
    if (sfd < 0 || srv.ended_fd < 0) {
        perror("echo_server: signalfd/eventfd");
        return 1;
    }
    pthread_barrier_init(&srv.started, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&srv.done, NULL, (unsigned)threads + 1);
    for (i = 0; i < threads; i++) {
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "echo_server: cannot start thread %ld\n", i);
            return 1;
        }
    }
    pthread_barrier_wait(&srv.started);
    for (i = 0; i < threads; i++) {
        if (w[i].ret < 0) {
            fprintf(stderr, "echo_server: thread %ld: %s: %s\n", i, w[i].rt == NULL ?
                    "cannot make its runtime" : "cannot set up the buffer group",
                    strerror(-w[i].ret));
            ok = 0;
        } else {
            started++;
        }
    }
    if (ok && !quiet) {
        if (single)
            printf("echo_server: listening on %s (at most %ld connections, %ld thread%s, "
                   "single-shot)\n", where, max_conns, threads, threads > 1 ? "s" : "");
        else
            printf("echo_server: listening on %s (at most %ld connections, %ld thread%s, "
                   "multishot, %ld buffers of %ld bytes each)\n", where, max_conns,
                   threads, threads > 1 ? "s" : "", nbufs, bufsize);
        for (i = 0; i < threads; i++)
            printf("echo_server: thread %ld runs on %s\n", i, pd_runtime_engine(w[i].rt));
        fflush(stdout);
    }

    /* A signal, or a worker whose run ended on its own, ends every run. */
    pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
    pfd[1] = (struct pollfd){ .fd = srv.ended_fd, .events = POLLIN };
    while (ok && poll(pfd, 2, -1) < 0 && errno == EINTR)
        ;
    if (ok && (pfd[0].revents & POLLIN) &&
        read(sfd, &info, sizeof(info)) == (ssize_t)sizeof(info))
        sig = (long)info.ssi_signo;
    for (i = 0; i < threads; i++)
        if (w[i].rt != NULL && w[i].ret == 0)
            pd_shutdown_remote_deadline(w[i].rt, drain_ms);
    pthread_barrier_wait(&srv.done);
    for (i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
        if (w[i].ret < 0 && started == threads) {
            fprintf(stderr, "echo_server: thread %ld: %s\n", i, strerror(-w[i].ret));
            ok = 0;
        }
        if (w[i].acc_out < 0) {
            fprintf(stderr, "echo_server: accept failed: %s\n",
                    strerror((int)-w[i].acc_out));
            ok = 0;
        }
        inflight += w[i].st.inflight_ops;
        forced += w[i].st.tasks_forced;
        live += w[i].live;
        if (!single) {
            avail += w[i].avail;
            total += (unsigned long long)nbufs;
            spilled += w[i].spill_peak;
        }
    }
    if (!quiet && started == threads) {
        printf("echo_server: signal %ld: shut down; %llu ops in flight, %ld connections "
               "left, %llu teardowns cut short at the %ld ms drain deadline", sig,
               inflight, live, forced, drain_ms);
        if (!single)
            printf(", %llu of %llu buffers back in their groups, %llu KiB at most in "
                   "spills for peers that did not read", avail, total, (spilled + 1023) / 1024);
        printf("\n");
    }
    pthread_barrier_destroy(&srv.started);
    pthread_barrier_destroy(&srv.done);
    close(srv.ended_fd);
    close(sfd);
    free(w);
    return ok && sig != 0 && inflight == 0 && live == 0 && avail == total ? 0 : 1;
}
