/*  mp.h - msgpack checks and getters for untrusted bytes.

    All input is untrusted.  Before msgpack-c unpacks anything,
    codec_mp_check walks the bytes and refuses containers that claim more
    elements than bytes remain (msgpack-c would otherwise allocate for the
    claimed count first) and nesting deeper than CODEC_MAX_DEPTH.
    codec_mp_unpack does that check, then unpacks into a msgpack zone that
    each thread keeps from call to call.  The getters read one object and
    say whether it has the type and range asked for; the callers word the
    error messages (the protocol and the model loader say different things).
*/
#ifndef AMAAS_PROTO_MP_H_INCLUDED
#define AMAAS_PROTO_MP_H_INCLUDED

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "amaas_defs.h"

#define CODEC_MAX_DEPTH DEFS_DEPTH_MAX //  msgpack nesting accepted

//  Check that buf holds exactly one well-formed msgpack object whose
//  containers claim no more elements than bytes remain, nested at most
//  CODEC_MAX_DEPTH deep.  Returns 0, or -1 with a message in err.
int codec_mp_check (const void *buf, size_t size, char *err, size_t err_size);

//  Check buf (codec_mp_check), then unpack it into *object, which lives in
//  the calling thread's zone until codec_mp_release.  Returns 0, or -1 with
//  "WHAT: reason" in err (malformed, or out of memory).  After the first
//  calls of a thread it allocates nothing.
int codec_mp_unpack (const void *buf, size_t size, msgpack_object *object, const char *what,
                     char *err, size_t err_size);

//  Free what the last codec_mp_unpack of this thread holds (the zone keeps
//  its first chunk for the next).  Cannot fail.
void codec_mp_release (void);

//  Is obj a str equal to text?  Cannot fail.  (Inline: decoders call it
//  for every key of every message, with text a literal.)
static inline bool codec_mp_str_is (const msgpack_object *obj, const char *text)
{
    size_t len = strlen (text);
    return obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == len &&
           (len == 0 || memcmp (obj->via.str.ptr, text, len) == 0);
}

//  Are a and b both strs of the same bytes?  Cannot fail.
bool codec_mp_same_str (const msgpack_object *a, const msgpack_object *b);

//  Value of the first str key equal to key in map obj, or NULL when absent
//  or when obj is not a map.  Cannot fail.
const msgpack_object *codec_mp_find (const msgpack_object *obj, const char *key);

//  Read a non-negative integer in low..high into *value.  Returns 0, or -1
//  (wrong type or out of range) and *value is unchanged.  (Inline, as
//  codec_mp_str_is.)
static inline int codec_mp_uint (const msgpack_object *obj, uint64_t low, uint64_t high,
                                 uint64_t *value)
{
    if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER || obj->via.u64 < low || obj->via.u64 > high)
        return -1;
    *value = obj->via.u64;
    return 0;
}

//  Copy a str of min..dest_size-1 bytes with no NUL in it into dest, NUL-
//  terminated.  Returns 0, or -1 (wrong type, length or a NUL) and dest is
//  unchanged.
int codec_mp_str (const msgpack_object *obj, size_t min, char *dest, size_t dest_size);

//  Name of a msgpack type for messages ("uint", "str", "map", ...).
//  Cannot fail.
const char *codec_mp_type_name (msgpack_object_type type);

#endif
