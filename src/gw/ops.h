/* ops.h — durable fleet operations (docs/ops.md). The loop thread only. */
#ifndef DROVER_GW_OPS_H
#define DROVER_GW_OPS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/gw.h"

/* ops.c: durable fleet operations (docs/ops.md). */
int ops_start(struct gw *g, struct gw_error *err) WUR; /* load, prune, start the reconciler */
void ops_stop(struct gw *g);
void ops_tick(struct gw *g); /* one reconciler pass (the timer calls it) */
void ops_admin(struct gw *g, struct http_request *req, struct strv rest); /* /admin/v1/ops… */
void ops_testing_clock(struct gw *g, struct http_request *req);
int64_t ops_now_ms(const struct gw *g);
/* Several gateways (sync.c): this gateway became the leader (prunes rows whose node or target is
 * gone); a row as another gateway left it (row NULL: not in ops; dead: its dead letter, or
 * NULL); every row after a reconnection. */
struct store_op;
void ops_on_leader(struct gw *g);
void ops_apply_remote(struct gw *g, int64_t id, const struct store_op *row,
                      const struct store_op *dead);
void ops_resync(struct gw *g, const struct store_op *rows, size_t n, const struct store_op *dead,
                size_t n_dead); /* wall ms + the testing offset */
/* GET /admin/v1/inventory (target NULL) and /admin/v1/inventory/upgrades?target=… */
void ops_inventory(struct gw *g, struct http_request *req, const char *target);

#endif
