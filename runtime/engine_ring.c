/*
 * The ring memory of the user-space engines (engine_ring.h): what the
 * epoll engine and the simulator set up alike.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_ring.h"

int pd__umem_init(pd__umem *m, unsigned entries, unsigned cq_entries)
{
    unsigned i;

    m->sq_kmask = entries - 1;
    m->sq_kentries = entries;
    m->cq_kmask = m->cq_mask = cq_entries - 1;
    m->cq_kentries = m->cq_entries = cq_entries;
    if (posix_memalign((void **)&m->sqes, 64, entries * sizeof(*m->sqes)) != 0 ||
        posix_memalign((void **)&m->cqes, 64, cq_entries * sizeof(*m->cqes)) != 0 ||
        (m->sq_array = malloc(entries * sizeof(*m->sq_array))) == NULL)
        return -ENOMEM;
    memset(m->sqes, 0, entries * sizeof(*m->sqes));
    memset(m->cqes, 0, cq_entries * sizeof(*m->cqes));
    for (i = 0; i < entries; i++)
        m->sq_array[i] = i;
    return 0;
}

void pd__umem_map(pd__umem *m, struct io_uring *ring)
{
    memset(ring, 0, sizeof(*ring));
    ring->sq.khead = &m->sq_khead;
    ring->sq.ktail = &m->sq_ktail;
    ring->sq.kring_mask = &m->sq_kmask;
    ring->sq.kring_entries = &m->sq_kentries;
    ring->sq.kflags = &m->sq_kflags;
    ring->sq.kdropped = &m->sq_kdropped;
    ring->sq.array = m->sq_array;
    ring->sq.sqes = m->sqes;
    ring->sq.ring_mask = m->sq_kmask;
    ring->sq.ring_entries = m->sq_kentries;
    ring->cq.khead = &m->cq_khead;
    ring->cq.ktail = &m->cq_ktail;
    ring->cq.kring_mask = &m->cq_kmask;
    ring->cq.kring_entries = &m->cq_kentries;
    ring->cq.kflags = &m->cq_kflags;
    ring->cq.koverflow = &m->cq_koverflow;
    ring->cq.cqes = m->cqes;
    ring->cq.ring_mask = m->cq_kmask;
    ring->cq.ring_entries = m->cq_kentries;
    ring->ring_fd = ring->enter_ring_fd = -1;
    ring->features = IORING_FEAT_NODROP | IORING_FEAT_CQE_SKIP | IORING_FEAT_EXT_ARG |
                     IORING_FEAT_RW_CUR_POS | IORING_FEAT_POLL_32BITS;
}

void pd__umem_free(pd__umem *m)
{
    free(m->sqes);
    free(m->cqes);
    free(m->sq_array);
    m->sqes = NULL;
    m->cqes = NULL;
    m->sq_array = NULL;
}
