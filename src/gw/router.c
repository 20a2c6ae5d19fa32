/* router — least in-flight with round-robin ties. One pass over the nodes; the reasons for
 * failure are collected on the way so the caller gets the most useful answer of §5. */
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

void router_pick(struct registry *reg, const struct route_query *q, struct route_result *out)
{
    out->node = NULL;
    out->retry_after_s = 0;
    size_t n = reg->n;
    bool any_routable = false, any_has_model = false, any_has_model_routable = false;
    bool any_capable = false, any_untried = false;
    uint64_t min_cool_ms = UINT64_MAX;
    struct node *best = NULL;
    size_t start = n ? (size_t)(reg->rr % n) : 0;

    for (size_t k = 0; k < n; k++) {
        struct node *nd = reg->nodes[(start + k) % n];
        if (nd->admin == ADMIN_REMOVED) continue;
        if (q->ollama_only && nd->kind != NODE_KIND_OLLAMA) continue;
        if (q->cat && (placement_infeasible(q->cat, nd) & ~(unsigned)PLACE_REMOVED)) continue;
        bool routable = node_is_routable(reg, nd, q->now_ms);
        any_routable |= routable;
        struct node_model *m = node_model_find(nd, q->model);
        if (!m) continue;
        any_has_model = true;
        if (!routable) continue;
        any_has_model_routable = true;
        if (m->caps_absent & q->cap) continue;
        any_capable = true;
        if (was_tried(q, nd)) continue;
        any_untried = true;
        if (node_is_cooled(nd, q->now_ms)) {
            uint64_t left = nd->cooled_until_ms - q->now_ms;
            if (left < min_cool_ms) min_cool_ms = left;
            continue;
        }
        if (!best || nd->inflight < best->inflight) best = nd;
    }
    if (best) {
        reg->rr++;
        out->status = ROUTE_OK;
        out->node = best;
        return;
    }
    if (!any_has_model) {
        out->status = any_routable ? ROUTE_MODEL_NOT_FOUND : ROUTE_NO_HEALTHY_NODES;
        if (!any_routable) out->retry_after_s = 5;
        return;
    }
    if (!any_has_model_routable) {
        out->status = any_routable ? ROUTE_FEASIBLE_UNHEALTHY : ROUTE_NO_HEALTHY_NODES;
        out->retry_after_s = any_routable ? 3 : 5;
        return;
    }
    if (!any_capable) {
        out->status = ROUTE_CAPABILITY_MISSING;
        return;
    }
    if (!any_untried) {
        out->status = ROUTE_EXHAUSTED;
        return;
    }
    out->status = ROUTE_CAPACITY;
    out->retry_after_s = min_cool_ms == UINT64_MAX ? 1 : (min_cool_ms + 999) / 1000;
    if (out->retry_after_s == 0) out->retry_after_s = 1;
}
