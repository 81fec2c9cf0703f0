/*  table.c - hash tables keyed by a uint64 (job tokens, job ids).  */
#include "table.h"

static size_t u64_hash (const void *key)
{
    uint64_t x = *(const uint64_t *)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    return (size_t)(x ^ (x >> 33));
}

static int u64_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

char *table_identity_key (char *key, char tag, const void *identity, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    const uint8_t *data = identity;
    if (!data)
        size = 0;
    if (size > 255)
        size = 255;
    char *p = key;
    if (tag) {
        *p++ = tag;
        *p++ = ':';
    }
    for (size_t i = 0; i < size; i++) {
        *p++ = hex[data[i] >> 4];
        *p++ = hex[data[i] & 15];
    }
    *p = 0;
    return key;
}

zhashx_t *table_u64_new (void)
{
    zhashx_t *table = zhashx_new ();
    if (!table)
        return NULL;
    zhashx_set_key_hasher (table, u64_hash);
    zhashx_set_key_comparator (table, u64_compare);
    zhashx_set_key_duplicator (table, NULL);
    zhashx_set_key_destructor (table, NULL);
    return table;
}
