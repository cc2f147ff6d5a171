/*
 * The shutdown-deadline suite: pd_shutdown_deadline cuts teardowns short at
 * the deadline, still waits for every completion the kernel owes, destroys
 * every future exactly once, allocates nothing, and leaves no fd behind.
 *
 * No test asserts a duration. A deadline is a lower bound on how long a
 * teardown may run, so where a loaded machine could make a fast teardown
 * miss it, the tests assert the partition instead: every task was either
 * forced or finished its teardown, never both, and the ones that could never
 * finish were forced.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "quit_deadline.h"
#include "stuck_bye.h"
#include "stuck_send.h"
#include "td_child.h"
#include "testutil.h"

#define NTASKS 32

/* Pipes: in (run-phase reads), hang (teardown reads), bye (goodbyes). */
typedef struct fixture {
    int in[2], hang[2], bye[2];
    int fds;
    pd_runtime *rt;
    pd_task *t[NTASKS];
} fixture;

static void fx_open(fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    fx->fds = pd_test_fd_count();
    ck_assert_int_eq(pipe2(fx->in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(fx->hang, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(fx->bye, O_CLOEXEC | O_NONBLOCK), 0);
    fx->rt = pd_test_rt();
    pd_test_rec_start();
}

/*
 * Spawns n stuck_bye tasks, every hang_every-th one (if hang_every > 0)
 * blocked forever in teardown, and runs a turn so that their reads are in
 * flight.
 */
static void fx_spawn(fixture *fx, int n, int hang_every)
{
    int i;

    for (i = 0; i < n; i++) {
        int hang = hang_every > 0 && i % hang_every == 0 ? fx->hang[0] : -1;

        fx->t[i] = stuck_bye_spawn(fx->rt, fx->in[0], hang, fx->bye[1]);
        ck_assert_ptr_nonnull(fx->t[i]);
    }
    ck_assert_int_eq(pd_run_once(fx->rt, 0), n);
}

/* Bytes of goodbye written so far (the bye pipe is non-blocking). */
static int fx_byes(fixture *fx)
{
    char buf[4 * NTASKS * 3];
    ssize_t n = read(fx->bye[0], buf, sizeof(buf));

    return n < 0 ? 0 : (int)n;
}

/* A cancelled read took nothing: a byte written now is still there. */
static void assert_pipe_untouched(int p[2])
{
    char c = 0;

    ck_assert_int_eq(write(p[1], "x", 1), 1);
    ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    ck_assert_int_eq(c, 'x');
}

/* Every invariant after the shutdown, then release and free. */
static void fx_close(fixture *fx, int n)
{
    long drops = pd_test_rec_count("stuck_bye", PD_TRACE_DROP);
    pd_stats s;
    int i;

    pd_runtime_stats(fx->rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_uint_eq(s.live_tasks, 0);
    for (i = 0; i < n; i++)
        ck_assert_int_eq(pd_task_state(fx->t[i]), PD_TASK_CANCELLED);
    ck_assert_int_eq(drops, pd_test_rec_count("stuck_bye", PD_TRACE_INIT));
    ck_assert_int_ge(drops, n);
    ck_assert_int_eq(pd_rec.stray_drop, 0);
    ck_assert_int_eq(pd_rec.double_init, 0);
    ck_assert_int_eq(pd_rec.nlive, 0);
    assert_pipe_untouched(fx->in);
    assert_pipe_untouched(fx->hang);
    for (i = 0; i < n; i++)
        pd_task_release(fx->t[i]);
    pd_runtime_free(fx->rt);
    pd_set_trace(NULL, NULL);
    for (i = 0; i < 2; i++) {
        close(fx->in[i]);
        close(fx->hang[i]);
        close(fx->bye[i]);
    }
    ck_assert_int_eq(pd_test_fd_count(), fx->fds);
}

START_TEST(deadline_forces_stuck_teardowns)
{
    fixture fx;
    long allocs;
    int ret, forced, byes;
    pd_stats s;

    fx_open(&fx);
    fx_spawn(&fx, NTASKS, 2);
    allocs = pd_test_allocs;
    ret = pd_shutdown_deadline(fx.rt, 100);
    allocs = pd_test_allocs - allocs;
    ck_assert_int_eq(ret, 0);
    ck_assert_int_eq(allocs, 0);
    pd_runtime_stats(fx.rt, &s);
    forced = (int)s.tasks_forced;
    byes = fx_byes(&fx);
    /* Half can never finish teardown: they were forced, and said no bye. */
    ck_assert_int_ge(forced, NTASKS / 2);
    ck_assert_int_eq(byes, 3 * (NTASKS - forced));
    /* Every task began its teardown before the deadline cut it short. */
    ck_assert_int_eq(pd_test_rec_count("stuck_bye", PD_TRACE_TEARDOWN), NTASKS);
    /* The hung reads were cancelled, and their completions awaited. */
    ck_assert_uint_ge(s.cancels_submitted, (uint64_t)(NTASKS + NTASKS / 2));
    fx_close(&fx, NTASKS);
}
END_TEST

START_TEST(deadline_zero_forces_everything_at_once)
{
    fixture fx;
    pd_stats s;

    fx_open(&fx);
    fx_spawn(&fx, NTASKS, 0);
    ck_assert_int_eq(pd_shutdown_deadline(fx.rt, 0), 0);
    pd_runtime_stats(fx.rt, &s);
    ck_assert_uint_eq(s.tasks_forced, NTASKS);
    /* Quiesced, then straight to drop code: no teardown, no goodbye. */
    ck_assert_int_eq(pd_test_rec_count("stuck_bye", PD_TRACE_TEARDOWN), 0);
    ck_assert_int_eq(fx_byes(&fx), 0);
    fx_close(&fx, NTASKS);
}
END_TEST

START_TEST(deadline_after_everything_finished)
{
    fixture fx;
    pd_task *late;
    pd_stats s;
    int i;

    fx_open(&fx);
    /* A runtime with nothing live: returns at once, leaves nothing armed. */
    ck_assert_int_eq(pd_shutdown_deadline(fx.rt, 60000), 0);
    ck_assert_int_eq(pd_shutdown_deadline(fx.rt, -1), -EINVAL);
    fx_spawn(&fx, NTASKS, 0);
    ck_assert_int_eq(pd_task_state(fx.t[0]), PD_TASK_RUNNING);
    /* A minute: the shutdown ends when the teardowns do, not at the deadline. */
    ck_assert_int_eq(pd_shutdown_deadline(fx.rt, 60000), 0);
    pd_runtime_stats(fx.rt, &s);
    ck_assert_uint_eq(s.tasks_forced, 0);
    ck_assert_int_eq(fx_byes(&fx), 3 * NTASKS);
    ck_assert_int_eq(pd_test_rec_count("stuck_bye", PD_TRACE_TEARDOWN), NTASKS);

    /* The deadline is forgotten: a later task's teardown is not cut short. */
    late = stuck_bye_spawn(fx.rt, fx.in[0], fx.hang[0], fx.bye[1]);
    ck_assert_int_eq(pd_run_once(fx.rt, 0), 1);
    ck_assert_int_eq(pd_task_state(late), PD_TASK_RUNNING);
    pd_task_cancel(late);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(pd_run_once(fx.rt, 0), 1);
    ck_assert_int_eq(pd_task_state(late), PD_TASK_DROPPING);
    ck_assert_int_eq(pd_test_rec_count("stuck_bye", PD_TRACE_TEARDOWN), NTASKS + 1);
    ck_assert_int_eq(pd_shutdown_deadline(fx.rt, 0), 0);
    pd_runtime_stats(fx.rt, &s);
    ck_assert_uint_eq(s.tasks_forced, 1);
    ck_assert_int_eq(pd_task_state(late), PD_TASK_CANCELLED);
    pd_task_release(late);
    ck_assert_int_eq(pd_test_rec_count("stuck_bye", PD_TRACE_DROP), NTASKS + 1);
    ck_assert_int_eq(fx_byes(&fx), 0);
    fx_close(&fx, NTASKS);
}
END_TEST

START_TEST(deadline_set_from_inside_a_task)
{
    fixture fx;
    pd_task *q;
    pd_stats s;
    int byes;

    fx_open(&fx);
    fx_spawn(&fx, 8, 1);
    q = quit_deadline_spawn(fx.rt, 20);
    ck_assert_int_eq(pd_run(fx.rt), 0);
    /* The quitter finished in the poll that armed the deadline. */
    ck_assert_int_eq(pd_task_state(q), PD_TASK_DONE);
    ck_assert_int_eq(*(const int *)pd_task_output(q), 0);
    pd_task_release(q);
    pd_runtime_stats(fx.rt, &s);
    byes = fx_byes(&fx);
    ck_assert_uint_eq(s.tasks_forced, 8);
    ck_assert_int_eq(byes, 0);
    fx_close(&fx, 8);
}
END_TEST

START_TEST(deadline_forces_children_in_teardown)
{
    fixture fx;
    char fill[4096];
    long filled = 0, drained = 0;
    ssize_t n;
    pd_stats s;
    pd_task *t;

    /* td_child's teardown awaits a write_all child into a full pipe. */
    fx_open(&fx);
    memset(fill, 'f', sizeof(fill));
    while ((n = write(fx.bye[1], fill, sizeof(fill))) > 0)
        filled += n;
    ck_assert_int_eq(fcntl(fx.bye[1], F_SETFL, 0), 0); /* the child blocks */
    t = td_child_spawn(fx.rt, fx.in[0], fx.bye[1]);
    ck_assert_int_eq(pd_run_once(fx.rt, 0), 1);
    ck_assert_int_eq(pd_shutdown_deadline(fx.rt, 20), 0);
    pd_runtime_stats(fx.rt, &s);
    ck_assert_uint_eq(s.tasks_forced, 1);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_int_eq(pd_test_rec_count("td_child", PD_TRACE_TEARDOWN), 1);
    ck_assert_int_eq(pd_test_rec_count("td_child", PD_TRACE_DROP), 1);
    ck_assert_int_eq(pd_test_rec_count("write_all", PD_TRACE_INIT), 1);
    ck_assert_int_eq(pd_test_rec_count("write_all", PD_TRACE_DROP), 1);
    ck_assert_int_eq(pd_rec.nlive, 0);
    ck_assert_int_eq(pd_rec.stray_drop, 0);
    /* The child's write was cancelled: not one byte of goodbye went in. */
    ck_assert_int_eq(fcntl(fx.bye[0], F_SETFL, O_NONBLOCK), 0);
    while ((n = read(fx.bye[0], fill, sizeof(fill))) > 0)
        drained += n;
    ck_assert_int_eq(drained, filled);
    pd_task_release(t);
    pd_runtime_free(fx.rt);
    pd_set_trace(NULL, NULL);
    close(fx.in[0]);
    close(fx.in[1]);
    close(fx.hang[0]);
    close(fx.hang[1]);
    close(fx.bye[0]);
    close(fx.bye[1]);
    ck_assert_int_eq(pd_test_fd_count(), fx.fds);
}
END_TEST

/*
 * A hand-written future whose teardown lasts until a shutdown deadline
 * forces it (it asks pd__forced, as docs/api.md tells hand-written
 * vtables to), and then spawns a stuck_bye to say goodbye: a task started
 * after the deadline passed, while the shutdown is still in progress. The
 * runtime must force it at once; otherwise its teardown, a read of a pipe
 * nobody writes, holds the shutdown for good.
 */
struct late_spawner {
    fixture *fx;
    pd_task *spawned;
};

static pd_poll late_poll(void *self, pd_cx *cx, void *out)
{
    (void)self, (void)cx, (void)out;
    return PD_PENDING; /* until cancelled */
}

static pd_poll late_spawner_poll_drop(void *self, pd_cx *cx)
{
    struct late_spawner *l = self;

    if (!pd__forced(cx))
        return PD_PENDING; /* the deadline's forcing wakes it */
    l->spawned = stuck_bye_spawn(cx->rt, l->fx->in[0], l->fx->hang[0], l->fx->bye[1]);
    return PD_READY;
}

static void late_drop(void *self)
{
    (void)self;
}

static const pd_vtable late_spawner_vtable = {
    "late_spawner", sizeof(struct late_spawner), alignof(struct late_spawner), 0,
    late_poll, late_spawner_poll_drop, late_drop,
};

START_TEST(deadline_forces_a_task_a_teardown_starts_after_it)
{
    struct late_spawner *l;
    fixture fx;
    pd_task *t;
    pd_stats s;

    fx_open(&fx);
    /* A stuck teardown keeps the shutdown waiting until the deadline. */
    fx_spawn(&fx, 1, 1);
    t = pd_task_new(fx.rt, &late_spawner_vtable, (void **)&l);
    ck_assert_ptr_nonnull(t);
    l->fx = &fx;
    l->spawned = NULL;
    pd_task_start(t);
    ck_assert_int_eq(pd_shutdown_deadline(fx.rt, 20), 0);
    ck_assert_ptr_nonnull(l->spawned);
    pd_runtime_stats(fx.rt, &s);
    /* The stuck task, the spawner, and the task it spawned at the deadline. */
    ck_assert_uint_eq(s.tasks_forced, 3);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_int_eq(pd_task_state(l->spawned), PD_TASK_CANCELLED);
    /* Forced from its start: no teardown at all, only its drop code. */
    ck_assert_int_eq(pd_test_rec_count("stuck_bye", PD_TRACE_TEARDOWN), 1);
    ck_assert_int_eq(pd_test_rec_count("stuck_bye", PD_TRACE_DROP), 2);
    ck_assert_int_eq(fx_byes(&fx), 0);
    pd_task_release(l->spawned);
    pd_task_release(t);
    fx_close(&fx, 1);
}
END_TEST

/*
 * The same with a task another thread sends (F_spawn_on) once the deadline
 * forced a holder task: the holder's forced teardown lets the sender go,
 * then keeps the shutdown in progress (yielding, so the loop's turns never
 * block) until the sent task was started and polled.
 */
struct late_holder {
    atomic_int go;
    atomic_long teardowns, drops; /* the sent task's */
};

static pd_poll late_holder_poll_drop(void *self, pd_cx *cx)
{
    struct late_holder *h = self;

    if (!pd__forced(cx))
        return PD_PENDING;
    atomic_store(&h->go, 1);
    if (atomic_load(&h->teardowns) + atomic_load(&h->drops) == 0) {
        pd__yield(cx);
        return PD_PENDING;
    }
    return PD_READY;
}

static const pd_vtable late_holder_vtable = {
    "late_holder", sizeof(struct late_holder), alignof(struct late_holder), 0,
    late_poll, late_holder_poll_drop, late_drop,
};

struct late_sender {
    pd_runtime *rt;
    struct late_holder *h;
    int in, hang;
    int ret;
};

static void *late_sender_main(void *arg)
{
    struct late_sender *x = arg;

    while (!atomic_load(&x->h->go))
        sched_yield();
    x->ret = stuck_send_spawn_on(x->rt, x->in, x->hang, &x->h->teardowns, &x->h->drops);
    return NULL;
}

START_TEST(deadline_forces_a_task_sent_after_it)
{
    struct late_holder *h;
    struct late_sender x;
    int in[2], hang[2];
    pthread_t tid;
    pd_runtime *rt;
    pd_task *t;
    pd_stats s;

    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(hang, O_CLOEXEC), 0);
    rt = pd_test_rt();
    t = pd_task_new(rt, &late_holder_vtable, (void **)&h);
    ck_assert_ptr_nonnull(t);
    atomic_init(&h->go, 0);
    atomic_init(&h->teardowns, 0);
    atomic_init(&h->drops, 0);
    pd_task_start(t);
    ck_assert_int_eq(pd_run_once(rt, 0), 1);
    x = (struct late_sender){ rt, h, in[0], hang[0], 1 };
    ck_assert_int_eq(pthread_create(&tid, NULL, late_sender_main, &x), 0);
    /* A deadline of 0 has passed at once: the holder is forced. */
    ck_assert_int_eq(pd_shutdown_deadline(rt, 0), 0);
    ck_assert_int_eq(pthread_join(tid, NULL), 0);
    ck_assert_int_eq(x.ret, 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.tasks_forced, 2);
    ck_assert_uint_eq(s.live_tasks, 0);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_int_eq(atomic_load(&h->teardowns), 0);
    ck_assert_int_eq(atomic_load(&h->drops), 1);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    pd_task_release(t);
    pd_runtime_free(rt);
    assert_pipe_untouched(in);
    assert_pipe_untouched(hang);
    close(in[0]);
    close(in[1]);
    close(hang[0]);
    close(hang[1]);
}
END_TEST

Suite *pd_suite_shutdown_deadline(void)
{
    Suite *s = suite_create("shutdown_deadline");
    TCase *tc = tcase_create("deadline");

    tcase_add_test(tc, deadline_forces_stuck_teardowns);
    tcase_add_test(tc, deadline_zero_forces_everything_at_once);
    tcase_add_test(tc, deadline_after_everything_finished);
    tcase_add_test(tc, deadline_set_from_inside_a_task);
    tcase_add_test(tc, deadline_forces_children_in_teardown);
    tcase_add_test(tc, deadline_forces_a_task_a_teardown_starts_after_it);
    tcase_add_test(tc, deadline_forces_a_task_sent_after_it);
    suite_add_tcase(s, tc);
    return s;
}
