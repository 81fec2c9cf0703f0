/*  test_batch.c - unit tests of the worker's batching policy (batch.h),
    without threads or sockets: jobs are built in memory for two small
    models of the fuzzing corpus (iris: 4 inputs, outputs "probabilities"
    [rows, 3] and "label" [rows]; small: 3 inputs), queued on a list, and
    gathered at times the test chooses.
*/
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "unit.h"

#define T_MAX_JOBS 64

static model_t *s_iris, *s_small;
static batch_model_t s_iris_run, s_small_run;
static batch_job_t *s_jobs[T_MAX_JOBS];
static size_t s_n_jobs;

static model_t *t_load (const char *file)
{
    char path[1024], err[512];
    snprintf (path, sizeof path, "%s/%s", TEST_MODELS_DIR, file);
    model_t *model = model_load (path, err, sizeof err);
    ck_assert_msg (model != NULL, "cannot load %s: %s", path, err);
    return model;
}

static void t_setup (void)
{
    s_iris = t_load ("iris.amm");
    s_small = t_load ("small_mlp.amm");
    s_iris_run = (batch_model_t){.model = s_iris, .max_batch = 256};
    s_small_run = (batch_model_t){.model = s_small, .max_batch = 256};
    s_n_jobs = 0;
}

static void t_teardown (void)
{
    for (size_t i = 0; i < s_n_jobs; i++) {
        zmq_msg_close (&s_jobs[i]->payload);
        zmq_msg_close (&s_jobs[i]->result);
        free (s_jobs[i]);
    }
    model_destroy (&s_iris);
    model_destroy (&s_small);
}

//  A job for serving whose payload holds the n tensors given (freed by the
//  teardown).
static batch_job_t *t_job_tensors (const batch_model_t *serving, uint64_t token,
                                   const codec_tensor_t *tensors, size_t n)
{
    ck_assert_uint_lt (s_n_jobs, T_MAX_JOBS);
    batch_job_t *job = calloc (1, sizeof *job);
    ck_assert_ptr_nonnull (job);
    s_jobs[s_n_jobs++] = job;
    job->token = token;
    job->connection = 1;
    job->serving = serving;
    snprintf (job->model, sizeof job->model, "%s", model_name (serving->model));
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    ck_assert_int_eq (codec_tensors_pack (tensors, n, &sbuf), 0);
    ck_assert_int_eq (zmq_msg_init_size (&job->payload, sbuf.size), 0);
    memcpy (zmq_msg_data (&job->payload), sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy (&sbuf);
    zmq_msg_init (&job->result);
    return job;
}

//  Input values of job `token`: row r, column c holds token * 100 + r * 10 + c
static double s_values[T_MAX_JOBS][64];

//  A job for serving of `rows` FP64 rows of the model's width.
static batch_job_t *t_job (const batch_model_t *serving, uint64_t token, size_t rows)
{
    size_t width = model_input_width (serving->model);
    ck_assert_uint_le (rows * width, 64);
    double *values = s_values[s_n_jobs];
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < width; c++)
            values[r * width + c] = (double)(token * 100 + r * 10 + c) / 50.0;
    codec_tensor_t t = {.name = "input",
                        .name_len = 5,
                        .datatype = AMAAS_FP64,
                        .ndim = 2,
                        .shape = {(int64_t)rows, (int64_t)width},
                        .elements = rows * width,
                        .data = values,
                        .size = rows * width * sizeof (double)};
    return t_job_tensors (serving, token, &t, 1);
}

//  The tokens of a queue, in order, as "1,3,4"
static const char *t_tokens (const list_t *queue)
{
    static char buf[256];
    size_t len = 0;
    buf[0] = 0;
    batch_job_t *job;
    LIST_FOREACH (job, queue, batch_job_t, node) {
        len += (size_t)snprintf (buf + len, sizeof buf - len, "%s%llu", len ? "," : "",
                                 (unsigned long long)job->token);
    }
    return buf;
}

//  The tokens of a batch's members with their first rows, as "1@0,3@2"
static const char *t_members (const batch_t *batch)
{
    static char buf[256];
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < batch_size (batch); i++) {
        const batch_member_t *m = batch_member (batch, i);
        len += (size_t)snprintf (buf + len, sizeof buf - len, "%s%llu@%zu", i ? "," : "",
                                 (unsigned long long)m->job->token, m->first_row);
    }
    return buf;
}

START_TEST (test_same_model_batches_in_order)
{
    list_t waiting, answered;
    list_init (&waiting);
    list_init (&answered);
    list_append (&waiting, &t_job (&s_iris_run, 1, 2)->node);
    list_append (&waiting, &t_job (&s_small_run, 2, 1)->node);
    list_append (&waiting, &t_job (&s_iris_run, 3, 3)->node);
    list_append (&waiting, &t_job (&s_small_run, 4, 2)->node);
    list_append (&waiting, &t_job (&s_iris_run, 5, 1)->node);
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);
    ck_assert_ptr_nonnull (batch);

    //  The oldest job's model: its jobs, in order, rows stacked; the other
    //  model's jobs keep their places
    batch_begin (batch, batch_queue_first (&waiting)->serving, 1000);
    batch_gather (batch, &waiting, 1000, &answered);
    ck_assert_ptr_eq (batch_serving (batch), &s_iris_run);
    ck_assert_str_eq (t_members (batch), "1@0,3@2,5@5");
    ck_assert_uint_eq (batch_rows (batch), 6);
    ck_assert_uint_eq (batch_member (batch, 1)->rows, 3);
    ck_assert_str_eq (t_tokens (&waiting), "2,4");
    ck_assert (list_empty (&answered));
    ck_assert (batch_ready (batch, 1000)); //  no batch delay

    //  Next round: the other model
    batch_begin (batch, batch_queue_first (&waiting)->serving, 2000);
    batch_gather (batch, &waiting, 2000, &answered);
    ck_assert_ptr_eq (batch_serving (batch), &s_small_run);
    ck_assert_str_eq (t_members (batch), "2@0,4@1");
    ck_assert (list_empty (&waiting));
    ck_assert_uint_eq (batch_expired (batch), 0);
    batch_destroy (&batch);
    ck_assert_ptr_null (batch);
}
END_TEST

START_TEST (test_row_and_job_limits)
{
    list_t waiting, answered;
    list_init (&waiting);
    list_init (&answered);
    s_iris_run.max_batch = 4;
    list_append (&waiting, &t_job (&s_iris_run, 1, 2)->node);
    list_append (&waiting, &t_job (&s_iris_run, 2, 3)->node);
    list_append (&waiting, &t_job (&s_iris_run, 3, 1)->node);
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);

    //  Job 2 does not fit beside job 1: it leads the next batch, and job 3,
    //  which would fit, does not pass it
    batch_begin (batch, &s_iris_run, 0);
    batch_gather (batch, &waiting, 0, &answered);
    ck_assert_str_eq (t_members (batch), "1@0");
    ck_assert_str_eq (t_tokens (&waiting), "2,3");
    batch_begin (batch, &s_iris_run, 0);
    batch_gather (batch, &waiting, 0, &answered);
    ck_assert_str_eq (t_members (batch), "2@0,3@3");
    ck_assert_uint_eq (batch_rows (batch), 4);

    //  A job larger than max_batch computes alone
    list_append (&waiting, &t_job (&s_iris_run, 4, 6)->node);
    list_append (&waiting, &t_job (&s_iris_run, 5, 1)->node);
    batch_begin (batch, &s_iris_run, 0);
    batch_gather (batch, &waiting, 0, &answered);
    ck_assert_str_eq (t_members (batch), "4@0");
    ck_assert_uint_eq (batch_rows (batch), 6);
    s_iris_run.batch_delay_us = 500;
    batch_begin (batch, &s_iris_run, 0);
    batch_gather (batch, &waiting, 0, &answered);
    ck_assert_str_eq (t_members (batch), "5@0");
    //  batch_add refuses what batch_gather would not take
    batch_member_t m;
    char err[256];
    batch_job_t *big = t_job (&s_iris_run, 6, 4);
    ck_assert_int_eq (batch_check_job (big, 1000, 0, &m, err, sizeof err), AMAAS_OK);
    ck_assert_int_eq (batch_add (batch, &m), -1);
    ck_assert_str_eq (t_members (batch), "5@0");
    batch_destroy (&batch);

    //  At most max_jobs jobs, whatever their rows; a batch that holds them
    //  is ready before its delay is over
    batch = batch_new (3, 1000);
    s_iris_run.max_batch = 100;
    for (uint64_t token = 10; token < 15; token++)
        list_append (&waiting, &t_job (&s_iris_run, token, 1)->node);
    batch_begin (batch, &s_iris_run, 0);
    ck_assert (!batch_ready (batch, 0));
    batch_gather (batch, &waiting, 0, &answered);
    ck_assert_str_eq (t_members (batch), "10@0,11@1,12@2");
    ck_assert_str_eq (t_tokens (&waiting), "13,14");
    ck_assert (batch_ready (batch, 0));
    ck_assert (list_empty (&answered));
    batch_destroy (&batch);
}
END_TEST

START_TEST (test_batch_delay)
{
    list_t waiting, answered;
    list_init (&waiting);
    list_init (&answered);
    s_iris_run.max_batch = 4;
    s_iris_run.batch_delay_us = 500;
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);
    list_append (&waiting, &t_job (&s_iris_run, 1, 1)->node);
    batch_begin (batch, &s_iris_run, 10000);
    ck_assert_uint_eq (batch_gather_until (batch), 10500);
    batch_gather (batch, &waiting, 10000, &answered);
    //  Not full: it waits for more until the delay is over
    ck_assert (!batch_ready (batch, 10000));
    ck_assert (!batch_ready (batch, 10499));
    //  A job that came meanwhile joins
    list_append (&waiting, &t_job (&s_iris_run, 2, 2)->node);
    batch_gather (batch, &waiting, 10200, &answered);
    ck_assert_str_eq (t_members (batch), "1@0,2@1");
    ck_assert (!batch_ready (batch, 10200));
    ck_assert (batch_ready (batch, 10500));
    //  Full before the delay: ready at once
    list_append (&waiting, &t_job (&s_iris_run, 3, 1)->node);
    batch_gather (batch, &waiting, 10300, &answered);
    ck_assert_uint_eq (batch_rows (batch), 4);
    ck_assert (batch_ready (batch, 10300));
    batch_destroy (&batch);
}
END_TEST

START_TEST (test_expired_deadlines)
{
    list_t waiting, answered;
    list_init (&waiting);
    list_init (&answered);
    batch_job_t *a = t_job (&s_iris_run, 1, 1);
    batch_job_t *b = t_job (&s_iris_run, 2, 1);
    batch_job_t *c = t_job (&s_small_run, 3, 1);
    batch_job_t *d = t_job (&s_iris_run, 4, 1);
    a->deadline_us = 5000;    //  passes at 5000
    b->deadline_us = 7000;    //  not yet
    c->deadline_us = 1000;    //  passed, but not this batch's model
    d->deadline_us = 5000000; //  far
    list_append (&waiting, &a->node);
    list_append (&waiting, &b->node);
    list_append (&waiting, &c->node);
    list_append (&waiting, &d->node);
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);
    batch_begin (batch, &s_iris_run, 6000);
    batch_gather (batch, &waiting, 6000, &answered);
    ck_assert_str_eq (t_members (batch), "2@0,4@1");
    ck_assert_str_eq (t_tokens (&answered), "1");
    ck_assert_int_eq (a->code, AMAAS_DEADLINE_EXCEEDED);
    ck_assert_ptr_eq (a->served_by, s_iris);
    ck_assert_msg (strstr (a->message, "deadline passed 1 ms before compute"), "message: %s",
                   a->message);
    ck_assert_uint_eq (batch_expired (batch), 1);
    ck_assert_str_eq (t_tokens (&waiting), "3");
    ck_assert_int_eq (c->code, AMAAS_OK);

    //  The same deadline at the very microsecond it passes
    batch_begin (batch, &s_small_run, 1000);
    batch_gather (batch, &waiting, 1000, &answered);
    ck_assert_uint_eq (batch_size (batch), 0);
    ck_assert_str_eq (t_tokens (&answered), "1,3");
    ck_assert_int_eq (c->code, AMAAS_DEADLINE_EXCEEDED);
    ck_assert_uint_eq (batch_expired (batch), 2);
    batch_destroy (&batch);
}
END_TEST

START_TEST (test_cancelled_job_leaves_queue)
{
    list_t waiting, answered;
    list_init (&waiting);
    list_init (&answered);
    for (uint64_t token = 1; token <= 3; token++)
        list_append (&waiting, &t_job (&s_iris_run, token, 1)->node);
    //  A token from another connection is another job
    ck_assert_ptr_null (batch_queue_take (&waiting, 2, 7));
    ck_assert_ptr_null (batch_queue_take (&waiting, 9, 1));
    batch_job_t *job = batch_queue_take (&waiting, 2, 1);
    ck_assert_ptr_nonnull (job);
    ck_assert_uint_eq (job->token, 2);
    ck_assert (!list_node_linked (&job->node));
    ck_assert_str_eq (t_tokens (&waiting), "1,3");
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);
    batch_begin (batch, &s_iris_run, 0);
    batch_gather (batch, &waiting, 0, &answered);
    ck_assert_str_eq (t_members (batch), "1@0,3@1");
    ck_assert (list_empty (&waiting));
    ck_assert_ptr_null (batch_queue_first (&waiting));
    batch_destroy (&batch);
}
END_TEST

//  batch_check_job's code for job, with its message in err
static amaas_code_t t_check (batch_job_t *job, uint64_t max_elements, char *err)
{
    batch_member_t m;
    return batch_check_job (job, max_elements, 0, &m, err, 256);
}

START_TEST (test_check_refusals)
{
    char err[256];
    double values[64] = {0};
    codec_tensor_t t = {.name = "x",
                        .name_len = 1,
                        .datatype = AMAAS_FP64,
                        .ndim = 2,
                        .shape = {2, 5},
                        .elements = 10,
                        .data = values,
                        .size = 80};
    //  Shape: width, ndim, rows
    ck_assert_int_eq (t_check (t_job_tensors (&s_iris_run, 1, &t, 1), 1000, err),
                      AMAAS_INVALID_ARGUMENT);
    ck_assert_str_eq (err, "input 'x' has shape [2, 5]; model 'iris' expects [rows, 4] with "
                           "rows >= 1");
    t.ndim = 1;
    t.shape[0] = 4;
    t.elements = 4;
    t.size = 32;
    ck_assert_int_eq (t_check (t_job_tensors (&s_iris_run, 2, &t, 1), 1000, err),
                      AMAAS_INVALID_ARGUMENT);
    ck_assert_str_eq (err,
                      "input 'x' has shape [4]; model 'iris' expects [rows, 4] with rows >= 1");
    t.ndim = 2;
    t.shape[0] = 0;
    t.shape[1] = 4;
    t.elements = 0;
    t.size = 0;
    ck_assert_int_eq (t_check (t_job_tensors (&s_iris_run, 3, &t, 1), 1000, err),
                      AMAAS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull (strstr (err, "has shape [0, 4]"));
    //  Datatype
    t.shape[0] = 2;
    t.elements = 8;
    t.datatype = AMAAS_UINT8;
    t.size = 8;
    ck_assert_int_eq (t_check (t_job_tensors (&s_iris_run, 4, &t, 1), 1000, err),
                      AMAAS_INVALID_ARGUMENT);
    ck_assert_str_eq (err, "input 'x' has datatype UINT8; model 'iris' takes FP32, FP64, INT32 "
                           "or INT64");
    //  INT32 is converted: accepted
    t.datatype = AMAAS_INT32;
    t.size = 32;
    batch_member_t m;
    ck_assert_int_eq (
        batch_check_job (t_job_tensors (&s_iris_run, 5, &t, 1), 1000, 0, &m, err, sizeof err),
        AMAAS_OK);
    ck_assert_uint_eq (m.rows, 2);
    ck_assert_int_eq (m.inputs[0].datatype, AMAAS_INT32);
    //  Too many elements for the worker's limit, two tensors, no tensor
    ck_assert_int_eq (t_check (t_job_tensors (&s_iris_run, 6, &t, 1), 7, err),
                      AMAAS_INVALID_ARGUMENT);
    codec_tensor_t two[2] = {t, t};
    ck_assert_int_eq (t_check (t_job_tensors (&s_iris_run, 7, two, 2), 1000, err),
                      AMAAS_INVALID_ARGUMENT);
    ck_assert_str_eq (err, "model 'iris' takes 1 input tensor, got 2");
    //  Outputs: each asked for must exist
    batch_job_t *job = t_job (&s_iris_run, 8, 1);
    job->n_outputs = 2;
    snprintf (job->outputs[0], CODEC_NAME_MAX, "label");
    snprintf (job->outputs[1], CODEC_NAME_MAX, "logits");
    ck_assert_int_eq (t_check (job, 1000, err), AMAAS_INVALID_ARGUMENT);
    ck_assert_str_eq (err, "model 'iris' has no output 'logits'");
    snprintf (job->outputs[1], CODEC_NAME_MAX, "probabilities");
    ck_assert_int_eq (t_check (job, 1000, err), AMAAS_OK);

    //  A refused job is answered by batch_gather, and the others batch
    list_t waiting, answered;
    list_init (&waiting);
    list_init (&answered);
    list_append (&waiting, &t_job (&s_iris_run, 20, 1)->node);
    t.datatype = AMAAS_FP64;
    t.shape[1] = 3;
    t.elements = 6;
    t.size = 48;
    batch_job_t *bad = t_job_tensors (&s_iris_run, 21, &t, 1);
    list_append (&waiting, &bad->node);
    list_append (&waiting, &t_job (&s_iris_run, 22, 1)->node);
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);
    batch_begin (batch, &s_iris_run, 0);
    batch_gather (batch, &waiting, 0, &answered);
    ck_assert_str_eq (t_members (batch), "20@0,22@1");
    ck_assert_str_eq (t_tokens (&answered), "21");
    ck_assert_int_eq (bad->code, AMAAS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull (strstr (bad->message, "expects [rows, 4]"));
    ck_assert_uint_eq (batch_expired (batch), 0);
    batch_destroy (&batch);
}
END_TEST

//  Decodes a job's result into tensors; returns their count
static int t_result (batch_job_t *job, codec_tensor_t *tensors)
{
    char err[256];
    int n = codec_tensors_decode (zmq_msg_data (&job->result), zmq_msg_size (&job->result), tensors,
                                  CODEC_MAX_TENSORS, 1 << 20, err, sizeof err);
    ck_assert_msg (n >= 0, "result does not decode: %s", err);
    return n;
}

START_TEST (test_member_outputs_selection)
{
    //  Outputs of a batch of 5 rows, as a model emits them: FP64 [5, 2],
    //  INT64 [5], BYTES [5] of different lengths
    double probs[10];
    int64_t labels[5];
    for (int r = 0; r < 5; r++) {
        probs[2 * r] = r;
        probs[2 * r + 1] = r + 0.5;
        labels[r] = 100 + r;
    }
    uint8_t bytes[64];
    size_t len = 0;
    const char *names[5] = {"a", "bb", "", "dddd", "e"};
    for (int r = 0; r < 5; r++) {
        uint32_t n = (uint32_t)strlen (names[r]);
        memcpy (bytes + len, &n, 4);
        memcpy (bytes + len + 4, names[r], n);
        len += 4 + n;
    }
    model_output_t outs[3] = {
        {"probabilities", AMAAS_FP64, 2, {5, 2}, probs, sizeof probs},
        {"label", AMAAS_INT64, 1, {5, 0}, labels, sizeof labels},
        {"name", AMAAS_BYTES, 1, {5, 0}, bytes, len},
    };
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);
    batch_begin (batch, &s_iris_run, 0);
    batch_job_t *jobs[2] = {t_job (&s_iris_run, 1, 2), t_job (&s_iris_run, 2, 3)};
    //  Job 2 names two outputs, in its own order
    jobs[1]->n_outputs = 2;
    snprintf (jobs[1]->outputs[0], CODEC_NAME_MAX, "name");
    snprintf (jobs[1]->outputs[1], CODEC_NAME_MAX, "probabilities");
    for (int i = 0; i < 2; i++) {
        batch_member_t m;
        char err[256];
        //  (checked against iris, whose outputs differ: only the rows matter)
        jobs[i]->n_outputs = 0;
        ck_assert_int_eq (batch_check_job (jobs[i], 1000, 0, &m, err, sizeof err), AMAAS_OK);
        ck_assert_int_eq (batch_add (batch, &m), 0);
    }
    jobs[1]->n_outputs = 2;

    //  Job 1: every output, rows 0 and 1
    ck_assert_int_eq (batch_member_outputs (batch, 0, outs, 3), 0);
    codec_tensor_t t[CODEC_MAX_TENSORS];
    ck_assert_int_eq (t_result (jobs[0], t), 3);
    ck_assert_int_eq ((int)t[0].name_len, 13);
    ck_assert_int_eq (memcmp (t[0].name, "probabilities", 13), 0);
    ck_assert_int_eq (t[0].shape[0], 2);
    ck_assert_int_eq (t[0].shape[1], 2);
    ck_assert_int_eq (memcmp (t[0].data, probs, 4 * sizeof (double)), 0);
    ck_assert_int_eq (t[1].ndim, 1);
    ck_assert_int_eq (t[1].shape[0], 2);
    ck_assert_int_eq (memcmp (t[1].data, labels, 2 * sizeof (int64_t)), 0);
    ck_assert_int_eq (t[2].datatype, AMAAS_BYTES);
    ck_assert_uint_eq (t[2].size, 4 + 1 + 4 + 2);
    ck_assert_int_eq (memcmp (t[2].data, bytes, t[2].size), 0);

    //  Job 2: "name" then "probabilities", rows 2 to 4
    ck_assert_int_eq (batch_member_outputs (batch, 1, outs, 3), 0);
    ck_assert_int_eq (t_result (jobs[1], t), 2);
    ck_assert_int_eq (memcmp (t[0].name, "name", 4), 0);
    ck_assert_int_eq (t[0].shape[0], 3);
    ck_assert_uint_eq (t[0].size, 4 + 0 + 4 + 4 + 4 + 1);
    ck_assert_int_eq (memcmp (t[0].data, bytes + 4 + 1 + 4 + 2, t[0].size), 0);
    ck_assert_int_eq (memcmp (t[1].name, "probabilities", 13), 0);
    ck_assert_int_eq (t[1].shape[0], 3);
    ck_assert_int_eq (memcmp (t[1].data, probs + 4, 6 * sizeof (double)), 0);
    batch_destroy (&batch);
}
END_TEST

//  The outputs of a batch, cut per job, are those of each job computed
//  alone
START_TEST (test_batch_equals_jobs_alone)
{
    list_t waiting, answered;
    list_init (&waiting);
    list_init (&answered);
    batch_job_t *jobs[3] = {t_job (&s_iris_run, 1, 2), t_job (&s_iris_run, 2, 1),
                            t_job (&s_iris_run, 3, 3)};
    for (int i = 0; i < 3; i++)
        list_append (&waiting, &jobs[i]->node);
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);
    batch_begin (batch, &s_iris_run, 0);
    batch_gather (batch, &waiting, 0, &answered);
    ck_assert_uint_eq (batch_size (batch), 3);
    model_workspace_t *ws = model_workspace_new ();
    char err[256];
    size_t rows = batch_rows (batch);
    uint8_t *input = model_input (s_iris, ws, rows, err, sizeof err);
    ck_assert_ptr_nonnull (input);
    for (size_t i = 0; i < 3; i++) {
        const batch_member_t *m = batch_member (batch, i);
        ck_assert_int_eq (model_convert (s_iris, m->inputs[0].datatype, m->inputs[0].data, m->rows,
                                         input + m->first_row * 4 * sizeof (double)),
                          0);
    }
    model_output_t outs[MODEL_MAX_OUTPUTS];
    ck_assert_int_eq (model_run_input (s_iris, ws, rows, outs, err, sizeof err), 0);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq (batch_member_outputs (batch, i, outs, model_output_count (s_iris)), 0);
    //  Each alone
    model_workspace_t *alone = model_workspace_new ();
    for (size_t i = 0; i < 3; i++) {
        const batch_member_t *m = batch_member (batch, i);
        model_output_t own[MODEL_MAX_OUTPUTS];
        ck_assert_int_eq (
            model_run (s_iris, alone, AMAAS_FP64, m->inputs[0].data, m->rows, own, err, sizeof err),
            0);
        codec_tensor_t t[CODEC_MAX_TENSORS];
        ck_assert_int_eq (t_result (jobs[i], t), 2);
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq (t[k].shape[0], (int64_t)m->rows);
            ck_assert_uint_eq (t[k].size, own[k].size);
            ck_assert_int_eq (memcmp (t[k].data, own[k].data, own[k].size), 0);
        }
    }
    model_workspace_destroy (&alone);
    model_workspace_destroy (&ws);
    batch_destroy (&batch);
}
END_TEST

//  A job of graph_encoder.amm (input ids INT64 [batch, seq], a table of 6
//  tokens) of `rows` sequences of length len, ids (token + i) % 6, in the
//  datatype given (INT64 or INT32, or FP32 to be refused)
static int64_t s_ids[T_MAX_JOBS][64];

static batch_job_t *t_ids_job (const batch_model_t *serving, uint64_t token, size_t rows,
                               size_t len, amaas_dtype_t dtype, int64_t bad)
{
    ck_assert_uint_le (rows * len, 64);
    int64_t *ids = s_ids[s_n_jobs];
    int32_t *ids32 = (int32_t *)ids;
    for (size_t i = 0; i < rows * len; i++) {
        int64_t v = i == rows * len - 1 && bad ? bad : (int64_t)((token + i) % 6);
        if (dtype == AMAAS_INT64)
            ids[i] = v;
        else
            ids32[i] = (int32_t)v;
    }
    codec_tensor_t t = {.name = "tokens",
                        .name_len = 6,
                        .datatype = dtype,
                        .ndim = 2,
                        .shape = {(int64_t)rows, (int64_t)len},
                        .elements = rows * len,
                        .data = ids,
                        .size = rows * len * (dtype == AMAAS_INT64 ? 8 : 4)};
    return t_job_tensors (serving, token, &t, 1);
}

//  Jobs of a graph batch together only at one sequence length: the others
//  keep their places, and the oldest of them leads the next batch
START_TEST (test_graph_jobs_batch_by_length)
{
    model_t *encoder = t_load ("graph_encoder.amm");
    batch_model_t run = {.model = encoder, .max_batch = 256};
    list_t waiting, answered;
    list_init (&waiting);
    list_init (&answered);
    list_append (&waiting, &t_ids_job (&run, 1, 1, 3, AMAAS_INT64, 0)->node);
    list_append (&waiting, &t_ids_job (&run, 2, 2, 5, AMAAS_INT64, 0)->node);
    list_append (&waiting, &t_ids_job (&run, 3, 2, 3, AMAAS_INT32, 0)->node);
    list_append (&waiting, &t_ids_job (&run, 4, 1, 5, AMAAS_INT64, 0)->node);
    list_append (&waiting, &t_job (&s_iris_run, 5, 1)->node);
    list_append (&waiting, &t_ids_job (&run, 6, 3, 3, AMAAS_INT64, 0)->node);
    batch_t *batch = batch_new (BATCH_MAX_JOBS, 1000);
    ck_assert_ptr_nonnull (batch);

    batch_begin (batch, batch_queue_first (&waiting)->serving, 1000);
    batch_gather (batch, &waiting, 1000, &answered);
    ck_assert_str_eq (t_members (batch), "1@0,3@1,6@3");
    ck_assert_uint_eq (batch_rows (batch), 6);
    ck_assert_uint_eq (batch_member (batch, 1)->n_inputs, 1);
    ck_assert_int_eq (batch_member (batch, 1)->inputs[0].shape[1], 3);
    ck_assert_str_eq (t_tokens (&waiting), "2,4,5");
    ck_assert (list_empty (&answered));

    batch_begin (batch, batch_queue_first (&waiting)->serving, 2000);
    batch_gather (batch, &waiting, 2000, &answered);
    ck_assert_str_eq (t_members (batch), "2@0,4@2");
    ck_assert_str_eq (t_tokens (&waiting), "5");
    ck_assert (batch_same_shape (batch_member (batch, 0), batch_member (batch, 1)));
    batch_destroy (&batch);
    model_destroy (&encoder);
}
END_TEST

//  Each input of a graph job checked, with a message that says what fits
START_TEST (test_graph_check_refusals)
{
    model_t *encoder = t_load ("graph_encoder.amm");
    batch_model_t run = {.model = encoder, .max_batch = 256};
    batch_member_t m;
    char err[CODEC_MESSAGE_MAX];
    //  Any name for a graph of one input; INT32 ids convert
    batch_job_t *job = t_ids_job (&run, 1, 2, 4, AMAAS_INT32, 0);
    ck_assert_int_eq (batch_check_job (job, 1000, 0, &m, err, sizeof err), AMAAS_OK);
    ck_assert_uint_eq (m.rows, 2);
    //  An id outside the table of 6 tokens, either way
    job = t_ids_job (&run, 2, 2, 4, AMAAS_INT64, 6);
    ck_assert_int_eq (batch_check_job (job, 1000, 0, &m, err, sizeof err), AMAAS_INVALID_ARGUMENT);
    ck_assert_msg (strstr (err, "holds 6") && strstr (err, "[-6, 6)"), "%s", err);
    job = t_ids_job (&run, 3, 1, 2, AMAAS_INT32, -7);
    ck_assert_int_eq (batch_check_job (job, 1000, 0, &m, err, sizeof err), AMAAS_INVALID_ARGUMENT);
    ck_assert_msg (strstr (err, "holds -7"), "%s", err);
    job = t_ids_job (&run, 4, 1, 2, AMAAS_INT64, -6); //  from the end: fine
    ck_assert_int_eq (batch_check_job (job, 1000, 0, &m, err, sizeof err), AMAAS_OK);
    //  A float tensor, a wrong rank, two tensors
    float f[4] = {0};
    codec_tensor_t t[2] = {{.name = "ids",
                            .name_len = 3,
                            .datatype = AMAAS_FP32,
                            .ndim = 2,
                            .shape = {1, 4},
                            .elements = 4,
                            .data = f,
                            .size = sizeof f},
                           {.name = "ids",
                            .name_len = 3,
                            .datatype = AMAAS_INT64,
                            .ndim = 3,
                            .shape = {1, 2, 1},
                            .elements = 2,
                            .data = s_ids[0],
                            .size = 16}};
    job = t_job_tensors (&run, 5, &t[0], 1);
    ck_assert_int_eq (batch_check_job (job, 1000, 0, &m, err, sizeof err), AMAAS_INVALID_ARGUMENT);
    ck_assert_msg (strstr (err, "datatype FP32") && strstr (err, "INT64 or INT32"), "%s", err);
    job = t_job_tensors (&run, 6, &t[1], 1);
    ck_assert_int_eq (batch_check_job (job, 1000, 0, &m, err, sizeof err), AMAAS_INVALID_ARGUMENT);
    ck_assert_msg (strstr (err, "shape [1, 2, 1]") && strstr (err, "expects [batch, seq]"), "%s",
                   err);
    job = t_job_tensors (&run, 7, t, 2);
    ck_assert_int_eq (batch_check_job (job, 1000, 0, &m, err, sizeof err), AMAAS_INVALID_ARGUMENT);
    ck_assert_msg (strstr (err, "takes 1 input tensor ('ids'), got 2"), "%s", err);
    model_destroy (&encoder);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("batch");
    TCase *tc = tcase_create ("batch");
    tcase_add_checked_fixture (tc, t_setup, t_teardown);
    tcase_add_test (tc, test_same_model_batches_in_order);
    tcase_add_test (tc, test_row_and_job_limits);
    tcase_add_test (tc, test_batch_delay);
    tcase_add_test (tc, test_expired_deadlines);
    tcase_add_test (tc, test_cancelled_job_leaves_queue);
    tcase_add_test (tc, test_check_refusals);
    tcase_add_test (tc, test_member_outputs_selection);
    tcase_add_test (tc, test_batch_equals_jobs_alone);
    tcase_add_test (tc, test_graph_jobs_batch_by_length);
    tcase_add_test (tc, test_graph_check_refusals);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
