/*  broker.h - the amaas broker: a single-threaded event loop over three
    ROUTER sockets (clients on the frontend, workers on the backend,
    operators on the control endpoint) and its timers.  The logic of queues
    and workers lives in dispatch.h, the per-client caps in admission.h;
    this module moves messages between the sockets and those.
*/
#ifndef AMAAS_BROKER_H_INCLUDED
#define AMAAS_BROKER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"

typedef struct {
    const char *frontend;       //  client endpoint to bind
    const char *backend;        //  worker endpoint to bind
    const char *control;        //  operator endpoint to bind (loopback by default)
    const char *endpoints_file; //  if set, write the bound endpoints there
    int heartbeat_ms;           //  heartbeat interval
    int liveness;               //  intervals of silence before a worker is dead
    size_t max_message;         //  largest request accepted, bytes
    size_t max_queue;           //  jobs waiting per model
    uint32_t max_lost;          //  a job lost with this many workers fails
    auth_config_t auth;         //  security: on when auth.cert is set
    size_t max_client_jobs;     //  jobs one client may have queued or computing
    bool drain;                 //  on SIGTERM: serve the queued jobs before exiting
    int shutdown_grace_ms;      //  on SIGTERM: longest wait for queued and held jobs
    const char *metrics;        //  if set, serve Prometheus metrics on ADDRESS:PORT
} broker_config_t;

//  Fills a config with the defaults.  Cannot fail.
void broker_config_defaults (broker_config_t *config);

//  Runs the broker until SIGINT or SIGTERM.  Then it takes no new job
//  (UNAVAILABLE), answers the queued ones UNAVAILABLE (or, with drain,
//  serves them), waits up to shutdown_grace_ms for the jobs workers hold,
//  answers whatever is left UNAVAILABLE and returns 0.  A second signal cuts
//  the wait short.  Returns -1 if it could not start (the reason is logged).
int broker_run (const broker_config_t *config);

#endif
