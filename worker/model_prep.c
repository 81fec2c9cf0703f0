/*  model_prep.c - preprocessing ops (docs/MODEL_FORMAT.md, "Operations: prep").

    The ops scikit-learn's transformers need beyond the core scale and dense:
    impute (SimpleImputer: NaN replaced per column, columns dropped, missing
    indicators appended), affine (x * mul + add per column, MinMaxScaler),
    clip (MinMaxScaler's clip=True), l1_normalize, l2_normalize and
    max_normalize (Normalizer, per row), poly (PolynomialFeatures: products of
    input columns) and onehot (OneHotEncoder on numeric categories).

    parse checks every width, index and count against the current width and
    the bins' sizes, and keeps the op's data in one struct allocated with
    model_parse_alloc (freed with the model, so no destroy).  run is a plain
    loop over the rows, in place when the width does not change; no op needs
    scratch memory.  Arithmetic is that of scikit-learn, operation for
    operation (this file is compiled with -ffp-contract=off, so a product
    and a sum are never fused), so that FP64 results match it to rounding.
*/
#include <float.h>
#include <math.h>
#include <string.h>

#include "model_family.h"

#define S_MAX_WIDTH (1u << 24)         //  the format's widths are 1 .. 2^24
#define S_MAX_FACTORS DEFS_FACTORS_MAX //  poly: factors over all terms; onehot: categories

//  --------------------------------------------------------------------------
//  Checked data of each op

typedef struct {
    size_t kept;               //  data columns out, 0 .. 2^24
    const int32_t *columns;    //  [kept] input column of each, < in_width
    const void *values;        //  [kept] replacement of NaN (model datatype, may be NaN)
    size_t indicated;          //  indicator columns out, after the data columns
    const int32_t *indicators; //  [indicated] input column whose NaN-ness each shows
} s_impute_t;

typedef struct {
    const void *mul; //  [width] factors
    const void *add; //  [width] terms
} s_affine_t;

typedef struct {
    double low;  //  lower bound, finite
    double high; //  upper bound, finite, >= low
} s_clip_t;

typedef struct {
    const int32_t *offsets; //  [out + 1] term j multiplies indices[offsets[j] .. offsets[j+1])
    const int32_t *indices; //  input columns, each < in_width
} s_poly_t;

typedef struct {
    const void *categories; //  [n] per input column, its sorted categories, NaN last if any
    const int32_t *columns; //  [n] output column of each category, -1 when dropped
    size_t *start;          //  [in_width] first category of each input column
    size_t *numbers;        //  [in_width] categories that are numbers (not NaN)
    int32_t *nan_column;    //  [in_width] output column of NaN, -1 when none or dropped
} s_onehot_t;

//  --------------------------------------------------------------------------
//  Parse helpers

//  Key `key` must be a uint equal to the current width.
static int s_width_is (model_parse_t *p, const msgpack_object *map, const char *key, size_t width)
{
    uint64_t value;
    if (model_parse_uint (p, map, key, 1, S_MAX_WIDTH, &value))
        return -1;
    if (value != width)
        return model_parse_fail (p, "\"%s\" is %llu, the current width is %zu", key,
                                 (unsigned long long)value, width);
    return 0;
}

//  Every value of an int32 bin in low .. high.
static int s_indices_in (model_parse_t *p, const char *key, const int32_t *values, size_t count,
                         int64_t low, int64_t high)
{
    for (size_t i = 0; i < count; i++)
        if (values[i] < low || values[i] > high)
            return model_parse_fail (p, "\"%s\"[%zu] is %d, expected %lld..%lld", key, i,
                                     (int)values[i], (long long)low, (long long)high);
    return 0;
}

//  Value i of a float bin of the model's datatype, as a double.
static double s_float_at (amaas_dtype_t dtype, const void *values, size_t i)
{
    return dtype == AMAAS_FP64 ? ((const double *)values)[i] : ((const float *)values)[i];
}

//  --------------------------------------------------------------------------
//  impute: {"in": w, "kept": k, "indicated": i, "columns": int32 [k],
//  "values": floats [k], "indicators": int32 [i]}, out = k + i

static int s_impute_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                           size_t *out_width, void **ext, size_t *work)
{
    uint64_t kept, indicated;
    if (s_width_is (p, map, "in", in_width) ||
        model_parse_uint (p, map, "kept", 0, S_MAX_WIDTH, &kept) ||
        model_parse_uint (p, map, "indicated", 0, S_MAX_WIDTH, &indicated))
        return -1;
    if (kept + indicated < 1 || kept + indicated > S_MAX_WIDTH)
        return model_parse_fail (p, "kept + indicated is %llu, expected 1..%u",
                                 (unsigned long long)(kept + indicated), S_MAX_WIDTH);
    s_impute_t *self = model_parse_alloc (p, sizeof (s_impute_t));
    if (!self)
        return -1;
    self->kept = (size_t)kept;
    self->indicated = (size_t)indicated;
    if (model_parse_int32 (p, map, "columns", self->kept, &self->columns) ||
        model_parse_floats (p, map, "values", self->kept, &self->values) ||
        model_parse_int32 (p, map, "indicators", self->indicated, &self->indicators) ||
        s_indices_in (p, "columns", self->columns, self->kept, 0, (int64_t)in_width - 1) ||
        s_indices_in (p, "indicators", self->indicators, self->indicated, 0, (int64_t)in_width - 1))
        return -1;
    *out_width = self->kept + self->indicated;
    *ext = self;
    *work = in_width + *out_width;
    return 0;
}

//  --------------------------------------------------------------------------
//  affine: {"width": w, "mul": floats [w], "add": floats [w]}

static int s_affine_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                           size_t *out_width, void **ext, size_t *work)
{
    s_affine_t *self = model_parse_alloc (p, sizeof (s_affine_t));
    if (!self || s_width_is (p, map, "width", in_width) ||
        model_parse_floats (p, map, "mul", in_width, &self->mul) ||
        model_parse_floats (p, map, "add", in_width, &self->add))
        return -1;
    *out_width = in_width;
    *ext = self;
    *work = in_width;
    return 0;
}

//  --------------------------------------------------------------------------
//  clip: {"width": w, "low": number, "high": number}

static int s_clip_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                         size_t *out_width, void **ext, size_t *work)
{
    s_clip_t *self = model_parse_alloc (p, sizeof (s_clip_t));
    if (!self || s_width_is (p, map, "width", in_width) ||
        model_parse_number (p, map, "low", &self->low) ||
        model_parse_number (p, map, "high", &self->high))
        return -1;
    if (!(self->low <= self->high))
        return model_parse_fail (p, "\"low\" %g is above \"high\" %g", self->low, self->high);
    if (model_parse_dtype (p) == AMAAS_FP32 &&
        (fabs (self->low) > FLT_MAX || fabs (self->high) > FLT_MAX))
        return model_parse_fail (p, "\"low\" %g or \"high\" %g is outside FP32", self->low,
                                 self->high);
    *out_width = in_width;
    *ext = self;
    *work = in_width;
    return 0;
}

//  --------------------------------------------------------------------------
//  l1_normalize, l2_normalize, max_normalize: {"width": w}

static int s_norm_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                         size_t *out_width, void **ext, size_t *work)
{
    if (s_width_is (p, map, "width", in_width))
        return -1;
    *out_width = in_width;
    *ext = NULL;
    *work = 2 * in_width;
    return 0;
}

//  --------------------------------------------------------------------------
//  poly: {"in": w, "out": m, "factors": n, "offsets": int32 [m + 1],
//  "indices": int32 [n]}

static int s_poly_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                         size_t *out_width, void **ext, size_t *work)
{
    uint64_t out, factors;
    if (s_width_is (p, map, "in", in_width) ||
        model_parse_uint (p, map, "out", 1, S_MAX_WIDTH, &out) ||
        model_parse_uint (p, map, "factors", 0, S_MAX_FACTORS, &factors))
        return -1;
    s_poly_t *self = model_parse_alloc (p, sizeof (s_poly_t));
    if (!self || model_parse_int32 (p, map, "offsets", (size_t)out + 1, &self->offsets) ||
        model_parse_int32 (p, map, "indices", (size_t)factors, &self->indices) ||
        s_indices_in (p, "indices", self->indices, (size_t)factors, 0, (int64_t)in_width - 1))
        return -1;
    //  offsets run from 0 to factors without going back: every term's
    //  factors are inside indices
    if (self->offsets[0] != 0)
        return model_parse_fail (p, "\"offsets\"[0] is %d, expected 0", (int)self->offsets[0]);
    for (size_t j = 0; j < out; j++)
        if (self->offsets[j + 1] < self->offsets[j])
            return model_parse_fail (p, "\"offsets\"[%zu] is %d, below \"offsets\"[%zu] %d", j + 1,
                                     (int)self->offsets[j + 1], j, (int)self->offsets[j]);
    if ((uint64_t)self->offsets[out] != factors)
        return model_parse_fail (p, "\"offsets\"[%llu] is %d, expected \"factors\" %llu",
                                 (unsigned long long)out, (int)self->offsets[out],
                                 (unsigned long long)factors);
    *out_width = (size_t)out;
    *ext = self;
    *work = (size_t)(factors + out);
    return 0;
}

//  --------------------------------------------------------------------------
//  onehot: {"in": w, "out": m, "n_categories": n, "counts": int32 [w],
//  "categories": floats [n], "columns": int32 [n]}

static int s_onehot_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                           size_t *out_width, void **ext, size_t *work)
{
    amaas_dtype_t dtype = model_parse_dtype (p);
    uint64_t out, n;
    const int32_t *counts;
    if (s_width_is (p, map, "in", in_width) ||
        model_parse_uint (p, map, "out", 1, S_MAX_WIDTH, &out) ||
        model_parse_uint (p, map, "n_categories", 1, S_MAX_FACTORS, &n) ||
        model_parse_int32 (p, map, "counts", in_width, &counts) ||
        s_indices_in (p, "counts", counts, in_width, 1, S_MAX_WIDTH))
        return -1;
    s_onehot_t *self = model_parse_alloc (p, sizeof (s_onehot_t));
    if (!self || model_parse_floats (p, map, "categories", (size_t)n, &self->categories) ||
        model_parse_int32 (p, map, "columns", (size_t)n, &self->columns) ||
        s_indices_in (p, "columns", self->columns, (size_t)n, -1, (int64_t)out - 1))
        return -1;
    self->start = model_parse_alloc (p, in_width * sizeof (size_t));
    self->numbers = model_parse_alloc (p, in_width * sizeof (size_t));
    self->nan_column = model_parse_alloc (p, in_width * sizeof (int32_t));
    if (!self->start || !self->numbers || !self->nan_column)
        return -1;
    uint64_t total = 0;
    for (size_t i = 0; i < in_width; i++) {
        size_t start = (size_t)total;
        total += (uint64_t)counts[i];
        if (total > n)
            return model_parse_fail (p, "\"counts\" add up to more than \"n_categories\" %llu",
                                     (unsigned long long)n);
        size_t count = (size_t)counts[i];
        self->start[i] = start;
        self->numbers[i] = count;
        self->nan_column[i] = -1;
        //  numbers strictly increasing, so that a binary search finds each;
        //  NaN only as the last category
        for (size_t j = 0; j < count; j++) {
            double value = s_float_at (dtype, self->categories, start + j);
            if (isnan (value)) {
                if (j != count - 1)
                    return model_parse_fail (
                        p, "column %zu: category %zu is NaN but not the column's last", i, j);
                self->numbers[i] = count - 1;
                self->nan_column[i] = self->columns[start + j];
            } else if (j > 0 && !(s_float_at (dtype, self->categories, start + j - 1) < value))
                return model_parse_fail (
                    p, "column %zu: categories %zu and %zu are not strictly increasing", i, j - 1,
                    j);
        }
    }
    if (total != n)
        return model_parse_fail (p, "\"counts\" add up to %llu, \"n_categories\" is %llu",
                                 (unsigned long long)total, (unsigned long long)n);
    *out_width = (size_t)out;
    *ext = self;
    *work = (size_t)out + in_width * 24; //  a binary search per column
    return 0;
}

//  --------------------------------------------------------------------------
//  Runs, one version per element type

#define S_DEFINE_RUNS(T, S, SQRT, EPS)                                                             \
    static void s_impute_##S (const s_impute_t *self, const T *x, T *y, size_t rows, size_t in_w,  \
                              size_t out_w)                                                        \
    {                                                                                              \
        const T *values = self->values;                                                            \
        for (size_t r = 0; r < rows; r++, x += in_w, y += out_w) {                                 \
            for (size_t j = 0; j < self->kept; j++) {                                              \
                T v = x[self->columns[j]];                                                         \
                y[j] = isnan (v) ? values[j] : v;                                                  \
            }                                                                                      \
            for (size_t j = 0; j < self->indicated; j++)                                           \
                y[self->kept + j] = isnan (x[self->indicators[j]]) ? 1 : 0;                        \
        }                                                                                          \
    }                                                                                              \
    static void s_affine_##S (const s_affine_t *self, T *x, size_t rows, size_t w)                 \
    {                                                                                              \
        const T *mul = self->mul;                                                                  \
        const T *add = self->add;                                                                  \
        for (size_t r = 0; r < rows; r++, x += w)                                                  \
            for (size_t j = 0; j < w; j++)                                                         \
                x[j] = x[j] * mul[j] + add[j];                                                     \
    }                                                                                              \
    /*  numpy's clip: maximum then minimum, NaN stays NaN  */                                      \
    static void s_clip_##S (const s_clip_t *self, T *x, size_t n)                                  \
    {                                                                                              \
        T low = (T)self->low;                                                                      \
        T high = (T)self->high;                                                                    \
        for (size_t i = 0; i < n; i++) {                                                           \
            if (x[i] < low)                                                                        \
                x[i] = low;                                                                        \
            else if (x[i] > high)                                                                  \
                x[i] = high;                                                                       \
        }                                                                                          \
    }                                                                                              \
    /*  kind 1: l1, 2: l2, 3: max.  A norm below 10 eps is 1, as scikit-learn's  */                \
    /*  _handle_zeros_in_scale makes it                                          */                \
    static void s_norm_##S (int kind, T *x, size_t rows, size_t w)                                 \
    {                                                                                              \
        for (size_t r = 0; r < rows; r++, x += w) {                                                \
            T norm = 0;                                                                            \
            if (kind == 1)                                                                         \
                for (size_t j = 0; j < w; j++)                                                     \
                    norm += x[j] < 0 ? -x[j] : x[j];                                               \
            else if (kind == 2) {                                                                  \
                for (size_t j = 0; j < w; j++)                                                     \
                    norm += x[j] * x[j];                                                           \
                norm = SQRT (norm);                                                                \
            } else                                                                                 \
                for (size_t j = 0; j < w; j++) {                                                   \
                    T a = x[j] < 0 ? -x[j] : x[j];                                                 \
                    if (a > norm || isnan (a))                                                     \
                        norm = a;                                                                  \
                    if (isnan (a))                                                                 \
                        break;                                                                     \
                }                                                                                  \
            if (norm < 10 * EPS)                                                                   \
                norm = 1;                                                                          \
            for (size_t j = 0; j < w; j++)                                                         \
                x[j] /= norm;                                                                      \
        }                                                                                          \
    }                                                                                              \
    /*  scikit-learn builds a term of degree d as the term of its last d - 1  */                   \
    /*  factors times its first: multiplying from the last factor to the     */                    \
    /*  first rounds as it does                                              */                    \
    static void s_poly_##S (const s_poly_t *self, const T *x, T *y, size_t rows, size_t in_w,      \
                            size_t out_w)                                                          \
    {                                                                                              \
        for (size_t r = 0; r < rows; r++, x += in_w, y += out_w)                                   \
            for (size_t j = 0; j < out_w; j++) {                                                   \
                int32_t a = self->offsets[j];                                                      \
                int32_t b = self->offsets[j + 1];                                                  \
                T product = 1;                                                                     \
                if (b > a) {                                                                       \
                    product = x[self->indices[b - 1]];                                             \
                    for (int32_t k = b - 2; k >= a; k--)                                           \
                        product = product * x[self->indices[k]];                                   \
                }                                                                                  \
                y[j] = product;                                                                    \
            }                                                                                      \
    }                                                                                              \
    static void s_onehot_##S (const s_onehot_t *self, const T *x, T *y, size_t rows, size_t in_w,  \
                              size_t out_w)                                                        \
    {                                                                                              \
        const T *categories = self->categories;                                                    \
        for (size_t r = 0; r < rows; r++, x += in_w, y += out_w) {                                 \
            memset (y, 0, out_w * sizeof (T));                                                     \
            for (size_t i = 0; i < in_w; i++) {                                                    \
                T v = x[i];                                                                        \
                int32_t column = -1;                                                               \
                if (isnan (v))                                                                     \
                    column = self->nan_column[i];                                                  \
                else {                                                                             \
                    const T *cats = categories + self->start[i];                                   \
                    size_t low = 0, high = self->numbers[i];                                       \
                    while (low < high) {                                                           \
                        size_t mid = low + (high - low) / 2;                                       \
                        if (cats[mid] < v)                                                         \
                            low = mid + 1;                                                         \
                        else                                                                       \
                            high = mid;                                                            \
                    }                                                                              \
                    if (low < self->numbers[i] && cats[low] == v)                                  \
                        column = self->columns[self->start[i] + low];                              \
                }                                                                                  \
                if (column >= 0)                                                                   \
                    y[column] = 1;                                                                 \
            }                                                                                      \
        }                                                                                          \
    }

S_DEFINE_RUNS (float, s, sqrtf, FLT_EPSILON)
S_DEFINE_RUNS (double, d, sqrt, DBL_EPSILON)

static void s_impute_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                          size_t in_width, size_t out_width, void *scratch)
{
    (void)scratch;
    if (dtype == AMAAS_FP64)
        s_impute_d (ext, x, y, rows, in_width, out_width);
    else
        s_impute_s (ext, x, y, rows, in_width, out_width);
}

static void s_affine_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                          size_t in_width, size_t out_width, void *scratch)
{
    (void)x, (void)out_width, (void)scratch;
    if (dtype == AMAAS_FP64)
        s_affine_d (ext, y, rows, in_width);
    else
        s_affine_s (ext, y, rows, in_width);
}

static void s_clip_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                        size_t in_width, size_t out_width, void *scratch)
{
    (void)x, (void)out_width, (void)scratch;
    if (dtype == AMAAS_FP64)
        s_clip_d (ext, y, rows * in_width);
    else
        s_clip_s (ext, y, rows * in_width);
}

#define S_NORM_RUN(NAME, KIND)                                                                     \
    static void NAME (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,   \
                      size_t in_width, size_t out_width, void *scratch)                            \
    {                                                                                              \
        (void)ext, (void)x, (void)out_width, (void)scratch;                                        \
        if (dtype == AMAAS_FP64)                                                                   \
            s_norm_d (KIND, y, rows, in_width);                                                    \
        else                                                                                       \
            s_norm_s (KIND, y, rows, in_width);                                                    \
    }

S_NORM_RUN (s_l1_run, 1)
S_NORM_RUN (s_l2_run, 2)
S_NORM_RUN (s_max_run, 3)

static void s_poly_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                        size_t in_width, size_t out_width, void *scratch)
{
    (void)scratch;
    if (dtype == AMAAS_FP64)
        s_poly_d (ext, x, y, rows, in_width, out_width);
    else
        s_poly_s (ext, x, y, rows, in_width, out_width);
}

static void s_onehot_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                          size_t in_width, size_t out_width, void *scratch)
{
    (void)scratch;
    if (dtype == AMAAS_FP64)
        s_onehot_d (ext, x, y, rows, in_width, out_width);
    else
        s_onehot_s (ext, x, y, rows, in_width, out_width);
}

const model_family_op_t model_prep_ops[] = {{"impute", false, s_impute_parse, NULL, s_impute_run},
                                            {"affine", true, s_affine_parse, NULL, s_affine_run},
                                            {"clip", true, s_clip_parse, NULL, s_clip_run},
                                            {"l1_normalize", true, s_norm_parse, NULL, s_l1_run},
                                            {"l2_normalize", true, s_norm_parse, NULL, s_l2_run},
                                            {"max_normalize", true, s_norm_parse, NULL, s_max_run},
                                            {"poly", false, s_poly_parse, NULL, s_poly_run},
                                            {"onehot", false, s_onehot_parse, NULL, s_onehot_run},
                                            {NULL, false, NULL, NULL, NULL}};
