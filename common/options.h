/*  options.h - command-line helpers shared by the daemons and the CLI.  */
#ifndef AMAAS_OPTIONS_H_INCLUDED
#define AMAAS_OPTIONS_H_INCLUDED

//  Parses option --name's value as an integer in 1..max.  On a bad value,
//  prints "PROGRAM: --name must be an integer in 1..max, not 'value'" and
//  exits with status 2 (a usage error).
long long options_positive (const char *program, const char *name, const char *value,
                            long long max);

//  Parses a --log-level value; on a bad one prints a message and exits 2.
int options_log_level (const char *program, const char *value);

#endif
