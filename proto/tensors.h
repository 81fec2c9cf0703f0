/*  tensors.h - the payload of REQUEST, REPLY, JOB and RESULT: tensors.

    A payload is a msgpack array of at most CODEC_MAX_TENSORS maps, each with
    name, datatype, shape and data (docs/PROTOCOL.md).  Only those who
    compute on it decode it (worker, client); the broker forwards it
    untouched.  Decoding checks every shape and byte count and copies
    nothing: a decoded tensor points into the buffer it came from.
*/
#ifndef AMAAS_PROTO_TENSORS_H_INCLUDED
#define AMAAS_PROTO_TENSORS_H_INCLUDED

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "amaas.h"
#include "header.h"

#define CODEC_MAX_TENSORS 16 //  tensors in a payload

//  A decoded tensor.  name and data point into the buffer it was decoded
//  from, which must outlive it; name is not NUL-terminated.
typedef struct {
    const char *name;              //  tensor name, name_len bytes
    size_t name_len;               //  1 .. CODEC_NAME_MAX-1
    amaas_dtype_t datatype;        //  element type
    int ndim;                      //  1 .. AMAAS_MAX_DIMS
    int64_t shape[AMAAS_MAX_DIMS]; //  dimensions
    uint64_t elements;             //  product of shape
    const void *data;              //  the elements
    size_t size;                   //  bytes at data
} codec_tensor_t;

//  Decode a payload: an array of at most max tensors.  Returns the count, or
//  -1 with a message in err.  Checks datatype names, shapes (1..8 dims,
//  element count without overflow, at most max_elements per tensor) and that
//  data holds exactly the bytes the shape needs.
int codec_tensors_decode (const void *buf, size_t size, codec_tensor_t *tensors, size_t max,
                          uint64_t max_elements, char *err, size_t err_size);

//  Encode n tensors as a payload appended to sbuf (a buffer the caller
//  reuses).  Returns 0, -1 on out-of-memory (sbuf then holds a part).
int codec_tensors_pack (const codec_tensor_t *tensors, size_t n, msgpack_sbuffer *sbuf);

//  Size in bytes that a BYTES tensor of `elements` elements at data needs:
//  walks the length prefixes.  Returns -1 if they do not fit in size.
int64_t codec_tensors_bytes_check (const void *data, size_t size, uint64_t elements);

#endif
