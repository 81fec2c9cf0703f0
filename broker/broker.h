/*  broker.h - the amaas broker: a single-threaded event loop over two ROUTER
    sockets (clients on the frontend, workers on the backend) and a heartbeat
    timer.  The logic of queues and workers lives in dispatch.h; this module
    moves messages between sockets and the dispatcher.
*/
#ifndef AMAAS_BROKER_H_INCLUDED
#define AMAAS_BROKER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *frontend;       //  client endpoint to bind
    const char *backend;        //  worker endpoint to bind
    const char *endpoints_file; //  if set, write the bound endpoints there
    int heartbeat_ms;           //  heartbeat interval
    int liveness;               //  intervals of silence before a worker is dead
    size_t max_message;         //  largest request accepted, bytes
    size_t max_queue;           //  jobs waiting per model
    uint32_t max_lost;          //  a job lost with this many workers fails
    uint64_t max_elements;      //  (checked by workers; advertised for docs)
} broker_config_t;

//  Fills a config with the defaults.  Cannot fail.
void broker_config_defaults (broker_config_t *config);

//  Runs the broker until SIGINT or SIGTERM.  Returns 0 after a clean
//  shutdown (queued jobs answered UNAVAILABLE), -1 if it could not start
//  (the reason is logged).
int broker_run (const broker_config_t *config);

#endif
