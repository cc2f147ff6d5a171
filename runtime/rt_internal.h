/*
 * The runtime's own declarations, shared by its files (the .c files of
 * runtime/) and by nothing else: neither generated code nor the harness
 * includes this.
 * What the turn's hot path calls is static inline here, so that splitting
 * the runtime into files put no call on it: the dispatch of a completion,
 * the reap loop, the deferred-work check. Their rare paths are out of line
 * (noinline) as they always were.
 */
#ifndef POLLDROP_RT_INTERNAL_H
#define POLLDROP_RT_INTERNAL_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "polldrop.h"
#include "ring.h"
#include "harness_hooks.h"

/* --- the checked build (checked.c); the plain build's stubs --- */

#ifdef PD_CHECKED
/* pd_task_state's names, for misuse messages. */
extern const char *const pd__task_states[];
/* Frees t's memory; the checked build keeps it dead for a while instead. */
void pd__task_release_mem(pd_task *t);
/* Aborts if t was freed. */
void pd__task_check(const pd_task *t, const char *call);
/* Aborts unless the caller is rt's owner. */
void pd__owner_check(const pd_runtime *rt, const char *call);
/* A second completion is owed: the op's linked timeout. */
void pd__checked_owe(const pd__op *op);
/* A completion is dispatched: aborts unless its slot is owed one. */
void pd__checked_cqe(const struct io_uring_cqe *cqe);
/* [mem, mem + len) is about to be freed: no registered slot may lie in it. */
void pd__checked_freeing(const void *mem, size_t len);
/* rt's ring is about to close: none of its slots may still be owed. */
void pd__checked_ring_closing(const pd_runtime *rt);
#else
static inline void pd__task_release_mem(pd_task *t)
{
    free(t);
}

static inline void pd__task_check(const pd_task *t, const char *call)
{
    (void)t;
    (void)call;
}

static inline void pd__owner_check(const pd_runtime *rt, const char *call)
{
    (void)rt;
    (void)call;
}

static inline void pd__checked_owe(const pd__op *op) { (void)op; }
static inline void pd__checked_cqe(const struct io_uring_cqe *cqe) { (void)cqe; }
static inline void pd__checked_freeing(const void *mem, size_t len) { (void)mem; (void)len; }
static inline void pd__checked_ring_closing(const pd_runtime *rt) { (void)rt; }
#endif

/* --- completions (complete.c), and what the turn inlines of them --- */

/* Transient failures of io_uring_enter that a retry resolves. */
static inline int pd__transient(int ret)
{
    return ret == -EINTR || ret == -EAGAIN || ret == -EBUSY || ret == -ETIME;
}

/* CLOCK_MONOTONIC, or the virtual clock of this thread's simulated ring. */
static inline int64_t pd__now_ns(void)
{
    struct timespec ts;

    if (PD__UNLIKELY(pd__sim_clock != NULL))
        return *pd__sim_clock;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* op has received every completion it was owed: its result is ready. */
static inline void pd__op_done(pd_runtime *rt, pd__op *op)
{
    op->st = PD__OP_READY;
    rt->stats.ops_completed++;
    pd__wake_on(rt, op->task);
}

/*
 * Every completion but a plain op's one result (multishot.c, beside the
 * extended slots' dispatch it inlines). Returns as pd__dispatch.
 */
__attribute__((noinline)) int pd__dispatch_rare(pd_runtime *rt,
                                                const struct io_uring_cqe *cqe,
                                                int force);

/*
 * Whether a completion is the common case, the one result of a plain op
 * that owes nothing else, by its user_data alone, in one test: the slot's
 * address, untagged (the low three bits clear). Every other completion is
 * tagged or has a reserved value, whose low bits are set too
 * (pd_internal.h): a zero-copy send's two and an op whose linked timeout
 * completes too (PD__TAG_RARE) included, so neither the completion's flags
 * nor what the slot still owes need a test. The checked build also checks
 * that the address is past every reserved value (a slot it registered, in
 * pd__checked_cqe).
 */
static inline int pd__ud_plain(uint64_t ud)
{
    return PD__LIKELY((ud & 7) == 0);
}

/*
 * Stores a completion's result and flags in its slot, in one copy: both
 * lie side by side, in the same order, in the CQE and in the slot.
 */
_Static_assert(offsetof(pd__op, cflags) == offsetof(pd__op, res) + 4 &&
                   offsetof(struct io_uring_cqe, flags) ==
                       offsetof(struct io_uring_cqe, res) + 4,
               "res and flags are adjacent in both");
static inline void pd__op_result(pd__op *op, const struct io_uring_cqe *cqe)
{
    memcpy(&op->res, &cqe->res, 8);
}

/*
 * Hands one completion to its slot; inlined in the reap loop, as it runs
 * once per completion. Returns 1 when the completion must stay in the
 * completion queue for now (a multishot slot's queue is full), so that the
 * reap stops there; never with force.
 */
static inline __attribute__((always_inline)) int
pd__dispatch(pd_runtime *rt, const struct io_uring_cqe *cqe, int force)
{
    uint64_t ud = cqe->user_data;
    pd__op *op = (pd__op *)(uintptr_t)ud;

    if (!pd__ud_plain(ud))
        return pd__dispatch_rare(rt, cqe, force);
    pd__checked_cqe(cqe);
    pd__op_result(op, cqe);
    pd__op_done(rt, op);
    return 0;
}

/*
 * Dispatches every completion the queue holds now. The tail is read once
 * (completions posted meanwhile wait for the next reap) and the ring has
 * 16-byte CQEs, so each completion costs an index and the dispatch, not
 * the generic loop's reload of the tail and test of the CQE size. Without
 * force, a full multishot queue stops the reap there: the rest waits for the
 * owner to run. Blocking sync drops reap with force.
 */
static inline __attribute__((always_inline)) unsigned
pd__reap_inline(pd_runtime *rt, int force)
{
    struct io_uring_cq *cq = &rt->ring.cq;
    unsigned head = *cq->khead;
    unsigned tail = io_uring_smp_load_acquire(cq->ktail);
    unsigned mask = cq->ring_mask, n;
    /* In a local: the compiler cannot tell the slots' stores from cq's. */
    struct io_uring_cqe *cqes = cq->cqes;

    for (; head != tail; head++)
        if (PD__UNLIKELY(pd__dispatch(rt, &cqes[head & mask], force)))
            break;
    n = head - *cq->khead;
    if (n != 0)
        io_uring_smp_store_release(cq->khead, head);
    return n;
}

/* pd__reap_inline out of line, for every caller but the turn's own enter. */
__attribute__((noinline)) unsigned pd__reap(pd_runtime *rt, int force);

/*
 * With IORING_SETUP_DEFER_TASKRUN the kernel posts most completions (every
 * cancelled poll-armed request among them) as task work that runs only when
 * the ring is entered with GETEVENTS, and then at most max(20,
 * min_complete) items per entry (IO_LOCAL_TW_DEFAULT_MAX, kernels 6.13 and
 * later). Until its task work has run, a cancelled request stays in the
 * kernel's cancel hash, where every later cancel walks past it: a storm of
 * cancels submitted newest first (pd_shutdown's order) faster than the work
 * runs is quadratic in the kernel. A zero-timeout wait for more events is
 * no way out: it sleeps for the timer slack (tens of microseconds).
 *
 * So this enters again to run more of the work while some is left, until
 * as many completions as the completion queue holds were reaped. Whether
 * work is left, the kernel says itself when the ring has
 * IORING_SETUP_TASKRUN_FLAG: it sets IORING_SQ_TASKRUN in the SQ flags while
 * deferred work waits, and an entry that would find none is never made. But
 * the kernel clears the flag when it starts running the work, not when it
 * stops at the budget with work left; so an entry that reaped a full budget
 * of completions (`n`) is taken as a sign too -- only while cancels are
 * recent: since the last entry that found less than a full budget, a cancel
 * was submitted (rt->cancel_tw). Elsewhere work beyond the budget costs
 * nothing (the next turn's entry runs it, before it can block), while an
 * entry made for it would cost one io_uring_enter per turn whenever a turn
 * reaps twenty completions or more: every turn of 128 tasks doing nops, or
 * of a busy server. An entry that reaped nothing ends the loop: the flag can
 * stay set with nothing such an entry runs (the echo server spun at 100% CPU
 * on it, never waiting, its peers stalled). Without DEFER_TASKRUN the kernel
 * runs task work on every return to user space, and there is nothing to do.
 */
#define PD__TW_BUDGET 20u

static inline int pd__task_work_left(pd_runtime *rt, unsigned n)
{
    if (n >= PD__TW_BUDGET) {
        if (rt->cancel_tw)
            return 1;
    } else {
        /* A short batch: the kernel ran every item it had queued. */
        rt->cancel_tw = 0;
    }
    return (rt->stats.ring_flags & IORING_SETUP_TASKRUN_FLAG) &&
           (IO_URING_READ_ONCE(*rt->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

/* The entries that run what the first left: see above. */
__attribute__((noinline)) void pd__drain_more(pd_runtime *rt, unsigned n);
/* pd__drain_task_work's test in full, out of line (complete.c). */
__attribute__((noinline)) void pd__drain_check(pd_runtime *rt, unsigned n);

/*
 * After an entry that reaped n completions: runs deferred work it left.
 * The common entry, a short batch after which the kernel says no work is
 * left, is told inline, by n and IORING_SQ_TASKRUN alone: only a ring with
 * IORING_SETUP_TASKRUN_FLAG has the kernel set that flag (no other engine
 * sets it), and a short batch clears rt->cancel_tw whatever the ring, as
 * pd__task_work_left would (it is read only with DEFER_TASKRUN).
 */
static inline void pd__drain_task_work(pd_runtime *rt, unsigned n)
{
    if (PD__LIKELY(n < PD__TW_BUDGET) &&
        PD__LIKELY(!(IO_URING_READ_ONCE(*rt->ring.sq.kflags) & IORING_SQ_TASKRUN))) {
        rt->cancel_tw = 0;
        return;
    }
    pd__drain_check(rt, n);
}

/*
 * Makes room for need adjacent submission entries in a full queue
 * (complete.c, where its contract is). Returns 0 or -errno.
 */
int pd__sq_room(pd_runtime *rt, unsigned need);
/* A sync drop that cannot reach the kernel aborts (complete.c). */
void pd__sync_check(int ret);

/* --- buffer groups (multishot.c) --- */

/* Frees g: its ring, its buffers, its bgid. */
void pd__bufgroup_destroy(pd_bufgroup *g);

/* --- tasks (task.c) and the turns that poll them (loop.c) --- */

/* Whether t's future is still to be destroyed (by the runtime or pd_runtime_free). */
static inline int pd__task_live(const pd_task *t)
{
    return (t->state == PD_TASK_RUNNING || t->state == PD_TASK_DROPPING) &&
           !(t->flags & PD__TASK_FREED_DROP);
}

/*
 * t's state and queued flag as one value, which is PD_TASK_RUNNING exactly
 * when t is running and not queued (the two bytes are adjacent: one load).
 */
static inline unsigned pd__task_state_queued(const pd_task *t)
{
    return (unsigned)t->state | (unsigned)t->queued << 8;
}

/* Puts t on rt's live set: started, its future not yet destroyed. */
static inline void pd__live_link(pd_runtime *rt, pd_task *t)
{
    pd__list_push(&rt->live_head, &t->live);
    rt->stats.live_tasks++;
}

static inline void pd__live_unlink(pd_runtime *rt, pd_task *t)
{
    pd__list_unlink(&rt->live_head, NULL, &t->live);
    rt->stats.live_tasks--;
}

/* The task whose live-list link is l, or NULL. */
static inline pd_task *pd__live_task(struct pd__link *l)
{
    return l ? PD__CONTAINER_OF(l, pd_task, live) : NULL;
}
/* Removes t from the ready queue; linear, used only off the hot path. */
void pd__unqueue(pd_runtime *rt, pd_task *t);
/* pd_task_cancel without the caller's checks: the runtime's own shutdown. */
void pd__task_cancel(pd_task *t);
/*
 * Forces t's async drop (a shutdown deadline passed): generated poll_drop
 * sees PD__TASK_FORCED through pd__forced and skips the rest of teardown.
 */
static inline void pd__task_force(pd_runtime *rt, pd_task *t)
{
    if (t->flags & PD__TASK_FORCED)
        return;
    t->flags |= PD__TASK_FORCED;
    t->state = PD_TASK_DROPPING;
    rt->stats.tasks_forced++;
    pd__wake(t);
}

/* Cancels every live task; the shutdown lasts until none is left. */
void pd__shutdown_begin(pd_runtime *rt);
/*
 * Arms the shutdown deadline at the absolute time at_ns, unless one is
 * earlier (loop.c, beside the check each turn makes).
 */
void pd__deadline_arm(pd_runtime *rt, int64_t at_ns);
/* now + ms, saturated: a deadline centuries away is no deadline. */
int64_t pd__deadline_at(long long ms);

/*
 * Frees t if nothing can reach it any more: no reference, not on the ready
 * queue, and not pd_block_on's stack task. Callers must have made sure its
 * future is destroyed (or was never started).
 */
static inline void pd__task_free_if_unused(pd_task *t)
{
    if (t->refs == 0 && !t->queued && !(t->flags & PD__TASK_ROOT)) {
        pd__checked_freeing(t->self, t->vt->size);
        pd__task_release_mem(t);
    }
}

static inline void pd__task_unref(pd_task *t)
{
    t->refs--;
    pd__task_free_if_unused(t);
}

/* The task's future is destroyed: it leaves the live set. */
static inline void pd__task_finish(pd_runtime *rt, pd_task *t)
{
    t->state = t->has_output ? PD_TASK_DONE : PD_TASK_CANCELLED;
    if (t->waiter)
        pd__wake(t->waiter);
    pd__live_unlink(rt, t);
    if (rt->live_head == NULL) {
        /* The shutdown is over; a deadline nobody reached is forgotten. */
        rt->shutting_down = 0;
        rt->forcing = 0;
        rt->deadline_armed = 0;
    }
}

#endif /* POLLDROP_RT_INTERNAL_H */
