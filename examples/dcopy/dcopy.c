/* dcopy [-t DEADLINE_MS] SRC DST: copies the tree SRC to DST, 8 files at once,
   under one deadline (docs/examples.md). Exit status: 0 all copied, 1 an error,
   2 the deadline or SIGINT. No half-written file is left, whatever ends it. */
#include <unistd.h>

#include "../args.h"
#include "dcopy.h"

int main(int argc, char **argv)
{
    long ms = 0;
    int opt, ret, status = 1;
    pd_runtime *rt = NULL;
    sigset_t sigs;

    while ((opt = getopt(argc, argv, "t:")) == 't' && parse_long(optarg, 0, 1L << 40, &ms) == 0)
        continue;
    if (opt != -1 || argc - optind != 2) {
        fputs("usage: dcopy [-t DEADLINE_MS] SRC DST\n", stderr);
        return 1;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    if ((ret = pd_runtime_new(&rt, NULL)) == 0) /* no -t (or 0): a deadline in 35 years */
        ret = dcopy_block_on(rt, argv[optind], argv[optind + 1], ms ? ms : 1L << 40, sigs, &status);
    pd_runtime_free(rt);
    if (ret < 0)
        fprintf(stderr, "dcopy: %s\n", strerror(-ret));
    return status;
}
