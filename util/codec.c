/*  codec.c - the amaas wire protocol: frames, headers and tensors.

    Decoding runs in two steps: codec_mp_check walks the raw bytes to prove
    they are one bounded msgpack object, then msgpack-c unpacks them and this
    file maps the object onto C structs, checking every key's type and range.
    Encoding uses msgpack-c's packer into an sbuffer that becomes a frame
    without a copy.
*/
#include "codec.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Public names

const char *amaas_code_name (amaas_code_t code)
{
    switch (code) {
    case AMAAS_OK: return "OK";
    case AMAAS_CANCELLED: return "CANCELLED";
    case AMAAS_UNKNOWN: return "UNKNOWN";
    case AMAAS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case AMAAS_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case AMAAS_NOT_FOUND: return "NOT_FOUND";
    case AMAAS_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case AMAAS_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case AMAAS_INTERNAL: return "INTERNAL";
    case AMAAS_UNAVAILABLE: return "UNAVAILABLE";
    case AMAAS_UNAUTHENTICATED: return "UNAUTHENTICATED";
    }
    return "UNKNOWN";
}

static const char *dtype_names[] = {"INVALID", "FP32",  "FP64", "INT32",
                                    "INT64",   "UINT8", "BOOL", "BYTES"};

const char *amaas_dtype_name (amaas_dtype_t dtype)
{
    if ((unsigned)dtype < sizeof dtype_names / sizeof dtype_names[0])
        return dtype_names[dtype];
    return "INVALID";
}

amaas_dtype_t amaas_dtype_from_name (const char *name, size_t len)
{
    for (size_t i = 1; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
        if (strlen (dtype_names[i]) == len && memcmp (dtype_names[i], name, len) == 0)
            return (amaas_dtype_t)i;
    return AMAAS_DTYPE_INVALID;
}

size_t amaas_dtype_size (amaas_dtype_t dtype)
{
    switch (dtype) {
    case AMAAS_FP32:
    case AMAAS_INT32: return 4;
    case AMAAS_FP64:
    case AMAAS_INT64: return 8;
    case AMAAS_UINT8:
    case AMAAS_BOOL: return 1;
    default: return 0;
    }
}

//  --------------------------------------------------------------------------
//  Header fields

void codec_header_reset (codec_header_t *self)
{
    //  Field by field: the struct holds kilobytes of string buffers, and
    //  this runs for every message; an empty string is one zero byte
    free (self->models);
    self->fields = 0;
    self->id = self->job = self->queue_us = self->compute_us = 0;
    self->code = self->credit = self->pid = self->batch = 0;
    self->priority = self->deadline_ms = self->model_errors = 0;
    self->session = self->epoch = 0;
    self->model[0] = self->version[0] = self->message[0] = self->host[0] = 0;
    self->command[0] = self->worker[0] = 0;
    self->n_outputs = self->n_models = 0;
    self->models = NULL;
}

static void copy_str (char *dest, size_t dest_size, const char *src)
{
    snprintf (dest, dest_size, "%s", src ? src : "");
}

void codec_header_set_model (codec_header_t *self, const char *model)
{
    copy_str (self->model, sizeof self->model, model);
    self->fields |= HDR_MODEL;
}

void codec_header_set_version (codec_header_t *self, const char *version)
{
    copy_str (self->version, sizeof self->version, version);
    self->fields |= HDR_VERSION;
}

void codec_header_set_message (codec_header_t *self, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vsnprintf (self->message, sizeof self->message, fmt, args);
    va_end (args);
    self->fields |= HDR_MESSAGE;
}

//  --------------------------------------------------------------------------
//  Bounded walk over raw msgpack bytes

//  Big-endian integer of `bytes` bytes.
static uint64_t read_be (const uint8_t *data, size_t bytes)
{
    uint64_t value = 0;
    for (size_t i = 0; i < bytes; i++)
        value = (value << 8) | data[i];
    return value;
}

int codec_mp_check (const void *buf, size_t size, char *err, size_t err_size)
{
    const uint8_t *data = buf;
    uint64_t pending[CODEC_MAX_DEPTH + 1]; //  objects still to read at each depth
    int depth = 0;
    size_t pos = 0;
    pending[0] = 1;
    if (size == 0) {
        snprintf (err, err_size, "empty msgpack");
        return -1;
    }
    while (true) {
        while (depth >= 0 && pending[depth] == 0)
            depth--;
        if (depth < 0)
            break;
        pending[depth]--;
        if (pos >= size)
            goto truncated;
        size_t start = pos;
        uint8_t byte = data[pos++];
        size_t header = 0;       //  bytes of length or value after the type byte
        size_t length_bytes = 0; //  of which, bytes of a payload length
        size_t extra = 0;        //  fixed payload bytes (ext type byte, fixext)
        uint64_t payload = 0;    //  variable payload bytes
        uint64_t children = 0;   //  elements of an array, keys and values of a map

        if (byte <= 0x7f || byte >= 0xe0 || byte == 0xc0 || byte == 0xc2 || byte == 0xc3)
            ; //  fixint, nil, bool
        else if (byte <= 0x8f)
            children = 2 * (uint64_t)(byte & 0x0f);
        else if (byte <= 0x9f)
            children = byte & 0x0f;
        else if (byte <= 0xbf)
            payload = byte & 0x1f;
        else if (byte == 0xc1) {
            snprintf (err, err_size, "byte %zu: 0xc1 is not a msgpack type", start);
            return -1;
        } else if (byte >= 0xc4 && byte <= 0xc6) //  bin 8, 16, 32
            header = length_bytes = (size_t)1 << (byte - 0xc4);
        else if (byte >= 0xc7 && byte <= 0xc9) { //  ext 8, 16, 32
            header = length_bytes = (size_t)1 << (byte - 0xc7);
            extra = 1;
        } else if (byte == 0xca)
            header = 4;
        else if (byte == 0xcb)
            header = 8;
        else if (byte >= 0xcc && byte <= 0xcf) //  uint 8 .. 64
            header = (size_t)1 << (byte - 0xcc);
        else if (byte >= 0xd0 && byte <= 0xd3) //  int 8 .. 64
            header = (size_t)1 << (byte - 0xd0);
        else if (byte >= 0xd4 && byte <= 0xd8) //  fixext 1 .. 16
            extra = 1 + ((size_t)1 << (byte - 0xd4));
        else if (byte >= 0xd9 && byte <= 0xdb) //  str 8, 16, 32
            header = length_bytes = (size_t)1 << (byte - 0xd9);
        else if (byte == 0xdc || byte == 0xdd) //  array 16, 32
            header = length_bytes = byte == 0xdc ? 2 : 4;
        else //  map 16, 32
            header = length_bytes = byte == 0xde ? 2 : 4;

        if (header > size - pos)
            goto truncated;
        if (length_bytes) {
            uint64_t length = read_be (data + pos, length_bytes);
            if (byte == 0xdc || byte == 0xdd)
                children = length;
            else if (byte == 0xde || byte == 0xdf)
                children = 2 * length;
            else
                payload = length;
        }
        pos += header;
        if (extra > size - pos || payload > size - pos - extra)
            goto truncated;
        pos += extra + (size_t)payload;
        if (children) {
            //  Every element takes at least one byte: a count larger than
            //  what remains is a lie, refused before anyone allocates for it
            if (children > size - pos) {
                snprintf (err, err_size,
                          "byte %zu: msgpack container of %" PRIu64
                          " elements cannot fit in the %zu "
                          "bytes left (truncated or corrupt)",
                          start, children, size - pos);
                return -1;
            }
            if (depth == CODEC_MAX_DEPTH) {
                snprintf (err, err_size, "byte %zu: msgpack nested deeper than %d levels", start,
                          CODEC_MAX_DEPTH);
                return -1;
            }
            pending[++depth] = children;
        }
    }
    if (pos != size) {
        snprintf (err, err_size, "%zu bytes after the end of the msgpack object", size - pos);
        return -1;
    }
    return 0;
truncated:
    snprintf (err, err_size, "msgpack ends at byte %zu in the middle of an object (truncated)",
              size);
    return -1;
}

//  --------------------------------------------------------------------------
//  Encoding

static int sbuffer_write (void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write ((msgpack_sbuffer *)data, buf, len);
}

//  Turns an sbuffer into a frame, and frees the sbuffer.
static zframe_t *frame_from_sbuffer (msgpack_sbuffer *sbuf)
{
    zframe_t *frame = zframe_new (sbuf->data, sbuf->size);
    msgpack_sbuffer_destroy (sbuf);
    return frame;
}

static void pack_cstr (msgpack_packer *pk, const char *s)
{
    size_t len = strlen (s);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, s, len);
}

static void pack_key (msgpack_packer *pk, const char *key)
{
    pack_cstr (pk, key);
}

static void pack_models (msgpack_packer *pk, const codec_header_t *self)
{
    msgpack_pack_array (pk, self->n_models);
    for (size_t i = 0; i < self->n_models; i++) {
        const codec_model_t *m = &self->models[i];
        msgpack_pack_map (pk, 6);
        pack_key (pk, "name");
        pack_cstr (pk, m->name);
        pack_key (pk, "version");
        pack_cstr (pk, m->version);
        pack_key (pk, "workers");
        msgpack_pack_uint32 (pk, m->workers);
        pack_key (pk, "width");
        msgpack_pack_uint32 (pk, m->width);
        pack_key (pk, "mapped");
        msgpack_pack_uint64 (pk, m->mapped);
        pack_key (pk, "queued");
        msgpack_pack_uint32 (pk, m->queued);
    }
}

static void pack_header_fields (const codec_header_t *self, msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, sbuffer_write);

    msgpack_pack_map (&pk, (size_t)__builtin_popcount (self->fields));
    if (self->fields & HDR_ID) {
        pack_key (&pk, "id");
        msgpack_pack_uint64 (&pk, self->id);
    }
    if (self->fields & HDR_JOB) {
        pack_key (&pk, "job");
        msgpack_pack_uint64 (&pk, self->job);
    }
    if (self->fields & HDR_MODEL) {
        pack_key (&pk, "model");
        pack_cstr (&pk, self->model);
    }
    if (self->fields & HDR_VERSION) {
        pack_key (&pk, "version");
        pack_cstr (&pk, self->version);
    }
    if (self->fields & HDR_CODE) {
        pack_key (&pk, "code");
        msgpack_pack_uint32 (&pk, self->code);
    }
    if (self->fields & HDR_MESSAGE) {
        pack_key (&pk, "message");
        pack_cstr (&pk, self->message);
    }
    if (self->fields & HDR_QUEUE_US) {
        pack_key (&pk, "queue_us");
        msgpack_pack_uint64 (&pk, self->queue_us);
    }
    if (self->fields & HDR_COMPUTE_US) {
        pack_key (&pk, "compute_us");
        msgpack_pack_uint64 (&pk, self->compute_us);
    }
    if (self->fields & HDR_CREDIT) {
        pack_key (&pk, "credit");
        msgpack_pack_uint32 (&pk, self->credit);
    }
    if (self->fields & HDR_PID) {
        pack_key (&pk, "pid");
        msgpack_pack_uint32 (&pk, self->pid);
    }
    if (self->fields & HDR_HOST) {
        pack_key (&pk, "host");
        pack_cstr (&pk, self->host);
    }
    if (self->fields & HDR_OUTPUTS) {
        pack_key (&pk, "outputs");
        msgpack_pack_array (&pk, self->n_outputs);
        for (size_t i = 0; i < self->n_outputs; i++)
            pack_cstr (&pk, self->outputs[i]);
    }
    if (self->fields & HDR_MODELS) {
        pack_key (&pk, "models");
        pack_models (&pk, self);
    }
    if (self->fields & HDR_COMMAND) {
        pack_key (&pk, "command");
        pack_cstr (&pk, self->command);
    }
    if (self->fields & HDR_WORKER) {
        pack_key (&pk, "worker");
        pack_cstr (&pk, self->worker);
    }
    if (self->fields & HDR_BATCH) {
        pack_key (&pk, "batch");
        msgpack_pack_uint32 (&pk, self->batch);
    }
    if (self->fields & HDR_PRIORITY) {
        pack_key (&pk, "priority");
        msgpack_pack_uint32 (&pk, self->priority);
    }
    if (self->fields & HDR_DEADLINE_MS) {
        pack_key (&pk, "deadline_ms");
        msgpack_pack_uint32 (&pk, self->deadline_ms);
    }
    if (self->fields & HDR_REASON) {
        pack_key (&pk, "reason");
        pack_cstr (&pk, self->message);
    }
    if (self->fields & HDR_SESSION) {
        pack_key (&pk, "session");
        msgpack_pack_uint64 (&pk, self->session);
    }
    if (self->fields & HDR_EPOCH) {
        pack_key (&pk, "epoch");
        msgpack_pack_uint64 (&pk, self->epoch);
    }
    if (self->fields & HDR_MODEL_ERRORS) {
        pack_key (&pk, "model_errors");
        msgpack_pack_uint32 (&pk, self->model_errors);
    }
}

//  Each thread packs headers into its own buffer, reused from call to call
//  and freed when the thread ends.
static pthread_key_t header_buffer_key;
static pthread_once_t header_buffer_once = PTHREAD_ONCE_INIT;

static void header_buffer_free (void *buffer)
{
    msgpack_sbuffer_free (buffer);
}

static void header_buffer_init (void)
{
    pthread_key_create (&header_buffer_key, header_buffer_free);
}

static msgpack_sbuffer *pack_header (const codec_header_t *self)
{
    pthread_once (&header_buffer_once, header_buffer_init);
    msgpack_sbuffer *buffer = pthread_getspecific (header_buffer_key);
    if (!buffer) {
        buffer = msgpack_sbuffer_new ();
        if (!buffer || pthread_setspecific (header_buffer_key, buffer)) {
            msgpack_sbuffer_free (buffer);
            static msgpack_sbuffer empty; //  out of memory: an empty header
            return &empty;
        }
    }
    buffer->size = 0;
    pack_header_fields (self, buffer);
    return buffer;
}

zframe_t *codec_header_encode (const codec_header_t *self)
{
    msgpack_sbuffer *packed = pack_header (self);
    return zframe_new (packed->data, packed->size);
}

//  Packs a header into a per-thread buffer that is reused from call to call.
static msgpack_sbuffer *pack_header (const codec_header_t *self);

int codec_send (zsock_t *sock, zframe_t *identity, codec_cmd_t cmd, const codec_header_t *header,
                zframe_t *payload)
{
    void *handle = zsock_resolve (sock);
    msgpack_sbuffer *packed = pack_header (header);
    uint8_t cmd_byte = (uint8_t)cmd;
    if (identity &&
        zmq_send (handle, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE) == -1)
        return -1;
    if (zmq_send (handle, CODEC_SIGNATURE, CODEC_SIGNATURE_LEN, ZMQ_SNDMORE) == -1 ||
        zmq_send (handle, &cmd_byte, 1, ZMQ_SNDMORE) == -1 ||
        zmq_send (handle, packed->data, packed->size, payload ? ZMQ_SNDMORE : 0) == -1)
        return -1;
    if (payload && zframe_send (&payload, sock, ZFRAME_REUSE) == -1)
        return -1;
    return 0;
}

zmsg_t *codec_msg_new (codec_cmd_t cmd, const codec_header_t *header, zframe_t **payload_p)
{
    zmsg_t *msg = zmsg_new ();
    zframe_t *frame = codec_header_encode (header);
    uint8_t cmd_byte = (uint8_t)cmd;
    if (!msg || !frame)
        goto err;
    zmsg_addmem (msg, CODEC_SIGNATURE, CODEC_SIGNATURE_LEN);
    zmsg_addmem (msg, &cmd_byte, 1);
    zmsg_append (msg, &frame);
    if (payload_p && *payload_p)
        zmsg_append (msg, payload_p);
    return msg;
err:
    zframe_destroy (&frame);
    zmsg_destroy (&msg);
    return NULL;
}

int codec_tensors_pack (const codec_tensor_t *tensors, size_t n, msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, sbuffer_write);
    int rc = msgpack_pack_array (&pk, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const codec_tensor_t *t = &tensors[i];
        rc |= msgpack_pack_map (&pk, 4);
        pack_key (&pk, "name");
        rc |= msgpack_pack_str (&pk, t->name_len);
        rc |= msgpack_pack_str_body (&pk, t->name, t->name_len);
        pack_key (&pk, "datatype");
        pack_cstr (&pk, amaas_dtype_name (t->datatype));
        pack_key (&pk, "shape");
        rc |= msgpack_pack_array (&pk, (size_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            rc |= msgpack_pack_int64 (&pk, t->shape[d]);
        pack_key (&pk, "data");
        rc |= msgpack_pack_bin (&pk, t->size);
        rc |= msgpack_pack_bin_body (&pk, t->data, t->size);
    }
    return rc ? -1 : 0;
}

zframe_t *codec_tensors_encode (const codec_tensor_t *tensors, size_t n)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    if (codec_tensors_pack (tensors, n, &sbuf)) {
        msgpack_sbuffer_destroy (&sbuf);
        return NULL;
    }
    return frame_from_sbuffer (&sbuf);
}

//  --------------------------------------------------------------------------
//  Decoding

static bool key_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (name) &&
           memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

//  Reads a non-negative integer no larger than max.
static int get_uint (const msgpack_object *o, uint64_t max, uint64_t *value)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
        return -1;
    *value = o->via.u64;
    return 0;
}

//  Copies a str of 1..dest_size-1 bytes with no NUL in it.
static int get_str (const msgpack_object *o, char *dest, size_t dest_size, bool allow_empty)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= dest_size ||
        (o->via.str.size == 0 && !allow_empty) || memchr (o->via.str.ptr, 0, o->via.str.size))
        return -1;
    memcpy (dest, o->via.str.ptr, o->via.str.size);
    dest[o->via.str.size] = 0;
    return 0;
}

static int decode_models (codec_header_t *self, const msgpack_object *o, char *err, size_t err_size)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > CODEC_MAX_MODELS) {
        snprintf (err, err_size, "'models' must be an array of at most %d maps", CODEC_MAX_MODELS);
        return -1;
    }
    free (self->models); //  a repeated key: the last one counts
    self->n_models = o->via.array.size;
    self->models = self->n_models ? calloc (self->n_models, sizeof (codec_model_t)) : NULL;
    if (self->n_models && !self->models) {
        snprintf (err, err_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < self->n_models; i++) {
        const msgpack_object *m = &o->via.array.ptr[i];
        codec_model_t *model = &self->models[i];
        bool has_name = false;
        if (m->type != MSGPACK_OBJECT_MAP)
            goto bad;
        for (uint32_t k = 0; k < m->via.map.size; k++) {
            const msgpack_object *key = &m->via.map.ptr[k].key;
            const msgpack_object *val = &m->via.map.ptr[k].val;
            uint64_t n;
            if (key_is (key, "name")) {
                if (get_str (val, model->name, sizeof model->name, false))
                    goto bad;
                has_name = true;
            } else if (key_is (key, "version")) {
                //  may be empty: a missing version is encoded as ""
                if (get_str (val, model->version, sizeof model->version, true))
                    goto bad;
            } else if (key_is (key, "workers")) {
                if (get_uint (val, UINT32_MAX, &n))
                    goto bad;
                model->workers = (uint32_t)n;
            } else if (key_is (key, "width")) {
                if (get_uint (val, UINT32_MAX, &n))
                    goto bad;
                model->width = (uint32_t)n;
            } else if (key_is (key, "mapped")) {
                if (get_uint (val, UINT64_MAX, &n))
                    goto bad;
                model->mapped = n;
            } else if (key_is (key, "queued")) {
                if (get_uint (val, UINT32_MAX, &n))
                    goto bad;
                model->queued = (uint32_t)n;
            }
        }
        if (!has_name)
            goto bad;
        continue;
    bad:
        snprintf (err, err_size,
                  "'models' entry %zu must be a map with name (str, 1..%d bytes) and "
                  "version (str)",
                  i, CODEC_NAME_MAX - 1);
        return -1;
    }
    return 0;
}

static int decode_field (codec_header_t *self, const msgpack_object *key, const msgpack_object *val,
                         char *err, size_t err_size)
{
    uint64_t n = 0;
    const char *want = NULL;
    if (key_is (key, "id")) {
        if (get_uint (val, UINT64_MAX, &n) || n == 0)
            want = "a uint64 of at least 1";
        self->id = n;
        self->fields |= HDR_ID;
    } else if (key_is (key, "job")) {
        if (get_uint (val, UINT64_MAX, &n))
            want = "a uint64";
        self->job = n;
        self->fields |= HDR_JOB;
    } else if (key_is (key, "model")) {
        if (get_str (val, self->model, sizeof self->model, false))
            want = "a str of 1..127 bytes";
        self->fields |= HDR_MODEL;
    } else if (key_is (key, "version")) {
        if (get_str (val, self->version, sizeof self->version, false))
            want = "a str of 1..63 bytes";
        self->fields |= HDR_VERSION;
    } else if (key_is (key, "code")) {
        if (get_uint (val, 255, &n))
            want = "an error code (uint)";
        self->code = (uint32_t)n;
        self->fields |= HDR_CODE;
    } else if (key_is (key, "message") || key_is (key, "reason")) {
        //  Messages are for people: a long one is cut, not refused
        if (val->type != MSGPACK_OBJECT_STR)
            want = "a str";
        else
            snprintf (self->message, sizeof self->message, "%.*s",
                      (int)(val->via.str.size < CODEC_MESSAGE_MAX ? val->via.str.size
                                                                  : CODEC_MESSAGE_MAX - 1),
                      val->via.str.ptr);
        self->fields |= key_is (key, "reason") ? HDR_REASON : HDR_MESSAGE;
    } else if (key_is (key, "queue_us") || key_is (key, "compute_us")) {
        if (get_uint (val, UINT64_MAX, &n))
            want = "a uint64";
        if (key_is (key, "queue_us")) {
            self->queue_us = n;
            self->fields |= HDR_QUEUE_US;
        } else {
            self->compute_us = n;
            self->fields |= HDR_COMPUTE_US;
        }
    } else if (key_is (key, "credit")) {
        if (get_uint (val, 65535, &n) || n == 0)
            want = "a uint in 1..65535";
        self->credit = (uint32_t)n;
        self->fields |= HDR_CREDIT;
    } else if (key_is (key, "command")) {
        if (get_str (val, self->command, sizeof self->command, false))
            want = "a str of 1..31 bytes";
        self->fields |= HDR_COMMAND;
    } else if (key_is (key, "worker")) {
        if (get_str (val, self->worker, sizeof self->worker, false))
            want = "a worker id (str)";
        self->fields |= HDR_WORKER;
    } else if (key_is (key, "batch")) {
        if (get_uint (val, UINT32_MAX, &n))
            want = "a uint32";
        self->batch = (uint32_t)n;
        self->fields |= HDR_BATCH;
    } else if (key_is (key, "priority")) {
        if (get_uint (val, CODEC_PRIORITIES - 1, &n))
            want = "a uint in 0..3";
        self->priority = (uint32_t)n;
        self->fields |= HDR_PRIORITY;
    } else if (key_is (key, "deadline_ms")) {
        if (get_uint (val, UINT32_MAX, &n))
            want = "a uint32 (milliseconds)";
        self->deadline_ms = (uint32_t)n;
        self->fields |= HDR_DEADLINE_MS;
    } else if (key_is (key, "session") || key_is (key, "epoch")) {
        if (get_uint (val, UINT64_MAX, &n) || n == 0)
            want = "a uint64 of at least 1";
        if (key_is (key, "session")) {
            self->session = n;
            self->fields |= HDR_SESSION;
        } else {
            self->epoch = n;
            self->fields |= HDR_EPOCH;
        }
    } else if (key_is (key, "model_errors")) {
        if (get_uint (val, UINT32_MAX, &n))
            want = "a uint32";
        self->model_errors = (uint32_t)n;
        self->fields |= HDR_MODEL_ERRORS;
    } else if (key_is (key, "pid")) {
        if (get_uint (val, UINT32_MAX, &n))
            want = "a uint32";
        self->pid = (uint32_t)n;
        self->fields |= HDR_PID;
    } else if (key_is (key, "host")) {
        if (get_str (val, self->host, sizeof self->host, true))
            want = "a str of at most 255 bytes";
        self->fields |= HDR_HOST;
    } else if (key_is (key, "outputs")) {
        if (val->type != MSGPACK_OBJECT_ARRAY || val->via.array.size > CODEC_MAX_OUTPUTS)
            want = "an array of at most 16 names";
        else {
            self->n_outputs = val->via.array.size;
            for (size_t i = 0; i < self->n_outputs && !want; i++)
                if (get_str (&val->via.array.ptr[i], self->outputs[i], CODEC_NAME_MAX, false))
                    want = "an array of names (str, 1..127 bytes)";
        }
        self->fields |= HDR_OUTPUTS;
    } else if (key_is (key, "models")) {
        self->fields |= HDR_MODELS;
        return decode_models (self, val, err, err_size);
    }
    if (want) {
        snprintf (err, err_size, "header key '%.*s' must be %s", (int)key->via.str.size,
                  key->via.str.ptr, want);
        return -1;
    }
    return 0;
}

//  Each thread decodes into its own msgpack zone, cleared after each decode
//  and kept for the next: after the first messages, decoding allocates
//  nothing.  (msgpack_zone_clear keeps the zone's first chunk.)
#define ZONE_CHUNK 8192
static pthread_key_t zone_key;
static pthread_once_t zone_once = PTHREAD_ONCE_INIT;

static void zone_free (void *zone)
{
    msgpack_zone_free (zone);
}

static void zone_init (void)
{
    pthread_key_create (&zone_key, zone_free);
}

static msgpack_zone *thread_zone (void)
{
    pthread_once (&zone_once, zone_init);
    msgpack_zone *zone = pthread_getspecific (zone_key);
    if (!zone) {
        zone = msgpack_zone_new (ZONE_CHUNK);
        if (zone && pthread_setspecific (zone_key, zone)) {
            msgpack_zone_free (zone);
            zone = NULL;
        }
    }
    return zone;
}

//  Checks the bounds of buf, then unpacks it into *object, which lives in
//  the thread's zone until release_zone.  Returns 0, or -1 with "WHAT:
//  reason".
static int unpack_checked (const void *buf, size_t size, msgpack_object *object, const char *what,
                           char *err, size_t err_size)
{
    char why[CODEC_MESSAGE_MAX];
    size_t offset = 0;
    if (codec_mp_check (buf, size, why, sizeof why)) {
        snprintf (err, err_size, "%s: %s", what, why);
        return -1;
    }
    msgpack_zone *zone = thread_zone ();
    if (!zone) {
        snprintf (err, err_size, "%s: out of memory", what);
        return -1;
    }
    if (msgpack_unpack (buf, size, &offset, zone, object) != MSGPACK_UNPACK_SUCCESS) {
        snprintf (err, err_size, "%s: malformed msgpack", what);
        return -1;
    }
    return 0;
}

//  Frees what the last unpack_checked put in the thread's zone.
static void release_zone (void)
{
    pthread_once (&zone_once, zone_init);
    msgpack_zone *zone = pthread_getspecific (zone_key);
    if (zone)
        msgpack_zone_clear (zone);
}

int codec_header_decode (codec_header_t *self, const void *buf, size_t size, char *err,
                         size_t err_size)
{
    uint64_t id = 0;
    uint32_t has_id = 0;
    codec_header_reset (self);
    msgpack_object object;
    int rc = -1;
    if (unpack_checked (buf, size, &object, "header", err, err_size))
        goto done;
    const msgpack_object *root = &object;
    if (root->type != MSGPACK_OBJECT_MAP) {
        snprintf (err, err_size, "header must be a msgpack map");
        goto done;
    }
    //  The id first, so that an error later in the header can still be
    //  answered to the right job.
    for (uint32_t i = 0; i < root->via.map.size; i++)
        if (key_is (&root->via.map.ptr[i].key, "id"))
            decode_field (self, &root->via.map.ptr[i].key, &root->via.map.ptr[i].val, err,
                          err_size);
    id = self->id;
    has_id = self->fields & HDR_ID;
    for (uint32_t i = 0; i < root->via.map.size; i++)
        if (decode_field (self, &root->via.map.ptr[i].key, &root->via.map.ptr[i].val, err,
                          err_size))
            goto done;
    rc = 0;
done:
    release_zone ();
    if (rc) {
        codec_header_reset (self);
        if (has_id && id) {
            self->id = id;
            self->fields = HDR_ID;
        }
    }
    return rc;
}

//  Parses the frames of a message, given as their bytes: the work of
//  codec_msg_parse and codec_frames_parse.  *payload is set to the index of
//  the payload frame, or 0 if there is none.
static int parse_frames (const uint8_t *const data[], const size_t size[], size_t frames,
                         codec_cmd_t *cmd, codec_header_t *header, size_t *payload, char *err,
                         size_t err_size)
{
    *payload = 0;
    codec_header_reset (header);
    if (frames < 1 || size[0] != CODEC_SIGNATURE_LEN ||
        memcmp (data[0], CODEC_SIGNATURE, CODEC_SIGNATURE_LEN) != 0) {
        snprintf (err, err_size,
                  "not an amaas message: the first frame must be the protocol signature "
                  "'%s' (this endpoint speaks amaas protocol v1, docs/PROTOCOL.md)",
                  CODEC_SIGNATURE);
        return -1;
    }
    if (frames < 2 || size[1] != 1) {
        snprintf (err, err_size, "frame 1 must be a one-byte command");
        return -1;
    }
    uint8_t c = data[1][0];
    bool has_payload = c == CMD_REQUEST || c == CMD_REPLY || c == CMD_JOB || c == CMD_RESULT ||
                       c == CMD_CONTROL_REPLY;
    bool known = has_payload || c == CMD_MODELS || c == CMD_MODELS_REPLY || c == CMD_PING ||
                 c == CMD_PONG || c == CMD_ERROR || c == CMD_READY || c == CMD_HEARTBEAT ||
                 c == CMD_DRAIN || c == CMD_DISCONNECT || c == CMD_CONTROL || c == CMD_CANCEL ||
                 c == CMD_CANCEL_JOB;
    if (!known) {
        snprintf (err, err_size, "unknown command 0x%02x", c);
        return -1;
    }
    *cmd = (codec_cmd_t)c;
    if (frames < 3) {
        snprintf (err, err_size, "frame 2 (header) is missing");
        return -1;
    }
    if (codec_header_decode (header, data[2], size[2], err, err_size))
        return -1;
    //  REPLY and RESULT carry a payload only on success
    bool needs_payload = c == CMD_REQUEST || c == CMD_JOB;
    if (frames > 4 || (frames == 4 && !has_payload) || (frames == 3 && needs_payload)) {
        snprintf (err, err_size, "%s has %zu frames: wrong frame count (docs/PROTOCOL.md)",
                  c == CMD_REQUEST ? "REQUEST" : "message", frames);
        return -1;
    }
    if (frames == 4)
        *payload = 3;
    return 0;
}

int codec_msg_parse (zmsg_t *msg, codec_cmd_t *cmd, codec_header_t *header, zframe_t **payload_p,
                     char *err, size_t err_size)
{
    const uint8_t *data[5];
    size_t size[5];
    zframe_t *frame[5];
    size_t frames = zmsg_size (msg), n = 0, payload;
    for (zframe_t *f = zmsg_first (msg); f && n < 5; f = zmsg_next (msg), n++) {
        frame[n] = f;
        data[n] = zframe_data (f);
        size[n] = zframe_size (f);
    }
    *payload_p = NULL;
    if (parse_frames (data, size, frames, cmd, header, &payload, err, err_size))
        return -1;
    if (payload)
        *payload_p = frame[payload];
    return 0;
}

int codec_frames_recv (codec_frames_t *self, void *socket)
{
    self->count = self->n = self->size = 0;
    while (true) {
        zmq_msg_t spill, *part = self->n < CODEC_MAX_FRAMES ? &self->frames[self->n] : &spill;
        zmq_msg_init (part);
        if (zmq_msg_recv (part, socket, self->count ? 0 : ZMQ_DONTWAIT) == -1) {
            //  The caller tells EAGAIN from an error by errno: keep it
            int error = zmq_errno ();
            zmq_msg_close (part);
            //  Only a context being terminated breaks a message in the middle
            codec_frames_close (self);
            errno = error;
            return -1;
        }
        self->count++;
        self->size += zmq_msg_size (part);
        bool more = zmq_msg_more (part);
        if (part == &spill)
            zmq_msg_close (part);
        else
            self->n++;
        if (!more)
            return 0;
    }
}

void codec_frames_close (codec_frames_t *self)
{
    for (size_t i = 0; i < self->n; i++)
        zmq_msg_close (&self->frames[i]);
    self->n = self->count = self->size = 0;
}

int codec_frames_parse (codec_frames_t *self, size_t first, codec_cmd_t *cmd,
                        codec_header_t *header, zmq_msg_t **payload_p, char *err, size_t err_size)
{
    const uint8_t *data[CODEC_MAX_FRAMES];
    size_t size[CODEC_MAX_FRAMES];
    size_t n = 0, payload;
    for (size_t i = first; i < self->n; i++, n++) {
        data[n] = zmq_msg_data (&self->frames[i]);
        size[n] = zmq_msg_size (&self->frames[i]);
    }
    *payload_p = NULL;
    size_t frames = self->count > first ? self->count - first : 0;
    if (parse_frames (data, size, frames, cmd, header, &payload, err, err_size))
        return -1;
    if (payload)
        *payload_p = &self->frames[first + payload];
    return 0;
}

int codec_send_frames (void *socket, const void *identity, size_t identity_size, codec_cmd_t cmd,
                       const codec_header_t *header, zmq_msg_t *payload)
{
    msgpack_sbuffer *packed = pack_header (header);
    uint8_t cmd_byte = (uint8_t)cmd;
    if (identity && zmq_send (socket, identity, identity_size, ZMQ_SNDMORE) == -1)
        return -1;
    if (zmq_send (socket, CODEC_SIGNATURE, CODEC_SIGNATURE_LEN, ZMQ_SNDMORE) == -1 ||
        zmq_send (socket, &cmd_byte, 1, ZMQ_SNDMORE) == -1 ||
        zmq_send (socket, packed->data, packed->size, payload ? ZMQ_SNDMORE : 0) == -1)
        return -1;
    if (payload) {
        //  A copy of a zmq_msg_t shares its bytes (a reference count); the
        //  copy is what libzmq consumes
        zmq_msg_t shared;
        zmq_msg_init (&shared);
        if (zmq_msg_copy (&shared, payload) == -1 || zmq_msg_send (&shared, socket, 0) == -1) {
            zmq_msg_close (&shared);
            return -1;
        }
    }
    return 0;
}

//  Reads one tensor map into t.
static int decode_tensor (const msgpack_object *o, codec_tensor_t *t, uint64_t max_elements,
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
        if (key_is (key, "name"))
            name = val;
        else if (key_is (key, "datatype"))
            datatype = val;
        else if (key_is (key, "shape"))
            shape = val;
        else if (key_is (key, "data"))
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
        if (get_uint (&shape->via.array.ptr[d], INT64_MAX, &dim)) {
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
    if (!elem && codec_bytes_check (t->data, t->size, t->elements) != (int64_t)t->size) {
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
    if (unpack_checked (buf, size, &object, "payload", err, err_size))
        goto done;
    const msgpack_object *root = &object;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size == 0 ||
        root->via.array.size > max) {
        snprintf (err, err_size, "payload must be an array of 1..%zu tensors", max);
        goto done;
    }
    for (uint32_t i = 0; i < root->via.array.size; i++)
        if (decode_tensor (&root->via.array.ptr[i], &tensors[i], max_elements, why, sizeof why)) {
            snprintf (err, err_size, "tensor %u: %s", i, why);
            goto done;
        }
    rc = (int)root->via.array.size;
done:
    release_zone ();
    return rc;
}

int64_t codec_bytes_check (const void *data, size_t size, uint64_t elements)
{
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
