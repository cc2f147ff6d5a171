/*
 * The engine suite: which engine pd_runtime_new runs a runtime on
 * (pd_config.engine, the PD_ENGINE environment variable), auto's fallback
 * to epoll when io_uring_setup is refused by a seccomp filter, and the
 * failures auto does not hide.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "nops.h"
#include "testutil.h"

#if defined(__x86_64__)
#define PD_TEST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PD_TEST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* Sets PD_ENGINE to v, or unsets it when v is NULL. */
static void engine_env(const char *v)
{
    if (v == NULL)
        unsetenv("PD_ENGINE");
    else
        setenv("PD_ENGINE", v, 1);
}

/*
 * pd_runtime_new with cfg (NULL: none); returns its result, and the engine
 * it chose in *name ("" on failure, which must leave *rt NULL).
 */
static int new_on(const pd_config *cfg, const char **name)
{
    pd_runtime *rt = (pd_runtime *)1;
    int ret = pd_runtime_new(&rt, cfg);

    *name = "";
    if (ret < 0) {
        ck_assert_ptr_null(rt);
        return ret;
    }
    *name = pd_runtime_engine(rt);
    pd_runtime_free(rt);
    return ret;
}

/* Skips (0) with a printed reason where io_uring cannot be had. */
static int uring_here(const char *test)
{
    int why;

    if (pd_test_uring_ok(&why))
        return 1;
    printf("engine:%s: skipped: io_uring is not available here (%s)\n", test,
           strerror(-why));
    return 0;
}

START_TEST(config_chooses_the_engine)
{
    pd_config cfg = { .entries = 8, .engine = PD_ENGINE_EPOLL };
    const char *name;
    pd_runtime *rt;
    pd_stats s;
    long out = 0;

    engine_env(NULL);
    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    ck_assert_str_eq(pd_runtime_engine(rt), "epoll");
    pd_runtime_stats(rt, &s);
    ck_assert_uint_eq(s.ring_flags, 0);
    ck_assert_int_eq(nops_block_on(rt, 10, &out), 0);
    ck_assert_int_eq(out, 10);
    pd_runtime_free(rt);
    if (!uring_here("config_chooses_the_engine"))
        return;
    cfg.engine = PD_ENGINE_URING;
    ck_assert_int_eq(new_on(&cfg, &name), 0);
    ck_assert_str_eq(name, "io_uring");
    /* Auto on a machine with io_uring is io_uring. */
    cfg.engine = PD_ENGINE_AUTO;
    ck_assert_int_eq(new_on(&cfg, &name), 0);
    ck_assert_str_eq(name, "io_uring");
    ck_assert_int_eq(new_on(NULL, &name), 0);
    ck_assert_str_eq(name, "io_uring");
}
END_TEST

/* With PD_ENGINE_AUTO (or no config) PD_ENGINE chooses; any other choice wins over it. */
START_TEST(environment_chooses_under_auto)
{
    const pd_config auto_cfg = { .entries = 8 };
    const pd_config uring_cfg = { .engine = PD_ENGINE_URING };
    const char *name;

    engine_env("epoll");
    ck_assert_int_eq(new_on(NULL, &name), 0);
    ck_assert_str_eq(name, "epoll");
    ck_assert_int_eq(new_on(&auto_cfg, &name), 0);
    ck_assert_str_eq(name, "epoll");
    if (!uring_here("environment_chooses_under_auto"))
        return;
    ck_assert_int_eq(new_on(&uring_cfg, &name), 0);
    ck_assert_str_eq(name, "io_uring");
    engine_env("uring");
    ck_assert_int_eq(new_on(NULL, &name), 0);
    ck_assert_str_eq(name, "io_uring");
    engine_env("auto");
    ck_assert_int_eq(new_on(NULL, &name), 0);
    ck_assert_str_eq(name, "io_uring");
    engine_env("");
    ck_assert_int_eq(new_on(NULL, &name), 0);
    ck_assert_str_eq(name, "io_uring");
    engine_env(NULL);
}
END_TEST

/* A choice that names no engine is -EINVAL; sim names the simulator. */
START_TEST(unknown_engine_is_einval)
{
    pd_config cfg = { .engine = (pd_engine)42 };
    const char *name;
    int fds = pd_test_fd_count();

    engine_env(NULL);
    ck_assert_int_eq(new_on(&cfg, &name), -EINVAL);
    cfg.engine = PD_ENGINE_SIM;
    ck_assert_int_eq(new_on(&cfg, &name), 0);
    ck_assert_str_eq(name, "sim");
    engine_env("sim");
    ck_assert_int_eq(new_on(NULL, &name), 0);
    ck_assert_str_eq(name, "sim");
    engine_env("io-uring");
    ck_assert_int_eq(new_on(NULL, &name), -EINVAL);
    engine_env("EPOLL");
    ck_assert_int_eq(new_on(NULL, &name), -EINVAL);
    /* A config's explicit engine does not read the environment at all. */
    cfg.engine = PD_ENGINE_EPOLL;
    ck_assert_int_eq(new_on(&cfg, &name), 0);
    ck_assert_str_eq(name, "epoll");
    engine_env(NULL);
    ck_assert_int_eq(pd_test_fd_count(), fds);
}
END_TEST

/*
 * Installs a seccomp filter on the calling process that makes
 * io_uring_setup fail with err, as a container's profile does. Returns 0
 * or -errno. Irreversible: only ever called in a child made for it.
 */
static int refuse_uring_setup(int err)
{
#ifdef PD_TEST_AUDIT_ARCH
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PD_TEST_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        return -errno;
    return 0;
#else
    (void)err;
    return -ENOTSUP;
#endif
}

/*
 * In a child whose io_uring_setup fails with err: what auto, uring and
 * epoll give. Returns 0 when all is as expected, else the number of the
 * first check that failed (printed).
 */
static int under_refusal(int err, int hidden)
{
    const pd_config uring_cfg = { .engine = PD_ENGINE_URING };
    const pd_config epoll_cfg = { .engine = PD_ENGINE_EPOLL };
    pd_runtime *rt = NULL;
    long out = 0;
    int ret;

    engine_env(NULL);
    ret = pd_runtime_new(&rt, NULL);
    if (hidden) {
        /* A failure that is not "io_uring is off" is returned as it is. */
        if (ret != -err || rt != NULL) {
            fprintf(stderr, "auto under %s: %s\n", strerror(err), strerror(-ret));
            return 1;
        }
    } else {
        if (ret != 0 || strcmp(pd_runtime_engine(rt), "epoll") != 0) {
            fprintf(stderr, "auto under %s: %s, %s\n", strerror(err), strerror(-ret),
                    ret == 0 ? pd_runtime_engine(rt) : "-");
            return 2;
        }
        if (nops_block_on(rt, 10, &out) != 0 || out != 10) {
            fprintf(stderr, "auto under %s: nops gave %ld\n", strerror(err), out);
            return 3;
        }
        pd_runtime_free(rt);
        rt = NULL;
    }
    /* Asking for io_uring itself gets the refusal. */
    ret = pd_runtime_new(&rt, &uring_cfg);
    if (ret != -err || rt != NULL) {
        fprintf(stderr, "uring under %s: %s\n", strerror(err), strerror(-ret));
        return 4;
    }
    engine_env("uring");
    ret = pd_runtime_new(&rt, NULL);
    engine_env(NULL);
    if (ret != -err) {
        fprintf(stderr, "PD_ENGINE=uring under %s: %s\n", strerror(err), strerror(-ret));
        return 5;
    }
    /* epoll never calls io_uring_setup. */
    if (pd_runtime_new(&rt, &epoll_cfg) != 0 || nops_block_on(rt, 10, &out) != 0 ||
        out != 10) {
        fprintf(stderr, "epoll under %s failed\n", strerror(err));
        return 6;
    }
    pd_runtime_free(rt);
    return 0;
}

/* Runs under_refusal(err, hidden) in a child; fails the test unless it returned 0. */
static void in_refusing_child(int err, int hidden)
{
    pid_t pid;
    int st = 0, ret;

    fflush(NULL);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        ret = refuse_uring_setup(err);
        if (ret < 0) {
            fprintf(stderr, "seccomp: %s\n", strerror(-ret));
            _exit(100);
        }
        _exit(under_refusal(err, hidden));
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st), "the child died (status %#x)", st);
    ck_assert_msg(WEXITSTATUS(st) == 0, "under a filter answering %s: check %d failed",
                  strerror(err), WEXITSTATUS(st));
}

START_TEST(auto_falls_back_when_setup_is_refused)
{
    in_refusing_child(ENOSYS, 0); /* Podman's profile; a kernel without io_uring */
    in_refusing_child(EPERM, 0);  /* Docker's and containerd's; io_uring_disabled */
    in_refusing_child(EINVAL, 0); /* a kernel that refuses every setup tried */
}
END_TEST

START_TEST(auto_returns_other_failures)
{
    in_refusing_child(ENOMEM, 1);
    in_refusing_child(EMFILE, 1);
}
END_TEST

/*
 * Every op of the spec language (gen/ops.py) runs on the epoll engine:
 * its probe says so (the runtime's ftruncate, bind and listen checks included), and an op
 * outside the language is refused, as it completes with -EOPNOTSUPP.
 */
START_TEST(every_op_of_the_language_runs_on_epoll)
{
    static const unsigned ops[] = {
        IORING_OP_NOP, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_READV, IORING_OP_WRITEV,
        IORING_OP_OPENAT, IORING_OP_OPENAT2, IORING_OP_CLOSE, IORING_OP_FSYNC,
        PD__IORING_OP_FTRUNCATE, IORING_OP_TIMEOUT, IORING_OP_UNLINKAT, IORING_OP_RENAMEAT,
        IORING_OP_MKDIRAT, IORING_OP_STATX, IORING_OP_SPLICE, IORING_OP_POLL_ADD,
        IORING_OP_SOCKET, IORING_OP_ACCEPT, IORING_OP_CONNECT, IORING_OP_RECV, IORING_OP_SEND,
        IORING_OP_SEND_ZC, IORING_OP_RECVMSG, IORING_OP_SENDMSG, IORING_OP_SHUTDOWN,
        PD__IORING_OP_BIND, PD__IORING_OP_LISTEN,
        /* and what the runtime itself submits */
        IORING_OP_ASYNC_CANCEL, IORING_OP_LINK_TIMEOUT,
    };
    const pd_config cfg = { .engine = PD_ENGINE_EPOLL };
    pd_runtime *rt;
    size_t i;

    ck_assert_int_eq(pd_runtime_new(&rt, &cfg), 0);
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        ck_assert_msg(rt->engine_vt->probe_op(rt->engine, ops[i]), "opcode %u", ops[i]);
    ck_assert_int_eq(rt->engine_vt->probe_op(rt->engine, IORING_OP_FALLOCATE), 0);
    ck_assert_int_eq(rt->has_ftruncate, 1);
    ck_assert_int_eq(rt->has_bind, 1);
    ck_assert_int_eq(rt->has_listen, 1);
    pd_runtime_free(rt);
}
END_TEST

Suite *pd_suite_engine(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("choice");

    tcase_add_test(tc, config_chooses_the_engine);
    tcase_add_test(tc, environment_chooses_under_auto);
    tcase_add_test(tc, unknown_engine_is_einval);
    tcase_add_test(tc, auto_falls_back_when_setup_is_refused);
    tcase_add_test(tc, auto_returns_other_failures);
    tcase_add_test(tc, every_op_of_the_language_runs_on_epoll);
    tcase_set_timeout(tc, 60);
    tcase_set_tags(tc, PD_TEST_OWN_ENGINE);
    suite_add_tcase(s, tc);
    return s;
}
