/*
 * The engine seam: what stands behind a pd_runtime's ring.
 *
 * Generated code and the runtime's hot path use a `struct io_uring` and
 * liburing's inline helpers only (io_uring_get_sqe, the io_uring_prep_*
 * helpers, io_uring_cq_ready, io_uring_for_each_cqe, io_uring_cq_advance,
 * io_uring_buf_ring_*): those touch ring memory and nothing else. An
 * engine owns that memory and plays the kernel's part behind it: it
 * consumes the submission queue and posts completions as io_uring would.
 * Every call liburing makes into the kernel (submit, wait, register,
 * probe, exit) is routed by the runtime through this table instead, and is
 * never made on an engine's ring.
 *
 * Nothing here is a public API: the names carry the pd__ prefix.
 */
#ifndef POLLDROP_ENGINE_H
#define POLLDROP_ENGINE_H

#include <liburing.h>

typedef struct pd__engine pd__engine; /* an engine instance, owned by the runtime */

typedef struct pd__engine_vt {
    const char *name; /* "io_uring", "epoll", "sim" */
    /*
     * Sets up `ring` (entries SQEs, cq_entries CQEs; 0 means twice
     * entries) with engine-owned memory; *out gets the instance. Returns 0
     * or -errno (-EINVAL for sizes io_uring_queue_init would refuse).
     */
    int (*init)(struct io_uring *ring, unsigned entries, unsigned cq_entries,
                pd__engine **out);
    /*
     * Consumes every SQE the caller queued (sq.sqe_head..sq.sqe_tail),
     * starting each request, then posts ready completions into the CQ and
     * returns when at least `wait_nr` CQEs are ready, or `ts` (relative;
     * NULL = no limit) passed (-ETIME, after consuming), or at once when
     * wait_nr == 0. Returns the number of SQEs consumed, or -errno. May be
     * interrupted (-EINTR) like io_uring_enter. An engine that keeps an
     * overflow list in user space (epoll, sim) makes its room for what the
     * requests in flight and those queued can post before consuming any,
     * and returns -ENOMEM, having consumed none, if it cannot: posting a
     * completion never fails and none is ever dropped.
     */
    int (*enter)(pd__engine *e, struct io_uring *ring, unsigned wait_nr,
                 const struct __kernel_timespec *ts);
    int (*register_buf_ring)(pd__engine *e, struct io_uring_buf_ring *br,
                             unsigned entries, unsigned short bgid);
    int (*unregister_buf_ring)(pd__engine *e, unsigned short bgid);
    /* 1: supported; 0: the op completes with -EOPNOTSUPP. */
    int (*probe_op)(pd__engine *e, unsigned opcode);
    /*
     * Frees everything; requests still in flight are abandoned as
     * io_uring_queue_exit would (worker threads are joined first).
     */
    void (*exit)(pd__engine *e, struct io_uring *ring);
} pd__engine_vt;

/*
 * The epoll engine (runtime/engine_epoll*.c): socket-like fds through
 * non-blocking syscalls and epoll readiness, file operations on a fixed
 * pool of worker threads, timeouts on a timer heap. docs/design.md,
 * "The epoll engine", says what it guarantees and what it does not do.
 */
extern const pd__engine_vt pd__engine_epoll;

/*
 * The simulator (runtime/engine_sim*.c): the requests run for real on the
 * calling thread, the order of their completions and the faults injected
 * are a seeded PRNG's, and time is virtual. docs/design.md, "The
 * simulator". pd__sim_init is its init with the runtime's configuration
 * (the seed, the flags); cfg may be NULL.
 */
extern const pd__engine_vt pd__engine_sim;
struct pd_config;
int pd__sim_init(struct io_uring *ring, unsigned entries, const struct pd_config *cfg,
                 pd__engine **out);
/* The seed a simulated ring runs with. */
uint64_t pd__sim_seed_of(const pd__engine *e);
struct pd_runtime;
/*
 * Faults that changed a request's result (an error, a short transfer) the
 * simulator injected on rt so far; 0 for a runtime on another engine.
 */
uint64_t pd__sim_io_faults(const struct pd_runtime *rt);
/*
 * How many completions went through rt's overflow list (the completion
 * queue was full when they were posted) and how many enters it refused
 * with -EBUSY while that list held any; both 0 on another engine.
 */
void pd__sim_overflows(const struct pd_runtime *rt, uint64_t *overflowed, uint64_t *busied);

/*
 * The virtual clock of the simulated ring this thread created or entered
 * last, in CLOCK_MONOTONIC-like ns; NULL when there is none (the runtime's
 * clock is then CLOCK_MONOTONIC).
 */
extern __thread const int64_t *pd__sim_clock;

#endif /* POLLDROP_ENGINE_H */
