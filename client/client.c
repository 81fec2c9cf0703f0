/*  client.c - libamaas: send inference jobs to an amaas broker.

    One DEALER socket per client.  Every job sent is remembered as pending,
    with its encoded inputs, until its result is handed to the caller: that
    is what lets the library resend it, with the same id, when an attempt
    gets no answer in time or comes back UNAVAILABLE, and drop a second
    answer to a job already answered.  Pending jobs sit in a table by id and
    in a list ordered by when their attempt times out.

    All waiting goes through pump(), which reads the socket, fires the
    retry timers, and parks results that nobody asked for yet in a FIFO that
    amaas_recv serves first; so pipelined and synchronous calls mix freely
    on one client.
*/
#include "amaas.h"

#include <czmq.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "curve.h"
#include "table.h"

#define BACKOFF_FIRST_MS 50 //  first wait before resending an UNAVAILABLE job
#define BACKOFF_MAX_MS 2000

typedef struct {
    uint64_t id;                     //  job id, also the table key
    char model[CODEC_NAME_MAX];      //  model name
    char version[CODEC_VERSION_MAX]; //  required version, or ""
    uint32_t priority;               //  0..3
    uint32_t deadline_ms;            //  budget from the first send, 0 = none
    zframe_t *payload;               //  encoded inputs, kept for resends
    int64_t first_sent_ms;           //  first attempt
    int64_t next_try_ms;             //  resend (or give up) then
    int attempts;                    //  attempts sent
    int backoff_ms;                  //  next wait after UNAVAILABLE
    void *handle;                    //  in the timers list
} pending_t;

struct amaas_client_t {
    zsock_t *sock;          //  DEALER to the broker's frontend
    int timeout_ms;         //  default wait of recv and predict
    int attempts;           //  most attempts per job
    int attempt_timeout_ms; //  resend after this long without an answer
    uint64_t next_id;       //  id of the next job
    zhashx_t *pending;      //  pending_t * by &id
    zlistx_t *timers;       //  pending_t *, by next_try_ms
    zlistx_t *parked;       //  amaas_result_t * ready for the caller
    codec_header_t header;  //  header of the message at hand
    uint64_t resent;        //  attempts resent
    uint64_t duplicates;    //  answers dropped as duplicates
};

static void set_error (amaas_error_t *err, amaas_code_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void set_error (amaas_error_t *err, amaas_code_t code, const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err->message, sizeof err->message, fmt, args);
    va_end (args);
}

static void result_destructor (void **item)
{
    amaas_result_destroy ((amaas_result_t **)item);
}

static int timer_compare (const void *a, const void *b)
{
    int64_t x = ((const pending_t *)a)->next_try_ms, y = ((const pending_t *)b)->next_try_ms;
    return x < y ? -1 : x > y;
}

static void pending_destroy (pending_t **self_p)
{
    if (!*self_p)
        return;
    zframe_destroy (&(*self_p)->payload);
    free (*self_p);
    *self_p = NULL;
}

void amaas_set_timeout (amaas_client_t *self, int timeout_ms)
{
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
}

void amaas_set_retry (amaas_client_t *self, int attempts, int attempt_timeout_ms)
{
    self->attempts = attempts > 0 ? attempts : 1;
    self->attempt_timeout_ms = attempt_timeout_ms > 0 ? attempt_timeout_ms : 1;
}

size_t amaas_pending (const amaas_client_t *self)
{
    return zhashx_size (self->pending);
}

void amaas_stats (const amaas_client_t *self, uint64_t *resent, uint64_t *duplicates)
{
    if (resent)
        *resent = self->resent;
    if (duplicates)
        *duplicates = self->duplicates;
}

//  Sends a header-only command.  Returns 0 or -1.
static int send_command (amaas_client_t *self, codec_cmd_t cmd, uint64_t id)
{
    codec_header_t *h = &self->header;
    codec_header_reset (h);
    h->fields = HDR_ID;
    h->id = id;
    zmsg_t *msg = codec_msg_new (cmd, h, NULL);
    if (!msg || zmsg_send (&msg, self->sock)) {
        zmsg_destroy (&msg);
        return -1;
    }
    return 0;
}

//  Moves a pending job in the timers list to its new next_try_ms.
static void timer_set (amaas_client_t *self, pending_t *p, int64_t at_ms)
{
    p->next_try_ms = at_ms;
    if (p->handle)
        zlistx_reorder (self->timers, p->handle, false);
    else
        p->handle = zlistx_insert (self->timers, p, false);
}

//  A result made by the library itself (no answer from the service).
static amaas_result_t *local_result (const pending_t *p, amaas_code_t code, const char *message)
{
    amaas_result_t *r = calloc (1, sizeof *r);
    if (!r)
        return NULL;
    r->id = p->id;
    r->error.code = code;
    snprintf (r->error.message, sizeof r->error.message, "%s", message);
    r->model = strdup (p->model);
    r->version = strdup ("");
    return r;
}

//  Forgets a pending job.
static void pending_finish (amaas_client_t *self, pending_t *p)
{
    zlistx_detach (self->timers, p->handle);
    zhashx_delete (self->pending, &p->id);
    pending_destroy (&p);
}

//  The job ends here with a result the library made; parked for the caller.
static void pending_fail (amaas_client_t *self, pending_t *p, amaas_code_t code,
                          const char *message)
{
    amaas_result_t *r = local_result (p, code, message);
    if (r)
        zlistx_add_end (self->parked, r);
    pending_finish (self, p);
}

//  Sends one attempt of a pending job.  The deadline counts from the first
//  attempt: a resend carries what is left of it.
static void send_attempt (amaas_client_t *self, pending_t *p)
{
    int64_t now = clock_now_ms ();
    codec_header_t *h = &self->header;
    codec_header_reset (h);
    h->fields = HDR_ID;
    h->id = p->id;
    codec_header_set_model (h, p->model);
    if (*p->version)
        codec_header_set_version (h, p->version);
    if (p->priority) {
        h->fields |= HDR_PRIORITY;
        h->priority = p->priority;
    }
    if (p->deadline_ms) {
        int64_t left = p->first_sent_ms + p->deadline_ms - now;
        if (left <= 0) {
            pending_fail (self, p, AMAAS_DEADLINE_EXCEEDED,
                          "deadline passed before the job could be sent again");
            return;
        }
        h->fields |= HDR_DEADLINE_MS;
        h->deadline_ms = (uint32_t)left;
    }
    zframe_t *payload = zframe_dup (p->payload);
    zmsg_t *msg = codec_msg_new (CMD_REQUEST, h, &payload);
    zframe_destroy (&payload);
    //  A send that fails (it cannot, with no high-water mark, short of
    //  out-of-memory) is handled like a lost attempt: it times out
    if (msg && zmsg_send (&msg, self->sock))
        zmsg_destroy (&msg);
    p->attempts++;
    timer_set (self, p, now + self->attempt_timeout_ms);
}

//  Builds a result from a REPLY (or ERROR) message.  NULL on out-of-memory
//  or for a message that is not a reply.
static amaas_result_t *result_from (amaas_client_t *self, zmsg_t *msg, codec_cmd_t cmd)
{
    codec_header_t *h = &self->header;
    zframe_t *payload = zmsg_size (msg) == 4 ? zmsg_last (msg) : NULL;
    char why[CODEC_MESSAGE_MAX];
    if (cmd != CMD_REPLY && cmd != CMD_ERROR)
        return NULL;
    amaas_result_t *result = calloc (1, sizeof *result);
    if (!result)
        return NULL;
    result->id = h->id;
    result->error.code = (amaas_code_t)h->code;
    snprintf (result->error.message, sizeof result->error.message, "%s", h->message);
    result->model = strdup (h->model);
    result->version = strdup (h->version);
    result->queue_us = h->queue_us;
    result->compute_us = h->compute_us;
    result->batch = h->batch;
    if (h->code != AMAAS_OK || !payload)
        return result;
    codec_tensor_t outs[CODEC_MAX_TENSORS];
    int n = codec_tensors_decode (zframe_data (payload), zframe_size (payload), outs,
                                  CODEC_MAX_TENSORS, UINT64_MAX / 16, why, sizeof why);
    if (n < 0) {
        result->error.code = AMAAS_INTERNAL;
        snprintf (result->error.message, sizeof result->error.message,
                  "the broker sent outputs the client cannot read: %.200s", why);
        return result;
    }
    result->outputs = calloc ((size_t)n, sizeof (amaas_tensor_t));
    if (!result->outputs)
        goto oom;
    result->n_outputs = (size_t)n;
    for (int i = 0; i < n; i++) {
        amaas_tensor_t *t = &result->outputs[i];
        char *name = strndup (outs[i].name, outs[i].name_len);
        //  Own, aligned copy: the frame's bytes need not be aligned
        void *data = malloc (outs[i].size ? outs[i].size : 1);
        t->name = name;
        t->data = data;
        if (!name || !data)
            goto oom;
        memcpy (data, outs[i].data, outs[i].size);
        t->datatype = outs[i].datatype;
        t->ndim = outs[i].ndim;
        memcpy (t->shape, outs[i].shape, sizeof t->shape);
        t->size = outs[i].size;
    }
    return result;
oom:
    result->error.code = AMAAS_INTERNAL;
    snprintf (result->error.message, sizeof result->error.message, "client out of memory");
    return result;
}

//  A REPLY or ERROR arrived: hand it on, retry it, or drop it as a duplicate.
static void on_reply (amaas_client_t *self, zmsg_t *msg, codec_cmd_t cmd)
{
    pending_t *p = zhashx_lookup (self->pending, &self->header.id);
    if (!p) {
        //  An answer to a job already answered (a resend crossed a late
        //  answer), or to nothing we sent: never shown to the caller
        self->duplicates++;
        return;
    }
    if (self->header.code == AMAAS_UNAVAILABLE && p->attempts < self->attempts) {
        //  Worker lost, broker restarting: try again after a backoff
        timer_set (self, p, clock_now_ms () + p->backoff_ms);
        p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
        return;
    }
    amaas_result_t *result = result_from (self, msg, cmd);
    if (result)
        zlistx_add_end (self->parked, result);
    pending_finish (self, p);
}

//  Fires the timers that are due: resend, or give up.
static void on_timers (amaas_client_t *self)
{
    int64_t now = clock_now_ms ();
    pending_t *p;
    while ((p = zlistx_first (self->timers)) && p->next_try_ms <= now) {
        if (p->attempts < self->attempts) {
            if (p->attempts > 0)
                self->resent++;
            send_attempt (self, p);
        } else {
            char message[CODEC_MESSAGE_MAX];
            snprintf (message, sizeof message, "no answer from the broker after %d attempt%s",
                      p->attempts, p->attempts == 1 ? "" : "s");
            pending_fail (self, p, AMAAS_DEADLINE_EXCEEDED, message);
        }
    }
}

//  Takes the parked result of job `id` (0: the oldest of any), or NULL.
static amaas_result_t *take_parked (amaas_client_t *self, uint64_t id)
{
    for (amaas_result_t *r = zlistx_first (self->parked); r; r = zlistx_next (self->parked))
        if (id == 0 || r->id == id)
            return zlistx_detach_cur (self->parked);
    return NULL;
}

//  Reads the socket and runs the timers until a result for `id` (0: any
//  job) is ready, or, when ctl_cmd is set, until a message of that command
//  with id ctl_id arrives (returned in *ctl_p), or until until_ms.
static amaas_result_t *pump (amaas_client_t *self, uint64_t id, int64_t until_ms,
                             codec_cmd_t ctl_cmd, uint64_t ctl_id, zmsg_t **ctl_p)
{
    while (true) {
        on_timers (self);
        if (!ctl_cmd) {
            amaas_result_t *r = take_parked (self, id);
            if (r)
                return r;
        }
        int64_t now = clock_now_ms ();
        if (now >= until_ms)
            return NULL;
        int64_t wake = until_ms;
        pending_t *first = zlistx_first (self->timers);
        if (first && first->next_try_ms < wake)
            wake = first->next_try_ms;
        zmq_pollitem_t item = {zsock_resolve (self->sock), 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll (&item, 1, (long)(wake > now ? wake - now : 0));
        if (rc < 0 && zmq_errno () != EINTR)
            return NULL;
        if (rc <= 0)
            continue;
        zmsg_t *msg = zmsg_recv (self->sock);
        if (!msg)
            continue;
        codec_cmd_t cmd;
        zframe_t *payload;
        char why[CODEC_MESSAGE_MAX];
        if (codec_msg_parse (msg, &cmd, &self->header, &payload, why, sizeof why) == 0) {
            //  An ERROR while waiting for a control answer is the answer: the
            //  broker refused what we sent (e.g. our key)
            if (ctl_cmd && ((cmd == ctl_cmd && self->header.id == ctl_id) || cmd == CMD_ERROR)) {
                *ctl_p = msg;
                return NULL;
            }
            if (cmd == CMD_REPLY || cmd == CMD_ERROR)
                on_reply (self, msg, cmd);
        }
        zmsg_destroy (&msg);
    }
}

static amaas_client_t *connect_with (const char *endpoint, int timeout_ms, const char *server_cert,
                                     const char *cert, amaas_error_t *err)
{
    amaas_client_t *self = calloc (1, sizeof *self);
    if (!self) {
        set_error (err, AMAAS_INTERNAL, "out of memory");
        return NULL;
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    self->attempts = 3;
    self->attempt_timeout_ms = 2000;
    self->next_id = 1;
    self->parked = zlistx_new ();
    self->timers = zlistx_new ();
    self->pending = table_u64_new ();
    self->sock = zsock_new (ZMQ_DEALER);
    if (!self->parked || !self->timers || !self->pending || !self->sock) {
        set_error (err, AMAAS_INTERNAL, "cannot create a ZeroMQ socket");
        goto err;
    }
    zlistx_set_destructor (self->parked, result_destructor);
    zlistx_set_comparator (self->timers, timer_compare);
    zsock_set_linger (self->sock, 0);
    zsock_set_sndhwm (self->sock, 0);
    zsock_set_rcvhwm (self->sock, 0);
    char why[512];
    if ((server_cert || cert) &&
        curve_client_apply (self->sock, server_cert, cert, why, sizeof why)) {
        set_error (err, AMAAS_INVALID_ARGUMENT, "%s", why);
        goto err;
    }
    if (zsock_connect (self->sock, "%s", endpoint) == -1) {
        set_error (err, AMAAS_INVALID_ARGUMENT, "bad broker endpoint '%s': %s", endpoint,
                   zmq_strerror (zmq_errno ()));
        goto err;
    }
    //  ZeroMQ connects in the background: a PING proves the broker is there
    uint64_t id = self->next_id++;
    zmsg_t *pong = NULL;
    if (send_command (self, CMD_PING, id) == 0)
        pump (self, 0, clock_now_ms () + self->timeout_ms, CMD_PONG, id, &pong);
    if (pong && self->header.fields & HDR_CODE && self->header.code != AMAAS_OK) {
        set_error (err, (amaas_code_t)self->header.code, "%s", self->header.message);
        zmsg_destroy (&pong);
        goto err;
    }
    if (pong) {
        zmsg_destroy (&pong);
        return self;
    }
    set_error (err, AMAAS_UNAVAILABLE, "no amaas broker answered at %s within %d ms", endpoint,
               self->timeout_ms);
err:
    amaas_close (&self);
    return NULL;
}

amaas_client_t *amaas_connect (const char *endpoint, int timeout_ms, amaas_error_t *err)
{
    return connect_with (endpoint, timeout_ms, NULL, NULL, err);
}

amaas_client_t *amaas_connect_curve (const char *endpoint, int timeout_ms, const char *server_cert,
                                     const char *cert, amaas_error_t *err)
{
    if (!server_cert || !cert) {
        set_error (err, AMAAS_INVALID_ARGUMENT,
                   "CURVE needs the broker's public certificate and a key pair");
        return NULL;
    }
    return connect_with (endpoint, timeout_ms, server_cert, cert, err);
}

void amaas_close (amaas_client_t **self_p)
{
    amaas_client_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->sock);
    if (self->timers) {
        pending_t *p;
        while ((p = zlistx_detach (self->timers, NULL)))
            pending_destroy (&p);
    }
    zlistx_destroy (&self->timers);
    zhashx_destroy (&self->pending);
    zlistx_destroy (&self->parked);
    codec_header_reset (&self->header);
    free (self);
    *self_p = NULL;
}

uint64_t amaas_send_opts (amaas_client_t *self, const char *model, const amaas_tensor_t *inputs,
                          size_t n_inputs, const amaas_options_t *opts, amaas_error_t *err)
{
    if (!model || !*model || strlen (model) >= CODEC_NAME_MAX) {
        set_error (err, AMAAS_INVALID_ARGUMENT, "model name must be 1..%d bytes",
                   CODEC_NAME_MAX - 1);
        return 0;
    }
    if (n_inputs == 0 || n_inputs > CODEC_MAX_TENSORS) {
        set_error (err, AMAAS_INVALID_ARGUMENT, "a job takes 1..%d input tensors",
                   CODEC_MAX_TENSORS);
        return 0;
    }
    if (opts &&
        (opts->priority >= CODEC_PRIORITIES ||
         (opts->version && (!*opts->version || strlen (opts->version) >= CODEC_VERSION_MAX)))) {
        set_error (err, AMAAS_INVALID_ARGUMENT,
                   "options: priority must be 0..%d, version 1..%d bytes", CODEC_PRIORITIES - 1,
                   CODEC_VERSION_MAX - 1);
        return 0;
    }
    codec_tensor_t tensors[CODEC_MAX_TENSORS];
    for (size_t i = 0; i < n_inputs; i++) {
        const amaas_tensor_t *in = &inputs[i];
        codec_tensor_t *t = &tensors[i];
        if (in->ndim < 1 || in->ndim > AMAAS_MAX_DIMS || !in->name || !*in->name ||
            strlen (in->name) >= CODEC_NAME_MAX || in->datatype <= AMAAS_DTYPE_INVALID ||
            in->datatype > AMAAS_BYTES || (in->size && !in->data)) {
            set_error (err, AMAAS_INVALID_ARGUMENT,
                       "input %zu needs a name, a datatype, 1..%d dimensions and its data", i,
                       AMAAS_MAX_DIMS);
            return 0;
        }
        memset (t, 0, sizeof *t);
        t->name = in->name;
        t->name_len = strlen (in->name);
        t->datatype = in->datatype;
        t->ndim = in->ndim;
        memcpy (t->shape, in->shape, sizeof t->shape);
        t->data = in->data;
        t->size = in->size;
    }
    pending_t *p = calloc (1, sizeof *p);
    if (!p || !(p->payload = codec_tensors_encode (tensors, n_inputs))) {
        free (p);
        set_error (err, AMAAS_INTERNAL, "out of memory");
        return 0;
    }
    p->id = self->next_id++;
    snprintf (p->model, sizeof p->model, "%s", model);
    if (opts) {
        snprintf (p->version, sizeof p->version, "%s", opts->version ? opts->version : "");
        p->priority = opts->priority;
        p->deadline_ms = opts->deadline_ms;
    }
    p->first_sent_ms = clock_now_ms ();
    p->backoff_ms = BACKOFF_FIRST_MS;
    zhashx_insert (self->pending, &p->id, p);
    uint64_t id = p->id;
    send_attempt (self, p);
    return id;
}

uint64_t amaas_send (amaas_client_t *self, const char *model, const amaas_tensor_t *inputs,
                     size_t n_inputs, amaas_error_t *err)
{
    return amaas_send_opts (self, model, inputs, n_inputs, NULL, err);
}

amaas_result_t *amaas_recv (amaas_client_t *self, int timeout_ms, amaas_error_t *err)
{
    if (timeout_ms < 0)
        timeout_ms = self->timeout_ms;
    amaas_result_t *r = pump (self, 0, clock_now_ms () + timeout_ms, 0, 0, NULL);
    if (!r)
        set_error (err, AMAAS_DEADLINE_EXCEEDED, "no result within %d ms (%zu jobs pending)",
                   timeout_ms, amaas_pending (self));
    return r;
}

amaas_result_t *amaas_predict (amaas_client_t *self, const char *model,
                               const amaas_tensor_t *inputs, size_t n_inputs, amaas_error_t *err)
{
    uint64_t id = amaas_send (self, model, inputs, n_inputs, err);
    if (!id)
        return NULL;
    amaas_result_t *r = pump (self, id, clock_now_ms () + self->timeout_ms, 0, 0, NULL);
    if (!r) {
        //  Given up: forget the job, so that a late answer is dropped
        pending_t *p = zhashx_lookup (self->pending, &id);
        if (p)
            pending_finish (self, p);
        set_error (err, AMAAS_DEADLINE_EXCEEDED, "no result for job %" PRIu64 " within %d ms", id,
                   self->timeout_ms);
    }
    return r;
}

void amaas_result_destroy (amaas_result_t **self_p)
{
    amaas_result_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_outputs; i++) {
        free ((char *)self->outputs[i].name);
        free ((void *)self->outputs[i].data);
    }
    free (self->outputs);
    free (self->model);
    free (self->version);
    free (self);
    *self_p = NULL;
}

const amaas_tensor_t *amaas_result_output (const amaas_result_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_outputs; i++)
        if (strcmp (self->outputs[i].name, name) == 0)
            return &self->outputs[i];
    return NULL;
}

int amaas_models (amaas_client_t *self, amaas_model_info_t *models, size_t max, amaas_error_t *err)
{
    uint64_t id = self->next_id++;
    zmsg_t *reply = NULL;
    if (send_command (self, CMD_MODELS, id) == 0)
        pump (self, 0, clock_now_ms () + self->timeout_ms, CMD_MODELS_REPLY, id, &reply);
    if (!reply) {
        set_error (err, AMAAS_UNAVAILABLE, "the broker did not answer within %d ms",
                   self->timeout_ms);
        return -1;
    }
    if (self->header.fields & HDR_CODE && self->header.code != AMAAS_OK) {
        set_error (err, (amaas_code_t)self->header.code, "%s", self->header.message);
        zmsg_destroy (&reply);
        return -1;
    }
    zmsg_destroy (&reply);
    //  self->header still holds the reply's header
    size_t n = self->header.n_models;
    for (size_t i = 0; i < n && i < max; i++) {
        snprintf (models[i].name, sizeof models[i].name, "%s", self->header.models[i].name);
        snprintf (models[i].version, sizeof models[i].version, "%s",
                  self->header.models[i].version);
        models[i].workers = self->header.models[i].workers;
        models[i].width = self->header.models[i].width;
    }
    codec_header_reset (&self->header);
    return (int)n;
}
