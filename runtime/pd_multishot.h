/*
 * polldrop internals for generated code: the inline helpers of extended op
 * slots (multishot requests, requests that take a provided buffer).
 * Included by pd_internal.h, never on its own; not a public API.
 */
#ifndef POLLDROP_MULTISHOT_H
#define POLLDROP_MULTISHOT_H

#ifndef POLLDROP_INTERNAL_H
#error "include polldrop.h instead"
#endif

/* --- extended slots: multishot and provided buffers --- */

/* Busy while the kernel owes a completion, or while parked for a buffer. */
static inline int pd__mop_busy(const pd__mop *m)
{
    return m->op.pending != 0 || m->parked;
}

/* Nothing in the kernel, nothing queued, not parked: ready to be armed. */
static inline int pd__mop_idle(const pd__mop *m)
{
    return m->op.pending == 0 && !m->parked && m->qlen == 0 && m->ovf == NULL;
}

/* A STOP() whose cancel missed while the request is still armed: again. */
static inline void pd__mop_restop(pd__mop *m)
{
    if (PD__UNLIKELY(m->stop && m->armed && !m->op.cancelled))
        pd__mop_stop(m);
}

static inline void pd__mop_cancel_from(pd_cx *cx, pd__mop *m)
{
    m->op.task = cx->task;
    pd__mop_cancel(m);
}

/* The buffer a completion carries, or an empty pd_buf. */
static inline pd_buf pd__buf_from(const pd__mop *m, const pd__cqe *c)
{
    pd_buf b = PD_BUF_EMPTY;

    if (c->flags & IORING_CQE_F_BUFFER) {
        b.id = (uint16_t)(c->flags >> IORING_CQE_BUFFER_SHIFT);
        b.group = m->group;
        b.data = m->group->base + (size_t)b.id * m->group->size;
        b.len = c->res > 0 ? (uint32_t)c->res : 0;
    }
    return b;
}

/* Tags sqe with the user_data that routes completions to m. */
static inline void pd__mop_arm(pd_cx *cx, struct io_uring_sqe *sqe, pd__mop *m)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)m | PD__TAG_EXT);
    if (PD__UNLIKELY(cx->link_ts != NULL))
        pd__link_timeout(cx, sqe, &m->op);
}

/* A multishot accept: one request, one completion per connection. */
static inline void pd__prep_accept_ms(pd_cx *cx, pd__mop *m, int fd, int flags)
{
    struct io_uring_sqe *sqe = pd__mop_sqe(cx, m, fd, 1, NULL, 1);

    if (sqe != NULL) {
        io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, flags);
        pd__mop_arm(cx, sqe, m);
    }
}

/*
 * A multishot poll (IORING_POLL_ADD_MULTI): one completion, with the ready
 * events, each time fd is woken with one of events; the request stays
 * armed until cancelled or the kernel ends it (a completion without
 * IORING_CQE_F_MORE).
 */
static inline void pd__prep_poll_add_ms(pd_cx *cx, pd__mop *m, int fd,
                                        unsigned events)
{
    struct io_uring_sqe *sqe = pd__mop_sqe(cx, m, fd, 1, NULL, 0);

    if (sqe != NULL) {
        io_uring_prep_poll_multishot(sqe, fd, events);
        pd__mop_arm(cx, sqe, m);
    }
}

/*
 * A recv into a buffer the kernel picks from g, single- or multishot. With
 * g empty, the slot parks instead: it is armed once a buffer is back, so
 * that an empty ring never makes a future spin on -ENOBUFS.
 */
static inline void pd__prep_recv_grp(pd_cx *cx, pd__mop *m, int fd,
                                     pd_bufgroup *g, int flags, int multi)
{
    struct io_uring_sqe *sqe = pd__mop_sqe(cx, m, fd, multi, g, 0);

    if (sqe != NULL) {
        io_uring_prep_recv(sqe, fd, NULL, 0, flags);
        if (multi)
            sqe->ioprio |= IORING_RECV_MULTISHOT;
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = g->bgid;
        pd__mop_arm(cx, sqe, m);
    }
}

#endif /* POLLDROP_MULTISHOT_H */
