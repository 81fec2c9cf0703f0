/*  dispatch.h - the broker's jobs, per-model queues and worker registry.

    This is the broker's logic without sockets.  A job arrives and waits in
    its model's bounded FIFO queue until a worker that serves the model has
    free credit (it holds fewer jobs than the credit it announced).  Then
    dispatch_pump pairs it with the least-loaded such worker (fewest jobs
    held; on a tie, the one that was given a job longest ago) and hands the
    pair to a send callback.  The registry remembers which worker holds which
    job: when a worker leaves or dies, its jobs go back to the front of their
    queues, or fail when they have already been lost with too many workers or
    when no worker serves their model any more.

    A model has versions, side by side, each with its workers and queue; a
    job that names no version goes to the highest one served.

    Every job ends in exactly one of: completed (dispatch_complete returns it),
    failed (handed back in a list with a code and a message).  The caller
    answers the client and destroys the job.

    Jobs come from a pool and sit in intrusive lists: in the steady state,
    a job that is queued, dispatched and completed allocates nothing.
*/
#ifndef AMAAS_DISPATCH_H_INCLUDED
#define AMAAS_DISPATCH_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include "codec.h"

typedef struct dispatch_t dispatch_t;
typedef struct broker_model_t broker_model_t;
typedef struct broker_worker_t broker_worker_t;

//  Intrusive doubly linked lists: an item holds its own link, so putting it
//  in a list or taking it out allocates nothing.  A list is circular around
//  its head; an item is in at most one list through a given link.
typedef struct dispatch_link_t {
    struct dispatch_link_t *prev, *next;
} dispatch_link_t;

typedef struct {
    dispatch_link_t head;
    size_t size;
} dispatch_list_t;

#define DISPATCH_IDENTITY_MAX 255 //  bytes of a ROUTER identity at most
#define DISPATCH_MODEL_KEY_MAX (CODEC_NAME_MAX + CODEC_VERSION_MAX + 24) //  "LEN:NAMEVERSION"

typedef struct {
    uint64_t token;                        //  broker's own id of the job, unique
    uint64_t id;                           //  client's job id
    uint64_t session;                      //  client's session, 0 if it sent none
    uint64_t principal;                    //  hash of the client's key; 0 without security
    uint8_t client[DISPATCH_IDENTITY_MAX]; //  client's ROUTER identity
    size_t client_size;                    //  its bytes; 0 if none
    zmq_msg_t payload;                     //  inputs, forwarded untouched (owned)
    bool has_payload;                      //  whether payload holds inputs
    void *owner;                           //  the caller's record of the client, or NULL
    char model[CODEC_NAME_MAX];            //  model name
    char version[CODEC_VERSION_MAX];       //  version queued for or sent to
    bool pinned;                           //  the client asked for that version
    size_t n_outputs;                      //  outputs asked for, 0 = all
    char (*outputs)[CODEC_NAME_MAX];       //  their names (owned; only when asked for)
    uint64_t received_us;                  //  when the broker received it
    uint64_t dispatched_us;                //  when it was last sent to a worker
    uint32_t lost;                         //  workers lost while holding it
    uint32_t priority;                     //  0 .. CODEC_PRIORITIES-1, higher first
    uint64_t deadline_us;                  //  answer DEADLINE_EXCEEDED after this; 0: none
    broker_worker_t *worker;               //  worker holding it, or NULL if queued
    amaas_code_t fail_code;                //  when failed: why
    char fail_message[CODEC_MESSAGE_MAX];
} broker_job_t;

//  One version of a model: the workers that serve it and its queue.  It
//  exists while a worker serves it or jobs wait for it.
struct broker_model_t {
    char name[CODEC_NAME_MAX];               //  model name
    char version[CODEC_VERSION_MAX];         //  its version
    char key[DISPATCH_MODEL_KEY_MAX];        //  name and version, the table key
    uint32_t width;                          //  input width its first worker announced
    uint64_t mapped;                         //  bytes of its file a worker maps
    dispatch_list_t turns[CODEC_PRIORITIES]; //  per priority: the lanes with jobs, in turn
    zhashx_t *lane_of;                       //  lanes by priority and client identity
    size_t queued;                           //  jobs in all its queues
    zlistx_t *workers;                       //  broker_worker_t * that serve it
};

struct broker_worker_t {
    char key[2 * 255 + 1];     //  hex of the ROUTER identity (at most 255 bytes)
    zframe_t *identity;        //  ROUTER identity (owned)
    uint32_t credit;           //  jobs it may hold
    uint32_t pid;              //  its process id
    char host[CODEC_HOST_MAX]; //  its host name
    dispatch_list_t jobs;      //  jobs it holds, in the order given
    size_t n_models;           //  models it serves
    broker_model_t **models;   //  them
    uint64_t done;             //  jobs it completed
    uint64_t last_given;       //  dispatch sequence number of its last job
    int64_t expires_ms;        //  declared dead after this time without a message
    int64_t seen_ms;           //  when its last message came
    uint32_t model_errors;     //  model files it failed to load, as it reported
    bool draining;             //  finishing its jobs, taking no new one
};

//  Send callback of dispatch_pump: send `job` to `worker`.  Return 0, or -1
//  if it could not be sent (the job then stays queued).
typedef int (dispatch_send_fn) (broker_job_t *job, broker_worker_t *worker, void *arg);

//  New dispatcher.  max_queue bounds each model's queue; a job lost with
//  max_lost workers fails UNAVAILABLE.  NULL on out-of-memory.
dispatch_t *dispatch_new (size_t max_queue, uint32_t max_lost);

//  Free the dispatcher, its workers and every job it holds.  Nulls *self_p.
void dispatch_destroy (dispatch_t **self_p);

//  New job with a fresh token, from the dispatcher's pool: in the steady
//  state no job allocates.  Copies the client identity (may be NULL), moves
//  *payload into the job (payload may be NULL).  NULL on out-of-memory.
broker_job_t *dispatch_job_new (dispatch_t *self, uint64_t id, const codec_header_t *request,
                                const void *client, size_t client_size, zmq_msg_t *payload,
                                uint64_t now_us);

//  Give a job back to its dispatcher's pool (which must still exist).
void dispatch_job_destroy (broker_job_t **job_p);

//  Iterate over the jobs a worker holds (no change meanwhile); NULL at the end.
broker_job_t *dispatch_held_first (broker_worker_t *worker);
broker_job_t *dispatch_held_next (broker_worker_t *worker, broker_job_t *job);

//  Register a worker from its READY header, or, for a worker already
//  registered, update the models it serves (a hot reload): the jobs it
//  holds stay with it.  A model version that another worker serves with
//  another input width is not linked to this worker: what one worker
//  announces never changes what another serves; *refused counts such
//  models (and `warning` names the first).  Queued jobs of a version that
//  no worker serves any more go to the highest version still served when
//  they did not ask for one, else fail into `failed`.  Takes *identity_p.
//  NULL on out-of-memory (then the worker is removed).
broker_worker_t *dispatch_worker_ready (dispatch_t *self, const char *key, zframe_t **identity_p,
                                        const codec_header_t *ready, int64_t expires_ms,
                                        zlistx_t *failed, size_t *refused, char *warning,
                                        size_t warning_size);

//  Worker by key, or NULL.
broker_worker_t *dispatch_worker_find (dispatch_t *self, const char *key);

//  Remove a worker (left or dead): its jobs are requeued at the front of
//  their queues; those lost with max_lost workers, and every job of a model
//  no worker serves any more, are appended to `failed` (a zlistx of
//  broker_job_t *) with fail_code set.  Cannot fail.
void dispatch_worker_remove (dispatch_t *self, broker_worker_t *worker, zlistx_t *failed);

//  The worker drains: it serves no model any more (queues of models nobody
//  else serves fail into `failed`) but keeps the jobs it holds until their
//  results come or it is removed.  Cannot fail.
void dispatch_worker_drain (dispatch_t *self, broker_worker_t *worker, zlistx_t *failed);

//  Queue a job for `version` of its model, or, when version is NULL or "",
//  for the highest version served (versions compare as strverscmp does:
//  numbers inside as numbers, 2 < 10).  Returns AMAAS_OK (the dispatcher
//  owns the job, and dispatch_find finds it), or AMAAS_NOT_FOUND (no worker
//  serves the model, or not that version) or AMAAS_RESOURCE_EXHAUSTED (queue
//  full), with a message in job->fail_message; then the caller still owns
//  the job.
amaas_code_t dispatch_submit (dispatch_t *self, broker_job_t *job, const char *version);

//  The live job (queued or held) of client job `id` in `session` of the
//  key `principal`, or, when session is 0, of the client record `owner`;
//  NULL if none.  A client that sends a job again finds it here.
broker_job_t *dispatch_find (dispatch_t *self, uint64_t session, uint64_t principal,
                             const void *owner, uint64_t id);

//  The client gave job up.  A queued job is taken out of its queue: returns
//  true, and the caller owns it (answers and destroys it).  A held job stays
//  with its worker (returns false): the caller tells the worker.
bool dispatch_cancel (dispatch_t *self, broker_job_t *job);

//  A version of a model, or NULL.
broker_model_t *dispatch_model_find (dispatch_t *self, const char *name, const char *version);

//  Pair queued jobs with workers that have free credit and call send for
//  each pair, higher priorities first.  A job past its deadline is not sent:
//  it goes to `failed` with DEADLINE_EXCEEDED.  Returns the number sent.
size_t dispatch_pump (dispatch_t *self, dispatch_send_fn *send, void *arg, uint64_t now_us,
                      zlistx_t *failed);

//  Move every queued job past its deadline to `failed` (DEADLINE_EXCEEDED).
//  Also frees the lanes of clients that have had no job queued for a
//  second.  Returns how many jobs.
size_t dispatch_expire (dispatch_t *self, uint64_t now_us, zlistx_t *failed);

//  A worker finished job `token`: returns the job, now owned by the caller,
//  or NULL if that worker does not hold that job (late or forged result).
broker_job_t *dispatch_complete (dispatch_t *self, broker_worker_t *worker, uint64_t token);

//  Remove every worker whose expires_ms is before now_ms, as
//  dispatch_worker_remove does.  Returns how many.
size_t dispatch_purge (dispatch_t *self, int64_t now_ms, zlistx_t *failed);

//  Fail every queued job with `code` (e.g. at shutdown) into `failed`.
void dispatch_fail_all (dispatch_t *self, amaas_code_t code, const char *message, zlistx_t *failed);

//  Fail every job, queued or held, with UNAVAILABLE into `failed`, and
//  forget every worker: the broker is shutting down.
void dispatch_shutdown (dispatch_t *self, zlistx_t *failed);

//  Iterate over the model versions served or with jobs queued (no change
//  meanwhile).
broker_model_t *dispatch_model_first (dispatch_t *self);
broker_model_t *dispatch_model_next (dispatch_t *self);

//  Iterate over the workers (no change to the registry meanwhile).
broker_worker_t *dispatch_worker_first (dispatch_t *self);
broker_worker_t *dispatch_worker_next (dispatch_t *self);

//  The model versions that at least one worker serves, sorted by name,
//  then version, into a header's models list (HDR_MODELS set).  Returns 0,
//  -1 on out-of-memory.
int dispatch_models (dispatch_t *self, codec_header_t *header);

//  Counts, for logs and tests
size_t dispatch_worker_count (dispatch_t *self);
size_t dispatch_queued (dispatch_t *self, const char *model); //  all its versions
size_t dispatch_in_flight (dispatch_t *self);
size_t dispatch_queued_total (dispatch_t *self);

//  A new zlistx for `failed` lists: destroying it destroys the jobs left in
//  it, so destroy it before the dispatcher.
zlistx_t *dispatch_job_list_new (void);

#endif
