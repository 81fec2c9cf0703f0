/*  idmap.c - items found by a 64-bit key, in an open-addressing table.

    Slots hold (hash, item); an empty slot has item NULL.  An item lives at
    its home slot (the hash's top bits) or after it, with no empty slot in
    between; deleting moves later items of the run back so that this stays
    true without tombstones (Knuth's algorithm R).
*/
#include "idmap.h"

#include <assert.h>

#include <stdlib.h>

#define S_FIRST_SLOTS 64 //  a power of two

typedef struct {
    uint64_t hash;
    void *item; //  NULL where free
} slot_t;

struct idmap_t {
    slot_t *slots; //  a power of two of them
    size_t mask;   //  slots - 1
    int shift;     //  64 - log2 (slots)
    size_t count;  //  items held
};

//  Spreads the hash so that its top bits, which pick the slot, depend on
//  all of it (Fibonacci hashing).
static size_t s_home (const idmap_t *self, uint64_t hash)
{
    return (size_t)((hash * 0x9E3779B97F4A7C15ULL) >> self->shift) & self->mask;
}

static int s_resize (idmap_t *self, size_t slots)
{
    slot_t *fresh = calloc (slots, sizeof *fresh);
    if (!fresh)
        return -1;
    slot_t *old = self->slots;
    size_t old_slots = old ? self->mask + 1 : 0;
    self->slots = fresh;
    self->mask = slots - 1;
    self->shift = 64 - __builtin_ctzll (slots);
    for (size_t i = 0; i < old_slots; i++)
        if (old[i].item) {
            size_t j = s_home (self, old[i].hash);
            while (fresh[j].item)
                j = (j + 1) & self->mask;
            fresh[j] = old[i];
        }
    free (old);
    return 0;
}

idmap_t *idmap_new (void)
{
    idmap_t *self = calloc (1, sizeof *self);
    if (self && s_resize (self, S_FIRST_SLOTS)) {
        free (self);
        self = NULL;
    }
    return self;
}

void idmap_destroy (idmap_t **self_p)
{
    assert (self_p);
    idmap_t *self = *self_p;
    if (!self)
        return;
    free (self->slots);
    free (self);
    *self_p = NULL;
}

void *idmap_find (const idmap_t *self, uint64_t hash, idmap_equal_fn *equal, const void *key)
{
    assert (self);
    assert (equal);
    for (size_t i = s_home (self, hash); self->slots[i].item; i = (i + 1) & self->mask)
        if (self->slots[i].hash == hash && equal (self->slots[i].item, key))
            return self->slots[i].item;
    return NULL;
}

int idmap_insert (idmap_t *self, uint64_t hash, void *item)
{
    assert (self);
    assert (item);
    if (2 * (self->count + 1) > self->mask + 1 && s_resize (self, 2 * (self->mask + 1)))
        return -1;
    size_t i = s_home (self, hash);
    while (self->slots[i].item)
        i = (i + 1) & self->mask;
    self->slots[i].hash = hash;
    self->slots[i].item = item;
    self->count++;
    return 0;
}

int idmap_delete (idmap_t *self, uint64_t hash, const void *item)
{
    assert (self);
    assert (item);
    size_t i = s_home (self, hash);
    while (self->slots[i].item && self->slots[i].item != item)
        i = (i + 1) & self->mask;
    if (!self->slots[i].item)
        return -1;
    //  Move back each later item of the run whose home is not between the
    //  hole and it (cyclically), so that every item stays reachable
    size_t hole = i;
    for (size_t j = (i + 1) & self->mask; self->slots[j].item; j = (j + 1) & self->mask) {
        size_t h = s_home (self, self->slots[j].hash);
        bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (!stays) {
            self->slots[hole] = self->slots[j];
            hole = j;
        }
    }
    self->slots[hole].item = NULL;
    assert (self->count > 0);
    self->count--;
    return 0;
}

void *idmap_next (const idmap_t *self, size_t *cursor)
{
    assert (self);
    assert (cursor);
    while (*cursor <= self->mask) {
        void *item = self->slots[(*cursor)++].item;
        if (item)
            return item;
    }
    return NULL;
}

size_t idmap_size (const idmap_t *self)
{
    assert (self);
    return self->count;
}

static uint64_t s_mix (uint64_t x)
{
    //  splitmix64's finaliser
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

uint64_t idmap_hash_bytes (const void *data, size_t size, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xCBF29CE484222325ULL ^ seed;
    for (size_t i = 0; i < size; i++)
        h = (h ^ p[i]) * 0x100000001B3ULL;
    return s_mix (h);
}

uint64_t idmap_hash_pair (uint64_t a, uint64_t b)
{
    return s_mix (a * 0x9E3779B97F4A7C15ULL ^ s_mix (b));
}
