/* gw — the gateway's one context object, owned by `drover serve` and shared by the modules
 * of src/gw/. Everything in it belongs to the loop thread (DESIGN §2: no locks in gw/). */
#ifndef DROVER_GW_GW_H
#define DROVER_GW_GW_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gw/config.h"
#include "gw/metrics.h"
#include "gw/registry.h"
#include "net/http_client.h"
#include "net/http_server.h"

struct gw {
    uv_loop_t *loop;
    struct gw_config cfg;
    struct registry reg;
    struct metrics metrics;
    struct http_client *client;
    struct http_server *api_srv, *admin_srv;
    unsigned active_requests; /* client requests being proxied */
    bool stopping;
    uint64_t started_ms;
};

/* Milliseconds on the loop's clock (uv_now); tests that need to move time use the registry
 * with explicit times instead. */
static inline uint64_t gw_now_ms(const struct gw *g)
{
    return uv_now(g->loop);
}

/* proxy.c: the client API's data path. */
void proxy_handle(struct gw *g, struct http_request *req);
/* api.c: the client listener's handler (routes to proxy or answers itself). */
void api_handle(struct http_request *req, void *ctx);
/* admin.c: the admin listener's handler. */
void admin_handle(struct http_request *req, void *ctx);
/* health.c: active probes. */
void health_start(struct gw *g);
void health_stop(struct gw *g);
void health_attach(struct gw *g, struct node *n); /* starts probing a new node */
void health_probe_now(struct gw *g, struct node *n);

#endif
