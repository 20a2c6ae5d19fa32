/* translate — the client's API spoken over a node that speaks another (docs/translate.md):
 * Ollama's /api/chat, /api/generate, /api/embed, /api/embeddings and Anthropic's /v1/messages
 * over an OpenAI-compatible node's /v1/chat/completions and /v1/embeddings (and Anthropic's
 * /v1/messages over an Ollama node's own /v1/chat/completions). A request is rewritten once
 * per node kind; the answer goes back through the same struct xlate: a buffered body in one
 * call, a stream chunk by chunk (SSE in, NDJSON or Anthropic's SSE events out) with the same
 * output whatever the chunk boundaries. Completion of a translated stream is the node's
 * terminal event ([DONE]), seen by the translator's own splitter. The loop thread only (one
 * struct xlate per request). */
#ifndef DROVER_GW_TRANSLATE_H
#define DROVER_GW_TRANSLATE_H
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/strv.h"
#include "gw/validate.h"
#include "net/splitter.h"
#include "proto/node_api.h"

enum xlate_mode {
    XLATE_NONE = 0,          /* the node speaks the client's API: bytes pass through */
    XLATE_OLLAMA_CHAT,       /* /api/chat → /v1/chat/completions */
    XLATE_OLLAMA_GENERATE,   /* /api/generate → /v1/chat/completions */
    XLATE_OLLAMA_EMBED,      /* /api/embed → /v1/embeddings */
    XLATE_OLLAMA_EMBEDDINGS, /* /api/embeddings (legacy) → /v1/embeddings */
    XLATE_ANTHROPIC,         /* /v1/messages → /v1/chat/completions */
    XLATE_ANTHROPIC_COUNT,   /* /v1/messages/count_tokens → the node's /tokenize */
};

enum {
    XLATE_MAX_TOOLS = 32,            /* tool calls one streamed answer may carry */
    XLATE_SCRATCH_BYTES = 64 * 1024, /* a chunk's decoded strings on the fast path */
    XLATE_MEMO_BYTES = 2048,         /* a chunk remembered for its envelope (translate.c) */
};

struct xlate_tool {
    char id[96];
    char name[128];
    struct buf args; /* the arguments' JSON text as streamed */
    int block;       /* Anthropic content block index */
};

struct xlate {
    enum xlate_mode mode;
    enum node_kind node_kind; /* the node the request was built for */
    bool stream;
    char model[VALIDATE_MAX_MODEL_BYTES + 1]; /* the name the client asked for */
    char msg_id[40];                          /* Anthropic message id */
    struct buf up_body;                       /* the node's request body (owned) */
    const char *target;                       /* the node's path (static) */
    uint64_t start_us;                        /* the request's start (durations) */
    uint64_t first_us;                        /* the first token (stream) */

    /* stream state */
    bool sse_used;
    struct sse_splitter sse;
    int failed;        /* a chunk the translator could not read */
    bool done;         /* the node's [DONE] was seen and the closing events written */
    bool started;      /* message_start written (Anthropic) */
    int open_block;    /* Anthropic: index of the open content block, -1 none */
    bool open_is_text; /* the open block is text */
    int next_block;    /* the next content block index */
    char finish[24];   /* the node's finish_reason */
    int64_t prompt_tokens, completion_tokens; /* usage, -1 unknown */
    int64_t deltas;                 /* content deltas seen (a token count when usage is missing) */
    double prompt_ms, predicted_ms; /* llama-server's timings, < 0 unknown */
    struct xlate_tool tools[XLATE_MAX_TOOLS];
    size_t n_tools;
    struct buf out;           /* the client's bytes of the last feed (owned, reused) */
    struct buf scratch;       /* decoded strings of one chunk (owned, reused) */
    struct buf head;          /* Ollama lines' {"model":…,"created_at": (owned, built once) */
    struct buf memo;          /* the last chunk whose only member read was its content (owned) */
    size_t memo_at, memo_end; /* that content string's bytes in memo, quotes included */
    size_t memo_hits;         /* chunks handled from the memo (tests look) */
};

/* How a request of this API kind reaches a node of this kind: XLATE_NONE when it goes as it
 * is (OpenAI kinds everywhere, Ollama kinds on Ollama nodes). */
enum xlate_mode xlate_mode_for(enum api_kind kind, enum node_kind node);

/* True when the API kind can be served by a node of any kind (so the router need not restrict
 * it to nodes that speak it natively). */
bool xlate_any_node(enum api_kind kind);

/* Builds x->up_body and x->target for mode (not XLATE_NONE) from the client's body (borrowed).
 * route_model is the id the node knows (it replaces the client's "model"); client_model is the
 * name the client used (answers carry it). Returns 0; 1 when the gateway answers itself
 * (a generate or chat without prompt loads the model in Ollama; count_tokens where the node
 * cannot tokenize): *local then holds the 200 body; or -1 with why filled (a request the
 * translation cannot express: answered 400). x is reset first; xlate_free releases it. */
int xlate_prepare(struct xlate *x, enum xlate_mode mode, enum node_kind node, struct strv body,
                  const char *route_model, const char *client_model, bool stream, uint64_t start_us,
                  struct buf *local, char *why, size_t why_cap) WUR;

/* A buffered 2xx answer of the node, rewritten for the client into out. -1 when the node's
 * body is not what its API promises (malformed: a node fault). */
int xlate_body(struct xlate *x, const char *p, size_t len, uint64_t now_us, struct buf *out) WUR;

/* One chunk of the node's SSE stream: the client's bytes for it are in x->out afterwards
 * (may be empty). x->done once the node's [DONE] was seen (the closing events are in out).
 * Returns 0, or a negative code when the stream cannot be read (an event over the cap). */
int xlate_stream(struct xlate *x, const char *p, size_t len, uint64_t now_us) WUR;

/* Content-Type of the client's answer (static). */
const char *xlate_content_type(const struct xlate *x);

void xlate_free(struct xlate *x);

#endif
