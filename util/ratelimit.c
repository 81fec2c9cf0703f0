/*  ratelimit.c - a per-peer limit on log lines.

    A czmq hash table maps a peer's key to its counters.  Each peer has a
    window of one second that starts at its first line after the last
    window ended: the first per_second lines of a window are allowed, the
    rest counted as suppressed until the next flush.  The flush reports and
    resets the counts, then sweeps out the peers that have been idle, so
    the table holds only peers seen in the last few seconds, and never more
    than RATELIMIT_MAX_PEERS: the lines of peers that find the table full
    are limited together, as one peer outside the table.
*/
#include "ratelimit.h"

#include <assert.h>

#include <czmq.h>

#include "table.h"

#define S_WINDOW_MS 1000 //  the limit is per second

typedef struct {
    int64_t window_ms; //  when the current window started
    int64_t seen_ms;   //  time of the last line
    size_t lines;      //  lines allowed in the current window
    size_t suppressed; //  lines suppressed since the last flush
    bool started;      //  whether a window was started
} peer_t;

struct ratelimit_t {
    zhashx_t *peers;   //  peer_t * by peer key
    size_t per_second; //  lines allowed per peer per window
    peer_t others;     //  the peers that are not in the table
};

static void s_peer_destructor (void **item)
{
    free (*item);
    *item = NULL;
}

ratelimit_t *ratelimit_new (size_t per_second)
{
    ratelimit_t *self = calloc (1, sizeof *self);
    if (!self)
        goto err;
    self->per_second = per_second;
    self->peers = zhashx_new ();
    if (!self->peers)
        goto err;
    zhashx_set_destructor (self->peers, s_peer_destructor);
    return self;
err:
    ratelimit_destroy (&self);
    return NULL;
}

void ratelimit_destroy (ratelimit_t **self_p)
{
    ratelimit_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->peers);
    free (self);
    *self_p = NULL;
}

//  The counters of peer_key, made if new; &self->others when the table is
//  full or there is no memory.
static peer_t *s_peer_of (ratelimit_t *self, const char *peer_key)
{
    assert (self);
    peer_t *peer = zhashx_lookup (self->peers, peer_key);
    if (peer)
        return peer;
    if (zhashx_size (self->peers) >= RATELIMIT_MAX_PEERS)
        return &self->others;
    peer = calloc (1, sizeof *peer);
    if (!peer)
        return &self->others;
    if (zhashx_insert (self->peers, peer_key, peer)) {
        free (peer);
        return &self->others;
    }
    return peer;
}

bool ratelimit_allow (ratelimit_t *self, const char *peer_key, int64_t now_ms)
{
    assert (self);
    peer_t *peer = s_peer_of (self, peer_key ? peer_key : "");
    peer->seen_ms = now_ms;
    //  A new window when the last one is over (or the clock went back)
    if (!peer->started || now_ms - peer->window_ms >= S_WINDOW_MS || now_ms < peer->window_ms) {
        peer->started = true;
        peer->window_ms = now_ms;
        peer->lines = 0;
    }
    if (peer->lines < self->per_second) {
        peer->lines++;
        return true;
    }
    peer->suppressed++;
    return false;
}

static bool s_is_idle (const void *item, const void *arg)
{
    const peer_t *peer = item;
    int64_t now_ms = *(const int64_t *)arg;
    return now_ms - peer->seen_ms >= RATELIMIT_IDLE_MS;
}

size_t ratelimit_flush (ratelimit_t *self, int64_t now_ms, ratelimit_report_fn *fn, void *arg)
{
    assert (self);
    size_t reported = 0;
    for (peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers))
        if (peer->suppressed) {
            fn ((const char *)zhashx_cursor (self->peers), peer->suppressed, arg);
            peer->suppressed = 0;
            reported++;
        }
    if (self->others.suppressed) {
        fn (RATELIMIT_OTHERS, self->others.suppressed, arg);
        self->others.suppressed = 0;
        reported++;
    }
    table_delete_if (self->peers, s_is_idle, &now_ms);
    return reported;
}

size_t ratelimit_peers (ratelimit_t *self)
{
    assert (self);
    return zhashx_size (self->peers);
}
