/*  table.c - keys for ROUTER identities, and sweeping czmq hash tables.  */
#include "table.h"

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

size_t table_delete_if (zhashx_t *table, table_doomed_fn *doomed, const void *arg)
{
    //  Collect the keys first: deleting while iterating is not allowed
    zlistx_t *keys = NULL;
    for (void *item = zhashx_first (table); item; item = zhashx_next (table))
        if (doomed (item, arg)) {
            if (!keys && !(keys = zlistx_new ()))
                return 0;
            zlistx_add_end (keys, (void *)zhashx_cursor (table));
        }
    if (!keys)
        return 0;
    size_t count = zlistx_size (keys);
    for (const void *key = zlistx_first (keys); key; key = zlistx_next (keys))
        zhashx_delete (table, key);
    zlistx_destroy (&keys);
    return count;
}
