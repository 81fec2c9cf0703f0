/*  metrics.h - the gateway's Prometheus metrics: requests by route and
    status, their durations by route, and the requests in flight.

    Routes are templates ("/v2/models/{name}/infer"), never raw paths, so
    that callers cannot grow the number of series.  Thread-safe: the
    HTTP threads count, GET /metrics renders.
*/
#ifndef AMAAS_GATEWAY_METRICS_H_INCLUDED
#define AMAAS_GATEWAY_METRICS_H_INCLUDED

#include <stddef.h>

//  The routes, as metrics label them
typedef enum {
    ROUTE_LIVE,
    ROUTE_READY,
    ROUTE_SERVER,
    ROUTE_MODEL,
    ROUTE_MODEL_VERSION,
    ROUTE_MODEL_READY,
    ROUTE_MODEL_VERSION_READY,
    ROUTE_INFER,
    ROUTE_INFER_VERSION,
    ROUTE_PREDICT,
    ROUTE_METRICS,
    ROUTE_OPENAPI,
    ROUTE_DOCS,
    ROUTE_DOCS_ASSET,
    ROUTE_OTHER,
    N_ROUTES
} route_t;

//  The template of a route, e.g. "/predict/{name}".  Never NULL.
const char *route_name (route_t route);

typedef struct gw_metrics_t gw_metrics_t;

//  New counters, all zero; NULL on out-of-memory.
gw_metrics_t *gw_metrics_new (void);
void gw_metrics_destroy (gw_metrics_t **self_p);

//  A request began / ended with HTTP status `code` after `seconds` (code 0:
//  ended unanswered, not counted; seconds < 0: not timed).
void gw_metrics_begin (gw_metrics_t *self);
void gw_metrics_end (gw_metrics_t *self, route_t route, unsigned code, double seconds);

//  The exposition text (Prometheus text format 0.0.4), to free; NULL on
//  out-of-memory.
char *gw_metrics_render (gw_metrics_t *self, size_t *size);

#endif
