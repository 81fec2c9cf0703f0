/*  catalog.c - the models a worker serves, with their lifetimes.

    Two lists: the files of the folder as last seen (name, identity, the
    entry loaded from it), and the entries (models loaded, serving or
    retired).  A rescan reads the folder in name order, loads what is new
    or changed, retires what a file no longer holds, and forgets the files
    that are gone.  Loading happens here, on the I/O thread: model_load
    maps the file and checks the sizes, shapes and types of its header and
    ops, without reading or copying the weights (they stay in the mapping,
    read when a job runs), so a 256 MiB model loads in milliseconds and
    heartbeats are not held up (tests/integration/test_memory.py prints
    how long).

    An entry's batch_model_t is its first member: the pointer jobs hold is the
    entry's, and catalog_release finds the entry from it.
*/
#define _GNU_SOURCE //  strverscmp
#include "catalog.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "amaas_defs.h"
#include "clock.h"
#include "list.h"
#include "compute.h"
#include "log.h"
#include "model.h"
#include "graph.h"

typedef struct entry_t entry_t;
struct entry_t {
    batch_model_t run;                          //  what jobs point to; first member
    list_node_t node;                           //  in the catalog's entries
    size_t refs;                                //  jobs pointing to it
    bool serving;                               //  announced (or to be); false: retired
    uint64_t drop_connection[DEFS_BROKERS_MAX]; //  retired, per broker, on this connection ...
    uint64_t drop_ready[DEFS_BROKERS_MAX]; //  ... before READY number drop_ready on it was sent
};

typedef struct file_t file_t;
struct file_t {
    list_node_t node;     //  in the catalog's files
    char *name;           //  file name in the folder
    dev_t dev;            //  identity when last looked at
    ino_t ino;            //
    off_t size;           //
    struct timespec mtim; //
    entry_t *entry;       //  what it serves, or NULL (never loaded)
    bool seen;            //  found by the scan at hand
};

typedef struct {
    char name[CODEC_NAME_MAX];
    size_t rows;
    uint64_t delay_us;
    bool has_delay;
} override_t;

struct catalog_t {
    const catalog_config_t *config;
    list_t entries;                            //  every entry (entry_t), newest first
    list_t files;                              //  files seen (file_t), in no order
    override_t *overrides;                     //  --model-batch
    size_t n_overrides;                        //
    uint32_t errors;                           //  files refused since the start
    uint64_t connection[DEFS_BROKERS_MAX];     //  connections made, per broker
    uint64_t ready_sent[DEFS_BROKERS_MAX];     //  READYs sent on its current connection
    uint64_t ready_answered[DEFS_BROKERS_MAX]; //  the broker's answers to them
};

catalog_t *catalog_new (const catalog_config_t *config)
{
    assert (config && config->dir);
    catalog_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = config;
    list_init (&self->entries);
    list_init (&self->files);
    size_t n = 0;
    while (config->model_batch && config->model_batch[n])
        n++;
    self->overrides = calloc (n ? n : 1, sizeof *self->overrides);
    if (!self->overrides)
        goto err;
    for (size_t i = 0; i < n; i++) {
        override_t *o = &self->overrides[i];
        unsigned long rows = 0, delay = 0;
        int fields = sscanf (config->model_batch[i], "%127[^=]=%lu:%lu", o->name, &rows, &delay);
        if (fields < 2 || rows < 1) {
            log_error ("bad --model-batch value=\"%s\" (want NAME=ROWS[:DELAY_US])",
                       config->model_batch[i]);
            goto err;
        }
        o->rows = rows;
        o->delay_us = delay;
        o->has_delay = fields == 3;
    }
    self->n_overrides = n;
    return self;
err:
    free (self->overrides);
    free (self);
    return NULL;
}

static void s_entry_free (entry_t *entry)
{
    model_destroy (&entry->run.model);
    free (entry);
}

void catalog_destroy (catalog_t **self_p)
{
    assert (self_p);
    catalog_t *self = *self_p;
    if (!self)
        return;
    entry_t *entry;
    LIST_FOREACH (entry, &self->entries, entry_t, node) {
        list_remove (&self->entries, &entry->node);
        s_entry_free (entry);
    }
    file_t *file;
    LIST_FOREACH (file, &self->files, file_t, node) {
        list_remove (&self->files, &file->node);
        free (file->name);
        free (file);
    }
    free (self->overrides);
    free (self);
    *self_p = NULL;
}

//  True if a retired entry may still be asked for: a broker has not
//  answered, on its current connection, the READY that dropped it.
static bool s_still_announced (const catalog_t *self, const entry_t *entry)
{
    for (size_t b = 0; b < DEFS_BROKERS_MAX; b++)
        if (entry->drop_connection[b] == self->connection[b] &&
            self->ready_answered[b] < entry->drop_ready[b])
            return true;
    return false;
}

//  Frees the retired entries that no job points to and no JOB can come for.
static void s_collect (catalog_t *self)
{
    entry_t *entry;
    LIST_FOREACH (entry, &self->entries, entry_t, node) {
        if (!entry->serving && entry->refs == 0 && !s_still_announced (self, entry)) {
            log_info ("model freed name=%s version=%s", model_name (entry->run.model),
                      model_version (entry->run.model));
            list_remove (&self->entries, &entry->node);
            s_entry_free (entry);
        }
    }
}

//  Retires an entry: it serves no new job once the broker knows.
static void s_retire (catalog_t *self, entry_t *entry)
{
    entry->serving = false;
    for (size_t b = 0; b < DEFS_BROKERS_MAX; b++) {
        entry->drop_connection[b] = self->connection[b];
        entry->drop_ready[b] = self->ready_sent[b] + 1;
    }
}

//  A new entry for a model loaded, with the batch settings of its name.
static entry_t *s_entry_new (catalog_t *self, model_t *model)
{
    entry_t *entry = calloc (1, sizeof *entry);
    if (!entry)
        return NULL;
    entry->run.model = model;
    entry->run.max_batch = self->config->max_batch;
    entry->run.batch_delay_us = self->config->batch_delay_us;
    for (size_t i = 0; i < self->n_overrides; i++)
        if (strcmp (self->overrides[i].name, model_name (model)) == 0) {
            entry->run.max_batch = self->overrides[i].rows;
            if (self->overrides[i].has_delay)
                entry->run.batch_delay_us = self->overrides[i].delay_us;
        }
    entry->run.inline_work = compute_inline_work (model, entry->run.batch_delay_us);
    entry->serving = true;
    return entry;
}

//  The entry serving name and version, other than except; NULL if none.
static entry_t *s_find_serving (catalog_t *self, const char *name, const char *version,
                                const entry_t *except)
{
    entry_t *e;
    LIST_FOREACH (e, &self->entries, entry_t, node) {
        if (e->serving && e != except && strcmp (model_name (e->run.model), name) == 0 &&
            strcmp (model_version (e->run.model), version) == 0)
            return e;
    }
    return NULL;
}

static file_t *s_find_file (catalog_t *self, const char *name)
{
    file_t *f;
    LIST_FOREACH (f, &self->files, file_t, node) {
        if (strcmp (f->name, name) == 0)
            return f;
    }
    return NULL;
}

static int s_compare_names (const void *a, const void *b)
{
    return strcmp (*(char *const *)a, *(char *const *)b);
}

//  The *.amm names of the folder, sorted, in a NULL-terminated array the
//  caller frees (names and array); NULL if the folder cannot be read or on
//  out-of-memory (logged).
static char **s_list_folder (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir) {
        log_error ("cannot open models folder path=%s error=\"%s\"", path, strerror (errno));
        return NULL;
    }
    size_t n = 0, size = 16;
    char **names = malloc (size * sizeof *names);
    struct dirent *entry;
    while (names && (entry = readdir (dir))) {
        size_t len = strlen (entry->d_name);
        if (len <= 4 || strcmp (entry->d_name + len - 4, ".amm") != 0)
            continue;
        if (n + 1 == size) {
            char **grown = realloc (names, 2 * size * sizeof *names);
            if (!grown)
                break;
            names = grown;
            size *= 2;
        }
        if (!(names[n] = strdup (entry->d_name)))
            break;
        n++;
    }
    bool complete = names && !entry;
    closedir (dir);
    if (!complete) {
        log_error ("out of memory listing models folder path=%s", path);
        for (size_t i = 0; names && i < n; i++)
            free (names[i]);
        free (names);
        return NULL;
    }
    qsort (names, n, sizeof names[0], s_compare_names);
    names[n] = NULL;
    return names;
}

//  Loads a new or changed file into a new entry that replaces the file's
//  old one.  Returns true if it serves now, false if refused (logged,
//  counted; what served before stays).
static bool s_load_file (catalog_t *self, file_t *file, const char *path)
{
    char err[512];
    uint64_t start_us = clock_now_us ();
    model_t *model = model_load (path, err, sizeof err);
    uint64_t load_us = clock_now_us () - start_us;
    if (!model) {
        log_error ("model refused path=%s error=\"%s\"", path, err);
        self->errors++;
        return false;
    }
    const char *name = model_name (model), *version = model_version (model);
    if (s_find_serving (self, name, version, file->entry)) {
        log_error ("model refused path=%s error=\"another file already holds model '%s' "
                   "version '%s'\"",
                   path, name, version);
        model_destroy (&model);
        self->errors++;
        return false;
    }
    if (catalog_size (self) >= CODEC_MAX_MODELS) {
        log_error ("model refused path=%s error=\"a worker serves at most %d models\"", path,
                   CODEC_MAX_MODELS);
        model_destroy (&model);
        self->errors++;
        return false;
    }
    entry_t *entry = s_entry_new (self, model);
    if (!entry) {
        log_error ("model refused path=%s error=\"out of memory\"", path);
        model_destroy (&model);
        self->errors++;
        return false;
    }
    list_prepend (&self->entries, &entry->node);
    entry_t *old = file->entry;
    log_info ("model loaded name=%s version=%s path=%s inputs=%zu outputs=%zu mapped=%zu "
              "load_us=%" PRIu64 "%s%s",
              name, version, path, model_input_width (model), model_output_count (model),
              model_mapped_bytes (model), load_us, old ? " replaces=" : "",
              old ? model_version (old->run.model) : "");
    if (old)
        s_retire (self, old);
    file->entry = entry;
    return true;
}

bool catalog_rescan (catalog_t *self)
{
    assert (self);
    const char *dir = self->config->dir;
    char **names = s_list_folder (dir);
    if (!names) {
        self->errors++;
        return true;
    }
    bool changed = false;
    file_t *file;
    LIST_FOREACH (file, &self->files, file_t, node) {
        file->seen = false;
    }
    for (size_t i = 0; names[i]; i++) {
        char path[4096];
        struct stat st;
        snprintf (path, sizeof path, "%s/%s", dir, names[i]);
        //  A file that went meanwhile, or that is no file, is not there
        if (stat (path, &st) || !S_ISREG (st.st_mode))
            continue;
        file = s_find_file (self, names[i]);
        if (file && file->dev == st.st_dev && file->ino == st.st_ino && file->size == st.st_size &&
            file->mtim.tv_sec == st.st_mtim.tv_sec && file->mtim.tv_nsec == st.st_mtim.tv_nsec) {
            file->seen = true;
            continue;
        }
        if (!file) {
            file = calloc (1, sizeof *file);
            if (!file || !(file->name = strdup (names[i]))) {
                free (file);
                log_error ("out of memory for model file path=%s", path);
                continue;
            }
            list_prepend (&self->files, &file->node);
        }
        file->seen = true;
        file->dev = st.st_dev;
        file->ino = st.st_ino;
        file->size = st.st_size;
        file->mtim = st.st_mtim;
        s_load_file (self, file, path);
        changed = true; //  a model more, or a new error
    }
    for (size_t i = 0; names[i]; i++)
        free (names[i]);
    free (names);
    //  Files gone: what they served is retired
    LIST_FOREACH (file, &self->files, file_t, node) {
        if (file->seen)
            continue;
        if (file->entry) {
            log_info ("model removed name=%s version=%s path=%s/%s",
                      model_name (file->entry->run.model), model_version (file->entry->run.model),
                      dir, file->name);
            s_retire (self, file->entry);
            changed = true;
        }
        list_remove (&self->files, &file->node);
        free (file->name);
        free (file);
    }
    s_collect (self);
    return changed;
}

//  True if version a is higher than b (GNU strverscmp: "2" < "10").
static bool s_higher (const entry_t *a, const entry_t *b)
{
    return strverscmp (model_version (a->run.model), model_version (b->run.model)) > 0;
}

const batch_model_t *catalog_resolve (catalog_t *self, const char *name, const char *version)
{
    assert (self && name);
    entry_t *best = NULL;
    entry_t *e;
    LIST_FOREACH (e, &self->entries, entry_t, node) {
        if (strcmp (model_name (e->run.model), name) != 0 ||
            (!e->serving && !s_still_announced (self, e)))
            continue;
        if (version && *version && strcmp (model_version (e->run.model), version) != 0)
            continue;
        //  What serves wins over what is retired, then the highest version
        if (!best || (e->serving && !best->serving) ||
            (e->serving == best->serving && s_higher (e, best)))
            best = e;
    }
    if (best)
        best->refs++;
    return best ? &best->run : NULL;
}

void catalog_release (catalog_t *self, const batch_model_t *model)
{
    if (!model)
        return;
    assert (self);
    entry_t *entry = (entry_t *)model;
    assert (entry->refs > 0); //  a reference catalog_resolve took
    entry->refs--;
    if (!entry->serving && entry->refs == 0)
        s_collect (self);
}

size_t catalog_size (const catalog_t *self)
{
    assert (self);
    size_t n = 0;
    const entry_t *e;
    LIST_FOREACH (e, &self->entries, const entry_t, node) {
        n += e->serving;
    }
    return n;
}

size_t catalog_retired (const catalog_t *self)
{
    assert (self);
    size_t n = 0;
    const entry_t *e;
    LIST_FOREACH (e, &self->entries, const entry_t, node) {
        n += !e->serving;
    }
    return n;
}

uint32_t catalog_errors (const catalog_t *self)
{
    assert (self);
    return self->errors;
}

static int s_compare_models (const void *a, const void *b)
{
    const codec_model_t *x = a, *y = b;
    int c = strcmp (x->name, y->name);
    return c ? c : strverscmp (x->version, y->version);
}

//  The elements per row of a declared shape (its dimensions after the
//  batch), as the protocol's `width` says it: 0 for a shape [rows], or
//  when a dimension is set by the request, or beyond a uint32.
static uint32_t s_row_width (const int64_t *shape, size_t ndim)
{
    if (ndim < 2)
        return 0;
    uint64_t width = 1;
    for (size_t d = 1; d < ndim; d++) {
        if (shape[d] < 1 || (uint64_t)shape[d] > UINT32_MAX)
            return 0;
        width *= (uint64_t)shape[d];
        if (width > UINT32_MAX)
            return 0;
    }
    return (uint32_t)width;
}

//  The metadata of a graph model (docs/PROTOCOL.md, READY): every input and
//  output with its shape; input, datatype and width those of the first
//  input.  The loader checked the names (1..127 bytes), datatypes, ranks
//  and dimensions.  The older keys carry names of at most
//  DEFS_TENSOR_NAME_MAX bytes, so that older peers, which refuse longer
//  ones, can read them: a longer first input's name leaves `input` out,
//  a longer output name leaves `outputs` out (inputs says it all).
static void s_fill_graph_meta (codec_model_t *entry, const graph_t *graph)
{
    codec_model_meta_t *meta = &entry->meta;
    size_t n = graph_input_count (graph);
    assert (n >= 1 && n <= CODEC_MODEL_INPUTS);
    meta->n_inputs = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const graph_io_t *io = graph_input (graph, i);
        codec_input_t *in = &meta->inputs[i];
        assert (io->ndim >= 1 && io->ndim <= CODEC_MODEL_DIMS);
        snprintf (in->name, sizeof in->name, "%s", io->name);
        in->datatype = io->datatype;
        in->ndim = (uint32_t)io->ndim;
        for (int d = 0; d < io->ndim; d++)
            in->shape[d] = d == 0 || io->dims[d] < 1 ? -1 : io->dims[d];
    }
    if (strlen (meta->inputs[0].name) <= DEFS_TENSOR_NAME_MAX)
        snprintf (meta->input, sizeof meta->input, "%s", meta->inputs[0].name);
    meta->datatype = meta->inputs[0].datatype;
    entry->width = s_row_width (meta->inputs[0].shape, meta->inputs[0].ndim);
    n = graph_output_count (graph);
    assert (n >= 1 && n <= CODEC_MODEL_OUTPUTS);
    meta->n_outputs = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const graph_io_t *io = graph_output (graph, i);
        codec_output_t *out = &meta->outputs[i];
        assert (io->ndim >= 1 && io->ndim <= CODEC_MODEL_DIMS);
        if (strlen (io->name) > DEFS_TENSOR_NAME_MAX) {
            memset (meta->outputs, 0, sizeof meta->outputs);
            meta->n_outputs = 0;
            break;
        }
        snprintf (out->name, sizeof out->name, "%s", io->name);
        out->datatype = io->datatype;
        out->ndim = (uint32_t)io->ndim;
        for (int d = 0; d < io->ndim; d++)
            out->shape[d] = d == 0 || io->dims[d] < 1 ? -1 : io->dims[d];
        out->width = s_row_width (out->shape, out->ndim);
    }
}

//  The width and metadata of a READY entry, from the model file's header.
//  A version-1 model has one input [rows, width] of the model's datatype,
//  and outputs [rows] or [rows, k]; the loader checked its names
//  (1..DEFS_TENSOR_NAME_MAX bytes), datatypes and output count, so what
//  the broker reads back is valid.
static void s_fill_meta (codec_model_t *entry, const model_t *m)
{
    const graph_t *graph = model_graph (m);
    if (graph) {
        s_fill_graph_meta (entry, graph);
        return;
    }
    codec_model_meta_t *meta = &entry->meta;
    entry->width = (uint32_t)model_input_width (m);
    snprintf (meta->input, sizeof meta->input, "%s", model_input_name (m));
    meta->datatype = model_dtype (m);
    meta->n_inputs = 1;
    codec_input_t *in = &meta->inputs[0];
    snprintf (in->name, sizeof in->name, "%s", model_input_name (m));
    in->datatype = meta->datatype;
    in->ndim = 2;
    in->shape[0] = -1;
    in->shape[1] = entry->width;
    size_t n = model_output_count (m);
    assert (n >= 1 && n <= CODEC_MODEL_OUTPUTS);
    meta->n_outputs = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        codec_output_t *out = &meta->outputs[i];
        snprintf (out->name, sizeof out->name, "%s", model_output_name (m, i));
        out->datatype = model_output_dtype (m, i);
        out->width = (uint32_t)model_output_width (m, i);
        out->ndim = out->width ? 2 : 1;
        out->shape[0] = -1;
        out->shape[1] = out->width; //  0 past ndim
    }
}

int catalog_fill_ready (const catalog_t *self, codec_header_t *h)
{
    assert (self && h);
    size_t n = catalog_size (self);
    codec_model_t *models = calloc (n ? n : 1, sizeof *models);
    if (!models)
        return -1;
    size_t i = 0;
    const entry_t *e;
    LIST_FOREACH (e, &self->entries, const entry_t, node) {
        if (e->serving) {
            const model_t *m = e->run.model;
            snprintf (models[i].name, CODEC_NAME_MAX, "%s", model_name (m));
            snprintf (models[i].version, CODEC_VERSION_MAX, "%s", model_version (m));
            models[i].mapped = model_mapped_bytes (m);
            s_fill_meta (&models[i], m);
            i++;
        }
    }
    assert (i == n);
    qsort (models, n, sizeof *models, s_compare_models);
    free (h->models);
    h->models = models;
    h->n_models = n;
    h->model_errors = self->errors;
    h->fields |= HDR_MODELS | HDR_MODEL_ERRORS;
    return 0;
}

void catalog_connected (catalog_t *self, size_t broker)
{
    assert (self && broker < DEFS_BROKERS_MAX);
    self->connection[broker]++;
    self->ready_sent[broker] = self->ready_answered[broker] = 0;
    s_collect (self);
}

void catalog_ready_sent (catalog_t *self, size_t broker)
{
    assert (self && broker < DEFS_BROKERS_MAX);
    self->ready_sent[broker]++;
}

void catalog_ready_answered (catalog_t *self, size_t broker)
{
    assert (self && broker < DEFS_BROKERS_MAX);
    if (self->ready_answered[broker] < self->ready_sent[broker])
        self->ready_answered[broker]++;
    s_collect (self);
}
