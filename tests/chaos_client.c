/*  chaos_client.c - pipelines many jobs through libamaas and accounts for
    every one of them.

    Usage: chaos_client FRONTEND JOBS IN_FLIGHT RATE ATTEMPTS [EXCUSED]

    Sends JOBS single-row jobs to the example model "linear" (y = a x + b),
    at most IN_FLIGHT at a time and at most RATE per second, each sent up to
    ATTEMPTS times by libamaas, and checks that each job gets exactly one
    result, and that every result is a success and the right one.  Prints
    the counts; exits 0 only if nothing was lost, nothing answered twice,
    nothing failed and no answer was wrong.  tests/integration/
    test_chaos.py runs it while it kills workers and restarts the broker:
    a worker or a broker lost takes jobs with it, and libamaas must send
    them again until they succeed (a job fails only after ATTEMPTS losses).
    Failures with the code named EXCUSED (e.g. NOT_FOUND, which a
    restarted broker answers until a worker registers) are counted and
    printed but do not fail the run: the caller checks them.
*/
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amaas.h"

static double now_s (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

//  One prediction, waiting for the broker to be there; NAN if never
static double predict_one (amaas_client_t *client, double x)
{
    amaas_tensor_t t = {.name = "input", .datatype = AMAAS_FP64, .ndim = 2, .shape = {1, 1}};
    t.data = &x;
    t.size = sizeof x;
    amaas_error_t err;
    amaas_result_t *r = amaas_predict (client, "linear", &t, 1, &err);
    double y = NAN;
    if (r && r->error.code == AMAAS_OK && r->n_outputs == 1)
        y = *(const double *)r->outputs[0].data;
    amaas_result_destroy (&r);
    return y;
}

int main (int argc, char *argv[])
{
    if (argc != 6 && argc != 7) {
        fprintf (stderr, "usage: chaos_client FRONTEND JOBS IN_FLIGHT RATE ATTEMPTS [EXCUSED]\n");
        return 2;
    }
    int excused = 0; //  a failure code that does not fail the run; 0: none
    for (int c = 1; argc == 7 && c < 32 && !excused; c++)
        if (strcmp (amaas_code_name ((amaas_code_t)c), argv[6]) == 0)
            excused = c;
    if (argc == 7 && !excused) {
        fprintf (stderr, "chaos_client: no error code is named '%s'\n", argv[6]);
        return 2;
    }
    const char *frontend = argv[1];
    long jobs = atol (argv[2]), window = atol (argv[3]);
    double rate = atof (argv[4]);
    int attempts = atoi (argv[5]);
    amaas_error_t err;
    amaas_client_t *client = amaas_connect (frontend, 10000, &err);
    if (!client) {
        fprintf (stderr, "chaos_client: %s\n", err.message);
        return 1;
    }
    //  The model's line, from two points
    double b = predict_one (client, 0), a = predict_one (client, 1) - b;
    if (isnan (a) || isnan (b)) {
        fprintf (stderr, "chaos_client: the linear model does not answer\n");
        return 1;
    }
    amaas_set_retry (client, attempts, 1000);

    uint64_t *ids = calloc ((size_t)jobs, sizeof *ids);
    int *outcomes = calloc ((size_t)jobs, sizeof *outcomes); //  answers seen per job
    long counts[32] = {0};                                   //  by code
    long sent = 0, done = 0, wrong = 0, twice = 0, strangers = 0;
    uint64_t first_id = 0;
    double start = now_s ();
    while (done < jobs) {
        //  Send while the window and the rate allow
        while (sent < jobs && sent - done < window && sent < (now_s () - start) * rate + 1) {
            double x = (double)sent / 1000.0;
            amaas_tensor_t t = {
                .name = "input", .datatype = AMAAS_FP64, .ndim = 2, .shape = {1, 1}};
            t.data = &x;
            t.size = sizeof x;
            uint64_t id = amaas_send (client, "linear", &t, 1, &err);
            if (!id) {
                fprintf (stderr, "chaos_client: send: %s\n", err.message);
                return 1;
            }
            if (sent == 0)
                first_id = id;
            ids[sent++] = id;
        }
        amaas_result_t *r = amaas_recv (client, 20, &err);
        if (!r) {
            //  Only our own timeout: every pending job still gets a result
            //  (a retry, or DEADLINE_EXCEEDED after the last attempt)
            if (sent == jobs && now_s () - start > 600) {
                fprintf (stderr, "chaos_client: stuck with %ld jobs unanswered\n", jobs - done);
                break;
            }
            continue;
        }
        int64_t i = (int64_t)(r->id - first_id);
        if (r->id < first_id || i >= sent) {
            strangers++;
        } else {
            if (outcomes[i]++)
                twice++;
            else
                done++;
            int code = r->error.code < 32 ? (int)r->error.code : 31;
            counts[code]++;
            if (r->error.code == AMAAS_OK) {
                double x = (double)i / 1000.0;
                double y = r->n_outputs == 1 ? *(const double *)r->outputs[0].data : NAN;
                if (!(fabs (y - (a * x + b)) <= 1e-9 * fmax (1.0, fabs (y))))
                    wrong++;
            }
        }
        amaas_result_destroy (&r);
    }
    uint64_t resent, duplicates;
    amaas_stats (client, &resent, &duplicates);
    long lost = 0, failed = 0, unexcused = 0;
    for (long i = 0; i < jobs; i++)
        lost += outcomes[i] == 0;
    for (int c = 1; c < 32; c++) {
        failed += counts[c];
        unexcused += c == excused ? 0 : counts[c];
    }
    printf ("chaos: sent=%ld ok=%ld failed=%ld retried=%" PRIu64 " duplicates_dropped=%" PRIu64
            " lost=%ld answered_twice=%ld wrong=%ld seconds=%.1f\n",
            sent, counts[0], failed, resent, duplicates, lost, twice, wrong, now_s () - start);
    printf ("chaos: failed by code:");
    for (int c = 1; c < 32; c++)
        if (counts[c])
            printf (" %s=%ld", amaas_code_name ((amaas_code_t)c), counts[c]);
    printf ("%s\n", counts[0] == jobs ? " none" : "");
    amaas_close (&client);
    free (ids);
    free (outcomes);
    return lost || twice || unexcused || wrong || strangers ? 1 : 0;
}
