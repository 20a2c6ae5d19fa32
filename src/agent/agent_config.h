/* agent_config — the agent's settings: YAML file, then DROVER_AGENT_<KEY> environment
 * variables, then flags (each later source wins). Errors are one line; a bad file reads
 * "file:line: reason". Every string is owned by the config. Main thread, before the loop. */
#ifndef DROVER_AGENT_AGENT_CONFIG_H
#define DROVER_AGENT_AGENT_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "proto/node_api.h"

enum { AGENT_OPS_N_TEMPLATES = 7 };
/* "model.install", "model.upgrade", "model.delete", "backend.install", "backend.upgrade",
 * "backend.delete", "backend.list" */
extern const char *const agent_ops_templates[AGENT_OPS_N_TEMPLATES];

struct agent_config {
    char *gateway;    /* base URL of the gateway's client listener; NULL: do not join */
    char *join_token; /* needed with gateway */
    enum node_kind engine;
    char *engine_url;     /* default per engine: llamacpp :8080, ollama :11434, vllm :8000 */
    char *engine_api_key; /* sent to the engine as Bearer; NULL for none */
    char *name;           /* default: hostname */
    char *listen;         /* default 127.0.0.1:9300 */
    char *advertise;      /* URL the gateway calls; default http://<listen> (real port) */
    char *state_file;     /* default drover-agent.state */
    char *nvidia_smi;     /* default "nvidia-smi"; "off" disables */
    /* TLS (docs/agent.md "TLS"). The listener serves TLS when tls_cert and tls_key are set;
     * the files are read again on SIGHUP (new connections get them). */
    char *tls_cert, *tls_key;
    char *tls_client_ca;   /* mutual TLS: require a client certificate signed by these CAs */
    char *tls_min_version; /* "1.2" (default) or "1.3" */
    char *gateway_ca_file; /* CAs trusted for an https:// gateway; NULL: the system store */
    bool allow_plain_http; /* DESIGN §10 opt-out: a plain listener beyond loopback, and the
                              join token and secret over plain http to a non-loopback gateway */
    struct node_api_label labels[NODE_API_MAX_LABELS];
    size_t n_labels;
    uint64_t poll_ms;               /* join heartbeat until the gateway says otherwise; 10 s */
    uint64_t engine_timeout_ms;     /* inventory calls; 5 s */
    uint64_t first_byte_timeout_ms; /* proxied requests; 10 min */
    uint64_t load_timeout_ms;       /* load/unload; 10 min */
    uint64_t shutdown_grace_ms;     /* 30 s */
    uint64_t discovery_interval_ms; /* GPU refresh; 60 s */
    enum log_level log_level;
    uint64_t ops_timeout_ms; /* fleet operations: the longest one may run; 10 min */
    /* command templates of fleet operations (docs/node_api.md), by agent_ops_templates[] */
    char *ops_commands[AGENT_OPS_N_TEMPLATES];
    /* upgrade checks (docs/agent.md "Upgrade checks"): argv templates with {name} whose stdout
     * is the source's latest digest; NULL: that kind is not checked */
    char *upgrade_check_models, *upgrade_check_backends;
    uint64_t upgrade_check_interval_ms; /* a result's life; 1 h */
    uint64_t upgrade_check_timeout_ms;  /* per check; 60 s */
    uint64_t upgrade_check_concurrency; /* checks at once; 2 */
    /* discovery override: fields present here replace detected ones */
    char *discovery_json; /* the override as JSON text (from YAML), NULL for none */
};

/* Loads path (NULL: none), then env (environ-style, may be NULL), then flags as KEY=VALUE
 * pairs (keys as in YAML; "label" adds one label "k=v"). A dotted key (tls.cert) is a nested
 * map in YAML (tls: {cert: …}) and DROVER_AGENT_TLS_CERT in the environment. Then checks the
 * whole: TLS files that go together, the gateway URL (http:// or https://), and that no
 * secret crosses a network in clear (agent_config_exposure_check). 0 or GW_E_INVALID with
 * err. */
int agent_config_load(struct agent_config *c, const char *path, char *const *env,
                      const char *const *sets, size_t n_sets, struct gw_error *err) WUR;
void agent_config_free(struct agent_config *c);
/* DESIGN §10 for the agent, without allow_plain_http: refuses a listener on a non-loopback
 * address without TLS (the gateway's key H, prompts and answers would cross the network in
 * clear) and a plain http:// gateway URL whose host is not loopback (the join token and the
 * node secret would). Host names other than localhost count as non-loopback. Pure. */
int agent_config_exposure_check(const struct agent_config *c, struct gw_error *err) WUR;
/* Splits "host:port" / "[v6]:port" (host without brackets); GW_E_INVALID otherwise. */
int agent_config_split_hostport(const char *addr, char *host, size_t cap, int *port) WUR;
/* True when the listener serves TLS (tls.cert and tls.key set). */
bool agent_config_has_tls(const struct agent_config *c);
/* The URL the gateway is told to call: advertise when set, else http(s)://listen_addr (https
 * when the listener serves TLS). */
void agent_config_advertise(const struct agent_config *c, const char *listen_addr, char *out,
                            size_t cap);
/* Applies c's discovery override onto d. */
int agent_config_apply_discovery(const struct agent_config *c, struct node_api_discovery *d,
                                 struct gw_error *err) WUR;

#endif
