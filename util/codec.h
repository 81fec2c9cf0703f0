/*  codec.h - the amaas wire protocol: frames, headers and tensors.

    Every message is [signature "AMAAS01"][command byte][header map][payload?]
    (docs/PROTOCOL.md).  The header is a small msgpack map that this codec
    decodes into a codec_header_t whose `fields` bitmask says which keys were
    present; the payload is an array of tensors, decoded only by those who
    compute on it (worker, client): the broker forwards it untouched.

    All input is untrusted.  Before msgpack-c unpacks anything, codec_mp_check
    walks the bytes and refuses containers that claim more elements than bytes
    remain (msgpack-c would otherwise allocate for the claimed count first)
    and nesting deeper than a small limit.
*/
#ifndef AMAAS_CODEC_H_INCLUDED
#define AMAAS_CODEC_H_INCLUDED

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "amaas.h"

#define CODEC_SIGNATURE "AMAAS01"
#define CODEC_SIGNATURE_LEN 7

#define CODEC_NAME_MAX 128    //  model, tensor, output names incl. NUL
#define CODEC_VERSION_MAX 64  //  model version incl. NUL
#define CODEC_MESSAGE_MAX 256 //  error messages incl. NUL
#define CODEC_HOST_MAX 256    //  host name incl. NUL
#define CODEC_MAX_OUTPUTS 16  //  output names in a request
#define CODEC_MAX_TENSORS 16  //  tensors in a payload
#define CODEC_MAX_MODELS 1024 //  models in READY / MODELS_REPLY
#define CODEC_MAX_DEPTH 16    //  msgpack nesting accepted

typedef enum {
    CMD_REQUEST = 0x01,
    CMD_REPLY = 0x02,
    CMD_MODELS = 0x03,
    CMD_MODELS_REPLY = 0x04,
    CMD_PING = 0x05,
    CMD_PONG = 0x06,
    CMD_CANCEL = 0x07,
    CMD_ERROR = 0x0F,
    CMD_READY = 0x10,
    CMD_JOB = 0x11,
    CMD_RESULT = 0x12,
    CMD_HEARTBEAT = 0x13,
    CMD_DISCONNECT = 0x14,
    CMD_DRAIN = 0x15,
    CMD_CANCEL_JOB = 0x16,
    CMD_CONTROL = 0x20,
    CMD_CONTROL_REPLY = 0x21
} codec_cmd_t;

//  Bits of codec_header_t.fields: which keys are present
enum {
    HDR_ID = 1 << 0,
    HDR_JOB = 1 << 1,
    HDR_MODEL = 1 << 2,
    HDR_VERSION = 1 << 3,
    HDR_CODE = 1 << 4,
    HDR_MESSAGE = 1 << 5,
    HDR_QUEUE_US = 1 << 6,
    HDR_COMPUTE_US = 1 << 7,
    HDR_CREDIT = 1 << 8,
    HDR_PID = 1 << 9,
    HDR_HOST = 1 << 10,
    HDR_OUTPUTS = 1 << 11,
    HDR_MODELS = 1 << 12,
    HDR_REASON = 1 << 13,
    HDR_PRIORITY = 1 << 14,
    HDR_DEADLINE_MS = 1 << 15,
    HDR_BATCH = 1 << 16,
    HDR_COMMAND = 1 << 17,
    HDR_WORKER = 1 << 18,
    HDR_SESSION = 1 << 19,
    HDR_EPOCH = 1 << 20,
    HDR_MODEL_ERRORS = 1 << 21
};

#define CODEC_PRIORITIES 4 //  priority levels 0 (default) .. 3 (most urgent)

typedef struct {
    char name[CODEC_NAME_MAX];
    char version[CODEC_VERSION_MAX];
    uint32_t workers; //  MODELS_REPLY only
    uint32_t width;   //  input width (features per row), 0 if unknown
    uint64_t mapped;  //  bytes of its file the worker maps, 0 if unknown
    uint32_t queued;  //  MODELS_REPLY only: jobs waiting for this version
} codec_model_t;

//  A decoded or to-be-encoded header.  Strings are NUL-terminated copies.
typedef struct {
    uint32_t fields;                 //  HDR_* bits present
    uint64_t id;                     //  client's job id
    uint64_t job;                    //  broker's job token
    char model[CODEC_NAME_MAX];      //  model name
    char version[CODEC_VERSION_MAX]; //  model version
    uint32_t code;                   //  amaas_code_t
    char message[CODEC_MESSAGE_MAX]; //  error message, or DISCONNECT reason
    uint64_t queue_us;               //  time queued in the broker
    uint64_t compute_us;             //  time computing in the worker
    uint32_t credit;                 //  READY: jobs the worker may hold
    uint32_t pid;                    //  READY: worker's pid
    char host[CODEC_HOST_MAX];       //  READY: worker's host
    uint32_t batch;                  //  RESULT, REPLY: jobs computed together in one batch
    char command[32];                //  CONTROL: status, workers, models, drain, shutdown
    char worker[2 * 255 + 1];        //  CONTROL drain: the worker's id
    uint32_t priority;               //  REQUEST: 0 .. CODEC_PRIORITIES-1, higher first
    uint32_t deadline_ms;            //  REQUEST: budget from receipt; JOB: what is left
    uint64_t session;                //  REQUEST, CANCEL: the client's session (dedupe key)
    uint64_t epoch;                  //  PONG: changes with the broker or the connection
    uint32_t model_errors;           //  READY: model files the worker failed to load
    size_t n_outputs;                //  requested output names
    char outputs[CODEC_MAX_OUTPUTS][CODEC_NAME_MAX];
    size_t n_models;       //  READY / MODELS_REPLY entries
    codec_model_t *models; //  owned: codec_header_reset frees
} codec_header_t;

//  A decoded tensor.  name and data point into the buffer it was decoded
//  from, which must outlive it; name is not NUL-terminated.
typedef struct {
    const char *name;
    size_t name_len;
    amaas_dtype_t datatype;
    int ndim;
    int64_t shape[AMAAS_MAX_DIMS];
    uint64_t elements; //  product of shape
    const void *data;
    size_t size; //  bytes at data
} codec_tensor_t;

//  Empty a header: frees its models list and zeroes it.  Cannot fail.
void codec_header_reset (codec_header_t *self);

//  Set a string field (truncating to its buffer) and its presence bit.
void codec_header_set_model (codec_header_t *self, const char *model);
void codec_header_set_version (codec_header_t *self, const char *version);
void codec_header_set_message (codec_header_t *self, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Check that buf holds exactly one well-formed msgpack object whose
//  containers claim no more elements than bytes remain, nested at most
//  CODEC_MAX_DEPTH deep.  Returns 0, or -1 with a message in err.
int codec_mp_check (const void *buf, size_t size, char *err, size_t err_size);

//  Encode a header as a msgpack map into a new frame.  NULL on out-of-memory.
zframe_t *codec_header_encode (const codec_header_t *self);

//  Decode a header frame's bytes into self (reset first).  Returns 0; on a
//  malformed header returns -1 with a message in err, and self is reset.
int codec_header_decode (codec_header_t *self, const void *buf, size_t size, char *err,
                         size_t err_size);

//  Build a message [signature][cmd][header][payload]: payload may be NULL; if
//  not, the frame is taken and *payload_p nulled.  NULL on out-of-memory.
zmsg_t *codec_msg_new (codec_cmd_t cmd, const codec_header_t *header, zframe_t **payload_p);

//  Send [identity?][signature][cmd][header][payload?] on sock without
//  building a message: the small frames go straight to libzmq, the header is
//  packed into a buffer reused from call to call, and the payload frame is
//  sent by reference (libzmq shares its bytes; nothing is copied) and stays
//  the caller's.  identity and payload may be NULL.  Returns 0, -1 if the
//  socket refused the message.
int codec_send (zsock_t *sock, zframe_t *identity, codec_cmd_t cmd, const codec_header_t *header,
                zframe_t *payload);

//  Parse a message (without any ROUTER identity frame): check signature,
//  command and frame count, decode the header into `header`.  *payload_p is
//  set to the payload frame, still owned by msg, or NULL.  Returns 0; on a
//  protocol error returns -1 with a message in err (header may hold an id).
int codec_msg_parse (zmsg_t *msg, codec_cmd_t *cmd, codec_header_t *header, zframe_t **payload_p,
                     char *err, size_t err_size);

//  A received message as zmq_msg_t's, without czmq objects: receiving and
//  parsing one allocates nothing in amaas (libzmq hands received frames out
//  of its own receive buffers).  Frames past CODEC_MAX_FRAMES are received
//  and dropped, but counted, so that the parse refuses the message.
#define CODEC_MAX_FRAMES 5 //  ROUTER identity + signature, command, header, payload
typedef struct {
    zmq_msg_t frames[CODEC_MAX_FRAMES];
    size_t n;     //  frames held
    size_t count; //  frames the message had
    size_t size;  //  bytes in all its frames
} codec_frames_t;

//  Receive the next whole message from socket without waiting.  Returns 0,
//  or -1 when none is waiting (errno EAGAIN) or on an error (errno says
//  which); then nothing is held.
int codec_frames_recv (codec_frames_t *self, void *socket);

//  Release the frames held.  Cannot fail.
void codec_frames_close (codec_frames_t *self);

//  As codec_msg_parse, on the frames from index `first` (1 after a ROUTER
//  identity).  *payload_p points to the payload frame, still held by self.
int codec_frames_parse (codec_frames_t *self, size_t first, codec_cmd_t *cmd,
                        codec_header_t *header, zmq_msg_t **payload_p, char *err, size_t err_size);

//  As codec_send, on a libzmq socket with an identity given as bytes, and
//  a payload as a zmq_msg_t that libzmq shares (no copy) and that stays the
//  caller's.  identity and payload may be NULL.
int codec_send_frames (void *socket, const void *identity, size_t identity_size, codec_cmd_t cmd,
                       const codec_header_t *header, zmq_msg_t *payload);

//  Decode a payload: an array of at most max tensors.  Returns the count, or
//  -1 with a message in err.  Checks datatype names, shapes (1..8 dims,
//  element count without overflow, at most max_elements per tensor) and that
//  data holds exactly the bytes the shape needs.
int codec_tensors_decode (const void *buf, size_t size, codec_tensor_t *tensors, size_t max,
                          uint64_t max_elements, char *err, size_t err_size);

//  Encode n tensors into a payload frame.  NULL on out-of-memory.
zframe_t *codec_tensors_encode (const codec_tensor_t *tensors, size_t n);

//  Encode n tensors as a payload appended to sbuf (a buffer the caller
//  reuses).  Returns 0, -1 on out-of-memory.
int codec_tensors_pack (const codec_tensor_t *tensors, size_t n, msgpack_sbuffer *sbuf);

//  Size in bytes that a BYTES tensor of `elements` elements at data needs:
//  walks the length prefixes.  Returns -1 if they do not fit in size.
int64_t codec_bytes_check (const void *data, size_t size, uint64_t elements);

#endif
