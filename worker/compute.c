/*  compute.c - the worker's compute thread.

    compute_job decodes the inputs (pointers into the JOB's payload frame,
    no copy), checks them against the model, runs the model into the
    thread's workspace, and encodes the outputs asked for.  Errors become a
    RESULT with a code and a message; nothing is dropped.
*/
#include "compute.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "clock.h"
#include "log.h"

wrk_job_t *wrk_job_new (const codec_header_t *header, zframe_t **payload_p, uint64_t now_us)
{
    wrk_job_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->token = header->job;
    snprintf (self->model, sizeof self->model, "%s", header->model);
    if (header->n_outputs) {
        self->outputs = calloc (header->n_outputs, CODEC_NAME_MAX);
        if (!self->outputs) {
            free (self);
            return NULL;
        }
        memcpy (self->outputs, header->outputs, header->n_outputs * CODEC_NAME_MAX);
        self->n_outputs = header->n_outputs;
    }
    if (header->fields & HDR_DEADLINE_MS)
        self->deadline_us = now_us + (uint64_t)header->deadline_ms * 1000u;
    self->payload = *payload_p;
    *payload_p = NULL;
    return self;
}

void wrk_job_destroy (wrk_job_t **self_p)
{
    wrk_job_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->payload);
    free (self->outputs);
    free (self);
    *self_p = NULL;
}

static model_t *find_model (const compute_config_t *config, const char *name)
{
    for (size_t i = 0; i < config->n_models; i++)
        if (strcmp (model_name (config->models[i]), name) == 0)
            return config->models[i];
    return NULL;
}

//  Checks and computes; on success *outputs_p holds the encoded outputs.
static amaas_code_t run (const compute_config_t *config, model_workspace_t *ws,
                         const wrk_job_t *job, model_t *model, zframe_t **outputs_p, char *err,
                         size_t err_size)
{
    codec_tensor_t inputs[CODEC_MAX_TENSORS];
    char why[CODEC_MESSAGE_MAX];
    int n = codec_tensors_decode (zframe_data (job->payload), zframe_size (job->payload), inputs,
                                  CODEC_MAX_TENSORS, config->max_elements, why, sizeof why);
    if (n < 0) {
        snprintf (err, err_size, "%s", why);
        return AMAAS_INVALID_ARGUMENT;
    }
    if (n != 1) {
        snprintf (err, err_size, "model '%s' takes 1 input tensor, got %d", job->model, n);
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
                  (int)in->name_len, in->name, shape, job->model, width);
        return AMAAS_INVALID_ARGUMENT;
    }
    if (in->datatype != AMAAS_FP32 && in->datatype != AMAAS_FP64 && in->datatype != AMAAS_INT32 &&
        in->datatype != AMAAS_INT64) {
        snprintf (err, err_size,
                  "input '%.*s' has datatype %s; model '%s' takes FP32, FP64, INT32 or INT64",
                  (int)in->name_len, in->name, amaas_dtype_name (in->datatype), job->model);
        return AMAAS_INVALID_ARGUMENT;
    }
    //  Every output asked for must exist before any compute is spent
    size_t n_outputs = model_output_count (model);
    size_t wanted = job->n_outputs ? job->n_outputs : n_outputs;
    size_t pick[CODEC_MAX_OUTPUTS];
    for (size_t i = 0; i < wanted; i++) {
        size_t k = i;
        if (job->n_outputs) {
            for (k = 0; k < n_outputs && strcmp (model_output_name (model, k), job->outputs[i]);
                 k++)
                ;
            if (k == n_outputs) {
                snprintf (err, err_size, "model '%s' has no output '%s'", job->model,
                          job->outputs[i]);
                return AMAAS_INVALID_ARGUMENT;
            }
        }
        pick[i] = k;
    }
    model_output_t outs[MODEL_MAX_OUTPUTS];
    if (model_run (model, ws, in->datatype, in->data, (size_t)in->shape[0], outs, why,
                   sizeof why)) {
        snprintf (err, err_size, "model '%.100s': %.140s", job->model, why);
        return AMAAS_INTERNAL;
    }
    codec_tensor_t results[CODEC_MAX_OUTPUTS];
    for (size_t i = 0; i < wanted; i++) {
        const model_output_t *o = &outs[pick[i]];
        codec_tensor_t *t = &results[i];
        memset (t, 0, sizeof *t);
        t->name = o->name;
        t->name_len = strlen (o->name);
        t->datatype = o->datatype;
        t->ndim = o->ndim;
        t->shape[0] = o->shape[0];
        t->shape[1] = o->shape[1];
        t->data = o->data;
        t->size = o->size;
    }
    *outputs_p = codec_tensors_encode (results, wanted);
    if (!*outputs_p) {
        snprintf (err, err_size, "out of memory encoding the outputs");
        return AMAAS_INTERNAL;
    }
    return AMAAS_OK;
}

zmsg_t *compute_job (compute_config_t *config, model_workspace_t *ws, const wrk_job_t *job)
{
    char err[CODEC_MESSAGE_MAX] = "";
    zframe_t *outputs = NULL;
    uint64_t start = clock_now_us ();
    amaas_code_t code;
    model_t *model = find_model (config, job->model);
    if (!model) {
        snprintf (err, sizeof err, "this worker does not serve model '%.128s'", job->model);
        code = AMAAS_NOT_FOUND;
    } else if (job->deadline_us && start >= job->deadline_us) {
        snprintf (err, sizeof err, "deadline passed %" PRIu64 " ms before compute; not computed",
                  (start - job->deadline_us) / 1000);
        code = AMAAS_DEADLINE_EXCEEDED;
        config->expired++;
    } else {
        code = run (config, ws, job, model, &outputs, err, sizeof err);
        config->computed++;
    }

    codec_header_t r;
    memset (&r, 0, sizeof r);
    r.fields = HDR_JOB | HDR_CODE | HDR_COMPUTE_US;
    r.job = job->token;
    r.code = code;
    r.compute_us = clock_now_us () - start;
    if (model) {
        codec_header_set_model (&r, model_name (model));
        codec_header_set_version (&r, model_version (model));
    }
    if (code != AMAAS_OK) {
        codec_header_set_message (&r, "%s", err);
        log_debug ("job failed model=%s code=%s error=\"%s\"", job->model, amaas_code_name (code),
                   err);
    }
    zmsg_t *msg = codec_msg_new (CMD_RESULT, &r, &outputs);
    zframe_destroy (&outputs);
    return msg;
}

void compute_actor (zsock_t *pipe, void *args)
{
    compute_config_t *config = args;
    //  Signals are the main thread's business
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
    model_workspace_t *ws = model_workspace_new ();
    zsock_signal (pipe, ws ? 0 : 1);
    if (!ws)
        return;
    while (true) {
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg)
            break; //  interrupted: the main thread destroys us next
        zframe_t *first = zmsg_first (msg);
        if (zframe_streq (first, "$TERM")) {
            zmsg_destroy (&msg);
            break;
        }
        wrk_job_t *job = NULL;
        if (zframe_size (first) == sizeof job)
            memcpy (&job, zframe_data (first), sizeof job);
        zmsg_destroy (&msg);
        if (!job)
            continue;
        zmsg_t *result = compute_job (config, ws, job);
        wrk_job_destroy (&job);
        if (result && zmsg_send (&result, pipe))
            zmsg_destroy (&result);
    }
    model_workspace_destroy (&ws);
}
