/*
 * The threads suite: one runtime per thread, and the calls any thread may
 * make on any runtime -- pd_runtime_wake, pd_shutdown_remote(_deadline) and
 * a send future's F_spawn_on.
 *
 * A runtime thread here creates its runtime, spawns a keeper (a pipe read
 * that is never written, so that pd_run has a live task and blocks instead
 * of returning), publishes the runtime, and runs it. No test asserts a
 * duration: threads wait for each other through counters and joins.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hop.h"
#include "pipe_read.h"
#include "stuck_bye.h"
#include "tally.h"
#include "testutil.h"

typedef struct worker {
    pthread_t tid;
    pd_runtime *rt;
    int keep[2];           /* the keeper's pipe */
    int hang[2], bye[2];   /* for stuck_bye tasks, when nstuck > 0 */
    int nstuck;
    pthread_barrier_t *ready, *done;
    atomic_long turns;     /* returns from pd_run_once (mode loop) */
    atomic_int stop;
    int loop;              /* pd_run_once(rt, 1) until stop, instead of pd_run */
    int run_ret;
    pd_stats stats;        /* read by the owner after its run */
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    pd_task *keeper, *stuck[16];
    int i;

    /* Failures here are reported by the test through run_ret and stats. */
    if (pd_runtime_new(&w->rt, NULL) < 0) {
        w->run_ret = -1;
        pthread_barrier_wait(w->ready);
        return NULL;
    }
    keeper = pipe_read_spawn(w->rt, w->keep[0], -1);
    for (i = 0; i < w->nstuck; i++)
        stuck[i] = stuck_bye_spawn(w->rt, w->keep[0], w->hang[0], w->bye[1]);
    pthread_barrier_wait(w->ready);
    if (w->loop) {
        while (!atomic_load(&w->stop)) {
            pd_run_once(w->rt, 1);
            atomic_fetch_add(&w->turns, 1);
        }
        w->run_ret = pd_shutdown(w->rt);
    } else {
        w->run_ret = pd_run(w->rt);
    }
    pd_runtime_stats(w->rt, &w->stats);
    pd_task_release(keeper);
    for (i = 0; i < w->nstuck; i++)
        pd_task_release(stuck[i]);
    /* Free only once no other thread can call into this runtime. */
    if (w->done)
        pthread_barrier_wait(w->done);
    pd_runtime_free(w->rt);
    return NULL;
}

static void worker_pipes(worker *w)
{
    ck_assert_int_eq(pipe2(w->keep, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(w->hang, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(w->bye, O_CLOEXEC | O_NONBLOCK), 0);
}

static void worker_close(worker *w)
{
    int i;

    for (i = 0; i < 2; i++) {
        close(w->keep[i]);
        close(w->hang[i]);
        close(w->bye[i]);
    }
}

/* Starts n workers and waits until each has published its runtime. */
static void start_workers(worker *w, int n, pthread_barrier_t *ready,
                          pthread_barrier_t *done)
{
    int i;

    pthread_barrier_init(ready, NULL, (unsigned)n + 1);
    if (done)
        pthread_barrier_init(done, NULL, (unsigned)n);
    for (i = 0; i < n; i++) {
        w[i].ready = ready;
        w[i].done = done;
        ck_assert_int_eq(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
    }
    pthread_barrier_wait(ready);
    for (i = 0; i < n; i++)
        ck_assert_int_ge(w[i].run_ret, 0);
}

START_TEST(spawn_on_relays_between_two_runtimes)
{
    enum { HOPS = 2000 };
    worker w[2];
    pthread_barrier_t ready, done;
    hop_ctx ctx;
    int fds = pd_test_fd_count(), i;

    memset(w, 0, sizeof(w));
    memset(&ctx, 0, sizeof(ctx));
    for (i = 0; i < 2; i++)
        worker_pipes(&w[i]);
    start_workers(w, 2, &ready, &done);
    for (i = 0; i < 2; i++) {
        ctx.rt[i] = w[i].rt;
        ctx.owner[i] = w[i].tid;
    }
    /* Sent from this thread, which runs no runtime: the eventfd wake. */
    ck_assert_int_eq(hop_spawn_on(w[0].rt, w[1].rt, HOPS, &ctx), 0);
    for (i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(w[i].tid, NULL), 0);
    ck_assert_int_eq(atomic_load(&ctx.finished), 1);
    ck_assert_int_eq(atomic_load(&ctx.drops), HOPS + 1);
    ck_assert_int_eq(atomic_load(&ctx.wrong_thread), 0);
    for (i = 0; i < 2; i++) {
        ck_assert_int_eq(w[i].run_ret, 0);
        ck_assert_uint_eq(w[i].stats.inflight_ops, 0);
        ck_assert_uint_eq(w[i].stats.live_tasks, 0);
        worker_close(&w[i]);
    }
    /* Every runtime's eventfd and ring were closed with it. */
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

typedef struct sender {
    pthread_t tid;
    pd_runtime *target;
    atomic_long *drops, *teardowns;
    int n, failed;
} sender;

static void *sender_main(void *arg)
{
    sender *s = arg;
    int i;

    for (i = 0; i < s->n; i++)
        if (tally_spawn_on(s->target, s->drops, s->teardowns) != 0)
            s->failed++;
    return NULL;
}

START_TEST(many_senders_one_inbox)
{
    enum { SENDERS = 4, EACH = 500 };
    worker w;
    sender s[SENDERS];
    pthread_barrier_t ready;
    atomic_long drops = 0, teardowns = 0;
    int i;

    memset(&w, 0, sizeof(w));
    worker_pipes(&w);
    w.loop = 1;
    start_workers(&w, 1, &ready, NULL);
    for (i = 0; i < SENDERS; i++) {
        s[i] = (sender){ .target = w.rt, .drops = &drops, .teardowns = &teardowns,
                         .n = EACH };
        ck_assert_int_eq(pthread_create(&s[i].tid, NULL, sender_main, &s[i]), 0);
    }
    for (i = 0; i < SENDERS; i++) {
        ck_assert_int_eq(pthread_join(s[i].tid, NULL), 0);
        ck_assert_int_eq(s[i].failed, 0);
    }
    /* Every task sent runs to its end on the worker, each dropped once. */
    while (atomic_load(&drops) < SENDERS * EACH)
        sched_yield();
    atomic_store(&w.stop, 1);
    ck_assert_int_eq(pd_runtime_wake(w.rt), 0);
    ck_assert_int_eq(pthread_join(w.tid, NULL), 0);
    ck_assert_int_eq(w.run_ret, 0);
    ck_assert_int_eq(atomic_load(&drops), SENDERS * EACH);
    ck_assert_int_eq(atomic_load(&teardowns), SENDERS * EACH);
    ck_assert_uint_eq(w.stats.inflight_ops, 0);
    ck_assert_uint_eq(w.stats.live_tasks, 0);
    worker_close(&w);
}
END_TEST

START_TEST(wake_ends_a_blocking_wait)
{
    worker w;
    pthread_barrier_t ready;
    long before;
    int i;

    memset(&w, 0, sizeof(w));
    worker_pipes(&w);
    w.loop = 1;
    start_workers(&w, 1, &ready, NULL);
    /*
     * The worker's only task waits on a pipe nobody writes: each wake is
     * what ends its blocking turn. Wakes sent before it looked are merged.
     */
    for (i = 0; i < 3; i++) {
        before = atomic_load(&w.turns);
        ck_assert_int_eq(pd_runtime_wake(w.rt), 0);
        ck_assert_int_eq(pd_runtime_wake(w.rt), 0);
        while (atomic_load(&w.turns) == before)
            sched_yield();
    }
    atomic_store(&w.stop, 1);
    ck_assert_int_eq(pd_runtime_wake(w.rt), 0);
    ck_assert_int_eq(pthread_join(w.tid, NULL), 0);
    ck_assert_int_eq(w.run_ret, 0);
    ck_assert_uint_eq(w.stats.inflight_ops, 0);
    /* The keeper's read was cancelled, not satisfied. */
    ck_assert_int_eq(write(w.keep[1], "k", 1), 1);
    ck_assert_int_eq(fcntl(w.keep[0], F_SETFL, O_NONBLOCK), 0);
    {
        char c;

        ck_assert_int_eq(read(w.keep[0], &c, 1), 1);
    }
    worker_close(&w);
}
END_TEST

/*
 * A wake sent after the previous one was read, but before the turn that
 * reads the inbox, still ends the next blocking wait: it is not merged
 * into the wake already consumed. Deterministic, on one thread: the keeper
 * waits on a pipe nobody writes, so only the wake can end the wait (a
 * regression hangs there, and Check's timeout names this test).
 */
START_TEST(wake_after_a_read_wake_is_not_merged)
{
    pd_runtime *rt = pd_test_rt();
    int keep[2];
    pd_task *keeper;

    ck_assert_int_eq(pipe2(keep, O_CLOEXEC), 0);
    keeper = pipe_read_spawn(rt, keep[0], -1);
    ck_assert_int_ge(pd_run_once(rt, 0), 0); /* the keeper's read and the wake's are armed */
    ck_assert_int_eq(pd_runtime_wake(rt), 0);
    ck_assert_int_ge(pd_run_once(rt, 1), 0); /* the wake's read completes */
    ck_assert_int_eq(pd_runtime_wake(rt), 0);
    /* Reads the inbox, then waits: the second wake must end that wait. */
    ck_assert_int_ge(pd_run_once(rt, 1), 0);
    ck_assert_ptr_null(pd_task_output(keeper));
    pd_task_cancel(keeper);
    ck_assert_int_eq(pd_run(rt), 0);
    pd_task_release(keeper);
    pd_runtime_free(rt);
    close(keep[0]);
    close(keep[1]);
}
END_TEST

static int pipe_bytes(int fd)
{
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));

    return n < 0 ? 0 : (int)n;
}

START_TEST(shutdown_remote_runs_every_teardown)
{
    worker w;
    pthread_barrier_t ready;

    memset(&w, 0, sizeof(w));
    worker_pipes(&w);
    w.nstuck = 8;
    close(w.hang[0]); /* no hang: teardown says bye at once */
    w.hang[0] = -1;
    start_workers(&w, 1, &ready, NULL);
    ck_assert_int_eq(pd_shutdown_remote(w.rt), 0);
    ck_assert_int_eq(pthread_join(w.tid, NULL), 0);
    ck_assert_int_eq(w.run_ret, 0);
    ck_assert_uint_eq(w.stats.tasks_forced, 0);
    ck_assert_uint_eq(w.stats.inflight_ops, 0);
    ck_assert_int_eq(pipe_bytes(w.bye[0]), 8 * 3);
    worker_close(&w);
}
END_TEST

START_TEST(shutdown_remote_deadline_forces_stuck_teardowns)
{
    worker w;
    pthread_barrier_t ready;

    memset(&w, 0, sizeof(w));
    worker_pipes(&w);
    w.nstuck = 8;
    start_workers(&w, 1, &ready, NULL);
    ck_assert_int_eq(pd_shutdown_remote_deadline(w.rt, -1), -EINVAL);
    ck_assert_int_eq(pd_shutdown_remote_deadline(w.rt, 30), 0);
    ck_assert_int_eq(pthread_join(w.tid, NULL), 0);
    ck_assert_int_eq(w.run_ret, 0);
    /* Every stuck_bye hangs in teardown: all forced, none said bye. The
       keeper's teardown is quick, but a loaded machine may not run it
       within the 30 ms, so it may be forced too. */
    ck_assert_uint_ge(w.stats.tasks_forced, 8);
    ck_assert_uint_le(w.stats.tasks_forced, 9);
    ck_assert_uint_eq(w.stats.inflight_ops, 0);
    ck_assert_uint_eq(w.stats.live_tasks, 0);
    ck_assert_int_eq(pipe_bytes(w.bye[0]), 0);
    worker_close(&w);
}
END_TEST

START_TEST(sent_tasks_never_started_are_dropped_by_free)
{
    pd_runtime *rt = pd_test_rt();
    atomic_long drops = 0, teardowns = 0;
    int fds, rt_fds, i;

    pd_test_rec_start();
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(tally_spawn_on(rt, &drops, &teardowns), 0);
    ck_assert_int_eq(pd_test_rec_count("tally", PD_TRACE_INIT), 3);
    fds = pd_test_fd_count();
    rt_fds = pd_test_rt_fds(rt);
    pd_runtime_free(rt);
    /* Initialised on this thread, never started: sync-dropped, once each. */
    ck_assert_int_eq(atomic_load(&drops), 3);
    ck_assert_int_eq(atomic_load(&teardowns), 0);
    ck_assert_int_eq(pd_test_rec_count("tally", PD_TRACE_DROP), 3);
    ck_assert_int_eq(pd_rec.nlive, 0);
    /* The ring and the wake eventfd went with the runtime. */
    ck_assert_int_eq(pd_test_fd_count(), fds - rt_fds);
    pd_set_trace(NULL, NULL);
}
END_TEST

START_TEST(sent_before_a_remote_shutdown_is_cancelled)
{
    pd_runtime *rt = pd_test_rt();
    atomic_long drops = 0, teardowns = 0;
    pd_stats s;
    int i;

    for (i = 0; i < 3; i++)
        ck_assert_int_eq(tally_spawn_on(rt, &drops, &teardowns), 0);
    ck_assert_int_eq(pd_shutdown_remote(rt), 0);
    /* The owner's run starts what was sent, then shuts down: async drops. */
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(atomic_load(&drops), 3);
    ck_assert_int_eq(atomic_load(&teardowns), 3);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.live_tasks, 0);
    ck_assert_uint_eq(s.inflight_ops, 0);
    /* Not a permanent shutdown: a task sent now runs to completion. */
    ck_assert_int_eq(tally_spawn_on(rt, &drops, &teardowns), 0);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(atomic_load(&drops), 4);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.ops_completed, 1);
    pd_runtime_free(rt);
}
END_TEST

/*
 * Under valgrind, only one thread runs at a time, and a thread blocked in
 * io_uring_enter keeps valgrind's lock (valgrind 3.19 does not know that
 * call may block): threads that wait for each other through their rings
 * deadlock. The tests that need two threads at once are left out there,
 * saying so; the sanitized build runs them.
 */
static int under_valgrind(void)
{
#ifdef RUNNING_ON_VALGRIND
    return RUNNING_ON_VALGRIND;
#else
    return 0;
#endif
}

Suite *pd_suite_threads(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");

    if (under_valgrind()) {
        printf("threads: 5 tests with concurrent runtime threads left out under "
               "valgrind (it holds its lock across io_uring_enter)\n");
    } else {
        tcase_add_test(tc, spawn_on_relays_between_two_runtimes);
        tcase_add_test(tc, many_senders_one_inbox);
        tcase_add_test(tc, wake_ends_a_blocking_wait);
        tcase_add_test(tc, shutdown_remote_runs_every_teardown);
        tcase_add_test(tc, shutdown_remote_deadline_forces_stuck_teardowns);
    }
    tcase_add_test(tc, wake_after_a_read_wake_is_not_merged); /* one thread */
    tcase_add_test(tc, sent_tasks_never_started_are_dropped_by_free);
    tcase_add_test(tc, sent_before_a_remote_shutdown_is_cancelled);
    suite_add_tcase(s, tc);
    return s;
}
