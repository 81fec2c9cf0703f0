/*  dispatch_pool.c - what one job costs the broker with 2, 100 or 1,000
    workers on one model, without 1,000 processes.

    dispatch_pool --frontend EP --backend EP --broker-pid PID [--workers N]
                  [--credit C] [--window W] [--duration S] [--warmup S]
                  [--jobs J]
    dispatch_pool --scheduler [--workers N] [--credit C] [--window W]
                  [--jobs J]

    One process holds N DEALER sockets on the broker's backend, each a worker
    of one model ("pool-PID", width 1, version 1) with credit C: each sends
    READY and answers every JOB at once with a RESULT that carries the job's
    inputs back as its outputs, and every HEARTBEAT with one.  The sockets
    are watched through their ZMQ_FDs with epoll, so that the pool's own
    cost per job does not grow with N.  Once the broker answered every
    READY, a client thread (libamaas, pipelined) keeps W one-row jobs in
    flight: --warmup seconds, then --duration seconds (or --jobs answers, if
    that comes first) measured, then the jobs in flight are awaited.  The
    broker's CPU time (utime + stime of /proc/PID/stat, all its threads)
    over the measured part, divided by the jobs answered in it, is what one
    job costs it.  Prints one JSON object: workers, credit, window, jobs
    (measured), duration_s, jobs_per_s, broker_cpu_s, broker_cpu_us_per_job,
    and over the whole run sent, ok, errors (jobs answered with an error or
    lost), answered (RESULTs the pool sent), workers_used (workers given at
    least one job), register_s (time until every READY was answered).
    Exit status 0 when every job sent was answered without error, 1 if not,
    2 on bad arguments.

    Each DEALER to tcp is one file descriptor: the soft limit of open files
    is raised to the hard one, and ZeroMQ's socket limit to N + 64.

    With --scheduler, no sockets and no broker: the broker's scheduler
    (broker/dispatch.c) alone, in this process, with N workers registered
    and W jobs in flight; each step completes the oldest job held, submits
    a new one and pumps, as the broker does for a RESULT and a REQUEST.
    Prints {"workers", "jobs", "ns_per_job"} (J jobs, default 200,000, after
    J / 10 unmeasured), the median of 5 runs: what dispatching one job costs
    apart from ZeroMQ.
*/
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <czmq.h>

#include "amaas.h"
#include "dispatch.h"
#include "frames.h"
#include "timing.h"

#define WORKERS_MAX 10000
#define EVENTS 256
#define SWEEP_MS 50 //  every socket is looked at this often, whatever epoll says

typedef struct {
    const char *frontend;
    const char *backend;
    int broker_pid;
    size_t workers;
    uint32_t credit;
    size_t window;
    double duration;
    double warmup;
    long jobs; //  measured answers at most; 0: no bound
} config_t;

//  The fake workers: sockets and what they did
typedef struct {
    const config_t *config;
    char model[CODEC_NAME_MAX];
    zsock_t **socks;
    bool *ready;        //  by worker: its READY was answered
    uint64_t *given;    //  by worker: jobs it was given
    size_t n_ready;     //  READYs answered
    uint64_t answered;  //  RESULTs sent
    long refused;       //  ERROR or DISCONNECT answers from the broker
    codec_frames_t in;  //  the message being handled
    codec_header_t hdr; //  its header
    codec_header_t out; //  the header of an answer
} pool_t;

//  What the client thread measured
typedef struct {
    const config_t *config;
    const char *model;
    atomic_bool go;   //  the pool is registered: start
    atomic_bool done; //  finished: the pool may leave
    long sent, ok, errors;
    long measured;     //  answers in the measured part
    double elapsed;    //  seconds of the measured part
    double broker_cpu; //  broker CPU seconds over it
    int failed;        //  the client could not run
    char why[320];     //  then why
} load_t;

//  CPU seconds (user + system, all threads) of process pid so far, or -1.
static double s_cpu_seconds (int pid)
{
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf[n] = 0;
    //  Fields after the command name, which is in parentheses and may hold
    //  anything: utime and stime are the 14th and 15th of the line
    char *p = strrchr (buf, ')');
    unsigned long utime, stime;
    if (!p ||
        sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf (_SC_CLK_TCK);
}

//  --------------------------------------------------------------------------
//  The pool

static int s_send (zsock_t *sock, codec_cmd_t cmd, const codec_header_t *h, zmq_msg_t *payload)
{
    return codec_send_frames (zsock_resolve (sock), NULL, 0, cmd, h, payload);
}

static int s_pool_ready (pool_t *self, size_t i)
{
    codec_header_t *h = &self->out;
    codec_header_reset (h);
    h->models = calloc (1, sizeof (codec_model_t));
    if (!h->models)
        return -1;
    codec_model_t *m = &h->models[0];
    snprintf (m->name, sizeof m->name, "%s", self->model);
    snprintf (m->version, sizeof m->version, "1");
    m->width = 1;
    snprintf (m->meta.input, sizeof m->meta.input, "input");
    m->meta.datatype = AMAAS_FP64;
    h->n_models = 1;
    h->fields = HDR_MODELS | HDR_CREDIT | HDR_PID | HDR_HOST;
    h->credit = self->config->credit;
    h->pid = (uint32_t)getpid ();
    snprintf (h->host, sizeof h->host, "dispatch_pool-%zu", i);
    int rc = s_send (self->socks[i], CMD_READY, h, NULL);
    codec_header_reset (h);
    return rc;
}

//  Handles the message in self->in from worker i.
static void s_pool_message (pool_t *self, size_t i)
{
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    char err[CODEC_MESSAGE_MAX];
    codec_header_t *h = &self->hdr;
    if (codec_frames_parse (&self->in, 0, &cmd, h, &payload, err, sizeof err)) {
        fprintf (stderr, "dispatch_pool: bad message from the broker: %s\n", err);
        self->refused++;
        return;
    }
    codec_header_t *r = &self->out;
    codec_header_reset (r);
    if (cmd == CMD_JOB) {
        //  The inputs back as the outputs: a tensor list the client decodes
        r->fields = HDR_JOB | HDR_CODE | HDR_COMPUTE_US | HDR_BATCH;
        r->job = h->job;
        r->code = AMAAS_OK;
        r->compute_us = 0;
        r->batch = 1;
        codec_header_set_model (r, h->model);
        codec_header_set_version (r, (h->fields & HDR_VERSION) ? h->version : "1");
        if (s_send (self->socks[i], CMD_RESULT, r, payload) == 0)
            self->answered++;
        self->given[i]++;
    } else if (cmd == CMD_HEARTBEAT)
        s_send (self->socks[i], CMD_HEARTBEAT, r, NULL);
    else if (cmd == CMD_READY) {
        if (!self->ready[i]) {
            self->ready[i] = true;
            self->n_ready++;
        }
    } else if (cmd == CMD_ERROR || cmd == CMD_DISCONNECT) {
        fprintf (stderr, "dispatch_pool: worker %zu: the broker answered %s: %s\n", i,
                 cmd == CMD_ERROR ? "ERROR" : "DISCONNECT", h->message);
        self->refused++;
    }
}

//  Takes in every message waiting on worker i's socket.  Checking the
//  socket's events last re-arms its ZMQ_FD (sending may have taken in what
//  made it readable).
static void s_pool_serve (pool_t *self, size_t i)
{
    void *sock = zsock_resolve (self->socks[i]);
    while (zsock_events (self->socks[i]) & ZMQ_POLLIN)
        while (codec_frames_recv (&self->in, sock) == 0) {
            s_pool_message (self, i);
            codec_frames_close (&self->in);
        }
}

//  --------------------------------------------------------------------------
//  The client load

static void *s_load_run (void *arg)
{
    load_t *self = arg;
    const config_t *config = self->config;
    while (!atomic_load (&self->go))
        usleep (1000);
    amaas_error_t err;
    amaas_client_t *client = amaas_connect (config->frontend, 10000, &err);
    if (!client) {
        snprintf (self->why, sizeof self->why, "cannot connect: %s", err.message);
        self->failed = 1;
        atomic_store (&self->done, true);
        return NULL;
    }
    amaas_set_retry (client, 1, 600000); //  raw figures: no resend
    double value = 0.5;
    amaas_tensor_t input = {.name = "input", .datatype = AMAAS_FP64, .ndim = 2, .shape = {1, 1}};
    input.data = &value;
    input.size = sizeof value;
    double start = bench_now ();
    double measure_from = start + config->warmup, measure_until = 0;
    double cpu_from = -1;
    long in_flight = 0, answered = 0, answered_at_start = 0;
    bool sending = true;
    while (sending || in_flight > 0) {
        while (sending && in_flight < (long)config->window) {
            if (amaas_send (client, self->model, &input, 1, &err) == 0) {
                snprintf (self->why, sizeof self->why, "send: %s", err.message);
                self->failed = 1;
                sending = false;
                break;
            }
            self->sent++;
            in_flight++;
        }
        if (in_flight == 0)
            break;
        amaas_result_t *r = amaas_recv (client, 30000, &err);
        if (!r) {
            snprintf (self->why, sizeof self->why, "no answer in 30 s: %s", err.message);
            self->errors += in_flight;
            break;
        }
        if (r->error.code == AMAAS_OK && r->n_outputs == 1 && r->outputs[0].size == sizeof (double))
            self->ok++;
        else
            self->errors++;
        amaas_result_destroy (&r);
        in_flight--;
        answered++;
        double now = bench_now ();
        if (cpu_from < 0 && now >= measure_from) {
            cpu_from = s_cpu_seconds (config->broker_pid);
            measure_from = now;
            answered_at_start = answered;
        } else if (cpu_from >= 0 && sending &&
                   (now >= measure_from + config->duration ||
                    (config->jobs && answered - answered_at_start >= config->jobs))) {
            self->broker_cpu = s_cpu_seconds (config->broker_pid) - cpu_from;
            self->measured = answered - answered_at_start;
            measure_until = now;
            sending = false;
        }
    }
    if (cpu_from < 0 || measure_until == 0) {
        if (!self->failed)
            snprintf (self->why, sizeof self->why, "the run ended before its measured part");
        self->failed = 1;
    }
    self->elapsed = measure_until - measure_from;
    amaas_close (&client);
    atomic_store (&self->done, true);
    return NULL;
}

//  --------------------------------------------------------------------------
//  The scheduler alone

//  The jobs held, oldest first: a ring of window entries
typedef struct {
    dispatch_job_t **jobs;
    size_t size, first, n;
} ring_t;

static int s_ring_send (dispatch_job_t *job, dispatch_worker_t *worker, void *arg)
{
    (void)worker;
    ring_t *ring = arg;
    if (ring->n == ring->size)
        return -1;
    ring->jobs[(ring->first + ring->n++) % ring->size] = job;
    return 0;
}

//  Seconds that `jobs` steps take, or -1 on out-of-memory.
static double s_scheduler_steps (dispatch_t *d, ring_t *ring, dispatch_jobs_t *failed, long jobs,
                                 uint64_t *next_id)
{
    codec_header_t request = {0};
    codec_header_set_model (&request, "pool");
    double start = bench_now ();
    for (long i = 0; i < jobs; i++) {
        if (ring->n == ring->size) {
            dispatch_job_t *job = ring->jobs[ring->first];
            ring->first = (ring->first + 1) % ring->size;
            ring->n--;
            job = dispatch_complete (d, dispatch_job_worker (job), dispatch_job_token (job));
            if (!job)
                return -1;
            dispatch_job_destroy (&job);
        }
        dispatch_job_t *job = dispatch_job_new (d, ++*next_id, &request, NULL, 0, NULL, 0);
        if (!job || dispatch_submit (d, job, NULL) != AMAAS_OK)
            return -1;
        dispatch_pump (d, s_ring_send, ring, 0, failed);
    }
    return bench_now () - start;
}

static int s_scheduler (const config_t *config)
{
    long jobs = config->jobs ? config->jobs : 200000;
    dispatch_t *d = dispatch_new (100000, 2);
    dispatch_jobs_t *failed = dispatch_jobs_new ();
    ring_t ring = {.size = config->window};
    ring.jobs = calloc (ring.size, sizeof *ring.jobs);
    if (!d || !failed || !ring.jobs)
        return 1;
    codec_header_t ready = {0};
    ready.models = calloc (1, sizeof (codec_model_t));
    if (!ready.models)
        return 1;
    snprintf (ready.models[0].name, CODEC_NAME_MAX, "pool");
    snprintf (ready.models[0].version, CODEC_VERSION_MAX, "1");
    ready.n_models = 1;
    ready.credit = config->credit;
    for (size_t i = 0; i < config->workers; i++) {
        char key[32];
        snprintf (key, sizeof key, "%04zx", i);
        zframe_t *identity = zframe_new (key, strlen (key));
        size_t refused;
        char warning[256];
        if (!dispatch_worker_ready (d, key, &identity, &ready, INT64_MAX, failed, &refused, warning,
                                    sizeof warning))
            return 1;
    }
    codec_header_reset (&ready);
    uint64_t next_id = 0;
    double runs[5];
    int rc = s_scheduler_steps (d, &ring, failed, jobs / 10, &next_id) < 0;
    for (int r = 0; r < 5 && rc == 0; r++)
        rc = (runs[r] = s_scheduler_steps (d, &ring, failed, jobs, &next_id)) < 0;
    if (rc == 0)
        printf ("{\"workers\": %zu, \"credit\": %u, \"window\": %zu, \"jobs\": %ld, "
                "\"ns_per_job\": %.1f}\n",
                config->workers, config->credit, config->window, jobs,
                bench_median (runs, 5) * 1e9 / (double)jobs);
    else
        fprintf (stderr, "dispatch_pool: the scheduler refused a job or a result\n");
    free (ring.jobs);
    dispatch_jobs_destroy (&failed);
    dispatch_destroy (&d);
    return rc;
}

//  --------------------------------------------------------------------------

static void s_usage (FILE *out)
{
    fprintf (out, "usage: dispatch_pool --frontend EP --backend EP --broker-pid PID "
                  "[--workers N] [--credit C] [--window W] [--duration S] [--warmup S] "
                  "[--jobs J]\n"
                  "       dispatch_pool --scheduler [--workers N] [--credit C] [--window W] "
                  "[--jobs J]\n");
}

int main (int argc, char **argv)
{
    config_t config = {.workers = 100, .credit = 4, .window = 100, .duration = 5, .warmup = 1};
    static const struct option options[] = {{"frontend", required_argument, 0, 'f'},
                                            {"backend", required_argument, 0, 'b'},
                                            {"broker-pid", required_argument, 0, 'p'},
                                            {"workers", required_argument, 0, 'n'},
                                            {"credit", required_argument, 0, 'c'},
                                            {"window", required_argument, 0, 'W'},
                                            {"duration", required_argument, 0, 'd'},
                                            {"warmup", required_argument, 0, 'w'},
                                            {"jobs", required_argument, 0, 'j'},
                                            {"scheduler", no_argument, 0, 's'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    bool scheduler = false;
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'f': config.frontend = optarg; break;
        case 'b': config.backend = optarg; break;
        case 'p': config.broker_pid = atoi (optarg); break;
        case 'n': config.workers = (size_t)atol (optarg); break;
        case 'c': config.credit = (uint32_t)atol (optarg); break;
        case 'W': config.window = (size_t)atol (optarg); break;
        case 'd': config.duration = atof (optarg); break;
        case 'w': config.warmup = atof (optarg); break;
        case 'j': config.jobs = atol (optarg); break;
        case 's': scheduler = true; break;
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
    }
    if (scheduler && config.workers >= 1 && config.credit >= 1 && config.window >= 1 &&
        config.jobs >= 0)
        return s_scheduler (&config);
    if (!config.frontend || !config.backend || config.broker_pid <= 0 || config.workers < 1 ||
        config.workers > WORKERS_MAX || config.credit < 1 || config.window < 1 ||
        config.duration <= 0 || config.warmup < 0 || config.jobs < 0) {
        s_usage (stderr);
        return 2;
    }
    if (s_cpu_seconds (config.broker_pid) < 0) {
        fprintf (stderr, "dispatch_pool: cannot read /proc/%d/stat\n", config.broker_pid);
        return 2;
    }
    //  A file descriptor per socket, and ZeroMQ's socket limit (1023 by
    //  default), before the first socket
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
    zsys_set_max_sockets (config.workers + 64);

    pool_t pool = {.config = &config};
    snprintf (pool.model, sizeof pool.model, "pool-%d", (int)getpid ());
    pool.socks = calloc (config.workers, sizeof *pool.socks);
    pool.ready = calloc (config.workers, sizeof *pool.ready);
    pool.given = calloc (config.workers, sizeof *pool.given);
    int epoll = epoll_create1 (0);
    if (!pool.socks || !pool.ready || !pool.given || epoll < 0) {
        fprintf (stderr, "dispatch_pool: out of memory\n");
        return 1;
    }
    double start = bench_now ();
    for (size_t i = 0; i < config.workers; i++) {
        pool.socks[i] = zsock_new (ZMQ_DEALER);
        if (!pool.socks[i]) {
            fprintf (stderr, "dispatch_pool: socket %zu: %s (open files: see ulimit -n)\n", i,
                     zmq_strerror (zmq_errno ()));
            return 1;
        }
        zsock_set_linger (pool.socks[i], 1000);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
        if (zsock_connect (pool.socks[i], "%s", config.backend) ||
            epoll_ctl (epoll, EPOLL_CTL_ADD, zsock_fd (pool.socks[i]), &ev) ||
            s_pool_ready (&pool, i)) {
            fprintf (stderr, "dispatch_pool: worker %zu cannot connect to %s: %s\n", i,
                     config.backend, strerror (errno));
            return 1;
        }
    }

    load_t load = {.config = &config, .model = pool.model};
    pthread_t thread;
    if (pthread_create (&thread, NULL, s_load_run, &load)) {
        fprintf (stderr, "dispatch_pool: cannot start the client thread\n");
        return 1;
    }
    double register_s = -1;
    int64_t next_sweep = zclock_mono () + SWEEP_MS;
    int64_t give_up = zclock_mono () + 60000; //  registration
    struct epoll_event events[EVENTS];
    while (!atomic_load (&load.done)) {
        int n = epoll_wait (epoll, events, EVENTS, SWEEP_MS);
        for (int e = 0; e < n; e++)
            s_pool_serve (&pool, (size_t)events[e].data.u64);
        if (n <= 0 || zclock_mono () >= next_sweep) {
            for (size_t i = 0; i < config.workers; i++)
                s_pool_serve (&pool, i);
            next_sweep = zclock_mono () + SWEEP_MS;
        }
        if (register_s < 0 && pool.n_ready == config.workers) {
            register_s = bench_now () - start;
            atomic_store (&load.go, true);
        }
        if (register_s < 0 && (pool.refused || zclock_mono () > give_up)) {
            fprintf (stderr, "dispatch_pool: %zu of %zu workers registered\n", pool.n_ready,
                     config.workers);
            break;
        }
    }
    int rc = 0;
    if (register_s >= 0)
        pthread_join (thread, NULL);
    else {
        pthread_detach (thread);
        rc = 1;
    }
    //  The workers leave
    codec_header_reset (&pool.out);
    for (size_t i = 0; i < config.workers; i++)
        s_send (pool.socks[i], CMD_DISCONNECT, &pool.out, NULL);
    size_t used = 0;
    for (size_t i = 0; i < config.workers; i++)
        used += pool.given[i] > 0;
    if (rc == 0) {
        if (load.failed)
            fprintf (stderr, "dispatch_pool: %s\n", load.why);
        double per_s = load.elapsed > 0 ? (double)load.measured / load.elapsed : 0;
        double cpu_us = load.measured ? load.broker_cpu * 1e6 / (double)load.measured : 0;
        printf ("{\"workers\": %zu, \"credit\": %u, \"window\": %zu, \"jobs\": %ld, "
                "\"duration_s\": %.6f, \"jobs_per_s\": %.1f, \"broker_cpu_s\": %.4f, "
                "\"broker_cpu_us_per_job\": %.3f, \"sent\": %ld, \"ok\": %ld, \"errors\": %ld, "
                "\"answered\": %" PRIu64 ", \"workers_used\": %zu, \"register_s\": %.3f}\n",
                config.workers, config.credit, config.window, load.measured, load.elapsed, per_s,
                load.broker_cpu, cpu_us, load.sent, load.ok, load.errors, pool.answered, used,
                register_s);
        rc = load.failed || load.errors || load.ok != load.sent ||
                     pool.answered != (uint64_t)load.sent || pool.refused
                 ? 1
                 : 0;
    }
    for (size_t i = 0; i < config.workers; i++)
        zsock_destroy (&pool.socks[i]);
    codec_header_reset (&pool.hdr);
    codec_header_reset (&pool.out);
    close (epoll);
    free (pool.socks);
    free (pool.ready);
    free (pool.given);
    return rc;
}
