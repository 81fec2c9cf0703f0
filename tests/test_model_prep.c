/*  test_model_prep.c - unit tests of the prep ops (worker/model_prep.c).

    Each test packs a model file in memory with msgpack-c's packer: the
    header, one prep op described as a list of fields (t_field_t), and an
    output op.  Results are checked on small hand-computed batches in FP64
    and FP32; refusals by changing or removing one field of a good op and
    checking the loader's message (a hostile file gets an error, never a
    crash: the ASan/UBSan build runs this test too).
*/
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "model.h"
#include "unit.h"

#define T_MAX_FIELDS 12

//  One field of an op
typedef enum { T_UINT, T_NUMBER, T_FLOATS, T_INT32S, T_STR } t_kind_t;

typedef struct {
    const char *key;      //  NULL: the field is left out
    t_kind_t kind;        //  how it is packed
    uint64_t uint;        //  T_UINT
    double number;        //  T_NUMBER
    const double *floats; //  T_FLOATS: packed in the model's datatype
    const int32_t *ints;  //  T_INT32S: packed as int32 LE
    size_t count;         //  values at floats or ints
} t_field_t;

#define T_U(k, v)                                                                                  \
    {                                                                                              \
        .key = (k), .kind = T_UINT, .uint = (v)                                                    \
    }
#define T_N(k, v)                                                                                  \
    {                                                                                              \
        .key = (k), .kind = T_NUMBER, .number = (v)                                                \
    }
#define T_F(k, a)                                                                                  \
    {                                                                                              \
        .key = (k), .kind = T_FLOATS, .floats = (a), .count = sizeof (a) / sizeof (a)[0]           \
    }
#define T_I(k, a)                                                                                  \
    {                                                                                              \
        .key = (k), .kind = T_INT32S, .ints = (a), .count = sizeof (a) / sizeof (a)[0]             \
    }

//  --------------------------------------------------------------------------
//  Fixture: packed files and models live until the test ends

static msgpack_sbuffer s_buffers[32];
static size_t s_n_buffers;
static model_t *s_models[32];
static size_t s_n_models;
static model_workspace_t *s_ws;

static void t_setup (void)
{
    s_n_buffers = s_n_models = 0;
    s_ws = model_workspace_new ();
    ck_assert_ptr_nonnull (s_ws);
}

static void t_teardown (void)
{
    for (size_t i = 0; i < s_n_models; i++)
        model_destroy (&s_models[i]);
    for (size_t i = 0; i < s_n_buffers; i++)
        msgpack_sbuffer_destroy (&s_buffers[i]);
    model_workspace_destroy (&s_ws);
}

static void t_str (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str (pk, strlen (text));
    msgpack_pack_str_body (pk, text, strlen (text));
}

static void t_field (msgpack_packer *pk, amaas_dtype_t dtype, const t_field_t *field)
{
    t_str (pk, field->key);
    switch (field->kind) {
    case T_UINT: msgpack_pack_uint64 (pk, field->uint); break;
    case T_NUMBER: msgpack_pack_double (pk, field->number); break;
    case T_STR: t_str (pk, "text"); break;
    case T_FLOATS: {
        size_t elem = dtype == AMAAS_FP64 ? 8 : 4;
        msgpack_pack_bin (pk, field->count * elem);
        for (size_t i = 0; i < field->count; i++) {
            if (dtype == AMAAS_FP64)
                msgpack_pack_bin_body (pk, &field->floats[i], 8);
            else {
                float value = (float)field->floats[i];
                msgpack_pack_bin_body (pk, &value, 4);
            }
        }
        break;
    }
    case T_INT32S:
        msgpack_pack_bin (pk, field->count * 4);
        msgpack_pack_bin_body (pk, field->ints, field->count * 4);
        break;
    }
}

//  A model: input [rows, in_width], op `name` with the fields (those with a
//  NULL key left out), then output "out" [rows, out_width].  NULL with a
//  message in err when the loader refuses it.
static model_t *t_load (amaas_dtype_t dtype, size_t in_width, size_t out_width, const char *name,
                        const t_field_t *fields, size_t count, char *err, size_t err_size)
{
    ck_assert_uint_lt (s_n_buffers, 32);
    msgpack_sbuffer *sb = &s_buffers[s_n_buffers++];
    msgpack_sbuffer_init (sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 8);
    t_str (&pk, "format"), t_str (&pk, "amaas-model");
    t_str (&pk, "format_version"), msgpack_pack_uint64 (&pk, 1);
    t_str (&pk, "name"), t_str (&pk, "prep");
    t_str (&pk, "version"), t_str (&pk, "1");
    t_str (&pk, "datatype"), t_str (&pk, dtype == AMAAS_FP64 ? "FP64" : "FP32");
    t_str (&pk, "input");
    msgpack_pack_map (&pk, 2);
    t_str (&pk, "name"), t_str (&pk, "input");
    t_str (&pk, "width"), msgpack_pack_uint64 (&pk, in_width);
    t_str (&pk, "outputs");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_map (&pk, 3);
    t_str (&pk, "name"), t_str (&pk, "out");
    t_str (&pk, "datatype"), t_str (&pk, dtype == AMAAS_FP64 ? "FP64" : "FP32");
    t_str (&pk, "shape");
    msgpack_pack_array (&pk, 2);
    msgpack_pack_int64 (&pk, -1);
    msgpack_pack_uint64 (&pk, out_width);
    t_str (&pk, "ops");
    msgpack_pack_array (&pk, 2);
    size_t present = 1;
    for (size_t i = 0; i < count; i++)
        present += fields[i].key != NULL;
    msgpack_pack_map (&pk, present);
    t_str (&pk, "op"), t_str (&pk, name);
    for (size_t i = 0; i < count; i++)
        if (fields[i].key)
            t_field (&pk, dtype, &fields[i]);
    msgpack_pack_map (&pk, 2);
    t_str (&pk, "op"), t_str (&pk, "output");
    t_str (&pk, "name"), t_str (&pk, "out");

    model_t *model = model_load_buffer (sb->data, sb->size, "prep.amm", err, err_size);
    if (model) {
        ck_assert_uint_lt (s_n_models, 32);
        s_models[s_n_models++] = model;
    }
    return model;
}

//  Runs the model on rows x FP64 values and checks the output against want
//  (NaN matches NaN); exact in FP64, to 1e-6 relative in FP32.
static void t_check (const model_t *model, const double *x, size_t rows, const double *want,
                     size_t out_width)
{
    model_output_t outputs[1];
    char err[256];
    ck_assert_msg (model_run (model, s_ws, AMAAS_FP64, x, rows, outputs, err, sizeof err) == 0,
                   "%s", err);
    ck_assert_uint_eq (outputs[0].shape[0], rows);
    ck_assert_uint_eq (outputs[0].shape[1], out_width);
    bool fp64 = model_dtype (model) == AMAAS_FP64;
    for (size_t i = 0; i < rows * out_width; i++) {
        double got = fp64 ? ((const double *)outputs[0].data)[i]
                          : (double)((const float *)outputs[0].data)[i];
        if (isnan (want[i]))
            ck_assert_msg (isnan (got), "value %zu is %g, expected NaN", i, got);
        else if (fp64)
            ck_assert_msg (got == want[i], "value %zu is %.17g, expected %.17g", i, got, want[i]);
        else
            ck_assert_msg (fabs (got - want[i]) <= 1e-6 * fmax (1, fabs (want[i])),
                           "value %zu is %.9g, expected %.9g (FP32)", i, got, want[i]);
    }
}

//  The loader refuses the op with a message that contains expect.
static void t_refused (amaas_dtype_t dtype, size_t in_width, size_t out_width, const char *name,
                       const t_field_t *fields, size_t count, const char *expect)
{
    char err[512] = "";
    model_t *model = t_load (dtype, in_width, out_width, name, fields, count, err, sizeof err);
    ck_assert_msg (model == NULL, "%s accepted, expected a refusal with \"%s\"", name, expect);
    ck_assert_msg (strstr (err, expect), "message \"%s\" lacks \"%s\"", err, expect);
    ck_assert_msg (strstr (err, name), "message \"%s\" does not name the op", err);
}

static const amaas_dtype_t s_dtypes[] = {AMAAS_FP64, AMAAS_FP32};

//  --------------------------------------------------------------------------
//  impute

static const int32_t s_imp_columns[] = {2, 0};
static const double s_imp_values[] = {9, 8};
static const int32_t s_imp_indicators[] = {1, 2};

static size_t t_impute_fields (t_field_t *f)
{
    t_field_t fields[] = {T_U ("in", 3),
                          T_U ("kept", 2),
                          T_U ("indicated", 2),
                          T_I ("columns", s_imp_columns),
                          T_F ("values", s_imp_values),
                          T_I ("indicators", s_imp_indicators)};
    memcpy (f, fields, sizeof fields);
    return sizeof fields / sizeof fields[0];
}

START_TEST (test_impute)
{
    t_field_t f[T_MAX_FIELDS];
    size_t n = t_impute_fields (f);
    const double x[] = {NAN, 1, NAN, 4, NAN, 5};
    const double want[] = {9, 8, 0, 1, 5, 4, 1, 0};
    for (size_t d = 0; d < 2; d++) {
        char err[256];
        model_t *model = t_load (s_dtypes[d], 3, 4, "impute", f, n, err, sizeof err);
        ck_assert_msg (model, "%s", err);
        t_check (model, x, 2, want, 4);
    }
}
END_TEST

START_TEST (test_impute_refused)
{
    t_field_t f[T_MAX_FIELDS];
    size_t n = t_impute_fields (f);
    static const int32_t beyond[] = {2, 3}, negative[] = {-1, 0};
    static const double one[] = {1};
    struct {
        size_t field;
        t_field_t value;
        const char *expect;
    } cases[] = {
        {0, T_U ("in", 4), "\"in\" is 4, the current width is 3"},
        {3, T_I ("columns", beyond), "\"columns\"[1] is 3, expected 0..2"},
        {3, T_I ("columns", negative), "\"columns\"[0] is -1"},
        {5, T_I ("indicators", beyond), "\"indicators\"[1] is 3"},
        {4, T_F ("values", one), "\"values\" holds"},
        {1, T_U ("kept", 3), "\"columns\" holds 8 bytes, 3 INT32 need 12"},
        {1, T_U ("kept", 1u << 25), "\"kept\" is 33554432"},
        {3, {.key = NULL}, "missing key \"columns\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t_field_t g[T_MAX_FIELDS];
        memcpy (g, f, sizeof g);
        g[cases[i].field] = cases[i].value;
        t_refused (AMAAS_FP64, 3, 4, "impute", g, n, cases[i].expect);
    }
    //  nothing out
    f[1] = (t_field_t)T_U ("kept", 0);
    f[2] = (t_field_t)T_U ("indicated", 0);
    f[3].count = f[4].count = f[5].count = 0;
    t_refused (AMAAS_FP64, 3, 4, "impute", f, n, "kept + indicated is 0");
}
END_TEST

//  --------------------------------------------------------------------------
//  affine and clip

static const double s_mul[] = {2, -1};
static const double s_add[] = {1, 0.5};

START_TEST (test_affine_clip)
{
    t_field_t affine[] = {T_U ("width", 2), T_F ("mul", s_mul), T_F ("add", s_add)};
    t_field_t clip[] = {T_U ("width", 2), T_N ("low", -1), T_N ("high", 3)};
    const double x[] = {1, 1, NAN, -5, -4, 0};
    const double want_affine[] = {3, -0.5, NAN, 5.5, -7, 0.5};
    const double want_clip[] = {1, 1, NAN, -1, -1, 0};
    for (size_t d = 0; d < 2; d++) {
        char err[256];
        model_t *model = t_load (s_dtypes[d], 2, 2, "affine", affine, 3, err, sizeof err);
        ck_assert_msg (model, "%s", err);
        t_check (model, x, 3, want_affine, 2);
        model = t_load (s_dtypes[d], 2, 2, "clip", clip, 3, err, sizeof err);
        ck_assert_msg (model, "%s", err);
        t_check (model, x, 3, want_clip, 2);
    }
    //  x * mul + add is a product and a sum, each rounded (no fused multiply-add):
    //  (1 + 2^-30)^2 - 1 - 2^-29 rounds the product to 1 + 2^-29 first, giving 0
    static const double mul[] = {1 + 0x1p-30}, add[] = {-(1 + 0x1p-29)};
    t_field_t exact[] = {T_U ("width", 1), T_F ("mul", mul), T_F ("add", add)};
    char err[256];
    model_t *model = t_load (AMAAS_FP64, 1, 1, "affine", exact, 3, err, sizeof err);
    ck_assert_msg (model, "%s", err);
    const double in[] = {1 + 0x1p-30}, zero[] = {0};
    t_check (model, in, 1, zero, 1);
}
END_TEST

START_TEST (test_affine_clip_refused)
{
    static const double three[] = {1, 2, 3};
    t_field_t affine[] = {T_U ("width", 2), T_F ("mul", three), T_F ("add", s_add)};
    t_refused (AMAAS_FP64, 2, 2, "affine", affine, 3, "\"mul\" holds 24 bytes, 2 FP64 need 16");
    affine[1] = (t_field_t)T_F ("mul", s_mul);
    affine[0] = (t_field_t)T_U ("width", 3);
    t_refused (AMAAS_FP32, 2, 2, "affine", affine, 3, "\"width\" is 3, the current width is 2");
    t_field_t clip[] = {T_U ("width", 2), T_N ("low", 3), T_N ("high", -1)};
    t_refused (AMAAS_FP64, 2, 2, "clip", clip, 3, "\"low\" 3 is above \"high\" -1");
    clip[1] = (t_field_t)T_N ("low", NAN);
    t_refused (AMAAS_FP64, 2, 2, "clip", clip, 3, "expected a finite number");
    clip[1] = (t_field_t)T_N ("low", -1e39);
    t_refused (AMAAS_FP32, 2, 2, "clip", clip, 3, "outside FP32");
    clip[1] = (t_field_t){.key = "low", .kind = T_STR};
    t_refused (AMAAS_FP64, 2, 2, "clip", clip, 3, "expected a number");
}
END_TEST

//  --------------------------------------------------------------------------
//  l1_normalize, l2_normalize, max_normalize

START_TEST (test_normalize)
{
    t_field_t width[] = {T_U ("width", 2)};
    //  rows: (3, -1), (0, 0), tiny (norm below 10 eps: left as it is), (3, 4), NaN
    const double x[] = {3, -1, 0, 0, 1e-300, -1e-300, 3, 4, NAN, 1};
    const double want_l1[] = {0.75, -0.25, 0, 0, 1e-300, -1e-300, 3.0 / 7, 4.0 / 7, NAN, NAN};
    const double want_l2[] = {
        3 / sqrt (10), -1 / sqrt (10), 0, 0, 1e-300, -1e-300, 0.6, 0.8, NAN, NAN};
    const double want_max[] = {1, -1.0 / 3, 0, 0, 1e-300, -1e-300, 0.75, 1, NAN, NAN};
    const char *names[] = {"l1_normalize", "l2_normalize", "max_normalize"};
    const double *wants[] = {want_l1, want_l2, want_max};
    for (size_t d = 0; d < 2; d++)
        for (size_t k = 0; k < 3; k++) {
            char err[256];
            model_t *model = t_load (s_dtypes[d], 2, 2, names[k], width, 1, err, sizeof err);
            ck_assert_msg (model, "%s", err);
            //  FP32: the tiny row is 0 there; skip it
            if (s_dtypes[d] == AMAAS_FP64)
                t_check (model, x, 5, wants[k], 2);
            else {
                t_check (model, x, 2, wants[k], 2);
                t_check (model, x + 6, 2, wants[k] + 6, 2);
            }
        }
    width[0] = (t_field_t)T_U ("width", 5);
    t_refused (AMAAS_FP64, 2, 2, "l2_normalize", width, 1, "\"width\" is 5");
    t_refused (AMAAS_FP64, 2, 2, "max_normalize", width, 0, "missing key \"width\"");
}
END_TEST

//  --------------------------------------------------------------------------
//  poly

//  terms 1, x0, x1, x0 x0, x0 x1, x1 x1
static const int32_t s_offsets[] = {0, 0, 1, 2, 4, 6, 8};
static const int32_t s_indices[] = {0, 1, 0, 0, 0, 1, 1, 1};

START_TEST (test_poly)
{
    t_field_t f[] = {T_U ("in", 2), T_U ("out", 6), T_U ("factors", 8), T_I ("offsets", s_offsets),
                     T_I ("indices", s_indices)};
    const double x[] = {2, 3, -1.5, 0.5};
    const double want[] = {1, 2, 3, 4, 6, 9, 1, -1.5, 0.5, 2.25, -0.75, 0.25};
    for (size_t d = 0; d < 2; d++) {
        char err[256];
        model_t *model = t_load (s_dtypes[d], 2, 6, "poly", f, 5, err, sizeof err);
        ck_assert_msg (model, "%s", err);
        t_check (model, x, 2, want, 6);
    }
}
END_TEST

START_TEST (test_poly_refused)
{
    static const int32_t from1[] = {1, 1, 1, 2, 4, 6, 8}, back[] = {0, 0, 1, 2, 1, 6, 8},
                         short_end[] = {0, 0, 1, 2, 4, 6, 7}, beyond[] = {0, 1, 0, 0, 0, 2, 1, 1},
                         negative[] = {0, 1, 0, 0, 0, -5, 1, 1};
    struct {
        size_t field;
        t_field_t value;
        const char *expect;
    } cases[] = {
        {3, T_I ("offsets", from1), "\"offsets\"[0] is 1, expected 0"},
        {3, T_I ("offsets", back), "\"offsets\"[4] is 1, below \"offsets\"[3] 2"},
        {3, T_I ("offsets", short_end), "\"offsets\"[6] is 7, expected \"factors\" 8"},
        {4, T_I ("indices", beyond), "\"indices\"[5] is 2, expected 0..1"},
        {4, T_I ("indices", negative), "\"indices\"[5] is -5"},
        {2, T_U ("factors", 1u << 30), "\"factors\" is 1073741824"},
        {2, T_U ("factors", (1u << 30) - 1), "\"indices\" holds 32 bytes"},
        {1, T_U ("out", 0), "\"out\" is 0"},
        {1, T_U ("out", 1u << 24), "\"offsets\" holds 28 bytes"},
        {0, T_U ("in", 3), "\"in\" is 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t_field_t f[] = {T_U ("in", 2), T_U ("out", 6), T_U ("factors", 8),
                         T_I ("offsets", s_offsets), T_I ("indices", s_indices)};
        f[cases[i].field] = cases[i].value;
        t_refused (AMAAS_FP64, 2, 6, "poly", f, 5, cases[i].expect);
    }
}
END_TEST

//  --------------------------------------------------------------------------
//  onehot

//  column 0: categories 1, 2, 5 -> out 0, dropped, 1; column 1: 0, NaN -> 2, 3
static const int32_t s_counts[] = {3, 2};
static const double s_cats[] = {1, 2, 5, 0, NAN};
static const int32_t s_cat_columns[] = {0, -1, 1, 2, 3};

static size_t t_onehot_fields (t_field_t *f)
{
    t_field_t fields[] = {T_U ("in", 2),
                          T_U ("out", 4),
                          T_U ("n_categories", 5),
                          T_I ("counts", s_counts),
                          T_F ("categories", s_cats),
                          T_I ("columns", s_cat_columns)};
    memcpy (f, fields, sizeof fields);
    return sizeof fields / sizeof fields[0];
}

START_TEST (test_onehot)
{
    t_field_t f[T_MAX_FIELDS];
    size_t n = t_onehot_fields (f);
    //  5 and NaN; 2 (dropped) and 0; 7 and 1 (unknown: zeros); -0.0 (no) and -0.0 (is 0)
    const double x[] = {5, NAN, 2, 0, 7, 1, -0.0, -0.0, 1, NAN};
    const double want[] = {0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1};
    for (size_t d = 0; d < 2; d++) {
        char err[256];
        model_t *model = t_load (s_dtypes[d], 2, 4, "onehot", f, n, err, sizeof err);
        ck_assert_msg (model, "%s", err);
        t_check (model, x, 5, want, 4);
    }
}
END_TEST

START_TEST (test_onehot_refused)
{
    static const double unsorted[] = {1, 5, 2, 0, NAN}, repeated[] = {1, 2, 2, 0, NAN},
                        nan_first[] = {1, 2, 5, NAN, 0}, two[] = {1, 2};
    static const int32_t sum_low[] = {3, 1}, zero[] = {0, 5}, huge[] = {0x7fffffff, 2},
                         beyond[] = {0, -1, 4, 2, 3}, below[] = {0, -2, 1, 2, 3};
    struct {
        size_t field;
        t_field_t value;
        const char *expect;
    } cases[] = {
        {4, T_F ("categories", unsorted), "column 0: categories 1 and 2 are not strictly"},
        {4, T_F ("categories", repeated), "column 0: categories 1 and 2 are not strictly"},
        {4, T_F ("categories", nan_first), "column 1: category 0 is NaN but not the column's last"},
        {4, T_F ("categories", two), "\"categories\" holds 16 bytes, 5 FP64 need 40"},
        {3, T_I ("counts", sum_low), "\"counts\" add up to 4, \"n_categories\" is 5"},
        {3, T_I ("counts", zero), "\"counts\"[0] is 0, expected 1..16777216"},
        {3, T_I ("counts", huge), "\"counts\"[0] is 2147483647"},
        {5, T_I ("columns", beyond), "\"columns\"[2] is 4, expected -1..3"},
        {5, T_I ("columns", below), "\"columns\"[1] is -2"},
        {2, T_U ("n_categories", 4), "\"categories\" holds 40 bytes, 4 FP64 need 32"},
        {2, T_U ("n_categories", 0), "\"n_categories\" is 0"},
        {1, T_U ("out", 1u << 25), "\"out\" is 33554432"},
        {3, {.key = NULL}, "missing key \"counts\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t_field_t f[T_MAX_FIELDS];
        size_t n = t_onehot_fields (f);
        f[cases[i].field] = cases[i].value;
        t_refused (AMAAS_FP64, 2, 4, "onehot", f, n, cases[i].expect);
    }
    //  counts that add up past n_categories are caught before the sum is used
    static const int32_t over[] = {2, 4};
    t_field_t f[T_MAX_FIELDS];
    size_t n = t_onehot_fields (f);
    f[3] = (t_field_t)T_I ("counts", over);
    t_refused (AMAAS_FP64, 2, 4, "onehot", f, n, "add up to more than \"n_categories\" 5");
}
END_TEST

//  --------------------------------------------------------------------------
//  Batches: a run of many rows gives each row what a run of one gives

START_TEST (test_batches)
{
    t_field_t f[T_MAX_FIELDS];
    size_t n = t_onehot_fields (f);
    char err[256];
    model_t *model = t_load (AMAAS_FP64, 2, 4, "onehot", f, n, err, sizeof err);
    ck_assert_msg (model, "%s", err);
    const double values[] = {1, 2, 5, 7, 0, NAN};
    double x[2 * 300];
    double want[4 * 300];
    for (size_t r = 0; r < 300; r++) {
        x[2 * r] = values[r % 6];
        x[2 * r + 1] = values[(r / 6) % 6];
        model_output_t out[1];
        ck_assert (model_run (model, s_ws, AMAAS_FP64, &x[2 * r], 1, out, err, sizeof err) == 0);
        memcpy (&want[4 * r], out[0].data, 4 * sizeof (double));
    }
    t_check (model, x, 300, want, 4);
    t_check (model, x, 7, want, 4);
}
END_TEST

static Suite *s_suite (void)
{
    Suite *suite = suite_create ("model_prep");
    TCase *tc = tcase_create ("prep");
    tcase_add_checked_fixture (tc, t_setup, t_teardown);
    tcase_add_test (tc, test_impute);
    tcase_add_test (tc, test_impute_refused);
    tcase_add_test (tc, test_affine_clip);
    tcase_add_test (tc, test_affine_clip_refused);
    tcase_add_test (tc, test_normalize);
    tcase_add_test (tc, test_poly);
    tcase_add_test (tc, test_poly_refused);
    tcase_add_test (tc, test_onehot);
    tcase_add_test (tc, test_onehot_refused);
    tcase_add_test (tc, test_batches);
    suite_add_tcase (suite, tc);
    return suite;
}

int main (void)
{
    return unit_run (s_suite ());
}
