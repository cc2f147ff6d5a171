/*
 * The simulator's requests: records (a preallocated pool, the live ones in
 * start order), starting each op, readiness of the fds ops wait on (poll(2)
 * with a zero timeout, never a blocking wait while anything else can move),
 * file ops run synchronously (sometimes "on a worker" for a few enters, so
 * that a cancel can find one queued or running), and the faults the seed
 * chooses. Timers and cancellation are engine_sim_cancel.c's.
 *
 * Every iteration over records follows their start order, and every choice
 * is the PRNG's, so a program whose fds only its own tasks drive makes the
 * same completions in the same order for the same seed.
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
#include <unistd.h>

#include "engine_sim.h"

#define PD__SIM_OP_FTRUNCATE 55u

/* --- records --- */

/* A chunk of records, freed with the engine. */
typedef struct pd__sim_chunk {
    struct pd__sim_chunk *next;
    pd__sim_op ops[];
} pd__sim_chunk;

/*
 * Adds a chunk of n records. They are not linked into the free list (which
 * would touch every page of the chunk): pd__sim_rec_new takes them in
 * order from `fresh` once the free list is empty. Called with none left.
 */
static int pd__sim_grow(pd__sim *s, unsigned n)
{
    pd__sim_chunk *c = malloc(sizeof(*c) + n * sizeof(pd__sim_op));

    if (c == NULL)
        return -ENOMEM;
    c->next = (pd__sim_chunk *)(void *)s->pool;
    s->pool = (pd__sim_op *)(void *)c;
    s->fresh = c->ops;
    s->nfresh = n;
    s->npool += n;
    return 0;
}

int pd__sim_ops_init(pd__sim *s, unsigned n)
{
    return pd__sim_grow(s, n);
}

void pd__sim_ops_free(pd__sim *s)
{
    pd__sim_chunk *c = (pd__sim_chunk *)(void *)s->pool;

    while (c != NULL) {
        pd__sim_chunk *next = c->next;

        free(c);
        c = next;
    }
    s->pool = NULL;
}

/* A live record holding proto, at the end of the start order; NULL without memory. */
static pd__sim_op *pd__sim_rec_new(pd__sim *s, const pd__ep_op *proto)
{
    pd__sim_op *op = s->free;

    if (op != NULL) {
        s->free = op->next;
    } else {
        if (s->nfresh == 0 && pd__sim_grow(s, s->npool) < 0)
            return NULL;
        op = s->fresh++;
        s->nfresh--;
    }
    memset(op, 0, sizeof(*op));
    op->r = *proto;
    op->seq = ++s->op_seq;
    pd__list_append(&s->live_head, &s->live_tail, &op->live);
    s->nlive++;
    return op;
}

void pd__sim_set(pd__sim *s, pd__sim_op *op, int state)
{
    switch (op->state) {
    case PD__SIM_FDWAIT:
        s->nwait--;
        break;
    case PD__SIM_WORK:
        s->nwork--;
        break;
    case PD__SIM_TIMER:
    case PD__SIM_LTIMER:
        s->ntimer--;
        break;
    default:
        break;
    }
    op->state = (uint8_t)state;
    switch (state) {
    case PD__SIM_FDWAIT:
        s->nwait++;
        break;
    case PD__SIM_WORK:
        s->nwork++;
        break;
    case PD__SIM_TIMER:
    case PD__SIM_LTIMER:
        s->ntimer++;
        break;
    default:
        break;
    }
}

void pd__sim_rec_free(pd__sim *s, pd__sim_op *op)
{
    pd__sim_set(s, op, PD__SIM_FREE);
    if (op->r.flags & PD__EPF_INHEAP)
        s->nsockto--;
    pd__list_unlink(&s->live_head, &s->live_tail, &op->live);
    s->nlive--;
    op->next = s->free;
    s->free = op;
}

/* --- completions --- */

/* An op's last completion, through the epoll engine's emit (fd table, send_zc, skip). */
void pd__sim_emit(pd__sim *s, const struct io_uring_sqe *sqe, int32_t res,
                         uint32_t cflags)
{
    pd__ep_emit(s->ep, sqe, res, cflags);
    pd__sim_drain(s);
}

/*
 * A record's last completion; its linked timeout, still armed, completes
 * with -ECANCELED after it. A connect that set O_NONBLOCK gives it back.
 */
void pd__sim_finish(pd__sim *s, pd__sim_op *op, int32_t res, uint32_t cflags)
{
    pd__sim_op *lt = op->link;

    if (op->r.flags & PD__EPF_RESTORE)
        (void)fcntl(op->r.sqe.fd, F_SETFL, op->r.saved_fl);
    pd__sim_emit(s, &op->r.sqe, res, cflags);
    if (lt != NULL) {
        if (!(lt->r.sqe.flags & IOSQE_CQE_SKIP_SUCCESS))
            pd__sim_add(s, lt->r.sqe.user_data, -ECANCELED, 0);
        pd__sim_rec_free(s, lt);
    }
    pd__sim_rec_free(s, op);
}

/* --- attempts, with the faults the seed chooses --- */

static int pd__sim_is_out(unsigned op)
{
    return op == IORING_OP_SEND || op == IORING_OP_WRITE || op == IORING_OP_WRITEV ||
           op == IORING_OP_SENDMSG || op == IORING_OP_SEND_ZC;
}

/*
 * One attempt at an fd op (pd__ep_attempt), with a fault now and then:
 * on a stream socket, -ECONNRESET for a read (the peer reset it) and
 * -EPIPE or -ECONNRESET for a write; a read or write of fewer bytes than
 * asked for (a single syscall that moved less, which the kernel's io_uring
 * returns as it is when MSG_WAITALL was not asked for) where the kernel
 * can make one; -ENOBUFS for a recv into a provided buffer (another
 * request took the group's last buffer); -EMFILE for an accept.
 */
static int pd__sim_attempt_faulty(pd__sim *s, pd__ep_op *r, int32_t *res, uint32_t *cflags)
{
    struct io_uring_sqe *q = &r->sqe;
    unsigned op = q->opcode;
    int kind, how;
    uint32_t len;

    *cflags = 0;
    if (!s->faults)
        return pd__ep_attempt(s->ep, r, res, cflags);
    switch (op) {
    case IORING_OP_ACCEPT:
        if ((r->flags & PD__EPF_FIRST) && pd__sim_io_fault(s, 64)) {
            *res = -EMFILE;
            return PD__EP_DONE;
        }
        return pd__ep_attempt(s->ep, r, res, cflags);
    case IORING_OP_RECV:
    case IORING_OP_SEND:
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_READV:
    case IORING_OP_WRITEV:
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG:
    case IORING_OP_SEND_ZC:
        break;
    default:
        return pd__ep_attempt(s->ep, r, res, cflags);
    }
    if ((q->flags & IOSQE_BUFFER_SELECT) && (r->flags & PD__EPF_FIRST) && pd__sim_io_fault(s, 32)) {
        *res = -ENOBUFS;
        return PD__EP_DONE;
    }
    kind = pd__ep_fd_kind(s->ep, q->fd);
    if (kind == PD__FK_STREAM && r->done == 0 && pd__sim_io_fault(s, 64)) {
        *res = pd__sim_is_out(op) && pd__sim_below(s, 2) ? -EPIPE : -ECONNRESET;
        return PD__EP_DONE;
    }
    len = q->len;
    /*
     * Short transfers the kernel makes: on a stream socket, a recv or send
     * of any length; on a pipe, only a write of more than PIPE_BUF bytes
     * (smaller ones are atomic, and a read takes every byte a write put
     * there at once).
     */
    if ((kind == PD__FK_STREAM ||
         (kind == PD__FK_PIPE && pd__sim_is_out(op) && len - r->done > PIPE_BUF)) &&
        !(q->flags & IOSQE_BUFFER_SELECT) &&
        (op == IORING_OP_RECV || op == IORING_OP_SEND || op == IORING_OP_READ ||
         op == IORING_OP_WRITE) &&
        !((op == IORING_OP_RECV || op == IORING_OP_SEND) && (q->msg_flags & MSG_WAITALL)) &&
        len > r->done + 1 && pd__sim_io_fault(s, 8)) {
        q->len = r->done + 1 + pd__sim_below(s, len - r->done - 1);
        how = pd__ep_attempt(s->ep, r, res, cflags);
        q->len = len;
        return how;
    }
    return pd__ep_attempt(s->ep, r, res, cflags);
}

/*
 * An attempt, whose multishot completions (F_MORE) the embedded engine
 * posts only while the simulated CQ has room for them beside what is
 * pending (pd__ep_post_more): the one that finds no room ends the request,
 * as the kernel ends a multishot request whose completion it cannot post.
 * So each request has at most one completion beyond the CQ's size in
 * flight, and the pending and overflow lists stay within what enter
 * reserved (pd__sim_reserve).
 */
static int pd__sim_attempt(pd__sim *s, pd__ep_op *r, int32_t *res, uint32_t *cflags)
{
    unsigned used = pd__umem_cq_ready(&s->m) + s->npend, room = 0;
    int how;

    if (s->ovf_len == 0 && used < s->m.cq_entries)
        room = s->m.cq_entries - used;
    s->ep->m.cq_entries = room < s->ep->m.cq_kentries ? room : s->ep->m.cq_kentries;
    how = pd__sim_attempt_faulty(s, r, res, cflags);
    s->ep->m.cq_entries = s->ep->m.cq_kentries;
    return how;
}

/*
 * A file op, run now on this thread (pd__ep_work_run), with -EIO now and
 * then for a read, a write or an fsync of a file. A splice whose pipe side
 * is not ready waits for it; an fd that turned out not to be a file is
 * tried as an fd op.
 */
static int pd__sim_work(pd__sim *s, pd__sim_op *op, int32_t *res, uint32_t *cflags)
{
    unsigned o = op->r.sqe.opcode;

    *cflags = 0;
    if ((o == IORING_OP_READ || o == IORING_OP_WRITE || o == IORING_OP_READV ||
         o == IORING_OP_WRITEV || o == IORING_OP_FSYNC) &&
        pd__sim_io_fault(s, 64)) {
        *res = -EIO;
        return PD__EP_DONE;
    }
    *res = pd__ep_work_run(&op->r);
    if (*res == PD__EP_RES_AGAIN)
        return PD__EP_WAIT;
    if (*res == PD__EP_RES_NOTFILE) {
        pd__ep_fd *f = pd__ep_fd_get(s->ep, op->r.sqe.fd);

        if (f != NULL)
            f->kind = PD__FK_UNKNOWN;
        return pd__sim_attempt(s, &op->r, res, cflags);
    }
    return PD__EP_DONE;
}

/* The generation of fd's entry in the embedded epoll state (0: none yet). */
static uint32_t pd__sim_gen(pd__sim *s, int fd)
{
    pd__ep_fd *f = pd__ep_fd_get(s->ep, fd);

    return f != NULL ? f->gen : 0;
}

/* A record begins to wait on r.fd: the file it waits on is the one the number names now. */
static void pd__sim_wait_gen(pd__sim *s, pd__sim_op *op)
{
    op->r.wfd = op->r.fd;
    op->gen = pd__sim_gen(s, op->r.fd);
}

/*
 * Whether a waiting record is stale: its fd number was closed by a close
 * op, or names a file an op made, since it began to wait (the generation
 * changed, as the epoll engine's pd__ep_fd_forget marks its waiters). The
 * kernel's op keeps its file: a stale one is never tried on the number's
 * next file (it would read one connection's bytes for another's reader),
 * and waits on until it is cancelled.
 */
static int pd__sim_stale(pd__sim *s, const pd__sim_op *op)
{
    return op->r.wfd == op->r.fd && pd__sim_gen(s, op->r.fd) != op->gen;
}

/*
 * Takes a record to where its last attempt said: done, waiting on an fd
 * (one that is open: else it completes with -EBADF, as the kernel refuses
 * a request on a bad fd; poll(2) would ignore a negative one), or a file
 * op. A file op runs at once, unless the seed queues it "on a worker" for
 * a few enters, taken (running: a cancel answers -EALREADY) or not (a
 * cancel stops it).
 */
static void pd__sim_run(pd__sim *s, pd__sim_op *op, int how, int32_t res, uint32_t cflags)
{
    for (;;) {
        switch (how) {
        case PD__EP_DONE:
            pd__sim_finish(s, op, res, cflags);
            return;
        case PD__EP_WAIT:
            if (op->r.fd < 0 || fcntl(op->r.fd, F_GETFD) < 0) {
                how = PD__EP_DONE;
                res = -EBADF;
                cflags = 0;
                break;
            }
            /*
             * A file epoll refuses to wait on (a regular file, a directory),
             * which poll(2) calls always ready: what the epoll engine does
             * then (a poll completes once with the ready mask, multishot or
             * not, as the kernel's), not a wait.
             */
            if (pd__ep_fd_kind(s->ep, op->r.fd) == PD__FK_FILE) {
                how = pd__ep_not_pollable(&op->r, &res);
                cflags = 0;
                break;
            }
            op->r.flags &= (uint8_t)~PD__EPF_FIRST;
            pd__sim_set(s, op, PD__SIM_FDWAIT);
            pd__sim_wait_gen(s, op);
            /*
             * A splice bounded by its socket's timeout (the attempt just
             * set r.deadline to the real clock's now plus that timeout):
             * the same timeout on the virtual clock, once.
             */
            if ((op->r.flags & (PD__EPF_SOCKTO | PD__EPF_INHEAP)) == PD__EPF_SOCKTO) {
                int64_t left = op->r.deadline - s->ep->now;

                op->r.flags |= PD__EPF_INHEAP;
                op->deadline = pd__ep_after(s->now, left > 0 ? left : 0);
                s->nsockto++;
            }
            return;
        default:
            if (op->state != PD__SIM_WORK && pd__sim_fault(s, 4)) {
                pd__sim_set(s, op, PD__SIM_WORK);
                op->turns = 1 + pd__sim_below(s, 3);
                op->running = (uint8_t)pd__sim_below(s, 2);
                return;
            }
            pd__sim_set(s, op, PD__SIM_FREE);
            how = pd__sim_work(s, op, &res, &cflags);
            pd__sim_drain(s);
            break;
        }
    }
}

/* --- starting ops --- */

static int pd__sim_file_op(unsigned op)
{
    switch (op) {
    case IORING_OP_OPENAT:
    case IORING_OP_OPENAT2:
    case IORING_OP_STATX:
    case IORING_OP_UNLINKAT:
    case IORING_OP_RENAMEAT:
    case IORING_OP_MKDIRAT:
    case IORING_OP_FSYNC:
    case PD__SIM_OP_FTRUNCATE:
        return 1;
    default:
        return 0;
    }
}

/*
 * A timeout SQE's deadline on the virtual clock, or -errno: relative to
 * now, or, with IORING_TIMEOUT_ABS, an absolute virtual time.
 */
static int pd__sim_deadline(const pd__sim *s, const struct io_uring_sqe *sqe, int64_t *out)
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
    if (fl & IORING_TIMEOUT_ABS)
        *out = ns > s->now ? ns : s->now;
    else
        *out = pd__ep_after(s->now, ns);
    return 0;
}

/*
 * Starts one request (and its linked timeout, lt): the same checks and
 * results as the epoll engine's pd__ep_start, on the virtual clock, with
 * openat's -EMFILE fault.
 */
void pd__sim_start(pd__sim *s, const struct io_uring_sqe *sqe, const struct io_uring_sqe *lt)
{
    const unsigned known = IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_ASYNC |
                           IOSQE_BUFFER_SELECT | IOSQE_CQE_SKIP_SUCCESS;
    int64_t lt_deadline = 0, deadline = 0;
    int32_t res = 0;
    uint32_t cflags = 0;
    int how = PD__EP_DONE;
    pd__ep_op t;
    pd__sim_op *op, *l;

    pd__sim_batch_begin(s);
    memset(&t, 0, sizeof(t));
    t.sqe = *sqe;
    t.fd = sqe->fd;
    t.flags = PD__EPF_FIRST;
    t.wfd = -1;
    if (lt != NULL && (res = pd__sim_deadline(s, lt, &lt_deadline)) < 0) {
        pd__sim_emit(s, sqe, -ECANCELED, 0);
        pd__sim_emit(s, lt, res, 0);
        return;
    }
    if (sqe->flags & IOSQE_FIXED_FILE)
        res = -EBADF;
    else if (sqe->flags & ~known)
        res = (sqe->flags & IOSQE_IO_DRAIN) ? -EOPNOTSUPP : -EINVAL;
    else if ((sqe->flags & IOSQE_BUFFER_SELECT) && sqe->opcode != IORING_OP_RECV)
        res = -EOPNOTSUPP;
    else if (sqe->opcode == IORING_OP_NOP)
        res = 0;
    else if (sqe->opcode == IORING_OP_ASYNC_CANCEL) {
        pd__sim_cancel(s, sqe);
        how = -1;
    } else if (sqe->opcode == IORING_OP_TIMEOUT) {
        res = sqe->off != 0 ? -EOPNOTSUPP : pd__sim_deadline(s, sqe, &deadline);
        if (res == 0)
            how = PD__EP_TIMED;
    } else if (sqe->opcode == IORING_OP_LINK_TIMEOUT) {
        res = -EINVAL;
    } else if (pd__sim_file_op(sqe->opcode)) {
        if ((sqe->opcode == IORING_OP_OPENAT || sqe->opcode == IORING_OP_OPENAT2) &&
            pd__sim_io_fault(s, 64))
            res = -EMFILE;
        else
            how = PD__EP_WORK;
    } else if (pd__engine_epoll.probe_op(s->ep, sqe->opcode)) {
        how = pd__sim_attempt(s, &t, &res, &cflags);
        pd__sim_drain(s);
    } else {
        res = -EOPNOTSUPP;
    }
    if (how == PD__EP_DONE)
        pd__sim_emit(s, sqe, res, cflags);
    if (how <= PD__EP_DONE) {
        if (lt != NULL && !(lt->flags & IOSQE_CQE_SKIP_SUCCESS))
            pd__sim_add(s, lt->user_data, -ECANCELED, 0);
        return;
    }
    op = pd__sim_rec_new(s, &t);
    l = op != NULL && lt != NULL ? pd__sim_rec_new(s, &t) : NULL;
    if (op == NULL || (lt != NULL && l == NULL)) {
        if (op != NULL)
            pd__sim_rec_free(s, op);
        pd__sim_emit(s, sqe, -ENOMEM, 0);
        if (lt != NULL)
            pd__sim_add(s, lt->user_data, -ECANCELED, 0);
        return;
    }
    if (l != NULL) {
        l->r.sqe = *lt;
        l->r.flags = 0;
        l->deadline = lt_deadline;
        l->link = op;
        op->link = l;
        pd__sim_set(s, l, PD__SIM_LTIMER);
    }
    if (how == PD__EP_TIMED) {
        op->deadline = deadline;
        pd__sim_set(s, op, PD__SIM_TIMER);
    } else {
        pd__sim_run(s, op, how, res, cflags);
    }
}

/* --- readiness --- */

/*
 * Counts the wakeups of the watched fds since the last call: the
 * edge-triggered instance reports an fd once after any number of wakeups
 * of its wait queue that match its events, the ones on which the kernel's
 * multishot poll fires. Called before readiness is read, so that a wakeup
 * is counted before the poll it makes fire again posts.
 */
static void pd__sim_wakeups(pd__sim *s)
{
    struct epoll_event ev[64];
    int n, i;

    if (s->etfd < 0)
        return;
    do {
        n = epoll_wait(s->etfd, ev, 64, 0);
        for (i = 0; i < n; i++)
            if (ev[i].data.fd >= 0 && (unsigned)ev[i].data.fd < s->nwakes)
                s->wakes[ev[i].data.fd]++;
    } while (n == 64);
}

/*
 * Starts counting the wakeups of a multishot poll's fd (its first post).
 * Returns whether they are counted: not for a file epoll refuses (a
 * regular file), nor without memory. An fd already watched (another poll
 * on it) is watched for every event from then on.
 */
static int pd__sim_watch(pd__sim *s, const pd__sim_op *op)
{
    struct epoll_event ev;
    int fd = op->r.fd;

    if (fd < 0)
        return 0;
    if (s->etfd < 0 && (s->etfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        s->etfd = -1;
        return 0;
    }
    if ((unsigned)fd >= s->nwakes) {
        unsigned cap = pd__grow_cap(s->nwakes ? s->nwakes : 64, (size_t)fd + 1);
        uint32_t *w;

        if (cap == 0 || (w = realloc(s->wakes, cap * sizeof(*w))) == NULL)
            return 0;
        memset(w + s->nwakes, 0, (cap - s->nwakes) * sizeof(*w));
        s->wakes = w;
        s->nwakes = cap;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = (op->r.need & 0xffff) | EPOLLRDHUP | EPOLLET;
    ev.data.fd = fd;
    if (epoll_ctl(s->etfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 1;
    ev.events = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLET;
    return errno == EEXIST && epoll_ctl(s->etfd, EPOLL_CTL_MOD, fd, &ev) == 0;
}

/* Whether a multishot poll's fd was woken since the poll last posted. */
static int pd__sim_woken(const pd__sim *s, const pd__sim_op *op)
{
    return op->watched && s->wakes[op->r.fd] != op->wake;
}

/*
 * Whether a waiting record is a multishot poll that fired and may not fire
 * again yet, its fd still ready and not seen otherwise (a readiness seen
 * gone makes the next one a new event). Not in the enter it fired in. In
 * a later enter it may: the kernel's poll fires on every wakeup of the
 * file's wait queue, and a wakeup the simulator counts (pd__sim_wakeups:
 * new data, as on a live stream) always lets it. Without one it may too,
 * as the simulator's rendering of wakeups it cannot count (a socket's
 * wait queue is shared between reads and writes, and a regular file's is
 * not watched). But once it fired PD__SIM_REFIRES times in a row with no
 * wakeup counted, its fd never seen not ready (the program leaves the
 * data there), it waits until virtual time moved and no timer is due (the
 * timers that made time move go first), or until the enter would wait for
 * good (pd__sim_refire): were it to fire in every enter, each enter would
 * have a completion, and virtual time, which moves only when nothing else
 * can, would never reach a timer (a linked timeout on the poll, a
 * deadline). A stream keeps it firing, as it keeps the kernel's.
 */
static int pd__sim_fired(const pd__sim *s, const pd__sim_op *op)
{
    return op->fired &&
           (op->fired_at == s->enters ||
            (op->refires >= PD__SIM_REFIRES && !pd__sim_woken(s, op) && s->refire != s->enters &&
             (op->fired_now == s->now || pd__sim_next_timer(s) <= s->now)));
}

int pd__sim_refire(pd__sim *s)
{
    const pd__sim_op *op;

    if (s->refire == s->enters)
        return 0;
    for (op = pd__sim_live(s->live_head); op != NULL; op = pd__sim_live(op->live.next))
        if (op->state == PD__SIM_FDWAIT && op->fired && op->fired_at != s->enters) {
            s->refire = s->enters;
            return 1;
        }
    return 0;
}

/*
 * The pollfds of the waiting records, in start order (skipping multishot
 * polls that fired, when skip_fired). Returns their number, or -ENOMEM.
 */
static int pd__sim_collect(pd__sim *s, int skip_fired)
{
    pd__sim_op *op;
    unsigned n = 0;

    if (s->nwait > s->cap_pfd) {
        unsigned cap = pd__grow_cap(s->cap_pfd, s->nwait);
        struct pollfd *p;
        pd__sim_op **o;

        if (cap == 0 || (p = realloc(s->pfd, cap * sizeof(*p))) == NULL)
            return -ENOMEM;
        s->pfd = p;
        o = realloc(s->pop, cap * sizeof(*o));
        if (o == NULL)
            return -ENOMEM;
        s->pop = o;
        s->cap_pfd = cap;
    }
    for (op = pd__sim_live(s->live_head); op != NULL; op = pd__sim_live(op->live.next)) {
        if (op->state != PD__SIM_FDWAIT || (skip_fired && pd__sim_fired(s, op)) ||
            pd__sim_stale(s, op))
            continue;
        s->pfd[n].fd = op->r.fd;
        /*
         * A poll request reports POLLRDHUP whether asked for or not, as the
         * kernel's (and the epoll engine's registration) do; poll(2) only
         * when asked.
         */
        s->pfd[n].events = (short)((op->r.need | (op->r.sqe.opcode == IORING_OP_POLL_ADD
                                                      ? (uint32_t)POLLRDHUP
                                                      : 0u)) &
                                   0xffff);
        s->pfd[n].revents = 0;
        s->pop[n++] = op;
    }
    return (int)n;
}

/* A waiting record's fd is ready for revents: what it may now do, and a retry. */
static int pd__sim_retry(pd__sim *s, pd__sim_op *op, uint32_t revents)
{
    pd__ep_fd *f = pd__ep_fd_get(s->ep, op->r.fd);
    uint64_t posted = s->cqe_seq;
    int32_t res = 0;
    uint32_t cflags = 0;
    int how;

    if (f != NULL) {
        f->maybe |= revents;
        if (revents & (POLLERR | POLLHUP | POLLNVAL))
            f->maybe |= PD__EP_ANY;
    }
    op->r.res = (int32_t)revents;
    pd__sim_batch_begin(s);
    how = pd__sim_attempt(s, &op->r, &res, &cflags);
    pd__sim_drain(s);
    if (how == PD__EP_WAIT) {
        /* A splice may wait on its other side now. */
        if (op->r.fd != op->r.wfd)
            pd__sim_wait_gen(s, op);
        /* A multishot poll that posted waits until its fd is not ready. */
        if (op->r.sqe.opcode == IORING_OP_POLL_ADD && s->cqe_seq != posted) {
            if (!op->fired && !op->watched) {
                /* Adding a ready fd reports it at once: that is not a wakeup. */
                op->watched = (uint8_t)pd__sim_watch(s, op);
                pd__sim_wakeups(s);
            }
            /* Fired again with its fd not seen not ready nor woken: one more in a row. */
            op->refires = op->fired && !pd__sim_woken(s, op) ? op->refires + 1 : 0;
            if (op->watched)
                op->wake = s->wakes[op->r.fd];
            op->fired = 1;
            op->fired_at = s->enters;
            op->fired_now = s->now;
        }
        return s->cqe_seq != posted;
    }
    pd__sim_set(s, op, PD__SIM_FREE);
    pd__sim_run(s, op, how, res, cflags);
    return 1;
}

int pd__sim_step(pd__sim *s, int run_work)
{
    int n, i, moved = 0;
    pd__sim_op *op, *next;

    pd__sim_wakeups(s);
    n = pd__sim_collect(s, 0);

    if (n > 0 && poll(s->pfd, (nfds_t)n, 0) > 0) {
        int m = 0;

        /* The ready ones, in an order the PRNG shuffles. */
        for (i = 0; i < n; i++) {
            uint32_t want = (uint32_t)s->pfd[i].events | POLLERR | POLLHUP | POLLNVAL;

            if (s->pop[i]->fired && !(s->pfd[i].revents & want & ~(POLLERR | POLLHUP)))
                s->pop[i]->fired = 0;
            else if (s->pfd[i].revents != 0 && !pd__sim_fired(s, s->pop[i])) {
                s->pfd[m] = s->pfd[i];
                s->pop[m++] = s->pop[i];
            }
        }
        for (i = m - 1; i > 0; i--) {
            int j = (int)pd__sim_below(s, (uint32_t)i + 1);
            struct pollfd p = s->pfd[i];
            pd__sim_op *o = s->pop[i];

            s->pfd[i] = s->pfd[j];
            s->pop[i] = s->pop[j];
            s->pfd[j] = p;
            s->pop[j] = o;
        }
        for (i = 0; i < m; i++)
            if (s->pop[i]->state == PD__SIM_FDWAIT)
                moved |= pd__sim_retry(s, s->pop[i], (uint32_t)s->pfd[i].revents);
    }
    for (op = pd__sim_live(s->live_head); op != NULL; op = next) {
        next = pd__sim_live(op->live.next);
        if (op->state == PD__SIM_WORK && (op->turns == 0 || run_work)) {
            pd__sim_batch_begin(s);
            pd__sim_run(s, op, PD__EP_WORK, 0, 0);
            moved = 1;
            /* The list may have changed under next: start over. */
            next = pd__sim_live(s->live_head);
            if (run_work)
                break;
        }
    }
    return moved;
}

int pd__sim_wait_real(pd__sim *s, int ms)
{
    int n;

    pd__sim_wakeups(s);
    n = pd__sim_collect(s, 1);

    if (n < 0)
        return 0;
    n = poll(s->pfd, (nfds_t)n, ms);
    if (n < 0)
        return errno == EINTR ? -EINTR : 0;
    return n > 0;
}
