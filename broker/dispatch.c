/*  dispatch.c - the broker's jobs, per-model queues and worker registry.

    Tables: model versions by name and version, the highest version of each
    name (for jobs that ask for none), workers by identity key, a slot table
    that finds a held job from its token (the token carries its slot), and
    an index of live jobs by client and id, which is how a job sent again
    (after the client lost its connection, or the broker its state) finds
    the job it already is, and how a cancelled job is found.  A model
    version is forgotten when no worker serves it and no job waits for it,
    so that made-up versions cannot grow the tables.  A queued job sits in
    its client's lane of its model; a held job in its worker's list, a
    failed job in a dispatch_jobs_t.  These lists are intrusive (util/list.h:
    the link is in the job), jobs come from a pool and lanes stay allocated
    while their client is active, so that in the steady state queueing,
    dispatching and completing a job allocate nothing.  The workers of a
    model version sit in a binary min-heap ordered as dispatch picks them
    (free credit first, then fewest jobs held, then given a job longest
    ago, then linked to the model first), and each worker remembers its
    place in the heap of every model it serves: picking a worker is O(1),
    and a change of the jobs a worker holds moves it in each of its m
    models' heaps, O(m log n), so that dispatch costs the same with 2
    workers or thousands on one model.
*/
#define _GNU_SOURCE //  strverscmp
#include "dispatch.h"

#include "idmap.h"
#include "list.h"
#include "table.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#define SLOT_BITS 24                //  a token is (sequence << SLOT_BITS) | slot
#define SLOTS_MAX (1u << SLOT_BITS) //  jobs alive at once, at most
#define SPARE_MAX 1024              //  free jobs kept for reuse
#define LANE_IDLE_US 1000000        //  an empty lane is freed after this long

//  A client's job
struct dispatch_job_t {
    uint64_t token;                        //  broker's own id of the job, unique
    uint64_t id;                           //  client's job id
    uint64_t session;                      //  client's session, 0 if it sent none
    uint64_t principal;                    //  hash of the client's key; 0 without security
    uint8_t client[DISPATCH_IDENTITY_MAX]; //  client's ROUTER identity
    size_t client_size;                    //  its bytes; 0 if none
    zmq_msg_t payload;                     //  inputs, forwarded untouched (owned)
    bool has_payload;                      //  whether payload holds inputs
    void *owner;                           //  the caller's record of the client, or NULL
    char model[CODEC_NAME_MAX];            //  model name
    char version[CODEC_VERSION_MAX];       //  version queued for or sent to
    bool pinned;                           //  the client asked for that version
    size_t n_outputs;                      //  outputs asked for, 0 = all
    char (*outputs)[CODEC_NAME_MAX];       //  their names (owned; only when asked for)
    uint64_t received_us;                  //  when the broker received it
    uint64_t dispatched_us;                //  when it was last sent to a worker
    uint32_t lost;                         //  workers lost while holding it
    uint32_t priority;                     //  0 .. CODEC_PRIORITIES-1, higher first
    uint64_t deadline_us;                  //  answer DEADLINE_EXCEEDED after this; 0: none
    dispatch_worker_t *worker;             //  worker holding it, or NULL if queued
    amaas_code_t fail_code;                //  when failed: why
    char fail_message[CODEC_MESSAGE_MAX];
};

//  A worker in the heap of a model version it serves, with a copy of what
//  orders it, so that moving it reads the heap and not the workers
typedef struct {
    uint64_t load;             //  (held >= credit) << 63 | held: free credit first, then fewest
    uint64_t last_given;       //  the worker's last_given
    uint64_t linked;           //  when the worker was linked to the model: ties go to the first
    dispatch_worker_t *worker; //  the worker
    size_t slot;               //  the model's index in worker->models (and worker->heap_at)
} heap_item_t;

//  One version of a model: the workers that serve it and its queue.  It
//  exists while a worker serves it or jobs wait for it.
struct dispatch_model_t {
    char name[CODEC_NAME_MAX];        //  model name
    char version[CODEC_VERSION_MAX];  //  its version
    char key[DISPATCH_MODEL_KEY_MAX]; //  name and version, the table key
    uint32_t width;                   //  input width its first worker announced
    uint64_t mapped;                  //  bytes of its file a worker maps
    codec_model_meta_t meta;          //  the metadata its first worker announced
    list_t turns[CODEC_PRIORITIES];   //  per priority: the lanes with jobs, in turn
    zhashx_t *lane_of;                //  lanes by priority and client identity
    size_t queued;                    //  jobs in all its queues
    heap_item_t *heap;                //  the workers that serve it, as dispatch picks them
    size_t n_workers;                 //  how many
    size_t heap_size;                 //  allocated items of heap
};

//  A registered worker
struct dispatch_worker_t {
    char key[2 * 255 + 1];     //  hex of the ROUTER identity (at most 255 bytes)
    zframe_t *identity;        //  ROUTER identity (owned)
    uint32_t credit;           //  jobs it may hold
    uint32_t pid;              //  its process id
    char host[CODEC_HOST_MAX]; //  its host name
    list_t jobs;               //  jobs it holds, in the order given
    size_t n_models;           //  models it serves
    dispatch_model_t **models; //  them
    size_t *heap_at;           //  its place in the heap of each of them
    uint64_t done;             //  jobs it completed
    uint64_t last_given;       //  dispatch sequence number of its last job
    int64_t expires_ms;        //  declared dead after this time without a message
    int64_t seen_ms;           //  when its last message came
    uint32_t model_errors;     //  model files it failed to load, as it reported
    bool draining;             //  finishing its jobs, taking no new one
};

typedef struct job_node_t job_node_t;

//  A lane: the jobs of one client for one model and priority, FIFO.  The
//  lanes of a priority that have jobs take turns, so that a client with
//  many jobs waiting cannot make another wait behind all of them.  An empty
//  lane leaves the turn but stays in the model's table a while, so that a
//  client with one job at a time does not create a lane per job.
typedef struct {
    list_node_t turn;        //  in the model's turns while it has jobs
    list_t jobs;             //  its jobs, through job_node_t.link
    uint32_t priority;       //  its priority
    uint64_t empty_since_us; //  when it was emptied
    char key[TABLE_KEY_MAX]; //  priority and client identity, in hex
} lane_t;

//  A job and what only the dispatcher needs
struct job_node_t {
    dispatch_job_t job;
    list_node_t link;  //  in a lane or a worker's list
    lane_t *lane;      //  the lane holding it while queued
    dispatch_t *owner; //  the dispatcher whose pool it returns to
    uint32_t slot;     //  its index in the slot table
    bool indexed;      //  in the dispatcher's index by client and id
    job_node_t *spare; //  next free job, while in the pool
};

//  Jobs that failed, for the caller to answer, through job_node_t.link
struct dispatch_jobs_t {
    list_t jobs;
};

struct dispatch_t {
    zhashx_t *models;       //  dispatch_model_t * by name and version (s_model_key)
    zhashx_t *latest;       //  the highest version served, dispatch_model_t * by name
    idmap_t *index;         //  live jobs by client and id (s_job_hash)
    zhashx_t *workers;      //  dispatch_worker_t * by key
    job_node_t **slots;     //  live jobs by slot; NULL where free
    uint32_t *free_slots;   //  stack of free slot indices
    size_t n_free;          //  in that stack
    size_t n_slots;         //  slots ever used
    size_t slots_size;      //  allocated entries of slots and free_slots
    job_node_t *spares;     //  free jobs
    size_t n_spares;        //  how many
    size_t held;            //  jobs held by workers
    size_t max_queue;       //  bound of each model's queue
    uint32_t max_lost;      //  a job lost with this many workers fails
    uint64_t warm_until_us; //  before then, and before any worker registered, a model
                            //  not served is UNAVAILABLE (retry), not NOT_FOUND
    uint64_t next_seq;      //  sequence number of the next job's token
    uint64_t next_given;    //  dispatch sequence number
    uint64_t next_linked;   //  sequence number of links of workers to models
    uint64_t lanes_swept;   //  when empty lanes were last freed
};

static job_node_t *s_node_of (dispatch_job_t *job)
{
    return (job_node_t *)job;
}

static dispatch_job_t *s_job_at (list_node_t *link)
{
    return link ? &LIST_ITEM (link, job_node_t, link)->job : NULL;
}

static lane_t *s_lane_at (list_node_t *link)
{
    return LIST_ITEM (link, lane_t, turn);
}

//  --------------------------------------------------------------------------

static void s_model_destroy (dispatch_model_t **self_p)
{
    dispatch_model_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->lane_of);
    free (self->heap);
    free (self);
    *self_p = NULL;
}

static void s_model_destructor (void **item)
{
    s_model_destroy ((dispatch_model_t **)item);
}

//  Frees a lane and the jobs still in it.
static void s_lane_destructor (void **item)
{
    lane_t *lane = *item;
    if (!lane)
        return;
    dispatch_job_t *job;
    while ((job = s_job_at (list_first (&lane->jobs)))) {
        list_remove (&lane->jobs, &s_node_of (job)->link);
        s_node_of (job)->lane = NULL;
        dispatch_job_destroy (&job);
    }
    free (lane);
    *item = NULL;
}

static void s_worker_destroy (dispatch_worker_t **self_p)
{
    dispatch_worker_t *self = *self_p;
    if (!self)
        return;
    dispatch_job_t *job;
    while ((job = s_job_at (list_first (&self->jobs)))) {
        list_remove (&self->jobs, &s_node_of (job)->link);
        dispatch_job_destroy (&job);
    }
    zframe_destroy (&self->identity);
    free (self->models);
    free (self->heap_at);
    free (self);
    *self_p = NULL;
}

static void s_worker_destructor (void **item)
{
    s_worker_destroy ((dispatch_worker_t **)item);
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
    zhashx_set_destructor (self->models, s_model_destructor);
    zhashx_set_destructor (self->workers, s_worker_destructor);
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

static uint64_t s_job_hash (uint64_t session, uint64_t principal, const void *owner, uint64_t id)
{
    return idmap_hash_pair (session ? session ^ principal : (uint64_t)(uintptr_t)owner, id);
}

static bool s_job_is (const void *item, const void *key_arg)
{
    const dispatch_job_t *job = item;
    const job_key_t *key = key_arg;
    return job->id == key->id && job->session == key->session && job->principal == key->principal &&
           (key->session || job->owner == key->owner);
}

dispatch_job_t *dispatch_find (dispatch_t *self, uint64_t session, uint64_t principal,
                               const void *owner, uint64_t id)
{
    assert (self);
    job_key_t key = {session, principal, owner, id};
    return idmap_find (self->index, s_job_hash (session, principal, owner, id), s_job_is, &key);
}

//  A free slot for a new job, or -1 when none can be had.
static int64_t s_slot_take (dispatch_t *self)
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

dispatch_job_t *dispatch_job_new (dispatch_t *self, uint64_t id, const codec_header_t *request,
                                  const void *client, size_t client_size, zmq_msg_t *payload,
                                  uint64_t now_us)
{
    assert (self);
    int64_t slot = s_slot_take (self);
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
    dispatch_job_t *job = &node->job;
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

void dispatch_job_destroy (dispatch_job_t **job_p)
{
    dispatch_job_t *job = *job_p;
    if (!job)
        return;
    job_node_t *node = s_node_of (job);
    dispatch_t *self = node->owner;
    //  Out of every list (lane, worker, failed jobs) before it goes
    assert (!list_node_linked (&node->link));
    assert (!node->lane);
    assert (self->slots[node->slot] == node);
    if (node->indexed &&
        idmap_delete (self->index, s_job_hash (job->session, job->principal, job->owner, job->id),
                      job))
        assert (!"an indexed job is in the index");
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

dispatch_job_t *dispatch_held_first (dispatch_worker_t *worker)
{
    return s_job_at (list_first (&worker->jobs));
}

dispatch_job_t *dispatch_held_next (dispatch_worker_t *worker, dispatch_job_t *job)
{
    return s_job_at (list_next (&worker->jobs, &s_node_of (job)->link));
}

dispatch_jobs_t *dispatch_jobs_new (void)
{
    dispatch_jobs_t *self = calloc (1, sizeof *self);
    if (self)
        list_init (&self->jobs);
    return self;
}

void dispatch_jobs_destroy (dispatch_jobs_t **self_p)
{
    assert (self_p);
    dispatch_jobs_t *self = *self_p;
    if (!self)
        return;
    dispatch_jobs_purge (self);
    free (self);
    *self_p = NULL;
}

dispatch_job_t *dispatch_jobs_pop (dispatch_jobs_t *self)
{
    assert (self);
    return s_job_at (list_pop_first (&self->jobs));
}

dispatch_job_t *dispatch_jobs_first (dispatch_jobs_t *self)
{
    assert (self);
    return s_job_at (list_first (&self->jobs));
}

dispatch_job_t *dispatch_jobs_next (dispatch_jobs_t *self, dispatch_job_t *job)
{
    assert (self);
    assert (job);
    return s_job_at (list_next (&self->jobs, &s_node_of (job)->link));
}

size_t dispatch_jobs_size (const dispatch_jobs_t *self)
{
    assert (self);
    return list_size (&self->jobs);
}

void dispatch_jobs_purge (dispatch_jobs_t *self)
{
    assert (self);
    dispatch_job_t *job;
    while ((job = dispatch_jobs_pop (self)))
        dispatch_job_destroy (&job);
}

static void s_fail_job (dispatch_job_t *job, amaas_code_t code, dispatch_jobs_t *failed,
                        const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));

static void s_fail_job (dispatch_job_t *job, amaas_code_t code, dispatch_jobs_t *failed,
                        const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vsnprintf (job->fail_message, sizeof job->fail_message, fmt, args);
    va_end (args);
    job->fail_code = code;
    job->worker = NULL;
    job_node_t *node = s_node_of (job);
    //  Out of every queue and worker: the failed list is its one place
    assert (!node->lane);
    list_append (&failed->jobs, &node->link);
}

//  The table key of a model version: "LENGTH:NAMEVERSION", so that no two
//  pairs of strings make the same key.
static void s_model_key (char *key, size_t size, const char *name, const char *version)
{
    snprintf (key, size, "%zu:%s%s", strlen (name), name, version);
}

dispatch_model_t *dispatch_model_find (dispatch_t *self, const char *name, const char *version)
{
    assert (self);
    char key[DISPATCH_MODEL_KEY_MAX];
    s_model_key (key, sizeof key, name, version);
    return zhashx_lookup (self->models, key);
}

//  Versions in order: numbers inside as numbers ("2" < "10", "1.9" < "1.10").
static int s_version_compare (const char *a, const char *b)
{
    return strverscmp (a, b);
}

//  Sets the highest version of `name` that a worker serves as its latest,
//  or forgets the name when none is served.  Runs when the workers of a
//  version change, not per job.
static void s_latest_update (dispatch_t *self, const char *name)
{
    dispatch_model_t *best = NULL;
    for (dispatch_model_t *m = zhashx_first (self->models); m; m = zhashx_next (self->models))
        if (m->n_workers && streq (m->name, name) &&
            (!best || s_version_compare (m->version, best->version) > 0))
            best = m;
    if (best)
        zhashx_update (self->latest, name, best);
    else
        zhashx_delete (self->latest, name);
}

//  Forgets a model version that no worker serves and no job waits for.
static void s_model_release (dispatch_t *self, dispatch_model_t *model)
{
    if (model->n_workers || model->queued)
        return;
    char name[CODEC_NAME_MAX];
    snprintf (name, sizeof name, "%s", model->name);
    zhashx_delete (self->models, model->key);
    s_latest_update (self, name);
}

static dispatch_model_t *s_model_require (dispatch_t *self, const char *name, const char *version)
{
    dispatch_model_t *model = dispatch_model_find (self, name, version);
    if (model)
        return model;
    model = calloc (1, sizeof *model);
    if (!model)
        return NULL;
    snprintf (model->name, sizeof model->name, "%s", name);
    snprintf (model->version, sizeof model->version, "%s", version);
    s_model_key (model->key, sizeof model->key, name, version);
    bool ok = (model->lane_of = zhashx_new ()) != NULL;
    if (model->lane_of)
        zhashx_set_destructor (model->lane_of, s_lane_destructor);
    for (int p = 0; p < CODEC_PRIORITIES; p++)
        list_init (&model->turns[p]);
    if (!ok) {
        s_model_destroy (&model);
        return NULL;
    }
    if (zhashx_insert (self->models, model->key, model)) {
        s_model_destroy (&model);
        return NULL;
    }
    return model;
}

//  --------------------------------------------------------------------------
//  The workers of a model version: a binary min-heap in the order dispatch
//  picks them, each worker's place kept in its heap_at

//  Whether a worker holds as many jobs as its credit allows.
static bool s_worker_full (const dispatch_worker_t *worker)
{
    return list_size (&worker->jobs) >= worker->credit;
}

//  What orders a worker in its heaps: whether it is full, then the jobs it
//  holds (fewer than 2^63).
static uint64_t s_worker_load (const dispatch_worker_t *worker)
{
    return (uint64_t)s_worker_full (worker) << 63 | (uint64_t)list_size (&worker->jobs);
}

//  Whether dispatch picks a before b: a worker with free credit first, then
//  the one holding fewer jobs, then the one given a job longest ago, then
//  the one linked to the model first.
static bool s_heap_before (const heap_item_t *a, const heap_item_t *b)
{
    if (a->load != b->load)
        return a->load < b->load;
    if (a->last_given != b->last_given)
        return a->last_given < b->last_given;
    return a->linked < b->linked;
}

//  Puts item at place i of the model's heap, and tells its worker.
static void s_heap_put (dispatch_model_t *model, size_t i, heap_item_t item)
{
    model->heap[i] = item;
    item.worker->heap_at[item.slot] = i;
}

//  Moves the item at place i up while it goes before its parent.  Returns
//  whether it moved.
static bool s_heap_up (dispatch_model_t *model, size_t i)
{
    heap_item_t item = model->heap[i];
    size_t start = i;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_heap_before (&item, &model->heap[parent]))
            break;
        s_heap_put (model, i, model->heap[parent]);
        i = parent;
    }
    s_heap_put (model, i, item);
    return i != start;
}

//  Moves the item at place i down while a child goes before it.
static void s_heap_down (dispatch_model_t *model, size_t i)
{
    heap_item_t item = model->heap[i];
    size_t n = model->n_workers;
    while (2 * i + 1 < n) {
        size_t child = 2 * i + 1;
        if (child + 1 < n && s_heap_before (&model->heap[child + 1], &model->heap[child]))
            child++;
        if (!s_heap_before (&model->heap[child], &item))
            break;
        s_heap_put (model, i, model->heap[child]);
        i = child;
    }
    s_heap_put (model, i, item);
}

//  The item at place i changed its order: moves it where it belongs.
static void s_heap_fix (dispatch_model_t *model, size_t i)
{
    if (!s_heap_up (model, i))
        s_heap_down (model, i);
}

//  Links worker to the model whose index in worker->models is slot.
//  Returns 0, -1 on out-of-memory (then nothing changed).
static int s_heap_insert (dispatch_t *self, dispatch_model_t *model, dispatch_worker_t *worker,
                          size_t slot)
{
    if (model->n_workers == model->heap_size) {
        size_t size = model->heap_size ? 2 * model->heap_size : 4;
        heap_item_t *heap = realloc (model->heap, size * sizeof *heap);
        if (!heap)
            return -1;
        model->heap = heap;
        model->heap_size = size;
    }
    heap_item_t item = {s_worker_load (worker), worker->last_given, ++self->next_linked, worker,
                        slot};
    s_heap_put (model, model->n_workers++, item);
    s_heap_up (model, model->n_workers - 1);
    return 0;
}

//  Takes the item at place i out of the model's heap.
static void s_heap_remove (dispatch_model_t *model, size_t i)
{
    assert (i < model->n_workers);
    heap_item_t last = model->heap[--model->n_workers];
    if (i < model->n_workers) {
        s_heap_put (model, i, last);
        s_heap_fix (model, i);
    }
}

//  The jobs a worker holds, or its last_given, changed: moves it in the
//  heap of each model it serves, O(m log n).
static void s_worker_moved (dispatch_worker_t *worker)
{
    uint64_t load = s_worker_load (worker);
    for (size_t i = 0; i < worker->n_models; i++) {
        heap_item_t *item = &worker->models[i]->heap[worker->heap_at[i]];
        assert (item->worker == worker);
        item->load = load;
        item->last_given = worker->last_given;
        s_heap_fix (worker->models[i], worker->heap_at[i]);
    }
}

//  The lane key of a job: its priority and its client's identity in hex.
static void s_lane_key (const dispatch_job_t *job, char *key)
{
    table_identity_key (key, (char)('0' + job->priority), job->client, job->client_size);
}

//  Queues a job at the end of its client's lane, or, for a job coming back
//  from a lost worker, at the front of its lane with the lane first in turn.
//  Returns 0, -1 on out-of-memory.
static int s_queue_push (dispatch_model_t *model, dispatch_job_t *job, bool front)
{
    job_node_t *node = s_node_of (job);
    //  A job is in one place at a time: not held, not in a lane
    assert (!job->worker);
    assert (!node->lane);
    assert (job->priority < CODEC_PRIORITIES);
    char key[TABLE_KEY_MAX];
    s_lane_key (job, key);
    list_t *turns = &model->turns[job->priority];
    lane_t *lane = zhashx_lookup (model->lane_of, key);
    if (!lane) {
        lane = calloc (1, sizeof *lane);
        if (!lane)
            return -1;
        list_init (&lane->jobs);
        memcpy (lane->key, key, sizeof key);
        lane->priority = job->priority;
        if (zhashx_insert (model->lane_of, lane->key, lane)) {
            free (lane);
            return -1;
        }
    }
    if (list_empty (&lane->jobs)) {
        //  Its turn comes after the lanes waiting, or first for a requeue
        if (front)
            list_prepend (turns, &lane->turn);
        else
            list_append (turns, &lane->turn);
    } else if (front) {
        list_remove (turns, &lane->turn);
        list_prepend (turns, &lane->turn);
    }
    if (front)
        list_prepend (&lane->jobs, &node->link);
    else
        list_append (&lane->jobs, &node->link);
    node->lane = lane;
    model->queued++;
    return 0;
}

//  The job that goes next: of the most urgent priority, the oldest job of
//  the lane whose turn it is; NULL if none waits.
static dispatch_job_t *s_queue_head (dispatch_model_t *model)
{
    for (int p = CODEC_PRIORITIES - 1; p >= 0; p--) {
        lane_t *lane = s_lane_at (list_first (&model->turns[p]));
        if (lane)
            return s_job_at (list_first (&lane->jobs));
    }
    return NULL;
}

//  Takes a queued job out of its lane; a lane left empty leaves the turn
//  (it is freed later, if its client sends nothing more).  With rotate, the
//  lane goes to the end of the turn.
static void s_queue_take (dispatch_model_t *model, dispatch_job_t *job, bool rotate,
                          uint64_t now_us)
{
    job_node_t *node = s_node_of (job);
    lane_t *lane = node->lane;
    assert (lane); //  queued
    assert (model->queued > 0);
    list_remove (&lane->jobs, &node->link);
    node->lane = NULL;
    model->queued--;
    list_t *turns = &model->turns[lane->priority];
    if (list_empty (&lane->jobs)) {
        list_remove (turns, &lane->turn);
        lane->empty_since_us = now_us;
    } else if (rotate) {
        list_remove (turns, &lane->turn);
        list_append (turns, &lane->turn);
    }
}

//  Takes a queued job out of its lane, the turn unchanged.
static void s_queue_remove (dispatch_model_t *model, dispatch_job_t *job, uint64_t now_us)
{
    s_queue_take (model, job, false, now_us);
}

//  Fails every queued job of a model with `code`.
static void s_queue_fail_all (dispatch_model_t *model, amaas_code_t code, dispatch_jobs_t *failed,
                              const char *message)
{
    dispatch_job_t *job;
    while ((job = s_queue_head (model))) {
        s_queue_remove (model, job, 0);
        s_fail_job (job, code, failed, "%s", message);
    }
}

//  Queues a job again (from a lost worker, or a version no longer served)
//  at the front or the back of its lane; with no memory for a lane, it
//  fails UNAVAILABLE with `why`, so that it is answered, not lost.
static void s_requeue (dispatch_model_t *model, dispatch_job_t *job, bool front,
                       dispatch_jobs_t *failed, const char *why)
{
    if (s_queue_push (model, job, front))
        s_fail_job (job, AMAAS_UNAVAILABLE, failed,
                    "%s, and the broker has no memory to queue it again: retry later", why);
}

//  Puts a job that lost its version (no worker serves it any more) in the
//  queue of the highest version served, at the front or the back, when the
//  client did not ask for a version; else, or when no version is served,
//  fails it UNAVAILABLE with `why`.
static void s_requeue_elsewhere (dispatch_t *self, dispatch_job_t *job, bool front,
                                 dispatch_jobs_t *failed, const char *why)
{
    dispatch_model_t *latest = job->pinned ? NULL : zhashx_lookup (self->latest, job->model);
    if (latest) {
        snprintf (job->version, sizeof job->version, "%s", latest->version);
        s_requeue (latest, job, front, failed, why);
        return;
    }
    if (job->pinned)
        s_fail_job (job, AMAAS_UNAVAILABLE, failed,
                    "%s, and no other worker serves model '%.128s' version '%.32s': retry later",
                    why, job->model, job->version);
    else
        s_fail_job (job, AMAAS_UNAVAILABLE, failed,
                    "%s, and no other worker serves model '%.128s': retry later", why, job->model);
}

//  A version that no worker serves any more: its queued jobs go to another
//  version or fail (s_requeue_elsewhere), and it is forgotten.
static void s_orphan_version (dispatch_t *self, dispatch_model_t *model, dispatch_jobs_t *failed)
{
    if (model->n_workers)
        return;
    dispatch_job_t *job;
    while ((job = s_queue_head (model))) {
        s_queue_remove (model, job, 0);
        s_requeue_elsewhere (self, job, false, failed, "its version is no longer served");
    }
    s_model_release (self, model);
}

//  Detaches the worker from every model it serves, updates the latest
//  version of each name, and returns the list of those models (the caller
//  frees it) for s_orphan_version.
static dispatch_model_t **s_worker_unlink_models (dispatch_t *self, dispatch_worker_t *worker,
                                                  size_t *n_models)
{
    dispatch_model_t **models = worker->models;
    *n_models = worker->n_models;
    for (size_t i = 0; i < worker->n_models; i++) {
        assert (models[i]->heap[worker->heap_at[i]].worker == worker);
        s_heap_remove (models[i], worker->heap_at[i]);
    }
    for (size_t i = 0; i < worker->n_models; i++)
        s_latest_update (self, models[i]->name);
    free (worker->heap_at);
    worker->heap_at = NULL;
    worker->models = NULL;
    worker->n_models = 0;
    return models;
}

//  Orphans (s_orphan_version) the models of a worker's list that no worker
//  serves any more, and frees the list.  The models of a list are distinct
//  (dispatch_worker_ready links each once), so freeing one leaves the
//  others valid.
static void s_orphan_versions (dispatch_t *self, dispatch_model_t **models, size_t n_models,
                               dispatch_jobs_t *failed)
{
    for (size_t i = 0; i < n_models; i++)
        s_orphan_version (self, models[i], failed);
    free (models);
}

//  Puts the worker's held jobs back at the front of their queues, in the
//  order they were given, or into failed.
static void s_worker_requeue_jobs (dispatch_t *self, dispatch_worker_t *worker,
                                   dispatch_jobs_t *failed)
{
    dispatch_job_t *job;
    while ((job = s_job_at (list_last (&worker->jobs)))) {
        list_remove (&worker->jobs, &s_node_of (job)->link);
        assert (self->held > 0);
        self->held--;
        assert (job->worker == worker);
        job->worker = NULL;
        job->lost++;
        dispatch_model_t *model = dispatch_model_find (self, job->model, job->version);
        if (job->lost >= self->max_lost)
            s_fail_job (job, AMAAS_UNAVAILABLE, failed,
                        "job lost with %u workers that died or left while holding it; "
                        "not retried, it may be a poison job",
                        job->lost);
        else if (model && model->n_workers)
            s_requeue (model, job, true, failed, "the worker holding the job was lost");
        else
            s_requeue_elsewhere (self, job, true, failed, "the worker holding the job was lost");
    }
}

dispatch_worker_t *dispatch_worker_find (dispatch_t *self, const char *key)
{
    assert (self);
    return zhashx_lookup (self->workers, key);
}

dispatch_worker_t *dispatch_worker_ready (dispatch_t *self, const char *key, zframe_t **identity_p,
                                          const codec_header_t *ready, int64_t expires_ms,
                                          dispatch_jobs_t *failed, size_t *refused, char *warning,
                                          size_t warning_size)
{
    assert (self);
    *refused = 0;
    if (warning_size)
        warning[0] = 0;
    dispatch_worker_t *worker = zhashx_lookup (self->workers, key);
    dispatch_model_t **old_models = NULL;
    size_t n_old = 0;
    if (worker) {
        //  An update (the worker reloaded its models): the jobs it holds
        //  stay with it, and it answers them
        old_models = s_worker_unlink_models (self, worker, &n_old);
        free (worker->models);
        worker->models = NULL;
    } else {
        worker = calloc (1, sizeof *worker);
        if (!worker)
            return NULL;
        snprintf (worker->key, sizeof worker->key, "%s", key);
        list_init (&worker->jobs);
        if (zhashx_insert (self->workers, worker->key, worker)) {
            free (worker);
            return NULL;
        }
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
    worker->models = calloc (n_models ? n_models : 1, sizeof (dispatch_model_t *));
    worker->heap_at = calloc (n_models ? n_models : 1, sizeof (size_t));
    if (!worker->models || !worker->heap_at)
        goto err;
    for (size_t i = 0; i < n_models; i++) {
        const codec_model_t *announced = &ready->models[i];
        const char *version = announced->version[0] ? announced->version : "1";
        dispatch_model_t *model = s_model_require (self, announced->name, version);
        if (!model)
            goto err;
        bool dup = false;
        for (size_t j = 0; j < worker->n_models; j++)
            dup |= worker->models[j] == model;
        if (dup)
            continue;
        if (model->n_workers && model->width && announced->width &&
            model->width != announced->width) {
            if (*refused == 0 && warning_size)
                snprintf (warning, warning_size,
                          "model '%.128s' version '%.32s' announced with input width %u, "
                          "but other workers serve it with width %u: not served by this worker",
                          model->name, version, announced->width, model->width);
            (*refused)++;
            continue;
        }
        if (model->n_workers == 0) {
            model->width = announced->width;
            model->mapped = announced->mapped;
            model->meta = announced->meta;
        } else if (model->meta.n_outputs == 0 && model->meta.n_inputs == 0 &&
                   model->meta.datatype == AMAAS_DTYPE_INVALID && !model->meta.input[0])
            //  Its first worker was an older one that announced no metadata:
            //  what a later one announces describes the version better than
            //  nothing does (it does not change what any worker serves)
            model->meta = announced->meta;
        worker->models[worker->n_models] = model;
        if (s_heap_insert (self, model, worker, worker->n_models)) {
            s_model_release (self, model); //  if made for this worker
            goto err;
        }
        worker->n_models++;
    }
    for (size_t i = 0; i < worker->n_models; i++)
        s_latest_update (self, worker->models[i]->name);
    //  Versions the worker no longer serves go if nobody else serves them
    s_orphan_versions (self, old_models, n_old, failed);
    self->warm_until_us = 0; //  workers are finding the broker: the warm-up is over
    return worker;
err:
    s_orphan_versions (self, old_models, n_old, failed);
    dispatch_worker_remove (self, worker, failed);
    return NULL;
}

void dispatch_worker_remove (dispatch_t *self, dispatch_worker_t *worker, dispatch_jobs_t *failed)
{
    assert (self);
    //  Requeue while the worker is unlinked, so that jobs of models it alone
    //  served go to another version or fail rather than wait for a worker
    //  that will not come.
    size_t n_models;
    dispatch_model_t **models = s_worker_unlink_models (self, worker, &n_models);
    s_worker_requeue_jobs (self, worker, failed);
    s_orphan_versions (self, models, n_models, failed);
    zhashx_delete (self->workers, worker->key);
}

void dispatch_worker_drain (dispatch_t *self, dispatch_worker_t *worker, dispatch_jobs_t *failed)
{
    assert (self);
    size_t n_models;
    dispatch_model_t **models = s_worker_unlink_models (self, worker, &n_models);
    s_orphan_versions (self, models, n_models, failed);
    worker->draining = true;
}

void dispatch_set_warmup (dispatch_t *self, uint64_t until_us)
{
    assert (self);
    self->warm_until_us = until_us;
}

//  Fails a job whose model (or version) no worker serves: NOT_FOUND, with
//  the message already set, or UNAVAILABLE while the broker warms up (no
//  worker has registered yet).
//  Returns the code.  Cannot fail.
static amaas_code_t s_not_served (dispatch_t *self, dispatch_job_t *job)
{
    if (job->received_us < self->warm_until_us) {
        snprintf (job->fail_message, sizeof job->fail_message,
                  "no worker serves model '%.64s' yet (the broker has just started, or lost "
                  "its workers, and they are finding it again): retry",
                  job->model);
        return job->fail_code = AMAAS_UNAVAILABLE;
    }
    return job->fail_code = AMAAS_NOT_FOUND;
}

amaas_code_t dispatch_submit (dispatch_t *self, dispatch_job_t *job, const char *version)
{
    assert (self);
    dispatch_model_t *model;
    if (version && *version) {
        model = dispatch_model_find (self, job->model, version);
        if (!model || model->n_workers == 0) {
            dispatch_model_t *latest = zhashx_lookup (self->latest, job->model);
            if (latest)
                snprintf (job->fail_message, sizeof job->fail_message,
                          "no worker serves model '%.64s' in version '%.32s' (the highest "
                          "served is '%.32s'; see 'amaas models')",
                          job->model, version, latest->version);
            else
                snprintf (job->fail_message, sizeof job->fail_message,
                          "no worker serves model '%s' (see 'amaas models')", job->model);
            return s_not_served (self, job);
        }
        job->pinned = true;
    } else if (!(model = zhashx_lookup (self->latest, job->model))) {
        snprintf (job->fail_message, sizeof job->fail_message,
                  "no worker serves model '%s' (see 'amaas models')", job->model);
        return s_not_served (self, job);
    }
    if (model->queued >= self->max_queue) {
        snprintf (job->fail_message, sizeof job->fail_message,
                  "queue of model '%s' is full (%zu jobs waiting): retry later", job->model,
                  model->queued);
        return job->fail_code = AMAAS_RESOURCE_EXHAUSTED;
    }
    snprintf (job->version, sizeof job->version, "%s", model->version);
    job_node_t *node = s_node_of (job);
    if (idmap_insert (self->index, s_job_hash (job->session, job->principal, job->owner, job->id),
                      job) ||
        s_queue_push (model, job, false)) {
        if (idmap_delete (self->index,
                          s_job_hash (job->session, job->principal, job->owner, job->id), job) == 0)
            node->indexed = false;
        snprintf (job->fail_message, sizeof job->fail_message, "broker out of memory");
        return job->fail_code = AMAAS_INTERNAL;
    }
    node->indexed = true;
    return AMAAS_OK;
}

bool dispatch_cancel (dispatch_t *self, dispatch_job_t *job)
{
    assert (self);
    if (job->worker)
        return false;
    dispatch_model_t *model = dispatch_model_find (self, job->model, job->version);
    if (!model || !s_node_of (job)->lane)
        return false; //  not queued: cannot happen for a live job
    s_queue_remove (model, job, 0);
    s_model_release (self, model);
    return true;
}

//  Least-loaded worker of the model with free credit, or NULL: the top of
//  its heap, O(1).
static dispatch_worker_t *s_pick_worker (dispatch_model_t *model)
{
    if (model->n_workers == 0 || model->heap[0].load >> 63)
        return NULL;
    return model->heap[0].worker;
}

static bool s_expired (const dispatch_job_t *job, uint64_t now_us)
{
    return job->deadline_us && now_us >= job->deadline_us;
}

static void s_fail_expired (dispatch_job_t *job, uint64_t now_us, dispatch_jobs_t *failed)
{
    s_fail_job (job, AMAAS_DEADLINE_EXCEEDED, failed,
                "deadline passed after %" PRIu64 " ms in the queue of model '%.128s'; not computed",
                (now_us - job->received_us) / 1000, job->model);
}

size_t dispatch_pump (dispatch_t *self, dispatch_send_fn *send, void *arg, uint64_t now_us,
                      dispatch_jobs_t *failed)
{
    assert (self);
    size_t sent = 0;
    for (dispatch_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models)) {
        dispatch_job_t *job;
        while ((job = s_queue_head (model))) {
            if (s_expired (job, now_us)) {
                s_queue_remove (model, job, now_us);
                s_fail_expired (job, now_us, failed);
                continue;
            }
            dispatch_worker_t *worker = s_pick_worker (model);
            if (!worker)
                break;
            if (send (job, worker, arg))
                break;
            s_queue_take (model, job, true, now_us); //  the next job comes from the next lane
            assert (!job->worker);
            job->worker = worker;
            job->dispatched_us = now_us;
            worker->last_given = ++self->next_given;
            list_append (&worker->jobs, &s_node_of (job)->link);
            s_worker_moved (worker);
            self->held++;
            sent++;
        }
    }
    return sent;
}

dispatch_job_t *dispatch_complete (dispatch_t *self, dispatch_worker_t *worker, uint64_t token)
{
    assert (self);
    uint64_t slot = token & (SLOTS_MAX - 1);
    job_node_t *node = slot < self->n_slots ? self->slots[slot] : NULL;
    dispatch_job_t *job = node ? &node->job : NULL;
    if (!job || job->token != token || job->worker != worker)
        return NULL;
    list_remove (&worker->jobs, &node->link);
    s_worker_moved (worker);
    assert (self->held > 0);
    self->held--;
    job->worker = NULL;
    worker->done++;
    return job;
}

size_t dispatch_purge (dispatch_t *self, int64_t now_ms, dispatch_jobs_t *failed)
{
    assert (self);
    //  Removing a worker changes the table: look again from the start
    //  after each (workers are few, dead ones fewer), allocating nothing
    size_t count = 0;
    bool removed = true;
    while (removed) {
        removed = false;
        for (dispatch_worker_t *w = zhashx_first (self->workers); w;
             w = zhashx_next (self->workers))
            if (w->expires_ms < now_ms) {
                dispatch_worker_remove (self, w, failed);
                count++;
                removed = true;
                break;
            }
    }
    return count;
}

void dispatch_fail_all (dispatch_t *self, amaas_code_t code, const char *message,
                        dispatch_jobs_t *failed)
{
    assert (self);
    for (dispatch_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models))
        s_queue_fail_all (model, code, failed, message);
}

//  Whether a lane has been empty for LANE_IDLE_US (arg: now, in µs).
static bool s_lane_idle (const void *item, const void *arg)
{
    const lane_t *lane = item;
    return list_empty (&lane->jobs) &&
           *(const uint64_t *)arg - lane->empty_since_us >= LANE_IDLE_US;
}

size_t dispatch_expire (dispatch_t *self, uint64_t now_us, dispatch_jobs_t *failed)
{
    assert (self);
    size_t count = 0;
    bool sweep = now_us - self->lanes_swept >= LANE_IDLE_US;
    if (sweep)
        self->lanes_swept = now_us;
    for (dispatch_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models)) {
        for (int p = 0; p < CODEC_PRIORITIES; p++) {
            //  Each lane's jobs, oldest first; taking the last job out of a
            //  lane takes the lane out of the turn, which LIST_FOREACH allows
            lane_t *lane;
            LIST_FOREACH (lane, &model->turns[p], lane_t, turn) {
                job_node_t *node;
                LIST_FOREACH (node, &lane->jobs, job_node_t, link) {
                    if (s_expired (&node->job, now_us)) {
                        s_queue_remove (model, &node->job, now_us);
                        s_fail_expired (&node->job, now_us, failed);
                        count++;
                    }
                }
            }
        }
        if (sweep)
            table_delete_if (model->lane_of, s_lane_idle, &now_us);
    }
    return count;
}

void dispatch_shutdown (dispatch_t *self, dispatch_jobs_t *failed)
{
    assert (self);
    //  Every worker goes: out of every heap first
    for (dispatch_model_t *m = zhashx_first (self->models); m; m = zhashx_next (self->models))
        m->n_workers = 0;
    for (dispatch_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers)) {
        w->n_models = 0;
        dispatch_job_t *job;
        while ((job = s_job_at (list_first (&w->jobs)))) {
            list_remove (&w->jobs, &s_node_of (job)->link);
            assert (self->held > 0);
            self->held--;
            s_fail_job (job, AMAAS_UNAVAILABLE, failed,
                        "the broker shut down before the job completed: retry");
        }
    }
    dispatch_fail_all (self, AMAAS_UNAVAILABLE,
                       "the broker shut down before the job was served: retry", failed);
    zhashx_purge (self->workers);
}

dispatch_model_t *dispatch_model_first (dispatch_t *self)
{
    assert (self);
    return zhashx_first (self->models);
}

dispatch_model_t *dispatch_model_next (dispatch_t *self)
{
    assert (self);
    return zhashx_next (self->models);
}

dispatch_worker_t *dispatch_worker_first (dispatch_t *self)
{
    assert (self);
    return zhashx_first (self->workers);
}

dispatch_worker_t *dispatch_worker_next (dispatch_t *self)
{
    assert (self);
    return zhashx_next (self->workers);
}

static int s_compare_models (const void *a, const void *b)
{
    const codec_model_t *x = a, *y = b;
    int by_name = strcmp (x->name, y->name);
    return by_name ? by_name : s_version_compare (x->version, y->version);
}

int dispatch_models (dispatch_t *self, codec_header_t *header)
{
    assert (self);
    size_t n = 0;
    codec_model_t *list = calloc (zhashx_size (self->models) + 1, sizeof *list);
    if (!list)
        return -1;
    for (dispatch_model_t *model = zhashx_first (self->models); model;
         model = zhashx_next (self->models)) {
        if (model->n_workers == 0)
            continue;
        snprintf (list[n].name, sizeof list[n].name, "%s", model->name);
        snprintf (list[n].version, sizeof list[n].version, "%s", model->version);
        list[n].workers = (uint32_t)model->n_workers;
        list[n].width = model->width;
        list[n].mapped = model->mapped;
        list[n].meta = model->meta;
        list[n].queued = (uint32_t)model->queued;
        n++;
    }
    qsort (list, n, sizeof *list, s_compare_models);
    free (header->models);
    header->models = list;
    header->n_models = n;
    header->fields |= HDR_MODELS;
    return 0;
}

size_t dispatch_worker_count (dispatch_t *self)
{
    assert (self);
    return zhashx_size (self->workers);
}

size_t dispatch_queued (dispatch_t *self, const char *name)
{
    assert (self);
    size_t queued = 0;
    for (dispatch_model_t *m = zhashx_first (self->models); m; m = zhashx_next (self->models))
        if (streq (m->name, name))
            queued += m->queued;
    return queued;
}

size_t dispatch_queued_total (dispatch_t *self)
{
    assert (self);
    size_t total = 0;
    for (dispatch_model_t *m = zhashx_first (self->models); m; m = zhashx_next (self->models))
        total += m->queued;
    return total;
}

size_t dispatch_in_flight (dispatch_t *self)
{
    assert (self);
    return self->held;
}

//  --------------------------------------------------------------------------
//  Fields of jobs, workers and model versions

uint64_t dispatch_job_token (const dispatch_job_t *job)
{
    assert (job);
    return job->token;
}

uint64_t dispatch_job_id (const dispatch_job_t *job)
{
    assert (job);
    return job->id;
}

const char *dispatch_job_model (const dispatch_job_t *job)
{
    assert (job);
    return job->model;
}

const char *dispatch_job_version (const dispatch_job_t *job)
{
    assert (job);
    return job->version;
}

const void *dispatch_job_client (const dispatch_job_t *job, size_t *size)
{
    assert (job);
    *size = job->client_size;
    return job->client;
}

void dispatch_job_set_client (dispatch_job_t *job, const void *identity, size_t size)
{
    assert (job);
    if (size > sizeof job->client)
        return;
    memcpy (job->client, identity, size);
    job->client_size = size;
}

void *dispatch_job_owner (const dispatch_job_t *job)
{
    assert (job);
    return job->owner;
}

void dispatch_job_set_owner (dispatch_job_t *job, void *owner)
{
    assert (job);
    //  A job without a session is filed in the index under its owner
    assert (job->session || !s_node_of (job)->indexed || job->owner == owner);
    job->owner = owner;
}

void dispatch_job_set_principal (dispatch_job_t *job, uint64_t principal)
{
    assert (job);
    assert (!s_node_of (job)->indexed); //  filed under it
    job->principal = principal;
}

dispatch_worker_t *dispatch_job_worker (const dispatch_job_t *job)
{
    assert (job);
    return job->worker;
}

uint64_t dispatch_job_deadline_us (const dispatch_job_t *job)
{
    assert (job);
    return job->deadline_us;
}

const char (*dispatch_job_outputs (const dispatch_job_t *job, size_t *n))[CODEC_NAME_MAX]
{
    assert (job);
    *n = job->n_outputs;
    return (const char (*)[CODEC_NAME_MAX])job->outputs;
}

zmq_msg_t *dispatch_job_payload (dispatch_job_t *job)
{
    assert (job);
    return job->has_payload ? &job->payload : NULL;
}

uint64_t dispatch_job_received_us (const dispatch_job_t *job)
{
    assert (job);
    return job->received_us;
}

uint64_t dispatch_job_dispatched_us (const dispatch_job_t *job)
{
    assert (job);
    return job->dispatched_us;
}

uint32_t dispatch_job_lost (const dispatch_job_t *job)
{
    assert (job);
    return job->lost;
}

amaas_code_t dispatch_job_fail_code (const dispatch_job_t *job)
{
    assert (job);
    return job->fail_code;
}

const char *dispatch_job_fail_message (const dispatch_job_t *job)
{
    assert (job);
    return job->fail_message;
}

void dispatch_job_set_failure (dispatch_job_t *job, amaas_code_t code, const char *message)
{
    assert (job);
    job->fail_code = code;
    snprintf (job->fail_message, sizeof job->fail_message, "%s", message);
}

const char *dispatch_worker_key (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->key;
}

zframe_t *dispatch_worker_identity (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->identity;
}

size_t dispatch_worker_held (const dispatch_worker_t *worker)
{
    assert (worker);
    return list_size (&worker->jobs);
}

uint32_t dispatch_worker_credit (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->credit;
}

uint32_t dispatch_worker_pid (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->pid;
}

const char *dispatch_worker_host (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->host;
}

size_t dispatch_worker_model_count (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->n_models;
}

dispatch_model_t *dispatch_worker_model (const dispatch_worker_t *worker, size_t i)
{
    assert (worker);
    assert (i < worker->n_models);
    return worker->models[i];
}

uint32_t dispatch_worker_model_errors (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->model_errors;
}

uint64_t dispatch_worker_done (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->done;
}

bool dispatch_worker_draining (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->draining;
}

int64_t dispatch_worker_seen_ms (const dispatch_worker_t *worker)
{
    assert (worker);
    return worker->seen_ms;
}

void dispatch_worker_heard (dispatch_worker_t *worker, int64_t now_ms, int64_t expires_ms)
{
    assert (worker);
    worker->seen_ms = now_ms;
    worker->expires_ms = expires_ms;
}

const char *dispatch_model_name (const dispatch_model_t *model)
{
    assert (model);
    return model->name;
}

const char *dispatch_model_version (const dispatch_model_t *model)
{
    assert (model);
    return model->version;
}

uint32_t dispatch_model_width (const dispatch_model_t *model)
{
    assert (model);
    return model->width;
}

uint64_t dispatch_model_mapped (const dispatch_model_t *model)
{
    assert (model);
    return model->mapped;
}

const codec_model_meta_t *dispatch_model_meta (const dispatch_model_t *model)
{
    assert (model);
    return &model->meta;
}

size_t dispatch_model_queued (const dispatch_model_t *model)
{
    assert (model);
    return model->queued;
}

size_t dispatch_model_workers (const dispatch_model_t *model)
{
    assert (model);
    return model->n_workers;
}

size_t dispatch_model_lanes (const dispatch_model_t *model)
{
    assert (model);
    return zhashx_size (model->lane_of);
}

uint64_t dispatch_model_oldest_us (const dispatch_model_t *model)
{
    assert (model);
    //  A lane is FIFO (a job requeued after its worker died goes to the
    //  front, and it is older than the rest): its first job is its oldest
    uint64_t oldest = 0;
    for (uint32_t p = 0; p < CODEC_PRIORITIES; p++)
        for (list_node_t *turn = list_first (&model->turns[p]); turn;
             turn = list_next (&model->turns[p], turn)) {
            dispatch_job_t *first = s_job_at (list_first (&s_lane_at (turn)->jobs));
            if (first && (oldest == 0 || first->received_us < oldest))
                oldest = first->received_us;
        }
    return oldest;
}
