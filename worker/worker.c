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

    Several brokers (--broker EP1,EP2,...; all active, none primary): the
    worker keeps a connection to each, with its own heartbeats, READYs and
    backoff, and takes jobs from all.  Its credit is shared so that the
    brokers together can never hand it more jobs than --credit: each broker
    is given a share in its READY, and the shares add up to at most the
    credit, counting for each broker the highest credit it may still
    believe (a lowered one counts only once the broker has answered the
    READY that lowered it) and the jobs it has here.  A broker that is
    given up keeps a reserve of 1 (what it gets when it comes back); the
    brokers heard from share the rest evenly (s_rebalance).
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

#define RECV_BURST 256 //  messages received in a row before the loop looks elsewhere

//  One broker of the list, and the connection to it
typedef struct {
    size_t index;                //  its place in the list (the catalog's broker number)
    char endpoint[256];          //  its backend endpoint
    zsock_t *sock;               //  DEALER to it, or NULL before the first connection
    uint64_t connection;         //  number of the current connection (unique over brokers)
    int64_t expires_ms;          //  silent after this: the connection is given up
    int backoff_ms;              //  next reconnect delay
    int64_t reconnect_ms;        //  given up: connect again at this time; 0: connected
    bool heard;                  //  a message came on the current connection
    bool drain_acked;            //  draining: it knows, no JOB of it is on its way
    size_t held;                 //  its jobs here, sent on the current connection
    size_t held_old;             //  its jobs here, sent on connections given up
    uint32_t credit_sent;        //  credit of the last READY sent on the connection
    uint32_t credit_acked;       //  credit it holds for sure (READYs all answered)
    uint32_t credit_pending_max; //  highest credit of the READYs not yet answered
    uint32_t readies_pending;    //  READYs not yet answered
} link_t;

typedef struct {
    const worker_config_t *config;
    catalog_config_t catalog_config; //  what the catalog needs
    catalog_t *catalog;              //  models served, and retired ones still in use
    int watch_fd;                    //  inotify on the models folder, or -1
    int reloads_seen;                //  SIGHUPs handled
    compute_config_t compute_config; //  what the compute thread needs
    compute_t *compute;              //  the compute thread
    link_t links[DEFS_BROKERS_MAX];  //  the brokers
    size_t n_links;                  //  how many
    uint64_t connections;            //  connections made (to any broker)
    codec_frames_t frames;           //  message at hand
    codec_header_t header;           //  header of the message at hand
    codec_header_t reply;            //  header being built
    size_t held;                     //  jobs at the compute thread
    bool draining;                   //  stopping: no new jobs, finish those held
    bool refused;                    //  a broker refused our key
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
static void s_send_msg (link_t *link, codec_cmd_t cmd, const codec_header_t *h, zmq_msg_t *payload)
{
    if (link->reconnect_ms || !link->sock)
        return;
    if (codec_send_frames (zsock_resolve (link->sock), NULL, 0, cmd, h, payload))
        log_debug ("cannot send to the broker broker=%s error=\"%s\"", link->endpoint,
                   zmq_strerror (zmq_errno ()));
}

//  Announces to one broker the models served, the count of files refused
//  and `credit`.  With no model left (every file removed), the list is
//  empty: the broker sends nothing more until a model file appears again.
//  Not while the connection waits to be made again: the new one starts
//  with a READY.  Cannot fail (out of memory is logged, and no READY goes).
static void s_send_ready_to (worker_t *self, link_t *link, uint32_t credit)
{
    if (link->reconnect_ms || !link->sock)
        return;
    codec_header_t *h = &self->reply;
    codec_header_reset (h);
    if (catalog_fill_ready (self->catalog, h)) {
        log_error ("out of memory for READY: not sent");
        return;
    }
    h->fields |= HDR_CREDIT | HDR_PID | HDR_HOST;
    h->credit = credit;
    h->pid = (uint32_t)getpid ();
    if (gethostname (h->host, sizeof h->host - 1))
        snprintf (h->host, sizeof h->host, "unknown");
    log_info ("ready sent broker=%s models=%zu model_errors=%u credit=%u", link->endpoint,
              h->n_models, h->model_errors, credit);
    s_send_msg (link, CMD_READY, h, NULL);
    catalog_ready_sent (self->catalog, link->index);
    link->credit_sent = credit;
    if (credit > link->credit_pending_max)
        link->credit_pending_max = credit;
    link->readies_pending++;
    codec_header_reset (h);
}

//  The models changed: every broker connected hears of it, its credit
//  unchanged.  Cannot fail.
static void s_send_ready (worker_t *self)
{
    if (catalog_size (self->catalog) == 0)
        log_warn ("no model to serve in folder=%s: the worker serves nothing until a model "
                  "file is added",
                  self->config->models_dir);
    for (size_t i = 0; i < self->n_links; i++)
        s_send_ready_to (self, &self->links[i], self->links[i].credit_sent);
}

//  What a broker may use of the credit on its current connection: the
//  highest credit it may believe it has (none once the connection is given
//  up: nothing it sends on it is read), at least the jobs it sent on it,
//  and a reserve of 1 while it is not heard from (what it gets when it
//  comes back).
static uint32_t s_credit_now (const link_t *link)
{
    uint32_t used = 0;
    if (!link->reconnect_ms && link->sock)
        used = link->credit_acked > link->credit_pending_max ? link->credit_acked
                                                             : link->credit_pending_max;
    if (link->held > used)
        used = (uint32_t)link->held;
    if (!link->heard && used < 1)
        used = 1;
    return used;
}

//  What a broker uses of the credit: that, and the jobs of its connections
//  given up, still here.
static uint32_t s_credit_used (const link_t *link)
{
    return s_credit_now (link) + (uint32_t)link->held_old;
}

//  Shares the credit among the brokers heard from, evenly, keeping a
//  reserve of 1 for each of the others: a broker over its share is told
//  its lower credit at once; one under its share gets what the others
//  have freed (credit - what every broker may use).  Not while draining.
//  Cannot fail.
static void s_rebalance (worker_t *self)
{
    if (self->draining)
        return;
    size_t up = 0;
    for (size_t i = 0; i < self->n_links; i++)
        if (self->links[i].heard && !self->links[i].reconnect_ms)
            up++;
    if (up == 0)
        return;
    uint32_t credit = self->config->credit;
    uint32_t shared = credit - (uint32_t)(self->n_links - up);
    uint32_t target[DEFS_BROKERS_MAX] = {0};
    size_t k = 0;
    for (size_t i = 0; i < self->n_links; i++) {
        link_t *link = &self->links[i];
        if (!link->heard || link->reconnect_ms)
            continue;
        target[i] = shared / (uint32_t)up + (k++ < shared % up ? 1 : 0);
        if (link->credit_sent > target[i])
            s_send_ready_to (self, link, target[i]);
    }
    uint32_t used = 0;
    for (size_t i = 0; i < self->n_links; i++)
        used += s_credit_used (&self->links[i]);
    uint32_t slack = used < credit ? credit - used : 0;
    for (size_t i = 0; i < self->n_links && slack; i++) {
        link_t *link = &self->links[i];
        if (!target[i] || link->credit_sent >= target[i])
            continue;
        uint32_t mine = s_credit_now (link);
        uint32_t give = mine + slack < target[i] ? mine + slack : target[i];
        //  Not a READY for each job finished: a quarter of the share at once
        if (give <= link->credit_sent ||
            (give < target[i] && give - link->credit_sent < (target[i] + 3) / 4))
            continue;
        slack -= give > mine ? give - mine : 0;
        s_send_ready_to (self, link, give);
    }
}

//  Replaces the connection to one broker with a new one, and sends READY
//  on it with the credit it may have now (all of it when it is the only
//  broker).  Returns 0, -1 if the socket cannot be made or set up
//  (logged): the worker stops.
static int s_connect_broker (worker_t *self, link_t *link)
{
    zsock_destroy (&link->sock);
    //  Results of jobs from an older connection mean nothing to the broker
    //  we reach now: they are dropped
    link->connection = ++self->connections;
    link->held_old += link->held;
    link->held = 0;
    link->reconnect_ms = 0;
    link->heard = false;
    link->credit_sent = link->credit_acked = link->credit_pending_max = 0;
    link->readies_pending = 0;
    catalog_connected (self->catalog, link->index);
    link->sock = zsock_new (ZMQ_DEALER);
    if (!link->sock)
        return -1;
    zsock_set_linger (link->sock, 1000);
    if (self->config->server_cert || self->config->cert) {
        char err[512];
        if (curve_client_apply (link->sock, self->config->server_cert, self->config->cert, err,
                                sizeof err)) {
            log_error ("security: %s", err);
            return -1;
        }
    }
    zsock_set_maxmsgsize (link->sock, (int64_t)self->config->max_message);
    zsock_set_sndhwm (link->sock, 0);
    if (zsock_connect (link->sock, "%s", link->endpoint) == -1) {
        log_error ("cannot connect to the broker endpoint=%s error=\"%s\"", link->endpoint,
                   zmq_strerror (zmq_errno ()));
        return -1;
    }
    link->expires_ms =
        clock_now_ms () + (int64_t)self->config->heartbeat_ms * self->config->liveness;
    //  What the other brokers and its own old jobs leave, up to the share
    //  it would have if it were heard from; at least its reserve of 1
    uint32_t others = (uint32_t)link->held_old;
    size_t up = 1;
    for (size_t i = 0; i < self->n_links; i++)
        if (&self->links[i] != link) {
            others += s_credit_used (&self->links[i]);
            if (self->links[i].heard && !self->links[i].reconnect_ms)
                up++;
        }
    uint32_t shared = self->config->credit - (uint32_t)(self->n_links - up);
    uint32_t share = shared / (uint32_t)up + (shared % up ? 1 : 0);
    uint32_t credit = others < self->config->credit ? self->config->credit - others : 1;
    if (credit > share)
        credit = share;
    s_send_ready_to (self, link, credit ? credit : 1);
    return 0;
}

//  Answers a job that is not computed (not served, cancelled) at once.
//  Cannot fail.
static void s_send_answer (worker_t *self, link_t *link, uint64_t token, amaas_code_t code,
                           const char *message)
{
    codec_header_t *r = &self->reply;
    codec_header_reset (r);
    r->fields = HDR_JOB | HDR_CODE | HDR_COMPUTE_US;
    r->job = token;
    r->code = code;
    codec_header_set_message (r, "%s", message);
    s_send_msg (link, CMD_RESULT, r, NULL);
}

//  A JOB becomes a job for the compute thread, queued on jobs; it keeps the
//  payload frame, and a reference to the model that serves it.  A JOB not
//  served is answered UNAVAILABLE; one that finds no memory is dropped
//  (logged: the broker's deadline answers it).  Cannot fail otherwise.
static void s_on_job (worker_t *self, link_t *link, const codec_header_t *h, zmq_msg_t *payload,
                      list_t *jobs)
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
        s_send_answer (self, link, h->job, AMAAS_UNAVAILABLE, message);
        return;
    }
    batch_job_t *job = compute_job_take (self->compute);
    if (!job) {
        catalog_release (self->catalog, serving);
        log_error ("out of memory for a job: dropped");
        return;
    }
    job->token = h->job;
    job->connection = link->connection;
    job->broker = (uint32_t)link->index;
    job->serving = serving;
    memcpy (job->model, h->model, sizeof job->model);
    job->n_outputs = h->n_outputs;
    memcpy (job->outputs, h->outputs, h->n_outputs * sizeof h->outputs[0]);
    if (h->fields & HDR_DEADLINE_MS)
        job->deadline_us = clock_now_us () + (uint64_t)h->deadline_ms * 1000u;
    zmq_msg_move (&job->payload, payload);
    list_append (jobs, &job->node);
    self->held++;
    link->held++;
}

//  A job answered (by the compute thread, the I/O thread or a cancel) is
//  done: its model loses a reference, and it goes back to the pool.
//  Cannot fail.
static void s_job_done (worker_t *self, batch_job_t *job)
{
    link_t *link = &self->links[job->broker];
    assert (self->held > 0);
    self->held--;
    if (job->connection == link->connection) {
        assert (link->held > 0);
        link->held--;
    } else {
        assert (link->held_old > 0);
        link->held_old--;
    }
    self->jobs_done++;
    catalog_release (self->catalog, job->serving);
    compute_job_give_back (self->compute, job);
}

//  CANCEL_JOB: a job that still waits (received in this burst, or queued
//  for the compute thread) is answered CANCELLED; any other is left alone.
//  Cannot fail.
static void s_on_cancel (worker_t *self, link_t *link, const codec_header_t *h, list_t *jobs)
{
    if (!(h->fields & HDR_JOB)) {
        log_warn ("CANCEL_JOB without job token: ignored");
        return;
    }
    batch_job_t *job = batch_queue_take (jobs, h->job, link->connection);
    if (!job)
        job = compute_cancel (self->compute, h->job, link->connection);
    if (!job)
        return; //  computing, done, or unknown: its RESULT goes as usual
    s_send_answer (self, link, job->token, AMAAS_CANCELLED, "cancelled by the client");
    self->cancelled++;
    s_job_done (self, job);
}

//  Sends a header-only command to every broker.  Cannot fail.
static void s_send_command (worker_t *self, codec_cmd_t cmd, const char *reason)
{
    codec_header_t *h = &self->reply;
    codec_header_reset (h);
    if (reason) {
        h->fields = HDR_REASON;
        snprintf (h->message, sizeof h->message, "%s", reason);
    }
    for (size_t i = 0; i < self->n_links; i++)
        s_send_msg (&self->links[i], cmd, h, NULL);
}

//  Handles the message in self->frames; a JOB is queued on jobs.  A bad
//  message is logged and dropped.  Cannot fail.
static void s_on_broker_message (worker_t *self, link_t *link, list_t *jobs)
{
    char err[CODEC_MESSAGE_MAX];
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    codec_header_t *h = &self->header;
    if (codec_frames_parse (&self->frames, 0, &cmd, h, &payload, err, sizeof err))
        log_warn ("bad message from the broker broker=%s error=\"%s\"", link->endpoint, err);
    else if (cmd == CMD_JOB)
        s_on_job (self, link, h, payload, jobs);
    else if (cmd == CMD_CANCEL_JOB)
        s_on_cancel (self, link, h, jobs);
    else if (cmd == CMD_READY) {
        //  The answer to a READY: no JOB for a model it did not list
        //  follows, and once every READY is answered, its credit is the last
        catalog_ready_answered (self->catalog, link->index);
        if (link->readies_pending && --link->readies_pending == 0) {
            link->credit_acked = link->credit_sent;
            link->credit_pending_max = 0;
        }
    } else if (cmd == CMD_DISCONNECT) {
        //  While draining, "I do not know you" means no job of ours is on
        //  its way either: the drain is acknowledged
        if (self->draining)
            link->drain_acked = true;
        else {
            log_info ("broker asked to register again broker=%s reason=\"%s\"", link->endpoint,
                      h->message);
            s_send_ready_to (self, link, link->credit_sent);
        }
    } else if (cmd == CMD_DRAIN) {
        //  The broker's answer to our DRAIN, or an operator's drain: either
        //  way no job is on its way from it any more; the others are told
        if (!self->draining) {
            log_info ("worker draining on the broker's request broker=%s jobs_held=%zu",
                      link->endpoint, self->held);
            self->draining = true;
            s_send_command (self, CMD_DRAIN, NULL);
        }
        link->drain_acked = true;
    } else if (cmd == CMD_ERROR) {
        log_error ("broker reported an error broker=%s code=%s message=\"%s\"", link->endpoint,
                   amaas_code_name (h->code), h->message);
        //  Our key may not serve: nothing to do here
        if (h->code == AMAAS_PERMISSION_DENIED)
            self->refused = true;
    }
}

//  A finished job's RESULT: the outputs on success, the error otherwise.
//  Cannot fail.
static void s_send_result (worker_t *self, link_t *link, batch_job_t *job)
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
    s_send_msg (link, CMD_RESULT, r, job->code == AMAAS_OK ? &job->result : NULL);
}

//  Receives what a broker sent, up to a burst, and hands the JOBs among
//  it to the compute thread at once.  Cannot fail.
static void s_on_broker_messages (worker_t *self, link_t *link)
{
    list_t jobs;
    list_init (&jobs);
    size_t count = 0;
    while (count < RECV_BURST &&
           codec_frames_recv (&self->frames, zsock_resolve (link->sock)) == 0) {
        s_on_broker_message (self, link, &jobs);
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
            s_send_result (self, link, job);
            s_job_done (self, job);
        } else
            list_append (&jobs, &job->node);
    }
    compute_submit (self->compute, &jobs);
    if (count) {
        link->expires_ms =
            clock_now_ms () + (int64_t)self->config->heartbeat_ms * self->config->liveness;
        link->backoff_ms = self->config->heartbeat_ms;
        if (!link->heard) {
            link->heard = true;
            log_info ("broker answers broker=%s", link->endpoint);
        }
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
        link_t *link = &self->links[job->broker];
        if (job->connection == link->connection)
            s_send_result (self, link, job);
        s_job_done (self, job);
    }
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

//  Splits the comma-separated list of broker endpoints into self->links.
//  Returns 0, -1 (logged) for an empty, too long or repeated entry, more
//  than DEFS_BROKERS_MAX brokers, or fewer credits than brokers.
static int s_parse_brokers (worker_t *self, const char *list)
{
    const char *p = list;
    while (true) {
        size_t len = strcspn (p, ",");
        if (self->n_links == DEFS_BROKERS_MAX) {
            log_error ("--broker lists more than %d brokers", DEFS_BROKERS_MAX);
            return -1;
        }
        link_t *link = &self->links[self->n_links];
        if (len == 0 || len >= sizeof link->endpoint) {
            log_error ("--broker list=\"%s\" has an empty or too long endpoint", list);
            return -1;
        }
        memcpy (link->endpoint, p, len);
        link->endpoint[len] = 0;
        for (size_t i = 0; i < self->n_links; i++)
            if (strcmp (self->links[i].endpoint, link->endpoint) == 0) {
                log_error ("--broker lists endpoint=%s twice", link->endpoint);
                return -1;
            }
        link->index = self->n_links++;
        link->backoff_ms = self->config->heartbeat_ms;
        if (p[len] == 0)
            break;
        p += len + 1;
    }
    if (self->config->credit < self->n_links) {
        log_error ("--credit %u is less than the %zu brokers: each needs 1 at least",
                   self->config->credit, self->n_links);
        return -1;
    }
    return 0;
}

//  A draining worker is done when it holds no job and every broker knows
//  it drains (it answered) or is silent past its liveness.
static bool s_drained (const worker_t *self, int64_t now)
{
    if (!self->draining || self->held)
        return false;
    for (size_t i = 0; i < self->n_links; i++)
        if (!self->links[i].drain_acked && now <= self->links[i].expires_ms)
            return false;
    return true;
}

int worker_run (const worker_config_t *config)
{
    worker_t self = {.config = config, .watch_fd = -1};
    int rc = -1;
    if (s_parse_brokers (&self, config->broker))
        return -1;
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
    if (!self.compute)
        goto done;
    for (size_t i = 0; i < self.n_links; i++)
        if (s_connect_broker (&self, &self.links[i]))
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
        //  Done draining: the brokers send nothing more (they acknowledged,
        //  or they are gone) and every job held is answered
        if (s_drained (&self, clock_now_ms ()))
            break;
        if (signals_reload_requests () != self.reloads_seen) {
            self.reloads_seen = signals_reload_requests ();
            s_rescan (&self, "SIGHUP");
        }
        s_rebalance (&self);
        //  Until the next heartbeat, or the end of a reconnect's backoff;
        //  meanwhile the poll still wakes for finished jobs, the folder's
        //  changes and signals (EINTR), but a given-up connection is not read
        int64_t wake_at = next_beat;
        zmq_pollitem_t items[DEFS_BROKERS_MAX + 2];
        size_t n_items = 0;
        for (size_t i = 0; i < self.n_links; i++) {
            link_t *link = &self.links[i];
            if (link->reconnect_ms && link->reconnect_ms < wake_at)
                wake_at = link->reconnect_ms;
            items[n_items++] = (zmq_pollitem_t){zsock_resolve (link->sock), 0,
                                                (short)(link->reconnect_ms ? 0 : ZMQ_POLLIN), 0};
        }
        items[n_items++] = (zmq_pollitem_t){NULL, compute_wake_fd (self.compute), ZMQ_POLLIN, 0};
        if (self.watch_fd != -1)
            items[n_items++] = (zmq_pollitem_t){NULL, self.watch_fd, ZMQ_POLLIN, 0};
        int64_t wait = wake_at - clock_now_ms ();
        if (zmq_poll (items, (int)n_items, (long)(wait > 0 ? wait : 0)) > 0) {
            if (items[self.n_links].revents & ZMQ_POLLIN)
                s_on_finished (&self);
            for (size_t i = 0; i < self.n_links; i++)
                if (items[i].revents & ZMQ_POLLIN)
                    s_on_broker_messages (&self, &self.links[i]);
            if (self.watch_fd != -1 && (items[self.n_links + 1].revents & ZMQ_POLLIN) &&
                s_folder_changed (self.watch_fd))
                s_rescan (&self, "inotify");
        }
        int64_t now = clock_now_ms ();
        if (now >= next_beat) {
            s_send_command (&self, CMD_HEARTBEAT, NULL);
            next_beat = now + config->heartbeat_ms;
        }
        for (size_t i = 0; i < self.n_links; i++) {
            link_t *link = &self.links[i];
            if (now > link->expires_ms && !self.draining && !link->reconnect_ms) {
                log_warn ("broker silent, reconnecting broker=%s after=%dms", link->endpoint,
                          link->backoff_ms);
                link->reconnect_ms = now + link->backoff_ms;
                link->heard = false;
                link->backoff_ms = link->backoff_ms * 2 > DEFS_RECONNECT_MAX_MS
                                       ? DEFS_RECONNECT_MAX_MS
                                       : link->backoff_ms * 2;
            }
            //  A worker that drains does not reconnect: it finishes its
            //  jobs and stops
            if (link->reconnect_ms && self.draining)
                link->reconnect_ms = 0;
            if (link->reconnect_ms && now >= link->reconnect_ms && s_connect_broker (&self, link))
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
    for (size_t i = 0; i < self.n_links; i++)
        zsock_destroy (&self.links[i].sock);
    //  After the compute thread: no job points to a model any more
    catalog_destroy (&self.catalog);
    if (self.watch_fd != -1)
        close (self.watch_fd);
    return rc;
}
