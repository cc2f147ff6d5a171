/*
 * The polldrop runtime: one io_uring, one thread, an intrusive ready queue.
 *
 * A turn polls every task that was ready when the turn began, then submits
 * what they queued and reaps completions with a single io_uring_enter. A
 * completion only records its result in the op slot and queues the slot's
 * task; futures run only from the turn loop, so reaping is safe anywhere
 * (including inside a blocking sync drop).
 */
#include "polldrop.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pd_trace_fn pd__trace_fn;
static void *pd__trace_arg;

void pd_set_trace(pd_trace_fn fn, void *arg)
{
    pd__trace_arg = arg;
    pd__trace_fn = fn;
}

void pd__trace_emit(const char *future, pd_trace_event ev, const void *self)
{
    pd_trace_fn fn = pd__trace_fn;

    if (fn)
        fn(pd__trace_arg, future, ev, self);
}

void pd__fell_through(const char *future, const char *state)
{
    fprintf(stderr, "polldrop: %s: state %s fell through\n", future, state);
    abort();
}

/* --- ring setup --- */

static int pd__ring_init(pd_runtime *rt, unsigned entries, unsigned cfg_flags)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    size_t i = (cfg_flags & PD_CONFIG_NO_DEFER_TASKRUN) ? 1 : 0;
    int ret = -EINVAL;

    /* Older kernels reject flags they do not know with -EINVAL: fall back. */
    for (; i < sizeof(tries) / sizeof(tries[0]); i++) {
        ret = io_uring_queue_init(entries, &rt->ring, tries[i]);
        if (ret == 0) {
            rt->stats.ring_flags = tries[i];
            return 0;
        }
        if (ret != -EINVAL)
            return ret;
    }
    return ret;
}

int pd_runtime_new(pd_runtime **out, const pd_config *cfg)
{
    unsigned entries = cfg && cfg->entries ? cfg->entries : 256;
    unsigned flags = cfg ? cfg->flags : 0;
    pd_runtime *rt;
    int ret;

    *out = NULL;
    rt = calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    ret = pd__ring_init(rt, entries, flags);
    if (ret < 0) {
        free(rt);
        return ret;
    }
    if (rt->ring.features & IORING_FEAT_CQE_SKIP)
        rt->cancel_flags = IOSQE_CQE_SKIP_SUCCESS;
    *out = rt;
    return 0;
}

/* --- completions --- */

static int pd__mop_dispatch(pd_runtime *rt, pd__mop *m,
                            const struct io_uring_cqe *cqe, unsigned tag,
                            int force);

/*
 * Hands one completion to its slot. Returns 1 when the completion must stay
 * in the completion queue for now (a multishot slot's queue is full), so
 * that the reap stops there.
 */
static int pd__dispatch(pd_runtime *rt, const struct io_uring_cqe *cqe,
                        int force)
{
    uint64_t ud = cqe->user_data;
    pd__op *op;

    /* Cancel requests that found nothing: the op's own completion follows. */
    if (ud < PD__UD_RESERVED)
        return 0;
    op = (pd__op *)(uintptr_t)(ud & ~(uint64_t)3);
    if (op->ext)
        return pd__mop_dispatch(rt, (pd__mop *)op, cqe, (unsigned)(ud & 3),
                                force);
    if (!(ud & PD__TAG_TIMEOUT)) {
        op->res = cqe->res;
        op->cflags = cqe->flags;
    }
    if (--op->pending == 0) {
        op->st = PD__OP_READY;
        rt->stats.ops_completed++;
        pd__wake(op->task);
    }
    return 0;
}

/*
 * Reaps what the completion queue holds. With force, a full multishot
 * queue overflows out of line instead of stopping the reap: blocking sync
 * drops cannot let the owner run, yet must see their own completions.
 */
static unsigned pd__reap(pd_runtime *rt, int force)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;

    io_uring_for_each_cqe(&rt->ring, head, cqe) {
        if (pd__dispatch(rt, cqe, force))
            break;
        n++;
    }
    io_uring_cq_advance(&rt->ring, n);
    return n;
}

/* Transient failures of io_uring_enter that a retry resolves. */
static int pd__transient(int ret)
{
    return ret == -EINTR || ret == -EAGAIN || ret == -EBUSY || ret == -ETIME;
}

/*
 * Submits what is queued and collects completions; blocks for one when wait
 * is set. Returns 0 or a hard -errno.
 */
static int pd__enter(pd_runtime *rt, int wait)
{
    int ret;

    rt->stats.enter_calls++;
    if (wait)
        ret = io_uring_submit_and_wait(&rt->ring, 1);
    else
        ret = io_uring_submit_and_get_events(&rt->ring);
    pd__reap(rt, 0);
    if (ret < 0 && !pd__transient(ret))
        return ret;
    return 0;
}

struct io_uring_sqe *pd__sqe_slow(pd_runtime *rt, unsigned need)
{
    /*
     * The submission queue is full: hand it to the kernel and retry. -EBUSY
     * means the completion queue overflowed; reaping makes room.
     */
    for (;;) {
        int ret;

        rt->stats.enter_calls++;
        ret = io_uring_submit(&rt->ring);
        pd__reap(rt, 1);
        if (ret < 0 && !pd__transient(ret)) {
            rt->sq_err = ret;
            return NULL;
        }
        if (io_uring_sq_space_left(&rt->ring) >= need)
            return io_uring_get_sqe(&rt->ring);
        if (ret <= 0) {
            /* Nothing went in: wait for completions to free room. */
            rt->stats.enter_calls++;
            ret = io_uring_submit_and_wait(&rt->ring, 1);
            pd__reap(rt, 1);
            if (ret < 0 && !pd__transient(ret)) {
                rt->sq_err = ret;
                return NULL;
            }
        }
    }
}

void pd__link_timeout(pd_cx *cx, struct io_uring_sqe *sqe, pd__op *op)
{
    struct io_uring_sqe *t = io_uring_get_sqe(&cx->rt->ring);

    /* pd__op_sqe reserved two adjacent entries, so t cannot be NULL. */
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(t, cx->link_ts, 0);
    io_uring_sqe_set_data64(t, (uint64_t)(uintptr_t)op | 1);
    op->pending = 2;
    cx->link_ts = NULL;
}

void pd__op_cancel(pd__op *op)
{
    pd_runtime *rt;
    struct io_uring_sqe *sqe;

    if (op->st != PD__OP_BUSY || op->cancelled)
        return;
    rt = op->task->rt;
    sqe = io_uring_get_sqe(&rt->ring);
    if (!sqe)
        sqe = pd__sqe_slow(rt, 1);
    if (!sqe) {
        /*
         * The request is not lost: the owner is requeued, and quiescing
         * calls pd__op_cancel again on its next poll.
         */
        pd__wake(op->task);
        return;
    }
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, PD__UD_CANCEL);
    sqe->flags |= (uint8_t)rt->cancel_flags;
    op->cancelled = 1;
    rt->stats.cancels_submitted++;
}

/*
 * A sync drop that cannot reach the kernel has no safe way on: the kernel
 * may still write into the slot, so it aborts rather than let it be freed.
 */
static void pd__sync_check(int ret)
{
    if (ret < 0 && !pd__transient(ret)) {
        fprintf(stderr, "polldrop: io_uring_enter failed during a sync drop: "
                        "%s\n", strerror(-ret));
        abort();
    }
}

/*
 * Blocks until op's completions have all been reaped, cancelling it first.
 * Other completions that arrive meanwhile are dispatched as usual. If the
 * ring itself fails, there is no safe way on: the kernel may still write
 * into the slot, so this aborts rather than return and let it be freed.
 * Returns 1 if a completion was discarded, as pd__op_reap.
 */
int pd__op_quiesce_sync(pd__op *op)
{
    pd_runtime *rt;

    if (op->st == PD__OP_BUSY) {
        rt = op->task->rt;
        while (op->st == PD__OP_BUSY) {
            int ret;

            pd__op_cancel(op);
            rt->stats.enter_calls++;
            ret = io_uring_submit_and_wait(&rt->ring, 1);
            pd__reap(rt, 1);
            pd__sync_check(ret);
        }
    }
    return pd__op_reap(op);
}

/* --- extended slots: multishot requests and provided buffers --- */

/* Cancels by fd and user_data together (Linux 6.6); liburing 2.3 lacks it. */
#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)
#endif

/* Gives buffer bid back to g's ring and wakes the slots parked on g. */
static void pd__buf_put(pd_bufgroup *g, uint16_t bid)
{
    io_uring_buf_ring_add(g->br, g->base + (size_t)bid * g->size,
                          (unsigned)g->size, bid,
                          io_uring_buf_ring_mask(g->count), 0);
    io_uring_buf_ring_advance(g->br, 1);
    g->held--;
    while (g->waiters) {
        pd__mop *w = g->waiters;

        g->waiters = w->wnext;
        w->wnext = NULL;
        w->parked = 0;
        pd__wake(w->op.task);
    }
}

void pd_buf_release(pd_buf *b)
{
    if (b->group == NULL)
        return;
    pd__buf_put(b->group, b->id);
    *b = PD_BUF_EMPTY;
}

void pd__buf_keep(pd_buf *dst, pd_buf *src)
{
    pd_buf_release(dst);
    *dst = *src;
    *src = PD_BUF_EMPTY;
}

/* Releases a completion nobody will see: its fd is closed, its buffer returned. */
static void pd__mop_release(pd__mop *m, pd__cqe c)
{
    if (m->op.fdret && c.res >= 0)
        close(c.res);
    if (c.flags & IORING_CQE_F_BUFFER)
        pd__buf_put(m->group, (uint16_t)(c.flags >> IORING_CQE_BUFFER_SHIFT));
}

int pd__mop_pop(pd__mop *m, pd__cqe *c)
{
    if (m->qlen) {
        *c = m->q[m->qhead];
        m->qhead = (uint8_t)((m->qhead + 1) % PD__MOP_Q);
        m->qlen--;
        return 1;
    }
    if (m->ovf) {
        struct pd__ovf *o = m->ovf;

        *c = o->c;
        m->ovf = o->next;
        free(o);
        return 1;
    }
    return 0;
}

/* Keeps a completion for the owner; out of line only when forced to. */
static void pd__mop_push(pd_runtime *rt, pd__mop *m, pd__cqe c)
{
    struct pd__ovf *o, **pp;

    if (m->ovf == NULL && m->qlen < PD__MOP_Q) {
        m->q[(m->qhead + m->qlen) % PD__MOP_Q] = c;
        m->qlen++;
        return;
    }
    o = malloc(sizeof(*o));
    if (o == NULL) {
        fprintf(stderr, "polldrop: out of memory keeping a completion during "
                        "a sync drop\n");
        abort();
    }
    o->next = NULL;
    o->c = c;
    for (pp = &m->ovf; *pp; pp = &(*pp)->next)
        ;
    *pp = o;
    rt->stats.cqe_overflow++;
}

/* One completion the slot was owed has been reaped. */
static void pd__mop_unpend(pd_runtime *rt, pd__mop *m)
{
    if (--m->op.pending == 0) {
        m->op.st = PD__OP_IDLE;
        rt->stats.ops_completed++;
        pd__wake(m->op.task);
    }
}

static int pd__mop_dispatch(pd_runtime *rt, pd__mop *m,
                            const struct io_uring_cqe *cqe, unsigned tag,
                            int force)
{
    pd__cqe c = { cqe->res, cqe->flags };

    if (tag == PD__TAG_CANCEL) {
        /*
         * The cancel missed (multishot requests can be between two
         * completions, liburing #1375; and Linux 6.0-6.4 answer -ENOENT
         * even when they do end the request). While the request is still
         * armed, the owner cancels again on its next poll, by fd and
         * user_data from the second try on.
         */
        if (c.res == -EINVAL && m->tries > 1)
            rt->no_cancel_fd = 1;
        if (c.res < 0 && m->armed) {
            m->op.cancelled = 0;
            pd__wake(m->op.task);
        }
        pd__mop_unpend(rt, m);
        return 0;
    }
    if (tag == PD__TAG_TIMEOUT) {
        pd__mop_unpend(rt, m);
        return 0;
    }
    if (!m->discard && !force && (m->qlen == PD__MOP_Q || m->ovf != NULL))
        return 1;
    if (c.flags & IORING_CQE_F_BUFFER)
        m->group->held++;
    if (!(c.flags & IORING_CQE_F_MORE))
        m->armed = 0;
    if (m->discard)
        pd__mop_release(m, c);
    else
        pd__mop_push(rt, m, c);
    pd__wake(m->op.task);
    if (!(c.flags & IORING_CQE_F_MORE))
        pd__mop_unpend(rt, m);
    return 0;
}

struct io_uring_sqe *pd__mop_sqe(pd_cx *cx, pd__mop *m, int fd, int multi,
                                 pd_bufgroup *g, uint8_t fdret)
{
    struct io_uring_sqe *sqe;

    m->group = g;
    m->wnext = NULL;
    m->ovf = NULL;
    m->fd = fd;
    m->qhead = m->qlen = 0;
    m->armed = m->parked = m->discard = m->tries = 0;
    m->multi = (uint8_t)multi;
    if (g != NULL && g->held >= g->count) {
        /* Parked: pd__buf_put wakes the owner, whose poll arms again. */
        m->op = (pd__op){ .task = cx->task, .fdret = fdret, .ext = 1 };
        m->parked = 1;
        m->wnext = g->waiters;
        g->waiters = m;
        cx->link_ts = NULL;
        return NULL;
    }
    sqe = pd__op_sqe(cx, &m->op, fdret);
    m->op.ext = 1;
    if (sqe == NULL) {
        /* The ring is broken: the error is the request's only completion. */
        m->op.st = PD__OP_IDLE;
        m->q[0] = (pd__cqe){ m->op.res, 0 };
        m->qlen = 1;
        return NULL;
    }
    m->armed = 1;
    return sqe;
}

static void pd__mop_unpark(pd__mop *m)
{
    pd__mop **pp;

    if (!m->parked)
        return;
    for (pp = &m->group->waiters; *pp; pp = &(*pp)->wnext)
        if (*pp == m) {
            *pp = m->wnext;
            break;
        }
    m->wnext = NULL;
    m->parked = 0;
}

void pd__mop_reap(pd__mop *m)
{
    pd__cqe c;

    while (pd__mop_pop(m, &c))
        pd__mop_release(m, c);
}

void pd__mop_cancel(pd__mop *m)
{
    pd_runtime *rt = m->op.task->rt;
    struct io_uring_sqe *sqe;

    /* From now on nothing reaches a then: what is queued goes back now. */
    m->discard = 1;
    pd__mop_reap(m);
    pd__mop_unpark(m);
    if (!m->armed || m->op.cancelled)
        return;
    sqe = io_uring_get_sqe(&rt->ring);
    if (!sqe)
        sqe = pd__sqe_slow(rt, 1);
    if (!sqe) {
        pd__wake(m->op.task); /* retried on the owner's next poll */
        return;
    }
    if (m->tries > 0 && !rt->no_cancel_fd) {
        io_uring_prep_cancel_fd(sqe, m->fd, IORING_ASYNC_CANCEL_USERDATA);
        sqe->addr = (uint64_t)(uintptr_t)m;
    } else {
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)m, 0);
    }
    /* No CQE_SKIP_SUCCESS: the result says whether to cancel again. */
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)m | PD__TAG_CANCEL);
    m->op.pending++;
    m->op.cancelled = 1;
    m->tries++;
    rt->stats.cancels_submitted++;
}

int pd__mop_quiesce_sync(pd__mop *m)
{
    pd_runtime *rt = m->op.task->rt;

    pd__mop_cancel(m);
    while (m->op.pending) {
        int ret;

        pd__mop_cancel(m);
        rt->stats.enter_calls++;
        ret = io_uring_submit_and_wait(&rt->ring, 1);
        pd__reap(rt, 1);
        pd__sync_check(ret);
    }
    pd__mop_reap(m);
    return 0;
}

/* --- buffer groups --- */

#define PD__BUF_RING_MAX 32768u

int pd_bufgroup_new(pd_runtime *rt, unsigned count, size_t size,
                    pd_bufgroup **out)
{
    struct io_uring_buf_reg reg;
    long page = sysconf(_SC_PAGESIZE);
    pd_bufgroup *g, *o;
    unsigned bgid = 0, i;
    void *br = NULL, *base = NULL;
    int ret;

    *out = NULL;
    if (count == 0 || count > PD__BUF_RING_MAX || (count & (count - 1)) ||
        size == 0 || size > UINT32_MAX || size > SIZE_MAX / count)
        return -EINVAL;
    /* The lowest group id no live group uses. */
    for (;;) {
        for (o = rt->groups; o && o->bgid != bgid; o = o->next)
            ;
        if (o == NULL)
            break;
        if (++bgid > UINT16_MAX)
            return -ENOSPC;
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return -ENOMEM;
    if (posix_memalign(&br, (size_t)(page > 0 ? page : 4096),
                       count * sizeof(struct io_uring_buf)) != 0 ||
        posix_memalign(&base, 64, count * size) != 0) {
        free(br);
        free(g);
        return -ENOMEM;
    }
    io_uring_buf_ring_init(br);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = count;
    reg.bgid = (uint16_t)bgid;
    ret = io_uring_register_buf_ring(&rt->ring, &reg, 0);
    if (ret < 0) {
        free(base);
        free(br);
        free(g);
        return ret;
    }
    g->rt = rt;
    g->br = br;
    g->base = base;
    g->size = size;
    g->count = count;
    g->bgid = (uint16_t)bgid;
    for (i = 0; i < count; i++)
        io_uring_buf_ring_add(g->br, g->base + (size_t)i * size,
                              (unsigned)size, (unsigned short)i,
                              io_uring_buf_ring_mask(count), (int)i);
    io_uring_buf_ring_advance(g->br, (int)count);
    g->next = rt->groups;
    rt->groups = g;
    *out = g;
    return 0;
}

static void pd__bufgroup_destroy(pd_bufgroup *g)
{
    pd_bufgroup **pp;

    for (pp = &g->rt->groups; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    io_uring_unregister_buf_ring(&g->rt->ring, g->bgid);
    free(g->base);
    free(g->br);
    free(g);
}

void pd_bufgroup_free(pd_bufgroup *g)
{
    if (g == NULL)
        return;
    if (g->held != 0 || g->waiters != NULL) {
        fprintf(stderr, "polldrop: pd_bufgroup_free: group %u still in use "
                        "(%u buffers held%s)\n", g->bgid, g->held,
                g->waiters ? ", a recv waiting for one" : "");
        abort();
    }
    pd__bufgroup_destroy(g);
}

unsigned pd_bufgroup_available(const pd_bufgroup *g)
{
    return g->count - g->held;
}

/* --- tasks --- */

static void pd__live_link(pd_runtime *rt, pd_task *t)
{
    t->live_prev = NULL;
    t->live_next = rt->live_head;
    if (rt->live_head)
        rt->live_head->live_prev = t;
    rt->live_head = t;
    rt->stats.live_tasks++;
}

static void pd__live_unlink(pd_runtime *rt, pd_task *t)
{
    if (t->live_prev)
        t->live_prev->live_next = t->live_next;
    else
        rt->live_head = t->live_next;
    if (t->live_next)
        t->live_next->live_prev = t->live_prev;
    t->live_prev = t->live_next = NULL;
    rt->stats.live_tasks--;
}

/* Removes t from the ready queue; linear, used only off the hot path. */
static void pd__unqueue(pd_runtime *rt, pd_task *t)
{
    pd_task **pp = &rt->ready_head, *prev = NULL;

    while (*pp && *pp != t) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = t->next;
        if (rt->ready_tail == t)
            rt->ready_tail = prev;
    }
    t->queued = 0;
}

/*
 * Frees t if nothing can reach it any more: no reference, not on the ready
 * queue, and not pd_block_on's stack task. Callers must have made sure its
 * future is destroyed (or was never started).
 */
static void pd__task_free_if_unused(pd_task *t)
{
    if (t->refs == 0 && !t->queued && !(t->flags & PD__TASK_ROOT))
        free(t);
}

static void pd__task_unref(pd_task *t)
{
    t->refs--;
    pd__task_free_if_unused(t);
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

    if (t->flags & PD__TASK_STARTED)
        return;
    t->flags |= PD__TASK_STARTED;
    t->refs++;
    pd__live_link(rt, t);
    if (rt->shutting_down || (t->flags & PD__TASK_CANCEL))
        t->state = PD_TASK_DROPPING;
    pd__wake(t);
}

void pd_task_cancel(pd_task *t)
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

int pd_task_state(const pd_task *t)
{
    return t->state;
}

const void *pd_task_output(const pd_task *t)
{
    if (t->state != PD_TASK_DONE)
        return NULL;
    return t->out ? t->out : (const void *)t;
}

void pd_task_release(pd_task *t)
{
    pd__task_unref(t);
}

/* The task's future is destroyed: it leaves the live set. */
static void pd__task_finish(pd_runtime *rt, pd_task *t)
{
    t->state = t->has_output ? PD_TASK_DONE : PD_TASK_CANCELLED;
    pd__live_unlink(rt, t);
    if (rt->live_head == NULL)
        rt->shutting_down = 0;
}

/*
 * Polls t once. Returns 1 if its future was destroyed by this poll; the
 * caller then drops the runtime's reference (not before: t is still in use).
 */
static int pd__task_poll(pd_runtime *rt, pd_cx *cx, pd_task *t)
{
    cx->task = t;
    rt->stats.polls++;
    if (PD__LIKELY(t->state == PD_TASK_RUNNING)) {
        if (t->vt->poll(t->self, cx, t->out) == PD_PENDING)
            return 0;
        t->has_output = 1;
        t->state = PD_TASK_DROPPING;
    } else if (t->state != PD_TASK_DROPPING) {
        return 0;
    }
    if (t->vt->poll_drop(t->self, cx) == PD_PENDING)
        return 0;
    pd__task_finish(rt, t);
    return 1;
}

/* Detects a run that can never progress: nothing queued, nothing in flight. */
static int pd__stuck(const pd_runtime *rt)
{
    return rt->ready_head == NULL &&
           rt->stats.ops_submitted == rt->stats.ops_completed;
}

int pd_run_once(pd_runtime *rt, int wait)
{
    pd_task *batch = rt->ready_head;
    pd_cx cx = { rt, NULL, NULL };
    int ret;

    if (rt->in_turn)
        return -EBUSY;
    rt->in_turn = 1;
    /* Tasks woken while this batch runs are polled next turn (fairness). */
    rt->ready_head = rt->ready_tail = NULL;
    while (batch) {
        pd_task *t = batch;

        batch = t->next;
        t->queued = 0;
        if (pd__task_poll(rt, &cx, t))
            pd__task_unref(t);
        else if (PD__UNLIKELY(t->state >= PD_TASK_DONE))
            pd__task_free_if_unused(t); /* finished earlier while queued */
    }
    rt->in_turn = 0;
    ret = pd__enter(rt, wait && rt->ready_head == NULL && !pd__stuck(rt));
    if (ret < 0)
        return ret;
    return (int)rt->stats.live_tasks;
}

int pd_run(pd_runtime *rt)
{
    while (rt->live_head) {
        int ret;

        if (pd__stuck(rt))
            return -EDEADLK;
        ret = pd_run_once(rt, 1);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int pd_block_on(pd_runtime *rt, pd_dyn fut, void *out)
{
    pd_task root;
    int ret = 0;

    if (rt->in_turn)
        return -EBUSY;
    memset(&root, 0, sizeof(root));
    root.rt = rt;
    root.vt = fut.vt;
    root.self = fut.self;
    root.out = out;
    root.refs = 1;
    root.state = PD_TASK_RUNNING;
    root.flags = PD__TASK_ROOT;
    pd_task_start(&root);
    while (root.state == PD_TASK_RUNNING || root.state == PD_TASK_DROPPING) {
        if (pd__stuck(rt)) {
            /*
             * Nothing can wake the future again. Destroy it anyway so that
             * it is never left half-alive on the caller's stack.
             */
            fut.vt->drop(fut.self);
            pd__live_unlink(rt, &root);
            return -EDEADLK;
        }
        ret = pd_run_once(rt, 1);
        if (ret < 0) {
            fut.vt->drop(fut.self);
            if (root.queued)
                pd__unqueue(rt, &root);
            pd__live_unlink(rt, &root);
            return ret;
        }
    }
    if (root.queued)
        pd__unqueue(rt, &root);
    return root.state == PD_TASK_DONE ? 0 : -ECANCELED;
}

int pd_shutdown(pd_runtime *rt)
{
    pd_task *t;

    rt->shutting_down = 1;
    for (t = rt->live_head; t; t = t->live_next)
        pd_task_cancel(t);
    if (rt->in_turn)
        return 0;
    return pd_run(rt);
}

void pd_runtime_stats(const pd_runtime *rt, pd_stats *s)
{
    *s = rt->stats;
    s->inflight_ops = rt->stats.ops_submitted - rt->stats.ops_completed;
}

void pd_runtime_free(pd_runtime *rt)
{
    pd_task *t;

    if (!rt)
        return;
    /* Sync-drop first, so that every kernel-owned buffer comes back... */
    for (t = rt->live_head; t; t = t->live_next)
        if (t->state == PD_TASK_RUNNING || t->state == PD_TASK_DROPPING)
            t->vt->drop(t->self);
    /*
     * ...then free: nothing can touch the tasks any more. A task that
     * finished but is still queued leaves the queue: freed now if nobody
     * holds it, or by the caller's pd_task_release.
     */
    while ((t = rt->ready_head) != NULL) {
        rt->ready_head = t->next;
        t->queued = 0;
        if (t->state >= PD_TASK_DONE)
            pd__task_free_if_unused(t);
    }
    rt->ready_tail = NULL;
    while ((t = rt->live_head) != NULL) {
        pd__live_unlink(rt, t);
        if (!(t->flags & PD__TASK_ROOT))
            free(t);
    }
    while (rt->groups)
        pd__bufgroup_destroy(rt->groups);
    io_uring_queue_exit(&rt->ring);
    free(rt);
}

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
