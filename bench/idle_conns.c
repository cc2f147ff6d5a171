/*
 * idle_conns: opens N keep-alive connections to an HTTP server on
 * 127.0.0.1, makes one request on each (so that each is a keep-alive
 * connection the server has served, not a fresh one), reads every
 * response, prints "ready" and keeps them open, silent, until its stdin
 * closes. bench/httpd_bench.sh measures the server's RSS meanwhile.
 *
 *   build/idle_conns PORT N PATH
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "idle_conns: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    struct rlimit rl;
    struct pollfd *pfd;
    char req[512], buf[8192];
    int n, port, left;

    if (argc != 4) {
        fprintf(stderr, "usage: idle_conns PORT N PATH\n");
        return 2;
    }
    port = atoi(argv[1]);
    n = atoi(argv[2]);
    if (port <= 0 || port > 65535 || n <= 0) {
        fprintf(stderr, "idle_conns: bad port or count\n");
        return 2;
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 16) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n + 16 ? rl.rlim_max : (rlim_t)n + 16;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", argv[3]);
    pfd = calloc((size_t)n, sizeof(*pfd));
    if (pfd == NULL)
        die("calloc");
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
            die("connect");
        if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
            die("send");
        pfd[i] = (struct pollfd){ .fd = fd, .events = POLLIN };
    }
    /* Each response is small: one read that ends with the body is enough
       to know it came; the content is not checked here. */
    for (left = n; left > 0;) {
        if (poll(pfd, (nfds_t)n, 30000) <= 0)
            die("poll (responses)");
        for (int i = 0; i < n; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            if (recv(pfd[i].fd, buf, sizeof(buf), 0) <= 0)
                die("a connection ended early");
            pfd[i].fd = ~pfd[i].fd; /* ignored by poll from now on */
            left--;
        }
    }
    printf("ready\n");
    fflush(stdout);
    while (read(0, buf, sizeof(buf)) > 0)
        ;
    for (int i = 0; i < n; i++)
        close(~pfd[i].fd);
    free(pfd);
    return 0;
}
