/* health.h — active probes of every node. The loop thread only. */
#ifndef DROVER_GW_HEALTH_H
#define DROVER_GW_HEALTH_H
#include <stdbool.h>
#include <stdint.h>

#include "gw/gw.h"

/* health.c: active probes. */
void health_start(struct gw *g);
void health_stop(struct gw *g);
void health_attach(struct gw *g, struct node *n); /* starts probing a new node */
void health_probe_now(struct gw *g, struct node *n);

#endif
