/*  load_client.c - sends a load of jobs at once through libamaas, and
    counts their outcomes, for the tests of long jobs and queues.

    Every job is sent before any result is read, so that they all queue in
    the broker and the workers at once; each gets exactly one result,
    which this program checks (one per job, none from elsewhere).  Jobs
    from --cancel are given up right after they are sent (amaas_cancel):
    no result may come for them.

    Usage: load_client FRONTEND MODEL WIDTH ROWS JOBS TIMEOUT_MS [CANCEL]
    Prints: load: ok=N failed=N cancelled=N resent=N duplicates=N seconds=S
    and the failures by code; exits 0 when every job not cancelled got
    exactly one result, 1 otherwise.
*/
#include <amaas.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main (int argc, char *argv[])
{
    if (argc < 7 || argc > 8) {
        fprintf (stderr, "usage: load_client FRONTEND MODEL WIDTH ROWS JOBS TIMEOUT_MS [CANCEL]\n");
        return 2;
    }
    const char *frontend = argv[1], *model = argv[2];
    long width = atol (argv[3]), rows = atol (argv[4]), jobs = atol (argv[5]);
    int timeout_ms = atoi (argv[6]);
    long cancel = argc == 8 ? atol (argv[7]) : 0;
    if (width < 1 || rows < 1 || jobs < 1 || timeout_ms < 1 || cancel < 0 || cancel > jobs) {
        fprintf (stderr, "load_client: bad arguments\n");
        return 2;
    }
    amaas_error_t err;
    amaas_client_t *client = amaas_connect (frontend, 10000, &err);
    if (!client) {
        fprintf (stderr, "load_client: %s\n", err.message);
        return 1;
    }
    amaas_set_timeout (client, timeout_ms);
    float *data = malloc ((size_t)(width * rows) * sizeof *data);
    for (long i = 0; i < width * rows; i++)
        data[i] = (float)((i * 37) % 101) / 101.0f;
    amaas_tensor_t input = {
        .name = "input", .datatype = AMAAS_FP32, .ndim = 2, .shape = {rows, width}};
    input.data = data;
    input.size = (size_t)(width * rows) * sizeof *data;
    uint64_t *ids = calloc ((size_t)jobs, sizeof *ids);
    int *seen = calloc ((size_t)jobs, sizeof *seen);
    double start = now_s ();
    for (long i = 0; i < jobs; i++)
        if (!(ids[i] = amaas_send (client, model, &input, 1, &err))) {
            fprintf (stderr, "load_client: send: %s\n", err.message);
            return 1;
        }
    for (long i = jobs - cancel; i < jobs; i++)
        if (amaas_cancel (client, ids[i])) {
            fprintf (stderr, "load_client: job %" PRIu64 " was not pending\n", ids[i]);
            return 1;
        }
    long counts[32] = {0}, strangers = 0, twice = 0, results = 0;
    while (amaas_pending (client)) {
        amaas_result_t *r = amaas_recv (client, timeout_ms, &err);
        if (!r) {
            fprintf (stderr, "load_client: %s\n", err.message);
            break;
        }
        long i = (long)(r->id - ids[0]);
        if (r->id < ids[0] || i >= jobs || r->id != ids[i] || i >= jobs - cancel)
            strangers++;
        else if (seen[i]++)
            twice++;
        else
            results++;
        counts[r->error.code < 32 ? r->error.code : 31]++;
        if (r->error.code != AMAAS_OK)
            fprintf (stderr, "load_client: job %" PRIu64 ": %s: %s\n", r->id,
                     amaas_code_name (r->error.code), r->error.message);
        amaas_result_destroy (&r);
    }
    uint64_t resent, duplicates;
    amaas_stats (client, &resent, &duplicates);
    printf ("load: ok=%ld failed=%ld cancelled=%ld resent=%" PRIu64 " duplicates=%" PRIu64
            " seconds=%.1f\n",
            counts[0], results - counts[0], cancel, resent, duplicates, now_s () - start);
    printf ("load: failed by code:");
    for (int c = 1; c < 32; c++)
        if (counts[c])
            printf (" %s=%ld", amaas_code_name ((amaas_code_t)c), counts[c]);
    printf ("%s\n", counts[0] == results ? " none" : "");
    amaas_close (&client);
    free (data);
    free (ids);
    free (seen);
    return results == jobs - cancel && !strangers && !twice ? 0 : 1;
}
