/*  graph.h - graph models (format_version 2, docs/MODEL_FORMAT.md "Graph
    models"): the checked graph, the plans of its runs, and the runs.

    graph_parse checks a whole format_version 2 map (through the loader's
    model_parse_* getters, so weights stay in place in the file's mapping
    when aligned, and every message names the node).  A run goes in two
    steps: graph_prepare finds (or makes) the plan for the batch's input
    shapes in the workspace and returns where each input goes; the caller
    converts the jobs' inputs into those buffers; graph_execute computes
    and points the outputs into the workspace.  Plans (shapes, static
    tensors, buffer offsets) are cached per graph and input shapes in the
    workspace, so a steady stream of one shape allocates nothing.
*/
#ifndef AMAAS_GRAPH_H_INCLUDED
#define AMAAS_GRAPH_H_INCLUDED

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "amaas.h"
#include "model.h"
#include "model_family.h"

#define GRAPH_MAX_INPUTS 16
#define GRAPH_MAX_OUTPUTS 8 //  == MODEL_MAX_OUTPUTS
#define GRAPH_MAX_DIMS 8    //  == AMAAS_MAX_DIMS
#define GRAPH_PLANS 16      //  plans a workspace keeps per graph (least recently used goes)

typedef struct graph_t graph_t;
typedef struct graph_ws_t graph_ws_t;

//  A graph input or output as the file declares it
typedef struct {
    const char *name;                      //  NUL-terminated, 1 .. 127 bytes
    amaas_dtype_t datatype;                //  FP32 or INT64
    int ndim;                              //  1 .. GRAPH_MAX_DIMS
    int64_t dims[GRAPH_MAX_DIMS];          //  fixed size, or -1 for a named dimension
    const char *dim_names[GRAPH_MAX_DIMS]; //  name of each -1 dimension, else NULL
    //  Inputs only: when > 0, the input is (directly) the indices of a
    //  gather whose axis has this size: every value must lie in
    //  [-index_bound, index_bound).  0: no such check.
    int64_t index_bound;
} graph_io_t;

//  Checks the top-level map `root` of a format_version 2 file (name, version,
//  format keys are the caller's and already checked) and builds the graph.
//  Returns NULL after model_parse_fail.  Costs at most about the file's
//  size in work; never crashes on any input.
graph_t *graph_parse (model_parse_t *p, const msgpack_object *root);
void graph_destroy (graph_t **self_p);

size_t graph_input_count (const graph_t *self);
const graph_io_t *graph_input (const graph_t *self, size_t i);
size_t graph_output_count (const graph_t *self);
const graph_io_t *graph_output (const graph_t *self, size_t i);
//  Number of nodes.  Cannot fail.
size_t graph_node_count (const graph_t *self);

//  A workspace: the plans and buffers of one thread.  NULL on out-of-memory.
graph_ws_t *graph_ws_new (void);
void graph_ws_destroy (graph_ws_t **self_p);
size_t graph_ws_size (const graph_ws_t *self); //  bytes held

//  Plans a run of self on inputs of the given shapes (shapes[i] holds
//  graph_input (self, i)->ndim dimensions; dimension 0 is the batch, the
//  same for all) and sets inputs[i] to the buffer of input i (its datatype,
//  row-major, 64-byte aligned) for the caller to fill.  Returns 0; -1 with
//  a message naming the node when the shapes do not fit the graph (the
//  job's fault: INVALID_ARGUMENT), -2 with a message on out-of-memory or a
//  size beyond the limits (INTERNAL).
int graph_prepare (const graph_t *self, graph_ws_t *ws, const int64_t shapes[][GRAPH_MAX_DIMS],
                   void **inputs, char *err, size_t err_size);

//  Runs the plan graph_prepare made (the inputs filled) and fills
//  outputs[0 .. graph_output_count-1], pointing into the workspace (valid
//  until the next graph_prepare on it).  Returns 0; -1 with a message when
//  an index from the data is out of range (INVALID_ARGUMENT).
int graph_execute (const graph_t *self, graph_ws_t *ws, model_output_t *outputs, char *err,
                   size_t err_size);

//  Plans the workspace holds for self, and plans it made in all (for tests
//  and metrics).  Cannot fail.
size_t graph_ws_plan_count (const graph_ws_t *ws, const graph_t *self);
uint64_t graph_ws_plans_made (const graph_ws_t *ws);

//  Sets the most bytes one plan may hold (its arena and static tensors; 0:
//  unchanged) and returns the previous limit (4 GiB at start).  A plan
//  beyond it fails with -2.  For the fuzzer and tests; not thread-safe.
size_t graph_plan_limit (size_t bytes);

#endif
