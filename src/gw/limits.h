/* limits — client keys' limits shared by several gateways on one PostgreSQL (DESIGN §9, §10;
 * docs/deploy.md "Client keys and limits"). Every keys.sync_interval (250 ms) and soon after a
 * refusal (at most every 20 ms), one job on the store thread reconciles every key with limits:
 * this gateway gives back what it did not spend of its allowances and takes the next ones from
 * the fleet's buckets, adds its consumption to the fleet's counters and reads the budgets' fleet
 * totals (keys_fleet_report / keys_fleet_apply do the keys' part). Never on the request path: a
 * round that fails (the store away) leaves everything to the next one. Nothing runs on SQLite
 * (one gateway enforces its limits alone). The loop thread only. */
#ifndef DROVER_GW_LIMITS_H
#define DROVER_GW_LIMITS_H
#include "gw/gw.h"

/* Starts the rounds when the gateway shares its store (g->sync); otherwise does nothing. */
int limits_start(struct gw *g) WUR;
/* Stops the rounds; a last one gives back what this gateway holds (the store runs it before it
 * closes). */
void limits_stop(struct gw *g);
/* A request was refused for want of an allowance: reconcile soon. No-op without rounds. */
void limits_wake(struct gw *g);

#endif
