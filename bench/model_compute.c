/*  model_compute.c - what a worker's compute costs on one model, without
    messaging: the amaas side of scripts/bench's compute comparisons with the
    frameworks' own predictors (XGBoost inplace_predict, scikit-learn predict,
    PyTorch eager).

    model_compute MODEL.amm INPUT.f64 [--rows N] [--repeats R] [--min-time S]
    model_compute GRAPH.amm [--rows N] [--dim NAME=VALUE]... [--repeats R]
                  [--min-time S] [--warmup W] [--seed S]

    Loads MODEL.amm as amaas-worker does (worker/model.h), reads INPUT.f64
    (raw little-endian FP64 values, a multiple of the model's input width:
    the rows the framework's side gets too), and times model_run on batches
    of --rows rows (default 256) taken in turn from the input, on one thread,
    with one workspace (as a worker's compute thread).  The input is
    converted from FP64 inside the timed call, as a served job's is.  One
    repeat is as many batches as fill --min-time seconds (default 0.5); the
    figure is the median of --repeats repeats (default 5).  Prints one JSON
    object: {"model", "rows", "batch_us", "rows_per_s", "repeats"}.

    A graph model (format_version 2) takes no input file: model_compute
    generates each input itself, of shape [--rows, ...] with its named
    dimensions set by --dim (e.g. --dim sequence=128): INT64 inputs random
    in [0, index_bound) when the input indexes a table (token ids), all 1
    for an input whose name contains "mask" (any case), else 0; FP32 inputs
    random in [-1, 1).  Each timed run is what a worker's compute thread
    does for a batch: graph_prepare (the plan, cached after the first run),
    the inputs copied from the request's buffers into the plan's, and
    graph_execute.  One repeat is as many runs as fill --min-time seconds
    (at least one), after --warmup runs (default 3).  The JSON object also
    holds "shapes" (the inputs') and "workspace_bytes".
*/
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "timing.h"

#include "graph.h"
#include "model.h"

#define MAX_DIM_ARGS 16
#define MAX_INPUT_BYTES ((size_t)1 << 32) //  of one generated input: 4 GiB

//  A --dim NAME=VALUE
typedef struct {
    const char *name;
    size_t name_len;
    int64_t value;
} dim_arg_t;

static void s_usage (FILE *out)
{
    fprintf (out, "usage: model_compute MODEL.amm INPUT.f64 [--rows N] [--repeats R] "
                  "[--min-time S]\n"
                  "       model_compute GRAPH.amm [--rows N] [--dim NAME=VALUE]... [--repeats R] "
                  "[--min-time S] [--warmup W] [--seed S]\n");
}

//  xorshift64*: the generated inputs, the same for a seed everywhere
static uint64_t s_random (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ULL;
}

//  True when name contains "mask", in any case.  Cannot fail.
static int s_is_mask (const char *name)
{
    for (const char *c = name; *c; c++)
        if (strncasecmp (c, "mask", 4) == 0)
            return 1;
    return 0;
}

//  Fills shape (dimension 0 = rows) of graph input io from the --dim
//  values.  Returns 0, or -1 with a message when a named dimension is not
//  given or the input is too large.
static int s_input_shape (const graph_io_t *io, size_t rows, const dim_arg_t *dims, int n_dims,
                          int64_t *shape, size_t *bytes)
{
    size_t elements = rows;
    shape[0] = (int64_t)rows;
    for (int d = 1; d < io->ndim; d++) {
        shape[d] = io->dims[d];
        if (io->dims[d] < 0) {
            shape[d] = 0;
            for (int k = 0; k < n_dims; k++)
                if (strlen (io->dim_names[d]) == dims[k].name_len &&
                    memcmp (io->dim_names[d], dims[k].name, dims[k].name_len) == 0)
                    shape[d] = dims[k].value;
            if (shape[d] == 0) {
                fprintf (stderr,
                         "model_compute: input '%s': set its dimension '%s' with --dim %s=N\n",
                         io->name, io->dim_names[d], io->dim_names[d]);
                return -1;
            }
        }
        if ((size_t)shape[d] > MAX_INPUT_BYTES / 8 / elements) {
            fprintf (stderr, "model_compute: input '%s' would be over %zu bytes\n", io->name,
                     MAX_INPUT_BYTES);
            return -1;
        }
        elements *= (size_t)shape[d];
    }
    *bytes = elements * (io->datatype == AMAAS_INT64 ? 8 : 4);
    return 0;
}

//  Times a graph model as the module doc says.  Returns the exit status.
static int s_run_graph (model_t *model, const graph_t *graph, size_t rows, const dim_arg_t *dims,
                        int n_dims, int repeats, double min_time, int warmup, uint64_t seed)
{
    size_t n_inputs = graph_input_count (graph);
    int64_t shapes[GRAPH_MAX_INPUTS][GRAPH_MAX_DIMS] = {{0}};
    void *requests[GRAPH_MAX_INPUTS] = {NULL}; //  each input as a request brings it
    size_t bytes[GRAPH_MAX_INPUTS] = {0};
    uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
    int rc = 1;
    graph_ws_t *ws = graph_ws_new ();
    double *times = calloc ((size_t)repeats, sizeof (double));
    if (!ws || !times) {
        fprintf (stderr, "model_compute: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < n_inputs; i++) {
        const graph_io_t *io = graph_input (graph, i);
        if (s_input_shape (io, rows, dims, n_dims, shapes[i], &bytes[i]))
            goto done;
        requests[i] = malloc (bytes[i]);
        if (!requests[i]) {
            fprintf (stderr, "model_compute: out of memory for input '%s'\n", io->name);
            goto done;
        }
        if (io->datatype == AMAAS_INT64) {
            int64_t *v = requests[i];
            int mask = s_is_mask (io->name);
            for (size_t k = 0; k < bytes[i] / 8; k++)
                v[k] = mask ? 1
                       : io->index_bound > 0
                           ? (int64_t)(s_random (&state) % (uint64_t)io->index_bound)
                           : 0;
        } else {
            float *v = requests[i];
            for (size_t k = 0; k < bytes[i] / 4; k++)
                v[k] = (float)((double)(s_random (&state) >> 11) / 9007199254740992.0 * 2 - 1);
        }
    }
    char err[512];
    model_output_t outputs[GRAPH_MAX_OUTPUTS];
    int64_t runs = 0;
    for (int r = warmup ? -1 : 0; r < repeats; r++) {
        //  r == -1: the warm-up (the plan made, buffers grown, caches filled)
        int64_t count = 0;
        double start = bench_now (), now;
        do {
            void *inputs[GRAPH_MAX_INPUTS];
            int failed = graph_prepare (graph, ws, (const int64_t (*)[GRAPH_MAX_DIMS])shapes,
                                        inputs, err, sizeof err);
            if (!failed) {
                for (size_t i = 0; i < n_inputs; i++)
                    memcpy (inputs[i], requests[i], bytes[i]);
                failed = graph_execute (graph, ws, outputs, err, sizeof err);
            }
            if (failed) {
                fprintf (stderr, "model_compute: %s\n", err);
                goto done;
            }
            count++;
            now = bench_now ();
        } while (r < 0 ? count < warmup : now - start < min_time);
        if (r >= 0)
            times[r] = (now - start) / (double)count;
        runs += count;
    }
    double batch = bench_median (times, (size_t)repeats);
    printf ("{\"model\": \"%s\", \"rows\": %zu, \"shapes\": [", model_name (model), rows);
    for (size_t i = 0; i < n_inputs; i++) {
        printf ("%s[", i ? ", " : "");
        for (int d = 0; d < graph_input (graph, i)->ndim; d++)
            printf ("%s%" PRId64, d ? ", " : "", shapes[i][d]);
        printf ("]");
    }
    printf ("], \"batch_us\": %.3f, \"rows_per_s\": %.2f, \"repeats\": %d, \"runs\": %" PRId64
            ", \"workspace_bytes\": %zu}\n",
            batch * 1e6, (double)rows / batch, repeats, runs, graph_ws_size (ws));
    rc = 0;
done:
    for (size_t i = 0; i < n_inputs; i++)
        free (requests[i]);
    free (times);
    graph_ws_destroy (&ws);
    return rc;
}

//  The whole file, or NULL with a message.
static double *s_read_input (const char *path, size_t *count)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        fprintf (stderr, "model_compute: %s: %s\n", path, strerror (errno));
        return NULL;
    }
    fseek (file, 0, SEEK_END);
    long size = ftell (file);
    fseek (file, 0, SEEK_SET);
    double *data = size > 0 ? malloc ((size_t)size) : NULL;
    if (!data || fread (data, 1, (size_t)size, file) != (size_t)size) {
        fprintf (stderr, "model_compute: %s: cannot read %ld bytes\n", path, size);
        free (data);
        fclose (file);
        return NULL;
    }
    fclose (file);
    *count = (size_t)size / sizeof (double);
    return data;
}

int main (int argc, char **argv)
{
    static const struct option options[] = {
        {"rows", required_argument, NULL, 'r'},     {"repeats", required_argument, NULL, 'n'},
        {"min-time", required_argument, NULL, 't'}, {"dim", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},   {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    size_t rows = 256;
    int repeats = 5;
    double min_time = 0.5;
    int warmup = 3;
    uint64_t seed = 1;
    dim_arg_t dims[MAX_DIM_ARGS];
    int n_dims = 0;
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'r': rows = strtoul (optarg, NULL, 10); break;
        case 'n': repeats = atoi (optarg); break;
        case 't': min_time = atof (optarg); break;
        case 'w': warmup = atoi (optarg); break;
        case 's': seed = strtoull (optarg, NULL, 10); break;
        case 'd': {
            const char *eq = strchr (optarg, '=');
            char *end = NULL;
            long long value = eq ? strtoll (eq + 1, &end, 10) : 0;
            if (!eq || eq == optarg || !end || *end || end == eq + 1 || value < 1 ||
                value > (1 << 24) || n_dims == MAX_DIM_ARGS) {
                fprintf (stderr,
                         "model_compute: --dim wants NAME=N, N in 1 .. 2^24 (at most "
                         "%d), got '%s'\n",
                         MAX_DIM_ARGS, optarg);
                return 2;
            }
            dims[n_dims++] = (dim_arg_t){optarg, (size_t)(eq - optarg), value};
            break;
        }
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
    }
    if (argc - optind < 1 || argc - optind > 2 || rows == 0 || rows > (1 << 24) || repeats < 1 ||
        repeats > 100 || !(min_time >= 0) || warmup < 0) {
        s_usage (stderr);
        return 2;
    }
    char err[512];
    model_t *model = model_load (argv[optind], err, sizeof err);
    if (!model) {
        fprintf (stderr, "model_compute: %s\n", err);
        return 1;
    }
    const graph_t *graph = model_graph (model);
    if (graph) {
        if (argc - optind != 1) {
            fprintf (stderr,
                     "model_compute: %s is a graph model: it takes no input file (it "
                     "makes its inputs)\n",
                     argv[optind]);
            model_destroy (&model);
            return 2;
        }
        int rc = s_run_graph (model, graph, rows, dims, n_dims, repeats, min_time, warmup, seed);
        model_destroy (&model);
        return rc;
    }
    if (argc - optind != 2 || n_dims) {
        s_usage (stderr);
        model_destroy (&model);
        return 2;
    }
    size_t count = 0;
    double *input = s_read_input (argv[optind + 1], &count);
    if (!input)
        return 1;
    size_t width = model_input_width (model);
    size_t available = count / width;
    if (count % width || available < rows) {
        fprintf (stderr, "model_compute: %s holds %zu values: not rows of %zu, or fewer than %zu\n",
                 argv[optind + 1], count, width, rows);
        return 1;
    }
    model_workspace_t *ws = model_workspace_new ();
    model_output_t outputs[MODEL_MAX_OUTPUTS];
    double *times = calloc ((size_t)repeats, sizeof (double));
    size_t offset = 0; //  next batch's first row
    //  Warm-up: buffers grow to their size, caches fill
    for (int i = 0; i < 3; i++)
        if (model_run (model, ws, AMAAS_FP64, input, rows, outputs, err, sizeof err)) {
            fprintf (stderr, "model_compute: %s\n", err);
            return 1;
        }
    for (int r = 0; r < repeats; r++) {
        size_t batches = 0;
        double start = bench_now (), now;
        do {
            if (offset + rows > available)
                offset = 0;
            model_run (model, ws, AMAAS_FP64, input + offset * width, rows, outputs, err,
                       sizeof err);
            offset += rows;
            batches++;
        } while ((now = bench_now ()) - start < min_time);
        times[r] = (now - start) / (double)batches;
    }
    double batch = bench_median (times, (size_t)repeats);
    printf ("{\"model\": \"%s\", \"rows\": %zu, \"batch_us\": %.3f, \"rows_per_s\": %.1f, "
            "\"repeats\": %d}\n",
            model_name (model), rows, batch * 1e6, (double)rows / batch, repeats);
    free (times);
    free (input);
    model_workspace_destroy (&ws);
    model_destroy (&model);
    return 0;
}
