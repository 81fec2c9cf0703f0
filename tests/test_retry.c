/*  test_retry.c - unit tests of libamaas's retry policy (client/retry.c),
    without sockets: the tests give the time and check what the module says
    is due at each moment.
*/
#include <check.h>
#include <stdint.h>

#include "retry.h"
#include "unit.h"

#define NEVER 1000000000 //  a heartbeat that never comes in these tests

//  Starts a job at `now` and sends it; returns the deadline the send carries.
static uint32_t s_start (retry_t *r, retry_job_t *job, uint32_t deadline_ms, int64_t now)
{
    *job = (retry_job_t){0};
    retry_job_start (r, job, deadline_ms, now);
    ck_assert_int_eq (job->state, RETRY_SENDING);
    return retry_job_sent (r, job, now);
}

//  Asserts that nothing is due at `now`.
static void s_idle_at (retry_t *r, int64_t now)
{
    retry_job_t *job = (retry_job_t *)1;
    ck_assert_int_eq (retry_next (r, now, &job), RETRY_IDLE);
    ck_assert_ptr_null (job);
}

//  Asserts that `action` is due at `now`, for `expected` (NULL for PING).
static void s_due_at (retry_t *r, int64_t now, retry_action_t action, retry_job_t *expected)
{
    retry_job_t *job = NULL;
    ck_assert_int_eq (retry_next (r, now, &job), action);
    ck_assert_ptr_eq (job, expected);
    if (job)
        ck_assert_int_eq (job->state, RETRY_SENDING);
}

START_TEST (test_deadline_fires_on_time)
{
    retry_t r;
    retry_init (&r, 3, NEVER);
    retry_job_t job;
    ck_assert_uint_eq (s_start (&r, &job, 500, 1000), 500);
    ck_assert_int_eq (job.state, RETRY_WAITING);
    ck_assert_int_eq (retry_wake_ms (&r), 1500);
    for (int64_t t = 1000; t < 1500; t += 7)
        s_idle_at (&r, t);
    s_idle_at (&r, 1499);
    s_due_at (&r, 1500, RETRY_EXPIRED, &job);
    //  Handed over once: the module does not say it again
    s_idle_at (&r, 1501);
    ck_assert_uint_eq (retry_jobs (&r), 1);
    retry_job_stop (&r, &job);
    ck_assert_int_eq (job.state, RETRY_UNTRACKED);
    ck_assert_uint_eq (retry_jobs (&r), 0);
    ck_assert_int_eq (retry_wake_ms (&r), INT64_MAX);
    ck_assert_uint_eq (r.resent, 0);
}
END_TEST

START_TEST (test_deadlines_in_order)
{
    retry_t r;
    retry_init (&r, 3, NEVER);
    //  Sent in this order, due in another
    uint32_t lifetimes[] = {300, 100, 500, 200, 100, 400};
    enum { N = sizeof lifetimes / sizeof lifetimes[0] };
    retry_job_t jobs[N];
    for (int i = 0; i < N; i++)
        s_start (&r, &jobs[i], lifetimes[i], 0);
    int64_t last = 0;
    int expired = 0;
    for (int64_t t = 0; t <= 600; t++) {
        retry_job_t *job;
        retry_action_t action;
        while ((action = retry_next (&r, t, &job)) != RETRY_IDLE) {
            ck_assert_int_eq (action, RETRY_EXPIRED);
            ck_assert_int_eq (t, job->deadline_ms); //  at its deadline, not before or after
            ck_assert_int_ge (t, last);
            last = t;
            retry_job_stop (&r, job);
            expired++;
        }
    }
    ck_assert_int_eq (expired, N);
    ck_assert_uint_eq (retry_jobs (&r), 0);
}
END_TEST

START_TEST (test_never_resent_because_slow)
{
    retry_t r;
    retry_init (&r, 3, 100);
    retry_job_t job;
    s_start (&r, &job, 10000, 0);
    int pings = 0;
    int64_t last_ping = 0;
    for (int64_t t = 0; t < 10000; t++) {
        retry_job_t *due;
        retry_action_t action;
        while ((action = retry_next (&r, t, &due)) != RETRY_IDLE) {
            ck_assert_int_eq (action, RETRY_PING);
            ck_assert_int_eq (t - last_ping, 100);
            last_ping = t;
            pings++;
        }
    }
    ck_assert_int_eq (pings, 99);
    ck_assert_int_eq (job.attempts, 1);
    ck_assert_uint_eq (r.resent, 0);
    s_due_at (&r, 10000, RETRY_EXPIRED, &job);
}
END_TEST

START_TEST (test_pings_only_while_jobs_pending)
{
    retry_t r;
    retry_init (&r, 3, 100);
    ck_assert_int_eq (retry_wake_ms (&r), INT64_MAX);
    for (int64_t t = 0; t < 1000; t += 50)
        s_idle_at (&r, t);
    //  The first job plans a PING a heartbeat later
    retry_job_t job;
    s_start (&r, &job, 5000, 1000);
    ck_assert_int_eq (retry_wake_ms (&r), 1100);
    s_idle_at (&r, 1099);
    s_due_at (&r, 1100, RETRY_PING, NULL);
    s_idle_at (&r, 1100);
    s_idle_at (&r, 1199);
    //  Late: one PING, then the next a heartbeat after it
    s_due_at (&r, 1250, RETRY_PING, NULL);
    s_idle_at (&r, 1349);
    s_due_at (&r, 1350, RETRY_PING, NULL);
    //  No job, no PING
    retry_job_stop (&r, &job);
    ck_assert_int_eq (retry_wake_ms (&r), INT64_MAX);
    for (int64_t t = 1350; t < 3000; t += 10)
        s_idle_at (&r, t);
    //  A new first job: a heartbeat from its start, not from the last PING
    s_start (&r, &job, 5000, 3000);
    s_idle_at (&r, 3099);
    s_due_at (&r, 3100, RETRY_PING, NULL);
    //  A second job does not move the PING
    retry_job_t other;
    s_start (&r, &other, 5000, 3150);
    s_due_at (&r, 3200, RETRY_PING, NULL);
}
END_TEST

START_TEST (test_backoff_grows_and_is_bounded)
{
    retry_t r;
    retry_init (&r, 100, NEVER);
    retry_job_t job;
    s_start (&r, &job, 1000000, 0);
    int expected[] = {50, 100, 200, 400, 800, 1600, 2000, 2000, 2000};
    int64_t t = 10;
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        ck_assert (retry_job_unavailable (&r, &job, t));
        ck_assert_int_eq (job.state, RETRY_BACKOFF);
        ck_assert_int_eq (retry_wake_ms (&r), t + expected[i]);
        s_idle_at (&r, t + expected[i] - 1);
        s_due_at (&r, t + expected[i], RETRY_RESEND, &job);
        t += expected[i];
        //  The resend carries what is left of the deadline
        ck_assert_uint_eq (retry_job_sent (&r, &job, t), 1000000 - t);
        ck_assert_int_eq (job.attempts, (int)i + 2);
        t += 3; //  the answer comes a little later
    }
    ck_assert_uint_eq (r.resent, sizeof expected / sizeof expected[0]);
}
END_TEST

START_TEST (test_unavailable_bounded_by_attempts)
{
    retry_t r;
    retry_init (&r, 3, NEVER);
    retry_job_t job;
    s_start (&r, &job, 10000, 0);
    ck_assert (retry_job_unavailable (&r, &job, 0));
    s_due_at (&r, 50, RETRY_RESEND, &job);
    retry_job_sent (&r, &job, 50);
    ck_assert (retry_job_unavailable (&r, &job, 60));
    s_due_at (&r, 160, RETRY_RESEND, &job);
    retry_job_sent (&r, &job, 160);
    ck_assert_int_eq (job.attempts, 3);
    //  Sent three times: the UNAVAILABLE is the answer
    ck_assert (!retry_job_unavailable (&r, &job, 170));
    ck_assert_int_eq (job.state, RETRY_WAITING);
    retry_job_stop (&r, &job);
    ck_assert_uint_eq (retry_jobs (&r), 0);
    s_idle_at (&r, 100000);
}
END_TEST

START_TEST (test_backoff_cut_by_deadline)
{
    retry_t r;
    retry_init (&r, 5, NEVER);
    retry_job_t job;
    s_start (&r, &job, 120, 0);
    //  The backoff would end at 150, after the deadline: expired at 120
    ck_assert (retry_job_unavailable (&r, &job, 100));
    ck_assert_int_eq (retry_wake_ms (&r), 120);
    s_idle_at (&r, 119);
    s_due_at (&r, 120, RETRY_EXPIRED, &job);
    ck_assert_uint_eq (r.resent, 0);
}
END_TEST

START_TEST (test_lost_jobs_resend)
{
    retry_t r;
    retry_init (&r, 3, NEVER);
    retry_job_t a, b, c;
    s_start (&r, &a, 1000, 0);
    s_start (&r, &b, 2000, 10);
    s_start (&r, &c, 3000, 20);
    ck_assert (retry_job_unavailable (&r, &c, 30)); //  backing off until 80
    s_idle_at (&r, 40);
    ck_assert_int_eq (a.attempts, 1);
    //  Their broker lost them: the jobs waiting for an answer are resent at
    //  once, in the order lost; the job backing off keeps its turn
    ck_assert (retry_job_lost (&r, &a));
    ck_assert (retry_job_lost (&r, &b));
    ck_assert (!retry_job_lost (&r, &c));
    ck_assert (!retry_job_lost (&r, &a)); //  already due
    ck_assert_int_eq (a.state, RETRY_RESEND_DUE);
    ck_assert_int_eq (b.state, RETRY_RESEND_DUE);
    ck_assert_int_eq (c.state, RETRY_BACKOFF);
    ck_assert_int_le (retry_wake_ms (&r), 40);
    s_due_at (&r, 40, RETRY_RESEND, &a);
    ck_assert_uint_eq (retry_job_sent (&r, &a, 40), 960);
    s_due_at (&r, 40, RETRY_RESEND, &b);
    ck_assert_uint_eq (retry_job_sent (&r, &b, 40), 1970);
    s_idle_at (&r, 40);
    ck_assert_uint_eq (r.resent, 2);
    //  Then they wait for their deadlines, as before
    s_due_at (&r, 80, RETRY_RESEND, &c);
    retry_job_sent (&r, &c, 80);
    ck_assert_int_eq (retry_wake_ms (&r), 1000);
    s_idle_at (&r, 999);
    s_due_at (&r, 1000, RETRY_EXPIRED, &a);
    ck_assert_int_eq (a.attempts, 2);
    ck_assert_int_eq (b.attempts, 2);
    ck_assert_int_eq (c.attempts, 2);
}
END_TEST

START_TEST (test_lost_jobs_give_up)
{
    retry_t r;
    retry_init (&r, 2, NEVER);
    retry_job_t job, late, cancelled;
    s_start (&r, &job, 10000, 0);
    s_start (&r, &late, 100, 0);
    s_start (&r, &cancelled, 10000, 0);
    ck_assert (retry_job_lost (&r, &late));
    ck_assert (retry_job_lost (&r, &job));
    ck_assert (retry_job_lost (&r, &cancelled));
    //  A job given up meanwhile is not resent
    retry_job_stop (&r, &cancelled);
    //  In the order lost
    s_due_at (&r, 50, RETRY_RESEND, &late);
    retry_job_sent (&r, &late, 50);
    s_due_at (&r, 50, RETRY_RESEND, &job);
    retry_job_sent (&r, &job, 50);
    s_idle_at (&r, 50);
    //  Sent twice, the most allowed: the next change loses it for good; a
    //  job whose deadline passed meanwhile expires rather than resent
    ck_assert (retry_job_lost (&r, &late));
    ck_assert (retry_job_lost (&r, &job));
    s_due_at (&r, 200, RETRY_EXPIRED, &late);
    retry_job_stop (&r, &late);
    s_due_at (&r, 200, RETRY_EXHAUSTED, &job);
    retry_job_stop (&r, &job);
    ck_assert_uint_eq (retry_jobs (&r), 0);
    ck_assert_uint_eq (r.resent, 2);
    s_idle_at (&r, 100000);
}
END_TEST

START_TEST (test_stop_anywhere)
{
    retry_t r;
    retry_init (&r, 5, NEVER);
    retry_job_t waiting, backing_off, resending;
    s_start (&r, &waiting, 1000, 0);
    s_start (&r, &backing_off, 1000, 0);
    s_start (&r, &resending, 1000, 0);
    retry_job_unavailable (&r, &backing_off, 0);
    retry_job_lost (&r, &waiting);
    retry_job_lost (&r, &resending); //  `waiting` and `resending` are due to be resent
    retry_job_stop (&r, &waiting);
    ck_assert_int_eq (resending.state, RETRY_RESEND_DUE);
    retry_job_stop (&r, &resending);
    retry_job_stop (&r, &backing_off);
    ck_assert_uint_eq (retry_jobs (&r), 0);
    ck_assert (list_empty (&r.waiting) && list_empty (&r.backoff) && list_empty (&r.resend));
    for (int64_t t = 0; t < 3000; t += 25)
        s_idle_at (&r, t);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("retry");
    TCase *tc = tcase_create ("retry");
    tcase_add_test (tc, test_deadline_fires_on_time);
    tcase_add_test (tc, test_deadlines_in_order);
    tcase_add_test (tc, test_never_resent_because_slow);
    tcase_add_test (tc, test_pings_only_while_jobs_pending);
    tcase_add_test (tc, test_backoff_grows_and_is_bounded);
    tcase_add_test (tc, test_unavailable_bounded_by_attempts);
    tcase_add_test (tc, test_backoff_cut_by_deadline);
    tcase_add_test (tc, test_lost_jobs_resend);
    tcase_add_test (tc, test_lost_jobs_give_up);
    tcase_add_test (tc, test_stop_anywhere);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
