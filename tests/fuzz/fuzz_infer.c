/*  fuzz_infer.c - libFuzzer target for the gateway's JSON <-> tensor
    translation (gateway/infer.c).

    The input's first two bytes, little-endian, are the
    Inference-Header-Content-Length (0xffff: none, the whole rest is JSON;
    else at most the rest), so that the binary tensor extension is
    exercised; the rest is the body.  It is decoded as a KServe v2 request
    and as the Flask route's {"X": ...}.  Whatever decodes is encoded back
    as a model that echoes its inputs would answer, and the JSON part of
    every response (errors included) must parse.  A request that came as
    JSON only must come back exactly: its response's "outputs", sent as
    "inputs", decode to the same tensors, byte for byte.
*/
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "utf8.h"

//  Checked in every build type (assert is compiled out with NDEBUG)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf (stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
            abort ();                                                                              \
        }                                                                                          \
    } while (0)

//  Bounds each tensor, so that an input's memory stays small
#define MAX_ELEMENTS (1u << 16)

//  The JSON part of a response must parse; returns it.
static json_t *s_parse_response (const infer_buf_t *buf, size_t json_len)
{
    json_error_t jerr;
    json_t *root = json_loadb (buf->data, json_len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        fprintf (stderr, "not JSON (%s): %.*s\n", jerr.text, (int)json_len, buf->data);
    CHECK (root != NULL);
    return root;
}

//  Checks what a successful decode promises about each input.
static void s_check_inputs (const infer_request_t *req)
{
    CHECK (req->n_inputs >= 1 && req->n_inputs <= INFER_MAX_TENSORS);
    for (size_t i = 0; i < req->n_inputs; i++) {
        const amaas_tensor_t *t = &req->inputs[i];
        CHECK (t->name && strlen (t->name) >= 1 && strlen (t->name) <= 127); //  the wire's limit
        CHECK (t->ndim >= 1 && t->ndim <= AMAAS_MAX_DIMS);
        uint64_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            CHECK (t->shape[d] >= 0);
            count = t->shape[d] == 0 || count == 0 ? 0 : count * (uint64_t)t->shape[d];
            CHECK (count <= MAX_ELEMENTS);
        }
        if (t->datatype != AMAAS_BYTES)
            CHECK (t->size == count * amaas_dtype_size (t->datatype));
        else {
            size_t at = 0;
            for (uint64_t k = 0; k < count; k++) {
                uint32_t len;
                CHECK (t->size - at >= 4);
                memcpy (&len, (const uint8_t *)t->data + at, 4);
                CHECK (len <= t->size - at - 4);
                at += 4 + len;
            }
            CHECK (at == t->size);
        }
    }
}

//  The echo of a JSON-only request, sent back as a request, decodes to the
//  same tensors.
static void s_check_round_trip (const infer_request_t *req, json_t *response)
{
    json_t *again = json_object ();
    json_object_set (again, "inputs", json_object_get (response, "outputs"));
    char *text = json_dumps (again, 0);
    json_decref (again);
    CHECK (text != NULL);
    infer_request_t back;
    char err[256];
    int rc =
        infer_decode_v2 (text, strlen (text), strlen (text), MAX_ELEMENTS, &back, err, sizeof err);
    if (rc)
        fprintf (stderr, "the echo does not decode (%s): %s\n", err, text);
    CHECK (rc == 0);
    CHECK (back.n_inputs == req->n_inputs);
    for (size_t i = 0; i < req->n_inputs; i++) {
        const amaas_tensor_t *a = &req->inputs[i], *b = &back.inputs[i];
        CHECK (strcmp (a->name, b->name) == 0 && a->datatype == b->datatype);
        CHECK (a->ndim == b->ndim);
        CHECK (memcmp (a->shape, b->shape, sizeof a->shape) == 0);
        CHECK (a->size == b->size);
        CHECK (a->size == 0 || memcmp (a->data, b->data, a->size) == 0);
    }
    infer_request_free (&back);
    free (text);
}

//  Encodes the answer of a model that echoes the request's inputs.
static void s_echo (const infer_request_t *req, bool json_only)
{
    amaas_result_t result = {.model = "echo",
                             .version = "1",
                             .n_outputs = req->n_inputs,
                             .outputs = (amaas_tensor_t *)req->inputs};
    infer_buf_t buf = {0};
    size_t json_len = 0;
    bool binary = false;
    CHECK (infer_encode_v2 (req, &result, &buf, &json_len, &binary) == 0);
    CHECK (json_len <= buf.size);
    json_t *root = s_parse_response (&buf, json_len);
    size_t binary_size = 0;
    bool any_binary = false;
    json_t *outputs = json_object_get (root, "outputs");
    CHECK (json_array_size (outputs) == req->n_inputs);
    for (size_t i = 0; i < req->n_inputs; i++) {
        json_t *parameters = json_object_get (json_array_get (outputs, i), "parameters");
        if (parameters) {
            CHECK ((size_t)json_integer_value (json_object_get (parameters, "binary_data_size")) ==
                   req->inputs[i].size);
            binary_size += req->inputs[i].size;
            any_binary = true;
        }
    }
    CHECK (binary == any_binary);
    CHECK (buf.size == json_len + binary_size);
    if (json_only && !binary)
        s_check_round_trip (req, root);
    json_decref (root);

    //  The Flask answer: the last output
    buf.size = 0;
    CHECK (infer_encode_predict (&result, &buf) == 0);
    json_decref (s_parse_response (&buf, buf.size));
    infer_buf_free (&buf);
}

static void s_check_error (const char *message)
{
    infer_buf_t buf = {0};
    CHECK (infer_encode_error (message, &buf) == 0);
    json_t *root = s_parse_response (&buf, buf.size);
    const char *back = json_string_value (json_object_get (root, "error"));
    CHECK (back != NULL);
    //  The message comes back as it was, unless bytes of it were not UTF-8
    //  (a cut sequence) and became U+FFFD
    if (utf8_valid ((const uint8_t *)message, strlen (message)))
        CHECK (strcmp (back, message) == 0);
    json_decref (root);
    infer_buf_free (&buf);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t header = (size_t)data[0] | (size_t)data[1] << 8;
    const char *body = (const char *)data + 2;
    size -= 2;
    size_t json_len = header == 0xffff || header > size ? size : header;

    infer_request_t req;
    char err[256];
    if (infer_decode_v2 (body, size, json_len, MAX_ELEMENTS, &req, err, sizeof err) == 0) {
        s_check_inputs (&req);
        s_echo (&req, json_len == size);
    } else
        s_check_error (err);
    infer_request_free (&req);

    if (infer_decode_predict (body, size, "input", MAX_ELEMENTS, &req, err, sizeof err) == 0) {
        s_check_inputs (&req);
        CHECK (req.inputs[0].datatype == AMAAS_FP64 && req.inputs[0].ndim == 2);
        s_echo (&req, true);
    } else
        s_check_error (err);
    infer_request_free (&req);
    return 0;
}
