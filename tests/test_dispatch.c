/*  test_dispatch.c - unit tests of the broker's queues and worker registry,
    without sockets: a send callback records which job went to which worker.
*/
#include <check.h>
#include <string.h>

#include "dispatch.h"
#include "unit.h"

#define MAX_SENT 1000

typedef struct {
    dispatch_job_t *job[MAX_SENT];
    dispatch_worker_t *worker[MAX_SENT];
    size_t n;
    bool refuse; //  make the send fail
} sent_t;

static int record (dispatch_job_t *job, dispatch_worker_t *worker, void *arg)
{
    sent_t *sent = arg;
    if (sent->refuse)
        return -1;
    ck_assert_uint_lt (sent->n, MAX_SENT);
    sent->job[sent->n] = job;
    sent->worker[sent->n] = worker;
    sent->n++;
    return 0;
}

//  Registers a worker serving the comma-separated models with credit.
static dispatch_worker_t *add_worker (dispatch_t *d, const char *key, const char *models,
                                      uint32_t credit, dispatch_jobs_t *failed)
{
    codec_header_t ready = {0};
    char list[256];
    snprintf (list, sizeof list, "%s", models);
    ready.models = calloc (16, sizeof (codec_model_t));
    //  "name" serves version 1, "name@version" that version
    for (char *name = strtok (list, ","); name; name = strtok (NULL, ",")) {
        codec_model_t *m = &ready.models[ready.n_models++];
        char *at = strchr (name, '@');
        if (at)
            *at = 0;
        snprintf (m->name, CODEC_NAME_MAX, "%s", name);
        snprintf (m->version, CODEC_VERSION_MAX, "%s", at ? at + 1 : "1");
    }
    ready.credit = credit;
    ready.pid = 1;
    zframe_t *identity = zframe_new (key, strlen (key));
    size_t refused;
    char warning[256];
    dispatch_worker_t *w = dispatch_worker_ready (d, key, &identity, &ready, 1000, failed, &refused,
                                                  warning, sizeof warning);
    codec_header_reset (&ready);
    ck_assert_ptr_nonnull (w);
    return w;
}

static dispatch_job_t *new_job (dispatch_t *d, const char *model, uint64_t id)
{
    codec_header_t request = {0};
    codec_header_set_model (&request, model);
    return dispatch_job_new (d, id, &request, NULL, 0, NULL, 0);
}

//  Submits a job that must be accepted
static dispatch_job_t *submit (dispatch_t *d, const char *model, uint64_t id)
{
    dispatch_job_t *job = new_job (d, model, id);
    ck_assert_int_eq (dispatch_submit (d, job, NULL), AMAAS_OK);
    return job;
}

START_TEST (test_dispatch_and_complete)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w = add_worker (d, "w1", "linear", 4, failed);
    dispatch_job_t *job = submit (d, "linear", 7);
    ck_assert_uint_eq (dispatch_queued (d, "linear"), 1);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    ck_assert_ptr_eq (sent.job[0], job);
    ck_assert_ptr_eq (sent.worker[0], w);
    ck_assert_uint_eq (dispatch_queued (d, "linear"), 0);
    ck_assert_uint_eq (dispatch_in_flight (d), 1);
    //  A result from another worker, or for another token, is not accepted
    dispatch_worker_t *other = add_worker (d, "w2", "linear", 4, failed);
    ck_assert_ptr_null (dispatch_complete (d, other, dispatch_job_token (job)));
    ck_assert_ptr_null (dispatch_complete (d, w, dispatch_job_token (job) + 100));
    dispatch_job_t *done = dispatch_complete (d, w, dispatch_job_token (job));
    ck_assert_ptr_eq (done, job);
    ck_assert_uint_eq (dispatch_job_id (done), 7);
    ck_assert_ptr_null (dispatch_complete (d, w, dispatch_job_token (job))); //  only once
    ck_assert_uint_eq (dispatch_worker_done (w), 1);
    dispatch_job_destroy (&done);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_not_found_and_full)
{
    dispatch_t *d = dispatch_new (2, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    add_worker (d, "w1", "a", 1, failed);
    dispatch_job_t *job = new_job (d, "nope", 1);
    ck_assert_int_eq (dispatch_submit (d, job, NULL), AMAAS_NOT_FOUND);
    ck_assert_ptr_nonnull (strstr (dispatch_job_fail_message (job), "nope"));
    dispatch_job_destroy (&job);
    job = new_job (d, "a", 2);
    ck_assert_int_eq (dispatch_submit (d, job, "9"), AMAAS_NOT_FOUND);
    ck_assert_ptr_nonnull (strstr (dispatch_job_fail_message (job), "version"));
    ck_assert_int_eq (dispatch_submit (d, job, "1"), AMAAS_OK);
    submit (d, "a", 3);
    job = new_job (d, "a", 4);
    ck_assert_int_eq (dispatch_submit (d, job, NULL), AMAAS_RESOURCE_EXHAUSTED);
    ck_assert_ptr_nonnull (strstr (dispatch_job_fail_message (job), "full"));
    dispatch_job_destroy (&job);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d); //  frees the queued jobs (ASan checks)
}
END_TEST

//  A job received at now_us for model
static amaas_code_t submit_at (dispatch_t *d, const char *model, uint64_t id, uint64_t now_us)
{
    codec_header_t request = {0};
    codec_header_set_model (&request, model);
    dispatch_job_t *job = dispatch_job_new (d, id, &request, NULL, 0, NULL, now_us);
    amaas_code_t code = dispatch_submit (d, job, NULL);
    if (code != AMAAS_OK)
        ck_assert_ptr_nonnull (strstr (dispatch_job_fail_message (job), model));
    dispatch_job_destroy (&job);
    return code;
}

START_TEST (test_warmup_unavailable_until_a_worker_registers)
{
    //  A broker that has just started answers UNAVAILABLE (retry) for a
    //  model nobody serves yet, until its warm-up ends ...
    dispatch_t *d = dispatch_new (10, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    dispatch_set_warmup (d, 1000000);
    ck_assert_int_eq (submit_at (d, "a", 1, 0), AMAAS_UNAVAILABLE);
    ck_assert_int_eq (submit_at (d, "a", 2, 999999), AMAAS_UNAVAILABLE);
    ck_assert_int_eq (submit_at (d, "a", 3, 1000000), AMAAS_NOT_FOUND);
    dispatch_destroy (&d);
    //  ... or until a worker registers: then what it does not serve is
    //  NOT_FOUND, as later
    d = dispatch_new (10, 2);
    dispatch_set_warmup (d, 1000000);
    ck_assert_int_eq (submit_at (d, "b", 4, 10), AMAAS_UNAVAILABLE);
    add_worker (d, "w1", "a", 1, failed);
    ck_assert_int_eq (submit_at (d, "b", 5, 20), AMAAS_NOT_FOUND);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 0);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_credit_and_least_loaded)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w1 = add_worker (d, "w1", "m", 2, failed);
    dispatch_worker_t *w2 = add_worker (d, "w2", "m", 3, failed);
    for (uint64_t i = 1; i <= 10; i++)
        submit (d, "m", i);
    //  Credit 2 + 3: five go out, five wait
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 5);
    ck_assert_uint_eq (dispatch_queued (d, "m"), 5);
    size_t to_w1 = 0;
    for (size_t i = 0; i < sent.n; i++)
        to_w1 += sent.worker[i] == w1;
    ck_assert_uint_eq (to_w1, 2);
    //  Jobs leave the queue in FIFO order
    for (size_t i = 0; i < sent.n; i++)
        ck_assert_uint_eq (dispatch_job_id (sent.job[i]), i + 1);
    //  Least loaded alternates while both are equally loaded
    ck_assert_ptr_ne (sent.worker[0], sent.worker[1]);
    //  w2 finishes one: the next job goes to w2, the only one with credit
    dispatch_job_t *done = dispatch_complete (d, w2,
                                              dispatch_job_worker (sent.job[1]) == w2
                                                  ? dispatch_job_token (sent.job[1])
                                                  : dispatch_job_token (sent.job[0]));
    ck_assert_ptr_nonnull (done);
    dispatch_job_destroy (&done);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    ck_assert_ptr_eq (sent.worker[5], w2);
    ck_assert_uint_eq (dispatch_job_id (sent.job[5]), 6);
    //  A send that fails leaves the job queued
    done = dispatch_complete (d, w1,
                              dispatch_job_worker (sent.job[0]) == w1
                                  ? dispatch_job_token (sent.job[0])
                                  : dispatch_job_token (sent.job[1]));
    dispatch_job_destroy (&done);
    sent.refuse = true;
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 0);
    ck_assert_uint_eq (dispatch_queued (d, "m"), 4);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_round_robin_when_idle)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w1 = add_worker (d, "w1", "m", 4, failed);
    dispatch_worker_t *w2 = add_worker (d, "w2", "m", 4, failed);
    //  One job at a time, each completed before the next: both workers get work
    size_t counts[2] = {0, 0};
    for (uint64_t i = 1; i <= 10; i++) {
        submit (d, "m", i);
        ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
        dispatch_worker_t *w = sent.worker[sent.n - 1];
        counts[w == w2]++;
        dispatch_job_t *done = dispatch_complete (d, w, dispatch_job_token (sent.job[sent.n - 1]));
        dispatch_job_destroy (&done);
    }
    ck_assert_uint_eq (counts[0], 5);
    ck_assert_uint_eq (counts[1], 5);
    (void)w1;
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_dead_worker_requeues)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w1 = add_worker (d, "w1", "m", 3, failed);
    for (uint64_t i = 1; i <= 3; i++)
        submit (d, "m", i);
    submit (d, "m", 4);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 3);
    dispatch_worker_t *w2 = add_worker (d, "w2", "m", 10, failed);
    //  w2 joined after: job 4 goes to it
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    ck_assert_ptr_eq (sent.worker[3], w2);
    //  w1 dies holding 1..3: they go back to the front, in order, then to w2
    dispatch_worker_remove (d, w1, failed);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 0);
    ck_assert_uint_eq (dispatch_worker_count (d), 1);
    ck_assert_uint_eq (dispatch_queued (d, "m"), 3);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 3);
    for (size_t i = 4; i < 7; i++) {
        ck_assert_ptr_eq (sent.worker[i], w2);
        ck_assert_uint_eq (dispatch_job_id (sent.job[i]), i - 3);
        ck_assert_uint_eq (dispatch_job_lost (sent.job[i]), 1);
    }
    //  w2 dies too: jobs lost with 2 workers fail as poison; job 4 (lost
    //  once) has no worker left to go to: it fails too
    dispatch_worker_remove (d, w2, failed);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 4);
    for (dispatch_job_t *job = dispatch_jobs_first (failed); job;
         job = dispatch_jobs_next (failed, job)) {
        ck_assert_int_eq (dispatch_job_fail_code (job), AMAAS_UNAVAILABLE);
        if (dispatch_job_id (job) <= 3)
            ck_assert_ptr_nonnull (strstr (dispatch_job_fail_message (job), "poison"));
        else
            ck_assert_ptr_nonnull (strstr (dispatch_job_fail_message (job), "no other"));
    }
    ck_assert_uint_eq (dispatch_in_flight (d), 0);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_last_worker_gone_fails_queue)
{
    dispatch_t *d = dispatch_new (100, 5);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w = add_worker (d, "w1", "a,b", 1, failed);
    submit (d, "a", 1);
    submit (d, "a", 2);
    submit (d, "b", 3);
    dispatch_pump (d, record, &sent, 0, failed);
    ck_assert_uint_eq (sent.n, 1);
    dispatch_worker_remove (d, w, failed);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 3);
    ck_assert_uint_eq (dispatch_queued (d, "a") + dispatch_queued (d, "b"), 0);
    //  The model is no longer listed
    codec_header_t h = {0};
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 0);
    codec_header_reset (&h);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_purge_and_models)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    dispatch_worker_t *w1 = add_worker (d, "w1", "zeta,alpha", 1, failed);
    dispatch_worker_t *w2 = add_worker (d, "w2", "alpha", 1, failed);
    codec_header_t h = {0};
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 2);
    ck_assert_str_eq (h.models[0].name, "alpha");
    ck_assert_uint_eq (h.models[0].workers, 2);
    ck_assert_str_eq (h.models[1].name, "zeta");
    ck_assert_uint_eq (h.models[1].workers, 1);
    dispatch_worker_heard (w1, 0, 500);
    dispatch_worker_heard (w2, 0, 2000);
    ck_assert_uint_eq (dispatch_purge (d, 1000, failed), 1);
    ck_assert_ptr_null (dispatch_worker_find (d, "w1"));
    ck_assert_ptr_eq (dispatch_worker_find (d, "w2"), w2);
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 1);
    ck_assert_str_eq (h.models[0].name, "alpha");
    codec_header_reset (&h);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_reregistration_and_shutdown)
{
    dispatch_t *d = dispatch_new (100, 3);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w1 = add_worker (d, "w1", "m", 2, failed);
    submit (d, "m", 1);
    submit (d, "m", 2);
    submit (d, "m", 3);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 2);
    //  The same worker says READY again (it reloaded its models): the
    //  jobs it holds stay with it, it answers them
    ck_assert_ptr_eq (add_worker (d, "w1", "m", 2, failed), w1);
    ck_assert_uint_eq (dispatch_worker_count (d), 1);
    ck_assert_uint_eq (dispatch_queued (d, "m"), 1);
    ck_assert_uint_eq (dispatch_in_flight (d), 2);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 0);
    ck_assert_ptr_eq (dispatch_complete (d, w1, dispatch_job_token (sent.job[0])), sent.job[0]);
    dispatch_job_destroy (&sent.job[0]);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    ck_assert_uint_eq (dispatch_job_id (sent.job[2]), 3);
    //  Shutdown fails the held and the queued
    submit (d, "m", 4);
    dispatch_shutdown (d, failed);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 3);
    ck_assert_uint_eq (dispatch_worker_count (d), 0);
    ck_assert_uint_eq (dispatch_in_flight (d), 0);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

//  Submits a job for a version ("" for none) and returns its code; an
//  accepted job belongs to the dispatcher, a refused one is destroyed
static amaas_code_t submit_version (dispatch_t *d, const char *model, uint64_t id,
                                    const char *version, dispatch_job_t **job_p)
{
    dispatch_job_t *job = new_job (d, model, id);
    amaas_code_t code = dispatch_submit (d, job, version);
    if (code != AMAAS_OK)
        dispatch_job_destroy (&job);
    if (job_p)
        *job_p = job;
    return code;
}

START_TEST (test_versions_side_by_side)
{
    dispatch_t *d = dispatch_new (100, 3);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w1 = add_worker (d, "w1", "linear@1", 8, failed);
    dispatch_worker_t *w2 = add_worker (d, "w2", "linear@2", 8, failed);
    dispatch_worker_t *w10 = add_worker (d, "w10", "linear@10", 8, failed);
    //  MODELS lists every version, each with its own workers, in order
    codec_header_t h = {0};
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 3);
    ck_assert_str_eq (h.models[0].version, "1");
    ck_assert_str_eq (h.models[1].version, "2");
    ck_assert_str_eq (h.models[2].version, "10");
    ck_assert_uint_eq (h.models[1].workers, 1);
    codec_header_reset (&h);
    //  No version: the highest, numerically (10 > 2); a version: that one
    dispatch_job_t *job;
    ck_assert_int_eq (submit_version (d, "linear", 1, NULL, &job), AMAAS_OK);
    ck_assert_str_eq (dispatch_job_version (job), "10");
    ck_assert_int_eq (submit_version (d, "linear", 2, "1", &job), AMAAS_OK);
    ck_assert_str_eq (dispatch_job_version (job), "1");
    ck_assert_int_eq (submit_version (d, "linear", 3, "3", NULL), AMAAS_NOT_FOUND);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 2);
    for (size_t i = 0; i < 2; i++)
        ck_assert_ptr_eq (sent.worker[i], dispatch_job_id (sent.job[i]) == 1 ? w10 : w1);
    //  The worker of version 10 dies: its job, which asked for no version,
    //  goes to the highest version left; version 10 disappears
    dispatch_worker_remove (d, w10, failed);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 0);
    ck_assert_ptr_null (dispatch_model_find (d, "linear", "10"));
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    ck_assert_ptr_eq (sent.worker[2], w2);
    ck_assert_str_eq (dispatch_job_version (sent.job[2]), "2");
    ck_assert_int_eq (submit_version (d, "linear", 4, "10", NULL), AMAAS_NOT_FOUND);
    //  A job that asked for version 1 fails when version 1 is gone
    ck_assert_int_eq (submit_version (d, "linear", 5, "1", &job), AMAAS_OK);
    ck_assert_int_eq (submit_version (d, "linear", 6, "1", NULL), AMAAS_OK);
    ck_assert_int_eq (submit_version (d, "linear", 7, "1", NULL), AMAAS_OK);
    ck_assert_int_eq (submit_version (d, "linear", 8, "1", NULL), AMAAS_OK);
    ck_assert_int_eq (submit_version (d, "linear", 9, "1", NULL), AMAAS_OK);
    ck_assert_int_eq (submit_version (d, "linear", 10, "1", NULL), AMAAS_OK);
    ck_assert_int_eq (submit_version (d, "linear", 11, "1", NULL), AMAAS_OK);
    ck_assert_int_eq (submit_version (d, "linear", 12, "1", NULL), AMAAS_OK);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 7); //  credit 8: 8 held
    ck_assert_uint_eq (dispatch_queued (d, "linear"), 1);
    dispatch_worker_remove (d, w1, failed);
    //  8 held and 1 queued, all asked for version 1: each fails
    ck_assert_uint_eq (dispatch_jobs_size (failed), 9);
    ck_assert_int_eq (dispatch_job_fail_code (dispatch_jobs_first (failed)), AMAAS_UNAVAILABLE);
    dispatch_jobs_purge (failed);
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 1);
    ck_assert_str_eq (h.models[0].version, "2");
    codec_header_reset (&h);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_one_worker_cannot_change_another)
{
    dispatch_t *d = dispatch_new (100, 3);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    codec_header_t ready = {0};
    ready.models = calloc (2, sizeof (codec_model_t));
    ready.n_models = 1;
    snprintf (ready.models[0].name, CODEC_NAME_MAX, "linear");
    snprintf (ready.models[0].version, CODEC_VERSION_MAX, "1");
    ready.models[0].width = 1;
    ready.credit = 4;
    size_t refused;
    char warning[256];
    zframe_t *identity = zframe_new ("good", 4);
    dispatch_worker_t *good = dispatch_worker_ready (d, "good", &identity, &ready, 1000, failed,
                                                     &refused, warning, sizeof warning);
    ck_assert_uint_eq (refused, 0);
    //  Another worker announces the same version with another width: it is
    //  not linked to it, and the version keeps its width
    ready.models[0].width = 7;
    identity = zframe_new ("bad", 3);
    dispatch_worker_t *bad = dispatch_worker_ready (d, "bad", &identity, &ready, 1000, failed,
                                                    &refused, warning, sizeof warning);
    ck_assert_ptr_nonnull (bad);
    ck_assert_uint_eq (refused, 1);
    ck_assert_ptr_nonnull (strstr (warning, "width 7"));
    ck_assert_uint_eq (dispatch_worker_model_count (bad), 0);
    //  Made-up versions from it come and go with it
    ready.n_models = 2;
    snprintf (ready.models[0].version, CODEC_VERSION_MAX, "d75c4d7e");
    snprintf (ready.models[1].name, CODEC_NAME_MAX, "linear");
    snprintf (ready.models[1].version, CODEC_VERSION_MAX, "v49");
    identity = zframe_new ("bad", 3);
    ck_assert_ptr_eq (dispatch_worker_ready (d, "bad", &identity, &ready, 1000, failed, &refused,
                                             warning, sizeof warning),
                      bad);
    codec_header_t h = {0};
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 3);
    codec_header_reset (&h);
    dispatch_worker_remove (d, bad, failed);
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 1);
    ck_assert_str_eq (h.models[0].version, "1");
    ck_assert_uint_eq (h.models[0].width, 1);
    ck_assert_uint_eq (h.models[0].workers, 1);
    codec_header_reset (&h);
    ck_assert_ptr_nonnull (dispatch_model_find (d, "linear", "1"));
    ck_assert_ptr_null (dispatch_model_find (d, "linear", "v49"));
    (void)good;
    codec_header_reset (&ready);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

//  A worker announcing one version of a model, with metadata or without
static dispatch_worker_t *ready_with_meta (dispatch_t *d, const char *key, const char *input,
                                           dispatch_jobs_t *failed)
{
    codec_header_t ready = {0};
    ready.models = calloc (1, sizeof (codec_model_t));
    ck_assert_ptr_nonnull (ready.models);
    ready.n_models = 1;
    codec_model_t *m = &ready.models[0];
    snprintf (m->name, CODEC_NAME_MAX, "iris");
    snprintf (m->version, CODEC_VERSION_MAX, "1");
    m->width = 4;
    if (input) {
        snprintf (m->meta.input, sizeof m->meta.input, "%s", input);
        m->meta.datatype = AMAAS_FP64;
        m->meta.n_outputs = 2;
        m->meta.outputs[0] = (codec_output_t){.name = "probabilities",
                                              .datatype = AMAAS_FP64,
                                              .width = 3,
                                              .ndim = 2,
                                              .shape = {-1, 3}};
        m->meta.outputs[1] = (codec_output_t){.name = "label", .datatype = AMAAS_INT64};
        m->meta.n_inputs = 1;
        m->meta.inputs[0] =
            (codec_input_t){.datatype = AMAAS_FP64, .ndim = 2, .shape = {-1, (int64_t)m->width}};
        snprintf (m->meta.inputs[0].name, sizeof m->meta.inputs[0].name, "%s", input);
    }
    ready.credit = 1;
    size_t refused;
    char warning[256];
    zframe_t *identity = zframe_new (key, strlen (key));
    dispatch_worker_t *w = dispatch_worker_ready (d, key, &identity, &ready, 1000, failed, &refused,
                                                  warning, sizeof warning);
    ck_assert_ptr_nonnull (w);
    ck_assert_uint_eq (refused, 0);
    codec_header_reset (&ready);
    return w;
}

//  The metadata of a version (input, datatype, outputs) is its first
//  worker's, kept while it lives; a version whose first worker announced
//  none takes a later one's; MODELS_REPLY carries it.
START_TEST (test_version_metadata)
{
    dispatch_t *d = dispatch_new (100, 3);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    dispatch_worker_t *old = ready_with_meta (d, "old", NULL, failed);
    codec_header_t h = {0};
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 1);
    ck_assert_str_eq (h.models[0].meta.input, "");
    ck_assert_int_eq (h.models[0].meta.datatype, AMAAS_DTYPE_INVALID);
    ck_assert_uint_eq (h.models[0].meta.n_outputs, 0);
    ready_with_meta (d, "first", "features", failed);
    ready_with_meta (d, "second", "other", failed);
    const codec_model_meta_t *meta = dispatch_model_meta (dispatch_model_find (d, "iris", "1"));
    ck_assert_str_eq (meta->input, "features");
    ck_assert_int_eq (dispatch_models (d, &h), 0);
    ck_assert_uint_eq (h.n_models, 1);
    ck_assert_uint_eq (h.models[0].workers, 3);
    ck_assert_str_eq (h.models[0].meta.input, "features");
    ck_assert_int_eq (h.models[0].meta.datatype, AMAAS_FP64);
    ck_assert_uint_eq (h.models[0].meta.n_outputs, 2);
    ck_assert_str_eq (h.models[0].meta.outputs[1].name, "label");
    ck_assert_int_eq (h.models[0].meta.outputs[1].datatype, AMAAS_INT64);
    ck_assert_uint_eq (h.models[0].meta.outputs[0].width, 3);
    ck_assert_uint_eq (h.models[0].meta.outputs[0].ndim, 2);
    ck_assert_int_eq (h.models[0].meta.outputs[0].shape[1], 3);
    ck_assert_uint_eq (h.models[0].meta.n_inputs, 1);
    ck_assert_str_eq (h.models[0].meta.inputs[0].name, "features");
    ck_assert_int_eq (h.models[0].meta.inputs[0].shape[1], 4);
    //  The older worker leaving changes nothing
    dispatch_worker_remove (d, old, failed);
    ck_assert_str_eq (dispatch_model_meta (dispatch_model_find (d, "iris", "1"))->input,
                      "features");
    codec_header_reset (&h);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_update_moves_queued_jobs)
{
    dispatch_t *d = dispatch_new (100, 3);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w = add_worker (d, "w", "linear@1", 1, failed);
    dispatch_job_t *held = submit (d, "linear", 1);
    submit (d, "linear", 2);
    dispatch_job_t *pinned;
    ck_assert_int_eq (submit_version (d, "linear", 3, "1", &pinned), AMAAS_OK);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    //  Hot reload: the worker now serves version 2 only.  Its held job
    //  stays; the queued job that asked for no version moves to 2; the one
    //  that asked for 1 fails
    ck_assert_ptr_eq (add_worker (d, "w", "linear@2", 1, failed), w);
    ck_assert_uint_eq (dispatch_in_flight (d), 1);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 1);
    ck_assert_ptr_eq (dispatch_jobs_first (failed), pinned);
    ck_assert_int_eq (dispatch_job_fail_code (pinned), AMAAS_UNAVAILABLE);
    ck_assert_ptr_eq (dispatch_complete (d, w, dispatch_job_token (held)), held);
    dispatch_job_destroy (&held);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    ck_assert_str_eq (dispatch_job_version (sent.job[1]), "2");
    ck_assert_ptr_null (dispatch_model_find (d, "linear", "1"));
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_find_and_cancel)
{
    dispatch_t *d = dispatch_new (1000, 3);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    add_worker (d, "w", "m", 1, failed);
    int owner_a, owner_b;
    codec_header_t request = {0};
    codec_header_set_model (&request, "m");
    request.fields |= HDR_SESSION;
    request.session = 77;
    //  With a session: found by session and id, whatever its connection
    dispatch_job_t *a = dispatch_job_new (d, 5, &request, "c1", 2, NULL, 0);
    dispatch_job_set_owner (a, &owner_a);
    ck_assert_int_eq (dispatch_submit (d, a, NULL), AMAAS_OK);
    ck_assert_ptr_eq (dispatch_find (d, 77, 0, &owner_b, 5), a);
    ck_assert_ptr_null (dispatch_find (d, 77, 0, &owner_b, 6));
    ck_assert_ptr_null (dispatch_find (d, 78, 0, &owner_a, 5));
    ck_assert_ptr_null (dispatch_find (d, 77, 99, &owner_a, 5)); //  another key
    //  Without: by its connection's record and id
    dispatch_job_t *b = new_job (d, "m", 5);
    dispatch_job_set_owner (b, &owner_b);
    ck_assert_int_eq (dispatch_submit (d, b, NULL), AMAAS_OK);
    ck_assert_ptr_eq (dispatch_find (d, 0, 0, &owner_b, 5), b);
    ck_assert_ptr_null (dispatch_find (d, 0, 0, &owner_a, 5));
    //  Many jobs: each is found, and not once destroyed
    dispatch_job_t *many[500];
    for (uint64_t i = 0; i < 500; i++) {
        many[i] = new_job (d, "m", 1000 + i);
        dispatch_job_set_owner (many[i], &owner_a);
        ck_assert_int_eq (dispatch_submit (d, many[i], NULL), AMAAS_OK);
    }
    for (uint64_t i = 0; i < 500; i++)
        ck_assert_ptr_eq (dispatch_find (d, 0, 0, &owner_a, 1000 + i), many[i]);
    for (uint64_t i = 0; i < 500; i += 2) {
        ck_assert (dispatch_cancel (d, many[i]));
        dispatch_job_destroy (&many[i]);
    }
    for (uint64_t i = 0; i < 500; i++)
        ck_assert_ptr_eq (dispatch_find (d, 0, 0, &owner_a, 1000 + i), i % 2 ? many[i] : NULL);
    //  A held job is not taken back: its worker is told
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    ck_assert_ptr_eq (sent.job[0], a);
    ck_assert (!dispatch_cancel (d, a));
    ck_assert_ptr_eq (dispatch_find (d, 77, 0, NULL, 5), a);
    ck_assert (dispatch_cancel (d, b));
    dispatch_job_destroy (&b);
    ck_assert_uint_eq (dispatch_queued (d, "m"), 250);
    codec_header_reset (&request);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_priorities)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    codec_header_t request = {0};
    codec_header_set_model (&request, "m");
    request.fields |= HDR_PRIORITY;
    //  Low-priority jobs first, then urgent ones: urgent ones go out first,
    //  each level in FIFO order
    uint32_t levels[6] = {0, 0, 3, 1, 3, 0};
    add_worker (d, "w1", "m", 10, failed);
    for (uint64_t i = 0; i < 6; i++) {
        request.priority = levels[i];
        dispatch_job_t *job = dispatch_job_new (d, i, &request, NULL, 0, NULL, 0);
        ck_assert_int_eq (dispatch_submit (d, job, NULL), AMAAS_OK);
    }
    ck_assert_uint_eq (dispatch_queued (d, "m"), 6);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 6);
    uint64_t order[6] = {2, 4, 3, 0, 1, 5};
    for (size_t i = 0; i < 6; i++)
        ck_assert_uint_eq (dispatch_job_id (sent.job[i]), order[i]);
    //  The queue bound counts every level
    dispatch_t *small = dispatch_new (2, 2);
    add_worker (small, "w", "m", 1, failed);
    for (uint64_t i = 0; i < 3; i++) {
        request.priority = (uint32_t)i;
        dispatch_job_t *job = dispatch_job_new (small, i, &request, NULL, 0, NULL, 0);
        amaas_code_t code = dispatch_submit (small, job, NULL);
        ck_assert_int_eq (code, i < 2 ? AMAAS_OK : AMAAS_RESOURCE_EXHAUSTED);
        if (code != AMAAS_OK)
            dispatch_job_destroy (&job);
    }
    dispatch_destroy (&small);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

START_TEST (test_deadlines)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    codec_header_t request = {0};
    codec_header_set_model (&request, "m");
    add_worker (d, "w1", "m", 1, failed);
    //  Received at t = 1 s: job 1 with 100 ms, job 2 with 5 s, job 3 none
    request.fields |= HDR_DEADLINE_MS;
    request.deadline_ms = 100;
    dispatch_job_t *j1 = dispatch_job_new (d, 1, &request, NULL, 0, NULL, 1000000);
    request.deadline_ms = 5000;
    dispatch_job_t *j2 = dispatch_job_new (d, 2, &request, NULL, 0, NULL, 1000000);
    request.fields &= ~(uint32_t)HDR_DEADLINE_MS;
    dispatch_job_t *j3 = dispatch_job_new (d, 3, &request, NULL, 0, NULL, 1000000);
    ck_assert_uint_eq (dispatch_job_deadline_us (j1), 1100000);
    ck_assert_uint_eq (dispatch_job_deadline_us (j3), 0);
    ck_assert_int_eq (dispatch_submit (d, j1, NULL), AMAAS_OK);
    ck_assert_int_eq (dispatch_submit (d, j2, NULL), AMAAS_OK);
    ck_assert_int_eq (dispatch_submit (d, j3, NULL), AMAAS_OK);
    //  Before any deadline: nothing expires
    ck_assert_uint_eq (dispatch_expire (d, 1050000, failed), 0);
    //  At 1.2 s job 1 is past its deadline: the pump fails it, never sends it
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 1200000, failed), 1);
    ck_assert_uint_eq (dispatch_job_id (sent.job[0]), 2);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 1);
    dispatch_job_t *f = dispatch_jobs_first (failed);
    ck_assert_uint_eq (dispatch_job_id (f), 1);
    ck_assert_int_eq (dispatch_job_fail_code (f), AMAAS_DEADLINE_EXCEEDED);
    ck_assert_ptr_nonnull (strstr (dispatch_job_fail_message (f), "deadline"));
    //  A job with no deadline never expires
    ck_assert_uint_eq (dispatch_expire (d, UINT64_MAX / 2, failed), 0);
    ck_assert_uint_eq (dispatch_queued (d, "m"), 1);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

//  A job from the client whose identity is `who`
static dispatch_job_t *job_from (dispatch_t *d, const char *who, uint64_t id)
{
    codec_header_t request = {0};
    codec_header_set_model (&request, "m");
    return dispatch_job_new (d, id, &request, who, strlen (who), NULL, 0);
}

START_TEST (test_clients_take_turns)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w = add_worker (d, "w1", "m", 1, failed);
    //  A floods with 10 jobs, then B sends 3: they take turns, A's flood
    //  does not make B wait behind it
    for (uint64_t i = 0; i < 10; i++)
        ck_assert_int_eq (dispatch_submit (d, job_from (d, "A", 100 + i), NULL), AMAAS_OK);
    for (uint64_t i = 0; i < 3; i++)
        ck_assert_int_eq (dispatch_submit (d, job_from (d, "B", 200 + i), NULL), AMAAS_OK);
    for (int n = 0; n < 13; n++) {
        ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
        dispatch_job_t *done = dispatch_complete (d, w, dispatch_job_token (sent.job[n]));
        //  keep the id for the order check, then free
        sent.job[n] = (dispatch_job_t *)(uintptr_t)dispatch_job_id (done);
        dispatch_job_destroy (&done);
    }
    uint64_t expect[13] = {100, 200, 101, 201, 102, 202, 103, 104, 105, 106, 107, 108, 109};
    for (int n = 0; n < 13; n++)
        ck_assert_uint_eq ((uint64_t)(uintptr_t)sent.job[n], expect[n]);
    ck_assert_uint_eq (dispatch_queued (d, "m"), 0);
    //  A job requeued after its worker died goes first again, in its lane
    dispatch_worker_t *w2 = add_worker (d, "w2", "m", 1, failed);
    ck_assert_int_eq (dispatch_submit (d, job_from (d, "A", 1), NULL), AMAAS_OK);
    ck_assert_int_eq (dispatch_submit (d, job_from (d, "B", 2), NULL), AMAAS_OK);
    ck_assert_int_eq (dispatch_submit (d, job_from (d, "B", 3), NULL), AMAAS_OK);
    sent.n = 0;
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 2); //  A1 and B2 out
    ck_assert_uint_eq (dispatch_job_id (sent.job[0]), 1);
    dispatch_worker_remove (d, sent.worker[0], failed); //  A1's worker dies
    dispatch_worker_t *alive = sent.worker[0] == w ? w2 : w;
    dispatch_job_t *done = dispatch_complete (d, alive, dispatch_job_token (sent.job[1]));
    dispatch_job_destroy (&done);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 0, failed), 1);
    ck_assert_uint_eq (dispatch_job_id (sent.job[2]), 1);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d); //  frees B3, still queued, and A1, held
}
END_TEST

//  Jobs come from a pool: a finished job's slot is reused, and its old
//  token no longer finds anything.  A client's empty lane is kept a while
//  and freed when it has been idle for a second.
START_TEST (test_pool_tokens_and_idle_lanes)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w = add_worker (d, "w1", "m", 1, failed);
    dispatch_model_t *m = dispatch_model_first (d);
    uint64_t now = 5000000; //  µs
    uint64_t tokens[50];
    for (uint64_t i = 0; i < 50; i++) {
        ck_assert_int_eq (dispatch_submit (d, job_from (d, "A", 1 + i), NULL), AMAAS_OK);
        ck_assert_uint_eq (dispatch_pump (d, record, &sent, now, failed), 1);
        tokens[i] = dispatch_job_token (sent.job[i]);
        for (uint64_t j = 0; j < i; j++)
            ck_assert_uint_ne (tokens[j], tokens[i]);
        //  Every earlier token, its slot reused, is stale
        for (uint64_t j = 0; j < i; j++)
            ck_assert_ptr_null (dispatch_complete (d, w, tokens[j]));
        dispatch_job_t *done = dispatch_complete (d, w, tokens[i]);
        ck_assert_ptr_eq (done, sent.job[i]);
        ck_assert_uint_eq (dispatch_job_id (done), 1 + i);
        ck_assert_ptr_null (dispatch_complete (d, w, tokens[i])); //  only once
        dispatch_job_destroy (&done);
    }
    ck_assert_uint_eq (dispatch_in_flight (d), 0);
    //  A token whose slot is out of range, or garbage, finds nothing
    ck_assert_ptr_null (dispatch_complete (d, w, 0));
    ck_assert_ptr_null (dispatch_complete (d, w, UINT64_MAX));
    //  A's lane outlived its jobs; idle for 0.5 s it stays, for 1.5 s it goes
    ck_assert_uint_eq (dispatch_model_lanes (m), 1);
    ck_assert_uint_eq (dispatch_expire (d, now + 500000, failed), 0);
    ck_assert_uint_eq (dispatch_model_lanes (m), 1);
    ck_assert_uint_eq (dispatch_expire (d, now + 1500000, failed), 0);
    ck_assert_uint_eq (dispatch_model_lanes (m), 0);
    //  and the client is served as before
    ck_assert_int_eq (dispatch_submit (d, job_from (d, "A", 99), NULL), AMAAS_OK);
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, now, failed), 1);
    ck_assert_uint_eq (dispatch_job_id (sent.job[50]), 99);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 0);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d); //  frees the held job
}
END_TEST

START_TEST (test_fields_through_accessors)
{
    dispatch_t *d = dispatch_new (100, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    sent_t sent = {0};
    dispatch_worker_t *w = add_worker (d, "w1", "iris@2,linear", 3, failed);
    ck_assert_str_eq (dispatch_worker_key (w), "w1");
    ck_assert_uint_eq (zframe_size (dispatch_worker_identity (w)), 2);
    ck_assert_uint_eq (dispatch_worker_credit (w), 3);
    ck_assert_uint_eq (dispatch_worker_pid (w), 1);
    ck_assert_uint_eq (dispatch_worker_model_count (w), 2);
    ck_assert_str_eq (dispatch_model_name (dispatch_worker_model (w, 0)), "iris");
    ck_assert_str_eq (dispatch_model_version (dispatch_worker_model (w, 0)), "2");
    ck_assert (!dispatch_worker_draining (w));
    dispatch_worker_heard (w, 1234, 5678);
    ck_assert_int_eq (dispatch_worker_seen_ms (w), 1234);
    //  A job with a client identity, outputs asked for and a payload
    codec_header_t request = {0};
    codec_header_set_model (&request, "iris");
    request.fields |= HDR_OUTPUTS | HDR_DEADLINE_MS;
    request.n_outputs = 2;
    snprintf (request.outputs[0], CODEC_NAME_MAX, "probs");
    snprintf (request.outputs[1], CODEC_NAME_MAX, "label");
    request.deadline_ms = 50;
    zmq_msg_t payload;
    zmq_msg_init_size (&payload, 3);
    memcpy (zmq_msg_data (&payload), "abc", 3);
    dispatch_job_t *job = dispatch_job_new (d, 9, &request, "client-1", 8, &payload, 1000);
    ck_assert_ptr_nonnull (job);
    ck_assert_uint_eq (zmq_msg_size (&payload), 0); //  moved into the job
    size_t size, n;
    ck_assert_mem_eq (dispatch_job_client (job, &size), "client-1", 8);
    ck_assert_uint_eq (size, 8);
    const char (*outputs)[CODEC_NAME_MAX] = dispatch_job_outputs (job, &n);
    ck_assert_uint_eq (n, 2);
    ck_assert_str_eq (outputs[1], "label");
    ck_assert_uint_eq (zmq_msg_size (dispatch_job_payload (job)), 3);
    ck_assert_uint_eq (dispatch_job_received_us (job), 1000);
    ck_assert_uint_eq (dispatch_job_deadline_us (job), 51000);
    ck_assert_str_eq (dispatch_job_version (job), "");
    int owner;
    dispatch_job_set_owner (job, &owner);
    dispatch_job_set_principal (job, 42);
    ck_assert_int_eq (dispatch_submit (d, job, NULL), AMAAS_OK);
    ck_assert_str_eq (dispatch_job_version (job), "2");
    ck_assert_ptr_eq (dispatch_job_owner (job), &owner);
    ck_assert_ptr_eq (dispatch_find (d, 0, 42, &owner, 9), job);
    dispatch_model_t *iris = dispatch_model_find (d, "iris", "2");
    ck_assert_uint_eq (dispatch_model_queued (iris), 1);
    ck_assert_uint_eq (dispatch_model_workers (iris), 1);
    ck_assert_uint_eq (dispatch_model_lanes (iris), 1);
    ck_assert_ptr_null (dispatch_job_worker (job));
    ck_assert_uint_eq (dispatch_pump (d, record, &sent, 2000, failed), 1);
    ck_assert_ptr_eq (dispatch_job_worker (job), w);
    ck_assert_uint_eq (dispatch_job_dispatched_us (job), 2000);
    ck_assert_uint_eq (dispatch_worker_held (w), 1);
    ck_assert_uint_eq (dispatch_model_queued (iris), 0);
    //  Sent again on another connection: the answer goes there; an identity
    //  longer than ZeroMQ allows is not taken
    dispatch_job_set_client (job, "client-2", 8);
    char huge[DISPATCH_IDENTITY_MAX + 1] = {0};
    dispatch_job_set_client (job, huge, sizeof huge);
    ck_assert_mem_eq (dispatch_job_client (job, &size), "client-2", 8);
    ck_assert_uint_eq (size, 8);
    //  The worker is lost: the job goes back, counted as lost once
    dispatch_worker_remove (d, w, failed);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 1); //  no other worker serves iris
    ck_assert_ptr_eq (dispatch_jobs_first (failed), job);
    ck_assert_ptr_null (dispatch_jobs_next (failed, job));
    ck_assert_uint_eq (dispatch_job_lost (job), 1);
    ck_assert_int_eq (dispatch_job_fail_code (job), AMAAS_UNAVAILABLE);
    ck_assert_ptr_eq (dispatch_jobs_pop (failed), job);
    ck_assert_uint_eq (dispatch_jobs_size (failed), 0);
    ck_assert_ptr_null (dispatch_jobs_pop (failed));
    dispatch_job_set_failure (job, AMAAS_CANCELLED, "cancelled by the client");
    ck_assert_int_eq (dispatch_job_fail_code (job), AMAAS_CANCELLED);
    ck_assert_str_eq (dispatch_job_fail_message (job), "cancelled by the client");
    dispatch_job_destroy (&job);
    ck_assert_ptr_null (dispatch_find (d, 0, 42, &owner, 9));
    codec_header_reset (&request);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
}
END_TEST

//  --------------------------------------------------------------------------
//  The pick order against a brute-force reference: random sequences of
//  READY (new workers, updates of models and credit), jobs, dispatch,
//  results, drains and removals, over workers that share model versions.
//  The send callback works out, from the reference's own record of each
//  worker, which worker should get the job (free credit, fewest held, given
//  a job longest ago, linked to the model first) and checks the pick.

#define REF_WORKERS_MAX 1024 //  workers registered in a run, at most
#define REF_MODELS 4         //  model versions: a@1, a@2, b@1, c@1
#define REF_JOBS_MAX 4096    //  jobs held at once, at most

static const char *ref_names[REF_MODELS] = {"a", "a", "b", "c"};
static const char *ref_versions[REF_MODELS] = {"1", "2", "1", "1"};

typedef struct {
    dispatch_worker_t *worker;   //  NULL once removed
    char key[16];                //  its key, never used again
    uint32_t credit;             //  as announced
    bool draining;               //  serves nothing any more
    bool serves[REF_MODELS];     //  the model versions it serves
    uint64_t linked[REF_MODELS]; //  when it was linked to each
    size_t held;                 //  jobs it holds
    uint64_t last_given;         //  when it was last given a job (0: never)
} ref_worker_t;

typedef struct {
    dispatch_t *d;
    dispatch_jobs_t *failed;
    ref_worker_t workers[REF_WORKERS_MAX];
    size_t n_workers; //  ever registered
    size_t max_live;  //  workers serving at once, at most
    uint32_t max_credit;
    dispatch_job_t *held[REF_JOBS_MAX]; //  jobs held by workers
    size_t held_by[REF_JOBS_MAX];       //  by which one (index in workers)
    size_t n_held;
    uint64_t next_linked, next_given, next_id;
    uint64_t rng;
    size_t sent;   //  jobs sent
    size_t chosen; //  of them, sent while several workers had free credit
} ref_t;

static uint64_t ref_random (ref_t *self, uint64_t n)
{
    //  xorshift64*
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    return (self->rng * 2685821657736338717ull >> 11) % n;
}

static int ref_model_of (const dispatch_job_t *job)
{
    for (int m = 0; m < REF_MODELS; m++)
        if (streq (dispatch_job_model (job), ref_names[m]) &&
            streq (dispatch_job_version (job), ref_versions[m]))
            return m;
    ck_abort_msg ("job for an unknown model version");
    return -1;
}

//  Whether reference worker x goes before y for model m
static bool ref_before (const ref_worker_t *x, const ref_worker_t *y, int m)
{
    if (x->held != y->held)
        return x->held < y->held;
    if (x->last_given != y->last_given)
        return x->last_given < y->last_given;
    return x->linked[m] < y->linked[m];
}

static bool ref_available (const ref_worker_t *w, int m)
{
    return w->worker && !w->draining && w->serves[m] && w->held < w->credit;
}

static int ref_send (dispatch_job_t *job, dispatch_worker_t *worker, void *arg)
{
    ref_t *self = arg;
    int m = ref_model_of (job);
    ref_worker_t *best = NULL;
    size_t candidates = 0;
    for (size_t i = 0; i < self->n_workers; i++) {
        ref_worker_t *w = &self->workers[i];
        if (!ref_available (w, m))
            continue;
        candidates++;
        if (!best || ref_before (w, best, m))
            best = w;
    }
    ck_assert_msg (best, "job %s@%s sent to %s while no worker has free credit", ref_names[m],
                   ref_versions[m], dispatch_worker_key (worker));
    ck_assert_msg (best->worker == worker, "job %s@%s sent to %s, %s expected", ref_names[m],
                   ref_versions[m], dispatch_worker_key (worker), best->key);
    best->held++;
    best->last_given = ++self->next_given;
    ck_assert_uint_lt (self->n_held, REF_JOBS_MAX);
    self->held[self->n_held] = job;
    self->held_by[self->n_held++] = (size_t)(best - self->workers);
    self->sent++;
    self->chosen += candidates > 1;
    return 0;
}

//  Forgets the held jobs of worker i (they were requeued or failed)
static void ref_forget_held (ref_t *self, size_t i)
{
    for (size_t j = 0; j < self->n_held;)
        if (self->held_by[j] == i) {
            self->held[j] = self->held[self->n_held - 1];
            self->held_by[j] = self->held_by[--self->n_held];
        } else
            j++;
    self->workers[i].held = 0;
}

//  A live worker at random, or -1
static int ref_live_worker (ref_t *self)
{
    size_t live[REF_WORKERS_MAX], n = 0;
    for (size_t i = 0; i < self->n_workers; i++)
        if (self->workers[i].worker)
            live[n++] = i;
    return n ? (int)live[ref_random (self, n)] : -1;
}

//  READY from worker i (new or not) with random models and credit
static void ref_ready (ref_t *self, size_t i, bool at_least_one)
{
    ref_worker_t *w = &self->workers[i];
    char list[64] = "";
    bool serves[REF_MODELS];
    do {
        list[0] = 0;
        for (int m = 0; m < REF_MODELS; m++) {
            serves[m] = ref_random (self, 2);
            if (serves[m])
                snprintf (list + strlen (list), sizeof list - strlen (list), "%s%s@%s",
                          list[0] ? "," : "", ref_names[m], ref_versions[m]);
        }
    } while (at_least_one && !list[0]);
    w->credit = 1 + (uint32_t)ref_random (self, self->max_credit);
    dispatch_worker_t *worker = add_worker (self->d, w->key, list, w->credit, self->failed);
    ck_assert_ptr_eq (w->worker ? w->worker : worker, worker);
    w->worker = worker;
    uint64_t linked = ++self->next_linked;
    for (int m = 0; m < REF_MODELS; m++) {
        w->serves[m] = serves[m] && !w->draining;
        w->linked[m] = linked;
    }
}

//  Checks the dispatcher's counts against the reference; after a pump,
//  that no queue waits while a worker of its model has free credit
static void ref_check (ref_t *self, bool pumped)
{
    for (int m = 0; m < REF_MODELS; m++) {
        size_t serving = 0, free_credit = 0;
        for (size_t i = 0; i < self->n_workers; i++) {
            ref_worker_t *w = &self->workers[i];
            serving += w->worker && !w->draining && w->serves[m];
            free_credit += ref_available (w, m);
        }
        dispatch_model_t *model = dispatch_model_find (self->d, ref_names[m], ref_versions[m]);
        ck_assert_uint_eq (model ? dispatch_model_workers (model) : 0, serving);
        if (pumped && model && dispatch_model_queued (model))
            ck_assert_uint_eq (free_credit, 0);
    }
    for (size_t i = 0; i < self->n_workers; i++)
        if (self->workers[i].worker)
            ck_assert_uint_eq (dispatch_worker_held (self->workers[i].worker),
                               self->workers[i].held);
}

static void ref_run (uint64_t seed, size_t steps, size_t max_live, uint32_t max_credit)
{
    ref_t *self = calloc (1, sizeof *self);
    ck_assert_ptr_nonnull (self);
    self->d = dispatch_new (100000, 1000);
    self->failed = dispatch_jobs_new ();
    self->rng = seed;
    self->max_live = max_live;
    self->max_credit = max_credit;
    for (size_t step = 0; step < steps; step++) {
        uint64_t op = ref_random (self, 100);
        int i = ref_live_worker (self);
        size_t serving = 0; //  workers neither removed nor draining
        for (size_t k = 0; k < self->n_workers; k++)
            serving += self->workers[k].worker && !self->workers[k].draining;
        bool pumped = false;
        if (op < 30) {
            //  A few jobs, for a name (the highest version) or a version
            for (uint64_t n = 1 + ref_random (self, 4); n > 0; n--) {
                int m = (int)ref_random (self, REF_MODELS);
                dispatch_job_t *job = new_job (self->d, ref_names[m], ++self->next_id);
                const char *version = ref_random (self, 2) ? ref_versions[m] : NULL;
                if (dispatch_submit (self->d, job, version) != AMAAS_OK)
                    dispatch_job_destroy (&job);
            }
        } else if (op < 50) {
            dispatch_pump (self->d, ref_send, self, 0, self->failed);
            pumped = true;
        } else if (op < 75) {
            //  Results of a few held jobs
            for (uint64_t n = 1 + ref_random (self, 3); n > 0 && self->n_held; n--) {
                size_t j = ref_random (self, self->n_held);
                ref_worker_t *w = &self->workers[self->held_by[j]];
                dispatch_job_t *job = self->held[j];
                ck_assert_ptr_eq (dispatch_complete (self->d, w->worker, dispatch_job_token (job)),
                                  job);
                dispatch_job_destroy (&job);
                w->held--;
                self->held[j] = self->held[self->n_held - 1];
                self->held_by[j] = self->held_by[--self->n_held];
            }
        } else if (op < 83) {
            if (i >= 0)
                ref_ready (self, (size_t)i, false); //  models or credit change
        } else if (op < 91) {
            if (serving < self->max_live && self->n_workers < REF_WORKERS_MAX) {
                ref_worker_t *w = &self->workers[self->n_workers];
                snprintf (w->key, sizeof w->key, "w%zu", self->n_workers);
                ref_ready (self, self->n_workers++, true);
            }
        } else if (op < 97) {
            if (i >= 0) {
                dispatch_worker_remove (self->d, self->workers[i].worker, self->failed);
                self->workers[i].worker = NULL;
                ref_forget_held (self, (size_t)i);
            }
        } else if (i >= 0) {
            dispatch_worker_drain (self->d, self->workers[i].worker, self->failed);
            self->workers[i].draining = true;
            memset (self->workers[i].serves, 0, sizeof self->workers[i].serves);
        }
        dispatch_jobs_purge (self->failed);
        ref_check (self, pumped);
    }
    //  Not a test that cannot fail: many picks, most of them among several
    //  workers
    ck_assert_uint_gt (self->sent, steps / 4);
    ck_assert_uint_gt (self->chosen, self->sent / 4);
    dispatch_jobs_destroy (&self->failed);
    dispatch_destroy (&self->d);
    free (self);
}

START_TEST (test_pick_matches_reference)
{
    //  Few workers of small credit: full workers and ties are frequent
    ref_run (0x5eed0001, 4000, 6, 3);
    //  Many workers: deeper heaps
    ref_run (0x5eed0002, 4000, 60, 4);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("dispatch");
    TCase *tc = tcase_create ("dispatch");
    tcase_add_test (tc, test_dispatch_and_complete);
    tcase_add_test (tc, test_not_found_and_full);
    tcase_add_test (tc, test_credit_and_least_loaded);
    tcase_add_test (tc, test_round_robin_when_idle);
    tcase_add_test (tc, test_dead_worker_requeues);
    tcase_add_test (tc, test_last_worker_gone_fails_queue);
    tcase_add_test (tc, test_purge_and_models);
    tcase_add_test (tc, test_reregistration_and_shutdown);
    tcase_add_test (tc, test_versions_side_by_side);
    tcase_add_test (tc, test_one_worker_cannot_change_another);
    tcase_add_test (tc, test_update_moves_queued_jobs);
    tcase_add_test (tc, test_find_and_cancel);
    tcase_add_test (tc, test_priorities);
    tcase_add_test (tc, test_deadlines);
    tcase_add_test (tc, test_clients_take_turns);
    tcase_add_test (tc, test_pool_tokens_and_idle_lanes);
    tcase_add_test (tc, test_fields_through_accessors);
    tcase_add_test (tc, test_warmup_unavailable_until_a_worker_registers);
    tcase_add_test (tc, test_version_metadata);
    tcase_add_test (tc, test_pick_matches_reference);
    suite_add_tcase (s, tc);
    return unit_run (s);
}
