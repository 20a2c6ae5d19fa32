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
    /* discovery override: fields present here replace detected ones */
    char *discovery_json; /* the override as JSON text (from YAML), NULL for none */
};

/* Loads path (NULL: none), then env (environ-style, may be NULL), then flags as KEY=VALUE
 * pairs (keys as in YAML; "label" adds one label "k=v"). 0 or GW_E_INVALID with err. */
int agent_config_load(struct agent_config *c, const char *path, char *const *env,
                      const char *const *sets, size_t n_sets, struct gw_error *err) WUR;
void agent_config_free(struct agent_config *c);
/* Applies c's discovery override onto d. */
int agent_config_apply_discovery(const struct agent_config *c, struct node_api_discovery *d,
                                 struct gw_error *err) WUR;

#endif
