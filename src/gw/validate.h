/* validate — checks a client's request body before any node sees it (DESIGN §4: a client's
 * mistake never costs a node anything). Strict JSON (depth-capped, UTF-8), then the fields
 * every engine needs: `model` a non-empty string, `messages` a non-empty array of objects
 * with a string `role`, `prompt`/`input` present and of the right type, `stream` a boolean,
 * numeric knobs numeric. What it refuses gets 400 with `param` named. Pure: any thread. */
#ifndef DROVER_GW_VALIDATE_H
#define DROVER_GW_VALIDATE_H
#include <stdbool.h>
#include <stddef.h>

#include "base/strv.h"

enum api_kind {
    API_CHAT,            /* POST /v1/chat/completions */
    API_COMPLETIONS,     /* POST /v1/completions */
    API_EMBEDDINGS,      /* POST /v1/embeddings */
    API_OLLAMA_CHAT,     /* POST /api/chat */
    API_OLLAMA_GENERATE, /* POST /api/generate */
    API_OLLAMA_EMBED,    /* POST /api/embed */
};

struct validated {
    char model[256];   /* copied out of the JSON */
    bool stream;       /* the response will be streamed (SSE or NDJSON) */
    bool ollama;       /* native Ollama API */
    unsigned cap;      /* CAP_* needed */
    unsigned features; /* optional CAP_* the request uses (tools, vision, response format) */
};

struct validate_error {
    char message[256];
    char param[64];   /* empty when no single parameter is at fault */
    const char *code; /* "invalid_json", "missing_parameter", "invalid_type", ... */
};

/* Returns 0 and fills out, or -1 and fills verr. */
int validate_request(enum api_kind kind, struct strv body, struct validated *out,
                     struct validate_error *verr);

#endif
