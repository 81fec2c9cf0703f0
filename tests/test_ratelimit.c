/*  test_ratelimit.c - unit tests of the per-peer limit on log lines,
    without sockets or a clock: the tests pass the time.
*/
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"
#include "unit.h"

#define MAX_REPORTS 16

typedef struct {
    char key[MAX_REPORTS][64];
    size_t count[MAX_REPORTS];
    size_t n;
} reports_t;

static void record (const char *peer_key, size_t suppressed, void *arg)
{
    reports_t *r = arg;
    ck_assert_uint_lt (r->n, MAX_REPORTS);
    snprintf (r->key[r->n], sizeof r->key[r->n], "%s", peer_key);
    r->count[r->n] = suppressed;
    r->n++;
}

//  The count reported for key, or 0
static size_t reported (const reports_t *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp (r->key[i], key))
            return r->count[i];
    return 0;
}

//  How many of n lines of peer at now_ms are allowed
static size_t allow_n (ratelimit_t *rl, const char *peer, size_t n, int64_t now_ms)
{
    size_t allowed = 0;
    for (size_t i = 0; i < n; i++)
        allowed += ratelimit_allow (rl, peer, now_ms);
    return allowed;
}

START_TEST (test_first_lines_pass_then_suppressed)
{
    ratelimit_t *rl = ratelimit_new (5);
    ck_assert_ptr_nonnull (rl);
    for (int i = 0; i < 5; i++)
        ck_assert (ratelimit_allow (rl, "A1", 1000 + i * 100));
    ck_assert (!ratelimit_allow (rl, "A1", 1500));
    ck_assert_uint_eq (allow_n (rl, "A1", 994, 1999), 0);
    reports_t r = {0};
    ck_assert_uint_eq (ratelimit_flush (rl, 2000, record, &r), 1);
    ck_assert_uint_eq (r.n, 1);
    ck_assert_str_eq (r.key[0], "A1");
    ck_assert_uint_eq (r.count[0], 995);
    ratelimit_destroy (&rl);
    ck_assert_ptr_null (rl);
    ratelimit_destroy (&rl); //  a second time does nothing
}
END_TEST

START_TEST (test_peers_are_independent)
{
    ratelimit_t *rl = ratelimit_new (3);
    ck_assert_uint_eq (allow_n (rl, "A1", 100, 0), 3);
    ck_assert_uint_eq (allow_n (rl, "B2", 2, 10), 2);
    ck_assert_uint_eq (allow_n (rl, "B2", 10, 20), 1);
    ck_assert_uint_eq (allow_n (rl, NULL, 4, 30), 3); //  NULL is the peer ""
    reports_t r = {0};
    ck_assert_uint_eq (ratelimit_flush (rl, 500, record, &r), 3);
    ck_assert_uint_eq (reported (&r, "A1"), 97);
    ck_assert_uint_eq (reported (&r, "B2"), 9);
    ck_assert_uint_eq (reported (&r, ""), 1);
    ratelimit_destroy (&rl);
}
END_TEST

START_TEST (test_a_new_second_allows_again)
{
    ratelimit_t *rl = ratelimit_new (2);
    ck_assert_uint_eq (allow_n (rl, "A1", 5, 10000), 2);
    ck_assert_uint_eq (allow_n (rl, "A1", 5, 10999), 0); //  same second
    ck_assert_uint_eq (allow_n (rl, "A1", 5, 11000), 2); //  a new one
    ck_assert_uint_eq (allow_n (rl, "A1", 5, 11500), 0);
    ck_assert_uint_eq (allow_n (rl, "A1", 5, 5000), 2); //  the clock went back
    reports_t r = {0};
    ratelimit_flush (rl, 11600, record, &r);
    ck_assert_uint_eq (reported (&r, "A1"), 3 + 5 + 3 + 5 + 3);
    ratelimit_destroy (&rl);
}
END_TEST

START_TEST (test_flush_reports_once)
{
    ratelimit_t *rl = ratelimit_new (1);
    ck_assert_uint_eq (allow_n (rl, "A1", 4, 0), 1);
    ck_assert_uint_eq (allow_n (rl, "B2", 1, 0), 1); //  nothing suppressed
    reports_t r = {0};
    ck_assert_uint_eq (ratelimit_flush (rl, 1000, record, &r), 1);
    ck_assert_uint_eq (r.n, 1);
    ck_assert_uint_eq (reported (&r, "A1"), 3);
    //  Nothing more to report, until lines are suppressed again
    memset (&r, 0, sizeof r);
    ck_assert_uint_eq (ratelimit_flush (rl, 2000, record, &r), 0);
    ck_assert_uint_eq (r.n, 0);
    ck_assert_uint_eq (allow_n (rl, "A1", 3, 2100), 1);
    ck_assert_uint_eq (ratelimit_flush (rl, 3000, record, &r), 1);
    ck_assert_uint_eq (reported (&r, "A1"), 2);
    ratelimit_destroy (&rl);
}
END_TEST

START_TEST (test_idle_peers_are_forgotten)
{
    ratelimit_t *rl = ratelimit_new (1);
    ck_assert_uint_eq (allow_n (rl, "A1", 3, 0), 1);
    ck_assert_uint_eq (allow_n (rl, "B2", 1, 3000), 1);
    ck_assert_uint_eq (ratelimit_peers (rl), 2);
    reports_t r = {0};
    //  A1 idle for less than RATELIMIT_IDLE_MS: kept, and reported
    ck_assert_uint_eq (ratelimit_flush (rl, RATELIMIT_IDLE_MS - 1, record, &r), 1);
    ck_assert_uint_eq (reported (&r, "A1"), 2);
    ck_assert_uint_eq (ratelimit_peers (rl), 2);
    //  Now A1 goes, B2 (seen at 3000) stays
    ck_assert_uint_eq (ratelimit_flush (rl, RATELIMIT_IDLE_MS, record, &r), 0);
    ck_assert_uint_eq (ratelimit_peers (rl), 1);
    ck_assert_uint_eq (ratelimit_flush (rl, 3000 + RATELIMIT_IDLE_MS, record, &r), 0);
    ck_assert_uint_eq (ratelimit_peers (rl), 0);
    //  A peer forgotten with lines suppressed was reported first
    ck_assert_uint_eq (allow_n (rl, "C3", 4, 20000), 1);
    memset (&r, 0, sizeof r);
    ck_assert_uint_eq (ratelimit_flush (rl, 30000, record, &r), 1);
    ck_assert_uint_eq (reported (&r, "C3"), 3);
    ck_assert_uint_eq (ratelimit_peers (rl), 0);
    ratelimit_destroy (&rl);
}
END_TEST

START_TEST (test_the_cap_bounds_memory)
{
    ratelimit_t *rl = ratelimit_new (2);
    char key[32];
    for (int i = 0; i < RATELIMIT_MAX_PEERS; i++) {
        snprintf (key, sizeof key, "P%d", i);
        ck_assert (ratelimit_allow (rl, key, 0));
    }
    ck_assert_uint_eq (ratelimit_peers (rl), RATELIMIT_MAX_PEERS);
    //  Tracked peers keep their own limit
    ck_assert_uint_eq (allow_n (rl, "P0", 3, 0), 1);
    //  Ten thousand new peers are not tracked: they share one limit
    size_t allowed = 0;
    for (int i = 0; i < 10000; i++) {
        snprintf (key, sizeof key, "N%d", i);
        allowed += ratelimit_allow (rl, key, 10);
    }
    ck_assert_uint_eq (allowed, 2);
    ck_assert_uint_eq (ratelimit_peers (rl), RATELIMIT_MAX_PEERS);
    reports_t r = {0};
    ck_assert_uint_eq (ratelimit_flush (rl, 500, record, &r), 2);
    ck_assert_uint_eq (reported (&r, "P0"), 2);
    ck_assert_uint_eq (reported (&r, RATELIMIT_OTHERS), 9998);
    ck_assert_str_eq (r.key[1], RATELIMIT_OTHERS); //  reported last
    //  Once the idle are forgotten, new peers are tracked again
    ck_assert_uint_eq (ratelimit_flush (rl, 10 + RATELIMIT_IDLE_MS, record, &r), 0);
    ck_assert_uint_eq (ratelimit_peers (rl), 0);
    ck_assert (ratelimit_allow (rl, "N1", 20000));
    ck_assert_uint_eq (ratelimit_peers (rl), 1);
    ratelimit_destroy (&rl);
}
END_TEST

START_TEST (test_zero_allows_nothing)
{
    ratelimit_t *rl = ratelimit_new (0);
    ck_assert_uint_eq (allow_n (rl, "A1", 7, 0), 0);
    reports_t r = {0};
    ck_assert_uint_eq (ratelimit_flush (rl, 1000, record, &r), 1);
    ck_assert_uint_eq (reported (&r, "A1"), 7);
    ratelimit_destroy (&rl);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("ratelimit");
    TCase *tc = tcase_create ("core");
    tcase_add_test (tc, test_first_lines_pass_then_suppressed);
    tcase_add_test (tc, test_peers_are_independent);
    tcase_add_test (tc, test_a_new_second_allows_again);
    tcase_add_test (tc, test_flush_reports_once);
    tcase_add_test (tc, test_idle_peers_are_forgotten);
    tcase_add_test (tc, test_the_cap_bounds_memory);
    tcase_add_test (tc, test_zero_allows_nothing);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
