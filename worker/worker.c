/*  worker.c - the amaas worker's event loop.

    Start: load every *.amm file of the models folder (a bad file is logged
    and skipped; the others are served), connect to the broker, send READY.
    Then: each JOB goes to the compute thread and comes back as one RESULT,
    success or error; heartbeats go both ways;
    when the broker has been silent for `liveness` intervals, the socket is
    closed and a new one connects after a backoff that doubles up to 30 s.
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

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "log.h"
#include "compute.h"
#include "curve.h"
#include "model.h"
#include "signals.h"

#define MAX_MODELS CODEC_MAX_MODELS
#define BACKOFF_MAX_MS 30000
#define RECV_BURST 256 //  messages received in a row before the loop looks elsewhere

typedef struct {
    const worker_config_t *config;
    model_t *models[MAX_MODELS]; //  loaded models
    size_t n_models;
    compute_config_t compute_config; //  what the compute thread needs
    compute_t *compute;              //  the compute thread
    zsock_t *sock;                   //  DEALER to the broker
    uint64_t connection;             //  count of connections made: the current one
    codec_frames_t frames;           //  message at hand
    codec_header_t header;           //  header of the message at hand
    codec_header_t reply;            //  header being built
    int64_t broker_expires_ms;       //  broker dead after this without a message
    int backoff_ms;                  //  next reconnect delay
    size_t held;                     //  jobs at the compute thread
    bool draining;                   //  stopping: no new jobs, finish those held
    bool drain_acked;                //  the broker knows: no JOB is on its way
    bool refused;                    //  the broker refused our key
    uint64_t jobs_done;
} worker_t;

void worker_config_defaults (worker_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->broker = "tcp://127.0.0.1:5556";
    config->heartbeat_ms = 1000;
    config->liveness = 3;
    config->credit = 32;
    config->max_elements = 1u << 24;
    config->max_message = 256u << 20;
    config->max_batch = 256;
    config->batch_delay_us = 0;
}

static int compare_names (const void *a, const void *b)
{
    return strcmp (*(char *const *)a, *(char *const *)b);
}

//  Loads every *.amm file of the folder, in name order.  Returns how many
//  loaded; bad files are logged and skipped.
static size_t load_models (worker_t *self, const char *dir_path)
{
    DIR *dir = opendir (dir_path);
    if (!dir) {
        log_error ("cannot open models folder path=%s error=\"%s\"", dir_path, strerror (errno));
        return 0;
    }
    char *names[MAX_MODELS];
    size_t n = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)) && n < MAX_MODELS) {
        size_t len = strlen (entry->d_name);
        if (len > 4 && strcmp (entry->d_name + len - 4, ".amm") == 0)
            names[n++] = strdup (entry->d_name);
    }
    closedir (dir);
    qsort (names, n, sizeof names[0], compare_names);
    for (size_t i = 0; i < n; i++) {
        char path[4096], err[512];
        snprintf (path, sizeof path, "%s/%s", dir_path, names[i]);
        model_t *model = model_load (path, err, sizeof err);
        if (!model)
            log_error ("model refused path=%s error=\"%s\"", path, err);
        else {
            bool dup = false;
            for (size_t j = 0; j < self->n_models; j++)
                dup |= strcmp (model_name (self->models[j]), model_name (model)) == 0;
            if (dup) {
                log_error ("model refused path=%s error=\"another file already holds model "
                           "'%s'\"",
                           path, model_name (model));
                model_destroy (&model);
            } else {
                log_info ("model loaded name=%s version=%s path=%s inputs=%zu outputs=%zu",
                          model_name (model), model_version (model), path,
                          model_input_width (model), model_output_count (model));
                self->models[self->n_models++] = model;
            }
        }
        free (names[i]);
    }
    return self->n_models;
}

//  Sends a message to the broker.  A message the socket refuses is lost,
//  as any message on the way to a broker that is gone.
static void send_msg (worker_t *self, codec_cmd_t cmd, const codec_header_t *h, zmq_msg_t *payload)
{
    if (codec_send_frames (zsock_resolve (self->sock), NULL, 0, cmd, h, payload))
        log_debug ("cannot send to the broker error=\"%s\"", zmq_strerror (zmq_errno ()));
}

static void send_ready (worker_t *self)
{
    codec_header_t *h = &self->reply;
    codec_header_reset (h);
    h->models = calloc (self->n_models, sizeof (codec_model_t));
    if (!h->models)
        return;
    h->n_models = self->n_models;
    for (size_t i = 0; i < self->n_models; i++) {
        snprintf (h->models[i].name, CODEC_NAME_MAX, "%s", model_name (self->models[i]));
        snprintf (h->models[i].version, CODEC_VERSION_MAX, "%s", model_version (self->models[i]));
        h->models[i].width = (uint32_t)model_input_width (self->models[i]);
    }
    h->fields = HDR_MODELS | HDR_CREDIT | HDR_PID | HDR_HOST;
    h->credit = self->config->credit;
    h->pid = (uint32_t)getpid ();
    if (gethostname (h->host, sizeof h->host - 1))
        snprintf (h->host, sizeof h->host, "unknown");
    send_msg (self, CMD_READY, h, NULL);
    codec_header_reset (h);
}

static int connect_broker (worker_t *self)
{
    zsock_destroy (&self->sock);
    //  Results of jobs from an older connection mean nothing to the broker
    //  we reach now: they are dropped
    self->connection++;
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
    send_ready (self);
    return 0;
}

//  A JOB becomes a job for the compute thread, queued on jobs; it keeps the
//  payload frame.
static void on_job (worker_t *self, const codec_header_t *h, zmq_msg_t *payload, wrk_queue_t *jobs)
{
    if (!(h->fields & HDR_JOB) || !(h->fields & HDR_MODEL)) {
        log_warn ("JOB without job token or model: dropped");
        return;
    }
    wrk_job_t *job = compute_job_take (self->compute);
    if (!job) {
        log_error ("out of memory for a job: dropped");
        return;
    }
    job->token = h->job;
    job->connection = self->connection;
    memcpy (job->model, h->model, sizeof job->model);
    job->n_outputs = h->n_outputs;
    memcpy (job->outputs, h->outputs, h->n_outputs * sizeof h->outputs[0]);
    if (h->fields & HDR_DEADLINE_MS)
        job->deadline_us = clock_now_us () + (uint64_t)h->deadline_ms * 1000u;
    zmq_msg_move (&job->payload, payload);
    wrk_queue_push (jobs, job);
    self->held++;
}

//  Handles the message in self->frames; a JOB is queued on jobs.
static void on_broker_message (worker_t *self, wrk_queue_t *jobs)
{
    char err[CODEC_MESSAGE_MAX];
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    codec_header_t *h = &self->header;
    if (codec_frames_parse (&self->frames, 0, &cmd, h, &payload, err, sizeof err))
        log_warn ("bad message from the broker error=\"%s\"", err);
    else if (cmd == CMD_JOB)
        on_job (self, h, payload, jobs);
    else if (cmd == CMD_DISCONNECT) {
        //  While draining, "I do not know you" means no job of ours is on
        //  its way either: the drain is acknowledged
        if (self->draining)
            self->drain_acked = true;
        else {
            log_info ("broker asked to register again reason=\"%s\"", h->message);
            send_ready (self);
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
static void send_result (worker_t *self, wrk_job_t *job)
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
    send_msg (self, CMD_RESULT, r, job->code == AMAAS_OK ? &job->result : NULL);
}

//  Receives what the broker sent, up to a burst, and hands the JOBs among
//  it to the compute thread at once.
static void on_broker_messages (worker_t *self)
{
    wrk_queue_t jobs = {NULL, NULL};
    size_t count = 0;
    while (count < RECV_BURST &&
           codec_frames_recv (&self->frames, zsock_resolve (self->sock)) == 0) {
        on_broker_message (self, &jobs);
        codec_frames_close (&self->frames);
        count++;
    }
    //  A job that came alone, small, while the compute thread has nothing
    //  to do, is computed here: no hand-off, no wake-up.  Jobs that come
    //  together go to the compute thread, to be batched.
    wrk_job_t *job = jobs.first;
    if (job && job == jobs.last && compute_run_inline (self->compute, job)) {
        jobs.first = jobs.last = NULL;
        self->held--;
        self->jobs_done++;
        send_result (self, job);
        compute_job_give_back (self->compute, job);
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
//  the pool.
static void on_finished (worker_t *self)
{
    wrk_job_t *job = compute_take_finished (self->compute);
    while (job) {
        wrk_job_t *next = job->next;
        self->held--;
        self->jobs_done++;
        if (job->connection == self->connection)
            send_result (self, job);
        compute_job_give_back (self->compute, job);
        job = next;
    }
}

//  Batch size and delay of each model: the defaults, then the overrides.
//  Returns 0, or -1 (logged) for an override that names no loaded model or
//  does not parse.
static int batch_settings (worker_t *self)
{
    compute_config_t *c = &self->compute_config;
    c->max_batch = calloc (self->n_models, sizeof *c->max_batch);
    c->batch_delay_us = calloc (self->n_models, sizeof *c->batch_delay_us);
    if (!c->max_batch || !c->batch_delay_us)
        return -1;
    for (size_t i = 0; i < self->n_models; i++) {
        c->max_batch[i] = self->config->max_batch;
        c->batch_delay_us[i] = self->config->batch_delay_us;
    }
    for (const char **o = self->config->model_batch; o && *o; o++) {
        char name[CODEC_NAME_MAX];
        unsigned long rows = 0, delay = 0;
        int fields = sscanf (*o, "%127[^=]=%lu:%lu", name, &rows, &delay);
        size_t i = 0;
        while (fields >= 2 && i < self->n_models && strcmp (model_name (self->models[i]), name))
            i++;
        if (fields < 2 || rows < 1 || i == self->n_models) {
            log_error ("bad --model-batch value=\"%s\" (want NAME=ROWS[:DELAY_US] for a loaded "
                       "model)",
                       *o);
            return -1;
        }
        c->max_batch[i] = rows;
        if (fields == 3)
            c->batch_delay_us[i] = delay;
    }
    return 0;
}

//  Sends a header-only command to the broker.
static void send_command (worker_t *self, codec_cmd_t cmd, const char *reason)
{
    codec_header_t *h = &self->reply;
    codec_header_reset (h);
    if (reason) {
        h->fields = HDR_REASON;
        snprintf (h->message, sizeof h->message, "%s", reason);
    }
    send_msg (self, cmd, h, NULL);
}

int worker_run (const worker_config_t *config)
{
    worker_t self = {.config = config};
    int rc = -1;
    self.backoff_ms = config->heartbeat_ms;
    if (load_models (&self, config->models_dir) == 0) {
        log_error ("no model to serve in folder=%s (need *.amm files; see docs/MODEL_FORMAT.md)",
                   config->models_dir);
        goto done;
    }

    self.compute_config.models = self.models;
    self.compute_config.n_models = self.n_models;
    self.compute_config.max_elements = config->max_elements;
    if (batch_settings (&self))
        goto done;
    self.compute = compute_new (&self.compute_config);
    if (!self.compute || connect_broker (&self))
        goto done;
    log_info ("worker started broker=%s models=%zu credit=%u", config->broker, self.n_models,
              config->credit);
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
            send_command (&self, CMD_DRAIN, NULL);
        }
        //  Done draining: the broker sends nothing more (it acknowledged,
        //  or it is gone) and every job held is answered
        if (self.draining && self.held == 0 &&
            (self.drain_acked || clock_now_ms () > self.broker_expires_ms))
            break;
        int64_t wait = next_beat - clock_now_ms ();
        zmq_pollitem_t items[] = {{zsock_resolve (self.sock), 0, ZMQ_POLLIN, 0},
                                  {NULL, compute_wake_fd (self.compute), ZMQ_POLLIN, 0}};
        if (zmq_poll (items, 2, (long)(wait > 0 ? wait : 0)) > 0) {
            if (items[1].revents & ZMQ_POLLIN)
                on_finished (&self);
            if (items[0].revents & ZMQ_POLLIN)
                on_broker_messages (&self);
        }
        int64_t now = clock_now_ms ();
        if (now >= next_beat) {
            send_command (&self, CMD_HEARTBEAT, NULL);
            next_beat = now + config->heartbeat_ms;
        }
        if (now > self.broker_expires_ms && !self.draining) {
            log_warn ("broker silent, reconnecting broker=%s after=%dms", config->broker,
                      self.backoff_ms);
            zclock_sleep (self.backoff_ms);
            self.backoff_ms =
                self.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : self.backoff_ms * 2;
            if (connect_broker (&self))
                goto done;
        }
    }
    send_command (&self, CMD_DISCONNECT, "worker stopping");
    compute_destroy (&self.compute);
    log_info ("worker stopping jobs_done=%" PRIu64 " computed=%" PRIu64 " inlined=%" PRIu64
              " expired=%" PRIu64 " jobs_held=%zu",
              self.jobs_done, self.compute_config.computed, self.compute_config.inlined,
              self.compute_config.expired, self.held);
    rc = 0;
done:
    compute_destroy (&self.compute);
    codec_header_reset (&self.header);
    codec_header_reset (&self.reply);
    zsock_destroy (&self.sock);
    for (size_t i = 0; i < self.n_models; i++)
        model_destroy (&self.models[i]);
    free (self.compute_config.max_batch);
    free (self.compute_config.batch_delay_us);
    return rc;
}
