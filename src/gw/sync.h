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

#endif
