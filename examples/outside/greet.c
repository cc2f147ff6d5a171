/*
 * greet: says hello on stdout through the greeter future, which embeds the
 * library's write_all; run as a task, its async drop says "bye" too.
 *
 *   build/greet [NAME]
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <polldrop/polldrop.h>
#include "greeter.h"

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "world";
    pd_runtime *rt;
    ssize_t n = 0;
    int ret = pd_runtime_new(&rt, NULL);

    if (ret < 0) {
        fprintf(stderr, "greet: no runtime: %s\n", strerror(-ret));
        return 1;
    }
    /* pd_block_on async-drops the future once it is done: hello, then bye. */
    ret = greeter_block_on(rt, STDOUT_FILENO, name, &n);
    pd_runtime_free(rt);
    if (ret < 0 || n < 0) {
        fprintf(stderr, "greet: %s\n", strerror(ret < 0 ? -ret : (int)-n));
        return 1;
    }
    return 0;
}
