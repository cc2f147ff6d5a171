/*
 * Shared state of the hop relay (tests/specs/hop.yaml): two runtimes, the
 * threads that own them, and counters every hop updates atomically, from
 * whichever thread runs it.
 */
#ifndef PD_HOP_CTX_H
#define PD_HOP_CTX_H

#include <pthread.h>
#include <stdatomic.h>

#include "polldrop.h"

typedef struct hop_ctx {
    pd_runtime *rt[2];
    pthread_t owner[2];
    atomic_long finished;     /* relays that reached their last hop */
    atomic_long drops;        /* hops whose drop code ran */
    atomic_long wrong_thread; /* hops polled or dropped off their runtime's thread */
} hop_ctx;

/* 1 if the calling thread owns rt, one of the relay's two runtimes. */
static inline int hop_on_owner(const hop_ctx *c, const pd_runtime *rt)
{
    return pthread_equal(pthread_self(), c->owner[rt == c->rt[1]]);
}

#endif
