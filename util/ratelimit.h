/*  ratelimit.h - a per-peer limit on log lines, so a hostile peer cannot
    grow the log without bound.

    Each peer (by a string key, e.g. table_identity_key's hex of its
    identity, or its CURVE key) may write `per_second` lines in each second
    of its own; further lines are not written but counted.  Once a second
    the caller flushes: every peer with lines suppressed is reported once
    with its count (for one summary line), and peers idle for
    RATELIMIT_IDLE_MS are forgotten.  At most RATELIMIT_MAX_PEERS peers are
    tracked; lines of further peers share one limit, reported under the key
    RATELIMIT_OTHERS.  No sockets, no clock: the caller passes the time.
*/
#ifndef AMAAS_RATELIMIT_H_INCLUDED
#define AMAAS_RATELIMIT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Peers tracked at most; lines of more peers share one limit
#define RATELIMIT_MAX_PEERS 4096
//  A peer with no line for this long is forgotten at the next flush
#define RATELIMIT_IDLE_MS 5000
//  The key the peers beyond RATELIMIT_MAX_PEERS are reported under
#define RATELIMIT_OTHERS "(others)"

typedef struct ratelimit_t ratelimit_t;

//  Called by ratelimit_flush for a peer that had `suppressed` (>= 1) lines
//  suppressed since the last flush.  peer_key is valid during the call.
typedef void (ratelimit_report_fn) (const char *peer_key, size_t suppressed, void *arg);

//  A limiter allowing per_second lines per peer per second (0: none).
//  NULL when there is no memory.
ratelimit_t *ratelimit_new (size_t per_second);

//  Destroys the limiter (suppressed counts not flushed are lost) and sets
//  *self_p to NULL.  Does nothing if *self_p is NULL.  Cannot fail.
void ratelimit_destroy (ratelimit_t **self_p);

//  Whether a line of peer peer_key (a string; NULL counts as "") may be
//  written at now_ms (monotonic milliseconds): true for the first
//  per_second lines of the peer in a second counted from its first line,
//  false for the rest, which are counted as suppressed.  Cannot fail: a
//  peer that cannot be tracked (the table is full, or no memory) shares
//  the limit of RATELIMIT_OTHERS.
bool ratelimit_allow (ratelimit_t *self, const char *peer_key, int64_t now_ms);

//  Meant to be called once a second: calls fn (key, count, arg) for each
//  peer with lines suppressed since the last flush (RATELIMIT_OTHERS last),
//  resets those counts, then forgets the peers with no line for
//  RATELIMIT_IDLE_MS before now_ms.  fn must not call the limiter.
//  Returns how many peers were reported.  Cannot fail (without memory for
//  the sweep, idle peers are forgotten at a later flush).
size_t ratelimit_flush (ratelimit_t *self, int64_t now_ms, ratelimit_report_fn *fn, void *arg);

//  How many peers are tracked (RATELIMIT_OTHERS not counted).  Cannot fail.
size_t ratelimit_peers (ratelimit_t *self);

#endif
