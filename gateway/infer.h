/*  infer.h - the gateway's JSON <-> tensor translation (docs/HTTP.md).

    Turns the body of an HTTP inference request (KServe v2 JSON, with or
    without the binary tensor extension, or the Flask route's {"X": ...})
    into libamaas input tensors, and a libamaas result into the response
    body.  Knows no HTTP server and no socket: the fuzz target and the unit
    tests drive it directly.  Every size, shape and count in a body is
    checked before it is trusted; a bad body is an error message for a
    person, never a crash.
*/
#ifndef AMAAS_GATEWAY_INFER_H_INCLUDED
#define AMAAS_GATEWAY_INFER_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amaas.h"

#define INFER_MAX_TENSORS 16 //  inputs or requested outputs of one request
#define INFER_ID_MAX 256     //  bytes of a request "id", NUL included

//  A decoded request.  Owns what it points to (infer_request_free).
typedef struct {
    char id[INFER_ID_MAX]; //  request "id", echoed in the response ("" = none)
    bool has_id;           //  the request had an "id"
    size_t n_inputs;
    amaas_tensor_t inputs[INFER_MAX_TENSORS]; //  names and data owned here
    size_t n_outputs;                         //  0: every output of the model
    const char *outputs[INFER_MAX_TENSORS];   //  requested output names, owned here
    bool output_binary[INFER_MAX_TENSORS];    //  each requested output wanted binary
    bool binary_output;                       //  parameters.binary_data_output: every output binary
    uint32_t priority;                        //  parameters.priority, 0..3 (0 when absent)
    uint32_t deadline_ms;                     //  parameters.deadline_ms (0 when absent)
    void *owned;                              //  the decoder's allocations
} infer_request_t;

//  A growable output buffer.
typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} infer_buf_t;

//  Decode a KServe v2 inference request body.  json_len is the
//  Inference-Header-Content-Length (the JSON part is body[0..json_len), the
//  binary part follows), or size when the header is absent.  max_elements
//  bounds each tensor.  req is overwritten (zeroed first), and must be
//  freed with infer_request_free whatever the outcome.  Returns 0, or -1
//  with a message in err (HTTP 400; "out of memory" is the only other).
int infer_decode_v2 (const char *body, size_t size, size_t json_len, uint64_t max_elements,
                     infer_request_t *req, char *err, size_t err_size);

//  Decode the Flask route's body {"X": row or rows} into one FP64 input
//  named input_name ("input" if NULL or empty) with shape [rows, width]
//  (one flat row: [1, width]).  req as for infer_decode_v2.  Returns 0, or
//  -1 with err.
int infer_decode_predict (const char *body, size_t size, const char *input_name,
                          uint64_t max_elements, infer_request_t *req, char *err, size_t err_size);

//  Free what a decode allocated (also after a failed decode) and zero req.
void infer_request_free (infer_request_t *req);

//  Encode the response to a KServe v2 request: the result's outputs as
//  JSON, those wanted binary after it.  Appends to out; *json_len is the
//  JSON part's length, and *binary says whether any output went binary
//  (then the response needs Inference-Header-Content-Length: *json_len).
//  Numbers read back exactly (FP64 to 17 digits, FP32 to 9); NaN and
//  infinities, which JSON has no numbers for, are written as null; BYTES
//  values are JSON strings in which bytes that are not UTF-8 become U+FFFD
//  (binary outputs carry them unchanged).  req may be NULL (no id, nothing
//  binary).  Returns 0, -1 on out-of-memory (out as it was).
int infer_encode_v2 (const infer_request_t *req, const amaas_result_t *result, infer_buf_t *out,
                     size_t *json_len, bool *binary);

//  Encode the Flask route's response {"y_pred": [...]}: the result's last
//  output, one entry per row: a value for shape [rows], an array of k for
//  [rows, k].  Values as infer_encode_v2 writes them.  Returns 0, -1 on
//  out-of-memory (out as it was).
int infer_encode_predict (const amaas_result_t *result, infer_buf_t *out);

//  Encode {"error": message} (message escaped as JSON).  Returns 0, -1 on
//  out-of-memory (out as it was).
int infer_encode_error (const char *message, infer_buf_t *out);

//  The KServe v2 model metadata of models[chosen]: {name, versions,
//  platform "amaas", inputs, outputs}, every input and output as {name,
//  datatype, shape} with -1 for the batch and for each dimension the
//  request sets; versions are those of models[first .. last] (the model's,
//  chosen among them).  A model whose workers did not announce inputs gets
//  one, named input (or "input"), of its datatype (or FP64), shape [-1,
//  width] ([-1, -1] for width 0, unknown).  Returns a new reference, NULL on out-of-memory.
json_t *infer_model_metadata (const amaas_model_info_t *models, size_t first, size_t last,
                              size_t chosen);

//  Free a buffer's memory and zero it.  Cannot fail.
void infer_buf_free (infer_buf_t *buf);

#endif
