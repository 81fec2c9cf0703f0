/*  model_trees.c - decision trees and their ensembles (docs/MODEL_FORMAT.md, "trees").

    Three ops.  `trees` sums the leaf values of an ensemble of binary trees
    into k columns, starting from a base vector: decision trees, random
    forests, gradient boosting of scikit-learn and XGBoost all reduce to it
    (the exporter folds learning rates, priors and class normalisation into
    the leaf values and base).  `round32` rounds FP64 values to float32 and
    back, for scikit-learn's trees that compare float32(x) with a float64
    threshold.  `exp` is the inverse link of Poisson boosting.

    The file's nodes are checked completely at load (every index in range,
    children after their parent, each node reached exactly once, so a walk
    ends and the trees share nothing), then laid out again for the walk: each
    tree in pre-order, the left child right after its parent, so a node needs
    only its right child's offset.  A node is 16 bytes: threshold, feature,
    right child; a leaf points to itself and carries its value's index
    (in a NaN threshold for FP64, an extra field for FP32), so that a walk
    can step every row of a block the same number of times without a branch.

    Rows are walked in blocks of S_BLOCK, tree-major inside the block: a
    tree's nodes stay in cache while the block's rows go through it, and the
    rows' independent walks overlap in the CPU (eight rows at a time in
    registers: measured on a 500-tree depth-6 XGBoost model, 8 beat 4, and
    blocks of 16 rows as fast as 64).  Stepping every row a tree's full
    depth wins even for deep trees: a 100-tree RandomForest grown to pure
    leaves (depths 14 to 25) computes 256 rows 2.7x faster branch-free than
    with the per-row walk, whose branches the CPU mispredicts.  A tree whose depth is at
    most S_STEPS_MAX, with no categorical split, in a block without NaN (or
    in a model where NaN always goes right), is walked branch-free for
    exactly its depth in steps; others walk each row with the full rules.
    Each output value receives its leaf values in tree order, as the
    frameworks add them, so FP64 results are those of scikit-learn exactly.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_family.h"

#define S_BLOCK 16                    //  rows walked together
#define S_STEPS_MAX 32                //  deepest tree walked branch-free
#define S_NODES_MAX DEFS_NODES_MAX    //  byte offsets of 16-byte nodes fit in 32 bits
#define S_NAN64 0x7ff8000000000000ull //  a leaf's threshold: quiet NaN | value index

//  File flags of a node
#define S_FLAG_MISSING_LEFT 1
#define S_FLAG_CATEGORICAL 2

//  A node laid out for the walk, addressed by its byte offset in the array
//  (one add, no multiply, per step).  Left child: the next node.  A leaf has
//  next == its own offset and a NaN threshold (x <= NaN is false).  The
//  file's flags sit in a separate array: the walks that need them are the
//  slow ones, and the branch-free one reads a clean feature index.
typedef struct {
    double threshold; //  leaf: NaN whose low 32 bits index the values; categorical: set index
    uint32_t feature; //  feature index (a leaf: 0)
    uint32_t next;    //  byte offset of the right child; a leaf: its own
} s_node64_t;

typedef struct {
    float threshold;  //  leaf: NaN
    uint32_t feature; //  feature index (a leaf: 0)
    uint32_t next;    //  byte offset of the right child; a leaf: its own
    uint32_t aux;     //  leaf: value index; categorical: set index
} s_node32_t;

typedef struct {
    uint32_t root;  //  byte offset of the root
    int32_t column; //  output column (leaf_width 1)
    uint32_t depth; //  edges from the root to the deepest leaf
    bool simple;    //  no categorical split
} s_tree_t;

typedef struct {
    size_t trees;               //  number of trees
    size_t k;                   //  output width
    size_t leaf_width;          //  1 or k
    bool missing_left;          //  some node sends NaN left (then blocks with NaN walk fully)
    const s_tree_t *tree;       //  [trees]
    const void *nodes;          //  s_node64_t or s_node32_t [nodes]
    const uint8_t *flags;       //  [nodes] the file's flags of each laid-out node
    const void *values;         //  [leaves][leaf_width] of the model's datatype
    const void *base;           //  [k]
    const uint32_t *categories; //  [sets][8] bitsets of the categories that go left
} s_trees_t;

//  --------------------------------------------------------------------------
//  Loading: check the file's arrays, then lay the trees out again

//  Checks the nodes of the file and fills tree[] and the flat nodes.
static int s_layout (model_parse_t *p, s_trees_t *self, size_t width, size_t n, size_t leaves,
                     size_t sets, const int32_t *feature, const void *threshold,
                     const int32_t *left, const int32_t *right, const uint8_t *flags,
                     const int32_t *roots, const int32_t *column, s_tree_t *tree, void *flat,
                     uint8_t *flat_flags)
{
    bool fp64 = model_parse_dtype (p) == AMAAS_FP64;
    size_t size = fp64 ? sizeof (s_node64_t) : sizeof (s_node32_t);
    //  Each node must be referred to exactly once: by a root or by a parent
    uint8_t *refs = calloc (n, 1);
    uint32_t *set_of = calloc (n, sizeof (uint32_t));
    int64_t *stack = malloc (n * sizeof (int64_t) * 2);
    int rc = -1;
    if (!refs || !set_of || !stack) {
        model_parse_fail (p, "out of memory for %zu nodes", n);
        goto done;
    }
    size_t set = 0;
    for (size_t i = 0; i < n; i++) {
        if (flags[i] & ~(S_FLAG_MISSING_LEFT | S_FLAG_CATEGORICAL)) {
            model_parse_fail (p, "node %zu: flags %u has unknown bits", i, flags[i]);
            goto done;
        }
        if (feature[i] == -1) {
            if (left[i] < 0 || (size_t)left[i] >= leaves) {
                model_parse_fail (p, "node %zu: leaf value %d is not in 0..%zu", i, left[i],
                                  leaves - 1);
                goto done;
            }
            continue;
        }
        if (feature[i] < 0 || (size_t)feature[i] >= width) {
            model_parse_fail (p, "node %zu: feature %d is not -1 (leaf) or in 0..%zu", i,
                              feature[i], width - 1);
            goto done;
        }
        const int32_t child[2] = {left[i], right[i]};
        for (int c = 0; c < 2; c++) {
            if (child[c] <= (int64_t)i || (size_t)child[c] >= n) {
                model_parse_fail (p, "node %zu: child %d is not after it (in %zu..%zu)", i,
                                  child[c], i + 1, n - 1);
                goto done;
            }
            if (refs[child[c]]++) {
                model_parse_fail (p, "node %d has more than one parent", child[c]);
                goto done;
            }
        }
        if (flags[i] & S_FLAG_CATEGORICAL)
            set_of[i] = (uint32_t)set++;
        if (flags[i] & S_FLAG_MISSING_LEFT)
            self->missing_left = true;
    }
    if (set != sets) {
        model_parse_fail (p, "%zu categorical nodes, \"sets\" is %zu", set, sets);
        goto done;
    }
    for (size_t t = 0; t < self->trees; t++) {
        if (roots[t] < 0 || (size_t)roots[t] >= n) {
            model_parse_fail (p, "tree %zu: root %d is not in 0..%zu", t, roots[t], n - 1);
            goto done;
        }
        if (refs[roots[t]]++) {
            model_parse_fail (p, "tree %zu: root %d is also a child or another root", t, roots[t]);
            goto done;
        }
        if (column && (column[t] < 0 || (size_t)column[t] >= self->k)) {
            model_parse_fail (p, "tree %zu: column %d is not in 0..%zu", t, column[t], self->k - 1);
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!refs[i]) {
            model_parse_fail (p, "node %zu belongs to no tree", i);
            goto done;
        }

    //  Pre-order, left child next: a stack of (node, flat index of the
    //  parent whose right child it is or -1), depth kept beside
    size_t pos = 0;
    for (size_t t = 0; t < self->trees; t++) {
        size_t top = 0;
        uint32_t depth = 0;
        bool simple = true;
        tree[t].root = (uint32_t)(pos * size);
        tree[t].column = column ? column[t] : 0;
        stack[top++] = roots[t];
        stack[top++] = -1;
        //  Depths ride in the high bits of the node entry (n < 2^31)
        while (top) {
            int64_t parent = stack[--top];
            int64_t entry = stack[--top];
            size_t i = (size_t)(entry & 0x7fffffff);
            uint32_t d = (uint32_t)(entry >> 31);
            if (d > depth)
                depth = d;
            if (parent >= 0) {
                if (fp64)
                    ((s_node64_t *)flat)[parent].next = (uint32_t)(pos * size);
                else
                    ((s_node32_t *)flat)[parent].next = (uint32_t)(pos * size);
            }
            uint32_t f = 0;
            if (feature[i] >= 0) {
                f = (uint32_t)feature[i];
                flat_flags[pos] = flags[i];
                if (flags[i] & S_FLAG_CATEGORICAL)
                    simple = false;
            }
            if (fp64) {
                s_node64_t *node = (s_node64_t *)flat + pos;
                node->feature = f;
                node->next = (uint32_t)(pos * size);
                if (feature[i] < 0) {
                    uint64_t bits = S_NAN64 | (uint32_t)left[i];
                    memcpy (&node->threshold, &bits, sizeof bits);
                } else if (flags[i] & S_FLAG_CATEGORICAL) {
                    uint64_t bits = set_of[i];
                    memcpy (&node->threshold, &bits, sizeof bits);
                } else
                    node->threshold = ((const double *)threshold)[i];
            } else {
                s_node32_t *node = (s_node32_t *)flat + pos;
                node->feature = f;
                node->next = (uint32_t)(pos * size);
                if (feature[i] < 0) {
                    node->threshold = NAN;
                    node->aux = (uint32_t)left[i];
                } else {
                    node->threshold = ((const float *)threshold)[i];
                    node->aux = set_of[i];
                }
            }
            if (feature[i] >= 0) {
                int64_t child_depth = (int64_t)(d + 1) << 31;
                stack[top++] = right[i] | child_depth;
                stack[top++] = (int64_t)pos;
                stack[top++] = left[i] | child_depth;
                stack[top++] = -1;
            }
            pos++;
        }
        tree[t].depth = depth;
        tree[t].simple = simple;
    }
    rc = 0;
done:
    free (refs);
    free (set_of);
    free (stack);
    return rc;
}

static int s_trees_parse (model_parse_t *p, const msgpack_object *map, size_t in_width,
                          size_t *out_width, void **ext, size_t *work)
{
    uint64_t in, k, n, trees, leaves, leaf_width, sets;
    if (model_parse_uint (p, map, "in", 1, 1u << 24, &in) ||
        model_parse_uint (p, map, "out", 1, 1u << 24, &k) ||
        model_parse_uint (p, map, "nodes", 1, S_NODES_MAX, &n) ||
        model_parse_uint (p, map, "trees", 1, INT32_MAX, &trees) ||
        model_parse_uint (p, map, "leaves", 1, INT32_MAX, &leaves) ||
        model_parse_uint (p, map, "leaf_width", 1, 1u << 24, &leaf_width) ||
        model_parse_uint (p, map, "sets", 0, INT32_MAX, &sets))
        return -1;
    if (in != in_width)
        return model_parse_fail (p, "\"in\" is %llu, the current width is %zu",
                                 (unsigned long long)in, in_width);
    if (leaf_width != 1 && leaf_width != k)
        return model_parse_fail (p, "\"leaf_width\" is %llu, must be 1 or \"out\" (%llu)",
                                 (unsigned long long)leaf_width, (unsigned long long)k);
    if (trees > n || leaves > n)
        return model_parse_fail (p, "%llu trees and %llu leaves need more than %llu nodes",
                                 (unsigned long long)trees, (unsigned long long)leaves,
                                 (unsigned long long)n);
    const int32_t *feature, *left, *right, *roots, *column = NULL;
    const uint8_t *flags;
    const void *threshold, *values, *base;
    const uint32_t *categories = NULL;
    size_t value_count;
    if (__builtin_mul_overflow (leaves, leaf_width, &value_count))
        return model_parse_fail (p, "%llu leaves of %llu values are too many",
                                 (unsigned long long)leaves, (unsigned long long)leaf_width);
    if (model_parse_int32 (p, map, "feature", n, &feature) ||
        model_parse_floats (p, map, "threshold", n, &threshold) ||
        model_parse_int32 (p, map, "left", n, &left) ||
        model_parse_int32 (p, map, "right", n, &right) ||
        model_parse_bytes (p, map, "flags", n, &flags) ||
        model_parse_int32 (p, map, "roots", trees, &roots) ||
        model_parse_floats (p, map, "values", value_count, &values) ||
        model_parse_floats (p, map, "base", k, &base))
        return -1;
    if (leaf_width == 1 && model_parse_int32 (p, map, "column", trees, &column))
        return -1;
    //  sets <= nodes, and each set is 8 words of the file: bounded by its size
    if (sets > n)
        return model_parse_fail (p, "\"sets\" is %llu, more than the %llu nodes",
                                 (unsigned long long)sets, (unsigned long long)n);
    if (sets && model_parse_uint32 (p, map, "categories", 8 * sets, &categories))
        return -1;

    bool fp64 = model_parse_dtype (p) == AMAAS_FP64;
    s_trees_t *self = model_parse_alloc (p, sizeof *self);
    s_tree_t *tree = self ? model_parse_alloc (p, trees * sizeof *tree) : NULL;
    void *flat =
        tree ? model_parse_alloc (p, n * (fp64 ? sizeof (s_node64_t) : sizeof (s_node32_t))) : NULL;
    uint8_t *flat_flags = flat ? model_parse_alloc (p, n) : NULL;
    if (!flat_flags)
        return -1;
    self->trees = trees;
    self->k = k;
    self->leaf_width = leaf_width;
    if (s_layout (p, self, in_width, n, leaves, sets, feature, threshold, left, right, flags, roots,
                  column, tree, flat, flat_flags))
        return -1;
    self->tree = tree;
    self->nodes = flat;
    self->flags = flat_flags;
    self->values = values;
    self->base = base;
    self->categories = categories;
    size_t steps = 0;
    for (size_t t = 0; t < trees; t++)
        steps += tree[t].depth + leaf_width;
    *out_width = k;
    *ext = self;
    *work = steps + k;
    return 0;
}

//  --------------------------------------------------------------------------
//  Running

//  The category of x for a categorical split (x is not NaN): scikit-learn
//  converts a double >= 0 to uint8 as x86-64 does, truncating through a
//  32-bit integer: the value modulo 256 below 2^31, 0 from there on.
static inline unsigned s_category (double x)
{
    return x < 2147483648.0 ? (unsigned)(int32_t)x & 255u : 0u;
}

//  True when a categorical node (set `set`) sends x left; x < 0 counts as NaN
static inline bool s_category_left (const s_trees_t *self, uint8_t flags, uint32_t set, double x)
{
    if (isnan (x) || x < 0)
        return flags & S_FLAG_MISSING_LEFT;
    unsigned c = s_category (x);
    return (self->categories[(size_t)set * 8 + c / 32] >> (c % 32)) & 1u;
}

#define S_AT(NODE, offset) ((const NODE *)((const char *)nodes + (offset)))

//  One branch-free step of a walk: the node at offset a of the row at x
//  goes to the next node or to its right child; a leaf stays (x <= NaN is
//  false, next is itself).  The way a row goes is data, unpredictable: a
//  mask, not a branch (gcc makes a branch of a conditional, even one
//  marked unpredictable, and loses half the speed).
#define S_STEP(NODE, a, x)                                                                         \
    do {                                                                                           \
        const NODE *node_ = S_AT (NODE, a);                                                        \
        uint32_t left_ = -(uint32_t)((x)[node_->feature] <= node_->threshold);                     \
        (a) = node_->next ^ ((node_->next ^ ((a) + (uint32_t)sizeof (NODE))) & left_);             \
    } while (0)

//  s_run_d / s_run_f: the trees on a batch.  One body for both datatypes,
//  the node layout aside.
#define S_RUN(NAME, T, NODE, LEAF_OF, SET_OF)                                                      \
    static void NAME (const s_trees_t *self, const T *x, T *y, size_t rows, size_t w)              \
    {                                                                                              \
        const NODE *nodes = self->nodes;                                                           \
        const T *values = self->values;                                                            \
        const T *base = self->base;                                                                \
        size_t k = self->k, lw = self->leaf_width;                                                 \
        for (size_t r = 0; r < rows; r++)                                                          \
            memcpy (y + r * k, base, k * sizeof (T));                                              \
        for (size_t r0 = 0; r0 < rows; r0 += S_BLOCK) {                                            \
            size_t nb = rows - r0 < S_BLOCK ? rows - r0 : S_BLOCK;                                 \
            const T *xb = x + r0 * w;                                                              \
            T *yb = y + r0 * k;                                                                    \
            /*  NaN only matters to the branch-free walk when it may go left */                    \
            bool nan = false;                                                                      \
            if (self->missing_left)                                                                \
                for (size_t i = 0; i < nb * w; i++)                                                \
                    nan |= isnan (xb[i]);                                                          \
            for (size_t t = 0; t < self->trees; t++) {                                             \
                const s_tree_t *tree = &self->tree[t];                                             \
                uint32_t at[S_BLOCK];                                                              \
                if (tree->simple && !nan && tree->depth <= S_STEPS_MAX) {                          \
                    size_t r = 0;                                                                  \
                    for (; r + 8 <= nb; r += 8) {                                                  \
                        const T *x0 = xb + r * w, *x1 = x0 + w, *x2 = x1 + w, *x3 = x2 + w;        \
                        const T *x4 = x3 + w, *x5 = x4 + w, *x6 = x5 + w, *x7 = x6 + w;            \
                        uint32_t a0 = tree->root, a1 = a0, a2 = a0, a3 = a0;                       \
                        uint32_t a4 = a0, a5 = a0, a6 = a0, a7 = a0;                               \
                        for (uint32_t d = 0; d < tree->depth; d++) {                               \
                            S_STEP (NODE, a0, x0);                                                 \
                            S_STEP (NODE, a1, x1);                                                 \
                            S_STEP (NODE, a2, x2);                                                 \
                            S_STEP (NODE, a3, x3);                                                 \
                            S_STEP (NODE, a4, x4);                                                 \
                            S_STEP (NODE, a5, x5);                                                 \
                            S_STEP (NODE, a6, x6);                                                 \
                            S_STEP (NODE, a7, x7);                                                 \
                        }                                                                          \
                        at[r] = a0, at[r + 1] = a1, at[r + 2] = a2, at[r + 3] = a3;                \
                        at[r + 4] = a4, at[r + 5] = a5, at[r + 6] = a6, at[r + 7] = a7;            \
                    }                                                                              \
                    for (; r < nb; r++) {                                                          \
                        const T *x0 = xb + r * w;                                                  \
                        uint32_t a0 = tree->root;                                                  \
                        for (uint32_t d = 0; d < tree->depth; d++)                                 \
                            S_STEP (NODE, a0, x0);                                                 \
                        at[r] = a0;                                                                \
                    }                                                                              \
                } else                                                                             \
                    for (size_t r = 0; r < nb; r++) {                                              \
                        uint32_t i = tree->root;                                                   \
                        const T *row = xb + r * w;                                                 \
                        while (S_AT (NODE, i)->next != i) {                                        \
                            const NODE *node = S_AT (NODE, i);                                     \
                            uint8_t flags = self->flags[i / sizeof (NODE)];                        \
                            T v = row[node->feature];                                              \
                            bool go_left;                                                          \
                            if (flags & S_FLAG_CATEGORICAL)                                        \
                                go_left = s_category_left (self, flags, SET_OF (node), (double)v); \
                            else if (isnan (v))                                                    \
                                go_left = flags & S_FLAG_MISSING_LEFT;                             \
                            else                                                                   \
                                go_left = v <= node->threshold;                                    \
                            i = go_left ? i + (uint32_t)sizeof (NODE) : node->next;                \
                        }                                                                          \
                        at[r] = i;                                                                 \
                    }                                                                              \
                if (lw == 1)                                                                       \
                    for (size_t r = 0; r < nb; r++)                                                \
                        yb[r * k + (size_t)tree->column] += values[LEAF_OF (S_AT (NODE, at[r]))];  \
                else                                                                               \
                    for (size_t r = 0; r < nb; r++) {                                              \
                        const T *v = values + (size_t)LEAF_OF (S_AT (NODE, at[r])) * lw;           \
                        T *out = yb + r * k;                                                       \
                        for (size_t c = 0; c < k; c++)                                             \
                            out[c] += v[c];                                                        \
                    }                                                                              \
            }                                                                                      \
        }                                                                                          \
    }

static inline uint32_t s_leaf64 (const s_node64_t *node)
{
    uint64_t bits;
    memcpy (&bits, &node->threshold, sizeof bits);
    return (uint32_t)bits;
}

static inline uint32_t s_leaf32 (const s_node32_t *node)
{
    return node->aux;
}

S_RUN (s_run_d, double, s_node64_t, s_leaf64, s_leaf64)
S_RUN (s_run_f, float, s_node32_t, s_leaf32, s_leaf32)

static void s_trees_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                         size_t in_width, size_t out_width, void *scratch)
{
    (void)out_width;
    (void)scratch;
    if (dtype == AMAAS_FP64)
        s_run_d (ext, x, y, rows, in_width);
    else
        s_run_f (ext, x, y, rows, in_width);
}

//  --------------------------------------------------------------------------
//  round32 and exp: element-wise, in place

static int s_no_fields (model_parse_t *p, const msgpack_object *map, size_t in_width,
                        size_t *out_width, void **ext, size_t *work)
{
    (void)p;
    (void)map;
    *out_width = in_width;
    *ext = NULL;
    *work = in_width;
    return 0;
}

static void s_round32_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y,
                           size_t rows, size_t in_width, size_t out_width, void *scratch)
{
    (void)ext;
    (void)x;
    (void)out_width;
    (void)scratch;
    if (dtype != AMAAS_FP64)
        return; //  FP32 values are float32 already
    double *v = y;
    for (size_t i = 0; i < rows * in_width; i++)
        v[i] = (double)(float)v[i];
}

static void s_exp_run (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                       size_t in_width, size_t out_width, void *scratch)
{
    (void)ext;
    (void)x;
    (void)out_width;
    (void)scratch;
    if (dtype == AMAAS_FP64) {
        double *v = y;
        for (size_t i = 0; i < rows * in_width; i++)
            v[i] = exp (v[i]);
    } else {
        float *v = y;
        for (size_t i = 0; i < rows * in_width; i++)
            v[i] = expf (v[i]);
    }
}

const model_family_op_t model_trees_ops[] = {{"trees", false, s_trees_parse, NULL, s_trees_run},
                                             {"round32", true, s_no_fields, NULL, s_round32_run},
                                             {"exp", true, s_no_fields, NULL, s_exp_run},
                                             {NULL, false, NULL, NULL, NULL}};
