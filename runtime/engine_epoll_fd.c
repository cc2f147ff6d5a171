/*
 * The epoll engine's fds: the table of what it knows about each, epoll
 * registration, events, and where a parked op goes next.
 *
 * An op on a socket-like fd (socket, pipe, eventfd, tty...) is tried at
 * once with a syscall that cannot block (engine_epoll_ops.c); only when it
 * says EAGAIN does the op wait, on the fd's list of waiters, for an epoll
 * event. Each fd is
 * registered once, edge-triggered, and stays registered: the steady state
 * makes no epoll_ctl. Several ops may wait on one fd (a recv and a send on
 * one socket); an event retries those that wait for it, oldest first.
 *
 * The fd number is all the engine sees, and the program may close an fd
 * behind its back (close(2) in a sync drop) and get the same number for a
 * new file. The registration of the old file is gone then (epoll drops a
 * closed file), and nothing says so. So a registration is trusted only in
 * the enter that proved it (an EPOLL_CTL_ADD or _MOD that succeeded); an op
 * that starts to wait on an fd not proven in this enter puts the fd on a
 * check list, and if it still waits PD__EP_GRACE_NS later the fd is
 * checked with EPOLL_CTL_MOD (which also rechecks readiness): ENOENT means
 * a new file, which is registered and whose waiters are retried. A busy fd
 * completes its waits before the grace runs out and costs no epoll_ctl; an
 * idle one costs one per wait, a grace period after it began; a stale one
 * delays its waiter by the grace period once, and never loses it. Ops
 * that create fds (accept, socket, openat) and the close op reset the
 * number's state, so the engine's own fds are never stale.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine_epoll.h"

/* What a file that cannot be polled is: always ready (DEFAULT_POLLMASK). */
#define PD__EP_POLL_DEFAULT (EPOLLIN | EPOLLOUT | EPOLLRDNORM | EPOLLWRNORM)
/* --- the fd table --- */

/*
 * The highest fd number the table may hold, plus one: RLIMIT_NOFILE, read
 * again whenever a larger fd shows up (the program may have raised it),
 * within [1024, 2^24].
 */
int pd__ep_fd_limit(pd__engine *e)
{
    struct rlimit rl;

    e->fdmax = 1 << 24;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)e->fdmax)
        e->fdmax = rl.rlim_cur < 1024 ? 1024 : (int)rl.rlim_cur;
    return e->fdmax;
}

/*
 * Whether fd, at or past RLIMIT_NOFILE, is open all the same (opened
 * before the limit was lowered, or inherited): then the table may hold it
 * (up to 2^24), since the kernel's ops on it work.
 */
static int pd__ep_fd_open_above(pd__engine *e, int fd)
{
    if (fd >= 1 << 24 || fcntl(fd, F_GETFD) < 0)
        return 0;
    e->fdmax = fd + 1;
    return 1;
}

/*
 * fd's entry, growing the table (by doubling) when needed; NULL for a
 * number no fd can have (negative, or past RLIMIT_NOFILE and not open) or
 * when memory ran out. The table moves when it grows: callers re-read
 * their entry pointers after getting another fd's.
 */
pd__ep_fd *pd__ep_fd_get(pd__engine *e, int fd)
{
    if (fd < 0 ||
        (fd >= e->fdmax && pd__ep_fd_limit(e) <= fd && !pd__ep_fd_open_above(e, fd)))
        return NULL;
    if (fd >= e->nfds) {
        int n = e->nfds ? e->nfds : 64, i;
        pd__ep_fd *t;

        while (n <= fd)
            n *= 2;
        if (n > e->fdmax)
            n = e->fdmax;
        t = realloc(e->fds, (size_t)n * sizeof(*t));
        if (t == NULL)
            return NULL;
        memset(t + e->nfds, 0, (size_t)(n - e->nfds) * sizeof(*t));
        for (i = e->nfds; i < n; i++) {
            t[i].maybe = PD__EP_ANY;
            t[i].check_next = -1;
        }
        e->fds = t;
        e->nfds = n;
    }
    return &e->fds[fd];
}

/* The error for an fd that has no entry. */
int pd__ep_fd_err(const pd__engine *e, int fd)
{
    return fd < 0 || fd >= e->fdmax ? -EBADF : -ENOMEM;
}

/*
 * What the engine knew of fd's file is dropped, and its registration's
 * events, should it live on in another process, are ignored from now on
 * (the generation changes).
 */
static void pd__ep_fd_reset(pd__ep_fd *f)
{
    f->gen++;
    f->interest = 0;
    f->valid = 0;
    f->maybe = PD__EP_ANY;
    f->kind = PD__FK_UNKNOWN;
    f->inet = 0;
    f->no_nowait = 0;
}

/*
 * fd's number names a new file (or none), by the engine's own doing (a
 * close op, or an op that made an fd: the number was free before it):
 * what the engine knew of the old file is dropped (pd__ep_fd_reset), and
 * the ops still waiting on the number are stale. The kernel's ops keep
 * their file, so a stale op must never be retried on the number's next
 * file (it would read one connection's bytes for another's reader): it
 * waits on, out of the way, until it is cancelled.
 */
void pd__ep_fd_forget(pd__engine *e, int fd)
{
    pd__ep_op *r;

    if (fd < 0 || fd >= e->nfds)
        return;
    for (r = pd__ep_of(e->fds[fd].whead); r != NULL; r = pd__ep_of(r->ql.next))
        r->stale = 1;
    pd__ep_fd_reset(&e->fds[fd]);
}

void pd__ep_fd_free(pd__engine *e)
{
    free(e->fds);
    e->fds = NULL;
    e->nfds = 0;
}

/* What fd is: fstat, and for a socket its type and family. Returns 0 or -errno. */
static int pd__ep_classify(int fd, pd__ep_fd *f)
{
    struct stat st;
    int v = 0;
    socklen_t len = sizeof(v);

    if (fstat(fd, &st) < 0)
        return -errno;
    switch (st.st_mode & S_IFMT) {
    case S_IFSOCK:
        f->kind = getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_STREAM
                      ? PD__FK_STREAM
                      : PD__FK_SOCK;
        len = sizeof(v);
        f->inet = getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) == 0 &&
                  (v == AF_INET || v == AF_INET6);
        break;
    case S_IFIFO:
        f->kind = PD__FK_PIPE;
        break;
    case S_IFREG:
    case S_IFBLK:
    case S_IFDIR:
        f->kind = PD__FK_FILE;
        break;
    default:
        f->kind = PD__FK_POLL; /* character devices, eventfd and other anon inodes */
        break;
    }
    return 0;
}

/* fd's kind (PD__FK_*), classifying it if needed, or -errno. */
int pd__ep_fd_kind(pd__engine *e, int fd)
{
    pd__ep_fd *f = pd__ep_fd_get(e, fd);
    int ret;

    if (f == NULL)
        return pd__ep_fd_err(e, fd);
    if (f->kind == PD__FK_UNKNOWN && (ret = pd__ep_classify(fd, f)) < 0)
        return ret;
    return f->kind;
}

/* --- registration --- */

/*
 * Makes fd's registration cover `want` (always edge-triggered, always with
 * EPOLLRDHUP so that poll results carry it as the kernel's do), with a MOD
 * if registered (which also queues an event if the fd is ready now), else
 * an ADD. A MOD that finds nothing means the number names a file this
 * engine never registered: that one is registered, and 1 is returned so
 * that its waiters are retried. Returns 0, 1 or -errno (-EPERM: a file
 * epoll cannot wait on).
 */
static int pd__ep_ctl(pd__engine *e, int fd, pd__ep_fd *f, uint32_t want)
{
    struct epoll_event ev = { .events = want | EPOLLET | EPOLLRDHUP };
    int stale = 0;

    ev.data.u64 = (uint32_t)fd | (uint64_t)f->gen << 32;
    if (f->interest != 0) {
        if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
            goto ok;
        if (errno != ENOENT)
            return -errno;
        stale = 1;
        /*
         * Closed and reused behind the engine's back: which waiters came
         * before the close cannot be told, so all are retried.
         */
        pd__ep_fd_reset(f);
        ev.data.u64 = (uint32_t)fd | (uint64_t)f->gen << 32;
    }
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int err = errno;

        /* Still registered from before a forget: the same file. */
        if (err != EEXIST || epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) {
            if (err == EPERM)
                f->kind = PD__FK_FILE;
            return -err;
        }
    }
    if (f->kind == PD__FK_UNKNOWN)
        (void)pd__ep_classify(fd, f);
ok:
    f->interest = want;
    f->valid = e->epoch;
    return stale;
}

/* What the ops waiting on f wait for, together. */
static uint32_t pd__ep_waiting_for(const pd__ep_fd *f)
{
    const pd__ep_op *r;
    uint32_t need = 0;

    for (r = pd__ep_of(f->whead); r != NULL; r = pd__ep_of(r->ql.next))
        need |= r->need;
    return need;
}

static void pd__ep_check_push(pd__engine *e, int fd, pd__ep_fd *f)
{
    f->on_check = 1;
    f->check_at = pd__ep_clock(e) + PD__EP_GRACE_NS;
    f->check_next = -1;
    if (e->check_tail >= 0)
        e->fds[e->check_tail].check_next = fd;
    else
        e->check_head = fd;
    e->check_tail = fd;
}

/*
 * Puts r on the list of its fd (r->fd), to wait for r->need. The fd's
 * registration is made or widened if needed; a poll_add's first wait always
 * re-registers, so that readiness present now makes an event. Returns 0,
 * 1 when the registration turned out stale (r waits, but may succeed now:
 * see pd__ep_run), or -errno with r not waiting.
 */
int pd__ep_fd_wait(pd__engine *e, pd__ep_op *r)
{
    pd__ep_fd *f = pd__ep_fd_get(e, r->fd);
    int ret = 0, force;

    if (f == NULL)
        return pd__ep_fd_err(e, r->fd);
    force = r->sqe.opcode == IORING_OP_POLL_ADD && !(r->flags & PD__EPF_ARMED);
    if (force || (r->need & ~f->interest) || f->interest == 0) {
        ret = pd__ep_ctl(e, r->fd, f, f->interest | r->need | pd__ep_waiting_for(f));
        if (ret < 0)
            return ret;
        r->flags |= PD__EPF_ARMED;
    } else if (f->valid != e->epoch && !f->on_check) {
        pd__ep_check_push(e, r->fd, f);
    }
    r->state = PD__EP_FDWAIT;
    r->wfd = r->fd;
    pd__list_append(&f->whead, &f->wtail, &r->ql);
    e->nwait++;
    return ret;
}

void pd__ep_fd_unwait(pd__engine *e, pd__ep_op *r)
{
    pd__ep_fd *f = &e->fds[r->wfd];

    pd__list_unlink(&f->whead, &f->wtail, &r->ql);
    r->state = PD__EP_FREE;
    e->nwait--;
}

/*
 * What an op that must wait does when its fd cannot be waited on (epoll
 * says EPERM: a regular file, a directory, /dev/null): reads, writes and
 * splices go to a worker, where blocking is what such files do; a poll
 * completes with the always-ready mask, once (a multishot one too, without
 * F_MORE, as the kernel's). The simulator does the same for such files.
 */
int pd__ep_not_pollable(pd__ep_op *r, int32_t *res)
{
    const struct io_uring_sqe *s = &r->sqe;

    switch (s->opcode) {
    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV:
    case IORING_OP_SPLICE:
        return PD__EP_WORK;
    case IORING_OP_POLL_ADD:
        *res = (int32_t)(PD__EP_POLL_DEFAULT & (s->poll32_events | PD__EP_POLL_UNMASK));
        return PD__EP_DONE;
    default:
        *res = -EPERM;
        return PD__EP_DONE;
    }
}

/*
 * Takes a record that is on no list to where its last attempt said: done,
 * a worker, or waiting on an fd. A registration found stale is replaced
 * and the op tried again (a bounded number of times).
 */
void pd__ep_run(pd__engine *e, pd__ep_op *r, int how, int32_t res, uint32_t cflags)
{
    int tries;

    for (tries = 0;; tries++) {
        int ret;

        switch (how) {
        case PD__EP_DONE:
            pd__ep_finish(e, r, res, cflags);
            return;
        case PD__EP_WORK:
            /* A pool that cannot start fails the op (-EAGAIN, -ENOMEM). */
            if ((res = pd__ep_work_queue(e, r)) < 0)
                pd__ep_finish(e, r, res, 0);
            return;
        default:
            break;
        }
        ret = pd__ep_fd_wait(e, r);
        if (ret == 0 || (ret == 1 && tries >= 2)) {
            /* A splice bounded by its socket's timeout: on the heap until it ends. */
            if ((r->flags & (PD__EPF_SOCKTO | PD__EPF_INHEAP)) == PD__EPF_SOCKTO) {
                r->flags |= PD__EPF_INHEAP;
                pd__ep_heap_push(e, r);
            }
            return;
        }
        if (ret == 1) {
            pd__ep_fd_unwait(e, r);
            how = pd__ep_attempt(e, r, &res, &cflags);
        } else if (ret == -EPERM) {
            how = pd__ep_not_pollable(r, &res);
            cflags = 0;
        } else {
            how = PD__EP_DONE;
            res = ret;
            cflags = 0;
        }
    }
}

/*
 * Retries the ops waiting on fd for one of `events` (every op on an error
 * or a hangup), oldest first. A synthetic retry (a stale registration was
 * replaced, so readiness is unknown) skips polls: only a real event, which
 * the new registration makes if the fd is ready, may complete them.
 */
static void pd__ep_fd_retry(pd__engine *e, int fd, uint32_t events, int synthetic)
{
    pd__ep_op *r;

    for (r = pd__ep_of(e->fds[fd].whead); r != NULL;) {
        pd__ep_op *next = pd__ep_of(r->ql.next);
        int32_t res = 0;
        uint32_t cflags = 0;
        int how;

        if ((!(r->need & events) && !(events & (EPOLLERR | EPOLLHUP))) ||
            (synthetic && r->sqe.opcode == IORING_OP_POLL_ADD) || r->stale) {
            r = next;
            continue;
        }
        r->res = (int32_t)events;
        how = pd__ep_attempt(e, r, &res, &cflags);
        /* Still waiting for what it waited for: it keeps its place. */
        if (how == PD__EP_WAIT && r->fd == fd && !(r->need & ~e->fds[fd].interest)) {
            r = next;
            continue;
        }
        pd__ep_fd_unwait(e, r);
        pd__ep_run(e, r, how, res, cflags);
        r = next;
    }
}

/*
 * An epoll event for fd: what may be ready now, and a retry of the ops
 * that wait for it. Events of a registration of an earlier file are
 * ignored.
 */
void pd__ep_fd_event(pd__engine *e, int fd, uint32_t gen, uint32_t events)
{
    if (fd < 0 || fd >= e->nfds || e->fds[fd].gen != gen)
        return;
    e->fds[fd].maybe |= events;
    if (events & (EPOLLERR | EPOLLHUP))
        e->fds[fd].maybe |= PD__EP_ANY;
    pd__ep_fd_retry(e, fd, events, 0);
}

/*
 * Checks the fds whose grace ran out with ops still waiting and no proof
 * of their registration in this enter (see the top of this file).
 */
void pd__ep_checks(pd__engine *e)
{
    int64_t now;

    if (e->check_head < 0)
        return;
    now = pd__ep_clock(e);
    while (e->check_head >= 0 && e->fds[e->check_head].check_at <= now) {
        int fd = e->check_head, ret;
        pd__ep_fd *f = &e->fds[fd];

        e->check_head = f->check_next;
        if (e->check_head < 0)
            e->check_tail = -1;
        f->on_check = 0;
        if (f->whead == NULL || f->valid == e->epoch)
            continue;
        ret = pd__ep_ctl(e, fd, f, f->interest | pd__ep_waiting_for(f));
        if (ret == 1) {
            pd__ep_fd_retry(e, fd, PD__EP_ANY, 1);
        } else if (ret < 0) {
            pd__ep_op *r, *next;

            /* The fd is gone, or names a file epoll cannot wait on (stale ops wait on). */
            for (r = pd__ep_of(e->fds[fd].whead); r != NULL; r = next) {
                int32_t res = ret;
                int how = PD__EP_DONE;

                next = pd__ep_of(r->ql.next);
                if (r->stale)
                    continue;
                pd__ep_fd_unwait(e, r);
                if (ret == -EPERM)
                    how = pd__ep_not_pollable(r, &res);
                pd__ep_run(e, r, how, res, 0);
            }
        }
    }
}
