/* nodes.h — the registry's rows in the store. The loop thread only. */
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
/* Several gateways (sync.c): the stored row of node name as another gateway left it (NULL:
 * deleted); applies only what is shared (admin intent, identity, labels). nodes_resync applies
 * every row and tombstones joined nodes that no longer have one. */
void nodes_apply_remote(struct gw *g, const char *name, const struct store_node *row);
void nodes_resync(struct gw *g, const struct store_node *rows, size_t n);
void nodes_flush_start(struct gw *g);
void nodes_flush_stop(struct gw *g);

#endif
