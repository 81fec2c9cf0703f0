/*  retry.c - libamaas's retry policy: deadlines, heartbeats, resends.

    Three lists hold the tracked jobs by what they wait for: an answer
    (until their deadline), the end of a backoff, or their turn to be sent
    again after a new epoch.  The first two are ordered by when their jobs
    are due, and a job is placed from the end of its list, so that the
    common case (jobs of one lifetime, sent in order) costs one step; the
    third is served first, in order.  A job in none of them and still
    tracked is in the caller's hands (RETRY_SENDING).
*/
#include "retry.h"

#include <assert.h>

void retry_set (retry_t *self, int attempts, int heartbeat_ms)
{
    assert (self);
    self->attempts = attempts > 0 ? attempts : 1;
    self->heartbeat_ms = heartbeat_ms > 0 ? heartbeat_ms : 1;
}

void retry_init (retry_t *self, int attempts, int heartbeat_ms)
{
    assert (self);
    *self = (retry_t){0};
    list_init (&self->waiting);
    list_init (&self->backoff);
    list_init (&self->resend);
    retry_set (self, attempts, heartbeat_ms);
}

//  The list of jobs in `state`, or NULL for a state in no list.
static list_t *s_list_of (retry_t *self, retry_state_t state)
{
    switch (state) {
    case RETRY_WAITING: return &self->waiting;
    case RETRY_BACKOFF: return &self->backoff;
    case RETRY_RESEND_DUE: return &self->resend;
    default: return NULL;
    }
}

//  Takes a tracked job out of its list, if it is in one: it is then in the
//  caller's hands.  Cannot fail.
static void s_unlink (retry_t *self, retry_job_t *job)
{
    assert (job->state != RETRY_UNTRACKED);
    list_t *list = s_list_of (self, job->state);
    if (list)
        list_remove (list, &job->node);
    assert (!list_node_linked (&job->node));
    job->state = RETRY_SENDING;
}

//  Links a job in the caller's hands into the ordered list of `state`, due
//  at due_ms, after the jobs due no later.  Cannot fail.
static void s_schedule (retry_t *self, retry_job_t *job, retry_state_t state, int64_t due_ms)
{
    assert (job->state == RETRY_SENDING);
    list_t *list = s_list_of (self, state);
    assert (list && list != &self->resend);
    job->due_ms = due_ms;
    job->state = state;
    list_node_t *at = list_last (list);
    while (at && LIST_ITEM (at, retry_job_t, node)->due_ms > due_ms)
        at = list_prev (list, at);
    list_insert_after (list, at ? at : &list->head, &job->node);
}

void retry_job_start (retry_t *self, retry_job_t *job, uint32_t deadline_ms, int64_t now)
{
    assert (self);
    assert (job);
    assert (job->state == RETRY_UNTRACKED);
    assert (deadline_ms >= 1);
    list_node_init (&job->node);
    job->state = RETRY_SENDING;
    job->first_sent_ms = now;
    job->deadline_ms = deadline_ms;
    job->deadline_at = now + deadline_ms;
    job->due_ms = job->deadline_at;
    job->attempts = 0;
    job->backoff_ms = RETRY_BACKOFF_FIRST_MS;
    if (self->jobs++ == 0)
        self->next_ping_ms = now + self->heartbeat_ms; //  the first job pending
}

uint32_t retry_job_sent (retry_t *self, retry_job_t *job, int64_t now)
{
    assert (self);
    assert (job->state == RETRY_SENDING);
    assert (now < job->deadline_at);
    job->attempts++;
    s_schedule (self, job, RETRY_WAITING, job->deadline_at);
    return (uint32_t)(job->deadline_at - now);
}

bool retry_job_unavailable (retry_t *self, retry_job_t *job, int64_t now)
{
    assert (self);
    assert (job->state != RETRY_UNTRACKED);
    if (job->attempts >= self->attempts)
        return false;
    s_unlink (self, job);
    //  Due at the end of the backoff, or at the deadline if that is sooner
    int64_t due = now + job->backoff_ms;
    s_schedule (self, job, RETRY_BACKOFF, due < job->deadline_at ? due : job->deadline_at);
    job->backoff_ms =
        job->backoff_ms * 2 > RETRY_BACKOFF_MAX_MS ? RETRY_BACKOFF_MAX_MS : job->backoff_ms * 2;
    return true;
}

void retry_job_stop (retry_t *self, retry_job_t *job)
{
    assert (self);
    assert (job);
    assert (job->state != RETRY_UNTRACKED);
    assert (self->jobs > 0);
    s_unlink (self, job);
    job->state = RETRY_UNTRACKED;
    self->jobs--;
}

bool retry_job_lost (retry_t *self, retry_job_t *job)
{
    assert (self);
    assert (job);
    if (job->state != RETRY_WAITING)
        return false;
    list_remove (&self->waiting, &job->node);
    job->state = RETRY_RESEND_DUE;
    list_append (&self->resend, &job->node);
    return true;
}

//  The waiting or backing-off job due first, or NULL.
static retry_job_t *s_first_due (const retry_t *self)
{
    retry_job_t *a = LIST_ITEM (list_first (&self->waiting), retry_job_t, node);
    retry_job_t *b = LIST_ITEM (list_first (&self->backoff), retry_job_t, node);
    if (!a || (b && b->due_ms < a->due_ms))
        return b;
    return a;
}

retry_action_t retry_next (retry_t *self, int64_t now, retry_job_t **job_p)
{
    assert (self);
    assert (job_p);
    *job_p = NULL;
    retry_job_t *job = LIST_ITEM (list_first (&self->resend), retry_job_t, node);
    if (!job) {
        job = s_first_due (self);
        if (job && job->due_ms > now)
            job = NULL;
    }
    if (job) {
        //  A job due to be sent again after a new epoch, a backoff over, or
        //  a deadline come
        bool lost = job->state == RETRY_RESEND_DUE;
        s_unlink (self, job);
        *job_p = job;
        if (now >= job->deadline_at)
            return RETRY_EXPIRED;
        if (lost && job->attempts >= self->attempts)
            return RETRY_EXHAUSTED;
        self->resent++;
        return RETRY_RESEND;
    }
    if (self->jobs && now >= self->next_ping_ms) {
        self->next_ping_ms = now + self->heartbeat_ms;
        return RETRY_PING;
    }
    return RETRY_IDLE;
}

int64_t retry_wake_ms (const retry_t *self)
{
    assert (self);
    if (!list_empty (&self->resend))
        return INT64_MIN;
    int64_t wake = INT64_MAX;
    retry_job_t *first = s_first_due (self);
    if (first)
        wake = first->due_ms;
    if (self->jobs && self->next_ping_ms < wake)
        wake = self->next_ping_ms;
    return wake;
}

size_t retry_jobs (const retry_t *self)
{
    assert (self);
    return self->jobs;
}
