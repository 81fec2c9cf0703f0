/*  dispatch.c - the gateway's dispatcher and model-list threads.

    Jobs go from the submitters' queue (under the mutex; the eventfd wakes
    the dispatcher) to the broker with amaas_send_opts, and sit in the
    in-flight list, found again by (client, job id) in an idmap when their
    result comes.  The loop: send what was queued, take in every client's
    results (amaas_recv with timeout 0 until NULL, which also fires the
    clients' timers and re-arms their edge-triggered fds), every
    HANGUP_CHECK_MS cancel the jobs whose caller hung up, then poll the
    eventfd and the clients' fds, for at most the smallest amaas_wake_ms.
    A job leaves the dispatcher through its done callback and is not
    touched after it.
*/
#define _GNU_SOURCE //  strverscmp, POLLRDHUP
#include "dispatch.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "idmap.h"
#include "log.h"

//  The longest wait for a broker that does not answer: the dispatcher
//  waits, and the other jobs with it
#define CONNECT_TIMEOUT_MS 2000
#define RECONNECT_MS 1000      //  after a failed connect, jobs fail at once this long
#define MODELS_REFRESH_MS 1000 //  the model list's age at most
#define MODELS_TIMEOUT_MS 2000 //  longest wait for the broker's model list
#define MAX_WAIT_MS 1000       //  longest poll
#define HANGUP_CHECK_MS 100    //  callers' sockets are looked at this often while jobs wait

struct dispatch_t {
    dispatch_config_t config;                //  certs copied below
    const char **certs;                      //  key pair of each client, or NULLs
    amaas_client_t **clients;                //  one per key name; NULL until first used
    int64_t *retry_at;                       //  per client: no connect before this (monotonic ms)
    amaas_error_t *connect_error;            //  per client: why the last connect failed
    idmap_t *jobs;                           //  in-flight jobs by (client, id)
    dispatch_job_t *in_flight;               //  the same, as a list (dispatcher thread only)
    size_t n_in_flight;                      //  its length
    pthread_mutex_t lock;                    //  guards the queue, stop and the model cache
    pthread_cond_t models_changed;           //  the model cache was refreshed, or stop
    dispatch_job_t *queue_head, *queue_tail; //  jobs submitted, not yet taken
    bool stop;                               //  the threads should end
    int wake;                                //  eventfd: a job was queued, or stop
    struct pollfd *items;                    //  the dispatcher's poll set: wake, clients
    atomic_size_t submitted;                 //  jobs submitted and not yet done
    pthread_t dispatcher, modeler;           //  the threads
    bool dispatcher_started, modeler_started;
    dispatch_models_t models; //  the model cache
    uint64_t generation;      //  times it was refreshed
};

//  Whether an in-flight job is the one keyed (client, id)
typedef struct {
    size_t client;
    uint64_t id;
} job_key_t;

static bool s_job_is (const void *item, const void *key)
{
    const dispatch_job_t *job = item;
    const job_key_t *k = key;
    return job->client == k->client && job->id == k->id;
}

static uint64_t s_job_hash (size_t client, uint64_t id)
{
    return idmap_hash_pair ((uint64_t)client, id);
}

//  The client of index i, connected on first use; NULL with err set when
//  the broker does not answer (then jobs fail at once for RECONNECT_MS).
static amaas_client_t *s_client (dispatch_t *self, size_t i, amaas_error_t *err)
{
    if (self->clients[i])
        return self->clients[i];
    int64_t now = clock_now_ms ();
    if (now < self->retry_at[i]) {
        *err = self->connect_error[i];
        return NULL;
    }
    int timeout =
        self->config.timeout_ms < CONNECT_TIMEOUT_MS ? self->config.timeout_ms : CONNECT_TIMEOUT_MS;
    amaas_client_t *c;
    if (self->config.server_key)
        c = amaas_connect_curve (self->config.endpoint, timeout, self->config.server_key,
                                 self->certs[i], err);
    else
        c = amaas_connect (self->config.endpoint, timeout, err);
    if (!c) {
        self->connect_error[i] = *err;
        self->retry_at[i] = clock_now_ms () + RECONNECT_MS;
        log_warn ("cannot reach the broker endpoint=%s code=%s reason=\"%s\"",
                  self->config.endpoint, amaas_code_name (err->code), err->message);
        return NULL;
    }
    amaas_set_timeout (c, self->config.timeout_ms);
    log_info ("connected to the broker endpoint=%s client=%zu", self->config.endpoint, i);
    self->clients[i] = c;
    return c;
}

//  Hands a job back to its submitter: it leaves the in-flight list.
static void s_finish (dispatch_t *self, dispatch_job_t *job)
{
    if (job->id) {
        idmap_delete (self->jobs, s_job_hash (job->client, job->id), job);
        if (job->prev)
            job->prev->next = job->next;
        else
            self->in_flight = job->next;
        if (job->next)
            job->next->prev = job->prev;
        self->n_in_flight--;
    }
    job->next = job->prev = NULL;
    atomic_fetch_sub (&self->submitted, 1);
    job->done (job); //  the job is the submitter's again: not touched after this
}

//  Sends a job to the broker, or finishes it with the reason it cannot go.
static void s_send (dispatch_t *self, dispatch_job_t *job)
{
    job->id = 0;
    job->result = NULL;
    amaas_client_t *c = s_client (self, job->client, &job->error);
    if (!c) {
        s_finish (self, job);
        return;
    }
    uint64_t id =
        amaas_send_opts (c, job->model, job->inputs, job->n_inputs, &job->options, &job->error);
    if (!id) {
        s_finish (self, job);
        return;
    }
    job->id = id;
    if (idmap_insert (self->jobs, s_job_hash (job->client, id), job)) {
        amaas_cancel (c, id);
        job->id = 0;
        job->error.code = AMAAS_INTERNAL;
        snprintf (job->error.message, sizeof job->error.message, "the gateway is out of memory");
        s_finish (self, job);
        return;
    }
    job->prev = NULL;
    job->next = self->in_flight;
    if (self->in_flight)
        self->in_flight->prev = job;
    self->in_flight = job;
    self->n_in_flight++;
}

//  Takes in every result waiting on every client.
static void s_drain (dispatch_t *self)
{
    for (size_t i = 0; i < self->config.n_clients; i++) {
        amaas_client_t *c = self->clients[i];
        if (!c)
            continue;
        amaas_error_t err;
        amaas_result_t *result;
        while ((result = amaas_recv (c, 0, &err))) {
            job_key_t key = {i, result->id};
            dispatch_job_t *job =
                idmap_find (self->jobs, s_job_hash (i, result->id), s_job_is, &key);
            if (!job) {
                amaas_result_destroy (&result); //  a job given up
                continue;
            }
            job->result = result;
            s_finish (self, job);
        }
    }
}

//  Finishes every job in flight and queued with UNAVAILABLE (stopping).
static void s_fail_all (dispatch_t *self)
{
    while (self->in_flight) {
        dispatch_job_t *job = self->in_flight;
        if (self->clients[job->client])
            amaas_cancel (self->clients[job->client], job->id);
        job->error.code = AMAAS_UNAVAILABLE;
        snprintf (job->error.message, sizeof job->error.message, "the gateway is stopping");
        s_finish (self, job);
    }
    pthread_mutex_lock (&self->lock);
    dispatch_job_t *queue = self->queue_head;
    self->queue_head = self->queue_tail = NULL;
    pthread_mutex_unlock (&self->lock);
    while (queue) {
        dispatch_job_t *job = queue;
        queue = job->next;
        job->id = 0;
        job->result = NULL;
        job->error.code = AMAAS_UNAVAILABLE;
        snprintf (job->error.message, sizeof job->error.message, "the gateway is stopping");
        s_finish (self, job);
    }
}

//  Cancels the jobs whose caller hung up: one poll(2), without waiting, on
//  the callers' sockets.  fds and watched grow as needed.
static void s_check_hangups (dispatch_t *self, struct pollfd **fds, dispatch_job_t ***watched,
                             size_t *capacity)
{
    if (self->n_in_flight > *capacity) {
        size_t grown = self->n_in_flight * 2;
        struct pollfd *f = realloc (*fds, grown * sizeof **fds);
        if (f)
            *fds = f;
        dispatch_job_t **w = realloc (*watched, grown * sizeof **watched);
        if (w)
            *watched = w;
        if (f && w)
            *capacity = grown;
    }
    size_t n = 0;
    for (dispatch_job_t *job = self->in_flight; job && n < *capacity; job = job->next) {
        if (job->fd < 0)
            continue;
        (*fds)[n] = (struct pollfd){.fd = job->fd, .events = POLLRDHUP};
        (*watched)[n++] = job;
    }
    if (n == 0 || poll (*fds, n, 0) <= 0)
        return;
    for (size_t k = 0; k < n; k++) {
        dispatch_job_t *job = (*watched)[k];
        if (!((*fds)[k].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            continue;
        amaas_cancel (self->clients[job->client], job->id);
        job->hung_up = true;
        job->error.code = AMAAS_CANCELLED;
        snprintf (job->error.message, sizeof job->error.message, "the caller hung up");
        s_finish (self, job);
    }
}

static void *s_dispatcher (void *arg)
{
    dispatch_t *self = arg;
    //  The callers' sockets are looked at every HANGUP_CHECK_MS, not at
    //  every turn: that would cost the kernel a look at every job in flight
    //  for each result that comes
    struct pollfd *fds = NULL;
    dispatch_job_t **watched = NULL; //  the job of each fds[] entry
    size_t capacity = 0;
    int64_t hangups_checked = clock_now_ms ();
    while (true) {
        pthread_mutex_lock (&self->lock);
        dispatch_job_t *queue = self->queue_head;
        self->queue_head = self->queue_tail = NULL;
        bool stop = self->stop;
        pthread_mutex_unlock (&self->lock);
        if (stop) {
            //  the queue taken goes back, so that s_fail_all answers it
            if (queue) {
                pthread_mutex_lock (&self->lock);
                dispatch_job_t *tail = queue;
                while (tail->next)
                    tail = tail->next;
                tail->next = self->queue_head;
                self->queue_head = queue;
                pthread_mutex_unlock (&self->lock);
            }
            break;
        }
        while (queue) {
            dispatch_job_t *job = queue;
            queue = job->next;
            job->next = NULL;
            s_send (self, job);
        }
        s_drain (self);

        int64_t now = clock_now_ms ();
        if (self->n_in_flight == 0)
            hangups_checked = now;
        else if (now - hangups_checked >= HANGUP_CHECK_MS) {
            s_check_hangups (self, &fds, &watched, &capacity);
            hangups_checked = now;
        }

        //  Wait for the eventfd or a client's fd, until the next timer
        struct pollfd *items = self->items;
        size_t n = 0;
        int timeout = self->n_in_flight ? HANGUP_CHECK_MS : MAX_WAIT_MS;
        items[n++] = (struct pollfd){.fd = self->wake, .events = POLLIN};
        for (size_t i = 0; i < self->config.n_clients; i++) {
            if (!self->clients[i])
                continue;
            items[n++] = (struct pollfd){.fd = amaas_fd (self->clients[i]), .events = POLLIN};
            int wake = amaas_wake_ms (self->clients[i]);
            if (wake < timeout)
                timeout = wake < 0 ? 0 : wake;
        }
        int rc = poll (items, n, timeout);
        if (rc < 0 && errno != EINTR) {
            log_error ("poll failed reason=\"%s\"", strerror (errno));
            usleep (10000);
        }
        if (rc > 0 && items[0].revents & POLLIN) {
            uint64_t count;
            if (read (self->wake, &count, sizeof count) < 0 && errno != EAGAIN)
                log_error ("eventfd read failed reason=\"%s\"", strerror (errno));
        }
    }
    s_fail_all (self);
    free (fds);
    free (watched);
    return NULL;
}

//  Orders models by name, then version (numbers in versions compare as
//  numbers: 2 < 10)
static int s_model_compare (const void *a, const void *b)
{
    const amaas_model_info_t *x = a, *y = b;
    int c = strcmp (x->name, y->name);
    return c ? c : strverscmp (x->version, y->version);
}

//  Asks the broker for its models, connecting *client first if needed.
static void s_fetch_models (dispatch_t *self, amaas_client_t **client, dispatch_models_t *out)
{
    memset (out, 0, sizeof *out);
    amaas_error_t err;
    if (!*client) {
        int timeout = self->config.timeout_ms < MODELS_TIMEOUT_MS ? self->config.timeout_ms
                                                                  : MODELS_TIMEOUT_MS;
        if (self->config.server_key)
            *client = amaas_connect_curve (self->config.endpoint, timeout, self->config.server_key,
                                           self->config.models_cert, &err);
        else
            *client = amaas_connect (self->config.endpoint, timeout, &err);
        if (!*client) {
            snprintf (out->error, sizeof out->error, "the broker does not answer: %s", err.message);
            return;
        }
        amaas_set_timeout (*client, timeout);
    }
    size_t max = 64;
    while (true) {
        amaas_model_info_t *models = calloc (max, sizeof *models);
        if (!models) {
            snprintf (out->error, sizeof out->error, "the gateway is out of memory");
            return;
        }
        int n = amaas_models (*client, models, max, &err);
        if (n < 0) {
            free (models);
            snprintf (out->error, sizeof out->error, "the broker does not answer: %s", err.message);
            return;
        }
        if ((size_t)n > max) {
            free (models);
            max = (size_t)n;
            continue;
        }
        qsort (models, (size_t)n, sizeof *models, s_model_compare);
        out->models = models;
        out->n_models = (size_t)n;
        out->ok = true;
        return;
    }
}

static void s_deadline_in (struct timespec *ts, int ms)
{
    clock_gettime (CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *s_modeler (void *arg)
{
    dispatch_t *self = arg;
    amaas_client_t *client = NULL;
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        pthread_mutex_unlock (&self->lock);
        dispatch_models_t fresh;
        s_fetch_models (self, &client, &fresh);
        pthread_mutex_lock (&self->lock);
        dispatch_models_free (&self->models);
        self->models = fresh;
        self->generation++;
        pthread_cond_broadcast (&self->models_changed);
        struct timespec until;
        s_deadline_in (&until, MODELS_REFRESH_MS);
        while (!self->stop &&
               pthread_cond_timedwait (&self->models_changed, &self->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock (&self->lock);
    amaas_close (&client);
    return NULL;
}

dispatch_t *dispatch_new (const dispatch_config_t *config)
{
    assert (config->n_clients >= 1);
    dispatch_t *self = calloc (1, sizeof *self);
    if (!self)
        goto nomem;
    self->config = *config;
    self->wake = -1;
    size_t n = config->n_clients;
    self->certs = calloc (n, sizeof *self->certs);
    self->clients = calloc (n, sizeof *self->clients);
    self->retry_at = calloc (n, sizeof *self->retry_at);
    self->connect_error = calloc (n, sizeof *self->connect_error);
    self->items = calloc (n + 1, sizeof *self->items);
    self->jobs = idmap_new ();
    if (!self->certs || !self->clients || !self->retry_at || !self->connect_error || !self->items ||
        !self->jobs)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        self->certs[i] = config->certs ? config->certs[i] : NULL;
    self->config.certs = NULL;
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->models_changed, &attr);
    pthread_condattr_destroy (&attr);
    self->wake = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->wake < 0) {
        log_error ("cannot create an eventfd reason=\"%s\"", strerror (errno));
        goto err;
    }
    if (pthread_create (&self->dispatcher, NULL, s_dispatcher, self)) {
        log_error ("cannot start the dispatcher thread");
        goto err;
    }
    self->dispatcher_started = true;
    if (pthread_create (&self->modeler, NULL, s_modeler, self)) {
        log_error ("cannot start the model-list thread");
        goto err;
    }
    self->modeler_started = true;
    return self;
nomem:
    log_error ("out of memory");
err:
    dispatch_destroy (&self);
    return NULL;
}

void dispatch_destroy (dispatch_t **self_p)
{
    dispatch_t *self = *self_p;
    if (!self)
        return;
    if (self->jobs && self->certs) { //  initialized past the allocations
        pthread_mutex_lock (&self->lock);
        self->stop = true;
        pthread_cond_broadcast (&self->models_changed);
        pthread_mutex_unlock (&self->lock);
        if (self->wake >= 0) {
            uint64_t one = 1;
            if (write (self->wake, &one, sizeof one) < 0)
                log_error ("eventfd write failed reason=\"%s\"", strerror (errno));
        }
        if (self->dispatcher_started)
            pthread_join (self->dispatcher, NULL);
        if (self->modeler_started)
            pthread_join (self->modeler, NULL);
        for (size_t i = 0; i < self->config.n_clients; i++)
            amaas_close (&self->clients[i]);
        dispatch_models_free (&self->models);
        pthread_cond_destroy (&self->models_changed);
        pthread_mutex_destroy (&self->lock);
    }
    if (self->wake >= 0)
        close (self->wake);
    idmap_destroy (&self->jobs);
    free (self->certs);
    free (self->clients);
    free (self->retry_at);
    free (self->connect_error);
    free (self->items);
    free (self);
    *self_p = NULL;
}

void dispatch_submit (dispatch_t *self, dispatch_job_t *job)
{
    assert (self && job && job->done);
    job->next = job->prev = NULL;
    job->id = 0;
    job->result = NULL;
    job->hung_up = false;
    atomic_fetch_add (&self->submitted, 1);
    pthread_mutex_lock (&self->lock);
    if (self->queue_tail)
        self->queue_tail->next = job;
    else
        self->queue_head = job;
    self->queue_tail = job;
    pthread_mutex_unlock (&self->lock);
    uint64_t one = 1;
    if (write (self->wake, &one, sizeof one) < 0 && errno != EAGAIN)
        log_error ("eventfd write failed reason=\"%s\"", strerror (errno));
}

size_t dispatch_in_flight (dispatch_t *self)
{
    return atomic_load (&self->submitted);
}

void dispatch_models (dispatch_t *self, int wait_ms, dispatch_models_t *out)
{
    memset (out, 0, sizeof *out);
    struct timespec until;
    s_deadline_in (&until, wait_ms);
    pthread_mutex_lock (&self->lock);
    while (self->generation == 0 && !self->stop &&
           pthread_cond_timedwait (&self->models_changed, &self->lock, &until) != ETIMEDOUT)
        ;
    if (self->generation == 0)
        snprintf (out->error, sizeof out->error, "the broker has not answered yet");
    else {
        *out = self->models;
        out->models = NULL;
        if (self->models.n_models) {
            out->models = malloc (self->models.n_models * sizeof *out->models);
            if (out->models)
                memcpy (out->models, self->models.models,
                        self->models.n_models * sizeof *out->models);
            else {
                out->n_models = 0;
                out->ok = false;
                snprintf (out->error, sizeof out->error, "the gateway is out of memory");
            }
        }
    }
    pthread_mutex_unlock (&self->lock);
}

void dispatch_model_input (dispatch_t *self, const char *name, const char *version, int wait_ms,
                           char *input, size_t size)
{
    struct timespec until;
    s_deadline_in (&until, wait_ms);
    snprintf (input, size, "input");
    pthread_mutex_lock (&self->lock);
    while (self->generation == 0 && !self->stop &&
           pthread_cond_timedwait (&self->models_changed, &self->lock, &until) != ETIMEDOUT)
        ;
    //  grouped by name, versions ascending: the last match is the highest
    const amaas_model_info_t *found = NULL;
    for (size_t i = 0; i < self->models.n_models; i++) {
        const amaas_model_info_t *m = &self->models.models[i];
        if (strcmp (m->name, name) == 0 && (!version || strcmp (m->version, version) == 0))
            found = m;
    }
    if (found && found->input[0])
        snprintf (input, size, "%s", found->input);
    pthread_mutex_unlock (&self->lock);
}

void dispatch_models_free (dispatch_models_t *models)
{
    free (models->models);
    models->models = NULL;
    models->n_models = 0;
}
