/*  model.c - load and check an amaas model file.

    A model file (docs/MODEL_FORMAT.md) is one msgpack map.  Every byte of it
    is untrusted.  The loader first walks the raw msgpack once without
    allocating (codec_mp_check): it proves the buffer holds exactly one
    complete object, no deeper than CODEC_MAX_DEPTH, and that no array or map
    declares more elements than there are bytes left, so that msgpack-c's
    unpacker, which allocates the declared element count up front, allocates at
    most a small multiple of the file size.  msgpack-c then unpacks it into a
    zone; str and bin objects point into the buffer without copy.

    The loader then reads the header and the ops with typed getters that say
    which key of which map is missing or has the wrong type, follows the width
    of the current tensor through the ops, and checks every bin against its
    declared shape.  A weight bin whose data is 64-byte aligned in the buffer
    (the exporter pads them so, and mmap maps the file page-aligned) is used in
    place, so worker processes share one copy of the weights in the page
    cache; any other is copied into an aligned allocation.  Names, labels and
    outputs are copied, and the msgpack zone is freed before model_load
    returns.
*/
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>

#include "amaas_defs.h"
#include "codec.h"
#include "graph.h"
#include "model.h"
#include "model_family.h"
#include "utf8.h"

#define S_FORMAT "amaas-model"
#define S_FORMAT_VERSION 1
#define S_FORMAT_VERSION_GRAPH 2 //  graph models (graph.c)
//  The format's limits, shared with amaas-export and the tests (defs/amaas.defs)
#define S_MAX_WIDTH DEFS_WIDTH_MAX             //  widths are 1 .. 2^24
#define S_MAX_OPS DEFS_OPS_MAX                 //  operations in one model
#define S_MAX_KEYS DEFS_KEYS_MAX               //  keys in one map
#define S_MAX_LABEL DEFS_LABEL_MAX             //  bytes in one string label
#define S_NAME_MAX DEFS_NAME_MAX               //  model name
#define S_VERSION_MAX DEFS_VERSION_MAX         //  model version
#define S_TENSOR_NAME_MAX DEFS_TENSOR_NAME_MAX //  input and output names
#define S_ALIGN DEFS_ALIGN                     //  weights are used in place at this alignment
#define S_MAX_PARTS DEFS_PARTS_MAX             //  parts of one columns op
#define S_MAX_NESTING DEFS_NESTING_MAX         //  columns ops inside columns ops

//  One output the header declares
typedef struct {
    char name[S_TENSOR_NAME_MAX + 1]; //  tensor name
    amaas_dtype_t dtype;              //  FP32, FP64, INT64 or BYTES
    size_t width;                     //  k of [-1, k], 0 for [-1]
} s_output_t;

typedef struct s_part_t s_part_t;

//  One op and what the model owns of it
typedef struct {
    model_op_t op;       //  what model_run sees
    void *a_copy;        //  aligned copy of op.a, or NULL when op.a is in place
    void *b_copy;        //  aligned copy of op.b, or NULL
    void *labels;        //  int_labels or bytes_labels, owned
    size_t *offsets;     //  bytes_offset, owned
    model_part_t *parts; //  columns: op.parts, owned
    size_t *columns;     //  select: op.columns, owned
    s_part_t *owned;     //  columns: what each part owns
} s_op_t;

//  What one part of a columns op owns
struct s_part_t {
    size_t *columns;         //  model_part_t.columns
    s_op_t *ops;             //  its ops
    const model_op_t **ptrs; //  model_part_t.ops: &ops[i].op
};

struct model_t {
    char name[S_NAME_MAX + 1];              //  model name
    char version[S_VERSION_MAX + 1];        //  model version
    char input_name[S_TENSOR_NAME_MAX + 1]; //  input tensor name
    amaas_dtype_t dtype;                    //  FP32 or FP64
    size_t input_width;                     //  features per row
    size_t n_outputs;                       //  1 .. MODEL_MAX_OUTPUTS
    s_output_t outputs[MODEL_MAX_OUTPUTS];  //  declared outputs, in order
    size_t n_ops;                           //  1 .. S_MAX_OPS
    s_op_t *ops;                            //  checked ops
    size_t copied;                          //  bytes of weights copied
    void **allocs;                          //  model_parse_alloc's and the getters' copies
    size_t n_allocs;                        //  used entries of allocs
    size_t allocs_cap;                      //  entries allocated
    void *map;                              //  mapping of the file, or NULL
    size_t map_size;                        //  its size
    graph_t *graph;                         //  a graph model (format_version 2), else NULL
};

//  Where the parser is, for error messages
typedef struct {
    const char *label; //  file name or caller's label
    char where[400];   //  "op 3 (dense)", "outputs[1]", "node 2 (gemm 'fc')", or ""
    char *err;         //  caller's message buffer, may be NULL
    size_t err_size;   //  its size
    size_t ops;        //  ops parsed so far, those in parts included
} s_ctx_t;

//  What a family's parse sees (model_family.h)
struct model_parse_t {
    s_ctx_t *ctx;
    model_t *self;
};

//  The families' tables
static const model_family_op_t *const s_families[] = {model_trees_ops, model_svm_ops,
                                                      model_prep_ops};

static const struct {
    const char *name;
    model_op_kind_t kind;
} s_op_names[] = {
    {"scale", MODEL_OP_SCALE},       {"dense", MODEL_OP_DENSE},
    {"identity", MODEL_OP_IDENTITY}, {"relu", MODEL_OP_RELU},
    {"tanh", MODEL_OP_TANH},         {"sigmoid", MODEL_OP_SIGMOID},
    {"softmax", MODEL_OP_SOFTMAX},   {"normalize", MODEL_OP_NORMALIZE},
    {"binary", MODEL_OP_BINARY},     {"output", MODEL_OP_OUTPUT},
    {"argmax", MODEL_OP_ARGMAX},     {"columns", MODEL_OP_COLUMNS},
    {"select", MODEL_OP_SELECT},
};

//  --------------------------------------------------------------------------
//  Messages

//  Write "label: where: message" into the caller's buffer.  Returns -1 so
//  that callers can `return s_fail (...)`.
static int s_fail (s_ctx_t *ctx, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static int s_fail (s_ctx_t *ctx, const char *format, ...)
{
    if (!ctx->err || ctx->err_size == 0)
        return -1;
    int len = snprintf (ctx->err, ctx->err_size, "%s: %s%s", ctx->label, ctx->where,
                        ctx->where[0] ? ": " : "");
    if (len < 0 || (size_t)len >= ctx->err_size)
        return -1;
    va_list args;
    va_start (args, format);
    vsnprintf (ctx->err + len, ctx->err_size - (size_t)len, format, args);
    va_end (args);
    return -1;
}

//  Quote untrusted bytes for a message: at most 40 of them, non-printable
//  ones as \xNN, "..." when cut.  Returns buf.  Cannot fail.
static const char *s_quote (const char *data, size_t size, char *buf, size_t buf_size)
{
    size_t out = 0;
    size_t i;
    for (i = 0; i < size && i < 40; i++) {
        unsigned char c = (unsigned char)data[i];
        if (out + 5 >= buf_size)
            break;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            buf[out++] = (char)c;
        else
            out += (size_t)snprintf (buf + out, buf_size - out, "\\x%02x", c);
    }
    if (i < size && out + 4 < buf_size) {
        memcpy (buf + out, "...", 3);
        out += 3;
    }
    buf[out] = 0;
    return buf;
}

//  Datatype of an output from its name; INVALID for any other.
static amaas_dtype_t s_dtype_from (const char *name, size_t len)
{
    amaas_dtype_t dtype = amaas_dtype_from_name (name, len);
    bool output_type =
        dtype == AMAAS_FP32 || dtype == AMAAS_FP64 || dtype == AMAAS_INT64 || dtype == AMAAS_BYTES;
    return output_type ? dtype : AMAAS_DTYPE_INVALID;
}

//  "[-1]" or "[-1, k]" for messages.  Returns buf.
static const char *s_shape_text (size_t width, char *buf, size_t buf_size)
{
    if (width)
        snprintf (buf, buf_size, "[-1, %zu]", width);
    else
        snprintf (buf, buf_size, "[-1]");
    return buf;
}

//  --------------------------------------------------------------------------
//  Typed getters over proto/mp.h's: each returns 0, or -1 with a message
//  naming the key.

//  Check that obj is a map of at most S_MAX_KEYS str keys, distinct except
//  "pad" (the exporter puts one before each bin).  what names it ("op", ...).
static int s_check_map (s_ctx_t *ctx, const msgpack_object *obj, const char *what)
{
    if (obj->type != MSGPACK_OBJECT_MAP)
        return s_fail (ctx, "%s has type %s, expected map", what, codec_mp_type_name (obj->type));
    const msgpack_object_map *map = &obj->via.map;
    if (map->size > S_MAX_KEYS)
        return s_fail (ctx, "%s has %u keys, at most %d are allowed", what, map->size, S_MAX_KEYS);
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *key = &map->ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR)
            return s_fail (ctx, "%s has a key of type %s, keys must be str", what,
                           codec_mp_type_name (key->type));
        if (codec_mp_str_is (key, "pad"))
            continue;
        for (uint32_t j = 0; j < i; j++) {
            const msgpack_object *other = &map->ptr[j].key;
            if (codec_mp_same_str (other, key)) {
                char quoted[200];
                return s_fail (
                    ctx, "%s has key \"%s\" twice", what,
                    s_quote (key->via.str.ptr, key->via.str.size, quoted, sizeof quoted));
            }
        }
    }
    return 0;
}

//  Value of a required key of the given type.
static const msgpack_object *s_require (s_ctx_t *ctx, const msgpack_object *map, const char *key,
                                        msgpack_object_type type)
{
    const msgpack_object *value = codec_mp_find (map, key);
    if (!value) {
        s_fail (ctx, "missing key \"%s\"", key);
        return NULL;
    }
    if (value->type != type) {
        s_fail (ctx, "\"%s\" has type %s, expected %s", key, codec_mp_type_name (value->type),
                codec_mp_type_name (type));
        return NULL;
    }
    return value;
}

//  A required uint between low and high.
static int s_get_uint (s_ctx_t *ctx, const msgpack_object *map, const char *key, uint64_t low,
                       uint64_t high, uint64_t *value)
{
    const msgpack_object *obj = codec_mp_find (map, key);
    if (obj && obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return s_fail (ctx, "\"%s\" is %lld, expected %llu..%llu", key, (long long)obj->via.i64,
                       (unsigned long long)low, (unsigned long long)high);
    obj = s_require (ctx, map, key, MSGPACK_OBJECT_POSITIVE_INTEGER);
    if (!obj)
        return -1;
    if (codec_mp_uint (obj, low, high, value))
        return s_fail (ctx, "\"%s\" is %llu, expected %llu..%llu", key,
                       (unsigned long long)obj->via.u64, (unsigned long long)low,
                       (unsigned long long)high);
    return 0;
}

//  A width: uint in 1 .. S_MAX_WIDTH.
static int s_get_width (s_ctx_t *ctx, const msgpack_object *map, const char *key, size_t *width)
{
    uint64_t value = 0;
    if (s_get_uint (ctx, map, key, 1, S_MAX_WIDTH, &value))
        return -1;
    *width = (size_t)value;
    return 0;
}

//  Is every byte in [A-Za-z0-9._-] or in extra?
static bool s_name_chars_ok (const char *data, size_t size, const char *extra)
{
    for (size_t i = 0; i < size; i++) {
        char c = data[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || (c && extra && strchr (extra, c));
        if (!ok)
            return false;
    }
    return true;
}

//  A required name: str of 1 .. max bytes of [A-Za-z0-9._-] or extra, copied
//  into buf (max + 1 bytes).
static int s_get_name (s_ctx_t *ctx, const msgpack_object *map, const char *key, size_t max,
                       const char *extra, char *buf)
{
    const msgpack_object *obj = s_require (ctx, map, key, MSGPACK_OBJECT_STR);
    if (!obj)
        return -1;
    const char *data = obj->via.str.ptr;
    size_t size = obj->via.str.size;
    char quoted[200];
    if (size == 0 || size > max)
        return s_fail (ctx, "\"%s\" \"%s\" has %zu bytes, expected 1..%zu", key,
                       s_quote (data, size, quoted, sizeof quoted), size, max);
    if (!s_name_chars_ok (data, size, extra))
        return s_fail (ctx, "\"%s\" \"%s\" has a character outside [A-Za-z0-9._%s-]", key,
                       s_quote (data, size, quoted, sizeof quoted), extra ? extra : "");
    memcpy (buf, data, size);
    buf[size] = 0;
    return 0;
}

//  A required bin of exactly `count` elements of the model datatype, as an
//  aligned pointer: in place when aligned, else copied into *copy_p.  shape
//  says the shape for messages, e.g. "4x10".
static int s_get_weights (s_ctx_t *ctx, model_t *self, const msgpack_object *map, const char *key,
                          size_t rows, size_t cols, const void **data_p, void **copy_p)
{
    const msgpack_object *obj = s_require (ctx, map, key, MSGPACK_OBJECT_BIN);
    if (!obj)
        return -1;
    size_t elem = self->dtype == AMAAS_FP64 ? 8 : 4;
    size_t need;
    if (__builtin_mul_overflow (rows, cols, &need) || __builtin_mul_overflow (need, elem, &need))
        return s_fail (ctx, "%s: %zux%zu %s is too large", key, rows, cols,
                       amaas_dtype_name (self->dtype));
    size_t have = obj->via.bin.size;
    if (have != need) {
        char shape[64];
        if (rows == 1)
            snprintf (shape, sizeof shape, "%zu", cols);
        else
            snprintf (shape, sizeof shape, "%zux%zu", rows, cols);
        return s_fail (ctx, "%s hold%s %zu bytes, %s %s needs %zu", key,
                       strcmp (key, "weights") == 0 ? "" : "s", have, shape,
                       amaas_dtype_name (self->dtype), need);
    }
    const void *data = obj->via.bin.ptr;
    if ((uintptr_t)data % S_ALIGN == 0)
        *data_p = data;
    else {
        void *copy = NULL;
        if (posix_memalign (&copy, S_ALIGN, need))
            return s_fail (ctx, "%s: out of memory copying %zu bytes", key, need);
        memcpy (copy, data, need);
        *copy_p = copy;
        *data_p = copy;
        self->copied += need;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Getters for the families (model_family.h)

//  Keeps ptr to be freed with the model.  Returns 0, or -1 (ptr freed) when
//  out of memory.
static int s_keep (model_t *self, void *ptr)
{
    if (self->n_allocs == self->allocs_cap) {
        size_t cap = self->allocs_cap ? 2 * self->allocs_cap : 16;
        void **allocs = realloc (self->allocs, cap * sizeof (void *));
        if (!allocs) {
            free (ptr);
            return -1;
        }
        self->allocs = allocs;
        self->allocs_cap = cap;
    }
    self->allocs[self->n_allocs++] = ptr;
    return 0;
}

amaas_dtype_t model_parse_dtype (const model_parse_t *p)
{
    return p->self->dtype;
}

int model_parse_fail (model_parse_t *p, const char *format, ...)
{
    char message[512];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    return s_fail (p->ctx, "%s", message);
}

int model_parse_uint (model_parse_t *p, const msgpack_object *map, const char *key, uint64_t low,
                      uint64_t high, uint64_t *value)
{
    return s_get_uint (p->ctx, map, key, low, high, value);
}

int model_parse_number (model_parse_t *p, const msgpack_object *map, const char *key, double *value)
{
    const msgpack_object *obj = codec_mp_find (map, key);
    if (!obj)
        return s_fail (p->ctx, "missing key \"%s\"", key);
    switch (obj->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *value = (double)obj->via.u64; break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *value = (double)obj->via.i64; break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *value = obj->via.f64; break;
    default:
        return s_fail (p->ctx, "\"%s\" has type %s, expected a number", key,
                       codec_mp_type_name (obj->type));
    }
    if (!isfinite (*value))
        return s_fail (p->ctx, "\"%s\" is %g, expected a finite number", key, *value);
    return 0;
}

int model_parse_str (model_parse_t *p, const msgpack_object *map, const char *key,
                     const char **data, size_t *size)
{
    const msgpack_object *obj = s_require (p->ctx, map, key, MSGPACK_OBJECT_STR);
    if (!obj)
        return -1;
    *data = obj->via.str.ptr;
    *size = obj->via.str.size;
    return 0;
}

void *model_parse_alloc (model_parse_t *p, size_t size)
{
    void *ptr = NULL;
    size_t rounded;
    if (size == 0 || __builtin_add_overflow (size, S_ALIGN - 1, &rounded)) {
        s_fail (p->ctx, "cannot allocate %zu bytes", size);
        return NULL;
    }
    rounded -= rounded % S_ALIGN;
    if (posix_memalign (&ptr, S_ALIGN, rounded) || s_keep (p->self, ptr)) {
        s_fail (p->ctx, "out of memory for %zu bytes", size);
        return NULL;
    }
    memset (ptr, 0, rounded);
    return ptr;
}

//  A bin of count elements of elem bytes, aligned in place or copied.
static int s_get_array (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                        size_t elem, const char *type, const void **data_p)
{
    static const uint64_t empty[8] __attribute__ ((aligned (64)));
    const msgpack_object *obj = s_require (p->ctx, map, key, MSGPACK_OBJECT_BIN);
    if (!obj)
        return -1;
    size_t need;
    if (__builtin_mul_overflow (count, elem, &need))
        return s_fail (p->ctx, "\"%s\": %zu %s are too many", key, count, type);
    if (obj->via.bin.size != need)
        return s_fail (p->ctx, "\"%s\" holds %u bytes, %zu %s need %zu", key, obj->via.bin.size,
                       count, type, need);
    const void *data = obj->via.bin.ptr;
    if (need == 0)
        *data_p = empty;
    else if ((uintptr_t)data % S_ALIGN == 0)
        *data_p = data;
    else {
        void *copy = model_parse_alloc (p, need);
        if (!copy)
            return -1;
        memcpy (copy, data, need);
        p->self->copied += need;
        *data_p = copy;
    }
    return 0;
}

int model_parse_floats (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                        const void **data)
{
    bool fp64 = p->self->dtype == AMAAS_FP64;
    return s_get_array (p, map, key, count, fp64 ? 8 : 4, fp64 ? "FP64" : "FP32", data);
}

int model_parse_int32 (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                       const int32_t **data)
{
    return s_get_array (p, map, key, count, 4, "INT32", (const void **)data);
}

int model_parse_uint32 (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                        const uint32_t **data)
{
    return s_get_array (p, map, key, count, 4, "UINT32", (const void **)data);
}

int model_parse_bytes (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                       const uint8_t **data)
{
    return s_get_array (p, map, key, count, 1, "bytes", (const void **)data);
}

int model_parse_int64 (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                       const int64_t **data)
{
    return s_get_array (p, map, key, count, 8, "INT64", (const void **)data);
}

int model_parse_bools (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                       const uint8_t **data)
{
    if (s_get_array (p, map, key, count, 1, "BOOL", (const void **)data))
        return -1;
    for (size_t i = 0; i < count; i++)
        if ((*data)[i] > 1)
            return s_fail (p->ctx, "\"%s\"[%zu] is %u, a BOOL is 0 or 1", key, i, (*data)[i]);
    return 0;
}

int model_parse_map (model_parse_t *p, const msgpack_object *obj, const char *what)
{
    return s_check_map (p->ctx, obj, what);
}

void model_parse_where (model_parse_t *p, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (p->ctx->where, sizeof p->ctx->where, format, args);
    va_end (args);
}

const char *model_parse_quote (const char *data, size_t size, char *buf, size_t buf_size)
{
    return s_quote (data, size, buf, buf_size);
}

//  --------------------------------------------------------------------------
//  Header

static int s_parse_input (s_ctx_t *ctx, model_t *self, const msgpack_object *top)
{
    const msgpack_object *input = s_require (ctx, top, "input", MSGPACK_OBJECT_MAP);
    if (!input)
        return -1;
    snprintf (ctx->where, sizeof ctx->where, "input");
    if (s_check_map (ctx, input, "input") ||
        s_get_name (ctx, input, "name", S_TENSOR_NAME_MAX, NULL, self->input_name) ||
        s_get_width (ctx, input, "width", &self->input_width))
        return -1;
    ctx->where[0] = 0;
    return 0;
}

static int s_parse_outputs (s_ctx_t *ctx, model_t *self, const msgpack_object *top)
{
    const msgpack_object *outputs = s_require (ctx, top, "outputs", MSGPACK_OBJECT_ARRAY);
    if (!outputs)
        return -1;
    uint32_t count = outputs->via.array.size;
    if (count < 1 || count > MODEL_MAX_OUTPUTS)
        return s_fail (ctx, "\"outputs\" has %u entries, expected 1..%d", count, MODEL_MAX_OUTPUTS);
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *entry = &outputs->via.array.ptr[i];
        s_output_t *output = &self->outputs[i];
        snprintf (ctx->where, sizeof ctx->where, "outputs[%u]", i);
        if (s_check_map (ctx, entry, "output") ||
            s_get_name (ctx, entry, "name", S_TENSOR_NAME_MAX, NULL, output->name))
            return -1;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp (self->outputs[j].name, output->name) == 0)
                return s_fail (ctx, "name \"%s\" is also the name of outputs[%u]", output->name, j);

        const msgpack_object *dtype = s_require (ctx, entry, "datatype", MSGPACK_OBJECT_STR);
        if (!dtype)
            return -1;
        output->dtype = s_dtype_from (dtype->via.str.ptr, dtype->via.str.size);
        if (output->dtype == AMAAS_DTYPE_INVALID) {
            char quoted[200];
            return s_fail (
                ctx, "datatype \"%s\" is not FP32, FP64, INT64 or BYTES",
                s_quote (dtype->via.str.ptr, dtype->via.str.size, quoted, sizeof quoted));
        }

        const msgpack_object *shape = s_require (ctx, entry, "shape", MSGPACK_OBJECT_ARRAY);
        if (!shape)
            return -1;
        const msgpack_object_array *dims = &shape->via.array;
        if (dims->size < 1 || dims->size > 2)
            return s_fail (ctx, "shape has %u dimensions, expected [-1] or [-1, k]", dims->size);
        if (dims->ptr[0].type != MSGPACK_OBJECT_NEGATIVE_INTEGER || dims->ptr[0].via.i64 != -1)
            return s_fail (ctx, "shape[0] must be -1 (the batch)");
        output->width = 0;
        if (dims->size == 2) {
            const msgpack_object *k = &dims->ptr[1];
            if (k->type != MSGPACK_OBJECT_POSITIVE_INTEGER || k->via.u64 < 1 ||
                k->via.u64 > S_MAX_WIDTH)
                return s_fail (ctx, "shape[1] must be a uint in 1..%u", S_MAX_WIDTH);
            output->width = (size_t)k->via.u64;
            if (output->dtype == AMAAS_INT64 || output->dtype == AMAAS_BYTES)
                return s_fail (ctx, "%s labels have shape [-1], not [-1, %zu]",
                               amaas_dtype_name (output->dtype), output->width);
        }
    }
    self->n_outputs = count;
    ctx->where[0] = 0;
    return 0;
}

static int s_parse_header (s_ctx_t *ctx, model_t *self, const msgpack_object *top)
{
    char quoted[200];
    if (s_check_map (ctx, top, "the model"))
        return -1;

    const msgpack_object *format = s_require (ctx, top, "format", MSGPACK_OBJECT_STR);
    if (!format)
        return -1;
    if (!codec_mp_str_is (format, S_FORMAT))
        return s_fail (ctx, "format is \"%s\", expected \"" S_FORMAT "\"",
                       s_quote (format->via.str.ptr, format->via.str.size, quoted, sizeof quoted));
    const msgpack_object *version =
        s_require (ctx, top, "format_version", MSGPACK_OBJECT_POSITIVE_INTEGER);
    if (!version)
        return -1;
    bool graph = version->via.u64 == S_FORMAT_VERSION_GRAPH;
    if (version->via.u64 != S_FORMAT_VERSION && !graph)
        return s_fail (ctx, "format_version %llu is not supported (this worker reads %d and %d)",
                       (unsigned long long)version->via.u64, S_FORMAT_VERSION,
                       S_FORMAT_VERSION_GRAPH);

    if (s_get_name (ctx, top, "name", S_NAME_MAX, NULL, self->name) ||
        s_get_name (ctx, top, "version", S_VERSION_MAX, "+", self->version))
        return -1;

    const msgpack_object *dtype = s_require (ctx, top, "datatype", MSGPACK_OBJECT_STR);
    if (!dtype)
        return -1;
    if (codec_mp_str_is (dtype, "FP32"))
        self->dtype = AMAAS_FP32;
    else if (codec_mp_str_is (dtype, "FP64") && !graph)
        self->dtype = AMAAS_FP64;
    else
        return s_fail (ctx, "datatype \"%s\" is not %s",
                       s_quote (dtype->via.str.ptr, dtype->via.str.size, quoted, sizeof quoted),
                       graph ? "FP32 (graphs compute in FP32)" : "FP32 or FP64");

    const msgpack_object *source = codec_mp_find (top, "source");
    if (source && source->type != MSGPACK_OBJECT_STR)
        return s_fail (ctx, "\"source\" has type %s, expected str",
                       codec_mp_type_name (source->type));

    if (graph) {
        model_parse_t parse = {ctx, self};
        self->graph = graph_parse (&parse, top);
        ctx->where[0] = 0;
        return self->graph ? 0 : -1;
    }
    return s_parse_input (ctx, self, top) || s_parse_outputs (ctx, self, top) ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Ops

//  The current tensor while the ops are checked
typedef struct {
    size_t width;         //  columns, 0 after argmax
    amaas_dtype_t labels; //  INT64 or BYTES after argmax, else INVALID
    size_t outputs;       //  output ops seen
} s_tensor_t;

static int s_parse_argmax (s_ctx_t *ctx, s_op_t *op, const msgpack_object *map, size_t width)
{
    const msgpack_object *labels = s_require (ctx, map, "labels", MSGPACK_OBJECT_ARRAY);
    if (!labels)
        return -1;
    const msgpack_object_array *array = &labels->via.array;
    if (array->size != width)
        return s_fail (ctx, "%u labels for a width of %zu", array->size, width);
    bool strings = array->ptr[0].type == MSGPACK_OBJECT_STR;

    if (!strings) {
        int64_t *values = malloc (width * sizeof (int64_t));
        if (!values)
            return s_fail (ctx, "out of memory");
        op->labels = values;
        for (size_t i = 0; i < width; i++) {
            const msgpack_object *label = &array->ptr[i];
            if (label->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                values[i] = label->via.i64;
            else if (label->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                     label->via.u64 <= (uint64_t)INT64_MAX)
                values[i] = (int64_t)label->via.u64;
            else if (label->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                return s_fail (ctx, "label %zu is %llu, above the INT64 range", i,
                               (unsigned long long)label->via.u64);
            else
                return s_fail (ctx, "label %zu has type %s, labels[0] is an int so all must be", i,
                               codec_mp_type_name (label->type));
        }
        op->op.labels_dtype = AMAAS_INT64;
        op->op.int_labels = values;
        return 0;
    }

    //  String labels: encode each as 4-byte LE length + bytes, once
    size_t total = 0;
    for (size_t i = 0; i < width; i++) {
        const msgpack_object *label = &array->ptr[i];
        if (label->type != MSGPACK_OBJECT_STR)
            return s_fail (ctx, "label %zu has type %s, labels[0] is a str so all must be", i,
                           codec_mp_type_name (label->type));
        if (label->via.str.size > S_MAX_LABEL)
            return s_fail (ctx, "label %zu has %u bytes, at most %d are allowed", i,
                           label->via.str.size, S_MAX_LABEL);
        if (!utf8_valid ((const uint8_t *)label->via.str.ptr, label->via.str.size)) {
            char quoted[200];
            return s_fail (
                ctx, "label %zu \"%s\" is not valid UTF-8", i,
                s_quote (label->via.str.ptr, label->via.str.size, quoted, sizeof quoted));
        }
        total += 4 + label->via.str.size; //  bounded by the file size
    }
    uint8_t *bytes = malloc (total);
    size_t *offsets = malloc ((width + 1) * sizeof (size_t));
    op->labels = bytes;
    op->offsets = offsets;
    if (!bytes || !offsets)
        return s_fail (ctx, "out of memory");
    size_t pos = 0;
    op->op.bytes_max = 0;
    for (size_t i = 0; i < width; i++) {
        const msgpack_object_str *label = &array->ptr[i].via.str;
        uint32_t size = label->size;
        offsets[i] = pos;
        bytes[pos++] = (uint8_t)size;
        bytes[pos++] = (uint8_t)(size >> 8);
        bytes[pos++] = (uint8_t)(size >> 16);
        bytes[pos++] = (uint8_t)(size >> 24);
        if (size)
            memcpy (bytes + pos, label->ptr, size);
        pos += size;
        if (4 + (size_t)size > op->op.bytes_max)
            op->op.bytes_max = 4 + (size_t)size;
    }
    offsets[width] = pos;
    op->op.labels_dtype = AMAAS_BYTES;
    op->op.bytes_labels = bytes;
    op->op.bytes_offset = offsets;
    return 0;
}

static int s_parse_output (s_ctx_t *ctx, model_t *self, s_op_t *op, const msgpack_object *map,
                           s_tensor_t *tensor)
{
    char name[S_TENSOR_NAME_MAX + 1];
    if (s_get_name (ctx, map, "name", S_TENSOR_NAME_MAX, NULL, name))
        return -1;
    const msgpack_object *flatten = codec_mp_find (map, "flatten");
    if (flatten && flatten->type != MSGPACK_OBJECT_BOOLEAN)
        return s_fail (ctx, "\"flatten\" has type %s, expected bool",
                       codec_mp_type_name (flatten->type));
    op->op.flatten = flatten && flatten->via.boolean;
    if (op->op.flatten && tensor->width > 1)
        return s_fail (ctx, "output \"%s\": flatten needs a width of 1, the width is %zu", name,
                       tensor->width);

    amaas_dtype_t dtype = tensor->width ? self->dtype : tensor->labels;
    size_t width = tensor->width && !op->op.flatten ? tensor->width : 0;
    if (tensor->outputs >= self->n_outputs)
        return s_fail (ctx, "output \"%s\" is not declared in outputs (%zu declared)", name,
                       self->n_outputs);
    const s_output_t *declared = &self->outputs[tensor->outputs];
    if (strcmp (declared->name, name) != 0)
        return s_fail (ctx, "output \"%s\" comes where outputs[%zu] declares \"%s\"", name,
                       tensor->outputs, declared->name);
    if (declared->dtype != dtype || declared->width != width) {
        char have[40], want[40];
        return s_fail (ctx, "output \"%s\" emits %s %s, outputs[%zu] declares %s %s", name,
                       amaas_dtype_name (dtype), s_shape_text (width, have, sizeof have),
                       tensor->outputs, amaas_dtype_name (declared->dtype),
                       s_shape_text (declared->width, want, sizeof want));
    }
    op->op.output = tensor->outputs++;
    return 0;
}

static int s_parse_op (s_ctx_t *ctx, model_t *self, s_op_t *op, const char *where,
                       const msgpack_object *map, s_tensor_t *tensor, int depth);

//  The family op called name, or NULL
static const model_family_op_t *s_family_find (const msgpack_object *name)
{
    for (size_t f = 0; f < sizeof s_families / sizeof s_families[0]; f++)
        for (const model_family_op_t *entry = s_families[f]; entry->name; entry++)
            if (codec_mp_str_is (name, entry->name))
                return entry;
    return NULL;
}

static int s_parse_family (s_ctx_t *ctx, model_t *self, s_op_t *op, const msgpack_object *map,
                           s_tensor_t *tensor)
{
    const model_family_op_t *family = op->op.family;
    model_parse_t parse = {ctx, self};
    size_t out_width = 0;
    void *ext = NULL;
    size_t work = 0;
    int rc = family->parse (&parse, map, tensor->width, &out_width, &ext, &work);
    op->op.ext = ext;
    if (rc)
        return -1;
    if (out_width < 1 || out_width > S_MAX_WIDTH)
        return s_fail (ctx, "gives a width of %zu, expected 1..%u", out_width, S_MAX_WIDTH);
    if (family->in_place && out_width != tensor->width)
        return s_fail (ctx, "works in place but changes the width");
    op->op.work = work;
    tensor->width = out_width;
    return 0;
}

//  A required "columns": array of 1 .. 2^24 uints below width, into a new
//  array *columns_p (owned by the caller once set) of *count entries.
static int s_get_columns (s_ctx_t *ctx, const msgpack_object *map, size_t width, size_t **columns_p,
                          size_t *count)
{
    const msgpack_object *columns = s_require (ctx, map, "columns", MSGPACK_OBJECT_ARRAY);
    if (!columns)
        return -1;
    uint32_t n = columns->via.array.size;
    if (n < 1 || n > S_MAX_WIDTH)
        return s_fail (ctx, "\"columns\" has %u entries, expected 1..%u", n, S_MAX_WIDTH);
    size_t *out = malloc (n * sizeof (size_t));
    *columns_p = out;
    if (!out)
        return s_fail (ctx, "out of memory");
    for (uint32_t j = 0; j < n; j++) {
        const msgpack_object *column = &columns->via.array.ptr[j];
        if (column->type != MSGPACK_OBJECT_POSITIVE_INTEGER || column->via.u64 >= width)
            return s_fail (ctx, "columns[%u] must be a uint below the width %zu", j, width);
        out[j] = (size_t)column->via.u64;
    }
    *count = n;
    return 0;
}

//  A columns op: {"parts": [{"columns": [i, ...], "ops": [...]}, ...]}
static int s_parse_columns (s_ctx_t *ctx, model_t *self, s_op_t *op, const msgpack_object *map,
                            s_tensor_t *tensor, int depth)
{
    if (depth >= S_MAX_NESTING)
        return s_fail (ctx, "columns ops nest deeper than %d", S_MAX_NESTING);
    const msgpack_object *parts = s_require (ctx, map, "parts", MSGPACK_OBJECT_ARRAY);
    if (!parts)
        return -1;
    uint32_t count = parts->via.array.size;
    if (count < 1 || count > S_MAX_PARTS)
        return s_fail (ctx, "\"parts\" has %u entries, expected 1..%d", count, S_MAX_PARTS);
    op->parts = calloc (count, sizeof (model_part_t));
    op->owned = calloc (count, sizeof (s_part_t));
    if (!op->parts || !op->owned)
        return s_fail (ctx, "out of memory");
    op->op.parts = op->parts;
    op->op.n_parts = count;
    char where[sizeof ctx->where];
    snprintf (where, sizeof where, "%s", ctx->where);
    size_t total = 0;
    size_t work = 0;
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *entry = &parts->via.array.ptr[i];
        model_part_t *part = &op->parts[i];
        s_part_t *owned = &op->owned[i];
        snprintf (ctx->where, sizeof ctx->where, "%.100s: parts[%u]", where, i);
        if (s_check_map (ctx, entry, "part"))
            return -1;
        const msgpack_object *columns = s_require (ctx, entry, "columns", MSGPACK_OBJECT_ARRAY);
        if (!columns)
            return -1;
        uint32_t n = columns->via.array.size;
        if (n < 1 || n > S_MAX_WIDTH)
            return s_fail (ctx, "\"columns\" has %u entries, expected 1..%u", n, S_MAX_WIDTH);
        owned->columns = malloc (n * sizeof (size_t));
        if (!owned->columns)
            return s_fail (ctx, "out of memory");
        for (uint32_t j = 0; j < n; j++) {
            const msgpack_object *column = &columns->via.array.ptr[j];
            if (column->type != MSGPACK_OBJECT_POSITIVE_INTEGER || column->via.u64 >= tensor->width)
                return s_fail (ctx, "columns[%u] must be a uint below the width %zu", j,
                               tensor->width);
            owned->columns[j] = (size_t)column->via.u64;
        }
        part->columns = owned->columns;
        part->n_columns = n;
        const msgpack_object *ops = s_require (ctx, entry, "ops", MSGPACK_OBJECT_ARRAY);
        if (!ops)
            return -1;
        uint32_t n_ops = ops->via.array.size;
        if (n_ops > S_MAX_OPS)
            return s_fail (ctx, "\"ops\" has %u entries, at most %d", n_ops, S_MAX_OPS);
        s_tensor_t sub = {n, AMAAS_DTYPE_INVALID, tensor->outputs};
        if (n_ops) {
            owned->ops = calloc (n_ops, sizeof (s_op_t));
            owned->ptrs = calloc (n_ops, sizeof (model_op_t *));
            if (!owned->ops || !owned->ptrs)
                return s_fail (ctx, "out of memory");
            part->n_ops = n_ops;
            part->ops = owned->ptrs;
            char part_where[sizeof ctx->where];
            snprintf (part_where, sizeof part_where, "%s", ctx->where);
            for (uint32_t j = 0; j < n_ops; j++) {
                char op_where[sizeof ctx->where];
                snprintf (op_where, sizeof op_where, "%.100s: op %u", part_where, j);
                if (s_parse_op (ctx, self, &owned->ops[j], op_where, &ops->via.array.ptr[j], &sub,
                                depth + 1))
                    return -1;
                owned->ptrs[j] = &owned->ops[j].op;
                work += owned->ops[j].op.work;
            }
        }
        part->width = sub.width;
        tensor->outputs = sub.outputs; //  a part's output ops emit model outputs in order
        total += sub.width;
        if (total > S_MAX_WIDTH)
            return s_fail (ctx, "the parts give more than %u columns", S_MAX_WIDTH);
    }
    snprintf (ctx->where, sizeof ctx->where, "%s", where);
    op->op.work = work + total;
    tensor->width = total;
    return 0;
}

//  Check one op and fill *op; follows the current tensor.  where names it
//  for messages ("op 3"); depth is 0 at the top level, 1 + that of the
//  columns op whose part holds it.
static int s_parse_op (s_ctx_t *ctx, model_t *self, s_op_t *op, const char *where,
                       const msgpack_object *map, s_tensor_t *tensor, int depth)
{
    snprintf (ctx->where, sizeof ctx->where, "%s", where);
    if (++ctx->ops > S_MAX_OPS)
        return s_fail (ctx, "the model has more than %d ops, counting those in parts", S_MAX_OPS);
    if (s_check_map (ctx, map, "op"))
        return -1;
    const msgpack_object *kind = s_require (ctx, map, "op", MSGPACK_OBJECT_STR);
    if (!kind)
        return -1;
    size_t i;
    for (i = 0; i < sizeof s_op_names / sizeof s_op_names[0]; i++)
        if (codec_mp_str_is (kind, s_op_names[i].name))
            break;
    if (i < sizeof s_op_names / sizeof s_op_names[0]) {
        op->op.kind = s_op_names[i].kind;
        op->op.name = s_op_names[i].name;
    } else if ((op->op.family = s_family_find (kind))) {
        op->op.kind = MODEL_OP_FAMILY;
        op->op.name = op->op.family->name;
    } else {
        char quoted[200];
        return s_fail (ctx, "unknown op \"%s\"",
                       s_quote (kind->via.str.ptr, kind->via.str.size, quoted, sizeof quoted));
    }
    op->op.labels_dtype = AMAAS_DTYPE_INVALID;
    op->op.depth = depth;
    snprintf (ctx->where, sizeof ctx->where, "%s (%s)", where, op->op.name);

    if (tensor->width == 0 && op->op.kind != MODEL_OP_OUTPUT)
        return s_fail (ctx, "only output ops may follow argmax");
    if (depth > 0 && op->op.kind == MODEL_OP_ARGMAX)
        return s_fail (ctx, "argmax may not be in a part of a columns op");
    op->op.in_width = tensor->width;
    op->op.work = tensor->width + 1;
    size_t width = 0;

    switch (op->op.kind) {
    case MODEL_OP_SCALE:
        if (s_get_width (ctx, map, "width", &width))
            return -1;
        if (width != tensor->width)
            return s_fail (ctx, "width %zu does not match the current width %zu", width,
                           tensor->width);
        //  a scale of 0 divides as IEEE 754 says: the format allows it
        if (s_get_weights (ctx, self, map, "mean", 1, width, &op->op.a, &op->a_copy) ||
            s_get_weights (ctx, self, map, "scale", 1, width, &op->op.b, &op->b_copy))
            return -1;
        break;
    case MODEL_OP_DENSE:
        if (s_get_width (ctx, map, "in", &width))
            return -1;
        if (width != tensor->width)
            return s_fail (ctx, "in %zu does not match the current width %zu", width,
                           tensor->width);
        if (s_get_width (ctx, map, "out", &width) ||
            s_get_weights (ctx, self, map, "weights", tensor->width, width, &op->op.a,
                           &op->a_copy) ||
            s_get_weights (ctx, self, map, "bias", 1, width, &op->op.b, &op->b_copy))
            return -1;
        op->op.work = tensor->width * width;
        tensor->width = width;
        break;
    case MODEL_OP_BINARY:
        if (tensor->width != 1)
            return s_fail (ctx, "binary needs a width of 1, the width is %zu", tensor->width);
        tensor->width = 2;
        break;
    case MODEL_OP_OUTPUT:
        if (s_parse_output (ctx, self, op, map, tensor))
            return -1;
        break;
    case MODEL_OP_ARGMAX:
        if (s_parse_argmax (ctx, op, map, tensor->width))
            return -1;
        tensor->width = 0;
        tensor->labels = op->op.labels_dtype;
        break;
    case MODEL_OP_COLUMNS:
        if (s_parse_columns (ctx, self, op, map, tensor, depth))
            return -1;
        break;
    case MODEL_OP_SELECT:
        if (s_get_columns (ctx, map, tensor->width, &op->columns, &width))
            return -1;
        op->op.columns = op->columns;
        tensor->width = width;
        break;
    case MODEL_OP_FAMILY:
        if (s_parse_family (ctx, self, op, map, tensor))
            return -1;
        break;
    default: //  element-wise, no fields
        break;
    }
    op->op.out_width = tensor->width;
    return 0;
}

static int s_parse_ops (s_ctx_t *ctx, model_t *self, const msgpack_object *top)
{
    const msgpack_object *ops = s_require (ctx, top, "ops", MSGPACK_OBJECT_ARRAY);
    if (!ops)
        return -1;
    uint32_t count = ops->via.array.size;
    if (count < 1 || count > S_MAX_OPS)
        return s_fail (ctx, "\"ops\" has %u entries, expected 1..%d", count, S_MAX_OPS);
    self->ops = calloc (count, sizeof (s_op_t));
    if (!self->ops)
        return s_fail (ctx, "out of memory");
    self->n_ops = count;

    s_tensor_t tensor = {self->input_width, AMAAS_DTYPE_INVALID, 0};
    for (size_t i = 0; i < count; i++) {
        char where[32];
        snprintf (where, sizeof where, "op %zu", i);
        if (s_parse_op (ctx, self, &self->ops[i], where, &ops->via.array.ptr[i], &tensor, 0))
            return -1;
    }
    ctx->where[0] = 0;
    if (tensor.outputs < self->n_outputs)
        return s_fail (ctx, "outputs[%zu] \"%s\" is declared but no output op emits it",
                       tensor.outputs, self->outputs[tensor.outputs].name);
    return 0;
}

//  Parse a whole model from data.  On error, NULL is returned with a message.
static model_t *s_parse (const void *data, size_t size, const char *label, char *err,
                         size_t err_size)
{
    s_ctx_t ctx = {label ? label : "model", "", err, err_size, 0};
    model_t *self = NULL;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);

    if (err && err_size)
        err[0] = 0;
    if (!data || size == 0) {
        s_fail (&ctx, "empty file");
        goto err;
    }
    char why[256];
    if (codec_mp_check (data, size, why, sizeof why)) {
        s_fail (&ctx, "%s", why);
        goto err;
    }
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (&unpacked, data, size, &offset);
    if (rc != MSGPACK_UNPACK_SUCCESS) {
        s_fail (&ctx, "msgpack decoder failed (%d): out of memory", (int)rc);
        goto err;
    }
    self = calloc (1, sizeof (model_t));
    if (!self) {
        s_fail (&ctx, "out of memory");
        goto err;
    }
    if (s_parse_header (&ctx, self, &unpacked.data) ||
        (!self->graph && s_parse_ops (&ctx, self, &unpacked.data)))
        goto err;
    msgpack_unpacked_destroy (&unpacked);
    return self;

err:
    msgpack_unpacked_destroy (&unpacked);
    model_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Public API

model_t *model_load_buffer (const void *data, size_t size, const char *label, char *err,
                            size_t err_size)
{
    return s_parse (data, size, label, err, err_size);
}

model_t *model_load (const char *path, char *err, size_t err_size)
{
    s_ctx_t ctx = {path ? path : "(null)", "", err, err_size, 0};
    void *map = MAP_FAILED;
    size_t size = 0;
    int fd = -1;
    if (!path) {
        s_fail (&ctx, "no path given");
        goto err;
    }
    fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s_fail (&ctx, "cannot open: %s", strerror (errno));
        goto err;
    }
    struct stat st;
    if (fstat (fd, &st)) {
        s_fail (&ctx, "cannot stat: %s", strerror (errno));
        goto err;
    }
    if (!S_ISREG (st.st_mode)) {
        s_fail (&ctx, "not a regular file");
        goto err;
    }
    if (st.st_size == 0) {
        s_fail (&ctx, "empty file");
        goto err;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        s_fail (&ctx, "file too large to map");
        goto err;
    }
    size = (size_t)st.st_size;
    map = mmap (NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        s_fail (&ctx, "cannot map %zu bytes: %s", size, strerror (errno));
        goto err;
    }
    close (fd);
    fd = -1;

    model_t *self = s_parse (map, size, path, err, err_size);
    if (!self)
        goto err;
    self->map = map;
    self->map_size = size;
    return self;

err:
    if (map != MAP_FAILED)
        munmap (map, size);
    if (fd >= 0)
        close (fd);
    return NULL;
}

//  Frees ops[0 .. count) and what they own, then ops.  Cannot fail.
static void s_free_ops (s_op_t *ops, size_t count)
{
    if (!ops)
        return;
    for (size_t i = 0; i < count; i++) {
        s_op_t *op = &ops[i];
        free (op->a_copy);
        free (op->b_copy);
        free (op->labels);
        free (op->offsets);
        free (op->columns);
        for (size_t j = 0; op->owned && j < op->op.n_parts; j++) {
            s_free_ops (op->owned[j].ops, op->parts[j].n_ops);
            free (op->owned[j].columns);
            free (op->owned[j].ptrs);
        }
        free (op->owned);
        free (op->parts);
    }
    free (ops);
}

void model_destroy (model_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    model_t *self = *self_p;
    s_free_ops (self->ops, self->n_ops);
    graph_destroy (&self->graph);
    for (size_t i = 0; i < self->n_allocs; i++)
        free (self->allocs[i]);
    free (self->allocs);
    if (self->map)
        munmap (self->map, self->map_size);
    free (self);
    *self_p = NULL;
}

const char *model_name (const model_t *self)
{
    return self->name;
}

const char *model_version (const model_t *self)
{
    return self->version;
}

amaas_dtype_t model_dtype (const model_t *self)
{
    return self->dtype;
}

//  Product of io's dimensions after the batch when every one is fixed and
//  the product is at most 2^31, else 0.  Cannot fail.
static size_t s_graph_width (const graph_io_t *io)
{
    uint64_t width = 1;
    for (int d = 1; d < io->ndim; d++) {
        if (io->dims[d] < 0)
            return 0;
        width *= (uint64_t)io->dims[d]; //  each at most 2^24: no overflow before the check
        if (width > (uint64_t)1 << 31)
            return 0;
    }
    return (size_t)width;
}

size_t model_input_width (const model_t *self)
{
    if (self->graph)
        return s_graph_width (graph_input (self->graph, 0));
    return self->input_width;
}

const char *model_input_name (const model_t *self)
{
    if (self->graph)
        return graph_input (self->graph, 0)->name;
    return self->input_name;
}

size_t model_output_count (const model_t *self)
{
    if (self->graph)
        return graph_output_count (self->graph);
    return self->n_outputs;
}

const char *model_output_name (const model_t *self, size_t index)
{
    if (index >= model_output_count (self))
        return NULL;
    if (self->graph)
        return graph_output (self->graph, index)->name;
    return self->outputs[index].name;
}

amaas_dtype_t model_output_dtype (const model_t *self, size_t index)
{
    if (index >= model_output_count (self))
        return AMAAS_DTYPE_INVALID;
    if (self->graph)
        return graph_output (self->graph, index)->datatype;
    return self->outputs[index].dtype;
}

size_t model_output_width (const model_t *self, size_t index)
{
    if (index >= model_output_count (self))
        return 0;
    if (self->graph) {
        const graph_io_t *output = graph_output (self->graph, index);
        return output->ndim == 2 ? s_graph_width (output) : 0;
    }
    return self->outputs[index].width;
}

const graph_t *model_graph (const model_t *self)
{
    return self->graph;
}

size_t model_weight_bytes_copied (const model_t *self)
{
    return self->copied;
}

size_t model_op_count (const model_t *self)
{
    return self->n_ops;
}

const model_op_t *model_op (const model_t *self, size_t index)
{
    return index < self->n_ops ? &self->ops[index].op : NULL;
}

size_t model_mapped_bytes (const model_t *self)
{
    return self->map ? self->map_size : 0;
}
