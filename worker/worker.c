/*  worker.c - the amaas worker's event loop.

    Start: load every *.amm file of the models folder (a bad file is logged
    and skipped; the others are served), connect to the broker, send READY.
    Then: a JOB is decoded, checked against the model's input, computed and
    answered with one RESULT, success or error; heartbeats go both ways;
    when the broker has been silent for `liveness` intervals, the socket is
    closed and a new one connects after a backoff that doubles up to 30 s.
    On SIGINT or SIGTERM the worker says DISCONNECT and exits.
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
#include "model.h"

#define MAX_MODELS CODEC_MAX_MODELS
#define BACKOFF_MAX_MS 30000

typedef struct {
    const worker_config_t *config;
    model_t *models[MAX_MODELS]; //  loaded models
    size_t n_models;
    model_workspace_t *ws;     //  buffers of model runs, reused
    zsock_t *sock;             //  DEALER to the broker
    codec_header_t header;     //  header of the message at hand
    codec_header_t reply;      //  header being built
    int64_t broker_expires_ms; //  broker dead after this without a message
    int backoff_ms;            //  next reconnect delay
    uint64_t jobs_done;
} worker_t;

void worker_config_defaults (worker_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->broker = "tcp://127.0.0.1:5556";
    config->heartbeat_ms = 1000;
    config->liveness = 3;
    config->credit = 4;
    config->max_elements = 1u << 24;
    config->max_message = 256u << 20;
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

static model_t *find_model (worker_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_models; i++)
        if (strcmp (model_name (self->models[i]), name) == 0)
            return self->models[i];
    return NULL;
}

static void send_msg (worker_t *self, codec_cmd_t cmd, codec_header_t *h, zframe_t **payload_p)
{
    zmsg_t *msg = codec_msg_new (cmd, h, payload_p);
    if (msg && zmsg_send (&msg, self->sock))
        zmsg_destroy (&msg);
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
    self->sock = zsock_new (ZMQ_DEALER);
    if (!self->sock)
        return -1;
    zsock_set_linger (self->sock, 1000);
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

//  Computes one job.  Fills *payload_p with the outputs on success; on error
//  returns a code and a message in err.
static amaas_code_t compute (worker_t *self, const codec_header_t *h, zframe_t *payload,
                             model_t **model_p, zframe_t **payload_p, char *err, size_t err_size)
{
    model_t *model = *model_p = find_model (self, h->model);
    if (!model) {
        snprintf (err, err_size, "this worker does not serve model '%s'", h->model);
        return AMAAS_NOT_FOUND;
    }
    codec_tensor_t inputs[CODEC_MAX_TENSORS];
    char why[CODEC_MESSAGE_MAX];
    int n = codec_tensors_decode (zframe_data (payload), zframe_size (payload), inputs,
                                  CODEC_MAX_TENSORS, self->config->max_elements, why, sizeof why);
    if (n < 0) {
        snprintf (err, err_size, "%s", why);
        return AMAAS_INVALID_ARGUMENT;
    }
    if (n != 1) {
        snprintf (err, err_size, "model '%s' takes 1 input tensor, got %d", h->model, n);
        return AMAAS_INVALID_ARGUMENT;
    }
    const codec_tensor_t *in = &inputs[0];
    size_t width = model_input_width (model);
    if (in->ndim != 2 || in->shape[1] != (int64_t)width || in->shape[0] < 1) {
        char shape[128] = "";
        size_t len = 0;
        for (int d = 0; d < in->ndim && len < sizeof shape - 24; d++)
            len += (size_t)snprintf (shape + len, sizeof shape - len, "%s%" PRId64, d ? ", " : "",
                                     in->shape[d]);
        snprintf (err, err_size,
                  "input '%.*s' has shape [%s]; model '%s' expects [rows, %zu] with rows >= 1",
                  (int)in->name_len, in->name, shape, h->model, width);
        return AMAAS_INVALID_ARGUMENT;
    }
    if (in->datatype != AMAAS_FP32 && in->datatype != AMAAS_FP64 && in->datatype != AMAAS_INT32 &&
        in->datatype != AMAAS_INT64) {
        snprintf (err, err_size,
                  "input '%.*s' has datatype %s; model '%s' takes FP32, FP64, INT32 or INT64",
                  (int)in->name_len, in->name, amaas_dtype_name (in->datatype), h->model);
        return AMAAS_INVALID_ARGUMENT;
    }
    model_output_t outs[MODEL_MAX_OUTPUTS];
    if (model_run (model, self->ws, in->datatype, in->data, (size_t)in->shape[0], outs, why,
                   sizeof why)) {
        snprintf (err, err_size, "model '%.100s': %.140s", h->model, why);
        return AMAAS_INTERNAL;
    }
    //  Pick the outputs asked for, in the order asked, or all
    codec_tensor_t results[MODEL_MAX_OUTPUTS];
    size_t n_outputs = model_output_count (model), n_results = 0;
    size_t wanted = h->n_outputs ? h->n_outputs : n_outputs;
    if (wanted > MODEL_MAX_OUTPUTS) {
        snprintf (err, err_size, "model '%s' has %zu outputs; %zu were asked for", h->model,
                  n_outputs, wanted);
        return AMAAS_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < wanted; i++) {
        size_t k = i;
        if (h->n_outputs) {
            for (k = 0; k < n_outputs && strcmp (outs[k].name, h->outputs[i]) != 0; k++)
                ;
            if (k == n_outputs) {
                snprintf (err, err_size, "model '%s' has no output '%s'", h->model, h->outputs[i]);
                return AMAAS_INVALID_ARGUMENT;
            }
        }
        codec_tensor_t *t = &results[n_results++];
        memset (t, 0, sizeof *t);
        t->name = outs[k].name;
        t->name_len = strlen (outs[k].name);
        t->datatype = outs[k].datatype;
        t->ndim = outs[k].ndim;
        t->shape[0] = outs[k].shape[0];
        t->shape[1] = outs[k].shape[1];
        t->data = outs[k].data;
        t->size = outs[k].size;
    }
    *payload_p = codec_tensors_encode (results, n_results);
    if (!*payload_p) {
        snprintf (err, err_size, "out of memory encoding the outputs");
        return AMAAS_INTERNAL;
    }
    return AMAAS_OK;
}

static void on_job (worker_t *self, zframe_t *payload)
{
    const codec_header_t *h = &self->header;
    codec_header_t *r = &self->reply;
    char err[CODEC_MESSAGE_MAX] = "";
    zframe_t *outputs = NULL;
    model_t *model = NULL;
    uint64_t start = clock_now_us ();
    amaas_code_t code;
    if (!(h->fields & HDR_JOB) || !(h->fields & HDR_MODEL) || !payload) {
        log_warn ("JOB without job token, model or payload: dropped");
        return;
    }
    code = compute (self, h, payload, &model, &outputs, err, sizeof err);
    codec_header_reset (r);
    r->fields = HDR_JOB | HDR_CODE | HDR_COMPUTE_US;
    r->job = h->job;
    r->code = code;
    r->compute_us = clock_now_us () - start;
    if (model) {
        codec_header_set_model (r, model_name (model));
        codec_header_set_version (r, model_version (model));
    }
    if (code != AMAAS_OK) {
        codec_header_set_message (r, "%s", err);
        log_debug ("job failed model=%s code=%s error=\"%s\"", h->model, amaas_code_name (code),
                   err);
    }
    send_msg (self, CMD_RESULT, r, &outputs);
    zframe_destroy (&outputs);
    self->jobs_done++;
}

static void on_message (worker_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sock);
    if (!msg)
        return;
    char err[CODEC_MESSAGE_MAX];
    codec_cmd_t cmd;
    zframe_t *payload;
    self->broker_expires_ms =
        clock_now_ms () + (int64_t)self->config->heartbeat_ms * self->config->liveness;
    self->backoff_ms = self->config->heartbeat_ms;
    if (codec_msg_parse (msg, &cmd, &self->header, &payload, err, sizeof err))
        log_warn ("bad message from the broker error=\"%s\"", err);
    else if (cmd == CMD_JOB)
        on_job (self, payload);
    else if (cmd == CMD_DISCONNECT) {
        log_info ("broker asked to register again reason=\"%s\"", self->header.message);
        send_ready (self);
    } else if (cmd == CMD_ERROR)
        log_error ("broker reported an error code=%s message=\"%s\"",
                   amaas_code_name (self->header.code), self->header.message);
    zmsg_destroy (&msg);
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
    self.ws = model_workspace_new ();
    if (!self.ws || connect_broker (&self))
        goto done;
    log_info ("worker started broker=%s models=%zu credit=%u", config->broker, self.n_models,
              config->credit);
    int64_t next_beat = clock_now_ms () + config->heartbeat_ms;
    while (!zsys_interrupted) {
        int64_t wait = next_beat - clock_now_ms ();
        zmq_pollitem_t item = {zsock_resolve (self.sock), 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, (long)(wait > 0 ? wait : 0)) > 0)
            on_message (&self);
        int64_t now = clock_now_ms ();
        if (now >= next_beat) {
            codec_header_t *h = &self.reply;
            codec_header_reset (h);
            send_msg (&self, CMD_HEARTBEAT, h, NULL);
            next_beat = now + config->heartbeat_ms;
        }
        if (now > self.broker_expires_ms) {
            log_warn ("broker silent, reconnecting broker=%s after=%dms", config->broker,
                      self.backoff_ms);
            zclock_sleep (self.backoff_ms);
            self.backoff_ms =
                self.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : self.backoff_ms * 2;
            if (connect_broker (&self))
                goto done;
        }
    }
    codec_header_t *h = &self.reply;
    codec_header_reset (h);
    h->fields = HDR_REASON;
    snprintf (h->message, sizeof h->message, "worker stopping");
    send_msg (&self, CMD_DISCONNECT, h, NULL);
    log_info ("worker stopping jobs_done=%" PRIu64, self.jobs_done);
    rc = 0;
done:
    codec_header_reset (&self.header);
    codec_header_reset (&self.reply);
    zsock_destroy (&self.sock);
    model_workspace_destroy (&self.ws);
    for (size_t i = 0; i < self.n_models; i++)
        model_destroy (&self.models[i]);
    return rc;
}
