/*  infer.c - the gateway's JSON <-> tensor translation; see infer.h.

    Decoding parses the JSON part of a body with jansson, after a linear
    scan that bounds its nesting depth and its number of values (so that a
    body cannot make jansson recurse deeply or allocate a tree far larger
    than any valid request).  Each input is then checked field by field:
    name, datatype, shape (element count without overflow, at most
    max_elements), and its values, given flat in row-major order or nested
    exactly as the shape says, or taken from the binary part of the body.
    Values are converted into one buffer per input that the request owns.

    Encoding is the hot path of every response: it writes the JSON text
    straight into the output buffer, numbers with snprintf (integers and
    integral floats with a small itoa), and builds no tree.

    Tensor data is little-endian; this file reads and writes it with memcpy,
    so it assumes a little-endian host, as the rest of amaas does.
*/
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "utf8.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "tensor data is little-endian");

#define S_NAME_MAX 128 //  bytes of a tensor name, NUL included (the wire's limit)
#define S_DEPTH_MAX 64 //  nesting of a body's JSON (a valid one needs about 12)
#define S_DEADLINE_MAX (UINT32_C (1) << 31)

//  What a decoded request owns: the names, and one data buffer per input.
typedef struct {
    char input_names[INFER_MAX_TENSORS][S_NAME_MAX];
    char output_names[INFER_MAX_TENSORS][S_NAME_MAX];
    void *data[INFER_MAX_TENSORS];
} s_owned_t;

//  One input being decoded.
typedef struct {
    int index;           //  its place in "inputs", for messages
    amaas_dtype_t dtype; //  its datatype
    int ndim;            //  its shape
    int64_t shape[AMAAS_MAX_DIMS];
    uint64_t count; //  elements: the product of the shape
    uint8_t *out;   //  where the next value goes (NULL: only count BYTES)
    uint64_t bytes; //  BYTES: bytes of the values counted so far
} s_input_t;

static void s_error (char *err, size_t err_size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Writes a message into err.  Cannot fail.
static void s_error (char *err, size_t err_size, const char *format, ...)
{
    if (!err || err_size == 0)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (err, err_size, format, args);
    va_end (args);
}

//  --------------------------------------------------------------------------
//  Decoding

//  Checks, before jansson sees them, that the JSON text nests at most
//  S_DEPTH_MAX deep and holds at most max_values values (counted as the
//  commas outside strings, plus one).  Returns 0, or -1 with err.
static int s_prescan (const char *text, size_t size, uint64_t max_values, char *err,
                      size_t err_size)
{
    int depth = 0;
    uint64_t commas = 0;
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++; //  the escaped character cannot end the string
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"')
            in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > S_DEPTH_MAX) {
                s_error (err, err_size, "the JSON nests deeper than %d levels", S_DEPTH_MAX);
                return -1;
            }
        } else if (c == ']' || c == '}')
            depth--;
        else if (c == ',' && ++commas >= max_values) {
            s_error (err, err_size,
                     "the JSON holds more values than %d tensors of the largest size allowed",
                     INFER_MAX_TENSORS);
            return -1;
        }
    }
    return 0;
}

//  Parses the JSON text of a body into an object (flags: jansson's, beside
//  those every body gets).  Returns it, or NULL with err.
static json_t *s_parse (const char *text, size_t size, uint64_t max_elements, size_t flags,
                        char *err, size_t err_size)
{
    uint64_t max_values = max_elements > (UINT64_MAX - 4096) / INFER_MAX_TENSORS
                              ? UINT64_MAX
                              : max_elements * INFER_MAX_TENSORS + 4096;
    if (s_prescan (text, size, max_values, err, err_size))
        return NULL;
    json_error_t jerr;
    json_t *root = json_loadb (text, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | flags, &jerr);
    if (!root) {
        s_error (err, err_size, "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return NULL;
    }
    if (!json_is_object (root)) {
        json_decref (root);
        s_error (err, err_size, "the body must be a JSON object");
        return NULL;
    }
    return root;
}

//  Starts a decode: zeroes req and gives it its bookkeeping.  Returns 0,
//  or -1 with err.
static int s_request_init (infer_request_t *req, char *err, size_t err_size)
{
    memset (req, 0, sizeof *req);
    req->owned = calloc (1, sizeof (s_owned_t));
    if (!req->owned) {
        s_error (err, err_size, "out of memory");
        return -1;
    }
    return 0;
}

//  Copies a tensor name (a JSON string of 1..63 bytes without NUL) into
//  name.  what names the field in messages.  Returns 0, or -1 with err.
static int s_name (const json_t *value, const char *what, char *name, char *err, size_t err_size)
{
    if (!json_is_string (value)) {
        s_error (err, err_size, "%s must be a string", what);
        return -1;
    }
    size_t len = json_string_length (value);
    const char *text = json_string_value (value);
    if (len == 0 || len >= S_NAME_MAX || memchr (text, 0, len)) {
        s_error (err, err_size, "%s must be 1 to %d bytes (no NUL)", what, S_NAME_MAX - 1);
        return -1;
    }
    memcpy (name, text, len + 1);
    return 0;
}

//  Writes "inputs[i].data[a][b]..." (the place of a value) into path.
static void s_value_path (const s_input_t *in, const size_t *idx, int depth, char *path,
                          size_t path_size)
{
    int len = snprintf (path, path_size, "inputs[%d].data", in->index);
    for (int d = 0; d < depth && len > 0 && (size_t)len < path_size; d++)
        len += snprintf (path + len, path_size - (size_t)len, "[%zu]", idx[d]);
}

//  Converts one JSON value of an input into its datatype, at in->out (or
//  only counts its bytes, for BYTES while in->out is NULL).  idx/depth say
//  where the value is, for messages.  Returns 0, or -1 with err.
static int s_value (s_input_t *in, const json_t *value, const size_t *idx, int depth, char *err,
                    size_t err_size)
{
    const char *wants = NULL;
    switch (in->dtype) {
    case AMAAS_FP32:
    case AMAAS_FP64: {
        if (!json_is_number (value)) {
            wants = "must be a number";
            break;
        }
        double d = json_number_value (value);
        if (in->dtype == AMAAS_FP64) {
            memcpy (in->out, &d, 8);
            in->out += 8;
            return 0;
        }
        if (fabs (d) > FLT_MAX) {
            wants = "is out of range for FP32";
            break;
        }
        float f = (float)d;
        memcpy (in->out, &f, 4);
        in->out += 4;
        return 0;
    }
    case AMAAS_INT32:
    case AMAAS_INT64:
    case AMAAS_UINT8: {
        if (!json_is_integer (value)) {
            wants = "must be an integer";
            break;
        }
        json_int_t v = json_integer_value (value);
        if (in->dtype == AMAAS_INT64) {
            int64_t x = v;
            memcpy (in->out, &x, 8);
            in->out += 8;
            return 0;
        }
        if (in->dtype == AMAAS_INT32) {
            if (v < INT32_MIN || v > INT32_MAX) {
                wants = "is out of range for INT32";
                break;
            }
            int32_t x = (int32_t)v;
            memcpy (in->out, &x, 4);
            in->out += 4;
            return 0;
        }
        if (v < 0 || v > 255) {
            wants = "is out of range for UINT8 (0 to 255)";
            break;
        }
        *in->out++ = (uint8_t)v;
        return 0;
    }
    case AMAAS_BOOL:
        if (!json_is_boolean (value)) {
            wants = "must be true or false";
            break;
        }
        *in->out++ = json_is_true (value) ? 1 : 0;
        return 0;
    case AMAAS_BYTES: {
        if (!json_is_string (value)) {
            wants = "must be a string";
            break;
        }
        size_t len = json_string_length (value);
        if (len > UINT32_MAX) {
            wants = "is longer than 4 GiB";
            break;
        }
        if (!in->out) {
            in->bytes += 4 + (uint64_t)len;
            return 0;
        }
        uint32_t prefix = (uint32_t)len;
        memcpy (in->out, &prefix, 4);
        memcpy (in->out + 4, json_string_value (value), len);
        in->out += 4 + len;
        return 0;
    }
    default: break;
    }
    char path[128];
    s_value_path (in, idx, depth, path, sizeof path);
    s_error (err, err_size, "%s %s", path, wants ? wants : "has an unknown datatype");
    return -1;
}

//  Walks nested arrays that must match the shape from dimension dim on,
//  converting the innermost values.  Returns 0, or -1 with err.
static int s_nested (s_input_t *in, const json_t *node, int dim, size_t *idx, char *err,
                     size_t err_size)
{
    char path[128];
    size_t n = json_array_size (node);
    if ((uint64_t)n != (uint64_t)in->shape[dim]) {
        s_value_path (in, idx, dim, path, sizeof path);
        s_error (err, err_size, "%s has %zu entries but shape[%d] is %" PRId64, path, n, dim,
                 in->shape[dim]);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *child = json_array_get (node, i);
        idx[dim] = i;
        if (dim + 1 == in->ndim) {
            if (s_value (in, child, idx, dim + 1, err, err_size))
                return -1;
        } else if (!json_is_array (child)) {
            s_value_path (in, idx, dim + 1, path, sizeof path);
            s_error (err, err_size, "%s must be an array (the shape has %d dimensions)", path,
                     in->ndim);
            return -1;
        } else if (s_nested (in, child, dim + 1, idx, err, err_size))
            return -1;
    }
    return 0;
}

//  Converts an input's "data": flat in row-major order (then it holds
//  in->count values) or nested as the shape says (when its first entry is
//  an array).  Returns 0, or -1 with err.
static int s_values (s_input_t *in, const json_t *data, char *err, size_t err_size)
{
    size_t idx[AMAAS_MAX_DIMS] = {0};
    if (json_is_array (json_array_get (data, 0)))
        return s_nested (in, data, 0, idx, err, err_size);
    size_t n = json_array_size (data); //  in->count, checked by s_input
    for (size_t i = 0; i < n; i++) {
        idx[0] = i;
        if (s_value (in, json_array_get (data, i), idx, 1, err, err_size))
            return -1;
    }
    return 0;
}

//  Takes an input's values from the binary part: size bytes at *cursor
//  (end is the body's end).  For fixed-size datatypes size must be the
//  shape's bytes; BYTES must hold exactly in->count length-prefixed
//  values.  Copies them to dest (allocated by the caller, size bytes).
//  Returns 0, or -1 with err.
static int s_binary (s_input_t *in, uint64_t size, const char **cursor, const char *end, char *err,
                     size_t err_size)
{
    size_t left = (size_t)(end - *cursor);
    if (size > left) {
        s_error (
            err, err_size, "inputs[%d] takes %" PRIu64 " bytes of binary data but %zu are left%s",
            in->index, size, left,
            left == 0 ? " (binary data needs the Inference-Header-Content-Length header)" : "");
        return -1;
    }
    const uint8_t *data = (const uint8_t *)*cursor;
    size_t elem = amaas_dtype_size (in->dtype);
    if (in->dtype == AMAAS_BYTES) {
        uint64_t at = 0;
        for (uint64_t i = 0; i < in->count; i++) {
            uint32_t len;
            if (size - at < 4) {
                s_error (err, err_size,
                         "inputs[%d] binary BYTES data ends inside the length of value %" PRIu64,
                         in->index, i);
                return -1;
            }
            memcpy (&len, data + at, 4);
            at += 4;
            if (len > size - at) {
                s_error (err, err_size,
                         "inputs[%d] binary BYTES value %" PRIu64
                         " is %u bytes long but only %" PRIu64 " are left",
                         in->index, i, len, size - at);
                return -1;
            }
            at += len;
        }
        if (at != size) {
            s_error (err, err_size,
                     "inputs[%d].parameters.binary_data_size is %" PRIu64 " but its %" PRIu64
                     " BYTES values take %" PRIu64,
                     in->index, size, in->count, at);
            return -1;
        }
    } else if (size != in->count * elem) {
        s_error (err, err_size,
                 "inputs[%d].parameters.binary_data_size is %" PRIu64
                 " but its shape of %s takes %" PRIu64 " bytes",
                 in->index, size, amaas_dtype_name (in->dtype), in->count * elem);
        return -1;
    } else if (in->dtype == AMAAS_BOOL) {
        for (uint64_t i = 0; i < size; i++)
            if (data[i] > 1) {
                s_error (err, err_size, "inputs[%d] binary BOOL value %" PRIu64 " is not 0 or 1",
                         in->index, i);
                return -1;
            }
    }
    if (size)
        memcpy (in->out, data, size);
    *cursor += size;
    return 0;
}

//  Reads a non-negative integer field (absent: *value untouched).  Returns
//  0, or -1 with err naming the field.
static int s_uint_field (const json_t *object, const char *key, uint64_t max, uint64_t *value,
                         const char *what, char *err, size_t err_size)
{
    const json_t *field = json_object_get (object, key);
    if (!field)
        return 0;
    if (!json_is_integer (field) || json_integer_value (field) < 0 ||
        (uint64_t)json_integer_value (field) > max) {
        if (max > INT64_MAX)
            s_error (err, err_size, "%s must be a non-negative integer", what);
        else
            s_error (err, err_size, "%s must be an integer from 0 to %" PRIu64, what, max);
        return -1;
    }
    *value = (uint64_t)json_integer_value (field);
    return 0;
}

//  Decodes inputs[index] into req->inputs[index]; binary values come from
//  *cursor..end.  Returns 0, or -1 with err.
static int s_input (infer_request_t *req, int index, const json_t *object, uint64_t max_elements,
                    const char **cursor, const char *end, char *err, size_t err_size)
{
    s_owned_t *owned = req->owned;
    amaas_tensor_t *tensor = &req->inputs[index];
    char what[64];
    if (!json_is_object (object)) {
        s_error (err, err_size, "inputs[%d] must be an object", index);
        return -1;
    }
    snprintf (what, sizeof what, "inputs[%d].name", index);
    if (s_name (json_object_get (object, "name"), what, owned->input_names[index], err, err_size))
        return -1;
    for (int i = 0; i < index; i++)
        if (strcmp (owned->input_names[i], owned->input_names[index]) == 0) {
            s_error (err, err_size, "inputs[%d].name '%s' is also the name of inputs[%d]", index,
                     owned->input_names[index], i);
            return -1;
        }
    tensor->name = owned->input_names[index];

    s_input_t in = {.index = index};
    const json_t *datatype = json_object_get (object, "datatype");
    if (!json_is_string (datatype)) {
        s_error (err, err_size, "inputs[%d].datatype must be a string", index);
        return -1;
    }
    in.dtype = amaas_dtype_from_name (json_string_value (datatype), json_string_length (datatype));
    if (in.dtype == AMAAS_DTYPE_INVALID) {
        s_error (err, err_size,
                 "inputs[%d].datatype '%.32s' is not one of FP32, FP64, INT32, INT64, UINT8, "
                 "BOOL, BYTES",
                 index, json_string_value (datatype));
        return -1;
    }

    const json_t *shape = json_object_get (object, "shape");
    if (!json_is_array (shape) || json_array_size (shape) < 1 ||
        json_array_size (shape) > AMAAS_MAX_DIMS) {
        s_error (err, err_size, "inputs[%d].shape must be an array of 1 to %d dimensions", index,
                 AMAAS_MAX_DIMS);
        return -1;
    }
    in.ndim = (int)json_array_size (shape);
    //  The product, unless a dimension is zero (then any product is zero)
    in.count = 1;
    bool too_many = false, empty = false;
    for (int d = 0; d < in.ndim; d++) {
        const json_t *dim = json_array_get (shape, (size_t)d);
        if (!json_is_integer (dim) || json_integer_value (dim) < 0) {
            s_error (err, err_size, "inputs[%d].shape[%d] must be a non-negative integer", index,
                     d);
            return -1;
        }
        in.shape[d] = json_integer_value (dim);
        empty |= in.shape[d] == 0;
        too_many |= __builtin_mul_overflow (in.count, (uint64_t)in.shape[d], &in.count);
    }
    if (empty) {
        in.count = 0;
        too_many = false;
    }
    if (too_many || in.count > max_elements) {
        s_error (err, err_size, "inputs[%d].shape has more than %" PRIu64 " elements", index,
                 max_elements);
        return -1;
    }

    uint64_t binary_size = UINT64_MAX; //  none
    const json_t *parameters = json_object_get (object, "parameters");
    if (parameters) {
        if (!json_is_object (parameters)) {
            s_error (err, err_size, "inputs[%d].parameters must be an object", index);
            return -1;
        }
        snprintf (what, sizeof what, "inputs[%d].parameters.binary_data_size", index);
        if (s_uint_field (parameters, "binary_data_size", UINT64_MAX - 1, &binary_size, what, err,
                          err_size))
            return -1;
    }
    const json_t *data = json_object_get (object, "data");
    if (data && binary_size != UINT64_MAX) {
        s_error (err, err_size,
                 "inputs[%d] has both data and parameters.binary_data_size: give one", index);
        return -1;
    }
    if (!data && binary_size == UINT64_MAX) {
        s_error (err, err_size, "inputs[%d] has no data (nor parameters.binary_data_size)", index);
        return -1;
    }
    if (data && !json_is_array (data)) {
        s_error (err, err_size, "inputs[%d].data must be an array", index);
        return -1;
    }
    if (data && !json_is_array (json_array_get (data, 0)) &&
        (uint64_t)json_array_size (data) != in.count) {
        s_error (err, err_size,
                 "inputs[%d].data has %zu values but its shape takes %" PRIu64
                 " (give them flat in row-major order, or nested as the shape says)",
                 index, json_array_size (data), in.count);
        return -1;
    }

    //  The values' bytes: the shape's, or for BYTES what they add up to
    uint64_t size;
    if (binary_size != UINT64_MAX)
        size = binary_size > (uint64_t)(end - *cursor) ? 0 : binary_size;
    else if (in.dtype == AMAAS_BYTES) {
        if (s_values (&in, data, err, err_size)) //  counts
            return -1;
        size = in.bytes;
    } else
        size = in.count * amaas_dtype_size (in.dtype); //  count <= max_elements, no overflow
    if (size > SIZE_MAX - 1 || !(owned->data[index] = malloc (size ? (size_t)size : 1))) {
        s_error (err, err_size, "out of memory for inputs[%d]", index);
        return -1;
    }
    in.out = owned->data[index];
    if (binary_size != UINT64_MAX) {
        if (s_binary (&in, binary_size, cursor, end, err, err_size))
            return -1;
    } else if (s_values (&in, data, err, err_size))
        return -1;

    tensor->datatype = in.dtype;
    tensor->ndim = in.ndim;
    memcpy (tensor->shape, in.shape, sizeof in.shape);
    tensor->data = owned->data[index];
    tensor->size = (size_t)size;
    return 0;
}

//  Decodes the request's "outputs".  Returns 0, or -1 with err.
static int s_outputs (infer_request_t *req, const json_t *outputs, char *err, size_t err_size)
{
    s_owned_t *owned = req->owned;
    if (!json_is_array (outputs) || json_array_size (outputs) > INFER_MAX_TENSORS) {
        s_error (err, err_size, "outputs must be an array of at most %d outputs",
                 INFER_MAX_TENSORS);
        return -1;
    }
    char what[64];
    for (size_t i = 0; i < json_array_size (outputs); i++) {
        const json_t *output = json_array_get (outputs, i);
        if (!json_is_object (output)) {
            s_error (err, err_size, "outputs[%zu] must be an object", i);
            return -1;
        }
        snprintf (what, sizeof what, "outputs[%zu].name", i);
        if (s_name (json_object_get (output, "name"), what, owned->output_names[i], err, err_size))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp (owned->output_names[j], owned->output_names[i]) == 0) {
                s_error (err, err_size, "outputs[%zu].name '%s' is also the name of outputs[%zu]",
                         i, owned->output_names[i], j);
                return -1;
            }
        req->outputs[i] = owned->output_names[i];
        const json_t *parameters = json_object_get (output, "parameters");
        if (parameters) {
            if (!json_is_object (parameters)) {
                s_error (err, err_size, "outputs[%zu].parameters must be an object", i);
                return -1;
            }
            const json_t *binary = json_object_get (parameters, "binary_data");
            if (binary && !json_is_boolean (binary)) {
                s_error (err, err_size, "outputs[%zu].parameters.binary_data must be true or false",
                         i);
                return -1;
            }
            req->output_binary[i] = json_is_true (binary);
        }
        req->n_outputs = i + 1;
    }
    return 0;
}

//  Decodes the request's "parameters" (those amaas knows; others are
//  ignored).  Returns 0, or -1 with err.
static int s_parameters (infer_request_t *req, const json_t *parameters, char *err, size_t err_size)
{
    if (!json_is_object (parameters)) {
        s_error (err, err_size, "parameters must be an object");
        return -1;
    }
    uint64_t priority = 0, deadline_ms = 0;
    if (s_uint_field (parameters, "priority", 3, &priority, "parameters.priority", err, err_size))
        return -1;
    const json_t *deadline = json_object_get (parameters, "deadline_ms");
    if (deadline && (!json_is_integer (deadline) || json_integer_value (deadline) < 1 ||
                     json_integer_value (deadline) > (json_int_t)S_DEADLINE_MAX)) {
        s_error (err, err_size, "parameters.deadline_ms must be an integer from 1 to %" PRIu32,
                 S_DEADLINE_MAX);
        return -1;
    }
    if (deadline)
        deadline_ms = (uint64_t)json_integer_value (deadline);
    const json_t *binary = json_object_get (parameters, "binary_data_output");
    if (binary && !json_is_boolean (binary)) {
        s_error (err, err_size, "parameters.binary_data_output must be true or false");
        return -1;
    }
    req->priority = (uint32_t)priority;
    req->deadline_ms = (uint32_t)deadline_ms;
    req->binary_output = json_is_true (binary);
    return 0;
}

int infer_decode_v2 (const char *body, size_t size, size_t json_len, uint64_t max_elements,
                     infer_request_t *req, char *err, size_t err_size)
{
    if (s_request_init (req, err, err_size))
        return -1;
    if (json_len > size) {
        s_error (err, err_size,
                 "Inference-Header-Content-Length is %zu but the body has only %zu bytes", json_len,
                 size);
        return -1;
    }
    json_t *root = s_parse (body, json_len, max_elements, 0, err, err_size);
    if (!root)
        return -1;
    int rc = -1;
    const json_t *id = json_object_get (root, "id");
    if (id) {
        size_t len = json_string_length (id);
        if (!json_is_string (id) || len >= INFER_ID_MAX ||
            memchr (json_string_value (id), 0, len)) {
            s_error (err, err_size, "id must be a string of at most %d bytes (no NUL)",
                     INFER_ID_MAX - 1);
            goto done;
        }
        memcpy (req->id, json_string_value (id), len + 1);
        req->has_id = true;
    }
    const json_t *parameters = json_object_get (root, "parameters");
    if (parameters && s_parameters (req, parameters, err, err_size))
        goto done;
    const json_t *inputs = json_object_get (root, "inputs");
    if (!json_is_array (inputs) || json_array_size (inputs) < 1 ||
        json_array_size (inputs) > INFER_MAX_TENSORS) {
        s_error (err, err_size, "inputs must be an array of 1 to %d inputs", INFER_MAX_TENSORS);
        goto done;
    }
    const char *cursor = body + json_len, *end = body + size;
    for (size_t i = 0; i < json_array_size (inputs); i++) {
        if (s_input (req, (int)i, json_array_get (inputs, i), max_elements, &cursor, end, err,
                     err_size))
            goto done;
        req->n_inputs = i + 1;
    }
    if (cursor != end) {
        s_error (err, err_size,
                 "%zu bytes of binary data are left over: no input takes them "
                 "(parameters.binary_data_size)",
                 (size_t)(end - cursor));
        goto done;
    }
    const json_t *outputs = json_object_get (root, "outputs");
    if (outputs && s_outputs (req, outputs, err, err_size))
        goto done;
    rc = 0;
done:
    json_decref (root);
    return rc;
}

int infer_decode_predict (const char *body, size_t size, const char *input_name,
                          uint64_t max_elements, infer_request_t *req, char *err, size_t err_size)
{
    static const char *usage =
        "X must be an array of numbers (one row) or of arrays of numbers (rows)";
    if (s_request_init (req, err, err_size))
        return -1;
    s_owned_t *owned = req->owned;
    if (!input_name || !*input_name)
        input_name = "input";
    snprintf (owned->input_names[0], S_NAME_MAX, "%s", input_name);

    //  Every number is an FP64 here: read integers as reals too, so that
    //  one past 2^63 is a number, not a malformed body
    json_t *root = s_parse (body, size, max_elements, JSON_DECODE_INT_AS_REAL, err, err_size);
    if (!root)
        return -1;
    int rc = -1;
    const json_t *x = json_object_get (root, "X");
    if (!x) {
        s_error (err, err_size, "the body has no X: send {\"X\": [row]} or {\"X\": [rows]}");
        goto done;
    }
    if (!json_is_array (x)) {
        s_error (err, err_size, "%s", usage);
        goto done;
    }
    if (json_array_size (x) == 0) {
        s_error (err, err_size, "X is empty: %s", usage);
        goto done;
    }
    bool rows = json_is_array (json_array_get (x, 0));
    size_t n_rows = rows ? json_array_size (x) : 1;
    size_t width = rows ? json_array_size (json_array_get (x, 0)) : json_array_size (x);
    if (width == 0) {
        s_error (err, err_size, "X[0] is empty: rows need at least one number");
        goto done;
    }
    for (size_t r = 1; r < n_rows; r++) {
        const json_t *row = json_array_get (x, r);
        if (!json_is_array (row) || json_array_size (row) != width) {
            s_error (err, err_size,
                     "X[%zu] must be an array of %zu numbers, as long as X[0] (rows of equal "
                     "length)",
                     r, width);
            goto done;
        }
    }
    if ((uint64_t)n_rows * width > max_elements) { //  both <= the body's size: no overflow
        s_error (err, err_size, "X has more than %" PRIu64 " numbers", max_elements);
        goto done;
    }
    double *values = malloc (n_rows * width * sizeof (double));
    if (!values) {
        s_error (err, err_size, "out of memory for X");
        goto done;
    }
    owned->data[0] = values;
    for (size_t r = 0; r < n_rows; r++) {
        const json_t *row = rows ? json_array_get (x, r) : x;
        for (size_t c = 0; c < width; c++) {
            const json_t *value = json_array_get (row, c);
            if (!json_is_number (value)) {
                if (rows)
                    s_error (err, err_size, "X[%zu][%zu] must be a number", r, c);
                else
                    s_error (err, err_size, "X[%zu] must be a number (%s)", c, usage);
                goto done;
            }
            values[r * width + c] = json_number_value (value);
        }
    }
    amaas_tensor_t *tensor = &req->inputs[0];
    tensor->name = owned->input_names[0];
    tensor->datatype = AMAAS_FP64;
    tensor->ndim = 2;
    tensor->shape[0] = (int64_t)n_rows;
    tensor->shape[1] = (int64_t)width;
    tensor->data = values;
    tensor->size = n_rows * width * sizeof (double);
    req->n_inputs = 1;
    rc = 0;
done:
    json_decref (root);
    return rc;
}

void infer_request_free (infer_request_t *req)
{
    if (!req)
        return;
    s_owned_t *owned = req->owned;
    if (owned)
        for (int i = 0; i < INFER_MAX_TENSORS; i++)
            free (owned->data[i]);
    free (owned);
    memset (req, 0, sizeof *req);
}

//  --------------------------------------------------------------------------
//  Encoding

//  Makes room for `more` bytes after out->size.  Returns 0, -1 on
//  out-of-memory (out unchanged).
static int s_reserve (infer_buf_t *out, size_t more)
{
    if (out->capacity - out->size >= more)
        return 0;
    if (more > SIZE_MAX / 2 - out->size)
        return -1;
    size_t capacity = out->capacity ? out->capacity : 4096;
    while (capacity - out->size < more)
        capacity *= 2;
    char *data = realloc (out->data, capacity);
    if (!data)
        return -1;
    out->data = data;
    out->capacity = capacity;
    return 0;
}

static int s_put (infer_buf_t *out, const void *data, size_t size)
{
    if (s_reserve (out, size))
        return -1;
    if (size)
        memcpy (out->data + out->size, data, size);
    out->size += size;
    return 0;
}

static int s_puts (infer_buf_t *out, const char *text)
{
    return s_put (out, text, strlen (text));
}

//  Writes v in decimal at p (room for 21 bytes); returns the length.
static size_t s_itoa (char *p, int64_t v)
{
    char digits[20];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        p[len++] = '-';
    while (n)
        p[len++] = digits[--n];
    return len;
}

//  Writes a double at p (room for 32 bytes) so that it reads back exactly:
//  %.17g, or digits alone for an integral value below 10^15 (what %.17g
//  would print, faster); -0.0 as "-0.0", since "-0" reads back as the
//  integer 0 in most parsers.  NaN and infinities are not JSON numbers: they are
//  written as null, so that the response stays JSON any parser reads.
static size_t s_dtoa (char *p, double v, int digits)
{
    if (!isfinite (v)) {
        memcpy (p, "null", 4);
        return 4;
    }
    if (v == 0 && signbit (v)) { //  "-0" would read back as the integer 0
        memcpy (p, "-0.0", 4);
        return 4;
    }
    if (fabs (v) < 1e15 && v == (double)(int64_t)v)
        return s_itoa (p, (int64_t)v);
    int len = snprintf (p, 32, "%.*g", digits, v);
    return len > 0 && len < 32 ? (size_t)len : 0;
}

//  Writes bytes as a JSON string, quoted and escaped.  Bytes that start
//  no valid UTF-8 sequence become U+FFFD (BYTES values are raw bytes but a
//  JSON string is text; the binary extension carries them as they are).
//  Returns 0, -1 on out-of-memory.
static int s_put_string (infer_buf_t *out, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    //  At most 6 bytes out per byte in ("\u001f"), plus the quotes
    if (len > (SIZE_MAX - 2) / 6 || s_reserve (out, len * 6 + 2))
        return -1;
    const uint8_t *in = (const uint8_t *)text;
    char *p = out->data + out->size;
    *p++ = '"';
    size_t i = 0;
    while (i < len) {
        uint8_t c = in[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *p++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t seq = utf8_sequence (in + i, len - i);
            if (seq) {
                memcpy (p, in + i, seq);
                p += seq;
                i += seq;
            } else {
                memcpy (p, "\xEF\xBF\xBD", 3); //  U+FFFD, 3 bytes for 1
                p += 3;
                i++;
            }
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"': *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\n': *p++ = 'n'; break;
        case '\r': *p++ = 'r'; break;
        case '\t': *p++ = 't'; break;
        case '\b': *p++ = 'b'; break;
        case '\f': *p++ = 'f'; break;
        default:
            memcpy (p, "u00", 3);
            p[3] = hex[c >> 4];
            p[4] = hex[c & 15];
            p += 5;
        }
        i++;
    }
    *p++ = '"';
    out->size = (size_t)(p - out->data);
    return 0;
}

//  Elements of a tensor: the product of its shape, but no more than its
//  data holds (a result is trusted, yet a short one must not be overread).
static uint64_t s_elements (const amaas_tensor_t *tensor)
{
    uint64_t count = 1;
    for (int d = 0; d < tensor->ndim && d < AMAAS_MAX_DIMS; d++)
        if (tensor->shape[d] <= 0 ||
            __builtin_mul_overflow (count, (uint64_t)tensor->shape[d], &count))
            return tensor->shape[d] == 0 ? 0 : UINT64_MAX;
    size_t elem = amaas_dtype_size (tensor->datatype);
    size_t most = tensor->size / (elem ? elem : 4); //  a BYTES value takes 4 bytes or more
    return count < most ? count : most;
}

//  Writes values [first, first + n) of a tensor, comma-separated; for BYTES
//  *at is the byte offset of value `first` and moves on.  Returns 0, -1 on
//  out-of-memory.
static int s_put_values (infer_buf_t *out, const amaas_tensor_t *tensor, uint64_t first, uint64_t n,
                         size_t *at)
{
    const uint8_t *data = tensor->data;
    if (n == 0)
        return 0;
    if (tensor->datatype == AMAAS_BYTES) {
        for (uint64_t i = 0; i < n; i++) {
            if (i && s_put (out, ",", 1))
                return -1;
            uint32_t len = 0;
            if (tensor->size - *at >= 4) {
                memcpy (&len, data + *at, 4);
                *at += 4;
            } else
                *at = tensor->size; //  a short value: an empty string
            if (len > tensor->size - *at)
                len = (uint32_t)(tensor->size - *at);
            if (s_put_string (out, (const char *)data + *at, len))
                return -1;
            *at += len;
        }
        return 0;
    }
    //  The longest text of one value, with its comma: "-2.2250738585072014e-308,"
    static const size_t widths[] = {[AMAAS_FP32] = 16,  [AMAAS_FP64] = 25, [AMAAS_INT32] = 12,
                                    [AMAAS_INT64] = 21, [AMAAS_UINT8] = 4, [AMAAS_BOOL] = 6};
    size_t elem = amaas_dtype_size (tensor->datatype);
    if (elem == 0)
        return 0;
    size_t width = widths[tensor->datatype];
    const uint8_t *v = data + first * elem;
    char *p = out->data + out->size;
    for (uint64_t i = 0; i < n; i++, v += elem) {
        if (i % 4096 == 0) { //  room for the next (up to) 4096 values and snprintf's 32 bytes
            out->size = (size_t)(p - out->data);
            uint64_t next = n - i < 4096 ? n - i : 4096;
            if (s_reserve (out, next * width + 32))
                return -1;
            p = out->data + out->size;
        }
        if (i)
            *p++ = ',';
        switch (tensor->datatype) {
        case AMAAS_FP32: {
            float f;
            memcpy (&f, v, 4);
            p += s_dtoa (p, f, 9);
            break;
        }
        case AMAAS_FP64: {
            double d;
            memcpy (&d, v, 8);
            p += s_dtoa (p, d, 17);
            break;
        }
        case AMAAS_INT32: {
            int32_t x;
            memcpy (&x, v, 4);
            p += s_itoa (p, x);
            break;
        }
        case AMAAS_INT64: {
            int64_t x;
            memcpy (&x, v, 8);
            p += s_itoa (p, x);
            break;
        }
        case AMAAS_UINT8: p += s_itoa (p, *v); break;
        case AMAAS_BOOL:
            memcpy (p, *v ? "true" : "false", *v ? 4 : 5);
            p += *v ? 4 : 5;
            break;
        default: break;
        }
    }
    out->size = (size_t)(p - out->data);
    return 0;
}

//  Whether the response carries output `name` binary.
static bool s_binary_output (const infer_request_t *req, const char *name)
{
    if (!req)
        return false;
    if (req->binary_output)
        return true;
    for (size_t i = 0; i < req->n_outputs && i < INFER_MAX_TENSORS; i++)
        if (req->output_binary[i] && req->outputs[i] && name && strcmp (req->outputs[i], name) == 0)
            return true;
    return false;
}

//  Writes one output's JSON object.
static int s_put_output (infer_buf_t *out, const amaas_tensor_t *tensor, bool binary)
{
    char number[24];
    const char *name = tensor->name ? tensor->name : "";
    if (s_puts (out, "{\"name\":") || s_put_string (out, name, strlen (name)) ||
        s_puts (out, ",\"datatype\":\"") || s_puts (out, amaas_dtype_name (tensor->datatype)) ||
        s_puts (out, "\",\"shape\":["))
        return -1;
    for (int d = 0; d < tensor->ndim && d < AMAAS_MAX_DIMS; d++)
        if ((d && s_put (out, ",", 1)) || s_put (out, number, s_itoa (number, tensor->shape[d])))
            return -1;
    if (binary) {
        return s_puts (out, "],\"parameters\":{\"binary_data_size\":") ||
               s_put (out, number, s_itoa (number, (int64_t)tensor->size)) || s_puts (out, "}}");
    }
    size_t at = 0;
    return s_puts (out, "],\"data\":[") ||
           s_put_values (out, tensor, 0, s_elements (tensor), &at) || s_puts (out, "]}");
}

int infer_encode_v2 (const infer_request_t *req, const amaas_result_t *result, infer_buf_t *out,
                     size_t *json_len, bool *binary)
{
    size_t start = out->size;
    bool any_binary = false;
    const char *model = result->model ? result->model : "";
    const char *version = result->version ? result->version : "";
    if (s_puts (out, "{\"model_name\":") || s_put_string (out, model, strlen (model)) ||
        s_puts (out, ",\"model_version\":") || s_put_string (out, version, strlen (version)))
        goto oom;
    if (req && req->has_id &&
        (s_puts (out, ",\"id\":") || s_put_string (out, req->id, strnlen (req->id, INFER_ID_MAX))))
        goto oom;
    if (s_puts (out, ",\"outputs\":["))
        goto oom;
    for (size_t i = 0; i < result->n_outputs; i++) {
        const amaas_tensor_t *tensor = &result->outputs[i];
        bool is_binary = s_binary_output (req, tensor->name);
        any_binary |= is_binary;
        if ((i && s_put (out, ",", 1)) || s_put_output (out, tensor, is_binary))
            goto oom;
    }
    if (s_puts (out, "]}"))
        goto oom;
    size_t json_end = out->size;
    for (size_t i = 0; i < result->n_outputs; i++) {
        const amaas_tensor_t *tensor = &result->outputs[i];
        if (s_binary_output (req, tensor->name) && s_put (out, tensor->data, tensor->size))
            goto oom;
    }
    if (json_len)
        *json_len = json_end - start;
    if (binary)
        *binary = any_binary;
    return 0;
oom:
    out->size = start;
    return -1;
}

int infer_encode_predict (const amaas_result_t *result, infer_buf_t *out)
{
    size_t start = out->size;
    if (s_puts (out, "{\"y_pred\":["))
        goto oom;
    if (result->n_outputs > 0) {
        const amaas_tensor_t *tensor = &result->outputs[result->n_outputs - 1];
        uint64_t count = s_elements (tensor);
        //  [rows] -> [v, ...]; [rows, k, ...] -> [[k values], ...]
        uint64_t rows = tensor->ndim >= 1 && tensor->shape[0] > 0 ? (uint64_t)tensor->shape[0] : 0;
        uint64_t per_row = tensor->ndim >= 2 && rows ? count / rows : 1;
        if (tensor->ndim < 2)
            rows = count;
        size_t at = 0;
        for (uint64_t r = 0; r < rows && (r + 1) * per_row <= count; r++) {
            if (r && s_put (out, ",", 1))
                goto oom;
            if (tensor->ndim >= 2 && s_put (out, "[", 1))
                goto oom;
            if (s_put_values (out, tensor, r * per_row, per_row, &at))
                goto oom;
            if (tensor->ndim >= 2 && s_put (out, "]", 1))
                goto oom;
        }
    }
    if (s_puts (out, "]}"))
        goto oom;
    return 0;
oom:
    out->size = start;
    return -1;
}

//  A declared shape as a JSON array (-1: the batch, or a dimension the
//  request sets), or NULL on out-of-memory.
static json_t *s_shape_json (const int64_t *shape, int ndim)
{
    json_t *array = json_array ();
    for (int d = 0; array && d < ndim && d < AMAAS_MAX_DIMS; d++)
        if (json_array_append_new (array, json_integer ((json_int_t)shape[d]))) {
            json_decref (array);
            return NULL;
        }
    return array;
}

//  One {name, datatype, shape} of model metadata; NULL on out-of-memory.
static json_t *s_tensor_metadata (const char *name, amaas_dtype_t datatype, const int64_t *shape,
                                  int ndim)
{
    //  "o" steals the shape, also when the pack fails (NULL: the pack fails)
    return json_pack ("{s:s, s:s, s:o}", "name", name, "datatype", amaas_dtype_name (datatype),
                      "shape", s_shape_json (shape, ndim));
}

json_t *infer_model_metadata (const amaas_model_info_t *models, size_t first, size_t last,
                              size_t chosen)
{
    const amaas_model_info_t *model = &models[chosen];
    json_t *inputs = json_array (), *outputs = json_array (), *names = json_array ();
    bool ok = inputs && outputs && names;
    for (size_t v = first; ok && v <= last; v++)
        ok = json_array_append_new (names, json_string (models[v].version)) == 0;
    for (uint32_t k = 0; ok && k < model->n_inputs && k < AMAAS_MAX_INPUTS; k++) {
        const amaas_input_info_t *in = &model->inputs[k];
        ok = json_array_append_new (
                 inputs, s_tensor_metadata (in->name, in->datatype, in->shape, in->ndim)) == 0;
    }
    if (ok && model->n_inputs == 0) {
        //  Workers that did not say: the one input of a version-1 model
        //  (width 0: unknown)
        int64_t shape[2] = {-1, model->width ? (int64_t)model->width : -1};
        ok = json_array_append_new (
                 inputs,
                 s_tensor_metadata (model->input[0] ? model->input : "input",
                                    model->datatype ? model->datatype : AMAAS_FP64, shape, 2)) == 0;
    }
    for (uint32_t k = 0; ok && k < model->n_outputs && k < AMAAS_MAX_OUTPUTS; k++) {
        const amaas_output_info_t *out = &model->outputs[k];
        int64_t shape[2] = {-1, out->width};
        ok = json_array_append_new (
                 outputs, out->ndim
                              ? s_tensor_metadata (out->name, out->datatype, out->shape, out->ndim)
                              : s_tensor_metadata (out->name, out->datatype, shape,
                                                   out->width ? 2 : 1)) == 0;
    }
    if (!ok) {
        json_decref (inputs);
        json_decref (outputs);
        json_decref (names);
        return NULL;
    }
    return json_pack ("{s:s, s:o, s:s, s:o, s:o}", "name", model->name, "versions", names,
                      "platform", "amaas", "inputs", inputs, "outputs", outputs);
}

int infer_encode_error (const char *message, infer_buf_t *out)
{
    size_t start = out->size;
    if (!message)
        message = "";
    if (s_puts (out, "{\"error\":") || s_put_string (out, message, strlen (message)) ||
        s_puts (out, "}")) {
        out->size = start;
        return -1;
    }
    return 0;
}

void infer_buf_free (infer_buf_t *buf)
{
    if (!buf)
        return;
    free (buf->data);
    memset (buf, 0, sizeof *buf);
}
