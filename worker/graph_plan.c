/*  graph_plan.c - plans and runs of graph models.

    graph_prepare makes (or finds) the plan of a graph for one set of input
    shapes.  Making one walks the nodes in order: it infers each output's
    shape from its inputs' shapes (and the values of static inputs: reshape
    targets, slice bounds, axes), checks them, and computes a static node
    right away with the kernels the run uses, into the plan's own memory.
    Dynamic tensors then get bytes in one 64-byte aligned arena: a greedy
    first fit in node order, a tensor's block freed after the last node that
    reads it (or a view of it), so that tensors whose lives do not overlap
    share bytes.  Reshape, flatten, squeeze, unsqueeze and identity are views:
    the output is the input's bytes.  Conv's im2col gets one scratch after
    the tensors; batched matmuls get their pointer arrays in the plan.

    The workspace keeps up to GRAPH_PLANS plans per graph, the least recently
    used one going first, keyed by the graph's serial number (never reused,
    unlike its address) and the input shapes.  The arena belongs to the
    workspace, sized for its largest plan; graph_execute runs the dynamic
    nodes into it and allocates nothing.

    Limits: a tensor of more than 2^31 elements fails the plan as the
    request's fault (-1); a plan whose arena and static tensors pass
    graph_plan_limit bytes fails as out of resources (-2).  Together with
    the loader's limits, a hostile file gets an error, never unbounded
    memory.
*/
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"
#include "log.h"

#define S_ALIGN 64
#define S_MAX_PLANS 64   //  plans of one workspace, all graphs together
#define S_FREE_SLOTS 256 //  free blocks the arena layout remembers
#define S_DEFAULT_LIMIT ((size_t)4 << 30)

static size_t s_limit = S_DEFAULT_LIMIT;

//  Where a tensor's bytes are in a plan
typedef enum {
    S_LOC_NONE,  //  absent (a node not reached) or size 0
    S_LOC_PTR,   //  constant or static: ptr
    S_LOC_ARENA, //  dynamic: arena + offset
} s_loc_t;

typedef struct {
    g_shape_t shape;
    s_loc_t loc;
    const void *ptr; //  S_LOC_PTR
    size_t offset;   //  S_LOC_ARENA: of its root's block
    int32_t root;    //  S_LOC_ARENA: the tensor that owns the block (itself, or a view's source)
    int32_t end;     //  root: the last node that reads it or a view of it
    size_t bytes;    //  root: its block's size
    bool freed;      //  root: its block went back to the layout
} s_tinfo_t;

//  What a node needs at run beyond its tensors' shapes
typedef struct {
    int axis;
    bool view;                                             //  the output is input 0's bytes
    int64_t starts[GRAPH_MAX_DIMS], steps[GRAPH_MAX_DIMS]; //  slice
    int64_t perm[GRAPH_MAX_DIMS];                          //  transpose
    bool reduce[GRAPH_MAX_DIMS];                           //  reduce_mean
    int64_t *sizes;                                        //  split: n_out sizes
    size_t outer, mid, inner; //  softmax; gemm m, k, n; layer_norm rows, d
    size_t count, m, n, k;    //  matmul
    int64_t *offsets;         //  matmul: a's and b's element offsets, 2 per product
    const float **ptrs;       //  matmul: a, b, c pointers, count each
    gk_conv_t conv;           //  conv and pools
} s_ninfo_t;

typedef struct {
    const graph_t *graph; //  not dereferenced unless serial matches
    uint64_t serial;
    int64_t shapes[GRAPH_MAX_INPUTS][GRAPH_MAX_DIMS];
    uint64_t used; //  the workspace's tick when last used
    s_tinfo_t *t;  //  per tensor
    s_ninfo_t *n;  //  per node
    void **allocs; //  static tensors, split sizes, matmul arrays
    size_t n_allocs, allocs_cap;
    size_t arena_size; //  bytes of the arena the plan needs
    size_t scratch;    //  offset of conv's scratch in the arena
    size_t bytes;      //  bytes the plan holds, arena included
    int64_t batch;
} s_plan_t;

struct graph_ws_t {
    s_plan_t *plans[S_MAX_PLANS];
    size_t n_plans;
    uint64_t tick;
    void *arena;
    size_t arena_cap;
    s_plan_t *current; //  graph_prepare's, for graph_execute
    uint64_t made;     //  plans made
};

//  The error context of a plan
typedef struct {
    const graph_t *graph;
    s_plan_t *plan;
    char *err;
    size_t err_size;
    size_t bytes; //  static bytes so far
} s_ctx_t;

size_t graph_plan_limit (size_t bytes)
{
    size_t old = s_limit;
    if (bytes)
        s_limit = bytes;
    return old;
}

static int s_fail (char *err, size_t err_size, int rc, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static int s_fail (char *err, size_t err_size, int rc, const char *format, ...)
{
    if (err && err_size) {
        va_list args;
        va_start (args, format);
        vsnprintf (err, err_size, format, args);
        va_end (args);
    }
    return rc;
}

//  "[2, 3]" for messages
static const char *s_shape_text (const g_shape_t *shape, char *buf, size_t size)
{
    size_t len = (size_t)snprintf (buf, size, "[");
    for (int d = 0; d < shape->ndim && len < size; d++)
        len += (size_t)snprintf (buf + len, size - len, "%s%lld", d ? ", " : "",
                                 (long long)shape->dims[d]);
    if (len < size)
        snprintf (buf + len, size - len, "]");
    return buf;
}

//  A node's failure: "node 3 (reshape 'r'): message"; rc -1 or -2
static int s_node_fail (s_ctx_t *ctx, const g_node_t *node, int rc, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static int s_node_fail (s_ctx_t *ctx, const g_node_t *node, int rc, const char *format, ...)
{
    if (ctx->err && ctx->err_size) {
        int len = snprintf (ctx->err, ctx->err_size, "%s: ", node->where);
        if (len >= 0 && (size_t)len < ctx->err_size) {
            va_list args;
            va_start (args, format);
            vsnprintf (ctx->err + len, ctx->err_size - (size_t)len, format, args);
            va_end (args);
        }
    }
    return rc;
}

//  ---------------------------------------------------------------------------
//  Plans

static void s_plan_destroy (s_plan_t **plan_p)
{
    s_plan_t *plan = *plan_p;
    if (!plan)
        return;
    for (size_t i = 0; i < plan->n_allocs; i++)
        free (plan->allocs[i]);
    free (plan->allocs);
    free (plan->t);
    free (plan->n);
    free (plan);
    *plan_p = NULL;
}

//  Zeroed, 64-byte aligned bytes the plan frees with itself; NULL when out
//  of memory or beyond the limit (ctx->bytes counts them)
static void *s_plan_alloc (s_ctx_t *ctx, size_t size)
{
    s_plan_t *plan = ctx->plan;
    size_t rounded = (size ? size : 1) + S_ALIGN - 1;
    if (rounded < size)
        return NULL;
    rounded -= rounded % S_ALIGN;
    if (ctx->bytes + rounded > s_limit || ctx->bytes + rounded < ctx->bytes)
        return NULL;
    if (plan->n_allocs == plan->allocs_cap) {
        size_t cap = plan->allocs_cap ? 2 * plan->allocs_cap : 16;
        void **allocs = realloc (plan->allocs, cap * sizeof (void *));
        if (!allocs)
            return NULL;
        plan->allocs = allocs;
        plan->allocs_cap = cap;
    }
    void *ptr = NULL;
    if (posix_memalign (&ptr, S_ALIGN, rounded))
        return NULL;
    memset (ptr, 0, rounded);
    plan->allocs[plan->n_allocs++] = ptr;
    ctx->bytes += rounded;
    return ptr;
}

//  Elements of a shape; -1 when above 2^31
static int64_t s_count (const g_shape_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < shape->ndim; d++) {
        if (shape->dims[d] < 0 || shape->dims[d] > G_MAX_ELEMENTS)
            return -1;
        if (__builtin_mul_overflow (n, shape->dims[d], &n) || n > G_MAX_ELEMENTS)
            return -1;
    }
    return n;
}

//  ---------------------------------------------------------------------------
//  Running one node (at plan time for static nodes, else by graph_execute)

//  Bytes of tensor t in the plan: its pointer given the arena (NULL at
//  plan time, when only static tensors have bytes: shape reads no bytes)
static inline void *s_data (const s_plan_t *plan, char *arena, int32_t t)
{
    const s_tinfo_t *info = &plan->t[t];
    if (info->loc == S_LOC_PTR)
        return (void *)info->ptr;
    if (info->loc == S_LOC_ARENA && arena)
        return arena + info->offset;
    return NULL;
}

//  Computes node i.  scratch: conv's.  Returns 0, or -1 with a message (a
//  gather index out of range).
static int s_run_node (const graph_t *graph, s_plan_t *plan, size_t i, char *arena, void *scratch,
                       char *err, size_t err_size)
{
    const g_node_t *node = &graph->nodes[i];
    s_ninfo_t *info = &plan->n[i];
    if (info->view)
        return 0;
    const void *x[G_MAX_NODE_IO];
    const g_shape_t *xs[G_MAX_NODE_IO];
    for (int k = 0; k < node->n_in; k++) {
        x[k] = node->in[k] >= 0 ? s_data (plan, arena, node->in[k]) : NULL;
        xs[k] = node->in[k] >= 0 ? &plan->t[node->in[k]].shape : NULL;
    }
    int32_t out = node->out[0];
    void *y = s_data (plan, arena, out);
    const g_shape_t *ys = &plan->t[out].shape;
    size_t n = (size_t)g_numel (ys);
    amaas_dtype_t d0 = graph->tensors[node->in[0]].dtype;
    if (n == 0 && node->op != G_SPLIT)
        return 0;
    switch (node->op) {
    case G_ADD:
    case G_SUB:
    case G_MUL:
    case G_DIV:
    case G_POW:
    case G_EQUAL: g_binary (node->op, d0, x[0], xs[0], x[1], xs[1], y, ys); break;
    case G_WHERE:
        g_where (graph->tensors[out].dtype, x[0], xs[0], x[1], xs[1], x[2], xs[2], y, ys);
        break;
    case G_SQRT: gk_unary (GK_SQRT, x[0], y, n); break;
    case G_RECIPROCAL: gk_unary (GK_RECIPROCAL, x[0], y, n); break;
    case G_ERF: gk_unary (GK_ERF, x[0], y, n); break;
    case G_EXP: gk_unary (GK_EXP, x[0], y, n); break;
    case G_NEG:
        if (d0 == AMAAS_INT64)
            g_neg_int64 (x[0], y, n);
        else
            gk_unary (GK_NEG, x[0], y, n);
        break;
    case G_TANH:
    case G_SIGMOID:
    case G_RELU:
    case G_LEAKY_RELU:
    case G_GELU: gk_activate (node->act, node->alpha, x[0], y, n); break;
    case G_CAST: g_cast (d0, node->to, x[0], y, n); break;
    case G_IDENTITY: memcpy (y, x[0], n * g_dtype_size (d0)); break;
    case G_SOFTMAX:
    case G_LOG_SOFTMAX:
        gk_softmax (x[0], y, info->outer, info->mid, info->inner, node->op == G_LOG_SOFTMAX);
        break;
    case G_LAYER_NORM:
        gk_layer_norm (x[0], x[1], node->n_in > 2 ? x[2] : NULL, y, info->outer, info->mid,
                       node->epsilon);
        break;
    case G_BATCH_NORM:
        gk_channel_affine (x[0], node->mul, node->add, y, (size_t)xs[0]->dims[0],
                           (size_t)xs[0]->dims[1],
                           n / ((size_t)xs[0]->dims[0] * (size_t)xs[0]->dims[1]));
        break;
    case G_GEMM:
        gk_gemm (x[0], x[1], node->n_in > 2 ? x[2] : NULL, y, info->outer, info->mid, info->inner,
                 node->act, node->alpha);
        break;
    case G_MATMUL: {
        size_t c_size = info->m * info->n;
        for (size_t j = 0; j < info->count; j++) {
            info->ptrs[j] = (const float *)x[0] + info->offsets[2 * j];
            info->ptrs[info->count + j] = (const float *)x[1] + info->offsets[2 * j + 1];
            info->ptrs[2 * info->count + j] = (float *)y + j * c_size;
        }
        gk_matmul (info->count, info->ptrs, info->ptrs + info->count,
                   (float *const *)(info->ptrs + 2 * info->count), info->m, info->n, info->k,
                   node->trans_a, node->trans_b);
        break;
    }
    case G_CONV:
        gk_conv (&info->conv, x[0], x[1], node->n_in > 2 ? x[2] : NULL, y, scratch, node->act,
                 node->alpha);
        break;
    case G_MAX_POOL: gk_max_pool (&info->conv, x[0], y); break;
    case G_AVG_POOL: gk_avg_pool (&info->conv, x[0], y); break;
    case G_GLOBAL_AVG_POOL: gk_mean_rows (x[0], y, info->outer, info->inner); break;
    case G_REDUCE_MEAN:
        if (info->outer)
            gk_mean_rows (x[0], y, info->outer, info->inner);
        else
            g_reduce_mean (x[0], xs[0], info->reduce, y);
        break;
    case G_ARGMAX: g_argmax (x[0], xs[0], info->axis, node->select_last, y); break;
    case G_RESHAPE:
    case G_FLATTEN:
    case G_SQUEEZE:
    case G_UNSQUEEZE: memcpy (y, x[0], n * g_dtype_size (d0)); break;
    case G_TRANSPOSE: g_transpose (g_dtype_size (d0), x[0], xs[0], info->perm, y); break;
    case G_CONCAT: {
        g_shape_t shapes[G_MAX_NODE_IO];
        for (int k = 0; k < node->n_in; k++)
            shapes[k] = *xs[k];
        g_concat (g_dtype_size (d0), node->n_in, x, shapes, info->axis, y);
        break;
    }
    case G_SPLIT: {
        void *ys_[G_MAX_NODE_IO];
        for (int k = 0; k < node->n_out; k++)
            ys_[k] = s_data (plan, arena, node->out[k]);
        if (g_numel (xs[0]))
            g_split (g_dtype_size (d0), x[0], xs[0], info->axis, node->n_out, info->sizes, ys_);
        break;
    }
    case G_SLICE: g_slice (g_dtype_size (d0), x[0], xs[0], info->starts, info->steps, y, ys); break;
    case G_GATHER: {
        int64_t bad = 0;
        if (g_gather (g_dtype_size (d0), x[0], xs[0], info->axis, x[1], g_numel (xs[1]), y, &bad))
            return s_fail (err, err_size, -1,
                           "%s: index %lld is out of range for a dimension of %lld", node->where,
                           (long long)bad, (long long)xs[0]->dims[info->axis]);
        break;
    }
    case G_EXPAND: g_expand (d0, x[0], xs[0], y, ys); break;
    case G_RANGE: {
        if (d0 == AMAAS_INT64) {
            int64_t start = *(const int64_t *)x[0], delta = *(const int64_t *)x[2];
            for (size_t j = 0; j < n; j++)
                ((int64_t *)y)[j] = (int64_t)((uint64_t)start + (uint64_t)j * (uint64_t)delta);
        } else {
            float start = *(const float *)x[0], delta = *(const float *)x[2];
            for (size_t j = 0; j < n; j++)
                ((float *)y)[j] = start + (float)j * delta;
        }
        break;
    }
    case G_SHAPE: {
        for (size_t j = 0; j < n; j++)
            ((int64_t *)y)[j] = xs[0]->dims[info->axis + (int)j];
        break;
    }
    case G_CONSTANT_OF_SHAPE: g_fill (node->to, node->value, y, n); break;
    default: break;
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  Shape inference

//  Normalizes axis into 0 .. rank - 1 (or rank, with `end`)
static int s_axis (s_ctx_t *ctx, const g_node_t *node, const char *what, int64_t axis, int rank,
                   bool end, int *out)
{
    *out = 0;
    int high = end ? rank : rank - 1;
    if (axis < -rank || axis > high)
        return s_node_fail (ctx, node, -1, "%s %lld is out of range for rank %d", what,
                            (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 0;
}

//  The values of static INT64 input i: *values (in the plan), *count
static int s_ints (s_ctx_t *ctx, const g_node_t *node, int i, const int64_t **values,
                   int64_t *count)
{
    const s_tinfo_t *info = &ctx->plan->t[node->in[i]];
    *values = NULL;
    *count = 0;
    if (info->shape.ndim != 1)
        return s_node_fail (ctx, node, -1, "input %d has %d dimensions, expected 1", i,
                            info->shape.ndim);
    *count = info->shape.dims[0];
    *values = info->ptr;
    return 0;
}

//  Output size of a window along one dimension; -1 when none fits
static int64_t s_window_out (int64_t size, int64_t pad_a, int64_t pad_b, int64_t kernel,
                             int64_t stride, int64_t dilation, bool ceil_mode)
{
    int64_t extent = (kernel - 1) * dilation + 1;
    int64_t span = size + pad_a + pad_b - extent;
    if (span < 0)
        return -1;
    int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
    //  ONNX (and PyTorch): the last window starts inside the input or the left padding
    if (ceil_mode && (out - 1) * stride >= size + pad_a)
        out--;
    return out;
}

//  Does every window along a dimension hold at least one input element?
static bool s_windows_ok (int64_t size, int64_t pad_a, int64_t kernel, int64_t stride,
                          int64_t dilation, int64_t out)
{
    for (int64_t o = 0; o < out; o++) {
        int64_t s = o * stride - pad_a;
        int64_t j = s < 0 ? (-s + dilation - 1) / dilation : 0;
        if (j >= kernel || s + j * dilation >= size)
            return false;
    }
    return true;
}

//  conv and pools: fills info->conv, the output shape
static int s_infer_window (s_ctx_t *ctx, const g_node_t *node, s_ninfo_t *info, g_shape_t *ys)
{
    const graph_t *graph = ctx->graph;
    const g_shape_t *xs = &ctx->plan->t[node->in[0]].shape;
    char text[120];
    if (xs->ndim != 4)
        return s_node_fail (ctx, node, -1, "input 0 is %s, expected [N, C, H, W]",
                            s_shape_text (xs, text, sizeof text));
    gk_conv_t *p = &info->conv;
    memset (p, 0, sizeof *p);
    p->n = (size_t)xs->dims[0];
    p->c = (size_t)xs->dims[1];
    p->h = (size_t)xs->dims[2];
    p->w = (size_t)xs->dims[3];
    p->m = p->c;
    p->group = 1;
    if (node->op == G_CONV) {
        const g_tensor_t *w = &graph->tensors[node->in[1]];
        if (xs->dims[1] != w->dims[1] * node->group)
            return s_node_fail (
                ctx, node, -1, "input 0 has %lld channels, the weights take %lld x group %lld",
                (long long)xs->dims[1], (long long)w->dims[1], (long long)node->group);
        p->m = (size_t)w->dims[0];
        p->group = (size_t)node->group;
    }
    p->kh = (size_t)node->kernel[0];
    p->kw = (size_t)node->kernel[1];
    p->sh = (size_t)node->strides[0];
    p->sw = (size_t)node->strides[1];
    p->pt = (size_t)node->pads[0];
    p->pl = (size_t)node->pads[1];
    p->pb = (size_t)node->pads[2];
    p->pr = (size_t)node->pads[3];
    p->dh = (size_t)node->dilations[0];
    p->dw = (size_t)node->dilations[1];
    p->count_include_pad = node->count_include_pad;
    bool ceil_mode = node->op != G_CONV && node->ceil_mode;
    int64_t oh = s_window_out (xs->dims[2], node->pads[0], node->pads[2], node->kernel[0],
                               node->strides[0], node->dilations[0], ceil_mode);
    int64_t ow = s_window_out (xs->dims[3], node->pads[1], node->pads[3], node->kernel[1],
                               node->strides[1], node->dilations[1], ceil_mode);
    if (oh < 1 || ow < 1)
        return s_node_fail (ctx, node, -1, "input 0 %s is smaller than the window",
                            s_shape_text (xs, text, sizeof text));
    if (node->op != G_CONV && (!s_windows_ok (xs->dims[2], node->pads[0], node->kernel[0],
                                              node->strides[0], node->dilations[0], oh) ||
                               !s_windows_ok (xs->dims[3], node->pads[1], node->kernel[1],
                                              node->strides[1], node->dilations[1], ow)))
        return s_node_fail (ctx, node, -1, "a window of input 0 %s holds no input element",
                            s_shape_text (xs, text, sizeof text));
    p->oh = (size_t)oh;
    p->ow = (size_t)ow;
    ys->ndim = 4;
    ys->dims[0] = xs->dims[0];
    ys->dims[1] = (int64_t)p->m;
    ys->dims[2] = oh;
    ys->dims[3] = ow;
    return 0;
}

//  matmul: shapes, pointer arrays
static int s_infer_matmul (s_ctx_t *ctx, const g_node_t *node, s_ninfo_t *info, g_shape_t *ys)
{
    const g_shape_t *as = &ctx->plan->t[node->in[0]].shape;
    const g_shape_t *bs = &ctx->plan->t[node->in[1]].shape;
    char ta[120], tb[120];
    if (as->ndim < 2 || bs->ndim < 2)
        return s_node_fail (ctx, node, -1, "inputs %s and %s need 2 dimensions or more",
                            s_shape_text (as, ta, sizeof ta), s_shape_text (bs, tb, sizeof tb));
    int64_t m = as->dims[as->ndim - (node->trans_a ? 1 : 2)];
    int64_t ka = as->dims[as->ndim - (node->trans_a ? 2 : 1)];
    int64_t kb = bs->dims[bs->ndim - (node->trans_b ? 1 : 2)];
    int64_t n = bs->dims[bs->ndim - (node->trans_b ? 2 : 1)];
    if (ka != kb)
        return s_node_fail (ctx, node, -1, "inputs %s and %s do not multiply (%lld vs %lld)",
                            s_shape_text (as, ta, sizeof ta), s_shape_text (bs, tb, sizeof tb),
                            (long long)ka, (long long)kb);
    g_shape_t ab = {as->ndim - 2, {0}}, bb = {bs->ndim - 2, {0}}, batch;
    memcpy (ab.dims, as->dims, (size_t)ab.ndim * sizeof (int64_t));
    memcpy (bb.dims, bs->dims, (size_t)bb.ndim * sizeof (int64_t));
    if (g_broadcast (&ab, &bb, &batch))
        return s_node_fail (ctx, node, -1, "the leading dimensions of %s and %s do not broadcast",
                            s_shape_text (as, ta, sizeof ta), s_shape_text (bs, tb, sizeof tb));
    *ys = batch;
    ys->dims[ys->ndim++] = m;
    ys->dims[ys->ndim++] = n;
    int64_t count = s_count (&batch);
    if (count < 0 || s_count (ys) < 0)
        return 0; //  the caller says too large
    info->count = (size_t)count;
    info->m = (size_t)m;
    info->n = (size_t)n;
    info->k = (size_t)ka;
    if (count == 0 || m == 0 || n == 0)
        return 0;
    info->offsets = s_plan_alloc (ctx, (size_t)count * 2 * sizeof (int64_t));
    info->ptrs = s_plan_alloc (ctx, (size_t)count * 3 * sizeof (float *));
    if (!info->offsets || !info->ptrs)
        return s_node_fail (ctx, node, -2, "out of memory for %lld products", (long long)count);
    //  Element offsets of each product's a and b (0 strides where they broadcast)
    int64_t sa[GRAPH_MAX_DIMS] = {0}, sb[GRAPH_MAX_DIMS] = {0};
    int64_t stride_a = m * ka, stride_b = kb * n;
    for (int d = batch.ndim - 1; d >= 0; d--) {
        int da = d - (batch.ndim - ab.ndim), db = d - (batch.ndim - bb.ndim);
        if (da >= 0) {
            sa[d] = ab.dims[da] == 1 ? 0 : stride_a;
            stride_a *= ab.dims[da];
        }
        if (db >= 0) {
            sb[d] = bb.dims[db] == 1 ? 0 : stride_b;
            stride_b *= bb.dims[db];
        }
    }
    int64_t idx[GRAPH_MAX_DIMS] = {0}, oa = 0, ob = 0;
    for (int64_t j = 0; j < count; j++) {
        info->offsets[2 * j] = oa;
        info->offsets[2 * j + 1] = ob;
        for (int d = batch.ndim - 1; d >= 0; d--) {
            oa += sa[d];
            ob += sb[d];
            if (++idx[d] < batch.dims[d])
                break;
            oa -= sa[d] * batch.dims[d];
            ob -= sb[d] * batch.dims[d];
            idx[d] = 0;
        }
    }
    return 0;
}

//  Infers the shapes of node i's outputs (ys[k]) and what its run needs
static int s_infer (s_ctx_t *ctx, size_t i, g_shape_t *ys)
{
    const graph_t *graph = ctx->graph;
    s_plan_t *plan = ctx->plan;
    const g_node_t *node = &graph->nodes[i];
    s_ninfo_t *info = &plan->n[i];
    const g_shape_t *xs = &plan->t[node->in[0]].shape;
    int r = xs->ndim;
    char ta[120], tb[120];
    *ys = *xs;
    switch (node->op) {
    case G_ADD:
    case G_SUB:
    case G_MUL:
    case G_DIV:
    case G_POW:
    case G_EQUAL: {
        const g_shape_t *bs = &plan->t[node->in[1]].shape;
        if (g_broadcast (xs, bs, ys))
            return s_node_fail (ctx, node, -1, "shapes %s and %s do not broadcast",
                                s_shape_text (xs, ta, sizeof ta), s_shape_text (bs, tb, sizeof tb));
        break;
    }
    case G_WHERE: {
        g_shape_t ab;
        const g_shape_t *as = &plan->t[node->in[1]].shape, *bs = &plan->t[node->in[2]].shape;
        if (g_broadcast (as, bs, &ab) || g_broadcast (xs, &ab, ys))
            return s_node_fail (ctx, node, -1, "shapes %s, %s and %s do not broadcast",
                                s_shape_text (xs, ta, sizeof ta), s_shape_text (as, tb, sizeof tb),
                                "of inputs 1, 2");
        break;
    }
    case G_SOFTMAX:
    case G_LOG_SOFTMAX: {
        int axis;
        if (r == 0)
            return s_node_fail (ctx, node, -1, "input 0 is a scalar");
        if (s_axis (ctx, node, "axis", node->axis, r, false, &axis))
            return -1;
        info->outer = info->inner = 1;
        for (int d = 0; d < axis; d++)
            info->outer *= (size_t)xs->dims[d];
        for (int d = axis + 1; d < r; d++)
            info->inner *= (size_t)xs->dims[d];
        info->mid = (size_t)xs->dims[axis];
        break;
    }
    case G_LAYER_NORM: {
        int axis;
        if (r == 0)
            return s_node_fail (ctx, node, -1, "input 0 is a scalar");
        if (s_axis (ctx, node, "axis", node->axis, r, false, &axis))
            return -1;
        size_t d = 1, rows = 1;
        for (int k = 0; k < axis; k++)
            rows *= (size_t)xs->dims[k];
        for (int k = axis; k < r; k++)
            d *= (size_t)xs->dims[k];
        for (int k = 1; k < node->n_in; k++)
            if (node->in[k] >= 0 && g_numel (&plan->t[node->in[k]].shape) != (int64_t)d)
                return s_node_fail (ctx, node, -1,
                                    "input %d %s does not hold the %zu values of a row", k,
                                    s_shape_text (&plan->t[node->in[k]].shape, ta, sizeof ta), d);
        info->outer = rows;
        info->mid = d;
        break;
    }
    case G_BATCH_NORM: {
        int64_t c = graph->tensors[node->in[1]].dims[0];
        if (r < 2 || xs->dims[1] != c)
            return s_node_fail (ctx, node, -1, "input 0 is %s, expected [N, %lld, ...]",
                                s_shape_text (xs, ta, sizeof ta), (long long)c);
        break;
    }
    case G_GEMM: {
        const g_tensor_t *w = &graph->tensors[node->in[1]];
        if (r < 1 || xs->dims[r - 1] != w->dims[0])
            return s_node_fail (ctx, node, -1, "input 0 is %s, expected [..., %lld]",
                                s_shape_text (xs, ta, sizeof ta), (long long)w->dims[0]);
        ys->dims[r - 1] = w->dims[1];
        info->mid = (size_t)w->dims[0];
        info->inner = (size_t)w->dims[1];
        info->outer = 1;
        for (int d = 0; d < r - 1; d++)
            info->outer *= (size_t)xs->dims[d];
        break;
    }
    case G_MATMUL: return s_infer_matmul (ctx, node, info, ys);
    case G_CONV:
    case G_MAX_POOL:
    case G_AVG_POOL: return s_infer_window (ctx, node, info, ys);
    case G_GLOBAL_AVG_POOL:
        if (r < 3)
            return s_node_fail (ctx, node, -1, "input 0 is %s, expected [N, C, ...]",
                                s_shape_text (xs, ta, sizeof ta));
        info->outer = (size_t)(xs->dims[0] * xs->dims[1]);
        info->inner = 1;
        for (int d = 2; d < r; d++) {
            info->inner *= (size_t)xs->dims[d];
            ys->dims[d] = 1;
        }
        break;
    case G_REDUCE_MEAN: {
        memset (info->reduce, 0, sizeof info->reduce);
        for (int k = 0; k < (node->n_axes < 0 ? r : node->n_axes); k++) {
            int axis = k;
            if (node->n_axes >= 0 && s_axis (ctx, node, "axes", node->axes[k], r, false, &axis))
                return -1;
            if (info->reduce[axis])
                return s_node_fail (ctx, node, -1, "axes lists axis %d twice", axis);
            info->reduce[axis] = true;
        }
        //  Trailing axes only: rows of contiguous values
        int first = r;
        while (first > 0 && info->reduce[first - 1])
            first--;
        bool trailing = true;
        for (int d = 0; d < first; d++)
            trailing = trailing && !info->reduce[d];
        info->outer = info->inner = 0;
        if (trailing && first < r) {
            size_t outer = 1, inner = 1;
            for (int d = 0; d < first; d++)
                outer *= (size_t)xs->dims[d];
            for (int d = first; d < r; d++)
                inner *= (size_t)xs->dims[d];
            if (inner > 0 && outer > 0) {
                info->outer = outer;
                info->inner = inner;
            }
        }
        ys->ndim = 0;
        for (int d = 0; d < r; d++)
            if (!info->reduce[d])
                ys->dims[ys->ndim++] = xs->dims[d];
            else if (node->keepdims)
                ys->dims[ys->ndim++] = 1;
        break;
    }
    case G_ARGMAX: {
        int axis;
        if (r == 0)
            return s_node_fail (ctx, node, -1, "input 0 is a scalar");
        if (s_axis (ctx, node, "axis", node->axis, r, false, &axis))
            return -1;
        if (xs->dims[axis] == 0)
            return s_node_fail (ctx, node, -1, "input 0 %s has no values along axis %d",
                                s_shape_text (xs, ta, sizeof ta), axis);
        info->axis = axis;
        if (node->keepdims)
            ys->dims[axis] = 1;
        else {
            ys->ndim = 0;
            for (int d = 0; d < r; d++)
                if (d != axis)
                    ys->dims[ys->ndim++] = xs->dims[d];
        }
        break;
    }
    case G_RESHAPE: {
        const int64_t *shape;
        int64_t k;
        if (s_ints (ctx, node, 1, &shape, &k))
            return -1;
        if (k > GRAPH_MAX_DIMS)
            return s_node_fail (ctx, node, -1, "the shape has %lld dimensions, at most %d",
                                (long long)k, GRAPH_MAX_DIMS);
        int infer = -1;
        int64_t known = 1, total = g_numel (xs);
        ys->ndim = (int)k;
        for (int d = 0; d < k; d++) {
            int64_t v = shape[d];
            if (v == 0 && !node->allowzero) {
                if (d >= r)
                    return s_node_fail (ctx, node, -1,
                                        "shape[%d] is 0 but input 0 %s has no "
                                        "dimension %d",
                                        d, s_shape_text (xs, ta, sizeof ta), d);
                v = xs->dims[d];
            }
            if (v == -1) {
                if (infer >= 0)
                    return s_node_fail (ctx, node, -1, "the shape has -1 twice");
                infer = d;
                v = 1;
            } else if (v < 0 || v > G_MAX_ELEMENTS)
                return s_node_fail (ctx, node, -1, "shape[%d] is %lld", d, (long long)shape[d]);
            ys->dims[d] = v;
            if (__builtin_mul_overflow (known, v, &known) || known > G_MAX_ELEMENTS)
                return s_node_fail (ctx, node, -1, "the shape has more than 2^31 elements");
        }
        if (infer >= 0) {
            if (known == 0 || total % known)
                return s_node_fail (ctx, node, -1, "cannot reshape %s: %lld elements",
                                    s_shape_text (xs, ta, sizeof ta), (long long)total);
            ys->dims[infer] = total / known;
            known = total;
        }
        if (known != total)
            return s_node_fail (ctx, node, -1, "cannot reshape %s into %s",
                                s_shape_text (xs, ta, sizeof ta), s_shape_text (ys, tb, sizeof tb));
        info->view = true;
        break;
    }
    case G_FLATTEN: {
        int axis;
        if (s_axis (ctx, node, "axis", node->axis, r, true, &axis))
            return -1;
        int64_t a = 1, b = 1;
        for (int d = 0; d < r; d++)
            *(d < axis ? &a : &b) *= xs->dims[d];
        ys->ndim = 2;
        ys->dims[0] = a;
        ys->dims[1] = b;
        info->view = true;
        break;
    }
    case G_IDENTITY: info->view = true; break;
    case G_TRANSPOSE: {
        if (node->n_perm && node->n_perm != r)
            return s_node_fail (ctx, node, -1, "perm has %d entries for input 0 %s", node->n_perm,
                                s_shape_text (xs, ta, sizeof ta));
        for (int d = 0; d < r; d++) {
            info->perm[d] = node->n_perm ? node->perm[d] : r - 1 - d;
            ys->dims[d] = xs->dims[info->perm[d]];
        }
        break;
    }
    case G_SQUEEZE: {
        bool drop[GRAPH_MAX_DIMS] = {false};
        if (node->n_in > 1 && node->in[1] >= 0) {
            const int64_t *axes;
            int64_t k;
            if (s_ints (ctx, node, 1, &axes, &k))
                return -1;
            for (int64_t j = 0; j < k; j++) {
                int axis;
                if (s_axis (ctx, node, "axes value", axes[j], r, false, &axis))
                    return -1;
                if (xs->dims[axis] != 1)
                    return s_node_fail (ctx, node, -1, "dimension %d of %s is not 1", axis,
                                        s_shape_text (xs, ta, sizeof ta));
                drop[axis] = true;
            }
        } else
            for (int d = 0; d < r; d++)
                drop[d] = xs->dims[d] == 1;
        ys->ndim = 0;
        for (int d = 0; d < r; d++)
            if (!drop[d])
                ys->dims[ys->ndim++] = xs->dims[d];
        info->view = true;
        break;
    }
    case G_UNSQUEEZE: {
        const int64_t *axes;
        int64_t k;
        if (s_ints (ctx, node, 1, &axes, &k))
            return -1;
        if (r + k > GRAPH_MAX_DIMS)
            return s_node_fail (ctx, node, -1, "the output would have %lld dimensions, at most %d",
                                (long long)(r + k), GRAPH_MAX_DIMS);
        int rank = (int)(r + k);
        bool add[GRAPH_MAX_DIMS] = {false};
        for (int64_t j = 0; j < k; j++) {
            int axis;
            if (s_axis (ctx, node, "axes value", axes[j], rank, false, &axis))
                return -1;
            if (add[axis])
                return s_node_fail (ctx, node, -1, "axes lists axis %d twice", axis);
            add[axis] = true;
        }
        ys->ndim = rank;
        for (int d = 0, s = 0; d < rank; d++)
            ys->dims[d] = add[d] ? 1 : xs->dims[s++];
        info->view = true;
        break;
    }
    case G_CONCAT: {
        int axis;
        if (r == 0)
            return s_node_fail (ctx, node, -1, "input 0 is a scalar");
        if (s_axis (ctx, node, "axis", node->axis, r, false, &axis))
            return -1;
        info->axis = axis;
        int64_t total = 0;
        for (int k = 0; k < node->n_in; k++) {
            const g_shape_t *ks = &plan->t[node->in[k]].shape;
            bool ok = ks->ndim == r;
            for (int d = 0; ok && d < r; d++)
                ok = d == axis || ks->dims[d] == xs->dims[d];
            if (!ok)
                return s_node_fail (ctx, node, -1, "input %d %s does not fit input 0 %s on axis %d",
                                    k, s_shape_text (ks, tb, sizeof tb),
                                    s_shape_text (xs, ta, sizeof ta), axis);
            total += ks->dims[axis];
        }
        ys->dims[axis] = total;
        break;
    }
    case G_SPLIT: {
        int axis;
        if (r == 0)
            return s_node_fail (ctx, node, -1, "input 0 is a scalar");
        if (s_axis (ctx, node, "axis", node->axis, r, false, &axis))
            return -1;
        info->axis = axis;
        info->sizes = s_plan_alloc (ctx, (size_t)node->n_out * sizeof (int64_t));
        if (!info->sizes)
            return s_node_fail (ctx, node, -2, "out of memory");
        int64_t dim = xs->dims[axis];
        if (node->n_in > 1 && node->in[1] >= 0) {
            const int64_t *sizes;
            int64_t k, sum = 0;
            if (s_ints (ctx, node, 1, &sizes, &k))
                return -1;
            if (k != node->n_out)
                return s_node_fail (ctx, node, -1, "%lld sizes for %d outputs", (long long)k,
                                    node->n_out);
            for (int j = 0; j < k; j++) {
                if (sizes[j] < 0 || sizes[j] > G_MAX_ELEMENTS)
                    return s_node_fail (ctx, node, -1, "size %d is %lld", j, (long long)sizes[j]);
                info->sizes[j] = sizes[j];
                sum += sizes[j];
            }
            if (sum != dim)
                return s_node_fail (ctx, node, -1, "the sizes sum to %lld, the dimension is %lld",
                                    (long long)sum, (long long)dim);
        } else {
            if (dim % node->n_out)
                return s_node_fail (ctx, node, -1, "dimension %lld does not split in %d parts",
                                    (long long)dim, node->n_out);
            for (int j = 0; j < node->n_out; j++)
                info->sizes[j] = dim / node->n_out;
        }
        for (int j = 0; j < node->n_out; j++) {
            ys[j] = *xs;
            ys[j].dims[axis] = info->sizes[j];
        }
        break;
    }
    case G_SLICE: {
        const int64_t *starts, *ends, *axes = NULL, *steps = NULL;
        int64_t k, k2, k3 = -1, k4 = -1;
        if (s_ints (ctx, node, 1, &starts, &k) || s_ints (ctx, node, 2, &ends, &k2))
            return -1;
        if (node->n_in > 3 && node->in[3] >= 0 && s_ints (ctx, node, 3, &axes, &k3))
            return -1;
        if (node->n_in > 4 && node->in[4] >= 0 && s_ints (ctx, node, 4, &steps, &k4))
            return -1;
        if (k2 != k || (axes && k3 != k) || (steps && k4 != k))
            return s_node_fail (ctx, node, -1, "starts, ends, axes and steps differ in length");
        if (k > r)
            return s_node_fail (ctx, node, -1, "%lld axes for input 0 %s", (long long)k,
                                s_shape_text (xs, ta, sizeof ta));
        bool seen[GRAPH_MAX_DIMS] = {false};
        for (int d = 0; d < r; d++) {
            info->starts[d] = 0;
            info->steps[d] = 1;
        }
        for (int j = 0; j < k; j++) {
            int axis = j;
            if (axes && s_axis (ctx, node, "axes value", axes[j], r, false, &axis))
                return -1;
            if (seen[axis])
                return s_node_fail (ctx, node, -1, "axes lists axis %d twice", axis);
            seen[axis] = true;
            int64_t step = steps ? steps[j] : 1, dim = xs->dims[axis];
            if (step == 0)
                return s_node_fail (ctx, node, -1, "step %d is 0", j);
            int64_t start = starts[j], end = ends[j], len;
            if (start < 0)
                start = start < -dim ? 0 : start + dim;
            if (end < 0)
                end = end < -dim ? -1 : end + dim;
            if (step > 0) {
                start = start > dim ? dim : start;
                end = end < 0 ? 0 : end > dim ? dim : end;
                len = end > start ? (end - start + step - 1) / step : 0;
            } else {
                if (starts[j] < -dim)
                    start = -1;
                start = start > dim - 1 ? dim - 1 : start;
                end = end > dim - 1 ? dim - 1 : end;
                len = start > end ? (start - end + (-step) - 1) / (-step) : 0;
            }
            info->starts[axis] = len ? start : 0;
            info->steps[axis] = step;
            ys->dims[axis] = len;
        }
        break;
    }
    case G_GATHER: {
        int axis;
        const g_shape_t *is = &plan->t[node->in[1]].shape;
        if (r == 0)
            return s_node_fail (ctx, node, -1, "input 0 is a scalar");
        if (s_axis (ctx, node, "axis", node->axis, r, false, &axis))
            return -1;
        if (r - 1 + is->ndim > GRAPH_MAX_DIMS)
            return s_node_fail (ctx, node, -1, "the output would have %d dimensions",
                                r - 1 + is->ndim);
        info->axis = axis;
        ys->ndim = 0;
        for (int d = 0; d < axis; d++)
            ys->dims[ys->ndim++] = xs->dims[d];
        for (int d = 0; d < is->ndim; d++)
            ys->dims[ys->ndim++] = is->dims[d];
        for (int d = axis + 1; d < r; d++)
            ys->dims[ys->ndim++] = xs->dims[d];
        break;
    }
    case G_EXPAND: {
        const int64_t *shape;
        int64_t k;
        if (s_ints (ctx, node, 1, &shape, &k))
            return -1;
        if (k > GRAPH_MAX_DIMS)
            return s_node_fail (ctx, node, -1, "the shape has %lld dimensions, at most %d",
                                (long long)k, GRAPH_MAX_DIMS);
        g_shape_t target = {(int)k, {0}};
        for (int d = 0; d < k; d++) {
            if (shape[d] < 0 || shape[d] > G_MAX_ELEMENTS)
                return s_node_fail (ctx, node, -1, "shape[%d] is %lld", d, (long long)shape[d]);
            target.dims[d] = shape[d];
        }
        if (g_broadcast (xs, &target, ys))
            return s_node_fail (ctx, node, -1, "input 0 %s does not broadcast to %s",
                                s_shape_text (xs, ta, sizeof ta),
                                s_shape_text (&target, tb, sizeof tb));
        break;
    }
    case G_RANGE: {
        for (int k = 0; k < 3; k++)
            if (g_numel (&plan->t[node->in[k]].shape) != 1)
                return s_node_fail (ctx, node, -1, "input %d is not a scalar", k);
        double n;
        if (graph->tensors[node->in[0]].dtype == AMAAS_INT64) {
            const int64_t *start = s_data (plan, NULL, node->in[0]);
            const int64_t *limit = s_data (plan, NULL, node->in[1]);
            const int64_t *delta = s_data (plan, NULL, node->in[2]);
            if (*delta == 0)
                return s_node_fail (ctx, node, -1, "delta is 0");
            __int128 span = (__int128)*limit - *start;
            __int128 count = span / *delta + (span % *delta != 0 && (span > 0) == (*delta > 0));
            n = count < 0 ? 0 : count > G_MAX_ELEMENTS ? 2.0 * G_MAX_ELEMENTS : (double)count;
        } else {
            const float *start = s_data (plan, NULL, node->in[0]);
            const float *limit = s_data (plan, NULL, node->in[1]);
            const float *delta = s_data (plan, NULL, node->in[2]);
            if (*delta == 0 || !isfinite (*delta) || !isfinite (*start) || !isfinite (*limit))
                return s_node_fail (ctx, node, -1,
                                    "start, limit and delta must be finite, "
                                    "delta not 0");
            n = ceil (((double)*limit - *start) / *delta);
            n = n < 0 ? 0 : n;
        }
        if (n > G_MAX_ELEMENTS)
            return s_node_fail (ctx, node, -1, "the range has more than 2^31 elements");
        ys->ndim = 1;
        ys->dims[0] = (int64_t)n;
        break;
    }
    case G_SHAPE: {
        int64_t start = node->axis, end = node->end;
        if (start < 0)
            start = start < -r ? 0 : start + r;
        if (end < 0)
            end = end < -r ? 0 : end + r;
        start = start > r ? r : start;
        end = end > r ? r : end;
        ys->ndim = 1;
        ys->dims[0] = end > start ? end - start : 0;
        info->axis = (int)start;
        break;
    }
    case G_CONSTANT_OF_SHAPE: {
        const int64_t *shape;
        int64_t k;
        if (s_ints (ctx, node, 0, &shape, &k))
            return -1;
        if (k > GRAPH_MAX_DIMS)
            return s_node_fail (ctx, node, -1, "the shape has %lld dimensions, at most %d",
                                (long long)k, GRAPH_MAX_DIMS);
        ys->ndim = (int)k;
        for (int d = 0; d < k; d++) {
            if (shape[d] < 0 || shape[d] > G_MAX_ELEMENTS)
                return s_node_fail (ctx, node, -1, "shape[%d] is %lld", d, (long long)shape[d]);
            ys->dims[d] = shape[d];
        }
        break;
    }
    default: break; //  element-wise: the shape of input 0
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  Arena layout: first fit among up to S_FREE_SLOTS free blocks, kept
//  sorted by offset and merged with their neighbours

typedef struct {
    size_t offset, size;
} s_block_t;

typedef struct {
    s_block_t free[S_FREE_SLOTS];
    size_t n_free;
    size_t top; //  bytes in use or freed, from 0
} s_layout_t;

static size_t s_layout_alloc (s_layout_t *l, size_t size)
{
    for (size_t i = 0; i < l->n_free; i++)
        if (l->free[i].size >= size) {
            size_t offset = l->free[i].offset;
            l->free[i].offset += size;
            l->free[i].size -= size;
            if (l->free[i].size == 0) {
                memmove (&l->free[i], &l->free[i + 1], (l->n_free - i - 1) * sizeof (s_block_t));
                l->n_free--;
            }
            return offset;
        }
    //  Grow from the top (taking a free block that ends there)
    if (l->n_free && l->free[l->n_free - 1].offset + l->free[l->n_free - 1].size == l->top) {
        size_t offset = l->free[--l->n_free].offset;
        l->top = offset + size;
        return offset;
    }
    size_t offset = l->top;
    l->top += size;
    return offset;
}

static void s_layout_free (s_layout_t *l, size_t offset, size_t size)
{
    size_t i = 0;
    while (i < l->n_free && l->free[i].offset < offset)
        i++;
    bool left = i > 0 && l->free[i - 1].offset + l->free[i - 1].size == offset;
    bool right = i < l->n_free && offset + size == l->free[i].offset;
    if (left && right) {
        l->free[i - 1].size += size + l->free[i].size;
        memmove (&l->free[i], &l->free[i + 1], (l->n_free - i - 1) * sizeof (s_block_t));
        l->n_free--;
    } else if (left)
        l->free[i - 1].size += size;
    else if (right) {
        l->free[i].offset = offset;
        l->free[i].size += size;
    } else if (l->n_free < S_FREE_SLOTS) {
        memmove (&l->free[i + 1], &l->free[i], (l->n_free - i) * sizeof (s_block_t));
        l->free[i] = (s_block_t){offset, size};
        l->n_free++;
    } //  else the bytes stay unused in this plan
}

//  ---------------------------------------------------------------------------
//  Making a plan

//  Checks the request's input shapes against the declared ones
static int s_check_inputs (s_ctx_t *ctx, const int64_t shapes[][GRAPH_MAX_DIMS])
{
    const graph_t *graph = ctx->graph;
    int64_t batch = shapes[0][0];
    for (size_t i = 0; i < graph->n_inputs; i++) {
        const graph_io_t *io = &graph->inputs[i];
        for (int d = 0; d < io->ndim; d++) {
            int64_t v = shapes[i][d];
            if (v < 1 || v > G_MAX_ELEMENTS)
                return s_fail (ctx->err, ctx->err_size, -1,
                               "input '%s': dimension %d is %lld, expected 1..2^31", io->name, d,
                               (long long)v);
            if (d == 0 && v != batch)
                return s_fail (ctx->err, ctx->err_size, -1,
                               "input '%s': the batch is %lld, input '%s' has %lld", io->name,
                               (long long)v, graph->inputs[0].name, (long long)batch);
            if (io->dims[d] >= 0 && v != io->dims[d])
                return s_fail (ctx->err, ctx->err_size, -1,
                               "input '%s': dimension %d is %lld, declared %lld", io->name, d,
                               (long long)v, (long long)io->dims[d]);
            if (io->dims[d] >= 0 || d == 0)
                continue;
            //  A named dimension: every input naming it agrees
            for (size_t j = 0; j < i; j++)
                for (int e = 1; e < graph->inputs[j].ndim; e++)
                    if (graph->inputs[j].dim_names[e] &&
                        strcmp (graph->inputs[j].dim_names[e], io->dim_names[d]) == 0 &&
                        shapes[j][e] != v)
                        return s_fail (ctx->err, ctx->err_size, -1,
                                       "input '%s': dimension %d \"%s\" is %lld, input '%s' has "
                                       "%lld",
                                       io->name, d, io->dim_names[d], (long long)v,
                                       graph->inputs[j].name, (long long)shapes[j][e]);
        }
    }
    return 0;
}

//  Checks the outputs' shapes: the batch first, the declared fixed
//  dimensions, the named ones as the inputs set them
static int s_check_outputs (s_ctx_t *ctx, const int64_t shapes[][GRAPH_MAX_DIMS])
{
    const graph_t *graph = ctx->graph;
    char text[120];
    for (size_t o = 0; o < graph->n_outputs; o++) {
        const graph_io_t *io = &graph->outputs[o];
        const g_shape_t *shape = &ctx->plan->t[graph->output_tensor[o]].shape;
        bool ok = shape->ndim == io->ndim && shape->dims[0] == ctx->plan->batch;
        for (int d = 1; ok && d < io->ndim; d++) {
            if (io->dims[d] >= 0) {
                ok = shape->dims[d] == io->dims[d];
                continue;
            }
            for (size_t i = 0; ok && i < graph->n_inputs; i++)
                for (int e = 1; ok && e < graph->inputs[i].ndim; e++)
                    if (graph->inputs[i].dim_names[e] &&
                        strcmp (graph->inputs[i].dim_names[e], io->dim_names[d]) == 0)
                        ok = shapes[i][e] == shape->dims[d];
        }
        if (!ok) {
            char want[160];
            size_t len = (size_t)snprintf (want, sizeof want, "[%s", io->dim_names[0]);
            for (int d = 1; d < io->ndim && len < sizeof want; d++) {
                if (io->dim_names[d])
                    len +=
                        (size_t)snprintf (want + len, sizeof want - len, ", %s", io->dim_names[d]);
                else
                    len += (size_t)snprintf (want + len, sizeof want - len, ", %lld",
                                             (long long)io->dims[d]);
            }
            if (len < sizeof want)
                snprintf (want + len, sizeof want - len, "]");
            return s_fail (ctx->err, ctx->err_size, -1,
                           "output '%s' is %s for a batch of %lld, declared %s", io->name,
                           s_shape_text (shape, text, sizeof text), (long long)ctx->plan->batch,
                           want);
        }
    }
    return 0;
}

//  Shapes, static tensors, views, then the arena layout
static int s_plan_make (s_ctx_t *ctx, const int64_t shapes[][GRAPH_MAX_DIMS])
{
    const graph_t *graph = ctx->graph;
    s_plan_t *plan = ctx->plan;
    int rc = s_check_inputs (ctx, shapes);
    if (rc)
        return rc;
    plan->batch = shapes[0][0];
    for (size_t t = 0; t < graph->n_tensors; t++) {
        const g_tensor_t *tensor = &graph->tensors[t];
        s_tinfo_t *info = &plan->t[t];
        info->root = (int32_t)t;
        info->end = tensor->last_use;
        if (tensor->from == G_FROM_CONSTANT) {
            info->loc = S_LOC_PTR;
            info->ptr = tensor->data;
            info->shape.ndim = tensor->ndim;
            memcpy (info->shape.dims, tensor->dims, sizeof info->shape.dims);
        } else if (tensor->from == G_FROM_INPUT) {
            info->loc = S_LOC_ARENA;
            info->shape.ndim = graph->inputs[tensor->index].ndim;
            memcpy (info->shape.dims, shapes[tensor->index], sizeof info->shape.dims);
            info->bytes = (size_t)s_count (&info->shape) * g_dtype_size (tensor->dtype);
        }
    }
    //  Shapes in node order; static nodes computed now
    size_t scratch = 0;
    for (size_t i = 0; i < graph->n_nodes; i++) {
        const g_node_t *node = &graph->nodes[i];
        g_shape_t ys[G_MAX_NODE_IO];
        if ((rc = s_infer (ctx, i, ys)))
            return rc;
        for (int k = 0; k < node->n_out; k++) {
            int32_t t = node->out[k];
            s_tinfo_t *info = &plan->t[t];
            info->shape = ys[k];
            int64_t count = s_count (&ys[k]);
            if (count < 0) {
                char text[120];
                return s_node_fail (ctx, node, -1, "output %s has more than 2^31 elements",
                                    s_shape_text (&ys[k], text, sizeof text));
            }
            info->bytes = (size_t)count * g_dtype_size (graph->tensors[t].dtype);
        }
        s_ninfo_t *ninfo = &plan->n[i];
        if (ninfo->view) {
            s_tinfo_t *src = &plan->t[node->in[0]], *dst = &plan->t[node->out[0]];
            dst->loc = src->loc;
            dst->ptr = src->ptr;
            dst->root = src->root;
            if (src->loc == S_LOC_ARENA && plan->t[src->root].end < dst->end)
                plan->t[src->root].end = dst->end;
        } else if (node->is_static) {
            for (int k = 0; k < node->n_out; k++) {
                s_tinfo_t *info = &plan->t[node->out[k]];
                info->loc = S_LOC_PTR;
                info->ptr = s_plan_alloc (ctx, info->bytes);
                if (!info->ptr)
                    return s_node_fail (ctx, node, -2,
                                        "out of memory or above the plan limit (%zu bytes)",
                                        s_limit);
            }
            void *tmp = NULL;
            if (node->op == G_CONV) {
                size_t need = gk_conv_scratch (&ninfo->conv);
                if (need && !(tmp = s_plan_alloc (ctx, need)))
                    return s_node_fail (ctx, node, -2, "out of memory for the scratch");
            }
            if (s_run_node (graph, plan, i, NULL, tmp, ctx->err, ctx->err_size))
                return -1;
        } else {
            for (int k = 0; k < node->n_out; k++)
                plan->t[node->out[k]].loc = S_LOC_ARENA;
            if (node->op == G_CONV) {
                size_t need = gk_conv_scratch (&ninfo->conv);
                scratch = need > scratch ? need : scratch;
            }
        }
    }
    //  The arena: inputs first, then each dynamic node's outputs
    s_layout_t *layout = calloc (1, sizeof (s_layout_t));
    if (!layout)
        return s_fail (ctx->err, ctx->err_size, -2, "out of memory");
    for (size_t i = 0; i < graph->n_inputs; i++) {
        s_tinfo_t *info = &plan->t[graph->input_tensor[i]];
        info->offset =
            s_layout_alloc (layout, (info->bytes + S_ALIGN - 1) & ~(size_t)(S_ALIGN - 1));
    }
    for (size_t i = 0; i < graph->n_inputs; i++) {
        s_tinfo_t *info = &plan->t[graph->input_tensor[i]];
        if (info->end < 0)
            s_layout_free (layout, info->offset,
                           (info->bytes + S_ALIGN - 1) & ~(size_t)(S_ALIGN - 1));
    }
    for (size_t i = 0; i < graph->n_nodes; i++) {
        const g_node_t *node = &graph->nodes[i];
        if (node->is_static || plan->n[i].view)
            continue;
        for (int k = 0; k < node->n_out; k++) {
            s_tinfo_t *info = &plan->t[node->out[k]];
            info->offset =
                s_layout_alloc (layout, (info->bytes + S_ALIGN - 1) & ~(size_t)(S_ALIGN - 1));
        }
        //  Free the blocks whose last reader is this node, and unread outputs
        for (int k = 0; k < node->n_in + node->n_out; k++) {
            int32_t t = k < node->n_in ? node->in[k] : node->out[k - node->n_in];
            if (t < 0)
                continue;
            s_tinfo_t *info = &plan->t[t];
            if (info->loc != S_LOC_ARENA)
                continue;
            s_tinfo_t *root = &plan->t[info->root];
            int32_t end = root->end < (int32_t)i ? (int32_t)i : root->end;
            if (end == (int32_t)i && !root->freed) {
                s_layout_free (layout, root->offset,
                               (root->bytes + S_ALIGN - 1) & ~(size_t)(S_ALIGN - 1));
                root->freed = true;
            }
        }
    }
    //  Views take their root's offset
    for (size_t t = 0; t < graph->n_tensors; t++)
        if (plan->t[t].loc == S_LOC_ARENA && plan->t[t].root != (int32_t)t)
            plan->t[t].offset = plan->t[plan->t[t].root].offset;
    plan->scratch = layout->top;
    plan->arena_size = layout->top + ((scratch + S_ALIGN - 1) & ~(size_t)(S_ALIGN - 1));
    free (layout);
    if (plan->arena_size + ctx->bytes > s_limit)
        return s_fail (ctx->err, ctx->err_size, -2,
                       "a plan of %zu bytes is above the limit of %zu bytes",
                       plan->arena_size + ctx->bytes, s_limit);
    plan->bytes = ctx->bytes + plan->arena_size;
    return s_check_outputs (ctx, shapes);
}

//  ---------------------------------------------------------------------------
//  The workspace and its plans

graph_ws_t *graph_ws_new (void)
{
    return calloc (1, sizeof (graph_ws_t));
}

void graph_ws_destroy (graph_ws_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    graph_ws_t *self = *self_p;
    for (size_t i = 0; i < self->n_plans; i++)
        s_plan_destroy (&self->plans[i]);
    free (self->arena);
    free (self);
    *self_p = NULL;
}

size_t graph_ws_size (const graph_ws_t *self)
{
    size_t total = self->arena_cap;
    for (size_t i = 0; i < self->n_plans; i++)
        total += self->plans[i]->bytes - self->plans[i]->arena_size;
    return total;
}

//  Removes plan i of the workspace
static void s_ws_drop (graph_ws_t *self, size_t i)
{
    if (self->current == self->plans[i])
        self->current = NULL;
    s_plan_destroy (&self->plans[i]);
    self->plans[i] = self->plans[--self->n_plans];
}

//  The workspace's plan of graph for shapes, or NULL
static s_plan_t *s_ws_find (graph_ws_t *self, const graph_t *graph,
                            const int64_t shapes[][GRAPH_MAX_DIMS])
{
    for (size_t i = 0; i < self->n_plans; i++) {
        s_plan_t *plan = self->plans[i];
        if (plan->serial != graph->serial || plan->graph != graph)
            continue;
        bool same = true;
        for (size_t k = 0; same && k < graph->n_inputs; k++)
            same = memcmp (plan->shapes[k], shapes[k],
                           (size_t)graph->inputs[k].ndim * sizeof (int64_t)) == 0;
        if (same)
            return plan;
    }
    return NULL;
}

//  Makes room for a plan of graph: its least recently used plan goes when
//  it has GRAPH_PLANS, the workspace's when it holds S_MAX_PLANS
static void s_ws_evict (graph_ws_t *self, const graph_t *graph)
{
    size_t mine = 0, lru_mine = SIZE_MAX, lru = SIZE_MAX;
    for (size_t i = 0; i < self->n_plans; i++) {
        s_plan_t *plan = self->plans[i];
        if (plan->serial == graph->serial && plan->graph == graph) {
            mine++;
            if (lru_mine == SIZE_MAX || plan->used < self->plans[lru_mine]->used)
                lru_mine = i;
        }
        if (lru == SIZE_MAX || plan->used < self->plans[lru]->used)
            lru = i;
    }
    if (mine >= GRAPH_PLANS)
        s_ws_drop (self, lru_mine);
    else if (self->n_plans >= S_MAX_PLANS)
        s_ws_drop (self, lru);
}

int graph_prepare (const graph_t *self, graph_ws_t *ws, const int64_t shapes[][GRAPH_MAX_DIMS],
                   void **inputs, char *err, size_t err_size)
{
    if (err && err_size)
        err[0] = 0;
    ws->current = NULL;
    s_plan_t *plan = s_ws_find (ws, self, shapes);
    if (!plan) {
        s_ws_evict (ws, self);
        plan = calloc (1, sizeof (s_plan_t));
        if (plan) {
            plan->t = calloc (self->n_tensors, sizeof (s_tinfo_t));
            plan->n = calloc (self->n_nodes, sizeof (s_ninfo_t));
        }
        if (!plan || !plan->t || !plan->n) {
            s_plan_destroy (&plan);
            return s_fail (err, err_size, -2, "out of memory for a plan");
        }
        plan->graph = self;
        plan->serial = self->serial;
        for (size_t k = 0; k < self->n_inputs; k++)
            memcpy (plan->shapes[k], shapes[k], (size_t)self->inputs[k].ndim * sizeof (int64_t));
        s_ctx_t ctx = {self, plan, err, err_size, 0};
        int rc = s_plan_make (&ctx, shapes);
        if (rc) {
            s_plan_destroy (&plan);
            return rc;
        }
        ws->plans[ws->n_plans++] = plan;
        ws->made++;
        char dims[160];
        size_t len = 0;
        dims[0] = 0;
        for (size_t k = 0; k < self->n_inputs && len < sizeof dims - 48; k++)
            for (int d = 0; d < self->inputs[k].ndim && len < sizeof dims - 24; d++)
                len += (size_t)snprintf (dims + len, sizeof dims - len, "%s%" PRId64,
                                         d   ? "x"
                                         : k ? ","
                                             : "",
                                         shapes[k][d]);
        log_debug ("graph plan made shapes=%s arena_bytes=%zu plans=%zu", dims, plan->arena_size,
                   ws->n_plans);
    }
    if (plan->arena_size > ws->arena_cap) {
        void *arena = NULL;
        if (posix_memalign (&arena, S_ALIGN, plan->arena_size))
            return s_fail (err, err_size, -2, "out of memory for %zu bytes", plan->arena_size);
        free (ws->arena);
        ws->arena = arena;
        ws->arena_cap = plan->arena_size;
    }
    plan->used = ++ws->tick;
    ws->current = plan;
    for (size_t k = 0; k < self->n_inputs; k++)
        inputs[k] = (char *)ws->arena + plan->t[self->input_tensor[k]].offset;
    return 0;
}

int graph_execute (const graph_t *self, graph_ws_t *ws, model_output_t *outputs, char *err,
                   size_t err_size)
{
    s_plan_t *plan = ws->current;
    if (!plan || plan->graph != self || plan->serial != self->serial)
        return s_fail (err, err_size, -1, "graph_execute without graph_prepare");
    char *arena = ws->arena;
    void *scratch = arena + plan->scratch;
    for (size_t i = 0; i < self->n_nodes; i++)
        if (!self->nodes[i].is_static && s_run_node (self, plan, i, arena, scratch, err, err_size))
            return -1;
    for (size_t o = 0; o < self->n_outputs; o++) {
        int32_t t = self->output_tensor[o];
        const s_tinfo_t *info = &plan->t[t];
        model_output_t *out = &outputs[o];
        out->name = self->outputs[o].name;
        out->datatype = self->outputs[o].datatype;
        out->ndim = info->shape.ndim;
        memcpy (out->shape, info->shape.dims, sizeof out->shape);
        out->data = s_data (plan, arena, t);
        out->size = (size_t)g_numel (&info->shape) * g_dtype_size (self->tensors[t].dtype);
    }
    return 0;
}

size_t graph_ws_plan_count (const graph_ws_t *ws, const graph_t *self)
{
    size_t count = 0;
    for (size_t i = 0; i < ws->n_plans; i++)
        count += ws->plans[i]->graph == self && ws->plans[i]->serial == self->serial;
    return count;
}

uint64_t graph_ws_plans_made (const graph_ws_t *ws)
{
    return ws->made;
}
