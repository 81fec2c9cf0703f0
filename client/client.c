/*  client.c - libamaas: send inference jobs to an amaas broker.

    One DEALER socket per client.  Every job sent is remembered as pending,
    with its encoded inputs, until its result is handed to the caller: that
    is what lets the library send it again, with the same id, when the
    broker it went to is gone (docs/PROTOCOL.md, "A client's jobs"), and
    drop a second answer to a job already answered.  A job is never resent
    because it is merely slow: it waits as long as its deadline allows.

    Whether the broker still holds the jobs is known from its epoch: while
    jobs are pending, the client PINGs every heartbeat interval, and the
    PONG carries an epoch that changes when the broker restarts or the
    connection is a new one (after which the broker cannot answer what was
    sent before).  A new epoch makes the client send every pending job
    again; the broker attaches a job it still has (same session and id) to
    the new connection rather than compute it twice.  UNAVAILABLE (a worker
    lost) is sent again after a backoff.  A job whose deadline passes is
    answered DEADLINE_EXCEEDED by the library, which tells the broker
    (CANCEL), as amaas_cancel does.

    When to do each of these is decided by retry.c, which knows no socket:
    this file tells it what happened and does what it answers (send a
    PING, resend a job, fail one whose deadline passed).  Pending jobs sit
    in a table by id (util/idmap) and, through the retry_job_t each
    embeds, in the retry module's timer lists.

    Several brokers (an endpoint "EP1,EP2,..."; all active): one DEALER
    to each.  A job goes to the next broker that answers, in turn, so jobs
    spread over the brokers the client can reach.  Each broker is PINGed
    with the others; one that misses LIVENESS PINGs in a row while another
    answers is taken as gone: the jobs waiting at it are sent again at
    once, to the others, as after a new epoch (the brokers dedupe them the
    same way, and a late second answer is dropped).  One that answers again
    is used again.  With one broker this is the single-broker behaviour:
    its jobs wait for it (and its new epoch) until their deadlines.

    All waiting goes through s_pump(), which reads the sockets, fires the
    retry timers, and parks results that nobody asked for yet in a FIFO that
    amaas_recv serves first; so pipelined and synchronous calls mix freely
    on one client.  A result is allocated as a held_result_t, the public
    amaas_result_t and the node that links it into that FIFO, so the public
    struct carries nothing of the library's.

    The path of a job allocates only its payload and its result: finished
    pending jobs are kept for reuse, the inputs are packed into a buffer
    reused from job to job, each attempt shares the payload with libzmq by
    reference, replies are read as zmq_msg_t frames without czmq objects,
    and a result is one block (the caller frees it with
    amaas_result_destroy).  The socket is read without a poll while
    messages are waiting; s_pump polls only when there is nothing to read.
*/
#include "amaas.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include "amaas_defs.h"
#include "clock.h"
#include "codec.h"
#include "curve.h"
#include "idmap.h"
#include "list.h"
#include "retry.h"

//  amaas_models copies the protocol's metadata into the public struct
_Static_assert(AMAAS_MAX_OUTPUTS == DEFS_OUTPUTS_MAX, "amaas.h and defs agree on outputs");
_Static_assert(sizeof ((amaas_model_info_t *)0)->input == CODEC_TENSOR_NAME_MAX,
               "amaas_model_info_t.input holds a tensor name");
_Static_assert(sizeof ((amaas_output_info_t *)0)->name == CODEC_TENSOR_NAME_MAX,
               "amaas_output_info_t.name holds a tensor name");

//  A job sent and not yet handed to the caller, or kept for reuse
typedef struct {
    uint64_t id;                     //  job id, also the table key
    char model[CODEC_NAME_MAX];      //  model name
    size_t model_len;                //  its length
    char version[CODEC_VERSION_MAX]; //  required version, or ""
    uint32_t priority;               //  0..3
    uint32_t deadline_ms;            //  lifetime from the first send
    zmq_msg_t payload;               //  encoded inputs, kept for resends
    retry_job_t retry;               //  its timers, tracked while pending
    list_node_t node;                //  in the pool when finished
    list_node_t at;                  //  in its broker's jobs while pending
    size_t broker;                   //  the broker it was last sent to
} pending_t;

#define LIVENESS 3 //  PINGs a broker misses in a row before it counts as gone

//  One broker of the list, and the DEALER to it
typedef struct {
    zsock_t *sock;      //  DEALER to its frontend
    void *socket;       //  its libzmq socket
    int fd;             //  its ZMQ_FD
    char endpoint[256]; //  its frontend
    uint64_t epoch;     //  its epoch, 0 before its first PONG
    int unanswered;     //  PINGs sent to it since its last message
    bool up;            //  it answered since it last counted as gone
    list_t jobs;        //  pending jobs last sent to it (pending_t.at)
} broker_t;

//  A result as the library allocates it: the caller's amaas_result_t and
//  the link of the parked FIFO, then the outputs (s_result_new)
typedef struct {
    amaas_result_t result; //  what the caller gets
    list_node_t node;      //  in the client's parked FIFO while parked
} held_result_t;

struct amaas_client_t {
    broker_t brokers[DEFS_BROKERS_MAX]; //  the brokers
    size_t n_brokers;                   //  how many
    size_t next_broker;                 //  where the next job goes, if that one is up
    size_t next_read;                   //  the socket read first next time
    int fd;                 //  the broker's ZMQ_FD, or with several an epoll fd of theirs
    int timeout_ms;         //  default wait of recv and predict, and job lifetime
    retry_t retry;          //  deadlines, PINGs, resends of the pending jobs
    uint64_t next_ping_id;  //  id of the next PING, from 2^63 up
    uint64_t session;       //  random: tells the broker our jobs from others'
    uint64_t next_id;       //  id of the next job
    idmap_t *pending;       //  pending_t * by id
    list_t pool;            //  finished pending_t's for reuse, the latest first
    list_t parked;          //  held_result_t's ready for the caller, oldest first
    codec_frames_t frames;  //  message at hand
    codec_header_t header;  //  header of the message at hand
    codec_header_t out;     //  header of the message being sent
    msgpack_sbuffer packed; //  inputs being encoded, reused
    uint64_t duplicates;    //  answers dropped as duplicates
};

static void s_set_error (amaas_error_t *err, amaas_code_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Fills err, if not NULL.  Cannot fail.
static void s_set_error (amaas_error_t *err, amaas_code_t code, const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err->message, sizeof err->message, fmt, args);
    va_end (args);
}

//  --------------------------------------------------------------------------
//  Pending jobs by id, in an idmap (filed under the id itself)

static bool s_pending_is (const void *item, const void *id)
{
    return ((const pending_t *)item)->id == *(const uint64_t *)id;
}

//  The pending job `id`, or NULL.
static pending_t *s_pending_find (const amaas_client_t *self, uint64_t id)
{
    return idmap_find (self->pending, id, s_pending_is, &id);
}

//  --------------------------------------------------------------------------
//  Results

//  A result in one block, a held_result_t with its outputs' data (each
//  aligned for any type) and strings after it, parked nowhere; outs may be
//  NULL when n is 0.  Error code AMAAS_OK and an empty message.  NULL on
//  out-of-memory.
static amaas_result_t *s_result_new (uint64_t id, const char *model, const char *version,
                                     const codec_tensor_t *outs, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    size_t model_len = strlen (model), version_len = strlen (version);
    size_t at = sizeof (held_result_t) + n * sizeof (amaas_tensor_t);
    size_t text = model_len + 1 + version_len + 1;
    for (size_t i = 0; i < n; i++) {
        at = (at + align - 1) / align * align + outs[i].size;
        text += outs[i].name_len + 1;
    }
    char *block = malloc (at + text);
    if (!block)
        return NULL;
    held_result_t *held = (held_result_t *)block;
    memset (held, 0, sizeof *held);
    list_node_init (&held->node);
    amaas_result_t *r = &held->result;
    r->id = id;
    r->n_outputs = n;
    r->outputs = n ? (amaas_tensor_t *)(block + sizeof *held) : NULL;
    at = sizeof (held_result_t) + n * sizeof (amaas_tensor_t);
    char *string = block + at;
    for (size_t i = 0; i < n; i++) {
        at = (at + align - 1) / align * align;
        if (outs[i].size)
            memcpy (block + at, outs[i].data, outs[i].size);
        amaas_tensor_t *t = &r->outputs[i];
        t->data = block + at;
        t->size = outs[i].size;
        t->datatype = outs[i].datatype;
        t->ndim = outs[i].ndim;
        memcpy (t->shape, outs[i].shape, sizeof t->shape);
        at += outs[i].size;
        string = block + at;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy (string, outs[i].name, outs[i].name_len);
        string[outs[i].name_len] = 0;
        r->outputs[i].name = string;
        string += outs[i].name_len + 1;
    }
    r->model = memcpy (string, model, model_len + 1);
    r->version = memcpy (string + model_len + 1, version, version_len + 1);
    return r;
}

//  A result made by the library itself (no answer from the service).  NULL
//  on out-of-memory.
static amaas_result_t *s_local_result (const pending_t *p, amaas_code_t code, const char *message)
{
    amaas_result_t *r = s_result_new (p->id, p->model, "", NULL, 0);
    if (!r)
        return NULL;
    r->error.code = code;
    snprintf (r->error.message, sizeof r->error.message, "%s", message);
    return r;
}

//  Builds a result from the REPLY (or ERROR) whose header is self->header
//  and whose payload, if any, is `payload`.  NULL on out-of-memory.
static amaas_result_t *s_result_from (amaas_client_t *self, zmq_msg_t *payload)
{
    codec_header_t *h = &self->header;
    codec_tensor_t outs[CODEC_MAX_TENSORS];
    char why[CODEC_MESSAGE_MAX];
    int n = 0;
    if (h->code == AMAAS_OK && payload)
        n = codec_tensors_decode (zmq_msg_data (payload), zmq_msg_size (payload), outs,
                                  CODEC_MAX_TENSORS, UINT64_MAX / 16, why, sizeof why);
    amaas_result_t *result =
        s_result_new (h->id, h->model, h->version, outs, n > 0 ? (size_t)n : 0);
    if (!result) {
        //  Out of memory for the outputs: say so, if memory allows that
        result = s_result_new (h->id, h->model, h->version, NULL, 0);
        if (!result)
            return NULL;
        n = 0;
        h->code = AMAAS_INTERNAL;
        snprintf (h->message, sizeof h->message, "client out of memory");
    }
    result->error.code = (amaas_code_t)h->code;
    memcpy (result->error.message, h->message, strnlen (h->message, sizeof h->message - 1));
    result->queue_us = h->queue_us;
    result->compute_us = h->compute_us;
    result->batch = h->batch;
    if (n < 0) {
        result->error.code = AMAAS_INTERNAL;
        snprintf (result->error.message, sizeof result->error.message,
                  "the broker sent outputs the client cannot read: %.200s", why);
    }
    return result;
}

//  Parks a result (not parked yet) at the end of the FIFO, for the
//  caller.  Cannot fail.
static void s_park (amaas_client_t *self, amaas_result_t *r)
{
    held_result_t *held = LIST_ITEM (r, held_result_t, result);
    list_append (&self->parked, &held->node);
}

//  Takes the parked result of job `id` (0: the oldest of any), or NULL.
//  Cannot fail.
static amaas_result_t *s_take_parked (amaas_client_t *self, uint64_t id)
{
    for (list_node_t *node = list_first (&self->parked); node;
         node = list_next (&self->parked, node)) {
        held_result_t *held = LIST_ITEM (node, held_result_t, node);
        if (id == 0 || held->result.id == id) {
            list_remove (&self->parked, node);
            return &held->result;
        }
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Jobs

void amaas_set_timeout (amaas_client_t *self, int timeout_ms)
{
    assert (self);
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
}

void amaas_set_retry (amaas_client_t *self, int attempts, int heartbeat_ms)
{
    assert (self);
    retry_set (&self->retry, attempts, heartbeat_ms);
}

size_t amaas_pending (const amaas_client_t *self)
{
    assert (self);
    return idmap_size (self->pending);
}

void amaas_stats (const amaas_client_t *self, uint64_t *resent, uint64_t *duplicates)
{
    assert (self);
    if (resent)
        *resent = self->retry.resent;
    if (duplicates)
        *duplicates = self->duplicates;
}

//  The broker the next job goes to: the next in turn that answers, or,
//  when none does, the one numbered `fallback`.  Cannot fail.
static broker_t *s_pick (amaas_client_t *self, size_t fallback)
{
    for (size_t k = 0; k < self->n_brokers; k++) {
        size_t i = (self->next_broker + k) % self->n_brokers;
        if (self->brokers[i].up) {
            self->next_broker = (i + 1) % self->n_brokers;
            return &self->brokers[i];
        }
    }
    return &self->brokers[fallback < self->n_brokers ? fallback : 0];
}

//  Sends a header-only command to a broker.  Returns 0, -1 if libzmq
//  refused it.
static int s_send_command (amaas_client_t *self, broker_t *broker, codec_cmd_t cmd, uint64_t id)
{
    codec_header_t *h = &self->out;
    h->fields = HDR_ID;
    h->id = id;
    if (cmd == CMD_CANCEL) {
        h->fields |= HDR_SESSION;
        h->session = self->session;
    }
    return codec_send_frames (broker->socket, NULL, 0, cmd, h, NULL);
}

//  Forgets a pending job and keeps it for reuse.  Cannot fail.
static void s_pending_finish (amaas_client_t *self, pending_t *p)
{
    retry_job_stop (&self->retry, &p->retry);
    if (list_node_linked (&p->at))
        list_remove (&self->brokers[p->broker].jobs, &p->at);
    int rc = idmap_delete (self->pending, p->id, p);
    assert (rc == 0);
    (void)rc;
    zmq_msg_close (&p->payload);
    list_prepend (&self->pool, &p->node);
    assert (idmap_size (self->pending) == retry_jobs (&self->retry));
}

//  The job ends here with a result the library made, parked for the
//  caller (none if memory is out).  Cannot fail.
static void s_pending_fail (amaas_client_t *self, pending_t *p, amaas_code_t code,
                            const char *message)
{
    amaas_result_t *r = s_local_result (p, code, message);
    if (r)
        s_park (self, r);
    s_pending_finish (self, p);
}

//  Sends one attempt of a pending job, in the caller's hands
//  (RETRY_SENDING), at `now`, before its deadline, to the next broker in
//  turn that answers.  The deadline counts
//  from the first attempt: a resend carries what is left of it.  A send
//  that fails (it cannot, with no high-water mark, short of out-of-memory)
//  is handled like a lost attempt: it times out.  Cannot fail.
static void s_send_attempt (amaas_client_t *self, pending_t *p, int64_t now)
{
    codec_header_t *h = &self->out;
    h->fields = HDR_ID | HDR_MODEL | HDR_SESSION | HDR_DEADLINE_MS;
    h->id = p->id;
    h->session = self->session;
    memcpy (h->model, p->model, p->model_len + 1);
    if (*p->version) {
        h->fields |= HDR_VERSION;
        snprintf (h->version, sizeof h->version, "%s", p->version);
    }
    if (p->priority) {
        h->fields |= HDR_PRIORITY;
        h->priority = p->priority;
    }
    h->deadline_ms = retry_job_sent (&self->retry, &p->retry, now);
    broker_t *broker = s_pick (self, p->broker);
    if (list_node_linked (&p->at))
        list_remove (&self->brokers[p->broker].jobs, &p->at);
    list_append (&broker->jobs, &p->at);
    p->broker = (size_t)(broker - self->brokers);
    codec_send_frames (broker->socket, NULL, 0, CMD_REQUEST, h, &p->payload);
}

//  The jobs waiting for an answer from `broker` are due to be sent again
//  (s_on_timers sends them).  Cannot fail.
static void s_lose_jobs (amaas_client_t *self, broker_t *broker)
{
    for (list_node_t *node = list_first (&broker->jobs); node;
         node = list_next (&broker->jobs, node))
        retry_job_lost (&self->retry, &LIST_ITEM (node, pending_t, at)->retry);
}

//  While another broker answers, the jobs at brokers that count as gone
//  are due to be sent again.  Returns true if one answers.  Cannot fail.
static bool s_lose_jobs_of_gone (amaas_client_t *self)
{
    bool any = false;
    for (size_t i = 0; i < self->n_brokers; i++)
        any = any || self->brokers[i].up;
    for (size_t i = 0; any && i < self->n_brokers; i++)
        if (!self->brokers[i].up)
            s_lose_jobs (self, &self->brokers[i]);
    return any;
}

//  A heartbeat while jobs are pending: a broker that missed LIVENESS PINGs
//  in a row counts as gone (its jobs go to the others, if one answers),
//  and every broker is PINGed, for its epoch.  Cannot fail.
static void s_ping_brokers (amaas_client_t *self)
{
    for (size_t i = 0; i < self->n_brokers; i++)
        if (self->brokers[i].unanswered >= LIVENESS)
            self->brokers[i].up = false;
    s_lose_jobs_of_gone (self);
    for (size_t i = 0; i < self->n_brokers; i++) {
        //  Ids of their own, so that job ids stay consecutive
        s_send_command (self, &self->brokers[i], CMD_PING, self->next_ping_id++);
        self->brokers[i].unanswered++;
    }
}

//  Does what the retry timers say is due at `now`: resend a job after a
//  backoff or a new epoch, give one up at its deadline (and tell the
//  broker) or when the broker lost it once too often, PING the broker for
//  its epoch.  Cannot fail.
static void s_on_timers (amaas_client_t *self, int64_t now)
{
    retry_action_t action;
    retry_job_t *job;
    while ((action = retry_next (&self->retry, now, &job)) != RETRY_IDLE) {
        pending_t *p = LIST_ITEM (job, pending_t, retry);
        char message[CODEC_MESSAGE_MAX];
        switch (action) {
        case RETRY_PING: s_ping_brokers (self); break;
        case RETRY_RESEND: s_send_attempt (self, p, now); break;
        case RETRY_EXPIRED: {
            snprintf (message, sizeof message,
                      "no answer within the job's deadline of %u ms; the broker was told to "
                      "drop it",
                      p->retry.deadline_ms);
            uint64_t id = p->id;
            broker_t *broker = &self->brokers[p->broker];
            s_pending_fail (self, p, AMAAS_DEADLINE_EXCEEDED, message);
            s_send_command (self, broker, CMD_CANCEL, id);
            break;
        }
        case RETRY_EXHAUSTED:
            snprintf (message, sizeof message,
                      "the broker restarted or the connection was replaced; the job was sent "
                      "%d time%s, the most allowed: retry",
                      p->retry.attempts, p->retry.attempts == 1 ? "" : "s");
            s_pending_fail (self, p, AMAAS_UNAVAILABLE, message);
            break;
        case RETRY_IDLE: break;
        }
    }
}

//  A REPLY or ERROR arrived, its header in self->header: hand it on, retry
//  it, or drop it as a duplicate.  Cannot fail.
static void s_on_reply (amaas_client_t *self, zmq_msg_t *payload)
{
    pending_t *p = s_pending_find (self, self->header.id);
    if (!p) {
        //  An answer to a job already answered (a resend crossed a late
        //  answer), given up, or to nothing we sent: never shown to the
        //  caller
        if (self->header.code != AMAAS_CANCELLED)
            self->duplicates++;
        return;
    }
    //  Worker lost, broker restarting: try again after a backoff, if the
    //  job has attempts left
    if (self->header.code == AMAAS_UNAVAILABLE &&
        retry_job_unavailable (&self->retry, &p->retry, clock_now_ms ()))
        return;
    amaas_result_t *result = s_result_from (self, payload);
    if (result)
        s_park (self, result);
    s_pending_finish (self, p);
}

//  Handles the message in self->frames, from `broker`, then releases it.
//  Returns true if it is the control answer waited for (ctl_cmd with id
//  ctl_id, or an ERROR), its header left in self->header.  Cannot fail.
static bool s_on_message (amaas_client_t *self, broker_t *broker, codec_cmd_t ctl_cmd,
                          uint64_t ctl_id)
{
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    char why[CODEC_MESSAGE_MAX];
    bool answer = false;
    broker->unanswered = 0;
    if (!broker->up) {
        //  It answers (again): the jobs at brokers gone go to it
        broker->up = true;
        if (self->n_brokers > 1) {
            s_lose_jobs_of_gone (self);
            s_on_timers (self, clock_now_ms ());
        }
    }
    if (codec_frames_parse (&self->frames, 0, &cmd, &self->header, &payload, why, sizeof why) ==
        0) {
        //  A new epoch: the broker restarted or our connection is a new
        //  one, so what we sent it before may be lost and its answers could
        //  not reach us; those jobs are resent at once
        if (cmd == CMD_PONG && (self->header.fields & HDR_EPOCH) && self->header.epoch) {
            uint64_t before = broker->epoch;
            broker->epoch = self->header.epoch;
            if (before && before != broker->epoch) {
                s_lose_jobs (self, broker);
                s_on_timers (self, clock_now_ms ());
            }
        }
        //  An ERROR while waiting for a control answer is the answer: the
        //  broker refused what we sent (e.g. our key)
        if (ctl_cmd && ((cmd == ctl_cmd && self->header.id == ctl_id) || cmd == CMD_ERROR))
            answer = true;
        else if (cmd == CMD_REPLY || cmd == CMD_ERROR)
            s_on_reply (self, payload);
    }
    codec_frames_close (&self->frames);
    return answer;
}

//  Reads the socket and runs the timers until a result for `id` (0: any
//  job) is ready, or, when ctl_cmd is set, until a message of that command
//  with id ctl_id arrives (then *answered is set, and its header is in
//  self->header), or for timeout_ms.  Returns the result, or NULL if none
//  came (a control answer, the time is up, or the socket failed).
//
//  A message waiting is read at once.  Only when a read finds none does
//  s_pump wait, in poll(2) on the socket's ZMQ_FD: that read has taken in
//  libzmq's pending commands, so the FD signals the next message (zmq_poll
//  would cost several more system calls per wait).
static amaas_result_t *s_pump (amaas_client_t *self, uint64_t id, int timeout_ms,
                               codec_cmd_t ctl_cmd, uint64_t ctl_id, bool *answered)
{
    assert (self);
    assert (!ctl_cmd || answered);
    int64_t now = clock_now_ms ();
    int64_t until_ms = now + timeout_ms;
    while (true) {
        s_on_timers (self, now);
        assert (idmap_size (self->pending) == retry_jobs (&self->retry));
        if (!ctl_cmd) {
            amaas_result_t *r = s_take_parked (self, id);
            if (r)
                return r;
        }
        //  A message waiting is read even when the time is up, so that a
        //  timeout of 0 takes in every message already there; the brokers'
        //  sockets take turns to be read first
        broker_t *from = NULL;
        int error = EAGAIN;
        for (size_t k = 0; k < self->n_brokers && !from && error == EAGAIN; k++) {
            broker_t *broker = &self->brokers[(self->next_read + k) % self->n_brokers];
            if (codec_frames_recv (&self->frames, broker->socket) == 0)
                from = broker;
            else
                error = zmq_errno ();
        }
        if (self->n_brokers > 1)
            self->next_read = (self->next_read + 1) % self->n_brokers;
        if (from) {
            if (s_on_message (self, from, ctl_cmd, ctl_id)) {
                *answered = true;
                return NULL;
            }
        } else if (error == EAGAIN) {
            if (now >= until_ms)
                return NULL;
            int64_t wake = retry_wake_ms (&self->retry);
            if (wake > until_ms)
                wake = until_ms;
            struct pollfd item = {self->fd, POLLIN, 0};
            if (poll (&item, 1, (int)(wake > now ? wake - now : 0)) < 0 && errno != EINTR)
                return NULL;
        } else if (error != EINTR || now >= until_ms)
            return NULL;
        now = clock_now_ms ();
    }
}

//  Connects, over CURVE when the certificates are given.  On error, NULL
//  is returned and err says why.
static amaas_client_t *s_connect_with (const char *endpoint, int timeout_ms,
                                       const char *server_cert, const char *cert,
                                       amaas_error_t *err)
{
    amaas_client_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_set_error (err, AMAAS_INTERNAL, "out of memory");
        return NULL;
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    retry_init (&self->retry, 3, 1000);
    list_init (&self->pool);
    list_init (&self->parked);
    self->next_id = 1;
    self->next_ping_id = 1ULL << 63;
    if (getrandom (&self->session, sizeof self->session, 0) != sizeof self->session)
        self->session = (uint64_t)clock_now_us () ^ ((uint64_t)getpid () << 32);
    self->session |= 1; //  never 0
    msgpack_sbuffer_init (&self->packed);
    self->fd = -1;
    self->pending = idmap_new ();
    if (!self->pending) {
        s_set_error (err, AMAAS_INTERNAL, "out of memory");
        goto err;
    }
    //  One DEALER per broker of the comma-separated list
    for (const char *at = endpoint;;) {
        size_t len = strcspn (at, ",");
        if (self->n_brokers == DEFS_BROKERS_MAX || len == 0 ||
            len >= sizeof self->brokers[0].endpoint) {
            s_set_error (err, AMAAS_INVALID_ARGUMENT,
                         "bad broker list '%.300s': 1..%d endpoints, separated by commas", endpoint,
                         DEFS_BROKERS_MAX);
            goto err;
        }
        broker_t *broker = &self->brokers[self->n_brokers++];
        memcpy (broker->endpoint, at, len);
        broker->endpoint[len] = 0;
        list_init (&broker->jobs);
        broker->sock = zsock_new (ZMQ_DEALER);
        if (!broker->sock) {
            s_set_error (err, AMAAS_INTERNAL, "cannot create a ZeroMQ socket");
            goto err;
        }
        broker->socket = zsock_resolve (broker->sock);
        broker->fd = zsock_fd (broker->sock);
        zsock_set_linger (broker->sock, 0);
        zsock_set_sndhwm (broker->sock, 0);
        zsock_set_rcvhwm (broker->sock, 0);
        char why[512];
        if ((server_cert || cert) &&
            curve_client_apply (broker->sock, server_cert, cert, why, sizeof why)) {
            s_set_error (err, AMAAS_INVALID_ARGUMENT, "%s", why);
            goto err;
        }
        if (zsock_connect (broker->sock, "%s", broker->endpoint) == -1) {
            s_set_error (err, AMAAS_INVALID_ARGUMENT, "bad broker endpoint '%s': %s",
                         broker->endpoint, zmq_strerror (zmq_errno ()));
            goto err;
        }
        if (at[len] == 0)
            break;
        at += len + 1;
    }
    //  One fd to wait on: the broker's, or an epoll set of the brokers'
    if (self->n_brokers == 1)
        self->fd = self->brokers[0].fd;
    else {
        self->fd = epoll_create1 (EPOLL_CLOEXEC);
        for (size_t i = 0; self->fd != -1 && i < self->n_brokers; i++) {
            struct epoll_event event = {.events = EPOLLIN, .data.u64 = i};
            if (epoll_ctl (self->fd, EPOLL_CTL_ADD, self->brokers[i].fd, &event)) {
                close (self->fd);
                self->fd = -1;
            }
        }
        if (self->fd == -1) {
            s_set_error (err, AMAAS_INTERNAL, "cannot make an epoll set: %s", strerror (errno));
            goto err;
        }
    }
    //  ZeroMQ connects in the background: a PING proves a broker is there;
    //  the first PONG will do (the others count their brokers in as they come)
    uint64_t id = self->next_id++;
    bool pong = false, sent = false;
    for (size_t i = 0; i < self->n_brokers; i++)
        sent |= s_send_command (self, &self->brokers[i], CMD_PING, id) == 0;
    if (sent)
        s_pump (self, 0, self->timeout_ms, CMD_PONG, id, &pong);
    if (pong && self->header.fields & HDR_CODE && self->header.code != AMAAS_OK) {
        s_set_error (err, (amaas_code_t)self->header.code, "%s", self->header.message);
        goto err;
    }
    if (pong)
        return self;
    s_set_error (err, AMAAS_UNAVAILABLE, "no amaas broker answered at %.300s within %d ms",
                 endpoint, self->timeout_ms);
err:
    amaas_close (&self);
    return NULL;
}

amaas_client_t *amaas_connect (const char *endpoint, int timeout_ms, amaas_error_t *err)
{
    return s_connect_with (endpoint, timeout_ms, NULL, NULL, err);
}

amaas_client_t *amaas_connect_curve (const char *endpoint, int timeout_ms, const char *server_cert,
                                     const char *cert, amaas_error_t *err)
{
    if (!server_cert || !cert) {
        s_set_error (err, AMAAS_INVALID_ARGUMENT,
                     "CURVE needs the broker's public certificate and a key pair");
        return NULL;
    }
    return s_connect_with (endpoint, timeout_ms, server_cert, cert, err);
}

void amaas_close (amaas_client_t **self_p)
{
    assert (self_p);
    amaas_client_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_brokers; i++)
        zsock_destroy (&self->brokers[i].sock);
    if (self->n_brokers > 1 && self->fd != -1)
        close (self->fd);
    size_t cursor = 0;
    pending_t *p;
    while (self->pending && (p = idmap_next (self->pending, &cursor))) {
        zmq_msg_close (&p->payload);
        free (p);
    }
    idmap_destroy (&self->pending);
    list_node_t *node;
    while ((node = list_pop_first (&self->pool)))
        free (LIST_ITEM (node, pending_t, node));
    amaas_result_t *r;
    while ((r = s_take_parked (self, 0)))
        amaas_result_destroy (&r);
    msgpack_sbuffer_destroy (&self->packed);
    codec_header_reset (&self->header);
    free (self);
    *self_p = NULL;
}

uint64_t amaas_send_opts (amaas_client_t *self, const char *model, const amaas_tensor_t *inputs,
                          size_t n_inputs, const amaas_options_t *opts, amaas_error_t *err)
{
    assert (self);
    size_t model_len = model ? strlen (model) : 0;
    if (model_len == 0 || model_len >= CODEC_NAME_MAX) {
        s_set_error (err, AMAAS_INVALID_ARGUMENT, "model name must be 1..%d bytes",
                     CODEC_NAME_MAX - 1);
        return 0;
    }
    if (n_inputs == 0 || n_inputs > CODEC_MAX_TENSORS) {
        s_set_error (err, AMAAS_INVALID_ARGUMENT, "a job takes 1..%d input tensors",
                     CODEC_MAX_TENSORS);
        return 0;
    }
    if (opts &&
        (opts->priority >= CODEC_PRIORITIES ||
         (opts->version && (!*opts->version || strlen (opts->version) >= CODEC_VERSION_MAX)))) {
        s_set_error (err, AMAAS_INVALID_ARGUMENT,
                     "options: priority must be 0..%d, version 1..%d bytes", CODEC_PRIORITIES - 1,
                     CODEC_VERSION_MAX - 1);
        return 0;
    }
    codec_tensor_t tensors[CODEC_MAX_TENSORS];
    for (size_t i = 0; i < n_inputs; i++) {
        const amaas_tensor_t *in = &inputs[i];
        codec_tensor_t *t = &tensors[i];
        size_t name_len = in->name ? strlen (in->name) : 0;
        if (in->ndim < 1 || in->ndim > AMAAS_MAX_DIMS || name_len == 0 ||
            name_len >= CODEC_NAME_MAX || in->datatype <= AMAAS_DTYPE_INVALID ||
            in->datatype > AMAAS_BYTES || (in->size && !in->data)) {
            s_set_error (err, AMAAS_INVALID_ARGUMENT,
                         "input %zu needs a name, a datatype, 1..%d dimensions and its data", i,
                         AMAAS_MAX_DIMS);
            return 0;
        }
        t->name = in->name;
        t->name_len = name_len;
        t->datatype = in->datatype;
        t->ndim = in->ndim;
        memcpy (t->shape, in->shape, sizeof t->shape);
        t->elements = 0;
        t->data = in->data;
        t->size = in->size;
    }
    //  Encode into the reused buffer, then into the payload the job keeps
    self->packed.size = 0;
    pending_t *p = LIST_ITEM (list_pop_first (&self->pool), pending_t, node);
    if (!p && (p = malloc (sizeof *p))) {
        list_node_init (&p->node);
        list_node_init (&p->at);
        p->broker = 0;
        p->retry.state = RETRY_UNTRACKED;
    }
    if (!p || codec_tensors_pack (tensors, n_inputs, &self->packed) ||
        zmq_msg_init_size (&p->payload, self->packed.size)) {
        if (p)
            list_prepend (&self->pool, &p->node);
        s_set_error (err, AMAAS_INTERNAL, "out of memory");
        return 0;
    }
    assert (p->retry.state == RETRY_UNTRACKED);
    memcpy (zmq_msg_data (&p->payload), self->packed.data, self->packed.size);
    p->id = self->next_id;
    if (idmap_insert (self->pending, self->next_id, p)) {
        zmq_msg_close (&p->payload);
        list_prepend (&self->pool, &p->node);
        s_set_error (err, AMAAS_INTERNAL, "out of memory");
        return 0;
    }
    self->next_id++;
    memcpy (p->model, model, model_len + 1);
    p->model_len = model_len;
    p->version[0] = 0;
    p->priority = 0;
    uint32_t deadline_ms = (uint32_t)self->timeout_ms;
    if (opts) {
        if (opts->version)
            snprintf (p->version, sizeof p->version, "%s", opts->version);
        p->priority = opts->priority;
        if (opts->deadline_ms)
            deadline_ms = opts->deadline_ms;
    }
    int64_t now = clock_now_ms ();
    retry_job_start (&self->retry, &p->retry, deadline_ms, now);
    s_send_attempt (self, p, now);
    assert (idmap_size (self->pending) == retry_jobs (&self->retry));
    return p->id;
}

uint64_t amaas_send (amaas_client_t *self, const char *model, const amaas_tensor_t *inputs,
                     size_t n_inputs, amaas_error_t *err)
{
    return amaas_send_opts (self, model, inputs, n_inputs, NULL, err);
}

amaas_result_t *amaas_recv (amaas_client_t *self, int timeout_ms, amaas_error_t *err)
{
    assert (self);
    if (timeout_ms < 0)
        timeout_ms = self->timeout_ms;
    amaas_result_t *r = s_pump (self, 0, timeout_ms, 0, 0, NULL);
    if (!r)
        s_set_error (err, AMAAS_DEADLINE_EXCEEDED, "no result within %d ms (%zu jobs pending)",
                     timeout_ms, amaas_pending (self));
    return r;
}

amaas_result_t *amaas_predict (amaas_client_t *self, const char *model,
                               const amaas_tensor_t *inputs, size_t n_inputs, amaas_error_t *err)
{
    assert (self);
    uint64_t id = amaas_send (self, model, inputs, n_inputs, err);
    if (!id)
        return NULL;
    amaas_result_t *r = s_pump (self, id, self->timeout_ms, 0, 0, NULL);
    if (!r) {
        //  Given up: forget the job, so that a late answer is dropped, and
        //  tell the broker
        amaas_cancel (self, id);
        s_set_error (err, AMAAS_DEADLINE_EXCEEDED, "no result for job %" PRIu64 " within %d ms", id,
                     self->timeout_ms);
    }
    return r;
}

int amaas_fd (const amaas_client_t *self)
{
    assert (self);
    return self->fd;
}

int amaas_wake_ms (amaas_client_t *self)
{
    assert (self);
    int64_t now = clock_now_ms ();
    int64_t wake = retry_wake_ms (&self->retry);
    if (wake <= now)
        return 0;
    return wake - now > INT_MAX ? INT_MAX : (int)(wake - now);
}

int amaas_cancel (amaas_client_t *self, uint64_t id)
{
    assert (self);
    pending_t *p = s_pending_find (self, id);
    if (!p)
        return -1;
    broker_t *broker = &self->brokers[p->broker];
    s_pending_finish (self, p);
    s_send_command (self, broker, CMD_CANCEL, id);
    return 0;
}

void amaas_result_destroy (amaas_result_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    //  One block: s_result_new
    held_result_t *held = LIST_ITEM (*self_p, held_result_t, result);
    assert (!list_node_linked (&held->node));
    free (held);
    *self_p = NULL;
}

const amaas_tensor_t *amaas_result_output (const amaas_result_t *self, const char *name)
{
    assert (self);
    assert (name);
    for (size_t i = 0; i < self->n_outputs; i++)
        if (strcmp (self->outputs[i].name, name) == 0)
            return &self->outputs[i];
    return NULL;
}

//  A declared shape: the one on the wire (ndim > 0), else the one `width`
//  stands for, as peers older than shapes mean it: an output's [-1] (width
//  0) or [-1, width]; an input's [-1, width], [-1, -1] if unknown (0).
static void s_fill_shape (int64_t *shape, int *ndim, const int64_t *wire, uint32_t wire_ndim,
                          uint32_t width, bool input)
{
    memset (shape, 0, AMAAS_MAX_DIMS * sizeof *shape);
    if (wire_ndim) {
        assert (wire_ndim <= AMAAS_MAX_DIMS);
        memcpy (shape, wire, wire_ndim * sizeof *shape);
        *ndim = (int)wire_ndim;
    } else {
        shape[0] = -1;
        shape[1] = width ? (int64_t)width : -1;
        *ndim = width || input ? 2 : 1;
    }
}

//  A model's inputs: as announced, else its one input from the older keys
//  (input, datatype, width) when a name was announced, else none.
static void s_fill_inputs (amaas_model_info_t *info, const codec_model_t *model)
{
    const codec_model_meta_t *meta = &model->meta;
    memset (info->inputs, 0, sizeof info->inputs);
    info->n_inputs = meta->n_inputs;
    for (uint32_t k = 0; k < meta->n_inputs; k++) {
        amaas_input_info_t *in = &info->inputs[k];
        snprintf (in->name, sizeof in->name, "%s", meta->inputs[k].name);
        in->datatype = meta->inputs[k].datatype;
        s_fill_shape (in->shape, &in->ndim, meta->inputs[k].shape, meta->inputs[k].ndim, 0, true);
    }
    if (meta->n_inputs == 0 && meta->input[0]) {
        info->n_inputs = 1;
        snprintf (info->inputs[0].name, sizeof info->inputs[0].name, "%s", meta->input);
        info->inputs[0].datatype = meta->datatype;
        s_fill_shape (info->inputs[0].shape, &info->inputs[0].ndim, NULL, 0, model->width, true);
    }
}

int amaas_models (amaas_client_t *self, amaas_model_info_t *models, size_t max, amaas_error_t *err)
{
    assert (self);
    assert (models || max == 0);
    uint64_t id = self->next_id++;
    bool answered = false;
    if (s_send_command (self, s_pick (self, 0), CMD_MODELS, id) == 0)
        s_pump (self, 0, self->timeout_ms, CMD_MODELS_REPLY, id, &answered);
    if (!answered) {
        s_set_error (err, AMAAS_UNAVAILABLE, "the broker did not answer within %d ms",
                     self->timeout_ms);
        return -1;
    }
    if (self->header.fields & HDR_CODE && self->header.code != AMAAS_OK) {
        s_set_error (err, (amaas_code_t)self->header.code, "%s", self->header.message);
        return -1;
    }
    //  self->header still holds the reply's header
    size_t n = self->header.n_models;
    for (size_t i = 0; i < n && i < max; i++) {
        snprintf (models[i].name, sizeof models[i].name, "%s", self->header.models[i].name);
        snprintf (models[i].version, sizeof models[i].version, "%s",
                  self->header.models[i].version);
        models[i].workers = self->header.models[i].workers;
        models[i].width = self->header.models[i].width;
        models[i].mapped = self->header.models[i].mapped;
        models[i].queued = self->header.models[i].queued;
        const codec_model_meta_t *meta = &self->header.models[i].meta;
        snprintf (models[i].input, sizeof models[i].input, "%s", meta->input);
        models[i].datatype = meta->datatype;
        models[i].n_outputs = meta->n_outputs;
        memset (models[i].outputs, 0, sizeof models[i].outputs);
        for (uint32_t k = 0; k < meta->n_outputs; k++) {
            amaas_output_info_t *out = &models[i].outputs[k];
            snprintf (out->name, sizeof out->name, "%s", meta->outputs[k].name);
            out->datatype = meta->outputs[k].datatype;
            out->width = meta->outputs[k].width;
            s_fill_shape (out->shape, &out->ndim, meta->outputs[k].shape, meta->outputs[k].ndim,
                          out->width, false);
        }
        s_fill_inputs (&models[i], &self->header.models[i]);
    }
    codec_header_reset (&self->header);
    return (int)n;
}
