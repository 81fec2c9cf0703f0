/*  graph_impl.h - what the graph runtime's files share: the checked graph
    (graph.c builds it), its plans (graph_plan.c) and the non-BLIS kernels
    (graph_ops.c).  Private to worker/graph*.c.

    A graph is a table of tensors (graph inputs, constants, node outputs),
    each named once, and a list of nodes in an order where every node comes
    after the producers of its inputs.  Everything the format lets vary per
    request (dimensions, and so the values of static tensors) is the plan's.
*/
#ifndef AMAAS_GRAPH_IMPL_H_INCLUDED
#define AMAAS_GRAPH_IMPL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "graph_kernels.h"

#define G_MAX_NODE_IO 64           //  inputs, and outputs, of one node
#define G_MAX_ELEMENTS (1LL << 31) //  elements of one tensor in a plan

//  The ops of docs/MODEL_FORMAT.md "Operations of graphs"
typedef enum {
    G_ADD,
    G_SUB,
    G_MUL,
    G_DIV,
    G_POW,
    G_EQUAL,
    G_WHERE,
    G_SQRT,
    G_RECIPROCAL,
    G_TANH,
    G_SIGMOID,
    G_ERF,
    G_EXP,
    G_NEG,
    G_RELU,
    G_LEAKY_RELU,
    G_GELU,
    G_CAST,
    G_IDENTITY,
    G_SOFTMAX,
    G_LOG_SOFTMAX,
    G_LAYER_NORM,
    G_BATCH_NORM,
    G_GEMM,
    G_MATMUL,
    G_CONV,
    G_MAX_POOL,
    G_AVG_POOL,
    G_GLOBAL_AVG_POOL,
    G_REDUCE_MEAN,
    G_ARGMAX,
    G_RESHAPE,
    G_FLATTEN,
    G_TRANSPOSE,
    G_SQUEEZE,
    G_UNSQUEEZE,
    G_CONCAT,
    G_SPLIT,
    G_SLICE,
    G_GATHER,
    G_EXPAND,
    G_RANGE,
    G_SHAPE,
    G_CONSTANT_OF_SHAPE,
    G_OP_COUNT
} g_op_t;

//  Where a tensor comes from
typedef enum {
    G_FROM_INPUT,    //  graph input `index`
    G_FROM_CONSTANT, //  constants entry, data in the file or a copy
    G_FROM_NODE      //  output of node `index`
} g_from_t;

typedef struct {
    const char *name;             //  NUL-terminated
    amaas_dtype_t dtype;          //  FP32, INT64 or BOOL
    g_from_t from;                //  what defines it
    int32_t index;                //  graph input or node index
    bool is_static;               //  its value depends on the input shapes only
    int ndim;                     //  rank, or -1 when the loader cannot know it
    int64_t dims[GRAPH_MAX_DIMS]; //  constants: the shape
    const void *data;             //  constants: the values, 64-byte aligned
    int32_t last_use;             //  index of the last node that reads it, -1 none
} g_tensor_t;

typedef struct {
    g_op_t op;
    char where[320]; //  "node 12 (gemm '/encoder/...')" for messages
    int n_in, n_out; //  1 .. 64 each
    int32_t *in;     //  tensor index of each input, -1 for "" (absent)
    int32_t *out;    //  tensor index of each output
    bool is_static;  //  every output static: computed at plan time
    //  Attributes (those of the op; defaults set by the loader)
    int64_t axis; //  also shape's start
    int64_t end;  //  shape's end (INT64_MAX: the rank)
    bool keepdims, select_last, allowzero, trans_a, trans_b, ceil_mode, count_include_pad;
    int n_axes; //  reduce_mean: -1 for all
    int64_t axes[GRAPH_MAX_DIMS];
    int n_perm; //  transpose: 0 for reversed
    int64_t perm[GRAPH_MAX_DIMS];
    int64_t kernel[2], strides[2], pads[4], dilations[2], group;
    gk_act_t act;     //  gemm, conv; leaky_relu and gelu alone too
    float alpha;      //  leaky_relu, gemm/conv leaky_relu
    float epsilon;    //  layer_norm, batch_norm
    amaas_dtype_t to; //  cast, constant_of_shape
    double value;     //  constant_of_shape
    const float *mul; //  batch_norm: scale / sqrt (var + eps), per channel
    const float *add; //  batch_norm: bias - mean * mul
} g_node_t;

struct graph_t {
    uint64_t serial; //  distinct for every graph of the process
    size_t n_inputs, n_outputs;
    graph_io_t inputs[GRAPH_MAX_INPUTS];
    graph_io_t outputs[GRAPH_MAX_OUTPUTS];
    int32_t input_tensor[GRAPH_MAX_INPUTS];
    int32_t output_tensor[GRAPH_MAX_OUTPUTS];
    size_t n_tensors;
    g_tensor_t *tensors;
    size_t n_nodes;
    g_node_t *nodes;
    void **allocs; //  what the graph owns besides the above
    size_t n_allocs, allocs_cap;
};

const char *g_op_name (g_op_t op);

//  ---------------------------------------------------------------------------
//  Kernels of graph_ops.c.  A shape is ndim dims (ndim 0: a scalar).

typedef struct {
    int ndim;
    int64_t dims[GRAPH_MAX_DIMS];
} g_shape_t;

int64_t g_numel (const g_shape_t *shape);
size_t g_dtype_size (amaas_dtype_t dtype);

//  Broadcast shapes a and b into out (numpy).  Returns 0, -1 when they do
//  not broadcast.
int g_broadcast (const g_shape_t *a, const g_shape_t *b, g_shape_t *out);

//  Element-wise binary op (add, sub, mul, div, pow, equal) of a and b of
//  dtype into y of out's shape (a, b broadcast to it).  equal writes BOOL.
void g_binary (g_op_t op, amaas_dtype_t dtype, const void *a, const g_shape_t *as, const void *b,
               const g_shape_t *bs, void *y, const g_shape_t *ys);
//  y = c ? a : b, broadcast
void g_where (amaas_dtype_t dtype, const uint8_t *c, const g_shape_t *cs, const void *a,
              const g_shape_t *as, const void *b, const g_shape_t *bs, void *y,
              const g_shape_t *ys);
//  -x of INT64
void g_neg_int64 (const int64_t *x, int64_t *y, size_t n);
void g_cast (amaas_dtype_t from, amaas_dtype_t to, const void *x, void *y, size_t n);
//  y = x broadcast to ys (expand)
void g_expand (amaas_dtype_t dtype, const void *x, const g_shape_t *xs, void *y,
               const g_shape_t *ys);
void g_transpose (size_t elem, const void *x, const g_shape_t *xs, const int64_t *perm, void *y);
//  y = x[starts[i] :: steps[i] per axis i], ys the result's shape
void g_slice (size_t elem, const void *x, const g_shape_t *xs, const int64_t *starts,
              const int64_t *steps, void *y, const g_shape_t *ys);
//  Joins inputs along axis (their shapes equal but on axis)
void g_concat (size_t elem, int n, const void *const *x, const g_shape_t *xs, int axis, void *y);
//  Cuts x along axis into parts of sizes[i]
void g_split (size_t elem, const void *x, const g_shape_t *xs, int axis, int n,
              const int64_t *sizes, void *const *y);
//  ONNX Gather.  Returns 0, or -1 with the offending index in *bad.
int g_gather (size_t elem, const void *data, const g_shape_t *ds, int axis, const int64_t *indices,
              int64_t n_indices, void *y, int64_t *bad);
//  Mean over the axes flagged in reduce[] (keepdims layout irrelevant)
void g_reduce_mean (const float *x, const g_shape_t *xs, const bool *reduce, float *y);
void g_argmax (const float *x, const g_shape_t *xs, int axis, bool select_last, int64_t *y);
//  Any-dtype fill of n elements with value
void g_fill (amaas_dtype_t dtype, double value, void *y, size_t n);

#endif
