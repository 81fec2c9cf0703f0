/*  options.h - command-line helpers shared by the daemons and the CLI.  */
#ifndef AMAAS_OPTIONS_H_INCLUDED
#define AMAAS_OPTIONS_H_INCLUDED

//  Parses option --name's value as an integer in 1..max.  On a bad value,
//  prints "PROGRAM: --name must be an integer in 1..max, not 'value'" and
//  returns -1 (main then exits 2, a usage error).
long long options_positive (const char *program, const char *name, const char *value,
                            long long max);

//  The arguments a config file stands for.  The file is in czmq's zconfig
//  format (rfc.zeromq.org/spec:4/ZPL); every setting under the top-level
//  section `section` becomes its command-line flag: "max-queue = 100"
//  gives "--max-queue" "100", "drain = true" gives "--drain".  So every flag
//  is a setting and the file needs no documentation of its own.  Looks for
//  "--config FILE" in argv; without it returns argv itself.  Returns a new
//  argv (program name first; strings live as long as the process) with
//  *argc_p updated, or NULL with a message printed if the file cannot be
//  read (or on out-of-memory).
char **options_with_config (const char *program, const char *section, int *argc_p, char **argv);

//  Parses a --log-level value into a log_level_t; on a bad one prints a
//  message and returns -1.
int options_log_level (const char *program, const char *value);

#endif
