/*
 * polldrop internals for generated code: the pd__prep_OP helpers, which
 * claim a submission queue entry for an op slot and prepare its request
 * (or fail the op at once, where the kernel lacks the opcode), inline on
 * the common path. Included by pd_internal.h, never on its own; not a
 * public API.
 */
#ifndef POLLDROP_PREP_H
#define POLLDROP_PREP_H

#ifndef POLLDROP_INTERNAL_H
#error "include polldrop.h instead"
#endif

/* --- op preparation: one generic helper, small ones layered on it --- */

/*
 * Whether the next op can claim its entry inline (see PD__PREP): the tail
 * is before the queue's limit. An op that takes a linked timeout never
 * can (pd__link_next lowered the limit), so that is not tested here; the
 * checked build checks it.
 */
static inline int pd__op_inline(const pd_cx *cx)
{
    if (!pd__sq_below_limit(cx->rt))
        return 0;
#ifdef PD_CHECKED
    if (cx->link_ts != NULL)
        pd__misuse("polldrop runtime", "PD__PREP",
                   "an op with a linked timeout took the inline way");
#endif
    return 1;
}

/* Claims the entry of an op for which pd__op_inline holds, and starts op. */
static inline struct io_uring_sqe *pd__op_claim(pd_cx *cx, pd__op *op,
                                                uint8_t fdret)
{
    pd__op_start(cx, op, fdret);
    return pd__sq_claim(cx->rt);
}

/*
 * The common case -- room in the queue, which an op that takes a linked
 * timeout never finds (pd__link_next) -- claims the entry, prepares it and
 * tags it inline, with no call. Otherwise CALL
 * prepares rt->spare_sqe and pd__op_spill, out of line, does the rest. The
 * value is PD_PENDING either way (an op that failed woke its task, which is
 * polled again): a state whose only op this is returns it at once, so that
 * the call out of line is a tail call, nothing the poll holds lives across
 * it, and the poll needs no stack frame (see "The hot path" in
 * docs/design.md). The pd__prep_OP helpers return the same.
 */
#define PD__PREP(cx, op, fdret, CALL)                                          \
    do {                                                                       \
        struct io_uring_sqe *pd__s;                                            \
        if (PD__LIKELY(pd__op_inline(cx))) {                                   \
            pd__s = pd__op_claim((cx), (op), (fdret));                         \
            CALL;                                                              \
            io_uring_sqe_set_data64(pd__s, PD__OP_UD((op), (fdret)));         \
            return PD_PENDING;                                                 \
        }                                                                      \
        pd__s = &(cx)->rt->spare_sqe;                                          \
        CALL;                                                                  \
        return pd__op_spill((op), (cx), (fdret));                              \
    } while (0)

static inline int pd__prep_nop(pd_cx *cx, pd__op *op)
{
    PD__PREP(cx, op, 0, io_uring_prep_nop(pd__s));
}

static inline int pd__prep_read(pd_cx *cx, pd__op *op, int fd, void *buf,
                                size_t len, long long offset)
{
    PD__PREP(cx, op, 0, io_uring_prep_read(pd__s, fd, buf, (unsigned)len,
                                           (uint64_t)offset));
}

static inline int pd__prep_write(pd_cx *cx, pd__op *op, int fd,
                                 const void *buf, size_t len,
                                 long long offset)
{
    PD__PREP(cx, op, 0, io_uring_prep_write(pd__s, fd, buf, (unsigned)len,
                                            (uint64_t)offset));
}

static inline int pd__prep_openat(pd_cx *cx, pd__op *op, const char *path,
                                  int flags, int dfd, unsigned mode)
{
    PD__PREP(cx, op, PD__OP_FDRET, io_uring_prep_openat(pd__s, dfd, path, flags, mode));
}

/*
 * how is read by the kernel when the request is submitted, which may be after
 * this returns: it must live in the future until the op completes.
 */
static inline int pd__prep_openat2(pd_cx *cx, pd__op *op, const char *path,
                                   struct open_how *how, int dfd)
{
    PD__PREP(cx, op, PD__OP_FDRET, io_uring_prep_openat2(pd__s, dfd, path, how));
}

/* A close the ring cannot take is done with close(2) (see pd__op_spill). */
static inline int pd__prep_close(pd_cx *cx, pd__op *op, int fd)
{
    PD__PREP(cx, op, 0, io_uring_prep_close(pd__s, fd));
}

static inline int pd__prep_fsync(pd_cx *cx, pd__op *op, int fd,
                                 unsigned flags)
{
    PD__PREP(cx, op, 0, io_uring_prep_fsync(pd__s, fd, flags));
}

/* ts must stay valid until the op completes: it lives in the future. */
static inline int pd__prep_timeout(pd_cx *cx, pd__op *op,
                                   struct __kernel_timespec *ts,
                                   long long ns)
{
    ts->tv_sec = ns / 1000000000LL;
    ts->tv_nsec = ns % 1000000000LL;
    PD__PREP(cx, op, 0, io_uring_prep_timeout(pd__s, ts, 0, 0));
}

static inline int pd__prep_socket(pd_cx *cx, pd__op *op, int domain,
                                  int type, int protocol)
{
    PD__PREP(cx, op, PD__OP_FDRET, io_uring_prep_socket(pd__s, domain, type, protocol, 0));
}

/* addr and addrlen (both NULL, or both in the future) receive the peer. */
static inline int pd__prep_accept(pd_cx *cx, pd__op *op, int fd, int flags,
                                  void *addr, socklen_t *addrlen)
{
    PD__PREP(cx, op, PD__OP_FDRET, io_uring_prep_accept(pd__s, fd, (struct sockaddr *)addr,
                                             addrlen, flags));
}

static inline int pd__prep_connect(pd_cx *cx, pd__op *op, int fd,
                                   const void *addr, unsigned addrlen)
{
    PD__PREP(cx, op, 0, io_uring_prep_connect(pd__s, fd,
                                              (const struct sockaddr *)addr,
                                              addrlen));
}

/*
 * ioprio (IORING_RECVSEND_POLL_FIRST) is a hint: a receive that expects no
 * data yet waits for readiness instead of trying first and failing.
 */
static inline int pd__prep_recv(pd_cx *cx, pd__op *op, int fd, void *buf,
                                size_t len, int flags, unsigned ioprio)
{
    PD__PREP(cx, op, 0, (io_uring_prep_recv(pd__s, fd, buf, len, flags),
                         pd__s->ioprio = (__u16)ioprio));
}

static inline int pd__prep_send(pd_cx *cx, pd__op *op, int fd,
                                const void *buf, size_t len, int flags)
{
    PD__PREP(cx, op, 0, io_uring_prep_send(pd__s, fd, buf, len, flags));
}

static inline int pd__prep_shutdown(pd_cx *cx, pd__op *op, int fd, int how)
{
    PD__PREP(cx, op, 0, io_uring_prep_shutdown(pd__s, fd, how));
}

static inline int pd__prep_readv(pd_cx *cx, pd__op *op, int fd,
                                 const struct iovec *iov, unsigned iovcnt,
                                 long long offset)
{
    PD__PREP(cx, op, 0, io_uring_prep_readv(pd__s, fd, iov, iovcnt,
                                            (uint64_t)offset));
}

static inline int pd__prep_writev(pd_cx *cx, pd__op *op, int fd,
                                  const struct iovec *iov, unsigned iovcnt,
                                  long long offset)
{
    PD__PREP(cx, op, 0, io_uring_prep_writev(pd__s, fd, iov, iovcnt,
                                             (uint64_t)offset));
}

static inline int pd__prep_unlinkat(pd_cx *cx, pd__op *op, const char *path,
                                    int flags, int dfd)
{
    PD__PREP(cx, op, 0, io_uring_prep_unlinkat(pd__s, dfd, path, flags));
}

static inline int pd__prep_renameat(pd_cx *cx, pd__op *op, const char *oldpath,
                                    const char *newpath, unsigned flags,
                                    int olddfd, int newdfd)
{
    PD__PREP(cx, op, 0, io_uring_prep_renameat(pd__s, olddfd, oldpath, newdfd,
                                               newpath, flags));
}

static inline int pd__prep_mkdirat(pd_cx *cx, pd__op *op, const char *path,
                                   unsigned mode, int dfd)
{
    PD__PREP(cx, op, 0, io_uring_prep_mkdirat(pd__s, dfd, path, (mode_t)mode));
}

static inline int pd__prep_statx(pd_cx *cx, pd__op *op, const char *path,
                                 struct statx *buf, unsigned mask, int flags,
                                 int dfd)
{
    PD__PREP(cx, op, 0, io_uring_prep_statx(pd__s, dfd, path, flags, mask, buf));
}

/* An offset of -1 means the fd's own position (and is what a pipe needs). */
static inline int pd__prep_splice(pd_cx *cx, pd__op *op, int fd_in, int fd_out,
                                  unsigned len, long long off_in,
                                  long long off_out, unsigned flags)
{
    PD__PREP(cx, op, 0, io_uring_prep_splice(pd__s, fd_in, (int64_t)off_in, fd_out,
                                             (int64_t)off_out, len, flags));
}

static inline int pd__prep_poll_add(pd_cx *cx, pd__op *op, int fd,
                                    unsigned events)
{
    PD__PREP(cx, op, 0, io_uring_prep_poll_add(pd__s, fd, events));
}

static inline int pd__prep_recvmsg(pd_cx *cx, pd__op *op, int fd,
                                   struct msghdr *msg, unsigned flags)
{
    PD__PREP(cx, op, 0, io_uring_prep_recvmsg(pd__s, fd, msg, flags));
}

static inline int pd__prep_sendmsg(pd_cx *cx, pd__op *op, int fd,
                                   const struct msghdr *msg, unsigned flags)
{
    PD__PREP(cx, op, 0, io_uring_prep_sendmsg(pd__s, fd, msg, flags));
}

/*
 * A zero-copy send completes twice: its result (with IORING_CQE_F_MORE),
 * then a notification (IORING_CQE_F_NOTIF) once the kernel no longer reads
 * buf. The dispatcher keeps the op busy until the notification, so the op
 * is taken, reaped or quiesced only when buf is free again. Its user_data
 * is tagged PD__TAG_RARE, so that both go the dispatch's rare way.
 */
static inline int pd__prep_send_zc(pd_cx *cx, pd__op *op, int fd,
                                   const void *buf, size_t len, int flags,
                                   unsigned zc_flags)
{
    PD__PREP(cx, op, PD__OP_ZC, io_uring_prep_send_zc(pd__s, fd, buf, len, flags,
                                                      zc_flags));
}

/*
 * IORING_OP_FTRUNCATE (Linux 6.9) is opcode 55 of the kernel's ABI; liburing
 * 2.3 names neither the opcode nor a helper. The runtime probes the ring
 * for it once, and where the kernel lacks it the op completes at once with
 * -EOPNOTSUPP instead of reaching the kernel.
 */
#define PD__IORING_OP_FTRUNCATE 55

static inline int pd__prep_ftruncate(pd_cx *cx, pd__op *op, int fd,
                                     long long len)
{
    if (PD__UNLIKELY(!cx->rt->has_ftruncate)) {
        pd__op_fail(cx, op, -EOPNOTSUPP, 0);
        return PD_PENDING;
    }
    PD__PREP(cx, op, 0, io_uring_prep_rw(PD__IORING_OP_FTRUNCATE, pd__s, fd, NULL,
                                         0, (uint64_t)len));
}

/*
 * IORING_OP_BIND and IORING_OP_LISTEN (Linux 6.11) are opcodes 56 and 57 of
 * the kernel's ABI; liburing 2.3 names neither. The SQE is the one
 * liburing 2.6's io_uring_prep_bind and io_uring_prep_listen make: bind's
 * address in addr and its length in off (addr2), listen's backlog in len.
 * Where the probe found the kernel without one, the op is the syscall,
 * made here at once (neither waits), and completes with its result
 * without reaching the kernel: the future sees the same result either way.
 */
#define PD__IORING_OP_BIND 56
#define PD__IORING_OP_LISTEN 57

/* addr is copied by the kernel when the request is submitted: it lives in the future. */
static inline int pd__prep_bind(pd_cx *cx, pd__op *op, int fd, const void *addr,
                                unsigned addrlen)
{
    if (PD__UNLIKELY(!cx->rt->has_bind)) {
        pd__op_fail(cx, op, bind(fd, (const struct sockaddr *)addr,
                                 (socklen_t)addrlen) < 0 ? -errno : 0, 0);
        return PD_PENDING;
    }
    PD__PREP(cx, op, 0, io_uring_prep_rw(PD__IORING_OP_BIND, pd__s, fd, addr, 0,
                                         (uint64_t)addrlen));
}

static inline int pd__prep_listen(pd_cx *cx, pd__op *op, int fd, int backlog)
{
    if (PD__UNLIKELY(!cx->rt->has_listen)) {
        pd__op_fail(cx, op, listen(fd, backlog) < 0 ? -errno : 0, 0);
        return PD_PENDING;
    }
    PD__PREP(cx, op, 0, io_uring_prep_rw(PD__IORING_OP_LISTEN, pd__s, fd, NULL,
                                         (unsigned)backlog, 0));
}

#endif /* POLLDROP_PREP_H */
