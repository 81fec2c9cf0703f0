/*  catalog.h - the models a worker serves, loaded from its models folder,
    with their lifetimes.

    The catalog holds one entry per model loaded: the model, its batch
    settings (batch_model_t, what the compute thread reads) and a count of
    the jobs that point to it.  A rescan (catalog_rescan) compares each
    *.amm file of the folder with what was loaded from it (device, inode,
    size, modification time): a new or changed file is loaded and checked
    completely before it serves; only then does it replace what the same
    file served before, or appear next to the other versions of its name.
    A broken file is logged and counted, and whatever served before stays;
    a later change of that file is tried again.  A removed file's model is
    retired.

    A retired entry is not freed at once: jobs that the broker sent before
    it learnt of the change may still come for it, and those already here
    point to it.  It is freed when no job points to it AND, for each broker
    the worker connects to, either the broker has answered the READY that
    no longer listed it (ZeroMQ keeps order on a connection: no JOB for it
    is on its way after that answer) or the connection was replaced since.  Until then jobs asked
   for it are still served by it.

    Everything here runs on the I/O thread: references are plain counters.
*/
#ifndef AMAAS_CATALOG_H_INCLUDED
#define AMAAS_CATALOG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "batch.h"

typedef struct catalog_t catalog_t;

typedef struct {
    const char *dir;          //  models folder
    size_t max_batch;         //  default rows per batch
    uint64_t batch_delay_us;  //  default batch delay
    const char **model_batch; //  "NAME=ROWS[:DELAY_US]" overrides, NULL-terminated, or NULL
} catalog_config_t;

//  A new, empty catalog on config (which must outlive it).  NULL on
//  out-of-memory, or when an override does not parse (logged).
catalog_t *catalog_new (const catalog_config_t *config);

//  Frees every entry, whatever points to it, and nulls *self_p.  Call only
//  when no job is left.  Cannot fail.
void catalog_destroy (catalog_t **self_p);

//  Scans the folder and brings the catalog in line with it (above).
//  Returns true if what the worker serves changed or a new error was found
//  (announce it: READY), false otherwise.  A folder that cannot be read is
//  logged, counted as an error, and changes nothing.
bool catalog_rescan (catalog_t *self);

//  The model that serves a job for name and version (NULL or "": the
//  highest version served, by strverscmp), with a reference taken; NULL if
//  there is none (the caller answers UNAVAILABLE).  Entries retired whose
//  drop the broker has not acknowledged still serve.  Cannot fail otherwise.
const batch_model_t *catalog_resolve (catalog_t *self, const char *name, const char *version);

//  Drops a reference catalog_resolve took; frees the entry if it is
//  retired and may go.  Cannot fail.
void catalog_release (catalog_t *self, const batch_model_t *model);

//  Models served now.  Cannot fail.
size_t catalog_size (const catalog_t *self);

//  Model files refused since the start (loads and reloads).  Cannot fail.
uint32_t catalog_errors (const catalog_t *self);

//  Fills a READY header's models (name, version, width, mapped bytes),
//  sorted by name then version, and model_errors.  Returns 0, -1 on
//  out-of-memory (h unchanged).
int catalog_fill_ready (const catalog_t *self, codec_header_t *h);

//  The connection to broker number `broker` (0 .. DEFS_BROKERS_MAX - 1 of
//  the worker's list): a new one (retired entries need no answer on it), a
//  READY sent on it, the broker's answer to one.  Each frees what may go.
//  Cannot fail.
void catalog_connected (catalog_t *self, size_t broker);
void catalog_ready_sent (catalog_t *self, size_t broker);
void catalog_ready_answered (catalog_t *self, size_t broker);

//  Entries retired and not yet freed.  Cannot fail.
size_t catalog_retired (const catalog_t *self);

#endif
