/* sim_config — everything `drover sim` can be told, from a YAML file (--config) and flags
 * (flags win, whatever their order). Defaults are set by sim_config_defaults; parsing fills a
 * struct gw_error with a one-line reason ("file:line: reason" for YAML). The config owns
 * every string in it. Main thread, before the loop runs. */
#ifndef DROVER_SIM_SIM_CONFIG_H
#define DROVER_SIM_SIM_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "base/log.h"
#include "sim/sim_fault.h"

enum sim_model_kind { SIM_MODEL_CHAT = 0, SIM_MODEL_EMBEDDING = 1 };

enum { SIM_MAX_NODES = 4096, SIM_MAX_FAULTS = 16, SIM_MAX_MODELS = 256 };

struct sim_model_spec {
    char *name; /* owned */
    enum sim_model_kind kind;
    uint64_t vram_mb;   /* VRAM it takes when loaded; UINT64_MAX: model_vram_mb */
    int64_t load_ms;    /* -1: the node default */
    int64_t unload_ms;  /* -1: the node default */
    unsigned dims;      /* embedding size; 0: embedding_dims */
    bool preload;       /* loaded at start-up */
    uint64_t ctx;       /* context per request (tokens); 0: the node's (sim_config_ctx) */
    uint64_t *on_nodes; /* owned; node indexes that have it; NULL: every node */
    size_t n_on_nodes;
};

/* What one node reports as its hardware (GET /sim/v1/hardware, docs/sim.md): the shape of
 * the agent's discovery, so tests can hand it to an agent's discovery override. */
enum { SIM_MAX_GPUS = 16 };
struct sim_gpu {
    char name[64];
    uint64_t vram_mb;
    char compute_capability[16];
};
struct sim_hw {
    struct sim_gpu gpus[SIM_MAX_GPUS];
    size_t n_gpus;
    char cuda_version[32], rocm_version[32], driver_version[64];
    uint64_t context_size; /* the engine's context window (num_ctx); 0: not said. Enforced
                              and shown like --ctx for this node's models */
};

struct sim_config {
    char *host; /* owned */
    int port;   /* 0: find K consecutive free ports */
    unsigned nodes;
    char *port_file; /* owned; NULL: none */
    enum log_level log_level;

    double tokens_per_second; /* stream pacing; 0: as fast as possible */
    double ttft_ms;           /* base time to first token */
    double ttft_per_token_ms; /* per prompt token not found in the prefix cache */
    unsigned slots;           /* parallel requests per node */
    unsigned queue_max;       /* waiting requests per node; beyond: 503 */
    unsigned busy_retry_after_s;
    uint64_t load_ms, unload_ms;
    uint64_t node_vram_mb; /* 0: unlimited */
    unsigned default_max_tokens;
    unsigned max_tokens_cap;
    unsigned cache_blocks;   /* prefix cache size per node, in blocks; 0 disables */
    unsigned block_tokens;   /* tokens per cache block */
    unsigned embedding_dims; /* default for embedding models */
    uint64_t seed;

    double fault_rate;
    struct sim_fault faults[SIM_MAX_FAULTS];
    size_t n_faults;

    uint64_t model_vram_mb; /* default VRAM per model */
    uint64_t ctx;           /* context per request (tokens) of every model; 0: unlimited */
    char *hide_ctx;         /* owned; NULL/"none": shown where the engines show it; "models":
                               not in the model lists (an older llama-server: /props only);
                               "all": nowhere (enforced, never said) */
    bool preload_all;       /* every model loaded at start-up */

    struct sim_model_spec **models; /* owned array of owned specs (stable addresses) */
    size_t n_models;

    struct sim_hw *hw; /* owned; hw[i] for node i (YAML `hardware:`), n_hw entries */
    size_t n_hw;

    size_t max_header_bytes, max_body_bytes;
    uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms;
    unsigned max_connections;
};

void sim_config_defaults(struct sim_config *c);
void sim_config_free(struct sim_config *c);
/* Parses argv (argv[0] is the command name). Returns 0; 1 if --help was given (usage
 * printed to out); or a negative code with err filled. Reads --config first wherever it is. */
int sim_config_parse_args(struct sim_config *c, int argc, char **argv, FILE *out,
                          struct gw_error *err) WUR;
/* Loads a YAML file over c; "path:line: reason" on error. */
int sim_config_load_yaml(struct sim_config *c, const char *path, struct gw_error *err) WUR;
/* Adds (or replaces by name) a model given as NAME or NAME:embedding / NAME:chat. */
int sim_config_add_model_arg(struct sim_config *c, const char *arg, struct gw_error *err) WUR;
void sim_config_usage(FILE *out);
/* Index of the model spec with this name (exact, or NAME == SPEC:latest), or -1. */
long sim_config_find_model(const struct sim_config *c, const char *name, size_t len);
/* Appends a chat spec with defaults for a pulled model nobody configured; returns it. */
struct sim_model_spec *sim_config_add_pulled(struct sim_config *c, const char *name, size_t len);
/* Effective per-model values. */
uint64_t sim_config_model_vram_mb(const struct sim_config *c, const struct sim_model_spec *m);
uint64_t sim_config_model_load_ms(const struct sim_config *c, const struct sim_model_spec *m);
uint64_t sim_config_model_unload_ms(const struct sim_config *c, const struct sim_model_spec *m);
unsigned sim_config_model_dims(const struct sim_config *c, const struct sim_model_spec *m);
bool sim_config_model_on_node(const struct sim_model_spec *m, unsigned node);
/* The context of model m on node: the model's `ctx`, else the node's hardware context_size,
 * else --ctx; 0: unlimited. */
uint64_t sim_config_ctx(const struct sim_config *c, const struct sim_model_spec *m, unsigned node);
/* Where the context is shown: 0 everywhere, 1 not in model lists, 2 nowhere. */
int sim_config_ctx_hidden(const struct sim_config *c);

#endif
