/*
 * polldrop internals for generated code: driving child futures (an
 * await, join or select branch, and arrays of them). Included by
 * pd_internal.h, never on its own; not a public API.
 */
#ifndef POLLDROP_CHILDREN_H
#define POLLDROP_CHILDREN_H

#ifndef POLLDROP_INTERNAL_H
#error "include polldrop.h instead"
#endif

/* --- child futures --- */

/*
 * Advances a child branch: polls it while it runs and, once it is Ready,
 * async-drops it in the same call. Returns 1 when the child is fully
 * dropped (check PD__CH_OK for whether its output in *out is valid).
 */
static inline int pd__child_poll(uint8_t *cs, const pd_vtable *vt, void *child,
                                 pd_cx *cx, void *out)
{
    switch (*cs & 3) {
    case PD__CH_RUN:
        if (vt->poll(child, cx, out) == PD_PENDING)
            return 0;
        *cs = PD__CH_DROP | PD__CH_OK;
        PD__FALLTHROUGH;
    case PD__CH_DROP:
        if (vt->poll_drop(child, cx) == PD_PENDING)
            return 0;
        *cs = (uint8_t)((*cs & PD__CH_OK) | PD__CH_DONE);
        return 1;
    default:
        return 1;
    }
}

/* Switches a running child to async drop (select losers, quiescing). */
static inline void pd__child_cancel(uint8_t *cs)
{
    if ((*cs & 3) == PD__CH_RUN)
        *cs = PD__CH_DROP;
}

/* Sync-drops a child that is initialised and not yet destroyed. */
static inline void pd__child_drop_sync(uint8_t *cs, const pd_vtable *vt,
                                       void *child)
{
    if ((*cs & 3) == PD__CH_RUN || (*cs & 3) == PD__CH_DROP)
        vt->drop(child);
    *cs = PD__CH_DONE;
}

/*
 * Arrays of child futures (`{name, future, count}` fields). Member i of an
 * array of n is at kids + i * vt->size, its output at outs + i *
 * vt->out_size, its progress in cs[i]: 0 never started; RUN or DROP while
 * it runs; DONE (with OK if it returned Ready) once it is destroyed, and
 * SEEN as well once a wait state of the parent reported it. A member can
 * be started again once it is idle: never started, or seen.
 */
static inline int pd__arr_idle(const uint8_t *cs, int i)
{
    return cs[i] == PD__CH_IDLE || (cs[i] & PD__CH_SEEN);
}

/* Members started and not yet seen: running, or finished and unreported. */
int pd__arr_active(const uint8_t *cs, unsigned n);

/*
 * Polls every running member (a member that returns Ready is async-dropped
 * in the same call). Returns the lowest index of a finished, unseen member,
 * or -1; sets *busy when a member is still running.
 */
int pd__arr_poll(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids,
                 void *outs, pd_cx *cx, int *busy);

/*
 * Cancels every running member but `keep` (-1 for none) and drives their
 * async drops. Returns 1 once no member but `keep` is running.
 */
int pd__arr_quiesce(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids,
                    void *outs, pd_cx *cx, int keep);

/* Marks every finished member seen: a join or select reported them all. */
void pd__arr_seen(uint8_t *cs, unsigned n);

/* Sync-drops every running member, last first. */
void pd__arr_drop_sync(uint8_t *cs, unsigned n, const pd_vtable *vt, void *kids);

/* START on a member that is out of range or still running: aborts. */
void pd__arr_misuse(const char *future, const char *array, int i, int n)
    __attribute__((noreturn, cold));

#endif /* POLLDROP_CHILDREN_H */
