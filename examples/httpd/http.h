/*
 * httpd's protocol half: request parsing (Debian's http-parser), the
 * request path kept beneath the root, response heads, and the per-thread
 * state shared by the connection futures of one runtime.
 *
 * The I/O half is written as specs (http_conn, http_accept, http_drain in
 * this directory). Nothing here does I/O except the pool, which maps and
 * unmaps its blocks; everything here belongs to one thread.
 */
#ifndef HTTPD_HTTP_H
#define HTTPD_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "polldrop.h"

/*
 * A connection's working memory is one block: the input buffer (a request
 * head must fit in it: 8 KiB, beyond that 431 or 414) and the output buffer
 * (the decoded path while the file is opened, then the response head and
 * the first bytes of the body). A connection holds a block only while it
 * works on a request, or for HTTP_HOT_MS after a response, so an idle
 * keep-alive connection costs its future alone.
 */
#define HTTP_IN_CAP 8192u
#define HTTP_OUT_CAP 8192u
#define HTTP_BLOCK (HTTP_IN_CAP + HTTP_OUT_CAP)
/*
 * How a body larger than the output buffer goes out (-L): read into the
 * buffer and sent; spliced from the file into a pipe of the connection's
 * own and from the pipe into the socket (bodies of HTTP_SPLICE_MIN bytes
 * or more, through a pipe of HTTP_PIPE_SIZE); or sent by sendfile(2) from
 * the connection's own thread, as much as the socket takes at a time, a
 * full socket waiting in the ring (bodies of HTTP_SPLICE_MIN or more).
 */
enum { HTTP_BODY_COPY = 0, HTTP_BODY_SPLICE = 1, HTTP_BODY_SENDFILE = 2 };
/*
 * The most one sendfile(2) is asked to send: a socket takes far less at a
 * time (its send buffer), so this only bounds one call's work.
 */
#define HTTP_SENDFILE_MAX (16u * 1024u * 1024u)
#define HTTP_SPLICE_MIN (64u * 1024u)
#define HTTP_PIPE_SIZE (1024u * 1024u)

/*
 * The pipes of large bodies. A response takes a pipe from its thread's
 * spare ones, or makes one (close-on-exec, non-blocking, HTTP_PIPE_SIZE if
 * the system allows, else its default), and gives it back empty when the
 * body is out; up to HTTP_PIPES_SPARE empty pipes are kept, so that a
 * busy thread makes no pipe per response. A pipe that may still hold bytes
 * (a response that ended early) is closed instead: a pipe is reused only
 * empty.
 */
#define HTTP_PIPES_SPARE 8
typedef struct http_pipes {
    int fd[HTTP_PIPES_SPARE][2]; /* [i][0] the read end, [i][1] the write end */
    int n;                        /* spare pipes in fd[0..n) */
} http_pipes;

/*
 * Takes a spare pipe of ps, or makes one. Returns 0, or -errno with both
 * fds -1: the caller then reads and sends instead.
 */
int http_pipe_open(http_pipes *ps, int *r, int *w);
/*
 * Gives a pipe taken by http_pipe_open back to ps if empty says it holds
 * no bytes and ps has room, else closes it; if open, and sets both fds to
 * -1.
 */
void http_pipe_put(http_pipes *ps, int *r, int *w, bool empty);
/* Closes a pipe taken by http_pipe_open, if open, and sets both fds to -1. */
void http_pipe_close(int *r, int *w);
/* Closes the spare pipes of ps. */
void http_pipes_fini(http_pipes *ps);
/*
 * Splices up to len bytes of file ffd at *off into the pipe's write end
 * pipe_w, as many as the pipe has room for, without waiting (the pipe is
 * non-blocking): returns the bytes moved (and advances *off), 0 at the
 * file's end, or -errno (-EAGAIN: the pipe is full).
 */
ssize_t http_pipe_fill(int pipe_w, int ffd, long long *off, size_t len);
/*
 * Splices up to len bytes from the pipe's read end pipe_r into the
 * non-blocking socket fd, as many as the socket takes now; more says that
 * more of the body follows (SPLICE_F_MORE). Returns the bytes moved or
 * -errno (-EAGAIN: the socket is full).
 */
ssize_t http_pipe_drain(int pipe_r, int fd, size_t len, bool more);

/*
 * Whether err (a -errno of splice(2) or sendfile(2) from a file, before any
 * byte moved) says that the file cannot be moved that way at all: EINVAL
 * (its file system cannot splice), ENOSYS or EOPNOTSUPP (the call is
 * missing or filtered). The connection then reads and sends the rest of
 * the body instead (the copy path), rather than ending.
 */
bool http_no_splice(long err);

/* A request body (GET with Content-Length or chunked) is discarded up to this. */
#define HTTP_BODY_MAX (64u * 1024u)
/* How long a keep-alive connection keeps its block after a response. */
#define HTTP_HOT_MS 1000
/*
 * How often each thread's sweeper (http_sweep) looks at its keep-alive
 * connections: one waiting for its next request is closed at most this
 * long after its IDLE_MS, and its receive is cancelled (so that it gives
 * its block back) at most this long after HTTP_HOT_MS.
 */
#define HTTP_SWEEP_MS 100
/*
 * Accept loops per thread on the same listener: a single-shot accept takes
 * one connection per turn of the runtime, and a turn under load serves
 * every busy connection first, so one loop would leave a burst of new
 * connections waiting in the backlog for many turns.
 */
#define HTTP_ACCEPTORS 8
/* Blocks kept mapped for reuse beyond those in use. */
#define HTTP_POOL_SPARE 16u

typedef struct http_pool {
    void *free;      /* singly linked through each block's first word */
    unsigned nfree;
    long mapped;     /* blocks mapped now (in use + spare) */
} http_pool;

/* Takes a block, mapping one if none is spare. Returns 0 or -ENOMEM. */
int http_pool_get(http_pool *p, char **blk);
/* Gives a block back; beyond HTTP_POOL_SPARE spare ones it is unmapped. */
void http_pool_put(http_pool *p, char *blk);
/* Unmaps every spare block (blocks in use must have been put back). */
void http_pool_drain(http_pool *p);

/*
 * The response cache of one thread: the bytes and the stat of small files
 * recently served, so that a request for one of them costs no open, no
 * stat, no read and no close, only its receive and its send.
 *
 * Key: the request's decoded path (before a directory's index.html is
 * appended), shorter than HTTP_CACHE_KEY. Only a 200 GET of a regular file
 * of 1 to HTTP_CACHE_BODY bytes fills an entry, and only when the read
 * delivered the whole file and an fstat after the read finds the file as
 * the fstat after the open did (same device, inode, size, mtime, ctime).
 *
 * The validity rule: an entry's stamp is the monotonic time taken before
 * the openat2 that filled it, and the entry answers a request only while
 * now - stamp < valid_ms. What it answers was read after its stamp, so a
 * change to the file (rewritten, renamed over, removed, replaced by a
 * link out of the root) that completed at time T is seen by every request
 * routed at or after T + valid_ms: such a request finds the entry stale,
 * opens the path again with openat2 (RESOLVE_BENEATH), and refills the
 * entry or answers 404. valid_ms 0 or no entries: nothing is cached.
 *
 * Refreshed ahead: from half of valid_ms after its stamp, one request for
 * the file (one per quarter of valid_ms, while no refill arrives) is not
 * answered by the entry but opens the file and refills it, while the
 * others are answered by the entry until its own stamp runs out; the
 * refill replaces it with its own stamp, or, if the file changed while it
 * was read, is dropped. A file asked for without pause is thus opened
 * about twice per valid_ms, not by every request between the entry's
 * expiry and its refill. For the same reason a claim of a key whose fill
 * is on its way (claimed less than a quarter of valid_ms ago) is refused:
 * the request is answered from its own read and does not cancel the fill.
 *
 * Bounded: a fixed table of entries, mapped once at start (no allocation
 * per request), a chained hash over it and an LRU list; a new file takes
 * the entry of the least recently used one. Entries hold no descriptor.
 */
#define HTTP_CACHE_KEY 128u
#define HTTP_CACHE_BODY 7168u   /* a cached body and its head fit in the output */
#define HTTP_CACHE_HEAD 512u    /* room for a 200 head before each cached body */
/* A file is cached or kept open, never both: http_conn's file state asks
   the cache for a kept file too, and relies on it refusing one. */
_Static_assert(HTTP_CACHE_BODY < HTTP_SPLICE_MIN, "a kept file must be too large to cache");
#define HTTP_CACHE_ENTRIES 128  /* the default of -C, per thread */
#define HTTP_CACHE_VALID_MS 1000 /* the default of -V */
#define HTTP_CNIL UINT32_MAX

enum { HTTP_CE_FREE = 0, HTTP_CE_FILLING = 1, HTTP_CE_VALID = 2 };

typedef struct http_centry {
    uint32_t hnext;          /* the next entry of its hash chain, or HTTP_CNIL */
    uint32_t prev, next;     /* the LRU list, most recent first */
    uint32_t hash;
    uint32_t gen;            /* bumped at each claim: a late fill finds it changed */
    uint8_t state;           /* HTTP_CE_* */
    bool claimed;            /* a claim's fill is on its way */
    uint16_t klen;
    uint32_t pins;           /* sends in flight from it: it is not overwritten */
    uint16_t hlen;           /* the 200 head before the body, for Date hsec, */
    uint8_t hflav;           /* of this keep-alive and HTTP minor (HFLAV) */
    time_t hsec;             /* -1: none */
    /* What the entry answers with (HTTP_CE_VALID). */
    long long stamp;         /* http_now_ms() before the open that filled it */
    long long size;
    time_t mtime;
    const char *type;        /* the Content-Type */
    long long rstamp;        /* when a request last set out to refresh it */
    /* The outstanding claim: the file as the fstat after its open saw it. */
    long long cstamp;
    const char *ctype;
    dev_t dev;
    ino_t ino;
    off_t csize;
    struct timespec mtim, ctim;
    char key[HTTP_CACHE_KEY];
} http_centry;

typedef struct http_cache {
    http_centry *e;          /* NULL: the cache is off */
    uint32_t *bucket;        /* nbuckets chain heads */
    char *bodies;            /* per entry: HTTP_CACHE_HEAD, HTTP_CACHE_BODY bytes */
    size_t map_len;
    uint32_t n, mask;
    uint32_t head, tail;     /* the LRU list; free entries are at its tail */
    long long valid_ms;
    uint64_t hits, fills;
} http_cache;

/*
 * Maps a cache of entries (0: off) whose entries answer for valid_ms.
 * Returns 0 or -ENOMEM. A cache zeroed by memset is a valid, off cache.
 */
int http_cache_init(http_cache *c, long entries, long long valid_ms);
/* Unmaps the cache; it is off afterwards. */
void http_cache_fini(http_cache *c);
/*
 * The entry for key (klen bytes) if it may answer a request routed at now:
 * filled and now - stamp < valid_ms (it becomes the most recently used);
 * else NULL. Also NULL for the one request that is to refresh it (from
 * half of valid_ms, see above): that request opens the file and claims
 * the entry, which answers the others meanwhile.
 */
const http_centry *http_cache_get(http_cache *c, const char *key, size_t klen,
                                  long long now);
/* The body of e, e->size bytes. */
const char *http_cache_body(const http_cache *c, const http_centry *e);
/*
 * Takes an entry for key, to be filled from the file st describes (opened
 * after stamp), of Content-Type type: the entry key already has, else the
 * least recently used. Returns its index and sets *gen, or -1 when the
 * cache is off or the key or the file is not one it keeps.
 */
int http_cache_claim(http_cache *c, const char *key, size_t klen, long long stamp,
                     const struct stat *st, const char *type, uint32_t *gen);
/*
 * Fills entry idx, claimed with gen, with the file's body (len bytes, the
 * whole file) and st, an fstat taken after the body was read. The entry
 * becomes valid only if it is still that claim's and st shows the file
 * unchanged since the claim; otherwise it is emptied.
 */
void http_cache_fill(http_cache *c, int idx, uint32_t gen, const char *body, size_t len,
                     const struct stat *st);
/* Pins entry idx, which answered: its body is sent from where it is. */
void http_cache_pin(http_cache *c, int idx);
/* Takes back a pin of http_cache_pin. */
void http_cache_unpin(http_cache *c, int idx);

/*
 * The open large files of one thread: the descriptors of files of
 * HTTP_SPLICE_MIN bytes or more recently served, so that a request for one
 * of them costs no openat2 (no path walk beneath the root) and no final
 * close, only a dup of the kept descriptor (F_DUPFD_CLOEXEC), an fstat of
 * it and the dup's close. Each response has its own descriptor and sends
 * at explicit offsets, so nothing is shared but the open file; a slot's
 * descriptor is closed whenever the slot is replaced, and the responses
 * sending from a dup of it go on undisturbed.
 *
 * The validity rule is the response cache's (valid_ms, -V): a slot's stamp
 * is the monotonic time taken before the openat2 that opened it, and it
 * answers a request routed at now only while now - stamp < valid_ms. So a
 * change of what the path names (renamed over, removed, replaced by a
 * link out of the root) completed at T is seen by every request routed at
 * or after T + valid_ms, which opens the path again beneath the root and
 * replaces the slot or answers 404. A change of the file itself (written
 * in place, truncated) is seen at once: every response takes its size and
 * mtime from a fresh fstat. Key: the request's decoded path, shorter than
 * HTTP_CACHE_KEY; a directory's index file is not kept.
 *
 * Bounded: HTTP_OFILES slots per thread, the oldest replaced by a new
 * file; a slot past its validity is closed by the thread's next lookup
 * (any path) or its sweeper's next tick (http_ofiles_expire), whichever
 * comes first, so a removed file is held open at most valid_ms +
 * HTTP_SWEEP_MS (or until the drain cancels the sweeper, then its exit). valid_ms 0: nothing is
 * kept (httpd keeps none when its response cache is off, -C 0).
 */
#define HTTP_OFILES 8

typedef struct http_ofile {
    int fd;                  /* the kept descriptor, when klen > 0 */
    uint16_t klen;           /* 0: a free slot */
    long long stamp;         /* http_now_ms() before the openat2 that opened fd */
    char key[HTTP_CACHE_KEY];
} http_ofile;

/* Zeroed (memset): every slot free, off. */
typedef struct http_ofiles {
    http_ofile f[HTTP_OFILES];
    long long valid_ms;      /* 0: off */
    uint64_t hits;
} http_ofiles;

/*
 * A new descriptor (close-on-exec, the caller's to close) of the file kept
 * for key (klen bytes), if a slot holds it within its validity at now;
 * else -1. Closes every slot past its validity on the way.
 */
int http_ofile_get(http_ofiles *o, const char *key, size_t klen, long long now);
/*
 * Keeps a duplicate of fd, a regular file just opened for key with
 * openat2 after stamp, in the slot of key, else a free slot, else the
 * oldest one (closing what the slot held). Nothing when o is off, the key
 * does not fit, or the duplicate cannot be made.
 */
void http_ofile_put(http_ofiles *o, const char *key, size_t klen, long long stamp, int fd);
/*
 * Closes every slot past its validity at now. The thread's sweeper calls
 * it at each tick, so that a file removed while kept goes back to its file
 * system within valid_ms + HTTP_SWEEP_MS on an idle server too, not at the
 * thread's next large-file request.
 */
void http_ofiles_expire(http_ofiles *o, long long now);
/* Closes every kept descriptor; o is empty afterwards. */
void http_ofiles_fini(http_ofiles *o);

/*
 * A connection's entry in its server's list, embedded in the future: the
 * drain walks the list to close the idle ones.
 */
typedef struct http_link {
    struct http_link *prev, *next;
    pd_task *task;
    bool idle;               /* waiting for a request: the drain closes it at once */
    uint8_t kl;              /* the keep-alive list it is on: HTTP_KL_* */
    struct http_link *kprev, *knext;
    pd_op *op;               /* its receive (recv_ka), on the hot list */
    long long deadline;      /* its idle deadline, on a keep-alive list */
} http_link;

/*
 * The keep-alive list of a thread (the hot list). A connection that has
 * answered a request waits for the next one with a receive into its
 * block and no timer (http_conn's recv_ka), on the hot list. Once
 * HTTP_HOT_MS have passed since its response, the sweeper takes it off
 * the list and cancels that receive, not the connection: the connection
 * itself, in the receive's then, gives its block back to the pool when
 * the receive ends -ECANCELED, and waits on without it (the peek, under
 * its own timer, to the same deadline). Only there does nothing owe the
 * block any bytes: a receive may have copied a request into it already,
 * its completion not yet seen (in the batch the runtime is reaping, or,
 * without DEFER_TASKRUN, at any time), so the sweeper never touches the
 * block's memory; a receive that completed before the cancel reached it
 * delivers its bytes, and the cancel finds nothing. At its deadline
 * (IDLE_MS after the response) a connection still on the list is
 * cancelled: its teardown is a lingering close. Every connection enters
 * the list with a deadline of now + IDLE_MS, now never decreasing, so the
 * list is in deadline order and the sweeper looks only at what expired.
 */
enum { HTTP_KL_NONE = 0, HTTP_KL_HOT = 1 };

typedef struct http_klist {
    http_link *head, *tail;
} http_klist;

struct http_srv;

/* Another thread, as the first thread's drain sees it (http_drain). */
typedef struct http_peer {
    pd_runtime *rt;          /* NULL if the thread could not make one */
    struct http_srv *srv;
} http_peer;

/* One thread's server: what its connection futures share. */
typedef struct http_srv {
    int rootfd;              /* O_PATH directory every request resolves beneath */
    long long header_ms;     /* a request's head and body must arrive within this */
    long long idle_ms;       /* a keep-alive connection waits this long for a request */
    long long send_ms;       /* a send may wait this long for room in the socket */
    long long linger_ms;     /* a lingering close discards input at most this long */
    long max_conns;          /* connections of this thread at once */
    long live;               /* connections of this thread now */
    long accepting;          /* accepts in flight, counted against max_conns */
    bool draining;           /* SIGINT/SIGTERM: finish what is in progress, then close */
    bool quiet;
    int body;                /* HTTP_BODY_*: how large bodies go out */
    pd_task *accept_tasks[HTTP_ACCEPTORS]; /* cancelled when the drain begins */
    pd_task *drain_task;     /* cancelled by the last connection to go while draining */
    bool cut;                /* the drain was cut at its deadline */
    const http_peer *peers;  /* the other threads, handed the drain when the first */
    int npeers;              /* thread's begins (the first thread reads the signals) */
    int signo;               /* the signal that began the drain, if one did */
    http_link *conns;        /* every live connection, for the drain */
    http_klist hot;          /* connections waiting between requests, by deadline */
    pd_task *sweep_task;     /* the sweeper, cancelled when the drain begins */
    uint64_t swept_idle, swept_cold; /* closed at IDLE_MS; receives cancelled at HTTP_HOT_MS */
    http_pool pool;
    http_pipes pipes;        /* spare pipes of large bodies */
    http_cache cache;
    http_ofiles ofiles;      /* descriptors of large files recently served */
    uint64_t responses;      /* responses sent completely */
    uint64_t accepted;
    /* Cached formatted times: the Date of this second, the last Last-Modified. */
    time_t date_sec, lm_sec;
    char date[40], lm[40];
    /*
     * Shared targets of reads whose bytes nobody looks at: the 1-byte
     * MSG_PEEK that waits for an idle connection's next request, and the
     * discarded input of lingering closes. Kernel writes to them may
     * overlap; no code reads them.
     */
    char peek;
    char scratch[4096];
} http_srv;

/* Initialises srv for rootfd; ms values are those of the command line. */
void http_srv_init(http_srv *srv, int rootfd, long long header_ms, long long idle_ms,
                   long long send_ms, long long linger_ms, long max_conns);
/* Releases the pool; every connection must be gone. */
void http_srv_fini(http_srv *srv);

/* Links a connection into srv's list, and unlinks it (idempotent). */
void http_srv_link(http_srv *srv, http_link *l, pd_task *task);
void http_srv_unlink(http_srv *srv, http_link *l);

/* Cancels every idle connection of srv: the first step of a drain. */
void http_srv_close_idle(http_srv *srv);

/*
 * Puts l, whose connection now waits for its next request with the
 * receive op (submitted next, in the same poll) until deadline, at the
 * tail of srv's hot list. deadline must be at least that of every
 * connection on the list (now + IDLE_MS does).
 */
void http_srv_ka_add(http_srv *srv, http_link *l, pd_op *op, long long deadline);
/* Takes l off the hot list, if it is on it. */
void http_srv_ka_del(http_srv *srv, http_link *l);
/*
 * The sweep at now: every connection on the hot list past its deadline
 * is taken off it and cancelled; every one past its HTTP_HOT_MS is taken
 * off it and its receive is cancelled (the connection then gives its
 * block back itself). The block's memory is never touched. Returns the
 * connections cancelled.
 */
int http_srv_sweep(http_srv *srv, long long now);

/* What the parser callbacks learn about the request being read. */
typedef struct http_req {
    uint32_t mstart;         /* offset in the input of the current message */
    uint32_t url_off, url_len;
    uint32_t field_off, field_len;
    uint32_t ims_off, ims_len;
    uint32_t body;           /* body bytes seen (discarded) */
    uint16_t status;         /* an error already decided (0: none) */
    uint8_t in_msg;          /* between message begin and message complete */
    uint8_t in_head;         /* before headers complete */
    uint8_t fields;          /* a header field has begun (the request line is over) */
    uint8_t ims_field;       /* the current field is If-Modified-Since */
    uint8_t hosts;           /* Host fields seen, up to 2 */
    uint8_t expect;          /* an Expect field was seen */
    uint8_t complete;        /* message complete: the parser is paused */
    uint8_t keep;            /* http_should_keep_alive at headers complete */
    uint8_t head;            /* the method is HEAD */
    uint8_t minor;           /* HTTP/1.x minor version */
    uint8_t method;          /* enum http_method */
    int16_t path_len;        /* decoded path in the output buffer, or -1 */
    time_t ims;              /* If-Modified-Since, or -1 */
} http_req;

extern const http_parser_settings http_settings;

/*
 * Feeds the parser in[*pos .. len). Stops at the end of the data, at the
 * end of a message (req->complete) or at an error (req->status set: 400,
 * 413, 414 or 431). The parser's data must point to the request's
 * http_ctx. Returns the number of bytes consumed.
 */
typedef struct http_ctx {
    http_parser parser;
    http_req req;
    char *in;                /* the block's input buffer */
    char *out;               /* the block's output buffer (decoded path) */
} http_ctx;

void http_ctx_reset(http_ctx *c);
size_t http_feed(http_ctx *c, size_t pos, size_t len);

/*
 * http_feed's two halves, apart for the tests. http_feed_fast reads a whole
 * request head at a message boundary (req->in_msg clear) when it is of the
 * plain kind nearly every client sends: GET or HEAD of an origin-form
 * target, HTTP/1.0 or 1.1, fields of token names and visible values, none
 * of those that frame a body or govern the connection (Content-Length,
 * Transfer-Encoding, Connection, Proxy-Connection, Upgrade), one Host
 * (none for 1.0), a target http_path takes, all of it CRLF-terminated and
 * in in[pos .. len). It then leaves req exactly as the parser's callbacks
 * would, message complete, and returns the bytes consumed; anything else it
 * declines (returns 0, req untouched but for mstart), and the parser reads
 * it. http_feed_parser is the parser alone.
 */
size_t http_feed_fast(http_ctx *c, size_t pos, size_t len);
size_t http_feed_parser(http_ctx *c, size_t pos, size_t len);

/*
 * Decodes a request target into a relative path beneath the root,
 * NUL-terminated, in out (cap bytes): "/" is ".", "/a//./b" is "a/b", and a
 * target that names a directory ("/a/b/", "/a/b/.") keeps one trailing
 * "/" ("a/b/"), so that a file's name followed by it does not open.
 * Refuses (returns -400) a target that is not origin-form or absolute-form,
 * a bad percent escape, an encoded NUL or '/', and any "." or ".." segment
 * that would climb ("..", "%2e%2e"). Returns -414 if it does not fit with
 * room for "/index.html". Returns the length.
 */
int http_path(const char *url, size_t len, char *out, size_t cap);

/* Parses an HTTP date (RFC 9110: IMF-fixdate, RFC 850, asctime); -1 if bad. */
time_t http_date_parse(const char *s, size_t len);
/* Formats t as an IMF-fixdate (29 characters and a NUL). */
void http_date_format(time_t t, char out[40]);

/* The Content-Type for a path by its extension. */
const char *http_mime(const char *path, size_t len);

/* The reason phrase of a status this server sends. */
const char *http_reason(int status);

/*
 * Writes a response head into out (cap bytes): status line, Server, Date,
 * Content-Type, Content-Length, Last-Modified when mtime >= 0, and a
 * Connection header when keep-alive differs from the version's default.
 * Returns its length, or -ENOSPC.
 */
int http_head(http_srv *srv, char *out, size_t cap, int status, const char *type,
              long long length, time_t mtime, bool keep, int minor);

/*
 * Writes a complete error response (a one-line text body, none for HEAD)
 * into out. Statuses that end the connection (400, 408, 413, 414, 431)
 * always say Connection: close. Returns its length.
 */
int http_error(http_srv *srv, char *out, size_t cap, int status, bool keep, bool head,
               int minor);

/*
 * Answers a GET or HEAD of r from the cache entry for path (len bytes), if
 * one may answer at now: 304 when r's If-Modified-Since allows, else 200
 * with the body (none for HEAD). A 200 with a body is sent from the entry
 * itself, head and body, without a copy: the entry keeps the head it
 * composed last just before its body, valid for one second of Date and
 * one kind of connection (keep-alive or not, HTTP/1.0 or 1.1), and
 * rewrites it when these differ; *pin is then the entry, pinned (neither
 * rewritten nor reused) until http_cache_sent, and http_cache_resp(srv,
 * *pin) the response. Otherwise (a pinned entry's head does not fit this
 * request; HEAD, 304) *pin is -1 and the whole response is written into
 * out (cap bytes). Returns the response's length, or -1 when the cache
 * cannot answer.
 */
int http_cache_serve(http_srv *srv, const char *path, size_t len, char *out, size_t cap,
                     const struct http_req *r, bool keep, long long now, int *pin);
/* The response of cache entry pin, as http_cache_serve set it out. */
const char *http_cache_resp(const http_srv *srv, int pin);
/*
 * After the send of a cached response of len bytes (http_cache_serve's
 * *pin) sent res bytes, or failed with res < 0: copies what was not sent
 * to the start of out, and unpins the entry. Returns the length of that
 * rest (0: all was sent).
 */
int http_cache_sent(http_srv *srv, int pin, char *out, int len, int res);

/* Whether status must end the connection after its response. */
bool http_status_closes(int status);

/* The status for an errno of opening a path beneath the root. */
int http_open_status(int err);

/*
 * Tells valgrind's memcheck that the kernel filled buf through io_uring,
 * which it cannot see; nothing without valgrind's headers. The blocks need
 * no such note: memcheck takes fresh anonymous mappings as defined.
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HTTP_KERNEL_WROTE(buf, len) ((void)VALGRIND_MAKE_MEM_DEFINED((buf), (len)))
#endif
#endif
#ifndef HTTP_KERNEL_WROTE
#define HTTP_KERNEL_WROTE(buf, len) ((void)(buf), (void)(len))
#endif

/* Milliseconds of CLOCK_MONOTONIC. */
long long http_now_ms(void);

#endif /* HTTPD_HTTP_H */
