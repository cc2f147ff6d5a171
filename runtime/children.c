/*
 * Futures over futures: the arrays of child futures generated code
 * delegates to, pd_join (awaiting a spawned task) and pd_drop_async.
 */
#include "rt_internal.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>

/* --- arrays of child futures --- */

int pd__arr_active(const uint8_t *cs, unsigned n)
{
    unsigned i;
    int k = 0;

    for (i = 0; i < n; i++)
        k += !pd__arr_idle(cs, (int)i);
    return k;
}

int pd__arr_poll(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids,
                 void *outs, pd_cx *cx, int *busy)
{
    unsigned i;
    int w = -1;

    for (i = 0; i < n; i++) {
        if (cs[i] == PD__CH_IDLE || (cs[i] & PD__CH_SEEN))
            continue;
        if (!pd__child_poll(&cs[i], vt, (char *)kids + i * vt->size, cx,
                            (char *)outs + i * vt->out_size))
            *busy = 1;
        else if (w < 0)
            w = (int)i;
    }
    return w;
}

int pd__arr_quiesce(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids,
                    void *outs, pd_cx *cx, int keep)
{
    unsigned i;
    int done = 1;

    /* Last first, as a state's children are quiesced. */
    for (i = n; i-- > 0;) {
        if ((int)i == keep || cs[i] == PD__CH_IDLE || (cs[i] & PD__CH_SEEN))
            continue;
        pd__child_cancel(&cs[i]);
        if (!pd__child_poll(&cs[i], vt, (char *)kids + i * vt->size, cx,
                            (char *)outs + i * vt->out_size))
            done = 0;
    }
    return done;
}

void pd__arr_seen(uint8_t *cs, unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if ((cs[i] & 3) == PD__CH_DONE)
            cs[i] |= PD__CH_SEEN;
}

void pd__arr_drop_sync(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids)
{
    unsigned i;

    for (i = n; i-- > 0;)
        if (cs[i] != PD__CH_IDLE && !(cs[i] & PD__CH_SEEN))
            pd__child_drop_sync(&cs[i], vt, (char *)kids + i * vt->size);
}

void pd__arr_misuse(const char *future, const char *array, int i, int n)
{
    if (i < 0 || i >= n)
        fprintf(stderr, "polldrop: %s: START(%s, %d): no such member (the array "
                "has %d)\n", future, array, i, n);
    else
        fprintf(stderr, "polldrop: %s: START(%s, %d): member %d is still running "
                "(start a member only when IDLE(%s, %d))\n", future, array, i, i,
                array, i);
    abort();
}

/* --- pd_join: awaiting a spawned task --- */

void pd_join_init(pd_join *j, pd_task *task, void *out)
{
    j->task = task;
    j->out = out;
}


static pd_poll pd__join_poll(void *self, pd_cx *cx, void *out)
{
    pd_join *j = self;
    pd_task *t = j->task;
    int r;

    if (t == NULL) {
        r = -ENOMEM;
    } else if (pd__task_live(t)) {
        t->waiter = cx->task;
        return PD_PENDING;
    } else if (t->state == PD_TASK_DONE) {
        if (j->out && t->vt->out_size)
            memcpy(j->out, t->out, t->vt->out_size);
        r = 0;
    } else {
        r = -ECANCELED;
    }
    if (out)
        *(int *)out = r;
    return PD_READY;
}

/* The task is over: the handle gives up its reference. */
static void pd__join_release(pd_join *j)
{
    j->task->waiter = NULL;
    pd_task_release(j->task);
    j->task = NULL;
}

static pd_poll pd__join_poll_drop(void *self, pd_cx *cx)
{
    pd_join *j = self;
    pd_task *t = j->task;

    if (t == NULL)
        return PD_READY;
    if (pd__task_live(t)) {
        /* Cancelled, and awaited until its async drop is over. */
        pd__task_cancel(t);
        t->waiter = cx->task;
        return PD_PENDING;
    }
    pd__join_release(j);
    return PD_READY;
}

/*
 * Sync-drops a live task's future and finishes the task, so that the
 * runtime never destroys it again; a task whose future was destroyed
 * already is left alone. Destroyed here rather than by the runtime's poll,
 * which would have dropped the runtime's reference: so this drops it. A
 * task still on the ready queue is freed when the queue reaches it.
 */
void pd__task_drop_sync(pd_task *t)
{
    if (!pd__task_live(t))
        return;
    t->vt->drop(t->self);
    if (t->flags & PD__TASK_STARTED) {
        pd__task_finish(t->rt, t);
        t->refs--;
    } else {
        t->state = PD_TASK_CANCELLED;
    }
}

static void pd__join_drop(void *self)
{
    pd_join *j = self;
    pd_task *t = j->task;

    if (t == NULL)
        return;
    pd__task_drop_sync(t);
    pd__join_release(j);
}

const pd_vtable pd_join_vtable = {
    .name = "pd_join",
    .size = sizeof(pd_join),
    .align = alignof(pd_join),
    .out_size = sizeof(pd_join_out),
    .poll = pd__join_poll,
    .poll_drop = pd__join_poll_drop,
    .drop = pd__join_drop,
};

/* --- pd_drop_async --- */

void pd_drop_async_init(pd_drop_async *f, pd_dyn victim)
{
    f->victim = victim;
    f->done = 0;
}

static pd_poll pd__drop_async_poll(void *self, pd_cx *cx, void *out)
{
    pd_drop_async *f = self;

    (void)out;
    if (!f->done) {
        if (f->victim.vt->poll_drop(f->victim.self, cx) == PD_PENDING)
            return PD_PENDING;
        f->done = 1;
    }
    return PD_READY;
}

static pd_poll pd__drop_async_poll_drop(void *self, pd_cx *cx)
{
    /* Dropping the dropper finishes the victim: destruction is not skipped. */
    return pd__drop_async_poll(self, cx, NULL);
}

static void pd__drop_async_drop(void *self)
{
    pd_drop_async *f = self;

    if (!f->done) {
        f->victim.vt->drop(f->victim.self);
        f->done = 1;
    }
}

const pd_vtable pd_drop_async_vtable = {
    .name = "pd_drop_async",
    .size = sizeof(pd_drop_async),
    .align = alignof(pd_drop_async),
    .out_size = 0,
    .poll = pd__drop_async_poll,
    .poll_drop = pd__drop_async_poll_drop,
    .drop = pd__drop_async_drop,
};
