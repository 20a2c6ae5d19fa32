/* registry_types.h — the registry's types (DESIGN §3): a node's three axes, its inventory and
 * marks, and the model index. Any gw module may read these fields; only registry.c and
 * accounting.c (through registry.c's functions) write them. Thread: the loop thread only. */
#ifndef DROVER_GW_REGISTRY_TYPES_H
#define DROVER_GW_REGISTRY_TYPES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/node_api.h" /* enum node_kind and the CAP_* bits: one definition, shared with the agent */

enum node_admin { ADMIN_PENDING, ADMIN_APPROVED, ADMIN_DRAINING, ADMIN_REMOVED };
enum node_live { LIVE_UNKNOWN, LIVE_HEALTHY, LIVE_UNHEALTHY };

/* Marks are evidence, not verdicts (DESIGN §4): what one node's answer proved about one of its
 * models, with the cause and the time, and a lifetime. A capability mark expires like an
 * ejection (base × 2^(k−1), capped); an inventory mark lives until the next probe that still
 * lists the model. `recover` clears both. A marked node is a last resort for requests that
 * need what it lacks, never taken out of the fleet: no request can make another fail. */
struct mark {
    uint64_t at_ms;    /* 0: no mark */
    uint64_t until_ms; /* capability marks: expiry (0 for inventory marks) */
    unsigned count;    /* marks of this kind since the last recover (the lifetime doubles) */
    char cause[96];
};
struct model_marks {
    struct mark cap[CAP_N]; /* index: bit position of the CAP_* */
    struct mark inventory;
};

struct node_model {
    char *id;             /* owned */
    size_t id_len;        /* strlen(id): the router compares lengths first */
    unsigned caps_absent; /* CAP_* bits with a mark (may have expired: see model_marks_block) */
    bool inventory_miss;  /* an inventory mark is set */
    unsigned inflight;
    uint64_t last_used_ms;
    uint64_t size_mb;          /* what the node says the model takes, 0 when unknown */
    struct model_marks *marks; /* owned, NULL until the first mark */
    /* the context one request may fill on this node (prompt + completion, in tokens; a
     * llama-server slot's n_ctx, vLLM's max_model_len, Ollama's num_ctx): 0 when unknown, which
     * constrains nothing (docs/routing.md "Context length"); written by registry_set_model_ctx */
    uint32_t ctx_tokens;
    const char *ctx_source; /* static: where it was learned ("models", "props", "api_show",
                               "agent", "rejection"); NULL when unknown */
    /* instances of the model on this node (max_per_node, docs/placement.md): the router
     * counts the node's load per replica; 0 or 1: one. Written by loads.c from placement. */
    unsigned replicas;
};

/* What the node's engine says about its own load (signals.c, scraped on the probe schedule:
 * llama-server /metrics or /slots, vLLM /metrics, Ollama /api/ps). Written only by
 * signals_apply(); the router reads it beside the gateway's own in-flight count. */
struct node_signals {
    uint64_t at_ms;       /* when it was scraped; 0: never (or the engine exposes nothing) */
    int running;          /* requests the engine is working on (busy slots); -1 unknown */
    int waiting;          /* requests queued in the engine (deferred, waiting); -1 unknown */
    int slots;            /* parallel slots the engine reported (/slots); -1 unknown */
    int kv_pm;            /* KV cache in use, per mille; -1 unknown */
    int models_loaded;    /* Ollama /api/ps: models in memory; -1 unknown */
    unsigned inflight_at; /* the gateway's in-flight count for the node when scraped */
    uint64_t scrapes_total, scrape_errors_total;
    char source[16]; /* "metrics", "slots", "api_ps" or "" */
};

struct node_label {
    char *key, *value; /* owned */
};

struct node {
    /* What the router reads for every candidate, together at the front (one cache line). */
    enum node_admin admin;
    enum node_kind kind;
    enum node_live live;
    bool ever_healthy;
    bool excluded;
    unsigned inflight;
    unsigned conc_limit; /* adaptive concurrency limit (AIMD on busy answers); 0: none learned */
    unsigned streams_active;
    uint64_t last_progress_ms; /* last response byte from the node on the data path */
    uint64_t last_success_ms;  /* last attempt that completed without a node fault */
    uint64_t cooled_until_ms;  /* busy to everything: no new requests before this */

    char *name;    /* owned, unique */
    char *url;     /* owned: "http://127.0.0.1:9101" */
    char host[64]; /* numeric address or "localhost" */
    int port;
    bool tls;      /* https:// url: the client speaks TLS to it (net/tls.h) */
    char *api_key; /* owned, may be NULL; for agents the gateway key H (docs/node_api.md) */
    struct node_label *labels;
    size_t n_labels;

    bool from_config;              /* listed in the config file (not joined): the file owns it */
    bool via_agent;                /* joined through `drover agent`; kind is the engine behind it */
    char *secret_hash;             /* owned, agents only: hex SHA-256 of the node secret, or NULL */
    char *discovery_json;          /* owned, agents only: what the agent reported, or NULL */
    char *agent_version;           /* owned, may be NULL */
    int64_t created_ms, joined_ms; /* unix ms: first seen, last join (0: never) */
    bool dirty;                    /* live state changed since it was last written to the store */

    unsigned ok_streak, fail_streak;
    uint64_t last_probe_ms;
    char last_probe_error[96];

    unsigned consecutive_faults;
    unsigned ejections; /* how many times it was excluded since the last recover */
    uint64_t excluded_at_ms;
    uint64_t eject_until_ms; /* auto-recover not before this */

    struct node_model *models; /* loaded: servable now */
    size_t n_models;
    bool inventory_known;
    char **disk; /* owned ids the node has on disk but not loaded (agents) */
    size_t n_disk;
    /* hardware facts for placement, from the agent's discovery */
    unsigned devices;
    uint64_t vram_total_mb;
    bool facts_known;

    /* busy answers (DESIGN §4, docs/gateway.md "Busy answers"): AIMD state */
    unsigned limit_credit;     /* successes at the limit toward the next +1 */
    unsigned consecutive_busy; /* busy answers since the last success */
    uint64_t last_decrease_ms;
    uint64_t next_trickle_ms; /* cooled: the next single request it may get */
    uint64_t busy_total;
    unsigned busy_share_pm;   /* busy answers among recent ones, per mille (EWMA, 1/16) */
    uint64_t latency_ewma_ms; /* completed attempts, for the expected wait */

    uint64_t requests_total, faults_total;
    void *health;            /* owned by the health module */
    struct node_signals sig; /* the engine's own load report (signals.c) */
    uint32_t route_id;       /* prefix_cache.c: the node's small id in the prefix table (0: none) */
    uint64_t route_prefix_hits_total; /* router.c: cache_aware picks on a cached prefix */
    uint64_t route_fallbacks_total;   /* router.c: picks where the policy's choice was overruled */
};

struct registry_config {
    unsigned rise;                 /* probes in a row to become healthy (default 2) */
    unsigned fall;                 /* probe failures in a row to become unhealthy (default 3) */
    unsigned fault_threshold;      /* consecutive node faults that exclude (default 3) */
    bool auto_recover;             /* a good probe after the ejection time ends exclusion */
    uint64_t ejection_base_ms;     /* 30 s; doubles per ejection */
    uint64_t ejection_max_ms;      /* 5 min */
    unsigned max_excluded_percent; /* 50 */
    uint64_t stream_alive_ms;      /* a stream byte this recent keeps a node alive (10 s) */
    uint64_t probe_interval_ms;    /* health.interval; × fall: how long a success proves life */
    unsigned panic_percent;        /* below this share of healthy replicas, try unhealthy ones */
    unsigned busy_cool_after;      /* busy answers in a row that cool the whole node (3) */
    uint64_t busy_max_cool_ms;     /* cap on a node's Retry-After (60 s) */
    unsigned max_conc_limit;       /* the AIMD limit never grows past this (then: none) */
    uint64_t busy_trickle_ms;      /* a cooled node still gets one request this often (1 s) */
};

/* One model's entry in the model index: every node listing it, with its entry there. */
struct model_slot {
    struct node *node;
    struct node_model *model;
};
struct model_nodes {
    const char *id; /* borrowed from a node's model entry; NULL: an empty table slot */
    size_t id_len;
    uint64_t hash;
    bool alias;               /* only reachable by another name (Ollama's bare "x" for
                                 "x:latest"): not listed by /v1/models */
    struct model_slot *slots; /* owned */
    size_t n, cap;
};
struct model_index {
    struct model_nodes *tab; /* owned, cap entries (a power of two) */
    size_t cap, n;
    uint64_t epoch;    /* registry_models_epoch it was built at */
    size_t nodes_seen; /* reg->n it was built with */
};

struct registry {
    struct node **nodes; /* owned */
    size_t n;
    uint64_t rr; /* round-robin cursor for ties */
    struct registry_config cfg;
    struct model_index index; /* lazily rebuilt; see registry_model_nodes */
};

#endif
