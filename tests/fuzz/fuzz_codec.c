/*  fuzz_codec.c - libFuzzer target for the wire codec.

    The input is cut into frames at each "\xff\xfe" pair (so the fuzzer can
    build multipart messages) and fed to codec_msg_parse; every frame is also
    decoded alone as a header and as a tensor payload.  Whatever decodes must
    re-encode, and the re-encoding must decode to the same thing.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

//  Checked in every build type (assert is compiled out with NDEBUG)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf (stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
            abort ();                                                                              \
        }                                                                                          \
    } while (0)

static void check_tensors (const uint8_t *data, size_t size)
{
    codec_tensor_t tensors[CODEC_MAX_TENSORS];
    char err[CODEC_MESSAGE_MAX];
    int n =
        codec_tensors_decode (data, size, tensors, CODEC_MAX_TENSORS, 1u << 20, err, sizeof err);
    if (n <= 0)
        return;
    for (int i = 0; i < n; i++) {
        CHECK ((const uint8_t *)tensors[i].data >= data);
        CHECK ((const uint8_t *)tensors[i].data + tensors[i].size <= data + size);
    }
    zframe_t *again = codec_tensors_encode (tensors, (size_t)n);
    codec_tensor_t copy[CODEC_MAX_TENSORS];
    int m = codec_tensors_decode (zframe_data (again), zframe_size (again), copy, CODEC_MAX_TENSORS,
                                  1u << 20, err, sizeof err);
    CHECK (m == n);
    for (int i = 0; i < n; i++) {
        CHECK (copy[i].size == tensors[i].size);
        CHECK (memcmp (copy[i].data, tensors[i].data, copy[i].size) == 0);
        CHECK (copy[i].datatype == tensors[i].datatype && copy[i].ndim == tensors[i].ndim);
    }
    zframe_destroy (&again);
}

static void check_header (const uint8_t *data, size_t size)
{
    codec_header_t h = {0}, again = {0};
    char err[CODEC_MESSAGE_MAX];
    if (codec_header_decode (&h, data, size, err, sizeof err) == 0) {
        zframe_t *frame = codec_header_encode (&h);
        CHECK (codec_header_decode (&again, zframe_data (frame), zframe_size (frame), err,
                                    sizeof err) == 0);
        CHECK (again.fields == h.fields && again.id == h.id && again.job == h.job);
        CHECK (strcmp (again.model, h.model) == 0 && again.n_models == h.n_models);
        zframe_destroy (&frame);
    }
    codec_header_reset (&h);
    codec_header_reset (&again);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    zmsg_t *msg = zmsg_new ();
    size_t start = 0;
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == 0xff && data[i + 1] == 0xfe) {
            zmsg_addmem (msg, data + start, i - start);
            start = i + 2;
            i++;
        }
    zmsg_addmem (msg, data + start, size - start);
    for (zframe_t *f = zmsg_first (msg); f; f = zmsg_next (msg)) {
        check_header (zframe_data (f), zframe_size (f));
        check_tensors (zframe_data (f), zframe_size (f));
    }
    codec_header_t h = {0};
    codec_cmd_t cmd;
    zframe_t *payload;
    char err[CODEC_MESSAGE_MAX];
    if (codec_msg_parse (msg, &cmd, &h, &payload, err, sizeof err) == 0 && payload)
        check_tensors (zframe_data (payload), zframe_size (payload));
    codec_header_reset (&h);
    zmsg_destroy (&msg);
    return 0;
}
