/*  compute.c - the worker's compute thread, with dynamic batching.

    Jobs arrive on the incoming queue in the order the broker sent them.
    The thread takes the oldest job, then every other job for the same model
    that is already waiting (and, with a batch delay, that arrives within
    it), up to the model's batch size in rows.  Each job's inputs are
    checked on their own, and a job that fails a check is answered at once;
    the rows of the others are stacked into the workspace's input buffer,
    the model runs once (one GEMM per dense layer for the whole batch), and
    the outputs are cut back into one result per job.  Jobs for other models
    keep their place for the next round.  A job's model is the wrk_model_t
    it points to, resolved by the I/O thread: the batch is the jobs that
    point to the same one.

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

#define MAX_BATCH_JOBS 1024 //  jobs in one batch, whatever their rows
#define COMPUTE_NICE 5      //  the compute thread's priority below the I/O thread
#define WAIT_FOREVER UINT64_MAX
#define INLINE_MAX_WORK 16384 //  multiply-adds of a job the I/O thread may compute itself

//  A job taking part in a batch
typedef struct {
    wrk_job_t *job;
    codec_tensor_t input; //  its one input tensor, checked
    size_t rows;          //  its rows
    size_t first_row;     //  where its rows start in the batch
} member_t;

//  What a thread needs to compute batches, reused from batch to batch: the
//  compute thread has one, and the I/O thread one for the small jobs it
//  computes itself
typedef struct {
    compute_config_t *config;
    model_workspace_t *ws;    //  buffers of the model runs
    msgpack_sbuffer packed;   //  a job's outputs, encoded
    size_t *byte_offsets;     //  BYTES outputs: offset of each row
    size_t byte_offsets_size; //  entries allocated
    wrk_queue_t answered;     //  answered, not yet handed on
    uint64_t computed;        //  jobs whose model ran
    uint64_t expired;         //  jobs answered DEADLINE_EXCEEDED without compute
    uint64_t batches;         //  model runs
    size_t max_members;       //  entries of members
    member_t *members;        //  the jobs of the batch at hand
} runner_t;

struct compute_t {
    compute_config_t *config;
    pthread_t thread;
    int wake_fd; //  eventfd: readable when finished jobs wait
    //  Shared by both threads, under lock
    pthread_mutex_t lock;
    pthread_cond_t arrived; //  jobs came, or stop was asked
    wrk_queue_t incoming;   //  submitted, not yet seen by the compute thread
    wrk_queue_t waiting;    //  seen by the compute thread, not yet in a batch, in order
    wrk_queue_t finished;   //  answered, not yet taken by the I/O thread
    bool sleeping;          //  the compute thread waits on arrived
    bool idle;              //  ... with nothing to compute at all
    bool woken;             //  wake_fd written, finished not yet taken
    bool stop;              //  the compute thread is to stop
    //  The I/O thread's
    wrk_job_t *pool; //  jobs free for reuse, linked by next
    wrk_job_t *all;  //  every job allocated, linked by all
    runner_t io;     //  for the jobs it computes itself
    //  The compute thread's
    bool stopping;   //  stop seen
    runner_t runner; //  its batches
};

void wrk_queue_push (wrk_queue_t *self, wrk_job_t *job)
{
    job->next = NULL;
    if (self->last)
        self->last->next = job;
    else
        self->first = job;
    self->last = job;
}

//  Moves every job of from to the end of self.  Cannot fail.
static void queue_append (wrk_queue_t *self, wrk_queue_t *from)
{
    if (!from->first)
        return;
    if (self->last)
        self->last->next = from->first;
    else
        self->first = from->first;
    self->last = from->last;
    from->first = from->last = NULL;
}

//  Takes job, which follows prev (NULL: job is first), out of self.
static void queue_unlink (wrk_queue_t *self, wrk_job_t *prev, wrk_job_t *job)
{
    if (prev)
        prev->next = job->next;
    else
        self->first = job->next;
    if (self->last == job)
        self->last = prev;
    job->next = NULL;
}

wrk_job_t *compute_job_take (compute_t *self)
{
    wrk_job_t *job = self->pool;
    if (job)
        self->pool = job->next;
    else {
        job = malloc (sizeof *job);
        if (!job)
            return NULL;
        zmq_msg_init (&job->payload);
        zmq_msg_init (&job->result);
        job->all = self->all;
        self->all = job;
    }
    job->next = NULL;
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

void compute_job_give_back (compute_t *self, wrk_job_t *job)
{
    //  Closing releases the bytes; an empty message holds nothing
    zmq_msg_close (&job->payload);
    zmq_msg_init (&job->payload);
    zmq_msg_close (&job->result);
    zmq_msg_init (&job->result);
    job->next = self->pool;
    self->pool = job;
}

void compute_submit (compute_t *self, wrk_queue_t *jobs)
{
    if (!jobs->first)
        return;
    pthread_mutex_lock (&self->lock);
    queue_append (&self->incoming, jobs);
    if (self->sleeping) {
        self->sleeping = false;
        pthread_cond_signal (&self->arrived);
    }
    pthread_mutex_unlock (&self->lock);
}

wrk_job_t *compute_take_finished (compute_t *self)
{
    //  Clears the eventfd.  EAGAIN (it was not written) is no matter:
    //  whatever is finished is taken
    uint64_t count;
    ssize_t rc = read (self->wake_fd, &count, sizeof count);
    (void)rc;
    pthread_mutex_lock (&self->lock);
    wrk_job_t *jobs = self->finished.first;
    self->finished.first = self->finished.last = NULL;
    self->woken = false;
    pthread_mutex_unlock (&self->lock);
    return jobs;
}

int compute_wake_fd (compute_t *self)
{
    return self->wake_fd;
}

//  Compute thread: moves the answered jobs to the finished queue, and wakes
//  the I/O thread unless it is woken already.
static void publish (compute_t *self)
{
    if (!self->runner.answered.first)
        return;
    pthread_mutex_lock (&self->lock);
    queue_append (&self->finished, &self->runner.answered);
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
//  asked.
static void receive (compute_t *self, uint64_t until_us)
{
    pthread_mutex_lock (&self->lock);
    if (until_us == WAIT_FOREVER && self->waiting.first)
        until_us = 0;
    if (!self->incoming.first && !self->stop && until_us) {
        self->sleeping = true;
        self->idle = until_us == WAIT_FOREVER && !self->waiting.first;
        if (until_us == WAIT_FOREVER)
            pthread_cond_wait (&self->arrived, &self->lock);
        else {
            struct timespec until = {.tv_sec = (time_t)(until_us / 1000000),
                                     .tv_nsec = (long)(until_us % 1000000) * 1000};
            pthread_cond_timedwait (&self->arrived, &self->lock, &until);
        }
        self->sleeping = self->idle = false;
    }
    queue_append (&self->waiting, &self->incoming);
    self->stopping = self->stop;
    pthread_mutex_unlock (&self->lock);
}

//  Answers a job with an error (its result holds no outputs).
static void fail_job (runner_t *self, wrk_job_t *job, const model_t *model, amaas_code_t code,
                      const char *message)
{
    job->served_by = model;
    job->code = code;
    snprintf (job->message, sizeof job->message, "%s", message);
    log_debug ("job failed model=%s code=%s error=\"%s\"", job->model, amaas_code_name (code),
               message);
    wrk_queue_push (&self->answered, job);
}

//  Checks a job against its model: one input of the right shape and
//  datatype, outputs that exist, deadline not passed.  Fills the member.
//  Returns AMAAS_OK, or a code with a message in err.
static amaas_code_t check_job (const compute_config_t *config, const model_t *model, wrk_job_t *job,
                               member_t *member, char *err, size_t err_size)
{
    if (job->deadline_us && clock_now_us () >= job->deadline_us) {
        snprintf (err, err_size, "deadline passed %" PRIu64 " ms before compute; not computed",
                  (clock_now_us () - job->deadline_us) / 1000);
        return AMAAS_DEADLINE_EXCEEDED;
    }
    codec_tensor_t inputs[CODEC_MAX_TENSORS];
    char why[CODEC_MESSAGE_MAX];
    int n = codec_tensors_decode (zmq_msg_data (&job->payload), zmq_msg_size (&job->payload),
                                  inputs, CODEC_MAX_TENSORS, config->max_elements, why, sizeof why);
    if (n < 0) {
        snprintf (err, err_size, "%s", why);
        return AMAAS_INVALID_ARGUMENT;
    }
    if (n != 1) {
        snprintf (err, err_size, "model '%s' takes 1 input tensor, got %d", job->model, n);
        return AMAAS_INVALID_ARGUMENT;
    }
    const codec_tensor_t *in = &inputs[0];
    size_t width = model_input_width (model);
    if (in->ndim != 2 || in->shape[1] != (int64_t)width || in->shape[0] < 1) {
        char shape[128] = "";
        size_t len = 0;
        for (int d = 0; d < in->ndim && len < sizeof shape - 24; d++)
            len += (size_t)snprintf (shape + len, sizeof shape - len, "%s%" PRId64, d ? ", " : "",
                                     in->shape[d]);
        snprintf (err, err_size,
                  "input '%.*s' has shape [%s]; model '%s' expects [rows, %zu] with rows >= 1",
                  (int)in->name_len, in->name, shape, job->model, width);
        return AMAAS_INVALID_ARGUMENT;
    }
    if (in->datatype != AMAAS_FP32 && in->datatype != AMAAS_FP64 && in->datatype != AMAAS_INT32 &&
        in->datatype != AMAAS_INT64) {
        snprintf (err, err_size,
                  "input '%.*s' has datatype %s; model '%s' takes FP32, FP64, INT32 or INT64",
                  (int)in->name_len, in->name, amaas_dtype_name (in->datatype), job->model);
        return AMAAS_INVALID_ARGUMENT;
    }
    size_t n_outputs = model_output_count (model);
    for (size_t i = 0; i < job->n_outputs; i++) {
        size_t k = 0;
        while (k < n_outputs && strcmp (model_output_name (model, k), job->outputs[i]))
            k++;
        if (k == n_outputs) {
            snprintf (err, err_size, "model '%s' has no output '%s'", job->model, job->outputs[i]);
            return AMAAS_INVALID_ARGUMENT;
        }
    }
    member->job = job;
    member->input = *in;
    member->rows = (size_t)in->shape[0];
    return AMAAS_OK;
}

//  Row byte offsets of a BYTES output of `rows` rows, into self->byte_offsets
//  (rows + 1 entries).  Returns 0, -1 on out-of-memory.
static int bytes_offsets (runner_t *self, const model_output_t *out, size_t rows)
{
    if (self->byte_offsets_size < rows + 1) {
        size_t *grown = realloc (self->byte_offsets, (rows + 1) * sizeof (size_t));
        if (!grown)
            return -1;
        self->byte_offsets = grown;
        self->byte_offsets_size = rows + 1;
    }
    const uint8_t *p = out->data;
    size_t offset = 0;
    for (size_t r = 0; r < rows; r++) {
        self->byte_offsets[r] = offset;
        uint32_t len;
        memcpy (&len, p + offset, 4);
        offset += 4 + len;
    }
    self->byte_offsets[rows] = offset;
    return 0;
}

//  Cuts a member's rows out of the batch outputs and encodes them into its
//  job's result.  Returns 0, -1 on out-of-memory.
static int member_outputs (runner_t *self, const model_t *model, const member_t *m,
                           const model_output_t *outs, size_t batch_rows)
{
    wrk_job_t *job = m->job;
    size_t n_outputs = model_output_count (model);
    size_t wanted = job->n_outputs ? job->n_outputs : n_outputs;
    codec_tensor_t results[CODEC_MAX_OUTPUTS];
    for (size_t i = 0; i < wanted; i++) {
        size_t k = i;
        if (job->n_outputs)
            for (k = 0; strcmp (model_output_name (model, k), job->outputs[i]); k++)
                ;
        const model_output_t *o = &outs[k];
        codec_tensor_t *t = &results[i];
        memset (t, 0, sizeof *t);
        t->name = o->name;
        t->name_len = strlen (o->name);
        t->datatype = o->datatype;
        t->ndim = o->ndim;
        t->shape[0] = (int64_t)m->rows;
        t->shape[1] = o->shape[1];
        if (o->datatype == AMAAS_BYTES) {
            if (bytes_offsets (self, o, batch_rows))
                return -1;
            size_t start = self->byte_offsets[m->first_row];
            t->data = (const uint8_t *)o->data + start;
            t->size = self->byte_offsets[m->first_row + m->rows] - start;
        } else {
            size_t row_bytes = o->size / batch_rows;
            t->data = (const uint8_t *)o->data + m->first_row * row_bytes;
            t->size = m->rows * row_bytes;
        }
    }
    self->packed.size = 0;
    if (codec_tensors_pack (results, wanted, &self->packed))
        return -1;
    if (zmq_msg_init_size (&job->result, self->packed.size)) {
        zmq_msg_init (&job->result); //  empty again, as the pool expects
        return -1;
    }
    memcpy (zmq_msg_data (&job->result), self->packed.data, self->packed.size);
    return 0;
}

//  Computes the members [0, n) of a batch for one model and answers each.
static void run_batch (runner_t *self, model_t *model, size_t n, size_t rows)
{
    char err[CODEC_MESSAGE_MAX];
    uint64_t start = clock_now_us ();
    void *input = model_input (model, self->ws, rows, err, sizeof err);
    model_output_t outs[MODEL_MAX_OUTPUTS];
    size_t row_bytes = model_input_width (model) * (model_dtype (model) == AMAAS_FP64 ? 8 : 4);
    int rc = -1;
    if (input) {
        for (size_t i = 0; i < n; i++)
            model_convert (model, self->members[i].input.datatype, self->members[i].input.data,
                           self->members[i].rows,
                           (uint8_t *)input + self->members[i].first_row * row_bytes);
        rc = model_run_input (model, self->ws, rows, outs, err, sizeof err);
    }
    uint64_t compute_us = clock_now_us () - start;
    self->computed += n;
    self->batches++;
    for (size_t i = 0; i < n; i++) {
        member_t *m = &self->members[i];
        m->job->compute_us = compute_us;
        if (rc == 0 && member_outputs (self, model, m, outs, rows) == 0) {
            m->job->served_by = model;
            m->job->batch = (uint32_t)n;
            wrk_queue_push (&self->answered, m->job);
        } else
            fail_job (self, m->job, model, AMAAS_INTERNAL,
                      rc ? err : "out of memory encoding the outputs");
    }
}

//  Takes the oldest waiting job, gathers the others for its model, and
//  computes them as one batch.  Nothing to do if no job waits (the I/O
//  thread may have cancelled it).
static void compute_next (compute_t *self)
{
    pthread_mutex_lock (&self->lock);
    wrk_job_t *job = self->waiting.first;
    if (!job) {
        pthread_mutex_unlock (&self->lock);
        return;
    }
    const wrk_model_t *serving = job->serving;
    model_t *model = serving->model;
    char err[CODEC_MESSAGE_MAX];
    runner_t *r = &self->runner;
    size_t max_rows = serving->max_batch;
    uint64_t gather_until = clock_now_us () + serving->batch_delay_us;
    size_t n = 0, rows = 0;
    while (true) {
        //  Take every waiting job for this model that fits, in order (the
        //  lock is held)
        wrk_job_t *prev = NULL, *next;
        for (job = self->waiting.first; job && n < MAX_BATCH_JOBS; job = next) {
            next = job->next;
            if (job->serving != serving) {
                prev = job;
                continue;
            }
            member_t m;
            amaas_code_t code = check_job (self->config, model, job, &m, err, sizeof err);
            if (code == AMAAS_OK && n > 0 && rows + m.rows > max_rows)
                break; //  full: this job leads the next batch
            queue_unlink (&self->waiting, prev, job);
            if (code != AMAAS_OK) {
                if (code == AMAAS_DEADLINE_EXCEEDED)
                    r->expired++;
                fail_job (r, job, model, code, err);
            } else {
                m.first_row = rows;
                r->members[n++] = m;
                rows += m.rows;
            }
        }
        pthread_mutex_unlock (&self->lock);
        uint64_t now = clock_now_us ();
        if (rows >= max_rows || n == MAX_BATCH_JOBS || now >= gather_until || self->stopping)
            break;
        //  Errors are answered before the wait, not after it
        publish (self);
        receive (self, gather_until);
        pthread_mutex_lock (&self->lock);
    }
    //  ... and before the batch computes
    publish (self);
    if (n)
        run_batch (r, model, n, rows);
}

static void *compute_thread (void *args)
{
    compute_t *self = args;
    //  The I/O thread must win the CPU whenever it has something to do
    //  (heartbeats, results), even when every core computes: compute runs
    //  at a lower priority.  Best effort: a failure changes nothing else.
    int rc = setpriority (PRIO_PROCESS, (id_t)syscall (SYS_gettid), COMPUTE_NICE);
    (void)rc;
    while (!self->stopping) {
        publish (self);
        receive (self, WAIT_FOREVER);
        if (!self->stopping)
            compute_next (self);
    }
    return NULL;
}

//  Sets up a runner for batches of up to max_members jobs.  Returns 0, -1
//  on out-of-memory (runner_fini still applies).
static int runner_init (runner_t *self, compute_config_t *config, size_t max_members)
{
    self->config = config;
    msgpack_sbuffer_init (&self->packed);
    self->ws = model_workspace_new ();
    self->members = calloc (max_members, sizeof *self->members);
    self->max_members = max_members;
    return self->ws && self->members ? 0 : -1;
}

static void runner_fini (runner_t *self)
{
    model_workspace_destroy (&self->ws);
    msgpack_sbuffer_destroy (&self->packed);
    free (self->byte_offsets);
    free (self->members);
    memset (self, 0, sizeof *self);
}

//  A model the I/O thread may run itself, when the compute thread has
//  nothing to do: one whose job costs little (microseconds, so that
//  heartbeats are not held up) and that is not set to wait for more jobs to
//  batch.  A dense layer counts its weights, any other op its input width.
size_t compute_inline_work (const model_t *model, uint64_t batch_delay_us)
{
    if (batch_delay_us)
        return 0;
    size_t work = 0;
    for (size_t i = 0; i < model_op_count (model); i++) {
        const model_op_t *op = model_op (model, i);
        work += op->kind == MODEL_OP_DENSE ? op->in_width * op->out_width : op->in_width + 1;
    }
    return work;
}

compute_t *compute_new (compute_config_t *config)
{
    compute_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = config;
    self->wake_fd = -1;
    pthread_condattr_t attr;
    sigset_t signals, saved;
    bool locks = false;
    int rc;
    if (runner_init (&self->runner, config, MAX_BATCH_JOBS) || runner_init (&self->io, config, 1))
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
    rc = pthread_create (&self->thread, NULL, compute_thread, self);
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
    runner_fini (&self->runner);
    runner_fini (&self->io);
    free (self);
    return NULL;
}

wrk_job_t *wrk_queue_take (wrk_queue_t *self, uint64_t token, uint64_t connection)
{
    wrk_job_t *prev = NULL;
    for (wrk_job_t *job = self->first; job; prev = job, job = job->next)
        if (job->token == token && job->connection == connection) {
            queue_unlink (self, prev, job);
            return job;
        }
    return NULL;
}

wrk_job_t *compute_cancel (compute_t *self, uint64_t token, uint64_t connection)
{
    pthread_mutex_lock (&self->lock);
    wrk_job_t *job = wrk_queue_take (&self->incoming, token, connection);
    if (!job)
        job = wrk_queue_take (&self->waiting, token, connection);
    pthread_mutex_unlock (&self->lock);
    return job;
}

bool compute_run_inline (compute_t *self, wrk_job_t *job)
{
    size_t work = job->serving->inline_work;
    model_t *model = job->serving->model;
    if (work == 0 || work > INLINE_MAX_WORK)
        return false;
    //  Only when the compute thread has nothing to do: a job never passes
    //  jobs queued before it, and jobs that come together still batch
    pthread_mutex_lock (&self->lock);
    bool idle = self->idle && !self->incoming.first;
    pthread_mutex_unlock (&self->lock);
    if (!idle)
        return false;
    runner_t *r = &self->io;
    member_t m;
    char err[CODEC_MESSAGE_MAX];
    amaas_code_t code = check_job (self->config, model, job, &m, err, sizeof err);
    if (code == AMAAS_OK && m.rows * work > INLINE_MAX_WORK)
        return false;
    if (code != AMAAS_OK) {
        r->expired += code == AMAAS_DEADLINE_EXCEEDED;
        fail_job (r, job, model, code, err);
    } else {
        m.first_row = 0;
        r->members[0] = m;
        run_batch (r, model, 1, m.rows);
    }
    //  Answered: the caller sends the RESULT
    r->answered.first = r->answered.last = NULL;
    return true;
}

void compute_destroy (compute_t **self_p)
{
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
    while (self->all) {
        wrk_job_t *job = self->all;
        self->all = job->all;
        zmq_msg_close (&job->payload);
        zmq_msg_close (&job->result);
        free (job);
    }
    close (self->wake_fd);
    //  The counts of both threads, final now
    compute_config_t *config = self->config;
    config->computed = self->runner.computed + self->io.computed;
    config->expired = self->runner.expired + self->io.expired;
    config->batches = self->runner.batches + self->io.batches;
    config->inlined = self->io.computed;
    runner_fini (&self->runner);
    runner_fini (&self->io);
    free (self);
    *self_p = NULL;
}
