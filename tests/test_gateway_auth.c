/*  test_gateway_auth.c - unit tests of amaas-gateway's API keys file and
    Bearer check (gateway/auth.c), and of its metrics text
    (gateway/metrics.c), without sockets.
*/
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "metrics.h"
#include "unit.h"

//  Writes text to a new temporary file; returns its path (to free)
static char *write_file (const char *text)
{
    char *path = strdup ("/tmp/amaas-test-keys-XXXXXX");
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, text, strlen (text)), (ssize_t)strlen (text));
    close (fd);
    return path;
}

//  Loads text as a keys file: the return code, err filled
static int load (const char *text, auth_keys_t *keys, char *err, size_t err_size)
{
    char *path = write_file (text);
    int rc = auth_keys_load (path, keys, err, err_size);
    unlink (path);
    free (path);
    return rc;
}

START_TEST (test_keys_load_and_find)
{
    auth_keys_t keys;
    char err[512] = "";
    ck_assert_int_eq (load ("# NAME: TOKEN\n\nalice: alice-token-1\n  bob :  bob-token-2  \n",
                            &keys, err, sizeof err),
                      0);
    ck_assert_uint_eq (keys.n_keys, 2);
    ck_assert_str_eq (keys.keys[0].name, "alice");
    ck_assert_str_eq (keys.keys[1].name, "bob");
    ck_assert_str_eq (keys.keys[1].token, "bob-token-2");
    ck_assert_int_eq (auth_keys_find (&keys, "Bearer alice-token-1"), 0);
    ck_assert_int_eq (auth_keys_find (&keys, "bearer bob-token-2"), 1);
    ck_assert_int_eq (auth_keys_find (&keys, "Bearer  bob-token-2 "), 1);
    ck_assert_int_eq (auth_keys_find (&keys, NULL), -1);
    ck_assert_int_eq (auth_keys_find (&keys, "Bearer "), -1);
    ck_assert_int_eq (auth_keys_find (&keys, "Bearer alice-token-"), -1);   //  a prefix
    ck_assert_int_eq (auth_keys_find (&keys, "Bearer alice-token-12"), -1); //  longer
    ck_assert_int_eq (auth_keys_find (&keys, "Basic alice-token-1"), -1);
    ck_assert_int_eq (auth_keys_find (&keys, "alice-token-1"), -1);
    auth_keys_free (&keys);
    ck_assert_uint_eq (keys.n_keys, 0);
}
END_TEST

START_TEST (test_keys_refused)
{
    static const struct {
        const char *text, *words;
    } cases[] = {
        {"alice alice-token\n", "NAME: TOKEN"},
        {"../x: token\n", "NAME"},
        {".hidden: token\n", "NAME"},
        {"alice: two words\n", "TOKEN"},
        {"alice:\n", "TOKEN"},
        {"alice: t1\nalice: t2\n", "twice"},
        {"alice: same\nbob: same\n", "twice"},
        {"# only a comment\n", "no key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        auth_keys_t keys;
        char err[512] = "";
        ck_assert_msg (load (cases[i].text, &keys, err, sizeof err) == -1, "accepted: %s",
                       cases[i].text);
        ck_assert_msg (strstr (err, cases[i].words), "'%s' gave '%s'", cases[i].text, err);
        ck_assert_uint_eq (keys.n_keys, 0);
        ck_assert_ptr_null (keys.keys);
    }
    auth_keys_t keys;
    char err[512] = "";
    ck_assert_int_eq (auth_keys_load ("/nonexistent/keys", &keys, err, sizeof err), -1);
    ck_assert_ptr_nonnull (strstr (err, "/nonexistent/keys"));
}
END_TEST

START_TEST (test_metrics_text)
{
    gw_metrics_t *m = gw_metrics_new ();
    ck_assert_ptr_nonnull (m);
    for (int i = 0; i < 3; i++) {
        gw_metrics_begin (m);
        gw_metrics_end (m, ROUTE_PREDICT, 200, 0.002);
    }
    gw_metrics_begin (m);
    gw_metrics_end (m, ROUTE_OTHER, 404, 0.0001);
    gw_metrics_begin (m);
    gw_metrics_end (m, ROUTE_INFER, 418, 0.5); //  not a listed status: its own series
    gw_metrics_begin (m);
    gw_metrics_end (m, ROUTE_INFER, 0, 1.0); //  unanswered: not counted
    gw_metrics_begin (m);                    //  still in flight
    size_t size = 0;
    char *text = gw_metrics_render (m, &size);
    ck_assert_ptr_nonnull (text);
    ck_assert_uint_eq (size, strlen (text));
    ck_assert_ptr_nonnull (
        strstr (text, "amaas_gateway_requests_total{route=\"/predict/{name}\",code=\"200\"} 3\n"));
    ck_assert_ptr_nonnull (
        strstr (text, "amaas_gateway_requests_total{route=\"other\",code=\"404\"} 1\n"));
    ck_assert_ptr_nonnull (strstr (
        text, "amaas_gateway_requests_total{route=\"/v2/models/{name}/infer\",code=\"418\"} 1\n"));
    ck_assert_ptr_nonnull (strstr (text, "amaas_gateway_request_duration_seconds_bucket{route=\"/"
                                         "predict/{name}\",le=\"0.001\"} 0\n"));
    ck_assert_ptr_nonnull (strstr (text, "amaas_gateway_request_duration_seconds_bucket{route=\"/"
                                         "predict/{name}\",le=\"0.0025\"} 3\n"));
    ck_assert_ptr_nonnull (strstr (
        text, "amaas_gateway_request_duration_seconds_count{route=\"/predict/{name}\"} 3\n"));
    ck_assert_ptr_nonnull (strstr (text, "amaas_gateway_in_flight 1\n"));
    ck_assert_ptr_null (strstr (text, "code=\"0\""));
    free (text);
    gw_metrics_destroy (&m);
    ck_assert_ptr_null (m);
}
END_TEST

int main (void)
{
    Suite *suite = suite_create ("gateway_auth");
    TCase *tc = tcase_create ("core");
    tcase_add_test (tc, test_keys_load_and_find);
    tcase_add_test (tc, test_keys_refused);
    tcase_add_test (tc, test_metrics_text);
    suite_add_tcase (suite, tc);
    return unit_run (suite);
}
