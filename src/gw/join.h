/* join.h — nodes joining through their agent (docs/node_api.md). The loop thread only. */
#ifndef DROVER_GW_JOIN_H
#define DROVER_GW_JOIN_H
#include <stdbool.h>
#include <stdint.h>

#include "gw/gw.h"

/* join.c: POST /drover/v1/nodes/join (docs/node_api.md). */
void join_handle(struct gw *g, struct http_request *req);
/* The label checks of node_api_label_*_is_valid, for the admin API. */
bool gw_label_key_is_valid(struct strv s);
bool gw_label_value_is_valid(struct strv s);

#endif
