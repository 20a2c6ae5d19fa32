/* config — the gateway's configuration: one YAML file (--config), every scalar key
 * overridable by a DROVER_… environment variable (path upper-cased, dots to underscores:
 * health.interval → DROVER_HEALTH_INTERVAL) and by flags (--set health.interval=2s, plus the
 * named flags of `drover serve --help`). Precedence: defaults < file < environment < flags.
 * Unknown keys and bad values are refused with "file:line: reason" (or "env NAME: reason",
 * "flag --set key: reason"), so a typo never silently runs with a default.
 * Thread: start-up and SIGHUP reload on the loop thread. */
#ifndef DROVER_GW_CONFIG_H
#define DROVER_GW_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "gw/registry.h"
#include "gw/router.h"

struct cat_model;

struct gw_node_config {
    char *name, *url, *api_key; /* owned; api_key may be NULL */
    enum node_kind kind;
    struct node_label *labels; /* owned */
    size_t n_labels;
};

/* One admin token of admin_tokens (DESIGN §10): only its SHA-256 is kept. */
enum gw_admin_role { ADMIN_ROLE_VIEWER, ADMIN_ROLE_OPERATOR };
struct gw_admin_token {
    char *id;      /* owned; names the token in the audit log */
    char hash[65]; /* hex SHA-256 of the token */
    enum gw_admin_role role;
};

struct gw_config {
    char *path; /* owned; the file it came from, or NULL */

    char *listen;       /* "127.0.0.1:8080" */
    char *admin_listen; /* "127.0.0.1:8081" */
    char *admin_token;  /* NULL: admin API open on its (loopback) listener */
    char *api_key;      /* NULL: client API needs no key; else Bearer <api_key> */
    enum log_level log_level;

    /* Explicit opt-outs of the fail-closed rules (DESIGN §3, §10); both false by default. */
    bool allow_no_auth;     /* may run without admin_token/api_key on a non-loopback listener,
                               and a reload may drop a token that was set */
    bool allow_empty_fleet; /* a reload may drop every static node */
    bool allow_plain_http;  /* a non-loopback listener may serve without TLS (DESIGN §10) */

    uint64_t max_header_bytes, max_body_bytes, max_connections;
    uint64_t header_timeout_ms, body_timeout_ms, client_idle_timeout_ms;

    uint64_t connect_timeout_ms, first_byte_timeout_ms, upstream_idle_timeout_ms;
    uint64_t total_timeout_ms, max_idle_per_node;

    uint64_t max_attempts;        /* attempts per request across nodes */
    uint64_t queue_max;           /* requests waiting for capacity at most (admission queue) */
    uint64_t queue_wait_ms;       /* how long one waits for capacity before 503 capacity */
    bool trust_forwarded;         /* keep the client's X-Forwarded-For/Forwarded (behind a LB) */
    uint64_t request_deadline_ms; /* no new attempt after this since arrival */

    uint64_t probe_jitter_ms, probe_timeout_ms; /* the interval is reg.probe_interval_ms */
    struct registry_config reg;                 /* rise, fall, faults, ejection */

    uint64_t shutdown_grace_ms;

    char *store_engine;    /* "sqlite" (default) or "postgres" */
    char *store_path;      /* SQLite file; ":memory:" keeps nothing across restarts */
    char *store_url;       /* PostgreSQL: libpq connection string or URI (may hold a password) */
    char *join_token;      /* NULL: joining through /drover/v1/nodes/join is off */
    bool join_enabled;     /* joining on; without join_token one is generated and stored */
    char *join_token_file; /* where a generated token is kept; NULL: beside the store */
    char *join_token_from; /* owned, not a key: the file join_token was read from, or NULL */
    bool join_allow_example_token; /* tests only: accept a published example join token */
    bool auto_approve;             /* a new node that joins is approved at once */
    uint64_t agent_poll_ms;        /* how often an agent rejoins (told in the join answer) */
    uint64_t store_flush_ms;       /* how often live state (faults, inventory) is written */
    uint64_t store_lease_ms; /* PostgreSQL: leader lock attempts and checks (docs/deploy.md) */

    uint64_t ops_interval_ms;    /* reconciler period for durable operations */
    uint64_t ops_timeout_ms;     /* one operation on an agent */
    uint64_t ops_answer_wait_ms; /* how long POST /admin/v1/ops waits for immediate attempts */
    bool testing_clock_control;  /* POST /admin/v1/testing/clock moves the ops clock */

    /* TLS (docs/tls.md). A listener serves TLS when both its cert and key are set; the files
     * are read again on SIGHUP (new connections get the new certificate). */
    char *tls_cert, *tls_key, *tls_min_version;                   /* client listener */
    char *admin_tls_cert, *admin_tls_key, *admin_tls_min_version; /* admin listener */
    char *upstream_ca_file;     /* CAs for https:// nodes; NULL: the system store */
    char *upstream_client_cert; /* mutual TLS toward nodes/agents; NULL: none */
    char *upstream_client_key;
    bool upstream_allow_plain_secrets; /* may send a node's key over plain http:// to a
                                          non-loopback address (DESIGN §10 opt-out) */

    struct gw_node_config *nodes;
    size_t n_nodes;

    /* client keys, usage, audit (docs/security.md) */
    struct gw_admin_token *admin_tokens; /* owned; besides admin_token (an operator) */
    size_t n_admin_tokens;
    bool keys_required;        /* the client API needs a key even when none exists yet */
    uint64_t keys_sync_ms;     /* several gateways: how often limits are reconciled */
    uint64_t usage_flush_ms;   /* how often usage rows are written to the store */
    unsigned auth_log_per_min; /* failed-authentication log lines per minute */

    struct cat_model **models; /* owned: the catalogue entries of the file */
    size_t n_models;

    uint64_t reconcile_interval_ms; /* replicas reconciler period */
    uint64_t replica_idle_ms;       /* an extra replica idle this long is unloaded */
    char *placement_eviction;       /* eviction strategies (docs/placement.md); NULL: lru */
    unsigned defrag_after_cycles;   /* load/unload cycles on a node before a defrag; 0: off */
    uint64_t load_wait_ms;          /* how long a request waits for a cold load or capacity */
    uint64_t load_timeout_ms;       /* one load on an agent */

    /* routing (docs/routing.md); route.policy is resolved from routing_policy at load */
    struct route_params route;
    char *routing_policy;         /* "least_loaded" (default), "cache_aware", "session", … */
    bool routing_explain;         /* X-Drover-Route on every answer, not only when asked */
    uint64_t prefix_max_entries;  /* cache_aware: (node, block) entries kept, all nodes */
    uint64_t prefix_node_entries; /* cache_aware: ... per node (its engine's cache), 0: no cap */
    uint64_t prefix_block_bytes;  /* cache_aware: bytes of prompt text per block */
    uint64_t prefix_bytes;        /* cache_aware: leading prompt bytes looked at */
    char *session_header;         /* session: the header that carries the key */
    bool signals_enabled;         /* scrape the engines' load endpoints on the probe schedule */
    struct ctxfit_params ctxfit;  /* routing.context.* (docs/routing.md "Context length") */
};

void gw_config_defaults(struct gw_config *cfg);
void gw_config_free(struct gw_config *cfg);

/* Loads path (may be NULL for defaults only), then applies the environment (envp, NULL-
 * terminated "K=V" strings) and the --set overrides (sets, "key=value"). On error the config
 * is left freed-and-defaulted and err says "where: reason". */
int gw_config_load(struct gw_config *cfg, const char *path, char *const *envp,
                   const char *const *sets, size_t n_sets, struct gw_error *err) WUR;

/* Parses one YAML document from memory (name is used in "name:line: reason" messages) with
 * no environment and no overrides: what the file alone says. Same contract as
 * gw_config_load on error. Used by the fuzz target. */
int gw_config_parse(struct gw_config *cfg, const char *name, const char *text, size_t len,
                    struct gw_error *err) WUR;

/* Would taking next in place of the running cur fail open? Refuses (GW_E_INVALID, err says
 * why and which key opts out) a next that drops admin_token or api_key that cur had, unless
 * next has allow_no_auth; that drops every static node when cur had some, unless next has
 * allow_empty_fleet; or that fails gw_config_exposure_check on cur's listeners (they do not
 * change on reload). Pure: reads both, changes nothing. */
int gw_config_reload_check(const struct gw_config *cur, const struct gw_config *next,
                           struct gw_error *err) WUR;

/* Refuses (GW_E_INVALID, err says why and which key opts out), in this order: a client
 * listener (listen) without api_key/keys.required, or an admin listener (admin_listen) without
 * admin_token, bound to anything but loopback, unless cfg has allow_no_auth; either listener
 * bound to anything but loopback without its TLS cert and key, unless allow_plain_http; a
 * join.token that is a published example value (gw_join_token_is_example) unless
 * join.allow_example_token, or an empty one. listen/admin_listen NULL: cfg's own. Pure. */
int gw_config_exposure_check(const struct gw_config *cfg, const char *listen,
                             const char *admin_listen, struct gw_error *err) WUR;

/* True for the join tokens this repository's examples and docs publish ("dev-join-token", …). */
bool gw_join_token_is_example(const char *token);

/* join.enabled without join.token: reads the token from join.token_file (default: the SQLite
 * store's path + ".join-token"), or, when that file does not exist, generates one ("djt-" + 48
 * hex characters from getrandom) and creates the file with mode 0600 (O_EXCL). Sets
 * cfg->join_token (and join_token_from). *generated is the new token when one was made (the
 * caller shows it once, on stdout, never in the log), else NULL; *where names the file.
 * Refuses a file readable by group or others, a file that holds no token, and PostgreSQL
 * without join.token_file (every gateway must share the token). A :memory: store gets a new
 * token at each start, not stored. Does nothing when join.token is set or joining is off.
 * Start-up and reload, loop thread. */
int gw_config_join_token_resolve(struct gw_config *cfg, char **generated, const char **where,
                                 struct gw_error *err) WUR;

/* True when host (no port, no brackets) is a loopback address or "localhost". */
bool gw_host_is_loopback(const char *host);

/* Splits "host:port" / "[v6]:port"; GW_E_INVALID otherwise. */
int gw_parse_hostport(const char *s, char *host, size_t host_cap, int *port) WUR;

/* Writes the effective scalar keys as "key = value" lines (for `drover serve --print-config`). */
void gw_config_dump(const struct gw_config *cfg, void (*line)(const char *s, void *ctx), void *ctx);

#endif
