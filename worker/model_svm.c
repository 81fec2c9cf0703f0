/*  model_svm.c - kernels and one-vs-one decisions of support vector machines.

    A support vector machine is computed as libsvm (in scikit-learn) does, in
    four ops that the core ones join (docs/MODEL_FORMAT.md, "Operations: svm"):

      svm_kernel    [rows, w] -> [rows, n_sv]: K(x, sv_i) for each support
                    vector, linear, poly, rbf or sigmoid
      (dense)       the dual coefficients, one column per one-vs-one pair:
                    the decision values of libsvm
      ovo_votes     [rows, P] -> [rows, k]: libsvm's votes (argmax then picks
                    the first class of most votes, libsvm's tie rule)
      ovr_decision  [rows, P] -> [rows, k]: scikit-learn's one-vs-rest shape
                    of the one-vs-one values (votes plus confidences)
      ovo_proba     [rows, P] -> [rows, k]: libsvm's probabilities (pairwise
                    sigmoids, then Wu-Lin-Weng coupling)

    The kernel is one BLIS gemm of the rows against the support vectors.  For
    rbf the squared distance is |x|^2 + |sv|^2 - 2 x.sv, which cancels when x
    is near sv and both are far from the origin: so the loader centres the
    support vectors on their mean (once), each run centres the rows the same
    way (one pass over the input) before the gemm, and the distance is
    clamped at 0.  Centring keeps the error of the distance to a few units in
    the last place of |x - mean|^2 instead of |x|^2, which the fidelity tests
    need (1e-9 relative against libsvm's direct sum of squared differences).
*/
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <blis.h>

#include "model_family.h"
#include "vmath.h"

#define S_MAX_CLASSES 5793 //  k (k - 1) / 2 one-vs-one pairs fit a width of 2^24
#define S_MAX_PROBA_CLASSES                                                                        \
    DEFS_PROBA_CLASSES_MAX           //  coupling costs k^2 per iteration and k^2 scratch
#define S_MAX_DEGREE DEFS_DEGREE_MAX //  powi multiplies log2 (degree) times
#define S_MAX_WIDTH (1u << 24)

typedef enum { S_LINEAR, S_POLY, S_RBF, S_SIGMOID } s_kernel_type_t;

//  A checked svm_kernel op
typedef struct {
    s_kernel_type_t type;
    double gamma;        //  as fitted (scikit-learn's _gamma)
    double coef0;        //  poly, sigmoid
    int degree;          //  poly
    size_t n_sv;         //  support vectors
    size_t width;        //  features
    const void *vectors; //  [n_sv][width] in the model's datatype; rbf: centred on mean
    const void *norms;   //  rbf: |sv - mean|^2 [n_sv]
    const void *mean;    //  rbf: mean of the support vectors [width]
} s_kernel_t;

//  A checked ovo_votes, ovr_decision or ovo_proba op
typedef struct {
    size_t k;           //  classes
    size_t pairs;       //  k (k - 1) / 2
    const void *prob_a; //  ovo_proba: [pairs] in the model's datatype
    const void *prob_b; //  ovo_proba: [pairs]
} s_ovo_t;

//  --------------------------------------------------------------------------
//  svm_kernel

//  libsvm's powi: base^times by squaring, in the same order of products
#define S_DEFINE_POWI(T, S)                                                                        \
    static T s_powi_##S (T base, int times)                                                        \
    {                                                                                              \
        T tmp = base, ret = 1;                                                                     \
        for (int t = times; t > 0; t /= 2) {                                                       \
            if (t % 2 == 1)                                                                        \
                ret *= tmp;                                                                        \
            tmp = tmp * tmp;                                                                       \
        }                                                                                          \
        return ret;                                                                                \
    }

S_DEFINE_POWI (float, s)
S_DEFINE_POWI (double, d)

//  Centres the vectors on their mean (computed in double) into centred and
//  writes their squared norms; mean receives the mean.
#define S_DEFINE_CENTRE(T, S)                                                                      \
    static void s_centre_##S (const T *vectors, size_t n, size_t w, T *centred, T *norms, T *mean, \
                              double *sum)                                                         \
    {                                                                                              \
        for (size_t i = 0; i < n; i++)                                                             \
            for (size_t j = 0; j < w; j++)                                                         \
                sum[j] += vectors[i * w + j];                                                      \
        for (size_t j = 0; j < w; j++)                                                             \
            mean[j] = (T)(sum[j] / (double)n);                                                     \
        for (size_t i = 0; i < n; i++) {                                                           \
            T norm = 0;                                                                            \
            for (size_t j = 0; j < w; j++) {                                                       \
                T d = vectors[i * w + j] - mean[j];                                                \
                centred[i * w + j] = d;                                                            \
                norm += d * d;                                                                     \
            }                                                                                      \
            norms[i] = norm;                                                                       \
        }                                                                                          \
    }

S_DEFINE_CENTRE (float, s)
S_DEFINE_CENTRE (double, d)

static int s_kernel_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                           size_t *out_width, void **ext, size_t *work)
{
    const char *name;
    size_t size;
    double gamma, coef0;
    uint64_t degree, count;
    if (model_parse_str (p, map, "kernel", &name, &size) ||
        model_parse_number (p, map, "gamma", &gamma) ||
        model_parse_number (p, map, "coef0", &coef0) ||
        model_parse_uint (p, map, "degree", 0, S_MAX_DEGREE, &degree) ||
        model_parse_uint (p, map, "count", 1, S_MAX_WIDTH, &count))
        return -1;
    s_kernel_type_t type;
    if (size == 6 && memcmp (name, "linear", 6) == 0)
        type = S_LINEAR;
    else if (size == 4 && memcmp (name, "poly", 4) == 0)
        type = S_POLY;
    else if (size == 3 && memcmp (name, "rbf", 3) == 0)
        type = S_RBF;
    else if (size == 7 && memcmp (name, "sigmoid", 7) == 0)
        type = S_SIGMOID;
    else
        return model_parse_fail (p, "\"kernel\" must be linear, poly, rbf or sigmoid");
    s_kernel_t *self = model_parse_alloc (p, sizeof (s_kernel_t));
    if (!self)
        return -1;
    self->type = type;
    self->gamma = gamma;
    self->coef0 = coef0;
    self->degree = (int)degree;
    self->n_sv = (size_t)count;
    self->width = in_width;
    if (model_parse_floats (p, map, "vectors", self->n_sv * in_width, &self->vectors))
        return -1;
    bool fp64 = model_parse_dtype (p) == AMAAS_FP64;
    size_t n = self->n_sv * in_width;
    for (size_t i = 0; i < n; i++) {
        double v = fp64 ? ((const double *)self->vectors)[i] : ((const float *)self->vectors)[i];
        if (!isfinite (v))
            return model_parse_fail (p, "\"vectors\" holds a NaN or infinite value at %zu", i);
    }
    if (type == S_RBF) {
        size_t elem = fp64 ? 8 : 4;
        void *centred = model_parse_alloc (p, n * elem);
        void *norms = model_parse_alloc (p, self->n_sv * elem);
        void *mean = model_parse_alloc (p, in_width * elem);
        double *sum = model_parse_alloc (p, in_width * sizeof (double));
        if (!centred || !norms || !mean || !sum)
            return -1;
        if (fp64)
            s_centre_d (self->vectors, self->n_sv, in_width, centred, norms, mean, sum);
        else
            s_centre_s (self->vectors, self->n_sv, in_width, centred, norms, mean, sum);
        self->vectors = centred;
        self->norms = norms;
        self->mean = mean;
    }
    *out_width = self->n_sv;
    *ext = self; //  from model_parse_alloc: freed with the model
    *work = self->n_sv * (in_width + 1);
    return 0;
}

//  rbf scratch: the centred rows [rows][w] and their squared norms [rows]
static size_t s_kernel_scratch (const void *ext, amaas_dtype_t dtype, size_t rows)
{
    const s_kernel_t *self = ext;
    if (self->type != S_RBF)
        return 0;
    size_t elem = dtype == AMAAS_FP64 ? 8 : 4;
    size_t n;
    if (__builtin_mul_overflow (rows, self->width + 1, &n) || __builtin_mul_overflow (n, elem, &n))
        return SIZE_MAX;
    return n;
}

#define S_DEFINE_KERNEL(T, S, EXP, TANH)                                                           \
    static void s_kernel_##S (const s_kernel_t *self, const T *x, T *y, size_t rows, T *scratch)   \
    {                                                                                              \
        size_t w = self->width, n = self->n_sv;                                                    \
        const T *sv = self->vectors;                                                               \
        T gamma = (T)self->gamma, coef0 = (T)self->coef0;                                          \
        if (self->type == S_RBF) {                                                                 \
            const T *mean = self->mean, *norms = self->norms;                                      \
            T *xc = scratch, *xn = scratch + rows * w;                                             \
            for (size_t r = 0; r < rows; r++) {                                                    \
                T norm = 0;                                                                        \
                for (size_t j = 0; j < w; j++) {                                                   \
                    T d = x[r * w + j] - mean[j];                                                  \
                    xc[r * w + j] = d;                                                             \
                    norm += d * d;                                                                 \
                }                                                                                  \
                xn[r] = norm;                                                                      \
            }                                                                                      \
            for (size_t r = 0; r < rows; r++)                                                      \
                for (size_t i = 0; i < n; i++)                                                     \
                    y[r * n + i] = xn[r] + norms[i];                                               \
            T minus_two = -2, one = 1;                                                             \
            bli_##S##gemm (BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, (dim_t)rows, (dim_t)n, (dim_t)w,     \
                           &minus_two, xc, (inc_t)w, 1, (T *)sv, (inc_t)w, 1, &one, y, (inc_t)n,   \
                           1);                                                                     \
            for (size_t i = 0; i < rows * n; i++)                                                  \
                y[i] = -gamma * (y[i] > 0 ? y[i] : 0);                                             \
            EXP (y, rows *n); /*  vectorized: most of an rbf kernel's time is exp */               \
            return;                                                                                \
        }                                                                                          \
        T one = 1, zero = 0;                                                                       \
        bli_##S##gemm (BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, (dim_t)rows, (dim_t)n, (dim_t)w, &one,   \
                       (T *)x, (inc_t)w, 1, (T *)sv, (inc_t)w, 1, &zero, y, (inc_t)n, 1);          \
        if (self->type == S_POLY)                                                                  \
            for (size_t i = 0; i < rows * n; i++)                                                  \
                y[i] = s_powi_##S (gamma * y[i] + coef0, self->degree);                            \
        else if (self->type == S_SIGMOID)                                                          \
            for (size_t i = 0; i < rows * n; i++)                                                  \
                y[i] = TANH (gamma * y[i] + coef0);                                                \
    }

S_DEFINE_KERNEL (float, s, vmath_exp_s, tanhf)
S_DEFINE_KERNEL (double, d, vmath_exp_d, tanh)

static void s_kernel_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                          size_t in_width, size_t out_width, void *scratch)
{
    (void)in_width;
    (void)out_width;
    if (dtype == AMAAS_FP64)
        s_kernel_d (ext, x, y, rows, scratch);
    else
        s_kernel_s (ext, x, y, rows, scratch);
}

//  --------------------------------------------------------------------------
//  ovo_votes, ovr_decision, ovo_proba: [rows, P] one-vs-one values of the
//  pairs (0,1), (0,2), ..., (0,k-1), (1,2), ..., (k-2,k-1), libsvm's order

//  k from the map, checked against the width P = k (k - 1) / 2
static s_ovo_t *s_ovo_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                             uint64_t max_k)
{
    uint64_t k;
    if (model_parse_uint (p, map, "k", 2, max_k, &k))
        return NULL;
    size_t pairs = (size_t)(k * (k - 1) / 2);
    if (pairs != in_width) {
        model_parse_fail (p, "k %llu classes make %zu one-vs-one pairs, the width is %zu",
                          (unsigned long long)k, pairs, in_width);
        return NULL;
    }
    s_ovo_t *self = model_parse_alloc (p, sizeof (s_ovo_t));
    if (!self)
        return NULL;
    self->k = (size_t)k;
    self->pairs = pairs;
    return self;
}

static int s_votes_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                          size_t *out_width, void **ext, size_t *work)
{
    s_ovo_t *self = s_ovo_parse (p, map, in_width, S_MAX_CLASSES);
    if (!self)
        return -1;
    *out_width = self->k;
    *ext = self;
    *work = self->pairs + self->k;
    return 0;
}

//  libsvm: a positive value votes for the pair's first class, any other
//  (0 and NaN included) for its second
#define S_DEFINE_VOTES(T, S)                                                                       \
    static void s_votes_##S (const s_ovo_t *self, const T *x, T *y, size_t rows)                   \
    {                                                                                              \
        size_t k = self->k, P = self->pairs;                                                       \
        for (size_t r = 0; r < rows; r++, x += P, y += k) {                                        \
            for (size_t i = 0; i < k; i++)                                                         \
                y[i] = 0;                                                                          \
            size_t p = 0;                                                                          \
            for (size_t i = 0; i < k; i++)                                                         \
                for (size_t j = i + 1; j < k; j++, p++)                                            \
                    y[x[p] > 0 ? i : j] += 1;                                                      \
        }                                                                                          \
    }

S_DEFINE_VOTES (float, s)
S_DEFINE_VOTES (double, d)

static void s_votes_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                         size_t in_width, size_t out_width, void *scratch)
{
    (void)in_width;
    (void)out_width;
    (void)scratch;
    if (dtype == AMAAS_FP64)
        s_votes_d (ext, x, y, rows);
    else
        s_votes_s (ext, x, y, rows);
}

static size_t s_ovr_scratch (const void *ext, amaas_dtype_t dtype, size_t rows)
{
    (void)rows;
    const s_ovo_t *self = ext;
    return self->k * (dtype == AMAAS_FP64 ? 8 : 4);
}

//  scikit-learn's _ovr_decision_function (predictions = value < 0,
//  confidences = -value): a value that is not negative (NaN included) votes
//  for the first class; the confidences summed per class in pair order, then
//  votes + s / (3 (|s| + 1))
#define S_DEFINE_OVR(T, S, FABS)                                                                   \
    static void s_ovr_##S (const s_ovo_t *self, const T *x, T *y, size_t rows, T *sum)             \
    {                                                                                              \
        size_t k = self->k, P = self->pairs;                                                       \
        for (size_t r = 0; r < rows; r++, x += P, y += k) {                                        \
            for (size_t i = 0; i < k; i++)                                                         \
                y[i] = sum[i] = 0;                                                                 \
            size_t p = 0;                                                                          \
            for (size_t i = 0; i < k; i++)                                                         \
                for (size_t j = i + 1; j < k; j++, p++) {                                          \
                    T confidence = -x[p];                                                          \
                    sum[i] -= confidence;                                                          \
                    sum[j] += confidence;                                                          \
                    y[x[p] < 0 ? j : i] += 1;                                                      \
                }                                                                                  \
            for (size_t i = 0; i < k; i++)                                                         \
                y[i] += sum[i] / (3 * (FABS (sum[i]) + 1));                                        \
        }                                                                                          \
    }

S_DEFINE_OVR (float, s, fabsf)
S_DEFINE_OVR (double, d, fabs)

static void s_ovr_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                       size_t in_width, size_t out_width, void *scratch)
{
    (void)in_width;
    (void)out_width;
    if (dtype == AMAAS_FP64)
        s_ovr_d (ext, x, y, rows, scratch);
    else
        s_ovr_s (ext, x, y, rows, scratch);
}

static int s_proba_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                          size_t *out_width, void **ext, size_t *work)
{
    s_ovo_t *self = s_ovo_parse (p, map, in_width, S_MAX_PROBA_CLASSES);
    if (!self || model_parse_floats (p, map, "prob_a", self->pairs, &self->prob_a) ||
        model_parse_floats (p, map, "prob_b", self->pairs, &self->prob_b))
        return -1;
    *out_width = self->k;
    *ext = self;
    //  a few iterations of k^2 each, typically (at most max (100, k))
    *work = self->pairs * 20 + 10 * self->k * self->k;
    return 0;
}

//  In double whatever the model's datatype (libsvm's arithmetic; FP32 models
//  thus lose nothing here): r [k][k], Q [k][k], Qp [k], p [k]
static size_t s_proba_scratch (const void *ext, amaas_dtype_t dtype, size_t rows)
{
    (void)dtype;
    (void)rows;
    const s_ovo_t *self = ext;
    return (2 * self->k * self->k + 2 * self->k) * sizeof (double);
}

//  libsvm's sigmoid_predict: 1 / (1 + exp (dec A + B)) without overflow
static double s_sigmoid_predict (double dec, double a, double b)
{
    double f = dec * a + b;
    if (f >= 0)
        return exp (-f) / (1.0 + exp (-f));
    return 1.0 / (1 + exp (f));
}

//  libsvm's multiclass_probability (Wu, Lin and Weng, method 2): p from the
//  pairwise probabilities r, in libsvm's order of operations, its stopping
//  rule (max |Qp_t - pQp| < 0.005 / k) and its iteration limit max (100, k)
static void s_couple (size_t k, const double *r, double *Q, double *Qp, double *p)
{
    size_t max_iter = k > 100 ? k : 100;
    double eps = 0.005 / (double)k;
    for (size_t t = 0; t < k; t++) {
        p[t] = 1.0 / (double)k;
        Q[t * k + t] = 0;
        for (size_t j = 0; j < t; j++) {
            Q[t * k + t] += r[j * k + t] * r[j * k + t];
            Q[t * k + j] = Q[j * k + t];
        }
        for (size_t j = t + 1; j < k; j++) {
            Q[t * k + t] += r[j * k + t] * r[j * k + t];
            Q[t * k + j] = -r[j * k + t] * r[t * k + j];
        }
    }
    for (size_t iter = 0; iter < max_iter; iter++) {
        double pQp = 0;
        for (size_t t = 0; t < k; t++) {
            Qp[t] = 0;
            for (size_t j = 0; j < k; j++)
                Qp[t] += Q[t * k + j] * p[j];
            pQp += p[t] * Qp[t];
        }
        double max_error = 0;
        for (size_t t = 0; t < k; t++) {
            double error = fabs (Qp[t] - pQp);
            if (error > max_error)
                max_error = error;
        }
        if (max_error < eps)
            break;
        for (size_t t = 0; t < k; t++) {
            double diff = (-Qp[t] + pQp) / Q[t * k + t];
            p[t] += diff;
            pQp = (pQp + diff * (diff * Q[t * k + t] + 2 * Qp[t])) / (1 + diff) / (1 + diff);
            for (size_t j = 0; j < k; j++) {
                Qp[j] = (Qp[j] + diff * Q[t * k + j]) / (1 + diff);
                p[j] /= (1 + diff);
            }
        }
    }
}

#define S_DEFINE_PROBA(T, S)                                                                       \
    static void s_proba_##S (const s_ovo_t *self, const T *x, T *y, size_t rows, double *scratch)  \
    {                                                                                              \
        size_t k = self->k, P = self->pairs;                                                       \
        const T *prob_a = self->prob_a, *prob_b = self->prob_b;                                    \
        double *r = scratch, *Q = r + k * k, *Qp = Q + k * k, *p = Qp + k;                         \
        const double min_prob = 1e-7;                                                              \
        for (size_t row = 0; row < rows; row++, x += P, y += k) {                                  \
            size_t q = 0;                                                                          \
            for (size_t i = 0; i < k; i++)                                                         \
                for (size_t j = i + 1; j < k; j++, q++) {                                          \
                    double v = s_sigmoid_predict (x[q], prob_a[q], prob_b[q]);                     \
                    v = v > min_prob ? v : min_prob;                                               \
                    v = v < 1 - min_prob ? v : 1 - min_prob;                                       \
                    r[i * k + j] = v;                                                              \
                    r[j * k + i] = 1 - v;                                                          \
                }                                                                                  \
            s_couple (k, r, Q, Qp, p);                                                             \
            for (size_t i = 0; i < k; i++)                                                         \
                y[i] = (T)p[i];                                                                    \
        }                                                                                          \
    }

S_DEFINE_PROBA (float, s)
S_DEFINE_PROBA (double, d)

static void s_proba_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                         size_t in_width, size_t out_width, void *scratch)
{
    (void)in_width;
    (void)out_width;
    if (dtype == AMAAS_FP64)
        s_proba_d (ext, x, y, rows, scratch);
    else
        s_proba_s (ext, x, y, rows, scratch);
}

const model_family_op_t model_svm_ops[] = {
    {"svm_kernel", false, s_kernel_parse, s_kernel_scratch, s_kernel_run},
    {"ovo_votes", false, s_votes_parse, NULL, s_votes_run},
    {"ovr_decision", false, s_votes_parse, s_ovr_scratch, s_ovr_run},
    {"ovo_proba", false, s_proba_parse, s_proba_scratch, s_proba_run},
    {NULL, false, NULL, NULL, NULL}};
