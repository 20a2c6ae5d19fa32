/* router — picks the node for one attempt (DESIGN §3, §5): among routable nodes that have
 * the model, are not saturated (cooled or at their concurrency limit) and were not tried yet,
 * the one with the fewest in-flight requests; round-robin on ties. Nodes a mark says lack
 * what the request needs are a last resort, and when fewer than panic_percent of the model's
 * replicas are healthy, replicas that are down but not excluded are tried after them. When
 * none fits it says why, so the caller can answer with the right status of §5. Pure over the
 * registry; the loop thread only. */
#ifndef DROVER_GW_ROUTER_H
#define DROVER_GW_ROUTER_H
#include <stdbool.h>
#include <stdint.h>

#include "base/strv.h"
#include "gw/registry.h"

struct cat_model;

enum route_status {
    ROUTE_OK = 0,
    ROUTE_MODEL_NOT_FOUND,    /* no node, in any state, lists the model */
    ROUTE_NO_HEALTHY_NODES,   /* no node is routable at all */
    ROUTE_FEASIBLE_UNHEALTHY, /* nodes have the model but none is routable now */
    ROUTE_CAPACITY,           /* every node with the model is busy (cooled or at its limit) */
    ROUTE_CAPABILITY_MISSING, /* every node with the model lacks the capability */
    ROUTE_EXHAUSTED,          /* every candidate was already tried by this request */
};

struct route_query {
    struct strv model;
    unsigned cap;                /* CAP_* the request needs: its primary capability and the
                                    optional features it uses */
    bool ollama_only;            /* native Ollama API: only Ollama nodes */
    const struct cat_model *cat; /* the catalogue entry, or NULL: its selector, engine and
                                    hardware needs are honoured even for loaded replicas */
    struct node *const *tried;   /* nodes this request already tried (not picked again) */
    size_t n_tried;
    uint64_t now_ms;
};

enum route_tier {
    TIER_NORMAL = 0, /* routable, nothing against it */
    TIER_MARKED,     /* routable, but a mark says it lacks what the request needs: last resort */
    TIER_PANIC,      /* not alive now, tried because too few replicas are healthy (Envoy's panic
                        routing) */
};

struct route_result {
    enum route_status status;
    struct node *node;      /* ROUTE_OK: borrowed */
    enum route_tier tier;   /* ROUTE_OK: why this node */
    uint64_t retry_after_s; /* for ROUTE_CAPACITY and the 503s */
    uint64_t wait_ms;       /* ROUTE_CAPACITY: when a busy node likely frees (at least 1) */
};

void router_pick(struct registry *reg, const struct route_query *q, struct route_result *out);
const char *route_status_name(enum route_status s);

#endif
