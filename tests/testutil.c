#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <signal.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

long pd_test_marks_sent;

/*
 * The mark point passed on last (file, line), and whether this process is
 * a fork of the runner's, where it is kept.
 */
static const char *pd_test_mark_file;
static int pd_test_mark_line;
static int pd_test_mark_forked;

/*
 * A forked test starts knowing nothing of its runner's mark points: Check
 * locates it at its START_TEST until it passes one. Without forks
 * (CK_FORK=no, as under valgrind) tests follow each other in one process,
 * with nothing to tell where one begins, so every mark point is passed on.
 */
static void pd_test_mark_forget(void)
{
    pd_test_mark_file = NULL;
    pd_test_mark_line = 0;
    pd_test_mark_forked = 1;
}

__attribute__((constructor)) static void pd_test_mark_init(void)
{
    pthread_atfork(NULL, NULL, pd_test_mark_forget);
}

/*
 * Passes (file, line) on to Check unless it is the mark point passed on
 * last in this forked test. Threads that assert at once may pass on one more, or one less,
 * than a single thread would; Check's own record of the last one is
 * shared by them too.
 */
void pd_test_mark_point(const char *file, int line)
{
    if (pd_test_mark_forked && __atomic_load_n(&pd_test_mark_file, __ATOMIC_RELAXED) == file &&
        __atomic_load_n(&pd_test_mark_line, __ATOMIC_RELAXED) == line)
        return;
    __atomic_store_n(&pd_test_mark_file, file, __ATOMIC_RELAXED);
    __atomic_store_n(&pd_test_mark_line, line, __ATOMIC_RELAXED);
    __atomic_fetch_add(&pd_test_marks_sent, 1, __ATOMIC_RELAXED);
    (_mark_point)(file, line);
}

int pd_test_uring_ok(int *why)
{
    const pd_config cfg = { .engine = PD_ENGINE_URING };
    pd_runtime *rt;
    int ret = pd_runtime_new(&rt, &cfg);

    *why = ret;
    if (ret < 0)
        return 0;
    pd_runtime_free(rt);
    return 1;
}

pd_runtime *pd_test_rt(void)
{
    pd_runtime *rt = NULL;
    int ret = pd_runtime_new(&rt, NULL);

    ck_assert_msg(ret == 0, "pd_runtime_new: %s", strerror(-ret));
    return rt;
}

int pd_test_rt_fds(const pd_runtime *rt)
{
    const char *e = pd_runtime_engine(rt);

    /*
     * io_uring: the ring and the wake eventfd; epoll: its epoll fd and its
     * workers' eventfd too; the simulator: the wake eventfd alone.
     */
    return strcmp(e, "epoll") == 0 ? 3 : strcmp(e, "sim") == 0 ? 1 : 2;
}

int pd_test_sim_inline(void)
{
    const char *engine = getenv("PD_ENGINE"), *faults = getenv("PD_SIM_FAULTS");

    return engine != NULL && strcmp(engine, "sim") == 0 && faults != NULL &&
           strcmp(faults, "0") == 0;
}

int pd_test_skip_on_sim(const char *test, const char *why)
{
    pd_runtime *rt = pd_test_rt();
    int sim = strcmp(pd_runtime_engine(rt), "sim") == 0;

    pd_runtime_free(rt);
    if (sim)
        fprintf(stderr, "%s: skipped on the simulator: %s\n", test, why);
    return sim;
}

pd_test_rec pd_rec;

static void pd_test_rec_hook(void *arg, const char *future, pd_trace_event ev,
                             const void *self)
{
    pd_test_rec *r = arg;
    int i;

    if (r->nlog < PD_TEST_LOG_MAX) {
        r->log[r->nlog].future = future;
        r->log[r->nlog].ev = ev;
        r->log[r->nlog].self = self;
        r->nlog++;
    }
    for (i = 0; i < r->nlive; i++)
        if (r->live[i].self == self && strcmp(r->live[i].future, future) == 0)
            break;
    switch (ev) {
    case PD_TRACE_INIT:
        r->inits++;
        if (i < r->nlive) {
            r->double_init++;
        } else if (r->nlive < 64) {
            r->live[r->nlive].future = future;
            r->live[r->nlive].self = self;
            r->nlive++;
        }
        break;
    case PD_TRACE_TEARDOWN:
        r->teardowns++;
        break;
    case PD_TRACE_DROP:
        r->drops++;
        if (i == r->nlive)
            r->stray_drop++;
        else
            r->live[i] = r->live[--r->nlive];
        break;
    }
}

void pd_test_note(const char *what)
{
    if (pd_rec.nlog < PD_TEST_LOG_MAX) {
        pd_rec.log[pd_rec.nlog].future = what;
        pd_rec.log[pd_rec.nlog].ev = PD_TEST_NOTE;
        pd_rec.log[pd_rec.nlog].self = NULL;
        pd_rec.nlog++;
    }
}

void pd_test_rec_start(void)
{
    memset(&pd_rec, 0, sizeof(pd_rec));
    pd_set_trace(pd_test_rec_hook, &pd_rec);
}

long pd_test_rec_count(const char *future, pd_trace_event ev)
{
    long n = 0;
    int i;

    for (i = 0; i < pd_rec.nlog; i++)
        if (pd_rec.log[i].ev == ev &&
            (!*future || strcmp(pd_rec.log[i].future, future) == 0))
            n++;
    return n;
}

int pd_test_rec_find(const char *future, pd_trace_event ev, int from)
{
    int i;

    for (i = from; i < pd_rec.nlog; i++)
        if (pd_rec.log[i].ev == ev && strcmp(pd_rec.log[i].future, future) == 0)
            return i;
    return -1;
}

int pd_test_listener(struct sockaddr_in *addr)
{
    socklen_t len = sizeof(*addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
    ck_assert_int_eq(listen(fd, 4096), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    return fd;
}

void pd_test_write(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);

        if (n <= 0) /* not ck_assert: this may run where allocations count */
            ck_abort_msg("write: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/*
 * Test files live on /dev/shm when the machine has it: the file specs fsync,
 * and hundreds of harness runs fsyncing to a loaded disk took minutes.
 */
/*
 * A fresh path for a test's file or tree. The pid and a counter are not
 * enough: a test killed by a timeout (or a mutant's run) leaves its files
 * behind, and a later process may get the same pid; the monotonic clock's
 * nanoseconds make the name new anyway.
 */
void pd_test_tmp_path(char *buf, size_t len, const char *tag)
{
    static unsigned seq;
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(buf, len, "%s/polldrop-test-%d-%u-%lld%09ld-%s", dir, (int)getpid(), seq++,
             (long long)ts.tv_sec, ts.tv_nsec, tag);
}

/*
 * The bytes come eight at a time from splitmix64 seeded with seed: the
 * cancel-point harness makes a file of 150 kB for each of its runs of the
 * file specs, thousands of files per runner, and a byte at a time cost the
 * sanitized runner (its tests compiled at -O0) four times as much.
 */
int pd_test_make_file(const char *path, size_t len, unsigned seed)
{
    uint64_t chunk[512], x = seed;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    ck_assert_int_ge(fd, 0);
    while (len) {
        size_t n = len < sizeof(chunk) ? len : sizeof(chunk), i;

        for (i = 0; i < (n + 7) / 8; i++) {
            uint64_t z = (x += 0x9E3779B97F4A7C15u);

            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
            chunk[i] = z ^ (z >> 31);
        }
        pd_test_write(fd, chunk, n);
        len -= n;
    }
    close(fd);
    return 0;
}

int pd_test_same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb, ca, cb;

    while (same) {
        ca = getc(fa);
        cb = getc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

void pd_test_expect_abort(void (*fn)(void), const char *want)
{
    char buf[1024];
    int p[2], status;
    ssize_t n, got = 0;
    pid_t pid;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(p[1], 2);
        fn();
        _exit(0);
    }
    close(p[1]);
    while (got < (ssize_t)sizeof(buf) - 1 &&
           (n = read(p[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
        got += n;
    buf[got] = 0;
    close(p[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                  "expected an abort, got status %#x; stderr: %s", status, buf);
    ck_assert_msg(strstr(buf, want) != NULL, "stderr lacks \"%s\": %s", want, buf);
}

void pd_test_quiet(pd_runtime *rt)
{
    pd_stats s;

    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_uint_eq(s.live_tasks, 0);
}

void pd_test_rt_done(pd_runtime *rt)
{
    pd_test_quiet(rt);
    pd_runtime_free(rt);
}

pd_test_pipe pd_test_pipe_open(void)
{
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    return (pd_test_pipe){ p[0], p[1] };
}

void pd_test_pipe_close(pd_test_pipe p)
{
    close(p.r);
    close(p.w);
}

void pd_test_nothing_taken(int r, int w)
{
    char buf[16];

    pd_test_write(w, "late", 4);
    ck_assert_int_eq(read(r, buf, sizeof(buf)), 4);
    ck_assert_mem_eq(buf, "late", 4);
}
