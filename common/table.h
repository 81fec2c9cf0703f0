/*  table.h - hash tables keyed by a uint64 (job tokens, job ids).

    A zhashx whose keys are pointers to uint64_t values stored inside the
    items themselves: nothing is copied or allocated per key.
*/
#ifndef AMAAS_TABLE_H_INCLUDED
#define AMAAS_TABLE_H_INCLUDED

#include <czmq.h>

//  New table; the caller sets an item destructor if it wants one.  NULL on
//  out-of-memory.
zhashx_t *table_u64_new (void);

//  Bytes of a key made by table_identity_key
#define TABLE_KEY_MAX (2 + 2 * 255 + 1)

//  A string key for a ROUTER identity (a connection) of `size` bytes:
//  "TAG:HEX", or "HEX" when tag is 0; identities longer than 255 bytes are
//  cut (ZeroMQ allows no more).  identity may be NULL (an empty HEX).
//  Writes into key, which holds TABLE_KEY_MAX bytes, and returns it.
//  Cannot fail.
char *table_identity_key (char *key, char tag, const void *identity, size_t size);

#endif
