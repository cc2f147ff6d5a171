/*
 * The cancel-at-every-suspension-point harness (see harness.h and
 * docs/harness.md). It sees the runtime only through its public API and a
 * few pd__ accessors of pd_internal.h, as a user's test would, and counts
 * on its own: lifecycle events through its own trace hook, descriptors
 * through /proc/self/fd, allocations through harness_alloc.c.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "engine.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PD_HARNESS_MAX_POINTS 400
#define PD_HARNESS_MAX_LIVE 256

/*
 * ck_assert_msg, failing with the same message, but without Check's mark
 * point when it passes: that allocates and writes a message to the runner,
 * a dozen for each run, thousands of runs for each test. A test that
 * crashes in a run is located at its own last assertion before it (an
 * exploration names the seed and its replay on stderr too, pd__hcrash);
 * a failed check names the run itself.
 */
#define PD__HASSERT(expr, ...)                                                 \
    ((expr) ? (void)0                                                          \
            : _ck_assert_failed(__FILE__, __LINE__, "Assertion '" #expr "' failed", \
                                ##__VA_ARGS__))

/* Aborts the test without allocating first: usable in counted windows. */
#define PD_HARNESS_CHECK(expr)                                                 \
    do {                                                                       \
        if (!(expr))                                                           \
            ck_abort_msg("harness: %s:%d: %s", __FILE__, __LINE__, #expr);     \
    } while (0)

int pd_harness_fd_count(void)
{
    /* getdents64 into a stack buffer: opendir would allocate. */
    char buf[4096];
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int n = 0;
    long got;

    if (dir < 0)
        return -1;
    while ((got = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
        long at = 0;

        while (at < got) {
            /* struct linux_dirent64: ino, off, reclen, type, name. */
            unsigned short reclen;
            const char *name = buf + at + 19;

            memcpy(&reclen, buf + at + 16, sizeof(reclen));
            if (name[0] != '.')
                n++;
            at += reclen;
        }
    }
    close(dir);
    return n - 1; /* the directory's own descriptor */
}

/* --- the lifecycle recorder: every INIT paired with one DROP --- */

typedef struct pd__hrec {
    const char *future; /* the case's future */
    long own_inits, own_teardowns, own_drops;
    long teardowns;     /* of any future, children included */
    long double_init;   /* INIT of an object still alive */
    long stray_drop;    /* DROP of an object not alive: a double drop */
    long overflow;      /* more live objects than the table holds */
    int nlive;
    struct {
        const char *future;
        const void *self;
    } live[PD_HARNESS_MAX_LIVE];
} pd__hrec;

static void pd__hrec_hook(void *arg, const char *future, pd_trace_event ev,
                          const void *self)
{
    pd__hrec *r = arg;
    int own = strcmp(future, r->future) == 0, i;

    for (i = 0; i < r->nlive; i++)
        if (r->live[i].self == self && strcmp(r->live[i].future, future) == 0)
            break;
    switch (ev) {
    case PD_TRACE_INIT:
        r->own_inits += own;
        if (i < r->nlive) {
            r->double_init++;
        } else if (r->nlive < PD_HARNESS_MAX_LIVE) {
            r->live[r->nlive].future = future;
            r->live[r->nlive].self = self;
            r->nlive++;
        } else {
            r->overflow++;
        }
        break;
    case PD_TRACE_TEARDOWN:
        r->teardowns++;
        r->own_teardowns += own;
        break;
    case PD_TRACE_DROP:
        r->own_drops += own;
        if (i == r->nlive)
            r->stray_drop++;
        else
            r->live[i] = r->live[--r->nlive];
        break;
    }
}

/* --- one destruction --- */

/* The destruction paths. */
enum {
    PATH_ASYNC,      /* pd_task_cancel, run until destroyed */
    PATH_SYNC,       /* the vtable's drop on the suspended future */
    PATH_ASYNC_SYNC, /* async drop, then drop after j drop suspensions */
    PATH_FREE,       /* pd_runtime_free on the live task */
    PATH_ASYNC_FREE, /* async drop, then pd_runtime_free after j */
    PATH_FORCED,     /* async drop, then a shutdown deadline of 0 after j */
};

/*
 * Where the requests of the suspension just before the destruction are:
 * the k-th of the run for the async, sync and free paths, the j-th of the
 * async drop for the interrupted ones.
 */
enum {
    AT_IN_FLIGHT, /* submitted; not completed (or completed and reaped) */
    AT_QUEUED,    /* queued by the poll, not yet submitted to the kernel */
    AT_COMPLETED, /* completed by the kernel, not yet reaped */
};

static const char *const pd__at_names[] = {
    "requests submitted",
    "requests queued, not submitted",
    "a completion posted, not reaped",
};

/* How long a destroyed future's ring is watched for stray completions. */
#define PD_HARNESS_STRAY_MS 2

/* The options of the case being run (pd_harness_run_with). */
static pd_harness_opts pd__opts;

/*
 * The configuration every run's runtime gets: NULL (PD_ENGINE chooses)
 * except while pd_harness_explore runs a seed under the simulator.
 */
static const pd_config *pd__hcfg;
static pd_config pd__hsim;

typedef struct pd__hrun {
    const pd_harness_case *c;
    pd_runtime *rt;
    pd_task *t;
    void *self;
    int step;       /* each turn reaps at most one completion */
    char what[640]; /* future, point, path, kernel state (and seed), for every message */
} pd__hrun;

/*
 * The buffer groups pd_runtime_free freed in the current run, with the
 * buffers each still had out (pd__group_freeing). Only the case's groups
 * are recorded, so nothing here allocates.
 */
#define PD_HARNESS_MAX_GROUPS 8

static struct {
    int seen[PD_HARNESS_MAX_GROUPS];
    unsigned held[PD_HARNESS_MAX_GROUPS];
} pd__hgroups;

static void pd__hgroups_freeing(const pd_bufgroup *g)
{
    int i;

    for (i = 0; i < pd__opts.ngroups; i++)
        if (*pd__opts.groups[i].out == g) {
            pd__hgroups.seen[i]++;
            pd__hgroups.held[i] = pd__opts.groups[i].count - pd_bufgroup_available(g);
        }
}

/*
 * After a destruction that leaves the runtime up: every buffer of every
 * group is back in its ring, as the destroyed future holds none.
 */
static void pd__hrun_buffers(const pd__hrun *r)
{
    int i;

    for (i = 0; i < pd__opts.ngroups; i++) {
        const pd_harness_group *g = &pd__opts.groups[i];
        unsigned avail = pd_bufgroup_available(*g->out);

        if (avail != g->count)
            ck_abort_msg("%s: group %d: %u of its %u buffers back once destroyed",
                         r->what, i, avail, g->count);
    }
}

/*
 * While exploring: ", simulator seed N (replay: ...)", the end of every
 * failure message, and what the crash handler prints.
 */
static char pd__hreplay[320];
/* The line naming the seed was said before the case's after hook ran for it. */
static int pd__hafter_said;

static void pd__hrun_name(pd__hrun *r, int k, int at, int path, int j)
{
    char how[128];

    switch (path) {
    case PATH_ASYNC:
        snprintf(how, sizeof(how), "async drop");
        break;
    case PATH_SYNC:
        snprintf(how, sizeof(how), "sync drop");
        break;
    case PATH_ASYNC_SYNC:
        snprintf(how, sizeof(how), "async drop interrupted by sync drop after %d polls", j);
        break;
    case PATH_FREE:
        snprintf(how, sizeof(how), "pd_runtime_free on the live task");
        break;
    case PATH_ASYNC_FREE:
        snprintf(how, sizeof(how),
                 "async drop interrupted by pd_runtime_free after %d polls", j);
        break;
    default:
        snprintf(how, sizeof(how),
                 "async drop forced by a shutdown deadline after %d polls", j);
        break;
    }
    snprintf(r->what, sizeof(r->what), "%s, suspension %d, %s (%s%s)%s", r->c->future, k,
             how, pd__at_names[at], r->step ? "; one completion reaped per turn" : "",
             pd__hcfg != NULL ? pd__hreplay : "");
}

static void pd__hrun_progress(const pd__hrun *r, int when)
{
    if (r->c->progress)
        r->c->progress(r->c->ctx, when);
}

/*
 * Whether the phase goes on: the run phase while the task is RUNNING, the
 * drop phase until the task is destroyed.
 */
static int pd__hrun_going(const pd__hrun *r, int drop)
{
    int st = pd_task_state(r->t);

    return st == PD_TASK_RUNNING || (drop && st == PD_TASK_DROPPING);
}

/*
 * Submits what is queued, reaping nothing. A kernel whose completion queue
 * overflowed may refuse with -EBUSY until completions are reaped (kernels
 * before 5.11 do; the simulator's seeds do too): what is queued then stays
 * queued for the next entry, which the harness's next reap makes room for,
 * as the runtime's turn does. Any other error fails the run.
 */
static void pd__hrun_submit(const pd__hrun *r)
{
    int ret = pd__ring_submit(r->rt);

    PD_HARNESS_CHECK(ret >= 0 || ret == -EBUSY);
}

/*
 * The second half of a turn: submit and reap everything, as pd_run_once
 * does, or, when stepping, submit and reap at most one completion.
 */
static void pd__hrun_enter(const pd__hrun *r)
{
    if (!r->step) {
        PD_HARNESS_CHECK(pd__run_enter(r->rt, 0) == 0);
        return;
    }
    pd__hrun_submit(r);
    (void)pd__ring_reap_one(r->rt);
}

/*
 * The task is not runnable: a turn that waits for the kernel, telling the
 * fixture first. When stepping, it polls the other runnable tasks, or
 * reaps one completion, or waits for one and leaves it for the next call.
 */
static void pd__hrun_wait(const pd__hrun *r)
{
    if (!r->step) {
        pd__hrun_progress(r, PD_HARNESS_WAITING);
        PD_HARNESS_CHECK(pd_run_once(r->rt, 1) >= 0);
        return;
    }
    if (pd__runtime_ready(r->rt)) {
        PD_HARNESS_CHECK(pd__run_polls(r->rt) >= 0);
        return;
    }
    if (pd__ring_reap_one(r->rt))
        return;
    if (pd__cq_ready(r->rt) != 0)
        ck_abort_msg("%s: a completion cannot be reaped and no task is runnable",
                     r->what);
    pd__hrun_progress(r, PD_HARNESS_WAITING);
    pd__hrun_submit(r);
    PD_HARNESS_CHECK(pd__ring_wait_cqe(r->rt) == 0);
}

/*
 * Runs the task until it suspends once more in the phase (returns 1, after
 * telling the fixture) or the phase ends (returns 0). at says where to
 * stop: AT_IN_FLIGHT after the turn's submission; AT_QUEUED right after
 * the poll, before what it queued is submitted; AT_COMPLETED after a
 * submission that reaps nothing, with a completion in the ring (what
 * completed inline, or, if nothing did, the first completion after the
 * other runnable tasks were polled and the fixture was told the harness
 * waits). *reached says whether that state could be had (AT_QUEUED needs
 * queued requests, AT_COMPLETED requests).
 */
static int pd__hrun_suspend(pd__hrun *r, int drop, int at, int *reached)
{
    pd_stats s;

    *reached = at == AT_IN_FLIGHT;
    while (pd__hrun_going(r, drop)) {
        if (!pd__task_queued(r->t)) {
            pd_runtime_stats(r->rt, &s);
            if (s.inflight_ops == 0 && !pd__runtime_ready(r->rt))
                ck_abort_msg("%s: the future is stuck: not runnable, nothing in flight",
                             r->what);
            pd__hrun_wait(r);
            continue;
        }
        PD_HARNESS_CHECK(pd__run_polls(r->rt) >= 1);
        if (!pd__hrun_going(r, drop)) {
            pd__hrun_enter(r);
            return 0;
        }
        if (at == AT_QUEUED && pd__sq_unsubmitted(r->rt) > 0) {
            *reached = 1;
            pd__hrun_progress(r, drop ? PD_HARNESS_DROP_SUSPENDED
                                      : PD_HARNESS_RUN_SUSPENDED);
            return 1;
        }
        if (at != AT_COMPLETED) {
            pd__hrun_enter(r);
            pd__hrun_progress(r, drop ? PD_HARNESS_DROP_SUSPENDED
                                      : PD_HARNESS_RUN_SUSPENDED);
            return 1;
        }
        /*
         * Submit without reaping: what completed inline is posted and left
         * in the ring. Otherwise, where the runtime would block, wait for a
         * completion, and again leave it there. The runtime blocks only
         * when no task is runnable: the tasks the future spawned are polled
         * first (and what they queue submitted), as turns would, since what
         * the future waits for may be theirs to do. Waiting instead would
         * wait for the future's own deadline, or for good.
         */
        pd__hrun_submit(r);
        pd__hrun_progress(r, drop ? PD_HARNESS_DROP_SUSPENDED : PD_HARNESS_RUN_SUSPENDED);
        while (pd__cq_ready(r->rt) == 0 && !pd__task_queued(r->t)) {
            if (pd__runtime_ready(r->rt)) {
                PD_HARNESS_CHECK(pd__run_polls(r->rt) >= 1);
                pd__hrun_submit(r);
                continue;
            }
            pd_runtime_stats(r->rt, &s);
            if (s.inflight_ops == 0)
                break;
            pd__hrun_progress(r, PD_HARNESS_WAITING);
            PD_HARNESS_CHECK(pd__ring_wait_cqe(r->rt) == 0);
        }
        *reached = pd__cq_ready(r->rt) > 0;
        return 1;
    }
    return 0;
}

/* Whether the runtime counts requests in flight. */
static int pd__hrun_busy(const pd__hrun *r)
{
    pd_stats s;

    pd_runtime_stats(r->rt, &s);
    return s.inflight_ops > 0;
}

/*
 * After a destruction that leaves the runtime up: nothing in flight by the
 * runtime's count, and nothing arrives from the kernel for the destroyed
 * future's slots in the next few milliseconds (a wait, not a deadline).
 */
static void pd__hrun_quiet(pd__hrun *r)
{
    pd_stats s;
    int strays;

    pd_runtime_stats(r->rt, &s);
    if (s.inflight_ops != 0)
        ck_abort_msg("%s: %llu requests still in flight once destroyed", r->what,
                     (unsigned long long)s.inflight_ops);
    strays = pd__ring_strays(r->rt, r->self, r->c->vt->size, PD_HARNESS_STRAY_MS);
    if (strays < 0)
        ck_abort_msg("%s: waiting on the ring: %s", r->what, strerror(-strays));
    if (strays != 0)
        ck_abort_msg("%s: %d completions arrived for the destroyed future's slots",
                     r->what, strays);
}

/*
 * Runs the case's future to its k-th suspension and destroys it by path
 * (for the interrupted paths, after j suspensions of the async drop), with
 * the last suspension's requests in state at. Returns 1 if the future
 * completed before its k-th suspension, so that larger k add nothing; sets
 * *drop_done when an interrupted path found the async drop finished before
 * j, and *reached when state at could be had.
 */
static int pd__harness_one(const pd_harness_case *c, int step, int k, int at, int path,
                           int j, int *drop_done, int *reached, pd_harness_stats *st)
{
    pd__hrun r = { .c = c, .step = step };
    pd_config cfg;
    pd__hrec rec;
    unsigned char out[256];
    int fds, susp = 0, dsusp = 0, completed, has_out, ret, run_at, dummy, busy, woken, i;
    int faulted;
    long allocs, teardowns, forced_teardowns = -1;
    uint64_t forced = 0;

    pd__hrun_name(&r, k, at, path, j);
    memset(&rec, 0, sizeof(rec));
    rec.future = c->future;
    PD__HASSERT(c->vt->out_size <= sizeof(out), "%s: output of %zu bytes is larger "
                  "than the harness's %zu", r.what, c->vt->out_size, sizeof(out));
    fds = pd_harness_fd_count();
    c->setup(c->ctx);
    cfg = pd__hcfg != NULL ? *pd__hcfg : (pd_config){ 0 };
    cfg.entries = pd__opts.entries;
    ret = pd_runtime_new(&r.rt, &cfg);
    PD__HASSERT(ret == 0, "%s: pd_runtime_new: %s", r.what, strerror(-ret));
    PD__HASSERT(pd__opts.ngroups >= 0 && pd__opts.ngroups <= PD_HARNESS_MAX_GROUPS,
                  "%s: %d buffer groups (the harness checks up to %d)", r.what,
                  pd__opts.ngroups, PD_HARNESS_MAX_GROUPS);
    for (i = 0; i < pd__opts.ngroups; i++) {
        ret = pd_bufgroup_new(r.rt, pd__opts.groups[i].count, pd__opts.groups[i].size,
                              pd__opts.groups[i].out);
        PD__HASSERT(ret == 0, "%s: pd_bufgroup_new (group %d): %s", r.what, i,
                      strerror(-ret));
    }
    memset(&pd__hgroups, 0, sizeof(pd__hgroups));
    pd_set_trace(pd__hrec_hook, &rec);
    r.t = pd_task_new(r.rt, c->vt, &r.self);
    PD__HASSERT(r.t != NULL, "%s: pd_task_new failed", r.what);
    c->init(r.self, c->ctx);
    pd_task_start(r.t);

    /* From here to the runtime's free, nothing may allocate. */
    allocs = pd_harness_allocs();
    run_at = path == PATH_ASYNC || path == PATH_SYNC || path == PATH_FREE ? at
                                                                           : AT_IN_FLIGHT;
    *reached = k == 0 ? at == AT_IN_FLIGHT : 0;
    while (susp < k &&
           pd__hrun_suspend(&r, 0, susp + 1 == k ? run_at : AT_IN_FLIGHT,
                            susp + 1 == k && run_at == at ? reached : &dummy))
        susp++;
    completed = pd_task_state(r.t) != PD_TASK_RUNNING;
    teardowns = rec.teardowns; /* children that finished during the run had theirs */
    busy = pd__hrun_busy(&r);
    woken = !completed && pd__task_queued(r.t);

    if (path == PATH_SYNC) {
        pd__task_drop_sync(r.t); /* the vtable's drop; the task is then over */
    } else if (path != PATH_FREE) {
        pd_task_cancel(r.t);
        if (path == PATH_ASYNC) {
            while (pd__hrun_suspend(&r, 1, AT_IN_FLIGHT, &dummy))
                ;
        } else {
            if (j == 0)
                *reached = at == AT_IN_FLIGHT;
            while (dsusp < j &&
                   pd__hrun_suspend(&r, 1, dsusp + 1 == j ? at : AT_IN_FLIGHT,
                                    dsusp + 1 == j ? reached : &dummy))
                dsusp++;
            busy = pd__hrun_busy(&r);
            woken = pd__hrun_going(&r, 1) && pd__task_queued(r.t);
            if (dsusp < j)
                *drop_done = 1;
            else if (path == PATH_ASYNC_SYNC && pd__hrun_going(&r, 1))
                pd__task_drop_sync(r.t); /* in the middle of the async drop */
            else if (path == PATH_FORCED && pd__hrun_going(&r, 1)) {
                pd_stats s;

                /* The deadline passes now: quiesce, skip teardown, drop code. */
                forced_teardowns = rec.own_teardowns;
                PD_HARNESS_CHECK(pd_shutdown_deadline(r.rt, 0) == 0);
                pd_runtime_stats(r.rt, &s);
                forced = s.tasks_forced;
                PD_HARNESS_CHECK(!pd__hrun_going(&r, 1));
            }
        }
    }
    if (path != PATH_FREE && path != PATH_ASYNC_FREE) {
        pd__hrun_quiet(&r);
        pd__hrun_buffers(&r);
#ifndef PD_CHECKED
        /*
         * Destroyed means destroyed: in the default build both destructors,
         * called again while the memory exists, do nothing (no drop code,
         * no request). The checked build aborts on that second destruction
         * instead (docs/design.md), so it is not made there: the misuse
         * tests check the abort.
         */
        if (pd__task_poll_drop(r.t) != PD_READY)
            ck_abort_msg("%s: poll_drop on the destroyed future is not Ready", r.what);
        c->vt->drop(r.self);
        pd__hrun_quiet(&r);
#endif
    }
    has_out = pd_task_state(r.t) == PD_TASK_DONE;
    if (has_out && c->vt->out_size)
        memcpy(out, pd_task_output(r.t), c->vt->out_size);
    faulted = pd__sim_io_faults(r.rt) != 0;
    /* The last reference goes, then the runtime, which frees a live task. */
    pd_task_release(r.t);
    pd__group_freeing = pd__hgroups_freeing;
    pd_runtime_free(r.rt);
    pd__group_freeing = NULL;
    allocs = pd_harness_allocs() - allocs;
    pd_set_trace(NULL, NULL);

    /* Every check runs after the task and its runtime are gone. */
    PD__HASSERT(allocs <= pd__opts.spawns, "%s: %ld allocations after spawn (%d allowed: "
                  "the tasks it spawns)", r.what, allocs, pd__opts.spawns);
    PD__HASSERT(rec.own_inits == 1, "%s: init traced %ld times", r.what,
                  rec.own_inits);
    PD__HASSERT(rec.own_drops == 1, "%s: drop code ran %ld times", r.what,
                  rec.own_drops);
    for (i = 0; i < pd__opts.ngroups; i++)
        PD__HASSERT(pd__hgroups.seen[i] == 1 && pd__hgroups.held[i] == 0,
                      "%s: group %d: %u of its %u buffers still out when the runtime "
                      "freed it", r.what, i, pd__hgroups.held[i], pd__opts.groups[i].count);
    PD__HASSERT(rec.double_init == 0 && rec.stray_drop == 0 && rec.nlive == 0 &&
                  rec.overflow == 0,
                  "%s: children not destroyed exactly once (double init %ld, "
                  "double drop %ld, never dropped %d)", r.what, rec.double_init,
                  rec.stray_drop, rec.nlive);
    if (path == PATH_ASYNC)
        PD__HASSERT(rec.own_teardowns == (c->has_teardown ? 1 : 0),
                      "%s: teardown ran %ld times", r.what, rec.own_teardowns);
    else if ((path == PATH_SYNC || path == PATH_FREE) && !completed)
        PD__HASSERT(rec.teardowns == teardowns, "%s: teardown ran on a sync drop",
                      r.what);
    else
        PD__HASSERT(rec.own_teardowns <= 1, "%s: teardown ran %ld times", r.what,
                      rec.own_teardowns);
    if (forced_teardowns >= 0) {
        /* The future's task, and the tasks it spawned that were still live. */
        PD__HASSERT(forced >= 1 && forced <= 1 + (uint64_t)pd__opts.spawns,
                      "%s: %llu tasks counted as forced", r.what,
                      (unsigned long long)forced);
        PD__HASSERT(rec.own_teardowns == forced_teardowns,
                      "%s: teardown began after the task was forced", r.what);
    }
    /*
     * The fixture's own checks expect its requests to succeed: after a run
     * in which the simulator made one fail (or move less), they are not
     * made; the invariants above were.
     */
    if (faulted)
        st->faulted++;
    else if (c->after) {
        if (pd__hcfg != NULL && !pd__hafter_said) {
            /* A failure in the case's own check cannot name the seed: this line does. */
            fprintf(stderr, "harness: %s: checking the fixture after runs%s\n", c->future,
                    pd__hreplay);
            pd__hafter_said = 1;
        }
        c->after(c->ctx, has_out ? out : NULL);
    }
    c->cleanup(c->ctx);
    ret = pd_harness_fd_count();
    PD__HASSERT(ret == fds, "%s: %d descriptors before, %d after", r.what, fds, ret);
    st->runs++;
    if (at == AT_IN_FLIGHT && woken)
        st->reaped++;
    if (*reached && at == AT_QUEUED)
        st->queued++;
    else if (*reached && at == AT_COMPLETED)
        st->completed++;
    else if (at == AT_IN_FLIGHT && busy)
        st->in_flight++;
    return completed;
}

void pd_harness_run_spawning(const pd_harness_case *c, int spawns, pd_harness_stats *st)
{
    const pd_harness_opts o = { .spawns = spawns };

    pd_harness_run_with(c, &o, st);
}

/*
 * Every suspension point, every path, every kernel state, with turns that
 * reap everything (step 0) or one completion (step 1). Returns the
 * suspension points of the run.
 */
static int pd__harness_all(const pd_harness_case *c, int step, pd_harness_stats *st)
{
    static const int direct[] = { PATH_ASYNC, PATH_SYNC, PATH_FREE };
    static const int interrupted[] = { PATH_ASYNC_SYNC, PATH_ASYNC_FREE, PATH_FORCED };
    int k, i, p, at, done, reached;

    for (k = 0; k < PD_HARNESS_MAX_POINTS; k++) {
        int completed = 0;

        /* Suspension k, in each kernel state, by each direct path. */
        for (at = AT_IN_FLIGHT; at <= AT_COMPLETED; at++) {
            for (p = 0; p < 3; p++) {
                completed = pd__harness_one(c, step, k, at, direct[p], -1, &done,
                                            &reached, st);
                if (completed || !reached)
                    break; /* a completed future has no sync path to test */
            }
            if (completed)
                break;
        }
        /* Then each suspension j of the async drop, in each kernel state. */
        for (i = 0; i < (int)(sizeof(interrupted) / sizeof(interrupted[0])); i++) {
            int j;

            done = 0;
            for (j = 0; !done && j < PD_HARNESS_MAX_POINTS; j++)
                for (at = AT_IN_FLIGHT; at <= AT_COMPLETED && !done; at++) {
                    pd__harness_one(c, step, k, at, interrupted[i], j, &done, &reached,
                                    st);
                    if (!reached || j == 0)
                        break;
                }
        }
        if (completed)
            return k - 1; /* it suspended k-1 times, not k */
    }
    ck_abort_msg("%s: still running after %d suspensions", c->future, k);
    return -1;
}

void pd_harness_run_with(const pd_harness_case *c, const pd_harness_opts *o,
                         pd_harness_stats *st)
{
    static const pd_harness_opts none;
    const char *env = getenv("PD_HARNESS_SEEDS"), *one = getenv("PD_HARNESS_SEED");
    int stepped;

    /* PD_HARNESS_SEED alone replays that seed (the explorer's replay command). */
    if (pd__hcfg == NULL && ((env != NULL && atoi(env) > 0) || (one != NULL && *one))) {
        pd_harness_explore_with(c, o, env != NULL && atoi(env) > 0 ? (unsigned)atoi(env) : 1,
                                st);
        return;
    }
    pd__opts = o ? *o : none;
    memset(st, 0, sizeof(*st));
    st->points = pd__harness_all(c, 0, st);
    if (pd__opts.multishot) {
        /* More points: completions posted together are seen one per turn. */
        stepped = pd__harness_all(c, 1, st);
        if (stepped > st->points)
            st->points = stepped;
    }
    pd__opts = none;
}

void pd_harness_run(const pd_harness_case *c, pd_harness_stats *st)
{
    pd_harness_run_with(c, NULL, st);
}

/* --- exploring under the simulator --- */

static struct sigaction pd__hold_abrt, pd__hold_segv;

/*
 * A run that crashes (an abort in the future's own code, a sanitizer's
 * report) ends the test process: the seed and the replay command are
 * written first (write(2): async-signal-safe), then the signal goes on.
 */
static void pd__hcrash(int sig)
{
    static const char head[] = "harness: crashed while exploring";

    (void)!write(2, head, sizeof(head) - 1);
    (void)!write(2, pd__hreplay, strlen(pd__hreplay));
    (void)!write(2, "\n", 1);
    sigaction(SIGABRT, &pd__hold_abrt, NULL);
    sigaction(SIGSEGV, &pd__hold_segv, NULL);
    raise(sig);
}

void pd_harness_explore_with(const pd_harness_case *c, const pd_harness_opts *o,
                             unsigned seeds, pd_harness_stats *st)
{
    const char *env = getenv("PD_HARNESS_SEED");
    struct sigaction sa;
    uint64_t first = 1, seed;
    pd_harness_stats one;

    memset(st, 0, sizeof(*st));
    if (env != NULL && *env != '\0') {
        first = strtoull(env, NULL, 0);
        seeds = 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pd__hcrash;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, &pd__hold_abrt);
    sigaction(SIGSEGV, &sa, &pd__hold_segv);
    for (seed = first; seed < first + seeds; seed++) {
        pd__hsim = (pd_config){ .engine = PD_ENGINE_SIM, .sim_seed = seed,
                                .sim_flags = PD_SIM_NO_QUIET };
        pd__hcfg = &pd__hsim;
        pd__hafter_said = 0;
        snprintf(pd__hreplay, sizeof(pd__hreplay),
                 ", simulator seed %llu (replay: PD_HARNESS_SEED=%llu %s, test %s)",
                 (unsigned long long)seed, (unsigned long long)seed,
                 program_invocation_name, tcase_name());
        pd_harness_run_with(c, o, &one);
        if (one.points > st->points)
            st->points = one.points;
        st->runs += one.runs;
        st->in_flight += one.in_flight;
        st->queued += one.queued;
        st->completed += one.completed;
        st->reaped += one.reaped;
        st->faulted += one.faulted;
        st->seeds++;
    }
    pd__hcfg = NULL;
    pd__hreplay[0] = '\0';
    fprintf(stderr, "harness: explored %s: %d seeds, up to %d suspension points, %d "
            "destructions checked (%d with an injected I/O fault)\n", c->future, st->seeds,
            st->points, st->runs, st->faulted);
    sigaction(SIGABRT, &pd__hold_abrt, NULL);
    sigaction(SIGSEGV, &pd__hold_segv, NULL);
}

void pd_harness_explore(const pd_harness_case *c, unsigned seeds, pd_harness_stats *st)
{
    pd_harness_explore_with(c, NULL, seeds, st);
}
