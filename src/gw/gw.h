/* gw — the gateway's one context object, owned by `drover serve` and shared by the modules
 * of src/gw/. Everything in it belongs to the loop thread (DESIGN §2: no locks in gw/). */
#ifndef DROVER_GW_GW_H
#define DROVER_GW_GW_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gw/admission.h"
#include "gw/catalogue.h"
#include "gw/config.h"
#include "gw/metrics.h"
#include "gw/registry.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "store/store.h"

struct proxy;

struct gw {
    uv_loop_t *loop;
    struct gw_config cfg;
    struct registry reg;
    struct metrics metrics;
    struct http_client *client;
    struct http_server *api_srv, *admin_srv;
    unsigned active_requests;   /* client requests being proxied */
    struct proxy *proxy_spares; /* proxy.c: freed request states kept for reuse (no malloc) */
    unsigned n_proxy_spares;
    struct admission admission; /* proxy.c: requests waiting for capacity */
    bool stopping;
    uint64_t started_ms;
    struct store *store;    /* NULL: nothing is persisted */
    uv_timer_t flush_timer; /* nodes_flush_start */
    struct ops *ops;        /* ops.c */
    struct load *loads;     /* loads.c: running cold loads and unloads */
    struct catalogue cat;   /* catalogue.c: the file's entries and the API's */
    uv_timer_t replicas_timer;
};

/* Milliseconds on the loop's clock (uv_now); tests that need to move time use the registry
 * with explicit times instead. */
static inline uint64_t gw_now_ms(const struct gw *g)
{
    return uv_now(g->loop);
}

/* proxy.c: the client API's data path. */
void proxy_handle(struct gw *g, struct http_request *req);
void proxy_free_spares(struct gw *g);
/* Starts (idempotent) and stops the admission queue; stop before the loop ends. */
void proxy_start(struct gw *g);
void proxy_stop(struct gw *g);
/* api.c: the client listener's handler (routes to proxy or answers itself). */
void api_handle(struct http_request *req, void *ctx);
/* admin.c: the admin listener's handler. */
void admin_handle(struct http_request *req, void *ctx);
/* health.c: active probes. */
void health_start(struct gw *g);
void health_stop(struct gw *g);
void health_attach(struct gw *g, struct node *n); /* starts probing a new node */
void health_probe_now(struct gw *g, struct node *n);

/* api.c: constant-time check of "Authorization: Bearer <want>". */
bool gw_bearer_matches(const struct http_request *req, const char *want);

/* join.c: POST /drover/v1/nodes/join (docs/node_api.md). */
void join_handle(struct gw *g, struct http_request *req);
bool gw_name_is_valid(struct strv s);
bool gw_label_key_is_valid(struct strv s);
bool gw_label_value_is_valid(struct strv s);

/* nodes.c: the registry's rows in the store. */
int nodes_load(struct gw *g, struct gw_error *err) WUR; /* start-up: rows, then the file */
/* Writes n's row (async); done (may be NULL) runs after the commit. */
void nodes_persist(struct gw *g, struct node *n, store_done_fn done, void *ctx);
/* Writes n's row, then answers req with status and body (taken); a failed write answers 500
 * store_error instead. */
void nodes_persist_reply(struct gw *g, struct node *n, struct http_request *req, int status,
                         struct buf *body);
void nodes_flush_dirty(struct gw *g);
/* A call to a node's agent with the gateway key (Bearer H) and, with a body, a JSON content
 * type; the http_client_request contract (callbacks only when it returns 0). */
int gw_agent_call(struct gw *g, const struct node *n, const char *method, const char *path,
                  struct strv body, uint64_t timeout_ms, const struct http_client_callbacks *cbs,
                  void *ctx, struct http_call **out) WUR;
void nodes_flush_start(struct gw *g);
void nodes_flush_stop(struct gw *g);

/* models.c: the catalogue at run time and the replicas reconciler (DESIGN §6). */
int models_load(struct gw *g, struct gw_error *err) WUR; /* the store's entries, then the file's */
void models_apply_config(struct gw *g);                  /* after a reload */
void models_admin(struct gw *g, struct http_request *req, struct strv rest); /* /admin/v1/models… */
int models_where_json(struct gw *g, const struct cat_model *m, struct buf *b) WUR;
void models_reconcile(struct gw *g); /* one pass (the timer calls it) */
void models_start(struct gw *g);
void models_stop(struct gw *g);

/* ops.c: durable fleet operations (docs/ops.md). */
int ops_start(struct gw *g, struct gw_error *err) WUR; /* load, prune, start the reconciler */
void ops_stop(struct gw *g);
void ops_tick(struct gw *g); /* one reconciler pass (the timer calls it) */
void ops_admin(struct gw *g, struct http_request *req, struct strv rest); /* /admin/v1/ops… */
void ops_testing_clock(struct gw *g, struct http_request *req);
int64_t ops_now_ms(const struct gw *g); /* wall ms + the testing offset */
/* GET /admin/v1/inventory (target NULL) and /admin/v1/inventory/upgrades?target=… */
void ops_inventory(struct gw *g, struct http_request *req, const char *target);

#endif
