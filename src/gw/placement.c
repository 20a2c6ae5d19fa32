/* placement — feasibility, VRAM accounting, eviction choice and cold-load choice (DESIGN §6).
 * Pure over registry and catalogue; table-driven tests in tests/unit/test_placement.c. */
#include "gw/placement.h"

#include <string.h>

unsigned placement_infeasible(const struct cat_model *m, const struct node *n)
{
    unsigned bits = 0;
    if (n->admin == ADMIN_REMOVED || n->admin == ADMIN_PENDING) bits |= PLACE_REMOVED;
    if (m->min_devices && (!n->facts_known || n->devices < m->min_devices))
        bits |= PLACE_NO_DEVICES;
    if (m->min_vram_mb && (!n->facts_known || n->vram_total_mb < m->min_vram_mb))
        bits |= PLACE_NO_VRAM;
    if (!cat_selector_matches(m, n)) bits |= PLACE_SELECTOR;
    if (m->engine >= 0 && (int)n->kind != m->engine) bits |= PLACE_ENGINE;
    return bits;
}

const char *placement_reason(unsigned bits)
{
    if (bits & PLACE_REMOVED) return "the node is removed or pending";
    if (bits & PLACE_SELECTOR) return "the node's labels do not match the selector";
    if (bits & PLACE_ENGINE) return "the node runs another engine";
    if (bits & PLACE_NO_DEVICES) return "the node has too few devices";
    if (bits & PLACE_NO_VRAM) return "the node has too little VRAM";
    return "feasible";
}

uint64_t placement_need_mb(const struct catalogue *c, const struct node *n, const char *model)
{
    const struct cat_model *m = catalogue_find(c, strv_from_cstr(model));
    if (m && m->min_vram_mb) return m->min_vram_mb;
    const struct node_model *nm = node_model_find(n, strv_from_cstr(model));
    return nm ? nm->size_mb : 0;
}

uint64_t placement_used_mb(const struct catalogue *c, const struct node *n)
{
    uint64_t used = 0;
    for (size_t i = 0; i < n->n_models; i++) used += placement_need_mb(c, n, n->models[i].id);
    return used;
}

uint64_t placement_free_mb(const struct catalogue *c, const struct node *n)
{
    uint64_t used = placement_used_mb(c, n);
    return n->vram_total_mb > used ? n->vram_total_mb - used : 0;
}

unsigned placement_replicas(const struct registry *reg, const char *model, uint64_t now_ms)
{
    unsigned k = 0;
    for (size_t i = 0; i < reg->n; i++) {
        const struct node *n = reg->nodes[i];
        if (node_is_routable(reg, n, now_ms) && node_model_find(n, strv_from_cstr(model))) k++;
    }
    return k;
}

bool placement_evict_plan(const struct catalogue *c, const struct registry *reg,
                          const struct node *n, uint64_t need_mb, uint64_t now_ms, const char **out,
                          size_t cap, size_t *n_out, bool *busy)
{
    *n_out = 0;
    *busy = false;
    uint64_t free_mb = placement_free_mb(c, n);
    if (free_mb >= need_mb) return true;
    /* candidates, least recently used first (selection by repeated minimum: lists are short) */
    bool taken[256] = {false};
    size_t nm = n->n_models < 256 ? n->n_models : 256;
    while (free_mb < need_mb && *n_out < cap) {
        const struct node_model *best = NULL;
        size_t best_i = 0;
        for (size_t i = 0; i < nm; i++) {
            const struct node_model *mm = &n->models[i];
            if (taken[i]) continue;
            const struct cat_model *cm = catalogue_find(c, strv_from_cstr(mm->id));
            if (mm->inflight > 0) {
                *busy = true;
                continue;
            }
            if (cm && cm->pinned) continue;
            if (cm && cm->replicas_min &&
                placement_replicas(reg, mm->id, now_ms) <= cm->replicas_min)
                continue;
            if (!best || mm->last_used_ms < best->last_used_ms) best = mm, best_i = i;
        }
        if (!best) break;
        taken[best_i] = true;
        out[(*n_out)++] = best->id;
        free_mb += placement_need_mb(c, n, best->id);
    }
    return free_mb >= need_mb;
}

struct node *placement_pick_cold(const struct catalogue *c, const struct registry *reg,
                                 const struct cat_model *m, uint64_t now_ms,
                                 bool (*skip)(const struct node *n, void *ctx), void *skip_ctx,
                                 bool *needs_evict, enum place_none *why)
{
    /* rank: [on disk][fits now] — a node that has the files loads without a download, a node
     * with room loads without evicting; most free VRAM breaks ties */
    struct node *best[2][2] = {{NULL, NULL}, {NULL, NULL}};
    uint64_t best_free[2][2] = {{0, 0}, {0, 0}};
    bool any_feasible = false, any_routable_feasible = false, any_candidate = false;
    *needs_evict = false;
    for (size_t i = 0; i < reg->n; i++) {
        struct node *n = reg->nodes[i];
        if (!n->via_agent || placement_infeasible(m, n)) continue;
        any_feasible = true;
        if (!node_is_routable(reg, n, now_ms)) continue;
        any_routable_feasible = true;
        if (node_model_find(n, strv_from_cstr(m->id))) continue; /* already there */
        if (skip && skip(n, skip_ctx)) continue;
        any_candidate = true;
        uint64_t free_mb = placement_free_mb(c, n);
        bool fits = free_mb >= m->min_vram_mb;
        if (!fits) {
            const char *plan[64];
            size_t k;
            bool busy;
            if (!placement_evict_plan(c, reg, n, m->min_vram_mb, now_ms, plan, 64, &k, &busy))
                continue;
        }
        int d = node_has_on_disk(n, strv_from_cstr(m->id)) ? 1 : 0, f = fits ? 1 : 0;
        if (!best[d][f] || free_mb > best_free[d][f]) best[d][f] = n, best_free[d][f] = free_mb;
    }
    static const int order[4][2] = {{1, 1}, {0, 1}, {1, 0}, {0, 0}};
    for (int k = 0; k < 4; k++) {
        struct node *n = best[order[k][0]][order[k][1]];
        if (n) {
            *needs_evict = order[k][1] == 0;
            return n;
        }
    }
    *why = !any_feasible            ? PLACE_NONE_INFEASIBLE
           : !any_routable_feasible ? PLACE_NONE_UNHEALTHY
           : !any_candidate         ? PLACE_NONE_HELD
                                    : PLACE_NONE_FULL;
    return NULL;
}
