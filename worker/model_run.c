/*  model_run.c - compute a loaded model on a batch of rows.

    The current tensor lives in one of two ping-pong buffers of the workspace:
    the input is converted into buffer 0, element-wise ops work in place, and
    dense and binary write into the other buffer, which then becomes current.
    An output op copies the current tensor into that output's own buffer (the
    tensor may change after it); argmax writes labels into the label buffer,
    which the outputs that follow point at.  Every run starts on buffer 0, so
    the sequence of buffer sizes is the same from run to run: buffers only
    grow, and a steady state of same-or-smaller batches allocates nothing.

    Dense layers are one BLIS gemm each, row-major (row stride = columns,
    column stride = 1), with C initialised to the bias rows and beta = 1.  BLIS
    runs one thread: a worker process serves one job at a time, and the
    machine's cores go to more worker processes.
*/
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "graph.h"
#include "model.h"
#include "model_family.h"

#define S_ALIGN 64
#define S_MAX_NESTING DEFS_NESTING_MAX //  columns ops inside columns ops (model.c)

//  A buffer that only grows
typedef struct {
    void *data;      //  S_ALIGN-aligned, or NULL
    size_t capacity; //  bytes at data
} s_buffer_t;

struct model_workspace_t {
    s_buffer_t tensor[2];                 //  current tensor, ping-pong
    s_buffer_t output[MODEL_MAX_OUTPUTS]; //  copies of emitted tensors
    s_buffer_t labels;                    //  argmax labels (INT64 or BYTES)
    s_buffer_t part[S_MAX_NESTING][2];    //  a columns op's part at each depth, ping-pong
    s_buffer_t scratch;                   //  a family op's scratch
    graph_ws_t *graph;                    //  graph models' plans and buffers, or NULL
};

static pthread_once_t s_blis_once = PTHREAD_ONCE_INIT;

static void s_blis_init (void)
{
    bli_thread_set_num_threads (1);
}

//  Make the buffer hold at least size bytes; its contents are not kept.
//  Returns 0, or -1 when out of memory (the buffer is then unchanged).
static int s_reserve (s_buffer_t *buffer, size_t size)
{
    if (size <= buffer->capacity)
        return 0;
    size_t rounded;
    if (__builtin_add_overflow (size, S_ALIGN - 1, &rounded))
        return -1;
    rounded -= rounded % S_ALIGN;
    void *data = NULL;
    if (posix_memalign (&data, S_ALIGN, rounded))
        return -1;
    free (buffer->data);
    buffer->data = data;
    buffer->capacity = rounded;
    return 0;
}

model_workspace_t *model_workspace_new (void)
{
    pthread_once (&s_blis_once, s_blis_init);
    return calloc (1, sizeof (model_workspace_t));
}

void model_workspace_destroy (model_workspace_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    model_workspace_t *self = *self_p;
    free (self->tensor[0].data);
    free (self->tensor[1].data);
    for (size_t i = 0; i < MODEL_MAX_OUTPUTS; i++)
        free (self->output[i].data);
    free (self->labels.data);
    for (size_t d = 0; d < S_MAX_NESTING; d++)
        for (size_t k = 0; k < 2; k++)
            free (self->part[d][k].data);
    free (self->scratch.data);
    graph_ws_destroy (&self->graph);
    free (self);
    *self_p = NULL;
}

size_t model_workspace_size (const model_workspace_t *self)
{
    size_t total = self->tensor[0].capacity + self->tensor[1].capacity + self->labels.capacity +
                   self->scratch.capacity;
    for (size_t d = 0; d < S_MAX_NESTING; d++)
        total += self->part[d][0].capacity + self->part[d][1].capacity;
    for (size_t i = 0; i < MODEL_MAX_OUTPUTS; i++)
        total += self->output[i].capacity;
    if (self->graph)
        total += graph_ws_size (self->graph);
    return total;
}

graph_ws_t *model_workspace_graph (model_workspace_t *ws)
{
    if (!ws->graph)
        ws->graph = graph_ws_new ();
    return ws->graph;
}

//  --------------------------------------------------------------------------
//  Input conversion: read each element with memcpy, the input need not be
//  aligned.  INT64 to FP32/FP64 rounds to nearest, as numpy's astype does.

#define S_CONVERT(T, dst, in_dtype, src, count)                                                    \
    do {                                                                                           \
        const unsigned char *in_ = (const unsigned char *)(src);                                   \
        T *out_ = (T *)(dst);                                                                      \
        size_t n_ = (count);                                                                       \
        switch (in_dtype) {                                                                        \
        case AMAAS_FP32:                                                                           \
            for (size_t i_ = 0; i_ < n_; i_++) {                                                   \
                float v_;                                                                          \
                memcpy (&v_, in_ + i_ * sizeof v_, sizeof v_);                                     \
                out_[i_] = (T)v_;                                                                  \
            }                                                                                      \
            break;                                                                                 \
        case AMAAS_FP64:                                                                           \
            for (size_t i_ = 0; i_ < n_; i_++) {                                                   \
                double v_;                                                                         \
                memcpy (&v_, in_ + i_ * sizeof v_, sizeof v_);                                     \
                out_[i_] = (T)v_;                                                                  \
            }                                                                                      \
            break;                                                                                 \
        case AMAAS_INT32:                                                                          \
            for (size_t i_ = 0; i_ < n_; i_++) {                                                   \
                int32_t v_;                                                                        \
                memcpy (&v_, in_ + i_ * sizeof v_, sizeof v_);                                     \
                out_[i_] = (T)v_;                                                                  \
            }                                                                                      \
            break;                                                                                 \
        default: /*  AMAAS_INT64 */                                                                \
            for (size_t i_ = 0; i_ < n_; i_++) {                                                   \
                int64_t v_;                                                                        \
                memcpy (&v_, in_ + i_ * sizeof v_, sizeof v_);                                     \
                out_[i_] = (T)v_;                                                                  \
            }                                                                                      \
            break;                                                                                 \
        }                                                                                          \
    } while (0)

//  --------------------------------------------------------------------------
//  Element-wise and row ops, one version per element type.  x is [rows, w].

#define S_DEFINE_OPS(T, S, EXP, TANH)                                                              \
    static void s_scale_##S (T *x, size_t rows, size_t w, const T *mean, const T *scale)           \
    {                                                                                              \
        for (size_t r = 0; r < rows; r++, x += w)                                                  \
            for (size_t j = 0; j < w; j++)                                                         \
                x[j] = (x[j] - mean[j]) / scale[j];                                                \
    }                                                                                              \
    static void s_relu_##S (T *x, size_t n)                                                        \
    {                                                                                              \
        for (size_t i = 0; i < n; i++)                                                             \
            x[i] = x[i] > 0 ? x[i] : 0;                                                            \
    }                                                                                              \
    static void s_tanh_##S (T *x, size_t n)                                                        \
    {                                                                                              \
        for (size_t i = 0; i < n; i++)                                                             \
            x[i] = TANH (x[i]);                                                                    \
    }                                                                                              \
    /*  scipy's expit: 1 / (1 + exp (-x)), and exp (x) / (1 + exp (x)) below 0 so  */              \
    /*  that exp never overflows and tiny results keep their precision.            */              \
    static void s_sigmoid_##S (T *x, size_t n)                                                     \
    {                                                                                              \
        for (size_t i = 0; i < n; i++) {                                                           \
            if (x[i] >= 0)                                                                         \
                x[i] = 1 / (1 + EXP (-x[i]));                                                      \
            else {                                                                                 \
                T e = EXP (x[i]);                                                                  \
                x[i] = e / (1 + e);                                                                \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void s_softmax_##S (T *x, size_t rows, size_t w)                                        \
    {                                                                                              \
        for (size_t r = 0; r < rows; r++, x += w) {                                                \
            T max = x[0];                                                                          \
            for (size_t j = 1; j < w; j++)                                                         \
                if (x[j] > max)                                                                    \
                    max = x[j];                                                                    \
            T sum = 0;                                                                             \
            for (size_t j = 0; j < w; j++) {                                                       \
                x[j] = EXP (x[j] - max);                                                           \
                sum += x[j];                                                                       \
            }                                                                                      \
            for (size_t j = 0; j < w; j++)                                                         \
                x[j] /= sum;                                                                       \
        }                                                                                          \
    }                                                                                              \
    static void s_normalize_##S (T *x, size_t rows, size_t w)                                      \
    {                                                                                              \
        for (size_t r = 0; r < rows; r++, x += w) {                                                \
            T sum = 0;                                                                             \
            for (size_t j = 0; j < w; j++)                                                         \
                sum += x[j];                                                                       \
            for (size_t j = 0; j < w; j++)                                                         \
                x[j] /= sum;                                                                       \
        }                                                                                          \
    }                                                                                              \
    static void s_binary_##S (const T *x, T *y, size_t rows)                                       \
    {                                                                                              \
        for (size_t r = 0; r < rows; r++) {                                                        \
            y[2 * r] = 1 - x[r];                                                                   \
            y[2 * r + 1] = x[r];                                                                   \
        }                                                                                          \
    }                                                                                              \
    /*  Index of the largest value of each row, the first on ties; a NaN counts */                 \
    /*  as the largest, as in numpy.argmax.                                      */                \
    static size_t s_argmax_##S (const T *x, size_t w)                                              \
    {                                                                                              \
        size_t best = 0;                                                                           \
        for (size_t j = 1; j < w && !isnan (x[best]); j++)                                         \
            if (x[j] > x[best] || isnan (x[j]))                                                    \
                best = j;                                                                          \
        return best;                                                                               \
    }                                                                                              \
    static void s_dense_##S (const T *x, T *y, size_t rows, size_t in, size_t out, const T *w,     \
                             const T *b)                                                           \
    {                                                                                              \
        for (size_t r = 0; r < rows; r++)                                                          \
            memcpy (y + r * out, b, out * sizeof (T));                                             \
        T one = 1;                                                                                 \
        bli_##S##gemm (BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)out, (dim_t)in,   \
                       &one, (T *)x, (inc_t)in, 1, (T *)w, (inc_t)out, 1, &one, y, (inc_t)out, 1); \
    }

S_DEFINE_OPS (float, s, expf, tanhf)
S_DEFINE_OPS (double, d, exp, tanh)

//  Write labels of each row of x into labels; returns the bytes written.
static size_t s_labels (const model_op_t *op, amaas_dtype_t dtype, const void *x, size_t rows,
                        void *labels)
{
    size_t w = op->in_width;
    size_t pos = 0;
    for (size_t r = 0; r < rows; r++) {
        size_t best = dtype == AMAAS_FP64 ? s_argmax_d ((const double *)x + r * w, w)
                                          : s_argmax_s ((const float *)x + r * w, w);
        if (op->labels_dtype == AMAAS_INT64) {
            ((int64_t *)labels)[r] = op->int_labels[best];
            pos += sizeof (int64_t);
        } else {
            size_t start = op->bytes_offset[best];
            size_t size = op->bytes_offset[best + 1] - start;
            memcpy ((uint8_t *)labels + pos, op->bytes_labels + start, size);
            pos += size;
        }
    }
    return pos;
}

//  Write "message" into err.  Returns -1.
static int s_fail (char *err, size_t err_size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int s_fail (char *err, size_t err_size, const char *format, ...)
{
    if (err && err_size) {
        va_list args;
        va_start (args, format);
        vsnprintf (err, err_size, format, args);
        va_end (args);
    }
    return -1;
}

//  Largest width of a tensor over the ops, those in parts included.
static size_t s_max_width_ops (const model_op_t *const *ops, size_t count, size_t max)
{
    for (size_t i = 0; i < count; i++) {
        if (ops[i]->out_width > max)
            max = ops[i]->out_width;
        for (size_t p = 0; p < ops[i]->n_parts; p++)
            max = s_max_width_ops (ops[i]->parts[p].ops, ops[i]->parts[p].n_ops, max);
    }
    return max;
}

//  Largest width of the current tensor over the ops, input included.
static size_t s_max_width (const model_t *self)
{
    size_t max = model_input_width (self);
    for (size_t i = 0; i < model_op_count (self); i++) {
        const model_op_t *op = model_op (self, i);
        max = s_max_width_ops (&op, 1, max);
    }
    return max;
}

//  Checks a batch of `rows` rows of in_dtype (INVALID: the model's own) is
//  one the workspace can address.  Returns 0 or -1 with a message.
static int s_check_batch (const model_t *self, amaas_dtype_t in_dtype, size_t rows, char *err,
                          size_t err_size)
{
    const char *name = model_name (self);
    if (rows == 0)
        return s_fail (err, err_size, "%s: a batch needs at least one row", name);
    size_t in_size;
    switch (in_dtype) {
    case AMAAS_FP32:
    case AMAAS_INT32: in_size = 4; break;
    case AMAAS_FP64:
    case AMAAS_INT64:
    case AMAAS_DTYPE_INVALID: in_size = 8; break;
    default:
        return s_fail (err, err_size,
                       "%s: input datatype must be FP32, FP64, INT32 or INT64 (got %d)", name,
                       (int)in_dtype);
    }
    size_t elem = model_dtype (self) == AMAAS_FP64 ? 8 : 4;
    size_t max_bytes;
    if ((uint64_t)rows > (uint64_t)INT64_MAX ||
        __builtin_mul_overflow (rows, s_max_width (self), &max_bytes) ||
        __builtin_mul_overflow (max_bytes, elem > in_size ? elem : in_size, &max_bytes))
        return s_fail (err, err_size, "%s: a batch of %zu rows is too large", name, rows);
    return 0;
}

void *model_input (const model_t *self, model_workspace_t *ws, size_t rows, char *err,
                   size_t err_size)
{
    if (model_graph (self)) {
        s_fail (err, err_size, "model %s is a graph model", model_name (self));
        return NULL;
    }
    if (s_check_batch (self, AMAAS_DTYPE_INVALID, rows, err, err_size))
        return NULL;
    size_t elem = model_dtype (self) == AMAAS_FP64 ? 8 : 4;
    if (s_reserve (&ws->tensor[0], rows * model_input_width (self) * elem)) {
        s_fail (err, err_size, "%s: out of memory for a batch of %zu rows", model_name (self),
                rows);
        return NULL;
    }
    return ws->tensor[0].data;
}

int model_convert (const model_t *self, amaas_dtype_t in_dtype, const void *in_data, size_t rows,
                   void *dest)
{
    if (in_dtype != AMAAS_FP32 && in_dtype != AMAAS_FP64 && in_dtype != AMAAS_INT32 &&
        in_dtype != AMAAS_INT64)
        return -1;
    size_t count = rows * model_input_width (self);
    if (model_dtype (self) == AMAAS_FP64)
        S_CONVERT (double, dest, in_dtype, in_data, count);
    else
        S_CONVERT (float, dest, in_dtype, in_data, count);
    return 0;
}

int model_run (const model_t *self, model_workspace_t *ws, amaas_dtype_t in_dtype,
               const void *in_data, size_t rows, model_output_t *outputs, char *err,
               size_t err_size)
{
    const char *name = self ? model_name (self) : "model";
    if (!self || !ws || !outputs)
        return s_fail (err, err_size, "%s: model_run called without a model, workspace or outputs",
                       name);
    if (model_graph (self))
        return s_fail (err, err_size, "model %s is a graph model", name);
    if (!in_data)
        return s_fail (err, err_size, "%s: no input data", name);
    if (s_check_batch (self, in_dtype, rows, err, err_size))
        return -1;
    void *input = model_input (self, ws, rows, err, err_size);
    if (!input)
        return -1;
    model_convert (self, in_dtype, in_data, rows, input);
    return model_run_input (self, ws, rows, outputs, err, err_size);
}

//  The tensor while ops run: two ping-pong buffers, the current one, and
//  the labels once argmax made them
typedef struct {
    s_buffer_t *bufs;   //  bufs[0], bufs[1]
    int cur;            //  the current tensor is bufs[cur]
    const void *labels; //  after argmax
    size_t labels_size; //  bytes at labels
} s_state_t;

static int s_run_op (const model_t *self, model_workspace_t *ws, const model_op_t *op, size_t rows,
                     s_state_t *state, model_output_t *outputs);

//  A columns op: each part's columns gathered into the part buffers of its
//  depth, its ops run there, its result copied into y's columns.
static int s_run_columns (const model_t *self, model_workspace_t *ws, const model_op_t *op,
                          size_t rows, const void *x, void *y, model_output_t *outputs)
{
    size_t elem = model_dtype (self) == AMAAS_FP64 ? 8 : 4;
    size_t in_w = op->in_width;
    size_t out_w = op->out_width;
    size_t offset = 0;
    for (size_t p = 0; p < op->n_parts; p++) {
        const model_part_t *part = &op->parts[p];
        s_state_t state = {ws->part[op->depth], 0, NULL, 0};
        if (s_reserve (&state.bufs[0], rows * part->n_columns * elem))
            return -1;
        char *dst = state.bufs[0].data;
        const char *src = x;
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < part->n_columns; j++)
                memcpy (dst + (r * part->n_columns + j) * elem,
                        src + (r * in_w + part->columns[j]) * elem, elem);
        for (size_t i = 0; i < part->n_ops; i++)
            if (s_run_op (self, ws, part->ops[i], rows, &state, outputs))
                return -1;
        const char *result = state.bufs[state.cur].data;
        char *out = y;
        for (size_t r = 0; r < rows; r++)
            memcpy (out + (r * out_w + offset) * elem, result + r * part->width * elem,
                    part->width * elem);
        offset += part->width;
    }
    return 0;
}

//  Runs one op on the current tensor.  Returns 0, or -1 when out of memory.
static int s_run_op (const model_t *self, model_workspace_t *ws, const model_op_t *op, size_t rows,
                     s_state_t *state, model_output_t *outputs)
{
    amaas_dtype_t dtype = model_dtype (self);
    size_t elem = dtype == AMAAS_FP64 ? 8 : 4;
    bool fp64 = dtype == AMAAS_FP64;
    void *x = state->bufs[state->cur].data;
    size_t n = rows * op->in_width;
    s_buffer_t *next = &state->bufs[1 - state->cur];
    switch (op->kind) {
    case MODEL_OP_SCALE:
        if (fp64)
            s_scale_d (x, rows, op->in_width, op->a, op->b);
        else
            s_scale_s (x, rows, op->in_width, op->a, op->b);
        break;
    case MODEL_OP_DENSE:
    case MODEL_OP_BINARY:
        if (s_reserve (next, rows * op->out_width * elem))
            return -1;
        if (op->kind == MODEL_OP_BINARY && fp64)
            s_binary_d (x, next->data, rows);
        else if (op->kind == MODEL_OP_BINARY)
            s_binary_s (x, next->data, rows);
        else if (fp64)
            s_dense_d (x, next->data, rows, op->in_width, op->out_width, op->a, op->b);
        else
            s_dense_s (x, next->data, rows, op->in_width, op->out_width, op->a, op->b);
        state->cur = 1 - state->cur;
        break;
    case MODEL_OP_COLUMNS:
        if (s_reserve (next, rows * op->out_width * elem) ||
            s_run_columns (self, ws, op, rows, x, next->data, outputs))
            return -1;
        state->cur = 1 - state->cur;
        break;
    case MODEL_OP_SELECT: {
        if (s_reserve (next, rows * op->out_width * elem))
            return -1;
        const char *src = x;
        char *dst = next->data;
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < op->out_width; j++)
                memcpy (dst + (r * op->out_width + j) * elem,
                        src + (r * op->in_width + op->columns[j]) * elem, elem);
        state->cur = 1 - state->cur;
        break;
    }
    case MODEL_OP_FAMILY: {
        const model_family_op_t *family = op->family;
        void *scratch = NULL;
        if (family->scratch_size) {
            size_t size = family->scratch_size (op->ext, dtype, rows);
            if (size && s_reserve (&ws->scratch, size))
                return -1;
            scratch = ws->scratch.data;
        }
        if (family->in_place)
            family->run (op->ext, dtype, x, x, rows, op->in_width, op->out_width, scratch);
        else {
            if (s_reserve (next, rows * op->out_width * elem))
                return -1;
            family->run (op->ext, dtype, x, next->data, rows, op->in_width, op->out_width, scratch);
            state->cur = 1 - state->cur;
        }
        break;
    }
    case MODEL_OP_IDENTITY: break;
    case MODEL_OP_RELU: fp64 ? s_relu_d (x, n) : s_relu_s (x, n); break;
    case MODEL_OP_TANH: fp64 ? s_tanh_d (x, n) : s_tanh_s (x, n); break;
    case MODEL_OP_SIGMOID: fp64 ? s_sigmoid_d (x, n) : s_sigmoid_s (x, n); break;
    case MODEL_OP_SOFTMAX:
        fp64 ? s_softmax_d (x, rows, op->in_width) : s_softmax_s (x, rows, op->in_width);
        break;
    case MODEL_OP_NORMALIZE:
        fp64 ? s_normalize_d (x, rows, op->in_width) : s_normalize_s (x, rows, op->in_width);
        break;
    case MODEL_OP_ARGMAX: {
        size_t label_max = op->labels_dtype == AMAAS_INT64 ? sizeof (int64_t) : op->bytes_max;
        size_t need;
        if (__builtin_mul_overflow (rows, label_max, &need) || s_reserve (&ws->labels, need))
            return -1;
        state->labels_size = s_labels (op, dtype, x, rows, ws->labels.data);
        state->labels = ws->labels.data;
        break;
    }
    case MODEL_OP_OUTPUT: {
        model_output_t *output = &outputs[op->output];
        output->name = model_output_name (self, op->output);
        output->shape[0] = (int64_t)rows;
        output->shape[1] = 0;
        if (op->in_width == 0) { //  labels
            output->datatype = op->labels_dtype == AMAAS_DTYPE_INVALID
                                   ? model_output_dtype (self, op->output)
                                   : op->labels_dtype;
            output->ndim = 1;
            output->data = state->labels;
            output->size = state->labels_size;
            break;
        }
        s_buffer_t *buffer = &ws->output[op->output];
        size_t size = n * elem;
        if (s_reserve (buffer, size))
            return -1;
        memcpy (buffer->data, x, size);
        output->datatype = dtype;
        output->ndim = op->flatten ? 1 : 2;
        output->shape[1] = op->flatten ? 0 : (int64_t)op->in_width;
        output->data = buffer->data;
        output->size = size;
        break;
    }
    }
    return 0;
}

int model_run_input (const model_t *self, model_workspace_t *ws, size_t rows,
                     model_output_t *outputs, char *err, size_t err_size)
{
    if (model_graph (self))
        return s_fail (err, err_size, "model %s is a graph model", model_name (self));
    if (s_check_batch (self, AMAAS_DTYPE_INVALID, rows, err, err_size))
        return -1;
    s_state_t state = {ws->tensor, 0, NULL, 0}; //  the input is in tensor buffer 0
    for (size_t i = 0; i < model_op_count (self); i++)
        if (s_run_op (self, ws, model_op (self, i), rows, &state, outputs))
            return s_fail (err, err_size, "%s: out of memory for a batch of %zu rows",
                           model_name (self), rows);
    return 0;
}
