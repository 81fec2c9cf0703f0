/*  test_metrics.c - unit tests of the broker's Prometheus metrics: the text
    rendered (counts, cumulative buckets, _sum and _count, gauges, label
    escaping, the limit on models) and the HTTP server, fetched with a plain
    socket client on 127.0.0.1.

    Standalone: gcc -std=gnu11 -Ibroker tests/test_metrics.c broker/metrics.c \
                    -lmicrohttpd -lcheck -lm -lpthread -o test_metrics
*/
#define _GNU_SOURCE //  strcasestr
#include <arpa/inet.h>
#include <check.h>
#include <math.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "metrics.h"
#include "unit.h"

//  Whether the rendered text holds this exact line
static bool has_line (const char *text, const char *line)
{
    size_t len = strlen (line);
    for (const char *p = text; (p = strstr (p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[len] == '\n')
            return true;
    return false;
}

//  The line of text for the same series as `line` (all but its value), for
//  failure messages: "" if there is none
static const char *same_series (const char *text, const char *line)
{
    static char found[512];
    const char *space = strrchr (line, ' ');
    size_t len = space ? (size_t)(space - line) + 1 : strlen (line);
    found[0] = 0;
    for (const char *p = text; (p = strstr (p, "\n")); p++)
        if (strncmp (p + 1, line, len) == 0) {
            snprintf (found, sizeof found, "%.*s", (int)strcspn (p + 1, "\n"), p + 1);
            break;
        }
    return found;
}

#define ck_assert_line(text, line)                                                                 \
    ck_assert_msg (has_line (text, line), "no line '%s' (found '%s')", line,                       \
                   same_series (text, line))

static metrics_t *new_metrics (void)
{
    char err[256];
    metrics_t *m = metrics_new (NULL, err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    return m;
}

START_TEST (test_jobs_by_model_and_code)
{
    metrics_t *m = new_metrics ();
    for (int i = 0; i < 3; i++)
        metrics_observe_job (m, "iris", "OK", 0.001, 0.002, 0.003, 1);
    metrics_observe_job (m, "iris", "DEADLINE_EXCEEDED", 0.5, -1, 0.5, 0);
    metrics_observe_job (m, "ghost", "NOT_FOUND", -1, -1, -1, 0);
    metrics_observe_job (m, "linear", "OK", 0.001, 0.002, 0.003, 4);
    char *text = metrics_render (m);
    ck_assert_ptr_nonnull (text);
    ck_assert_line (text, "# HELP amaas_jobs_total Jobs answered, by model and code.");
    ck_assert_line (text, "# TYPE amaas_jobs_total counter");
    ck_assert_line (text, "amaas_jobs_total{model=\"iris\",code=\"OK\"} 3");
    ck_assert_line (text, "amaas_jobs_total{model=\"iris\",code=\"DEADLINE_EXCEEDED\"} 1");
    ck_assert_line (text, "amaas_jobs_total{model=\"ghost\",code=\"NOT_FOUND\"} 1");
    ck_assert_line (text, "amaas_jobs_total{model=\"linear\",code=\"OK\"} 1");
    //  Codes never seen for a model have no series
    ck_assert_ptr_null (strstr (text, "{model=\"linear\",code=\"NOT_FOUND\"}"));
    //  A job that failed before dispatch is in no histogram, yet its model
    //  has all of them, at zero
    ck_assert_line (text, "amaas_latency_seconds_count{model=\"ghost\"} 0");
    ck_assert_line (text, "amaas_latency_seconds_bucket{model=\"ghost\",le=\"+Inf\"} 0");
    ck_assert_line (text, "amaas_compute_seconds_count{model=\"iris\"} 3");
    ck_assert_line (text, "amaas_queue_seconds_count{model=\"iris\"} 4");
    free (text);
    metrics_destroy (&m);
    ck_assert_ptr_null (m);
}
END_TEST

START_TEST (test_histogram_buckets_are_cumulative)
{
    metrics_t *m = new_metrics ();
    double queue[] = {0.00004, 0.00005, 0.0003, 0.001, 20};
    double sum = 0;
    for (size_t i = 0; i < 5; i++) {
        metrics_observe_job (m, "iris", "OK", queue[i], -1, NAN, 0);
        sum += queue[i];
    }
    unsigned batch[] = {1, 3, 4, 1024, 2000};
    for (size_t i = 0; i < 5; i++)
        metrics_observe_job (m, "iris", "OK", -1, -1, -1, batch[i]);
    char *text = metrics_render (m);
    ck_assert_line (text, "# TYPE amaas_queue_seconds histogram");
    //  le is inclusive: 5e-05 itself falls in the first bucket
    ck_assert_line (text, "amaas_queue_seconds_bucket{model=\"iris\",le=\"5e-05\"} 2");
    ck_assert_line (text, "amaas_queue_seconds_bucket{model=\"iris\",le=\"0.0001\"} 2");
    ck_assert_line (text, "amaas_queue_seconds_bucket{model=\"iris\",le=\"0.00025\"} 2");
    ck_assert_line (text, "amaas_queue_seconds_bucket{model=\"iris\",le=\"0.0005\"} 3");
    ck_assert_line (text, "amaas_queue_seconds_bucket{model=\"iris\",le=\"0.001\"} 4");
    ck_assert_line (text, "amaas_queue_seconds_bucket{model=\"iris\",le=\"10\"} 4");
    ck_assert_line (text, "amaas_queue_seconds_bucket{model=\"iris\",le=\"+Inf\"} 5");
    ck_assert_line (text, "amaas_queue_seconds_count{model=\"iris\"} 5");
    char *found = strstr (text, "amaas_queue_seconds_sum{model=\"iris\"} ");
    ck_assert_ptr_nonnull (found);
    ck_assert_double_eq (strtod (found + strlen ("amaas_queue_seconds_sum{model=\"iris\"} "), NULL),
                         sum);
    //  Not observed: negative and NaN
    ck_assert_line (text, "amaas_compute_seconds_count{model=\"iris\"} 0");
    ck_assert_line (text, "amaas_compute_seconds_sum{model=\"iris\"} 0");
    ck_assert_line (text, "amaas_latency_seconds_count{model=\"iris\"} 0");
    //  Batch sizes: 0 is not observed; past 1024 only +Inf counts it
    ck_assert_line (text, "# TYPE amaas_batch_size histogram");
    ck_assert_line (text, "amaas_batch_size_bucket{model=\"iris\",le=\"1\"} 1");
    ck_assert_line (text, "amaas_batch_size_bucket{model=\"iris\",le=\"2\"} 1");
    ck_assert_line (text, "amaas_batch_size_bucket{model=\"iris\",le=\"4\"} 3");
    ck_assert_line (text, "amaas_batch_size_bucket{model=\"iris\",le=\"512\"} 3");
    ck_assert_line (text, "amaas_batch_size_bucket{model=\"iris\",le=\"1024\"} 4");
    ck_assert_line (text, "amaas_batch_size_bucket{model=\"iris\",le=\"+Inf\"} 5");
    ck_assert_line (text, "amaas_batch_size_sum{model=\"iris\"} 3032");
    ck_assert_line (text, "amaas_batch_size_count{model=\"iris\"} 5");
    //  Every bucket count is at most the next one's
    const char *p = text;
    long previous = -1;
    while ((p = strstr (p, "amaas_queue_seconds_bucket{model=\"iris\""))) {
        p = strchr (p, '}');
        long count = strtol (p + 1, NULL, 10);
        ck_assert_int_ge (count, previous);
        previous = count;
    }
    ck_assert_int_eq (previous, 5);
    free (text);
    metrics_destroy (&m);
}
END_TEST

START_TEST (test_gauges)
{
    metrics_t *m = new_metrics ();
    metrics_observe_job (m, "ghost", "NOT_FOUND", -1, -1, -1, 0);
    metrics_add_model (m, "iris", 7, 3);
    metrics_clear_models (m); //  a new round of gauges: the old values go
    metrics_add_model (m, "iris", 4, 2);
    metrics_add_model (m, "iris", 1, 0); //  another version of iris adds up
    metrics_add_model (m, "linear", 0, 0);
    metrics_set_workers (m, 4);
    metrics_counts_t counts = {
        .accepted = 7, .deduplicated = 2, .cancelled = 1, .computed = 6, .load_failures = 3};
    metrics_set_counts (m, &counts);
    char *text = metrics_render (m);
    ck_assert_line (text, "# TYPE amaas_jobs_accepted_total counter");
    ck_assert_line (text, "amaas_jobs_accepted_total 7");
    ck_assert_line (text, "amaas_jobs_deduplicated_total 2");
    ck_assert_line (text, "amaas_jobs_cancelled_total 1");
    ck_assert_line (text, "amaas_jobs_computed_total 6");
    ck_assert_line (text, "# TYPE amaas_model_load_failures gauge");
    ck_assert_line (text, "amaas_model_load_failures 3");
    ck_assert_line (text, "# TYPE amaas_queue_depth gauge");
    ck_assert_line (text, "# TYPE amaas_jobs_in_flight gauge");
    ck_assert_line (text, "amaas_queue_depth{model=\"iris\"} 5");
    ck_assert_line (text, "amaas_jobs_in_flight{model=\"iris\"} 2");
    ck_assert_line (text, "amaas_queue_depth{model=\"linear\"} 0");
    //  A model no worker announced has no gauges
    ck_assert_ptr_null (strstr (text, "amaas_queue_depth{model=\"ghost\"}"));
    ck_assert_line (text, "# TYPE amaas_workers gauge");
    ck_assert_line (text, "amaas_workers 4");
    ck_assert_line (text, "# TYPE amaas_uptime_seconds gauge");
    const char *up = strstr (text, "\namaas_uptime_seconds ");
    ck_assert_ptr_nonnull (up);
    double uptime = strtod (up + strlen ("\namaas_uptime_seconds "), NULL);
    ck_assert (uptime >= 0 && uptime < 60);
    free (text);
    metrics_destroy (&m);
}
END_TEST

START_TEST (test_every_family_has_help_and_type)
{
    metrics_t *m = new_metrics ();
    char *text = metrics_render (m); //  no model yet
    const char *families[][2] = {
        {"amaas_jobs_total", "counter"},           {"amaas_queue_seconds", "histogram"},
        {"amaas_compute_seconds", "histogram"},    {"amaas_latency_seconds", "histogram"},
        {"amaas_batch_size", "histogram"},         {"amaas_queue_depth", "gauge"},
        {"amaas_jobs_in_flight", "gauge"},         {"amaas_workers", "gauge"},
        {"amaas_uptime_seconds", "gauge"},         {"amaas_queue_wait_seconds", "gauge"},
        {"amaas_queue_wait_p99_seconds", "gauge"}, {"amaas_worker_in_flight", "gauge"},
        {"amaas_worker_credit", "gauge"},          {"amaas_busy_ratio", "gauge"},
        {"amaas_in_flight_per_worker", "gauge"}};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char line[128];
        snprintf (line, sizeof line, "# HELP %s ", families[i][0]);
        ck_assert_msg (strstr (text, line), "no HELP for %s", families[i][0]);
        snprintf (line, sizeof line, "# TYPE %s %s", families[i][0], families[i][1]);
        ck_assert_line (text, line);
    }
    ck_assert_line (text, "amaas_workers 0");
    ck_assert (text[strlen (text) - 1] == '\n');
    free (text);
    metrics_destroy (&m);
}
END_TEST

START_TEST (test_label_escaping)
{
    metrics_t *m = new_metrics ();
    metrics_observe_job (m, "a\"b\\c\nd", "OK", -1, -1, -1, 0);
    metrics_observe_job (m, "mod\xC3\xA8le-\xE2\x82\xAC", "OK", -1, -1, -1, 0); //  valid UTF-8
    metrics_observe_job (m, "x\xFFy", "OK", -1, -1, -1, 0);                     //  a stray byte
    metrics_observe_job (m, "\xC0\xAF", "OK", -1, -1, -1, 0);                   //  overlong '/'
    metrics_observe_job (m, "s\xED\xA0\x80", "OK", -1, -1, -1, 0);              //  a surrogate
    metrics_observe_job (m, "cut\xE2\x82", "OK", -1, -1, -1, 0);                //  a cut sequence
    metrics_observe_job (m, "x\xFEy", "OK", -1, -1, -1, 0); //  same label as x\xFFy
    char *text = metrics_render (m);
    ck_assert_line (text, "amaas_jobs_total{model=\"a\\\"b\\\\c\\nd\",code=\"OK\"} 1");
    ck_assert_line (text, "amaas_jobs_total{model=\"mod\xC3\xA8le-\xE2\x82\xAC\",code=\"OK\"} 1");
    //  Two names that read the same once made UTF-8 are one series
    ck_assert_line (text, "amaas_jobs_total{model=\"x\xEF\xBF\xBDy\",code=\"OK\"} 2");
    ck_assert_line (text, "amaas_jobs_total{model=\"\xEF\xBF\xBD\xEF\xBF\xBD\",code=\"OK\"} 1");
    ck_assert_line (
        text, "amaas_jobs_total{model=\"s\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\",code=\"OK\"} 1");
    ck_assert_line (text, "amaas_jobs_total{model=\"cut\xEF\xBF\xBD\xEF\xBF\xBD\",code=\"OK\"} 1");
    //  The newline inside the name never reaches the text
    ck_assert_ptr_null (strstr (text, "c\nd"));
    free (text);
    metrics_destroy (&m);
}
END_TEST

START_TEST (test_models_past_the_limit)
{
    metrics_t *m = new_metrics ();
    char name[32];
    for (int i = 0; i < METRICS_MAX_MODELS + 50; i++) {
        snprintf (name, sizeof name, "model-%d", i);
        metrics_observe_job (m, name, "OK", 0.001, 0.001, 0.002, 1);
        metrics_observe_job (m, name, "OK", 0.001, 0.001, 0.002, 1);
    }
    metrics_observe_job (m, "model-0", "OK", -1, -1, -1, 0); //  known models still count
    char *text = metrics_render (m);
    ck_assert_line (text, "amaas_jobs_total{model=\"model-0\",code=\"OK\"} 3");
    //  Each model within the limit is found again by its label: counted twice
    char line[128];
    for (int i = 1; i < METRICS_MAX_MODELS; i++) {
        snprintf (line, sizeof line, "amaas_jobs_total{model=\"model-%d\",code=\"OK\"} 2", i);
        ck_assert_line (text, line);
    }
    snprintf (line, sizeof line, "{model=\"model-%d\"", METRICS_MAX_MODELS);
    ck_assert_ptr_null (strstr (text, line));
    ck_assert_line (text, "amaas_jobs_total{model=\"(other)\",code=\"OK\"} 100");
    ck_assert_line (text, "amaas_latency_seconds_count{model=\"(other)\"} 100");
    free (text);
    metrics_destroy (&m);
}
END_TEST

START_TEST (test_bad_listen_addresses)
{
    const char *bad[] = {"nonsense",     "127.0.0.1", "127.0.0.1:",     "127.0.0.1:99999",
                         "127.0.0.1:-1", ":9464",     "127.0.0.1:12ab", "no.such.host.invalid:0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        metrics_t *m = metrics_new (bad[i], err, sizeof err);
        ck_assert_msg (m == NULL, "'%s' accepted", bad[i]);
        ck_assert_msg (err[0], "no reason for '%s'", bad[i]);
    }
}
END_TEST

//  GET path from 127.0.0.1:port with HTTP/1.0; returns the whole answer
//  (status line, headers, body), to be freed.
static char *http_get (int port, const char *method, const char *path)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge (fd, 0);
    struct timeval timeout = {.tv_sec = 5};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (connect (fd, (struct sockaddr *)&address, sizeof address), 0);
    char request[256];
    int len = snprintf (request, sizeof request, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                        method, path);
    ck_assert_int_eq (write (fd, request, (size_t)len), len);
    size_t size = 0, capacity = 1 << 16;
    char *answer = malloc (capacity + 1);
    ssize_t got;
    while ((got = read (fd, answer + size, capacity - size)) > 0) {
        size += (size_t)got;
        if (size == capacity)
            answer = realloc (answer, (capacity *= 2) + 1);
    }
    ck_assert_int_eq (got, 0); //  the server closed: the whole answer is here
    answer[size] = 0;
    close (fd);
    return answer;
}

START_TEST (test_http_server)
{
    char err[256];
    metrics_t *m = metrics_new ("127.0.0.1:0", err, sizeof err);
    ck_assert_msg (m != NULL, "%s", err);
    int port = metrics_port (m);
    ck_assert_int_gt (port, 0);

    //  Before the first publish: a complete exposition, no model yet
    char *answer = http_get (port, "GET", "/metrics");
    ck_assert_msg (strncmp (answer, "HTTP/1.0 200", 12) == 0 ||
                       strncmp (answer, "HTTP/1.1 200", 12) == 0,
                   "%s", answer);
    ck_assert_ptr_nonnull (strcasestr (answer, "\r\nContent-Type: text/plain; version=0.0.4"));
    ck_assert_ptr_nonnull (strstr (answer, "\r\n\r\n# HELP amaas_jobs_total "));
    ck_assert_line (answer, "amaas_workers 0");
    free (answer);

    metrics_observe_job (m, "iris", "OK", 0.001, 0.002, 0.003, 2);
    metrics_set_workers (m, 2);
    ck_assert_int_eq (metrics_publish (m), 0);
    metrics_observe_job (m, "iris", "OK", 0.001, 0.002, 0.003, 2); //  not published yet
    answer = http_get (port, "GET", "/metrics");
    ck_assert_line (answer, "amaas_jobs_total{model=\"iris\",code=\"OK\"} 1");
    ck_assert_line (answer, "amaas_workers 2");
    free (answer);
    ck_assert_int_eq (metrics_publish (m), 0);
    answer = http_get (port, "GET", "/metrics");
    ck_assert_line (answer, "amaas_jobs_total{model=\"iris\",code=\"OK\"} 2");
    free (answer);

    answer = http_get (port, "GET", "/");
    ck_assert_msg (strstr (answer, " 404 ") != NULL, "%s", answer);
    free (answer);
    answer = http_get (port, "GET", "/metrics/x");
    ck_assert_msg (strstr (answer, " 404 ") != NULL, "%s", answer);
    free (answer);
    answer = http_get (port, "POST", "/metrics");
    ck_assert_msg (strstr (answer, " 405 ") != NULL, "%s", answer);
    free (answer);
    answer = http_get (port, "HEAD", "/metrics");
    ck_assert_msg (strstr (answer, " 200 ") != NULL && !strstr (answer, "# HELP"), "%s", answer);
    free (answer);

    //  The port is taken now: a second server cannot have it
    char listen[64];
    snprintf (listen, sizeof listen, "127.0.0.1:%d", port);
    metrics_t *second = metrics_new (listen, err, sizeof err);
    ck_assert_ptr_null (second);
    ck_assert_msg (strstr (err, listen) != NULL, "%s", err);

    metrics_destroy (&m);
    ck_assert_ptr_null (m);
}
END_TEST

//  The value of the series `series` (all of a line but its value), or NAN
static double value_of (const char *text, const char *series)
{
    size_t len = strlen (series);
    for (const char *p = text; (p = strstr (p, series)); p++)
        if ((p == text || p[-1] == '\n') && p[len] == ' ')
            return strtod (p + len + 1, NULL);
    return NAN;
}

START_TEST (test_queue_wait_p99)
{
    metrics_t *m = new_metrics ();
    metrics_tick (m, 1000000);
    ck_assert_double_eq (metrics_queue_wait_p99 (m, "iris"), 0); //  never seen
    //  98 short waits and 2 long ones: the 99th of 100 is a long one
    for (int i = 0; i < 98; i++)
        metrics_observe_job (m, "iris", "OK", 0.001, 0.001, 0.002, 1);
    metrics_observe_job (m, "iris", "OK", 2.0, 0.001, 2.001, 1);
    metrics_observe_job (m, "iris", "OK", 1.5, 0.001, 1.501, 1);
    //  Failed before dispatch: no queue wait observed
    metrics_observe_job (m, "iris", "NOT_FOUND", -1, -1, -1, 0);
    double p99 = metrics_queue_wait_p99 (m, "iris");
    //  The bucket's bound, never above the longest wait
    ck_assert_msg (p99 >= 1.5 && p99 <= 2.0, "p99 %g", p99);
    //  Two more short ones: the 101st of 102 is still a long one; with 300
    //  short ones it is short (to within a bucket)
    for (int i = 0; i < 2; i++)
        metrics_observe_job (m, "iris", "OK", 0.001, 0.001, 0.002, 1);
    p99 = metrics_queue_wait_p99 (m, "iris");
    ck_assert_msg (p99 >= 1.5, "p99 %g", p99);
    for (int i = 0; i < 200; i++)
        metrics_observe_job (m, "iris", "OK", 0.001, 0.001, 0.002, 1);
    p99 = metrics_queue_wait_p99 (m, "iris");
    ck_assert_msg (p99 >= 0.001 && p99 <= 0.001 * 1.19, "p99 %g", p99);
    //  Another model has its own
    metrics_observe_job (m, "linear", "OK", 0.25, 0.001, 0.3, 1);
    ck_assert_double_eq (metrics_queue_wait_p99 (m, "linear"), 0.25);
    ck_assert_double_eq (metrics_queue_wait_p99 (m, "nobody"), 0);
    metrics_destroy (&m);
}
END_TEST

START_TEST (test_queue_wait_window)
{
    metrics_t *m = new_metrics ();
    int64_t t0 = 5000000; //  ms
    metrics_tick (m, t0);
    metrics_observe_job (m, "iris", "OK", 3.0, 0.001, 3.1, 1);
    //  A second later, short waits: the long one is still in the window
    metrics_tick (m, t0 + 1000);
    for (int i = 0; i < 10; i++)
        metrics_observe_job (m, "iris", "OK", 0.01, 0.001, 0.02, 1);
    ck_assert_double_eq (metrics_queue_wait_p99 (m, "iris"), 3.0);
    //  The last second of the window still holds it
    metrics_tick (m, t0 + (METRICS_WAIT_WINDOW_S - 1) * 1000 + 999);
    ck_assert_double_eq (metrics_queue_wait_p99 (m, "iris"), 3.0);
    //  Then it drops out; the short ones stay a second longer
    metrics_tick (m, t0 + METRICS_WAIT_WINDOW_S * 1000);
    double p99 = metrics_queue_wait_p99 (m, "iris");
    ck_assert_msg (p99 >= 0.01 && p99 <= 0.01 * 1.19, "p99 %g", p99);
    //  A slot reused for a later second starts empty
    metrics_observe_job (m, "iris", "OK", 0.5, 0.001, 0.6, 1);
    p99 = metrics_queue_wait_p99 (m, "iris");
    ck_assert_msg (p99 >= 0.5 && p99 <= 0.5 * 1.19, "p99 %g", p99);
    metrics_tick (m, t0 + (METRICS_WAIT_WINDOW_S + 1) * 1000);
    ck_assert_double_eq (metrics_queue_wait_p99 (m, "iris"), 0.5);
    //  Time does not go back: an older tick changes nothing
    metrics_tick (m, t0);
    ck_assert_double_eq (metrics_queue_wait_p99 (m, "iris"), 0.5);
    //  Long after, nothing is left
    metrics_tick (m, t0 + 3600 * 1000);
    ck_assert_double_eq (metrics_queue_wait_p99 (m, "iris"), 0);
    metrics_destroy (&m);
}
END_TEST

//  The p99 is the bound of the bucket of the true 99th percentile: never
//  below it, at most 2^(1/4) above, over waits from 50 us to 100 s (past
//  105 s, the last bucket, it is the longest wait)
START_TEST (test_queue_wait_p99_accuracy)
{
    metrics_t *m = new_metrics ();
    unsigned seed = 7;
    for (int round = 0; round < 50; round++) {
        metrics_tick (m, 1000000 + round * 100000); //  a fresh window each round
        double waits[500];
        int n = 100 + round * 8;
        for (int i = 0; i < n; i++) {
            //  log-uniform between 50 us and 100 s
            double u = (double)rand_r (&seed) / RAND_MAX;
            waits[i] = 0.00005 * pow (2e6, u);
            metrics_observe_job (m, "m", "OK", waits[i], 0, waits[i], 1);
        }
        //  The true p99: the ceil(0.99 n)th smallest
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && waits[j - 1] > waits[j]; j--) {
                double t = waits[j];
                waits[j] = waits[j - 1];
                waits[j - 1] = t;
            }
        double truth = waits[(n * 99 + 99) / 100 - 1];
        double p99 = metrics_queue_wait_p99 (m, "m");
        ck_assert_msg (p99 >= truth * (1 - 1e-12) && p99 <= truth * 1.1893,
                       "round %d: p99 %g, true %g", round, p99, truth);
    }
    metrics_destroy (&m);
}
END_TEST

START_TEST (test_autoscaling_gauges)
{
    metrics_t *m = new_metrics ();
    metrics_tick (m, 2000000);
    metrics_add_model (m, "iris", 3, 1);
    metrics_set_model_wait (m, "iris", 0.5);
    metrics_set_model_wait (m, "iris", 1.25); //  another version: the oldest job counts
    metrics_set_model_wait (m, "iris", 0.75);
    metrics_add_model (m, "linear", 0, 0);
    metrics_observe_job (m, "iris", "OK", 0.125, 0.001, 0.2, 1);
    metrics_add_worker (m, "00AB", "host-a", 101, 4, 3, false);
    metrics_add_worker (m, "00CD", "host\"b", 102, 4, 1, false);
    metrics_add_worker (m, "00EF", "host-a", 103, 8, 2, true); //  drains: not in the totals
    char *text = metrics_render (m);
    ck_assert_line (text, "amaas_queue_wait_seconds{model=\"iris\"} 1.25");
    ck_assert_line (text, "amaas_queue_wait_seconds{model=\"linear\"} 0");
    ck_assert_line (text, "amaas_queue_wait_p99_seconds{model=\"iris\"} 0.125");
    ck_assert_line (text, "amaas_queue_wait_p99_seconds{model=\"linear\"} 0");
    ck_assert_line (text, "amaas_worker_in_flight{worker=\"00AB\",host=\"host-a\",pid=\"101\"} 3");
    ck_assert_line (text,
                    "amaas_worker_in_flight{worker=\"00CD\",host=\"host\\\"b\",pid=\"102\"} 1");
    ck_assert_line (text, "amaas_worker_in_flight{worker=\"00EF\",host=\"host-a\",pid=\"103\"} 2");
    ck_assert_line (text, "amaas_worker_credit{worker=\"00AB\",host=\"host-a\",pid=\"101\"} 4");
    ck_assert_line (text, "amaas_worker_credit{worker=\"00EF\",host=\"host-a\",pid=\"103\"} 8");
    //  (3 + 1) held of 4 + 4 credit, by 2 serving workers
    ck_assert_double_eq (value_of (text, "amaas_busy_ratio"), 0.5);
    ck_assert_double_eq (value_of (text, "amaas_in_flight_per_worker"), 2);
    free (text);
    //  A new round: the workers gone are gone, the waits cleared
    metrics_clear_models (m);
    metrics_add_model (m, "iris", 0, 0);
    metrics_clear_workers (m);
    text = metrics_render (m);
    ck_assert_line (text, "amaas_queue_wait_seconds{model=\"iris\"} 0");
    ck_assert_ptr_null (strstr (text, "amaas_worker_in_flight{"));
    ck_assert_double_eq (value_of (text, "amaas_busy_ratio"), 0);
    ck_assert_double_eq (value_of (text, "amaas_in_flight_per_worker"), 0);
    free (text);
    //  Many workers: the gauges grow with them
    metrics_clear_workers (m);
    for (uint32_t i = 0; i < 1000; i++) {
        char id[16];
        snprintf (id, sizeof id, "W%04u", i);
        metrics_add_worker (m, id, "h", i, 2, i % 3, false);
    }
    text = metrics_render (m);
    ck_assert_line (text, "amaas_worker_credit{worker=\"W0999\",host=\"h\",pid=\"999\"} 2");
    //  held: 333 x (0 + 1 + 2) + 0 = 999 of 2000
    ck_assert_double_eq (value_of (text, "amaas_busy_ratio"), 999.0 / 2000);
    ck_assert_double_eq (value_of (text, "amaas_in_flight_per_worker"), 999.0 / 1000);
    free (text);
    metrics_destroy (&m);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("metrics");
    TCase *tc = tcase_create ("metrics");
    tcase_add_test (tc, test_jobs_by_model_and_code);
    tcase_add_test (tc, test_histogram_buckets_are_cumulative);
    tcase_add_test (tc, test_gauges);
    tcase_add_test (tc, test_every_family_has_help_and_type);
    tcase_add_test (tc, test_label_escaping);
    tcase_add_test (tc, test_models_past_the_limit);
    tcase_add_test (tc, test_bad_listen_addresses);
    tcase_add_test (tc, test_http_server);
    tcase_add_test (tc, test_queue_wait_p99);
    tcase_add_test (tc, test_queue_wait_window);
    tcase_add_test (tc, test_queue_wait_p99_accuracy);
    tcase_add_test (tc, test_autoscaling_gauges);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
