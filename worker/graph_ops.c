/*  graph_ops.c - the kernels of graph models that are not BLIS's: the
    broadcasting element-wise ops of FP32, INT64 and BOOL, where, cast, and
    the data movers (transpose, slice, concat, split, gather, expand), the
    general reduce_mean, argmax and fills.

    Broadcasting and the movers share one walker: the output is written in
    order, and each input is read through a stride per output dimension (0
    where it broadcasts, negative for a reversed slice).  Adjacent dimensions
    that are contiguous for every operand are merged first, so that the
    common cases (same shapes, a scalar, a row broadcast over a matrix) run
    as one flat inner loop.  Nothing here allocates or fails: the planner
    (graph_plan.c) checked every shape.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"

#define S_MAX_OPERANDS 3

//  The output's dimensions and each operand's stride (in elements) along them
typedef struct {
    int ndim;
    int64_t dims[GRAPH_MAX_DIMS];
    int64_t st[S_MAX_OPERANDS][GRAPH_MAX_DIMS];
    int n;
} s_walk_t;

int64_t g_numel (const g_shape_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < shape->ndim; d++)
        n *= shape->dims[d];
    return n;
}

size_t g_dtype_size (amaas_dtype_t dtype)
{
    return dtype == AMAAS_BOOL ? 1 : dtype == AMAAS_INT64 ? 8 : 4;
}

int g_broadcast (const g_shape_t *a, const g_shape_t *b, g_shape_t *out)
{
    int ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < ndim; d++) {
        int da = d - (ndim - a->ndim), db = d - (ndim - b->ndim);
        int64_t x = da >= 0 ? a->dims[da] : 1, y = db >= 0 ? b->dims[db] : 1;
        if (x != y && x != 1 && y != 1)
            return -1;
        out->dims[d] = x == 1 ? y : x;
    }
    out->ndim = ndim;
    return 0;
}

//  Strides of an operand of shape xs read along ys (right-aligned; 0 where
//  it broadcasts)
static void s_strides (const g_shape_t *xs, const g_shape_t *ys, int64_t *st)
{
    int64_t stride = 1;
    for (int d = ys->ndim - 1; d >= 0; d--) {
        int dx = d - (ys->ndim - xs->ndim);
        if (dx < 0)
            st[d] = 0;
        else {
            st[d] = xs->dims[dx] == 1 ? 0 : stride;
            stride *= xs->dims[dx];
        }
    }
}

//  Drops dimensions of 1 and merges those contiguous for every operand
static void s_walk_merge (s_walk_t *w)
{
    int out = 0;
    for (int d = 0; d < w->ndim; d++) {
        if (w->dims[d] == 1)
            continue;
        bool merge = out > 0;
        for (int k = 0; merge && k < w->n; k++)
            merge = w->st[k][out - 1] == w->st[k][d] * w->dims[d];
        if (merge) {
            w->dims[out - 1] *= w->dims[d];
            for (int k = 0; k < w->n; k++)
                w->st[k][out - 1] = w->st[k][d];
        } else {
            w->dims[out] = w->dims[d];
            for (int k = 0; k < w->n; k++)
                w->st[k][out] = w->st[k][d];
            out++;
        }
    }
    if (out == 0) { //  one element
        w->dims[0] = 1;
        for (int k = 0; k < w->n; k++)
            w->st[k][0] = 0;
        out = 1;
    }
    w->ndim = out;
}

//  A walk of n operands of shapes xs[] over ys
static void s_walk_init (s_walk_t *w, const g_shape_t *ys, int n, const g_shape_t *const *xs)
{
    w->ndim = ys->ndim;
    w->n = n;
    memcpy (w->dims, ys->dims, sizeof w->dims);
    for (int k = 0; k < n; k++)
        s_strides (xs[k], ys, w->st[k]);
    s_walk_merge (w);
}

//  Walks the outer dimensions: calls BODY with off[k] the operands' offsets
//  at the start of each inner row of `inner` elements, `o` the output's.
#define S_WALK(w, ...)                                                                             \
    do {                                                                                           \
        int64_t idx_[GRAPH_MAX_DIMS] = {0};                                                        \
        int64_t off[S_MAX_OPERANDS] = {0, 0, 0};                                                   \
        int last_ = (w)->ndim - 1;                                                                 \
        int64_t inner = (w)->dims[last_];                                                          \
        int64_t rows_ = 1;                                                                         \
        for (int d_ = 0; d_ < last_; d_++)                                                         \
            rows_ *= (w)->dims[d_];                                                                \
        for (int64_t r_ = 0, o = 0; r_ < rows_; r_++, o += inner) {                                \
            __VA_ARGS__;                                                                           \
            for (int d_ = last_ - 1; d_ >= 0; d_--) {                                              \
                for (int k_ = 0; k_ < (w)->n; k_++)                                                \
                    off[k_] += (w)->st[k_][d_];                                                    \
                if (++idx_[d_] < (w)->dims[d_])                                                    \
                    break;                                                                         \
                for (int k_ = 0; k_ < (w)->n; k_++)                                                \
                    off[k_] -= (w)->st[k_][d_] * (w)->dims[d_];                                    \
                idx_[d_] = 0;                                                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

//  One inner row of a binary op: specialised for the strides 1/0
#define S_ROW2(TY, TA, a, b, y, w, EXPR)                                                           \
    do {                                                                                           \
        const TA *pa_ = (const TA *)(a) + off[0];                                                  \
        const TA *pb_ = (const TA *)(b) + off[1];                                                  \
        TY *py_ = (TY *)(y) + o;                                                                   \
        int64_t sa_ = (w)->st[0][(w)->ndim - 1], sb_ = (w)->st[1][(w)->ndim - 1];                  \
        if (sa_ == 1 && sb_ == 1)                                                                  \
            for (int64_t i_ = 0; i_ < inner; i_++) {                                               \
                TA x = pa_[i_], z = pb_[i_];                                                       \
                py_[i_] = (EXPR);                                                                  \
            }                                                                                      \
        else if (sa_ == 1 && sb_ == 0) {                                                           \
            TA z = pb_[0];                                                                         \
            for (int64_t i_ = 0; i_ < inner; i_++) {                                               \
                TA x = pa_[i_];                                                                    \
                py_[i_] = (EXPR);                                                                  \
            }                                                                                      \
        } else if (sa_ == 0 && sb_ == 1) {                                                         \
            TA x = pa_[0];                                                                         \
            for (int64_t i_ = 0; i_ < inner; i_++) {                                               \
                TA z = pb_[i_];                                                                    \
                py_[i_] = (EXPR);                                                                  \
            }                                                                                      \
        } else                                                                                     \
            for (int64_t i_ = 0; i_ < inner; i_++) {                                               \
                TA x = pa_[i_ * sa_], z = pb_[i_ * sb_];                                           \
                py_[i_] = (EXPR);                                                                  \
            }                                                                                      \
    } while (0)

#define S_BINARY(TY, TA, EXPR) S_WALK (&w, S_ROW2 (TY, TA, a, b, y, &w, EXPR))

//  INT64 arithmetic that wraps (as two's complement) instead of overflowing
static inline int64_t s_wrap_add (int64_t x, int64_t z)
{
    return (int64_t)((uint64_t)x + (uint64_t)z);
}
static inline int64_t s_wrap_sub (int64_t x, int64_t z)
{
    return (int64_t)((uint64_t)x - (uint64_t)z);
}
static inline int64_t s_wrap_mul (int64_t x, int64_t z)
{
    return (int64_t)((uint64_t)x * (uint64_t)z);
}
//  Truncating division; by 0 gives 0, INT64_MIN / -1 wraps to INT64_MIN
static inline int64_t s_div (int64_t x, int64_t z)
{
    if (z == 0)
        return 0;
    if (z == -1)
        return s_wrap_sub (0, x);
    return x / z;
}

void g_binary (g_op_t op, amaas_dtype_t dtype, const void *a, const g_shape_t *as, const void *b,
               const g_shape_t *bs, void *y, const g_shape_t *ys)
{
    s_walk_t w;
    const g_shape_t *xs[2] = {as, bs};
    s_walk_init (&w, ys, 2, xs);
    if (dtype == AMAAS_FP32) {
        switch (op) {
        case G_ADD: S_BINARY (float, float, x + z); break;
        case G_SUB: S_BINARY (float, float, x - z); break;
        case G_MUL: S_BINARY (float, float, x *z); break;
        case G_DIV: S_BINARY (float, float, x / z); break;
        case G_POW: S_BINARY (float, float, powf (x, z)); break;
        case G_EQUAL: S_BINARY (uint8_t, float, x == z); break;
        default: break;
        }
    } else if (dtype == AMAAS_INT64) {
        switch (op) {
        case G_ADD: S_BINARY (int64_t, int64_t, s_wrap_add (x, z)); break;
        case G_SUB: S_BINARY (int64_t, int64_t, s_wrap_sub (x, z)); break;
        case G_MUL: S_BINARY (int64_t, int64_t, s_wrap_mul (x, z)); break;
        case G_DIV: S_BINARY (int64_t, int64_t, s_div (x, z)); break;
        case G_EQUAL: S_BINARY (uint8_t, int64_t, x == z); break;
        default: break;
        }
    } else if (op == G_EQUAL)
        S_BINARY (uint8_t, uint8_t, x == z);
}

#define S_WHERE(T)                                                                                 \
    S_WALK (&w, {                                                                                  \
        const uint8_t *pc = c + off[0];                                                            \
        const T *pa = (const T *)a + off[1];                                                       \
        const T *pb = (const T *)b + off[2];                                                       \
        T *py = (T *)y + o;                                                                        \
        int64_t sc = w.st[0][w.ndim - 1], sa = w.st[1][w.ndim - 1], sb = w.st[2][w.ndim - 1];      \
        for (int64_t i = 0; i < inner; i++)                                                        \
            py[i] = pc[i * sc] ? pa[i * sa] : pb[i * sb];                                          \
    })

void g_where (amaas_dtype_t dtype, const uint8_t *c, const g_shape_t *cs, const void *a,
              const g_shape_t *as, const void *b, const g_shape_t *bs, void *y, const g_shape_t *ys)
{
    s_walk_t w;
    const g_shape_t *xs[3] = {cs, as, bs};
    s_walk_init (&w, ys, 3, xs);
    if (dtype == AMAAS_INT64)
        S_WHERE (int64_t);
    else
        S_WHERE (float);
}

void g_neg_int64 (const int64_t *x, int64_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = s_wrap_sub (0, x[i]);
}

//  FP32 to INT64: toward zero, NaN 0, saturating beyond the range
static inline int64_t s_to_int64 (float v)
{
    if (isnan (v))
        return 0;
    if (v >= 9223372036854775807.0f)
        return INT64_MAX;
    if (v <= -9223372036854775808.0f)
        return INT64_MIN;
    return (int64_t)v;
}

void g_cast (amaas_dtype_t from, amaas_dtype_t to, const void *x, void *y, size_t n)
{
    if (from == to) {
        if (x != y)
            memmove (y, x, n * g_dtype_size (from));
        return;
    }
    if (from == AMAAS_FP32) {
        const float *in = x;
        if (to == AMAAS_INT64)
            for (size_t i = 0; i < n; i++)
                ((int64_t *)y)[i] = s_to_int64 (in[i]);
        else
            for (size_t i = 0; i < n; i++)
                ((uint8_t *)y)[i] = in[i] != 0;
    } else if (from == AMAAS_INT64) {
        const int64_t *in = x;
        if (to == AMAAS_FP32)
            for (size_t i = 0; i < n; i++)
                ((float *)y)[i] = (float)in[i];
        else
            for (size_t i = 0; i < n; i++)
                ((uint8_t *)y)[i] = in[i] != 0;
    } else {
        const uint8_t *in = x;
        if (to == AMAAS_FP32)
            for (size_t i = 0; i < n; i++)
                ((float *)y)[i] = in[i] ? 1.0f : 0.0f;
        else
            for (size_t i = 0; i < n; i++)
                ((int64_t *)y)[i] = in[i] ? 1 : 0;
    }
}

//  y (contiguous, of the walk's shape) = x read at base + the walk's strides
#define S_COPY(T)                                                                                  \
    S_WALK (w, {                                                                                   \
        const T *px = (const T *)x + base + off[0];                                                \
        T *py = (T *)y + o;                                                                        \
        int64_t s = w->st[0][w->ndim - 1];                                                         \
        if (s == 1)                                                                                \
            memcpy (py, px, (size_t)inner * sizeof (T));                                           \
        else                                                                                       \
            for (int64_t i = 0; i < inner; i++)                                                    \
                py[i] = px[i * s];                                                                 \
    })

static void s_strided_copy (size_t elem, const void *x, int64_t base, s_walk_t *w, void *y)
{
    s_walk_merge (w);
    switch (elem) {
    case 1: S_COPY (uint8_t); break;
    case 4: S_COPY (uint32_t); break;
    default: S_COPY (uint64_t); break;
    }
}

void g_expand (amaas_dtype_t dtype, const void *x, const g_shape_t *xs, void *y,
               const g_shape_t *ys)
{
    s_walk_t w = {.ndim = ys->ndim, .n = 1};
    memcpy (w.dims, ys->dims, sizeof w.dims);
    s_strides (xs, ys, w.st[0]);
    s_strided_copy (g_dtype_size (dtype), x, 0, &w, y);
}

//  Row-major strides of a shape
static void s_contiguous (const g_shape_t *xs, int64_t *st)
{
    int64_t stride = 1;
    for (int d = xs->ndim - 1; d >= 0; d--) {
        st[d] = stride;
        stride *= xs->dims[d];
    }
}

void g_transpose (size_t elem, const void *x, const g_shape_t *xs, const int64_t *perm, void *y)
{
    int64_t st[GRAPH_MAX_DIMS];
    s_contiguous (xs, st);
    s_walk_t w = {.ndim = xs->ndim, .n = 1};
    for (int d = 0; d < xs->ndim; d++) {
        w.dims[d] = xs->dims[perm[d]];
        w.st[0][d] = st[perm[d]];
    }
    if (w.ndim == 0) {
        w.ndim = 1;
        w.dims[0] = 1;
        w.st[0][0] = 0;
    }
    s_strided_copy (elem, x, 0, &w, y);
}

void g_slice (size_t elem, const void *x, const g_shape_t *xs, const int64_t *starts,
              const int64_t *steps, void *y, const g_shape_t *ys)
{
    int64_t st[GRAPH_MAX_DIMS];
    s_contiguous (xs, st);
    s_walk_t w = {.ndim = xs->ndim, .n = 1};
    int64_t base = 0;
    for (int d = 0; d < xs->ndim; d++) {
        w.dims[d] = ys->dims[d];
        w.st[0][d] = st[d] * steps[d];
        base += starts[d] * st[d];
    }
    if (w.ndim == 0) {
        w.ndim = 1;
        w.dims[0] = 1;
        w.st[0][0] = 0;
    }
    s_strided_copy (elem, x, base, &w, y);
}

//  Elements before axis, and from axis + 1 on
static void s_around (const g_shape_t *xs, int axis, int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++)
        *outer *= xs->dims[d];
    for (int d = axis + 1; d < xs->ndim; d++)
        *inner *= xs->dims[d];
}

void g_concat (size_t elem, int n, const void *const *x, const g_shape_t *xs, int axis, void *y)
{
    int64_t outer, inner;
    s_around (&xs[0], axis, &outer, &inner);
    char *out = y;
    for (int64_t o = 0; o < outer; o++)
        for (int k = 0; k < n; k++) {
            size_t bytes = (size_t)(xs[k].dims[axis] * inner) * elem;
            memcpy (out, (const char *)x[k] + (size_t)o * bytes, bytes);
            out += bytes;
        }
}

void g_split (size_t elem, const void *x, const g_shape_t *xs, int axis, int n,
              const int64_t *sizes, void *const *y)
{
    int64_t outer, inner;
    s_around (xs, axis, &outer, &inner);
    const char *in = x;
    for (int64_t o = 0; o < outer; o++)
        for (int k = 0; k < n; k++) {
            size_t bytes = (size_t)(sizes[k] * inner) * elem;
            memcpy ((char *)y[k] + (size_t)o * bytes, in, bytes);
            in += bytes;
        }
}

int g_gather (size_t elem, const void *data, const g_shape_t *ds, int axis, const int64_t *indices,
              int64_t n_indices, void *y, int64_t *bad)
{
    int64_t outer, inner;
    s_around (ds, axis, &outer, &inner);
    int64_t size = ds->dims[axis];
    for (int64_t j = 0; j < n_indices; j++)
        if (indices[j] < -size || indices[j] >= size) {
            *bad = indices[j];
            return -1;
        }
    size_t row = (size_t)inner * elem;
    char *out = y;
    for (int64_t o = 0; o < outer; o++) {
        const char *base = (const char *)data + (size_t)(o * size) * row;
        for (int64_t j = 0; j < n_indices; j++) {
            int64_t i = indices[j] < 0 ? indices[j] + size : indices[j];
            memcpy (out, base + (size_t)i * row, row);
            out += row;
        }
    }
    return 0;
}

void g_reduce_mean (const float *x, const g_shape_t *xs, const bool *reduce, float *y)
{
    //  The output's strides along x's dimensions (0 on the reduced ones)
    g_shape_t ys = *xs;
    int64_t count = 1;
    for (int d = 0; d < xs->ndim; d++)
        if (reduce[d]) {
            count *= xs->dims[d];
            ys.dims[d] = 1;
        }
    int64_t n_out = g_numel (&ys);
    for (int64_t i = 0; i < n_out; i++)
        y[i] = 0;
    s_walk_t w = {.ndim = xs->ndim, .n = 1};
    memcpy (w.dims, xs->dims, sizeof w.dims);
    s_strides (&ys, xs, w.st[0]);
    s_walk_merge (&w);
    int64_t n_in = g_numel (xs);
    if (n_in > 0)
        S_WALK (&w, {
            float *py = y + off[0];
            const float *px = x + o;
            int64_t s = w.st[0][w.ndim - 1];
            if (s == 0) {
                float sum = 0;
                for (int64_t i = 0; i < inner; i++)
                    sum += px[i];
                py[0] += sum;
            } else
                for (int64_t i = 0; i < inner; i++)
                    py[i * s] += px[i];
        });
    float scale = 1.0f / (float)count;
    for (int64_t i = 0; i < n_out; i++)
        y[i] = count ? y[i] * scale : NAN;
}

void g_argmax (const float *x, const g_shape_t *xs, int axis, bool select_last, int64_t *y)
{
    int64_t outer, inner;
    s_around (xs, axis, &outer, &inner);
    int64_t size = xs->dims[axis];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *p = x + o * size * inner + i;
            int64_t best = 0;
            float max = p[0];
            for (int64_t k = 1; k < size; k++) {
                float v = p[k * inner];
                if (v > max || (select_last && v == max) || (isnan (v) && !isnan (max))) {
                    max = v;
                    best = k;
                }
            }
            y[o * inner + i] = best;
        }
}

void g_fill (amaas_dtype_t dtype, double value, void *y, size_t n)
{
    if (dtype == AMAAS_FP32) {
        float v = (float)value;
        for (size_t i = 0; i < n; i++)
            ((float *)y)[i] = v;
    } else if (dtype == AMAAS_INT64) {
        int64_t v = (int64_t)value;
        for (size_t i = 0; i < n; i++)
            ((int64_t *)y)[i] = v;
    } else
        memset (y, value != 0, n);
}
