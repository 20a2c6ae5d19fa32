/* sync.h — several gateways on one PostgreSQL (DESIGN §9, docs/deploy.md): changes made
 * through other gateways, re-read from the store and applied here; the leader of fleet-wide
 * periodic jobs. The loop thread only. */
#ifndef DROVER_GW_SYNC_H
#define DROVER_GW_SYNC_H
#include "gw/gw.h"

/* Fills g->origin with a name for this gateway process (random; in NOTIFY payloads and op
 * leases). Call before the store is opened. */
void sync_make_origin(struct gw *g);
/* PostgreSQL store: starts listening and competing for the leader's lock (g->is_leader); does
 * nothing for SQLite (g->sync stays NULL). */
int sync_start(struct gw *g, struct gw_error *err) WUR;
void sync_stop(struct gw *g);
/* Tells the other gateways that an admin recovered node name (they clear their own fault record
 * and marks for it). Sent after the writes queued before it. No-op without sync. */
void sync_notify_recover(struct gw *g, const char *name);

/* Local writes of shared rows (DESIGN §9). This gateway changes its memory first and then
 * queues the write; a re-read queued before that write (a notification from another gateway, or
 * the full re-read after a reconnection) completes before it and holds the row as it was, so
 * while the write is in the store's queue, re-read copies of that row are not applied (nor is
 * the row removed for being absent). A write that fails re-reads its row, so memory goes back to
 * what the store holds. One mechanism for nodes, catalogue entries, operation rows and client
 * keys. */
enum sync_table { SYNC_NODE, SYNC_MODEL, SYNC_OP, SYNC_KEY };
/* Registers a write of (table, key) about to be queued; pass sync_write_done and the returned
 * context as the store call's callback: it forgets the write, handles a failure, then calls
 * done(ctx, rc, msg) when done is not NULL. */
void *sync_write(struct gw *g, enum sync_table t, const char *key, store_done_fn done, void *ctx);
void sync_write_done(void *ctx, int rc, const char *msg);
/* A re-read copy of (table, key) is about to be applied (or the row removed for being absent):
 * returns true when a local write of the row is still in the store's queue. The caller then
 * leaves memory as it is, and the row is read again once those writes completed (the copy may
 * carry another gateway's change to columns the local write does not set). */
bool sync_defer_remote(struct gw *g, enum sync_table t, const char *key);
/* An operation row's key (its id in decimal). */
const char *sync_op_key(int64_t id, char out[24]);
/* Frees what is left after the store has closed (every write's completion has run). */
void sync_free(struct gw *g);

#endif
