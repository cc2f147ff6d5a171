/*
 * make bench: polldrop against raw liburing (and libuv), side by side.
 *
 * Every benchmark runs polldrop and its baseline alternately (A, B, A, B,
 * ...) RUNS times in this one process and reports the medians. Ratios are
 * polldrop's throughput over the baseline's, so above 1 is better for
 * polldrop; for `cancel` (ns per op) and `idle_memory` (bytes per connection),
 * the ratio is baseline / polldrop for the same reading. Results go to
 * stdout as a table and to build/bench.tsv, with each row's goal where it
 * has one (the least ratio that meets it) and whether it was met; a missed
 * goal is reported, never a failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "echo_client.h"
#include "nops.h"
#include "pipe_read.h"
#include "threads.h"

#define RUNS 5
#define NOPS 1000000L
#define TASKS 128
#define CANCELS 100000L
#define ECHO_CONNS 64
#define ECHO_SIZE 64
#define ECHO_ROUNDS 2000L
/*
 * idle_memory: connections held idle, the message each echoes before it goes
 * quiet, and runs of each side (3 each).
 */
#define IDLE_CONNS 2000
#define IDLE_MSG 16
#define RUNS_MEMORY 3
/*
 * Goals (issue 22), as the least ratio that meets them: nop_tasks at 0.95 of
 * raw liburing, nop_chain at 0.98, and an echoed-then-idle connection at
 * most IDLE_GOAL_BYTES (a ratio of libuv's figure over that).
 */
#define GOAL_NOP_TASKS 0.95
#define GOAL_NOP_CHAIN 0.98
#define IDLE_GOAL_BYTES 512.0

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench: %s: %s\n", what, strerror(err));
    exit(1);
}

static pd_runtime *new_rt(void)
{
    pd_runtime *rt;
    int ret = pd_runtime_new(&rt, NULL);

    if (ret < 0)
        die("pd_runtime_new", -ret);
    return rt;
}

/*
 * The raw baselines get the ring polldrop gets: the same setup flags
 * (pd_stats.ring_flags), so that both sides pay the kernel the same.
 */
static void raw_ring(struct io_uring *ring, unsigned entries)
{
    int ret = io_uring_queue_init(entries, ring,
                                  IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                      IORING_SETUP_TASKRUN_FLAG);

    if (ret == -EINVAL)
        ret = io_uring_queue_init(entries, ring, 0);
    if (ret < 0)
        die("io_uring_queue_init", -ret);
}

/* Reaps what is there; counts completions whose user_data is >= min_ud. */
static long raw_reap(struct io_uring *ring, uint64_t min_ud)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    long counted = 0;

    io_uring_for_each_cqe(ring, head, cqe) {
        n++;
        counted += cqe->user_data >= min_ud;
    }
    io_uring_cq_advance(ring, n);
    return counted;
}

/*
 * An SQE, submitting when the queue is full. Like polldrop's slow path it
 * enters with GETEVENTS and reaps until the kernel has no completion left
 * to post, so the completion queue never overflows and, with
 * DEFER_TASKRUN, cancelled requests leave the kernel's cancel lookup as
 * they go: a plain io_uring_submit would leave their completions deferred
 * and every later cancel would search past them, which made this baseline
 * quadratic in a storm of cancels (and polldrop look 2.7 times faster on
 * `cancel` than it is). The count of reaped completions goes to *reaped
 * when it is not NULL.
 */
static struct io_uring_sqe *raw_sqe_reaping(struct io_uring *ring, long *reaped)
{
    struct io_uring_sqe *s;

    while ((s = io_uring_get_sqe(ring)) == NULL) {
        long n, total = 0;

        io_uring_submit_and_get_events(ring);
        do {
            n = raw_reap(ring, 4096);
            total += n;
            if (reaped)
                *reaped += n;
        } while (n > 0 && total < (long)ring->cq.ring_entries &&
                 io_uring_get_events(ring) >= 0);
    }
    return s;
}

static struct io_uring_sqe *raw_sqe(struct io_uring *ring)
{
    return raw_sqe_reaping(ring, NULL);
}

/* --- nop_chain: one future, sequential nops --- */

static double pd_nop_chain(void)
{
    pd_runtime *rt = new_rt();
    long out = 0;
    double t0 = now(), dt;

    if (nops_block_on(rt, NOPS, &out) < 0 || out != NOPS)
        die("nops", EIO);
    dt = now() - t0;
    pd_runtime_free(rt);
    return (double)NOPS / dt;
}

static double raw_nop_chain(void)
{
    struct io_uring ring;
    struct io_uring_cqe *cqe;
    double t0, dt;
    long i;

    raw_ring(&ring, 256);
    t0 = now();
    for (i = 0; i < NOPS; i++) {
        io_uring_prep_nop(raw_sqe(&ring));
        io_uring_submit_and_wait(&ring, 1);
        if (io_uring_peek_cqe(&ring, &cqe) == 0)
            io_uring_cqe_seen(&ring, cqe);
    }
    dt = now() - t0;
    io_uring_queue_exit(&ring);
    return (double)NOPS / dt;
}

/*
 * Enters as polldrop's runtime does on x86-64 (runtime/ring.h): the
 * system call instruction inline in the loop, where liburing's
 * io_uring_submit_and_wait reaches it through a call into the library.
 * On this machine the returns after each system call cost about a
 * quarter of an op (docs/bench.md), so this anchor shows what the
 * runtime itself costs over the kernel, the call excluded.
 */
static int raw_enter_inline(int fd, unsigned to_submit)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = IORING_ENTER_GETEVENTS;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 8;
    long ret;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"((long)__NR_io_uring_enter), "D"((long)fd), "S"((long)to_submit),
                       "d"(1L), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return (int)ret;
#else
    long ret = syscall(__NR_io_uring_enter, fd, to_submit, 1, IORING_ENTER_GETEVENTS, NULL, 8);

    return ret < 0 ? -errno : (int)ret;
#endif
}

/* raw_nop_chain, entering through raw_enter_inline. */
static double raw_nop_chain_inline(void)
{
    struct io_uring ring;
    struct io_uring_cqe *cqe;
    double t0, dt;
    long i;

    raw_ring(&ring, 256);
    t0 = now();
    for (i = 0; i < NOPS; i++) {
        struct io_uring_sq *sq = &ring.sq;

        io_uring_prep_nop(raw_sqe(&ring));
        sq->sqe_head = sq->sqe_tail;
        io_uring_smp_store_release(sq->ktail, sq->sqe_tail);
        if (raw_enter_inline(ring.ring_fd, 1) < 0)
            die("io_uring_enter", EIO);
        if (io_uring_peek_cqe(&ring, &cqe) == 0)
            io_uring_cqe_seen(&ring, cqe);
    }
    dt = now() - t0;
    io_uring_queue_exit(&ring);
    return (double)NOPS / dt;
}

/* --- nop_tasks: TASKS concurrent chains --- */

static double pd_nop_tasks(void)
{
    pd_runtime *rt = new_rt();
    pd_task *t[TASKS];
    double t0 = now(), dt;
    int i;

    for (i = 0; i < TASKS; i++)
        t[i] = nops_spawn(rt, NOPS / TASKS);
    if (pd_run(rt) < 0)
        die("pd_run", EIO);
    dt = now() - t0;
    for (i = 0; i < TASKS; i++)
        pd_task_release(t[i]);
    pd_runtime_free(rt);
    return (double)(NOPS / TASKS * TASKS) / dt;
}

static double raw_nop_tasks(void)
{
    struct io_uring ring;
    long left[TASKS], done = 0, total = NOPS / TASKS * TASKS;
    double t0, dt;
    int i;

    raw_ring(&ring, 256);
    t0 = now();
    for (i = 0; i < TASKS; i++) {
        struct io_uring_sqe *s = raw_sqe(&ring);

        left[i] = NOPS / TASKS - 1;
        io_uring_prep_nop(s);
        io_uring_sqe_set_data64(s, (uint64_t)i);
    }
    while (done < total) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        io_uring_submit_and_wait(&ring, 1);
        io_uring_for_each_cqe(&ring, head, cqe) {
            int k = (int)cqe->user_data;

            n++;
            done++;
            if (left[k]-- > 0) {
                struct io_uring_sqe *s = raw_sqe(&ring);

                io_uring_prep_nop(s);
                io_uring_sqe_set_data64(s, (uint64_t)k);
            }
        }
        io_uring_cq_advance(&ring, n);
    }
    dt = now() - t0;
    io_uring_queue_exit(&ring);
    return (double)total / dt;
}

/* --- cancel: CANCELS pipe reads in flight, all cancelled --- */

/*
 * ns per op to cancel n in-flight pipe reads and run until quiesced, on a
 * runtime made with cfg (NULL for the defaults): oldest first with
 * pd_task_cancel, or newest first through pd_shutdown when by_shutdown.
 */
static double pd_cancel_cfg(long n, const pd_config *cfg, int by_shutdown)
{
    pd_runtime *rt;
    pd_task **t = malloc((size_t)n * sizeof(*t));
    int p[2];
    double t0, dt;
    pd_stats s;
    long i;
    int ret;

    if (!t || pipe2(p, O_CLOEXEC) < 0)
        die("setup", errno);
    ret = pd_runtime_new(&rt, cfg);
    if (ret < 0)
        die("pd_runtime_new", -ret);
    for (i = 0; i < n; i++)
        t[i] = pipe_read_spawn(rt, p[0], -1);
    pd_run_once(rt, 0);
    pd_runtime_stats(rt, &s);
    if (s.inflight_ops != (uint64_t)n)
        die("not all reads in flight", EIO);
    t0 = now();
    if (by_shutdown) {
        ret = pd_shutdown(rt);
    } else {
        for (i = 0; i < n; i++)
            pd_task_cancel(t[i]);
        ret = pd_run(rt);
    }
    if (ret < 0)
        die("pd_run", -ret);
    dt = now() - t0;
    for (i = 0; i < n; i++)
        pd_task_release(t[i]);
    free(t);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
    return dt * 1e9 / (double)n;
}

static double pd_cancel_n(long n)
{
    return pd_cancel_cfg(n, NULL, 0);
}

/*
 * Requests are tagged with their buffer's address, as polldrop tags them
 * with their op slot's. The tag matters: the kernel finds a request to
 * cancel by hashing its user_data into a small table (a few dozen buckets
 * for a 256-entry ring) and walking the chain, and with small consecutive
 * integers as tags, as this baseline once used, that walk took 3.6 times
 * as long at 100,000 requests. Both sides cancel oldest first, the
 * worst order for that walk (new requests go to the head of a chain).
 */
static double raw_cancel_n(long n)
{
    struct io_uring ring;
    char (*bufs)[64] = malloc((size_t)n * 64);
    long i, reaped = 0;
    double t0, dt;
    int p[2];

    if (!bufs || pipe2(p, O_CLOEXEC) < 0)
        die("setup", errno);
    raw_ring(&ring, 256);
    for (i = 0; i < n; i++) {
        struct io_uring_sqe *s = raw_sqe(&ring);

        io_uring_prep_read(s, p[0], bufs[i], 64, (uint64_t)-1);
        io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)bufs[i]);
    }
    io_uring_submit(&ring);
    t0 = now();
    for (i = 0; i < n; i++) {
        struct io_uring_sqe *s = raw_sqe_reaping(&ring, &reaped);

        io_uring_prep_cancel64(s, (uint64_t)(uintptr_t)bufs[i], 0);
        io_uring_sqe_set_data64(s, 1);
        s->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    while (reaped < n) {
        io_uring_submit_and_wait(&ring, 1);
        reaped += raw_reap(&ring, 4096);
    }
    dt = now() - t0;
    io_uring_queue_exit(&ring);
    close(p[0]);
    close(p[1]);
    free(bufs);
    return dt * 1e9 / (double)n;
}

static double pd_cancel(void) { return pd_cancel_n(CANCELS); }
static double raw_cancel(void) { return raw_cancel_n(CANCELS); }

/*
 * The same with 1,000 reads in flight, averaged over 20 rounds: the kernel's
 * cancel lookup grows with the requests outstanding, so this shows the
 * per-cancel cost of polldrop itself where the kernel's share is small.
 */
static double cancel_small(double (*f)(long))
{
    double sum = 0;
    int r;

    for (r = 0; r < 20; r++)
        sum += f(1000);
    return sum / 20;
}

static double pd_cancel_1k(void) { return cancel_small(pd_cancel_n); }
static double raw_cancel_1k(void) { return cancel_small(raw_cancel_n); }

/*
 * cancel_storm: STORM reads in flight, cancelled at once by pd_shutdown
 * (newest first), on a small and a large ring, with the default ring flags
 * (SINGLE_ISSUER | DEFER_TASKRUN) against PD_CONFIG_NO_DEFER_TASKRUN. With
 * deferred task work a cancelled request leaves the kernel's cancel lookup
 * only when the ring is entered with GETEVENTS, so this row shows whether
 * the runtime's submit paths let that work run (see runtime/complete.c).
 */
#define STORM 20000L

static double storm(unsigned entries, unsigned flags)
{
    pd_config cfg = { .entries = entries, .flags = flags };

    return pd_cancel_cfg(STORM, &cfg, 1);
}

static double storm4_defer(void) { return storm(4, 0); }
static double storm4_nodefer(void) { return storm(4, PD_CONFIG_NO_DEFER_TASKRUN); }
static double storm256_defer(void) { return storm(256, 0); }
static double storm256_nodefer(void) { return storm(256, PD_CONFIG_NO_DEFER_TASKRUN); }

/* --- echo: one client, three servers --- */

/*
 * A port free on 127.0.0.1 now, picked at random below the kernel's
 * ephemeral range (32768 and up by default): a port the kernel hands out
 * for bind(0) or as a client's local port could be taken again between
 * this check and the server's bind, by another program doing the same (a
 * second bench on the machine) or by one of its connections.
 */
static int free_port(void)
{
    static unsigned seed;
    int tries;

    if (seed == 0)
        seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (tries = 0; tries < 1000; tries++) {
        struct sockaddr_in a = { .sin_family = AF_INET };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok, port;

        port = 20000 + (int)(rand_r(&seed) % 12000);
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return port;
    }
    die("no free port in 20000-31999", EADDRINUSE);
    return -1;
}

/*
 * Starts argv (with "{port}" replaced by port) and waits until it accepts
 * connections on 127.0.0.1:port.
 */
static pid_t spawn_server(const char *const *argv, int port)
{
    char ps[16], *args[16];
    pid_t pid;
    int tries, i;

    snprintf(ps, sizeof(ps), "%d", port);
    for (i = 0; argv[i] && i < 15; i++)
        args[i] = strcmp(argv[i], "{port}") == 0 ? ps : (char *)argv[i];
    args[i] = NULL;
    pid = fork();
    if (pid == 0) {
        execv(args[0], args);
        _exit(127);
    }
    for (tries = 0; tries < 400; tries++) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok, status;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        /* What answers must be our server: it is still running. */
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "bench: %s exited at start (port %d)\n", argv[0], port);
            exit(1);
        }
        if (ok)
            return pid;
        usleep(5000);
    }
    kill(pid, SIGKILL);
    fprintf(stderr, "bench: %s did not start\n", argv[0]);
    exit(1);
}

/*
 * Starts a server on port; an echo_server on engine `engine` ("uring" or
 * "epoll", its -e), with `threads` threads if not NULL, and with `flag`
 * (e.g. "-1", the single-shot design) if not NULL.
 */
static pid_t start_server(const char *prog, int port, const char *engine, const char *threads,
                          const char *flag)
{
    const char *pd_argv[] = { prog, "-q", "-p", "{port}", "-e", engine, "-t",
                              threads ? threads : "1", flag, NULL };
    const char *argv[] = { prog, "{port}", NULL };

    return spawn_server(strstr(prog, "echo_server") ? pd_argv : argv, port);
}

static void stop_server(pid_t pid)
{
    int status;

    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
}

/*
 * A process's user + system CPU time in microseconds, from fields 14 and 15
 * of /proc/PID/stat. The command name (field 2) may hold spaces, so the
 * fields are counted from its closing parenthesis.
 */
static double cpu_us(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path, errno);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        die(path, EIO);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &ut, &st) != 2)
        die(path, EIO);
    return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* Server CPU time per round trip of the last echo run, in microseconds. */
static double echo_cpu_per_rt;

/*
 * The same polldrop client drives every server: round trips per second.
 * Also leaves the server's CPU time per round trip in echo_cpu_per_rt: the
 * client shares the two cores, so throughput alone cannot show a server
 * that needs less CPU than another.
 */
static double echo_run_threads(const char *server, const char *engine, const char *threads,
                               const char *flag)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    int port = free_port(), i;
    pid_t pid = start_server(server, port, engine, threads, flag);
    pd_runtime *rt = new_rt();
    pd_task *t[ECHO_CONNS];
    long ok = 0;
    double t0, dt;

    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t0 = now();
    for (i = 0; i < ECHO_CONNS; i++)
        t[i] = echo_client_spawn(rt, (const struct sockaddr *)&a, sizeof(a), ECHO_SIZE,
                                 ECHO_ROUNDS, 0);
    if (pd_run(rt) < 0)
        die("echo client", EIO);
    dt = now() - t0;
    for (i = 0; i < ECHO_CONNS; i++) {
        long r = *(const long *)pd_task_output(t[i]);

        if (r != ECHO_ROUNDS)
            die(server, r < 0 ? (int)-r : EIO);
        ok += r;
        pd_task_release(t[i]);
    }
    echo_cpu_per_rt = cpu_us(pid) / (double)ok;
    pd_runtime_free(rt);
    stop_server(pid);
    return (double)ok / dt;
}

/* --- memory: resident bytes per idle connection --- */

/* A process's VmRSS in KiB, from /proc/PID/status. */
static long vm_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        die(path, errno);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int fd_count(pid_t pid)
{
    char path[64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    if (!d)
        die(path, errno);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Lets this process and its children open at least n descriptors. */
static void raise_nofile(rlim_t n)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit", errno);
    if (rl.rlim_cur >= n)
        return;
    if (rl.rlim_max < n)
        rl.rlim_max = n; /* only root may, and the bench says why if it fails */
    rl.rlim_cur = n;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit(RLIMIT_NOFILE)", errno);
}

/*
 * Sends IDLE_MSG bytes on fd and reads their echo back, within 30 s (the
 * socket's receive timeout); dies unless the same bytes come back.
 */
static void echo_once(int fd, int i)
{
    struct timeval tv = { .tv_sec = 30 };
    char msg[IDLE_MSG], got[IDLE_MSG];
    size_t have = 0;

    snprintf(msg, sizeof(msg), "idle %010d", i);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg))
        die("send", errno);
    while (have < sizeof(got)) {
        ssize_t r = recv(fd, got + have, sizeof(got) - have, 0);

        if (r <= 0)
            die("the echo of an idle connection's message", r < 0 ? errno : EIO);
        have += (size_t)r;
    }
    if (memcmp(msg, got, sizeof(msg)) != 0)
        die("the echo of an idle connection's message differs", EIO);
}

/*
 * Resident memory one idle connection costs a server, two ways, in bytes:
 * the server's VmRSS with n connections open that never sent, minus its
 * VmRSS with none, over n (*silent); then the same once each of them has
 * echoed one IDLE_MSG-byte message and gone quiet again (*echoed). argv is
 * the server's command line with "{port}" where its port goes; it must
 * serve n connections at once. Kernel socket buffers are not in VmRSS:
 * this is the server's own memory.
 */
static void idle_rss_per_conn(const char *const *argv, int n, double *silent, double *echoed)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    struct linger hard = { 1, 0 };
    int port = free_port(), *fds, base, i, tries;
    long rss0, rss1, rss2;
    pid_t pid;

    raise_nofile((rlim_t)n + 512);
    fds = malloc((size_t)n * sizeof(*fds));
    if (!fds)
        die("malloc", ENOMEM);
    pid = spawn_server(argv, port);
    usleep(50000); /* the probe connection's close has been handled */
    rss0 = vm_rss_kib(pid);
    base = fd_count(pid);
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0)
            die("connect", errno);
    }
    /* Accepted and idle: the server holds one descriptor per connection. */
    for (tries = 0; fd_count(pid) < base + n && tries < 2000; tries++)
        usleep(5000);
    if (fd_count(pid) < base + n)
        die("the server did not accept every connection", EIO);
    usleep(50000);
    rss1 = vm_rss_kib(pid);
    /* One round trip each, one connection at a time, then quiet. */
    for (i = 0; i < n; i++)
        echo_once(fds[i], i);
    usleep(50000);
    rss2 = vm_rss_kib(pid);
    for (i = 0; i < n; i++) {
        /* A reset, not a FIN: no TIME_WAIT left to exhaust the ports. */
        setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
        close(fds[i]);
    }
    free(fds);
    stop_server(pid);
    *silent = (double)(rss1 - rss0) * 1024.0 / n;
    *echoed = (double)(rss2 - rss0) * 1024.0 / n;
}

/* --- reporting --- */

/* goal: the least ratio that meets the row's goal, or 0 for a row without one. */
struct row {
    const char *name, *unit, *baseline;
    double pd, base, ratio, goal;
};

static struct row rows[32];
static int nrows;

/* "met" or "NOT met" against the row's goal, "-" for a row without one. */
static const char *goal_verdict(const struct row *r)
{
    return r->goal <= 0 ? "-" : r->ratio >= r->goal ? "met" : "NOT met";
}

/*
 * Records a row; goal is the least ratio that meets the row's goal (0: no
 * goal). A missed goal is reported, never an error: the run goes on.
 */
static void add_goal_row(const char *name, const char *unit, const char *baseline,
                         double pd, double base, int lower_is_better, double goal)
{
    struct row *r = &rows[nrows++];

    r->name = name;
    r->unit = unit;
    r->baseline = baseline;
    r->pd = pd;
    r->base = base;
    r->ratio = lower_is_better ? base / pd : pd / base;
    r->goal = goal;
    printf("  %-20s %-28s polldrop %12.1f   %-8s %12.1f   ratio %.3f", name, unit, pd,
           baseline, base, r->ratio);
    if (goal > 0)
        printf("   goal >= %.3f: %s", goal, goal_verdict(r));
    printf("\n");
    fflush(stdout);
}

static void add_row(const char *name, const char *unit, const char *baseline,
                    double pd, double base, int lower_is_better)
{
    add_goal_row(name, unit, baseline, pd, base, lower_is_better, 0);
}

static void ab_goal(const char *name, const char *unit, const char *baseline,
                    double (*a)(void), double (*b)(void), int lower_is_better, double goal)
{
    double va[RUNS], vb[RUNS];
    int i;

    /* Alternate which side goes first, so neither always runs warm. */
    for (i = 0; i < RUNS; i++) {
        if (i & 1) {
            vb[i] = b();
            va[i] = a();
        } else {
            va[i] = a();
            vb[i] = b();
        }
    }
    add_goal_row(name, unit, baseline, median(va, RUNS), median(vb, RUNS), lower_is_better,
                 goal);
}

static void ab(const char *name, const char *unit, const char *baseline,
               double (*a)(void), double (*b)(void), int lower_is_better)
{
    ab_goal(name, unit, baseline, a, b, lower_is_better, 0);
}

/* Runs three sides in turn, starting with side i % 3: each goes first once in three. */
static void rotate3(int i, double (*a)(void), double *va, double (*b)(void), double *vb,
                    double (*c)(void), double *vc)
{
    double (*f[3])(void) = { a, b, c };
    double *v[3] = { va, vb, vc };
    int k;

    for (k = 0; k < 3; k++)
        *v[(i + k) % 3] = f[(i + k) % 3]();
}

/* The echo_server sides name their engine (-e): uring, or epoll for the _epoll rows. */
static double echo_run(const char *server)
{
    return echo_run_threads(server, "uring", NULL, NULL);
}
static double echo_pd(void) { return echo_run_threads("build/echo_server", "uring", NULL, "-1"); }
static double echo_pd_ms(void) { return echo_run("build/echo_server"); }
static double echo_pd_2(void) { return echo_run_threads("build/echo_server", "uring", "2", NULL); }
static double echo_raw(void) { return echo_run("build/raw_echo"); }
static double echo_raw_ms(void) { return echo_run("build/raw_echo_ms"); }
static double echo_uv(void) { return echo_run("build/uv_echo"); }
static double echo_pd_epoll(void)
{
    return echo_run_threads("build/echo_server", "epoll", NULL, "-1");
}
static double echo_pd_ms_epoll(void)
{
    return echo_run_threads("build/echo_server", "epoll", NULL, NULL);
}

/*
 * Goal (issue 19) of echo_server on the epoll engine against libuv, which
 * polls with epoll too: at least its round trips/s and at most its server
 * CPU per round trip, both as the least ratio 1.0.
 */
#define GOAL_EPOLL_ECHO 1.0

/*
 * An echo server against raw liburing and libuv, with the same server on
 * the epoll engine (epoll_side) as a fourth side, the four in turn, each
 * going first once in four: round trips per second (row name; the epoll
 * side's row is ename, against libuv) and server CPU time per round trip
 * (row cpu_name; the epoll side's cpu_ename). Every side is served to the same
 * client in the same runs, so the io_uring and epoll rows compare.
 */
static void echo_rows(const char *name, const char *cpu_name, const char *ename,
                      const char *cpu_ename, double (*pd_side)(void), double (*raw_side)(void),
                      double (*epoll_side)(void))
{
    double (*side[4])(void) = { pd_side, raw_side, echo_uv, epoll_side };
    double tput[4][RUNS], cpu[4][RUNS];
    int i, k;

    for (i = 0; i < RUNS; i++)
        for (k = 0; k < 4; k++) {
            int j = (i + k) % 4;

            tput[j][i] = side[j]();
            cpu[j][i] = echo_cpu_per_rt;
        }
    add_row(name, "round trips/s", "liburing", median(tput[0], RUNS), median(tput[1], RUNS), 0);
    add_row(name, "round trips/s", "libuv", median(tput[0], RUNS), median(tput[2], RUNS), 0);
    add_goal_row(ename, "round trips/s, epoll", "libuv", median(tput[3], RUNS),
                 median(tput[2], RUNS), 0, GOAL_EPOLL_ECHO);
    add_row(cpu_name, "server us/round trip", "liburing", median(cpu[0], RUNS),
            median(cpu[1], RUNS), 1);
    add_row(cpu_name, "server us/round trip", "libuv", median(cpu[0], RUNS),
            median(cpu[2], RUNS), 1);
    add_goal_row(cpu_ename, "server us/round trip, epoll", "libuv",
                 median(cpu[3], RUNS), median(cpu[2], RUNS), 1, GOAL_EPOLL_ECHO);
}

static int selected(int argc, char **argv, const char *name)
{
    int i;

    if (argc < 2)
        return 1;
    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

/*
 * build/bench [NAME...]: runs the named benchmarks (nop_chain, nop_tasks,
 * echo, echo_multishot, echo_threads, ping_pong, cancel_1k, cancel,
 * cancel_storm, idle_memory), or all of them.
 */
int main(int argc, char **argv)
{
    FILE *tsv;
    double pd[RUNS], raw[RUNS], uv[RUNS];
    double pd_silent[RUNS_MEMORY], uv_silent[RUNS_MEMORY], one_silent[RUNS_MEMORY];
    int i;

    signal(SIGPIPE, SIG_IGN);
    printf("polldrop bench: medians of %d alternating runs\n", RUNS);
    if (selected(argc, argv, "nop_chain"))
        ab_goal("nop_chain", "nops/s", "liburing", pd_nop_chain, raw_nop_chain, 0,
                GOAL_NOP_CHAIN);
    if (selected(argc, argv, "nop_chain"))
        ab("nop_chain", "nops/s", "inline_enter", pd_nop_chain, raw_nop_chain_inline, 0);
    if (selected(argc, argv, "nop_tasks"))
        ab_goal("nop_tasks", "nops/s (128 tasks)", "liburing", pd_nop_tasks, raw_nop_tasks, 0,
                GOAL_NOP_TASKS);
    if (selected(argc, argv, "echo"))
        echo_rows("echo", "echo_cpu", "echo_epoll", "echo_epoll_cpu", echo_pd, echo_raw,
                  echo_pd_epoll);
    if (selected(argc, argv, "echo_multishot"))
        echo_rows("echo_multishot", "echo_ms_cpu", "echo_multishot_epoll", "echo_ms_epoll_cpu",
                  echo_pd_ms, echo_raw_ms, echo_pd_ms_epoll);
    if (selected(argc, argv, "echo_threads"))
        ab("echo_threads", "round trips/s", "1 thread", echo_pd_2, echo_pd_ms, 0);
    if (selected(argc, argv, "ping_pong")) {
        for (i = 0; i < RUNS; i++)
            rotate3(i, pd_ping_pong, &pd[i], raw_ping_pong_eventfd, &raw[i],
                    raw_ping_pong_msg_ring, &uv[i]);
        add_row("ping_pong", "round trips/s", "eventfd", median(pd, RUNS),
                median(raw, RUNS), 0);
        add_row("ping_pong", "round trips/s", "msg_ring", median(pd, RUNS),
                median(uv, RUNS), 0);
    }
    if (selected(argc, argv, "cancel_1k"))
        ab("cancel_1k", "ns per cancelled op", "liburing", pd_cancel_1k, raw_cancel_1k, 1);
    if (selected(argc, argv, "cancel"))
        ab("cancel", "ns per cancelled op", "liburing", pd_cancel, raw_cancel, 1);
    if (selected(argc, argv, "cancel_storm")) {
        ab("cancel_storm_4", "ns/cancel, 4 entries", "no_defer", storm4_defer,
           storm4_nodefer, 1);
        ab("cancel_storm_256", "ns/cancel, 256 entries", "no_defer", storm256_defer,
           storm256_nodefer, 1);
    }
    if (!selected(argc, argv, "idle_memory"))
        goto out;

    /*
     * Measured on the running servers: resident bytes per idle connection
     * at IDLE_CONNS connections, once they have each echoed a message
     * (idle_memory) and, on the way there, before any sent
     * (idle_memory_silent); the multishot echo_server with its default
     * flags against libuv's idiom and against the single-shot design
     * (echo_server -1, the rows' "single_shot" anchor), in turn.
     */
    for (i = 0; i < RUNS_MEMORY; i++) {
        const char *ms_argv[] = { "build/echo_server", "-q", "-m", "20000", "-p", "{port}",
                                  NULL };
        const char *one_argv[] = { "build/echo_server", "-q", "-1", "-m", "20000", "-p",
                                   "{port}", NULL };
        const char *uv_argv[] = { "build/uv_echo", "-a", "{port}", NULL };
        const char *const *order[3] = { ms_argv, uv_argv, one_argv };
        double *v[3] = { &pd[i], &uv[i], &raw[i] };
        double *w[3] = { &pd_silent[i], &uv_silent[i], &one_silent[i] };
        int k;

        for (k = 0; k < 3; k++)
            idle_rss_per_conn(order[(i + k) % 3], IDLE_CONNS, w[(i + k) % 3], v[(i + k) % 3]);
    }
    {
        double uv_bytes = median(uv, RUNS_MEMORY);

        add_goal_row("idle_memory", "bytes/conn, 2k, echoed 16 B", "libuv",
                     median(pd, RUNS_MEMORY), uv_bytes, 1, uv_bytes / IDLE_GOAL_BYTES);
    }
    add_row("idle_memory", "bytes/conn, 2k, echoed 16 B", "single_shot",
            median(pd, RUNS_MEMORY), median(raw, RUNS_MEMORY), 1);
    add_row("idle_memory_silent", "bytes/conn, 2k, never sent", "libuv",
            median(pd_silent, RUNS_MEMORY), median(uv_silent, RUNS_MEMORY), 1);
    add_row("idle_memory_silent", "bytes/conn, 2k, never sent", "single_shot",
            median(pd_silent, RUNS_MEMORY), median(one_silent, RUNS_MEMORY), 1);
out:

    tsv = fopen("build/bench.tsv", "w");
    if (!tsv)
        die("build/bench.tsv", errno);
    fprintf(tsv, "benchmark\tpolldrop\tbaseline\tbaseline_value\tratio\tgoal\tmet\tunit\n");
    for (i = 0; i < nrows; i++) {
        char goal[32] = "-";

        if (rows[i].goal > 0)
            snprintf(goal, sizeof(goal), "%.3f", rows[i].goal);
        fprintf(tsv, "%s\t%.1f\t%s\t%.1f\t%.3f\t%s\t%s\t%s\n", rows[i].name, rows[i].pd,
                rows[i].baseline, rows[i].base, rows[i].ratio, goal,
                rows[i].goal <= 0 ? "-" : rows[i].ratio >= rows[i].goal ? "yes" : "no",
                rows[i].unit);
    }
    fclose(tsv);
    printf("wrote build/bench.tsv\n");
    return 0;
}
