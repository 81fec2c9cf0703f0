/*  options.c - command-line helpers shared by the daemons and the CLI.  */
#include "options.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

long long options_positive (const char *program, const char *name, const char *value, long long max)
{
    char *end;
    long long n = strtoll (value, &end, 10);
    if (*value == 0 || *end != 0 || n < 1 || n > max) {
        fprintf (stderr, "%s: --%s must be an integer in 1..%lld, not '%s'\n", program, name, max,
                 value);
        exit (2);
    }
    return n;
}

int options_log_level (const char *program, const char *value)
{
    int level = log_level_from_name (value);
    if (level < 0) {
        fprintf (stderr, "%s: --log-level must be error, warn, info or debug, not '%s'\n", program,
                 value);
        exit (2);
    }
    return level;
}
