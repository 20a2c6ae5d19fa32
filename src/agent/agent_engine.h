/* agent_engine — engine adapters: one view (models with status and capabilities, in-flight and
 * queued requests) over each engine's own endpoints, and load/unload where the engine can.
 *
 * Two layers. The pure layer parses recorded response bodies (unit-tested on real samples):
 *   llamacpp  GET /v1/models, /slots (optional), /metrics (optional: llamacpp:requests_*),
 *             /props (a slot's context, when /v1/models does not say it)
 *   ollama    GET /api/tags (on disk), /api/ps (loaded, with the context it is loaded with)
 *   vllm      GET /v1/models, /metrics (vllm:num_requests_running / _waiting)
 *   openai    GET /v1/models (all loaded)
 * The async layer (agent_engine_inventory, agent_engine_load) fetches those bodies with
 * http_client on the loop thread and hands them to the pure layer. */
#ifndef DROVER_AGENT_AGENT_ENGINE_H
#define DROVER_AGENT_AGENT_ENGINE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/strv.h"
#include "net/http_client.h"
#include "proto/node_api.h"

/* --- pure parsers ---------------------------------------------------------------------- */

/* llama-server /slots: an array of slots; a slot is busy when "is_processing" is true (newer
 * servers) or "state" is non-zero (older ones). */
int agent_engine_parse_llamacpp_slots(const char *p, size_t len, uint32_t *busy, uint32_t *total,
                                      struct gw_error *err) WUR;
/* Prometheus text: the sum of every sample of metric `name` (with or without labels).
 * GW_E_NOTFOUND when no sample has that name. */
int agent_engine_prom_sum(const char *p, size_t len, const char *name, double *out) WUR;

/* What the inventory fetch got: one body per endpoint (status 0 = unreachable). */
enum agent_engine_ep {
    AGENT_EP_MODELS,  /* /v1/models or /api/tags */
    AGENT_EP_LOADED,  /* /api/ps (ollama) */
    AGENT_EP_SLOTS,   /* /slots (llamacpp) */
    AGENT_EP_METRICS, /* /metrics (llamacpp, vllm) */
    AGENT_EP_PROPS,   /* /props (llamacpp): a slot's context length */
    AGENT_EP__COUNT,
};
struct agent_engine_bodies {
    bool wanted[AGENT_EP__COUNT];
    int status[AGENT_EP__COUNT];
    struct strv body[AGENT_EP__COUNT];
};
/* The endpoints an engine kind needs and their paths (NULL when not wanted). */
const char *agent_engine_ep_path(enum node_kind kind, enum agent_engine_ep ep);

struct agent_engine_view {
    bool reachable;                /* the main listing answered 2xx and parsed */
    bool has_counts;               /* running/queued came from the engine */
    uint32_t running;              /* requests the engine is processing */
    uint32_t queued;               /* requests the engine holds back */
    struct node_api_models models; /* owned */
    char error[160];               /* why not reachable */
};
/* Builds the one view from the bodies (pure). view->models must be empty or zeroed. */
void agent_engine_build(enum node_kind kind, const struct agent_engine_bodies *b,
                        struct agent_engine_view *view);
void agent_engine_view_free(struct agent_engine_view *v);

/* Ollama load/unload request body: {"model":m,"prompt":"","stream":false,"keep_alive":K}. */
int agent_engine_ollama_load_body(struct buf *out, const char *model, bool unload) WUR;

/* --- async layer (loop thread) --------------------------------------------------------- */

struct agent_engine {
    enum node_kind kind;
    char host[128]; /* numeric or "localhost" */
    int port;
    char url[NODE_API_MAX_URL];
    const char *api_key;        /* borrowed; NULL for none */
    struct http_client *client; /* borrowed */
    uint64_t timeout_ms;        /* per inventory/load call (total) */
    uint64_t load_timeout_ms;
};

/* Parses "http://HOST:PORT[/]" into host and port; GW_E_INVALID otherwise (with err). */
int agent_engine_parse_url(const char *url, char *host, size_t host_cap, int *port,
                           struct gw_error *err) WUR;
/* The same for "http://" or "https://" (the gateway's URL): *is_tls says which; the port
 * defaults to 80 or 443. host is bare (no brackets). */
int agent_engine_parse_base_url(const char *url, char *host, size_t host_cap, int *port,
                                bool *is_tls, struct gw_error *err) WUR;

typedef void agent_engine_view_fn(struct agent_engine_view *view, void *ctx);
/* Fetches the endpoints of e's kind in parallel and calls cb once with the view (owned by the
 * callee for the call only); cb may run before this returns (no call could start). */
void agent_engine_inventory(struct agent_engine *e, agent_engine_view_fn *cb, void *ctx);

/* Result of a load/unload: status to answer (200, 404, 501, 502, 504) and a message. */
struct agent_engine_op_result {
    int status;
    const char *code; /* NULL on success */
    char message[256];
};
typedef void agent_engine_op_fn(const struct agent_engine_op_result *r, void *ctx);
/* Load (unload false) or unload model. Engines without the operation answer at once (cb is
 * still called, synchronously, with 501 "unsupported"). */
void agent_engine_load(struct agent_engine *e, const char *model, bool unload,
                       agent_engine_op_fn *cb, void *ctx);

#endif
