/*  test_list.c - unit tests of util/list.h (the intrusive list) and
    util/utf8 (the UTF-8 checker), each against a plain reference: an
    array for the list, a decoder written from RFC 3629's table for UTF-8.
*/
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "utf8.h"
#include "unit.h"

typedef struct {
    int value;
    list_node_t node;
} item_t;

//  The list's values in order, both ways, must equal want[0..n)
static void s_assert_list (const list_t *list, const int *want, size_t n)
{
    ck_assert_uint_eq (list_size (list), n);
    ck_assert (list_empty (list) == (n == 0));
    size_t i = 0;
    for (list_node_t *node = list_first (list); node; node = list_next (list, node), i++) {
        ck_assert_uint_lt (i, n);
        ck_assert_int_eq (LIST_ITEM (node, item_t, node)->value, want[i]);
    }
    ck_assert_uint_eq (i, n);
    for (list_node_t *node = list_last (list); node; node = list_prev (list, node))
        ck_assert_int_eq (LIST_ITEM (node, item_t, node)->value, want[--i]);
    ck_assert_uint_eq (i, 0);
}

START_TEST (test_list_against_array)
{
    enum { N = 64 };
    item_t items[N];
    int ref[N] = {0};
    size_t n = 0;
    list_t list;
    list_init (&list);
    for (int i = 0; i < N; i++) {
        items[i].value = i;
        list_node_init (&items[i].node);
    }
    s_assert_list (&list, ref, 0);
    ck_assert_ptr_null (list_pop_first (&list));
    unsigned seed = 7;
    for (int round = 0; round < 5000; round++) {
        int i = rand_r (&seed) % N;
        item_t *item = &items[i];
        if (list_node_linked (&item->node)) {
            //  Unlink it, from wherever it is
            list_remove (&list, &item->node);
            ck_assert (!list_node_linked (&item->node));
            size_t k = 0;
            while (ref[k] != i)
                k++;
            memmove (ref + k, ref + k + 1, (n - k - 1) * sizeof *ref);
            n--;
        } else {
            switch (rand_r (&seed) % 3) {
            case 0:
                list_append (&list, &item->node);
                ref[n++] = i;
                break;
            case 1:
                list_prepend (&list, &item->node);
                memmove (ref + 1, ref, n * sizeof *ref);
                ref[0] = i;
                n++;
                break;
            default: {
                //  Before the k-th item, or at the end when k == n
                size_t k = n ? (size_t)rand_r (&seed) % (n + 1) : 0;
                list_node_t *at = k < n ? &items[ref[k]].node : &list.head;
                list_insert_before (&list, at, &item->node);
                memmove (ref + k + 1, ref + k, (n - k) * sizeof *ref);
                ref[k] = i;
                n++;
            }
            }
        }
        s_assert_list (&list, ref, n);
    }
    //  Pop the rest in order
    for (size_t k = 0; k < n; k++) {
        list_node_t *node = list_pop_first (&list);
        ck_assert_int_eq (LIST_ITEM (node, item_t, node)->value, ref[k]);
    }
    s_assert_list (&list, ref, 0);
}
END_TEST

START_TEST (test_list_foreach_unlinks_and_splice)
{
    item_t items[10];
    list_t a, b;
    list_init (&a);
    list_init (&b);
    for (int i = 0; i < 10; i++) {
        items[i].value = i;
        list_node_init (&items[i].node);
        list_append (i < 6 ? &a : &b, &items[i].node);
    }
    //  Removing the current item inside the loop is allowed: drop the odd ones
    item_t *item;
    int seen = 0;
    LIST_FOREACH (item, &a, item_t, node) {
        seen++;
        if (item->value % 2)
            list_remove (&a, &item->node);
    }
    ck_assert_int_eq (seen, 6);
    s_assert_list (&a, (int[]){0, 2, 4}, 3);
    list_splice (&a, &b);
    s_assert_list (&a, (int[]){0, 2, 4, 6, 7, 8, 9}, 7);
    s_assert_list (&b, NULL, 0);
    list_splice (&a, &b); //  an empty one changes nothing
    s_assert_list (&a, (int[]){0, 2, 4, 6, 7, 8, 9}, 7);
    ck_assert_ptr_null (LIST_ITEM ((list_node_t *)NULL, item_t, node));
}
END_TEST

//  RFC 3629's table of well-formed sequences, as a reference decoder:
//  length of the valid sequence at data, or 0
static size_t s_reference_utf8 (const uint8_t *d, size_t n)
{
    static const struct {
        uint8_t lead_lo, lead_hi, second_lo, second_hi;
        size_t len;
    } rows[] = {
        {0x00, 0x7F, 0, 0, 1},       {0xC2, 0xDF, 0x80, 0xBF, 2}, {0xE0, 0xE0, 0xA0, 0xBF, 3},
        {0xE1, 0xEC, 0x80, 0xBF, 3}, {0xED, 0xED, 0x80, 0x9F, 3}, {0xEE, 0xEF, 0x80, 0xBF, 3},
        {0xF0, 0xF0, 0x90, 0xBF, 4}, {0xF1, 0xF3, 0x80, 0xBF, 4}, {0xF4, 0xF4, 0x80, 0x8F, 4},
    };
    if (!n)
        return 0;
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        if (d[0] < rows[r].lead_lo || d[0] > rows[r].lead_hi)
            continue;
        size_t len = rows[r].len;
        if (len > n)
            return 0;
        if (len > 1 && (d[1] < rows[r].second_lo || d[1] > rows[r].second_hi))
            return 0;
        for (size_t k = 2; k < len; k++)
            if (d[k] < 0x80 || d[k] > 0xBF)
                return 0;
        return len;
    }
    return 0;
}

START_TEST (test_utf8_against_rfc_table)
{
    //  Every lead byte with second bytes across their whole range, and
    //  random tails
    unsigned seed = 3;
    uint8_t buf[4];
    size_t cases = 0, mismatches = 0; //  one Check assertion per case would take seconds
    for (int lead = 0; lead < 256; lead++)
        for (int second = 0; second < 256; second++)
            for (int tail = 0; tail < 4; tail++) {
                buf[0] = (uint8_t)lead;
                buf[1] = (uint8_t)second;
                buf[2] = (uint8_t)(tail & 1 ? 0x80 + rand_r (&seed) % 64 : rand_r (&seed));
                buf[3] = (uint8_t)(tail & 2 ? 0x80 + rand_r (&seed) % 64 : rand_r (&seed));
                for (size_t n = 0; n <= 4; n++, cases++)
                    mismatches += utf8_sequence (buf, n) != s_reference_utf8 (buf, n);
            }
    ck_assert_uint_eq (cases, 256 * 256 * 4 * 5);
    ck_assert_uint_eq (mismatches, 0);
    const char *ok = "plain, \xC3\xA9t\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80, \xF4\x8F\xBF\xBF";
    ck_assert (utf8_valid ((const uint8_t *)ok, strlen (ok)));
    ck_assert (utf8_valid ((const uint8_t *)"", 0));
    const char *bad[] = {"\xC0\xAF",         //  overlong '/'
                         "\xE0\x80\xAF",     //  overlong
                         "\xED\xA0\x80",     //  surrogate U+D800
                         "\xF4\x90\x80\x80", //  past U+10FFFF
                         "\xF8\x88\x80\x80", //  5-byte lead
                         "ab\xE2\x82",       //  truncated
                         "\x80"};            //  lone continuation
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg (!utf8_valid ((const uint8_t *)bad[i], strlen (bad[i])), "case %zu", i);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("list");
    TCase *tc = tcase_create ("core");
    tcase_add_test (tc, test_list_against_array);
    tcase_add_test (tc, test_list_foreach_unlinks_and_splice);
    tcase_add_test (tc, test_utf8_against_rfc_table);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
