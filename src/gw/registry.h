/* registry — every node the gateway knows, with the three separate axes of DESIGN §3 (admin
 * intent, liveness, fault record) and the per-node model inventory. It decides nothing about
 * individual requests (that is the router) and does no I/O (that is health and proxy); it
 * only keeps state and applies the state rules: rise/fall debounce, exclusion after N
 * consecutive faults with the max_excluded_percent guard, exponential ejection time for
 * automatic recovery, cooling after a busy answer, and "a streaming node is alive".
 * Thread: the loop thread only (no locks in gw/). */
#ifndef DROVER_GW_REGISTRY_H
#define DROVER_GW_REGISTRY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/strv.h"

enum node_kind { NODE_KIND_OPENAI, NODE_KIND_LLAMACPP, NODE_KIND_OLLAMA, NODE_KIND_VLLM };
enum node_admin { ADMIN_PENDING, ADMIN_APPROVED, ADMIN_DRAINING, ADMIN_REMOVED };
enum node_live { LIVE_UNKNOWN, LIVE_HEALTHY, LIVE_UNHEALTHY };

/* Capabilities a request uses: one primary (chat, completions, embeddings) and any optional
 * features (tools, vision, a response format). A node's answer can prove one absent for one
 * model: a mark (below). */
enum {
    CAP_CHAT = 1,
    CAP_COMPLETIONS = 2,
    CAP_EMBEDDINGS = 4,
    CAP_TOOLS = 8,
    CAP_VISION = 16,
    CAP_RESPONSE_FORMAT = 32,
    CAP_N = 6, /* bits above */
    CAP_PRIMARY = CAP_CHAT | CAP_COMPLETIONS | CAP_EMBEDDINGS,
    CAP_ALL = (1 << CAP_N) - 1,
};
const char *cap_name(unsigned cap_bit); /* "chat", "tools", ... for one bit */

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
    uint64_t latency_ewma_ms; /* completed attempts, for the expected wait */

    uint64_t requests_total, faults_total;
    void *health; /* owned by the health module */
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
void registry_config_defaults(struct registry_config *cfg);

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

void registry_init(struct registry *reg, const struct registry_config *cfg);
void registry_free(struct registry *reg);

/* Adds a node from its URL ("http://host:port", no path). Returns 0 and *out (borrowed), or
 * GW_E_INVALID (bad URL, duplicate name) with err filled. New nodes start approved (static
 * nodes from the config file) and with liveness unknown. */
int registry_add(struct registry *reg, const char *name, const char *url, enum node_kind kind,
                 const char *api_key, struct node **out, struct gw_error *err) WUR;
int registry_set_label(struct node *n, const char *key, const char *value);
/* Removes the label; returns false when there was none. */
bool registry_del_label(struct node *n, const char *key);
void registry_clear_labels(struct node *n);
/* Changes the node's URL (an agent that moved); GW_E_INVALID on a bad URL, node unchanged. */
int registry_set_url(struct node *n, const char *url) WUR;
/* Replaces an owned string field (NULL or "" clears it). */
void registry_set_str(char **field, const char *value);
/* A node taken out by the admin: removed, its secret, labels and inventory dropped, its fault
 * record cleared. The struct stays (a tombstone), so names stay stable for the admin API. */
void registry_tombstone(struct node *n);
struct node *registry_find(const struct registry *reg, struct strv name);

/* Parses "openai", "llamacpp", "ollama", "vllm". */
int node_kind_parse(const char *s, enum node_kind *out) WUR;
const char *node_kind_name(enum node_kind k);
const char *node_admin_name(enum node_admin a);
const char *node_live_name(enum node_live l);

/* True when the node is approved (not pending, draining or removed), alive, and not excluded.
 * Cooling (busy) is separate: see node_is_cooled. Alive: healthy by its probes, or proved
 * alive by the data path (a stream byte within stream_alive_ms, or an attempt that completed
 * without a node fault within probe_interval × fall) once it was ever healthy. */
bool node_is_routable(const struct registry *reg, const struct node *n, uint64_t now_ms);
bool node_is_alive(const struct registry *reg, const struct node *n, uint64_t now_ms);
/* Approved, not excluded, once healthy, but not alive now: panic routing may try it. */
bool node_is_panic_candidate(const struct node *n);
bool node_is_cooled(const struct node *n, uint64_t now_ms);
/* At its adaptive concurrency limit, or cooled and not due for its trickle request: it takes
 * no new request now. */
bool node_is_saturated(const struct node *n, uint64_t now_ms);
/* A request goes to n now (the trickle of a cooled node is spent). */
void registry_node_sent(struct registry *reg, struct node *n, uint64_t now_ms);
/* A request with these CAP_* completed on m: marks for them are contradicted. */
void registry_marks_contradicted(struct registry *reg, struct node *n, struct node_model *m,
                                 unsigned caps);

/* Changes of admin intent, with the cause logged once (the admin API, joins, reloads). */
void registry_set_admin(struct registry *reg, struct node *n, enum node_admin to,
                        const char *cause);
/* Forgets liveness (a new address or identity: a new node as far as probes go). */
void registry_reset_liveness(struct registry *reg, struct node *n, const char *cause);
/* Marks the node unhealthy at once (it did not answer an operation at all). */
void registry_set_unhealthy(struct registry *reg, struct node *n, const char *cause);
/* Restores admin intent and the fault record from a stored row at start-up (no log: nothing
 * changed). An excluded node's ejection time starts again from now. */
void registry_restore(struct registry *reg, struct node *n, enum node_admin admin, bool excluded,
                      unsigned consecutive_faults, unsigned ejections, uint64_t now_ms);

/* Marks (struct mark above). The capability is the one bit the node's answer named. */
void registry_mark_capability(struct registry *reg, struct node *n, struct node_model *m,
                              unsigned cap_bit, uint64_t now_ms, const char *cause);
void registry_mark_inventory_miss(struct registry *reg, struct node *n, struct node_model *m,
                                  uint64_t now_ms, const char *cause);
/* The CAP_* bits of `caps` that an unexpired mark says m lacks, or an inventory mark (all of
 * `caps`); 0 when nothing blocks. */
unsigned model_marks_block(const struct node_model *m, unsigned caps, uint64_t now_ms);

/* Inventory. node_model_find returns borrowed or NULL. registry_set_models replaces the list
 * with ids (copied), keeping what was learned about models that stay. */
struct node_model *node_model_find(const struct node *n, struct strv model);
void registry_set_models(struct node *n, const struct strv *ids, size_t n_ids);
/* Replaces the on-disk list (copied). */
void registry_set_disk(struct node *n, const struct strv *ids, size_t n_ids);
bool node_has_on_disk(const struct node *n, struct strv model);
/* Adds one loaded model (a cold load finished) or removes it (unloaded). */
void registry_model_loaded(struct node *n, struct strv id, uint64_t size_mb, uint64_t now_ms);
void registry_model_unloaded(struct node *n, struct strv id);
/* Reads devices and VRAM from a discovery object's JSON (docs/node_api.md). */
void registry_set_facts_from_discovery(struct node *n, const char *discovery_json);
/* The nodes listing a model (in registry order), or NULL when none does. Rebuilds the index
 * first when any node's model list changed since it was built. The result is valid until the
 * next change to any inventory. */
const struct model_nodes *registry_model_nodes(struct registry *reg, struct strv model);
/* Bumped whenever any node's model array changes (the index above follows it). */
extern uint64_t registry_models_epoch;
/* Bumped on every change that can make an infeasible model feasible (join, labels, unload). */
extern uint64_t registry_generation;

/* Probe results with rise/fall debounce. Returns true when liveness changed. */
bool registry_probe_ok(struct registry *reg, struct node *n, uint64_t now_ms);
bool registry_probe_failed(struct registry *reg, struct node *n, uint64_t now_ms, const char *why);

/* A probe that timed out while the node's requests progress: busy, not a failure. */
void registry_probe_busy(struct registry *reg, struct node *n, uint64_t now_ms, const char *why);
/* True when a failed probe (timed out) should count as busy for n now. */
bool registry_probe_is_busy(const struct registry *reg, const struct node *n, uint64_t now_ms);

/* Live-traffic fault record. record_fault returns true if the node became excluded now. A
 * success is any attempt the node completed without a node fault (client errors included):
 * the data path's evidence that the node is alive. */
void registry_record_success(struct registry *reg, struct node *n, uint64_t now_ms);
/* The node answered (any class but a node fault): evidence of life, fault record unchanged. */
void registry_note_alive(struct registry *reg, struct node *n, uint64_t now_ms);
bool registry_record_fault(struct registry *reg, struct node *n, uint64_t now_ms,
                           const char *cause);
/* Ends exclusion, resets the fault record, the busy state and every mark (the admin's
 * recover); the cause is logged. */
void registry_recover(struct registry *reg, struct node *n, const char *cause);

/* Busy answers (docs/gateway.md): one busy answer lowers the node's concurrency limit
 * (multiplicative decrease, at most once per latency); busy_cool_after answers in a row with
 * no success between cool the whole node for its Retry-After (capped), after which it gets one
 * request at a time until it succeeds. in_flight is the node's count when it answered. */
void registry_node_busy(struct registry *reg, struct node *n, unsigned in_flight,
                        uint64_t retry_after_s, uint64_t now_ms);
/* A completed attempt at this in-flight count: additive increase of the limit. */
void registry_node_ok(struct registry *reg, struct node *n, unsigned in_flight, uint64_t dur_ms);
/* Milliseconds until a saturated node can likely take a request (cool left, or its typical
 * latency when at its limit); at least 1. */
uint64_t registry_expected_wait_ms(const struct node *n, uint64_t now_ms);

/* Counts for metrics. */
size_t registry_count_routable(const struct registry *reg, uint64_t now_ms);

#endif
