/*  model.h - a model loaded from an amaas model file, and its runtime.

    A model file (docs/MODEL_FORMAT.md) is msgpack: a header (name, version,
    datatype, input width, outputs) and an ordered list of operations.  The
    loader maps the file, checks every field, size and shape against the
    header, and keeps the weights in place in the mapping when they are
    aligned (the exporter aligns them), so that several worker processes on
    one machine share one copy.  A file that is not a valid model is refused
    with a message that says what is wrong and where.

    model_run computes the operations on a batch of rows, dense layers with
    BLIS gemm, into a workspace that is reused from call to call: on the steady
    state no memory is allocated.
*/
#ifndef AMAAS_MODEL_H_INCLUDED
#define AMAAS_MODEL_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include "amaas.h"
#include "amaas_defs.h"

#define MODEL_MAX_OUTPUTS DEFS_OUTPUTS_MAX

typedef struct model_t model_t;
typedef struct model_workspace_t model_workspace_t;
typedef struct graph_t graph_t;
typedef struct graph_ws_t graph_ws_t;

//  One output of a run.  data belongs to the workspace and stays valid until
//  the next model_run on it.
typedef struct {
    const char *name;              //  output name from the model file
    amaas_dtype_t datatype;        //  FP32, FP64, INT64 or BYTES (string labels)
    int ndim;                      //  1 ([rows]) .. AMAAS_MAX_DIMS
    int64_t shape[AMAAS_MAX_DIMS]; //  shape[0] == rows
    const void *data;              //  row-major values (BYTES: 4-byte LE length + bytes each)
    size_t size;                   //  bytes at data
} model_output_t;

//  Load and check a model file.  On error, NULL is returned and err holds a
//  message like "iris.amm: op 3 (dense): weights hold 40 bytes, 4x10 FP64
//  needs 320".  Never crashes on any input.
model_t *model_load (const char *path, char *err, size_t err_size);

//  Same, from a buffer the caller keeps alive as long as the model (used by
//  the tests and the fuzzer).  label names errors.
model_t *model_load_buffer (const void *data, size_t size, const char *label, char *err,
                            size_t err_size);

//  Free a model, null *self_p.  Cannot fail.
void model_destroy (model_t **self_p);

const char *model_name (const model_t *self);
const char *model_version (const model_t *self);
amaas_dtype_t model_dtype (const model_t *self); //  FP32 or FP64
size_t model_input_width (const model_t *self);  //  features per row
size_t model_output_count (const model_t *self);
const char *model_output_name (const model_t *self, size_t index);

const char *model_input_name (const model_t *self);                   //  e.g. "input"
amaas_dtype_t model_output_dtype (const model_t *self, size_t index); //  FP32/FP64/INT64/BYTES
//  Columns of an output: k for shape [rows, k], 0 for shape [rows].  For an
//  index out of range the output accessors return NULL, INVALID or 0.
size_t model_output_width (const model_t *self, size_t index);
//  Bytes of weights the loader copied because they were not 64-byte aligned
//  in the file (0 when every weight is used in place).  Cannot fail.
size_t model_weight_bytes_copied (const model_t *self);
//  Bytes of the model file the model maps (the whole file, read-only,
//  shared with every process that maps it); 0 for a model loaded from a
//  buffer.  Cannot fail.
size_t model_mapped_bytes (const model_t *self);

//  The checked operations, as model_run applies them.  Every width chains
//  (in_width of op i+1 is out_width of op i), every pointer is valid and
//  64-byte aligned, and sizes match the widths.
typedef enum {
    MODEL_OP_SCALE,     //  x = (x - a) / b per column; a, b: [in_width]
    MODEL_OP_DENSE,     //  x = x . a + b; a: [in_width][out_width], b: [out_width]
    MODEL_OP_IDENTITY,  //  unchanged
    MODEL_OP_RELU,      //  max (x, 0)
    MODEL_OP_TANH,      //  tanh (x)
    MODEL_OP_SIGMOID,   //  1 / (1 + exp (-x))
    MODEL_OP_SOFTMAX,   //  per row exp (x - max) / sum
    MODEL_OP_NORMALIZE, //  per row x / sum
    MODEL_OP_BINARY,    //  [rows, 1] p -> [rows, 2] (1 - p, p)
    MODEL_OP_OUTPUT,    //  emit the current tensor as outputs[output]
    MODEL_OP_ARGMAX,    //  per row label of the largest value; tensor becomes labels
    MODEL_OP_COLUMNS,   //  parts: columns selected, each through its ops, side by side
    MODEL_OP_SELECT,    //  x = x[:, columns]
    MODEL_OP_FAMILY     //  an op of a family (model_family.h): family->run
} model_op_kind_t;

typedef struct model_op_t model_op_t;
typedef struct model_family_op_t model_family_op_t;

//  One part of a columns op: its columns of the current tensor, then its ops
typedef struct {
    size_t n_columns;             //  1 .. 2^24
    const size_t *columns;        //  each < the columns op's in_width; repeats allowed
    size_t n_ops;                 //  0 (the columns as they are) .. S_MAX_OPS
    const model_op_t *const *ops; //  any op but argmax
    size_t width;                 //  columns this part gives
} model_part_t;

struct model_op_t {
    model_op_kind_t kind;
    const char *name;                //  "dense", ...
    size_t in_width;                 //  width of the tensor before the op (0: labels)
    size_t out_width;                //  width after the op (0: labels)
    const void *a;                   //  dense: weights; scale: mean; else NULL
    const void *b;                   //  dense: bias; scale: scale; else NULL
    size_t output;                   //  output: index in the model's outputs
    int flatten;                     //  output: 1 when emitted as [rows]
    amaas_dtype_t labels_dtype;      //  argmax: INT64 or BYTES
    const int64_t *int_labels;       //  argmax INT64: in_width labels
    const uint8_t *bytes_labels;     //  argmax BYTES: each label as 4-byte LE length + bytes
    const size_t *bytes_offset;      //  argmax BYTES: label i is at bytes_offset[i] ..
                                     //  bytes_offset[i + 1] of bytes_labels
    size_t bytes_max;                //  argmax BYTES: longest encoded label, bytes
    const size_t *columns;           //  select: out_width indices, each < in_width
    size_t n_parts;                  //  columns: 1 .. 256 parts
    const model_part_t *parts;       //  columns: the parts, in output order
    const model_family_op_t *family; //  family op: its table entry
    const void *ext;                 //  family op: its checked data (NULL if none)
    size_t work;                     //  about how many multiply-adds one row costs
    int depth;                       //  0, or 1 + the depth of the columns op it is in
};

//  The graph of a graph model (format_version 2, graph.h), NULL for a
//  model of ops.  A graph model has no ops; its input is its graph's input
//  0 (model_input_width: the product of its dimensions after the batch
//  when all are fixed, else 0), its outputs its graph's (model_output_width:
//  the second dimension of a fixed [batch, k] output, else 0).  It runs
//  through graph_prepare and graph_execute, on model_workspace_graph's
//  workspace; model_run, model_input and model_run_input refuse it.
const graph_t *model_graph (const model_t *self);

//  Number of operations, and operation `index` (NULL when index is out of
//  range).  Cannot fail otherwise.
size_t model_op_count (const model_t *self);
const model_op_t *model_op (const model_t *self, size_t index);

//  A workspace holds the buffers of runs; one per worker thread.  NULL on
//  out-of-memory.  The first call also sets BLIS to one thread per process.
model_workspace_t *model_workspace_new (void);
void model_workspace_destroy (model_workspace_t **self_p);

//  Bytes the workspace holds in its buffers.  Cannot fail.
size_t model_workspace_size (const model_workspace_t *self);

//  The workspace's graph workspace, created on the first call.  NULL on
//  out-of-memory.  Freed with the workspace.
graph_ws_t *model_workspace_graph (model_workspace_t *ws);

//  Run the model on `rows` rows of input, each model_input_width values of
//  type in_dtype (FP32, FP64, INT32 or INT64; converted to the model's
//  datatype), row-major at in_data, which need not be aligned.  Fills
//  outputs[0 .. model_output_count-1].  Returns 0; on error (bad datatype,
//  rows == 0, no input data, a batch too large to address, out of memory)
//  returns -1 with a message in err, and outputs are not to be used.
int model_run (const model_t *self, model_workspace_t *ws, amaas_dtype_t in_dtype,
               const void *in_data, size_t rows, model_output_t *outputs, char *err,
               size_t err_size);

//  The same in steps, for a batch stacked from several jobs: model_input
//  returns the workspace's input buffer for `rows` rows in the model's
//  datatype (NULL with a message when too large or out of memory);
//  model_convert converts rows of in_dtype (FP32, FP64, INT32, INT64; any
//  alignment) into it, at any row offset (returns -1 for another datatype);
//  model_run_input then runs the model on the buffer, as model_run does.
void *model_input (const model_t *self, model_workspace_t *ws, size_t rows, char *err,
                   size_t err_size);
int model_convert (const model_t *self, amaas_dtype_t in_dtype, const void *in_data, size_t rows,
                   void *dest);
int model_run_input (const model_t *self, model_workspace_t *ws, size_t rows,
                     model_output_t *outputs, char *err, size_t err_size);

#endif
