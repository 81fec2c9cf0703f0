/*  test_codec.c - unit tests of the wire codec: round trips of headers,
    tensors and messages, and refusal of malformed input of every kind.
*/
#define _GNU_SOURCE //  memmem
#include <check.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "unit.h"

static char err[CODEC_MESSAGE_MAX];

//  Encodes a header and returns its bytes in a new buffer
static msgpack_sbuffer *encoded (const codec_header_t *h)
{
    msgpack_sbuffer *f = msgpack_sbuffer_new ();
    ck_assert_ptr_nonnull (f);
    ck_assert_int_eq (codec_header_pack (h, f), 0);
    return f;
}

//  Encodes n tensors and returns the payload's bytes in a new buffer
static msgpack_sbuffer *tensors_encoded (const codec_tensor_t *tensors, size_t n)
{
    msgpack_sbuffer *f = msgpack_sbuffer_new ();
    ck_assert_ptr_nonnull (f);
    ck_assert_int_eq (codec_tensors_pack (tensors, n, f), 0);
    return f;
}

START_TEST (test_header_round_trip)
{
    codec_header_t in = {0}, out = {0};
    in.fields = HDR_ID | HDR_JOB | HDR_CODE | HDR_QUEUE_US | HDR_COMPUTE_US | HDR_CREDIT | HDR_PID |
                HDR_HOST | HDR_OUTPUTS | HDR_PRIORITY | HDR_DEADLINE_MS;
    in.priority = 3;
    in.deadline_ms = 250;
    in.id = UINT64_MAX;
    in.job = 42;
    in.code = AMAAS_NOT_FOUND;
    in.queue_us = 1234567890123ULL;
    in.compute_us = 7;
    in.credit = 65535;
    in.pid = 4242;
    strcpy (in.host, "node-1");
    in.n_outputs = 2;
    strcpy (in.outputs[0], "label");
    strcpy (in.outputs[1], "probabilities");
    codec_header_set_model (&in, "iris");
    codec_header_set_version (&in, "3");
    codec_header_set_message (&in, "no %s", "worker");
    msgpack_sbuffer *f = encoded (&in);
    ck_assert_int_eq (codec_header_decode (&out, f->data, f->size, err, sizeof err), 0);
    ck_assert_uint_eq (out.fields, in.fields);
    ck_assert_uint_eq (out.id, UINT64_MAX);
    ck_assert_uint_eq (out.job, 42);
    ck_assert_uint_eq (out.code, AMAAS_NOT_FOUND);
    ck_assert_uint_eq (out.queue_us, 1234567890123ULL);
    ck_assert_uint_eq (out.compute_us, 7);
    ck_assert_uint_eq (out.credit, 65535);
    ck_assert_uint_eq (out.pid, 4242);
    ck_assert_uint_eq (out.priority, 3);
    ck_assert_uint_eq (out.deadline_ms, 250);
    ck_assert_str_eq (out.host, "node-1");
    ck_assert_str_eq (out.model, "iris");
    ck_assert_str_eq (out.version, "3");
    ck_assert_str_eq (out.message, "no worker");
    ck_assert_uint_eq (out.n_outputs, 2);
    ck_assert_str_eq (out.outputs[1], "probabilities");
    msgpack_sbuffer_free (f);
    codec_header_reset (&out);
}
END_TEST

START_TEST (test_models_round_trip)
{
    codec_header_t in = {0}, out = {0};
    in.fields = HDR_MODELS;
    in.n_models = 3;
    in.models = calloc (3, sizeof (codec_model_t));
    for (int i = 0; i < 3; i++) {
        snprintf (in.models[i].name, CODEC_NAME_MAX, "model-%d", i);
        snprintf (in.models[i].version, CODEC_VERSION_MAX, "%d", i + 1);
        in.models[i].workers = (uint32_t)i * 10;
    }
    msgpack_sbuffer *f = encoded (&in);
    ck_assert_int_eq (codec_header_decode (&out, f->data, f->size, err, sizeof err), 0);
    ck_assert_uint_eq (out.n_models, 3);
    ck_assert_str_eq (out.models[2].name, "model-2");
    ck_assert_str_eq (out.models[2].version, "3");
    ck_assert_uint_eq (out.models[2].workers, 20);
    msgpack_sbuffer_free (f);
    codec_header_reset (&in);
    codec_header_reset (&out);
}
END_TEST

//  A model entry's metadata (input, datatype, outputs) survives a round
//  trip, entry by entry, and an entry without it stays without it.
START_TEST (test_models_metadata_round_trip)
{
    codec_header_t in = {0}, out = {0};
    in.fields = HDR_MODELS;
    in.n_models = 2;
    in.models = calloc (2, sizeof (codec_model_t));
    ck_assert_ptr_nonnull (in.models);
    strcpy (in.models[0].name, "iris");
    codec_model_meta_t *meta = &in.models[0].meta;
    memset (meta->input, 'i', DEFS_TENSOR_NAME_MAX); //  the longest name
    meta->datatype = AMAAS_FP64;
    meta->n_outputs = CODEC_MODEL_OUTPUTS;
    for (int k = 0; k < CODEC_MODEL_OUTPUTS; k++) {
        snprintf (meta->outputs[k].name, sizeof meta->outputs[k].name, "out-%d", k);
        meta->outputs[k].datatype = k % 2 ? AMAAS_INT64 : AMAAS_BYTES;
        meta->outputs[k].width = (uint32_t)k * 3;
        //  Output k has rank k (output 0 no shape, as an older peer sends)
        meta->outputs[k].ndim = (uint32_t)k;
        for (int d = 0; d < k; d++)
            meta->outputs[k].shape[d] = d == 0 ? -1 : d % 2 ? (int64_t)CODEC_DIM_MAX : -1;
    }
    //  Every input, the longest names, every rank, the extreme dimensions
    meta->n_inputs = CODEC_MODEL_INPUTS;
    for (int k = 0; k < CODEC_MODEL_INPUTS; k++) {
        codec_input_t *input = &meta->inputs[k];
        memset (input->name, 'a' + k, DEFS_NAME_MAX);
        input->datatype = k % 2 ? AMAAS_INT64 : AMAAS_FP32;
        input->ndim = (uint32_t)(k % CODEC_MODEL_DIMS) + 1;
        input->shape[0] = -1;
        for (uint32_t d = 1; d < input->ndim; d++)
            input->shape[d] = d % 3 == 0 ? -1 : d % 3 == 1 ? 1 : (int64_t)CODEC_DIM_MAX;
    }
    strcpy (in.models[1].name, "old");
    msgpack_sbuffer *f = encoded (&in);
    ck_assert_int_eq (codec_header_decode (&out, f->data, f->size, err, sizeof err), 0);
    ck_assert_uint_eq (out.n_models, 2);
    const codec_model_meta_t *got = &out.models[0].meta;
    ck_assert_uint_eq (strlen (got->input), DEFS_TENSOR_NAME_MAX);
    ck_assert_int_eq (got->datatype, AMAAS_FP64);
    ck_assert_uint_eq (got->n_outputs, CODEC_MODEL_OUTPUTS);
    ck_assert_str_eq (got->outputs[7].name, "out-7");
    ck_assert_int_eq (got->outputs[7].datatype, AMAAS_INT64);
    ck_assert_int_eq (got->outputs[6].datatype, AMAAS_BYTES);
    ck_assert_uint_eq (got->outputs[7].width, 21);
    ck_assert_uint_eq (got->outputs[0].ndim, 0);
    ck_assert_uint_eq (got->outputs[7].ndim, 7);
    ck_assert_int_eq (got->outputs[7].shape[0], -1);
    ck_assert_int_eq (got->outputs[7].shape[1], CODEC_DIM_MAX);
    ck_assert_int_eq (got->outputs[7].shape[2], -1);
    ck_assert_uint_eq (got->n_inputs, CODEC_MODEL_INPUTS);
    ck_assert_uint_eq (strlen (got->inputs[15].name), DEFS_NAME_MAX);
    ck_assert_int_eq (got->inputs[15].datatype, AMAAS_INT64);
    ck_assert_uint_eq (got->inputs[7].ndim, CODEC_MODEL_DIMS);
    ck_assert_int_eq (got->inputs[7].shape[0], -1);
    ck_assert_int_eq (got->inputs[7].shape[1], 1);
    ck_assert_int_eq (got->inputs[7].shape[2], CODEC_DIM_MAX);
    ck_assert_int_eq (got->inputs[7].shape[3], -1);
    ck_assert_mem_eq (got, meta, sizeof *meta);
    const codec_model_meta_t *none = &out.models[1].meta;
    ck_assert_str_eq (none->input, "");
    ck_assert_int_eq (none->datatype, AMAAS_DTYPE_INVALID);
    ck_assert_uint_eq (none->n_outputs, 0);
    ck_assert_uint_eq (none->n_inputs, 0);
    msgpack_sbuffer_free (f);
    codec_header_reset (&in);
    codec_header_reset (&out);
}
END_TEST

//  Packs an arbitrary msgpack map from a callback into a fresh buffer.
typedef void (pack_fn) (msgpack_packer *pk);

static msgpack_sbuffer packed (pack_fn *fn)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    fn (&pk);
    return sbuf;
}

static void pk_str (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str (pk, strlen (s));
    msgpack_pack_str_body (pk, s, strlen (s));
}

static void pack_id_then_bad_model (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 2);
    pk_str (pk, "model");
    msgpack_pack_int (pk, 5);
    pk_str (pk, "id");
    msgpack_pack_uint64 (pk, 99);
}

static void pack_zero_id (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 1);
    pk_str (pk, "id");
    msgpack_pack_uint64 (pk, 0);
}

static void pack_negative_credit (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 1);
    pk_str (pk, "credit");
    msgpack_pack_int (pk, -1);
}

static void pack_long_model (msgpack_packer *pk)
{
    char name[300];
    memset (name, 'a', sizeof name - 1);
    name[sizeof name - 1] = 0;
    msgpack_pack_map (pk, 1);
    pk_str (pk, "model");
    pk_str (pk, name);
}

static void pack_array_header (msgpack_packer *pk)
{
    msgpack_pack_array (pk, 1);
    msgpack_pack_int (pk, 1);
}

static void pack_unknown_keys (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 3);
    pk_str (pk, "future");
    msgpack_pack_array (pk, 0);
    msgpack_pack_int (pk, 7); //  non-string key
    msgpack_pack_nil (pk);
    pk_str (pk, "id");
    msgpack_pack_uint64 (pk, 5);
}

static void pack_models_twice_no_version (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 2);
    pk_str (pk, "models");
    msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 1);
    pk_str (pk, "name");
    pk_str (pk, "a");
    pk_str (pk, "models");
    msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 1);
    pk_str (pk, "name");
    pk_str (pk, "b");
}

//  Found by fuzz_codec: a model entry without version must survive a round
//  trip, and a repeated key must not leak the first list
START_TEST (test_models_without_version_round_trip)
{
    codec_header_t h = {0}, again = {0};
    msgpack_sbuffer sbuf = packed (pack_models_twice_no_version);
    ck_assert_int_eq (codec_header_decode (&h, sbuf.data, sbuf.size, err, sizeof err), 0);
    ck_assert_uint_eq (h.n_models, 1);
    ck_assert_str_eq (h.models[0].name, "b");
    ck_assert_str_eq (h.models[0].version, "");
    msgpack_sbuffer *f = encoded (&h);
    ck_assert_int_eq (codec_header_decode (&again, f->data, f->size, err, sizeof err), 0);
    ck_assert_str_eq (again.models[0].name, "b");
    msgpack_sbuffer_free (f);
    msgpack_sbuffer_destroy (&sbuf);
    codec_header_reset (&h);
    codec_header_reset (&again);
}
END_TEST

//  A READY's models entry with one bad metadata value (s_bad_meta picks
//  which): each must be refused with a message naming the key.
static int s_bad_meta;

static void pk_output (msgpack_packer *pk, const char *name, const char *dtype, int64_t width)
{
    msgpack_pack_map (pk, 3);
    pk_str (pk, "name");
    pk_str (pk, name);
    pk_str (pk, "datatype");
    pk_str (pk, dtype);
    pk_str (pk, "width");
    msgpack_pack_int64 (pk, width);
}

//  An array of n ints
static void pk_ints (msgpack_packer *pk, const int64_t *values, size_t n)
{
    msgpack_pack_array (pk, n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_int64 (pk, values[i]);
}

//  An input map {name, datatype, shape}; NULL leaves a key out, and shape
//  then is [-1, 4]
static void pk_input (msgpack_packer *pk, const char *name, const char *dtype, bool has_shape,
                      const int64_t *shape, size_t ndim)
{
    static const int64_t rows_by_4[] = {-1, 4};
    msgpack_pack_map (pk, (name != NULL) + (dtype != NULL) + has_shape);
    if (name)
        pk_str (pk, "name"), pk_str (pk, name);
    if (dtype)
        pk_str (pk, "datatype"), pk_str (pk, dtype);
    if (has_shape)
        pk_str (pk, "shape"), shape ? pk_ints (pk, shape, ndim) : pk_ints (pk, rows_by_4, 2);
}

//  The bad shapes every input and output refuses, in turn
static const int64_t s_bad_shapes[][CODEC_MODEL_DIMS + 1] = {
    {4, 4},                           //  the first is not -1
    {-1, 0},                          //  a dimension of 0
    {-1, -2},                         //  below -1
    {-1, (int64_t)CODEC_DIM_MAX + 1}, //  too big
    {-1, 1, 1, 1, 1, 1, 1, 1, 1},     //  9 dimensions
};
static const size_t s_bad_ndims[] = {2, 2, 2, 2, CODEC_MODEL_DIMS + 1};
#define S_BAD_SHAPES (sizeof s_bad_ndims / sizeof s_bad_ndims[0])

//  Case `which` of the new keys' bad forms (inputs, an output's shape)
static void pack_bad_shapes (msgpack_packer *pk, int which)
{
    char long_name[DEFS_NAME_MAX + 2];
    memset (long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    if (which < (int)S_BAD_SHAPES) { //  an input's bad shape, in the second input
        pk_str (pk, "inputs"), msgpack_pack_array (pk, 2);
        pk_input (pk, "ids", "INT64", true, NULL, 0);
        pk_input (pk, "mask", "INT64", true, s_bad_shapes[which], s_bad_ndims[which]);
        return;
    }
    which -= (int)S_BAD_SHAPES;
    if (which < (int)S_BAD_SHAPES) { //  an output's bad shape
        pk_str (pk, "outputs"), msgpack_pack_array (pk, 1);
        msgpack_pack_map (pk, 4);
        pk_str (pk, "name"), pk_str (pk, "p");
        pk_str (pk, "datatype"), pk_str (pk, "FP64");
        pk_str (pk, "width"), msgpack_pack_uint32 (pk, 0);
        pk_str (pk, "shape"), pk_ints (pk, s_bad_shapes[which], s_bad_ndims[which]);
        return;
    }
    which -= (int)S_BAD_SHAPES;
    static const int64_t empty[1] = {0};
    pk_str (pk, "inputs");
    switch (which) {
    case 0: pk_str (pk, "input_ids"); break;   //  not an array
    case 1: msgpack_pack_array (pk, 0); break; //  no input
    case 2:                                    //  17 inputs
        msgpack_pack_array (pk, CODEC_MODEL_INPUTS + 1);
        for (int k = 0; k < CODEC_MODEL_INPUTS + 1; k++)
            pk_input (pk, "x", "FP32", true, NULL, 0);
        break;
    case 3: msgpack_pack_array (pk, 1), msgpack_pack_int (pk, 1); break; //  not a map
    case 4: msgpack_pack_array (pk, 1), pk_input (pk, NULL, "FP32", true, NULL, 0); break;
    case 5: msgpack_pack_array (pk, 1), pk_input (pk, "x", NULL, true, NULL, 0); break;
    case 6: msgpack_pack_array (pk, 1), pk_input (pk, "x", "FP32", false, NULL, 0); break;
    case 7: msgpack_pack_array (pk, 1), pk_input (pk, "", "FP32", true, NULL, 0); break;
    case 8: msgpack_pack_array (pk, 1), pk_input (pk, long_name, "FP32", true, NULL, 0); break;
    case 9: msgpack_pack_array (pk, 1), pk_input (pk, "x", "FP16", true, NULL, 0); break;
    case 10: msgpack_pack_array (pk, 1), pk_input (pk, "x", "FP32", true, empty, 0); break;
    case 11: //  a shape that is not an array
        msgpack_pack_array (pk, 1), msgpack_pack_map (pk, 3);
        pk_str (pk, "name"), pk_str (pk, "x");
        pk_str (pk, "datatype"), pk_str (pk, "FP32");
        pk_str (pk, "shape"), msgpack_pack_int (pk, -1);
        break;
    default: //  a dimension that is not an int
        msgpack_pack_array (pk, 1), msgpack_pack_map (pk, 3);
        pk_str (pk, "name"), pk_str (pk, "x");
        pk_str (pk, "datatype"), pk_str (pk, "FP32");
        pk_str (pk, "shape"), msgpack_pack_array (pk, 2), msgpack_pack_int (pk, -1);
        pk_str (pk, "4");
    }
}

static void pack_bad_meta (msgpack_packer *pk)
{
    char long_name[DEFS_TENSOR_NAME_MAX + 2];
    memset (long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    msgpack_pack_map (pk, 1);
    pk_str (pk, "models");
    msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 3);
    pk_str (pk, "name");
    pk_str (pk, "m");
    pk_str (pk, "version");
    pk_str (pk, "1");
    switch (s_bad_meta) {
    case 0: pk_str (pk, "input"), msgpack_pack_int (pk, 1); break;
    case 1: pk_str (pk, "input"), pk_str (pk, ""); break;
    case 2: pk_str (pk, "input"), pk_str (pk, long_name); break;
    case 3: pk_str (pk, "datatype"), pk_str (pk, "FP16"); break;
    case 4: pk_str (pk, "datatype"), msgpack_pack_int (pk, 2); break;
    case 5: pk_str (pk, "datatype"), pk_str (pk, "INVALID"); break;
    case 6:
        pk_str (pk, "outputs"), msgpack_pack_array (pk, CODEC_MODEL_OUTPUTS + 1);
        for (int k = 0; k < CODEC_MODEL_OUTPUTS + 1; k++)
            pk_output (pk, "o", "FP64", 0);
        break;
    case 7: pk_str (pk, "outputs"), msgpack_pack_array (pk, 0); break;
    case 8: pk_str (pk, "outputs"), pk_str (pk, "label"); break;
    case 9:
        pk_str (pk, "outputs"), msgpack_pack_array (pk, 2);
        pk_output (pk, "ok", "FP64", 0);
        pk_output (pk, "bad", "FLOAT", 0);
        break;
    case 10:
        pk_str (pk, "outputs"), msgpack_pack_array (pk, 1);
        pk_output (pk, long_name, "FP64", 0);
        break;
    case 11:
        pk_str (pk, "outputs"), msgpack_pack_array (pk, 1);
        pk_output (pk, "p", "FP64", -1);
        break;
    case 12:
        pk_str (pk, "outputs"), msgpack_pack_array (pk, 1);
        pk_output (pk, "p", "FP64", (int64_t)UINT32_MAX + 1);
        break;
    case 13: //  an output without width
        pk_str (pk, "outputs"), msgpack_pack_array (pk, 1);
        msgpack_pack_map (pk, 2);
        pk_str (pk, "name"), pk_str (pk, "p");
        pk_str (pk, "datatype"), pk_str (pk, "FP64");
        break;
    case 14: pk_str (pk, "outputs"), msgpack_pack_array (pk, 1), msgpack_pack_int (pk, 3); break;
    default: pack_bad_shapes (pk, s_bad_meta - 15);
    }
}

START_TEST (test_models_metadata_refused)
{
    codec_header_t h = {0};
    //  The keys of version 1 (15 cases), an input's bad shapes, an output's
    //  bad shapes (S_BAD_SHAPES each), then inputs' other bad forms (13)
    const char *needles[15 + 2 * S_BAD_SHAPES + 13] = {
        "input",   "input",    "input",    "datatype", "datatype", "datatype", "outputs", "outputs",
        "outputs", "output 1", "output 0", "output 0", "output 0", "output 0", "output 0"};
    for (size_t k = 0; k < S_BAD_SHAPES; k++) {
        needles[15 + k] = "input 1";
        needles[15 + S_BAD_SHAPES + k] = "output 0";
    }
    for (size_t k = 0; k < 13; k++)
        needles[15 + 2 * S_BAD_SHAPES + k] = k < 3 ? "inputs must be" : "input 0";
    for (s_bad_meta = 0; s_bad_meta < (int)(sizeof needles / sizeof needles[0]); s_bad_meta++) {
        msgpack_sbuffer sbuf = packed (pack_bad_meta);
        ck_assert_int_eq (codec_header_decode (&h, sbuf.data, sbuf.size, err, sizeof err), -1);
        ck_assert_msg (strstr (err, needles[s_bad_meta]) && strstr (err, "'models' entry 0"),
                       "case %d: '%s' lacks %s", s_bad_meta, err, needles[s_bad_meta]);
        ck_assert_uint_eq (h.n_models, 0);
        ck_assert_ptr_null (h.models);
        msgpack_sbuffer_destroy (&sbuf);
    }
}
END_TEST

//  A models entry whose new keys come twice: "inputs" (a longer list
//  first), an input's name and shape, an output's shape
static void pack_meta_twice (msgpack_packer *pk)
{
    static const int64_t long_shape[] = {-1, 5, 6, 7}, seq[] = {-1, -1}, row[] = {-1, 3};
    msgpack_pack_map (pk, 1);
    pk_str (pk, "models");
    msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 4);
    pk_str (pk, "name"), pk_str (pk, "m");
    pk_str (pk, "inputs"), msgpack_pack_array (pk, 2);
    pk_input (pk, "first_of_two", "FP32", true, long_shape, 4);
    pk_input (pk, "second", "FP32", true, long_shape, 4);
    pk_str (pk, "inputs"), msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 5);
    pk_str (pk, "name"), pk_str (pk, "a_longer_name");
    pk_str (pk, "shape"), pk_ints (pk, long_shape, 4);
    pk_str (pk, "name"), pk_str (pk, "ids");
    pk_str (pk, "datatype"), pk_str (pk, "INT64");
    pk_str (pk, "shape"), pk_ints (pk, seq, 2);
    pk_str (pk, "outputs"), msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 5);
    pk_str (pk, "name"), pk_str (pk, "logits");
    pk_str (pk, "datatype"), pk_str (pk, "FP32");
    pk_str (pk, "shape"), pk_ints (pk, long_shape, 4);
    pk_str (pk, "width"), msgpack_pack_uint32 (pk, 3);
    pk_str (pk, "shape"), pk_ints (pk, row, 2);
}

//  Of a key given twice the last counts, whole: nothing of the first
//  value is left behind, so that the entry re-encodes to itself
START_TEST (test_models_metadata_twice)
{
    codec_header_t h = {0}, again = {0};
    msgpack_sbuffer sbuf = packed (pack_meta_twice);
    ck_assert_int_eq (codec_header_decode (&h, sbuf.data, sbuf.size, err, sizeof err), 0);
    const codec_model_meta_t *meta = &h.models[0].meta;
    ck_assert_uint_eq (meta->n_inputs, 1);
    ck_assert_str_eq (meta->inputs[0].name, "ids");
    ck_assert_uint_eq (meta->inputs[0].ndim, 2);
    ck_assert_int_eq (meta->inputs[0].shape[1], -1);
    ck_assert_int_eq (meta->inputs[0].shape[2], 0);
    ck_assert_str_eq (meta->inputs[1].name, "");
    ck_assert_uint_eq (meta->inputs[1].ndim, 0);
    ck_assert_uint_eq (meta->outputs[0].ndim, 2);
    ck_assert_int_eq (meta->outputs[0].shape[1], 3);
    ck_assert_int_eq (meta->outputs[0].shape[2], 0);
    msgpack_sbuffer *f = encoded (&h);
    ck_assert_int_eq (codec_header_decode (&again, f->data, f->size, err, sizeof err), 0);
    ck_assert_mem_eq (&again.models[0].meta, meta, sizeof *meta);
    msgpack_sbuffer_free (f);
    msgpack_sbuffer_destroy (&sbuf);
    codec_header_reset (&h);
    codec_header_reset (&again);
}
END_TEST

START_TEST (test_header_refused)
{
    codec_header_t h = {0};
    struct {
        pack_fn *fn;
        const char *needle;
    } cases[] = {{pack_zero_id, "'id'"},
                 {pack_negative_credit, "'credit'"},
                 {pack_long_model, "'model'"},
                 {pack_array_header, "map"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sbuf = packed (cases[i].fn);
        ck_assert_int_eq (codec_header_decode (&h, sbuf.data, sbuf.size, err, sizeof err), -1);
        ck_assert_msg (strstr (err, cases[i].needle), "case %zu: '%s' lacks %s", i, err,
                       cases[i].needle);
        msgpack_sbuffer_destroy (&sbuf);
    }
    //  The id survives a later bad key, so the error reaches the right job
    msgpack_sbuffer sbuf = packed (pack_id_then_bad_model);
    ck_assert_int_eq (codec_header_decode (&h, sbuf.data, sbuf.size, err, sizeof err), -1);
    ck_assert_uint_eq (h.fields, HDR_ID);
    ck_assert_uint_eq (h.id, 99);
    msgpack_sbuffer_destroy (&sbuf);
    //  Unknown keys are ignored
    sbuf = packed (pack_unknown_keys);
    ck_assert_int_eq (codec_header_decode (&h, sbuf.data, sbuf.size, err, sizeof err), 0);
    ck_assert_uint_eq (h.id, 5);
    msgpack_sbuffer_destroy (&sbuf);
}
END_TEST

START_TEST (test_mp_check_bounds)
{
    //  An array32 claiming 2^28 elements in 6 bytes: refused before any
    //  allocation (msgpack-c would reserve gigabytes for it)
    const uint8_t huge_array[] = {0xdd, 0x10, 0x00, 0x00, 0x00, 0x01};
    ck_assert_int_eq (codec_mp_check (huge_array, sizeof huge_array, err, sizeof err), -1);
    const uint8_t huge_map[] = {0xdf, 0x10, 0x00, 0x00, 0x00, 0x01, 0x01};
    ck_assert_int_eq (codec_mp_check (huge_map, sizeof huge_map, err, sizeof err), -1);
    const uint8_t huge_bin[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x01};
    ck_assert_int_eq (codec_mp_check (huge_bin, sizeof huge_bin, err, sizeof err), -1);
    const uint8_t invalid[] = {0xc1};
    ck_assert_int_eq (codec_mp_check (invalid, 1, err, sizeof err), -1);
    const uint8_t trailing[] = {0x80, 0x00};
    ck_assert_int_eq (codec_mp_check (trailing, 2, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "after"));
    ck_assert_int_eq (codec_mp_check (trailing, 0, err, sizeof err), -1);
    //  Deep nesting
    uint8_t deep[200];
    memset (deep, 0x91, sizeof deep); //  fixarray of 1, nested
    deep[sizeof deep - 1] = 0x00;
    ck_assert_int_eq (codec_mp_check (deep, sizeof deep, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "deep"));
    //  A valid object of every kind passes
    const uint8_t ok[] = {0x93, 0xcb, 0,    0,    0,    0,    0,    0,   0,
                          0,    0xc4, 0x02, 0xaa, 0xbb, 0xd4, 0x01, 0x02};
    ck_assert_int_eq (codec_mp_check (ok, sizeof ok, err, sizeof err), 0);
}
END_TEST

START_TEST (test_truncated_header_every_offset)
{
    codec_header_t in = {0}, out = {0};
    in.fields = HDR_ID | HDR_OUTPUTS;
    in.id = 77;
    in.n_outputs = 1;
    strcpy (in.outputs[0], "label");
    codec_header_set_model (&in, "some-model");
    msgpack_sbuffer *f = encoded (&in);
    size_t size = f->size;
    for (size_t cut = 0; cut < size; cut++) {
        //  A private copy of exactly `cut` bytes, so ASan sees any overread
        uint8_t *copy = malloc (cut ? cut : 1);
        memcpy (copy, f->data, cut);
        ck_assert_int_eq (codec_header_decode (&out, copy, cut, err, sizeof err), -1);
        free (copy);
    }
    msgpack_sbuffer_free (f);
}
END_TEST

static codec_tensor_t tensor (const char *name, amaas_dtype_t dtype, int64_t rows, int64_t cols,
                              const void *data, size_t size)
{
    codec_tensor_t t = {0};
    t.name = name;
    t.name_len = strlen (name);
    t.datatype = dtype;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.data = data;
    t.size = size;
    return t;
}

START_TEST (test_tensors_round_trip)
{
    double d[6] = {1.5, -2, 3e300, 0, -0.0, 1e-300};
    float f[2] = {1.25f, -7.5f};
    int64_t l[3] = {INT64_MIN, 0, INT64_MAX};
    const uint8_t bytes[] = {3, 0, 0, 0, 'a', 'b', 'c', 0, 0, 0, 0};
    codec_tensor_t in[4] = {tensor ("x", AMAAS_FP64, 2, 3, d, sizeof d),
                            tensor ("y", AMAAS_FP32, 1, 2, f, sizeof f),
                            tensor ("label", AMAAS_INT64, 3, 1, l, sizeof l),
                            tensor ("names", AMAAS_BYTES, 2, 1, bytes, sizeof bytes)};
    msgpack_sbuffer *frame = tensors_encoded (in, 4);
    codec_tensor_t out[CODEC_MAX_TENSORS];
    int n = codec_tensors_decode (frame->data, frame->size, out, CODEC_MAX_TENSORS, 1000, err,
                                  sizeof err);
    ck_assert_msg (n == 4, "decode: %s", err);
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq (out[i].name_len, in[i].name_len);
        ck_assert_int_eq (memcmp (out[i].name, in[i].name, in[i].name_len), 0);
        ck_assert_int_eq (out[i].datatype, in[i].datatype);
        ck_assert_int_eq (out[i].ndim, 2);
        ck_assert_int_eq (out[i].shape[0], in[i].shape[0]);
        ck_assert_int_eq (out[i].shape[1], in[i].shape[1]);
        ck_assert_uint_eq (out[i].size, in[i].size);
        ck_assert_int_eq (memcmp (out[i].data, in[i].data, in[i].size), 0);
    }
    msgpack_sbuffer_free (frame);
}
END_TEST

//  Encodes one tensor and tries to decode it: returns decode's result.
static int decode_one (codec_tensor_t t, uint64_t max_elements)
{
    msgpack_sbuffer *frame = tensors_encoded (&t, 1);
    codec_tensor_t out[2];
    int n = codec_tensors_decode (frame->data, frame->size, out, 2, max_elements, err, sizeof err);
    msgpack_sbuffer_free (frame);
    return n;
}

START_TEST (test_tensors_refused)
{
    double d[4] = {0};
    //  data shorter or longer than the shape needs
    ck_assert_int_eq (decode_one (tensor ("x", AMAAS_FP64, 2, 2, d, 24), 100), -1);
    ck_assert_ptr_nonnull (strstr (err, "holds 24 bytes"));
    ck_assert_int_eq (decode_one (tensor ("x", AMAAS_FP32, 2, 2, d, 32), 100), -1);
    //  over the element limit
    ck_assert_int_eq (decode_one (tensor ("x", AMAAS_FP64, 2, 2, d, 32), 3), -1);
    ck_assert_ptr_nonnull (strstr (err, "more than 3"));
    //  element count overflow: 2^40 x 2^40
    ck_assert_int_eq (
        decode_one (tensor ("x", AMAAS_FP64, 1LL << 40, 1LL << 40, d, 32), UINT64_MAX), -1);
    //  BYTES whose lengths run past the data
    const uint8_t bad_bytes[] = {9, 0, 0, 0, 'a'};
    ck_assert_int_eq (decode_one (tensor ("s", AMAAS_BYTES, 1, 1, bad_bytes, 5), 100), -1);
    //  empty name
    ck_assert_int_eq (decode_one (tensor ("", AMAAS_FP64, 2, 2, d, 32), 100), -1);
    //  the valid one passes
    ck_assert_int_eq (decode_one (tensor ("x", AMAAS_FP64, 2, 2, d, 32), 100), 1);
    //  not an array, empty array, too many tensors
    const uint8_t map[] = {0x80};
    ck_assert_int_eq (codec_tensors_decode (map, 1, NULL, 2, 100, err, sizeof err), -1);
    const uint8_t empty[] = {0x90};
    ck_assert_int_eq (codec_tensors_decode (empty, 1, NULL, 2, 100, err, sizeof err), -1);
    codec_tensor_t three[3] = {tensor ("a", AMAAS_FP64, 1, 1, d, 8),
                               tensor ("b", AMAAS_FP64, 1, 1, d, 8),
                               tensor ("c", AMAAS_FP64, 1, 1, d, 8)};
    msgpack_sbuffer *frame = tensors_encoded (three, 3);
    codec_tensor_t out[2];
    ck_assert_int_eq (codec_tensors_decode (frame->data, frame->size, out, 2, 100, err, sizeof err),
                      -1);
    msgpack_sbuffer_free (frame);
}
END_TEST

static void pack_bad_datatype (msgpack_packer *pk)
{
    msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 4);
    pk_str (pk, "name");
    pk_str (pk, "x");
    pk_str (pk, "datatype");
    pk_str (pk, "FP16");
    pk_str (pk, "shape");
    msgpack_pack_array (pk, 1);
    msgpack_pack_int (pk, 1);
    pk_str (pk, "data");
    msgpack_pack_bin (pk, 2);
    msgpack_pack_bin_body (pk, "ab", 2);
}

static void pack_negative_dim (msgpack_packer *pk)
{
    msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 4);
    pk_str (pk, "name");
    pk_str (pk, "x");
    pk_str (pk, "datatype");
    pk_str (pk, "UINT8");
    pk_str (pk, "shape");
    msgpack_pack_array (pk, 1);
    msgpack_pack_int (pk, -2);
    pk_str (pk, "data");
    msgpack_pack_bin (pk, 2);
    msgpack_pack_bin_body (pk, "ab", 2);
}

static void pack_data_as_str (msgpack_packer *pk)
{
    msgpack_pack_array (pk, 1);
    msgpack_pack_map (pk, 4);
    pk_str (pk, "name");
    pk_str (pk, "x");
    pk_str (pk, "datatype");
    pk_str (pk, "UINT8");
    pk_str (pk, "shape");
    msgpack_pack_array (pk, 1);
    msgpack_pack_int (pk, 2);
    pk_str (pk, "data");
    pk_str (pk, "ab");
}

START_TEST (test_tensor_fields_refused)
{
    struct {
        pack_fn *fn;
        const char *needle;
    } cases[] = {
        {pack_bad_datatype, "datatype"}, {pack_negative_dim, "shape"}, {pack_data_as_str, "bin"}};
    codec_tensor_t out[2];
    for (size_t i = 0; i < 3; i++) {
        msgpack_sbuffer sbuf = packed (cases[i].fn);
        ck_assert_int_eq (codec_tensors_decode (sbuf.data, sbuf.size, out, 2, 100, err, sizeof err),
                          -1);
        ck_assert_msg (strstr (err, cases[i].needle), "case %zu: '%s'", i, err);
        msgpack_sbuffer_destroy (&sbuf);
    }
}
END_TEST

//  Sends frames on a libzmq socket, the last without ZMQ_SNDMORE
static void send_parts (void *sock, const char *const *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ge (zmq_send (sock, parts[i], strlen (parts[i]), i + 1 < n ? ZMQ_SNDMORE : 0),
                          0);
}

START_TEST (test_frames_recv_parse_and_send)
{
    zsock_t *a = zsock_new_pair ("@inproc://codec-frames");
    zsock_t *b = zsock_new_pair (">inproc://codec-frames");
    void *sa = zsock_resolve (a), *sb = zsock_resolve (b);
    codec_frames_t in = {0};
    //  Nothing waiting: -1 at once, nothing held
    ck_assert_int_eq (codec_frames_recv (&in, sb), -1);
    ck_assert_uint_eq (in.n, 0);

    //  A REQUEST sent with codec_send_frames: the payload is shared and
    //  stays the sender's
    codec_header_t h = {0}, out = {0};
    h.fields = HDR_ID;
    h.id = 9;
    codec_header_set_model (&h, "linear");
    double d[2] = {0.5, 1};
    codec_tensor_t t = tensor ("input", AMAAS_FP64, 2, 1, d, sizeof d);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    ck_assert_int_eq (codec_tensors_pack (&t, 1, &sbuf), 0);
    zmq_msg_t payload;
    zmq_msg_init_size (&payload, sbuf.size);
    memcpy (zmq_msg_data (&payload), sbuf.data, sbuf.size);
    ck_assert_int_eq (codec_send_frames (sa, NULL, 0, CMD_REQUEST, &h, &payload), 0);
    ck_assert_uint_eq (zmq_msg_size (&payload), sbuf.size);
    ck_assert_int_eq (codec_send_frames (sa, NULL, 0, CMD_REQUEST, &h, &payload), 0);
    zmq_msg_close (&payload);
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq (codec_frames_recv (&in, sb), 0);
        ck_assert_uint_eq (in.count, 4);
        codec_cmd_t cmd;
        zmq_msg_t *got;
        ck_assert_int_eq (codec_frames_parse (&in, 0, &cmd, &out, &got, err, sizeof err), 0);
        ck_assert_int_eq (cmd, CMD_REQUEST);
        ck_assert_uint_eq (out.id, 9);
        ck_assert_str_eq (out.model, "linear");
        ck_assert_ptr_eq (got, &in.frames[3]);
        ck_assert_uint_eq (zmq_msg_size (got), sbuf.size);
        ck_assert_mem_eq (zmq_msg_data (got), sbuf.data, sbuf.size);
        codec_frames_close (&in);
        ck_assert_uint_eq (in.n, 0);
    }

    //  Parsing after an identity frame: index 1 on
    const char *routed[] = {"ID", CODEC_SIGNATURE, "\x05", "\x81\xa2id\x07"};
    send_parts (sa, routed, 4);
    ck_assert_int_eq (codec_frames_recv (&in, sb), 0);
    codec_cmd_t cmd;
    zmq_msg_t *got;
    ck_assert_int_eq (codec_frames_parse (&in, 1, &cmd, &out, &got, err, sizeof err), 0);
    ck_assert_int_eq (cmd, CMD_PING);
    ck_assert_uint_eq (out.id, 7);
    ck_assert_ptr_null (got);
    codec_frames_close (&in);

    //  Seven frames: those past CODEC_MAX_FRAMES are dropped but counted,
    //  and the message is refused
    const char *many[] = {CODEC_SIGNATURE, "\x01", "\x80", "p", "x", "y", "z"};
    send_parts (sa, many, 7);
    ck_assert_int_eq (codec_frames_recv (&in, sb), 0);
    ck_assert_uint_eq (in.count, 7);
    ck_assert_uint_eq (in.n, CODEC_MAX_FRAMES);
    ck_assert_int_eq (codec_frames_parse (&in, 0, &cmd, &out, &got, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "frame count"));
    codec_frames_close (&in);

    //  Another protocol
    const char *http[] = {"GET / HTTP/1.1"};
    send_parts (sa, http, 1);
    ck_assert_int_eq (codec_frames_recv (&in, sb), 0);
    ck_assert_int_eq (codec_frames_parse (&in, 0, &cmd, &out, &got, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "signature"));
    codec_frames_close (&in);
    //  Identity alone: nothing to parse
    const char *alone[] = {"ID"};
    send_parts (sa, alone, 1);
    ck_assert_int_eq (codec_frames_recv (&in, sb), 0);
    ck_assert_int_eq (codec_frames_parse (&in, 1, &cmd, &out, &got, err, sizeof err), -1);
    codec_frames_close (&in);

    msgpack_sbuffer_destroy (&sbuf);
    codec_header_reset (&out);
    zsock_destroy (&b);
    zsock_destroy (&a);
}
END_TEST

START_TEST (test_random_bytes)
{
    //  Random buffers, and random mutations of a valid payload: never a
    //  crash, and a buffer that decodes obeys the invariants.
    double d[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    codec_tensor_t t = tensor ("input", AMAAS_FP64, 4, 2, d, sizeof d);
    msgpack_sbuffer *frame = tensors_encoded (&t, 1);
    size_t size = frame->size;
    uint8_t *buf = malloc (size);
    srand (1234);
    codec_header_t h = {0};
    for (int round = 0; round < 20000; round++) {
        memcpy (buf, frame->data, size);
        int flips = 1 + rand () % 4;
        for (int i = 0; i < flips; i++)
            buf[rand () % size] = (uint8_t)rand ();
        size_t len = round % 3 == 0 ? (size_t)rand () % size : size;
        codec_tensor_t out[4];
        int n = codec_tensors_decode (buf, len, out, 4, 1 << 20, err, sizeof err);
        for (int i = 0; i < n; i++) {
            ck_assert (out[i].data >= (void *)buf &&
                       (uint8_t *)out[i].data + out[i].size <= buf + len);
            size_t elem = amaas_dtype_size (out[i].datatype);
            if (elem)
                ck_assert_uint_eq (out[i].size, out[i].elements * elem);
        }
        codec_header_decode (&h, buf, len, err, sizeof err);
        codec_header_reset (&h);
    }
    for (int round = 0; round < 20000; round++) {
        size_t len = 1 + (size_t)rand () % 64;
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rand ();
        codec_tensor_t out[4];
        codec_tensors_decode (buf, len, out, 4, 1 << 20, err, sizeof err);
        codec_header_decode (&h, buf, len, err, sizeof err);
        codec_header_reset (&h);
    }
    free (buf);
    msgpack_sbuffer_free (frame);
}
END_TEST

//  --------------------------------------------------------------------------
//  The field table: every field round-trips and reset clears it

//  Hex of a buffer, for comparing bytes in messages
static void hex (const msgpack_sbuffer *b, char *out, size_t out_size)
{
    size_t n = 0;
    for (size_t i = 0; i < b->size && n + 3 <= out_size; i++)
        n += (size_t)snprintf (out + n, out_size - n, "%02x", (uint8_t)b->data[i]);
    out[n] = 0;
}

//  What a test does with a field of each kind: set a sample value at the
//  edge of its bounds, compare it, and see it cleared
typedef struct {
    void (*set) (codec_header_t *h, void *at, uint64_t low, uint64_t high);
    bool (*same) (const codec_header_t *a, const void *a_at, const codec_header_t *b,
                  const void *b_at);
    bool (*zero) (const codec_header_t *h, const void *at);
} kind_t;

static void set_u32 (codec_header_t *h, void *at, uint64_t low, uint64_t high)
{
    (void)h, (void)low;
    *(uint32_t *)at = (uint32_t)high;
}
static bool same_u32 (const codec_header_t *a, const void *a_at, const codec_header_t *b,
                      const void *b_at)
{
    (void)a, (void)b;
    return *(const uint32_t *)a_at == *(const uint32_t *)b_at;
}
static bool zero_u32 (const codec_header_t *h, const void *at)
{
    (void)h;
    return *(const uint32_t *)at == 0;
}
static void set_u64 (codec_header_t *h, void *at, uint64_t low, uint64_t high)
{
    (void)h, (void)low;
    *(uint64_t *)at = high;
}
static bool same_u64 (const codec_header_t *a, const void *a_at, const codec_header_t *b,
                      const void *b_at)
{
    (void)a, (void)b;
    return *(const uint64_t *)a_at == *(const uint64_t *)b_at;
}
static bool zero_u64 (const codec_header_t *h, const void *at)
{
    (void)h;
    return *(const uint64_t *)at == 0;
}
//  The longest string the field holds
static void set_str (codec_header_t *h, void *at, uint64_t low, uint64_t high)
{
    (void)h, (void)low;
    memset (at, 's', (size_t)high - 1);
    ((char *)at)[high - 1] = 0;
}
static bool same_str (const codec_header_t *a, const void *a_at, const codec_header_t *b,
                      const void *b_at)
{
    (void)a, (void)b;
    return strcmp (a_at, b_at) == 0;
}
static bool zero_str (const codec_header_t *h, const void *at)
{
    (void)h;
    return *(const char *)at == 0;
}
static void set_names (codec_header_t *h, void *at, uint64_t low, uint64_t high)
{
    (void)at, (void)low;
    h->n_outputs = (size_t)high;
    for (size_t i = 0; i < h->n_outputs; i++)
        snprintf (h->outputs[i], CODEC_NAME_MAX, "output-%zu", i);
}
static bool same_names (const codec_header_t *a, const void *a_at, const codec_header_t *b,
                        const void *b_at)
{
    (void)a_at, (void)b_at;
    if (a->n_outputs != b->n_outputs)
        return false;
    for (size_t i = 0; i < a->n_outputs; i++)
        if (strcmp (a->outputs[i], b->outputs[i]))
            return false;
    return true;
}
static bool zero_names (const codec_header_t *h, const void *at)
{
    (void)at;
    return h->n_outputs == 0;
}
static void set_models (codec_header_t *h, void *at, uint64_t low, uint64_t high)
{
    (void)at, (void)low, (void)high;
    free (h->models);
    h->n_models = 2;
    h->models = calloc (2, sizeof (codec_model_t));
    ck_assert_ptr_nonnull (h->models);
    h->models[0] = (codec_model_t){
        .name = "a",
        .version = "1",
        .workers = 2,
        .width = 4,
        .mapped = UINT64_MAX,
        .queued = UINT32_MAX,
        .meta = {
            .input = "x",
            .datatype = AMAAS_FP32,
            .n_outputs = 2,
            .outputs = {{.name = "label", .datatype = AMAAS_BYTES},
                        {.name = "p",
                         .datatype = AMAAS_FP32,
                         .width = UINT32_MAX,
                         .ndim = 2,
                         .shape = {-1, CODEC_DIM_MAX}}},
            .n_inputs = 2,
            .inputs = {{.name = "input_ids", .datatype = AMAAS_INT64, .ndim = 2, .shape = {-1, -1}},
                       {.name = "x", .datatype = AMAAS_FP32, .ndim = 1, .shape = {-1}}}}};
    h->models[1] = (codec_model_t){.name = "b"};
}
static bool same_models (const codec_header_t *a, const void *a_at, const codec_header_t *b,
                         const void *b_at)
{
    (void)a_at, (void)b_at;
    if (a->n_models != b->n_models)
        return false;
    for (size_t i = 0; i < a->n_models; i++) {
        const codec_model_t *x = &a->models[i], *y = &b->models[i];
        if (strcmp (x->name, y->name) || strcmp (x->version, y->version) ||
            x->workers != y->workers || x->width != y->width || x->mapped != y->mapped ||
            x->queued != y->queued || memcmp (&x->meta, &y->meta, sizeof x->meta))
            return false;
    }
    return true;
}
static bool zero_models (const codec_header_t *h, const void *at)
{
    (void)at;
    return h->n_models == 0 && h->models == NULL;
}

static const kind_t kind_u32 = {set_u32, same_u32, zero_u32};
static const kind_t kind_u64 = {set_u64, same_u64, zero_u64};
static const kind_t kind_str = {set_str, same_str, zero_str};
static const kind_t kind_text = {set_str, same_str, zero_str};
static const kind_t kind_text_as = {set_str, same_str, zero_str};
static const kind_t kind_names = {set_names, same_names, zero_names};
static const kind_t kind_models = {set_models, same_models, zero_models};

typedef struct {
    const char *key;
    uint32_t bit;
    const char *kind_name;
    const kind_t *kind;
    size_t offset;
    uint64_t low, high;
} field_t;

#define FIELD(key, member, bit, kind, low, high, want)                                             \
    {key, HDR_##bit, #kind, &kind_##kind, offsetof (codec_header_t, member), low, high},
static const field_t fields[] = {CODEC_HEADER_FIELDS (FIELD)};
#define FIELDS (sizeof fields / sizeof fields[0])

//  A map of one key and an unsigned value
static msgpack_sbuffer *one_uint (const char *key, uint64_t value)
{
    msgpack_sbuffer *b = msgpack_sbuffer_new ();
    msgpack_packer pk;
    msgpack_packer_init (&pk, b, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str (&pk, strlen (key));
    msgpack_pack_str_body (&pk, key, strlen (key));
    msgpack_pack_uint64 (&pk, value);
    return b;
}

START_TEST (test_every_field_round_trips)
{
    ck_assert_uint_eq (FIELDS, CODEC_HEADER_FIELD_COUNT);
    codec_header_t all = {0}, all_out = {0};
    for (size_t i = 0; i < FIELDS; i++) {
        const field_t *f = &fields[i];
        codec_header_t in = {0}, out = {0};
        in.fields = f->bit;
        f->kind->set (&in, (char *)&in + f->offset, f->low, f->high);
        f->kind->set (&all, (char *)&all + f->offset, f->low, f->high);
        all.fields |= f->bit;
        msgpack_sbuffer *b = encoded (&in);
        //  The key is on the wire, once, as a str of its bytes
        ck_assert_ptr_nonnull (memmem (b->data, b->size, f->key, strlen (f->key)));
        ck_assert_msg (codec_header_decode (&out, b->data, b->size, err, sizeof err) == 0, "%s: %s",
                       f->key, err);
        ck_assert_msg (out.fields == f->bit, "%s: fields %x", f->key, out.fields);
        ck_assert_msg (f->kind->same (&in, (char *)&in + f->offset, &out, (char *)&out + f->offset),
                       "%s does not round-trip", f->key);
        ck_assert_msg (!f->kind->zero (&out, (char *)&out + f->offset), "%s: sample is empty",
                       f->key);
        //  Reset clears it, and frees what it owns (ASan checks)
        codec_header_reset (&out);
        ck_assert_uint_eq (out.fields, 0);
        ck_assert_msg (f->kind->zero (&out, (char *)&out + f->offset), "%s: not reset", f->key);
        codec_header_reset (&in);
        msgpack_sbuffer_free (b);

        //  Integers out of their bounds are refused, naming the key
        if (strcmp (f->kind_name, "u32") == 0 || strcmp (f->kind_name, "u64") == 0) {
            uint64_t type_max = strcmp (f->kind_name, "u32") == 0 ? UINT32_MAX : UINT64_MAX;
            uint64_t bad[2] = {f->low - 1, f->high + 1};
            for (int j = 0; j < 2; j++) {
                if ((j == 0 && f->low == 0) || (j == 1 && f->high == UINT64_MAX) ||
                    (j == 1 && f->high == type_max && type_max == UINT64_MAX))
                    continue;
                b = one_uint (f->key, bad[j]);
                ck_assert_msg (codec_header_decode (&out, b->data, b->size, err, sizeof err) == -1,
                               "%s = %" PRIu64 " accepted", f->key, bad[j]);
                ck_assert_ptr_nonnull (strstr (err, f->key));
                ck_assert_uint_eq (out.fields, 0);
                msgpack_sbuffer_free (b);
            }
        }
    }
    //  All at once: "reason" and "message" share one member, set last
    msgpack_sbuffer *b = encoded (&all);
    ck_assert_int_eq (codec_header_decode (&all_out, b->data, b->size, err, sizeof err), 0);
    ck_assert_uint_eq (all_out.fields, all.fields);
    for (size_t i = 0; i < FIELDS; i++) {
        const field_t *f = &fields[i];
        ck_assert_msg (
            f->kind->same (&all, (char *)&all + f->offset, &all_out, (char *)&all_out + f->offset),
            "%s does not round-trip with the others", f->key);
    }
    codec_header_reset (&all_out);
    ck_assert_uint_eq (all_out.fields, 0);
    for (size_t i = 0; i < FIELDS; i++)
        ck_assert_msg (fields[i].kind->zero (&all_out, (char *)&all_out + fields[i].offset),
                       "%s: not reset", fields[i].key);
    msgpack_sbuffer_free (b);
    codec_header_reset (&all);
}
END_TEST

//  The bytes of a header with every field, and of a payload, as the codec
//  wrote them before the field table: the wire must not change
START_TEST (test_wire_bytes_unchanged)
{
    static const char all_fields[] =
        "de0016a2696401a36a6f62cd012ca56d6f64656ca469726973a776657273696f"
        "6ea27632a4636f646505a76d657373616765a3776879a871756575655f7573ce"
        "00011170aa636f6d707574655f7573cf0000010000000000a6637265646974cd"
        "ffffa3706964cd1092a4686f7374a66e6f64652d31a76f75747075747392a56c"
        "6162656ca170a66d6f64656c739286a46e616d65a161a776657273696f6ea131"
        "a7776f726b65727302a5776964746804a66d6170706564cf0000000800000000"
        "a67175657565640786a46e616d65a162a776657273696f6ea0a7776f726b6572"
        "7300a5776964746800a66d617070656400a671756575656400a7636f6d6d616e"
        "64a6737461747573a6776f726b6572a461623132a5626174636803a87072696f"
        "7269747902ab646561646c696e655f6d73ccfaa6726561736f6ea3776879a773"
        "657373696f6e09a565706f6368cf0000000200000000ac6d6f64656c5f657272"
        "6f727301";
    static const char reason_only[] = "82a2696401a6726561736f6ea3776879";
    static const char payload[] = "9184a46e616d65a178a86461746174797065a446503332a57368617065920203"
                                  "a464617461c4186162636465666768696a6b6c6d6e6f707172737475767778";
    char text[2048];
    codec_header_t h = {0};
    h.fields = (1u << CODEC_HEADER_FIELD_COUNT) - 1;
    h.id = 1;
    h.job = 300;
    h.code = 5;
    h.queue_us = 70000;
    h.compute_us = 1ULL << 40;
    h.credit = 65535;
    h.pid = 4242;
    h.batch = 3;
    h.priority = 2;
    h.deadline_ms = 250;
    h.session = 9;
    h.epoch = 1ULL << 33;
    h.model_errors = 1;
    strcpy (h.model, "iris");
    strcpy (h.version, "v2");
    strcpy (h.message, "why");
    strcpy (h.host, "node-1");
    strcpy (h.command, "status");
    strcpy (h.worker, "ab12");
    h.n_outputs = 2;
    strcpy (h.outputs[0], "label");
    strcpy (h.outputs[1], "p");
    //  (without metadata: an entry of an older worker is encoded as before)
    codec_model_t m[2] = {
        {.name = "a", .version = "1", .workers = 2, .width = 4, .mapped = 1ULL << 35, .queued = 7},
        {.name = "b"}};
    h.n_models = 2;
    h.models = m;
    msgpack_sbuffer *b = encoded (&h);
    hex (b, text, sizeof text);
    ck_assert_str_eq (text, all_fields);
    msgpack_sbuffer_free (b);
    h.fields = HDR_ID | HDR_REASON;
    b = encoded (&h);
    hex (b, text, sizeof text);
    ck_assert_str_eq (text, reason_only);
    msgpack_sbuffer_free (b);

    codec_tensor_t t = {"x", 1, AMAAS_FP32, 2, {2, 3}, 6, "abcdefghijklmnopqrstuvwx", 24};
    b = tensors_encoded (&t, 1);
    hex (b, text, sizeof text);
    ck_assert_str_eq (text, payload);
    msgpack_sbuffer_free (b);
}
END_TEST

START_TEST (test_names)
{
    ck_assert_str_eq (amaas_code_name (AMAAS_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    ck_assert_str_eq (amaas_code_name ((amaas_code_t)99), "UNKNOWN");
    ck_assert_int_eq (amaas_dtype_from_name ("FP32", 4), AMAAS_FP32);
    ck_assert_int_eq (amaas_dtype_from_name ("FP3", 3), AMAAS_DTYPE_INVALID);
    ck_assert_int_eq (amaas_dtype_from_name ("BYTES", 5), AMAAS_BYTES);
    ck_assert_str_eq (amaas_dtype_name (AMAAS_INT64), "INT64");
    ck_assert_uint_eq (amaas_dtype_size (AMAAS_FP64), 8);
    ck_assert_uint_eq (amaas_dtype_size (AMAAS_BYTES), 0);
    const uint8_t two[] = {1, 0, 0, 0, 'x', 0, 0, 0, 0};
    ck_assert_int_eq (codec_tensors_bytes_check (two, sizeof two, 2), 9);
    ck_assert_int_eq (codec_tensors_bytes_check (two, sizeof two, 3), -1);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("codec");
    TCase *tc = tcase_create ("codec");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_header_round_trip);
    tcase_add_test (tc, test_models_round_trip);
    tcase_add_test (tc, test_models_metadata_round_trip);
    tcase_add_test (tc, test_models_metadata_refused);
    tcase_add_test (tc, test_models_metadata_twice);
    tcase_add_test (tc, test_header_refused);
    tcase_add_test (tc, test_models_without_version_round_trip);
    tcase_add_test (tc, test_mp_check_bounds);
    tcase_add_test (tc, test_truncated_header_every_offset);
    tcase_add_test (tc, test_tensors_round_trip);
    tcase_add_test (tc, test_tensors_refused);
    tcase_add_test (tc, test_tensor_fields_refused);
    tcase_add_test (tc, test_frames_recv_parse_and_send);
    tcase_add_test (tc, test_random_bytes);
    tcase_add_test (tc, test_names);
    tcase_add_test (tc, test_every_field_round_trips);
    tcase_add_test (tc, test_wire_bytes_unchanged);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
