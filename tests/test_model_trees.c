/*  test_model_trees.c - unit tests of the trees family (worker/model_trees.c):
    the loader's refusals of bad trees and small results computed by hand.

    A test describes a model in a t_model_t (the trees op's fields as plain
    arrays), packs it with msgpack-c into a model file in memory (t_pack),
    optionally with one field damaged, and loads it with model_load_buffer.
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

#define T_NODES 128
#define T_TREES 16

typedef struct {
    bool fp32;    //  datatype FP32 (else FP64)
    bool round32; //  a round32 op first
    bool exp;     //  an exp op after the trees
    uint64_t width, k, n, trees, leaves, leaf_width, sets, in;
    int32_t feature[T_NODES];
    double threshold[T_NODES];
    int32_t left[T_NODES], right[T_NODES];
    uint8_t flags[T_NODES];
    int32_t roots[T_TREES], column[T_TREES];
    double values[T_NODES * 4];
    double base[8];
    uint32_t categories[8 * 8];
    const char *short_key; //  this bin is written one element short
    const char *drop_key;  //  this key is left out
} t_model_t;

static msgpack_sbuffer s_buffers[32];
static size_t s_n_buffers;

static void t_setup (void)
{
    s_n_buffers = 0;
}

static void t_teardown (void)
{
    for (size_t i = 0; i < s_n_buffers; i++)
        msgpack_sbuffer_destroy (&s_buffers[i]);
}

static void t_str (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str (pk, strlen (s));
    msgpack_pack_str_body (pk, s, strlen (s));
}

static void t_bin (msgpack_packer *pk, const t_model_t *m, const char *key, const void *data,
                   size_t count, size_t elem)
{
    if (m->short_key && !strcmp (m->short_key, key) && count)
        count--;
    t_str (pk, key);
    msgpack_pack_bin (pk, count * elem);
    msgpack_pack_bin_body (pk, data, count * elem);
}

static void t_floats (msgpack_packer *pk, const t_model_t *m, const char *key, const double *values,
                      size_t count)
{
    if (m->fp32) {
        float f[T_NODES * 4];
        for (size_t i = 0; i < count; i++)
            f[i] = (float)values[i];
        t_bin (pk, m, key, f, count, sizeof (float));
    } else
        t_bin (pk, m, key, values, count, sizeof (double));
}

static void t_uint (msgpack_packer *pk, const t_model_t *m, const char *key, uint64_t value)
{
    if (m->drop_key && !strcmp (m->drop_key, key)) {
        t_str (pk, "ignored");
        msgpack_pack_nil (pk);
        return;
    }
    t_str (pk, key);
    msgpack_pack_uint64 (pk, value);
}

//  The model file of m; loads it.  NULL with the message in err.
static model_t *t_load (const t_model_t *m, char *err, size_t err_size)
{
    ck_assert_uint_lt (s_n_buffers, 32);
    msgpack_sbuffer *buf = &s_buffers[s_n_buffers++];
    msgpack_sbuffer_init (buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, msgpack_sbuffer_write);
    const char *dtype = m->fp32 ? "FP32" : "FP64";
    msgpack_pack_map (&pk, 8);
    t_str (&pk, "format"), t_str (&pk, "amaas-model");
    t_str (&pk, "format_version"), msgpack_pack_uint64 (&pk, 1);
    t_str (&pk, "name"), t_str (&pk, "t");
    t_str (&pk, "version"), t_str (&pk, "1");
    t_str (&pk, "datatype"), t_str (&pk, dtype);
    t_str (&pk, "input");
    msgpack_pack_map (&pk, 2);
    t_str (&pk, "name"), t_str (&pk, "input");
    t_str (&pk, "width"), msgpack_pack_uint64 (&pk, m->width);
    t_str (&pk, "outputs");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_map (&pk, 3);
    t_str (&pk, "name"), t_str (&pk, "y");
    t_str (&pk, "datatype"), t_str (&pk, dtype);
    t_str (&pk, "shape");
    msgpack_pack_array (&pk, 2);
    msgpack_pack_int64 (&pk, -1);
    msgpack_pack_uint64 (&pk, m->k);
    t_str (&pk, "ops");
    msgpack_pack_array (&pk, 2 + m->round32 + m->exp);
    if (m->round32) {
        msgpack_pack_map (&pk, 1);
        t_str (&pk, "op"), t_str (&pk, "round32");
    }
    bool column = m->leaf_width == 1, sets = m->sets > 0;
    msgpack_pack_map (&pk, 16 + column + sets);
    t_str (&pk, "op"), t_str (&pk, "trees");
    t_uint (&pk, m, "in", m->in ? m->in : m->width);
    t_uint (&pk, m, "out", m->k);
    t_uint (&pk, m, "nodes", m->n);
    t_uint (&pk, m, "trees", m->trees);
    t_uint (&pk, m, "leaves", m->leaves);
    t_uint (&pk, m, "leaf_width", m->leaf_width);
    t_uint (&pk, m, "sets", m->sets);
    size_t n = m->n < T_NODES ? m->n : T_NODES; //  a count the arrays cannot hold: refused first
    t_bin (&pk, m, "feature", m->feature, n, 4);
    t_floats (&pk, m, "threshold", m->threshold, n);
    t_bin (&pk, m, "left", m->left, n, 4);
    t_bin (&pk, m, "right", m->right, n, 4);
    t_bin (&pk, m, "flags", m->flags, n, 1);
    t_bin (&pk, m, "roots", m->roots, m->trees, 4);
    t_floats (&pk, m, "values", m->values, m->leaves * m->leaf_width);
    t_floats (&pk, m, "base", m->base, m->k);
    if (column)
        t_bin (&pk, m, "column", m->column, m->trees, 4);
    if (sets)
        t_bin (&pk, m, "categories", m->categories, 8 * m->sets, 4);
    if (m->exp) {
        msgpack_pack_map (&pk, 1);
        t_str (&pk, "op"), t_str (&pk, "exp");
    }
    msgpack_pack_map (&pk, 2);
    t_str (&pk, "op"), t_str (&pk, "output");
    t_str (&pk, "name"), t_str (&pk, "y");
    return model_load_buffer (buf->data, buf->size, "t.amm", err, err_size);
}

//  Runs m on rows (FP64, width values each); y receives rows * k values as FP64.
static void t_run (const t_model_t *m, const double *x, size_t rows, double *y)
{
    char err[512] = "";
    model_t *model = t_load (m, err, sizeof err);
    ck_assert_msg (model, "load failed: %s", err);
    model_workspace_t *ws = model_workspace_new ();
    ck_assert_ptr_nonnull (ws);
    model_output_t out[8];
    ck_assert_msg (!model_run (model, ws, AMAAS_FP64, x, rows, out, err, sizeof err), "%s", err);
    ck_assert_uint_eq (out[0].size, rows * m->k * (m->fp32 ? 4 : 8));
    for (size_t i = 0; i < rows * m->k; i++)
        y[i] = m->fp32 ? (double)((const float *)out[0].data)[i] : ((const double *)out[0].data)[i];
    model_workspace_destroy (&ws);
    model_destroy (&model);
}

//  Expects m to be refused with a message holding `words`.
static void t_refused (const t_model_t *m, const char *words)
{
    char err[512] = "";
    model_t *model = t_load (m, err, sizeof err);
    ck_assert_msg (!model, "loaded, expected a refusal with \"%s\"", words);
    ck_assert_msg (strstr (err, words), "message \"%s\" lacks \"%s\"", err, words);
}

//  Two trees into k = 2 columns, width 2, base (0.25, -1):
//    tree 0 (column 0): node 0: x0 <= 0.5 ? leaf 1 (1) : node 2
//                       node 2: x1 <= 2 (NaN left) ? leaf 3 (10) : leaf 4 (100)
//    tree 1 (column 1): a single leaf (7)
static t_model_t t_small (bool fp32)
{
    t_model_t m = {
        .fp32 = fp32, .width = 2, .k = 2, .n = 6, .trees = 2, .leaves = 4, .leaf_width = 1};
    int32_t feature[] = {0, -1, 1, -1, -1, -1};
    double threshold[] = {0.5, 0, 2, 0, 0, 0};
    int32_t left[] = {1, 0, 3, 1, 2, 3};
    int32_t right[] = {2, 0, 4, 0, 0, 0};
    uint8_t flags[] = {0, 0, 1, 0, 0, 0};
    memcpy (m.feature, feature, sizeof feature);
    memcpy (m.threshold, threshold, sizeof threshold);
    memcpy (m.left, left, sizeof left);
    memcpy (m.right, right, sizeof right);
    memcpy (m.flags, flags, sizeof flags);
    m.roots[0] = 0, m.roots[1] = 5;
    m.column[0] = 0, m.column[1] = 1;
    m.values[0] = 1, m.values[1] = 10, m.values[2] = 100, m.values[3] = 7;
    m.base[0] = 0.25, m.base[1] = -1;
    return m;
}

START_TEST (test_small_by_hand)
{
    for (int fp32 = 0; fp32 < 2; fp32++) {
        t_model_t m = t_small (fp32);
        double x[] = {0.5, 9, 0.6, 2, 0.6, NAN, NAN, 3, -INFINITY, NAN, 0.6, 2.5};
        double want[] = {1.25, 6, 10.25, 6, 10.25, 6, 100.25, 6, 1.25, 6, 100.25, 6};
        double y[12];
        t_run (&m, x, 6, y);
        for (int i = 0; i < 12; i++)
            ck_assert_msg (y[i] == want[i], "fp32 %d: y[%d] = %g, want %g", fp32, i, y[i], want[i]);
    }
}
END_TEST

//  Many rows (blocks, eight-row groups and remainders) give each row's answer
START_TEST (test_batch_matches_rows)
{
    for (int nan = 0; nan < 2; nan++) {
        t_model_t m = t_small (false);
        enum { ROWS = 45 };
        double x[ROWS * 2], y[ROWS * 2];
        for (int r = 0; r < ROWS; r++) {
            x[2 * r] = (r % 7) * 0.2;
            x[2 * r + 1] = nan && r % 5 == 0 ? NAN : (r % 4);
        }
        t_run (&m, x, ROWS, y);
        for (int r = 0; r < ROWS; r++) {
            double x1 = x[2 * r + 1];
            double want = x[2 * r] <= 0.5 ? 1.25 : isnan (x1) || x1 <= 2 ? 10.25 : 100.25;
            ck_assert_msg (y[2 * r] == want && y[2 * r + 1] == 6, "row %d: %g, want %g", r,
                           y[2 * r], want);
        }
    }
}
END_TEST

//  A chain deeper than the branch-free walk takes (S_STEPS_MAX, 32), and the
//  same chain cut to depth 20, walked branch-free: x0 <= i ? leaf i : next
START_TEST (test_deep_chain)
{
    for (int depth = 20; depth <= 40; depth += 20) {
        t_model_t m = {.width = 1,
                       .k = 1,
                       .n = 2 * depth + 1,
                       .trees = 1,
                       .leaves = depth + 1,
                       .leaf_width = 1};
        for (int i = 0; i < depth; i++) {
            m.feature[2 * i] = 0;
            m.threshold[2 * i] = i;
            m.left[2 * i] = 2 * i + 1;
            m.right[2 * i] = 2 * i + 2;
            m.feature[2 * i + 1] = -1;
            m.left[2 * i + 1] = i;
            m.values[i] = 100 + i;
        }
        m.feature[2 * depth] = -1;
        m.left[2 * depth] = depth;
        m.values[depth] = -1;
        double x[] = {-5, 0, 0.5, 13, 19, depth - 1.5, depth - 0.5, 1e9};
        double want[] = {100, 100, 101, 113, 119, 100 + depth - 1, -1, -1};
        double y[8];
        t_run (&m, x, 8, y);
        for (int i = 0; i < 8; i++)
            ck_assert_msg (y[i] == want[i], "depth %d: y[%d] = %g, want %g", depth, i, y[i],
                           want[i]);
    }
}
END_TEST

//  A categorical split: categories 1 and 3 go left; NaN and x < 0 as missing
START_TEST (test_categorical)
{
    for (int missing_left = 0; missing_left < 2; missing_left++) {
        t_model_t m = {
            .width = 1, .k = 1, .n = 3, .trees = 1, .leaves = 2, .leaf_width = 1, .sets = 1};
        int32_t feature[] = {0, -1, -1}, left[] = {1, 0, 1}, right[] = {2, 0, 0};
        memcpy (m.feature, feature, sizeof feature);
        memcpy (m.left, left, sizeof left);
        memcpy (m.right, right, sizeof right);
        m.flags[0] = 2 | (uint8_t)missing_left;
        m.categories[0] = (1u << 1) | (1u << 3);
        m.values[0] = 1, m.values[1] = 2;
        double x[] = {1, 3.9, 2, -1, NAN, 257, 1e10, INFINITY, 0};
        double miss = missing_left ? 1 : 2;
        double want[] = {1, 1, 2, miss, miss, 1, 2, 2, 2};
        double y[9];
        t_run (&m, x, 9, y);
        for (int i = 0; i < 9; i++)
            ck_assert_msg (y[i] == want[i], "missing_left %d: y[%d] = %g, want %g", missing_left, i,
                           y[i], want[i]);
    }
}
END_TEST

//  Vector leaves (a forest's class probabilities), round32 and exp
START_TEST (test_vector_leaves_round32_exp)
{
    t_model_t m = {.width = 1,
                   .k = 2,
                   .n = 4,
                   .trees = 2,
                   .leaves = 3,
                   .leaf_width = 2,
                   .round32 = true,
                   .exp = true};
    double t = (double)0.1f;
    int32_t feature[] = {0, -1, -1, -1}, left[] = {1, 0, 1, 2}, right[] = {2, 0, 0, 0};
    memcpy (m.feature, feature, sizeof feature);
    memcpy (m.left, left, sizeof left);
    memcpy (m.right, right, sizeof right);
    m.threshold[0] = t;
    m.roots[0] = 0, m.roots[1] = 3;
    double values[] = {1, 0, 0, 1, 0.5, 0.5};
    memcpy (m.values, values, sizeof values);
    //  t + 1e-12 > t, but rounds to t in float32: left
    double x[] = {t + 1e-12, 0.2};
    double y[4];
    t_run (&m, x, 2, y);
    ck_assert (y[0] == exp (1.5) && y[1] == exp (0.5));
    ck_assert (y[2] == exp (0.5) && y[3] == exp (1.5));
}
END_TEST

START_TEST (test_refusals)
{
    t_model_t m;
#define T_BAD(words, ...)                                                                          \
    do {                                                                                           \
        m = t_small (false);                                                                       \
        __VA_ARGS__;                                                                               \
        t_refused (&m, words);                                                                     \
    } while (0)
    T_BAD ("\"feature\" holds 20 bytes", m.short_key = "feature");
    T_BAD ("\"threshold\" holds 40 bytes", m.short_key = "threshold");
    T_BAD ("\"values\" holds", m.short_key = "values");
    T_BAD ("\"column\" holds", m.short_key = "column");
    T_BAD ("\"base\" holds", m.short_key = "base");
    T_BAD ("\"flags\" holds", m.short_key = "flags");
    T_BAD ("missing key \"leaves\"", m.drop_key = "leaves");
    T_BAD ("feature 2 is not -1", m.feature[2] = 2);
    T_BAD ("feature -3 is not -1", m.feature[0] = -3);
    T_BAD ("child 0 is not after it", m.left[0] = 0);
    T_BAD ("child 6 is not after it", m.right[2] = 6);
    T_BAD ("child -1 is not after it", m.right[0] = -1);
    T_BAD ("more than one parent", m.right[2] = 3);
    T_BAD ("root 6 is not in", m.roots[1] = 6);
    T_BAD ("root 2 is also a child", m.roots[1] = 2);
    T_BAD ("node 5 belongs to no tree", m.trees = 1);
    T_BAD ("column 2 is not in", m.column[1] = 2);
    T_BAD ("leaf value 4 is not in", m.left[5] = 4);
    T_BAD ("flags 4 has unknown bits", m.flags[2] = 4);
    T_BAD ("1 categorical nodes, \"sets\" is 0", m.flags[0] = 2);
    T_BAD ("\"leaf_width\" is 3", m.leaf_width = 3);
    T_BAD ("7 trees and 4 leaves need more", m.trees = 7);
    T_BAD ("\"in\" is 3", m.in = 3);
    T_BAD ("\"nodes\" is 268435456, expected 1..268435455", m.n = 1u << 28);
    T_BAD ("\"sets\" is 7, more than", m.sets = 7);
    //  A tree that loops back (child before parent) and a diamond (shared child)
    T_BAD ("is not after it", m.left[2] = 1);
    T_BAD ("node 3 has more than one parent", m.feature[1] = 0, m.left[1] = 3, m.right[1] = 4);
#undef T_BAD
}
END_TEST

int main (void)
{
    Suite *suite = suite_create ("model_trees");
    TCase *tc = tcase_create ("trees");
    tcase_add_checked_fixture (tc, t_setup, t_teardown);
    tcase_add_test (tc, test_small_by_hand);
    tcase_add_test (tc, test_batch_matches_rows);
    tcase_add_test (tc, test_deep_chain);
    tcase_add_test (tc, test_categorical);
    tcase_add_test (tc, test_vector_leaves_round32_exp);
    tcase_add_test (tc, test_refusals);
    suite_add_tcase (suite, tc);
    return unit_run (suite);
}
