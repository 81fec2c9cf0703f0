/*  test_codec.c - unit tests of the wire codec: round trips of headers,
    tensors and messages, and refusal of malformed input of every kind.
*/
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static char err[CODEC_MESSAGE_MAX];

//  Encodes a header and returns its bytes in a frame
static zframe_t *encoded (const codec_header_t *h)
{
    zframe_t *f = codec_header_encode (h);
    ck_assert_ptr_nonnull (f);
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
    zframe_t *f = encoded (&in);
    ck_assert_int_eq (codec_header_decode (&out, zframe_data (f), zframe_size (f), err, sizeof err),
                      0);
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
    zframe_destroy (&f);
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
    zframe_t *f = encoded (&in);
    ck_assert_int_eq (codec_header_decode (&out, zframe_data (f), zframe_size (f), err, sizeof err),
                      0);
    ck_assert_uint_eq (out.n_models, 3);
    ck_assert_str_eq (out.models[2].name, "model-2");
    ck_assert_str_eq (out.models[2].version, "3");
    ck_assert_uint_eq (out.models[2].workers, 20);
    zframe_destroy (&f);
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
    zframe_t *f = encoded (&h);
    ck_assert_int_eq (
        codec_header_decode (&again, zframe_data (f), zframe_size (f), err, sizeof err), 0);
    ck_assert_str_eq (again.models[0].name, "b");
    zframe_destroy (&f);
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
    zframe_t *f = encoded (&in);
    size_t size = zframe_size (f);
    for (size_t cut = 0; cut < size; cut++) {
        //  A private copy of exactly `cut` bytes, so ASan sees any overread
        uint8_t *copy = malloc (cut ? cut : 1);
        memcpy (copy, zframe_data (f), cut);
        ck_assert_int_eq (codec_header_decode (&out, copy, cut, err, sizeof err), -1);
        free (copy);
    }
    zframe_destroy (&f);
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
    zframe_t *frame = codec_tensors_encode (in, 4);
    codec_tensor_t out[CODEC_MAX_TENSORS];
    int n = codec_tensors_decode (zframe_data (frame), zframe_size (frame), out, CODEC_MAX_TENSORS,
                                  1000, err, sizeof err);
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
    zframe_destroy (&frame);
}
END_TEST

//  Encodes one tensor and tries to decode it: returns decode's result.
static int decode_one (codec_tensor_t t, uint64_t max_elements)
{
    zframe_t *frame = codec_tensors_encode (&t, 1);
    codec_tensor_t out[2];
    int n = codec_tensors_decode (zframe_data (frame), zframe_size (frame), out, 2, max_elements,
                                  err, sizeof err);
    zframe_destroy (&frame);
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
    zframe_t *frame = codec_tensors_encode (three, 3);
    codec_tensor_t out[2];
    ck_assert_int_eq (codec_tensors_decode (zframe_data (frame), zframe_size (frame), out, 2, 100,
                                            err, sizeof err),
                      -1);
    zframe_destroy (&frame);
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

START_TEST (test_msg_round_trip_and_refusals)
{
    codec_header_t h = {0}, out = {0};
    h.fields = HDR_ID;
    h.id = 3;
    codec_header_set_model (&h, "linear");
    double d[2] = {0.5, 1};
    codec_tensor_t t = tensor ("input", AMAAS_FP64, 2, 1, d, sizeof d);
    zframe_t *payload = codec_tensors_encode (&t, 1);
    zmsg_t *msg = codec_msg_new (CMD_REQUEST, &h, &payload);
    ck_assert_ptr_null (payload);
    ck_assert_uint_eq (zmsg_size (msg), 4);
    codec_cmd_t cmd;
    zframe_t *got;
    ck_assert_int_eq (codec_msg_parse (msg, &cmd, &out, &got, err, sizeof err), 0);
    ck_assert_int_eq (cmd, CMD_REQUEST);
    ck_assert_str_eq (out.model, "linear");
    ck_assert_ptr_nonnull (got);

    //  REQUEST without payload
    zmsg_t *bad = codec_msg_new (CMD_REQUEST, &h, NULL);
    ck_assert_int_eq (codec_msg_parse (bad, &cmd, &out, &got, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "frame count"));
    zmsg_destroy (&bad);
    //  Unknown command
    bad = codec_msg_new (CMD_REQUEST, &h, NULL);
    zframe_t *cmd_frame = zmsg_first (bad);
    cmd_frame = zmsg_next (bad);
    zframe_data (cmd_frame)[0] = 0x7e;
    ck_assert_int_eq (codec_msg_parse (bad, &cmd, &out, &got, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "unknown command"));
    zmsg_destroy (&bad);
    //  Another protocol
    bad = zmsg_new ();
    zmsg_addstr (bad, "GET / HTTP/1.1");
    ck_assert_int_eq (codec_msg_parse (bad, &cmd, &out, &got, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "signature"));
    zmsg_destroy (&bad);
    //  Empty message, five frames
    bad = zmsg_new ();
    ck_assert_int_eq (codec_msg_parse (bad, &cmd, &out, &got, err, sizeof err), -1);
    zmsg_addstr (bad, "x");
    zmsg_destroy (&bad);
    zmsg_addstr (msg, "extra");
    ck_assert_int_eq (codec_msg_parse (msg, &cmd, &out, &got, err, sizeof err), -1);
    zmsg_destroy (&msg);
    codec_header_reset (&out);
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
    zframe_t *frame = codec_tensors_encode (&t, 1);
    size_t size = zframe_size (frame);
    uint8_t *buf = malloc (size);
    srand (1234);
    codec_header_t h = {0};
    for (int round = 0; round < 20000; round++) {
        memcpy (buf, zframe_data (frame), size);
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
    zframe_destroy (&frame);
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
    ck_assert_int_eq (codec_bytes_check (two, sizeof two, 2), 9);
    ck_assert_int_eq (codec_bytes_check (two, sizeof two, 3), -1);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("codec");
    TCase *tc = tcase_create ("codec");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_header_round_trip);
    tcase_add_test (tc, test_models_round_trip);
    tcase_add_test (tc, test_header_refused);
    tcase_add_test (tc, test_models_without_version_round_trip);
    tcase_add_test (tc, test_mp_check_bounds);
    tcase_add_test (tc, test_truncated_header_every_offset);
    tcase_add_test (tc, test_tensors_round_trip);
    tcase_add_test (tc, test_tensors_refused);
    tcase_add_test (tc, test_tensor_fields_refused);
    tcase_add_test (tc, test_msg_round_trip_and_refusals);
    tcase_add_test (tc, test_frames_recv_parse_and_send);
    tcase_add_test (tc, test_random_bytes);
    tcase_add_test (tc, test_names);
    suite_add_tcase (s, tc);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
