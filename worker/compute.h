/*  compute.h - the worker's compute thread, and the jobs it computes.

    The worker's main thread (the I/O thread) talks to the broker; the
    compute thread runs the models, so that heartbeats keep flowing while a
    long batch computes.  The I/O thread takes a job from the pool
    (compute_job_take), fills it from a JOB and submits it; the compute
    thread answers every job exactly once, by filling in its result (code,
    message, outputs) and handing it back as finished.  The I/O thread sends
    each finished job's RESULT and gives the job back to the pool.  A job
    whose deadline has passed when its turn comes is answered
    DEADLINE_EXCEEDED without being computed.  Jobs for one model that wait
    together are computed as one batch (dynamic batching).

    Each job points to the model that serves it (a batch_model_t: the model
    and its batch settings, which do not change while any job points to
    them); the I/O thread resolves it when the JOB arrives (catalog.h), so
    the compute thread reads no table that the I/O thread changes, and
    batches group jobs by that pointer.  Which jobs batch together is the
    batching policy's (batch.h); this thread only applies it.  A job still
    queued (not yet taken into a batch) can be taken back by its token
    (compute_cancel).

    Jobs travel between the threads on two queues under one mutex: nothing
    is allocated per job once the pool holds as many jobs as are in flight
    (the worker's credit).  The compute thread sleeps on a condition variable
    only when it has nothing to do; it wakes the I/O thread through an
    eventfd (compute_wake_fd, for zmq_poll), written once per burst of
    finished jobs, not once per job.
*/
#ifndef AMAAS_COMPUTE_H_INCLUDED
#define AMAAS_COMPUTE_H_INCLUDED

#include <stdbool.h>

#include "batch.h"
#include "list.h"
#include "model.h"

typedef struct {
    uint64_t max_elements; //  largest input tensor, elements
    uint64_t computed;     //  jobs whose model ran (set by compute_destroy)
    uint64_t expired;      //  jobs answered DEADLINE_EXCEEDED without compute (idem)
    uint64_t batches;      //  model runs (idem)
    uint64_t inlined;      //  jobs of those computed on the I/O thread (idem)
} compute_config_t;

typedef struct compute_t compute_t;

//  Multiply-adds per row of a model's job, about, for batch_model_t's
//  inline_work: 0 (never inline) when the model waits batch_delay_us for
//  more jobs.  Cannot fail.
size_t compute_inline_work (const model_t *model, uint64_t batch_delay_us);

//  Starts the compute thread (niced, SIGINT, SIGTERM and SIGHUP blocked) on config,
//  which must outlive it.  NULL on out-of-memory or if the thread cannot
//  start (logged).
compute_t *compute_new (compute_config_t *config);

//  Stops the compute thread after the batch at hand, joins it, frees every
//  job wherever it is, nulls *self_p.  Jobs not answered yet are dropped.
//  Cannot fail.  After this, the config's counters are final.
void compute_destroy (compute_t **self_p);

//  A file descriptor that is readable when finished jobs wait (for a
//  zmq_pollitem_t).  Cannot fail.
int compute_wake_fd (compute_t *self);

//  I/O thread: an empty job from the pool, a new one if the pool is empty;
//  the job is in no queue.  NULL on out-of-memory.
batch_job_t *compute_job_take (compute_t *self);

//  I/O thread: gives a job, which is in no queue, back to the pool;
//  releases its messages.  Cannot fail.
void compute_job_give_back (compute_t *self, batch_job_t *job);

//  I/O thread: hands the jobs of a queue (batch_job_t linked by node) to
//  the compute thread, which owns them until they come back finished;
//  empties the queue.  Cannot fail.
void compute_submit (compute_t *self, list_t *jobs);

//  I/O thread: moves every finished job to the end of into, in the order
//  they finished; clears the wake fd.  Cannot fail.
void compute_take_finished (compute_t *self, list_t *into);

//  I/O thread: takes back a job that is submitted but not yet taken into a
//  batch, found by its token and connection, and returns it (unanswered:
//  the caller answers it); NULL if no such job waits (it computes, is
//  done, or never came).  Cannot fail.
batch_job_t *compute_cancel (compute_t *self, uint64_t token, uint64_t connection);

//  I/O thread: computes a job (in no queue) itself, when the compute thread has nothing
//  to do and the job costs little (a few thousand multiply-adds: a linear
//  model, a small tree of ops), and its model has no batch delay.  That
//  saves two hand-offs between threads, most of a small job's latency.
//  Returns true if the job is answered (result filled: send it), false if
//  it must go to the compute thread.
bool compute_run_inline (compute_t *self, batch_job_t *job);

#endif
