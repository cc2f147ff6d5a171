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
    pd_suite_select,
    pd_suite_join,
    pd_suite_locals,
    pd_suite_timeout_ms,
    pd_suite_yield,
    pd_suite_echo,
    pd_suite_shutdown_deadline,
    pd_suite_cancel_points,
};

int main(void)
{
    SRunner *sr;
    int why, failed, run, i;
    size_t n = sizeof(suites) / sizeof(suites[0]);

    if (!pd_test_uring_ok(&why)) {
        printf("polldrop: io_uring is not available on this machine (%s); "
               "skipping every runtime test.\n", strerror(-why));
        printf("0 passed, 0 failed, %zu skipped\n", n);
        return 0;
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
