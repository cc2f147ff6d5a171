/*
 * Extended op slots (multishot requests, requests that take a provided
 * buffer), the dispatch of every completion but a plain op's result (most
 * of them are extended slots'), and buffer groups (registered buffer
 * rings).
 */
#include "rt_internal.h"
#include "bufwin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/*
 * What the kernel writes into a provided buffer, memcheck cannot see:
 * under valgrind, the bytes a completion says it received are marked
 * defined. Elsewhere (and without the header) this costs nothing.
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define PD__KERNEL_WROTE(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#endif
#endif
#ifndef PD__KERNEL_WROTE
#define PD__KERNEL_WROTE(p, n) ((void)(p), (void)(n))
#endif

/* --- extended slots: multishot requests and provided buffers --- */

/* Cancels by fd and user_data together (Linux 6.6); liburing 2.3 lacks it. */
#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)
#endif

/* Gives buffer bid back to g (bufwin.h) and wakes the slots parked on g. */
static void pd__buf_put(pd_bufgroup *g, uint16_t bid)
{
    pd__bufwin_put(g, bid);
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

static int pd__mop_take(pd__mop *m, pd__cqe *c)
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

/*
 * A multishot accept that ran out of descriptors or kernel memory
 * (-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM) ended; the connection that made it
 * fail is still queued. A server must not stop serving for that, nor spin
 * on it: the end is not delivered, and the slot arms a timer of
 * PD__ACCEPT_BACKOFF_MS instead, whose end (pd__mop_dispatch) lets the
 * owner's next poll arm the accept again. Not after STOP() or a cancel:
 * those deliver or discard every end as it is.
 */
static int pd__mop_out_of_fds(const pd__mop *m, const pd__cqe *c)
{
    return m->multi && m->op.fdret && !m->stop && !m->discard &&
           !(c->flags & IORING_CQE_F_MORE) &&
           (c->res == -EMFILE || c->res == -ENFILE || c->res == -ENOBUFS ||
            c->res == -ENOMEM);
}

static const struct __kernel_timespec pd__accept_backoff = {
    .tv_sec = PD__ACCEPT_BACKOFF_MS / 1000,
    .tv_nsec = PD__ACCEPT_BACKOFF_MS % 1000 * 1000000L,
};

/*
 * Pops the next completion for the owner's then, in the owner's poll. An
 * accept's end for want of descriptors is taken here and turned into the
 * backoff timer; if the ring cannot take the timer, its error is the end
 * the owner sees.
 */
int pd__mop_pop(pd__mop *m, pd__cqe *c)
{
    pd_cx cx;
    struct io_uring_sqe *sqe;

    if (!pd__mop_take(m, c))
        return 0;
    if (PD__LIKELY(c->res >= 0) || !pd__mop_out_of_fds(m, c) || m->qlen || m->ovf)
        return 1;
    cx = (pd_cx){ m->op.task->rt, m->op.task, NULL };
    sqe = pd__mop_sqe(&cx, m, m->fd, 1, NULL, 1);
    if (sqe == NULL)
        return pd__mop_take(m, c);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&pd__accept_backoff, 0, 0);
    pd__mop_arm(&cx, sqe, m);
    m->backoff = 1;
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

    if (tag != 0)
        pd__checked_cqe(cqe);
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
    if (PD__UNLIKELY(m->backoff)) {
        /*
         * The backoff timer's end: nothing for the owner, whose poll arms
         * the accept again; after STOP(), the request's last end.
         */
        pd__checked_cqe(cqe);
        m->backoff = 0;
        m->armed = 0;
        if (m->stop && !m->discard)
            pd__mop_push(rt, m, (pd__cqe){ -ECANCELED, 0 });
        pd__mop_unpend(rt, m);
        return 0;
    }
    if (!m->discard && !force && (m->qlen == PD__MOP_Q || m->ovf != NULL))
        return 1;
    pd__checked_cqe(cqe);
    if (c.flags & IORING_CQE_F_BUFFER) {
        pd__bufwin_taken(m->group);
        if (c.res > 0)
            PD__KERNEL_WROTE(m->group->base + (size_t)(c.flags >> IORING_CQE_BUFFER_SHIFT) *
                             m->group->size, (size_t)c.res);
    }
    if (!(c.flags & IORING_CQE_F_MORE)) {
        m->armed = 0;
        if (m->group != NULL)
            m->group->armed--;
        if (m->group != NULL && c.res == -ENOBUFS)
            pd__bufwin_starved(m->group);
    }
    if (m->discard)
        pd__mop_release(m, c);
    else
        pd__mop_push(rt, m, c);
    pd__wake(m->op.task);
    if (!(c.flags & IORING_CQE_F_MORE))
        pd__mop_unpend(rt, m);
    return 0;
}

/* --- completions: every one but a plain op's result --- */

/*
 * A completion with a reserved tag: only wakes need anything done. The
 * wake is over once its read completes, so wake_sent is cleared here, in
 * the turn whose wait the wake ended: a pd_runtime_wake that found it set
 * came before this, so the pd_run_once returning now returns after it,
 * and one that finds it clear writes the eventfd again. Clearing it later
 * (when the inbox is read, a turn on) would merge a wake into one already
 * consumed, and the next blocking wait would not end for it.
 */
static void pd__dispatch_tag(pd_runtime *rt, uint64_t ud)
{
    if (ud == PD__UD_WAKE_EFD) {
        rt->wake_unarmed = 1;
        rt->remote_pending = 1;
        atomic_exchange(&rt->wake_sent, 0);
    }
}

/*
 * Every completion but a plain op's one result: a reserved tag, an
 * extended slot's, a linked timeout's (the op's address tagged
 * PD__TAG_TIMEOUT), and a plain op's tagged PD__TAG_RARE: the result of
 * an op whose linked timeout completes too, or the two of a zero-copy send
 * -- its result comes with IORING_CQE_F_MORE, and its notification
 * (IORING_CQE_F_NOTIF, whose res is not the result) follows; only then may
 * the buffer and the slot be reused. Returns as pd__dispatch.
 */
__attribute__((noinline)) int pd__dispatch_rare(pd_runtime *rt,
                                                const struct io_uring_cqe *cqe,
                                                int force)
{
    uint64_t ud = cqe->user_data;
    pd__op *op = (pd__op *)(uintptr_t)(ud & ~(uint64_t)7);

    /*
     * One compare keeps out both reserved ranges: small tags (cancel
     * requests that found nothing; the op's own completion follows) and
     * LIBURING_UDATA_TIMEOUT, the timeout liburing queues for a timed wait
     * on kernels without IORING_FEAT_EXT_ARG.
     */
    if (ud - PD__UD_RESERVED >= UINT64_MAX - PD__UD_RESERVED) {
        pd__dispatch_tag(rt, ud);
        return 0;
    }
    if (ud & PD__TAG_EXT)
        return pd__mop_dispatch(rt, (pd__mop *)op, cqe, (unsigned)(ud & 3), force);
    pd__checked_cqe(cqe);
    if (!(ud & 1)) {
        if (!(cqe->flags & IORING_CQE_F_NOTIF)) {
            op->res = cqe->res;
            op->cflags = cqe->flags;
        }
        if (cqe->flags & IORING_CQE_F_MORE)
            return 0;
    }
    if (--op->pending == 0)
        pd__op_done(rt, op);
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
    m->armed = m->parked = m->discard = m->tries = m->stop = m->backoff = 0;
    m->multi = (uint8_t)multi;
    if (g != NULL && g->held >= g->count) {
        /* Parked: pd__buf_put wakes the owner, whose poll arms again. */
        m->op = (pd__op){ .task = cx->task, .fdret = fdret };
        m->parked = 1;
        m->wnext = g->waiters;
        g->waiters = m;
        cx->link_ts = NULL;
        return NULL;
    }
    sqe = pd__op_sqe(cx, &m->op, fdret);
    if (sqe == NULL) {
        /* The ring is broken: the error is the request's only completion. */
        m->op.st = PD__OP_IDLE;
        m->q[0] = (pd__cqe){ m->op.res, 0 };
        m->qlen = 1;
        return NULL;
    }
    m->armed = 1;
    if (g != NULL)
        g->armed++;
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

/* Releases every completion the slot holds. */
static void pd__mop_drain(pd__mop *m)
{
    pd__cqe c;

    while (pd__mop_take(m, &c))
        pd__mop_release(m, c);
}

void pd__mop_reap(pd__mop *m)
{
    pd__checked_release(&m->op);
    pd__mop_drain(m);
}

/* Asks the kernel to end m's request, once per try; see pd__mop_cancel. */
static void pd__mop_cancel_send(pd__mop *m)
{
    pd_runtime *rt = m->op.task->rt;
    struct io_uring_sqe *sqe;

    if (!m->armed || m->op.cancelled)
        return;
    if (PD__UNLIKELY(pd__sq_full(rt))) {
        if (pd__sq_room(rt, 1) < 0) {
            pd__wake(m->op.task); /* retried on the owner's next poll */
            return;
        }
        /*
         * Making room reaped: the request may have ended meanwhile, and a
         * cancel for it would be owed a result nobody counts on.
         */
        if (!m->armed)
            return;
    }
    sqe = pd__sq_claim(rt);
    if (m->tries > 0 && !rt->no_cancel_fd) {
        io_uring_prep_cancel_fd(sqe, m->fd, IORING_ASYNC_CANCEL_USERDATA);
        sqe->addr = (uint64_t)(uintptr_t)m | PD__TAG_EXT;
    } else {
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)m | PD__TAG_EXT, 0);
    }
    /* No CQE_SKIP_SUCCESS: the result says whether to cancel again. */
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)m | PD__TAG_EXT |
                                 PD__TAG_CANCEL);
    m->op.pending++;
    pd__checked_owe(&m->op);
    m->op.cancelled = 1;
    m->tries++;
    rt->stats.cancels_submitted++;
    rt->cancel_tw = 1;
}

void pd__mop_cancel(pd__mop *m)
{
    /* From now on nothing reaches a then: what is queued goes back now. */
    m->discard = 1;
    pd__mop_drain(m);
    pd__mop_unpark(m);
    pd__mop_cancel_send(m);
}

/*
 * STOP() in a multishot then: the request is cancelled, but the future
 * stays in its state and every completion the kernel still posts is
 * delivered to then as usual, the last one without IORING_CQE_F_MORE. A
 * cancel that misses is sent again by pd__mop_restop, on the owner's poll.
 */
void pd__mop_stop(pd__mop *m)
{
    m->stop = 1;
    pd__mop_cancel_send(m);
}

int pd__mop_quiesce_sync(pd__mop *m)
{
    pd_runtime *rt = m->op.task->rt;

    pd__mop_cancel(m);
    while (m->op.pending) {
        int ret;

        pd__mop_cancel(m);
        rt->stats.enter_calls++;
        ret = pd__eng_enter(rt, 1, NULL);
        pd__reap(rt, 1);
        pd__sync_check(ret);
    }
    pd__mop_reap(m);
    return 0;
}

/* --- buffer groups --- */

#define PD__BUF_RING_MAX 32768u

/*
 * A group id for a new group: the one freed last, or a new one. The stack
 * of freed ids always has room for every id given out, so that freeing a
 * group never needs memory. Returns 0, -ENOSPC once the 65536 ids are all
 * in use, or -ENOMEM.
 */
static int pd__bgid_take(pd_runtime *rt, unsigned *bgid)
{
    if (rt->bgids_free > 0) {
        *bgid = rt->bgid_free[--rt->bgids_free];
        return 0;
    }
    if (rt->bgid_next > UINT16_MAX)
        return -ENOSPC;
    /* Room doubles at each power of two: O(1) amortised. */
    if ((rt->bgid_next & (rt->bgid_next - 1)) == 0) {
        size_t room = rt->bgid_next ? 2 * (size_t)rt->bgid_next : 1;
        uint16_t *s = realloc(rt->bgid_free, room * sizeof(*s));

        if (s == NULL)
            return -ENOMEM;
        rt->bgid_free = s;
    }
    *bgid = rt->bgid_next++;
    return 0;
}

/*
 * Gives a group id back. Once no group is left, ids start again from 0 and
 * the stack goes, so that a runtime without groups holds no memory for it.
 */
static void pd__bgid_put(pd_runtime *rt, unsigned bgid)
{
    rt->bgid_free[rt->bgids_free++] = (uint16_t)bgid;
    if (rt->groups == NULL && rt->bgids_free == rt->bgid_next) {
        free(rt->bgid_free);
        rt->bgid_free = NULL;
        rt->bgids_free = rt->bgid_next = 0;
    }
}

int pd_bufgroup_new(pd_runtime *rt, unsigned count, size_t size,
                    pd_bufgroup **out)
{
    long page = sysconf(_SC_PAGESIZE);
    pd_bufgroup *g;
    unsigned bgid;
    void *br = NULL, *base = NULL;
    int ret;

    *out = NULL;
    if (count == 0 || count > PD__BUF_RING_MAX || (count & (count - 1)) ||
        size == 0 || size > UINT32_MAX || size > SIZE_MAX / count)
        return -EINVAL;
    ret = pd__bgid_take(rt, &bgid);
    if (ret < 0)
        return ret;
    g = calloc(1, sizeof(*g) + count * sizeof(g->spare[0]));
    if (g == NULL ||
        posix_memalign(&br, (size_t)(page > 0 ? page : 4096),
                       count * sizeof(struct io_uring_buf)) != 0 ||
        posix_memalign(&base, 64, count * size) != 0) {
        free(br);
        free(g);
        pd__bgid_put(rt, bgid);
        return -ENOMEM;
    }
    io_uring_buf_ring_init(br);
    ret = pd__eng_reg_buf_ring(rt, br, count, (uint16_t)bgid);
    if (ret < 0) {
        free(base);
        free(br);
        free(g);
        pd__bgid_put(rt, bgid);
        return ret;
    }
    g->rt = rt;
    g->br = br;
    g->base = base;
    g->size = size;
    g->count = count;
    g->bgid = (uint16_t)bgid;
    pd__bufwin_init(g);
    g->next = rt->groups;
    rt->groups = g;
    *out = g;
    return 0;
}

void pd__bufgroup_destroy(pd_bufgroup *g)
{
    pd_bufgroup **pp;

    for (pp = &g->rt->groups; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    pd__eng_unreg_buf_ring(g->rt, g->bgid);
    pd__bgid_put(g->rt, g->bgid);
    free(g->base);
    free(g->br);
    free(g);
}

void pd_bufgroup_free(pd_bufgroup *g)
{
    if (g == NULL)
        return;
    if (g->held != 0 || g->armed != 0 || g->waiters != NULL) {
        fprintf(stderr, "polldrop: pd_bufgroup_free: group %u still in use "
                        "(%u buffers held, %u recvs armed on it%s)\n", g->bgid,
                g->held, g->armed, g->waiters ? ", a recv waiting for one" : "");
        abort();
    }
    pd__bufgroup_destroy(g);
}

unsigned pd_bufgroup_available(const pd_bufgroup *g)
{
    return g->count - g->held;
}
