/*  dispatch.c - the broker's jobs, per-model queues and worker registry.

    Tables: model versions by name and version, the highest version of each
    name (for jobs that ask for none), workers by identity key, a slot table
    that finds a held job from its token (the token carries its slot), and
    an index of live jobs by client and id, which is how a job sent again
    (after the client lost its connection, or the broker its state) finds
    the job it already is, and how a cancelled job is found.  A model
    version is forgotten when no worker serves it and no job waits for it,
    so that made-up versions cannot grow the tables.  A queued
    job sits in its client's lane of its model; a held job in its worker's
    list.  Both lists are intrusive (the link is in the job), jobs come from
    a pool and lanes stay allocated while their client is active, so that in
    the steady state queueing, dispatching and completing a job allocate
    nothing.  Workers are found for a model by walking the model's worker
    list, which is short (the workers that serve one model).
*/
#define _GNU_SOURCE //  strverscmp
#include "dispatch.h"

#include "idmap.h"
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
    bool indexed;         //  in the dispatcher's index by client and id
    job_node_t *spare;    //  next free job, while in the pool
};

struct dispatch_t {
    zhashx_t *models;     //  broker_model_t * by name and version (model_key)
    zhashx_t *latest;     //  the highest version served, broker_model_t * by name
    idmap_t *index;       //  live jobs by client and id (job_hash)
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
    self->latest = zhashx_new ();
    self->workers = zhashx_new ();
    self->index = idmap_new ();
    if (!self->models || !self->latest || !self->workers || !self->index)
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
    zhashx_destroy (&self->latest);
    zhashx_destroy (&self->models);
    idmap_destroy (&self->index);
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

//  --------------------------------------------------------------------------
//  The index of live jobs by client and id

//  What a job is found by: the client's session (and key) when it sent
//  one, else its connection's record
typedef struct {
    uint64_t session;
    uint64_t principal;
    const void *owner;
    uint64_t id;
} job_key_t;

static uint64_t job_hash (uint64_t session, uint64_t principal, const void *owner, uint64_t id)
{
    return idmap_hash_pair (session ? session ^ principal : (uint64_t)(uintptr_t)owner, id);
}

static bool job_is (const void *item, const void *key_arg)
{
    const broker_job_t *job = item;
    const job_key_t *key = key_arg;
    return job->id == key->id && job->session == key->session && job->principal == key->principal &&
           (key->session || job->owner == key->owner);
}

broker_job_t *dispatch_find (dispatch_t *self, uint64_t session, uint64_t principal,
                             const void *owner, uint64_t id)
{
    job_key_t key = {session, principal, owner, id};
    return idmap_find (self->index, job_hash (session, principal, owner, id), job_is, &key);
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
    node->indexed = false;
    self->slots[slot] = node;
    job->token = (self->next_seq++ << SLOT_BITS) | (uint64_t)slot;
    job->id = id;
    job->session = (request->fields & HDR_SESSION) ? request->session : 0;
    job->principal = 0;
    job->version[0] = 0;
    job->pinned = false;
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
    if (node->indexed)
        idmap_delete (self->index, job_hash (job->session, job->principal, job->owner, job->id),
                      job);
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

//  The table key of a model version: "LENGTH:NAMEVERSION", so that no two
//  pairs of strings make the same key.
static void model_key (char *key, size_t size, const char *name, const char *version)
{
    snprintf (key, size, "%zu:%s%s", strlen (name), name, version);
}

broker_model_t *dispatch_model_find (dispatch_t *self, const char *name, const char *version)
{
    char key[DISPATCH_MODEL_KEY_MAX];
    model_key (key, sizeof key, name, version);
    return zhashx_lookup (self->models, key);
}

//  Versions in order: numbers inside as numbers ("2" < "10", "1.9" < "1.10").
static int version_compare (const char *a, const char *b)
{
    return strverscmp (a, b);
}

//  Sets the highest version of `name` that a worker serves as its latest,
//  or forgets the name when none is served.  Runs when the workers of a
//  version change, not per job.
static void latest_update (dispatch_t *self, const char *name)
{
    broker_model_t *best = NULL;
    for (broker_model_t *m = zhashx_first (self->models); m; m = zhashx_next (self->models))
        if (zlistx_size (m->workers) && streq (m->name, name) &&
            (!best || version_compare (m->version, best->version) > 0))
            best = m;
    if (best)
        zhashx_update (self->latest, name, best);
    else
        zhashx_delete (self->latest, name);
}

//  Forgets a model version that no worker serves and no job waits for.
static void model_release (dispatch_t *self, broker_model_t *model)
{
    if (zlistx_size (model->workers) || model->queued)
        return;
    char name[CODEC_NAME_MAX];
    snprintf (name, sizeof name, "%s", model->name);
    zhashx_delete (self->models, model->key);
    latest_update (self, name);
}

static broker_model_t *model_require (dispatch_t *self, const char *name, const char *version)
{
    broker_model_t *model = dispatch_model_find (self, name, version);
    if (model)
        return model;
    model = calloc (1, sizeof *model);
    if (!model)
        return NULL;
    snprintf (model->name, sizeof model->name, "%s", name);
    snprintf (model->version, sizeof model->version, "%s", version);
    model_key (model->key, sizeof model->key, name, version);
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
    zhashx_insert (self->models, model->key, model);
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

//  Puts a job that lost its version (no worker serves it any more) in the
//  queue of the highest version served, at the front or the back, when the
//  client did not ask for a version; else, or when no version is served,
//  fails it UNAVAILABLE with `why`.
static void requeue_elsewhere (dispatch_t *self, broker_job_t *job, bool front, zlistx_t *failed,
                               const char *why)
{
    broker_model_t *latest = job->pinned ? NULL : zhashx_lookup (self->latest, job->model);
    if (latest) {
        snprintf (job->version, sizeof job->version, "%s", latest->version);
        if (queue_push (latest, job, front) == 0)
            return;
    }
    if (job->pinned)
        fail_job (job, AMAAS_UNAVAILABLE, failed,
                  "%s, and no other worker serves model '%.128s' version '%.32s': retry later", why,
                  job->model, job->version);
    else
        fail_job (job, AMAAS_UNAVAILABLE, failed,
                  "%s, and no other worker serves model '%.128s': retry later", why, job->model);
}

//  A version that no worker serves any more: its queued jobs go to another
//  version or fail (requeue_elsewhere), and it is forgotten.
static void orphan_version (dispatch_t *self, broker_model_t *model, zlistx_t *failed)
{
    if (zlistx_size (model->workers))
        return;
    broker_job_t *job;
    while ((job = queue_head (model))) {
        queue_remove (model, job, 0);
        requeue_elsewhere (self, job, false, failed, "its version is no longer served");
    }
    model_release (self, model);
}

//  Detaches the worker from every model it serves, updates the latest
//  version of each name, and returns the list of those models (the caller
//  frees it) for orphan_version.
static broker_model_t **worker_unlink_models (dispatch_t *self, broker_worker_t *worker,
                                              size_t *n_models)
{
    broker_model_t **models = worker->models;
    *n_models = worker->n_models;
    for (size_t i = 0; i < worker->n_models; i++) {
        void *handle = zlistx_find (models[i]->workers, worker);
        if (handle)
            zlistx_detach (models[i]->workers, handle);
    }
    for (size_t i = 0; i < worker->n_models; i++)
        latest_update (self, models[i]->name);
    worker->models = NULL;
    worker->n_models = 0;
    return models;
}

//  Orphans (orphan_version) the models of a worker's list that no worker
//  serves any more, and frees the list.  The models of a list are distinct
//  (dispatch_worker_ready links each once), so freeing one leaves the
//  others valid.
static void orphan_versions (dispatch_t *self, broker_model_t **models, size_t n_models,
                             zlistx_t *failed)
{
    for (size_t i = 0; i < n_models; i++)
        orphan_version (self, models[i], failed);
    free (models);
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
        broker_model_t *model = dispatch_model_find (self, job->model, job->version);
        if (job->lost >= self->max_lost)
            fail_job (job, AMAAS_UNAVAILABLE, failed,
                      "job lost with %u workers that died or left while holding it; "
                      "not retried, it may be a poison job",
                      job->lost);
        else if (!model || zlistx_size (model->workers) == 0 || queue_push (model, job, true))
            requeue_elsewhere (self, job, true, failed, "the worker holding the job was lost");
    }
}

broker_worker_t *dispatch_worker_find (dispatch_t *self, const char *key)
{
    return zhashx_lookup (self->workers, key);
}

broker_worker_t *dispatch_worker_ready (dispatch_t *self, const char *key, zframe_t **identity_p,
                                        const codec_header_t *ready, int64_t expires_ms,
                                        zlistx_t *failed, size_t *refused, char *warning,
                                        size_t warning_size)
{
    *refused = 0;
    if (warning_size)
        warning[0] = 0;
    broker_worker_t *worker = zhashx_lookup (self->workers, key);
    broker_model_t **old_models = NULL;
    size_t n_old = 0;
    if (worker) {
        //  An update (the worker reloaded its models): the jobs it holds
        //  stay with it, and it answers them
        old_models = worker_unlink_models (self, worker, &n_old);
        free (worker->models);
        worker->models = NULL;
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
    worker->model_errors = ready->model_errors;
    snprintf (worker->host, sizeof worker->host, "%s", ready->host);
    worker->expires_ms = expires_ms;
    //  A draining worker takes no new job: it keeps serving no model
    size_t n_models = worker->draining ? 0 : ready->n_models;
    worker->models = calloc (n_models ? n_models : 1, sizeof (broker_model_t *));
    if (!worker->models)
        goto err;
    for (size_t i = 0; i < n_models; i++) {
        const codec_model_t *announced = &ready->models[i];
        const char *version = announced->version[0] ? announced->version : "1";
        broker_model_t *model = model_require (self, announced->name, version);
        if (!model)
            goto err;
        bool dup = false;
        for (size_t j = 0; j < worker->n_models; j++)
            dup |= worker->models[j] == model;
        if (dup)
            continue;
        if (zlistx_size (model->workers) && model->width && announced->width &&
            model->width != announced->width) {
            if (*refused == 0 && warning_size)
                snprintf (warning, warning_size,
                          "model '%.128s' version '%.32s' announced with input width %u, "
                          "but other workers serve it with width %u: not served by this worker",
                          model->name, version, announced->width, model->width);
            (*refused)++;
            continue;
        }
        if (zlistx_size (model->workers) == 0) {
            model->width = announced->width;
            model->mapped = announced->mapped;
        }
        zlistx_add_end (model->workers, worker);
        worker->models[worker->n_models++] = model;
    }
    for (size_t i = 0; i < worker->n_models; i++)
        latest_update (self, worker->models[i]->name);
    //  Versions the worker no longer serves go if nobody else serves them
    orphan_versions (self, old_models, n_old, failed);
    return worker;
err:
    orphan_versions (self, old_models, n_old, failed);
    dispatch_worker_remove (self, worker, failed);
    return NULL;
}

void dispatch_worker_remove (dispatch_t *self, broker_worker_t *worker, zlistx_t *failed)
{
    //  Requeue while the worker is unlinked, so that jobs of models it alone
    //  served go to another version or fail rather than wait for a worker
    //  that will not come.
    size_t n_models;
    broker_model_t **models = worker_unlink_models (self, worker, &n_models);
    worker_requeue_jobs (self, worker, failed);
    orphan_versions (self, models, n_models, failed);
    zhashx_delete (self->workers, worker->key);
}

void dispatch_worker_drain (dispatch_t *self, broker_worker_t *worker, zlistx_t *failed)
{
    size_t n_models;
    broker_model_t **models = worker_unlink_models (self, worker, &n_models);
    orphan_versions (self, models, n_models, failed);
    worker->draining = true;
}

amaas_code_t dispatch_submit (dispatch_t *self, broker_job_t *job, const char *version)
{
    broker_model_t *model;
    if (version && *version) {
        model = dispatch_model_find (self, job->model, version);
        if (!model || zlistx_size (model->workers) == 0) {
            broker_model_t *latest = zhashx_lookup (self->latest, job->model);
            if (latest)
                snprintf (job->fail_message, sizeof job->fail_message,
                          "no worker serves model '%.64s' in version '%.32s' (the highest "
                          "served is '%.32s'; see 'amaas models')",
                          job->model, version, latest->version);
            else
                snprintf (job->fail_message, sizeof job->fail_message,
                          "no worker serves model '%s' (see 'amaas models')", job->model);
            return job->fail_code = AMAAS_NOT_FOUND;
        }
        job->pinned = true;
    } else if (!(model = zhashx_lookup (self->latest, job->model))) {
        snprintf (job->fail_message, sizeof job->fail_message,
                  "no worker serves model '%s' (see 'amaas models')", job->model);
        return job->fail_code = AMAAS_NOT_FOUND;
    }
    if (model->queued >= self->max_queue) {
        snprintf (job->fail_message, sizeof job->fail_message,
                  "queue of model '%s' is full (%zu jobs waiting): retry later", job->model,
                  model->queued);
        return job->fail_code = AMAAS_RESOURCE_EXHAUSTED;
    }
    snprintf (job->version, sizeof job->version, "%s", model->version);
    job_node_t *node = node_of (job);
    if (idmap_insert (self->index, job_hash (job->session, job->principal, job->owner, job->id),
                      job) ||
        queue_push (model, job, false)) {
        if (idmap_delete (self->index, job_hash (job->session, job->principal, job->owner, job->id),
                          job) == 0)
            node->indexed = false;
        snprintf (job->fail_message, sizeof job->fail_message, "broker out of memory");
        return job->fail_code = AMAAS_INTERNAL;
    }
    node->indexed = true;
    return AMAAS_OK;
}

bool dispatch_cancel (dispatch_t *self, broker_job_t *job)
{
    if (job->worker)
        return false;
    broker_model_t *model = dispatch_model_find (self, job->model, job->version);
    if (!model || !node_of (job)->lane)
        return false; //  not queued: cannot happen for a live job
    queue_remove (model, job, 0);
    model_release (self, model);
    return true;
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
    const codec_model_t *x = a, *y = b;
    int by_name = strcmp (x->name, y->name);
    return by_name ? by_name : version_compare (x->version, y->version);
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
        list[n].mapped = model->mapped;
        list[n].queued = (uint32_t)model->queued;
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
    size_t queued = 0;
    for (broker_model_t *m = zhashx_first (self->models); m; m = zhashx_next (self->models))
        if (streq (m->name, name))
            queued += m->queued;
    return queued;
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
