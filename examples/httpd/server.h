/*
 * httpd's server as a function, so that the tests can run it in a child
 * process of their own (built plain or with the sanitizers) and the
 * program is only its command line.
 */
#ifndef HTTPD_SERVER_H
#define HTTPD_SERVER_H

typedef struct httpd_opts {
    const char *host;        /* IPv4 or IPv6 address to bind */
    const char *root;        /* directory served */
    const char *cc;          /* TCP congestion control of the listeners, which every
                                connection inherits (-T); NULL: the system's */
    long port;               /* 0 picks a free one */
    long threads;
    long max_conns;
    long long drain_ms, header_ms, idle_ms, send_ms, linger_ms;
    int body;                /* HTTP_BODY_*: how bodies larger than a buffer go out */
    long cache_entries;      /* each thread's response cache (http.h); 0: off */
    long long cache_valid_ms; /* how long a cached file answers without an open */
    int quiet;
    int engine;              /* a pd_engine: PD_ENGINE_AUTO (0) lets PD_ENGINE choose */
    int ready_fd;            /* if >= 0, the port (an int) is written here once listening */
} httpd_opts;

/* How large bodies go out by default: HTTP_BODY_SPLICE (http.h). */
#define HTTPD_BODY 1

/* The defaults of the command line. */
void httpd_defaults(httpd_opts *o);

/*
 * Serves until SIGINT or SIGTERM, then drains every thread. Blocks both
 * signals in the calling thread (the threads it starts inherit the mask).
 * Returns the process's exit status: 0 when every thread drained with 0 ops
 * in flight, no connection left and as many descriptors open as before; 1
 * otherwise (the reason is printed).
 */
int httpd_run(const httpd_opts *o);

#endif /* HTTPD_SERVER_H */
