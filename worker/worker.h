/*  worker.h - the amaas worker: holds models in memory and computes the jobs
    the broker sends it.

    Two threads: the I/O thread holds a DEALER socket to the broker's
    backend and a heartbeat timer; the compute thread (compute.h) runs the
    models (model.h), so that heartbeats flow during a long batch.  The
    worker announces its models and
    its credit with READY, answers each JOB with exactly one RESULT,
    heartbeats, and when the broker goes silent reconnects with backoff and
    registers again.
*/
#ifndef AMAAS_WORKER_H_INCLUDED
#define AMAAS_WORKER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *broker;       //  broker backend endpoint
    const char *models_dir;   //  folder of .amm files
    const char *server_cert;  //  CURVE: the broker's public certificate, or NULL
    const char *cert;         //  CURVE: our key pair (public file; secret in FILE_secret)
    int heartbeat_ms;         //  heartbeat interval (same as the broker's)
    int liveness;             //  silent intervals before the broker is dead
    uint32_t credit;          //  jobs the worker may hold at once
    uint64_t max_elements;    //  largest input tensor, elements
    size_t max_batch;         //  rows stacked into one model run at most (1: no batching)
    uint64_t batch_delay_us;  //  how long to wait for more jobs to stack
    const char **model_batch; //  per-model overrides "NAME=ROWS[:DELAY_US]", NULL-terminated
    size_t max_message;       //  largest message accepted, bytes
} worker_config_t;

//  Fills a config with the defaults.  Cannot fail.
void worker_config_defaults (worker_config_t *config);

//  Loads the models and serves until SIGINT or SIGTERM.  Returns 0 after a
//  clean exit, -1 if it could not start (no model loaded, bad endpoint; the
//  reason is logged).
int worker_run (const worker_config_t *config);

#endif
