/*  bench.h - `amaas bench`, the load generator of the amaas CLI.  */
#ifndef AMAAS_BENCH_H_INCLUDED
#define AMAAS_BENCH_H_INCLUDED

#include "amaas.h"

//  Runs `amaas bench` with its own arguments (argv[0] is "bench"); connect
//  returns a connected client or exits.  Returns the exit status.
int bench_main (amaas_client_t *(*connect) (void), int argc, char *argv[]);

#endif
