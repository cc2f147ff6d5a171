/*
 * The runtime's hooks for the harness (runtime/harness.c) and the tests:
 * ways to stop a future between a turn's halves, to hold completions in
 * the ring, and to look at the queues. Not for generated code, and not a
 * public API (pd__ names, which may change in any release). harness.h
 * includes this, and so does the runtime, which defines them.
 */
#ifndef POLLDROP_HARNESS_HOOKS_H
#define POLLDROP_HARNESS_HOOKS_H

#include "polldrop.h"

/*
 * For the harness (runtime/harness.c), which must stop a future between
 * the poll that queued its requests and their submission, or with a
 * completion posted but not yet reaped:
 * - pd__run_polls is the first half of pd_run_once: it polls the tasks
 *   that are ready and returns how many it polled (or -EBUSY inside a
 *   turn); pd__run_enter is the second half (submit and reap; wait as
 *   pd_run_once does). Returns 0 or -errno. A runtime driven by these
 *   halves is so from then on: its turns' reaps queue every task they
 *   wake rather than polling it in place (docs/design.md §4), so that
 *   every poll happens in a first half.
 * - pd__ring_wait_cqe blocks until the completion queue holds an entry,
 *   without reaping it. Returns 0 or -errno.
 * - pd__ring_strays waits ms milliseconds for completions and returns how
 *   many named an op slot inside [mem, mem + len) (those are consumed,
 *   never dispatched; the others are dispatched as usual), or -errno.
 * - pd__ring_submit submits what is queued and reaps nothing. Returns the
 *   number submitted or -errno.
 * - pd__ring_submit_wait submits what is queued and waits until at least
 *   wait_nr completions are posted, reaping none. Returns the number
 *   submitted or -errno. Tests use these two, never liburing's submit
 *   calls, which only io_uring's ring can take (docs/design.md, "Engines").
 * - pd__task_poll_drop calls t's poll_drop once, outside any turn, as the
 *   runtime would: for checking that a destroyed future stays destroyed.
 * - pd__task_drop_sync sync-drops the future of t if t is running or being
 *   async-dropped, and finishes t (cancelled, or done if its future had
 *   returned): the runtime never destroys it again, as that would be a
 *   second destruction (which the checked build aborts on). A task that
 *   is over already is left alone.
 * - pd__sq_unsubmitted is the number of requests queued, not yet
 *   submitted; pd__cq_ready the number of completions posted, not reaped.
 * - pd__ring_reap_one dispatches the oldest completion posted, if any, as
 *   a reap would (a full multishot queue leaves it in the ring). Returns 1
 *   if one was dispatched, else 0: a turn that reaps one completion at a
 *   time stops a multishot future between two completions the kernel
 *   posted together.
 * - pd__group_freeing, when set, is called by pd_runtime_free for every
 *   buffer group it frees, after every task was destroyed: a buffer still
 *   held then was lost by a destruction (invariant 8).
 * - pd__workers_starting, when set, is called with 0 when an epoll engine
 *   begins to start its worker pool (at its first file op) and with 1 when
 *   it is done: what the threads' start allocates falls in between, and
 *   the harness's allocation count (harness_alloc.c, which sets it) leaves
 *   it out.
 */
int pd__run_polls(pd_runtime *rt);
int pd__run_enter(pd_runtime *rt, int wait);
int pd__ring_wait_cqe(pd_runtime *rt);
int pd__ring_submit(pd_runtime *rt);
int pd__ring_submit_wait(pd_runtime *rt, unsigned wait_nr);
pd_poll pd__task_poll_drop(pd_task *t);
void pd__task_drop_sync(pd_task *t);
int pd__ring_strays(pd_runtime *rt, const void *mem, size_t len, unsigned ms);
int pd__ring_reap_one(pd_runtime *rt);
extern void (*pd__group_freeing)(const pd_bufgroup *g);
extern void (*pd__workers_starting)(int done);

static inline unsigned pd__sq_unsubmitted(const pd_runtime *rt)
{
    return io_uring_sq_ready(&rt->ring);
}

static inline unsigned pd__cq_ready(const pd_runtime *rt)
{
    return io_uring_cq_ready(&rt->ring);
}

/*
 * Whether t is on the ready queue, and whether any task is: what a test
 * harness needs to tell "runnable" from "waiting for the kernel".
 */
static inline int pd__task_queued(const pd_task *t)
{
    return t->queued;
}

static inline int pd__runtime_ready(const pd_runtime *rt)
{
    return rt->ready_head != NULL;
}

#endif /* POLLDROP_HARNESS_HOOKS_H */
