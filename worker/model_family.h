/*  model_family.h - how a family of ops plugs into the model loader and runtime.

    The core ops (scale, dense, softmax, argmax, output, ...) are model.c's
    and model_run.c's own.  The others come in families, one source file
    each: model_trees.c (decision trees and their ensembles), model_svm.c
    (kernels and one-vs-one voting), model_prep.c (preprocessing).  A family
    exports a table of model_family_op_t, one per op name; the loader finds an
    op's name there when it is not a core op (model_family_ops, model.c), and
    the runtime calls the op's run function on the current tensor.

    parse reads the op's fields from its msgpack map through the model_parse_*
    getters below: each checks one key, says what is wrong on error, and
    keeps what it returns alive as long as the model (weights in place in the
    file's mapping when aligned, copies otherwise).  parse may allocate the
    op's own checked data (its `ext`) with model_parse_alloc, which the model
    frees with itself.

    run computes the op on a batch: x holds [rows, in_width] values of the
    model's datatype, y receives [rows, out_width] (y == x when the op is
    in_place), scratch holds the bytes scratch_size asked for (64-byte
    aligned, uninitialised).  run cannot fail: everything that could be
    wrong was checked by parse, and every buffer is the runtime's.
*/
#ifndef AMAAS_MODEL_FAMILY_H_INCLUDED
#define AMAAS_MODEL_FAMILY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "amaas.h"
#include "model.h"

typedef struct model_parse_t model_parse_t;

struct model_family_op_t {
    const char *name; //  op name in the file, e.g. "trees"
    bool in_place;    //  y == x (needs out_width == in_width)
    //  Check the op's map; in_width is the current width.  Sets *out_width
    //  (1 .. 2^24), *ext (NULL or the op's data, from model_parse_alloc) and
    //  *work (about how many multiply-adds one row costs; the worker computes
    //  a cheap job on its I/O thread).  Returns 0, or -1 after
    //  model_parse_fail.
    int (*parse) (model_parse_t *p, const msgpack_object *map, size_t in_width, size_t *out_width,
                  void **ext, size_t *work);
    //  Scratch bytes a run of `rows` rows needs (NULL: none); SIZE_MAX when
    //  that overflows (the run then fails as out of memory).  Cannot fail.
    size_t (*scratch_size) (const void *ext, amaas_dtype_t dtype, size_t rows);
    void (*run) (const void *ext, amaas_dtype_t dtype, const void *x, void *y, size_t rows,
                 size_t in_width, size_t out_width, void *scratch);
};

//  The families' tables, each ended by an entry whose name is NULL.
extern const model_family_op_t model_trees_ops[];
extern const model_family_op_t model_svm_ops[];
extern const model_family_op_t model_prep_ops[];

//  ---------------------------------------------------------------------------
//  Getters for parse.  Each returns 0, or -1 with a message that names the
//  op and the key ("m.amm: op 3 (trees): \"left\" holds 12 bytes, 5 INT32
//  need 20").

//  The model's datatype (FP32 or FP64): the type of every float bin.
amaas_dtype_t model_parse_dtype (const model_parse_t *p);

//  Writes the message; returns -1.
int model_parse_fail (model_parse_t *p, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  A required uint in low .. high.
int model_parse_uint (model_parse_t *p, const msgpack_object *map, const char *key, uint64_t low,
                      uint64_t high, uint64_t *value);

//  A required number (msgpack int or float) that is finite.
int model_parse_number (model_parse_t *p, const msgpack_object *map, const char *key,
                        double *value);

//  A required str, as a pointer into the file and a size (not terminated).
int model_parse_str (model_parse_t *p, const msgpack_object *map, const char *key,
                     const char **data, size_t *size);

//  A required bin of exactly `count` elements: of the model's datatype
//  (model_parse_floats), int32 LE (model_parse_int32), uint32 LE
//  (model_parse_uint32) or bytes (model_parse_bytes), 64-byte aligned.  count
//  may be 0 (then *data is a valid pointer to nothing).
int model_parse_floats (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                        const void **data);
int model_parse_int32 (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                       const int32_t **data);
int model_parse_uint32 (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                        const uint32_t **data);
int model_parse_bytes (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                       const uint8_t **data);

//  The same for graphs (graph.c): a bin of `count` INT64 (8 bytes LE), or of
//  `count` BOOL (1 byte each, 0 or 1), 64-byte aligned in place when
//  aligned, else copied.
int model_parse_int64 (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                       const int64_t **data);
int model_parse_bools (model_parse_t *p, const msgpack_object *map, const char *key, size_t count,
                       const uint8_t **data);

//  Checks that obj is a map as the format wants them (str keys, at most 64,
//  none twice but "pad"); what names it in the message.
int model_parse_map (model_parse_t *p, const msgpack_object *obj, const char *what);

//  Sets where the next messages say they are ("node 3 (gemm 'fc1')"; ""
//  for the top level).
void model_parse_where (model_parse_t *p, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Quotes untrusted bytes for a message (at most 40, others as \xNN).
//  Returns buf.
const char *model_parse_quote (const char *data, size_t size, char *buf, size_t buf_size);

//  Allocates `size` bytes (zeroed, 64-byte aligned) that the model frees
//  with itself; for an op's derived arrays.  NULL after a message on
//  out-of-memory or a size of 0.
void *model_parse_alloc (model_parse_t *p, size_t size);

#endif
