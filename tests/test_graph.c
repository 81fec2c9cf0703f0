/*  test_graph.c - unit tests of graph models (worker/graph.c, graph_plan.c,
    graph_ops.c and the graph parts of model.c).

    Each test writes a small graph as JSON (single quotes for double, so that
    it reads in a C string), which t_load packs into a format_version 2 file
    with msgpack-c: "data" arrays of constants become bins of their datatype
    after a pad that aligns them at 64 bytes ("@k" takes bin t_bins[k]
    as is).  The model is loaded from a 64-byte aligned copy, planned and run
    with graph_prepare and graph_execute, and the outputs compared with
    values computed here by plain loops.  The refusals check the loader's
    and the planner's messages.
*/
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "graph.h"
#include "model.h"
#include "unit.h"

//  Raw bins for "data": "@k"
static struct {
    const void *data;
    size_t bytes;
} t_bins[8];

//  Loaded models and their buffers, freed by t_free_all
typedef struct {
    model_t *model;
    void *buf;
} t_loaded_t;
static t_loaded_t t_loaded[32];
static size_t t_n_loaded;

static void t_pack (msgpack_packer *pk, msgpack_sbuffer *sb, json_t *v, const char *dtype);

//  A "data" value: a bin of the datatype's bytes, after a pad that aligns it
static void t_pack_data (msgpack_packer *pk, msgpack_sbuffer *sb, json_t *v, const char *dtype)
{
    unsigned char bytes[4096];
    const void *data = bytes;
    size_t size = 0;
    if (json_is_string (v)) {
        int k = atoi (json_string_value (v) + 1);
        data = t_bins[k].data;
        size = t_bins[k].bytes;
    } else {
        size_t i;
        json_t *e;
        json_array_foreach (v, i, e)
        {
            double x = json_number_value (e);
            if (strcmp (dtype, "INT64") == 0) {
                int64_t n = json_is_integer (e) ? json_integer_value (e) : (int64_t)x;
                memcpy (bytes + size, &n, 8);
                size += 8;
            } else if (strcmp (dtype, "BOOL") == 0)
                bytes[size++] = (unsigned char)json_integer_value (e);
            else {
                float f = (float)x;
                memcpy (bytes + size, &f, 4);
                size += 4;
            }
        }
    }
    //  "pad" (4 bytes) + bin8 header (2) + n, "data" (5), bin header (2, 3 or 5)
    size_t header = size < 256 ? 2 : size < 65536 ? 3 : 5;
    size_t at = sb->size + 4 + 2 + 5 + header;
    size_t n = (64 - at % 64) % 64;
    char zeros[64] = {0};
    msgpack_pack_str_with_body (pk, "pad", 3);
    msgpack_pack_bin_with_body (pk, zeros, n);
    msgpack_pack_str_with_body (pk, "data", 4);
    msgpack_pack_bin_with_body (pk, data, size);
}

static void t_pack (msgpack_packer *pk, msgpack_sbuffer *sb, json_t *v, const char *dtype)
{
    switch (json_typeof (v)) {
    case JSON_OBJECT: {
        json_t *data = json_object_get (v, "data");
        json_t *type = json_object_get (v, "datatype");
        const char *dt = json_is_string (type) ? json_string_value (type) : "FP32";
        bool bin = data && (json_is_array (data) || json_is_string (data));
        msgpack_pack_map (pk, json_object_size (v) + (bin ? 1 : 0));
        const char *key;
        json_t *value;
        json_object_foreach (v, key, value)
        {
            if (bin && strcmp (key, "data") == 0) {
                t_pack_data (pk, sb, value, dt);
                continue;
            }
            msgpack_pack_str_with_body (pk, key, strlen (key));
            t_pack (pk, sb, value, dtype);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        msgpack_pack_array (pk, json_array_size (v));
        json_array_foreach (v, i, e) t_pack (pk, sb, e, dtype);
        break;
    }
    case JSON_STRING:
        msgpack_pack_str_with_body (pk, json_string_value (v), json_string_length (v));
        break;
    case JSON_INTEGER: msgpack_pack_int64 (pk, json_integer_value (v)); break;
    case JSON_REAL: msgpack_pack_double (pk, json_real_value (v)); break;
    case JSON_TRUE: msgpack_pack_true (pk); break;
    case JSON_FALSE: msgpack_pack_false (pk); break;
    default: msgpack_pack_nil (pk); break;
    }
}

//  Packs the graph `text` (JSON with ' for ") into a model file: the
//  header keys it lacks are added.  Returns the bytes (malloc'd, 64-byte
//  aligned) and their size.
static void *t_file (const char *text, size_t *size)
{
    char *json = strdup (text);
    for (char *c = json; *c; c++)
        if (*c == '\'')
            *c = '"';
    json_error_t error;
    json_t *root = json_loads (json, 0, &error);
    if (!root)
        ck_abort_msg ("bad test JSON at %d: %s", error.position, error.text);
    free (json);
    json_t *full = json_object ();
    const char *defaults[][2] = {
        {"format", "amaas-model"}, {"name", "g"}, {"version", "1"}, {"datatype", "FP32"}};
    for (size_t i = 0; i < 4; i++)
        if (!json_object_get (root, defaults[i][0]))
            json_object_set_new (full, defaults[i][0], json_string (defaults[i][1]));
    if (!json_object_get (root, "format_version"))
        json_object_set_new (full, "format_version", json_integer (2));
    json_object_update (full, root);
    json_decref (root);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    t_pack (&pk, &sb, full, "FP32");
    json_decref (full);
    void *buf = NULL;
    ck_assert_int_eq (posix_memalign (&buf, 64, sb.size), 0);
    memcpy (buf, sb.data, sb.size);
    *size = sb.size;
    msgpack_sbuffer_destroy (&sb);
    return buf;
}

//  Loads a graph; NULL with err on refusal
static model_t *t_try (const char *text, char *err, size_t err_size)
{
    size_t size;
    void *buf = t_file (text, &size);
    model_t *model = model_load_buffer (buf, size, "m.amm", err, err_size);
    if (!model) {
        free (buf);
        return NULL;
    }
    ck_assert_uint_lt (t_n_loaded, 32);
    t_loaded[t_n_loaded++] = (t_loaded_t){model, buf};
    return model;
}

static model_t *t_load (const char *text)
{
    char err[512];
    model_t *model = t_try (text, err, sizeof err);
    if (!model)
        ck_abort_msg ("refused: %s", err);
    return model;
}

static void t_free_all (void)
{
    for (size_t i = 0; i < t_n_loaded; i++) {
        model_destroy (&t_loaded[i].model);
        free (t_loaded[i].buf);
    }
    t_n_loaded = 0;
}

//  Checks that text is refused with a message holding `want`
static void t_refused (const char *text, const char *want)
{
    char err[512] = "";
    model_t *model = t_try (text, err, sizeof err);
    ck_assert_msg (!model, "loaded, expected a refusal with \"%s\"", want);
    ck_assert_msg (strstr (err, want), "message \"%s\" lacks \"%s\"", err, want);
}

static size_t t_numel (int ndim, const int64_t *dims)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)dims[d];
    return n;
}

//  Plans and runs a model: input i has shapes[i] and the values in[i].
//  Returns graph_prepare's or graph_execute's code, err the message.
static int t_run (const model_t *model, model_workspace_t *ws, const int64_t shapes[][8],
                  const void *const *in, model_output_t *out, char *err, size_t err_size)
{
    const graph_t *graph = model_graph (model);
    ck_assert_ptr_nonnull (graph);
    graph_ws_t *gws = model_workspace_graph (ws);
    ck_assert_ptr_nonnull (gws);
    void *buffers[GRAPH_MAX_INPUTS];
    int rc = graph_prepare (graph, gws, shapes, buffers, err, err_size);
    if (rc)
        return rc;
    for (size_t i = 0; i < graph_input_count (graph); i++) {
        const graph_io_t *io = graph_input (graph, i);
        ck_assert_uint_eq ((uintptr_t)buffers[i] % 64, 0);
        memcpy (buffers[i], in[i], t_numel (io->ndim, shapes[i]) * amaas_dtype_size (io->datatype));
    }
    return graph_execute (graph, gws, out, err, err_size);
}

//  Runs and expects success
static void t_ok (const model_t *model, model_workspace_t *ws, const int64_t shapes[][8],
                  const void *const *in, model_output_t *out)
{
    char err[512] = "";
    int rc = t_run (model, ws, shapes, in, out, err, sizeof err);
    ck_assert_msg (rc == 0, "run failed (%d): %s", rc, err);
}

static void t_shape (const model_output_t *out, int ndim, const int64_t *dims)
{
    ck_assert_int_eq (out->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        ck_assert_int_eq (out->shape[d], dims[d]);
}

static void t_floats (const model_output_t *out, const float *want, size_t n, float tol)
{
    ck_assert_int_eq (out->datatype, AMAAS_FP32);
    ck_assert_uint_eq (out->size, n * 4);
    const float *got = out->data;
    for (size_t i = 0; i < n; i++)
        ck_assert_msg (fabsf (got[i] - want[i]) <= tol * (1 + fabsf (want[i])) ||
                           (isnan (got[i]) && isnan (want[i])),
                       "%s[%zu] = %.9g, want %.9g", out->name, i, (double)got[i], (double)want[i]);
}

static void t_ints (const model_output_t *out, const int64_t *want, size_t n)
{
    ck_assert_int_eq (out->datatype, AMAAS_INT64);
    ck_assert_uint_eq (out->size, n * 8);
    const int64_t *got = out->data;
    for (size_t i = 0; i < n; i++)
        ck_assert_msg (got[i] == want[i], "%s[%zu] = %lld, want %lld", out->name, i,
                       (long long)got[i], (long long)want[i]);
}

//  Deterministic test values in about -2 .. 2
static void t_fill (float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) % 4001) / 1000.0f - 2.0f;
    }
}

//  ---------------------------------------------------------------------------

START_TEST (test_broadcast_binary)
{
    model_t *m =
        t_load ("{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['batch', 2, 3]},"
                "            {'name': 'c', 'datatype': 'FP32', 'shape': ['batch', 2, 1]}],"
                " 'outputs': [{'name': 'add', 'datatype': 'FP32', 'shape': ['batch', 2, 3]},"
                "             {'name': 'mul', 'datatype': 'FP32', 'shape': ['batch', 2, 3]},"
                "             {'name': 'sub', 'datatype': 'FP32', 'shape': ['batch', 2, 3]},"
                "             {'name': 'div', 'datatype': 'FP32', 'shape': ['batch', 2, 3]},"
                "             {'name': 'pow', 'datatype': 'FP32', 'shape': ['batch', 2, 3]}],"
                " 'constants': [{'name': 'b', 'datatype': 'FP32', 'shape': [3], 'data': [1, 2, 3]},"
                "               {'name': 'two', 'datatype': 'FP32', 'shape': [], 'data': [2]}],"
                " 'nodes': [{'op': 'add', 'inputs': ['x', 'b'], 'outputs': ['add']},"
                "           {'op': 'mul', 'inputs': ['x', 'c'], 'outputs': ['mul']},"
                "           {'op': 'sub', 'inputs': ['c', 'x'], 'outputs': ['sub']},"
                "           {'op': 'div', 'inputs': ['x', 'two'], 'outputs': ['div']},"
                "           {'op': 'pow', 'inputs': ['c', 'two'], 'outputs': ['pow0']},"
                "           {'op': 'add', 'inputs': ['pow0', 'add'], 'outputs': ['pow']}]}");
    model_workspace_t *ws = model_workspace_new ();
    float x[2 * 6], c[2 * 2];
    t_fill (x, 12, 1);
    t_fill (c, 4, 2);
    int64_t shapes[2][8] = {{2, 2, 3}, {2, 2, 1}};
    const void *in[] = {x, c};
    model_output_t out[8];
    t_ok (m, ws, shapes, in, out);
    float add[12], mul[12], sub[12], dv[12], pw[12];
    const float b[3] = {1, 2, 3};
    for (int n = 0; n < 2; n++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) {
                int k = (n * 2 + i) * 3 + j;
                float cv = c[n * 2 + i];
                add[k] = x[k] + b[j];
                mul[k] = x[k] * cv;
                sub[k] = cv - x[k];
                dv[k] = x[k] / 2;
                pw[k] = powf (cv, 2) + add[k];
            }
    int64_t dims[] = {2, 2, 3};
    t_shape (&out[0], 3, dims);
    t_floats (&out[0], add, 12, 0);
    t_floats (&out[1], mul, 12, 0);
    t_floats (&out[2], sub, 12, 0);
    t_floats (&out[3], dv, 12, 0);
    t_floats (&out[4], pw, 12, 1e-6f);
    ck_assert_str_eq (model_input_name (m), "x");
    ck_assert_uint_eq (model_input_width (m), 6);
    ck_assert_uint_eq (model_output_count (m), 5);
    ck_assert_str_eq (model_output_name (m, 1), "mul");
    ck_assert_uint_eq (model_output_width (m, 0), 0); //  rank 3
    ck_assert_uint_eq (model_op_count (m), 0);
    char err[256];
    model_output_t outs[8];
    ck_assert_int_eq (model_run (m, ws, AMAAS_FP32, x, 2, outs, err, sizeof err), -1);
    ck_assert_str_eq (err, "model g is a graph model");
    ck_assert_ptr_null (model_input (m, ws, 2, err, sizeof err));
    ck_assert_int_eq (model_run_input (m, ws, 2, outs, err, sizeof err), -1);
    ck_assert_uint_gt (model_workspace_size (ws), 0);
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

START_TEST (test_int64_bool_ops)
{
    model_t *m = t_load (
        "{'inputs': [{'name': 'a', 'datatype': 'INT64', 'shape': ['batch', 4]},"
        "            {'name': 'f', 'datatype': 'FP32', 'shape': ['batch', 4]}],"
        " 'outputs': [{'name': 'div', 'datatype': 'INT64', 'shape': ['batch', 4]},"
        "             {'name': 'neg', 'datatype': 'INT64', 'shape': ['batch', 4]},"
        "             {'name': 'where', 'datatype': 'INT64', 'shape': ['batch', 4]},"
        "             {'name': 'cast', 'datatype': 'INT64', 'shape': ['batch', 4]},"
        "             {'name': 'fb', 'datatype': 'FP32', 'shape': ['batch', 4]},"
        "             {'name': 'sum', 'datatype': 'INT64', 'shape': ['batch', 4]}],"
        " 'constants': [{'name': 'd', 'datatype': 'INT64', 'shape': [4], 'data': [2, 0, -3, 1]},"
        "               {'name': 'z', 'datatype': 'INT64', 'shape': [1], 'data': [0]}],"
        " 'nodes': [{'op': 'div', 'inputs': ['a', 'd'], 'outputs': ['div']},"
        "           {'op': 'neg', 'inputs': ['a'], 'outputs': ['neg']},"
        "           {'op': 'equal', 'inputs': ['d', 'z'], 'outputs': ['dz']},"
        "           {'op': 'where', 'inputs': ['dz', 'neg', 'a'], 'outputs': ['where']},"
        "           {'op': 'cast', 'inputs': ['f'], 'outputs': ['cast'], 'to': 'INT64'},"
        "           {'op': 'cast', 'inputs': ['f'], 'outputs': ['fbool'], 'to': 'BOOL'},"
        "           {'op': 'cast', 'inputs': ['fbool'], 'outputs': ['fb'], 'to': 'FP32'},"
        "           {'op': 'sub', 'inputs': ['a', 'neg'], 'outputs': ['s0']},"
        "           {'op': 'mul', 'inputs': ['s0', 'd'], 'outputs': ['s1']},"
        "           {'op': 'add', 'inputs': ['s1', 'z'], 'outputs': ['sum']}]}");
    model_workspace_t *ws = model_workspace_new ();
    int64_t a[8] = {7, 5, 7, -9, -7, 3, INT64_MIN, 4};
    float f[8] = {1.9f, -2.7f, NAN, 0, 1e30f, -1e30f, 0.5f, -0.0f};
    int64_t shapes[2][8] = {{2, 4}, {2, 4}};
    const void *in[] = {a, f};
    model_output_t out[8];
    t_ok (m, ws, shapes, in, out);
    const int64_t d[4] = {2, 0, -3, 1};
    int64_t div[8], neg[8], where[8], sum[8];
    for (int i = 0; i < 8; i++) {
        int64_t dd = d[i % 4];
        div[i] = dd == 0 ? 0 : a[i] / dd; //  C truncates toward zero
        neg[i] = (int64_t)(0 - (uint64_t)a[i]);
        where[i] = dd == 0 ? neg[i] : a[i];
        sum[i] = (int64_t)(((uint64_t)a[i] - (uint64_t)neg[i]) * (uint64_t)dd);
    }
    t_ints (&out[0], div, 8);
    ck_assert_int_eq (div[4], -3); //  -7 / 2 truncates toward zero, not to -4
    t_ints (&out[1], neg, 8);
    t_ints (&out[2], where, 8);
    const int64_t cast[8] = {1, -2, 0, 0, INT64_MAX, INT64_MIN, 0, 0};
    t_ints (&out[3], cast, 8);
    const float fb[8] = {1, 1, 1, 0, 1, 1, 1, 0};
    t_floats (&out[4], fb, 8, 0);
    t_ints (&out[5], sum, 8);
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

START_TEST (test_movers)
{
    //  slice with negative steps, reshape 0/-1, gather negative indices,
    //  split equal and sized, concat, transpose, unsqueeze, expand both ways
    model_t *m = t_load (
        "{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['batch', 4, 6]}],"
        " 'outputs': [{'name': 'sl', 'datatype': 'FP32', 'shape': ['batch', 2, 3]},"
        "             {'name': 'rs', 'datatype': 'FP32', 'shape': ['batch', 3, 8]},"
        "             {'name': 'ga', 'datatype': 'FP32', 'shape': ['batch', 2, 6]},"
        "             {'name': 'p1', 'datatype': 'FP32', 'shape': ['batch', 4, 2]},"
        "             {'name': 'q2', 'datatype': 'FP32', 'shape': ['batch', 4, 4]},"
        "             {'name': 'cat', 'datatype': 'FP32', 'shape': ['batch', 4, 12]},"
        "             {'name': 'tr', 'datatype': 'FP32', 'shape': ['batch', 6, 4]},"
        "             {'name': 'ex', 'datatype': 'FP32', 'shape': ['batch', 3, 4, 6]}],"
        " 'constants': ["
        "   {'name': 'st', 'datatype': 'INT64', 'shape': [2], 'data': [-1, 100]},"
        "   {'name': 'en', 'datatype': 'INT64', 'shape': [2], 'data': [-100, 0]},"
        "   {'name': 'ax', 'datatype': 'INT64', 'shape': [2], 'data': [1, -1]},"
        "   {'name': 'sp', 'datatype': 'INT64', 'shape': [2], 'data': [-2, -2]},"
        "   {'name': 'shp', 'datatype': 'INT64', 'shape': [3], 'data': [0, -1, 8]},"
        "   {'name': 'idx', 'datatype': 'INT64', 'shape': [2], 'data': [-1, 1]},"
        "   {'name': 'sz', 'datatype': 'INT64', 'shape': [2], 'data': [2, 4]},"
        "   {'name': 'one', 'datatype': 'INT64', 'shape': [1], 'data': [1]},"
        "   {'name': 'exs', 'datatype': 'INT64', 'shape': [4], 'data': [1, 3, 1, 1]}],"
        " 'nodes': [{'op': 'slice', 'inputs': ['x', 'st', 'en', 'ax', 'sp'], 'outputs': ['sl']},"
        "           {'op': 'reshape', 'inputs': ['x', 'shp'], 'outputs': ['rs']},"
        "           {'op': 'gather', 'inputs': ['x', 'idx'], 'outputs': ['ga'], 'axis': 1},"
        "           {'op': 'split', 'inputs': ['x', ''], 'outputs': ['p0', 'p1', 'p2'],"
        "            'axis': -1},"
        "           {'op': 'split', 'inputs': ['x', 'sz'], 'outputs': ['q1', 'q2'], 'axis': 2},"
        "           {'op': 'concat', 'inputs': ['p0', 'q2', 'x'], 'outputs': ['cat'], 'axis': -1},"
        "           {'op': 'transpose', 'inputs': ['x'], 'outputs': ['tr'], 'perm': [0, 2, 1]},"
        "           {'op': 'unsqueeze', 'inputs': ['x', 'one'], 'outputs': ['xu']},"
        "           {'op': 'expand', 'inputs': ['xu', 'exs'], 'outputs': ['ex']}]}");
    model_workspace_t *ws = model_workspace_new ();
    enum { B = 3 };
    float x[B][4][6];
    t_fill (&x[0][0][0], sizeof x / 4, 3);
    int64_t shapes[1][8] = {{B, 4, 6}};
    const void *in[] = {x};
    model_output_t out[8];
    t_ok (m, ws, shapes, in, out);
    float sl[B][2][3], ga[B][2][6], p1[B][4][2], q2[B][4][4], cat[B][4][12], tr[B][6][4],
        ex[B][3][4][6];
    for (int n = 0; n < B; n++) {
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                sl[n][i][j] = x[n][3 - 2 * i][5 - 2 * j];
        for (int j = 0; j < 6; j++) {
            ga[n][0][j] = x[n][3][j];
            ga[n][1][j] = x[n][1][j];
        }
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < 2; j++)
                p1[n][i][j] = x[n][i][2 + j];
            for (int j = 0; j < 4; j++)
                q2[n][i][j] = x[n][i][2 + j];
            for (int j = 0; j < 12; j++)
                cat[n][i][j] = j < 2 ? x[n][i][j] : j < 6 ? x[n][i][j] : x[n][i][j - 6];
            for (int j = 0; j < 6; j++) {
                tr[n][j][i] = x[n][i][j];
                for (int k = 0; k < 3; k++)
                    ex[n][k][i][j] = x[n][i][j];
            }
        }
    }
    int64_t d_sl[] = {B, 2, 3}, d_rs[] = {B, 3, 8}, d_ex[] = {B, 3, 4, 6};
    t_shape (&out[0], 3, d_sl);
    t_floats (&out[0], &sl[0][0][0], sizeof sl / 4, 0);
    t_shape (&out[1], 3, d_rs);
    t_floats (&out[1], &x[0][0][0], sizeof x / 4, 0);
    t_floats (&out[2], &ga[0][0][0], sizeof ga / 4, 0);
    t_floats (&out[3], &p1[0][0][0], sizeof p1 / 4, 0);
    t_floats (&out[4], &q2[0][0][0], sizeof q2 / 4, 0);
    t_floats (&out[5], &cat[0][0][0], sizeof cat / 4, 0);
    t_floats (&out[6], &tr[0][0][0], sizeof tr / 4, 0);
    t_shape (&out[7], 4, d_ex);
    t_floats (&out[7], &ex[0][0][0][0], sizeof ex / 4, 0);
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

START_TEST (test_reductions)
{
    //  argmax keepdims / select_last, reduce_mean over any axes, softmax,
    //  log_softmax, layer_norm, flatten, squeeze
    model_t *m = t_load (
        "{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['batch', 3, 4]}],"
        " 'outputs': [{'name': 'am', 'datatype': 'INT64', 'shape': ['batch', 1, 4]},"
        "             {'name': 'al', 'datatype': 'INT64', 'shape': ['batch', 3]},"
        "             {'name': 'rm', 'datatype': 'FP32', 'shape': ['batch', 4]},"
        "             {'name': 'rt', 'datatype': 'FP32', 'shape': ['batch', 3, 1]},"
        "             {'name': 'sm', 'datatype': 'FP32', 'shape': ['batch', 3, 4]},"
        "             {'name': 'ls', 'datatype': 'FP32', 'shape': ['batch', 3, 4]},"
        "             {'name': 'ln', 'datatype': 'FP32', 'shape': ['batch', 12]},"
        "             {'name': 'sq', 'datatype': 'FP32', 'shape': ['batch', 3]}],"
        " 'constants': ["
        "   {'name': 'g', 'datatype': 'FP32', 'shape': [3, 4], 'data': "
        "     [1, 2, 0.5, 1, 1, 1, -1, 2, 0.25, 1, 1, 3]},"
        "   {'name': 'bb', 'datatype': 'FP32', 'shape': [3, 4], 'data': "
        "     [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1]},"
        "   {'name': 'a2', 'datatype': 'INT64', 'shape': [1], 'data': [-1]}],"
        " 'nodes': [{'op': 'argmax', 'inputs': ['x'], 'outputs': ['am'], 'axis': 1},"
        "           {'op': 'argmax', 'inputs': ['x'], 'outputs': ['al'], 'axis': -1,"
        "            'keepdims': false, 'select_last_index': true},"
        "           {'op': 'reduce_mean', 'inputs': ['x'], 'outputs': ['rm'], 'axes': [1],"
        "            'keepdims': false},"
        "           {'op': 'reduce_mean', 'inputs': ['x'], 'outputs': ['rt'], 'axes': [-1]},"
        "           {'op': 'softmax', 'inputs': ['x'], 'outputs': ['sm'], 'axis': 1},"
        "           {'op': 'log_softmax', 'inputs': ['x'], 'outputs': ['ls']},"
        "           {'op': 'layer_norm', 'inputs': ['x', 'g', 'bb'], 'outputs': ['ln0'],"
        "            'axis': 1, 'epsilon': 0.001},"
        "           {'op': 'flatten', 'inputs': ['ln0'], 'outputs': ['ln']},"
        "           {'op': 'squeeze', 'inputs': ['rt', 'a2'], 'outputs': ['sq']}]}");
    model_workspace_t *ws = model_workspace_new ();
    enum { B = 2 };
    float x[B][3][4] = {{{1, 5, 2, 5}, {3, 5, 0, 1}, {3, -1, 2, 5}},
                        {{0, 0, 0, 0}, {-1, 2, 2, -3}, {4, 1, 4, 0}}};
    int64_t shapes[1][8] = {{B, 3, 4}};
    const void *in[] = {x};
    model_output_t out[8];
    t_ok (m, ws, shapes, in, out);
    int64_t am[B][4], al[B][3];
    float rm[B][4], rt[B][3], sm[B][3][4], ls[B][3][4], ln[B][3][4];
    const float g[12] = {1, 2, 0.5, 1, 1, 1, -1, 2, 0.25, 1, 1, 3};
    const float bb[12] = {0, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 1, 1.1f};
    for (int n = 0; n < B; n++) {
        for (int j = 0; j < 4; j++) {
            int best = 0;
            double sum = 0, e = 0;
            for (int i = 0; i < 3; i++) {
                if (x[n][i][j] > x[n][best][j])
                    best = i;
                sum += x[n][i][j];
            }
            am[n][j] = best;
            rm[n][j] = (float)(sum / 3);
            double max = fmax (fmax (x[n][0][j], x[n][1][j]), x[n][2][j]);
            for (int i = 0; i < 3; i++)
                e += exp (x[n][i][j] - max);
            for (int i = 0; i < 3; i++)
                sm[n][i][j] = (float)(exp (x[n][i][j] - max) / e);
        }
        double mean = 0, var = 0;
        for (int i = 0; i < 3; i++) {
            int best = 0;
            double sum = 0, e = 0, max = x[n][i][0];
            for (int j = 0; j < 4; j++) {
                if (x[n][i][j] >= x[n][i][best])
                    best = j;
                sum += x[n][i][j];
                max = fmax (max, x[n][i][j]);
                mean += x[n][i][j] / 12.0;
            }
            al[n][i] = best;
            rt[n][i] = (float)(sum / 4);
            for (int j = 0; j < 4; j++)
                e += exp (x[n][i][j] - max);
            for (int j = 0; j < 4; j++)
                ls[n][i][j] = (float)(x[n][i][j] - max - log (e));
        }
        for (int k = 0; k < 12; k++)
            var += pow ((&x[n][0][0])[k] - mean, 2) / 12.0;
        for (int k = 0; k < 12; k++)
            (&ln[n][0][0])[k] =
                (float)(((&x[n][0][0])[k] - mean) / sqrt (var + 0.001) * g[k] + bb[k]);
    }
    ck_assert_int_eq (am[0][1], 0); //  ties: the first
    ck_assert_int_eq (al[0][0], 3); //  select_last_index
    int64_t d_am[] = {B, 1, 4}, d_al[] = {B, 3}, d_ln[] = {B, 12};
    t_shape (&out[0], 3, d_am);
    t_ints (&out[0], &am[0][0], B * 4);
    t_shape (&out[1], 2, d_al);
    t_ints (&out[1], &al[0][0], B * 3);
    t_floats (&out[2], &rm[0][0], B * 4, 1e-6f);
    t_floats (&out[3], &rt[0][0], B * 3, 1e-6f);
    t_floats (&out[4], &sm[0][0][0], B * 12, 1e-5f);
    t_floats (&out[5], &ls[0][0][0], B * 12, 1e-5f);
    t_shape (&out[6], 2, d_ln);
    t_floats (&out[6], &ln[0][0][0], B * 12, 1e-4f);
    t_shape (&out[7], 2, d_al);
    t_floats (&out[7], &rt[0][0], B * 3, 1e-6f);
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

START_TEST (test_static_chain)
{
    //  shape -> gather -> unsqueeze -> concat -> reshape with a dynamic batch,
    //  range (INT64 and FP32) for position ids, constant_of_shape
    model_t *m =
        t_load ("{'inputs': [{'name': 'ids', 'datatype': 'INT64', 'shape': ['batch', 'seq']},"
                "            {'name': 'h', 'datatype': 'FP32', 'shape': ['batch', 'seq', 4]}],"
                " 'outputs': [{'name': 'emb', 'datatype': 'FP32', 'shape': ['batch', 'seq', 2]},"
                "             {'name': 'r', 'datatype': 'FP32', 'shape': ['batch', 'seq', 2, 2]},"
                "             {'name': 'rf', 'datatype': 'FP32', 'shape': ['batch', 3]}],"
                " 'constants': ["
                "   {'name': 'tok', 'datatype': 'FP32', 'shape': [5, 2], 'data': "
                "     [0, 1, 10, 11, 20, 21, 30, 31, 40, 41]},"
                "   {'name': 'pos', 'datatype': 'FP32', 'shape': [6, 2], 'data': "
                "     [0.5, 0.25, 1.5, 1.25, 2.5, 2.25, 3.5, 3.25, 4.5, 4.25, 5.5, 5.25]},"
                "   {'name': 'i0', 'datatype': 'INT64', 'shape': [], 'data': [0]},"
                "   {'name': 'i1', 'datatype': 'INT64', 'shape': [], 'data': [1]},"
                "   {'name': 'ax0', 'datatype': 'INT64', 'shape': [1], 'data': [0]},"
                "   {'name': 'two2', 'datatype': 'INT64', 'shape': [2], 'data': [2, 2]},"
                "   {'name': 'f0', 'datatype': 'FP32', 'shape': [], 'data': [0.5]},"
                "   {'name': 'f1', 'datatype': 'FP32', 'shape': [], 'data': [2]},"
                "   {'name': 'fd', 'datatype': 'FP32', 'shape': [], 'data': [0.5]},"
                "   {'name': 'i1v', 'datatype': 'INT64', 'shape': [1], 'data': [1]},"
                "   {'name': 'cs', 'datatype': 'INT64', 'shape': [1], 'data': [3]}],"
                " 'nodes': [{'op': 'shape', 'inputs': ['h'], 'outputs': ['hs']},"
                "           {'op': 'gather', 'inputs': ['hs', 'i0'], 'outputs': ['b']},"
                "           {'op': 'gather', 'inputs': ['hs', 'i1'], 'outputs': ['s']},"
                "           {'op': 'unsqueeze', 'inputs': ['b', 'ax0'], 'outputs': ['b1']},"
                "           {'op': 'unsqueeze', 'inputs': ['s', 'ax0'], 'outputs': ['s1']},"
                "           {'op': 'concat', 'inputs': ['b1', 's1', 'two2'], 'outputs': ['ns'],"
                "            'axis': 0},"
                "           {'op': 'reshape', 'inputs': ['h', 'ns'], 'outputs': ['r']},"
                "           {'op': 'range', 'inputs': ['i0', 's', 'i1'], 'outputs': ['pids']},"
                "           {'op': 'gather', 'inputs': ['pos', 'pids'], 'outputs': ['pe']},"
                "           {'op': 'gather', 'inputs': ['tok', 'ids'], 'outputs': ['te']},"
                "           {'op': 'add', 'inputs': ['te', 'pe'], 'outputs': ['emb']},"
                "           {'op': 'range', 'inputs': ['f0', 'f1', 'fd'], 'outputs': ['fr']},"
                "           {'op': 'constant_of_shape', 'inputs': ['cs'], 'outputs': ['c3'],"
                "            'value': 2},"
                "           {'op': 'mul', 'inputs': ['fr', 'c3'], 'outputs': ['frc']},"
                "           {'op': 'shape', 'inputs': ['ids'], 'outputs': ['is'], 'start': -2,"
                "            'end': 1},"
                "           {'op': 'constant_of_shape', 'inputs': ['is'], 'outputs': ['z'],"
                "            'datatype': 'FP32', 'value': 1},"
                "           {'op': 'unsqueeze', 'inputs': ['z', 'i1v'], 'outputs': ['z1']},"
                "           {'op': 'mul', 'inputs': ['z1', 'frc'], 'outputs': ['rf']}]}");
    const graph_t *graph = model_graph (m);
    ck_assert_int_eq (graph_input (graph, 0)->index_bound, 5); //  the rows of tok
    ck_assert_int_eq (graph_input (graph, 1)->index_bound, 0);
    ck_assert_uint_eq (model_input_width (m), 0); //  seq is named
    model_workspace_t *ws = model_workspace_new ();
    model_output_t out[8];
    char err[512];
    for (int64_t seq = 1; seq <= 6; seq += 5) {
        for (int64_t b = 1; b <= 3; b += 2) {
            int64_t ids[3 * 6];
            float h[3 * 6 * 4];
            for (int64_t i = 0; i < b * seq; i++)
                ids[i] = (i * 3) % 5 - (i % 2 ? 5 : 0); //  negative ones count from the end
            t_fill (h, (size_t)(b * seq * 4), 9);
            int64_t shapes[2][8] = {{b, seq}, {b, seq, 4}};
            const void *in[] = {ids, h};
            t_ok (m, ws, shapes, in, out);
            float emb[3 * 6 * 2], rf[3 * 3];
            for (int64_t i = 0; i < b * seq; i++) {
                int64_t id = ids[i] < 0 ? ids[i] + 5 : ids[i], p = i % seq;
                for (int k = 0; k < 2; k++)
                    emb[i * 2 + k] = (float)(10 * id + k) + (p + 0.5f - 0.25f * (float)k);
            }
            for (int64_t i = 0; i < b; i++)
                for (int k = 0; k < 3; k++)
                    rf[i * 3 + k] = (float)(k + 1);
            int64_t d_emb[] = {b, seq, 2}, d_r[] = {b, seq, 2, 2}, d_rf[] = {b, 3};
            t_shape (&out[0], 3, d_emb);
            t_floats (&out[0], emb, (size_t)(b * seq * 2), 0);
            t_shape (&out[1], 4, d_r);
            t_floats (&out[1], h, (size_t)(b * seq * 4), 0);
            t_shape (&out[2], 2, d_rf);
            t_floats (&out[2], rf, (size_t)(b * 3), 0);
        }
    }
    //  A sequence longer than the position table: the plan fails, naming the node
    float h[7 * 4] = {0};
    int64_t ids[7] = {0}, shapes7[2][8] = {{1, 7}, {1, 7, 4}};
    const void *in7[] = {ids, h};
    ck_assert_int_eq (t_run (m, ws, shapes7, in7, out, err, sizeof err), -1);
    ck_assert_str_eq (err, "node 8 (gather): index 6 is out of range for a dimension of 6");
    //  An id out of range from the data: the run fails
    int64_t shapes2[2][8] = {{1, 2}, {1, 2, 4}};
    ids[1] = -6;
    ck_assert_int_eq (t_run (m, ws, shapes2, in7, out, err, sizeof err), -1);
    ck_assert_str_eq (err, "node 9 (gather): index -6 is out of range for a dimension of 5");
    //  Named dimensions must agree, the batch too
    int64_t bad[2][8] = {{1, 2}, {1, 3, 4}};
    ck_assert_int_eq (t_run (m, ws, bad, in7, out, err, sizeof err), -1);
    ck_assert_msg (strstr (err, "\"seq\" is 3, input 'ids' has 2"), "%s", err);
    int64_t bad_batch[2][8] = {{1, 2}, {2, 2, 4}};
    ck_assert_int_eq (t_run (m, ws, bad_batch, in7, out, err, sizeof err), -1);
    ck_assert_msg (strstr (err, "the batch is 2"), "%s", err);
    int64_t bad_fixed[2][8] = {{1, 2}, {1, 2, 5}};
    ck_assert_int_eq (t_run (m, ws, bad_fixed, in7, out, err, sizeof err), -1);
    ck_assert_msg (strstr (err, "dimension 2 is 5, declared 4"), "%s", err);
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

START_TEST (test_dense_conv)
{
    //  gemm (bias, activation), matmul with broadcast and transposes,
    //  conv + batch_norm + pools, global_avg_pool, unary ops
    static float w1[4 * 3], b1[3], wc[4 * 2 * 3 * 3], bc[4];
    t_fill (w1, 12, 11);
    t_fill (b1, 3, 12);
    t_fill (wc, sizeof wc / 4, 13);
    t_fill (bc, 4, 14);
    t_bins[0].data = w1;
    t_bins[0].bytes = sizeof w1;
    t_bins[1].data = wc;
    t_bins[1].bytes = sizeof wc;
    t_bins[2].data = bc;
    t_bins[2].bytes = sizeof bc;
    model_t *m = t_load (
        "{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['batch', 2, 4]},"
        "            {'name': 'img', 'datatype': 'FP32', 'shape': ['batch', 2, 5, 5]}],"
        " 'outputs': [{'name': 'g', 'datatype': 'FP32', 'shape': ['batch', 2, 3]},"
        "             {'name': 'mm', 'datatype': 'FP32', 'shape': ['batch', 2, 2]},"
        "             {'name': 'cv', 'datatype': 'FP32', 'shape': ['batch', 4, 3, 3]},"
        "             {'name': 'mp', 'datatype': 'FP32', 'shape': ['batch', 4, 2, 2]},"
        "             {'name': 'ap', 'datatype': 'FP32', 'shape': ['batch', 4, 2, 2]},"
        "             {'name': 'gp', 'datatype': 'FP32', 'shape': ['batch', 4, 1, 1]},"
        "             {'name': 'un', 'datatype': 'FP32', 'shape': ['batch', 2, 4]}],"
        " 'constants': ["
        "   {'name': 'w1', 'datatype': 'FP32', 'shape': [4, 3], 'data': '@0'},"
        "   {'name': 'b1', 'datatype': 'FP32', 'shape': [3], 'data': [0.5, -1, 0.25]},"
        "   {'name': 'wc', 'datatype': 'FP32', 'shape': [4, 2, 3, 3], 'data': '@1'},"
        "   {'name': 'bc', 'datatype': 'FP32', 'shape': [4], 'data': '@2'},"
        "   {'name': 'sc', 'datatype': 'FP32', 'shape': [4], 'data': [1, 2, 0.5, -1]},"
        "   {'name': 'bi', 'datatype': 'FP32', 'shape': [4], 'data': [0, 1, 2, 3]},"
        "   {'name': 'mu', 'datatype': 'FP32', 'shape': [4], 'data': [0.1, 0.2, 0.3, 0.4]},"
        "   {'name': 'va', 'datatype': 'FP32', 'shape': [4], 'data': [1, 4, 0.25, 2]}],"
        " 'nodes': [{'op': 'gemm', 'inputs': ['x', 'w1', 'b1'], 'outputs': ['g'],"
        "            'activation': 'leaky_relu', 'alpha': 0.1},"
        "           {'op': 'matmul', 'inputs': ['x', 'x'], 'outputs': ['mm'], 'trans_b': true},"
        "           {'op': 'conv', 'inputs': ['img', 'wc', 'bc'], 'outputs': ['c0'],"
        "            'pads': [1, 0, 1, 2], 'strides': [2, 2], 'activation': 'relu'},"
        "           {'op': 'batch_norm', 'inputs': ['c0', 'sc', 'bi', 'mu', 'va'],"
        "            'outputs': ['cv'], 'epsilon': 0.0},"
        "           {'op': 'max_pool', 'inputs': ['cv'], 'outputs': ['mp'], 'kernel': [2, 2],"
        "            'strides': [2, 2], 'ceil_mode': true},"
        "           {'op': 'avg_pool', 'inputs': ['cv'], 'outputs': ['ap'], 'kernel': [2, 2],"
        "            'pads': [1, 1, 0, 0], 'strides': [2, 2]},"
        "           {'op': 'global_avg_pool', 'inputs': ['cv'], 'outputs': ['gp']},"
        "           {'op': 'sigmoid', 'inputs': ['x'], 'outputs': ['u0']},"
        "           {'op': 'sqrt', 'inputs': ['u0'], 'outputs': ['u1']},"
        "           {'op': 'gelu', 'inputs': ['u1'], 'outputs': ['u2'], 'approximate': 'tanh'},"
        "           {'op': 'exp', 'inputs': ['u2'], 'outputs': ['u3']},"
        "           {'op': 'reciprocal', 'inputs': ['u3'], 'outputs': ['u4']},"
        "           {'op': 'erf', 'inputs': ['u4'], 'outputs': ['u5']},"
        "           {'op': 'tanh', 'inputs': ['u5'], 'outputs': ['u6']},"
        "           {'op': 'neg', 'inputs': ['u6'], 'outputs': ['u7']},"
        "           {'op': 'relu', 'inputs': ['u7'], 'outputs': ['u8']},"
        "           {'op': 'gelu', 'inputs': ['x'], 'outputs': ['u9']},"
        "           {'op': 'add', 'inputs': ['u8', 'u9'], 'outputs': ['u10']},"
        "           {'op': 'leaky_relu', 'inputs': ['u10'], 'outputs': ['un'], 'alpha': 0.5},"
        "           {'op': 'identity', 'inputs': ['un'], 'outputs': ['unused']}]}");
    ck_assert_uint_eq (model_weight_bytes_copied (m), 0); //  aligned: used in place
    model_workspace_t *ws = model_workspace_new ();
    enum { B = 2 };
    float x[B][2][4], img[B][2][5][5];
    t_fill (&x[0][0][0], sizeof x / 4, 15);
    t_fill (&img[0][0][0][0], sizeof img / 4, 16);
    int64_t shapes[2][8] = {{B, 2, 4}, {B, 2, 5, 5}};
    const void *in[] = {x, img};
    model_output_t out[8];
    t_ok (m, ws, shapes, in, out);
    float g[B][2][3], mm[B][2][2], cv[B][4][3][3], mp[B][4][2][2], ap[B][4][2][2], gp[B][4],
        un[B][2][4];
    const float b1v[3] = {0.5f, -1, 0.25f}, sc[4] = {1, 2, 0.5f, -1}, bi[4] = {0, 1, 2, 3},
                mu[4] = {0.1f, 0.2f, 0.3f, 0.4f}, va[4] = {1, 4, 0.25f, 2};
    for (int n = 0; n < B; n++) {
        for (int i = 0; i < 2; i++) {
            for (int j = 0; j < 3; j++) {
                double s = b1v[j];
                for (int k = 0; k < 4; k++)
                    s += x[n][i][k] * w1[k * 3 + j];
                g[n][i][j] = (float)(s < 0 ? 0.1 * s : s);
            }
            for (int j = 0; j < 2; j++) {
                double s = 0;
                for (int k = 0; k < 4; k++)
                    s += x[n][i][k] * x[n][j][k];
                mm[n][i][j] = (float)s;
            }
            for (int k = 0; k < 4; k++) {
                double v = x[n][i][k];
                v = 1 / (1 + exp (-v));
                v = sqrt (v);
                v = 0.5 * v * (1 + tanh (sqrt (2 / M_PI) * (v + 0.044715 * v * v * v)));
                v = erf (1 / exp (v));
                v = -tanh (v);
                v = v > 0 ? v : 0;
                v += 0.5 * x[n][i][k] * (1 + erf (x[n][i][k] / sqrt (2)));
                un[n][i][k] = (float)(v < 0 ? 0.5 * v : v);
            }
        }
        //  conv: pads top 1, left 0, bottom 1, right 2, stride 2: 5 -> 3
        for (int o = 0; o < 4; o++) {
            double sum = 0;
            for (int oh = 0; oh < 3; oh++)
                for (int ow = 0; ow < 3; ow++) {
                    double s = bc[o];
                    for (int c = 0; c < 2; c++)
                        for (int i = 0; i < 3; i++)
                            for (int j = 0; j < 3; j++) {
                                int h = oh * 2 + i - 1, w = ow * 2 + j;
                                if (h >= 0 && h < 5 && w >= 0 && w < 5)
                                    s += img[n][c][h][w] * wc[((o * 2 + c) * 3 + i) * 3 + j];
                            }
                    s = s > 0 ? s : 0;
                    cv[n][o][oh][ow] = (float)((s - mu[o]) / sqrt (va[o]) * sc[o] + bi[o]);
                    sum += cv[n][o][oh][ow];
                }
            gp[n][o] = (float)(sum / 9);
            for (int oh = 0; oh < 2; oh++)
                for (int ow = 0; ow < 2; ow++) {
                    //  max: windows [2i, 2i+1] clipped to 3 (ceil_mode)
                    float best = -INFINITY;
                    for (int i = 2 * oh; i < 2 * oh + 2 && i < 3; i++)
                        for (int j = 2 * ow; j < 2 * ow + 2 && j < 3; j++)
                            best = fmaxf (best, cv[n][o][i][j]);
                    mp[n][o][oh][ow] = best;
                    //  avg: pad 1 top and left, windows [2i-1, 2i]
                    double s = 0;
                    int count = 0;
                    for (int i = 2 * oh - 1; i < 2 * oh + 1; i++)
                        for (int j = 2 * ow - 1; j < 2 * ow + 1; j++)
                            if (i >= 0 && j >= 0) {
                                s += cv[n][o][i][j];
                                count++;
                            }
                    ap[n][o][oh][ow] = (float)(s / count);
                }
        }
    }
    t_floats (&out[0], &g[0][0][0], sizeof g / 4, 1e-5f);
    t_floats (&out[1], &mm[0][0][0], sizeof mm / 4, 1e-5f);
    t_floats (&out[2], &cv[0][0][0][0], sizeof cv / 4, 1e-4f);
    int64_t d_mp[] = {B, 4, 2, 2};
    t_shape (&out[3], 4, d_mp);
    t_floats (&out[3], &mp[0][0][0][0], sizeof mp / 4, 1e-4f);
    t_floats (&out[4], &ap[0][0][0][0], sizeof ap / 4, 1e-4f);
    t_floats (&out[5], &gp[0][0], sizeof gp / 4, 1e-4f);
    t_floats (&out[6], &un[0][0][0], sizeof un / 4, 1e-5f);
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

START_TEST (test_matmul_broadcast)
{
    static float w[4 * 5], v[2 * 4 * 5];
    t_fill (w, 20, 21);
    t_fill (v, 40, 22);
    t_bins[0] = (typeof (t_bins[0])){w, sizeof w};
    t_bins[1] = (typeof (t_bins[1])){v, sizeof v};
    //  [b, 2, 3, 4] . [4, 5] and [b, 1, 4, 3]^T . [2, 4, 5]: batch broadcast
    model_t *m = t_load (
        "{'inputs': [{'name': 'a', 'datatype': 'FP32', 'shape': ['batch', 2, 3, 4]},"
        "            {'name': 't', 'datatype': 'FP32', 'shape': ['batch', 1, 4, 3]}],"
        " 'outputs': [{'name': 'y', 'datatype': 'FP32', 'shape': ['batch', 2, 3, 5]},"
        "             {'name': 'z', 'datatype': 'FP32', 'shape': ['batch', 2, 3, 5]}],"
        " 'constants': [{'name': 'w', 'datatype': 'FP32', 'shape': [4, 5], 'data': '@0'},"
        "               {'name': 'v', 'datatype': 'FP32', 'shape': [2, 4, 5], 'data': '@1'}],"
        " 'nodes': [{'op': 'matmul', 'inputs': ['a', 'w'], 'outputs': ['y']},"
        "           {'op': 'matmul', 'inputs': ['t', 'v'], 'outputs': ['z'], 'trans_a': true}]}");
    model_workspace_t *ws = model_workspace_new ();
    enum { B = 2 };
    float a[B][2][3][4], t[B][1][4][3], y[B][2][3][5], z[B][2][3][5];
    t_fill (&a[0][0][0][0], sizeof a / 4, 23);
    t_fill (&t[0][0][0][0], sizeof t / 4, 24);
    int64_t shapes[2][8] = {{B, 2, 3, 4}, {B, 1, 4, 3}};
    const void *in[] = {a, t};
    model_output_t out[8];
    t_ok (m, ws, shapes, in, out);
    for (int n = 0; n < B; n++)
        for (int q = 0; q < 2; q++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 5; j++) {
                    double s = 0, r = 0;
                    for (int k = 0; k < 4; k++) {
                        s += a[n][q][i][k] * w[k * 5 + j];
                        r += t[n][0][k][i] * v[(q * 4 + k) * 5 + j];
                    }
                    y[n][q][i][j] = (float)s;
                    z[n][q][i][j] = (float)r;
                }
    int64_t dims[] = {B, 2, 3, 5};
    t_shape (&out[0], 4, dims);
    t_floats (&out[0], &y[0][0][0][0], sizeof y / 4, 1e-5f);
    t_shape (&out[1], 4, dims);
    t_floats (&out[1], &z[0][0][0][0], sizeof z / 4, 1e-5f);
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

//  A one-node graph: y = x + b, x [batch, seq]
static const char *t_small =
    "{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['batch', 'seq']}],"
    " 'outputs': [{'name': 'y', 'datatype': 'FP32', 'shape': ['batch', 'seq']}],"
    " 'constants': [{'name': 'b', 'datatype': 'FP32', 'shape': [1], 'data': [%s]}],"
    " 'nodes': [{'op': 'add', 'inputs': ['x', 'b'], 'outputs': ['y']}]}";

START_TEST (test_plan_cache)
{
    char text[1024];
    snprintf (text, sizeof text, t_small, "1");
    model_t *m = t_load (text);
    const graph_t *graph = model_graph (m);
    model_workspace_t *ws = model_workspace_new ();
    graph_ws_t *gws = model_workspace_graph (ws);
    ck_assert_ptr_eq (model_workspace_graph (ws), gws);
    float x[64] = {0}, want[64];
    for (int i = 0; i < 64; i++) {
        x[i] = (float)i;
        want[i] = (float)i + 1;
    }
    const void *in[] = {x};
    model_output_t out[8];
    //  The same shapes again: the same plan, nothing allocated
    int64_t s1[1][8] = {{2, 3}};
    t_ok (m, ws, s1, in, out);
    size_t size = model_workspace_size (ws);
    ck_assert_uint_eq (graph_ws_plans_made (gws), 1);
    t_ok (m, ws, s1, in, out);
    t_floats (&out[0], want, 6, 0);
    ck_assert_uint_eq (graph_ws_plans_made (gws), 1);
    ck_assert_uint_eq (model_workspace_size (ws), size);
    //  17 shapes: 16 plans kept, the least recently used goes
    for (int64_t seq = 1; seq <= 17; seq++) {
        int64_t s[1][8] = {{1, seq}};
        t_ok (m, ws, s, in, out);
        t_floats (&out[0], want, (size_t)seq, 0);
    }
    ck_assert_uint_eq (graph_ws_plan_count (gws, graph), GRAPH_PLANS);
    ck_assert_uint_eq (graph_ws_plans_made (gws), 18);
    int64_t s17[1][8] = {{1, 17}}, s2[1][8] = {{1, 2}};
    t_ok (m, ws, s17, in, out); //  kept
    ck_assert_uint_eq (graph_ws_plans_made (gws), 18);
    t_ok (m, ws, s1, in, out); //  evicted (the oldest): made again
    ck_assert_uint_eq (graph_ws_plans_made (gws), 19);
    t_ok (m, ws, s2, in, out); //  evicted by s1 (the oldest then): made again
    ck_assert_uint_eq (graph_ws_plans_made (gws), 20);
    ck_assert_uint_eq (graph_ws_plan_count (gws, graph), GRAPH_PLANS);
    //  A new graph (at the same address, likely) never gets the old one's plans
    t_free_all ();
    snprintf (text, sizeof text, t_small, "5");
    m = t_load (text);
    t_ok (m, ws, s1, in, out);
    ck_assert_uint_eq (graph_ws_plans_made (gws), 21);
    for (int i = 0; i < 6; i++)
        want[i] = (float)i + 5;
    t_floats (&out[0], want, 6, 0);
    ck_assert_uint_eq (graph_ws_plan_count (gws, model_graph (m)), 1);
    //  The plan limit: -2 with a message
    size_t old = graph_plan_limit (1000);
    int64_t big[1][8] = {{10, 100}};
    char err[256];
    ck_assert_int_eq (t_run (m, ws, big, in, out, err, sizeof err), -2);
    ck_assert_msg (strstr (err, "above the limit of 1000 bytes"), "%s", err);
    graph_plan_limit (old);
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

#define T_IO                                                                                       \
    "'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['batch', 4]},"                         \
    "           {'name': 'i', 'datatype': 'INT64', 'shape': ['batch', 2]}],"                       \
    "'outputs': [{'name': 'y', 'datatype': 'FP32', 'shape': ['batch', 4]}],"
#define T_W "'constants': [{'name': 'w', 'datatype': 'FP32', 'shape': [4], 'data': [1,2,3,4]}],"

START_TEST (test_refusals)
{
    t_refused ("{" T_IO "'nodes': [{'op': 'foo', 'inputs': ['x'], 'outputs': ['y']}]}",
               "m.amm: node 0: unknown op \"foo\"");
    t_refused ("{" T_IO "'nodes': [{'op': 'relu', 'inputs': ['nope'], 'outputs': ['y']}]}",
               "m.amm: node 0 (relu): input 0 \"nope\" is not defined before this node");
    t_refused ("{" T_IO "'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['x']}]}",
               "node 0 (relu): output 0 \"x\" is defined twice (also by a graph input)");
    t_refused ("{" T_IO "'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']},"
               "{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']}]}",
               "node 1 (relu): output 0 \"y\" is defined twice (also by an earlier node)");
    t_refused ("{" T_IO "'nodes': [{'op': 'reshape', 'inputs': ['x', 'i'], 'outputs': ['y']}]}",
               "node 0 (reshape): input 1 'i' must be static");
    t_refused ("{" T_IO T_W "'nodes': [{'op': 'gemm', 'inputs': ['x', 'w'], 'outputs': ['y'],"
               "'name': '/encoder/layer.0/attention/MatMul'}]}",
               "m.amm: node 0 (gemm '/encoder/layer.0/attention/MatMul'): input 1 'w' must be "
               "a constant FP32 [K, N]");
    t_refused ("{" T_IO "'nodes': [{'op': 'gemm', 'inputs': ['x', 'x'], 'outputs': ['y']}]}",
               "input 1 'x' must be a constant FP32 [K, N]");
    t_refused ("{" T_IO "'nodes': [{'op': 'softmax', 'inputs': ['x'], 'outputs': ['y'],"
               "'axis': 'a'}]}",
               "node 0 (softmax): attribute \"axis\" has type str, expected int");
    t_refused ("{" T_IO "'nodes': [{'op': 'softmax', 'inputs': ['x'], 'outputs': ['y'],"
               "'axis': 2}]}",
               "attribute \"axis\" is 2, expected -2..1 for rank 2");
    t_refused ("{" T_IO "'nodes': [{'op': 'gelu', 'inputs': ['x'], 'outputs': ['y'],"
               "'approximate': 'fast'}]}",
               "attribute \"approximate\" is \"fast\", expected one of none, tanh");
    t_refused ("{" T_IO "'nodes': [{'op': 'cast', 'inputs': ['x'], 'outputs': ['y']}]}",
               "attribute \"to\" is required");
    t_refused ("{" T_IO "'nodes': [{'op': 'add', 'inputs': ['x'], 'outputs': ['y']}]}",
               "node 0 (add): has 1 inputs, add takes 2");
    t_refused ("{" T_IO "'nodes': [{'op': 'add', 'inputs': ['x', 'i'], 'outputs': ['y']}]}",
               "input 1 'i' is INT64, input 0 is FP32: they must be alike");
    t_refused ("{" T_IO "'nodes': [{'op': 'where', 'inputs': ['x', 'x', 'x'], 'outputs': ['y']}]}",
               "input 0 'x' is FP32, expected BOOL");
    t_refused ("{" T_IO "'nodes': [{'op': 'range', 'inputs': ['i', 'i', 'i'], 'outputs': ['y']}]}",
               "must be static");
    t_refused ("{" T_IO "'nodes': [{'op': 'relu', 'inputs': ['i'], 'outputs': ['y']}]}",
               "input 0 'i' is INT64, expected FP32");
    t_refused ("{" T_IO "'nodes': [{'op': 'argmax', 'inputs': ['x'], 'outputs': ['y']}]}",
               "outputs[0]: \"y\" is INT64, declared FP32");
    t_refused ("{" T_IO "'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['z']}]}",
               "outputs[0]: \"y\" is not a tensor of the graph");
    //  The declarations
    t_refused ("{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['b',1,1,1,1,1,1,1,1]}],"
               "'outputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['b']}],"
               "'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']}]}",
               "inputs[0]: \"shape\" has 9 dimensions, expected 1..8");
    t_refused ("{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': [4, 'b']}],"
               "'outputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['b']}],"
               "'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']}]}",
               "inputs[0]: shape[0] must be the batch, a named dimension (str)");
    t_refused ("{" T_IO "'outputs': [{'name': 'y', 'datatype': 'FP32', 'shape': ['n', 4]}],"
               "'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']}]}",
               "outputs[0]: shape[0] \"n\" is not the batch \"batch\" of inputs[0]");
    t_refused ("{" T_IO "'constants': [{'name': 'w', 'datatype': 'FP32', 'shape': [3],"
               "'data': [1, 2]}], 'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']}]}",
               "constants[0] 'w': \"data\" holds 8 bytes, 3 FP32 need 12");
    t_refused ("{" T_IO "'constants': [{'name': 'w', 'datatype': 'BOOL', 'shape': [2],"
               "'data': [1, 2]}], 'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']}]}",
               "\"data\"[1] is 2, a BOOL is 0 or 1");
    static const float nan[1] = {NAN};
    t_bins[0] = (typeof (t_bins[0])){nan, 4};
    //  Constants' values are not read at load: any value loads (a mask of
    //  -inf, and NaN too, which computes as IEEE says)
    t_load ("{" T_IO "'constants': [{'name': 'w', 'datatype': 'FP32', 'shape': [],"
            "'data': '@0'}], 'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']}]}");
    t_refused ("{" T_IO "'constants': [{'name': 'w', 'datatype': 'FP32', 'shape': [],"
               "'data': [1]}, {'name': 'w', 'datatype': 'FP32', 'shape': [], 'data': [1]}],"
               "'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y']}]}",
               "constants[1]: name \"w\" is defined twice (also by a constant)");
    t_refused ("{" T_IO "'datatype': 'FP64', 'nodes': []}", "is not FP32 (graphs compute in FP32)");
    t_refused ("{" T_IO "'format_version': 3, 'nodes': []}", "format_version 3 is not supported");
    t_refused ("{" T_IO "'nodes': []}", "\"nodes\" has 0 entries, expected 1..4096");
    t_refused ("{" T_IO "'nodes': [{'op': 'relu', 'inputs': ['x'], 'outputs': ['y'], "
               "'name': 3}]}",
               "node 0: \"name\" has type uint, expected str");
    t_refused ("{" T_IO "'nodes': [{'op': 'max_pool', 'inputs': ['x'], 'outputs': ['y']}]}",
               "attribute \"kernel\" is required");
    t_refused ("{" T_IO "'nodes': [{'op': 'max_pool', 'inputs': ['x'], 'outputs': ['y'],"
               "'kernel': [2, 2]}]}",
               "input 0 has 2 dimensions, expected [N, C, H, W]");
    t_refused ("{" T_IO "'nodes': [{'op': 'transpose', 'inputs': ['x'], 'outputs': ['y'],"
               "'perm': [1, 1]}]}",
               "attribute \"perm\" must hold 0 .. 1 each once");
}
END_TEST

START_TEST (test_plan_errors)
{
    model_t *m = t_load ("{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['b', 's']}],"
                         "'outputs': [{'name': 'y', 'datatype': 'FP32', 'shape': ['b', 3]}],"
                         "'constants': [{'name': 'c', 'datatype': 'FP32', 'shape': [3],"
                         "'data': [1, 2, 3]}],"
                         "'nodes': [{'op': 'add', 'inputs': ['x', 'c'], 'outputs': ['y'],"
                         "'name': 'plus'}]}");
    model_workspace_t *ws = model_workspace_new ();
    float x[8] = {0};
    const void *in[] = {x};
    model_output_t out[8];
    char err[256];
    int64_t bad[1][8] = {{2, 4}}, ok[1][8] = {{2, 3}}, one[1][8] = {{2, 1}};
    ck_assert_int_eq (t_run (m, ws, bad, in, out, err, sizeof err), -1);
    ck_assert_str_eq (err, "node 0 (add 'plus'): shapes [2, 4] and [3] do not broadcast");
    t_ok (m, ws, ok, in, out);
    t_ok (m, ws, one, in, out); //  [2, 1] + [3] broadcasts to [2, 3]
    ck_assert_int_eq (out[0].shape[1], 3);
    model_workspace_destroy (&ws);
    t_free_all ();
    //  An output that disagrees with its declaration
    m = t_load ("{'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': ['b', 's']}],"
                "'outputs': [{'name': 'y', 'datatype': 'FP32', 'shape': ['b', 2]}],"
                "'constants': [{'name': 'p', 'datatype': 'INT64', 'shape': [2],"
                "'data': [-1, 0]}],"
                "'nodes': [{'op': 'transpose', 'inputs': ['x'], 'outputs': ['t']},"
                "{'op': 'reshape', 'inputs': ['t', 'p'], 'outputs': ['y']}]}");
    ws = model_workspace_new ();
    int64_t s2[1][8] = {{3, 2}}, sq[1][8] = {{2, 2}};
    ck_assert_int_eq (t_run (m, ws, s2, in, out, err, sizeof err), -1);
    ck_assert_str_eq (err, "output 'y' is [2, 3] for a batch of 3, declared [b, 2]");
    t_ok (m, ws, sq, in, out); //  [2, 2] transposed fits
    model_workspace_destroy (&ws);
    t_free_all ();
}
END_TEST

//  The fuzzer's graph seeds (tests/fuzz/graph_seeds.py) load, plan and run,
//  as fuzz_model runs them: a batch of 1, named dimensions 2, zeros
START_TEST (test_fuzz_seeds)
{
    const char *names[] = {"graph_mlp", "graph_encoder", "graph_cnn"};
    for (size_t k = 0; k < 3; k++) {
        char path[1024], err[512];
        snprintf (path, sizeof path, "%s/%s.amm", T_CORPUS, names[k]);
        model_t *m = model_load (path, err, sizeof err);
        ck_assert_msg (m, "%s", err);
        const graph_t *graph = model_graph (m);
        int64_t shapes[GRAPH_MAX_INPUTS][8];
        const void *in[GRAPH_MAX_INPUTS];
        static char zeros[4096];
        for (size_t i = 0; i < graph_input_count (graph); i++) {
            const graph_io_t *io = graph_input (graph, i);
            for (int d = 0; d < io->ndim; d++)
                shapes[i][d] = d == 0 ? 1 : io->dims[d] > 0 ? io->dims[d] : 2;
            in[i] = zeros;
        }
        model_workspace_t *ws = model_workspace_new ();
        model_output_t out[8];
        t_ok (m, ws, shapes, in, out);
        for (size_t o = 0; o < graph_output_count (graph); o++)
            ck_assert_int_eq (out[o].shape[0], 1);
        model_workspace_destroy (&ws);
        model_destroy (&m);
    }
}
END_TEST

Suite *t_suite (void)
{
    Suite *suite = suite_create ("graph");
    TCase *tc = tcase_create ("graph");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_broadcast_binary);
    tcase_add_test (tc, test_int64_bool_ops);
    tcase_add_test (tc, test_movers);
    tcase_add_test (tc, test_reductions);
    tcase_add_test (tc, test_static_chain);
    tcase_add_test (tc, test_dense_conv);
    tcase_add_test (tc, test_matmul_broadcast);
    tcase_add_test (tc, test_plan_cache);
    tcase_add_test (tc, test_refusals);
    tcase_add_test (tc, test_plan_errors);
    tcase_add_test (tc, test_fuzz_seeds);
    suite_add_tcase (suite, tc);
    return suite;
}

int main (void)
{
    return unit_run (t_suite ());
}
