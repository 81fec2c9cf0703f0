/*  graph_kernels.c - the FP32 kernels of graph models (graph_kernels.h).

    Products: gk_gemm, gk_matmul and gk_conv are BLIS sgemm calls on
    row-major operands (row stride = columns, column stride = 1; a
    transposed operand is the same bytes with the two strides swapped, never
    a copy), beta = 0, then one pass over each output row that adds the bias
    and applies the activation.  gk_conv lowers each image and group to
    im2col columns [c/g kh kw][oh ow] in the caller's scratch (a 1x1, stride
    1, unpadded convolution reads x in place), so that the product lands in
    y's own layout [m][oh ow].

    Element-wise passes: tanh, sigmoid, erf, gelu and exp compute each value
    in double (a branch-free exp and fitted polynomials for erf and erfc,
    below) and round once to float, in loops without calls or branches that
    -O3 vectorizes; those passes are built for AVX2 + FMA and AVX-512 too,
    the variant picked at run time (target_clones, as vmath.c).  Accuracy: within 1 ulp of
    float (the double result is within about 1e-10 relative of the exact
    value).  gelu is computed as 0.5 x erfc (-x / sqrt 2) for negative x, so
    that its tail keeps its relative accuracy instead of cancelling in
    1 + erf; the tanh form as x / (1 + exp (-2 u)), the same function.

    Reductions (softmax sums, layer_norm's moments, means, average pools)
    accumulate in double, the long ones over 16 independent lanes
    (vectorized, order free); softmax's exp is vmath_exp_s (within 2 ulp),
    of x - max rounded to float, as the frameworks compute it.  Every function
    accepts y == x where the header allows it: the loops then run over y
    alone, so that no aliasing check keeps them scalar.
*/
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <blis.h>

#include "graph_kernels.h"
#include "vmath.h"

//  Builds for the baseline x86-64, for AVX2 + FMA and for AVX-512, picked at
//  load time
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define S_CLONES __attribute__ ((target_clones ("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define S_CLONES
#endif

#define S_LANES 16          //  independent accumulators of a reduction
#define S_TILE 64           //  softmax over a middle axis: columns done together
#define S_CONV_COLUMNS 4096 //  output positions of several images in one conv GEMM
#define S_CONV_SHALLOW 16   //  a conv product this deep or less: no BLIS (s_shallow_product)

//  --------------------------------------------------------------------------
//  Element functions, in double, branch-free (selects only)

//  erf (a) for 0 <= a <= 1: a P (a^2), P a least-squares Chebyshev fit of
//  erf (a) / a in u = 2 a^2 - 1 (relative error below 1e-12)
static inline double s_erf_small (double a)
{
    double u = 2.0 * a * a - 1.0;
    double p = 4.1387790081795827e-09;
    p = p * u - 7.5574929251010135e-08;
    p = p * u + 1.2233626162320802e-06;
    p = p * u - 1.7536824685562504e-05;
    p = p * u + 0.00021751716323021819;
    p = p * u - 0.0022854856569551082;
    p = p * u + 0.019852496688084968;
    p = p * u - 0.14053608901552939;
    p = p * u + 0.96546873866988581;
    return a * p;
}

//  erfc (a) for a >= 0 (or NaN): t exp (R (t) - a^2), t = 2 / (2 + a), R a
//  least-squares Chebyshev fit of log (erfc (a) / t) + a^2 in u = (t -
//  0.58) / 0.42, t in [0.16, 1] (relative error below 3e-11); 0 beyond
//  a = 10.5, where erfc is below 1e-49
static inline double s_erfc (double a)
{
    double c = a > 10.5 ? 10.5 : a; //  NaN stays NaN
    double t = 2.0 / (2.0 + c);
    double u = (t - 0.58) * (1.0 / 0.42);
    double p = -9.3887271722744322e-07;
    p = p * u - 3.1966734578236802e-07;
    p = p * u + 8.8844600930782923e-06;
    p = p * u - 4.6354946915896707e-06;
    p = p * u - 4.5331260799460177e-05;
    p = p * u + 7.4815093749564367e-05;
    p = p * u + 0.00015448704148098114;
    p = p * u - 0.00058767276886746266;
    p = p * u - 0.00026747838492058057;
    p = p * u + 0.0038772992997598301;
    p = p * u - 0.0012306850139611435;
    p = p * u - 0.030147671395957996;
    p = p * u + 0.016716057923314615;
    p = p * u + 0.57460997461632746;
    p = p * u - 0.56315678559576443;
    double r = t * vmath_exp1 (p - c * c);
    return a > 10.5 ? 0.0 : r;
}

//  erf (x): a P (a^2) below 1, where 1 - erfc would cancel; 1 - erfc above
static inline float s_erf (float x, float alpha)
{
    (void)alpha;
    double a = fabs ((double)x);
    double small = s_erf_small (a < 1.0 ? a : 1.0);
    double r = a < 1.0 ? small : 1.0 - s_erfc (a);
    return (float)copysign (r, (double)x);
}

static inline float s_exp_f (float x, float alpha)
{
    (void)alpha;
    return (float)vmath_exp1 ((double)x);
}

static inline float s_sqrt (float x, float alpha)
{
    (void)alpha;
    return sqrtf (x);
}

static inline float s_reciprocal (float x, float alpha)
{
    (void)alpha;
    return 1.0f / x;
}

static inline float s_neg (float x, float alpha)
{
    (void)alpha;
    return -x;
}

static inline float s_none (float x, float alpha)
{
    (void)alpha;
    return x;
}

//  max (x, 0); NaN stays NaN, as in PyTorch
static inline float s_relu (float x, float alpha)
{
    (void)alpha;
    return x < 0.0f ? 0.0f : x;
}

static inline float s_leaky_relu (float x, float alpha)
{
    return x < 0.0f ? alpha * x : x;
}

//  tanh (|x|) = (1 - e) / (1 + e), e = exp (-2 |x|): in double, 1 - e
//  keeps 1e-12 relative down to |x| = 1e-4; below, x - x^3 / 3 is exact to
//  1e-17.  tanh is 1 in float beyond 9.1: |x| is clamped at 20.
static inline float s_tanh (float x, float alpha)
{
    (void)alpha;
    double a = fabs ((double)x);
    a = a > 20.0 ? 20.0 : a;
    double e = vmath_exp1 (-2.0 * a);
    double t = (1.0 - e) / (1.0 + e);
    t = a < 1e-4 ? a - a * a * a / 3.0 : t;
    return (float)copysign (t, (double)x);
}

//  1 / (1 + exp (-x)): no cancellation on either side
static inline float s_sigmoid (float x, float alpha)
{
    (void)alpha;
    return (float)(1.0 / (1.0 + vmath_exp1 (-(double)x)));
}

//  0.5 x (1 + erf (x / sqrt 2)) = 0.5 x (2 - erfc (|x| / sqrt 2)) for x >= 0,
//  0.5 x erfc (|x| / sqrt 2) for x < 0
static inline float s_gelu (float x, float alpha)
{
    (void)alpha;
    double v = (double)x;
    double c = s_erfc (fabs (v) * 0.70710678118654752440);
    return (float)(v < 0.0 ? 0.5 * v * c : 0.5 * v * (2.0 - c));
}

//  0.5 x (1 + tanh (u)) = x / (1 + exp (-2 u)), u = sqrt (2 / pi) (x +
//  0.044715 x^3)
static inline float s_gelu_tanh (float x, float alpha)
{
    (void)alpha;
    double v = (double)x;
    double u = 0.79788456080286535588 * (v + 0.044715 * v * v * v);
    return (float)(v / (1.0 + vmath_exp1 (-2.0 * u)));
}

//  y[i] = F (x[i] + bias[i]), or F (x[i] + shift) when bias is NULL (shift
//  -0.0 adds nothing, not even to -0); y may be x
#define S_PASS(F)                                                                                  \
    do {                                                                                           \
        if (bias && x == y)                                                                        \
            for (size_t i = 0; i < n; i++)                                                         \
                y[i] = F (y[i] + bias[i], alpha);                                                  \
        else if (bias)                                                                             \
            for (size_t i = 0; i < n; i++)                                                         \
                y[i] = F (x[i] + bias[i], alpha);                                                  \
        else if (x == y)                                                                           \
            for (size_t i = 0; i < n; i++)                                                         \
                y[i] = F (y[i] + shift, alpha);                                                    \
        else                                                                                       \
            for (size_t i = 0; i < n; i++)                                                         \
                y[i] = F (x[i] + shift, alpha);                                                    \
    } while (0)

S_CLONES static void s_pass (gk_act_t act, float alpha, const float *x, const float *bias,
                             float shift, float *y, size_t n)
{
    switch (act) {
    case GK_ACT_NONE: S_PASS (s_none); break;
    case GK_ACT_RELU: S_PASS (s_relu); break;
    case GK_ACT_LEAKY_RELU: S_PASS (s_leaky_relu); break;
    case GK_ACT_TANH: S_PASS (s_tanh); break;
    case GK_ACT_SIGMOID: S_PASS (s_sigmoid); break;
    case GK_ACT_GELU: S_PASS (s_gelu); break;
    case GK_ACT_GELU_TANH: S_PASS (s_gelu_tanh); break;
    }
}

void gk_activate (gk_act_t act, float alpha, const float *x, float *y, size_t n)
{
    if (act == GK_ACT_NONE) {
        if (x != y)
            memcpy (y, x, n * sizeof (float));
        return;
    }
    s_pass (act, alpha, x, NULL, -0.0f, y, n);
}

S_CLONES void gk_unary (gk_unary_t f, const float *x, float *y, size_t n)
{
    const float *bias = NULL;
    const float shift = -0.0f, alpha = 0.0f;
    switch (f) {
    case GK_SQRT: S_PASS (s_sqrt); break;
    case GK_RECIPROCAL: S_PASS (s_reciprocal); break;
    case GK_NEG: S_PASS (s_neg); break;
    case GK_EXP: S_PASS (s_exp_f); break;
    case GK_ERF: S_PASS (s_erf); break;
    }
}

//  --------------------------------------------------------------------------
//  Products

void gk_gemm (const float *x, const float *w, const float *bias, float *y, size_t m, size_t k,
              size_t n, gk_act_t act, float alpha)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0)
        memset (y, 0, m * n * sizeof (float));
    else {
        float one = 1, zero = 0;
        bli_sgemm (BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &one,
                   (float *)x, (inc_t)k, 1, (float *)w, (inc_t)n, 1, &zero, y, (inc_t)n, 1);
    }
    if (bias || act != GK_ACT_NONE)
        for (size_t r = 0; r < m; r++)
            s_pass (act, alpha, y + r * n, bias, -0.0f, y + r * n, n);
}

void gk_matmul (size_t count, const float *const *a, const float *const *b, float *const *c,
                size_t m, size_t n, size_t k, bool trans_a, bool trans_b)
{
    if (m == 0 || n == 0)
        return;
    //  op (a) [m][k]: element (i, p) at a[i k + p], or a[p m + i] when trans_a
    inc_t rs_a = trans_a ? 1 : (inc_t)k, cs_a = trans_a ? (inc_t)m : 1;
    inc_t rs_b = trans_b ? 1 : (inc_t)n, cs_b = trans_b ? (inc_t)k : 1;
    float one = 1, zero = 0;
    for (size_t i = 0; i < count; i++) {
        if (k == 0)
            memset (c[i], 0, m * n * sizeof (float));
        else
            bli_sgemm (BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &one,
                       (float *)a[i], rs_a, cs_a, (float *)b[i], rs_b, cs_b, &zero, c[i], (inc_t)n,
                       1);
    }
}

//  --------------------------------------------------------------------------
//  Reductions and normalizations

//  Sum of x[0 .. n-1] in double
static inline double s_sum (const float *x, size_t n)
{
    double lane[S_LANES] = {0};
    size_t i = 0;
    for (; i + S_LANES <= n; i += S_LANES)
        for (size_t j = 0; j < S_LANES; j++)
            lane[j] += x[i + j];
    double sum = 0;
    for (; i < n; i++)
        sum += x[i];
    for (size_t j = 0; j < S_LANES; j++)
        sum += lane[j];
    return sum;
}

//  Sum of (x[i] - mean)^2 in double
static inline double s_sum_squares (const float *x, double mean, size_t n)
{
    double lane[S_LANES] = {0};
    size_t i = 0;
    for (; i + S_LANES <= n; i += S_LANES)
        for (size_t j = 0; j < S_LANES; j++) {
            double d = x[i + j] - mean;
            lane[j] += d * d;
        }
    double sum = 0;
    for (; i < n; i++) {
        double d = x[i] - mean;
        sum += d * d;
    }
    for (size_t j = 0; j < S_LANES; j++)
        sum += lane[j];
    return sum;
}

//  Largest of x[0 .. n-1], n >= 1 (a NaN is passed over: it makes the
//  softmax NaN anyway)
static inline float s_max (const float *x, size_t n)
{
    float lane[S_LANES];
    for (size_t j = 0; j < S_LANES; j++)
        lane[j] = x[0];
    size_t i = 0;
    for (; i + S_LANES <= n; i += S_LANES)
        for (size_t j = 0; j < S_LANES; j++)
            lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
    float best = x[0];
    for (; i < n; i++)
        best = x[i] > best ? x[i] : best;
    for (size_t j = 0; j < S_LANES; j++)
        best = lane[j] > best ? lane[j] : best;
    return best;
}

//  Softmax of one contiguous row (inner == 1)
S_CLONES static void s_softmax_row (const float *x, float *y, size_t n, bool logarithm)
{
    float top = s_max (x, n);
    if (!logarithm) {
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] - top;
        vmath_exp_s (y, n);
        float inv = (float)(1.0 / s_sum (y, n));
        for (size_t i = 0; i < n; i++)
            y[i] *= inv;
        return;
    }
    //  log: the exps go through a block on the stack, y keeps x - top
    float block[256];
    double sum = 0;
    for (size_t i = 0; i < n; i += 256) {
        size_t len = n - i < 256 ? n - i : 256;
        for (size_t j = 0; j < len; j++)
            block[j] = x[i + j] - top;
        vmath_exp_s (block, len);
        sum += s_sum (block, len);
    }
    float shift = (float)log (sum);
    if (x == y)
        for (size_t i = 0; i < n; i++)
            y[i] = (y[i] - top) - shift;
    else
        for (size_t i = 0; i < n; i++)
            y[i] = (x[i] - top) - shift;
}

//  Softmax along the axis of stride `inner` for the columns j0 .. j0+w-1
//  (w <= S_TILE) of one outer block: the columns side by side
S_CLONES static void s_softmax_tile (const float *x, float *y, size_t n, size_t inner, size_t w,
                                     bool logarithm)
{
    float top[S_TILE], block[S_TILE];
    double sum[S_TILE];
    memcpy (top, x, w * sizeof (float));
    for (size_t i = 1; i < n; i++)
        for (size_t j = 0; j < w; j++)
            top[j] = x[i * inner + j] > top[j] ? x[i * inner + j] : top[j];
    for (size_t j = 0; j < w; j++)
        sum[j] = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < w; j++)
            block[j] = x[i * inner + j] - top[j];
        vmath_exp_s (block, w);
        for (size_t j = 0; j < w; j++)
            sum[j] += block[j];
        if (!logarithm)
            memcpy (y + i * inner, block, w * sizeof (float));
    }
    if (!logarithm) {
        for (size_t j = 0; j < w; j++)
            block[j] = (float)(1.0 / sum[j]);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < w; j++)
                y[i * inner + j] *= block[j];
    } else {
        for (size_t j = 0; j < w; j++)
            block[j] = (float)log (sum[j]);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < w; j++)
                y[i * inner + j] = (x[i * inner + j] - top[j]) - block[j];
    }
}

void gk_softmax (const float *x, float *y, size_t outer, size_t n, size_t inner, bool logarithm)
{
    if (n == 0 || inner == 0)
        return;
    for (size_t o = 0; o < outer; o++) {
        const float *xo = x + o * n * inner;
        float *yo = y + o * n * inner;
        if (inner == 1)
            s_softmax_row (xo, yo, n, logarithm);
        else
            for (size_t j = 0; j < inner; j += S_TILE)
                s_softmax_tile (xo + j, yo + j, n, inner, inner - j < S_TILE ? inner - j : S_TILE,
                                logarithm);
    }
}

S_CLONES void gk_layer_norm (const float *x, const float *scale, const float *bias, float *y,
                             size_t rows, size_t d, float eps)
{
    if (d == 0)
        return;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double mean = s_sum (xr, d) / (double)d;
        double var = s_sum_squares (xr, mean, d) / (double)d;
        double inv = 1.0 / sqrt (var + (double)eps);
        if (bias)
            for (size_t j = 0; j < d; j++)
                yr[j] = (float)(((double)xr[j] - mean) * inv * scale[j] + bias[j]);
        else
            for (size_t j = 0; j < d; j++)
                yr[j] = (float)(((double)xr[j] - mean) * inv * scale[j]);
    }
}

S_CLONES void gk_channel_affine (const float *x, const float *mul, const float *add, float *y,
                                 size_t n, size_t c, size_t spatial)
{
    for (size_t i = 0; i < n * c; i++) {
        const float *xp = x + i * spatial;
        float *yp = y + i * spatial;
        float a = mul[i % c], b = add[i % c];
        if (xp == yp)
            for (size_t j = 0; j < spatial; j++)
                yp[j] = yp[j] * a + b;
        else
            for (size_t j = 0; j < spatial; j++)
                yp[j] = xp[j] * a + b;
    }
}

S_CLONES void gk_mean_rows (const float *x, float *y, size_t outer, size_t inner)
{
    //  (inner 0: 0 / 0, NaN, as the mean of nothing in numpy)
    for (size_t o = 0; o < outer; o++)
        y[o] = (float)(s_sum (x + o * inner, inner) / (double)inner);
}

//  --------------------------------------------------------------------------
//  Convolution and pooling

//  Whether the convolution reads x directly (1x1, stride 1, no padding)
static bool s_conv_direct (const gk_conv_t *p)
{
    return p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->pt == 0 && p->pl == 0 &&
           p->oh == p->h && p->ow == p->w;
}

//  Images whose convolution is one GEMM: as many as fill S_CONV_COLUMNS
//  output positions, so that a batch of small images (8x8 digits) is a
//  few large products rather than one tiny product per image
static size_t s_conv_images (const gk_conv_t *p)
{
    size_t plane = p->oh * p->ow, images = plane < S_CONV_COLUMNS ? S_CONV_COLUMNS / plane : 1;
    return images < p->n ? images : p->n;
}

size_t gk_conv_scratch (const gk_conv_t *p)
{
    size_t images = s_conv_images (p), plane = p->oh * p->ow;
    size_t depth = p->c / p->group * p->kh * p->kw;
    if (images > 1) //  the columns of the images, and the product before it is spread
        return (depth + p->m / p->group) * images * plane * sizeof (float);
    if (s_conv_direct (p))
        return 0;
    return depth * plane * sizeof (float);
}

//  The taps k < taps of a window whose tap k reads position start + k
//  dilation are within [0, size) for k in [*lo, *hi)
static void s_window (ptrdiff_t start, size_t taps, size_t dilation, size_t size, size_t *lo,
                      size_t *hi)
{
    ptrdiff_t d = (ptrdiff_t)dilation;
    ptrdiff_t first = start >= 0 ? 0 : (-start + d - 1) / d;
    ptrdiff_t last = (ptrdiff_t)size - 1 - start; //  k d <= last
    ptrdiff_t end = last < 0 ? 0 : last / d + 1;
    end = end > (ptrdiff_t)taps ? (ptrdiff_t)taps : end;
    first = first > end ? end : first;
    *lo = (size_t)first;
    *hi = (size_t)end;
}

//  im2col of the cg channels of `images` images, image j's at x + j
//  image_stride ([cg][h][w]), into col [cg kh kw][images oh ow]: row k
//  at col + k ld, image j's oh ow columns at j oh ow.  Each tap's window
//  (which output positions read inside the input) is found once for all
//  the images.
static void s_im2col (const gk_conv_t *p, const float *x, size_t images, size_t image_stride,
                      float *col, size_t ld)
{
    size_t cg = p->c / p->group, plane = p->oh * p->ow;
    for (size_t ci = 0; ci < cg; ci++)
        for (size_t ky = 0; ky < p->kh; ky++) {
            //  rows oy in [y_lo, y_hi) read input row oy sh - pt + ky dh
            ptrdiff_t off_y = (ptrdiff_t)(ky * p->dh) - (ptrdiff_t)p->pt;
            size_t y_lo, y_hi;
            s_window (off_y, p->oh, p->sh, p->h, &y_lo, &y_hi);
            for (size_t kx = 0; kx < p->kw; kx++) {
                ptrdiff_t off_x = (ptrdiff_t)(kx * p->dw) - (ptrdiff_t)p->pl;
                size_t x_lo, x_hi;
                s_window (off_x, p->ow, p->sw, p->w, &x_lo, &x_hi);
                for (size_t j = 0; j < images; j++) {
                    float *row = col + ((ci * p->kh + ky) * p->kw + kx) * ld + j * plane;
                    const float *xc = x + j * image_stride + ci * p->h * p->w;
                    for (size_t k = 0; k < y_lo * p->ow; k++)
                        row[k] = 0;
                    for (size_t oy = y_lo; oy < y_hi; oy++) {
                        float *r = row + oy * p->ow;
                        const float *xr = xc + (size_t)((ptrdiff_t)(oy * p->sh) + off_y) * p->w;
                        //  Loops, not memset and memcpy: rows of small
                        //  images are a few values, where a call costs
                        //  more than the copy
                        for (size_t ox = 0; ox < x_lo; ox++)
                            r[ox] = 0;
                        if (p->sw == 1)
                            for (size_t ox = x_lo; ox < x_hi; ox++)
                                r[ox] = xr[(ptrdiff_t)ox + off_x];
                        else
                            for (size_t ox = x_lo; ox < x_hi; ox++)
                                r[ox] = xr[(ptrdiff_t)(ox * p->sw) + off_x];
                        for (size_t ox = x_hi; ox < p->ow; ox++)
                            r[ox] = 0;
                    }
                    for (size_t k = y_hi * p->ow; k < plane; k++)
                        row[k] = 0;
                }
            }
        }
}

//  product [mg][ld] = w [mg][depth] . col [depth][ld] for a shallow depth (a
//  first layer's few input channels times its taps), as depth passes of
//  a multiply-add over each long row: BLIS's packing costs more than such
//  a product.  Each sum is taken in order k = 0, 1, ...
S_CLONES static void s_shallow_product (const float *w, const float *col, float *product, size_t mg,
                                        size_t depth, size_t ld)
{
    for (size_t r = 0; r < mg; r++) {
        float *y = product + r * ld;
        const float *wr = w + r * depth;
        for (size_t q = 0; q < ld; q++)
            y[q] = wr[0] * col[q];
        for (size_t k = 1; k < depth; k++) {
            const float *c = col + k * ld;
            float wk = wr[k];
            for (size_t q = 0; q < ld; q++)
                y[q] += wk * c[q];
        }
    }
}

//  The convolution of images i .. i + images - 1 and group g as one GEMM:
//  their columns side by side in scratch ([depth][images plane]), the
//  product after them ([mg][images plane]), then spread into y with the
//  bias and the activation
static void s_conv_images_gemm (const gk_conv_t *p, const float *x, const float *w,
                                const float *bias, float *y, float *scratch, gk_act_t act,
                                float alpha, size_t i, size_t images, size_t g)
{
    size_t cg = p->c / p->group, mg = p->m / p->group;
    size_t plane = p->oh * p->ow, depth = cg * p->kh * p->kw, ld = images * plane;
    float *col = scratch, *product = scratch + depth * ld;
    s_im2col (p, x + (i * p->c + g * cg) * p->h * p->w, images, p->c * p->h * p->w, col, ld);
    const float *wg = w + g * mg * depth;
    if (depth <= S_CONV_SHALLOW)
        s_shallow_product (wg, col, product, mg, depth, ld);
    else {
        float one = 1, zero = 0;
        bli_sgemm (BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)mg, (dim_t)ld, (dim_t)depth, &one,
                   (float *)wg, (inc_t)depth, 1, col, (inc_t)ld, 1, &zero, product, (inc_t)ld, 1);
    }
    for (size_t j = 0; j < images; j++)
        for (size_t r = 0; r < mg; r++)
            s_pass (act, alpha, product + r * ld + j * plane, NULL, bias ? bias[g * mg + r] : -0.0f,
                    y + ((i + j) * p->m + g * mg + r) * plane, plane);
}

void gk_conv (const gk_conv_t *p, const float *x, const float *w, const float *bias, float *y,
              void *scratch, gk_act_t act, float alpha)
{
    size_t cg = p->c / p->group, mg = p->m / p->group;
    size_t plane = p->oh * p->ow, depth = cg * p->kh * p->kw;
    size_t images = s_conv_images (p);
    if (images > 1) {
        for (size_t i = 0; i < p->n; i += images)
            for (size_t g = 0; g < p->group; g++)
                s_conv_images_gemm (p, x, w, bias, y, scratch, act, alpha, i,
                                    p->n - i < images ? p->n - i : images, g);
        return;
    }
    bool direct = s_conv_direct (p);
    float one = 1, zero = 0;
    for (size_t i = 0; i < p->n; i++)
        for (size_t g = 0; g < p->group; g++) {
            const float *xg = x + (i * p->c + g * cg) * p->h * p->w;
            float *yg = y + (i * p->m + g * mg) * plane;
            const float *col = xg;
            if (!direct) {
                s_im2col (p, xg, 1, 0, scratch, plane);
                col = scratch;
            }
            bli_sgemm (BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)mg, (dim_t)plane, (dim_t)depth,
                       &one, (float *)w + g * mg * depth, (inc_t)depth, 1, (float *)col,
                       (inc_t)plane, 1, &zero, yg, (inc_t)plane, 1);
            if (bias || act != GK_ACT_NONE)
                for (size_t r = 0; r < mg; r++)
                    s_pass (act, alpha, yg + r * plane, NULL, bias ? bias[g * mg + r] : -0.0f,
                            yg + r * plane, plane);
        }
}

//  Max pooling whose windows all lie inside the input (no padding reached,
//  no dilation: the usual 2x2 stride 2), row by row in loops that
//  vectorize
static void s_max_pool_inside (const gk_conv_t *p, const float *x, float *y)
{
    for (size_t i = 0; i < p->n * p->c; i++) {
        const float *xp = x + i * p->h * p->w;
        for (size_t oy = 0; oy < p->oh; oy++) {
            float *yr = y + (i * p->oh + oy) * p->ow;
            for (size_t ox = 0; ox < p->ow; ox++)
                yr[ox] = -INFINITY;
            for (size_t ky = 0; ky < p->kh; ky++) {
                const float *xr = xp + (oy * p->sh + ky) * p->w;
                for (size_t kx = 0; kx < p->kw; kx++)
                    for (size_t ox = 0; ox < p->ow; ox++) {
                        float v = xr[ox * p->sw + kx];
                        yr[ox] = v > yr[ox] || v != v ? v : yr[ox]; //  NaN wins
                    }
            }
        }
    }
}

void gk_max_pool (const gk_conv_t *p, const float *x, float *y)
{
    if (p->pt == 0 && p->pl == 0 && p->dh == 1 && p->dw == 1 &&
        (p->oh - 1) * p->sh + p->kh <= p->h && (p->ow - 1) * p->sw + p->kw <= p->w) {
        s_max_pool_inside (p, x, y);
        return;
    }
    for (size_t i = 0; i < p->n * p->c; i++) {
        const float *xp = x + i * p->h * p->w;
        float *yp = y + i * p->oh * p->ow;
        for (size_t oy = 0; oy < p->oh; oy++) {
            ptrdiff_t iy = (ptrdiff_t)(oy * p->sh) - (ptrdiff_t)p->pt;
            size_t ky_lo, ky_hi;
            s_window (iy, p->kh, p->dh, p->h, &ky_lo, &ky_hi);
            for (size_t ox = 0; ox < p->ow; ox++) {
                ptrdiff_t ix = (ptrdiff_t)(ox * p->sw) - (ptrdiff_t)p->pl;
                size_t kx_lo, kx_hi;
                s_window (ix, p->kw, p->dw, p->w, &kx_lo, &kx_hi);
                float best = -INFINITY;
                for (size_t ky = ky_lo; ky < ky_hi; ky++) {
                    const float *xr = xp + (size_t)(iy + (ptrdiff_t)(ky * p->dh)) * p->w;
                    for (size_t kx = kx_lo; kx < kx_hi; kx++) {
                        float v = xr[ix + (ptrdiff_t)(kx * p->dw)];
                        //  NaN wins, as in PyTorch
                        best = v > best || v != v ? v : best;
                    }
                }
                yp[oy * p->ow + ox] = best;
            }
        }
    }
}

void gk_avg_pool (const gk_conv_t *p, const float *x, float *y)
{
    for (size_t i = 0; i < p->n * p->c; i++) {
        const float *xp = x + i * p->h * p->w;
        float *yp = y + i * p->oh * p->ow;
        for (size_t oy = 0; oy < p->oh; oy++) {
            ptrdiff_t iy = (ptrdiff_t)(oy * p->sh) - (ptrdiff_t)p->pt;
            size_t ky_lo, ky_hi, py_lo, py_hi;
            s_window (iy, p->kh, p->dh, p->h, &ky_lo, &ky_hi);
            s_window (iy + (ptrdiff_t)p->pt, p->kh, p->dh, p->h + p->pt + p->pb, &py_lo, &py_hi);
            for (size_t ox = 0; ox < p->ow; ox++) {
                ptrdiff_t ix = (ptrdiff_t)(ox * p->sw) - (ptrdiff_t)p->pl;
                size_t kx_lo, kx_hi, px_lo, px_hi;
                s_window (ix, p->kw, p->dw, p->w, &kx_lo, &kx_hi);
                double sum = 0;
                for (size_t ky = ky_lo; ky < ky_hi; ky++) {
                    const float *xr = xp + (size_t)(iy + (ptrdiff_t)(ky * p->dh)) * p->w;
                    for (size_t kx = kx_lo; kx < kx_hi; kx++)
                        sum += xr[ix + (ptrdiff_t)(kx * p->dw)];
                }
                size_t count = (ky_hi - ky_lo) * (kx_hi - kx_lo);
                if (p->count_include_pad) {
                    s_window (ix + (ptrdiff_t)p->pl, p->kw, p->dw, p->w + p->pl + p->pr, &px_lo,
                              &px_hi);
                    count = (py_hi - py_lo) * (px_hi - px_lo);
                }
                yp[oy * p->ow + ox] = (float)(sum / (double)count);
            }
        }
    }
}
