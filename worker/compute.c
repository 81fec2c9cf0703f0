/*  compute.c - the worker's compute thread, with dynamic batching.

    Jobs arrive on the incoming queue in the order the broker sent them.
    The thread takes the oldest job, then every other job for the same model
    that is already waiting (and, with a batch delay, that arrives within
    it), up to the model's batch size in rows: the batching policy
    (batch.h) decides which, this file only applies it under the lock and
    waits out the batch delay.  A job that fails its check is answered at
    once; the rows of the others are stacked into the workspace's input
    buffer, the model runs once (one GEMM per dense layer for the whole
    batch), and the outputs are cut back into one result per job.  Jobs for
    other models keep their place for the next round.

    Cancelling: the queue of jobs waiting for the compute thread is shared
    with the I/O thread under the mutex (the thread holds it while it picks
    a batch's jobs out, a walk over the queue, not while it computes), so
    that compute_cancel can take a job out that is not yet in a batch.

    Answered jobs gather on the thread's own list and go to the finished
    queue together, after each batch and before any wait or model run (so
    that errors are not held up): one lock, and at most one wake-up of the
    I/O thread, for a batch of results.  The I/O
    thread is woken through an eventfd only when it has not been woken
    already; the compute thread waits on its condition variable only when
    it has nothing to do, and is signalled only then.

    A small job (a few thousand multiply-adds) that comes alone while the
    compute thread is idle is computed by the I/O thread itself, with its
    own runner (workspace and buffers), through compute_run_inline: for
    such a job the two hand-offs between threads would cost more than the
    compute.  Jobs that come together still go to the compute thread and
    batch.

    Nothing is allocated per job: jobs come from a pool, inputs are decoded
    in place (pointers into the JOB's payload), outputs are packed into one
    buffer reused from job to job and copied into the job's result message,
    and the workspace's buffers are reused from batch to batch.
*/
#include "compute.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define COMPUTE_NICE 5 //  the compute thread's priority below the I/O thread
#define WAIT_FOREVER UINT64_MAX
#define INLINE_MAX_WORK 16384 //  multiply-adds of a job the I/O thread may compute itself

//  What a thread needs to compute batches, reused from batch to batch: the
//  compute thread has one, and the I/O thread one for the small jobs it
//  computes itself
typedef struct {
    model_workspace_t *ws; //  buffers of the model runs
    batch_t *batch;        //  the batch at hand, and its output buffers
    list_t answered;       //  answered, not yet handed on
    uint64_t computed;     //  jobs whose model ran
    uint64_t expired;      //  jobs answered DEADLINE_EXCEEDED without compute
    uint64_t batches;      //  model runs
} runner_t;

struct compute_t {
    compute_config_t *config;
    pthread_t thread;
    int wake_fd; //  eventfd: readable when finished jobs wait
    //  Shared by both threads, under lock
    pthread_mutex_t lock;
    pthread_cond_t arrived; //  jobs came, or stop was asked
    list_t incoming;        //  submitted, not yet seen by the compute thread
    list_t waiting;         //  seen by the compute thread, not yet in a batch, in order
    list_t finished;        //  answered, not yet taken by the I/O thread
    bool sleeping;          //  the compute thread waits on arrived
    bool idle;              //  ... with nothing to compute at all
    bool woken;             //  wake_fd written, finished not yet taken
    bool stop;              //  the compute thread is to stop
    //  The I/O thread's
    list_t pool; //  jobs free for reuse (by node)
    list_t all;  //  every job allocated (by every)
    runner_t io; //  for the jobs it computes itself
    //  The compute thread's
    bool stopping;   //  stop seen
    runner_t runner; //  its batches
};

batch_job_t *compute_job_take (compute_t *self)
{
    assert (self);
    batch_job_t *job = LIST_ITEM (list_pop_first (&self->pool), batch_job_t, node);
    if (!job) {
        job = malloc (sizeof *job);
        if (!job)
            return NULL;
        list_node_init (&job->node);
        list_node_init (&job->every);
        zmq_msg_init (&job->payload);
        zmq_msg_init (&job->result);
        list_append (&self->all, &job->every);
    }
    assert (!list_node_linked (&job->node));
    job->token = job->connection = job->deadline_us = job->compute_us = 0;
    job->model[0] = 0;
    job->serving = NULL;
    job->n_outputs = 0;
    job->served_by = NULL;
    job->code = AMAAS_OK;
    job->message[0] = 0;
    job->batch = 0;
    return job;
}

void compute_job_give_back (compute_t *self, batch_job_t *job)
{
    assert (self);
    assert (job && list_node_linked (&job->every));
    //  Closing releases the bytes; an empty message holds nothing
    zmq_msg_close (&job->payload);
    zmq_msg_init (&job->payload);
    zmq_msg_close (&job->result);
    zmq_msg_init (&job->result);
    list_prepend (&self->pool, &job->node); //  asserts the job is in no queue
    assert (list_size (&self->pool) <= list_size (&self->all));
}

void compute_submit (compute_t *self, list_t *jobs)
{
    assert (self && jobs);
    if (list_empty (jobs))
        return;
    pthread_mutex_lock (&self->lock);
    list_splice (&self->incoming, jobs);
    if (self->sleeping) {
        self->sleeping = false;
        pthread_cond_signal (&self->arrived);
    }
    pthread_mutex_unlock (&self->lock);
}

void compute_take_finished (compute_t *self, list_t *into)
{
    assert (self && into);
    //  Clears the eventfd.  EAGAIN (it was not written) is no matter:
    //  whatever is finished is taken
    uint64_t count;
    ssize_t rc = read (self->wake_fd, &count, sizeof count);
    (void)rc;
    pthread_mutex_lock (&self->lock);
    list_splice (into, &self->finished);
    self->woken = false;
    pthread_mutex_unlock (&self->lock);
}

int compute_wake_fd (compute_t *self)
{
    assert (self);
    return self->wake_fd;
}

//  Compute thread: moves the answered jobs to the finished queue, and wakes
//  the I/O thread unless it is woken already.  Cannot fail (a failed
//  wake-up is logged).
static void s_publish (compute_t *self)
{
    if (list_empty (&self->runner.answered))
        return;
    pthread_mutex_lock (&self->lock);
    list_splice (&self->finished, &self->runner.answered);
    bool wake = !self->woken;
    self->woken = true;
    pthread_mutex_unlock (&self->lock);
    uint64_t one = 1;
    if (wake && write (self->wake_fd, &one, sizeof one) < 0)
        log_error ("cannot wake the I/O thread error=\"%s\"", strerror (errno));
}

//  Compute thread: moves the jobs submitted to the waiting list; if none
//  came, waits for them until `until_us` (monotonic; 0: not at all,
//  WAIT_FOREVER: no limit, or none if jobs wait already) or until stop is
//  asked.  Cannot fail.
static void s_receive (compute_t *self, uint64_t until_us)
{
    pthread_mutex_lock (&self->lock);
    if (until_us == WAIT_FOREVER && !list_empty (&self->waiting))
        until_us = 0;
    if (list_empty (&self->incoming) && !self->stop && until_us) {
        self->sleeping = true;
        self->idle = until_us == WAIT_FOREVER && list_empty (&self->waiting);
        if (until_us == WAIT_FOREVER)
            pthread_cond_wait (&self->arrived, &self->lock);
        else {
            struct timespec until = {.tv_sec = (time_t)(until_us / 1000000),
                                     .tv_nsec = (long)(until_us % 1000000) * 1000};
            pthread_cond_timedwait (&self->arrived, &self->lock, &until);
        }
        self->sleeping = self->idle = false;
    }
    list_splice (&self->waiting, &self->incoming);
    self->stopping = self->stop;
    pthread_mutex_unlock (&self->lock);
}

//  Converts `count` values of a request's tensor (FP32, FP64, INT32 or
//  INT64, any alignment) into a graph input of datatype to (FP32 or INT64;
//  batch_check_job let only conversions that exist through).  Cannot fail.
static void s_convert (amaas_dtype_t to, const codec_tensor_t *t, void *dest)
{
    const uint8_t *src = t->data;
    size_t count = (size_t)t->elements;
    if (to == t->datatype) {
        memcpy (dest, src, count * (to == AMAAS_INT64 ? 8 : 4));
        return;
    }
    if (to == AMAAS_INT64) { //  from INT32
        int64_t *y = dest;
        for (size_t i = 0; i < count; i++) {
            int32_t v;
            memcpy (&v, src + i * 4, 4);
            y[i] = v;
        }
        return;
    }
    float *y = dest;
    for (size_t i = 0; i < count; i++) {
        if (t->datatype == AMAAS_FP64) {
            double v;
            memcpy (&v, src + i * 8, 8);
            y[i] = (float)v;
        } else if (t->datatype == AMAAS_INT64) {
            int64_t v;
            memcpy (&v, src + i * 8, 8);
            y[i] = (float)v;
        } else {
            int32_t v;
            memcpy (&v, src + i * 4, 4);
            y[i] = (float)v;
        }
    }
}

//  Runs a batch of a graph model: plans it for the batch's shapes (the
//  first member's, rows stacked), converts each member's inputs into their
//  place, and computes.  Returns 0; -1 (the jobs' fault: INVALID_ARGUMENT)
//  or -2 (INTERNAL) with a message.
static int s_run_graph (runner_t *self, const graph_t *graph, size_t rows, model_output_t *outs,
                        char *err, size_t err_size)
{
    batch_t *batch = self->batch;
    graph_ws_t *gws = model_workspace_graph (self->ws);
    if (!gws) {
        snprintf (err, err_size, "out of memory");
        return -2;
    }
    size_t n_inputs = graph_input_count (graph);
    int64_t shapes[GRAPH_MAX_INPUTS][GRAPH_MAX_DIMS];
    const batch_member_t *first = batch_member (batch, 0);
    for (size_t i = 0; i < n_inputs; i++) {
        memcpy (shapes[i], first->inputs[i].shape, sizeof shapes[i]);
        shapes[i][0] = (int64_t)rows;
    }
    void *buffers[GRAPH_MAX_INPUTS];
    int rc = graph_prepare (graph, gws, (const int64_t (*)[GRAPH_MAX_DIMS])shapes, buffers, err,
                            err_size);
    if (rc)
        return rc;
    for (size_t i = 0; i < n_inputs; i++) {
        const graph_io_t *io = graph_input (graph, i);
        size_t row_elements = 1;
        for (int d = 1; d < io->ndim; d++)
            row_elements *= (size_t)shapes[i][d];
        size_t size = io->datatype == AMAAS_INT64 ? 8 : 4;
        for (size_t j = 0; j < batch_size (batch); j++) {
            const batch_member_t *m = batch_member (batch, j);
            s_convert (io->datatype, &m->inputs[i],
                       (uint8_t *)buffers[i] + m->first_row * row_elements * size);
        }
    }
    return graph_execute (graph, gws, outs, err, err_size);
}

//  Computes the runner's batch (gathered, not empty) and answers each of
//  its jobs onto the runner's answered list.  Cannot fail: an error
//  answers the jobs INTERNAL (INVALID_ARGUMENT when a graph finds the
//  inputs do not fit it).
static void s_run_batch (runner_t *self)
{
    batch_t *batch = self->batch;
    size_t n = batch_size (batch), rows = batch_rows (batch);
    assert (n >= 1 && rows >= n);
    model_t *model = batch_serving (batch)->model;
    char err[CODEC_MESSAGE_MAX];
    uint64_t start = clock_now_us ();
    model_output_t outs[MODEL_MAX_OUTPUTS];
    int rc = -2;
    const graph_t *graph = model_graph (model);
    if (graph)
        rc = s_run_graph (self, graph, rows, outs, err, sizeof err);
    else {
        void *input = model_input (model, self->ws, rows, err, sizeof err);
        size_t row_bytes = model_input_width (model) * (model_dtype (model) == AMAAS_FP64 ? 8 : 4);
        if (input) {
            for (size_t i = 0; i < n; i++) {
                const batch_member_t *m = batch_member (batch, i);
                model_convert (model, m->inputs[0].datatype, m->inputs[0].data, m->rows,
                               (uint8_t *)input + m->first_row * row_bytes);
            }
            rc = model_run_input (model, self->ws, rows, outs, err, sizeof err) ? -2 : 0;
        }
    }
    uint64_t compute_us = clock_now_us () - start;
    self->computed += n;
    self->batches++;
    size_t n_outputs = model_output_count (model);
    for (size_t i = 0; i < n; i++) {
        batch_job_t *job = batch_member (batch, i)->job;
        job->compute_us = compute_us;
        if (rc == 0 && batch_member_outputs (batch, i, outs, n_outputs) == 0) {
            job->served_by = model;
            job->batch = (uint32_t)n;
            list_append (&self->answered, &job->node);
        } else if (rc == -1)
            batch_job_fail (job, AMAAS_INVALID_ARGUMENT, err, &self->answered);
        else
            batch_job_fail (job, AMAAS_INTERNAL, rc ? err : "out of memory encoding the outputs",
                            &self->answered);
    }
}

//  Takes the oldest waiting job, gathers the others for its model (batch.h),
//  and computes them as one batch.  Nothing to do if no job waits (the I/O
//  thread may have cancelled it).  Cannot fail.
static void s_compute_next (compute_t *self)
{
    runner_t *r = &self->runner;
    pthread_mutex_lock (&self->lock);
    batch_job_t *first = batch_queue_first (&self->waiting);
    if (!first) {
        pthread_mutex_unlock (&self->lock);
        return;
    }
    batch_begin (r->batch, first->serving, clock_now_us ());
    while (true) {
        //  Take every waiting job for this model that fits, in order (the
        //  lock is held)
        batch_gather (r->batch, &self->waiting, clock_now_us (), &r->answered);
        pthread_mutex_unlock (&self->lock);
        if (batch_ready (r->batch, clock_now_us ()) || self->stopping)
            break;
        //  Errors are answered before the wait, not after it
        s_publish (self);
        s_receive (self, batch_gather_until (r->batch));
        pthread_mutex_lock (&self->lock);
    }
    //  ... and before the batch computes
    s_publish (self);
    if (batch_size (r->batch))
        s_run_batch (r);
}

static void *s_compute_thread (void *args)
{
    compute_t *self = args;
    //  The I/O thread must win the CPU whenever it has something to do
    //  (heartbeats, results), even when every core computes: compute runs
    //  at a lower priority.  Best effort: a failure changes nothing else.
    int rc = setpriority (PRIO_PROCESS, (id_t)syscall (SYS_gettid), COMPUTE_NICE);
    (void)rc;
    while (!self->stopping) {
        s_publish (self);
        s_receive (self, WAIT_FOREVER);
        if (!self->stopping)
            s_compute_next (self);
    }
    return NULL;
}

//  Sets up a runner for batches of up to max_jobs jobs.  Returns 0, -1 on
//  out-of-memory (s_runner_fini still applies).
static int s_runner_init (runner_t *self, compute_config_t *config, size_t max_jobs)
{
    list_init (&self->answered);
    self->ws = model_workspace_new ();
    self->batch = batch_new (max_jobs, config->max_elements);
    return self->ws && self->batch ? 0 : -1;
}

//  Frees what a runner holds, not its jobs.  Cannot fail.
static void s_runner_fini (runner_t *self)
{
    model_workspace_destroy (&self->ws);
    batch_destroy (&self->batch);
    memset (self, 0, sizeof *self);
}

//  A model the I/O thread may run itself, when the compute thread has
//  nothing to do: one whose job costs little (microseconds, so that
//  heartbeats are not held up) and that is not set to wait for more jobs to
//  batch.  Each op says what a row costs it (model_op_t.work).
size_t compute_inline_work (const model_t *model, uint64_t batch_delay_us)
{
    assert (model);
    if (batch_delay_us || model_graph (model))
        return 0; //  a graph's cost depends on its shapes: always the compute thread's
    size_t work = 0;
    for (size_t i = 0; i < model_op_count (model); i++) {
        const model_op_t *op = model_op (model, i);
        work += op->work;
    }
    return work;
}

compute_t *compute_new (compute_config_t *config)
{
    assert (config);
    compute_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = config;
    self->wake_fd = -1;
    list_init (&self->incoming);
    list_init (&self->waiting);
    list_init (&self->finished);
    list_init (&self->pool);
    list_init (&self->all);
    pthread_condattr_t attr;
    sigset_t signals, saved;
    bool locks = false;
    int rc;
    if (s_runner_init (&self->runner, config, BATCH_MAX_JOBS) ||
        s_runner_init (&self->io, config, 1))
        goto err;
    if (pthread_condattr_init (&attr))
        goto err;
    //  Batch delays are deadlines on the monotonic clock (clock_now_us)
    rc = pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    if (rc == 0 && pthread_mutex_init (&self->lock, NULL) == 0) {
        if (pthread_cond_init (&self->arrived, &attr) == 0)
            locks = true;
        else
            pthread_mutex_destroy (&self->lock);
    }
    pthread_condattr_destroy (&attr);
    if (!locks)
        goto err;
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->wake_fd == -1)
        goto err;
    //  Signals are the main thread's business: the thread starts with them
    //  blocked
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    sigaddset (&signals, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &signals, &saved);
    rc = pthread_create (&self->thread, NULL, s_compute_thread, self);
    pthread_sigmask (SIG_SETMASK, &saved, NULL);
    if (rc) {
        log_error ("cannot start the compute thread error=\"%s\"", strerror (rc));
        goto err;
    }
    return self;
err:
    if (locks) {
        pthread_cond_destroy (&self->arrived);
        pthread_mutex_destroy (&self->lock);
    }
    if (self->wake_fd != -1)
        close (self->wake_fd);
    s_runner_fini (&self->runner);
    s_runner_fini (&self->io);
    free (self);
    return NULL;
}

batch_job_t *compute_cancel (compute_t *self, uint64_t token, uint64_t connection)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    batch_job_t *job = batch_queue_take (&self->incoming, token, connection);
    if (!job)
        job = batch_queue_take (&self->waiting, token, connection);
    pthread_mutex_unlock (&self->lock);
    return job;
}

bool compute_run_inline (compute_t *self, batch_job_t *job)
{
    assert (self);
    assert (job && job->serving && !list_node_linked (&job->node));
    size_t work = job->serving->inline_work;
    if (work == 0 || work > INLINE_MAX_WORK)
        return false;
    //  Only when the compute thread has nothing to do: a job never passes
    //  jobs queued before it, and jobs that come together still batch
    pthread_mutex_lock (&self->lock);
    bool idle = self->idle && list_empty (&self->incoming);
    pthread_mutex_unlock (&self->lock);
    if (!idle)
        return false;
    runner_t *r = &self->io;
    batch_member_t m;
    char err[CODEC_MESSAGE_MAX];
    uint64_t now = clock_now_us ();
    amaas_code_t code = batch_check_job (job, self->config->max_elements, now, &m, err, sizeof err);
    if (code == AMAAS_OK && m.rows * work > INLINE_MAX_WORK)
        return false;
    if (code != AMAAS_OK) {
        r->expired += code == AMAAS_DEADLINE_EXCEEDED;
        batch_job_fail (job, code, err, &r->answered);
    } else {
        batch_begin (r->batch, job->serving, now);
        int rc = batch_add (r->batch, &m);
        assert (rc == 0);
        (void)rc;
        s_run_batch (r);
    }
    //  Answered: the caller sends the RESULT
    assert (list_size (&r->answered) == 1);
    list_remove (&r->answered, &job->node);
    return true;
}

void compute_destroy (compute_t **self_p)
{
    assert (self_p);
    compute_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_signal (&self->arrived);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    pthread_cond_destroy (&self->arrived);
    pthread_mutex_destroy (&self->lock);
    //  Every job, in whichever queue it is (or none): freed with the lists
    batch_job_t *job;
    LIST_FOREACH (job, &self->all, batch_job_t, every) {
        list_remove (&self->all, &job->every);
        zmq_msg_close (&job->payload);
        zmq_msg_close (&job->result);
        free (job);
    }
    close (self->wake_fd);
    //  The counts of both threads, final now
    compute_config_t *config = self->config;
    config->computed = self->runner.computed + self->io.computed;
    config->expired = self->runner.expired + batch_expired (self->runner.batch) + self->io.expired;
    config->batches = self->runner.batches + self->io.batches;
    config->inlined = self->io.computed;
    s_runner_fini (&self->runner);
    s_runner_fini (&self->io);
    free (self);
    *self_p = NULL;
}
