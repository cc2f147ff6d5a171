/* Command-line helpers shared by the example programs. */
#ifndef PD_EXAMPLES_ARGS_H
#define PD_EXAMPLES_ARGS_H

#include <errno.h>
#include <stdlib.h>

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

#endif
