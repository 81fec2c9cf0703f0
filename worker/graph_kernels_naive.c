/*  graph_kernels_naive.c - TEMPORARY naive kernels for testing graph_plan.c
    until branch kernels is merged.  Deleted before that merge.
*/
#include <math.h>
#include <string.h>

#include "graph_kernels.h"

static float s_act (gk_act_t act, float alpha, float x)
{
    switch (act) {
    case GK_ACT_RELU: return x > 0 ? x : 0;
    case GK_ACT_LEAKY_RELU: return x < 0 ? alpha * x : x;
    case GK_ACT_TANH: return tanhf (x);
    case GK_ACT_SIGMOID: return 1.0f / (1.0f + expf (-x));
    case GK_ACT_GELU: return 0.5f * x * (1.0f + erff (x / sqrtf (2.0f)));
    case GK_ACT_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf (sqrtf (2.0f / (float)M_PI) * (x + 0.044715f * x * x * x)));
    default: return x;
    }
}

void gk_unary (gk_unary_t f, const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = f == GK_SQRT         ? sqrtf (v)
               : f == GK_RECIPROCAL ? 1.0f / v
               : f == GK_NEG        ? -v
               : f == GK_EXP        ? expf (v)
                                    : erff (v);
    }
}

void gk_activate (gk_act_t act, float alpha, const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = s_act (act, alpha, x[i]);
}

void gk_gemm (const float *x, const float *w, const float *bias, float *y, size_t m, size_t k,
              size_t n, gk_act_t act, float alpha)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float s = bias ? bias[j] : 0;
            for (size_t l = 0; l < k; l++)
                s += x[i * k + l] * w[l * n + j];
            y[i * n + j] = s_act (act, alpha, s);
        }
}

void gk_matmul (size_t count, const float *const *a, const float *const *b, float *const *c,
                size_t m, size_t n, size_t k, bool trans_a, bool trans_b)
{
    for (size_t q = 0; q < count; q++)
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                float s = 0;
                for (size_t l = 0; l < k; l++)
                    s += (trans_a ? a[q][l * m + i] : a[q][i * k + l]) *
                         (trans_b ? b[q][j * k + l] : b[q][l * n + j]);
                c[q][i * n + j] = s;
            }
}

void gk_softmax (const float *x, float *y, size_t outer, size_t n, size_t inner, bool log)
{
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            const float *p = x + o * n * inner + i;
            float *q = y + o * n * inner + i;
            float max = p[0], sum = 0;
            for (size_t k = 1; k < n; k++)
                max = p[k * inner] > max ? p[k * inner] : max;
            for (size_t k = 0; k < n; k++)
                sum += expf (p[k * inner] - max);
            for (size_t k = 0; k < n; k++)
                q[k * inner] =
                    log ? p[k * inner] - max - logf (sum) : expf (p[k * inner] - max) / sum;
        }
}

void gk_layer_norm (const float *x, const float *scale, const float *bias, float *y, size_t rows,
                    size_t d, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *p = x + r * d;
        float mean = 0, var = 0;
        for (size_t i = 0; i < d; i++)
            mean += p[i];
        mean /= (float)d;
        for (size_t i = 0; i < d; i++)
            var += (p[i] - mean) * (p[i] - mean);
        var /= (float)d;
        for (size_t i = 0; i < d; i++)
            y[r * d + i] = (p[i] - mean) / sqrtf (var + eps) * scale[i] + (bias ? bias[i] : 0);
    }
}

void gk_channel_affine (const float *x, const float *mul, const float *add, float *y, size_t n,
                        size_t c, size_t spatial)
{
    for (size_t i = 0; i < n * c; i++)
        for (size_t s = 0; s < spatial; s++)
            y[i * spatial + s] = x[i * spatial + s] * mul[i % c] + add[i % c];
}

void gk_mean_rows (const float *x, float *y, size_t outer, size_t inner)
{
    for (size_t o = 0; o < outer; o++) {
        float s = 0;
        for (size_t i = 0; i < inner; i++)
            s += x[o * inner + i];
        y[o] = s / (float)inner;
    }
}

size_t gk_conv_scratch (const gk_conv_t *p)
{
    (void)p;
    return 64;
}

void gk_conv (const gk_conv_t *p, const float *x, const float *w, const float *bias, float *y,
              void *scratch, gk_act_t act, float alpha)
{
    (void)scratch;
    size_t cg = p->c / p->group, mg = p->m / p->group;
    for (size_t b = 0; b < p->n; b++)
        for (size_t m = 0; m < p->m; m++)
            for (size_t oh = 0; oh < p->oh; oh++)
                for (size_t ow = 0; ow < p->ow; ow++) {
                    float s = bias ? bias[m] : 0;
                    size_t g = m / mg;
                    for (size_t c = 0; c < cg; c++)
                        for (size_t i = 0; i < p->kh; i++)
                            for (size_t j = 0; j < p->kw; j++) {
                                long h = (long)(oh * p->sh + i * p->dh) - (long)p->pt;
                                long v = (long)(ow * p->sw + j * p->dw) - (long)p->pl;
                                if (h < 0 || v < 0 || h >= (long)p->h || v >= (long)p->w)
                                    continue;
                                s += x[((b * p->c + g * cg + c) * p->h + (size_t)h) * p->w +
                                       (size_t)v] *
                                     w[((m * cg + c) * p->kh + i) * p->kw + j];
                            }
                    y[((b * p->m + m) * p->oh + oh) * p->ow + ow] = s_act (act, alpha, s);
                }
}

static void s_pool (const gk_conv_t *p, const float *x, float *y, bool max)
{
    for (size_t b = 0; b < p->n * p->c; b++)
        for (size_t oh = 0; oh < p->oh; oh++)
            for (size_t ow = 0; ow < p->ow; ow++) {
                float s = max ? -INFINITY : 0;
                size_t count = 0, padded = 0;
                for (size_t i = 0; i < p->kh; i++)
                    for (size_t j = 0; j < p->kw; j++) {
                        long h = (long)(oh * p->sh + i * p->dh) - (long)p->pt;
                        long v = (long)(ow * p->sw + j * p->dw) - (long)p->pl;
                        if (h < (long)(p->h + p->pb) && v < (long)(p->w + p->pr))
                            padded++;
                        if (h < 0 || v < 0 || h >= (long)p->h || v >= (long)p->w)
                            continue;
                        float e = x[(b * p->h + (size_t)h) * p->w + (size_t)v];
                        s = max ? (e > s ? e : s) : s + e;
                        count++;
                    }
                y[(b * p->oh + oh) * p->ow + ow] =
                    max ? s : s / (float)(p->count_include_pad ? padded : count);
            }
}

void gk_max_pool (const gk_conv_t *p, const float *x, float *y)
{
    s_pool (p, x, y, true);
}

void gk_avg_pool (const gk_conv_t *p, const float *x, float *y)
{
    s_pool (p, x, y, false);
}
