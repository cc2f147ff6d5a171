/*
 * seccomp_run -e ERRNO [-c CALL]... COMMAND [ARG...]: runs COMMAND where io_uring is
 * switched off the way container runtimes switch it off. A seccomp filter
 * (libseccomp) makes io_uring_setup, io_uring_enter and io_uring_register
 * fail with ERRNO and allows every other system call; COMMAND and what it
 * starts inherit it. With -c, the named system calls fail with ERRNO
 * instead (up to 8; io_uring is then left alone): the tests use it to make
 * splice(2) or sendfile(2) fail as on a file system that cannot splice. ERRNO is a name or a number: ENOSYS is what Podman's
 * default profile answers (and a kernel built without io_uring), EPERM
 * what Docker's and containerd's default profiles answer since 2023 (and
 * kernel.io_uring_disabled). The tests use it to check that polldrop's
 * auto engine falls back to epoll there, and says so.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name;
    int err;
} errnos[] = {
    { "ENOSYS", ENOSYS }, { "EPERM", EPERM }, { "EINVAL", EINVAL },
    { "ENOMEM", ENOMEM }, { "EMFILE", EMFILE },
};

/* ERRNO as a name above or a number in 1..4095; 0 if it is neither. */
static int parse_errno(const char *s)
{
    char *end;
    long v;
    size_t i;

    for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
        if (strcmp(s, errnos[i].name) == 0)
            return errnos[i].err;
    v = strtol(s, &end, 10);
    return *s != '\0' && *end == '\0' && v > 0 && v < 4096 ? (int)v : 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: seccomp_run -e ERRNO [-c CALL]... COMMAND [ARG...]\n"
                    "  -e ERRNO  what io_uring_setup, io_uring_enter and\n"
                    "            io_uring_register answer: ENOSYS, EPERM, EINVAL,\n"
                    "            ENOMEM, EMFILE or a number\n"
                    "  -c CALL   make the system call CALL answer ERRNO instead of\n"
                    "            io_uring's (repeatable, up to 8)\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const char *const uring[] = { "io_uring_setup", "io_uring_enter",
                                         "io_uring_register" };
    const char *named[8];
    const char *const *calls = uring;
    size_t ncalls = sizeof(uring) / sizeof(uring[0]), nnamed = 0;
    scmp_filter_ctx ctx;
    int opt, err = 0, ret = 0;
    size_t i;

    while ((opt = getopt(argc, argv, "+e:c:")) != -1) {
        if (opt == 'c' && nnamed < sizeof(named) / sizeof(named[0])) {
            named[nnamed++] = optarg;
            continue;
        }
        if (opt != 'e' || (err = parse_errno(optarg)) == 0)
            return usage();
    }
    if (nnamed > 0) {
        calls = named;
        ncalls = nnamed;
    }
    if (err == 0 || optind >= argc)
        return usage();
    ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) {
        fprintf(stderr, "seccomp_run: seccomp_init failed\n");
        return 2;
    }
    for (i = 0; i < ncalls && ret == 0; i++) {
        int nr = seccomp_syscall_resolve_name(calls[i]);

        ret = nr == __NR_SCMP_ERROR ? -ENOSYS
                                    : seccomp_rule_add(ctx, SCMP_ACT_ERRNO((unsigned)err), nr, 0);
    }
    if (ret == 0)
        ret = seccomp_load(ctx); /* sets no_new_privs first (SCMP_FLTATR_CTL_NNP) */
    seccomp_release(ctx);
    if (ret < 0) {
        fprintf(stderr, "seccomp_run: cannot load the filter: %s\n", strerror(-ret));
        return 2;
    }
    execvp(argv[optind], argv + optind);
    fprintf(stderr, "seccomp_run: %s: %s\n", argv[optind], strerror(errno));
    return 127;
}
