/*
 * httpd: the protocol module's pure functions, the server over real
 * sockets (run by httpd_run in a child process, so that the sanitized
 * runner checks the server's code too), and the harness over the
 * connection future.
 *
 * No test asserts a duration: deadlines are made short (-H, -k, -d of a
 * few hundred ms) and each test waits for their effect, with generous
 * receive timeouts only as a guard against a hang.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "http.h"
#include "http_conn.h"
#include "http_sweep.h"
#include "server.h"
#include "testutil.h"

/* --- the served tree --- */

#define HELLO "hello, world\n"
#define BIG_SIZE (8u << 20)
/* A patterned file larger than a pipe and not a multiple of a page. */
#define LARGE_SIZE ((3u << 20) + 17u)

typedef struct tree {
    char root[64], secret[80];
} tree;

static void put_file(const char *dir, const char *name, const void *data, size_t len)
{
    char p[256];
    int fd;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    pd_test_write(fd, data, len);
    close(fd);
}

static void sub_dir(const char *dir, const char *name)
{
    char p[256];

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    ck_assert_int_eq(mkdir(p, 0755), 0);
}

static void sub_link(const char *dir, const char *name, const char *target)
{
    char p[256];

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    ck_assert_int_eq(symlink(target, p), 0);
}

/* The 4 KiB file's bytes: a pattern a test can check without the file. */
static char pattern_at(size_t i)
{
    return (char)('a' + (i * 7 + i / 13) % 26);
}

static void tree_make(tree *t)
{
    char buf[4096], sub[128], p[160];
    int fd;

    /* A fresh name every time: a run killed earlier may have left its tree,
       and CK_FORK=no runs every test in one process. */
    snprintf(t->root, sizeof(t->root), "/tmp/pd-httpd-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->root));
    ck_assert_int_eq(chmod(t->root, 0755), 0);
    snprintf(t->secret, sizeof(t->secret), "%s.secret", t->root);
    put_file(t->root, "hello.txt", HELLO, strlen(HELLO));
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = pattern_at(i);
    put_file(t->root, "4k.bin", buf, sizeof(buf));
    {
        char *large = malloc(LARGE_SIZE);

        ck_assert_ptr_nonnull(large);
        for (size_t i = 0; i < LARGE_SIZE; i++)
            large[i] = pattern_at(i);
        put_file(t->root, "large.bin", large, LARGE_SIZE);
        /* Just past the splice threshold, and small enough to sit in a
           socketpair's buffer: the harness's fixture never reads. */
        put_file(t->root, "mid.bin", large, HTTP_SPLICE_MIN + 4096);
        free(large);
    }
    /* Sparse: 8 MiB of zeros that cost no writes. */
    snprintf(p, sizeof(p), "%s/big.bin", t->root);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, BIG_SIZE), 0);
    close(fd);
    put_file(t->root, "index.html", "<p>root</p>\n", 12);
    sub_dir(t->root, "dir");
    snprintf(sub, sizeof(sub), "%s/dir", t->root);
    put_file(sub, "index.html", "<p>dir</p>\n", 11);
    sub_dir(t->root, "empty");
    put_file("/", t->secret + 1, "secret\n", 7);
    sub_link(t->root, "link_in", "hello.txt");
    sub_link(t->root, "link_out", t->secret);
    sub_link(t->root, "up", "..");
}

static void tree_remove(tree *t)
{
    static const char *names[] = { "hello.txt", "4k.bin", "big.bin", "large.bin", "mid.bin",
                                   "index.html",
                                   "dir/index.html", "dir", "empty", "link_in",
                                   "link_out", "up" };
    char p[256];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", t->root, names[i]);
        if (unlink(p) < 0)
            rmdir(p);
    }
    rmdir(t->root);
    unlink(t->secret);
}

/* --- the server in a child process --- */

typedef struct server {
    tree t;
    pid_t pid;
    int port;
    long threads;            /* 0: 1 */
    long nofile;             /* 0: the inherited RLIMIT_NOFILE */
    int body;                /* -L: 0 the default, else HTTP_BODY_* + 1 */
    long long send_ms;       /* -S: 0 the default */
    long long linger_ms;     /* 0: the default */
    long cache_entries;      /* -C: 0 the default, -1 none */
    long long valid_ms;      /* -V: 0 the default */
    bool no_splice;          /* splice(2) and sendfile(2) fail with EINVAL */
    const char *cc;          /* -T: NULL the system's congestion control */
} server;

/*
 * Makes splice(2) and sendfile(2) fail with EINVAL in this process from
 * now on, as on a file system that cannot splice (a seccomp filter: no
 * file system of the test machine refuses to splice a regular file).
 * Exits 98 if the filter cannot be loaded.
 */
static void deny_splice(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_splice, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendfile, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
    };
    struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        exit(98);
}

static void server_start_opts(server *s, long long header_ms, long long idle_ms,
                              long long drain_ms, long max_conns)
{
    int p[2];
    struct pollfd pfd;

    tree_make(&s->t);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        httpd_opts o;

        close(p[0]);
        /* A test that fails leaves no server behind (SIGTERM is blocked). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        httpd_defaults(&o);
        o.root = s->t.root;
        o.port = 0;
        o.quiet = 1;
        o.ready_fd = p[1];
        o.header_ms = header_ms;
        o.idle_ms = idle_ms;
        o.drain_ms = drain_ms;
        o.max_conns = max_conns;
        if (s->threads > 0)
            o.threads = s->threads;
        if (s->body > 0)
            o.body = s->body - 1;
        if (s->send_ms > 0)
            o.send_ms = s->send_ms;
        if (s->linger_ms > 0)
            o.linger_ms = s->linger_ms;
        if (s->cache_entries != 0)
            o.cache_entries = s->cache_entries < 0 ? 0 : s->cache_entries;
        if (s->valid_ms > 0)
            o.cache_valid_ms = s->valid_ms;
        o.cc = s->cc;
        if (s->no_splice)
            deny_splice();
        if (s->nofile > 0) {
            struct rlimit rl = { .rlim_cur = (rlim_t)s->nofile, .rlim_max = (rlim_t)s->nofile };

            if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                exit(99);
        }
        exit(httpd_run(&o));
    }
    close(p[1]);
    pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
    ck_assert_int_eq(poll(&pfd, 1, 20000), 1);
    ck_assert_int_eq(read(p[0], &s->port, sizeof(s->port)), (ssize_t)sizeof(s->port));
    close(p[0]);
}

static void server_start(server *s)
{
    *s = (server){ 0 };
    server_start_opts(s, 10000, 5000, 5000, 10000);
}

/* Sends SIGTERM and returns the server's exit status (-1 if it did not exit). */
static int server_stop(server *s)
{
    int status;

    kill(s->pid, SIGTERM);
    ck_assert_int_eq(waitpid(s->pid, &status, 0), s->pid);
    tree_remove(&s->t);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* --- a blocking client --- */

typedef struct client {
    int fd;
    size_t len;
    char buf[1 << 16];
} client;

typedef struct response {
    int status;
    long long length;        /* Content-Length, or -1 */
    char head[2048];
    char body[8192];         /* the first bytes of the body */
    size_t got;              /* body bytes received */
} response;

static int dial(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    struct timeval tv = { .tv_sec = 20 };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A guard against a hang, not a measurement. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static client *client_new(int port)
{
    client *c = calloc(1, sizeof(*c));

    ck_assert_ptr_nonnull(c);
    c->fd = dial(port);
    return c;
}

static void client_free(client *c)
{
    close(c->fd);
    free(c);
}

static void say(client *c, const char *s)
{
    pd_test_write(c->fd, s, strlen(s));
}

/* Reads more into c->buf; returns bytes read, 0 at end of stream, -errno. */
/*
 * recv(2) that goes on after an interruption: with SO_RCVTIMEO set, a
 * receive returns EINTR on any wakeup of the process that is not data
 * (a freeze and thaw of its cgroup, a stop and continue), signal handler
 * or not, and the kernel does not restart it.
 */
static ssize_t recv_intr(int fd, void *buf, size_t len, int flags)
{
    ssize_t n;

    while ((n = recv(fd, buf, len, flags)) < 0 && errno == EINTR)
        ;
    return n;
}

static ssize_t fill(client *c)
{
    ssize_t n = recv_intr(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);

    if (n < 0)
        return -errno;
    c->len += (size_t)n;
    return n;
}

static void consume(client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* The value of header name in head, or NULL. */
static const char *header(const response *r, const char *name)
{
    static char value[256];
    size_t n = strlen(name);

    for (const char *p = strstr(r->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n, *e = strstr(v, "\r\n");

            while (*v == ' ')
                v++;
            snprintf(value, sizeof(value), "%.*s", (int)(e - v), v);
            return value;
        }
    }
    return NULL;
}

/*
 * Reads one response; no_body for HEAD and 304. Returns 0, or -1 if the
 * stream ended (or failed) before the response was complete.
 */
static int read_response(client *c, response *r, int no_body)
{
    char *end;
    size_t hlen;
    const char *cl;

    memset(r, 0, sizeof(*r));
    r->length = -1;
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
        if (fill(c) <= 0)
            return -1;
    hlen = (size_t)(end - c->buf) + 4;
    ck_assert_uint_lt(hlen, sizeof(r->head));
    memcpy(r->head, c->buf, hlen);
    consume(c, hlen);
    ck_assert_int_eq(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    cl = header(r, "Content-Length");
    if (cl != NULL)
        r->length = atoll(cl);
    if (no_body || r->length <= 0)
        return 0;
    while (r->got < (size_t)r->length) {
        size_t take;

        if (c->len == 0 && fill(c) <= 0)
            return -1;
        take = c->len < (size_t)r->length - r->got ? c->len : (size_t)r->length - r->got;
        if (r->got < sizeof(r->body))
            memcpy(r->body + r->got, c->buf,
                   take < sizeof(r->body) - r->got ? take : sizeof(r->body) - r->got);
        r->got += take;
        consume(c, take);
    }
    return 0;
}

/* Expects the end of the stream, with nothing more: returns 0, or -errno. */
static int read_eof(client *c)
{
    ssize_t n;

    if (c->len != 0)
        return 1;
    n = fill(c);
    return n == 0 ? 0 : n < 0 ? (int)n : 1;
}

static int get(client *c, const char *path, response *r)
{
    char req[512];

    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    say(c, req);
    return read_response(c, r, 0);
}

/* One request on a fresh connection; returns the status. */
static int status_of(int port, const char *request)
{
    client *c = client_new(port);
    response r;
    int status;

    say(c, request);
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    status = r.status;
    client_free(c);
    return status;
}

/* --- protocol module --- */

START_TEST(http_path_decodes_and_refuses)
{
    char out[64];

    ck_assert_int_eq(http_path("/", 1, out, sizeof(out)), 1);
    ck_assert_str_eq(out, ".");
    ck_assert_int_gt(http_path("/a//b/./c%20d?x=/../", 20, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "a/b/c d");
    ck_assert_int_gt(http_path("/dir/", 5, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "dir/");
    /* "." names the directory it is in: after a file's name, a directory. */
    ck_assert_int_gt(http_path("/f.txt/.", 8, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "f.txt/");
    ck_assert_int_gt(http_path("/d/./f", 6, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "d/f");
    ck_assert_int_gt(http_path("http://h:80/x.txt", 17, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "x.txt");
    ck_assert_int_eq(http_path("/../x", 5, out, sizeof(out)), -400);
    ck_assert_int_eq(http_path("/a/%2e%2E/x", 11, out, sizeof(out)), -400);
    ck_assert_int_eq(http_path("/a%2fb", 6, out, sizeof(out)), -400);
    ck_assert_int_eq(http_path("/a%00b", 6, out, sizeof(out)), -400);
    ck_assert_int_eq(http_path("/a%4", 4, out, sizeof(out)), -400);
    ck_assert_int_eq(http_path("etc/passwd", 10, out, sizeof(out)), -400);
    ck_assert_int_eq(http_path("*", 1, out, sizeof(out)), -400);
    /* The path must leave room for "/index.html" and its NUL. */
    ck_assert_int_eq(http_path("/0123456789012345678901234567890123456789012345678901", 53,
                               out, sizeof(out)), 52);
    ck_assert_int_eq(http_path("/01234567890123456789012345678901234567890123456789012", 54,
                               out, sizeof(out)), -414);
}
END_TEST

/*
 * What one message of a feed left: the bytes it consumed and every field
 * of the request, the decoded path included.
 */
typedef struct feed_rec {
    size_t consumed;
    http_req req;
    char path[128];
} feed_rec;

/*
 * Feeds in[0 .. len) as http_conn does (a message, then http_ctx_reset and
 * the next on the bytes left), with http_feed, or with the parser alone
 * (parser_only); records each message, up to max. Returns how many.
 */
static int feed_msgs(const char *text, size_t len, bool parser_only, feed_rec *recs, int max)
{
    static char in[HTTP_IN_CAP], out[HTTP_OUT_CAP];
    http_ctx c;
    size_t pos = 0;
    int k = 0;

    ck_assert_uint_le(len, sizeof(in));
    memcpy(in, text, len);
    /* Only the decoded path is compared, as far as path_len goes: the
       rest of out needs no clearing (8 KiB, twice per head of thousands). */
    memset(out, 0, sizeof(((feed_rec *)0)->path));
    memset(&c, 0, sizeof(c));
    http_parser_init(&c.parser, HTTP_REQUEST);
    c.req.in_msg = 0;
    http_ctx_reset(&c);
    c.in = in;
    c.out = out;
    while (k < max) {
        size_t n = parser_only ? http_feed_parser(&c, pos, len) : http_feed(&c, pos, len);
        feed_rec *r = &recs[k++];

        memset(r, 0, sizeof(*r));
        r->consumed = n;
        /* Field by field: the struct's padding is not compared. */
        r->req.mstart = c.req.mstart;
        r->req.url_off = c.req.url_off;
        r->req.url_len = c.req.url_len;
        r->req.field_off = c.req.field_off;
        r->req.field_len = c.req.field_len;
        r->req.ims_off = c.req.ims_off;
        r->req.ims_len = c.req.ims_len;
        r->req.body = c.req.body;
        r->req.status = c.req.status;
        r->req.in_msg = c.req.in_msg;
        r->req.in_head = c.req.in_head;
        r->req.fields = c.req.fields;
        r->req.ims_field = c.req.ims_field;
        r->req.hosts = c.req.hosts;
        r->req.complete = c.req.complete;
        r->req.keep = c.req.keep;
        r->req.head = c.req.head;
        r->req.minor = c.req.minor;
        r->req.method = c.req.method;
        r->req.path_len = c.req.path_len;
        r->req.ims = c.req.ims;
        if (c.req.path_len > 0 && !c.req.status)
            memcpy(r->path, out, (size_t)c.req.path_len < sizeof(r->path)
                                     ? (size_t)c.req.path_len : sizeof(r->path) - 1);
        pos += n;
        if (c.req.status || !c.req.complete || !c.req.keep || pos >= len)
            break;
        http_ctx_reset(&c);
    }
    return k;
}

/* http_feed (fast path first) and the parser alone agree on text. */
static void feed_agree(const char *text, size_t len)
{
    feed_rec a[8], b[8];
    int na = feed_msgs(text, len, false, a, 8), nb = feed_msgs(text, len, true, b, 8);

    ck_assert_msg(na == nb, "messages %d != %d: %.*s", na, nb, (int)len, text);
    for (int i = 0; i < na; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof(a[i])) == 0,
                      "message %d differs (consumed %zu/%zu, status %d/%d, keep %d/%d, "
                      "complete %d/%d, path_len %d/%d): %.*s",
                      i, a[i].consumed, b[i].consumed, a[i].req.status, b[i].req.status,
                      a[i].req.keep, b[i].req.keep, a[i].req.complete, b[i].req.complete,
                      a[i].req.path_len, b[i].req.path_len, (int)len, text);
}

/* Whether http_feed_fast reads text's first message (and consumes it all). */
static size_t feed_fast_takes(const char *text)
{
    static char in[HTTP_IN_CAP], out[HTTP_OUT_CAP];
    http_ctx c;

    memset(&c, 0, sizeof(c));
    http_parser_init(&c.parser, HTTP_REQUEST);
    c.req.in_msg = 0;
    http_ctx_reset(&c);
    memcpy(in, text, strlen(text));
    c.in = in;
    c.out = out;
    return http_feed_fast(&c, 0, strlen(text));
}

START_TEST(http_feed_fast_path_agrees_with_parser)
{
    static const char *const taken[] = {
        /* wrk's request, and other plain heads. */
        "GET /13b.txt HTTP/1.1\r\nHost: 127.0.0.1:18480\r\n\r\n",
        "HEAD /a/b.html?x=1&y=%20z HTTP/1.1\r\nHost: h\r\nUser-Agent: x y/1.0\r\n"
        "Accept: */*\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        "GET /x HTTP/1.1\r\nIf-Modified-Since: garbage\r\nhOsT:\ta\r\nX:  y\r\n\r\n",
        "GET /d/./e//f/ HTTP/1.0\r\nHost: a\r\n\r\n",
    };
    static const char *const others[] = {
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /y HTTP/1.0\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /x HTTP/1.1\r\n\r\n",
        "GET /../x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a%2fb HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a \r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nX:\r\nY: b\r\n\r\n",
        "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x HTTP/1.1\nHost: a\n\n",
        "GET /x HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET /x HTTP/1.2\r\nHost: a\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nX: \x80\r\n\r\n",
        "GET  /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a\r\n",
        "GET /a HTTP/1.1\r\nHost: a\r\n\r",
        "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        "HEAD /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"
        "GET /c HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    /*
     * Every byte that is a class of its own to the fast path or the
     * parser: each control character that matters and the ends of the
     * others, every ASCII punctuation mark, the ends of the digits and
     * letters, DEL and bytes above ASCII (all 256 cost the sanitized
     * runner seconds on a loaded machine, and show nothing more).
     */
    static const char flips[] = "\x00\x01\t\n\x0b\r\x1f !\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~"
                                "\x7f\x80\xff";
    static const char *const acted[] = {
        "Transfer-Encoding", "Content-Length", "Connection", "Proxy-Connection", "Upgrade",
        "Host", "If-Modified-Since",
    };
    static const char after[] = "-xs0!_";
    static const char *const values[] = { "chunked", "gzip", "5", "close", "keep-alive", "a" };
    char buf[256];

    /* The plain heads are read by the fast path, whole. */
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        ck_assert_msg(feed_fast_takes(taken[i]) == strlen(taken[i]), "not taken: %s", taken[i]);
        feed_agree(taken[i], strlen(taken[i]));
    }
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        feed_agree(others[i], strlen(others[i]));
    /* Every head one byte away from a plain one, and every cut of it. */
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        const char *base = taken[i];
        size_t blen = strlen(base);

        for (size_t at = 0; at < blen; at++) {
            for (size_t f = 0; f < sizeof(flips); f++) {
                memcpy(buf, base, blen);
                buf[at] = flips[f];
                feed_agree(buf, blen);
            }
            feed_agree(base, at);
        }
    }
    /* Two plain heads in a row, then anything: pipelining goes on alike. */
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        size_t n = (size_t)snprintf(buf, sizeof(buf), "%s%s", taken[0], others[i]);

        feed_agree(buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
    }
    /* A field whose name begins with the name of a field the parser acts
       on, and goes on (the parser matches names as they arrive: it took
       any name that begins with Transfer-Encoding for one). */
    for (size_t i = 0; i < sizeof(acted) / sizeof(acted[0]); i++)
        for (size_t f = 0; f < sizeof(after) - 1; f++)
            for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
                size_t n = (size_t)snprintf(buf, sizeof(buf),
                                            "GET /a HTTP/1.1\r\nHost: a\r\n%s%c: %s\r\n\r\n"
                                            "GET /b HTTP/1.1\r\nHost: b\r\n\r\n",
                                            acted[i], after[f], values[v]);

                feed_agree(buf, n);
            }
}
END_TEST

/*
 * A request that asks for an Upgrade is answered as any other (RFC 9110
 * 7.8: the server may ignore it) and leaves nothing behind: the next
 * request on the connection, whole or in pieces, is read as HTTP/1.1.
 * The parser's upgrade flag of the request before must not turn a head
 * still in pieces into a 400 (it did: the same request was 200 whole and
 * 400 in pieces).
 */
START_TEST(http_feed_after_upgrade)
{
    static const char up[] = "GET /a HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n\r\n";
    static const char next[] = "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    static char in[HTTP_IN_CAP], out[HTTP_OUT_CAP];

    for (size_t cut = 1; cut <= sizeof(next) - 1; cut++) {
        http_ctx c;
        size_t pos, n;

        memset(&c, 0, sizeof(c));
        http_parser_init(&c.parser, HTTP_REQUEST);
        c.req.in_msg = 0;
        http_ctx_reset(&c);
        c.in = in;
        c.out = out;
        memcpy(in, up, sizeof(up) - 1);
        memcpy(in + sizeof(up) - 1, next, cut);
        pos = http_feed(&c, 0, sizeof(up) - 1 + cut);
        ck_assert_uint_eq(pos, sizeof(up) - 1);
        ck_assert_int_eq(c.req.status, 0);
        ck_assert(c.req.complete && c.req.keep);
        http_ctx_reset(&c);
        n = http_feed(&c, pos, sizeof(up) - 1 + cut);
        ck_assert_msg(c.req.status == 0, "status %d with %zu bytes of the next head",
                      c.req.status, cut);
        if (cut < sizeof(next) - 1) {
            /* The rest arrives: the head is read in two pieces. */
            ck_assert(!c.req.complete);
            memcpy(in + sizeof(up) - 1 + cut, next + cut, sizeof(next) - 1 - cut);
            n += http_feed(&c, pos + n, sizeof(up) + sizeof(next) - 2);
        }
        ck_assert_int_eq(c.req.status, 0);
        ck_assert(c.req.complete);
        ck_assert_uint_eq(pos + n, sizeof(up) + sizeof(next) - 2);
        ck_assert_int_eq(c.req.path_len, 1);
        ck_assert_int_eq(out[0], 'b');
    }
}
END_TEST

START_TEST(http_dates_round_trip)
{
    char s[40];

    http_date_format(784111777, s);
    ck_assert_str_eq(s, "Sun, 06 Nov 1994 08:49:37 GMT");
    ck_assert_int_eq(http_date_parse(s, strlen(s)), 784111777);
    ck_assert_int_eq(http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", 30), 784111777);
    ck_assert_int_eq(http_date_parse("Sun Nov  6 08:49:37 1994", 24), 784111777);
    ck_assert_int_eq(http_date_parse("yesterday", 9), -1);
    ck_assert_str_eq(http_mime("a/b.HTML", 8), "text/html");
    ck_assert_str_eq(http_mime("a.b/c", 5), "application/octet-stream");
}
END_TEST

/* The statuses no test can provoke as root or without exhausting memory. */
START_TEST(http_open_errors_map_to_statuses)
{
    ck_assert_int_eq(http_open_status(ENOENT), 404);
    ck_assert_int_eq(http_open_status(EXDEV), 404);
    ck_assert_int_eq(http_open_status(ELOOP), 404);
    ck_assert_int_eq(http_open_status(EACCES), 403);
    ck_assert_int_eq(http_open_status(EPERM), 403);
    ck_assert_int_eq(http_open_status(EMFILE), 503);
    ck_assert_int_eq(http_open_status(ENOMEM), 503);
    ck_assert(http_status_closes(503));
    ck_assert(!http_status_closes(404));
}
END_TEST

/* A stat of a regular file of size bytes, as the cache reads it. */
static struct stat cache_st(long long size, long ctime_ns)
{
    struct stat st;

    memset(&st, 0, sizeof(st));
    st.st_mode = S_IFREG | 0644;
    st.st_size = (off_t)size;
    st.st_ino = 42;
    st.st_mtime = 1000;
    st.st_ctim.tv_nsec = ctime_ns;
    return st;
}

/*
 * The cache's rules, on the pure functions: an entry answers while
 * now - stamp < valid_ms and not at valid_ms; a file that changed between
 * the claim and the fill is never kept; a fill for a claim that was taken
 * over is ignored; a new key takes the least recently used entry; what it
 * does not keep (long keys, empty or large files) it refuses.
 */
START_TEST(http_cache_rules)
{
    http_cache c;
    struct stat st = cache_st(5, 1), moved = cache_st(5, 2);
    uint32_t gen, gen2;
    int i, j;
    char longkey[HTTP_CACHE_KEY + 1];

    ck_assert_int_eq(http_cache_init(&c, 0, 100), 0);
    ck_assert_int_eq(http_cache_claim(&c, "a", 1, 0, &st, "text/plain", &gen), -1);
    http_cache_fini(&c);

    ck_assert_int_eq(http_cache_init(&c, 2, 100), 0);
    /* Valid from the stamp, for valid_ms. */
    i = http_cache_claim(&c, "a", 1, 1000, &st, "text/plain", &gen);
    ck_assert_int_ge(i, 0);
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1000)); /* not filled yet */
    http_cache_fill(&c, i, gen, "aaaaa", 5, &st);
    ck_assert_ptr_nonnull(http_cache_get(&c, "a", 1, 1049));
    /* Refreshed by one request from half its validity (http_cache_refresh),
       by another a quarter later when none came, and otherwise answers. */
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1050));
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1075));
    ck_assert_ptr_nonnull(http_cache_get(&c, "a", 1, 1099));
    ck_assert_mem_eq(http_cache_body(&c, http_cache_get(&c, "a", 1, 1000)), "aaaaa", 5);
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1100));
    ck_assert_ptr_null(http_cache_get(&c, "b", 1, 1000));
    /* Changed between the open and the read: not kept. */
    i = http_cache_claim(&c, "b", 1, 2000, &st, "text/plain", &gen);
    ck_assert_int_ge(i, 0);
    http_cache_fill(&c, i, gen, "bbbbb", 5, &moved);
    ck_assert_ptr_null(http_cache_get(&c, "b", 1, 2000));
    /* A short read is not the file. */
    i = http_cache_claim(&c, "b", 1, 2000, &st, "text/plain", &gen);
    http_cache_fill(&c, i, gen, "bbb", 3, &st);
    ck_assert_ptr_null(http_cache_get(&c, "b", 1, 2000));
    /* A claim taken over (the first one's fill is late by a quarter of
       valid_ms): the first claim's late fill is ignored. */
    i = http_cache_claim(&c, "b", 1, 2000, &st, "text/plain", &gen);
    j = http_cache_claim(&c, "b", 1, 2025, &moved, "text/plain", &gen2);
    ck_assert_int_eq(i, j);
    http_cache_fill(&c, i, gen, "old!!", 5, &st);
    ck_assert_ptr_null(http_cache_get(&c, "b", 1, 2025));
    http_cache_fill(&c, j, gen2, "new!!", 5, &moved);
    ck_assert_mem_eq(http_cache_body(&c, http_cache_get(&c, "b", 1, 2025)), "new!!", 5);
    /* Two entries: "a" used last, so "c" takes "b"'s. */
    i = http_cache_claim(&c, "a", 1, 2000, &st, "text/plain", &gen);
    http_cache_fill(&c, i, gen, "aaaaa", 5, &st);
    ck_assert_ptr_nonnull(http_cache_get(&c, "a", 1, 2000));
    i = http_cache_claim(&c, "c", 1, 2000, &st, "text/plain", &gen);
    http_cache_fill(&c, i, gen, "ccccc", 5, &st);
    ck_assert_ptr_nonnull(http_cache_get(&c, "a", 1, 2000));
    ck_assert_ptr_nonnull(http_cache_get(&c, "c", 1, 2000));
    ck_assert_ptr_null(http_cache_get(&c, "b", 1, 2000));
    /* Not kept: a key too long, an empty file, a file too large. */
    memset(longkey, 'k', sizeof(longkey));
    ck_assert_int_eq(http_cache_claim(&c, longkey, HTTP_CACHE_KEY, 0, &st, "x", &gen), -1);
    st = cache_st(0, 1);
    ck_assert_int_eq(http_cache_claim(&c, "d", 1, 0, &st, "x", &gen), -1);
    st = cache_st(HTTP_CACHE_BODY + 1, 1);
    ck_assert_int_eq(http_cache_claim(&c, "d", 1, 0, &st, "x", &gen), -1);
    http_cache_fini(&c);
}
END_TEST

/*
 * Refreshing before the entry expires, so that a file asked for without
 * pause is opened once per half of valid_ms rather than by every request
 * between its expiry and its refill: from half its validity, one request
 * (then one per quarter of valid_ms while none refills it) is not served
 * from the entry and refills it; the others are, until the entry's own
 * stamp runs out. A refill replaces the entry, with its own stamp; one of
 * a file that changed while it was read is dropped and leaves the entry
 * as it was. While a claim is on its way (for a quarter of valid_ms), a
 * second claim of the key is refused, so that it does not cancel the fill
 * of the first.
 */
START_TEST(http_cache_refresh)
{
    http_cache c;
    struct stat st = cache_st(5, 1), moved = cache_st(5, 2);
    uint32_t gen, gen2;
    int i;

    ck_assert_int_eq(http_cache_init(&c, 2, 100), 0);
    i = http_cache_claim(&c, "a", 1, 1000, &st, "text/plain", &gen);
    http_cache_fill(&c, i, gen, "aaaaa", 5, &st);
    ck_assert_ptr_nonnull(http_cache_get(&c, "a", 1, 1049));
    /* Half its validity: this request refreshes it, the next ones are served. */
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1050));
    ck_assert_ptr_nonnull(http_cache_get(&c, "a", 1, 1051));
    ck_assert_int_eq(http_cache_claim(&c, "a", 1, 1050, &st, "text/plain", &gen), i);
    ck_assert_mem_eq(http_cache_body(&c, http_cache_get(&c, "a", 1, 1052)), "aaaaa", 5);
    /* The refill is valid from its own stamp (1050), and refreshed from 1100. */
    http_cache_fill(&c, i, gen, "AAAAA", 5, &st);
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1100));
    ck_assert_mem_eq(http_cache_body(&c, http_cache_get(&c, "a", 1, 1101)), "AAAAA", 5);
    /* A refresh whose file changed while it was read changes nothing. */
    ck_assert_int_eq(http_cache_claim(&c, "a", 1, 1100, &st, "text/plain", &gen), i);
    http_cache_fill(&c, i, gen, "bbbbb", 5, &moved);
    ck_assert_mem_eq(http_cache_body(&c, http_cache_get(&c, "a", 1, 1102)), "AAAAA", 5);
    /* A refresh that never claims (the open failed): another one a quarter later. */
    ck_assert_ptr_nonnull(http_cache_get(&c, "a", 1, 1124));
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1125));
    /* No request is served past the entry's stamp + valid_ms. */
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1150));
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1151));
    /* Expired, asked by many at once: the first claim fills it, the others
       are refused rather than cancel it. */
    i = http_cache_claim(&c, "a", 1, 1200, &st, "text/plain", &gen);
    ck_assert_int_ge(i, 0);
    ck_assert_int_eq(http_cache_claim(&c, "a", 1, 1201, &st, "text/plain", &gen2), -1);
    http_cache_fill(&c, i, gen, "ccccc", 5, &st);
    ck_assert_mem_eq(http_cache_body(&c, http_cache_get(&c, "a", 1, 1202)), "ccccc", 5);
    http_cache_fini(&c);
}
END_TEST

/*
 * A pinned entry (a send from it in flight) is never overwritten: a refill
 * goes to another entry, which answers from then on, while the pinned
 * one's bytes stay as they were until it is unpinned; a new key does not
 * take a pinned entry, even the least recently used, nor does anything
 * when every entry is pinned.
 */
START_TEST(http_cache_pins)
{
    http_cache c;
    struct stat st = cache_st(5, 1), st2 = cache_st(5, 3);
    const http_centry *e;
    const char *old;
    uint32_t gen;
    int i, j;

    ck_assert_int_eq(http_cache_init(&c, 2, 100), 0);
    i = http_cache_claim(&c, "a", 1, 1000, &st, "text/plain", &gen);
    http_cache_fill(&c, i, gen, "aaaaa", 5, &st);
    http_cache_pin(&c, i);
    old = http_cache_body(&c, &c.e[i]);
    /* Refilled while pinned: the new bytes answer, from another entry. */
    ck_assert_int_eq(http_cache_claim(&c, "a", 1, 1001, &st2, "text/plain", &gen), i);
    http_cache_fill(&c, i, gen, "AAAAA", 5, &st2);
    ck_assert_mem_eq(old, "aaaaa", 5);
    e = http_cache_get(&c, "a", 1, 1002);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_ne((int)(e - c.e), i);
    ck_assert_mem_eq(http_cache_body(&c, e), "AAAAA", 5);
    /* The pinned entry is the least recently used: a new key passes it by. */
    j = (int)(e - c.e);
    http_cache_pin(&c, j);
    ck_assert_int_eq(http_cache_claim(&c, "b", 1, 1002, &st, "text/plain", &gen), -1);
    ck_assert_mem_eq(old, "aaaaa", 5);
    http_cache_unpin(&c, j);
    ck_assert_int_eq(http_cache_claim(&c, "b", 1, 1002, &st, "text/plain", &gen), j);
    http_cache_fill(&c, j, gen, "bbbbb", 5, &st);
    ck_assert_mem_eq(old, "aaaaa", 5);
    ck_assert_ptr_null(http_cache_get(&c, "a", 1, 1003));
    /* Unpinned, the old entry is the one a new key takes. */
    http_cache_unpin(&c, i);
    ck_assert_int_eq(http_cache_claim(&c, "c", 1, 1003, &st, "text/plain", &gen), i);
    http_cache_fini(&c);
}
END_TEST

/*
 * Sleeps until time(NULL) has just moved to a new second, so that the next
 * several hundred milliseconds of a test see one value of it: the second a
 * response's Date says, and whether a kept head is still valid. time() reads
 * the coarse clock, which moves a tick or more after the precise one, so
 * the wait is for time() itself to change.
 */
static void start_of_second(void)
{
    const struct timespec ms = { 0, 1000000L };
    time_t was = time(NULL);

    while (time(NULL) == was)
        nanosleep(&ms, NULL);
}

/*
 * A cached 200 is sent from its entry, head and body, the entry pinned
 * until the send is done: the head is the one http_head composes, kept
 * for the same second and kind of connection; a request of another kind
 * rewrites it, or, while the entry is pinned, gets its response copied
 * into the output. What a short send leaves is copied into the output.
 */
START_TEST(http_cache_serves_from_entry)
{
    http_srv srv;
    http_req r = { .keep = 1, .minor = 1, .ims = -1 };
    struct stat st = cache_st(5, 1);
    char out[HTTP_OUT_CAP], want[HTTP_OUT_CAP];
    uint32_t gen;
    int i, n, m, pin, pin2;

    http_srv_init(&srv, -1, 10000, 5000, 60000, 1000, 10);
    ck_assert_int_eq(http_cache_init(&srv.cache, 4, 3600000), 0);
    i = http_cache_claim(&srv.cache, "a", 1, 1000, &st, "text/plain", &gen);
    http_cache_fill(&srv.cache, i, gen, "hello", 5, &st);
    /* The heads compared below say one second: a tick between them fails the test. */
    start_of_second();
    n = http_cache_serve(&srv, "a", 1, out, sizeof(out), &r, true, 1001, &pin);
    ck_assert_int_eq(pin, i);
    m = http_head(&srv, want, sizeof(want), 200, "text/plain", 5, st.st_mtime, true, 1);
    memcpy(want + m, "hello", 5);
    ck_assert_int_eq(n, m + 5);
    ck_assert_mem_eq(http_cache_resp(&srv, pin), want, (size_t)n);
    /* Pinned, a request of the same kind is sent from it too. */
    ck_assert_int_eq(http_cache_serve(&srv, "a", 1, out, sizeof(out), &r, true, 1001, &pin2), n);
    ck_assert_int_eq(pin2, i);
    ck_assert_uint_eq(srv.cache.e[i].pins, 2);
    /* Pinned, a request of another kind gets a copy, and the head stays. */
    r.minor = 0;
    m = http_cache_serve(&srv, "a", 1, out, sizeof(out), &r, false, 1001, &pin2);
    ck_assert_int_eq(pin2, -1);
    ck_assert_ptr_nonnull(memmem(out, (size_t)m, "Connection: close\r\n\r\nhello", 26));
    ck_assert_mem_eq(http_cache_resp(&srv, pin), want, (size_t)n);
    /* A short send: the rest is copied into the output; all sent: nothing. */
    memset(out, 0, sizeof(out));
    ck_assert_int_eq(http_cache_sent(&srv, pin, out, n, 3), n - 3);
    ck_assert_mem_eq(out, want + 3, (size_t)n - 3);
    ck_assert_int_eq(http_cache_sent(&srv, pin, out, n, n), 0);
    ck_assert_uint_eq(srv.cache.e[i].pins, 0);
    /* Unpinned, another kind rewrites the kept head. */
    m = http_cache_serve(&srv, "a", 1, out, sizeof(out), &r, false, 1001, &pin);
    ck_assert_int_eq(pin, i);
    ck_assert_ptr_nonnull(memmem(http_cache_resp(&srv, pin), (size_t)m,
                                 "Connection: close\r\n\r\nhello", 26));
    ck_assert_int_eq(http_cache_sent(&srv, pin, out, m, -EAGAIN), m);
    ck_assert_mem_eq(out + m - 5, "hello", 5);
    http_srv_fini(&srv);
}
END_TEST

/* --- the server --- */

START_TEST(httpd_get_head_index_types)
{
    server s;
    client *c;
    response r;

    server_start(&s);
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.length, 13);
    ck_assert_mem_eq(r.body, HELLO, 13);
    ck_assert_str_eq(header(&r, "Content-Type"), "text/plain");
    ck_assert_ptr_nonnull(header(&r, "Date"));
    ck_assert_ptr_nonnull(header(&r, "Last-Modified"));
    ck_assert_ptr_null(header(&r, "Connection"));
    /* HEAD: the same Content-Length, no body: the next response follows at once. */
    say(c, "HEAD /4k.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 1), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.length, 4096);
    ck_assert_int_eq(get(c, "/4k.bin", &r), 0);
    ck_assert_int_eq(r.length, 4096);
    ck_assert_str_eq(header(&r, "Content-Type"), "application/octet-stream");
    for (size_t i = 0; i < 4096; i++)
        ck_assert_int_eq(r.body[i], pattern_at(i));
    ck_assert_int_eq(get(c, "/", &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header(&r, "Content-Type"), "text/html");
    ck_assert_mem_eq(r.body, "<p>root</p>\n", 12);
    ck_assert_int_eq(get(c, "/dir", &r), 0);
    ck_assert_mem_eq(r.body, "<p>dir</p>\n", 11);
    ck_assert_int_eq(get(c, "/dir/", &r), 0);
    ck_assert_mem_eq(r.body, "<p>dir</p>\n", 11);
    ck_assert_int_eq(get(c, "/empty/", &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(get(c, "/hello.txt/", &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(get(c, "/big.bin", &r), 0);
    ck_assert_int_eq(r.length, BIG_SIZE);
    ck_assert_uint_eq(r.got, BIG_SIZE);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

START_TEST(httpd_if_modified_since)
{
    server s;
    client *c;
    response r;
    char req[256], lm[64];

    server_start(&s);
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    snprintf(lm, sizeof(lm), "%s", header(&r, "Last-Modified"));
    snprintf(req, sizeof(req),
             "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: %s\r\n\r\n", lm);
    say(c, req);
    ck_assert_int_eq(read_response(c, &r, 1), 0);
    ck_assert_int_eq(r.status, 304);
    ck_assert_ptr_null(header(&r, "Content-Length"));
    ck_assert_str_eq(header(&r, "Last-Modified"), lm);
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n"
           "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    /* A date that does not parse is ignored. */
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: soon\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

START_TEST(httpd_error_statuses)
{
    server s;
    client *c;
    response r;
    static char req[20000];

    server_start(&s);
    /* 404 and 405 keep the connection. */
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/missing", &r), 0);
    ck_assert_int_eq(r.status, 404);
    say(c, "POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(header(&r, "Allow"), "GET, HEAD");
    /* A small body on a GET is read and discarded. */
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_int_eq(r.status, 200);
    client_free(c);

    /* The others end the connection: the response, then the end of stream. */
    c = client_new(s.port);
    say(c, "GARBAGE\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(header(&r, "Connection"), "close");
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);

    ck_assert_int_eq(status_of(s.port, "GET /x HTTP/2.0\r\n\r\n"), 400);
    ck_assert_int_eq(status_of(s.port,
                               "GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"),
                     413);
    memset(req, 'a', sizeof(req));
    memcpy(req, "GET /", 5);
    strcpy(req + 9000, " HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(status_of(s.port, req), 414);
    memset(req, 'a', sizeof(req));
    memcpy(req, "GET / HTTP/1.1\r\nX-Big: ", 23);
    strcpy(req + 9000, "\r\n\r\n");
    ck_assert_int_eq(status_of(s.port, req), 431);

    /* A chunked body past the limit: 413 while it is still arriving. */
    c = client_new(s.port);
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    memset(req, 'b', 16384);
    for (int i = 0; i < 6; i++) {
        say(c, "4000\r\n");
        pd_test_write(c->fd, req, 16384);
        say(c, "\r\n");
    }
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 413);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

START_TEST(httpd_keep_alive_rules)
{
    server s;
    client *c;
    response r;

    server_start(&s);
    c = client_new(s.port);
    say(c, "GET /hello.txt HTTP/1.0\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_str_eq(header(&r, "Connection"), "close");
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);

    c = client_new(s.port);
    say(c, "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_str_eq(header(&r, "Connection"), "keep-alive");
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header(&r, "Connection"), "close");
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * An error response to a complete HTTP/1.0 request keeps the connection
 * by the same rule as a 200 and says so: with Connection: keep-alive, a
 * 404 and a 405 (its body read and discarded) say Connection: keep-alive,
 * and the next request is served on the same connection; without it, a
 * 404 says Connection: close and the connection ends.
 */
START_TEST(httpd_http10_errors_keep_alive)
{
    static const char *const reqs[] = {
        "GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab",
        "HEAD /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    };
    server s;
    client *c;
    response r;
    const char *v;

    server_start(&s);
    c = client_new(s.port);
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        say(c, reqs[i]);
        ck_assert_int_eq(read_response(c, &r, reqs[i][0] == 'H'), 0);
        ck_assert_int_eq(r.status, i == 1 ? 405 : 404);
        v = header(&r, "Connection");
        ck_assert_msg(v != NULL && strcmp(v, "keep-alive") == 0, "request %zu: %s", i,
                      v ? v : "no Connection field");
    }
    say(c, "GET /hello.txt HTTP/1.0\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);

    c = client_new(s.port);
    say(c, "GET /nope HTTP/1.0\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_ptr_nonnull(header(&r, "Connection"));
    ck_assert_str_eq(header(&r, "Connection"), "close");
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * RFC 9110 10.1.1: a client that sends Expect: 100-continue waits for an
 * interim 100 before it sends its body. A request httpd refuses anyway (a
 * method other than GET and HEAD) is answered at its head, and the
 * connection closes, since its body is never read; a client that did not
 * ask keeps its connection, its body read and discarded. The head's
 * deadline is an hour, so a server that waited for the body would answer
 * nothing before the client's guard.
 */
START_TEST(httpd_expect_continue_refused_at_the_head)
{
    server s = { 0 };
    client *c;
    response r;
    const char *v;

    server_start_opts(&s, 3600000, 5000, 5000, 10000);
    c = client_new(s.port);
    say(c, "PUT /new.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n"
           "Expect: 100-continue\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 405);
    v = header(&r, "Connection");
    ck_assert_msg(v != NULL && strcmp(v, "close") == 0, "%s", v ? v : "no Connection field");
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);

    c = client_new(s.port);
    say(c, "POST /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
           "expect: 100-Continue\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);

    c = client_new(s.port);
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n"
           "POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"
           "GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, HELLO, 13);
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

START_TEST(httpd_pipelining_in_order)
{
    server s;
    client *c;
    response r;

    server_start(&s);
    c = client_new(s.port);
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
           "HEAD /4k.bin HTTP/1.1\r\nHost: t\r\n\r\n"
           "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
           "GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, HELLO, 13);
    ck_assert_int_eq(read_response(c, &r, 1), 0);
    ck_assert_int_eq(r.length, 4096);
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_mem_eq(r.body, "<p>root</p>\n", 12);
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * Responses sent from the cache into a socket that fills: 200 pipelined
 * GETs of the cached 4 KiB file to a client with a 4 KiB receive buffer
 * that reads only after sending them all and after its socket stopped
 * filling. Sends from the cache entry come up short and their rest goes
 * from the output; every response arrives whole, byte for byte, in order,
 * and the last one's Connection: close ends the connection. The client
 * reads with a large receive buffer: read through a buffer smaller than
 * the loopback's segment, the window the client advertises stays under a
 * segment and the server's kernel waits on its zero-window probes, whose
 * interval doubles each time (about 20 s over the 200 responses).
 */
START_TEST(httpd_cached_sends_into_full_socket)
{
    enum { N = 200 };
    static const char req[] = "GET /4k.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char last[] = "GET /4k.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    static char burst[(N - 1) * (sizeof(req) - 1) + sizeof(last)];
    char want[4096];
    server s;
    client *c;
    response r;
    int rcv = 4096;
    size_t len = 0;

    for (size_t i = 0; i < sizeof(want); i++)
        want[i] = pattern_at(i);
    server_start(&s);
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/4k.bin", &r), 0); /* cached from now on */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    for (int i = 0; i < N - 1; i++, len += sizeof(req) - 1)
        memcpy(burst + len, req, sizeof(req) - 1);
    memcpy(burst + len, last, sizeof(last));
    say(c, burst);
    for (int i = 0, queued = -1, still = 0; i < 500 && still < 5; i++) {
        int now = 0;

        usleep(10000);
        ck_assert_int_eq(ioctl(c->fd, FIONREAD, &now), 0);
        still = now > 0 && now == queued ? still + 1 : 0;
        queued = now;
    }
    rcv = 1 << 20;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(read_response(c, &r, 0), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(r.length, 4096);
        ck_assert_mem_eq(r.body, want, sizeof(want));
    }
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * A head that arrives in pieces of a few bytes, the second of two
 * pipelined requests split across two sends: answered, in order.
 */
START_TEST(httpd_heads_in_pieces)
{
    static const char req[] = "GET /4k.bin HTTP/1.1\r\nHost: t\r\nX-Long: abcdefghijklmnop\r\n\r\n"
                              "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    server s;
    client *c;
    response r;
    int one = 1;

    server_start(&s);
    c = client_new(s.port);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (size_t at = 0; at < sizeof(req) - 1; at += 7) {
        size_t n = sizeof(req) - 1 - at < 7 ? sizeof(req) - 1 - at : 7;

        pd_test_write(c->fd, req + at, n);
        usleep(1000); /* separate segments, most of the time */
    }
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.length, 4096);
    for (size_t i = 0; i < 4096; i++)
        ck_assert_int_eq(r.body[i], pattern_at(i));
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, HELLO, 13);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/* --- framing (RFC 9112) --- */

/* One request on a fresh connection: returns its status; the connection then ends. */
static int status_then_eof(int port, const char *request)
{
    client *c = client_new(port);
    response r;
    int status;

    say(c, request);
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    status = r.status;
    ck_assert_str_eq(header(&r, "Connection"), "close");
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    return status;
}

/*
 * RFC 9112 5.1: no whitespace between a field name and its colon, else
 * 400. Taken as a field named "Content-Length " the header would frame
 * nothing, and the body would be read as the next request (smuggling).
 */
START_TEST(httpd_space_before_colon_400)
{
    server s;

    server_start(&s);
    ck_assert_int_eq(status_then_eof(s.port, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n"
                                              "Content-Length : 5\r\n\r\nhello"), 400);
    ck_assert_int_eq(status_then_eof(s.port, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n"
                                              "Transfer-Encoding : chunked\r\n\r\n"
                                              "0\r\n\r\n"), 400);
    ck_assert_int_eq(status_then_eof(s.port, "GET /hello.txt HTTP/1.1\r\nHost : t\r\n\r\n"),
                     400);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * RFC 9112 6.1: an HTTP/1.0 request with Transfer-Encoding has faulty
 * framing: it is answered, then the connection closes, keep-alive or not.
 */
START_TEST(httpd_http10_transfer_encoding_closes)
{
    server s;
    client *c;
    response r;

    server_start(&s);
    c = client_new(s.port);
    say(c, "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n"
           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header(&r, "Connection"), "close");
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * Sends an empty line every 100 ms until the server closes the connection;
 * returns how many were sent (200, 20 s of them, if it never closed).
 */
static int blank_lines_until_closed(client *c)
{
    int i;

    for (i = 0; i < 200; i++) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

        if (send(c->fd, "\r\n", 2, MSG_NOSIGNAL) < 0)
            break; /* closed already */
        if (poll(&pfd, 1, 100) == 1) {
            ck_assert_int_eq(read_eof(c), 0); /* no response: a quiet close */
            break;
        }
    }
    return i;
}

/*
 * Empty lines before a request are ignored (RFC 9112 2.2) and do not begin
 * one: they never renew a deadline, so a client that sends nothing else
 * is closed at the deadline it was given (HEADER_MS for a new connection,
 * IDLE_MS after a response), 300 ms here.
 */
START_TEST(httpd_blank_lines_do_not_hold)
{
    server s = { 0 };
    client *c;
    response r;

    server_start_opts(&s, 300, 300, 5000, 10000);
    c = client_new(s.port);
    ck_assert_int_lt(blank_lines_until_closed(c), 200);
    client_free(c);
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_lt(blank_lines_until_closed(c), 200);
    client_free(c);
    /* Empty lines before a request that follows are still fine. */
    c = client_new(s.port);
    say(c, "\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/* A file's URL ending in "/." names a directory, as one ending in "/" does: 404. */
START_TEST(httpd_dot_after_a_file_404)
{
    server s;
    client *c;
    response r;

    server_start(&s);
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/hello.txt/.", &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(get(c, "/hello.txt/%2e", &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(get(c, "/hello.txt/./", &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(get(c, "/dir/.", &r), 0);
    ck_assert_mem_eq(r.body, "<p>dir</p>\n", 11);
    ck_assert_int_eq(get(c, "/./hello.txt", &r), 0);
    ck_assert_int_eq(r.status, 200);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * RFC 9112 3.2: an HTTP/1.1 request without a Host field, and any request
 * with more than one, is 400. HTTP/1.0 may leave it out.
 */
START_TEST(httpd_host_exactly_one)
{
    server s;

    server_start(&s);
    ck_assert_int_eq(status_then_eof(s.port, "GET /hello.txt HTTP/1.1\r\n\r\n"), 400);
    ck_assert_int_eq(status_then_eof(s.port, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n"
                                              "Host: t\r\n\r\n"), 400);
    ck_assert_int_eq(status_then_eof(s.port, "GET /hello.txt HTTP/1.1\r\nHost: a\r\n"
                                              "X: 1\r\nhost: b\r\n\r\n"), 400);
    ck_assert_int_eq(status_then_eof(s.port, "GET /hello.txt HTTP/1.0\r\nHost: a\r\n"
                                              "Host: b\r\n\r\n"), 400);
    ck_assert_int_eq(status_then_eof(s.port, "GET http://t/hello.txt HTTP/1.1\r\n\r\n"), 400);
    ck_assert_int_eq(status_of(s.port, "GET /hello.txt HTTP/1.0\r\n\r\n"), 200);
    ck_assert_int_eq(status_of(s.port, "GET /hello.txt HTTP/1.1\r\nHOST: t\r\n"
                                       "Connection: close\r\n\r\n"), 200);
    ck_assert_int_eq(status_of(s.port, "GET /hello.txt HTTP/1.1\r\nHost:\r\n"
                                       "Connection: close\r\n\r\n"), 200);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * The largest head docs/httpd.md promises to serve: request line and
 * fields of 8 KiB together. One byte more is 431.
 */
START_TEST(httpd_head_of_8k_served)
{
    enum { HEAD_MAX = 8192 }; /* docs/httpd.md, Limits; not HTTP_IN_CAP */
    static const char start[] = "GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Pad: ";
    static char req[HEAD_MAX + 2];
    server s;
    size_t pad = HEAD_MAX - (sizeof(start) - 1) - 4;

    server_start(&s);
    memcpy(req, start, sizeof(start) - 1);
    memset(req + sizeof(start) - 1, 'p', pad);
    memcpy(req + sizeof(start) - 1 + pad, "\r\n\r\n", 5);
    ck_assert_uint_eq(strlen(req), HEAD_MAX);
    ck_assert_int_eq(status_of(s.port, req), 200);
    memset(req + sizeof(start) - 1, 'p', pad + 1);
    memcpy(req + sizeof(start) - 1 + pad + 1, "\r\n\r\n", 5);
    ck_assert_int_eq(status_then_eof(s.port, req), 431);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/* --- large files --- */

/* Reads bytes [at, len) of a body from c and checks them against the pattern. */
static void read_large_body(client *c, size_t at, size_t len)
{
    while (at < len) {
        size_t take;

        if (c->len == 0)
            ck_assert_int_gt(fill(c), 0);
        take = c->len < len - at ? c->len : len - at;
        for (size_t i = 0; i < take; i++)
            if (c->buf[i] != pattern_at(at + i))
                ck_abort_msg("byte %zu of the body is wrong", at + i);
        at += take;
        consume(c, take);
    }
}

/* Reads a head; returns its status and stores the Content-Length. */
static int read_head(client *c, long long *length)
{
    response r;

    ck_assert_int_eq(read_response(c, &r, 1), 0);
    *length = r.length;
    return r.status;
}

/* Gets the file of 3 MiB and 17 bytes twice on c, every byte checked. */
static void get_large_twice(client *c)
{
    long long len;

    for (int i = 0; i < 2; i++) {
        say(c, "GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        ck_assert_int_eq(read_head(c, &len), 200);
        ck_assert_int_eq(len, LARGE_SIZE);
        read_large_body(c, 0, LARGE_SIZE);
    }
}

/*
 * A file of 3 MiB and 17 bytes, twice on one connection (and once by
 * HEAD), by each way of sending a large body (_i: copy, splice, sendfile):
 * every byte is right, and the connection goes on after it.
 */
START_TEST(httpd_large_file_complete)
{
    server s = { .body = _i + 1 };
    client *c;
    response r;
    long long len;

    server_start_opts(&s, 10000, 5000, 5000, 10000);
    c = client_new(s.port);
    get_large_twice(c);
    say(c, "HEAD /large.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(read_head(c, &len), 200);
    ck_assert_int_eq(len, LARGE_SIZE);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_mem_eq(r.body, HELLO, 13);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * The congestion control of the server's end of the connection whose
 * client end is fd, as the kernel reports it (sock_diag's INET_DIAG_CONG),
 * into cc; "" if no such connection is found.
 */
static void server_cc(int fd, char *cc, size_t cap)
{
    struct sockaddr_in me, peer;
    socklen_t ml = sizeof(me), pl = sizeof(peer);
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req = {
        .nlh = { .nlmsg_len = sizeof(req), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
        .r = { .sdiag_family = AF_INET, .sdiag_protocol = IPPROTO_TCP,
               .idiag_ext = 1u << (INET_DIAG_CONG - 1), .idiag_states = 1u << 1 },
    };
    static char buf[32768] __attribute__((aligned(8)));
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    bool done = false;

    cc[0] = '\0';
    ck_assert_int_ge(nl, 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&me, &ml), 0);
    ck_assert_int_eq(getpeername(fd, (struct sockaddr *)&peer, &pl), 0);
    ck_assert_int_eq(send(nl, &req, sizeof(req), 0), (ssize_t)sizeof(req));
    while (!done) {
        ssize_t n = recv(nl, buf, sizeof(buf), 0);
        struct nlmsghdr *h = (struct nlmsghdr *)buf;

        ck_assert_int_gt(n, 0);
        for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            struct inet_diag_msg *m = NLMSG_DATA(h);
            struct rtattr *a = (struct rtattr *)(m + 1);
            unsigned int len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));

            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
                done = true;
                break;
            }
            /* The server's end: its source is the client's peer. */
            if (m->id.idiag_sport != peer.sin_port || m->id.idiag_dport != me.sin_port)
                continue;
            for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == INET_DIAG_CONG)
                    snprintf(cc, cap, "%s", (const char *)RTA_DATA(a));
        }
    }
    close(nl);
}

/* The first line of /proc/sys/net/ipv4/NAME into out (a word). */
static void sysctl_word(const char *name, char *out, size_t cap)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "/proc/sys/net/ipv4/%s", name);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(out, (int)cap, f));
    fclose(f);
    out[strcspn(out, " \n")] = '\0';
}

/*
 * -T: the listeners' congestion control, which every connection inherits.
 * Without it a connection has the system's default; with it, the one
 * named: reno (allowed to every process), or, where the system's default
 * is reno already, another algorithm the system allows, if any.
 */
START_TEST(httpd_congestion_control)
{
    char def[32], allowed[32], want[32], got[32];
    server s = { 0 };
    client *c;
    response r;

    sysctl_word("tcp_congestion_control", def, sizeof(def));
    snprintf(want, sizeof(want), "reno");
    if (strcmp(def, "reno") == 0) {
        FILE *f = fopen("/proc/sys/net/ipv4/tcp_allowed_congestion_control", "r");

        ck_assert_ptr_nonnull(f);
        while (fscanf(f, "%31s", allowed) == 1)
            if (strcmp(allowed, "reno") != 0)
                snprintf(want, sizeof(want), "%s", allowed);
        fclose(f);
    }
    for (int i = 0; i < 2; i++) {
        s = (server){ .cc = i ? want : NULL };
        server_start_opts(&s, 10000, 5000, 5000, 10000);
        c = client_new(s.port);
        ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
        ck_assert_int_eq(r.status, 200);
        server_cc(c->fd, got, sizeof(got));
        ck_assert_str_eq(got, i ? want : def);
        client_free(c);
        ck_assert_int_eq(server_stop(&s), 0);
    }
}
END_TEST

/*
 * A file that cannot be spliced (splice(2) and sendfile(2) fail with
 * EINVAL in the server) costs its body the zero-copy path, not the
 * connection: by splice (_i 0) and by sendfile (_i 1), the file of 3 MiB
 * and 17 bytes is read and sent instead, twice on one connection, every
 * byte right, and the connection goes on after it.
 */
START_TEST(httpd_large_file_without_splice)
{
    server s = { .body = (_i == 0 ? HTTP_BODY_SPLICE : HTTP_BODY_SENDFILE) + 1,
                 .no_splice = true };
    client *c;
    response r;

    server_start_opts(&s, 10000, 5000, 5000, 10000);
    c = client_new(s.port);
    get_large_twice(c);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_mem_eq(r.body, HELLO, 13);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * The descriptors of server s that connections use: sockets, pipes and
 * files beneath the root. The ring and the descriptors a thread makes
 * when it starts are left out, since the server says it listens before
 * its thread has made them.
 */
static int fds_of_kind(const server *s, bool files_only)
{
    char p[64], link[PATH_MAX + 1], fp[PATH_MAX];
    size_t rlen = strlen(s->t.root);
    int n = 0;
    DIR *d;
    struct dirent *e;

    snprintf(p, sizeof(p), "/proc/%d/fd", (int)s->pid);
    d = opendir(p);
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        ssize_t len;

        if (e->d_name[0] == '.')
            continue;
        snprintf(fp, sizeof(fp), "%s/%s", p, e->d_name);
        len = readlink(fp, link, sizeof(link) - 1);
        if (len < 0)
            continue; /* closed meanwhile */
        link[len] = '\0';
        n += (!files_only &&
              (strncmp(link, "socket:", 7) == 0 || strncmp(link, "pipe:", 5) == 0)) ||
             (strncmp(link, s->t.root, rlen) == 0 && link[rlen] == '/');
    }
    closedir(d);
    return n;
}

static int fds_of(const server *s)
{
    return fds_of_kind(s, false);
}

static void past_window(long long ms);

/* The descriptors of server s of files beneath the root. */
static int files_of(const server *s)
{
    return fds_of_kind(s, true);
}

/*
 * Large files are kept open (http_ofiles) under the response cache's
 * validity rule: a file served twice is opened once and kept, one
 * descriptor (-V of an hour, so that the sweeper closes nothing
 * meanwhile); then, under -V 200: renamed over, it is served as it is now
 * once a window has passed; changed in place, at once; removed, 404 once
 * a window has passed, and its descriptor is closed. With the cache off
 * (-C 0) nothing is kept.
 */
START_TEST(httpd_large_file_kept_open)
{
    server s = { .valid_ms = 3600000, .cache_entries = _i ? -1 : 0 };
    char p[256], q[256];
    char *x = malloc(HTTP_SPLICE_MIN + 1000);
    client *c;
    response r;
    long long len;
    int tries;

    ck_assert_ptr_nonnull(x);
    server_start_opts(&s, 10000, 60000, 5000, 10000);
    c = client_new(s.port);
    get_large_twice(c);
    /* The responses' own descriptors close right after their last splice
       (a bound against a hang, not a measurement). */
    for (tries = 0; tries < 200 && files_of(&s) != (_i ? 0 : 1); tries++)
        usleep(20000);
    ck_assert_int_eq(files_of(&s), _i ? 0 : 1);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);

    s = (server){ .valid_ms = 200, .cache_entries = _i ? -1 : 0 };
    server_start_opts(&s, 10000, 60000, 5000, 10000);
    c = client_new(s.port);
    get_large_twice(c);

    /* Changed in place (a byte of the body): seen at once. */
    snprintf(p, sizeof(p), "%s/large.bin", s.t.root);
    {
        int fd = open(p, O_WRONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, "!", 1, 5), 1);
        close(fd);
    }
    say(c, "GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(read_head(c, &len), 200);
    ck_assert_int_eq(len, LARGE_SIZE);
    read_large_body(c, 0, 5);
    if (c->len == 0)
        ck_assert_int_gt(fill(c), 0);
    ck_assert_int_eq(c->buf[0], '!');
    consume(c, 1);
    read_large_body(c, 6, LARGE_SIZE);

    /* Renamed over: a new inode under the same name, of another size. */
    memset(x, 'x', HTTP_SPLICE_MIN + 1000);
    put_file(s.t.root, "large.tmp", x, HTTP_SPLICE_MIN + 1000);
    snprintf(q, sizeof(q), "%s/large.tmp", s.t.root);
    ck_assert_int_eq(rename(q, p), 0);
    past_window(s.valid_ms);
    say(c, "GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(read_head(c, &len), 200);
    ck_assert_int_eq(len, HTTP_SPLICE_MIN + 1000);
    for (size_t at = 0; at < HTTP_SPLICE_MIN + 1000;) {
        size_t take;

        if (c->len == 0)
            ck_assert_int_gt(fill(c), 0);
        take = c->len < HTTP_SPLICE_MIN + 1000 - at ? c->len : HTTP_SPLICE_MIN + 1000 - at;
        ck_assert_int_eq(memcmp(c->buf, x, take), 0);
        at += take;
        consume(c, take);
    }

    /* Removed: 404, and the kept descriptor is closed. */
    ck_assert_int_eq(unlink(p), 0);
    past_window(s.valid_ms);
    ck_assert_int_eq(get(c, "/large.bin", &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(files_of(&s), 0);
    client_free(c);
    free(x);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * A large file kept open and then removed is closed once its validity
 * (-V 5000) has passed, with no request after it: its blocks go back to
 * the file system on an idle server too, not at the thread's next
 * large-file request (a bound against a hang, not a measurement: up to
 * 20 s, four windows). A machine that stalls the test past the validity
 * before it sees the file kept makes it ask again, up to three times.
 */
START_TEST(httpd_large_file_removed_closed_when_idle)
{
    server s = { .valid_ms = 5000 };
    char p[256];
    client *c;
    long long len;
    int tries, asks;

    server_start_opts(&s, 10000, 60000, 5000, 10000);
    for (asks = 0; asks < 3 && files_of(&s) != 1; asks++) {
        c = client_new(s.port);
        say(c, "GET /mid.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        ck_assert_int_eq(read_head(c, &len), 200);
        read_large_body(c, 0, (size_t)len);
        ck_assert_int_eq(read_eof(c), 0);
        client_free(c);
        for (tries = 0; tries < 200 && files_of(&s) != 1; tries++)
            usleep(20000);
    }
    ck_assert_int_eq(files_of(&s), 1);
    snprintf(p, sizeof(p), "%s/mid.bin", s.t.root);
    ck_assert_int_eq(unlink(p), 0);
    for (tries = 0; tries < 1000 && files_of(&s) != 0; tries++)
        usleep(20000);
    ck_assert_int_eq(files_of(&s), 0);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * Clients that leave in the middle of a large file, by a plain close
 * (unread data: the kernel resets) or after stopping to read: each
 * connection's file and pipe are closed with it, and the server's
 * descriptors come back to what they were.
 */
START_TEST(httpd_large_file_client_leaves)
{
    /* -V of an hour: the files kept below stay open for the whole test. */
    server s = { .body = _i + 1, .valid_ms = 3600 * 1000 };
    client *c;
    response r;
    long long len;
    int before, spare, n;

    server_start_opts(&s, 10000, 5000, 5000, 10000);
    before = fds_of(&s);
    /* Under -L splice a response whose body went out whole leaves its pipe
       to the thread as a spare one, two descriptors; the clients come one
       at a time, so there is at most one. Whether the last body taken
       whole was before or after the last client to leave took the spare
       is the kernel's timing: both counts are right, no other. */
    spare = s.body == HTTP_BODY_SPLICE + 1 ? 2 : 0;
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_int_eq(get(c, "/mid.bin", &r), 0);
    client_free(c);
    for (int i = 0; i < 10; i++) {
        c = client_new(s.port);
        say(c, "GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        ck_assert_int_eq(read_head(c, &len), 200);
        read_large_body(c, 0, (size_t)i * 100000u + 1u);
        client_free(c);
    }
    /* The thread keeps mid.bin and large.bin open (http_ofiles): two
       descriptors that are no connection's. */
    before += 2;
    /* Wait for the lingering closes to end (a bound against a hang, not a
       measurement). */
    for (int tries = 0; tries < 200 && fds_of(&s) != before && fds_of(&s) != before + spare;
         tries++)
        usleep(20000);
    n = fds_of(&s);
    ck_assert_msg(n == before || n == before + spare, "%d descriptors, %d before (+%d)", n,
                  before, spare);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * SIGTERM while a large file is on its way: the response in progress
 * completes (every byte, checked), then the connection ends cleanly, and
 * the server exits 0.
 */
START_TEST(httpd_large_file_drain)
{
    server s = { .body = _i + 1 };
    client *c;
    long long len;

    server_start_opts(&s, 10000, 5000, 20000, 10000);
    c = client_new(s.port);
    say(c, "GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(read_head(c, &len), 200);
    read_large_body(c, 0, 4096);
    kill(s.pid, SIGTERM);
    read_large_body(c, 4096, LARGE_SIZE);
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * A large file truncated to nothing while it is on its way, by each way
 * of sending a large body (_i: copy, splice, sendfile): the response
 * cannot be what its head promised, so the connection ends short of its
 * Content-Length (the client sees its end within 20 s, a bound against a
 * server that spins or hangs, not a measurement), and the server serves
 * the next client and exits 0.
 */
START_TEST(httpd_large_file_shrinks_mid_send)
{
    /* Sparse: far more than the socket buffers and a pipe hold, written
       at no cost; the client reads at full speed, so that what was in
       flight when the file shrank comes at once. */
    enum { LEN = 64 << 20 };
    server s = { .body = _i + 1 };
    char p[256];
    client *c;
    response r;
    long long len, got;
    int fd;

    server_start_opts(&s, 10000, 5000, 5000, 10000);
    snprintf(p, sizeof(p), "%s/shrink.bin", s.t.root);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, LEN), 0);
    close(fd);
    c = client_new(s.port);
    say(c, "GET /shrink.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(read_head(c, &len), 200);
    ck_assert_int_eq(len, LEN);
    ck_assert_int_eq(truncate(p, 0), 0);
    got = (long long)c->len;
    c->len = 0;
    for (;;) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        ssize_t n;

        ck_assert_msg(poll(&pfd, 1, 20000) == 1, "the response neither ended nor went on");
        n = recv_intr(c->fd, c->buf, sizeof(c->buf), 0);
        if (n <= 0)
            break;
        got += n;
    }
    ck_assert_int_lt(got, LEN);
    client_free(c);
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_mem_eq(r.body, HELLO, 13);
    client_free(c);
    unlink(p);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * Makes c a client that stops reading while its connection is being
 * served: how 0 and 1 ask for an 8 MiB file and read its first bytes;
 * how 2 reads one response, then pipelines small GETs without reading
 * until the server stops taking them.
 */
static void stop_reading(client *c, int how)
{
    static const char req[] = "GET /4k.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    static char burst[64 * (sizeof(req) - 1)];
    int rcv = 4096;
    size_t off = 0;
    response r;

    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    if (how < 2) {
        say(c, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        ck_assert_int_gt(fill(c), 0); /* being served: the connection has its slot */
        return;
    }
    ck_assert_int_eq(get(c, "/4k.bin", &r), 0);
    for (size_t i = 0; i < sizeof(burst); i += sizeof(req) - 1)
        memcpy(burst + i, req, sizeof(req) - 1);
    /* Far more responses than the socket buffers hold (8 MiB of requests
       at most); a second without progress means the server stopped. */
    for (size_t sent = 0; sent < (8u << 20);) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        ssize_t n = send(c->fd, burst + off, sizeof(burst) - off, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n > 0) {
            sent += (size_t)n;
            off = (off + (size_t)n) % sizeof(burst);
            continue;
        }
        if (n < 0 && errno != EAGAIN)
            break; /* closed by the server already */
        if (poll(&pfd, 1, 1000) == 0)
            break;
    }
}

/*
 * MAX_CONNS clients that stop reading (a large file by splice, by copy,
 * pipelined small GETs, a large file by sendfile): each is closed at the
 * send deadline (300 ms of no progress; the lingering close is set to an
 * hour, so only a close at the deadline frees anything), its file, pipe and slot come back, and a
 * client waiting in the backlog is served.
 */
START_TEST(httpd_slow_readers_cut_at_send_deadline)
{
    enum { N = 5 };
    server s = { .body = _i == 1   ? HTTP_BODY_COPY + 1
                         : _i == 3 ? HTTP_BODY_SENDFILE + 1
                                   : HTTP_BODY_SPLICE + 1,
                 .send_ms = 300, .linger_ms = 3600 * 1000, .valid_ms = 3600 * 1000 };
    client *c[N], *fresh;
    response r;
    int before;

    if (pd_test_skip_on_sim("httpd_slow_readers_cut_at_send_deadline",
                            "its clients run on other threads at real speed, while the "
                            "virtual clock jumps to the 300 ms send deadline after 5 real "
                            "ms without readiness"))
        return;
    server_start_opts(&s, 10000, 5000, 300, N);
    before = fds_of(&s);
    for (int i = 0; i < N; i++) {
        c[i] = client_new(s.port);
        stop_reading(c[i], _i == 3 ? 0 : _i);
    }
    /* It waits in the backlog until a stalled connection is cut. */
    fresh = client_new(s.port);
    say(fresh, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ck_assert_int_eq(read_response(fresh, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, HELLO, 13);
    ck_assert_int_eq(read_eof(fresh), 0);
    client_free(fresh);
    /* The thread keeps big.bin open (http_ofiles): a descriptor that is
       no connection's, for the hour of -V (4k.bin, of _i 2, is not a
       large file). */
    before += _i == 2 ? 0 : 1;
    /* The stalled clients are still open: the server closed its ends, with
       their files and pipes (a bound against a hang, not a measurement). */
    for (int tries = 0; tries < 500 && fds_of(&s) != before; tries++)
        usleep(20000);
    ck_assert_int_eq(fds_of(&s), before);
    for (int i = 0; i < N; i++)
        client_free(c[i]);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/* Writes data over the file root/name in place (no new inode). */
static void rewrite(const char *root, const char *name, const char *data)
{
    char p[256];
    int fd;

    snprintf(p, sizeof(p), "%s/%s", root, name);
    fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    pd_test_write(fd, data, strlen(data));
    close(fd);
}

/* GETs path on c; returns the status, and the body in body (NUL-terminated). */
static int get_body(client *c, const char *path, char *body, size_t cap)
{
    response r;

    ck_assert_int_eq(get(c, path, &r), 0);
    ck_assert_uint_lt(r.got, cap);
    memcpy(body, r.body, r.got);
    body[r.got] = '\0';
    return r.status;
}

/* Waits for three validity windows of the cache (ms): past its rule. */
static void past_window(long long ms)
{
    usleep((useconds_t)(ms * 3 * 1000));
}

/*
 * The cache's validity rule over the server (-V 200): a file rewritten in
 * place, renamed over, removed, and replaced by a link out of the root is
 * served as it is now once a window has passed since the change; the
 * same changes with -V of an hour are not seen (the cache answers).
 */
START_TEST(httpd_cache_follows_changes)
{
    server s = { .valid_ms = _i ? 3600000 : 200 };
    char body[256], p[256], q[256];
    client *c;

    server_start_opts(&s, 10000, 60000, 5000, 10000);
    put_file(s.t.root, "c.txt", "one\n", 4);
    c = client_new(s.port);
    ck_assert_int_eq(get_body(c, "/c.txt", body, sizeof(body)), 200);
    ck_assert_str_eq(body, "one\n");
    ck_assert_int_eq(get_body(c, "/c.txt", body, sizeof(body)), 200);
    ck_assert_str_eq(body, "one\n");

    /* In place, same size. */
    rewrite(s.t.root, "c.txt", "two\n");
    if (_i == 0)
        past_window(s.valid_ms);
    ck_assert_int_eq(get_body(c, "/c.txt", body, sizeof(body)), 200);
    ck_assert_str_eq(body, _i ? "one\n" : "two\n");

    /* Renamed over: a new inode under the same name. */
    put_file(s.t.root, "c.tmp", "three, longer\n", 14);
    snprintf(p, sizeof(p), "%s/c.tmp", s.t.root);
    snprintf(q, sizeof(q), "%s/c.txt", s.t.root);
    ck_assert_int_eq(rename(p, q), 0);
    if (_i == 0)
        past_window(s.valid_ms);
    ck_assert_int_eq(get_body(c, "/c.txt", body, sizeof(body)), 200);
    ck_assert_str_eq(body, _i ? "one\n" : "three, longer\n");

    /* Removed. */
    ck_assert_int_eq(unlink(q), 0);
    if (_i == 0)
        past_window(s.valid_ms);
    ck_assert_int_eq(get_body(c, "/c.txt", body, sizeof(body)), _i ? 200 : 404);

    /* Replaced by a link out of the root. */
    sub_link(s.t.root, "c.txt", s.t.secret);
    if (_i == 0)
        past_window(s.valid_ms);
    ck_assert_int_eq(get_body(c, "/c.txt", body, sizeof(body)), _i ? 200 : 404);
    ck_assert_ptr_null(strstr(body, "secret"));

    /* A directory's index, cached under the directory's path. */
    ck_assert_int_eq(get_body(c, "/dir", body, sizeof(body)), 200);
    ck_assert_str_eq(body, "<p>dir</p>\n");
    rewrite(s.t.root, "dir/index.html", "<p>new</p>\n");
    if (_i == 0)
        past_window(s.valid_ms);
    ck_assert_int_eq(get_body(c, "/dir", body, sizeof(body)), 200);
    ck_assert_str_eq(body, _i ? "<p>dir</p>\n" : "<p>new</p>\n");

    client_free(c);
    unlink(q);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * More files than entries (-C 4, -V of an hour): every response is its
 * own file's; the four files served last are the ones kept (rewritten,
 * they still answer as they were) and the others were evicted (they
 * answer as they are now). The server exits with its descriptors as
 * before (server_stop's 0).
 */
START_TEST(httpd_cache_evicts_least_recent)
{
    enum { FILES = 10, ENTRIES = 4 };
    server s = { .cache_entries = ENTRIES, .valid_ms = 3600000 };
    char name[32], path[128], want[64], body[256];
    client *c;

    server_start_opts(&s, 10000, 60000, 5000, 10000);
    for (int f = 0; f < FILES; f++) {
        snprintf(name, sizeof(name), "f%d.txt", f);
        snprintf(want, sizeof(want), "file %d, first\n", f);
        put_file(s.t.root, name, want, strlen(want));
    }
    c = client_new(s.port);
    for (int round = 0; round < 3; round++)
        for (int f = 0; f < FILES; f++) {
            snprintf(path, sizeof(path), "/f%d.txt", f);
            snprintf(want, sizeof(want), "file %d, first\n", f);
            ck_assert_int_eq(get_body(c, path, body, sizeof(body)), 200);
            ck_assert_str_eq(body, want);
        }
    for (int f = 0; f < FILES; f++) {
        snprintf(name, sizeof(name), "f%d.txt", f);
        snprintf(want, sizeof(want), "file %d, second and longer\n", f);
        rewrite(s.t.root, name, want);
    }
    /* Most recent first, so that no miss evicts a file not yet asked. */
    for (int f = FILES - 1; f >= 0; f--) {
        snprintf(path, sizeof(path), "/f%d.txt", f);
        snprintf(want, sizeof(want), f >= FILES - ENTRIES ? "file %d, first\n"
                                                          : "file %d, second and longer\n", f);
        ck_assert_int_eq(get_body(c, path, body, sizeof(body)), 200);
        ck_assert_msg(strcmp(body, want) == 0, "%s: '%s', not '%s'", path, body, want);
    }
    client_free(c);
    for (int f = 0; f < FILES; f++) {
        snprintf(path, sizeof(path), "%s/f%d.txt", s.t.root, f);
        unlink(path);
    }
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

START_TEST(httpd_never_leaves_root)
{
    static const struct { const char *target; int status; } cases[] = {
        { "/../etc/passwd", 400 },
        { "/dir/../../etc/passwd", 400 },
        { "/%2e%2e/etc/passwd", 400 },
        { "/%2E%2e%2fetc%2fpasswd", 400 },
        { "/dir%2f..%2f..%2fetc", 400 },
        { "/hello.txt%00.html", 400 },
        { "etc/passwd", 400 },
        { "http://t/../etc/passwd", 400 },
        { "//etc/passwd", 404 },
        { "/link_out", 404 },
        { "/up/etc/passwd", 404 },
        { "/link_in", 200 },
        { "/./dir/./index.html", 200 },
        { "http://t/hello.txt", 200 },
    };
    server s;
    char req[256];

    server_start(&s);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", cases[i].target);
        ck_assert_msg(status_of(s.port, req) == cases[i].status, "%s: not %d",
                      cases[i].target, cases[i].status);
    }
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

START_TEST(httpd_slowloris_and_idle)
{
    server s;
    client *a, *b, *c;
    response r;

    s = (server){ 0 };
    server_start_opts(&s, 300, 300, 5000, 10000);
    /* A head that never ends: 408, then the end of stream. */
    a = client_new(s.port);
    say(a, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    /* A connection that never says anything: closed without a response. */
    b = client_new(s.port);
    /* A keep-alive connection that goes idle after a response. */
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_int_eq(read_response(a, &r, 0), 0);
    ck_assert_int_eq(r.status, 408);
    ck_assert_int_eq(read_eof(a), 0);
    ck_assert_int_eq(read_eof(b), 0);
    ck_assert_int_eq(read_eof(c), 0);
    client_free(a);
    client_free(b);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

START_TEST(httpd_max_conns_backs_off)
{
    server s;
    client *a, *b, *c;
    response r;

    s = (server){ 0 };
    server_start_opts(&s, 10000, 5000, 5000, 2);
    a = client_new(s.port);
    b = client_new(s.port);
    ck_assert_int_eq(get(a, "/hello.txt", &r), 0);
    ck_assert_int_eq(get(b, "/hello.txt", &r), 0);
    /* The third waits in the backlog until a slot is free. */
    c = client_new(s.port);
    say(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    client_free(a);
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    client_free(b);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

START_TEST(httpd_drain_closes_idle_finishes_in_progress)
{
    server s;
    client *idle, *busy;
    response r;

    server_start(&s);
    idle = client_new(s.port);
    ck_assert_int_eq(get(idle, "/hello.txt", &r), 0);
    busy = client_new(s.port);
    say(busy, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n");
    /* Wait until the server has read the partial head: a second request on
       the idle connection is answered after busy's bytes were accepted. It
       asks for a file not in the response cache yet, so that its answer
       takes the ring's round trips of an open and a read. */
    ck_assert_int_eq(get(idle, "/4k.bin", &r), 0);
    kill(s.pid, SIGTERM);
    ck_assert_int_eq(read_eof(idle), 0);
    say(busy, "\r\n");
    ck_assert_int_eq(read_response(busy, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header(&r, "Connection"), "close");
    ck_assert_int_eq(read_eof(busy), 0);
    client_free(idle);
    client_free(busy);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * Clients that stop reading mid-body: the drain is cut at DRAIN_MS and the
 * server exits 0. _i 1 runs two threads: the connections spread over both
 * listeners, and the second thread's drain is the one the first hands over.
 */
START_TEST(httpd_drain_cuts_a_stalled_reader)
{
    enum { N = 4 };
    server s = { .threads = _i + 1 };
    client *c[N];
    int rcv = 4096;

    server_start_opts(&s, 10000, 5000, 300, 10000);
    for (int i = 0; i < N; i++) {
        c[i] = client_new(s.port);
        setsockopt(c[i]->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
        say(c[i], "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        /* Some of the body arrives, then the client stops reading. */
        ck_assert_int_gt(fill(c[i]), 0);
    }
    ck_assert_int_eq(server_stop(&s), 0);
    for (int i = 0; i < N; i++)
        client_free(c[i]);
}
END_TEST

/*
 * A low descriptor limit: the server takes no more connections than it has
 * descriptors for (a socket and a file each), so none is refused a file;
 * the others wait in the backlog and are served as clients leave.
 */
START_TEST(httpd_fd_limit_backs_off)
{
    enum { N = 12 };
    server s = { .nofile = 20 };
    client *c[N];
    response r;

    server_start_opts(&s, 10000, 5000, 5000, 10000);
    /* More clients than the server has descriptors for: some wait. */
    for (int i = 0; i < N; i++)
        c[i] = client_new(s.port);
    for (int i = 0; i < N; i++)
        say(c[i], "GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    /* Each answered client leaves, freeing a descriptor for the next. */
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(read_response(c[i], &r, 0), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(read_eof(c[i]), 0);
        client_free(c[i]);
    }
    c[0] = client_new(s.port);
    ck_assert_int_eq(get(c[0], "/hello.txt", &r), 0);
    ck_assert_int_eq(r.status, 200);
    client_free(c[0]);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * Under a low descriptor limit the connections the server accepts can
 * each open their file, whatever the thread keeps besides (large files
 * kept open, spare pipes, a response's own pipe): 24 clients at once, each
 * asking for one of twelve 8 MiB files, more than the limit lets the
 * server take, after eight other large files were served and kept open.
 * Each client is served in full, none with 503: a client beyond what
 * the descriptors allow waits in the backlog. _i: -L splice, then copy.
 */
START_TEST(httpd_fd_limit_leaves_every_connection_its_file)
{
    enum { N = 24, FILES = 12, KEPT = 8, CAP = 64, SIZE = 8 << 20 };
    server s = { .nofile = 48, .body = _i ? HTTP_BODY_COPY + 1 : HTTP_BODY_SPLICE + 1 };
    client *c[N];
    struct pollfd pfd[N];
    size_t got[N], want[N];
    char first[N][CAP], name[32], req[128];
    int left = N;
    response r;

    server_start_opts(&s, 10000, 5000, 5000, 10000);
    /* Sparse, and too large for a socket's buffers: a connection holds its
       file (and pipe) until its client reads, which none does before every
       request is sent. */
    for (int i = 0; i < FILES + KEPT; i++) {
        int fd;

        snprintf(req, sizeof(req), "%s/l%d.bin", s.t.root, i);
        fd = open(req, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, (off_t)(SIZE + i)), 0);
        close(fd);
    }
    /* Eight large files the thread keeps open. */
    c[0] = client_new(s.port);
    for (int i = FILES; i < FILES + KEPT; i++) {
        snprintf(name, sizeof(name), "/l%d.bin", i);
        ck_assert_int_eq(get(c[0], name, &r), 0);
        ck_assert_int_eq(r.status, 200);
    }
    client_free(c[0]);
    for (int i = 0; i < N; i++) {
        c[i] = client_new(s.port);
        snprintf(req, sizeof(req), "GET /l%d.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 i % FILES);
        say(c[i], req);
        pfd[i] = (struct pollfd){ .fd = c[i]->fd, .events = POLLIN };
        got[i] = 0;
        want[i] = SIZE + (size_t)(i % FILES);
    }
    /* Every client read at once, to its end of stream (a bound against a
       hang, not a measurement). */
    while (left > 0) {
        ck_assert_int_gt(poll(pfd, N, 20000), 0);
        for (int i = 0; i < N; i++) {
            char buf[1 << 16];
            ssize_t n;

            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = recv_intr(c[i]->fd, buf, sizeof(buf), 0);
            ck_assert_int_ge(n, 0);
            if (got[i] < CAP)
                memcpy(first[i] + got[i], buf,
                       (size_t)n < CAP - got[i] ? (size_t)n : CAP - got[i]);
            got[i] += (size_t)n;
            if (n == 0) {
                pfd[i].fd = -1;
                left--;
            }
        }
    }
    for (int i = 0; i < N; i++) {
        ck_assert_uint_ge(got[i], CAP);
        ck_assert_msg(memcmp(first[i], "HTTP/1.1 200 ", 13) == 0, "client %d: %.12s", i,
                      first[i]);
        ck_assert_uint_gt(got[i], want[i]);
        client_free(c[i]);
    }
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * A peer still sending when its response is out (more bytes than the
 * server reads after a request that says Connection: close), and not
 * reading yet: the server queues the whole body in its socket and closes.
 * The lingering close reads and discards what the peer sent first: a
 * socket closed with unread input is reset, and the kernel drops what is
 * still queued for the peer, so the body would arrive cut short.
 */
START_TEST(httpd_lingering_close_reads_what_follows)
{
    static char junk[32 * 1024];
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    struct timeval tv = { .tv_sec = 20 };
    server s;
    client *c = calloc(1, sizeof(*c)), *warm;
    response r;
    int rcv = 4096, before;

    ck_assert_ptr_nonnull(c);
    /* -V of an hour: the kept file below stays open for the whole test
       (the sweeper closes a kept file once its validity has passed). */
    s = (server){ .valid_ms = 3600000 };
    server_start_opts(&s, 10000, 5000, 5000, 10000);
    /* A large body sent whole first: its pipe is the thread's spare one
       from then on, two descriptors more, and its file is kept open
       (http_ofiles), one more. */
    before = fds_of(&s) + 3;
    warm = client_new(s.port);
    ck_assert_int_eq(get(warm, "/mid.bin", &r), 0);
    client_free(warm);
    memset(junk, 'j', sizeof(junk));
    /* A small receive window from the start: most of the body stays in
       the server's socket until the client reads. */
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c->fd, 0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    a.sin_port = htons((uint16_t)s.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    /* A first response: the server holds the connection from now on. */
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_int_eq(r.status, 200);
    say(c, "GET /mid.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    pd_test_write(c->fd, junk, sizeof(junk));
    /* Nothing more is read until the server has closed its end (a bound
       against a hang, not a measurement). */
    for (int tries = 0; tries < 500 && fds_of(&s) != before; tries++)
        usleep(20000);
    ck_assert_int_eq(fds_of(&s), before);
    ck_assert_int_eq(read_response(c, &r, 0), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.got, HTTP_SPLICE_MIN + 4096);
    ck_assert_int_eq(read_eof(c), 0);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/* A client that resets mid-response costs the server nothing else. */
START_TEST(httpd_reset_mid_response)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    server s;
    client *c;
    response r;

    server_start(&s);
    for (int i = 0; i < 20; i++) {
        c = client_new(s.port);
        say(c, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        ck_assert_int_gt(fill(c), 0);
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        client_free(c); /* unread data and SO_LINGER 0: a reset */
    }
    c = client_new(s.port);
    ck_assert_int_eq(get(c, "/hello.txt", &r), 0);
    ck_assert_int_eq(r.status, 200);
    client_free(c);
    ck_assert_int_eq(server_stop(&s), 0);
}
END_TEST

/*
 * 200 keep-alive clients loop on requests; SIGTERM arrives mid-stream.
 * Every response that arrives is complete, every connection then ends with
 * a clean end of stream (no reset, nothing partial), and the server exits
 * 0: 0 ops in flight, no connection left, descriptors as before.
 */
#define LOAD_CONNS 200
#define LOAD_BEFORE 2000

typedef struct loader {
    int fd;
    int phase;               /* 0: reading a head, 1: a body, 2: ended */
    size_t len, body_left;
    long responses;
    char buf[8192];
} loader;

static void load_send(loader *l)
{
    static const char req[] = "GET /4k.bin HTTP/1.1\r\nHost: t\r\n\r\n";

    pd_test_write(l->fd, req, sizeof(req) - 1);
}

/* Consumes what l received; returns 1 when a response completed. */
static int load_parse(loader *l)
{
    if (l->phase == 0) {
        char *end = memmem(l->buf, l->len, "\r\n\r\n", 4);
        const char *cl;
        size_t hlen;

        if (end == NULL)
            return 0;
        hlen = (size_t)(end - l->buf) + 4;
        *end = '\0';
        cl = strstr(l->buf, "Content-Length: ");
        ck_assert_ptr_nonnull(cl);
        ck_assert_int_eq(strncmp(l->buf, "HTTP/1.1 200 ", 13), 0);
        l->body_left = (size_t)atol(cl + 16);
        memmove(l->buf, l->buf + hlen, l->len - hlen);
        l->len -= hlen;
        l->phase = 1;
    }
    {
        size_t take = l->len < l->body_left ? l->len : l->body_left;

        memmove(l->buf, l->buf + take, l->len - take);
        l->len -= take;
        l->body_left -= take;
    }
    if (l->body_left > 0)
        return 0;
    l->phase = 0;
    l->responses++;
    return 1;
}

static int served_all(const loader *ls)
{
    for (int i = 0; i < LOAD_CONNS; i++)
        if (ls[i].responses == 0)
            return 0;
    return 1;
}

static void shutdown_under_load(long threads)
{
    loader *ls = calloc(LOAD_CONNS, sizeof(*ls));
    static struct pollfd pfd[LOAD_CONNS];
    server s = { .threads = threads };
    long total = 0, truncated = 0, resets = 0, ended = 0;
    int fds, signalled = 0;

    ck_assert_ptr_nonnull(ls);
    server_start_opts(&s, 10000, 5000, 5000, 10000);
    fds = pd_test_fd_count();
    for (int i = 0; i < LOAD_CONNS; i++) {
        ls[i] = (loader){ .fd = dial(s.port) };
        load_send(&ls[i]);
        pfd[i] = (struct pollfd){ .fd = ls[i].fd, .events = POLLIN };
    }
    while (ended < LOAD_CONNS) {
        ck_assert_int_gt(poll(pfd, LOAD_CONNS, 20000), 0);
        for (int i = 0; i < LOAD_CONNS; i++) {
            loader *l = &ls[i];
            ssize_t n;

            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = recv(l->fd, l->buf + l->len, sizeof(l->buf) - l->len, MSG_DONTWAIT);
            if (n < 0 && errno == EAGAIN)
                continue;
            if (n <= 0) {
                /* The end: clean only after a complete response. */
                if (n < 0)
                    resets++;
                if (l->phase != 0 || l->len != 0)
                    truncated++;
                l->phase = 2;
                pfd[i].fd = -1;
                ended++;
                continue;
            }
            l->len += (size_t)n;
            while (load_parse(l)) {
                total++;
                if (!signalled)
                    load_send(l);
            }
        }
        /* Mid-stream: every client has been served, and all are looping. */
        if (!signalled && total >= LOAD_BEFORE && served_all(ls)) {
            kill(s.pid, SIGTERM);
            signalled = 1;
        }
    }
    ck_assert_int_eq(truncated, 0);
    ck_assert_int_eq(resets, 0);
    ck_assert_int_ge(total, LOAD_BEFORE);
    for (int i = 0; i < LOAD_CONNS; i++)
        close(ls[i].fd);
    free(ls);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    ck_assert_int_eq(server_stop(&s), 0);
}

START_TEST(httpd_shutdown_under_load)
{
    shutdown_under_load(1);
}
END_TEST

/* The same with two threads: two runtimes, two SO_REUSEPORT listeners. */
START_TEST(httpd_shutdown_under_load_threads)
{
    shutdown_under_load(2);
}
END_TEST

/* --- the harness over the connection future --- */

typedef struct conn_fixture {
    tree t;
    http_srv srv;
    int rootfd, peer, fd;
    char *spare[2];
} conn_fixture;

static conn_fixture cf;

static void conn_setup(void *ctx)
{
    static const char req[] = "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /mid.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /mid.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /4k.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    conn_fixture *f = ctx;
    char date[40];
    int sv[2];

    /* glibc allocates once per process when it first formats a date (its
       time zone state): done here, so that what is counted is the future. */
    http_date_format(0, date);
    f->rootfd = open(f->t.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(f->rootfd, 0);
    http_srv_init(&f->srv, f->rootfd, 10000, 5000, 60000, 1000, 10);
    f->srv.body = HTTP_BODY_SPLICE; /* mid.bin goes through the splice states */
    f->srv.ofiles.valid_ms = 3600000; /* the second mid.bin: the descriptor kept open */
    /* The pool gets its block before counting starts: a warm server. */
    ck_assert_int_eq(http_pool_get(&f->srv.pool, &f->spare[0]), 0);
    http_pool_put(&f->srv.pool, f->spare[0]);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->fd = sv[0];
    f->peer = sv[1];
    /* Non-blocking, as http_accept makes a connection under -L splice. */
    ck_assert_int_eq(fcntl(f->fd, F_SETFL, O_NONBLOCK), 0);
    /* Four pipelined requests (the second and third spliced, the third
       from the descriptor the second kept), then the client's end of stream. */
    pd_test_write(f->peer, req, sizeof(req) - 1);
    shutdown(f->peer, SHUT_WR);
}

static void conn_init(void *self, void *ctx)
{
    conn_fixture *f = ctx;

    f->srv.live++;
    http_conn_init(self, f->fd, &f->srv);
}

static void conn_after(void *ctx, const void *out)
{
    conn_fixture *f = ctx;

    ck_assert_int_eq(f->srv.live, 0);
    ck_assert_int_eq(f->srv.pool.nfree, f->srv.pool.mapped);
    ck_assert_ptr_null(f->srv.conns);
    if (out != NULL)
        ck_assert_int_eq(*(const int *)out, 0);
}

static void conn_cleanup(void *ctx)
{
    conn_fixture *f = ctx;

    close(f->peer);
    http_srv_fini(&f->srv);
    close(f->rootfd);
}

START_TEST(httpd_conn_cancel_points)
{
    pd_harness_case c = {
        .future = "http_conn", .vt = &http_conn_vtable, .has_teardown = 1, .ctx = &cf,
        .setup = conn_setup, .init = conn_init, .after = conn_after,
        .cleanup = conn_cleanup,
    };
    pd_harness_stats st;

    /* One tree for every destruction: the future only reads it, and making
       it (megabytes of files) at each of them made the test slow. */
    tree_make(&cf.t);
    pd_harness_run(&c, &st);
    tree_remove(&cf.t);
    /* peek, recv; open, read, send; open (the head and the body go by the
       thread's own send and splices; the kept one's too, with no ring
       entry at all); open, read, send: nine, then the teardown's steps. */
    ck_assert_int_ge(st.points, 9);
}
END_TEST

/* Runs rt until the peer fd has something to read (a bound, not a measurement). */
static void run_until_readable(pd_runtime *rt, int fd)
{
    for (int i = 0; i < 10000; i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        if (poll(&p, 1, 0) == 1)
            return;
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        usleep(100);
    }
    ck_abort_msg("no response");
}

/*
 * The fixture of the keep-alive tests: a served tree, a runtime, a server
 * state with an idle limit of idle_ms, and one http_conn task (*t) serving
 * sv[0] of a socket pair. Returns the root's descriptor.
 */
static int ka_start(pd_runtime **rt, http_srv *srv, int sv[2], long long idle_ms, pd_task **t)
{
    int rootfd;

    tree_make(&cf.t);
    rootfd = open(cf.t.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(rootfd, 0);
    ck_assert_int_eq(pd_runtime_new(rt, NULL), 0);
    http_srv_init(srv, rootfd, 10000, idle_ms, 60000, 1000, 10);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    srv->live++;
    *t = http_conn_spawn(*rt, sv[0], srv);
    ck_assert_ptr_nonnull(*t);
    return rootfd;
}

/*
 * Ends what ka_start made, once its task has ended and been released:
 * the client's end, the runtime, the server state, the root and the tree.
 */
static void ka_stop(pd_runtime *rt, http_srv *srv, int sv[2], int rootfd)
{
    close(sv[1]);
    pd_runtime_free(rt);
    http_srv_fini(srv);
    close(rootfd);
    tree_remove(&cf.t);
}

/*
 * A keep-alive connection waits for its next request on the thread's
 * hot list, with no timer of its own; the sweep at HTTP_HOT_MS after its
 * response cancels its receive, and the connection gives its block back
 * itself and waits without it (the peek); the next request is served
 * from a block taken again. The sweep at its deadline (IDLE_MS after the
 * response) cancels it, and its teardown ends the connection cleanly (the
 * peer reads its end of stream). A sweep before either changes nothing.
 */
START_TEST(httpd_keepalive_sweep)
{
    static const char req[] = "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    pd_runtime *rt;
    http_srv srv;
    pd_task *t;
    http_link *l = NULL;
    char buf[512];
    int sv[2], rootfd;
    ssize_t n;

    rootfd = ka_start(&rt, &srv, sv, 5000, &t);
    for (int round = 0; round < 2; round++) {
        pd_test_write(sv[1], req, sizeof(req) - 1);
        run_until_readable(rt, sv[1]);
        n = read(sv[1], buf, sizeof(buf) - 1);
        ck_assert_int_gt(n, 0);
        buf[n] = '\0';
        ck_assert_ptr_nonnull(strstr(buf, "200 OK"));
        ck_assert_ptr_nonnull(strstr(buf, HELLO));
        for (int i = 0; i < 1000 && srv.hot.head == NULL; i++)
            ck_assert_int_ge(pd_run_once(rt, 0), 0);
        l = srv.hot.head;
        ck_assert_ptr_nonnull(l);
        ck_assert_ptr_null(l->knext);
        ck_assert(l->idle);
        ck_assert_int_eq(srv.pool.nfree, srv.pool.mapped - 1); /* it holds its block */
        /* Not yet hot for HTTP_HOT_MS: nothing changes. */
        ck_assert_int_eq(http_srv_sweep(&srv, l->deadline - srv.idle_ms + HTTP_HOT_MS - 1), 0);
        ck_assert_ptr_eq(srv.hot.head, l);
        if (round == 1)
            break;
        /* Past it: the receive is cancelled, the connection stays and
           gives its block back. */
        ck_assert_int_eq(http_srv_sweep(&srv, l->deadline - srv.idle_ms + HTTP_HOT_MS), 0);
        ck_assert_ptr_null(srv.hot.head);
        ck_assert_uint_eq(srv.swept_cold, 1);
        for (int i = 0; i < 1000 && srv.pool.nfree != srv.pool.mapped; i++)
            ck_assert_int_ge(pd_run_once(rt, 0), 0);
        ck_assert_int_eq(srv.pool.nfree, srv.pool.mapped);
        ck_assert(l->idle); /* waiting again, for the drain to close */
        ck_assert_int_eq(pd_task_state(t), PD_TASK_RUNNING);
        ck_assert_int_eq(http_srv_sweep(&srv, l->deadline - 1), 0);
    }
    /* At the deadline: cancelled, closed cleanly. */
    ck_assert_int_eq(http_srv_sweep(&srv, l->deadline), 1);
    ck_assert_ptr_null(srv.hot.head);
    ck_assert_int_eq(pd_task_wait(t), 0); /* its lingering close: at most 1 s */
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_int_eq(read(sv[1], buf, sizeof(buf)), 0);
    ck_assert_int_eq(srv.live, 0);
    ck_assert_ptr_null(srv.conns);
    pd_task_release(t);
    ka_stop(rt, &srv, sv, rootfd);
}
END_TEST

/*
 * Reads from fd, running rt between reads, until want bytes are in buf (a
 * bound against a hang, not a measurement). Returns the bytes read.
 */
static size_t run_and_read(pd_runtime *rt, int fd, char *buf, size_t want)
{
    size_t got = 0;

    for (int i = 0; i < 100000 && got < want; i++) {
        ssize_t n = recv(fd, buf + got, want - got, MSG_DONTWAIT);

        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
        if (n < 0)
            usleep(100);
    }
    return got;
}

/*
 * -L splice: a large body goes out by the thread's own splices, with no
 * ring entry of its own: a keep-alive request for mid.bin costs the ring
 * its open and the next request's receive, nothing more (the head, the
 * file into the pipe and the pipe into the socket are the thread's system
 * calls). Its pipe is the thread's spare one afterwards and serves the
 * next response. Through a socket whose buffer is smaller than the body,
 * what the socket does not take waits in the pipe (send_wait) and the
 * whole body still arrives in order. With the large files kept open
 * (_i 1: http_ofiles), the requests after the first cost the ring only
 * the next receive: each is served from a duplicate of the descriptor the
 * first one kept, and the slot keeps that descriptor and its stamp (a
 * hit does not keep its duplicate again, which would renew its validity).
 */
START_TEST(httpd_large_body_by_the_threads_splices)
{
    static const char req[] = "GET /mid.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    enum { BODY = HTTP_SPLICE_MIN + 4096 };
    static char buf[BODY + 1024];
    pd_runtime *rt;
    http_srv srv;
    pd_task *t;
    pd_stats a, b;
    http_ofile kept = { .fd = -1, .klen = 0 };
    int sv[2], rootfd, small = 4096;

    tree_make(&cf.t);
    rootfd = open(cf.t.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(rootfd, 0);
    ck_assert_int_eq(pd_runtime_new(&rt, NULL), 0);
    http_srv_init(&srv, rootfd, 10000, 5000, 60000, 1000, 10);
    srv.body = HTTP_BODY_SPLICE;
    srv.ofiles.valid_ms = _i ? 3600000 : 0;
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    srv.live++;
    t = http_conn_spawn(rt, sv[0], &srv);
    ck_assert_ptr_nonnull(t);
    for (int round = 0; round < 3; round++) {
        size_t got, head;
        char *end;

        if (round == 2)
            ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        pd_runtime_stats(rt, &a);
        pd_test_write(sv[1], req, sizeof(req) - 1);
        got = run_and_read(rt, sv[1], buf, 200);
        ck_assert_uint_eq(got, 200);
        end = memmem(buf, got, "\r\n\r\n", 4);
        ck_assert_ptr_nonnull(end);
        head = (size_t)(end + 4 - buf);
        ck_assert_int_eq(strncmp(buf, "HTTP/1.1 200 OK", 15), 0);
        got += run_and_read(rt, sv[1], buf + got, head + BODY - got);
        ck_assert_uint_eq(got, head + BODY);
        for (size_t i = 0; i < BODY; i++)
            ck_assert_int_eq(buf[head + i], pattern_at(i));
        /* The connection waits for its next request again. */
        for (int i = 0; i < 1000 && srv.hot.head == NULL; i++)
            ck_assert_int_ge(pd_run_once(rt, 0), 0);
        ck_assert_ptr_nonnull(srv.hot.head);
        pd_runtime_stats(rt, &b);
        if (round == 1) /* the open (none for a kept file) and the next receive */
            ck_assert_uint_eq(b.ops_submitted - a.ops_submitted, _i ? 1 : 2);
        ck_assert_int_eq(srv.pipes.n, 1);
        ck_assert_uint_eq(srv.ofiles.hits, _i ? (uint64_t)round : 0);
        if (_i && round == 0)
            kept = srv.ofiles.f[0];
        ck_assert_int_eq(srv.ofiles.f[0].klen, _i ? sizeof("mid.bin") - 1 : 0);
        if (_i) {
            ck_assert_int_ge(kept.fd, 0);
            ck_assert_int_eq(srv.ofiles.f[0].fd, kept.fd);
            ck_assert_int_eq(srv.ofiles.f[0].stamp, kept.stamp);
        }
    }
    close(sv[1]);
    http_srv_sweep(&srv, srv.hot.head->deadline);
    ck_assert_int_eq(pd_task_wait(t), 0);
    pd_task_release(t);
    ck_assert_int_eq(srv.live, 0);
    http_srv_fini(&srv);
    ck_assert_int_eq(srv.pipes.n, 0);
    pd_runtime_free(rt);
    close(rootfd);
    tree_remove(&cf.t);
}
END_TEST

/*
 * A request whose bytes the kernel has received into a keep-alive
 * connection's block, but whose completion the connection has not yet
 * seen, when the sweeper ends the connection's hot period: the request
 * is answered as sent. The sweeper here is http_sweep itself, polled from
 * its timer's completion; the connection's hot period is shortened so
 * that its next tick ends it. The timer fires first and the request is
 * written after it, both before the runtime enters the kernel again, so
 * on io_uring both completions come in one batch, the timer's first: the
 * sweep runs while the receive has copied the request into the block and
 * its completion waits behind the timer's (on epoll the order is the
 * engine's, and either order must keep the request).
 */
START_TEST(httpd_sweep_loses_no_request)
{
    static const char req[] = "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    pd_runtime *rt;
    http_srv srv;
    pd_task *t, *sw;
    http_link *l;
    char buf[512];
    int sv[2], rootfd;
    ssize_t n;

    rootfd = ka_start(&rt, &srv, sv, 60000, &t);
    pd_test_write(sv[1], req, sizeof(req) - 1);
    run_until_readable(rt, sv[1]);
    n = read(sv[1], buf, sizeof(buf) - 1);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < 1000 && srv.hot.head == NULL; i++)
        ck_assert_int_ge(pd_run_once(rt, 0), 0);
    l = srv.hot.head;
    ck_assert_ptr_nonnull(l);
    /* Its hot period is over at the sweeper's first tick. */
    l->deadline -= HTTP_HOT_MS;
    sw = http_sweep_spawn(rt, &srv);
    ck_assert_ptr_nonnull(sw);
    ck_assert_int_ge(pd_run_once(rt, 0), 0); /* the sweeper's timer is armed */
    ck_assert_uint_eq(srv.swept_cold, 0);
    /* The timer fires (a bound, 3 ticks), then the request arrives. */
    usleep(3 * HTTP_SWEEP_MS * 1000);
    pd_test_write(sv[1], req, sizeof(req) - 1);
    run_until_readable(rt, sv[1]);
    /* The sweep did end the hot period first, but on the simulator, whose
       clock does not move while the request can be received. */
    if (strcmp(pd_runtime_engine(rt), "sim") != 0)
        ck_assert_uint_eq(srv.swept_cold, 1);
    n = read(sv[1], buf, sizeof(buf) - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_msg(strstr(buf, "200 OK") != NULL, "the request was lost: %s", buf);
    ck_assert_ptr_nonnull(strstr(buf, HELLO));
    shutdown(sv[1], SHUT_WR); /* its lingering close ends at once */
    pd_task_cancel(sw);
    ck_assert_int_eq(pd_task_wait(sw), 0);
    pd_task_release(sw);
    pd_task_cancel(t);
    ck_assert_int_eq(pd_task_wait(t), 0);
    pd_task_release(t);
    ck_assert_int_eq(srv.live, 0);
    ka_stop(rt, &srv, sv, rootfd);
}
END_TEST

Suite *pd_suite_httpd(void)
{
    Suite *s = suite_create("httpd");
    TCase *proto = tcase_create("protocol");
    TCase *srv = tcase_create("server");
    TCase *fut = tcase_create("future");
    TCase *sweep = tcase_create("sweep");

    tcase_add_test(proto, http_path_decodes_and_refuses);
    tcase_add_test(proto, http_feed_fast_path_agrees_with_parser);
    tcase_add_test(proto, http_feed_after_upgrade);
    tcase_add_test(proto, http_dates_round_trip);
    tcase_add_test(proto, http_open_errors_map_to_statuses);
    tcase_add_test(proto, http_cache_rules);
    tcase_add_test(proto, http_cache_refresh);
    tcase_add_test(proto, http_cache_pins);
    tcase_add_test(proto, http_cache_serves_from_entry);
    tcase_set_timeout(proto, 60);
    tcase_set_timeout(srv, 60);
    tcase_add_test(srv, httpd_get_head_index_types);
    tcase_add_test(srv, httpd_if_modified_since);
    tcase_add_test(srv, httpd_error_statuses);
    tcase_add_test(srv, httpd_keep_alive_rules);
    tcase_add_test(srv, httpd_http10_errors_keep_alive);
    tcase_add_test(srv, httpd_expect_continue_refused_at_the_head);
    tcase_add_test(srv, httpd_pipelining_in_order);
    tcase_add_test(srv, httpd_cached_sends_into_full_socket);
    tcase_add_test(srv, httpd_heads_in_pieces);
    tcase_add_test(srv, httpd_space_before_colon_400);
    tcase_add_test(srv, httpd_http10_transfer_encoding_closes);
    tcase_add_test(srv, httpd_blank_lines_do_not_hold);
    tcase_add_test(srv, httpd_dot_after_a_file_404);
    tcase_add_test(srv, httpd_host_exactly_one);
    tcase_add_test(srv, httpd_head_of_8k_served);
    tcase_add_loop_test(srv, httpd_large_file_complete, 0, 3);
    tcase_add_test(srv, httpd_congestion_control);
    tcase_add_loop_test(srv, httpd_large_file_client_leaves, 0, 3);
    tcase_add_loop_test(srv, httpd_large_file_drain, 0, 3);
    tcase_add_loop_test(srv, httpd_large_file_shrinks_mid_send, 0, 3);
    tcase_add_loop_test(srv, httpd_large_file_without_splice, 0, 2);
    tcase_add_loop_test(srv, httpd_large_file_kept_open, 0, 2);
    tcase_add_test(srv, httpd_large_file_removed_closed_when_idle);
    tcase_add_loop_test(srv, httpd_slow_readers_cut_at_send_deadline, 0, 4);
    tcase_add_test(srv, httpd_never_leaves_root);
    tcase_add_loop_test(srv, httpd_cache_follows_changes, 0, 2);
    tcase_add_test(srv, httpd_cache_evicts_least_recent);
    tcase_add_test(srv, httpd_slowloris_and_idle);
    tcase_add_test(srv, httpd_max_conns_backs_off);
    tcase_add_test(srv, httpd_drain_closes_idle_finishes_in_progress);
    tcase_add_loop_test(srv, httpd_drain_cuts_a_stalled_reader, 0,
                        RUNNING_ON_VALGRIND ? 1 : 2);
    tcase_add_test(srv, httpd_lingering_close_reads_what_follows);
    tcase_add_test(srv, httpd_reset_mid_response);
    tcase_add_test(srv, httpd_shutdown_under_load);
    if (RUNNING_ON_VALGRIND) {
        /* Valgrind keeps descriptors of its own under the limit, and runs
           one thread at a time: a thread blocked in io_uring_enter stops
           the others. Both run in the plain and sanitized builds. */
        fprintf(stderr, "httpd: under valgrind, skipping httpd_fd_limit_backs_off and "
                "httpd_shutdown_under_load_threads\n");
    } else {
        tcase_add_test(srv, httpd_fd_limit_backs_off);
        tcase_add_loop_test(srv, httpd_fd_limit_leaves_every_connection_its_file, 0, 2);
        tcase_add_test(srv, httpd_shutdown_under_load_threads);
    }
    tcase_set_timeout(fut, 60);
    /* The cancel-point tests: make explore runs them under the simulator. */
    tcase_set_tags(fut, "harness");
    tcase_add_test(fut, httpd_conn_cancel_points);
    tcase_add_test(fut, httpd_keepalive_sweep);
    tcase_add_loop_test(fut, httpd_large_body_by_the_threads_splices, 0, 2);
    suite_add_tcase(s, proto);
    suite_add_tcase(s, srv);
    suite_add_tcase(s, fut);
    tcase_set_timeout(sweep, 60);
    tcase_add_test(sweep, httpd_sweep_loses_no_request);
    suite_add_tcase(s, sweep);
    return s;
}
