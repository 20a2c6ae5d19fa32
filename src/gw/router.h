/* router — picks the node for one attempt (DESIGN §3, §5): among routable nodes that have
 * the model, are not cooling down, were not tried yet and did not prove they lack the
 * capability, the one with the fewest in-flight requests; round-robin on ties. When none
 * fits it says why, so the caller can answer with the right status of §5. Pure over the
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
    ROUTE_CAPACITY,           /* every node with the model is cooling down (busy) */
    ROUTE_CAPABILITY_MISSING, /* every node with the model lacks the capability */
    ROUTE_EXHAUSTED,          /* every candidate was already tried by this request */
};

struct route_query {
    struct strv model;
    unsigned cap;                /* CAP_* the request needs */
    bool ollama_only;            /* native Ollama API: only Ollama nodes */
    const struct cat_model *cat; /* the catalogue entry, or NULL: its selector, engine and
                                    hardware needs are honoured even for loaded replicas */
    struct node *const *tried;   /* nodes this request already tried (not picked again) */
    size_t n_tried;
    uint64_t now_ms;
};

struct route_result {
    enum route_status status;
    struct node *node;      /* ROUTE_OK: borrowed */
    uint64_t retry_after_s; /* for ROUTE_CAPACITY and the 503s */
};

void router_pick(struct registry *reg, const struct route_query *q, struct route_result *out);
const char *route_status_name(enum route_status s);

#endif
