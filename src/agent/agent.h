/* agent — `drover agent`, the node agent beside one inference engine (docs/agent.md). One
 * struct agent lives for the process; the loop thread owns all of it. Modules:
 *   agent_main.c   flags, config, listener, signals, ready line, shutdown
 *   agent_api.c    the gateway-facing API: auth (Bearer H), health, discovery, models,
 *                  load/unload, routing to the proxy
 *   agent_proxy.c  inference proxied to the engine byte for byte, with backpressure
 *   agent_join.c   joining the gateway, the state file with the node secret S
 *   agent_engine.c engine adapters; agent_discovery.c machine facts; agent_config.c
 *   agent_ops.c    fleet operations and the inventory; agent_proc.c child processes
 *   agent_upgrade.c upgrade checks: the latest digest of each installed item, cached */
#ifndef DROVER_AGENT_AGENT_H
#define DROVER_AGENT_AGENT_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent/agent_config.h"
#include "agent/agent_engine.h"
#include "agent/agent_upgrade.h"
#include "base/buf.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "proto/node_api.h"

enum { AGENT_MAX_TRACKED = 256 };

struct agent_model_count {
    char id[NODE_API_MAX_ID];
    uint32_t n;
};

struct agent {
    struct agent_config cfg;
    uv_loop_t *loop;
    struct http_server *srv;
    struct http_client *client;
    struct agent_engine engine;
    struct node_api_discovery disc;
    char listen_addr[160];
    char advertise[NODE_API_MAX_URL];

    char secret[NODE_API_SECRET_HEX + 1]; /* S; empty until issued */
    char key[NODE_API_SECRET_HEX + 1];    /* H = hex(SHA-256(S)) */

    /* traffic */
    uint32_t in_flight; /* proxied requests in progress */
    uint32_t pending;   /* everything shutdown waits for: proxied requests and engine ops */
    struct agent_model_count counts[AGENT_MAX_TRACKED]; /* in flight per model */
    size_t n_counts;
    char loading[AGENT_MAX_TRACKED][NODE_API_MAX_ID]; /* loads in progress */
    size_t n_loading;

    /* joining */
    char gw_host[128]; /* numeric (resolved once at start) or localhost */
    int gw_port;
    bool gw_tls;           /* https:// gateway: verified against gateway_ca_file or the system */
    char gw_tls_name[128]; /* the host as the URL wrote it: checked against its certificate */
    uv_timer_t join_timer;
    struct http_call *join_call;
    struct buf join_answer;
    int join_status;
    uint64_t poll_ms;
    char join_state[24]; /* "", "pending", "approved", "refused" */

    /* upgrade checks (agent_upgrade.c) */
    struct agent_upgrade upg;

    /* GPU refresh (free VRAM changes) */
    struct agent_gpu_probe *gpu;
    uv_timer_t gpu_timer;

    /* lifecycle */
    bool stopping;
    unsigned term_count;
    uv_signal_t sigterm, sigint, sighup; /* SIGHUP: re-read the TLS files */
    uv_timer_t grace;
    uv_check_t drain_check;
};

/* agent_api.c */
void agent_api_handle(struct http_request *req, void *ctx);
/* Per-model accounting of proxied requests (id may be empty: not counted per model). */
void agent_count_model(struct agent *a, const char *id, int delta);
/* Answers an OpenAI-shaped error {"error":{"message","type","param":null,"code"}} with
 * optional extra header (name/value may be NULL). Returns what http_respond returned. */
int agent_answer_error(struct http_request *req, int status, const char *type, const char *code,
                       const char *message, const char *hname, const char *hvalue);

/* agent_ops.c: POST /drover/v1/ops, GET /drover/v1/inventory (docs/node_api.md), and the
 * ops this agent takes, put into its discovery. */
void agent_ops_handle(struct agent *a, struct http_request *req);
void agent_inventory_handle(struct agent *a, struct http_request *req);
void agent_ops_fill_discovery(struct agent *a);
/* Lists the node's models (the engine's view; models_ok when it answered) and backends (the
 * backend.list template; backends_ok when it ran and exited 0) as proto's inventory, without
 * latest digests. Counted in a->pending until done, which is called exactly once (perhaps
 * before this returns) with inv borrowed for the call. track (may be NULL) points to the run
 * while it is under way and is set to NULL before done. */
struct agent_inventory_run;
typedef void agent_inventory_fn(struct agent *a, struct node_api_inventory *inv, bool models_ok,
                                bool backends_ok, void *ctx);
void agent_inventory_collect(struct agent *a, agent_inventory_fn *done, void *ctx,
                             struct agent_inventory_run **track);
/* Kills the run's backend.list command now (shutdown); done still follows. */
void agent_inventory_kill(struct agent_inventory_run *r);

/* agent_proxy.c */
void agent_proxy_handle(struct agent *a, struct http_request *req);

/* agent_join.c */
/* Sets S (and H from it); s NULL or "" clears both. */
void agent_set_secret(struct agent *a, const char *s);
/* State file: {"name":..., "secret":"<64 hex>"}; written to path.tmp, fsync'd, renamed, mode
 * 0600. Load gives GW_E_NOTFOUND when the file does not exist. */
int agent_state_save(const char *path, const char *name, const char *secret,
                     struct gw_error *err) WUR;
int agent_state_load(const char *path, char secret[NODE_API_SECRET_HEX + 1],
                     struct gw_error *err) WUR;
/* Starts joining (at once, then every poll_ms); no-op without a gateway in the config. */
int agent_join_start(struct agent *a, struct gw_error *err) WUR;
void agent_join_stop(struct agent *a);

/* `drover agent`'s entry point (agent_main.c): argv[0] is "agent"; returns the exit code. */
int agent_main(int argc, char **argv);

#endif
