/*
 * The polldrop runtime: one io_uring, one thread, an intrusive ready queue.
 *
 * A turn polls every task that was ready when the turn began, then submits
 * what they queued and reaps completions with a single io_uring_enter. A
 * completion only records its result in the op slot and queues the slot's
 * task; futures run only from the turn loop, so reaping is safe anywhere
 * (including inside a blocking sync drop).
 */
#include "polldrop.h"
#include "ring.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>

/*
 * What the kernel writes into a provided buffer, memcheck cannot see:
 * under valgrind, the bytes a completion says it received are marked
 * defined. Elsewhere (and without the header) this costs nothing.
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define PD__KERNEL_WROTE(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#endif
#endif
#ifndef PD__KERNEL_WROTE
#define PD__KERNEL_WROTE(p, n) ((void)(p), (void)(n))
#endif

pd_trace_fn pd__trace_fn;
static void *pd__trace_arg;

void pd_set_trace(pd_trace_fn fn, void *arg)
{
    pd__trace_arg = arg;
    pd__trace_fn = fn;
}

void pd__trace_emit(const char *future, pd_trace_event ev, const void *self)
{
    pd_trace_fn fn = pd__trace_fn;

    if (fn)
        fn(pd__trace_arg, future, ev, self);
}

void pd__fell_through(const char *future, const char *state)
{
    fprintf(stderr, "polldrop: %s: state %s fell through\n", future, state);
    abort();
}

/* --- ring setup --- */

/* The smallest pd_config.entries: an op with a linked timeout takes two. */
#define PD__MIN_ENTRIES 2u

/*
 * Sets up rt's ring on io_uring, with the most useful setup flags the
 * kernel accepts. Returns 0 or io_uring_queue_init's -errno.
 */
static int pd__ring_init(pd_runtime *rt, unsigned entries, unsigned cfg_flags)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    size_t i = (cfg_flags & PD_CONFIG_NO_DEFER_TASKRUN) ? 2 : 0;
    int ret = -EINVAL;

    /* Older kernels reject flags they do not know with -EINVAL: fall back. */
    for (; i < sizeof(tries) / sizeof(tries[0]); i++) {
        ret = io_uring_queue_init(entries, &rt->ring, tries[i]);
        if (ret == 0) {
            rt->stats.ring_flags = tries[i];
            return 0;
        }
        if (ret != -EINVAL)
            return ret;
    }
    return ret;
}

int pd__eng_enter_slow(pd_runtime *rt, unsigned wait_nr,
                       const struct __kernel_timespec *ts)
{
    return rt->engine_vt->enter(rt->engine, &rt->ring, wait_nr, ts);
}

/*
 * The engine a config asks for: cfg's, or with PD_ENGINE_AUTO the
 * environment's PD_ENGINE (auto, uring, epoll or sim; unset or empty:
 * auto). Returns the engine or -EINVAL for a value that names none.
 */
static int pd__engine_choice(const pd_config *cfg)
{
    static const char *const names[] = { "auto", "uring", "epoll", "sim" };
    pd_engine want = cfg ? cfg->engine : PD_ENGINE_AUTO;
    const char *env;
    unsigned i;

    if ((unsigned)want > PD_ENGINE_SIM)
        return -EINVAL;
    if (want != PD_ENGINE_AUTO)
        return (int)want;
    env = getenv("PD_ENGINE");
    if (env == NULL || *env == '\0')
        return PD_ENGINE_AUTO;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(env, names[i]) == 0)
            return (int)i;
    return -EINVAL;
}

/*
 * Whether auto falls back to epoll after io_uring setup failed with err:
 * only when io_uring is switched off (EPERM: a seccomp filter such as
 * Docker's, or kernel.io_uring_disabled; ENOSYS: a kernel without it, or
 * Podman's filter) or refuses every setup the runtime tries (EINVAL).
 * Anything else (ENOMEM, EMFILE...) is a failure auto does not hide.
 */
static int pd__engine_fallback(int err)
{
    return err == -EPERM || err == -ENOSYS || err == -EINVAL;
}

/*
 * Sets up rt's ring on the engine cfg asks for (pd__engine_choice); with
 * auto, io_uring, then epoll where pd__engine_fallback allows. Returns 0
 * or -errno.
 */
static int pd__engine_init(pd_runtime *rt, const pd_config *cfg, unsigned entries)
{
    int kind = pd__engine_choice(cfg);
    int ret;

    if (kind < 0)
        return kind;
    if (kind == PD_ENGINE_SIM) {
        ret = pd__sim_init(&rt->ring, entries, cfg, &rt->engine);
        if (ret == 0)
            rt->engine_vt = &pd__engine_sim;
        return ret;
    }
    if (kind != PD_ENGINE_EPOLL) {
        ret = pd__ring_init(rt, entries, cfg ? cfg->flags : 0);
        if (ret == 0 || kind == PD_ENGINE_URING || !pd__engine_fallback(ret))
            return ret;
    }
    ret = pd__engine_epoll.init(&rt->ring, entries, 0, &rt->engine);
    if (ret == 0)
        rt->engine_vt = &pd__engine_epoll;
    return ret;
}

const char *pd_runtime_engine(const pd_runtime *rt)
{
    return rt->engine == NULL ? "io_uring" : rt->engine_vt->name;
}

int pd_runtime_new(pd_runtime **out, const pd_config *cfg)
{
    unsigned entries = cfg && cfg->entries ? cfg->entries : 256;
    pd_runtime *rt;
    int ret;

    *out = NULL;
    /*
     * An op with a linked timeout takes two submission entries at once, so
     * a one-entry ring could never submit it (the claim would wait forever
     * for room that cannot appear). Two suffice for everything: a cancel
     * takes one entry, claimed after the queue has been submitted.
     */
    if (entries < PD__MIN_ENTRIES)
        return -EINVAL;
    if (posix_memalign((void **)&rt, alignof(pd_runtime), sizeof(*rt)) != 0)
        return -ENOMEM;
    memset(rt, 0, sizeof(*rt));
    rt->ready_tailp = &rt->ready_head;
    atomic_init(&rt->inbox, NULL);
    atomic_init(&rt->wake_sent, 0);
    atomic_init(&rt->shutdown_asked, 0);
    atomic_init(&rt->shutdown_at_ns, INT64_MAX);
    /* Blocking: an io_uring read of a non-blocking eventfd would not wait. */
    rt->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (rt->wake_fd < 0) {
        ret = -errno;
        free(rt);
        return ret;
    }
    ret = pd__engine_init(rt, cfg, entries);
    if (ret < 0) {
        close(rt->wake_fd);
        free(rt);
        return ret;
    }
    if (rt->ring.features & IORING_FEAT_CQE_SKIP)
        rt->cancel_flags = IOSQE_CQE_SKIP_SUCCESS;
    rt->owner = pthread_self();
    rt->has_ftruncate = pd__eng_has_op(rt, PD__IORING_OP_FTRUNCATE);
    *out = rt;
    return 0;
}

/* --- misuse of the API, caught by the checked build --- */

void pd__misuse(const char *future, const char *state, const char *mistake)
{
    fprintf(stderr, "polldrop checked build: %s (state %s): %s\n", future, state,
            mistake);
    abort();
}

#ifdef PD_CHECKED
static const char *const pd__task_states[] = {
    "running", "dropping", "done", "cancelled",
};

/*
 * A freed task is not given back at once: it is marked dead and kept in a
 * ring of the last PD__GRAVES, so that a call on it after its last release
 * is caught here, with the future's name, instead of reading freed memory.
 */
#define PD__GRAVES 1024u
#define PD__TASK_DEAD 0xdd

static pd_task *pd__graves[PD__GRAVES];
static unsigned pd__grave_next;
static pthread_mutex_t pd__grave_lock = PTHREAD_MUTEX_INITIALIZER;

static void pd__task_release_mem(pd_task *t)
{
    pd_task *old;

    t->state = PD__TASK_DEAD;
    pthread_mutex_lock(&pd__grave_lock);
    old = pd__graves[pd__grave_next];
    pd__graves[pd__grave_next] = t;
    pd__grave_next = (pd__grave_next + 1) % PD__GRAVES;
    pthread_mutex_unlock(&pd__grave_lock);
    free(old);
}

/*
 * t is not freed. A task whose reference was released stays usable while
 * its future lives (the runtime holds it): cancelling it then is fine.
 */
static void pd__task_check(const pd_task *t, const char *call)
{
    char what[160];

    if (t->state == PD__TASK_DEAD) {
        snprintf(what, sizeof(what), "%s on a task already freed (released twice, "
                 "or used after its last pd_task_release)", call);
        pd__misuse(t->vt->name, "freed", what);
    }
}

/* The runtime is driven by the thread that made it, and no other. */
static void pd__owner_check(const pd_runtime *rt, const char *call)
{
    char what[160];

    if (!pthread_equal(rt->owner, pthread_self())) {
        snprintf(what, sizeof(what), "%s from a thread other than the runtime's "
                 "owner (the one that called pd_runtime_new)", call);
        pd__misuse("runtime", "-", what);
    }
}

/*
 * Live futures: F_init registers the address, the drop code removes it. An
 * F_init on a registered address re-initialises a future that was never
 * destroyed. Open addressing, as the registry of op slots below.
 */
#define PD__LIVE_SIZE (1u << 15)

static struct pd__live_entry {
    const void *self;
    const char *future;
} pd__live[PD__LIVE_SIZE];
static unsigned pd__live_count;
static pthread_mutex_t pd__live_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned pd__live_home(const void *p)
{
    return (unsigned)(((uint64_t)(uintptr_t)p >> 3) * 0x9e3779b97f4a7c15ull >> 49) &
           (PD__LIVE_SIZE - 1);
}

const char *pd__poll_misuse(unsigned phase)
{
    switch (phase) {
    case PD__PH_RETURNED:
        return "F_poll after it returned Ready (its output was taken; destroy it "
               "with F_poll_drop or F_drop)";
    case PD__PH_QUIESCE:
    case PD__PH_TEARDOWN:
    case PD__PH_FORCED:
        return "F_poll after its async drop began (F_poll_drop was called)";
    case PD__PH_DEAD:
        return "F_poll after its destruction (F_init it again first)";
    default:
        return "F_poll on a future that was never initialised (or was overwritten)";
    }
}

void pd__checked_init(const void *self, const char *future, const char *state)
{
    unsigned i;

    pthread_mutex_lock(&pd__live_lock);
    for (i = pd__live_home(self); pd__live[i].self; i = (i + 1) & (PD__LIVE_SIZE - 1)) {
        if (pd__live[i].self == self) {
            pthread_mutex_unlock(&pd__live_lock);
            pd__misuse(future, state, "F_init (or F_block_on, START, await) on a "
                       "future that is still live: destroy it first (F_drop or "
                       "F_poll_drop until Ready)");
        }
    }
    if (pd__live_count < PD__LIVE_SIZE / 2) {
        pd__live[i] = (struct pd__live_entry){ self, future };
        pd__live_count++;
    }
    pthread_mutex_unlock(&pd__live_lock);
}

void pd__checked_dead(const void *self)
{
    unsigned hole, i;

    pthread_mutex_lock(&pd__live_lock);
    for (i = pd__live_home(self); pd__live[i].self; i = (i + 1) & (PD__LIVE_SIZE - 1))
        if (pd__live[i].self == self)
            break;
    if (pd__live[i].self == NULL) {
        pthread_mutex_unlock(&pd__live_lock);
        return;
    }
    /* Remove it, shifting back the entries that probed past it. */
    hole = i;
    for (;;) {
        unsigned home;

        i = (i + 1) & (PD__LIVE_SIZE - 1);
        if (pd__live[i].self == NULL)
            break;
        home = pd__live_home(pd__live[i].self);
        if (((i - home) & (PD__LIVE_SIZE - 1)) >= ((i - hole) & (PD__LIVE_SIZE - 1))) {
            pd__live[hole] = pd__live[i];
            hole = i;
        }
    }
    pd__live[hole].self = NULL;
    pd__live_count--;
    pthread_mutex_unlock(&pd__live_lock);
}
#else
static void pd__task_release_mem(pd_task *t)
{
    free(t);
}

static inline void pd__task_check(const pd_task *t, const char *call)
{
    (void)t;
    (void)call;
}

static inline void pd__owner_check(const pd_runtime *rt, const char *call)
{
    (void)rt;
    (void)call;
}
#endif

/* --- the checked build (-DPD_CHECKED): a registry of live op slots --- */

#ifdef PD_CHECKED
#include <pthread.h>

/*
 * Every op slot the kernel owes a completion is registered, with the
 * number of completions owed, from the moment its request is queued until
 * its last completion is dispatched. A completion for a slot that is not
 * registered, a slot reused or released while registered, and a task or a
 * runtime freed while one of its slots is registered all abort: each is a
 * buffer or a slot given up while the kernel still owns it. The table is
 * static (the checked build allocates nothing more than the plain one) and
 * shared by every runtime of the process, under a lock.
 */
#define PD__REG_SIZE (1u << 15)

static struct pd__reg_entry {
    uintptr_t op;
    const pd_runtime *rt;
    uint32_t owed;
} pd__reg[PD__REG_SIZE];
static unsigned pd__reg_count;
static pthread_mutex_t pd__reg_lock = PTHREAD_MUTEX_INITIALIZER;

static void pd__checked_die(const char *what, uintptr_t op, long a, long b)
    __attribute__((noreturn, cold));

static void pd__checked_die(const char *what, uintptr_t op, long a, long b)
{
    fprintf(stderr, "polldrop checked build: op slot %#lx: %s (%ld, %ld)\n",
            (unsigned long)op, what, a, b);
    abort();
}

static unsigned pd__reg_home(uintptr_t op)
{
    return (unsigned)(((uint64_t)op >> 3) * 0x9e3779b97f4a7c15ull >> 49) &
           (PD__REG_SIZE - 1);
}

/* The entry of op, or NULL. Called with the lock held. */
static struct pd__reg_entry *pd__reg_find(uintptr_t op)
{
    unsigned i = pd__reg_home(op);

    while (pd__reg[i].op != 0) {
        if (pd__reg[i].op == op)
            return &pd__reg[i];
        i = (i + 1) & (PD__REG_SIZE - 1);
    }
    return NULL;
}

/* Removes e, shifting back the entries that probed past it. */
static void pd__reg_remove(struct pd__reg_entry *e)
{
    unsigned hole = (unsigned)(e - pd__reg), i = hole;

    for (;;) {
        unsigned home;

        i = (i + 1) & (PD__REG_SIZE - 1);
        if (pd__reg[i].op == 0)
            break;
        home = pd__reg_home(pd__reg[i].op);
        /* Movable if its home is not in the cyclic range (hole, i]. */
        if (((i - home) & (PD__REG_SIZE - 1)) >= ((i - hole) & (PD__REG_SIZE - 1))) {
            pd__reg[hole] = pd__reg[i];
            hole = i;
        }
    }
    pd__reg[hole].op = 0;
    pd__reg_count--;
}

void pd__checked_submit(const pd_runtime *rt, const pd__op *op)
{
    uintptr_t a = (uintptr_t)op;
    struct pd__reg_entry *e;
    unsigned i;

    pthread_mutex_lock(&pd__reg_lock);
    e = pd__reg_find(a);
    if (e)
        pd__checked_die("reused for a new request while the kernel owes it "
                        "completions", a, e->owed, 0);
    if (pd__reg_count >= PD__REG_SIZE / 2)
        pd__checked_die("too many requests in flight for the registry", a,
                        pd__reg_count, PD__REG_SIZE / 2);
    i = pd__reg_home(a);
    while (pd__reg[i].op != 0)
        i = (i + 1) & (PD__REG_SIZE - 1);
    pd__reg[i] = (struct pd__reg_entry){ a, rt, 1 };
    pd__reg_count++;
    pthread_mutex_unlock(&pd__reg_lock);
}

void pd__checked_release(const pd__op *op)
{
    struct pd__reg_entry *e;

    pthread_mutex_lock(&pd__reg_lock);
    e = pd__reg_find((uintptr_t)op);
    if (e)
        pd__checked_die("released while the kernel owes it completions",
                        (uintptr_t)op, e->owed, 0);
    pthread_mutex_unlock(&pd__reg_lock);
}

/* A second completion is owed: the op's linked timeout. */
static void pd__checked_owe(const pd__op *op)
{
    struct pd__reg_entry *e;

    pthread_mutex_lock(&pd__reg_lock);
    e = pd__reg_find((uintptr_t)op);
    if (!e)
        pd__checked_die("linked timeout for a request never queued",
                        (uintptr_t)op, 0, 0);
    e->owed++;
    pthread_mutex_unlock(&pd__reg_lock);
}

static void pd__checked_cqe(const struct io_uring_cqe *cqe)
{
    uintptr_t a = (uintptr_t)(cqe->user_data & ~(uint64_t)7);
    struct pd__reg_entry *e;

    pthread_mutex_lock(&pd__reg_lock);
    e = pd__reg_find(a);
    if (!e)
        pd__checked_die("completion for a slot the kernel owes nothing (a dead "
                        "or released slot; result, flags)", a, cqe->res, cqe->flags);
    /* A multishot request owes completions until one comes without F_MORE. */
    if (!(cqe->flags & IORING_CQE_F_MORE) && --e->owed == 0)
        pd__reg_remove(e);
    pthread_mutex_unlock(&pd__reg_lock);
}

/* [mem, mem + len) is about to be freed: no registered slot may lie in it. */
static void pd__checked_freeing(const void *mem, size_t len)
{
    uintptr_t lo = (uintptr_t)mem;
    unsigned i;

    pthread_mutex_lock(&pd__reg_lock);
    for (i = 0; pd__reg_count && i < PD__REG_SIZE; i++)
        if (pd__reg[i].op >= lo && pd__reg[i].op - lo < len)
            pd__checked_die("freed with its task while the kernel owes it "
                            "completions", pd__reg[i].op, pd__reg[i].owed, 0);
    pthread_mutex_unlock(&pd__reg_lock);
}

/* rt's ring is about to close: none of its slots may still be owed. */
static void pd__checked_ring_closing(const pd_runtime *rt)
{
    unsigned i;

    pthread_mutex_lock(&pd__reg_lock);
    for (i = 0; pd__reg_count && i < PD__REG_SIZE; i++)
        if (pd__reg[i].op != 0 && pd__reg[i].rt == rt)
            pd__checked_die("still owed completions when its runtime is freed",
                            pd__reg[i].op, pd__reg[i].owed, 0);
    pthread_mutex_unlock(&pd__reg_lock);
}
#else
static void pd__checked_owe(const pd__op *op) { (void)op; }
static void pd__checked_cqe(const struct io_uring_cqe *cqe) { (void)cqe; }
static void pd__checked_freeing(const void *mem, size_t len) { (void)mem; (void)len; }
static void pd__checked_ring_closing(const pd_runtime *rt) { (void)rt; }
#endif

/* --- completions --- */

/*
 * A completion with a reserved tag: only wakes need anything done. The
 * wake is over once its read completes, so wake_sent is cleared here, in
 * the turn whose wait the wake ended: a pd_runtime_wake that found it set
 * came before this, so the pd_run_once returning now returns after it,
 * and one that finds it clear writes the eventfd again. Clearing it later
 * (when the inbox is read, a turn on) would merge a wake into one already
 * consumed, and the next blocking wait would not end for it.
 */
static void pd__dispatch_tag(pd_runtime *rt, uint64_t ud)
{
    if (ud == PD__UD_WAKE_EFD) {
        rt->wake_armed = 0;
        rt->remote_pending = 1;
        atomic_exchange(&rt->wake_sent, 0);
    }
}

/*
 * The wake itself: a write to target's eventfd, whose read target keeps in
 * flight in its ring, so that a blocking wait ends. The write is the last
 * access to target: once target has seen the wake, it may be freed.
 */
static int pd__wake_efd(pd_runtime *target)
{
    uint64_t one = 1;

    /* EAGAIN: the counter is full of unread wakes, so one is on its way. */
    if (write(target->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

static int pd__mop_dispatch(pd_runtime *rt, pd__mop *m,
                            const struct io_uring_cqe *cqe, unsigned tag,
                            int force);

/* op has received every completion it was owed: its result is ready. */
static inline void pd__op_done(pd_runtime *rt, pd__op *op)
{
    op->st = PD__OP_READY;
    rt->stats.ops_completed++;
    pd__wake_on(rt, op->task);
}

/*
 * Every completion but a plain op's one result: a reserved tag, an
 * extended slot's, a linked timeout's (the op's address with the low bit
 * set), and the two of a zero-copy send -- its result comes with
 * IORING_CQE_F_MORE, and its notification (IORING_CQE_F_NOTIF, whose res
 * is not the result) follows; only then may the buffer and the slot be
 * reused. Returns as pd__dispatch.
 */
static __attribute__((noinline)) int pd__dispatch_rare(pd_runtime *rt,
                                                       const struct io_uring_cqe *cqe,
                                                       int force)
{
    uint64_t ud = cqe->user_data;
    pd__op *op = (pd__op *)(uintptr_t)(ud & ~(uint64_t)7);

    /*
     * One compare keeps out both reserved ranges: small tags (cancel
     * requests that found nothing; the op's own completion follows) and
     * LIBURING_UDATA_TIMEOUT, the timeout liburing queues for a timed wait
     * on kernels without IORING_FEAT_EXT_ARG.
     */
    if (ud - PD__UD_RESERVED >= UINT64_MAX - PD__UD_RESERVED) {
        pd__dispatch_tag(rt, ud);
        return 0;
    }
    if (ud & PD__TAG_EXT)
        return pd__mop_dispatch(rt, (pd__mop *)op, cqe, (unsigned)(ud & 3), force);
    pd__checked_cqe(cqe);
    if (!(ud & 1)) {
        if (!(cqe->flags & IORING_CQE_F_NOTIF)) {
            op->res = cqe->res;
            op->cflags = cqe->flags;
        }
        if (cqe->flags & IORING_CQE_F_MORE)
            return 0;
    }
    if (--op->pending == 0)
        pd__op_done(rt, op);
    return 0;
}

/*
 * Hands one completion to its slot; inlined in the reap loop, as it runs
 * once per completion. Returns 1 when the completion must stay in the
 * completion queue for now (a multishot slot's queue is full), so that the
 * reap stops there; never with force.
 */
static inline __attribute__((always_inline)) int
pd__dispatch(pd_runtime *rt, const struct io_uring_cqe *cqe, int force)
{
    uint64_t ud = cqe->user_data;
    pd__op *op = (pd__op *)(uintptr_t)ud;

    /*
     * The common case in two tests: a plain op's own result. Its user_data
     * is the slot's address, untagged (the low three bits clear) and past
     * every reserved value, and the completion is the request's last.
     */
    if (PD__UNLIKELY(((ud & 7) | (cqe->flags & (IORING_CQE_F_MORE |
                                                 IORING_CQE_F_NOTIF))) != 0) ||
        PD__UNLIKELY(ud < PD__UD_RESERVED))
        return pd__dispatch_rare(rt, cqe, force);
    pd__checked_cqe(cqe);
    op->res = cqe->res;
    op->cflags = cqe->flags;
    /* Unless its linked timeout's completion is still owed. */
    if (--op->pending == 0)
        pd__op_done(rt, op);
    return 0;
}

/*
 * Dispatches every completion the queue holds now. The tail is read once
 * (completions posted meanwhile wait for the next reap) and the ring has
 * 16-byte CQEs, so each completion costs an index and the dispatch, not
 * the generic loop's reload of the tail and test of the CQE size. Without
 * force, a full multishot queue stops the reap there: the rest waits for the
 * owner to run. Blocking sync drops reap with force.
 */
static inline __attribute__((always_inline)) unsigned
pd__reap_inline(pd_runtime *rt, int force)
{
    struct io_uring_cq *cq = &rt->ring.cq;
    unsigned head = *cq->khead;
    unsigned tail = io_uring_smp_load_acquire(cq->ktail);
    unsigned mask = cq->ring_mask, n;
    /* In a local: the compiler cannot tell the slots' stores from cq's. */
    struct io_uring_cqe *cqes = cq->cqes;

    for (; head != tail; head++)
        if (PD__UNLIKELY(pd__dispatch(rt, &cqes[head & mask], force)))
            break;
    n = head - *cq->khead;
    if (n != 0)
        io_uring_smp_store_release(cq->khead, head);
    return n;
}

/* pd__reap_inline out of line, for every caller but the turn's own enter. */
static __attribute__((noinline)) unsigned pd__reap(pd_runtime *rt, int force)
{
    return pd__reap_inline(rt, force);
}

/* Transient failures of io_uring_enter that a retry resolves. */
static int pd__transient(int ret)
{
    return ret == -EINTR || ret == -EAGAIN || ret == -EBUSY || ret == -ETIME;
}

/* CLOCK_MONOTONIC, or the virtual clock of this thread's simulated ring. */
static int64_t pd__now_ns(void)
{
    struct timespec ts;

    if (PD__UNLIKELY(pd__sim_clock != NULL))
        return *pd__sim_clock;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Submits and waits for a completion, but no later than the shutdown
 * deadline: the turn after it expires forces what is left.
 */
static int pd__wait_deadline(pd_runtime *rt)
{
    int64_t left = rt->deadline_ns - pd__now_ns();
    struct __kernel_timespec ts;

    if (left <= 0)
        return pd__eng_enter(rt, 0, NULL);
    ts.tv_sec = left / 1000000000;
    ts.tv_nsec = left % 1000000000;
    return pd__eng_enter(rt, 1, &ts);
}

/*
 * Queues the read of the wake eventfd, so that a wake from a thread without
 * a runtime of its own ends a blocking wait. If no entry can be had even
 * once the queue went to the kernel (the ring is broken), the next enter
 * tries again.
 */
static void pd__wake_arm(pd_runtime *rt)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&rt->ring);

    /* A full queue: hand it to the kernel, so that a blocking wait is armed. */
    if (sqe == NULL && pd__eng_submit(rt) >= 0)
        sqe = io_uring_get_sqe(&rt->ring);
    if (sqe == NULL)
        return;
    io_uring_prep_read(sqe, rt->wake_fd, &rt->wake_buf, sizeof(rt->wake_buf), 0);
    io_uring_sqe_set_data64(sqe, PD__UD_WAKE_EFD);
    rt->wake_armed = 1;
}

/*
 * With IORING_SETUP_DEFER_TASKRUN the kernel posts most completions (every
 * cancelled poll-armed request among them) as task work that runs only when
 * the ring is entered with GETEVENTS, and then at most max(20,
 * min_complete) items per entry (IO_LOCAL_TW_DEFAULT_MAX, kernels 6.13 and
 * later). Until its task work has run, a cancelled request stays in the
 * kernel's cancel hash, where every later cancel walks past it: a storm of
 * cancels submitted newest first (pd_shutdown's order) faster than the work
 * runs is quadratic in the kernel. A zero-timeout wait for more events is
 * no way out: it sleeps for the timer slack (tens of microseconds).
 *
 * So this enters again to run more of the work while some is left, until
 * as many completions as the completion queue holds were reaped. Whether
 * work is left, the kernel says itself when the ring has
 * IORING_SETUP_TASKRUN_FLAG: it sets IORING_SQ_TASKRUN in the SQ flags while
 * deferred work waits, and an entry that would find none is never made. But
 * the kernel clears the flag when it starts running the work, not when it
 * stops at the budget with work left; so an entry that reaped a full budget
 * of completions (`n`) is taken as a sign too -- only while cancels are
 * recent: since the last entry that found less than a full budget, a cancel
 * was submitted (rt->cancel_tw). Elsewhere work beyond the budget costs
 * nothing (the next turn's entry runs it, before it can block), while an
 * entry made for it would cost one io_uring_enter per turn whenever a turn
 * reaps twenty completions or more: every turn of 128 tasks doing nops, or
 * of a busy server. An entry that reaped nothing ends the loop: the flag can
 * stay set with nothing such an entry runs (the echo server spun at 100% CPU
 * on it, never waiting, its peers stalled). Without DEFER_TASKRUN the kernel
 * runs task work on every return to user space, and there is nothing to do.
 */
#define PD__TW_BUDGET 20u

static inline int pd__task_work_left(pd_runtime *rt, unsigned n)
{
    if (n >= PD__TW_BUDGET) {
        if (rt->cancel_tw)
            return 1;
    } else {
        /* A short batch: the kernel ran every item it had queued. */
        rt->cancel_tw = 0;
    }
    return (rt->stats.ring_flags & IORING_SETUP_TASKRUN_FLAG) &&
           (IO_URING_READ_ONCE(*rt->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

/* The entries that run what the first left: see above. */
static __attribute__((noinline)) void pd__drain_more(pd_runtime *rt, unsigned n)
{
    unsigned total = n;

    do {
        rt->stats.enter_calls++;
        if (pd__eng_get_events(rt) < 0)
            return;
        n = pd__reap(rt, 0);
        if (n == 0)
            return;
        total += n;
    } while (pd__task_work_left(rt, n) && total < rt->ring.cq.ring_entries);
}

/* After an entry that reaped n completions: runs deferred work it left. */
static inline void pd__drain_task_work(pd_runtime *rt, unsigned n)
{
    if ((rt->stats.ring_flags & IORING_SETUP_DEFER_TASKRUN) &&
        PD__UNLIKELY(pd__task_work_left(rt, n)) && n < rt->ring.cq.ring_entries)
        pd__drain_more(rt, n);
}

/*
 * Submits what is queued and collects completions; blocks for one when wait
 * is set. Returns 0 or a hard -errno.
 */
static int pd__enter(pd_runtime *rt, int wait)
{
    int ret;

    if (PD__UNLIKELY(!rt->wake_armed))
        pd__wake_arm(rt);
    rt->stats.enter_calls++;
    if (!wait)
        ret = pd__eng_enter(rt, 0, NULL);
    else if (PD__UNLIKELY(rt->deadline_armed))
        ret = pd__wait_deadline(rt);
    else
        ret = pd__eng_enter(rt, 1, NULL);
    pd__drain_task_work(rt, pd__reap_inline(rt, 0));
    if (ret < 0 && !pd__transient(ret))
        return ret;
    return 0;
}

/*
 * Makes room for need adjacent submission entries in a full queue: hands
 * the queue to the kernel and reaps, and waits for a completion when the
 * kernel took nothing. It reaps as a turn does, never with force: a
 * multishot slot whose queue is full stops the reap, and what is behind it
 * stays in the completion queue until its owner has run, so nothing is
 * stored out of line in an ordinary poll (invariant 4). The reap also
 * keeps the completion queue drained while a turn fills the submission
 * queue many times over, and each entry runs the kernel's deferred task
 * work, so that a queue full of cancels does not pile up cancelled
 * requests in the kernel's cancel lookup (see pd__drain_task_work). Not
 * reaping here would let the completion queue overflow into the kernel's
 * own list, which made `cancel_storm` several times slower (design.md §4).
 *
 * What it reaps is dispatched: a completion may have ended a request its
 * caller was about to cancel. A caller that decided from a slot's state
 * must look again once this returned, before it claims the entry (see
 * pd__op_cancel, pd__mop_cancel_send). Returns 0 once there is room, or
 * the -errno that stands in the way (also in rt->sq_err): the ring's hard
 * error, or -EBUSY when the kernel takes nothing while the completion
 * queue waits for a multishot slot's owner to run (a kernel that refuses
 * submissions while its completion queue overflows), which only that
 * owner's poll can end.
 */
static int pd__sq_room(pd_runtime *rt, unsigned need)
{
    int ret;

    for (;;) {
        unsigned reaped;

        rt->stats.enter_calls++;
        ret = pd__eng_enter(rt, 0, NULL);
        reaped = pd__reap(rt, 0);
        pd__drain_task_work(rt, reaped);
        if (ret < 0 && !pd__transient(ret))
            break;
        if (io_uring_sq_space_left(&rt->ring) >= need)
            return 0;
        if (need > rt->ring.sq.ring_entries) {
            /* Unreachable with pd_runtime_new's minimum; never wait forever. */
            ret = -EINVAL;
            break;
        }
        if (ret > 0 || reaped > 0 || ret == -EINTR)
            continue;
        if (io_uring_cq_ready(&rt->ring) != 0) {
            /* Reaped now, unless it waits for a full multishot slot's owner. */
            if (pd__reap(rt, 0) > 0)
                continue;
            ret = -EBUSY;
            break;
        }
        /* Nothing went in and nothing is posted: wait for a completion. */
        rt->stats.enter_calls++;
        ret = pd__eng_enter(rt, 1, NULL);
        if (ret < 0 && !pd__transient(ret))
            break;
        pd__drain_task_work(rt, pd__reap(rt, 0));
    }
    rt->sq_err = ret;
    return ret;
}

struct io_uring_sqe *pd__sqe_slow(pd_runtime *rt, unsigned need)
{
    return pd__sq_room(rt, need) < 0 ? NULL : pd__sq_claim(rt);
}

struct io_uring_sqe *pd__op_sqe_slow(pd_cx *cx, pd__op *op, uint8_t fdret)
{
    pd_runtime *rt = cx->rt;
    unsigned need = cx->link_ts ? 2 : 1;
    struct io_uring_sqe *sqe = NULL;

    /* An op and its linked timeout take two adjacent entries. */
    if (io_uring_sq_space_left(&rt->ring) >= need)
        sqe = pd__get_sqe(rt);
    if (sqe == NULL)
        sqe = pd__sqe_slow(rt, need);
    if (sqe == NULL)
        pd__op_fail(cx, op, rt->sq_err, fdret);
    return sqe;
}

int pd__op_spill(pd_cx *cx, pd__op *op, uint8_t fdret)
{
    pd_runtime *rt = cx->rt;
    struct io_uring_sqe *sqe = pd__op_sqe_slow(cx, op, fdret);

    if (sqe == NULL) {
        /*
         * pd__op_fail completed op with the ring's error. A close must
         * still release its fd: the future forgets it once the close
         * completed, so the ring's error would leak it. It is closed with
         * close(2) instead, and the op completes with that result.
         */
        if (rt->spare_sqe.opcode == IORING_OP_CLOSE)
            op->res = close(rt->spare_sqe.fd) == 0 ? 0 : -errno;
        return op->res;
    }
    pd__op_start(cx, op, fdret);
    *sqe = rt->spare_sqe;
    io_uring_sqe_set_data(sqe, op);
    if (cx->link_ts != NULL)
        pd__link_timeout(cx, sqe, op);
    return 0;
}

void pd__link_timeout(pd_cx *cx, struct io_uring_sqe *sqe, pd__op *op)
{
    struct io_uring_sqe *t = io_uring_get_sqe(&cx->rt->ring);

    /* pd__op_sqe_slow reserved two adjacent entries, so t cannot be NULL. */
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(t, cx->link_ts, 0);
    /* The op's own user_data, tagged: the slot's address and kind. */
    io_uring_sqe_set_data64(t, sqe->user_data | PD__TAG_TIMEOUT);
    op->pending = 2;
    pd__checked_owe(op);
    cx->link_ts = NULL;
}

void pd__op_cancel(pd__op *op)
{
    pd_runtime *rt;
    struct io_uring_sqe *sqe;

    if (op->st != PD__OP_BUSY || op->cancelled)
        return;
    rt = op->task->rt;
    if (PD__UNLIKELY(pd__sq_full(rt))) {
        if (pd__sq_room(rt, 1) < 0) {
            /*
             * The request is not lost: the owner is requeued, and
             * quiescing calls pd__op_cancel again on its next poll.
             */
            pd__wake(op->task);
            return;
        }
        /* Making room reaped: op may have completed meanwhile. */
        if (op->st != PD__OP_BUSY)
            return;
    }
    sqe = pd__sq_claim(rt);
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, PD__UD_CANCEL);
    sqe->flags |= (uint8_t)rt->cancel_flags;
    op->cancelled = 1;
    rt->stats.cancels_submitted++;
    rt->cancel_tw = 1;
}

/*
 * A sync drop that cannot reach the kernel has no safe way on: the kernel
 * may still write into the slot, so it aborts rather than let it be freed.
 */
static void pd__sync_check(int ret)
{
    if (ret < 0 && !pd__transient(ret)) {
        fprintf(stderr, "polldrop: io_uring_enter failed during a sync drop: "
                        "%s\n", strerror(-ret));
        abort();
    }
}

/*
 * Blocks until op's completions have all been reaped, cancelling it first.
 * Other completions that arrive meanwhile are dispatched as usual. If the
 * ring itself fails, there is no safe way on: the kernel may still write
 * into the slot, so this aborts rather than return and let it be freed.
 * Returns 1 if a completion was discarded, as pd__op_reap.
 */
int pd__op_quiesce_sync(pd__op *op)
{
    pd_runtime *rt;

    if (op->st == PD__OP_BUSY) {
        rt = op->task->rt;
        while (op->st == PD__OP_BUSY) {
            int ret;

            pd__op_cancel(op);
            rt->stats.enter_calls++;
            ret = pd__eng_enter(rt, 1, NULL);
            pd__reap(rt, 1);
            pd__sync_check(ret);
        }
    }
    return pd__op_reap(op);
}

/* --- extended slots: multishot requests and provided buffers --- */

/* Cancels by fd and user_data together (Linux 6.6); liburing 2.3 lacks it. */
#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)
#endif

/* Gives buffer bid back to g's ring and wakes the slots parked on g. */
static void pd__buf_put(pd_bufgroup *g, uint16_t bid)
{
    io_uring_buf_ring_add(g->br, g->base + (size_t)bid * g->size,
                          (unsigned)g->size, bid,
                          io_uring_buf_ring_mask(g->count), 0);
    io_uring_buf_ring_advance(g->br, 1);
    g->held--;
    while (g->waiters) {
        pd__mop *w = g->waiters;

        g->waiters = w->wnext;
        w->wnext = NULL;
        w->parked = 0;
        pd__wake(w->op.task);
    }
}

void pd_buf_release(pd_buf *b)
{
    if (b->group == NULL)
        return;
    pd__buf_put(b->group, b->id);
    *b = PD_BUF_EMPTY;
}

void pd__buf_keep(pd_buf *dst, pd_buf *src)
{
    pd_buf_release(dst);
    *dst = *src;
    *src = PD_BUF_EMPTY;
}

/* Releases a completion nobody will see: its fd is closed, its buffer returned. */
static void pd__mop_release(pd__mop *m, pd__cqe c)
{
    if (m->op.fdret && c.res >= 0)
        close(c.res);
    if (c.flags & IORING_CQE_F_BUFFER)
        pd__buf_put(m->group, (uint16_t)(c.flags >> IORING_CQE_BUFFER_SHIFT));
}

int pd__mop_pop(pd__mop *m, pd__cqe *c)
{
    if (m->qlen) {
        *c = m->q[m->qhead];
        m->qhead = (uint8_t)((m->qhead + 1) % PD__MOP_Q);
        m->qlen--;
        return 1;
    }
    if (m->ovf) {
        struct pd__ovf *o = m->ovf;

        *c = o->c;
        m->ovf = o->next;
        free(o);
        return 1;
    }
    return 0;
}

/* Keeps a completion for the owner; out of line only when forced to. */
static void pd__mop_push(pd_runtime *rt, pd__mop *m, pd__cqe c)
{
    struct pd__ovf *o, **pp;

    if (m->ovf == NULL && m->qlen < PD__MOP_Q) {
        m->q[(m->qhead + m->qlen) % PD__MOP_Q] = c;
        m->qlen++;
        return;
    }
    o = malloc(sizeof(*o));
    if (o == NULL) {
        fprintf(stderr, "polldrop: out of memory keeping a completion during "
                        "a sync drop\n");
        abort();
    }
    o->next = NULL;
    o->c = c;
    for (pp = &m->ovf; *pp; pp = &(*pp)->next)
        ;
    *pp = o;
    rt->stats.cqe_overflow++;
}

/* One completion the slot was owed has been reaped. */
static void pd__mop_unpend(pd_runtime *rt, pd__mop *m)
{
    if (--m->op.pending == 0) {
        m->op.st = PD__OP_IDLE;
        rt->stats.ops_completed++;
        pd__wake(m->op.task);
    }
}

static int pd__mop_dispatch(pd_runtime *rt, pd__mop *m,
                            const struct io_uring_cqe *cqe, unsigned tag,
                            int force)
{
    pd__cqe c = { cqe->res, cqe->flags };

    if (tag != 0)
        pd__checked_cqe(cqe);
    if (tag == PD__TAG_CANCEL) {
        /*
         * The cancel missed (multishot requests can be between two
         * completions, liburing #1375; and Linux 6.0-6.4 answer -ENOENT
         * even when they do end the request). While the request is still
         * armed, the owner cancels again on its next poll, by fd and
         * user_data from the second try on.
         */
        if (c.res == -EINVAL && m->tries > 1)
            rt->no_cancel_fd = 1;
        if (c.res < 0 && m->armed) {
            m->op.cancelled = 0;
            pd__wake(m->op.task);
        }
        pd__mop_unpend(rt, m);
        return 0;
    }
    if (tag == PD__TAG_TIMEOUT) {
        pd__mop_unpend(rt, m);
        return 0;
    }
    if (!m->discard && !force && (m->qlen == PD__MOP_Q || m->ovf != NULL))
        return 1;
    pd__checked_cqe(cqe);
    if (c.flags & IORING_CQE_F_BUFFER) {
        m->group->held++;
        if (c.res > 0)
            PD__KERNEL_WROTE(m->group->base + (size_t)(c.flags >> IORING_CQE_BUFFER_SHIFT) *
                             m->group->size, (size_t)c.res);
    }
    if (!(c.flags & IORING_CQE_F_MORE)) {
        m->armed = 0;
        if (m->group != NULL)
            m->group->armed--;
    }
    if (m->discard)
        pd__mop_release(m, c);
    else
        pd__mop_push(rt, m, c);
    pd__wake(m->op.task);
    if (!(c.flags & IORING_CQE_F_MORE))
        pd__mop_unpend(rt, m);
    return 0;
}

struct io_uring_sqe *pd__mop_sqe(pd_cx *cx, pd__mop *m, int fd, int multi,
                                 pd_bufgroup *g, uint8_t fdret)
{
    struct io_uring_sqe *sqe;

    m->group = g;
    m->wnext = NULL;
    m->ovf = NULL;
    m->fd = fd;
    m->qhead = m->qlen = 0;
    m->armed = m->parked = m->discard = m->tries = m->stop = 0;
    m->multi = (uint8_t)multi;
    if (g != NULL && g->held >= g->count) {
        /* Parked: pd__buf_put wakes the owner, whose poll arms again. */
        m->op = (pd__op){ .task = cx->task, .fdret = fdret };
        m->parked = 1;
        m->wnext = g->waiters;
        g->waiters = m;
        cx->link_ts = NULL;
        return NULL;
    }
    sqe = pd__op_sqe(cx, &m->op, fdret);
    if (sqe == NULL) {
        /* The ring is broken: the error is the request's only completion. */
        m->op.st = PD__OP_IDLE;
        m->q[0] = (pd__cqe){ m->op.res, 0 };
        m->qlen = 1;
        return NULL;
    }
    m->armed = 1;
    if (g != NULL)
        g->armed++;
    return sqe;
}

static void pd__mop_unpark(pd__mop *m)
{
    pd__mop **pp;

    if (!m->parked)
        return;
    for (pp = &m->group->waiters; *pp; pp = &(*pp)->wnext)
        if (*pp == m) {
            *pp = m->wnext;
            break;
        }
    m->wnext = NULL;
    m->parked = 0;
}

/* Releases every completion the slot holds. */
static void pd__mop_drain(pd__mop *m)
{
    pd__cqe c;

    while (pd__mop_pop(m, &c))
        pd__mop_release(m, c);
}

void pd__mop_reap(pd__mop *m)
{
    pd__checked_release(&m->op);
    pd__mop_drain(m);
}

/* Asks the kernel to end m's request, once per try; see pd__mop_cancel. */
static void pd__mop_cancel_send(pd__mop *m)
{
    pd_runtime *rt = m->op.task->rt;
    struct io_uring_sqe *sqe;

    if (!m->armed || m->op.cancelled)
        return;
    if (PD__UNLIKELY(pd__sq_full(rt))) {
        if (pd__sq_room(rt, 1) < 0) {
            pd__wake(m->op.task); /* retried on the owner's next poll */
            return;
        }
        /*
         * Making room reaped: the request may have ended meanwhile, and a
         * cancel for it would be owed a result nobody counts on.
         */
        if (!m->armed)
            return;
    }
    sqe = pd__sq_claim(rt);
    if (m->tries > 0 && !rt->no_cancel_fd) {
        io_uring_prep_cancel_fd(sqe, m->fd, IORING_ASYNC_CANCEL_USERDATA);
        sqe->addr = (uint64_t)(uintptr_t)m | PD__TAG_EXT;
    } else {
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)m | PD__TAG_EXT, 0);
    }
    /* No CQE_SKIP_SUCCESS: the result says whether to cancel again. */
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)m | PD__TAG_EXT |
                                 PD__TAG_CANCEL);
    m->op.pending++;
    pd__checked_owe(&m->op);
    m->op.cancelled = 1;
    m->tries++;
    rt->stats.cancels_submitted++;
    rt->cancel_tw = 1;
}

void pd__mop_cancel(pd__mop *m)
{
    /* From now on nothing reaches a then: what is queued goes back now. */
    m->discard = 1;
    pd__mop_drain(m);
    pd__mop_unpark(m);
    pd__mop_cancel_send(m);
}

/*
 * STOP() in a multishot then: the request is cancelled, but the future
 * stays in its state and every completion the kernel still posts is
 * delivered to then as usual, the last one without IORING_CQE_F_MORE. A
 * cancel that misses is sent again by pd__mop_restop, on the owner's poll.
 */
void pd__mop_stop(pd__mop *m)
{
    m->stop = 1;
    pd__mop_cancel_send(m);
}

int pd__mop_quiesce_sync(pd__mop *m)
{
    pd_runtime *rt = m->op.task->rt;

    pd__mop_cancel(m);
    while (m->op.pending) {
        int ret;

        pd__mop_cancel(m);
        rt->stats.enter_calls++;
        ret = pd__eng_enter(rt, 1, NULL);
        pd__reap(rt, 1);
        pd__sync_check(ret);
    }
    pd__mop_reap(m);
    return 0;
}

/* --- buffer groups --- */

#define PD__BUF_RING_MAX 32768u

/*
 * A group id for a new group: the one freed last, or a new one. The stack
 * of freed ids always has room for every id given out, so that freeing a
 * group never needs memory. Returns 0, -ENOSPC once the 65536 ids are all
 * in use, or -ENOMEM.
 */
static int pd__bgid_take(pd_runtime *rt, unsigned *bgid)
{
    if (rt->bgids_free > 0) {
        *bgid = rt->bgid_free[--rt->bgids_free];
        return 0;
    }
    if (rt->bgid_next > UINT16_MAX)
        return -ENOSPC;
    /* Room doubles at each power of two: O(1) amortised. */
    if ((rt->bgid_next & (rt->bgid_next - 1)) == 0) {
        size_t room = rt->bgid_next ? 2 * (size_t)rt->bgid_next : 1;
        uint16_t *s = realloc(rt->bgid_free, room * sizeof(*s));

        if (s == NULL)
            return -ENOMEM;
        rt->bgid_free = s;
    }
    *bgid = rt->bgid_next++;
    return 0;
}

/*
 * Gives a group id back. Once no group is left, ids start again from 0 and
 * the stack goes, so that a runtime without groups holds no memory for it.
 */
static void pd__bgid_put(pd_runtime *rt, unsigned bgid)
{
    rt->bgid_free[rt->bgids_free++] = (uint16_t)bgid;
    if (rt->groups == NULL && rt->bgids_free == rt->bgid_next) {
        free(rt->bgid_free);
        rt->bgid_free = NULL;
        rt->bgids_free = rt->bgid_next = 0;
    }
}

int pd_bufgroup_new(pd_runtime *rt, unsigned count, size_t size,
                    pd_bufgroup **out)
{
    long page = sysconf(_SC_PAGESIZE);
    pd_bufgroup *g;
    unsigned bgid, i;
    void *br = NULL, *base = NULL;
    int ret;

    *out = NULL;
    if (count == 0 || count > PD__BUF_RING_MAX || (count & (count - 1)) ||
        size == 0 || size > UINT32_MAX || size > SIZE_MAX / count)
        return -EINVAL;
    ret = pd__bgid_take(rt, &bgid);
    if (ret < 0)
        return ret;
    g = calloc(1, sizeof(*g));
    if (g == NULL ||
        posix_memalign(&br, (size_t)(page > 0 ? page : 4096),
                       count * sizeof(struct io_uring_buf)) != 0 ||
        posix_memalign(&base, 64, count * size) != 0) {
        free(br);
        free(g);
        pd__bgid_put(rt, bgid);
        return -ENOMEM;
    }
    io_uring_buf_ring_init(br);
    ret = pd__eng_reg_buf_ring(rt, br, count, (uint16_t)bgid);
    if (ret < 0) {
        free(base);
        free(br);
        free(g);
        pd__bgid_put(rt, bgid);
        return ret;
    }
    g->rt = rt;
    g->br = br;
    g->base = base;
    g->size = size;
    g->count = count;
    g->bgid = (uint16_t)bgid;
    for (i = 0; i < count; i++)
        io_uring_buf_ring_add(g->br, g->base + (size_t)i * size,
                              (unsigned)size, (unsigned short)i,
                              io_uring_buf_ring_mask(count), (int)i);
    io_uring_buf_ring_advance(g->br, (int)count);
    g->next = rt->groups;
    rt->groups = g;
    *out = g;
    return 0;
}

static void pd__bufgroup_destroy(pd_bufgroup *g)
{
    pd_bufgroup **pp;

    for (pp = &g->rt->groups; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    pd__eng_unreg_buf_ring(g->rt, g->bgid);
    pd__bgid_put(g->rt, g->bgid);
    free(g->base);
    free(g->br);
    free(g);
}

void pd_bufgroup_free(pd_bufgroup *g)
{
    if (g == NULL)
        return;
    if (g->held != 0 || g->armed != 0 || g->waiters != NULL) {
        fprintf(stderr, "polldrop: pd_bufgroup_free: group %u still in use "
                        "(%u buffers held, %u recvs armed on it%s)\n", g->bgid,
                g->held, g->armed, g->waiters ? ", a recv waiting for one" : "");
        abort();
    }
    pd__bufgroup_destroy(g);
}

unsigned pd_bufgroup_available(const pd_bufgroup *g)
{
    return g->count - g->held;
}

/* --- tasks --- */

/* Whether t's future is still to be destroyed (by the runtime or pd_runtime_free). */
static int pd__task_live(const pd_task *t)
{
    return (t->state == PD_TASK_RUNNING || t->state == PD_TASK_DROPPING) &&
           !(t->flags & PD__TASK_FREED_DROP);
}

static void pd__live_link(pd_runtime *rt, pd_task *t)
{
    t->live_prev = NULL;
    t->live_next = rt->live_head;
    if (rt->live_head)
        rt->live_head->live_prev = t;
    rt->live_head = t;
    rt->stats.live_tasks++;
}

static void pd__live_unlink(pd_runtime *rt, pd_task *t)
{
    if (t->live_prev)
        t->live_prev->live_next = t->live_next;
    else
        rt->live_head = t->live_next;
    if (t->live_next)
        t->live_next->live_prev = t->live_prev;
    t->live_prev = t->live_next = NULL;
    rt->stats.live_tasks--;
}

/* Removes t from the ready queue; linear, used only off the hot path. */
static void pd__unqueue(pd_runtime *rt, pd_task *t)
{
    pd_task **pp = &rt->ready_head;

    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = t->next;
        if (rt->ready_tailp == &t->next)
            rt->ready_tailp = pp;
    }
    t->queued = 0;
}

/*
 * Frees t if nothing can reach it any more: no reference, not on the ready
 * queue, and not pd_block_on's stack task. Callers must have made sure its
 * future is destroyed (or was never started).
 */
static void pd__task_free_if_unused(pd_task *t)
{
    if (t->refs == 0 && !t->queued && !(t->flags & PD__TASK_ROOT)) {
        pd__checked_freeing(t->self, t->vt->size);
        pd__task_release_mem(t);
    }
}

static void pd__task_unref(pd_task *t)
{
    t->refs--;
    pd__task_free_if_unused(t);
}

/*
 * Forces t's async drop (a shutdown deadline passed): generated poll_drop
 * sees PD__TASK_FORCED through pd__forced and skips the rest of teardown.
 */
static void pd__task_force(pd_runtime *rt, pd_task *t)
{
    if (t->flags & PD__TASK_FORCED)
        return;
    t->flags |= PD__TASK_FORCED;
    t->state = PD_TASK_DROPPING;
    rt->stats.tasks_forced++;
    pd__wake(t);
}

pd_task *pd_task_new(pd_runtime *rt, const pd_vtable *vt, void **self)
{
    size_t align = vt->align > alignof(max_align_t) ? vt->align
                                                     : alignof(max_align_t);
    size_t head = (sizeof(pd_task) + align - 1) & ~(align - 1);
    size_t body = (vt->size + alignof(max_align_t) - 1) &
                  ~(alignof(max_align_t) - 1);
    pd_task *t;
    void *mem;

    if (posix_memalign(&mem, align, head + body + vt->out_size) != 0)
        return NULL;
    t = mem;
    memset(t, 0, sizeof(*t));
    t->rt = rt;
    t->vt = vt;
    t->self = (char *)mem + head;
    t->out = vt->out_size ? (char *)mem + head + body : NULL;
    t->refs = 1;
    t->state = PD_TASK_RUNNING;
    *self = t->self;
    return t;
}

void pd_task_start(pd_task *t)
{
    pd_runtime *rt = t->rt;

    pd__owner_check(rt, "pd_task_start");
    if (t->flags & PD__TASK_STARTED)
        return;
    t->flags |= PD__TASK_STARTED;
    t->refs++;
    pd__live_link(rt, t);
    if (rt->shutting_down || (t->flags & PD__TASK_CANCEL))
        t->state = PD_TASK_DROPPING;
    if (PD__UNLIKELY(rt->forcing))
        pd__task_force(rt, t);
    pd__wake(t);
}

/* pd_task_cancel without the caller's checks: the runtime's own shutdown. */
static void pd__task_cancel(pd_task *t)
{
    if (!(t->flags & PD__TASK_STARTED)) {
        t->flags |= PD__TASK_CANCEL;
        return;
    }
    if (t->state != PD_TASK_RUNNING)
        return;
    t->state = PD_TASK_DROPPING;
    pd__wake(t);
}

void pd_task_cancel(pd_task *t)
{
    pd__task_check(t, "pd_task_cancel");
    pd__owner_check(t->rt, "pd_task_cancel");
    pd__task_cancel(t);
}

int pd_task_state(const pd_task *t)
{
    pd__task_check(t, "pd_task_state");
    return t->state;
}

const void *pd_task_output(const pd_task *t)
{
    pd__task_check(t, "pd_task_output");
    if (t->state != PD_TASK_DONE)
        return NULL;
    return t->out ? t->out : (const void *)t;
}

void pd_task_release(pd_task *t)
{
    pd__task_check(t, "pd_task_release");
#ifdef PD_CHECKED
    if (t->released)
        pd__misuse(t->vt->name, pd__task_states[t->state & 3],
                   "pd_task_release twice: the caller's reference was already released");
#endif
    t->released = 1;
    pd__task_unref(t);
}

/* The task's future is destroyed: it leaves the live set. */
static void pd__task_finish(pd_runtime *rt, pd_task *t)
{
    t->state = t->has_output ? PD_TASK_DONE : PD_TASK_CANCELLED;
    if (t->waiter)
        pd__wake(t->waiter);
    pd__live_unlink(rt, t);
    if (rt->live_head == NULL) {
        /* The shutdown is over; a deadline nobody reached is forgotten. */
        rt->shutting_down = 0;
        rt->forcing = 0;
        rt->deadline_armed = 0;
    }
}

/* Forces every live task once the shutdown deadline has passed. */
static void pd__deadline_check(pd_runtime *rt)
{
    pd_task *t;

    if (pd__now_ns() < rt->deadline_ns)
        return;
    rt->deadline_armed = 0;
    rt->forcing = 1;
    for (t = rt->live_head; t; t = t->live_next)
        pd__task_force(rt, t);
}

/*
 * Polls t once. Returns 1 if its future was destroyed by this poll; the
 * caller then drops the runtime's reference (not before: t is still in use).
 * Returns 2 if it had finished before (it was queued twice over a finish).
 */
static int pd__task_poll(pd_runtime *rt, pd_cx *cx, pd_task *t)
{
    cx->task = t;
    if (PD__LIKELY(t->state == PD_TASK_RUNNING)) {
        if (t->vt->poll(t->self, cx, t->out) == PD_PENDING)
            return 0;
        t->has_output = 1;
        t->state = PD_TASK_DROPPING;
    } else if (t->state != PD_TASK_DROPPING) {
        return 2;
    }
    if (t->vt->poll_drop(t->self, cx) == PD_PENDING)
        return 0;
    pd__task_finish(rt, t);
    return 1;
}

/*
 * Detects a run that can never progress: nothing queued, no wake to look
 * at, nothing in flight.
 */
static int pd__stuck(const pd_runtime *rt)
{
    return rt->ready_head == NULL && !rt->remote_pending &&
           rt->stats.ops_submitted == rt->stats.ops_completed;
}

static void pd__shutdown_begin(pd_runtime *rt);
static void pd__deadline_arm(pd_runtime *rt, int64_t at_ns);

/*
 * A wake arrived: starts the tasks other threads sent here, oldest first,
 * then the shutdown they asked for, so that a task sent before the request
 * is cancelled with the rest.
 */
static void pd__remote(pd_runtime *rt)
{
    pd_task *t, *fifo = NULL;

    rt->remote_pending = 0;
    /*
     * wake_sent was cleared when the wake's read completed, before the
     * inbox is read here: a sender whose wake was merged into that one had
     * pushed its task already, and a later sender sends a new wake.
     */
    t = atomic_exchange(&rt->inbox, NULL);
    while (t) {
        pd_task *next = t->next;

        t->next = fifo;
        fifo = t;
        t = next;
    }
    while ((t = fifo) != NULL) {
        fifo = t->next;
        pd_task_start(t);
    }
    if (atomic_load_explicit(&rt->shutdown_asked, memory_order_relaxed) &&
        atomic_exchange(&rt->shutdown_asked, 0)) {
        int64_t at = atomic_exchange(&rt->shutdown_at_ns, INT64_MAX);

        pd__shutdown_begin(rt);
        if (at != INT64_MAX)
            pd__deadline_arm(rt, at);
    }
}

int pd__run_polls(pd_runtime *rt)
{
    pd_cx cx = { rt, NULL, NULL };
    pd_task *batch;
    int n = 0;

    pd__owner_check(rt, "running its loop (pd_run, pd_run_once, pd_block_on)");
    if (rt->in_turn)
        return -EBUSY;
    /* Before the batch is taken: both wake the tasks they start or force. */
    if (PD__UNLIKELY(rt->remote_pending))
        pd__remote(rt);
    if (PD__UNLIKELY(rt->deadline_armed))
        pd__deadline_check(rt);
    batch = rt->ready_head;
    rt->in_turn = 1;
    /* Tasks woken while this batch runs are polled next turn (fairness). */
    rt->ready_head = NULL;
    rt->ready_tailp = &rt->ready_head;
    while (batch) {
        pd_task *t = batch;

        batch = t->next;
        t->queued = 0;
        n++;
        switch (pd__task_poll(rt, &cx, t)) {
        case 0:
            break;
        case 1:
            pd__task_unref(t);
            break;
        default:
            pd__task_free_if_unused(t); /* finished earlier while queued */
            break;
        }
    }
    rt->in_turn = 0;
    rt->stats.polls += (unsigned)n;
    return n;
}

int pd__run_enter(pd_runtime *rt, int wait)
{
    return pd__enter(rt, wait && rt->ready_head == NULL && !pd__stuck(rt));
}

int pd__ring_wait_cqe(pd_runtime *rt)
{
    int ret;

    rt->stats.enter_calls++;
    do
        ret = pd__eng_wait(rt, NULL);
    while (ret == -EINTR);
    return ret;
}

pd_poll pd__task_poll_drop(pd_task *t)
{
    pd_cx cx = { t->rt, t, NULL };

    return t->vt->poll_drop(t->self, &cx);
}

int pd__ring_submit(pd_runtime *rt)
{
    int ret;

    rt->stats.enter_calls++;
    do
        ret = pd__eng_submit(rt);
    while (ret == -EINTR);
    return ret;
}

int pd__ring_submit_wait(pd_runtime *rt, unsigned wait_nr)
{
    rt->stats.enter_calls++;
    return pd__eng_enter(rt, wait_nr, NULL);
}

int pd__ring_reap_one(pd_runtime *rt)
{
    struct io_uring_cqe *cqe;

    if (io_uring_peek_cqe(&rt->ring, &cqe) != 0 || pd__dispatch(rt, cqe, 0))
        return 0;
    io_uring_cqe_seen(&rt->ring, cqe);
    return 1;
}

void (*pd__group_freeing)(const pd_bufgroup *g);

int pd__ring_strays(pd_runtime *rt, const void *mem, size_t len, unsigned ms)
{
    uintptr_t lo = (uintptr_t)mem;
    int strays = 0;

    for (;;) {
        struct __kernel_timespec ts = { ms / 1000, (long long)(ms % 1000) * 1000000 };
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int ret;

        rt->stats.enter_calls++;
        ret = pd__eng_wait(rt, &ts);
        if (ret == -ETIME)
            return strays;
        if (ret < 0 && ret != -EINTR)
            return ret;
        io_uring_for_each_cqe(&rt->ring, head, cqe) {
            uintptr_t a = (uintptr_t)(cqe->user_data & ~(uint64_t)7);

            /* Never dispatched: the slot it names belongs to the dead future. */
            if (cqe->user_data >= PD__UD_RESERVED && a >= lo && a - lo < len)
                strays++;
            else
                pd__dispatch(rt, cqe, 1);
            n++;
        }
        io_uring_cq_advance(&rt->ring, n);
    }
}

/* Whether t's future is destroyed: what pd_block_on and pd_task_wait wait for. */
static int pd__task_over(const pd_task *t)
{
    return t->state == PD_TASK_DONE || t->state == PD_TASK_CANCELLED;
}

/*
 * One turn toward a goal, the end of task goal: polls the tasks that are
 * ready, then submits and reaps, and waits for a completion only while goal
 * is not over. The polls may have finished it, so whether to wait is
 * decided after them (as libuv's uv_run computes its timeout after running
 * its callbacks): a wait decided before would last until some other task's
 * request completed, a one-hour timer's included. Returns 0 or -errno.
 */
static int pd__turn_for(pd_runtime *rt, const pd_task *goal)
{
    int ret = pd__run_polls(rt);

    if (ret < 0)
        return ret;
    return pd__run_enter(rt, !pd__task_over(goal));
}

int pd_run_once(pd_runtime *rt, int wait)
{
    int ret = pd__run_polls(rt);

    if (ret < 0)
        return ret;
    ret = pd__run_enter(rt, wait);
    if (ret < 0)
        return ret;
    return (int)rt->stats.live_tasks;
}

int pd_task_wait(pd_task *t)
{
    pd_runtime *rt = t->rt;

    pd__task_check(t, "pd_task_wait");
    if (rt->in_turn)
        return -EBUSY;
    pd__owner_check(rt, "pd_task_wait");
    if (!(t->flags & PD__TASK_STARTED))
        return -EINVAL;
    while (!pd__task_over(t)) {
        int ret;

        if (pd__stuck(rt))
            return -EDEADLK;
        ret = pd__turn_for(rt, t);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int pd_run(pd_runtime *rt)
{
    if (rt->in_turn)
        return -EBUSY;
    for (;;) {
        int ret;

        if (rt->live_head == NULL && !rt->remote_pending) {
            /*
             * Nothing live, but tasks may have been sent here before the
             * wake was read: start them rather than return.
             */
            if (atomic_load_explicit(&rt->inbox, memory_order_relaxed) == NULL &&
                !atomic_load_explicit(&rt->shutdown_asked, memory_order_relaxed))
                return 0;
            rt->remote_pending = 1;
        }
        if (pd__stuck(rt))
            return -EDEADLK;
        ret = pd_run_once(rt, 1);
        if (ret < 0)
            return ret;
    }
}

int pd_block_on(pd_runtime *rt, pd_dyn fut, void *out)
{
    pd_task root;
    int ret = 0;

    if (rt->in_turn) {
        /* Refused, but the contract holds: fut is destroyed on return. */
        fut.vt->drop(fut.self);
        return -EBUSY;
    }
    memset(&root, 0, sizeof(root));
    root.rt = rt;
    root.vt = fut.vt;
    root.self = fut.self;
    root.out = out;
    root.refs = 1;
    root.state = PD_TASK_RUNNING;
    root.flags = PD__TASK_ROOT;
    pd_task_start(&root);
    while (root.state == PD_TASK_RUNNING || root.state == PD_TASK_DROPPING) {
        if (pd__stuck(rt)) {
            /*
             * Nothing can wake the future again. Destroy it anyway so that
             * it is never left half-alive on the caller's stack.
             */
            fut.vt->drop(fut.self);
            pd__live_unlink(rt, &root);
            return -EDEADLK;
        }
        ret = pd__turn_for(rt, &root);
        if (ret < 0) {
            fut.vt->drop(fut.self);
            if (root.queued)
                pd__unqueue(rt, &root);
            pd__live_unlink(rt, &root);
            return ret;
        }
    }
    if (root.queued)
        pd__unqueue(rt, &root);
    pd__checked_freeing(fut.self, fut.vt->size); /* the caller's memory again */
    return root.state == PD_TASK_DONE ? 0 : -ECANCELED;
}

/* Cancels every live task; the shutdown lasts until none is left. */
static void pd__shutdown_begin(pd_runtime *rt)
{
    pd_task *t;

    if (rt->live_head == NULL)
        return;
    rt->shutting_down = 1;
    for (t = rt->live_head; t; t = t->live_next)
        pd__task_cancel(t);
}

int pd_shutdown(pd_runtime *rt)
{
    pd__shutdown_begin(rt);
    if (rt->in_turn)
        return 0;
    return pd_run(rt);
}

/* Arms the shutdown deadline at the absolute time at_ns, unless one is earlier. */
static void pd__deadline_arm(pd_runtime *rt, int64_t at_ns)
{
    if (rt->live_head == NULL)
        return;
    if (!rt->forcing && (!rt->deadline_armed || at_ns < rt->deadline_ns)) {
        rt->deadline_ns = at_ns;
        rt->deadline_armed = 1;
    }
    pd__deadline_check(rt);
}

/* now + ms, saturated: a deadline centuries away is no deadline. */
static int64_t pd__deadline_at(long long ms)
{
    int64_t now = pd__now_ns();

    if (ms > (INT64_MAX - now) / 1000000)
        return INT64_MAX;
    return now + (int64_t)ms * 1000000;
}

int pd_shutdown_deadline(pd_runtime *rt, long long ms)
{
    if (ms < 0)
        return -EINVAL;
    pd__shutdown_begin(rt);
    pd__deadline_arm(rt, pd__deadline_at(ms));
    if (rt->in_turn)
        return 0;
    return pd_run(rt);
}

long long pd_clock_ms(void)
{
    return (long long)(pd__now_ns() / 1000000);
}

void pd_runtime_stats(const pd_runtime *rt, pd_stats *s)
{
    *s = rt->stats;
    s->inflight_ops = rt->stats.ops_submitted - rt->stats.ops_completed;
}

void pd_runtime_free(pd_runtime *rt)
{
    pd_task *t;

    if (!rt)
        return;
    if (rt->in_turn) {
        /* Freeing would pull the task being polled from under its poll. */
        fprintf(stderr, "polldrop: pd_runtime_free called from inside a task: "
                        "ignored (free the runtime after pd_run returns)\n");
        return;
    }
    /* Tasks sent here but never started: initialised, so dropped once. */
    t = atomic_exchange(&rt->inbox, NULL);
    while (t) {
        pd_task *next = t->next;

        t->vt->drop(t->self);
        pd__task_release_mem(t);
        t = next;
    }
    /*
     * Sync-drop first, so that every kernel-owned buffer comes back... A
     * task's future may destroy another task (a pd_join drops the task it
     * awaits): the flag, set first, keeps each from being destroyed twice.
     */
    for (t = rt->live_head; t; t = t->live_next)
        if (pd__task_live(t)) {
            t->flags |= PD__TASK_FREED_DROP;
            t->vt->drop(t->self);
        }
    /*
     * ...then free: nothing can touch the tasks any more. A task that
     * finished but is still queued leaves the queue: freed now if nobody
     * holds it, or by the caller's pd_task_release.
     */
    while ((t = rt->ready_head) != NULL) {
        rt->ready_head = t->next;
        t->queued = 0;
        if (t->state >= PD_TASK_DONE)
            pd__task_free_if_unused(t);
    }
    rt->ready_tailp = &rt->ready_head;
    pd__checked_ring_closing(rt);
    while ((t = rt->live_head) != NULL) {
        pd__live_unlink(rt, t);
        if (!(t->flags & PD__TASK_ROOT))
            pd__task_release_mem(t);
    }
    while (rt->groups) {
        if (pd__group_freeing)
            pd__group_freeing(rt->groups);
        pd__bufgroup_destroy(rt->groups);
    }
    pd__eng_exit(rt);
    close(rt->wake_fd);
    free(rt);
}

/* --- arrays of child futures --- */

int pd__arr_active(const uint8_t *cs, unsigned n)
{
    unsigned i;
    int k = 0;

    for (i = 0; i < n; i++)
        k += !pd__arr_idle(cs, (int)i);
    return k;
}

int pd__arr_poll(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids,
                 void *outs, pd_cx *cx, int *busy)
{
    unsigned i;
    int w = -1;

    for (i = 0; i < n; i++) {
        if (cs[i] == PD__CH_IDLE || (cs[i] & PD__CH_SEEN))
            continue;
        if (!pd__child_poll(&cs[i], vt, (char *)kids + i * vt->size, cx,
                            (char *)outs + i * vt->out_size))
            *busy = 1;
        else if (w < 0)
            w = (int)i;
    }
    return w;
}

int pd__arr_quiesce(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids,
                    void *outs, pd_cx *cx, int keep)
{
    unsigned i;
    int done = 1;

    /* Last first, as a state's children are quiesced. */
    for (i = n; i-- > 0;) {
        if ((int)i == keep || cs[i] == PD__CH_IDLE || (cs[i] & PD__CH_SEEN))
            continue;
        pd__child_cancel(&cs[i]);
        if (!pd__child_poll(&cs[i], vt, (char *)kids + i * vt->size, cx,
                            (char *)outs + i * vt->out_size))
            done = 0;
    }
    return done;
}

void pd__arr_seen(uint8_t *cs, unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if ((cs[i] & 3) == PD__CH_DONE)
            cs[i] |= PD__CH_SEEN;
}

void pd__arr_drop_sync(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids)
{
    unsigned i;

    for (i = n; i-- > 0;)
        if (cs[i] != PD__CH_IDLE && !(cs[i] & PD__CH_SEEN))
            pd__child_drop_sync(&cs[i], vt, (char *)kids + i * vt->size);
}

void pd__arr_misuse(const char *future, const char *array, int i, int n)
{
    if (i < 0 || i >= n)
        fprintf(stderr, "polldrop: %s: START(%s, %d): no such member (the array "
                "has %d)\n", future, array, i, n);
    else
        fprintf(stderr, "polldrop: %s: START(%s, %d): member %d is still running "
                "(start a member only when IDLE(%s, %d))\n", future, array, i, i,
                array, i);
    abort();
}

/* --- pd_join: awaiting a spawned task --- */

void pd_join_init(pd_join *j, pd_task *task, void *out)
{
    j->task = task;
    j->out = out;
}


static pd_poll pd__join_poll(void *self, pd_cx *cx, void *out)
{
    pd_join *j = self;
    pd_task *t = j->task;
    int r;

    if (t == NULL) {
        r = -ENOMEM;
    } else if (pd__task_live(t)) {
        t->waiter = cx->task;
        return PD_PENDING;
    } else if (t->state == PD_TASK_DONE) {
        if (j->out && t->vt->out_size)
            memcpy(j->out, t->out, t->vt->out_size);
        r = 0;
    } else {
        r = -ECANCELED;
    }
    if (out)
        *(int *)out = r;
    return PD_READY;
}

/* The task is over: the handle gives up its reference. */
static void pd__join_release(pd_join *j)
{
    j->task->waiter = NULL;
    pd_task_release(j->task);
    j->task = NULL;
}

static pd_poll pd__join_poll_drop(void *self, pd_cx *cx)
{
    pd_join *j = self;
    pd_task *t = j->task;

    if (t == NULL)
        return PD_READY;
    if (pd__task_live(t)) {
        /* Cancelled, and awaited until its async drop is over. */
        pd__task_cancel(t);
        t->waiter = cx->task;
        return PD_PENDING;
    }
    pd__join_release(j);
    return PD_READY;
}

/*
 * Sync-drops a live task's future and finishes the task, so that the
 * runtime never destroys it again; a task whose future was destroyed
 * already is left alone. Destroyed here rather than by the runtime's poll,
 * which would have dropped the runtime's reference: so this drops it. A
 * task still on the ready queue is freed when the queue reaches it.
 */
void pd__task_drop_sync(pd_task *t)
{
    if (!pd__task_live(t))
        return;
    t->vt->drop(t->self);
    if (t->flags & PD__TASK_STARTED) {
        pd__task_finish(t->rt, t);
        t->refs--;
    } else {
        t->state = PD_TASK_CANCELLED;
    }
}

static void pd__join_drop(void *self)
{
    pd_join *j = self;
    pd_task *t = j->task;

    if (t == NULL)
        return;
    pd__task_drop_sync(t);
    pd__join_release(j);
}

const pd_vtable pd_join_vtable = {
    .name = "pd_join",
    .size = sizeof(pd_join),
    .align = alignof(pd_join),
    .out_size = sizeof(pd_join_out),
    .poll = pd__join_poll,
    .poll_drop = pd__join_poll_drop,
    .drop = pd__join_drop,
};

/* --- pd_drop_async --- */

void pd_drop_async_init(pd_drop_async *f, pd_dyn victim)
{
    f->victim = victim;
    f->done = 0;
}

static pd_poll pd__drop_async_poll(void *self, pd_cx *cx, void *out)
{
    pd_drop_async *f = self;

    (void)out;
    if (!f->done) {
        if (f->victim.vt->poll_drop(f->victim.self, cx) == PD_PENDING)
            return PD_PENDING;
        f->done = 1;
    }
    return PD_READY;
}

static pd_poll pd__drop_async_poll_drop(void *self, pd_cx *cx)
{
    /* Dropping the dropper finishes the victim: destruction is not skipped. */
    return pd__drop_async_poll(self, cx, NULL);
}

static void pd__drop_async_drop(void *self)
{
    pd_drop_async *f = self;

    if (!f->done) {
        f->victim.vt->drop(f->victim.self);
        f->done = 1;
    }
}

const pd_vtable pd_drop_async_vtable = {
    .name = "pd_drop_async",
    .size = sizeof(pd_drop_async),
    .align = alignof(pd_drop_async),
    .out_size = 0,
    .poll = pd__drop_async_poll,
    .poll_drop = pd__drop_async_poll_drop,
    .drop = pd__drop_async_drop,
};

/* --- other threads --- */

int pd_runtime_wake(pd_runtime *target)
{
    /* One wake in flight is enough: the target reads everything on it. */
    if (atomic_exchange(&target->wake_sent, 1))
        return 0;
    return pd__wake_efd(target);
}

int pd_shutdown_remote(pd_runtime *target)
{
    atomic_store(&target->shutdown_asked, 1);
    return pd_runtime_wake(target);
}

int pd_shutdown_remote_deadline(pd_runtime *target, long long ms)
{
    int64_t at, cur;

    if (ms < 0)
        return -EINVAL;
    at = pd__deadline_at(ms);
    cur = atomic_load(&target->shutdown_at_ns);
    while (at < cur && !atomic_compare_exchange_weak(&target->shutdown_at_ns, &cur, at))
        ;
    return pd_shutdown_remote(target);
}

int pd__task_send(pd_task *t)
{
    pd_runtime *rt = t->rt;
    pd_task *head = atomic_load_explicit(&rt->inbox, memory_order_relaxed);

    /* The sender keeps no reference: the task is the target's from now on. */
    t->refs = 0;
    do
        t->next = head;
    while (!atomic_compare_exchange_weak_explicit(&rt->inbox, &head, t,
                                                  memory_order_release,
                                                  memory_order_relaxed));
    return pd_runtime_wake(rt);
}
