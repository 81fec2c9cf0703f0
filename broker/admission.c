/*  admission.c - per-client admission control of the broker.

    Client records live in a czmq hash table keyed by the hex of the
    client's ROUTER identity (table_identity_key).  A record counts its
    jobs and remembers when the count went to zero; the sweep deletes the
    records idle for idle_ms through table_delete_if.  Nothing here
    allocates per job: a record is made once per client, and kept while the
    client is active.
*/
#include "admission.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

#include "table.h"

struct admission_client_t {
    size_t jobs;             //  queued or computing
    int64_t idle_since_ms;   //  when jobs last went to 0 (or the record was made)
    char key[TABLE_KEY_MAX]; //  its identity in hex, the table key
};

struct admission_t {
    zhashx_t *clients; //  admission_client_t * by key
    size_t max_jobs;   //  jobs one client may have
    int64_t idle_ms;   //  a client without jobs is forgotten after this
};

//  What the sweep compares with
typedef struct {
    int64_t now_ms;
    int64_t idle_ms;
} sweep_t;

static void s_client_destructor (void **item)
{
    free (*item);
    *item = NULL;
}

admission_t *admission_new (size_t max_jobs, int64_t idle_ms)
{
    admission_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->clients = zhashx_new ();
    if (!self->clients)
        goto err;
    zhashx_set_destructor (self->clients, s_client_destructor);
    self->max_jobs = max_jobs;
    self->idle_ms = idle_ms;
    return self;
err:
    admission_destroy (&self);
    return NULL;
}

void admission_destroy (admission_t **self_p)
{
    assert (self_p);
    admission_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->clients);
    free (self);
    *self_p = NULL;
}

admission_client_t *admission_client (admission_t *self, const void *identity, size_t size,
                                      int64_t now_ms)
{
    assert (self);
    char key[TABLE_KEY_MAX];
    table_identity_key (key, 0, identity, size);
    admission_client_t *client = zhashx_lookup (self->clients, key);
    if (client)
        return client;
    client = calloc (1, sizeof *client);
    if (!client)
        return NULL;
    memcpy (client->key, key, sizeof key);
    client->idle_since_ms = now_ms;
    if (zhashx_insert (self->clients, client->key, client)) {
        free (client);
        return NULL;
    }
    return client;
}

admission_client_t *admission_lookup (admission_t *self, const void *identity, size_t size)
{
    assert (self);
    char key[TABLE_KEY_MAX];
    table_identity_key (key, 0, identity, size);
    return zhashx_lookup (self->clients, key);
}

int admission_acquire (admission_t *self, admission_client_t *client)
{
    assert (self);
    assert (client);
    if (client->jobs >= self->max_jobs)
        return -1;
    client->jobs++;
    return 0;
}

void admission_release (admission_t *self, admission_client_t *client, int64_t now_ms)
{
    assert (self);
    assert (client);
    assert (client->jobs > 0);
    (void)self; //  unused without assertions (NDEBUG)
    if (--client->jobs == 0)
        client->idle_since_ms = now_ms;
}

void admission_move (admission_t *self, admission_client_t *from, admission_client_t *to,
                     int64_t now_ms)
{
    assert (self);
    assert (to);
    if (from == to)
        return;
    if (from)
        admission_release (self, from, now_ms);
    to->jobs++;
}

//  Whether a client has had no job for idle_ms (arg: an sweep_t).
static bool s_client_idle (const void *item, const void *arg)
{
    const admission_client_t *client = item;
    const sweep_t *sweep = arg;
    return client->jobs == 0 && sweep->now_ms - client->idle_since_ms >= sweep->idle_ms;
}

size_t admission_sweep (admission_t *self, int64_t now_ms)
{
    assert (self);
    sweep_t sweep = {now_ms, self->idle_ms};
    return table_delete_if (self->clients, s_client_idle, &sweep);
}

size_t admission_jobs (const admission_client_t *client)
{
    assert (client);
    return client->jobs;
}

size_t admission_max_jobs (const admission_t *self)
{
    assert (self);
    return self->max_jobs;
}

size_t admission_size (const admission_t *self)
{
    assert (self);
    return zhashx_size (self->clients);
}
