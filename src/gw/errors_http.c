/* errors_http — status, code and Retry-After for every answer the gateway gives itself. */
#include "gw/errors_http.h"

#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "store/store_db.h"

#include <stdio.h>
#include <string.h>

#include "base/json.h"

static const struct gw_answer_info table[ANSWER__COUNT] = {
    [ANSWER_MODEL_NOT_FOUND] = {404, "model_not_found", "invalid_request_error", 0},
    [ANSWER_NO_FEASIBLE_NODE] = {404, "no_feasible_node", "invalid_request_error", 0},
    [ANSWER_FEASIBLE_UNHEALTHY] = {503, "feasible_node_unhealthy", "server_error", 3},
    [ANSWER_NO_HEALTHY_NODES] = {503, "no_healthy_nodes", "server_error", 5},
    [ANSWER_MODEL_LOADING] = {503, "model_loading", "server_error", 2},
    [ANSWER_CAPACITY] = {503, "capacity", "server_error", 1},
    [ANSWER_UPSTREAM_FAILED] = {502, "upstream_failed", "server_error", 0},
    [ANSWER_CAPABILITY_MISSING] = {400, "model_capability_missing", "invalid_request_error", 0},
    [ANSWER_INVALID_REQUEST] = {400, "invalid_request", "invalid_request_error", 0},
    [ANSWER_UNAUTHORIZED] = {401, "invalid_api_key", "authentication_error", 0},
    [ANSWER_NOT_FOUND_ROUTE] = {404, "unknown_url", "invalid_request_error", 0},
    [ANSWER_METHOD_NOT_ALLOWED] = {405, "method_not_allowed", "invalid_request_error", 0},
    [ANSWER_SHUTTING_DOWN] = {503, "shutting_down", "server_error", 5},
    [ANSWER_STORE_UNAVAILABLE] = {503, "store_unavailable", "server_error", 5},
    [ANSWER_CONTEXT_LENGTH] = {400, "context_length_exceeded", "invalid_request_error", 0},
};

const struct gw_answer_info *gw_answer_info(enum gw_answer a)
{
    return &table[a];
}

int gw_error_json(struct buf *out, const char *message, const char *type, const char *param,
                  const char *code)
{
    int rc = buf_append_cstr(out, "{\"error\":{\"message\":");
    if (!rc) rc = json_append_str(out, message, strlen(message));
    if (!rc) rc = buf_append_cstr(out, ",\"type\":");
    if (!rc) rc = json_append_str(out, type, strlen(type));
    if (!rc) rc = buf_append_cstr(out, ",\"param\":");
    if (!rc) rc = param ? json_append_str(out, param, strlen(param)) : buf_append_cstr(out, "null");
    if (!rc) rc = buf_append_cstr(out, ",\"code\":");
    if (!rc) rc = code ? json_append_str(out, code, strlen(code)) : buf_append_cstr(out, "null");
    if (!rc) rc = buf_append_cstr(out, "}}");
    return rc;
}

int gw_anthropic_error_json(struct buf *out, int status, const char *message)
{
    const char *type = status == 400   ? "invalid_request_error"
                       : status == 401 ? "authentication_error"
                       : status == 403 ? "permission_error"
                       : status == 404 ? "not_found_error"
                       : status == 413 ? "request_too_large"
                       : status == 429 ? "rate_limit_error"
                       : status == 503 ? "overloaded_error"
                       : status < 500  ? "invalid_request_error"
                                       : "api_error";
    int rc = buf_append_cstr(out, "{\"type\":\"error\",\"error\":{\"type\":\"");
    if (!rc) rc = buf_append_cstr(out, type);
    if (!rc) rc = buf_append_cstr(out, "\",\"message\":");
    if (!rc) rc = json_append_str(out, message, strlen(message));
    if (!rc) rc = buf_append_cstr(out, "}}");
    return rc;
}

int gw_answer(struct http_request *req, enum gw_answer a, const struct gw_answer_ctx *ctx,
              const char *message)
{
    static const struct gw_answer_ctx none = {0};
    if (!ctx) ctx = &none;
    const struct gw_answer_info *info = &table[a];
    struct buf body;
    buf_init(&body, 4096);
    int rc;
    if (ctx->anthropic) {
        rc = gw_anthropic_error_json(&body, info->status, message);
    } else if (ctx->ollama) {
        rc = buf_append_cstr(&body, "{\"error\":");
        if (!rc) rc = json_append_str(&body, message, strlen(message));
        if (!rc) rc = buf_append_cstr(&body, "}");
    } else {
        rc = gw_error_json(&body, message, info->type, ctx->param,
                           ctx->code ? ctx->code : info->code);
    }
    if (rc) {
        buf_reset(&body);
        rc = buf_append_cstr(&body, "{\"error\":{\"message\":\"error\",\"type\":\"server_error\","
                                    "\"param\":null,\"code\":null}}");
    }
    struct http_header hdrs[3];
    size_t n = 0;
    char ra[24], att[16];
    uint64_t retry = ctx->retry_after_s ? ctx->retry_after_s : info->retry_after_s;
    if (retry && info->status == 503) {
        snprintf(ra, sizeof ra, "%llu", (unsigned long long)retry);
        hdrs[n++] = (struct http_header){STRV_LIT("Retry-After"), strv_from_cstr(ra)};
    }
    if (ctx->node)
        hdrs[n++] = (struct http_header){STRV_LIT("X-Drover-Node"), strv_from_cstr(ctx->node)};
    if (ctx->attempts) {
        snprintf(att, sizeof att, "%u", ctx->attempts);
        hdrs[n++] = (struct http_header){STRV_LIT("X-Drover-Attempts"), strv_from_cstr(att)};
    }
    (void)rc;
    rc = http_respond_json(req, info->status, hdrs, n, body.p, body.len);
    buf_free(&body);
    return rc;
}

void gw_reply_error(struct http_request *req, int status, const char *code, const char *param,
                    const char *msg)
{
    struct buf b;
    buf_init(&b, 4096);
    const char *type = status == 401   ? "authentication_error"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    if (gw_error_json(&b, msg, type, param, code)) buf_reset(&b);
    (void)http_respond_json(req, status, NULL, 0, b.p, b.len);
    buf_free(&b);
}

struct gw_reply {
    struct http_request *req; /* NULL once the client went away */
    int status;
    struct buf body;
    bool *failed;
};

static void reply_abort(struct http_request *req, void *ctx)
{
    (void)req;
    ((struct gw_reply *)ctx)->req = NULL;
}

struct gw_reply *gw_reply_new(struct http_request *req, int status, struct buf *body, bool *failed)
{
    struct gw_reply *r = xcalloc(1, sizeof *r);
    r->req = req;
    r->status = status;
    r->body = *body;
    r->failed = failed;
    memset(body, 0, sizeof *body);
    http_request_on_abort(req, reply_abort, r);
    return r;
}

void gw_reply_done(void *ctx, int rc, const char *msg)
{
    struct gw_reply *r = ctx;
    if (rc) LOGE("store_write_failed", "status=%d reason=\"%s\"", r->status, msg ? msg : "?");
    if (rc && r->failed) *r->failed = true;
    if (r->req) {
        http_request_on_abort(r->req, NULL, NULL);
        if (rc == STORE_E_UNAVAILABLE)
            /* the database is away (PostgreSQL down or failing over): nothing was written */
            (void)gw_answer(r->req, ANSWER_STORE_UNAVAILABLE, NULL,
                            "the store is unavailable; the change was not made, retry shortly");
        else if (rc)
            gw_reply_error(r->req, 500, "store_error", NULL,
                           msg ? msg : "the change could not be stored; retry");
        else
            (void)http_respond_json(r->req, r->status, NULL, 0, r->body.p, r->body.len);
    }
    buf_free(&r->body);
    xfree(r);
}
