/*
 * polldrop demo: copy a real file with generated futures, then cancel a
 * read that will never complete and watch its async destructor run.
 *
 *   build/demo [SOURCE [DEST]]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "copy_file.h"
#include "pipe_waiter.h"

static const char *const event_names[] = { "init", "teardown begins", "drop code runs" };

static void on_trace(void *arg, const char *future, pd_trace_event ev, const void *self)
{
    (void)arg;
    printf("    trace: %-12s %-16s (%p)\n", future, event_names[ev], self);
    fflush(stdout);
}

static int same_contents(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb, ca, cb;

    while (same) {
        ca = getc(fa);
        cb = getc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static void print_stats(pd_runtime *rt)
{
    pd_stats s;

    pd_runtime_stats(rt, &s);
    printf("    stats: %llu ops in flight, %llu live tasks, %llu ops submitted, "
           "%llu completed, %llu cancels, %llu polls, %llu enter calls\n",
           (unsigned long long)s.inflight_ops, (unsigned long long)s.live_tasks,
           (unsigned long long)s.ops_submitted, (unsigned long long)s.ops_completed,
           (unsigned long long)s.cancels_submitted, (unsigned long long)s.polls,
           (unsigned long long)s.enter_calls);
}

int main(int argc, char **argv)
{
    const char *src = argc > 1 ? argv[1] : "/proc/self/exe";
    const char *dst = argc > 2 ? argv[2] : "build/demo-copy.bin";
    pd_runtime *rt;
    ssize_t copied = 0;
    int ret, p[2];
    pd_task *t;
    pd_stats s;
    char later[16];

    ret = pd_runtime_new(&rt, NULL);
    if (ret < 0) {
        fprintf(stderr, "demo: cannot make a runtime: %s\n", strerror(-ret));
        return 1;
    }

    printf("1. copy_file %s -> %s (64 KiB buffer inside the future, "
           "write_all children)\n", src, dst);
    ret = copy_file_block_on(rt, src, dst, &copied);
    if (ret < 0 || copied < 0) {
        fprintf(stderr, "demo: copy failed: %s\n", strerror(-(ret < 0 ? ret : (int)copied)));
        pd_runtime_free(rt);
        return 1;
    }
    printf("    copied %zd bytes, %s; sizeof(copy_file) = %zu bytes\n", copied,
           same_contents(src, dst) ? "contents identical" : "CONTENTS DIFFER",
           sizeof(copy_file));
    print_stats(rt);

    printf("2. a read from a pipe that never gets data, cancelled\n");
    pd_set_trace(on_trace, NULL);
    if (pipe2(p, O_CLOEXEC) < 0) {
        perror("demo: pipe2");
        return 1;
    }
    t = pipe_waiter_spawn(rt, p[0], STDOUT_FILENO);
    pd_run_once(rt, 0);
    pd_runtime_stats(rt, &s);
    printf("    the read is in flight (%llu op); cancelling the task\n",
           (unsigned long long)s.inflight_ops);
    fflush(stdout);
    pd_task_cancel(t);
    ret = pd_run(rt);
    printf("    task state: %s, pd_run: %d\n",
           pd_task_state(t) == PD_TASK_CANCELLED ? "cancelled" : "?", ret);
    print_stats(rt);
    pd_task_release(t);
    pd_set_trace(NULL, NULL);

    /* Cancelled means cancelled: the next reader gets what is written now. */
    if (write(p[1], "still here", 10) != 10)
        perror("demo: write");
    ret = (int)read(p[0], later, sizeof(later));
    printf("3. written after the cancel, read by the next reader: \"%.*s\"\n",
           ret > 0 ? ret : 0, later);
    close(p[0]);
    close(p[1]);
    pd_runtime_free(rt);
    return 0;
}
