/*
 * One suite per invariant of docs/design.md section 5. The cancel-at-every-point
 * harness (test_specs.c) checks them all on every spec; these suites pin
 * each one down on the path where it is easiest to break.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept_one.h"
#include "close_fd.h"
#include "copy_file.h"
#include "engine.h"
#include "grp_recv.h"
#include "ms_accept.h"
#include "ms_recv.h"
#include "ms_sel_mix.h"
#include "ms_sel_recv.h"
#include "ms_select.h"
#include "nested.h"
#include "open_loop.h"
#include "pipe_read.h"
#include "read_file.h"
#include "testutil.h"

struct pipes {
    int p[2], bye[2];
};

static void pipes_open(struct pipes *x)
{
    ck_assert_int_eq(pipe2(x->p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(x->bye, O_CLOEXEC | O_NONBLOCK), 0);
}

static void pipes_close(struct pipes *x)
{
    close(x->p[0]);
    close(x->p[1]);
    close(x->bye[0]);
    close(x->bye[1]);
}

/* Drives a task until its read is in flight. */
static void start_reading(pd_runtime *rt)
{
    pd_stats s;

    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_ge(s.inflight_ops, 1);
}

/* --- 1. no buffer or slot is released while the kernel owns it --- */

static void kernel_owns_case(int sync)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    pipe_read *f;
    pd_task *t;
    pd_stats s;
    char got[8];

    pipes_open(&x);
    t = pd_task_new(rt, &pipe_read_vtable, (void **)&f);
    pipe_read_init(f, x.p[0], -1);
    pd_task_start(t);
    start_reading(rt);
    if (sync) {
        pd__task_drop_sync(t); /* pipe_read_drop; the task is over */
    } else {
        pd_task_cancel(t);
        ck_assert_int_eq(pd_run(rt), 0);
    }
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    /* The buffer is ours again: the kernel must never write into it. */
    memset(f->buf, 'Q', sizeof(f->buf));
    pd_test_write(x.p[1], "late", 4);
    ck_assert_int_eq(pd_run_once(rt, 0), 0);
    usleep(10000);
    ck_assert_int_eq(f->buf[0], 'Q');
    ck_assert_int_eq(read(x.p[0], got, sizeof(got)), 4);
    pd_task_release(t);
    pd_runtime_free(rt);
    pipes_close(&x);
}

START_TEST(kernel_owns_async) { kernel_owns_case(0); }
END_TEST
START_TEST(kernel_owns_sync) { kernel_owns_case(1); }
END_TEST

START_TEST(kernel_owns_child_ops_too)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    pd_task *t;
    pd_stats s;

    pipes_open(&x);
    t = nested_spawn(rt, x.p[0], -1);
    start_reading(rt); /* the child's read is in flight */
    pd_task_cancel(t);
    /* poll_drop is Ready only once the child's completion is reaped. */
    while (pd_task_state(t) == PD_TASK_DROPPING) {
        ck_assert_int_ge(pd_run_once(rt, 1), 0);
        pd_runtime_stats(rt, &s);
        if (pd_task_state(t) == PD_TASK_CANCELLED)
            ck_assert_uint_eq(s.inflight_ops, 0);
    }
    pd_task_release(t);
    pd_runtime_free(rt);
    pipes_close(&x);
}
END_TEST

/*
 * A future polled by one task and handed to pd_drop_async in another: its
 * cancelled read's completion must wake the task dropping it now, not the
 * one that submitted the read (which would not poll the dropper). The
 * future is not a's own: a task's future is destroyed by its task only.
 */
START_TEST(kernel_owns_handed_over_future)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    pipe_read f;
    pd_drop_async *d;
    pd_task *a, *b;
    int turns, hp[2];

    pipes_open(&x);
    ck_assert_int_eq(pipe2(hp, O_CLOEXEC), 0);
    pd_test_rec_start();
    a = pipe_read_spawn(rt, hp[0], -1); /* a waits on a pipe nobody writes */
    start_reading(rt);
    pipe_read_init(&f, x.p[0], -1);
    {
        pd_cx cx = { rt, a, NULL };

        ck_assert_int_eq(pipe_read_poll(&f, &cx, NULL), PD_PENDING);
    }
    start_reading(rt); /* f's read is in flight, submitted by a */
    b = pd_task_new(rt, &pd_drop_async_vtable, (void **)&d);
    pd_drop_async_init(d, pipe_read_dyn(&f));
    pd_task_start(b);
    /* Turns that never block: a read in flight (a's own) would block them. */
    for (turns = 0; turns < 1000 && pd_task_state(b) != PD_TASK_DONE; turns++)
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_msg(pd_task_state(b) == PD_TASK_DONE,
                  "the dropper was never woken by the cancelled read");
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 1);
    pd_task_cancel(a);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_DROP), 2);
    pd_task_release(b);
    pd_task_release(a);
    pd_runtime_free(rt);
    pipes_close(&x);
    close(hp[0]);
    close(hp[1]);
}
END_TEST

Suite *pd_suite_inv_kernel_owns(void)
{
    Suite *s = suite_create("invariant 1: the kernel's buffers");
    TCase *tc = tcase_create("kernel_owns");

    tcase_add_test(tc, kernel_owns_async);
    tcase_add_test(tc, kernel_owns_sync);
    tcase_add_test(tc, kernel_owns_child_ops_too);
    tcase_add_test(tc, kernel_owns_handed_over_future);
    suite_add_tcase(s, tc);
    return s;
}

/* --- 2. exactly-once destruction, on every path --- */

static void expect_drops(long n)
{
    ck_assert_int_eq(pd_test_rec_count("", PD_TRACE_DROP), n);
    ck_assert_int_eq(pd_rec.stray_drop, 0);
    ck_assert_int_eq(pd_rec.nlive, 0);
}

START_TEST(once_completed_then_dropped)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    ssize_t out = 0;

    pipes_open(&x);
    pd_test_write(x.p[1], "abc", 3);
    pd_test_rec_start();
    ck_assert_int_eq(nested_block_on(rt, x.p[0], -1, &out), 0);
    ck_assert_int_eq(out, 3);
    expect_drops(2); /* the parent and its child */
    pd_runtime_free(rt);
    pipes_close(&x);
}
END_TEST

START_TEST(once_cancelled_mid_flight)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    pd_task *t;

    pipes_open(&x);
    pd_test_rec_start();
    t = nested_spawn(rt, x.p[0], -1);
    start_reading(rt);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    expect_drops(2);
    pd_task_release(t);
    pd_runtime_free(rt);
    pipes_close(&x);
}
END_TEST

START_TEST(once_never_polled)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    pd_task *t;
    nested n;

    pipes_open(&x);
    pd_test_rec_start();
    t = nested_spawn(rt, x.p[0], -1);
    pd_task_cancel(t); /* before the first poll */
    ck_assert_int_eq(pd_run(rt), 0);
    nested_init(&n, x.p[0], -1);
    nested_drop(&n);   /* sync, never polled */
    expect_drops(2);   /* the two parents; their child was never initialised */
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_INIT), 0);
    pd_task_release(t);
    pd_runtime_free(rt);
    pipes_close(&x);
}
END_TEST

START_TEST(once_dropped_during_its_own_teardown)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    char fill[4096];
    pipe_read *f;
    pd_task *t;

    pipes_open(&x);
    ck_assert_int_ge(fcntl(x.bye[1], F_SETPIPE_SZ, 4096), 4096);
    memset(fill, 'f', sizeof(fill));
    pd_test_write(x.bye[1], fill, sizeof(fill)); /* the goodbye will block */
    pd_test_rec_start();
    t = pd_task_new(rt, &pipe_read_vtable, (void **)&f);
    pipe_read_init(f, x.p[0], x.bye[1]);
    pd_task_start(t);
    start_reading(rt);
    pd_task_cancel(t);
    ck_assert_int_ge(pd_run_once(rt, 1), 0);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_TEARDOWN), 1);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DROPPING);
    pd__task_drop_sync(t); /* pipe_read_drop in the middle of teardown */
    expect_drops(1);
    pd_task_release(t);
    pd_runtime_free(rt);
    expect_drops(1);
    pipes_close(&x);
}
END_TEST

START_TEST(once_runtime_shutdown_and_free)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    int i;

    pipes_open(&x);
    pd_test_rec_start();
    for (i = 0; i < 4; i++)
        pd_task_release(nested_spawn(rt, x.p[0], -1));
    start_reading(rt);
    ck_assert_int_eq(pd_shutdown(rt), 0);
    expect_drops(8);
    for (i = 0; i < 4; i++)
        pd_task_release(nested_spawn(rt, x.p[0], -1));
    start_reading(rt);
    pd_runtime_free(rt); /* sync drops the second four */
    expect_drops(16);
    pipes_close(&x);
}
END_TEST

Suite *pd_suite_inv_exactly_once(void)
{
    Suite *s = suite_create("invariant 2: exactly-once destruction");
    TCase *tc = tcase_create("exactly_once");

    tcase_add_test(tc, once_completed_then_dropped);
    tcase_add_test(tc, once_cancelled_mid_flight);
    tcase_add_test(tc, once_never_polled);
    tcase_add_test(tc, once_dropped_during_its_own_teardown);
    tcase_add_test(tc, once_runtime_shutdown_and_free);
    suite_add_tcase(s, tc);
    return s;
}

/* --- 3. teardown on every async drop, never on a sync drop --- */

static int goodbyes(struct pipes *x)
{
    char got[256];
    ssize_t n = read(x->bye[0], got, sizeof(got));

    return n < 0 ? 0 : (int)(n / 3);
}

START_TEST(teardown_on_async_drop_of_children_too)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    pd_task *t;

    pipes_open(&x);
    pd_test_rec_start();
    t = nested_spawn(rt, x.p[0], x.bye[1]);
    start_reading(rt);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(goodbyes(&x), 1); /* the child's teardown, through io_uring */
    ck_assert_int_eq(pd_test_rec_count("nested", PD_TRACE_TEARDOWN), 1);
    ck_assert_int_eq(pd_test_rec_count("pipe_read", PD_TRACE_TEARDOWN), 1);
    pd_task_release(t);
    pd_runtime_free(rt);
    pipes_close(&x);
}
END_TEST

START_TEST(teardown_after_completion)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    ssize_t out;

    pipes_open(&x);
    pd_test_write(x.p[1], "x", 1);
    pd_test_rec_start();
    ck_assert_int_eq(pipe_read_block_on(rt, x.p[0], x.bye[1], &out), 0);
    ck_assert_int_eq(goodbyes(&x), 1);
    pd_runtime_free(rt);
    pipes_close(&x);
}
END_TEST

START_TEST(no_teardown_on_sync_drop)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    nested n;

    pipes_open(&x);
    pd_test_rec_start();
    nested_init(&n, x.p[0], x.bye[1]);
    {
        /* Poll it once by hand so that its child's read is in flight. */
        pd_task *t;
        nested *self;

        t = pd_task_new(rt, &nested_vtable, (void **)&self);
        nested_init(self, x.p[0], x.bye[1]);
        pd_task_start(t);
        start_reading(rt);
        pd__task_drop_sync(t); /* nested_drop on the task's future */
        pd_task_release(t);
    }
    nested_drop(&n);
    ck_assert_int_eq(goodbyes(&x), 0);
    ck_assert_int_eq(pd_test_rec_count("", PD_TRACE_TEARDOWN), 0);
    expect_drops(3);
    pd_runtime_free(rt);
    pipes_close(&x);
}
END_TEST

Suite *pd_suite_inv_teardown(void)
{
    Suite *s = suite_create("invariant 3: teardown on async drop only");
    TCase *tc = tcase_create("teardown");

    tcase_add_test(tc, teardown_on_async_drop_of_children_too);
    tcase_add_test(tc, teardown_after_completion);
    tcase_add_test(tc, no_teardown_on_sync_drop);
    suite_add_tcase(s, tc);
    return s;
}

/* --- 4. no allocation after spawn --- */

START_TEST(no_alloc_run_cancel_drop)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    pd_task *t[16];
    char src[128], dst[128];
    long before;
    int i;

    pipes_open(&x);
    pd_test_tmp_path(src, sizeof(src), "src");
    pd_test_tmp_path(dst, sizeof(dst), "dst");
    pd_test_make_file(src, 300000, 9);
    for (i = 0; i < 8; i++)
        t[i] = nested_spawn(rt, x.p[0], x.bye[1]);
    for (; i < 16; i++)
        t[i] = copy_file_spawn(rt, src, dst);
    before = pd_test_allocs;
    PD_CHECK(pd_run_once(rt, 0) >= 0);
    for (i = 0; i < 4; i++)
        pd_task_cancel(t[i]);
    for (i = 0; i < 10; i++)
        PD_CHECK(pd_run_once(rt, 1) >= 0);
    PD_CHECK(pd_shutdown(rt) == 0);
    ck_assert_int_eq(pd_test_allocs - before, 0);
    for (i = 0; i < 16; i++)
        pd_task_release(t[i]);
    pd_runtime_free(rt);
    pipes_close(&x);
    unlink(src);
    unlink(dst);
}
END_TEST

START_TEST(no_alloc_block_on)
{
    pd_runtime *rt = pd_test_rt();
    char src[128], dst[128];
    long before;
    ssize_t out;

    pd_test_tmp_path(src, sizeof(src), "src");
    pd_test_tmp_path(dst, sizeof(dst), "dst");
    pd_test_make_file(src, 200000, 4);
    before = pd_test_allocs;
    PD_CHECK(copy_file_block_on(rt, src, dst, &out) == 0);
    ck_assert_int_eq(pd_test_allocs - before, 0); /* block_on allocates nothing */
    ck_assert_int_eq(out, 200000);
    pd_runtime_free(rt);
    unlink(src);
    unlink(dst);
}
END_TEST

START_TEST(spawn_allocates_exactly_once)
{
    pd_runtime *rt = pd_test_rt();
    long before = pd_test_allocs, at_spawn;
    pd_task *t = accept_one_spawn(rt, -1);

    long at_end;

    at_spawn = pd_test_allocs - before;
    PD_CHECK(pd_run(rt) == 0);
    at_end = pd_test_allocs - before;
    ck_assert_int_eq(at_spawn, 1);
    ck_assert_int_eq(at_end, 1);
    ck_assert_int_eq(*(const int *)pd_task_output(t), -EBADF);
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

/*
 * The counter the harness relies on sees every allocation of the process,
 * not only calls from our own objects: libc's internal ones (strdup,
 * stdio), each allocator entry point, and it does so in the sanitized build
 * too (where ASan's allocator serves them).
 */
START_TEST(alloc_counter_sees_everything)
{
    static const char *volatile text = "counted";
    void *volatile p = NULL;
    long before;
    FILE *f;

    before = pd_harness_allocs();
    p = strdup(text);
    ck_assert_int_eq(pd_harness_allocs() - before, 1);
    free(p);
    before = pd_harness_allocs();
    p = malloc(24);
    p = realloc(p, 4096);
    free(p);
    p = calloc(3, 8);
    free(p);
    PD_CHECK(posix_memalign((void **)&p, 64, 100) == 0); /* ck_assert allocates */
    free(p);
    p = aligned_alloc(64, 128);
    free(p);
    ck_assert_int_eq(pd_harness_allocs() - before, 5);
    before = pd_harness_allocs();
    f = fopen("/proc/self/stat", "r");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_ge(pd_harness_allocs() - before, 1); /* stdio's FILE */
}
END_TEST

Suite *pd_suite_inv_no_alloc(void)
{
    Suite *s = suite_create("invariant 4: no allocation after spawn");
    TCase *tc = tcase_create("no_alloc");

    tcase_add_test(tc, no_alloc_run_cancel_drop);
    tcase_add_test(tc, no_alloc_block_on);
    tcase_add_test(tc, spawn_allocates_exactly_once);
    tcase_add_test(tc, alloc_counter_sees_everything);
    suite_add_tcase(s, tc);
    return s;
}

/* --- 5. no fd leak on any cancellation path --- */

/*
 * The accept completes (a client connected) but the future is dropped
 * before its then runs: the generated code must close the accepted fd.
 */
static void accept_rounds(int sync)
{
    pd_runtime *rt = pd_test_rt();
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), fds, round, raced = 0;

    fds = pd_test_fd_count();
    for (round = 0; round < 1000; round++) {
        accept_one *f;
        pd_task *t = pd_task_new(rt, &accept_one_vtable, (void **)&f);
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pd_stats s;

        accept_one_init(f, lfd);
        pd_task_start(t);
        ck_assert_int_ge(pd_run_once(rt, 0), 0); /* accept in flight */
        ck_assert_int_eq(connect(c, (struct sockaddr *)&addr, sizeof(addr)), 0);
        if (round & 1)
            ck_assert_int_ge(pd_run_once(rt, 0), 0); /* let the completion in */
        if (sync) {
            /*
             * accept_one_drop on the task's future, and the task is over:
             * the runtime must not destroy the future a second time.
             */
            pd__task_drop_sync(t);
        } else {
            pd_task_cancel(t);
            ck_assert_int_eq(pd_run(rt), 0);
        }
        pd_runtime_stats(rt, &s);
        ck_assert_uint_eq(s.inflight_ops, 0);
        if (pd_task_state(t) == PD_TASK_DONE) {
            close(*(const int *)pd_task_output(t)); /* it won the race: ours */
        } else {
            raced++;
        }
        pd_task_release(t);
        close(c);
        /* A still-queued connection that nobody accepted is not an fd of ours. */
        ck_assert_int_eq(pd_test_fd_count(), fds);
    }
    ck_assert_int_gt(raced, 0);
    close(lfd);
    pd_runtime_free(rt);
}

START_TEST(no_fd_leak_accept_async) { accept_rounds(0); }
END_TEST
START_TEST(no_fd_leak_accept_sync) { accept_rounds(1); }
END_TEST

START_TEST(no_fd_leak_openat_cancelled)
{
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count(), round;
    pd_stats s;

    for (round = 0; round < 500; round++) {
        pd_task *t = open_loop_spawn(rt, "/etc/hostname");

        ck_assert_int_ge(pd_run_once(rt, round & 1), 0);
        if (round & 2)
            ck_assert_int_ge(pd_run_once(rt, 0), 0);
        pd_task_cancel(t);
        ck_assert_int_eq(pd_run(rt), 0);
        pd_task_release(t);
        ck_assert_int_eq(pd_test_fd_count(), fds);
    }
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(no_fd_leak_sync_drop_during_close)
{
    /*
     * A sync drop that lands while teardown's close is in flight: the close
     * completes, and drop code must not close the same number again (it may
     * belong to someone else by then).
     */
    pd_runtime *rt = pd_test_rt();
    char path[128], buf[16];
    read_file *f;
    pd_task *t;
    int spy;

    pd_test_tmp_path(path, sizeof(path), "rf");
    pd_test_make_file(path, 10, 1);
    t = pd_task_new(rt, &read_file_vtable, (void **)&f);
    read_file_init(f, path, buf, sizeof(buf));
    pd_task_start(t);
    while (pd_task_state(t) == PD_TASK_RUNNING)
        ck_assert_int_ge(pd_run_once(rt, 1), 0);
    /* The run completed; poll_drop has submitted the close, not reaped it. */
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DROPPING);
    ck_assert_int_ge(f->fd, 0);
    pd__task_drop_sync(t); /* read_file_drop on the task's future */
    ck_assert_int_eq(f->fd, -1);
    pd_task_release(t);
    /* Nothing closed twice: a new fd with the old number stays open. */
    spy = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(spy, 0);
    pd_runtime_free(rt);
    ck_assert_int_ge(fcntl(spy, F_GETFD), 0);
    close(spy);
    unlink(path);
}
END_TEST

/*
 * A sync drop of a future whose close has completed (reaped, the future
 * not yet polled, as the harness's halves leave it): the quiesce takes the
 * close's result and forgets the descriptor, so the drop code, which
 * closes what is still set, sees -1 and closes nothing (the number may be
 * someone else's by then). read_file above owns its fd, and its release
 * resets the field whatever the quiesce did; close_fd's drop code does not.
 */
START_TEST(no_fd_leak_sync_drop_after_close_completed)
{
    pd_runtime *rt = pd_test_rt();
    close_fd *f;
    pd_task *t;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    ck_assert_int_ge(fd, 0);
    t = pd_task_new(rt, &close_fd_vtable, (void **)&f);
    close_fd_init(f, fd);
    pd_task_start(t);
    ck_assert_int_eq(pd__run_polls(rt), 1);
    ck_assert_int_eq(pd__run_enter(rt, 1), 0);
    ck_assert(pd__task_queued(t));
    ck_assert_int_eq(f->fd, fd);
    pd__task_drop_sync(t);
    ck_assert_int_eq(f->fd, -1);
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

/*
 * The verdict generated code trusts when a close it discards completed:
 * Linux releases the descriptor whatever close returns (even -EBADF or
 * -EINTR), except when the request was cancelled before it ran. A close
 * cancelled that way is hard to provoke (io_uring runs a close at
 * submission), so the rule itself is pinned down here.
 */
START_TEST(closed_unless_cancelled)
{
    static const struct {
        int res, closed;
    } cases[] = {
        { 0, 1 }, { -EBADF, 1 }, { -EINTR, 1 }, { -EIO, 1 }, { -ECANCELED, 0 },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pd__op op = { .res = cases[i].res, .st = PD__OP_READY };

        ck_assert_msg(pd__op_closed(&op) == cases[i].closed,
                      "close result %d: closed should be %d", cases[i].res,
                      cases[i].closed);
    }
}
END_TEST

/*
 * A ring broken on purpose, so that every entry fails hard: on io_uring
 * the ring's descriptor is swapped for one that is not a ring (a pipe's,
 * bogus), so io_uring_enter fails with -EOPNOTSUPP; on another engine its
 * table is swapped for a copy whose entry fails with -EBADF, consuming
 * nothing. ring_mend puts back what ring_break took.
 */
typedef struct broken_ring {
    int ring_fd;
    const pd__engine_vt *vt;
    pd__engine_vt fake;
} broken_ring;

static int broken_enter(pd__engine *e, struct io_uring *ring, unsigned wait_nr,
                        const struct __kernel_timespec *ts)
{
    (void)e;
    (void)ring;
    (void)wait_nr;
    (void)ts;
    return -EBADF;
}

static void ring_break(pd_runtime *rt, broken_ring *b, int bogus)
{
    if (rt->engine == NULL) {
        b->ring_fd = rt->ring.enter_ring_fd;
        rt->ring.enter_ring_fd = bogus;
    } else {
        b->vt = rt->engine_vt;
        b->fake = *b->vt;
        b->fake.enter = broken_enter;
        rt->engine_vt = &b->fake;
    }
}

static void ring_mend(pd_runtime *rt, const broken_ring *b)
{
    if (rt->engine == NULL)
        rt->ring.enter_ring_fd = b->ring_fd;
    else
        rt->engine_vt = b->vt;
}

/*
 * A close that gets no submission entry because the ring is broken: the
 * submission queue is full (of requests nobody will see: the reserved
 * user_data of a cancel's own result), and every entry fails hard
 * (ring_break, on either engine).
 * The close went out of line, so its state returned Pending with its task
 * woken; on the next turn the future sees the close completed and forgets
 * its fd: the runtime must have closed it with close(2), whose result then
 * sees.
 */
START_TEST(no_fd_leak_close_without_sqe)
{
    const pd_config cfg = { .entries = 2 };
    pd_runtime *rt;
    broken_ring b;
    int bogus[2], fd, fds;
    pd_task *t;
    const int *out;

    ck_assert_int_eq(pipe2(bogus, O_CLOEXEC), 0);
    fds = pd_test_fd_count();
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    t = close_fd_spawn(rt, fd);
    while (io_uring_sq_space_left(&rt->ring) > 0) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&rt->ring);

        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, PD__UD_CANCEL);
    }
    ring_break(rt, &b, bogus[0]);
    ck_assert_int_lt(pd_run_once(rt, 0), 0); /* the entry fails: the ring is broken */
    ring_mend(rt, &b);
    ck_assert_ptr_null(pd_task_output(t));
    ck_assert_int_eq(pd_test_fd_count(), fds + pd_test_rt_fds(rt)); /* fd closed already */
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    out = pd_task_output(t);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(*out, 0);
    ck_assert_int_eq(pd_test_fd_count(), fds + pd_test_rt_fds(rt)); /* the runtime's */
    ck_assert_int_eq(pd_run(rt), 0);
    pd_test_quiet(rt);
    pd_task_release(t);
    pd_runtime_free(rt);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    close(bogus[0]);
    close(bogus[1]);
}
END_TEST

Suite *pd_suite_inv_no_fd_leak(void)
{
    Suite *s = suite_create("invariant 5: no fd leak");
    TCase *tc = tcase_create("no_fd_leak");

    tcase_add_test(tc, no_fd_leak_accept_async);
    tcase_add_test(tc, no_fd_leak_accept_sync);
    tcase_add_test(tc, no_fd_leak_openat_cancelled);
    tcase_add_test(tc, no_fd_leak_sync_drop_during_close);
    tcase_add_test(tc, no_fd_leak_sync_drop_after_close_completed);
    tcase_add_test(tc, closed_unless_cancelled);
    tcase_add_test(tc, no_fd_leak_close_without_sqe);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

/* --- 6. order: children and ops quiesced before the parent's teardown --- */

START_TEST(order_child_before_parent_teardown)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    pd_task *t;
    int child_drop, parent_td;

    pipes_open(&x);
    pd_test_rec_start();
    t = nested_spawn(rt, x.p[0], x.bye[1]);
    start_reading(rt);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    child_drop = pd_test_rec_find("pipe_read", PD_TRACE_DROP, 0);
    parent_td = pd_test_rec_find("nested", PD_TRACE_TEARDOWN, 0);
    ck_assert_int_ge(child_drop, 0);
    ck_assert_int_ge(parent_td, 0);
    ck_assert_int_lt(child_drop, parent_td);
    ck_assert_int_lt(pd_test_rec_find("pipe_read", PD_TRACE_TEARDOWN, 0), child_drop);
    ck_assert_int_lt(parent_td, pd_test_rec_find("nested", PD_TRACE_DROP, 0));
    pd_task_release(t);
    pd_runtime_free(rt);
    pipes_close(&x);
}
END_TEST

Suite *pd_suite_inv_order(void)
{
    Suite *s = suite_create("invariant 6: order");
    TCase *tc = tcase_create("order");

    tcase_add_test(tc, order_child_before_parent_teardown);
    suite_add_tcase(s, tc);
    return s;
}

/* --- 7. cancelled means cancelled --- */

static void cancelled_case(int sync, int nested_child)
{
    pd_runtime *rt = pd_test_rt();
    struct pipes x;
    void *self;
    pd_task *t;

    pipes_open(&x);
    t = pd_task_new(rt, nested_child ? &nested_vtable : &pipe_read_vtable, &self);
    if (nested_child)
        nested_init(self, x.p[0], -1);
    else
        pipe_read_init(self, x.p[0], -1);
    pd_task_start(t);
    start_reading(rt);
    if (sync) {
        pd__task_drop_sync(t); /* the future's drop; the task is over */
    } else {
        pd_task_cancel(t);
        ck_assert_int_eq(pd_run(rt), 0);
    }
    pd_test_nothing_taken(x.p[0], x.p[1]);
    pd_task_release(t);
    pd_runtime_free(rt);
    pipes_close(&x);
}

START_TEST(cancelled_async) { cancelled_case(0, 0); }
END_TEST
START_TEST(cancelled_sync) { cancelled_case(1, 0); }
END_TEST
START_TEST(cancelled_async_child) { cancelled_case(0, 1); }
END_TEST
START_TEST(cancelled_sync_child) { cancelled_case(1, 1); }
END_TEST

Suite *pd_suite_inv_cancelled(void)
{
    Suite *s = suite_create("invariant 7: cancelled means cancelled");
    TCase *tc = tcase_create("cancelled");

    tcase_add_test(tc, cancelled_async);
    tcase_add_test(tc, cancelled_sync);
    tcase_add_test(tc, cancelled_async_child);
    tcase_add_test(tc, cancelled_sync_child);
    suite_add_tcase(s, tc);
    return s;
}

/*
 * --- 8. buffers and multishot requests: every completion, every path ---
 *
 * The cancel-at-every-suspension-point harness over the multishot specs
 * and the provided-buffer recv, with the groups it checks (every buffer back
 * after every destruction) and turns that reap one completion at a time.
 * Each fixture makes the kernel post several completions in one go (a
 * backlog of connections, data for several buffers, queued before the
 * first poll), so that destructions fall before a completion's then,
 * between two completions posted together, and after the kernel ended the
 * request (a completion without IORING_CQE_F_MORE). The fixtures read the
 * future at each suspension of its run (init keeps its address) to show
 * that every one of those points was reached.
 */

#define MS_BACKLOG 6 /* more than a multishot slot's inline queue */
#define MS_CLIENTS 7

/*
 * For ms_accept, and ms_select (the same accept as a select branch, racing
 * a read of a pipe nobody writes to).
 */
struct msa_ctx {
    int lfd, clients[MS_CLIENTS], nclients, shut, quit[2];
    struct sockaddr_in addr;
    const int *n;          /* the future's count of connections seen */
    const uint8_t *phase;  /* and its phase */
    int last_n;   /* completions seen at the run's last suspension */
    int shut_run; /* the shutdown came while the future was still running */
};

/* Which completion counts each destruction began at; set by after. */
static unsigned msa_at_n, msa_after_end;

/*
 * What every multishot case must show: destructions after each of the
 * completions 0 to last (bits of at), some after the kernel ended the
 * request, and some in each kernel state, reaped-not-seen included.
 */
static void ms_check(const char *future, const pd_harness_stats *st, unsigned at,
                     int last, unsigned after_end)
{
    int i;

    fprintf(stderr, "  %s: %d suspension points, %d destructions (%d in flight, "
            "%d queued, %d completed, %d reaped), %u after the end\n", future,
            st->points, st->runs, st->in_flight, st->queued, st->completed, st->reaped,
            after_end);
    for (i = 0; i <= last; i++)
        ck_assert_msg(at & (1u << i), "%s: never destroyed after %d completions", future,
                      i);
    ck_assert_uint_gt(after_end, 0);
    ck_assert_int_gt(st->reaped, 0);
    ck_assert_int_gt(st->completed, 0);
    ck_assert_int_gt(st->queued, 0);
    ck_assert_int_gt(st->in_flight, 0);
}

static void msa_setup(void *v)
{
    struct msa_ctx *c = v;
    int i;

    memset(c, 0, sizeof(*c));
    c->lfd = pd_test_listener(&c->addr);
    for (i = 0; i < MS_BACKLOG; i++) {
        c->clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(c->clients[i], 0);
        ck_assert_int_eq(connect(c->clients[i], (struct sockaddr *)&c->addr,
                                 sizeof(c->addr)), 0);
    }
    c->nclients = MS_BACKLOG;
    ck_assert_int_eq(pipe2(c->quit, O_CLOEXEC), 0);
}

static void msa_init(void *self, void *v)
{
    struct msa_ctx *c = v;
    ms_accept *f = self;

    ms_accept_init(f, c->lfd, 9);
    c->n = &f->n;
    c->phase = &f->pd__phase;
}

static void mss_init(void *self, void *v)
{
    struct msa_ctx *c = v;
    ms_select *f = self;

    ms_select_init(f, c->lfd, c->quit[0], 9);
    c->n = &f->n;
    c->phase = &f->pd__phase;
}

/*
 * When the harness would wait: one more client, then a shutdown of the
 * listener, which ends the multishot accept with an error (no F_MORE).
 */
static void msa_progress(void *v, int when)
{
    struct msa_ctx *c = v;

    if (when == PD_HARNESS_RUN_SUSPENDED)
        c->last_n = *c->n;
    if (when != PD_HARNESS_WAITING)
        return;
    if (c->nclients < MS_CLIENTS) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || connect(fd, (struct sockaddr *)&c->addr, sizeof(c->addr)) != 0)
            ck_abort_msg("connect: %s", strerror(errno));
        c->clients[c->nclients++] = fd;
    } else if (!c->shut) {
        if (shutdown(c->lfd, SHUT_RD) != 0)
            ck_abort_msg("shutdown: %s", strerror(errno));
        c->shut = 1;
        c->shut_run = *c->phase == PD__PH_RUN;
    }
}

static void msa_after(void *v, const void *out)
{
    struct msa_ctx *c = v;
    int i;

    if (out)
        ck_assert_int_lt(*(const int *)out, 0); /* ended by the shutdown */
    msa_at_n |= 1u << c->last_n;
    /*
     * Shut down while running, yet destroyed before its then returned: the
     * kernel had ended the request (the harness waited for that completion).
     */
    msa_after_end += c->shut_run && !out;
    /*
     * Every connection the future accepted is closed, whether it saw it,
     * had it queued, or it was still in the ring: its client reads EOF
     * (or a reset, if the shutdown dropped it from the backlog).
     */
    if (!c->shut) {
        int fl = fcntl(c->lfd, F_GETFL), fd;

        ck_assert_int_eq(fcntl(c->lfd, F_SETFL, fl | O_NONBLOCK), 0);
        while ((fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
            close(fd);
    }
    for (i = 0; i < c->nclients; i++) {
        struct pollfd p = { .fd = c->clients[i], .events = POLLIN };
        char b;

        ck_assert_int_eq(poll(&p, 1, 5000), 1);
        ck_assert_int_le(read(c->clients[i], &b, 1), 0);
    }
}

static void msa_cleanup(void *v)
{
    struct msa_ctx *c = v;
    int i;

    for (i = 0; i < c->nclients; i++)
        close(c->clients[i]);
    close(c->lfd);
    close(c->quit[0]);
    close(c->quit[1]);
}

static struct msa_ctx msa_c;

static const pd_harness_case msa_cases[] = {
    { .future = "ms_accept", .vt = &ms_accept_vtable, .ctx = &msa_c, .setup = msa_setup,
      .init = msa_init, .progress = msa_progress, .after = msa_after,
      .cleanup = msa_cleanup },
    { .future = "ms_select", .vt = &ms_select_vtable, .ctx = &msa_c, .setup = msa_setup,
      .init = mss_init, .progress = msa_progress, .after = msa_after,
      .cleanup = msa_cleanup },
};

START_TEST(multishot_accept_every_completion)
{
    const pd_harness_opts o = { .multishot = 1 };
    pd_harness_stats st;

    msa_at_n = msa_after_end = 0;
    pd_harness_run_with(&msa_cases[_i], &o, &st);
    /* Destroyed after each of the seven completions but the last (its then returns). */
    ms_check(msa_cases[_i].future, &st, msa_at_n, MS_CLIENTS - 1, msa_after_end);
}
END_TEST

#define MSR_BUFS 4
#define MSR_SIZE 16
#define MSR_CHUNKS 6 /* more data than buffers: the ring runs dry at once */
#define MSR_MORE 2   /* chunks written while the future waits, then the end */

/*
 * For ms_recv (it finishes once it has MSR_CHUNKS + MSR_MORE chunks), and
 * ms_sel_recv (the same recv as a select branch, under a deadline that
 * never fires here and racing a read of a silent pipe; it ends at EOF).
 */
struct msr_ctx {
    int sv[2], quit[2], sel, waits;
    pd_bufgroup *g;
    const long *completions, *ends; /* the future's counters */
    long last_completions, last_ends, written;
};

static unsigned msr_at, msr_after_end;

static void msr_setup(void *v)
{
    struct msr_ctx *c = v;
    char chunk[MSR_SIZE * MSR_CHUNKS];
    int sel = c->sel;

    memset(c, 0, sizeof(*c));
    c->sel = sel;
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->sv), 0);
    ck_assert_int_eq(pipe2(c->quit, O_CLOEXEC), 0);
    memset(chunk, 'm', sizeof(chunk));
    pd_test_write(c->sv[1], chunk, sizeof(chunk));
    c->written = sizeof(chunk);
}

/* Both keep the second completion's buffer in a pd_buf member. */
static void msr_init(void *self, void *v)
{
    struct msr_ctx *c = v;
    ms_recv *f = self;

    ms_recv_init(f, c->sv[0], c->g, MSR_SIZE * (MSR_CHUNKS + MSR_MORE), 2);
    c->completions = &f->completions;
    c->ends = &f->ends;
}

static void mssr_init(void *self, void *v)
{
    struct msr_ctx *c = v;
    ms_sel_recv *f = self;

    ms_sel_recv_init(f, c->sv[0], c->quit[0], c->g, 600000, 2);
    c->completions = &f->completions;
    c->ends = &f->ends;
}

static void msr_progress(void *v, int when)
{
    struct msr_ctx *c = v;

    if (when == PD_HARNESS_RUN_SUSPENDED) {
        c->last_completions = *c->completions;
        c->last_ends = *c->ends;
    }
    if (when != PD_HARNESS_WAITING)
        return;
    if (c->sel && c->waits >= MSR_MORE) {
        if (c->waits++ == MSR_MORE && shutdown(c->sv[1], SHUT_WR) != 0)
            ck_abort_msg("shutdown: %s", strerror(errno));
    } else {
        char chunk[MSR_SIZE];

        memset(chunk, 'n', sizeof(chunk));
        pd_test_write(c->sv[1], chunk, sizeof(chunk));
        c->written += MSR_SIZE;
        c->waits++;
    }
}

static void msr_after(void *v, const void *out)
{
    struct msr_ctx *c = v;

    /* Nothing lost, nothing delivered twice: ms_sel_recv counts every byte. */
    if (out && c->sel)
        ck_assert_int_eq(*(const long *)out, c->written);
    else if (out)
        ck_assert_int_ge(*(const long *)out, MSR_SIZE * (MSR_CHUNKS + MSR_MORE));
    if (c->last_completions < 16)
        msr_at |= 1u << c->last_completions;
    msr_after_end += c->last_ends > 0 && !out;
}

static void msr_cleanup(void *v)
{
    struct msr_ctx *c = v;

    close(c->sv[0]);
    close(c->sv[1]);
    close(c->quit[0]);
    close(c->quit[1]);
}

static struct msr_ctx msr_c;
static const pd_harness_group msr_groups[] = { { MSR_BUFS, MSR_SIZE, &msr_c.g } };

static const pd_harness_case msr_cases[] = {
    { .future = "ms_recv", .vt = &ms_recv_vtable, .ctx = &msr_c, .setup = msr_setup,
      .init = msr_init, .progress = msr_progress, .after = msr_after,
      .cleanup = msr_cleanup },
    { .future = "ms_sel_recv", .vt = &ms_sel_recv_vtable, .ctx = &msr_c,
      .setup = msr_setup, .init = mssr_init, .progress = msr_progress,
      .after = msr_after, .cleanup = msr_cleanup },
};

START_TEST(multishot_recv_every_completion)
{
    const pd_harness_opts o = { .groups = msr_groups, .ngroups = 1, .multishot = 1 };
    pd_harness_stats st;

    msr_at = msr_after_end = 0;
    msr_c.sel = _i == 1;
    pd_harness_run_with(&msr_cases[_i], &o, &st);
    /* The first burst: four buffers and the -ENOBUFS that ended the request. */
    ms_check(msr_cases[_i].future, &st, msr_at, MSR_BUFS + 1, msr_after_end);
}
END_TEST

/*
 * A multishot poll_add raced in a select against a child (a long sleep):
 * one byte written each time the harness would wait, until 4 bytes, when
 * the poll's then leaves by GOTO (how 0) or RETURN (how 1). The child is
 * destroyed once on every path with the rest.
 */
struct mix_ctx {
    int p[2], how;
};

static void mix_setup(void *v)
{
    struct mix_ctx *c = v;

    ck_assert_int_eq(pipe2(c->p, O_CLOEXEC | O_NONBLOCK), 0);
}

static void mix_init(void *self, void *v)
{
    struct mix_ctx *c = v;

    ms_sel_mix_init(self, c->p[0], 4, c->how, 600000);
}

static void mix_progress(void *v, int when)
{
    struct mix_ctx *c = v;

    if (when == PD_HARNESS_WAITING)
        pd_test_write(c->p[1], "p", 1);
}

static void mix_after(void *v, const void *out)
{
    struct mix_ctx *c = v;

    if (out)
        ck_assert_int_eq(*(const long *)out, c->how ? 4 : 1004);
}

static void mix_cleanup(void *v)
{
    struct mix_ctx *c = v;

    close(c->p[0]);
    close(c->p[1]);
}

static struct mix_ctx mix_c;

START_TEST(multishot_poll_against_a_child)
{
    const pd_harness_case c = {
        .future = "ms_sel_mix", .vt = &ms_sel_mix_vtable, .ctx = &mix_c,
        .setup = mix_setup, .init = mix_init, .progress = mix_progress,
        .after = mix_after, .cleanup = mix_cleanup,
    };
    const pd_harness_opts o = { .multishot = 1 };
    pd_harness_stats st;

    mix_c.how = _i;
    pd_harness_run_with(&c, &o, &st);
    ck_assert_int_ge(st.points, 4);
    ck_assert_int_gt(st.reaped, 0);
    ck_assert_int_gt(st.completed, 0);
    ck_assert_int_gt(st.in_flight, 0);
}
END_TEST

/*
 * Single-shot recvs into provided buffers, in an io state and a select
 * branch: the first buffer is kept in a pd_buf member, which every
 * destruction must give back.
 */
struct grp_ctx {
    int sv[2], waits;
    pd_bufgroup *g;
};

static void grp_setup(void *v)
{
    struct grp_ctx *c = v;

    memset(c, 0, sizeof(*c));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->sv), 0);
}

static void grp_init(void *self, void *v)
{
    struct grp_ctx *c = v;

    /* An idle timer that never fires while the fixture feeds it. */
    grp_recv_init(self, c->sv[0], c->g, 60000);
}

/* A few messages, one per wait, then EOF. */
static void grp_progress(void *v, int when)
{
    struct grp_ctx *c = v;

    if (when != PD_HARNESS_WAITING)
        return;
    if (c->waits++ < 3)
        pd_test_write(c->sv[1], "abcdefgh", 8);
    else if (shutdown(c->sv[1], SHUT_WR) != 0)
        ck_abort_msg("shutdown: %s", strerror(errno));
}

static void grp_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const long *)out, 24);
}

static void grp_cleanup(void *v)
{
    struct grp_ctx *c = v;

    close(c->sv[0]);
    close(c->sv[1]);
}

static struct grp_ctx grp_c;
static const pd_harness_group grp_groups[] = { { 2, 8, &grp_c.g } };

START_TEST(group_recv_every_point)
{
    const pd_harness_case c = {
        .future = "grp_recv", .vt = &grp_recv_vtable, .ctx = &grp_c,
        .setup = grp_setup, .init = grp_init, .progress = grp_progress,
        .after = grp_after, .cleanup = grp_cleanup,
    };
    const pd_harness_opts o = { .groups = grp_groups, .ngroups = 1 };
    pd_harness_stats st;

    pd_harness_run_with(&c, &o, &st);
    ck_assert_int_ge(st.points, 4);
    ck_assert_int_gt(st.in_flight, 0);
    ck_assert_int_gt(st.completed, 0);
}
END_TEST

Suite *pd_suite_inv_buffers(void)
{
    Suite *s = suite_create("invariant 8: buffers, multishot at every completion");
    TCase *tc = tcase_create("buffers");

    tcase_set_timeout(tc, 120);
    /* The cancel-point tests: make explore runs them under the simulator. */
    tcase_set_tags(tc, "harness");
    tcase_add_loop_test(tc, multishot_accept_every_completion, 0,
                        (int)(sizeof(msa_cases) / sizeof(msa_cases[0])));
    tcase_add_loop_test(tc, multishot_recv_every_completion, 0,
                        (int)(sizeof(msr_cases) / sizeof(msr_cases[0])));
    tcase_add_loop_test(tc, multishot_poll_against_a_child, 0, 2);
    tcase_add_test(tc, group_recv_every_point);
    suite_add_tcase(s, tc);
    return s;
}
