/*  control.h - operator commands of the amaas CLI (status, workers, drain,
    shutdown) on the broker's control endpoint.  */
#ifndef AMAAS_CLI_CONTROL_H_INCLUDED
#define AMAAS_CLI_CONTROL_H_INCLUDED

//  Runs `amaas COMMAND ...` (argv[0] is the command) against the control
//  endpoint.  Returns the exit status.
int control_main (const char *endpoint, int timeout_ms, const char *server_cert, const char *cert,
                  int argc, char *argv[]);

#endif
