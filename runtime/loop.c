/*
 * The run loop: a turn polls every task that was ready when it began, then
 * submits what they queued and reaps completions with a single enter. That
 * reap, the turn's own, polls in place each running task whose op it
 * completes (pd__reap_polling), as a raw io_uring loop handles each
 * completion where it finds it; every other reap (pd__reap: sync drops,
 * room in a full queue, the kernel's deferred work) only records results in
 * op slots and queues their tasks, so it is safe anywhere. Futures run only
 * from a turn. pd_run, pd_run_once, pd_task_wait and pd_block_on are turns
 * toward different goals.
 */
#include "rt_internal.h"

#include <stdlib.h>
#include <string.h>

int pd__eng_enter_slow(pd_runtime *rt, unsigned wait_nr,
                       const struct __kernel_timespec *ts)
{
    return rt->engine_vt->enter(rt->engine, &rt->ring, wait_nr, ts);
}

/*
 * Submits and waits for a completion, but no later than the shutdown
 * deadline: the turn after it expires forces what is left.
 */
static int pd__wait_deadline(pd_runtime *rt)
{
    int64_t left = rt->deadline_ns - pd__now_ns();
    struct __kernel_timespec ts;

    if (left <= 0)
        return pd__eng_enter(rt, 0, NULL);
    ts.tv_sec = left / 1000000000;
    ts.tv_nsec = left % 1000000000;
    return pd__eng_enter(rt, 1, &ts);
}

/*
 * Queues the read of the wake eventfd, so that a wake from a thread without
 * a runtime of its own ends a blocking wait. If no entry can be had even
 * once the queue went to the kernel (the ring is broken), the next enter
 * tries again.
 */
static void pd__wake_arm(pd_runtime *rt)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&rt->ring);

    /* A full queue: hand it to the kernel, so that a blocking wait is armed. */
    if (sqe == NULL && pd__eng_submit(rt) >= 0)
        sqe = io_uring_get_sqe(&rt->ring);
    if (sqe == NULL)
        return;
    io_uring_prep_read(sqe, rt->wake_fd, &rt->wake_buf, sizeof(rt->wake_buf), 0);
    io_uring_sqe_set_data64(sqe, PD__UD_WAKE_EFD);
    rt->wake_unarmed = 0;
}

/*
 * The rest of a turn's poll of t, out of line: its future returned Ready to
 * the poll the turn just made (ready), or t was not running when its turn
 * came. Polls the async drop of a task that is dropping, and once its
 * future is destroyed drops the runtime's reference (not before: t is
 * still in use); a task that had finished before (it was queued twice over
 * a finish) is freed if nothing holds it.
 */
static __attribute__((noinline)) void pd__task_poll_end(pd_runtime *rt, pd_cx *cx,
                                                        pd_task *t, int ready)
{
    if (ready) {
        t->has_output = 1;
        t->state = PD_TASK_DROPPING;
    } else if (t->state != PD_TASK_DROPPING) {
        pd__task_free_if_unused(t); /* finished earlier while queued */
        return;
    }
    if (t->vt->poll_drop(t->self, cx) == PD_PENDING)
        return;
    pd__task_finish(rt, t);
    pd__task_unref(t);
}

/* pd__wake_on out of line, for pd__reap_polling's rare way. */
static __attribute__((noinline, cold)) void pd__wake_cold(pd_runtime *rt, pd_task *t)
{
    pd__wake_on(rt, t);
}

/*
 * The turn's own reap: pd__reap_inline's loop, except that a plain op's last
 * completion whose task is running and not queued polls that task there and
 * then, as a raw io_uring loop handles each completion in place, rather than
 * queueing it for the next turn's pass. Every other completion is
 * dispatched as pd__reap_inline does (its task queued). The poll may make
 * room in a full submission queue or sync-drop a child, and so reap: the
 * completion queue's head is published before it, and read again after it,
 * so that nothing is dispatched twice. A task is polled at most once per
 * completion reaped here, and only for completions posted before the reap
 * began (the tail is read once): what the polls submit goes to the kernel
 * with the next turn's entry. The polls get cx, whose task it sets (its
 * caller's, so that a loop of turns sets up one). Its polls are counted in
 * pd_stats.polls; rt->in_turn is set around it by the caller
 * (pd__reap_turn). Returns the number of completions this loop took.
 *
 * The polls are not counted one by one: every completion the loop took
 * polled its task once, but those it counts in rt->reaped_aside (zeroed
 * here), as pd__reap counts what nested reaps took.
 */
static inline __attribute__((always_inline)) unsigned pd__reap_polling(pd_runtime *rt,
                                                                        pd_cx *cx)
{
    struct io_uring_cq *cq = &rt->ring.cq;
    unsigned *khead = cq->khead;
    unsigned start = *khead, head = start;
    unsigned tail = io_uring_smp_load_acquire(cq->ktail);
    unsigned polls;

    rt->reaped_aside = 0;
    /* Signed distance: a nested reap may have taken the head past the tail. */
    while ((int)(head - tail) < 0) {
        const struct io_uring_cqe *cqe = &cq->cqes[head & cq->ring_mask];
        uint64_t ud = cqe->user_data;
        pd__op *op = (pd__op *)(uintptr_t)ud;
        pd_task *t;

        /* As pd__dispatch: anything but a plain op's own result. */
        if (!pd__ud_plain(ud)) {
            if (pd__dispatch_rare(rt, cqe, 0))
                break;
            head++;
            rt->reaped_aside++;
            continue;
        }
        pd__checked_cqe(cqe);
        pd__op_result(op, cqe);
        head++;
        op->st = PD__OP_READY; /* untagged: the op's only completion */
        t = op->task;
        /* Running and not queued, in one compare of the adjacent bytes. */
        if (PD__UNLIKELY(pd__task_state_queued(t) != PD_TASK_RUNNING)) {
            rt->stats.ops_completed++;
            rt->reaped_aside++;
            pd__wake_cold(rt, t);
            continue;
        }
        io_uring_smp_store_release(khead, head);
        cx->task = t;
        if (PD__UNLIKELY(t->poll(t->self, cx, t->out) != PD_PENDING))
            pd__task_poll_end(rt, cx, cx->task, 1);
        /*
         * The poll may have reaped: go on from where that left the head,
         * unless that is at (or, had the nested reap found completions
         * posted since this one began, past) the tail read above.
         */
        head = *khead;
    }
    io_uring_smp_store_release(khead, head);
    /* The completions whose tasks were polled, each an op's last. */
    polls = head - start - rt->reaped_aside;
    rt->stats.polls += polls;
    rt->stats.ops_completed += polls;
    return head - start;
}

/* The turn's reap (pd__reap_polling), inside the turn: nested run calls are refused. */
static inline __attribute__((always_inline)) unsigned pd__reap_turn(pd_runtime *rt, pd_cx *cx)
{
    unsigned n;

    rt->in_turn = 1;
    n = pd__reap_polling(rt, cx);
    rt->in_turn = 0;
    return n;
}

/*
 * Submits what is queued and collects completions; blocks for one when wait
 * is set. Unless the runtime is driven by halves (rt->halves), the reap
 * polls in place the tasks whose ops completed (pd__reap_turn), as part of
 * the turn. Returns 0 or a hard -errno.
 */
static __attribute__((noinline)) int pd__enter(pd_runtime *rt, int wait)
{
    pd_cx cx = { rt, NULL, NULL };
    unsigned n;
    int ret;

    if (PD__UNLIKELY(rt->wake_unarmed))
        pd__wake_arm(rt);
    rt->stats.enter_calls++;
    if (!wait)
        ret = pd__eng_enter(rt, 0, NULL);
    else if (PD__UNLIKELY(rt->deadline_armed))
        ret = pd__wait_deadline(rt);
    else
        ret = pd__eng_enter(rt, 1, NULL);
    if (PD__LIKELY(!rt->halves))
        n = pd__reap_turn(rt, &cx);
    else
        n = pd__reap_inline(rt, 0);
    pd__drain_task_work(rt, n);
    if (ret < 0 && !pd__transient(ret))
        return ret;
    return 0;
}

/* The rest of pd__enter_common's turn after an entry that failed with ret. */
static __attribute__((noinline, cold)) int pd__enter_failed(pd_runtime *rt, int ret)
{
    pd_cx cx = { rt, NULL, NULL };

    pd__drain_task_work(rt, pd__reap_turn(rt, &cx));
    return ret;
}

/*
 * pd__enter, inlined into the run loops (pd__turns) for the common turn,
 * which waits, and whose caller made sure that rt->turn_rare is zero
 * (io_uring, no wake to queue, no deadline to wait against, no halves, no
 * shutdown): so that its entry and reap cost no call and no saving of
 * registers, and its polls get the loop's cx. Returns 0 or a hard -errno.
 */
static inline __attribute__((always_inline)) int pd__enter_common(pd_runtime *rt, pd_cx *cx)
{
    int ret;

    rt->stats.enter_calls++;
    ret = pd__uring_enter(&rt->ring, 1);
    /* A hard error: reaped all the same, out of line, so that ret is not kept. */
    if (PD__UNLIKELY(ret < 0) && !pd__transient(ret))
        return pd__enter_failed(rt, ret);
    pd__drain_task_work(rt, pd__reap_turn(rt, cx));
    return 0;
}

/* Forces every live task once the shutdown deadline has passed. */
static void pd__deadline_check(pd_runtime *rt)
{
    pd_task *t;

    if (pd__now_ns() < rt->deadline_ns)
        return;
    rt->deadline_armed = 0;
    rt->forcing = 1;
    for (t = pd__live_task(rt->live_head); t; t = pd__live_task(t->live.next))
        pd__task_force(rt, t);
}

/* Arms the shutdown deadline at the absolute time at_ns, unless one is earlier. */
void pd__deadline_arm(pd_runtime *rt, int64_t at_ns)
{
    if (rt->live_head == NULL)
        return;
    if (!rt->forcing && (!rt->deadline_armed || at_ns < rt->deadline_ns)) {
        rt->deadline_ns = at_ns;
        rt->deadline_armed = 1;
    }
    pd__deadline_check(rt);
}

/*
 * Detects a run that can never progress: nothing queued, no wake to look
 * at, nothing in flight.
 */
static int pd__stuck(const pd_runtime *rt)
{
    return rt->ready_head == NULL && !rt->remote_pending &&
           rt->stats.ops_submitted == rt->stats.ops_completed;
}


/*
 * A wake arrived: starts the tasks other threads sent here, oldest first,
 * then the shutdown they asked for, so that a task sent before the request
 * is cancelled with the rest.
 */
static void pd__remote(pd_runtime *rt)
{
    pd_task *t, *fifo = NULL;

    rt->remote_pending = 0;
    /*
     * wake_sent was cleared when the wake's read completed, before the
     * inbox is read here: a sender whose wake was merged into that one had
     * pushed its task already, and a later sender sends a new wake.
     */
    t = atomic_exchange(&rt->inbox, NULL);
    while (t) {
        pd_task *next = t->next;

        t->next = fifo;
        fifo = t;
        t = next;
    }
    while ((t = fifo) != NULL) {
        fifo = t->next;
        pd_task_start(t);
    }
    if (atomic_load_explicit(&rt->shutdown_asked, memory_order_relaxed) &&
        atomic_exchange(&rt->shutdown_asked, 0)) {
        int64_t at = atomic_exchange(&rt->shutdown_at_ns, INT64_MAX);

        pd__shutdown_begin(rt);
        if (at != INT64_MAX)
            pd__deadline_arm(rt, at);
    }
}

/*
 * Polls the batch: the ready queue as it was when the turn began. Tasks
 * woken while it runs are polled next turn (fairness). Returns how many it
 * polled.
 */
static __attribute__((noinline)) int pd__poll_batch(pd_runtime *rt)
{
    pd_cx cx = { rt, NULL, NULL };
    pd_task *batch;
    int n = 0;

    *rt->ready_tailp = NULL; /* ends the queue (pd__wake_on) */
    batch = rt->ready_head;
    rt->in_turn = 1;
    rt->ready_head = NULL;
    rt->ready_tailp = &rt->ready_head;
    while (batch) {
        pd_task *t = batch;

        batch = t->next;
        t->queued = 0;
        n++;
        cx.task = t;
        /* The common case, a running task still pending, stays in this loop. */
        if (PD__LIKELY(t->state == PD_TASK_RUNNING)) {
            if (PD__LIKELY(t->poll(t->self, &cx, t->out) == PD_PENDING))
                continue;
            pd__task_poll_end(rt, &cx, t, 1);
        } else {
            pd__task_poll_end(rt, &cx, t, 0);
        }
    }
    rt->in_turn = 0;
    rt->stats.polls += (unsigned)n;
    return n;
}

/*
 * A turn's first half, once the caller made sure that no turn is running:
 * starts the tasks other threads sent, forces every task once the shutdown
 * deadline has passed, and polls the tasks that were ready when it began
 * (none, when the last turn's reap polled every task it woke in place).
 * Returns how many it polled.
 */
static inline int pd__polls_unchecked(pd_runtime *rt)
{
    /* Before the batch is taken: both wake the tasks they start or force. */
    if (PD__UNLIKELY(rt->remote_pending))
        pd__remote(rt);
    if (PD__UNLIKELY(rt->deadline_armed))
        pd__deadline_check(rt);
    if (rt->ready_head == NULL)
        return 0;
    return pd__poll_batch(rt);
}

/* pd__polls_unchecked for pd_run_once and the harness: -EBUSY inside a turn. */
static inline int pd__polls(pd_runtime *rt)
{
    pd__owner_check(rt, "running its loop (pd_run, pd_run_once, pd_block_on)");
    if (rt->in_turn)
        return -EBUSY;
    return pd__polls_unchecked(rt);
}

/* A turn's second half: submits and reaps, and waits as pd_run_once does. */
static int pd__turn_enter(pd_runtime *rt, int wait)
{
    return pd__enter(rt, wait && rt->ready_head == NULL && !pd__stuck(rt));
}

/*
 * The halves for the harness (harness_hooks.h). A runtime driven by them
 * is driven by them from then on (rt->halves): its reaps only queue tasks,
 * so that every poll happens in a first half, where the harness stops a
 * future between the poll that queued its requests and their submission.
 */
int pd__run_polls(pd_runtime *rt)
{
    rt->halves = 1;
    return pd__polls(rt);
}

int pd__run_enter(pd_runtime *rt, int wait)
{
    rt->halves = 1;
    return pd__turn_enter(rt, wait);
}

pd_poll pd__task_poll_drop(pd_task *t)
{
    pd_cx cx = { t->rt, t, NULL };

    return t->vt->poll_drop(t->self, &cx);
}

_Static_assert(PD_TASK_RUNNING < PD_TASK_DONE && PD_TASK_DROPPING < PD_TASK_DONE &&
                   PD_TASK_CANCELLED == PD_TASK_DONE + 1,
               "a task's states before its end come before PD_TASK_DONE");

/*
 * Whether t's future is destroyed (PD_TASK_DONE or PD_TASK_CANCELLED, the
 * last two states, told in one compare): what pd_block_on and pd_task_wait
 * wait for.
 */
static int pd__task_over(const pd_task *t)
{
    return t->state >= PD_TASK_DONE;
}

/*
 * Every turn of the run loops (pd__turns) but the common one: polls the
 * tasks that are ready, then submits and reaps, and waits for a completion
 * only while goal (NULL: pd_run's) is not over and no task is ready. The
 * polls may have finished goal, so whether to wait is decided after them
 * (as libuv's uv_run computes its timeout after running its callbacks): a
 * wait decided before would last until some other task's request
 * completed, a one-hour timer's included. A turn that would wait while
 * nothing could end the wait (pd__stuck) enters without waiting instead,
 * which collects a wake already posted, and returns -EDEADLK if that left
 * the run stuck with its goal not over (pd_run's end, no task live, is told
 * by its loop). Returns 0 or -errno.
 */
static __attribute__((noinline)) int pd__turn_general(pd_runtime *rt, const pd_task *goal)
{
    int wait, ret;

    pd__polls_unchecked(rt);
    wait = rt->ready_head == NULL && (goal == NULL || !pd__task_over(goal));
    if (!wait || !pd__stuck(rt))
        return pd__enter(rt, wait);
    ret = pd__enter(rt, 0);
    if (ret < 0)
        return ret;
    /* Stuck still, no wake came, and the goal (or pd_run's end) not reached. */
    if (pd__stuck(rt) && (goal != NULL ? !pd__task_over(goal) : rt->live_head != NULL))
        return -EDEADLK;
    return 0;
}

/*
 * Turns until goal is over (its future destroyed), or, when goal is NULL,
 * until no task is live and nothing was sent here (pd_run's end). The
 * common turn -- no task ready (the last turn's reap polled in place),
 * nothing in rt->turn_rare, and a request in flight, so that it waits --
 * goes straight to its entry (pd__enter_common); every other turn is
 * pd__turn_general's. So pd__stuck is tested once per turn at most, and
 * only by a turn about to wait.
 *
 * Inlined into each caller, which made sure that no turn is running (and
 * nothing this calls returns inside one), so that a turn's entry and reap
 * run in the caller's loop, with one pd_cx for all its polls in place.
 * Returns 0 or -errno.
 */
static inline __attribute__((always_inline)) int pd__turns(pd_runtime *rt,
                                                           const pd_task *goal)
{
    pd_cx cx = { rt, NULL, NULL };

    pd__owner_check(rt, "running its loop (pd_run, pd_task_wait, pd_block_on)");
    for (;;) {
        int ret;

        if (goal != NULL) {
            if (pd__task_over(goal))
                return 0;
        } else if (rt->live_head == NULL && !rt->remote_pending) {
            /*
             * Nothing live, but tasks may have been sent here before the
             * wake was read: start them rather than return.
             */
            if (atomic_load_explicit(&rt->inbox, memory_order_relaxed) == NULL &&
                !atomic_load_explicit(&rt->shutdown_asked, memory_order_relaxed))
                return 0;
            rt->remote_pending = 1;
        }
        if (PD__LIKELY(rt->ready_head == NULL &&
                       rt->turn_rare == 0 &&
                       rt->stats.ops_submitted != rt->stats.ops_completed))
            ret = pd__enter_common(rt, &cx);
        else
            ret = pd__turn_general(rt, goal);
        if (ret < 0)
            return ret;
    }
}

int pd_run_once(pd_runtime *rt, int wait)
{
    int ret = pd__polls(rt);

    if (ret < 0)
        return ret;
    ret = pd__turn_enter(rt, wait);
    if (ret < 0)
        return ret;
    return (int)rt->stats.live_tasks;
}

int pd_task_wait(pd_task *t)
{
    pd_runtime *rt = t->rt;

    pd__task_check(t, "pd_task_wait");
    if (rt->in_turn)
        return -EBUSY;
    pd__owner_check(rt, "pd_task_wait");
    if (!(t->flags & PD__TASK_STARTED))
        return -EINVAL;
    return pd__turns(rt, t);
}

int pd_run(pd_runtime *rt)
{
    if (rt->in_turn)
        return -EBUSY;
    return pd__turns(rt, NULL);
}

int pd_block_on(pd_runtime *rt, pd_dyn fut, void *out)
{
    pd_task root;
    int ret;

    if (rt->in_turn) {
        /* Refused, but the contract holds: fut is destroyed on return. */
        fut.vt->drop(fut.self);
        return -EBUSY;
    }
    memset(&root, 0, sizeof(root));
    root.rt = rt;
    root.vt = fut.vt;
    root.poll = fut.vt->poll;
    root.self = fut.self;
    root.out = out;
    root.refs = 1;
    root.state = PD_TASK_RUNNING;
    root.flags = PD__TASK_ROOT;
    pd_task_start(&root);
    ret = pd__turns(rt, &root);
    if (ret < 0) {
        /*
         * A hard error, or nothing can wake the future again (-EDEADLK).
         * Destroy it anyway so that it is never left half-alive on the
         * caller's stack.
         */
        fut.vt->drop(fut.self);
        if (root.queued)
            pd__unqueue(rt, &root);
        pd__live_unlink(rt, &root);
        return ret;
    }
    if (root.queued)
        pd__unqueue(rt, &root);
    pd__checked_freeing(fut.self, fut.vt->size); /* the caller's memory again */
    return root.state == PD_TASK_DONE ? 0 : -ECANCELED;
}
