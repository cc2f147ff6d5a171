/*
 * The epoll engine's records: the pool they come from (chunks that never
 * move, grown when in-flight ops exceed it), the user_data hash that
 * cancellation looks ops up in, the timer heap (timeouts and linked
 * timeouts), and what ends a record: its last completion, a cancel, or its
 * linked timeout firing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_epoll.h"

#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)
#endif

/* --- records --- */

/* Buckets for n records: the next power of two. */
unsigned pd__ep_pow2(unsigned n)
{
    unsigned p = 1;

    while (p < n)
        p <<= 1;
    return p;
}

static unsigned pd__ep_hash_of(const pd__engine *e, uint64_t ud)
{
    return (unsigned)((ud * 0x9e3779b97f4a7c15ull) >> 32) & e->hmask;
}

void pd__ep_hash_add(pd__engine *e, pd__ep_op *r)
{
    pd__ep_op **b = &e->hash[pd__ep_hash_of(e, r->sqe.user_data)];

    r->hnext = *b;
    *b = r;
    r->flags |= PD__EPF_HASHED;
}

static void pd__ep_hash_del(pd__engine *e, pd__ep_op *r)
{
    pd__ep_op **pp = &e->hash[pd__ep_hash_of(e, r->sqe.user_data)];

    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    r->flags &= ~PD__EPF_HASHED;
}

/*
 * Adds a chunk of records. The hash and the timer heap are sized to the
 * record count, so they grow (and the hash is rebuilt) with it; records
 * themselves never move. Returns 0 or -ENOMEM.
 */
int pd__ep_grow(pd__engine *e)
{
    unsigned n = e->chunk_len, nrec = e->nrec + n, i, nb = pd__ep_pow2(nrec);
    pd__ep_op *c = calloc(n, sizeof(*c));
    pd__ep_op **chunks = realloc(e->chunks, (e->nchunks + 1) * sizeof(*chunks));
    pd__ep_op **heap, **hash;

    if (chunks != NULL)
        e->chunks = chunks;
    heap = chunks ? realloc(e->heap, nrec * sizeof(*heap)) : NULL;
    if (heap != NULL)
        e->heap = heap;
    hash = heap ? calloc(nb, sizeof(*hash)) : NULL;
    if (c == NULL || hash == NULL) {
        free(c);
        free(hash);
        return -ENOMEM;
    }
    e->chunks[e->nchunks++] = c;
    /* Handed out from the start of the chunk: untouched pages stay unmapped. */
    e->fresh = 0;
    /* Rebuild the hash with the records in it. */
    free(e->hash);
    e->hash = hash;
    e->hmask = nb - 1;
    for (i = 0; i + 1 < e->nchunks; i++) {
        unsigned j;

        for (j = 0; j < e->chunk_len; j++)
            if (e->chunks[i][j].flags & PD__EPF_HASHED)
                pd__ep_hash_add(e, &e->chunks[i][j]);
    }
    e->nrec = nrec;
    return 0;
}

/*
 * A record holding a copy of proto, or NULL when memory ran out: a freed
 * one, else the next never used in the newest chunk, else a new chunk.
 */
pd__ep_op *pd__ep_rec_new(pd__engine *e, const pd__ep_op *proto)
{
    pd__ep_op *r = e->free;

    if (r != NULL) {
        e->free = r->next;
    } else {
        if (e->fresh == e->chunk_len && pd__ep_grow(e) < 0)
            return NULL;
        r = &e->chunks[e->nchunks - 1][e->fresh++];
    }
    *r = *proto;
    r->next = r->hnext = NULL;
    r->ql.prev = r->ql.next = NULL;
    r->flags &= ~PD__EPF_HASHED;
    e->inuse++;
    return r;
}

void pd__ep_rec_free(pd__engine *e, pd__ep_op *r)
{
    r->state = PD__EP_FREE;
    r->flags = 0;
    r->next = e->free;
    e->free = r;
    e->inuse--;
}

/* --- timers: a binary heap of records, earliest deadline first --- */

static void pd__ep_heap_set(pd__engine *e, unsigned i, pd__ep_op *r)
{
    e->heap[i] = r;
    r->heap = i;
}

static void pd__ep_heap_up(pd__engine *e, unsigned i)
{
    pd__ep_op *r = e->heap[i];

    while (i > 0 && e->heap[(i - 1) / 2]->deadline > r->deadline) {
        pd__ep_heap_set(e, i, e->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    pd__ep_heap_set(e, i, r);
}

static void pd__ep_heap_down(pd__engine *e, unsigned i)
{
    pd__ep_op *r = e->heap[i];

    for (;;) {
        unsigned c = 2 * i + 1;

        if (c >= e->nheap)
            break;
        if (c + 1 < e->nheap && e->heap[c + 1]->deadline < e->heap[c]->deadline)
            c++;
        if (e->heap[c]->deadline >= r->deadline)
            break;
        pd__ep_heap_set(e, i, e->heap[c]);
        i = c;
    }
    pd__ep_heap_set(e, i, r);
}

void pd__ep_heap_push(pd__engine *e, pd__ep_op *r)
{
    pd__ep_heap_set(e, e->nheap++, r);
    pd__ep_heap_up(e, e->nheap - 1);
}

void pd__ep_heap_del(pd__engine *e, pd__ep_op *r)
{
    unsigned i = r->heap;
    pd__ep_op *last = e->heap[--e->nheap];

    if (last == r)
        return;
    pd__ep_heap_set(e, i, last);
    pd__ep_heap_up(e, i);
    pd__ep_heap_down(e, last->heap);
}

/*
 * The deadline of a timeout SQE (IORING_OP_TIMEOUT or LINK_TIMEOUT) as
 * CLOCK_MONOTONIC ns, or -errno. The timespec is read now, as the kernel
 * reads it at submission. Absolute times on the boot or real-time clock
 * are converted once: a clock step afterwards is not followed.
 */
int pd__ep_deadline(pd__engine *e, const struct io_uring_sqe *sqe, int64_t *out)
{
    const struct __kernel_timespec *ts = (const void *)(uintptr_t)sqe->addr;
    unsigned fl = sqe->timeout_flags;
    int64_t ns;

    if (sqe->len != 1 || ts == NULL ||
        (fl & ~(IORING_TIMEOUT_ABS | IORING_TIMEOUT_CLOCK_MASK | IORING_TIMEOUT_ETIME_SUCCESS)) ||
        (fl & IORING_TIMEOUT_CLOCK_MASK) == IORING_TIMEOUT_CLOCK_MASK)
        return -EINVAL;
    if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)
        return -EINVAL;
    ns = pd__ep_ts_ns(ts);
    if (fl & IORING_TIMEOUT_ABS) {
        struct timespec now;
        clockid_t clk = (fl & IORING_TIMEOUT_BOOTTIME) ? CLOCK_BOOTTIME
                        : (fl & IORING_TIMEOUT_REALTIME) ? CLOCK_REALTIME
                                                         : CLOCK_MONOTONIC;

        clock_gettime(clk, &now);
        ns -= (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        if (ns < 0)
            ns = 0;
    }
    *out = pd__ep_after(pd__ep_clock(e), ns);
    return 0;
}

/* --- finishing and cancelling records --- */

/*
 * A record's last completion. Its linked timeout, still armed, is disarmed
 * and completes with -ECANCELED after it, as the kernel's does; a socket's
 * timeout it was under leaves the heap. A connect that set O_NONBLOCK on
 * its socket gives the socket its mode back.
 */
void pd__ep_finish(pd__engine *e, pd__ep_op *r, int32_t res, uint32_t cflags)
{
    pd__ep_op *lt = r->link;

    if (r->flags & PD__EPF_HASHED)
        pd__ep_hash_del(e, r);
    if (r->flags & PD__EPF_INHEAP)
        pd__ep_heap_del(e, r);
    if (r->flags & PD__EPF_RESTORE)
        (void)fcntl(r->sqe.fd, F_SETFL, r->saved_fl);
    pd__ep_emit(e, &r->sqe, res, cflags);
    if (lt != NULL) {
        pd__ep_heap_del(e, lt);
        if (!(lt->sqe.flags & IOSQE_CQE_SKIP_SUCCESS))
            pd__ep_post(e, lt->sqe.user_data, -ECANCELED, 0);
        pd__ep_rec_free(e, lt);
    }
    pd__ep_rec_free(e, r);
}

/*
 * Stops a record that has not completed. Returns 0 when it was stopped
 * (the caller finishes it: pd__ep_stopped_res), or -EALREADY when a worker
 * runs it: it completes with its own result when the worker is done.
 */
int pd__ep_stop(pd__engine *e, pd__ep_op *r)
{
    switch (r->state) {
    case PD__EP_FDWAIT:
        pd__ep_fd_unwait(e, r);
        return 0;
    case PD__EP_TIMER:
        pd__ep_heap_del(e, r);
        return 0;
    default:
        return pd__ep_work_cancel(e, r);
    }
}

/*
 * The result of an op a cancel or its linked timeout stopped: -ECANCELED,
 * unless it already moved bytes (a MSG_WAITALL recv or send, a file read
 * that went to a worker after a partial read): then those bytes, as the
 * kernel's failed send, recv and read report them, since they are gone
 * from the socket or in the caller's buffer.
 */
int32_t pd__ep_stopped_res(const pd__ep_op *r)
{
    return r->done ? (int32_t)r->done : -ECANCELED;
}

/* Whether an op has a file (sqe->fd), as a cancel by fd sees it. */
static int pd__ep_uses_fd(unsigned op)
{
    switch (op) {
    case IORING_OP_NOP:
    case IORING_OP_TIMEOUT:
    case IORING_OP_LINK_TIMEOUT:
    case IORING_OP_ASYNC_CANCEL:
    case IORING_OP_OPENAT:
    case IORING_OP_OPENAT2:
    case IORING_OP_STATX:
    case IORING_OP_UNLINKAT:
    case IORING_OP_RENAMEAT:
    case IORING_OP_MKDIRAT:
    case IORING_OP_SOCKET:
        return 0;
    default:
        return 1;
    }
}

/* Whether a cancel SQE names r. */
static int pd__ep_cancel_match(const struct io_uring_sqe *c, const pd__ep_op *r)
{
    unsigned fl = c->cancel_flags;

    if (!(r->flags & PD__EPF_HASHED))
        return 0;
    if (fl & IORING_ASYNC_CANCEL_ANY)
        return 1;
    if (fl & IORING_ASYNC_CANCEL_FD) {
        if (!pd__ep_uses_fd(r->sqe.opcode) || r->sqe.fd != c->fd)
            return 0;
        return !(fl & IORING_ASYNC_CANCEL_USERDATA) || r->sqe.user_data == c->addr;
    }
    return r->sqe.user_data == c->addr;
}

/*
 * IORING_OP_ASYNC_CANCEL, by user_data, by fd (with or without user_data)
 * or any, once or all. Once: 0, -EALREADY (a worker runs it: it completes
 * later with its own result) or -ENOENT. All (or any): the number of
 * matches. Its own completion comes first, then the -ECANCELED of what it
 * stopped, as the kernel posts them.
 */
void pd__ep_cancel(pd__engine *e, const struct io_uring_sqe *sqe)
{
    const unsigned known = IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD |
                           IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_USERDATA;
    unsigned fl = sqe->cancel_flags, i = 0, j = 0;
    /* ANY implies ALL, as in the kernel. */
    int all = !!(fl & (IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY));
    int found = 0, nstopped = 0, res;
    /* What was stopped, chained through `next` (free once off its list). */
    pd__ep_op *stopped = NULL, **tail = &stopped, *r;

    if (fl & ~known) {
        pd__ep_emit(e, sqe, -EINVAL, 0);
        return;
    }
    /* By user_data alone: its hash chain. Otherwise every record. */
    r = (fl & (IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ANY))
            ? NULL
            : e->hash[pd__ep_hash_of(e, sqe->addr)];
    for (;;) {
        pd__ep_op *cur;

        if (!(fl & (IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ANY))) {
            if (r == NULL)
                break;
            cur = r;
            r = r->hnext;
        } else {
            if (i == e->nchunks || (i + 1 == e->nchunks && j == e->fresh))
                break;
            cur = &e->chunks[i][j];
            if (++j == e->chunk_len) {
                j = 0;
                i++;
            }
        }
        if (!pd__ep_cancel_match(sqe, cur))
            continue;
        found++;
        if (pd__ep_stop(e, cur) == 0) {
            cur->next = NULL;
            *tail = cur;
            tail = &cur->next;
            nstopped++;
        }
        if (!all)
            break;
    }
    if (all)
        res = found; /* every match, running ones included; 0 for none */
    else
        res = !found ? -ENOENT : nstopped ? 0 : -EALREADY;
    pd__ep_emit(e, sqe, res, 0);
    while ((r = stopped) != NULL) {
        stopped = r->next;
        pd__ep_finish(e, r, pd__ep_stopped_res(r), 0);
    }
}

/*
 * Fires the timers that are due: a timeout ends, a linked timeout cancels
 * its op, a splice whose socket's timeout passed ends with -EAGAIN.
 */
void pd__ep_timers(pd__engine *e)
{
    if (e->nheap == 0)
        return;
    pd__ep_clock(e);
    while (e->nheap && e->heap[0]->deadline <= e->now) {
        pd__ep_op *t = e->heap[0], *op;
        int ret;

        pd__ep_heap_del(e, t);
        if (t->state == PD__EP_TIMER) {
            pd__ep_finish(e, t, -ETIME, 0);
            continue;
        }
        if (t->flags & PD__EPF_INHEAP) {
            t->flags &= ~PD__EPF_INHEAP;
            pd__ep_fd_unwait(e, t);
            pd__ep_finish(e, t, -EAGAIN, 0);
            continue;
        }
        op = t->link;
        op->link = NULL;
        ret = pd__ep_stop(e, op);
        if (ret == 0)
            pd__ep_finish(e, op, pd__ep_stopped_res(op), 0);
        pd__ep_post(e, t->sqe.user_data, ret == 0 ? -ETIME : ret, 0);
        pd__ep_rec_free(e, t);
    }
}

/* Parks r on the timer heap until deadline (INT64_MAX: until cancelled). */
void pd__ep_timer_park(pd__engine *e, pd__ep_op *r, int64_t deadline)
{
    r->state = PD__EP_TIMER;
    r->deadline = deadline;
    pd__ep_heap_push(e, r);
}

/*
 * Starts one request (and its linked timeout, lt, if the SQE after it is
 * one): completes it at once, or parks it. Flags the engine cannot honour
 * fail the request as the kernel fails a request it cannot prepare.
 */
