/*  names.c - the names of result codes and datatypes (amaas.h).

    Part of the public API, and used by the protocol library to read and
    write datatype names on the wire: both link this one file.
*/
#include <string.h>

#include "amaas.h"

const char *amaas_code_name (amaas_code_t code)
{
    switch (code) {
    case AMAAS_OK: return "OK";
    case AMAAS_CANCELLED: return "CANCELLED";
    case AMAAS_UNKNOWN: return "UNKNOWN";
    case AMAAS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case AMAAS_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case AMAAS_NOT_FOUND: return "NOT_FOUND";
    case AMAAS_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case AMAAS_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case AMAAS_INTERNAL: return "INTERNAL";
    case AMAAS_UNAVAILABLE: return "UNAVAILABLE";
    case AMAAS_UNAUTHENTICATED: return "UNAUTHENTICATED";
    }
    return "UNKNOWN";
}

//  Indexed by amaas_dtype_t
static const char *s_dtype_names[] = {"INVALID", "FP32",  "FP64", "INT32",
                                      "INT64",   "UINT8", "BOOL", "BYTES"};
#define S_DTYPES (sizeof s_dtype_names / sizeof s_dtype_names[0])

const char *amaas_dtype_name (amaas_dtype_t dtype)
{
    if ((unsigned)dtype < S_DTYPES)
        return s_dtype_names[dtype];
    return "INVALID";
}

amaas_dtype_t amaas_dtype_from_name (const char *name, size_t len)
{
    for (size_t i = 1; i < S_DTYPES; i++)
        if (strlen (s_dtype_names[i]) == len && memcmp (s_dtype_names[i], name, len) == 0)
            return (amaas_dtype_t)i;
    return AMAAS_DTYPE_INVALID;
}

size_t amaas_dtype_size (amaas_dtype_t dtype)
{
    switch (dtype) {
    case AMAAS_FP32:
    case AMAAS_INT32: return 4;
    case AMAAS_FP64:
    case AMAAS_INT64: return 8;
    case AMAAS_UINT8:
    case AMAAS_BOOL: return 1;
    default: return 0;
    }
}
