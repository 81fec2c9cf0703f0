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

    Pending jobs sit in a table by id and in one of two timer lists, each
    ordered by when its jobs are due: the jobs waiting for an answer, due
    at their deadline, and the jobs waiting out a backoff after
    UNAVAILABLE.  Most jobs have the same lifetime, so a new one goes to
    the end of its list: timers cost O(1) per job.

    All waiting goes through pump(), which reads the socket, fires the
    retry timers, and parks results that nobody asked for yet in a FIFO that
    amaas_recv serves first; so pipelined and synchronous calls mix freely
    on one client.

    The path of a job allocates only its payload and its result: finished
    pending jobs are kept for reuse, the inputs are packed into a buffer
    reused from job to job, each attempt shares the payload with libzmq by
    reference, replies are read as zmq_msg_t frames without czmq objects,
    and a result is one block (the caller frees it with
    amaas_result_destroy).  The socket is read without a poll while
    messages are waiting; pump polls only when there is nothing to read.
*/
#include "amaas.h"

#include <czmq.h>
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "curve.h"
#include "idmap.h"

#define BACKOFF_FIRST_MS 50 //  first wait before resending an UNAVAILABLE job
#define BACKOFF_MAX_MS 2000

typedef struct pending_t pending_t;

//  Pending jobs in order of when they are due
typedef struct {
    pending_t *first; //  due first
    pending_t *last;  //  due last
} timers_t;

struct pending_t {
    uint64_t id;                     //  job id, also the table key
    char model[CODEC_NAME_MAX];      //  model name
    size_t model_len;                //  its length
    char version[CODEC_VERSION_MAX]; //  required version, or ""
    uint32_t priority;               //  0..3
    uint32_t deadline_ms;            //  lifetime from the first send
    zmq_msg_t payload;               //  encoded inputs, kept for resends
    int64_t first_sent_ms;           //  first attempt
    int64_t next_try_ms;             //  give up then, or resend after a backoff
    int attempts;                    //  attempts sent
    int backoff_ms;                  //  next wait after UNAVAILABLE
    timers_t *timers;                //  timer list it is in, or NULL
    pending_t *prev, *next;          //  neighbours in it (next: in the pool)
};

struct amaas_client_t {
    zsock_t *sock;               //  DEALER to the broker's frontend
    void *socket;                //  its libzmq socket
    int fd;                      //  its ZMQ_FD, readable when libzmq has news
    int timeout_ms;              //  default wait of recv and predict, and job lifetime
    int attempts;                //  most sends per job
    int heartbeat_ms;            //  PING interval while jobs are pending
    int64_t next_ping_ms;        //  next PING then
    uint64_t next_ping_id;       //  id of the next PING, from 2^63 up
    uint64_t session;            //  random: tells the broker our jobs from others'
    uint64_t epoch;              //  of the broker and connection our jobs went to
    uint64_t next_id;            //  id of the next job
    idmap_t *pending;            //  pending_t * by id
    timers_t deadline_timers;    //  jobs waiting for an answer, by deadline
    timers_t backoff_timers;     //  jobs waiting to be resent after UNAVAILABLE
    pending_t *pool;             //  finished pending_t's for reuse, linked by next
    amaas_result_t *parked;      //  results ready for the caller, linked by _priv
    amaas_result_t *parked_last; //  the last of them
    codec_frames_t frames;       //  message at hand
    codec_header_t header;       //  header of the message at hand
    codec_header_t out;          //  header of the message being sent
    msgpack_sbuffer packed;      //  inputs being encoded, reused
    uint64_t resent;             //  attempts resent
    uint64_t duplicates;         //  answers dropped as duplicates
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

//  --------------------------------------------------------------------------
//  Pending jobs by id, in an idmap (filed under the id itself)

static bool pending_is (const void *item, const void *id)
{
    return ((const pending_t *)item)->id == *(const uint64_t *)id;
}

//  The pending job `id`, or NULL.
static pending_t *pending_find (const amaas_client_t *self, uint64_t id)
{
    return idmap_find (self->pending, id, pending_is, &id);
}

//  --------------------------------------------------------------------------
//  Timers

//  Takes a job out of its timer list, if it is in one.  Cannot fail.
static void timer_cancel (pending_t *p)
{
    timers_t *list = p->timers;
    if (!list)
        return;
    if (p->prev)
        p->prev->next = p->next;
    else
        list->first = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        list->last = p->prev;
    p->timers = NULL;
    p->prev = p->next = NULL;
}

//  Moves a job into `list`, due at at_ms.  It is placed from the end of
//  the list: at the end, in one step, when it is due no earlier than the
//  rest.  Cannot fail.
static void timer_set (timers_t *list, pending_t *p, int64_t at_ms)
{
    timer_cancel (p);
    p->next_try_ms = at_ms;
    pending_t *before = list->last;
    while (before && before->next_try_ms > at_ms)
        before = before->prev;
    p->timers = list;
    p->prev = before;
    p->next = before ? before->next : list->first;
    if (p->next)
        p->next->prev = p;
    else
        list->last = p;
    if (before)
        before->next = p;
    else
        list->first = p;
}

//  The job due first in either list, or NULL.
static pending_t *timer_first (const amaas_client_t *self)
{
    pending_t *a = self->deadline_timers.first, *b = self->backoff_timers.first;
    if (!a || (b && b->next_try_ms < a->next_try_ms))
        return b;
    return a;
}

//  --------------------------------------------------------------------------
//  Results

//  A result in one block, with its outputs' data (each aligned for any
//  type) and strings after it; outs may be NULL when n is 0.  Error code
//  AMAAS_OK and an empty message.  NULL on out-of-memory.
static amaas_result_t *result_new (uint64_t id, const char *model, const char *version,
                                   const codec_tensor_t *outs, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    size_t model_len = strlen (model), version_len = strlen (version);
    size_t at = sizeof (amaas_result_t) + n * sizeof (amaas_tensor_t);
    size_t text = model_len + 1 + version_len + 1;
    for (size_t i = 0; i < n; i++) {
        at = (at + align - 1) / align * align + outs[i].size;
        text += outs[i].name_len + 1;
    }
    char *block = malloc (at + text);
    if (!block)
        return NULL;
    amaas_result_t *r = (amaas_result_t *)block;
    memset (r, 0, sizeof *r);
    r->id = id;
    r->n_outputs = n;
    r->outputs = n ? (amaas_tensor_t *)(block + sizeof *r) : NULL;
    at = sizeof (amaas_result_t) + n * sizeof (amaas_tensor_t);
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
static amaas_result_t *local_result (const pending_t *p, amaas_code_t code, const char *message)
{
    amaas_result_t *r = result_new (p->id, p->model, "", NULL, 0);
    if (!r)
        return NULL;
    r->error.code = code;
    snprintf (r->error.message, sizeof r->error.message, "%s", message);
    return r;
}

//  Builds a result from the REPLY (or ERROR) whose header is self->header
//  and whose payload, if any, is `payload`.  NULL on out-of-memory.
static amaas_result_t *result_from (amaas_client_t *self, zmq_msg_t *payload)
{
    codec_header_t *h = &self->header;
    codec_tensor_t outs[CODEC_MAX_TENSORS];
    char why[CODEC_MESSAGE_MAX];
    int n = 0;
    if (h->code == AMAAS_OK && payload)
        n = codec_tensors_decode (zmq_msg_data (payload), zmq_msg_size (payload), outs,
                                  CODEC_MAX_TENSORS, UINT64_MAX / 16, why, sizeof why);
    amaas_result_t *result = result_new (h->id, h->model, h->version, outs, n > 0 ? (size_t)n : 0);
    if (!result) {
        //  Out of memory for the outputs: say so, if memory allows that
        result = result_new (h->id, h->model, h->version, NULL, 0);
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

//  Parks a result for the caller, at the end of the FIFO.  Cannot fail.
static void park (amaas_client_t *self, amaas_result_t *r)
{
    r->_priv = NULL;
    if (self->parked_last)
        self->parked_last->_priv = r;
    else
        self->parked = r;
    self->parked_last = r;
}

//  Takes the parked result of job `id` (0: the oldest of any), or NULL.
static amaas_result_t *take_parked (amaas_client_t *self, uint64_t id)
{
    amaas_result_t *prev = NULL;
    for (amaas_result_t *r = self->parked; r; prev = r, r = r->_priv)
        if (id == 0 || r->id == id) {
            if (prev)
                prev->_priv = r->_priv;
            else
                self->parked = r->_priv;
            if (self->parked_last == r)
                self->parked_last = prev;
            r->_priv = NULL;
            return r;
        }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Jobs

void amaas_set_timeout (amaas_client_t *self, int timeout_ms)
{
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
}

void amaas_set_retry (amaas_client_t *self, int attempts, int heartbeat_ms)
{
    self->attempts = attempts > 0 ? attempts : 1;
    self->heartbeat_ms = heartbeat_ms > 0 ? heartbeat_ms : 1;
}

size_t amaas_pending (const amaas_client_t *self)
{
    return idmap_size (self->pending);
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
    codec_header_t *h = &self->out;
    h->fields = HDR_ID;
    h->id = id;
    if (cmd == CMD_CANCEL) {
        h->fields |= HDR_SESSION;
        h->session = self->session;
    }
    return codec_send_frames (self->socket, NULL, 0, cmd, h, NULL);
}

//  Forgets a pending job and keeps it for reuse.  Cannot fail.
static void pending_finish (amaas_client_t *self, pending_t *p)
{
    timer_cancel (p);
    idmap_delete (self->pending, p->id, p);
    zmq_msg_close (&p->payload);
    p->next = self->pool;
    self->pool = p;
}

//  The job ends here with a result the library made; parked for the caller.
static void pending_fail (amaas_client_t *self, pending_t *p, amaas_code_t code,
                          const char *message)
{
    amaas_result_t *r = local_result (p, code, message);
    if (r)
        park (self, r);
    pending_finish (self, p);
}

//  Sends one attempt of a pending job, at `now`.  The deadline counts from
//  the first attempt: a resend carries what is left of it.
static void send_attempt (amaas_client_t *self, pending_t *p, int64_t now)
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
    int64_t left = p->first_sent_ms + p->deadline_ms - now;
    if (left <= 0) {
        pending_fail (self, p, AMAAS_DEADLINE_EXCEEDED,
                      "deadline passed before the job could be sent again");
        return;
    }
    h->deadline_ms = (uint32_t)left;
    //  A send that fails (it cannot, with no high-water mark, short of
    //  out-of-memory) is handled like a lost attempt: it times out
    codec_send_frames (self->socket, NULL, 0, CMD_REQUEST, h, &p->payload);
    p->attempts++;
    timer_set (&self->deadline_timers, p, p->first_sent_ms + p->deadline_ms);
}

//  The broker's epoch, from a PONG.  When it changed, the broker restarted
//  or our connection is a new one: what we sent before may be lost, and
//  its answers could not reach us.  Every pending job is sent again (the
//  broker attaches one it still has); a job sent `attempts` times fails
//  UNAVAILABLE instead.
static void on_epoch (amaas_client_t *self, uint64_t epoch)
{
    if (epoch == 0 || epoch == self->epoch)
        return;
    bool changed = self->epoch != 0;
    self->epoch = epoch;
    if (!changed || idmap_size (self->pending) == 0)
        return;
    //  Collected first: resending may fail a job, which changes the table
    size_t n = 0;
    pending_t **jobs = malloc (idmap_size (self->pending) * sizeof *jobs);
    if (!jobs)
        return; //  out of memory: the jobs wait for their deadline
    size_t cursor = 0;
    pending_t *p;
    while ((p = idmap_next (self->pending, &cursor)))
        if (p->timers != &self->backoff_timers)
            jobs[n++] = p;
    int64_t now = clock_now_ms ();
    for (size_t i = 0; i < n; i++) {
        p = jobs[i];
        if (p->attempts >= self->attempts) {
            char message[CODEC_MESSAGE_MAX];
            snprintf (message, sizeof message,
                      "the broker restarted or the connection was replaced; the job was sent "
                      "%d time%s, the most allowed: retry",
                      p->attempts, p->attempts == 1 ? "" : "s");
            pending_fail (self, p, AMAAS_UNAVAILABLE, message);
        } else {
            self->resent++;
            send_attempt (self, p, now);
        }
    }
    free (jobs);
}

//  A REPLY or ERROR arrived, its header in self->header: hand it on, retry
//  it, or drop it as a duplicate.
static void on_reply (amaas_client_t *self, zmq_msg_t *payload)
{
    pending_t *p = pending_find (self, self->header.id);
    if (!p) {
        //  An answer to a job already answered (a resend crossed a late
        //  answer), given up, or to nothing we sent: never shown to the
        //  caller
        if (self->header.code != AMAAS_CANCELLED)
            self->duplicates++;
        return;
    }
    if (self->header.code == AMAAS_UNAVAILABLE && p->attempts < self->attempts) {
        //  Worker lost, broker restarting: try again after a backoff
        timer_set (&self->backoff_timers, p, clock_now_ms () + p->backoff_ms);
        p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
        return;
    }
    amaas_result_t *result = result_from (self, payload);
    if (result)
        park (self, result);
    pending_finish (self, p);
}

//  Fires the timers due at `now`: resend after a backoff, or give up at
//  the deadline (and tell the broker).  While jobs are pending, PINGs the
//  broker every heartbeat interval, for its epoch.
static void on_timers (amaas_client_t *self, int64_t now)
{
    pending_t *p;
    while ((p = timer_first (self)) && p->next_try_ms <= now) {
        if (p->timers == &self->backoff_timers) {
            self->resent++;
            send_attempt (self, p, now);
        } else {
            char message[CODEC_MESSAGE_MAX];
            snprintf (message, sizeof message,
                      "no answer within the job's deadline of %u ms; the broker was told to "
                      "drop it",
                      p->deadline_ms);
            uint64_t id = p->id;
            pending_fail (self, p, AMAAS_DEADLINE_EXCEEDED, message);
            send_command (self, CMD_CANCEL, id);
        }
    }
    if (idmap_size (self->pending) && now >= self->next_ping_ms) {
        //  Ids of their own, so that job ids stay consecutive
        send_command (self, CMD_PING, self->next_ping_id++);
        self->next_ping_ms = now + self->heartbeat_ms;
    }
}

//  Handles the message in self->frames, then releases it.  Returns true if
//  it is the control answer waited for (ctl_cmd with id ctl_id, or an
//  ERROR), its header left in self->header.
static bool on_message (amaas_client_t *self, codec_cmd_t ctl_cmd, uint64_t ctl_id)
{
    codec_cmd_t cmd;
    zmq_msg_t *payload;
    char why[CODEC_MESSAGE_MAX];
    bool answer = false;
    if (codec_frames_parse (&self->frames, 0, &cmd, &self->header, &payload, why, sizeof why) ==
        0) {
        if (cmd == CMD_PONG && (self->header.fields & HDR_EPOCH))
            on_epoch (self, self->header.epoch);
        //  An ERROR while waiting for a control answer is the answer: the
        //  broker refused what we sent (e.g. our key)
        if (ctl_cmd && ((cmd == ctl_cmd && self->header.id == ctl_id) || cmd == CMD_ERROR))
            answer = true;
        else if (cmd == CMD_REPLY || cmd == CMD_ERROR)
            on_reply (self, payload);
    }
    codec_frames_close (&self->frames);
    return answer;
}

//  Reads the socket and runs the timers until a result for `id` (0: any
//  job) is ready, or, when ctl_cmd is set, until a message of that command
//  with id ctl_id arrives (then *answered is set, and its header is in
//  self->header), or for timeout_ms.
//
//  A message waiting is read at once.  Only when a read finds none does
//  pump wait, in poll(2) on the socket's ZMQ_FD: that read has taken in
//  libzmq's pending commands, so the FD signals the next message (zmq_poll
//  would cost several more system calls per wait).
static amaas_result_t *pump (amaas_client_t *self, uint64_t id, int timeout_ms, codec_cmd_t ctl_cmd,
                             uint64_t ctl_id, bool *answered)
{
    int64_t now = clock_now_ms ();
    int64_t until_ms = now + timeout_ms;
    while (true) {
        on_timers (self, now);
        if (!ctl_cmd) {
            amaas_result_t *r = take_parked (self, id);
            if (r)
                return r;
        }
        if (now >= until_ms)
            return NULL;
        if (codec_frames_recv (&self->frames, self->socket) == 0) {
            if (on_message (self, ctl_cmd, ctl_id)) {
                *answered = true;
                return NULL;
            }
        } else if (zmq_errno () == EAGAIN) {
            int64_t wake = until_ms;
            pending_t *first = timer_first (self);
            if (first && first->next_try_ms < wake)
                wake = first->next_try_ms;
            if (idmap_size (self->pending) && self->next_ping_ms < wake)
                wake = self->next_ping_ms;
            struct pollfd item = {self->fd, POLLIN, 0};
            if (poll (&item, 1, (int)(wake > now ? wake - now : 0)) < 0 && errno != EINTR)
                return NULL;
        } else if (zmq_errno () != EINTR)
            return NULL;
        now = clock_now_ms ();
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
    self->heartbeat_ms = 1000;
    self->next_id = 1;
    self->next_ping_id = 1ULL << 63;
    if (getrandom (&self->session, sizeof self->session, 0) != sizeof self->session)
        self->session = (uint64_t)clock_now_us () ^ ((uint64_t)getpid () << 32);
    self->session |= 1; //  never 0
    msgpack_sbuffer_init (&self->packed);
    self->sock = zsock_new (ZMQ_DEALER);
    self->pending = idmap_new ();
    if (!self->pending || !self->sock) {
        set_error (err, AMAAS_INTERNAL, "cannot create a ZeroMQ socket");
        goto err;
    }
    self->socket = zsock_resolve (self->sock);
    self->fd = zsock_fd (self->sock);
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
    bool pong = false;
    if (send_command (self, CMD_PING, id) == 0)
        pump (self, 0, self->timeout_ms, CMD_PONG, id, &pong);
    if (pong && (self->header.fields & HDR_EPOCH))
        self->epoch = self->header.epoch;
    if (pong && self->header.fields & HDR_CODE && self->header.code != AMAAS_OK) {
        set_error (err, (amaas_code_t)self->header.code, "%s", self->header.message);
        goto err;
    }
    if (pong)
        return self;
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
    size_t cursor = 0;
    pending_t *p;
    while (self->pending && (p = idmap_next (self->pending, &cursor))) {
        zmq_msg_close (&p->payload);
        free (p);
    }
    idmap_destroy (&self->pending);
    while (self->pool) {
        pending_t *p = self->pool;
        self->pool = p->next;
        free (p);
    }
    amaas_result_t *r;
    while ((r = take_parked (self, 0)))
        amaas_result_destroy (&r);
    msgpack_sbuffer_destroy (&self->packed);
    codec_header_reset (&self->header);
    free (self);
    *self_p = NULL;
}

uint64_t amaas_send_opts (amaas_client_t *self, const char *model, const amaas_tensor_t *inputs,
                          size_t n_inputs, const amaas_options_t *opts, amaas_error_t *err)
{
    size_t model_len = model ? strlen (model) : 0;
    if (model_len == 0 || model_len >= CODEC_NAME_MAX) {
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
        size_t name_len = in->name ? strlen (in->name) : 0;
        if (in->ndim < 1 || in->ndim > AMAAS_MAX_DIMS || name_len == 0 ||
            name_len >= CODEC_NAME_MAX || in->datatype <= AMAAS_DTYPE_INVALID ||
            in->datatype > AMAAS_BYTES || (in->size && !in->data)) {
            set_error (err, AMAAS_INVALID_ARGUMENT,
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
    pending_t *p = self->pool;
    if (p)
        self->pool = p->next;
    else
        p = malloc (sizeof *p);
    if (!p || codec_tensors_pack (tensors, n_inputs, &self->packed) ||
        zmq_msg_init_size (&p->payload, self->packed.size)) {
        if (p) {
            p->next = self->pool;
            self->pool = p;
        }
        set_error (err, AMAAS_INTERNAL, "out of memory");
        return 0;
    }
    memcpy (zmq_msg_data (&p->payload), self->packed.data, self->packed.size);
    p->id = self->next_id;
    if (idmap_insert (self->pending, self->next_id, p)) {
        zmq_msg_close (&p->payload);
        p->next = self->pool;
        self->pool = p;
        set_error (err, AMAAS_INTERNAL, "out of memory");
        return 0;
    }
    self->next_id++;
    memcpy (p->model, model, model_len + 1);
    p->model_len = model_len;
    p->version[0] = 0;
    p->priority = 0;
    p->deadline_ms = (uint32_t)self->timeout_ms;
    if (opts) {
        if (opts->version)
            snprintf (p->version, sizeof p->version, "%s", opts->version);
        p->priority = opts->priority;
        if (opts->deadline_ms)
            p->deadline_ms = opts->deadline_ms;
    }
    int64_t now = clock_now_ms ();
    if (idmap_size (self->pending) == 1)
        self->next_ping_ms = now + self->heartbeat_ms; //  the first job pending
    p->first_sent_ms = now;
    p->attempts = 0;
    p->backoff_ms = BACKOFF_FIRST_MS;
    p->timers = NULL;
    p->prev = p->next = NULL;
    uint64_t id = p->id;
    send_attempt (self, p, now);
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
    amaas_result_t *r = pump (self, 0, timeout_ms, 0, 0, NULL);
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
    amaas_result_t *r = pump (self, id, self->timeout_ms, 0, 0, NULL);
    if (!r) {
        //  Given up: forget the job, so that a late answer is dropped, and
        //  tell the broker
        amaas_cancel (self, id);
        set_error (err, AMAAS_DEADLINE_EXCEEDED, "no result for job %" PRIu64 " within %d ms", id,
                   self->timeout_ms);
    }
    return r;
}

int amaas_cancel (amaas_client_t *self, uint64_t id)
{
    pending_t *p = pending_find (self, id);
    if (!p)
        return -1;
    pending_finish (self, p);
    send_command (self, CMD_CANCEL, id);
    return 0;
}

void amaas_result_destroy (amaas_result_t **self_p)
{
    //  One block: result_new
    free (*self_p);
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
    bool answered = false;
    if (send_command (self, CMD_MODELS, id) == 0)
        pump (self, 0, self->timeout_ms, CMD_MODELS_REPLY, id, &answered);
    if (!answered) {
        set_error (err, AMAAS_UNAVAILABLE, "the broker did not answer within %d ms",
                   self->timeout_ms);
        return -1;
    }
    if (self->header.fields & HDR_CODE && self->header.code != AMAAS_OK) {
        set_error (err, (amaas_code_t)self->header.code, "%s", self->header.message);
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
    }
    codec_header_reset (&self->header);
    return (int)n;
}
