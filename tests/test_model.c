/*  test_model.c - unit tests of the model loader and runtime.

    The tests build model files in memory: a network is described in a
    t_net_t (layers with their weights), turned into a tree of msgpack
    objects (t_net_tree), possibly corrupted by editing the tree, and packed
    with msgpack-c's packer (t_pack), which can pad every weight bin to a
    64-byte file offset as the exporter does.

    Results are checked against a naive reference written here: the same
    layers computed in long double with triple-loop GEMM.  Beside each value
    the reference carries a bound m of the rounding error the computation in
    FP32 or FP64 may make (sums of |terms|, propagated op by op); a result
    passes when |got - ref| <= tol * m, tol = 1e-12 for FP64 and 1e-5 for
    FP32, plus the smallest normal number for results that underflow.
*/
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "model.h"
#include "unit.h"

#define T_MAX_LAYERS 32
#define T_CAPACITY 80 //  entries of a map or array built by t_map/t_array

//  --------------------------------------------------------------------------
//  Fixture: a zone for trees and reference arrays, models and buffers to free

static msgpack_zone *s_zone;
static model_t *s_models[64];
static size_t s_n_models;
static void *s_buffers[64];
static size_t s_n_buffers;
static uint64_t s_rng;

static void t_setup (void)
{
    s_zone = msgpack_zone_new (1 << 16);
    s_n_models = s_n_buffers = 0;
    s_rng = 0x9e3779b97f4a7c15ull;
}

static void t_teardown (void)
{
    for (size_t i = 0; i < s_n_models; i++)
        model_destroy (&s_models[i]);
    for (size_t i = 0; i < s_n_buffers; i++)
        free (s_buffers[i]);
    msgpack_zone_free (s_zone);
}

//  Zone memory, 16-byte aligned (long double), freed by the teardown
static void *t_alloc (size_t size)
{
    uint8_t *data = msgpack_zone_malloc (s_zone, size + 16);
    ck_assert_ptr_nonnull (data);
    return data + (16 - (uintptr_t)data % 16) % 16;
}

static uint64_t t_random (void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 0x2545f4914f6cdd1dull;
}

static double t_uniform (double low, double high)
{
    return low + (high - low) * (double)(t_random () >> 11) / 9007199254740992.0;
}

//  --------------------------------------------------------------------------
//  msgpack trees

static msgpack_object t_nil (void)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_NIL};
    return obj;
}

static msgpack_object t_bool (bool value)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_BOOLEAN};
    obj.via.boolean = value;
    return obj;
}

static msgpack_object t_uint (uint64_t value)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    obj.via.u64 = value;
    return obj;
}

static msgpack_object t_int (int64_t value)
{
    if (value >= 0)
        return t_uint ((uint64_t)value);
    msgpack_object obj = {.type = MSGPACK_OBJECT_NEGATIVE_INTEGER};
    obj.via.i64 = value;
    return obj;
}

static msgpack_object t_float (double value)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_FLOAT64};
    obj.via.f64 = value;
    return obj;
}

static msgpack_object t_strn (const char *text, size_t size)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_STR};
    char *copy = t_alloc (size);
    memcpy (copy, text, size);
    obj.via.str.ptr = copy;
    obj.via.str.size = (uint32_t)size;
    return obj;
}

static msgpack_object t_str (const char *text)
{
    return t_strn (text, strlen (text));
}

static msgpack_object t_bin (const void *data, size_t size)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_BIN};
    char *copy = t_alloc (size);
    memcpy (copy, data, size);
    obj.via.bin.ptr = copy;
    obj.via.bin.size = (uint32_t)size;
    return obj;
}

static msgpack_object t_array (size_t capacity)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_ARRAY};
    obj.via.array.ptr = t_alloc (capacity * sizeof (msgpack_object));
    return obj;
}

static msgpack_object t_map (void)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_MAP};
    obj.via.map.ptr = t_alloc (T_CAPACITY * sizeof (msgpack_object_kv));
    return obj;
}

static void t_push (msgpack_object *array, msgpack_object value)
{
    array->via.array.ptr[array->via.array.size++] = value;
}

static void t_put (msgpack_object *map, const char *key, msgpack_object value)
{
    ck_assert_uint_lt (map->via.map.size, T_CAPACITY);
    msgpack_object_kv *kv = &map->via.map.ptr[map->via.map.size++];
    kv->key = t_str (key);
    kv->val = value;
}

//  Value of key in map, or NULL.
static msgpack_object *t_get (msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        msgpack_object *name = &map->via.map.ptr[i].key;
        if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == strlen (key) &&
            memcmp (name->via.str.ptr, key, name->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static void t_set (msgpack_object *map, const char *key, msgpack_object value)
{
    msgpack_object *old = t_get (map, key);
    ck_assert_ptr_nonnull (old);
    *old = value;
}

static void t_del (msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        msgpack_object *name = &map->via.map.ptr[i].key;
        if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == strlen (key) &&
            memcmp (name->via.str.ptr, key, name->via.str.size) == 0) {
            memmove (&map->via.map.ptr[i], &map->via.map.ptr[i + 1],
                     (map->via.map.size - i - 1) * sizeof (msgpack_object_kv));
            map->via.map.size--;
            return;
        }
    }
}

//  Op i of a model tree
static msgpack_object *t_op (msgpack_object *top, size_t i)
{
    msgpack_object *ops = t_get (top, "ops");
    ck_assert_uint_lt (i, ops->via.array.size);
    return &ops->via.array.ptr[i];
}

//  How t_mutate changes a value
typedef enum { T_NIL, T_SWAP, T_OMIT } t_mutation_t;

//  In every map of the tree, replace the value of key by nil, by a value of
//  another type, or remove it.  Returns the number of changes.
static size_t t_mutate (msgpack_object *obj, const char *key, t_mutation_t how)
{
    size_t changes = 0;
    if (obj->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < obj->via.array.size; i++)
            changes += t_mutate (&obj->via.array.ptr[i], key, how);
    if (obj->type != MSGPACK_OBJECT_MAP)
        return changes;
    for (uint32_t i = 0; i < obj->via.map.size; i++)
        changes += t_mutate (&obj->via.map.ptr[i].val, key, how);
    msgpack_object *value;
    while ((value = t_get (obj, key)) != NULL && how == T_OMIT) {
        t_del (obj, key);
        changes++;
    }
    if (value && how == T_NIL) {
        *value = t_nil ();
        changes++;
    } else if (value && how == T_SWAP) {
        switch (value->type) {
        case MSGPACK_OBJECT_STR: *value = t_uint (7); break;
        case MSGPACK_OBJECT_MAP: *value = t_array (1); break;
        case MSGPACK_OBJECT_ARRAY: *value = t_map (); break;
        case MSGPACK_OBJECT_BOOLEAN: *value = t_uint (1); break;
        default: *value = t_str ("7"); break;
        }
        changes++;
    }
    return changes;
}

//  Pack a tree.  With pad, a "pad" bin goes before every bin value of a map
//  so that the bin's data starts at a multiple of 64 bytes.  Returns a
//  malloc'd buffer.
static void t_write (msgpack_packer *pk, msgpack_sbuffer *sb, const msgpack_object *obj, bool pad)
{
    static const char zeros[64];
    if (obj->type == MSGPACK_OBJECT_ARRAY) {
        msgpack_pack_array (pk, obj->via.array.size);
        for (uint32_t i = 0; i < obj->via.array.size; i++)
            t_write (pk, sb, &obj->via.array.ptr[i], pad);
    } else if (obj->type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &obj->via.map;
        uint32_t bins = 0;
        for (uint32_t i = 0; pad && i < map->size; i++)
            bins += map->ptr[i].val.type == MSGPACK_OBJECT_BIN &&
                    map->ptr[i].key.type == MSGPACK_OBJECT_STR;
        msgpack_pack_map (pk, map->size + bins);
        for (uint32_t i = 0; i < map->size; i++) {
            const msgpack_object_kv *kv = &map->ptr[i];
            if (pad && kv->val.type == MSGPACK_OBJECT_BIN && kv->key.type == MSGPACK_OBJECT_STR) {
                size_t key = kv->key.via.str.size;
                size_t bin = kv->val.via.bin.size;
                size_t at = sb->size + 4 + 2 + (key < 32 ? 1 : 2) + key +
                            (bin < 256     ? 2
                             : bin < 65536 ? 3
                                           : 5);
                msgpack_pack_str_with_body (pk, "pad", 3);
                msgpack_pack_bin_with_body (pk, zeros, (64 - at % 64) % 64);
            }
            t_write (pk, sb, &kv->key, pad);
            t_write (pk, sb, &kv->val, pad);
        }
    } else
        msgpack_pack_object (pk, *obj);
}

static uint8_t *t_pack (const msgpack_object *obj, bool pad, size_t *size)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    t_write (&pk, &sb, obj, pad);
    *size = sb.size;
    uint8_t *data = (uint8_t *)msgpack_sbuffer_release (&sb);
    ck_assert_ptr_nonnull (data);
    return data;
}

//  --------------------------------------------------------------------------
//  Networks: the layers of a model and their reference computation

typedef struct {
    const char *op;   //  op name as in the file
    size_t in, out;   //  widths before and after (0: labels)
    double *a, *b;    //  dense: weights [in][out], bias [out]; scale: mean, scale
    const char *name; //  output: name
    bool flatten;     //  output: flatten
    bool strings;     //  argmax: string labels
    int64_t *ints;    //  argmax: in int labels
    char **strs;      //  argmax: in string labels
} t_layer_t;

typedef struct {
    amaas_dtype_t dtype; //  FP32 or FP64
    size_t width;        //  input width
    size_t cur;          //  width after the last layer, 0 after argmax
    bool strings;        //  labels are strings
    size_t n;            //  layers
    t_layer_t layer[T_MAX_LAYERS];
} t_net_t;

static double t_round (const t_net_t *net, double value)
{
    return net->dtype == AMAAS_FP32 ? (double)(float)value : value;
}

static void t_net_init (t_net_t *net, amaas_dtype_t dtype, size_t width)
{
    memset (net, 0, sizeof *net);
    net->dtype = dtype;
    net->width = net->cur = width;
}

static t_layer_t *t_net_add (t_net_t *net, const char *op)
{
    ck_assert_uint_lt (net->n, T_MAX_LAYERS);
    t_layer_t *layer = &net->layer[net->n++];
    layer->op = op;
    layer->in = layer->out = net->cur;
    return layer;
}

static void t_net_dense (t_net_t *net, size_t out)
{
    t_layer_t *layer = t_net_add (net, "dense");
    layer->out = out;
    layer->a = t_alloc (layer->in * out * sizeof (double));
    layer->b = t_alloc (out * sizeof (double));
    double range = 1.5 / sqrt ((double)layer->in);
    for (size_t i = 0; i < layer->in * out; i++)
        layer->a[i] = t_round (net, t_uniform (-range, range));
    for (size_t i = 0; i < out; i++)
        layer->b[i] = t_round (net, t_uniform (-0.5, 0.5));
    net->cur = out;
}

static void t_net_scale (t_net_t *net)
{
    t_layer_t *layer = t_net_add (net, "scale");
    layer->a = t_alloc (layer->in * sizeof (double));
    layer->b = t_alloc (layer->in * sizeof (double));
    for (size_t i = 0; i < layer->in; i++) {
        layer->a[i] = t_round (net, t_uniform (-1, 1));
        layer->b[i] = t_round (net, t_uniform (0.2, 3));
    }
}

static void t_net_fn (t_net_t *net, const char *op)
{
    t_layer_t *layer = t_net_add (net, op);
    if (strcmp (op, "binary") == 0)
        layer->out = net->cur = 2;
}

static void t_net_output (t_net_t *net, const char *name, bool flatten)
{
    t_layer_t *layer = t_net_add (net, "output");
    layer->name = name;
    layer->flatten = flatten;
}

static void t_net_argmax (t_net_t *net, bool strings)
{
    static const char *names[] = {"setosa", "versicolor", "", "virginica", "a longer label"};
    t_layer_t *layer = t_net_add (net, "argmax");
    layer->strings = net->strings = strings;
    layer->ints = t_alloc (layer->in * sizeof (int64_t));
    layer->strs = t_alloc (layer->in * sizeof (char *));
    for (size_t i = 0; i < layer->in; i++) {
        layer->ints[i] = i % 2 ? -(int64_t)(i * 1000) : (int64_t)(i * 7 + 3);
        layer->strs[i] = t_alloc (48);
        snprintf (layer->strs[i], 48, "%s-%zu", names[i % 5], i);
        if (i == 2)
            layer->strs[i][0] = 0; //  an empty label
    }
    layer->out = net->cur = 0;
}

static msgpack_object t_floats (const t_net_t *net, const double *values, size_t count)
{
    size_t elem = net->dtype == AMAAS_FP64 ? 8 : 4;
    uint8_t *data = t_alloc (count * elem);
    for (size_t i = 0; i < count; i++) {
        if (elem == 8)
            memcpy (data + i * 8, &values[i], 8);
        else {
            float value = (float)values[i];
            memcpy (data + i * 4, &value, 4);
        }
    }
    return t_bin (data, count * elem);
}

//  The model file of a network, as a tree
static msgpack_object t_net_tree (const t_net_t *net)
{
    const char *dtype = net->dtype == AMAAS_FP64 ? "FP64" : "FP32";
    msgpack_object top = t_map ();
    t_put (&top, "format", t_str ("amaas-model"));
    t_put (&top, "format_version", t_uint (1));
    t_put (&top, "name", t_str ("test-model_1.0"));
    t_put (&top, "version", t_str ("2.1+b3"));
    t_put (&top, "datatype", t_str (dtype));
    t_put (&top, "source", t_str ("test_model.c"));
    msgpack_object input = t_map ();
    t_put (&input, "name", t_str ("input"));
    t_put (&input, "width", t_uint (net->width));
    t_put (&top, "input", input);
    msgpack_object outputs = t_array (MODEL_MAX_OUTPUTS + 4);
    msgpack_object ops = t_array (T_MAX_LAYERS + 8);
    for (size_t i = 0; i < net->n; i++) {
        const t_layer_t *layer = &net->layer[i];
        msgpack_object op = t_map ();
        t_put (&op, "op", t_str (layer->op));
        if (strcmp (layer->op, "dense") == 0) {
            t_put (&op, "in", t_uint (layer->in));
            t_put (&op, "out", t_uint (layer->out));
            t_put (&op, "weights", t_floats (net, layer->a, layer->in * layer->out));
            t_put (&op, "bias", t_floats (net, layer->b, layer->out));
        } else if (strcmp (layer->op, "scale") == 0) {
            t_put (&op, "width", t_uint (layer->in));
            t_put (&op, "mean", t_floats (net, layer->a, layer->in));
            t_put (&op, "scale", t_floats (net, layer->b, layer->in));
        } else if (strcmp (layer->op, "argmax") == 0) {
            msgpack_object labels = t_array (layer->in);
            for (size_t j = 0; j < layer->in; j++)
                t_push (&labels, layer->strings ? t_str (layer->strs[j]) : t_int (layer->ints[j]));
            t_put (&op, "labels", labels);
        } else if (strcmp (layer->op, "output") == 0) {
            t_put (&op, "name", t_str (layer->name));
            t_put (&op, "flatten", t_bool (layer->flatten));
            msgpack_object output = t_map ();
            t_put (&output, "name", t_str (layer->name));
            t_put (&output, "datatype",
                   t_str (layer->in      ? dtype
                          : net->strings ? "BYTES"
                                         : "INT64"));
            msgpack_object shape = t_array (2);
            t_push (&shape, t_int (-1));
            if (layer->in && !layer->flatten)
                t_push (&shape, t_uint (layer->in));
            t_put (&output, "shape", shape);
            t_push (&outputs, output);
        }
        t_push (&ops, op);
    }
    t_put (&top, "outputs", outputs);
    t_put (&top, "ops", ops);
    return top;
}

//  One output of the reference computation
typedef struct {
    const t_layer_t *layer;  //  the output layer
    size_t width;            //  0: labels
    long double *value;      //  [rows, width]
    long double *bound;      //  error bound of each value, in units of tol
    size_t *index;           //  labels: index of the label of each row
    const t_layer_t *argmax; //  labels: the argmax layer (value and bound are its input)
} t_ref_t;

//  Compute the network on rows of input (already in the model's datatype).
//  Fills ref[0 ..] in output order.
static void t_reference (const t_net_t *net, const double *input, size_t rows, t_ref_t *ref)
{
    size_t w = net->width;
    long double *x = t_alloc (rows * w * sizeof (long double));
    long double *m = t_alloc (rows * w * sizeof (long double));
    size_t *index = NULL;
    const t_layer_t *argmax = NULL;
    size_t outputs = 0;
    for (size_t i = 0; i < rows * w; i++) {
        x[i] = input[i];
        m[i] = 0; //  the input is exact
    }
    for (size_t l = 0; l < net->n; l++) {
        const t_layer_t *layer = &net->layer[l];
        const char *op = layer->op;
        size_t out = layer->out;
        if (strcmp (op, "dense") == 0 || strcmp (op, "binary") == 0) {
            long double *y = t_alloc (rows * out * sizeof (long double));
            long double *my = t_alloc (rows * out * sizeof (long double));
            for (size_t r = 0; r < rows; r++)
                for (size_t j = 0; j < out; j++) {
                    if (op[0] == 'b') {
                        long double p = x[r];
                        y[r * 2 + j] = j ? p : 1 - p;
                        my[r * 2 + j] = (j ? fabsl (p) : 1) + m[r];
                        continue;
                    }
                    long double sum = layer->b[j], bound = fabsl (sum);
                    for (size_t k = 0; k < w; k++) {
                        long double weight = layer->a[k * out + j];
                        sum += x[r * w + k] * weight;
                        bound += (fabsl (x[r * w + k]) + m[r * w + k]) * fabsl (weight);
                    }
                    y[r * out + j] = sum;
                    my[r * out + j] = bound;
                }
            x = y;
            m = my;
            w = out;
        } else if (strcmp (op, "scale") == 0) {
            for (size_t r = 0; r < rows; r++)
                for (size_t j = 0; j < w; j++) {
                    long double *v = &x[r * w + j];
                    long double mean = layer->a[j], scale = layer->b[j];
                    m[r * w + j] = (m[r * w + j] + fabsl (*v) + fabsl (mean)) / fabsl (scale);
                    *v = (*v - mean) / scale;
                }
        } else if (strcmp (op, "relu") == 0 || strcmp (op, "tanh") == 0 ||
                   strcmp (op, "sigmoid") == 0) {
            for (size_t i = 0; i < rows * w; i++) {
                long double v = x[i];
                long double y = op[0] == 'r'   ? (v > 0 ? v : 0)
                                : op[0] == 't' ? tanhl (v)
                                               : 1 / (1 + expl (-v));
                long double slope = op[0] == 's' ? y * (1 - y) : 1;
                x[i] = y;
                m[i] = fabsl (y) + slope * m[i];
            }
        } else if (strcmp (op, "softmax") == 0 || strcmp (op, "normalize") == 0) {
            for (size_t r = 0; r < rows; r++) {
                long double *v = x + r * w, *b = m + r * w;
                long double max = v[0], sum = 0, bound_max = 0, bound_sum = 0;
                for (size_t j = 0; j < w; j++) {
                    max = v[j] > max ? v[j] : max;
                    bound_max = b[j] > bound_max ? b[j] : bound_max;
                    bound_sum += b[j] + fabsl (v[j]);
                }
                for (size_t j = 0; j < w; j++)
                    sum += op[0] == 's' ? expl (v[j] - max) : v[j];
                for (size_t j = 0; j < w; j++) {
                    if (op[0] == 's') {
                        long double y = expl (v[j] - max) / sum;
                        b[j] = y * (1 + fabsl (v[j] - max) + 2 * bound_max);
                        v[j] = y;
                    } else {
                        long double y = v[j] / sum;
                        b[j] = fabsl (y) * (1 + bound_sum / fabsl (sum)) + b[j] / fabsl (sum);
                        v[j] = y;
                    }
                }
            }
        } else if (strcmp (op, "argmax") == 0) {
            index = t_alloc (rows * sizeof (size_t));
            for (size_t r = 0; r < rows; r++) {
                index[r] = 0;
                for (size_t j = 1; j < w; j++)
                    if (x[r * w + j] > x[r * w + index[r]])
                        index[r] = j;
            }
            argmax = layer;
        } else if (strcmp (op, "output") == 0) {
            t_ref_t *o = &ref[outputs++];
            o->layer = layer;
            o->width = layer->in;
            o->value = x;
            o->bound = m;
            o->index = index;
            o->argmax = argmax;
            if (argmax)
                o->width = 0;
            if (layer->in) { //  later ops work in place: keep a copy
                o->value = t_alloc (rows * w * sizeof (long double));
                o->bound = t_alloc (rows * w * sizeof (long double));
                memcpy (o->value, x, rows * w * sizeof (long double));
                memcpy (o->bound, m, rows * w * sizeof (long double));
            }
        }
    }
}

//  Check one numeric value against the reference.
static void t_check_value (const t_net_t *net, double got, long double want, long double bound,
                           const char *what, size_t row, size_t col)
{
    long double tol = net->dtype == AMAAS_FP64 ? 1e-12L : 1e-5L;
    long double floor = net->dtype == AMAAS_FP64 ? DBL_MIN : FLT_MIN;
    long double diff = fabsl ((long double)got - want);
    ck_assert_msg (diff <= tol * bound + floor,
                   "%s [%zu, %zu]: got %.17g, reference %.17Lg (error bound %.3Lg x tol)", what,
                   row, col, got, want, bound);
}

//  Index of the label a run returned for a row, checked against the label
//  the reference chose (or one that ties with it within the error bound).
static void t_check_label (const t_net_t *net, const t_ref_t *ref, size_t row, size_t got)
{
    size_t want = ref->index[row];
    if (got == want)
        return;
    //  a near-tie: the reference values of both must agree within the bound
    size_t w = ref->argmax->in;
    ck_assert_uint_lt (got, w);
    long double tol = net->dtype == AMAAS_FP64 ? 1e-12L : 1e-5L;
    const long double *value = ref->value + row * w, *bound = ref->bound + row * w;
    ck_assert_msg (fabsl (value[got] - value[want]) <= tol * (bound[got] + bound[want]),
                   "%s row %zu: label %zu (%.17Lg), reference %zu (%.17Lg)", ref->layer->name, row,
                   got, value[got], want, value[want]);
}

//  Check the outputs of a run against the reference.
static void t_check_outputs (const t_net_t *net, const model_t *model, size_t rows,
                             const model_output_t *outputs, const t_ref_t *ref)
{
    size_t elem = net->dtype == AMAAS_FP64 ? 8 : 4;
    for (size_t o = 0; o < model_output_count (model); o++) {
        const model_output_t *out = &outputs[o];
        const t_ref_t *want = &ref[o];
        ck_assert_str_eq (out->name, want->layer->name);
        ck_assert_int_eq (out->shape[0], (int64_t)rows);
        if (want->width) {
            ck_assert_int_eq (out->datatype, net->dtype);
            ck_assert_int_eq (out->ndim, want->layer->flatten ? 1 : 2);
            if (!want->layer->flatten)
                ck_assert_int_eq (out->shape[1], (int64_t)want->width);
            ck_assert_uint_eq (out->size, rows * want->width * elem);
            for (size_t r = 0; r < rows; r++)
                for (size_t j = 0; j < want->width; j++) {
                    size_t i = r * want->width + j;
                    double got;
                    if (elem == 8)
                        memcpy (&got, (const uint8_t *)out->data + i * 8, 8);
                    else {
                        float value;
                        memcpy (&value, (const uint8_t *)out->data + i * 4, 4);
                        got = value;
                    }
                    t_check_value (net, got, want->value[i], want->bound[i], out->name, r, j);
                }
            continue;
        }
        //  labels
        const t_layer_t *argmax = want->argmax;
        ck_assert_int_eq (out->ndim, 1);
        if (!argmax->strings) {
            ck_assert_int_eq (out->datatype, AMAAS_INT64);
            ck_assert_uint_eq (out->size, rows * 8);
            for (size_t r = 0; r < rows; r++) {
                int64_t label;
                memcpy (&label, (const uint8_t *)out->data + r * 8, 8);
                size_t j;
                for (j = 0; j < argmax->in && argmax->ints[j] != label; j++)
                    ;
                ck_assert_msg (j < argmax->in, "row %zu: label %lld is not a label", r,
                               (long long)label);
                t_check_label (net, want, r, j);
            }
            continue;
        }
        ck_assert_int_eq (out->datatype, AMAAS_BYTES);
        const uint8_t *data = out->data;
        size_t pos = 0;
        for (size_t r = 0; r < rows; r++) {
            ck_assert_uint_le (pos + 4, out->size);
            uint32_t len = data[pos] | (uint32_t)data[pos + 1] << 8 |
                           (uint32_t)data[pos + 2] << 16 | (uint32_t)data[pos + 3] << 24;
            pos += 4;
            ck_assert_uint_le (pos + len, out->size);
            size_t j;
            for (j = 0; j < argmax->in; j++)
                if (strlen (argmax->strs[j]) == len &&
                    memcmp (argmax->strs[j], data + pos, len) == 0)
                    break;
            ck_assert_msg (j < argmax->in, "row %zu: \"%.*s\" is not a label", r, (int)len,
                           (const char *)data + pos);
            t_check_label (net, want, r, j);
            pos += len;
        }
        ck_assert_uint_eq (pos, out->size);
    }
}

//  --------------------------------------------------------------------------
//  Loading

//  Pack a tree into a buffer at `shift` bytes past a 64-byte boundary and
//  load it.  The model and the buffer are freed by the teardown.  Returns
//  the model, or NULL with err set.
static model_t *t_load_tree (const msgpack_object *top, bool pad, size_t shift, char *err,
                             size_t err_size)
{
    size_t size;
    uint8_t *packed = t_pack (top, pad, &size);
    void *buffer = NULL;
    ck_assert_int_eq (posix_memalign (&buffer, 64, shift + size), 0);
    memcpy ((uint8_t *)buffer + shift, packed, size);
    free (packed);
    ck_assert_uint_lt (s_n_buffers, 64);
    s_buffers[s_n_buffers++] = buffer;
    err[0] = 0;
    model_t *model = model_load_buffer ((uint8_t *)buffer + shift, size, "test.amm", err, err_size);
    if (model) {
        ck_assert_uint_lt (s_n_models, 64);
        s_models[s_n_models++] = model;
        ck_assert_str_eq (err, "");
    }
    return model;
}

static model_t *t_load_net (const t_net_t *net)
{
    char err[512];
    msgpack_object top = t_net_tree (net);
    model_t *model = t_load_tree (&top, true, 0, err, sizeof err);
    ck_assert_msg (model != NULL, "valid model refused: %s", err);
    ck_assert_uint_eq (model_weight_bytes_copied (model), 0);
    return model;
}

//  The tree must be refused with a message that starts with "bad.amm: " and
//  contains `expect`.
static void t_refused (const msgpack_object *top, const char *expect)
{
    size_t size;
    uint8_t *packed = t_pack (top, true, &size);
    char err[512] = "";
    model_t *model = model_load_buffer (packed, size, "bad.amm", err, sizeof err);
    bool loaded = model != NULL;
    model_destroy (&model);
    free (packed);
    ck_assert_msg (!loaded, "a model that should be refused (\"%s\") was loaded", expect);
    ck_assert_msg (strncmp (err, "bad.amm: ", 9) == 0, "error \"%s\" does not name the file", err);
    ck_assert_msg (strstr (err, expect) != NULL, "error \"%s\" does not say \"%s\"", err, expect);
}

static void t_accepted (const msgpack_object *top)
{
    size_t size;
    uint8_t *packed = t_pack (top, false, &size);
    char err[512] = "";
    model_t *model = model_load_buffer (packed, size, "good.amm", err, sizeof err);
    ck_assert_msg (model != NULL, "valid model refused: %s", err);
    model_destroy (&model);
    ck_assert_ptr_null (model);
    free (packed);
}

//  --------------------------------------------------------------------------
//  Running

//  Random input for a network: rows x width doubles, representable in the
//  model datatype, with some extreme values when `extreme`.
static double *t_input (const t_net_t *net, size_t rows, double low, double high, bool extreme)
{
    static const double extremes[] = {-800, 800, -745, -30, 30, 0, -1e-3, 1e3, -80, 80};
    double *input = t_alloc (rows * net->width * sizeof (double));
    for (size_t i = 0; i < rows * net->width; i++) {
        input[i] = t_round (net, t_uniform (low, high));
        if (extreme && t_random () % 4 == 0)
            input[i] = extremes[t_random () % 10];
    }
    return input;
}

//  Run the model on input given as in_dtype at an unaligned address, and
//  check against the reference.  input values must be exact in in_dtype.
static void t_run_check (const t_net_t *net, const model_t *model, model_workspace_t *ws,
                         const double *input, size_t rows, amaas_dtype_t in_dtype)
{
    size_t count = rows * net->width;
    size_t in_size = in_dtype == AMAAS_FP64 || in_dtype == AMAAS_INT64 ? 8 : 4;
    uint8_t *raw = t_alloc (count * in_size + 1);
    uint8_t *data = raw + ((uintptr_t)raw % 2 ? 0 : 1); //  odd address
    double *exact = t_alloc (count * sizeof (double));
    for (size_t i = 0; i < count; i++) {
        if (in_dtype == AMAAS_FP64)
            memcpy (data + i * 8, &input[i], 8);
        else if (in_dtype == AMAAS_FP32) {
            float v = (float)input[i];
            memcpy (data + i * 4, &v, 4);
        } else if (in_dtype == AMAAS_INT32) {
            int32_t v = (int32_t)input[i];
            memcpy (data + i * 4, &v, 4);
        } else {
            int64_t v = (int64_t)input[i];
            memcpy (data + i * 8, &v, 8);
        }
        exact[i] = input[i];
    }
    model_output_t outputs[MODEL_MAX_OUTPUTS];
    memset (outputs, 0, sizeof outputs);
    char err[256] = "";
    int rc = model_run (model, ws, in_dtype, data, rows, outputs, err, sizeof err);
    ck_assert_msg (rc == 0, "model_run failed: %s", err);
    t_ref_t ref[MODEL_MAX_OUTPUTS];
    memset (ref, 0, sizeof ref);
    t_reference (net, exact, rows, ref);
    t_check_outputs (net, model, rows, outputs, ref);
}

static const size_t s_batches[] = {1, 2, 7, 64, 257};
#define T_BATCHES (sizeof s_batches / sizeof s_batches[0])

//  --------------------------------------------------------------------------
//  Each op against the reference, FP32 and FP64, several batch sizes

static const char *s_single_ops[] = {"scale",  "dense",   "identity",  "relu",
                                     "tanh",   "sigmoid", "softmax",   "normalize",
                                     "binary", "argmax",  "argmax-str"};
#define T_SINGLE_OPS (sizeof s_single_ops / sizeof s_single_ops[0])

START_TEST (test_each_op)
{
    const char *op = s_single_ops[_i / 2];
    amaas_dtype_t dtype = _i % 2 ? AMAAS_FP64 : AMAAS_FP32;
    model_workspace_t *ws = model_workspace_new ();
    ck_assert_ptr_nonnull (ws);
    for (size_t width = 1; width <= 33; width += 8) {
        t_net_t net;
        bool binary = strcmp (op, "binary") == 0;
        t_net_init (&net, dtype, binary ? 1 : width);
        if (strcmp (op, "dense") == 0)
            t_net_dense (&net, width + 3);
        else if (strcmp (op, "scale") == 0)
            t_net_scale (&net);
        else if (strncmp (op, "argmax", 6) == 0)
            t_net_argmax (&net, op[6] == '-');
        else
            t_net_fn (&net, op);
        t_net_output (&net, "result", false);
        model_t *model = t_load_net (&net);
        ck_assert_uint_eq (model_op_count (model), 2);
        ck_assert_str_eq (model_op (model, 0)->name, strncmp (op, "argmax", 6) ? op : "argmax");
        for (size_t b = 0; b < T_BATCHES; b++) {
            size_t rows = s_batches[b];
            double *input;
            if (strcmp (op, "normalize") == 0 || binary)
                input = t_input (&net, rows, 0.05, 1, false);
            else if (strcmp (op, "sigmoid") == 0 || strcmp (op, "softmax") == 0 ||
                     strcmp (op, "tanh") == 0)
                input = t_input (&net, rows, -5, 5, true);
            else
                input = t_input (&net, rows, -3, 3, false);
            t_run_check (&net, model, ws, input, rows, dtype);
        }
    }
    model_workspace_destroy (&ws);
    ck_assert_ptr_null (ws);
}
END_TEST

//  Sigmoid in FP64 at 1e-12 relative over its whole range, tiny values too
START_TEST (test_sigmoid_range)
{
    t_net_t net;
    t_net_init (&net, AMAAS_FP64, 1);
    t_net_fn (&net, "sigmoid");
    t_net_output (&net, "p", true);
    model_t *model = t_load_net (&net);
    model_workspace_t *ws = model_workspace_new ();
    size_t rows = 3001;
    double *input = t_alloc (rows * sizeof (double));
    for (size_t r = 0; r < rows; r++)
        input[r] = -740 + 0.5 * (double)r - 1e-3 * (double)(r % 7);
    model_output_t outputs[MODEL_MAX_OUTPUTS];
    char err[256];
    ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, input, rows, outputs, err, sizeof err), 0);
    ck_assert_int_eq (outputs[0].ndim, 1);
    const double *p = outputs[0].data;
    for (size_t r = 0; r < rows; r++) {
        long double want = 1 / (1 + expl (-(long double)input[r]));
        //  relative 1e-12, to within a step of the subnormals below exp (-708)
        ck_assert_msg (fabsl (p[r] - want) <= 1e-12L * want + DBL_TRUE_MIN,
                       "sigmoid (%.17g) = %.17g, want %.17Lg", input[r], p[r], want);
        ck_assert (p[r] > 0 && p[r] <= 1);
    }
    model_workspace_destroy (&ws);
}
END_TEST

//  --------------------------------------------------------------------------
//  Whole models as the exporter writes them

typedef enum {
    T_LINEAR,       //  LinearRegression: dense, flat output
    T_LINEAR_MULTI, //  multi-target regression with a scaler
    T_BINARY,       //  LogisticRegression, 2 classes
    T_MULTINOMIAL,  //  LogisticRegression multinomial, with a scaler
    T_OVR,          //  one-vs-rest: sigmoid then normalize
    T_MLP_RELU,     //  MLPClassifier relu
    T_MLP_TANH,     //  MLPClassifier tanh
    T_MLP_SIGMOID,  //  MLPRegressor logistic
    T_KINDS
} t_kind_t;

static void t_net_kind (t_net_t *net, t_kind_t kind, amaas_dtype_t dtype, bool strings)
{
    size_t width = 4 + (size_t)kind * 3;
    t_net_init (net, dtype, width);
    switch (kind) {
    case T_LINEAR:
        t_net_dense (net, 1);
        t_net_output (net, "predict", true);
        break;
    case T_LINEAR_MULTI:
        t_net_scale (net);
        t_net_dense (net, 3);
        t_net_fn (net, "identity");
        t_net_output (net, "predict", false);
        break;
    case T_BINARY:
        t_net_dense (net, 1);
        t_net_fn (net, "sigmoid");
        t_net_fn (net, "binary");
        t_net_output (net, "probabilities", false);
        t_net_argmax (net, strings);
        t_net_output (net, "label", true);
        break;
    case T_MULTINOMIAL:
        t_net_scale (net);
        t_net_dense (net, 5);
        t_net_output (net, "decision", false);
        t_net_fn (net, "softmax");
        t_net_output (net, "probabilities", false);
        t_net_argmax (net, strings);
        t_net_output (net, "label", false);
        break;
    case T_OVR:
        t_net_dense (net, 4);
        t_net_fn (net, "sigmoid");
        t_net_fn (net, "normalize");
        t_net_output (net, "probabilities", false);
        t_net_argmax (net, strings);
        t_net_output (net, "label", false);
        break;
    case T_MLP_RELU:
    case T_MLP_TANH:
        t_net_scale (net);
        t_net_dense (net, 32);
        t_net_fn (net, kind == T_MLP_RELU ? "relu" : "tanh");
        t_net_dense (net, 16);
        t_net_fn (net, kind == T_MLP_RELU ? "relu" : "tanh");
        t_net_dense (net, 3);
        t_net_fn (net, "softmax");
        t_net_output (net, "probabilities", false);
        t_net_argmax (net, strings);
        t_net_output (net, "label", false);
        t_net_output (net, "label2", true);
        break;
    default:
        t_net_dense (net, 20);
        t_net_fn (net, "sigmoid");
        t_net_dense (net, 1);
        t_net_output (net, "predict", true);
        break;
    }
}

START_TEST (test_models)
{
    t_kind_t kind = (t_kind_t)(_i / 4);
    amaas_dtype_t dtype = _i % 2 ? AMAAS_FP64 : AMAAS_FP32;
    bool strings = (_i / 2) % 2;
    t_net_t net;
    t_net_kind (&net, kind, dtype, strings);
    model_t *model = t_load_net (&net);

    ck_assert_str_eq (model_name (model), "test-model_1.0");
    ck_assert_str_eq (model_version (model), "2.1+b3");
    ck_assert_str_eq (model_input_name (model), "input");
    ck_assert_int_eq (model_dtype (model), dtype);
    ck_assert_uint_eq (model_input_width (model), net.width);
    ck_assert_uint_eq (model_op_count (model), net.n);
    size_t o = 0;
    for (size_t l = 0; l < net.n; l++) {
        const t_layer_t *layer = &net.layer[l];
        const model_op_t *op = model_op (model, l);
        ck_assert_str_eq (op->name, layer->op);
        ck_assert_uint_eq (op->in_width, layer->in);
        ck_assert_uint_eq (op->out_width, layer->out);
        if (strcmp (layer->op, "output"))
            continue;
        ck_assert_str_eq (model_output_name (model, o), layer->name);
        ck_assert_int_eq (model_output_dtype (model, o), layer->in ? dtype
                                                         : strings ? AMAAS_BYTES
                                                                   : AMAAS_INT64);
        ck_assert_uint_eq (model_output_width (model, o), layer->flatten ? 0 : layer->in);
        o++;
    }
    ck_assert_uint_eq (model_output_count (model), o);
    ck_assert_ptr_null (model_output_name (model, o));
    ck_assert_ptr_null (model_op (model, net.n));

    model_workspace_t *ws = model_workspace_new ();
    for (size_t b = 0; b < T_BATCHES; b++) {
        size_t rows = s_batches[b];
        t_run_check (&net, model, ws, t_input (&net, rows, -3, 3, false), rows, dtype);
    }
    //  other input datatypes, converted
    double *ints = t_alloc (64 * net.width * sizeof (double));
    for (size_t i = 0; i < 64 * net.width; i++)
        ints[i] = (double)((int)(t_random () % 11) - 5);
    t_run_check (&net, model, ws, ints, 64, AMAAS_INT32);
    t_run_check (&net, model, ws, ints, 64, AMAAS_INT64);
    t_run_check (&net, model, ws, ints, 64, dtype == AMAAS_FP64 ? AMAAS_FP32 : AMAAS_FP64);
    model_workspace_destroy (&ws);
}
END_TEST

//  The same model with weights that are not aligned: copied, same results
START_TEST (test_unaligned_weights)
{
    t_net_t net;
    t_net_kind (&net, T_MLP_TANH, _i ? AMAAS_FP64 : AMAAS_FP32, true);
    msgpack_object top = t_net_tree (&net);
    char err[512];
    model_workspace_t *ws = model_workspace_new ();
    for (size_t shift = 0; shift < 3; shift++) {
        model_t *model = t_load_tree (&top, shift != 1, shift, err, sizeof err);
        ck_assert_msg (model != NULL, "%s", err);
        size_t copied = model_weight_bytes_copied (model);
        if (shift == 0)
            ck_assert_uint_eq (copied, 0);
        else
            ck_assert_uint_gt (copied, 0);
        for (size_t l = 0; l < model_op_count (model); l++) {
            const model_op_t *op = model_op (model, l);
            ck_assert_uint_eq ((uintptr_t)op->a % 64, 0);
            ck_assert_uint_eq ((uintptr_t)op->b % 64, 0);
        }
        t_run_check (&net, model, ws, t_input (&net, 33, -3, 3, false), 33, net.dtype);
    }
    model_workspace_destroy (&ws);
}
END_TEST

//  --------------------------------------------------------------------------
//  Runtime behaviour

START_TEST (test_input_conversion)
{
    t_net_t net;
    t_net_init (&net, _i ? AMAAS_FP64 : AMAAS_FP32, 5);
    t_net_output (&net, "same", false);
    model_t *model = t_load_net (&net);
    model_workspace_t *ws = model_workspace_new ();
    model_output_t out[MODEL_MAX_OUTPUTS];
    char err[256];
    int32_t i32[10] = {0, 1, -1, INT32_MAX, INT32_MIN, 123456789, -7, 16777217, 42, -42};
    int64_t i64[10] = {0,        1,  -1, INT64_MAX, INT64_MIN, (1ll << 53) + 1, -(1ll << 53) - 1,
                       16777217, 42, -42};
    float f32[10] = {0.f,     -0.f,           1.5f,     -2.25f, 3.4e38f,
                     -1e-40f, 1.1754944e-38f, INFINITY, 1e7f,   0.1f};
    double f64[10] = {0.1, -0.1, 1e300, -1e-300, 16777217.0, 3.0000001, -2.5, 0, 7, 1e-45};
    const void *inputs[] = {i32, i64, f32, f64};
    amaas_dtype_t dtypes[] = {AMAAS_INT32, AMAAS_INT64, AMAAS_FP32, AMAAS_FP64};
    for (size_t t = 0; t < 4; t++) {
        //  at an odd address
        size_t size = dtypes[t] == AMAAS_INT32 || dtypes[t] == AMAAS_FP32 ? 4 : 8;
        uint8_t *raw = t_alloc (10 * size + 1);
        uint8_t *data = raw + ((uintptr_t)raw % 2 ? 0 : 1);
        memcpy (data, inputs[t], 10 * size);
        ck_assert_int_eq (model_run (model, ws, dtypes[t], data, 2, out, err, sizeof err), 0);
        ck_assert_uint_eq (out[0].size, 10 * (_i ? 8 : 4));
        for (size_t i = 0; i < 10; i++) {
            double want = t == 0   ? (double)i32[i]
                          : t == 1 ? (double)i64[i]
                          : t == 2 ? (double)f32[i]
                                   : f64[i];
            if (!_i)
                want = (float)(t == 1 ? (float)i64[i] : want);
            double got;
            if (_i)
                memcpy (&got, (const uint8_t *)out[0].data + 8 * i, 8);
            else {
                float value;
                memcpy (&value, (const uint8_t *)out[0].data + 4 * i, 4);
                got = value;
            }
            ck_assert_msg (got == want || (isnan (got) && isnan (want)),
                           "input %zu of type %zu: got %.17g, want %.17g", i, t, got, want);
        }
    }
    //  bad calls
    int32_t one[5] = {1, 2, 3, 4, 5};
    err[0] = 0;
    ck_assert_int_eq (model_run (model, ws, AMAAS_BYTES, one, 1, out, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "datatype"));
    ck_assert_int_eq (model_run (model, ws, AMAAS_UINT8, one, 1, out, err, sizeof err), -1);
    ck_assert_int_eq (model_run (model, ws, AMAAS_INT32, one, 0, out, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "at least one row"));
    ck_assert_int_eq (model_run (model, ws, AMAAS_INT32, NULL, 1, out, err, sizeof err), -1);
    ck_assert_int_eq (model_run (model, ws, AMAAS_INT32, one, SIZE_MAX / 2, out, err, sizeof err),
                      -1);
    ck_assert_ptr_nonnull (strstr (err, "too large"));
    ck_assert_int_eq (model_run (model, ws, AMAAS_INT32, one, 1, out, NULL, 0), 0);
    model_workspace_destroy (&ws);
    model_workspace_destroy (&ws); //  on NULL: nothing
    model_workspace_destroy (NULL);
}
END_TEST

START_TEST (test_workspace_reuse)
{
    t_net_t net, other;
    t_net_kind (&net, T_MULTINOMIAL, AMAAS_FP64, true);
    t_net_kind (&other, T_MLP_RELU, AMAAS_FP32, false);
    model_t *model = t_load_net (&net);
    model_t *model2 = t_load_net (&other);
    model_workspace_t *ws = model_workspace_new ();
    ck_assert_uint_eq (model_workspace_size (ws), 0);

    //  grows with the batch, then stays
    t_run_check (&net, model, ws, t_input (&net, 100, -3, 3, false), 100, AMAAS_FP64);
    size_t size = model_workspace_size (ws);
    ck_assert_uint_gt (size, 0);
    model_output_t out[MODEL_MAX_OUTPUTS], again[MODEL_MAX_OUTPUTS];
    char err[256];
    double *input = t_input (&net, 100, -3, 3, false);
    ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, input, 100, out, err, sizeof err), 0);
    static const size_t batches[] = {100, 1, 57, 100, 3, 99, 100};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        t_run_check (&net, model, ws, t_input (&net, batches[b], -3, 3, false), batches[b],
                     AMAAS_FP64);
        ck_assert_uint_eq (model_workspace_size (ws), size);
        ck_assert_int_eq (
            model_run (model, ws, AMAAS_FP64, input, batches[b], again, err, sizeof err), 0);
        for (size_t o = 0; o < model_output_count (model); o++)
            ck_assert_ptr_eq (again[o].data, out[o].data); //  same buffers
    }
    //  a larger batch grows it
    t_run_check (&net, model, ws, t_input (&net, 257, -3, 3, false), 257, AMAAS_FP64);
    ck_assert_uint_gt (model_workspace_size (ws), size);

    //  two models alternating on one workspace stay correct
    for (size_t i = 0; i < 6; i++) {
        size_t rows = 1 + (size_t)(t_random () % 300);
        if (i % 2)
            t_run_check (&other, model2, ws, t_input (&other, rows, -3, 3, false), rows,
                         AMAAS_FP32);
        else
            t_run_check (&net, model, ws, t_input (&net, rows, -3, 3, false), rows, AMAAS_FP64);
    }
    model_workspace_destroy (&ws);
}
END_TEST

START_TEST (test_softmax_sums)
{
    amaas_dtype_t dtype = _i ? AMAAS_FP64 : AMAAS_FP32;
    t_net_t net;
    t_net_init (&net, dtype, 9);
    t_net_dense (&net, 7);
    t_net_fn (&net, "softmax");
    t_net_output (&net, "p", false);
    model_t *model = t_load_net (&net);
    model_workspace_t *ws = model_workspace_new ();
    model_output_t out[MODEL_MAX_OUTPUTS];
    char err[256];
    size_t rows = 257;
    double *input = t_input (&net, rows, -50, 50, true); //  large logits too
    ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, input, rows, out, err, sizeof err), 0);
    for (size_t r = 0; r < rows; r++) {
        double sum = 0;
        for (size_t j = 0; j < 7; j++) {
            double p = dtype == AMAAS_FP64 ? ((const double *)out[0].data)[r * 7 + j]
                                           : ((const float *)out[0].data)[r * 7 + j];
            ck_assert (p >= 0 && p <= 1);
            sum += p;
        }
        ck_assert_msg (fabs (sum - 1) <= (_i ? 1e-12 : 1e-5), "row %zu sums to %.17g", r, sum);
    }
    model_workspace_destroy (&ws);
}
END_TEST

START_TEST (test_argmax_ties)
{
    amaas_dtype_t dtype = _i % 2 ? AMAAS_FP64 : AMAAS_FP32;
    bool strings = _i / 2;
    t_net_t net;
    t_net_init (&net, dtype, 4);
    t_net_argmax (&net, strings);
    t_net_output (&net, "label", false);
    model_t *model = t_load_net (&net);
    model_workspace_t *ws = model_workspace_new ();
    double rows[][4] = {
        {1, 1, 0, 0},   {0, 2, 2, 2},     {-1, -1, -1, -1},
        {0, 0, 0, 3},   {5, 1, 5, 1},     {-0.0, 0, 0, 0},
        {NAN, 1, 2, 3}, {1, NAN, 9, NAN}, {-INFINITY, -INFINITY, -1, -1},
    };
    size_t want[] = {0, 1, 0, 3, 0, 0, 0, 1, 2}; //  string label 2 is empty
    size_t n = sizeof want / sizeof want[0];
    model_output_t out[MODEL_MAX_OUTPUTS];
    char err[256];
    ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, rows, n, out, err, sizeof err), 0);
    const uint8_t *data = out[0].data;
    size_t pos = 0;
    for (size_t r = 0; r < n; r++) {
        const t_layer_t *argmax = &net.layer[0];
        if (strings) {
            uint32_t len;
            memcpy (&len, data + pos, 4); //  little-endian host
            ck_assert_uint_eq (len, strlen (argmax->strs[want[r]]));
            ck_assert_int_eq (memcmp (data + pos + 4, argmax->strs[want[r]], len), 0);
            pos += 4 + len;
        } else {
            int64_t label;
            memcpy (&label, data + r * 8, 8);
            ck_assert_int_eq (label, argmax->ints[want[r]]);
        }
    }
    if (strings)
        ck_assert_uint_eq (pos, out[0].size);
    model_workspace_destroy (&ws);
}
END_TEST

//  --------------------------------------------------------------------------
//  Refusals

//  A model with one of everything, valid; op 1 is dense 6 -> 5
static msgpack_object t_base_tree (t_net_t *net, amaas_dtype_t dtype)
{
    t_net_init (net, dtype, 6);
    t_net_scale (net);
    t_net_dense (net, 5);
    t_net_fn (net, "relu");
    t_net_dense (net, 3);
    t_net_fn (net, "softmax");
    t_net_output (net, "probabilities", false);
    t_net_argmax (net, true);
    t_net_output (net, "label", true);
    msgpack_object top = t_net_tree (net);
    t_accepted (&top);
    return top;
}

START_TEST (test_wrong_types)
{
    static const char *keys[] = {
        "format",  "format_version", "name",  "version", "datatype", "input", "width",
        "outputs", "shape",          "ops",   "op",      "in",       "out",   "weights",
        "bias",    "mean",           "scale", "labels",  "flatten",  "source"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (int how = T_NIL; how <= T_OMIT; how++) {
            t_net_t net;
            msgpack_object top = t_base_tree (&net, AMAAS_FP64);
            ck_assert_uint_gt (t_mutate (&top, keys[k], (t_mutation_t)how), 0);
            bool optional = strcmp (keys[k], "flatten") == 0 || strcmp (keys[k], "source") == 0;
            char expect[64];
            snprintf (expect, sizeof expect,
                      how == T_OMIT ? "missing key \"%s\"" : "\"%s\" has type ", keys[k]);
            if (how == T_OMIT && optional)
                t_accepted (&top); //  flatten defaults to false
            else
                t_refused (&top, expect);
        }
}
END_TEST

START_TEST (test_bad_header)
{
    t_net_t net;
    msgpack_object top;
    char name[200];

    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "format", t_str ("amaas-modell"));
    t_refused (&top, "format is \"amaas-modell\", expected \"amaas-model\"");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "format_version", t_uint (3)); //  2 is a graph (test_graph.c)
    t_refused (&top, "format_version 3 is not supported");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "format_version", t_int (-1));
    t_refused (&top, "\"format_version\" has type negative int, expected uint");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "format_version", t_float (1.0));
    t_refused (&top, "\"format_version\" has type float");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "datatype", t_str ("FP16"));
    t_refused (&top, "datatype \"FP16\" is not FP32 or FP64");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "datatype", t_str ("FP32")); //  bins are FP64-sized
    t_refused (&top, "bad.amm: op 0 (scale): mean holds 48 bytes, 6 FP32 needs 24");

    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "name", t_str ("iris model"));
    t_refused (&top, "\"name\" \"iris model\" has a character outside [A-Za-z0-9._-]");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "name", t_strn ("ir\0s\n", 5));
    t_refused (&top, "\"name\" \"ir\\x00s\\x0a\" has a character outside");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "name", t_str (""));
    t_refused (&top, "\"name\" \"\" has 0 bytes, expected 1..127");
    memset (name, 'a', 128);
    name[128] = 0;
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "name", t_str (name));
    t_refused (&top, "has 128 bytes, expected 1..127");
    name[127] = 0;
    t_set (&top, "name", t_str (name));
    t_accepted (&top);
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (&top, "version", t_str ("1 beta"));
    t_refused (&top, "\"version\" \"1 beta\" has a character outside");

    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_get (&top, "input"), "width", t_uint (0));
    t_refused (&top, "bad.amm: input: \"width\" is 0, expected 1..16777216");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_get (&top, "input"), "width", t_uint (UINT64_MAX));
    t_refused (&top, "input: \"width\" is 18446744073709551615, expected 1..16777216");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_get (&top, "input"), "width", t_uint ((1u << 24) + 1));
    t_refused (&top, "expected 1..16777216");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_get (&top, "input"), "width", t_int (-6));
    t_refused (&top, "\"width\" is -6");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_get (&top, "input"), "width", t_uint (7));
    t_refused (&top, "op 0 (scale): width 6 does not match the current width 7");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_get (&top, "input"), "name", t_str ("in put"));
    t_refused (&top, "input: \"name\" \"in put\" has a character outside");

    //  not a map, duplicate key, non-str key, unknown keys (ignored)
    msgpack_object array = t_array (1);
    t_push (&array, t_uint (1));
    t_refused (&array, "bad.amm: the model has type array, expected map");
    top = t_base_tree (&net, AMAAS_FP64);
    t_put (&top, "name", t_str ("again"));
    t_refused (&top, "the model has key \"name\" twice");
    top = t_base_tree (&net, AMAAS_FP64);
    top.via.map.ptr[top.via.map.size].key = t_uint (3);
    top.via.map.ptr[top.via.map.size++].val = t_nil ();
    t_refused (&top, "the model has a key of type uint, keys must be str");
    top = t_base_tree (&net, AMAAS_FP64);
    t_put (&top, "", t_nil ()); //  an empty key (msgpack-c: NULL pointer)
    t_accepted (&top);
    t_put (&top, "", t_nil ());
    t_refused (&top, "the model has key \"\" twice");
    top = t_base_tree (&net, AMAAS_FP64);
    t_put (&top, "future", t_map ());
    t_put (t_op (&top, 1), "hint", t_str ("fast"));
    t_accepted (&top);
    top = t_base_tree (&net, AMAAS_FP64);
    for (int i = 0; top.via.map.size < 64; i++) {
        snprintf (name, sizeof name, "k%d", i);
        t_put (&top, name, t_nil ());
    }
    t_accepted (&top);
    t_put (&top, "one-more", t_nil ());
    t_refused (&top, "bad.amm: the model has 65 keys, at most 64 are allowed");
}
END_TEST

START_TEST (test_bad_outputs)
{
    t_net_t net;
    msgpack_object top, *outputs, *output;

    top = t_base_tree (&net, AMAAS_FP64);
    outputs = t_get (&top, "outputs");
    outputs->via.array.size = 1; //  "label" not declared
    t_refused (&top, "op 7 (output): output \"label\" is not declared in outputs (1 declared)");

    top = t_base_tree (&net, AMAAS_FP64);
    t_get (&top, "ops")->via.array.size = 7; //  no op emits "label"
    t_refused (&top, "bad.amm: outputs[1] \"label\" is declared but no output op emits it");

    top = t_base_tree (&net, AMAAS_FP64);
    outputs = t_get (&top, "outputs");
    msgpack_object first = outputs->via.array.ptr[0];
    outputs->via.array.ptr[0] = outputs->via.array.ptr[1];
    outputs->via.array.ptr[1] = first;
    t_refused (&top, "op 5 (output): output \"probabilities\" comes where outputs[0] declares "
                     "\"label\"");

    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[0];
    t_get (output, "shape")->via.array.ptr[1] = t_uint (4);
    t_refused (&top, "output \"probabilities\" emits FP64 [-1, 3], outputs[0] declares FP64 "
                     "[-1, 4]");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[0];
    t_get (output, "shape")->via.array.size = 1;
    t_refused (&top, "emits FP64 [-1, 3], outputs[0] declares FP64 [-1]");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[0];
    t_set (output, "datatype", t_str ("FP32"));
    t_refused (&top, "emits FP64 [-1, 3], outputs[0] declares FP32 [-1, 3]");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[1];
    t_set (output, "datatype", t_str ("INT64"));
    t_refused (&top, "output \"label\" emits BYTES [-1], outputs[1] declares INT64 [-1]");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[1];
    t_set (output, "datatype", t_str ("STRING"));
    t_refused (&top, "outputs[1]: datatype \"STRING\" is not FP32, FP64, INT64 or BYTES");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[1];
    t_set (output, "name", t_str ("probabilities"));
    t_refused (&top, "outputs[1]: name \"probabilities\" is also the name of outputs[0]");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[0];
    t_get (output, "shape")->via.array.ptr[0] = t_uint (1);
    t_refused (&top, "outputs[0]: shape[0] must be -1");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[0];
    t_get (output, "shape")->via.array.ptr[1] = t_uint (0);
    t_refused (&top, "shape[1] must be a uint in 1..16777216");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[0];
    t_get (output, "shape")->via.array.size = 0;
    t_refused (&top, "shape has 0 dimensions");
    top = t_base_tree (&net, AMAAS_FP64);
    output = &t_get (&top, "outputs")->via.array.ptr[1];
    t_push (t_get (output, "shape"), t_uint (1));
    t_refused (&top, "outputs[1]: BYTES labels have shape [-1], not [-1, 1]");

    top = t_base_tree (&net, AMAAS_FP64);
    t_get (&top, "outputs")->via.array.size = 0;
    t_refused (&top, "\"outputs\" has 0 entries, expected 1..8");
    top = t_base_tree (&net, AMAAS_FP64);
    outputs = t_get (&top, "outputs");
    while (outputs->via.array.size <= MODEL_MAX_OUTPUTS)
        t_push (outputs, outputs->via.array.ptr[0]);
    t_refused (&top, "\"outputs\" has 9 entries, expected 1..8");

    //  8 outputs are fine
    t_net_init (&net, AMAAS_FP32, 1);
    static const char *names[] = {"o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7"};
    for (size_t i = 0; i < MODEL_MAX_OUTPUTS; i++) {
        t_net_fn (&net, "relu");
        t_net_output (&net, names[i], i % 2);
    }
    model_t *model = t_load_net (&net);
    model_workspace_t *ws = model_workspace_new ();
    t_run_check (&net, model, ws, t_input (&net, 9, -1, 1, false), 9, AMAAS_FP32);
    model_workspace_destroy (&ws);

    //  flatten needs width 1
    t_net_init (&net, AMAAS_FP32, 2);
    t_net_output (&net, "x", false);
    top = t_net_tree (&net);
    t_set (t_op (&top, 0), "flatten", t_bool (true));
    t_refused (&top, "op 0 (output): output \"x\": flatten needs a width of 1, the width is 2");
}
END_TEST

START_TEST (test_bad_ops)
{
    t_net_t net;
    msgpack_object top, *op;

    //  the example of model.h, exactly
    t_net_init (&net, AMAAS_FP64, 4);
    t_net_dense (&net, 10);
    t_net_output (&net, "y", false);
    top = t_net_tree (&net);
    t_accepted (&top);
    double weights[5] = {0};
    t_set (t_op (&top, 0), "weights", t_bin (weights, sizeof weights));
    {
        size_t size;
        uint8_t *packed = t_pack (&top, true, &size);
        char err[512];
        ck_assert_ptr_null (model_load_buffer (packed, size, "iris.amm", err, sizeof err));
        ck_assert_str_eq (err,
                          "iris.amm: op 0 (dense): weights hold 40 bytes, 4x10 FP64 needs 320");
        //  a short buffer gets a cut message, never an overflow
        char small[12];
        ck_assert_ptr_null (model_load_buffer (packed, size, "iris.amm", small, sizeof small));
        ck_assert_str_eq (small, "iris.amm: o");
        ck_assert_ptr_null (model_load_buffer (packed, size, "iris.amm", small, 1));
        ck_assert_str_eq (small, "");
        ck_assert_ptr_null (model_load_buffer (packed, size, "iris.amm", NULL, 0));
        free (packed);
    }

    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 1), "bias", t_bin (weights, 8));
    t_refused (&top, "op 1 (dense): bias holds 8 bytes, 5 FP64 needs 40");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 0), "scale", t_bin (weights, 0));
    t_refused (&top, "op 0 (scale): scale holds 0 bytes, 6 FP64 needs 48");
    top = t_base_tree (&net, AMAAS_FP32);
    t_set (t_op (&top, 3), "weights", t_bin (weights, 8));
    t_refused (&top, "op 3 (dense): weights hold 8 bytes, 5x3 FP32 needs 60");

    //  widths that do not chain
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 1), "in", t_uint (5));
    t_refused (&top, "op 1 (dense): in 5 does not match the current width 6");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 3), "in", t_uint (6));
    t_refused (&top, "op 3 (dense): in 6 does not match the current width 5");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 1), "out", t_uint (4)); //  weights no longer match, then op 3
    t_refused (&top, "op 1 (dense): weights hold 240 bytes, 6x4 FP64 needs 192");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 0), "width", t_uint (5));
    t_refused (&top, "op 0 (scale): width 5 does not match the current width 6");

    //  huge widths: no overflow, refused on range or size
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_get (&top, "input"), "width", t_uint (1u << 24));
    t_set (t_op (&top, 0), "width", t_uint (1u << 24));
    t_refused (&top, "op 0 (scale): mean holds 48 bytes, 16777216 FP64 needs 134217728");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_get (&top, "input"), "width", t_uint (1u << 24));
    t_del (t_get (&top, "ops")->via.array.ptr, "op");
    t_put (t_op (&top, 0), "op", t_str ("identity"));
    t_set (t_op (&top, 1), "in", t_uint (1u << 24));
    t_set (t_op (&top, 1), "out", t_uint (1u << 24));
    t_refused (&top, "op 1 (dense): weights hold 240 bytes, 16777216x16777216 FP64 needs "
                     "2251799813685248");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 1), "out", t_uint (UINT64_MAX));
    t_refused (&top, "op 1 (dense): \"out\" is 18446744073709551615, expected 1..16777216");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 1), "out", t_uint (1ull << 32));
    t_refused (&top, "\"out\" is 4294967296");

    //  argmax labels
    top = t_base_tree (&net, AMAAS_FP64);
    t_get (t_op (&top, 6), "labels")->via.array.size = 2;
    t_refused (&top, "op 6 (argmax): 2 labels for a width of 3");
    top = t_base_tree (&net, AMAAS_FP64);
    t_get (t_op (&top, 6), "labels")->via.array.size = 0;
    t_refused (&top, "op 6 (argmax): 0 labels for a width of 3");
    top = t_base_tree (&net, AMAAS_FP64);
    t_get (t_op (&top, 6), "labels")->via.array.ptr[2] = t_uint (3);
    t_refused (&top, "op 6 (argmax): label 2 has type uint, labels[0] is a str so all must be");
    top = t_base_tree (&net, AMAAS_FP64);
    op = t_get (t_op (&top, 6), "labels");
    op->via.array.ptr[0] = t_uint (3);
    op->via.array.ptr[1] = t_uint (4);
    op->via.array.ptr[2] = t_float (1.0);
    t_refused (&top, "label 2 has type float, labels[0] is an int so all must be");
    op->via.array.ptr[2] = t_uint (1ull << 63);
    t_refused (&top, "label 2 is 9223372036854775808, above the INT64 range");
    op->via.array.ptr[2] = t_int (INT64_MIN);
    t_get (&top, "outputs")->via.array.ptr[1].via.map.ptr[1].val = t_str ("INT64");
    t_accepted (&top);
    {
        char *label = t_alloc (4097);
        memset (label, 'x', 4097);
        top = t_base_tree (&net, AMAAS_FP64);
        t_get (t_op (&top, 6), "labels")->via.array.ptr[1] = t_strn (label, 4097);
        t_refused (&top, "label 1 has 4097 bytes, at most 4096");
        t_get (t_op (&top, 6), "labels")->via.array.ptr[1] = t_strn (label, 4096);
        t_accepted (&top);
        t_get (t_op (&top, 6), "labels")->via.array.ptr[1] = t_str ("");
        t_accepted (&top);
    }

    //  op order and kinds
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 7), "op", t_str ("relu"));
    t_refused (&top, "op 7 (relu): only output ops may follow argmax");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 2), "op", t_str ("conv2d"));
    t_refused (&top, "op 2: unknown op \"conv2d\"");
    top = t_base_tree (&net, AMAAS_FP64);
    t_set (t_op (&top, 2), "op", t_str ("binary"));
    t_refused (&top, "op 2 (binary): binary needs a width of 1, the width is 5");
    top = t_base_tree (&net, AMAAS_FP64);
    *t_op (&top, 4) = t_str ("softmax");
    t_refused (&top, "op 4: op has type str, expected map");

    //  op counts
    top = t_base_tree (&net, AMAAS_FP64);
    t_get (&top, "ops")->via.array.size = 0;
    t_refused (&top, "\"ops\" has 0 entries, expected 1..256");
    for (size_t count = 256; count <= 257; count++) {
        t_net_init (&net, AMAAS_FP32, 3);
        t_net_output (&net, "x", false);
        top = t_net_tree (&net);
        msgpack_object ops = t_array (count);
        for (size_t i = 0; i + 1 < count; i++) {
            msgpack_object identity = t_map ();
            t_put (&identity, "op", t_str ("identity"));
            t_push (&ops, identity);
        }
        t_push (&ops, *t_op (&top, 0));
        t_set (&top, "ops", ops);
        if (count == 256)
            t_accepted (&top);
        else
            t_refused (&top, "\"ops\" has 257 entries, expected 1..256");
    }
}
END_TEST

//  A scale of 0 and a NaN mean are valid: IEEE 754 results
START_TEST (test_scale_ieee)
{
    amaas_dtype_t dtype = _i ? AMAAS_FP64 : AMAAS_FP32;
    t_net_t net;
    t_net_init (&net, dtype, 4);
    t_net_scale (&net);
    t_net_output (&net, "x", false);
    t_layer_t *scale = &net.layer[0];
    scale->a[0] = 1, scale->b[0] = 0;   //  (x - 1) / 0
    scale->a[1] = NAN, scale->b[1] = 2; //  NaN
    scale->a[2] = 0, scale->b[2] = INFINITY;
    scale->a[3] = 0, scale->b[3] = 0;
    model_t *model = t_load_net (&net);
    model_workspace_t *ws = model_workspace_new ();
    double input[2][4] = {{3, 3, 3, 0}, {-3, 3, 3, 5}};
    double want[2][4] = {{INFINITY, NAN, 0, NAN}, {-INFINITY, NAN, 0, INFINITY}};
    model_output_t out[MODEL_MAX_OUTPUTS];
    char err[256];
    ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, input, 2, out, err, sizeof err), 0);
    for (size_t i = 0; i < 8; i++) {
        double got = _i ? ((const double *)out[0].data)[i] : ((const float *)out[0].data)[i];
        double w = want[i / 4][i % 4];
        ck_assert_msg (got == w || (isnan (got) && isnan (w)), "value %zu: %g, want %g", i, got, w);
    }
    model_workspace_destroy (&ws);
}
END_TEST

//  String labels are UTF-8, returned as they are
START_TEST (test_utf8_labels)
{
    static const char *valid[] = {"\xc3\xa9t\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
                                  "\xf0\x9f\x99\x82", "\x7f"};
    static const char *invalid[] = {
        "\xff", "\xc0\xaf",     "\xed\xa0\x80",        "ok\xe6\x97", "\xf4\x90\x80\x80",
        "\x80", "\xe0\x80\xaf", "\xf8\x88\x80\x80\x80"};
    t_net_t net;
    t_net_init (&net, AMAAS_FP64, 4);
    t_net_argmax (&net, true);
    t_net_output (&net, "label", false);
    for (size_t i = 0; i < 4; i++)
        net.layer[0].strs[i] = (char *)valid[i];
    model_t *model = t_load_net (&net);
    model_workspace_t *ws = model_workspace_new ();
    t_run_check (&net, model, ws, t_input (&net, 50, -1, 1, false), 50, AMAAS_FP64);
    model_workspace_destroy (&ws);

    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        msgpack_object top = t_net_tree (&net);
        t_get (t_op (&top, 0), "labels")->via.array.ptr[2] = t_str (invalid[i]);
        t_refused (&top, "op 0 (argmax): label 2 \"");
        t_refused (&top, "\" is not valid UTF-8");
    }
}
END_TEST

static bool t_try (const uint8_t *data, size_t size, char *err, size_t err_size);

//  Integers in any msgpack encoding: int8 .. int64 and uint8 .. uint64
START_TEST (test_integer_encodings)
{
    t_net_t net;
    msgpack_object top = t_base_tree (&net, AMAAS_FP64);
    size_t size;
    uint8_t *packed = t_pack (&top, false, &size);
    //  "format_version": 1 is 0xae "format_version" 0x01
    static const uint8_t key[] = {0xae, 'f', 'o', 'r', 'm', 'a', 't', '_',
                                  'v',  'e', 'r', 's', 'i', 'o', 'n', 0x01};
    size_t at;
    for (at = 0; at + sizeof key <= size && memcmp (packed + at, key, sizeof key); at++)
        ;
    ck_assert_uint_lt (at + sizeof key, size);
    at += sizeof key - 1; //  the value byte
    static const uint8_t encodings[][10] = {
        {2, 0xcc, 1},
        {3, 0xcd, 0, 1},
        {5, 0xce, 0, 0, 0, 1},
        {9, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1},
        {2, 0xd0, 1},
        {3, 0xd1, 0, 1},
        {5, 0xd2, 0, 0, 0, 1},
        {9, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1},
        {9, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, //  -1
        {5, 0xca, 0x3f, 0x80, 0, 0},                               //  1.0f
    };
    uint8_t *spliced = malloc (size + 16);
    char err[512];
    for (size_t e = 0; e < sizeof encodings / sizeof encodings[0]; e++) {
        size_t len = encodings[e][0];
        memcpy (spliced, packed, at);
        memcpy (spliced + at, encodings[e] + 1, len);
        memcpy (spliced + at + len, packed + at + 1, size - at - 1);
        bool loaded = t_try (spliced, size - 1 + len, err, sizeof err);
        if (e < 8)
            ck_assert_msg (loaded, "encoding %zu: %s", e, err);
        else
            ck_assert_msg (!loaded && strstr (err, "\"format_version\" has type"), "%s", err);
    }
    free (spliced);
    free (packed);
}
END_TEST

//  --------------------------------------------------------------------------
//  Hostile bytes

//  Load bytes from an exactly-sized heap copy (so ASan sees any overread).
//  Returns whether the model loaded; when it does, runs it once.
static bool t_try (const uint8_t *data, size_t size, char *err, size_t err_size)
{
    uint8_t *copy = malloc (size ? size : 1);
    ck_assert_ptr_nonnull (copy);
    if (size)
        memcpy (copy, data, size);
    err[0] = 0;
    model_t *model = model_load_buffer (copy, size, "fuzz.amm", err, err_size);
    bool loaded = model != NULL;
    if (model) {
        model_workspace_t *ws = model_workspace_new ();
        double input[3 * 64] = {0};
        model_output_t out[MODEL_MAX_OUTPUTS];
        if (model_input_width (model) <= 64) {
            for (size_t i = 0; i < 3 * model_input_width (model); i++)
                input[i] = (double)i - 7.5;
            ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, input, 3, out, err, err_size), 0);
        }
        model_workspace_destroy (&ws);
        model_destroy (&model);
    } else
        ck_assert_msg (strncmp (err, "fuzz.amm: ", 10) == 0 && strlen (err) > 10,
                       "refused without a message: \"%s\"", err);
    free (copy);
    return loaded;
}

START_TEST (test_truncated)
{
    t_net_t net;
    msgpack_object top = t_base_tree (&net, _i ? AMAAS_FP64 : AMAAS_FP32);
    size_t size;
    uint8_t *packed = t_pack (&top, _i, &size);
    char err[512];
    ck_assert (t_try (packed, size, err, sizeof err));
    for (size_t cut = 0; cut < size; cut++) {
        ck_assert_msg (!t_try (packed, cut, err, sizeof err), "loaded %zu of %zu bytes", cut, size);
        if (cut == 0)
            ck_assert_str_eq (err, "fuzz.amm: empty file");
        else
            ck_assert_msg (strstr (err, "ends at byte") || strstr (err, "truncated"), "%s", err);
    }
    //  and with a byte too many
    uint8_t *longer = malloc (size + 1);
    memcpy (longer, packed, size);
    longer[size] = 0xc0;
    ck_assert (!t_try (longer, size + 1, err, sizeof err));
    ck_assert_str_eq (err, "fuzz.amm: 1 bytes after the end of the msgpack object");
    free (longer);
    free (packed);
}
END_TEST

START_TEST (test_random_bytes)
{
    char err[512];
    uint8_t data[512];
    for (int i = 0; i < 20000; i++) {
        size_t size = (size_t)(t_random () % sizeof data);
        for (size_t j = 0; j < size; j++)
            data[j] = (uint8_t)t_random ();
        if (size && i % 2)
            data[0] = (uint8_t)(0x80 | (data[0] & 0x0f)); //  a map
        ck_assert (!t_try (data, size, err, sizeof err));
    }
    //  crafted: huge container counts, deep nesting, reserved byte, huge str
    static const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    ck_assert (!t_try (huge_array, sizeof huge_array, err, sizeof err));
    ck_assert_ptr_nonnull (strstr (err, "container of 4294967295 elements cannot fit"));
    static const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0};
    ck_assert (!t_try (huge_map, sizeof huge_map, err, sizeof err));
    ck_assert_ptr_nonnull (strstr (err, "container of 8589934590 elements"));
    static const uint8_t huge_str[] = {0x81, 0xdb, 0xff, 0xff, 0xff, 0xf0, 0x41};
    ck_assert (!t_try (huge_str, sizeof huge_str, err, sizeof err));
    static const uint8_t reserved[] = {0x81, 0xc1, 0xc0};
    ck_assert (!t_try (reserved, sizeof reserved, err, sizeof err));
    ck_assert_str_eq (err, "fuzz.amm: byte 1: 0xc1 is not a msgpack type");
    uint8_t deep[300];
    memset (deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0xc0;
    ck_assert (!t_try (deep, sizeof deep, err, sizeof err));
    ck_assert_ptr_nonnull (strstr (err, "nested deeper than 16 levels"));
    static const uint8_t ext[] = {0xd4, 0x01, 0x00};
    ck_assert (!t_try (ext, sizeof ext, err, sizeof err));
    ck_assert_str_eq (err, "fuzz.amm: the model has type ext, expected map");
    static const uint8_t empty_map[] = {0x80};
    ck_assert (!t_try (empty_map, sizeof empty_map, err, sizeof err));
    ck_assert_str_eq (err, "fuzz.amm: missing key \"format\"");
    ck_assert_ptr_null (model_load_buffer (NULL, 0, NULL, err, sizeof err));
    ck_assert_str_eq (err, "model: empty file");
}
END_TEST

//  Valid files with a few bytes changed: load or refuse, never crash
START_TEST (test_mutations)
{
    t_net_t net;
    t_kind_t kinds[] = {T_MULTINOMIAL, T_BINARY, T_MLP_TANH, T_OVR};
    t_net_kind (&net, kinds[_i], _i % 2 ? AMAAS_FP32 : AMAAS_FP64, _i != 2);
    msgpack_object top = t_net_tree (&net);
    size_t size;
    uint8_t *packed = t_pack (&top, true, &size);
    uint8_t *mutant = malloc (size);
    char err[512];
    size_t loaded = 0;
    for (int i = 0; i < 4000; i++) {
        memcpy (mutant, packed, size);
        int changes = 1 + (int)(t_random () % 4);
        for (int c = 0; c < changes; c++) {
            size_t at = (size_t)(t_random () % size);
            uint64_t r = t_random ();
            if (r % 3 == 0)
                mutant[at] = (uint8_t)(r >> 8);
            else if (r % 3 == 1)
                mutant[at] ^= (uint8_t)(1u << ((r >> 8) % 8));
            else
                mutant[at] = (uint8_t)((r >> 8) % 2 ? mutant[at] + 1 : mutant[at] - 1);
        }
        loaded += t_try (mutant, size, err, sizeof err);
    }
    ck_assert_uint_gt (loaded, 0); //  changes in weights still load
    free (mutant);
    free (packed);
}
END_TEST

//  --------------------------------------------------------------------------
//  Files

START_TEST (test_files)
{
    const char *dir = getenv ("TMPDIR");
    char path[512];
    snprintf (path, sizeof path, "%s/test_model_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);

    t_net_t net;
    t_net_kind (&net, T_MLP_RELU, AMAAS_FP64, true);
    msgpack_object top = t_net_tree (&net);
    size_t size;
    uint8_t *packed = t_pack (&top, true, &size);
    ck_assert_int_eq (write (fd, packed, size), (ssize_t)size);
    char err[512] = "";
    model_t *model = model_load (path, err, sizeof err);
    ck_assert_msg (model != NULL, "%s", err);
    ck_assert_uint_eq (model_weight_bytes_copied (model), 0); //  in place in the mapping
    model_workspace_t *ws = model_workspace_new ();
    t_run_check (&net, model, ws, t_input (&net, 40, -3, 3, false), 40, AMAAS_FP64);
    model_workspace_destroy (&ws);
    model_destroy (&model);
    ck_assert_ptr_null (model);
    model_destroy (&model);
    model_destroy (NULL);

    //  a corrupt file names the path
    ck_assert_int_eq (ftruncate (fd, (off_t)size - 10), 0);
    ck_assert_ptr_null (model_load (path, err, sizeof err));
    ck_assert_msg (strncmp (err, path, strlen (path)) == 0 && strstr (err, "ends at byte"), "%s",
                   err);
    //  empty
    ck_assert_int_eq (ftruncate (fd, 0), 0);
    ck_assert_ptr_null (model_load (path, err, sizeof err));
    ck_assert_ptr_nonnull (strstr (err, ": empty file"));
    close (fd);
    unlink (path);
    free (packed);

    //  missing, a directory, no path
    ck_assert_ptr_null (model_load (path, err, sizeof err));
    ck_assert_ptr_nonnull (strstr (err, "cannot open: No such file or directory"));
    ck_assert_ptr_null (model_load (dir && *dir ? dir : "/tmp", err, sizeof err));
    ck_assert_ptr_nonnull (strstr (err, "not a regular file"));
    ck_assert_ptr_null (model_load (NULL, err, sizeof err));
}
END_TEST

//  --------------------------------------------------------------------------
//  columns and select

//  {"columns": [...], "ops": [...]} with the given column indices
static msgpack_object t_part (const size_t *columns, size_t n, msgpack_object ops)
{
    msgpack_object part = t_map ();
    msgpack_object list = t_array (n);
    for (size_t i = 0; i < n; i++)
        t_push (&list, t_uint (columns[i]));
    t_put (&part, "columns", list);
    t_put (&part, "ops", ops);
    return part;
}

static msgpack_object t_output_decl (const char *name, size_t width)
{
    msgpack_object output = t_map ();
    t_put (&output, "name", t_str (name));
    t_put (&output, "datatype", t_str ("FP64"));
    msgpack_object shape = t_array (2);
    t_push (&shape, t_int (-1));
    if (width)
        t_push (&shape, t_uint (width));
    t_put (&output, "shape", shape);
    return output;
}

static msgpack_object t_simple_op (const char *name)
{
    msgpack_object op = t_map ();
    t_put (&op, "op", t_str (name));
    return op;
}

//  Input [rows, 3]; columns: part 0 = cols (2, 0) scaled, part 1 = col 1 as
//  it is, part 2 = cols (0, 1) through dense (1, 10) + 0.5, emitted as
//  "inner"; then select (3, 0) emitted as "out".  Each *_p, when not NULL,
//  receives the map to mutate.
static msgpack_object t_columns_model (msgpack_object **columns_op_p, msgpack_object **part_ops_p)
{
    msgpack_object top = t_map ();
    t_put (&top, "format", t_str ("amaas-model"));
    t_put (&top, "format_version", t_uint (1));
    t_put (&top, "name", t_str ("columns"));
    t_put (&top, "version", t_str ("1"));
    t_put (&top, "datatype", t_str ("FP64"));
    msgpack_object input = t_map ();
    t_put (&input, "name", t_str ("input"));
    t_put (&input, "width", t_uint (3));
    t_put (&top, "input", input);
    msgpack_object outputs = t_array (2);
    t_push (&outputs, t_output_decl ("inner", 1));
    t_push (&outputs, t_output_decl ("out", 2));
    t_put (&top, "outputs", outputs);

    msgpack_object scale = t_simple_op ("scale");
    const double mean[2] = {1, 2}, spread[2] = {2, 4};
    t_put (&scale, "width", t_uint (2));
    t_put (&scale, "mean", t_bin (mean, sizeof mean));
    t_put (&scale, "scale", t_bin (spread, sizeof spread));
    msgpack_object ops0 = t_array (4);
    t_push (&ops0, scale);
    msgpack_object dense = t_simple_op ("dense");
    const double weights[2] = {1, 10}, bias[1] = {0.5};
    t_put (&dense, "in", t_uint (2));
    t_put (&dense, "out", t_uint (1));
    t_put (&dense, "weights", t_bin (weights, sizeof weights));
    t_put (&dense, "bias", t_bin (bias, sizeof bias));
    msgpack_object inner = t_simple_op ("output");
    t_put (&inner, "name", t_str ("inner"));
    msgpack_object ops2 = t_array (4);
    t_push (&ops2, dense);
    t_push (&ops2, inner);

    msgpack_object parts = t_array (4);
    const size_t c0[] = {2, 0}, c1[] = {1}, c2[] = {0, 1};
    t_push (&parts, t_part (c0, 2, ops0));
    t_push (&parts, t_part (c1, 1, t_array (4)));
    t_push (&parts, t_part (c2, 2, ops2));
    msgpack_object columns = t_simple_op ("columns");
    t_put (&columns, "parts", parts);

    msgpack_object select = t_simple_op ("select");
    msgpack_object picked = t_array (2);
    t_push (&picked, t_uint (3));
    t_push (&picked, t_uint (0));
    t_put (&select, "columns", picked);
    msgpack_object out = t_simple_op ("output");
    t_put (&out, "name", t_str ("out"));

    msgpack_object ops = t_array (3);
    t_push (&ops, columns);
    t_push (&ops, select);
    t_push (&ops, out);
    t_put (&top, "ops", ops);
    if (columns_op_p)
        *columns_op_p = &t_get (&top, "ops")->via.array.ptr[0];
    if (part_ops_p) {
        msgpack_object *op0 = &t_get (&top, "ops")->via.array.ptr[0];
        *part_ops_p = t_get (&t_get (op0, "parts")->via.array.ptr[0], "ops");
    }
    return top;
}

START_TEST (test_columns_select)
{
    msgpack_object top = t_columns_model (NULL, NULL);
    char err[512];
    model_t *model = t_load_tree (&top, true, 0, err, sizeof err);
    ck_assert_msg (model != NULL, "columns model refused: %s", err);
    model_workspace_t *ws = model_workspace_new ();
    const double x[2][3] = {{1, 2, 3}, {-4, 0.5, 9}};
    model_output_t outputs[MODEL_MAX_OUTPUTS];
    for (int round = 0; round < 2; round++) { //  the second run reuses the buffers
        ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, x, 2, outputs, err, sizeof err), 0);
        ck_assert_str_eq (outputs[0].name, "inner");
        ck_assert_str_eq (outputs[1].name, "out");
        ck_assert_int_eq (outputs[1].shape[1], 2);
        const double *inner = outputs[0].data;
        const double *out = outputs[1].data;
        for (size_t r = 0; r < 2; r++) {
            double dense = x[r][0] + 10 * x[r][1] + 0.5;
            ck_assert_double_eq (inner[r], dense);
            ck_assert_double_eq (out[2 * r], dense);
            ck_assert_double_eq (out[2 * r + 1], (x[r][2] - 1) / 2);
        }
    }
    size_t size = model_workspace_size (ws);
    ck_assert_int_eq (model_run (model, ws, AMAAS_FP64, x, 1, outputs, err, sizeof err), 0);
    ck_assert_uint_eq (model_workspace_size (ws), size);
    model_workspace_destroy (&ws);
}
END_TEST

START_TEST (test_columns_refused)
{
    msgpack_object *columns, *part_ops;
    msgpack_object top = t_columns_model (&columns, &part_ops);
    //  a column past the width
    msgpack_object *parts = t_get (columns, "parts");
    msgpack_object *c0 = t_get (&parts->via.array.ptr[0], "columns");
    c0->via.array.ptr[0] = t_uint (3);
    t_refused (&top, "op 0 (columns): parts[0]: columns[0] must be a uint below the width 3");
    c0->via.array.ptr[0] = t_uint (2);
    t_accepted (&top);

    //  argmax in a part; a part's op whose width does not chain
    msgpack_object argmax = t_simple_op ("argmax");
    msgpack_object labels = t_array (2);
    t_push (&labels, t_int (1));
    t_push (&labels, t_int (2));
    t_put (&argmax, "labels", labels);
    t_push (part_ops, argmax);
    t_refused (&top, "parts[0]: op 1 (argmax): argmax may not be in a part");
    part_ops->via.array.ptr[1] = t_simple_op ("binary");
    t_refused (&top, "parts[0]: op 1 (binary): binary needs a width of 1");
    part_ops->via.array.size = 1;

    //  no parts; a part with no columns
    uint32_t n_parts = parts->via.array.size;
    parts->via.array.size = 0;
    t_refused (&top, "\"parts\" has 0 entries");
    parts->via.array.size = n_parts;
    c0->via.array.size = 0;
    t_refused (&top, "\"columns\" has 0 entries");
    c0->via.array.size = 2;

    //  select past the width
    msgpack_object *select = &t_get (&top, "ops")->via.array.ptr[1];
    t_get (select, "columns")->via.array.ptr[0] = t_uint (4);
    t_refused (&top, "op 1 (select): columns[0] must be a uint below the width 4");
    t_get (select, "columns")->via.array.ptr[0] = t_uint (3);
    t_accepted (&top);

    //  columns nested deeper than the limit (the innermost needs no parts to
    //  be refused: msgpack's own depth limit comes soon after)
    msgpack_object nested = t_simple_op ("columns");
    for (int depth = 0; depth < 3; depth++) {
        msgpack_object outer = t_simple_op ("columns");
        msgpack_object list = t_array (1);
        msgpack_object ops = t_array (1);
        t_push (&ops, nested);
        const size_t all[] = {0, 1, 2};
        t_push (&list, t_part (all, 3, ops));
        t_put (&outer, "parts", list);
        nested = outer;
    }
    *columns = nested;
    t_refused (&top, "columns ops nest deeper than 3");
}
END_TEST

static Suite *s_suite (void)
{
    Suite *suite = suite_create ("model");
    TCase *tc;

    tc = tcase_create ("ops");
    tcase_add_checked_fixture (tc, t_setup, t_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_loop_test (tc, test_each_op, 0, 2 * T_SINGLE_OPS);
    tcase_add_test (tc, test_sigmoid_range);
    tcase_add_loop_test (tc, test_models, 0, 4 * T_KINDS);
    tcase_add_loop_test (tc, test_unaligned_weights, 0, 2);
    tcase_add_loop_test (tc, test_input_conversion, 0, 2);
    tcase_add_test (tc, test_workspace_reuse);
    tcase_add_loop_test (tc, test_softmax_sums, 0, 2);
    tcase_add_loop_test (tc, test_argmax_ties, 0, 4);
    suite_add_tcase (suite, tc);

    tc = tcase_create ("refusals");
    tcase_add_checked_fixture (tc, t_setup, t_teardown);
    tcase_set_timeout (tc, 300);
    tcase_add_test (tc, test_wrong_types);
    tcase_add_test (tc, test_bad_header);
    tcase_add_test (tc, test_bad_outputs);
    tcase_add_test (tc, test_bad_ops);
    tcase_add_loop_test (tc, test_scale_ieee, 0, 2);
    tcase_add_test (tc, test_utf8_labels);
    tcase_add_test (tc, test_integer_encodings);
    tcase_add_loop_test (tc, test_truncated, 0, 2);
    tcase_add_test (tc, test_random_bytes);
    tcase_add_loop_test (tc, test_mutations, 0, 4);
    tcase_add_test (tc, test_files);
    suite_add_tcase (suite, tc);

    tc = tcase_create ("columns");
    tcase_add_checked_fixture (tc, t_setup, t_teardown);
    tcase_add_test (tc, test_columns_select);
    tcase_add_test (tc, test_columns_refused);
    suite_add_tcase (suite, tc);
    return suite;
}

int main (void)
{
    return unit_run (s_suite ());
}
