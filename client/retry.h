/*  retry.h - libamaas's retry policy: deadlines, heartbeats, resends.

    When a client's pending jobs are due for something, without sockets:
    the module is told what happened (a job sent, an UNAVAILABLE answer, the
    broker's epoch from a PONG) and the time, and answers what to do next
    (send a PING, resend job X, job Y expired, job Z was lost too often).
    The client does the sending; the tests drive the module with a clock of
    their own (tests/test_retry.c).

    The rules (docs/PROTOCOL.md, "A client's jobs"):
    - A job lives until its deadline, counted from its first send, however
      long it waits or computes: it is never resent because it is slow.
    - While jobs are pending, the client PINGs the broker every heartbeat
      for its epoch.  A new epoch (the broker restarted, or the connection
      is a new one) means what was sent may be lost: every job waiting for
      an answer is resent, or given up UNAVAILABLE once it has been sent
      the most times allowed.
    - A job answered UNAVAILABLE (worker lost) is resent after a backoff
      that doubles from RETRY_BACKOFF_FIRST_MS up to RETRY_BACKOFF_MAX_MS,
      while it has attempts left.

    A job is a retry_job_t the caller embeds in its own record (and finds
    again with LIST_ITEM).  A tracked job is in exactly one place: waiting
    for an answer (ordered by deadline), backing off (ordered by when it is
    due), marked for resending (after a new epoch), or in the caller's
    hands between retry_next and retry_job_sent.  Most jobs have the same
    lifetime, so a job joins its list at the end: O(1) per job; nothing
    here allocates.
*/
#ifndef AMAAS_RETRY_H_INCLUDED
#define AMAAS_RETRY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"

#define RETRY_BACKOFF_FIRST_MS 50 //  first wait before resending an UNAVAILABLE job
#define RETRY_BACKOFF_MAX_MS 2000 //  the longest wait

//  What the client must do now (retry_next)
typedef enum {
    RETRY_IDLE = 0,  //  nothing is due: wait until retry_wake_ms
    RETRY_PING,      //  send a PING, for the broker's epoch
    RETRY_RESEND,    //  send the job again, then call retry_job_sent
    RETRY_EXPIRED,   //  the job's deadline passed: answer DEADLINE_EXCEEDED, CANCEL it
    RETRY_EXHAUSTED, //  the broker lost the job, sent the most times allowed: UNAVAILABLE
} retry_action_t;

//  Where a tracked job is
typedef enum {
    RETRY_UNTRACKED = 0, //  not known to the module
    RETRY_SENDING,       //  in the caller's hands: to be sent (retry_job_sent)
    RETRY_WAITING,       //  sent, waiting for an answer until its deadline
    RETRY_BACKOFF,       //  answered UNAVAILABLE, waiting to be sent again
    RETRY_RESEND_DUE,    //  to be sent again at once (the broker's epoch changed)
} retry_state_t;

//  A job's retry state, embedded in the caller's record of the job
typedef struct {
    list_node_t node;      //  in one of the module's lists, by state
    retry_state_t state;   //  where it is
    int64_t first_sent_ms; //  its first send: the deadline counts from there
    int64_t deadline_at;   //  first_sent_ms + its lifetime
    int64_t due_ms;        //  when its list wants it (deadline, or end of backoff)
    uint32_t deadline_ms;  //  its lifetime
    int attempts;          //  sends so far
    int backoff_ms;        //  next wait after UNAVAILABLE
} retry_job_t;

//  A client's retry timers
typedef struct {
    int attempts;         //  most sends per job (>= 1)
    int heartbeat_ms;     //  PING interval while jobs are pending (>= 1)
    int64_t next_ping_ms; //  next PING then, while jobs are pending
    size_t jobs;          //  jobs tracked
    list_t waiting;       //  RETRY_WAITING jobs, by deadline
    list_t backoff;       //  RETRY_BACKOFF jobs, by due_ms
    list_t resend;        //  RETRY_RESEND_DUE jobs, oldest first
    uint64_t resent;      //  RETRY_RESEND actions given: attempts sent again
} retry_t;

//  Empty timers: `attempts` sends per job at most, a PING every
//  heartbeat_ms while jobs are pending (values below 1 count as 1).
//  Cannot fail.
void retry_init (retry_t *self, int attempts, int heartbeat_ms);

//  Changes the attempts and the heartbeat, for jobs to come and the next
//  PING after the one planned.  Cannot fail.
void retry_set (retry_t *self, int attempts, int heartbeat_ms);

//  Starts tracking a new job, untracked (e.g. zeroed), whose lifetime of
//  deadline_ms (>= 1) starts `now`; it is RETRY_SENDING, for the caller to
//  send and call retry_job_sent.  The first job pending plans a PING a
//  heartbeat from now.  Cannot fail.
void retry_job_start (retry_t *self, retry_job_t *job, uint32_t deadline_ms, int64_t now);

//  The caller sent the job (RETRY_SENDING) at `now`, before its deadline;
//  it now waits for an answer until its deadline.  Returns what is left of
//  its lifetime, in ms (>= 1): the deadline the send carries.  Cannot fail.
uint32_t retry_job_sent (retry_t *self, retry_job_t *job, int64_t now);

//  The job, waiting for an answer, was answered UNAVAILABLE at `now`.
//  Returns true if it is to be resent after a backoff (retry_next says
//  when), false if it has been sent the most times allowed: the caller
//  hands the answer on and stops the job.  Cannot fail.
bool retry_job_unavailable (retry_t *self, retry_job_t *job, int64_t now);

//  Stops tracking the job, wherever it is (answered, cancelled, failed);
//  it becomes untracked.  Cannot fail.
void retry_job_stop (retry_t *self, retry_job_t *job);

//  The broker the job was sent to lost it (its epoch changed: it
//  restarted, or the connection is new; or it went silent while another
//  broker answers).  A job waiting for an answer is then due to be resent
//  at once, after the others so marked (retry_next): returns true.  A job
//  backing off was not held there and keeps its turn: returns false.
//  Cannot fail.
bool retry_job_lost (retry_t *self, retry_job_t *job);

//  What is due at `now`, one thing at a time: call until RETRY_IDLE.  For
//  RETRY_RESEND, RETRY_EXPIRED and RETRY_EXHAUSTED, *job_p is the job, now
//  RETRY_SENDING: the caller resends it (retry_job_sent) or ends it
//  (retry_job_stop).  Cannot fail.
retry_action_t retry_next (retry_t *self, int64_t now, retry_job_t **job_p);

//  When something is next due: at or before the last `now` given when
//  something is due already, INT64_MAX when no job is pending.  Cannot
//  fail.
int64_t retry_wake_ms (const retry_t *self);

//  Jobs tracked.  Cannot fail.
size_t retry_jobs (const retry_t *self);

#endif
