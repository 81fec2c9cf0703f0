/*  zmq_baseline.c - the limit amaas is measured against: a ZeroMQ pipeline
    with no amaas logic at all.

    zmq_baseline [--request-bytes N] [--reply-bytes N] [--inflight N]
                 [--duration S] [--warmup S] [--workers N]

    client DEALER --tcp--> ROUTER | zmq_proxy | DEALER --tcp--> echo worker(s)

    The same shape of processes as amaas (client, broker, workers): the proxy
    and each echo worker are child processes with their own ZeroMQ context,
    forked before the client makes its own; ports are ephemeral on 127.0.0.1
    (bound as tcp://127.0.0.1:* and read back with ZMQ_LAST_ENDPOINT), passed
    to the parent through a pipe.  A worker answers each message with a
    message of --reply-bytes whose first 16 bytes (sequence number and send
    time) are the request's; when the sizes are equal it sends the request
    back unchanged.  The client keeps --inflight messages outstanding (closed
    loop) for --warmup then --duration seconds and prints one JSON object:
    {"jobs_per_s", "latency_us": {"p50", "p90", "p99", "max"}} over the
    timed part.  Use one-frame messages of the sizes of an amaas REQUEST and
    REPLY (all frames together) for the model compared.
*/
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#define STAMP 16 //  bytes of sequence + send time at the start of a message
#define MAX_WORKERS 64

typedef struct {
    size_t request_bytes;
    size_t reply_bytes;
    int inflight;
    double duration;
    double warmup;
    int workers;
} config_t;

static volatile sig_atomic_t s_stop = 0;

static void s_on_signal (int sig)
{
    (void)sig;
    s_stop = 1;
}

static uint64_t s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void s_die (const char *what)
{
    fprintf (stderr, "zmq_baseline: %s: %s\n", what, zmq_strerror (zmq_errno ()));
    exit (1);
}

//  Write all of buf to fd; exits on failure
static void s_write_all (int fd, const void *buf, size_t size)
{
    const char *p = buf;
    while (size > 0) {
        ssize_t n = write (fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            perror ("zmq_baseline: write");
            exit (1);
        }
        p += n;
        size -= (size_t)n;
    }
}

static void s_read_all (int fd, void *buf, size_t size)
{
    char *p = buf;
    while (size > 0) {
        ssize_t n = read (fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf (stderr, "zmq_baseline: the proxy did not start\n");
            exit (1);
        }
        p += n;
        size -= (size_t)n;
    }
}

static void s_set_int (void *socket, int option, int value)
{
    if (zmq_setsockopt (socket, option, &value, sizeof value) != 0)
        s_die ("zmq_setsockopt");
}

//  Bind to an ephemeral port on 127.0.0.1 and write the endpoint bound
static void s_bind_any (void *socket, char *endpoint, size_t size)
{
    if (zmq_bind (socket, "tcp://127.0.0.1:*") != 0)
        s_die ("zmq_bind");
    if (zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, endpoint, &size) != 0)
        s_die ("ZMQ_LAST_ENDPOINT");
}

//  Child: ROUTER frontend, DEALER backend, zmq_proxy until terminated.
//  Writes the two endpoints (256 bytes each) to fd.
static void s_proxy (int fd)
{
    void *ctx = zmq_ctx_new ();
    void *frontend = zmq_socket (ctx, ZMQ_ROUTER);
    void *backend = zmq_socket (ctx, ZMQ_DEALER);
    if (!frontend || !backend)
        s_die ("zmq_socket");
    //  No high-water mark: amaas's broker queues whatever comes
    s_set_int (frontend, ZMQ_SNDHWM, 0);
    s_set_int (frontend, ZMQ_RCVHWM, 0);
    s_set_int (backend, ZMQ_SNDHWM, 0);
    s_set_int (backend, ZMQ_RCVHWM, 0);
    char endpoints[2][256] = {{0}};
    s_bind_any (frontend, endpoints[0], sizeof endpoints[0]);
    s_bind_any (backend, endpoints[1], sizeof endpoints[1]);
    s_write_all (fd, endpoints, sizeof endpoints);
    close (fd);
    zmq_proxy (frontend, backend, NULL); //  returns when the context is terminated
    _exit (0);
}

//  Child: DEALER connected to the proxy's backend; answers every message
//  [identity][request] with [identity][reply] until killed.
static void s_echo_worker (const char *backend, const config_t *config)
{
    void *ctx = zmq_ctx_new ();
    void *socket = zmq_socket (ctx, ZMQ_DEALER);
    if (!socket)
        s_die ("zmq_socket");
    s_set_int (socket, ZMQ_SNDHWM, 0);
    s_set_int (socket, ZMQ_RCVHWM, 0);
    if (zmq_connect (socket, backend) != 0)
        s_die ("zmq_connect");
    int same = config->request_bytes == config->reply_bytes;
    while (1) {
        zmq_msg_t identity, request;
        zmq_msg_init (&identity);
        zmq_msg_init (&request);
        if (zmq_msg_recv (&identity, socket, 0) < 0 || zmq_msg_recv (&request, socket, 0) < 0)
            _exit (0);
        zmq_msg_send (&identity, socket, ZMQ_SNDMORE);
        if (same)
            zmq_msg_send (&request, socket, 0);
        else {
            zmq_msg_t reply;
            zmq_msg_init_size (&reply, config->reply_bytes);
            memset (zmq_msg_data (&reply), 0, config->reply_bytes);
            size_t n = zmq_msg_size (&request) < STAMP ? zmq_msg_size (&request) : STAMP;
            memcpy (zmq_msg_data (&reply), zmq_msg_data (&request), n);
            zmq_msg_send (&reply, socket, 0);
            zmq_msg_close (&request);
        }
    }
}

static int s_compare_u32 (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

//  Value at quantile q of a sorted array (nearest rank)
static uint32_t s_quantile (const uint32_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static void s_send_one (void *socket, size_t size, uint64_t seq)
{
    zmq_msg_t msg;
    zmq_msg_init_size (&msg, size);
    char *data = zmq_msg_data (&msg);
    memset (data, 0x5a, size);
    uint64_t stamp[2] = {seq, s_now_us ()};
    memcpy (data, stamp, sizeof stamp);
    if (zmq_msg_send (&msg, socket, 0) < 0)
        s_die ("zmq_msg_send");
}

//  The client: keeps config->inflight messages outstanding; returns 0 and
//  prints the JSON line, or 1 if no reply came for 10 s.
static int s_client (const char *frontend, const config_t *config)
{
    void *ctx = zmq_ctx_new ();
    void *socket = zmq_socket (ctx, ZMQ_DEALER);
    if (!socket)
        s_die ("zmq_socket");
    s_set_int (socket, ZMQ_SNDHWM, 0);
    s_set_int (socket, ZMQ_RCVHWM, 0);
    s_set_int (socket, ZMQ_LINGER, 0);
    if (zmq_connect (socket, frontend) != 0)
        s_die ("zmq_connect");

    size_t capacity = 1 << 20, count = 0;
    uint32_t *latency = malloc (capacity * sizeof *latency);
    if (!latency) {
        fprintf (stderr, "zmq_baseline: out of memory\n");
        return 1;
    }
    uint64_t seq = 0;
    for (int i = 0; i < config->inflight; i++)
        s_send_one (socket, config->request_bytes, ++seq);

    uint64_t start = s_now_us ();
    uint64_t timed_from = start + (uint64_t)(config->warmup * 1e6);
    uint64_t end = timed_from + (uint64_t)(config->duration * 1e6);
    uint64_t jobs = 0;
    int rc = 0;
    zmq_pollitem_t item = {socket, 0, ZMQ_POLLIN, 0};
    while (!s_stop) {
        int ready = zmq_poll (&item, 1, 10000);
        if (ready < 0) {
            if (zmq_errno () == EINTR)
                continue;
            s_die ("zmq_poll");
        }
        if (ready == 0) {
            fprintf (stderr, "zmq_baseline: no reply for 10 s\n");
            rc = 1;
            break;
        }
        zmq_msg_t reply;
        zmq_msg_init (&reply);
        if (zmq_msg_recv (&reply, socket, 0) < 0)
            s_die ("zmq_msg_recv");
        uint64_t now = s_now_us ();
        uint64_t stamp[2] = {0, now};
        if (zmq_msg_size (&reply) >= sizeof stamp)
            memcpy (stamp, zmq_msg_data (&reply), sizeof stamp);
        zmq_msg_close (&reply);
        if (now >= end)
            break;
        if (now >= timed_from && stamp[1] >= timed_from) {
            if (count == capacity) {
                uint32_t *bigger = realloc (latency, 2 * capacity * sizeof *latency);
                if (!bigger) {
                    fprintf (stderr, "zmq_baseline: out of memory\n");
                    return 1;
                }
                latency = bigger;
                capacity *= 2;
            }
            uint64_t us = now - stamp[1];
            latency[count++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
        }
        if (now >= timed_from)
            jobs++;
        s_send_one (socket, config->request_bytes, ++seq);
    }
    double elapsed = (double)(s_now_us () - timed_from) / 1e6;
    if (rc == 0) {
        qsort (latency, count, sizeof *latency, s_compare_u32);
        printf ("{\"request_bytes\": %zu, \"reply_bytes\": %zu, \"inflight\": %d, "
                "\"workers\": %d, \"duration_s\": %.3f, \"jobs\": %llu, \"jobs_per_s\": %.1f, "
                "\"latency_us\": {\"p50\": %u, \"p90\": %u, \"p99\": %u, \"max\": %u}}\n",
                config->request_bytes, config->reply_bytes, config->inflight, config->workers,
                elapsed, (unsigned long long)jobs, elapsed > 0 ? (double)jobs / elapsed : 0.0,
                s_quantile (latency, count, 0.50), s_quantile (latency, count, 0.90),
                s_quantile (latency, count, 0.99), count ? latency[count - 1] : 0);
    }
    free (latency);
    zmq_close (socket);
    zmq_ctx_term (ctx);
    return rc;
}

static void s_usage (FILE *out)
{
    fprintf (out,
             "usage: zmq_baseline [options]\n"
             "  ZeroMQ client -> zmq_proxy -> echo workers, with no amaas logic; prints\n"
             "  {\"jobs_per_s\", \"latency_us\": {\"p50\", \"p90\", \"p99\", \"max\"}} as JSON.\n"
             "  --request-bytes N  size of each request message (default 64, at least %d)\n"
             "  --reply-bytes N    size of each reply message (default: the request's)\n"
             "  --inflight N       messages outstanding at once (default 1)\n"
             "  --duration S       timed seconds (default 10)\n"
             "  --warmup S         seconds before timing starts (default 1)\n"
             "  --workers N        echo worker processes (default 1)\n",
             STAMP);
}

static int s_parse_number (const char *text, double min, double max, double *value)
{
    char *end;
    errno = 0;
    double v = strtod (text, &end);
    if (errno || end == text || *end || !(v >= min && v <= max))
        return -1;
    *value = v;
    return 0;
}

int main (int argc, char **argv)
{
    config_t config = {64, 0, 1, 10, 1, 1};
    static const struct option options[] = {{"request-bytes", required_argument, 0, 'q'},
                                            {"reply-bytes", required_argument, 0, 'p'},
                                            {"inflight", required_argument, 0, 'i'},
                                            {"duration", required_argument, 0, 'd'},
                                            {"warmup", required_argument, 0, 'w'},
                                            {"workers", required_argument, 0, 'n'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        double v = 0;
        int bad = 0;
        switch (c) {
        case 'q':
            bad = s_parse_number (optarg, STAMP, 1 << 26, &v);
            config.request_bytes = (size_t)v;
            break;
        case 'p':
            bad = s_parse_number (optarg, STAMP, 1 << 26, &v);
            config.reply_bytes = (size_t)v;
            break;
        case 'i':
            bad = s_parse_number (optarg, 1, 1000000, &v);
            config.inflight = (int)v;
            break;
        case 'd': bad = s_parse_number (optarg, 0.01, 86400, &config.duration); break;
        case 'w': bad = s_parse_number (optarg, 0, 86400, &config.warmup); break;
        case 'n':
            bad = s_parse_number (optarg, 1, MAX_WORKERS, &v);
            config.workers = (int)v;
            break;
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
        if (bad) {
            fprintf (stderr, "zmq_baseline: bad value for --%s: %s\n", argv[optind - 1] + 2,
                     optarg);
            return 2;
        }
    }
    if (optind < argc) {
        s_usage (stderr);
        return 2;
    }
    if (config.reply_bytes == 0)
        config.reply_bytes = config.request_bytes;

    //  Children first, before this process makes a ZeroMQ context
    int fds[2];
    if (pipe (fds) != 0) {
        perror ("zmq_baseline: pipe");
        return 1;
    }
    pid_t children[MAX_WORKERS + 1];
    int n_children = 0;
    pid_t pid = fork ();
    if (pid < 0) {
        perror ("zmq_baseline: fork");
        return 1;
    }
    if (pid == 0) {
        close (fds[0]);
        s_proxy (fds[1]);
    }
    children[n_children++] = pid;
    close (fds[1]);
    char endpoints[2][256];
    s_read_all (fds[0], endpoints, sizeof endpoints);
    close (fds[0]);
    for (int i = 0; i < config.workers; i++) {
        pid = fork ();
        if (pid < 0) {
            perror ("zmq_baseline: fork");
            break;
        }
        if (pid == 0)
            s_echo_worker (endpoints[1], &config);
        children[n_children++] = pid;
    }

    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    int rc = n_children == config.workers + 1 ? s_client (endpoints[0], &config) : 1;
    for (int i = 0; i < n_children; i++)
        kill (children[i], SIGTERM);
    for (int i = 0; i < n_children; i++)
        waitpid (children[i], NULL, 0);
    return rc;
}
