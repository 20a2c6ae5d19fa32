/* errors_http — the one table that maps the gateway's situations (DESIGN §5, validation
 * refusals, auth) to an HTTP status, an OpenAI-shaped body {"error":{"message","type",
 * "param","code"}} (or Ollama's {"error":"..."} on the native API, Anthropic's
 * {"type":"error","error":{…}} on /v1/messages) and Retry-After.
 * The loop thread only. */
#ifndef DROVER_GW_ERRORS_HTTP_H
#define DROVER_GW_ERRORS_HTTP_H
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "net/http_server.h"

enum gw_answer {
    ANSWER_MODEL_NOT_FOUND,    /* 404 model_not_found */
    ANSWER_NO_FEASIBLE_NODE,   /* 404 no_feasible_node */
    ANSWER_FEASIBLE_UNHEALTHY, /* 503 feasible_node_unhealthy, Retry-After 3 */
    ANSWER_NO_HEALTHY_NODES,   /* 503 no_healthy_nodes, Retry-After 5 */
    ANSWER_MODEL_LOADING,      /* 503 model_loading, Retry-After 2 */
    ANSWER_CAPACITY,           /* 503 capacity, Retry-After computed */
    ANSWER_UPSTREAM_FAILED,    /* 502 upstream_failed */
    ANSWER_CAPABILITY_MISSING, /* 400 model_capability_missing */
    ANSWER_INVALID_REQUEST,    /* 400, code from validation */
    ANSWER_UNAUTHORIZED,       /* 401 invalid_api_key */
    ANSWER_NOT_FOUND_ROUTE,    /* 404 unknown_url */
    ANSWER_METHOD_NOT_ALLOWED, /* 405 method_not_allowed */
    ANSWER_SHUTTING_DOWN,      /* 503 shutting_down, Retry-After 5 */
    ANSWER_STORE_UNAVAILABLE,  /* 503 store_unavailable, Retry-After 5 (admin writes) */
    ANSWER_CONTEXT_LENGTH,     /* 400 context_length_exceeded (no node's context holds it) */
    ANSWER__COUNT
};

struct gw_answer_info {
    int status;
    const char *code;
    const char *type;
    unsigned retry_after_s; /* 0: no header (unless the caller passes one) */
};
const struct gw_answer_info *gw_answer_info(enum gw_answer a);

/* Extra response headers every answer carries. node may be NULL; attempts 0 omits both. */
struct gw_answer_ctx {
    const char *node;
    unsigned attempts;
    uint64_t retry_after_s; /* overrides the table's value when non-zero */
    const char *param;      /* NULL: JSON null */
    const char *code;       /* overrides the table's code when non-NULL */
    bool ollama;            /* native Ollama shape {"error":"..."} */
    bool anthropic;         /* Anthropic's {"type":"error","error":{"type","message"}} */
};

/* Answers req with the situation and message; returns http_respond's result. */
int gw_answer(struct http_request *req, enum gw_answer a, const struct gw_answer_ctx *ctx,
              const char *message);

/* Appends an OpenAI-shaped error object to out. param/code NULL give JSON null. */
int gw_error_json(struct buf *out, const char *message, const char *type, const char *param,
                  const char *code) WUR;

/* Appends Anthropic's error object {"type":"error","error":{"type":…,"message":…}}, the type
 * chosen by status (invalid_request_error, authentication_error, permission_error,
 * not_found_error, request_too_large, rate_limit_error, overloaded_error for 503, api_error). */
int gw_anthropic_error_json(struct buf *out, int status, const char *message) WUR;

/* Answers an OpenAI-shaped error {"error":{message,type,param,code}}: type is
 * authentication_error for 401, server_error for 5xx, invalid_request_error otherwise. Used by
 * the admin API, joining, the catalogue and operations. */
void gw_reply_error(struct http_request *req, int status, const char *code, const char *param,
                    const char *msg);

/* A JSON answer that waits for a store commit: gw_reply_new takes body and watches the
 * request (a client that leaves is fine); gw_reply_done, a store_done_fn, sends it, or 500
 * store_error when the write failed. If failed is given, *failed is set on a failed write. */
struct gw_reply;
struct gw_reply *gw_reply_new(struct http_request *req, int status, struct buf *body, bool *failed);
void gw_reply_done(void *ctx, int rc, const char *msg);

#endif
