/*
 * uv_echo: the echo baseline in libuv: per connection, read into a 4 KiB
 * buffer, write it back, and stop reading until the write completed (the
 * same one-request-at-a-time algorithm as the other two servers).
 *
 *   build/uv_echo PORT
 */
#include <stdio.h>
#include <stdlib.h>

#include "uv_echo.h"

static uv_loop_t *loop;

static void on_close(uv_handle_t *h)
{
    free(h->data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct uv_conn *c = h->data;

    (void)suggested;
    *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct uv_conn *c = req->data;

    if (status < 0) {
        uv_close((uv_handle_t *)&c->handle, on_close);
        return;
    }
    uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct uv_conn *c = s->data;

    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n == 0)
        return;
    uv_read_stop(s);
    c->wbuf = uv_buf_init(buf->base, (unsigned)n);
    c->wreq.data = c;
    uv_write(&c->wreq, s, &c->wbuf, 1, on_write);
}

static void on_conn(uv_stream_t *server, int status)
{
    struct uv_conn *c;

    if (status < 0)
        return;
    c = malloc(sizeof(*c));
    uv_tcp_init(loop, &c->handle);
    c->handle.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->handle) == 0)
        uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read);
    else
        uv_close((uv_handle_t *)&c->handle, on_close);
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr;
    uv_tcp_t server;
    int r;

    if (argc != 2) {
        fprintf(stderr, "usage: uv_echo PORT\n");
        return 2;
    }
    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    r = uv_listen((uv_stream_t *)&server, 4096, on_conn);
    if (r) {
        fprintf(stderr, "uv_echo: listen: %s\n", uv_strerror(r));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
