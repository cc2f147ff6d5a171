/*
 * httpd's server: see server.h. Each thread owns a runtime, a listener
 * (SO_REUSEPORT when there are several) and a server (http.h): an
 * http_accept task spawns an http_conn task per connection, and an
 * http_drain task waits for SIGINT or SIGTERM (the first thread, which is
 * the calling one, on a signalfd) or for the first thread's word (the
 * others, on an eventfd).
 */
#define _GNU_SOURCE
#include "server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "http_accept.h"
#include "http_drain.h"
#include "http_sweep.h"

/* The accept loop's pause while the thread is full or out of descriptors. */
#define PAUSE_MS 20

/*
 * What the threads share. A thread publishes its runtime (or NULL) before
 * the first thread starts, so that the first thread's drain can hand the
 * drain to it (http_drain_spawn_on); and it keeps its runtime until the
 * first thread will hand nothing more (handed), so that no hand-off ever
 * reaches a freed runtime.
 */
typedef struct shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long published;          /* threads whose runtime is known */
    bool handed;
} shared;

typedef struct worker {
    pthread_t th;
    int idx, lfd, sigfd;     /* sigfd: the first thread's signalfd, else -1 */
    int engine;              /* httpd_opts.engine */
    long long drain_ms;
    http_srv srv;
    pd_runtime *rt;          /* published for the first thread's drain */
    shared *sh;
    int ret;                 /* 0, or -errno of the runtime or the listener */
    pd_stats st;
} worker;

static void publish(worker *w, pd_runtime *rt)
{
    pthread_mutex_lock(&w->sh->mu);
    w->rt = rt;
    w->sh->published++;
    pthread_cond_broadcast(&w->sh->cv);
    pthread_mutex_unlock(&w->sh->mu);
}

static void wait_handed(shared *sh)
{
    pthread_mutex_lock(&sh->mu);
    while (!sh->handed)
        pthread_cond_wait(&sh->cv, &sh->mu);
    pthread_mutex_unlock(&sh->mu);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pd_runtime *rt;
    pd_task *acc[HTTP_ACCEPTORS] = { NULL }, *dr = NULL, *sw = NULL;
    const pd_config cfg = { .engine = (pd_engine)w->engine };
    int ret = pd_runtime_new(&rt, &cfg), fail = 0;

    publish(w, ret < 0 ? NULL : rt);
    if (ret < 0) {
        fprintf(stderr, "httpd: thread %d: cannot make its runtime: %s\n", w->idx,
                strerror(-ret));
        w->ret = ret;
        kill(getpid(), SIGTERM); /* the first thread's drain drains the others */
        return NULL;
    }
    if (!w->srv.quiet) {
        printf("httpd: thread %d runs on %s\n", w->idx, pd_runtime_engine(rt));
        fflush(stdout);
    }
    for (int i = 0; i < HTTP_ACCEPTORS; i++)
        fail |= (acc[i] = http_accept_spawn(rt, w->lfd, &w->srv, PAUSE_MS)) == NULL;
    fail |= (sw = http_sweep_spawn(rt, &w->srv)) == NULL;
    /* The other threads' drains are handed over by the first thread's. */
    if (w->idx == 0)
        fail |= (dr = http_drain_spawn(rt, w->sigfd, &w->srv, w->drain_ms)) == NULL;
    if (fail) {
        fprintf(stderr, "httpd: thread %d: out of memory\n", w->idx);
        w->ret = -ENOMEM;
        kill(getpid(), SIGTERM);
        for (int i = 0; i < HTTP_ACCEPTORS; i++)
            if (acc[i])
                pd_task_release(acc[i]);
        if (dr)
            pd_task_release(dr);
        if (sw)
            pd_task_release(sw);
        if (w->idx > 0)
            wait_handed(w->sh);
        pd_runtime_free(rt);
        return NULL;
    }
    memcpy(w->srv.accept_tasks, acc, sizeof(acc));
    ret = pd_run(rt);
    for (int i = 0; i < HTTP_ACCEPTORS; i++) {
        if (ret == 0 && pd_task_output(acc[i]) != NULL) {
            long a = *(const long *)pd_task_output(acc[i]);

            fprintf(stderr, "httpd: thread %d: accept failed: %s\n", w->idx,
                    strerror((int)-a));
            ret = (int)a;
        }
        w->srv.accept_tasks[i] = NULL;
        pd_task_release(acc[i]);
    }
    if (dr != NULL)
        pd_task_release(dr);
    pd_task_release(sw);
    pd_runtime_stats(rt, &w->st);
    if (ret < 0)
        kill(getpid(), SIGTERM);
    if (w->idx > 0)
        wait_handed(w->sh);
    pd_runtime_free(rt);
    w->ret = ret;
    return NULL;
}

/*
 * A listener on addr; with reuse set, others may bind the same port. With
 * cc set, the listener's TCP congestion control is cc, which every
 * connection it accepts inherits (a connection's own setsockopt after the
 * accept would come too late: the system's algorithm, bbr for one, has
 * set up its pacing by then, and pacing stays on). Returns the descriptor
 * or -errno (-ENOENT for an unknown cc, -EPERM for one the system does
 * not allow this process).
 */
static int listener(const struct sockaddr_storage *addr, socklen_t alen, int reuse,
                    const char *cc)
{
    int one = 1, fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /*
     * Connections inherit TCP_NODELAY from the listener: a response's last
     * short segment must not wait for the ACK of the one before (Nagle),
     * which a client delays (delayed ACK) until its own next request.
     */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (cc != NULL && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc)) < 0)
        goto fail;
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

void httpd_defaults(httpd_opts *o)
{
    *o = (httpd_opts){
        .host = "127.0.0.1", .root = ".", .port = 8080, .threads = 1, .max_conns = 10000,
        .drain_ms = 5000, .header_ms = 10000, .idle_ms = 5000, .send_ms = 60000,
        .linger_ms = 1000, .body = HTTPD_BODY, .ready_fd = -1,
        .cache_entries = HTTP_CACHE_ENTRIES, .cache_valid_ms = HTTP_CACHE_VALID_MS,
    };
}

/* Open descriptors of the process, to check that a run leaked none. */
static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Parses host and port into addr; returns its length, or 0 if host is bad. */
static socklen_t address(const char *host, long port, struct sockaddr_storage *addr)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;

    memset(addr, 0, sizeof(*addr));
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return sizeof(*a4);
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return sizeof(*a6);
    }
    return 0;
}

/*
 * The connections the descriptor limit can serve. Each takes its socket,
 * and while it sends a file that file's descriptor too, and under -L
 * splice a pipe (two). Each thread's ring, listener, eventfd and signalfd
 * (four: only the first thread has a signalfd, and under the epoll engine
 * the ring is an epoll descriptor and two eventfds, one more, which the
 * few spare cover), the large files it keeps open (HTTP_OFILES, one more
 * while a slot is replaced) and, under -L splice, its spare pipes, and a
 * few spare, come first. Of what is left, what the connections open beside their sockets
 * is kept for them, for up to 1024 connections at once: beyond that an
 * open fails with EMFILE, which is a 503. Without the reserve, accept (or
 * a kept file, or a pipe) would take the descriptor a connection needs to
 * open its file.
 */
static long fd_budget(const httpd_opts *o)
{
    struct rlimit rl;
    bool splice = o->body == HTTP_BODY_SPLICE;
    long per = splice ? 3 : 1; /* beside its socket: the file, the pipe */
    long thread = 4 + (o->cache_entries > 0 && o->cache_valid_ms > 0 ? HTTP_OFILES + 1 : 0) +
                  (splice ? 2 * HTTP_PIPES_SPARE : 0);
    long spare, conns;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return LONG_MAX;
    spare = (long)rl.rlim_cur - fd_count() - thread * o->threads - 4;
    if (spare < 1 + per)
        return 1;
    conns = spare / (1 + per);
    return conns <= 1024 ? conns : spare - 1024 * per;
}

int httpd_run(const httpd_opts *o)
{
    struct sockaddr_storage addr;
    socklen_t alen = address(o->host, o->port, &addr);
    int rootfd, ret = 0, fds = fd_count();
    http_peer *peers = NULL;
    shared sh = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
    long threads = o->threads, started = 1, port, max_conns = o->max_conns;
    worker *ws;
    sigset_t mask;

    if (alen == 0) {
        fprintf(stderr, "httpd: bad address '%s' (IPv4 or IPv6)\n", o->host);
        return 2;
    }
    rootfd = open(o->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        fprintf(stderr, "httpd: root '%s': %s\n", o->root, strerror(errno));
        return 1;
    }
    ws = calloc((size_t)threads, sizeof(*ws));
    peers = calloc((size_t)threads, sizeof(*peers));
    if (ws == NULL || peers == NULL) {
        fprintf(stderr, "httpd: out of memory\n");
        free(ws);
        free(peers);
        close(rootfd);
        return 1;
    }
    if (fd_budget(o) < max_conns) {
        max_conns = fd_budget(o);
        if (!o->quiet)
            printf("httpd: at most %ld connections: the descriptor limit (ulimit -n) allows "
                   "no more\n", max_conns);
    }

    /*
     * SIGINT and SIGTERM are blocked in every thread (the threads inherit
     * the mask) and read from a signalfd by the first thread's drain,
     * through its ring; that drain hands a drain to every other thread's
     * runtime (http_drain_spawn_on). No thread waits outside io_uring.
     */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (long i = 0; i < threads; i++) {
        worker *w = &ws[i];

        w->idx = (int)i;
        w->drain_ms = o->drain_ms;
        w->engine = o->engine;
        w->lfd = w->sigfd = -1;
        w->sh = &sh;
        http_srv_init(&w->srv, rootfd, o->header_ms, o->idle_ms, o->send_ms, o->linger_ms,
                      (max_conns + threads - 1) / threads);
        w->srv.quiet = o->quiet;
        w->srv.body = o->body;
        if (http_cache_init(&w->srv.cache, o->cache_entries, o->cache_valid_ms) < 0) {
            fprintf(stderr, "httpd: no memory for a cache of %ld entries\n",
                    o->cache_entries);
            ret = 1;
            goto out;
        }
        /* Large files are kept open under the response cache's validity rule. */
        w->srv.ofiles.valid_ms = w->srv.cache.e != NULL ? o->cache_valid_ms : 0;
        w->lfd = listener(&addr, alen, threads > 1, o->cc);
        if (w->lfd < 0) {
            fprintf(stderr, "httpd: cannot listen on %s port %ld: %s\n", o->host, o->port,
                    strerror(-w->lfd));
            ret = 1;
            goto out;
        }
        /* Port 0: the other threads bind the port the kernel chose. */
        if (i == 0)
            getsockname(w->lfd, (struct sockaddr *)&addr, &alen);
        if (i == 0 && (w->sigfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
            perror("httpd: signalfd");
            ret = 1;
            goto out;
        }
    }
    port = ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_port
                                           : ((struct sockaddr_in6 *)&addr)->sin6_port);

    for (; started < threads; started++) {
        ret = pthread_create(&ws[started].th, NULL, worker_main, &ws[started]);
        if (ret != 0) {
            fprintf(stderr, "httpd: pthread_create: %s\n", strerror(ret));
            ret = 1;
            kill(getpid(), SIGTERM); /* drain the threads already started */
            break;
        }
    }
    if (!o->quiet) {
        printf("httpd: listening on %s port %ld, root %s, %ld thread%s\n", o->host, port,
               o->root, threads, threads > 1 ? "s" : "");
        fflush(stdout);
    }
    if (o->ready_fd >= 0) {
        int p = (int)port;

        if (write(o->ready_fd, &p, sizeof(p)) != sizeof(p))
            perror("httpd: ready");
    }
    /* The first thread's drain hands over to every thread started. */
    pthread_mutex_lock(&sh.mu);
    while (sh.published < started - 1)
        pthread_cond_wait(&sh.cv, &sh.mu);
    pthread_mutex_unlock(&sh.mu);
    for (long i = 1; i < started; i++)
        peers[i - 1] = (http_peer){ .rt = ws[i].rt, .srv = &ws[i].srv };
    ws[0].srv.peers = peers;
    ws[0].srv.npeers = (int)started - 1;
    /* The first thread is this one. */
    worker_main(&ws[0]);
    /* Had it failed before its drain, the others are shut down from here. */
    if (!ws[0].srv.draining)
        for (long i = 1; i < started; i++)
            if (ws[i].rt != NULL)
                pd_shutdown_remote_deadline(ws[i].rt, o->drain_ms);
    pthread_mutex_lock(&sh.mu);
    sh.handed = true;
    pthread_cond_broadcast(&sh.cv);
    pthread_mutex_unlock(&sh.mu);
    for (long i = 0; i < started; i++) {
        worker *w = &ws[i];

        if (i > 0)
            pthread_join(w->th, NULL);
        if (w->ret < 0 || w->st.inflight_ops != 0 || w->srv.live != 0)
            ret = 1;
        if (!o->quiet)
            printf("httpd: thread %ld: signal %d: %llu responses, %llu connections; drain %s; "
                   "%llu ops in flight, %ld connections left\n", i, ws[0].srv.signo,
                   (unsigned long long)w->srv.responses, (unsigned long long)w->srv.accepted,
                   w->srv.cut ? "cut at the deadline" : "complete",
                   (unsigned long long)w->st.inflight_ops, w->srv.live);
    }
out:
    for (long i = 0; i < threads; i++) {
        http_srv_fini(&ws[i].srv);
        if (ws[i].lfd >= 0)
            close(ws[i].lfd);
        if (ws[i].sigfd >= 0)
            close(ws[i].sigfd);
    }
    free(ws);
    free(peers);
    close(rootfd);
    if (fds >= 0 && fd_count() != fds) {
        fprintf(stderr, "httpd: %d descriptors open after the drain, %d before\n",
                fd_count(), fds);
        ret = 1;
    }
    return ret;
}
