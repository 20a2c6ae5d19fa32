/* api.h — the client listener. The loop thread only. */
#ifndef DROVER_GW_API_H
#define DROVER_GW_API_H
#include <stdbool.h>
#include <stdint.h>

#include "gw/gw.h"

/* api.c: the client listener's handler (routes to proxy or answers itself). */
void api_handle(struct http_request *req, void *ctx);

/* api.c: constant-time check of "Authorization: Bearer <want>". */
bool gw_bearer_matches(const struct http_request *req, const char *want);

/* /healthz and /readyz, answered on both listeners without a token; false for other paths. */
bool api_probe_route(struct gw *g, struct http_request *req);

#endif
