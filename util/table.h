/*  table.h - keys for ROUTER identities, and sweeping czmq hash tables.  */
#ifndef AMAAS_TABLE_H_INCLUDED
#define AMAAS_TABLE_H_INCLUDED

#include <czmq.h>

//  Bytes of a key made by table_identity_key
#define TABLE_KEY_MAX (2 + 2 * 255 + 1)

//  A string key for a ROUTER identity (a connection) of `size` bytes:
//  "TAG:HEX", or "HEX" when tag is 0; identities longer than 255 bytes are
//  cut (ZeroMQ allows no more).  identity may be NULL (an empty HEX).
//  Writes into key, which holds TABLE_KEY_MAX bytes, and returns it.
//  Cannot fail.
char *table_identity_key (char *key, char tag, const void *identity, size_t size);

//  Whether an item of a table is to go
typedef bool (table_doomed_fn) (const void *item, const void *arg);

//  Deletes (with the table's item destructor) every item for which doomed
//  is true.  Returns how many; 0 also when there is no memory to list them
//  (then nothing is deleted: a later sweep does it).
size_t table_delete_if (zhashx_t *table, table_doomed_fn *doomed, const void *arg);

#endif
