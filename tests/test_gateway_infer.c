/*  test_gateway_infer.c - unit tests of the gateway's JSON <-> tensor
    translation (gateway/infer.c): every datatype decoded and encoded back,
    flat and nested data, the binary tensor extension both ways (a 1000x100
    FP32 tensor among them), the Flask route's body and answer, the
    request's parameters and outputs, and malformed bodies, each refused
    with a message that names what is wrong.
*/
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "unit.h"

#define MAX_ELEMENTS (UINT64_C (1) << 20)

//  Checks that buf holds exactly the text want.
static void assert_buf (const infer_buf_t *buf, const char *want)
{
    ck_assert_msg (buf->size == strlen (want) && memcmp (buf->data, want, buf->size) == 0,
                   "got '%.*s', wanted '%s'", (int)buf->size, buf->data, want);
}

//  Decodes a JSON body (no binary part); fails the test if it is refused.
static void decode_ok (const char *body, infer_request_t *req)
{
    char err[256] = "";
    int rc =
        infer_decode_v2 (body, strlen (body), strlen (body), MAX_ELEMENTS, req, err, sizeof err);
    ck_assert_msg (rc == 0, "refused: %s\nbody: %s", err, body);
}

//  A result whose outputs are the request's inputs, as an echo model would
//  answer.
static amaas_result_t echo_result (const infer_request_t *req)
{
    amaas_result_t result = {0};
    result.model = "echo";
    result.version = "3";
    result.n_outputs = req->n_inputs;
    result.outputs = (amaas_tensor_t *)req->inputs;
    return result;
}

//  Encodes the echo of req and parses the JSON part back.
static json_t *encode_echo (const infer_request_t *req, infer_buf_t *buf, size_t *json_len,
                            bool *binary)
{
    amaas_result_t result = echo_result (req);
    ck_assert_int_eq (infer_encode_v2 (req, &result, buf, json_len, binary), 0);
    json_error_t jerr;
    json_t *root =
        json_loadb (buf->data, *json_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    ck_assert_msg (root != NULL, "response is not JSON: %s: %.*s", jerr.text, (int)*json_len,
                   buf->data);
    return root;
}

START_TEST (test_every_datatype_round_trip)
{
    const char *body =
        "{\"id\": \"r1\", \"inputs\": ["
        "{\"name\": \"f32\", \"datatype\": \"FP32\", \"shape\": [3], \"data\": [1.5, -0.1, 3e38]},"
        "{\"name\": \"f64\", \"datatype\": \"FP64\", \"shape\": [3], "
        "\"data\": [0.1, -2, 1.7976931348623157e308]},"
        "{\"name\": \"i32\", \"datatype\": \"INT32\", \"shape\": [2], "
        "\"data\": [-2147483648, 2147483647]},"
        "{\"name\": \"i64\", \"datatype\": \"INT64\", \"shape\": [2], "
        "\"data\": [-9223372036854775808, 9223372036854775807]},"
        "{\"name\": \"u8\", \"datatype\": \"UINT8\", \"shape\": [3], \"data\": [0, 7, 255]},"
        "{\"name\": \"b\", \"datatype\": \"BOOL\", \"shape\": [2], \"data\": [true, false]},"
        "{\"name\": \"s\", \"datatype\": \"BYTES\", \"shape\": [3], "
        "\"data\": [\"ab\", \"\", \"\\u00e9\\n\\u0000\"]}]}";
    infer_request_t req;
    decode_ok (body, &req);
    ck_assert_uint_eq (req.n_inputs, 7);
    ck_assert (req.has_id);
    ck_assert_str_eq (req.id, "r1");

    const amaas_tensor_t *t = req.inputs;
    ck_assert_str_eq (t[0].name, "f32");
    ck_assert_int_eq (t[0].datatype, AMAAS_FP32);
    ck_assert_uint_eq (t[0].size, 12);
    float f[3];
    memcpy (f, t[0].data, 12);
    ck_assert (f[0] == 1.5f && f[1] == -0.1f && f[2] == 3e38f);
    double d[3];
    memcpy (d, t[1].data, 24);
    ck_assert (d[0] == 0.1 && d[1] == -2.0 && d[2] == 1.7976931348623157e308);
    int32_t i32[2];
    memcpy (i32, t[2].data, 8);
    ck_assert (i32[0] == INT32_MIN && i32[1] == INT32_MAX);
    int64_t i64[2];
    memcpy (i64, t[3].data, 16);
    ck_assert (i64[0] == INT64_MIN && i64[1] == INT64_MAX);
    ck_assert_mem_eq (t[4].data, "\x00\x07\xff", 3);
    ck_assert_mem_eq (t[5].data, "\x01\x00", 2);
    //  BYTES: 4-byte little-endian length, then the bytes
    ck_assert_uint_eq (t[6].size, 4 + 2 + 4 + 0 + 4 + 4);
    ck_assert_mem_eq (t[6].data, "\x02\0\0\0ab\0\0\0\0\x04\0\0\0\xc3\xa9\n\0", 18);

    //  Back to JSON: every value reads back as it was sent
    infer_buf_t buf = {0};
    size_t json_len;
    bool binary = true;
    json_t *root = encode_echo (&req, &buf, &json_len, &binary);
    ck_assert (!binary);
    ck_assert_uint_eq (json_len, buf.size);
    ck_assert_str_eq (json_string_value (json_object_get (root, "model_name")), "echo");
    ck_assert_str_eq (json_string_value (json_object_get (root, "model_version")), "3");
    ck_assert_str_eq (json_string_value (json_object_get (root, "id")), "r1");
    json_t *outputs = json_object_get (root, "outputs");
    ck_assert_uint_eq (json_array_size (outputs), 7);
    json_error_t jerr;
    json_t *sent = json_loads (body, JSON_ALLOW_NUL, &jerr);
    for (size_t i = 0; i < 7; i++) {
        json_t *out = json_array_get (outputs, i);
        json_t *in = json_array_get (json_object_get (sent, "inputs"), i);
        ck_assert_str_eq (json_string_value (json_object_get (out, "name")),
                          json_string_value (json_object_get (in, "name")));
        ck_assert_str_eq (json_string_value (json_object_get (out, "datatype")),
                          json_string_value (json_object_get (in, "datatype")));
        ck_assert (json_equal (json_object_get (out, "shape"), json_object_get (in, "shape")));
        json_t *got = json_object_get (out, "data"), *want = json_object_get (in, "data");
        ck_assert_uint_eq (json_array_size (got), json_array_size (want));
        for (size_t k = 0; k < json_array_size (got); k++) {
            json_t *g = json_array_get (got, k), *w = json_array_get (want, k);
            if (i == 0) //  FP32: the float that was sent, to the last bit
                ck_assert ((float)json_number_value (g) == (float)json_number_value (w));
            else if (json_is_number (w))
                ck_assert (json_number_value (g) == json_number_value (w));
            else
                ck_assert_msg (json_equal (g, w), "output %zu value %zu differs", i, k);
        }
    }
    json_decref (sent);
    json_decref (root);
    infer_buf_free (&buf);
    infer_request_free (&req);
    ck_assert_uint_eq (req.n_inputs, 0);
}
END_TEST

START_TEST (test_nested_equals_flat)
{
    infer_request_t flat, nested;
    decode_ok ("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"INT32\", \"shape\": [2, 2, 3], "
               "\"data\": [1,2,3,4,5,6,7,8,9,10,11,12]}]}",
               &flat);
    decode_ok ("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"INT32\", \"shape\": [2, 2, 3], "
               "\"data\": [[[1,2,3],[4,5,6]],[[7,8,9],[10,11,12]]]}]}",
               &nested);
    ck_assert_uint_eq (flat.inputs[0].size, 48);
    ck_assert_uint_eq (nested.inputs[0].size, 48);
    ck_assert_mem_eq (flat.inputs[0].data, nested.inputs[0].data, 48);
    ck_assert_int_eq (nested.inputs[0].ndim, 3);
    ck_assert_int_eq (nested.inputs[0].shape[2], 3);
    infer_request_free (&flat);
    infer_request_free (&nested);

    //  Nested BYTES, and a zero dimension
    infer_request_t req;
    decode_ok ("{\"inputs\": [{\"name\": \"s\", \"datatype\": \"BYTES\", \"shape\": [2, 1], "
               "\"data\": [[\"a\"], [\"bc\"]]},"
               "{\"name\": \"e\", \"datatype\": \"FP32\", \"shape\": [0, 4], \"data\": []}]}",
               &req);
    ck_assert_mem_eq (req.inputs[0].data, "\x01\0\0\0a\x02\0\0\0bc", 11);
    ck_assert_uint_eq (req.inputs[1].size, 0);
    infer_request_free (&req);
}
END_TEST

START_TEST (test_binary_input_and_output)
{
    //  A 1000x100 FP32 tensor in the binary part, a BYTES one after it
    enum { ROWS = 1000, COLS = 100 };
    float *values = malloc (ROWS * COLS * sizeof (float));
    for (int i = 0; i < ROWS * COLS; i++)
        values[i] = (float)i * 0.25f - 7.0f;
    const char bytes[] = "\x03\0\0\0abc\x00\0\0\0";
    char json[512];
    int json_len = snprintf (json, sizeof json,
                             "{\"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", "
                             "\"shape\": [%d, %d], \"parameters\": {\"binary_data_size\": %zu}},"
                             "{\"name\": \"tag\", \"datatype\": \"BYTES\", \"shape\": [2], "
                             "\"parameters\": {\"binary_data_size\": 11}}],"
                             "\"outputs\": [{\"name\": \"input\", \"parameters\": "
                             "{\"binary_data\": true}}, {\"name\": \"tag\"}]}",
                             ROWS, COLS, ROWS * COLS * sizeof (float));
    size_t size = (size_t)json_len + ROWS * COLS * sizeof (float) + 11;
    char *body = malloc (size);
    memcpy (body, json, (size_t)json_len);
    memcpy (body + json_len, values, ROWS * COLS * sizeof (float));
    memcpy (body + json_len + ROWS * COLS * sizeof (float), bytes, 11);

    infer_request_t req;
    char err[256] = "";
    ck_assert_msg (
        infer_decode_v2 (body, size, (size_t)json_len, MAX_ELEMENTS, &req, err, sizeof err) == 0,
        "%s", err);
    ck_assert_uint_eq (req.n_inputs, 2);
    ck_assert_int_eq (req.inputs[0].shape[0], ROWS);
    ck_assert_int_eq (req.inputs[0].shape[1], COLS);
    ck_assert_uint_eq (req.inputs[0].size, ROWS * COLS * sizeof (float));
    ck_assert_mem_eq (req.inputs[0].data, values, ROWS * COLS * sizeof (float));
    ck_assert_mem_eq (req.inputs[1].data, bytes, 11);
    ck_assert_uint_eq (req.n_outputs, 2);
    ck_assert_str_eq (req.outputs[0], "input");
    ck_assert (req.output_binary[0] && !req.output_binary[1]);
    ck_assert (!req.binary_output);

    //  The first output goes binary, after the JSON; the second as JSON
    infer_buf_t buf = {0};
    size_t out_json_len;
    bool binary = false;
    json_t *root = encode_echo (&req, &buf, &out_json_len, &binary);
    ck_assert (binary);
    ck_assert_uint_eq (buf.size, out_json_len + ROWS * COLS * sizeof (float));
    ck_assert_mem_eq (buf.data + out_json_len, values, ROWS * COLS * sizeof (float));
    json_t *first = json_array_get (json_object_get (root, "outputs"), 0);
    ck_assert_ptr_null (json_object_get (first, "data"));
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (first, "parameters"),
                                                           "binary_data_size")),
                      ROWS * COLS * sizeof (float));
    json_t *second = json_array_get (json_object_get (root, "outputs"), 1);
    ck_assert_str_eq (json_string_value (json_array_get (json_object_get (second, "data"), 0)),
                      "abc");
    json_decref (root);

    //  binary_data_output: every output binary, in output order
    req.binary_output = true;
    buf.size = 0;
    root = encode_echo (&req, &buf, &out_json_len, &binary);
    ck_assert (binary);
    ck_assert_uint_eq (buf.size, out_json_len + ROWS * COLS * sizeof (float) + 11);
    ck_assert_mem_eq (buf.data + out_json_len + ROWS * COLS * sizeof (float), bytes, 11);
    json_decref (root);

    //  A large tensor as JSON text reads back exactly too
    req.binary_output = false;
    req.output_binary[0] = false;
    buf.size = 0;
    root = encode_echo (&req, &buf, &out_json_len, &binary);
    ck_assert (!binary);
    json_t *data = json_object_get (json_array_get (json_object_get (root, "outputs"), 0), "data");
    ck_assert_uint_eq (json_array_size (data), ROWS * COLS);
    for (size_t i = 0; i < ROWS * COLS; i++)
        ck_assert ((float)json_number_value (json_array_get (data, i)) == values[i]);
    json_decref (root);

    infer_buf_free (&buf);
    infer_request_free (&req);
    free (body);
    free (values);
}
END_TEST

START_TEST (test_parameters)
{
    infer_request_t req;
    decode_ok ("{\"parameters\": {\"priority\": 3, \"deadline_ms\": 2147483648, "
               "\"binary_data_output\": true, \"other\": [1, {}]},"
               "\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP64\", \"shape\": [1], "
               "\"data\": [1], \"parameters\": {\"unknown\": 1}}]}",
               &req);
    ck_assert_uint_eq (req.priority, 3);
    ck_assert_uint_eq (req.deadline_ms, 2147483648u);
    ck_assert (req.binary_output);
    ck_assert (!req.has_id);
    ck_assert_uint_eq (req.n_outputs, 0);
    infer_request_free (&req);
}
END_TEST

//  A body and a fragment of the message it must be refused with
typedef struct {
    const char *body;
    const char *message;
} bad_t;

#define X_INPUT "{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], \"data\": [1, 2]}"

static const bad_t s_bad[] = {
    {"", "malformed JSON"},
    {"{\"inputs\": [" X_INPUT "]", "malformed JSON"},
    {"[1, 2]", "must be a JSON object"},
    {"{\"inputs\": [" X_INPUT "], \"inputs\": []}", "malformed JSON"}, //  duplicate key
    {"{}", "inputs must be an array of 1 to 16"},
    {"{\"inputs\": []}", "inputs must be an array of 1 to 16"},
    {"{\"inputs\": {}}", "inputs must be an array"},
    {"{\"inputs\": [1]}", "inputs[0] must be an object"},
    {"{\"inputs\": [{\"datatype\": \"FP32\", \"shape\": [1], \"data\": [1]}]}",
     "inputs[0].name must be a string"},
    {"{\"inputs\": [{\"name\": \"\", \"datatype\": \"FP32\", \"shape\": [1], \"data\": [1]}]}",
     "inputs[0].name must be 1 to 127 bytes"},
    {"{\"inputs\": [{\"name\": \"0123456789012345678901234567890123456789012345678901234567890123"
     "0123456789012345678901234567890123456789012345678901234567890123"
     "\", \"datatype\": \"FP32\", \"shape\": [1], \"data\": [1]}]}",
     "inputs[0].name must be 1 to 127 bytes"},
    {"{\"inputs\": [" X_INPUT ", " X_INPUT "]}",
     "inputs[1].name 'x' is also the name of inputs[0]"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP16\", \"shape\": [1], \"data\": [1]}]}",
     "inputs[0].datatype 'FP16' is not one of"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": 3, \"shape\": [1], \"data\": [1]}]}",
     "inputs[0].datatype must be a string"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"data\": [1]}]}",
     "inputs[0].shape must be an array of 1 to 8"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [], \"data\": [1]}]}",
     "inputs[0].shape must be an array of 1 to 8"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1,1,1,1,1,1,1,1,1], "
     "\"data\": [1]}]}",
     "inputs[0].shape must be an array of 1 to 8"},
    {"{\"inputs\": [" X_INPUT ", {\"name\": \"y\", \"datatype\": \"FP32\", \"shape\": [-1], "
     "\"data\": [1]}]}",
     "inputs[1].shape[0] must be a non-negative integer"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1, 2.5], \"data\": "
     "[1]}]}",
     "inputs[0].shape[1] must be a non-negative integer"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [4294967296, "
     "4294967296, 4294967296], \"data\": [1]}]}",
     "inputs[0].shape has more than 1048576 elements"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1048577], \"data\": "
     "[1]}]}",
     "inputs[0].shape has more than 1048576 elements"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [3], \"data\": [1, 2]}]}",
     "inputs[0].data has 2 values but its shape takes 3"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2]}]}",
     "inputs[0] has no data"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], \"data\": {}}]}",
     "inputs[0].data must be an array"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], \"data\": [1, "
     "\"2\"]}]}",
     "inputs[0].data[1] must be a number"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], \"data\": [1, "
     "1e39]}]}",
     "inputs[0].data[1] is out of range for FP32"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"INT32\", \"shape\": [2], \"data\": [1, "
     "2147483648]}]}",
     "inputs[0].data[1] is out of range for INT32"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"INT64\", \"shape\": [1], \"data\": [1.5]}]}",
     "inputs[0].data[0] must be an integer"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"INT64\", \"shape\": [1], \"data\": "
     "[9223372036854775808]}]}",
     "malformed JSON"}, //  jansson: too big integer
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"UINT8\", \"shape\": [1], \"data\": [256]}]}",
     "inputs[0].data[0] is out of range for UINT8"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"UINT8\", \"shape\": [1], \"data\": [-1]}]}",
     "inputs[0].data[0] is out of range for UINT8"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"BOOL\", \"shape\": [1], \"data\": [1]}]}",
     "inputs[0].data[0] must be true or false"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"BYTES\", \"shape\": [1], \"data\": [1]}]}",
     "inputs[0].data[0] must be a string"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP64\", \"shape\": [2, 2], \"data\": "
     "[[1, 2], [3]]}]}",
     "inputs[0].data[1] has 1 entries but shape[1] is 2"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP64\", \"shape\": [2, 2], \"data\": "
     "[[1, 2], 3]}]}",
     "inputs[0].data[1] must be an array (the shape has 2 dimensions)"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP64\", \"shape\": [2, 2], \"data\": "
     "[[1, 2], [3, [4]]]}]}",
     "inputs[0].data[1][1] must be a number"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP64\", \"shape\": [3, 2], \"data\": "
     "[[1, 2], [3, 4]]}]}",
     "inputs[0].data has 2 entries but shape[0] is 3"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP64\", \"shape\": [4], \"data\": "
     "[1, [2], 3, 4]}]}",
     "inputs[0].data[1] must be a number"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], \"data\": [1, 2], "
     "\"parameters\": {\"binary_data_size\": 8}}]}",
     "inputs[0] has both data and parameters.binary_data_size"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], "
     "\"parameters\": {\"binary_data_size\": 8}}]}",
     "Inference-Header-Content-Length header"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], "
     "\"parameters\": {\"binary_data_size\": -8}}]}",
     "inputs[0].parameters.binary_data_size must be a non-negative integer"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], "
     "\"parameters\": 7}]}",
     "inputs[0].parameters must be an object"},
    {"{\"id\": 5, \"inputs\": [" X_INPUT "]}", "id must be a string"},
    {"{\"id\": \"a\\u0000b\", \"inputs\": [" X_INPUT "]}", "id must be a string"},
    {"{\"parameters\": [], \"inputs\": [" X_INPUT "]}", "parameters must be an object"},
    {"{\"parameters\": {\"priority\": 4}, \"inputs\": [" X_INPUT "]}",
     "parameters.priority must be an integer from 0 to 3"},
    {"{\"parameters\": {\"priority\": \"high\"}, \"inputs\": [" X_INPUT "]}",
     "parameters.priority must be an integer from 0 to 3"},
    {"{\"parameters\": {\"deadline_ms\": 0}, \"inputs\": [" X_INPUT "]}",
     "parameters.deadline_ms must be an integer from 1 to 2147483648"},
    {"{\"parameters\": {\"deadline_ms\": 2147483649}, \"inputs\": [" X_INPUT "]}",
     "parameters.deadline_ms must be an integer from 1 to 2147483648"},
    {"{\"parameters\": {\"binary_data_output\": 1}, \"inputs\": [" X_INPUT "]}",
     "parameters.binary_data_output must be true or false"},
    {"{\"inputs\": [" X_INPUT "], \"outputs\": {}}", "outputs must be an array"},
    {"{\"inputs\": [" X_INPUT "], \"outputs\": [3]}", "outputs[0] must be an object"},
    {"{\"inputs\": [" X_INPUT "], \"outputs\": [{\"name\": \"a\"}, {}]}",
     "outputs[1].name must be a string"},
    {"{\"inputs\": [" X_INPUT "], \"outputs\": [{\"name\": \"a\"}, {\"name\": \"a\"}]}",
     "outputs[1].name 'a' is also the name of outputs[0]"},
    {"{\"inputs\": [" X_INPUT "], \"outputs\": [{\"name\": \"a\", \"parameters\": "
     "{\"binary_data\": \"yes\"}}]}",
     "outputs[0].parameters.binary_data must be true or false"},
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
     "nests deeper than 64"},
};

START_TEST (test_malformed_bodies)
{
    const bad_t *bad = &s_bad[_i];
    infer_request_t req;
    char err[256] = "";
    int rc = infer_decode_v2 (bad->body, strlen (bad->body), strlen (bad->body), MAX_ELEMENTS, &req,
                              err, sizeof err);
    ck_assert_msg (rc == -1, "accepted: %s", bad->body);
    ck_assert_msg (strstr (err, bad->message), "body %s\nmessage '%s'\nwanted '%s'", bad->body, err,
                   bad->message);
    infer_request_free (&req);
    ck_assert_ptr_null (req.owned);
}
END_TEST

//  Decodes a body with a binary part; returns the decoder's status and
//  message.
static int decode_binary (const char *json, const void *binary, size_t binary_size, char *err,
                          size_t err_size)
{
    size_t json_len = strlen (json);
    char *body = malloc (json_len + binary_size + 1);
    memcpy (body, json, json_len);
    if (binary_size)
        memcpy (body + json_len, binary, binary_size);
    infer_request_t req;
    int rc =
        infer_decode_v2 (body, json_len + binary_size, json_len, MAX_ELEMENTS, &req, err, err_size);
    infer_request_free (&req);
    free (body);
    return rc;
}

START_TEST (test_malformed_binary)
{
    char err[256];
    const char *fp32 = "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], "
                       "\"parameters\": {\"binary_data_size\": 8}}]}";
    ck_assert_int_eq (decode_binary (fp32, "12345678", 8, err, sizeof err), 0);
    ck_assert_int_eq (decode_binary (fp32, "1234567", 7, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "inputs[0] takes 8 bytes of binary data but 7 are left"));
    ck_assert_int_eq (decode_binary (fp32, "123456789", 9, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "1 bytes of binary data are left over"));

    const char *wrong = "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], "
                        "\"parameters\": {\"binary_data_size\": 6}}]}";
    ck_assert_int_eq (decode_binary (wrong, "123456", 6, err, sizeof err), -1);
    ck_assert_ptr_nonnull (
        strstr (err, "binary_data_size is 6 but its shape of FP32 takes 8 bytes"));

    const char *bools = "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"BOOL\", \"shape\": [2], "
                        "\"parameters\": {\"binary_data_size\": 2}}]}";
    ck_assert_int_eq (decode_binary (bools, "\x01\x00", 2, err, sizeof err), 0);
    ck_assert_int_eq (decode_binary (bools, "\x01\x02", 2, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "binary BOOL value 1 is not 0 or 1"));

    const char *bytes = "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"BYTES\", \"shape\": [2], "
                        "\"parameters\": {\"binary_data_size\": 10}}]}";
    ck_assert_int_eq (decode_binary (bytes, "\x01\0\0\0a\x01\0\0\0b", 10, err, sizeof err), 0);
    ck_assert_int_eq (decode_binary (bytes, "\x07\0\0\0a\x01\0\0\0b", 10, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "value 0 is 7 bytes long but only 6 are left"));
    ck_assert_int_eq (decode_binary (bytes, "\x01\0\0\0a\x00\0\0\0b", 10, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "binary_data_size is 10 but its 2 BYTES values take 9"));
    ck_assert_int_eq (decode_binary (bytes, "\x00\0\0\0\x00\0\0\0ab", 10, err, sizeof err), -1);
    ck_assert_int_eq (decode_binary (bytes, "\x06\0\0\0abcdef", 10, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "ends inside the length of value 1"));

    //  The JSON part longer than the body
    infer_request_t req;
    ck_assert_int_eq (infer_decode_v2 ("{}", 2, 3, MAX_ELEMENTS, &req, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "Inference-Header-Content-Length is 3"));
    infer_request_free (&req);
}
END_TEST

START_TEST (test_predict_decode)
{
    infer_request_t req;
    char err[256] = "";
    const char *row = "{\"X\": [1, 2.5, -3]}";
    ck_assert_int_eq (
        infer_decode_predict (row, strlen (row), "features", MAX_ELEMENTS, &req, err, sizeof err),
        0);
    ck_assert_uint_eq (req.n_inputs, 1);
    ck_assert_str_eq (req.inputs[0].name, "features");
    ck_assert_int_eq (req.inputs[0].datatype, AMAAS_FP64);
    ck_assert_int_eq (req.inputs[0].ndim, 2);
    ck_assert_int_eq (req.inputs[0].shape[0], 1);
    ck_assert_int_eq (req.inputs[0].shape[1], 3);
    const double want_row[] = {1, 2.5, -3};
    ck_assert_mem_eq (req.inputs[0].data, want_row, sizeof want_row);
    infer_request_free (&req);

    const char *rows = "{\"X\": [[1, 2], [3, 4], [5, 100000000000000000000]], \"other\": true}";
    ck_assert_int_eq (
        infer_decode_predict (rows, strlen (rows), NULL, MAX_ELEMENTS, &req, err, sizeof err), 0);
    ck_assert_str_eq (req.inputs[0].name, "input");
    ck_assert_int_eq (req.inputs[0].shape[0], 3);
    ck_assert_int_eq (req.inputs[0].shape[1], 2);
    const double want_rows[] = {1, 2, 3, 4, 5, 1e20};
    ck_assert_mem_eq (req.inputs[0].data, want_rows, sizeof want_rows);
    infer_request_free (&req);

    static const bad_t bad[] = {
        {"{\"Y\": [1]}", "the body has no X"},
        {"{\"X\": []}", "X is empty"},
        {"{\"X\": 3}", "X must be an array of numbers"},
        {"{\"X\": [[]]}", "X[0] is empty"},
        {"{\"X\": [[1, 2], [3]]}", "X[1] must be an array of 2 numbers"},
        {"{\"X\": [[1, 2], 3]}", "X[1] must be an array of 2 numbers"},
        {"{\"X\": [[1, 2], [3, \"4\"]]}", "X[1][1] must be a number"},
        {"{\"X\": [1, [2]]}", "X[1] must be a number"},
        {"{\"X\": [1, null]}", "X[1] must be a number"},
        {"{\"X\": [true]}", "X[0] must be a number"},
        {"{\"X\": [1], \"X\": [2]}", "malformed JSON"},
        {"[1]", "must be a JSON object"},
        {"{\"X\": [1,", "malformed JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = infer_decode_predict (bad[i].body, strlen (bad[i].body), "input", MAX_ELEMENTS,
                                       &req, err, sizeof err);
        ck_assert_msg (rc == -1, "accepted %s", bad[i].body);
        ck_assert_msg (strstr (err, bad[i].message), "body %s: '%s', wanted '%s'", bad[i].body, err,
                       bad[i].message);
        infer_request_free (&req);
    }
    const char *big = "{\"X\": [[1, 2], [3, 4]]}";
    ck_assert_int_eq (infer_decode_predict (big, strlen (big), "input", 3, &req, err, sizeof err),
                      -1);
    ck_assert_ptr_nonnull (strstr (err, "X has more than 3 numbers"));
    infer_request_free (&req);
}
END_TEST

START_TEST (test_predict_encode)
{
    infer_buf_t buf = {0};
    //  A classifier: probabilities [2, 3], then labels [2]; y_pred is the last
    const double proba[] = {0.25, 0.75, 0, 1, 0, 0};
    const int64_t labels[] = {7, -9223372036854775807 - 1};
    amaas_tensor_t outputs[2] = {
        {.name = "proba",
         .datatype = AMAAS_FP64,
         .ndim = 2,
         .shape = {2, 3},
         .data = proba,
         .size = sizeof proba},
        {.name = "label",
         .datatype = AMAAS_INT64,
         .ndim = 1,
         .shape = {2},
         .data = labels,
         .size = sizeof labels},
    };
    amaas_result_t result = {.model = "m", .version = "1", .n_outputs = 2, .outputs = outputs};
    ck_assert_int_eq (infer_encode_predict (&result, &buf), 0);
    assert_buf (&buf, "{\"y_pred\":[7,-9223372036854775808]}");
    buf.size = 0;
    result.n_outputs = 1; //  [rows, k]: a list per row
    ck_assert_int_eq (infer_encode_predict (&result, &buf), 0);
    assert_buf (&buf, "{\"y_pred\":[[0.25,0.75,0],[1,0,0]]}");
    buf.size = 0;
    //  String labels
    const char names[] = "\x03\0\0\0cat\x03\0\0\0dog";
    amaas_tensor_t strings = {.name = "label",
                              .datatype = AMAAS_BYTES,
                              .ndim = 1,
                              .shape = {2},
                              .data = names,
                              .size = 14};
    result.outputs = &strings;
    ck_assert_int_eq (infer_encode_predict (&result, &buf), 0);
    assert_buf (&buf, "{\"y_pred\":[\"cat\",\"dog\"]}");
    buf.size = 0;
    result.n_outputs = 0;
    ck_assert_int_eq (infer_encode_predict (&result, &buf), 0);
    assert_buf (&buf, "{\"y_pred\":[]}");
    infer_buf_free (&buf);
}
END_TEST

//  Encodes one output of the echo model and returns its "data" text.
static void check_encoded (const amaas_tensor_t *tensor, const char *want)
{
    infer_buf_t buf = {0};
    amaas_result_t result = {
        .model = "m", .version = "1", .n_outputs = 1, .outputs = (amaas_tensor_t *)tensor};
    size_t json_len;
    bool binary;
    infer_request_t req = {0};
    ck_assert_int_eq (infer_encode_v2 (&req, &result, &buf, &json_len, &binary), 0);
    ck_assert_uint_eq (json_len, buf.size);
    char *text = strndup (buf.data, buf.size);
    char *data = strstr (text, "\"data\":");
    ck_assert_ptr_nonnull (data);
    ck_assert_msg (strncmp (data + 7, want, strlen (want)) == 0, "got %s, wanted %s", data + 7,
                   want);
    json_error_t jerr;
    json_t *root = json_loadb (buf.data, buf.size, 0, &jerr);
    ck_assert_msg (root != NULL, "not JSON: %s: %s", jerr.text, text);
    json_decref (root);
    free (text);
    infer_buf_free (&buf);
}

START_TEST (test_encode_values)
{
    //  FP64 to 17 digits (reads back exactly); NaN and infinities as null
    const double f64[] = {0.1, -0.0, 1e300, 123456789012, NAN, -INFINITY, 5e-324};
    amaas_tensor_t t = {.name = "y",
                        .datatype = AMAAS_FP64,
                        .ndim = 1,
                        .shape = {7},
                        .data = f64,
                        .size = sizeof f64};
    check_encoded (&t, "[0.10000000000000001,-0.0,1.0000000000000001e+300,123456789012,null,null,"
                       "4.9406564584124654e-324]");
    //  FP32 to 9 digits
    const float f32[] = {0.1f, 3.4028235e38f, 16777216.0f, -1.5f, INFINITY};
    t = (amaas_tensor_t){.name = "y",
                         .datatype = AMAAS_FP32,
                         .ndim = 1,
                         .shape = {5},
                         .data = f32,
                         .size = sizeof f32};
    check_encoded (&t, "[0.100000001,3.40282347e+38,16777216,-1.5,null]");
    const int32_t i32[] = {INT32_MIN, 0, 42};
    t = (amaas_tensor_t){.name = "y",
                         .datatype = AMAAS_INT32,
                         .ndim = 1,
                         .shape = {3},
                         .data = i32,
                         .size = sizeof i32};
    check_encoded (&t, "[-2147483648,0,42]");
    const uint8_t u8[] = {0, 1, 255};
    t = (amaas_tensor_t){
        .name = "y", .datatype = AMAAS_UINT8, .ndim = 2, .shape = {1, 3}, .data = u8, .size = 3};
    check_encoded (&t, "[0,1,255]");
    t.datatype = AMAAS_BOOL;
    check_encoded (&t, "[false,true,true]");
    //  BYTES: escaped; bytes that are not UTF-8 become U+FFFD
    const char bytes[] = "\x05\0\0\0a\"\\\n\x01"
                         "\x04\0\0\0\xff\xc3\xa9\xe2";
    t = (amaas_tensor_t){
        .name = "y", .datatype = AMAAS_BYTES, .ndim = 1, .shape = {2}, .data = bytes, .size = 17};
    check_encoded (&t, "[\"a\\\"\\\\\\n\\u0001\",\"\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\"]");
    //  A result shorter than its shape says is not overread
    t = (amaas_tensor_t){.name = "y",
                         .datatype = AMAAS_INT32,
                         .ndim = 1,
                         .shape = {100},
                         .data = i32,
                         .size = sizeof i32};
    check_encoded (&t, "[-2147483648,0,42]");
}
END_TEST

START_TEST (test_encode_id_and_error)
{
    infer_request_t req = {0};
    strcpy (req.id, "q\"1\x7f");
    req.has_id = true;
    amaas_result_t result = {.model = "m\xff", .version = "2"};
    infer_buf_t buf = {0};
    size_t json_len;
    bool binary;
    ck_assert_int_eq (infer_encode_v2 (&req, &result, &buf, &json_len, &binary), 0);
    assert_buf (&buf, "{\"model_name\":\"m\xef\xbf\xbd\",\"model_version\":\"2\","
                      "\"id\":\"q\\\"1\x7f\",\"outputs\":[]}");
    buf.size = 0;
    ck_assert_int_eq (infer_encode_error ("no model 'x\ty'", &buf), 0);
    assert_buf (&buf, "{\"error\":\"no model 'x\\ty'\"}");
    infer_buf_free (&buf);
}
END_TEST

//  Renders a model's metadata and returns it as compact JSON text (to free)
static char *metadata_text (const amaas_model_info_t *models, size_t first, size_t last,
                            size_t chosen)
{
    json_t *doc = infer_model_metadata (models, first, last, chosen);
    ck_assert_ptr_nonnull (doc);
    char *text = json_dumps (doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (doc);
    ck_assert_ptr_nonnull (text);
    return text;
}

//  KServe model metadata: every input and output of a graph model with its
//  shape (-1 for the batch and the dimensions a request sets), and the
//  one input [-1, width] of a model whose workers did not say (older ones)
START_TEST (test_model_metadata)
{
    amaas_model_info_t models[3] = {0};
    amaas_model_info_t *old = &models[0], *graph = &models[2];
    snprintf (old->name, sizeof old->name, "bert");
    snprintf (old->version, sizeof old->version, "1");
    old->width = 7;
    old->n_outputs = 1;
    old->outputs[0] = (amaas_output_info_t){.name = "y", .datatype = AMAAS_FP32, .width = 2};
    models[1] = (amaas_model_info_t){.name = "bert", .version = "2"};
    snprintf (graph->name, sizeof graph->name, "bert");
    snprintf (graph->version, sizeof graph->version, "10");
    snprintf (graph->input, sizeof graph->input, "input_ids");
    graph->datatype = AMAAS_INT64;
    graph->n_inputs = 2;
    graph->inputs[0] = (amaas_input_info_t){
        .name = "input_ids", .datatype = AMAAS_INT64, .ndim = 2, .shape = {-1, -1}};
    graph->inputs[1] = (amaas_input_info_t){
        .name = "attention_mask", .datatype = AMAAS_INT64, .ndim = 2, .shape = {-1, 128}};
    graph->n_outputs = 3;
    graph->outputs[0] = (amaas_output_info_t){
        .name = "hidden", .datatype = AMAAS_FP32, .ndim = 3, .shape = {-1, -1, 256}};
    graph->outputs[1] = (amaas_output_info_t){
        .name = "logits", .datatype = AMAAS_FP32, .width = 2, .ndim = 2, .shape = {-1, 2}};
    graph->outputs[2] =
        (amaas_output_info_t){.name = "label", .datatype = AMAAS_INT64, .ndim = 1, .shape = {-1}};
    char *text = metadata_text (models, 0, 2, 2);
    ck_assert_str_eq (
        text, "{\"name\":\"bert\",\"versions\":[\"1\",\"2\",\"10\"],\"platform\":\"amaas\","
              "\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"shape\":[-1,-1]},"
              "{\"name\":\"attention_mask\",\"datatype\":\"INT64\",\"shape\":[-1,128]}],"
              "\"outputs\":[{\"name\":\"hidden\",\"datatype\":\"FP32\",\"shape\":[-1,-1,256]},"
              "{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[-1,2]},"
              "{\"name\":\"label\",\"datatype\":\"INT64\",\"shape\":[-1]}]}");
    free (text);
    //  Version 1 from workers that announced no inputs nor shapes
    text = metadata_text (models, 0, 0, 0);
    ck_assert_str_eq (text,
                      "{\"name\":\"bert\",\"versions\":[\"1\"],\"platform\":\"amaas\","
                      "\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP64\",\"shape\":[-1,7]}],"
                      "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[-1,2]}]}");
    free (text);
    //  Version 2 said nothing at all, not even its outputs
    text = metadata_text (models, 1, 1, 1);
    ck_assert_str_eq (text,
                      "{\"name\":\"bert\",\"versions\":[\"2\"],\"platform\":\"amaas\","
                      "\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP64\",\"shape\":[-1,-1]}],"
                      "\"outputs\":[]}");
    free (text);
}
END_TEST

//  A graph model's request: two INT64 inputs of rank 2 and an FP32 one of
//  rank 3, in JSON and in the binary extension, decode to the tensors
//  sent, names, shapes and values unchanged (the gateway forwards them)
START_TEST (test_multi_input_nd)
{
    const char *json_body =
        "{\"inputs\": ["
        "{\"name\": \"input_ids\", \"datatype\": \"INT64\", \"shape\": [2, 3], "
        "\"data\": [[101, 7592, 102], [101, -1, 9223372036854775807]]},"
        "{\"name\": \"attention_mask\", \"datatype\": \"INT64\", \"shape\": [2, 3], "
        "\"data\": [1, 1, 1, 1, 1, 0]},"
        "{\"name\": \"pixels\", \"datatype\": \"FP32\", \"shape\": [2, 1, 2], "
        "\"data\": [[[0.5, 1]], [[-2, 3.25]]]}]}";
    const int64_t ids[6] = {101, 7592, 102, 101, -1, INT64_MAX}, mask[6] = {1, 1, 1, 1, 1, 0};
    const float pixels[4] = {0.5f, 1, -2, 3.25f};
    //  The same as a binary request
    char binary[1024];
    int json_len =
        snprintf (binary, sizeof binary, "%s",
                  "{\"inputs\": ["
                  "{\"name\": \"input_ids\", \"datatype\": \"INT64\", \"shape\": [2, 3], "
                  "\"parameters\": {\"binary_data_size\": 48}},"
                  "{\"name\": \"attention_mask\", \"datatype\": \"INT64\", \"shape\": [2, 3], "
                  "\"parameters\": {\"binary_data_size\": 48}},"
                  "{\"name\": \"pixels\", \"datatype\": \"FP32\", \"shape\": [2, 1, 2], "
                  "\"parameters\": {\"binary_data_size\": 16}}]}");
    ck_assert_int_lt (json_len + 112, (int)sizeof binary);
    memcpy (binary + json_len, ids, 48);
    memcpy (binary + json_len + 48, mask, 48);
    memcpy (binary + json_len + 96, pixels, 16);
    for (int pass = 0; pass < 2; pass++) {
        infer_request_t req;
        char why[256] = "";
        int rc = pass == 0 ? infer_decode_v2 (json_body, strlen (json_body), strlen (json_body),
                                              MAX_ELEMENTS, &req, why, sizeof why)
                           : infer_decode_v2 (binary, (size_t)json_len + 112, (size_t)json_len,
                                              MAX_ELEMENTS, &req, why, sizeof why);
        ck_assert_msg (rc == 0, "pass %d refused: %s", pass, why);
        ck_assert_uint_eq (req.n_inputs, 3);
        const amaas_tensor_t *t = req.inputs;
        ck_assert_str_eq (t[0].name, "input_ids");
        ck_assert_str_eq (t[1].name, "attention_mask");
        ck_assert_str_eq (t[2].name, "pixels");
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq (t[i].datatype, AMAAS_INT64);
            ck_assert_int_eq (t[i].ndim, 2);
            ck_assert_int_eq (t[i].shape[0], 2);
            ck_assert_int_eq (t[i].shape[1], 3);
            ck_assert_uint_eq (t[i].size, 48);
        }
        ck_assert_mem_eq (t[0].data, ids, 48);
        ck_assert_mem_eq (t[1].data, mask, 48);
        ck_assert_int_eq (t[2].datatype, AMAAS_FP32);
        ck_assert_int_eq (t[2].ndim, 3);
        ck_assert_int_eq (t[2].shape[1], 1);
        ck_assert_int_eq (t[2].shape[2], 2);
        ck_assert_uint_eq (t[2].size, 16);
        ck_assert_mem_eq (t[2].data, pixels, 16);
        infer_request_free (&req);
    }
}
END_TEST

int main (void)
{
    Suite *suite = suite_create ("gateway_infer");
    TCase *tc = tcase_create ("infer");
    tcase_add_test (tc, test_every_datatype_round_trip);
    tcase_add_test (tc, test_nested_equals_flat);
    tcase_add_test (tc, test_binary_input_and_output);
    tcase_add_test (tc, test_parameters);
    tcase_add_loop_test (tc, test_malformed_bodies, 0, (int)(sizeof s_bad / sizeof s_bad[0]));
    tcase_add_test (tc, test_malformed_binary);
    tcase_add_test (tc, test_predict_decode);
    tcase_add_test (tc, test_predict_encode);
    tcase_add_test (tc, test_encode_values);
    tcase_add_test (tc, test_encode_id_and_error);
    tcase_add_test (tc, test_model_metadata);
    tcase_add_test (tc, test_multi_input_nd);
    suite_add_tcase (suite, tc);
    return unit_run (suite);
}
