/*  batch.h - the worker's batching policy: which waiting jobs compute
    together, checked and cut apart again, without threads or sockets.

    A job (batch_job_t) points to the model that serves it (a batch_model_t:
    the model and its batch settings).  Jobs wait on a queue (a list_t of
    batch_job_t linked by node, oldest first).  A batch (batch_t) is for one
    model: batch_begin starts it for the model of the oldest job, and
    batch_gather takes from the queue, in order, every job for that model
    whose rows still fit under the model's max_batch (and MAX_JOBS), each
    checked on its own (batch_check_job: one input of the model's width and
    a datatype it converts, outputs that exist, deadline not passed); a job
    that fails its check is answered at once with the error, onto the
    caller's answered list.  Jobs for other models keep their place.  Once
    batch_ready says so (full, or the model's batch delay is over), the
    caller stacks the members' rows (batch_member), runs the model once, and
    cuts each member's rows back out of the outputs into its job's result
    (batch_member_outputs).

    Time is an argument (microseconds on the monotonic clock), so that the
    tests decide when deadlines and batch delays pass.  The batch and the
    jobs allocate nothing per job: the members array and the output buffers
    are the batch's, reused from batch to batch.
*/
#ifndef AMAAS_BATCH_H_INCLUDED
#define AMAAS_BATCH_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "codec.h"
#include "graph.h"
#include "list.h"
#include "model.h"

#define BATCH_MAX_JOBS 1024 //  jobs in one batch, whatever their rows

//  A model as batches compute it.  Set before the first job points to it;
//  read-only from then on, until no job points to it.
typedef struct {
    model_t *model;          //  the loaded model
    size_t max_batch;        //  rows stacked into one run at most (1: no batching)
    uint64_t batch_delay_us; //  how long to wait for more jobs to stack
    size_t inline_work;      //  multiply-adds per row if the I/O thread may run a job
                             //  alone, 0: never (compute_inline_work)
} batch_model_t;

typedef struct {
    list_node_t node;  //  in exactly one queue or pool, or in none while handled
    list_node_t every; //  in the list of every job (to free them at the end)
    //  The request, filled by the I/O thread
    uint64_t token;                                  //  broker's job token
    uint64_t connection;                             //  connection it came on
    uint32_t broker;                                 //  from broker number (of the list)
    char model[CODEC_NAME_MAX];                      //  model asked for
    const batch_model_t *serving;                    //  what computes it (never NULL)
    size_t n_outputs;                                //  outputs asked for, 0 = all
    char outputs[CODEC_MAX_OUTPUTS][CODEC_NAME_MAX]; //  their names
    uint64_t deadline_us;                            //  monotonic; 0 = none
    zmq_msg_t payload;                               //  inputs
    //  The result, filled when it is answered
    const model_t *served_by;        //  model that answered, NULL if none
    amaas_code_t code;               //  AMAAS_OK or the error
    char message[CODEC_MESSAGE_MAX]; //  error message
    uint64_t compute_us;             //  time the batch computed
    uint32_t batch;                  //  jobs in the batch
    zmq_msg_t result;                //  encoded outputs (AMAAS_OK only)
} batch_job_t;

//  A job taking part in a batch
typedef struct {
    batch_job_t *job;
    //  Its input tensors, checked (pointing into the payload), in the
    //  model's order: one for a version-1 model, one per graph input
    codec_tensor_t inputs[GRAPH_MAX_INPUTS];
    size_t n_inputs;
    size_t rows;      //  its rows (the batch dimension of every input)
    size_t first_row; //  where its rows start in the batch
} batch_member_t;

typedef struct batch_t batch_t;

//  The first job of a queue, NULL if it is empty.  Cannot fail.
batch_job_t *batch_queue_first (const list_t *queue);

//  Takes the job with this token and connection out of a queue and returns
//  it; NULL if it is not there.  Cannot fail.
batch_job_t *batch_queue_take (list_t *queue, uint64_t token, uint64_t connection);

//  Checks a job against its model at time now_us: deadline not passed, one
//  input tensor (at most max_elements) of shape [rows >= 1, width] and
//  datatype FP32, FP64, INT32 or INT64 (a graph model: each of its inputs,
//  found by name, of its rank, fixed dimensions and a datatype that
//  converts to its own, named dimensions that agree, the same rows, and
//  gather indices in range), the outputs asked for exist.  Fills member
//  (first_row 0).  Returns AMAAS_OK, or DEADLINE_EXCEEDED or
//  INVALID_ARGUMENT with a message a person can act on in err.
amaas_code_t batch_check_job (batch_job_t *job, uint64_t max_elements, uint64_t now_us,
                              batch_member_t *member, char *err, size_t err_size);

//  Answers a job with an error (its result holds no outputs) and appends
//  it to answered; the job is in no list.  Cannot fail.
void batch_job_fail (batch_job_t *job, amaas_code_t code, const char *message, list_t *answered);

//  A batch of up to max_jobs jobs (at most BATCH_MAX_JOBS) whose inputs
//  hold at most max_elements each.  NULL on out-of-memory.
batch_t *batch_new (size_t max_jobs, uint64_t max_elements);

//  Frees a batch and nulls *self_p; its jobs are not touched.  Cannot fail.
void batch_destroy (batch_t **self_p);

//  Empties the batch and starts one for serving at now_us: it gathers
//  until now_us + the model's batch delay.  Cannot fail.
void batch_begin (batch_t *self, const batch_model_t *serving, uint64_t now_us);

//  Moves the jobs of waiting that join the batch (above) into it, in order,
//  and the jobs for its model that fail their check to answered (counted in
//  batch_expired when their deadline passed).  Stops at the first job that
//  checks but does not fit: it leads the next batch.  A job of a graph
//  model whose shape differs from the batch's (another sequence length) is
//  skipped and keeps its place, as a job for another model.  Cannot fail.
void batch_gather (batch_t *self, list_t *waiting, uint64_t now_us, list_t *answered);

//  True when a member that passed batch_check_job may join a batch whose
//  first member is first: always for a version-1 model; for a graph model
//  when every input has the same dimensions after the batch (the same
//  sequence length).  Cannot fail.
bool batch_same_shape (const batch_member_t *first, const batch_member_t *member);

//  Adds a job that passed batch_check_job.  Returns 0, -1 if its rows do
//  not fit (the batch holds members and is at max_batch rows, or is at
//  max_jobs) or its shape differs from the first member's
//  (batch_same_shape), and nothing is changed.
int batch_add (batch_t *self, const batch_member_t *member);

//  True when the batch is to compute now: full (rows or jobs) or the batch
//  delay is over at now_us.  Cannot fail.
bool batch_ready (const batch_t *self, uint64_t now_us);

//  When the batch stops waiting for more jobs (monotonic us).  Cannot fail.
uint64_t batch_gather_until (const batch_t *self);

//  The model of the batch at hand (NULL before batch_begin), its jobs, its
//  rows, and member i (i < batch_size).  Cannot fail.
const batch_model_t *batch_serving (const batch_t *self);
size_t batch_size (const batch_t *self);
size_t batch_rows (const batch_t *self);
const batch_member_t *batch_member (const batch_t *self, size_t i);

//  Jobs batch_gather answered DEADLINE_EXCEEDED since batch_new.  Cannot
//  fail.
uint64_t batch_expired (const batch_t *self);

//  Cuts member i's rows out of the batch's outputs (n_outputs of them, as
//  the model emits them for batch_rows rows: outs[k] is output k) and
//  encodes the outputs its job asked for (all when it named none, in the
//  order it named them) into the job's result.  Returns 0, -1 on
//  out-of-memory (the result stays empty).
int batch_member_outputs (batch_t *self, size_t i, const model_output_t *outs, size_t n_outputs);

#endif
