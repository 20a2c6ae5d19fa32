/* models.h — the catalogue at run time and the replicas reconciler. The loop thread only. */
#ifndef DROVER_GW_MODELS_H
#define DROVER_GW_MODELS_H
#include <stdbool.h>
#include <stdint.h>

#include "gw/gw.h"

/* models.c: the catalogue at run time and the replicas reconciler (DESIGN §6). */
int models_load(struct gw *g, struct gw_error *err) WUR; /* the store's entries, then the file's */
void models_apply_config(struct gw *g);                  /* after a reload */
void models_admin(struct gw *g, struct http_request *req, struct strv rest); /* /admin/v1/models… */
int models_where_json(struct gw *g, const struct cat_model *m, struct buf *b) WUR;
void models_reconcile(struct gw *g); /* one pass (the timer calls it) */
void models_start(struct gw *g);
/* Several gateways (sync.c): entry id as stored by another gateway (json NULL: deleted); the
 * file's entries win. models_resync applies every row and drops API entries without one. */
struct store_cat_row;
void models_apply_remote(struct gw *g, const char *id, const char *json);
void models_resync(struct gw *g, const struct store_cat_row *rows, size_t n);
void models_stop(struct gw *g);

#endif
