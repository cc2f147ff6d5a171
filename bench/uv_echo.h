/* The libuv echo baseline's per-connection state, shared with the bench. */
#ifndef PD_BENCH_UV_ECHO_H
#define PD_BENCH_UV_ECHO_H

#include <uv.h>

struct uv_conn {
    uv_tcp_t handle;
    uv_write_t wreq;
    uv_buf_t wbuf;
    char buf[4096];
};

#endif
