/*  test_idmap.c - unit tests of the open-addressing table of util/idmap,
    against a plain array as the reference: items whose hashes collide are
    told apart, deletions keep every other item reachable, the table grows,
    and iteration sees each item once.
*/
#include <check.h>
#include <stdlib.h>

#include "idmap.h"
#include "unit.h"

typedef struct {
    uint64_t key;
    bool present;
} item_t;

static bool item_is (const void *item, const void *key)
{
    return ((const item_t *)item)->key == *(const uint64_t *)key;
}

//  A deliberately poor hash, so that many keys share one: 16 values only
static uint64_t poor_hash (uint64_t key)
{
    return key % 16;
}

START_TEST (test_collisions_and_deletes)
{
    enum { N = 2000 };
    item_t *items = calloc (N, sizeof *items);
    idmap_t *map = idmap_new ();
    ck_assert_ptr_nonnull (map);
    for (uint64_t i = 0; i < N; i++) {
        items[i].key = i * 7 + 1;
        ck_assert_int_eq (idmap_insert (map, poor_hash (items[i].key), &items[i]), 0);
        items[i].present = true;
    }
    ck_assert_uint_eq (idmap_size (map), N);
    //  Delete in a scattered order; after each step every item is found or
    //  not, as the reference says
    unsigned seed = 42;
    for (int round = 0; round < N / 2; round++) {
        uint64_t i = (uint64_t)rand_r (&seed) % N;
        int rc = idmap_delete (map, poor_hash (items[i].key), &items[i]);
        ck_assert_int_eq (rc, items[i].present ? 0 : -1);
        items[i].present = false;
        if (round % 97 == 0)
            for (uint64_t j = 0; j < N; j++)
                ck_assert_ptr_eq (
                    idmap_find (map, poor_hash (items[j].key), item_is, &items[j].key),
                    items[j].present ? &items[j] : NULL);
    }
    size_t left = 0;
    for (uint64_t j = 0; j < N; j++) {
        left += items[j].present;
        ck_assert_ptr_eq (idmap_find (map, poor_hash (items[j].key), item_is, &items[j].key),
                          items[j].present ? &items[j] : NULL);
    }
    ck_assert_uint_eq (idmap_size (map), left);
    //  A key never inserted is not found, even with a hash in use
    uint64_t absent = 5;
    ck_assert_ptr_null (idmap_find (map, poor_hash (absent), item_is, &absent));
    idmap_destroy (&map);
    ck_assert_ptr_null (map);
    free (items);
}
END_TEST

START_TEST (test_iteration_sees_each_item_once)
{
    enum { N = 300 };
    item_t items[N];
    int seen[N] = {0};
    idmap_t *map = idmap_new ();
    for (uint64_t i = 0; i < N; i++) {
        items[i].key = i;
        ck_assert_int_eq (idmap_insert (map, idmap_hash_pair (i, 0), &items[i]), 0);
    }
    size_t cursor = 0, count = 0;
    item_t *item;
    while ((item = idmap_next (map, &cursor))) {
        seen[item - items]++;
        count++;
    }
    ck_assert_uint_eq (count, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq (seen[i], 1);
    idmap_destroy (&map);
}
END_TEST

START_TEST (test_hashes)
{
    //  Same input, same hash; one byte more or another seed, another hash
    ck_assert_uint_eq (idmap_hash_bytes ("abc", 3, 0), idmap_hash_bytes ("abc", 3, 0));
    ck_assert_uint_ne (idmap_hash_bytes ("abc", 3, 0), idmap_hash_bytes ("abcd", 4, 0));
    ck_assert_uint_ne (idmap_hash_bytes ("abc", 3, 0), idmap_hash_bytes ("abc", 3, 1));
    ck_assert_uint_ne (idmap_hash_pair (1, 2), idmap_hash_pair (2, 1));
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("idmap");
    TCase *tc = tcase_create ("core");
    tcase_add_test (tc, test_collisions_and_deletes);
    tcase_add_test (tc, test_iteration_sees_each_item_once);
    tcase_add_test (tc, test_hashes);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
