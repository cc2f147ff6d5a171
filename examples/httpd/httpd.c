/*
 * httpd: an HTTP/1.1 static file server written as polldrop specs.
 *
 *   build/httpd [-p PORT] [-a ADDR] [-r ROOT] [-t THREADS] [-d DRAIN_MS]
 *               [-H HEADER_MS] [-k IDLE_MS] [-S SEND_MS] [-m MAX_CONNS]
 *               [-L copy|splice|sendfile] [-C ENTRIES] [-V VALID_MS] [-T ALGO] [-e ENGINE] [-q]
 *
 * The command line; the server is server.c, the protocol http.c, the I/O
 * the specs http_accept, http_conn and http_drain. Exits 0 after a drain
 * with 0 ops in flight on every thread's ring.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../args.h"
#include "http.h"
#include "server.h"

static const char *const body_modes[] = { "copy", "splice", "sendfile" };

/*
 * 0 if this process may give a TCP socket the congestion control cc, else
 * -errno: -ENOENT for an algorithm the kernel does not have, -EPERM for
 * one it does not allow this process. Asked of a socket of its own, so
 * that a bad -T is refused before anything listens.
 */
static int cc_allowed(const char *cc)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP), err = 0;

    if (fd < 0)
        return -errno;
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc)) < 0)
        err = -errno;
    close(fd);
    return err;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: httpd [-p PORT] [-a ADDR] [-r ROOT] [-t THREADS] [-d DRAIN_MS]\n"
            "             [-H HEADER_MS] [-k IDLE_MS] [-S SEND_MS] [-m MAX_CONNS]\n"
            "             [-L copy|splice|sendfile] [-C ENTRIES] [-V VALID_MS] [-T ALGO] [-e ENGINE] [-q]\n"
            "  -p PORT       TCP port (default 8080; 0 picks a free one)\n"
            "  -a ADDR       IPv4 or IPv6 address to bind (default 127.0.0.1)\n"
            "  -r ROOT       directory served (default .)\n"
            "  -t THREADS    threads, one runtime and listener each (default 1)\n"
            "  -d DRAIN_MS   on SIGINT/SIGTERM, time left to requests in progress\n"
            "                before the rest is cut (default 5000)\n"
            "  -H HEADER_MS  time to receive a request's head and body (default 10000)\n"
            "  -k IDLE_MS    keep-alive idle time (default 5000)\n"
            "  -S SEND_MS    longest wait for a send to make progress, or for a read\n"
            "                of the file; then the connection is closed (default 60000)\n"
            "  -m MAX_CONNS  connections served at once (default 10000)\n"
            "  -L MODE       bodies of 64 KiB or more: copy (read into the 8 KiB buffer\n"
            "                and send), splice (file to pipe to socket, by the\n"
            "                thread) or sendfile (by the thread); default %s\n"
            "  -C ENTRIES    files of up to %u bytes kept in each thread's cache\n"
            "                (default %d; 0: no cache)\n"
            "  -V VALID_MS   a cached file answers for this long after it was opened;\n"
            "                then it is opened again (default %d; 0: no cache)\n"
            "  -T ALGO       TCP congestion control of the connections (reno,\n"
            "                bbr, cubic, ...: one the system allows; default the\n"
            "                system's)\n"
            "  -e ENGINE     what runs the requests: auto (the default: io_uring, or\n"
            "                epoll where io_uring is switched off; the PD_ENGINE\n"
            "                variable may choose), uring, epoll or sim\n"
            "  -q            print nothing but errors\n", body_modes[HTTPD_BODY],
            HTTP_CACHE_BODY, HTTP_CACHE_ENTRIES, HTTP_CACHE_VALID_MS);
}

int main(int argc, char **argv)
{
    httpd_opts o;
    long threads, drain_ms, header_ms, idle_ms, send_ms, valid_ms;
    int opt;

    httpd_defaults(&o);
    threads = o.threads;
    drain_ms = o.drain_ms;
    header_ms = o.header_ms;
    idle_ms = o.idle_ms;
    send_ms = o.send_ms;
    valid_ms = (long)o.cache_valid_ms;
    while ((opt = getopt(argc, argv, "p:a:r:t:d:H:k:S:m:L:C:V:T:e:qh")) != -1) {
        long *dst = NULL, lo = 1, hi = INT_MAX;

        switch (opt) {
        case 'p': dst = &o.port, lo = 0, hi = 65535; break;
        case 't': dst = &threads, hi = 1024; break;
        case 'd': dst = &drain_ms, lo = 0; break;
        case 'H': dst = &header_ms; break;
        case 'k': dst = &idle_ms; break;
        case 'S': dst = &send_ms; break;
        case 'm': dst = &o.max_conns, hi = LONG_MAX; break;
        case 'C': dst = &o.cache_entries, lo = 0, hi = 1L << 20; break;
        case 'V': dst = &valid_ms, lo = 0; break;
        case 'a': o.host = optarg; break;
        case 'r': o.root = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'T': {
            int err = cc_allowed(optarg);

            if (err < 0) {
                fprintf(stderr, "httpd: bad value '%s' for -T: %s\n", optarg, strerror(-err));
                return 2;
            }
            o.cc = optarg;
            break;
        }
        case 'L':
            o.body = -1;
            for (int i = 0; i < (int)(sizeof(body_modes) / sizeof(body_modes[0])); i++)
                if (strcmp(optarg, body_modes[i]) == 0)
                    o.body = i;
            if (o.body < 0) {
                fprintf(stderr, "httpd: bad value '%s' for -L (copy, splice or sendfile)\n", optarg);
                return 2;
            }
            break;
        case 'e': {
            pd_engine e;

            if (parse_engine(optarg, &e) < 0) {
                fprintf(stderr, "httpd: bad value '%s' for -e (auto, uring, epoll or sim)\n",
                        optarg);
                return 2;
            }
            o.engine = (int)e;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (dst != NULL && parse_long(optarg, lo, hi, dst) < 0) {
            fprintf(stderr, "httpd: bad value '%s' for -%c (%ld-%ld)\n", optarg, opt, lo, hi);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    o.threads = threads;
    o.drain_ms = drain_ms;
    o.header_ms = header_ms;
    o.idle_ms = idle_ms;
    o.send_ms = send_ms;
    o.cache_valid_ms = valid_ms;
    return httpd_run(&o);
}
