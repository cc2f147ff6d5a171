/*
 * The epoll engine: a user-space "kernel" behind a pd_runtime's ring.
 *
 * The ring's memory is the engine's. enter() consumes the SQEs the caller
 * queued, in order; each op is tried at once, and completes at once when
 * it can (a recv with data waiting is one recv(2) and one CQE: no record,
 * no lock, no epoll_ctl). An op that cannot complete at once becomes a
 * record: waiting on an fd for an epoll event (engine_epoll_fd.c), on the
 * timer heap, or on the worker pool (engine_epoll_work.c). Then enter()
 * waits in epoll_pwait2 for what it was asked to wait for, running timers,
 * worker completions and readiness as they come, and posts CQEs as io_uring
 * would: user_data, res, and the F_MORE, F_BUFFER and F_NOTIF flags.
 *
 * This file: the ring, the CQ and its overflow, the SQE consumer and the
 * start of each op, the wait loop, provided buffer rings, setup and the
 * vtable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "engine_epoll.h"

#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)
#endif
/* IORING_OP_FTRUNCATE (Linux 6.9), which liburing 2.3 does not name. */
#define PD__EP_OP_FTRUNCATE 55u
/* The wake eventfd's epoll data: no fd's (an fd's is fd | gen << 32). */
#define PD__EP_WAKE_TAG UINT64_MAX

int64_t pd__ep_clock(pd__engine *e)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return e->now;
}

/* --- the completion queue --- */

static unsigned pd__ep_cq_ready(const pd__engine *e)
{
    return pd__umem_cq_ready(&e->m);
}

/*
 * The overflow's room from init: as many completions as the CQ holds, and
 * at least 64, so that a CQ overflowed by that much allocates nothing.
 */
static unsigned pd__ep_ovf_min(unsigned cq_entries)
{
    return cq_entries > 64 ? cq_entries : 64;
}

/*
 * Makes room in the overflow for what the requests in flight and the
 * `nsqe` about to start can still post while the CQ is full: two each
 * (a zero-copy send's result and notification; any other request posts
 * one, as a multishot one ends with the completion that finds the CQ full,
 * pd__ep_post_more), on top of what it holds. Called by enter before it
 * consumes anything, so that posting never allocates and never fails.
 * Returns 0, or -ENOMEM with nothing changed.
 */
static int pd__ep_ovf_reserve(pd__engine *e, unsigned nsqe)
{
    size_t need = (size_t)e->ovf_len + 2 * ((size_t)e->inuse + nsqe);
    struct io_uring_cqe *n;
    unsigned i, cap;

    if (need <= e->ovf_cap)
        return 0;
    cap = pd__grow_cap(e->ovf_cap, need);
    if (cap == 0 || (n = malloc(cap * sizeof(*n))) == NULL)
        return -ENOMEM;
    for (i = 0; i < e->ovf_len; i++)
        n[i] = e->ovf[(e->ovf_head + i) % e->ovf_cap];
    free(e->ovf);
    e->ovf = n;
    e->ovf_cap = cap;
    e->ovf_head = 0;
    return 0;
}

/*
 * Keeps a completion the CQ has no room for, in the overflow ring, whose
 * room enter reserved (pd__ep_ovf_reserve): nothing is ever dropped
 * (IORING_FEAT_NODROP), and IORING_SQ_CQ_OVERFLOW is set in the SQ flags
 * while it holds any, as the kernel sets it, so that whoever reads the
 * ring knows an enter will bring more.
 */
static void pd__ep_ovf_push(pd__engine *e, uint64_t ud, int32_t res, uint32_t flags)
{
    struct io_uring_cqe *c = &e->ovf[(e->ovf_head + e->ovf_len) % e->ovf_cap];

    c->user_data = ud;
    c->res = res;
    c->flags = flags;
    if (e->ovf_len++ == 0)
        IO_URING_WRITE_ONCE(e->m.sq_kflags, e->m.sq_kflags | IORING_SQ_CQ_OVERFLOW);
}

/*
 * Moves overflowed completions into the CQ while it has room, oldest
 * first; IORING_SQ_CQ_OVERFLOW is cleared with the last of them.
 */
static void pd__ep_ovf_flush(pd__engine *e)
{
    if (e->ovf_len == 0)
        return;
    while (e->ovf_len && pd__ep_cq_ready(e) < e->m.cq_entries) {
        e->m.cqes[e->m.cq_ktail & e->m.cq_mask] = e->ovf[e->ovf_head];
        io_uring_smp_store_release(&e->m.cq_ktail, e->m.cq_ktail + 1);
        e->ovf_head = (e->ovf_head + 1) % e->ovf_cap;
        e->ovf_len--;
    }
    if (e->ovf_len == 0)
        IO_URING_WRITE_ONCE(e->m.sq_kflags, e->m.sq_kflags & ~IORING_SQ_CQ_OVERFLOW);
}

/* Whether a completion posted now goes into the CQ (nothing overflowed waits). */
static int pd__ep_cq_room(const pd__engine *e)
{
    return e->ovf_len == 0 && pd__ep_cq_ready(e) < e->m.cq_entries;
}

static void pd__ep_cq_put(pd__engine *e, uint64_t ud, int32_t res, uint32_t flags)
{
    struct io_uring_cqe *c = &e->m.cqes[e->m.cq_ktail & e->m.cq_mask];

    c->user_data = ud;
    c->res = res;
    c->flags = flags;
    io_uring_smp_store_release(&e->m.cq_ktail, e->m.cq_ktail + 1);
}

/* Posts one completion, behind any that overflowed (order is kept). */
void pd__ep_post(pd__engine *e, uint64_t ud, int32_t res, uint32_t flags)
{
    if (!pd__ep_cq_room(e)) {
        pd__ep_ovf_push(e, ud, res, flags);
        return;
    }
    pd__ep_cq_put(e, ud, res, flags);
}

int pd__ep_post_more(pd__engine *e, uint64_t ud, int32_t res, uint32_t flags)
{
    if (!pd__ep_cq_room(e))
        return -EOVERFLOW;
    pd__ep_cq_put(e, ud, res, flags | IORING_CQE_F_MORE);
    return 0;
}

/*
 * An op's last completion, inline or from a record: what the result means
 * to the engine's fd table (a new fd's number names a new file; a closed
 * one names none), then the CQE -- two for a zero-copy send (the result
 * with F_MORE, then the notification, whose result says the data was
 * copied when IORING_SEND_ZC_REPORT_USAGE asked), none for a success with
 * IOSQE_CQE_SKIP_SUCCESS.
 */
void pd__ep_emit(pd__engine *e, const struct io_uring_sqe *sqe, int32_t res,
                        uint32_t cflags)
{
    switch (sqe->opcode) {
    case IORING_OP_OPENAT:
    case IORING_OP_OPENAT2:
    case IORING_OP_SOCKET:
        if (res >= 0)
            pd__ep_fd_forget(e, res);
        break;
    case IORING_OP_CLOSE:
        if (res != -ECANCELED)
            pd__ep_fd_forget(e, sqe->fd);
        break;
    case IORING_OP_SEND_ZC:
        pd__ep_post(e, sqe->user_data, res, IORING_CQE_F_MORE);
        /* The engine always copies: asked, it says so, as the kernel does. */
        pd__ep_post(e, sqe->user_data,
                    (sqe->ioprio & PD__EP_ZC_REPORT_USAGE) ? (int32_t)PD__EP_ZC_COPIED : 0,
                    IORING_CQE_F_NOTIF);
        return;
    default:
        break;
    }
    if ((sqe->flags & IOSQE_CQE_SKIP_SUCCESS) && res >= 0)
        return;
    pd__ep_post(e, sqe->user_data, res, cflags);
}

/* --- starting ops --- */

static int pd__ep_file_op(unsigned op)
{
    switch (op) {
    case IORING_OP_OPENAT:
    case IORING_OP_OPENAT2:
    case IORING_OP_STATX:
    case IORING_OP_UNLINKAT:
    case IORING_OP_RENAMEAT:
    case IORING_OP_MKDIRAT:
    case IORING_OP_FSYNC:
    case PD__EP_OP_FTRUNCATE:
        return 1;
    default:
        return 0;
    }
}

static int pd__ep_fd_op(unsigned op)
{
    switch (op) {
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_READV:
    case IORING_OP_WRITEV:
    case IORING_OP_RECV:
    case IORING_OP_SEND:
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG:
    case IORING_OP_SEND_ZC:
    case IORING_OP_ACCEPT:
    case IORING_OP_CONNECT:
    case IORING_OP_SHUTDOWN:
    case IORING_OP_POLL_ADD:
    case IORING_OP_SPLICE:
    case IORING_OP_CLOSE:
    case IORING_OP_SOCKET:
    case PD__EP_OP_BIND:
    case PD__EP_OP_LISTEN:
        return 1;
    default:
        return 0;
    }
}

static int pd__ep_probe(pd__engine *e, unsigned op)
{
    (void)e;
    return op == IORING_OP_NOP || op == IORING_OP_TIMEOUT || op == IORING_OP_LINK_TIMEOUT ||
           op == IORING_OP_ASYNC_CANCEL || pd__ep_file_op(op) || pd__ep_fd_op(op);
}

static void pd__ep_start(pd__engine *e, const struct io_uring_sqe *sqe,
                         const struct io_uring_sqe *lt)
{
    const unsigned known = IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_ASYNC |
                           IOSQE_BUFFER_SELECT | IOSQE_CQE_SKIP_SUCCESS;
    int64_t lt_deadline = 0;
    int32_t res = 0;
    uint32_t cflags = 0;
    int how = PD__EP_DONE;
    pd__ep_op t, *r, *l;

    t.sqe = *sqe;
    t.next = t.hnext = t.link = NULL;
    t.ql.prev = t.ql.next = NULL;
    t.deadline = 0;
    t.heap = 0;
    t.done = 0;
    t.res = 0;
    t.fd = sqe->fd;
    t.need = 0;
    t.state = PD__EP_FREE;
    t.flags = PD__EPF_FIRST;
    t.ecancel = 0;
    t.stale = 0;
    t.wfd = -1;
    t.saved_fl = 0;
    if (lt != NULL && (res = pd__ep_deadline(e, lt, &lt_deadline)) < 0) {
        pd__ep_emit(e, sqe, -ECANCELED, 0);
        pd__ep_emit(e, lt, res, 0);
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
        pd__ep_cancel(e, sqe);
        how = -1;
    } else if (sqe->opcode == IORING_OP_TIMEOUT) {
        /* A completion-count timeout (off != 0) is not supported. */
        res = sqe->off != 0 ? -EOPNOTSUPP : pd__ep_deadline(e, sqe, &t.deadline);
        if (res == 0)
            how = PD__EP_TIMED;
    } else if (sqe->opcode == IORING_OP_LINK_TIMEOUT) {
        res = -EINVAL; /* not after a linked op */
    } else if (pd__ep_file_op(sqe->opcode)) {
        how = PD__EP_WORK;
    } else if (pd__ep_fd_op(sqe->opcode)) {
        how = pd__ep_attempt(e, &t, &res, &cflags);
    } else {
        res = -EOPNOTSUPP;
    }
    if (how == PD__EP_DONE)
        pd__ep_emit(e, sqe, res, cflags);
    if (how <= PD__EP_DONE) {
        if (lt != NULL && !(lt->flags & IOSQE_CQE_SKIP_SUCCESS))
            pd__ep_post(e, lt->user_data, -ECANCELED, 0);
        return;
    }
    /* A record for the op, and one for its linked timeout, before either is armed. */
    r = pd__ep_rec_new(e, &t);
    l = r != NULL && lt != NULL ? pd__ep_rec_new(e, &t) : NULL;
    if (r == NULL || (lt != NULL && l == NULL)) {
        if (r != NULL)
            pd__ep_rec_free(e, r);
        pd__ep_emit(e, sqe, -ENOMEM, 0);
        if (lt != NULL)
            pd__ep_post(e, lt->user_data, -ECANCELED, 0);
        return;
    }
    pd__ep_hash_add(e, r);
    if (l != NULL) {
        l->sqe = *lt;
        l->state = PD__EP_LTIMER;
        l->flags = 0;
        l->deadline = lt_deadline;
        l->link = r;
        r->link = l;
        pd__ep_heap_push(e, l);
    }
    if (how == PD__EP_TIMED)
        pd__ep_timer_park(e, r, t.deadline);
    else
        pd__ep_run(e, r, how, 0, 0);
}

/*
 * Consumes every SQE queued since the last call, in order. An op with
 * IOSQE_IO_LINK followed by an IORING_OP_LINK_TIMEOUT is one request with a
 * timeout; any other link chain is not supported: its first op completes
 * with -EOPNOTSUPP and the ops linked after it with -ECANCELED, as the
 * kernel fails a chain whose head failed. Returns the number consumed.
 */
static unsigned pd__ep_consume(pd__engine *e, struct io_uring *ring)
{
    unsigned head = ring->sq.sqe_head, tail = ring->sq.sqe_tail, mask = e->m.sq_kmask;
    unsigned n = tail - head;

    while (head != tail) {
        const struct io_uring_sqe *sqe = &e->m.sqes[head++ & mask];
        const struct io_uring_sqe *next = head != tail ? &e->m.sqes[head & mask] : NULL;

        if (!(sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)) || next == NULL) {
            pd__ep_start(e, sqe, NULL);
        } else if (next->opcode == IORING_OP_LINK_TIMEOUT &&
                   !(next->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK))) {
            head++;
            pd__ep_start(e, sqe, next);
        } else {
            pd__ep_emit(e, sqe, -EOPNOTSUPP, 0);
            do {
                sqe = &e->m.sqes[head++ & mask];
                pd__ep_emit(e, sqe, -ECANCELED, 0);
            } while ((sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)) && head != tail);
        }
    }
    ring->sq.sqe_head = tail;
    e->m.sq_ktail = tail;
    io_uring_smp_store_release(&e->m.sq_khead, tail);
    return n;
}

/* --- the wait loop --- */

/*
 * One epoll wait of at most timeout ns (-1: none), then the events it got.
 * Returns 0 or -EINTR.
 */
static int pd__ep_poll(pd__engine *e, int64_t timeout)
{
    struct epoll_event evs[128];
    int n, i;

    if (e->has_pwait2) {
        struct timespec ts = { timeout / 1000000000, timeout % 1000000000 };

        n = epoll_pwait2(e->epfd, evs, 128, timeout < 0 ? NULL : &ts, NULL);
        /* Before Linux 5.11, or refused by a seccomp filter: milliseconds. */
        if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
            e->has_pwait2 = 0;
            return 0;
        }
    } else {
        /* Milliseconds, rounded up: waking early would only spin. */
        n = epoll_wait(e->epfd, evs, 128,
                       timeout < 0 ? -1 : (int)((timeout + 999999) / 1000000 > INT32_MAX
                                                    ? INT32_MAX
                                                    : (timeout + 999999) / 1000000));
    }
    if (n < 0)
        return errno == EINTR ? -EINTR : 0;
    for (i = 0; i < n; i++) {
        uint64_t d = evs[i].data.u64;

        if (d == PD__EP_WAKE_TAG)
            pd__ep_work_reap(e);
        else
            pd__ep_fd_event(e, (int)(uint32_t)d, (uint32_t)(d >> 32), evs[i].events);
    }
    return 0;
}

/* How long a blocking wait may last: until the first timer or check, or the limit. */
static int64_t pd__ep_timeout(pd__engine *e, int64_t limit)
{
    int64_t until = limit;

    if (e->nheap && e->heap[0]->deadline < until)
        until = e->heap[0]->deadline;
    if (e->check_head >= 0 && e->fds[e->check_head].check_at < until)
        until = e->fds[e->check_head].check_at;
    if (until == INT64_MAX)
        return -1;
    pd__ep_clock(e);
    return until > e->now ? until - e->now : 0;
}

/*
 * Consumes the SQ, then waits until wait_nr completions are ready (or the
 * limit ts passed: -ETIME). An entry that has its completions without
 * waiting still collects the readiness that came meanwhile (one epoll
 * wait with a zero timeout) when ops wait on fds, unless the entry before
 * it polled: so readiness is collected at least every other entry, and
 * the run loop, which enters twice per turn (once with what completed
 * inline, once to wait), pays one epoll system call per turn, not two.
 */
static int pd__ep_enter(pd__engine *e, struct io_uring *ring, unsigned wait_nr,
                        const struct __kernel_timespec *ts)
{
    int64_t limit = INT64_MAX;
    unsigned n;
    int polled = 0, ret = 0;

    e->epoch++;
    if (pd__ep_ovf_reserve(e, ring->sq.sqe_tail - ring->sq.sqe_head) < 0)
        return -ENOMEM;
    n = pd__ep_consume(e, ring);
    if (ts != NULL)
        limit = pd__ep_after(pd__ep_clock(e), pd__ep_ts_ns(ts));
    for (;;) {
        int64_t timeout = 0;

        pd__ep_work_reap(e);
        pd__ep_ovf_flush(e);
        pd__ep_timers(e);
        pd__ep_checks(e);
        if (pd__ep_cq_ready(e) >= wait_nr) {
            if (polled || e->nwait == 0 || e->polled_last)
                break;
        } else {
            timeout = pd__ep_timeout(e, limit);
            if (limit != INT64_MAX && pd__ep_clock(e) >= limit) {
                ret = -ETIME;
                break;
            }
        }
        if (pd__ep_poll(e, timeout) < 0) {
            ret = -EINTR;
            break;
        }
        polled = 1;
    }
    e->polled_last = polled;
    return ret < 0 ? ret : (int)n;
}

/* --- provided buffer rings --- */

pd__ep_bufring *pd__ep_bufring_find(pd__engine *e, uint16_t bgid)
{
    unsigned i;

    for (i = 0; i < e->nbufs; i++)
        if (e->bufs[i].bgid == bgid)
            return &e->bufs[i];
    return NULL;
}

static int pd__ep_reg_buf_ring(pd__engine *e, struct io_uring_buf_ring *br,
                               unsigned entries, unsigned short bgid)
{
    long page = sysconf(_SC_PAGESIZE);
    pd__ep_bufring *b;

    if (br == NULL)
        return -EFAULT;
    if (entries == 0 || entries > 32768 || (entries & (entries - 1)) ||
        ((uintptr_t)br & (uintptr_t)((page > 0 ? page : 4096) - 1)))
        return -EINVAL;
    if (pd__ep_bufring_find(e, bgid) != NULL)
        return -EEXIST;
    b = realloc(e->bufs, (e->nbufs + 1) * sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    e->bufs = b;
    e->bufs[e->nbufs++] = (pd__ep_bufring){ br, entries - 1, 0, bgid, 1 };
    return 0;
}

static int pd__ep_unreg_buf_ring(pd__engine *e, unsigned short bgid)
{
    pd__ep_bufring *b = pd__ep_bufring_find(e, bgid);

    if (b == NULL)
        return -ENOENT;
    *b = e->bufs[--e->nbufs];
    return 0;
}

/* --- setup and teardown --- */

static void pd__ep_exit(pd__engine *e, struct io_uring *ring)
{
    unsigned i;

    if (e == NULL)
        return;
    pd__ep_work_stop(e);
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->wakefd >= 0)
        close(e->wakefd);
    for (i = 0; i < e->nchunks; i++)
        free(e->chunks[i]);
    free(e->chunks);
    free(e->hash);
    free(e->heap);
    pd__ep_fd_free(e);
    free(e->bufs);
    free(e->ovf);
    pd__umem_free(&e->m);
    free(e);
    if (ring != NULL) {
        memset(ring, 0, sizeof(*ring));
        ring->ring_fd = ring->enter_ring_fd = -1;
    }
}

static int pd__ep_init(struct io_uring *ring, unsigned entries, unsigned cq_entries,
                       pd__engine **out)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = PD__EP_WAKE_TAG };
    pd__engine *e;
    int ret;

    *out = NULL;
    if (entries == 0 || entries > 32768)
        return -EINVAL;
    entries = pd__ep_pow2(entries);
    cq_entries = cq_entries ? pd__ep_pow2(cq_entries) : 2 * entries;
    if (cq_entries < entries || cq_entries > 65536)
        return -EINVAL;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    e->epfd = e->wakefd = -1;
    atomic_init(&e->done, NULL);
    e->check_head = e->check_tail = -1;
    e->has_pwait2 = 1;
    e->chunk_len = 2 * cq_entries > PD__EP_MIN_RECORDS ? 2 * cq_entries : PD__EP_MIN_RECORDS;
    pd__ep_fd_limit(e);
    ret = -ENOMEM;
    if (pd__umem_init(&e->m, entries, cq_entries) < 0 || pd__ep_grow(e) < 0 ||
        pd__ep_fd_get(e, PD__EP_MIN_FDS - 1) == NULL ||
        (e->ovf = malloc(pd__ep_ovf_min(cq_entries) * sizeof(*e->ovf))) == NULL)
        goto fail;
    e->ovf_cap = pd__ep_ovf_min(cq_entries);
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->epfd < 0 || e->wakefd < 0 || epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->wakefd, &ev) < 0) {
        ret = -errno;
        goto fail;
    }
    pd__umem_map(&e->m, ring);
    *out = e;
    return 0;
fail:
    pd__ep_exit(e, NULL);
    return ret;
}

const pd__engine_vt pd__engine_epoll = {
    .name = "epoll",
    .init = pd__ep_init,
    .enter = pd__ep_enter,
    .register_buf_ring = pd__ep_reg_buf_ring,
    .unregister_buf_ring = pd__ep_unreg_buf_ring,
    .probe_op = pd__ep_probe,
    .exit = pd__ep_exit,
};
