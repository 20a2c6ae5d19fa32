/* placement — the pure decisions of DESIGN §6 over the registry and the catalogue: can a node
 * ever serve a model (devices, VRAM, selector, engine, an agent to load through), how much
 * VRAM a node has free, which idle models to evict to make room, and which node gets a cold
 * load. No I/O; the loop thread only (it reads registry state). */
#ifndef DROVER_GW_PLACEMENT_H
#define DROVER_GW_PLACEMENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/catalogue.h"
#include "gw/registry.h"

/* Why a node can never serve a model (bits); 0 when it could. */
enum {
    PLACE_NO_DEVICES = 1, /* fewer devices than min_devices */
    PLACE_NO_VRAM = 2,    /* less total VRAM than min_vram_mb */
    PLACE_SELECTOR = 4,   /* labels do not match */
    PLACE_ENGINE = 8,     /* another engine than the entry asks for */
    PLACE_REMOVED = 16,   /* removed or pending */
};
unsigned placement_infeasible(const struct cat_model *m, const struct node *n);
/* Human words for the first reason in bits. */
const char *placement_reason(unsigned bits);

/* VRAM the model takes on the node: the catalogue's min_vram_mb, else what the node
 * reported, else 0. */
uint64_t placement_need_mb(const struct catalogue *c, const struct node *n, const char *model);
/* VRAM in use by the node's loaded models (by placement_need_mb) and what is left. */
uint64_t placement_used_mb(const struct catalogue *c, const struct node *n);
uint64_t placement_free_mb(const struct catalogue *c, const struct node *n);

/* Loaded replicas of a model on nodes that are routable now. */
unsigned placement_replicas(const struct registry *reg, const char *model, uint64_t now_ms);

/* Chooses models to unload from n so that need_mb fits: least recently used first, never a
 * model with requests in flight, never a pinned one, never one at or below its
 * replicas.min. Fills out (borrowed ids) and returns true when the plan frees enough; false
 * when even evicting every candidate would not (then *busy tells whether busy or protected
 * models are what stands in the way). */
bool placement_evict_plan(const struct catalogue *c, const struct registry *reg,
                          const struct node *n, uint64_t need_mb, uint64_t now_ms, const char **out,
                          size_t cap, size_t *n_out, bool *busy);

/* The node for a cold load of m: among routable agent nodes where m is feasible and not
 * loaded (skip, when given, is excluded: nodes with a load running, say): first those that
 * have it on disk and room now, then room now, then on disk after evicting idle models, then
 * after evicting; most free VRAM first within each.
 * NULL when none; *why then says whether any feasible node exists at all. */
enum place_none {
    PLACE_NONE_INFEASIBLE, /* no node could ever hold it */
    PLACE_NONE_UNHEALTHY,  /* some could, none is routable now */
    PLACE_NONE_HELD,       /* every routable feasible node already holds it (or is loading) */
    PLACE_NONE_FULL,       /* the others are full of busy or protected models */
};
struct node *placement_pick_cold(const struct catalogue *c, const struct registry *reg,
                                 const struct cat_model *m, uint64_t now_ms,
                                 bool (*skip)(const struct node *n, void *ctx), void *skip_ctx,
                                 bool *needs_evict, enum place_none *why);

#endif
