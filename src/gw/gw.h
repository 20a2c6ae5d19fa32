/* gw — the gateway's one context object, owned by `drover serve` and shared by the modules
 * of src/gw/. Everything in it belongs to the loop thread (DESIGN §2: no locks in gw/). */
#ifndef DROVER_GW_GW_H
#define DROVER_GW_GW_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/freelist.h"
#include "gw/admission.h"
#include "gw/audit.h"
#include "gw/catalogue.h"
#include "gw/config.h"
#include "gw/metrics.h"
#include "gw/registry.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "store/store.h"

struct proxy;
struct keys;
struct limits;
struct usage;
struct events;
struct history;
struct ui;

struct gw {
    uv_loop_t *loop;
    struct gw_config cfg;
    struct registry reg;
    struct metrics metrics;
    struct http_client *client;
    struct http_server *api_srv, *admin_srv;
    unsigned active_requests;     /* client requests being proxied */
    struct freelist proxy_spares; /* proxy.c: freed request states kept for reuse (no malloc) */
    struct admission admission;   /* proxy.c: requests waiting for capacity */
    struct prefix_cache *prefix;  /* proxy.c: the cache_aware policy's prefix table, or NULL */
    bool stopping;
    uint64_t started_ms;
    struct store *store;    /* NULL: nothing is persisted */
    uv_timer_t flush_timer; /* nodes_flush_start */
    struct ops *ops;        /* ops.c */
    struct load *loads;     /* loads.c: running cold loads and unloads */
    struct catalogue cat;   /* catalogue.c: the file's entries and the API's */
    uv_timer_t replicas_timer;
    struct keys *keys;       /* keys.c: the client key table */
    struct limits *limits;   /* limits.c: limits shared with other gateways; NULL otherwise */
    struct usage *usage;     /* usage.c: per-key usage waiting for the store, and its counters */
    struct audit audit;      /* audit.c: failed-authentication log limiter */
    struct events *events;   /* events.c: the live request log (NULL until started) */
    struct history *history; /* history.c: per-minute ring of the last day (events owns it) */
    struct ui *ui;           /* ui.c: dashboard sessions */
    struct sync *sync;       /* sync.c: several gateways on PostgreSQL; NULL otherwise */
    char origin[24];         /* sync.c: this process's name in change notifications and op leases */
    struct sync_pending *pending; /* sync.c: shared rows with a local write in the store's queue */
    size_t n_pending;
    bool is_leader; /* sync.c: fleet-wide periodic jobs run here (always true without sync) */
};

/* Milliseconds on the loop's clock (uv_now), for liveness, cooling, deadlines and timers.
 * Deliberately not base/clock: libuv caches this time once per loop iteration, so every
 * callback of one iteration sees the same instant, timers fire on this same clock, and reading
 * it costs no system call on the request path. Tests that need to move time use the registry
 * with explicit times instead. Stored timestamps use clock_wall_ms() (base/clock.h). */
static inline uint64_t gw_now_ms(const struct gw *g)
{
    return uv_now(g->loop);
}

/* Each module of src/gw/ declares its own functions in its own header (proxy.h, api.h,
 * admin.h, health.h, join.h, nodes.h, models.h, ops.h); this one holds only the context. */

#endif
