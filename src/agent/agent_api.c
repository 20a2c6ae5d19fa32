/* agent_api — what the gateway calls on the agent (docs/node_api.md): every route but ping
 * needs `Authorization: Bearer H`; health and models ask the engine afresh (one parallel
 * inventory fetch per call), load/unload go to the engine adapter, inference goes to the
 * proxy. An op whose client left keeps running and frees itself when the engine answers.
 * The loop thread only. */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sha256.h"

enum { AGENT_MAX_ANSWER = 4 * 1024 * 1024 };

enum call_kind { CALL_HEALTH, CALL_MODELS, CALL_LOAD, CALL_UNLOAD };

struct op {
    struct agent *a;
    struct http_request *req; /* NULL once the client left */
    enum call_kind kind;
    char model[NODE_API_MAX_ID];
};

int agent_answer_error(struct http_request *req, int status, const char *type, const char *code,
                       const char *message, const char *hname, const char *hvalue)
{
    struct buf b;
    buf_init(&b, 4096);
    int rc = buf_append_cstr(&b, "{\"error\":{\"message\":");
    if (!rc) rc = json_append_str(&b, message, strlen(message));
    if (!rc) rc = buf_append_cstr(&b, ",\"type\":");
    if (!rc) rc = json_append_str(&b, type, strlen(type));
    if (!rc) rc = buf_append_cstr(&b, ",\"param\":null,\"code\":");
    if (!rc) rc = code ? json_append_str(&b, code, strlen(code)) : buf_append_cstr(&b, "null");
    if (!rc) rc = buf_append_cstr(&b, "}}");
    static const char fallback[] = "{\"error\":{\"message\":\"error\",\"type\":\"server_error\"}}";
    struct http_header h[1];
    size_t nh = 0;
    if (hname && hvalue)
        h[nh++] = (struct http_header){strv_from_cstr(hname), strv_from_cstr(hvalue)};
    rc = rc ? http_respond_json(req, status, h, nh, fallback, sizeof fallback - 1)
            : http_respond_json(req, status, h, nh, b.p, b.len);
    buf_free(&b);
    return rc;
}

static void answer_buf(struct http_request *req, int status, struct buf *b)
{
    (void)http_respond_json(req, status, NULL, 0, b->p ? b->p : "", b->len);
}

void agent_count_model(struct agent *a, const char *id, int delta)
{
    if (!id || !id[0]) return;
    for (size_t i = 0; i < a->n_counts; i++) {
        if (strcmp(a->counts[i].id, id) != 0) continue;
        if (delta > 0) {
            a->counts[i].n++;
        } else if (a->counts[i].n > 0 && --a->counts[i].n == 0) {
            a->counts[i] = a->counts[--a->n_counts];
        }
        return;
    }
    if (delta <= 0 || a->n_counts >= AGENT_MAX_TRACKED) return;
    snprintf(a->counts[a->n_counts].id, NODE_API_MAX_ID, "%s", id);
    a->counts[a->n_counts++].n = 1;
}

static uint32_t count_of(struct agent *a, const char *id)
{
    for (size_t i = 0; i < a->n_counts; i++)
        if (strcmp(a->counts[i].id, id) == 0) return a->counts[i].n;
    return 0;
}

static void loading_set(struct agent *a, const char *id, bool on)
{
    for (size_t i = 0; i < a->n_loading; i++)
        if (strcmp(a->loading[i], id) == 0) {
            if (!on) {
                if (i != a->n_loading - 1)
                    memcpy(a->loading[i], a->loading[a->n_loading - 1], NODE_API_MAX_ID);
                a->n_loading--;
            }
            return;
        }
    if (on && a->n_loading < AGENT_MAX_TRACKED)
        snprintf(a->loading[a->n_loading++], NODE_API_MAX_ID, "%s", id);
}

/* The engine's view plus what only the agent knows: its own in-flight requests per model and
 * the loads it started. */
static void merge_view(struct agent *a, struct agent_engine_view *v)
{
    for (size_t i = 0; i < v->models.n; i++) {
        struct node_api_model *m = &v->models.v[i];
        uint32_t mine = count_of(a, m->id);
        if (mine > m->in_flight) m->in_flight = mine;
    }
    for (size_t i = 0; i < a->n_loading; i++) {
        struct node_api_model *m = node_api_models_find(&v->models, strv_from_cstr(a->loading[i]));
        if (m && m->status == NODE_API_MODEL_LOADED) continue;
        if (!m) m = node_api_models_add(&v->models, strv_from_cstr(a->loading[i]));
        if (!m) continue;
        m->status = NODE_API_MODEL_LOADING;
        if (!m->caps) m->caps = node_api_caps_guess(strv_from_cstr(m->id), STRV_NULL);
    }
}

static void op_abort(struct http_request *req, void *ctx)
{
    struct op *o = ctx;
    (void)req;
    o->req = NULL;
}

static void op_free(struct op *o)
{
    if (o->a->pending > 0) o->a->pending--;
    xfree(o);
}

static void on_view(struct agent_engine_view *v, void *ctx)
{
    struct op *o = ctx;
    struct agent *a = o->a;
    if (!v->reachable)
        LOGW("engine_down", "engine=%s url=%s reason=\"%s\"", node_kind_name(a->cfg.engine),
             a->engine.url, v->error);
    if (o->req) {
        http_request_on_abort(o->req, NULL, NULL);
        merge_view(a, v);
        struct buf b;
        buf_init(&b, AGENT_MAX_ANSWER);
        int rc, status = 200;
        if (o->kind == CALL_HEALTH) {
            struct node_api_health h = {
                .ok = v->reachable,
                .engine = a->cfg.engine,
                .engine_reachable = v->reachable,
                .in_flight = a->in_flight > v->running ? a->in_flight : v->running,
                .queued = v->queued,
                .models = v->models,
            };
            snprintf(h.engine_url, sizeof h.engine_url, "%s", a->engine.url);
            rc = node_api_health_emit(&b, &h);
            if (!v->reachable) status = 503;
        } else {
            rc = node_api_models_answer_emit(&b, &v->models);
            if (!v->reachable) {
                buf_free(&b);
                char msg[256];
                snprintf(msg, sizeof msg, "engine unreachable: %s", v->error);
                (void)agent_answer_error(o->req, 502, NODE_API_CODE_ENGINE_UNREACHABLE,
                                         NODE_API_CODE_ENGINE_UNREACHABLE, msg,
                                         NODE_API_HEADER_ENGINE, NODE_API_ENGINE_UNREACHABLE);
                op_free(o);
                return;
            }
        }
        if (rc)
            (void)agent_answer_error(o->req, 500, "server_error", NULL, "answer too large", NULL,
                                     NULL);
        else
            answer_buf(o->req, status, &b);
        buf_free(&b);
    }
    op_free(o);
}

static void on_op(const struct agent_engine_op_result *r, void *ctx)
{
    struct op *o = ctx;
    struct agent *a = o->a;
    bool unload = o->kind == CALL_UNLOAD;
    if (!unload) loading_set(a, o->model, false);
    if (r->status == 200)
        LOGI(unload ? "model_unloaded" : "model_loaded", "model=%s", o->model);
    else
        LOGW(unload ? "model_unload_failed" : "model_load_failed",
             "model=%s status=%d reason=\"%s\"", o->model, r->status, r->message);
    if (o->req) {
        http_request_on_abort(o->req, NULL, NULL);
        if (r->status == 200) {
            struct node_api_load_answer ans = {.unloaded = unload, .size_mb = -1};
            snprintf(ans.model, sizeof ans.model, "%s", o->model);
            struct buf b;
            buf_init(&b, 2 * NODE_API_MAX_ID);
            if (node_api_load_answer_emit(&b, &ans) == 0) answer_buf(o->req, 200, &b);
            buf_free(&b);
        } else {
            const char *type = r->status == 501   ? "unsupported"
                               : r->status == 404 ? "invalid_request_error"
                                                  : "server_error";
            (void)agent_answer_error(o->req, r->status, type, r->code, r->message,
                                     r->status >= 502 ? NODE_API_HEADER_ENGINE : NULL,
                                     r->status == 504 ? NODE_API_ENGINE_TIMEOUT
                                     : r->status >= 502 && r->code &&
                                             strcmp(r->code, NODE_API_CODE_ENGINE_UNREACHABLE) == 0
                                         ? NODE_API_ENGINE_UNREACHABLE
                                         : NULL);
        }
    }
    op_free(o);
}

static struct op *op_new(struct agent *a, struct http_request *req, enum call_kind kind)
{
    struct op *o = xcalloc(1, sizeof *o);
    o->a = a;
    o->req = req;
    o->kind = kind;
    a->pending++;
    http_request_on_abort(req, op_abort, o);
    return o;
}

static void handle_load(struct agent *a, struct http_request *req, bool unload)
{
    char model[NODE_API_MAX_ID];
    if (node_api_load_parse(req->body.p, req->body.len, model, NULL)) {
        (void)agent_answer_error(req, 400, "invalid_request_error", "invalid_request",
                                 "expected a JSON body {\"model\":\"NAME\"}", NULL, NULL);
        return;
    }
    struct op *o = op_new(a, req, unload ? CALL_UNLOAD : CALL_LOAD);
    snprintf(o->model, sizeof o->model, "%s", model);
    if (!unload && a->cfg.engine == NODE_KIND_OLLAMA) loading_set(a, o->model, true);
    LOGI(unload ? "model_unload" : "model_load", "model=%s engine=%s", o->model,
         node_kind_name(a->cfg.engine));
    agent_engine_load(&a->engine, o->model, unload, on_op, o);
}

static bool authorized(struct agent *a, struct http_request *req)
{
    if (!a->key[0]) return false;
    struct strv h = strv_trim(http_request_header(req, "Authorization"));
    if (h.len < 7 || !strv_eq_ci(strv_sub(h, 0, 7), STRV_LIT("Bearer "))) return false;
    struct strv tok = strv_trim(strv_sub(h, 7, h.len));
    if (tok.len != NODE_API_SECRET_HEX) return false;
    char t[NODE_API_SECRET_HEX + 1];
    memcpy(t, tok.p, tok.len);
    t[tok.len] = '\0';
    return secret_equal(t, a->key);
}

void agent_api_handle(struct http_request *req, void *ctx)
{
    struct agent *a = ctx;
    struct strv m = req->method, p = req->path;
    if (strv_eq_cstr(p, NODE_API_PATH_PING)) {
        static const char ok[] = "{\"ok\":true}";
        (void)http_respond_json(req, 200, NULL, 0, ok, sizeof ok - 1);
        return;
    }
    if (!authorized(a, req)) {
        LOGI("unauthorized", "id=%llu peer=%s path=%.*s has_secret=%d", (unsigned long long)req->id,
             req->peer, STRV_FMT(p), a->key[0] != 0);
        (void)agent_answer_error(req, 401, "authentication_error", NODE_API_CODE_UNAUTHORIZED,
                                 a->key[0] ? "a valid gateway key (Bearer) is required"
                                           : "this agent has not joined a gateway yet",
                                 NULL, NULL);
        return;
    }
    if (a->stopping) {
        (void)agent_answer_error(req, 503, "server_error", "shutting_down",
                                 "the agent is shutting down", "Retry-After", "5");
        return;
    }
    bool get = strv_eq_cstr(m, "GET"), post = strv_eq_cstr(m, "POST");
    if (strv_eq_cstr(p, NODE_API_PATH_HEALTH) || strv_eq_cstr(p, NODE_API_PATH_MODELS)) {
        if (!get) goto method;
        struct op *o =
            op_new(a, req, strv_eq_cstr(p, NODE_API_PATH_HEALTH) ? CALL_HEALTH : CALL_MODELS);
        agent_engine_inventory(&a->engine, on_view, o);
        return;
    }
    if (strv_eq_cstr(p, NODE_API_PATH_DISCOVERY)) {
        if (!get) goto method;
        struct buf b;
        buf_init(&b, AGENT_MAX_ANSWER);
        if (node_api_discovery_emit(&b, &a->disc))
            (void)agent_answer_error(req, 500, "server_error", NULL, "discovery too large", NULL,
                                     NULL);
        else
            answer_buf(req, 200, &b);
        buf_free(&b);
        return;
    }
    if (strv_eq_cstr(p, NODE_API_PATH_OPS)) {
        if (!strv_eq_cstr(m, "POST"))
            (void)agent_answer_error(req, 405, "invalid_request_error", "method_not_allowed",
                                     "use POST", NULL, NULL);
        else
            agent_ops_handle(a, req);
        return;
    }
    if (strv_eq_cstr(p, NODE_API_PATH_INVENTORY)) {
        if (!get) goto method;
        agent_inventory_handle(a, req);
        return;
    }
    if (strv_eq_cstr(p, NODE_API_PATH_LOAD) || strv_eq_cstr(p, NODE_API_PATH_UNLOAD)) {
        if (!post) goto method;
        handle_load(a, req, strv_eq_cstr(p, NODE_API_PATH_UNLOAD));
        return;
    }
    if (node_api_is_proxied(m, p)) {
        agent_proxy_handle(a, req);
        return;
    }
    (void)agent_answer_error(req, 404, "invalid_request_error", "unknown_url",
                             "unknown path on the agent", NULL, NULL);
    return;
method:
    (void)agent_answer_error(req, 405, "invalid_request_error", "method_not_allowed",
                             "method not allowed", NULL, NULL);
}
