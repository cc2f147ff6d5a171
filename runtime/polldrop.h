/*
 * polldrop: asynchronous destructors for C, over io_uring.
 *
 * This is the public runtime API (docs/design.md section 4). Generated futures
 * include this header as "polldrop.h": in the source tree that takes
 * `-I runtime -I build/gen` and `build/libpolldrop.a` plus liburing; once
 * installed, `pkg-config --cflags --libs polldrop` gives both.
 *
 * Conventions, as in liburing: functions return 0 (or a count) on success
 * and -errno on failure; errno is never set.
 *
 * Threads: a runtime belongs to the thread that created it. Only that
 * thread may call the functions below on it, on its tasks, and on the
 * futures its tasks run -- except pd_runtime_wake, pd_shutdown_remote,
 * pd_shutdown_remote_deadline and a generated F_spawn_on, which any thread
 * may call on any runtime that outlives the call. Several runtimes in
 * several threads work side by side: the runtime keeps no process-wide
 * state but the trace hook (see pd_set_trace), and generated code none.
 */
#ifndef POLLDROP_H
#define POLLDROP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PD_PENDING = 0, PD_READY = 1 } pd_poll;

typedef struct pd_runtime pd_runtime;
typedef struct pd_task pd_task;
typedef struct pd_cx pd_cx;
/*
 * One await's request slot in a future (opaque): a spec's code names the
 * slot of its await in state s as OP(s), for pd_task_cancel_op.
 */
typedef struct pd__op pd_op;

/*
 * The type-erased face of a future. `size` and `align` describe the future's
 * struct, `out_size` its output type. `poll` writes the output through `out`
 * when it returns PD_READY (out may be NULL to discard it).
 */
typedef struct pd_vtable {
    const char *name;
    size_t size, align, out_size;
    pd_poll (*poll)(void *self, pd_cx *cx, void *out);
    pd_poll (*poll_drop)(void *self, pd_cx *cx);
    void (*drop)(void *self);
} pd_vtable;

typedef struct pd_dyn {
    void *self;
    const pd_vtable *vt;
} pd_dyn;

/*
 * What runs a runtime's requests (docs/design.md, "Engines"). Every
 * engine runs every future unchanged.
 * - PD_ENGINE_AUTO: the environment variable PD_ENGINE chooses (auto,
 *   uring, epoll or sim; unset or empty means auto); auto is io_uring, or
 *   epoll where io_uring setup fails with EPERM, ENOSYS or EINVAL (a
 *   container's seccomp profile, kernel.io_uring_disabled, a kernel
 *   without io_uring). Any other failure is returned, never hidden.
 * - PD_ENGINE_URING: io_uring, or pd_runtime_new fails.
 * - PD_ENGINE_EPOLL: epoll and non-blocking system calls, file operations
 *   on a pool of worker threads; no io_uring system call is made.
 * - PD_ENGINE_SIM: the deterministic simulator: requests run for real on
 *   the runtime's thread, but which completion is posted next, and which
 *   faults the kernel could produce are injected, is chosen by a PRNG
 *   seeded with pd_config.sim_seed; time is virtual (pd_clock_ms and every
 *   timeout jump to the next timer when nothing else can progress).
 *   docs/design.md, "The simulator".
 */
typedef enum {
    PD_ENGINE_AUTO = 0,
    PD_ENGINE_URING,
    PD_ENGINE_EPOLL,
    PD_ENGINE_SIM,
} pd_engine;

/* Runtime configuration; pass NULL to pd_runtime_new for the defaults. */
typedef struct pd_config {
    /*
     * Submission queue size: 0 means 256; otherwise at least 2 (an op with
     * a linked timeout takes two entries at once), or pd_runtime_new fails
     * with -EINVAL. The kernel rounds it up to a power of two.
     */
    unsigned entries;
    unsigned flags;   /* PD_CONFIG_* */
    pd_engine engine; /* PD_ENGINE_AUTO (0) by default: see pd_engine */
    /*
     * PD_ENGINE_SIM only: the PRNG's seed; 0 means the environment
     * variable PD_SIM_SEED, and 1 when that is unset (a seed replays its
     * run exactly for a program whose fds only its own tasks drive).
     */
    uint64_t sim_seed;
    unsigned sim_flags; /* PD_SIM_*: PD_ENGINE_SIM only */
} pd_config;

enum {
    /* Do not ask for IORING_SETUP_SINGLE_ISSUER / DEFER_TASKRUN. */
    PD_CONFIG_NO_DEFER_TASKRUN = 1u << 0,
};

enum {
    /*
     * No injected fault (faults are on by default, unless the environment
     * has PD_SIM_FAULTS=0); completions are still posted in the seed's order.
     */
    PD_SIM_NO_FAULTS = 1u << 0,
    /*
     * Jump the virtual clock as soon as nothing can progress, without first
     * giving other threads or processes a few real milliseconds
     * (PD_SIM_QUIET_MS, 5 by default) to make a waiting fd ready: for
     * programs whose fds only their own tasks drive, such as harness cases.
     */
    PD_SIM_NO_QUIET = 1u << 1,
};

enum {
    PD_TASK_RUNNING = 0,   /* being polled toward Ready */
    PD_TASK_DROPPING = 1,  /* being async-dropped (completed or cancelled) */
    PD_TASK_DONE = 2,      /* completed and async-dropped; output available */
    PD_TASK_CANCELLED = 3, /* cancelled and async-dropped; no output */
};

typedef struct pd_stats {
    uint64_t inflight_ops;      /* ops whose completions the kernel still owes */
    uint64_t live_tasks;        /* started tasks not yet async-dropped */
    uint64_t ops_submitted;
    uint64_t ops_completed;
    uint64_t cancels_submitted;
    uint64_t polls;             /* task polls (poll or poll_drop) */
    uint64_t enter_calls;       /* submit/wait calls into the engine */
    uint64_t ring_flags;        /* IORING_SETUP_* flags the ring was made with
                                   (0 on an engine other than io_uring) */
    uint64_t tasks_forced;      /* tasks whose teardown a shutdown deadline cut short */
    uint64_t cqe_overflow;      /* multishot completions stored out of line
                                   (one allocation each; see docs/api.md) */
} pd_stats;

/*
 * Creates a runtime with its own ring, on the engine cfg->engine chooses
 * (see pd_engine). cfg may be NULL (PD_ENGINE_AUTO and the defaults).
 * Returns 0 and stores the runtime in *rt, or -errno: -EINVAL for
 * cfg->entries 1 (or more than the engine allows), an engine out of range
 * or a PD_ENGINE value that names none; -ENOSYS or -EPERM when
 * PD_ENGINE_URING is asked for where io_uring is unavailable.
 */
int pd_runtime_new(pd_runtime **rt, const pd_config *cfg);

/* The engine rt runs on: "io_uring", "epoll" or "sim". */
const char *pd_runtime_engine(const pd_runtime *rt);

/*
 * Sync-drops every task still alive (blocking until the kernel has returned
 * their buffers), frees them, and closes the ring. References to those
 * tasks are invalid afterwards; a finished task (DONE or CANCELLED) stays
 * valid until its reference is released. Called from inside a task's poll
 * (or poll_drop), it would free the task being polled under it: it prints
 * one line to stderr and does nothing, and the runtime goes on.
 */
void pd_runtime_free(pd_runtime *rt);

/*
 * Runs fut, and any spawned tasks, until fut is Ready, then async-drops fut.
 * It waits for the kernel only while fut is not destroyed, so it returns as
 * soon as fut is, never waiting for other tasks' requests (a timer of
 * theirs, say) first. The output is written to out (which may be NULL).
 * Returns 0, -ECANCELED if fut was cancelled by pd_shutdown, -EDEADLK if
 * fut can never make progress, or another -errno from io_uring. fut must be
 * freshly initialised and must not move while this runs; it is destroyed
 * when this returns. Called from inside a task's poll, it returns -EBUSY at
 * once, having sync-dropped fut (which never ran, so only its drop code
 * runs).
 */
int pd_block_on(pd_runtime *rt, pd_dyn fut, void *out);

/*
 * Runs until no live task is left. Returns 0 or -errno (-EDEADLK as above;
 * -EBUSY, doing nothing, when called from inside a task's poll).
 */
int pd_run(pd_runtime *rt);

/*
 * One turn: polls every task that was ready when the turn began, submits
 * their requests and reaps completions, with one io_uring_enter when
 * possible. When wait != 0 and nothing is runnable, blocks until a
 * completion arrives, whichever task's it is: to run until one task is
 * over, use pd_task_wait. Returns the number of live tasks or -errno
 * (-EBUSY, doing nothing, when called from inside a task's poll).
 */
int pd_run_once(pd_runtime *rt, int wait);

/*
 * Runs t's runtime (t and every other task) until t is over: PD_TASK_DONE,
 * or PD_TASK_CANCELLED, its teardown and drop code done. It waits for the
 * kernel only while t is not over, so it returns as soon as t is, without
 * waiting for other tasks' requests. To cancel one task and wait for its
 * teardown: pd_task_cancel(t), then pd_task_wait(t). Returns 0 (at once if
 * t is over already; pd_task_state says which end it had), -EINVAL if t
 * was never started, -EDEADLK if nothing can make t progress, -EBUSY,
 * doing nothing, when called from inside a task's poll, or another -errno
 * from io_uring.
 */
int pd_task_wait(pd_task *t);

/*
 * Cancels every live task and runs until all are async-dropped (so their
 * teardown runs). Called from inside a task's poll, it only cancels: the
 * enclosing pd_run or pd_block_on finishes the job. Tasks spawned while a
 * shutdown is in progress are cancelled at once. Returns 0 or -errno.
 */
int pd_shutdown(pd_runtime *rt);

/*
 * Like pd_shutdown, but a task still being async-dropped ms milliseconds
 * after the call is forced: the ops it has in flight are cancelled and
 * their completions still awaited, its remaining teardown states are
 * skipped, and its drop code runs. So a peer that stops reading cannot hold
 * the shutdown forever, and no buffer is released while the kernel owns it.
 * Forcing reaches the children the task is destroying, allocates nothing,
 * and destroys every future exactly once; each forced task is counted in
 * pd_stats.tasks_forced. Tasks started after the deadline passed, while the
 * shutdown is still in progress, are forced at once. ms == 0 forces every
 * task at once (quiesce, then drop code: no teardown). When several
 * deadlines are set, the earliest holds; it is forgotten once no live task
 * is left. Called from inside a task's poll it only arms the deadline and
 * cancels, like pd_shutdown. Returns 0, -EINVAL if ms < 0, or -errno.
 */
int pd_shutdown_deadline(pd_runtime *rt, long long ms);

/*
 * Cross-runtime calls: safe from any thread, including threads that run no
 * runtime; target must stay alive until the call returns. They allocate
 * nothing and never block. Not async-signal-safe.
 *
 * pd_runtime_wake makes target's next (or current) blocking wait return,
 * so that its pd_run_once returns and it looks at what was sent to it.
 * Wakes sent before the target looked are merged into one.
 */
int pd_runtime_wake(pd_runtime *target);

/*
 * Asks target to begin pd_shutdown at its next turn: every live task is
 * cancelled (tasks sent by F_spawn_on before the call included), and the
 * target's pd_run returns once all are async-dropped.
 */
int pd_shutdown_remote(pd_runtime *target);

/*
 * pd_shutdown_remote with a deadline ms milliseconds after this call, as
 * pd_shutdown_deadline has: what is still being async-dropped then is
 * forced. The earliest of several deadlines holds. -EINVAL if ms < 0.
 */
int pd_shutdown_remote_deadline(pd_runtime *target, long long ms);

/*
 * Allocates a task with inline storage for a future of type vt; stores the
 * storage's address in *self for F_init. Returns NULL on allocation failure.
 * The returned reference belongs to the caller (see pd_task_release). The
 * future must be initialised, then pd_task_start must be called.
 */
pd_task *pd_task_new(pd_runtime *rt, const pd_vtable *vt, void **self);

/* Must be called once, after the future in the task has been initialised. */
void pd_task_start(pd_task *t);

/*
 * Switches the task to async drop: its future is quiesced, its teardown
 * runs, then its drop code. Does nothing if the task already finished its
 * run phase.
 */
void pd_task_cancel(pd_task *t);

/*
 * Cancels one request of t's future, not the future: op is the slot of
 * one of its awaits (OP(s) in the spec's code, handed out by the future
 * while it waits there). The await then completes with -ECANCELED, or with
 * its own result if the request completed first (a receive that got data
 * keeps it), and the future goes on from there as after any other result;
 * what it does with -ECANCELED is its own choice. Like liburing's
 * io_uring_prep_cancel and libuv's uv_cancel, it only asks: the result
 * comes with the await's completion. Returns 0 when the cancel was queued
 * (it is submitted with the runtime's next entry); -EALREADY when one
 * already was for this request; -ENOENT when op is not in flight (the
 * future is not waiting at that await: not started, or its result is
 * already in, reaped or not); -EINVAL when op is not a slot of t's future
 * or t is over; -EBUSY or the ring's error when no submission entry can be
 * had now (nothing is queued: call again later). op must be a single-shot
 * await's slot whose storage the future is not using for another state
 * (a future's states share their storage): the future's own contract with
 * whoever it hands OP(s) to. Runtime's thread only, inside a turn or not.
 */
int pd_task_cancel_op(pd_task *t, pd_op *op);

/* One of PD_TASK_RUNNING, _DROPPING, _DONE, _CANCELLED. */
int pd_task_state(const pd_task *t);

/* The task's output once it is PD_TASK_DONE; NULL before, or if cancelled. */
const void *pd_task_output(const pd_task *t);

/*
 * Gives up the caller's reference. The task keeps running if it has not
 * finished, and is freed once it has and no reference is left.
 */
void pd_task_release(pd_task *t);

void pd_runtime_stats(const pd_runtime *rt, pd_stats *s);

/*
 * Milliseconds of CLOCK_MONOTONIC (on a thread that runs a simulated
 * runtime, its virtual clock): for a deadline over a whole job, kept
 * as an absolute time and turned into what is left for each wait
 * (`timeout_ms: self->end_ms - pd_clock_ms()`).
 */
long long pd_clock_ms(void);

/*
 * Provided buffer rings. A group is a registered io_uring buffer ring of
 * `count` buffers of `size` bytes, all allocated once, by pd_bufgroup_new.
 * A recv with `group:` lets the kernel pick a buffer when data arrives, so
 * a connection that waits holds no buffer. The kernel hands a buffer to a
 * future as a pd_buf; pd_buf_release gives it back to the group. Only a
 * window of the buffers (32 at first) is in the ring, the buffer given
 * back last first in line, so that traffic holding few buffers at a time
 * writes only a few of them; each -ENOBUFS widens the window by one, up to
 * count (docs/design.md, "Buffer groups").
 */
typedef struct pd_bufgroup pd_bufgroup;

/* One provided buffer, or nothing (data == NULL, group == NULL). */
typedef struct pd_buf {
    void *data;          /* the bytes received */
    uint32_t len;        /* how many */
    uint16_t id;         /* the buffer's index in its group */
    pd_bufgroup *group;  /* the group it returns to */
} pd_buf;

#define PD_BUF_EMPTY ((pd_buf){ NULL, 0, 0, NULL })

/*
 * Creates a buffer group on rt: count (a power of two, at most 32768)
 * buffers of size bytes, registered with the kernel under a group id no
 * live group uses (a freed one first, so ids stay small; taken in O(1)).
 * Returns 0 and stores the group in *out, -EINVAL for a bad count or size,
 * -ENOSPC when 65536 groups are live, -ENOMEM, or the kernel's -errno
 * (-EINVAL or -ENOSYS before Linux 5.19, which has no buffer rings).
 */
int pd_bufgroup_new(pd_runtime *rt, unsigned count, size_t size,
                    pd_bufgroup **out);

/*
 * Unregisters and frees a group. No future may be using it: every recv on
 * it destroyed (none armed, none waiting for a buffer) and every pd_buf
 * from it released. The runtime aborts with a message saying which
 * otherwise, since a later completion or release would write freed memory.
 * pd_runtime_free frees the groups still alive. g may be NULL.
 */
void pd_bufgroup_free(pd_bufgroup *g);

/*
 * Buffers not held (in the ring, or waiting for room in its window): count
 * minus the buffers held by completions already reaped and not yet
 * released. Once nothing holds one, it is count.
 */
unsigned pd_bufgroup_available(const pd_bufgroup *g);

/*
 * Gives the buffer back to its ring and empties *b. Does nothing if *b is
 * empty, so it is idempotent.
 */
void pd_buf_release(pd_buf *b);

/*
 * Built-in future: async-drops a pd_dyn. Its output is nothing (out_size 0).
 * Async-dropping or sync-dropping a pd_drop_async finishes the victim's
 * destruction, so the victim is destroyed exactly once on every path.
 */
typedef struct pd_drop_async {
    pd_dyn victim;
    int done;
} pd_drop_async;

void pd_drop_async_init(pd_drop_async *f, pd_dyn victim);
extern const pd_vtable pd_drop_async_vtable;

/*
 * Built-in future: a join handle, for a future that awaits a task it
 * spawned on the same runtime. Its output (pd_join_out) is 0 once the task
 * is PD_TASK_DONE, its output (vt->out_size bytes) then copied to out
 * unless out is NULL; -ECANCELED if the task was cancelled; -ENOMEM if
 * task is NULL (the spawn failed). The handle takes over the caller's
 * reference and releases it when it is destroyed. Destroyed while the task
 * still runs, it cancels the task: an async drop of the handle waits for
 * the task's async drop (its teardown included) to finish, a sync drop
 * sync-drops the task's future in place. Nothing is allocated. In a spec:
 * a field {name: j, future: pd_join}, awaited with args: [task, out].
 */
typedef struct pd_join {
    pd_task *task;
    void *out;
} pd_join;

typedef int pd_join_out;

void pd_join_init(pd_join *j, pd_task *task, void *out);
extern const pd_vtable pd_join_vtable;

/*
 * Lifecycle tracing. Generated futures report these events to the installed
 * trace function, if any: when they are initialised, when their teardown
 * begins (async drop only) and when their drop code runs. One process-wide
 * hook; pass NULL to remove it. Cheap when unset: a single test per event.
 *
 * The hook is the one process-wide state of the runtime: install or remove
 * it while no other thread runs a runtime or initialises a future. With
 * several runtime threads the installed fn is called from all of them (and
 * F_spawn_on's caller traces the INIT), so it must be thread-safe.
 */
typedef enum {
    PD_TRACE_INIT = 0,
    PD_TRACE_TEARDOWN = 1,
    PD_TRACE_DROP = 2,
} pd_trace_event;

typedef void (*pd_trace_fn)(void *arg, const char *future, pd_trace_event ev,
                            const void *self);

void pd_set_trace(pd_trace_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

/* Inline machinery for generated code (pd__ names): not a public API. */
#include "pd_internal.h"

#endif /* POLLDROP_H */
