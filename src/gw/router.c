/* router — one pass over the nodes that list the model (the registry's model index, so the
 * cost follows the model's replicas, not the fleet) sorts them into tiers and collects the
 * reasons for failure, so the caller gets the most useful answer of §5; only a failure looks
 * at the rest of the fleet (404 against 503). least_loaded keeps the best node on the way and
 * stops at an idle one; the other policies collect the normal-tier candidates (at most
 * ROUTER_MAX_CANDIDATES) and choose among them afterwards (docs/routing.md). */
#include "gw/router.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "gw/catalogue.h"
#include "gw/placement.h"
#include "gw/prefix_cache.h"

enum { ROUTER_MAX_CANDIDATES = 256, ROUTER_EXPLAIN_LOADS = 8 };

void route_params_defaults(struct route_params *rp)
{
    *rp = (struct route_params){
        .policy = ROUTE_POLICY_LEAST_LOADED,
        .match_threshold_pct = 50,
        .balance_abs = 8,
        .balance_rel_pct = 150,
        .session_load_pct = 125,
        .max_waiting = 16,
        .kv_high_pct = 95,
        .kv_penalty = 2,
        .signals_fresh_ms = 30000,
    };
}

static const char *const policy_names[ROUTE_POLICY_COUNT] = {
    "default", "least_loaded", "cache_aware", "session", "round_robin"};

const char *route_policy_name(enum route_policy p)
{
    return (unsigned)p < ROUTE_POLICY_COUNT ? policy_names[p] : "?";
}

int route_policy_parse(const char *s, enum route_policy *out)
{
    for (unsigned i = 1; s && i < ROUTE_POLICY_COUNT; i++)
        if (!strcmp(s, policy_names[i])) {
            *out = (enum route_policy)i;
            return 0;
        }
    return -1;
}

enum route_policy router_policy_for(const struct cat_model *cm, const struct route_params *rp)
{
    if (cm && cm->routing > (int)ROUTE_POLICY_DEFAULT && cm->routing < (int)ROUTE_POLICY_COUNT)
        return (enum route_policy)cm->routing;
    if (rp && rp->policy > ROUTE_POLICY_DEFAULT && (int)rp->policy < (int)ROUTE_POLICY_COUNT)
        return rp->policy;
    return ROUTE_POLICY_LEAST_LOADED;
}

static bool signals_fresh(const struct node *n, const struct route_params *rp, uint64_t now)
{
    return n->sig.at_ms && now - n->sig.at_ms <= rp->signals_fresh_ms;
}

/* What the engine has now, as best known: its report corrected by what the gateway sent
 * (more in flight than at the scrape) or saw finish (fewer) since. */
static long engine_estimate(long reported, const struct node *n)
{
    long e = reported + (long)n->inflight - (long)n->sig.inflight_at;
    return e < 0 ? 0 : e;
}

unsigned router_node_load(const struct node *n, const struct route_params *rp, uint64_t now_ms)
{
    unsigned load = n->inflight;
    if (!rp || !signals_fresh(n, rp, now_ms)) return load;
    const struct node_signals *s = &n->sig;
    if (s->running >= 0 || s->waiting >= 0) {
        long eng = engine_estimate(
            (long)(s->running > 0 ? s->running : 0) + (s->waiting > 0 ? s->waiting : 0), n);
        if (eng > (long)load) load = (unsigned)eng;
    }
    if (s->kv_pm >= 0 && rp->kv_high_pct && (unsigned)s->kv_pm >= rp->kv_high_pct * 10)
        load += rp->kv_penalty;
    return load;
}

bool router_engine_saturated(const struct node *n, const struct route_params *rp, uint64_t now_ms)
{
    if (!rp || !rp->max_waiting || !signals_fresh(n, rp, now_ms) || n->sig.waiting < 0)
        return false;
    /* What the engine reported, less what ended since (each end frees a slot for a waiting
     * request). What the gateway sent since is not added: the report does not say how many
     * slots were free, and a node with room must not look full (it would lose its cached
     * prefixes to others). */
    long w = n->sig.waiting;
    if (n->inflight < n->sig.inflight_at) w -= (long)(n->sig.inflight_at - n->inflight);
    return w >= (long)rp->max_waiting;
}

const char *route_status_name(enum route_status s)
{
    static const char *const names[] = {
        "ok",       "model_not_found", "no_healthy_nodes", "feasible_node_unhealthy",
        "capacity", "exhausted",       "context_exceeded"};
    return (unsigned)s <= ROUTE_CONTEXT_EXCEEDED ? names[s] : "?";
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

struct cand {
    struct node *node;
    unsigned load;
};

struct pick {
    struct node *best[3]; /* per tier */
    unsigned best_load[3];
    struct cand c[ROUTER_MAX_CANDIDATES]; /* normal tier, in round-robin order */
    size_t n;
    unsigned min_load, max_load; /* over every live replica (tried and saturated included) */
};

static void consider(struct pick *pk, enum route_tier t, struct node *nd, unsigned load)
{
    if (!pk->best[t] || load < pk->best_load[t]) {
        pk->best[t] = nd;
        pk->best_load[t] = load;
    }
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_str(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return mix64(h);
}

/* least loaded among the candidates, fewest cached entries (room for new prefixes) on ties */
static size_t least_loaded_of(const struct pick *pk, struct prefix_cache *pc)
{
    size_t b = 0;
    for (size_t i = 1; i < pk->n; i++) {
        if (pk->c[i].load < pk->c[b].load || (pc && pk->c[i].load == pk->c[b].load &&
                                              prefix_cache_node_entries(pc, pk->c[i].node) <
                                                  prefix_cache_node_entries(pc, pk->c[b].node)))
            b = i;
    }
    return b;
}

/* cache_aware (SGLang's router): imbalance → least loaded; else the longest match when it is
 * at least the threshold (ties: lower load); else least loaded, fewest entries. */
static size_t pick_cache_aware(const struct route_query *q, const struct route_params *rp,
                               struct pick *pk, struct route_result *out)
{
    struct prefix_cache *pc = q->prefix;
    if (!pc || !q->prompt.len) {
        out->fallback = !pc ? "no_table" : "no_prompt";
        return least_loaded_of(pk, pc);
    }
    struct prefix_keys k = prefix_cache_keys(pc, q->model, q->prompt);
    if (!k.n) {
        out->fallback = "short_prompt";
        return least_loaded_of(pk, pc);
    }
    size_t best = 0, best_m = 0;
    for (size_t i = 0; i < pk->n; i++) {
        size_t m = prefix_cache_match(pc, pk->c[i].node, &k);
        if (m > best_m || (m == best_m && pk->c[i].load < pk->c[best].load)) {
            best = i;
            best_m = m;
        }
    }
    unsigned match_pm = (unsigned)(best_m * 1000 / k.n);
    size_t chosen;
    bool imbalanced = pk->max_load - pk->min_load > rp->balance_abs &&
                      (uint64_t)pk->max_load * 100 > (uint64_t)pk->min_load * rp->balance_rel_pct;
    if (imbalanced) {
        out->fallback = "imbalance";
        chosen = least_loaded_of(pk, pc);
    } else if (best_m && match_pm >= rp->match_threshold_pct * 10) {
        chosen = best;
    } else {
        out->fallback = best_m ? "low_match" : "no_match";
        chosen = least_loaded_of(pk, pc);
    }
    out->match_pm = (int)(prefix_cache_match(pc, pk->c[chosen].node, &k) * 1000 / k.n);
    prefix_cache_insert(pc, pk->c[chosen].node, &k);
    return chosen;
}

/* session: rendezvous (highest random weight) hashing of the key over the candidates' names,
 * so a node that leaves and comes back gets its sessions back and only its own sessions move;
 * bounded load: a node above session_load_pct % of the mean (plus one) is passed over. */
static size_t pick_session(const struct route_query *q, const struct route_params *rp,
                           struct pick *pk, struct route_result *out)
{
    if (!q->session.len) {
        out->fallback = "no_session";
        return least_loaded_of(pk, NULL);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < pk->n; i++) total += pk->c[i].load;
    /* the bound of "consistent hashing with bounded loads": ceil(c × (total + 1) / n) */
    uint64_t cap = ((total + 1) * rp->session_load_pct + pk->n * 100 - 1) / (pk->n * 100);
    if (cap < 1) cap = 1;
    uint64_t kh = hash_str(0x73657373ULL, q->session.p, q->session.len);
    size_t top = SIZE_MAX, fit = SIZE_MAX;
    uint64_t top_w = 0, fit_w = 0;
    for (size_t i = 0; i < pk->n; i++) {
        const char *name = pk->c[i].node->name;
        uint64_t w = hash_str(kh, name, strlen(name));
        if (top == SIZE_MAX || w > top_w) {
            top = i;
            top_w = w;
        }
        if (pk->c[i].load < cap && (fit == SIZE_MAX || w > fit_w)) {
            fit = i;
            fit_w = w;
        }
    }
    if (fit == SIZE_MAX) return top;
    if (fit != top) out->fallback = "bounded_load";
    return fit;
}

/* Appends to the explanation, truncating at its end. */
static void PRINTF_LIKE(3, 4) app(char *e, size_t *n, const char *fmt, ...)
{
    size_t cap = ROUTE_EXPLAIN_BYTES;
    if (*n + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(e + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (w > 0) *n = (size_t)w < cap - *n ? *n + (size_t)w : cap - 1;
}

static void explain(const struct route_query *q, struct route_result *out,
                    const struct model_nodes *mn, const struct route_params *rp)
{
    char *e = out->explain;
    size_t n = 0;
    app(e, &n, "policy=%s node=%s", route_policy_name(out->policy),
        out->node ? out->node->name : "-");
    if (out->match_pm >= 0)
        app(e, &n, " match=%d.%02d", out->match_pm / 1000, (out->match_pm % 1000) / 10);
    if (mn) {
        app(e, &n, " loads=");
        for (size_t i = 0; i < mn->n; i++) {
            if (i == ROUTER_EXPLAIN_LOADS) {
                app(e, &n, "/...");
                break;
            }
            app(e, &n, "%s%u", i ? "/" : "", router_node_load(mn->slots[i].node, rp, q->now_ms));
        }
    }
    if (q->need && q->need->known) {
        app(e, &n, " need=%u", ctxfit_need_est(q->need));
        const struct node_model *m = out->node ? node_model_find(out->node, q->model) : NULL;
        if (m && m->ctx_tokens) app(e, &n, " ctx=%u", m->ctx_tokens);
    }
    if (out->fallback) app(e, &n, " fallback=%s", out->fallback);
    if (out->tier != TIER_NORMAL)
        app(e, &n, " tier=%s",
            out->tier == TIER_MARKED  ? "marked"
            : out->tier == TIER_TIGHT ? "tight"
                                      : "panic");
}

void router_pick(struct registry *reg, const struct route_query *q, struct route_result *out)
{
    out->node = NULL;
    out->retry_after_s = 0;
    out->wait_ms = 0;
    out->tier = TIER_NORMAL;
    out->match_pm = -1;
    out->fallback = NULL;
    out->ctx_max = 0;
    out->explain[0] = '\0';
    struct route_params defaults;
    const struct route_params *rp = q->params;
    if (!rp) {
        route_params_defaults(&defaults);
        rp = &defaults;
    }
    enum route_policy policy = q->policy ? q->policy : ROUTE_POLICY_LEAST_LOADED;
    out->policy = policy;
    bool collect = policy != ROUTE_POLICY_LEAST_LOADED;
    /* Only the nodes that list the model are candidates (the model index); among them the
     * least in-flight wins, ties broken by a round-robin start. */
    const struct model_nodes *mn = registry_model_nodes(reg, q->model);
    size_t n = mn ? mn->n : 0;
    bool any_has_model = false, any_untried = false, any_busy = false;
    size_t n_eligible = 0, n_alive = 0; /* replicas not excluded or drained; alive among them */
    uint64_t min_wait_ms = UINT64_MAX;
    struct pick pk;
    pk.best[0] = pk.best[1] = pk.best[2] = NULL;
    pk.n = 0;
    pk.min_load = UINT32_MAX;
    pk.max_load = 0;
    size_t start = n ? (size_t)(reg->rr % n) : 0;
    /* context length: nodes too small are no candidates; tight ones come after the normal
     * tier, the largest context first */
    bool judge_ctx = (q->need && q->need->known) || q->ctx_floor;
    bool any_ctx_small = false;
    uint32_t ctx_max = 0, tight_ctx = 0;
    struct node *tight = NULL;
    unsigned tight_load = 0;

    for (size_t k = 0, i = start; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
        const struct model_slot *sl = &mn->slots[i];
        struct node *nd = sl->node;
        if (filtered_out(q, nd)) continue;
        uint32_t ctx = sl->model->ctx_tokens;
        enum ctx_fit fit = judge_ctx ? ctxfit_judge(ctx, q->need, q->ctx_floor) : CTX_FITS;
        if (fit == CTX_TOO_SMALL) {
            any_ctx_small = true;
            if (ctx > ctx_max) ctx_max = ctx;
            continue;
        }
        any_has_model = true;
        bool routable = node_is_routable(reg, nd, q->now_ms);
        bool panic = !routable && node_is_panic_candidate(nd);
        if (!routable && !panic) continue;
        n_eligible++;
        n_alive += routable;
        unsigned load = router_node_load(nd, rp, q->now_ms);
        if (routable) {
            if (load < pk.min_load) pk.min_load = load;
            if (load > pk.max_load) pk.max_load = load;
        }
        if (was_tried(q, nd)) continue;
        any_untried = true;
        if (node_is_saturated(nd, q->now_ms) || router_engine_saturated(nd, rp, q->now_ms)) {
            any_busy = true;
            uint64_t w = registry_expected_wait_ms(nd, q->now_ms);
            if (w < min_wait_ms) min_wait_ms = w;
            continue;
        }
        enum route_tier t = panic                                             ? TIER_PANIC
                            : model_marks_block(sl->model, q->cap, q->now_ms) ? TIER_MARKED
                            : fit == CTX_TIGHT                                ? TIER_TIGHT
                                                                              : TIER_NORMAL;
        if (t == TIER_TIGHT) {
            if (!tight || ctx > tight_ctx || (ctx == tight_ctx && load < tight_load)) {
                tight = nd;
                tight_ctx = ctx;
                tight_load = load;
            }
            continue;
        }
        /* several replicas of the model on the node share its load (rounded up, so a node with
         * two replicas and three in flight ties with one replica and two) */
        unsigned reps = sl->model->replicas;
        consider(&pk, t, nd, reps > 1 ? (load + reps - 1) / reps : load);
        if (t != TIER_NORMAL) continue;
        if (collect) {
            if (pk.n < ROUTER_MAX_CANDIDATES) pk.c[pk.n++] = (struct cand){nd, load};
            if (policy == ROUTE_POLICY_ROUND_ROBIN) break; /* the first from the cursor */
        } else if (load == 0) {
            break; /* nothing beats an idle node */
        }
    }
    /* Panic routing: the unhealthy replicas are tried only when too few are healthy. */
    bool panic_ok = n_eligible && n_alive * 100 < (size_t)reg->cfg.panic_percent * n_eligible;
    struct node *best = pk.best[TIER_NORMAL];
    enum route_tier tier = TIER_NORMAL;
    if (best && collect && pk.n) {
        size_t i = policy == ROUTE_POLICY_CACHE_AWARE ? pick_cache_aware(q, rp, &pk, out)
                   : policy == ROUTE_POLICY_SESSION   ? pick_session(q, rp, &pk, out)
                                                      : 0;
        best = pk.c[i].node;
    }
    if (!best && tight) best = tight, tier = TIER_TIGHT;
    if (!best && pk.best[TIER_MARKED]) best = pk.best[tier = TIER_MARKED];
    if (!best && panic_ok && pk.best[TIER_PANIC]) best = pk.best[tier = TIER_PANIC];
    if (best) {
        reg->rr++;
        out->status = ROUTE_OK;
        out->node = best;
        out->tier = tier;
        if (tier != TIER_NORMAL) out->fallback = tier == TIER_TIGHT ? "context" : "no_normal_node";
        if (out->fallback && policy != ROUTE_POLICY_LEAST_LOADED) best->route_fallbacks_total++;
        if (policy == ROUTE_POLICY_CACHE_AWARE && !out->fallback && out->match_pm > 0)
            best->route_prefix_hits_total++;
        if (q->explain) explain(q, out, mn, rp);
        return;
    }
    if (!any_has_model && any_ctx_small) {
        /* every node that lists the model, whatever its state, is too small: the client's
         * request can never be served as it is (400, not a transient 503) */
        out->status = ROUTE_CONTEXT_EXCEEDED;
        out->ctx_max = ctx_max;
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
