/*  frames.h - amaas messages on a ZeroMQ socket: receive, parse, send.

    Every message is [signature "AMAAS01"][command byte][header map]
    [payload?] (docs/PROTOCOL.md), behind a ROUTER identity frame on the
    broker's sockets.  A received message is held as zmq_msg_t's, without
    czmq objects: receiving and parsing one allocates nothing in amaas
    (libzmq hands received frames out of its own receive buffers), and
    sending one goes frame by frame straight to libzmq, the payload by
    reference.
*/
#ifndef AMAAS_PROTO_FRAMES_H_INCLUDED
#define AMAAS_PROTO_FRAMES_H_INCLUDED

#include <stddef.h>
#include <zmq.h>

#include "header.h"

#define CODEC_SIGNATURE "AMAAS01"
#define CODEC_SIGNATURE_LEN 7

//  A received message.  Frames past CODEC_MAX_FRAMES are received and
//  dropped, but counted, so that the parse refuses the message.
#define CODEC_MAX_FRAMES 5 //  ROUTER identity + signature, command, header, payload
typedef struct {
    zmq_msg_t frames[CODEC_MAX_FRAMES]; //  the frames held
    size_t n;                           //  frames held
    size_t count;                       //  frames the message had
    size_t size;                        //  bytes in all its frames
} codec_frames_t;

//  Receive the next whole message from socket without waiting.  Returns 0,
//  or -1 when none is waiting (errno EAGAIN) or on an error (errno says
//  which); then nothing is held.
int codec_frames_recv (codec_frames_t *self, void *socket);

//  Release the frames held.  Cannot fail.
void codec_frames_close (codec_frames_t *self);

//  Parse the frames from index `first` (1 after a ROUTER identity): check
//  signature, command and frame count, decode the header into `header`.
//  *payload_p points to the payload frame, still held by self, or is NULL.
//  Returns 0; on a protocol error returns -1 with a message in err (header
//  may then hold the id, to answer the right job).
int codec_frames_parse (codec_frames_t *self, size_t first, codec_cmd_t *cmd,
                        codec_header_t *header, zmq_msg_t **payload_p, char *err, size_t err_size);

//  Send [identity?][signature][cmd][header][payload?] on a libzmq socket.
//  The header is packed into a buffer each thread reuses from call to call;
//  the payload, a zmq_msg_t, is shared with libzmq (no copy) and stays the
//  caller's.  identity and payload may be NULL.  Returns 0, or -1 if the
//  header cannot be packed (out of memory, errno ENOMEM) or the socket
//  refused a frame (errno says why).
int codec_send_frames (void *socket, const void *identity, size_t identity_size, codec_cmd_t cmd,
                       const codec_header_t *header, zmq_msg_t *payload);

#endif
