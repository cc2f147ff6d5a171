/*
 * raw_http: the raw liburing floor for httpd's small-file rows (issue 22).
 * An HTTP/1.1 keep-alive responder in plain liburing doing the work of
 * httpd's cached small-file path and nothing more: it serves the bytes of
 * ONE file, read once at start, to every complete GET head (a head ends in
 * CRLF CRLF; pipelined heads are answered in order, their responses in one
 * send). The response (status line, Server, Date, Content-Type,
 * Content-Length, Last-Modified, the body) is composed once and its Date
 * rewritten at most once a second, as httpd's cached head is. It is an
 * anchor, not a server: it answers whatever path is asked, and input it
 * does not expect (a head over 8 KiB, a method other than GET) closes the
 * connection.
 *
 * One thread per -t, each with its own ring and its own SO_REUSEPORT
 * listener, written the way liburing's best users write a server: the
 * ring is SINGLE_ISSUER|DEFER_TASKRUN (plain if the kernel refuses it),
 * every turn of the loop is one io_uring_submit_and_wait, and the
 * techniques below are flags so that one binary compares them; the
 * defaults are those that measured lowest in server CPU per request
 * (docs/httpd.md, "Against the raw liburing floor").
 *
 *   -r ms|pf  receive: ms (default) is one multishot recv per connection on
 *             a provided-buffer ring of the thread; pf is httpd's way, one
 *             single-shot recv with IORING_RECVSEND_POLL_FIRST into the
 *             connection's own buffer, armed again when the response is sent.
 *   -a 0|1    multishot accept (1, default) or one accept armed at a time.
 *   -d 0|1    direct descriptors (default 0): accepted into the ring's
 *             sparse file table (accept_direct), used with IOSQE_FIXED_FILE
 *             and closed with close_direct.
 *   -c 0|1    IORING_SETUP_COOP_TASKRUN as well (default 0).
 *   -R 0|1    registered ring fd, io_uring_register_ring_fd (default 0).
 *   -s 0|1    SINGLE_ISSUER|DEFER_TASKRUN (1, default) or a plain ring.
 *   -W N      wait for N completions (default 1), or -U microseconds
 *   -U USEC   (default 50) once the loop has nothing to do: fewer wake-ups
 *             of the thread, each handling more completions, at the cost
 *             of up to USEC of latency.
 *
 *   build/raw_http [-p PORT] [-t THREADS] [flags] FILE
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NBUFS 1024      /* provided buffers per thread (-r ms) */
#define BUFSZ 4096
#define BGID 0
#define HEAD_MAX 8192   /* bytes of one head at most */
#define IN_MAX (1u << 20) /* bytes of pipelined input a connection may hold (-r ms) */
#define NFILES 65536    /* the sparse file table of a ring (-d 1), at most */
#define RING_SQES 1024

/* user_data: a conn pointer (malloc aligns it to 16), its low bits the kind of request. */
#define UD_RECV 1u
#define UD_SEND 2u
#define UD_ACCEPT 3u
#define UD_CANCEL 4u
#define UD_IGNORE 0u
#define UD_KIND 7u

struct opts {
    int port, threads, ms_recv, ms_accept, direct, coop, regfd, defer, wait_nr, wait_us;
    const char *file;
};

/* The response of one second: head and body, one buffer. */
struct resp {
    char *buf;
    size_t len;
    unsigned busy;    /* sends in flight from buf */
};

struct conn {
    int fd;           /* a descriptor, or an index in the file table (-d 1) */
    int sending;      /* a send is in flight */
    int armed;        /* a recv is in flight (multishot: may still post) */
    int ended;        /* end of stream or error: close once nothing is in flight */
    int cancelling;   /* a cancel of the multishot recv is in flight */
    char *in;         /* unanswered input: inl, or a larger copy (-r ms) */
    uint32_t inlen, incap;
    char *out;        /* the responses to pipelined heads, or NULL */
    size_t outcap;
    const char *sbuf; /* what the send in flight sends */
    struct resp *from; /* the response sbuf is, or NULL (out) */
    size_t slen, soff;
    char inl[HEAD_MAX];
};

struct worker {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    int lfd;
    struct resp resp[2]; /* two seconds' responses: a send in flight keeps its own */
    int cur;
    time_t sec;
    pthread_t tid;
};

static struct opts o = { .port = 18490, .threads = 1, .ms_recv = 1, .ms_accept = 1,
                         .direct = 0, .coop = 0, .regfd = 0, .defer = 1,
                         .wait_nr = 1, .wait_us = 50 };
static char *body;
static size_t body_len;
static const char *ctype;
static char lmod[30];

static void fmt_date(time_t t, char out[30])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 30, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Composes the response of second t into r (the same length every second). */
static void compose(struct resp *r, time_t t)
{
    char date[30], head[512];
    int n;

    fmt_date(t, date);
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nServer: raw_http\r\nDate: %s\r\nContent-Type: %s\r\n"
                 "Content-Length: %zu\r\nLast-Modified: %s\r\n\r\n",
                 date, ctype, body_len, lmod);
    if (r->buf == NULL) {
        r->buf = malloc((size_t)n + body_len);
        if (r->buf == NULL) {
            fprintf(stderr, "raw_http: out of memory\n");
            exit(1);
        }
    }
    memcpy(r->buf, head, (size_t)n);
    memcpy(r->buf + n, body, body_len);
    r->len = (size_t)n + body_len;
}

static struct io_uring_sqe *sqe(struct worker *w)
{
    struct io_uring_sqe *s;

    while ((s = io_uring_get_sqe(&w->ring)) == NULL)
        io_uring_submit(&w->ring);
    return s;
}

static void buf_put(struct worker *w, uint16_t id)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)id * BUFSZ, BUFSZ, id,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(w->br, 1);
}

static void arm_accept(struct worker *w)
{
    struct io_uring_sqe *s = sqe(w);

    if (o.ms_accept && o.direct)
        io_uring_prep_multishot_accept_direct(s, w->lfd, NULL, NULL, 0);
    else if (o.ms_accept)
        io_uring_prep_multishot_accept(s, w->lfd, NULL, NULL, SOCK_CLOEXEC);
    else if (o.direct)
        /* liburing 2.3 adds one to the index it is given: ALLOC - 1 means ALLOC. */
        io_uring_prep_accept_direct(s, w->lfd, NULL, NULL, 0, IORING_FILE_INDEX_ALLOC - 1);
    else
        io_uring_prep_accept(s, w->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, UD_ACCEPT);
}

static void arm_recv(struct worker *w, struct conn *c)
{
    struct io_uring_sqe *s = sqe(w);

    if (o.ms_recv) {
        io_uring_prep_recv(s, c->fd, NULL, 0, 0);
        s->ioprio |= IORING_RECV_MULTISHOT;
        s->flags |= IOSQE_BUFFER_SELECT;
        s->buf_group = BGID;
    } else {
        io_uring_prep_recv(s, c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
        s->ioprio |= IORING_RECVSEND_POLL_FIRST;
    }
    if (o.direct)
        s->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)c | UD_RECV);
    c->armed = 1;
}

static void send_rest(struct worker *w, struct conn *c)
{
    struct io_uring_sqe *s = sqe(w);

    io_uring_prep_send(s, c->fd, c->sbuf + c->soff, c->slen - c->soff, MSG_NOSIGNAL);
    if (o.direct)
        s->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)c | UD_SEND);
    c->sending = 1;
}

/*
 * Closes c once nothing of it is in flight; a multishot recv still armed is
 * cancelled first, once. c outlives its cancel's completion too: freed
 * before, its address could be a new connection's by the time the cancel
 * is submitted, and the cancel would end that connection's recv.
 */
static void maybe_close(struct worker *w, struct conn *c)
{
    if (!c->ended || c->sending || c->cancelling)
        return;
    if (c->armed) {
        if (o.ms_recv) {
            struct io_uring_sqe *s = sqe(w);

            io_uring_prep_cancel64(s, (uint64_t)(uintptr_t)c | UD_RECV, 0);
            io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)c | UD_CANCEL);
            c->cancelling = 1;
        }
        return;
    }
    if (o.direct) {
        struct io_uring_sqe *s = sqe(w);

        io_uring_prep_close_direct(s, (unsigned)c->fd);
        io_uring_sqe_set_data64(s, UD_IGNORE);
    } else {
        close(c->fd);
    }
    free(c->out);
    if (c->in != c->inl)
        free(c->in);
    free(c);
}

/*
 * Answers the complete heads at the front of p[0..n): sends one response,
 * or the responses of several pipelined heads from c->out, in one send.
 * Returns the bytes consumed, or -1 if the input is not one the anchor serves.
 */
static long answer(struct worker *w, struct conn *c, const char *p, size_t n)
{
    const struct resp *r = &w->resp[w->cur];
    size_t used = 0, heads = 0;
    const char *e;

    while ((e = memmem(p + used, n - used, "\r\n\r\n", 4)) != NULL) {
        if (n - used < 4 || memcmp(p + used, "GET ", 4) != 0)
            return -1;
        used = (size_t)(e - p) + 4;
        heads++;
    }
    if (heads == 0)
        return 0;
    if (heads == 1) {
        c->sbuf = r->buf;
        c->slen = r->len;
        c->from = &w->resp[w->cur];
        c->from->busy++;
    } else {
        size_t i;

        if (c->outcap < heads * r->len) {
            free(c->out);
            c->outcap = heads * r->len;
            c->out = malloc(c->outcap);
            if (c->out == NULL) {
                c->outcap = 0;
                return -1;
            }
        }
        for (i = 0; i < heads; i++)
            memcpy(c->out + i * r->len, r->buf, r->len);
        c->sbuf = c->out;
        c->slen = heads * r->len;
    }
    c->soff = 0;
    send_rest(w, c);
    return (long)used;
}

/* Answers the complete heads in c->in and keeps the rest; 0, or -1 to close. */
static int answer_in(struct worker *w, struct conn *c)
{
    long used = answer(w, c, c->in, c->inlen);

    if (used < 0 || (used == 0 && c->inlen >= HEAD_MAX))
        return -1;
    memmove(c->in, c->in + used, c->inlen - (size_t)used);
    c->inlen -= (uint32_t)used;
    return 0;
}

/*
 * Appends p[0..n) to c->in, which grows to IN_MAX: a multishot recv goes
 * on receiving while a response is sent, so a pipelining client can be
 * ahead by more than one head. -1 if it does not fit.
 */
static int keep_input(struct conn *c, const char *p, size_t n)
{
    if (n > c->incap - c->inlen) {
        size_t cap = c->incap;
        char *in;

        while (cap - c->inlen < n)
            cap *= 2;
        if (cap > IN_MAX || (in = malloc(cap)) == NULL)
            return -1;
        memcpy(in, c->in, c->inlen);
        if (c->in != c->inl)
            free(c->in);
        c->in = in;
        c->incap = (uint32_t)cap;
    }
    memcpy(c->in + c->inlen, p, n);
    c->inlen += (uint32_t)n;
    return 0;
}

static void on_recv(struct worker *w, struct conn *c, struct io_uring_cqe *cqe)
{
    int bad = 0;

    if (!o.ms_recv || !(cqe->flags & IORING_CQE_F_MORE))
        c->armed = 0;
    if (cqe->res > 0 && o.ms_recv) {
        uint16_t id = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        const char *p = w->bufs + (size_t)id * BUFSZ;
        size_t n = (size_t)cqe->res;

        /* The common case answers from the provided buffer itself, no copy. */
        if (c->inlen == 0 && !c->sending && !c->ended) {
            long used = answer(w, c, p, n);

            bad = used < 0 || keep_input(c, p + used, n - (size_t)used) < 0;
        } else {
            bad = keep_input(c, p, n) < 0;
            if (!bad && !c->sending && !c->ended)
                bad = answer_in(w, c) < 0;
        }
        buf_put(w, id);
    } else if (cqe->res > 0) {
        c->inlen += (uint32_t)cqe->res;
        bad = answer_in(w, c) < 0;
    } else if (!(o.ms_recv && cqe->res == -ENOBUFS)) {
        c->ended = 1;
    }
    if (bad)
        c->ended = 1;
    /* Multishot: armed again once the kernel ended it. Single-shot: armed
       again once the response is sent, or now if no head is complete yet. */
    if (!c->armed && !c->ended && !c->sending)
        arm_recv(w, c);
    maybe_close(w, c);
}

static void on_send(struct worker *w, struct conn *c, struct io_uring_cqe *cqe)
{
    c->sending = 0;
    if (c->from != NULL && (cqe->res < 0 || c->soff + (size_t)cqe->res >= c->slen)) {
        c->from->busy--;
        c->from = NULL;
    }
    if (cqe->res < 0) {
        c->ended = 1;
    } else {
        c->soff += (size_t)cqe->res;
        if (c->soff < c->slen) {
            send_rest(w, c);
            return;
        }
        if (!c->ended && c->inlen > 0 && answer_in(w, c) < 0)
            c->ended = 1;
        if (!c->ended && !c->sending && !c->armed)
            arm_recv(w, c);
    }
    maybe_close(w, c);
}

static void on_accept(struct worker *w, struct io_uring_cqe *cqe)
{
    if (cqe->res >= 0) {
        struct conn *c = malloc(sizeof(*c));

        if (c == NULL) {
            if (o.direct) {
                struct io_uring_sqe *s = sqe(w);

                io_uring_prep_close_direct(s, (unsigned)cqe->res);
                io_uring_sqe_set_data64(s, UD_IGNORE);
            } else {
                close(cqe->res);
            }
        } else {
            c->fd = cqe->res;
            c->sending = c->armed = c->ended = c->cancelling = 0;
            c->from = NULL;
            c->in = c->inl;
            c->inlen = 0;
            c->incap = HEAD_MAX;
            c->out = NULL;
            c->outcap = 0;
            arm_recv(w, c);
        }
    }
    if (!o.ms_accept || !(cqe->flags & IORING_CQE_F_MORE))
        arm_accept(w);
}

static int listener(int port)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    int fd, one = 1;

    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4096) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sets up w's ring, buffer ring and file table; 0 or -errno. */
static int setup(struct worker *w)
{
    struct io_uring_params p;
    int ret, i;

    memset(&p, 0, sizeof(p));
    if (o.defer)
        p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (o.coop)
        p.flags |= IORING_SETUP_COOP_TASKRUN;
    ret = io_uring_queue_init_params(RING_SQES, &w->ring, &p);
    if (ret < 0 && o.defer) {
        memset(&p, 0, sizeof(p));
        p.flags = o.coop ? IORING_SETUP_COOP_TASKRUN : 0;
        ret = io_uring_queue_init_params(RING_SQES, &w->ring, &p);
    }
    if (ret < 0)
        return ret;
    if (o.regfd && (ret = io_uring_register_ring_fd(&w->ring)) < 0)
        return ret;
    if (o.direct) {
        struct rlimit rl;
        unsigned n = NFILES;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n)
            n = (unsigned)rl.rlim_cur;
        if ((ret = io_uring_register_files_sparse(&w->ring, n)) < 0)
            return ret;
    }
    if (o.ms_recv) {
        struct io_uring_buf_reg reg = { 0 };
        size_t rsz = NBUFS * sizeof(struct io_uring_buf);

        w->br = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        w->bufs = malloc((size_t)NBUFS * BUFSZ);
        if (w->br == MAP_FAILED || w->bufs == NULL)
            return -ENOMEM;
        io_uring_buf_ring_init(w->br);
        reg.ring_addr = (uint64_t)(uintptr_t)w->br;
        reg.ring_entries = NBUFS;
        reg.bgid = BGID;
        ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
        if (ret < 0)
            return ret;
        for (i = 0; i < NBUFS; i++)
            buf_put(w, (uint16_t)i);
    }
    return 0;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    int ret = setup(w);

    if (ret < 0) {
        fprintf(stderr, "raw_http: io_uring: %s\n", strerror(-ret));
        exit(1);
    }
    w->sec = time(NULL);
    compose(&w->resp[0], w->sec);
    compose(&w->resp[1], w->sec);
    arm_accept(w);
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        time_t now;

        if (o.wait_nr > 1) {
            struct __kernel_timespec ts = { .tv_nsec = o.wait_us * 1000L };

            /* -ETIME (fewer than wait_nr by the deadline) is not an error. */
            io_uring_submit_and_wait_timeout(&w->ring, &cqe, (unsigned)o.wait_nr, &ts, NULL);
        } else {
            io_uring_submit_and_wait(&w->ring, 1);
        }
        /* A new second: the other response gets the new Date, so that a
           send still in flight from the current one is not rewritten; while
           sends from the other one are in flight, the current one serves on. */
        now = time(NULL);
        if (now != w->sec && w->resp[w->cur ^ 1].busy == 0) {
            w->sec = now;
            w->cur ^= 1;
            compose(&w->resp[w->cur], now);
        }
        io_uring_for_each_cqe(&w->ring, head, cqe) {
            uint64_t ud = cqe->user_data;
            struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)UD_KIND);

            n++;
            switch (ud & UD_KIND) {
            case UD_ACCEPT:
                on_accept(w, cqe);
                break;
            case UD_RECV:
                on_recv(w, c, cqe);
                break;
            case UD_SEND:
                on_send(w, c, cqe);
                break;
            case UD_CANCEL:
                c->cancelling = 0;
                maybe_close(w, c);
                break;
            default:
                break; /* a close_direct's own result */
            }
        }
        io_uring_cq_advance(&w->ring, n);
    }
    return NULL;
}

static int flag01(const char *s, int opt)
{
    if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0) {
        fprintf(stderr, "raw_http: -%c takes 0 or 1\n", opt);
        exit(2);
    }
    return s[0] == '1';
}

static void load(const char *path)
{
    const char *dot = strrchr(path, '.');
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t got = 0;

    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(path);
        exit(1);
    }
    body_len = (size_t)st.st_size;
    body = malloc(body_len + 1);
    if (body == NULL) {
        fprintf(stderr, "raw_http: out of memory\n");
        exit(1);
    }
    while (got < body_len) {
        ssize_t r = read(fd, body + got, body_len - got);

        if (r <= 0) {
            perror(path);
            exit(1);
        }
        got += (size_t)r;
    }
    close(fd);
    ctype = dot != NULL && strcmp(dot, ".txt") == 0 ? "text/plain" : "application/octet-stream";
    fmt_date(st.st_mtime, lmod);
}

int main(int argc, char **argv)
{
    struct worker *ws;
    int opt, i;

    while ((opt = getopt(argc, argv, "p:t:r:a:d:c:R:s:W:U:")) != -1) {
        switch (opt) {
        case 'p': o.port = atoi(optarg); break;
        case 't': o.threads = atoi(optarg); break;
        case 'r':
            if (strcmp(optarg, "ms") != 0 && strcmp(optarg, "pf") != 0) {
                fprintf(stderr, "raw_http: -r takes ms or pf\n");
                return 2;
            }
            o.ms_recv = optarg[0] == 'm';
            break;
        case 'a': o.ms_accept = flag01(optarg, opt); break;
        case 'd': o.direct = flag01(optarg, opt); break;
        case 'c': o.coop = flag01(optarg, opt); break;
        case 'R': o.regfd = flag01(optarg, opt); break;
        case 's': o.defer = flag01(optarg, opt); break;
        case 'W': o.wait_nr = atoi(optarg); break;
        case 'U': o.wait_us = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: raw_http [-p PORT] [-t THREADS] [-r ms|pf] [-a 0|1] "
                            "[-d 0|1] [-c 0|1] [-R 0|1] [-s 0|1] [-W N] [-U USEC] FILE\n");
            return 2;
        }
    }
    if (optind != argc - 1 || o.threads < 1 || o.threads > 64 || o.wait_nr < 1 ||
        o.wait_us < 1 || o.wait_us > 999999) {
        fprintf(stderr, "usage: raw_http [-p PORT] [-t THREADS] [-r ms|pf] [-a 0|1] "
                        "[-d 0|1] [-c 0|1] [-R 0|1] [-s 0|1] [-W N] [-U USEC] FILE\n");
        return 2;
    }
    load(argv[optind]);
    /* As many connections as the hard limit lets (the file table of -d 1
       is bounded by the soft one). */
    {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    ws = calloc((size_t)o.threads, sizeof(*ws));
    if (ws == NULL)
        return 1;
    /* Every listener is bound before any thread runs, so that the first
       connection finds them all in the SO_REUSEPORT group. */
    for (i = 0; i < o.threads; i++) {
        ws[i].lfd = listener(o.port);
        if (ws[i].lfd < 0) {
            perror("raw_http: bind");
            return 1;
        }
    }
    for (i = 1; i < o.threads; i++)
        if (pthread_create(&ws[i].tid, NULL, run, &ws[i]) != 0) {
            fprintf(stderr, "raw_http: cannot start a thread\n");
            return 1;
        }
    run(&ws[0]);
    return 0;
}
