/* router — picks the node for one attempt (DESIGN §3, §5): among routable nodes that have
 * the model, are not saturated (cooled, at their concurrency limit, or their engine reports a
 * full queue) and were not tried yet, the one the model's routing policy prefers
 * (docs/routing.md): least_loaded (fewest in-flight, engine signals included; round-robin on
 * ties), cache_aware (longest cached prompt prefix, with a load-imbalance escape), session
 * (rendezvous hashing of a session key with bounded load) or round_robin. Every pick can be
 * explained in one line. A node whose context length cannot hold the request is no candidate
 * at all, one whose context the estimate cannot settle comes after the nodes that surely
 * hold it (ctxfit.h). Nodes a mark says lack
 * what the request needs are a last resort, and when fewer than panic_percent of the model's
 * replicas are healthy, replicas that are down but not excluded are tried after them. When
 * none fits it says why, so the caller can answer with the right status of §5. Pure over the
 * registry; the loop thread only. */
#ifndef DROVER_GW_ROUTER_H
#define DROVER_GW_ROUTER_H
#include <stdbool.h>
#include <stdint.h>

#include "base/strv.h"
#include "gw/ctxfit.h"
#include "gw/registry.h"

struct cat_model;
struct prefix_cache;

enum route_policy {
    ROUTE_POLICY_DEFAULT = 0, /* a catalogue entry without `routing`: the global policy */
    ROUTE_POLICY_LEAST_LOADED,
    ROUTE_POLICY_CACHE_AWARE,
    ROUTE_POLICY_SESSION,
    ROUTE_POLICY_ROUND_ROBIN,
};
enum { ROUTE_POLICY_COUNT = 5, ROUTE_EXPLAIN_BYTES = 192 };

/* The routing knobs (config `routing.*`, docs/config.md). */
struct route_params {
    enum route_policy policy;     /* global default (least_loaded) */
    unsigned match_threshold_pct; /* cache_aware: a match ratio at least this (percent) wins */
    unsigned balance_abs;         /* cache_aware: max−min load above this is an imbalance */
    unsigned balance_rel_pct;     /* ... and max above min × this / 100 */
    unsigned session_load_pct;    /* session: a node above this % of the mean load is skipped */
    unsigned max_waiting;         /* engine queue at least this: saturated (0: never) */
    unsigned kv_high_pct;         /* KV use at least this (percent) adds kv_penalty to the load */
    unsigned kv_penalty;
    uint64_t signals_fresh_ms; /* signals older than this are ignored */
};
/* The defaults documented in docs/routing.md. */
void route_params_defaults(struct route_params *rp);

enum route_status {
    ROUTE_OK = 0,
    ROUTE_MODEL_NOT_FOUND,    /* no node, in any state, lists the model */
    ROUTE_NO_HEALTHY_NODES,   /* no node is routable at all */
    ROUTE_FEASIBLE_UNHEALTHY, /* nodes have the model but none is routable now */
    ROUTE_CAPACITY,           /* every node with the model is busy (cooled or at its limit) */
    ROUTE_EXHAUSTED,          /* every candidate was already tried by this request */
    ROUTE_CONTEXT_EXCEEDED,   /* nodes list the model, but no node's context can hold the
                                 request, in any state (route_result.ctx_max: the largest) */
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
    /* routing policy (docs/routing.md); all optional: zeroes mean least_loaded, defaults */
    enum route_policy policy;          /* resolved (router_policy_for); DEFAULT: least_loaded */
    const struct route_params *params; /* NULL: route_params_defaults */
    struct prefix_cache *prefix;       /* cache_aware: the per-node prefix table (updated on a
                                          pick), NULL: cache_aware acts as least_loaded */
    struct strv prompt;                /* cache_aware: the prompt text as the engine sees it */
    struct strv session;               /* session: the key (X-Session-Id or `user`), may be empty */
    bool explain;                      /* fill route_result.explain */
    /* context length (docs/routing.md "Context length"): what the request needs (NULL or
     * !known: not judged), and a context that already refused it (0: none) */
    const struct ctx_need *need;
    uint32_t ctx_floor;
};

enum route_tier {
    TIER_NORMAL = 0, /* routable, nothing against it */
    TIER_MARKED,     /* routable, but a mark says it lacks what the request needs: last resort */
    TIER_PANIC,      /* not alive now, tried because too few replicas are healthy (Envoy's panic
                        routing) */
    TIER_TIGHT,      /* routable, but the estimate cannot say whether its context holds the
                        request: after the normal tier, largest context first (the engine's
                        own count decides) */
};

struct route_result {
    enum route_status status;
    struct node *node;        /* ROUTE_OK: borrowed */
    enum route_tier tier;     /* ROUTE_OK: why this node */
    uint64_t retry_after_s;   /* for ROUTE_CAPACITY and the 503s */
    uint64_t wait_ms;         /* ROUTE_CAPACITY: when a busy node likely frees (at least 1) */
    enum route_policy policy; /* ROUTE_OK: the policy that decided (after any fallback) */
    int match_pm;             /* cache_aware: the chosen node's match ratio ‰; -1: none */
    const char *fallback;     /* why the policy's first choice was not taken, or NULL */
    uint32_t ctx_max;         /* ROUTE_CONTEXT_EXCEEDED: the largest context of the model's nodes */
    char explain[ROUTE_EXPLAIN_BYTES]; /* q->explain: "policy=… node=… match=… loads=…" */
};

void router_pick(struct registry *reg, const struct route_query *q, struct route_result *out);
const char *route_status_name(enum route_status s);

/* The policy a request for catalogue entry cm (may be NULL) uses: the entry's own `routing`,
 * else the global one. Never ROUTE_POLICY_DEFAULT. */
enum route_policy router_policy_for(const struct cat_model *cm, const struct route_params *rp);
const char *route_policy_name(enum route_policy p);
/* "least_loaded", "cache_aware", "session", "round_robin" → 0; anything else -1. */
int route_policy_parse(const char *s, enum route_policy *out);

/* The load the policies compare: the gateway's in-flight count, raised to what the engine
 * itself reports (running + waiting, corrected by what the gateway sent or finished since the
 * scrape) while the scrape is fresh, plus a penalty when the KV cache is nearly full. */
unsigned router_node_load(const struct node *n, const struct route_params *rp, uint64_t now_ms);
/* The engine reported a queue of at least max_waiting (less the requests that ended since the
 * scrape): no new requests until it drains. */
bool router_engine_saturated(const struct node *n, const struct route_params *rp, uint64_t now_ms);

#endif
