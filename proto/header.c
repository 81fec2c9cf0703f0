/*  header.c - the header of an amaas message: encode, decode, reset.

    Every field is a line of CODEC_HEADER_FIELDS (header.h), and every kind
    of field (u32, u64, str, text, text_as, names, models) is three small
    functions here: s_pack_KIND, s_decode_KIND and s_reset_KIND.  Encoding,
    decoding and reset expand the table into calls of those, so they stay
    as fast as the hand-written code they replace and cannot forget a field.

    Encoding packs the present fields, in table order, with msgpack-c's
    packer, checking every result.  Decoding proves the bytes bounded
    (codec_mp_unpack), then maps each known key onto its member, checking
    type and range; unknown keys are ignored, so that peers can add fields.
*/
#include "header.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp.h"

//  --------------------------------------------------------------------------
//  Setters

void codec_header_set_model (codec_header_t *self, const char *model)
{
    assert (self);
    snprintf (self->model, sizeof self->model, "%s", model ? model : "");
    self->fields |= HDR_MODEL;
}

void codec_header_set_version (codec_header_t *self, const char *version)
{
    assert (self);
    snprintf (self->version, sizeof self->version, "%s", version ? version : "");
    self->fields |= HDR_VERSION;
}

void codec_header_set_message (codec_header_t *self, const char *fmt, ...)
{
    assert (self);
    va_list args;
    va_start (args, fmt);
    vsnprintf (self->message, sizeof self->message, fmt, args);
    va_end (args);
    self->fields |= HDR_MESSAGE;
}

//  --------------------------------------------------------------------------
//  Kinds: each packs, decodes and resets a member at `at` of codec_header_t.
//  Pack functions return 0, -1 on out-of-memory.  Decode functions return
//  0; -1 on a bad value, and the caller words the message from the table's
//  `want`; or -2 when they worded it themselves (an entry of names or
//  models, out of memory).

static int s_sbuffer_write (void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write ((msgpack_sbuffer *)data, buf, len);
}

static int s_pack_bytes (msgpack_packer *pk, const char *s, size_t len)
{
    return msgpack_pack_str (pk, len) || msgpack_pack_str_body (pk, s, len) ? -1 : 0;
}

static int s_pack_cstr (msgpack_packer *pk, const char *s, size_t size)
{
    return s_pack_bytes (pk, s, strnlen (s, size));
}

//  u32, u64

static int s_pack_u32 (msgpack_packer *pk, const codec_header_t *self, const void *at, size_t high)
{
    (void)self, (void)high;
    return msgpack_pack_uint32 (pk, *(const uint32_t *)at) ? -1 : 0;
}

static int s_pack_u64 (msgpack_packer *pk, const codec_header_t *self, const void *at, size_t high)
{
    (void)self, (void)high;
    return msgpack_pack_uint64 (pk, *(const uint64_t *)at) ? -1 : 0;
}

static int s_decode_u32 (codec_header_t *self, void *at, uint64_t low, uint64_t high,
                         const msgpack_object *val, char *err, size_t err_size)
{
    (void)self, (void)err, (void)err_size;
    uint64_t n;
    if (codec_mp_uint (val, low, high, &n))
        return -1;
    *(uint32_t *)at = (uint32_t)n;
    return 0;
}

static int s_decode_u64 (codec_header_t *self, void *at, uint64_t low, uint64_t high,
                         const msgpack_object *val, char *err, size_t err_size)
{
    (void)self, (void)err, (void)err_size;
    return codec_mp_uint (val, low, high, (uint64_t *)at);
}

static void s_reset_u32 (codec_header_t *self, void *at)
{
    (void)self;
    *(uint32_t *)at = 0;
}

static void s_reset_u64 (codec_header_t *self, void *at)
{
    (void)self;
    *(uint64_t *)at = 0;
}

//  str: a name, refused when too long; text: for people, cut when too long;
//  text_as: another key for a text member

static int s_pack_str (msgpack_packer *pk, const codec_header_t *self, const void *at, size_t high)
{
    (void)self;
    return s_pack_cstr (pk, at, high);
}

static int s_decode_str (codec_header_t *self, void *at, uint64_t low, uint64_t high,
                         const msgpack_object *val, char *err, size_t err_size)
{
    (void)self, (void)err, (void)err_size;
    return codec_mp_str (val, (size_t)low, at, (size_t)high);
}

static void s_reset_str (codec_header_t *self, void *at)
{
    (void)self;
    *(char *)at = 0;
}

#define s_pack_text s_pack_str
#define s_reset_text s_reset_str
#define s_pack_text_as s_pack_str

static int s_decode_text (codec_header_t *self, void *at, uint64_t low, uint64_t high,
                          const msgpack_object *val, char *err, size_t err_size)
{
    (void)self, (void)low, (void)err, (void)err_size;
    if (val->type != MSGPACK_OBJECT_STR)
        return -1;
    size_t len = val->via.str.size < high ? val->via.str.size : (size_t)high - 1;
    snprintf (at, (size_t)high, "%.*s", (int)len, val->via.str.ptr);
    return 0;
}

#define s_decode_text_as s_decode_text

static void s_reset_text_as (codec_header_t *self, void *at)
{
    (void)self, (void)at; //  the text member it shares is reset as text
}

//  names: the requested outputs

static int s_pack_names (msgpack_packer *pk, const codec_header_t *self, const void *at,
                         size_t high)
{
    (void)at, (void)high;
    assert (self->n_outputs <= CODEC_MAX_OUTPUTS);
    int rc = msgpack_pack_array (pk, self->n_outputs);
    for (size_t i = 0; i < self->n_outputs && rc == 0; i++)
        rc = s_pack_cstr (pk, self->outputs[i], CODEC_NAME_MAX);
    return rc ? -1 : 0;
}

static int s_decode_names (codec_header_t *self, void *at, uint64_t low, uint64_t high,
                           const msgpack_object *val, char *err, size_t err_size)
{
    (void)at, (void)low;
    if (val->type != MSGPACK_OBJECT_ARRAY || val->via.array.size > high)
        return -1;
    self->n_outputs = val->via.array.size;
    for (size_t i = 0; i < self->n_outputs; i++)
        if (codec_mp_str (&val->via.array.ptr[i], 1, self->outputs[i], CODEC_NAME_MAX)) {
            snprintf (err, err_size,
                      "header key 'outputs' must be an array of names (str, 1.." CODEC_STR (
                          DEFS_NAME_MAX) " bytes)");
            return -2;
        }
    return 0;
}

static void s_reset_names (codec_header_t *self, void *at)
{
    (void)at;
    self->n_outputs = 0;
}

//  models: the models a worker serves (READY) or the broker knows (MODELS_REPLY)

//  Packs a declared shape: ndim ints, -1 for a dimension the request sets.
static int s_pack_shape (msgpack_packer *pk, const int64_t *shape, uint32_t ndim)
{
    assert (ndim >= 1 && ndim <= CODEC_MODEL_DIMS);
    int rc = s_pack_bytes (pk, "shape", 5);
    rc |= msgpack_pack_array (pk, ndim);
    for (uint32_t d = 0; d < ndim && rc == 0; d++)
        rc |= msgpack_pack_int64 (pk, shape[d]);
    return rc;
}

//  Packs a model's metadata keys (none when it has none): "input",
//  "datatype", "outputs", "inputs", each only when known.
static int s_pack_meta (msgpack_packer *pk, const codec_model_meta_t *meta)
{
    int rc = 0;
    if (meta->input[0]) {
        rc |= s_pack_bytes (pk, "input", 5);
        rc |= s_pack_cstr (pk, meta->input, sizeof meta->input);
    }
    if (meta->datatype != AMAAS_DTYPE_INVALID) {
        rc |= s_pack_bytes (pk, "datatype", 8);
        rc |= s_pack_cstr (pk, amaas_dtype_name (meta->datatype), 16);
    }
    if (meta->n_outputs) {
        assert (meta->n_outputs <= CODEC_MODEL_OUTPUTS);
        rc |= s_pack_bytes (pk, "outputs", 7);
        rc |= msgpack_pack_array (pk, meta->n_outputs);
        for (uint32_t i = 0; i < meta->n_outputs && rc == 0; i++) {
            const codec_output_t *out = &meta->outputs[i];
            rc |= msgpack_pack_map (pk, 3 + (out->ndim != 0));
            rc |= s_pack_bytes (pk, "name", 4);
            rc |= s_pack_cstr (pk, out->name, sizeof out->name);
            rc |= s_pack_bytes (pk, "datatype", 8);
            rc |= s_pack_cstr (pk, amaas_dtype_name (out->datatype), 16);
            rc |= s_pack_bytes (pk, "width", 5);
            rc |= msgpack_pack_uint32 (pk, out->width);
            if (out->ndim)
                rc |= s_pack_shape (pk, out->shape, out->ndim);
        }
    }
    if (meta->n_inputs) {
        assert (meta->n_inputs <= CODEC_MODEL_INPUTS);
        rc |= s_pack_bytes (pk, "inputs", 6);
        rc |= msgpack_pack_array (pk, meta->n_inputs);
        for (uint32_t i = 0; i < meta->n_inputs && rc == 0; i++) {
            const codec_input_t *in = &meta->inputs[i];
            rc |= msgpack_pack_map (pk, 3);
            rc |= s_pack_bytes (pk, "name", 4);
            rc |= s_pack_cstr (pk, in->name, sizeof in->name);
            rc |= s_pack_bytes (pk, "datatype", 8);
            rc |= s_pack_cstr (pk, amaas_dtype_name (in->datatype), 16);
            rc |= s_pack_shape (pk, in->shape, in->ndim);
        }
    }
    return rc;
}

static int s_pack_models (msgpack_packer *pk, const codec_header_t *self, const void *at,
                          size_t high)
{
    (void)at, (void)high;
    assert (self->models || self->n_models == 0);
    int rc = msgpack_pack_array (pk, self->n_models);
    for (size_t i = 0; i < self->n_models && rc == 0; i++) {
        const codec_model_t *m = &self->models[i];
        const codec_model_meta_t *meta = &m->meta;
        rc |= msgpack_pack_map (pk, 6 + (meta->input[0] != 0) +
                                        (meta->datatype != AMAAS_DTYPE_INVALID) +
                                        (meta->n_outputs != 0) + (meta->n_inputs != 0));
        rc |= s_pack_bytes (pk, "name", 4);
        rc |= s_pack_cstr (pk, m->name, sizeof m->name);
        rc |= s_pack_bytes (pk, "version", 7);
        rc |= s_pack_cstr (pk, m->version, sizeof m->version);
        rc |= s_pack_bytes (pk, "workers", 7);
        rc |= msgpack_pack_uint32 (pk, m->workers);
        rc |= s_pack_bytes (pk, "width", 5);
        rc |= msgpack_pack_uint32 (pk, m->width);
        rc |= s_pack_bytes (pk, "mapped", 6);
        rc |= msgpack_pack_uint64 (pk, m->mapped);
        rc |= s_pack_bytes (pk, "queued", 6);
        rc |= msgpack_pack_uint32 (pk, m->queued);
        rc |= s_pack_meta (pk, meta);
    }
    return rc ? -1 : 0;
}

//  Reads a datatype name into *dtype.  Returns 0, -1 if val is not the
//  name of a datatype.
static int s_decode_dtype (const msgpack_object *val, amaas_dtype_t *dtype)
{
    if (val->type != MSGPACK_OBJECT_STR)
        return -1;
    *dtype = amaas_dtype_from_name (val->via.str.ptr, val->via.str.size);
    return *dtype == AMAAS_DTYPE_INVALID ? -1 : 0;
}

//  Reads a declared shape into shape[] and *ndim: an array of 1 to
//  CODEC_MODEL_DIMS ints, the first -1 (the batch), the others -1 or
//  1..CODEC_DIM_MAX.  Clears both first (a key given twice: the last,
//  whole).  Returns 0, -1 if val is not such an array.
static int s_decode_shape (const msgpack_object *val, int64_t *shape, uint32_t *ndim)
{
    memset (shape, 0, CODEC_MODEL_DIMS * sizeof *shape);
    *ndim = 0;
    if (val->type != MSGPACK_OBJECT_ARRAY || val->via.array.size < 1 ||
        val->via.array.size > CODEC_MODEL_DIMS)
        return -1;
    for (uint32_t d = 0; d < val->via.array.size; d++) {
        const msgpack_object *dim = &val->via.array.ptr[d];
        if (dim->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && dim->via.i64 == -1)
            shape[d] = -1;
        else if (d > 0 && dim->type == MSGPACK_OBJECT_POSITIVE_INTEGER && dim->via.u64 >= 1 &&
                 dim->via.u64 <= CODEC_DIM_MAX)
            shape[d] = (int64_t)dim->via.u64;
        else
            return -1;
    }
    *ndim = val->via.array.size;
    return 0;
}

#define S_SHAPE_WANT                                                                               \
    "an array of 1.." CODEC_STR (CODEC_MODEL_DIMS) " ints, -1 (the batch) then -1 or "             \
                                                   "1.." CODEC_STR (CODEC_DIM_MAX)
#define S_DTYPE_WANT "FP32, FP64, INT32, INT64, UINT8, BOOL or BYTES"

//  Reads entry `index` of a model's outputs: a map with name, datatype and
//  width, and shape when the peer sends it.  Returns 0, or -1 with a
//  message in err.
static int s_decode_output (codec_output_t *out, const msgpack_object *o, size_t entry,
                            uint32_t index, char *err, size_t err_size)
{
    bool has_name = false, has_datatype = false, has_width = false;
    if (o->type == MSGPACK_OBJECT_MAP)
        for (uint32_t k = 0; k < o->via.map.size; k++) {
            const msgpack_object *key = &o->via.map.ptr[k].key;
            const msgpack_object *val = &o->via.map.ptr[k].val;
            uint64_t n;
            if (codec_mp_str_is (key, "name")) {
                memset (out->name, 0, sizeof out->name); //  a name given twice: the last, whole
                if (codec_mp_str (val, 1, out->name, sizeof out->name))
                    goto bad;
                has_name = true;
            } else if (codec_mp_str_is (key, "datatype")) {
                if (s_decode_dtype (val, &out->datatype))
                    goto bad;
                has_datatype = true;
            } else if (codec_mp_str_is (key, "width")) {
                if (codec_mp_uint (val, 0, UINT32_MAX, &n))
                    goto bad;
                out->width = (uint32_t)n;
                has_width = true;
            } else if (codec_mp_str_is (key, "shape")) {
                if (s_decode_shape (val, out->shape, &out->ndim))
                    goto bad;
            }
        }
    if (has_name && has_datatype && has_width)
        return 0;
bad:
    snprintf (err, err_size,
              "'models' entry %zu: output %u must be a map with name (str, 1.." CODEC_STR (
                  DEFS_TENSOR_NAME_MAX) " bytes), datatype (" S_DTYPE_WANT
                                        "), width (uint32) and optionally shape (" S_SHAPE_WANT ")",
              entry, index);
    return -1;
}

//  Reads entry `index` of a model's inputs: a map with name, datatype and
//  shape.  Returns 0, or -1 with a message in err.
static int s_decode_input (codec_input_t *in, const msgpack_object *o, size_t entry, uint32_t index,
                           char *err, size_t err_size)
{
    bool has_name = false, has_datatype = false, has_shape = false;
    if (o->type == MSGPACK_OBJECT_MAP)
        for (uint32_t k = 0; k < o->via.map.size; k++) {
            const msgpack_object *key = &o->via.map.ptr[k].key;
            const msgpack_object *val = &o->via.map.ptr[k].val;
            if (codec_mp_str_is (key, "name")) {
                memset (in->name, 0, sizeof in->name); //  a name given twice: the last, whole
                if (codec_mp_str (val, 1, in->name, sizeof in->name))
                    goto bad;
                has_name = true;
            } else if (codec_mp_str_is (key, "datatype")) {
                if (s_decode_dtype (val, &in->datatype))
                    goto bad;
                has_datatype = true;
            } else if (codec_mp_str_is (key, "shape")) {
                if (s_decode_shape (val, in->shape, &in->ndim))
                    goto bad;
                has_shape = true;
            }
        }
    if (has_name && has_datatype && has_shape)
        return 0;
bad:
    snprintf (err, err_size,
              "'models' entry %zu: input %u must be a map with name (str, 1.." CODEC_STR (
                  DEFS_NAME_MAX) " bytes), datatype (" S_DTYPE_WANT ") and shape (" S_SHAPE_WANT
                                 ")",
              entry, index);
    return -1;
}

//  Reads the value of key "input", "datatype", "outputs" or "inputs" of
//  models entry `entry` into meta.  Returns 0, or -1 with a message in err.
static int s_decode_meta (codec_model_meta_t *meta, const msgpack_object *key,
                          const msgpack_object *val, size_t entry, char *err, size_t err_size)
{
    if (codec_mp_str_is (key, "input")) {
        //  Cleared first: of a key given twice the last wins whole, no
        //  bytes of a longer first value left behind its NUL
        memset (meta->input, 0, sizeof meta->input);
        if (codec_mp_str (val, 1, meta->input, sizeof meta->input) == 0)
            return 0;
        snprintf (err, err_size,
                  "'models' entry %zu: input must be a str of 1.." CODEC_STR (
                      DEFS_TENSOR_NAME_MAX) " bytes",
                  entry);
        return -1;
    }
    if (codec_mp_str_is (key, "datatype")) {
        if (s_decode_dtype (val, &meta->datatype) == 0)
            return 0;
        snprintf (err, err_size, "'models' entry %zu: datatype must be " S_DTYPE_WANT, entry);
        return -1;
    }
    if (codec_mp_str_is (key, "inputs")) {
        if (val->type != MSGPACK_OBJECT_ARRAY || val->via.array.size < 1 ||
            val->via.array.size > CODEC_MODEL_INPUTS) {
            snprintf (err, err_size,
                      "'models' entry %zu: inputs must be an array of 1.." CODEC_STR (
                          CODEC_MODEL_INPUTS) " maps",
                      entry);
            return -1;
        }
        memset (meta->inputs, 0, sizeof meta->inputs);
        meta->n_inputs = val->via.array.size;
        for (uint32_t i = 0; i < meta->n_inputs; i++)
            if (s_decode_input (&meta->inputs[i], &val->via.array.ptr[i], entry, i, err, err_size))
                return -1;
        return 0;
    }
    assert (codec_mp_str_is (key, "outputs"));
    if (val->type != MSGPACK_OBJECT_ARRAY || val->via.array.size < 1 ||
        val->via.array.size > CODEC_MODEL_OUTPUTS) {
        snprintf (err, err_size,
                  "'models' entry %zu: outputs must be an array of 1.." CODEC_STR (
                      CODEC_MODEL_OUTPUTS) " maps",
                  entry);
        return -1;
    }
    memset (meta->outputs, 0, sizeof meta->outputs);
    meta->n_outputs = val->via.array.size;
    for (uint32_t i = 0; i < meta->n_outputs; i++)
        if (s_decode_output (&meta->outputs[i], &val->via.array.ptr[i], entry, i, err, err_size))
            return -1;
    return 0;
}

//  Reads models entry `entry`.  Returns 0, or -1 with a message in err.
static int s_decode_model (codec_model_t *model, const msgpack_object *m, size_t entry, char *err,
                           size_t err_size)
{
    bool has_name = false;
    if (m->type != MSGPACK_OBJECT_MAP)
        goto bad;
    for (uint32_t k = 0; k < m->via.map.size; k++) {
        const msgpack_object *key = &m->via.map.ptr[k].key;
        const msgpack_object *val = &m->via.map.ptr[k].val;
        uint64_t n;
        if (codec_mp_str_is (key, "name")) {
            if (codec_mp_str (val, 1, model->name, sizeof model->name))
                goto bad;
            has_name = true;
        } else if (codec_mp_str_is (key, "version")) {
            //  may be empty: a missing version is encoded as ""
            if (codec_mp_str (val, 0, model->version, sizeof model->version))
                goto bad;
        } else if (codec_mp_str_is (key, "workers")) {
            if (codec_mp_uint (val, 0, UINT32_MAX, &n))
                goto bad;
            model->workers = (uint32_t)n;
        } else if (codec_mp_str_is (key, "width")) {
            if (codec_mp_uint (val, 0, UINT32_MAX, &n))
                goto bad;
            model->width = (uint32_t)n;
        } else if (codec_mp_str_is (key, "mapped")) {
            if (codec_mp_uint (val, 0, UINT64_MAX, &model->mapped))
                goto bad;
        } else if (codec_mp_str_is (key, "queued")) {
            if (codec_mp_uint (val, 0, UINT32_MAX, &n))
                goto bad;
            model->queued = (uint32_t)n;
        } else if (codec_mp_str_is (key, "input") || codec_mp_str_is (key, "datatype") ||
                   codec_mp_str_is (key, "outputs") || codec_mp_str_is (key, "inputs")) {
            if (s_decode_meta (&model->meta, key, val, entry, err, err_size))
                return -1;
        }
    }
    if (has_name)
        return 0;
bad:
    snprintf (err, err_size,
              "'models' entry %zu must be a map with name (str, 1..%d bytes) and "
              "version (str)",
              entry, CODEC_NAME_MAX - 1);
    return -1;
}

static int s_decode_models (codec_header_t *self, void *at, uint64_t low, uint64_t high,
                            const msgpack_object *o, char *err, size_t err_size)
{
    (void)at, (void)low;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > high) {
        snprintf (err, err_size, "'models' must be an array of at most %d maps", CODEC_MAX_MODELS);
        return -2;
    }
    free (self->models); //  a repeated key: the last one counts
    self->n_models = o->via.array.size;
    self->models = self->n_models ? calloc (self->n_models, sizeof (codec_model_t)) : NULL;
    if (self->n_models && !self->models) {
        self->n_models = 0;
        snprintf (err, err_size, "out of memory");
        return -2;
    }
    for (size_t i = 0; i < self->n_models; i++)
        if (s_decode_model (&self->models[i], &o->via.array.ptr[i], i, err, err_size))
            return -2;
    return 0;
}

static void s_reset_models (codec_header_t *self, void *at)
{
    (void)at;
    free (self->models);
    self->models = NULL;
    self->n_models = 0;
}

//  --------------------------------------------------------------------------
//  The table expanded

//  Every HDR_* bit
#define S_BIT(key, member, bit, ...) | HDR_##bit
#define S_ALL_FIELDS (0 CODEC_HEADER_FIELDS (S_BIT))

void codec_header_reset (codec_header_t *self)
{
    assert (self);
    //  Member by member: the struct holds kilobytes of string buffers, and
    //  this runs for every message; an empty string is one zero byte
#define S_RESET(key, member, bit, kind, low, high, want) s_reset_##kind (self, &self->member);
    CODEC_HEADER_FIELDS (S_RESET)
#undef S_RESET
    self->fields = 0;
}

int codec_header_pack (const codec_header_t *self, msgpack_sbuffer *sbuf)
{
    assert (self);
    assert (sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, s_sbuffer_write);
    int rc = msgpack_pack_map (&pk, (size_t)__builtin_popcount (self->fields & S_ALL_FIELDS));
#define S_PACK(key, member, bit, kind, low, high, want)                                            \
    if (rc == 0 && (self->fields & HDR_##bit)) {                                                   \
        rc = s_pack_bytes (&pk, key, sizeof key - 1);                                              \
        rc = rc ? rc : s_pack_##kind (&pk, self, &self->member, high);                             \
    }
    CODEC_HEADER_FIELDS (S_PACK)
#undef S_PACK
    return rc ? -1 : 0;
}

//  Decodes one key and its value into self.  Unknown keys are ignored.
//  Returns 0, or -1 with a message in err.
static int s_decode_field (codec_header_t *self, const msgpack_object *key,
                           const msgpack_object *val, char *err, size_t err_size)
{
#define S_DECODE(key_, member, bit, kind, low, high, want)                                         \
    if (codec_mp_str_is (key, key_)) {                                                             \
        self->fields |= HDR_##bit;                                                                 \
        int rc = s_decode_##kind (self, &self->member, low, high, val, err, err_size);             \
        if (rc == -1)                                                                              \
            snprintf (err, err_size, "header key '%s' must be %s", key_, want);                    \
        return rc ? -1 : 0;                                                                        \
    }
    CODEC_HEADER_FIELDS (S_DECODE)
#undef S_DECODE
    return 0;
}

int codec_header_decode (codec_header_t *self, const void *buf, size_t size, char *err,
                         size_t err_size)
{
    assert (self);
    uint64_t id = 0;
    uint32_t has_id = 0;
    codec_header_reset (self);
    msgpack_object object;
    int rc = -1;
    if (codec_mp_unpack (buf, size, &object, "header", err, err_size))
        goto done;
    const msgpack_object *root = &object;
    if (root->type != MSGPACK_OBJECT_MAP) {
        snprintf (err, err_size, "header must be a msgpack map");
        goto done;
    }
    //  The id first, so that an error later in the header can still be
    //  answered to the right job.
    for (uint32_t i = 0; i < root->via.map.size; i++)
        if (codec_mp_str_is (&root->via.map.ptr[i].key, "id"))
            s_decode_field (self, &root->via.map.ptr[i].key, &root->via.map.ptr[i].val, err,
                            err_size);
    id = self->id;
    has_id = self->fields & HDR_ID;
    for (uint32_t i = 0; i < root->via.map.size; i++)
        if (s_decode_field (self, &root->via.map.ptr[i].key, &root->via.map.ptr[i].val, err,
                            err_size))
            goto done;
    rc = 0;
done:
    codec_mp_release ();
    if (rc) {
        codec_header_reset (self);
        if (has_id && id) {
            self->id = id;
            self->fields = HDR_ID;
        }
    }
    return rc;
}
