/*
 * The simulator engine: a deterministic "kernel" behind a pd_runtime's ring.
 *
 * One thread, no worker, no epoll instance. enter() consumes the SQEs in
 * order and starts each request for real (engine_sim_ops.c, with the epoll
 * engine's non-blocking attempts and file operations called synchronously).
 * A completion is not posted when it is made: it joins a pending list, and
 * a PRNG seeded once per runtime picks which eligible completion is posted
 * next. Completions made together by one event (the multishot completions
 * of one attempt, a cancel and what it stopped, an op and its linked
 * timeout) keep their order, and so do those of one user_data; any two
 * others may be posted in either order, which is what the kernel allows.
 * With faults on, a completion may also be held back for a few enters (a
 * delay the kernel produces when its task work runs late).
 *
 * Time is virtual. pd_clock_ms() and every timeout the engine runs read
 * `now`, which moves only when nothing else can: no completion pending, no
 * waiting fd ready (poll(2), zero timeout), no file op left. Then it jumps
 * to the earliest timer, or to the caller's wait limit. A one-hour timeout
 * completes in microseconds. Before a jump, when requests wait on fds, the
 * engine gives the outside world (other threads, other processes) up to
 * `quiet_ms` of real time to make one ready; a program whose fds only its
 * own tasks drive sees nothing come, and its runs are the same for a seed.
 *
 * This file: the PRNG, the pending list and its posting, the enter loop,
 * buffer rings, setup and the vtable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "polldrop.h"
#include "engine_sim.h"

/* The virtual clock pd_clock_ms reads on this thread (engine.h). */
__thread const int64_t *pd__sim_clock;

/* Where a simulated runtime's clock starts: 1000 s, the same every run. */
#define PD__SIM_EPOCH_NS (1000LL * 1000000000LL)
/* Real milliseconds given to the outside world before a jump (PD_SIM_QUIET_MS). */
#define PD__SIM_QUIET_MS 5
/* Completions the pending list holds from init without allocating. */
#define PD__SIM_MIN_PEND 4096u

/* --- the PRNG: xoshiro256**, seeded by splitmix64 --- */

static uint64_t pd__sim_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t pd__sim_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t pd__sim_next(pd__sim *s)
{
    uint64_t r = pd__sim_rotl(s->s[1] * 5, 7) * 9, t = s->s[1] << 17;

    s->s[2] ^= s->s[0];
    s->s[3] ^= s->s[1];
    s->s[1] ^= s->s[2];
    s->s[0] ^= s->s[3];
    s->s[2] ^= t;
    s->s[3] = pd__sim_rotl(s->s[3], 45);
    return r;
}

uint32_t pd__sim_below(pd__sim *s, uint32_t n)
{
    return (uint32_t)(((pd__sim_next(s) >> 32) * (uint64_t)n) >> 32);
}

int pd__sim_fault(pd__sim *s, uint32_t n)
{
    if (!s->faults || pd__sim_below(s, n) != 0)
        return 0;
    s->injected++;
    return 1;
}

int pd__sim_io_fault(pd__sim *s, uint32_t n)
{
    if (!pd__sim_fault(s, n))
        return 0;
    s->io_faults++;
    return 1;
}

uint64_t pd__sim_io_faults(const pd_runtime *rt)
{
    if (rt->engine == NULL || rt->engine_vt != &pd__engine_sim)
        return 0;
    return ((const pd__sim *)(const void *)rt->engine)->io_faults;
}

void pd__sim_overflows(const pd_runtime *rt, uint64_t *overflowed, uint64_t *busied)
{
    const pd__sim *s;

    *overflowed = *busied = 0;
    if (rt->engine == NULL || rt->engine_vt != &pd__engine_sim)
        return;
    s = (const pd__sim *)(const void *)rt->engine;
    *overflowed = s->overflowed;
    *busied = s->busied;
}

/* --- pending completions --- */

void pd__sim_batch_begin(pd__sim *s)
{
    s->batch_last = 0;
}

/*
 * Makes room for every completion that can still be made before the next
 * enter's reservation: what the live records and the nsqe requests about
 * to start can post (two each: a zero-copy send's result and
 * notification; a multishot request posts F_MORE completions only while
 * they fit the CQ beside what is pending, pd__sim_attempt, and then one
 * more that ends it), beyond what is pending or a CQ's worth, whichever is
 * more, in the pending list; and all of that again in the overflow list,
 * where each may go. Called by enter
 * before it consumes anything, so that adding and overflowing a
 * completion never allocate and never fail. Returns 0, or -ENOMEM with
 * the lists as they were (a list grown before the other failed keeps its
 * room).
 */
static int pd__sim_reserve(pd__sim *s, unsigned nsqe)
{
    size_t more = 2 * ((size_t)s->nlive + nsqe);
    size_t pend = (s->npend > s->m.cq_entries ? s->npend : s->m.cq_entries) + more;
    size_t ovf = (size_t)s->ovf_len + pend;
    unsigned cap;
    void *n;

    if (pend > s->cap_pend) {
        cap = pd__grow_cap(s->cap_pend, pend);
        if (cap == 0 || (n = realloc(s->pend, cap * sizeof(*s->pend))) == NULL)
            return -ENOMEM;
        s->pend = n;
        s->cap_pend = cap;
    }
    if (s->ovf_head + ovf > s->ovf_cap && s->ovf_head != 0) {
        memmove(s->ovf, s->ovf + s->ovf_head, s->ovf_len * sizeof(*s->ovf));
        s->ovf_head = 0;
    }
    if (ovf > s->ovf_cap) {
        cap = pd__grow_cap(s->ovf_cap, ovf);
        if (cap == 0 || (n = realloc(s->ovf, cap * sizeof(*s->ovf))) == NULL)
            return -ENOMEM;
        s->ovf = n;
        s->ovf_cap = cap;
    }
    return 0;
}

/*
 * A completion joins the pending list, after the previous one of its batch
 * and after the last pending one for the same user_data, in the room enter
 * reserved (pd__sim_reserve).
 */
void pd__sim_add(pd__sim *s, uint64_t ud, int32_t res, uint32_t flags)
{
    pd__sim_cqe *c;
    unsigned i;

    c = &s->pend[s->npend];
    c->ud = ud;
    c->res = res;
    c->flags = flags;
    c->seq = ++s->cqe_seq;
    c->after1 = s->batch_last;
    c->after2 = 0;
    for (i = s->npend; i-- > 0;)
        if (s->pend[i].ud == ud) {
            if (s->pend[i].seq != c->after1)
                c->after2 = s->pend[i].seq;
            break;
        }
    c->ready_at = s->enters;
    if (pd__sim_fault(s, 8))
        c->ready_at += 1 + pd__sim_below(s, 3);
    s->npend++;
    s->batch_last = c->seq;
}

void pd__sim_drain(pd__sim *s)
{
    pd__engine *e = s->ep;

    while (e->m.cq_khead != e->m.cq_ktail) {
        const struct io_uring_cqe *c = &e->m.cqes[e->m.cq_khead++ & e->m.cq_mask];

        pd__sim_add(s, c->user_data, c->res, c->flags);
    }
    while (e->ovf_len) {
        const struct io_uring_cqe *c = &e->ovf[e->ovf_head];

        pd__sim_add(s, c->user_data, c->res, c->flags);
        e->ovf_head = (e->ovf_head + 1) % e->ovf_cap;
        e->ovf_len--;
    }
    e->m.sq_kflags &= ~IORING_SQ_CQ_OVERFLOW;
}

/* Whether the completion numbered seq is still pending (the list is in seq order). */
static int pd__sim_unposted(const pd__sim *s, uint64_t seq)
{
    unsigned lo = 0, hi = s->npend;

    if (seq == 0)
        return 0;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;

        if (s->pend[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->npend && s->pend[lo].seq == seq;
}

static int pd__sim_eligible(const pd__sim *s, const pd__sim_cqe *c, int force)
{
    return (force || c->ready_at <= s->enters) && !pd__sim_unposted(s, c->after1) &&
           !pd__sim_unposted(s, c->after2);
}

static unsigned pd__sim_cq_ready(const pd__sim *s)
{
    return pd__umem_cq_ready(&s->m);
}

/*
 * Moves what the overflow list holds into the CQ, oldest first, while
 * there is room, as the kernel's flush does; IORING_SQ_CQ_OVERFLOW stays
 * set while anything is left.
 */
static void pd__sim_flush(pd__sim *s)
{
    while (s->ovf_len != 0 && pd__sim_cq_ready(s) < s->m.cq_entries) {
        s->m.cqes[s->m.cq_ktail & s->m.cq_mask] = s->ovf[s->ovf_head++];
        io_uring_smp_store_release(&s->m.cq_ktail, s->m.cq_ktail + 1);
        s->ovf_len--;
    }
    if (s->ovf_len == 0) {
        s->ovf_head = 0;
        IO_URING_WRITE_ONCE(s->m.sq_kflags, s->m.sq_kflags & ~IORING_SQ_CQ_OVERFLOW);
    }
}

/*
 * Appends a completion to the overflow list, in the room enter reserved
 * (pd__sim_reserve), and sets IORING_SQ_CQ_OVERFLOW.
 */
static void pd__sim_overflow(pd__sim *s, const pd__sim_cqe *c)
{
    struct io_uring_cqe *o;

    if (s->ovf_head + s->ovf_len == s->ovf_cap) {
        memmove(s->ovf, s->ovf + s->ovf_head, s->ovf_len * sizeof(*s->ovf));
        s->ovf_head = 0;
    }
    o = &s->ovf[s->ovf_head + s->ovf_len++];
    o->user_data = c->ud;
    o->res = c->res;
    o->flags = c->flags;
    IO_URING_WRITE_ONCE(s->m.sq_kflags, s->m.sq_kflags | IORING_SQ_CQ_OVERFLOW);
    s->overflowed++;
}

/*
 * Posts one eligible completion, picked by the PRNG among them: into the
 * CQ, or, when the CQ is full or older completions wait in the overflow
 * list, behind them (nothing is dropped, and nothing overtakes an
 * overflowed completion). Returns 0 when none is eligible.
 */
static int pd__sim_post_one(pd__sim *s, int force)
{
    struct io_uring_cqe *cq;
    unsigned i, n = 0, pick;

    for (i = 0; i < s->npend; i++)
        n += pd__sim_eligible(s, &s->pend[i], force);
    if (n == 0)
        return 0;
    pick = pd__sim_below(s, n);
    for (i = 0;; i++)
        if (pd__sim_eligible(s, &s->pend[i], force) && pick-- == 0)
            break;
    if (s->ovf_len != 0 || pd__sim_cq_ready(s) >= s->m.cq_entries) {
        pd__sim_overflow(s, &s->pend[i]);
    } else {
        cq = &s->m.cqes[s->m.cq_ktail & s->m.cq_mask];
        cq->user_data = s->pend[i].ud;
        cq->res = s->pend[i].res;
        cq->flags = s->pend[i].flags;
        io_uring_smp_store_release(&s->m.cq_ktail, s->m.cq_ktail + 1);
    }
    memmove(&s->pend[i], &s->pend[i + 1], (s->npend - i - 1) * sizeof(*s->pend));
    s->npend--;
    s->posted++;
    return 1;
}

/*
 * Flushes the overflow list, then posts every completion whose delay is
 * over, in the PRNG's order, then, while fewer than wait_nr are in the CQ,
 * delayed ones too.
 */
static void pd__sim_post(pd__sim *s, unsigned wait_nr)
{
    pd__sim_flush(s);
    while (pd__sim_post_one(s, 0))
        ;
    while (pd__sim_cq_ready(s) < wait_nr && pd__sim_post_one(s, 1))
        ;
}

/* --- the submission queue --- */

/*
 * Consumes the SQEs queued since the last call, in order, as the epoll
 * engine does: an op linked to an IORING_OP_LINK_TIMEOUT is one request
 * with a timeout; any other chain fails (-EOPNOTSUPP, then -ECANCELED).
 * With faults on, the seed may stop it early (never inside a request and
 * its linked timeout), as the kernel's submission stops when it runs out
 * of resources: the rest stay in the SQ, which can then fill up, and go
 * with the next enter. *partial says whether it stopped early.
 */
static unsigned pd__sim_consume(pd__sim *s, struct io_uring *ring, int *partial)
{
    unsigned head = ring->sq.sqe_head, tail = ring->sq.sqe_tail, mask = s->m.sq_kmask;
    unsigned start = head, limit = tail - head;

    *partial = 0;
    if (limit > 1 && pd__sim_fault(s, 16)) {
        limit = 1 + pd__sim_below(s, limit - 1);
        *partial = 1;
    }
    while (head != tail && head - start < limit) {
        const struct io_uring_sqe *sqe = &s->m.sqes[head++ & mask];
        const struct io_uring_sqe *next = head != tail ? &s->m.sqes[head & mask] : NULL;

        if (!(sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)) || next == NULL) {
            pd__sim_start(s, sqe, NULL);
        } else if (next->opcode == IORING_OP_LINK_TIMEOUT &&
                   !(next->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK))) {
            head++;
            pd__sim_start(s, sqe, next);
        } else {
            pd__sim_batch_begin(s);
            pd__ep_emit(s->ep, sqe, -EOPNOTSUPP, 0);
            do {
                sqe = &s->m.sqes[head++ & mask];
                pd__ep_emit(s->ep, sqe, -ECANCELED, 0);
            } while ((sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)) && head != tail);
            pd__sim_drain(s);
        }
    }
    if (head != tail && head - start >= limit)
        *partial = 1;
    else
        *partial = 0;
    ring->sq.sqe_head = head;
    s->m.sq_ktail = tail;
    io_uring_smp_store_release(&s->m.sq_khead, head);
    return head - start;
}

/* --- the enter loop --- */

static int pd__sim_enter(pd__engine *eng, struct io_uring *ring, unsigned wait_nr,
                         const struct __kernel_timespec *ts)
{
    pd__sim *s = pd__sim_of(eng);
    int64_t limit = INT64_MAX;
    pd__sim_op *op;
    unsigned n;
    int partial;

    pd__sim_clock = &s->now;
    s->enters++;
    /*
     * The kernel flushes its overflow list first; one that cannot (the CQ
     * is full) and refuses submissions until the application reaps (as
     * kernels before 5.11 do, which the seed may pick) returns -EBUSY,
     * consuming nothing and waiting for nothing.
     */
    pd__sim_flush(s);
    if (s->ovf_len != 0 && s->busy_on_ovf && ring->sq.sqe_tail != ring->sq.sqe_head) {
        s->busied++;
        return -EBUSY;
    }
    if (pd__sim_reserve(s, ring->sq.sqe_tail - ring->sq.sqe_head) < 0)
        return -ENOMEM;
    for (op = pd__sim_live(s->live_head); op != NULL; op = pd__sim_live(op->live.next))
        if (op->state == PD__SIM_WORK && op->turns > 0)
            op->turns--;
    n = pd__sim_consume(s, ring, &partial);
    if (partial) {
        /* io_uring_enter returns at once when it submitted less than asked. */
        pd__sim_step(s, 0);
        pd__sim_post(s, 0);
        return (int)n;
    }
    if (ts != NULL)
        limit = pd__ep_after(s->now, pd__ep_ts_ns(ts));
    for (;;) {
        int64_t next, to;
        int moved = pd__sim_step(s, 0);

        moved |= pd__sim_timers(s);
        pd__sim_post(s, wait_nr);
        if (pd__sim_cq_ready(s) >= wait_nr)
            break;
        if (moved)
            continue;
        if (s->nwork != 0) {
            pd__sim_step(s, 1);
            continue;
        }
        /* Nothing moves unless time passes or the outside makes an fd ready. */
        next = pd__sim_next_timer(s);
        if (s->nwait != 0 && s->quiet_ms > 0 && pd__sim_wait_real(s, s->quiet_ms))
            continue;
        if (next == INT64_MAX && limit == INT64_MAX) {
            /* Rather than wait for good, a quiet multishot poll may fire again. */
            if (pd__sim_refire(s))
                continue;
            if (s->nwait == 0) {
                /* io_uring would sleep for good: say so rather than hang. */
                fprintf(stderr, "polldrop: sim: waiting for %u completions with nothing "
                                "in flight (seed %llu)\n",
                        wait_nr, (unsigned long long)s->seed);
                abort();
            }
            if (pd__sim_wait_real(s, -1) < 0)
                return -EINTR;
            continue;
        }
        to = next < limit ? next : limit;
        if (to > s->now)
            s->now = to;
        if (next > limit)
            return -ETIME;
    }
    return (int)n;
}

/* --- provided buffer rings (kept in the embedded epoll state) --- */

/* The embedded epoll state registers them, as the epoll engine does. */
static int pd__sim_reg_buf_ring(pd__engine *eng, struct io_uring_buf_ring *br, unsigned entries,
                                unsigned short bgid)
{
    return pd__engine_epoll.register_buf_ring(pd__sim_of(eng)->ep, br, entries, bgid);
}

static int pd__sim_unreg_buf_ring(pd__engine *eng, unsigned short bgid)
{
    return pd__engine_epoll.unregister_buf_ring(pd__sim_of(eng)->ep, bgid);
}

/* The simulator runs what the epoll engine runs. */
static int pd__sim_probe(pd__engine *eng, unsigned op)
{
    return pd__engine_epoll.probe_op(pd__sim_of(eng)->ep, op);
}

/* --- setup and teardown --- */

static void pd__sim_exit(pd__engine *eng, struct io_uring *ring)
{
    pd__sim *s = pd__sim_of(eng);

    if (s == NULL)
        return;
    if (pd__sim_clock == &s->now)
        pd__sim_clock = NULL;
    pd__sim_ops_free(s);
    if (s->ep != NULL) {
        pd__ep_fd_free(s->ep);
        free(s->ep->bufs);
        free(s->ep->ovf);
        pd__umem_free(&s->ep->m);
        free(s->ep);
    }
    free(s->pend);
    free(s->ovf);
    if (s->etfd >= 0)
        close(s->etfd);
    free(s->wakes);
    free(s->pfd);
    free(s->pop);
    pd__umem_free(&s->m);
    free(s);
    if (ring != NULL) {
        memset(ring, 0, sizeof(*ring));
        ring->ring_fd = ring->enter_ring_fd = -1;
    }
}

/* The seed: cfg's, else PD_SIM_SEED's, else 1 (0 is never a seed). */
static uint64_t pd__sim_seed(const pd_config *cfg)
{
    const char *env = getenv("PD_SIM_SEED");
    uint64_t seed = cfg ? cfg->sim_seed : 0;

    if (seed == 0 && env != NULL && *env != '\0')
        seed = strtoull(env, NULL, 0);
    return seed ? seed : 1;
}

/*
 * The embedded epoll state: only what the attempts and file ops use (the
 * fd table, buffer rings, a staging CQ and its overflow); no epoll
 * instance, no worker.
 */
static int pd__sim_ep_init(pd__sim *s)
{
    pd__engine *e = calloc(1, sizeof(*e));

    s->ep = e;
    if (e == NULL)
        return -ENOMEM;
    e->epfd = e->wakefd = -1;
    e->check_head = e->check_tail = -1;
    e->m.cq_mask = 63;
    e->m.cq_entries = e->m.cq_kentries = 64;
    e->ovf_cap = 64;
    pd__ep_fd_limit(e);
    if ((e->m.cqes = malloc(64 * sizeof(*e->m.cqes))) == NULL ||
        (e->ovf = malloc(64 * sizeof(*e->ovf))) == NULL ||
        pd__ep_fd_get(e, PD__EP_MIN_FDS - 1) == NULL)
        return -ENOMEM;
    return 0;
}

int pd__sim_init(struct io_uring *ring, unsigned entries, const pd_config *cfg,
                 pd__engine **out)
{
    unsigned flags = cfg ? cfg->sim_flags : 0, cq_entries, i;
    const char *env;
    uint64_t x;
    pd__sim *s;

    *out = NULL;
    if (entries == 0 || entries > 32768)
        return -EINVAL;
    entries = pd__ep_pow2(entries);
    cq_entries = 2 * entries;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->etfd = -1;
    s->seed = pd__sim_seed(cfg);
    x = s->seed;
    for (i = 0; i < 4; i++)
        s->s[i] = pd__sim_splitmix(&x);
    env = getenv("PD_SIM_FAULTS");
    s->faults = !(flags & PD_SIM_NO_FAULTS) && !(env != NULL && strcmp(env, "0") == 0);
    /*
     * Half the seeds (with faults) run a kernel that answers -EBUSY while
     * it overflows: drawn from a stream of its own, so that every other
     * choice a seed makes stays what it was.
     */
    x = s->seed ^ 0x6f766572666c6f77ull;
    s->busy_on_ovf = s->faults && (pd__sim_splitmix(&x) & 1);
    env = getenv("PD_SIM_QUIET_MS");
    s->quiet_ms = (flags & PD_SIM_NO_QUIET) ? 0
                  : env != NULL && *env ? atoi(env)
                                        : PD__SIM_QUIET_MS;
    s->now = PD__SIM_EPOCH_NS;
    s->cap_pend = PD__SIM_MIN_PEND;
    s->ovf_cap = PD__SIM_MIN_PEND;
    s->cap_pfd = 1024;
    /* Counts for as many fds as the fd table holds from init: no allocation at a first poll. */
    s->nwakes = PD__EP_MIN_FDS;
    if (pd__sim_ep_init(s) < 0 ||
        pd__umem_init(&s->m, entries, cq_entries) < 0 ||
        (s->pend = malloc(s->cap_pend * sizeof(*s->pend))) == NULL ||
        (s->ovf = malloc(s->ovf_cap * sizeof(*s->ovf))) == NULL ||
        (s->pfd = malloc(s->cap_pfd * sizeof(*s->pfd))) == NULL ||
        (s->pop = malloc(s->cap_pfd * sizeof(*s->pop))) == NULL ||
        (s->wakes = calloc(PD__EP_MIN_FDS, sizeof(*s->wakes))) == NULL ||
        pd__sim_ops_init(s, 2 * cq_entries > 4096 ? 2 * cq_entries : 4096) < 0) {
        pd__sim_exit((pd__engine *)(void *)s, NULL);
        return -ENOMEM;
    }
    pd__umem_map(&s->m, ring);
    pd__sim_clock = &s->now;
    *out = (pd__engine *)(void *)s;
    return 0;
}

static int pd__sim_vt_init(struct io_uring *ring, unsigned entries, unsigned cq_entries,
                           pd__engine **out)
{
    (void)cq_entries;
    return pd__sim_init(ring, entries, NULL, out);
}

uint64_t pd__sim_seed_of(const pd__engine *eng)
{
    return ((const pd__sim *)(const void *)eng)->seed;
}

const pd__engine_vt pd__engine_sim = {
    .name = "sim",
    .init = pd__sim_vt_init,
    .enter = pd__sim_enter,
    .register_buf_ring = pd__sim_reg_buf_ring,
    .unregister_buf_ring = pd__sim_unreg_buf_ring,
    .probe_op = pd__sim_probe,
    .exit = pd__sim_exit,
};
