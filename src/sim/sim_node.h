/* sim_node — one virtual inference node and the requests it is serving: its models (present,
 * loading, loaded, unloading, VRAM), parallel slots with a FIFO queue behind them, the prefix
 * cache and the counters /metrics shows. sim_api.c speaks the wire formats on top; sim_main.c
 * owns the process. Internal to src/sim. Loop thread only. */
#ifndef DROVER_SIM_SIM_NODE_H
#define DROVER_SIM_SIM_NODE_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/strv.h"
#include "net/http_server.h"
#include "sim/sim_cache.h"
#include "sim/sim_config.h"
#include "sim/sim_fault.h"
#include "sim/sim_out.h"

struct sim_node;
struct sim_req;

/* The process: one loop, one config, K nodes. */
struct sim {
    uv_loop_t *loop;
    struct sim_config *cfg; /* borrowed */
    struct sim_node *nodes; /* owned, cfg->nodes entries */
    unsigned n_nodes;
    uint64_t rng; /* fault-rate dice */
    bool stopping;
    uint64_t next_req_id;
};

enum sim_model_phase { SIM_UNLOADED = 0, SIM_LOADING, SIM_LOADED, SIM_UNLOADING };

struct sim_model_state {
    struct sim_node *node;
    struct sim_model_spec *spec; /* borrowed from the config catalogue */
    bool present;                /* on this node's "disk" */
    enum sim_model_phase phase;
    bool timer_ready;
    uv_timer_t timer; /* load / unload */
    uint64_t vram_mb; /* what it holds while loading or loaded */
    uint64_t loaded_wall_ms;
    uint64_t last_used_ms;
    unsigned inflight;
    struct sim_req *waiters, *waiters_tail; /* admitted requests waiting for the load */
};

struct sim_metrics {
    uint64_t requests;
    uint64_t prompt_tokens;
    uint64_t predicted_tokens;
    uint64_t cached_tokens;
    uint64_t faults;
    uint64_t rejected_busy;
    uint64_t loads;
    uint64_t evictions;
};

struct sim_node {
    struct sim *sim;
    unsigned index;
    int port;
    struct http_server *server;
    struct sim_model_state **models; /* owned */
    size_t n_models;
    unsigned busy_slots;
    struct sim_req *queue, *queue_tail;
    unsigned queue_len;
    struct sim_cache cache;
    uint64_t vram_used_mb;
    struct sim_metrics m;
};

enum sim_api {
    SIM_API_OTHER = 0,
    SIM_API_OAI_CHAT,
    SIM_API_OAI_COMPLETION,
    SIM_API_OAI_EMBED,
    SIM_API_OLL_CHAT,
    SIM_API_OLL_GENERATE,
    SIM_API_OLL_EMBED,
    SIM_API_OLL_PULL,
};

enum sim_req_phase {
    SIM_REQ_NEW = 0,
    SIM_REQ_DELAY,   /* slow_headers */
    SIM_REQ_HANG,    /* never answers */
    SIM_REQ_QUEUED,  /* waiting for a slot */
    SIM_REQ_LOADING, /* has a slot, waiting for the model */
    SIM_REQ_COMPUTE, /* prompt processing (TTFT) */
    SIM_REQ_STREAM,  /* producing tokens */
    SIM_REQ_PULL,
    SIM_REQ_RESET_WAIT, /* response complete, RST pending */
    SIM_REQ_DONE,
};

struct sim_req {
    struct sim_node *node;
    struct http_request *http; /* borrowed; NULL once ended or aborted */
    enum sim_api api;
    enum sim_req_phase phase;
    struct sim_fault fault;
    struct sim_model_state *model; /* borrowed */
    struct sim_req *next;          /* queue or waiters link */
    uv_timer_t timer;
    bool ollama; /* error and body shapes */
    bool stream;
    bool include_usage;
    bool base64;       /* OpenAI embeddings: encoding_format "base64" (float32 little-endian) */
    bool unload_after; /* Ollama keep_alive: 0 */
    bool load_only;    /* Ollama generate/chat without a prompt */
    bool has_slot;
    bool counted_inflight;
    bool length_limited;
    bool closing;
    bool gone;    /* a write failed: only the abort callback is left to come */
    bool blocked; /* write queue above high water: wait for the drain callback */
    uint64_t max_tokens, n_out;
    uint64_t seed;
    uint64_t prompt_tokens, cached_tokens;
    char *prompt; /* owned: the rendered prompt (cache keys, seed, embeddings) */
    size_t prompt_len;
    char **inputs; /* owned: embedding inputs */
    size_t n_inputs;
    uint64_t t_arrive_us, t_slot_us, t_loaded_us, t_first_us, load_us;
    uint64_t created_s;
    uint64_t events; /* stream events written (cut_after) */
    unsigned pull_step;
    int reset_fd;
    char peer[64];
    char id[48];
};

/* --- nodes ---------------------------------------------------------------------------- */
void sim_node_init(struct sim_node *n, struct sim *sim, unsigned index);
/* Frees memory; every handle must be closed already (after sim_node_close_handles and the
 * loop ran). */
void sim_node_free(struct sim_node *n);
void sim_node_close_handles(struct sim_node *n);
/* The present model with this name, or NULL. */
struct sim_model_state *sim_node_model(struct sim_node *n, struct strv name);
/* Makes spec present on the node (pull). */
struct sim_model_state *sim_node_add_model(struct sim_node *n, struct sim_model_spec *spec);
/* Removes a present model (delete); waiters fail with 404. */
void sim_node_delete_model(struct sim_model_state *ms);
/* Starts unloading a loaded idle model (keep_alive: 0). */
void sim_node_unload(struct sim_model_state *ms);
/* Renders the Prometheus text. */
void sim_node_metrics(struct sim_node *n, struct sim_out *o);

/* --- requests ------------------------------------------------------------------------- */
/* Takes a slot now, queues the request, or returns GW_E_LIMIT (queue full: answer 503). */
int sim_node_admit(struct sim_req *r) WUR;
/* The request no longer needs its slot, queue place or model; frees the slot for the next
 * queued request. Safe to call more than once. */
void sim_node_release(struct sim_req *r);

/* Called by sim_node when the request holds a slot and its model is loaded. */
void sim_api_ready(struct sim_req *r);
/* Called by sim_node when a waiting request cannot be served (model deleted, no VRAM). */
void sim_api_fail(struct sim_req *r, int status, const char *code, const char *msg);
/* The http handler for every node (ctx = struct sim_node). */
void sim_api_handle(struct http_request *req, void *ctx);

#endif
