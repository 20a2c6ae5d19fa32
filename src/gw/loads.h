/* loads — cold loads and unloads through agents (DESIGN §6): one per model and node at a
 * time, eviction before the load, waiters woken when it ends. The loop thread only. */
#ifndef DROVER_GW_LOADS_H
#define DROVER_GW_LOADS_H
#include <stdbool.h>
#include <stddef.h>

struct gw;
struct node;

/* Called once when the load ends: ok, or why it failed. */
typedef void load_done_fn(void *ctx, bool ok, const char *why);

/* Starts unloading evict[] (in order), then loading model on n, unless that load already
 * runs. options_json (may be NULL) goes to the agent. */
void loads_start(struct gw *g, struct node *n, const char *model, const char *options_json,
                 const char *const *evict, size_t n_evict);
/* Unloads model from n (an idle extra replica). */
void loads_unload(struct gw *g, struct node *n, const char *model);
/* Is a load of model running (on n, or anywhere when n is NULL)? */
bool loads_running(struct gw *g, const char *model, const struct node *n);
bool loads_busy_node(struct gw *g, const struct node *n);
unsigned loads_count(struct gw *g, const char *model);
/* Waits on a running load of model (any node); false when none runs. loads_unwait drops
 * every wait registered with ctx. */
bool loads_wait(struct gw *g, const char *model, load_done_fn *fn, void *ctx);
void loads_unwait(struct gw *g, void *ctx);
/* Once per reconciler pass: applies placement.eviction when it changed, counts model uses
 * (LFU), and starts a defrag on a quiet node that is due one (placement.defrag_after_cycles;
 * a defrag job unloads the models that move and reloads each on its target device). */
void loads_tick(struct gw *g);
/* Cancels every job (shutdown); waiters hear "stopping". */
void loads_stop(struct gw *g);

#endif
