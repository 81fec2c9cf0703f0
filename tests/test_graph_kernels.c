/*  test_graph_kernels.c - the FP32 kernels of graph models
    (worker/graph_kernels.c) against naive double-precision references.

    Each kernel runs on pseudo-random inputs (a fixed xorshift seed) of
    several shapes (sizes of 1, odd sizes, sizes past the kernels' lanes and
    tiles, groups, strides, dilations, asymmetric and ceil-mode padding) and
    every result is compared with a reference computed here in double by the
    definition, within a bound of relative error: a few float ulp for the
    element-wise functions, and for sums of products a multiple of the sum
    of the magnitudes of the terms (the error any summation order has).
    Output buffers start filled with NaN, so that an element a kernel fails
    to write fails the comparison.  The ASan/UBSan build runs this test too.
*/
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_kernels.h"
#include "unit.h"

static uint64_t t_state = 88172645463325252ull;

//  Uniform in [low, high)
static double t_uniform (double low, double high)
{
    t_state ^= t_state << 13;
    t_state ^= t_state >> 7;
    t_state ^= t_state << 17;
    return low + (high - low) * (double)(t_state >> 11) / 9007199254740992.0;
}

//  count floats, uniform in [low, high)
static float *t_random (size_t count, double low, double high)
{
    float *p = malloc ((count ? count : 1) * sizeof (float));
    ck_assert_ptr_nonnull (p);
    for (size_t i = 0; i < count; i++)
        p[i] = (float)t_uniform (low, high);
    return p;
}

//  count floats, all NaN
static float *t_nans (size_t count)
{
    float *p = malloc ((count ? count : 1) * sizeof (float));
    ck_assert_ptr_nonnull (p);
    for (size_t i = 0; i < count; i++)
        p[i] = NAN;
    return p;
}

static double *t_doubles (size_t count)
{
    double *p = calloc (count ? count : 1, sizeof (double));
    ck_assert_ptr_nonnull (p);
    return p;
}

//  The spacing of floats at want's magnitude (the smallest subnormal near 0)
static double t_ulp (double want)
{
    float f = (float)fabs (want);
    if (isinf (f))
        f = 3.4028235e38f;
    return (double)nextafterf (f, INFINITY) - (double)f;
}

//  Checks got[i] against want[i] within ulps float ulp plus slack[i] (or
//  plus 0 when slack is NULL); NaN must match NaN, infinities exactly
static void t_compare (const char *what, const float *got, const double *want, const double *slack,
                       size_t n, double ulps)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        //  What rounds to float's infinity
        double w = fabs (want[i]) >= 0x1.ffffffp127 ? copysign (INFINITY, want[i]) : want[i];
        if (isnan (want[i])) {
            if (!isnan (got[i]))
                ck_abort_msg ("%s [%zu]: %.9g, want NaN", what, i, got[i]);
            continue;
        }
        if (isinf (w) || isinf (got[i])) {
            if (got[i] != w)
                ck_abort_msg ("%s [%zu]: %.9g, want %.17g", what, i, got[i], want[i]);
            continue;
        }
        double bound = ulps * t_ulp (want[i]) + (slack ? slack[i] : 0);
        double error = fabs ((double)got[i] - want[i]);
        if (!(error <= bound))
            ck_abort_msg ("%s [%zu]: %.9g, want %.17g (error %.3g > %.3g)", what, i, got[i],
                          want[i], error, bound);
        if (error / bound > worst)
            worst = error / bound;
    }
    if (getenv ("T_VERBOSE"))
        printf ("%s: worst error %.3f of the bound\n", what, worst);
}

//  --------------------------------------------------------------------------
//  Element-wise functions

//  The activations by definition, in double
static double t_act (gk_act_t act, double alpha, double x)
{
    switch (act) {
    case GK_ACT_NONE: return x;
    case GK_ACT_RELU: return x < 0 ? 0 : x;
    case GK_ACT_LEAKY_RELU: return x < 0 ? alpha * x : x;
    case GK_ACT_TANH: return tanh (x);
    case GK_ACT_SIGMOID: return 1 / (1 + exp (-x));
    //  0.5 x (1 + erf (x / sqrt 2)) = 0.5 x erfc (-x / sqrt 2): no cancellation
    case GK_ACT_GELU: return 0.5 * x * erfc (-x / sqrt (2.0));
    //  0.5 x (1 + tanh (u)) = x / (1 + exp (-2 u)), in long double
    case GK_ACT_GELU_TANH: {
        long double v = x;
        long double u =
            sqrtl (2.0L / 3.14159265358979323846264338327950288L) * (v + 0.044715L * v * v * v);
        return (double)(v / (1 + expl (-2 * u)));
    }
    }
    return NAN;
}

static const char *t_act_names[] = {"none",    "relu", "leaky_relu", "tanh",
                                    "sigmoid", "gelu", "gelu_tanh"};

//  A grid over [low, high] (a prime count, so that it hits no round values
//  only) followed by special values
#define T_GRID 200003
static const float t_specials[] = {0.0f,    -0.0f,    1e-30f,   -1e-30f,   1e-40f, -1e-40f,
                                   1e-4f,   -1e-4f,   0.5f,     -0.5f,     1.0f,   -1.0f,
                                   3.0e38f, -3.0e38f, INFINITY, -INFINITY, NAN,    100.0f,
                                   -100.0f, 30.0f,    -30.0f,   9.5f,      -9.5f,  1.17549435e-38f};
#define T_SPECIALS (sizeof t_specials / sizeof t_specials[0])

static float *t_grid (double low, double high, size_t *count)
{
    float *x = malloc ((T_GRID + T_SPECIALS) * sizeof (float));
    ck_assert_ptr_nonnull (x);
    for (size_t i = 0; i < T_GRID; i++)
        x[i] = (float)(low + (high - low) * (double)i / (T_GRID - 1));
    memcpy (x + T_GRID, t_specials, sizeof t_specials);
    *count = T_GRID + T_SPECIALS;
    return x;
}

START_TEST (test_activate)
{
    size_t n;
    float *x = t_grid (-12, 12, &n);
    float *y = t_nans (n), *z = malloc (n * sizeof (float));
    double *want = t_doubles (n);
    ck_assert_ptr_nonnull (z);
    for (gk_act_t act = GK_ACT_NONE; act <= GK_ACT_GELU_TANH; act++) {
        float alpha = 0.1f;
        for (size_t i = 0; i < n; i++)
            want[i] = t_act (act, alpha, x[i]);
        gk_activate (act, alpha, x, y, n);
        //  Within 1 ulp of the double value (NaN in, NaN out)
        t_compare (t_act_names[act], y, want, NULL, n, 1.0);
        //  In place: the same values
        memcpy (z, x, n * sizeof (float));
        gk_activate (act, alpha, z, z, n);
        for (size_t i = 0; i < n; i++)
            if (memcmp (&z[i], &y[i], sizeof (float)) != 0)
                ck_abort_msg ("%s in place [%zu]: %.9g, not %.9g", t_act_names[act], i, z[i], y[i]);
    }
    //  Exact values: ReLU keeps NaN, leaky ReLU scales by alpha
    float special[] = {-2.0f, 3.0f, NAN};
    gk_activate (GK_ACT_RELU, 0, special, y, 3);
    ck_assert (y[0] == 0 && y[1] == 3 && isnan (y[2]));
    gk_activate (GK_ACT_LEAKY_RELU, 0.25f, special, y, 3);
    ck_assert (y[0] == -0.5f && y[1] == 3);
    free (x);
    free (y);
    free (z);
    free (want);
}
END_TEST

START_TEST (test_unary)
{
    size_t n;
    float *x = t_grid (-110, 110, &n);
    float *y = t_nans (n), *z = malloc (n * sizeof (float));
    double *want = t_doubles (n);
    ck_assert_ptr_nonnull (z);
    const char *names[] = {"sqrt", "reciprocal", "neg", "exp", "erf"};
    for (gk_unary_t f = GK_SQRT; f <= GK_ERF; f++) {
        //  erf over the range where it is not 1 in float, densely
        float *in = x;
        if (f == GK_ERF)
            for (size_t i = 0; i < T_GRID; i++)
                x[i] = (float)(-4.5 + 9.0 * (double)i / (T_GRID - 1));
        for (size_t i = 0; i < n; i++) {
            double v = in[i];
            switch (f) {
            case GK_SQRT: want[i] = sqrt (v); break;
            case GK_RECIPROCAL: want[i] = 1 / v; break;
            case GK_NEG: want[i] = -v; break;
            case GK_EXP: want[i] = exp (v); break;
            case GK_ERF: want[i] = erf (v); break;
            }
        }
        gk_unary (f, in, y, n);
        //  Within 1 ulp of the double value, sqrt and 1 / x correctly rounded
        t_compare (names[f], y, want, NULL, n, f == GK_SQRT || f == GK_RECIPROCAL ? 0.5 : 1.0);
        memcpy (z, in, n * sizeof (float));
        gk_unary (f, z, z, n);
        ck_assert_msg (memcmp (z, y, n * sizeof (float)) == 0, "%s in place differs", names[f]);
    }
    free (x);
    free (y);
    free (z);
    free (want);
}
END_TEST

//  --------------------------------------------------------------------------
//  Products

//  want[m][n] = act (x . w + bias) in double, slack[m][n] = tol times the
//  sum of the magnitudes of the terms (times the activation's largest slope,
//  at most 1.13, gelu's)
static void t_gemm_ref (const float *x, const float *w, const float *bias, size_t m, size_t k,
                        size_t n, gk_act_t act, float alpha, double tol, double *want,
                        double *slack)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double sum = bias ? bias[j] : 0, mag = bias ? fabs (bias[j]) : 0;
            for (size_t p = 0; p < k; p++) {
                sum += (double)x[i * k + p] * w[p * n + j];
                mag += fabs ((double)x[i * k + p] * w[p * n + j]);
            }
            want[i * n + j] = t_act (act, alpha, sum);
            slack[i * n + j] = tol * 1.2 * mag;
        }
}

START_TEST (test_gemm)
{
    static const size_t shapes[][3] = {{1, 1, 1},   {1, 7, 5},     {3, 1, 4},  {17, 33, 9},
                                       {5, 300, 1}, {64, 128, 96}, {2, 2, 70}, {9, 64, 130}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        float *x = t_random (m * k, -1, 1), *w = t_random (k * n, -1, 1);
        float *bias = t_random (n, -1, 1), *y = t_nans (m * n);
        double *want = t_doubles (m * n), *slack = t_doubles (m * n);
        for (gk_act_t act = GK_ACT_NONE; act <= GK_ACT_GELU_TANH; act++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                const float *b = with_bias ? bias : NULL;
                for (size_t i = 0; i < m * n; i++)
                    y[i] = NAN;
                gk_gemm (x, w, b, y, m, k, n, act, 0.05f);
                t_gemm_ref (x, w, b, m, k, n, act, 0.05f, 1e-6, want, slack);
                char what[64];
                snprintf (what, sizeof what, "gemm %zux%zux%zu %s%s", m, k, n, t_act_names[act],
                          with_bias ? " bias" : "");
                t_compare (what, y, want, slack, m * n, 2.0);
            }
        free (x);
        free (w);
        free (bias);
        free (y);
        free (want);
        free (slack);
    }
}
END_TEST

//  c = op (a) . op (b) for count products whose a repeats (broadcast), in
//  each transposition
START_TEST (test_matmul)
{
    static const size_t shapes[][3] = {{1, 1, 1}, {1, 5, 3},    {4, 1, 7},
                                       {7, 9, 1}, {33, 17, 64}, {128, 128, 64}};
    enum { COUNT = 3 };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                float *a[COUNT], *b[COUNT], *c[COUNT];
                a[0] = t_random (m * k, -1, 1);
                for (int i = 0; i < COUNT; i++) {
                    a[i] = i == 2 ? a[1] : i ? t_random (m * k, -1, 1) : a[0];
                    b[i] = t_random (k * n, -1, 1);
                    c[i] = t_nans (m * n);
                }
                gk_matmul (COUNT, (const float *const *)a, (const float *const *)b, c, m, n, k, ta,
                           tb);
                double *want = t_doubles (m * n), *slack = t_doubles (m * n);
                for (int i = 0; i < COUNT; i++) {
                    for (size_t r = 0; r < m; r++)
                        for (size_t j = 0; j < n; j++) {
                            double sum = 0, mag = 0;
                            for (size_t p = 0; p < k; p++) {
                                double av = ta ? a[i][p * m + r] : a[i][r * k + p];
                                double bv = tb ? b[i][j * k + p] : b[i][p * n + j];
                                sum += av * bv;
                                mag += fabs (av * bv);
                            }
                            want[r * n + j] = sum;
                            slack[r * n + j] = 1e-6 * mag;
                        }
                    char what[64];
                    snprintf (what, sizeof what, "matmul %zux%zux%zu ta %d tb %d [%d]", m, n, k, ta,
                              tb, i);
                    t_compare (what, c[i], want, slack, m * n, 1.0);
                }
                free (want);
                free (slack);
                free (a[0]);
                free (a[1]);
                for (int i = 0; i < COUNT; i++) {
                    free (b[i]);
                    free (c[i]);
                }
            }
    }
}
END_TEST

//  --------------------------------------------------------------------------
//  Softmax and normalizations

//  The softmax by definition, and slack: for softmax, the rounding of
//  x - max in float (relative to the result, as exp turns it) and values
//  below 1e-37 that may flush to 0; for log_softmax, float's spacing at x
//  and at the result
static void t_softmax_ref (const float *x, double *want, double *slack, size_t outer, size_t n,
                           size_t inner, bool log_softmax)
{
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < inner; j++) {
            const float *v = x + o * n * inner + j;
            double *w = want + o * n * inner + j, *s = slack + o * n * inner + j;
            double top = -INFINITY, sum = 0;
            for (size_t i = 0; i < n; i++)
                top = v[i * inner] > top ? v[i * inner] : top;
            for (size_t i = 0; i < n; i++)
                sum += exp (v[i * inner] - top);
            for (size_t i = 0; i < n; i++) {
                double d = v[i * inner] - top;
                w[i * inner] = log_softmax ? d - log (sum) : exp (d) / sum;
                s[i * inner] = log_softmax
                                   ? 2 * t_ulp (fabs (v[i * inner]) + fabs (w[i * inner]))
                                   : 1e-37 + (isinf (d) ? 0 : 0.5 * t_ulp (d) * w[i * inner]);
            }
        }
}

START_TEST (test_softmax)
{
    static const size_t shapes[][3] = {{1, 1, 1},  {3, 7, 1},   {2, 1000, 1}, {4, 5, 3},
                                       {2, 9, 70}, {1, 300, 2}, {3, 1, 5},    {2, 17, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t outer = shapes[s][0], n = shapes[s][1], inner = shapes[s][2];
        size_t count = outer * n * inner;
        for (int offset = 0; offset < 2; offset++) {
            //  Values far from 0 (offset): only x - max may enter exp
            float *x = t_random (count, offset ? 980 : -20, offset ? 1020 : 20);
            //  A masked position (-inf), as attention's masks give
            if (count > 2)
                x[1] = -INFINITY;
            float *y = t_nans (count), *z = malloc (count * sizeof (float));
            double *want = t_doubles (count), *slack = t_doubles (count);
            ck_assert_ptr_nonnull (z);
            for (int lg = 0; lg < 2; lg++) {
                t_softmax_ref (x, want, slack, outer, n, inner, lg);
                gk_softmax (x, y, outer, n, inner, lg);
                char what[64];
                snprintf (what, sizeof what, "%s %zux%zux%zu offset %d",
                          lg ? "log_softmax" : "softmax", outer, n, inner, offset);
                //  Besides: 6 ulp for the exp, the sum and the scaling
                t_compare (what, y, want, slack, count, lg ? 4.0 : 6.0);
                memcpy (z, x, count * sizeof (float));
                gk_softmax (z, z, outer, n, inner, lg);
                ck_assert_msg (memcmp (z, y, count * sizeof (float)) == 0, "%s in place differs",
                               what);
            }
            free (x);
            free (y);
            free (z);
            free (want);
            free (slack);
        }
    }
    //  A row with a NaN is NaN, as in PyTorch
    float nan_row[] = {1, NAN, 2}, out[3];
    gk_softmax (nan_row, out, 1, 3, 1, false);
    ck_assert (isnan (out[0]) && isnan (out[1]) && isnan (out[2]));
}
END_TEST

START_TEST (test_layer_norm)
{
    static const size_t shapes[][2] = {{1, 1}, {3, 7}, {5, 768}, {2, 1000}, {4, 17}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t rows = shapes[s][0], d = shapes[s][1];
        for (int offset = 0; offset < 2; offset++) {
            //  A mean far from 0 against the spread (offset) tests the
            //  two-pass variance
            float *x = t_random (rows * d, offset ? 999 : -3, offset ? 1001 : 3);
            float *scale = t_random (d, 0.5, 2), *bias = t_random (d, -1, 1);
            float *y = t_nans (rows * d), *z = malloc (rows * d * sizeof (float));
            double *want = t_doubles (rows * d), *slack = t_doubles (rows * d);
            ck_assert_ptr_nonnull (z);
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                const float *b = with_bias ? bias : NULL;
                const float eps = 1e-5f;
                for (size_t r = 0; r < rows; r++) {
                    const float *v = x + r * d;
                    double mean = 0, var = 0;
                    for (size_t j = 0; j < d; j++)
                        mean += v[j];
                    mean /= (double)d;
                    for (size_t j = 0; j < d; j++)
                        var += (v[j] - mean) * (v[j] - mean);
                    var /= (double)d;
                    for (size_t j = 0; j < d; j++) {
                        double norm = (v[j] - mean) / sqrt (var + eps) * scale[j];
                        want[r * d + j] = norm + (b ? b[j] : 0);
                        //  1e-6 of the magnitudes of the two terms
                        slack[r * d + j] = 1e-6 * (fabs (norm) + (b ? fabs (b[j]) : 0));
                    }
                }
                gk_layer_norm (x, scale, b, y, rows, d, eps);
                char what[64];
                snprintf (what, sizeof what, "layer_norm %zux%zu offset %d%s", rows, d, offset,
                          with_bias ? " bias" : "");
                t_compare (what, y, want, slack, rows * d, 0.0);
                memcpy (z, x, rows * d * sizeof (float));
                gk_layer_norm (z, scale, b, z, rows, d, eps);
                ck_assert_msg (memcmp (z, y, rows * d * sizeof (float)) == 0, "%s in place differs",
                               what);
            }
            free (x);
            free (scale);
            free (bias);
            free (y);
            free (z);
            free (want);
            free (slack);
        }
    }
}
END_TEST

START_TEST (test_channel_affine_mean_rows)
{
    size_t n = 3, c = 5, spatial = 37;
    size_t count = n * c * spatial;
    float *x = t_random (count, -2, 2), *mul = t_random (c, -2, 2), *add = t_random (c, -1, 1);
    float *y = t_nans (count), *means = t_nans (n * c);
    double *want = t_doubles (count), *slack = t_doubles (count);
    for (size_t i = 0; i < count; i++) {
        size_t ch = i / spatial % c;
        want[i] = (double)x[i] * mul[ch] + add[ch];
        slack[i] = 1e-7 * (fabs ((double)x[i] * mul[ch]) + fabs (add[ch]));
    }
    gk_channel_affine (x, mul, add, y, n, c, spatial);
    t_compare ("channel_affine", y, want, slack, count, 0.5);
    gk_channel_affine (x, mul, add, x, n, c, spatial);
    ck_assert (memcmp (x, y, count * sizeof (float)) == 0);

    //  Means of rows of 1, 7 and 37 (past the lanes) values
    size_t inners[] = {1, 7, 37};
    for (size_t t = 0; t < 3; t++) {
        size_t inner = inners[t], outer = count / inner;
        gk_mean_rows (x, means, outer > n * c ? n * c : outer, inner);
        for (size_t o = 0; o < n * c && o < outer; o++) {
            double sum = 0, mag = 0;
            for (size_t j = 0; j < inner; j++) {
                sum += x[o * inner + j];
                mag += fabs (x[o * inner + j]);
            }
            want[o] = sum / (double)inner;
            slack[o] = 1e-12 * mag;
        }
        t_compare ("mean_rows", means, want, slack, outer > n * c ? n * c : outer, 0.5);
    }
    free (x);
    free (mul);
    free (add);
    free (y);
    free (means);
    free (want);
    free (slack);
}
END_TEST

//  --------------------------------------------------------------------------
//  Convolution and pooling

//  A geometry: the output size from the padding (ONNX's floor formula, or
//  with ceil_mode PyTorch's: ceil, less a last window that would start in
//  the bottom or right padding)
static gk_conv_t t_geometry (size_t n, size_t c, size_t h, size_t w, size_t m, size_t kh, size_t kw,
                             size_t sh, size_t sw, size_t pt, size_t pl, size_t pb, size_t pr,
                             size_t dh, size_t dw, size_t group, bool ceil_mode)
{
    gk_conv_t p = {.n = n,
                   .c = c,
                   .h = h,
                   .w = w,
                   .m = m,
                   .kh = kh,
                   .kw = kw,
                   .sh = sh,
                   .sw = sw,
                   .pt = pt,
                   .pl = pl,
                   .pb = pb,
                   .pr = pr,
                   .dh = dh,
                   .dw = dw,
                   .group = group};
    size_t span_h = h + pt + pb - (kh - 1) * dh - 1, span_w = w + pl + pr - (kw - 1) * dw - 1;
    p.oh = (ceil_mode ? (span_h + sh - 1) / sh : span_h / sh) + 1;
    p.ow = (ceil_mode ? (span_w + sw - 1) / sw : span_w / sw) + 1;
    if (ceil_mode && (p.oh - 1) * sh >= h + pt)
        p.oh--;
    if (ceil_mode && (p.ow - 1) * sw >= w + pl)
        p.ow--;
    return p;
}

//  The conv by definition: want, and slack = tol times the magnitudes
static void t_conv_ref (const gk_conv_t *p, const float *x, const float *w, const float *bias,
                        gk_act_t act, float alpha, double *want, double *slack)
{
    size_t cg = p->c / p->group, mg = p->m / p->group;
    for (size_t i = 0; i < p->n; i++)
        for (size_t o = 0; o < p->m; o++)
            for (size_t oy = 0; oy < p->oh; oy++)
                for (size_t ox = 0; ox < p->ow; ox++) {
                    double sum = bias ? bias[o] : 0, mag = bias ? fabs (bias[o]) : 0;
                    size_t g = o / mg;
                    for (size_t ci = 0; ci < cg; ci++)
                        for (size_t ky = 0; ky < p->kh; ky++)
                            for (size_t kx = 0; kx < p->kw; kx++) {
                                long iy = (long)(oy * p->sh + ky * p->dh) - (long)p->pt;
                                long ix = (long)(ox * p->sw + kx * p->dw) - (long)p->pl;
                                if (iy < 0 || iy >= (long)p->h || ix < 0 || ix >= (long)p->w)
                                    continue;
                                double v =
                                    (double)
                                        x[((i * p->c + g * cg + ci) * p->h + (size_t)iy) * p->w +
                                          (size_t)ix] *
                                    w[((o * cg + ci) * p->kh + ky) * p->kw + kx];
                                sum += v;
                                mag += fabs (v);
                            }
                    size_t at = ((i * p->m + o) * p->oh + oy) * p->ow + ox;
                    want[at] = t_act (act, alpha, sum);
                    slack[at] = 1.2e-6 * mag;
                }
}

static void t_conv_case (const gk_conv_t *p, gk_act_t act, bool with_bias)
{
    size_t xs = p->n * p->c * p->h * p->w, ws = p->m * (p->c / p->group) * p->kh * p->kw;
    size_t ys = p->n * p->m * p->oh * p->ow;
    float *x = t_random (xs, -1, 1), *w = t_random (ws, -1, 1), *bias = t_random (p->m, -1, 1);
    float *y = t_nans (ys);
    double *want = t_doubles (ys), *slack = t_doubles (ys);
    //  Exactly the scratch asked for: ASan sees a write past it
    size_t size = gk_conv_scratch (p);
    void *scratch = NULL;
    if (size)
        ck_assert_int_eq (posix_memalign (&scratch, 64, size), 0);
    gk_conv (p, x, w, with_bias ? bias : NULL, y, scratch, act, 0.2f);
    t_conv_ref (p, x, w, with_bias ? bias : NULL, act, 0.2f, want, slack);
    char what[160];
    snprintf (what, sizeof what,
              "conv n%zu c%zu %zux%zu m%zu k%zux%zu s%zu,%zu p%zu,%zu,%zu,%zu d%zu,%zu g%zu %s%s",
              p->n, p->c, p->h, p->w, p->m, p->kh, p->kw, p->sh, p->sw, p->pt, p->pl, p->pb, p->pr,
              p->dh, p->dw, p->group, t_act_names[act], with_bias ? " bias" : "");
    t_compare (what, y, want, slack, ys, 2.0);
    free (x);
    free (w);
    free (bias);
    free (y);
    free (want);
    free (slack);
    free (scratch);
}

START_TEST (test_conv)
{
    gk_conv_t cases[] = {
        //  3x3, padding 1 (same)
        t_geometry (2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false),
        //  non-square kernel, strides 2 and 3, asymmetric padding, dilations
        t_geometry (1, 2, 11, 10, 3, 3, 2, 2, 3, 1, 0, 2, 1, 2, 3, 1, false),
        //  groups
        t_geometry (2, 6, 5, 6, 4, 3, 3, 1, 2, 0, 1, 1, 0, 1, 1, 2, false),
        //  depthwise
        t_geometry (1, 5, 9, 8, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 5, false),
        //  1x1, stride 1, unpadded: x read directly
        t_geometry (3, 16, 4, 5, 8, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, false),
        //  1x1 with groups, read directly
        t_geometry (2, 6, 3, 3, 9, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 3, false),
        //  1x1, stride 2
        t_geometry (1, 4, 7, 7, 3, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1, false),
        //  1x1 with padding (the border is the bias)
        t_geometry (1, 2, 3, 4, 2, 1, 1, 1, 1, 1, 2, 1, 0, 1, 1, 1, false),
        //  one output channel, the kernel covers the input: one output
        t_geometry (2, 3, 5, 5, 1, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1, false),
        //  padding wider than the kernel's reach: rows of zeros only
        t_geometry (1, 1, 2, 2, 2, 2, 2, 1, 1, 3, 3, 3, 3, 1, 1, 1, false),
        //  a 7x7 stride 2 stem
        t_geometry (1, 3, 32, 30, 8, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 1, false),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        t_conv_case (&cases[i], i % 2 ? GK_ACT_RELU : GK_ACT_NONE, i % 3 != 0);
    //  Every activation, with and without bias
    for (gk_act_t act = GK_ACT_NONE; act <= GK_ACT_GELU_TANH; act++) {
        t_conv_case (&cases[1], act, true);
        t_conv_case (&cases[4], act, act % 2);
    }
    //  Small images of a batch are convolved together, in chunks of up to
    //  4096 output positions (200 6x6 images: 113, then 87), also 1x1 ones
    gk_conv_t batch = t_geometry (200, 4, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, false);
    t_conv_case (&batch, GK_ACT_RELU, true);
    gk_conv_t shallow = t_geometry (70, 1, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false);
    t_conv_case (&shallow, GK_ACT_RELU, true); //  depth 9: without BLIS
    gk_conv_t batch1x1 = t_geometry (9, 5, 4, 4, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, false);
    t_conv_case (&batch1x1, GK_ACT_NONE, true);
    //  Scratch: several images' columns and product; one image's columns;
    //  nothing for a large 1x1 image read in place
    ck_assert_uint_eq (gk_conv_scratch (&batch), (2 * 3 * 3 + 3) * 113 * 36 * sizeof (float));
    ck_assert_uint_eq (gk_conv_scratch (&cases[4]), (16 + 8) * 3 * 20 * sizeof (float));
    ck_assert_uint_eq (gk_conv_scratch (&cases[6]), 4 * 1 * 4 * 4 * sizeof (float));
    gk_conv_t large = t_geometry (2, 2, 64, 64, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, false);
    ck_assert_uint_eq (gk_conv_scratch (&large), 0);
    t_conv_case (&large, GK_ACT_NONE, false);
}
END_TEST

//  Pooling by definition: max (NaN wins) or average
static void t_pool_ref (const gk_conv_t *p, const float *x, bool max, double *want, double *slack)
{
    for (size_t i = 0; i < p->n * p->c; i++)
        for (size_t oy = 0; oy < p->oh; oy++)
            for (size_t ox = 0; ox < p->ow; ox++) {
                double best = -INFINITY, sum = 0, mag = 0;
                size_t count = 0, padded = 0;
                for (size_t ky = 0; ky < p->kh; ky++)
                    for (size_t kx = 0; kx < p->kw; kx++) {
                        long iy = (long)(oy * p->sh + ky * p->dh) - (long)p->pt;
                        long ix = (long)(ox * p->sw + kx * p->dw) - (long)p->pl;
                        if (iy < (long)(p->h + p->pb) && ix < (long)(p->w + p->pr))
                            padded++;
                        if (iy < 0 || iy >= (long)p->h || ix < 0 || ix >= (long)p->w)
                            continue;
                        double v = x[(i * p->h + (size_t)iy) * p->w + (size_t)ix];
                        best = v > best || isnan (v) || isnan (best) ? (isnan (best) ? best : v)
                                                                     : best;
                        sum += v;
                        mag += fabs (v);
                        count++;
                    }
                size_t at = (i * p->oh + oy) * p->ow + ox;
                want[at] = max ? best : sum / (double)(p->count_include_pad ? padded : count);
                slack[at] = max ? 0 : 1e-12 * mag;
            }
}

START_TEST (test_pool)
{
    gk_conv_t cases[] = {
        //  2x2 stride 2
        t_geometry (2, 3, 8, 6, 3, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, false),
        //  3x3 stride 2 padding 1 (ResNet's)
        t_geometry (1, 4, 9, 10, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, false),
        //  ceil mode: a last partial window
        t_geometry (1, 2, 7, 8, 2, 2, 3, 2, 2, 0, 0, 0, 0, 1, 1, 1, true),
        //  ceil mode with padding, asymmetric padding
        t_geometry (2, 2, 6, 7, 2, 3, 3, 2, 3, 1, 1, 0, 1, 1, 1, 1, true),
        //  ceil mode, bottom and right padding only: the last windows
        //  reach past it (positions not counted by count_include_pad)
        t_geometry (1, 2, 7, 7, 2, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1, 1, true),
        //  dilations, strides 1 and 3
        t_geometry (1, 2, 9, 11, 2, 3, 2, 1, 3, 2, 1, 1, 2, 2, 3, 1, false),
        //  a window of the whole input
        t_geometry (3, 1, 5, 4, 1, 5, 4, 1, 1, 0, 0, 0, 0, 1, 1, 1, false),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gk_conv_t *p = &cases[i];
        size_t xs = p->n * p->c * p->h * p->w, ys = p->n * p->c * p->oh * p->ow;
        float *x = t_random (xs, -5, 5), *y = t_nans (ys);
        double *want = t_doubles (ys), *slack = t_doubles (ys);
        char what[128];
        snprintf (what, sizeof what,
                  "pool c%zu %zux%zu k%zux%zu s%zu,%zu p%zu,%zu,%zu,%zu -> %zux%zu", p->c, p->h,
                  p->w, p->kh, p->kw, p->sh, p->sw, p->pt, p->pl, p->pb, p->pr, p->oh, p->ow);
        //  A NaN wins its windows
        if (i == 1)
            x[13] = NAN;
        gk_max_pool (p, x, y);
        t_pool_ref (p, x, true, want, slack);
        t_compare (what, y, want, slack, ys, 0.0);
        if (p->dh == 1 && p->dw == 1) {
            for (int include = 0; include < 2; include++) {
                p->count_include_pad = include;
                for (size_t j = 0; j < ys; j++)
                    y[j] = NAN;
                gk_avg_pool (p, x, y);
                t_pool_ref (p, x, false, want, slack);
                t_compare (what, y, want, slack, ys, 0.5);
            }
        }
        free (x);
        free (y);
        free (want);
        free (slack);
    }
}
END_TEST

int main (void)
{
    Suite *suite = suite_create ("graph_kernels");
    TCase *tc = tcase_create ("kernels");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_activate);
    tcase_add_test (tc, test_unary);
    tcase_add_test (tc, test_gemm);
    tcase_add_test (tc, test_matmul);
    tcase_add_test (tc, test_softmax);
    tcase_add_test (tc, test_layer_norm);
    tcase_add_test (tc, test_channel_affine_mean_rows);
    tcase_add_test (tc, test_conv);
    tcase_add_test (tc, test_pool);
    suite_add_tcase (suite, tc);
    return unit_run (suite);
}
