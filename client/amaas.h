/*  amaas.h - the client library of amaas, "AI model as a service".

    libamaas sends inference jobs to an amaas broker and returns their results.
    One amaas_client_t wraps one ZeroMQ DEALER socket: a client may predict
    synchronously (amaas_predict), or pipeline many jobs with amaas_send and
    collect their results, in any order, with amaas_recv.

    Tensors follow the KServe V2 shape: a name, a datatype, a shape whose first
    dimension is the batch, and little-endian row-major data.  Errors are a
    gRPC-style code and a message a person can act on.

    A job lives until its deadline (amaas_options_t.deadline_ms, else the
    client's timeout), however long it waits or computes.  It is sent again,
    with the same id, only when the broker it went to is gone (restarted, or
    the connection replaced: the library checks the broker's epoch every
    heartbeat while jobs are pending), or after a backoff when it comes back
    UNAVAILABLE (worker lost), a bounded number of times; the broker
    attaches a job sent again to the one it still holds, and if an answer
    comes twice the library drops the second.  Each job gets exactly one
    result from amaas_recv or amaas_predict.  A job given up (its deadline
    passed, amaas_cancel) is dropped by the broker too.

    A client is not thread-safe: use one per thread.
*/
#ifndef AMAAS_H_INCLUDED
#define AMAAS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

//  What libamaas exports: it is built with hidden visibility, so that only
//  the amaas_* functions declared here are visible to programs.
#if defined(__GNUC__)
#define AMAAS_EXPORT __attribute__ ((visibility ("default")))
#else
#define AMAAS_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define AMAAS_VERSION_MAJOR 0
#define AMAAS_VERSION_MINOR 1
#define AMAAS_VERSION_PATCH 0

//  Default broker endpoints
#define AMAAS_DEFAULT_FRONTEND "tcp://127.0.0.1:5555"

//  Largest number of dimensions a tensor may have
#define AMAAS_MAX_DIMS 8

//  Error codes; the numbers are gRPC's and go over the wire as they are.
typedef enum {
    AMAAS_OK = 0,
    AMAAS_CANCELLED = 1,
    AMAAS_UNKNOWN = 2,
    AMAAS_INVALID_ARGUMENT = 3,   //  the request is wrong: do not retry it as it is
    AMAAS_DEADLINE_EXCEEDED = 4,  //  no answer in time
    AMAAS_NOT_FOUND = 5,          //  no such model
    AMAAS_PERMISSION_DENIED = 7,  //  not allowed to call this model
    AMAAS_RESOURCE_EXHAUSTED = 8, //  queue full: retry later
    AMAAS_INTERNAL = 13,          //  a bug in amaas
    AMAAS_UNAVAILABLE = 14,       //  no worker, worker lost, broker gone: retryable
    AMAAS_UNAUTHENTICATED = 16
} amaas_code_t;

//  Tensor element types (KServe V2 names)
typedef enum {
    AMAAS_DTYPE_INVALID = 0,
    AMAAS_FP32,
    AMAAS_FP64,
    AMAAS_INT32,
    AMAAS_INT64,
    AMAAS_UINT8,
    AMAAS_BOOL,
    AMAAS_BYTES
} amaas_dtype_t;

//  An error: a code and a message for a person.
typedef struct {
    amaas_code_t code;
    char message[256];
} amaas_error_t;

//  A tensor.  In a request the caller owns every pointer and the library only
//  reads them.  In a result the library owns everything (amaas_result_destroy).
//  For BYTES, data holds each element as a 4-byte little-endian length followed
//  by its bytes, and size is the total.
typedef struct {
    const char *name;              //  tensor name, e.g. "input"
    amaas_dtype_t datatype;        //  element type
    int ndim;                      //  number of dimensions, 1..AMAAS_MAX_DIMS
    int64_t shape[AMAAS_MAX_DIMS]; //  dimensions; shape[0] is the batch
    const void *data;              //  little-endian row-major values
    size_t size;                   //  bytes at data
} amaas_tensor_t;

//  A finished job: its outputs, or an error.  The library allocates it, with
//  its outputs, in one block (and keeps its own bookkeeping beside it, out
//  of sight): free it only with amaas_result_destroy, and do not copy it
//  expecting the copy to be freed.
typedef struct {
    uint64_t id;             //  the job id amaas_send returned
    amaas_error_t error;     //  error.code is AMAAS_OK on success
    char *model;             //  model that answered
    char *version;           //  its version
    size_t n_outputs;        //  number of outputs
    amaas_tensor_t *outputs; //  outputs, owned by the result
    uint64_t queue_us;       //  time the job waited in the broker, microseconds
    uint64_t compute_us;     //  time the worker computed, microseconds
    uint32_t batch;          //  jobs the worker computed together with this one (>= 1)
} amaas_result_t;

//  Options of one job (amaas_send_opts).  Zero means "not set".
typedef struct {
    uint32_t deadline_ms; //  the job's lifetime (default: the client's timeout): answer
                          //  DEADLINE_EXCEEDED rather than compute after this long
    uint32_t priority;    //  0 (default) .. 3 (most urgent)
    const char *version;  //  model version required, or NULL
} amaas_options_t;

//  Largest number of outputs a model has (docs/MODEL_FORMAT.md)
#define AMAAS_MAX_OUTPUTS 8
//  Largest number of inputs a model has (graph models; others have one)
#define AMAAS_MAX_INPUTS 16

//  An output of a model, as its model file declares it.  shape[0] is -1
//  (the batch: the rows of a request); each other dimension is a size, or
//  -1 when the request sets it (a graph model's sequence length).
typedef struct {
    char name[64];                 //  e.g. "label"
    amaas_dtype_t datatype;        //  e.g. AMAAS_INT64
    uint32_t width;                //  0: shape [rows]; k: shape [rows, k]; a graph model's output:
                                   //  the elements per row when all are fixed, else 0
    int ndim;                      //  1..AMAAS_MAX_DIMS
    int64_t shape[AMAAS_MAX_DIMS]; //  e.g. {-1, 3} for [rows, 3]
} amaas_output_info_t;

//  An input of a model, as its model file declares it.
typedef struct {
    char name[128];                //  e.g. "input" or "input_ids"
    amaas_dtype_t datatype;        //  what the model takes (a request may send others that
                                   //  convert: any number to FP32 or FP64, INT32 to INT64)
    int ndim;                      //  1..AMAAS_MAX_DIMS
    int64_t shape[AMAAS_MAX_DIMS]; //  shape[0] -1 (the batch); others a size, or -1
} amaas_input_info_t;

//  A model the broker can serve.
typedef struct {
    char name[128];
    char version[64];
    uint32_t workers;       //  workers that serve this version now
    uint32_t width;         //  features per input row
    uint64_t mapped;        //  bytes of its model file a worker maps (shared between workers)
    uint32_t queued;        //  jobs waiting for this version
    char input[64];         //  name of its (first) input tensor, e.g. "input"
    amaas_dtype_t datatype; //  that input's datatype: a version-1 model's (FP32 or
                            //  FP64; it takes FP32, FP64, INT32 and INT64 inputs and
                            //  converts them), a graph model's first input's
    uint32_t n_outputs;     //  outputs, 1..AMAAS_MAX_OUTPUTS
    amaas_output_info_t outputs[AMAAS_MAX_OUTPUTS]; //  in the model's order
    //  Every input with its shape (input and datatype above are the first
    //  one's); 0 when unknown.  From a broker or worker older than these
    //  fields, the one input [-1, width] named input.
    uint32_t n_inputs;
    amaas_input_info_t inputs[AMAAS_MAX_INPUTS]; //  in the model's order
} amaas_model_info_t;

typedef struct amaas_client_t amaas_client_t;

//  Connect to a broker's frontend, e.g. "tcp://127.0.0.1:5555", or to several
//  brokers, all active: a comma-separated list of up to 8 frontends
//  ("tcp://10.0.0.5:5555,tcp://10.0.0.6:5555").  Jobs then go to the brokers
//  that answer, in turn, and those of a broker that stops answering are sent
//  to the others (docs/OPERATIONS.md "Several brokers").  ZeroMQ connects in
//  the background, so the connection is proved by a round trip to a broker
//  that must complete within timeout_ms.  On error, NULL is returned and err
//  says why (UNAVAILABLE when no broker answers).
AMAAS_EXPORT amaas_client_t *amaas_connect (const char *endpoint, int timeout_ms,
                                            amaas_error_t *err);

//  Same, over CURVE (a broker with security on, docs/SECURITY.md): the
//  connection is encrypted, the broker proves it holds the key whose
//  public certificate is at server_cert, and the client authenticates with
//  its key pair at cert (the public file; the secret is cert + "_secret",
//  as 'amaas keygen' writes them).  On error, NULL is returned and err says
//  why (INVALID_ARGUMENT for unreadable keys, UNAVAILABLE when the broker
//  does not answer, e.g. because it refused the key).
AMAAS_EXPORT amaas_client_t *amaas_connect_curve (const char *endpoint, int timeout_ms,
                                                  const char *server_cert, const char *cert,
                                                  amaas_error_t *err);

//  Close the connection and free the client; nulls *self_p.  Cannot fail.
AMAAS_EXPORT void amaas_close (amaas_client_t **self_p);

//  Timeout, in milliseconds, that amaas_predict and amaas_recv wait by
//  default; it is also the deadline of a job sent without one.  Cannot fail.
AMAAS_EXPORT void amaas_set_timeout (amaas_client_t *self, int timeout_ms);

//  Retries: a job is sent at most `attempts` times (1 = never resent); it
//  is resent only after UNAVAILABLE, when the broker's epoch changed
//  (restart, new connection) or, with several brokers, when its broker
//  missed 3 PINGs while another answers; never because it is slow.  While jobs are
//  pending the client PINGs the broker every heartbeat_ms for its epoch.
//  Defaults: 3 attempts, 1000 ms.  Cannot fail.
AMAAS_EXPORT void amaas_set_retry (amaas_client_t *self, int attempts, int heartbeat_ms);

//  Send one job for `model` with the given inputs, without waiting for the
//  result.  Returns the job's id (never 0); on error returns 0 and err says why.
//  The inputs are encoded before the call returns: the caller may free them.
AMAAS_EXPORT uint64_t amaas_send (amaas_client_t *self, const char *model,
                                  const amaas_tensor_t *inputs, size_t n_inputs,
                                  amaas_error_t *err);

//  Same, with options (deadline, priority, version); opts may be NULL.
AMAAS_EXPORT uint64_t amaas_send_opts (amaas_client_t *self, const char *model,
                                       const amaas_tensor_t *inputs, size_t n_inputs,
                                       const amaas_options_t *opts, amaas_error_t *err);

//  Give up job `id`: the library forgets it (no result will come for it)
//  and tells the broker, which drops it if it is still queued and tells
//  its worker to skip it if not yet started.  Returns 0, -1 if no such job
//  is pending.
AMAAS_EXPORT int amaas_cancel (amaas_client_t *self, uint64_t id);

//  For an event loop that waits on other things too (amaas-gateway): a
//  file descriptor that becomes readable when messages may have come
//  (libzmq's ZMQ_FD, edge-triggered; with several brokers, an epoll set of
//  theirs), and the milliseconds until the
//  client's next timer (a PING, a resend, a deadline; INT_MAX: none).
//  Wait with poll(2) on the fd for POLLIN at most amaas_wake_ms, then call
//  amaas_recv with timeout 0 until it returns NULL: that takes in every
//  message waiting, fires the timers and re-arms the fd.  Cannot fail.
AMAAS_EXPORT int amaas_fd (const amaas_client_t *self);
AMAAS_EXPORT int amaas_wake_ms (amaas_client_t *self);

//  Jobs sent and not yet returned by amaas_recv / amaas_predict.
AMAAS_EXPORT size_t amaas_pending (const amaas_client_t *self);

//  Counters since connect: attempts resent, and answers dropped as
//  duplicates.  Either pointer may be NULL.  Cannot fail.
AMAAS_EXPORT void amaas_stats (const amaas_client_t *self, uint64_t *resent, uint64_t *duplicates);

//  Wait up to timeout_ms (-1: the client's timeout) for the next result of any
//  job sent on this client.  Returns a result the caller frees with
//  amaas_result_destroy; returns NULL on timeout, and err says
//  DEADLINE_EXCEEDED.  A job's error is a result with error.code set; a job
//  that got no answer within its deadline is a result with
//  DEADLINE_EXCEEDED.
AMAAS_EXPORT amaas_result_t *amaas_recv (amaas_client_t *self, int timeout_ms, amaas_error_t *err);

//  Send one job and wait for its result (the client's timeout).  Results of
//  other jobs that arrive meanwhile are kept for amaas_recv.  Returns NULL only
//  when no result came (err says why); otherwise check result->error.code.
AMAAS_EXPORT amaas_result_t *amaas_predict (amaas_client_t *self, const char *model,
                                            const amaas_tensor_t *inputs, size_t n_inputs,
                                            amaas_error_t *err);

//  Free a result and null *self_p.  Cannot fail.
AMAAS_EXPORT void amaas_result_destroy (amaas_result_t **self_p);

//  Output of a result by name, or NULL if it has none.
AMAAS_EXPORT const amaas_tensor_t *amaas_result_output (const amaas_result_t *self,
                                                        const char *name);

//  Ask the broker which models it can serve.  Fills up to `max` entries of
//  models and returns how many models there are (may be more than max); -1 on
//  error with err set.
AMAAS_EXPORT int amaas_models (amaas_client_t *self, amaas_model_info_t *models, size_t max,
                               amaas_error_t *err);

//  Name of a code ("NOT_FOUND") and of a datatype ("FP32").  Never NULL.
AMAAS_EXPORT const char *amaas_code_name (amaas_code_t code);
AMAAS_EXPORT const char *amaas_dtype_name (amaas_dtype_t dtype);

//  Datatype by name, AMAAS_DTYPE_INVALID if unknown.
AMAAS_EXPORT amaas_dtype_t amaas_dtype_from_name (const char *name, size_t len);

//  Bytes per element of a fixed-size datatype; 0 for BYTES and INVALID.
AMAAS_EXPORT size_t amaas_dtype_size (amaas_dtype_t dtype);

#ifdef __cplusplus
}
#endif

#endif
