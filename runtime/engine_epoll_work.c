/*
 * The epoll engine's worker pool: file ops (open, stat, read and write on
 * files, fsync, ftruncate, unlink, rename, mkdir, close of a file, splice
 * with a file) run on PD__EP_WORKERS threads, as blocking syscalls. The
 * pool starts with the engine's first op that needs it (pd__ep_work_queue,
 * on the engine's thread), so that a runtime that never touches a file
 * never starts a thread; once started it runs until the engine exits.
 *
 * The engine queues a record under the pool's lock; a worker takes it
 * (marking it running, under the lock), runs the syscall without the lock,
 * stores the result and pushes the record on a lock-free stack, writing
 * the engine's eventfd when the stack was empty, which ends the engine's
 * epoll wait. Nothing is allocated per op. A queued op can be cancelled
 * (-ECANCELED); a running one cannot be interrupted: its cancel answers
 * -EALREADY and it completes with its own result when the syscall
 * returns, so that no buffer is released while a worker may write it.
 * Workers block every signal, so a program's handlers never run on them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine_epoll.h"

#ifndef IORING_FSYNC_DATASYNC
#define IORING_FSYNC_DATASYNC (1U << 0)
#endif
#define PD__EP_OP_FTRUNCATE 55u

/* Whether fd is what a worker may block on: a file, not a pipe or socket. */
static int pd__ep_is_file(int fd)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return -errno;
    return S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode);
}

/*
 * A read or write on a file, from r->done on. The fd is checked first: a
 * number the engine took for a file may name a pipe by now (closed and
 * reused behind its back), and a worker must not block on a pipe.
 */
static int32_t pd__ep_work_rw(pd__ep_op *r)
{
    const struct io_uring_sqe *s = &r->sqe;
    int out = s->opcode == IORING_OP_WRITE || s->opcode == IORING_OP_WRITEV;
    int64_t off = (int64_t)s->off;
    struct iovec tmp[1024];
    const struct iovec *v;
    int cnt, file = pd__ep_is_file(s->fd);
    ssize_t n;

    if (file <= 0)
        return file < 0 ? file : PD__EP_RES_NOTFILE;
    if ((cnt = pd__ep_iov(r, tmp, 1024, &v)) < 0)
        return cnt;
    if (off == -1)
        n = out ? writev(s->fd, v, cnt) : readv(s->fd, v, cnt);
    else
        n = out ? pwritev(s->fd, v, cnt, (off_t)(off + r->done))
                : preadv(s->fd, v, cnt, (off_t)(off + r->done));
    if (n < 0)
        return r->done ? (int32_t)r->done : -errno;
    return (int32_t)(r->done + (size_t)n);
}

/*
 * A splice with a file on one side and a pipe on the other. The pipe side
 * must not block a worker: SPLICE_F_NONBLOCK, and on EAGAIN the engine
 * waits for the pipe (r->fd, r->need) and queues the op again.
 */
static int32_t pd__ep_work_splice(pd__ep_op *r)
{
    const struct io_uring_sqe *s = &r->sqe;
    int in = s->splice_fd_in, out = s->fd;
    int64_t oin = (int64_t)s->splice_off_in, oout = (int64_t)s->off;
    loff_t lin = oin, lout = oout;
    struct stat st;
    ssize_t n = splice(in, oin == -1 ? NULL : &lin, out, oout == -1 ? NULL : &lout, s->len,
                       s->splice_flags | SPLICE_F_NONBLOCK);

    if (n >= 0)
        return (int32_t)n;
    if (errno != EAGAIN)
        return -errno;
    if (fstat(in, &st) == 0 && S_ISFIFO(st.st_mode)) {
        r->fd = in;
        r->need = 0x001; /* EPOLLIN */
    } else {
        r->fd = out;
        r->need = 0x004; /* EPOLLOUT */
    }
    return PD__EP_RES_AGAIN;
}

/*
 * Runs r's syscall, blocking; the result, or -errno (or a PD__EP_RES_*).
 * The simulator engine calls it on its own thread.
 */
int32_t pd__ep_work_run(pd__ep_op *r)
{
    const struct io_uring_sqe *s = &r->sqe;
    const char *path = (const char *)(uintptr_t)s->addr;
    long ret;

    switch (s->opcode) {
    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV:
        return pd__ep_work_rw(r);
    case IORING_OP_SPLICE:
        return pd__ep_work_splice(r);
    case IORING_OP_FSYNC:
        if (s->fsync_flags & ~IORING_FSYNC_DATASYNC)
            return -EINVAL;
        ret = (s->fsync_flags & IORING_FSYNC_DATASYNC) ? fdatasync(s->fd) : fsync(s->fd);
        break;
    case PD__EP_OP_FTRUNCATE:
        ret = ftruncate(s->fd, (off_t)s->off);
        break;
    case IORING_OP_OPENAT:
        ret = openat(s->fd, path, (int)s->open_flags, (mode_t)s->len);
        break;
    case IORING_OP_OPENAT2:
        ret = syscall(SYS_openat2, s->fd, path, (void *)(uintptr_t)s->off, (size_t)s->len);
        break;
    case IORING_OP_STATX:
        ret = statx(s->fd, path, (int)s->statx_flags, s->len, (void *)(uintptr_t)s->off);
        break;
    case IORING_OP_UNLINKAT:
        ret = unlinkat(s->fd, path, (int)s->unlink_flags);
        break;
    case IORING_OP_RENAMEAT:
        ret = renameat2(s->fd, path, (int)s->len, (const char *)(uintptr_t)s->off,
                        s->rename_flags);
        break;
    case IORING_OP_MKDIRAT:
        ret = mkdirat(s->fd, path, (mode_t)s->len);
        break;
    case IORING_OP_CLOSE:
        ret = close(s->fd);
        break;
    default:
        return -EOPNOTSUPP;
    }
    return ret < 0 ? -errno : (int32_t)ret;
}

static void *pd__ep_worker(void *arg)
{
    pd__engine *e = arg;

    pthread_mutex_lock(&e->lock);
    e->started++;
    pthread_cond_broadcast(&e->cond);
    for (;;) {
        pd__ep_op *r, *top;
        int32_t res;

        while (!e->stop && e->wq_head == NULL)
            pthread_cond_wait(&e->cond, &e->lock);
        if (e->stop)
            break;
        r = pd__ep_of(e->wq_head);
        pd__list_unlink(&e->wq_head, &e->wq_tail, &r->ql);
        r->state = PD__EP_WRUN;
        pthread_mutex_unlock(&e->lock);

        res = pd__ep_work_run(r);

        pthread_mutex_lock(&e->lock);
        r->res = res;
        r->state = PD__EP_WDONE;
        pthread_mutex_unlock(&e->lock);
        top = atomic_load_explicit(&e->done, memory_order_relaxed);
        do
            r->next = top;
        while (!atomic_compare_exchange_weak_explicit(&e->done, &top, r, memory_order_release,
                                                      memory_order_relaxed));
        if (top == NULL) {
            uint64_t one = 1;

            /* EAGAIN: the counter is full, so the engine has a wake pending. */
            (void)!write(e->wakefd, &one, sizeof(one));
        }
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

void (*pd__workers_starting)(int done);

/*
 * Starts the pool, and returns once every worker runs: what a thread's
 * start allocates (a sanitizer's thread state, glibc's thread-local
 * storage) is allocated here, between the calls pd__workers_starting(0)
 * and pd__workers_starting(1) (the harness leaves that window out of its
 * count), never later. Returns 0 or -errno (nothing is left running then,
 * and the next op that needs a worker tries again).
 */
static int pd__ep_work_start(pd__engine *e)
{
    sigset_t all, old;
    unsigned i;
    int ret = 0;

    if (pd__workers_starting)
        pd__workers_starting(0);
    if (pthread_mutex_init(&e->lock, NULL) != 0) {
        ret = -ENOMEM;
        goto out;
    }
    if (pthread_cond_init(&e->cond, NULL) != 0) {
        pthread_mutex_destroy(&e->lock);
        ret = -ENOMEM;
        goto out;
    }
    e->nthreads = 0;
    e->started = 0;
    e->stop = 0;
    e->work_inited = 1;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 0; i < PD__EP_WORKERS; i++) {
        ret = -pthread_create(&e->threads[i], NULL, pd__ep_worker, e);
        if (ret < 0)
            break;
        e->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret < 0) {
        pd__ep_work_stop(e);
        goto out;
    }
    pthread_mutex_lock(&e->lock);
    while (e->started < e->nthreads)
        pthread_cond_wait(&e->cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
out:
    if (pd__workers_starting)
        pd__workers_starting(1);
    return ret;
}

/*
 * Stops the pool, if it was started: queued ops are abandoned, running
 * ones finish first (their threads are joined). An engine that never
 * started it has nothing to join.
 */
void pd__ep_work_stop(pd__engine *e)
{
    unsigned i;

    if (!e->work_inited)
        return;
    pthread_mutex_lock(&e->lock);
    e->stop = 1;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    for (i = 0; i < e->nthreads; i++)
        pthread_join(e->threads[i], NULL);
    e->nthreads = 0;
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
    e->work_inited = 0;
}

/*
 * Queues r for a worker, starting the pool first if this is the engine's
 * first op that needs it. Returns 0, or -errno when the pool cannot start
 * (r is then on no list: the caller completes it with that error).
 */
int pd__ep_work_queue(pd__engine *e, pd__ep_op *r)
{
    if (!e->work_inited) {
        int ret = pd__ep_work_start(e);

        if (ret < 0)
            return ret;
    }
    e->nwork++;
    pthread_mutex_lock(&e->lock);
    r->state = PD__EP_WQ;
    pd__list_append(&e->wq_head, &e->wq_tail, &r->ql);
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/*
 * Returns 0 when r was still queued (now removed), else -EALREADY. Without
 * a pool no record is on the workers' side, and there is no lock to take.
 */
int pd__ep_work_cancel(pd__engine *e, pd__ep_op *r)
{
    int ret = -EALREADY;

    if (!e->work_inited) {
        r->ecancel = 1;
        return ret;
    }
    pthread_mutex_lock(&e->lock);
    if (r->state == PD__EP_WQ) {
        pd__list_unlink(&e->wq_head, &e->wq_tail, &r->ql);
        r->state = PD__EP_FREE;
        e->nwork--;
        ret = 0;
    } else {
        r->ecancel = 1;
    }
    pthread_mutex_unlock(&e->lock);
    return ret;
}

/*
 * Completes what the workers finished, in the order they finished. An op
 * a worker handed back (a pipe side of a splice not ready, an fd that is
 * no file) goes on where it must, unless it was cancelled meanwhile.
 */
void pd__ep_work_reap(pd__engine *e)
{
    pd__ep_op *r, *fifo = NULL;

    if (atomic_load_explicit(&e->done, memory_order_relaxed) == NULL)
        return;
    r = atomic_exchange_explicit(&e->done, NULL, memory_order_acquire);
    while (r != NULL) {
        pd__ep_op *next = r->next;

        r->next = fifo;
        fifo = r;
        r = next;
    }
    while ((r = fifo) != NULL) {
        int32_t res = r->res;
        uint32_t cflags = 0;
        int how = PD__EP_DONE;

        fifo = r->next;
        r->next = NULL;
        r->state = PD__EP_FREE;
        e->nwork--;
        if ((res == PD__EP_RES_AGAIN || res == PD__EP_RES_NOTFILE) && r->ecancel) {
            res = -ECANCELED;
        } else if (res == PD__EP_RES_AGAIN) {
            how = PD__EP_WAIT;
        } else if (res == PD__EP_RES_NOTFILE) {
            pd__ep_fd *f = pd__ep_fd_get(e, r->sqe.fd);

            if (f != NULL)
                f->kind = PD__FK_UNKNOWN;
            how = pd__ep_attempt(e, r, &res, &cflags);
        }
        r->ecancel = 0;
        pd__ep_run(e, r, how, res, cflags);
    }
}
