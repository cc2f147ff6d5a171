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
    pd_suite_loop,
    pd_suite_engine_epoll,
    pd_suite_engine,
#ifdef PD_CHECKED
    /* Only the checked build catches misuse; the plain one has no such suite. */
    pd_suite_misuse,
#endif
};

int main(void)
{
    SRunner *sr;
    int why, failed, run, i;
    size_t n = sizeof(suites) / sizeof(suites[0]);

    if (!pd_test_uring_ok(&why)) {
        const char *allow = getenv("PD_TESTS_ALLOW_NO_URING");

        /* A machine without io_uring runs no C test: that is a failure,
         * unless whoever runs the tests said they expect it. */
        fprintf(stderr, "polldrop: io_uring is not available here (pd_runtime_new: "
                "%s): none of the %zu C suites can run.\n", strerror(-why), n);
        if (allow && strcmp(allow, "1") == 0) {
            fprintf(stderr, "polldrop: PD_TESTS_ALLOW_NO_URING=1: exiting 0 with "
                    "0 tests run.\n");
            return EXIT_SUCCESS;
        }
        fprintf(stderr, "polldrop: failing; set PD_TESTS_ALLOW_NO_URING=1 to accept "
                "a run without C tests.\n");
        return EXIT_FAILURE;
    }
    sr = srunner_create(suites[0]());
    for (i = 1; i < (int)n; i++)
        srunner_add_suite(sr, suites[i]());
    srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    run = srunner_ntests_run(sr);
    srunner_free(sr);
    printf("%d passed, %d failed\n", run - failed, failed);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
