/*
 * dcopy: copy the tree SRC to DST, 8 files at once, under one deadline
 * (docs/examples.md). Exit status: 0 when all was copied, 1 on an error,
 * 2 on the deadline or SIGINT; no half-written file is left.
 *
 *   build/dcopy [-t DEADLINE_MS] SRC DST
 */
#include <signal.h>
#include <unistd.h>

#include "../args.h"
#include "dcopy.h"

int main(int argc, char **argv)
{
    long ms = 1L << 40; /* no -t: no deadline (35 years) */
    int opt, ret, status = 1;
    pd_runtime *rt = NULL;
    sigset_t sigs;

    while ((opt = getopt(argc, argv, "t:")) != -1)
        if (opt != 't' || parse_long(optarg, 1, 1L << 40, &ms) < 0)
            goto usage;
    if (argc - optind != 2)
        goto usage;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    ret = pd_runtime_new(&rt, NULL);
    if (ret == 0)
        ret = dcopy_block_on(rt, argv[optind], argv[optind + 1], ms, sigs, &status);
    pd_runtime_free(rt);
    if (ret < 0)
        fprintf(stderr, "dcopy: %s\n", strerror(-ret));
    return ret < 0 ? 1 : status;
usage:
    fputs("usage: dcopy [-t DEADLINE_MS] SRC DST\n", stderr);
    return 1;
}
