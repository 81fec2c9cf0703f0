/*  tensors.c - the payload of REQUEST, REPLY, JOB and RESULT: tensors.

    Decoding unpacks the payload into the thread's msgpack zone
    (codec_mp_unpack), reads each tensor map and checks its datatype, shape
    and bytes; the tensors it returns point into the caller's buffer.
    Packing appends to a buffer the caller reuses, so that sending a result
    allocates nothing once the buffer has grown.
*/
#include "tensors.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mp.h"

static int s_sbuffer_write (void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write ((msgpack_sbuffer *)data, buf, len);
}

//  Pack a NUL-terminated string.  Returns 0, -1 on out-of-memory.
static int s_pack_cstr (msgpack_packer *pk, const char *s)
{
    size_t len = strlen (s);
    return msgpack_pack_str (pk, len) || msgpack_pack_str_body (pk, s, len) ? -1 : 0;
}

//  Reads one tensor map into t.  Returns 0, or -1 with a message in err.
static int s_decode_tensor (const msgpack_object *o, codec_tensor_t *t, uint64_t max_elements,
                            char *err, size_t err_size)
{
    const msgpack_object *name = NULL, *datatype = NULL, *shape = NULL, *data = NULL;
    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf (err, err_size, "must be a map with name, datatype, shape and data");
        return -1;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *key = &o->via.map.ptr[i].key;
        const msgpack_object *val = &o->via.map.ptr[i].val;
        if (codec_mp_str_is (key, "name"))
            name = val;
        else if (codec_mp_str_is (key, "datatype"))
            datatype = val;
        else if (codec_mp_str_is (key, "shape"))
            shape = val;
        else if (codec_mp_str_is (key, "data"))
            data = val;
    }
    if (!name || name->type != MSGPACK_OBJECT_STR || name->via.str.size == 0 ||
        name->via.str.size >= CODEC_NAME_MAX) {
        snprintf (err, err_size, "'name' must be a str of 1..%d bytes", CODEC_NAME_MAX - 1);
        return -1;
    }
    t->name = name->via.str.ptr;
    t->name_len = name->via.str.size;
    if (!datatype || datatype->type != MSGPACK_OBJECT_STR ||
        (t->datatype = amaas_dtype_from_name (datatype->via.str.ptr, datatype->via.str.size)) ==
            AMAAS_DTYPE_INVALID) {
        snprintf (err, err_size,
                  "'datatype' must be one of FP32, FP64, INT32, INT64, UINT8, BOOL, BYTES");
        return -1;
    }
    if (!shape || shape->type != MSGPACK_OBJECT_ARRAY || shape->via.array.size == 0 ||
        shape->via.array.size > AMAAS_MAX_DIMS) {
        snprintf (err, err_size, "'shape' must be an array of 1..%d dimensions", AMAAS_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)shape->via.array.size;
    t->elements = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t dim;
        if (codec_mp_uint (&shape->via.array.ptr[d], 0, INT64_MAX, &dim)) {
            snprintf (err, err_size, "'shape' dimension %d must be a non-negative integer", d);
            return -1;
        }
        t->shape[d] = (int64_t)dim;
        if (dim && t->elements > max_elements / dim) {
            snprintf (err, err_size, "has more than %" PRIu64 " elements", max_elements);
            return -1;
        }
        t->elements *= dim;
    }
    if (t->elements > max_elements) {
        snprintf (err, err_size, "has more than %" PRIu64 " elements", max_elements);
        return -1;
    }
    if (!data || data->type != MSGPACK_OBJECT_BIN) {
        snprintf (err, err_size, "'data' must be a msgpack bin");
        return -1;
    }
    t->data = data->via.bin.ptr;
    t->size = data->via.bin.size;
    size_t elem = amaas_dtype_size (t->datatype);
    if (elem && t->size != t->elements * elem) {
        snprintf (err, err_size, "'data' holds %zu bytes, shape needs %" PRIu64 " x %zu = %" PRIu64,
                  t->size, t->elements, elem, t->elements * elem);
        return -1;
    }
    if (!elem && codec_tensors_bytes_check (t->data, t->size, t->elements) != (int64_t)t->size) {
        snprintf (err, err_size,
                  "'data' does not hold exactly %" PRIu64 " length-prefixed BYTES elements",
                  t->elements);
        return -1;
    }
    return 0;
}

int codec_tensors_decode (const void *buf, size_t size, codec_tensor_t *tensors, size_t max,
                          uint64_t max_elements, char *err, size_t err_size)
{
    char why[CODEC_MESSAGE_MAX];
    msgpack_object object;
    int rc = -1;
    if (codec_mp_unpack (buf, size, &object, "payload", err, err_size))
        goto done;
    const msgpack_object *root = &object;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size == 0 ||
        root->via.array.size > max) {
        snprintf (err, err_size, "payload must be an array of 1..%zu tensors", max);
        goto done;
    }
    for (uint32_t i = 0; i < root->via.array.size; i++)
        if (s_decode_tensor (&root->via.array.ptr[i], &tensors[i], max_elements, why, sizeof why)) {
            snprintf (err, err_size, "tensor %u: %s", i, why);
            goto done;
        }
    rc = (int)root->via.array.size;
done:
    codec_mp_release ();
    return rc;
}

int64_t codec_tensors_bytes_check (const void *data, size_t size, uint64_t elements)
{
    assert (data || size == 0);
    const uint8_t *p = data;
    size_t offset = 0;
    for (uint64_t i = 0; i < elements; i++) {
        if (size - offset < 4)
            return -1;
        uint32_t len = (uint32_t)p[offset] | (uint32_t)p[offset + 1] << 8 |
                       (uint32_t)p[offset + 2] << 16 | (uint32_t)p[offset + 3] << 24;
        offset += 4;
        if (size - offset < len)
            return -1;
        offset += len;
    }
    return (int64_t)offset;
}

int codec_tensors_pack (const codec_tensor_t *tensors, size_t n, msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;
    assert (tensors || n == 0);
    assert (sbuf);
    msgpack_packer_init (&pk, sbuf, s_sbuffer_write);
    int rc = msgpack_pack_array (&pk, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const codec_tensor_t *t = &tensors[i];
        rc |= msgpack_pack_map (&pk, 4);
        rc |= s_pack_cstr (&pk, "name");
        rc |= msgpack_pack_str (&pk, t->name_len);
        rc |= msgpack_pack_str_body (&pk, t->name, t->name_len);
        rc |= s_pack_cstr (&pk, "datatype");
        rc |= s_pack_cstr (&pk, amaas_dtype_name (t->datatype));
        rc |= s_pack_cstr (&pk, "shape");
        rc |= msgpack_pack_array (&pk, (size_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            rc |= msgpack_pack_int64 (&pk, t->shape[d]);
        rc |= s_pack_cstr (&pk, "data");
        rc |= msgpack_pack_bin (&pk, t->size);
        rc |= msgpack_pack_bin_body (&pk, t->data, t->size);
    }
    return rc ? -1 : 0;
}
