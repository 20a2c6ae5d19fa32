/* placement — the pure decisions of DESIGN §6 over the registry and the catalogue: can a node
 * ever serve a model (devices, VRAM, selector, engine, an agent to load through), can it load
 * it on request (an engine that loads, the files on disk, no recent failure), how much VRAM a
 * node has free, which idle models to evict to make room, and which node gets a cold load.
 * It also keeps the load backoff per (model, node) in the catalogue entry (docs/placement.md).
 * No I/O; the loop thread only (it reads registry state). */
#ifndef DROVER_GW_PLACEMENT_H
#define DROVER_GW_PLACEMENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/catalogue.h"
#include "gw/registry.h"

/* Why a node can never serve a model (bits); 0 when it could. */
enum {
    PLACE_NO_DEVICES = 1,    /* fewer devices than min_devices */
    PLACE_NO_VRAM = 2,       /* less total VRAM than min_vram_mb */
    PLACE_SELECTOR = 4,      /* labels do not match */
    PLACE_ENGINE = 8,        /* another engine than the entry asks for */
    PLACE_REMOVED = 16,      /* removed or pending */
    PLACE_COMPUTE = 32,      /* fewer devices than needed with min_compute_capability */
    PLACE_CUDA = 64,         /* the node's CUDA version is outside the entry's range (or none) */
    PLACE_DEVICE_NAME = 128, /* fewer devices than needed match device_name */
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

/* Loaded replicas of a model on nodes that are routable now (a node holding several counts
 * each, placement_replicas_on). */
unsigned placement_replicas(const struct registry *reg, const char *model, uint64_t now_ms);

/* Chooses models to unload from n so that need_mb fits: least recently used first, never a
 * model with requests in flight, never a pinned one, never one at or below its
 * replicas.min. Fills out (borrowed ids) and returns true when the plan frees enough; false
 * when even evicting every candidate would not (then *busy tells whether busy or protected
 * models are what stands in the way). */
bool placement_evict_plan(const struct catalogue *c, const struct registry *reg,
                          const struct node *n, uint64_t need_mb, uint64_t now_ms, const char **out,
                          size_t cap, size_t *n_out, bool *busy);

/* The same, choosing victims for model m: its fit is judged per device when the node reports
 * VRAM per device (a one-device model needs min_vram_mb on one device), and victims go in
 * the order of the node's eviction strategy (placement_set_eviction). loads_start uses it. */
bool placement_evict_plan_for(const struct catalogue *c, const struct registry *reg,
                              const struct node *n, const struct cat_model *m, uint64_t now_ms,
                              const char **out, size_t cap, size_t *n_out, bool *busy);

/* ---- hardware, devices and the per-device layout (issue 18) --------------------------------
 * What placement knows of a node's devices comes from its discovery (parsed once per change
 * of the text): per device name, VRAM, compute capability; per node CUDA/ROCm and driver.
 * Placement also keeps where each loaded model sits (a device, or spread over all for
 * min_devices >= 2), how many replicas of it the node holds (max_per_node), how often each
 * model was used (for LFU) and the node's load/unload cycles (for the defrag). */
enum place_evict { PLACE_EVICT_LRU, PLACE_EVICT_LFU, PLACE_EVICT_LARGEST_IDLE };
/* "lru", or "lfu", or "largest_idle", optionally followed by classes:
 * "lru; tier=big:largest_idle; zone=a,gpu=a10:lfu" — the first class whose labels all match a
 * node decides there, else the first word. NULL or "" resets to lru. Returns 0, or
 * GW_E_INVALID with why filled. */
int placement_set_eviction(const char *spec, char *why, size_t why_cap);
enum place_evict placement_eviction_for(const struct node *n);
const char *placement_evict_name(enum place_evict e);

/* Counts a use of each model whose last_used_ms moved since the last call (LFU counts the
 * passes in which a model was used, at the reconciler's period). */
void placement_observe(const struct registry *reg);
uint64_t placement_uses(const struct node *n, const char *model);

/* Replicas of model the node holds (0: none; a loaded model without record: 1). */
unsigned placement_replicas_on(const struct node *n, const char *model);
/* A load of model on n succeeded (registry_model_loaded first): held_before says the node held
 * it already, so it is one more replica (up to the entry's max_per_node). dev >= 0 places it
 * there (a defrag's reload); -1 lets placement choose a qualifying device with the most room
 * (as an engine spreads), which is also where a model it has not seen before is put. */
void placement_loaded(const struct catalogue *c, const struct node *n, const char *model, int dev,
                      bool held_before);
/* Free VRAM on device d of n by placement's layout; the largest over devices in *max_mb.
 * Returns the number of devices with known VRAM (0: only the node's total is known). */
size_t placement_device_free(const struct catalogue *c, const struct node *n, uint64_t *free_mb,
                             size_t cap, uint64_t *max_mb);

/* Load/unload cycles since the last defrag of the node. */
void placement_note_cycle(const struct node *n);
unsigned placement_cycles(const struct node *n);
/* The defrag of a node (cortex's defrag_after_cycles): after `after_cycles` load/unload
 * cycles, when nothing is in flight on the node and its free VRAM is split across devices so
 * that packing the idle one-device models (first fit, largest first) leaves a larger block
 * free, the plan unloads those that move and reloads each on its target device. Pinned and
 * spread models stay where they are. Returns false when no defrag is due. */
enum { PLACE_DEFRAG_MAX = 16 };
struct place_defrag {
    const char *ids[PLACE_DEFRAG_MAX]; /* borrowed from the node's list */
    int dev[PLACE_DEFRAG_MAX];         /* target devices */
    size_t n;
    uint64_t max_free_before_mb, max_free_after_mb;
};
bool placement_defrag_plan(const struct catalogue *c, const struct registry *reg,
                           const struct node *n, unsigned after_cycles, struct place_defrag *out);
/* The defrag ran: cycles start again, the moved models sit on their targets. */
void placement_defrag_done(const struct node *n);
/* Forgets everything placement keeps per node (tests). */
void placement_reset(void);

/* Does the engine behind an agent load models on request? Only Ollama does (the agent
 * answers 501 for llama.cpp, vLLM and OpenAI-compatible servers: they serve what they were
 * started with). */
bool placement_engine_loads(enum node_kind kind);

/* What a node can do for a model, most permanent reason first. */
enum place_state {
    PST_CAN_LOAD,    /* a load can be sent now (maybe after evicting idle models) */
    PST_LOADED,      /* the node holds it and is routable */
    PST_INFEASIBLE,  /* placement_infeasible() bits: never */
    PST_NO_AGENT,    /* a static node: nothing to load through */
    PST_ENGINE,      /* its engine cannot load on request */
    PST_NOT_ON_DISK, /* the engine loads only what is on its disk: install it first */
    PST_INSTALLING,  /* an install operation for (node, model) is queued: wait for it */
    PST_UNKNOWN,     /* the node's inventory is not known yet */
    PST_DOWN,        /* could serve or load it, but is not routable now */
    PST_BACKOFF,     /* a load there failed lately: not before the backoff ends */
    PST_SKIPPED,     /* the caller's skip (a load or unload runs there) */
    PST_FULL,        /* no room, even after evicting idle models */
};
struct place_verdict {
    enum place_state state;
    unsigned bits;        /* PST_INFEASIBLE: placement_infeasible() */
    bool needs_evict;     /* PST_CAN_LOAD: only after evicting */
    bool adds_replica;    /* PST_CAN_LOAD: the node holds it, below max_per_node */
    uint64_t free_mb;     /* PST_CAN_LOAD: free VRAM now */
    uint64_t retry_at_ms; /* PST_BACKOFF: when the backoff ends */
    const struct cat_load_backoff *backoff; /* PST_BACKOFF: the record (borrowed) */
};
/* Is an install operation of model on the node queued or running? The ops module answers
 * (placement_set_install_probe at start); without a probe no install is known, and a node
 * without the files is "not on disk". Either way no load goes there before the files do. */
typedef bool place_install_queued_fn(void *ctx, const char *node, const char *model);
void placement_set_install_probe(place_install_queued_fn *fn, void *ctx);

/* Judges one node for m. skip (may be NULL) rules out nodes the caller knows are busy. */
void placement_assess(const struct catalogue *c, const struct registry *reg,
                      const struct cat_model *m, const struct node *n, uint64_t now_ms,
                      bool (*skip)(const struct node *n, void *ctx), void *skip_ctx,
                      struct place_verdict *v);
/* A short human reason for the verdict ("engine llamacpp cannot load on request", "needs 2
 * devices, has 1", "can load"). Writes at most cap bytes (NUL included); returns out. */
const char *placement_describe(const struct cat_model *m, const struct node *n,
                               const struct place_verdict *v, char *out, size_t cap);
/* Why no node takes a load of m, node by node: "gpu-1: engine llamacpp cannot load on
 * request; gpu-2: needs 2 devices, has 1". Nodes that can load it or serve it now are left
 * out; past cap the text ends in "...". Returns the length written ("" and 0: no node). The
 * words carry no times, so the same situation gives the same text (logged once). */
size_t placement_explain(const struct catalogue *c, const struct registry *reg,
                         const struct cat_model *m, uint64_t now_ms, char *out, size_t cap);

/* Load backoff per (model, node): a failed load keeps the pair out for 30 s, doubling to
 * 15 min (as the ops queue, DESIGN §7), whatever other nodes are picked meanwhile. It ends
 * early when the node's loaded or on-disk list changes, when a load of the pair succeeds, or
 * by placement_forget_node (the admin's recover). placement_load_failed returns the delay. */
uint64_t placement_load_failed(struct cat_model *m, const struct node *n, uint64_t now_ms,
                               const char *why);
void placement_load_ok(struct cat_model *m, const struct node *n);
/* The pair's backoff when it is in force now, else NULL (borrowed). */
const struct cat_load_backoff *placement_backoff(const struct cat_model *m, const struct node *n,
                                                 uint64_t now_ms);
/* Forgets every backoff of the node (any model) and lets the reconciler look again at once.
 * For the admin's recover, a re-join, a removal. Returns how many records it dropped. */
size_t placement_forget_node(struct catalogue *c, const char *node);
/* A fingerprint of the node's loaded and on-disk lists (order does not matter). */
uint64_t placement_inventory_print(const struct node *n);

/* The node for a cold load of m: among nodes where placement_assess says PST_CAN_LOAD
 * (skip, when given, is excluded: nodes with a load running, say): those with room now
 * first, then those that need evicting; the files on disk are required (an engine that
 * loads only what it has). Most free VRAM first within each.
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
/* The same with everything the reconciler wants to know when no node is found. */
struct place_pick {
    struct node *node; /* NULL when none */
    bool needs_evict;
    enum place_none why;  /* node NULL: as placement_pick_cold (waiting counts as unhealthy) */
    bool waiting;         /* node NULL only because of installs queued or load backoffs */
    uint64_t retry_at_ms; /* the earliest backoff end that stands in the way; 0: none */
};
void placement_pick(const struct catalogue *c, const struct registry *reg,
                    const struct cat_model *m, uint64_t now_ms,
                    bool (*skip)(const struct node *n, void *ctx), void *skip_ctx,
                    struct place_pick *out);

#endif
