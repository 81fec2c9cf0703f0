/*  server.c - amaas-gateway's HTTP server: routes, limits, keys, answers.

    libmicrohttpd calls s_on_request for each request, first when its
    headers are in (route, method, key, content type and length are
    checked then, so that a bad request is refused before its body is
    read), then once per piece of body (appended to the request's buffer),
    then once the body is complete: an inference request is decoded
    (gateway/infer.h) and handed to the dispatcher, and its connection is
    suspended.  The dispatcher's done callback resumes it, and the last
    call encodes the answer on the HTTP thread.  NOTIFY_COMPLETED frees
    the request, and counts it in the metrics.

    Slow callers: libmicrohttpd closes a connection idle for
    --idle-timeout-s; a request whose body still arrives after
    --request-timeout-s, or a first request whose headers do, is answered
    408 on the socket itself (libmicrohttpd cannot queue an answer in the
    middle of a body), by the body's next piece or by the main thread's
    sweep, and the connection is closed.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <czmq.h>

#include "amaas_defs.h"
#include "auth.h"
#include "clock.h"
#include "dispatch.h"
#include "gateway.h"
#include "infer.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "signals.h"

#if MHD_VERSION < 0x00097002
typedef int mhd_result_t;
#else
typedef enum MHD_Result mhd_result_t;
#endif

#define JSON_TYPE "application/json"
#define MODELS_WAIT_MS 2000 //  longest wait for the broker's first model list
#define SWEEP_MS 100        //  the main thread's period
#define LOG_PER_SECOND 10   //  failed-request lines per caller per second

//  The OpenAPI document as JSON (generated from docs/openapi.yaml)
extern const char gateway_openapi_json[];
extern const size_t gateway_openapi_json_size;

static const char s_docs_html[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "  <meta charset=\"utf-8\">\n"
    "  <title>amaas HTTP API</title>\n"
    "  <link rel=\"stylesheet\" href=\"/docs/swagger-ui/swagger-ui.css\">\n"
    "</head>\n"
    "<body>\n"
    "  <div id=\"swagger-ui\"></div>\n"
    "  <script src=\"/docs/swagger-ui/swagger-ui-bundle.js\"></script>\n"
    "  <script>\n"
    "    window.ui = SwaggerUIBundle({url: \"/openapi.json\", dom_id: \"#swagger-ui\"});\n"
    "  </script>\n"
    "</body>\n"
    "</html>\n";

typedef struct server_t server_t;

//  One TCP connection (libmicrohttpd's socket context), for the sweep
typedef struct conn_t {
    struct MHD_Connection *connection;
    int fd;             //  its socket
    int64_t started_ms; //  when its current request began (monotonic)
    bool first;         //  its first request's headers are not in yet: timed too
    bool in_body;       //  a request's body is arriving
    bool timed_out;     //  answered 408 on the socket: being closed
    struct conn_t *next, *prev;
} conn_t;

//  One request (libmicrohttpd's con_cls)
typedef struct {
    server_t *server;
    struct MHD_Connection *connection;
    conn_t *conn;                       //  its connection, or NULL
    route_t route;                      //  what it asks
    char model[DEFS_NAME_MAX + 1];      //  {name}, or ""
    char version[DEFS_VERSION_MAX + 1]; //  {version}, or ""
    size_t client;                      //  the broker connection its jobs use
    uint64_t started_us;                //  when its headers were in
    unsigned status;                    //  the answer's status, 0 until answered
    bool counted;                       //  counted in the metrics
    char *body;                         //  the body so far
    size_t size, capacity;
    bool too_large;                            //  the body went past --max-body: discarded
    bool submitted;                            //  its job went to the dispatcher
    atomic_bool done;                          //  and came back
    infer_request_t req;                       //  the decoded body
    dispatch_job_t job;                        //  the job
    char input_name[DEFS_TENSOR_NAME_MAX + 1]; //  /predict: the model's input
} request_t;

struct server_t {
    gateway_config_t config;
    struct MHD_Daemon *daemon;
    int port;
    bool tls;
    dispatch_t *dispatch;
    gw_metrics_t *metrics;
    auth_keys_t keys; //  empty: keys off
    char **certs;     //  CURVE key pair per client, or NULL
    size_t n_clients;
    char *tls_cert_pem, *tls_key_pem;
    pthread_mutex_t lock;   //  guards conns and ratelimit
    conn_t *conns;          //  every open connection
    ratelimit_t *ratelimit; //  failed-request log lines per caller
    atomic_size_t active;   //  requests begun and not completed (answer sent)
    char host[264];         //  the host it listens on, as the URL writes it
};

//  --- Answers ---------------------------------------------------------------

//  The status an amaas error code answers with
static unsigned s_status_of (amaas_code_t code)
{
    switch (code) {
    case AMAAS_OK: return MHD_HTTP_OK;
    case AMAAS_INVALID_ARGUMENT: return MHD_HTTP_BAD_REQUEST;
    case AMAAS_DEADLINE_EXCEEDED: return MHD_HTTP_GATEWAY_TIMEOUT;
    case AMAAS_NOT_FOUND: return MHD_HTTP_NOT_FOUND;
    case AMAAS_PERMISSION_DENIED: return MHD_HTTP_FORBIDDEN;
    case AMAAS_RESOURCE_EXHAUSTED: return MHD_HTTP_TOO_MANY_REQUESTS;
    case AMAAS_UNAVAILABLE: return MHD_HTTP_SERVICE_UNAVAILABLE;
    case AMAAS_UNAUTHENTICATED: return MHD_HTTP_FORBIDDEN; //  the gateway's own key was refused
    default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

//  The caller's address, for the log
static void s_peer (struct MHD_Connection *connection, char *peer, size_t size)
{
    snprintf (peer, size, "?");
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!info || !info->client_addr)
        return;
    const struct sockaddr *sa = info->client_addr;
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof (struct sockaddr_in6) : sizeof (struct sockaddr_in);
    if (getnameinfo (sa, len, peer, (socklen_t)size, NULL, 0, NI_NUMERICHOST))
        snprintf (peer, size, "?");
}

//  One log line for a failed request, at most LOG_PER_SECOND per caller a second
static void s_log_failure (request_t *r, unsigned status, const char *reason)
{
    char peer[NI_MAXHOST];
    s_peer (r->connection, peer, sizeof peer);
    server_t *server = r->server;
    pthread_mutex_lock (&server->lock);
    bool allow = !server->ratelimit || ratelimit_allow (server->ratelimit, peer, clock_now_ms ());
    pthread_mutex_unlock (&server->lock);
    if (allow)
        log_warn ("request failed status=%u route=%s model=%s peer=%s reason=\"%s\"", status,
                  route_name (r->route), r->model[0] ? r->model : "-", peer, reason);
}

//  Counts the request in the metrics, once: when its answer is queued (so
//  that a caller who reads the answer then /metrics sees it counted), or
//  when it ends without one (status 0: only no longer in flight)
static void s_count (request_t *r)
{
    if (r->counted)
        return;
    r->counted = true;
    double seconds = (double)(clock_now_us () - r->started_us) / 1e6;
    gw_metrics_end (r->server->metrics, r->route, r->status, seconds);
}

//  Queues a response; takes it (destroys our reference).  Headers: pairs
//  of name, value, NULL-terminated.
static mhd_result_t s_queue (request_t *r, unsigned status, struct MHD_Response *response,
                             const char *content_type, ...)
{
    if (!response)
        return MHD_NO; //  out of memory: libmicrohttpd closes the connection
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    va_list ap;
    va_start (ap, content_type);
    const char *name;
    while ((name = va_arg (ap, const char *))) {
        const char *value = va_arg (ap, const char *);
        MHD_add_response_header (response, name, value);
    }
    va_end (ap);
    r->status = status;
    mhd_result_t rc = MHD_queue_response (r->connection, status, response);
    MHD_destroy_response (response);
    if (rc == MHD_YES)
        s_count (r);
    return rc;
}

//  Answers a JSON document (taken: freed here)
static mhd_result_t s_json (request_t *r, unsigned status, json_t *doc)
{
    char *text = doc ? json_dumps (doc, JSON_COMPACT) : NULL;
    json_decref (doc);
    if (!text)
        return MHD_NO;
    struct MHD_Response *response =
        MHD_create_response_from_buffer (strlen (text), text, MHD_RESPMEM_MUST_FREE);
    if (!response)
        free (text);
    return s_queue (r, status, response, JSON_TYPE, NULL);
}

//  Answers {"error": message} with the headers the status calls for, and
//  logs the failure.
static mhd_result_t s_error (request_t *r, unsigned status, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static mhd_result_t s_error (request_t *r, unsigned status, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (message, sizeof message, fmt, ap);
    va_end (ap);
    s_log_failure (r, status, message);
    json_t *doc = json_object ();
    json_object_set_new (doc, "error", json_string (message));
    if (!json_object_get (doc, "error")) //  not UTF-8 (a name from the URL): said plainly
        json_object_set_new (doc, "error", json_string ("the request is not valid"));
    char *text = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    if (!text)
        return MHD_NO;
    struct MHD_Response *response =
        MHD_create_response_from_buffer (strlen (text), text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (text);
        return MHD_NO;
    }
    switch (status) {
    case MHD_HTTP_UNAUTHORIZED:
        return s_queue (r, status, response, JSON_TYPE, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer",
                        NULL);
    case MHD_HTTP_TOO_MANY_REQUESTS:
    case MHD_HTTP_SERVICE_UNAVAILABLE:
        return s_queue (r, status, response, JSON_TYPE, MHD_HTTP_HEADER_RETRY_AFTER, "1", NULL);
    case MHD_HTTP_METHOD_NOT_ALLOWED:
        return s_queue (r, status, response, JSON_TYPE, MHD_HTTP_HEADER_ALLOW,
                        r->route == ROUTE_INFER || r->route == ROUTE_INFER_VERSION ||
                                r->route == ROUTE_PREDICT
                            ? "POST"
                            : "GET, HEAD",
                        NULL);
    default: return s_queue (r, status, response, JSON_TYPE, NULL);
    }
}

//  The 408 written on the socket itself, and the connection shut, so that
//  libmicrohttpd closes it.  Plain HTTP only: under TLS the socket is only
//  shut.  Call with server->lock held or from the connection's own thread.
static void s_timeout_raw (server_t *server, conn_t *conn)
{
    static const char body[] =
        "{\"error\":\"the request did not arrive in time (--request-timeout-s): send it whole, "
        "faster\"}";
    if (!server->tls) {
        char text[512];
        int n = snprintf (text, sizeof text,
                          "HTTP/1.1 408 Request Timeout\r\nContent-Type: " JSON_TYPE
                          "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                          sizeof body - 1, body);
        if (send (conn->fd, text, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            log_debug ("cannot send 408 reason=\"%s\"", strerror (errno));
    }
    shutdown (conn->fd, SHUT_WR);
}

//  --- Routes ----------------------------------------------------------------

//  Whether s is 1..max bytes of [A-Za-z0-9._-]: a model name or version
static bool s_name_ok (const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum ((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

//  The route of a path, with {name} and {version} copied; ROUTE_OTHER when
//  none matches (or a name is not one a model can have).
static route_t s_route (const char *url, request_t *r)
{
    static const struct {
        const char *path;
        route_t route;
    } fixed[] = {{"/v2/health/live", ROUTE_LIVE}, {"/v2/health/ready", ROUTE_READY},
                 {"/v2", ROUTE_SERVER},           {"/v2/", ROUTE_SERVER},
                 {"/metrics", ROUTE_METRICS},     {"/openapi.json", ROUTE_OPENAPI},
                 {"/docs", ROUTE_DOCS},           {"/docs/", ROUTE_DOCS}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcmp (url, fixed[i].path) == 0)
            return fixed[i].route;
    if (strncmp (url, "/docs/swagger-ui/", 17) == 0) {
        const char *file = url + 17;
        if (file[0] != '.' && s_name_ok (file, strlen (file), 128)) {
            snprintf (r->model, sizeof r->model, "%s", file); //  the file name, for the handler
            return ROUTE_DOCS_ASSET;
        }
        return ROUTE_OTHER;
    }
    const char *rest;
    if (strncmp (url, "/predict/", 9) == 0) {
        rest = url + 9;
        if (!s_name_ok (rest, strlen (rest), DEFS_NAME_MAX))
            return ROUTE_OTHER;
        memcpy (r->model, rest, strlen (rest) + 1);
        return ROUTE_PREDICT;
    }
    if (strncmp (url, "/v2/models/", 11) != 0)
        return ROUTE_OTHER;
    rest = url + 11;
    size_t len = strcspn (rest, "/");
    if (!s_name_ok (rest, len, DEFS_NAME_MAX))
        return ROUTE_OTHER;
    memcpy (r->model, rest, len);
    r->model[len] = 0;
    rest += len;
    bool versioned = false;
    if (strncmp (rest, "/versions/", 10) == 0) {
        rest += 10;
        len = strcspn (rest, "/");
        if (!s_name_ok (rest, len, DEFS_VERSION_MAX))
            return ROUTE_OTHER;
        memcpy (r->version, rest, len);
        r->version[len] = 0;
        rest += len;
        versioned = true;
    }
    if (*rest == 0)
        return versioned ? ROUTE_MODEL_VERSION : ROUTE_MODEL;
    if (strcmp (rest, "/ready") == 0)
        return versioned ? ROUTE_MODEL_VERSION_READY : ROUTE_MODEL_READY;
    if (strcmp (rest, "/infer") == 0)
        return versioned ? ROUTE_INFER_VERSION : ROUTE_INFER;
    return ROUTE_OTHER;
}

static bool s_is_post_route (route_t route)
{
    return route == ROUTE_INFER || route == ROUTE_INFER_VERSION || route == ROUTE_PREDICT;
}

static bool s_needs_key (route_t route)
{
    return !(route == ROUTE_LIVE || route == ROUTE_READY || route == ROUTE_METRICS ||
             route == ROUTE_OPENAPI || route == ROUTE_DOCS || route == ROUTE_DOCS_ASSET);
}

//  --- Model metadata --------------------------------------------------------

//  The versions of `name` in the model list: indexes first..last (grouped
//  and sorted by dispatch).  Returns false if the list has none.
static bool s_find_model (const dispatch_models_t *list, const char *name, size_t *first,
                          size_t *last)
{
    bool found = false;
    for (size_t i = 0; i < list->n_models; i++) {
        if (strcmp (list->models[i].name, name) != 0)
            continue;
        if (!found)
            *first = i;
        *last = i;
        found = true;
    }
    return found;
}

//  The model list, or an answer (503, 404) when the model is not in it: on
//  success, *chosen is the version the request names (or the highest).
static mhd_result_t s_lookup_model (request_t *r, dispatch_models_t *list, size_t *first,
                                    size_t *last, size_t *chosen, bool *answered)
{
    *answered = true;
    dispatch_models (r->server->dispatch, MODELS_WAIT_MS, list);
    if (!list->ok)
        return s_error (r, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", list->error);
    if (!s_find_model (list, r->model, first, last))
        return s_error (r, MHD_HTTP_NOT_FOUND,
                        "no model named '%s' is served (GET /v2/models/NAME for a served one)",
                        r->model);
    *chosen = *last;
    if (r->version[0]) {
        size_t i = *first;
        while (i <= *last && strcmp (list->models[i].version, r->version) != 0)
            i++;
        if (i > *last)
            return s_error (r, MHD_HTTP_NOT_FOUND,
                            "model '%s' has no version '%s' (its versions: GET /v2/models/%s)",
                            r->model, r->version, r->model);
        *chosen = i;
    }
    *answered = false;
    return MHD_YES;
}

static mhd_result_t s_model_metadata (request_t *r)
{
    dispatch_models_t list;
    size_t first = 0, last = 0, chosen = 0;
    bool answered;
    mhd_result_t rc = s_lookup_model (r, &list, &first, &last, &chosen, &answered);
    if (answered) {
        dispatch_models_free (&list);
        return rc;
    }
    json_t *doc = infer_model_metadata (list.models, first, last, chosen);
    dispatch_models_free (&list);
    return s_json (r, MHD_HTTP_OK, doc);
}

static mhd_result_t s_model_ready (request_t *r)
{
    dispatch_models_t list;
    size_t first = 0, last = 0, chosen = 0;
    bool answered;
    mhd_result_t rc = s_lookup_model (r, &list, &first, &last, &chosen, &answered);
    if (answered) {
        dispatch_models_free (&list);
        return rc;
    }
    bool ready = false;
    if (r->version[0])
        ready = list.models[chosen].workers > 0;
    else
        for (size_t i = first; i <= last; i++)
            ready = ready || list.models[i].workers > 0;
    dispatch_models_free (&list);
    if (!ready) {
        s_log_failure (r, MHD_HTTP_SERVICE_UNAVAILABLE, "no worker serves the model");
        return s_json (r, MHD_HTTP_SERVICE_UNAVAILABLE,
                       json_pack ("{s:s, s:b, s:s}", "name", r->model, "ready", 0, "error",
                                  "no worker serves this model now"));
    }
    return s_json (r, MHD_HTTP_OK, json_pack ("{s:s, s:b}", "name", r->model, "ready", 1));
}

static mhd_result_t s_server_ready (request_t *r)
{
    dispatch_models_t list;
    dispatch_models (r->server->dispatch, MODELS_WAIT_MS, &list);
    bool serving = false;
    for (size_t i = 0; i < list.n_models; i++)
        serving = serving || list.models[i].workers > 0;
    const char *why = !list.ok ? list.error : "the broker serves no model: start a worker";
    char reason[400];
    snprintf (reason, sizeof reason, "%s", why);
    bool ok = list.ok && serving;
    dispatch_models_free (&list);
    if (ok)
        return s_json (r, MHD_HTTP_OK, json_pack ("{s:b}", "ready", 1));
    s_log_failure (r, MHD_HTTP_SERVICE_UNAVAILABLE, reason);
    json_t *doc = json_pack ("{s:b, s:s}", "ready", 0, "error", reason);
    struct MHD_Response *response = NULL;
    char *text = doc ? json_dumps (doc, JSON_COMPACT) : NULL;
    json_decref (doc);
    if (text)
        response = MHD_create_response_from_buffer (strlen (text), text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (text);
        return MHD_NO;
    }
    return s_queue (r, MHD_HTTP_SERVICE_UNAVAILABLE, response, JSON_TYPE,
                    MHD_HTTP_HEADER_RETRY_AFTER, "1", NULL);
}

//  --- Static routes ---------------------------------------------------------

static mhd_result_t s_docs_asset (request_t *r)
{
    const char *dir = r->server->config.docs_dir;
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/%s", dir, r->model);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat (fd, &st) || !S_ISREG (st.st_mode)) {
        if (fd >= 0)
            close (fd);
        char bundle[PATH_MAX];
        snprintf (bundle, sizeof bundle, "%s/swagger-ui-bundle.js", dir);
        if (access (bundle, R_OK) != 0)
            return s_error (r, MHD_HTTP_NOT_FOUND,
                            "swagger-ui-dist is not installed: run scripts/install-deps "
                            "(or give its folder with --docs-dir)");
        return s_error (r, MHD_HTTP_NOT_FOUND, "no file %s in swagger-ui-dist", r->model);
    }
    const char *type = "application/octet-stream";
    const char *dot = strrchr (r->model, '.');
    if (dot && strcmp (dot, ".js") == 0)
        type = "text/javascript; charset=utf-8";
    else if (dot && strcmp (dot, ".css") == 0)
        type = "text/css; charset=utf-8";
    else if (dot && strcmp (dot, ".html") == 0)
        type = "text/html; charset=utf-8";
    else if (dot && strcmp (dot, ".png") == 0)
        type = "image/png";
    else if (dot && strcmp (dot, ".map") == 0)
        type = JSON_TYPE;
    struct MHD_Response *response = MHD_create_response_from_fd ((uint64_t)st.st_size, fd);
    if (!response) {
        close (fd);
        return MHD_NO;
    }
    return s_queue (r, MHD_HTTP_OK, response, type, NULL);
}

//  GET and HEAD routes
static mhd_result_t s_get (request_t *r)
{
    server_t *server = r->server;
    switch (r->route) {
    case ROUTE_LIVE: return s_json (r, MHD_HTTP_OK, json_pack ("{s:b}", "live", 1));
    case ROUTE_READY: return s_server_ready (r);
    case ROUTE_SERVER:
        return s_json (r, MHD_HTTP_OK,
                       json_pack ("{s:s, s:s, s:[s,s]}", "name", "amaas", "version", "0.1.0",
                                  "extensions", "binary_tensor_data", "model_versions"));
    case ROUTE_MODEL:
    case ROUTE_MODEL_VERSION: return s_model_metadata (r);
    case ROUTE_MODEL_READY:
    case ROUTE_MODEL_VERSION_READY: return s_model_ready (r);
    case ROUTE_METRICS: {
        size_t size = 0;
        char *text = gw_metrics_render (server->metrics, &size);
        if (!text)
            return MHD_NO;
        struct MHD_Response *response =
            MHD_create_response_from_buffer (size, text, MHD_RESPMEM_MUST_FREE);
        if (!response)
            free (text);
        return s_queue (r, MHD_HTTP_OK, response, "text/plain; version=0.0.4; charset=utf-8", NULL);
    }
    case ROUTE_OPENAPI:
        return s_queue (r, MHD_HTTP_OK,
                        MHD_create_response_from_buffer (gateway_openapi_json_size,
                                                         (void *)gateway_openapi_json,
                                                         MHD_RESPMEM_PERSISTENT),
                        JSON_TYPE, NULL);
    case ROUTE_DOCS:
        return s_queue (r, MHD_HTTP_OK,
                        MHD_create_response_from_buffer (
                            sizeof s_docs_html - 1, (void *)s_docs_html, MHD_RESPMEM_PERSISTENT),
                        "text/html; charset=utf-8", NULL);
    case ROUTE_DOCS_ASSET: return s_docs_asset (r);
    default: return s_error (r, MHD_HTTP_NOT_FOUND, "no such route (see GET /openapi.json)");
    }
}

//  --- Inference -------------------------------------------------------------

//  Header `name` as an integer in lo..hi; -1 with an answer when it is
//  malformed, 0 when absent (*value untouched), 1 when read.
static int s_int_header (request_t *r, const char *name, long long lo, long long hi,
                         long long *value, mhd_result_t *rc)
{
    const char *text = MHD_lookup_connection_value (r->connection, MHD_HEADER_KIND, name);
    if (!text)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll (text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        *rc = s_error (r, MHD_HTTP_BAD_REQUEST, "header %s must be an integer in %lld..%lld", name,
                       lo, hi);
        return -1;
    }
    *value = v;
    return 1;
}

//  Called on the dispatcher thread: the job is back, its connection goes on
static void s_job_done (dispatch_job_t *job)
{
    request_t *r = job->arg;
    atomic_store (&r->done, true);
    MHD_resume_connection (r->connection);
}

//  The body is complete: decode it and send the job (or answer at once)
static mhd_result_t s_infer_start (request_t *r)
{
    server_t *server = r->server;
    if (r->too_large)
        return s_error (r, MHD_HTTP_CONTENT_TOO_LARGE,
                        "the body is larger than %zu bytes (--max-body)", server->config.max_body);
    mhd_result_t rc = MHD_NO;
    long long deadline = server->config.timeout_ms, header = 0, priority = 0;
    if (s_int_header (r, "X-Amaas-Deadline-Ms", 1, 86400000, &header, &rc) < 0)
        return rc;
    if (header && header < deadline)
        deadline = header;
    int has_priority = s_int_header (r, "X-Amaas-Priority", 0, 3, &priority, &rc);
    if (has_priority < 0)
        return rc;
    char err[512] = "";
    const char *body = r->body ? r->body : "";
    uint64_t max_elements = server->config.max_body;
    const char *version = r->version[0] ? r->version : NULL;
    if (r->route == ROUTE_PREDICT) {
        const char *v =
            MHD_lookup_connection_value (r->connection, MHD_GET_ARGUMENT_KIND, "version");
        if (v) {
            if (!s_name_ok (v, strlen (v), DEFS_VERSION_MAX))
                return s_error (r, MHD_HTTP_BAD_REQUEST,
                                "?version= must be 1..%d characters of A-Z a-z 0-9 . _ -",
                                DEFS_VERSION_MAX);
            snprintf (r->version, sizeof r->version, "%s", v);
            version = r->version;
        }
        dispatch_model_input (server->dispatch, r->model, version, MODELS_WAIT_MS, r->input_name,
                              sizeof r->input_name);
        if (infer_decode_predict (body, r->size, r->input_name, max_elements, &r->req, err,
                                  sizeof err))
            return s_error (r, MHD_HTTP_BAD_REQUEST, "%s", err);
    } else {
        size_t json_len = r->size;
        const char *text = MHD_lookup_connection_value (r->connection, MHD_HEADER_KIND,
                                                        "Inference-Header-Content-Length");
        if (text) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull (text, &end, 10);
            if (errno || end == text || *end || text[0] == '-' || n > r->size)
                return s_error (r, MHD_HTTP_BAD_REQUEST,
                                "Inference-Header-Content-Length must be an integer in 0..%zu "
                                "(the body's length)",
                                r->size);
            json_len = (size_t)n;
        }
        if (infer_decode_v2 (body, r->size, json_len, max_elements, &r->req, err, sizeof err))
            return s_error (r, MHD_HTTP_BAD_REQUEST, "%s", err);
        if (r->req.deadline_ms && r->req.deadline_ms < deadline)
            deadline = r->req.deadline_ms;
    }
    dispatch_job_t *job = &r->job;
    memset (job, 0, sizeof *job);
    job->client = r->client;
    job->model = r->model;
    job->inputs = r->req.inputs;
    job->n_inputs = r->req.n_inputs;
    job->options.deadline_ms = (uint32_t)deadline;
    job->options.priority = r->req.priority ? r->req.priority : (uint32_t)priority;
    job->options.version = version;
    job->fd = r->conn ? r->conn->fd : -1;
    job->done = s_job_done;
    job->arg = r;
    //  Suspended before it is submitted, so that the resume always follows
    MHD_suspend_connection (r->connection);
    r->submitted = true;
    dispatch_submit (server->dispatch, job);
    return MHD_YES;
}

//  The job is back: encode its answer
static mhd_result_t s_infer_answer (request_t *r)
{
    dispatch_job_t *job = &r->job;
    amaas_result_t *result = job->result;
    if (!result) {
        amaas_code_t code = job->error.code;
        return s_error (r, s_status_of (code), "%s: %s", amaas_code_name (code),
                        job->error.message);
    }
    if (result->error.code != AMAAS_OK)
        return s_error (r, s_status_of (result->error.code), "%s: %s",
                        amaas_code_name (result->error.code), result->error.message);
    infer_buf_t buf = {0};
    if (r->route == ROUTE_PREDICT) {
        if (result->n_outputs == 0)
            return s_error (r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the model answered no output");
        if (infer_encode_predict (result, &buf)) {
            infer_buf_free (&buf);
            return s_error (r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the gateway is out of memory");
        }
        struct MHD_Response *response =
            MHD_create_response_from_buffer (buf.size, buf.data, MHD_RESPMEM_MUST_FREE);
        if (!response) {
            infer_buf_free (&buf);
            return MHD_NO;
        }
        return s_queue (r, MHD_HTTP_OK, response, JSON_TYPE, NULL);
    }
    for (size_t i = 0; i < r->req.n_outputs; i++)
        if (!amaas_result_output (result, r->req.outputs[i])) {
            char names[256] = "";
            size_t used = 0;
            for (size_t o = 0; o < result->n_outputs && used < sizeof names; o++)
                used += (size_t)snprintf (names + used, sizeof names - used, "%s%s", o ? ", " : "",
                                          result->outputs[o].name);
            return s_error (r, MHD_HTTP_BAD_REQUEST,
                            "model '%s' has no output '%s' (its outputs: %s)", r->model,
                            r->req.outputs[i], names);
        }
    //  The outputs asked for, in their order (libamaas returns them all): a
    //  view of the result, its tensors still the result's
    amaas_result_t view = *result;
    amaas_tensor_t wanted[INFER_MAX_TENSORS];
    if (r->req.n_outputs) {
        for (size_t i = 0; i < r->req.n_outputs && i < INFER_MAX_TENSORS; i++)
            wanted[i] = *amaas_result_output (result, r->req.outputs[i]);
        view.outputs = wanted;
        view.n_outputs = r->req.n_outputs;
    }
    size_t json_len = 0;
    bool binary = false;
    if (infer_encode_v2 (&r->req, &view, &buf, &json_len, &binary)) {
        infer_buf_free (&buf);
        return s_error (r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the gateway is out of memory");
    }
    struct MHD_Response *response =
        MHD_create_response_from_buffer (buf.size, buf.data, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        infer_buf_free (&buf);
        return MHD_NO;
    }
    if (!binary)
        return s_queue (r, MHD_HTTP_OK, response, JSON_TYPE, NULL);
    char length[32];
    snprintf (length, sizeof length, "%zu", json_len);
    return s_queue (r, MHD_HTTP_OK, response, "application/octet-stream",
                    "Inference-Header-Content-Length", length, NULL);
}

//  Checks a POST's headers: content type, length.  Returns MHD_YES with
//  *answered false when the body may come.
static mhd_result_t s_check_post (request_t *r, bool *answered)
{
    *answered = true;
    const char *type =
        MHD_lookup_connection_value (r->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    bool binary_ok = r->route != ROUTE_PREDICT &&
                     MHD_lookup_connection_value (r->connection, MHD_HEADER_KIND,
                                                  "Inference-Header-Content-Length");
    if (type) {
        size_t len = strcspn (type, "; \t");
        bool json = len == 16 && strncasecmp (type, JSON_TYPE, 16) == 0;
        bool octets = len == 24 && strncasecmp (type, "application/octet-stream", 24) == 0;
        if (!json && !(octets && binary_ok))
            return s_error (r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                            "Content-Type must be application/json%s, not '%.100s'",
                            r->route == ROUTE_PREDICT ? ""
                                                      : " (or application/octet-stream with "
                                                        "Inference-Header-Content-Length)",
                            type);
    }
    const char *length = MHD_lookup_connection_value (r->connection, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length) {
        unsigned long long n = strtoull (length, NULL, 10);
        if (n > r->server->config.max_body)
            return s_error (r, MHD_HTTP_CONTENT_TOO_LARGE,
                            "the body is larger than %zu bytes (--max-body)",
                            r->server->config.max_body);
    }
    *answered = false;
    return MHD_YES;
}

//  Whether the request's body has been arriving for longer than
//  --request-timeout-s; if so (and the sweep did not already), the 408 is
//  written and the caller must return MHD_NO.
static bool s_body_timed_out (request_t *r)
{
    conn_t *conn = r->conn;
    if (!conn)
        return false;
    server_t *server = r->server;
    bool late = false;
    pthread_mutex_lock (&server->lock);
    if (conn->timed_out)
        late = true;
    else if (clock_now_ms () - conn->started_ms >
             (int64_t)server->config.request_timeout_s * 1000) {
        conn->timed_out = true;
        s_timeout_raw (server, conn);
        late = true;
    }
    pthread_mutex_unlock (&server->lock);
    if (late) {
        r->status = MHD_HTTP_REQUEST_TIMEOUT;
        s_log_failure (r, MHD_HTTP_REQUEST_TIMEOUT, "the body did not arrive in time");
    }
    return late;
}

//  --- libmicrohttpd callbacks -----------------------------------------------

static mhd_result_t s_on_request (void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    server_t *server = cls;
    request_t *r = *con_cls;
    if (!r) {
        //  First call: the headers are in
        r = calloc (1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        r->server = server;
        r->connection = connection;
        r->started_us = clock_now_us ();
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info (connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->conn = info ? info->socket_context : NULL;
        gw_metrics_begin (server->metrics);
        atomic_fetch_add (&server->active, 1);
        r->route = s_route (url, r);
        if (r->conn && !s_is_post_route (r->route)) {
            pthread_mutex_lock (&server->lock);
            r->conn->first = false; //  its headers are in: no longer timed
            pthread_mutex_unlock (&server->lock);
        }
        if (r->route == ROUTE_OTHER)
            return s_error (r, MHD_HTTP_NOT_FOUND,
                            "no route %s %.200s (the routes: GET /openapi.json)", method, url);
        bool is_get =
            strcmp (method, MHD_HTTP_METHOD_GET) == 0 || strcmp (method, MHD_HTTP_METHOD_HEAD) == 0;
        bool post = s_is_post_route (r->route);
        if (post ? strcmp (method, MHD_HTTP_METHOD_POST) != 0 : !is_get)
            return s_error (r, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s takes %s, not %s",
                            post ? "POST" : "GET", route_name (r->route), post ? "POST" : "GET",
                            method);
        if (server->keys.n_keys && s_needs_key (r->route)) {
            const char *authorization = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                                     MHD_HTTP_HEADER_AUTHORIZATION);
            int key = auth_keys_find (&server->keys, authorization);
            if (key < 0)
                return s_error (r, MHD_HTTP_UNAUTHORIZED,
                                authorization ? "unknown API key: send 'Authorization: Bearer "
                                                "TOKEN' with a TOKEN of the gateway's --api-keys"
                                              : "an API key is needed: send 'Authorization: "
                                                "Bearer TOKEN'");
            r->client = (size_t)key;
        }
        if (!post)
            return s_get (r);
        bool answered;
        mhd_result_t rc = s_check_post (r, &answered);
        if (answered)
            return rc;
        if (r->conn) {
            //  The body is timed from the connection's start for its first
            //  request, else from now (the headers are in)
            pthread_mutex_lock (&server->lock);
            if (!r->conn->first)
                r->conn->started_ms = clock_now_ms ();
            r->conn->first = false;
            r->conn->in_body = true;
            pthread_mutex_unlock (&server->lock);
        }
        return MHD_YES; //  the body comes next
    }
    if (*upload_data_size) {
        //  A piece of body
        if (s_body_timed_out (r))
            return MHD_NO;
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_large || n > server->config.max_body - r->size) {
            r->too_large = true;
            free (r->body);
            r->body = NULL;
            r->size = r->capacity = 0;
            return MHD_YES; //  read and dropped; answered 413 at the end
        }
        if (r->size + n + 1 > r->capacity) {
            size_t grown = r->capacity ? r->capacity : 4096;
            while (grown < r->size + n + 1)
                grown *= 2;
            char *b = realloc (r->body, grown);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->capacity = grown;
        }
        memcpy (r->body + r->size, upload_data, n);
        r->size += n;
        r->body[r->size] = 0;
        return MHD_YES;
    }
    if (!r->submitted) {
        //  The body is complete
        if (r->conn) {
            pthread_mutex_lock (&server->lock);
            r->conn->in_body = false;
            pthread_mutex_unlock (&server->lock);
        }
        return s_infer_start (r);
    }
    if (!atomic_load (&r->done))
        return MHD_YES; //  not ours yet (cannot happen: the connection is suspended)
    return s_infer_answer (r);
}

//  A request is over (answered, or its connection closed)
static void s_on_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    (void)connection, (void)toe;
    server_t *server = cls;
    request_t *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    if (r->conn) {
        pthread_mutex_lock (&server->lock);
        r->conn->first = false;
        r->conn->in_body = false;
        if (r->conn->timed_out && !r->status)
            r->status = MHD_HTTP_REQUEST_TIMEOUT;
        pthread_mutex_unlock (&server->lock);
    }
    s_count (r);
    atomic_fetch_sub (&server->active, 1);
    if (r->job.result)
        amaas_result_destroy (&r->job.result);
    infer_request_free (&r->req);
    free (r->body);
    free (r);
}

//  A connection opened or closed: tracked for the sweep
static void s_on_connection (void *cls, struct MHD_Connection *connection, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe)
{
    server_t *server = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_t *conn = calloc (1, sizeof *conn);
        if (!conn)
            return;
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn->connection = connection;
        conn->fd = info ? info->connect_fd : -1;
        conn->started_ms = clock_now_ms ();
        conn->first = true;
        pthread_mutex_lock (&server->lock);
        conn->next = server->conns;
        if (server->conns)
            server->conns->prev = conn;
        server->conns = conn;
        pthread_mutex_unlock (&server->lock);
        *socket_context = conn;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_t *conn = *socket_context;
        if (!conn)
            return;
        pthread_mutex_lock (&server->lock);
        if (conn->prev)
            conn->prev->next = conn->next;
        else
            server->conns = conn->next;
        if (conn->next)
            conn->next->prev = conn->prev;
        pthread_mutex_unlock (&server->lock);
        free (conn);
        *socket_context = NULL;
    }
}

//  Answers 408 on every connection whose first request, or whose body, has
//  been arriving for longer than --request-timeout-s.
static void s_sweep (server_t *server)
{
    int64_t limit = clock_now_ms () - (int64_t)server->config.request_timeout_s * 1000;
    pthread_mutex_lock (&server->lock);
    for (conn_t *conn = server->conns; conn; conn = conn->next) {
        if (conn->timed_out || conn->fd < 0 || !(conn->first || conn->in_body) ||
            conn->started_ms > limit)
            continue;
        conn->timed_out = true;
        s_timeout_raw (server, conn);
        shutdown (conn->fd, SHUT_RD); //  libmicrohttpd reads the end, and closes it
        if (ratelimit_allow (server->ratelimit, "(sweep)", clock_now_ms ()))
            log_warn ("request failed status=408 route=- peer=- reason=\"the request did not "
                      "arrive within --request-timeout-s\"");
        if (!conn->in_body) { //  headers only: no request counts it
            gw_metrics_begin (server->metrics);
            gw_metrics_end (server->metrics, ROUTE_OTHER, MHD_HTTP_REQUEST_TIMEOUT, -1);
        }
    }
    pthread_mutex_unlock (&server->lock);
}

static void s_mhd_log (void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf (line, sizeof line, fmt, ap);
    size_t len = strlen (line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = 0;
    log_debug ("libmicrohttpd: %s", line);
}

static void s_report_suppressed (const char *peer_key, size_t suppressed, void *arg)
{
    (void)arg;
    log_warn ("failed requests not logged peer=%s count=%zu", peer_key, suppressed);
}

//  --- Setup -----------------------------------------------------------------

//  A whole file in memory, NUL-terminated; NULL with err set.
static char *s_read_file (const char *path, char *err, size_t err_size)
{
    FILE *f = fopen (path, "rb");
    if (!f) {
        snprintf (err, err_size, "cannot read %s: %s", path, strerror (errno));
        return NULL;
    }
    char *text = NULL;
    size_t size = 0, capacity = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread (chunk, 1, sizeof chunk, f)) > 0) {
        if (size + n + 1 > capacity) {
            capacity = (size + n + 1) * 2;
            char *t = realloc (text, capacity);
            if (!t) {
                free (text);
                fclose (f);
                snprintf (err, err_size, "out of memory");
                return NULL;
            }
            text = t;
        }
        memcpy (text + size, chunk, n);
        size += n;
    }
    fclose (f);
    if (!text) {
        snprintf (err, err_size, "%s is empty", path);
        return NULL;
    }
    text[size] = 0;
    return text;
}

//  Starts libmicrohttpd on config.listen.  Returns 0 or -1 (logged).
static int s_start_http (server_t *server)
{
    const gateway_config_t *config = &server->config;
    const char *listen = config->listen;
    if (strncmp (listen, "tcp://", 6) == 0) //  as AMAAS_GATEWAY of the settings has it
        listen += 6;
    const char *colon = strrchr (listen, ':');
    char *end;
    long port = colon ? strtol (colon + 1, &end, 10) : -1;
    char host[256];
    size_t host_len = colon ? (size_t)(colon - listen) : 0;
    const char *start = listen;
    if (host_len >= 2 && listen[0] == '[' && colon[-1] == ']') {
        start++;
        host_len -= 2;
    }
    if (!colon || colon[1] == 0 || *end || port < 0 || port > 65535 || host_len == 0 ||
        host_len >= sizeof host) {
        log_error ("--listen '%s' is not HOST:PORT (e.g. 127.0.0.1:8080)", listen);
        return -1;
    }
    memcpy (host, start, host_len);
    host[host_len] = 0;
    snprintf (server->host, sizeof server->host, strchr (host, ':') ? "[%s]" : "%s", host);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    int gai = getaddrinfo (host, NULL, &hints, &found);
    if (gai) {
        log_error ("cannot resolve '%s': %s", host, gai_strerror (gai));
        return -1;
    }
    struct sockaddr_storage address;
    memcpy (&address, found->ai_addr, found->ai_addrlen);
    bool ipv6 = found->ai_family == AF_INET6;
    freeaddrinfo (found);
    if (ipv6)
        ((struct sockaddr_in6 *)&address)->sin6_port = htons ((uint16_t)port);
    else
        ((struct sockaddr_in *)&address)->sin_port = htons ((uint16_t)port);

    //  poll(2), not epoll: every inference request suspends and resumes its
    //  connection, which costs epoll two epoll_ctl calls, and poll none
    //  (about 20% more requests a second at 64 connections, scripts/bench i)
    unsigned int flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    struct MHD_OptionItem options[16];
    size_t n = 0;
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &address};
    options[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, config->max_connections, NULL};
    options[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, config->idle_timeout_s, NULL};
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                           (intptr_t)config->max_header, NULL};
    options[n++] =
        (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)s_on_completed, server};
    options[n++] =
        (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)s_on_connection, server};
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)s_mhd_log, NULL};
    if (config->threads > 1)
        options[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, config->threads, NULL};
    if (server->tls) {
        flags |= MHD_USE_TLS;
        options[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, server->tls_cert_pem};
        options[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, server->tls_key_pem};
    }
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    errno = 0;
    server->daemon = MHD_start_daemon (flags, (uint16_t)port, NULL, NULL, s_on_request, server,
                                       MHD_OPTION_ARRAY, options, MHD_OPTION_END);
    if (!server->daemon) {
        log_error ("cannot listen on %s: %s", listen,
                   errno ? strerror (errno) : "libmicrohttpd could not start");
        return -1;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info (server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info ? info->port : (int)port;
    return 0;
}

//  Writes the port to the port file (whole or not at all)
static int s_write_port_file (const char *path, int port)
{
    char tmp[PATH_MAX];
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen (tmp, "w");
    if (!f || fprintf (f, "%d\n", port) < 0 || fclose (f)) {
        log_error ("cannot write the port file %s: %s", path, strerror (errno));
        return -1;
    }
    if (rename (tmp, path)) {
        log_error ("cannot write the port file %s: %s", path, strerror (errno));
        return -1;
    }
    return 0;
}

void gateway_config_defaults (gateway_config_t *config)
{
    static char listen[32];
    snprintf (listen, sizeof listen, "127.0.0.1:%d", DEFS_GATEWAY_PORT);
    long cpus = sysconf (_SC_NPROCESSORS_ONLN);
    *config = (gateway_config_t){
        .listen = listen,
        .broker = DEFS_FRONTEND_LOCAL,
        .timeout_ms = 30000,
        .threads = cpus > 0 && cpus < 256 ? (int)cpus : 2,
        .max_body = 64 << 20,
        .max_connections = 1024,
        .idle_timeout_s = 30,
        .request_timeout_s = 30,
        .max_header = 16384,
        .docs_dir = AMAAS_SWAGGER_UI_DIR,
    };
    //  In the source tree (scripts/install-deps), else installed
    if (access (AMAAS_SWAGGER_UI_DIR "/swagger-ui-bundle.js", R_OK) != 0 &&
        access (AMAAS_SWAGGER_UI_INSTALLED "/swagger-ui-bundle.js", R_OK) == 0)
        config->docs_dir = AMAAS_SWAGGER_UI_INSTALLED;
}

static void s_server_free (server_t *server)
{
    if (server->daemon)
        MHD_stop_daemon (server->daemon);
    dispatch_destroy (&server->dispatch);
    gw_metrics_destroy (&server->metrics);
    if (server->certs)
        for (size_t i = 0; i < server->n_clients; i++)
            free (server->certs[i]);
    free (server->certs);
    auth_keys_free (&server->keys);
    ratelimit_destroy (&server->ratelimit);
    free (server->tls_cert_pem);
    free (server->tls_key_pem);
    while (server->conns) { //  libmicrohttpd closed them all
        conn_t *next = server->conns->next;
        free (server->conns);
        server->conns = next;
    }
    pthread_mutex_destroy (&server->lock);
}

int gateway_run (const gateway_config_t *config)
{
    server_t server = {.config = *config};
    pthread_mutex_init (&server.lock, NULL);
    char err[512];
    int rc = -1;
    server.metrics = gw_metrics_new ();
    server.ratelimit = ratelimit_new (LOG_PER_SECOND);
    if (!server.metrics || !server.ratelimit) {
        log_error ("out of memory");
        goto done;
    }
    if (config->api_keys && auth_keys_load (config->api_keys, &server.keys, err, sizeof err)) {
        log_error ("%s", err);
        goto done;
    }
    if ((config->tls_cert != NULL) != (config->tls_key != NULL)) {
        log_error ("--tls-cert and --tls-key go together");
        goto done;
    }
    if (config->tls_cert) {
        server.tls_cert_pem = s_read_file (config->tls_cert, err, sizeof err);
        server.tls_key_pem =
            server.tls_cert_pem ? s_read_file (config->tls_key, err, sizeof err) : NULL;
        if (!server.tls_key_pem) {
            log_error ("%s", err);
            goto done;
        }
        server.tls = true;
    }
    //  One broker connection per API key NAME, or one for every caller
    server.n_clients = server.keys.n_keys ? server.keys.n_keys : 1;
    server.certs = calloc (server.n_clients, sizeof *server.certs);
    if (!server.certs) {
        log_error ("out of memory");
        goto done;
    }
    if (config->server_key) {
        for (size_t i = 0; i < server.n_clients; i++) {
            if (server.keys.n_keys && config->client_keys) {
                if (asprintf (&server.certs[i], "%s/%s", config->client_keys,
                              server.keys.keys[i].name) < 0)
                    server.certs[i] = NULL;
            } else if (config->cert)
                server.certs[i] = strdup (config->cert);
            if (!server.certs[i]) {
                log_error ("--server-key needs the gateway's key pair: --cert FILE, or "
                           "--client-keys DIR with --api-keys");
                goto done;
            }
        }
    }
    dispatch_config_t dc = {
        .endpoint = config->broker,
        .timeout_ms = config->timeout_ms,
        .server_key = config->server_key,
        .certs = (const char **)server.certs,
        .n_clients = server.n_clients,
        .models_cert = config->server_key ? server.certs[0] : NULL,
    };
    server.dispatch = dispatch_new (&dc);
    if (!server.dispatch)
        goto done;
    if (s_start_http (&server))
        goto done;
    log_info ("listening on %s://%s:%d broker=%s keys=%zu threads=%d",
              server.tls ? "https" : "http", server.host, server.port, config->broker,
              server.keys.n_keys, config->threads);
    if (config->port_file && s_write_port_file (config->port_file, server.port))
        goto done;

    int64_t next_flush = clock_now_ms () + 1000;
    while (signals_stop_requests () == 0) {
        struct timespec pause = {0, SWEEP_MS * 1000000L};
        nanosleep (&pause, NULL);
        s_sweep (&server);
        if (clock_now_ms () >= next_flush) {
            pthread_mutex_lock (&server.lock);
            ratelimit_flush (server.ratelimit, clock_now_ms (), s_report_suppressed, NULL);
            pthread_mutex_unlock (&server.lock);
            next_flush = clock_now_ms () + 1000;
        }
    }
    //  Stop: take no new connection, answer the jobs in flight (a second
    //  signal cuts the wait short)
    log_info ("stopping: answering the requests in flight in_flight=%zu",
              dispatch_in_flight (server.dispatch));
    int listen_fd = MHD_quiesce_daemon (server.daemon);
    int64_t deadline = clock_now_ms () + config->timeout_ms + 1000;
    while ((dispatch_in_flight (server.dispatch) > 0 || atomic_load (&server.active) > 0) &&
           clock_now_ms () < deadline && signals_stop_requests () < 2) {
        struct timespec pause = {0, 10 * 1000000L};
        nanosleep (&pause, NULL);
        s_sweep (&server);
    }
    dispatch_destroy (&server.dispatch); //  what is left is answered UNAVAILABLE
    MHD_stop_daemon (server.daemon);
    server.daemon = NULL;
    if (listen_fd >= 0)
        close (listen_fd);
    log_info ("stopped");
    rc = 0;
done:
    s_server_free (&server);
    return rc;
}
