/*
 * httpd's protocol half: see http.h. Everything here runs on the thread
 * that owns the runtime of the connections it serves.
 */
#define _GNU_SOURCE
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* --- the block pool --- */

int http_pool_get(http_pool *p, char **blk)
{
    void *b = p->free;

    if (b != NULL) {
        p->free = *(void **)b;
        p->nfree--;
        *blk = b;
        return 0;
    }
    /* Mapped, not malloc'ed: a block given back beyond the spares returns
       its pages to the kernel at once, so idle memory is really released. */
    b = mmap(NULL, HTTP_BLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        return -ENOMEM;
    p->mapped++;
    *blk = b;
    return 0;
}

void http_pool_put(http_pool *p, char *blk)
{
    if (p->nfree >= HTTP_POOL_SPARE) {
        munmap(blk, HTTP_BLOCK);
        p->mapped--;
        return;
    }
    *(void **)blk = p->free;
    p->free = blk;
    p->nfree++;
}

void http_pool_drain(http_pool *p)
{
    while (p->free != NULL) {
        void *b = p->free;

        p->free = *(void **)b;
        munmap(b, HTTP_BLOCK);
        p->mapped--;
        p->nfree--;
    }
}

/* --- a connection's pipe --- */

int http_pipe_open(http_pipes *ps, int *r, int *w)
{
    int p[2];

    if (ps->n > 0) {
        ps->n--;
        *r = ps->fd[ps->n][0];
        *w = ps->fd[ps->n][1];
        return 0;
    }
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
        *r = *w = -1;
        return -errno;
    }
    /* A larger pipe moves a large file in fewer splices; the default
       (64 KiB) is fine where the system refuses. */
    (void)fcntl(p[1], F_SETPIPE_SZ, (int)HTTP_PIPE_SIZE);
    *r = p[0];
    *w = p[1];
    return 0;
}

void http_pipe_put(http_pipes *ps, int *r, int *w, bool empty)
{
    if (empty && *r >= 0 && *w >= 0 && ps->n < HTTP_PIPES_SPARE) {
        ps->fd[ps->n][0] = *r;
        ps->fd[ps->n][1] = *w;
        ps->n++;
        *r = *w = -1;
        return;
    }
    http_pipe_close(r, w);
}

void http_pipes_fini(http_pipes *ps)
{
    while (ps->n > 0) {
        ps->n--;
        close(ps->fd[ps->n][0]);
        close(ps->fd[ps->n][1]);
    }
}

void http_pipe_close(int *r, int *w)
{
    if (*r >= 0)
        close(*r);
    if (*w >= 0)
        close(*w);
    *r = *w = -1;
}

ssize_t http_pipe_fill(int pipe_w, int ffd, long long *off, size_t len)
{
    loff_t o = (loff_t)*off;
    ssize_t n = splice(ffd, &o, pipe_w, NULL, len, SPLICE_F_NONBLOCK);

    if (n < 0)
        return -errno;
    *off = (long long)o;
    return n;
}

ssize_t http_pipe_drain(int pipe_r, int fd, size_t len, bool more)
{
    ssize_t n = splice(pipe_r, NULL, fd, NULL, len,
                       SPLICE_F_NONBLOCK | (more ? SPLICE_F_MORE : 0));

    return n < 0 ? -errno : n;
}

bool http_no_splice(long err)
{
    return err == -EINVAL || err == -ENOSYS || err == -EOPNOTSUPP;
}

/* --- the open large files --- */

static void ofile_free(http_ofile *f)
{
    close(f->fd);
    f->fd = -1;
    f->klen = 0;
}

int http_ofile_get(http_ofiles *o, const char *key, size_t klen, long long now)
{
    int fd = -1;

    if (o->valid_ms <= 0)
        return -1;
    for (int i = 0; i < HTTP_OFILES; i++) {
        http_ofile *f = &o->f[i];

        if (f->klen == 0)
            continue;
        if (now - f->stamp >= o->valid_ms) {
            ofile_free(f);
            continue;
        }
        if (fd < 0 && f->klen == klen && memcmp(f->key, key, klen) == 0) {
            fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
            o->hits += fd >= 0;
        }
    }
    return fd < 0 ? -1 : fd;
}

void http_ofile_put(http_ofiles *o, const char *key, size_t klen, long long stamp, int fd)
{
    http_ofile *slot = NULL;
    int d;

    if (o->valid_ms <= 0 || klen == 0 || klen >= HTTP_CACHE_KEY)
        return;
    for (int i = 0; i < HTTP_OFILES; i++) {
        http_ofile *f = &o->f[i];

        if (f->klen == klen && memcmp(f->key, key, klen) == 0) {
            slot = f;
            break;
        }
        if (slot == NULL || (slot->klen > 0 && (f->klen == 0 || f->stamp < slot->stamp)))
            slot = f;
    }
    d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return;
    if (slot->klen > 0)
        ofile_free(slot);
    slot->fd = d;
    slot->klen = (uint16_t)klen;
    slot->stamp = stamp;
    memcpy(slot->key, key, klen);
}

void http_ofiles_expire(http_ofiles *o, long long now)
{
    for (int i = 0; i < HTTP_OFILES; i++)
        if (o->f[i].klen > 0 && now - o->f[i].stamp >= o->valid_ms)
            ofile_free(&o->f[i]);
}

void http_ofiles_fini(http_ofiles *o)
{
    for (int i = 0; i < HTTP_OFILES; i++)
        if (o->f[i].klen > 0)
            ofile_free(&o->f[i]);
}

/* --- the response cache --- */

static uint32_t key_hash(const char *key, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)key[i]) * 16777619u;
    return h;
}

/* Takes entry i out of the LRU list. */
static void lru_unlink(http_cache *c, uint32_t i)
{
    http_centry *e = &c->e[i];

    if (e->prev != HTTP_CNIL)
        c->e[e->prev].next = e->next;
    else
        c->head = e->next;
    if (e->next != HTTP_CNIL)
        c->e[e->next].prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = HTTP_CNIL;
}

static void lru_push_head(http_cache *c, uint32_t i)
{
    http_centry *e = &c->e[i];

    e->prev = HTTP_CNIL;
    e->next = c->head;
    if (c->head != HTTP_CNIL)
        c->e[c->head].prev = i;
    else
        c->tail = i;
    c->head = i;
}

static void lru_push_tail(http_cache *c, uint32_t i)
{
    http_centry *e = &c->e[i];

    e->next = HTTP_CNIL;
    e->prev = c->tail;
    if (c->tail != HTTP_CNIL)
        c->e[c->tail].next = i;
    else
        c->head = i;
    c->tail = i;
}

/* Takes entry i out of its hash chain, if it is in one. */
static void hash_unlink(http_cache *c, uint32_t i)
{
    http_centry *e = &c->e[i];
    uint32_t *p;

    if (e->state == HTTP_CE_FREE)
        return;
    for (p = &c->bucket[e->hash & c->mask]; *p != HTTP_CNIL; p = &c->e[*p].hnext)
        if (*p == i) {
            *p = e->hnext;
            break;
        }
    e->hnext = HTTP_CNIL;
    e->state = HTTP_CE_FREE;
}

int http_cache_init(http_cache *c, long entries, long long valid_ms)
{
    size_t nb = 1, elen, blen;
    void *m;

    memset(c, 0, sizeof(*c));
    c->head = c->tail = HTTP_CNIL;
    if (entries <= 0 || valid_ms <= 0)
        return 0;
    if (entries > 1L << 20)
        return -ENOMEM;
    while (nb < (size_t)entries * 2)
        nb <<= 1;
    elen = (size_t)entries * sizeof(http_centry) + nb * sizeof(uint32_t);
    elen = (elen + 4095) & ~(size_t)4095;
    blen = (size_t)entries * (HTTP_CACHE_HEAD + HTTP_CACHE_BODY);
    /* One mapping, touched only as entries fill: an idle cache costs the
       pages of its table, not of its bodies. */
    m = mmap(NULL, elen + blen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
    c->e = m;
    c->bucket = (uint32_t *)(c->e + entries);
    c->bodies = (char *)m + elen;
    c->map_len = elen + blen;
    c->n = (uint32_t)entries;
    c->mask = (uint32_t)nb - 1;
    c->valid_ms = valid_ms;
    for (size_t b = 0; b < nb; b++)
        c->bucket[b] = HTTP_CNIL;
    for (uint32_t i = 0; i < c->n; i++) {
        c->e[i].hnext = HTTP_CNIL;
        lru_push_tail(c, i);
    }
    return 0;
}

void http_cache_fini(http_cache *c)
{
    if (c->e != NULL)
        munmap(c->e, c->map_len);
    memset(c, 0, sizeof(*c));
    c->head = c->tail = HTTP_CNIL;
}

/* How long a refresh or a claim is waited for before another may start. */
static long long quarter(const http_cache *c)
{
    return c->valid_ms / 4 > 0 ? c->valid_ms / 4 : 1;
}

/*
 * The entry a new key takes: a free one or the least recently used, among
 * the few at the LRU list's tail that no send holds (a pinned entry was
 * used last by a request of this turn, so it is rarely there), or HTTP_CNIL.
 */
static uint32_t victim(const http_cache *c)
{
    uint32_t i = c->tail;

    for (int k = 0; k < 8 && i != HTTP_CNIL; k++, i = c->e[i].prev)
        if (c->e[i].pins == 0)
            return i;
    return HTTP_CNIL;
}

/* The entry of key in its chain, whatever its state, or HTTP_CNIL. */
static uint32_t find(const http_cache *c, const char *key, size_t klen, uint32_t h)
{
    for (uint32_t i = c->bucket[h & c->mask]; i != HTTP_CNIL; i = c->e[i].hnext) {
        const http_centry *e = &c->e[i];

        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return i;
    }
    return HTTP_CNIL;
}

const http_centry *http_cache_get(http_cache *c, const char *key, size_t klen,
                                  long long now)
{
    uint32_t i;
    http_centry *e;

    if (c->e == NULL || klen >= HTTP_CACHE_KEY)
        return NULL;
    i = find(c, key, klen, key_hash(key, klen));
    if (i == HTTP_CNIL)
        return NULL;
    e = &c->e[i];
    if (e->state != HTTP_CE_VALID || now - e->stamp >= c->valid_ms)
        return NULL;
    /* From half its validity, this request refills it (http.h). */
    if (now - e->stamp >= c->valid_ms - c->valid_ms / 2 &&
        now - e->rstamp >= quarter(c) && (!e->claimed || now - e->cstamp >= quarter(c))) {
        e->rstamp = now;
        return NULL;
    }
    if (c->head != i) {
        lru_unlink(c, i);
        lru_push_head(c, i);
    }
    c->hits++;
    return e;
}

const char *http_cache_body(const http_cache *c, const http_centry *e)
{
    return c->bodies + (size_t)(e - c->e) * (HTTP_CACHE_HEAD + HTTP_CACHE_BODY) + HTTP_CACHE_HEAD;
}

int http_cache_claim(http_cache *c, const char *key, size_t klen, long long stamp,
                     const struct stat *st, const char *type, uint32_t *gen)
{
    uint32_t h, i;
    http_centry *e;

    if (c->e == NULL || klen >= HTTP_CACHE_KEY || st->st_size <= 0 ||
        st->st_size > (off_t)HTTP_CACHE_BODY)
        return -1;
    h = key_hash(key, klen);
    i = find(c, key, klen, h);
    if (i != HTTP_CNIL && c->e[i].claimed && stamp - c->e[i].cstamp < quarter(c))
        return -1; /* its fill is on its way: do not cancel it */
    if (i == HTTP_CNIL) {
        i = victim(c);
        if (i == HTTP_CNIL)
            return -1;
        hash_unlink(c, i);
    }
    e = &c->e[i];
    lru_unlink(c, i);
    lru_push_head(c, i);
    if (e->state == HTTP_CE_FREE) {
        e->hash = h;
        e->klen = (uint16_t)klen;
        memcpy(e->key, key, klen);
        e->hnext = c->bucket[h & c->mask];
        c->bucket[h & c->mask] = i;
        e->state = HTTP_CE_FILLING;
    }
    /* A valid entry keeps answering (within its own stamp) until the fill. */
    e->claimed = true;
    e->gen++;
    e->cstamp = stamp;
    e->csize = st->st_size;
    e->ctype = type;
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->mtim = st->st_mtim;
    e->ctim = st->st_ctim;
    *gen = e->gen;
    return (int)i;
}

/* Whether st is the file e was claimed for, unchanged (ctime moves with any write). */
static bool same_file(const http_centry *e, const struct stat *st)
{
    return st->st_size == e->csize && st->st_dev == e->dev && st->st_ino == e->ino &&
           st->st_mtim.tv_sec == e->mtim.tv_sec && st->st_mtim.tv_nsec == e->mtim.tv_nsec &&
           st->st_ctim.tv_sec == e->ctim.tv_sec && st->st_ctim.tv_nsec == e->ctim.tv_nsec;
}

void http_cache_fill(http_cache *c, int idx, uint32_t gen, const char *body, size_t len,
                     const struct stat *st)
{
    http_centry *e;

    if (c->e == NULL || idx < 0 || (uint32_t)idx >= c->n)
        return;
    e = &c->e[idx];
    if (e->gen != gen || !e->claimed || e->state == HTTP_CE_FREE)
        return; /* taken by another claim since */
    e->claimed = false;
    if ((off_t)len != e->csize || !same_file(e, st)) {
        /* Changed while it was read: served this once, never kept. A
           valid entry stays as it was, within its own stamp. */
        if (e->state == HTTP_CE_FILLING) {
            hash_unlink(c, (uint32_t)idx);
            lru_unlink(c, (uint32_t)idx);
            lru_push_tail(c, (uint32_t)idx);
        }
        return;
    }
    if (e->pins > 0) {
        /* Its body is being sent: the refill goes to another entry, which
           takes its place; this one is free once its sends are done. */
        uint32_t v = victim(c);
        http_centry *n;

        if (v == HTTP_CNIL)
            return;
        hash_unlink(c, v);
        lru_unlink(c, v);
        n = &c->e[v];
        n->hash = e->hash;
        n->klen = e->klen;
        memcpy(n->key, e->key, e->klen);
        n->cstamp = e->cstamp;
        n->ctype = e->ctype;
        n->mtim = e->mtim;
        n->gen++;
        n->claimed = false;
        hash_unlink(c, (uint32_t)idx);
        lru_unlink(c, (uint32_t)idx);
        lru_push_tail(c, (uint32_t)idx);
        e->gen++;
        n->hnext = c->bucket[n->hash & c->mask];
        c->bucket[n->hash & c->mask] = v;
        lru_push_head(c, v);
        idx = (int)v;
        e = n;
    }
    memcpy((char *)http_cache_body(c, e), body, len);
    e->hsec = -1;
    e->stamp = e->cstamp;
    e->rstamp = e->cstamp;
    e->size = (long long)len;
    e->mtime = e->mtim.tv_sec;
    e->type = e->ctype;
    e->state = HTTP_CE_VALID;
    c->fills++;
}

void http_cache_pin(http_cache *c, int idx)
{
    c->e[idx].pins++;
}

void http_cache_unpin(http_cache *c, int idx)
{
    c->e[idx].pins--;
}

/* --- the per-thread server --- */

void http_srv_init(http_srv *srv, int rootfd, long long header_ms, long long idle_ms,
                   long long send_ms, long long linger_ms, long max_conns)
{
    memset(srv, 0, sizeof(*srv));
    srv->rootfd = rootfd;
    srv->header_ms = header_ms;
    srv->idle_ms = idle_ms;
    srv->send_ms = send_ms;
    srv->linger_ms = linger_ms;
    srv->max_conns = max_conns;
    srv->date_sec = -1;
    srv->lm_sec = -1;
    srv->cache.head = srv->cache.tail = HTTP_CNIL; /* off until http_cache_init */
}

void http_srv_fini(http_srv *srv)
{
    http_pool_drain(&srv->pool);
    http_pipes_fini(&srv->pipes);
    http_cache_fini(&srv->cache);
    http_ofiles_fini(&srv->ofiles);
}

void http_srv_link(http_srv *srv, http_link *l, pd_task *task)
{
    l->task = task;
    l->prev = NULL;
    l->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = l;
    srv->conns = l;
}

void http_srv_unlink(http_srv *srv, http_link *l)
{
    if (l->task == NULL)
        return;
    http_srv_ka_del(srv, l);
    if (l->prev)
        l->prev->next = l->next;
    else
        srv->conns = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
    l->task = NULL;
}

void http_srv_close_idle(http_srv *srv)
{
    /* pd_task_cancel only marks and queues the task: the list stays intact
       while it is walked; each connection unlinks itself in its drop code. */
    for (http_link *l = srv->conns; l != NULL; l = l->next)
        if (l->idle)
            pd_task_cancel(l->task);
}

void http_srv_ka_add(http_srv *srv, http_link *l, pd_op *op, long long deadline)
{
    http_klist *k = &srv->hot;

    l->kl = HTTP_KL_HOT;
    l->op = op;
    l->deadline = deadline;
    l->knext = NULL;
    l->kprev = k->tail;
    if (k->tail)
        k->tail->knext = l;
    else
        k->head = l;
    k->tail = l;
}

void http_srv_ka_del(http_srv *srv, http_link *l)
{
    http_klist *k;

    if (l->kl == HTTP_KL_NONE)
        return;
    k = &srv->hot;
    if (l->kprev)
        l->kprev->knext = l->knext;
    else
        k->head = l->knext;
    if (l->knext)
        l->knext->kprev = l->kprev;
    else
        k->tail = l->kprev;
    l->kprev = l->knext = NULL;
    l->kl = HTTP_KL_NONE;
}

int http_srv_sweep(http_srv *srv, long long now)
{
    int n = 0, ret;
    http_link *l;

    /* pd_task_cancel only marks and queues the task: its drop code, which
       unlinks it, runs later. The list is in deadline order, and the hot
       period ends a fixed time before the deadline, so the walk stops at
       the first connection that has time left. */
    while ((l = srv->hot.head) != NULL &&
           (now >= l->deadline || now >= l->deadline - srv->idle_ms + HTTP_HOT_MS)) {
        if (now >= l->deadline) {
            http_srv_ka_del(srv, l);
            pd_task_cancel(l->task);
            srv->swept_idle++;
            n++;
            continue;
        }
        /*
         * The receive may have written a request into the block already,
         * its completion not yet seen: only the connection, once the
         * receive has ended, may give the block back. The cancel asks for
         * that end; a receive that completed first keeps its bytes (then
         * -ENOENT: nothing to cancel; -EALREADY: asked already).
         */
        ret = pd_task_cancel_op(l->task, l->op);
        if (ret < 0 && ret != -ENOENT && ret != -EALREADY)
            break; /* no room for the cancel now: the next sweep asks again */
        http_srv_ka_del(srv, l);
        srv->swept_cold++;
    }
    return n;
}

/* --- parsing --- */

static http_ctx *ctx_of(http_parser *p)
{
    return (http_ctx *)p; /* the parser is the context's first member */
}

/* Stops the parser at a decision: execute returns, the caller reads req. */
static int stop(http_parser *p, int status)
{
    http_ctx *c = ctx_of(p);

    if (status && !c->req.status)
        c->req.status = (uint16_t)status;
    http_parser_pause(p, 1);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    http_req *r = &ctx_of(p)->req;

    r->in_msg = 1;
    r->in_head = 1;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_ctx *c = ctx_of(p);

    if (c->req.url_len == 0)
        c->req.url_off = (uint32_t)(at - c->in);
    c->req.url_len += (uint32_t)len;
    return 0;
}

/*
 * A field or value may arrive in pieces across reads; the head never moves
 * in the buffer while it is parsed, so the pieces are contiguous.
 */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_ctx *c = ctx_of(p);
    http_req *r = &c->req;

    /* RFC 9112 5.1: no whitespace before the colon. http-parser (not
       strict) takes "Content-Length : 5" as a field of another name, which
       would leave the body it frames to be read as the next request. */
    if (memchr(at, ' ', len) != NULL)
        return stop(p, 400);
    if (r->fields != 1) { /* a new field */
        r->field_off = (uint32_t)(at - c->in);
        r->field_len = 0;
        r->fields = 1;
    }
    r->field_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    static const char ims[] = "if-modified-since", host[] = "host", expect[] = "expect";
    http_ctx *c = ctx_of(p);
    http_req *r = &c->req;

    if (r->fields == 1) { /* the field's name is complete */
        r->fields = 2;
        if (r->field_len == sizeof(host) - 1 &&
            strncasecmp(c->in + r->field_off, host, sizeof(host) - 1) == 0 && r->hosts < 2)
            r->hosts++;
        if (r->field_len == sizeof(expect) - 1 &&
            strncasecmp(c->in + r->field_off, expect, sizeof(expect) - 1) == 0)
            r->expect = 1;
        r->ims_field = r->field_len == sizeof(ims) - 1 &&
                       strncasecmp(c->in + r->field_off, ims, sizeof(ims) - 1) == 0;
        if (r->ims_field) {
            r->ims_off = (uint32_t)(at - c->in);
            r->ims_len = 0;
        }
    }
    if (r->ims_field)
        r->ims_len += (uint32_t)len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_ctx *c = ctx_of(p);
    http_req *r = &c->req;
    int n;

    r->in_head = 0;
    r->keep = (uint8_t)http_should_keep_alive(p);
    r->method = (uint8_t)p->method;
    r->head = p->method == HTTP_HEAD;
    r->minor = (uint8_t)p->http_minor;
    if (p->http_major != 1)
        return stop(p, 400);
    /* RFC 9112 3.2: one Host, and HTTP/1.1 must send it. */
    if (r->hosts > 1 || (r->hosts == 0 && r->minor > 0))
        return stop(p, 400);
    /* RFC 9112 6.1: HTTP/1.0 framed by Transfer-Encoding is faulty framing;
       the parser has read it as chunked, and the connection closes after
       the response. */
    if (p->uses_transfer_encoding && r->minor == 0)
        r->keep = 0;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > HTTP_BODY_MAX)
        return stop(p, 413);
    /* RFC 9110 10.1.1: a client that sent Expect waits for a 100 (Continue)
       before its body. A method that is refused anyway is answered now;
       the body is never read, so the connection closes after the 405. */
    if (r->expect && p->method != HTTP_GET && p->method != HTTP_HEAD &&
        ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0)))
        return stop(p, 405);
    n = http_path(c->in + r->url_off, r->url_len, c->out, HTTP_OUT_CAP);
    if (n < 0)
        return stop(p, -n);
    r->path_len = (int16_t)n;
    if (r->ims_len)
        r->ims = http_date_parse(c->in + r->ims_off, r->ims_len);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_req *r = &ctx_of(p)->req;

    (void)at;
    r->body += (uint32_t)len;
    if (r->body > HTTP_BODY_MAX)
        return stop(p, 413);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_req *r = &ctx_of(p)->req;

    r->complete = 1;
    r->in_msg = 0;
    return stop(p, 0);
}

const http_parser_settings http_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_ctx_reset(http_ctx *c)
{
    uint8_t in_msg = c->req.in_msg;

    memset(&c->req, 0, sizeof(c->req));
    c->req.in_msg = in_msg;
    c->req.path_len = -1;
    c->req.ims = -1;
    http_parser_pause(&c->parser, 0);
}

/* The character classes of http_feed_fast. */
enum {
    FAST_TCHAR = 1,  /* a field name's (RFC 9110 5.6.2 token) */
    FAST_TARGET = 2, /* a target's: RFC 3986 pchar, "/" and "?"; no "#" */
    FAST_VALUE = 4,  /* a field value's: visible ASCII, SP and HTAB */
    FAST_ALL = FAST_TCHAR | FAST_TARGET | FAST_VALUE,
};

static const uint8_t fast_class[256] = {
    ['\t'] = FAST_VALUE, [' '] = FAST_VALUE, ['"'] = FAST_VALUE, ['<'] = FAST_VALUE,
    ['>'] = FAST_VALUE, ['['] = FAST_VALUE, ['\\'] = FAST_VALUE, [']'] = FAST_VALUE,
    ['{'] = FAST_VALUE, ['}'] = FAST_VALUE,
    ['#'] = FAST_TCHAR | FAST_VALUE, ['^'] = FAST_TCHAR | FAST_VALUE,
    ['`'] = FAST_TCHAR | FAST_VALUE, ['|'] = FAST_TCHAR | FAST_VALUE,
    ['('] = FAST_TARGET | FAST_VALUE, [')'] = FAST_TARGET | FAST_VALUE,
    [','] = FAST_TARGET | FAST_VALUE, ['/'] = FAST_TARGET | FAST_VALUE,
    [':'] = FAST_TARGET | FAST_VALUE, [';'] = FAST_TARGET | FAST_VALUE,
    ['='] = FAST_TARGET | FAST_VALUE, ['?'] = FAST_TARGET | FAST_VALUE,
    ['@'] = FAST_TARGET | FAST_VALUE,
    ['!'] = FAST_ALL, ['$'] = FAST_ALL, ['%'] = FAST_ALL, ['&'] = FAST_ALL, ['\''] = FAST_ALL,
    ['*'] = FAST_ALL, ['+'] = FAST_ALL, ['-'] = FAST_ALL, ['.'] = FAST_ALL, ['_'] = FAST_ALL,
    ['~'] = FAST_ALL, ['0' ... '9'] = FAST_ALL, ['A' ... 'Z'] = FAST_ALL, ['a' ... 'z'] = FAST_ALL,
};

/*
 * Whether the field name at name (n bytes of FAST_TCHAR) is lit, of
 * lower-case letters and '-', in any case: setting bit 5 lowers a letter
 * and maps no other token character onto a lower-case letter or '-'. No
 * call into libc's locale-aware strncasecmp for a few bytes.
 */
static bool fast_name_is(const unsigned char *name, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((name[i] | 0x20) != (unsigned char)lit[i])
            return false;
    return true;
}

/*
 * The fast path of http_feed (http.h): one pass over the head, no
 * callbacks. Whatever it is not sure the parser would read as it does (a
 * head in pieces, a field that frames a body or says how the connection
 * goes, any character outside the classes above, a bare LF, an obs-fold,
 * an empty value, a status the parser would give) it
 * declines, and the parser reads: tests/test_httpd.c compares the two on
 * every head one byte (of each class) away from a plain one.
 */
size_t http_feed_fast(http_ctx *c, size_t pos, size_t len)
{
    static const char ims_name[] = "if-modified-since";
    const unsigned char *in = (const unsigned char *)c->in, *p = in + pos, *end = in + len;
    const unsigned char *target, *field = NULL, *ims = NULL;
    size_t target_len, field_len = 0, ims_len = 0;
    unsigned method, minor, hosts = 0;
    bool ims_last = false;
    http_req *r = &c->req;
    int n;

    /* The shortest head: "GET / HTTP/1.0\r\n\r\n". */
    if (end - p < 18)
        return 0;
    if (memcmp(p, "GET ", 4) == 0) {
        method = HTTP_GET;
        p += 4;
    } else if (memcmp(p, "HEAD ", 5) == 0) {
        method = HTTP_HEAD;
        p += 5;
    } else {
        return 0;
    }
    target = p;
    if (*p != '/')
        return 0;
    while (p < end && (fast_class[*p] & FAST_TARGET))
        p++;
    target_len = (size_t)(p - target);
    if (end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || (p[8] != '0' && p[8] != '1') ||
        p[9] != '\r' || p[10] != '\n')
        return 0;
    minor = (unsigned)(p[8] - '0');
    p += 11;
    /* The fields, to the empty line. */
    for (;;) {
        const unsigned char *name = p, *value;
        size_t name_len;

        if (end - p < 2)
            return 0;
        if (p[0] == '\r') {
            if (p[1] != '\n')
                return 0;
            p += 2;
            break;
        }
        while (p < end && (fast_class[*p] & FAST_TCHAR))
            p++;
        name_len = (size_t)(p - name);
        if (name_len == 0 || p == end || *p != ':')
            return 0;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        value = p;
        while (p < end && (fast_class[*p] & FAST_VALUE))
            p++;
        if (p == value || end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return 0;
        /* The fields the parser acts on, which only it reads. */
        switch (name_len) {
        case 7:
            if (fast_name_is(name, name_len, "upgrade", 7))
                return 0;
            break;
        case 10:
            if (fast_name_is(name, name_len, "connection", 10))
                return 0;
            break;
        case 14:
            if (fast_name_is(name, name_len, "content-length", 14))
                return 0;
            break;
        case 16:
            if (fast_name_is(name, name_len, "proxy-connection", 16))
                return 0;
            break;
        default:
            break;
        }
        /* http-parser takes any name that begins with Transfer-Encoding
           for one (it flags the field as the name's bytes match, before
           the name ends) and answers 400 for the request: every such
           name is its to read. */
        if (name_len >= 17 && fast_name_is(name, 17, "transfer-encoding", 17))
            return 0;
        if (fast_name_is(name, name_len, "host", 4))
            hosts++;
        ims_last = fast_name_is(name, name_len, ims_name, sizeof(ims_name) - 1);
        if (ims_last) {
            ims = value;
            ims_len = (size_t)(p - value);
        }
        field = name;
        field_len = name_len;
        p += 2;
    }
    /* RFC 9112 3.2: one Host, and HTTP/1.1 must send it (else 400). */
    if (hosts > 1 || (hosts == 0 && minor > 0))
        return 0;
    n = http_path((const char *)target, target_len, c->out, HTTP_OUT_CAP);
    if (n < 0)
        return 0;
    /* As on_message_begin .. on_message_complete leave it. */
    r->mstart = (uint32_t)pos;
    r->url_off = (uint32_t)(target - in);
    r->url_len = (uint32_t)target_len;
    if (field != NULL) {
        r->fields = 2;
        r->field_off = (uint32_t)(field - in);
        r->field_len = (uint32_t)field_len;
    }
    r->ims_field = ims_last;
    r->hosts = (uint8_t)hosts;
    r->keep = minor > 0; /* http_should_keep_alive without a Connection field */
    r->method = (uint8_t)method;
    r->head = method == HTTP_HEAD;
    r->minor = (uint8_t)minor;
    r->path_len = (int16_t)n;
    if (ims != NULL) {
        r->ims_off = (uint32_t)(ims - in);
        r->ims_len = (uint32_t)ims_len;
        r->ims = http_date_parse((const char *)ims, ims_len);
    }
    r->in_head = 0;
    r->in_msg = 0;
    r->complete = 1;
    return (size_t)(p - (in + pos));
}

size_t http_feed(http_ctx *c, size_t pos, size_t len)
{
    if (!c->req.in_msg) {
        size_t n;

        c->req.mstart = (uint32_t)pos;
        n = http_feed_fast(c, pos, len);
        if (n > 0)
            return n;
    }
    return http_feed_parser(c, pos, len);
}

/*
 * The parser from pos. A request that asks for an Upgrade is answered as
 * any other (RFC 9110 7.8: a server may ignore it) and the connection goes
 * on in HTTP/1.1: on_message_complete pauses the parser before it would
 * stop at the upgrade, and it resumes at the next message. Its upgrade
 * flag is the last request's until the next head is complete, so it says
 * nothing about a head still in pieces and is not read here.
 */
size_t http_feed_parser(http_ctx *c, size_t pos, size_t len)
{
    size_t n;
    enum http_errno e;

    if (!c->req.in_msg)
        c->req.mstart = (uint32_t)pos;
    n = http_parser_execute(&c->parser, &http_settings, c->in + pos, len - pos);
    e = HTTP_PARSER_ERRNO(&c->parser);
    if (e != HPE_OK && e != HPE_PAUSED && !c->req.status)
        c->req.status = 400;
    return n;
}

/* --- paths --- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)(ch | 0x20);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

int http_path(const char *url, size_t len, char *out, size_t cap)
{
    static const char index_name[] = "/index.html";
    const char *p = url, *end = url + len;
    size_t o = 0, seg;
    int trailing = 0;

    /* Absolute-form (RFC 9112 3.2.2): the path is what follows the authority.
       Origin-form, nearly every target, is told by its first byte. */
    if (len >= 7 && *url != '/' && (strncasecmp(url, "http://", 7) == 0 ||
                     (len >= 8 && strncasecmp(url, "https://", 8) == 0))) {
        p = memchr(url, ':', len) + 3;
        while (p < end && *p != '/' && *p != '?' && *p != '#')
            p++;
        if (p == end || *p != '/')
            p = "/", end = p + 1;
    }
    if (p == end || *p != '/')
        return -400; /* "*", "etc/passwd": not a path beneath the root */
    for (const char *q = p; q < end; q++)
        if (*q == '?' || *q == '#') {
            end = q;
            break;
        }
    while (p < end) {
        while (p < end && *p == '/')
            p++;
        if (p == end) {
            trailing = 1;
            break;
        }
        seg = o;
        if (o > 0)
            out[o++] = '/';
        for (; p < end && *p != '/'; p++) {
            char ch = *p;

            if (ch == '%') {
                int hi, lo;

                if (end - p < 3 || (hi = hexval(p[1])) < 0 || (lo = hexval(p[2])) < 0)
                    return -400;
                ch = (char)(hi << 4 | lo);
                if (ch == '\0' || ch == '/')
                    return -400; /* an encoded NUL or separator is never a name */
                p += 2;
            }
            if (o + sizeof(index_name) >= cap)
                return -414;
            out[o++] = ch;
        }
        /* The segment just written, without its separator. */
        {
            const char *s = out + seg + (seg > 0);
            size_t n = o - seg - (seg > 0);

            if (n == 2 && s[0] == '.' && s[1] == '.')
                return -400;
            if (n == 1 && s[0] == '.') {
                /* "." names the directory it is in: "file/." is "file/". */
                o = seg;
                trailing = 1;
                continue;
            }
        }
        trailing = 0;
    }
    if (o == 0) {
        out[o++] = '.';
    } else if (trailing) {
        out[o++] = '/'; /* "file/" must not open a file */
    }
    out[o] = '\0';
    return (int)o;
}

/* --- dates --- */

time_t http_date_parse(const char *s, size_t len)
{
    static const char *const formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
        "%a %b %e %H:%M:%S %Y",      /* asctime */
    };
    char buf[64];
    struct tm tm;

    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        const char *e;

        memset(&tm, 0, sizeof(tm));
        e = strptime(buf, formats[i], &tm);
        if (e != NULL && *e == '\0')
            return timegm(&tm);
    }
    return -1;
}

void http_date_format(time_t t, char out[40])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* --- responses --- */

const char *http_mime(const char *path, size_t len)
{
    static const struct { const char *ext, *type; } types[] = {
        { "html", "text/html" },        { "htm", "text/html" },
        { "txt", "text/plain" },        { "css", "text/css" },
        { "js", "text/javascript" },    { "mjs", "text/javascript" },
        { "json", "application/json" }, { "xml", "text/xml" },
        { "png", "image/png" },         { "jpg", "image/jpeg" },
        { "jpeg", "image/jpeg" },       { "gif", "image/gif" },
        { "svg", "image/svg+xml" },     { "ico", "image/x-icon" },
        { "webp", "image/webp" },       { "avif", "image/avif" },
        { "wasm", "application/wasm" }, { "pdf", "application/pdf" },
        { "woff", "font/woff" },        { "woff2", "font/woff2" },
        { "mp4", "video/mp4" },         { "webm", "video/webm" },
        { "mp3", "audio/mpeg" },        { "gz", "application/gzip" },
    };
    const char *dot = NULL;

    for (size_t i = len; i > 0; i--) {
        if (path[i - 1] == '.') {
            dot = path + i;
            break;
        }
        if (path[i - 1] == '/')
            break;
    }
    if (dot != NULL) {
        size_t n = (size_t)(path + len - dot);

        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strlen(types[i].ext) == n && strncasecmp(dot, types[i].ext, n) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

bool http_status_closes(int status)
{
    return status == 400 || status == 408 || status == 413 || status == 414 ||
           status == 431 || status >= 500;
}

int http_open_status(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return 403;
    case ENOMEM:
    case EMFILE:
    case ENFILE:
        return 503;
    default:
        /* ENOENT, ENOTDIR, ENAMETOOLONG, and EXDEV or ELOOP for a path
           that would leave the root: nothing there, as far as a client
           may know. */
        return 404;
    }
}

/* Appends s (n bytes) at *p if it fits before end. */
static int put(char **p, char *end, const char *s, size_t n)
{
    if ((size_t)(end - *p) < n)
        return -1;
    memcpy(*p, s, n);
    *p += n;
    return 0;
}

#define PUTS(p, end, lit) put((p), (end), (lit), sizeof(lit) - 1)

static int put_num(char **p, char *end, unsigned long long v)
{
    char tmp[24];
    int n = 0;

    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put(p, end, tmp + sizeof(tmp) - n, (size_t)n);
}

int http_head(http_srv *srv, char *out, size_t cap, int status, const char *type,
              long long length, time_t mtime, bool keep, int minor)
{
    char *p = out, *end = out + cap;
    const char *reason = http_reason(status);
    time_t now = time(NULL);
    int bad = 0;

    if (now != srv->date_sec) {
        http_date_format(now, srv->date);
        srv->date_sec = now;
    }
    bad |= PUTS(&p, end, "HTTP/1.1 ");
    bad |= put_num(&p, end, (unsigned)status);
    bad |= PUTS(&p, end, " ");
    bad |= put(&p, end, reason, strlen(reason));
    bad |= PUTS(&p, end, "\r\nServer: polldrop-httpd\r\nDate: ");
    bad |= put(&p, end, srv->date, 29);
    if (type != NULL) {
        bad |= PUTS(&p, end, "\r\nContent-Type: ");
        bad |= put(&p, end, type, strlen(type));
    }
    if (length >= 0) {
        bad |= PUTS(&p, end, "\r\nContent-Length: ");
        bad |= put_num(&p, end, (unsigned long long)length);
    }
    if (mtime >= 0) {
        if (mtime != srv->lm_sec) {
            http_date_format(mtime, srv->lm);
            srv->lm_sec = mtime;
        }
        bad |= PUTS(&p, end, "\r\nLast-Modified: ");
        bad |= put(&p, end, srv->lm, 29);
    }
    if (status == 405)
        bad |= PUTS(&p, end, "\r\nAllow: GET, HEAD");
    /* HTTP/1.1 keeps the connection by default, HTTP/1.0 closes it. */
    if (!keep)
        bad |= PUTS(&p, end, "\r\nConnection: close");
    else if (minor == 0)
        bad |= PUTS(&p, end, "\r\nConnection: keep-alive");
    bad |= PUTS(&p, end, "\r\n\r\n");
    return bad ? -ENOSPC : (int)(p - out);
}

int http_error(http_srv *srv, char *out, size_t cap, int status, bool keep, bool head,
               int minor)
{
    char body[64];
    int blen, n;

    blen = snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));
    if (http_status_closes(status))
        keep = false;
    n = http_head(srv, out, cap, status, "text/plain", blen, -1, keep, minor);
    if (n < 0 || head)
        return n;
    if ((size_t)n + (size_t)blen > cap)
        return -ENOSPC;
    memcpy(out + n, body, (size_t)blen);
    return n + blen;
}

/* The kind of connection a cached head is for: keep-alive, HTTP minor. */
#define HFLAV(keep, minor) ((uint8_t)((keep ? 2 : 0) | (minor ? 1 : 0)))

int http_cache_serve(http_srv *srv, const char *path, size_t len, char *out, size_t cap,
                     const http_req *r, bool keep, long long now, int *pin)
{
    http_centry *e = (http_centry *)http_cache_get(&srv->cache, path, len, now);
    char *body;
    time_t sec;
    bool nm;
    int n;

    *pin = -1;
    if (e == NULL)
        return -1;
    nm = r->ims >= 0 && e->mtime <= r->ims;
    body = (char *)http_cache_body(&srv->cache, e);
    sec = time(NULL);
    if (!nm && !r->head &&
        (e->pins == 0 || (e->hsec == sec && e->hflav == HFLAV(keep, r->minor)))) {
        if (e->hsec != sec || e->hflav != HFLAV(keep, r->minor)) {
            char head[HTTP_CACHE_HEAD];

            n = http_head(srv, head, sizeof(head), 200, e->type, e->size, e->mtime, keep,
                          r->minor);
            if (n < 0)
                return -1;
            memcpy(body - n, head, (size_t)n);
            e->hlen = (uint16_t)n;
            e->hsec = srv->date_sec; /* the second its Date says */
            e->hflav = HFLAV(keep, r->minor);
        }
        *pin = (int)(e - srv->cache.e);
        http_cache_pin(&srv->cache, *pin);
        return (int)e->hlen + (int)e->size;
    }
    n = http_head(srv, out, cap, nm ? 304 : 200, nm ? NULL : e->type, nm ? -1 : e->size,
                  e->mtime, keep, r->minor);
    if (n < 0)
        return -1;
    if (nm || r->head)
        return n;
    if ((size_t)n + (size_t)e->size > cap)
        return -1;
    memcpy(out + n, body, (size_t)e->size);
    return n + (int)e->size;
}

const char *http_cache_resp(const http_srv *srv, int pin)
{
    const http_centry *e = &srv->cache.e[pin];

    return http_cache_body(&srv->cache, e) - e->hlen;
}

int http_cache_sent(http_srv *srv, int pin, char *out, int len, int res)
{
    int done = res > 0 ? res : 0;

    if (done < len)
        memcpy(out, http_cache_resp(srv, pin) + done, (size_t)(len - done));
    http_cache_unpin(&srv->cache, pin);
    return done < len ? len - done : 0;
}

long long http_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}
