/* store_watch — coordination between gateways on one PostgreSQL (DESIGN §9): a thread of its
 * own with a dedicated connection that LISTENs on channel "drover" (the change triggers of
 * migrations 5 and 6 notify TABLE ORIGIN KEY at commit) and holds the leader's session advisory
 * lock (pg_try_advisory_lock; PostgreSQL releases it when this connection dies). Events reach the
 * loop thread through a uv_async, in order. After every (re)connection it reports RESYNC: what
 * was notified while it was away is lost, so the receiver re-reads everything. Reconnection
 * backs off from 250 ms to 10 s; a follower tries the lock every lease_ms; a leader checks its
 * connection every lease_ms. No consensus of its own: the lock is PostgreSQL's. */
#ifndef DROVER_STORE_STORE_WATCH_H
#define DROVER_STORE_STORE_WATCH_H
#include <stdint.h>
#include <uv.h>

#include "base/err.h"

enum store_watch_event {
    STORE_WATCH_CHANGE, /* table ("nodes", "catalogue", "ops", "client_keys", or "recover") and key
                         * changed */
    STORE_WATCH_RESYNC, /* (re)connected and listening: re-read everything */
    STORE_WATCH_DOWN,   /* the connection is lost (changes are missed until RESYNC) */
    STORE_WATCH_LEADER, /* this gateway holds the lock */
    STORE_WATCH_FOLLOWER, /* it no longer does (connection lost) */
};

/* Loop thread. table and key are borrowed for the call (NULL for the other events). */
typedef void store_watch_fn(void *ctx, enum store_watch_event ev, const char *table,
                            const char *key);

struct store_watch_config {
    const char *url;    /* libpq connection string or URI (copied) */
    const char *origin; /* this gateway's origin: its own changes are not reported */
    int64_t lock_key;   /* the advisory lock of the leader */
    unsigned lease_ms;  /* lock attempts and connection checks */
    unsigned connect_timeout_ms;
};

struct store_watch;

/* Starts the thread (it connects in the background: the first RESYNC comes once connected).
 * Loop thread. */
int store_watch_start(uv_loop_t *loop, const struct store_watch_config *cfg, store_watch_fn *fn,
                      void *ctx, struct store_watch **out, struct gw_error *err) WUR;
/* Stops and joins the thread, closes the connection (the lock goes with it), drops events not
 * delivered yet; the struct is freed in its async handle's close callback. NULL is fine. */
void store_watch_stop(struct store_watch *w);

#endif
