/*
 * The ring memory of an engine that plays the kernel's part in user space
 * (the epoll engine and the simulator): the submission and completion
 * queues as liburing's inline helpers see them, allocated by the engine.
 * Each engine's state embeds one as `m`; engine_ring.c sets it up, maps it
 * into a struct io_uring and frees it, once for both engines. Only the
 * engine's thread touches it, but for what the ring's user reads and
 * writes through the helpers (the heads, tails and entries).
 */
#ifndef POLLDROP_ENGINE_RING_H
#define POLLDROP_ENGINE_RING_H

#include "engine.h"

typedef struct pd__umem {
    unsigned sq_khead, sq_ktail, sq_kmask, sq_kentries, sq_kflags, sq_kdropped;
    unsigned cq_khead, cq_ktail, cq_kmask, cq_kentries, cq_kflags, cq_koverflow;
    unsigned *sq_array;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    unsigned cq_mask, cq_entries;
} pd__umem;

/*
 * Allocates and zeroes queues of entries SQEs and cq_entries CQEs (powers
 * of two, checked by the caller). Returns 0 or -ENOMEM; what was allocated
 * either way is freed by pd__umem_free.
 */
int pd__umem_init(pd__umem *m, unsigned entries, unsigned cq_entries);
/*
 * Points ring at m's queues, with no ring fd (nothing may enter a kernel
 * for it) and the features both engines provide, as the kernel's
 * io_uring_queue_init would fill it.
 */
void pd__umem_map(pd__umem *m, struct io_uring *ring);
void pd__umem_free(pd__umem *m);

/* Completions posted and not yet consumed by the ring's user. */
/*
 * The capacity an engine's list grows to so that it holds need entries:
 * cap doubled as often as it takes (cap itself when it is enough), or 0
 * when that passes UINT32_MAX / 2, which the caller reports as -ENOMEM.
 * cap must not be 0.
 */
static inline unsigned pd__grow_cap(unsigned cap, size_t need)
{
    size_t c = cap;

    while (c < need)
        c *= 2;
    return c > UINT32_MAX / 2 ? 0 : (unsigned)c;
}

static inline unsigned pd__umem_cq_ready(const pd__umem *m)
{
    return m->cq_ktail - IO_URING_READ_ONCE(m->cq_khead);
}

#endif /* POLLDROP_ENGINE_RING_H */
