/*
 * The window of a buffer group: which of its buffers the kernel may take.
 *
 * The kernel takes provided buffers at the ring's head, in ring order, and
 * a buffer given back goes in at the tail. With every buffer of a group in
 * its ring, a buffer given back is taken again only after all the others,
 * so traffic that holds one buffer at a time still writes, in turn, every
 * buffer of the group: each is a page the process keeps resident (16 MiB
 * for the echo server's default group, however few connections it has).
 * So only `window` buffers are in the ring; the others wait, in user
 * memory the kernel never reads, on a stack (`spare`) whose top is the
 * buffer given back last: the ones that go back in are those written most
 * recently, and the buffers ever written are the window plus the most
 * held at once, not the group.
 *
 * The ring is kept at `window` buffers as far as reaped completions tell:
 * it is topped up from the stack each time a completion says a buffer was
 * taken (so a future that holds many buffers never empties it), and a
 * buffer given back goes to the ring only when the ring is short of the
 * window, else on the stack. More buffers taken between two reaps than
 * the window holds find it empty (-ENOBUFS, and the recv is armed again);
 * each such -ENOBUFS widens the window by one buffer, up to the group's
 * count, so the ring grows to what the traffic takes between two reaps.
 *
 * Nothing here changes what the kernel may write: a buffer is in the ring
 * or on the stack or held, never two of them; the ring is only ever
 * appended to at its tail (the kernel reads between its head and tail);
 * and `held` counts what it counted before, so pd_bufgroup_free's rules
 * and pd_bufgroup_available are unchanged. The epoll engine reads the same
 * ring the same way.
 */
#ifndef PD_BUFWIN_H
#define PD_BUFWIN_H

#include "polldrop.h"
#include "pd_internal.h"

/* The window a group starts with (or its count, when smaller). */
#define PD__BUF_WINDOW 32u

/* Buffers in the ring as far as reaped completions tell. */
static inline unsigned pd__bufwin_in_ring(const pd_bufgroup *g)
{
    return g->count - g->held - g->nspare;
}

/* Appends buffer bid at the ring's tail (offset `at` among those not yet published). */
static inline void pd__bufwin_add(pd_bufgroup *g, uint16_t bid, int at)
{
    io_uring_buf_ring_add(g->br, g->base + (size_t)bid * g->size, (unsigned)g->size, bid,
                          io_uring_buf_ring_mask(g->count), at);
}

/* Moves buffers from the stack into the ring until it holds the window. */
static inline void pd__bufwin_fill(pd_bufgroup *g)
{
    int n = 0;

    while (g->nspare > 0 && pd__bufwin_in_ring(g) < g->window)
        pd__bufwin_add(g, g->spare[--g->nspare], n++);
    if (n > 0)
        io_uring_buf_ring_advance(g->br, n);
}

/*
 * A new group's buffers: ids 0 to window-1 in the ring, in order, the rest
 * on the stack, lowest id on top. Nothing is held yet.
 */
static inline void pd__bufwin_init(pd_bufgroup *g)
{
    unsigned i;

    g->window = g->count < PD__BUF_WINDOW ? g->count : PD__BUF_WINDOW;
    for (i = 0; i < g->window; i++)
        pd__bufwin_add(g, (uint16_t)i, (int)i);
    io_uring_buf_ring_advance(g->br, (int)g->window);
    g->nspare = 0;
    for (i = g->count; i > g->window; i--)
        g->spare[g->nspare++] = (uint16_t)(i - 1);
}

/* A reaped completion says the kernel took one of g's buffers. */
static inline void pd__bufwin_taken(pd_bufgroup *g)
{
    g->held++;
    pd__bufwin_fill(g);
}

/* A recv on g found its ring empty (-ENOBUFS): the window widens by one. */
static inline void pd__bufwin_starved(pd_bufgroup *g)
{
    if (g->window < g->count)
        g->window++;
    pd__bufwin_fill(g);
}

/*
 * Buffer bid, held, is given back: to the ring when it is short of the
 * window, else on top of the stack.
 */
static inline void pd__bufwin_put(pd_bufgroup *g, uint16_t bid)
{
    if (pd__bufwin_in_ring(g) < g->window) {
        pd__bufwin_add(g, bid, 0);
        io_uring_buf_ring_advance(g->br, 1);
    } else {
        g->spare[g->nspare++] = bid;
    }
    g->held--;
}

#endif
