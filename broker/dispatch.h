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
    failed (handed back in a dispatch_jobs_t list with a code and a
    message).  The caller answers the client and destroys the job.  Until
    then a job is in exactly one place: a queue, a worker's hands or a
    failed list.

    The structs are opaque: callers read jobs, workers and model versions
    through the accessors at the end of this header.

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
typedef struct dispatch_job_t dispatch_job_t;       //  a client's job
typedef struct dispatch_model_t dispatch_model_t;   //  one version of a model
typedef struct dispatch_worker_t dispatch_worker_t; //  a registered worker
typedef struct dispatch_jobs_t dispatch_jobs_t;     //  failed jobs to answer

#define DISPATCH_IDENTITY_MAX 255 //  bytes of a ROUTER identity at most
#define DISPATCH_MODEL_KEY_MAX (CODEC_NAME_MAX + CODEC_VERSION_MAX + 24) //  "LEN:NAMEVERSION"

//  Send callback of dispatch_pump: send `job` to `worker`.  Return 0, or -1
//  if it could not be sent (the job then stays queued).
typedef int (dispatch_send_fn) (dispatch_job_t *job, dispatch_worker_t *worker, void *arg);

//  New dispatcher.  max_queue bounds each model's queue; a job lost with
//  max_lost workers fails UNAVAILABLE.  NULL on out-of-memory.
dispatch_t *dispatch_new (size_t max_queue, uint32_t max_lost);

//  Until until_us, or until the first worker registers, a job for a model
//  that no worker serves is answered UNAVAILABLE (retry after a backoff)
//  instead of NOT_FOUND: a broker that has just started has not heard from
//  the workers that will serve it.  Cannot fail.
void dispatch_set_warmup (dispatch_t *self, uint64_t until_us);

//  Free the dispatcher, its workers and every job it holds.  Nulls *self_p.
//  Cannot fail.
void dispatch_destroy (dispatch_t **self_p);

//  New job with a fresh token, from the dispatcher's pool: in the steady
//  state no job allocates.  Copies the client identity (may be NULL), moves
//  *payload into the job (payload may be NULL).  NULL on out-of-memory.
dispatch_job_t *dispatch_job_new (dispatch_t *self, uint64_t id, const codec_header_t *request,
                                  const void *client, size_t client_size, zmq_msg_t *payload,
                                  uint64_t now_us);

//  Give a job back to its dispatcher's pool (which must still exist).  The
//  job is in no queue, no worker's hands and no failed list any more.
//  Nulls *job_p.  Cannot fail.
void dispatch_job_destroy (dispatch_job_t **job_p);

//  Iterate over the jobs a worker holds (no change meanwhile); NULL at the
//  end.  Cannot fail.
dispatch_job_t *dispatch_held_first (dispatch_worker_t *worker);
dispatch_job_t *dispatch_held_next (dispatch_worker_t *worker, dispatch_job_t *job);

//  Register a worker from its READY header, or, for a worker already
//  registered, update the models it serves (a hot reload): the jobs it
//  holds stay with it.  A model version that another worker serves with
//  another input width is not linked to this worker: what one worker
//  announces never changes what another serves; *refused counts such
//  models (and `warning` names the first).  Queued jobs of a version that
//  no worker serves any more go to the highest version still served when
//  they did not ask for one, else fail into `failed`.  Takes *identity_p.
//  NULL on out-of-memory (then the worker is removed).
dispatch_worker_t *dispatch_worker_ready (dispatch_t *self, const char *key, zframe_t **identity_p,
                                          const codec_header_t *ready, int64_t expires_ms,
                                          dispatch_jobs_t *failed, size_t *refused, char *warning,
                                          size_t warning_size);

//  Worker by key, or NULL.  Cannot fail.
dispatch_worker_t *dispatch_worker_find (dispatch_t *self, const char *key);

//  Remove a worker (left or dead): its jobs are requeued at the front of
//  their queues; those lost with max_lost workers, and every job of a model
//  no worker serves any more, and those that cannot be queued again for
//  want of memory, are appended to `failed` with their fail code set: no
//  job is lost.  Cannot fail.
void dispatch_worker_remove (dispatch_t *self, dispatch_worker_t *worker, dispatch_jobs_t *failed);

//  The worker drains: it serves no model any more (queues of models nobody
//  else serves fail into `failed`) but keeps the jobs it holds until their
//  results come or it is removed.  Cannot fail.
void dispatch_worker_drain (dispatch_t *self, dispatch_worker_t *worker, dispatch_jobs_t *failed);

//  Queue a job for `version` of its model, or, when version is NULL or "",
//  for the highest version served (versions compare as strverscmp does:
//  numbers inside as numbers, 2 < 10).  Returns AMAAS_OK (the dispatcher
//  owns the job, and dispatch_find finds it), or AMAAS_NOT_FOUND (no worker
//  serves the model, or not that version), AMAAS_RESOURCE_EXHAUSTED (queue
//  full) or AMAAS_INTERNAL (out of memory), with a message
//  (dispatch_job_fail_message); then nothing is changed and the caller
//  still owns the job.
amaas_code_t dispatch_submit (dispatch_t *self, dispatch_job_t *job, const char *version);

//  The live job (queued or held) of client job `id` in `session` of the
//  key `principal`, or, when session is 0, of the client record `owner`;
//  NULL if none.  A client that sends a job again finds it here.  Cannot
//  fail.
dispatch_job_t *dispatch_find (dispatch_t *self, uint64_t session, uint64_t principal,
                               const void *owner, uint64_t id);

//  The client gave job up.  A queued job is taken out of its queue: returns
//  true, and the caller owns it (answers and destroys it).  A held job stays
//  with its worker (returns false): the caller tells the worker.  Cannot
//  fail.
bool dispatch_cancel (dispatch_t *self, dispatch_job_t *job);

//  A version of a model, or NULL.  Cannot fail.
dispatch_model_t *dispatch_model_find (dispatch_t *self, const char *name, const char *version);

//  Pair queued jobs with workers that have free credit and call send for
//  each pair, higher priorities first.  A job past its deadline is not sent:
//  it goes to `failed` with DEADLINE_EXCEEDED.  Returns the number sent.
//  Cannot fail (a job that send refuses stays queued).
size_t dispatch_pump (dispatch_t *self, dispatch_send_fn *send, void *arg, uint64_t now_us,
                      dispatch_jobs_t *failed);

//  Move every queued job past its deadline to `failed` (DEADLINE_EXCEEDED).
//  Also frees the lanes of clients that have had no job queued for a
//  second.  Returns how many jobs.  Cannot fail.
size_t dispatch_expire (dispatch_t *self, uint64_t now_us, dispatch_jobs_t *failed);

//  A worker finished job `token`: returns the job, now owned by the caller,
//  or NULL if that worker does not hold that job (late or forged result).
//  Cannot fail.
dispatch_job_t *dispatch_complete (dispatch_t *self, dispatch_worker_t *worker, uint64_t token);

//  Remove every worker whose expires_ms is before now_ms, as
//  dispatch_worker_remove does.  Returns how many.  Cannot fail (it
//  allocates nothing).
size_t dispatch_purge (dispatch_t *self, int64_t now_ms, dispatch_jobs_t *failed);

//  Fail every queued job with `code` (e.g. at shutdown) into `failed`.
//  Cannot fail.
void dispatch_fail_all (dispatch_t *self, amaas_code_t code, const char *message,
                        dispatch_jobs_t *failed);

//  Fail every job, queued or held, with UNAVAILABLE into `failed`, and
//  forget every worker: the broker is shutting down.  Cannot fail.
void dispatch_shutdown (dispatch_t *self, dispatch_jobs_t *failed);

//  Iterate over the model versions served or with jobs queued (no change
//  meanwhile).  Cannot fail.
dispatch_model_t *dispatch_model_first (dispatch_t *self);
dispatch_model_t *dispatch_model_next (dispatch_t *self);

//  Iterate over the workers (no change to the registry meanwhile).  Cannot
//  fail.
dispatch_worker_t *dispatch_worker_first (dispatch_t *self);
dispatch_worker_t *dispatch_worker_next (dispatch_t *self);

//  The model versions that at least one worker serves, sorted by name,
//  then version, into a header's models list (HDR_MODELS set).  Returns 0,
//  -1 on out-of-memory.
int dispatch_models (dispatch_t *self, codec_header_t *header);

//  Counts, for logs and tests.  None of these fails.
size_t dispatch_worker_count (dispatch_t *self);
size_t dispatch_queued (dispatch_t *self, const char *model); //  all its versions
size_t dispatch_in_flight (dispatch_t *self);
size_t dispatch_queued_total (dispatch_t *self);

//  --------------------------------------------------------------------------
//  Lists of failed jobs (the `failed` arguments above), for the caller to
//  answer.  A job is linked in through its own link, so that failing a job
//  allocates nothing and cannot fail.

//  New empty list.  NULL on out-of-memory.
dispatch_jobs_t *dispatch_jobs_new (void);

//  Destroys the jobs left in the list (destroy it before their dispatcher),
//  and the list.  Nulls *self_p.  Cannot fail.
void dispatch_jobs_destroy (dispatch_jobs_t **self_p);

//  Takes the first job out of the list: the caller owns it.  NULL when the
//  list is empty.  Cannot fail.
dispatch_job_t *dispatch_jobs_pop (dispatch_jobs_t *self);

//  Iterate over the jobs in the list (no change meanwhile); NULL at the end.
dispatch_job_t *dispatch_jobs_first (dispatch_jobs_t *self);
dispatch_job_t *dispatch_jobs_next (dispatch_jobs_t *self, dispatch_job_t *job);

//  Jobs in the list.  Cannot fail.
size_t dispatch_jobs_size (const dispatch_jobs_t *self);

//  Destroys every job in the list.  Cannot fail.
void dispatch_jobs_purge (dispatch_jobs_t *self);

//  --------------------------------------------------------------------------
//  A job's fields.  None of these fails; the strings stay valid while the
//  job lives.

//  The broker's own id of the job (unique, carries its slot).
uint64_t dispatch_job_token (const dispatch_job_t *job);

//  The client's id of the job.
uint64_t dispatch_job_id (const dispatch_job_t *job);

//  The model's name, and the version the job is queued for or was sent to
//  ("" before dispatch_submit).
const char *dispatch_job_model (const dispatch_job_t *job);
const char *dispatch_job_version (const dispatch_job_t *job);

//  The ROUTER identity the answer goes to; *size is 0 when there is none.
const void *dispatch_job_client (const dispatch_job_t *job, size_t *size);

//  The answer goes to this identity now (the client sent the job again on
//  another connection).  An identity over DISPATCH_IDENTITY_MAX bytes is
//  not taken, and the old one stays.
void dispatch_job_set_client (dispatch_job_t *job, const void *identity, size_t size);

//  The caller's record of the client (see dispatch_find), or NULL.
void *dispatch_job_owner (const dispatch_job_t *job);

//  Sets the caller's record of the client: before dispatch_submit, or, for
//  a job sent with a session, at any time (a job without a session is
//  found by its owner, which must then not change).
void dispatch_job_set_owner (dispatch_job_t *job, void *owner);

//  Sets the hash of the client's key (0 without security), by which a job
//  with a session is found.  Before dispatch_submit only.
void dispatch_job_set_principal (dispatch_job_t *job, uint64_t principal);

//  The worker holding the job, or NULL while it is queued.
dispatch_worker_t *dispatch_job_worker (const dispatch_job_t *job);

//  When the job is past its deadline, in µs as received_us; 0: none.
uint64_t dispatch_job_deadline_us (const dispatch_job_t *job);

//  The outputs the client asked for (*n of them, 0: all), or NULL.
const char (*dispatch_job_outputs (const dispatch_job_t *job, size_t *n))[CODEC_NAME_MAX];

//  The job's inputs, forwarded untouched (the job keeps them), or NULL.
zmq_msg_t *dispatch_job_payload (dispatch_job_t *job);

//  When the broker received the job, and last sent it to a worker (0: not
//  yet), in µs as passed to dispatch_job_new and dispatch_pump.
uint64_t dispatch_job_received_us (const dispatch_job_t *job);
uint64_t dispatch_job_dispatched_us (const dispatch_job_t *job);

//  Workers lost while holding the job.
uint32_t dispatch_job_lost (const dispatch_job_t *job);

//  Why a failed job failed: its code (AMAAS_OK until it fails) and message.
amaas_code_t dispatch_job_fail_code (const dispatch_job_t *job);
const char *dispatch_job_fail_message (const dispatch_job_t *job);

//  Marks a job that the caller owns (e.g. cancelled) as failed with code and
//  message, for the caller to answer.
void dispatch_job_set_failure (dispatch_job_t *job, amaas_code_t code, const char *message);

//  --------------------------------------------------------------------------
//  A worker's fields.  None of these fails.

//  The hex of its ROUTER identity, the registry's key.
const char *dispatch_worker_key (const dispatch_worker_t *worker);

//  Its ROUTER identity (the worker keeps it).
zframe_t *dispatch_worker_identity (const dispatch_worker_t *worker);

//  Jobs it holds, and jobs it may hold.
size_t dispatch_worker_held (const dispatch_worker_t *worker);
uint32_t dispatch_worker_credit (const dispatch_worker_t *worker);

//  Its process id and host name, as it announced them.
uint32_t dispatch_worker_pid (const dispatch_worker_t *worker);
const char *dispatch_worker_host (const dispatch_worker_t *worker);

//  The model versions it serves: how many, and the one at index i.
size_t dispatch_worker_model_count (const dispatch_worker_t *worker);
dispatch_model_t *dispatch_worker_model (const dispatch_worker_t *worker, size_t i);

//  Model files it failed to load, as it reported.
uint32_t dispatch_worker_model_errors (const dispatch_worker_t *worker);

//  Jobs it completed.
uint64_t dispatch_worker_done (const dispatch_worker_t *worker);

//  Whether it drains (finishes its jobs, takes no new one).
bool dispatch_worker_draining (const dispatch_worker_t *worker);

//  When its last message came, in ms.
int64_t dispatch_worker_seen_ms (const dispatch_worker_t *worker);

//  A message came from the worker at now_ms: it is declared dead
//  (dispatch_purge) after expires_ms without another.
void dispatch_worker_heard (dispatch_worker_t *worker, int64_t now_ms, int64_t expires_ms);

//  --------------------------------------------------------------------------
//  A model version's fields.  None of these fails.

//  Its name and version.
const char *dispatch_model_name (const dispatch_model_t *model);
const char *dispatch_model_version (const dispatch_model_t *model);

//  The input width and mapped bytes its first worker announced.
uint32_t dispatch_model_width (const dispatch_model_t *model);
uint64_t dispatch_model_mapped (const dispatch_model_t *model);
//  The metadata (input, datatype, outputs) its first worker announced
//  (or, if that one announced none, a later one); all zero when unknown.
const codec_model_meta_t *dispatch_model_meta (const dispatch_model_t *model);

//  Jobs waiting for it, and workers serving it.
size_t dispatch_model_queued (const dispatch_model_t *model);
size_t dispatch_model_workers (const dispatch_model_t *model);

//  Client lanes it keeps (with jobs, or idle for less than a second).
size_t dispatch_model_lanes (const dispatch_model_t *model);

//  When the broker received the job that has waited longest in its queues
//  (µs, as dispatch_job_received_us), or 0 when none waits: O(lanes with
//  jobs), for the metrics and status, not the hot path.
uint64_t dispatch_model_oldest_us (const dispatch_model_t *model);

#endif
