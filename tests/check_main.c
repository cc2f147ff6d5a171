/*
 * The single Check runner for every C suite. Each test runs in its own
 * process (Check's fork mode), so fd and allocation counts are per test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef Suite *(*suite_fn)(void);

static const suite_fn suites[] = {
    pd_suite_runtime,
    pd_suite_drop_async,
    pd_suite_read_file,
    pd_suite_write_all,
    pd_suite_copy_file,
    pd_suite_sleep_ms,
    pd_suite_inv_kernel_owns,
    pd_suite_inv_exactly_once,
    pd_suite_inv_teardown,
    pd_suite_inv_no_alloc,
    pd_suite_inv_no_fd_leak,
    pd_suite_inv_order,
    pd_suite_inv_cancelled,
    pd_suite_inv_buffers,
    pd_suite_select,
    pd_suite_join,
    pd_suite_locals,
    pd_suite_timeout_ms,
    pd_suite_yield,
    pd_suite_echo,
    pd_suite_openat2,
    pd_suite_httpd,
    pd_suite_shutdown_deadline,
    pd_suite_threads,
    pd_suite_multishot,
    pd_suite_cancel_points,
    pd_suite_io_ops,
    pd_suite_whole_deadline,
    pd_suite_arrays,
    pd_suite_join_task,
    pd_suite_owned,
    pd_suite_loop,
    pd_suite_engine_epoll,
    pd_suite_engine,
    pd_suite_read_dir,
    pd_suite_sigset_wait,
    pd_suite_engine_sim,
    pd_suite_small_examples,
    pd_suite_netlib,
    pd_suite_cancel_op,
#ifdef PD_CHECKED
    /* Only the checked build catches misuse; the plain one has no such suite. */
    pd_suite_misuse,
#endif
};

/*
 * The engine every suite's runtimes get (pd_runtime_new with no config:
 * PD_ENGINE chooses), said on stderr whenever it is not io_uring, so that
 * a run on epoll is never taken for one on io_uring: where io_uring is
 * switched off, auto falls back to epoll and the suites run there, and the
 * tests that need io_uring itself skip, each saying why. Returns the
 * engine's name, or NULL (said too) when no runtime can be made at all.
 */
static const char *pd_test_engine_banner(size_t nsuites)
{
    const char *engine, *env = getenv("PD_ENGINE");
    pd_runtime *rt;
    int ret, why;

    ret = pd_runtime_new(&rt, NULL);
    if (ret < 0) {
        fprintf(stderr, "polldrop: no runtime can be made here (pd_runtime_new with "
                "PD_ENGINE=%s: %s): none of the %zu C suites can run.\n",
                env ? env : "(unset)", strerror(-ret), nsuites);
        return NULL;
    }
    engine = pd_runtime_engine(rt);
    pd_runtime_free(rt);
    if (!pd_test_uring_ok(&why))
        fprintf(stderr, "polldrop: io_uring is not available here (%s): the C suites run "
                "on the %s engine; the tests of io_uring itself are skipped, each saying "
                "so.\n", strerror(-why), engine);
    else if (strcmp(engine, "io_uring") != 0)
        fprintf(stderr, "polldrop: the C suites run on the %s engine (PD_ENGINE=%s).\n",
                engine, env ? env : "");
    return engine;
}

int main(void)
{
    SRunner *sr;
    int failed, run, i;
    size_t n = sizeof(suites) / sizeof(suites[0]);
    const char *engine = pd_test_engine_banner(n);

    if (engine == NULL)
        return EXIT_FAILURE;
    sr = srunner_create(suites[0]());
    for (i = 1; i < (int)n; i++)
        srunner_add_suite(sr, suites[i]());
    srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    run = srunner_ntests_run(sr);
    srunner_free(sr);
    /* The closing line, prefixed with the engine (one word and a colon). */
    printf("%s: %d passed, %d failed\n", engine, run - failed, failed);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
