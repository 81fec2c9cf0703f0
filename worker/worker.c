/*  worker.c - the amaas worker's event loop.

    Start: load every *.amm file of the models folder (a bad file is logged
    and skipped; the others are served), connect to the broker, send READY.
    Then: each JOB goes to the compute thread and comes back as one RESULT,
    success or error; heartbeats go both ways;
    the models folder is watched (inotify; SIGHUP too) and rescanned
    (catalog.h): a model file added, changed or removed changes what the
    worker serves without a restart, and a READY with the new list goes to
    the broker, which answers each READY with a READY.  A JOB names a
    model and, from brokers that choose one, a version; it is resolved to
    a catalog entry when it arrives, and the entry is referenced until the
    job is answered, so that a model replaced meanwhile finishes the jobs
    sent for it.  A JOB for a model the worker does not serve (any more) is
    answered UNAVAILABLE: the client library retries it.  A CANCEL_JOB
    answers the job CANCELLED if it still waits (not yet in a batch), and is
    ignored otherwise;
    when the broker has been silent for `liveness` intervals, the connection
    is given up (nothing more is sent on it) and a new one connects after a
    backoff that doubles up to 30 s; the backoff is a deadline of the event
    loop, not a sleep, so that signals, the folder's changes and the
    compute thread's results are handled meanwhile.
    On SIGINT or SIGTERM the worker drains: it tells the broker (DRAIN),
    which sends no more jobs and acknowledges; the worker finishes the jobs
    it holds, says DISCONNECT and exits 0.  A second signal stops at once.
    Models compute on a separate thread (compute.h), so heartbeats flow
    while a long batch runs.

    The steady state allocates nothing per job: JOBs are received in bursts
    as libzmq frames (codec_frames_recv), each into a job from the compute
    thread's pool that keeps the payload frame; the burst goes to the
    compute thread in one hand-off; finished jobs come back together when
    its eventfd wakes the poll, and each RESULT is sent frame by frame
    (codec_send_frames) before the job returns to the pool.
*/
#include "worker.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "amaas_defs.h"
#include "catalog.h"
#include "clock.h"
#include "codec.h"
#include "compute.h"
#include "list.h"
#include "log.h"
#include "curve.h"
#include "model.h"
#include "signals.h"

#define BACKOFF_MAX_MS 30000
#define RECV_BURST 256 //  messages received in a row before the loop looks elsewhere

typedef struct {
    const worker_config_t *config;
    catalog_config_t catalog_config; //  what the catalog needs
    catalog_t *catalog;              //  models served, and retired ones still in use
    int watch_fd;                    //  inotify on the models folder, or -1
    int reloads_seen;                //  SIGHUPs handled
    compute_config_t compute_config; //  what the compute thread needs
    compute_t *compute;              //  the compute thread
    zsock_t *sock;                   //  DEALER to the broker
    uint64_t connection;             //  count of connections made: the current one
    codec_frames_t frames;           //  message at hand
    codec_header_t header;           //  header of the message at hand
    codec_header_t reply;            //  header being built
    int64_t broker_expires_ms;       //  broker dead after this without a message
    int backoff_ms;                  //  next reconnect delay
    int64_t reconnect_ms;            //  broker silent: connect again at this time, 0: no
    size_t held;                     //  jobs at the compute thread
    bool draining;                   //  stopping: no new jobs, finish those held
    bool drain_acked;                //  the broker knows: no JOB is on its way
    bool refused;                    //  the broker refused our key
    uint64_t jobs_done;
    uint64_t cancelled; //  jobs answered CANCELLED
    uint64_t unserved;  //  jobs answered UNAVAILABLE: model not (or no longer) served
} worker_t;

void worker_config_defaults (worker_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->broker = DEFS_BACKEND_LOCAL;
    config->heartbeat_ms = 1000;
    config->liveness = 3;
    config->credit = 32;
    config->max_elements = 1u << 24;
    config->max_message = 256u << 20;
    config->max_batch = 256;
    config->batch_delay_us = 0;
}

//  Sends a message to the broker.  A message the socket refuses is lost,
//  as any message on the way to a broker that is gone; so is one sent
//  while the worker waits to reconnect (the connection is given up: what
//  it held is the broker's to requeue, and the new one starts with READY).
static void s_send_msg (worker_t *self, codec_cmd_t cmd, const codec_header_t *h,
                        zmq_msg_t *payload)
{
    if (self->reconnect_ms)
        return;
    if (codec_send_frames (zsock_resolve (self->sock), NULL, 0, cmd, h, payload))
        log_debug ("cannot send to the broker error=\"%s\"", zmq_strerror (zmq_errno ()));
}

//  Announces the models served and the count of files refused.  With no
//  model left (every file removed), the list is empty: the broker sends
//  nothing more until a model file appears again.  Not while the worker
//  waits to reconnect: the new connection starts with a READY.  Cannot
//  fail (out of memory is logged, and no READY goes).
static void s_send_ready (worker_t *self)
{
    if (self->reconnect_ms)
        return;
    if (catalog_size (self->catalog) == 0)
        log_warn ("no model to serve in folder=%s: the worker serves nothing until a model "
                  "file is added",
                  self->config->models_dir);
    codec_header_t *h = &self->reply;
    codec_header_reset (h);
    if (catalog_fill_ready (self->catalog, h)) {
        log_error ("out of memory for READY: not sent");
        return;
    }
    h->fields |= HDR_CREDIT | HDR_PID | HDR_HOST;
    h->credit = self->config->credit;
    h->pid = (uint32_t)getpid ();
    if (gethostname (h->host, sizeof h->host - 1))
        snprintf (h->host, sizeof h->host, "unknown");
    log_info ("ready sent models=%zu model_errors=%u", h->n_models, h->model_errors);
    s_send_msg (self, CMD_READY, h, NULL);
    catalog_ready_sent (self->catalog);
    codec_header_reset (h);
}

//  Replaces the socket with a new one connected to the broker, and sends
//  READY on it.  Returns 0, -1 if the socket cannot be made or set up
//  (logged): the worker stops.
static int s_connect_broker (worker_t *self)
{
    zsock_destroy (&self->sock);
    //  Results of jobs from an older connection mean nothing to the broker
    //  we reach now: they are dropped
    self->connection++;
    catalog_connected (self->catalog);
    self->sock = zsock_new (ZMQ_DEALER);
    if (!self->sock)
        return -1;
    zsock_set_linger (self->sock, 1000);
    if (self->config->server_cert || self->config->cert) {
        char err[512];
        if (curve_client_apply (self->sock, self->config->server_cert, self->config->cert, err,
                                sizeof err)) {
            log_error ("security: %s", err);
            return -1;
        }
    }
    zsock_set_maxmsgsize (self->sock, (int64_t)self->config->max_message);
    zsock_set_sndhwm (self->sock, 0);
    if (zsock_connect (self->sock, "%s", self->config->broker) == -1) {
        log_error ("cannot connect to the broker endpoint=%s error=\"%s\"", self->config->broker,
                   zmq_strerror (zmq_errno ()));
        return -1;
    }
    self->broker_expires_ms =
        clock_now_ms () + (int64_t)self->config->heartbeat_ms * self->config->liveness;
    s_send_ready (self);
    return 0;
}

//  Answers a job that is not computed (not served, cancelled) at once.
//  Cannot fail.
static void s_send_answer (worker_t *self, uint64_t token, amaas_code_t code, const char *message)
{
    codec_header_t *r = &self->reply;
    codec_header_reset (r);
    r->fields = HDR_JOB | HDR_CODE | HDR_COMPUTE_US;
    r->job = token;
    r->code = code;
    codec_header_set_message (r, "%s", message);
    s_send_msg (self, CMD_RESULT, r, NULL);
}

//  A JOB becomes a job for the compute thread, queued on jobs; it keeps the
//  payload frame, and a reference to the model that serves it.  A JOB not
//  served is answered UNAVAILABLE; one that finds no memory is dropped
//  (logged: the broker's deadline answers it).  Cannot fail otherwise.
static void s_on_job (worker_t *self, const codec_header_t *h, zmq_msg_t *payload, list_t *jobs)
{
    if (!(h->fields & HDR_JOB) || !(h->fields & HDR_MODEL)) {
        log_warn ("JOB without job token or model: dropped");
        return;
    }
    const char *version = h->fields & HDR_VERSION ? h->version : NULL;
    const batch_model_t *serving = catalog_resolve (self->catalog, h->model, version);
    if (!serving) {
        char message[CODEC_MESSAGE_MAX];
        if (version)
            snprintf (message, sizeof message,
                      "this worker does not serve model '%.100s' version '%s' (any more)", h->model,
                      version);
        else
            snprintf (message, sizeof message,
                      "this worker does not serve model '%.100s' (any more)", h->model);
        log_debug ("job not served model=%s version=%s", h->model, version ? version : "");
        self->unserved++;
        self->jobs_done++;
        s_send_answer (self, h->job, AMAAS_UNAVAILABLE, message);
        return;
    }
    batch_job_t *job = compute_job_take (self->compute);
    if (!job) {
        catalog_release (self->catalog, serving);
        log_error ("out of memory for a job: dropped");
        return;
    }
    job->token = h->job;
    job->connection = self->connection;
    job->serving = serving;
    memcpy (job->model, h->model, sizeof job->model);
    job->n_outputs = h->n_outputs;
    memcpy (job->outputs, h->outputs, h->n_outputs * sizeof h->outputs[0]);
    if (h->fields & HDR_DEADLINE_MS)
        job->deadline_us = clock_now_us () + (uint64_t)h->deadline_ms * 1000u;
    zmq_msg_move (&job->payload, payload);
    list_append (jobs, &job->node);
    self->held++;
}

//  A job answered (by the compute thread, the I/O thread or a cancel) is
//  done: its model loses a reference, and it goes back to the pool.
//  Cannot fail.
static void s_job_done (worker_t *self, batch_job_t *job)
{
    assert (self->held > 0);
    self->held--;
    self->jobs_done++;
    catalog_release (self->catalog, job->serving);
    compute_job_give_back (self->compute, job);
}

//  CANCEL_JOB: a job that still waits (received in this burst, or queued
//  for the compute thread) is answered CANCELLED; any other is left alone.
//  Cannot fail.
static void s_on_cancel (worker_t *self, const codec_header_t *h, list_t *jobs)
{
    if (!(h->fields & HDR_JOB)) {
        log_warn ("CANCEL_JOB without job token: ignored");
        return;
    }
    batch_job_t *job = batch_queue_take (jobs, h->job, self->connection);
    if (!job)
        job = compute_cancel (self->compute, h->job, self->connection);
    if (!job)
        return; //  computing, done, or unknown: its RESULT goes as usual
    s_send_answer (self, job->token, AMAAS_CANCELLED, "cancelled by the client");
    self->cancelled++;
    s_job_done (self, job);
}

//  Handles the message in self->frames; a JOB is queued on jobs.  A bad
//  message is logged and dropped.  Cannot fail.
static void s_on_broker_message (worker_t *self, list_t *jobs)
{
    char err[CODEC_MESSAGE_MAX];
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    codec_header_t *h = &self->header;
    if (codec_frames_parse (&self->frames, 0, &cmd, h, &payload, err, sizeof err))
        log_warn ("bad message from the broker error=\"%s\"", err);
    else if (cmd == CMD_JOB)
        s_on_job (self, h, payload, jobs);
    else if (cmd == CMD_CANCEL_JOB)
        s_on_cancel (self, h, jobs);
    else if (cmd == CMD_READY)
        //  The answer to a READY: no JOB for a model it did not list follows
        catalog_ready_answered (self->catalog);
    else if (cmd == CMD_DISCONNECT) {
        //  While draining, "I do not know you" means no job of ours is on
        //  its way either: the drain is acknowledged
        if (self->draining)
            self->drain_acked = true;
        else {
            log_info ("broker asked to register again reason=\"%s\"", h->message);
            s_send_ready (self);
        }
    } else if (cmd == CMD_DRAIN) {
        //  The broker's answer to our DRAIN, or an operator's drain: either
        //  way no job is on its way any more
        if (!self->draining)
            log_info ("worker draining on the broker's request jobs_held=%zu", self->held);
        self->draining = true;
        self->drain_acked = true;
    } else if (cmd == CMD_ERROR) {
        log_error ("broker reported an error code=%s message=\"%s\"", amaas_code_name (h->code),
                   h->message);
        //  Our key may not serve: nothing to do here
        if (h->code == AMAAS_PERMISSION_DENIED)
            self->refused = true;
    }
}

//  A finished job's RESULT: the outputs on success, the error otherwise.
//  Cannot fail.
static void s_send_result (worker_t *self, batch_job_t *job)
{
    codec_header_t *r = &self->reply;
    codec_header_reset (r);
    r->fields = HDR_JOB | HDR_CODE | HDR_COMPUTE_US;
    r->job = job->token;
    r->code = job->code;
    r->compute_us = job->compute_us;
    if (job->served_by) {
        codec_header_set_model (r, model_name (job->served_by));
        codec_header_set_version (r, model_version (job->served_by));
    }
    if (job->code != AMAAS_OK)
        codec_header_set_message (r, "%s", job->message);
    else {
        r->fields |= HDR_BATCH;
        r->batch = job->batch;
    }
    s_send_msg (self, CMD_RESULT, r, job->code == AMAAS_OK ? &job->result : NULL);
}

//  Receives what the broker sent, up to a burst, and hands the JOBs among
//  it to the compute thread at once.  Cannot fail.
static void s_on_broker_messages (worker_t *self)
{
    list_t jobs;
    list_init (&jobs);
    size_t count = 0;
    while (count < RECV_BURST &&
           codec_frames_recv (&self->frames, zsock_resolve (self->sock)) == 0) {
        s_on_broker_message (self, &jobs);
        codec_frames_close (&self->frames);
        count++;
    }
    //  A job that came alone, small, while the compute thread has nothing
    //  to do, is computed here: no hand-off, no wake-up.  Jobs that come
    //  together go to the compute thread, to be batched.
    if (list_size (&jobs) == 1) {
        batch_job_t *job = batch_queue_first (&jobs);
        list_remove (&jobs, &job->node);
        if (compute_run_inline (self->compute, job)) {
            s_send_result (self, job);
            s_job_done (self, job);
        } else
            list_append (&jobs, &job->node);
    }
    compute_submit (self->compute, &jobs);
    if (count) {
        self->broker_expires_ms =
            clock_now_ms () + (int64_t)self->config->heartbeat_ms * self->config->liveness;
        self->backoff_ms = self->config->heartbeat_ms;
    }
}

//  The jobs the compute thread finished go to the broker as RESULTs,
//  unless they came on a connection that was replaced since; then back to
//  the pool.  Cannot fail.
static void s_on_finished (worker_t *self)
{
    list_t finished;
    list_init (&finished);
    compute_take_finished (self->compute, &finished);
    batch_job_t *job;
    LIST_FOREACH (job, &finished, batch_job_t, node) {
        list_remove (&finished, &job->node);
        if (job->connection == self->connection)
            s_send_result (self, job);
        s_job_done (self, job);
    }
}

//  Sends a header-only command to the broker.  Cannot fail.
static void s_send_command (worker_t *self, codec_cmd_t cmd, const char *reason)
{
    codec_header_t *h = &self->reply;
    codec_header_reset (h);
    if (reason) {
        h->fields = HDR_REASON;
        snprintf (h->message, sizeof h->message, "%s", reason);
    }
    s_send_msg (self, cmd, h, NULL);
}

//  Starts watching the models folder.  Returns the inotify fd, or -1
//  (logged: SIGHUP still rescans).
static int s_watch_folder (const char *path)
{
    int fd = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
    if (fd == -1 || inotify_add_watch (fd, path,
                                       IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                           IN_ONLYDIR) == -1) {
        log_warn ("cannot watch models folder path=%s error=\"%s\" (send SIGHUP to reload)", path,
                  strerror (errno));
        if (fd != -1)
            close (fd);
        return -1;
    }
    return fd;
}

//  Reads every event the folder's watch has; true if one is about a model
//  file (or events were lost): time to rescan.  Cannot fail.
static bool s_folder_changed (int fd)
{
    char buf[4096] __attribute__ ((aligned (__alignof__(struct inotify_event))));
    bool changed = false;
    ssize_t len;
    while ((len = read (fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *event = (const struct inotify_event *)p;
            size_t name_len = event->len ? strlen (event->name) : 0;
            if (event->mask & (IN_Q_OVERFLOW | IN_IGNORED) ||
                (name_len > 4 && strcmp (event->name + name_len - 4, ".amm") == 0))
                changed = true;
            p += sizeof *event + event->len;
        }
    }
    return changed;
}

//  Rescans the models folder, and tells the broker if anything changed.
//  Not while draining: the broker is letting this worker go.  Cannot fail.
static void s_rescan (worker_t *self, const char *why)
{
    if (self->draining)
        return;
    //  An operator's SIGHUP is worth a line; the watch's events are not
    if (strcmp (why, "SIGHUP") == 0)
        log_info ("rescanning models folder=%s reason=%s", self->config->models_dir, why);
    else
        log_debug ("rescanning models folder=%s reason=%s", self->config->models_dir, why);
    if (catalog_rescan (self->catalog))
        s_send_ready (self);
}

int worker_run (const worker_config_t *config)
{
    worker_t self = {.config = config, .watch_fd = -1};
    int rc = -1;
    self.backoff_ms = config->heartbeat_ms;
    self.catalog_config.dir = config->models_dir;
    self.catalog_config.max_batch = config->max_batch;
    self.catalog_config.batch_delay_us = config->batch_delay_us;
    self.catalog_config.model_batch = config->model_batch;
    self.catalog = catalog_new (&self.catalog_config);
    if (!self.catalog)
        goto done;
    //  Watch first, then scan: a file that comes in between is not missed
    self.watch_fd = s_watch_folder (config->models_dir);
    self.reloads_seen = signals_reload_requests ();
    catalog_rescan (self.catalog);
    if (catalog_size (self.catalog) == 0) {
        log_error ("no model to serve in folder=%s (need *.amm files; see docs/MODEL_FORMAT.md)",
                   config->models_dir);
        goto done;
    }

    self.compute_config.max_elements = config->max_elements;
    self.compute = compute_new (&self.compute_config);
    if (!self.compute || s_connect_broker (&self))
        goto done;
    log_info ("worker started broker=%s models=%zu credit=%u", config->broker,
              catalog_size (self.catalog), config->credit);
    int64_t next_beat = clock_now_ms () + config->heartbeat_ms;
    while (true) {
        if (signals_stop_requests () > 1)
            break;
        if (self.refused) {
            log_error ("the broker refused this worker's key: stopping");
            goto done;
        }
        if (signals_stop_requests () && !self.draining) {
            log_info ("worker draining jobs_held=%zu", self.held);
            self.draining = true;
            s_send_command (&self, CMD_DRAIN, NULL);
        }
        //  Done draining: the broker sends nothing more (it acknowledged,
        //  or it is gone) and every job held is answered
        if (self.draining && self.held == 0 &&
            (self.drain_acked || clock_now_ms () > self.broker_expires_ms))
            break;
        if (signals_reload_requests () != self.reloads_seen) {
            self.reloads_seen = signals_reload_requests ();
            s_rescan (&self, "SIGHUP");
        }
        //  Until the next heartbeat, or the end of a reconnect's backoff;
        //  meanwhile the poll still wakes for finished jobs, the folder's
        //  changes and signals (EINTR), but the old socket is not read
        int64_t wake_at = self.reconnect_ms ? self.reconnect_ms : next_beat;
        int64_t wait = wake_at - clock_now_ms ();
        zmq_pollitem_t items[] = {
            {zsock_resolve (self.sock), 0, (short)(self.reconnect_ms ? 0 : ZMQ_POLLIN), 0},
            {NULL, compute_wake_fd (self.compute), ZMQ_POLLIN, 0},
            {NULL, self.watch_fd, ZMQ_POLLIN, 0}};
        if (zmq_poll (items, self.watch_fd == -1 ? 2 : 3, (long)(wait > 0 ? wait : 0)) > 0) {
            if (items[1].revents & ZMQ_POLLIN)
                s_on_finished (&self);
            if (items[0].revents & ZMQ_POLLIN)
                s_on_broker_messages (&self);
            if (self.watch_fd != -1 && (items[2].revents & ZMQ_POLLIN) &&
                s_folder_changed (self.watch_fd))
                s_rescan (&self, "inotify");
        }
        int64_t now = clock_now_ms ();
        if (now >= next_beat && !self.reconnect_ms) {
            s_send_command (&self, CMD_HEARTBEAT, NULL);
            next_beat = now + config->heartbeat_ms;
        }
        if (now > self.broker_expires_ms && !self.draining && !self.reconnect_ms) {
            log_warn ("broker silent, reconnecting broker=%s after=%dms", config->broker,
                      self.backoff_ms);
            self.reconnect_ms = now + self.backoff_ms;
            self.backoff_ms =
                self.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : self.backoff_ms * 2;
        }
        //  A worker that drains does not reconnect: it finishes its jobs
        //  and stops
        if (self.reconnect_ms && self.draining)
            self.reconnect_ms = 0;
        if (self.reconnect_ms && now >= self.reconnect_ms) {
            self.reconnect_ms = 0;
            if (s_connect_broker (&self))
                goto done;
        }
    }
    s_send_command (&self, CMD_DISCONNECT, "worker stopping");
    compute_destroy (&self.compute);
    log_info ("worker stopping jobs_done=%" PRIu64 " computed=%" PRIu64 " inlined=%" PRIu64
              " expired=%" PRIu64 " cancelled=%" PRIu64 " unserved=%" PRIu64 " jobs_held=%zu",
              self.jobs_done, self.compute_config.computed, self.compute_config.inlined,
              self.compute_config.expired, self.cancelled, self.unserved, self.held);
    rc = 0;
done:
    compute_destroy (&self.compute);
    codec_header_reset (&self.header);
    codec_header_reset (&self.reply);
    zsock_destroy (&self.sock);
    //  After the compute thread: no job points to a model any more
    catalog_destroy (&self.catalog);
    if (self.watch_fd != -1)
        close (self.watch_fd);
    return rc;
}
