/*  test_client.c - libamaas against a real cluster.

    Run by tests/integration/test_client.py, which starts a broker and
    workers on the example models and passes the frontend endpoint in
    AMAAS_TEST_FRONTEND.  The linear example model computes y = a x + b: the
    tests learn a and b from two predictions, then check every other answer
    against them.
*/
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amaas.h"
#include "unit.h"

static const char *frontend;
static double slope, intercept; //  of the linear example model

static amaas_client_t *connect_ok (void)
{
    amaas_error_t err;
    amaas_client_t *client = amaas_connect (frontend, 5000, &err);
    ck_assert_msg (client != NULL, "connect: %s", err.message);
    return client;
}

static amaas_tensor_t rows_tensor (amaas_dtype_t dtype, const void *data, int64_t rows)
{
    amaas_tensor_t t = {.name = "input", .datatype = dtype, .ndim = 2, .shape = {rows, 1}};
    t.data = data;
    t.size = (size_t)rows * amaas_dtype_size (dtype);
    return t;
}

static double prediction (const amaas_result_t *r, int64_t row)
{
    const amaas_tensor_t *y = amaas_result_output (r, "predictions");
    ck_assert_ptr_nonnull (y);
    ck_assert_int_eq (y->datatype, AMAAS_FP64);
    ck_assert_int_gt (y->shape[0], row);
    return ((const double *)y->data)[row];
}

//  Learns the model's line from x = 0 and x = 1
static void learn_line (void)
{
    amaas_client_t *client = connect_ok ();
    double x[2] = {0, 1};
    amaas_tensor_t t = rows_tensor (AMAAS_FP64, x, 2);
    amaas_error_t err;
    amaas_result_t *r = amaas_predict (client, "linear", &t, 1, &err);
    ck_assert_ptr_nonnull (r);
    ck_assert_int_eq (r->error.code, AMAAS_OK);
    intercept = prediction (r, 0);
    slope = prediction (r, 1) - intercept;
    //  trained on y = 2x + 1 + noise in [0, 1)
    ck_assert (slope > 1.5 && slope < 2.5);
    ck_assert (intercept > 1.0 && intercept < 2.0);
    ck_assert_str_eq (r->model, "linear");
    ck_assert_str_eq (r->version, "1");
    amaas_result_destroy (&r);
    amaas_close (&client);
}

START_TEST (test_pipelined_send_recv)
{
    amaas_client_t *client = connect_ok ();
    enum { JOBS = 2000 };
    static double inputs[JOBS];
    static bool seen[JOBS + 1];
    uint64_t first = 0;
    amaas_error_t err;
    for (int i = 0; i < JOBS; i++) {
        inputs[i] = i / 100.0;
        amaas_tensor_t t = rows_tensor (AMAAS_FP64, &inputs[i], 1);
        uint64_t id = amaas_send (client, "linear", &t, 1, &err);
        ck_assert_msg (id != 0, "send: %s", err.message);
        if (i == 0)
            first = id;
        ck_assert_uint_eq (id, first + (uint64_t)i);
    }
    //  A synchronous predict in the middle of the pipeline gets its own answer
    double mid = 123.0;
    amaas_tensor_t t = rows_tensor (AMAAS_FP64, &mid, 1);
    amaas_result_t *r = amaas_predict (client, "linear", &t, 1, &err);
    ck_assert_ptr_nonnull (r);
    ck_assert_msg (r->error.code == AMAAS_OK, "%s", r->error.message);
    ck_assert_double_eq_tol (prediction (r, 0), slope * 123.0 + intercept, 1e-9);
    amaas_result_destroy (&r);
    for (int n = 0; n < JOBS; n++) {
        r = amaas_recv (client, 10000, &err);
        ck_assert_msg (r != NULL, "recv %d: %s", n, err.message);
        ck_assert_int_eq (r->error.code, AMAAS_OK);
        uint64_t i = r->id - first;
        ck_assert_uint_lt (i, JOBS);
        ck_assert_msg (!seen[i], "job %" PRIu64 " answered twice", i);
        seen[i] = true;
        ck_assert_double_eq_tol (prediction (r, 0), slope * inputs[i] + intercept, 1e-9);
        ck_assert (r->queue_us < 60000000 && r->compute_us < 60000000);
        amaas_result_destroy (&r);
    }
    //  Nothing more: recv times out with DEADLINE_EXCEEDED
    r = amaas_recv (client, 200, &err);
    ck_assert_ptr_null (r);
    ck_assert_int_eq (err.code, AMAAS_DEADLINE_EXCEEDED);
    amaas_close (&client);
}
END_TEST

//  An event loop, as amaas-gateway runs one: poll amaas_fd for at most
//  amaas_wake_ms, then amaas_recv with timeout 0 until NULL.  It collects
//  every result; amaas_wake_ms is INT_MAX while nothing is pending and
//  finite (within the jobs' deadline) while jobs are.
START_TEST (test_event_loop)
{
    amaas_client_t *client = connect_ok ();
    amaas_error_t err;
    ck_assert_int_ge (amaas_fd (client), 0);
    ck_assert_int_eq (amaas_wake_ms (client), INT_MAX);
    //  Nothing waiting: a timeout of 0 returns at once
    ck_assert_ptr_null (amaas_recv (client, 0, &err));
    ck_assert_int_eq (err.code, AMAAS_DEADLINE_EXCEEDED);
    enum { JOBS = 500 };
    static double inputs[JOBS];
    static bool seen[JOBS];
    memset (seen, 0, sizeof seen);
    amaas_options_t opts = {.deadline_ms = 60000};
    uint64_t first = 0;
    for (int i = 0; i < JOBS; i++) {
        inputs[i] = i / 10.0;
        amaas_tensor_t t = rows_tensor (AMAAS_FP64, &inputs[i], 1);
        uint64_t id = amaas_send_opts (client, "linear", &t, 1, &opts, &err);
        ck_assert_msg (id != 0, "send: %s", err.message);
        if (i == 0)
            first = id;
        int wake = amaas_wake_ms (client);
        ck_assert_int_ge (wake, 0);
        ck_assert_int_le (wake, 60000);
    }
    size_t collected = 0;
    while (collected < JOBS) {
        int wake = amaas_wake_ms (client);
        ck_assert_int_ge (wake, 0);
        ck_assert_int_le (wake, 60000); //  jobs are pending: a timer is due
        struct pollfd item = {amaas_fd (client), POLLIN, 0};
        int rc = poll (&item, 1, wake);
        ck_assert_msg (rc >= 0 || errno == EINTR, "poll: %s", strerror (errno));
        amaas_result_t *r;
        while ((r = amaas_recv (client, 0, &err))) {
            ck_assert_msg (r->error.code == AMAAS_OK, "%s", r->error.message);
            uint64_t i = r->id - first;
            ck_assert_uint_lt (i, JOBS);
            ck_assert_msg (!seen[i], "job %" PRIu64 " answered twice", i);
            seen[i] = true;
            ck_assert_double_eq_tol (prediction (r, 0), slope * inputs[i] + intercept, 1e-9);
            amaas_result_destroy (&r);
            collected++;
        }
        ck_assert_int_eq (err.code, AMAAS_DEADLINE_EXCEEDED);
        ck_assert_uint_eq (amaas_pending (client), JOBS - collected);
    }
    //  Idle again: no timer, and nothing more to read
    ck_assert_int_eq (amaas_wake_ms (client), INT_MAX);
    ck_assert_ptr_null (amaas_recv (client, 0, &err));
    uint64_t resent = 1;
    amaas_stats (client, &resent, NULL);
    ck_assert_uint_eq (resent, 0);
    amaas_close (&client);
}
END_TEST

START_TEST (test_parked_results_and_cancel)
{
    amaas_client_t *client = connect_ok ();
    enum { JOBS = 50 };
    static double inputs[JOBS];
    static int seen[JOBS];
    amaas_error_t err;
    uint64_t first = 0, cancelled = 0;
    for (int i = 0; i < JOBS; i++) {
        inputs[i] = i;
        amaas_tensor_t t = rows_tensor (AMAAS_FP64, &inputs[i], 1);
        uint64_t id = amaas_send (client, "linear", &t, 1, &err);
        ck_assert_msg (id != 0, "send: %s", err.message);
        if (i == 0)
            first = id;
        cancelled = id;
    }
    ck_assert_uint_eq (amaas_pending (client), JOBS);
    //  The last job, given up before any answer was read: no result for it
    ck_assert_int_eq (amaas_cancel (client, cancelled), 0);
    ck_assert_int_eq (amaas_cancel (client, cancelled), -1);
    ck_assert_int_eq (amaas_cancel (client, cancelled + 1000), -1);
    ck_assert_uint_eq (amaas_pending (client), JOBS - 1);
    //  A predict waits for its own answer; the others that arrive meanwhile
    //  are kept, in order of arrival, for amaas_recv
    double x = 7;
    amaas_tensor_t t = rows_tensor (AMAAS_FP64, &x, 1);
    amaas_result_t *r = amaas_predict (client, "linear", &t, 1, &err);
    ck_assert_ptr_nonnull (r);
    ck_assert_double_eq_tol (prediction (r, 0), slope * 7 + intercept, 1e-9);
    amaas_result_destroy (&r);
    ck_assert_ptr_null (r);
    amaas_result_destroy (&r); //  destroying nothing is allowed
    amaas_result_t *results[JOBS];
    for (int n = 0; n < JOBS - 1; n++) {
        results[n] = amaas_recv (client, 10000, &err);
        ck_assert_msg (results[n] != NULL, "recv %d: %s", n, err.message);
        ck_assert_int_eq (results[n]->error.code, AMAAS_OK);
        ck_assert_uint_ne (results[n]->id, cancelled);
        uint64_t i = results[n]->id - first;
        ck_assert_uint_lt (i, JOBS);
        ck_assert_int_eq (seen[i]++, 0);
    }
    ck_assert_uint_eq (amaas_pending (client), 0);
    r = amaas_recv (client, 200, &err);
    ck_assert_ptr_null (r);
    ck_assert_int_eq (err.code, AMAAS_DEADLINE_EXCEEDED);
    uint64_t resent = 1;
    amaas_stats (client, &resent, NULL);
    ck_assert_uint_eq (resent, 0); //  a healthy broker: nothing sent twice
    //  Results are the caller's: they outlive the client
    amaas_close (&client);
    ck_assert_ptr_null (client);
    for (int n = 0; n < JOBS - 1; n++) {
        uint64_t i = results[n]->id - first;
        ck_assert_double_eq_tol (prediction (results[n], 0), slope * inputs[i] + intercept, 1e-9);
        ck_assert_str_eq (results[n]->model, "linear");
        amaas_result_destroy (&results[n]);
    }
}
END_TEST

START_TEST (test_input_datatypes)
{
    amaas_client_t *client = connect_ok ();
    amaas_error_t err;
    float f[3] = {0.5f, 1.5f, -2.0f};
    int32_t i32[3] = {1, 2, -3};
    int64_t i64[3] = {4, 0, 100000};
    struct {
        amaas_dtype_t dtype;
        const void *data;
        double x[3];
    } cases[] = {{AMAAS_FP32, f, {0.5, 1.5, -2.0}},
                 {AMAAS_INT32, i32, {1, 2, -3}},
                 {AMAAS_INT64, i64, {4, 0, 100000}}};
    for (size_t c = 0; c < 3; c++) {
        amaas_tensor_t t = rows_tensor (cases[c].dtype, cases[c].data, 3);
        amaas_result_t *r = amaas_predict (client, "linear", &t, 1, &err);
        ck_assert_ptr_nonnull (r);
        ck_assert_msg (r->error.code == AMAAS_OK, "%s: %s", amaas_dtype_name (cases[c].dtype),
                       r->error.message);
        for (int row = 0; row < 3; row++)
            ck_assert_double_eq_tol (prediction (r, row), slope * cases[c].x[row] + intercept,
                                     1e-9 * fmax (1.0, fabs (cases[c].x[row])));
        amaas_result_destroy (&r);
    }
    amaas_close (&client);
}
END_TEST

START_TEST (test_classifier_outputs)
{
    amaas_client_t *client = connect_ok ();
    amaas_error_t err;
    double rows[2][4] = {{5.1, 3.5, 1.4, 0.2}, {6.7, 3.0, 5.2, 2.3}};
    amaas_tensor_t t = {.name = "input", .datatype = AMAAS_FP64, .ndim = 2, .shape = {2, 4}};
    t.data = rows;
    t.size = sizeof rows;
    amaas_result_t *r = amaas_predict (client, "iris", &t, 1, &err);
    ck_assert_ptr_nonnull (r);
    ck_assert_int_eq (r->error.code, AMAAS_OK);
    const amaas_tensor_t *p = amaas_result_output (r, "probabilities");
    const amaas_tensor_t *label = amaas_result_output (r, "label");
    ck_assert_ptr_nonnull (p);
    ck_assert_ptr_nonnull (label);
    ck_assert_int_eq (p->shape[0], 2);
    ck_assert_int_eq (p->shape[1], 3);
    ck_assert_int_eq (label->datatype, AMAAS_INT64);
    const double *prob = p->data;
    const int64_t *labels = label->data;
    for (int row = 0; row < 2; row++) {
        double sum = 0;
        int best = 0;
        for (int k = 0; k < 3; k++) {
            sum += prob[row * 3 + k];
            if (prob[row * 3 + k] > prob[row * 3 + best])
                best = k;
        }
        ck_assert_double_eq_tol (sum, 1.0, 1e-12);
        ck_assert_int_eq (labels[row], best);
    }
    //  a setosa and a virginica
    ck_assert_int_eq (labels[0], 0);
    ck_assert_int_eq (labels[1], 2);
    amaas_result_destroy (&r);
    amaas_close (&client);
}
END_TEST

START_TEST (test_errors)
{
    amaas_client_t *client = connect_ok ();
    amaas_error_t err;
    double x = 1;
    amaas_tensor_t t = rows_tensor (AMAAS_FP64, &x, 1);
    amaas_result_t *r = amaas_predict (client, "no-such-model", &t, 1, &err);
    ck_assert_ptr_nonnull (r);
    ck_assert_int_eq (r->error.code, AMAAS_NOT_FOUND);
    ck_assert_ptr_nonnull (strstr (r->error.message, "no-such-model"));
    amaas_result_destroy (&r);
    //  wrong width
    double two[2] = {1, 2};
    amaas_tensor_t wide = rows_tensor (AMAAS_FP64, two, 1);
    wide.shape[1] = 2;
    wide.size = sizeof two;
    r = amaas_predict (client, "linear", &wide, 1, &err);
    ck_assert_ptr_nonnull (r);
    ck_assert_int_eq (r->error.code, AMAAS_INVALID_ARGUMENT);
    amaas_result_destroy (&r);
    //  refused before sending
    ck_assert_uint_eq (amaas_send (client, "", &t, 1, &err), 0);
    ck_assert_int_eq (err.code, AMAAS_INVALID_ARGUMENT);
    ck_assert_uint_eq (amaas_send (client, "linear", &t, 0, &err), 0);
    //  the models list
    amaas_model_info_t models[8];
    int n = amaas_models (client, models, 8, &err);
    ck_assert_int_eq (n, 2);
    ck_assert_str_eq (models[0].name, "iris");
    ck_assert_str_eq (models[1].name, "linear");
    ck_assert_uint_ge (models[1].workers, 1);
    //  with what their model files declare (examples/train_examples.py)
    ck_assert_str_eq (models[0].input, "input");
    ck_assert_int_eq (models[0].datatype, AMAAS_FP64);
    ck_assert_uint_eq (models[0].width, 4);
    ck_assert_uint_eq (models[0].n_outputs, 2);
    ck_assert_str_eq (models[0].outputs[0].name, "probabilities");
    ck_assert_int_eq (models[0].outputs[0].datatype, AMAAS_FP64);
    ck_assert_uint_eq (models[0].outputs[0].width, 3);
    ck_assert_str_eq (models[0].outputs[1].name, "label");
    ck_assert_int_eq (models[0].outputs[1].datatype, AMAAS_INT64);
    ck_assert_uint_eq (models[0].outputs[1].width, 0);
    //  and with their shapes
    ck_assert_uint_eq (models[0].n_inputs, 1);
    ck_assert_str_eq (models[0].inputs[0].name, "input");
    ck_assert_int_eq (models[0].inputs[0].datatype, AMAAS_FP64);
    ck_assert_int_eq (models[0].inputs[0].ndim, 2);
    ck_assert_int_eq (models[0].inputs[0].shape[0], -1);
    ck_assert_int_eq (models[0].inputs[0].shape[1], 4);
    ck_assert_int_eq (models[0].outputs[0].ndim, 2);
    ck_assert_int_eq (models[0].outputs[0].shape[0], -1);
    ck_assert_int_eq (models[0].outputs[0].shape[1], 3);
    ck_assert_int_eq (models[0].outputs[1].ndim, 1);
    ck_assert_int_eq (models[0].outputs[1].shape[0], -1);
    ck_assert_str_eq (models[1].input, "input");
    ck_assert_int_eq (models[1].datatype, AMAAS_FP64);
    ck_assert_uint_eq (models[1].n_outputs, 1);
    ck_assert_str_eq (models[1].outputs[0].name, "predictions");
    ck_assert_uint_eq (models[1].outputs[0].width, 0);
    amaas_close (&client);
    //  nobody there: UNAVAILABLE within the timeout
    client = amaas_connect ("tcp://127.0.0.1:1", 300, &err);
    ck_assert_ptr_null (client);
    ck_assert_int_eq (err.code, AMAAS_UNAVAILABLE);
    client = amaas_connect ("not an endpoint", 300, &err);
    ck_assert_ptr_null (client);
    ck_assert_int_eq (err.code, AMAAS_INVALID_ARGUMENT);
}
END_TEST

int main (void)
{
    frontend = getenv ("AMAAS_TEST_FRONTEND");
    if (!frontend) {
        fprintf (stderr, "test_client: set AMAAS_TEST_FRONTEND (run by test_client.py)\n");
        return 2;
    }
    Suite *s = suite_create ("client");
    TCase *tc = tcase_create ("client");
    tcase_set_timeout (tc, 120);
    tcase_add_checked_fixture (tc, learn_line, NULL);
    tcase_add_test (tc, test_pipelined_send_recv);
    tcase_add_test (tc, test_event_loop);
    tcase_add_test (tc, test_parked_results_and_cancel);
    tcase_add_test (tc, test_input_datatypes);
    tcase_add_test (tc, test_classifier_outputs);
    tcase_add_test (tc, test_errors);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
