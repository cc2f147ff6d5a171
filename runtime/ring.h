/*
 * The runtime's side of the engine seam (engine.h): every call the runtime
 * makes about its ring that is more than a read or write of ring memory.
 *
 * A runtime whose `engine` is NULL runs on io_uring, the default: these
 * helpers call liburing (or, for the turn's entry, the system call)
 * directly, behind one predictable branch, so that the io_uring hot path
 * pays nothing for the seam. Any other engine is called through its
 * table, out of line. Generated code never includes this: it only writes
 * submission entries and reads completions, which every engine supports
 * unchanged. Only the runtime (rt_internal.h) includes it.
 */
#ifndef POLLDROP_RING_H
#define POLLDROP_RING_H

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "polldrop.h"
#include "engine.h"

/*
 * The engine's entry, for every helper below (out of line): consumes what
 * is queued and returns once wait_nr completions are posted, or ts
 * (relative; NULL: no limit) passed (-ETIME). Returns a count or -errno.
 */
int pd__eng_enter_slow(pd_runtime *rt, unsigned wait_nr,
                       const struct __kernel_timespec *ts);

/*
 * The io_uring_enter system call with no signal mask, as liburing makes it:
 * returns its result or -errno, and leaves errno alone. On x86-64 the
 * instruction inline, as liburing's own wrapper does; elsewhere through
 * glibc's syscall(), whose errno is put back.
 */
static inline int pd__sys_uring_enter(int fd, unsigned to_submit, unsigned min_complete,
                                      unsigned flags)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = flags;
    register long r8 __asm__("r8") = 0;          /* no signal mask */
    register long r9 __asm__("r9") = _NSIG / 8;  /* its size, as liburing passes */
    long ret;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"((long)__NR_io_uring_enter), "D"((long)fd), "S"((long)to_submit),
                       "d"((long)min_complete), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return (int)ret;
#else
    int saved = errno;
    long ret = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL,
                       _NSIG / 8);

    if (ret < 0) {
        ret = -errno;
        errno = saved;
    }
    return (int)ret;
#endif
}

/*
 * io_uring_submit_and_wait(ring, wait_nr) (io_uring_submit_and_get_events
 * when wait_nr is 0) without liburing's three calls, which take some forty
 * instructions per turn: publishes the queue's tail and enters (through
 * the ring's enter_ring_fd) with GETEVENTS, exactly as they do for a ring
 * without SQPOLL or a registered ring fd, which polldrop's rings never have
 * (pd__ring_init). The entry,
 * a system call, orders the tail's store before the kernel reads it, as
 * liburing's plain store relies on. Returns the number of entries submitted
 * or -errno.
 */
static inline int pd__uring_enter(struct io_uring *ring, unsigned wait_nr)
{
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;

    sq->sqe_head = tail;
    IO_URING_WRITE_ONCE(*sq->ktail, tail);
    return pd__sys_uring_enter(ring->enter_ring_fd, tail - IO_URING_READ_ONCE(*sq->khead),
                               wait_nr, IORING_ENTER_GETEVENTS);
}

/*
 * Submits what is queued and collects completions (the kernel's deferred
 * work included); waits until wait_nr are posted, and no longer than ts
 * when ts is not NULL. pd__uring_enter, or io_uring_submit_and_wait_timeout
 * with ts, on io_uring. Returns the number of entries submitted or -errno
 * (-ETIME when ts passed first).
 */
static inline int pd__eng_enter(pd_runtime *rt, unsigned wait_nr,
                                struct __kernel_timespec *ts)
{
    if (PD__LIKELY(rt->engine == NULL)) {
        struct io_uring_cqe *cqe;

        if (ts != NULL)
            return io_uring_submit_and_wait_timeout(&rt->ring, &cqe, wait_nr, ts, NULL);
        return pd__uring_enter(&rt->ring, wait_nr);
    }
    return pd__eng_enter_slow(rt, wait_nr, ts);
}

/*
 * Submits what is queued without asking for completions (io_uring_submit:
 * on io_uring, deferred work is not run). Another engine posts what
 * completes at once, which is what submitting does to an io_uring without
 * deferred work. Returns the number submitted or -errno.
 */
static inline int pd__eng_submit(pd_runtime *rt)
{
    if (PD__LIKELY(rt->engine == NULL))
        return io_uring_submit(&rt->ring);
    return pd__eng_enter_slow(rt, 0, NULL);
}

/*
 * Runs the kernel's deferred completion work without submitting
 * (io_uring_get_events). Reached only on a ring with
 * IORING_SETUP_DEFER_TASKRUN, which only io_uring has; another engine
 * collects what is ready (and submits what is queued, as its only entry
 * does: a refusal of those, -EBUSY while its completion queue overflows,
 * is no error of a call that submits nothing on io_uring). Returns 0 or a
 * count, or -errno.
 */
static inline int pd__eng_get_events(pd_runtime *rt)
{
    int ret;

    if (PD__LIKELY(rt->engine == NULL))
        return io_uring_get_events(&rt->ring);
    ret = pd__eng_enter_slow(rt, 0, NULL);
    return ret == -EBUSY ? 0 : ret;
}

/*
 * Blocks until the completion queue holds an entry, or ts (relative; NULL:
 * no limit) passed: io_uring_wait_cqe or io_uring_wait_cqe_timeout, and,
 * like them, reaps nothing. Returns 0, -ETIME, or -errno. On io_uring what
 * is queued stays unsubmitted; another engine consumes it, as its only way
 * to wait is its entry (the callers submit first anyway). That entry may
 * refuse the submission with -EBUSY while the completion queue overflows,
 * which it does only with the queue full: the wait is then over.
 */
static inline int pd__eng_wait(pd_runtime *rt, struct __kernel_timespec *ts)
{
    int ret;

    if (PD__LIKELY(rt->engine == NULL)) {
        struct io_uring_cqe *cqe;

        if (ts != NULL)
            return io_uring_wait_cqe_timeout(&rt->ring, &cqe, ts);
        return io_uring_wait_cqe(&rt->ring, &cqe);
    }
    if (io_uring_cq_ready(&rt->ring) != 0)
        return 0;
    ret = pd__eng_enter_slow(rt, 1, ts);
    if (ret == -EBUSY && io_uring_cq_ready(&rt->ring) != 0)
        return 0;
    return ret < 0 ? ret : 0;
}

/*
 * Sets *has[i] to whether the engine runs ops[i], for i < n (an op it does
 * not run completes with -EOPNOTSUPP). On io_uring one probe of the ring
 * answers them all, into storage on the stack (no allocation; liburing's
 * io_uring_get_probe_ring mallocs).
 */
static inline void pd__eng_has_ops(pd_runtime *rt, const unsigned *ops, uint8_t *const *has,
                                   unsigned n)
{
    union {
        struct io_uring_probe p;
        unsigned char bytes[sizeof(struct io_uring_probe) +
                            256 * sizeof(struct io_uring_probe_op)];
    } u;
    int probed = 0;
    unsigned i;

    if (rt->engine == NULL) {
        memset(&u, 0, sizeof(u));
        probed = io_uring_register_probe(&rt->ring, &u.p, 256) >= 0;
    }
    for (i = 0; i < n; i++) {
        if (rt->engine != NULL)
            *has[i] = (uint8_t)rt->engine_vt->probe_op(rt->engine, ops[i]);
        else
            *has[i] = probed && ops[i] <= u.p.last_op && ops[i] < u.p.ops_len &&
                      (u.p.ops[ops[i]].flags & IO_URING_OP_SUPPORTED);
    }
}

/*
 * Registers br (entries buffers, a power of two; page-aligned memory the
 * caller keeps until it is unregistered) as provided-buffer group bgid.
 * Returns 0 or -errno.
 */
static inline int pd__eng_reg_buf_ring(pd_runtime *rt, struct io_uring_buf_ring *br,
                                       unsigned entries, uint16_t bgid)
{
    struct io_uring_buf_reg reg;

    if (rt->engine != NULL)
        return rt->engine_vt->register_buf_ring(rt->engine, br, entries, bgid);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    return io_uring_register_buf_ring(&rt->ring, &reg, 0);
}

/* Unregisters group bgid: nothing takes buffers from its ring any more. */
static inline void pd__eng_unreg_buf_ring(pd_runtime *rt, uint16_t bgid)
{
    if (rt->engine != NULL)
        rt->engine_vt->unregister_buf_ring(rt->engine, bgid);
    else
        io_uring_unregister_buf_ring(&rt->ring, bgid);
}

/*
 * Closes the ring and frees the engine's state; requests still in flight
 * are abandoned, as io_uring_queue_exit abandons them.
 */
static inline void pd__eng_exit(pd_runtime *rt)
{
    if (rt->engine != NULL)
        rt->engine_vt->exit(rt->engine, &rt->ring);
    else
        io_uring_queue_exit(&rt->ring);
}

#endif /* POLLDROP_RING_H */
