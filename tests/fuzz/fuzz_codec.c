/*  fuzz_codec.c - libFuzzer target for the wire codec.

    The input is cut into frames at each "\xff\xfe" pair (so the fuzzer can
    build multipart messages) and fed to codec_frames_parse; every frame is also
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
    msgpack_sbuffer again;
    msgpack_sbuffer_init (&again);
    CHECK (codec_tensors_pack (tensors, (size_t)n, &again) == 0);
    codec_tensor_t copy[CODEC_MAX_TENSORS];
    int m = codec_tensors_decode (again.data, again.size, copy, CODEC_MAX_TENSORS, 1u << 20, err,
                                  sizeof err);
    CHECK (m == n);
    for (int i = 0; i < n; i++) {
        CHECK (copy[i].size == tensors[i].size);
        CHECK (memcmp (copy[i].data, tensors[i].data, copy[i].size) == 0);
        CHECK (copy[i].datatype == tensors[i].datatype && copy[i].ndim == tensors[i].ndim);
    }
    msgpack_sbuffer_destroy (&again);
}

static void check_header (const uint8_t *data, size_t size)
{
    codec_header_t h = {0}, again = {0};
    char err[CODEC_MESSAGE_MAX];
    if (codec_header_decode (&h, data, size, err, sizeof err) == 0) {
        msgpack_sbuffer frame;
        msgpack_sbuffer_init (&frame);
        CHECK (codec_header_pack (&h, &frame) == 0);
        CHECK (codec_header_decode (&again, frame.data, frame.size, err, sizeof err) == 0);
        CHECK (again.fields == h.fields && again.id == h.id && again.job == h.job);
        CHECK (strcmp (again.model, h.model) == 0 && again.n_models == h.n_models);
        for (size_t i = 0; i < h.n_models; i++)
            CHECK (memcmp (&again.models[i].meta, &h.models[i].meta, sizeof h.models[i].meta) == 0);
        msgpack_sbuffer_destroy (&frame);
    }
    codec_header_reset (&h);
    codec_header_reset (&again);
}

//  Holds one more frame of a message as a receive would: the first
//  CODEC_MAX_FRAMES are kept, all are counted.
static void s_add_frame (codec_frames_t *frames, const uint8_t *data, size_t size)
{
    check_header (data, size);
    check_tensors (data, size);
    frames->count++;
    frames->size += size;
    if (frames->n == CODEC_MAX_FRAMES)
        return;
    zmq_msg_t *frame = &frames->frames[frames->n++];
    CHECK (zmq_msg_init_size (frame, size) == 0);
    if (size)
        memcpy (zmq_msg_data (frame), data, size);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    codec_frames_t frames = {0};
    size_t start = 0;
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == 0xff && data[i + 1] == 0xfe) {
            s_add_frame (&frames, data + start, i - start);
            start = i + 2;
            i++;
        }
    s_add_frame (&frames, data + start, size - start);
    codec_header_t h = {0};
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    char err[CODEC_MESSAGE_MAX];
    if (codec_frames_parse (&frames, 0, &cmd, &h, &payload, err, sizeof err) == 0 && payload)
        check_tensors (zmq_msg_data (payload), zmq_msg_size (payload));
    codec_header_reset (&h);
    codec_frames_close (&frames);
    return 0;
}
