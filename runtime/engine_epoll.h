/*
 * The epoll engine's internals, shared by its files: engine_epoll.c (the
 * ring, starting ops, the wait loop, setup), engine_epoll_rec.c (records,
 * timers, cancellation), engine_epoll_fd.c (the fd table and epoll
 * registration), engine_epoll_ops.c (the non-blocking attempts at fd ops)
 * and engine_epoll_work.c (the worker pool and the file ops it runs). Only
 * the engine's own thread touches anything here, except what the worker
 * section says.
 */
#ifndef POLLDROP_ENGINE_EPOLL_H
#define POLLDROP_ENGINE_EPOLL_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/uio.h>

#include "engine.h"
#include "engine_ring.h"
#include "list.h"

/*
 * IORING_OP_BIND and IORING_OP_LISTEN (Linux 6.11), which liburing 2.3 does
 * not name: made at once with bind(2) and listen(2), which do not wait.
 */
#define PD__EP_OP_BIND 56u
#define PD__EP_OP_LISTEN 57u
/*
 * IORING_SEND_ZC_REPORT_USAGE and IORING_NOTIF_USAGE_ZC_COPIED (Linux
 * 6.2), which liburing 2.3 does not name: a send_zc's notification says
 * whether its data was copied.
 */
#define PD__EP_ZC_REPORT_USAGE (1u << 3)
#define PD__EP_ZC_COPIED (1u << 31)

/* Workers file ops run on, started with the engine's first file op. */
#define PD__EP_WORKERS 4u
/* Records preallocated at init (at least), and the size of each growth. */
#define PD__EP_MIN_RECORDS 4096u
/*
 * Fd numbers the fd table covers from init (48 KiB): the fds a program
 * opens after it made the runtime take no allocation until one is larger.
 */
#define PD__EP_MIN_FDS 1024
/*
 * How long an fd whose epoll registration is not known to be alive may
 * have an op waiting before the registration is checked with
 * EPOLL_CTL_MOD (see pd__ep_fd_wait in engine_epoll_fd.c).
 */
#define PD__EP_GRACE_NS 1000000LL

/* A record's state. */
enum {
    PD__EP_FREE = 0,
    PD__EP_FDWAIT,  /* on an fd's waiter list, until an epoll event */
    PD__EP_TIMER,   /* an IORING_OP_TIMEOUT in the heap */
    PD__EP_LTIMER,  /* an IORING_OP_LINK_TIMEOUT in the heap */
    PD__EP_WQ,      /* queued for a worker */
    PD__EP_WRUN,    /* a worker took it (set under the queue's lock) */
    PD__EP_WDONE,   /* the worker finished: on the done stack */
};

/* A record's flags (engine thread only). */
enum {
    PD__EPF_MULTI = 1u << 0,   /* multishot: completions with F_MORE */
    PD__EPF_HASHED = 1u << 1,  /* in the user_data hash: cancellable */
    PD__EPF_FIRST = 1u << 2,   /* no attempt made yet */
    PD__EPF_CONNECTING = 1u << 3, /* connect got EINPROGRESS */
    PD__EPF_RESTORE = 1u << 4, /* connect set O_NONBLOCK: clear it at the end */
    PD__EPF_ARMED = 1u << 5,   /* poll_add: the rearming MOD was made */
    PD__EPF_SOCKTO = 1u << 6,  /* splice: ends with -EAGAIN at `deadline` (a socket's timeout) */
    PD__EPF_INHEAP = 1u << 7,  /* on the timer heap for PD__EPF_SOCKTO while it waits */
};

/*
 * A request the engine could not finish when it consumed its SQE: one
 * record per op waiting on an fd, on a timer or on a worker. Records come
 * from a pool preallocated at init and grown in chunks; they never move
 * while in use, and an op that completes at once never takes one.
 */
typedef struct pd__ep_op pd__ep_op;
struct pd__ep_op {
    struct io_uring_sqe sqe;   /* the request as submitted */
    struct pd__link ql;        /* on its fd's waiters (FDWAIT) or the worker queue (WQ) */
    pd__ep_op *next;           /* free list, done stack, a cancel's stopped chain */
    pd__ep_op *hnext;          /* user_data hash chain */
    pd__ep_op *link;           /* the op's linked timeout, or the timeout's op */
    int64_t deadline;          /* timers, PD__EPF_SOCKTO: CLOCK_MONOTONIC ns */
    uint32_t heap;             /* timers: index in the heap */
    uint32_t done;             /* bytes already moved (MSG_WAITALL, file reads) */
    int32_t res;               /* a worker's result */
    int32_t fd;                /* the fd it waits on (FDWAIT) */
    uint32_t need;             /* epoll events it waits for (FDWAIT) */
    uint8_t state;             /* PD__EP_*; worker states under the queue lock */
    uint8_t flags;             /* PD__EPF_* */
    uint8_t ecancel;           /* cancelled while a worker ran it */
    uint8_t stale;             /* FDWAIT: its fd was closed, or names a new file, since */
    int32_t wfd;               /* the fd whose list it is on (FDWAIT) */
    int32_t saved_fl;          /* connect: the fd's flags before O_NONBLOCK */
};

/* The record whose `ql` is l, or NULL for NULL (walks the fd and worker lists). */
static inline pd__ep_op *pd__ep_of(struct pd__link *l)
{
    return l ? PD__CONTAINER_OF(l, pd__ep_op, ql) : NULL;
}

/* What an fd is, as far as the engine needs to know. */
enum {
    PD__FK_UNKNOWN = 0,
    PD__FK_STREAM,  /* a SOCK_STREAM socket: a short recv drained it */
    PD__FK_SOCK,    /* another socket */
    PD__FK_PIPE,    /* a pipe or FIFO: a short read drained it */
    PD__FK_POLL,    /* something else epoll can wait on (eventfd, tty...) */
    PD__FK_FILE,    /* regular file, block device, directory: worker ops */
};

/*
 * Per-fd state, indexed by fd. `maybe` holds the epoll events that may be
 * ready: set by epoll events, cleared when a syscall says EAGAIN (or a
 * short read drained a stream), so that an op on an fd known not ready
 * waits at once instead of failing a syscall first. `interest` is what the
 * fd is registered with (0: not registered by this engine), `gen` tags the
 * registration's events so that those of a file the fd number no longer
 * names are ignored.
 */
typedef struct pd__ep_fd {
    struct pd__link *whead, *wtail; /* ops waiting on it, oldest first (pd__ep_of) */
    uint32_t maybe;
    uint32_t interest;
    uint32_t gen;
    uint32_t valid;            /* the epoch its registration was last proven in */
    int64_t check_at;          /* on the check list: when to check */
    int32_t check_next;        /* the check list's link (-1: last) */
    uint8_t on_check;
    uint8_t kind;              /* PD__FK_* */
    uint8_t inet;              /* an AF_INET/AF_INET6 socket (send_zc) */
    uint8_t no_nowait;         /* preadv2/pwritev2 refused RWF_NOWAIT */
} pd__ep_fd;

/* A registered provided-buffer ring: the engine's head into the user's ring. */
typedef struct pd__ep_bufring {
    struct io_uring_buf_ring *br;
    uint32_t mask;
    uint16_t head;
    uint16_t bgid;
    uint8_t used;
} pd__ep_bufring;

struct pd__engine {
    pd__umem m; /* the ring's memory, as the inline helpers see it (first) */

    /* Completions the CQ had no room for, in order (a growing ring). */
    struct io_uring_cqe *ovf;
    unsigned ovf_head, ovf_len, ovf_cap;

    int epfd;
    int wakefd;                /* eventfd the workers write; in epoll */
    int has_pwait2;            /* epoll_pwait2 works (ns timeouts) */
    uint32_t epoch;            /* one per enter: fds may have changed between */
    int polled_last;           /* the last enter collected readiness (pd__ep_enter) */
    int64_t now;               /* CLOCK_MONOTONIC ns, read when needed */

    /* Records. */
    pd__ep_op **chunks;
    unsigned nchunks, chunk_len, nrec, inuse;
    unsigned fresh;            /* the newest chunk's records handed out (the rest untouched) */
    pd__ep_op *free;           /* records given back */
    pd__ep_op **hash;          /* by user_data; nrec buckets, a power of two */
    unsigned hmask;
    pd__ep_op **heap;          /* timers, earliest first */
    unsigned nheap;
    unsigned nwait;            /* records in PD__EP_FDWAIT */
    unsigned nwork;            /* records on the workers' side */

    /* Fds. */
    pd__ep_fd *fds;
    int nfds, fdmax;
    int check_head, check_tail; /* fds whose registration is to be checked */

    pd__ep_bufring *bufs;
    unsigned nbufs;

    /*
     * The worker pool (started by the first pd__ep_work_queue, on the
     * engine's thread). The queue and the records' worker states are under
     * `lock`; `done` is the stack finished records go on (lock-free), and
     * the worker that finds it empty writes `wakefd`.
     */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct pd__link *wq_head, *wq_tail; /* oldest first (pd__ep_of) */
    int stop;
    int work_inited;           /* the pool was started: lock and cond exist */
    unsigned nthreads;
    unsigned started;          /* workers that began to run (under lock) */
    pthread_t threads[PD__EP_WORKERS];
    _Atomic(pd__ep_op *) done;
};

/* The results of an attempt at an op (engine_epoll_fd.c). */
enum {
    PD__EP_DONE = 0, /* *res and *cflags are the completion */
    PD__EP_WAIT,     /* wait for r->need on r->fd */
    PD__EP_WORK,     /* hand it to a worker */
    PD__EP_TIMED,    /* park it on the timer heap (at r->deadline) */
};

/* Special worker results: the engine must take the op back. */
#define PD__EP_RES_NOTFILE (-100000) /* the fd is not a file: retry inline */
#define PD__EP_RES_AGAIN (-100001)   /* a pipe side was not ready: wait */

/* Events: those an error or a hangup makes every waiter retry for... */
#define PD__EP_ANY (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDNORM | EPOLLWRNORM)
/* ...and those a poll request reports whether asked for or not (IO_POLL_UNMASK). */
#define PD__EP_POLL_UNMASK (EPOLLERR | EPOLLHUP | POLLNVAL | EPOLLRDHUP)
#define PD__EP_AGAIN(err) ((err) == EAGAIN || (err) == EWOULDBLOCK)

/*
 * The time ts says in ns (tv_sec and tv_nsec not negative), saturated at
 * INT64_MAX / 2 (292 years).
 */
static inline int64_t pd__ep_ts_ns(const struct __kernel_timespec *ts)
{
    return ts->tv_sec > INT64_MAX / 1000000000 - 1 ? INT64_MAX / 2
                                                   : ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/*
 * now + ns (both not negative), saturated at INT64_MAX / 2: a time too
 * long to ever pass, in a timeout or an entry's limit, makes a deadline
 * that never comes, never one that wrapped around into the past.
 */
static inline int64_t pd__ep_after(int64_t now, int64_t ns)
{
    return ns > INT64_MAX / 2 - now ? INT64_MAX / 2 : now + ns;
}

/* engine_epoll.c: the ring, starting ops, the wait loop, setup. */
int64_t pd__ep_clock(pd__engine *e);
void pd__ep_post(pd__engine *e, uint64_t ud, int32_t res, uint32_t flags);
void pd__ep_emit(pd__engine *e, const struct io_uring_sqe *sqe, int32_t res, uint32_t cflags);
/*
 * A multishot request's completion with IORING_CQE_F_MORE, posted only if
 * the CQ takes it now. Returns 0, or -EOVERFLOW having posted nothing (the
 * CQ is full, or overflowed completions wait): the request must then end,
 * with this result and flags (without F_MORE) as its last completion, as
 * the kernel ends a multishot request whose completion it cannot post.
 * That keeps the overflow at one completion per request (two for a
 * zero-copy send), within the room enter reserves.
 */
int pd__ep_post_more(pd__engine *e, uint64_t ud, int32_t res, uint32_t flags);
pd__ep_bufring *pd__ep_bufring_find(pd__engine *e, uint16_t bgid);

/* engine_epoll_rec.c: records, timers, finishing and cancelling. */
unsigned pd__ep_pow2(unsigned n);
int pd__ep_grow(pd__engine *e);
pd__ep_op *pd__ep_rec_new(pd__engine *e, const pd__ep_op *proto);
void pd__ep_rec_free(pd__engine *e, pd__ep_op *r);
void pd__ep_hash_add(pd__engine *e, pd__ep_op *r);
void pd__ep_heap_push(pd__engine *e, pd__ep_op *r);
int pd__ep_deadline(pd__engine *e, const struct io_uring_sqe *sqe, int64_t *out);
void pd__ep_timer_park(pd__engine *e, pd__ep_op *r, int64_t deadline);
void pd__ep_timers(pd__engine *e);
void pd__ep_finish(pd__engine *e, pd__ep_op *r, int32_t res, uint32_t cflags);
void pd__ep_cancel(pd__engine *e, const struct io_uring_sqe *sqe);
int32_t pd__ep_stopped_res(const pd__ep_op *r);

/* engine_epoll_fd.c: the fd table, registration, events, checks. */
pd__ep_fd *pd__ep_fd_get(pd__engine *e, int fd);
int pd__ep_fd_limit(pd__engine *e);
int pd__ep_fd_err(const pd__engine *e, int fd);
void pd__ep_fd_forget(pd__engine *e, int fd);
int pd__ep_fd_kind(pd__engine *e, int fd);
int pd__ep_fd_wait(pd__engine *e, pd__ep_op *r);
void pd__ep_fd_unwait(pd__engine *e, pd__ep_op *r);
void pd__ep_fd_event(pd__engine *e, int fd, uint32_t gen, uint32_t events);
void pd__ep_checks(pd__engine *e);
void pd__ep_fd_free(pd__engine *e);
void pd__ep_run(pd__engine *e, pd__ep_op *r, int how, int32_t res, uint32_t cflags);
int pd__ep_not_pollable(pd__ep_op *r, int32_t *res);

/* engine_epoll_ops.c: one attempt at an fd op. */
int pd__ep_attempt(pd__engine *e, pd__ep_op *r, int32_t *res, uint32_t *cflags);
int pd__ep_iov(const pd__ep_op *r, struct iovec *tmp, int max, const struct iovec **out);
int pd__ep_nonblock(int fd);

/* engine_epoll_work.c: the worker pool (pd__workers_starting: harness_hooks.h). */
extern void (*pd__workers_starting)(int done);
void pd__ep_work_stop(pd__engine *e);
int pd__ep_work_queue(pd__engine *e, pd__ep_op *r);
int pd__ep_work_cancel(pd__engine *e, pd__ep_op *r);
void pd__ep_work_reap(pd__engine *e);
int32_t pd__ep_work_run(pd__ep_op *r);

#endif /* POLLDROP_ENGINE_EPOLL_H */
