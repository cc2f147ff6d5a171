/*
 * polldrop internals shared by the runtime and generated code.
 *
 * Nothing here is a public API: the names carry the pd__ prefix and may
 * change in any release. Generated futures use these helpers to submit
 * operations, to cancel them and to drive their children.
 */
#ifndef POLLDROP_INTERNAL_H
#define POLLDROP_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <liburing.h>

#include "list.h"

#ifndef POLLDROP_H
#error "include polldrop.h instead"
#endif

#define PD__FALLTHROUGH __attribute__((fallthrough))

/*
 * GOTO's choice (templates/future.c.j2), made by the preprocessor:
 * PD__GOTO_SELF(s) is 1 where PD__SELF_s is defined as PD__PROBE -- in the
 * `then` of state s when s has one plain op, the generated code defines it
 * there -- and 0 elsewhere. GOTO(s) is PD__GOTO_1(s) where it is 1: a jump
 * back into s's start (pd__again_s) that stores neither the state, which
 * is s already, nor the sub-state, whose 0 the start would overwrite with
 * 1 before anything could see it (the start only tests its guard, runs its
 * locals' initialisers and claims the op, or GOTOs or RETURNs).
 */
#define PD__PROBE ~, 1
#define PD__SECOND_(a, b, ...) b
#define PD__SECOND(...) PD__SECOND_(__VA_ARGS__)
#define PD__CAT_(a, b) a##b
#define PD__CAT(a, b) PD__CAT_(a, b)
#define PD__GOTO_SELF(s) PD__SECOND(PD__SELF_##s, 0, ~)
#define PD__LIKELY(x) __builtin_expect(!!(x), 1)
#define PD__UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * user_data below PD__UD_RESERVED is never an op slot address. Each
 * reserved value has one of the low three bits set, as a tagged slot
 * address has (PD__TAG_*), and so has LIBURING_UDATA_TIMEOUT: a completion
 * whose user_data has them clear is a plain op's own result (pd__ud_plain).
 * No request is submitted with user_data 0.
 */
#define PD__UD_CANCEL 1u
#define PD__UD_WAKE_EFD 2u  /* the runtime's read of its wake eventfd */
#define PD__UD_RESERVED 4096u
_Static_assert((PD__UD_CANCEL & 7) != 0 && (PD__UD_WAKE_EFD & 7) != 0 &&
                   (LIBURING_UDATA_TIMEOUT & 7) != 0,
               "every reserved user_data is told from a slot address by its low bits");

/*
 * A task: the runtime's single allocation per spawned future, the header
 * followed by the future and its output. What a woken task's turn touches
 * -- the ready-queue link, the queued flag, the state and what its poll is
 * called with -- comes first, in 56 bytes (docs/design.md, "The hot path").
 */
struct pd_task {
    pd_task *next;       /* ready-queue link (intrusive) */
    /* vt->poll, kept here: a poll calls it with no load through the vtable. */
    pd_poll (*poll)(void *self, pd_cx *cx, void *out);
    const pd_vtable *vt;
    void *self;          /* the future's storage */
    void *out;           /* the output's storage */
    pd_runtime *rt;
    uint8_t state;       /* PD_TASK_* */
    uint8_t queued;      /* on the ready queue (or in the batch being polled) */
    uint8_t has_output;
    uint8_t flags;       /* PD__TASK_* */
    uint32_t refs;       /* caller's reference + runtime's reference */
    /* Touched when a task starts, ends or is joined. */
    struct pd__link live; /* on rt->live_head, for shutdown and free */
    /* The task that awaits this one through a pd_join, woken when it ends. */
    pd_task *waiter;
    /*
     * The caller's reference was released. Last, so that code built with
     * and without PD_CHECKED agrees on every other member's place.
     */
    uint8_t released;
};

enum {
    PD__TASK_STARTED = 1u << 0,
    PD__TASK_ROOT = 1u << 1, /* pd_block_on's stack task: never freed */
    PD__TASK_CANCEL = 1u << 2, /* cancelled before it was started */
    PD__TASK_FORCED = 1u << 3, /* a shutdown deadline passed: skip teardown */
    PD__TASK_FREED_DROP = 1u << 4, /* pd_runtime_free sync-dropped its future */
};

struct pd_runtime {
    struct io_uring ring;
    pd_bufgroup *groups;     /* live buffer groups */
    /*
     * Buffer group ids: those below bgid_next were given out; the freed
     * ones wait in bgid_free (a stack of bgids_free, with room for
     * bgid_next), so that a new group takes an id in O(1).
     */
    uint16_t *bgid_free;
    unsigned bgids_free, bgid_next;
    pd_task *ready_head;
    /*
     * The last queued task's next, or &ready_head. That next is not
     * maintained (pd__wake_on): a walk of the queue stores NULL there first.
     * ready_head is NULL when the queue is empty.
     */
    pd_task **ready_tailp;
    struct pd__link *live_head; /* the live tasks (list.h) */
    pd_stats stats;
    unsigned cancel_flags;   /* IOSQE_CQE_SKIP_SUCCESS when the kernel has it */
    int sq_err;              /* why the last SQE claim failed */
    /*
     * The submission queue has room while sqe_tail is before this: the
     * kernel's head plus the ring's entries, as last read (pd__sq_full).
     */
    unsigned sq_limit;
    /*
     * What takes a turn off its common way, one byte each, all zero on the
     * common turn: the run loops test them as one word (turn_rare), where
     * no turn is running (in_turn is zero there).
     */
    union {
        struct {
            uint8_t remote_pending; /* a wake arrived: look at the inbox and requests */
            uint8_t deadline_armed; /* a shutdown deadline is pending (deadline_ns) */
            /*
             * Driven by halves (pd__run_polls, pd__run_enter: the harness's
             * hooks): a turn's reap queues every task, never polls one in
             * place.
             */
            uint8_t halves;
            /* The read of wake_fd is not in flight: the next entry queues it. */
            uint8_t wake_unarmed;
            uint8_t not_uring;      /* the engine is not io_uring (engine is set) */
            uint8_t in_turn;        /* polling tasks: nested run calls are refused */
            uint8_t shutting_down;
            uint8_t forcing;        /* the deadline passed: every task is forced */
        };
        uint64_t turn_rare;
    };
    uint8_t has_ftruncate;   /* the kernel has IORING_OP_FTRUNCATE */
    uint8_t has_bind;        /* the kernel has IORING_OP_BIND */
    uint8_t has_listen;      /* the kernel has IORING_OP_LISTEN */
    int64_t deadline_ns;     /* CLOCK_MONOTONIC time of the shutdown deadline */
    int wake_fd;             /* eventfd: wakes from threads without a runtime */
    uint64_t wake_buf;       /* the eventfd read's buffer */
    uint8_t no_cancel_fd;    /* the kernel refused a cancel by fd + user_data */
    /*
     * Completions a turn's reap took that polled no task in place: those
     * nested reaps (pd__reap) took, and those it dispatched another way. The
     * turn's reap zeroes it as it begins, and derives its polls from it.
     */
    unsigned reaped_aside;
    /* A cancel was submitted since an entry last left no deferred work. */
    uint8_t cancel_tw;
    /*
     * Where PD__PREP prepares an op whose entry is claimed out of line; after
     * the fields a turn touches, so that it does not split them.
     */
    struct io_uring_sqe spare_sqe;
    /*
     * The engine behind the ring (runtime/engine.h, runtime/ring.h): NULL
     * for io_uring, which the runtime calls directly; any other is called
     * through engine_vt. Read once per entry, in the padding before the
     * line other threads write, so that no member a turn touches moves.
     */
    struct pd__engine *engine;
    const struct pd__engine_vt *engine_vt;

    /*
     * What other threads touch, and nothing else: on its own cache line so
     * that their writes do not slow the owner's turns.
     */
    _Alignas(64) _Atomic(pd_task *) inbox; /* tasks sent here, newest first */
    atomic_uchar wake_sent;                /* a wake is on its way: no other needed */
    atomic_uchar shutdown_asked;           /* pd_shutdown_remote was called */
    _Atomic int64_t shutdown_at_ns;        /* its earliest deadline; INT64_MAX: none */

    /* The thread that made it: the only one that may drive it. Last, as above. */
    pthread_t owner;
};

/* turn_rare covers its eight bytes, and nothing else. */
_Static_assert(sizeof(((pd_runtime *)0)->turn_rare) == 8 &&
                   offsetof(pd_runtime, forcing) == offsetof(pd_runtime, turn_rare) + 7,
               "turn_rare is the eight bytes that take a turn off its common way");

/*
 * A buffer group: a registered buffer ring and its buffers, each allocated
 * once. `held` counts buffers whose completions were reaped and that have
 * not been given back; `armed` the requests that take buffers from it and
 * whose last completion has not been reaped; slots that found the group
 * empty wait on `waiters`. Only `window` buffers are kept in the ring; the
 * others wait in `spare[0..nspare)`, a stack whose top is the buffer given
 * back last (runtime/bufwin.h says why and how).
 */
struct pd_bufgroup {
    pd_runtime *rt;
    struct io_uring_buf_ring *br;
    char *base;
    size_t size;
    unsigned count, held, armed;
    uint16_t bgid;
    struct pd__mop *waiters;
    pd_bufgroup *next;
    unsigned window, nspare;
    uint16_t spare[]; /* room for count ids */
};

struct pd_cx {
    pd_runtime *rt;
    pd_task *task;
    /* When set, the next op submitted gets this linked timeout. */
    struct __kernel_timespec *link_ts;
};

/*
 * An op slot: one io_uring request owned by a future. Its address is the
 * request's user_data, so the slot must not move or be reused while its
 * request is in flight (st is BUSY).
 */
typedef struct pd__op {
    pd_task *task;      /* woken on completion; task->rt is the ring */
    int32_t res;        /* the completion's result, once READY */
    uint32_t cflags;    /* the completion's flags */
    union {
        struct {
            uint8_t st;         /* PD__OP_* */
            /*
             * Completions the kernel still owes (op + timeout), counted
             * down by the rare dispatch (PD__TAG_RARE, extended slots).
             * An untagged request owes one, the completion that marks the
             * op ready without counting it: pending is not read again.
             */
            uint8_t pending;
            /*
             * Flags: PD__OP_FDRET, the result is an fd to close if nobody
             * takes it; PD__OP_ZC, a zero-copy send; PD__OP_LINKED, a
             * plain op with a linked timeout. Either of the last two tags
             * the request's user_data PD__TAG_RARE.
             */
            uint8_t fdret;
            uint8_t cancelled;  /* a cancel request has been queued */
        };
        uint32_t bytes; /* the four above, for pd__op_start's one store */
    };
} pd__op;

/*
 * The value of pd__op's bytes with st, pending, fdret and cancelled set to
 * the four arguments, in the byte order of the machine.
 */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PD__OP_BYTES(st, pending, fdret, cancelled)                            \
    ((uint32_t)(st) | (uint32_t)(pending) << 8 | (uint32_t)(fdret) << 16 |     \
     (uint32_t)(cancelled) << 24)
#else
#define PD__OP_BYTES(st, pending, fdret, cancelled)                            \
    ((uint32_t)(st) << 24 | (uint32_t)(pending) << 16 |                        \
     (uint32_t)(fdret) << 8 | (uint32_t)(cancelled))
#endif

enum { PD__OP_IDLE = 0, PD__OP_BUSY = 1, PD__OP_READY = 2 };

/* pd__op's fdret flags: what the op's result is, and how its user_data is tagged. */
enum { PD__OP_FDRET = 1, PD__OP_ZC = 2, PD__OP_LINKED = 4 };

/*
 * The checked build (-DPD_CHECKED, used by `make test`'s sanitized build)
 * keeps a registry of the op slots the kernel owes completions, and aborts
 * on a completion for a slot not in it, or on a slot reused, released or
 * freed while in it (checked.c). Everywhere else these cost nothing.
 */
#ifdef PD_CHECKED
void pd__checked_submit(const pd_runtime *rt, const pd__op *op);
void pd__checked_release(const pd__op *op);
#else
static inline void pd__checked_submit(const pd_runtime *rt, const pd__op *op)
{
    (void)rt;
    (void)op;
}

static inline void pd__checked_release(const pd__op *op)
{
    (void)op;
}
#endif

/* One completion kept for delivery. */
typedef struct pd__cqe {
    int32_t res;
    uint32_t flags;
} pd__cqe;

/* Completions a multishot slot holds inline; more wait in the CQ. */
#define PD__MOP_Q 4

/*
 * An extended op slot, for multishot requests and requests that take a
 * provided buffer. One request can post several completions: each is
 * queued, in order, until the future's then takes it. Normally the queue
 * never allocates: when it is full, reaping stops at that completion and
 * leaves it (and everything behind it) in the completion queue until the
 * owner has run, so nothing is lost or reordered. Only a blocking sync drop,
 * which must reap past it, stores the excess in `ovf` (one allocation each,
 * counted in pd_stats.cqe_overflow). Once the future leaves the state, the
 * slot discards: an fd is closed, a buffer goes back to its ring. The slot
 * is free again only when `op.pending` is 0: the kernel's last completion
 * (no IORING_CQE_F_MORE) and every cancel's result have been reaped.
 */
typedef struct pd__mop {
    pd__op op;               /* first: its address is the user_data */
    pd_bufgroup *group;      /* provided buffers, or NULL */
    struct pd__mop *wnext;   /* on group->waiters while parked */
    struct pd__ovf *ovf;     /* completions stored out of line (sync drop) */
    int32_t fd;              /* the request's fd, for a cancel by fd */
    uint8_t qhead, qlen;     /* the inline queue */
    uint8_t armed;           /* the kernel may still post */
    uint8_t parked;          /* waiting for a buffer before arming */
    uint8_t discard;         /* cancelled: completions are released, not kept */
    uint8_t multi;           /* a multishot request */
    uint8_t tries;           /* cancels sent */
    uint8_t stop;            /* STOP(): cancelled, completions still delivered */
    uint8_t backoff;         /* an accept out of descriptors: its timer is armed */
    pd__cqe q[PD__MOP_Q];
} pd__mop;

/* How long a multishot accept out of descriptors waits before it tries again. */
#define PD__ACCEPT_BACKOFF_MS 100

struct pd__ovf {
    struct pd__ovf *next;
    pd__cqe c;
};

/*
 * user_data tags in the low bits of a slot's (8-aligned) address. Every
 * completion but the one result of a plain op that owes nothing else has a
 * tag, or a reserved value below PD__UD_RESERVED: the reap tells the
 * common case from the others by user_data alone (pd__dispatch), with no
 * test of the completion's flags or of what the slot still owes.
 */
#define PD__TAG_TIMEOUT 1u  /* the op's linked timeout */
#define PD__TAG_CANCEL 2u   /* a pd__mop's cancel request */
/*
 * A plain op's request that completes with more than its result: a
 * zero-copy send (its notification follows) or an op with a linked timeout
 * (the timeout's completion follows).
 */
#define PD__TAG_RARE 2u
#define PD__TAG_EXT 4u      /* the slot is a pd__mop */

/* The user_data of a plain op's request, given its fdret flags. */
#define PD__OP_UD(op, fdret)                                                   \
    ((uint64_t)(uintptr_t)(op) |                                               \
     (((fdret) & (PD__OP_ZC | PD__OP_LINKED)) ? PD__TAG_RARE : 0))

/*
 * Misuse caught by the checked build (-DPD_CHECKED; docs/design.md, "The
 * checked build"): each aborts with `polldrop checked build: FUTURE (state
 * S): MISTAKE` on stderr. The plain build does none of these checks.
 */
void pd__misuse(const char *future, const char *state, const char *mistake)
    __attribute__((noreturn, cold));
#ifdef PD_CHECKED
/* What polling a future in phase (a PD__PH_*, not RUN) means. */
const char *pd__poll_misuse(unsigned phase);
/* A generated future's F_init and drop code: a registry of live futures. */
void pd__checked_init(const void *self, const char *future, const char *state);
void pd__checked_dead(const void *self);
#else
static inline void pd__checked_init(const void *self, const char *future,
                                    const char *state)
{
    (void)self;
    (void)future;
    (void)state;
}

static inline void pd__checked_dead(const void *self)
{
    (void)self;
}
#endif

/* A child future's progress inside its parent (an await/join/select branch). */
enum {
    PD__CH_IDLE = 0, /* not initialised, or fully dropped */
    PD__CH_RUN = 1,  /* initialised, being polled */
    PD__CH_DROP = 2, /* being async-dropped */
    PD__CH_DONE = 3, /* dropped */
    PD__CH_OK = 4,   /* flag: it returned Ready, its output is valid */
    PD__CH_SEEN = 8, /* flag, arrays: a finished member the parent has seen */
};

/* A generated future's phase (its pd__phase member). */
enum {
    PD__PH_RUN = 0,      /* run states; poll may be called */
    PD__PH_RETURNED = 1, /* RETURN ran; nothing is in flight */
    PD__PH_QUIESCE = 2,  /* async drop: cancelling the current state */
    PD__PH_TEARDOWN = 3, /* async drop: running teardown states */
    PD__PH_DEAD = 4,     /* drop code ran */
    PD__PH_FORCED = 5,   /* async drop forced: quiescing a teardown state */
    PD__PH_OWNED = 6,    /* async drop: releasing owned fds and files */
};

/*
 * Whether the task being polled was forced by a shutdown deadline: its
 * poll_drop must skip the teardown states it has not finished, once what
 * the current one has in flight is quiesced. Children polled through the
 * same cx are forced with their parent.
 */
static inline int pd__forced(const pd_cx *cx)
{
    return cx->task->flags & PD__TASK_FORCED;
}

/* pd__sub of a multishot state that is leaving: quiescing before pd__next. */
#define PD__SUB_LEAVE 0xFF

/* Slow paths, in the runtime (complete.c, multishot.c, thread.c, setup.c). */
int pd__task_send(pd_task *t);
struct io_uring_sqe *pd__sqe_slow(pd_runtime *rt, unsigned need);
void pd__op_cancel(pd__op *op);
int pd__op_quiesce_sync(pd__op *op);
void pd__link_timeout(pd_cx *cx, struct io_uring_sqe *sqe, pd__op *op);
void pd__mop_cancel(pd__mop *m);
void pd__mop_stop(pd__mop *m);
void pd__mop_reap(pd__mop *m);
int pd__mop_quiesce_sync(pd__mop *m);
int pd__mop_pop(pd__mop *m, pd__cqe *c);
struct io_uring_sqe *pd__mop_sqe(pd_cx *cx, pd__mop *m, int fd, int multi,
                                 pd_bufgroup *g, uint8_t fdret);
void pd__buf_keep(pd_buf *dst, pd_buf *src);
void pd__fell_through(const char *future, const char *state)
    __attribute__((noreturn, cold));
void pd__trace_emit(const char *future, pd_trace_event ev, const void *self);
extern pd_trace_fn pd__trace_fn;

static inline void pd__trace(const char *future, pd_trace_event ev,
                             const void *self)
{
    if (PD__UNLIKELY(pd__trace_fn != NULL))
        pd__trace_emit(future, ev, self);
}

/*
 * Queues t to be polled; waking a queued task does nothing. The last queued
 * task's next is left as it was: whoever walks the queue first ends it
 * (*rt->ready_tailp = NULL), once per walk rather than once per wake.
 */
static inline void pd__wake_on(pd_runtime *rt, pd_task *t)
{
    if (t->queued)
        return;
    t->queued = 1;
    /* Appending through the last next pointer: no test for an empty queue. */
    *rt->ready_tailp = t;
    rt->ready_tailp = &t->next;
}

static inline void pd__wake(pd_task *t)
{
    pd__wake_on(t->rt, t);
}

/* Requeues the current task behind the others (YIELD). */
static inline void pd__yield(pd_cx *cx)
{
    pd__wake(cx->task);
}

/*
 * Completes op at once with res, without the kernel: the future sees the
 * failure as the op's result on its next poll.
 */
static inline void pd__op_fail(pd_cx *cx, pd__op *op, int res, uint8_t fdret)
{
    *op = (pd__op){ .task = cx->task, .res = res, .st = PD__OP_READY, .fdret = fdret };
    cx->link_ts = NULL;
    pd__wake(cx->task);
}

/*
 * Whether the submission queue is full. polldrop's rings never have SQPOLL
 * or SQE128, so these claim entries without testing the ring's flags.
 * The kernel's head only moves forward, so a limit computed from an older
 * head is too low, never too high: while the tail is before rt->sq_limit
 * there is room, with no read of the head the kernel shares; only when it
 * reaches the limit is the head read again and the limit moved on.
 */
/*
 * Whether the tail is before rt->sq_limit: room, with no read of the
 * kernel's head. One compare of the tail with the limit in memory, and a
 * test of its sign.
 */
static inline int pd__sq_below_limit(const pd_runtime *rt)
{
    return (int)(rt->ring.sq.sqe_tail - rt->sq_limit) < 0;
}

static inline int pd__sq_full(pd_runtime *rt)
{
    const struct io_uring_sq *sq = &rt->ring.sq;
    unsigned head;

    if (PD__LIKELY(pd__sq_below_limit(rt)))
        return 0;
    head = IO_URING_READ_ONCE(*sq->khead);
    rt->sq_limit = head + sq->ring_entries;
    return sq->sqe_tail - head >= sq->ring_entries;
}

/* Claims the next entry; the queue must not be full. */
static inline struct io_uring_sqe *pd__sq_claim(pd_runtime *rt)
{
    struct io_uring_sq *sq = &rt->ring.sq;

    return &sq->sqes[sq->sqe_tail++ & sq->ring_mask];
}

/* io_uring_get_sqe for polldrop's rings: an entry, or NULL if full. */
static inline struct io_uring_sqe *pd__get_sqe(pd_runtime *rt)
{
    if (PD__UNLIKELY(pd__sq_full(rt)))
        return NULL;
    return pd__sq_claim(rt);
}

/*
 * pd__op_sqe's way when the op takes a linked timeout or the submission
 * queue is full, in complete.c: the entry (or the two adjacent entries), or
 * NULL once op has failed.
 */
struct io_uring_sqe *pd__op_sqe_slow(pd_cx *cx, pd__op *op, uint8_t fdret);

/*
 * Marks op in flight on the entry just claimed for it: busy, one completion
 * owed, not cancelled. This runs for every op: only what a busy op needs is
 * stored (res and cflags are written by its completion), and the four state
 * bytes go in one store of an immediate (byte stores the compiler merges
 * load their value from memory first).
 */
static inline void pd__op_start(pd_cx *cx, pd__op *op, uint8_t fdret)
{
    pd__checked_submit(cx->rt, op);
    op->task = cx->task;
    op->bytes = PD__OP_BYTES(PD__OP_BUSY, 1, fdret, 0);
    cx->rt->stats.ops_submitted++;
}

/*
 * Claims an SQE for op and marks the op in flight. If no SQE can be had
 * (the ring is broken, not merely full), the op completes at once with the
 * -errno so that the future sees the failure as its result, and the result
 * is NULL. For out-of-line callers (multishot slots); generated polls go
 * through PD__PREP.
 */
static inline struct io_uring_sqe *pd__op_sqe(pd_cx *cx, pd__op *op,
                                              uint8_t fdret)
{
    struct io_uring_sqe *sqe;

    if (PD__UNLIKELY(cx->link_ts != NULL) ||
        PD__UNLIKELY((sqe = pd__get_sqe(cx->rt)) == NULL)) {
        sqe = pd__op_sqe_slow(cx, op, fdret);
        if (sqe == NULL)
            return NULL;
    }
    pd__op_start(cx, op, fdret);
    return sqe;
}

/*
 * PD__PREP's way when the op takes a linked timeout or the submission
 * queue's tail reached its limit (the queue may be full), in complete.c:
 * the op was prepared in rt->spare_sqe; this claims its entry (or the two
 * adjacent entries) the slow way, which moves the limit on, copies it
 * there and tags it, or fails the op if the ring is broken (waking its
 * task). Returns PD_PENDING, which a poll that has just started its only op
 * returns in turn: PD__PREP's call is a tail call. The op comes first, in
 * the register the poll holds its future in.
 */
pd_poll pd__op_spill(pd__op *op, pd_cx *cx, uint8_t fdret);

/*
 * The next op submitted through cx gets a linked timeout of ms. The
 * submission queue's limit is lowered to its tail, so that the op's
 * PD__PREP, whose inline way tests only the limit, takes the way out of
 * line, which claims the two entries; the limit errs low, as it may (see
 * pd__sq_full), until that claim moves it on.
 */
static inline void pd__link_next(pd_cx *cx, struct __kernel_timespec *ts,
                                 long long ms)
{
    ts->tv_sec = ms / 1000;
    ts->tv_nsec = (ms % 1000) * 1000000;
    cx->link_ts = ts;
    cx->rt->sq_limit = cx->rt->ring.sq.sqe_tail;
}

static inline int pd__op_busy(const pd__op *op)
{
    return op->st == PD__OP_BUSY;
}

/* Takes the result of a completed op: the caller now owns any fd in it. */
static inline int pd__op_take(pd__op *op)
{
    pd__checked_release(op);
    op->st = PD__OP_IDLE;
    return op->res;
}

/*
 * Releases a completed op nobody will take: an fd it returned is closed, so
 * that cancellation never leaks one. Must only be called when !pd__op_busy.
 * Returns 1 if a completion was discarded (its result stays in op->res).
 */
static inline int pd__op_reap(pd__op *op)
{
    int had = op->st == PD__OP_READY;

    pd__checked_release(op);
    if (had && (op->fdret & PD__OP_FDRET) && op->res >= 0)
        close(op->res);
    op->st = PD__OP_IDLE;
    return had;
}

/*
 * Whether a discarded close released its fd: Linux releases the descriptor
 * whatever close returns, unless the request was cancelled before it ran.
 */
static inline int pd__op_closed(const pd__op *op)
{
    return op->res != -ECANCELED;
}

/*
 * Cancels op on behalf of the task polling now: its completion wakes that
 * task, even if another task submitted the op (a future handed to
 * pd_drop_async after it was polled elsewhere).
 */
static inline void pd__op_cancel_from(pd_cx *cx, pd__op *op)
{
    op->task = cx->task;
    pd__op_cancel(op);
}

/* The pd__prep_OP helpers, and those of extended slots and of child futures. */
#include "pd_prep.h"
#include "pd_multishot.h"
#include "pd_children.h"

#endif /* POLLDROP_INTERNAL_H */
