/*  control.h - answers of the broker's control commands (status, workers,
    models), as msgpack maps for the CONTROL_REPLY payload.  The commands
    themselves arrive on the control endpoint (broker.c).
*/
#ifndef AMAAS_CONTROL_H_INCLUDED
#define AMAAS_CONTROL_H_INCLUDED

#include <czmq.h>

#include "dispatch.h"
#include "metrics.h"

typedef struct {
    int64_t started_ms;    //  monotonic time the broker started
    uint64_t answered[32]; //  jobs answered, by code (OK = 0)
} control_stats_t;

//  {uptime_s, jobs: {OK: n, NOT_FOUND: n, ...}, queued: {model: n},
//  queue_wait_s: {model: s}, queue_wait_p99_s: {model: s}, in_flight,
//  workers, serving_workers, busy_ratio, in_flight_per_worker, models}: a
//  model's versions add up (the wait is the oldest job's, the p99 that of
//  `metrics`, which knows the recent waits).  NULL on out-of-memory.
zframe_t *control_status (dispatch_t *dispatch, metrics_t *metrics, const control_stats_t *stats,
                          int64_t now_ms);

//  {workers: [{id, host, pid, models: [..], credit, in_flight, done,
//  last_heartbeat_ms, draining}]}.  NULL on out-of-memory.
zframe_t *control_workers (dispatch_t *dispatch, int64_t now_ms);

//  {models: [{name, version, width, workers, queued}]}.  NULL on out-of-memory.
zframe_t *control_models (dispatch_t *dispatch);

#endif
