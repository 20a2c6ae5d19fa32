/* validate — checks a client's request body before any node sees it (DESIGN §4: a client's
 * mistake never costs a node anything). Strict JSON (depth-capped, UTF-8, no lone UTF-16
 * surrogate escapes), then what OpenAI itself validates: `model` a non-empty string of at
 * most VALIDATE_MAX_MODEL_BYTES without control characters, `messages` a non-empty array of
 * objects whose `role` is one OpenAI knows, `prompt`/`input` present and of the right type,
 * `stream` a boolean, sampling knobs in OpenAI's ranges (`temperature` 0–2, `top_p` 0–1,
 * penalties −2–2, `max_tokens` and `max_completion_tokens` 1–2^31−1, `n` 1–128), and for the
 * Ollama API `options.*` typed and in range. The full table is docs/validation.md. What it
 * refuses gets 400 with `param` named and OpenAI's error code. Pure, no allocation: any
 * thread. */
#ifndef DROVER_GW_VALIDATE_H
#define DROVER_GW_VALIDATE_H
#include <stdbool.h>
#include <stddef.h>

#include "base/strv.h"

enum api_kind {
    API_CHAT,                     /* POST /v1/chat/completions */
    API_COMPLETIONS,              /* POST /v1/completions */
    API_EMBEDDINGS,               /* POST /v1/embeddings */
    API_OLLAMA_CHAT,              /* POST /api/chat */
    API_OLLAMA_GENERATE,          /* POST /api/generate */
    API_OLLAMA_EMBED,             /* POST /api/embed ({"input": string or array}) */
    API_OLLAMA_EMBEDDINGS_LEGACY, /* POST /api/embeddings ({"prompt": string}) */
    API_ANTHROPIC_MESSAGES,       /* POST /v1/messages (Anthropic Messages) */
    API_ANTHROPIC_COUNT_TOKENS,   /* POST /v1/messages/count_tokens */
    API_KIND_COUNT
};

enum {
    VALIDATE_MAX_MODEL_BYTES = 256, /* longer model names are refused */
    VALIDATE_MAX_N = 128,           /* OpenAI's cap on `n` */
};

struct validated {
    char model[VALIDATE_MAX_MODEL_BYTES + 1]; /* decoded; no NUL or other control byte inside */
    size_t model_len;                         /* strlen(model) */
    bool stream;                              /* the response will be streamed (SSE or NDJSON) */
    bool ollama;                              /* native Ollama API */
    bool anthropic;                           /* Anthropic Messages API */
    unsigned cap;                             /* CAP_* needed */
    unsigned features; /* optional CAP_* the request uses (tools, vision, response format) */
};

struct validate_error {
    char message[256];
    char param[64];   /* empty when no single parameter is at fault */
    const char *code; /* static: "invalid_json", "missing_parameter", "invalid_type",
                         "invalid_value", "integer_below_min_value", "integer_above_max_value",
                         "decimal_below_min_value", "decimal_above_max_value",
                         "invalid_content_type" */
};

/* Returns 0 and fills out, or -1 and fills verr. body is borrowed for the call only. */
int validate_request(enum api_kind kind, struct strv body, struct validated *out,
                     struct validate_error *verr);

/* The request's Content-Type header value (STRV_NULL or empty when the header is absent).
 * Accepts an absent header and application/json, case-insensitive, with any parameters
 * (a charset parameter must name UTF-8). Anything else (curl -d's
 * application/x-www-form-urlencoded, multipart/form-data, text/plain) returns -1 with err
 * filled (code "invalid_content_type", no param; answered 400 as OpenAI does). For the
 * OpenAI API only: Ollama reads any body as JSON whatever its Content-Type. */
int validate_content_type(struct strv content_type, struct validate_error *err);

#endif
