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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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
 * The buffers a multishot connection received while its echo was waiting
 * for room in its socket: they wait their turn in order of arrival, each
 * in the entry of its buffer id, chained from the connection's head and
 * tail ids. One table per thread, with an entry per buffer of its group, so
 * a connection with nothing waiting pays two ids for it.
 */
#define ECHO_NONE 0xffffu

typedef struct echo_backlog {
    pd_buf buf;
    uint16_t next;
} echo_backlog;

/* Moves *b to the tail of the backlog whose ends are *head and *tail. */
static inline void echo_backlog_push(echo_backlog *q, uint16_t *head, uint16_t *tail,
                                     pd_buf *b)
{
    uint16_t id = b->id;

    q[id].buf = *b;
    q[id].next = ECHO_NONE;
    *b = PD_BUF_EMPTY;
    if (*tail == ECHO_NONE)
        *head = id;
    else
        q[*tail].next = id;
    *tail = id;
}

/* Moves the oldest waiting buffer into *b; false when none waits. */
static inline bool echo_backlog_pop(echo_backlog *q, uint16_t *head, uint16_t *tail,
                                    pd_buf *b)
{
    uint16_t id = *head;

    if (id == ECHO_NONE)
        return false;
    *b = q[id].buf;
    q[id].buf = PD_BUF_EMPTY;
    *head = q[id].next;
    if (*head == ECHO_NONE)
        *tail = ECHO_NONE;
    return true;
}

/* Gives every waiting buffer back to its ring. */
static inline void echo_backlog_release(echo_backlog *q, uint16_t *head, uint16_t *tail)
{
    pd_buf b;

    while (echo_backlog_pop(q, head, tail, &b))
        pd_buf_release(&b);
}

/* Bytes a lingering close reads and discards at a time (echo_ms_conn). */
#define ECHO_SCRATCH 4096

/*
 * What the connections of one thread of the multishot server share: their
 * buffer group and its backlog table, the idle list (conns NULL: none),
 * the connection count and its limit, the lingering close's length, and a
 * buffer that lingering closes read into and never look at (so teardown
 * needs no buffer from the group).
 */
typedef struct echo_ms_ctx {
    pd_bufgroup *group;
    echo_backlog *backlog;
    echo_link **conns;
    long live, max_conns;
    long long linger_ms;
    unsigned long stalls;  /* echoes that waited for room in their socket */
    unsigned long nobufs;  /* recvs that found the group empty */
    char scratch[ECHO_SCRATCH];
} echo_ms_ctx;
#endif
