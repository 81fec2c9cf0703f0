/*  broker.c - the amaas broker's event loop.

    One thread, one zmq_poll over the frontend (clients), backend (workers)
    and control (operators) ROUTER sockets, each served in bounded bursts so
    that no side starves another.  Messages are received as zmq_msg_t
    frames (codec_frames_t), without czmq objects.  A client REQUEST becomes
    a job from the dispatcher's pool: its header is decoded, its payload
    frame is moved into the job as it is and later sent on to the worker in
    a JOB, by reference.  In the steady state a job allocates nothing in
    the broker's own code.  A worker's RESULT is matched to
    the job by token and becomes the client's REPLY.  Timers: every 50 ms
    queued jobs past their deadline are answered; every heartbeat interval
    the broker heartbeats its workers and purges those that went silent
    (their jobs are requeued); every second the metrics are published.
    A client may have at most --max-client-jobs jobs queued or computing;
    clients idle for a second are forgotten (admission.h).
    With security on, each socket admits only the keys of its role
    (auth.h).  Bad messages are answered with an error and logged; they
    never stop the loop.
*/
#include "broker.h"

#include <czmq.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "admission.h"
#include "amaas_defs.h"
#include "clock.h"
#include "codec.h"
#include "control.h"
#include "dispatch.h"
#include "idmap.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "signals.h"
#include "table.h"

#define EXPIRE_MS 50    //  how often queues are swept for expired deadlines
#define METRICS_MS 1000 //  how often the metrics are published and idle clients forgotten
#define BURST 256       //  messages handled from one socket before the other's turn
#define PEER_LINES 5    //  log lines about one peer's bad input, per second at most
#define ALL_LINES 50    //  log lines about bad input, all peers together, per second at most

typedef struct {
    const broker_config_t *config;
    zsock_t *frontend; //  ROUTER for clients
    zsock_t *backend;  //  ROUTER for workers
    zsock_t *control;  //  ROUTER for operators
    void *front;       //  their libzmq sockets
    void *back;
    void *ctl;
    auth_t *auth;            //  CURVE and roles, or NULL without security
    admission_t *admission;  //  per-client caps, idle clients forgotten
    codec_frames_t in;       //  the message at hand
    control_stats_t stats;   //  counters for status
    bool shutdown;           //  an operator asked for a shutdown
    dispatch_t *dispatch;    //  queues and workers
    dispatch_jobs_t *failed; //  jobs to answer with an error
    codec_header_t header;   //  decoded header of the message at hand
    codec_header_t reply;    //  header being built
    uint64_t jobs_ok;        //  jobs answered with a result
    uint64_t jobs_failed;    //  jobs answered with an error
    uint64_t incarnation;    //  random, chosen at start: tells this run from others
    metrics_counts_t counts; //  accepted, deduplicated, cancelled, computed
    bool stopping;           //  signalled: no new jobs
    bool pump_due;           //  jobs came or workers freed up since the last pump
    metrics_t *metrics;      //  Prometheus metrics (served with --metrics), recent queue waits
    ratelimit_t *peer_lines; //  lines about bad input, by peer
    ratelimit_t *all_lines;  //  the same, all peers together
} broker_t;

void broker_config_defaults (broker_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->frontend = DEFS_FRONTEND_ANY;
    config->backend = DEFS_BACKEND_ANY;
    config->control = DEFS_CONTROL_LOCAL;
    config->heartbeat_ms = 1000;
    config->liveness = 3;
    config->max_message = 64u << 20;
    config->max_queue = 10000;
    config->max_lost = 2;
    config->max_client_jobs = 5000;
    config->shutdown_grace_ms = 5000;
}

#define CLIENT_IDLE_MS 1000 //  a client without jobs is forgotten after this long

//  A job of this client ended (answered either way): its client may send
//  another.
static void s_client_job_done (broker_t *self, dispatch_job_t *job)
{
    admission_client_t *client = dispatch_job_owner (job);
    if (client)
        admission_release (self->admission, client, clock_now_ms ());
}

//  Sends a message to the peer `identity` (size bytes) of a ROUTER socket.
//  A peer that is gone is not an error: ROUTER drops what cannot be routed.
static void s_send_to (void *sock, const void *identity, size_t size, codec_cmd_t cmd,
                       const codec_header_t *header, zmq_msg_t *payload)
{
    codec_send_frames (sock, identity, size, cmd, header, payload);
}

static void s_send_error (broker_t *self, void *sock, const void *identity, size_t size,
                          uint64_t id, amaas_code_t code, const char *message)
{
    codec_header_t *h = &self->reply;
    codec_header_reset (h);
    h->fields = HDR_CODE;
    h->code = code;
    codec_header_set_message (h, "%s", message);
    codec_cmd_t cmd = CMD_ERROR;
    if (id) {
        h->id = id;
        h->fields |= HDR_ID;
        cmd = sock == self->front ? CMD_REPLY : CMD_ERROR;
    }
    s_send_to (sock, identity, size, cmd, h, NULL);
}

//  With security on, the CURVE key that sent the message at hand (its
//  "User-Id", set by zauth), or NULL.
static const char *s_user_of (broker_t *self)
{
    return self->auth && self->in.n > 1 ? zmq_msg_gets (&self->in.frames[1], "User-Id") : NULL;
}

//  Whether a line about the bad input of the peer of the message at hand
//  may be written: at most PEER_LINES a second per peer (by its CURVE key
//  with security on, else by its connection) and ALL_LINES for all peers
//  together, so that no peer can grow the log without bound.  The lines
//  not written are counted, and logged as one line a second
//  (s_report_suppressed).
static bool s_may_log (broker_t *self, char tag)
{
    char key[TABLE_KEY_MAX];
    const char *user = s_user_of (self);
    if (user)
        snprintf (key, sizeof key, "%c%s", tag, user);
    else if (self->in.n > 0)
        table_identity_key (key, tag, zmq_msg_data (&self->in.frames[0]),
                            zmq_msg_size (&self->in.frames[0]));
    else
        snprintf (key, sizeof key, "%c", tag);
    int64_t now = clock_now_ms ();
    return ratelimit_allow (self->peer_lines, key, now) &&
           ratelimit_allow (self->all_lines, "all peers", now);
}

static void s_report_suppressed (const char *peer, size_t count, void *arg)
{
    (void)arg;
    log_warn ("log lines suppressed peer=%s count=%zu (bad input, more than %d lines a second)",
              peer, count, streq (peer, "all peers") ? ALL_LINES : PEER_LINES);
}

//  With security on: whether the peer of this message holds a key of the
//  role this socket serves.  If not, it is told PERMISSION_DENIED and the
//  refusal is logged with the key's name.
static bool s_allowed (broker_t *self, char tag, auth_role_t role, const char *role_name,
                       const char **name)
{
    if (!self->auth)
        return true;
    codec_frames_t *in = &self->in;
    const void *identity = zmq_msg_data (&in->frames[0]);
    size_t size = zmq_msg_size (&in->frames[0]);
    const char *user = s_user_of (self);
    if (in->n > 1 && auth_check (self->auth, user, role, clock_now_ms (), name))
        return true;
    if (s_may_log (self, tag))
        log_warn ("refused key=%s socket=%s reason=\"not a %s key\"", *name ? *name : "?",
                  role_name, role_name);
    char err[CODEC_MESSAGE_MAX];
    snprintf (err, sizeof err, "key '%.64s' is not a %s key: refused", *name ? *name : "?",
              role_name);
    void *sock = tag == 'f' ? self->front : tag == 'b' ? self->back : self->ctl;
    s_send_error (self, sock, identity, size, 0, AMAAS_PERMISSION_DENIED, err);
    return false;
}

//  Answers a job with its fail code and destroys it.
static void s_answer_failed (broker_t *self, dispatch_job_t **job_p)
{
    dispatch_job_t *job = *job_p;
    amaas_code_t code = dispatch_job_fail_code (job);
    log_debug ("job failed model=%s id=%" PRIu64 " code=%s message=\"%s\"",
               dispatch_job_model (job), dispatch_job_id (job), amaas_code_name (code),
               dispatch_job_fail_message (job));
    size_t client_size;
    const void *client = dispatch_job_client (job, &client_size);
    if (client_size)
        s_send_error (self, self->front, client, client_size, dispatch_job_id (job), code,
                      dispatch_job_fail_message (job));
    self->jobs_failed++;
    self->stats.answered[code < 32 ? code : AMAAS_UNKNOWN]++;
    if (self->metrics)
        metrics_observe_job (self->metrics, dispatch_job_model (job), amaas_code_name (code), -1,
                             -1, -1, 0);
    s_client_job_done (self, job);
    dispatch_job_destroy (job_p);
}

static void s_answer_failed_list (broker_t *self)
{
    dispatch_job_t *job;
    while ((job = dispatch_jobs_pop (self->failed)))
        s_answer_failed (self, &job);
}

static int s_send_job (dispatch_job_t *job, dispatch_worker_t *worker, void *arg)
{
    broker_t *self = arg;
    codec_header_t *h = &self->reply;
    codec_header_reset (h);
    h->fields = HDR_JOB;
    h->job = dispatch_job_token (job);
    codec_header_set_model (h, dispatch_job_model (job));
    codec_header_set_version (h, dispatch_job_version (job));
    uint64_t deadline_us = dispatch_job_deadline_us (job);
    if (deadline_us) {
        //  What is left of the budget, relative: the worker's clock need not
        //  agree with ours.  The pump only sends jobs not yet expired.
        uint64_t now = clock_now_us ();
        h->fields |= HDR_DEADLINE_MS;
        h->deadline_ms = deadline_us > now ? (uint32_t)((deadline_us - now) / 1000) : 0;
    }
    size_t n_outputs;
    const char (*outputs)[CODEC_NAME_MAX] = dispatch_job_outputs (job, &n_outputs);
    if (n_outputs) {
        h->fields |= HDR_OUTPUTS;
        h->n_outputs = n_outputs;
        memcpy (h->outputs, outputs, n_outputs * CODEC_NAME_MAX);
    }
    //  The payload goes by reference: the job keeps it, in case the worker
    //  dies and the job must go to another
    zframe_t *to = dispatch_worker_identity (worker);
    return codec_send_frames (self->back, zframe_data (to), zframe_size (to), CMD_JOB, h,
                              dispatch_job_payload (job))
               ? -1
               : 0;
}

static void s_pump (broker_t *self)
{
    dispatch_pump (self->dispatch, s_send_job, self, clock_now_us (), self->failed);
    s_answer_failed_list (self);
}

//  The epoch of a client's connection: the broker's incarnation mixed with
//  the connection's identity, never 0.
static uint64_t s_epoch_of (broker_t *self, const void *identity, size_t size)
{
    uint64_t epoch = idmap_hash_bytes (identity, size, self->incarnation);
    return epoch ? epoch : 1;
}

//  With security on, a hash of the CURVE key of the message at hand, so that
//  a job sent again is found only by the key that sent it; 0 without.
static uint64_t s_principal_of (broker_t *self)
{
    const char *user = s_user_of (self);
    return user ? idmap_hash_bytes (user, strlen (user), 0) | 1 : 0;
}

//  A REQUEST for a job the broker has: its answer goes to this connection
//  now, which counts it among its client's jobs.
static void s_attach (broker_t *self, dispatch_job_t *job, admission_client_t *client,
                      const void *identity, size_t size)
{
    dispatch_job_set_client (job, identity, size);
    admission_move (self->admission, dispatch_job_owner (job), client, clock_now_ms ());
    dispatch_job_set_owner (job, client);
    self->counts.deduplicated++;
    log_debug ("job sent again, attached model=%s id=%" PRIu64 " at=%s", dispatch_job_model (job),
               dispatch_job_id (job), dispatch_job_worker (job) ? "worker" : "queue");
}

//  CANCEL: the client gave the job up.  Queued, it is answered CANCELLED
//  and dropped; at a worker, the worker is told, and skips it if it has
//  not started it.
static void s_on_cancel (broker_t *self, const void *identity, size_t size)
{
    codec_header_t *h = &self->header;
    admission_client_t *client = admission_lookup (self->admission, identity, size);
    dispatch_job_t *job =
        (h->fields & HDR_ID) && (client || (h->fields & HDR_SESSION))
            ? dispatch_find (self->dispatch, (h->fields & HDR_SESSION) ? h->session : 0,
                             s_principal_of (self), client, h->id)
            : NULL;
    if (!job)
        return; //  answered already, or never known: nothing to do
    self->counts.cancelled++;
    if (dispatch_cancel (self->dispatch, job)) {
        dispatch_job_set_failure (job, AMAAS_CANCELLED, "cancelled by the client");
        s_answer_failed (self, &job);
        return;
    }
    dispatch_worker_t *worker = dispatch_job_worker (job);
    if (!worker)
        return; //  neither queued nor held: cannot happen
    codec_header_t *r = &self->reply;
    codec_header_reset (r);
    r->fields = HDR_JOB;
    r->job = dispatch_job_token (job);
    zframe_t *to = dispatch_worker_identity (worker);
    s_send_to (self->back, zframe_data (to), zframe_size (to), CMD_CANCEL_JOB, r, NULL);
}

//  A message from a client: self->in, identity first.
static void s_on_frontend (broker_t *self)
{
    codec_frames_t *in = &self->in;
    char err[CODEC_MESSAGE_MAX];
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    codec_header_t *h = &self->header;
    if (in->n < 1)
        return;
    const void *identity = zmq_msg_data (&in->frames[0]);
    size_t identity_size = zmq_msg_size (&in->frames[0]);
    size_t size = in->size - identity_size;
    const char *name = NULL;
    if (!s_allowed (self, 'f', AUTH_ROLE_CLIENT, "client", &name))
        return;
    if (codec_frames_parse (in, 1, &cmd, h, &payload, err, sizeof err)) {
        if (s_may_log (self, 'f'))
            log_warn ("bad client message peer=%s error=\"%s\"", "frontend", err);
        s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_INVALID_ARGUMENT,
                      err);
        return;
    }
    if (cmd == CMD_PING || cmd == CMD_MODELS) {
        codec_header_t *r = &self->reply;
        codec_header_reset (r);
        r->fields = HDR_ID;
        r->id = h->id;
        if (cmd == CMD_PING) {
            //  Changes when the broker restarts or the connection is new:
            //  then the client sends again what it has no answer for
            r->fields |= HDR_EPOCH;
            r->epoch = s_epoch_of (self, identity, identity_size);
        }
        if (cmd == CMD_MODELS && dispatch_models (self->dispatch, r))
            return;
        s_send_to (self->front, identity, identity_size,
                   cmd == CMD_PING ? CMD_PONG : CMD_MODELS_REPLY, r, NULL);
        codec_header_reset (r);
        return;
    }
    if (cmd == CMD_CANCEL) {
        s_on_cancel (self, identity, identity_size);
        return;
    }
    if (cmd != CMD_REQUEST) {
        snprintf (err, sizeof err, "command 0x%02x is not a client command", cmd);
        s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_INVALID_ARGUMENT,
                      err);
        return;
    }
    if (!(h->fields & HDR_ID) || !(h->fields & HDR_MODEL)) {
        s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_INVALID_ARGUMENT,
                      "REQUEST header needs 'id' (uint64 >= 1) and 'model' (str)");
        return;
    }
    if (size > self->config->max_message) {
        snprintf (err, sizeof err,
                  "request of %zu bytes exceeds the broker's limit of %zu bytes (--max-message)",
                  size, self->config->max_message);
        s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_INVALID_ARGUMENT,
                      err);
        return;
    }
    if (self->stopping) {
        s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_UNAVAILABLE,
                      "the broker is shutting down: retry later or elsewhere");
        return;
    }
    if (self->auth && !auth_model_allowed (self->auth, name, h->model)) {
        if (s_may_log (self, 'f'))
            log_warn ("job refused key=%s model=%s reason=acl", name, h->model);
        snprintf (err, sizeof err, "client '%.64s' may not call model '%.64s' (see the ACL)", name,
                  h->model);
        s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_PERMISSION_DENIED,
                      err);
        return;
    }
    uint64_t now_us = clock_now_us ();
    admission_client_t *client =
        admission_client (self->admission, identity, identity_size, (int64_t)(now_us / 1000));
    uint64_t principal = s_principal_of (self);
    dispatch_job_t *known =
        client ? dispatch_find (self->dispatch, (h->fields & HDR_SESSION) ? h->session : 0,
                                principal, client, h->id)
               : NULL;
    if (known) {
        //  Sent again (the client lost its connection, or thinks the broker
        //  restarted): it is the job already queued or computing
        if (!streq (dispatch_job_model (known), h->model)) {
            snprintf (err, sizeof err,
                      "job id %" PRIu64 " is already in flight for model '%.64s': ids must be "
                      "unique among a client's jobs in flight",
                      h->id, dispatch_job_model (known));
            s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_INVALID_ARGUMENT,
                          err);
            return;
        }
        s_attach (self, known, client, identity, identity_size);
        return;
    }
    if (client && admission_acquire (self->admission, client)) {
        snprintf (err, sizeof err,
                  "this client has %zu jobs queued or computing, the most allowed "
                  "(--max-client-jobs): wait for some to finish",
                  self->config->max_client_jobs);
        s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_RESOURCE_EXHAUSTED,
                      err);
        return;
    }
    dispatch_job_t *job = client ? dispatch_job_new (self->dispatch, h->id, h, identity,
                                                     identity_size, payload, now_us)
                                 : NULL;
    if (!job) {
        if (client)
            admission_release (self->admission, client, clock_now_ms ());
        log_error ("out of memory for a job");
        s_send_error (self, self->front, identity, identity_size, h->id, AMAAS_INTERNAL,
                      "broker out of memory: retry later");
        return;
    }
    dispatch_job_set_owner (job, client);
    dispatch_job_set_principal (job, principal);
    amaas_code_t code =
        dispatch_submit (self->dispatch, job, (h->fields & HDR_VERSION) ? h->version : NULL);
    if (code != AMAAS_OK)
        s_answer_failed (self, &job);
    else {
        self->counts.accepted++;
        self->pump_due = true;
    }
}

static int64_t s_expiry (broker_t *self)
{
    return clock_now_ms () + (int64_t)self->config->heartbeat_ms * self->config->liveness;
}

static void s_on_result (broker_t *self, dispatch_worker_t *worker, zmq_msg_t *payload)
{
    codec_header_t *h = &self->header;
    dispatch_job_t *job = NULL;
    if (h->code == AMAAS_OK)
        self->counts.computed++;
    if (!(h->fields & HDR_JOB) || !(job = dispatch_complete (self->dispatch, worker, h->job))) {
        log_debug ("result for a job the broker does not know worker=%s job=%" PRIu64,
                   dispatch_worker_key (worker), h->job);
        return;
    }
    codec_header_t *r = &self->reply;
    codec_header_reset (r);
    r->fields = HDR_ID | HDR_CODE;
    r->id = dispatch_job_id (job);
    r->code = h->code;
    if (h->code != AMAAS_OK) {
        codec_header_set_message (r, "%s", h->message);
        payload = NULL;
        self->jobs_failed++;
    } else {
        codec_header_set_model (r, dispatch_job_model (job));
        codec_header_set_version (r, (h->fields & HDR_VERSION) ? h->version
                                                               : dispatch_job_version (job));
        r->fields |= HDR_QUEUE_US | HDR_COMPUTE_US;
        r->queue_us = dispatch_job_dispatched_us (job) - dispatch_job_received_us (job);
        r->compute_us = h->compute_us;
        if (h->fields & HDR_BATCH) {
            r->fields |= HDR_BATCH;
            r->batch = h->batch;
        }
        if (!payload) {
            r->code = AMAAS_INTERNAL;
            codec_header_set_message (r, "worker %s sent a result without outputs",
                                      dispatch_worker_key (worker));
        }
        self->jobs_ok++;
    }
    size_t client_size;
    const void *client = dispatch_job_client (job, &client_size);
    s_send_to (self->front, client, client_size, CMD_REPLY, r, payload);
    self->stats.answered[r->code < 32 ? r->code : AMAAS_UNKNOWN]++;
    if (self->metrics) {
        uint64_t now = clock_now_us ();
        metrics_observe_job (
            self->metrics, dispatch_job_model (job), amaas_code_name (r->code),
            (double)(dispatch_job_dispatched_us (job) - dispatch_job_received_us (job)) / 1e6,
            (h->fields & HDR_COMPUTE_US) ? (double)h->compute_us / 1e6 : -1,
            (double)(now - dispatch_job_received_us (job)) / 1e6,
            (h->fields & HDR_BATCH) ? h->batch : 0);
    }
    s_client_job_done (self, job);
    dispatch_job_destroy (&job);
}

//  A message from a worker: self->in, identity first.
static void s_on_backend (broker_t *self)
{
    codec_frames_t *in = &self->in;
    if (in->n < 1)
        return;
    const void *identity = zmq_msg_data (&in->frames[0]);
    size_t identity_size = zmq_msg_size (&in->frames[0]);
    char key[TABLE_KEY_MAX];
    table_identity_key (key, 0, identity, identity_size);
    char err[CODEC_MESSAGE_MAX];
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    codec_header_t *h = &self->header;
    if (codec_frames_parse (in, 1, &cmd, h, &payload, err, sizeof err)) {
        if (s_may_log (self, 'b'))
            log_warn ("bad worker message worker=%s error=\"%s\"", key, err);
        s_send_error (self, self->back, identity, identity_size, 0, AMAAS_INVALID_ARGUMENT, err);
        return;
    }
    dispatch_worker_t *worker = dispatch_worker_find (self->dispatch, key);
    const char *name = NULL;
    if (cmd == CMD_READY && !s_allowed (self, 'b', AUTH_ROLE_WORKER, "worker", &name))
        return;
    if (cmd == CMD_READY) {
        //  A registered worker may come to serve no model (its last model
        //  file removed); a new one must serve at least one
        if (!(h->fields & HDR_MODELS) || (h->n_models == 0 && !worker)) {
            s_send_error (self, self->back, identity, identity_size, 0, AMAAS_INVALID_ARGUMENT,
                          "READY needs 'models', an array of 1.." CODEC_STR (
                              CODEC_MAX_MODELS) " models (0 only in an update)");
            return;
        }
        bool update = worker != NULL;
        zframe_t *frame = zframe_new (identity, identity_size);
        size_t refused = 0;
        char warning[CODEC_MESSAGE_MAX];
        worker = frame ? dispatch_worker_ready (self->dispatch, key, &frame, h, s_expiry (self),
                                                self->failed, &refused, warning, sizeof warning)
                       : NULL;
        zframe_destroy (&frame);
        if (worker) {
            dispatch_worker_heard (worker, clock_now_ms (), s_expiry (self));
            //  A worker updates its models when its folder changes: a peer
            //  that sends READY after READY is limited as bad input is
            if (!update || s_may_log (self, 'b'))
                log_info ("worker %s worker=%s host=%s pid=%u credit=%u models=%zu model_errors=%u",
                          update ? "updated its models" : "ready", key,
                          dispatch_worker_host (worker), dispatch_worker_pid (worker),
                          dispatch_worker_credit (worker), dispatch_worker_model_count (worker),
                          dispatch_worker_model_errors (worker));
            if (refused && s_may_log (self, 'b'))
                log_warn ("worker models refused worker=%s count=%zu first=\"%s\"", key, refused,
                          warning);
            //  The answer: once the worker has it, no JOB for a model this
            //  READY did not list is on its way
            codec_header_t *r = &self->reply;
            codec_header_reset (r);
            s_send_to (self->back, identity, identity_size, CMD_READY, r, NULL);
        }
        s_answer_failed_list (self);
        s_pump (self);
        return;
    }
    if (!worker) {
        //  A worker we do not know (we restarted, or declared it dead):
        //  tell it to register again.
        if (cmd != CMD_DISCONNECT) {
            codec_header_t *r = &self->reply;
            codec_header_reset (r);
            r->fields = HDR_REASON;
            snprintf (r->message, sizeof r->message, "unknown worker: send READY");
            s_send_to (self->back, identity, identity_size, CMD_DISCONNECT, r, NULL);
        }
        return;
    }
    dispatch_worker_heard (worker, clock_now_ms (), s_expiry (self));
    if (cmd == CMD_RESULT) {
        s_on_result (self, worker, payload);
        self->pump_due = true;
    } else if (cmd == CMD_DRAIN) {
        //  The worker finishes what it holds and takes nothing new; the
        //  answer tells it that no JOB is on its way any more
        log_info ("worker draining worker=%s jobs_held=%zu", key, dispatch_worker_held (worker));
        dispatch_worker_drain (self->dispatch, worker, self->failed);
        s_answer_failed_list (self);
        codec_header_t *r = &self->reply;
        codec_header_reset (r);
        s_send_to (self->back, identity, identity_size, CMD_DRAIN, r, NULL);
    } else if (cmd == CMD_DISCONNECT) {
        log_info ("worker left worker=%s jobs_held=%zu", key, dispatch_worker_held (worker));
        dispatch_worker_remove (self->dispatch, worker, self->failed);
        s_answer_failed_list (self);
        s_pump (self);
    } else if (cmd != CMD_HEARTBEAT) {
        snprintf (err, sizeof err, "command 0x%02x is not a worker command", cmd);
        s_send_error (self, self->back, identity, identity_size, 0, AMAAS_INVALID_ARGUMENT, err);
    }
}

//  A command from an operator on the control endpoint
static void s_on_control (broker_t *self)
{
    codec_frames_t *in = &self->in;
    if (codec_frames_recv (in, self->ctl))
        return;
    char err[CODEC_MESSAGE_MAX];
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    codec_header_t *h = &self->header;
    codec_header_t *r = &self->reply;
    zframe_t *answer = NULL;
    const void *identity = zmq_msg_data (&in->frames[0]);
    size_t identity_size = zmq_msg_size (&in->frames[0]);
    const char *name = NULL;
    if (!s_allowed (self, 'c', AUTH_ROLE_OPERATOR, "operator", &name))
        goto done;
    if (codec_frames_parse (in, 1, &cmd, h, &payload, err, sizeof err)) {
        s_send_error (self, self->ctl, identity, identity_size, 0, AMAAS_INVALID_ARGUMENT, err);
        goto done;
    }
    codec_header_reset (r);
    r->fields = HDR_ID | HDR_CODE;
    r->id = h->id;
    if (cmd == CMD_PING) {
        r->fields = HDR_ID;
        s_send_to (self->ctl, identity, identity_size, CMD_PONG, r, NULL);
        goto done;
    }
    if (cmd != CMD_CONTROL || !(h->fields & HDR_COMMAND)) {
        s_send_error (self, self->ctl, identity, identity_size, h->id, AMAAS_INVALID_ARGUMENT,
                      "the control endpoint takes CONTROL with a 'command'");
        goto done;
    }
    int64_t now = clock_now_ms ();
    if (streq (h->command, "status"))
        answer = control_status (self->dispatch, self->metrics, &self->stats, now);
    else if (streq (h->command, "workers"))
        answer = control_workers (self->dispatch, now);
    else if (streq (h->command, "models"))
        answer = control_models (self->dispatch);
    else if (streq (h->command, "drain")) {
        dispatch_worker_t *worker =
            (h->fields & HDR_WORKER) ? dispatch_worker_find (self->dispatch, h->worker) : NULL;
        if (!worker) {
            r->code = AMAAS_NOT_FOUND;
            codec_header_set_message (r, "no worker '%.64s' (see 'amaas workers')", h->worker);
        } else {
            //  It finishes what it holds, takes nothing new, and leaves
            log_info ("operator drains worker=%s jobs_held=%zu", dispatch_worker_key (worker),
                      dispatch_worker_held (worker));
            dispatch_worker_drain (self->dispatch, worker, self->failed);
            s_answer_failed_list (self);
            codec_header_t *d = &self->header;
            codec_header_reset (d);
            zframe_t *to = dispatch_worker_identity (worker);
            s_send_to (self->back, zframe_data (to), zframe_size (to), CMD_DRAIN, d, NULL);
            codec_header_set_message (r, "worker %.64s is draining", dispatch_worker_key (worker));
        }
    } else if (streq (h->command, "shutdown")) {
        log_info ("operator asked for a shutdown");
        self->shutdown = true;
        codec_header_set_message (r, "the broker is shutting down");
    } else {
        r->code = AMAAS_INVALID_ARGUMENT;
        codec_header_set_message (r,
                                  "unknown control command '%s' (status, workers, models, drain, "
                                  "shutdown)",
                                  h->command);
    }
    zmq_msg_t body;
    if (answer && zmq_msg_init_size (&body, zframe_size (answer)) == 0) {
        memcpy (zmq_msg_data (&body), zframe_data (answer), zframe_size (answer));
        s_send_to (self->ctl, identity, identity_size, CMD_CONTROL_REPLY, r, &body);
        zmq_msg_close (&body);
    } else
        s_send_to (self->ctl, identity, identity_size, CMD_CONTROL_REPLY, r, NULL);
done:
    zframe_destroy (&answer);
    codec_frames_close (in);
}

//  How long workers may take to find the broker: their liveness, then
//  their longest reconnect backoff.
static uint64_t s_warmup_us (const broker_config_t *config)
{
    return ((uint64_t)config->heartbeat_ms * (uint64_t)config->liveness + DEFS_RECONNECT_MAX_MS) *
           1000u;
}

static void s_on_heartbeat (broker_t *self)
{
    size_t dead = dispatch_purge (self->dispatch, clock_now_ms (), self->failed);
    if (dead) {
        log_warn ("workers declared dead count=%zu after=%dms", dead,
                  self->config->heartbeat_ms * self->config->liveness);
        //  Every worker silent at once: the broker was frozen or cut off,
        //  and they may be alive, finding it again.  Until one registers, a
        //  model no worker serves is UNAVAILABLE, as after a start, not
        //  NOT_FOUND
        if (dispatch_worker_count (self->dispatch) == 0)
            dispatch_set_warmup (self->dispatch, clock_now_us () + s_warmup_us (self->config));
    }
    codec_header_t *r = &self->reply;
    codec_header_reset (r);
    for (dispatch_worker_t *w = dispatch_worker_first (self->dispatch); w;
         w = dispatch_worker_next (self->dispatch)) {
        zframe_t *to = dispatch_worker_identity (w);
        s_send_to (self->back, zframe_data (to), zframe_size (to), CMD_HEARTBEAT, r, NULL);
    }
    s_pump (self);
}

//  Sets the gauges and publishes the metrics.  Jobs in flight by model are
//  counted from the workers' lists: O(jobs held), once a second.
static void s_publish_metrics (broker_t *self)
{
    uint64_t now_us = clock_now_us ();
    metrics_clear_models (self->metrics);
    for (dispatch_model_t *m = dispatch_model_first (self->dispatch); m;
         m = dispatch_model_next (self->dispatch)) {
        //  By name: the versions of a model add up
        size_t in_flight = 0;
        for (dispatch_worker_t *w = dispatch_worker_first (self->dispatch); w;
             w = dispatch_worker_next (self->dispatch))
            for (dispatch_job_t *j = dispatch_held_first (w); j; j = dispatch_held_next (w, j))
                in_flight += streq (dispatch_job_model (j), dispatch_model_name (m)) &&
                             streq (dispatch_job_version (j), dispatch_model_version (m));
        metrics_add_model (self->metrics, dispatch_model_name (m), dispatch_model_queued (m),
                           in_flight);
        uint64_t oldest = dispatch_model_oldest_us (m);
        metrics_set_model_wait (self->metrics, dispatch_model_name (m),
                                oldest ? (double)(now_us - oldest) / 1e6 : 0);
    }
    metrics_clear_workers (self->metrics);
    for (dispatch_worker_t *w = dispatch_worker_first (self->dispatch); w;
         w = dispatch_worker_next (self->dispatch))
        metrics_add_worker (self->metrics, dispatch_worker_key (w), dispatch_worker_host (w),
                            dispatch_worker_pid (w), dispatch_worker_credit (w),
                            dispatch_worker_held (w), dispatch_worker_draining (w));
    self->counts.load_failures = 0;
    for (dispatch_worker_t *w = dispatch_worker_first (self->dispatch); w;
         w = dispatch_worker_next (self->dispatch))
        self->counts.load_failures += dispatch_worker_model_errors (w);
    metrics_set_counts (self->metrics, &self->counts);
    metrics_set_workers (self->metrics, dispatch_worker_count (self->dispatch));
    if (metrics_publish (self->metrics))
        log_warn ("out of memory for the metrics: the last ones are served still");
}

static zsock_t *s_bind_router (auth_t *auth, const char *endpoint, size_t max_message,
                               const char *role)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock)
        return NULL;
    if (auth)
        auth_apply (auth, sock);
    //  A reply is never dropped for a full pipe; memory is bounded by the
    //  queue limits and worker credit instead.
    zsock_set_sndhwm (sock, 0);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_linger (sock, 1000);
    zsock_set_maxmsgsize (sock, (int64_t)(4 * max_message));
    if (zsock_bind (sock, "%s", endpoint) == -1) {
        log_error ("cannot bind %s endpoint=%s error=\"%s\"", role, endpoint,
                   zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
    }
    return sock;
}

int broker_run (const broker_config_t *config)
{
    broker_t self = {.config = config};
    int rc = -1;
    char metrics_at[300] = ""; //  ADDRESS:PORT the metrics are served on
    if (config->auth.cert) {
        char err[512];
        self.auth = auth_new (&config->auth, err, sizeof err);
        if (!self.auth) {
            log_error ("security cannot start error=\"%s\"", err);
            goto done;
        }
        log_info ("security on: CURVE, clients=%s workers=%s operators=%s acl=%s",
                  config->auth.clients, config->auth.workers, config->auth.operators,
                  config->auth.acl ? config->auth.acl : "(none)");
    }
    self.admission = admission_new (config->max_client_jobs, CLIENT_IDLE_MS);
    self.frontend = s_bind_router (self.auth, config->frontend, config->max_message, "frontend");
    self.backend = s_bind_router (self.auth, config->backend, config->max_message, "backend");
    self.control = s_bind_router (self.auth, config->control, 1u << 20, "control");
    self.stats.started_ms = clock_now_ms ();
    if (getrandom (&self.incarnation, sizeof self.incarnation, 0) != sizeof self.incarnation)
        self.incarnation = (uint64_t)clock_now_us () ^ ((uint64_t)getpid () << 32);
    self.dispatch = dispatch_new (config->max_queue, config->max_lost);
    //  Workers that served the broker before it restarted find it again
    //  within their reconnect backoff (DEFS_RECONNECT_MAX_MS at most): until
    //  the first registers, a model not (yet) served is UNAVAILABLE, which
    //  clients retry (with several brokers, at another), not NOT_FOUND
    if (self.dispatch)
        dispatch_set_warmup (self.dispatch, clock_now_us () + s_warmup_us (config));
    self.failed = dispatch_jobs_new ();
    self.peer_lines = ratelimit_new (PEER_LINES);
    self.all_lines = ratelimit_new (ALL_LINES);
    if (!self.admission || !self.frontend || !self.backend || !self.control || !self.dispatch ||
        !self.failed || !self.peer_lines || !self.all_lines)
        goto done;
    self.front = zsock_resolve (self.frontend);
    self.back = zsock_resolve (self.backend);
    self.ctl = zsock_resolve (self.control);
    //  Always kept: the control socket's status reports the recent queue
    //  waits too; only --metrics serves them over HTTP
    char metrics_err[512];
    self.metrics = metrics_new (config->metrics, metrics_err, sizeof metrics_err);
    if (!self.metrics) {
        log_error ("metrics cannot start error=\"%s\"", metrics_err);
        goto done;
    }
    metrics_tick (self.metrics, clock_now_ms ());
    if (config->metrics) {
        //  metrics_new checked that it is ADDRESS:PORT; the port may have been 0
        const char *colon = strrchr (config->metrics, ':');
        snprintf (metrics_at, sizeof metrics_at, "%.*s:%d", (int)(colon - config->metrics),
                  config->metrics, metrics_port (self.metrics));
        log_info ("metrics served url=http://%s/metrics", metrics_at);
    }
    char *front = zsock_last_endpoint (self.frontend);
    char *back = zsock_last_endpoint (self.backend);
    log_info ("broker listening frontend=%s backend=%s heartbeat=%dms", front, back,
              config->heartbeat_ms);
    if (config->endpoints_file) {
        FILE *f = fopen (config->endpoints_file, "w");
        if (f) {
            char *ctl = zsock_last_endpoint (self.control);
            fprintf (f, "frontend=%s\nbackend=%s\n", front, back);
            if (config->metrics)
                fprintf (f, "metrics=%s\n", metrics_at);
            fprintf (f, "control=%s\n", ctl); //  last: the harness waits for it
            zstr_free (&ctl);
            fclose (f);
        } else
            log_error ("cannot write endpoints file path=%s error=\"%s\"", config->endpoints_file,
                       strerror (errno));
    }
    zstr_free (&front);
    zstr_free (&back);

    int64_t next_beat = clock_now_ms () + config->heartbeat_ms;
    int64_t next_expire = clock_now_ms () + EXPIRE_MS;
    int64_t next_metrics = clock_now_ms ();
    int64_t stop_by = 0; //  when stopping: give up waiting for jobs then
    while (signals_stop_requests () < 2) {
        if ((signals_stop_requests () || self.shutdown) && !self.stopping) {
            self.stopping = true;
            stop_by = clock_now_ms () + config->shutdown_grace_ms;
            log_info ("broker stopping mode=%s queued=%zu in_flight=%zu grace=%dms",
                      config->drain ? "drain" : "fail-queued",
                      dispatch_queued_total (self.dispatch), dispatch_in_flight (self.dispatch),
                      config->shutdown_grace_ms);
            if (!config->drain) {
                dispatch_fail_all (self.dispatch, AMAAS_UNAVAILABLE,
                                   "the broker is shutting down: retry later or elsewhere",
                                   self.failed);
                s_answer_failed_list (&self);
            }
        }
        if (self.stopping && ((dispatch_queued_total (self.dispatch) == 0 &&
                               dispatch_in_flight (self.dispatch) == 0) ||
                              clock_now_ms () >= stop_by))
            break;
        int64_t wake = next_beat < next_expire ? next_beat : next_expire;
        if (next_metrics < wake)
            wake = next_metrics;
        int64_t wait = wake - clock_now_ms ();
        zmq_pollitem_t items[] = {{self.front, 0, ZMQ_POLLIN, 0},
                                  {self.back, 0, ZMQ_POLLIN, 0},
                                  {self.ctl, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll (items, 3, (long)(wait > 0 ? wait : 0)) > 0) {
            if (items[2].revents & ZMQ_POLLIN)
                s_on_control (&self);
            //  Both sides get a turn, a bounded one, so that a flood of
            //  requests cannot starve the results that free workers.  Each
            //  message is received into self.in, without waiting, until
            //  none is left or the burst is over.
            //  Jobs are dispatched after each burst, not after each message:
            //  the JOBs of a burst leave together, which lets libzmq write
            //  them in one go
            for (int i = 0; i < BURST && codec_frames_recv (&self.in, self.back) == 0; i++) {
                s_on_backend (&self);
                codec_frames_close (&self.in);
            }
            if (self.pump_due) {
                self.pump_due = false;
                s_pump (&self);
            }
            for (int i = 0; i < BURST && codec_frames_recv (&self.in, self.front) == 0; i++) {
                s_on_frontend (&self);
                codec_frames_close (&self.in);
            }
            if (self.pump_due) {
                self.pump_due = false;
                s_pump (&self);
            }
        }
        if (clock_now_ms () >= next_expire) {
            //  Queued jobs past their deadline are answered within this
            //  much of it, even when no worker frees up
            dispatch_expire (self.dispatch, clock_now_us (), self.failed);
            s_answer_failed_list (&self);
            next_expire = clock_now_ms () + EXPIRE_MS;
        }
        if (clock_now_ms () >= next_metrics) {
            metrics_tick (self.metrics, clock_now_ms ());
            if (config->metrics)
                s_publish_metrics (&self);
            admission_sweep (self.admission, clock_now_ms ());
            ratelimit_flush (self.peer_lines, clock_now_ms (), s_report_suppressed, NULL);
            ratelimit_flush (self.all_lines, clock_now_ms (), s_report_suppressed, NULL);
            next_metrics = clock_now_ms () + METRICS_MS;
        }
        if (clock_now_ms () >= next_beat) {
            s_on_heartbeat (&self);
            next_beat = clock_now_ms () + config->heartbeat_ms;
        }
    }
    log_info ("broker stopped jobs_ok=%" PRIu64 " jobs_failed=%" PRIu64
              " unanswered_in_flight=%zu queued=%zu",
              self.jobs_ok, self.jobs_failed, dispatch_in_flight (self.dispatch),
              dispatch_queued_total (self.dispatch));
    dispatch_shutdown (self.dispatch, self.failed);
    s_answer_failed_list (&self);
    rc = 0;
done:
    metrics_destroy (&self.metrics);
    ratelimit_destroy (&self.peer_lines);
    ratelimit_destroy (&self.all_lines);
    dispatch_jobs_destroy (&self.failed);
    dispatch_destroy (&self.dispatch);
    codec_header_reset (&self.header);
    codec_header_reset (&self.reply);
    zsock_destroy (&self.frontend);
    zsock_destroy (&self.backend);
    zsock_destroy (&self.control);
    auth_destroy (&self.auth);
    admission_destroy (&self.admission);
    return rc;
}
