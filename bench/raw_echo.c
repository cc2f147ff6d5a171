/*
 * raw_echo: the echo baseline in plain liburing, with the algorithm of the
 * polldrop echo server: one accept in flight; per connection, recv into a
 * 4 KiB buffer, send it all back (resubmitting partial sends), repeat.
 *
 *   build/raw_echo PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_TAG 1u

struct conn {
    int fd;
    int sending;
    size_t n, off;
    char buf[4096];
};

static struct io_uring ring;

static struct io_uring_sqe *sqe(void)
{
    struct io_uring_sqe *s;

    while ((s = io_uring_get_sqe(&ring)) == NULL)
        io_uring_submit(&ring);
    return s;
}

static void submit_accept(int lfd)
{
    struct io_uring_sqe *s = sqe();

    io_uring_prep_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, ACCEPT_TAG);
}

static void submit_recv(struct conn *c)
{
    struct io_uring_sqe *s = sqe();

    c->sending = 0;
    io_uring_prep_recv(s, c->fd, c->buf, sizeof(c->buf), 0);
    io_uring_sqe_set_data(s, c);
}

static void submit_send(struct conn *c)
{
    struct io_uring_sqe *s = sqe();

    c->sending = 1;
    io_uring_prep_send(s, c->fd, c->buf + c->off, c->n - c->off, MSG_NOSIGNAL);
    io_uring_sqe_set_data(s, c);
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    int lfd, one = 1, ret;

    if (argc != 2) {
        fprintf(stderr, "usage: raw_echo PORT\n");
        return 2;
    }
    addr.sin_port = htons((uint16_t)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 4096) < 0) {
        perror("raw_echo: bind");
        return 1;
    }
    ret = io_uring_queue_init(256, &ring,
                              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (ret < 0)
        ret = io_uring_queue_init(256, &ring, 0);
    if (ret < 0) {
        fprintf(stderr, "raw_echo: io_uring: %s\n", strerror(-ret));
        return 1;
    }
    submit_accept(lfd);
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        io_uring_submit_and_wait(&ring, 1);
        io_uring_for_each_cqe(&ring, head, cqe) {
            n++;
            if (cqe->user_data == ACCEPT_TAG) {
                if (cqe->res >= 0) {
                    struct conn *c = malloc(sizeof(*c));

                    c->fd = cqe->res;
                    submit_recv(c);
                }
                submit_accept(lfd);
                continue;
            }
            struct conn *c = io_uring_cqe_get_data(cqe);

            if (cqe->res <= 0) {
                close(c->fd);
                free(c);
            } else if (!c->sending) {
                c->n = (size_t)cqe->res;
                c->off = 0;
                submit_send(c);
            } else {
                c->off += (size_t)cqe->res;
                if (c->off < c->n)
                    submit_send(c);
                else
                    submit_recv(c);
            }
        }
        io_uring_cq_advance(&ring, n);
    }
}
