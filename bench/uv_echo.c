/*
 * uv_echo: the echo baseline in libuv, written the way libuv is meant to
 * be used for this.
 *
 *   build/uv_echo PORT          one read buffer shared by every connection
 *   build/uv_echo -a PORT       a buffer allocated in alloc_cb per read
 *
 * Reading never stops. Each read is echoed with uv_try_write first, which
 * usually writes it all at once from the read buffer; only what did not fit
 * is copied into a write request of its own, queued with uv_write and freed
 * when it completes. With one buffer for the whole loop (the default) an
 * idle connection holds nothing but its uv_tcp_t; with -a (the idiom the
 * libuv docs show: allocate in alloc_cb, free once written) each read gets
 * a fresh buffer that is freed after the echo, so an idle connection holds
 * no buffer either. The memory row of make bench measures -a.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

static uv_loop_t *loop;
static int alloc_per_read;
/* The loop runs one callback at a time: one buffer serves every read. */
static char shared_buf[65536];

/* A write request with the bytes uv_try_write left over, in one block. */
struct pending_write {
    uv_write_t req;
    char data[];
};

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    if (alloc_per_read) {
        char *p = malloc(suggested);

        *buf = uv_buf_init(p, p ? (unsigned)suggested : 0); /* 0: UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(shared_buf, sizeof(shared_buf));
}

static void on_write(uv_write_t *req, int status)
{
    if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_close);
    free(req);
}

/* Echoes buf[0..n): in place if the socket takes it all, else via a copy. */
static void echo(uv_stream_t *s, const char *data, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    int w = uv_try_write(s, &b, 1);
    struct pending_write *pw;

    if (w == (int)n)
        return;
    if (w < 0 && w != UV_EAGAIN) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (w < 0)
        w = 0;
    pw = malloc(sizeof(*pw) + n - (size_t)w);
    if (!pw) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    memcpy(pw->data, data + w, n - (size_t)w);
    b = uv_buf_init(pw->data, (unsigned)(n - (size_t)w));
    if (uv_write(&pw->req, s, &b, 1, on_write) < 0) {
        free(pw);
        uv_close((uv_handle_t *)s, on_close);
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n > 0)
        echo(s, buf->base, (size_t)n);
    else if (n < 0 && !uv_is_closing((uv_handle_t *)s))
        uv_close((uv_handle_t *)s, on_close);
    if (alloc_per_read)
        free(buf->base);
}

static void on_conn(uv_stream_t *server, int status)
{
    uv_tcp_t *c;

    if (status < 0)
        return;
    c = malloc(sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(loop, c);
    if (uv_accept(server, (uv_stream_t *)c) == 0)
        uv_read_start((uv_stream_t *)c, on_alloc, on_read);
    else
        uv_close((uv_handle_t *)c, on_close);
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr;
    uv_tcp_t server;
    int r, arg = 1;

    if (argc == 3 && strcmp(argv[1], "-a") == 0) {
        alloc_per_read = 1;
        arg = 2;
    }
    if (argc != arg + 1) {
        fprintf(stderr, "usage: uv_echo [-a] PORT\n");
        return 2;
    }
    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", atoi(argv[arg]), &addr);
    uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    r = uv_listen((uv_stream_t *)&server, 4096, on_conn);
    if (r) {
        fprintf(stderr, "uv_echo: listen: %s\n", uv_strerror(r));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
