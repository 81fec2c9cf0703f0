/*  test_model_svm.c - unit tests of the svm family (worker/model_svm.c).

    Each test packs a small model file with msgpack-c's packer: an input of
    a few columns, one svm op, an output.  The kernels, votes, one-vs-rest
    values and probabilities are checked against values computed by hand,
    and the loader's refusals (bad kernel names, sizes that do not match,
    class counts that do not fit the width, NaN support vectors) against
    its messages.
*/
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "model.h"
#include "unit.h"

//  One field of an op: a key and how to pack its value
typedef enum { T_STR, T_NUM, T_UINT, T_BIN, T_END } t_kind_t;
typedef struct {
    t_kind_t kind;
    const char *key;
    const char *str;   //  T_STR
    double num;        //  T_NUM
    uint64_t uint;     //  T_UINT
    const double *bin; //  T_BIN: values, written as FP64
    size_t count;      //  T_BIN: values
} t_field_t;

#define T_S(k, v)                                                                                  \
    {                                                                                              \
        T_STR, k, v, 0, 0, NULL, 0                                                                 \
    }
#define T_N(k, v)                                                                                  \
    {                                                                                              \
        T_NUM, k, NULL, v, 0, NULL, 0                                                              \
    }
#define T_U(k, v)                                                                                  \
    {                                                                                              \
        T_UINT, k, NULL, 0, v, NULL, 0                                                             \
    }
#define T_B(k, v, n)                                                                               \
    {                                                                                              \
        T_BIN, k, NULL, 0, 0, v, n                                                                 \
    }
#define T_E                                                                                        \
    {                                                                                              \
        T_END, NULL, NULL, 0, 0, NULL, 0                                                           \
    }

static void t_str (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body (pk, s, strlen (s));
}

//  A model: input of `width` columns, the op `name` with fields, then an
//  output "y" of out_width columns.  Returns the model or NULL with err.
static model_t *t_model (size_t width, const char *name, const t_field_t *fields, size_t out_width,
                         char *err, size_t err_size)
{
    static msgpack_sbuffer buffer;
    msgpack_sbuffer_destroy (&buffer);
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 8);
    t_str (&pk, "format");
    t_str (&pk, "amaas-model");
    t_str (&pk, "format_version");
    msgpack_pack_uint64 (&pk, 1);
    t_str (&pk, "name");
    t_str (&pk, "svm");
    t_str (&pk, "version");
    t_str (&pk, "1");
    t_str (&pk, "datatype");
    t_str (&pk, "FP64");
    t_str (&pk, "input");
    msgpack_pack_map (&pk, 2);
    t_str (&pk, "name");
    t_str (&pk, "input");
    t_str (&pk, "width");
    msgpack_pack_uint64 (&pk, width);
    t_str (&pk, "outputs");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_map (&pk, 3);
    t_str (&pk, "name");
    t_str (&pk, "y");
    t_str (&pk, "datatype");
    t_str (&pk, "FP64");
    t_str (&pk, "shape");
    msgpack_pack_array (&pk, 2);
    msgpack_pack_int64 (&pk, -1);
    msgpack_pack_uint64 (&pk, out_width);
    t_str (&pk, "ops");
    msgpack_pack_array (&pk, 2);
    size_t n = 0;
    while (fields[n].kind != T_END)
        n++;
    msgpack_pack_map (&pk, n + 1);
    t_str (&pk, "op");
    t_str (&pk, name);
    for (size_t i = 0; i < n; i++) {
        t_str (&pk, fields[i].key);
        switch (fields[i].kind) {
        case T_STR: t_str (&pk, fields[i].str); break;
        case T_NUM: msgpack_pack_double (&pk, fields[i].num); break;
        case T_UINT: msgpack_pack_uint64 (&pk, fields[i].uint); break;
        default:
            msgpack_pack_bin_with_body (&pk, fields[i].bin, fields[i].count * sizeof (double));
            break;
        }
    }
    msgpack_pack_map (&pk, 2);
    t_str (&pk, "op");
    t_str (&pk, "output");
    t_str (&pk, "name");
    t_str (&pk, "y");
    return model_load_buffer (buffer.data, buffer.size, "svm.amm", err, err_size);
}

//  Runs the model on rows x [rows][width]; y receives the output
static void t_run (model_t *model, const double *x, size_t rows, double *y, size_t count)
{
    model_workspace_t *ws = model_workspace_new ();
    model_output_t out[8];
    char err[256];
    ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, x, rows, out, err, sizeof err), 0);
    ck_assert_uint_eq (out[0].size, count * sizeof (double));
    memcpy (y, out[0].data, count * sizeof (double));
    model_workspace_destroy (&ws);
}

static void t_close (double got, double want)
{
    ck_assert_msg (fabs (got - want) <= 1e-14 * (1 + fabs (want)), "got %.17g, want %.17g", got,
                   want);
}

static const double s_sv[] = {0, 0, 1, 1, 1, 2};

START_TEST (test_kernels)
{
    char err[256];
    const double x[] = {1, 0, 2, 2};
    double y[6];
    //  rbf: exp (-gamma |x - sv|^2)
    t_field_t rbf[] = {T_S ("kernel", "rbf"),
                       T_N ("gamma", 0.5),
                       T_N ("coef0", 0),
                       T_U ("degree", 3),
                       T_U ("count", 3),
                       T_B ("vectors", s_sv, 6),
                       T_E};
    model_t *m = t_model (2, "svm_kernel", rbf, 3, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, x, 2, y, 6);
    t_close (y[0], exp (-0.5));
    t_close (y[1], exp (-0.5));
    t_close (y[2], exp (-2.0));
    t_close (y[3], exp (-4.0));
    t_close (y[4], exp (-1.0));
    t_close (y[5], exp (-0.5));
    model_destroy (&m);
    //  poly: (gamma x.sv + coef0)^degree
    t_field_t poly[] = {T_S ("kernel", "poly"),
                        T_N ("gamma", 2),
                        T_N ("coef0", 1),
                        T_U ("degree", 3),
                        T_U ("count", 3),
                        T_B ("vectors", s_sv, 6),
                        T_E};
    m = t_model (2, "svm_kernel", poly, 3, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, x, 2, y, 6);
    t_close (y[0], 1);
    t_close (y[1], 27);
    t_close (y[2], 27);
    t_close (y[3], 1);
    t_close (y[4], 9 * 9 * 9);
    t_close (y[5], 13 * 13 * 13);
    model_destroy (&m);
    //  linear and sigmoid
    t_field_t lin[] = {T_S ("kernel", "linear"),
                       T_N ("gamma", 2),
                       T_N ("coef0", 1),
                       T_U ("degree", 3),
                       T_U ("count", 3),
                       T_B ("vectors", s_sv, 6),
                       T_E};
    m = t_model (2, "svm_kernel", lin, 3, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, x, 2, y, 6);
    t_close (y[4], 4);
    t_close (y[5], 6);
    model_destroy (&m);
    t_field_t sig[] = {T_S ("kernel", "sigmoid"),
                       T_N ("gamma", 0.5),
                       T_N ("coef0", -1),
                       T_U ("degree", 3),
                       T_U ("count", 3),
                       T_B ("vectors", s_sv, 6),
                       T_E};
    m = t_model (2, "svm_kernel", sig, 3, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, x, 2, y, 6);
    t_close (y[5], tanh (0.5 * 6 - 1));
    model_destroy (&m);
}
END_TEST

//  rbf far from the origin: centring keeps close pairs exact
START_TEST (test_rbf_far_from_origin)
{
    char err[256];
    const double sv[] = {1e6, 1e6 + 1, 1e6 + 0.5, 1e6};
    const double x[] = {1e6 + 1e-3, 1e6 + 1};
    double y[2];
    t_field_t rbf[] = {T_S ("kernel", "rbf"),
                       T_N ("gamma", 1),
                       T_N ("coef0", 0),
                       T_U ("degree", 3),
                       T_U ("count", 2),
                       T_B ("vectors", sv, 4),
                       T_E};
    model_t *m = t_model (2, "svm_kernel", rbf, 2, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, x, 1, y, 2);
    double d0 = 1e-3 * 1e-3, d1 = (0.5 - 1e-3) * (0.5 - 1e-3) + 1;
    ck_assert_msg (fabs (y[0] - exp (-d0)) <= 1e-9, "%.17g", y[0]);
    ck_assert_msg (fabs (y[1] - exp (-d1)) <= 1e-9, "%.17g", y[1]);
    model_destroy (&m);
}
END_TEST

START_TEST (test_votes_ovr_proba)
{
    char err[256];
    //  pairs (0,1) (0,2) (1,2) with values 1, -1, 0
    const double x[] = {1, -1, 0};
    double y[3];
    t_field_t k3[] = {T_U ("k", 3), T_E};
    model_t *m = t_model (3, "ovo_votes", k3, 3, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, x, 1, y, 3);
    //  libsvm: > 0 votes for the first, else (0 too) for the second
    t_close (y[0], 1);
    t_close (y[1], 0);
    t_close (y[2], 2);
    model_destroy (&m);
    m = t_model (3, "ovr_decision", k3, 3, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, x, 1, y, 3);
    //  scikit-learn: < 0 votes for the second, else the first; sums 0, -1, 1
    t_close (y[0], 1);
    t_close (y[1], 1 - 1.0 / 6);
    t_close (y[2], 1 + 1.0 / 6);
    model_destroy (&m);
    //  two classes, sigmoid (0 * -1 + 0) = 1/2: coupling stops at once at (1/2, 1/2)
    const double a[] = {-1}, b[] = {0}, zero[] = {0};
    t_field_t k2[] = {T_U ("k", 2), T_B ("prob_a", a, 1), T_B ("prob_b", b, 1), T_E};
    m = t_model (1, "ovo_proba", k2, 2, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, zero, 1, y, 2);
    t_close (y[0], 0.5);
    t_close (y[1], 0.5);
    model_destroy (&m);
    //  three classes: probabilities sum to 1, the favoured class first (the
    //  coupling updates classes in turn, so 1 and 2 need not come out equal)
    const double a3[] = {-2, -2, -2}, b3[] = {0, 0, 0}, d3[] = {3, 3, 0};
    t_field_t p3[] = {T_U ("k", 3), T_B ("prob_a", a3, 3), T_B ("prob_b", b3, 3), T_E};
    m = t_model (3, "ovo_proba", p3, 3, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    t_run (m, d3, 1, y, 3);
    ck_assert (fabs (y[0] + y[1] + y[2] - 1) < 1e-12);
    ck_assert (y[0] > y[1] && y[0] > y[2]);
    model_destroy (&m);
}
END_TEST

//  Each op with one bad field: the loader refuses it with a message naming it
START_TEST (test_refusals)
{
    char err[256];
    const double nan_sv[] = {0, NAN};
    const double one[] = {1};
    struct {
        size_t width;
        const char *op;
        t_field_t fields[8];
        const char *words;
    } bad[] = {
        {2,
         "svm_kernel",
         {T_S ("kernel", "gauss"), T_N ("gamma", 1), T_N ("coef0", 0), T_U ("degree", 3),
          T_U ("count", 1), T_B ("vectors", s_sv, 2), T_E},
         "linear, poly, rbf or sigmoid"},
        {2,
         "svm_kernel",
         {T_S ("kernel", "rbf"), T_N ("gamma", 1), T_N ("coef0", 0), T_U ("degree", 3),
          T_U ("count", 2), T_B ("vectors", s_sv, 2), T_E},
         "vectors"},
        {2,
         "svm_kernel",
         {T_S ("kernel", "rbf"), T_N ("gamma", 1), T_N ("coef0", 0), T_U ("degree", 3),
          T_U ("count", 0), T_B ("vectors", s_sv, 0), T_E},
         "count"},
        {2,
         "svm_kernel",
         {T_S ("kernel", "rbf"), T_N ("gamma", 1), T_N ("coef0", 0), T_U ("degree", 3),
          T_U ("count", 1), T_B ("vectors", nan_sv, 2), T_E},
         "NaN"},
        {2,
         "svm_kernel",
         {T_S ("kernel", "poly"), T_N ("gamma", 1), T_N ("coef0", 0), T_U ("degree", 5000),
          T_U ("count", 1), T_B ("vectors", s_sv, 2), T_E},
         "degree"},
        {2,
         "svm_kernel",
         {T_S ("kernel", "rbf"), T_N ("gamma", INFINITY), T_N ("coef0", 0), T_U ("degree", 3),
          T_U ("count", 1), T_B ("vectors", s_sv, 2), T_E},
         "gamma"},
        {2,
         "svm_kernel",
         {T_S ("kernel", "rbf"), T_N ("coef0", 0), T_U ("degree", 3), T_U ("count", 1),
          T_B ("vectors", s_sv, 2), T_E},
         "gamma"},
        {3, "ovo_votes", {T_U ("k", 4), T_E}, "pairs"},
        {1, "ovo_votes", {T_U ("k", 1), T_E}, "\"k\""},
        {3, "ovr_decision", {T_U ("k", 100000), T_E}, "\"k\""},
        {1, "ovo_proba", {T_U ("k", 2), T_B ("prob_a", one, 1), T_E}, "prob_b"},
        {3,
         "ovo_proba",
         {T_U ("k", 3), T_B ("prob_a", one, 1), T_B ("prob_b", one, 1), T_E},
         "prob_a"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        model_t *m = t_model (bad[i].width, bad[i].op, bad[i].fields, 3, err, sizeof err);
        ck_assert_msg (m == NULL, "case %zu accepted", i);
        ck_assert_msg (strstr (err, bad[i].words), "case %zu: %s lacks %s", i, err, bad[i].words);
    }
}
END_TEST

int main (void)
{
    Suite *suite = suite_create ("model_svm");
    TCase *tc = tcase_create ("svm");
    tcase_add_test (tc, test_kernels);
    tcase_add_test (tc, test_rbf_far_from_origin);
    tcase_add_test (tc, test_votes_ovr_proba);
    tcase_add_test (tc, test_refusals);
    suite_add_tcase (suite, tc);
    return unit_run (suite);
}
