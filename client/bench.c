/*  bench.c - `amaas bench`: load generator and latency meter, like Triton's
    perf_analyzer.

    Closed loop (default): keeps C jobs in flight for the duration, for each
    C of the sweep.  Open loop (--rate R): sends R jobs per second on a fixed
    schedule whatever the answers do, and measures latency from the
    scheduled time, so that a slow server cannot hide its queueing.  Each
    job is one random request of --rows rows of the model's input width.
    Reports jobs/s, rows/s, latency percentiles, the server's own split of
    time (queue in the broker, compute in the worker) from the results'
    timings, and the mean batch the worker computed each job in.
*/
#include "bench.h"

#include <assert.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LEVELS 32

typedef struct {
    const char *model;
    size_t rows;            //  rows per job
    int levels[MAX_LEVELS]; //  concurrency sweep
    int n_levels;
    double duration_s;      //  measured time per level
    double warmup_s;        //  unmeasured time before it
    double rate;            //  open loop jobs/s, 0 = closed loop
    amaas_dtype_t datatype; //  of the input rows
    bool json;
} bench_config_t;

typedef struct {
    double *sent_at;  //  by job index (id - first id): send or schedule time
    size_t sent_size; //  entries allocated
    uint64_t first_id;
    double *latency_us; //  of measured ok jobs
    double *queue_us, *compute_us;
    size_t n, size; //  measured ok jobs, entries allocated
    uint64_t batch_sum;
    long errors[32]; //  by code
    long jobs;       //  measured answers, ok or not
} samples_t;

//  Seconds on the monotonic clock.  Cannot fail.
static double s_now_s (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

//  qsort order of doubles.  Cannot fail.
static int s_compare_doubles (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

//  Percentile p (0..100) of a sorted array, nearest rank; 0 when empty.
//  Cannot fail.
static double s_percentile (const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)ceil (p / 100.0 * (double)n);
    return sorted[rank ? rank - 1 : 0];
}

//  Prints the help of amaas bench.  Cannot fail.
static void s_usage (FILE *out)
{
    fprintf (out, "Usage: amaas [--broker ENDPOINT] bench --model NAME [OPTIONS]\n"
                  "\n"
                  "Sends jobs of random rows to a model and reports throughput, latency and\n"
                  "the server's split of time.\n"
                  "\n"
                  "  --rows N              rows per job [1]\n"
                  "  --concurrency C[,C]   jobs in flight; a list sweeps [1]\n"
                  "  --duration S          measured seconds per level [10]\n"
                  "  --warmup S            unmeasured seconds before [1]\n"
                  "  --rate R              open loop: R jobs/s on a fixed schedule\n"
                  "  --datatype T          FP64 or FP32 input rows [FP64]\n"
                  "  --json                one JSON array for scripts\n");
}

//  Records that job `id` was sent (or scheduled) at t.  Returns 0, -1 on
//  out-of-memory.
static int s_note_sent (samples_t *s, uint64_t id, double t)
{
    size_t i = (size_t)(id - s->first_id);
    if (i >= s->sent_size) {
        size_t size = s->sent_size ? s->sent_size * 2 : 65536;
        while (size <= i)
            size *= 2;
        double *grown = realloc (s->sent_at, size * sizeof (double));
        if (!grown)
            return -1;
        s->sent_at = grown;
        s->sent_size = size;
    }
    s->sent_at[i] = t;
    return 0;
}

//  Records a result received at t, if it is measured.  Returns 0, -1 on
//  out-of-memory (the sample is lost).
static int s_note_result (samples_t *s, const amaas_result_t *r, double t, bool measured)
{
    if (!measured)
        return 0;
    s->jobs++;
    if (r->error.code != AMAAS_OK) {
        s->errors[r->error.code < 32 ? r->error.code : 31]++;
        return 0;
    }
    if (s->n == s->size) {
        size_t size = s->size ? s->size * 2 : 65536;
        double *l = realloc (s->latency_us, size * sizeof (double));
        double *q = l ? realloc (s->queue_us, size * sizeof (double)) : NULL;
        double *c = q ? realloc (s->compute_us, size * sizeof (double)) : NULL;
        if (l)
            s->latency_us = l;
        if (q)
            s->queue_us = q;
        if (!c)
            return -1;
        s->compute_us = c;
        s->size = size;
    }
    //  Every job answered was sent, and noted, first
    assert (r->id >= s->first_id && r->id - s->first_id < s->sent_size);
    s->latency_us[s->n] = (t - s->sent_at[r->id - s->first_id]) * 1e6;
    s->queue_us[s->n] = (double)r->queue_us;
    s->compute_us[s->n] = (double)r->compute_us;
    s->batch_sum += r->batch;
    s->n++;
    return 0;
}

//  One level of load.  Returns 0, -1 when the client failed.
static int s_run_level (amaas_client_t *client, const bench_config_t *cfg, int concurrency,
                        const amaas_tensor_t *input, samples_t *s, double *elapsed)
{
    amaas_error_t err;
    double start = s_now_s ();
    double measure_from = start + cfg->warmup_s;
    double end = measure_from + cfg->duration_s;
    long in_flight = 0, sent = 0;
    bool first = true;
    while (true) {
        double t = s_now_s ();
        bool sending = t < end;
        if (!sending && in_flight == 0)
            break;
        //  Send what the loop allows
        while (sending) {
            double due = cfg->rate > 0 ? start + (double)sent / cfg->rate : t;
            if (cfg->rate > 0 ? due > t : in_flight >= concurrency)
                break;
            uint64_t id = amaas_send (client, cfg->model, input, 1, &err);
            if (!id) {
                fprintf (stderr, "amaas bench: %s\n", err.message);
                return -1;
            }
            if (first) {
                s->first_id = id;
                first = false;
            }
            if (s_note_sent (s, id, due))
                return -1;
            in_flight++;
            sent++;
        }
        int wait_ms = 1;
        if (cfg->rate <= 0 && sending)
            wait_ms = 100;
        amaas_result_t *r = amaas_recv (client, sending ? wait_ms : 10000, &err);
        if (!r) {
            if (!sending) {
                fprintf (stderr, "amaas bench: %ld jobs unanswered after 10 s\n", in_flight);
                return -1;
            }
            continue;
        }
        double done = s_now_s ();
        in_flight--;
        bool measured = s->sent_at[r->id - s->first_id] >= measure_from &&
                        s->sent_at[r->id - s->first_id] < end;
        s_note_result (s, r, done, measured);
        amaas_result_destroy (&r);
    }
    *elapsed = cfg->duration_s;
    return 0;
}

//  Prints one level's figures (as a line of the table, or an element of
//  the JSON array).  Cannot fail.
static void s_report (const bench_config_t *cfg, int concurrency, samples_t *s, double elapsed,
                      bool first, bool last)
{
    qsort (s->latency_us, s->n, sizeof (double), s_compare_doubles);
    double mean = 0, queue_mean = 0, compute_mean = 0;
    for (size_t i = 0; i < s->n; i++) {
        mean += s->latency_us[i];
        queue_mean += s->queue_us[i];
        compute_mean += s->compute_us[i];
    }
    double n = s->n ? (double)s->n : 1;
    mean /= n;
    queue_mean /= n;
    compute_mean /= n;
    double queue_p50, compute_p50;
    qsort (s->queue_us, s->n, sizeof (double), s_compare_doubles);
    qsort (s->compute_us, s->n, sizeof (double), s_compare_doubles);
    queue_p50 = s_percentile (s->queue_us, s->n, 50);
    compute_p50 = s_percentile (s->compute_us, s->n, 50);
    double jobs_per_s = (double)s->n / elapsed;
    double batch = (double)s->batch_sum / n;
    if (cfg->json) {
        printf ("%s{\"model\": \"%s\", \"rows\": %zu, \"concurrency\": %d, \"rate\": ",
                first ? "[" : " ", cfg->model, cfg->rows, concurrency);
        if (cfg->rate > 0)
            printf ("%g", cfg->rate);
        else
            printf ("null");
        printf (", \"duration_s\": %g, \"jobs\": %ld, \"ok\": %zu, \"errors\": {", elapsed, s->jobs,
                s->n);
        bool comma = false;
        for (int c = 1; c < 32; c++)
            if (s->errors[c]) {
                printf ("%s\"%s\": %ld", comma ? ", " : "", amaas_code_name ((amaas_code_t)c),
                        s->errors[c]);
                comma = true;
            }
        printf ("}, \"jobs_per_s\": %.1f, \"rows_per_s\": %.1f, \"latency_us\": {\"p50\": %.1f, "
                "\"p90\": %.1f, \"p99\": %.1f, \"max\": %.1f, \"mean\": %.1f}, \"server_us\": "
                "{\"queue_mean\": %.1f, \"compute_mean\": %.1f, \"queue_p50\": %.1f, "
                "\"compute_p50\": %.1f}, \"batch_jobs_mean\": %.2f}%s\n",
                jobs_per_s, jobs_per_s * (double)cfg->rows, s_percentile (s->latency_us, s->n, 50),
                s_percentile (s->latency_us, s->n, 90), s_percentile (s->latency_us, s->n, 99),
                s->n ? s->latency_us[s->n - 1] : 0, mean, queue_mean, compute_mean, queue_p50,
                compute_p50, batch, last ? "]" : ",");
        return;
    }
    if (first)
        printf ("%-11s %10s %12s %9s %9s %9s %9s %9s %9s %6s %7s\n",
                cfg->rate > 0 ? "rate" : "in flight", "jobs/s", "rows/s", "p50 us", "p90 us",
                "p99 us", "max us", "queue us", "comp us", "batch", "errors");
    long errors = s->jobs - (long)s->n;
    printf ("%-11g %10.1f %12.1f %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %6.1f %7ld\n",
            cfg->rate > 0 ? cfg->rate : (double)concurrency, jobs_per_s,
            jobs_per_s * (double)cfg->rows, s_percentile (s->latency_us, s->n, 50),
            s_percentile (s->latency_us, s->n, 90), s_percentile (s->latency_us, s->n, 99),
            s->n ? s->latency_us[s->n - 1] : 0, queue_mean, compute_mean, batch, errors);
    for (int c = 1; c < 32; c++)
        if (s->errors[c])
            printf ("            %s: %ld\n", amaas_code_name ((amaas_code_t)c), s->errors[c]);
}

//  Parses the concurrency sweep "C[,C...]".  Returns 0, -1 when it is
//  not a list of 1..MAX_LEVELS positive numbers.
static int s_parse_levels (const char *text, bench_config_t *cfg)
{
    char copy[256];
    snprintf (copy, sizeof copy, "%s", text);
    cfg->n_levels = 0;
    for (char *tok = strtok (copy, ","); tok; tok = strtok (NULL, ",")) {
        int c = atoi (tok);
        if (c < 1 || cfg->n_levels == MAX_LEVELS)
            return -1;
        cfg->levels[cfg->n_levels++] = c;
    }
    return cfg->n_levels ? 0 : -1;
}

int bench_main (amaas_client_t *(*connect) (void), int argc, char *argv[])
{
    bench_config_t cfg = {.rows = 1,
                          .levels = {1},
                          .n_levels = 1,
                          .duration_s = 10,
                          .warmup_s = 1,
                          .datatype = AMAAS_FP64};
    static const struct option options[] = {{"model", required_argument, 0, 'm'},
                                            {"rows", required_argument, 0, 'r'},
                                            {"concurrency", required_argument, 0, 'c'},
                                            {"duration", required_argument, 0, 'd'},
                                            {"warmup", required_argument, 0, 'w'},
                                            {"rate", required_argument, 0, 'R'},
                                            {"datatype", required_argument, 0, 't'},
                                            {"json", no_argument, 0, 'j'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'm': cfg.model = optarg; break;
        case 'r': cfg.rows = (size_t)atol (optarg); break;
        case 'c':
            if (s_parse_levels (optarg, &cfg)) {
                fprintf (stderr,
                         "amaas bench: --concurrency wants positive integers, e.g. 1,8,64\n");
                return 2;
            }
            break;
        case 'd': cfg.duration_s = atof (optarg); break;
        case 'w': cfg.warmup_s = atof (optarg); break;
        case 'R': cfg.rate = atof (optarg); break;
        case 't': cfg.datatype = amaas_dtype_from_name (optarg, strlen (optarg)); break;
        case 'j': cfg.json = true; break;
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
    }
    if (!cfg.model || cfg.rows < 1 || cfg.duration_s <= 0 || cfg.warmup_s < 0 || cfg.rate < 0 ||
        (cfg.datatype != AMAAS_FP64 && cfg.datatype != AMAAS_FP32)) {
        fprintf (stderr, "amaas bench: need --model NAME, and --rows >= 1, --duration > 0, "
                         "--datatype FP64 or FP32\n");
        return 2;
    }
    amaas_client_t *client = connect ();
    amaas_error_t err;
    enum { MODELS_MAX = 1024 };
    amaas_model_info_t *models = calloc (MODELS_MAX, sizeof *models); //  880 KB: not on the stack
    int n_models = models ? amaas_models (client, models, MODELS_MAX, &err) : -1;
    size_t width = 0;
    for (int i = 0; i < n_models && i < MODELS_MAX; i++)
        if (strcmp (models[i].name, cfg.model) == 0)
            width = models[i].width;
    free (models);
    if (width == 0) {
        fprintf (stderr, "amaas bench: no worker serves model '%s' (see 'amaas models')\n",
                 cfg.model);
        amaas_close (&client);
        return 1;
    }
    //  Raw figures: no resend hides a slow answer
    amaas_set_retry (client, 1, 600000);
    size_t elem = amaas_dtype_size (cfg.datatype);
    size_t count = cfg.rows * width;
    unsigned char *data = malloc (count * elem);
    srand (42);
    for (size_t i = 0; i < count; i++) {
        double v = (double)rand () / RAND_MAX * 2 - 1;
        float f = (float)v;
        memcpy (data + i * elem, cfg.datatype == AMAAS_FP64 ? (void *)&v : (void *)&f, elem);
    }
    amaas_tensor_t input = {.name = "input",
                            .datatype = cfg.datatype,
                            .ndim = 2,
                            .shape = {(int64_t)cfg.rows, (int64_t)width}};
    input.data = data;
    input.size = count * elem;
    if (!cfg.json)
        printf ("model %s: %zu row%s of %zu features per job, %s loop, %gs per level\n", cfg.model,
                cfg.rows, cfg.rows == 1 ? "" : "s", width, cfg.rate > 0 ? "open" : "closed",
                cfg.duration_s);
    int rc = 0;
    int levels = cfg.rate > 0 ? 1 : cfg.n_levels;
    for (int l = 0; l < levels && rc == 0; l++) {
        samples_t s = {0};
        double elapsed = 0;
        if (s_run_level (client, &cfg, cfg.levels[l], &input, &s, &elapsed))
            rc = 1;
        else
            s_report (&cfg, cfg.levels[l], &s, elapsed, l == 0, l == levels - 1);
        free (s.sent_at);
        free (s.latency_us);
        free (s.queue_us);
        free (s.compute_us);
    }
    free (data);
    amaas_close (&client);
    return rc;
}
