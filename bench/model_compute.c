/*  model_compute.c - what a worker's compute costs on one model, without
    messaging: the amaas side of scripts/bench's compute comparisons with the
    frameworks' own predictors (XGBoost inplace_predict, scikit-learn predict).

    model_compute MODEL.amm INPUT.f64 [--rows N] [--repeats R] [--min-time S]

    Loads MODEL.amm as amaas-worker does (worker/model.h), reads INPUT.f64
    (raw little-endian FP64 values, a multiple of the model's input width:
    the rows the framework's side gets too), and times model_run on batches
    of --rows rows (default 256) taken in turn from the input, on one thread,
    with one workspace (as a worker's compute thread).  The input is
    converted from FP64 inside the timed call, as a served job's is.  One
    repeat is as many batches as fill --min-time seconds (default 0.5); the
    figure is the median of --repeats repeats (default 5).  Prints one JSON
    object: {"model", "rows", "batch_us", "rows_per_s", "repeats"}.
*/
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

static double s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int s_compare_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void s_usage (FILE *out)
{
    fprintf (out, "usage: model_compute MODEL.amm INPUT.f64 [--rows N] [--repeats R] "
                  "[--min-time S]\n");
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
    static const struct option options[] = {{"rows", required_argument, NULL, 'r'},
                                            {"repeats", required_argument, NULL, 'n'},
                                            {"min-time", required_argument, NULL, 't'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    size_t rows = 256;
    int repeats = 5;
    double min_time = 0.5;
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'r': rows = strtoul (optarg, NULL, 10); break;
        case 'n': repeats = atoi (optarg); break;
        case 't': min_time = atof (optarg); break;
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
    }
    if (argc - optind != 2 || rows == 0 || repeats < 1 || repeats > 100 || !(min_time > 0)) {
        s_usage (stderr);
        return 2;
    }
    char err[512];
    model_t *model = model_load (argv[optind], err, sizeof err);
    if (!model) {
        fprintf (stderr, "model_compute: %s\n", err);
        return 1;
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
        double start = s_now (), now;
        do {
            if (offset + rows > available)
                offset = 0;
            model_run (model, ws, AMAAS_FP64, input + offset * width, rows, outputs, err,
                       sizeof err);
            offset += rows;
            batches++;
        } while ((now = s_now ()) - start < min_time);
        times[r] = (now - start) / (double)batches;
    }
    qsort (times, (size_t)repeats, sizeof (double), s_compare_double);
    double batch = times[repeats / 2];
    printf ("{\"model\": \"%s\", \"rows\": %zu, \"batch_us\": %.3f, \"rows_per_s\": %.1f, "
            "\"repeats\": %d}\n",
            model_name (model), rows, batch * 1e6, (double)rows / batch, repeats);
    free (times);
    free (input);
    model_workspace_destroy (&ws);
    model_destroy (&model);
    return 0;
}
