/*  batch.c - the worker's batching policy, socket-free and thread-free.

    A batch is the members array (jobs checked, with their rows' place in
    the stacked input) for one batch_model_t, the time until which it
    gathers, and the buffers that encode a member's outputs (a msgpack
    buffer and the row offsets of BYTES outputs), reused from batch to
    batch.  Gathering walks the queue once, in order: jobs for other models
    are skipped and keep their place, jobs for the batch's model are checked
    and either join, are answered with their error, or (when their rows do
    not fit) end the walk, so that no job passes an older one for the same
    model.  Whoever holds the queue's lock calls batch_gather under it; the
    rest (the model run, cutting the outputs) needs no lock.
*/
#include "batch.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct batch_t {
    const batch_model_t *serving; //  model of the batch at hand, NULL before the first
    uint64_t gather_until_us;     //  gathers more jobs until then
    uint64_t max_elements;        //  largest input tensor, elements
    size_t max_jobs;              //  entries of members
    size_t size;                  //  members[0 .. size) are the batch's jobs
    size_t rows;                  //  their rows, stacked
    batch_member_t *members;      //  the jobs of the batch at hand
    uint64_t expired;             //  jobs answered DEADLINE_EXCEEDED by batch_gather
    msgpack_sbuffer packed;       //  a job's outputs, encoded
    size_t *byte_offsets;         //  a BYTES output: offset of each row of the batch
    size_t byte_offsets_size;     //  entries allocated
    const void *offsets_of;       //  the output data byte_offsets describes, NULL: none yet
};

batch_job_t *batch_queue_first (const list_t *queue)
{
    assert (queue);
    return LIST_ITEM (list_first (queue), batch_job_t, node);
}

batch_job_t *batch_queue_take (list_t *queue, uint64_t token, uint64_t connection)
{
    assert (queue);
    batch_job_t *job;
    LIST_FOREACH (job, queue, batch_job_t, node) {
        if (job->token == token && job->connection == connection) {
            list_remove (queue, &job->node);
            return job;
        }
    }
    return NULL;
}

//  Writes "[2, 3]" of a tensor's shape into buf.  Cannot fail.
static const char *s_shape (const codec_tensor_t *t, char *buf, size_t size)
{
    size_t len = (size_t)snprintf (buf, size, "[");
    for (int d = 0; d < t->ndim && len < size - 24; d++)
        len += (size_t)snprintf (buf + len, size - len, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    snprintf (buf + len, size - len, "]");
    return buf;
}

//  A version-1 model's one input: [rows >= 1, width] of a datatype it
//  converts.  Fills member's inputs and rows.
static amaas_code_t s_check_input (batch_job_t *job, const model_t *model,
                                   const codec_tensor_t *inputs, size_t n, batch_member_t *member,
                                   char *err, size_t err_size)
{
    if (n != 1) {
        snprintf (err, err_size, "model '%s' takes 1 input tensor, got %zu", job->model, n);
        return AMAAS_INVALID_ARGUMENT;
    }
    const codec_tensor_t *in = &inputs[0];
    size_t width = model_input_width (model);
    if (in->ndim != 2 || in->shape[1] != (int64_t)width || in->shape[0] < 1) {
        char shape[128];
        snprintf (err, err_size,
                  "input '%.*s' has shape %s; model '%s' expects [rows, %zu] with rows >= 1",
                  (int)in->name_len, in->name, s_shape (in, shape, sizeof shape), job->model,
                  width);
        return AMAAS_INVALID_ARGUMENT;
    }
    if (in->datatype != AMAAS_FP32 && in->datatype != AMAAS_FP64 && in->datatype != AMAAS_INT32 &&
        in->datatype != AMAAS_INT64) {
        snprintf (err, err_size,
                  "input '%.*s' has datatype %s; model '%s' takes FP32, FP64, INT32 or INT64",
                  (int)in->name_len, in->name, amaas_dtype_name (in->datatype), job->model);
        return AMAAS_INVALID_ARGUMENT;
    }
    member->inputs[0] = *in;
    member->n_inputs = 1;
    member->rows = (size_t)in->shape[0];
    return AMAAS_OK;
}

//  Checks that every INT32 or INT64 value of t lies in [-bound, bound).
static bool s_indices_in_range (const codec_tensor_t *t, int64_t bound, int64_t *bad)
{
    if (t->datatype == AMAAS_INT64) {
        for (uint64_t i = 0; i < t->elements; i++) {
            int64_t v;
            memcpy (&v, (const uint8_t *)t->data + i * 8, 8);
            if (v < -bound || v >= bound) {
                *bad = v;
                return false;
            }
        }
    } else {
        for (uint64_t i = 0; i < t->elements; i++) {
            int32_t v;
            memcpy (&v, (const uint8_t *)t->data + i * 4, 4);
            if (v < -bound || v >= bound) {
                *bad = v;
                return false;
            }
        }
    }
    return true;
}

//  A graph model's inputs: each of the graph's, by name (any name when the
//  graph has one input), of its rank, fixed dimensions and a datatype that
//  converts to its own; named dimensions that agree; the same rows; gather
//  indices in range.  Fills member's inputs (in the graph's order) and rows.
static amaas_code_t s_check_graph_inputs (batch_job_t *job, const graph_t *graph,
                                          const codec_tensor_t *inputs, size_t n,
                                          batch_member_t *member, char *err, size_t err_size)
{
    size_t count = graph_input_count (graph);
    if (n != count) {
        size_t len = (size_t)snprintf (err, err_size, "model '%s' takes %zu input tensor%s (",
                                       job->model, count, count == 1 ? "" : "s");
        for (size_t i = 0; i < count && len < err_size; i++)
            len += (size_t)snprintf (err + len, err_size - len, "%s'%s'", i ? ", " : "",
                                     graph_input (graph, i)->name);
        if (len < err_size)
            snprintf (err + len, err_size - len, "), got %zu", n);
        return AMAAS_INVALID_ARGUMENT;
    }
    //  Bound values of the named dimensions, as the inputs set them
    int64_t named[GRAPH_MAX_INPUTS][GRAPH_MAX_DIMS];
    for (size_t i = 0; i < count; i++) {
        const graph_io_t *io = graph_input (graph, i);
        const codec_tensor_t *t = NULL;
        if (count == 1)
            t = &inputs[0];
        else
            for (size_t j = 0; j < n && !t; j++)
                if (inputs[j].name_len == strlen (io->name) &&
                    memcmp (inputs[j].name, io->name, inputs[j].name_len) == 0)
                    t = &inputs[j];
        if (!t) {
            snprintf (err, err_size, "model '%s' takes an input '%s', which the request lacks",
                      job->model, io->name);
            return AMAAS_INVALID_ARGUMENT;
        }
        char shape[128];
        bool fits = t->ndim == io->ndim && t->shape[0] >= 1;
        for (int d = 1; fits && d < io->ndim; d++) {
            if (io->dims[d] > 0)
                fits = t->shape[d] == io->dims[d];
            else
                fits = t->shape[d] >= 1;
        }
        if (!fits) {
            char want[160];
            size_t len = (size_t)snprintf (want, sizeof want, "[");
            for (int d = 0; d < io->ndim && len < sizeof want - 40; d++) {
                if (io->dims[d] > 0)
                    len += (size_t)snprintf (want + len, sizeof want - len, "%s%" PRId64,
                                             d ? ", " : "", io->dims[d]);
                else
                    len += (size_t)snprintf (want + len, sizeof want - len, "%s%s", d ? ", " : "",
                                             io->dim_names[d]);
            }
            snprintf (want + len, sizeof want - len, "]");
            snprintf (err, err_size, "input '%s' has shape %s; model '%s' expects %s", io->name,
                      s_shape (t, shape, sizeof shape), job->model, want);
            return AMAAS_INVALID_ARGUMENT;
        }
        bool converts = io->datatype == AMAAS_INT64
                            ? t->datatype == AMAAS_INT64 || t->datatype == AMAAS_INT32
                            : t->datatype == AMAAS_FP32 || t->datatype == AMAAS_FP64 ||
                                  t->datatype == AMAAS_INT32 || t->datatype == AMAAS_INT64;
        if (!converts) {
            snprintf (err, err_size, "input '%s' has datatype %s; model '%s' takes %s", io->name,
                      amaas_dtype_name (t->datatype), job->model,
                      io->datatype == AMAAS_INT64 ? "INT64 or INT32"
                                                  : "FP32, FP64, INT32 or INT64");
            return AMAAS_INVALID_ARGUMENT;
        }
        //  Named dimensions (the batch among them) agree with the inputs before
        for (int d = 0; d < io->ndim; d++) {
            named[i][d] = t->shape[d];
            if (io->dims[d] > 0)
                continue;
            for (size_t k = 0; k < i; k++) {
                const graph_io_t *other = graph_input (graph, k);
                for (int e = 0; e < other->ndim; e++)
                    if (other->dims[e] <= 0 &&
                        strcmp (other->dim_names[e], io->dim_names[d]) == 0 &&
                        named[k][e] != t->shape[d]) {
                        snprintf (err, err_size,
                                  "input '%s' has %s = %" PRId64 " but input '%s' has %s = %" PRId64
                                  "; model '%s' needs them equal",
                                  io->name, io->dim_names[d], t->shape[d], other->name,
                                  other->dim_names[e], named[k][e], job->model);
                        return AMAAS_INVALID_ARGUMENT;
                    }
            }
        }
        int64_t bad;
        if (io->index_bound > 0 && (t->datatype == AMAAS_INT64 || t->datatype == AMAAS_INT32) &&
            !s_indices_in_range (t, io->index_bound, &bad)) {
            snprintf (err, err_size,
                      "input '%s' holds %" PRId64 "; model '%s' takes values in [%" PRId64
                      ", %" PRId64 ") there (an index into a table of %" PRId64 ")",
                      io->name, bad, job->model, -io->index_bound, io->index_bound,
                      io->index_bound);
            return AMAAS_INVALID_ARGUMENT;
        }
        member->inputs[i] = *t;
    }
    member->n_inputs = count;
    member->rows = (size_t)member->inputs[0].shape[0];
    return AMAAS_OK;
}

amaas_code_t batch_check_job (batch_job_t *job, uint64_t max_elements, uint64_t now_us,
                              batch_member_t *member, char *err, size_t err_size)
{
    assert (job);
    assert (job->serving && job->serving->model);
    assert (member);
    const model_t *model = job->serving->model;
    if (job->deadline_us && now_us >= job->deadline_us) {
        snprintf (err, err_size, "deadline passed %" PRIu64 " ms before compute; not computed",
                  (now_us - job->deadline_us) / 1000);
        return AMAAS_DEADLINE_EXCEEDED;
    }
    codec_tensor_t inputs[CODEC_MAX_TENSORS];
    char why[CODEC_MESSAGE_MAX];
    int n = codec_tensors_decode (zmq_msg_data (&job->payload), zmq_msg_size (&job->payload),
                                  inputs, CODEC_MAX_TENSORS, max_elements, why, sizeof why);
    if (n < 0) {
        snprintf (err, err_size, "%s", why);
        return AMAAS_INVALID_ARGUMENT;
    }
    const graph_t *graph = model_graph (model);
    amaas_code_t code =
        graph ? s_check_graph_inputs (job, graph, inputs, (size_t)n, member, err, err_size)
              : s_check_input (job, model, inputs, (size_t)n, member, err, err_size);
    if (code != AMAAS_OK)
        return code;
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
    member->first_row = 0;
    return AMAAS_OK;
}

void batch_job_fail (batch_job_t *job, amaas_code_t code, const char *message, list_t *answered)
{
    assert (job && job->serving);
    assert (code != AMAAS_OK);
    job->served_by = job->serving->model;
    job->code = code;
    snprintf (job->message, sizeof job->message, "%s", message);
    log_debug ("job failed model=%s code=%s error=\"%s\"", job->model, amaas_code_name (code),
               message);
    list_append (answered, &job->node);
}

batch_t *batch_new (size_t max_jobs, uint64_t max_elements)
{
    assert (max_jobs >= 1 && max_jobs <= BATCH_MAX_JOBS);
    batch_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->members = calloc (max_jobs, sizeof *self->members);
    if (!self->members) {
        free (self);
        return NULL;
    }
    self->max_jobs = max_jobs;
    self->max_elements = max_elements;
    msgpack_sbuffer_init (&self->packed);
    return self;
}

void batch_destroy (batch_t **self_p)
{
    assert (self_p);
    batch_t *self = *self_p;
    if (!self)
        return;
    msgpack_sbuffer_destroy (&self->packed);
    free (self->byte_offsets);
    free (self->members);
    free (self);
    *self_p = NULL;
}

void batch_begin (batch_t *self, const batch_model_t *serving, uint64_t now_us)
{
    assert (self);
    assert (serving && serving->model && serving->max_batch >= 1);
    self->serving = serving;
    self->gather_until_us = now_us + serving->batch_delay_us;
    self->size = self->rows = 0;
    self->offsets_of = NULL; //  the next batch's outputs may reuse the same buffers
}

bool batch_same_shape (const batch_member_t *first, const batch_member_t *member)
{
    assert (first && member);
    if (!model_graph (member->job->serving->model))
        return true;
    assert (first->n_inputs == member->n_inputs);
    for (size_t i = 0; i < member->n_inputs; i++)
        for (int d = 1; d < member->inputs[i].ndim; d++)
            if (member->inputs[i].shape[d] != first->inputs[i].shape[d])
                return false;
    return true;
}

int batch_add (batch_t *self, const batch_member_t *member)
{
    assert (self && self->serving);
    assert (member && member->job && member->job->serving == self->serving);
    assert (member->rows >= 1);
    if (self->size == self->max_jobs ||
        (self->size > 0 && self->rows + member->rows > self->serving->max_batch) ||
        (self->size > 0 && !batch_same_shape (&self->members[0], member)))
        return -1;
    batch_member_t *m = &self->members[self->size++];
    *m = *member;
    m->first_row = self->rows;
    self->rows += m->rows;
    return 0;
}

void batch_gather (batch_t *self, list_t *waiting, uint64_t now_us, list_t *answered)
{
    assert (self && self->serving);
    assert (waiting && answered && waiting != answered);
    char err[CODEC_MESSAGE_MAX];
    batch_job_t *job;
    LIST_FOREACH (job, waiting, batch_job_t, node) {
        if (self->size == self->max_jobs)
            break;
        if (job->serving != self->serving)
            continue; //  keeps its place for a batch of its model
        batch_member_t m;
        amaas_code_t code = batch_check_job (job, self->max_elements, now_us, &m, err, sizeof err);
        if (code == AMAAS_OK && self->size > 0 && !batch_same_shape (&self->members[0], &m))
            continue; //  another sequence length: keeps its place for a batch of its own
        if (code == AMAAS_OK && self->size > 0 && self->rows + m.rows > self->serving->max_batch)
            break; //  full: this job leads the next batch
        list_remove (waiting, &job->node);
        if (code != AMAAS_OK) {
            self->expired += code == AMAAS_DEADLINE_EXCEEDED;
            batch_job_fail (job, code, err, answered);
        } else {
            int rc = batch_add (self, &m);
            assert (rc == 0);
            (void)rc;
        }
    }
}

bool batch_ready (const batch_t *self, uint64_t now_us)
{
    assert (self && self->serving);
    return self->rows >= self->serving->max_batch || self->size == self->max_jobs ||
           now_us >= self->gather_until_us;
}

uint64_t batch_gather_until (const batch_t *self)
{
    assert (self);
    return self->gather_until_us;
}

const batch_model_t *batch_serving (const batch_t *self)
{
    assert (self);
    return self->serving;
}

size_t batch_size (const batch_t *self)
{
    assert (self);
    return self->size;
}

size_t batch_rows (const batch_t *self)
{
    assert (self);
    return self->rows;
}

const batch_member_t *batch_member (const batch_t *self, size_t i)
{
    assert (self);
    assert (i < self->size);
    return &self->members[i];
}

uint64_t batch_expired (const batch_t *self)
{
    assert (self);
    return self->expired;
}

//  Row byte offsets of a BYTES output of `rows` rows, into self->byte_offsets
//  (rows + 1 entries), walked once per batch and output rather than once
//  per member.  Returns 0, -1 on out-of-memory.
static int s_bytes_offsets (batch_t *self, const model_output_t *out, size_t rows)
{
    if (self->offsets_of == out->data)
        return 0;
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
    self->offsets_of = out->data;
    return 0;
}

int batch_member_outputs (batch_t *self, size_t i, const model_output_t *outs, size_t n_outputs)
{
    assert (self);
    assert (i < self->size);
    assert (n_outputs <= MODEL_MAX_OUTPUTS);
    const batch_member_t *m = &self->members[i];
    batch_job_t *job = m->job;
    size_t wanted = job->n_outputs ? job->n_outputs : n_outputs;
    assert (wanted <= CODEC_MAX_OUTPUTS);
    codec_tensor_t results[CODEC_MAX_OUTPUTS];
    for (size_t j = 0; j < wanted; j++) {
        size_t k = j;
        if (job->n_outputs)
            for (k = 0; k < n_outputs && strcmp (outs[k].name, job->outputs[j]); k++)
                ;
        assert (k < n_outputs); //  batch_check_job found every output asked for
        const model_output_t *o = &outs[k];
        codec_tensor_t *t = &results[j];
        memset (t, 0, sizeof *t);
        t->name = o->name;
        t->name_len = strlen (o->name);
        t->datatype = o->datatype;
        t->ndim = o->ndim;
        t->shape[0] = (int64_t)m->rows;
        for (int d = 1; d < o->ndim; d++)
            t->shape[d] = o->shape[d];
        if (o->datatype == AMAAS_BYTES) {
            if (s_bytes_offsets (self, o, self->rows))
                return -1;
            size_t start = self->byte_offsets[m->first_row];
            t->data = (const uint8_t *)o->data + start;
            t->size = self->byte_offsets[m->first_row + m->rows] - start;
        } else {
            size_t row_bytes = o->size / self->rows;
            t->data = (const uint8_t *)o->data + m->first_row * row_bytes;
            t->size = m->rows * row_bytes;
        }
    }
    self->packed.size = 0;
    if (codec_tensors_pack (results, wanted, &self->packed))
        return -1;
    if (zmq_msg_init_size (&job->result, self->packed.size)) {
        zmq_msg_init (&job->result); //  empty again, as the pool expects
        return -1;
    }
    memcpy (zmq_msg_data (&job->result), self->packed.data, self->packed.size);
    return 0;
}
