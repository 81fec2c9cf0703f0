/*  frames.c - amaas messages on a ZeroMQ socket: receive, parse, send.

    A message is received frame by frame into zmq_msg_t's (the first five;
    any more are counted and dropped), parsed in place (the header is
    decoded, the payload stays a frame), and sent frame by frame: the small
    frames are copied by libzmq, the header is packed into a per-thread
    buffer, the payload goes by reference.
*/
#include "frames.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Parsing

//  Parses the frames of a message, given as their bytes.  *payload is set
//  to the index of the payload frame, or 0 if there is none.  Returns 0, or
//  -1 with a message in err.
static int s_parse (const uint8_t *const data[], const size_t size[], size_t frames,
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

//  --------------------------------------------------------------------------
//  Receiving

int codec_frames_recv (codec_frames_t *self, void *socket)
{
    assert (self);
    assert (socket);
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
    assert (self);
    assert (self->n <= CODEC_MAX_FRAMES);
    for (size_t i = 0; i < self->n; i++)
        zmq_msg_close (&self->frames[i]);
    self->n = self->count = self->size = 0;
}

int codec_frames_parse (codec_frames_t *self, size_t first, codec_cmd_t *cmd,
                        codec_header_t *header, zmq_msg_t **payload_p, char *err, size_t err_size)
{
    assert (self);
    assert (self->n <= CODEC_MAX_FRAMES && self->n <= self->count);
    assert (cmd && header && payload_p);
    const uint8_t *data[CODEC_MAX_FRAMES];
    size_t size[CODEC_MAX_FRAMES];
    size_t n = 0, payload;
    for (size_t i = first; i < self->n; i++, n++) {
        data[n] = zmq_msg_data (&self->frames[i]);
        size[n] = zmq_msg_size (&self->frames[i]);
    }
    *payload_p = NULL;
    size_t frames = self->count > first ? self->count - first : 0;
    if (s_parse (data, size, frames, cmd, header, &payload, err, err_size))
        return -1;
    if (payload)
        *payload_p = &self->frames[first + payload];
    return 0;
}

//  --------------------------------------------------------------------------
//  Sending

//  Each thread packs headers into its own buffer, reused from call to call
//  and freed when the thread ends.
static pthread_key_t s_header_buffer_key;
static pthread_once_t s_header_buffer_once = PTHREAD_ONCE_INIT;

static void s_header_buffer_free (void *buffer)
{
    msgpack_sbuffer_free (buffer);
}

static void s_header_buffer_init (void)
{
    pthread_key_create (&s_header_buffer_key, s_header_buffer_free);
}

//  Packs a header into the calling thread's buffer.  Returns the buffer, or
//  NULL on out-of-memory.
static msgpack_sbuffer *s_pack_header (const codec_header_t *header)
{
    pthread_once (&s_header_buffer_once, s_header_buffer_init);
    msgpack_sbuffer *buffer = pthread_getspecific (s_header_buffer_key);
    if (!buffer) {
        buffer = msgpack_sbuffer_new ();
        if (!buffer)
            return NULL;
        if (pthread_setspecific (s_header_buffer_key, buffer)) {
            msgpack_sbuffer_free (buffer);
            return NULL;
        }
    }
    buffer->size = 0;
    return codec_header_pack (header, buffer) ? NULL : buffer;
}

int codec_send_frames (void *socket, const void *identity, size_t identity_size, codec_cmd_t cmd,
                       const codec_header_t *header, zmq_msg_t *payload)
{
    assert (socket);
    assert (header);
    msgpack_sbuffer *packed = s_pack_header (header);
    if (!packed) {
        errno = ENOMEM;
        return -1;
    }
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
