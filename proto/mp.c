/*  mp.c - msgpack checks and getters for untrusted bytes.

    codec_mp_check is a bounded walk over the raw bytes: it counts, level by
    level, the objects still to read, and refuses a container whose element
    count exceeds the bytes left (each element takes at least one byte), so
    that msgpack-c, which allocates for the claimed count before reading,
    never allocates more than a small multiple of the input.  The unpacked
    objects live in a per-thread zone that is cleared, not freed, after each
    use: after the first messages of a thread decoding allocates nothing.
*/
#include "mp.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Bounded walk over raw msgpack bytes

//  Big-endian integer of `bytes` bytes.
static uint64_t s_read_be (const uint8_t *data, size_t bytes)
{
    uint64_t value = 0;
    for (size_t i = 0; i < bytes; i++)
        value = (value << 8) | data[i];
    return value;
}

int codec_mp_check (const void *buf, size_t size, char *err, size_t err_size)
{
    assert (buf || size == 0);
    const uint8_t *data = buf;
    uint64_t pending[CODEC_MAX_DEPTH + 1]; //  objects still to read at each depth
    int depth = 0;
    size_t pos = 0;
    pending[0] = 1;
    if (size == 0) {
        snprintf (err, err_size, "empty msgpack");
        return -1;
    }
    while (true) {
        while (depth >= 0 && pending[depth] == 0)
            depth--;
        if (depth < 0)
            break;
        pending[depth]--;
        if (pos >= size)
            goto truncated;
        size_t start = pos;
        uint8_t byte = data[pos++];
        size_t header = 0;       //  bytes of length or value after the type byte
        size_t length_bytes = 0; //  of which, bytes of a payload length
        size_t extra = 0;        //  fixed payload bytes (ext type byte, fixext)
        uint64_t payload = 0;    //  variable payload bytes
        uint64_t children = 0;   //  elements of an array, keys and values of a map

        if (byte <= 0x7f || byte >= 0xe0 || byte == 0xc0 || byte == 0xc2 || byte == 0xc3)
            ; //  fixint, nil, bool
        else if (byte <= 0x8f)
            children = 2 * (uint64_t)(byte & 0x0f);
        else if (byte <= 0x9f)
            children = byte & 0x0f;
        else if (byte <= 0xbf)
            payload = byte & 0x1f;
        else if (byte == 0xc1) {
            snprintf (err, err_size, "byte %zu: 0xc1 is not a msgpack type", start);
            return -1;
        } else if (byte >= 0xc4 && byte <= 0xc6) //  bin 8, 16, 32
            header = length_bytes = (size_t)1 << (byte - 0xc4);
        else if (byte >= 0xc7 && byte <= 0xc9) { //  ext 8, 16, 32
            header = length_bytes = (size_t)1 << (byte - 0xc7);
            extra = 1;
        } else if (byte == 0xca)
            header = 4;
        else if (byte == 0xcb)
            header = 8;
        else if (byte >= 0xcc && byte <= 0xcf) //  uint 8 .. 64
            header = (size_t)1 << (byte - 0xcc);
        else if (byte >= 0xd0 && byte <= 0xd3) //  int 8 .. 64
            header = (size_t)1 << (byte - 0xd0);
        else if (byte >= 0xd4 && byte <= 0xd8) //  fixext 1 .. 16
            extra = 1 + ((size_t)1 << (byte - 0xd4));
        else if (byte >= 0xd9 && byte <= 0xdb) //  str 8, 16, 32
            header = length_bytes = (size_t)1 << (byte - 0xd9);
        else if (byte == 0xdc || byte == 0xdd) //  array 16, 32
            header = length_bytes = byte == 0xdc ? 2 : 4;
        else //  map 16, 32
            header = length_bytes = byte == 0xde ? 2 : 4;

        if (header > size - pos)
            goto truncated;
        if (length_bytes) {
            uint64_t length = s_read_be (data + pos, length_bytes);
            if (byte == 0xdc || byte == 0xdd)
                children = length;
            else if (byte == 0xde || byte == 0xdf)
                children = 2 * length;
            else
                payload = length;
        }
        pos += header;
        if (extra > size - pos || payload > size - pos - extra)
            goto truncated;
        pos += extra + (size_t)payload;
        if (children) {
            //  Every element takes at least one byte: a count larger than
            //  what remains is a lie, refused before anyone allocates for it
            if (children > size - pos) {
                snprintf (err, err_size,
                          "byte %zu: msgpack container of %" PRIu64
                          " elements cannot fit in the %zu "
                          "bytes left (truncated or corrupt)",
                          start, children, size - pos);
                return -1;
            }
            if (depth == CODEC_MAX_DEPTH) {
                snprintf (err, err_size, "byte %zu: msgpack nested deeper than %d levels", start,
                          CODEC_MAX_DEPTH);
                return -1;
            }
            pending[++depth] = children;
        }
    }
    if (pos != size) {
        snprintf (err, err_size, "%zu bytes after the end of the msgpack object", size - pos);
        return -1;
    }
    return 0;
truncated:
    snprintf (err, err_size, "msgpack ends at byte %zu in the middle of an object (truncated)",
              size);
    return -1;
}

//  --------------------------------------------------------------------------
//  Unpacking into the thread's zone

//  Each thread decodes into its own msgpack zone, cleared after each decode
//  and kept for the next.  (msgpack_zone_clear keeps the zone's first chunk.)
#define S_ZONE_CHUNK 8192
static pthread_key_t s_zone_key;
static pthread_once_t s_zone_once = PTHREAD_ONCE_INIT;

static void s_zone_free (void *zone)
{
    msgpack_zone_free (zone);
}

static void s_zone_init (void)
{
    pthread_key_create (&s_zone_key, s_zone_free);
}

//  The calling thread's zone, made on first use.  NULL on out-of-memory.
static msgpack_zone *s_thread_zone (void)
{
    pthread_once (&s_zone_once, s_zone_init);
    msgpack_zone *zone = pthread_getspecific (s_zone_key);
    if (!zone) {
        zone = msgpack_zone_new (S_ZONE_CHUNK);
        if (zone && pthread_setspecific (s_zone_key, zone)) {
            msgpack_zone_free (zone);
            zone = NULL;
        }
    }
    return zone;
}

int codec_mp_unpack (const void *buf, size_t size, msgpack_object *object, const char *what,
                     char *err, size_t err_size)
{
    assert (object);
    assert (what);
    char why[256];
    size_t offset = 0;
    if (codec_mp_check (buf, size, why, sizeof why)) {
        snprintf (err, err_size, "%s: %s", what, why);
        return -1;
    }
    msgpack_zone *zone = s_thread_zone ();
    if (!zone) {
        snprintf (err, err_size, "%s: out of memory", what);
        return -1;
    }
    if (msgpack_unpack (buf, size, &offset, zone, object) != MSGPACK_UNPACK_SUCCESS) {
        snprintf (err, err_size, "%s: malformed msgpack", what);
        return -1;
    }
    return 0;
}

void codec_mp_release (void)
{
    pthread_once (&s_zone_once, s_zone_init);
    msgpack_zone *zone = pthread_getspecific (s_zone_key);
    if (zone)
        msgpack_zone_clear (zone);
}

//  --------------------------------------------------------------------------
//  Getters

//  Are two byte strings equal?  Either may be NULL when empty (msgpack-c
//  gives a NULL pointer for an empty str).
static bool s_equal (const char *a, size_t a_size, const char *b, size_t b_size)
{
    return a_size == b_size && (a_size == 0 || memcmp (a, b, a_size) == 0);
}

bool codec_mp_same_str (const msgpack_object *a, const msgpack_object *b)
{
    assert (a);
    assert (b);
    return a->type == MSGPACK_OBJECT_STR && b->type == MSGPACK_OBJECT_STR &&
           s_equal (a->via.str.ptr, a->via.str.size, b->via.str.ptr, b->via.str.size);
}

const msgpack_object *codec_mp_find (const msgpack_object *obj, const char *key)
{
    assert (obj);
    if (obj->type != MSGPACK_OBJECT_MAP)
        return NULL;
    const msgpack_object_map *map = &obj->via.map;
    for (uint32_t i = 0; i < map->size; i++)
        if (codec_mp_str_is (&map->ptr[i].key, key))
            return &map->ptr[i].val;
    return NULL;
}

int codec_mp_str (const msgpack_object *obj, size_t min, char *dest, size_t dest_size)
{
    assert (obj);
    assert (dest);
    if (obj->type != MSGPACK_OBJECT_STR || obj->via.str.size >= dest_size ||
        obj->via.str.size < min ||
        (obj->via.str.size && memchr (obj->via.str.ptr, 0, obj->via.str.size)))
        return -1;
    if (obj->via.str.size)
        memcpy (dest, obj->via.str.ptr, obj->via.str.size);
    dest[obj->via.str.size] = 0;
    return 0;
}

const char *codec_mp_type_name (msgpack_object_type type)
{
    switch (type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "negative int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    }
    return "unknown type";
}
