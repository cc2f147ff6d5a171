/*
 * The runtime's one intrusive doubly-linked list: a pd__link embedded in
 * what it links, and a list that is a pointer to its first link (and, for
 * a queue, one to its last). Nothing is allocated; a link is on at most
 * one list at a time, and its prev and next are NULL while it is on none.
 * Its users: a task's live list (pd_internal.h includes this, as the link
 * is part of pd_task), the epoll engine's fd waiters and worker queue, the
 * simulator's live records. Every doubly-linked unlink in runtime/ is
 * pd__list_unlink; not a public API.
 */
#ifndef POLLDROP_LIST_H
#define POLLDROP_LIST_H

#include <stddef.h>

struct pd__link {
    struct pd__link *prev;
    struct pd__link *next;
};

/* The object of type that holds link p as its member (p must not be NULL). */
#define PD__CONTAINER_OF(p, type, member) \
    ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* Puts l first on the list whose first link is *head. */
static inline void pd__list_push(struct pd__link **head, struct pd__link *l)
{
    l->prev = NULL;
    l->next = *head;
    if (*head)
        (*head)->prev = l;
    *head = l;
}

/*
 * Puts l last on the queue whose first link is *head and last is *tail
 * (both NULL when it is empty).
 */
static inline void pd__list_append(struct pd__link **head, struct pd__link **tail,
                                   struct pd__link *l)
{
    l->next = NULL;
    l->prev = *tail;
    if (*tail)
        (*tail)->next = l;
    else
        *head = l;
    *tail = l;
}

/*
 * Takes l off the list whose first link is *head; tail, when not NULL,
 * points to the list's last link, kept up to date too. l's links are
 * cleared.
 */
static inline void pd__list_unlink(struct pd__link **head, struct pd__link **tail,
                                   struct pd__link *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        *head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else if (tail)
        *tail = l->prev;
    l->prev = l->next = NULL;
}

#endif /* POLLDROP_LIST_H */
