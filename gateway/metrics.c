/*  metrics.c - the gateway's Prometheus metrics.

    A fixed table of counters: per route, a count per HTTP status (the
    statuses the gateway answers are few; any other is counted under the
    last slot, rendered with its own code while it is the only one) and a
    duration histogram.  One mutex guards it all: a request takes it twice.
*/
#include "metrics.h"

#include <inttypes.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_routes[N_ROUTES] = {
    [ROUTE_LIVE] = "/v2/health/live",
    [ROUTE_READY] = "/v2/health/ready",
    [ROUTE_SERVER] = "/v2",
    [ROUTE_MODEL] = "/v2/models/{name}",
    [ROUTE_MODEL_VERSION] = "/v2/models/{name}/versions/{version}",
    [ROUTE_MODEL_READY] = "/v2/models/{name}/ready",
    [ROUTE_MODEL_VERSION_READY] = "/v2/models/{name}/versions/{version}/ready",
    [ROUTE_INFER] = "/v2/models/{name}/infer",
    [ROUTE_INFER_VERSION] = "/v2/models/{name}/versions/{version}/infer",
    [ROUTE_PREDICT] = "/predict/{name}",
    [ROUTE_METRICS] = "/metrics",
    [ROUTE_OPENAPI] = "/openapi.json",
    [ROUTE_DOCS] = "/docs",
    [ROUTE_DOCS_ASSET] = "/docs/swagger-ui/{file}",
    [ROUTE_OTHER] = "other",
};

//  The statuses counted each in their own series
static const unsigned s_codes[] = {200, 400, 401, 403, 404, 405, 408,
                                   413, 415, 429, 431, 500, 503, 504};
#define N_CODES (sizeof s_codes / sizeof s_codes[0])

static const double s_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25,   0.5,   1,      2.5,   5,    10,    30};
#define N_BOUNDS (sizeof s_bounds / sizeof s_bounds[0])

typedef struct {
    uint64_t codes[N_CODES + 1];    //  requests by status; last: any other
    unsigned other_code;            //  the status of the last slot, last seen
    uint64_t buckets[N_BOUNDS + 1]; //  durations by bucket (not cumulative); last: +Inf
    uint64_t count;                 //  durations observed
    double sum;                     //  their sum, seconds
} route_counts_t;

struct gw_metrics_t {
    pthread_mutex_t lock;
    route_counts_t routes[N_ROUTES];
    uint64_t in_flight; //  requests begun and not ended
};

const char *route_name (route_t route)
{
    return route < N_ROUTES ? s_routes[route] : "other";
}

gw_metrics_t *gw_metrics_new (void)
{
    gw_metrics_t *self = calloc (1, sizeof *self);
    if (self)
        pthread_mutex_init (&self->lock, NULL);
    return self;
}

void gw_metrics_destroy (gw_metrics_t **self_p)
{
    if (!*self_p)
        return;
    pthread_mutex_destroy (&(*self_p)->lock);
    free (*self_p);
    *self_p = NULL;
}

void gw_metrics_begin (gw_metrics_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->in_flight++;
    pthread_mutex_unlock (&self->lock);
}

void gw_metrics_end (gw_metrics_t *self, route_t route, unsigned code, double seconds)
{
    if (code == 0) { //  ended without an answer: no longer in flight, not counted
        pthread_mutex_lock (&self->lock);
        if (self->in_flight)
            self->in_flight--;
        pthread_mutex_unlock (&self->lock);
        return;
    }
    if (route >= N_ROUTES)
        route = ROUTE_OTHER;
    size_t c = 0;
    while (c < N_CODES && s_codes[c] != code)
        c++;
    size_t b = 0;
    while (b < N_BOUNDS && seconds > s_bounds[b])
        b++;
    pthread_mutex_lock (&self->lock);
    if (self->in_flight)
        self->in_flight--;
    route_counts_t *r = &self->routes[route];
    r->codes[c]++;
    if (c == N_CODES)
        r->other_code = code;
    if (seconds >= 0) {
        r->buckets[b]++;
        r->count++;
        r->sum += seconds;
    }
    pthread_mutex_unlock (&self->lock);
}

char *gw_metrics_render (gw_metrics_t *self, size_t *size)
{
    char *text = NULL;
    FILE *f = open_memstream (&text, size);
    if (!f)
        return NULL;
    pthread_mutex_lock (&self->lock);
    fputs ("# HELP amaas_gateway_requests_total HTTP requests answered, by route and status.\n"
           "# TYPE amaas_gateway_requests_total counter\n",
           f);
    for (size_t r = 0; r < N_ROUTES; r++)
        for (size_t c = 0; c <= N_CODES; c++)
            if (self->routes[r].codes[c])
                fprintf (f, "amaas_gateway_requests_total{route=\"%s\",code=\"%u\"} %" PRIu64 "\n",
                         s_routes[r], c < N_CODES ? s_codes[c] : self->routes[r].other_code,
                         self->routes[r].codes[c]);
    fputs ("# HELP amaas_gateway_request_duration_seconds Time from a request's headers to its "
           "answer, by route.\n"
           "# TYPE amaas_gateway_request_duration_seconds histogram\n",
           f);
    for (size_t r = 0; r < N_ROUTES; r++) {
        const route_counts_t *rc = &self->routes[r];
        if (!rc->count)
            continue;
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= N_BOUNDS; b++) {
            cumulative += rc->buckets[b];
            if (b < N_BOUNDS)
                fprintf (f,
                         "amaas_gateway_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                         "%" PRIu64 "\n",
                         s_routes[r], s_bounds[b], cumulative);
            else
                fprintf (f,
                         "amaas_gateway_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                         "%" PRIu64 "\n",
                         s_routes[r], cumulative);
        }
        fprintf (f, "amaas_gateway_request_duration_seconds_sum{route=\"%s\"} %.9g\n", s_routes[r],
                 rc->sum);
        fprintf (f, "amaas_gateway_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n",
                 s_routes[r], rc->count);
    }
    fprintf (f,
             "# HELP amaas_gateway_in_flight HTTP requests being served.\n"
             "# TYPE amaas_gateway_in_flight gauge\n"
             "amaas_gateway_in_flight %" PRIu64 "\n",
             self->in_flight);
    pthread_mutex_unlock (&self->lock);
    bool failed = ferror (f) != 0;
    if (fclose (f) || failed) {
        free (text);
        return NULL;
    }
    return text;
}
