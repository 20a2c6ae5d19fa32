/* catalogue — the models the operator declares (DESIGN §6): id, aliases, engine,
 * capabilities, min_devices, min_vram_mb, selector, replicas {min, max}, pinned, engine
 * load options, device constraints (min_compute_capability, cuda_version {min, max},
 * device_name glob) and max_per_node. Entries come from the config file (owned by it) or the admin
 * API (persisted in the store). One validator serves both: the YAML entry is turned into JSON
 * first, so the admin API and the file refuse exactly the same things, naming the field. The loop
 * thread only. */
#ifndef DROVER_GW_CATALOGUE_H
#define DROVER_GW_CATALOGUE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/strv.h"
#include "gw/registry.h"

struct json_object;
struct ynode;

enum { CAT_MAX_ALIASES = 16, CAT_MAX_SELECTOR = 16, CAT_MAX_ID = 200 };

/* A failed load of the model on one node (placement.c keeps these). */
struct cat_load_backoff {
    char *node; /* owned name */
    unsigned failures;
    uint64_t until_ms;
    uint64_t print; /* placement_inventory_print() of the node at the last failure */
    char why[120];
};

struct cat_model {
    char *id;       /* owned */
    char **aliases; /* owned */
    size_t n_aliases;
    int engine;    /* -1: any; else enum node_kind */
    unsigned caps; /* CAP_* the model has; 0 when not declared (assume all) */
    unsigned min_devices;
    uint64_t min_vram_mb;
    struct node_label *selector; /* owned; every label must match */
    size_t n_selector;
    unsigned replicas_min, replicas_max; /* max 0: no upper bound */
    bool pinned;                         /* never evicted */
    char *load_options_json;             /* owned JSON object, or NULL */
    int routing; /* enum route_policy (router.h) for this model; 0: the global routing.policy */
    bool from_config;
    /* device constraints (issue 18): "" when not asked */
    char min_compute_capability[16]; /* "8.0": at least min_devices devices have it or more */
    char cuda_min[32], cuda_max[32]; /* the node's CUDA version within [min, max] (inclusive) */
    char device_name[128];           /* glob (fnmatch) at least min_devices devices match */
    unsigned max_per_node;           /* replicas one node may hold (default 1) */

    /* the reconciler's memory */
    uint64_t backoff_until_ms;
    unsigned backoff_failures;
    uint64_t seen_generation;
    char last_why[512];
    struct cat_load_backoff *load_backoff; /* owned; per node, placement.c */
    size_t n_load_backoff;
};

struct catalogue {
    struct cat_model **v; /* owned */
    size_t n;
};

void cat_model_free(struct cat_model *m);
void catalogue_free(struct catalogue *c);

/* Validates and builds an entry from a JSON object. On error returns GW_E_INVALID with the
 * field's name in field ("replicas.min") and the reason in why. */
int cat_model_from_json(struct json_object *o, struct cat_model **out, char *field,
                        size_t field_cap, char *why, size_t why_cap);
/* The same from a YAML mapping of the config file's `models:` list. */
int cat_model_from_yaml(const struct ynode *m, struct cat_model **out, char *field,
                        size_t field_cap, int *line, char *why, size_t why_cap);
int cat_model_to_json(const struct cat_model *m, struct buf *b);

/* By id or alias; NULL when unknown. */
struct cat_model *catalogue_find(const struct catalogue *c, struct strv id_or_alias);
/* Replaces or adds (takes m); a replaced entry's reconciler backoff is not carried over. */
void catalogue_put(struct catalogue *c, struct cat_model *m);
bool catalogue_remove(struct catalogue *c, const char *id);
/* Does any other entry use one of m's names (id or alias)? Returns that name or NULL. */
const char *catalogue_name_clash(const struct catalogue *c, const struct cat_model *m);

/* True when the node's labels carry every label of the selector. */
bool cat_selector_matches(const struct cat_model *m, const struct node *n);

#endif
