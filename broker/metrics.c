/*  metrics.c - the broker's Prometheus metrics, served over HTTP.

    Each model has one block of counters, allocated the first time the
    model is seen and found again by its label's hash in an idmap (the
    project's table by 64-bit key), so that counting a job is a hash, a
    lookup, a few additions and no allocation.  A histogram keeps the count of each bucket on its
   own; the cumulative counts Prometheus wants are summed when rendering.

    Publishing renders the text into a new buffer and swaps it, under the
    mutex, for the one the HTTP server serves.  The server is libmicrohttpd
    with its own polling thread; it copies the published text into each
    response while holding the mutex, and never looks at the counters.

    The recent queue waits of a model are a ring of one-second slots, each
    a histogram with 4 buckets per doubling (bounds 100 us x 2^(i/4), up
    to about 105 s, then one for the rest) and the longest wait: observing
    a job is a log2 and an increment into the slot of the second of the
    last metrics_tick (a slot of an older second is cleared first), and the
    p99 adds up the slots of the window, finds the bucket of the 99th
    percentile and answers its upper bound, or the longest wait when that
    is lower.  No allocation: the ring is part of the model's block.

    Model names come from clients: they may be any bytes.  Prometheus wants
    label values in UTF-8, so a name is first made valid UTF-8 (each byte
    that is not part of a valid sequence becomes U+FFFD) and the model is
    keyed by that label, so two names can never render as the same series.
*/
#include "metrics.h"

#include <stddef.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "idmap.h"
#include "amaas_defs.h"
#include "utf8.h"

#if MHD_VERSION < 0x00097002
typedef int mhd_result_t;
#else
typedef enum MHD_Result mhd_result_t;
#endif

#define NAME_MAX_BYTES DEFS_NAME_MAX       //  bytes of a model name kept
#define LABEL_MAX (3 * NAME_MAX_BYTES + 1) //  as UTF-8: a bad byte takes 3
#define MAX_CODES 24                       //  distinct codes; the last is "OTHER"
#define MAX_BUCKETS 18                     //  finite bucket bounds of a histogram
#define OTHER_MODEL "(other)"              //  label of the models past the limit
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum { H_QUEUE, H_COMPUTE, H_LATENCY, H_BATCH, N_HISTOGRAMS } histogram_id_t;

typedef struct {
    const char *name;     //  metric name
    const char *help;     //  its HELP text
    const double *bounds; //  upper bounds of the finite buckets, ascending
    size_t n_bounds;      //  how many
} histogram_kind_t;

static const double s_seconds_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                          0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                          0.5,     1,      2.5,     5,      10};
static const double s_batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_ (x)
#define N_OF(a) (sizeof (a) / sizeof (a)[0])

static const histogram_kind_t s_histogram_kinds[N_HISTOGRAMS] = {
    {"amaas_queue_seconds", "Time jobs waited in the broker before a worker took them.",
     s_seconds_bounds, N_OF (s_seconds_bounds)},
    {"amaas_compute_seconds", "Time workers spent computing jobs, as they report it.",
     s_seconds_bounds, N_OF (s_seconds_bounds)},
    {"amaas_latency_seconds", "Time from a job's arrival at the broker to its answer.",
     s_seconds_bounds, N_OF (s_seconds_bounds)},
    {"amaas_batch_size", "Size of the batch each job was computed in.", s_batch_bounds,
     N_OF (s_batch_bounds)},
};

typedef struct {
    uint64_t buckets[MAX_BUCKETS + 1]; //  observations per bucket (not cumulative); last: +Inf
    uint64_t count;                    //  observations
    double sum;                        //  their sum
} histogram_t;

#define WAIT_MIN_S 0.0001 //  upper bound of the first bucket of queue waits
#define WAIT_STEPS 4      //  buckets per doubling
static const double s_quarter_powers[] = {1, 1.189207115002721, 1.4142135623730951,
                                          1.6817928305074290}; //  2^(i/4)
#define WAIT_BUCKETS (20 * WAIT_STEPS + 2) //  up to 100 us x 2^20 (105 s), then the rest

//  The queue waits of one second of a model
typedef struct {
    int64_t second;                //  which second (monotonic); counts are of another: stale
    uint32_t counts[WAIT_BUCKETS]; //  jobs per bucket
    double longest;                //  the longest wait
} wait_slot_t;

typedef struct {
    char label[LABEL_MAX];                    //  model name as valid UTF-8, not escaped
    uint64_t jobs[MAX_CODES];                 //  jobs answered, by index in metrics_t.codes
    histogram_t histograms[N_HISTOGRAMS];     //  by histogram_id_t
    bool has_gauges;                          //  metrics_add_model was called for it
    size_t queued;                            //  jobs waiting
    size_t in_flight;                         //  jobs held by workers
    double queue_wait;                        //  seconds the oldest queued job waited
    wait_slot_t waits[METRICS_WAIT_WINDOW_S]; //  recent queue waits, by second % window
} metrics_model_t;

//  A worker of the per-worker gauges
typedef struct {
    char id[2 * 255 + 1]; //  the registry's key
    char host[LABEL_MAX]; //  its host name, as valid UTF-8
    uint32_t pid;         //  its process id
    uint32_t credit;      //  jobs it may hold
    size_t held;          //  jobs it holds
    bool draining;        //  whether it drains
} metrics_worker_t;

struct metrics_t {
    metrics_model_t
        *models[METRICS_MAX_MODELS + 1];  //  in order of first sight; the last: "(other)"
    size_t n_models;                      //  models[0 .. n_models-1] in use, "(other)" aside
    idmap_t *by_label;                    //  models[0 .. n_models-1] by hash of label
    char codes[MAX_CODES][32];            //  code names in order of first sight
    size_t n_codes;                       //  codes in use
    size_t workers;                       //  workers connected
    metrics_worker_t *worker_gauges;      //  the per-worker gauges
    size_t n_worker_gauges;               //  in use
    size_t worker_gauges_size;            //  allocated
    int64_t second;                       //  the second of the last metrics_tick
    double wait_bounds[WAIT_BUCKETS - 1]; //  upper bounds of the finite wait buckets
    metrics_counts_t counts;              //  job lifecycle
    struct timespec started;              //  monotonic time metrics_new ran
    struct MHD_Daemon *daemon;            //  HTTP server, or NULL
    int port;                             //  its port
    pthread_mutex_t lock;                 //  guards text and text_size
    char *text;                           //  the published exposition
    size_t text_size;                     //  its length
};

//  Copies name into label as valid UTF-8 (RFC 3629: no overlong forms, no
//  surrogates, nothing over U+10FFFF), each byte that does not belong to a
//  valid sequence replaced by U+FFFD; at most NAME_MAX_BYTES of name are
//  read.  label holds LABEL_MAX bytes.
static void s_label_from_name (char *label, const char *name)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strnlen (name, NAME_MAX_BYTES), out = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence (s + i, n - i);
        if (len) {
            memcpy (label + out, s + i, len);
            out += len;
            i += len;
        } else {
            memcpy (label + out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        }
    }
    label[out] = 0;
}

//  Whether a model's counters are those of the label `key`.
static bool s_model_is (const void *item, const void *key)
{
    const metrics_model_t *model = item;
    return strcmp (model->label, key) == 0;
}

//  The counters of a model, added on first sight; past METRICS_MAX_MODELS
//  models, those of "(other)".  NULL on out-of-memory.
static metrics_model_t *s_model_get (metrics_t *self, const char *name)
{
    char label[LABEL_MAX];
    s_label_from_name (label, name);
    uint64_t hash = idmap_hash_bytes (label, strlen (label), 0);
    metrics_model_t *model = idmap_find (self->by_label, hash, s_model_is, label);
    if (model)
        return model;
    //  A model named "(other)" shares its counters with the models past
    //  the limit: one label, one series
    bool other = self->n_models == METRICS_MAX_MODELS || strcmp (label, OTHER_MODEL) == 0;
    size_t index = other ? METRICS_MAX_MODELS : self->n_models;
    if (!self->models[index]) {
        self->models[index] = calloc (1, sizeof (metrics_model_t));
        if (!self->models[index])
            return NULL;
        strcpy (self->models[index]->label, other ? OTHER_MODEL : label);
    }
    if (!other) {
        if (idmap_insert (self->by_label, hash, self->models[index])) {
            free (self->models[index]); //  the next model may take the index
            self->models[index] = NULL;
            return NULL;
        }
        self->n_models++;
    }
    assert (self->n_models <= METRICS_MAX_MODELS);
    return self->models[index];
}

//  Index of a code name in self->codes, added on first sight; when they
//  are all taken, that of the last one, "OTHER".
static size_t s_code_index (metrics_t *self, const char *code)
{
    for (size_t i = 0; i < self->n_codes; i++)
        if (strcmp (self->codes[i], code) == 0)
            return i;
    if (self->n_codes == MAX_CODES - 1) {
        snprintf (self->codes[MAX_CODES - 1], sizeof self->codes[0], "OTHER");
        self->n_codes = MAX_CODES;
        return MAX_CODES - 1;
    }
    if (self->n_codes == MAX_CODES)
        return MAX_CODES - 1;
    snprintf (self->codes[self->n_codes], sizeof self->codes[0], "%.31s", code);
    return self->n_codes++;
}

static void s_histogram_observe (histogram_t *h, histogram_id_t id, double value)
{
    if (!(value >= 0) || isinf (value)) //  negative, NaN or infinite: not observed
        return;
    const histogram_kind_t *kind = &s_histogram_kinds[id];
    size_t b = 0;
    while (b < kind->n_bounds && value > kind->bounds[b])
        b++;
    h->buckets[b]++;
    h->count++;
    h->sum += value;
}

//  The bucket of a queue wait: 0 up to WAIT_MIN_S, then WAIT_STEPS per
//  doubling, the last one for the rest (a binary search of the bounds)
static size_t s_wait_bucket (const metrics_t *self, double wait_s)
{
    size_t low = 0, high = WAIT_BUCKETS - 1; //  the bucket is in [low, high]
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (wait_s <= self->wait_bounds[mid])
            high = mid;
        else
            low = mid + 1;
    }
    return low;
}

static void s_wait_observe (metrics_t *self, metrics_model_t *model, double wait_s)
{
    if (!(wait_s >= 0) || isinf (wait_s))
        return;
    wait_slot_t *slot = &model->waits[self->second % METRICS_WAIT_WINDOW_S];
    if (slot->second != self->second) {
        memset (slot, 0, sizeof *slot);
        slot->second = self->second;
    }
    slot->counts[s_wait_bucket (self, wait_s)]++;
    if (wait_s > slot->longest)
        slot->longest = wait_s;
}

static double s_wait_p99 (metrics_t *self, const metrics_model_t *model)
{
    uint64_t counts[WAIT_BUCKETS] = {0}, total = 0;
    double longest = 0;
    for (size_t i = 0; i < METRICS_WAIT_WINDOW_S; i++) {
        const wait_slot_t *slot = &model->waits[i];
        if (slot->second > self->second || slot->second <= self->second - METRICS_WAIT_WINDOW_S)
            continue; //  stale
        for (size_t b = 0; b < WAIT_BUCKETS; b++) {
            counts[b] += slot->counts[b];
            total += slot->counts[b];
        }
        if (slot->longest > longest)
            longest = slot->longest;
    }
    if (total == 0)
        return 0;
    uint64_t rank = (total * 99 + 99) / 100; //  ceil (0.99 total): the job at that rank
    uint64_t cumulative = 0;
    size_t b = 0;
    for (; b < WAIT_BUCKETS - 1; b++) {
        cumulative += counts[b];
        if (cumulative >= rank)
            break;
    }
    double bound = b < WAIT_BUCKETS - 1 ? self->wait_bounds[b] : INFINITY;
    return bound < longest ? bound : longest;
}

void metrics_tick (metrics_t *self, int64_t now_ms)
{
    assert (self);
    if (now_ms / 1000 > self->second)
        self->second = now_ms / 1000;
}

double metrics_queue_wait_p99 (metrics_t *self, const char *model_name)
{
    assert (self);
    char label[LABEL_MAX];
    s_label_from_name (label, model_name);
    uint64_t hash = idmap_hash_bytes (label, strlen (label), 0);
    metrics_model_t *model = idmap_find (self->by_label, hash, s_model_is, label);
    if (!model && (self->n_models == METRICS_MAX_MODELS || strcmp (label, OTHER_MODEL) == 0))
        model = self->models[METRICS_MAX_MODELS];
    return model ? s_wait_p99 (self, model) : 0;
}

void metrics_observe_job (metrics_t *self, const char *model_name, const char *code, double queue_s,
                          double compute_s, double latency_s, unsigned batch)
{
    assert (self);
    metrics_model_t *model = s_model_get (self, model_name);
    if (!model)
        return;
    model->jobs[s_code_index (self, code)]++;
    s_wait_observe (self, model, queue_s);
    s_histogram_observe (&model->histograms[H_QUEUE], H_QUEUE, queue_s);
    s_histogram_observe (&model->histograms[H_COMPUTE], H_COMPUTE, compute_s);
    s_histogram_observe (&model->histograms[H_LATENCY], H_LATENCY, latency_s);
    if (batch > 0)
        s_histogram_observe (&model->histograms[H_BATCH], H_BATCH, batch);
}

//  Every model counted so far, "(other)" last if it was used
static metrics_model_t *s_model_at (metrics_t *self, size_t i)
{
    return i < self->n_models ? self->models[i] : self->models[METRICS_MAX_MODELS];
}

void metrics_add_model (metrics_t *self, const char *model_name, size_t queued, size_t in_flight)
{
    assert (self);
    metrics_model_t *model = s_model_get (self, model_name);
    if (!model)
        return;
    model->has_gauges = true;
    model->queued += queued;
    model->in_flight += in_flight;
}

void metrics_clear_models (metrics_t *self)
{
    assert (self);
    for (size_t i = 0; i <= self->n_models; i++) {
        metrics_model_t *model = s_model_at (self, i);
        if (model) {
            model->queued = model->in_flight = 0;
            model->queue_wait = 0;
        }
    }
}

void metrics_set_model_wait (metrics_t *self, const char *model_name, double wait_s)
{
    assert (self);
    metrics_model_t *model = s_model_get (self, model_name);
    if (!model)
        return;
    model->has_gauges = true;
    if (wait_s > model->queue_wait)
        model->queue_wait = wait_s;
}

void metrics_clear_workers (metrics_t *self)
{
    assert (self);
    self->n_worker_gauges = 0;
}

void metrics_add_worker (metrics_t *self, const char *id, const char *host, uint32_t pid,
                         uint32_t credit, size_t held, bool draining)
{
    assert (self);
    if (self->n_worker_gauges == self->worker_gauges_size) {
        //  Grows with the workers, not per call: once the fleet's size is
        //  reached, setting the gauges allocates nothing
        size_t size = self->worker_gauges_size ? 2 * self->worker_gauges_size : 16;
        metrics_worker_t *grown = realloc (self->worker_gauges, size * sizeof *grown);
        if (!grown)
            return;
        self->worker_gauges = grown;
        self->worker_gauges_size = size;
    }
    metrics_worker_t *w = &self->worker_gauges[self->n_worker_gauges++];
    snprintf (w->id, sizeof w->id, "%s", id);
    s_label_from_name (w->host, host);
    w->pid = pid;
    w->credit = credit;
    w->held = held;
    w->draining = draining;
}

void metrics_set_counts (metrics_t *self, const metrics_counts_t *counts)
{
    assert (self);
    self->counts = *counts;
}

void metrics_set_workers (metrics_t *self, size_t workers)
{
    assert (self);
    self->workers = workers;
}

//  A number as Prometheus reads it: the shortest %g that reads back the
//  same, or +Inf, -Inf, NaN.
static void s_put_number (FILE *f, double v)
{
    if (isnan (v)) {
        fputs ("NaN", f);
        return;
    }
    if (isinf (v)) {
        fputs (v > 0 ? "+Inf" : "-Inf", f);
        return;
    }
    char buf[32];
    for (int precision = 6; precision <= 17; precision++) {
        snprintf (buf, sizeof buf, "%.*g", precision, v);
        if (strtod (buf, NULL) == v)
            break;
    }
    fputs (buf, f);
}

//  A label value, escaped as the text format requires: \ " and newline.
static void s_put_label (FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs ("\\\\", f);
        else if (*s == '"')
            fputs ("\\\"", f);
        else if (*s == '\n')
            fputs ("\\n", f);
        else
            fputc (*s, f);
    }
}

static void s_put_header (FILE *f, const char *name, const char *type, const char *help)
{
    fprintf (f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void s_put_histograms (metrics_t *self, FILE *f, histogram_id_t id)
{
    const histogram_kind_t *kind = &s_histogram_kinds[id];
    s_put_header (f, kind->name, "histogram", kind->help);
    for (size_t i = 0; i <= self->n_models; i++) {
        metrics_model_t *model = s_model_at (self, i);
        if (!model)
            continue;
        const histogram_t *h = &model->histograms[id];
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= kind->n_bounds; b++) {
            cumulative += h->buckets[b];
            fprintf (f, "%s_bucket{model=\"", kind->name);
            s_put_label (f, model->label);
            fputs ("\",le=\"", f);
            s_put_number (f, b < kind->n_bounds ? kind->bounds[b] : INFINITY);
            fprintf (f, "\"} %" PRIu64 "\n", cumulative);
        }
        fprintf (f, "%s_sum{model=\"", kind->name);
        s_put_label (f, model->label);
        fputs ("\"} ", f);
        s_put_number (f, h->sum);
        fprintf (f, "\n%s_count{model=\"", kind->name);
        s_put_label (f, model->label);
        fprintf (f, "\"} %" PRIu64 "\n", h->count);
    }
}

typedef enum { G_QUEUED, G_IN_FLIGHT, G_QUEUE_WAIT, G_QUEUE_WAIT_P99 } model_gauge_t;

//  One gauge line per model that has gauges
static void s_put_model_gauges (metrics_t *self, FILE *f, const char *name, model_gauge_t which)
{
    for (size_t i = 0; i <= self->n_models; i++) {
        metrics_model_t *model = s_model_at (self, i);
        if (!model || !model->has_gauges)
            continue;
        fprintf (f, "%s{model=\"", name);
        s_put_label (f, model->label);
        fputs ("\"} ", f);
        switch (which) {
        case G_QUEUED: fprintf (f, "%zu", model->queued); break;
        case G_IN_FLIGHT: fprintf (f, "%zu", model->in_flight); break;
        case G_QUEUE_WAIT: s_put_number (f, model->queue_wait); break;
        case G_QUEUE_WAIT_P99: s_put_number (f, s_wait_p99 (self, model)); break;
        }
        fputc ('\n', f);
    }
}

//  The per-worker gauges, and the totals over the workers that serve
static void s_put_worker_gauges (metrics_t *self, FILE *f)
{
    static const char *names[] = {"amaas_worker_in_flight", "amaas_worker_credit"};
    static const char *helps[] = {"Jobs a worker holds.", "Jobs a worker may hold at once."};
    for (size_t g = 0; g < 2; g++) {
        s_put_header (f, names[g], "gauge", helps[g]);
        for (size_t i = 0; i < self->n_worker_gauges; i++) {
            const metrics_worker_t *w = &self->worker_gauges[i];
            fprintf (f, "%s{worker=\"", names[g]);
            s_put_label (f, w->id);
            fputs ("\",host=\"", f);
            s_put_label (f, w->host);
            fprintf (f, "\",pid=\"%" PRIu32 "\"} ", w->pid);
            if (g == 0)
                fprintf (f, "%zu\n", w->held);
            else
                fprintf (f, "%" PRIu32 "\n", w->credit);
        }
    }
    size_t held = 0, serving = 0;
    uint64_t credit = 0;
    for (size_t i = 0; i < self->n_worker_gauges; i++) {
        const metrics_worker_t *w = &self->worker_gauges[i];
        if (w->draining)
            continue;
        serving++;
        held += w->held;
        credit += w->credit;
    }
    s_put_header (f, "amaas_busy_ratio", "gauge",
                  "Jobs held over the credit of the workers that serve (0 without any).");
    fputs ("amaas_busy_ratio ", f);
    s_put_number (f, credit ? (double)held / (double)credit : 0);
    fputc ('\n', f);
    s_put_header (f, "amaas_in_flight_per_worker", "gauge",
                  "Jobs held per worker that serves, the mean (0 without any).");
    fputs ("amaas_in_flight_per_worker ", f);
    s_put_number (f, serving ? (double)held / (double)serving : 0);
    fputc ('\n', f);
}

char *metrics_render (metrics_t *self)
{
    assert (self);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream (&text, &size);
    if (!f)
        return NULL;
    s_put_header (f, "amaas_jobs_total", "counter", "Jobs answered, by model and code.");
    for (size_t i = 0; i <= self->n_models; i++) {
        metrics_model_t *model = s_model_at (self, i);
        for (size_t c = 0; model && c < self->n_codes; c++) {
            if (!model->jobs[c])
                continue;
            fputs ("amaas_jobs_total{model=\"", f);
            s_put_label (f, model->label);
            fputs ("\",code=\"", f);
            s_put_label (f, self->codes[c]);
            fprintf (f, "\"} %" PRIu64 "\n", model->jobs[c]);
        }
    }
    for (histogram_id_t id = 0; id < N_HISTOGRAMS; id++)
        s_put_histograms (self, f, id);
    s_put_header (f, "amaas_queue_depth", "gauge", "Jobs waiting in the broker, by model.");
    s_put_model_gauges (self, f, "amaas_queue_depth", G_QUEUED);
    s_put_header (f, "amaas_jobs_in_flight", "gauge", "Jobs held by workers, by model.");
    s_put_model_gauges (self, f, "amaas_jobs_in_flight", G_IN_FLIGHT);
    s_put_header (f, "amaas_queue_wait_seconds", "gauge",
                  "How long the oldest job waiting in the broker has waited, by model (0: none "
                  "waits).");
    s_put_model_gauges (self, f, "amaas_queue_wait_seconds", G_QUEUE_WAIT);
    s_put_header (f, "amaas_queue_wait_p99_seconds", "gauge",
                  "99th percentile of the queue waits of the jobs answered in the last " STRINGIFY (
                      METRICS_WAIT_WINDOW_S) " s, by model (0: none).");
    s_put_model_gauges (self, f, "amaas_queue_wait_p99_seconds", G_QUEUE_WAIT_P99);
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } counts[] = {
        {"amaas_jobs_accepted_total", "counter", "REQUESTs that became new jobs.",
         offsetof (metrics_counts_t, accepted)},
        {"amaas_jobs_deduplicated_total", "counter",
         "REQUESTs sent again for a job queued or computing, attached to it (not computed again).",
         offsetof (metrics_counts_t, deduplicated)},
        {"amaas_jobs_cancelled_total", "counter", "Jobs their client gave up (CANCEL).",
         offsetof (metrics_counts_t, cancelled)},
        {"amaas_jobs_computed_total", "counter",
         "Jobs a worker computed (RESULTs with outputs, late ones included).",
         offsetof (metrics_counts_t, computed)},
        {"amaas_model_load_failures", "gauge",
         "Model files the connected workers failed to load or reload since they started.",
         offsetof (metrics_counts_t, load_failures)},
    };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        s_put_header (f, counts[i].name, counts[i].type, counts[i].help);
        fprintf (f, "%s %" PRIu64 "\n", counts[i].name,
                 *(const uint64_t *)(const void *)((const char *)&self->counts + counts[i].offset));
    }
    s_put_header (f, "amaas_workers", "gauge", "Workers connected to the broker.");
    fprintf (f, "amaas_workers %zu\n", self->workers);
    s_put_worker_gauges (self, f);
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    s_put_header (f, "amaas_uptime_seconds", "gauge", "Seconds since the broker started.");
    fputs ("amaas_uptime_seconds ", f);
    s_put_number (f, (double)(now.tv_sec - self->started.tv_sec) +
                         (double)(now.tv_nsec - self->started.tv_nsec) / 1e9);
    fputc ('\n', f);
    bool failed = ferror (f) != 0;
    if (fclose (f) || failed) {
        free (text);
        return NULL;
    }
    return text;
}

int metrics_publish (metrics_t *self)
{
    assert (self);
    char *text = metrics_render (self);
    if (!text)
        return -1;
    size_t size = strlen (text);
    pthread_mutex_lock (&self->lock);
    char *old = self->text;
    self->text = text;
    self->text_size = size;
    pthread_mutex_unlock (&self->lock);
    free (old);
    return 0;
}

//  libmicrohttpd's request handler, on the server's thread
static mhd_result_t s_on_request (void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
    metrics_t *self = cls;
    static char not_found[] = "not found: the metrics are at /metrics\n";
    static char not_allowed[] = "method not allowed: use GET\n";
    struct MHD_Response *response;
    unsigned int status = MHD_HTTP_OK;
    if (strcmp (method, MHD_HTTP_METHOD_GET) != 0 && strcmp (method, MHD_HTTP_METHOD_HEAD) != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        response = MHD_create_response_from_buffer (strlen (not_allowed), not_allowed,
                                                    MHD_RESPMEM_PERSISTENT);
        if (response)
            MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    } else if (strcmp (url, "/metrics") != 0) {
        status = MHD_HTTP_NOT_FOUND;
        response =
            MHD_create_response_from_buffer (strlen (not_found), not_found, MHD_RESPMEM_PERSISTENT);
    } else {
        pthread_mutex_lock (&self->lock);
        response =
            MHD_create_response_from_buffer (self->text_size, self->text, MHD_RESPMEM_MUST_COPY);
        pthread_mutex_unlock (&self->lock);
    }
    if (!response)
        return MHD_NO; //  out of memory: the connection is closed
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE,
                             status == MHD_HTTP_OK ? CONTENT_TYPE : "text/plain; charset=utf-8");
    mhd_result_t rc = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return rc;
}

//  Starts the HTTP server on "ADDRESS:PORT".  Returns 0, or -1 with the
//  reason in err.
static int s_start_server (metrics_t *self, const char *listen, char *err, size_t err_size)
{
    const char *colon = strrchr (listen, ':');
    char *end;
    long port = colon ? strtol (colon + 1, &end, 10) : -1;
    if (!colon || colon[1] == 0 || *end || port < 0 || port > 65535) {
        snprintf (err, err_size, "'%s' is not ADDRESS:PORT (e.g. 127.0.0.1:9464)", listen);
        return -1;
    }
    char host[256];
    const char *start = listen;
    size_t host_len = (size_t)(colon - listen);
    if (host_len >= 2 && listen[0] == '[' && colon[-1] == ']') { //  [::1]:9464
        start++;
        host_len -= 2;
    }
    if (host_len == 0 || host_len >= sizeof host) {
        snprintf (err, err_size, "'%s' is not ADDRESS:PORT (e.g. 127.0.0.1:9464)", listen);
        return -1;
    }
    memcpy (host, start, host_len);
    host[host_len] = 0;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    int gai = getaddrinfo (host, NULL, &hints, &found);
    if (gai) {
        snprintf (err, err_size, "cannot resolve '%s': %s", host, gai_strerror (gai));
        return -1;
    }
    struct sockaddr_storage address;
    memcpy (&address, found->ai_addr, found->ai_addrlen);
    bool ipv6 = found->ai_family == AF_INET6;
    freeaddrinfo (found);
    if (ipv6)
        ((struct sockaddr_in6 *)&address)->sin6_port = htons ((uint16_t)port);
    else
        ((struct sockaddr_in *)&address)->sin_port = htons ((uint16_t)port);

    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | (ipv6 ? MHD_USE_IPv6 : 0);
    errno = 0;
    self->daemon = MHD_start_daemon (
        flags, (uint16_t)port, NULL, NULL, s_on_request, self, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&address, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    if (!self->daemon) {
        snprintf (err, err_size, "cannot serve metrics on %s: %s", listen,
                  errno ? strerror (errno) : "libmicrohttpd could not start");
        return -1;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : (int)port;
    return 0;
}

metrics_t *metrics_new (const char *listen, char *err, size_t err_size)
{
    metrics_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, err_size, "out of memory");
        return NULL;
    }
    clock_gettime (CLOCK_MONOTONIC, &self->started);
    //  100 us x 2^(i/4), without libm: a step of 2^(1/4), exact at each doubling
    for (size_t i = 0; i < WAIT_BUCKETS - 1; i++)
        self->wait_bounds[i] = i < WAIT_STEPS ? WAIT_MIN_S * s_quarter_powers[i]
                                              : 2 * self->wait_bounds[i - WAIT_STEPS];
    self->by_label = idmap_new ();
    if (!self->by_label) {
        snprintf (err, err_size, "out of memory");
        free (self);
        return NULL;
    }
    if (pthread_mutex_init (&self->lock, NULL)) {
        snprintf (err, err_size, "cannot create a mutex");
        idmap_destroy (&self->by_label);
        free (self);
        return NULL;
    }
    //  The server serves a complete exposition from the first request on
    if (metrics_publish (self)) {
        snprintf (err, err_size, "out of memory");
        goto err;
    }
    if (listen && s_start_server (self, listen, err, err_size))
        goto err;
    return self;
err:
    metrics_destroy (&self);
    return NULL;
}

void metrics_destroy (metrics_t **self_p)
{
    metrics_t *self = *self_p;
    if (!self)
        return;
    if (self->daemon)
        MHD_stop_daemon (self->daemon);
    for (size_t i = 0; i <= METRICS_MAX_MODELS; i++)
        free (self->models[i]);
    idmap_destroy (&self->by_label);
    free (self->worker_gauges);
    pthread_mutex_destroy (&self->lock);
    free (self->text);
    free (self);
    *self_p = NULL;
}

int metrics_port (metrics_t *self)
{
    assert (self);
    return self->daemon ? self->port : 0;
}
