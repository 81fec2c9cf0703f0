/*  metrics.h - the broker's Prometheus metrics, served over HTTP.

    The broker thread counts every answered job and sets the gauges; about
    once a second it publishes them, rendered as Prometheus text, and the
    HTTP server's own thread serves that text at GET /metrics.  The HTTP
    thread never reads the live counters, so nothing on the broker's hot
    path takes a lock or allocates (a model's counters are allocated once,
    the first time the model is seen).

    Metrics: amaas_jobs_total{model,code}; histograms amaas_queue_seconds,
    amaas_compute_seconds, amaas_latency_seconds and amaas_batch_size, by
    model; gauges amaas_queue_depth{model}, amaas_jobs_in_flight{model},
    amaas_workers, amaas_uptime_seconds; counters of the job lifecycle
    (amaas_jobs_accepted_total, amaas_jobs_deduplicated_total,
    amaas_jobs_cancelled_total, amaas_jobs_computed_total) and the gauge
    amaas_model_load_failures.  For autoscalers (docs/OPERATIONS.md
    "Autoscaling"): amaas_queue_wait_seconds{model} (how long the oldest
    queued job has waited), amaas_queue_wait_p99_seconds{model} (the 99th
    percentile of the queue waits of the jobs answered in the last
    METRICS_WAIT_WINDOW_S seconds), amaas_worker_in_flight and
    amaas_worker_credit{worker,host,pid}, amaas_busy_ratio and
    amaas_in_flight_per_worker (over the workers that serve, not drain).

    The recent queue waits are kept whatever the HTTP server does (the
    control socket's status reports them too): per model, a ring of
    METRICS_WAIT_WINDOW_S one-second slots, each a histogram of 4 buckets
    per doubling from 100 us; metrics_tick moves the ring on.

    Call every function from one thread, the broker's: there is no lock
    around the counters.  The HTTP thread only ever reads the published text.
*/
#ifndef AMAAS_METRICS_H_INCLUDED
#define AMAAS_METRICS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Distinct models counted; the jobs of any further model are counted
//  under model="(other)", so that clients sending made-up model names
//  cannot grow the broker's memory or the number of series without bound.
#define METRICS_MAX_MODELS 256

//  Seconds of queue waits that amaas_queue_wait_p99_seconds covers
#define METRICS_WAIT_WINDOW_S 10

typedef struct metrics_t metrics_t;

//  The broker's counts of the job lifecycle, since it started
typedef struct {
    uint64_t accepted;      //  REQUESTs that became new jobs (queued)
    uint64_t deduplicated;  //  REQUESTs for a job already queued or computing: attached to it
    uint64_t cancelled;     //  CANCELs for a live job
    uint64_t computed;      //  RESULTs with outputs from workers: model runs of a job
    uint64_t load_failures; //  model files the live workers failed to load (a gauge)
} metrics_counts_t;

//  New metrics.  With `listen` ("ADDRESS:PORT", e.g. "127.0.0.1:9464" or
//  "[::1]:9464"; port 0 takes a free port) an HTTP server is started on its
//  own thread, bound to that address only, that answers GET /metrics with
//  the text last published, and 404 for any other path.  With listen NULL
//  there is no server (metrics_render still works).  On error, NULL is
//  returned and the reason is written to err.
metrics_t *metrics_new (const char *listen, char *err, size_t err_size);

//  Stops the HTTP server and frees everything.  Nulls *self_p.
void metrics_destroy (metrics_t **self_p);

//  The TCP port the HTTP server listens on, or 0 without a server.
int metrics_port (metrics_t *self);

//  Counts one answered job of `model` with `code` ("OK", "NOT_FOUND", ...).
//  The durations are in seconds; a negative one was not observed (e.g. a
//  job that failed before it was dispatched has no compute time), as is a
//  batch of 0.  Allocates only the first time a model is seen; when that
//  fails, the job goes uncounted.  Cannot otherwise fail.
void metrics_observe_job (metrics_t *self, const char *model, const char *code, double queue_s,
                          double compute_s, double latency_s, unsigned batch);

//  Adds to the gauges of a model: jobs queued and jobs held by workers (for
//  its versions, one by one, after metrics_clear_models).  Cannot fail (as
//  metrics_observe_job, it may leave a new model out).
void metrics_add_model (metrics_t *self, const char *model, size_t queued, size_t in_flight);

//  Clears the gauges of every model (before they are set anew, so that a
//  model that is gone shows 0).  Cannot fail.
void metrics_clear_models (metrics_t *self);

//  Sets how long the oldest queued job of a model has waited, in seconds:
//  of its versions (set one by one after metrics_clear_models), the
//  longest counts.  Cannot fail (as metrics_add_model).
void metrics_set_model_wait (metrics_t *self, const char *model, double wait_s);

//  Moves the window of recent queue waits to now_ms (monotonic ms): the
//  jobs observed from now on count in the second of now_ms, and the seconds
//  METRICS_WAIT_WINDOW_S before it and older drop out.  Call it about once
//  a second.  Cannot fail.
void metrics_tick (metrics_t *self, int64_t now_ms);

//  The 99th percentile of the queue waits (the queue_s of
//  metrics_observe_job) of a model's jobs answered in the window, in
//  seconds: the upper bound of the bucket that holds it (at most 19 % high,
//  never above the longest wait seen; past about 105 s, the last bucket,
//  the longest wait), 0 when the window holds none.
//  Cannot fail.
double metrics_queue_wait_p99 (metrics_t *self, const char *model);

//  Forgets the workers of the per-worker gauges (before they are added
//  anew).  Cannot fail.
void metrics_clear_workers (metrics_t *self);

//  Adds a worker to the per-worker gauges: its id (the registry's key),
//  host and pid, its credit, the jobs it holds, whether it drains.  On
//  out-of-memory the worker is left out.  Cannot otherwise fail.
void metrics_add_worker (metrics_t *self, const char *id, const char *host, uint32_t pid,
                         uint32_t credit, size_t held, bool draining);

//  Sets the counts of the job lifecycle.  Cannot fail.
void metrics_set_counts (metrics_t *self, const metrics_counts_t *counts);

//  Sets the number of workers connected.  Cannot fail.
void metrics_set_workers (metrics_t *self, size_t workers);

//  The Prometheus text exposition (format 0.0.4) of the metrics now, a
//  string that belongs to the caller.  NULL on out-of-memory.
char *metrics_render (metrics_t *self);

//  Renders the metrics and makes that the text the HTTP server serves.
//  Returns 0, or -1 on out-of-memory (the previous text is served still).
int metrics_publish (metrics_t *self);

#endif
