/*
 * echo_link.h: what the echo server's futures share, hand-written: the
 * list of connections its idle sweeper (echo_idle) walks, which both kinds
 * of connection (echo_conn, echo_ms_conn) sit on, and the per-thread
 * context of the multishot server (echo_ms_accept, echo_ms_conn).
 *
 * A connection on the list is an echo_link member of its future: linked by
 * the future's first poll (with the task known), stamped when data arrives,
 * unlinked by its drop code on every destruction path. echo_idle cancels
 * the task of every link stamped too long ago.
 */
#ifndef POLLDROP_ECHO_LINK_H
#define POLLDROP_ECHO_LINK_H
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "polldrop.h"

typedef struct echo_link {
    struct echo_link *prev, *next;
    pd_task *task;   /* NULL while not on a list */
    long long last;  /* CLOCK_MONOTONIC_COARSE milliseconds of the last data */
} echo_link;

/* Now, in the coarse milliseconds echo_link.last is stamped with. */
static inline long long echo_link_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Puts l at the head of *head, for task t; head may be NULL (no list). */
static inline void echo_link_add(echo_link **head, echo_link *l, pd_task *t)
{
    if (head == NULL)
        return;
    l->task = t;
    l->prev = NULL;
    l->next = *head;
    if (l->next)
        l->next->prev = l;
    *head = l;
    l->last = echo_link_now();
}

/*
 * Milliseconds from now until end, a deadline stamped as
 * (uint32_t)(echo_link_now() + ms); 0 or less once it has passed. Stamps
 * of 32 bits keep futures small; they serve deadlines under 24 days.
 */
static inline long long echo_ms_left(uint32_t end)
{
    return (int32_t)(end - (uint32_t)echo_link_now());
}

/* Notes that data arrived: the connection is not idle. */
static inline void echo_link_touch(echo_link *l)
{
    if (l->task)
        l->last = echo_link_now();
}

/* Takes l off *head if it is on it; idempotent. */
static inline void echo_link_del(echo_link **head, echo_link *l)
{
    if (l->task == NULL)
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        *head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->task = NULL;
}

/*
 * What a multishot connection could not send yet, in order: the rest of the
 * buffer whose echo found its socket full, then whatever its recv received
 * before it stopped. It is a copy on the heap, so that a connection waiting
 * for its peer to read holds no buffer of the shared group: any number of
 * peers that send and never read cannot take the group from the others.
 */
typedef struct echo_spill {
    uint32_t len, cap;
    char data[];
} echo_spill;

/* Bytes a lingering close reads and discards at a time (echo_ms_conn). */
#define ECHO_SCRATCH 4096

/*
 * What the connections of one thread of the multishot server share: their
 * buffer group, the idle list (conns NULL: none), the connection count and
 * its limit, the lingering close's length, and a buffer that lingering
 * closes read into and never look at (so teardown needs no buffer from the
 * group).
 */
typedef struct echo_ms_ctx {
    pd_bufgroup *group;
    echo_link **conns;
    long live, max_conns;
    long long linger_ms;
    unsigned long stalls;  /* echoes that waited for room in their socket */
    unsigned long nobufs;  /* recvs that found the group empty */
    size_t spilled;        /* bytes the connections' spills hold allocated now */
    size_t spill_peak;     /* the most spilled ever was */
    char scratch[ECHO_SCRATCH];
} echo_ms_ctx;

/*
 * Appends n bytes at p to *sp, allocating or growing it (to twice its size
 * at least, so that appends cost amortised O(n)), and counts the bytes
 * allocated in c->spilled and c->spill_peak. Returns 0, or -ENOMEM with *sp
 * unchanged.
 */
static inline int echo_spill_add(echo_ms_ctx *c, echo_spill **sp, const void *p, uint32_t n)
{
    echo_spill *s = *sp;
    uint32_t len = s ? s->len : 0, cap = s ? s->cap : 0;

    if (n > UINT32_MAX - len)
        return -ENOMEM;
    if (len + n > cap) {
        uint64_t want = (uint64_t)cap * 2 > len + n ? (uint64_t)cap * 2 : len + n;
        echo_spill *g;

        if (want > UINT32_MAX)
            want = UINT32_MAX;
        g = realloc(s, sizeof(*g) + (size_t)want);
        if (g == NULL)
            return -ENOMEM;
        c->spilled += (size_t)want - cap;
        if (c->spilled > c->spill_peak)
            c->spill_peak = c->spilled;
        g->len = len;
        g->cap = (uint32_t)want;
        *sp = s = g;
    }
    memcpy(s->data + len, p, n);
    s->len = len + n;
    return 0;
}

/* Frees *sp (NULL: nothing to do) and takes its bytes off c->spilled. */
static inline void echo_spill_free(echo_ms_ctx *c, echo_spill **sp)
{
    if (*sp == NULL)
        return;
    c->spilled -= (*sp)->cap;
    free(*sp);
    *sp = NULL;
}
#endif
