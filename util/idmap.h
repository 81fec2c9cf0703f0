/*  idmap.h - items found by a 64-bit key, in an open-addressing table.

    The table holds pointers to the caller's items, each filed under a
    64-bit hash the caller computes; a lookup walks the items of one hash
    and asks the caller's `equal` function which is the one sought, so
    that items whose keys differ but whose hashes collide are still told
    apart.  Linear probing, at most half full, deletion by backward shift
    (no tombstones): a lookup reads one or two slots, and inserting or
    deleting allocates nothing until the table must double.
*/
#ifndef AMAAS_IDMAP_H_INCLUDED
#define AMAAS_IDMAP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idmap_t idmap_t;

//  Whether `item` is the one that `key` describes.
typedef bool (idmap_equal_fn) (const void *item, const void *key);

//  New empty table.  NULL on out-of-memory.
idmap_t *idmap_new (void);

//  Free the table (not the items).  Nulls *self_p.  Cannot fail.
void idmap_destroy (idmap_t **self_p);

//  The item filed under `hash` for which equal (item, key) is true, or NULL.
//  Cannot fail.
void *idmap_find (const idmap_t *self, uint64_t hash, idmap_equal_fn *equal, const void *key);

//  Files `item` under `hash`.  Returns 0; -1 on out-of-memory, and nothing
//  is changed.  The same item must not be filed twice.
int idmap_insert (idmap_t *self, uint64_t hash, void *item);

//  Removes `item`, filed under `hash`.  Returns 0, -1 if it is not there.
int idmap_delete (idmap_t *self, uint64_t hash, const void *item);

//  Iterates over the items, in no order: the item at or after *cursor
//  (start at 0), or NULL at the end; *cursor moves past it.  The table must
//  not change meanwhile.  Cannot fail.
void *idmap_next (const idmap_t *self, size_t *cursor);

//  Items in the table.  Cannot fail.
size_t idmap_size (const idmap_t *self);

//  A 64-bit hash of bytes (FNV-1a, then a final mix), for callers' keys.
//  Cannot fail.
uint64_t idmap_hash_bytes (const void *data, size_t size, uint64_t seed);

//  A 64-bit mix of two values, for keys made of two numbers.  Cannot fail.
uint64_t idmap_hash_pair (uint64_t a, uint64_t b);

#endif
