/*  graph.c - check a graph model (format_version 2) and build its graph.

    docs/MODEL_FORMAT.md "Graph models" is the contract.  The loader reads
    the inputs, outputs and constants, then the nodes in order: each input
    must name a tensor defined before (a hash table of names, so the work
    stays about the size of the file), each output a new name.  Every node
    gets its datatypes checked, its attributes read with their defaults and
    ranges, and whether it is static (every present input static, or a
    shape op): a node whose *static* inputs are not static is refused.  The
    rank of a tensor is followed where the loader can know it (inputs,
    constants and what follows from them) so that weights, scales and axes
    are checked at load; the planner (graph_plan.c) checks the rest once the
    shapes are known.

    Constants stay in place in the file's mapping when their bin is 64-byte
    aligned (model_parse_floats and friends); names are copied.  Messages
    name the node: "m.amm: node 12 (gemm '/encoder/MatMul'): input 1 'w'
    must be a constant FP32 [K, N]".
*/
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "graph_impl.h"
#include "utf8.h"

#define S_MAX_CONSTANTS 65536
#define S_MAX_NODES 4096
#define S_NAME_MAX 127      //  tensor names
#define S_DIM_NAME_MAX 31   //  named dimensions
#define S_NODE_NAME_MAX 255 //  the ONNX node's name
#define S_MAX_FIXED (1 << 24)
#define S_MAX_WINDOW 65536 //  kernel, strides, pads, dilations of conv and pools

static const char *const s_op_names[G_OP_COUNT] = {
    [G_ADD] = "add",
    [G_SUB] = "sub",
    [G_MUL] = "mul",
    [G_DIV] = "div",
    [G_POW] = "pow",
    [G_EQUAL] = "equal",
    [G_WHERE] = "where",
    [G_SQRT] = "sqrt",
    [G_RECIPROCAL] = "reciprocal",
    [G_TANH] = "tanh",
    [G_SIGMOID] = "sigmoid",
    [G_ERF] = "erf",
    [G_EXP] = "exp",
    [G_NEG] = "neg",
    [G_RELU] = "relu",
    [G_LEAKY_RELU] = "leaky_relu",
    [G_GELU] = "gelu",
    [G_CAST] = "cast",
    [G_IDENTITY] = "identity",
    [G_SOFTMAX] = "softmax",
    [G_LOG_SOFTMAX] = "log_softmax",
    [G_LAYER_NORM] = "layer_norm",
    [G_BATCH_NORM] = "batch_norm",
    [G_GEMM] = "gemm",
    [G_MATMUL] = "matmul",
    [G_CONV] = "conv",
    [G_MAX_POOL] = "max_pool",
    [G_AVG_POOL] = "avg_pool",
    [G_GLOBAL_AVG_POOL] = "global_avg_pool",
    [G_REDUCE_MEAN] = "reduce_mean",
    [G_ARGMAX] = "argmax",
    [G_RESHAPE] = "reshape",
    [G_FLATTEN] = "flatten",
    [G_TRANSPOSE] = "transpose",
    [G_SQUEEZE] = "squeeze",
    [G_UNSQUEEZE] = "unsqueeze",
    [G_CONCAT] = "concat",
    [G_SPLIT] = "split",
    [G_SLICE] = "slice",
    [G_GATHER] = "gather",
    [G_EXPAND] = "expand",
    [G_RANGE] = "range",
    [G_SHAPE] = "shape",
    [G_CONSTANT_OF_SHAPE] = "constant_of_shape",
};

//  Inputs each op takes (min .. max; outputs 1 but split's)
static const struct {
    int8_t min_in, max_in;
} s_arity[G_OP_COUNT] = {
    [G_ADD] = {2, 2},
    [G_SUB] = {2, 2},
    [G_MUL] = {2, 2},
    [G_DIV] = {2, 2},
    [G_POW] = {2, 2},
    [G_EQUAL] = {2, 2},
    [G_WHERE] = {3, 3},
    [G_SQRT] = {1, 1},
    [G_RECIPROCAL] = {1, 1},
    [G_TANH] = {1, 1},
    [G_SIGMOID] = {1, 1},
    [G_ERF] = {1, 1},
    [G_EXP] = {1, 1},
    [G_NEG] = {1, 1},
    [G_RELU] = {1, 1},
    [G_LEAKY_RELU] = {1, 1},
    [G_GELU] = {1, 1},
    [G_CAST] = {1, 1},
    [G_IDENTITY] = {1, 1},
    [G_SOFTMAX] = {1, 1},
    [G_LOG_SOFTMAX] = {1, 1},
    [G_LAYER_NORM] = {2, 3},
    [G_BATCH_NORM] = {5, 5},
    [G_GEMM] = {2, 3},
    [G_MATMUL] = {2, 2},
    [G_CONV] = {2, 3},
    [G_MAX_POOL] = {1, 1},
    [G_AVG_POOL] = {1, 1},
    [G_GLOBAL_AVG_POOL] = {1, 1},
    [G_REDUCE_MEAN] = {1, 1},
    [G_ARGMAX] = {1, 1},
    [G_RESHAPE] = {2, 2},
    [G_FLATTEN] = {1, 1},
    [G_TRANSPOSE] = {1, 1},
    [G_SQUEEZE] = {1, 2},
    [G_UNSQUEEZE] = {2, 2},
    [G_CONCAT] = {1, 64},
    [G_SPLIT] = {1, 2},
    [G_SLICE] = {3, 5},
    [G_GATHER] = {2, 2},
    [G_EXPAND] = {2, 2},
    [G_RANGE] = {3, 3},
    [G_SHAPE] = {1, 1},
    [G_CONSTANT_OF_SHAPE] = {1, 1},
};

static atomic_uint_fast64_t s_serial = 1;

const char *g_op_name (g_op_t op)
{
    return op < G_OP_COUNT ? s_op_names[op] : "?";
}

//  What the parse holds besides the graph
typedef struct {
    model_parse_t *p;
    graph_t *self;
    int32_t *table; //  hash table of tensor names: tensor index + 1, 0 empty
    size_t table_size;
    size_t tensors_cap;
} s_parse_t;

//  ---------------------------------------------------------------------------
//  Ownership

//  Keeps ptr to free with the graph; returns ptr, or NULL (ptr freed).
static void *s_keep (graph_t *self, void *ptr)
{
    if (!ptr)
        return NULL;
    if (self->n_allocs == self->allocs_cap) {
        size_t cap = self->allocs_cap ? 2 * self->allocs_cap : 64;
        void **allocs = realloc (self->allocs, cap * sizeof (void *));
        if (!allocs) {
            free (ptr);
            return NULL;
        }
        self->allocs = allocs;
        self->allocs_cap = cap;
    }
    self->allocs[self->n_allocs++] = ptr;
    return ptr;
}

//  A NUL-terminated copy of size bytes owned by the graph, or NULL.
static char *s_strdup (graph_t *self, const char *data, size_t size)
{
    char *copy = s_keep (self, malloc (size + 1));
    if (copy) {
        memcpy (copy, data, size);
        copy[size] = 0;
    }
    return copy;
}

//  ---------------------------------------------------------------------------
//  Names

static uint64_t s_hash (const char *data, size_t size)
{
    uint64_t hash = 1469598103934665603ULL;
    for (size_t i = 0; i < size; i++)
        hash = (hash ^ (unsigned char)data[i]) * 1099511628211ULL;
    return hash;
}

//  Slot of name in the table: where it is, or the empty slot where it goes.
static size_t s_slot (s_parse_t *ps, const char *data, size_t size)
{
    size_t mask = ps->table_size - 1;
    size_t slot = (size_t)s_hash (data, size) & mask;
    while (ps->table[slot]) {
        const char *name = ps->self->tensors[ps->table[slot] - 1].name;
        if (strlen (name) == size && memcmp (name, data, size) == 0)
            break;
        slot = (slot + 1) & mask;
    }
    return slot;
}

//  Index of the tensor called name, or -1.
static int32_t s_find (s_parse_t *ps, const char *data, size_t size)
{
    return ps->table[s_slot (ps, data, size)] - 1;
}

//  Is data a tensor name: 1 .. 127 bytes of UTF-8 without control characters?
static bool s_name_ok (const char *data, size_t size, size_t max)
{
    if (size < 1 || size > max || !utf8_valid ((const uint8_t *)data, size))
        return false;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c == 0xc2 && i + 1 < size && (unsigned char)data[i + 1] < 0xa0)
            return false; //  U+0080 .. U+009F
    }
    return true;
}

//  Checks that obj is a name str (what says what for the message)
static int s_check_name (s_parse_t *ps, const msgpack_object *obj, size_t max, const char *what)
{
    if (obj->type != MSGPACK_OBJECT_STR)
        return model_parse_fail (ps->p, "%s has type %s, expected str", what,
                                 codec_mp_type_name (obj->type));
    if (!s_name_ok (obj->via.str.ptr, obj->via.str.size, max)) {
        char quoted[200];
        return model_parse_fail (
            ps->p, "%s \"%s\" must be 1..%zu bytes of UTF-8 without control characters", what,
            model_parse_quote (obj->via.str.ptr, obj->via.str.size, quoted, sizeof quoted), max);
    }
    return 0;
}

//  Defines a new tensor called by the str obj.  Returns its index, or -1
//  after a message (a bad name, or one defined before).
static int32_t s_define (s_parse_t *ps, const msgpack_object *obj, const char *what,
                         amaas_dtype_t dtype, g_from_t from, int32_t index)
{
    if (s_check_name (ps, obj, S_NAME_MAX, what))
        return -1;
    const char *data = obj->via.str.ptr;
    size_t size = obj->via.str.size;
    size_t slot = s_slot (ps, data, size);
    if (ps->table[slot]) {
        char quoted[200];
        const g_tensor_t *other = &ps->self->tensors[ps->table[slot] - 1];
        const char *by = other->from == G_FROM_INPUT      ? "a graph input"
                         : other->from == G_FROM_CONSTANT ? "a constant"
                                                          : "an earlier node";
        model_parse_fail (ps->p, "%s \"%s\" is defined twice (also by %s)", what,
                          model_parse_quote (data, size, quoted, sizeof quoted), by);
        return -1;
    }
    graph_t *self = ps->self;
    if (self->n_tensors >= ps->tensors_cap) { //  cannot happen: counted before
        model_parse_fail (ps->p, "too many tensors");
        return -1;
    }
    g_tensor_t *tensor = &self->tensors[self->n_tensors];
    memset (tensor, 0, sizeof *tensor);
    tensor->name = s_strdup (self, data, size);
    if (!tensor->name) {
        model_parse_fail (ps->p, "out of memory");
        return -1;
    }
    tensor->dtype = dtype;
    tensor->from = from;
    tensor->index = index;
    tensor->ndim = -1;
    tensor->last_use = -1;
    ps->table[slot] = (int32_t)self->n_tensors + 1;
    return (int32_t)self->n_tensors++;
}

//  ---------------------------------------------------------------------------
//  Inputs, outputs, constants

//  Datatype from a str among those allowed (a mask of 1 << dtype)
static amaas_dtype_t s_dtype (s_parse_t *ps, const msgpack_object *map, const char *key,
                              unsigned allowed, const char *expected)
{
    const msgpack_object *obj = codec_mp_find (map, key);
    if (!obj) {
        model_parse_fail (ps->p, "missing key \"%s\"", key);
        return AMAAS_DTYPE_INVALID;
    }
    amaas_dtype_t dtype = AMAAS_DTYPE_INVALID;
    if (obj->type == MSGPACK_OBJECT_STR)
        dtype = amaas_dtype_from_name (obj->via.str.ptr, obj->via.str.size);
    if (dtype == AMAAS_DTYPE_INVALID || !(allowed & (1u << dtype))) {
        char quoted[200];
        if (obj->type == MSGPACK_OBJECT_STR)
            model_parse_fail (
                ps->p, "\"%s\" \"%s\" is not %s", key,
                model_parse_quote (obj->via.str.ptr, obj->via.str.size, quoted, sizeof quoted),
                expected);
        else
            model_parse_fail (ps->p, "\"%s\" has type %s, expected str", key,
                              codec_mp_type_name (obj->type));
        return AMAAS_DTYPE_INVALID;
    }
    return dtype;
}

#define S_TYPES_IO ((1u << AMAAS_FP32) | (1u << AMAAS_INT64))
#define S_TYPES_ALL ((1u << AMAAS_FP32) | (1u << AMAAS_INT64) | (1u << AMAAS_BOOL))

//  One entry of inputs or outputs: its declared shape into io, the batch's
//  name checked against *batch (set by the first)
static int s_parse_io (s_parse_t *ps, const msgpack_object *entry, graph_io_t *io,
                       const msgpack_object **batch)
{
    if (model_parse_map (ps->p, entry, "the entry"))
        return -1;
    io->datatype = s_dtype (ps, entry, "datatype", S_TYPES_IO, "FP32 or INT64");
    if (io->datatype == AMAAS_DTYPE_INVALID)
        return -1;
    const msgpack_object *shape = codec_mp_find (entry, "shape");
    if (!shape || shape->type != MSGPACK_OBJECT_ARRAY)
        return model_parse_fail (ps->p, "\"shape\" must be an array of dimensions");
    uint32_t ndim = shape->via.array.size;
    if (ndim < 1 || ndim > GRAPH_MAX_DIMS)
        return model_parse_fail (ps->p, "\"shape\" has %u dimensions, expected 1..%d", ndim,
                                 GRAPH_MAX_DIMS);
    io->ndim = (int)ndim;
    for (uint32_t d = 0; d < ndim; d++) {
        const msgpack_object *dim = &shape->via.array.ptr[d];
        io->dim_names[d] = NULL;
        if (dim->type == MSGPACK_OBJECT_POSITIVE_INTEGER && d > 0) {
            if (dim->via.u64 < 1 || dim->via.u64 > S_MAX_FIXED)
                return model_parse_fail (ps->p, "shape[%u] is %llu, expected 1..%d", d,
                                         (unsigned long long)dim->via.u64, S_MAX_FIXED);
            io->dims[d] = (int64_t)dim->via.u64;
        } else if (dim->type == MSGPACK_OBJECT_STR) {
            if (s_check_name (ps, dim, S_DIM_NAME_MAX, "a dimension name"))
                return -1;
            io->dims[d] = -1;
            io->dim_names[d] = s_strdup (ps->self, dim->via.str.ptr, dim->via.str.size);
            if (!io->dim_names[d])
                return model_parse_fail (ps->p, "out of memory");
        } else if (d == 0)
            return model_parse_fail (ps->p, "shape[0] must be the batch, a named dimension (str)");
        else
            return model_parse_fail (ps->p, "shape[%u] has type %s, expected uint or str", d,
                                     codec_mp_type_name (dim->type));
    }
    const msgpack_object *first = &shape->via.array.ptr[0];
    if (!*batch)
        *batch = first;
    else if (!codec_mp_same_str (*batch, first)) {
        char a[200], b[200];
        return model_parse_fail (
            ps->p, "shape[0] \"%s\" is not the batch \"%s\" of inputs[0]",
            model_parse_quote (first->via.str.ptr, first->via.str.size, a, sizeof a),
            model_parse_quote ((*batch)->via.str.ptr, (*batch)->via.str.size, b, sizeof b));
    }
    //  The batch names no other dimension
    for (uint32_t d = 1; d < ndim; d++)
        if (io->dim_names[d] && codec_mp_same_str (&shape->via.array.ptr[d], first))
            return model_parse_fail (ps->p, "shape[%u] is the batch; only shape[0] may be", d);
    return 0;
}

static int s_parse_inputs (s_parse_t *ps, const msgpack_object *root, const msgpack_object **batch)
{
    graph_t *self = ps->self;
    const msgpack_object *inputs = codec_mp_find (root, "inputs");
    if (!inputs || inputs->type != MSGPACK_OBJECT_ARRAY)
        return model_parse_fail (ps->p, "\"inputs\" must be an array of maps");
    uint32_t count = inputs->via.array.size;
    if (count < 1 || count > GRAPH_MAX_INPUTS)
        return model_parse_fail (ps->p, "\"inputs\" has %u entries, expected 1..%d", count,
                                 GRAPH_MAX_INPUTS);
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *entry = &inputs->via.array.ptr[i];
        graph_io_t *io = &self->inputs[i];
        model_parse_where (ps->p, "inputs[%u]", i);
        if (s_parse_io (ps, entry, io, batch))
            return -1;
        const msgpack_object *name = codec_mp_find (entry, "name");
        if (!name)
            return model_parse_fail (ps->p, "missing key \"name\"");
        int32_t t = s_define (ps, name, "name", io->datatype, G_FROM_INPUT, (int32_t)i);
        if (t < 0)
            return -1;
        io->name = self->tensors[t].name;
        self->tensors[t].ndim = io->ndim;
        self->input_tensor[i] = t;
    }
    self->n_inputs = count;
    return 0;
}

//  The outputs (after the nodes: they name tensors of the graph)
static int s_parse_outputs (s_parse_t *ps, const msgpack_object *root, const msgpack_object **batch)
{
    graph_t *self = ps->self;
    const msgpack_object *outputs = codec_mp_find (root, "outputs");
    if (!outputs || outputs->type != MSGPACK_OBJECT_ARRAY)
        return model_parse_fail (ps->p, "\"outputs\" must be an array of maps");
    uint32_t count = outputs->via.array.size;
    if (count < 1 || count > GRAPH_MAX_OUTPUTS)
        return model_parse_fail (ps->p, "\"outputs\" has %u entries, expected 1..%d", count,
                                 GRAPH_MAX_OUTPUTS);
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *entry = &outputs->via.array.ptr[i];
        graph_io_t *io = &self->outputs[i];
        model_parse_where (ps->p, "outputs[%u]", i);
        if (s_parse_io (ps, entry, io, batch))
            return -1;
        const msgpack_object *name = codec_mp_find (entry, "name");
        if (!name)
            return model_parse_fail (ps->p, "missing key \"name\"");
        if (s_check_name (ps, name, S_NAME_MAX, "name"))
            return -1;
        char quoted[200];
        int32_t t = s_find (ps, name->via.str.ptr, name->via.str.size);
        if (t < 0)
            return model_parse_fail (
                ps->p, "\"%s\" is not a tensor of the graph",
                model_parse_quote (name->via.str.ptr, name->via.str.size, quoted, sizeof quoted));
        g_tensor_t *tensor = &self->tensors[t];
        if (tensor->dtype != io->datatype)
            return model_parse_fail (
                ps->p, "\"%s\" is %s, declared %s",
                model_parse_quote (name->via.str.ptr, name->via.str.size, quoted, sizeof quoted),
                amaas_dtype_name (tensor->dtype), amaas_dtype_name (io->datatype));
        if (tensor->ndim >= 0 && tensor->ndim != io->ndim)
            return model_parse_fail (
                ps->p, "\"%s\" has %d dimensions, declared %d",
                model_parse_quote (name->via.str.ptr, name->via.str.size, quoted, sizeof quoted),
                tensor->ndim, io->ndim);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp (self->outputs[j].name, tensor->name) == 0)
                return model_parse_fail (ps->p, "\"%s\" is also outputs[%u]", tensor->name, j);
        io->name = tensor->name;
        self->output_tensor[i] = t;
        tensor->last_use = INT32_MAX; //  alive to the end of the run
    }
    self->n_outputs = count;
    return 0;
}

static int s_parse_constants (s_parse_t *ps, const msgpack_object *constants)
{
    graph_t *self = ps->self;
    uint32_t count = constants ? constants->via.array.size : 0;
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *entry = &constants->via.array.ptr[i];
        model_parse_where (ps->p, "constants[%u]", i);
        if (model_parse_map (ps->p, entry, "the constant"))
            return -1;
        amaas_dtype_t dtype = s_dtype (ps, entry, "datatype", S_TYPES_ALL, "FP32, INT64 or BOOL");
        if (dtype == AMAAS_DTYPE_INVALID)
            return -1;
        const msgpack_object *shape = codec_mp_find (entry, "shape");
        if (!shape || shape->type != MSGPACK_OBJECT_ARRAY)
            return model_parse_fail (ps->p, "\"shape\" must be an array of uints");
        uint32_t ndim = shape->via.array.size;
        if (ndim > GRAPH_MAX_DIMS)
            return model_parse_fail (ps->p, "\"shape\" has %u dimensions, at most %d", ndim,
                                     GRAPH_MAX_DIMS);
        int64_t dims[GRAPH_MAX_DIMS];
        size_t count_elems = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            const msgpack_object *dim = &shape->via.array.ptr[d];
            if (dim->type != MSGPACK_OBJECT_POSITIVE_INTEGER || dim->via.u64 > G_MAX_ELEMENTS)
                return model_parse_fail (ps->p, "shape[%u] must be a uint up to 2^31", d);
            dims[d] = (int64_t)dim->via.u64;
            if (__builtin_mul_overflow (count_elems, (size_t)dims[d], &count_elems) ||
                count_elems > (size_t)G_MAX_ELEMENTS)
                return model_parse_fail (ps->p, "\"shape\" has more than 2^31 elements");
        }
        const msgpack_object *name = codec_mp_find (entry, "name");
        if (!name)
            return model_parse_fail (ps->p, "missing key \"name\"");
        int32_t t = s_define (ps, name, "name", dtype, G_FROM_CONSTANT, (int32_t)i);
        if (t < 0)
            return -1;
        g_tensor_t *tensor = &self->tensors[t];
        model_parse_where (ps->p, "constants[%u] '%.120s'", i, tensor->name);
        tensor->ndim = (int)ndim;
        memcpy (tensor->dims, dims, ndim * sizeof (int64_t));
        tensor->is_static = true;
        int rc;
        if (dtype == AMAAS_FP32) {
            //  Not read: a large model loads without touching its weights,
            //  and any value is valid (an additive mask of -inf)
            rc = model_parse_floats (ps->p, entry, "data", count_elems, &tensor->data);
        } else if (dtype == AMAAS_INT64)
            rc = model_parse_int64 (ps->p, entry, "data", count_elems,
                                    (const int64_t **)&tensor->data);
        else
            rc = model_parse_bools (ps->p, entry, "data", count_elems,
                                    (const uint8_t **)&tensor->data);
        if (rc)
            return -1;
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  Attributes: absent takes the default; present must have the type and range

static int s_attr_int (s_parse_t *ps, const msgpack_object *map, const char *key, int64_t low,
                       int64_t high, int64_t *value)
{
    const msgpack_object *obj = codec_mp_find (map, key);
    if (!obj)
        return 0;
    int64_t v;
    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        v = obj->via.i64;
    else if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        v = obj->via.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)obj->via.u64;
    else
        return model_parse_fail (ps->p, "attribute \"%s\" has type %s, expected int", key,
                                 codec_mp_type_name (obj->type));
    if (v < low || v > high)
        return model_parse_fail (ps->p, "attribute \"%s\" is %lld, expected %lld..%lld", key,
                                 (long long)v, (long long)low, (long long)high);
    *value = v;
    return 0;
}

static int s_attr_bool (s_parse_t *ps, const msgpack_object *map, const char *key, bool *value)
{
    const msgpack_object *obj = codec_mp_find (map, key);
    if (!obj)
        return 0;
    if (obj->type != MSGPACK_OBJECT_BOOLEAN)
        return model_parse_fail (ps->p, "attribute \"%s\" has type %s, expected bool", key,
                                 codec_mp_type_name (obj->type));
    *value = obj->via.boolean;
    return 0;
}

static int s_attr_number (s_parse_t *ps, const msgpack_object *map, const char *key, double *value)
{
    if (!codec_mp_find (map, key))
        return 0;
    return model_parse_number (ps->p, map, key, value);
}

//  A str attribute among names[] (NULL-ended): *index
static int s_attr_enum (s_parse_t *ps, const msgpack_object *map, const char *key,
                        const char *const *names, int *index)
{
    const msgpack_object *obj = codec_mp_find (map, key);
    if (!obj)
        return 0;
    if (obj->type != MSGPACK_OBJECT_STR)
        return model_parse_fail (ps->p, "attribute \"%s\" has type %s, expected str", key,
                                 codec_mp_type_name (obj->type));
    for (int i = 0; names[i]; i++)
        if (codec_mp_str_is (obj, names[i])) {
            *index = i;
            return 0;
        }
    char quoted[200], list[200] = "";
    for (int i = 0; names[i]; i++)
        snprintf (list + strlen (list), sizeof list - strlen (list), "%s%s", i ? ", " : "",
                  names[i]);
    return model_parse_fail (
        ps->p, "attribute \"%s\" is \"%s\", expected one of %s", key,
        model_parse_quote (obj->via.str.ptr, obj->via.str.size, quoted, sizeof quoted), list);
}

//  An array attribute of min .. max ints in low .. high: *count, values
static int s_attr_ints (s_parse_t *ps, const msgpack_object *map, const char *key, int min, int max,
                        int64_t low, int64_t high, int *count, int64_t *values)
{
    const msgpack_object *obj = codec_mp_find (map, key);
    if (!obj)
        return 0;
    if (obj->type != MSGPACK_OBJECT_ARRAY)
        return model_parse_fail (ps->p, "attribute \"%s\" has type %s, expected array", key,
                                 codec_mp_type_name (obj->type));
    uint32_t n = obj->via.array.size;
    if (n < (uint32_t)min || n > (uint32_t)max) {
        if (min == max)
            return model_parse_fail (ps->p, "attribute \"%s\" has %u entries, expected %d", key, n,
                                     min);
        return model_parse_fail (ps->p, "attribute \"%s\" has %u entries, expected %d..%d", key, n,
                                 min, max);
    }
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &obj->via.array.ptr[i];
        int64_t v;
        if (e->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            v = e->via.i64;
        else if (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER && e->via.u64 <= (uint64_t)INT64_MAX)
            v = (int64_t)e->via.u64;
        else
            return model_parse_fail (ps->p, "attribute \"%s\"[%u] has type %s, expected int", key,
                                     i, codec_mp_type_name (e->type));
        if (v < low || v > high)
            return model_parse_fail (ps->p, "attribute \"%s\"[%u] is %lld, expected %lld..%lld",
                                     key, i, (long long)v, (long long)low, (long long)high);
        values[i] = v;
    }
    *count = (int)n;
    return 0;
}

//  A fixed-length window attribute (strides, pads, ...)
static int s_attr_window (s_parse_t *ps, const msgpack_object *map, const char *key, int n,
                          int64_t low, int64_t *values)
{
    int count = n;
    return s_attr_ints (ps, map, key, n, n, low, S_MAX_WINDOW, &count, values);
}

static const char *const s_act_names[] = {"none",    "relu", "leaky_relu", "tanh",
                                          "sigmoid", "gelu", "gelu_tanh",  NULL};
static const gk_act_t s_acts[] = {GK_ACT_NONE,    GK_ACT_RELU, GK_ACT_LEAKY_RELU, GK_ACT_TANH,
                                  GK_ACT_SIGMOID, GK_ACT_GELU, GK_ACT_GELU_TANH};

//  ---------------------------------------------------------------------------
//  Nodes

//  "input 1 'w'" for messages
static const char *s_input_text (const graph_t *self, const g_node_t *node, int i, char *buf,
                                 size_t size)
{
    int32_t t = node->in[i];
    snprintf (buf, size, "input %d '%.120s'", i, t >= 0 ? self->tensors[t].name : "");
    return buf;
}

//  Checks input i's datatype against the mask allowed
static int s_want_dtype (s_parse_t *ps, const g_node_t *node, int i, unsigned allowed,
                         const char *expected)
{
    int32_t t = node->in[i];
    if (t < 0)
        return 0;
    amaas_dtype_t dtype = ps->self->tensors[t].dtype;
    if (!(allowed & (1u << dtype))) {
        char text[200];
        return model_parse_fail (ps->p, "%s is %s, expected %s",
                                 s_input_text (ps->self, node, i, text, sizeof text),
                                 amaas_dtype_name (dtype), expected);
    }
    return 0;
}

//  Checks input i is present (not "")
static int s_want_present (s_parse_t *ps, const g_node_t *node, int i)
{
    if (node->in[i] < 0)
        return model_parse_fail (ps->p, "input %d is required", i);
    return 0;
}

//  Checks that input i (when present) is a static INT64 [k]; rank and
//  element count when known
static int s_want_static_ints (s_parse_t *ps, const g_node_t *node, int i)
{
    int32_t t = node->in[i];
    if (t < 0)
        return 0;
    const g_tensor_t *tensor = &ps->self->tensors[t];
    char text[200];
    s_input_text (ps->self, node, i, text, sizeof text);
    if (tensor->dtype != AMAAS_INT64)
        return model_parse_fail (ps->p, "%s is %s, expected INT64", text,
                                 amaas_dtype_name (tensor->dtype));
    if (!tensor->is_static)
        return model_parse_fail (
            ps->p, "%s must be static (computed from shapes and constants only)", text);
    if (tensor->ndim >= 0 && tensor->ndim != 1)
        return model_parse_fail (ps->p, "%s has %d dimensions, expected 1", text, tensor->ndim);
    return 0;
}

//  Checks input i is a constant FP32 of rank ndim; dims[d] when >= 0 must match
static int s_want_weight (s_parse_t *ps, const g_node_t *node, int i, int ndim, const int64_t *dims,
                          const char *shape_text)
{
    int32_t t = node->in[i];
    const g_tensor_t *tensor = &ps->self->tensors[t];
    bool ok =
        tensor->from == G_FROM_CONSTANT && tensor->dtype == AMAAS_FP32 && tensor->ndim == ndim;
    for (int d = 0; ok && dims && d < ndim; d++)
        ok = dims[d] < 0 || dims[d] == tensor->dims[d];
    if (!ok) {
        char text[200];
        return model_parse_fail (ps->p, "%s must be a constant FP32 %s",
                                 s_input_text (ps->self, node, i, text, sizeof text), shape_text);
    }
    return 0;
}

//  Normalizes axis of a tensor of rank ndim (when known) into 0 .. ndim - 1
static int s_check_axis (s_parse_t *ps, const char *key, int64_t axis, int ndim)
{
    if (ndim >= 0 && (axis < -ndim || axis >= (ndim ? ndim : 1)))
        return model_parse_fail (ps->p, "attribute \"%s\" is %lld, expected %d..%d for rank %d",
                                 key, (long long)axis, -ndim, ndim ? ndim - 1 : 0, ndim);
    return 0;
}

//  Rank of input i (-1 unknown or absent)
static int s_rank (const s_parse_t *ps, const g_node_t *node, int i)
{
    return i < node->n_in && node->in[i] >= 0 ? ps->self->tensors[node->in[i]].ndim : -1;
}

//  Length of a static INT64 [k] input known at load (a constant), else -1
static int64_t s_const_len (const s_parse_t *ps, const g_node_t *node, int i)
{
    if (i >= node->n_in || node->in[i] < 0)
        return -1;
    const g_tensor_t *tensor = &ps->self->tensors[node->in[i]];
    return tensor->from == G_FROM_CONSTANT && tensor->ndim == 1 ? tensor->dims[0] : -1;
}

//  Checks the op's inputs and attributes; sets the outputs' datatype and rank
static int s_check_node (s_parse_t *ps, g_node_t *node, const msgpack_object *map)
{
    graph_t *self = ps->self;
    const unsigned fp = 1u << AMAAS_FP32, i64 = 1u << AMAAS_INT64, boolean = 1u << AMAAS_BOOL;
    const unsigned num = fp | i64;
    amaas_dtype_t out_dtype = AMAAS_DTYPE_INVALID;
    int out_rank = -1;
    int r0 = s_rank (ps, node, 0);
    char text[200];
    //  Required inputs: all but the optional ones listed per op below
    for (int i = 0; i < node->n_in; i++) {
        bool optional =
            ((node->op == G_LAYER_NORM || node->op == G_GEMM || node->op == G_CONV) && i == 2) ||
            ((node->op == G_SQUEEZE || node->op == G_SPLIT) && i == 1) ||
            (node->op == G_SLICE && i >= 3);
        if (!optional && s_want_present (ps, node, i))
            return -1;
    }
    amaas_dtype_t d0 = node->in[0] >= 0 ? self->tensors[node->in[0]].dtype : AMAAS_FP32;
    switch (node->op) {
    case G_ADD:
    case G_SUB:
    case G_MUL:
    case G_DIV:
    case G_EQUAL: {
        unsigned allowed = node->op == G_EQUAL ? num | boolean : num;
        const char *expected = node->op == G_EQUAL ? "FP32, INT64 or BOOL" : "FP32 or INT64";
        if (s_want_dtype (ps, node, 0, allowed, expected) ||
            s_want_dtype (ps, node, 1, allowed, expected))
            return -1;
        if (self->tensors[node->in[1]].dtype != d0)
            return model_parse_fail (ps->p, "%s is %s, input 0 is %s: they must be alike",
                                     s_input_text (self, node, 1, text, sizeof text),
                                     amaas_dtype_name (self->tensors[node->in[1]].dtype),
                                     amaas_dtype_name (d0));
        out_dtype = node->op == G_EQUAL ? AMAAS_BOOL : d0;
        int r1 = s_rank (ps, node, 1);
        out_rank = r0 >= 0 && r1 >= 0 ? (r0 > r1 ? r0 : r1) : -1;
        break;
    }
    case G_POW: {
        if (s_want_dtype (ps, node, 0, fp, "FP32") || s_want_dtype (ps, node, 1, fp, "FP32"))
            return -1;
        out_dtype = AMAAS_FP32;
        int r1 = s_rank (ps, node, 1);
        out_rank = r0 >= 0 && r1 >= 0 ? (r0 > r1 ? r0 : r1) : -1;
        break;
    }
    case G_WHERE: {
        if (s_want_dtype (ps, node, 0, boolean, "BOOL") ||
            s_want_dtype (ps, node, 1, num, "FP32 or INT64") ||
            s_want_dtype (ps, node, 2, num, "FP32 or INT64"))
            return -1;
        amaas_dtype_t da = self->tensors[node->in[1]].dtype;
        if (self->tensors[node->in[2]].dtype != da)
            return model_parse_fail (ps->p, "inputs 1 and 2 must have one datatype");
        out_dtype = da;
        int r1 = s_rank (ps, node, 1), r2 = s_rank (ps, node, 2);
        out_rank = r0 >= 0 && r1 >= 0 && r2 >= 0 ? r0 : -1;
        if (out_rank >= 0 && r1 > out_rank)
            out_rank = r1;
        if (out_rank >= 0 && r2 > out_rank)
            out_rank = r2;
        break;
    }
    case G_SQRT:
    case G_RECIPROCAL:
    case G_TANH:
    case G_SIGMOID:
    case G_ERF:
    case G_EXP:
    case G_RELU:
    case G_LEAKY_RELU:
    case G_GELU: {
        if (s_want_dtype (ps, node, 0, fp, "FP32"))
            return -1;
        out_dtype = AMAAS_FP32;
        out_rank = r0;
        double alpha = 0.01;
        if (node->op == G_LEAKY_RELU && s_attr_number (ps, map, "alpha", &alpha))
            return -1;
        node->alpha = (float)alpha;
        node->act = node->op == G_RELU         ? GK_ACT_RELU
                    : node->op == G_LEAKY_RELU ? GK_ACT_LEAKY_RELU
                    : node->op == G_TANH       ? GK_ACT_TANH
                    : node->op == G_SIGMOID    ? GK_ACT_SIGMOID
                                               : GK_ACT_GELU;
        if (node->op == G_GELU) {
            static const char *const names[] = {"none", "tanh", NULL};
            int which = 0;
            if (s_attr_enum (ps, map, "approximate", names, &which))
                return -1;
            node->act = which ? GK_ACT_GELU_TANH : GK_ACT_GELU;
        }
        break;
    }
    case G_NEG:
        if (s_want_dtype (ps, node, 0, num, "FP32 or INT64"))
            return -1;
        out_dtype = d0;
        out_rank = r0;
        break;
    case G_CAST: {
        static const char *const names[] = {"FP32", "INT64", "BOOL", NULL};
        static const amaas_dtype_t types[] = {AMAAS_FP32, AMAAS_INT64, AMAAS_BOOL};
        int which = -1;
        if (!codec_mp_find (map, "to"))
            return model_parse_fail (ps->p, "attribute \"to\" is required");
        if (s_attr_enum (ps, map, "to", names, &which))
            return -1;
        node->to = types[which];
        out_dtype = node->to;
        out_rank = r0;
        break;
    }
    case G_IDENTITY:
        out_dtype = d0;
        out_rank = r0;
        break;
    case G_SOFTMAX:
    case G_LOG_SOFTMAX:
        node->axis = -1;
        if (s_want_dtype (ps, node, 0, fp, "FP32") ||
            s_attr_int (ps, map, "axis", -GRAPH_MAX_DIMS, GRAPH_MAX_DIMS - 1, &node->axis) ||
            s_check_axis (ps, "axis", node->axis, r0))
            return -1;
        out_dtype = AMAAS_FP32;
        out_rank = r0;
        break;
    case G_LAYER_NORM: {
        node->axis = -1;
        double eps = 1e-5;
        if (s_want_dtype (ps, node, 0, fp, "FP32") || s_want_dtype (ps, node, 1, fp, "FP32") ||
            (node->n_in > 2 && s_want_dtype (ps, node, 2, fp, "FP32")) ||
            s_attr_int (ps, map, "axis", -GRAPH_MAX_DIMS, GRAPH_MAX_DIMS - 1, &node->axis) ||
            s_check_axis (ps, "axis", node->axis, r0) || s_attr_number (ps, map, "epsilon", &eps))
            return -1;
        if (eps < 0)
            return model_parse_fail (ps->p, "attribute \"epsilon\" is %g, expected >= 0", eps);
        node->epsilon = (float)eps;
        out_dtype = AMAAS_FP32;
        out_rank = r0;
        break;
    }
    case G_BATCH_NORM: {
        double eps = 1e-5;
        if (s_want_dtype (ps, node, 0, fp, "FP32") || s_attr_number (ps, map, "epsilon", &eps))
            return -1;
        if (eps < 0)
            return model_parse_fail (ps->p, "attribute \"epsilon\" is %g, expected >= 0", eps);
        node->epsilon = (float)eps;
        if (s_want_weight (ps, node, 1, 1, NULL, "[C]"))
            return -1;
        int64_t c[1] = {self->tensors[node->in[1]].dims[0]};
        for (int i = 2; i < 5; i++)
            if (s_want_weight (ps, node, i, 1, c, "[C], C as the scale's"))
                return -1;
        if (r0 >= 0 && r0 < 2)
            return model_parse_fail (ps->p, "input 0 has %d dimensions, expected [N, C, ...]", r0);
        size_t n = (size_t)c[0];
        float *mul = s_keep (self, malloc ((n ? n : 1) * sizeof (float)));
        float *add = s_keep (self, malloc ((n ? n : 1) * sizeof (float)));
        if (!mul || !add)
            return model_parse_fail (ps->p, "out of memory");
        const float *scale = self->tensors[node->in[1]].data,
                    *bias = self->tensors[node->in[2]].data;
        const float *mean = self->tensors[node->in[3]].data, *var = self->tensors[node->in[4]].data;
        for (size_t k = 0; k < n; k++) {
            double v = (double)var[k] + eps;
            if (!(v > 0))
                return model_parse_fail (ps->p, "var[%zu] + epsilon is %g, expected > 0", k, v);
            mul[k] = (float)(scale[k] / sqrt (v));
            add[k] = (float)(bias[k] - mean[k] * (double)mul[k]);
        }
        node->mul = mul;
        node->add = add;
        out_dtype = AMAAS_FP32;
        out_rank = r0;
        break;
    }
    case G_GEMM: {
        int which = 0;
        double alpha = 0.01;
        if (s_want_dtype (ps, node, 0, fp, "FP32") ||
            s_want_weight (ps, node, 1, 2, NULL, "[K, N]"))
            return -1;
        int64_t n[1] = {self->tensors[node->in[1]].dims[1]};
        if (node->n_in > 2 && node->in[2] >= 0 && s_want_weight (ps, node, 2, 1, n, "[N]"))
            return -1;
        if (s_attr_enum (ps, map, "activation", s_act_names, &which) ||
            s_attr_number (ps, map, "alpha", &alpha))
            return -1;
        if (r0 == 0)
            return model_parse_fail (ps->p, "input 0 is a scalar, expected [..., K]");
        node->act = s_acts[which];
        node->alpha = (float)alpha;
        out_dtype = AMAAS_FP32;
        out_rank = r0;
        break;
    }
    case G_MATMUL: {
        if (s_want_dtype (ps, node, 0, fp, "FP32") || s_want_dtype (ps, node, 1, fp, "FP32") ||
            s_attr_bool (ps, map, "trans_a", &node->trans_a) ||
            s_attr_bool (ps, map, "trans_b", &node->trans_b))
            return -1;
        int r1 = s_rank (ps, node, 1);
        for (int i = 0; i < 2; i++) {
            int r = i ? r1 : r0;
            if (r >= 0 && r < 2)
                return model_parse_fail (ps->p, "%s has %d dimensions, expected at least 2",
                                         s_input_text (self, node, i, text, sizeof text), r);
        }
        out_dtype = AMAAS_FP32;
        out_rank = r0 >= 0 && r1 >= 0 ? (r0 > r1 ? r0 : r1) : -1;
        break;
    }
    case G_CONV: {
        int which = 0, count = 0;
        double alpha = 0.01;
        int64_t group = 1;
        if (s_want_dtype (ps, node, 0, fp, "FP32") ||
            s_want_weight (ps, node, 1, 4, NULL, "[M, C/group, kh, kw]"))
            return -1;
        const g_tensor_t *w = &self->tensors[node->in[1]];
        int64_t m[1] = {w->dims[0]};
        if (node->n_in > 2 && node->in[2] >= 0 && s_want_weight (ps, node, 2, 1, m, "[M]"))
            return -1;
        node->strides[0] = node->strides[1] = 1;
        node->dilations[0] = node->dilations[1] = 1;
        memset (node->pads, 0, sizeof node->pads);
        if (s_attr_window (ps, map, "strides", 2, 1, node->strides) ||
            s_attr_window (ps, map, "pads", 4, 0, node->pads) ||
            s_attr_window (ps, map, "dilations", 2, 1, node->dilations) ||
            s_attr_int (ps, map, "group", 1, S_MAX_FIXED, &group) ||
            s_attr_enum (ps, map, "activation", s_act_names, &which) ||
            s_attr_number (ps, map, "alpha", &alpha))
            return -1;
        (void)count;
        if (w->dims[0] == 0 || w->dims[1] == 0 || w->dims[2] == 0 || w->dims[3] == 0)
            return model_parse_fail (ps->p, "input 1 has a dimension of 0");
        if (w->dims[0] % group)
            return model_parse_fail (ps->p, "M = %lld is not divisible by group %lld",
                                     (long long)w->dims[0], (long long)group);
        if (r0 >= 0 && r0 != 4)
            return model_parse_fail (ps->p, "input 0 has %d dimensions, expected [N, C, H, W]", r0);
        node->group = group;
        node->kernel[0] = w->dims[2];
        node->kernel[1] = w->dims[3];
        node->act = s_acts[which];
        node->alpha = (float)alpha;
        out_dtype = AMAAS_FP32;
        out_rank = 4;
        break;
    }
    case G_MAX_POOL:
    case G_AVG_POOL: {
        if (s_want_dtype (ps, node, 0, fp, "FP32"))
            return -1;
        if (!codec_mp_find (map, "kernel"))
            return model_parse_fail (ps->p, "attribute \"kernel\" is required");
        node->strides[0] = node->strides[1] = 1;
        node->dilations[0] = node->dilations[1] = 1;
        memset (node->pads, 0, sizeof node->pads);
        if (s_attr_window (ps, map, "kernel", 2, 1, node->kernel) ||
            s_attr_window (ps, map, "strides", 2, 1, node->strides) ||
            s_attr_window (ps, map, "pads", 4, 0, node->pads) ||
            s_attr_bool (ps, map, "ceil_mode", &node->ceil_mode))
            return -1;
        if (node->op == G_MAX_POOL && s_attr_window (ps, map, "dilations", 2, 1, node->dilations))
            return -1;
        if (node->op == G_AVG_POOL && codec_mp_find (map, "dilations"))
            return model_parse_fail (ps->p, "attribute \"dilations\" is max_pool's only");
        if (node->op == G_AVG_POOL &&
            s_attr_bool (ps, map, "count_include_pad", &node->count_include_pad))
            return -1;
        for (int d = 0; d < 2; d++)
            if (node->pads[d] >= (node->kernel[d] - 1) * node->dilations[d] + 1 ||
                node->pads[d + 2] >= (node->kernel[d] - 1) * node->dilations[d] + 1)
                return model_parse_fail (ps->p, "pads must be smaller than the kernel's extent");
        if (r0 >= 0 && r0 != 4)
            return model_parse_fail (ps->p, "input 0 has %d dimensions, expected [N, C, H, W]", r0);
        out_dtype = AMAAS_FP32;
        out_rank = 4;
        break;
    }
    case G_GLOBAL_AVG_POOL:
        if (s_want_dtype (ps, node, 0, fp, "FP32"))
            return -1;
        if (r0 >= 0 && r0 < 3)
            return model_parse_fail (
                ps->p, "input 0 has %d dimensions, expected [N, C, ...] of 3 or more", r0);
        out_dtype = AMAAS_FP32;
        out_rank = r0;
        break;
    case G_REDUCE_MEAN: {
        node->keepdims = true;
        node->n_axes = -1;
        if (s_want_dtype (ps, node, 0, fp, "FP32") ||
            s_attr_ints (ps, map, "axes", 0, GRAPH_MAX_DIMS, -GRAPH_MAX_DIMS, GRAPH_MAX_DIMS - 1,
                         &node->n_axes, node->axes) ||
            s_attr_bool (ps, map, "keepdims", &node->keepdims))
            return -1;
        for (int i = 0; i < node->n_axes; i++)
            if (s_check_axis (ps, "axes", node->axes[i], r0))
                return -1;
        if (node->n_axes == 0)
            node->n_axes = -1; //  ONNX: empty axes reduce all (noop_with_empty_axes 0)
        out_dtype = AMAAS_FP32;
        out_rank = r0 < 0 ? -1 : node->keepdims ? r0 : node->n_axes < 0 ? 0 : r0 - node->n_axes;
        if (out_rank < -1)
            out_rank = -1;
        break;
    }
    case G_ARGMAX:
        node->axis = 0;
        node->keepdims = true;
        if (s_want_dtype (ps, node, 0, fp, "FP32") ||
            s_attr_int (ps, map, "axis", -GRAPH_MAX_DIMS, GRAPH_MAX_DIMS - 1, &node->axis) ||
            s_check_axis (ps, "axis", node->axis, r0) ||
            s_attr_bool (ps, map, "keepdims", &node->keepdims) ||
            s_attr_bool (ps, map, "select_last_index", &node->select_last))
            return -1;
        if (r0 == 0)
            return model_parse_fail (ps->p, "input 0 is a scalar");
        out_dtype = AMAAS_INT64;
        out_rank = r0 < 0 ? -1 : node->keepdims ? r0 : r0 - 1;
        break;
    case G_RESHAPE: {
        if (s_want_static_ints (ps, node, 1) ||
            s_attr_bool (ps, map, "allowzero", &node->allowzero))
            return -1;
        int64_t k = s_const_len (ps, node, 1);
        if (k > GRAPH_MAX_DIMS)
            return model_parse_fail (ps->p, "input 1 has %lld dimensions, at most %d", (long long)k,
                                     GRAPH_MAX_DIMS);
        out_dtype = d0;
        out_rank = (int)k;
        break;
    }
    case G_FLATTEN:
        node->axis = 1;
        if (s_attr_int (ps, map, "axis", -GRAPH_MAX_DIMS, GRAPH_MAX_DIMS, &node->axis))
            return -1;
        if (r0 >= 0 && (node->axis < -r0 || node->axis > r0))
            return model_parse_fail (ps->p, "attribute \"axis\" is %lld, expected %d..%d",
                                     (long long)node->axis, -r0, r0);
        out_dtype = d0;
        out_rank = 2;
        break;
    case G_TRANSPOSE: {
        node->n_perm = 0;
        if (s_attr_ints (ps, map, "perm", 0, GRAPH_MAX_DIMS, 0, GRAPH_MAX_DIMS - 1, &node->n_perm,
                         node->perm))
            return -1;
        bool seen[GRAPH_MAX_DIMS] = {false};
        for (int i = 0; i < node->n_perm; i++) {
            if (seen[node->perm[i]] || node->perm[i] >= node->n_perm)
                return model_parse_fail (ps->p, "attribute \"perm\" must hold 0 .. %d each once",
                                         node->n_perm - 1);
            seen[node->perm[i]] = true;
        }
        if (node->n_perm && r0 >= 0 && node->n_perm != r0)
            return model_parse_fail (ps->p, "attribute \"perm\" has %d entries for rank %d",
                                     node->n_perm, r0);
        out_dtype = d0;
        out_rank = r0;
        break;
    }
    case G_SQUEEZE:
    case G_UNSQUEEZE: {
        if (s_want_static_ints (ps, node, 1))
            return -1;
        int64_t k = s_const_len (ps, node, 1);
        out_dtype = d0;
        if (r0 >= 0 && k >= 0)
            out_rank = node->op == G_SQUEEZE ? (int)(r0 - k) : (int)(r0 + k);
        if (out_rank > GRAPH_MAX_DIMS)
            return model_parse_fail (ps->p, "the output would have %d dimensions, at most %d",
                                     out_rank, GRAPH_MAX_DIMS);
        if (out_rank < -1)
            return model_parse_fail (ps->p, "input 1 lists more axes than input 0 has");
        break;
    }
    case G_CONCAT:
        if (!codec_mp_find (map, "axis"))
            return model_parse_fail (ps->p, "attribute \"axis\" is required");
        if (s_attr_int (ps, map, "axis", -GRAPH_MAX_DIMS, GRAPH_MAX_DIMS - 1, &node->axis))
            return -1;
        for (int i = 0; i < node->n_in; i++) {
            if (self->tensors[node->in[i]].dtype != d0)
                return model_parse_fail (ps->p, "%s is %s, input 0 is %s: they must be alike",
                                         s_input_text (self, node, i, text, sizeof text),
                                         amaas_dtype_name (self->tensors[node->in[i]].dtype),
                                         amaas_dtype_name (d0));
            int r = s_rank (ps, node, i);
            if (r >= 0 && r0 >= 0 && r != r0)
                return model_parse_fail (ps->p, "%s has %d dimensions, input 0 %d",
                                         s_input_text (self, node, i, text, sizeof text), r, r0);
        }
        if (s_check_axis (ps, "axis", node->axis, r0))
            return -1;
        if (r0 == 0)
            return model_parse_fail (ps->p, "input 0 is a scalar");
        out_dtype = d0;
        out_rank = r0;
        break;
    case G_SPLIT:
        node->axis = 0;
        if (s_want_static_ints (ps, node, 1) ||
            s_attr_int (ps, map, "axis", -GRAPH_MAX_DIMS, GRAPH_MAX_DIMS - 1, &node->axis) ||
            s_check_axis (ps, "axis", node->axis, r0))
            return -1;
        if (r0 == 0)
            return model_parse_fail (ps->p, "input 0 is a scalar");
        if (s_const_len (ps, node, 1) >= 0 && s_const_len (ps, node, 1) != node->n_out)
            return model_parse_fail (ps->p, "input 1 has %lld sizes for %d outputs",
                                     (long long)s_const_len (ps, node, 1), node->n_out);
        out_dtype = d0;
        out_rank = r0;
        break;
    case G_SLICE:
        for (int i = 1; i < node->n_in; i++)
            if (s_want_static_ints (ps, node, i))
                return -1;
        out_dtype = d0;
        out_rank = r0;
        break;
    case G_GATHER: {
        node->axis = 0;
        if (s_want_dtype (ps, node, 1, i64, "INT64") ||
            s_attr_int (ps, map, "axis", -GRAPH_MAX_DIMS, GRAPH_MAX_DIMS - 1, &node->axis) ||
            s_check_axis (ps, "axis", node->axis, r0))
            return -1;
        if (r0 == 0)
            return model_parse_fail (ps->p, "input 0 is a scalar");
        int r1 = s_rank (ps, node, 1);
        out_dtype = d0;
        out_rank = r0 >= 0 && r1 >= 0 ? r0 + r1 - 1 : -1;
        if (out_rank > GRAPH_MAX_DIMS)
            return model_parse_fail (ps->p, "the output would have %d dimensions, at most %d",
                                     out_rank, GRAPH_MAX_DIMS);
        break;
    }
    case G_EXPAND: {
        if (s_want_static_ints (ps, node, 1))
            return -1;
        int64_t k = s_const_len (ps, node, 1);
        if (k > GRAPH_MAX_DIMS)
            return model_parse_fail (ps->p, "input 1 has %lld dimensions, at most %d", (long long)k,
                                     GRAPH_MAX_DIMS);
        out_dtype = d0;
        out_rank = r0 >= 0 && k >= 0 ? (r0 > k ? r0 : (int)k) : -1;
        break;
    }
    case G_RANGE:
        for (int i = 0; i < 3; i++) {
            const g_tensor_t *t = &self->tensors[node->in[i]];
            s_input_text (self, node, i, text, sizeof text);
            if (t->dtype != d0 || (d0 != AMAAS_FP32 && d0 != AMAAS_INT64))
                return model_parse_fail (ps->p,
                                         "%s is %s: start, limit and delta must all be "
                                         "FP32 or all INT64",
                                         text, amaas_dtype_name (t->dtype));
            if (!t->is_static)
                return model_parse_fail (
                    ps->p, "%s must be static (computed from shapes and constants only)", text);
            if (t->ndim > 0)
                return model_parse_fail (ps->p, "%s has %d dimensions, expected a scalar", text,
                                         t->ndim);
        }
        out_dtype = d0;
        out_rank = 1;
        break;
    case G_SHAPE:
        node->axis = 0;
        node->end = INT64_MAX;
        if (s_attr_int (ps, map, "start", INT64_MIN, INT64_MAX, &node->axis) ||
            s_attr_int (ps, map, "end", INT64_MIN, INT64_MAX, &node->end))
            return -1;
        out_dtype = AMAAS_INT64;
        out_rank = 1;
        break;
    case G_CONSTANT_OF_SHAPE: {
        static const char *const names[] = {"FP32", "INT64", "BOOL", NULL};
        static const amaas_dtype_t types[] = {AMAAS_FP32, AMAAS_INT64, AMAAS_BOOL};
        int which = 0;
        node->value = 0;
        if (s_want_static_ints (ps, node, 0) || s_attr_enum (ps, map, "datatype", names, &which) ||
            s_attr_number (ps, map, "value", &node->value))
            return -1;
        node->to = types[which];
        if (node->to == AMAAS_INT64 &&
            (node->value != trunc (node->value) || fabs (node->value) > 9.2e18))
            return model_parse_fail (ps->p, "attribute \"value\" %g is not an INT64", node->value);
        if (node->to == AMAAS_BOOL && node->value != 0 && node->value != 1)
            return model_parse_fail (ps->p, "attribute \"value\" %g is not a BOOL (0 or 1)",
                                     node->value);
        if (node->to == AMAAS_FP32 && !isfinite ((float)node->value))
            return model_parse_fail (ps->p, "attribute \"value\" %g overflows FP32", node->value);
        int64_t k = s_const_len (ps, node, 0);
        if (k > GRAPH_MAX_DIMS)
            return model_parse_fail (ps->p, "input 0 has %lld dimensions, at most %d", (long long)k,
                                     GRAPH_MAX_DIMS);
        out_dtype = node->to;
        out_rank = (int)k;
        break;
    }
    default: return model_parse_fail (ps->p, "op not handled"); //  not reached
    }
    if (out_rank > GRAPH_MAX_DIMS)
        return model_parse_fail (ps->p, "the output would have %d dimensions, at most %d", out_rank,
                                 GRAPH_MAX_DIMS);
    //  Outputs: the datatype and rank found
    for (int i = 0; i < node->n_out; i++) {
        g_tensor_t *tensor = &self->tensors[node->out[i]];
        tensor->dtype = out_dtype;
        tensor->ndim = out_rank;
    }
    return 0;
}

//  Reads one node: op, inputs, outputs, name, then s_check_node
static int s_parse_node (s_parse_t *ps, size_t index, const msgpack_object *map)
{
    graph_t *self = ps->self;
    g_node_t *node = &self->nodes[index];
    model_parse_where (ps->p, "node %zu", index);
    snprintf (node->where, sizeof node->where, "node %zu", index);
    if (model_parse_map (ps->p, map, "the node"))
        return -1;
    const msgpack_object *op = codec_mp_find (map, "op");
    if (!op || op->type != MSGPACK_OBJECT_STR)
        return model_parse_fail (ps->p, "\"op\" must be a str");
    int kind;
    for (kind = 0; kind < G_OP_COUNT; kind++)
        if (codec_mp_str_is (op, s_op_names[kind]))
            break;
    char quoted[200];
    if (kind == G_OP_COUNT)
        return model_parse_fail (
            ps->p, "unknown op \"%s\"",
            model_parse_quote (op->via.str.ptr, op->via.str.size, quoted, sizeof quoted));
    node->op = (g_op_t)kind;

    //  The ONNX node's name, for messages
    const msgpack_object *name = codec_mp_find (map, "name");
    if (name) {
        if (name->type != MSGPACK_OBJECT_STR)
            return model_parse_fail (ps->p, "\"name\" has type %s, expected str",
                                     codec_mp_type_name (name->type));
        if (name->via.str.size > S_NODE_NAME_MAX)
            return model_parse_fail (ps->p, "\"name\" has %u bytes, at most %d", name->via.str.size,
                                     S_NODE_NAME_MAX);
    }
    if (name && name->via.str.size)
        snprintf (node->where, sizeof node->where, "node %zu (%s '%s')", index, s_op_names[kind],
                  model_parse_quote (name->via.str.ptr, name->via.str.size, quoted, sizeof quoted));
    else
        snprintf (node->where, sizeof node->where, "node %zu (%s)", index, s_op_names[kind]);
    model_parse_where (ps->p, "%s", node->where);

    const msgpack_object *inputs = codec_mp_find (map, "inputs");
    const msgpack_object *outputs = codec_mp_find (map, "outputs");
    if (!inputs || inputs->type != MSGPACK_OBJECT_ARRAY)
        return model_parse_fail (ps->p, "\"inputs\" must be an array of tensor names");
    if (!outputs || outputs->type != MSGPACK_OBJECT_ARRAY)
        return model_parse_fail (ps->p, "\"outputs\" must be an array of tensor names");
    uint32_t n_in = inputs->via.array.size, n_out = outputs->via.array.size;
    if (n_in < (uint32_t)s_arity[kind].min_in || n_in > (uint32_t)s_arity[kind].max_in) {
        if (s_arity[kind].min_in == s_arity[kind].max_in)
            return model_parse_fail (ps->p, "has %u inputs, %s takes %d", n_in, s_op_names[kind],
                                     s_arity[kind].min_in);
        return model_parse_fail (ps->p, "has %u inputs, %s takes %d..%d", n_in, s_op_names[kind],
                                 s_arity[kind].min_in, s_arity[kind].max_in);
    }
    uint32_t max_out = kind == G_SPLIT ? G_MAX_NODE_IO : 1;
    if (n_out < 1 || n_out > max_out)
        return model_parse_fail (ps->p, "has %u outputs, %s gives %s", n_out, s_op_names[kind],
                                 kind == G_SPLIT ? "1..64" : "1");
    node->n_in = (int)n_in;
    node->n_out = (int)n_out;
    node->in = s_keep (self, malloc ((n_in + n_out) * sizeof (int32_t)));
    if (!node->in)
        return model_parse_fail (ps->p, "out of memory");
    node->out = node->in + n_in;
    bool is_static = true;
    for (uint32_t i = 0; i < n_in; i++) {
        const msgpack_object *in = &inputs->via.array.ptr[i];
        if (in->type != MSGPACK_OBJECT_STR)
            return model_parse_fail (ps->p, "input %u has type %s, expected str", i,
                                     codec_mp_type_name (in->type));
        if (in->via.str.size == 0) {
            node->in[i] = -1;
            continue;
        }
        int32_t t = s_find (ps, in->via.str.ptr, in->via.str.size);
        if (t < 0)
            return model_parse_fail (
                ps->p, "input %u \"%s\" is not defined before this node", i,
                model_parse_quote (in->via.str.ptr, in->via.str.size, quoted, sizeof quoted));
        node->in[i] = t;
        self->tensors[t].last_use = (int32_t)index;
        is_static = is_static && self->tensors[t].is_static;
    }
    if (kind == G_SHAPE)
        is_static = true;
    node->is_static = is_static;
    for (uint32_t i = 0; i < n_out; i++) {
        char what[32];
        snprintf (what, sizeof what, "output %u", i);
        int32_t t = s_define (ps, &outputs->via.array.ptr[i], what, AMAAS_FP32, G_FROM_NODE,
                              (int32_t)index);
        if (t < 0)
            return -1;
        node->out[i] = t;
        self->tensors[t].is_static = is_static;
    }
    return s_check_node (ps, node, map);
}

//  The inputs that are directly the indices of a gather: the bound of
//  their values (the gathered axis's size, when known at load)
static void s_index_bounds (graph_t *self)
{
    for (size_t n = 0; n < self->n_nodes; n++) {
        const g_node_t *node = &self->nodes[n];
        if (node->op != G_GATHER)
            continue;
        const g_tensor_t *data = &self->tensors[node->in[0]];
        const g_tensor_t *indices = &self->tensors[node->in[1]];
        if (indices->from != G_FROM_INPUT || data->from != G_FROM_CONSTANT)
            continue;
        int64_t axis = node->axis < 0 ? node->axis + data->ndim : node->axis;
        int64_t bound = data->dims[axis];
        graph_io_t *io = &self->inputs[indices->index];
        if (bound > 0 && (io->index_bound == 0 || bound < io->index_bound))
            io->index_bound = bound;
    }
}

graph_t *graph_parse (model_parse_t *p, const msgpack_object *root)
{
    graph_t *self = calloc (1, sizeof (graph_t));
    s_parse_t ps = {p, self, NULL, 0, 0};
    if (!self) {
        model_parse_fail (p, "out of memory");
        return NULL;
    }
    self->serial = atomic_fetch_add (&s_serial, 1);
    model_parse_where (p, "%s", "");
    const msgpack_object *constants = codec_mp_find (root, "constants");
    const msgpack_object *nodes = codec_mp_find (root, "nodes");
    const msgpack_object *batch = NULL;
    if (constants && constants->type != MSGPACK_OBJECT_ARRAY) {
        model_parse_fail (p, "\"constants\" has type %s, expected array",
                          codec_mp_type_name (constants->type));
        goto err;
    }
    if (constants && constants->via.array.size > S_MAX_CONSTANTS) {
        model_parse_fail (p, "\"constants\" has %u entries, at most %d", constants->via.array.size,
                          S_MAX_CONSTANTS);
        goto err;
    }
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY) {
        model_parse_fail (p, "\"nodes\" must be an array of maps");
        goto err;
    }
    if (nodes->via.array.size < 1 || nodes->via.array.size > S_MAX_NODES) {
        model_parse_fail (p, "\"nodes\" has %u entries, expected 1..%d", nodes->via.array.size,
                          S_MAX_NODES);
        goto err;
    }
    //  Count the tensors: inputs, constants, nodes' outputs (each checked later)
    size_t count = GRAPH_MAX_INPUTS + (constants ? constants->via.array.size : 0);
    for (uint32_t i = 0; i < nodes->via.array.size; i++) {
        const msgpack_object *outputs = codec_mp_find (&nodes->via.array.ptr[i], "outputs");
        if (outputs && outputs->type == MSGPACK_OBJECT_ARRAY)
            count +=
                outputs->via.array.size < G_MAX_NODE_IO ? outputs->via.array.size : G_MAX_NODE_IO;
    }
    ps.tensors_cap = count;
    ps.table_size = 64;
    while (ps.table_size < 2 * count)
        ps.table_size *= 2;
    self->tensors = calloc (count, sizeof (g_tensor_t));
    ps.table = calloc (ps.table_size, sizeof (int32_t));
    self->nodes = calloc (nodes->via.array.size, sizeof (g_node_t));
    if (!self->tensors || !ps.table || !self->nodes) {
        model_parse_fail (p, "out of memory");
        goto err;
    }
    self->n_nodes = nodes->via.array.size;
    if (s_parse_inputs (&ps, root, &batch) || s_parse_constants (&ps, constants))
        goto err;
    for (size_t i = 0; i < self->n_nodes; i++)
        if (s_parse_node (&ps, i, &nodes->via.array.ptr[i]))
            goto err;
    if (s_parse_outputs (&ps, root, &batch))
        goto err;
    s_index_bounds (self);
    model_parse_where (p, "%s", "");
    free (ps.table);
    return self;

err:
    free (ps.table);
    graph_destroy (&self);
    return NULL;
}

void graph_destroy (graph_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    graph_t *self = *self_p;
    for (size_t i = 0; i < self->n_allocs; i++)
        free (self->allocs[i]);
    free (self->allocs);
    free (self->tensors);
    free (self->nodes);
    free (self);
    *self_p = NULL;
}

size_t graph_input_count (const graph_t *self)
{
    return self->n_inputs;
}

const graph_io_t *graph_input (const graph_t *self, size_t i)
{
    return i < self->n_inputs ? &self->inputs[i] : NULL;
}

size_t graph_output_count (const graph_t *self)
{
    return self->n_outputs;
}

const graph_io_t *graph_output (const graph_t *self, size_t i)
{
    return i < self->n_outputs ? &self->outputs[i] : NULL;
}

size_t graph_node_count (const graph_t *self)
{
    return self->n_nodes;
}
