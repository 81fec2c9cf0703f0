/*  sgemm_baseline.c - what BLIS alone computes on the layers of an MLP, the
    ceiling for amaas's compute.

    sgemm_baseline [--rows N] [--layers 256,1024,1024,10] [--repeats R]
                   [--min-time S]

    Times the bli_sgemm calls of one forward pass of a dense network (by
    default 256 -> 1024 -> 1024 -> 10) on a batch of --rows rows: row-major
    strides (row stride = columns, column stride = 1) and C = X W + C with
    beta = 1, as amaas's worker calls them, on one BLIS thread.  Nothing else
    is timed (no bias copy, no activation).  One repeat is as many passes as
    fill --min-time seconds; the figure is the median of --repeats repeats.
    Prints one JSON object: {"rows", "layers", "flops_per_row", "gflops",
    "rows_per_s", "pass_us"}.
*/
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <blis.h>

#include "timing.h"

#define MAX_LAYERS 16

static float *s_alloc (size_t count)
{
    float *p = NULL;
    if (posix_memalign ((void **)&p, 64, count * sizeof (float) + 64) != 0) {
        fprintf (stderr, "sgemm_baseline: out of memory\n");
        exit (1);
    }
    for (size_t i = 0; i < count; i++)
        p[i] = (float)((double)rand () / RAND_MAX - 0.5) * 0.1f;
    return p;
}

//  Parse "256,1024,10" into widths; returns how many, or -1
static int s_parse_layers (const char *text, size_t *widths)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long v = strtoul (p, &end, 10);
        if (errno || end == p || v < 1 || v > 65536 || n == MAX_LAYERS)
            return -1;
        widths[n++] = v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n >= 2 ? n : -1;
}

static void s_usage (FILE *out)
{
    fprintf (out, "usage: sgemm_baseline [options]\n"
                  "  Times BLIS sgemm (one thread, row-major) on the layers of an MLP; prints\n"
                  "  {\"gflops\", \"rows_per_s\", ...} as JSON.\n"
                  "  --rows N        batch size (default 256)\n"
                  "  --layers W,...  layer widths, input first (default 256,1024,1024,10)\n"
                  "  --repeats R     repeats, the median is printed (default 7)\n"
                  "  --min-time S    least seconds per repeat (default 0.2)\n");
}

int main (int argc, char **argv)
{
    long rows = 256;
    int repeats = 7;
    double min_time = 0.2;
    size_t widths[MAX_LAYERS] = {256, 1024, 1024, 10};
    int n_widths = 4;
    static const struct option options[] = {
        {"rows", required_argument, 0, 'r'},    {"layers", required_argument, 0, 'l'},
        {"repeats", required_argument, 0, 'n'}, {"min-time", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        char *end = NULL;
        errno = 0;
        switch (c) {
        case 'r':
            rows = strtol (optarg, &end, 10);
            if (rows < 1 || rows > 1 << 20)
                end = NULL;
            break;
        case 'l':
            n_widths = s_parse_layers (optarg, widths);
            end = n_widths < 0 ? NULL : optarg + strlen (optarg);
            break;
        case 'n':
            repeats = (int)strtol (optarg, &end, 10);
            if (repeats < 1 || repeats > 1000)
                end = NULL;
            break;
        case 't':
            min_time = strtod (optarg, &end);
            if (!(min_time > 0 && min_time <= 3600))
                end = NULL;
            break;
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
        if (errno || !end || *end) {
            fprintf (stderr, "sgemm_baseline: bad value for --%s: %s\n", argv[optind - 1] + 2,
                     optarg);
            return 2;
        }
    }
    if (optind < argc) {
        s_usage (stderr);
        return 2;
    }

    bli_thread_set_num_threads (1);
    srand (42);
    float *weights[MAX_LAYERS], *act[MAX_LAYERS];
    double flops_per_row = 0;
    for (int i = 0; i < n_widths; i++)
        act[i] = s_alloc ((size_t)rows * widths[i]);
    for (int i = 0; i + 1 < n_widths; i++) {
        weights[i] = s_alloc (widths[i] * widths[i + 1]);
        flops_per_row += 2.0 * (double)widths[i] * (double)widths[i + 1];
    }

    float one = 1;
    //  One pass = every layer's gemm; a warm-up pass, then the repeats
    long passes = 1;
    double *times = malloc ((size_t)repeats * sizeof *times);
    if (!times)
        return 1;
    for (int r = -1; r < repeats; r++) {
        double t0 = bench_now (), t1;
        long done = 0;
        do {
            for (long p = 0; p < passes; p++)
                for (int i = 0; i + 1 < n_widths; i++)
                    bli_sgemm (BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows,
                               (dim_t)widths[i + 1], (dim_t)widths[i], &one, act[i],
                               (inc_t)widths[i], 1, weights[i], (inc_t)widths[i + 1], 1, &one,
                               act[i + 1], (inc_t)widths[i + 1], 1);
            done += passes;
            t1 = bench_now ();
            if (t1 - t0 < min_time && r < 0)
                passes *= 2; //  calibrate during the warm-up
        } while (t1 - t0 < min_time);
        if (r >= 0)
            times[r] = (t1 - t0) / (double)done;
    }
    double pass = bench_median (times, (size_t)repeats);
    double rows_per_s = (double)rows / pass;

    printf ("{\"rows\": %ld, \"layers\": [", rows);
    for (int i = 0; i < n_widths; i++)
        printf ("%s%zu", i ? ", " : "", widths[i]);
    printf ("], \"flops_per_row\": %.0f, \"gflops\": %.3f, \"rows_per_s\": %.1f, "
            "\"pass_us\": %.2f}\n",
            flops_per_row, flops_per_row * rows_per_s / 1e9, rows_per_s, pass * 1e6);

    for (int i = 0; i < n_widths; i++)
        free (act[i]);
    for (int i = 0; i + 1 < n_widths; i++)
        free (weights[i]);
    free (times);
    return 0;
}
