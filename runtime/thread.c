/*
 * Other threads: what a thread that does not own a runtime may call on it
 * (a wake, a task sent to its inbox, a shutdown asked remotely). The owner
 * reads the inbox and the requests in loop.c.
 */
#include "rt_internal.h"

#include <stdatomic.h>

/* --- other threads --- */

/*
 * The wake itself: a write to target's eventfd, whose read target keeps in
 * flight in its ring, so that a blocking wait ends. The write is the last
 * access to target: once target has seen the wake, it may be freed.
 */
static int pd__wake_efd(pd_runtime *target)
{
    uint64_t one = 1;

    /* EAGAIN: the counter is full of unread wakes, so one is on its way. */
    if (write(target->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

int pd_runtime_wake(pd_runtime *target)
{
    /* One wake in flight is enough: the target reads everything on it. */
    if (atomic_exchange(&target->wake_sent, 1))
        return 0;
    return pd__wake_efd(target);
}

int pd_shutdown_remote(pd_runtime *target)
{
    atomic_store(&target->shutdown_asked, 1);
    return pd_runtime_wake(target);
}

int pd_shutdown_remote_deadline(pd_runtime *target, long long ms)
{
    int64_t at, cur;

    if (ms < 0)
        return -EINVAL;
    at = pd__deadline_at(ms);
    cur = atomic_load(&target->shutdown_at_ns);
    while (at < cur && !atomic_compare_exchange_weak(&target->shutdown_at_ns, &cur, at))
        ;
    return pd_shutdown_remote(target);
}

int pd__task_send(pd_task *t)
{
    pd_runtime *rt = t->rt;
    pd_task *head = atomic_load_explicit(&rt->inbox, memory_order_relaxed);

    /* The sender keeps no reference: the task is the target's from now on. */
    t->refs = 0;
    do
        t->next = head;
    while (!atomic_compare_exchange_weak_explicit(&rt->inbox, &head, t,
                                                  memory_order_release,
                                                  memory_order_relaxed));
    return pd_runtime_wake(rt);
}
