/*  client.c - libamaas: send inference jobs to an amaas broker.

    One DEALER socket per client.  amaas_send encodes a REQUEST and returns
    at once; amaas_recv takes the next REPLY.  Synchronous calls (predict,
    models) wait for their own answer and park any other reply that arrives
    meanwhile in a FIFO that amaas_recv serves first, so pipelined and
    synchronous use can be mixed on one client.
*/
#include "amaas.h"

#include <czmq.h>
#include <string.h>

#include "clock.h"
#include "codec.h"

struct amaas_client_t {
    zsock_t *sock;         //  DEALER to the broker's frontend
    int timeout_ms;        //  default wait
    uint64_t next_id;      //  id of the next job
    zlistx_t *parked;      //  amaas_result_t * received while waiting for another
    codec_header_t header; //  header of the message at hand
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

void amaas_set_timeout (amaas_client_t *self, int timeout_ms)
{
    self->timeout_ms = timeout_ms;
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

//  Waits up to timeout_ms for a message; NULL on timeout or interrupt.
static zmsg_t *wait_message (amaas_client_t *self, int64_t until_ms)
{
    while (true) {
        int64_t left = until_ms - clock_now_ms ();
        if (left < 0)
            left = 0;
        zmq_pollitem_t item = {zsock_resolve (self->sock), 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll (&item, 1, (long)left);
        if (rc > 0)
            return zmsg_recv (self->sock);
        if (rc < 0 && zmq_errno () == EINTR && left > 0)
            continue;
        return NULL;
    }
}

amaas_client_t *amaas_connect (const char *endpoint, int timeout_ms, amaas_error_t *err)
{
    amaas_client_t *self = calloc (1, sizeof *self);
    if (!self) {
        set_error (err, AMAAS_INTERNAL, "out of memory");
        return NULL;
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    self->next_id = 1;
    self->parked = zlistx_new ();
    self->sock = zsock_new (ZMQ_DEALER);
    if (!self->parked || !self->sock) {
        set_error (err, AMAAS_INTERNAL, "cannot create a ZeroMQ socket");
        goto err;
    }
    zlistx_set_destructor (self->parked, result_destructor);
    zsock_set_linger (self->sock, 0);
    zsock_set_sndhwm (self->sock, 0);
    zsock_set_rcvhwm (self->sock, 0);
    if (zsock_connect (self->sock, "%s", endpoint) == -1) {
        set_error (err, AMAAS_INVALID_ARGUMENT, "bad broker endpoint '%s': %s", endpoint,
                   zmq_strerror (zmq_errno ()));
        goto err;
    }
    //  ZeroMQ connects in the background: a PING proves the broker is there
    uint64_t id = self->next_id++;
    int64_t until = clock_now_ms () + self->timeout_ms;
    if (send_command (self, CMD_PING, id))
        goto unavailable;
    zmsg_t *msg;
    while ((msg = wait_message (self, until))) {
        codec_cmd_t cmd;
        zframe_t *payload;
        char why[CODEC_MESSAGE_MAX];
        int rc = codec_msg_parse (msg, &cmd, &self->header, &payload, why, sizeof why);
        zmsg_destroy (&msg);
        if (rc == 0 && cmd == CMD_PONG && self->header.id == id)
            return self;
    }
unavailable:
    set_error (err, AMAAS_UNAVAILABLE, "no amaas broker answered at %s within %d ms", endpoint,
               self->timeout_ms);
err:
    amaas_close (&self);
    return NULL;
}

void amaas_close (amaas_client_t **self_p)
{
    amaas_client_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->sock);
    zlistx_destroy (&self->parked);
    codec_header_reset (&self->header);
    free (self);
    *self_p = NULL;
}

uint64_t amaas_send (amaas_client_t *self, const char *model, const amaas_tensor_t *inputs,
                     size_t n_inputs, amaas_error_t *err)
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
    codec_tensor_t tensors[CODEC_MAX_TENSORS];
    for (size_t i = 0; i < n_inputs; i++) {
        const amaas_tensor_t *in = &inputs[i];
        codec_tensor_t *t = &tensors[i];
        if (in->ndim < 1 || in->ndim > AMAAS_MAX_DIMS || !in->name ||
            amaas_dtype_name (in->datatype) == amaas_dtype_name (AMAAS_DTYPE_INVALID)) {
            set_error (err, AMAAS_INVALID_ARGUMENT,
                       "input %zu needs a name, a datatype and 1..%d dimensions", i,
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
    zframe_t *payload = codec_tensors_encode (tensors, n_inputs);
    codec_header_t *h = &self->header;
    codec_header_reset (h);
    h->fields = HDR_ID;
    h->id = self->next_id++;
    codec_header_set_model (h, model);
    zmsg_t *msg = codec_msg_new (CMD_REQUEST, h, &payload);
    zframe_destroy (&payload);
    if (!msg || zmsg_send (&msg, self->sock)) {
        zmsg_destroy (&msg);
        set_error (err, AMAAS_UNAVAILABLE, "cannot send the job: %s", zmq_strerror (zmq_errno ()));
        return 0;
    }
    return h->id;
}

//  Builds a result from a REPLY (or ERROR) message.  NULL on out-of-memory
//  or for a message that is not a reply.
static amaas_result_t *result_from (amaas_client_t *self, zmsg_t *msg)
{
    codec_cmd_t cmd;
    zframe_t *payload;
    char why[CODEC_MESSAGE_MAX];
    codec_header_t *h = &self->header;
    amaas_result_t *result = NULL;
    if (codec_msg_parse (msg, &cmd, h, &payload, why, sizeof why))
        return NULL;
    if (cmd != CMD_REPLY && cmd != CMD_ERROR)
        return NULL;
    result = calloc (1, sizeof *result);
    if (!result)
        return NULL;
    result->id = h->id;
    result->error.code = (amaas_code_t)h->code;
    snprintf (result->error.message, sizeof result->error.message, "%s", h->message);
    result->model = strdup (h->model);
    result->version = strdup (h->version);
    result->queue_us = h->queue_us;
    result->compute_us = h->compute_us;
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

amaas_result_t *amaas_recv (amaas_client_t *self, int timeout_ms, amaas_error_t *err)
{
    amaas_result_t *result = zlistx_detach (self->parked, NULL);
    if (result)
        return result;
    if (timeout_ms < 0)
        timeout_ms = self->timeout_ms;
    int64_t until = clock_now_ms () + timeout_ms;
    zmsg_t *msg;
    while ((msg = wait_message (self, until))) {
        result = result_from (self, msg);
        zmsg_destroy (&msg);
        if (result)
            return result;
    }
    set_error (err, AMAAS_DEADLINE_EXCEEDED, "no result within %d ms", timeout_ms);
    return NULL;
}

//  Waits for the REPLY to job `id`, parking others.
static amaas_result_t *wait_for (amaas_client_t *self, uint64_t id, amaas_error_t *err)
{
    for (amaas_result_t *r = zlistx_first (self->parked); r; r = zlistx_next (self->parked))
        if (r->id == id)
            return zlistx_detach_cur (self->parked);
    int64_t until = clock_now_ms () + self->timeout_ms;
    zmsg_t *msg;
    while ((msg = wait_message (self, until))) {
        amaas_result_t *result = result_from (self, msg);
        zmsg_destroy (&msg);
        if (!result)
            continue;
        //  A protocol ERROR without id is about the last thing we sent
        if (result->id == id || result->id == 0) {
            result->id = id;
            return result;
        }
        zlistx_add_end (self->parked, result);
    }
    set_error (err, AMAAS_DEADLINE_EXCEEDED, "no result for job %" PRIu64 " within %d ms", id,
               self->timeout_ms);
    return NULL;
}

amaas_result_t *amaas_predict (amaas_client_t *self, const char *model,
                               const amaas_tensor_t *inputs, size_t n_inputs, amaas_error_t *err)
{
    uint64_t id = amaas_send (self, model, inputs, n_inputs, err);
    return id ? wait_for (self, id, err) : NULL;
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
    if (send_command (self, CMD_MODELS, id)) {
        set_error (err, AMAAS_UNAVAILABLE, "cannot send to the broker");
        return -1;
    }
    int64_t until = clock_now_ms () + self->timeout_ms;
    zmsg_t *msg;
    while ((msg = wait_message (self, until))) {
        codec_cmd_t cmd;
        zframe_t *payload;
        char why[CODEC_MESSAGE_MAX];
        if (codec_msg_parse (msg, &cmd, &self->header, &payload, why, sizeof why) == 0 &&
            cmd == CMD_MODELS_REPLY && self->header.id == id) {
            zmsg_destroy (&msg);
            size_t n = self->header.n_models;
            for (size_t i = 0; i < n && i < max; i++) {
                snprintf (models[i].name, sizeof models[i].name, "%s", self->header.models[i].name);
                snprintf (models[i].version, sizeof models[i].version, "%s",
                          self->header.models[i].version);
                models[i].workers = self->header.models[i].workers;
            }
            codec_header_reset (&self->header);
            return (int)n;
        }
        //  A job's reply that came meanwhile: keep it for amaas_recv
        zmsg_first (msg);
        amaas_result_t *result = result_from (self, msg);
        if (result)
            zlistx_add_end (self->parked, result);
        zmsg_destroy (&msg);
    }
    set_error (err, AMAAS_UNAVAILABLE, "the broker did not answer within %d ms", self->timeout_ms);
    return -1;
}
