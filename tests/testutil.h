/*
 * Shared test helpers: allocation counting, fd counting, a recorder of the
 * lifecycle events generated futures emit, and io_uring availability.
 */
#ifndef PD_TESTUTIL_H
#define PD_TESTUTIL_H

#include <check.h>
#include <stddef.h>

#include "harness.h"
#include "polldrop.h"

/*
 * Check's ck_assert_* record a mark point on success, and that allocates
 * (libcheck is linked statically, so its malloc calls are counted too).
 * Inside a region whose allocations are counted, use PD_CHECK: it costs
 * nothing unless it fails.
 */
#define PD_CHECK(expr)                                                         \
    do {                                                                       \
        if (!(expr))                                                           \
            ck_abort_msg("%s:%d: check failed: %s", __FILE__, __LINE__, #expr); \
    } while (0)

/*
 * Every ck_assert_* that passes calls Check's _mark_point, which allocates
 * and writes a message to the runner (one write(2) each; the runner reads
 * them back at the test's end), so that a test that crashes or times out
 * is reported at the last assertion it passed. Tests that assert in loops
 * of thousands of turns sent each of them: here a mark point is passed on
 * only when it is not the one passed on last in this process, which leaves
 * what Check knows of the last assertion passed exactly as it was.
 */
void pd_test_mark_point(const char *file, int line);
#define _mark_point(file, line) pd_test_mark_point(file, line)

/* How many mark points pd_test_mark_point has passed on to Check. */
extern long pd_test_marks_sent;

/*
 * Allocations made by the whole process so far (the harness library counts
 * them: see runtime/harness_alloc.c). Read it twice and subtract.
 */
#define pd_test_allocs (pd_harness_allocs())

/* Open descriptors of this process (entries of /proc/self/fd). */
#define pd_test_fd_count() (pd_harness_fd_count())

/* 1 if io_uring works here; otherwise why not in *why (an -errno). */
int pd_test_uring_ok(int *why);

/*
 * The tag of a tcase whose tests choose every engine they run on
 * themselves (pd_config.engine, or PD_ENGINE set by the test itself): none
 * of them makes a runtime whose engine the caller's PD_ENGINE picks, so a
 * run with PD_ENGINE=epoll repeats the run without it test for test.
 * make test's sanitized run on epoll leaves these tcases out
 * (CK_EXCLUDE_TAGS); the sanitized run on io_uring and the plain runs keep
 * them. tests/test_run_tests.py checks that a file tagging a tcase so makes
 * no runtime through the helpers that leave the engine to PD_ENGINE.
 */
#define PD_TEST_OWN_ENGINE "own-engine"

/* A runtime for one test (on the engine PD_ENGINE chooses); fails the test if none can be had. */
pd_runtime *pd_test_rt(void);

/*
 * The descriptors a runtime holds while it lives: its wake eventfd and the
 * ring (io_uring), or the epoll fd and the workers' eventfd (epoll).
 */
int pd_test_rt_fds(const pd_runtime *rt);
/*
 * Whether every runtime runs on the simulator without faults
 * (PD_ENGINE=sim PD_SIM_FAULTS=0): file ops then complete at submission.
 */
int pd_test_sim_inline(void);
/*
 * For a test that asserts what only a real kernel on the real clock can
 * produce (a wait for real time while the runtime never waits, peers on
 * other threads racing a deadline, file copies that take time): whether
 * the runtimes the suite makes run on the simulator, by the engine name of
 * a runtime made with the default configuration. When they do, it says on
 * stderr that the test is skipped and why; the test then returns at once.
 */
int pd_test_skip_on_sim(const char *test, const char *why);

/*
 * The lifecycle recorder. It pairs every PD_TRACE_INIT with exactly one
 * PD_TRACE_DROP per (future, address), counts teardowns, and keeps an
 * ordered log of events for order assertions.
 */
#define PD_TEST_LOG_MAX 256

typedef struct pd_test_event {
    const char *future;
    pd_trace_event ev;
    const void *self;
} pd_test_event;

typedef struct pd_test_rec {
    long inits, teardowns, drops;
    long double_init;  /* INIT of an object that was still alive */
    long stray_drop;   /* DROP of an object not alive (double drop) */
    int nlog;
    pd_test_event log[PD_TEST_LOG_MAX];
    int nlive;
    struct { const char *future; const void *self; } live[64];
} pd_test_rec;

extern pd_test_rec pd_rec;

/* A note from a spec's code, logged in order with the trace events. */
#define PD_TEST_NOTE ((pd_trace_event)99)
void pd_test_note(const char *what);

/* Clears the recorder and installs it as the trace hook. */
void pd_test_rec_start(void);
/* Counts events of one future type ("" for all) and kind since start. */
long pd_test_rec_count(const char *future, pd_trace_event ev);
/* Index in the log of the first matching event at or after from, or -1. */
int pd_test_rec_find(const char *future, pd_trace_event ev, int from);

/*
 * Tells valgrind's memcheck that the kernel filled buf through io_uring:
 * memcheck cannot see those asynchronous writes and would report the bytes
 * as uninitialised. A no-op without valgrind.
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define pd_test_kernel_wrote(buf, len) ((void)VALGRIND_MAKE_MEM_DEFINED((buf), (len)))
#endif
#endif
#ifndef pd_test_kernel_wrote
#define pd_test_kernel_wrote(buf, len) ((void)(buf), (void)(len))
#endif

/* A TCP listener on 127.0.0.1 with a free port, stored in *addr. */
struct sockaddr_in;
int pd_test_listener(struct sockaddr_in *addr);

/* Writes all of buf to fd (blocking), failing the test on error. */
void pd_test_write(int fd, const void *buf, size_t len);
/* A temporary file path under /tmp, unique per call in this process. */
void pd_test_tmp_path(char *buf, size_t len, const char *tag);
/* Creates a file of len pseudo-random bytes; returns 0. */
int pd_test_make_file(const char *path, size_t len, unsigned seed);
/* Compares two files' contents; returns 1 if equal. */
int pd_test_same_file(const char *a, const char *b);

/*
 * Runs fn in a child process with its stderr captured, and fails the test
 * unless the child died of SIGABRT with `want` in what it wrote: how the
 * checked build's misuse messages are tested.
 */
void pd_test_expect_abort(void (*fn)(void), const char *want);

/* Fails the test unless rt has nothing in flight and no live task. */
void pd_test_quiet(pd_runtime *rt);

/* The end of a test's runtime: pd_test_quiet, then pd_runtime_free. */
void pd_test_rt_done(pd_runtime *rt);

/* A pipe, O_CLOEXEC and O_NONBLOCK: a test's own read of it never blocks. */
typedef struct pd_test_pipe {
    int r, w;
} pd_test_pipe;

pd_test_pipe pd_test_pipe_open(void);
void pd_test_pipe_close(pd_test_pipe p);

/*
 * Invariant 7: a read that was cancelled took nothing. Writes a few bytes
 * to w and fails the test unless r then yields exactly those (the pipe
 * must have been empty).
 */
void pd_test_nothing_taken(int r, int w);

/* Every suite, for the runner. */
Suite *pd_suite_runtime(void);
Suite *pd_suite_drop_async(void);
Suite *pd_suite_read_file(void);
Suite *pd_suite_write_all(void);
Suite *pd_suite_copy_file(void);
Suite *pd_suite_sleep_ms(void);
Suite *pd_suite_cancel_points(void);
Suite *pd_suite_select(void);
Suite *pd_suite_join(void);
Suite *pd_suite_locals(void);
Suite *pd_suite_timeout_ms(void);
Suite *pd_suite_yield(void);
Suite *pd_suite_echo(void);
Suite *pd_suite_openat2(void);
Suite *pd_suite_httpd(void);
Suite *pd_suite_shutdown_deadline(void);
Suite *pd_suite_threads(void);
Suite *pd_suite_multishot(void);
Suite *pd_suite_inv_kernel_owns(void);
Suite *pd_suite_inv_exactly_once(void);
Suite *pd_suite_inv_teardown(void);
Suite *pd_suite_inv_no_alloc(void);
Suite *pd_suite_inv_no_fd_leak(void);
Suite *pd_suite_inv_order(void);
Suite *pd_suite_inv_cancelled(void);
Suite *pd_suite_inv_buffers(void);
Suite *pd_suite_io_ops(void);
Suite *pd_suite_whole_deadline(void);
Suite *pd_suite_arrays(void);
Suite *pd_suite_misuse(void);
Suite *pd_suite_join_task(void);
Suite *pd_suite_owned(void);
Suite *pd_suite_loop(void);
Suite *pd_suite_engine_epoll(void);
Suite *pd_suite_engine(void);
Suite *pd_suite_read_dir(void);
Suite *pd_suite_sigset_wait(void);
Suite *pd_suite_engine_sim(void);
Suite *pd_suite_small_examples(void);
Suite *pd_suite_netlib(void);
Suite *pd_suite_cancel_op(void);

#endif
