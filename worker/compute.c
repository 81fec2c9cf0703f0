/*  compute.c - the worker's compute thread, with dynamic batching.

    Jobs arrive on the actor's pipe in the order the broker sent them.  The
    thread takes the oldest job, then every other job for the same model
    that is already waiting (and, with a batch delay, that arrives within
    it), up to the model's batch size in rows.  Each job's inputs are
    checked on their own, and a job that fails a check is answered at once;
    the rows of the others are stacked into the workspace's input buffer,
    the model runs once (one GEMM per dense layer for the whole batch), and
    the outputs are cut back into one RESULT per job.  Jobs for other models
    keep their place for the next round.

    Inputs are decoded in place (pointers into the JOB's payload frame);
    buffers are the workspace's and the batch's own, reused from batch to
    batch.
*/
#include "compute.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <signal.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define MAX_BATCH_JOBS 1024 //  jobs in one batch, whatever their rows
#define COMPUTE_NICE 5      //  the compute thread's priority below the I/O thread

//  A job taking part in a batch
typedef struct {
    wrk_job_t *job;
    codec_tensor_t input; //  its one input tensor, checked
    size_t rows;          //  its rows
    size_t first_row;     //  where its rows start in the batch
} member_t;

//  The compute thread's state
typedef struct {
    compute_config_t *config;
    model_workspace_t *ws;
    zsock_t *pipe;
    zlistx_t *waiting; //  wrk_job_t * received, not yet computed, in order
    member_t members[MAX_BATCH_JOBS];
    size_t *byte_offsets;     //  BYTES outputs: offset of each row
    size_t byte_offsets_size; //  entries allocated
    bool terminated;          //  $TERM received
} compute_t;

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

static model_t *find_model (const compute_config_t *config, const char *name, size_t *index)
{
    for (size_t i = 0; i < config->n_models; i++)
        if (strcmp (model_name (config->models[i]), name) == 0) {
            if (index)
                *index = i;
            return config->models[i];
        }
    return NULL;
}

//  Builds a job's RESULT message; outputs may be NULL (error).
static zmsg_t *result_msg (const wrk_job_t *job, const model_t *model, amaas_code_t code,
                           const char *message, uint64_t compute_us, uint32_t batch,
                           zframe_t **outputs_p)
{
    codec_header_t r;
    memset (&r, 0, sizeof r);
    r.fields = HDR_JOB | HDR_CODE | HDR_COMPUTE_US;
    r.job = job->token;
    r.code = code;
    r.compute_us = compute_us;
    if (model) {
        codec_header_set_model (&r, model_name (model));
        codec_header_set_version (&r, model_version (model));
    }
    if (code != AMAAS_OK) {
        codec_header_set_message (&r, "%s", message);
        log_debug ("job failed model=%s code=%s error=\"%s\"", job->model, amaas_code_name (code),
                   message);
    } else {
        r.fields |= HDR_BATCH;
        r.batch = batch;
    }
    return codec_msg_new (CMD_RESULT, &r, outputs_p);
}

static void send_result (compute_t *self, zmsg_t **msg_p)
{
    if (*msg_p && zmsg_send (msg_p, self->pipe))
        zmsg_destroy (msg_p);
}

//  Answers a job with an error and destroys it.
static void fail_job (compute_t *self, wrk_job_t **job_p, const model_t *model, amaas_code_t code,
                      const char *message)
{
    zmsg_t *msg = result_msg (*job_p, model, code, message, 0, 0, NULL);
    send_result (self, &msg);
    wrk_job_destroy (job_p);
}

//  Checks a job against its model: one input of the right shape and
//  datatype, outputs that exist, deadline not passed.  Fills the member.
//  Returns AMAAS_OK, or a code with a message in err.
static amaas_code_t check_job (const compute_config_t *config, const model_t *model, wrk_job_t *job,
                               member_t *member, char *err, size_t err_size)
{
    if (job->deadline_us && clock_now_us () >= job->deadline_us) {
        snprintf (err, err_size, "deadline passed %" PRIu64 " ms before compute; not computed",
                  (clock_now_us () - job->deadline_us) / 1000);
        return AMAAS_DEADLINE_EXCEEDED;
    }
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
    size_t n_outputs = model_output_count (model);
    for (size_t i = 0; i < job->n_outputs; i++) {
        size_t k = 0;
        while (k < n_outputs && strcmp (model_output_name (model, k), job->outputs[i]))
            k++;
        if (k == n_outputs) {
            snprintf (err, err_size, "model '%s' has no output '%s'", job->model, job->outputs[i]);
            return AMAAS_INVALID_ARGUMENT;
        }
    }
    member->job = job;
    member->input = *in;
    member->rows = (size_t)in->shape[0];
    return AMAAS_OK;
}

//  Row byte offsets of a BYTES output of `rows` rows, into self->byte_offsets
//  (rows + 1 entries).  Returns 0, -1 on out-of-memory.
static int bytes_offsets (compute_t *self, const model_output_t *out, size_t rows)
{
    if (self->byte_offsets_size < rows + 1) {
        size_t *grown = realloc (self->byte_offsets, (rows + 1) * sizeof (size_t));
        if (!grown)
            return -1;
        self->byte_offsets = grown;
        self->byte_offsets_size = rows + 1;
    }
    const uint8_t *p = out->data;
    size_t offset = 0;
    for (size_t r = 0; r < rows; r++) {
        self->byte_offsets[r] = offset;
        uint32_t len;
        memcpy (&len, p + offset, 4);
        offset += 4 + len;
    }
    self->byte_offsets[rows] = offset;
    return 0;
}

//  Cuts a member's rows out of the batch outputs and encodes them.
static zframe_t *member_outputs (compute_t *self, const model_t *model, const member_t *m,
                                 const model_output_t *outs, size_t batch_rows)
{
    const wrk_job_t *job = m->job;
    size_t n_outputs = model_output_count (model);
    size_t wanted = job->n_outputs ? job->n_outputs : n_outputs;
    codec_tensor_t results[CODEC_MAX_OUTPUTS];
    for (size_t i = 0; i < wanted; i++) {
        size_t k = i;
        if (job->n_outputs)
            for (k = 0; strcmp (model_output_name (model, k), job->outputs[i]); k++)
                ;
        const model_output_t *o = &outs[k];
        codec_tensor_t *t = &results[i];
        memset (t, 0, sizeof *t);
        t->name = o->name;
        t->name_len = strlen (o->name);
        t->datatype = o->datatype;
        t->ndim = o->ndim;
        t->shape[0] = (int64_t)m->rows;
        t->shape[1] = o->shape[1];
        if (o->datatype == AMAAS_BYTES) {
            if (bytes_offsets (self, o, batch_rows))
                return NULL;
            size_t start = self->byte_offsets[m->first_row];
            t->data = (const uint8_t *)o->data + start;
            t->size = self->byte_offsets[m->first_row + m->rows] - start;
        } else {
            size_t row_bytes = o->size / batch_rows;
            t->data = (const uint8_t *)o->data + m->first_row * row_bytes;
            t->size = m->rows * row_bytes;
        }
    }
    return codec_tensors_encode (results, wanted);
}

//  Computes the members [0, n) of a batch for one model and answers each.
static void run_batch (compute_t *self, model_t *model, size_t n, size_t rows)
{
    char err[CODEC_MESSAGE_MAX];
    uint64_t start = clock_now_us ();
    void *input = model_input (model, self->ws, rows, err, sizeof err);
    model_output_t outs[MODEL_MAX_OUTPUTS];
    size_t row_bytes = model_input_width (model) * (model_dtype (model) == AMAAS_FP64 ? 8 : 4);
    int rc = -1;
    if (input) {
        for (size_t i = 0; i < n; i++)
            model_convert (model, self->members[i].input.datatype, self->members[i].input.data,
                           self->members[i].rows,
                           (uint8_t *)input + self->members[i].first_row * row_bytes);
        rc = model_run_input (model, self->ws, rows, outs, err, sizeof err);
    }
    uint64_t compute_us = clock_now_us () - start;
    self->config->computed += n;
    self->config->batches++;
    for (size_t i = 0; i < n; i++) {
        member_t *m = &self->members[i];
        zframe_t *outputs = rc == 0 ? member_outputs (self, model, m, outs, rows) : NULL;
        zmsg_t *msg;
        if (outputs)
            msg = result_msg (m->job, model, AMAAS_OK, NULL, compute_us, (uint32_t)n, &outputs);
        else
            msg = result_msg (m->job, model, AMAAS_INTERNAL,
                              rc ? err : "out of memory encoding the outputs", compute_us, 0, NULL);
        zframe_destroy (&outputs);
        send_result (self, &msg);
        wrk_job_destroy (&m->job);
    }
}

//  Receives what the pipe holds into the waiting list; with wait_ms > 0,
//  waits that long for the first message.  Returns how many jobs came.
static size_t receive (compute_t *self, int wait_ms)
{
    size_t count = 0;
    while (!self->terminated) {
        zmq_pollitem_t item = {zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, count ? 0 : wait_ms) <= 0)
            break;
        zmsg_t *msg = zmsg_recv (self->pipe);
        if (!msg)
            break;
        zframe_t *first = zmsg_first (msg);
        wrk_job_t *job = NULL;
        if (zframe_streq (first, "$TERM"))
            self->terminated = true;
        else if (zframe_size (first) == sizeof job) {
            memcpy (&job, zframe_data (first), sizeof job);
            zlistx_add_end (self->waiting, job);
            count++;
        }
        zmsg_destroy (&msg);
    }
    return count;
}

//  Takes the oldest waiting job, gathers the others for its model, and
//  computes them as one batch.
static void compute_next (compute_t *self)
{
    wrk_job_t *job = zlistx_first (self->waiting);
    size_t index = 0;
    model_t *model = find_model (self->config, job->model, &index);
    char err[CODEC_MESSAGE_MAX];
    if (!model) {
        zlistx_detach_cur (self->waiting);
        snprintf (err, sizeof err, "this worker does not serve model '%.128s'", job->model);
        fail_job (self, &job, NULL, AMAAS_NOT_FOUND, err);
        return;
    }
    size_t max_rows = self->config->max_batch[index];
    uint64_t delay_us = self->config->batch_delay_us[index];
    uint64_t gather_until = clock_now_us () + delay_us;
    size_t n = 0, rows = 0;
    while (true) {
        //  Take every waiting job for this model that fits, in order
        for (job = zlistx_first (self->waiting); job && n < MAX_BATCH_JOBS;
             job = zlistx_next (self->waiting)) {
            if (strcmp (job->model, model_name (model)) != 0)
                continue;
            member_t m;
            amaas_code_t code = check_job (self->config, model, job, &m, err, sizeof err);
            if (code == AMAAS_OK && n > 0 && rows + m.rows > max_rows)
                break; //  full: this job leads the next batch
            zlistx_detach_cur (self->waiting);
            if (code != AMAAS_OK) {
                if (code == AMAAS_DEADLINE_EXCEEDED)
                    self->config->expired++;
                fail_job (self, &job, model, code, err);
            } else {
                m.first_row = rows;
                self->members[n++] = m;
                rows += m.rows;
            }
        }
        uint64_t now = clock_now_us ();
        if (rows >= max_rows || n == MAX_BATCH_JOBS || now >= gather_until || self->terminated)
            break;
        receive (self, (int)((gather_until - now + 999) / 1000));
    }
    if (n)
        run_batch (self, model, n, rows);
}

void compute_actor (zsock_t *pipe, void *args)
{
    //  Signals are the main thread's business
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
    //  The I/O thread must win the CPU whenever it has something to do
    //  (heartbeats, results), even when every core computes: compute runs
    //  at a lower priority.  Best effort: a failure changes nothing else.
    int rc = setpriority (PRIO_PROCESS, (id_t)syscall (SYS_gettid), COMPUTE_NICE);
    (void)rc;
    compute_t self = {.config = args, .pipe = pipe};
    self.ws = model_workspace_new ();
    self.waiting = zlistx_new ();
    zsock_signal (pipe, self.ws && self.waiting ? 0 : 1);
    while (self.ws && self.waiting && !self.terminated) {
        if (zlistx_size (self.waiting) == 0)
            receive (&self, -1);
        else
            receive (&self, 0);
        while (zlistx_size (self.waiting) && !self.terminated)
            compute_next (&self);
    }
    if (self.waiting) {
        wrk_job_t *job;
        while ((job = zlistx_detach (self.waiting, NULL)))
            wrk_job_destroy (&job);
    }
    zlistx_destroy (&self.waiting);
    free (self.byte_offsets);
    model_workspace_destroy (&self.ws);
}
