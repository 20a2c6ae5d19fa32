/* router — least in-flight with round-robin ties. One pass over the nodes that list the model
 * (the registry's model index, so the cost follows the model's replicas, not the fleet); the
 * reasons for failure are collected on the way so the caller gets the most useful answer of
 * §5. Only a failure looks at the rest of the fleet (404 against 503). */
#include "gw/router.h"

#include "gw/placement.h"

const char *route_status_name(enum route_status s)
{
    static const char *const names[] = {
        "ok",       "model_not_found",    "no_healthy_nodes", "feasible_node_unhealthy",
        "capacity", "capability_missing", "exhausted"};
    return (unsigned)s <= ROUTE_EXHAUSTED ? names[s] : "?";
}

static bool was_tried(const struct route_query *q, const struct node *n)
{
    for (size_t i = 0; i < q->n_tried; i++)
        if (q->tried[i] == n) return true;
    return false;
}

/* Skips what the query rules out before liveness is even looked at. */
static bool filtered_out(const struct route_query *q, const struct node *nd)
{
    if (nd->admin == ADMIN_REMOVED) return true;
    if (q->ollama_only && nd->kind != NODE_KIND_OLLAMA) return true;
    return q->cat && (placement_infeasible(q->cat, nd) & ~(unsigned)PLACE_REMOVED);
}

/* Whether any node the query may use is routable at all: only the failure answers need it
 * (404 "no such model" against 503 "no healthy node"), so it is a scan of its own. */
static bool any_node_routable(struct registry *reg, const struct route_query *q)
{
    for (size_t i = 0; i < reg->n; i++) {
        const struct node *nd = reg->nodes[i];
        if (!filtered_out(q, nd) && node_is_routable(reg, nd, q->now_ms)) return true;
    }
    return false;
}

struct pick {
    struct node *best[3]; /* per tier */
};

static void consider(struct pick *pk, enum route_tier t, struct node *nd)
{
    if (!pk->best[t] || nd->inflight < pk->best[t]->inflight) pk->best[t] = nd;
}

void router_pick(struct registry *reg, const struct route_query *q, struct route_result *out)
{
    out->node = NULL;
    out->retry_after_s = 0;
    out->wait_ms = 0;
    out->tier = TIER_NORMAL;
    /* Only the nodes that list the model are candidates (the model index); among them the
     * least in-flight wins, ties broken by a round-robin start. */
    const struct model_nodes *mn = registry_model_nodes(reg, q->model);
    size_t n = mn ? mn->n : 0;
    bool any_has_model = false, any_untried = false, any_busy = false;
    size_t n_eligible = 0, n_alive = 0; /* replicas not excluded or drained; alive among them */
    uint64_t min_wait_ms = UINT64_MAX;
    struct pick pk = {{NULL, NULL, NULL}};
    size_t start = n ? (size_t)(reg->rr % n) : 0;

    for (size_t k = 0, i = start; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
        const struct model_slot *sl = &mn->slots[i];
        struct node *nd = sl->node;
        if (filtered_out(q, nd)) continue;
        any_has_model = true;
        bool routable = node_is_routable(reg, nd, q->now_ms);
        bool panic = !routable && node_is_panic_candidate(nd);
        if (!routable && !panic) continue;
        n_eligible++;
        n_alive += routable;
        if (was_tried(q, nd)) continue;
        any_untried = true;
        if (node_is_saturated(nd, q->now_ms)) {
            any_busy = true;
            uint64_t w = registry_expected_wait_ms(nd, q->now_ms);
            if (w < min_wait_ms) min_wait_ms = w;
            continue;
        }
        enum route_tier t = panic                                             ? TIER_PANIC
                            : model_marks_block(sl->model, q->cap, q->now_ms) ? TIER_MARKED
                                                                              : TIER_NORMAL;
        consider(&pk, t, nd);
        if (t == TIER_NORMAL && nd->inflight == 0) break; /* nothing beats an idle node */
    }
    /* Panic routing: the unhealthy replicas are tried only when too few are healthy. */
    bool panic_ok = n_eligible && n_alive * 100 < (size_t)reg->cfg.panic_percent * n_eligible;
    struct node *best = pk.best[TIER_NORMAL];
    enum route_tier tier = TIER_NORMAL;
    if (!best && pk.best[TIER_MARKED]) best = pk.best[tier = TIER_MARKED];
    if (!best && panic_ok && pk.best[TIER_PANIC]) best = pk.best[tier = TIER_PANIC];
    if (best) {
        reg->rr++;
        out->status = ROUTE_OK;
        out->node = best;
        out->tier = tier;
        return;
    }
    if (!any_has_model) {
        bool any_routable = any_node_routable(reg, q);
        out->status = any_routable ? ROUTE_MODEL_NOT_FOUND : ROUTE_NO_HEALTHY_NODES;
        if (!any_routable) out->retry_after_s = 5;
        return;
    }
    if (n_alive == 0 && !(panic_ok && any_busy)) {
        bool any_routable = any_node_routable(reg, q);
        out->status = any_routable ? ROUTE_FEASIBLE_UNHEALTHY : ROUTE_NO_HEALTHY_NODES;
        out->retry_after_s = any_routable ? 3 : 5;
        return;
    }
    if (!any_untried || !any_busy) {
        out->status = ROUTE_EXHAUSTED;
        return;
    }
    out->status = ROUTE_CAPACITY;
    out->wait_ms = min_wait_ms == UINT64_MAX ? 1000 : min_wait_ms;
    out->retry_after_s = (out->wait_ms + 999) / 1000;
    if (out->retry_after_s == 0) out->retry_after_s = 1;
}
