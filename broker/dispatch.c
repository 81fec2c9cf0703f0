/*  dispatch.c - the broker's jobs, per-model queues and worker registry.

    Tables: models by name, workers by identity key, and a slot table that
    finds a held job from its token (the token carries its slot).  A queued
    job sits in its client's lane of its model; a held job in its worker's
    list.  Both lists are intrusive (the link is in the job), jobs come from
    a pool and lanes stay allocated while their client is active, so that in
    the steady state queueing, dispatching and completing a job allocate
    nothing.  Workers are found for a model by walking the model's worker
    list, which is short (the workers that serve one model).
*/
#include "dispatch.h"

#include "table.h"

#include <stddef.h>
#include <string.h>

#define SLOT_BITS 24                //  a token is (sequence << SLOT_BITS) | slot
#define SLOTS_MAX (1u << SLOT_BITS) //  jobs alive at once, at most
#define SPARE_MAX 1024              //  free jobs kept for reuse
#define LANE_IDLE_US 1000000        //  an empty lane is freed after this long

typedef struct job_node_t job_node_t;

//  A lane: the jobs of one client for one model and priority, FIFO.  The
//  lanes of a priority that have jobs take turns, so that a client with
//  many jobs waiting cannot make another wait behind all of them.  An empty
//  lane leaves the turn but stays in the model's table a while, so that a
//  client with one job at a time does not create a lane per job.
typedef struct {
    dispatch_link_t turn;    //  in the model's turns while it has jobs
    dispatch_list_t jobs;    //  its jobs, through job_node_t.link
    uint32_t priority;       //  its priority
    uint64_t empty_since_us; //  when it was emptied
    char key[TABLE_KEY_MAX]; //  priority and client identity, in hex
} lane_t;

//  A job and what only the dispatcher needs
struct job_node_t {
    broker_job_t job;
    dispatch_link_t link; //  in a lane or a worker's list
    lane_t *lane;         //  the lane holding it while queued
    dispatch_t *owner;    //  the dispatcher whose pool it returns to
    uint32_t slot;        //  its index in the slot table
    job_node_t *spare;    //  next free job, while in the pool
};

struct dispatch_t {
    zhashx_t *models;     //  broker_model_t * by name
    zhashx_t *workers;    //  broker_worker_t * by key
    job_node_t **slots;   //  live jobs by slot; NULL where free
    uint32_t *free_slots; //  stack of free slot indices
    size_t n_free;        //  in that stack
    size_t n_slots;       //  slots ever used
    size_t slots_size;    //  allocated entries of slots and free_slots
    job_node_t *spares;   //  free jobs
    size_t n_spares;      //  how many
    size_t held;          //  jobs held by workers
    size_t max_queue;     //  bound of each model's queue
    uint32_t max_lost;    //  a job lost with this many workers fails
    uint64_t next_seq;    //  sequence number of the next job's token
    uint64_t next_given;  //  dispatch sequence number
    uint64_t lanes_swept; //  when empty lanes were last freed
};

//  --------------------------------------------------------------------------
//  Intrusive lists

static void list_init (dispatch_list_t *list)
{
    list->head.prev = list->head.next = &list->head;
    list->size = 0;
}

static bool list_empty (const dispatch_list_t *list)
{
    return list->size == 0;
}

static void link_insert (dispatch_list_t *list, dispatch_link_t *before, dispatch_link_t *link)
{
    link->next = before;
    link->prev = before->prev;
    before->prev->next = link;
    before->prev = link;
    list->size++;
}

static void list_push_back (dispatch_list_t *list, dispatch_link_t *link)
{
    link_insert (list, &list->head, link);
}

static void list_push_front (dispatch_list_t *list, dispatch_link_t *link)
{
    link_insert (list, list->head.next, link);
}

static void list_remove (dispatch_list_t *list, dispatch_link_t *link)
{
    link->prev->next = link->next;
    link->next->prev = link->prev;
    link->prev = link->next = NULL;
    list->size--;
}

static dispatch_link_t *list_first (dispatch_list_t *list)
{
    return list->size ? list->head.next : NULL;
}

static dispatch_link_t *list_last (dispatch_list_t *list)
{
    return list->size ? list->head.prev : NULL;
}

static dispatch_link_t *list_after (dispatch_list_t *list, dispatch_link_t *link)
{
    return link->next == &list->head ? NULL : link->next;
}

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof (type, member)))

static job_node_t *node_of (broker_job_t *job)
{
    return (job_node_t *)job;
}

static broker_job_t *job_at (dispatch_link_t *link)
{
    return link ? &CONTAINER_OF (link, job_node_t, link)->job : NULL;
}

static lane_t *lane_at (dispatch_link_t *link)
{
    return link ? CONTAINER_OF (link, lane_t, turn) : NULL;
}

//  --------------------------------------------------------------------------

static void model_destroy (broker_model_t **self_p)
{
    broker_model_t *self = *self_p;
    if (!self)
        return;
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

//  Frees a lane and the jobs still in it.
static void lane_destructor (void **item)
{
    lane_t *lane = *item;
    if (!lane)
        return;
    broker_job_t *job;
    while ((job = job_at (list_first (&lane->jobs)))) {
        list_remove (&lane->jobs, &node_of (job)->link);
        dispatch_job_destroy (&job);
    }
    free (lane);
    *item = NULL;
}

static void worker_destroy (broker_worker_t **self_p)
{
    broker_worker_t *self = *self_p;
    if (!self)
        return;
    broker_job_t *job;
    while ((job = job_at (list_first (&self->jobs)))) {
        list_remove (&self->jobs, &node_of (job)->link);
        dispatch_job_destroy (&job);
    }
    zframe_destroy (&self->identity);
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
    if (!self->models || !self->workers)
        goto err;
    zhashx_set_destructor (self->models, model_destructor);
    zhashx_set_destructor (self->workers, worker_destructor);
    self->max_queue = max_queue;
    self->max_lost = max_lost ? max_lost : 1;
    self->next_seq = 1;
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
    //  Held jobs go with their workers, queued ones with their lanes; both
    //  return to the pool, which goes last
    zhashx_destroy (&self->workers);
    zhashx_destroy (&self->models);
    while (self->spares) {
        job_node_t *node = self->spares;
        self->spares = node->spare;
        free (node);
    }
    free (self->slots);
    free (self->free_slots);
    free (self);
    *self_p = NULL;
}

//  A free slot for a new job, or -1 when none can be had.
static int64_t slot_take (dispatch_t *self)
{
    if (self->n_free)
        return self->free_slots[--self->n_free];
    if (self->n_slots == self->slots_size) {
        size_t size = self->slots_size ? 2 * self->slots_size : 256;
        if (size > SLOTS_MAX)
            return -1;
        job_node_t **slots = realloc (self->slots, size * sizeof *slots);
        if (!slots)
            return -1;
        self->slots = slots;
        uint32_t *free_slots = realloc (self->free_slots, size * sizeof *free_slots);
        if (!free_slots)
            return -1;
        self->free_slots = free_slots;
        self->slots_size = size;
    }
    return (int64_t)self->n_slots++;
}

broker_job_t *dispatch_job_new (dispatch_t *self, uint64_t id, const codec_header_t *request,
                                const void *client, size_t client_size, zmq_msg_t *payload,
                                uint64_t now_us)
{
    int64_t slot = slot_take (self);
    if (slot < 0)
        return NULL;
    job_node_t *node = self->spares;
    if (node) {
        self->spares = node->spare;
        self->n_spares--;
    } else if (!(node = malloc (sizeof *node))) {
        self->free_slots[self->n_free++] = (uint32_t)slot;
        return NULL;
    }
    //  Clear what a job reads before it writes; the long strings and the
    //  fail message are written when used
    broker_job_t *job = &node->job;
    job->n_outputs = 0;
    job->outputs = NULL;
    if (request->n_outputs) {
        job->outputs = malloc (request->n_outputs * CODEC_NAME_MAX);
        if (!job->outputs) {
            node->spare = self->spares;
            self->spares = node;
            self->n_spares++;
            self->free_slots[self->n_free++] = (uint32_t)slot;
            return NULL;
        }
        memcpy (job->outputs, request->outputs, request->n_outputs * CODEC_NAME_MAX);
        job->n_outputs = request->n_outputs;
    }
    node->link.prev = node->link.next = NULL;
    node->lane = NULL;
    node->owner = self;
    node->slot = (uint32_t)slot;
    self->slots[slot] = node;
    job->token = (self->next_seq++ << SLOT_BITS) | (uint64_t)slot;
    job->id = id;
    job->client_size = client && client_size <= sizeof job->client ? client_size : 0;
    if (job->client_size)
        memcpy (job->client, client, job->client_size);
    zmq_msg_init (&job->payload);
    job->has_payload = payload != NULL;
    if (payload)
        zmq_msg_move (&job->payload, payload);
    job->owner = NULL;
    snprintf (job->model, sizeof job->model, "%s", request->model);
    job->received_us = now_us;
    job->dispatched_us = 0;
    job->lost = 0;
    job->priority = 0;
    if (request->fields & HDR_PRIORITY)
        job->priority = request->priority < CODEC_PRIORITIES ? request->priority : 0;
    job->deadline_us = 0;
    if (request->fields & HDR_DEADLINE_MS)
        job->deadline_us = now_us + (uint64_t)request->deadline_ms * 1000u;
    job->worker = NULL;
    job->fail_code = AMAAS_OK;
    job->fail_message[0] = 0;
    return job;
}

void dispatch_job_destroy (broker_job_t **job_p)
{
    broker_job_t *job = *job_p;
    if (!job)
        return;
    job_node_t *node = node_of (job);
    dispatch_t *self = node->owner;
    zmq_msg_close (&job->payload);
    free (job->outputs);
    job->outputs = NULL;
    self->slots[node->slot] = NULL;
    self->free_slots[self->n_free++] = node->slot;
    if (self->n_spares < SPARE_MAX) {
        node->spare = self->spares;
        self->spares = node;
        self->n_spares++;
    } else
        free (node);
    *job_p = NULL;
}

broker_job_t *dispatch_held_first (broker_worker_t *worker)
{
    return job_at (list_first (&worker->jobs));
}

broker_job_t *dispatch_held_next (broker_worker_t *worker, broker_job_t *job)
{
    return job_at (list_after (&worker->jobs, &node_of (job)->link));
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
    zlistx_add_end (failed, job);
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
    if (model->lane_of)
        zhashx_set_destructor (model->lane_of, lane_destructor);
    for (int p = 0; p < CODEC_PRIORITIES; p++)
        list_init (&model->turns[p]);
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
    table_identity_key (key, (char)('0' + job->priority), job->client, job->client_size);
}

//  Queues a job at the end of its client's lane, or, for a job coming back
//  from a lost worker, at the front of its lane with the lane first in turn.
//  Returns 0, -1 on out-of-memory.
static int queue_push (broker_model_t *model, broker_job_t *job, bool front)
{
    char key[TABLE_KEY_MAX];
    lane_key (job, key);
    dispatch_list_t *turns = &model->turns[job->priority];
    lane_t *lane = zhashx_lookup (model->lane_of, key);
    if (!lane) {
        lane = calloc (1, sizeof *lane);
        if (!lane)
            return -1;
        list_init (&lane->jobs);
        memcpy (lane->key, key, sizeof key);
        lane->priority = job->priority;
        zhashx_insert (model->lane_of, lane->key, lane);
    }
    if (list_empty (&lane->jobs)) {
        //  Its turn comes after the lanes waiting, or first for a requeue
        if (front)
            list_push_front (turns, &lane->turn);
        else
            list_push_back (turns, &lane->turn);
    } else if (front) {
        list_remove (turns, &lane->turn);
        list_push_front (turns, &lane->turn);
    }
    job_node_t *node = node_of (job);
    if (front)
        list_push_front (&lane->jobs, &node->link);
    else
        list_push_back (&lane->jobs, &node->link);
    node->lane = lane;
    model->queued++;
    return 0;
}

//  The job that goes next: of the most urgent priority, the oldest job of
//  the lane whose turn it is; NULL if none waits.
static broker_job_t *queue_head (broker_model_t *model)
{
    for (int p = CODEC_PRIORITIES - 1; p >= 0; p--) {
        lane_t *lane = lane_at (list_first (&model->turns[p]));
        if (lane)
            return job_at (list_first (&lane->jobs));
    }
    return NULL;
}

//  Takes a queued job out of its lane; a lane left empty leaves the turn
//  (it is freed later, if its client sends nothing more).  With rotate, the
//  lane goes to the end of the turn.
static void queue_take (broker_model_t *model, broker_job_t *job, bool rotate, uint64_t now_us)
{
    job_node_t *node = node_of (job);
    lane_t *lane = node->lane;
    list_remove (&lane->jobs, &node->link);
    node->lane = NULL;
    model->queued--;
    dispatch_list_t *turns = &model->turns[lane->priority];
    if (list_empty (&lane->jobs)) {
        list_remove (turns, &lane->turn);
        lane->empty_since_us = now_us;
    } else if (rotate) {
        list_remove (turns, &lane->turn);
        list_push_back (turns, &lane->turn);
    }
}

//  Takes a queued job out of its lane, the turn unchanged.
static void queue_remove (broker_model_t *model, broker_job_t *job, uint64_t now_us)
{
    queue_take (model, job, false, now_us);
}

//  Fails every queued job of a model with `code`.
static void queue_fail_all (broker_model_t *model, amaas_code_t code, zlistx_t *failed,
                            const char *message)
{
    broker_job_t *job;
    while ((job = queue_head (model))) {
        queue_remove (model, job, 0);
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
    broker_job_t *job;
    while ((job = job_at (list_last (&worker->jobs)))) {
        list_remove (&worker->jobs, &node_of (job)->link);
        self->held--;
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
        list_init (&worker->jobs);
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
        size_t held = w->jobs.size;
        if (held >= w->credit)
            continue;
        if (!best || held < best->jobs.size ||
            (held == best->jobs.size && w->last_given < best->last_given))
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
                queue_remove (model, job, now_us);
                fail_expired (job, now_us, failed);
                continue;
            }
            broker_worker_t *worker = pick_worker (model);
            if (!worker)
                break;
            if (send (job, worker, arg))
                break;
            queue_take (model, job, true, now_us); //  the next job comes from the next lane
            job->worker = worker;
            job->dispatched_us = now_us;
            worker->last_given = ++self->next_given;
            list_push_back (&worker->jobs, &node_of (job)->link);
            self->held++;
            sent++;
        }
    }
    return sent;
}

broker_job_t *dispatch_complete (dispatch_t *self, broker_worker_t *worker, uint64_t token)
{
    uint64_t slot = token & (SLOTS_MAX - 1);
    job_node_t *node = slot < self->n_slots ? self->slots[slot] : NULL;
    broker_job_t *job = node ? &node->job : NULL;
    if (!job || job->token != token || job->worker != worker)
        return NULL;
    list_remove (&worker->jobs, &node->link);
    self->held--;
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

//  Whether a lane has been empty for LANE_IDLE_US (arg: now, in µs).
static bool lane_idle (const void *item, const void *arg)
{
    const lane_t *lane = item;
    return lane->jobs.size == 0 && *(const uint64_t *)arg - lane->empty_since_us >= LANE_IDLE_US;
}

size_t dispatch_expire (dispatch_t *self, uint64_t now_us, zlistx_t *failed)
{
    size_t count = 0;
    bool sweep = now_us - self->lanes_swept >= LANE_IDLE_US;
    if (sweep)
        self->lanes_swept = now_us;
    for (broker_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models)) {
        for (int p = 0; p < CODEC_PRIORITIES; p++) {
            //  Each lane's jobs, oldest first; taking the last job out of a
            //  lane takes the lane out of the turn, so step first
            dispatch_list_t *turns = &model->turns[p];
            dispatch_link_t *lane_link = list_first (turns);
            while (lane_link) {
                lane_t *lane = lane_at (lane_link);
                lane_link = list_after (turns, lane_link);
                dispatch_link_t *link = list_first (&lane->jobs);
                while (link) {
                    broker_job_t *job = job_at (link);
                    link = list_after (&lane->jobs, link);
                    if (expired (job, now_us)) {
                        queue_remove (model, job, now_us);
                        fail_expired (job, now_us, failed);
                        count++;
                    }
                }
            }
        }
        if (sweep)
            table_delete_if (model->lane_of, lane_idle, &now_us);
    }
    return count;
}

void dispatch_shutdown (dispatch_t *self, zlistx_t *failed)
{
    for (broker_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers)) {
        broker_job_t *job;
        while ((job = job_at (list_first (&w->jobs)))) {
            list_remove (&w->jobs, &node_of (job)->link);
            self->held--;
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
    return self->held;
}
