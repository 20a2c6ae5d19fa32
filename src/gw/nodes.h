/* nodes.h — the registry's rows in the store, and calls to a node's agent. The loop thread only. */
#ifndef DROVER_GW_NODES_H
#define DROVER_GW_NODES_H
#include <stdbool.h>
#include <stdint.h>

#include "gw/gw.h"

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

#endif
