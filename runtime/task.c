/*
 * Tasks: spawning, starting, cancelling and releasing them, the live set,
 * shutdown and its deadline, and pd_runtime_free. The turns that poll them
 * are in loop.c.
 */
#include "rt_internal.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- tasks --- */

/* Removes t from the ready queue; linear, used only off the hot path. */
void pd__unqueue(pd_runtime *rt, pd_task *t)
{
    pd_task **pp = &rt->ready_head;

    *rt->ready_tailp = NULL; /* ends the queue (pd__wake_on) */
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = t->next;
        if (rt->ready_tailp == &t->next)
            rt->ready_tailp = pp;
    }
    t->queued = 0;
}

pd_task *pd_task_new(pd_runtime *rt, const pd_vtable *vt, void **self)
{
    size_t align = vt->align > alignof(max_align_t) ? vt->align
                                                     : alignof(max_align_t);
    size_t head = (sizeof(pd_task) + align - 1) & ~(align - 1);
    size_t body = (vt->size + alignof(max_align_t) - 1) &
                  ~(alignof(max_align_t) - 1);
    pd_task *t;
    void *mem;

    if (posix_memalign(&mem, align, head + body + vt->out_size) != 0)
        return NULL;
    t = mem;
    memset(t, 0, sizeof(*t));
    t->rt = rt;
    t->vt = vt;
    t->poll = vt->poll;
    t->self = (char *)mem + head;
    t->out = vt->out_size ? (char *)mem + head + body : NULL;
    t->refs = 1;
    t->state = PD_TASK_RUNNING;
    *self = t->self;
    return t;
}

void pd_task_start(pd_task *t)
{
    pd_runtime *rt = t->rt;

    pd__owner_check(rt, "pd_task_start");
    if (t->flags & PD__TASK_STARTED)
        return;
    t->flags |= PD__TASK_STARTED;
    t->refs++;
    pd__live_link(rt, t);
    if (rt->shutting_down || (t->flags & PD__TASK_CANCEL))
        t->state = PD_TASK_DROPPING;
    if (PD__UNLIKELY(rt->forcing))
        pd__task_force(rt, t);
    pd__wake(t);
}

/* pd_task_cancel without the caller's checks: the runtime's own shutdown. */
void pd__task_cancel(pd_task *t)
{
    if (!(t->flags & PD__TASK_STARTED)) {
        t->flags |= PD__TASK_CANCEL;
        return;
    }
    if (t->state != PD_TASK_RUNNING)
        return;
    t->state = PD_TASK_DROPPING;
    pd__wake(t);
}

void pd_task_cancel(pd_task *t)
{
    pd__task_check(t, "pd_task_cancel");
    pd__owner_check(t->rt, "pd_task_cancel");
    pd__task_cancel(t);
}

int pd_task_cancel_op(pd_task *t, pd_op *op)
{
    const char *self = t->self, *at = (const char *)op;
    int ret;

    pd__task_check(t, "pd_task_cancel_op");
    pd__owner_check(t->rt, "pd_task_cancel_op");
    if (op == NULL || at < self || at + sizeof(*op) > self + t->vt->size ||
        t->state == PD_TASK_DONE || t->state == PD_TASK_CANCELLED)
        return -EINVAL;
    if (op->st != PD__OP_BUSY)
        return -ENOENT;
    if (op->task != t)
        return -EINVAL;
    if (op->cancelled)
        return -EALREADY;
    /*
     * Room first, so that pd__op_cancel always queues: making room reaps,
     * and what it reaps may be this request's completion.
     */
    if (PD__UNLIKELY(pd__sq_full(t->rt))) {
        if ((ret = pd__sq_room(t->rt, 1)) < 0)
            return ret;
        if (op->st != PD__OP_BUSY)
            return -ENOENT;
    }
    pd__op_cancel(op);
    return 0;
}

int pd_task_state(const pd_task *t)
{
    pd__task_check(t, "pd_task_state");
    return t->state;
}

const void *pd_task_output(const pd_task *t)
{
    pd__task_check(t, "pd_task_output");
    if (t->state != PD_TASK_DONE)
        return NULL;
    return t->out ? t->out : (const void *)t;
}

void pd_task_release(pd_task *t)
{
    pd__task_check(t, "pd_task_release");
#ifdef PD_CHECKED
    if (t->released)
        pd__misuse(t->vt->name, pd__task_states[t->state & 3],
                   "pd_task_release twice: the caller's reference was already released");
#endif
    t->released = 1;
    pd__task_unref(t);
}


/* Cancels every live task; the shutdown lasts until none is left. */
void pd__shutdown_begin(pd_runtime *rt)
{
    pd_task *t;

    if (rt->live_head == NULL)
        return;
    rt->shutting_down = 1;
    for (t = pd__live_task(rt->live_head); t; t = pd__live_task(t->live.next))
        pd__task_cancel(t);
}

int pd_shutdown(pd_runtime *rt)
{
    pd__shutdown_begin(rt);
    if (rt->in_turn)
        return 0;
    return pd_run(rt);
}

/* now + ms, saturated: a deadline centuries away is no deadline. */
int64_t pd__deadline_at(long long ms)
{
    int64_t now = pd__now_ns();

    if (ms > (INT64_MAX - now) / 1000000)
        return INT64_MAX;
    return now + (int64_t)ms * 1000000;
}

int pd_shutdown_deadline(pd_runtime *rt, long long ms)
{
    if (ms < 0)
        return -EINVAL;
    pd__shutdown_begin(rt);
    pd__deadline_arm(rt, pd__deadline_at(ms));
    if (rt->in_turn)
        return 0;
    return pd_run(rt);
}

long long pd_clock_ms(void)
{
    return (long long)(pd__now_ns() / 1000000);
}

void pd_runtime_free(pd_runtime *rt)
{
    pd_task *t;

    if (!rt)
        return;
    if (rt->in_turn) {
        /* Freeing would pull the task being polled from under its poll. */
        fprintf(stderr, "polldrop: pd_runtime_free called from inside a task: "
                        "ignored (free the runtime after pd_run returns)\n");
        return;
    }
    /* Tasks sent here but never started: initialised, so dropped once. */
    t = atomic_exchange(&rt->inbox, NULL);
    while (t) {
        pd_task *next = t->next;

        t->vt->drop(t->self);
        pd__task_release_mem(t);
        t = next;
    }
    /*
     * Sync-drop first, so that every kernel-owned buffer comes back... A
     * task's future may destroy another task (a pd_join drops the task it
     * awaits): the flag, set first, keeps each from being destroyed twice.
     */
    for (t = pd__live_task(rt->live_head); t; t = pd__live_task(t->live.next))
        if (pd__task_live(t)) {
            t->flags |= PD__TASK_FREED_DROP;
            t->vt->drop(t->self);
        }
    /*
     * ...then free: nothing can touch the tasks any more. A task that
     * finished but is still queued leaves the queue: freed now if nobody
     * holds it, or by the caller's pd_task_release.
     */
    *rt->ready_tailp = NULL; /* ends the queue (pd__wake_on) */
    while ((t = rt->ready_head) != NULL) {
        rt->ready_head = t->next;
        t->queued = 0;
        if (t->state >= PD_TASK_DONE)
            pd__task_free_if_unused(t);
    }
    rt->ready_tailp = &rt->ready_head;
    pd__checked_ring_closing(rt);
    while ((t = pd__live_task(rt->live_head)) != NULL) {
        pd__live_unlink(rt, t);
        if (!(t->flags & PD__TASK_ROOT))
            pd__task_release_mem(t);
    }
    while (rt->groups) {
        if (pd__group_freeing)
            pd__group_freeing(rt->groups);
        pd__bufgroup_destroy(rt->groups);
    }
    pd__eng_exit(rt);
    close(rt->wake_fd);
    free(rt);
}
