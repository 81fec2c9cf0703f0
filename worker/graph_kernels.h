/*  graph_kernels.h - the FP32 compute kernels of graph models: the dense
    and convolution layers through BLIS, attention's batched products, and
    the vectorized element-wise, softmax and normalization passes.

    The graph runtime (graph.c) plans shapes and buffers and calls these on
    contiguous row-major FP32 buffers it owns.  None allocates, none fails:
    every size was checked by the planner, every scratch buffer is the
    planner's (sized by the *_scratch functions, 64-byte aligned).  BLIS
    runs on one thread (the worker's compute thread); results follow IEEE
    arithmetic (no -ffast-math): summation order is free, as in any GEMM.
*/
#ifndef AMAAS_GRAPH_KERNELS_H_INCLUDED
#define AMAAS_GRAPH_KERNELS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

//  Activation fused after a gemm or a conv, or applied alone
typedef enum {
    GK_ACT_NONE,
    GK_ACT_RELU,
    GK_ACT_LEAKY_RELU, //  x < 0 ? alpha x : x
    GK_ACT_TANH,
    GK_ACT_SIGMOID,
    GK_ACT_GELU,      //  0.5 x (1 + erf (x / sqrt 2))
    GK_ACT_GELU_TANH, //  0.5 x (1 + tanh (sqrt (2 / pi) (x + 0.044715 x^3)))
} gk_act_t;

//  Unary element-wise functions
typedef enum {
    GK_SQRT,
    GK_RECIPROCAL, //  1 / x
    GK_NEG,
    GK_EXP,
    GK_ERF,
} gk_unary_t;

//  y[i] = f (x[i]) for i < n; y may be x.
void gk_unary (gk_unary_t f, const float *x, float *y, size_t n);

//  y[i] = act (x[i]) for i < n; y may be x.  GK_ACT_NONE copies (or does
//  nothing when y == x).
void gk_activate (gk_act_t act, float alpha, const float *x, float *y, size_t n);

//  y[m][n] = act (x[m][k] . w[k][n] + bias[n]): x, w, y row-major and
//  contiguous; bias NULL for none.  y must not overlap x or w.
void gk_gemm (const float *x, const float *w, const float *bias, float *y, size_t m, size_t k,
              size_t n, gk_act_t act, float alpha);

//  c[i] = op (a[i]) . op (b[i]) for i < count: op (a[i]) is [m][k] (a[i]
//  holds [k][m] when trans_a), op (b[i]) is [k][n] (b[i] holds [n][k] when
//  trans_b), c[i] is [m][n]; each matrix contiguous row-major.  The c[i]
//  are distinct and overlap no a or b; a[i] and b[i] may repeat (the caller
//  broadcasts by repeating pointers).
void gk_matmul (size_t count, const float *const *a, const float *const *b, float *const *c,
                size_t m, size_t n, size_t k, bool trans_a, bool trans_b);

//  Softmax over an axis of length n: x is [outer][n][inner], for every
//  outer and inner index the n values along the axis (stride inner).  With
//  log, log_softmax: x - max - log (sum (exp (x - max))).  y may be x.
void gk_softmax (const float *x, float *y, size_t outer, size_t n, size_t inner, bool log);

//  Layer normalization of rows of d values: y[r] = (x[r] - mean) /
//  sqrt (var + eps) * scale + bias (bias NULL: none), var = mean of the
//  squared deviations, computed in float with a two-pass (or Welford)
//  method.  y may be x.
void gk_layer_norm (const float *x, const float *scale, const float *bias, float *y, size_t rows,
                    size_t d, float eps);

//  Per-channel affine map of x [n][c][spatial]: y = x * mul[ch] + add[ch].
//  (batch_norm, its mul and add computed once at load.)  y may be x.
void gk_channel_affine (const float *x, const float *mul, const float *add, float *y, size_t n,
                        size_t c, size_t spatial);

//  Mean of each row of `inner` contiguous values: y[o] = mean (x[o][0 ..
//  inner-1]) for o < outer (global_avg_pool, reduce_mean over trailing
//  axes).
void gk_mean_rows (const float *x, float *y, size_t outer, size_t inner);

//  A 2-D convolution, or pooling window, geometry (x [n][c][h][w] ->
//  y [n][m][oh][ow]); the planner fills every field and checked it.
typedef struct {
    size_t n, c, h, w;      //  input
    size_t m;               //  output channels (conv; pooling: m == c)
    size_t kh, kw;          //  kernel
    size_t sh, sw;          //  strides >= 1
    size_t pt, pl;          //  padding at the top and left (bottom and right
    size_t pb, pr;          //  are implied by oh, ow; given for avg_pool's count)
    size_t dh, dw;          //  dilations >= 1
    size_t group;           //  conv: groups, c and m divisible by it
    size_t oh, ow;          //  output size, >= 1
    bool count_include_pad; //  avg_pool: divide by the window within the padded input
} gk_conv_t;

//  Scratch bytes gk_conv needs: the im2col columns of the images it
//  convolves in one GEMM (several small images at once, up to 4096 output
//  positions, and their product before it is spread into y), or of one
//  image and group, or 0 for one large image of a 1x1, stride 1, unpadded
//  conv, read in place.  Cannot fail.
size_t gk_conv_scratch (const gk_conv_t *p);

//  y = act (conv (x, w) + bias): w [m][c/group][kh][kw], bias [m] or NULL;
//  zero padding; through im2col (or directly for 1x1) and BLIS gemm.
void gk_conv (const gk_conv_t *p, const float *x, const float *w, const float *bias, float *y,
              void *scratch, gk_act_t act, float alpha);

//  Max pooling: each output the largest input of its window within the
//  input (padding never wins; a window with no input element gives
//  -INFINITY, which the planner never lets happen).
void gk_max_pool (const gk_conv_t *p, const float *x, float *y);

//  Average pooling: the sum of the window's input elements divided by
//  their count, or with count_include_pad by the count of the window's
//  positions inside the padded input [-pt, h + pb) x [-pl, w + pr).
void gk_avg_pool (const gk_conv_t *p, const float *x, float *y);

#endif
