/*  control.h - answers of the broker's control commands (status, workers,
    models), as msgpack maps for the CONTROL_REPLY payload.  The commands
    themselves arrive on the control endpoint (broker.c).
*/
#ifndef AMAAS_CONTROL_H_INCLUDED
#define AMAAS_CONTROL_H_INCLUDED

#include <czmq.h>

#include "dispatch.h"

typedef struct {
    int64_t started_ms;    //  monotonic time the broker started
    uint64_t answered[32]; //  jobs answered, by code (OK = 0)
} control_stats_t;

//  {uptime_s, jobs: {OK: n, NOT_FOUND: n, ...}, queued: {model: n}, in_flight,
//  workers, models}.  NULL on out-of-memory.
zframe_t *control_status (dispatch_t *dispatch, const control_stats_t *stats, int64_t now_ms);

//  {workers: [{id, host, pid, models: [..], credit, in_flight, done,
//  last_heartbeat_ms, draining}]}.  NULL on out-of-memory.
zframe_t *control_workers (dispatch_t *dispatch, int64_t now_ms);

//  {models: [{name, version, width, workers, queued}]}.  NULL on out-of-memory.
zframe_t *control_models (dispatch_t *dispatch);

#endif
