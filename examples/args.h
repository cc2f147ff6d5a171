/* Command-line helpers shared by the example programs. */
#ifndef PD_EXAMPLES_ARGS_H
#define PD_EXAMPLES_ARGS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "polldrop.h"

/* Parses a decimal in [min, max] into *out; returns 0, or -1 if it is not one. */
static inline int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/*
 * Parses an engine name, as -e takes it and as the PD_ENGINE variable
 * spells it (auto, uring, epoll, sim), into *out; returns 0, or -1 if it
 * names none.
 */
static inline int parse_engine(const char *s, pd_engine *out)
{
    static const char *const names[] = { "auto", "uring", "epoll", "sim" };
    static const pd_engine engines[] = { PD_ENGINE_AUTO, PD_ENGINE_URING, PD_ENGINE_EPOLL,
                                         PD_ENGINE_SIM };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0) {
            *out = engines[i];
            return 0;
        }
    return -1;
}

/*
 * Parses a numeric IPv4 or IPv6 address (no name lookup) and a port into
 * *ss. Returns the address length, or 0 if host is not such an address.
 */
static inline socklen_t parse_addr(const char *host, long port,
                                   struct sockaddr_storage *ss)
{
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                              .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai;
    char service[8];
    socklen_t len;

    snprintf(service, sizeof(service), "%ld", port);
    if (getaddrinfo(host, service, &hints, &ai) != 0)
        return 0;
    len = ai->ai_addrlen;
    memcpy(ss, ai->ai_addr, len);
    freeaddrinfo(ai);
    return len;
}

/* "127.0.0.1:7777" or "[::1]:7777", as a client would write it. */
static inline void format_addr(const struct sockaddr_storage *ss, char *buf,
                               size_t len)
{
    char host[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%d", host, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%d", host, ntohs(a->sin_port));
    }
}

#endif
