/*
 * Allocation counting for the harness: every allocation of the process.
 *
 * This file defines malloc, calloc, realloc, free and the aligned
 * allocators. A definition in the executable takes precedence over the C
 * library's, and glibc routes its own internal allocations (strdup, stdio
 * buffers, opendir, ...) through these public symbols, so every allocation
 * of the process passes through here, whichever object made it.
 *
 * Where the calls go depends on who else is in the process, decided once,
 * at the first call:
 *
 * - Plain build: the next "malloc" is glibc's. Each call is counted here and
 *   forwarded to glibc's allocator through its exported __libc_* entry
 *   points, which never come back to these definitions.
 * - Under a sanitizer with its own allocator (ASan, TSan, MSan), the next
 *   "malloc" is the sanitizer's. Calls are forwarded to it (found with
 *   dlsym(RTLD_NEXT)), and counted through
 *   __sanitizer_install_malloc_and_free_hooks, which also sees what the
 *   sanitizer's own interceptors allocate (its strdup does not call
 *   malloc). Forwarding to glibc instead would hand the sanitizer pointers
 *   it never made, and it aborts. A sanitizer without an allocator
 *   (UBSan alone) leaves glibc's malloc in place: the plain case.
 *
 * dlsym may allocate while it resolves; those few early calls are served
 * from a static arena and never freed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* glibc's allocator, under names that are never interposed. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

/* Present only when a sanitizer runtime is linked in. */
extern int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *p, size_t n),
    void (*free_hook)(const volatile void *p)) __attribute__((weak));

enum { MODE_UNSET, MODE_RESOLVING, MODE_LIBC, MODE_NEXT };

static int pd__alloc_mode;
static int pd__alloc_hooked; /* the sanitizer's hook counts, not we */
static long pd__alloc_count;
/*
 * Epoll engines starting their worker pools now (pd__workers_starting):
 * what the process allocates meanwhile is the threads' start, once per
 * runtime at its first file op, as io_uring's kernel starts its io-wq
 * workers when first needed; it is not counted.
 */
static int pd__alloc_pools_starting;

static void pd__alloc_count_one(void)
{
    if (!__atomic_load_n(&pd__alloc_pools_starting, __ATOMIC_RELAXED))
        __atomic_fetch_add(&pd__alloc_count, 1, __ATOMIC_RELAXED);
}

static void pd__alloc_pool_starting(int done)
{
    __atomic_fetch_add(&pd__alloc_pools_starting, done ? -1 : 1, __ATOMIC_RELAXED);
}

static struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    void *(*memalign)(size_t, size_t);
} pd__next;

/* What dlsym asks for while it resolves the sanitizer's entry points. */
static _Alignas(max_align_t) unsigned char pd__arena[8192];
static size_t pd__arena_used;

static int pd__in_arena(const void *p)
{
    return (const unsigned char *)p >= pd__arena &&
           (const unsigned char *)p < pd__arena + sizeof(pd__arena);
}

static void *pd__arena_alloc(size_t align, size_t n)
{
    size_t at;

    if (align < _Alignof(max_align_t))
        align = _Alignof(max_align_t);
    at = (pd__arena_used + align - 1) & ~(align - 1);
    if (at > sizeof(pd__arena) || n > sizeof(pd__arena) - at)
        return NULL;
    pd__arena_used = at + n;
    return pd__arena + at;
}

static void pd__count_hook(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    pd__alloc_count_one();
}

static void pd__free_hook(const volatile void *p)
{
    (void)p;
}

static void pd__alloc_resolve(void)
{
    void *next;

    pd__alloc_mode = MODE_RESOLVING;
    next = dlsym(RTLD_NEXT, "malloc");
    if (next == NULL || next == (void *)__libc_malloc) {
        pd__alloc_mode = MODE_LIBC;
        return;
    }
    *(void **)&pd__next.malloc = next;
    *(void **)&pd__next.calloc = dlsym(RTLD_NEXT, "calloc");
    *(void **)&pd__next.realloc = dlsym(RTLD_NEXT, "realloc");
    *(void **)&pd__next.free = dlsym(RTLD_NEXT, "free");
    *(void **)&pd__next.memalign = dlsym(RTLD_NEXT, "memalign");
    if (__sanitizer_install_malloc_and_free_hooks)
        pd__alloc_hooked =
            __sanitizer_install_malloc_and_free_hooks(pd__count_hook, pd__free_hook);
    pd__alloc_mode = MODE_NEXT;
}

/*
 * Settles the mode before main, while the process has one thread, and
 * leaves the epoll engines' pool starts out of the count.
 */
__attribute__((constructor)) static void pd__alloc_init(void)
{
    pd__workers_starting = pd__alloc_pool_starting;
    if (pd__alloc_mode == MODE_UNSET)
        pd__alloc_resolve();
}

/* Returns the mode, resolving it on the first call; counts one allocation. */
static int pd__alloc_enter(void)
{
    if (PD__UNLIKELY(pd__alloc_mode == MODE_UNSET))
        pd__alloc_resolve();
    if (pd__alloc_mode != MODE_RESOLVING && !pd__alloc_hooked)
        pd__alloc_count_one();
    return pd__alloc_mode;
}

long pd_harness_allocs(void)
{
    return __atomic_load_n(&pd__alloc_count, __ATOMIC_RELAXED);
}

/* Set by pd_harness_fail_allocs: this thread's allocations fail while set. */
static __thread int pd__alloc_failing;

void pd_harness_fail_allocs(int on)
{
    pd__alloc_failing = on;
}

void *malloc(size_t n)
{
    int mode = pd__alloc_enter();

    if (PD__UNLIKELY(pd__alloc_failing))
        return NULL;
    switch (mode) {
    case MODE_LIBC:
        return __libc_malloc(n);
    case MODE_NEXT:
        return pd__next.malloc(n);
    default:
        return pd__arena_alloc(0, n);
    }
}

void *calloc(size_t n, size_t m)
{
    int mode = pd__alloc_enter();
    size_t total;

    if (PD__UNLIKELY(pd__alloc_failing))
        return NULL;
    switch (mode) {
    case MODE_LIBC:
        return __libc_calloc(n, m);
    case MODE_NEXT:
        return pd__next.calloc(n, m);
    default:
        /* The arena is static storage: already zero, never reused. */
        if (__builtin_mul_overflow(n, m, &total))
            return NULL;
        return pd__arena_alloc(0, total);
    }
}

void free(void *p)
{
    if (p == NULL || pd__in_arena(p))
        return;
    if (pd__alloc_mode == MODE_NEXT)
        pd__next.free(p);
    else
        __libc_free(p);
}

void *realloc(void *p, size_t n)
{
    int mode = pd__alloc_enter();
    void *q;

    if (PD__UNLIKELY(pd__alloc_failing))
        return NULL;
    if (p != NULL && pd__in_arena(p)) {
        /* Moves an early block out of the arena; its size is unknown, so
         * copy what the arena can hold past p. */
        size_t avail = (size_t)(pd__arena + sizeof(pd__arena) - (unsigned char *)p);

        q = mode == MODE_LIBC ? __libc_malloc(n)
            : mode == MODE_NEXT ? pd__next.malloc(n) : pd__arena_alloc(0, n);
        if (q)
            memcpy(q, p, n < avail ? n : avail);
        return q;
    }
    switch (mode) {
    case MODE_LIBC:
        return __libc_realloc(p, n);
    case MODE_NEXT:
        return pd__next.realloc(p, n);
    default:
        return NULL; /* nothing to resize before the arena served it */
    }
}

static void *pd__aligned(size_t align, size_t n)
{
    int mode = pd__alloc_enter();

    if (PD__UNLIKELY(pd__alloc_failing))
        return NULL;
    switch (mode) {
    case MODE_LIBC:
        return __libc_memalign(align, n);
    case MODE_NEXT:
        return pd__next.memalign(align, n);
    default:
        return pd__arena_alloc(align, n);
    }
}

void *memalign(size_t align, size_t n)
{
    return pd__aligned(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p;

    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    p = pd__aligned(align, n);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    if (align == 0 || (align & (align - 1)) != 0) {
        errno = EINVAL; /* C11's contract for this libc function, not ours */
        return NULL;
    }
    return pd__aligned(align, n);
}

void *valloc(size_t n)
{
    return pd__aligned((size_t)sysconf(_SC_PAGESIZE), n);
}

void *pvalloc(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    return pd__aligned(page, (n + page - 1) & ~(page - 1));
}
