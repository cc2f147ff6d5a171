/*
 * The cancel-at-every-suspension-point harness.
 *
 * Given a way to build a future, it runs the future to its k-th suspension
 * (k = 0, 1, 2, ... until the future completes before reaching k) and then
 * destroys it three ways: async drop; sync drop; and async drop interrupted
 * by a sync drop after j suspensions of poll_drop (j = 0, 1, ... until the
 * async drop finishes first). After every run it checks docs/design.md section 5:
 * exactly-once drop of the future and of every child (1, 2), teardown on
 * async drops only (3), no allocation after spawn (4), no fd growth (5),
 * 0 ops in flight once destroyed (1), and the case's own check, for example
 * that a pipe read that was cancelled left later data in the pipe (7).
 */
#ifndef PD_HARNESS_H
#define PD_HARNESS_H

#include "polldrop.h"

typedef struct pd_harness_case {
    const char *future;       /* the future's name, as it traces itself */
    const pd_vtable *vt;
    int has_teardown;         /* the spec has teardown states */
    void *ctx;
    /* Makes the fixture (files, pipes); runs before fds are counted. */
    void (*setup)(void *ctx);
    /* Initialises the future in self (vt->size bytes). */
    void (*init)(void *self, void *ctx);
    /*
     * Optional: feeds or drains the fixture (a pipe) at one of the moments
     * below. No malloc: it runs while allocations are counted.
     */
    void (*progress)(void *ctx, int when);
    /* Optional: after destruction, with the output if it completed. */
    void (*after)(void *ctx, const void *out);
    /* Undoes setup: closes and unlinks what it made. */
    void (*cleanup)(void *ctx);
} pd_harness_case;

/* When progress is called. */
enum {
    PD_HARNESS_RUN_SUSPENDED = 0,  /* the run phase just suspended */
    PD_HARNESS_DROP_SUSPENDED = 1, /* the async drop just suspended */
    PD_HARNESS_WAITING = 2,        /* about to block for a completion */
};

typedef struct pd_harness_stats {
    int points;   /* suspension points of the run phase */
    int runs;     /* destructions checked */
} pd_harness_stats;

/* Runs every cancellation point of c, failing the current test on a breach. */
void pd_harness_run(const pd_harness_case *c, pd_harness_stats *st);

#endif
