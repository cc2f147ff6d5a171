/*
 * The epoll engine (runtime/engine_epoll*.c), driven only through the seam
 * of runtime/engine.h: a struct io_uring the engine set up, liburing's
 * inline prep helpers, enter(), and the CQ read with io_uring_for_each_cqe
 * and io_uring_cq_advance. Each scenario that the kernel's io_uring can run
 * as well runs on both, and on the simulator (which runs the epoll
 * engine's ops its own way), with the same requests on fresh fds, and
 * every completion (user_data, res, flags) must match io_uring's; each
 * also states the results it expects, so a scenario means something on
 * any ring.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "engine_epoll.h"
#include "testutil.h"

#define EP (&pd__engine_epoll)
#define LOG_MAX 512
/* user_data at or above FDUD name ops whose result is an fd: any fd matches any. */
#define FDUD 0x1000u

typedef struct tr {
    struct io_uring ring;
    pd__engine *e; /* NULL: the kernel's io_uring */
    const pd__engine_vt *vt; /* e's engine: epoll, or the simulator */
} tr;

typedef struct tcqe {
    uint64_t ud;
    int32_t res;
    uint32_t flags;
} tcqe;

typedef struct tlog {
    int n;
    tcqe c[LOG_MAX];
} tlog;

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A ring on the kernel's io_uring (engine 0), the epoll engine (1) or the
 * simulator without faults (2), which runs the epoll engine's ops under
 * its own order, timers and cancels.
 */
static void tr_init(tr *t, int epoll, unsigned entries, unsigned cq)
{
    memset(t, 0, sizeof(*t));
    if (epoll == 2) {
        pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_seed = 1, .sim_flags = PD_SIM_NO_FAULTS };
        int ret;

        ck_assert_uint_eq(cq, 0);
        ret = pd__sim_init(&t->ring, entries, &cfg, &t->e);
        ck_assert_msg(ret == 0, "sim init: %s", strerror(-ret));
        t->vt = &pd__engine_sim;
    } else if (epoll) {
        int ret = EP->init(&t->ring, entries, cq, &t->e);

        ck_assert_msg(ret == 0, "epoll init: %s", strerror(-ret));
        t->vt = EP;
    } else {
        struct io_uring_params p;

        memset(&p, 0, sizeof(p));
        if (cq) {
            p.flags = IORING_SETUP_CQSIZE;
            p.cq_entries = cq;
        }
        ck_assert_int_eq(io_uring_queue_init_params(entries, &t->ring, &p), 0);
    }
}

static void tr_exit(tr *t)
{
    if (t->e)
        t->vt->exit(t->e, &t->ring);
    else
        io_uring_queue_exit(&t->ring);
}

static struct io_uring_sqe *tr_sqe(tr *t)
{
    struct io_uring_sqe *s = io_uring_get_sqe(&t->ring);

    PD_CHECK(s != NULL);
    return s;
}

/* Queues one request: PREP uses s_, the entry; user_data is set after it. */
#define Q(t, ud, PREP)                                                         \
    do {                                                                       \
        struct io_uring_sqe *s_ = tr_sqe(t);                                   \
        PREP;                                                                  \
        s_->user_data = (ud);                                                  \
    } while (0)

/* Submits and waits for wait_nr completions, at most ms (< 0: no limit). */
static int tr_enter(tr *t, unsigned wait_nr, long ms)
{
    struct __kernel_timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    struct io_uring_cqe *c;
    int ret;

    if (t->e) {
        do
            ret = t->vt->enter(t->e, &t->ring, wait_nr, ms < 0 ? NULL : &ts);
        while (ret == -EINTR);
        return ret;
    }
    if (wait_nr == 0)
        return io_uring_submit(&t->ring);
    if (ms < 0)
        return io_uring_submit_and_wait(&t->ring, wait_nr);
    do
        ret = io_uring_submit_and_wait_timeout(&t->ring, &c, wait_nr, &ts, NULL);
    while (ret == -EINTR);
    return ret;
}

/* Moves every posted completion to the log; returns how many. */
static int tr_reap(tr *t, tlog *l)
{
    struct io_uring_cqe *c;
    unsigned head, n = 0;

    io_uring_for_each_cqe(&t->ring, head, c) {
        ck_assert_int_lt(l->n, LOG_MAX);
        l->c[l->n++] = (tcqe){ c->user_data, c->res,
                               c->flags & ~(uint32_t)IORING_CQE_F_SOCK_NONEMPTY };
        n++;
    }
    io_uring_cq_advance(&t->ring, n);
    return (int)n;
}

/* Submits, then collects completions until the log holds `want` (within 10 s). */
static void tr_wait(tr *t, tlog *l, int want)
{
    long long end = now_ms() + 10000;

    tr_enter(t, 0, 0);
    for (;;) {
        long long left;

        tr_reap(t, l);
        if (l->n >= want)
            return;
        left = end - now_ms();
        ck_assert_msg(left > 0, "%s: %d completions after 10 s, want %d",
                      t->e ? t->vt->name : "io_uring", l->n, want);
        tr_enter(t, 1, left > 100 ? 100 : left);
    }
}

/* Submits and collects what comes within ms. */
static void tr_settle(tr *t, tlog *l, long ms)
{
    long long end = now_ms() + ms;

    tr_enter(t, 0, 0);
    for (;;) {
        long long left = end - now_ms();

        tr_reap(t, l);
        if (left <= 0)
            return;
        tr_enter(t, 1, left);
    }
}

/* The n-th completion for ud in the log (0-based), or NULL. */
static const tcqe *find(const tlog *l, uint64_t ud, int nth)
{
    int i;

    for (i = 0; i < l->n; i++)
        if (l->c[i].ud == ud && nth-- == 0)
            return &l->c[i];
    return NULL;
}

static int count(const tlog *l, uint64_t ud)
{
    int i, n = 0;

    for (i = 0; i < l->n; i++)
        n += l->c[i].ud == ud;
    return n;
}

/* The log holds ud's nth completion with res and flags (res any fd if ud >= FDUD and res >= 0). */
#define expect(t, l, ud, nth, res_, flags_)                                     \
    do {                                                                       \
        const tcqe *c_ = find((l), (ud), (nth));                               \
        ck_assert_msg(c_ != NULL, "%s: no completion %d for ud %#llx",         \
                      (t)->e ? (t)->vt->name : "io_uring", (nth), (unsigned long long)(ud)); \
        if ((ud) >= FDUD && (res_) >= 0)                                       \
            ck_assert_msg(c_->res >= 0, "%s: ud %#llx: res %d, want an fd",    \
                          (t)->e ? (t)->vt->name : "io_uring", (unsigned long long)(ud), c_->res); \
        else                                                                   \
            ck_assert_msg(c_->res == (res_), "%s: ud %#llx: res %d (%s), want %d", \
                          (t)->e ? (t)->vt->name : "io_uring", (unsigned long long)(ud), \
                          c_->res, c_->res < 0 ? strerror(-c_->res) : "", (res_)); \
        ck_assert_msg(c_->flags == (uint32_t)(flags_), "%s: ud %#llx: flags %#x, want %#x", \
                      (t)->e ? (t)->vt->name : "io_uring", (unsigned long long)(ud), c_->flags, \
                      (unsigned)(flags_));                                     \
    } while (0)

/* Sorts a log by user_data, keeping each request's own order. */
static void log_sort(tlog *l)
{
    int i, j;

    for (i = 1; i < l->n; i++)
        for (j = i; j > 0 && l->c[j - 1].ud > l->c[j].ud; j--) {
            tcqe x = l->c[j];

            l->c[j] = l->c[j - 1];
            l->c[j - 1] = x;
        }
}

/* The two rings gave the same completions (fd results: both fds or equal errors). */
static void log_same(tlog *a, tlog *b, const char *bname)
{
    int i;

    log_sort(a);
    log_sort(b);
    for (i = 0; i < a->n && i < b->n; i++) {
        tcqe x = a->c[i], y = b->c[i];
        int same_res = x.res == y.res || (x.ud >= FDUD && x.res >= 0 && y.res >= 0);

        ck_assert_msg(x.ud == y.ud && same_res && x.flags == y.flags,
                      "completion %d: io_uring (ud %#llx res %d flags %#x), %s (ud %#llx "
                      "res %d flags %#x)", i, (unsigned long long)x.ud, x.res, x.flags,
                      bname, (unsigned long long)y.ud, y.res, y.flags);
    }
    ck_assert_msg(a->n == b->n, "io_uring posted %d completions, %s %d", a->n, bname, b->n);
}

/*
 * Runs a scenario on the kernel's io_uring and on the epoll engine, and on
 * the simulator too if sim (without faults: its seeded order only, which
 * the comparison, sorted by user_data, does not see), and compares each
 * with io_uring. Where io_uring is switched off, the scenario runs on the
 * others alone (its own expectations still hold), and says so.
 */
static void on_rings(void (*sc)(tr *t, tlog *l), const char *name, bool sim)
{
    static tlog la, lb, lc;
    bool uring;
    tr t;
    int why;

    memset(&la, 0, sizeof(la));
    memset(&lb, 0, sizeof(lb));
    memset(&lc, 0, sizeof(lc));
    uring = pd_test_uring_ok(&why);
    if (!uring)
        printf("engine_epoll:%s: io_uring is not available here (%s): %s, "
               "not compared with the kernel's\n", name, strerror(-why),
               sim ? "epoll and sim only" : "epoll only");
    if (uring) {
        tr_init(&t, 0, 64, 0);
        sc(&t, &la);
        tr_exit(&t);
    }
    tr_init(&t, 1, 64, 0);
    sc(&t, &lb);
    tr_exit(&t);
    if (uring)
        log_same(&la, &lb, "epoll");
    if (!sim)
        return;
    tr_init(&t, 2, 64, 0);
    sc(&t, &lc);
    tr_exit(&t);
    if (uring)
        log_same(&la, &lc, "sim");
}

/* Every engine: io_uring, epoll and the simulator. */
static void both(void (*sc)(tr *t, tlog *l), const char *name)
{
    on_rings(sc, name, true);
}

/*
 * io_uring and epoll only: for what the simulator renders differently on
 * purpose (design.md, "Multishot poll": a poll on data left there fires
 * again in later enters).
 */
static void kernel_and_epoll(void (*sc)(tr *t, tlog *l), const char *name)
{
    on_rings(sc, name, false);
}

/* --- fixtures --- */

static void sp(int type, int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
}

/* A TCP listener on 127.0.0.1, blocking, as a program makes one. */
static int tcp_listener(struct sockaddr_in *a)
{
    socklen_t len = sizeof(*a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
    ck_assert_int_eq(listen(fd, 64), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)a, &len), 0);
    return fd;
}

static int tcp_connect(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (const struct sockaddr *)a, sizeof(*a)), 0);
    return fd;
}

static char tmpdir[64];

static void tmp_make(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pd-ep-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Removes the test's directory and what is left in it. */
static void tmp_remove(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    char p[512];

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
        if (unlink(p) < 0)
            rmdir(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static const char *tmp_path(const char *name)
{
    static char p[4][256];
    static int i;

    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
    return p[i];
}

/* Closes every fd a log's fd-valued completions carry. */
static void close_fds(const tlog *l)
{
    int i;

    for (i = 0; i < l->n; i++)
        if (l->c[i].ud >= FDUD && l->c[i].res >= 0)
            close(l->c[i].res);
}

/* --- scenarios, on both rings --- */

static void sc_nop(tr *t, tlog *l)
{
    Q(t, 1, io_uring_prep_nop(s_));
    Q(t, 2, (io_uring_prep_nop(s_), s_->flags |= IOSQE_CQE_SKIP_SUCCESS));
    Q(t, 3, io_uring_prep_nop(s_));
    tr_wait(t, l, 2);
    tr_settle(t, l, 20);
    ck_assert_int_eq(l->n, 2);
    expect(t, l, 1, 0, 0, 0);
    expect(t, l, 3, 0, 0, 0);
}

START_TEST(nop_and_skip_success)
{
    both(sc_nop, "nop_and_skip_success");
}
END_TEST

static void sc_pipe(tr *t, tlog *l)
{
    char a[16] = "", b[8] = "", c[8] = "", x[4] = "";
    struct iovec wv[2] = { { "ab", 2 }, { "cdef", 4 } };
    struct iovec rv[2] = { { b, 3 }, { c, 3 } };
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    Q(t, 1, io_uring_prep_write(s_, p[1], "hello", 5, (uint64_t)-1));
    tr_wait(t, l, 1);
    Q(t, 2, io_uring_prep_read(s_, p[0], a, sizeof(a), (uint64_t)-1));
    tr_wait(t, l, 2);
    ck_assert_str_eq(a, "hello");
    /* Empty: the read waits until the write below. */
    Q(t, 3, io_uring_prep_read(s_, p[0], x, 2, (uint64_t)-1));
    tr_settle(t, l, 20);
    ck_assert_int_eq(count(l, 3), 0);
    ck_assert_int_eq(write(p[1], "xy", 2), 2);
    tr_wait(t, l, 3);
    ck_assert_int_eq(memcmp(x, "xy", 2), 0);
    Q(t, 4, io_uring_prep_writev(s_, p[1], wv, 2, (uint64_t)-1));
    tr_wait(t, l, 4);
    Q(t, 5, io_uring_prep_readv(s_, p[0], rv, 2, (uint64_t)-1));
    tr_wait(t, l, 5);
    ck_assert_int_eq(memcmp(b, "abc", 3), 0);
    ck_assert_int_eq(memcmp(c, "def", 3), 0);
    /* A pipe has no offsets. */
    Q(t, 6, io_uring_prep_write(s_, p[1], "z", 1, 0));
    tr_wait(t, l, 6);
    close(p[1]);
    Q(t, 7, io_uring_prep_read(s_, p[0], a, sizeof(a), (uint64_t)-1));
    tr_wait(t, l, 7);
    close(p[0]);
    Q(t, 8, io_uring_prep_read(s_, p[0], a, sizeof(a), (uint64_t)-1));
    Q(t, 9, io_uring_prep_write(s_, -1, a, 1, (uint64_t)-1));
    tr_wait(t, l, 9);
    expect(t, l, 1, 0, 5, 0);
    expect(t, l, 2, 0, 5, 0);
    expect(t, l, 3, 0, 2, 0);
    expect(t, l, 4, 0, 6, 0);
    expect(t, l, 5, 0, 6, 0);
    expect(t, l, 8, 0, -EBADF, 0);
    expect(t, l, 9, 0, -EBADF, 0);
}

START_TEST(pipe_read_write_and_vectors)
{
    both(sc_pipe, "pipe_read_write_and_vectors");
}
END_TEST

/* One request and its completion, alone: for ops whose order matters. */
static void one(tr *t, tlog *l)
{
    tr_wait(t, l, l->n + 1);
}

static void sc_file(tr *t, tlog *l)
{
    char buf[32] = "";
    struct iovec rv[2] = { { buf, 2 }, { buf + 2, 2 } };
    struct open_how how = { .flags = O_RDONLY, .resolve = RESOLVE_BENEATH };
    struct statx stx;
    int fd, dfd;

    tmp_make();
    Q(t, FDUD + 1, io_uring_prep_openat(s_, AT_FDCWD, tmp_path("f"), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
    one(t, l);
    fd = find(l, FDUD + 1, 0)->res;
    ck_assert_int_ge(fd, 0);
    Q(t, 2, io_uring_prep_write(s_, fd, "abcdef", 6, 0));
    one(t, l);
    Q(t, 3, io_uring_prep_write(s_, fd, "XYZ", 3, (uint64_t)-1)); /* at the position: 0 */
    one(t, l);
    Q(t, 4, io_uring_prep_fsync(s_, fd, 0));
    one(t, l);
    Q(t, 5, io_uring_prep_fsync(s_, fd, IORING_FSYNC_DATASYNC));
    one(t, l);
    Q(t, 6, io_uring_prep_rw(55 /* IORING_OP_FTRUNCATE */, s_, fd, NULL, 0, 5));
    one(t, l);
    Q(t, 7, io_uring_prep_statx(s_, fd, "", AT_EMPTY_PATH, STATX_SIZE, &stx));
    one(t, l);
    ck_assert_uint_eq(stx.stx_size, 5);
    Q(t, 8, io_uring_prep_read(s_, fd, buf, sizeof(buf), 0));
    one(t, l);
    ck_assert_int_eq(memcmp(buf, "XYZde", 5), 0);
    Q(t, 9, io_uring_prep_read(s_, fd, buf, sizeof(buf), (uint64_t)-1)); /* position 3 */
    one(t, l);
    Q(t, 10, io_uring_prep_readv(s_, fd, rv, 2, 1));
    one(t, l);
    ck_assert_int_eq(memcmp(buf, "YZde", 4), 0);
    Q(t, 11, io_uring_prep_read(s_, fd, buf, sizeof(buf), 100)); /* past the end */
    one(t, l);
    Q(t, 12, io_uring_prep_mkdirat(s_, AT_FDCWD, tmp_path("d"), 0700));
    one(t, l);
    Q(t, 13, io_uring_prep_mkdirat(s_, AT_FDCWD, tmp_path("d"), 0700));
    one(t, l);
    Q(t, 14, io_uring_prep_renameat(s_, AT_FDCWD, tmp_path("f"), AT_FDCWD, tmp_path("g"), 0));
    one(t, l);
    Q(t, 15, io_uring_prep_renameat(s_, AT_FDCWD, tmp_path("g"), AT_FDCWD, tmp_path("d"),
                                    RENAME_NOREPLACE));
    one(t, l);
    Q(t, FDUD + 16, io_uring_prep_openat(s_, AT_FDCWD, tmp_path("nope"), O_RDONLY, 0));
    one(t, l);
    dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    Q(t, FDUD + 17, io_uring_prep_openat2(s_, dfd, "../x", &how));
    one(t, l);
    Q(t, FDUD + 18, io_uring_prep_openat2(s_, dfd, "g", &how));
    one(t, l);
    close(find(l, FDUD + 18, 0)->res);
    close(dfd);
    Q(t, 19, io_uring_prep_unlinkat(s_, AT_FDCWD, tmp_path("nope"), 0));
    one(t, l);
    Q(t, 20, io_uring_prep_unlinkat(s_, AT_FDCWD, tmp_path("d"), AT_REMOVEDIR));
    one(t, l);
    Q(t, 21, io_uring_prep_unlinkat(s_, AT_FDCWD, tmp_path("g"), 0));
    one(t, l);
    Q(t, 22, io_uring_prep_close(s_, fd));
    one(t, l);
    Q(t, 23, io_uring_prep_close(s_, fd));
    one(t, l);
    Q(t, 24, io_uring_prep_statx(s_, AT_FDCWD, tmp_path("g"), 0, STATX_SIZE, &stx));
    one(t, l);
    tmp_remove();
    expect(t, l, 2, 0, 6, 0);
    expect(t, l, 3, 0, 3, 0);
    expect(t, l, 4, 0, 0, 0);
    expect(t, l, 6, 0, 0, 0);
    expect(t, l, 7, 0, 0, 0);
    expect(t, l, 8, 0, 5, 0);
    expect(t, l, 9, 0, 2, 0);
    expect(t, l, 10, 0, 4, 0);
    expect(t, l, 11, 0, 0, 0);
    expect(t, l, 12, 0, 0, 0);
    expect(t, l, 13, 0, -EEXIST, 0);
    expect(t, l, 14, 0, 0, 0);
    expect(t, l, 15, 0, -EEXIST, 0);
    expect(t, l, FDUD + 16, 0, -ENOENT, 0);
    expect(t, l, FDUD + 17, 0, -EXDEV, 0);
    expect(t, l, FDUD + 18, 0, 0, 0);
    expect(t, l, 19, 0, -ENOENT, 0);
    expect(t, l, 20, 0, 0, 0);
    expect(t, l, 22, 0, 0, 0);
    expect(t, l, 23, 0, -EBADF, 0);
    expect(t, l, 24, 0, -ENOENT, 0);
}

START_TEST(file_ops)
{
    both(sc_file, "file_ops");
}
END_TEST

static void sc_tcp(tr *t, tlog *l)
{
    struct sockaddr_in a, peer, closed;
    socklen_t plen = sizeof(peer);
    char r1[8] = "", r2[8] = "", r3[8] = "", r4[8] = "";
    struct iovec iv = { r3, sizeof(r3) }, ov = { "msg!", 4 };
    struct msghdr rm = { .msg_iov = &iv, .msg_iovlen = 1 }, sm = { .msg_iov = &ov, .msg_iovlen = 1 };
    int lfd = tcp_listener(&a), cfd, afd, p[2], sv[2], lone;

    Q(t, FDUD + 1, io_uring_prep_socket(s_, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, 0));
    one(t, l);
    cfd = find(l, FDUD + 1, 0)->res;
    ck_assert_int_ge(cfd, 0);
    Q(t, 2, io_uring_prep_connect(s_, cfd, (struct sockaddr *)&a, sizeof(a)));
    one(t, l);
    Q(t, FDUD + 3, io_uring_prep_accept(s_, lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC));
    one(t, l);
    afd = find(l, FDUD + 3, 0)->res;
    ck_assert_int_ge(afd, 0);
    ck_assert_int_eq(peer.sin_family, AF_INET);
    ck_assert_uint_eq(plen, sizeof(peer));
    Q(t, 4, io_uring_prep_send(s_, cfd, "ping", 4, MSG_NOSIGNAL));
    one(t, l);
    Q(t, 5, io_uring_prep_recv(s_, afd, r1, sizeof(r1), 0));
    one(t, l);
    ck_assert_int_eq(memcmp(r1, "ping", 4), 0);
    /* Nothing to receive: it waits for the send after it. */
    Q(t, 6, io_uring_prep_recv(s_, cfd, r2, sizeof(r2), 0));
    tr_settle(t, l, 20);
    ck_assert_int_eq(count(l, 6), 0);
    Q(t, 7, io_uring_prep_send(s_, afd, "pong", 4, MSG_NOSIGNAL));
    tr_wait(t, l, 7);
    ck_assert_int_eq(memcmp(r2, "pong", 4), 0);
    Q(t, 8, io_uring_prep_send_zc(s_, cfd, "zc", 2, MSG_NOSIGNAL, 0));
    tr_wait(t, l, 9);
    Q(t, 9, io_uring_prep_recvmsg(s_, afd, &rm, 0));
    one(t, l);
    ck_assert_int_eq(memcmp(r3, "zc", 2), 0);
    Q(t, 10, io_uring_prep_sendmsg(s_, afd, &sm, MSG_NOSIGNAL));
    one(t, l);
    Q(t, 11, io_uring_prep_read(s_, cfd, r4, sizeof(r4), (uint64_t)-1));
    one(t, l);
    ck_assert_int_eq(memcmp(r4, "msg!", 4), 0);
    Q(t, 12, io_uring_prep_write(s_, cfd, "w", 1, (uint64_t)-1));
    one(t, l);
    Q(t, 13, io_uring_prep_shutdown(s_, cfd, SHUT_WR));
    one(t, l);
    Q(t, 14, io_uring_prep_recv(s_, afd, r1, sizeof(r1), 0));
    one(t, l);
    Q(t, 15, io_uring_prep_recv(s_, afd, r1, sizeof(r1), 0)); /* the end */
    one(t, l);
    /* Errors. */
    closed = a;
    close(lfd);
    lone = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    Q(t, 16, io_uring_prep_connect(s_, lone, (struct sockaddr *)&closed, sizeof(closed)));
    one(t, l);
    Q(t, 17, io_uring_prep_shutdown(s_, lone, SHUT_RDWR));
    one(t, l);
    Q(t, FDUD + 18, io_uring_prep_accept(s_, lone, NULL, NULL, 0));
    one(t, l);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    Q(t, 19, io_uring_prep_recv(s_, p[0], r1, sizeof(r1), 0));
    one(t, l);
    Q(t, 20, io_uring_prep_send(s_, 999, "x", 1, 0));
    one(t, l);
    sp(SOCK_STREAM, sv);
    Q(t, 21, io_uring_prep_send_zc(s_, sv[0], "zc", 2, 0, 0));
    tr_wait(t, l, l->n + 2);
    Q(t, 22, io_uring_prep_send_zc(s_, -1, "zc", 2, 0, 0));
    tr_wait(t, l, l->n + 2);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    close(lone);
    close(cfd);
    close(afd);
    expect(t, l, 2, 0, 0, 0);
    expect(t, l, 4, 0, 4, 0);
    expect(t, l, 5, 0, 4, 0);
    expect(t, l, 6, 0, 4, 0);
    expect(t, l, 7, 0, 4, 0);
    expect(t, l, 8, 0, 2, IORING_CQE_F_MORE);
    expect(t, l, 8, 1, 0, IORING_CQE_F_NOTIF);
    expect(t, l, 9, 0, 2, 0);
    expect(t, l, 10, 0, 4, 0);
    expect(t, l, 11, 0, 4, 0);
    expect(t, l, 12, 0, 1, 0);
    expect(t, l, 13, 0, 0, 0);
    expect(t, l, 14, 0, 1, 0);
    expect(t, l, 15, 0, 0, 0);
    expect(t, l, 16, 0, -ECONNREFUSED, 0);
    expect(t, l, 17, 0, -ENOTCONN, 0);
    expect(t, l, FDUD + 18, 0, -EINVAL, 0);
    expect(t, l, 19, 0, -ENOTSOCK, 0);
    expect(t, l, 20, 0, -EBADF, 0);
    expect(t, l, 21, 0, -EOPNOTSUPP, IORING_CQE_F_MORE);
    expect(t, l, 21, 1, 0, IORING_CQE_F_NOTIF);
    expect(t, l, 22, 0, -EBADF, IORING_CQE_F_MORE);
}

START_TEST(socket_ops)
{
    both(sc_tcp, "socket_ops");
}
END_TEST

static void sc_poll(tr *t, tlog *l)
{
    int sv[2], mv[2], p[2];
    char b[8];

    sp(SOCK_STREAM, sv);
    sp(SOCK_STREAM, mv);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    Q(t, 1, io_uring_prep_poll_add(s_, sv[0], POLLIN));
    Q(t, 2, io_uring_prep_poll_add(s_, sv[0], POLLOUT));
    tr_wait(t, l, 1);
    tr_settle(t, l, 20);
    ck_assert_int_eq(count(l, 1), 0);
    ck_assert_int_eq(write(sv[1], "a", 1), 1);
    tr_wait(t, l, 2);
    ck_assert_int_eq(read(sv[0], b, sizeof(b)), 1);
    ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
    Q(t, 3, io_uring_prep_poll_add(s_, sv[0], POLLIN));
    one(t, l);
    close(sv[1]);
    Q(t, 4, io_uring_prep_poll_add(s_, sv[0], POLLOUT));
    one(t, l);
    /* Multishot: one completion per wakeup, until cancelled. */
    Q(t, 5, io_uring_prep_poll_multishot(s_, mv[0], POLLIN));
    tr_settle(t, l, 20);
    ck_assert_int_eq(count(l, 5), 0);
    ck_assert_int_eq(write(mv[1], "a", 1), 1);
    tr_wait(t, l, l->n + 1);
    ck_assert_int_eq(read(mv[0], b, sizeof(b)), 1);
    ck_assert_int_eq(write(mv[1], "b", 1), 1);
    tr_wait(t, l, l->n + 1);
    Q(t, 6, io_uring_prep_cancel64(s_, 5, 0));
    tr_wait(t, l, l->n + 2);
    Q(t, 7, io_uring_prep_cancel64(s_, 5, 0));
    one(t, l);
    /* A pipe's write end whose reader is gone: an error, asked for or not. */
    Q(t, 8, io_uring_prep_poll_add(s_, p[1], POLLIN));
    tr_settle(t, l, 20);
    close(p[0]);
    tr_wait(t, l, l->n + 1);
    close(p[1]);
    close(sv[0]);
    close(mv[0]);
    close(mv[1]);
    expect(t, l, 1, 0, POLLIN, 0);
    expect(t, l, 2, 0, POLLOUT, 0);
    expect(t, l, 3, 0, POLLIN | POLLRDHUP, 0);
    expect(t, l, 4, 0, POLLOUT | POLLHUP | POLLRDHUP, 0);
    expect(t, l, 5, 0, POLLIN, IORING_CQE_F_MORE);
    expect(t, l, 5, 1, POLLIN, IORING_CQE_F_MORE);
    expect(t, l, 5, 2, -ECANCELED, 0);
    expect(t, l, 6, 0, 0, 0);
    expect(t, l, 7, 0, -ENOENT, 0);
    expect(t, l, 8, 0, POLLERR, 0);
}

START_TEST(poll_add_single_and_multishot)
{
    both(sc_poll, "poll_add_single_and_multishot");
}
END_TEST

static void sc_splice(tr *t, tlog *l)
{
    char buf[16] = "";
    int p[2], sv[2], fd;

    tmp_make();
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    sp(SOCK_STREAM, sv);
    fd = open(tmp_path("s"), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ck_assert_int_eq(write(fd, "file-data", 9), 9);
    /* pipe -> socket */
    ck_assert_int_eq(write(p[1], "hello", 5), 5);
    Q(t, 1, io_uring_prep_splice(s_, p[0], -1, sv[0], -1, 5, 0));
    one(t, l);
    ck_assert_int_eq(read(sv[1], buf, sizeof(buf)), 5);
    /* socket -> pipe: waits for data */
    Q(t, 2, io_uring_prep_splice(s_, sv[1], -1, p[1], -1, 16, 0));
    tr_settle(t, l, 20);
    ck_assert_int_eq(count(l, 2), 0);
    ck_assert_int_eq(write(sv[0], "abc", 3), 3);
    tr_wait(t, l, l->n + 1);
    ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 3);
    /* file -> pipe, at an offset; pipe -> file, at the end */
    Q(t, 3, io_uring_prep_splice(s_, fd, 5, p[1], -1, 16, 0));
    one(t, l);
    Q(t, 4, io_uring_prep_splice(s_, p[0], -1, fd, 9, 4, 0));
    one(t, l);
    ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), 13);
    ck_assert_int_eq(memcmp(buf, "file-datadata", 13), 0);
    /* two files: EINVAL */
    Q(t, 5, io_uring_prep_splice(s_, fd, 0, fd, 20, 4, 0));
    one(t, l);
    close(fd);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    tmp_remove();
    expect(t, l, 1, 0, 5, 0);
    expect(t, l, 2, 0, 3, 0);
    expect(t, l, 3, 0, 4, 0);
    expect(t, l, 4, 0, 4, 0);
    expect(t, l, 5, 0, -EINVAL, 0);
}

START_TEST(splice_between_pipes_sockets_and_files)
{
    both(sc_splice, "splice_between_pipes_sockets_and_files");
}
END_TEST

/* Sends to fd without blocking until it takes nothing more. */
static void fill_socket(int fd)
{
    static char junk[4096];

    while (send(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    ck_assert_int_eq(errno, EAGAIN);
}

/*
 * A splice blocks in the kernel's worker, where a socket's own timeouts
 * apply: into a full socket it ends with -EAGAIN after SO_SNDTIMEO, from
 * an empty one after SO_RCVTIMEO, nothing moved (httpd's send deadline for
 * a file sent by splice is the socket's SO_SNDTIMEO). A pipe side has no
 * timeout: without one on the socket, the splice waits on.
 */
static void sc_splice_socket_timeouts(tr *t, tlog *l)
{
    struct timeval tmo = { 0, 50000 };
    static char page[4096];
    int p[2], sv[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    sp(SOCK_STREAM, sv);
    ck_assert_int_eq(write(p[1], page, sizeof(page)), (int)sizeof(page));
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo)), 0);
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo)), 0);
    fill_socket(sv[0]);
    /* pipe -> full socket: SO_SNDTIMEO. */
    Q(t, 1, io_uring_prep_splice(s_, p[0], -1, sv[0], -1, sizeof(page), 0));
    one(t, l);
    /* empty socket -> pipe: SO_RCVTIMEO (sv[0]'s data is for sv[1]; sv[0] receives nothing). */
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo)), 0);
    Q(t, 2, io_uring_prep_splice(s_, sv[0], -1, p[1], -1, 16, 0));
    one(t, l);
    /* The pipe still holds the page: nothing went. */
    ck_assert_int_eq(read(p[0], page, sizeof(page)), (int)sizeof(page));
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    expect(t, l, 1, 0, -EAGAIN, 0);
    expect(t, l, 2, 0, -EAGAIN, 0);
}

START_TEST(splice_ends_at_the_sockets_timeout)
{
    both(sc_splice_socket_timeouts, "splice_ends_at_the_sockets_timeout");
}
END_TEST

/*
 * MSG_DONTWAIT on recv, send, recvmsg and sendmsg, and RWF_NOWAIT on a
 * read or write of a pipe, make an op that would wait complete with
 * -EAGAIN instead (the kernel's REQ_F_NOWAIT); with data there, they
 * complete as usual.
 */
static void sc_dontwait(tr *t, tlog *l)
{
    char buf[8] = "", big[PIPE_BUF] = "";
    struct iovec iv = { buf, sizeof(buf) }, ov = { "m", 1 };
    struct msghdr rm = { .msg_iov = &iv, .msg_iovlen = 1 }, sm = { .msg_iov = &ov, .msg_iovlen = 1 };
    int p[2], sv[2], n;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    sp(SOCK_STREAM, sv);
    Q(t, 1, io_uring_prep_recv(s_, sv[0], buf, sizeof(buf), MSG_DONTWAIT));
    one(t, l);
    Q(t, 2, io_uring_prep_recvmsg(s_, sv[0], &rm, MSG_DONTWAIT));
    one(t, l);
    Q(t, 3, (io_uring_prep_read(s_, p[0], buf, sizeof(buf), (uint64_t)-1),
             s_->rw_flags = RWF_NOWAIT));
    one(t, l);
    /* With something to take, they take it. */
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    Q(t, 4, io_uring_prep_recv(s_, sv[0], buf, sizeof(buf), MSG_DONTWAIT));
    one(t, l);
    ck_assert_int_eq(write(p[1], "y", 1), 1);
    Q(t, 5, (io_uring_prep_read(s_, p[0], buf, sizeof(buf), (uint64_t)-1),
             s_->rw_flags = RWF_NOWAIT));
    one(t, l);
    /* A full socket, a full pipe. */
    fill_socket(sv[0]);
    Q(t, 6, io_uring_prep_send(s_, sv[0], "s", 1, MSG_DONTWAIT | MSG_NOSIGNAL));
    one(t, l);
    Q(t, 7, io_uring_prep_sendmsg(s_, sv[0], &sm, MSG_DONTWAIT | MSG_NOSIGNAL));
    one(t, l);
    ck_assert_int_eq(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
    while ((n = (int)write(p[1], big, sizeof(big))) > 0)
        ;
    ck_assert_int_eq(fcntl(p[1], F_SETFL, 0), 0);
    Q(t, 8, (io_uring_prep_write(s_, p[1], big, sizeof(big), (uint64_t)-1),
             s_->rw_flags = RWF_NOWAIT));
    one(t, l);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    expect(t, l, 1, 0, -EAGAIN, 0);
    expect(t, l, 2, 0, -EAGAIN, 0);
    expect(t, l, 3, 0, -EAGAIN, 0);
    expect(t, l, 4, 0, 1, 0);
    expect(t, l, 5, 0, 1, 0);
    expect(t, l, 6, 0, -EAGAIN, 0);
    expect(t, l, 7, 0, -EAGAIN, 0);
    expect(t, l, 8, 0, -EAGAIN, 0);
}

START_TEST(dontwait_and_nowait_end_with_eagain)
{
    both(sc_dontwait, "dontwait_and_nowait_end_with_eagain");
}
END_TEST

static void sc_timeout(tr *t, tlog *l)
{
    struct __kernel_timespec short_ts = { 0, 10000000 }, hour = { 3600, 0 };

    Q(t, 1, io_uring_prep_timeout(s_, &short_ts, 0, 0));
    Q(t, 2, io_uring_prep_timeout(s_, &hour, 0, 0));
    tr_wait(t, l, 1);
    /* The hour-long one is still pending: it ends by its cancel. */
    ck_assert_int_eq(count(l, 2), 0);
    Q(t, 3, io_uring_prep_cancel64(s_, 2, 0));
    tr_wait(t, l, 3);
    expect(t, l, 1, 0, -ETIME, 0);
    expect(t, l, 2, 0, -ECANCELED, 0);
    expect(t, l, 3, 0, 0, 0);
}

START_TEST(timeout_and_its_cancel)
{
    both(sc_timeout, "timeout_and_its_cancel");
}
END_TEST

static void sc_link(tr *t, tlog *l)
{
    struct __kernel_timespec short_ts = { 0, 20000000 }, long_ts = { 10, 0 };
    int sv[2];
    char b[8];

    sp(SOCK_STREAM, sv);
    /* The timer first: the recv is cancelled. */
    Q(t, 1, (io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0), s_->flags |= IOSQE_IO_LINK));
    Q(t, 2, io_uring_prep_link_timeout(s_, &short_ts, 0));
    tr_wait(t, l, 2);
    /* The op first, at once. */
    ck_assert_int_eq(write(sv[1], "abc", 3), 3);
    Q(t, 3, (io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0), s_->flags |= IOSQE_IO_LINK));
    Q(t, 4, io_uring_prep_link_timeout(s_, &long_ts, 0));
    tr_wait(t, l, 4);
    /* The op first, after waiting. */
    Q(t, 5, (io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0), s_->flags |= IOSQE_IO_LINK));
    Q(t, 6, io_uring_prep_link_timeout(s_, &long_ts, 0));
    tr_settle(t, l, 20);
    ck_assert_int_eq(write(sv[1], "de", 2), 2);
    tr_wait(t, l, 6);
    /* A nop and its timeout; a timeout linked to nothing. */
    Q(t, 7, (io_uring_prep_nop(s_), s_->flags |= IOSQE_IO_LINK));
    Q(t, 8, io_uring_prep_link_timeout(s_, &long_ts, 0));
    Q(t, 9, io_uring_prep_link_timeout(s_, &long_ts, 0));
    tr_wait(t, l, 9);
    close(sv[0]);
    close(sv[1]);
    expect(t, l, 1, 0, -ECANCELED, 0);
    expect(t, l, 2, 0, -ETIME, 0);
    expect(t, l, 3, 0, 3, 0);
    expect(t, l, 4, 0, -ECANCELED, 0);
    expect(t, l, 5, 0, 2, 0);
    expect(t, l, 6, 0, -ECANCELED, 0);
    expect(t, l, 7, 0, 0, 0);
    expect(t, l, 8, 0, -ECANCELED, 0);
    expect(t, l, 9, 0, -EINVAL, 0);
}

START_TEST(linked_timeout_both_ways)
{
    both(sc_link, "linked_timeout_both_ways");
}
END_TEST

static void sc_cancel(tr *t, tlog *l)
{
    int sv[2], mv[2];
    char b[4][8];

    sp(SOCK_STREAM, sv);
    sp(SOCK_STREAM, mv);
    Q(t, 1, io_uring_prep_recv(s_, sv[0], b[0], 8, 0));
    tr_settle(t, l, 10);
    Q(t, 2, io_uring_prep_cancel64(s_, 1, 0));
    tr_wait(t, l, 2);
    Q(t, 3, io_uring_prep_cancel64(s_, 1, 0));
    one(t, l);
    /* By fd and user_data (as the runtime's second try). */
    Q(t, 4, io_uring_prep_recv(s_, sv[0], b[1], 8, 0));
    tr_settle(t, l, 10);
    Q(t, 5, (io_uring_prep_cancel_fd(s_, sv[0], 1u << 4 /* USERDATA */), s_->addr = 4));
    tr_wait(t, l, l->n + 2);
    /* Every request on an fd. */
    Q(t, 6, io_uring_prep_recv(s_, mv[0], b[2], 8, 0));
    Q(t, 7, io_uring_prep_recv(s_, mv[0], b[3], 8, 0));
    Q(t, 8, io_uring_prep_recv(s_, sv[0], b[0], 8, 0));
    tr_settle(t, l, 10);
    Q(t, 9, io_uring_prep_cancel_fd(s_, mv[0], IORING_ASYNC_CANCEL_ALL));
    tr_wait(t, l, l->n + 3);
    Q(t, 10, io_uring_prep_cancel64(s_, 0, IORING_ASYNC_CANCEL_ANY));
    tr_wait(t, l, l->n + 2);
    Q(t, 11, io_uring_prep_cancel64(s_, 0, IORING_ASYNC_CANCEL_ANY));
    one(t, l);
    /* With CQE_SKIP_SUCCESS, as the runtime sends them: only a miss posts. */
    Q(t, 12, io_uring_prep_recv(s_, sv[0], b[0], 8, 0));
    tr_settle(t, l, 10);
    Q(t, 13, (io_uring_prep_cancel64(s_, 12, 0), s_->flags |= IOSQE_CQE_SKIP_SUCCESS));
    one(t, l);
    Q(t, 14, (io_uring_prep_cancel64(s_, 12, 0), s_->flags |= IOSQE_CQE_SKIP_SUCCESS));
    one(t, l);
    tr_settle(t, l, 10);
    close(sv[0]);
    close(sv[1]);
    close(mv[0]);
    close(mv[1]);
    expect(t, l, 1, 0, -ECANCELED, 0);
    expect(t, l, 2, 0, 0, 0);
    expect(t, l, 3, 0, -ENOENT, 0);
    expect(t, l, 4, 0, -ECANCELED, 0);
    expect(t, l, 5, 0, 0, 0);
    expect(t, l, 6, 0, -ECANCELED, 0);
    expect(t, l, 7, 0, -ECANCELED, 0);
    expect(t, l, 9, 0, 2, 0);
    expect(t, l, 8, 0, -ECANCELED, 0);
    expect(t, l, 10, 0, 1, 0);
    expect(t, l, 11, 0, 0, 0);
    expect(t, l, 12, 0, -ECANCELED, 0);
    ck_assert_int_eq(count(l, 13), 0);
    expect(t, l, 14, 0, -ENOENT, 0);
}

START_TEST(cancel_by_user_data_fd_all_any)
{
    both(sc_cancel, "cancel_by_user_data_fd_all_any");
}
END_TEST

static void sc_ms_accept(tr *t, tlog *l)
{
    struct sockaddr_in a;
    int lfd = tcp_listener(&a), c[3], i;

    Q(t, FDUD + 1, io_uring_prep_multishot_accept(s_, lfd, NULL, NULL, SOCK_CLOEXEC));
    tr_settle(t, l, 10);
    for (i = 0; i < 3; i++)
        c[i] = tcp_connect(&a);
    tr_wait(t, l, 3);
    Q(t, 2, io_uring_prep_cancel64(s_, FDUD + 1, 0));
    tr_wait(t, l, 5);
    close_fds(l);
    for (i = 0; i < 3; i++) {
        expect(t, l, FDUD + 1, i, 0, IORING_CQE_F_MORE);
        close(c[i]);
    }
    expect(t, l, FDUD + 1, 3, -ECANCELED, 0);
    expect(t, l, 2, 0, 0, 0);
    close(lfd);
}

START_TEST(multishot_accept)
{
    both(sc_ms_accept, "multishot_accept");
}
END_TEST

/*
 * A connection accepted after the accept waited (so the engine knew the
 * listener for a TCP stream socket) is an inet socket: send_zc sends.
 */
static void sc_accept_waited_zc(tr *t, tlog *l)
{
    struct sockaddr_in a;
    char buf[8] = "";
    int lfd = tcp_listener(&a), c, afd;

    Q(t, FDUD + 1, io_uring_prep_accept(s_, lfd, NULL, NULL, SOCK_CLOEXEC));
    tr_settle(t, l, 10);
    ck_assert_int_eq(count(l, FDUD + 1), 0);
    c = tcp_connect(&a);
    tr_wait(t, l, 1);
    afd = find(l, FDUD + 1, 0)->res;
    ck_assert_int_ge(afd, 0);
    Q(t, 2, io_uring_prep_send_zc(s_, afd, "zc", 2, MSG_NOSIGNAL, 0));
    tr_wait(t, l, 3);
    expect(t, l, 2, 0, 2, IORING_CQE_F_MORE);
    expect(t, l, 2, 1, 0, IORING_CQE_F_NOTIF);
    ck_assert_int_eq(read(c, buf, sizeof(buf)), 2);
    close(afd);
    close(c);
    close(lfd);
}

START_TEST(accept_after_a_wait_then_send_zc)
{
    both(sc_accept_waited_zc, "accept_after_a_wait_then_send_zc");
}
END_TEST

/* Registers a provided-buffer ring, through the seam on the engine. */
static void tr_buf_ring(tr *t, struct io_uring_buf_ring *br, unsigned n, unsigned short bgid)
{
    if (t->e) {
        ck_assert_int_eq(t->vt->register_buf_ring(t->e, br, n, bgid), 0);
    } else {
        struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)br, .ring_entries = n, .bgid = bgid };

        ck_assert_int_eq(io_uring_register_buf_ring(&t->ring, &reg, 0), 0);
    }
}

static int tr_buf_unreg(tr *t, unsigned short bgid)
{
    return t->e ? t->vt->unregister_buf_ring(t->e, bgid) : io_uring_unregister_buf_ring(&t->ring, bgid);
}

static void add_bufs(struct io_uring_buf_ring *br, char (*bufs)[8], int first, int n)
{
    int i;

    for (i = 0; i < n; i++)
        io_uring_buf_ring_add(br, bufs[first + i], 8, (unsigned short)(first + i + 10), 3, i);
    io_uring_buf_ring_advance(br, n);
}

#define RECV_SEL(t, ud, fd, bgid, multi)                                       \
    Q(t, ud, (io_uring_prep_recv(s_, fd, NULL, 0, 0), s_->flags |= IOSQE_BUFFER_SELECT, \
              s_->buf_group = (bgid), s_->ioprio |= (multi) ? IORING_RECV_MULTISHOT : 0))

static void sc_ms_recv(tr *t, tlog *l)
{
    static char bufs[4][8];
    struct io_uring_buf_ring *br;
    int sv[2], ev[2];
    const int F = IORING_CQE_F_BUFFER, M = IORING_CQE_F_MORE;

    ck_assert_int_eq(posix_memalign((void **)&br, 4096, 4096), 0);
    io_uring_buf_ring_init(br);
    tr_buf_ring(t, br, 4, 7);
    add_bufs(br, bufs, 0, 4);
    sp(SOCK_STREAM, sv);
    sp(SOCK_STREAM, ev);
    ck_assert_int_eq(write(sv[1], "0123456789abc", 13), 13);
    RECV_SEL(t, 1, sv[0], 7, 1);
    tr_wait(t, l, 2);
    ck_assert_int_eq(memcmp(bufs[0], "01234567", 8), 0);
    ck_assert_int_eq(memcmp(bufs[1], "89abc", 5), 0);
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    tr_wait(t, l, 3);
    /* More than the two buffers left: the second runs out. */
    ck_assert_int_eq(write(sv[1], "0123456789abcdefghij", 20), 20);
    tr_wait(t, l, 5);
    /* One buffer back: taken in the ring's order. */
    add_bufs(br, bufs, 0, 1);
    RECV_SEL(t, 2, sv[0], 7, 1);
    tr_wait(t, l, 7);
    /* Four back, and the end of the stream. */
    ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
    add_bufs(br, bufs, 0, 4);
    RECV_SEL(t, 3, sv[0], 7, 1);
    tr_wait(t, l, 9);
    /* Single shots: data, then an empty ring, then no such group. */
    ck_assert_int_eq(write(ev[1], "hey", 3), 3);
    RECV_SEL(t, 4, ev[0], 7, 0);
    one(t, l);
    RECV_SEL(t, 5, ev[0], 9, 0);
    one(t, l);
    ck_assert_int_eq(tr_buf_unreg(t, 7), 0);
    ck_assert_int_eq(tr_buf_unreg(t, 7), -ENOENT);
    free(br);
    close(sv[0]);
    close(sv[1]);
    close(ev[0]);
    close(ev[1]);
    expect(t, l, 1, 0, 8, F | M | (10 << 16));
    expect(t, l, 1, 1, 5, F | M | (11 << 16));
    expect(t, l, 1, 2, 1, F | M | (12 << 16));
    expect(t, l, 1, 3, 8, F | M | (13 << 16));
    expect(t, l, 1, 4, -ENOBUFS, 0);
    expect(t, l, 2, 0, 8, F | M | (10 << 16));
    expect(t, l, 2, 1, -ENOBUFS, 0);
    expect(t, l, 3, 0, 4, F | M | (10 << 16));
    expect(t, l, 3, 1, 0, 0);
    expect(t, l, 4, 0, 3, F | (11 << 16));
    expect(t, l, 5, 0, -ENOBUFS, 0);
}

START_TEST(multishot_recv_with_a_buffer_ring)
{
    both(sc_ms_recv, "multishot_recv_with_a_buffer_ring");
}
END_TEST

static void sc_waiters(tr *t, tlog *l)
{
    static char big[1 << 16];
    char b[8];
    int sv[2], n = 0;

    sp(SOCK_STREAM, sv);
    ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    while (write(sv[0], big, sizeof(big)) > 0)
        n++;
    ck_assert_int_gt(n, 0);
    /* A send and a recv wait on one socket; each ends by its own event. */
    Q(t, 1, io_uring_prep_send(s_, sv[0], "s", 1, MSG_NOSIGNAL));
    Q(t, 2, io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0));
    tr_settle(t, l, 20);
    ck_assert_int_eq(l->n, 0);
    ck_assert_int_eq(write(sv[1], "r", 1), 1);
    tr_wait(t, l, 1);
    ck_assert_int_eq(l->c[0].ud, 2);
    while (read(sv[1], big, sizeof(big)) == (ssize_t)sizeof(big) && count(l, 1) == 0)
        tr_settle(t, l, 0);
    tr_wait(t, l, 2);
    close(sv[0]);
    close(sv[1]);
    expect(t, l, 1, 0, 1, 0);
    expect(t, l, 2, 0, 1, 0);
}

START_TEST(two_waiters_on_one_socket)
{
    both(sc_waiters, "two_waiters_on_one_socket");
}
END_TEST

/*
 * The peer sends and shuts down while two recvs wait: the event (data and
 * the shutdown) retries the first, which gets less than it asked for, and
 * then the second, which must see the end of the stream, with no event to
 * come: a short read does not mean "drained, wait" once a hangup was seen.
 * The same with two reads of a pipe whose writer closed.
 */
static void sc_eof_after_short(tr *t, tlog *l)
{
    int sv[2], p[2];
    char b[4][8];

    sp(SOCK_STREAM, sv);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    Q(t, 1, io_uring_prep_recv(s_, sv[0], b[0], 8, 0));
    Q(t, 2, io_uring_prep_recv(s_, sv[0], b[1], 8, 0));
    Q(t, 3, io_uring_prep_read(s_, p[0], b[2], 8, (uint64_t)-1));
    Q(t, 4, io_uring_prep_read(s_, p[0], b[3], 8, (uint64_t)-1));
    tr_settle(t, l, 10);
    ck_assert_int_eq(l->n, 0);
    ck_assert_int_eq(write(sv[1], "ab", 2), 2);
    ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
    ck_assert_int_eq(write(p[1], "cd", 2), 2);
    close(p[1]);
    tr_wait(t, l, 4);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    /* Which of the two gets the data is the kernel's choice. */
    ck_assert_int_eq(find(l, 1, 0)->res + find(l, 2, 0)->res, 2);
    ck_assert_int_eq(find(l, 1, 0)->res * find(l, 2, 0)->res, 0);
    ck_assert_int_eq(find(l, 3, 0)->res + find(l, 4, 0)->res, 2);
    ck_assert_int_eq(find(l, 3, 0)->res * find(l, 4, 0)->res, 0);
}

/* Runs a scenario on each ring (io_uring, epoll, the simulator), each checked on its own. */
static void each(void (*sc)(tr *t, tlog *l), const char *name)
{
    static tlog lg;
    tr t;
    int epoll = 0, why;

    if (!pd_test_uring_ok(&why)) {
        printf("engine_epoll:%s: io_uring is not available here (%s): epoll and sim only\n",
               name, strerror(-why));
        epoll = 1;
    }
    for (; epoll < 3; epoll++) {
        memset(&lg, 0, sizeof(lg));
        tr_init(&t, epoll, 64, 0);
        sc(&t, &lg);
        tr_exit(&t);
    }
}

START_TEST(end_of_stream_after_a_short_read)
{
    each(sc_eof_after_short, "end_of_stream_after_a_short_read");
}
END_TEST

/* Odds and ends the kernel answers in its own way: the engine must match. */
static void sc_misc(tr *t, tlog *l)
{
    struct __kernel_timespec lt = { 0, 20000000 };
    int sv[2], mv[2], f = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
    int d = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char b[8];

    sp(SOCK_STREAM, sv);
    sp(SOCK_STREAM, mv);
    /* A file cannot be waited on: always ready, once. */
    Q(t, 1, io_uring_prep_poll_add(s_, f, POLLIN | POLLOUT | POLLPRI));
    one(t, l);
    Q(t, 2, io_uring_prep_poll_multishot(s_, f, POLLIN));
    one(t, l);
    /* MSG_WAITALL: the rest is waited for; the end of the stream ends it. */
    Q(t, 3, io_uring_prep_recv(s_, sv[0], b, 8, MSG_WAITALL));
    tr_settle(t, l, 10);
    ck_assert_int_eq(write(sv[1], "abc", 3), 3);
    tr_settle(t, l, 20);
    ck_assert_int_eq(count(l, 3), 0);
    ck_assert_int_eq(write(sv[1], "defgh", 5), 5);
    one(t, l);
    Q(t, 4, io_uring_prep_recv(s_, sv[0], b, 8, MSG_WAITALL));
    ck_assert_int_eq(write(sv[1], "ab", 2), 2);
    ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
    one(t, l);
    /*
     * A linked timeout on a multishot poll ends it after its first event
     * (whose byte is read, as a poll's reader does: the simulator's poll
     * may fire again for a byte left there, where the kernel's waits for a
     * wakeup).
     */
    Q(t, 5, (io_uring_prep_poll_multishot(s_, mv[0], POLLIN), s_->flags |= IOSQE_IO_LINK));
    Q(t, 6, io_uring_prep_link_timeout(s_, &lt, 0));
    tr_enter(t, 0, 0);
    ck_assert_int_eq(write(mv[1], "x", 1), 1);
    tr_wait(t, l, l->n + 1);
    ck_assert_int_eq(read(mv[0], b, sizeof(b)), 1);
    tr_wait(t, l, l->n + 2);
    /* Errors of reads. */
    Q(t, 7, io_uring_prep_read(s_, d, b, sizeof(b), 0));
    one(t, l);
    Q(t, 8, io_uring_prep_fsync(s_, sv[0], 0));
    one(t, l);
    Q(t, 9, io_uring_prep_read(s_, f, b, sizeof(b), 0));
    one(t, l);
    close(f);
    close(d);
    close(sv[0]);
    close(sv[1]);
    close(mv[0]);
    close(mv[1]);
    expect(t, l, 1, 0, POLLIN | POLLOUT, 0);
    expect(t, l, 2, 0, POLLIN, 0);
    expect(t, l, 3, 0, 8, 0);
    expect(t, l, 4, 0, 2, 0);
    expect(t, l, 5, 0, POLLIN, IORING_CQE_F_MORE);
    expect(t, l, 5, 1, -ECANCELED, 0);
    expect(t, l, 6, 0, -ETIME, 0);
    expect(t, l, 7, 0, -EISDIR, 0);
    expect(t, l, 8, 0, -EINVAL, 0);
    expect(t, l, 9, 0, 8, 0);
}

START_TEST(odds_and_ends)
{
    both(sc_misc, "odds_and_ends");
}
END_TEST

/*
 * A linked timeout on a multishot poll whose byte the program leaves
 * there: the poll fires once (no new wakeup comes), and the timeout ends
 * it. Not on the simulator, whose poll may fire again for data left there.
 */
static void sc_ms_poll_left(tr *t, tlog *l)
{
    struct __kernel_timespec lt = { 0, 20000000 };
    int mv[2];

    sp(SOCK_STREAM, mv);
    Q(t, 1, (io_uring_prep_poll_multishot(s_, mv[0], POLLIN), s_->flags |= IOSQE_IO_LINK));
    Q(t, 2, io_uring_prep_link_timeout(s_, &lt, 0));
    tr_enter(t, 0, 0);
    ck_assert_int_eq(write(mv[1], "x", 1), 1);
    tr_wait(t, l, l->n + 3);
    close(mv[0]);
    close(mv[1]);
    ck_assert_int_eq(l->n, 3);
    expect(t, l, 1, 0, POLLIN, IORING_CQE_F_MORE);
    expect(t, l, 1, 1, -ECANCELED, 0);
    expect(t, l, 2, 0, -ETIME, 0);
}

START_TEST(multishot_poll_on_data_left_there_fires_once)
{
    kernel_and_epoll(sc_ms_poll_left, "multishot_poll_on_data_left_there_fires_once");
}
END_TEST

static void *wake_later(void *arg)
{
    uint64_t one = 1;
    struct timespec ts = { 0, 20000000 };

    nanosleep(&ts, NULL);
    ck_assert_int_eq(write(*(int *)arg, &one, sizeof(one)), (ssize_t)sizeof(one));
    return NULL;
}

static void sc_wake(tr *t, tlog *l)
{
    uint64_t v = 0;
    pthread_t th;
    int efd = eventfd(0, EFD_CLOEXEC); /* blocking, as the runtime's */

    Q(t, 1, io_uring_prep_read(s_, efd, &v, sizeof(v), 0));
    ck_assert_int_eq(pthread_create(&th, NULL, wake_later, &efd), 0);
    /* A wait with no limit: only the other thread's write ends it. */
    ck_assert_int_ge(tr_enter(t, 1, -1), 0);
    tr_reap(t, l);
    pthread_join(th, NULL);
    close(efd);
    expect(t, l, 1, 0, 8, 0);
    ck_assert_uint_eq(v, 1);
}

START_TEST(wake_from_another_thread)
{
    both(sc_wake, "wake_from_another_thread");
}
END_TEST

static void sc_enter_limit(tr *t, tlog *l)
{
    int sv[2];
    char b[4];

    sp(SOCK_STREAM, sv);
    Q(t, 1, io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0));
    /* The seam's -ETIME; liburing's timed wait returns what it submitted. */
    ck_assert_int_eq(tr_enter(t, 1, 20), t->e ? -ETIME : 1);
    ck_assert_uint_eq(io_uring_cq_ready(&t->ring), 0);
    Q(t, 2, io_uring_prep_cancel64(s_, 1, 0));
    tr_wait(t, l, 2);
    close(sv[0]);
    close(sv[1]);
    expect(t, l, 1, 0, -ECANCELED, 0);
}

START_TEST(enter_limit_is_etime)
{
    both(sc_enter_limit, "enter_limit_is_etime");
}
END_TEST

/* --- the epoll engine alone --- */

START_TEST(init_fills_the_ring)
{
    struct io_uring r;
    pd__engine *e;
    int fds = pd_test_fd_count();

    ck_assert_int_eq(EP->init(&r, 0, 0, &e), -EINVAL);
    ck_assert_int_eq(EP->init(&r, 65536, 0, &e), -EINVAL);
    ck_assert_int_eq(EP->init(&r, 8, 4, &e), -EINVAL);
    ck_assert_int_eq(EP->init(&r, 5, 0, &e), 0);
    ck_assert_uint_eq(r.sq.ring_entries, 8);
    ck_assert_uint_eq(r.cq.ring_entries, 16);
    ck_assert_uint_eq(*r.sq.kring_entries, 8);
    ck_assert_int_eq(r.ring_fd, -1);
    ck_assert_uint_eq(*r.sq.kflags, 0);
    ck_assert(r.features & IORING_FEAT_NODROP);
    ck_assert(r.features & IORING_FEAT_CQE_SKIP);
    ck_assert_uint_eq(io_uring_sq_space_left(&r), 8);
    ck_assert_int_eq(EP->probe_op(e, IORING_OP_RECV), 1);
    ck_assert_int_eq(EP->probe_op(e, 55), 1);
    ck_assert_int_eq(EP->probe_op(e, IORING_OP_MSG_RING), 0);
    ck_assert_int_eq(EP->probe_op(e, IORING_OP_FALLOCATE), 0);
    ck_assert_str_eq(EP->name, "epoll");
    EP->exit(e, &r);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

START_TEST(unsupported_ops_and_chains)
{
    tr t;
    tlog l = { 0 };
    struct __kernel_timespec ts = { 0, 1000 };

    tr_init(&t, 1, 8, 0);
    Q(&t, 1, io_uring_prep_fallocate(s_, 0, 0, 0, 1));
    Q(&t, 2, io_uring_prep_timeout(s_, &ts, 1, 0)); /* a completion count */
    Q(&t, 3, (io_uring_prep_nop(s_), s_->flags |= IOSQE_IO_LINK));
    Q(&t, 4, (io_uring_prep_nop(s_), s_->flags |= IOSQE_IO_LINK));
    Q(&t, 5, io_uring_prep_nop(s_));
    Q(&t, 6, (io_uring_prep_nop(s_), s_->flags |= IOSQE_IO_DRAIN));
    Q(&t, 7, (io_uring_prep_nop(s_), s_->flags |= IOSQE_FIXED_FILE));
    tr_wait(&t, &l, 7);
    expect(&t, &l, 1, 0, -EOPNOTSUPP, 0);
    expect(&t, &l, 2, 0, -EOPNOTSUPP, 0);
    expect(&t, &l, 3, 0, -EOPNOTSUPP, 0);
    expect(&t, &l, 4, 0, -ECANCELED, 0);
    expect(&t, &l, 5, 0, -ECANCELED, 0);
    expect(&t, &l, 6, 0, -EOPNOTSUPP, 0);
    expect(&t, &l, 7, 0, -EBADF, 0);
    tr_exit(&t);
}
END_TEST

START_TEST(cq_overflow_loses_nothing)
{
    struct __kernel_timespec ts = { 0, 1000000 };
    tr t;
    tlog l = { 0 };
    int i, j;

    tr_init(&t, 1, 4, 8);
    /*
     * 160 nops in forty entries, none reaped: 152 overflow, more than the
     * overflow's room from init (64), which doubles twice.
     */
    for (i = 0; i < 40; i++) {
        for (j = 0; j < 4; j++)
            Q(&t, (uint64_t)(i * 4 + j + 1), io_uring_prep_nop(s_));
        ck_assert_int_eq(tr_enter(&t, 0, 0), 4);
    }
    ck_assert_uint_eq(io_uring_cq_ready(&t.ring), 8);
    /*
     * Room for eight, 152 still overflowed: a nop that completes at once
     * goes behind them. Then timers that fire while the queue is full.
     */
    ck_assert_int_eq(tr_reap(&t, &l), 8);
    Q(&t, 161, io_uring_prep_nop(s_));
    ck_assert_int_eq(tr_enter(&t, 0, 0), 1);
    for (j = 0; j < 4; j++)
        Q(&t, (uint64_t)(200 + j), io_uring_prep_timeout(s_, &ts, 0, 0));
    tr_wait(&t, &l, 165);
    for (i = 0; i < 161; i++)
        ck_assert_uint_eq(l.c[i].ud, (uint64_t)(i + 1));
    for (j = 0; j < 4; j++)
        expect(&t, &l, (uint64_t)(200 + j), 0, -ETIME, 0);
    tr_settle(&t, &l, 10);
    ck_assert_int_eq(l.n, 165);
    tr_exit(&t);
}
END_TEST

/* Whether the ring's SQ flags say completions wait on the overflow list. */
static int overflowed(const tr *t)
{
    return !!(IO_URING_READ_ONCE(*t->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW);
}

/*
 * Enters (waiting for nothing) until the CQ holds `ready` completions or
 * the overflow flag is set, within 10 s; returns whether it got there.
 */
static int fill_to(tr *t, unsigned ready)
{
    long long end = now_ms() + 10000;

    for (;;) {
        tr_enter(t, 0, 0);
        if (io_uring_cq_ready(&t->ring) >= ready || overflowed(t))
            return 1;
        if (now_ms() > end)
            return 0;
        usleep(1000);
    }
}

/*
 * A multishot request whose completion finds the CQ full ends, as the
 * kernel's does (io_uring's multishot posting fails and the request
 * completes): that completion goes to the overflow list without F_MORE,
 * carrying the result it would have had, and the request is gone -- later
 * wakeups post nothing. 126 nops leave the poll room for two F_MORE
 * completions in a CQ of 128; the third ends it.
 */
static void sc_ms_overflow(tr *t, tlog *l)
{
    int mv[2], i;
    char b;

    sp(SOCK_STREAM, mv);
    Q(t, 1, io_uring_prep_poll_multishot(s_, mv[0], POLLIN));
    ck_assert_int_eq(tr_enter(t, 0, 0), 1);
    for (i = 0; i < 126; i++) {
        Q(t, (uint64_t)(100 + i), io_uring_prep_nop(s_));
        if (i % 63 == 62)
            ck_assert_int_eq(tr_enter(t, 0, 0), 63);
    }
    ck_assert(fill_to(t, 126));
    ck_assert_uint_eq(io_uring_cq_ready(&t->ring), 126);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(write(mv[1], "x", 1), 1);
        ck_assert(fill_to(t, 127 + (unsigned)i));
        ck_assert_int_eq(read(mv[0], &b, 1), 1);
    }
    ck_assert_uint_eq(io_uring_cq_ready(&t->ring), 128);
    ck_assert(overflowed(t));
    tr_wait(t, l, 129);
    ck_assert(!overflowed(t));
    /* The request ended: a later wakeup posts nothing. */
    ck_assert_int_eq(write(mv[1], "y", 1), 1);
    tr_settle(t, l, 20);
    close(mv[0]);
    close(mv[1]);
    ck_assert_int_eq(l->n, 129);
    ck_assert_int_eq(count(l, 1), 3);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(find(l, 1, i)->res, POLLIN);
        ck_assert_uint_eq(find(l, 1, i)->flags, i < 2 ? IORING_CQE_F_MORE : 0);
    }
    ck_assert_uint_eq(l->c[128].ud, 1);
}

START_TEST(multishot_ends_when_its_completion_overflows)
{
    both(sc_ms_overflow, "multishot_ends_when_its_completion_overflows");
}
END_TEST

/*
 * Posting never allocates: the overflow's room for what the requests in
 * flight can post is made by the enter that starts them. 200 timeouts in
 * two enters behind a full CQ of 128 (the overflow holds 128 from init)
 * all fire into the overflow during later enters that submit nothing, and
 * those allocate nothing.
 */
START_TEST(overflow_room_is_made_when_requests_start)
{
    struct __kernel_timespec ts = { 0, 1000000 };
    long long end;
    long before;
    tr t;
    static tlog l;
    int i;

    memset(&l, 0, sizeof(l));
    tr_init(&t, 1, 128, 128);
    for (i = 0; i < 128; i++)
        Q(&t, (uint64_t)(i + 1), io_uring_prep_nop(s_));
    ck_assert_int_eq(tr_enter(&t, 0, 0), 128);
    ck_assert_uint_eq(io_uring_cq_ready(&t.ring), 128);
    for (i = 0; i < 200; i++) {
        Q(&t, (uint64_t)(1000 + i), io_uring_prep_timeout(s_, &ts, 0, 0));
        if (i == 127)
            ck_assert_int_eq(tr_enter(&t, 0, 0), 128);
    }
    ck_assert_int_eq(tr_enter(&t, 0, 0), 72);
    end = now_ms() + 10000;
    before = pd_test_allocs;
    while (t.e->ovf_len < 200 && now_ms() < end)
        tr_enter(&t, 1, 10);
    PD_CHECK(pd_test_allocs == before);
    ck_assert_uint_eq(t.e->ovf_len, 200);
    tr_wait(&t, &l, 328);
    for (i = 0; i < 128; i++)
        ck_assert_uint_eq(l.c[i].ud, (uint64_t)(i + 1));
    for (i = 0; i < 200; i++)
        expect(&t, &l, (uint64_t)(1000 + i), 0, -ETIME, 0);
    tr_exit(&t);
}
END_TEST

/*
 * An enter that cannot make the overflow's room for what its requests can
 * post returns -ENOMEM and consumes nothing; the next one, with memory,
 * starts them, and nothing is lost. 40 timeouts of an hour behind a full
 * CQ of 64 (the overflow holds 64 from init, enough for the nops that
 * filled it 32 at a time; the timeouts need 80).
 */
START_TEST(enter_without_memory_consumes_nothing)
{
    struct __kernel_timespec ts = { 3600, 0 };
    tr t;
    static tlog l;
    int i, ret;

    memset(&l, 0, sizeof(l));
    tr_init(&t, 1, 64, 64);
    for (i = 0; i < 64; i++) {
        Q(&t, (uint64_t)(i + 1), io_uring_prep_nop(s_));
        if (i % 32 == 31)
            ck_assert_int_eq(tr_enter(&t, 0, 0), 32);
    }
    for (i = 0; i < 40; i++)
        Q(&t, (uint64_t)(1000 + i), io_uring_prep_timeout(s_, &ts, 0, 0));
    pd_harness_fail_allocs(1);
    ret = tr_enter(&t, 0, 0);
    pd_harness_fail_allocs(0);
    ck_assert_int_eq(ret, -ENOMEM);
    ck_assert_uint_eq(io_uring_sq_ready(&t.ring), 40);
    ck_assert_int_eq(tr_enter(&t, 0, 0), 40);
    Q(&t, 3000, io_uring_prep_cancel64(s_, 0, IORING_ASYNC_CANCEL_ANY));
    tr_wait(&t, &l, 64 + 41);
    for (i = 0; i < 64; i++)
        ck_assert_uint_eq(l.c[i].ud, (uint64_t)(i + 1));
    for (i = 0; i < 40; i++)
        expect(&t, &l, (uint64_t)(1000 + i), 0, -ECANCELED, 0);
    tr_exit(&t);
}
END_TEST

/*
 * IORING_FEAT_NODROP as the kernel has it: IORING_SQ_CQ_OVERFLOW is set
 * while completions wait on the overflow list (liburing's
 * cq_ring_needs_flush reads it to know that an enter is needed), each
 * enter moves them into the CQ, oldest first, as far as there is room,
 * and the flag is cleared with the last of them.
 */
START_TEST(overflow_flag_set_while_completions_wait)
{
    tr t;
    tlog l = { 0 };
    int i;

    tr_init(&t, 1, 4, 4);
    for (i = 0; i < 4; i++)
        Q(&t, (uint64_t)(i + 1), io_uring_prep_nop(s_));
    ck_assert_int_eq(tr_enter(&t, 0, 0), 4);
    ck_assert_uint_eq(io_uring_cq_ready(&t.ring), 4);
    ck_assert(!overflowed(&t));
    for (i = 4; i < 8; i++)
        Q(&t, (uint64_t)(i + 1), io_uring_prep_nop(s_));
    ck_assert_int_eq(tr_enter(&t, 0, 0), 4);
    ck_assert(overflowed(&t));
    /* Room for two: two move in, two still wait, the flag stays. */
    io_uring_cq_advance(&t.ring, 2);
    ck_assert_int_eq(tr_enter(&t, 0, 0), 0);
    ck_assert_uint_eq(io_uring_cq_ready(&t.ring), 4);
    ck_assert(overflowed(&t));
    ck_assert_int_eq(tr_reap(&t, &l), 4);
    ck_assert_int_eq(tr_enter(&t, 0, 0), 0);
    ck_assert(!overflowed(&t));
    ck_assert_int_eq(tr_reap(&t, &l), 2);
    for (i = 0; i < 6; i++)
        ck_assert_uint_eq(l.c[i].ud, (uint64_t)(i + 3));
    tr_exit(&t);
}
END_TEST

/* Threads of this process blocked in openat(2) now (from /proc). */
static int blocked_in_openat(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        char p[320], line[32] = "";
        FILE *f;

        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "/proc/self/task/%s/syscall", de->d_name);
        if ((f = fopen(p, "r")) == NULL)
            continue;
        if (fgets(line, sizeof(line), f) && strncmp(line, "257 ", 4) == 0)
            n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

/* Waits (at most 10 s) until n workers are blocked opening the FIFO. */
static void wait_blocked(int n)
{
    long long end = now_ms() + 10000;
    struct timespec ts = { 0, 1000000 };

    while (blocked_in_openat() < n) {
        ck_assert_msg(now_ms() < end, "workers not blocked in openat after 10 s");
        nanosleep(&ts, NULL);
    }
}

/*
 * Every worker blocked in an openat of a FIFO that has no writer yet: each
 * cancel answers -EALREADY and the open completes later with its fd; a
 * statx queued behind them is cancelled for good; a linked timeout on a
 * running op answers -EALREADY too. Then one writer releases them all.
 */
START_TEST(cancel_running_and_queued_worker_ops)
{
    struct __kernel_timespec ts = { 3, 0 };
    struct statx stx;
    tr t;
    tlog l = { 0 };
    int i, w;

    tmp_make();
    ck_assert_int_eq(mkfifo(tmp_path("fifo"), 0600), 0);
    tr_init(&t, 1, 16, 0);
    for (i = 0; i < 3; i++)
        Q(&t, FDUD + i, io_uring_prep_openat(s_, AT_FDCWD, tmp_path("fifo"), O_RDONLY | O_CLOEXEC, 0));
    tr_enter(&t, 0, 0);
    wait_blocked(3);
    /* The last worker takes this one at once; its timer fires while it runs. */
    Q(&t, FDUD + 3, (io_uring_prep_openat(s_, AT_FDCWD, tmp_path("fifo"), O_RDONLY | O_CLOEXEC, 0),
                     s_->flags |= IOSQE_IO_LINK));
    Q(&t, 4, io_uring_prep_link_timeout(s_, &ts, 0));
    tr_enter(&t, 0, 0);
    wait_blocked(4);
    Q(&t, 10, io_uring_prep_statx(s_, AT_FDCWD, "/", 0, STATX_BASIC_STATS, &stx));
    Q(&t, 11, io_uring_prep_cancel64(s_, FDUD + 0, 0));
    Q(&t, 12, io_uring_prep_cancel64(s_, 10, 0));
    tr_wait(&t, &l, 3);
    /* The linked timeout fired on a running op. */
    tr_wait(&t, &l, 4);
    expect(&t, &l, 11, 0, -EALREADY, 0);
    expect(&t, &l, 12, 0, 0, 0);
    expect(&t, &l, 10, 0, -ECANCELED, 0);
    expect(&t, &l, 4, 0, -EALREADY, 0);
    tr_settle(&t, &l, 20);
    ck_assert_int_eq(l.n, 4);
    w = open(tmp_path("fifo"), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    ck_assert_int_ge(w, 0);
    tr_wait(&t, &l, 8);
    for (i = 0; i < 4; i++)
        expect(&t, &l, FDUD + (unsigned)i, 0, 0, 0);
    close_fds(&l);
    close(w);
    tr_exit(&t);
    tmp_remove();
}
END_TEST

/*
 * An fd closed behind the engine's back and its number reused by a new
 * file: the old registration is gone, and a recv waiting on the new one
 * still completes (after the grace check at the latest).
 */
START_TEST(fd_number_reused_behind_the_engines_back)
{
    tr t;
    tlog l = { 0 };
    int sv[2], nv[2], i;
    char b[8];

    tr_init(&t, 1, 8, 0);
    for (i = 0; i < 3; i++) {
        sp(SOCK_STREAM, sv);
        Q(&t, (uint64_t)(10 * i + 1), io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0));
        tr_settle(&t, &l, 5);
        ck_assert_int_eq(write(sv[1], "a", 1), 1);
        tr_wait(&t, &l, 2 * i + 1);
        /* Closed with close(2), not through the engine. */
        close(sv[0]);
        close(sv[1]);
        sp(SOCK_STREAM, nv);
        ck_assert_int_eq(nv[0], sv[0]);
        Q(&t, (uint64_t)(10 * i + 2), io_uring_prep_recv(s_, nv[0], b, sizeof(b), 0));
        tr_settle(&t, &l, 5);
        ck_assert_int_eq(write(nv[1], "bc", 2), 2);
        tr_wait(&t, &l, 2 * i + 2);
        expect(&t, &l, (uint64_t)(10 * i + 2), 0, 2, 0);
        close(nv[0]);
        close(nv[1]);
    }
    tr_exit(&t);
}
END_TEST

/* The engine freed with requests waiting on fds, timers and workers: nothing leaks. */
START_TEST(exit_with_requests_in_flight)
{
    struct __kernel_timespec hour = { 3600, 0 };
    int fds = pd_test_fd_count(), sv[2];
    char b[8];
    tr t;

    sp(SOCK_STREAM, sv);
    tr_init(&t, 1, 8, 0);
    Q(&t, 1, io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0));
    Q(&t, 2, (io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0), s_->flags |= IOSQE_IO_LINK));
    Q(&t, 3, io_uring_prep_link_timeout(s_, &hour, 0));
    Q(&t, 4, io_uring_prep_timeout(s_, &hour, 0, 0));
    Q(&t, 5, io_uring_prep_fsync(s_, sv[0], 0));
    ck_assert_int_eq(tr_enter(&t, 0, 0), 5);
    tr_exit(&t);
    close(sv[0]);
    close(sv[1]);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

/* More requests in flight than the records preallocated: the pool grows. */
START_TEST(many_requests_grow_the_pool)
{
    struct __kernel_timespec hour = { 3600, 0 };
    tr t;
    tlog l = { 0 };
    int i;

    tr_init(&t, 1, 256, 0);
    for (i = 0; i < 10000; i++) {
        if (io_uring_sq_space_left(&t.ring) == 0)
            ck_assert_int_ge(tr_enter(&t, 0, 0), 0);
        Q(&t, (uint64_t)(i + 1), io_uring_prep_timeout(s_, &hour, 0, 0));
    }
    ck_assert_int_ge(tr_enter(&t, 0, 0), 0);
    Q(&t, 20000, io_uring_prep_cancel64(s_, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL));
    tr_enter(&t, 0, 0);
    for (;;) {
        static tlog big;
        int n = tr_reap(&t, &big);

        big.n = 0;
        l.n += n;
        if (l.n >= 10001)
            break;
        ck_assert_int_ge(tr_enter(&t, 1, 1000), 0);
    }
    ck_assert_int_eq(l.n, 10001);
    tr_exit(&t);
}
END_TEST

/* Threads of this process now (from /proc/self/task). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/*
 * Waits (at most 10 s) until the process has n threads: a joined thread
 * may stay listed for a moment after its join returned.
 */
static void wait_threads(int n)
{
    long long end = now_ms() + 10000;
    struct timespec ts = { 0, 1000000 };

    while (thread_count() != n) {
        ck_assert_msg(now_ms() < end, "%d threads after 10 s, want %d", thread_count(), n);
        nanosleep(&ts, NULL);
    }
}

/*
 * The worker pool starts with the engine's first file op, not with the
 * engine: a nop, a pipe round trip and a timer start no thread; an fsync
 * starts the workers and completes on one of them; exit joins them. An
 * engine that never started them exits with nothing to join.
 */
START_TEST(workers_start_with_the_first_file_op)
{
    struct __kernel_timespec ts = { 0, 1000000 };
    int n0 = thread_count(), p[2], fd;
    char b[4];
    tr t;
    tlog l = { 0 };

    tmp_make();
    fd = open(tmp_path("w"), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    tr_init(&t, 1, 8, 0);
    ck_assert_int_eq(thread_count(), n0);
    Q(&t, 1, io_uring_prep_nop(s_));
    Q(&t, 2, io_uring_prep_read(s_, p[0], b, sizeof(b), 0));
    Q(&t, 3, io_uring_prep_timeout(s_, &ts, 0, 0));
    ck_assert_int_eq(tr_enter(&t, 0, 0), 3);
    ck_assert_int_eq(write(p[1], "abc", 3), 3);
    tr_wait(&t, &l, 3);
    expect(&t, &l, 2, 0, 3, 0);
    expect(&t, &l, 3, 0, -ETIME, 0);
    ck_assert_int_eq(thread_count(), n0);

    Q(&t, 4, io_uring_prep_fsync(s_, fd, 0));
    tr_wait(&t, &l, 4);
    expect(&t, &l, 4, 0, 0, 0);
    ck_assert_int_eq(thread_count(), n0 + (int)PD__EP_WORKERS);
    tr_exit(&t);
    wait_threads(n0);

    tr_init(&t, 1, 8, 0);
    Q(&t, 5, io_uring_prep_nop(s_));
    ck_assert_int_eq(tr_enter(&t, 1, 1000), 1);
    ck_assert_int_eq(thread_count(), n0);
    tr_exit(&t);
    ck_assert_int_eq(thread_count(), n0);
    close(p[0]);
    close(p[1]);
    close(fd);
    tmp_remove();
}
END_TEST

/*
 * A steady state allocates nothing: round trips that wait for readiness,
 * file ops on the workers and timers, after a first round that sized the
 * fd table and the records. (PD_CHECK, not ck_assert: Check allocates.)
 */
START_TEST(steady_state_allocates_nothing)
{
    struct __kernel_timespec ts = { 0, 1000 };
    int sv[2], fd, round, i;
    long before = 0;
    char b[8];
    tr t;

    tmp_make();
    fd = open(tmp_path("a"), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    sp(SOCK_STREAM, sv);
    tr_init(&t, 1, 16, 0);
    for (round = 0; round < 2; round++) {
        if (round == 1)
            before = pd_test_allocs;
        for (i = 0; i < 100; i++) {
            struct io_uring_cqe *c;
            unsigned head, n = 0, got = 0;

            Q(&t, 1, io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0));
            Q(&t, 2, io_uring_prep_fsync(s_, fd, IORING_FSYNC_DATASYNC));
            Q(&t, 3, io_uring_prep_timeout(s_, &ts, 0, 0));
            PD_CHECK(tr_enter(&t, 0, 0) == 3);
            PD_CHECK(write(sv[1], "x", 1) == 1);
            while (got < 3) {
                PD_CHECK(tr_enter(&t, 1, 5000) >= 0);
                io_uring_for_each_cqe(&t.ring, head, c) {
                    PD_CHECK(c->res == (c->user_data == 1 ? 1 : c->user_data == 2 ? 0 : -ETIME));
                    n++;
                }
                io_uring_cq_advance(&t.ring, n);
                got += n;
                n = 0;
            }
        }
    }
    PD_CHECK(pd_test_allocs == before);
    tr_exit(&t);
    close(sv[0]);
    close(sv[1]);
    close(fd);
    tmp_remove();
}
END_TEST

/*
 * An entry that already has the completions it waits for collects
 * readiness (a zero-timeout epoll_pwait2) only if the entry before it did
 * not: a recv whose data came while nothing waited completes in the
 * second entry after it, not the first, and never later. The run loop
 * enters twice per turn (its sends complete inline, then its recvs wait),
 * so this halves the epoll system calls of a busy server without letting
 * readiness go unseen for more than one entry.
 */
START_TEST(readiness_is_collected_every_other_entry_at_least)
{
    int sv[2], i;
    char b[8];
    tr t;
    tlog l = { 0 };

    sp(SOCK_STREAM, sv);
    tr_init(&t, 1, 8, 0);
    for (i = 0; i < 3; i++) {
        /* Waits on the socket, and this entry waits for it (in epoll). */
        Q(&t, 1, io_uring_prep_recv(s_, sv[0], b, sizeof(b), 0));
        ck_assert_int_eq(tr_enter(&t, 1, 20), -ETIME);
        ck_assert_int_eq(tr_reap(&t, &l), 0);
        ck_assert_int_eq(write(sv[1], "x", 1), 1);
        /* A nop completes at once: readiness was collected last entry. */
        Q(&t, 2, io_uring_prep_nop(s_));
        ck_assert_int_eq(tr_enter(&t, 1, 5000), 1);
        tr_reap(&t, &l);
        ck_assert_int_eq(count(&l, 1), i);
        ck_assert_int_eq(count(&l, 2), i + 1);
        /* Another nop: the entry before did not collect, this one does. */
        Q(&t, 3, io_uring_prep_nop(s_));
        ck_assert_int_eq(tr_enter(&t, 1, 5000), 1);
        tr_reap(&t, &l);
        ck_assert_int_eq(count(&l, 1), i + 1);
        ck_assert_int_eq(count(&l, 3), i + 1);
        expect(&t, &l, 1, i, 1, 0);
    }
    tr_exit(&t);
    close(sv[0]);
    close(sv[1]);
}
END_TEST


/*
 * MSG_WAITALL with part of the data there already, on a socket the engine
 * never waited on: the first attempt's short recv must wait for the rest,
 * as the kernel's does, not complete short.
 */
static void sc_waitall_first(tr *t, tlog *l)
{
    int sv[2];
    char b[8] = "";

    sp(SOCK_STREAM, sv);
    ck_assert_int_eq(write(sv[1], "abc", 3), 3);
    Q(t, 1, io_uring_prep_recv(s_, sv[0], b, 6, MSG_WAITALL));
    tr_settle(t, l, 20);
    ck_assert_int_eq(count(l, 1), 0);
    ck_assert_int_eq(write(sv[1], "def", 3), 3);
    tr_wait(t, l, 1);
    ck_assert_int_eq(memcmp(b, "abcdef", 6), 0);
    expect(t, l, 1, 0, 6, 0);
    close(sv[0]);
    close(sv[1]);
}

START_TEST(waitall_with_part_of_the_data_there)
{
    both(sc_waitall_first, "waitall_with_part_of_the_data_there");
}
END_TEST

/*
 * A MSG_WAITALL recv that received part of what it waits for, then is
 * stopped, by a cancel or by its linked timeout: it completes with what it
 * received (the bytes are in its buffer and gone from the socket), as the
 * kernel's does, not -ECANCELED.
 */
static void sc_partial_stop(tr *t, tlog *l)
{
    struct __kernel_timespec short_ts = { 0, 30000000 };
    int sv[2], sw[2];
    char b[16] = "", c[16] = "";

    sp(SOCK_STREAM, sv);
    sp(SOCK_STREAM, sw);
    ck_assert_int_eq(write(sv[1], "abc", 3), 3);
    Q(t, 1, io_uring_prep_recv(s_, sv[0], b, 10, MSG_WAITALL));
    tr_settle(t, l, 20);
    ck_assert_int_eq(count(l, 1), 0);
    Q(t, 2, io_uring_prep_cancel64(s_, 1, 0));
    tr_wait(t, l, 2);
    ck_assert_int_eq(write(sw[1], "de", 2), 2);
    Q(t, 3, (io_uring_prep_recv(s_, sw[0], c, 10, MSG_WAITALL), s_->flags |= IOSQE_IO_LINK));
    Q(t, 4, io_uring_prep_link_timeout(s_, &short_ts, 0));
    tr_wait(t, l, 4);
    ck_assert_int_eq(memcmp(b, "abc", 3), 0);
    ck_assert_int_eq(memcmp(c, "de", 2), 0);
    expect(t, l, 1, 0, 3, 0);
    expect(t, l, 2, 0, 0, 0);
    expect(t, l, 3, 0, 2, 0);
    expect(t, l, 4, 0, -ETIME, 0);
    close(sv[0]);
    close(sv[1]);
    close(sw[0]);
    close(sw[1]);
}

START_TEST(stopped_waitall_recv_returns_what_it_got)
{
    both(sc_partial_stop, "stopped_waitall_recv_returns_what_it_got");
}
END_TEST

/*
 * Times too long to ever pass, as a timeout, a linked timeout and the
 * limit of an entry: they never fire (the deadline saturates; it must not
 * wrap around to the past), and an entry with such a limit waits for what
 * it waits for.
 */
static void sc_huge_times(tr *t, tlog *l)
{
    struct __kernel_timespec huge = { INT64_MAX / 1000000000 - 1, 999999999 };
    struct __kernel_timespec longest = { INT64_MAX, 999999999 }, short_ts = { 0, 20000000 };
    struct io_uring_cqe *c;
    int p[2], ret;
    char b[4];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    Q(t, 1, io_uring_prep_timeout(s_, &huge, 0, 0));
    Q(t, 2, io_uring_prep_timeout(s_, &longest, 0, 0));
    Q(t, 3, (io_uring_prep_read(s_, p[0], b, sizeof(b), 0), s_->flags |= IOSQE_IO_LINK));
    Q(t, 4, io_uring_prep_link_timeout(s_, &huge, 0));
    tr_settle(t, l, 30);
    ck_assert_msg(l->n == 0, "%s: %d completions, none due", t->e ? t->vt->name : "io_uring", l->n);
    /* Two completions, the second 20 ms on, under a limit of 292 years. */
    Q(t, 5, io_uring_prep_nop(s_));
    Q(t, 6, io_uring_prep_timeout(s_, &short_ts, 0, 0));
    if (t->e)
        ret = t->vt->enter(t->e, &t->ring, 2, &huge);
    else
        ret = io_uring_submit_and_wait_timeout(&t->ring, &c, 2, &huge, NULL);
    ck_assert_msg(ret >= 0, "%s: enter: %d", t->e ? t->vt->name : "io_uring", ret);
    tr_reap(t, l);
    ck_assert_msg(l->n == 2, "%s: %d completions, want 2", t->e ? t->vt->name : "io_uring", l->n);
    Q(t, 7, io_uring_prep_cancel64(s_, 1, 0));
    Q(t, 8, io_uring_prep_cancel64(s_, 2, 0));
    Q(t, 9, io_uring_prep_cancel64(s_, 3, 0));
    tr_wait(t, l, 9);
    expect(t, l, 1, 0, -ECANCELED, 0);
    expect(t, l, 2, 0, -ECANCELED, 0);
    expect(t, l, 3, 0, -ECANCELED, 0);
    expect(t, l, 4, 0, -ECANCELED, 0);
    expect(t, l, 5, 0, 0, 0);
    expect(t, l, 6, 0, -ETIME, 0);
    close(p[0]);
    close(p[1]);
}

START_TEST(huge_timeouts_never_fire)
{
    both(sc_huge_times, "huge_timeouts_never_fire");
}
END_TEST

static volatile sig_atomic_t sigpipes;

static void count_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

/*
 * A send and a sendmsg without MSG_NOSIGNAL to a peer that is gone: -EPIPE
 * and no SIGPIPE, since io_uring adds MSG_NOSIGNAL to every send it makes
 * (a program that never asked for SIGPIPE to be ignored would be killed).
 */
static void sc_no_sigpipe(tr *t, tlog *l)
{
    struct sigaction sa, old;
    struct iovec v = { "x", 1 };
    struct msghdr m;
    int sv[2];

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = count_sigpipe;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGPIPE, &sa, &old), 0);
    sigpipes = 0;
    memset(&m, 0, sizeof(m));
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    sp(SOCK_STREAM, sv);
    close(sv[1]);
    Q(t, 1, io_uring_prep_send(s_, sv[0], "x", 1, 0));
    Q(t, 2, io_uring_prep_sendmsg(s_, sv[0], &m, 0));
    Q(t, 3, io_uring_prep_send(s_, sv[0], "x", 1, MSG_WAITALL));
    tr_wait(t, l, 3);
    close(sv[0]);
    ck_assert_int_eq(sigaction(SIGPIPE, &old, NULL), 0);
    ck_assert_msg(sigpipes == 0, "%s: %d SIGPIPEs", t->e ? t->vt->name : "io_uring",
                  (int)sigpipes);
    expect(t, l, 1, 0, -EPIPE, 0);
    expect(t, l, 2, 0, -EPIPE, 0);
    expect(t, l, 3, 0, -EPIPE, 0);
}

START_TEST(send_to_a_gone_peer_raises_no_sigpipe)
{
    both(sc_no_sigpipe, "send_to_a_gone_peer_raises_no_sigpipe");
}
END_TEST

/*
 * A socket timeout too long to ever pass (SO_SNDTIMEO of 295 years, which
 * the kernel keeps as it is) bounds a splice into the full socket: the
 * splice waits, it must not end at once with -EAGAIN because its deadline
 * wrapped around into the past. Its cancel ends it (io_uring interrupts
 * its worker: -EINTR; the engines stop its wait: -ECANCELED).
 */
static void sc_huge_socket_timeout(tr *t, tlog *l)
{
    struct timeval huge = { 9300000000L, 0 };
    static char page[4096];
    int p[2], sv[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    sp(SOCK_STREAM, sv);
    ck_assert_int_eq(write(p[1], page, sizeof(page)), (int)sizeof(page));
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &huge, sizeof(huge)), 0);
    fill_socket(sv[0]);
    Q(t, 1, io_uring_prep_splice(s_, p[0], -1, sv[0], -1, sizeof(page), 0));
    tr_settle(t, l, 30);
    ck_assert_msg(l->n == 0, "%s: the splice ended (%d) long before its socket's timeout",
                  t->e ? t->vt->name : "io_uring", l->n ? l->c[0].res : 0);
    Q(t, 2, io_uring_prep_cancel64(s_, 1, 0));
    tr_wait(t, l, 2);
    ck_assert_int_eq(count(l, 1), 1);
    ck_assert(find(l, 1, 0)->res == -ECANCELED || find(l, 1, 0)->res == -EINTR);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

START_TEST(splice_under_a_huge_socket_timeout_waits)
{
    each(sc_huge_socket_timeout, "splice_under_a_huge_socket_timeout_waits");
}
END_TEST

/*
 * MSG_WAITALL on a SOCK_SEQPACKET socket: the kernel retries a short
 * receive there as on a stream (io_net_retry), filling the buffer from the
 * records that follow, so the engines must wait for the rest too.
 */
static void sc_waitall_seqpacket(tr *t, tlog *l)
{
    int sq[2];
    char b[8] = "";

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sq), 0);
    ck_assert_int_eq(write(sq[1], "abc", 3), 3);
    Q(t, 1, io_uring_prep_recv(s_, sq[0], b, 6, MSG_WAITALL));
    tr_settle(t, l, 20);
    ck_assert_msg(count(l, 1) == 0, "%s: the recv completed short",
                  t->e ? t->vt->name : "io_uring");
    ck_assert_int_eq(write(sq[1], "def", 3), 3);
    tr_wait(t, l, 1);
    ck_assert_int_eq(memcmp(b, "abcdef", 6), 0);
    expect(t, l, 1, 0, 6, 0);
    close(sq[0]);
    close(sq[1]);
}

START_TEST(waitall_on_a_seqpacket_socket)
{
    both(sc_waitall_seqpacket, "waitall_on_a_seqpacket_socket");
}
END_TEST

/* The fd a scenario works on: open, and above the soft RLIMIT_NOFILE. */
#define HIGH_FD 1500

/*
 * An fd above the soft RLIMIT_NOFILE, open from before the limit was
 * lowered (inherited, or opened before a server lowered its limit): the
 * kernel's ops on it work, so the engines' must (their fd table must not
 * take the limit for the highest fd that can be).
 */
static void sc_fd_above_limit(tr *t, tlog *l)
{
    char b[8] = "";

    ck_assert_int_eq(write(HIGH_FD, "ping", 4), 4);
    Q(t, 1, io_uring_prep_recv(s_, HIGH_FD + 1, b, sizeof(b), 0));
    Q(t, 2, io_uring_prep_poll_add(s_, HIGH_FD, POLLOUT));
    tr_wait(t, l, 2);
    expect(t, l, 1, 0, 4, 0);
    expect(t, l, 2, 0, POLLOUT, 0);
}

START_TEST(fd_above_a_lowered_fd_limit)
{
    struct rlimit old, low;
    int sv[2];

    sp(SOCK_STREAM, sv);
    ck_assert_int_eq(dup2(sv[0], HIGH_FD), HIGH_FD);
    ck_assert_int_eq(dup2(sv[1], HIGH_FD + 1), HIGH_FD + 1);
    close(sv[0]);
    close(sv[1]);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 1024;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    both(sc_fd_above_limit, "fd_above_a_lowered_fd_limit");
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    close(HIGH_FD);
    close(HIGH_FD + 1);
}
END_TEST

/*
 * IOSQE_CQE_SKIP_SUCCESS on a multishot poll: the kernel refuses it
 * (-EINVAL: its F_MORE completions are successes it could not skip), and
 * takes it on a multishot accept, posting every connection.
 */
static void sc_skip_multishot(tr *t, tlog *l)
{
    struct sockaddr_in a;
    int lfd = tcp_listener(&a), sv[2], c;

    sp(SOCK_STREAM, sv);
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    Q(t, 1, (io_uring_prep_poll_multishot(s_, sv[0], POLLIN),
             s_->flags |= IOSQE_CQE_SKIP_SUCCESS));
    Q(t, FDUD + 2, (io_uring_prep_multishot_accept(s_, lfd, NULL, NULL, 0),
                    s_->flags |= IOSQE_CQE_SKIP_SUCCESS));
    tr_wait(t, l, 1);
    c = tcp_connect(&a);
    tr_wait(t, l, 2);
    Q(t, 3, io_uring_prep_cancel64(s_, FDUD + 2, 0));
    tr_wait(t, l, 4);
    expect(t, l, 1, 0, -EINVAL, 0);
    expect(t, l, FDUD + 2, 0, 0, IORING_CQE_F_MORE);
    expect(t, l, FDUD + 2, 1, -ECANCELED, 0);
    expect(t, l, 3, 0, 0, 0);
    close(find(l, FDUD + 2, 0)->res);
    close(c);
    close(lfd);
    close(sv[0]);
    close(sv[1]);
}

START_TEST(skip_success_on_multishot_ops)
{
    both(sc_skip_multishot, "skip_success_on_multishot_ops");
}
END_TEST

/*
 * send_zc with IORING_SEND_ZC_REPORT_USAGE says in its notification
 * whether the data was copied: over loopback the kernel copies, and the
 * engines always copy, so the notification says so
 * (IORING_NOTIF_USAGE_ZC_COPIED), as the kernel's does for any send
 * that did not use zero copy, one that moved nothing included.
 */
static void sc_zc_usage(tr *t, tlog *l)
{
    struct sockaddr_in a;
    int lfd = tcp_listener(&a), c = tcp_connect(&a), s2 = accept(lfd, NULL, NULL);
    char b[4];

    ck_assert_int_ge(s2, 0);
    Q(t, 1, io_uring_prep_send_zc(s_, c, "abc", 3, MSG_NOSIGNAL, 1u << 3));
    tr_wait(t, l, 2);
    Q(t, 2, io_uring_prep_send_zc(s_, c, "abc", 0, MSG_NOSIGNAL, 1u << 3));
    tr_wait(t, l, 4);
    ck_assert_int_eq(read(s2, b, 3), 3);
    expect(t, l, 1, 0, 3, IORING_CQE_F_MORE);
    expect(t, l, 1, 1, (int32_t)(1u << 31), IORING_CQE_F_NOTIF);
    expect(t, l, 2, 0, 0, IORING_CQE_F_MORE);
    expect(t, l, 2, 1, (int32_t)(1u << 31), IORING_CQE_F_NOTIF);
    close(c);
    close(s2);
    close(lfd);
}

START_TEST(send_zc_reports_its_copy)
{
    both(sc_zc_usage, "send_zc_reports_its_copy");
}
END_TEST

/*
 * A recv waits on a socket; the program closes the socket with a close
 * op (the kernel's recv keeps its file and waits on), and an accept gets
 * the same fd number for a new connection, on which a second recv waits.
 * The new connection's data is the second recv's: the first must never
 * read from a file it was not submitted for (one client's bytes handed to
 * another's reader).
 */
static void sc_stale_waiter(tr *t, tlog *l)
{
    struct sockaddr_in a;
    int lfd = tcp_listener(&a), c = tcp_connect(&a), sv[2], afd;
    char b1[8] = "", b4[8] = "";

    sp(SOCK_STREAM, sv);
    Q(t, 1, io_uring_prep_recv(s_, sv[0], b1, sizeof(b1), 0));
    tr_settle(t, l, 10);
    Q(t, 2, io_uring_prep_close(s_, sv[0]));
    tr_wait(t, l, 1);
    /* sv[0] was the lowest free number: the accept gets it again. */
    Q(t, FDUD + 3, io_uring_prep_accept(s_, lfd, NULL, NULL, SOCK_CLOEXEC));
    tr_wait(t, l, 2);
    afd = find(l, FDUD + 3, 0)->res;
    ck_assert_int_eq(afd, sv[0]);
    Q(t, 4, io_uring_prep_recv(s_, afd, b4, sizeof(b4), 0));
    tr_settle(t, l, 10);
    ck_assert_int_eq(write(c, "new", 3), 3);
    tr_wait(t, l, 3);
    ck_assert_msg(count(l, 1) == 0, "%s: the closed socket's recv read the new one's data",
                  t->e ? t->vt->name : "io_uring");
    ck_assert_int_eq(memcmp(b4, "new", 3), 0);
    Q(t, 5, io_uring_prep_cancel64(s_, 1, 0));
    tr_wait(t, l, 5);
    expect(t, l, 1, 0, -ECANCELED, 0);
    expect(t, l, 2, 0, 0, 0);
    expect(t, l, 4, 0, 3, 0);
    expect(t, l, 5, 0, 0, 0);
    close(afd);
    close(sv[1]);
    close(c);
    close(lfd);
}

START_TEST(closed_fds_waiter_never_reads_its_successor)
{
    both(sc_stale_waiter, "closed_fds_waiter_never_reads_its_successor");
}
END_TEST

Suite *pd_suite_engine_epoll(void)
{
    Suite *s = suite_create("engine_epoll");
    TCase *cmp = tcase_create("same as io_uring");
    TCase *own = tcase_create("epoll engine");

    tcase_add_test(cmp, nop_and_skip_success);
    tcase_add_test(cmp, pipe_read_write_and_vectors);
    tcase_add_test(cmp, file_ops);
    tcase_add_test(cmp, socket_ops);
    tcase_add_test(cmp, poll_add_single_and_multishot);
    tcase_add_test(cmp, splice_between_pipes_sockets_and_files);
    tcase_add_test(cmp, timeout_and_its_cancel);
    tcase_add_test(cmp, linked_timeout_both_ways);
    tcase_add_test(cmp, cancel_by_user_data_fd_all_any);
    tcase_add_test(cmp, multishot_accept);
    tcase_add_test(cmp, accept_after_a_wait_then_send_zc);
    tcase_add_test(cmp, splice_ends_at_the_sockets_timeout);
    tcase_add_test(cmp, dontwait_and_nowait_end_with_eagain);
    tcase_add_test(cmp, multishot_recv_with_a_buffer_ring);
    tcase_add_test(cmp, two_waiters_on_one_socket);
    tcase_add_test(cmp, end_of_stream_after_a_short_read);
    tcase_add_test(cmp, odds_and_ends);
    tcase_add_test(cmp, multishot_poll_on_data_left_there_fires_once);
    tcase_add_test(cmp, wake_from_another_thread);
    tcase_add_test(cmp, enter_limit_is_etime);
    tcase_add_test(cmp, waitall_with_part_of_the_data_there);
    tcase_add_test(cmp, stopped_waitall_recv_returns_what_it_got);
    tcase_add_test(cmp, huge_timeouts_never_fire);
    tcase_add_test(cmp, send_to_a_gone_peer_raises_no_sigpipe);
    tcase_add_test(cmp, splice_under_a_huge_socket_timeout_waits);
    tcase_add_test(cmp, waitall_on_a_seqpacket_socket);
    tcase_add_test(cmp, fd_above_a_lowered_fd_limit);
    tcase_add_test(cmp, skip_success_on_multishot_ops);
    tcase_add_test(cmp, send_zc_reports_its_copy);
    tcase_add_test(cmp, closed_fds_waiter_never_reads_its_successor);
    tcase_add_test(cmp, multishot_ends_when_its_completion_overflows);
    tcase_set_timeout(cmp, 60);
    tcase_set_tags(cmp, PD_TEST_OWN_ENGINE);
    suite_add_tcase(s, cmp);
    tcase_add_test(own, init_fills_the_ring);
    tcase_add_test(own, unsupported_ops_and_chains);
    tcase_add_test(own, cq_overflow_loses_nothing);
    tcase_add_test(own, overflow_flag_set_while_completions_wait);
    tcase_add_test(own, cancel_running_and_queued_worker_ops);
    tcase_add_test(own, fd_number_reused_behind_the_engines_back);
    tcase_add_test(own, exit_with_requests_in_flight);
    tcase_add_test(own, many_requests_grow_the_pool);
    tcase_add_test(own, steady_state_allocates_nothing);
    tcase_add_test(own, overflow_room_is_made_when_requests_start);
    tcase_add_test(own, enter_without_memory_consumes_nothing);
    tcase_add_test(own, readiness_is_collected_every_other_entry_at_least);
    tcase_add_test(own, workers_start_with_the_first_file_op);
    tcase_set_timeout(own, 60);
    tcase_set_tags(own, PD_TEST_OWN_ENGINE);
    suite_add_tcase(s, own);
    return s;
}
