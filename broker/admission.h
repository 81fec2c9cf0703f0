/*  admission.h - per-client admission control of the broker, without
    sockets or a clock.

    Each client (a connection, by its ROUTER identity) may have at most
    `max_jobs` jobs queued or computing at once; a job over that is refused
    (the caller answers RESOURCE_EXHAUSTED).  The record of a client is kept
    while it has jobs, and a while (`idle_ms`) after its last one ended, so
    that a client that sends one job at a time does not allocate a record
    per job; admission_sweep forgets the clients idle for longer.  The
    caller passes the time, in milliseconds of a monotonic clock, so that
    tests can inject it.

    A job points to its client's record (the dispatcher's `owner`): a record
    with jobs is never swept, so that pointer stays valid until the job
    ends and the caller releases it.
*/
#ifndef AMAAS_ADMISSION_H_INCLUDED
#define AMAAS_ADMISSION_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct admission_t admission_t;
typedef struct admission_client_t admission_client_t;

//  New admission control: at most max_jobs jobs per client, and a client
//  without jobs forgotten idle_ms after its last one ended.  Returns NULL
//  on out-of-memory.
admission_t *admission_new (size_t max_jobs, int64_t idle_ms);

//  Frees the admission control and every client record.  Nulls *self_p.
//  Cannot fail.
void admission_destroy (admission_t **self_p);

//  The record of the client with this ROUTER identity (size bytes, at most
//  255 are used), made at now_ms if there is none.  Returns NULL on
//  out-of-memory, and nothing is changed.
admission_client_t *admission_client (admission_t *self, const void *identity, size_t size,
                                      int64_t now_ms);

//  The record of the client with this identity, or NULL if it has none
//  (never had a job, or was swept).  Cannot fail.
admission_client_t *admission_lookup (admission_t *self, const void *identity, size_t size);

//  Counts a new job of the client.  Returns 0, or -1 when the client has
//  max_jobs already: then nothing is changed and the job is to be refused.
int admission_acquire (admission_t *self, admission_client_t *client);

//  A job of the client ended (answered either way): its slot is free.  The
//  client must have a job counted.  Cannot fail.
void admission_release (admission_t *self, admission_client_t *client, int64_t now_ms);

//  A live job passes from client `from` (NULL if none counted it) to `to`,
//  which sent it again: `to` counts it even over max_jobs (it is not a new
//  job), `from` releases it.  Cannot fail.
void admission_move (admission_t *self, admission_client_t *from, admission_client_t *to,
                     int64_t now_ms);

//  Forgets the clients that have had no job for idle_ms or longer.
//  Returns how many (0 also when there was no memory to list them; a later
//  sweep does it).
size_t admission_sweep (admission_t *self, int64_t now_ms);

//  Jobs the client has queued or computing.  Cannot fail.
size_t admission_jobs (const admission_client_t *client);

//  The most jobs a client may have.  Cannot fail.
size_t admission_max_jobs (const admission_t *self);

//  Client records kept.  Cannot fail.
size_t admission_size (const admission_t *self);

#endif
