/* lines [-p PORT] [-i IDLE_MS]: a line server on 127.0.0.1 (docs/examples.md).
   It sends each line back, closes a connection idle for IDLE_MS (default 60 s),
   and on SIGTERM or SIGINT says "bye" to every open connection, then exits. */
#include <unistd.h>

#include "../args.h"
#include "lines_server.h"

int main(int argc, char **argv)
{
    long port = 7070, idle = 60000;
    int opt, ret, out = 0;
    pd_runtime *rt = NULL;
    sigset_t sigs;

    while ((opt = getopt(argc, argv, "p:i:")) != -1)
        if (opt == '?' || parse_long(optarg, opt == 'i', opt == 'p' ? 65535 : 1L << 40,
                                     opt == 'p' ? &port : &idle) < 0)
            return fputs("usage: lines [-p PORT] [-i IDLE_MS]\n", stderr), 1;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* one sent before the server waits for it */
    if ((ret = pd_runtime_new(&rt, NULL)) == 0 &&
        (ret = lines_server_block_on(rt, (int)port, idle, sigs, &out)) == 0)
        ret = pd_shutdown(rt); /* every connection's teardown says bye */
    pd_runtime_free(rt);
    if (ret < 0 || out < 0)
        fprintf(stderr, "lines: %s\n", strerror(ret < 0 ? -ret : -out));
    return ret < 0 || out < 0;
}
