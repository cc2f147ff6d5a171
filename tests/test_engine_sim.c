/*
 * The simulator engine (runtime/engine_sim*.c): determinism (a seed replays
 * its completions exactly), exploration (seeds give different legal
 * orders), virtual time (an hour passes at once, a shutdown deadline is
 * exact), faults, and the harness's exploration of a spec under many
 * seeds (pd_harness_explore).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "engine_sim.h"
#include "fifo_assume.h"
#include "harness.h"
#include "burst.h"
#include "write_all.h"
#include "nops.h"
#include "sleep_ms.h"
#include "stuck_bye.h"
#include "testutil.h"

#define LOG_MAX 256

typedef struct slog {
    int n;
    struct {
        uint64_t ud;
        int32_t res;
        uint32_t flags;
    } c[LOG_MAX];
} slog;

static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

    ck_assert_ptr_nonnull(sqe);
    return sqe;
}

static long long real_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * One run of a fixed workload on a simulated ring with `seed`: nops, reads
 * of pipes with data, timeouts (one of them cancelled), a read of an empty
 * pipe under a linked timeout, a file write. Every completion, in the
 * order the engine posted it, goes in *log.
 */
static void workload(uint64_t seed, unsigned flags, slog *log)
{
    static const struct __kernel_timespec t30 = { 0, 30000000 }, t10 = { 0, 10000000 },
                                          t5 = { 0, 5000000 };
    pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_seed = seed, .sim_flags = flags };
    struct io_uring ring;
    pd__engine *e;
    char buf[4][16], empty_buf[8], path[] = "/tmp/pd_sim_XXXXXX";
    int p[4][2], empty[2], file, i, want = 0;
    struct io_uring_sqe *sqe;

    memset(log, 0, sizeof(*log));
    ck_assert_int_eq(pd__sim_init(&ring, 64, &cfg, &e), 0);
    ck_assert_uint_eq(pd__sim_seed_of(e), seed);
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pipe(p[i]), 0);
        ck_assert_int_eq(write(p[i][1], "hello, world", 12), 12);
    }
    ck_assert_int_eq(pipe(empty), 0);
    file = mkstemp(path);
    ck_assert_int_ge(file, 0);
    unlink(path);

    for (i = 0; i < 8; i++, want++) {
        sqe = get_sqe(&ring);
        io_uring_prep_nop(sqe);
        sqe->user_data = 100 + (unsigned)i;
    }
    for (i = 0; i < 4; i++, want++) {
        sqe = get_sqe(&ring);
        io_uring_prep_read(sqe, p[i][0], buf[i], sizeof(buf[i]), 0);
        sqe->user_data = 200 + (unsigned)i;
    }
    sqe = get_sqe(&ring);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&t30, 0, 0);
    sqe->user_data = 300;
    sqe = get_sqe(&ring);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&t10, 0, 0);
    sqe->user_data = 301;
    sqe = get_sqe(&ring);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&t10, 0, 0);
    sqe->user_data = 302;
    sqe = get_sqe(&ring);
    io_uring_prep_cancel64(sqe, 300, 0);
    sqe->user_data = 303;
    want += 4;
    sqe = get_sqe(&ring);
    io_uring_prep_read(sqe, empty[0], empty_buf, sizeof(empty_buf), 0);
    sqe->user_data = 400;
    sqe->flags |= IOSQE_IO_LINK;
    sqe = get_sqe(&ring);
    io_uring_prep_link_timeout(sqe, (struct __kernel_timespec *)&t5, 0);
    sqe->user_data = 401;
    sqe = get_sqe(&ring);
    io_uring_prep_write(sqe, file, "data", 4, 0);
    sqe->user_data = 500;
    want += 3;

    while (log->n < want) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int ret = pd__engine_sim.enter(e, &ring, 1, NULL);

        ck_assert_int_ge(ret, 0);
        io_uring_for_each_cqe(&ring, head, cqe) {
            ck_assert_int_lt(log->n, LOG_MAX);
            log->c[log->n].ud = cqe->user_data;
            log->c[log->n].res = cqe->res;
            log->c[log->n].flags = cqe->flags;
            log->n++;
            n++;
        }
        io_uring_cq_advance(&ring, n);
    }
    ck_assert_int_eq(log->n, want);
    pd__engine_sim.exit(e, &ring);
    for (i = 0; i < 4; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
    close(empty[0]);
    close(empty[1]);
    close(file);
}

static int same_log(const slog *a, const slog *b)
{
    int i;

    if (a->n != b->n)
        return 0;
    for (i = 0; i < a->n; i++)
        if (a->c[i].ud != b->c[i].ud || a->c[i].res != b->c[i].res ||
            a->c[i].flags != b->c[i].flags)
            return 0;
    return 1;
}

static int same_order(const slog *a, const slog *b)
{
    int i;

    for (i = 0; i < a->n && i < b->n; i++)
        if (a->c[i].ud != b->c[i].ud)
            return 0;
    return a->n == b->n;
}

/* A seed replays its run: the same completions, in the same order, with the same results. */
START_TEST(same_seed_same_completions)
{
    static slog a, b;
    uint64_t seed;

    /* Faults are on for this test, whatever the environment says. */
    unsetenv("PD_SIM_FAULTS");
    for (seed = 1; seed <= 20; seed++) {
        workload(seed, 0, &a);
        workload(seed, 0, &b);
        ck_assert_msg(same_log(&a, &b), "seed %llu: two runs differ",
                      (unsigned long long)seed);
        workload(seed, PD_SIM_NO_FAULTS, &a);
        workload(seed, PD_SIM_NO_FAULTS, &b);
        ck_assert_msg(same_log(&a, &b), "seed %llu without faults: two runs differ",
                      (unsigned long long)seed);
    }
}
END_TEST

/* Ten seeds give several orders of the completions that may come in either order. */
START_TEST(ten_seeds_several_orders)
{
    static slog logs[10];
    int i, j, distinct = 0;

    for (i = 0; i < 10; i++) {
        workload((uint64_t)i + 1, PD_SIM_NO_FAULTS, &logs[i]);
        for (j = 0; j < i; j++)
            if (same_order(&logs[i], &logs[j]))
                break;
        distinct += j == i;
    }
    ck_assert_int_ge(distinct, 5);
}
END_TEST

/*
 * Whatever the order, what must keep its order does: a timeout of 10 ms
 * fires before one of 30 ms could (that one is cancelled, and its
 * -ECANCELED comes after the cancel's own completion), and a linked
 * timeout's -ETIME comes after its read's -ECANCELED.
 */
START_TEST(orders_stay_legal)
{
    static slog l;
    uint64_t seed;

    /* Faults are on for this test, whatever the environment says. */
    unsetenv("PD_SIM_FAULTS");
    for (seed = 1; seed <= 50; seed++) {
        int i, at_cancel = -1, at_cancelled = -1, at_read = -1, at_lt = -1;

        workload(seed, 0, &l);
        for (i = 0; i < l.n; i++) {
            switch (l.c[i].ud) {
            case 300:
                ck_assert_int_eq(l.c[i].res, -ECANCELED);
                at_cancelled = i;
                break;
            case 303:
                ck_assert_int_eq(l.c[i].res, 0);
                at_cancel = i;
                break;
            case 301:
            case 302:
                ck_assert_int_eq(l.c[i].res, -ETIME);
                break;
            case 400:
                ck_assert_int_eq(l.c[i].res, -ECANCELED);
                at_read = i;
                break;
            case 401:
                ck_assert_int_eq(l.c[i].res, -ETIME);
                at_lt = i;
                break;
            case 500:
                ck_assert(l.c[i].res == 4 || l.c[i].res == -EIO);
                break;
            default:
                break;
            }
        }
        ck_assert_int_lt(at_cancel, at_cancelled);
        ck_assert_int_lt(at_read, at_lt);
    }
}
END_TEST

/*
 * Two tasks spawned A then B: under some seed B completes first, under
 * some A does (the simulator is not FIFO, nor LIFO). Their nops complete
 * in the same turns unless the seed delays one.
 */
START_TEST(b_completes_before_a_under_some_seed)
{
    int b_first = 0, a_first = 0;
    uint64_t seed;

    /* Faults are on for this test, whatever the environment says. */
    unsetenv("PD_SIM_FAULTS");
    for (seed = 1; seed <= 64 && !(b_first && a_first); seed++) {
        pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_seed = seed };
        pd_runtime *rt;
        pd_task *a, *b;

        ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
        ck_assert_str_eq(pd_runtime_engine(rt), "sim");
        a = nops_spawn(rt, 3);
        b = nops_spawn(rt, 3);
        ck_assert(a != NULL && b != NULL);
        while (pd_task_state(a) != PD_TASK_DONE && pd_task_state(b) != PD_TASK_DONE)
            ck_assert_int_ge(pd_run_once(rt, 1), 0);
        if (pd_task_state(b) == PD_TASK_DONE && pd_task_state(a) != PD_TASK_DONE)
            b_first = 1;
        if (pd_task_state(a) == PD_TASK_DONE && pd_task_state(b) != PD_TASK_DONE)
            a_first = 1;
        ck_assert_int_eq(pd_run(rt), 0);
        pd_task_release(a);
        pd_task_release(b);
        pd_runtime_free(rt);
    }
    ck_assert_msg(b_first, "no seed in 1..64 completed B before A");
    ck_assert_msg(a_first, "no seed in 1..64 completed A before B");
}
END_TEST

/*
 * A one-hour sleep completes at once: pd_clock_ms says an hour passed
 * (exactly: nothing else ran), while the real clock moved far less than
 * the hour (bounded at 30 s, generously, under any load).
 */
START_TEST(one_hour_timeout_completes_at_once)
{
    pd_config cfg = { .engine = PD_ENGINE_SIM };
    long long v0, r0 = real_ms();
    pd_runtime *rt;
    pd_task *t;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    v0 = pd_clock_ms();
    t = sleep_ms_spawn(rt, 3600000);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_ge(pd_clock_ms() - v0, 3600000);
    ck_assert_int_lt(real_ms() - r0, 30000);
    pd_task_release(t);
    pd_runtime_free(rt);
    /* With the runtime gone, pd_clock_ms is CLOCK_MONOTONIC again. */
    ck_assert_int_lt(pd_clock_ms() - real_ms(), 1000);
}
END_TEST

/*
 * A multishot poll on a socket whose data the program leaves there, and a
 * one-hour timeout: with no new wakeup of the socket, the poll fires once
 * and then again in each of the next PD__SIM_REFIRES enters (the program
 * may have drained and refilled it with its own read(2) and write(2)),
 * then waits for virtual time to move, and the timeout fires in the very
 * next enter. Were the poll to fire again in every enter while its fd
 * stays ready, every enter would have a completion and the clock, which
 * moves only when nothing else can, would never reach the hour.
 */
START_TEST(ready_multishot_poll_lets_time_reach_a_timer)
{
    static const struct __kernel_timespec hour = { 3600, 0 };
    pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_flags = PD_SIM_NO_FAULTS | PD_SIM_NO_QUIET };
    struct io_uring ring;
    struct io_uring_sqe *sqe;
    pd__engine *e;
    int sv[2], polls = 0, timeouts = 0, enters;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    ck_assert_int_eq(pd__sim_init(&ring, 8, &cfg, &e), 0);
    sqe = get_sqe(&ring);
    io_uring_prep_poll_multishot(sqe, sv[0], POLLIN);
    sqe->user_data = 1;
    sqe = get_sqe(&ring);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&hour, 0, 0);
    sqe->user_data = 2;
    for (enters = 0; enters < 1000 && timeouts == 0; enters++) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        ck_assert_int_ge(pd__engine_sim.enter(e, &ring, 1, NULL), 0);
        io_uring_for_each_cqe(&ring, head, cqe) {
            if (cqe->user_data == 1) {
                ck_assert_int_eq(cqe->res, POLLIN);
                polls++;
            } else {
                ck_assert_int_eq(cqe->res, -ETIME);
                timeouts++;
            }
            n++;
        }
        io_uring_cq_advance(&ring, n);
    }
    ck_assert_msg(timeouts == 1, "the hour never passed: %d polls in %d enters", polls, enters);
    ck_assert_int_eq(polls, PD__SIM_REFIRES + 1);
    ck_assert_int_eq(enters, PD__SIM_REFIRES + 2);
    pd__engine_sim.exit(e, &ring);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/*
 * The same poll and one-hour timeout, but the program reads each byte the
 * poll announces and its peer writes a new one, as on a live stream: each
 * write wakes the socket, so the poll fires in every enter, as the kernel
 * fires it on every wakeup, and the hour never passes (virtual time moves
 * only when nothing else can, and the stream always has something).
 * Taking the stream for data left there, the simulator fired the timeout
 * after PD__SIM_REFIRES + 1 polls. Once the stream stops, the data left
 * there lets the hour pass as in ready_multishot_poll_lets_time_reach_a_timer.
 */
START_TEST(streaming_multishot_poll_keeps_a_timer_pending)
{
    static const struct __kernel_timespec hour = { 3600, 0 };
    pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_flags = PD_SIM_NO_FAULTS | PD_SIM_NO_QUIET };
    struct io_uring ring;
    struct io_uring_sqe *sqe;
    pd__engine *e;
    int sv[2], polls = 0, timeouts = 0, enters;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    ck_assert_int_eq(pd__sim_init(&ring, 8, &cfg, &e), 0);
    sqe = get_sqe(&ring);
    io_uring_prep_poll_multishot(sqe, sv[0], POLLIN);
    sqe->user_data = 1;
    sqe = get_sqe(&ring);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&hour, 0, 0);
    sqe->user_data = 2;
    for (enters = 0; enters < 1000 && timeouts == 0; enters++) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        char c;

        ck_assert_int_ge(pd__engine_sim.enter(e, &ring, 1, NULL), 0);
        io_uring_for_each_cqe(&ring, head, cqe) {
            if (cqe->user_data == 1) {
                ck_assert_int_eq(cqe->res, POLLIN);
                ck_assert_int_eq(read(sv[0], &c, 1), 1);
                ck_assert_int_eq(write(sv[1], "y", 1), 1);
                polls++;
            } else {
                timeouts++;
            }
            n++;
        }
        io_uring_cq_advance(&ring, n);
    }
    ck_assert_msg(timeouts == 0, "the hour passed while data kept coming: %d polls in %d enters",
                  polls, enters);
    ck_assert_int_eq(polls, 1000);
    /*
     * The stream stops, its last byte left there: the poll fires on the
     * last write, then PD__SIM_REFIRES times more, as from the start.
     */
    for (polls = 0, enters = 0; enters < 1000 && timeouts == 0; enters++) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        ck_assert_int_ge(pd__engine_sim.enter(e, &ring, 1, NULL), 0);
        io_uring_for_each_cqe(&ring, head, cqe) {
            if (cqe->user_data == 1)
                polls++;
            else
                timeouts++;
            n++;
        }
        io_uring_cq_advance(&ring, n);
    }
    ck_assert_int_eq(timeouts, 1);
    ck_assert_int_eq(polls, PD__SIM_REFIRES + 1);
    pd__engine_sim.exit(e, &ring);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* Enters the simulator `enters` times; counts the completions of ud 1 and the others. */
static void sim_enters(pd__engine *e, struct io_uring *ring, int enters, int *polls, int *others)
{
    while (enters-- > 0) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        ck_assert_int_ge(pd__engine_sim.enter(e, ring, 1, NULL), 0);
        io_uring_for_each_cqe(ring, head, cqe) {
            if (cqe->user_data == 1)
                (*polls)++;
            else
                (*others)++;
            n++;
        }
        io_uring_cq_advance(ring, n);
    }
}

/*
 * A multishot poll on data left there that fired PD__SIM_REFIRES + 1 times
 * waits for virtual time; a new byte written then (a wakeup) makes it fire
 * in the next enter, as the kernel's fires on it, before the one-hour
 * timeout, and it fires PD__SIM_REFIRES times more before the timeout.
 */
START_TEST(waiting_multishot_poll_fires_on_a_wakeup)
{
    static const struct __kernel_timespec hour = { 3600, 0 };
    pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_flags = PD_SIM_NO_FAULTS | PD_SIM_NO_QUIET };
    struct io_uring ring;
    struct io_uring_sqe *sqe;
    pd__engine *e;
    int sv[2], polls = 0, timeouts = 0;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    ck_assert_int_eq(pd__sim_init(&ring, 8, &cfg, &e), 0);
    sqe = get_sqe(&ring);
    io_uring_prep_poll_multishot(sqe, sv[0], POLLIN);
    sqe->user_data = 1;
    sqe = get_sqe(&ring);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&hour, 0, 0);
    sqe->user_data = 2;
    sim_enters(e, &ring, PD__SIM_REFIRES + 1, &polls, &timeouts);
    ck_assert_int_eq(polls, PD__SIM_REFIRES + 1);
    ck_assert_int_eq(timeouts, 0);
    ck_assert_int_eq(write(sv[1], "y", 1), 1);
    sim_enters(e, &ring, 1, &polls, &timeouts);
    ck_assert_msg(polls == PD__SIM_REFIRES + 2 && timeouts == 0,
                  "a wakeup did not make the poll fire: %d polls, %d timeouts", polls, timeouts);
    sim_enters(e, &ring, PD__SIM_REFIRES + 1, &polls, &timeouts);
    ck_assert_int_eq(polls, 2 * PD__SIM_REFIRES + 2);
    ck_assert_int_eq(timeouts, 1);
    pd__engine_sim.exit(e, &ring);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/*
 * A shutdown deadline under the simulator is exact: a task whose teardown
 * waits for good on a pipe is forced when the virtual clock reaches the
 * deadline, not a millisecond later, and the deadline's wait took no real
 * time to speak of.
 */
START_TEST(shutdown_deadline_is_exact)
{
    pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_flags = PD_SIM_NO_QUIET };
    int in[2], hang[2], bye[2];
    long long v0;
    pd_runtime *rt;
    pd_stats st;
    pd_task *t;

    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(hang), 0);
    ck_assert_int_eq(pipe(bye), 0);
    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    t = stuck_bye_spawn(rt, in[0], hang[0], bye[1]);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    v0 = pd_clock_ms();
    ck_assert_int_eq(pd_shutdown_deadline(rt, 1500), 0);
    ck_assert_int_eq(pd_clock_ms() - v0, 1500);
    pd_runtime_stats(rt, &st);
    ck_assert_uint_eq(st.tasks_forced, 1);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    pd_task_release(t);
    pd_runtime_free(rt);
    close(in[0]);
    close(in[1]);
    close(hang[0]);
    close(hang[1]);
    close(bye[0]);
    close(bye[1]);
}
END_TEST

/*
 * A poll on a bad fd (negative, or not open) completes with -EBADF, as the
 * kernel refuses it, and does not wait for good: poll(2), which the
 * simulator checks readiness with, ignores a negative fd.
 */
START_TEST(poll_on_a_bad_fd_is_ebadf)
{
    pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_flags = PD_SIM_NO_FAULTS };
    struct io_uring ring;
    struct io_uring_cqe *cqe;
    struct io_uring_sqe *sqe;
    pd__engine *e;
    int bad[2] = { -1, 1000 }, i;

    ck_assert_int_eq(pd__sim_init(&ring, 8, &cfg, &e), 0);
    for (i = 0; i < 2; i++) {
        sqe = get_sqe(&ring);
        io_uring_prep_poll_add(sqe, bad[i], POLLIN);
        sqe->user_data = 7;
        ck_assert_int_eq(pd__engine_sim.enter(e, &ring, 1, NULL), 1);
        ck_assert_int_eq(io_uring_peek_cqe(&ring, &cqe), 0);
        ck_assert_int_eq(cqe->res, -EBADF);
        io_uring_cqe_seen(&ring, cqe);
    }
    pd__engine_sim.exit(e, &ring);
}
END_TEST

/*
 * The short transfers the simulator injects are ones the kernel makes: a
 * pipe write of PIPE_BUF bytes or less is atomic, and a read takes every
 * byte one such write put there, whatever the seed.
 */
START_TEST(no_short_transfer_on_small_pipe_writes)
{
    uint64_t seed;

    unsetenv("PD_SIM_FAULTS");
    for (seed = 1; seed <= 300; seed++) {
        pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_seed = seed };
        struct io_uring ring;
        struct io_uring_cqe *cqe;
        struct io_uring_sqe *sqe;
        pd__engine *e;
        char buf[16];
        int p[2], i;

        ck_assert_int_eq(pipe(p), 0);
        ck_assert_int_eq(pd__sim_init(&ring, 8, &cfg, &e), 0);
        for (i = 0; i < 2; i++) {
            sqe = get_sqe(&ring);
            if (i == 0)
                io_uring_prep_write(sqe, p[1], "hello", 5, 0);
            else
                io_uring_prep_read(sqe, p[0], buf, sizeof(buf), 0);
            sqe->user_data = (unsigned)i;
            ck_assert_int_ge(pd__engine_sim.enter(e, &ring, 1, NULL), 0);
            while (io_uring_peek_cqe(&ring, &cqe) != 0)
                ck_assert_int_ge(pd__engine_sim.enter(e, &ring, 1, NULL), 0);
            ck_assert_msg(cqe->res == 5, "seed %llu: %s of 5 bytes gave %d",
                          (unsigned long long)seed, i ? "read" : "write", cqe->res);
            io_uring_cqe_seen(&ring, cqe);
        }
        pd__engine_sim.exit(e, &ring);
        close(p[0]);
        close(p[1]);
    }
}
END_TEST

/* With faults on, some seeds inject faults; PD_SIM_FAULTS=0 and the flag turn them off. */
START_TEST(faults_follow_the_seed)
{
    static slog a, b;
    uint64_t seed;
    int differ = 0;

    /* Faults are on for this test, whatever the environment says. */
    unsetenv("PD_SIM_FAULTS");
    for (seed = 1; seed <= 20; seed++) {
        workload(seed, 0, &a);
        workload(seed, PD_SIM_NO_FAULTS, &b);
        differ += !same_log(&a, &b);
    }
    ck_assert_int_gt(differ, 0);
    setenv("PD_SIM_FAULTS", "0", 1);
    for (seed = 1; seed <= 20; seed++) {
        workload(seed, 0, &a);
        workload(seed, PD_SIM_NO_FAULTS, &b);
        ck_assert(same_log(&a, &b));
    }
    unsetenv("PD_SIM_FAULTS");
}
END_TEST

/*
 * The completion queue overflows as the kernel's does (IORING_FEAT_NODROP):
 * 40 nops, four per enter, none reaped, on a ring whose CQ holds 8. What
 * does not fit waits on the overflow list with IORING_SQ_CQ_OVERFLOW set;
 * on the seeds whose kernel refuses submissions meanwhile, an enter with
 * entries queued answers -EBUSY and consumes none of them, until a reap
 * makes room. Every completion arrives once, and the flag is clear at the
 * end. Over 16 seeds both kernels are seen.
 */
START_TEST(cq_overflow_keeps_every_completion)
{
    uint64_t seed;
    int busy_seeds = 0, calm_seeds = 0;

    unsetenv("PD_SIM_FAULTS");
    for (seed = 1; seed <= 16; seed++) {
        pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_seed = seed };
        struct io_uring ring;
        pd__engine *e;
        int seen[41] = { 0 }, got = 0, busied = 0, flagged = 0, i, j, ret;


        ck_assert_int_eq(pd__sim_init(&ring, 4, &cfg, &e), 0);
        for (i = 0; i < 10; i++) {
            unsigned head;

            for (j = 0; j < 4; j++) {
                struct io_uring_sqe *sqe = get_sqe(&ring);

                io_uring_prep_nop(sqe);
                sqe->user_data = (uint64_t)(i * 4 + j + 1);
            }
            head = ring.sq.sqe_head;
            while (ring.sq.sqe_head != ring.sq.sqe_tail) {
                ret = pd__engine_sim.enter(e, &ring, 0, NULL);
                if (ret != -EBUSY) {
                    /* Consumed (all, or as many as the seed let through). */
                    ck_assert_int_gt(ret, 0);
                    ck_assert_uint_eq(ring.sq.sqe_head - head, (unsigned)ret);
                    head = ring.sq.sqe_head;
                    continue;
                }
                struct io_uring_cqe *cqe;
                unsigned h, n = 0;

                /* Refused: nothing consumed, the CQ full, the flag set. */
                busied++;
                ck_assert_uint_eq(ring.sq.sqe_head, head);
                ck_assert_uint_eq(io_uring_cq_ready(&ring), 8);
                ck_assert(*ring.sq.kflags & IORING_SQ_CQ_OVERFLOW);
                io_uring_for_each_cqe(&ring, h, cqe) {
                    ck_assert_uint_le(cqe->user_data, 40);
                    seen[cqe->user_data]++;
                    n++;
                }
                io_uring_cq_advance(&ring, n);
                got += (int)n;
            }
            flagged |= !!(*ring.sq.kflags & IORING_SQ_CQ_OVERFLOW);
        }
        while (got < 40) {
            struct io_uring_cqe *cqe;
            unsigned h, n = 0;

            ck_assert_int_ge(pd__engine_sim.enter(e, &ring, 0, NULL), 0);
            io_uring_for_each_cqe(&ring, h, cqe) {
                ck_assert_uint_le(cqe->user_data, 40);
                seen[cqe->user_data]++;
                n++;
            }
            io_uring_cq_advance(&ring, n);
            got += (int)n;
        }
        for (i = 1; i <= 40; i++)
            ck_assert_msg(seen[i] == 1, "seed %llu: nop %d completed %d times",
                          (unsigned long long)seed, i, seen[i]);
        ck_assert_int_eq(got, 40);
        ck_assert(flagged);
        ck_assert(!(*ring.sq.kflags & IORING_SQ_CQ_OVERFLOW));
        busy_seeds += busied > 0;
        calm_seeds += busied == 0;
        pd__engine_sim.exit(e, &ring);
    }
    ck_assert_int_gt(busy_seeds, 0);
    ck_assert_int_gt(calm_seeds, 0);
}
END_TEST

/*
 * The overflow list outgrows its room from init (4096) without losing or
 * corrupting a completion: 5000 nops, four per enter, none reaped, on a
 * ring whose CQ holds 8, without faults. Each enter makes the room its
 * requests may need before it consumes them, so that posting never
 * allocates; every nop then arrives once.
 */
START_TEST(overflow_outgrows_its_initial_room)
{
    pd_config cfg = { .engine = PD_ENGINE_SIM, .sim_seed = 1, .sim_flags = PD_SIM_NO_FAULTS };
    struct io_uring ring;
    struct io_uring_cqe *cqe;
    pd__engine *e;
    static int seen[5001];
    unsigned h, n, got = 0;
    int i, j;

    ck_assert_int_eq(pd__sim_init(&ring, 4, &cfg, &e), 0);
    for (i = 0; i < 1250; i++) {
        for (j = 0; j < 4; j++) {
            struct io_uring_sqe *sqe = get_sqe(&ring);

            io_uring_prep_nop(sqe);
            sqe->user_data = (uint64_t)(i * 4 + j + 1);
        }
        ck_assert_int_eq(pd__engine_sim.enter(e, &ring, 0, NULL), 4);
    }
    ck_assert(*ring.sq.kflags & IORING_SQ_CQ_OVERFLOW);
    memset(seen, 0, sizeof(seen));
    while (got < 5000) {
        ck_assert_int_ge(pd__engine_sim.enter(e, &ring, 0, NULL), 0);
        n = 0;
        io_uring_for_each_cqe(&ring, h, cqe) {
            ck_assert(cqe->user_data >= 1 && cqe->user_data <= 5000);
            ck_assert_int_eq(seen[cqe->user_data]++, 0);
            ck_assert_int_eq(cqe->res, 0);
            n++;
        }
        got += n;
        ck_assert_uint_gt(n, 0);
        io_uring_cq_advance(&ring, n);
    }
    ck_assert_int_ge(pd__engine_sim.enter(e, &ring, 0, NULL), 0);
    ck_assert_uint_eq(io_uring_cq_ready(&ring), 0);
    ck_assert(!(*ring.sq.kflags & IORING_SQ_CQ_OVERFLOW));
    pd__engine_sim.exit(e, &ring);
}
END_TEST

/*
 * The runtime survives an overflowing completion queue: on a ring of 4
 * entries (a CQ of 8), 64 timers fire at one instant and each then makes a
 * nop, over 12 seeds. Every nop succeeds (no request fails with -EBUSY or
 * is lost), the queue overflowed on every seed, and some seeds' kernel
 * refused submissions meanwhile.
 */
START_TEST(runtime_survives_cq_overflow)
{
    uint64_t seed, busy_seeds = 0;

    unsetenv("PD_SIM_FAULTS");
    for (seed = 1; seed <= 12; seed++) {
        pd_config cfg = { .engine = PD_ENGINE_SIM, .entries = 4, .sim_seed = seed,
                          .sim_flags = PD_SIM_NO_QUIET };
        uint64_t overflowed, busied;
        pd_runtime *rt;
        long out = -1;

        ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
        ck_assert_int_eq(burst_block_on(rt, 64, 10, &out), 0);
        ck_assert_msg(out == 64, "seed %llu: %ld of 64 nops succeeded",
                      (unsigned long long)seed, out);
        pd__sim_overflows(rt, &overflowed, &busied);
        ck_assert_uint_gt(overflowed, 0);
        busy_seeds += busied > 0;
        pd_runtime_free(rt);
    }
    ck_assert_uint_gt(busy_seeds, 0);
}
END_TEST

/* Completions in rt's CQ, consumed without dispatching them, counted in *got. */
static void drain_raw(pd_runtime *rt, int *got)
{
    struct io_uring_cqe *cqe;
    unsigned h, n = 0;

    io_uring_for_each_cqe(&rt->ring, h, cqe)
        n++;
    io_uring_cq_advance(&rt->ring, n);
    *got += (int)n;
}

/*
 * The harness's wait hook (pd__ring_wait_cqe) waits, as io_uring's
 * io_uring_wait_cqe does, without failing on what it submits on the way:
 * with 20 timers fired at once into a CQ of 8, and the 8 reaped, the
 * simulator's entry flushes 8 more, cannot flush the last 4, and refuses
 * the nops queued meanwhile with -EBUSY (on the seeds whose kernel does):
 * the CQ holds completions, so the wait is over and returns 0.
 */
START_TEST(wait_hook_survives_an_overflow_refusal)
{
    static const struct __kernel_timespec ts = { 0, 10000000 };
    uint64_t seed, busy_seeds = 0;

    unsetenv("PD_SIM_FAULTS");
    for (seed = 1; seed <= 8; seed++) {
        pd_config cfg = { .engine = PD_ENGINE_SIM, .entries = 4, .sim_seed = seed,
                          .sim_flags = PD_SIM_NO_QUIET };
        uint64_t overflowed, busied;
        struct io_uring_sqe *sqe;
        pd_runtime *rt;
        int i, got = 0;

        ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
        for (i = 0; i < 20; i++) {
            while ((sqe = io_uring_get_sqe(&rt->ring)) == NULL)
                ck_assert_int_ge(pd__ring_submit(rt), 0);
            io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&ts, 0, 0);
            sqe->user_data = 1 + (uint64_t)i;
        }
        while (pd__sq_unsubmitted(rt) > 0)
            ck_assert_int_ge(pd__ring_submit(rt), 0);
        ck_assert_int_eq(pd__ring_wait_cqe(rt), 0);
        drain_raw(rt, &got);
        for (i = 0; i < 4; i++) {
            sqe = io_uring_get_sqe(&rt->ring);
            ck_assert_ptr_nonnull(sqe);
            io_uring_prep_nop(sqe);
            sqe->user_data = 100 + (uint64_t)i;
        }
        while (got < 24) {
            ck_assert_msg(pd__ring_wait_cqe(rt) == 0, "seed %llu: the wait failed",
                          (unsigned long long)seed);
            drain_raw(rt, &got);
        }
        ck_assert_int_eq(got, 24);
        pd__sim_overflows(rt, &overflowed, &busied);
        ck_assert_uint_gt(overflowed, 0);
        busy_seeds += busied > 0;
        pd_runtime_free(rt);
    }
    ck_assert_uint_gt(busy_seeds, 0);
}
END_TEST

/* --- the harness explores --- */

static void sleep_init(void *self, void *ctx)
{
    (void)ctx;
    sleep_ms_init(self, 3600000);
}

static void no_fixture(void *ctx);

static const pd_harness_case sleep_case = {
    .future = "sleep_ms", .vt = &sleep_ms_vtable, .has_teardown = 0, .ctx = NULL,
    .setup = no_fixture, .init = sleep_init, .cleanup = no_fixture,
};

static void no_fixture(void *ctx)
{
    (void)ctx;
}

static void fifo_init(void *self, void *ctx)
{
    (void)ctx;
    fifo_assume_init(self);
}

static const pd_harness_case fifo_case = {
    .future = "fifo_assume", .vt = &fifo_assume_vtable, .has_teardown = 0, .ctx = NULL,
    .setup = no_fixture, .init = fifo_init, .cleanup = no_fixture,
};

/*
 * A spec whose then assumes that two requests complete in submission
 * order (fifo_assume: two nops, io_uring posts them in order) is caught by
 * the explorer within 300 seeds: one posts the second nop first and the
 * future aborts. The test expects SIGABRT; the explorer names the seed and
 * the replay command on stderr.
 */
START_TEST(explorer_catches_a_then_that_assumes_submission_order)
{
    pd_harness_stats st;

    /* Faults are on for this test, whatever the environment says. */
    unsetenv("PD_SIM_FAULTS");
    pd_harness_explore(&fifo_case, 300, &st);
}
END_TEST

static void burst_case_init(void *self, void *ctx)
{
    (void)ctx;
    burst_init(self, 24, 10);
}

static void burst_after(void *ctx, const void *out)
{
    (void)ctx;
    if (out != NULL)
        ck_assert_int_eq(*(const long *)out, 24);
}

static const pd_harness_case burst_case = {
    .future = "burst", .vt = &burst_vtable, .has_teardown = 0, .ctx = NULL,
    .setup = no_fixture, .init = burst_case_init, .after = burst_after,
    .cleanup = no_fixture,
};

/*
 * The harness explores a future whose completions overflow the completion
 * queue (burst on a ring of 4 entries: 24 timers fire at once, then 24
 * nops), at every suspension point, by every path, with a completion
 * reaped at a time too: on the seeds whose kernel answers -EBUSY while it
 * overflows, the harness's own submissions are refused, and it must reap
 * and go on as the runtime does.
 */
START_TEST(explorer_survives_cq_overflow)
{
    static const pd_harness_opts opts = { .multishot = 1, .entries = 4 };
    pd_harness_stats st;

    unsetenv("PD_SIM_FAULTS");
    pd_harness_explore_with(&burst_case, &opts, 4, &st);
    ck_assert_int_eq(st.seeds, 4);
    ck_assert_int_ge(st.points, 2);
}
END_TEST

/* A write_all of 5 bytes to a temporary file: file writes are where -EIO is injected. */
struct wfile {
    char path[64];
    int fd;
};

static void wfile_setup(void *ctx)
{
    struct wfile *w = ctx;

    snprintf(w->path, sizeof(w->path), "/tmp/pd_sim_wfile_%d", (int)getpid());
    w->fd = open(w->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(w->fd, 0);
}

static void wfile_init(void *self, void *ctx)
{
    const struct wfile *w = ctx;

    write_all_init(self, w->fd, "hello", 5);
}

static void wfile_cleanup(void *ctx)
{
    struct wfile *w = ctx;

    close(w->fd);
    unlink(w->path);
}

static struct wfile wfile_ctx;

static const pd_harness_case wfile_case = {
    .future = "write_all", .vt = &write_all_vtable, .has_teardown = 0, .ctx = &wfile_ctx,
    .setup = wfile_setup, .init = wfile_init, .cleanup = wfile_cleanup,
};

/*
 * The explorer counts the destructions whose run had an I/O fault injected
 * (pd_harness_stats.faulted), over all its seeds: 100 seeds of a file
 * write inject -EIO (one write in 64) into some runs, not all.
 */
START_TEST(explorer_counts_faulted_runs)
{
    pd_harness_stats st;

    unsetenv("PD_SIM_FAULTS");
    pd_harness_explore(&wfile_case, 100, &st);
    ck_assert_int_eq(st.seeds, 100);
    ck_assert_int_gt(st.faulted, 0);
    ck_assert_int_lt(st.faulted, st.runs);
}
END_TEST

/* The explorer runs every seed it is asked for, and sums what it checked. */
START_TEST(explorer_runs_every_seed)
{
    pd_harness_stats st;

    pd_harness_explore(&sleep_case, 7, &st);
    ck_assert_int_eq(st.seeds, 7);
    ck_assert_int_ge(st.points, 1);
    ck_assert_int_ge(st.runs, 7 * 3);
}
END_TEST

Suite *pd_suite_engine_sim(void)
{
    Suite *s = suite_create("engine_sim");
    TCase *tc = tcase_create("sim");

    tcase_add_test(tc, same_seed_same_completions);
    tcase_add_test(tc, ten_seeds_several_orders);
    tcase_add_test(tc, orders_stay_legal);
    tcase_add_test(tc, b_completes_before_a_under_some_seed);
    tcase_add_test(tc, one_hour_timeout_completes_at_once);
    tcase_add_test(tc, shutdown_deadline_is_exact);
    tcase_add_test(tc, ready_multishot_poll_lets_time_reach_a_timer);
    tcase_add_test(tc, streaming_multishot_poll_keeps_a_timer_pending);
    tcase_add_test(tc, waiting_multishot_poll_fires_on_a_wakeup);
    tcase_add_test(tc, faults_follow_the_seed);
    tcase_add_test(tc, poll_on_a_bad_fd_is_ebadf);
    tcase_add_test(tc, no_short_transfer_on_small_pipe_writes);
    tcase_add_test(tc, cq_overflow_keeps_every_completion);
    tcase_add_test(tc, overflow_outgrows_its_initial_room);
    tcase_add_test(tc, runtime_survives_cq_overflow);
    tcase_add_test(tc, wait_hook_survives_an_overflow_refusal);
    tcase_set_timeout(tc, 120);
    tcase_set_tags(tc, PD_TEST_OWN_ENGINE);
    suite_add_tcase(s, tc);
    tc = tcase_create("explore");
    tcase_add_test_raise_signal(tc, explorer_catches_a_then_that_assumes_submission_order,
                                SIGABRT);
    tcase_add_test(tc, explorer_runs_every_seed);
    tcase_add_test(tc, explorer_survives_cq_overflow);
    tcase_add_test(tc, explorer_counts_faulted_runs);
    tcase_set_timeout(tc, 120);
    tcase_set_tags(tc, PD_TEST_OWN_ENGINE);
    suite_add_tcase(s, tc);
    return s;
}
