/*  test_admission.c - unit tests of the broker's per-client admission
    control, without sockets or a clock: the tests pass the time.
*/
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "admission.h"
#include "unit.h"

#define IDLE_MS 1000

//  The record of the client named `name`, made at now_ms if need be
static admission_client_t *client (admission_t *a, const char *name, int64_t now_ms)
{
    admission_client_t *c = admission_client (a, name, strlen (name), now_ms);
    ck_assert_ptr_nonnull (c);
    return c;
}

START_TEST (test_cap_refuses_and_release_frees)
{
    admission_t *a = admission_new (3, IDLE_MS);
    ck_assert_ptr_nonnull (a);
    ck_assert_uint_eq (admission_max_jobs (a), 3);
    admission_client_t *c = client (a, "alice", 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (admission_acquire (a, c), 0);
    ck_assert_uint_eq (admission_jobs (c), 3);
    //  At the cap: refused, and the count is unchanged
    ck_assert_int_eq (admission_acquire (a, c), -1);
    ck_assert_int_eq (admission_acquire (a, c), -1);
    ck_assert_uint_eq (admission_jobs (c), 3);
    //  Another client has its own cap
    admission_client_t *other = client (a, "bob", 0);
    ck_assert_ptr_ne (other, c);
    ck_assert_int_eq (admission_acquire (a, other), 0);
    //  A job ends: one slot, and only one
    admission_release (a, c, 10);
    ck_assert_uint_eq (admission_jobs (c), 2);
    ck_assert_int_eq (admission_acquire (a, c), 0);
    ck_assert_int_eq (admission_acquire (a, c), -1);
    admission_destroy (&a);
    ck_assert_ptr_null (a);
}
END_TEST

START_TEST (test_same_identity_same_record)
{
    admission_t *a = admission_new (10, IDLE_MS);
    ck_assert_ptr_null (admission_lookup (a, "alice", 5));
    admission_client_t *c = client (a, "alice", 0);
    ck_assert_ptr_eq (admission_client (a, "alice", 5, 0), c);
    ck_assert_ptr_eq (admission_lookup (a, "alice", 5), c);
    //  Identities are bytes: a prefix or a zero byte makes another client
    ck_assert_ptr_null (admission_lookup (a, "alic", 4));
    ck_assert_ptr_null (admission_lookup (a, "alice\0", 6));
    ck_assert_uint_eq (admission_size (a), 1);
    admission_destroy (&a);
}
END_TEST

START_TEST (test_idle_swept_only_after_timeout)
{
    admission_t *a = admission_new (10, IDLE_MS);
    admission_client_t *busy = client (a, "busy", 0);
    admission_client_t *idle = client (a, "idle", 0);
    ck_assert_int_eq (admission_acquire (a, busy), 0);
    ck_assert_int_eq (admission_acquire (a, idle), 0);
    admission_release (a, idle, 5000); //  idle from 5000
    //  Just before its timeout: kept
    ck_assert_uint_eq (admission_sweep (a, 5000 + IDLE_MS - 1), 0);
    ck_assert_ptr_eq (admission_lookup (a, "idle", 4), idle);
    //  At its timeout: forgotten; a client with a job never is
    ck_assert_uint_eq (admission_sweep (a, 5000 + IDLE_MS), 1);
    ck_assert_ptr_null (admission_lookup (a, "idle", 4));
    ck_assert_uint_eq (admission_sweep (a, 1000000), 0);
    ck_assert_ptr_eq (admission_lookup (a, "busy", 4), busy);
    ck_assert_uint_eq (admission_jobs (busy), 1);
    //  Its job ends: it goes a timeout later
    admission_release (a, busy, 2000000);
    ck_assert_uint_eq (admission_sweep (a, 2000000 + IDLE_MS - 1), 0);
    ck_assert_uint_eq (admission_sweep (a, 2000000 + IDLE_MS), 1);
    ck_assert_uint_eq (admission_size (a), 0);
    admission_destroy (&a);
}
END_TEST

START_TEST (test_new_record_idle_from_creation)
{
    //  A client refused before its first job is kept for a timeout too
    admission_t *a = admission_new (0, IDLE_MS);
    admission_client_t *c = client (a, "late", 70000);
    ck_assert_int_eq (admission_acquire (a, c), -1);
    ck_assert_uint_eq (admission_sweep (a, 70000 + IDLE_MS - 1), 0);
    ck_assert_uint_eq (admission_sweep (a, 70000 + IDLE_MS), 1);
    admission_destroy (&a);
}
END_TEST

START_TEST (test_returning_after_sweep)
{
    admission_t *a = admission_new (2, IDLE_MS);
    admission_client_t *c = client (a, "back", 0);
    ck_assert_int_eq (admission_acquire (a, c), 0);
    ck_assert_int_eq (admission_acquire (a, c), 0);
    admission_release (a, c, 100);
    admission_release (a, c, 100);
    ck_assert_uint_eq (admission_sweep (a, 100 + IDLE_MS), 1);
    //  It comes back: a fresh record with a full allowance
    c = client (a, "back", 5000);
    ck_assert_uint_eq (admission_jobs (c), 0);
    ck_assert_int_eq (admission_acquire (a, c), 0);
    ck_assert_int_eq (admission_acquire (a, c), 0);
    ck_assert_int_eq (admission_acquire (a, c), -1);
    ck_assert_uint_eq (admission_size (a), 1);
    admission_destroy (&a);
}
END_TEST

START_TEST (test_move_to_new_connection)
{
    admission_t *a = admission_new (1, IDLE_MS);
    admission_client_t *old = client (a, "old", 0);
    admission_client_t *fresh = client (a, "new", 0);
    ck_assert_int_eq (admission_acquire (a, old), 0);
    ck_assert_int_eq (admission_acquire (a, fresh), 0);
    //  The job of old is sent again on the new connection: counted there
    //  even over the cap (it is not a new job), released by old
    admission_move (a, old, fresh, 300);
    ck_assert_uint_eq (admission_jobs (old), 0);
    ck_assert_uint_eq (admission_jobs (fresh), 2);
    ck_assert_int_eq (admission_acquire (a, fresh), -1);
    ck_assert_uint_eq (admission_sweep (a, 300 + IDLE_MS), 1);
    ck_assert_ptr_null (admission_lookup (a, "old", 3));
    //  Moving to the same client, or from none, counts it once
    admission_move (a, fresh, fresh, 400);
    ck_assert_uint_eq (admission_jobs (fresh), 2);
    admission_move (a, NULL, fresh, 400);
    ck_assert_uint_eq (admission_jobs (fresh), 3);
    admission_destroy (&a);
}
END_TEST

START_TEST (test_many_clients)
{
    enum { CLIENTS = 5000 };
    admission_t *a = admission_new (2, IDLE_MS);
    char name[32];
    for (int i = 0; i < CLIENTS; i++) {
        snprintf (name, sizeof name, "client-%d", i);
        admission_client_t *c = client (a, name, 0);
        ck_assert_int_eq (admission_acquire (a, c), 0);
        if (i % 2 == 0)
            admission_release (a, c, i); //  even ones idle from time i
    }
    ck_assert_uint_eq (admission_size (a), CLIENTS);
    //  The even clients idle since 1998 or before go, nothing else
    ck_assert_uint_eq (admission_sweep (a, 1998 + IDLE_MS), 1000);
    ck_assert_uint_eq (admission_size (a), CLIENTS - 1000);
    for (int i = 0; i < CLIENTS; i++) {
        snprintf (name, sizeof name, "client-%d", i);
        admission_client_t *c = admission_lookup (a, name, strlen (name));
        if (i % 2 == 0 && i < 2000)
            ck_assert_ptr_null (c);
        else {
            ck_assert_ptr_nonnull (c);
            ck_assert_uint_eq (admission_jobs (c), i % 2);
        }
    }
    ck_assert_uint_eq (admission_sweep (a, CLIENTS + IDLE_MS), CLIENTS / 2 - 1000);
    ck_assert_uint_eq (admission_size (a), CLIENTS / 2);
    admission_destroy (&a);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("admission");
    TCase *tc = tcase_create ("admission");
    tcase_add_test (tc, test_cap_refuses_and_release_frees);
    tcase_add_test (tc, test_same_identity_same_record);
    tcase_add_test (tc, test_idle_swept_only_after_timeout);
    tcase_add_test (tc, test_new_record_idle_from_creation);
    tcase_add_test (tc, test_returning_after_sweep);
    tcase_add_test (tc, test_move_to_new_connection);
    tcase_add_test (tc, test_many_clients);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
