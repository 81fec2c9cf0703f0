/*  dispatch.c - the broker's jobs, per-model queues and worker registry.

    Three tables: models by name, workers by identity key, and jobs held by
    workers by token.  A queued job sits in its model's zlistx; a held job in
    its worker's zlistx and in the token table.  Workers are found for a
    model by walking the model's worker list, which is short (the workers
    that serve one model).
*/
#include "dispatch.h"

#include "table.h"

#include <string.h>

struct dispatch_t {
    zhashx_t *models;    //  broker_model_t * by name
    zhashx_t *workers;   //  broker_worker_t * by key
    zhashx_t *held;      //  broker_job_t * by &token, jobs held by workers
    size_t max_queue;    //  bound of each model's queue
    uint32_t max_lost;   //  a job lost with this many workers fails
    uint64_t next_token; //  token of the next job
    uint64_t next_given; //  dispatch sequence number
};

//  A lane: the jobs of one client for one model and priority, FIFO.  The
//  lanes of a priority take turns, so that a client with many jobs waiting
//  cannot make another wait behind all of them.
typedef struct {
    zlistx_t *jobs;          //  broker_job_t *, owned while queued
    void *handle;            //  in the model's lanes list
    uint32_t priority;       //  its priority
    char key[TABLE_KEY_MAX]; //  priority and client identity, in hex
} lane_t;

//  A job's handle in the list that holds it (lane or worker) is kept by
//  storing it beside the job: zlistx handles are stable.
typedef struct {
    broker_job_t job;
    void *handle; //  handle in the lane or worker list holding it
    lane_t *lane; //  the lane holding it while queued
} job_node_t;

static void **job_handle (broker_job_t *job)
{
    return &((job_node_t *)job)->handle;
}

static lane_t **job_lane (broker_job_t *job)
{
    return &((job_node_t *)job)->lane;
}

static void model_destroy (broker_model_t **self_p)
{
    broker_model_t *self = *self_p;
    if (!self)
        return;
    for (int p = 0; p < CODEC_PRIORITIES; p++)
        zlistx_destroy (&self->lanes[p]);
    zhashx_destroy (&self->lane_of);
    zlistx_destroy (&self->workers);
    free (self);
    *self_p = NULL;
}

static void model_destructor (void **item)
{
    model_destroy ((broker_model_t **)item);
}

static void job_destructor (void **item)
{
    dispatch_job_destroy ((broker_job_t **)item);
}

static void lane_destroy (lane_t **self_p)
{
    if (!*self_p)
        return;
    zlistx_destroy (&(*self_p)->jobs);
    free (*self_p);
    *self_p = NULL;
}

static void lane_destructor (void **item)
{
    lane_destroy ((lane_t **)item);
}

static void worker_destroy (broker_worker_t **self_p)
{
    broker_worker_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->identity);
    zlistx_destroy (&self->jobs);
    free (self->models);
    free (self);
    *self_p = NULL;
}

static void worker_destructor (void **item)
{
    worker_destroy ((broker_worker_t **)item);
}

dispatch_t *dispatch_new (size_t max_queue, uint32_t max_lost)
{
    dispatch_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->models = zhashx_new ();
    self->workers = zhashx_new ();
    self->held = table_u64_new ();
    if (!self->models || !self->workers || !self->held)
        goto err;
    zhashx_set_destructor (self->models, model_destructor);
    zhashx_set_destructor (self->workers, worker_destructor);
    self->max_queue = max_queue;
    self->max_lost = max_lost ? max_lost : 1;
    self->next_token = 1;
    return self;
err:
    dispatch_destroy (&self);
    return NULL;
}

void dispatch_destroy (dispatch_t **self_p)
{
    dispatch_t *self = *self_p;
    if (!self)
        return;
    //  Held jobs are destroyed by their workers' lists, queued ones by
    //  their queues
    if (self->workers)
        for (broker_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers))
            zlistx_set_destructor (w->jobs, job_destructor);
    zhashx_destroy (&self->held);
    zhashx_destroy (&self->workers);
    zhashx_destroy (&self->models);
    free (self);
    *self_p = NULL;
}

broker_job_t *dispatch_job_new (dispatch_t *self, uint64_t id, const codec_header_t *request,
                                zframe_t **client_p, zframe_t **payload_p, uint64_t now_us)
{
    job_node_t *node = calloc (1, sizeof *node);
    if (!node)
        return NULL;
    broker_job_t *job = &node->job;
    job->token = self->next_token++;
    job->id = id;
    snprintf (job->model, sizeof job->model, "%s", request->model);
    if (request->n_outputs) {
        job->outputs = calloc (request->n_outputs, CODEC_NAME_MAX);
        if (!job->outputs) {
            free (node);
            return NULL;
        }
        memcpy (job->outputs, request->outputs, request->n_outputs * CODEC_NAME_MAX);
        job->n_outputs = request->n_outputs;
    }
    job->received_us = now_us;
    if (request->fields & HDR_PRIORITY)
        job->priority = request->priority < CODEC_PRIORITIES ? request->priority : 0;
    if (request->fields & HDR_DEADLINE_MS)
        job->deadline_us = now_us + (uint64_t)request->deadline_ms * 1000u;
    if (client_p) {
        job->client = *client_p;
        *client_p = NULL;
    }
    if (payload_p) {
        job->payload = *payload_p;
        *payload_p = NULL;
    }
    return job;
}

void dispatch_job_destroy (broker_job_t **job_p)
{
    broker_job_t *job = *job_p;
    if (!job)
        return;
    zframe_destroy (&job->client);
    zframe_destroy (&job->payload);
    free (job->outputs);
    free ((job_node_t *)job);
    *job_p = NULL;
}

zlistx_t *dispatch_job_list_new (void)
{
    zlistx_t *list = zlistx_new ();
    if (list)
        zlistx_set_destructor (list, job_destructor);
    return list;
}

static void fail_job (broker_job_t *job, amaas_code_t code, zlistx_t *failed, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static void fail_job (broker_job_t *job, amaas_code_t code, zlistx_t *failed, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vsnprintf (job->fail_message, sizeof job->fail_message, fmt, args);
    va_end (args);
    job->fail_code = code;
    job->worker = NULL;
    *job_handle (job) = zlistx_add_end (failed, job);
}

static broker_model_t *model_require (dispatch_t *self, const char *name)
{
    broker_model_t *model = zhashx_lookup (self->models, name);
    if (model)
        return model;
    model = calloc (1, sizeof *model);
    if (!model)
        return NULL;
    snprintf (model->name, sizeof model->name, "%s", name);
    bool ok = (model->workers = zlistx_new ()) != NULL;
    ok &= (model->lane_of = zhashx_new ()) != NULL;
    for (int p = 0; p < CODEC_PRIORITIES; p++) {
        ok &= (model->lanes[p] = zlistx_new ()) != NULL;
        if (model->lanes[p])
            zlistx_set_destructor (model->lanes[p], lane_destructor);
    }
    if (!ok) {
        model_destroy (&model);
        return NULL;
    }
    zhashx_insert (self->models, model->name, model);
    return model;
}

//  The lane key of a job: its priority and its client's identity in hex.
static void lane_key (const broker_job_t *job, char *key)
{
    table_identity_key (key, (char)('0' + job->priority), job->client);
}

//  Queues a job at the end of its client's lane, or, for a job coming back
//  from a lost worker, at the front of its lane with the lane first in turn.
//  Returns 0, -1 on out-of-memory.
static int queue_push (broker_model_t *model, broker_job_t *job, bool front)
{
    char key[sizeof ((lane_t *)0)->key];
    lane_key (job, key);
    zlistx_t *lanes = model->lanes[job->priority];
    lane_t *lane = zhashx_lookup (model->lane_of, key);
    if (!lane) {
        lane = calloc (1, sizeof *lane);
        if (!lane || !(lane->jobs = dispatch_job_list_new ())) {
            free (lane);
            return -1;
        }
        memcpy (lane->key, key, sizeof key);
        lane->priority = job->priority;
        lane->handle = front ? zlistx_add_start (lanes, lane) : zlistx_add_end (lanes, lane);
        zhashx_insert (model->lane_of, lane->key, lane);
    } else if (front)
        zlistx_move_start (lanes, lane->handle);
    void *handle = front ? zlistx_add_start (lane->jobs, job) : zlistx_add_end (lane->jobs, job);
    if (!handle)
        return -1;
    *job_handle (job) = handle;
    *job_lane (job) = lane;
    model->queued++;
    return 0;
}

//  The job that goes next: of the most urgent priority, the oldest job of
//  the lane whose turn it is; NULL if none waits.
static broker_job_t *queue_head (broker_model_t *model)
{
    for (int p = CODEC_PRIORITIES - 1; p >= 0; p--) {
        lane_t *lane = zlistx_head (model->lanes[p]);
        if (lane)
            return zlistx_head (lane->jobs);
    }
    return NULL;
}

//  Takes a queued job out of its lane; a lane left empty goes away.  With
//  rotate, the lane goes to the end of the turn.
static void queue_take (broker_model_t *model, broker_job_t *job, bool rotate)
{
    lane_t *lane = *job_lane (job);
    zlistx_detach (lane->jobs, *job_handle (job));
    *job_lane (job) = NULL;
    model->queued--;
    zlistx_t *lanes = model->lanes[lane->priority];
    if (zlistx_size (lane->jobs) == 0) {
        zhashx_delete (model->lane_of, lane->key);
        zlistx_delete (lanes, lane->handle);
    } else if (rotate)
        zlistx_move_end (lanes, lane->handle);
}

//  Takes a queued job out of its lane, the turn unchanged.
static void queue_remove (broker_model_t *model, broker_job_t *job)
{
    queue_take (model, job, false);
}

//  Fails every queued job of a model with `code`.
static void queue_fail_all (broker_model_t *model, amaas_code_t code, zlistx_t *failed,
                            const char *message)
{
    broker_job_t *job;
    while ((job = queue_head (model))) {
        queue_remove (model, job);
        fail_job (job, code, failed, "%s", message);
    }
}

//  Fails the queued jobs of a model that no worker serves any more.
static void fail_orphaned_queue (broker_model_t *model, zlistx_t *failed)
{
    if (zlistx_size (model->workers))
        return;
    char message[CODEC_MESSAGE_MAX];
    snprintf (message, sizeof message, "no worker serves model '%.128s' any more: retry later",
              model->name);
    queue_fail_all (model, AMAAS_UNAVAILABLE, failed, message);
}

//  Detaches the worker from every model it serves, and returns the list of
//  those models (the caller frees it) for fail_orphaned_queue.
static broker_model_t **worker_unlink_models (broker_worker_t *worker, size_t *n_models)
{
    broker_model_t **models = worker->models;
    *n_models = worker->n_models;
    for (size_t i = 0; i < worker->n_models; i++) {
        void *handle = zlistx_find (models[i]->workers, worker);
        if (handle)
            zlistx_detach (models[i]->workers, handle);
    }
    worker->models = NULL;
    worker->n_models = 0;
    return models;
}

//  Puts the worker's held jobs back at the front of their queues, in the
//  order they were given, or into failed.
static void worker_requeue_jobs (dispatch_t *self, broker_worker_t *worker, zlistx_t *failed)
{
    while (zlistx_last (worker->jobs)) {
        broker_job_t *job = zlistx_detach_cur (worker->jobs);
        zhashx_delete (self->held, &job->token);
        job->worker = NULL;
        job->lost++;
        broker_model_t *model = zhashx_lookup (self->models, job->model);
        if (job->lost >= self->max_lost)
            fail_job (job, AMAAS_UNAVAILABLE, failed,
                      "job lost with %u workers that died or left while holding it; "
                      "not retried, it may be a poison job",
                      job->lost);
        else if (!model || zlistx_size (model->workers) == 0)
            fail_job (job, AMAAS_UNAVAILABLE, failed,
                      "the worker holding the job was lost and no other serves model '%s': "
                      "retry later",
                      job->model);
        else
            queue_push (model, job, true);
    }
}

broker_worker_t *dispatch_worker_find (dispatch_t *self, const char *key)
{
    return zhashx_lookup (self->workers, key);
}

broker_worker_t *dispatch_worker_ready (dispatch_t *self, const char *key, zframe_t **identity_p,
                                        const codec_header_t *ready, int64_t expires_ms,
                                        zlistx_t *failed)
{
    broker_worker_t *worker = zhashx_lookup (self->workers, key);
    broker_model_t **old_models = NULL;
    size_t n_old = 0;
    if (worker) {
        //  Re-registration: the worker lost its state, so the jobs it held
        //  are gone with it; they go back to the queues while the worker
        //  still serves their models.
        worker_requeue_jobs (self, worker, failed);
        old_models = worker_unlink_models (worker, &n_old);
    } else {
        worker = calloc (1, sizeof *worker);
        if (!worker)
            return NULL;
        snprintf (worker->key, sizeof worker->key, "%s", key);
        worker->jobs = zlistx_new ();
        if (!worker->jobs) {
            free (worker);
            return NULL;
        }
        zhashx_insert (self->workers, worker->key, worker);
    }
    zframe_destroy (&worker->identity);
    worker->identity = *identity_p;
    *identity_p = NULL;
    worker->credit = ready->credit ? ready->credit : 1;
    worker->pid = ready->pid;
    snprintf (worker->host, sizeof worker->host, "%s", ready->host);
    worker->expires_ms = expires_ms;
    worker->models = calloc (ready->n_models ? ready->n_models : 1, sizeof (broker_model_t *));
    if (!worker->models)
        goto err;
    for (size_t i = 0; i < ready->n_models; i++) {
        broker_model_t *model = model_require (self, ready->models[i].name);
        if (!model)
            goto err;
        bool dup = false;
        for (size_t j = 0; j < worker->n_models; j++)
            dup |= worker->models[j] == model;
        if (dup)
            continue;
        snprintf (model->version, sizeof model->version, "%s",
                  ready->models[i].version[0] ? ready->models[i].version : "1");
        model->width = ready->models[i].width;
        zlistx_add_end (model->workers, worker);
        worker->models[worker->n_models++] = model;
    }
    for (size_t i = 0; i < n_old; i++)
        fail_orphaned_queue (old_models[i], failed);
    free (old_models);
    return worker;
err:
    for (size_t i = 0; i < n_old; i++)
        fail_orphaned_queue (old_models[i], failed);
    free (old_models);
    dispatch_worker_remove (self, worker, failed);
    return NULL;
}

void dispatch_worker_remove (dispatch_t *self, broker_worker_t *worker, zlistx_t *failed)
{
    //  Requeue while the worker is unlinked, so that jobs of models it alone
    //  served fail rather than wait for a worker that will not come.
    size_t n_models;
    broker_model_t **models = worker_unlink_models (worker, &n_models);
    worker_requeue_jobs (self, worker, failed);
    for (size_t i = 0; i < n_models; i++)
        fail_orphaned_queue (models[i], failed);
    free (models);
    zhashx_delete (self->workers, worker->key);
}

void dispatch_worker_drain (dispatch_t *self, broker_worker_t *worker, zlistx_t *failed)
{
    (void)self;
    size_t n_models;
    broker_model_t **models = worker_unlink_models (worker, &n_models);
    for (size_t i = 0; i < n_models; i++)
        fail_orphaned_queue (models[i], failed);
    free (models);
    worker->draining = true;
}

amaas_code_t dispatch_submit (dispatch_t *self, broker_job_t *job, const char *version)
{
    broker_model_t *model = zhashx_lookup (self->models, job->model);
    if (!model || zlistx_size (model->workers) == 0) {
        snprintf (job->fail_message, sizeof job->fail_message,
                  "no worker serves model '%s' (see 'amaas models')", job->model);
        return job->fail_code = AMAAS_NOT_FOUND;
    }
    if (version && *version && strcmp (version, model->version) != 0) {
        snprintf (job->fail_message, sizeof job->fail_message,
                  "model '%s' is served in version '%s', not '%s'", job->model, model->version,
                  version);
        return job->fail_code = AMAAS_NOT_FOUND;
    }
    if (model->queued >= self->max_queue) {
        snprintf (job->fail_message, sizeof job->fail_message,
                  "queue of model '%s' is full (%zu jobs waiting): retry later", job->model,
                  model->queued);
        return job->fail_code = AMAAS_RESOURCE_EXHAUSTED;
    }
    if (queue_push (model, job, false)) {
        snprintf (job->fail_message, sizeof job->fail_message, "broker out of memory");
        return job->fail_code = AMAAS_INTERNAL;
    }
    return AMAAS_OK;
}

//  Least-loaded worker of the model with free credit, or NULL.
static broker_worker_t *pick_worker (broker_model_t *model)
{
    broker_worker_t *best = NULL;
    for (broker_worker_t *w = zlistx_first (model->workers); w; w = zlistx_next (model->workers)) {
        size_t held = zlistx_size (w->jobs);
        if (held >= w->credit)
            continue;
        if (!best || held < zlistx_size (best->jobs) ||
            (held == zlistx_size (best->jobs) && w->last_given < best->last_given))
            best = w;
    }
    return best;
}

static bool expired (const broker_job_t *job, uint64_t now_us)
{
    return job->deadline_us && now_us >= job->deadline_us;
}

static void fail_expired (broker_job_t *job, uint64_t now_us, zlistx_t *failed)
{
    fail_job (job, AMAAS_DEADLINE_EXCEEDED, failed,
              "deadline passed after %" PRIu64 " ms in the queue of model '%.128s'; not computed",
              (now_us - job->received_us) / 1000, job->model);
}

size_t dispatch_pump (dispatch_t *self, dispatch_send_fn *send, void *arg, uint64_t now_us,
                      zlistx_t *failed)
{
    size_t sent = 0;
    for (broker_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models)) {
        broker_job_t *job;
        while ((job = queue_head (model))) {
            if (expired (job, now_us)) {
                queue_remove (model, job);
                fail_expired (job, now_us, failed);
                continue;
            }
            broker_worker_t *worker = pick_worker (model);
            if (!worker)
                break;
            if (send (job, worker, arg))
                break;
            queue_take (model, job, true); //  the next job comes from the next lane
            job->worker = worker;
            job->dispatched_us = now_us;
            worker->last_given = ++self->next_given;
            *job_handle (job) = zlistx_add_end (worker->jobs, job);
            zhashx_insert (self->held, &job->token, job);
            sent++;
        }
    }
    return sent;
}

broker_job_t *dispatch_complete (dispatch_t *self, broker_worker_t *worker, uint64_t token)
{
    broker_job_t *job = zhashx_lookup (self->held, &token);
    if (!job || job->worker != worker)
        return NULL;
    zlistx_detach (worker->jobs, *job_handle (job));
    zhashx_delete (self->held, &token);
    job->worker = NULL;
    worker->done++;
    return job;
}

size_t dispatch_purge (dispatch_t *self, int64_t now_ms, zlistx_t *failed)
{
    zlistx_t *dead = zlistx_new ();
    for (broker_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers))
        if (w->expires_ms < now_ms)
            zlistx_add_end (dead, w);
    size_t count = zlistx_size (dead);
    for (broker_worker_t *w = zlistx_first (dead); w; w = zlistx_next (dead))
        dispatch_worker_remove (self, w, failed);
    zlistx_destroy (&dead);
    return count;
}

void dispatch_fail_all (dispatch_t *self, amaas_code_t code, const char *message, zlistx_t *failed)
{
    for (broker_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models))
        queue_fail_all (model, code, failed, message);
}

size_t dispatch_expire (dispatch_t *self, uint64_t now_us, zlistx_t *failed)
{
    size_t count = 0;
    for (broker_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models))
        for (int p = 0; p < CODEC_PRIORITIES; p++) {
            //  Collect first: taking jobs out may delete lanes
            zlistx_t *late = zlistx_new ();
            for (lane_t *lane = zlistx_first (model->lanes[p]); lane;
                 lane = zlistx_next (model->lanes[p]))
                for (broker_job_t *job = zlistx_first (lane->jobs); job;
                     job = zlistx_next (lane->jobs))
                    if (expired (job, now_us))
                        zlistx_add_end (late, job);
            for (broker_job_t *job = zlistx_first (late); job; job = zlistx_next (late)) {
                queue_remove (model, job);
                fail_expired (job, now_us, failed);
                count++;
            }
            zlistx_destroy (&late);
        }
    return count;
}

void dispatch_shutdown (dispatch_t *self, zlistx_t *failed)
{
    for (broker_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers)) {
        broker_job_t *job;
        while ((job = zlistx_detach (w->jobs, NULL))) {
            zhashx_delete (self->held, &job->token);
            fail_job (job, AMAAS_UNAVAILABLE, failed,
                      "the broker shut down before the job completed: retry");
        }
    }
    dispatch_fail_all (self, AMAAS_UNAVAILABLE,
                       "the broker shut down before the job was served: retry", failed);
    for (broker_model_t *m = zhashx_first (self->models); m; m = zhashx_next (self->models))
        zlistx_purge (m->workers);
    zhashx_purge (self->workers);
}

broker_model_t *dispatch_model_first (dispatch_t *self)
{
    return zhashx_first (self->models);
}

broker_model_t *dispatch_model_next (dispatch_t *self)
{
    return zhashx_next (self->models);
}

broker_worker_t *dispatch_worker_first (dispatch_t *self)
{
    return zhashx_first (self->workers);
}

broker_worker_t *dispatch_worker_next (dispatch_t *self)
{
    return zhashx_next (self->workers);
}

static int compare_models (const void *a, const void *b)
{
    return strcmp (((const codec_model_t *)a)->name, ((const codec_model_t *)b)->name);
}

int dispatch_models (dispatch_t *self, codec_header_t *header)
{
    size_t n = 0;
    codec_model_t *list = calloc (zhashx_size (self->models) + 1, sizeof *list);
    if (!list)
        return -1;
    for (broker_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models)) {
        if (zlistx_size (model->workers) == 0)
            continue;
        snprintf (list[n].name, sizeof list[n].name, "%s", model->name);
        snprintf (list[n].version, sizeof list[n].version, "%s", model->version);
        list[n].workers = (uint32_t)zlistx_size (model->workers);
        list[n].width = model->width;
        n++;
    }
    qsort (list, n, sizeof *list, compare_models);
    free (header->models);
    header->models = list;
    header->n_models = n;
    header->fields |= HDR_MODELS;
    return 0;
}

size_t dispatch_worker_count (dispatch_t *self)
{
    return zhashx_size (self->workers);
}

size_t dispatch_queued (dispatch_t *self, const char *name)
{
    broker_model_t *model = zhashx_lookup (self->models, name);
    return model ? model->queued : 0;
}

size_t dispatch_queued_total (dispatch_t *self)
{
    size_t total = 0;
    for (broker_model_t *m = zhashx_first (self->models); m; m = zhashx_next (self->models))
        total += m->queued;
    return total;
}

size_t dispatch_in_flight (dispatch_t *self)
{
    return zhashx_size (self->held);
}
