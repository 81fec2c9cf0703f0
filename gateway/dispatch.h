/*  dispatch.h - the gateway's dispatcher: the one thread that talks to the
    broker.

    libamaas clients are not thread-safe, so one thread owns them all: one
    client per API-key name (or one for every caller when keys are off),
    connected on first use, so that the broker's per-client fair share and
    ACL apply to each key.  HTTP handlers hand it jobs (a mutex-guarded
    queue and an eventfd to wake it); it sends them, waits in poll(2) on
    the eventfd and every client's amaas_fd, looks at the sockets of the
    HTTP connections waiting every 100 ms (a caller that hangs up gets its
    job cancelled), and hands each result back through the job's done
    callback.

    A second thread keeps the broker's model list (amaas_models) on a
    client of its own, refreshed every second: metadata, readiness and the
    Flask route's input name read that cache.
*/
#ifndef AMAAS_GATEWAY_DISPATCH_H_INCLUDED
#define AMAAS_GATEWAY_DISPATCH_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amaas.h"

typedef struct dispatch_t dispatch_t;
typedef struct dispatch_job_t dispatch_job_t;

//  Called on the dispatcher thread when a job is finished: job->result or
//  job->error is set.  The job belongs to its submitter again.
typedef void (dispatch_done_fn) (dispatch_job_t *job);

//  One inference job.  The submitter fills the request part and keeps the
//  job (and what it points to) alive until done is called.
struct dispatch_job_t {
    //  request, set by the submitter
    size_t client;                //  index of the client (dispatch_client_index)
    const char *model;            //  model name
    const amaas_tensor_t *inputs; //  inputs
    size_t n_inputs;
    amaas_options_t options; //  deadline, priority, version
    int fd;                  //  the caller's socket, watched for hang-up (-1: none)
    dispatch_done_fn *done;  //  called once when finished
    void *arg;               //  the submitter's
    //  answer, set by the dispatcher
    amaas_result_t *result; //  the result (owned by the job's submitter now), or NULL
    amaas_error_t error;    //  why there is no result (result NULL)
    bool hung_up;           //  the caller hung up: the job was cancelled
    //  dispatcher's bookkeeping
    uint64_t id;                 //  libamaas job id, 0 before sending
    dispatch_job_t *next, *prev; //  in the queue or the in-flight list
};

//  A model as the broker lists it, all versions together.
typedef struct {
    amaas_model_info_t *models; //  every model and version, grouped by name
    size_t n_models;
    bool ok;         //  the broker answered
    char error[320]; //  why not
} dispatch_models_t;

//  Settings of the broker connections
typedef struct {
    const char *endpoint;    //  broker frontend
    int timeout_ms;          //  connect and default job timeout
    const char *server_key;  //  CURVE: broker's public certificate, or NULL
    const char **certs;      //  CURVE: key pair of each client (NULL each: plain)
    size_t n_clients;        //  clients (API-key names, or 1)
    const char *models_cert; //  CURVE key pair of the model-list client, or NULL
} dispatch_config_t;

//  Starts the dispatcher and model-list threads.  config->certs is copied.
//  NULL on error, logged.
dispatch_t *dispatch_new (const dispatch_config_t *config);

//  Stops the threads: the jobs still queued or in flight finish at once
//  with UNAVAILABLE ("the gateway is stopping"; wait for dispatch_in_flight
//  to reach 0 first to answer them properly), then closes the clients and
//  frees everything.  Nulls *self_p.  Cannot fail.
void dispatch_destroy (dispatch_t **self_p);

//  Hands a job to the dispatcher (any thread).  Cannot fail: a job that
//  cannot be sent finishes with an error.
void dispatch_submit (dispatch_t *self, dispatch_job_t *job);

//  Jobs submitted and not yet done.  Cannot fail.
size_t dispatch_in_flight (dispatch_t *self);

//  A copy of the model list (freed with dispatch_models_free), at most
//  about a second old; waits up to wait_ms for the first one.  Cannot fail
//  (on out-of-memory, ok is false with a message).
void dispatch_models (dispatch_t *self, int wait_ms, dispatch_models_t *out);
void dispatch_models_free (dispatch_models_t *models);

//  The name of model `name`'s input tensor (of `version`, or of its highest
//  version when version is NULL) as the last model list has it, copied to
//  input; "input" when the list does not know the model or has no name for
//  its input.  Waits up to wait_ms for the first list.  Cannot fail.
void dispatch_model_input (dispatch_t *self, const char *name, const char *version, int wait_ms,
                           char *input, size_t size);

#endif
