/*
 * Structured concurrency: select, join, state-local storage, linked
 * timeouts and YIELD. The cancel-at-every-point harness covers the new
 * library specs in test_specs.c.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "first_of.h"
#include "join_two.h"
#include "nops.h"
#include "pair_copy.h"
#include "read_deadline.h"
#include "read_timeout.h"
#include "sel_accept.h"
#include "sel_order.h"
#include "spinner.h"
#include "testutil.h"
#include "two_buffers.h"

/* --- select --- */

START_TEST(select_loser_is_quiesced_before_winner_then)
{
    pd_runtime *rt = pd_test_rt();
    int p[2], bye[2], loser_drop, winner;
    long out = 0;
    char got[8];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(bye, O_CLOEXEC | O_NONBLOCK), 0);
    pd_test_rec_start();
    ck_assert_int_eq(sel_order_block_on(rt, p[0], bye[1], (int *)&out), 0);
    ck_assert_int_eq((int)out, 2);
    loser_drop = pd_test_rec_find("pipe_read", PD_TRACE_DROP, 0);
    winner = pd_test_rec_find("winner then", PD_TEST_NOTE, 0);
    ck_assert_int_ge(loser_drop, 0);
    ck_assert_int_gt(winner, loser_drop);
    /* The loser's teardown ran (its goodbye went out) before the winner's then. */
    ck_assert_int_lt(pd_test_rec_find("pipe_read", PD_TRACE_TEARDOWN, 0), loser_drop);
    ck_assert_int_eq(read(bye[0], got, sizeof(got)), 3);
    close(p[0]);
    close(p[1]);
    close(bye[0]);
    close(bye[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(select_read_wins_when_data_is_there)
{
    pd_runtime *rt = pd_test_rt();
    int p[2];
    char buf[16];
    ssize_t out = 0;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_test_write(p[1], "ready", 5);
    ck_assert_int_eq(read_timeout_block_on(rt, p[0], buf, sizeof(buf), 10000, &out), 0);
    ck_assert_int_eq(out, 5);
    pd_test_kernel_wrote(buf, 5);
    ck_assert_mem_eq(buf, "ready", 5);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(select_loser_read_leaves_later_data)
{
    pd_runtime *rt = pd_test_rt();
    int p[2], round;
    char buf[16];
    ssize_t out = 0;
    pd_stats s;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    for (round = 0; round < 20; round++) {
        ck_assert_int_eq(read_timeout_block_on(rt, p[0], buf, sizeof(buf), 1, &out), 0);
        ck_assert_int_eq(out, -ETIMEDOUT);
        pd_runtime_stats(rt, &s);
        ck_assert_uint_eq(s.inflight_ops, 0);
        /* Cancelled means cancelled: the next reader gets this. */
        pd_test_write(p[1], "later", 5);
        ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 5);
        ck_assert_mem_eq(buf, "later", 5);
    }
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(select_losing_accept_never_leaks)
{
    pd_runtime *rt = pd_test_rt();
    struct sockaddr_in addr;
    int lfd = pd_test_listener(&addr), fds, round, accepted = 0, lost = 0, pending;

    fds = pd_test_fd_count();
    for (round = 0; round < 3000; round++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), out = 0;

        /* A connection is already queued: accept and nop both complete, and
         * the nop wins the tie; the accepted fd must be closed. */
        ck_assert_int_eq(connect(c, (struct sockaddr *)&addr, sizeof(addr)), 0);
        ck_assert_int_eq(sel_accept_block_on(rt, lfd, &out), 0);
        if (out >= 0) {
            accepted++;
            close(out);
        } else {
            lost++;
        }
        close(c);
        ck_assert_int_eq(pd_test_fd_count(), fds);
    }
    /* Had the losing accept not taken the connection, it would still be queued. */
    {
        int probe = fcntl(lfd, F_GETFL);

        fcntl(lfd, F_SETFL, probe | O_NONBLOCK);
        pending = accept(lfd, NULL, NULL);
        ck_assert_int_eq(pending, -1);
    }
    fprintf(stderr, "  select accept/nop: accept won %d, nop won %d of 3000 "
            "(every losing accept's fd closed)\n", accepted, lost);
    ck_assert_int_gt(lost, 0);
    close(lfd);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(select_losing_openat_never_leaks)
{
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count(), round, a = 0;

    for (round = 0; round < 3000; round++) {
        int out = -1;

        ck_assert_int_eq(first_of_block_on(rt, "/etc/hostname", "/etc/passwd", &out), 0);
        ck_assert_int_ge(out, 0);
        a += fcntl(out, F_GETFD) >= 0;
        close(out);
        ck_assert_int_eq(pd_test_fd_count(), fds);
    }
    ck_assert_int_eq(a, 3000);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(select_error_of_the_winner)
{
    pd_runtime *rt = pd_test_rt();
    int out = 0;

    ck_assert_int_eq(first_of_block_on(rt, "/nonexistent/a", "/nonexistent/b", &out), 0);
    ck_assert_int_eq(out, -ENOENT);
    pd_runtime_free(rt);
}
END_TEST

static void drop_during(pd_task *(*spawn)(pd_runtime *, int), int sync)
{
    pd_runtime *rt = pd_test_rt();
    int p[2], fds;
    pd_task *t;
    pd_stats s;
    long allocs;
    char buf[8];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fds = pd_test_fd_count();
    pd_test_rec_start();
    t = spawn(rt, p[0]);
    allocs = pd_test_allocs;
    PD_CHECK(pd_run_once(rt, 0) >= 0);
    PD_CHECK(pd_run_once(rt, 0) >= 0);
    if (sync) {
        pd__task_drop_sync(t); /* its future's drop; the task is then over */
    } else {
        pd_task_cancel(t);
    }
    PD_CHECK(pd_run(rt) == 0);
    allocs = pd_test_allocs - allocs;
    ck_assert_int_eq(allocs, 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_int_eq(pd_rec.nlive, 0);
    ck_assert_int_eq(pd_rec.stray_drop, 0);
    pd_test_write(p[1], "x", 1);
    ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 1);
    pd_task_release(t);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}

static pd_task *spawn_read_timeout(pd_runtime *rt, int fd)
{
    static char buf[16];

    return read_timeout_spawn(rt, fd, buf, sizeof(buf), 60000);
}

static pd_task *spawn_join_two(pd_runtime *rt, int fd)
{
    return join_two_spawn(rt, fd);
}

START_TEST(select_dropped_while_pending_async) { drop_during(spawn_read_timeout, 0); }
END_TEST
START_TEST(select_dropped_while_pending_sync) { drop_during(spawn_read_timeout, 1); }
END_TEST

Suite *pd_suite_select(void)
{
    Suite *s = suite_create("select");
    TCase *tc = tcase_create("select");

    tcase_add_test(tc, select_loser_is_quiesced_before_winner_then);
    tcase_add_test(tc, select_read_wins_when_data_is_there);
    tcase_add_test(tc, select_loser_read_leaves_later_data);
    tcase_add_test(tc, select_losing_accept_never_leaks);
    tcase_add_test(tc, select_losing_openat_never_leaks);
    tcase_add_test(tc, select_error_of_the_winner);
    tcase_add_test(tc, select_dropped_while_pending_async);
    tcase_add_test(tc, select_dropped_while_pending_sync);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

/* --- join --- */

START_TEST(join_waits_for_every_branch)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t;
    int p[2], i;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    t = join_two_spawn(rt, p[0]);
    for (i = 0; i < 5; i++)
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
    /* The nop finished long ago; the read has not. */
    ck_assert_int_eq(pd_task_state(t), PD_TASK_RUNNING);
    pd_test_write(p[1], "abc", 3);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(*(const long *)pd_task_output(t), 0 * 1000 + 3);
    pd_task_release(t);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(join_copies_two_files)
{
    pd_runtime *rt = pd_test_rt();
    char s1[128], d1[128], s2[128], d2[128];
    ssize_t out = 0;
    long allocs = pd_test_allocs;

    pd_test_tmp_path(s1, sizeof(s1), "s1");
    pd_test_tmp_path(d1, sizeof(d1), "d1");
    pd_test_tmp_path(s2, sizeof(s2), "s2");
    pd_test_tmp_path(d2, sizeof(d2), "d2");
    pd_test_make_file(s1, 300000, 1);
    pd_test_make_file(s2, 70000, 2);
    allocs = pd_test_allocs;
    PD_CHECK(pair_copy_block_on(rt, s1, d1, s2, d2, &out) == 0);
    allocs = pd_test_allocs - allocs;
    ck_assert_int_eq(allocs, 0);
    ck_assert_int_eq(out, 370000);
    ck_assert(pd_test_same_file(s1, d1));
    ck_assert(pd_test_same_file(s2, d2));
    pd_runtime_free(rt);
    unlink(s1);
    unlink(d1);
    unlink(s2);
    unlink(d2);
}
END_TEST

START_TEST(join_reports_the_first_error)
{
    pd_runtime *rt = pd_test_rt();
    char s1[128], d1[128];
    ssize_t out = 0;
    int fds = pd_test_fd_count();

    pd_test_tmp_path(s1, sizeof(s1), "s1");
    pd_test_tmp_path(d1, sizeof(d1), "d1");
    pd_test_make_file(s1, 1000, 1);
    ck_assert_int_eq(pair_copy_block_on(rt, s1, d1, "/nonexistent/x", "/tmp/pd-never", &out), 0);
    ck_assert_int_eq(out, -ENOENT);
    ck_assert(pd_test_same_file(s1, d1)); /* the other branch still finished */
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_runtime_free(rt);
    unlink(s1);
    unlink(d1);
}
END_TEST

START_TEST(join_dropped_while_pending_async) { drop_during(spawn_join_two, 0); }
END_TEST
START_TEST(join_dropped_while_pending_sync) { drop_during(spawn_join_two, 1); }
END_TEST

Suite *pd_suite_join(void)
{
    Suite *s = suite_create("join");
    TCase *tc = tcase_create("join");

    tcase_add_test(tc, join_waits_for_every_branch);
    tcase_add_test(tc, join_copies_two_files);
    tcase_add_test(tc, join_reports_the_first_error);
    tcase_add_test(tc, join_dropped_while_pending_async);
    tcase_add_test(tc, join_dropped_while_pending_sync);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

/* --- locals --- */

START_TEST(locals_overlap)
{
    pd_runtime *rt = pd_test_rt();
    int p[2];
    ssize_t out = 0;

    /* Two states with 4 KiB of locals each: one 4 KiB union, not 8 KiB. */
    ck_assert_uint_lt(sizeof(two_buffers), 4096 + 256);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pd_test_write(p[1], "1234", 4);
    close(p[1]);
    ck_assert_int_eq(two_buffers_block_on(rt, p[0], &out), 0);
    ck_assert_int_eq(out, 4);
    close(p[0]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(locals_children_overlap)
{
    /* read_timeout keeps its sleep_ms child and its op slot in one state. */
    ck_assert_uint_lt(sizeof(read_timeout), sizeof(sleep_ms) + 128);
    /* pair_copy holds two 64 KiB copy_file children, side by side. */
    ck_assert_uint_ge(sizeof(pair_copy), 2 * sizeof(copy_file));
}
END_TEST

Suite *pd_suite_locals(void)
{
    Suite *s = suite_create("locals");
    TCase *tc = tcase_create("locals");

    tcase_add_test(tc, locals_overlap);
    tcase_add_test(tc, locals_children_overlap);
    suite_add_tcase(s, tc);
    return s;
}

/* --- timeout_ms --- */

START_TEST(timeout_ms_expires)
{
    pd_runtime *rt = pd_test_rt();
    int p[2];
    char buf[8];
    ssize_t out = 0;
    pd_stats s;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(read_deadline_block_on(rt, p[0], buf, sizeof(buf), 5, &out), 0);
    ck_assert_int_eq(out, -ETIMEDOUT);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0); /* the timeout's own completion was reaped */
    pd_test_write(p[1], "z", 1);
    ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 1);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(timeout_ms_not_reached)
{
    pd_runtime *rt = pd_test_rt();
    int p[2], i;
    char buf[8];
    ssize_t out = 0;
    pd_stats s;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    for (i = 0; i < 100; i++) {
        pd_test_write(p[1], "ok", 2);
        ck_assert_int_eq(read_deadline_block_on(rt, p[0], buf, sizeof(buf), 60000, &out), 0);
        ck_assert_int_eq(out, 2);
        pd_runtime_stats(rt, &s);
        ck_assert_uint_eq(s.inflight_ops, 0);
    }
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(timeout_ms_cancelled_with_its_op)
{
    pd_runtime *rt = pd_test_rt();
    int p[2];
    char buf[8];
    pd_task *t;
    pd_stats s;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    t = read_deadline_spawn(rt, p[0], buf, sizeof(buf), 60000);
    ck_assert_int_ge(pd_run_once(rt, 0), 0);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_run(rt), 0);
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.inflight_ops, 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    pd_task_release(t);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_timeout_ms(void)
{
    Suite *s = suite_create("timeout_ms");
    TCase *tc = tcase_create("timeout_ms");

    tcase_add_test(tc, timeout_ms_expires);
    tcase_add_test(tc, timeout_ms_not_reached);
    tcase_add_test(tc, timeout_ms_cancelled_with_its_op);
    suite_add_tcase(s, tc);
    return s;
}

/* --- YIELD --- */

START_TEST(yield_does_not_starve_others)
{
    pd_runtime *rt = pd_test_rt();
    long seen = 0;
    pd_task *spin = spinner_spawn(rt, 100000, &seen);
    pd_task *io = nops_spawn(rt, 100);

    while (pd_task_state(io) != PD_TASK_DONE)
        ck_assert_int_ge(pd_run_once(rt, 1), 0);
    /* One step per turn: the spinner is nowhere near done. */
    ck_assert_int_lt(seen, 1000);
    ck_assert_int_ge(seen, 100);
    pd_task_cancel(spin);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(spin), PD_TASK_CANCELLED);
    pd_task_release(spin);
    pd_task_release(io);
    pd_runtime_free(rt);
}
END_TEST

START_TEST(yield_loop_completes)
{
    pd_runtime *rt = pd_test_rt();
    long seen = 0, out = 0;

    ck_assert_int_eq(spinner_block_on(rt, 1000, &seen, &out), 0);
    ck_assert_int_eq(out, 1000);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_yield(void)
{
    Suite *s = suite_create("YIELD");
    TCase *tc = tcase_create("yield");

    tcase_add_test(tc, yield_does_not_starve_others);
    tcase_add_test(tc, yield_loop_completes);
    suite_add_tcase(s, tc);
    return s;
}
