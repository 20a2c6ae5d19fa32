/* node_api — the names and JSON shapes of docs/node_api.md, shared by the gateway (src/gw/)
 * and the agent (src/agent/): paths, header names, engine kinds, model status and capability
 * names, and emit/parse helpers for the MODEL list, the discovery object, the health answer,
 * the join request and answer, the fleet operation and its answer, and the inventory. Emitters
 * append to a capped struct buf (GW_E_LIMIT past its cap). Parsers take the raw bytes (strict JSON,
 * depth-capped), copy what they keep into fixed-size fields or owned arrays, refuse a known field
 * of the wrong type (GW_E_INVALID with the field named in err) and ignore unknown fields. Any
 * thread; no global state. */
#ifndef DROVER_PROTO_NODE_API_H
#define DROVER_PROTO_NODE_API_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/strv.h"
#include "proto/op_result.h"

struct json_object;

/* The kind of a node: the engine it runs (behind its agent, or talked to directly). The
 * gateway's registry and the agent share this one enum; the order is part of no wire format
 * (names travel, never numbers). */
enum node_kind { NODE_KIND_OPENAI, NODE_KIND_LLAMACPP, NODE_KIND_OLLAMA, NODE_KIND_VLLM };
enum { NODE_KIND_COUNT = 4 };
const char *node_kind_name(enum node_kind k);                /* "openai", ...; "?" when unknown */
int node_kind_parse(const char *s, enum node_kind *out) WUR; /* GW_E_INVALID when unknown */

/* Paths. */
#define NODE_API_PATH_JOIN "/drover/v1/nodes/join" /* on the gateway's client listener */
#define NODE_API_PATH_PING "/drover/v1/ping"       /* agent, no auth */
#define NODE_API_PATH_HEALTH "/drover/v1/health"
#define NODE_API_PATH_DISCOVERY "/drover/v1/discovery"
#define NODE_API_PATH_MODELS "/drover/v1/models"
#define NODE_API_PATH_LOAD "/drover/v1/models/load"
#define NODE_API_PATH_UNLOAD "/drover/v1/models/unload"
#define NODE_API_PATH_OPS "/drover/v1/ops"
#define NODE_API_PATH_INVENTORY "/drover/v1/inventory"

/* The engines' own model lists: what an engine answers (and a plain node's probe asks). */
#define NODE_API_PATH_OAI_MODELS "/v1/models"
#define NODE_API_PATH_OLLAMA_TAGS "/api/tags"
/* The engine's model list path for kind: /api/tags on Ollama, else /v1/models. */
const char *node_api_models_path(enum node_kind k);
/* The inference routes both sides pass through byte for byte: POST /v1/chat/completions,
 * /v1/completions, /v1/embeddings, /api/chat, /api/generate, /api/embed, /api/embeddings. */
bool node_api_is_inference_path(struct strv path);
/* What an agent proxies to its engine: an inference POST, or GET of an engine model list. */
bool node_api_is_proxied(struct strv method, struct strv path);

/* Headers. X-Drover-Engine marks an answer the agent made itself because of the engine:
 * "unreachable" (could not connect or the connection broke before any byte), "timeout",
 * "malformed". */
#define NODE_API_HEADER_ENGINE "X-Drover-Engine"
#define NODE_API_ENGINE_UNREACHABLE "unreachable"
#define NODE_API_ENGINE_TIMEOUT "timeout"
#define NODE_API_ENGINE_MALFORMED "malformed"

/* Error codes in the agent's own OpenAI-shaped error bodies. */
#define NODE_API_CODE_ENGINE_UNREACHABLE "engine_unreachable"
#define NODE_API_CODE_ENGINE_TIMEOUT "engine_timeout"
#define NODE_API_CODE_ENGINE_MALFORMED "engine_malformed"
#define NODE_API_CODE_UNSUPPORTED "unsupported"
#define NODE_API_CODE_UNAUTHORIZED "invalid_api_key"

enum {
    NODE_API_MAX_BODY_BYTES = 1024 * 1024,
    NODE_API_MAX_DEPTH = 16,
    NODE_API_MAX_NAME = 64, /* name: 1..63 of [A-Za-z0-9._-] plus NUL */
    NODE_API_MAX_ID = 256,  /* model id plus NUL */
    NODE_API_MAX_URL = 512,
    NODE_API_MAX_TEXT = 256, /* hostname, os, kernel, gpu name, versions */
    NODE_API_MAX_MODELS = 4096,
    NODE_API_MAX_GPUS = 64,
    NODE_API_MAX_LABELS = 32,
    NODE_API_SECRET_HEX = 64,
    NODE_API_MAX_JOIN_URL = 255,              /* the URL an agent advertises */
    NODE_API_MAX_LABEL_KEY = 63,              /* 1..63 of [A-Za-z0-9._-/] */
    NODE_API_MAX_LABEL_VALUE = 255,           /* printable bytes */
    NODE_API_MAX_DISCOVERY_BYTES = 64 * 1024, /* a join's discovery object, as sent */
    NODE_API_MAX_VERSION = 64,                /* agent_version */
    NODE_API_MAX_PARAM = 64,                  /* the field a refusal names, plus NUL */
    NODE_API_MAX_DIGEST = 80,                 /* "sha256:" and 64 hex digits fit */
};

enum node_api_model_status {
    NODE_API_MODEL_LOADED,
    NODE_API_MODEL_LOADING,
    NODE_API_MODEL_ON_DISK,
};

/* Capabilities a request uses and a model has: one primary (chat, completions, embeddings)
 * and any optional features (tools, vision, a response format). The names are the
 * "capabilities" of a MODEL; the gateway's marks (registry) index them by bit position. */
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
const char *cap_name(unsigned cap_bit); /* "chat", "tools", ... for one bit; "?" otherwise */
/* A guess from the model's name or family alone: "embed"/"bert" in it (any case) means
 * embeddings only, else chat + completions. */
unsigned node_api_caps_guess(struct strv name, struct strv family);
/* True for a valid node name: 1..63 of [A-Za-z0-9._-]. */
bool node_api_name_is_valid(struct strv s);
/* True for 64 lowercase hex digits (what the gateway issues). */
bool node_api_secret_is_valid(struct strv s);
/* Labels (the join's, and the admin API's): keys 1..63 of [A-Za-z0-9._-/], values at most 255
 * bytes with no control byte. */
bool node_api_label_key_is_valid(struct strv s);
bool node_api_label_value_is_valid(struct strv s);

/* --- MODEL --------------------------------------------------------------------------- */

struct node_api_model {
    char id[NODE_API_MAX_ID];
    enum node_api_model_status status;
    unsigned caps; /* CAP_* */
    uint32_t in_flight;
    int64_t size_mb;    /* -1 when unknown (not emitted) */
    int64_t ctx_tokens; /* the context a request may fill, in tokens ("context_length");
                           0 when unknown (not emitted) */
    /* the engine's digest of the model (Ollama's lists); "" unknown. Not part of MODEL: only
     * the engine list parsers fill it, and the agent's inventory carries it */
    char digest[NODE_API_MAX_DIGEST];
};

/* A growable list; owned items. Zero-initialised is an empty list. */
struct node_api_models {
    struct node_api_model *v;
    size_t n, cap;
};
/* Appends an entry and returns it (zeroed, size_mb -1, id copied and truncated to fit), or
 * NULL past NODE_API_MAX_MODELS. */
struct node_api_model *node_api_models_add(struct node_api_models *l, struct strv id);
struct node_api_model *node_api_models_find(struct node_api_models *l, struct strv id);
void node_api_models_free(struct node_api_models *l);
/* The engines' own model lists, parsed once for the agent and for the gateway's probe of a
 * static node. OpenAI list {"data":[{"id":...}]} (llama-server, vLLM, any OpenAI server):
 * every model appended as loaded, capabilities guessed from its id, ctx_tokens from vLLM's
 * "max_model_len" or llama-server's "meta":{"n_ctx"} (per slot) when there. Ollama /api/tags
 * (on disk) or /api/ps (ps: loaded): "name" (or "model"), family from details, size, "digest"
 * when it is a string that fits (else none), and ctx_tokens from /api/ps's "context_length"
 * (the context it is loaded with). Models already in out are updated, not repeated; past
 * NODE_API_MAX_MODELS the rest is dropped. */
enum { NODE_API_ENGINE_MAX_DEPTH = 32 };
int node_api_oai_models_parse(const char *p, size_t len, struct node_api_models *out,
                              struct gw_error *err) WUR;
int node_api_ollama_list_parse(const char *p, size_t len, bool ps, struct node_api_models *out,
                               struct gw_error *err) WUR;

/* --- discovery ----------------------------------------------------------------------- */

struct node_api_gpu {
    int index;
    char name[NODE_API_MAX_TEXT];
    int64_t vram_total_mb; /* -1 unknown */
    int64_t vram_free_mb;  /* -1 unknown */
    char compute_capability[16];
    char driver_version[64];
    char cuda_version[32];
};

/* An installed model or backend with its digest and, when the agent's check template ran,
 * the source's latest digest (docs/agent.md "Upgrade checks"). Empty strings: unknown. */
enum { NODE_API_MAX_INSTALLED = 64 };
struct node_api_installed {
    bool is_model; /* "kind":"model", else "backend" */
    char name[NODE_API_MAX_ID];
    char digest[NODE_API_MAX_DIGEST];
    char latest_digest[NODE_API_MAX_DIGEST];
    int64_t checked_ms; /* unix ms of the check; -1 never */
};

struct node_api_discovery {
    char hostname[NODE_API_MAX_TEXT];
    char os[NODE_API_MAX_TEXT];
    char kernel[NODE_API_MAX_TEXT];
    int64_t cpus;   /* -1 unknown */
    int64_t ram_mb; /* -1 unknown */
    struct node_api_gpu gpus[NODE_API_MAX_GPUS];
    size_t n_gpus;
    /* the fleet operations this agent takes, "model.install" … (docs/node_api.md) */
    char ops[16][32];
    size_t n_ops;
    bool has_ops; /* "ops" was sent (maybe empty); without it nothing is known of the ops */
    /* per node: the CUDA (or ROCm) runtime and the driver; "" unknown. A node without
     * "cuda_version" takes its first GPU's (nvidia-smi reports it per GPU). */
    char cuda_version[32];
    char rocm_version[32];
    char driver_version[64];
    /* installed items with digests; past NODE_API_MAX_INSTALLED the parser keeps the first
     * ones and sets installed_truncated */
    struct node_api_installed installed[NODE_API_MAX_INSTALLED];
    size_t n_installed;
    bool installed_truncated;
};

void node_api_discovery_init(struct node_api_discovery *d); /* empty strings, -1 numbers */
/* Appends an installed item (NULL past NODE_API_MAX_INSTALLED); strings copied, truncated. */
struct node_api_installed *node_api_discovery_add_installed(struct node_api_discovery *d,
                                                            bool is_model, const char *name,
                                                            const char *digest);
/* The node's CUDA version: "cuda_version", else the first GPU's that has one; "" unknown. */
const char *node_api_discovery_cuda(const struct node_api_discovery *d);
/* Compares dotted versions numerically ("12.10" > "12.9"); missing parts are 0. */
int node_api_version_cmp(const char *a, const char *b);
/* Is v within [min, max]? "" bounds are open. max holds at its own precision: "12" admits
 * "12.4" (every 12.x), "12.2" admits "12.2.1". */
bool node_api_version_within(const char *v, const char *min, const char *max);
int node_api_discovery_emit(struct buf *out, const struct node_api_discovery *d) WUR;
/* Parses a discovery object (json-c value, borrowed); absent fields keep d's values. More than
 * NODE_API_MAX_GPUS gpus is GW_E_LIMIT. */
int node_api_discovery_parse_json(struct json_object *o, struct node_api_discovery *d,
                                  struct gw_error *err) WUR;
/* Does d list op ("model.install", ...)? */
bool node_api_discovery_takes_op(const struct node_api_discovery *d, const char *op);
/* The same from the bytes of a discovery object (a stored one): d is initialised first. */
int node_api_discovery_parse(const char *p, size_t len, struct node_api_discovery *d,
                             struct gw_error *err) WUR;

/* --- health (GET /drover/v1/health) --------------------------------------------------- */

struct node_api_health {
    bool ok; /* "status":"ok"; false for "engine_down" */
    enum node_kind engine;
    char engine_url[NODE_API_MAX_URL];
    bool engine_reachable;
    int64_t in_flight;
    int64_t queued;
    struct node_api_models models; /* owned */
};

int node_api_health_emit(struct buf *out, const struct node_api_health *h) WUR;
/* The gateway's parser of an agent's health answer. h is filled (models owned: free with
 * node_api_health_free, also after an error). */
int node_api_health_parse(const char *p, size_t len, struct node_api_health *h,
                          struct gw_error *err) WUR;
void node_api_health_free(struct node_api_health *h);

/* --- models (GET /drover/v1/models) ---------------------------------------------------- */
/* {"models":[MODEL, ...]}: the same MODEL list as the health answer's "models" (which is how
 * the gateway reads it). A MODEL needs "id" and a known "status"; capability names it does
 * not know are skipped (a newer agent); "in_flight" and "size_mb" are optional integers. */
int node_api_models_answer_emit(struct buf *out, const struct node_api_models *l) WUR;

/* --- join (POST /drover/v1/nodes/join) ------------------------------------------------ */

struct node_api_label {
    char key[NODE_API_MAX_TEXT];
    char value[NODE_API_MAX_TEXT];
};

struct node_api_join {
    char name[NODE_API_MAX_NAME];
    char url[NODE_API_MAX_URL];
    enum node_kind engine;
    struct node_api_label labels[NODE_API_MAX_LABELS];
    size_t n_labels;
    char secret[NODE_API_SECRET_HEX + 1]; /* empty: none */
    bool has_discovery;
    struct node_api_discovery discovery;
    char agent_version[NODE_API_MAX_VERSION + 1];
};

int node_api_join_emit(struct buf *out, const struct node_api_join *j) WUR;
/* The gateway's check of a join body (docs/node_api.md), strict: name, url (http:// or https://, at
 * most 255 bytes), engine required; labels an object of at most 32 valid labels; secret 64
 * lowercase hex; discovery an object of at most 64 KiB whose known fields have their types;
 * agent_version a string of at most 64 bytes; null for an optional field is its absence; any
 * other field is refused. GW_E_PARSE when the body is not JSON at all; GW_E_INVALID (or
 * GW_E_LIMIT) for a bad field, with param (if not NULL) naming it (empty when the body is not
 * an object) and err's message fit for the client. */
int node_api_join_parse(const char *p, size_t len, struct node_api_join *j,
                        char param[NODE_API_MAX_PARAM], struct gw_error *err) WUR;

enum node_api_join_state {
    NODE_API_JOIN_PENDING,
    NODE_API_JOIN_APPROVED,
    NODE_API_JOIN_DRAINING, /* approved, taking no new work: the agent keeps serving */
};
struct node_api_join_answer {
    char name[NODE_API_MAX_NAME];
    enum node_api_join_state state;
    char secret[NODE_API_SECRET_HEX + 1]; /* empty: keep the one you have */
    uint64_t poll_ms;                     /* 0 when absent */
};
int node_api_join_answer_emit(struct buf *out, const struct node_api_join_answer *a) WUR;
/* The agent's parser of the gateway's answer. */
int node_api_join_answer_parse(const char *p, size_t len, struct node_api_join_answer *a,
                               struct gw_error *err) WUR;

/* --- load and unload (POST /drover/v1/models/load, /unload) ----------------------------- */

/* {"model":"m"} and, for a load, "options" (a JSON object's text, borrowed; NULL: none). */
int node_api_load_emit(struct buf *out, const char *model, const char *options_json) WUR;
/* The agent's parser: model 1..255 bytes, required; other fields are the engine's business. */
int node_api_load_parse(const char *p, size_t len, char model[NODE_API_MAX_ID],
                        struct gw_error *err) WUR;
struct node_api_load_answer {
    char model[NODE_API_MAX_ID];
    bool unloaded;   /* "status":"unloaded"; else "loaded" */
    int64_t size_mb; /* -1 when not said */
};
int node_api_load_answer_emit(struct buf *out, const struct node_api_load_answer *a) WUR;
int node_api_load_answer_parse(const char *p, size_t len, struct node_api_load_answer *a,
                               struct gw_error *err) WUR;

/* --- fleet operations (POST /drover/v1/ops) ---------------------------------------------- */

struct node_api_op {
    enum op_kind kind;
    bool is_model;              /* target.kind "model", else "backend" */
    char name[NODE_API_MAX_ID]; /* target.name, 1..255 bytes */
    char *params_json;          /* a JSON object's text; emit: borrowed, NULL sends {}; parse:
                                   owned (xfree), NULL when absent */
    uint64_t timeout_ms;        /* 0: not said */
    int64_t op_id;
};
int node_api_op_emit(struct buf *out, const struct node_api_op *o) WUR;
int node_api_op_parse(const char *p, size_t len, struct node_api_op *o, struct gw_error *err) WUR;

struct node_api_op_answer {
    enum op_class cls;
    char message[256];
    bool listed; /* the target is listed by the node after the attempt */
};
int node_api_op_answer_emit(struct buf *out, const struct node_api_op_answer *a) WUR;
/* The gateway's parser: "class" must be a known class; "message" and "listed" are optional
 * (absent or of another type: "" and false). */
int node_api_op_answer_parse(const char *p, size_t len, struct node_api_op_answer *a,
                             struct gw_error *err) WUR;

/* --- inventory (GET /drover/v1/inventory) ------------------------------------------------ */
/* {"models":[ITEM…],"backends":[ITEM…]}, ITEM {"name":…,"version":…,"digest":…,
 * "latest_digest":…}: name 1..255 bytes, the others only when known (an empty string is
 * unknown and not emitted). The agent emits it (models from the engine's list, backends from
 * the backend.list template); the gateway parses it for GET /admin/v1/inventory and the
 * upgrade check. Names are not deduplicated: a lookup takes the first. */
enum {
    NODE_API_MAX_INV_ITEMS = 4096,                  /* per list */
    NODE_API_MAX_INVENTORY_BYTES = 4 * 1024 * 1024, /* the answer, as sent */
};
struct node_api_inv_item {
    char name[NODE_API_MAX_ID];
    char version[NODE_API_MAX_TEXT];
    char digest[NODE_API_MAX_DIGEST];
    char latest_digest[NODE_API_MAX_DIGEST]; /* the newest the node could fetch */
};
/* A growable list; owned items. Zero-initialised is an empty list. */
struct node_api_inv_items {
    struct node_api_inv_item *v;
    size_t n, cap;
};
struct node_api_inventory {
    struct node_api_inv_items models;
    struct node_api_inv_items backends;
};
/* Appends an item; the strings are copied, never cut. GW_E_INVALID (with err naming the
 * field) when name is empty or a value does not fit its field or holds a control byte;
 * GW_E_LIMIT past NODE_API_MAX_INV_ITEMS. STRV_NULL or "" for an unknown value. */
int node_api_inv_items_add(struct node_api_inv_items *l, struct strv name, struct strv version,
                           struct strv digest, struct strv latest_digest, struct gw_error *err) WUR;
/* A known digest or latest_digest as an ITEM holds it: 1..NODE_API_MAX_DIGEST-1 bytes, no
 * control byte (the agent checks what its upgrade check printed with it). */
bool node_api_digest_is_valid(struct strv s);
/* The first item named name, or NULL. */
const struct node_api_inv_item *node_api_inv_items_find(const struct node_api_inv_items *l,
                                                        struct strv name);
void node_api_inventory_free(struct node_api_inventory *inv);
/* [ITEM…]: one list (the gateway's admin answer re-emits each node's lists with it). */
int node_api_inv_items_emit(struct buf *out, const struct node_api_inv_items *l) WUR;
int node_api_inventory_emit(struct buf *out, const struct node_api_inventory *inv) WUR;
/* The gateway's parser, strict: an object of at most NODE_API_MAX_INVENTORY_BYTES with both
 * "models" and "backends" arrays of ITEM objects, each value as node_api_inv_items_add takes
 * it; null for an optional value is its absence; unknown fields are ignored. GW_E_PARSE when
 * the body is not JSON, GW_E_INVALID for a bad field (err names it: "models[2].digest: …"),
 * GW_E_LIMIT past a cap. inv is filled (owned: free with node_api_inventory_free, also after
 * an error). */
int node_api_inventory_parse(const char *p, size_t len, struct node_api_inventory *inv,
                             struct gw_error *err) WUR;

#endif
