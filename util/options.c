/*  options.c - command-line helpers shared by the daemons and the CLI.  */
#include "options.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>
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

char **options_with_config (const char *program, const char *section, int *argc_p, char **argv)
{
    int argc = *argc_p;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[i + 1];
        else if (strncmp (argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    if (!path)
        return argv;
    if (!zsys_file_exists (path)) {
        fprintf (stderr, "%s: cannot read config file %s\n", program, path);
        exit (2);
    }
    //  The tree and the new argv stay for the life of the process: their
    //  strings are the option values
    static zconfig_t *root;
    static char **args;
    root = zconfig_load (path);
    zconfig_t *settings = root ? zconfig_locate (root, section) : NULL;
    if (!root) {
        fprintf (stderr, "%s: %s is not a valid config file (zconfig format)\n", program, path);
        exit (2);
    }
    size_t count = 0;
    for (zconfig_t *s = settings ? zconfig_child (settings) : NULL; s; s = zconfig_next (s))
        count++;
    args = calloc (2 * count + (size_t)argc + 1, sizeof (char *));
    int n = 0;
    args[n++] = argv[0];
    for (zconfig_t *s = settings ? zconfig_child (settings) : NULL; s; s = zconfig_next (s)) {
        const char *value = zconfig_value (s);
        if (value && strcmp (value, "false") == 0)
            continue; //  a flag switched off: as if not given
        args[n++] = zsys_sprintf ("--%s", zconfig_name (s));
        if (!value || strcmp (value, "true") != 0)
            args[n++] = (char *)(value ? value : "");
    }
    //  Then the command line, which wins over the file
    for (int i = 1; i < argc; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    *argc_p = n;
    return args;
}
