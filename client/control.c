/*  control.c - the operator commands of the amaas CLI: status, workers,
    drain, shutdown.

    They speak to the broker's control endpoint (CONTROL / CONTROL_REPLY,
    docs/PROTOCOL.md).  The answer is a msgpack map; it is printed as a
    human table, or with --json converted to JSON as it is.
*/
#include "control.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "curve.h"

//  A msgpack object as JSON (maps with str keys, arrays, scalars)
static json_t *s_to_json (const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null ();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean (o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer ((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer (o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return json_real (o->via.f64);
    case MSGPACK_OBJECT_STR: return json_stringn (o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array ();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new (a, s_to_json (&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object ();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR)
                continue;
            char key[256];
            snprintf (key, sizeof key, "%.*s", (int)k->via.str.size, k->via.str.ptr);
            json_object_set_new (m, key, s_to_json (&o->via.map.ptr[i].val));
        }
        return m;
    }
    default: return json_null ();
    }
}

//  Sends one CONTROL command and returns its answer as JSON (NULL on error,
//  with a message printed).  *code_p gets the answer's code.
static json_t *s_control_call (const char *endpoint, int timeout_ms, const char *server_cert,
                               const char *cert, const char *command, const char *worker,
                               char *message, size_t message_size, int *code_p)
{
    json_t *answer = NULL;
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock) {
        fprintf (stderr, "amaas: cannot create a socket: %s\n", zmq_strerror (zmq_errno ()));
        return NULL;
    }
    zsock_set_linger (sock, 0);
    char why[512];
    if ((server_cert || cert) && curve_client_apply (sock, server_cert, cert, why, sizeof why)) {
        fprintf (stderr, "amaas: %s\n", why);
        zsock_destroy (&sock);
        return NULL;
    }
    if (zsock_connect (sock, "%s", endpoint)) {
        fprintf (stderr, "amaas: bad control endpoint '%s'\n", endpoint);
        zsock_destroy (&sock);
        return NULL;
    }
    codec_header_t h = {0};
    h.fields = HDR_ID | HDR_COMMAND;
    h.id = 1;
    snprintf (h.command, sizeof h.command, "%s", command);
    if (worker) {
        h.fields |= HDR_WORKER;
        snprintf (h.worker, sizeof h.worker, "%s", worker);
    }
    void *handle = zsock_resolve (sock);
    codec_frames_t in = {0};
    codec_cmd_t cmd;
    zmq_msg_t *payload = NULL;
    char err[CODEC_MESSAGE_MAX];
    zmq_pollitem_t item = {handle, 0, ZMQ_POLLIN, 0};
    if (codec_send_frames (handle, NULL, 0, CMD_CONTROL, &h, NULL)) {
        fprintf (stderr, "amaas: cannot send to the control endpoint %s: %s\n", endpoint,
                 zmq_strerror (zmq_errno ()));
    } else if (zmq_poll (&item, 1, timeout_ms) != 1 || codec_frames_recv (&in, handle)) {
        fprintf (stderr,
                 "amaas: UNAVAILABLE: no broker answered on the control endpoint %s "
                 "within %d ms\n",
                 endpoint, timeout_ms);
    } else if (codec_frames_parse (&in, 0, &cmd, &h, &payload, err, sizeof err)) {
        fprintf (stderr, "amaas: the broker's answer cannot be read: %s\n", err);
    } else if (cmd != CMD_CONTROL_REPLY && cmd != CMD_ERROR && cmd != CMD_REPLY) {
        fprintf (stderr, "amaas: the broker answered with command 0x%02x, not CONTROL_REPLY\n",
                 (unsigned)cmd);
    } else {
        *code_p = (int)h.code;
        snprintf (message, message_size, "%s", h.message);
        answer = json_object ();
        if (payload) {
            const char *data = zmq_msg_data (payload);
            size_t size = zmq_msg_size (payload);
            msgpack_unpacked u;
            msgpack_unpacked_init (&u);
            size_t offset = 0;
            if (codec_mp_check (data, size, err, sizeof err) == 0 &&
                msgpack_unpack_next (&u, data, size, &offset) == MSGPACK_UNPACK_SUCCESS) {
                json_decref (answer);
                answer = s_to_json (&u.data);
            }
            msgpack_unpacked_destroy (&u);
        }
    }
    codec_header_reset (&h);
    codec_frames_close (&in);
    zsock_destroy (&sock);
    return answer;
}

static void s_print_status (json_t *a)
{
    printf ("uptime      %.0f s\n", json_number_value (json_object_get (a, "uptime_s")));
    printf ("workers     %lld\n", json_integer_value (json_object_get (a, "workers")));
    printf ("in flight   %lld\n", json_integer_value (json_object_get (a, "in_flight")));
    printf ("jobs       ");
    const char *key;
    json_t *value;
    json_object_foreach (json_object_get (a, "jobs"), key, value)
        printf (" %s=%lld", key, json_integer_value (value));
    printf ("\nqueued     ");
    json_object_foreach (json_object_get (a, "queued"), key, value)
        printf (" %s=%lld", key, json_integer_value (value));
    printf ("\n");
}

static void s_print_workers (json_t *a)
{
    printf ("%-12s %-16s %7s %6s %9s %9s %8s %-8s %s\n", "WORKER", "HOST", "PID", "CREDIT",
            "IN FLIGHT", "DONE", "SEEN MS", "STATE", "MODELS");
    size_t i;
    json_t *w;
    json_array_foreach (json_object_get (a, "workers"), i, w)
    {
        char models[256] = "";
        size_t len = 0, j;
        json_t *m;
        json_array_foreach (json_object_get (w, "models"), j, m) len +=
            (size_t)snprintf (models + len, len < sizeof models ? sizeof models - len : 0, "%s%s",
                              j ? "," : "", json_string_value (m));
        printf ("%-12s %-16s %7lld %6lld %9lld %9lld %8lld %-8s %s\n",
                json_string_value (json_object_get (w, "id")),
                json_string_value (json_object_get (w, "host")),
                json_integer_value (json_object_get (w, "pid")),
                json_integer_value (json_object_get (w, "credit")),
                json_integer_value (json_object_get (w, "in_flight")),
                json_integer_value (json_object_get (w, "done")),
                json_integer_value (json_object_get (w, "last_heartbeat_ms")),
                json_is_true (json_object_get (w, "draining")) ? "draining" : "serving", models);
    }
}

int control_main (const char *endpoint, int timeout_ms, const char *server_cert, const char *cert,
                  int argc, char *argv[])
{
    const char *command = argv[0];
    bool as_json = false;
    static const struct option options[] = {{"json", no_argument, 0, 'j'},
                                            {"control", required_argument, 0, 'c'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        if (c == 'j')
            as_json = true;
        else if (c == 'c')
            endpoint = optarg;
        else if (c == 'h') {
            printf ("Usage: amaas [--control ENDPOINT] %s%s [--json]\n", command,
                    streq (command, "drain") ? " WORKER" : "");
            return 0;
        } else
            return 2;
    }
    const char *worker = NULL;
    if (streq (command, "drain")) {
        if (optind >= argc) {
            fprintf (stderr, "amaas drain: which worker? (its id, from 'amaas workers')\n");
            return 2;
        }
        worker = argv[optind];
    }
    //  A list of brokers (EP1,EP2,...): status and workers of each in turn;
    //  drain goes to each until one knows the worker (it tells the others)
    size_t n = 1;
    for (const char *p = endpoint; *p; p++)
        n += *p == ',';
    if (n > 1 && streq (command, "shutdown")) {
        fprintf (stderr, "amaas shutdown: one broker at a time: --control ENDPOINT\n");
        return 2;
    }
    json_t *all = n > 1 && as_json ? json_array () : NULL;
    int rc = 0;
    char message[CODEC_MESSAGE_MAX] = "";
    int code = 0;
    for (const char *at = endpoint;;) {
        size_t len = strcspn (at, ",");
        char one[256];
        if (len == 0 || len >= sizeof one) {
            fprintf (stderr, "amaas: bad control endpoint list '%s'\n", endpoint);
            json_decref (all);
            return 2;
        }
        memcpy (one, at, len);
        one[len] = 0;
        if (n > 1 && !as_json && !worker)
            printf ("%s==== broker %s\n", at == endpoint ? "" : "\n", one);
        *message = 0;
        json_t *answer = s_control_call (one, timeout_ms, server_cert, cert, command, worker,
                                         message, sizeof message, &code);
        if (!answer)
            rc = 1;
        else if (code && worker)
            ; //  drain: the next broker may know the worker (reported after the last)
        else if (code) {
            fprintf (stderr, "amaas: %s: %s\n", amaas_code_name ((amaas_code_t)code), message);
            rc = 1;
        } else if (as_json) {
            if (*message && json_object_size (answer) == 0)
                json_object_set_new (answer, "message", json_string (message));
            if (all) {
                json_object_set_new (answer, "control", json_string (one));
                json_array_append (all, answer);
            } else {
                char *text = json_dumps (answer, JSON_SORT_KEYS);
                printf ("%s\n", text);
                free (text);
            }
        } else if (streq (command, "status"))
            s_print_status (answer);
        else if (streq (command, "workers"))
            s_print_workers (answer);
        else
            printf ("%s\n", message);
        bool done = worker && answer && !code; //  drained: one broker is enough
        json_decref (answer);
        if (done) {
            rc = 0;
            break;
        }
        if (!at[len]) {
            if (worker && code) {
                fprintf (stderr, "amaas: %s: %s\n", amaas_code_name ((amaas_code_t)code), message);
                rc = 1;
            }
            break;
        }
        at += len + 1;
    }
    if (all) {
        char *text = json_dumps (all, JSON_SORT_KEYS);
        printf ("%s\n", text);
        free (text);
        json_decref (all);
    }
    return rc;
}
