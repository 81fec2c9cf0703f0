/*  compute.h - the worker's compute thread.

    The worker's main thread talks to the broker; the compute thread runs
    the models, so that heartbeats keep flowing while a long batch computes.
    The main thread hands each JOB over as a wrk_job_t pointer on the actor's
    pipe; the compute thread answers every job with exactly one RESULT
    message on the pipe, which the main thread sends on to the broker.  A job
    whose deadline has passed when its turn comes is answered
    DEADLINE_EXCEEDED without being computed.  Jobs for one model that wait
    together are computed as one batch (dynamic batching).
*/
#ifndef AMAAS_COMPUTE_H_INCLUDED
#define AMAAS_COMPUTE_H_INCLUDED

#include <czmq.h>

#include "codec.h"
#include "model.h"

typedef struct {
    uint64_t token;                  //  broker's job token
    char model[CODEC_NAME_MAX];      //  model asked for
    size_t n_outputs;                //  outputs asked for, 0 = all
    char (*outputs)[CODEC_NAME_MAX]; //  their names (owned)
    uint64_t deadline_us;            //  monotonic; 0 = none
    zframe_t *payload;               //  inputs (owned)
} wrk_job_t;

typedef struct {
    model_t **models; //  models served (read-only while the actor runs)
    size_t n_models;
    uint64_t max_elements;    //  largest input tensor, elements
    size_t *max_batch;        //  per model: rows stacked into one run at most (1: no batching)
    uint64_t *batch_delay_us; //  per model: how long to wait for more jobs to stack
    uint64_t computed;        //  jobs whose model ran (written by the compute thread only)
    uint64_t expired;         //  jobs answered DEADLINE_EXCEEDED without compute
    uint64_t batches;         //  model runs
} compute_config_t;

//  New job from a decoded JOB header; takes *payload_p.  NULL on
//  out-of-memory.
wrk_job_t *wrk_job_new (const codec_header_t *header, zframe_t **payload_p, uint64_t now_us);
void wrk_job_destroy (wrk_job_t **self_p);

//  The compute actor (zactor_new (compute_actor, config)): receives
//  wrk_job_t pointers ("p"), takes ownership, sends back RESULT messages.
void compute_actor (zsock_t *pipe, void *config);

#endif
