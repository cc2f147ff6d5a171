/*
 * The simulator's timers and cancellation: what ends a request other than
 * its own completion. Timers are records with a virtual deadline, fired in
 * deadline order (start order among equals) when the clock reaches them; a
 * linked timeout stops its op; a splice under its socket's timeout ends. A
 * cancel finds its targets among the live records in start order, and has
 * the three outcomes the kernel's has.
 */
#define _GNU_SOURCE
#include <errno.h>

#include "engine_sim.h"

#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)
#endif

/* --- timers --- */

/*
 * Whether a record ends at its `deadline`: a timeout, a linked timeout, or
 * a splice waiting under its socket's SO_SNDTIMEO or SO_RCVTIMEO
 * (PD__EPF_INHEAP: pd__sim_run set its deadline), which ends with -EAGAIN
 * as the epoll engine's does.
 */
static int pd__sim_timed(const pd__sim_op *op)
{
    return op->state == PD__SIM_TIMER || op->state == PD__SIM_LTIMER ||
           (op->state == PD__SIM_FDWAIT && (op->r.flags & PD__EPF_INHEAP));
}

int64_t pd__sim_next_timer(const pd__sim *s)
{
    const pd__sim_op *op;
    int64_t at = INT64_MAX;

    if (s->ntimer == 0 && s->nsockto == 0)
        return at;
    for (op = pd__sim_live(s->live_head); op != NULL; op = pd__sim_live(op->live.next))
        if (pd__sim_timed(op) && op->deadline < at)
            at = op->deadline;
    return at;
}

/*
 * Stops a record that has not completed: 0 (the caller finishes it with
 * -ECANCELED, or the bytes it moved: pd__ep_stopped_res), or -EALREADY
 * for a file op a worker took, which completes later with its own result.
 */
static int pd__sim_stop(pd__sim *s, pd__sim_op *op)
{
    if (op->state == PD__SIM_WORK && op->running)
        return -EALREADY;
    pd__sim_set(s, op, PD__SIM_FREE);
    return 0;
}

int pd__sim_timers(pd__sim *s)
{
    int fired = 0;

    while (s->ntimer != 0 || s->nsockto != 0) {
        pd__sim_op *op, *t = NULL, *target;
        int ret;

        /* The earliest due timer, the first started among equals. */
        for (op = pd__sim_live(s->live_head); op != NULL; op = pd__sim_live(op->live.next))
            if (pd__sim_timed(op) && op->deadline <= s->now &&
                (t == NULL || op->deadline < t->deadline))
                t = op;
        if (t == NULL)
            break;
        fired = 1;
        pd__sim_batch_begin(s);
        if (t->state == PD__SIM_TIMER) {
            pd__sim_set(s, t, PD__SIM_FREE);
            pd__sim_finish(s, t, -ETIME, 0);
            continue;
        }
        if (t->state == PD__SIM_FDWAIT) {
            pd__sim_set(s, t, PD__SIM_FREE);
            pd__sim_finish(s, t, -EAGAIN, 0);
            continue;
        }
        target = t->link;
        target->link = NULL;
        ret = pd__sim_stop(s, target);
        if (ret == 0)
            pd__sim_finish(s, target, pd__ep_stopped_res(&target->r), 0);
        pd__sim_add(s, t->r.sqe.user_data, ret == 0 ? -ETIME : ret, 0);
        pd__sim_rec_free(s, t);
    }
    return fired;
}

/* --- cancellation --- */

/* Whether an op has a file (sqe->fd), as a cancel by fd sees it. */
static int pd__sim_uses_fd(unsigned op)
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

static int pd__sim_cancel_match(const struct io_uring_sqe *c, const pd__sim_op *op)
{
    unsigned fl = c->cancel_flags;

    if (op->state == PD__SIM_LTIMER || op->state == PD__SIM_FREE)
        return 0;
    if (fl & IORING_ASYNC_CANCEL_ANY)
        return 1;
    if (fl & IORING_ASYNC_CANCEL_FD) {
        if (!pd__sim_uses_fd(op->r.sqe.opcode) || op->r.sqe.fd != c->fd)
            return 0;
        return !(fl & IORING_ASYNC_CANCEL_USERDATA) || op->r.sqe.user_data == c->addr;
    }
    return op->r.sqe.user_data == c->addr;
}

/*
 * IORING_OP_ASYNC_CANCEL, by user_data, by fd or any, once or all, with
 * the epoll engine's results. The three outcomes of a cancel once all
 * happen: the target stopped (0, then its -ECANCELED), the target already
 * completed (-ENOENT while its own completion is still pending, or with
 * faults on when the seed lets ops whose fds are ready complete first, as
 * a cancel racing a completion loses), or a file op running (-EALREADY,
 * then its own result).
 */
void pd__sim_cancel(pd__sim *s, const struct io_uring_sqe *sqe)
{
    const unsigned known = IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD |
                           IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_USERDATA;
    unsigned fl = sqe->cancel_flags;
    int all = !!(fl & (IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY));
    int found = 0, nstopped = 0, res;
    pd__sim_op *op, *next, *stopped = NULL, **tail = &stopped;

    if (fl & ~known) {
        pd__sim_emit(s, sqe, -EINVAL, 0);
        return;
    }
    if (pd__sim_fault(s, 4)) {
        /* The race goes the other way: what is ready completes first. */
        pd__sim_step(s, 0);
        pd__sim_batch_begin(s);
    }
    for (op = pd__sim_live(s->live_head); op != NULL; op = next) {
        next = pd__sim_live(op->live.next);
        if (!pd__sim_cancel_match(sqe, op))
            continue;
        found++;
        if (pd__sim_stop(s, op) == 0) {
            op->snext = NULL;
            *tail = op;
            tail = &op->snext;
            nstopped++;
        }
        if (!all)
            break;
    }
    if (all)
        res = found;
    else
        res = !found ? -ENOENT : nstopped ? 0 : -EALREADY;
    pd__sim_emit(s, sqe, res, 0);
    while ((op = stopped) != NULL) {
        stopped = op->snext;
        pd__sim_finish(s, op, pd__ep_stopped_res(&op->r), 0);
    }
}
