/*  options.c - command-line helpers shared by the daemons and the CLI.

    Each helper checks one option or the config file and, on a bad one,
    prints a message that names the program and the option, and returns an
    error: the caller's main() exits (with 2, a usage error).  No helper
    exits the process.
*/
#include "options.h"

#include <assert.h>
#include <czmq.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "log.h"

long long options_positive (const char *program, const char *name, const char *value, long long max)
{
    assert (program && name && value);
    char *end;
    long long n = strtoll (value, &end, 10);
    if (*value == 0 || *end != 0 || n < 1 || n > max) {
        fprintf (stderr, "%s: --%s must be an integer in 1..%lld, not '%s'\n", program, name, max,
                 value);
        return -1;
    }
    return n;
}

int options_log_level (const char *program, const char *value)
{
    assert (program && value);
    int level = log_level_from_name (value);
    if (level < 0) {
        fprintf (stderr, "%s: --log-level must be error, warn, info or debug, not '%s'\n", program,
                 value);
        return -1;
    }
    return level;
}

//  The argv options_with_config made, kept for the life of the process.
//  Nothing reads it: volatile, so that the compiler keeps the store and
//  LeakSanitizer sees the argv and its strings as still reachable.
static char **volatile s_config_args;

char **options_with_config (const char *program, const char *section, int *argc_p, char **argv)
{
    assert (program && section && argc_p && argv);
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
        return NULL;
    }
    zconfig_t *root = zconfig_load (path);
    if (!root) {
        fprintf (stderr, "%s: %s is not a valid config file (zconfig format)\n", program, path);
        return NULL;
    }
    //  The new argv and its strings (copies: the tree goes) stay for the
    //  life of the process, as the option values
    zconfig_t *settings = zconfig_locate (root, section);
    size_t count = 0;
    for (zconfig_t *s = settings ? zconfig_child (settings) : NULL; s; s = zconfig_next (s))
        count++;
    char **args = calloc (2 * count + (size_t)argc + 1, sizeof (char *));
    int n = 0;
    if (!args)
        goto nomem;
    args[n++] = argv[0];
    for (zconfig_t *s = settings ? zconfig_child (settings) : NULL; s; s = zconfig_next (s)) {
        const char *value = zconfig_value (s);
        if (value && strcmp (value, "false") == 0)
            continue; //  a flag switched off: as if not given
        if (!(args[n++] = zsys_sprintf ("--%s", zconfig_name (s))))
            goto nomem;
        if (!value || strcmp (value, "true") != 0)
            if (!(args[n++] = strdup (value ? value : "")))
                goto nomem;
    }
    //  Then the command line, which wins over the file
    for (int i = 1; i < argc; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    *argc_p = n;
    zconfig_destroy (&root);
    s_config_args = args;
    return args;
nomem:
    fprintf (stderr, "%s: out of memory reading %s\n", program, path);
    for (int i = 1; args && i < n; i++)
        free (args[i]);
    free (args);
    zconfig_destroy (&root);
    return NULL;
}
