/*  header.h - the header of an amaas message: commands and header fields.

    The header is a small msgpack map (docs/PROTOCOL.md) that decodes into a
    codec_header_t, whose `fields` bitmask says which keys were present.
    Each field is described once, in CODEC_HEADER_FIELDS: its key, its
    member, its presence bit, its kind and its bounds.  The struct members,
    the HDR_* bits, encoding, decoding and reset are all generated from that
    table, so that a new field is one line here (plus docs/PROTOCOL.md).
*/
#ifndef AMAAS_PROTO_HEADER_H_INCLUDED
#define AMAAS_PROTO_HEADER_H_INCLUDED

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "amaas.h"
#include "amaas_defs.h"

//  A number as a string literal, for messages that state a limit
#define CODEC_STR(number) CODEC_STR_ (number)
#define CODEC_STR_(number) #number

#define CODEC_NAME_MAX (DEFS_NAME_MAX + 1)       //  model, tensor, output names incl. NUL
#define CODEC_VERSION_MAX (DEFS_VERSION_MAX + 1) //  model version incl. NUL
#define CODEC_TENSOR_NAME_MAX                                                                      \
    (DEFS_TENSOR_NAME_MAX + 1)               //  a model's input or output name incl. NUL
#define CODEC_MODEL_OUTPUTS DEFS_OUTPUTS_MAX //  outputs a model declares
#define CODEC_MODEL_INPUTS 16                //  inputs a model declares (graph models)
#define CODEC_MODEL_DIMS AMAAS_MAX_DIMS      //  dimensions of a declared input or output
#define CODEC_DIM_MAX 4294967295             //  a declared fixed dimension, 1..CODEC_DIM_MAX
#define CODEC_MESSAGE_MAX 256                //  error messages incl. NUL
#define CODEC_HOST_MAX 256                   //  host name incl. NUL
#define CODEC_COMMAND_MAX 32                 //  CONTROL command incl. NUL
#define CODEC_WORKER_MAX 511                 //  worker id (hex of a 255-byte identity) incl. NUL
#define CODEC_MAX_OUTPUTS 16                 //  output names in a request
#define CODEC_MAX_MODELS 1024                //  models in READY / MODELS_REPLY
#define CODEC_PRIORITIES 4                   //  priority levels 0 (default) .. 3 (most urgent)

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

//  One output a model declares (READY, MODELS_REPLY)
typedef struct {
    char name[CODEC_TENSOR_NAME_MAX]; //  e.g. "label"
    amaas_dtype_t datatype;           //  a known datatype
    uint32_t width;                   //  0: shape [rows]; k: shape [rows, k]
    //  Its shape (key "shape"): ndim 0 when the peer did not send one (an
    //  older peer: width says it), else 1..CODEC_MODEL_DIMS dimensions,
    //  shape[0] -1 (the batch), the others -1 (set by the request) or
    //  1..CODEC_DIM_MAX; the dimensions past ndim are 0.
    uint32_t ndim;
    int64_t shape[CODEC_MODEL_DIMS];
} codec_output_t;

//  One input a model declares (key "inputs" of READY, MODELS_REPLY)
typedef struct {
    char name[CODEC_NAME_MAX];       //  1..DEFS_NAME_MAX bytes, e.g. "input_ids"
    amaas_dtype_t datatype;          //  a known datatype
    uint32_t ndim;                   //  1..CODEC_MODEL_DIMS
    int64_t shape[CODEC_MODEL_DIMS]; //  as codec_output_t's: -1 first, then -1 or a size
} codec_input_t;

//  What a model file declares of a model's tensors (READY, MODELS_REPLY).
//  Optional on the wire: a peer that did not send it leaves input "",
//  datatype INVALID, n_outputs 0 and n_inputs 0 (all zero), and such
//  metadata is encoded as no keys at all.  input and datatype are the
//  first input's name and datatype (for a version-1 model, its only
//  input; its datatype is the model's); inputs lists every input with its
//  shape, and is absent from older peers.
typedef struct {
    char input[CODEC_TENSOR_NAME_MAX];           //  its input tensor's name, "" if unknown
    amaas_dtype_t datatype;                      //  its datatype, INVALID if unknown
    uint32_t n_outputs;                          //  0 if unknown, else 1..CODEC_MODEL_OUTPUTS
    codec_output_t outputs[CODEC_MODEL_OUTPUTS]; //  in the model's order
    uint32_t n_inputs;                           //  0 if unknown, else 1..CODEC_MODEL_INPUTS
    codec_input_t inputs[CODEC_MODEL_INPUTS];    //  in the model's order
} codec_model_meta_t;

//  One entry of a models list (READY, MODELS_REPLY)
typedef struct {
    char name[CODEC_NAME_MAX];       //  model name
    char version[CODEC_VERSION_MAX]; //  model version, "" if none
    uint32_t workers;                //  MODELS_REPLY only
    uint32_t width;                  //  input width (features per row), 0 if unknown
    uint64_t mapped;                 //  bytes of its file the worker maps, 0 if unknown
    uint32_t queued;                 //  MODELS_REPLY only: jobs waiting for this version
    codec_model_meta_t meta;         //  input, datatype, outputs, inputs
} codec_model_t;

//  The header fields, in the order they are encoded: the wire bytes depend
//  on it, so a new field goes at the end.
//
//  X (key, member, BIT, kind, low, high, want): the key on the wire, the
//  member of codec_header_t, the presence bit HDR_BIT, and the kind:
//    u32, u64  an unsigned integer in low..high
//    str       a str of low..high-1 bytes without NUL, in char member[high]
//    text      a str for people, cut to fit char member[high]
//    text_as   a second key for an earlier text member (no member of its own)
//    names     an array of at most `high` names, member[high][CODEC_NAME_MAX]
//              and size_t n_member
//    models    an array of at most `high` codec_model_t maps, member (owned,
//              codec_header_reset frees it) and size_t n_member
//  want ends the message "header key 'KEY' must be ..." for a bad value
//  (models words its own messages).
//  (Comments are C comments: a // would swallow the next line.)
// clang-format off
#define CODEC_HEADER_FIELDS(X)                                                                     \
    X ("id",           id,           ID,           u64,     1, UINT64_MAX,         "a uint64 of at least 1") /* client's job id */ \
    X ("job",          job,          JOB,          u64,     0, UINT64_MAX,         "a uint64") /* broker's job token */ \
    X ("model",        model,        MODEL,        str,     1, CODEC_NAME_MAX,     "a str of 1.." CODEC_STR (DEFS_NAME_MAX) " bytes") \
    X ("version",      version,      VERSION,      str,     1, CODEC_VERSION_MAX,  "a str of 1.." CODEC_STR (DEFS_VERSION_MAX) " bytes") \
    X ("code",         code,         CODE,         u32,     0, 255,                "an error code (uint)") /* amaas_code_t */ \
    X ("message",      message,      MESSAGE,      text,    0, CODEC_MESSAGE_MAX,  "a str") /* error message, or DISCONNECT reason */ \
    X ("queue_us",     queue_us,     QUEUE_US,     u64,     0, UINT64_MAX,         "a uint64") /* time queued in the broker */ \
    X ("compute_us",   compute_us,   COMPUTE_US,   u64,     0, UINT64_MAX,         "a uint64") /* time computing in the worker */ \
    X ("credit",       credit,       CREDIT,       u32,     1, 65535,              "a uint in 1..65535") /* READY: jobs the worker may hold */ \
    X ("pid",          pid,          PID,          u32,     0, UINT32_MAX,         "a uint32") /* READY: worker's pid */ \
    X ("host",         host,         HOST,         str,     0, CODEC_HOST_MAX,     "a str of at most 255 bytes") /* READY: worker's host */ \
    X ("outputs",      outputs,      OUTPUTS,      names,   0, CODEC_MAX_OUTPUTS,  "an array of at most " CODEC_STR (CODEC_MAX_OUTPUTS) " names") /* requested output names */ \
    X ("models",       models,       MODELS,       models,  0, CODEC_MAX_MODELS,   "an array of at most " CODEC_STR (CODEC_MAX_MODELS) " maps") /* READY, MODELS_REPLY */ \
    X ("command",      command,      COMMAND,      str,     1, CODEC_COMMAND_MAX,  "a str of 1..31 bytes") /* CONTROL: status, workers, ... */ \
    X ("worker",       worker,       WORKER,       str,     1, CODEC_WORKER_MAX,   "a worker id (str)") /* CONTROL drain: the worker's id */ \
    X ("batch",        batch,        BATCH,        u32,     0, UINT32_MAX,         "a uint32") /* RESULT, REPLY: jobs computed together */ \
    X ("priority",     priority,     PRIORITY,     u32,     0, CODEC_PRIORITIES - 1, "a uint in 0..3") /* REQUEST: higher first */ \
    X ("deadline_ms",  deadline_ms,  DEADLINE_MS,  u32,     0, UINT32_MAX,         "a uint32 (milliseconds)") /* REQUEST: budget; JOB: what is left */ \
    X ("reason",       message,      REASON,       text_as, 0, CODEC_MESSAGE_MAX,  "a str") /* DISCONNECT: the same text as message */ \
    X ("session",      session,      SESSION,      u64,     1, UINT64_MAX,         "a uint64 of at least 1") /* REQUEST, CANCEL: dedupe key */ \
    X ("epoch",        epoch,        EPOCH,        u64,     1, UINT64_MAX,         "a uint64 of at least 1") /* PONG: changes with the broker */ \
    X ("model_errors", model_errors, MODEL_ERRORS, u32,     0, UINT32_MAX,         "a uint32") /* READY: model files that failed */
// clang-format on

//  The members each kind declares
#define CODEC_MEMBER_u32(member, high) uint32_t member;
#define CODEC_MEMBER_u64(member, high) uint64_t member;
#define CODEC_MEMBER_str(member, high) char member[high];
#define CODEC_MEMBER_text(member, high) char member[high];
#define CODEC_MEMBER_text_as(member, high)
#define CODEC_MEMBER_names(member, high)                                                           \
    size_t n_##member;                                                                             \
    char member[high][CODEC_NAME_MAX];
#define CODEC_MEMBER_models(member, high)                                                          \
    size_t n_##member;                                                                             \
    codec_model_t *member;
#define CODEC_MEMBER(key, member, bit, kind, low, high, want) CODEC_MEMBER_##kind (member, high)

//  HDR_INDEX_BIT: a field's place in the table; HDR_BIT: its presence bit
#define CODEC_FIELD_INDEX(key, member, bit, ...) HDR_INDEX_##bit,
#define CODEC_FIELD_BIT(key, member, bit, ...) HDR_##bit = 1u << HDR_INDEX_##bit,
enum { CODEC_HEADER_FIELDS (CODEC_FIELD_INDEX) CODEC_HEADER_FIELD_COUNT };
enum { CODEC_HEADER_FIELDS (CODEC_FIELD_BIT) };
_Static_assert(CODEC_HEADER_FIELD_COUNT <= 32, "codec_header_t.fields has 32 bits");

//  A decoded or to-be-encoded header.  Strings are NUL-terminated copies.
typedef struct {
    uint32_t fields; //  HDR_* bits present
    CODEC_HEADER_FIELDS (CODEC_MEMBER)
} codec_header_t;

//  Empty a header: frees its models list, clears every field and the
//  presence bits.  Cannot fail.
void codec_header_reset (codec_header_t *self);

//  Set a string field (truncating to its buffer) and its presence bit.
//  Cannot fail.
void codec_header_set_model (codec_header_t *self, const char *model);
void codec_header_set_version (codec_header_t *self, const char *version);
void codec_header_set_message (codec_header_t *self, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Encode the present fields as a msgpack map appended to sbuf.  Returns 0,
//  or -1 on out-of-memory (sbuf then holds a part: reset its size).
int codec_header_pack (const codec_header_t *self, msgpack_sbuffer *sbuf);

//  Decode a header's bytes into self (reset first).  Returns 0; on a
//  malformed header returns -1 with a message in err, and self is reset
//  but for the id, if one was readable (to answer the right job).
int codec_header_decode (codec_header_t *self, const void *buf, size_t size, char *err,
                         size_t err_size);

#endif
