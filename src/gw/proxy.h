/* proxy.h — the client API's data path (docs/gateway.md). The loop thread only. */
#ifndef DROVER_GW_PROXY_H
#define DROVER_GW_PROXY_H
#include <stdbool.h>
#include <stdint.h>

#include "gw/gw.h"

/* proxy.c: the client API's data path. */
void proxy_handle(struct gw *g, struct http_request *req);
void proxy_free_spares(struct gw *g);
/* Starts (idempotent) and stops the admission queue; stop before the loop ends. */
void proxy_start(struct gw *g);
void proxy_stop(struct gw *g);

#endif
