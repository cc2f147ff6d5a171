/*
 * polldrop's cancel-at-every-suspension-point harness, for Check suites.
 *
 * Given a way to build a future, pd_harness_run drives it to its k-th
 * suspension (k = 0, 1, 2, ... until the future completes before reaching
 * k) and destroys it there by every path a program can take: async drop,
 * sync drop, async drop interrupted by a sync drop after j polls, async
 * drop interrupted by pd_runtime_free after j polls, async drop forced by
 * a shutdown deadline after j polls, and pd_runtime_free on the live task,
 * with the requests of the last suspension in each state the kernel can
 * hold them in. After every destruction (once the task
 * is released and its runtime freed) it checks the invariants of
 * docs/design.md section 5 and fails the current Check test with a message
 * that names the future, the suspension point and the path. docs/harness.md
 * says what each check proves and how to write a case.
 *
 * Link with libpolldrop_harness.a (pkg-config polldrop-harness). The library
 * counts every allocation of the process: it defines malloc and friends,
 * forwarding them to the allocator that would otherwise have served them.
 */
#ifndef PD_HARNESS_H
#define PD_HARNESS_H

#include "polldrop.h"
#include "harness_hooks.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A buffer group the harness makes for every run: `count` buffers (a power
 * of two) of `size` bytes on the run's runtime, before init. The group is
 * stored in *out, a member of the fixture, for init to hand to the future;
 * the runtime's free frees it.
 */
typedef struct pd_harness_group {
    unsigned count;
    size_t size;
    pd_bufgroup **out;
} pd_harness_group;

typedef struct pd_harness_case {
    /* The future's name, as its vtable and its trace events spell it. */
    const char *future;
    const pd_vtable *vt;
    /* Non-zero if the spec has teardown states (run on async drops only). */
    int has_teardown;
    /* Passed to every hook below. */
    void *ctx;
    /* Makes the fixture (files, pipes, sockets); runs before fds are counted. */
    void (*setup)(void *ctx);
    /* Initialises the future in self (vt->size bytes, suitably aligned). */
    void (*init)(void *self, void *ctx);
    /*
     * Optional: feeds or drains the fixture at one of the PD_HARNESS_*
     * moments below. It runs while allocations are counted, so it must not
     * allocate (no ck_assert_*: Check allocates on success too).
     */
    void (*progress)(void *ctx, int when);
    /*
     * Optional: runs after the destruction was checked, with a copy of the
     * output if the future completed (NULL otherwise). ck_assert_* is fine.
     */
    void (*after)(void *ctx, const void *out);
    /* Undoes setup: closes and unlinks what it made. */
    void (*cleanup)(void *ctx);
} pd_harness_case;

/* The moments at which progress is called. */
enum {
    PD_HARNESS_RUN_SUSPENDED = 0,  /* the run phase just suspended */
    PD_HARNESS_DROP_SUSPENDED = 1, /* the async drop just suspended */
    PD_HARNESS_WAITING = 2,        /* about to block for a completion */
};

/*
 * Filled by pd_harness_run. Fields may be added at the end in later
 * versions: leave it uninitialised, or initialise it by name, not by
 * position.
 */
typedef struct pd_harness_stats {
    int points; /* suspension points of the run phase */
    int runs;   /* destructions checked */
    /*
     * Destructions that began with the last suspension's requests in each
     * kernel state (docs/harness.md): in flight (the runtime's count, after
     * the turn's submission), queued but not yet submitted, and completed
     * by the kernel but not yet reaped. A fixture that never leaves a
     * request in flight shows 0 in the first and the last.
     */
    int in_flight, queued, completed;
    /*
     * Destructions that began with a completion reaped for the future but
     * not yet seen by it (its task woken, not yet polled): for a multishot
     * request, completions waiting in the slot's queue before their then.
     */
    int reaped;
    /* Seeds the simulator ran the case with (pd_harness_explore; 0 otherwise). */
    int seeds;
    /*
     * Destructions whose run the simulator injected a fault into that
     * changed a request's result (an error, a short read or write): the
     * case's after hook is not called for them, as a fixture's checks
     * expect success; every invariant is still checked.
     */
    int faulted;
} pd_harness_stats;

/*
 * What a case may add (pd_harness_run_with). A separate struct, so that
 * cases written as positional initialisers of pd_harness_case still build
 * with -Wextra; fields may be added at the end: initialise it by name.
 */
typedef struct pd_harness_opts {
    /*
     * The buffer groups the future takes (ngroups of them, at most 8).
     * After every destruction each must have all its buffers back in its
     * ring (invariant 8: the destroyed future holds none): checked once the
     * destruction is over, and again when the runtime's free frees it.
     */
    const pd_harness_group *groups;
    int ngroups;
    /*
     * Non-zero for a future with multishot requests: every destruction is
     * then tried a second time with turns that reap one completion at a
     * time, so that the future is destroyed between any two completions
     * the kernel posted together, not only where a whole reap ended.
     */
    int multishot;
    /*
     * Tasks the future spawns by design (a join handle's task, say): each
     * is one allocation, which the check of "no allocation after spawn"
     * then allows. They are destroyed with the runtime on every path, and
     * checked like the future itself.
     */
    int spawns;
    /*
     * The submission queue size of the runtimes the runs make
     * (pd_config.entries; 0: the default): a small ring makes a future
     * with many requests fill its submission queue and overflow its
     * completion queue (completions beyond twice this many at once).
     */
    unsigned entries;
} pd_harness_opts;

/*
 * Runs every destruction of c at every suspension point, failing the
 * current Check test on the first breach. Must run in a Check test (fork
 * mode or not). Fills *st.
 */
void pd_harness_run(const pd_harness_case *c, pd_harness_stats *st);

/*
 * The same, for a future that spawns up to `spawns` tasks by design (a join
 * handle's task, say): each is one allocation, which the check of "no
 * allocation after spawn" then allows. The tasks are destroyed with the
 * runtime on every path, and checked like the future itself.
 */
void pd_harness_run_spawning(const pd_harness_case *c, int spawns, pd_harness_stats *st);

/* pd_harness_run with options; o may be NULL (pd_harness_run itself). */
void pd_harness_run_with(const pd_harness_case *c, const pd_harness_opts *o,
                         pd_harness_stats *st);

/*
 * Explores c under the simulator engine (PD_ENGINE_SIM): pd_harness_run
 * once per seed, seeds 1..seeds, each on runtimes made with that seed (and
 * PD_SIM_NO_QUIET), so that every destruction is tried under the orders
 * of completions and the faults each seed makes. A failure names the seed
 * and a one-line command that replays it; the environment variable
 * PD_HARNESS_SEED=N runs seed N alone. *st adds up the runs (points is
 * the largest count of one seed; seeds says how many ran).
 */
void pd_harness_explore(const pd_harness_case *c, unsigned seeds, pd_harness_stats *st);

/* pd_harness_explore with options (o may be NULL). */
void pd_harness_explore_with(const pd_harness_case *c, const pd_harness_opts *o,
                             unsigned seeds, pd_harness_stats *st);

/*
 * Under the environment variable PD_HARNESS_SEEDS=N, pd_harness_run and
 * its variants explore N seeds (pd_harness_explore) instead of running on
 * the engine PD_ENGINE chooses: `make explore` runs every case so. Under
 * PD_HARNESS_SEED=N they explore seed N alone.
 */

/*
 * Allocation calls (malloc, calloc, realloc, posix_memalign, aligned_alloc,
 * memalign, valloc, pvalloc, and what libc builds on them, such as strdup)
 * made by the process so far. Take the difference of two readings.
 */
long pd_harness_allocs(void);
/*
 * While on is nonzero, every allocation call this thread makes (those
 * above; realloc leaves its block as it was) fails, returning NULL (or
 * ENOMEM), and is still counted: a test reaches the paths that handle a
 * failed allocation. Turn it off before anything that must allocate (a
 * ck_assert_* does).
 */
void pd_harness_fail_allocs(int on);

/* Open file descriptors of the process; allocates nothing. */
int pd_harness_fd_count(void);

#ifdef __cplusplus
}
#endif

#endif /* PD_HARNESS_H */
