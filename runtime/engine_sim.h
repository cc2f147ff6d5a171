/*
 * The simulator engine's internals, shared by its files: engine_sim.c (the
 * ring, the seeded choice of what completes next, virtual time, the enter
 * loop, setup), engine_sim_ops.c (records, starting ops, fd readiness,
 * faults), engine_sim_cancel.c (timers, linked timeouts, cancellation).
 *
 * The simulator runs every request for real, on the calling thread, with
 * the epoll engine's non-blocking attempts (engine_epoll_ops.c) and its
 * file operations (engine_epoll_work.c) called synchronously: it embeds an
 * epoll engine's state (`ep`) for their fd table and buffer rings, and
 * uses that state's completion queue as a staging area that it drains
 * after every attempt. What it adds is the order: completions wait in a
 * pending list, and a seeded PRNG picks which one is posted next, so that
 * one seed always gives one order and different seeds give the others the
 * kernel could produce. Time is virtual: it moves only when nothing else
 * can (docs/design.md, "The simulator").
 *
 * `struct pd__engine` is the epoll engine's type in these files; the
 * runtime's `pd__engine *` for a simulated ring points at a pd__sim (see
 * pd__sim_of).
 */
#ifndef POLLDROP_ENGINE_SIM_H
#define POLLDROP_ENGINE_SIM_H

#include <stdint.h>

#include "engine_epoll.h"

/* A record's state. */
enum {
    PD__SIM_FREE = 0,
    PD__SIM_FDWAIT, /* waits for r.need on r.fd (checked with poll(2)) */
    PD__SIM_TIMER,  /* an IORING_OP_TIMEOUT, until `deadline` */
    PD__SIM_LTIMER, /* an IORING_OP_LINK_TIMEOUT of `link`, until `deadline` */
    PD__SIM_WORK,   /* a file op "on a worker": runs when `turns` reaches 0 */
};

/*
 * How many times in a row a multishot poll whose fd is never seen not
 * ready, nor woken, fires again, an enter each, before it waits for
 * virtual time to move (engine_sim_ops.c, pd__sim_fired).
 */
#define PD__SIM_REFIRES 64u

/* A request that did not complete when it was consumed. */
typedef struct pd__sim_op pd__sim_op;
struct pd__sim_op {
    pd__ep_op r;            /* the request, as the epoll engine's attempts see it */
    struct pd__link live;   /* the live list, in start order (pd__sim_live) */
    pd__sim_op *next;       /* the free list */
    pd__sim_op *link;       /* the op's linked timeout, or the timeout's op */
    pd__sim_op *snext;      /* a cancel's list of what it stopped */
    int64_t deadline;       /* TIMER, LTIMER, a splice under a socket's timeout: virtual ns */
    uint64_t seq;           /* start order: every iteration over records follows it */
    uint32_t turns;         /* WORK: enters left before it runs */
    uint8_t state;          /* PD__SIM_* */
    uint8_t running;        /* WORK: "a worker took it": a cancel answers -EALREADY */
    uint8_t fired;          /* multishot poll: posted in enter `fired_at` */
    uint64_t fired_at;
    int64_t fired_now;      /* multishot poll: the virtual time it posted at */
    uint32_t refires;       /* multishot poll: times it fired again, its fd not seen not ready
                               nor woken */
    uint32_t wake;          /* multishot poll: its fd's count in `wakes` when it last posted */
    uint8_t watched;        /* multishot poll: its fd's wakeups are counted (pd__sim_watch) */
    uint32_t gen;           /* FDWAIT: the generation of r.wfd's entry as it began to wait */
};

/* A completion made but not yet posted into the completion queue. */
typedef struct pd__sim_cqe {
    uint64_t ud;
    int32_t res;
    uint32_t flags;
    uint64_t seq;           /* creation order */
    uint64_t after1, after2; /* seqs that must be posted first (0: none) */
    uint64_t ready_at;      /* the enter from which it may be posted (a delay fault) */
} pd__sim_cqe;

typedef struct pd__sim {
    pd__umem m; /* the ring's memory, as the inline helpers see it (first) */

    /* The embedded epoll engine state: fd table, buffer rings, staging CQ. */
    pd__engine *ep;

    /* The PRNG (xoshiro256**), seeded with splitmix64 from `seed`. */
    uint64_t seed;
    uint64_t s[4];
    int faults;             /* inject faults */
    int quiet_ms;           /* real wait for outside readiness before a jump */

    /* Virtual time, ns; pd_clock_ms reads it on this thread (pd__sim_clock). */
    int64_t now;
    uint64_t enters;        /* enter calls so far */
    uint64_t refire;        /* the enter in which quiet multishot polls may fire again */

    /* Records: a preallocated pool; the live ones in start order. */
    pd__sim_op *pool;
    unsigned npool;
    /*
     * The newest chunk's records never used yet, taken in order once the
     * free list is empty: a record's page is touched only when it is first
     * used, so a runtime that keeps few ops in flight touches little of
     * its pool (the harness makes thousands of runtimes).
     */
    pd__sim_op *fresh;
    unsigned nfresh;
    pd__sim_op *free;
    struct pd__link *live_head, *live_tail;
    uint64_t op_seq;
    unsigned nwait, nwork, ntimer;
    unsigned nlive;         /* records on the live list */
    unsigned nsockto;       /* live records under a socket's timeout (PD__EPF_INHEAP) */

    /* Pending completions, in creation order (a growing array). */
    pd__sim_cqe *pend;
    unsigned npend, cap_pend;
    /*
     * The overflow list (IORING_FEAT_NODROP): completions posted while the
     * CQ was full, or while older ones waited here, in posting order; they
     * go into the CQ first, as room is made. IORING_SQ_CQ_OVERFLOW is set
     * in sq_kflags while it holds any.
     */
    struct io_uring_cqe *ovf;
    unsigned ovf_head, ovf_len, ovf_cap;
    /* The seed's kernel refuses submissions (-EBUSY) while ovf holds any. */
    int busy_on_ovf;
    uint64_t cqe_seq;
    uint64_t batch_last;    /* the last completion of the current batch (0: none) */

    /*
     * Wakeups of the fds multishot polls posted on: an edge-triggered
     * epoll instance (-1 until the first such poll), and a count per fd
     * of the reports it made (pd__sim_wakeups), for PD__EP_MIN_FDS fds
     * from init (a poll on a higher fd grows it, as the fd table grows).
     */
    int etfd;
    uint32_t *wakes;
    unsigned nwakes;

    /* Scratch for poll(2): one entry per waiting record. */
    struct pollfd *pfd;
    pd__sim_op **pop;
    unsigned cap_pfd;

    /* What happened: completions posted and faults injected (tests read them). */
    uint64_t posted, injected;
    uint64_t io_faults;     /* of those, faults that change a request's result */
    uint64_t overflowed;    /* completions that went through the overflow list */
    uint64_t busied;        /* enters refused with -EBUSY */
} pd__sim;

/* The record whose `live` is l, or NULL for NULL (walks the live list). */
static inline pd__sim_op *pd__sim_live(const struct pd__link *l)
{
    return l ? PD__CONTAINER_OF(l, pd__sim_op, live) : NULL;
}

static inline pd__sim *pd__sim_of(pd__engine *e)
{
    return (pd__sim *)(void *)e;
}

/* engine_sim.c: the PRNG, pending completions, the clock. */
uint64_t pd__sim_next(pd__sim *s);
/* A draw in [0, n) (n > 0). */
uint32_t pd__sim_below(pd__sim *s, uint32_t n);
/* Whether a fault of weight 1/n is injected now (never with faults off). */
int pd__sim_fault(pd__sim *s, uint32_t n);
/*
 * The same, for a fault that changes a request's result (an error, a short
 * read or write), counted apart: pd__sim_io_faults.
 */
int pd__sim_io_fault(pd__sim *s, uint32_t n);
void pd__sim_batch_begin(pd__sim *s);
void pd__sim_add(pd__sim *s, uint64_t ud, int32_t res, uint32_t flags);
/* Moves what the embedded epoll state posted into the pending list. */
void pd__sim_drain(pd__sim *s);

/* engine_sim_ops.c: records and ops. */
int pd__sim_ops_init(pd__sim *s, unsigned n);
void pd__sim_ops_free(pd__sim *s);
/* Moves a record to state (PD__SIM_*), keeping the counts of each. */
void pd__sim_set(pd__sim *s, pd__sim_op *op, int state);
/* Takes a record off the live list, to the free list. */
void pd__sim_rec_free(pd__sim *s, pd__sim_op *op);
/* An op's last completion, through the epoll engine's emit, then pending. */
void pd__sim_emit(pd__sim *s, const struct io_uring_sqe *sqe, int32_t res, uint32_t cflags);
/* A record's last completion (then its linked timeout's -ECANCELED); frees it. */
void pd__sim_finish(pd__sim *s, pd__sim_op *op, int32_t res, uint32_t cflags);
void pd__sim_start(pd__sim *s, const struct io_uring_sqe *sqe, const struct io_uring_sqe *lt);
/* One pass over what can move without time passing; returns whether anything did. */
int pd__sim_step(pd__sim *s, int run_work);
/*
 * Lets the multishot polls that fired and wait quiet fire again in this
 * enter, if their fds are ready; returns whether there were any.
 */
int pd__sim_refire(pd__sim *s);
/* Waits up to ms real milliseconds (-1: no limit) for a waiting fd; 1 if one is ready. */
int pd__sim_wait_real(pd__sim *s, int ms);
/* engine_sim_cancel.c: timers and cancellation. */
void pd__sim_cancel(pd__sim *s, const struct io_uring_sqe *sqe);
/* Fires the timers due at s->now; returns whether any did. */
int pd__sim_timers(pd__sim *s);
/* The earliest timer's deadline, or INT64_MAX. */
int64_t pd__sim_next_timer(const pd__sim *s);

#endif /* POLLDROP_ENGINE_SIM_H */
