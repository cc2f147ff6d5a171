/*
 * Cross-runtime benchmarks for make bench: ping_pong, a wake round trip
 * between two threads, for polldrop and for the two raw transports it could
 * have been built on.
 *
 * polldrop's round trip is two hops of the hop relay (tests/specs/hop.yaml):
 * each hop is a task sent with hop_spawn_on to the other runtime, which
 * allocates the task, pushes it on the target's inbox and wakes the target,
 * whose turn starts it, polls it (it sends the next hop) and frees it. The
 * raw loops do only the wake: two rings, each thread waiting for its own
 * completion and then waking the other, by an eventfd write the other ring
 * reads, or by an IORING_OP_MSG_RING request submitted in the same
 * io_uring_enter as the wait.
 */
#define _GNU_SOURCE
#include "threads.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hop.h"
#include "pipe_read.h"

#define PING_ROUNDS 50000L

static double bt_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bt_die(const char *what, int err)
{
    fprintf(stderr, "bench: %s: %s\n", what, strerror(err));
    exit(1);
}

/* --- polldrop: the hop relay between two runtime threads --- */

typedef struct pp_worker {
    pthread_t tid;
    pd_runtime *rt;
    int keep[2];
    pthread_barrier_t *ready, *done;
    int ret;
} pp_worker;

static void *pp_worker_main(void *arg)
{
    pp_worker *w = arg;
    pd_task *keeper;
    int ret = pd_runtime_new(&w->rt, NULL);

    if (ret < 0)
        bt_die("pd_runtime_new", -ret);
    /* A read nobody satisfies keeps pd_run blocking until the shutdown. */
    keeper = pipe_read_spawn(w->rt, w->keep[0], -1);
    if (keeper == NULL)
        bt_die("pipe_read_spawn", ENOMEM);
    pthread_barrier_wait(w->ready);
    w->ret = pd_run(w->rt);
    pd_task_release(keeper);
    /* Both runs are over: no hop can be on its way to this runtime. */
    pthread_barrier_wait(w->done);
    pd_runtime_free(w->rt);
    return NULL;
}

double pd_ping_pong(void)
{
    pp_worker w[2];
    pthread_barrier_t ready, done;
    hop_ctx ctx;
    double t0, dt;
    int i;

    memset(w, 0, sizeof(w));
    memset(&ctx, 0, sizeof(ctx));
    pthread_barrier_init(&ready, NULL, 3);
    pthread_barrier_init(&done, NULL, 2);
    for (i = 0; i < 2; i++) {
        if (pipe(w[i].keep) < 0)
            bt_die("pipe", errno);
        w[i].ready = &ready;
        w[i].done = &done;
        pthread_create(&w[i].tid, NULL, pp_worker_main, &w[i]);
    }
    pthread_barrier_wait(&ready);
    for (i = 0; i < 2; i++) {
        ctx.rt[i] = w[i].rt;
        ctx.owner[i] = w[i].tid;
    }
    t0 = bt_now();
    if (hop_spawn_on(w[0].rt, w[1].rt, 2 * PING_ROUNDS, &ctx) < 0)
        bt_die("hop_spawn_on", ENOMEM);
    for (i = 0; i < 2; i++)
        pthread_join(w[i].tid, NULL);
    dt = bt_now() - t0;
    if (atomic_load(&ctx.finished) != 1 || atomic_load(&ctx.wrong_thread) != 0 ||
        w[0].ret < 0 || w[1].ret < 0)
        bt_die("hop relay", EIO);
    for (i = 0; i < 2; i++) {
        close(w[i].keep[0]);
        close(w[i].keep[1]);
    }
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&done);
    return (double)PING_ROUNDS / dt;
}

/* --- raw: two rings, the wake only --- */

typedef struct raw_pp {
    struct io_uring ring[2];
    int efd[2];
    int msg;                   /* MSG_RING rather than eventfd */
    pthread_barrier_t ready, done;
} raw_pp;

typedef struct raw_side {
    raw_pp *pp;
    int me;
} raw_side;

static void raw_pp_arm(raw_pp *pp, int me, uint64_t *buf)
{
    struct io_uring_sqe *s = io_uring_get_sqe(&pp->ring[me]);

    io_uring_prep_read(s, pp->efd[me], buf, sizeof(*buf), 0);
}

/* Waits for one completion on this side's ring and reaps it. */
static void raw_pp_wait(raw_pp *pp, int me)
{
    struct io_uring_cqe *cqe;

    io_uring_submit_and_wait(&pp->ring[me], 1);
    while (io_uring_peek_cqe(&pp->ring[me], &cqe) == 0)
        io_uring_cqe_seen(&pp->ring[me], cqe);
}

static void raw_pp_wake(raw_pp *pp, int me)
{
    if (pp->msg) {
        struct io_uring_sqe *s = io_uring_get_sqe(&pp->ring[me]);

        /* Queued now, submitted by the next wait's io_uring_enter. */
        io_uring_prep_msg_ring(s, pp->ring[!me].ring_fd, 0, 1, 0);
        s->flags |= IOSQE_CQE_SKIP_SUCCESS;
    } else {
        uint64_t one = 1;

        if (write(pp->efd[!me], &one, sizeof(one)) < 0)
            bt_die("eventfd write", errno);
    }
}

static void *raw_pp_main(void *arg)
{
    raw_side *side = arg;
    raw_pp *pp = side->pp;
    int me = side->me, ret;
    uint64_t buf;
    long i;

    ret = io_uring_queue_init(64, &pp->ring[me],
                              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (ret < 0)
        bt_die("io_uring_queue_init", -ret);
    if (!pp->msg)
        raw_pp_arm(pp, me, &buf);
    pthread_barrier_wait(&pp->ready);
    for (i = 0; i < PING_ROUNDS; i++) {
        if (me == 0)
            raw_pp_wake(pp, me);
        raw_pp_wait(pp, me);
        if (!pp->msg)
            raw_pp_arm(pp, me, &buf);
        if (me == 1)
            raw_pp_wake(pp, me);
    }
    if (pp->msg)
        io_uring_submit(&pp->ring[me]); /* side 1's last wake */
    /* Neither ring goes before the other has its last wake. */
    pthread_barrier_wait(&pp->done);
    io_uring_queue_exit(&pp->ring[me]);
    return NULL;
}

static double raw_ping_pong(int msg)
{
    raw_pp pp;
    raw_side side[2];
    pthread_t tid[2];
    double t0, dt;
    int i;

    memset(&pp, 0, sizeof(pp));
    pp.msg = msg;
    for (i = 0; i < 2; i++) {
        pp.efd[i] = eventfd(0, EFD_CLOEXEC);
        if (pp.efd[i] < 0)
            bt_die("eventfd", errno);
    }
    pthread_barrier_init(&pp.ready, NULL, 3);
    pthread_barrier_init(&pp.done, NULL, 2);
    for (i = 0; i < 2; i++) {
        side[i] = (raw_side){ &pp, i };
        pthread_create(&tid[i], NULL, raw_pp_main, &side[i]);
    }
    pthread_barrier_wait(&pp.ready);
    t0 = bt_now();
    for (i = 0; i < 2; i++)
        pthread_join(tid[i], NULL);
    dt = bt_now() - t0;
    for (i = 0; i < 2; i++)
        close(pp.efd[i]);
    pthread_barrier_destroy(&pp.ready);
    pthread_barrier_destroy(&pp.done);
    return (double)PING_ROUNDS / dt;
}

double raw_ping_pong_eventfd(void)
{
    return raw_ping_pong(0);
}

double raw_ping_pong_msg_ring(void)
{
    return raw_ping_pong(1);
}
