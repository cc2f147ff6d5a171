/*
 * The epoll engine's ops on fds: one attempt at each, on the engine's
 * thread, with a syscall that cannot block. An attempt completes the op,
 * says what it waits for (an event on an fd), or hands it to a worker.
 * What an fd may be ready for (pd__ep_fd.maybe) saves the syscall that
 * would say EAGAIN: an op on an fd known not ready waits at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine_epoll.h"

#ifndef IORING_ACCEPT_DONTWAIT
#define IORING_ACCEPT_DONTWAIT (1U << 1)
#define IORING_ACCEPT_POLL_FIRST (1U << 2)
#endif
#ifndef SPLICE_F_FD_IN_FIXED
#define SPLICE_F_FD_IN_FIXED (1U << 31)
#endif


/*
 * Whether a read that returned less than it asked for drained fd, so that
 * the next read may wait for an event without trying: true of a stream
 * socket or a pipe, unless a hangup, the peer's shutdown or an error was
 * ever reported on the registration (their state persists after the read,
 * and their event, already taken, will not come again).
 */
static int pd__ep_drained(const pd__ep_fd *f)
{
    return (f->kind == PD__FK_STREAM || f->kind == PD__FK_PIPE) &&
           !(f->maybe & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
}

/*
 * Whether a short transfer with MSG_WAITALL on socket fd (f) goes on for
 * the rest, as the kernel retries it on SOCK_STREAM and SOCK_SEQPACKET
 * sockets (io_net_retry); on a seqpacket socket, with the records that
 * follow. Only a short transfer on a socket that is not a stream asks the
 * kernel for its type.
 */
static int pd__ep_retries(const pd__ep_fd *f, int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);

    if (f->kind == PD__FK_STREAM)
        return 1;
    return f->kind == PD__FK_SOCK && getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0 &&
           v == SOCK_SEQPACKET;
}

/* The op waits for `need` on fd. */
static int pd__ep_wait_for(pd__ep_op *r, int fd, uint32_t need)
{
    r->fd = fd;
    r->need = need;
    return PD__EP_WAIT;
}

/*
 * Whether the op was asked never to wait: MSG_DONTWAIT on a send or recv
 * (or their msg forms), RWF_NOWAIT on a read or write. Where it would
 * wait, the kernel completes such an op with -EAGAIN (REQ_F_NOWAIT), and
 * programs rely on it (httpd's sends go to a poll under a deadline on
 * -EAGAIN).
 */
static int pd__ep_nowait(const struct io_uring_sqe *s)
{
    switch (s->opcode) {
    case IORING_OP_RECV:
    case IORING_OP_SEND:
    case IORING_OP_SEND_ZC:
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG:
        return !!(s->msg_flags & MSG_DONTWAIT);
    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV:
        return !!(s->rw_flags & RWF_NOWAIT);
    default:
        return 0;
    }
}

/*
 * The op waits for `need` on fd, unless nowait: then it completes with
 * what it moved already, or -EAGAIN.
 */
static int pd__ep_wait_or_again(pd__ep_op *r, int fd, uint32_t need, int nowait,
                                int32_t *res)
{
    if (!nowait)
        return pd__ep_wait_for(r, fd, need);
    *res = r->done ? (int32_t)r->done : -EAGAIN;
    return PD__EP_DONE;
}

/*
 * The buffers of a read or write op past the r->done bytes already moved:
 * in tmp (max entries) when they must be trimmed. Returns the count, or
 * -EINVAL.
 */
int pd__ep_iov(const pd__ep_op *r, struct iovec *tmp, int max, const struct iovec **out)
{
    const struct io_uring_sqe *s = &r->sqe;
    const struct iovec *v = (const void *)(uintptr_t)s->addr;
    size_t skip = r->done;
    int i, n = 0;

    if (s->opcode == IORING_OP_READ || s->opcode == IORING_OP_WRITE) {
        tmp[0].iov_base = (char *)(uintptr_t)s->addr + skip;
        tmp[0].iov_len = s->len - skip;
        *out = tmp;
        return 1;
    }
    if (s->len > 1024u)
        return -EINVAL;
    if (skip == 0) {
        *out = v;
        return (int)s->len;
    }
    for (i = 0; i < (int)s->len && n < max; i++) {
        if (skip >= v[i].iov_len) {
            skip -= v[i].iov_len;
            continue;
        }
        tmp[n].iov_base = (char *)v[i].iov_base + skip;
        tmp[n++].iov_len = v[i].iov_len - skip;
        skip = 0;
    }
    *out = tmp;
    return n;
}

/* The total length of a read or write op's buffers. */
static size_t pd__ep_iov_total(const struct iovec *v, int n)
{
    size_t t = 0;

    while (n-- > 0)
        t += v[n].iov_len;
    return t;
}

/* A read/write op's offset, advanced past what was moved; -1: the fd's position. */
static off_t pd__ep_off(const pd__ep_op *r)
{
    int64_t off = (int64_t)r->sqe.off;

    return off == -1 ? -1 : (off_t)(off + r->done);
}

/*
 * recv, send, and read/write/readv/writev on a socket: one syscall with
 * MSG_DONTWAIT. A send (send, send_zc, sendmsg) always gets MSG_NOSIGNAL,
 * as io_uring adds it to every send it makes: a peer that is gone answers
 * -EPIPE, never SIGPIPE. A write or writev op does not get it, as write(2)
 * does not (io_uring's raises SIGPIPE too). With MSG_WAITALL on a stream
 * the op waits for the rest, as the kernel's retries do; what was moved is
 * the result if an error follows.
 */
static __attribute__((noinline)) ssize_t pd__ep_sock_iov(pd__ep_op *r, int out, size_t *want)
{
    struct iovec tmp[1024];
    const struct iovec *v;
    struct msghdr m;
    int cnt = pd__ep_iov(r, tmp, 1024, &v);

    if (cnt < 0) {
        errno = -cnt;
        return -1;
    }
    memset(&m, 0, sizeof(m));
    m.msg_iov = (struct iovec *)v;
    m.msg_iovlen = (size_t)cnt;
    *want = pd__ep_iov_total(v, cnt);
    return out ? sendmsg(r->sqe.fd, &m, MSG_DONTWAIT) : recvmsg(r->sqe.fd, &m, MSG_DONTWAIT);
}

static int pd__ep_sock_io(pd__engine *e, pd__ep_op *r, int out, int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;
    uint32_t ev = out ? EPOLLOUT : EPOLLIN;
    int fd = s->fd, flags = 0, nowait = pd__ep_nowait(s);
    pd__ep_fd *f = pd__ep_fd_get(e, fd);
    ssize_t n;
    size_t want;

    if (f == NULL) {
        *res = pd__ep_fd_err(e, fd);
        return PD__EP_DONE;
    }
    /*
     * IORING_RECVSEND_POLL_FIRST is a hint: the kernel's poll would find
     * the fd ready now as this attempt does.
     */
    if (s->opcode == IORING_OP_RECV)
        flags = (int)s->msg_flags;
    else if (s->opcode == IORING_OP_SEND || s->opcode == IORING_OP_SEND_ZC)
        flags = (int)s->msg_flags | MSG_NOSIGNAL;
    r->flags &= ~PD__EPF_FIRST;
    if (!(f->maybe & ev) && !nowait)
        return pd__ep_wait_for(r, fd, ev);
    if (s->opcode == IORING_OP_READV || s->opcode == IORING_OP_WRITEV) {
        n = pd__ep_sock_iov(r, out, &want);
    } else {
        char *buf = (char *)(uintptr_t)s->addr + r->done;

        want = s->len - r->done;
        n = out ? send(fd, buf, want, flags | MSG_DONTWAIT)
                : recv(fd, buf, want, flags | MSG_DONTWAIT);
    }
    if (n < 0) {
        if (!PD__EP_AGAIN(errno)) {
            *res = r->done ? (int32_t)r->done : -errno;
            return PD__EP_DONE;
        }
        f->maybe &= ~ev;
        return pd__ep_wait_or_again(r, fd, ev, nowait, res);
    }
    if ((size_t)n < want && n > 0) {
        /*
         * What the fd is decides both what follows (an fd never waited on
         * is not classified yet): a stream that returned less than asked
         * for was drained, and MSG_WAITALL waits for the rest on a stream.
         */
        if (f->kind == PD__FK_UNKNOWN)
            (void)pd__ep_fd_kind(e, fd);
        if (!out && pd__ep_drained(f) && !(flags & MSG_PEEK))
            f->maybe &= ~EPOLLIN;
        if ((flags & MSG_WAITALL) && pd__ep_retries(f, fd)) {
            r->done += (uint32_t)n;
            return pd__ep_wait_or_again(r, fd, ev, nowait, res);
        }
    }
    *res = (int32_t)(r->done + (size_t)n);
    return PD__EP_DONE;
}

/*
 * recvmsg and sendmsg: the msghdr is the caller's, and gets the kernel's
 * write-back; a sendmsg gets MSG_NOSIGNAL, as pd__ep_sock_io's sends.
 */
static int pd__ep_msg(pd__engine *e, pd__ep_op *r, int out, int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;
    uint32_t ev = out ? EPOLLOUT : EPOLLIN;
    pd__ep_fd *f = pd__ep_fd_get(e, s->fd);
    struct msghdr *m = (void *)(uintptr_t)s->addr;
    int nowait = pd__ep_nowait(s);
    ssize_t n;

    if (f == NULL) {
        *res = pd__ep_fd_err(e, s->fd);
        return PD__EP_DONE;
    }
    if (s->ioprio & ~IORING_RECVSEND_POLL_FIRST) {
        *res = (s->ioprio & IORING_RECV_MULTISHOT) ? -EOPNOTSUPP : -EINVAL;
        return PD__EP_DONE;
    }
    r->flags &= ~PD__EPF_FIRST;
    if (!(f->maybe & ev) && !nowait)
        return pd__ep_wait_for(r, s->fd, ev);
    n = out ? sendmsg(s->fd, m, (int)s->msg_flags | MSG_DONTWAIT | MSG_NOSIGNAL)
            : recvmsg(s->fd, m, (int)s->msg_flags | MSG_DONTWAIT);
    if (n < 0 && PD__EP_AGAIN(errno)) {
        f->maybe &= ~ev;
        return pd__ep_wait_or_again(r, s->fd, ev, nowait, res);
    }
    *res = n < 0 ? -errno : (int32_t)n;
    return PD__EP_DONE;
}

/*
 * recv into a provided buffer, single- or multishot. A buffer is taken at
 * the ring's head only when data was received into it; the kernel answers
 * -ENOBUFS when the ring is empty as the request starts, or when data
 * waits and no buffer is left (a multishot recv ends there). Each
 * multishot completion but the last has F_MORE; the end of the stream (0)
 * and errors end it, without a buffer. IORING_CQE_F_SOCK_NONEMPTY is never
 * set.
 */
static int pd__ep_recv_sel(pd__engine *e, pd__ep_op *r, int32_t *res, uint32_t *cflags)
{
    const struct io_uring_sqe *s = &r->sqe;
    int multi = !!(s->ioprio & IORING_RECV_MULTISHOT), fd = s->fd;
    int flags = (int)s->msg_flags | MSG_DONTWAIT, first = !!(r->flags & PD__EPF_FIRST);
    pd__ep_fd *f = pd__ep_fd_get(e, fd);

    if (f == NULL) {
        *res = pd__ep_fd_err(e, fd);
        return PD__EP_DONE;
    }
    if ((s->ioprio & ~(IORING_RECV_MULTISHOT | IORING_RECVSEND_POLL_FIRST)) ||
        (multi && (s->msg_flags & MSG_WAITALL))) {
        *res = -EINVAL;
        return PD__EP_DONE;
    }
    if (multi)
        r->flags |= PD__EPF_MULTI;
    r->flags &= ~PD__EPF_FIRST;
    for (;;) {
        pd__ep_bufring *b = pd__ep_bufring_find(e, s->buf_group);
        struct io_uring_buf *buf;
        size_t blen;
        ssize_t n;
        char c;

        if (b == NULL || b->head == io_uring_smp_load_acquire(&b->br->tail)) {
            if (first) {
                *res = -ENOBUFS;
                return PD__EP_DONE;
            }
            if (!(f->maybe & EPOLLIN))
                return pd__ep_wait_for(r, fd, EPOLLIN);
            /* Empty: it ends only once there is something to receive. */
            n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n < 0 && PD__EP_AGAIN(errno)) {
                f->maybe &= ~EPOLLIN;
                return pd__ep_wait_for(r, fd, EPOLLIN);
            }
            *res = n < 0 ? -errno : -ENOBUFS;
            return PD__EP_DONE;
        }
        first = 0;
        if (!(f->maybe & EPOLLIN))
            return pd__ep_wait_for(r, fd, EPOLLIN);
        buf = &b->br->bufs[b->head & b->mask];
        blen = buf->len;
        if (s->len && s->len < blen)
            blen = s->len;
        n = recv(fd, (void *)(uintptr_t)buf->addr, blen, flags);
        if (n < 0 && PD__EP_AGAIN(errno)) {
            f->maybe &= ~EPOLLIN;
            return pd__ep_wait_for(r, fd, EPOLLIN);
        }
        if (n <= 0) {
            *res = n < 0 ? -errno : 0;
            return PD__EP_DONE;
        }
        b->head++;
        *cflags = IORING_CQE_F_BUFFER | (uint32_t)buf->bid << IORING_CQE_BUFFER_SHIFT;
        if (!multi) {
            *res = (int32_t)n;
            return PD__EP_DONE;
        }
        if (pd__ep_post_more(e, s->user_data, (int32_t)n, *cflags) < 0) {
            *res = (int32_t)n;
            return PD__EP_DONE;
        }
        *cflags = 0;
        if ((size_t)n < blen && pd__ep_drained(f)) {
            f->maybe &= ~EPOLLIN;
            return pd__ep_wait_for(r, fd, EPOLLIN);
        }
    }
}

/*
 * Sets O_NONBLOCK on fd for an op that has no per-call way not to block
 * (accept, splice with a socket), and leaves it set: a listener shared
 * between threads must never block one of them. Returns 0 or -errno.
 */
int pd__ep_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/*
 * accept, single- or multishot (each connection a completion with F_MORE).
 * The listener is made non-blocking when the op starts (F_GETFL each
 * time: the engine cannot tell the listener is the one it set last time).
 */
static int pd__ep_accept(pd__engine *e, pd__ep_op *r, int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;
    const unsigned known = IORING_ACCEPT_MULTISHOT | IORING_ACCEPT_DONTWAIT |
                           IORING_ACCEPT_POLL_FIRST;
    int multi = !!(s->ioprio & IORING_ACCEPT_MULTISHOT), fd = s->fd;
    struct sockaddr *addr = multi ? NULL : (void *)(uintptr_t)s->addr;
    socklen_t *alen = multi ? NULL : (void *)(uintptr_t)s->off;
    pd__ep_fd *f;
    int ret;

    if (s->ioprio & ~known) {
        *res = -EINVAL;
        return PD__EP_DONE;
    }
    if (r->flags & PD__EPF_FIRST) {
        r->flags &= ~PD__EPF_FIRST;
        if ((ret = pd__ep_nonblock(fd)) < 0) {
            *res = ret;
            return PD__EP_DONE;
        }
        if (multi)
            r->flags |= PD__EPF_MULTI;
    }
    for (;;) {
        int nfd;
        uint8_t kind, inet;

        f = pd__ep_fd_get(e, fd);
        if (f == NULL) {
            *res = pd__ep_fd_err(e, fd);
            return PD__EP_DONE;
        }
        if (!(f->maybe & EPOLLIN))
            return pd__ep_wait_for(r, fd, EPOLLIN);
        nfd = accept4(fd, addr, alen, (int)s->accept_flags);
        if (nfd < 0) {
            if (!PD__EP_AGAIN(errno)) {
                *res = -errno;
                return PD__EP_DONE;
            }
            f->maybe &= ~EPOLLIN;
            if (s->ioprio & IORING_ACCEPT_DONTWAIT) {
                *res = -EAGAIN;
                return PD__EP_DONE;
            }
            return pd__ep_wait_for(r, fd, EPOLLIN);
        }
        /* A connection is a socket of the listener's type and family. */
        kind = f->kind == PD__FK_STREAM ? PD__FK_STREAM : PD__FK_UNKNOWN;
        inet = f->inet;
        pd__ep_fd_forget(e, nfd);
        if ((f = pd__ep_fd_get(e, nfd)) != NULL) {
            f->kind = kind;
            f->inet = kind == PD__FK_STREAM && inet;
        }
        if (!multi) {
            *res = nfd;
            return PD__EP_DONE;
        }
        if (pd__ep_post_more(e, s->user_data, nfd, 0) < 0) {
            *res = nfd;
            return PD__EP_DONE;
        }
    }
}

/*
 * connect: the socket is made non-blocking for the attempt, and given its
 * mode back when the op ends; EINPROGRESS waits for writability, then
 * SO_ERROR is the result, as the kernel's connect reports it.
 */
static int pd__ep_connect(pd__engine *e, pd__ep_op *r, int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;
    int fd = s->fd, err = 0;
    socklen_t len = sizeof(err);
    pd__ep_fd *f = pd__ep_fd_get(e, fd);

    if (f == NULL) {
        *res = pd__ep_fd_err(e, fd);
        return PD__EP_DONE;
    }
    if (r->flags & PD__EPF_CONNECTING) {
        if (!(f->maybe & EPOLLOUT))
            return pd__ep_wait_for(r, fd, EPOLLOUT);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        *res = -err;
    } else {
        if (r->flags & PD__EPF_FIRST) {
            int fl = fcntl(fd, F_GETFL);

            r->flags &= ~PD__EPF_FIRST;
            if (fl < 0) {
                *res = -errno;
                return PD__EP_DONE;
            }
            if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0) {
                r->saved_fl = fl;
                r->flags |= PD__EPF_RESTORE;
            }
        }
        if (connect(fd, (const void *)(uintptr_t)s->addr, (socklen_t)s->off) == 0) {
            *res = 0;
        } else if (errno == EINPROGRESS || PD__EP_AGAIN(errno)) {
            if (errno == EINPROGRESS)
                r->flags |= PD__EPF_CONNECTING;
            f->maybe &= ~EPOLLOUT;
            return pd__ep_wait_for(r, fd, EPOLLOUT);
        } else {
            *res = -errno;
        }
    }
    if (r->flags & PD__EPF_RESTORE) {
        (void)fcntl(fd, F_SETFL, r->saved_fl);
        r->flags &= ~PD__EPF_RESTORE;
    }
    return PD__EP_DONE;
}

/*
 * poll_add, single- or multishot: the first wait re-registers the fd so
 * that an event comes if it is ready now; each event with a wanted bit
 * completes it (multishot: a completion with F_MORE each time). The result
 * is the ready events, with POLLERR, POLLHUP, POLLNVAL and POLLRDHUP
 * whether asked for or not, as the kernel's. r->res carries the event.
 */
static int pd__ep_poll_add(pd__engine *e, pd__ep_op *r, int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;
    uint32_t want = s->poll32_events, got;

    /*
     * The kernel refuses a multishot poll whose completions are to be
     * skipped on success: every F_MORE completion is one.
     */
    if ((s->len & ~(IORING_POLL_ADD_MULTI | IORING_POLL_ADD_LEVEL)) ||
        ((s->len & IORING_POLL_ADD_MULTI) && (s->flags & IOSQE_CQE_SKIP_SUCCESS))) {
        *res = -EINVAL;
        return PD__EP_DONE;
    }
    if (s->len & IORING_POLL_ADD_MULTI)
        r->flags |= PD__EPF_MULTI;
    got = (uint32_t)r->res & (want | PD__EP_POLL_UNMASK);
    r->res = 0;
    if (!(r->flags & PD__EPF_FIRST) && got != 0) {
        if (!(r->flags & PD__EPF_MULTI)) {
            *res = (int32_t)got;
            return PD__EP_DONE;
        }
        if (pd__ep_post_more(e, s->user_data, (int32_t)got, 0) < 0) {
            *res = (int32_t)got;
            return PD__EP_DONE;
        }
    }
    r->flags &= ~PD__EPF_FIRST;
    return pd__ep_wait_for(r, s->fd, want & ~(uint32_t)(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE));
}

/*
 * read, write, readv, writev. On a socket: recv/send. On another fd epoll
 * can wait on (a pipe, an eventfd, a tty): preadv2/pwritev2 with
 * RWF_NOWAIT, and where the file refuses that flag, a plain call if the fd
 * is non-blocking, else one made only once poll(2) says it is ready (which
 * can block if another reader takes the data first: such an fd should be
 * non-blocking). On a file: a read is tried with RWF_NOWAIT until it
 * completes or would block (page-cache hits complete here), and what is
 * left goes to a worker, as does every write.
 */
static __attribute__((noinline)) int pd__ep_rw_other(pd__engine *e, pd__ep_op *r, int kind,
                                                     int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;
    int out = s->opcode == IORING_OP_WRITE || s->opcode == IORING_OP_WRITEV;
    uint32_t ev = out ? EPOLLOUT : EPOLLIN;
    int fd = s->fd, cnt;
    struct iovec tmp[1024];
    const struct iovec *v;
    pd__ep_fd *f = &e->fds[fd];
    int nowait = pd__ep_nowait(s);
    ssize_t n;

    r->flags &= ~PD__EPF_FIRST;
    if (kind == PD__FK_FILE) {
        if (out)
            return PD__EP_WORK;
        for (;;) {
            size_t want;

            if ((cnt = pd__ep_iov(r, tmp, 1024, &v)) < 0) {
                *res = cnt;
                return PD__EP_DONE;
            }
            want = pd__ep_iov_total(v, cnt);
            n = want ? preadv2(fd, v, cnt, pd__ep_off(r), RWF_NOWAIT) : 0;
            if (n < 0 && PD__EP_AGAIN(errno) && nowait) {
                *res = r->done ? (int32_t)r->done : -EAGAIN;
                return PD__EP_DONE;
            }
            if (n < 0 && (PD__EP_AGAIN(errno) || errno == EOPNOTSUPP))
                return PD__EP_WORK;
            if (n < 0) {
                *res = r->done ? (int32_t)r->done : -errno;
                return PD__EP_DONE;
            }
            r->done += (uint32_t)n;
            if (n == 0 || (size_t)n == want) {
                *res = (int32_t)r->done;
                return PD__EP_DONE;
            }
        }
    }
    if (!(f->maybe & ev) && !nowait)
        return pd__ep_wait_for(r, fd, ev);
    if ((cnt = pd__ep_iov(r, tmp, 1024, &v)) < 0) {
        *res = cnt;
        return PD__EP_DONE;
    }
    /* These fds have no offset: io_uring ignores one, preadv2 would refuse it. */
    n = -1;
    errno = EOPNOTSUPP;
    if (!f->no_nowait)
        n = out ? pwritev2(fd, v, cnt, -1, RWF_NOWAIT) : preadv2(fd, v, cnt, -1, RWF_NOWAIT);
    if (n < 0 && errno == EOPNOTSUPP) {
        int fl = fcntl(fd, F_GETFL);
        struct pollfd p = { fd, (short)ev, 0 };

        f->no_nowait = 1;
        if (fl < 0) {
            *res = -errno;
            return PD__EP_DONE;
        }
        if (!(fl & O_NONBLOCK)) {
            if (poll(&p, 1, 0) == 0) {
                f->maybe &= ~ev;
                return pd__ep_wait_or_again(r, fd, ev, nowait, res);
            }
            /*
             * A blocking fd that is ready: a read takes what is there; a
             * write of PIPE_BUF bytes or less fits in a writable pipe.
             */
            if (out && pd__ep_iov_total(v, cnt) > PIPE_BUF) {
                if (v != tmp) {
                    memcpy(tmp, v, (size_t)cnt * sizeof(*v));
                    v = tmp;
                }
                for (n = 0; n < cnt; n++) {
                    size_t room = PIPE_BUF - pd__ep_iov_total(tmp, (int)n);

                    if (tmp[n].iov_len >= room) {
                        tmp[n].iov_len = room;
                        cnt = (int)n + 1;
                        break;
                    }
                }
            }
        }
        n = out ? pwritev2(fd, v, cnt, -1, 0) : preadv2(fd, v, cnt, -1, 0);
    }
    if (n < 0 && PD__EP_AGAIN(errno)) {
        f->maybe &= ~ev;
        return pd__ep_wait_or_again(r, fd, ev, nowait, res);
    }
    if (n < 0) {
        *res = -errno;
        return PD__EP_DONE;
    }
    /* A pipe that gave less than asked for is empty. */
    if (!out && pd__ep_drained(f) && n > 0 && (size_t)n < pd__ep_iov_total(v, cnt))
        f->maybe &= ~EPOLLIN;
    *res = (int32_t)n;
    return PD__EP_DONE;
}

static int pd__ep_rw(pd__engine *e, pd__ep_op *r, int32_t *res)
{
    int out = r->sqe.opcode == IORING_OP_WRITE || r->sqe.opcode == IORING_OP_WRITEV;
    int kind = pd__ep_fd_kind(e, r->sqe.fd);

    if (kind < 0) {
        *res = kind;
        return PD__EP_DONE;
    }
    if (kind == PD__FK_STREAM || kind == PD__FK_SOCK)
        return pd__ep_sock_io(e, r, out, res);
    return pd__ep_rw_other(e, r, kind, res);
}

/*
 * A splice that waits on a socket side (kind) ends with -EAGAIN once the
 * socket's own timeout has passed with nothing moved: SO_SNDTIMEO for
 * the socket it writes into, SO_RCVTIMEO for the one it reads from (opt),
 * as the kernel's splice, which blocks in an io-wq worker, does (httpd's
 * send deadline for a file it splices is SO_SNDTIMEO). The deadline is
 * taken at the op's first wait on a socket that has one (saturated, as a
 * timeout's: pd__ep_after), and pd__ep_run puts the record on the timer
 * heap (PD__EPF_SOCKTO).
 */
static void pd__ep_sock_timeo(pd__engine *e, pd__ep_op *r, int fd, int kind, int opt)
{
    struct __kernel_timespec ts;
    struct timeval tv;
    socklen_t len = sizeof(tv);

    if ((r->flags & PD__EPF_SOCKTO) || (kind != PD__FK_STREAM && kind != PD__FK_SOCK) ||
        getsockopt(fd, SOL_SOCKET, opt, &tv, &len) < 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
        return;
    ts.tv_sec = tv.tv_sec;
    ts.tv_nsec = (long long)tv.tv_usec * 1000;
    r->deadline = pd__ep_after(pd__ep_clock(e), pd__ep_ts_ns(&ts));
    r->flags |= PD__EPF_SOCKTO;
}

/*
 * splice. With a file on either side it runs on a worker; between pipes
 * and sockets it runs here, with SPLICE_F_NONBLOCK for the pipe side and
 * O_NONBLOCK set on a socket side (splice has no per-call flag for it).
 * EAGAIN does not say which side was not ready: poll(2) does. A wait on a
 * socket side is bounded by the socket's timeout (pd__ep_sock_timeo).
 */
static int pd__ep_splice(pd__engine *e, pd__ep_op *r, int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;
    int in = s->splice_fd_in, out = s->fd, kin, kout, tries, ret;
    int64_t oin = (int64_t)s->splice_off_in, oout = (int64_t)s->off;

    if (s->splice_flags & SPLICE_F_FD_IN_FIXED) {
        *res = -EBADF;
        return PD__EP_DONE;
    }
    kin = pd__ep_fd_kind(e, in);
    kout = pd__ep_fd_kind(e, out);
    if (kin < 0 || kout < 0) {
        *res = kin < 0 ? kin : kout;
        return PD__EP_DONE;
    }
    if (kin == PD__FK_FILE || kout == PD__FK_FILE)
        return PD__EP_WORK;
    if (r->flags & PD__EPF_FIRST) {
        r->flags &= ~PD__EPF_FIRST;
        if (((kin == PD__FK_STREAM || kin == PD__FK_SOCK) && (ret = pd__ep_nonblock(in)) < 0) ||
            ((kout == PD__FK_STREAM || kout == PD__FK_SOCK) && (ret = pd__ep_nonblock(out)) < 0)) {
            *res = ret;
            return PD__EP_DONE;
        }
    }
    for (tries = 0; tries < 2; tries++) {
        loff_t lin = oin, lout = oout;
        struct pollfd p[2] = { { in, POLLIN, 0 }, { out, POLLOUT, 0 } };
        ssize_t n = splice(in, oin == -1 ? NULL : &lin, out, oout == -1 ? NULL : &lout, s->len,
                           s->splice_flags | SPLICE_F_NONBLOCK);

        if (n >= 0 || !PD__EP_AGAIN(errno)) {
            *res = n < 0 ? -errno : (int32_t)n;
            return PD__EP_DONE;
        }
        if (poll(p, 2, 0) < 0) {
            *res = -errno;
            return PD__EP_DONE;
        }
        if (!p[0].revents) {
            e->fds[in].maybe &= ~EPOLLIN;
            pd__ep_sock_timeo(e, r, in, kin, SO_RCVTIMEO);
            return pd__ep_wait_for(r, in, EPOLLIN);
        }
        if (!p[1].revents) {
            e->fds[out].maybe &= ~EPOLLOUT;
            pd__ep_sock_timeo(e, r, out, kout, SO_SNDTIMEO);
            return pd__ep_wait_for(r, out, EPOLLOUT);
        }
    }
    pd__ep_sock_timeo(e, r, in, kin, SO_RCVTIMEO);
    return pd__ep_wait_for(r, in, EPOLLIN);
}

/*
 * close: here, at once, for what never blocks in close(2) (sockets,
 * pipes, anonymous inodes); on a worker for a file, whose close may flush.
 */
static int pd__ep_close(pd__engine *e, pd__ep_op *r, int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;
    int kind;

    if (s->file_index != 0) {
        *res = -EINVAL;
        return PD__EP_DONE;
    }
    kind = pd__ep_fd_kind(e, s->fd);
    if (kind < 0) {
        *res = kind;
        return PD__EP_DONE;
    }
    if (kind == PD__FK_FILE)
        return PD__EP_WORK;
    *res = close(s->fd) < 0 ? -errno : 0;
    return PD__EP_DONE;
}

/*
 * One attempt at an fd op: the op completes (PD__EP_DONE with *res and
 * *cflags), waits for r->need on r->fd (PD__EP_WAIT) or goes to a worker
 * (PD__EP_WORK). Multishot ops post their F_MORE completions themselves.
 * The first attempt is made on a copy of the SQE that is not yet a record.
 */
int pd__ep_attempt(pd__engine *e, pd__ep_op *r, int32_t *res, uint32_t *cflags)
{
    const struct io_uring_sqe *s = &r->sqe;

    *cflags = 0;
    switch (s->opcode) {
    case IORING_OP_RECV:
        if (s->flags & IOSQE_BUFFER_SELECT)
            return pd__ep_recv_sel(e, r, res, cflags);
        if (s->ioprio & ~IORING_RECVSEND_POLL_FIRST) {
            *res = -EINVAL;
            return PD__EP_DONE;
        }
        return pd__ep_sock_io(e, r, 0, res);
    case IORING_OP_SEND:
        if (s->ioprio & ~IORING_RECVSEND_POLL_FIRST) {
            *res = -EINVAL;
            return PD__EP_DONE;
        }
        return pd__ep_sock_io(e, r, 1, res);
    case IORING_OP_SEND_ZC: {
        /* A copying send: only inet sockets take the zero-copy flags. */
        int kind = pd__ep_fd_kind(e, s->fd);

        if (kind < 0 || (kind != PD__FK_STREAM && kind != PD__FK_SOCK) ||
            !e->fds[s->fd].inet) {
            *res = kind < 0 ? kind : -EOPNOTSUPP;
            return PD__EP_DONE;
        }
        if (s->ioprio & ~(IORING_RECVSEND_POLL_FIRST | PD__EP_ZC_REPORT_USAGE)) {
            *res = -EINVAL;
            return PD__EP_DONE;
        }
        return pd__ep_sock_io(e, r, 1, res);
    }
    case IORING_OP_RECVMSG:
        return pd__ep_msg(e, r, 0, res);
    case IORING_OP_SENDMSG:
        return pd__ep_msg(e, r, 1, res);
    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV:
        return pd__ep_rw(e, r, res);
    case IORING_OP_ACCEPT:
        return pd__ep_accept(e, r, res);
    case IORING_OP_CONNECT:
        return pd__ep_connect(e, r, res);
    case IORING_OP_POLL_ADD:
        return pd__ep_poll_add(e, r, res);
    case IORING_OP_SPLICE:
        return pd__ep_splice(e, r, res);
    case IORING_OP_CLOSE:
        return pd__ep_close(e, r, res);
    case IORING_OP_SHUTDOWN:
        *res = shutdown(s->fd, (int)s->len) < 0 ? -errno : 0;
        return PD__EP_DONE;
    case IORING_OP_SOCKET:
        if (s->rw_flags != 0 || s->file_index != 0) {
            *res = -EINVAL;
            return PD__EP_DONE;
        }
        *res = socket(s->fd, (int)s->off, (int)s->len);
        if (*res < 0)
            *res = -errno;
        return PD__EP_DONE;
    case PD__EP_OP_BIND:
        /* The kernel's prep refuses what its bind does not read. */
        if (s->len != 0 || s->rw_flags != 0 || s->file_index != 0) {
            *res = -EINVAL;
            return PD__EP_DONE;
        }
        *res = bind(s->fd, (const struct sockaddr *)(uintptr_t)s->addr,
                    (socklen_t)s->off) < 0 ? -errno : 0;
        return PD__EP_DONE;
    case PD__EP_OP_LISTEN:
        if (s->addr != 0 || s->off != 0 || s->rw_flags != 0 || s->file_index != 0) {
            *res = -EINVAL;
            return PD__EP_DONE;
        }
        *res = listen(s->fd, (int)s->len) < 0 ? -errno : 0;
        return PD__EP_DONE;
    default:
        *res = -EOPNOTSUPP;
        return PD__EP_DONE;
    }
}
