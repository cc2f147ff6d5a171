/*
 * raw_echo_ms: the multishot echo baseline in plain liburing, written as
 * an expert would, with nothing polldrop needs and it does not: one
 * multishot accept; per connection one multishot recv on one shared
 * provided-buffer ring (4096 buffers of 4 KiB, like echo_server's
 * defaults); each buffer received is sent back with an io_uring send and
 * returned to the ring when the send is done. A connection has at most one
 * send in flight (two could complete out of order); buffers received
 * meanwhile wait in order on a per-connection queue threaded through a
 * table indexed by buffer id. A recv the kernel ended (-ENOBUFS: the ring
 * ran dry) is armed again at once; one that saw end of stream or an error
 * closes the connection once its sends are done.
 *
 *   build/raw_echo_ms PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define NBUFS 4096
#define BUFSZ 4096
#define BGID 0
#define NONE 0xffffu

/* user_data: a conn pointer, low bits the kind of request. */
#define UD_ACCEPT 1u
#define UD_RECV 0u
#define UD_SEND 2u

struct conn {
    int fd;
    int sending;      /* a send is in flight */
    int ended;        /* end of stream or error: close once sends are done */
    int armed;        /* the multishot recv may still post */
    uint16_t head, tail; /* buffers waiting to be sent, by id */
    uint32_t off;     /* bytes of the head buffer already sent */
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static uint32_t blen[NBUFS];   /* bytes received into each buffer */
static uint16_t bnext[NBUFS];  /* the queue a buffer waits on */

static struct io_uring_sqe *sqe(void)
{
    struct io_uring_sqe *s;

    while ((s = io_uring_get_sqe(&ring)) == NULL)
        io_uring_submit(&ring);
    return s;
}

static void buf_put(uint16_t id)
{
    io_uring_buf_ring_add(br, bufs + (size_t)id * BUFSZ, BUFSZ, id,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(br, 1);
}

static void arm_accept(int lfd)
{
    struct io_uring_sqe *s = sqe();

    io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, UD_ACCEPT);
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *s = sqe();

    io_uring_prep_recv(s, c->fd, NULL, 0, 0);
    s->ioprio |= IORING_RECV_MULTISHOT;
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = BGID;
    io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)c | UD_RECV);
    c->armed = 1;
}

static void send_head(struct conn *c)
{
    struct io_uring_sqe *s = sqe();
    uint16_t id = c->head;

    io_uring_prep_send(s, c->fd, bufs + (size_t)id * BUFSZ + c->off, blen[id] - c->off,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)c | UD_SEND);
    c->sending = 1;
}

/* Closes c once nothing of it is in flight. */
static void maybe_close(struct conn *c)
{
    if (c->ended && !c->sending && !c->armed) {
        while (c->head != NONE) {
            uint16_t id = c->head;

            c->head = bnext[id];
            buf_put(id);
        }
        close(c->fd);
        free(c);
    }
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->armed = 0;
    if (cqe->res > 0) {
        uint16_t id = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

        blen[id] = (uint32_t)cqe->res;
        bnext[id] = NONE;
        if (c->tail == NONE)
            c->head = id;
        else
            bnext[c->tail] = id;
        c->tail = id;
        if (!c->sending)
            send_head(c);
    } else if (cqe->res != -ENOBUFS) {
        c->ended = 1;
    }
    if (!c->armed && !c->ended)
        arm_recv(c);
    maybe_close(c);
}

static void on_send(struct conn *c, struct io_uring_cqe *cqe)
{
    uint16_t id = c->head;

    c->sending = 0;
    if (cqe->res < 0) {
        c->ended = 1;
        if (c->armed) {
            struct io_uring_sqe *s = sqe();

            io_uring_prep_cancel64(s, (uint64_t)(uintptr_t)c | UD_RECV, 0);
            io_uring_sqe_set_data64(s, 0);
        }
        maybe_close(c);
        return;
    }
    c->off += (uint32_t)cqe->res;
    if (c->off < blen[id]) {
        send_head(c);
        return;
    }
    c->off = 0;
    c->head = bnext[id];
    if (c->head == NONE)
        c->tail = NONE;
    buf_put(id);
    if (c->head != NONE)
        send_head(c);
    maybe_close(c);
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    struct io_uring_buf_reg reg = { 0 };
    int lfd, one = 1, ret, i;
    size_t rsz = NBUFS * sizeof(struct io_uring_buf);

    if (argc != 2) {
        fprintf(stderr, "usage: raw_echo_ms PORT\n");
        return 2;
    }
    addr.sin_port = htons((uint16_t)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 4096) < 0) {
        perror("raw_echo_ms: bind");
        return 1;
    }
    ret = io_uring_queue_init(256, &ring,
                              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (ret < 0)
        ret = io_uring_queue_init(256, &ring, 0);
    if (ret < 0) {
        fprintf(stderr, "raw_echo_ms: io_uring: %s\n", strerror(-ret));
        return 1;
    }
    br = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    bufs = malloc((size_t)NBUFS * BUFSZ);
    if (br == MAP_FAILED || bufs == NULL) {
        fprintf(stderr, "raw_echo_ms: out of memory\n");
        return 1;
    }
    io_uring_buf_ring_init(br);
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = NBUFS;
    reg.bgid = BGID;
    ret = io_uring_register_buf_ring(&ring, &reg, 0);
    if (ret < 0) {
        fprintf(stderr, "raw_echo_ms: buffer ring: %s\n", strerror(-ret));
        return 1;
    }
    for (i = 0; i < NBUFS; i++)
        buf_put((uint16_t)i);
    arm_accept(lfd);
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        io_uring_submit_and_wait(&ring, 1);
        io_uring_for_each_cqe(&ring, head, cqe) {
            uint64_t ud = cqe->user_data;
            struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)3);

            n++;
            if (ud == UD_ACCEPT) {
                if (cqe->res >= 0) {
                    c = malloc(sizeof(*c));
                    if (c == NULL) {
                        close(cqe->res);
                    } else {
                        *c = (struct conn){ .fd = cqe->res, .head = NONE, .tail = NONE };
                        arm_recv(c);
                    }
                }
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    arm_accept(lfd);
            } else if (ud == 0) {
                continue; /* a cancel's own result */
            } else if ((ud & 3) == UD_SEND) {
                on_send(c, cqe);
            } else {
                on_recv(c, cqe);
            }
        }
        io_uring_cq_advance(&ring, n);
    }
}
