/*
 * Misuse of the API and the checked build (-DPD_CHECKED): pd__misuse, the
 * graveyard of freed tasks, the registry of live futures and the registry
 * of op slots the kernel owes completions. The plain build's stubs are the
 * static inline ones of rt_internal.h and pd_internal.h: it compiles only
 * pd__misuse from here.
 */
#include "rt_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* --- misuse of the API, caught by the checked build --- */

void pd__misuse(const char *future, const char *state, const char *mistake)
{
    fprintf(stderr, "polldrop checked build: %s (state %s): %s\n", future, state,
            mistake);
    abort();
}

#ifdef PD_CHECKED
const char *const pd__task_states[] = {
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

void pd__task_release_mem(pd_task *t)
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
void pd__task_check(const pd_task *t, const char *call)
{
    char what[160];

    if (t->state == PD__TASK_DEAD) {
        snprintf(what, sizeof(what), "%s on a task already freed (released twice, "
                 "or used after its last pd_task_release)", call);
        pd__misuse(t->vt->name, "freed", what);
    }
}

/* The runtime is driven by the thread that made it, and no other. */
void pd__owner_check(const pd_runtime *rt, const char *call)
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
    case PD__PH_OWNED:
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
#endif

/* --- the checked build (-DPD_CHECKED): a registry of live op slots --- */

#ifdef PD_CHECKED
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
void pd__checked_owe(const pd__op *op)
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

void pd__checked_cqe(const struct io_uring_cqe *cqe)
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
void pd__checked_freeing(const void *mem, size_t len)
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
void pd__checked_ring_closing(const pd_runtime *rt)
{
    unsigned i;

    pthread_mutex_lock(&pd__reg_lock);
    for (i = 0; pd__reg_count && i < PD__REG_SIZE; i++)
        if (pd__reg[i].op != 0 && pd__reg[i].rt == rt)
            pd__checked_die("still owed completions when its runtime is freed",
                            pd__reg[i].op, pd__reg[i].owed, 0);
    pthread_mutex_unlock(&pd__reg_lock);
}
#endif
