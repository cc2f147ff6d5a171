/*
 * Completions and submission room: the out-of-line reap (the dispatch and
 * the reap loop are inline in rt_internal.h, for the turn's own entry; the
 * rare dispatch is in multishot.c), the kernel's deferred work, making room
 * in a full submission queue, the out-of-line claim and spill of an op's
 * entry, linked timeouts, cancels, blocking sync quiescing, and the
 * harness's hooks on the ring.
 */
#include "rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- completions --- */

/* pd__reap_inline out of line, for every caller but the turn's own enter. */
__attribute__((noinline)) unsigned pd__reap(pd_runtime *rt, int force)
{
    unsigned n = pd__reap_inline(rt, force);

    rt->reaped_aside += n;
    return n;
}

/* pd__drain_task_work's test in full, for what its inline test let through. */
__attribute__((noinline)) void pd__drain_check(pd_runtime *rt, unsigned n)
{
    if ((rt->stats.ring_flags & IORING_SETUP_DEFER_TASKRUN) && pd__task_work_left(rt, n) &&
        n < rt->ring.cq.ring_entries)
        pd__drain_more(rt, n);
}

/* The entries that run what the first left: see above. */
__attribute__((noinline)) void pd__drain_more(pd_runtime *rt, unsigned n)
{
    unsigned total = n;

    do {
        rt->stats.enter_calls++;
        if (pd__eng_get_events(rt) < 0)
            return;
        n = pd__reap(rt, 0);
        if (n == 0)
            return;
        total += n;
    } while (pd__task_work_left(rt, n) && total < rt->ring.cq.ring_entries);
}

/*
 * Makes room for need adjacent submission entries in a full queue: hands
 * the queue to the kernel and reaps, and waits for a completion when the
 * kernel took nothing. It reaps as a turn does, never with force: a
 * multishot slot whose queue is full stops the reap, and what is behind it
 * stays in the completion queue until its owner has run, so nothing is
 * stored out of line in an ordinary poll (invariant 4). The reap also
 * keeps the completion queue drained while a turn fills the submission
 * queue many times over, and each entry runs the kernel's deferred task
 * work, so that a queue full of cancels does not pile up cancelled
 * requests in the kernel's cancel lookup (see pd__drain_task_work). Not
 * reaping here would let the completion queue overflow into the kernel's
 * own list, which made `cancel_storm` several times slower (design.md §4).
 *
 * What it reaps is dispatched: a completion may have ended a request its
 * caller was about to cancel. A caller that decided from a slot's state
 * must look again once this returned, before it claims the entry (see
 * pd__op_cancel, pd__mop_cancel_send). Returns 0 once there is room, or
 * the -errno that stands in the way (also in rt->sq_err): the ring's hard
 * error, or -EBUSY when the kernel takes nothing while the completion
 * queue waits for a multishot slot's owner to run (a kernel that refuses
 * submissions while its completion queue overflows), which only that
 * owner's poll can end.
 */
int pd__sq_room(pd_runtime *rt, unsigned need)
{
    int ret;

    for (;;) {
        unsigned reaped;

        rt->stats.enter_calls++;
        ret = pd__eng_enter(rt, 0, NULL);
        reaped = pd__reap(rt, 0);
        pd__drain_task_work(rt, reaped);
        if (ret < 0 && !pd__transient(ret))
            break;
        if (io_uring_sq_space_left(&rt->ring) >= need)
            return 0;
        if (need > rt->ring.sq.ring_entries) {
            /* Unreachable with pd_runtime_new's minimum; never wait forever. */
            ret = -EINVAL;
            break;
        }
        if (ret > 0 || reaped > 0 || ret == -EINTR)
            continue;
        if (io_uring_cq_ready(&rt->ring) != 0) {
            /* Reaped now, unless it waits for a full multishot slot's owner. */
            if (pd__reap(rt, 0) > 0)
                continue;
            ret = -EBUSY;
            break;
        }
        /* Nothing went in and nothing is posted: wait for a completion. */
        rt->stats.enter_calls++;
        ret = pd__eng_enter(rt, 1, NULL);
        if (ret < 0 && !pd__transient(ret))
            break;
        pd__drain_task_work(rt, pd__reap(rt, 0));
    }
    rt->sq_err = ret;
    return ret;
}

struct io_uring_sqe *pd__sqe_slow(pd_runtime *rt, unsigned need)
{
    return pd__sq_room(rt, need) < 0 ? NULL : pd__sq_claim(rt);
}

struct io_uring_sqe *pd__op_sqe_slow(pd_cx *cx, pd__op *op, uint8_t fdret)
{
    pd_runtime *rt = cx->rt;
    unsigned need = cx->link_ts ? 2 : 1;
    struct io_uring_sqe *sqe = NULL;

    /* An op and its linked timeout take two adjacent entries. */
    if (io_uring_sq_space_left(&rt->ring) >= need)
        sqe = pd__get_sqe(rt);
    if (sqe == NULL)
        sqe = pd__sqe_slow(rt, need);
    if (sqe == NULL)
        pd__op_fail(cx, op, rt->sq_err, fdret);
    return sqe;
}

pd_poll pd__op_spill(pd__op *op, pd_cx *cx, uint8_t fdret)
{
    pd_runtime *rt = cx->rt;
    struct io_uring_sqe *sqe = pd__op_sqe_slow(cx, op, fdret);

    if (sqe == NULL) {
        /*
         * pd__op_fail completed op with the ring's error. A close must
         * still release its fd: the future forgets it once the close
         * completed, so the ring's error would leak it. It is closed with
         * close(2) instead, and the op completes with that result.
         */
        if (rt->spare_sqe.opcode == IORING_OP_CLOSE)
            op->res = close(rt->spare_sqe.fd) == 0 ? 0 : -errno;
        return PD_PENDING;
    }
    /* Its own completion is not its last: tagged, it goes the rare way. */
    if (cx->link_ts != NULL)
        fdret |= PD__OP_LINKED;
    pd__op_start(cx, op, fdret);
    *sqe = rt->spare_sqe;
    io_uring_sqe_set_data64(sqe, PD__OP_UD(op, fdret));
    if (cx->link_ts != NULL)
        pd__link_timeout(cx, sqe, op);
    return PD_PENDING;
}

void pd__link_timeout(pd_cx *cx, struct io_uring_sqe *sqe, pd__op *op)
{
    struct io_uring_sqe *t = io_uring_get_sqe(&cx->rt->ring);

    /* pd__op_sqe_slow reserved two adjacent entries, so t cannot be NULL. */
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(t, cx->link_ts, 0);
    /* The op's own user_data, tagged: the slot's address and kind. */
    io_uring_sqe_set_data64(t, sqe->user_data | PD__TAG_TIMEOUT);
    op->pending = 2;
    pd__checked_owe(op);
    cx->link_ts = NULL;
}

void pd__op_cancel(pd__op *op)
{
    pd_runtime *rt;
    struct io_uring_sqe *sqe;

    if (op->st != PD__OP_BUSY || op->cancelled)
        return;
    rt = op->task->rt;
    if (PD__UNLIKELY(pd__sq_full(rt))) {
        if (pd__sq_room(rt, 1) < 0) {
            /*
             * The request is not lost: the owner is requeued, and
             * quiescing calls pd__op_cancel again on its next poll.
             */
            pd__wake(op->task);
            return;
        }
        /* Making room reaped: op may have completed meanwhile. */
        if (op->st != PD__OP_BUSY)
            return;
    }
    sqe = pd__sq_claim(rt);
    io_uring_prep_cancel64(sqe, PD__OP_UD(op, op->fdret), 0);
    io_uring_sqe_set_data64(sqe, PD__UD_CANCEL);
    sqe->flags |= (uint8_t)rt->cancel_flags;
    op->cancelled = 1;
    rt->stats.cancels_submitted++;
    rt->cancel_tw = 1;
}

/*
 * A sync drop that cannot reach the kernel has no safe way on: the kernel
 * may still write into the slot, so it aborts rather than let it be freed.
 */
void pd__sync_check(int ret)
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
            ret = pd__eng_enter(rt, 1, NULL);
            pd__reap(rt, 1);
            pd__sync_check(ret);
        }
    }
    return pd__op_reap(op);
}

int pd__ring_wait_cqe(pd_runtime *rt)
{
    int ret;

    rt->stats.enter_calls++;
    do
        ret = pd__eng_wait(rt, NULL);
    while (ret == -EINTR);
    return ret;
}

int pd__ring_submit(pd_runtime *rt)
{
    int ret;

    rt->stats.enter_calls++;
    do
        ret = pd__eng_submit(rt);
    while (ret == -EINTR);
    return ret;
}

int pd__ring_submit_wait(pd_runtime *rt, unsigned wait_nr)
{
    rt->stats.enter_calls++;
    return pd__eng_enter(rt, wait_nr, NULL);
}

int pd__ring_reap_one(pd_runtime *rt)
{
    struct io_uring_cqe *cqe;

    /*
     * An empty queue is looked at first: liburing's peek enters the kernel
     * when IORING_SQ_CQ_OVERFLOW is set, which another engine's ring
     * cannot take (the next submit or wait flushes the overflow instead).
     */
    if (io_uring_cq_ready(&rt->ring) == 0 || io_uring_peek_cqe(&rt->ring, &cqe) != 0 ||
        pd__dispatch(rt, cqe, 0))
        return 0;
    io_uring_cqe_seen(&rt->ring, cqe);
    rt->reaped_aside++;
    return 1;
}

void (*pd__group_freeing)(const pd_bufgroup *g);

int pd__ring_strays(pd_runtime *rt, const void *mem, size_t len, unsigned ms)
{
    uintptr_t lo = (uintptr_t)mem;
    int strays = 0;

    for (;;) {
        struct __kernel_timespec ts = { ms / 1000, (long long)(ms % 1000) * 1000000 };
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int ret;

        rt->stats.enter_calls++;
        ret = pd__eng_wait(rt, &ts);
        if (ret == -ETIME)
            return strays;
        if (ret < 0 && ret != -EINTR)
            return ret;
        io_uring_for_each_cqe(&rt->ring, head, cqe) {
            uintptr_t a = (uintptr_t)(cqe->user_data & ~(uint64_t)7);

            /* Never dispatched: the slot it names belongs to the dead future. */
            if (cqe->user_data >= PD__UD_RESERVED && a >= lo && a - lo < len)
                strays++;
            else
                pd__dispatch(rt, cqe, 1);
            n++;
        }
        io_uring_cq_advance(&rt->ring, n);
    }
}
