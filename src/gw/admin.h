/* admin.h — the admin listener. The loop thread only. */
#ifndef DROVER_GW_ADMIN_H
#define DROVER_GW_ADMIN_H
#include <stdbool.h>
#include <stdint.h>

#include "gw/gw.h"

/* admin.c: the admin listener's handler. */
void admin_handle(struct http_request *req, void *ctx);

#endif
