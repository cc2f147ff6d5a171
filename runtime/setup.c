/*
 * The runtime's making: the trace hook, the ring on its engine (io_uring,
 * or epoll where io_uring is missing or asked for), and pd_runtime_new.
 * docs/design.md, "Source layout", lists the runtime's other files.
 */
#include "rt_internal.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

pd_trace_fn pd__trace_fn;
static void *pd__trace_arg;

void pd_set_trace(pd_trace_fn fn, void *arg)
{
    pd__trace_arg = arg;
    pd__trace_fn = fn;
}

void pd__trace_emit(const char *future, pd_trace_event ev, const void *self)
{
    pd_trace_fn fn = pd__trace_fn;

    if (fn)
        fn(pd__trace_arg, future, ev, self);
}

void pd__fell_through(const char *future, const char *state)
{
    fprintf(stderr, "polldrop: %s: state %s fell through\n", future, state);
    abort();
}

/* --- ring setup --- */

/* The smallest pd_config.entries: an op with a linked timeout takes two. */
#define PD__MIN_ENTRIES 2u

/*
 * Sets up rt's ring on io_uring, with the most useful setup flags the
 * kernel accepts. Returns 0 or io_uring_queue_init's -errno.
 */
static int pd__ring_init(pd_runtime *rt, unsigned entries, unsigned cfg_flags)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    size_t i = (cfg_flags & PD_CONFIG_NO_DEFER_TASKRUN) ? 2 : 0;
    int ret = -EINVAL;

    /* Older kernels reject flags they do not know with -EINVAL: fall back. */
    for (; i < sizeof(tries) / sizeof(tries[0]); i++) {
        ret = io_uring_queue_init(entries, &rt->ring, tries[i]);
        if (ret == 0) {
            rt->stats.ring_flags = tries[i];
            return 0;
        }
        if (ret != -EINVAL)
            return ret;
    }
    return ret;
}

/*
 * The engine a config asks for: cfg's, or with PD_ENGINE_AUTO the
 * environment's PD_ENGINE (auto, uring, epoll or sim; unset or empty:
 * auto). Returns the engine or -EINVAL for a value that names none.
 */
static int pd__engine_choice(const pd_config *cfg)
{
    static const char *const names[] = { "auto", "uring", "epoll", "sim" };
    pd_engine want = cfg ? cfg->engine : PD_ENGINE_AUTO;
    const char *env;
    unsigned i;

    if ((unsigned)want > PD_ENGINE_SIM)
        return -EINVAL;
    if (want != PD_ENGINE_AUTO)
        return (int)want;
    env = getenv("PD_ENGINE");
    if (env == NULL || *env == '\0')
        return PD_ENGINE_AUTO;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(env, names[i]) == 0)
            return (int)i;
    return -EINVAL;
}

/*
 * Whether auto falls back to epoll after io_uring setup failed with err:
 * only when io_uring is switched off (EPERM: a seccomp filter such as
 * Docker's, or kernel.io_uring_disabled; ENOSYS: a kernel without it, or
 * Podman's filter) or refuses every setup the runtime tries (EINVAL).
 * Anything else (ENOMEM, EMFILE...) is a failure auto does not hide.
 */
static int pd__engine_fallback(int err)
{
    return err == -EPERM || err == -ENOSYS || err == -EINVAL;
}

/*
 * Sets up rt's ring on the engine cfg asks for (pd__engine_choice); with
 * auto, io_uring, then epoll where pd__engine_fallback allows. Returns 0
 * or -errno.
 */
static int pd__engine_init(pd_runtime *rt, const pd_config *cfg, unsigned entries)
{
    int kind = pd__engine_choice(cfg);
    int ret;

    if (kind < 0)
        return kind;
    if (kind == PD_ENGINE_SIM) {
        ret = pd__sim_init(&rt->ring, entries, cfg, &rt->engine);
        if (ret == 0)
            rt->engine_vt = &pd__engine_sim;
        return ret;
    }
    if (kind != PD_ENGINE_EPOLL) {
        ret = pd__ring_init(rt, entries, cfg ? cfg->flags : 0);
        if (ret == 0 || kind == PD_ENGINE_URING || !pd__engine_fallback(ret))
            return ret;
    }
    ret = pd__engine_epoll.init(&rt->ring, entries, 0, &rt->engine);
    if (ret == 0)
        rt->engine_vt = &pd__engine_epoll;
    return ret;
}

const char *pd_runtime_engine(const pd_runtime *rt)
{
    return rt->engine == NULL ? "io_uring" : rt->engine_vt->name;
}

int pd_runtime_new(pd_runtime **out, const pd_config *cfg)
{
    unsigned entries = cfg && cfg->entries ? cfg->entries : 256;
    pd_runtime *rt;
    int ret;

    *out = NULL;
    /*
     * An op with a linked timeout takes two submission entries at once, so
     * a one-entry ring could never submit it (the claim would wait forever
     * for room that cannot appear). Two suffice for everything: a cancel
     * takes one entry, claimed after the queue has been submitted.
     */
    if (entries < PD__MIN_ENTRIES)
        return -EINVAL;
    if (posix_memalign((void **)&rt, alignof(pd_runtime), sizeof(*rt)) != 0)
        return -ENOMEM;
    memset(rt, 0, sizeof(*rt));
    rt->ready_tailp = &rt->ready_head;
    rt->wake_unarmed = 1; /* the first entry queues the wake's read */
    atomic_init(&rt->inbox, NULL);
    atomic_init(&rt->wake_sent, 0);
    atomic_init(&rt->shutdown_asked, 0);
    atomic_init(&rt->shutdown_at_ns, INT64_MAX);
    /* Blocking: an io_uring read of a non-blocking eventfd would not wait. */
    rt->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (rt->wake_fd < 0) {
        ret = -errno;
        free(rt);
        return ret;
    }
    ret = pd__engine_init(rt, cfg, entries);
    if (ret < 0) {
        close(rt->wake_fd);
        free(rt);
        return ret;
    }
    rt->not_uring = rt->engine != NULL;
    if (rt->ring.features & IORING_FEAT_CQE_SKIP)
        rt->cancel_flags = IOSQE_CQE_SKIP_SUCCESS;
    rt->owner = pthread_self();
    pd__eng_has_ops(rt, (const unsigned[]){ PD__IORING_OP_FTRUNCATE, PD__IORING_OP_BIND,
                                            PD__IORING_OP_LISTEN },
                    (uint8_t *const[]){ &rt->has_ftruncate, &rt->has_bind, &rt->has_listen }, 3);
    *out = rt;
    return 0;
}

void pd_runtime_stats(const pd_runtime *rt, pd_stats *s)
{
    *s = rt->stats;
    s->inflight_ops = rt->stats.ops_submitted - rt->stats.ops_completed;
}
