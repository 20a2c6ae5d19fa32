/* agent_engine — engine adapters. The parsers are pure functions over recorded bodies; the
 * fetch layer runs the GETs of one inventory in parallel (each body capped) and builds the view
 * once every call ended. A fetch is owned by its engine's list until its callback ran, so
 * agent_engine_cancel_all can end them at shutdown. The loop thread only. */
#include "agent/agent_engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "proto/engine_ctx.h"

enum {
    ENGINE_MAX_BODY_BYTES = 8 * 1024 * 1024,
    ENGINE_MAX_DEPTH = 32,
};

/* --- pure parsers ------------------------------------------------------------------------ */

static struct json_object *parse_body(const char *p, size_t len, struct gw_error *err)
{
    return json_parse_strict(p ? p : "", len, ENGINE_MAX_DEPTH, err);
}

int agent_engine_parse_llamacpp_slots(const char *p, size_t len, uint32_t *busy, uint32_t *total,
                                      struct gw_error *err)
{
    struct json_object *root = parse_body(p, len, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    int rc = 0;
    if (!json_object_is_type(root, json_type_array)) {
        rc = gw_error_set(err, GW_E_INVALID, "/slots: expected an array");
        goto out;
    }
    uint32_t b = 0, t = 0;
    size_t n = json_object_array_length(root);
    for (size_t i = 0; i < n; i++) {
        struct json_object *s = json_object_array_get_idx(root, i);
        if (!json_object_is_type(s, json_type_object)) continue;
        t++;
        bool processing = false;
        int64_t state = 0;
        if (json_get_bool(s, "is_processing", &processing) == 0) {
            if (processing) b++;
        } else if (json_get_int(s, "state", &state) == 0 && state != 0) {
            b++;
        }
    }
    *busy = b;
    *total = t;
out:
    json_object_put(root);
    return rc;
}

int agent_engine_prom_sum(const char *p, size_t len, const char *name, double *out)
{
    size_t nlen = strlen(name);
    bool found = false;
    double sum = 0;
    size_t i = 0;
    while (i < len) {
        const char *line = p + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t llen = nl ? (size_t)(nl - line) : len - i;
        i += llen + 1;
        if (llen <= nlen || line[0] == '#' || memcmp(line, name, nlen) != 0) continue;
        size_t k = nlen;
        if (line[k] == '{') {
            /* skip the labels; a '}' inside a quoted label value is possible but rare */
            bool q = false;
            for (k++; k < llen; k++) {
                if (line[k] == '\\' && q) {
                    k++;
                } else if (line[k] == '"') {
                    q = !q;
                } else if (line[k] == '}' && !q) {
                    break;
                }
            }
            if (k >= llen) continue;
            k++;
        }
        if (k >= llen || (line[k] != ' ' && line[k] != '\t')) continue; /* a longer name */
        while (k < llen && (line[k] == ' ' || line[k] == '\t')) k++;
        char num[64];
        size_t m = 0;
        while (k < llen && line[k] != ' ' && line[k] != '\t' && m < sizeof num - 1)
            num[m++] = line[k++];
        num[m] = '\0';
        char *end = NULL;
        double v = strtod(num, &end);
        if (m == 0 || !end || *end != '\0' || !isfinite(v)) continue;
        sum += v;
        found = true;
    }
    if (!found) return GW_E_NOTFOUND;
    *out = sum;
    return 0;
}

const char *agent_engine_ep_path(enum node_kind kind, enum agent_engine_ep ep)
{
    switch (ep) {
    case AGENT_EP_MODELS:
        return node_api_models_path(kind);
    case AGENT_EP_LOADED:
        return kind == NODE_KIND_OLLAMA ? "/api/ps" : NULL;
    case AGENT_EP_SLOTS:
        return kind == NODE_KIND_LLAMACPP ? "/slots" : NULL;
    case AGENT_EP_METRICS:
        return kind == NODE_KIND_LLAMACPP || kind == NODE_KIND_VLLM ? "/metrics" : NULL;
    case AGENT_EP_PROPS:
        return kind == NODE_KIND_LLAMACPP ? ENGINE_CTX_PATH_PROPS : NULL;
    default:
        return NULL;
    }
}

static bool ep_ok(const struct agent_engine_bodies *b, enum agent_engine_ep ep)
{
    return b->wanted[ep] && b->status[ep] >= 200 && b->status[ep] < 300;
}

static uint32_t clamp_u32(double v)
{
    if (!(v > 0)) return 0;
    return v > 4e9 ? 4000000000u : (uint32_t)(v + 0.5);
}

void agent_engine_build(enum node_kind kind, const struct agent_engine_bodies *b,
                        struct agent_engine_view *view)
{
    struct gw_error err = {0};
    view->reachable = false;
    view->has_counts = false;
    view->running = view->queued = 0;
    view->error[0] = '\0';
    const char *path = agent_engine_ep_path(kind, AGENT_EP_MODELS);
    if (!ep_ok(b, AGENT_EP_MODELS)) {
        if (b->status[AGENT_EP_MODELS] == 0)
            snprintf(view->error, sizeof view->error, "%s: no answer", path);
        else
            snprintf(view->error, sizeof view->error, "%s: status %d", path,
                     b->status[AGENT_EP_MODELS]);
        return;
    }
    struct strv body = b->body[AGENT_EP_MODELS];
    int rc = kind == NODE_KIND_OLLAMA
                 ? node_api_ollama_list_parse(body.p, body.len, false, &view->models, &err)
                 : node_api_oai_models_parse(body.p, body.len, &view->models, &err);
    if (rc) {
        snprintf(view->error, sizeof view->error, "%.150s", err.msg);
        return;
    }
    view->reachable = true;
    if (kind == NODE_KIND_OLLAMA && ep_ok(b, AGENT_EP_LOADED)) {
        body = b->body[AGENT_EP_LOADED];
        if (node_api_ollama_list_parse(body.p, body.len, true, &view->models, &err))
            LOGD("engine_parse", "path=/api/ps reason=\"%s\"", err.msg);
    } else if (kind == NODE_KIND_OLLAMA) {
        /* without /api/ps nothing is known to be loaded; on disk is the honest answer */
    }
    double running = 0, queued = 0;
    bool has_r = false, has_q = false;
    if (kind == NODE_KIND_LLAMACPP && ep_ok(b, AGENT_EP_METRICS)) {
        body = b->body[AGENT_EP_METRICS];
        has_r =
            agent_engine_prom_sum(body.p, body.len, "llamacpp:requests_processing", &running) == 0;
        has_q = agent_engine_prom_sum(body.p, body.len, "llamacpp:requests_deferred", &queued) == 0;
    } else if (kind == NODE_KIND_VLLM && ep_ok(b, AGENT_EP_METRICS)) {
        body = b->body[AGENT_EP_METRICS];
        has_r = agent_engine_prom_sum(body.p, body.len, "vllm:num_requests_running", &running) == 0;
        has_q = agent_engine_prom_sum(body.p, body.len, "vllm:num_requests_waiting", &queued) == 0;
    }
    if (kind == NODE_KIND_LLAMACPP && !has_r && ep_ok(b, AGENT_EP_SLOTS)) {
        uint32_t busy = 0, total = 0;
        body = b->body[AGENT_EP_SLOTS];
        if (agent_engine_parse_llamacpp_slots(body.p, body.len, &busy, &total, NULL) == 0) {
            running = busy;
            has_r = true;
        }
    }
    view->has_counts = has_r || has_q;
    view->running = clamp_u32(running);
    view->queued = clamp_u32(queued);
    /* llama-server serves one model: its in-flight requests are that model's */
    if (kind == NODE_KIND_LLAMACPP && view->models.n == 1)
        view->models.v[0].in_flight = view->running;
    /* a slot's context, for the models whose list entry did not say it (older builds) */
    int64_t n_ctx = 0;
    if (kind == NODE_KIND_LLAMACPP && ep_ok(b, AGENT_EP_PROPS) &&
        engine_ctx_llamacpp_props(b->body[AGENT_EP_PROPS].p, b->body[AGENT_EP_PROPS].len, &n_ctx,
                                  NULL) == 0)
        for (size_t i = 0; i < view->models.n; i++)
            if (view->models.v[i].ctx_tokens <= 0) view->models.v[i].ctx_tokens = n_ctx;
}

void agent_engine_view_free(struct agent_engine_view *v)
{
    node_api_models_free(&v->models);
}

int agent_engine_ollama_load_body(struct buf *out, const char *model, bool unload)
{
    int rc = buf_append_cstr(out, "{\"model\":");
    if (!rc) rc = json_append_str(out, model, strlen(model));
    /* keep_alive -1: the gateway decides when a replica goes, not Ollama's idle timer */
    if (!rc)
        rc = buf_appendf(out, ",\"prompt\":\"\",\"stream\":false,\"keep_alive\":%s}",
                         unload ? "0" : "-1");
    return rc;
}

/* --- async layer ------------------------------------------------------------------------- */

int agent_engine_parse_url(const char *url, char *host, size_t host_cap, int *port,
                           struct gw_error *err)
{
    if (!url || strncmp(url, "http://", 7) != 0)
        return gw_error_set(err, GW_E_INVALID, "'%s': expected http://HOST:PORT", url ? url : "");
    bool is_tls;
    return agent_engine_parse_base_url(url, host, host_cap, port, &is_tls, err);
}

int agent_engine_parse_base_url(const char *url, char *host, size_t host_cap, int *port,
                                bool *is_tls, struct gw_error *err)
{
    const char *p = url;
    *is_tls = p && strncmp(p, "https://", 8) == 0;
    if (!p || (!*is_tls && strncmp(p, "http://", 7) != 0))
        return gw_error_set(err, GW_E_INVALID, "'%s': expected http://HOST:PORT or https://",
                            url ? url : "");
    p += *is_tls ? 8 : 7;
    const char *hs = p, *he;
    if (*p == '[') {
        he = strchr(p, ']');
        if (!he) return gw_error_set(err, GW_E_INVALID, "'%s': unclosed '['", url);
        hs = p + 1;
        p = he + 1;
    } else {
        while (*p && *p != ':' && *p != '/') p++;
        he = p;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= host_cap) return gw_error_set(err, GW_E_INVALID, "'%s': bad host", url);
    memcpy(host, hs, hl);
    host[hl] = '\0';
    uint64_t pn = *is_tls ? 443 : 80;
    if (*p == ':') {
        p++;
        const char *ps = p;
        while (*p >= '0' && *p <= '9') p++;
        if (strv_to_u64(strv_make(ps, (size_t)(p - ps)), &pn) || pn == 0 || pn > 65535)
            return gw_error_set(err, GW_E_INVALID, "'%s': bad port", url);
    }
    if (*p && strcmp(p, "/") != 0)
        return gw_error_set(err, GW_E_INVALID, "'%s': a base path is not supported", url);
    *port = (int)pn;
    return 0;
}

struct fetch_call {
    struct agent_fetch *f;
    enum agent_engine_ep ep;
    struct http_call *call;
    struct buf body;
    int status;
    int err;
};

struct agent_fetch {
    struct agent_engine *e;
    bool is_op;
    bool unload;
    char model[NODE_API_MAX_ID];
    struct fetch_call calls[AGENT_EP__COUNT];
    int pending;
    agent_engine_view_fn *view_cb;
    agent_engine_op_fn *op_cb;
    void *ctx;
};

static void fetch_finish(struct agent_fetch *f);

static void f_head(struct http_call *call, const struct http_response_head *head, void *ctx)
{
    struct fetch_call *c = ctx;
    (void)call;
    c->status = head->status;
}

static void f_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    struct fetch_call *c = ctx;
    if (buf_append(&c->body, p, len)) {
        c->err = GW_E_LIMIT;
        http_call_cancel(call);
        c->call = NULL;
        if (--c->f->pending == 0) fetch_finish(c->f);
    }
}

static void f_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct fetch_call *c = ctx;
    (void)call;
    c->call = NULL;
    c->err = res->err;
    if (--c->f->pending == 0) fetch_finish(c->f);
}

static void op_result(struct agent_fetch *f, struct agent_engine_op_result *r)
{
    struct fetch_call *c = &f->calls[0];
    memset(r, 0, sizeof *r);
    if (c->err) {
        bool timeout = c->err == GW_E_CONNECT_TIMEOUT || c->err == GW_E_FIRST_BYTE_TIMEOUT ||
                       c->err == GW_E_IDLE_TIMEOUT || c->err == GW_E_TOTAL_TIMEOUT;
        r->status = timeout ? 504 : 502;
        r->code = timeout ? NODE_API_CODE_ENGINE_TIMEOUT : NODE_API_CODE_ENGINE_UNREACHABLE;
        snprintf(r->message, sizeof r->message, "engine %s: %s",
                 timeout ? "timed out" : "unreachable", gw_strerror(c->err));
        return;
    }
    if (c->status >= 200 && c->status < 300) {
        r->status = 200;
        return;
    }
    /* Ollama's error body is {"error":"..."} */
    char msg[200] = "";
    struct json_object *root = parse_body(c->body.p, c->body.len, NULL);
    struct strv s;
    if (root && json_object_is_type(root, json_type_object) && json_get_str(root, "error", &s) == 0)
        snprintf(msg, sizeof msg, "%.*s", (int)(s.len < 190 ? s.len : 190), s.p);
    if (root) json_object_put(root);
    if (c->status == 404) {
        r->status = 404;
        r->code = "model_not_found";
        snprintf(r->message, sizeof r->message, "model '%.40s' not found on the engine%s%.150s",
                 f->model, msg[0] ? ": " : "", msg);
        return;
    }
    r->status = 502;
    r->code = "engine_failed";
    snprintf(r->message, sizeof r->message, "engine answered %d%s%.150s", c->status,
             msg[0] ? ": " : "", msg);
}

static void fetch_finish(struct agent_fetch *f)
{
    if (f->is_op) {
        struct agent_engine_op_result r;
        op_result(f, &r);
        f->op_cb(&r, f->ctx);
    } else {
        struct agent_engine_bodies b;
        memset(&b, 0, sizeof b);
        for (int i = 0; i < AGENT_EP__COUNT; i++) {
            struct fetch_call *c = &f->calls[i];
            b.wanted[i] = agent_engine_ep_path(f->e->kind, (enum agent_engine_ep)i) != NULL;
            b.status[i] = c->err ? 0 : c->status;
            b.body[i] = buf_view(&c->body);
        }
        struct agent_engine_view view;
        memset(&view, 0, sizeof view);
        agent_engine_build(f->e->kind, &b, &view);
        if (!view.reachable && f->calls[AGENT_EP_MODELS].err)
            snprintf(view.error, sizeof view.error, "%s: %s",
                     agent_engine_ep_path(f->e->kind, AGENT_EP_MODELS),
                     gw_strerror(f->calls[AGENT_EP_MODELS].err));
        f->view_cb(&view, f->ctx);
        agent_engine_view_free(&view);
    }
    for (int i = 0; i < AGENT_EP__COUNT; i++) buf_free(&f->calls[i].body);
    xfree(f);
}

static int start_call(struct agent_fetch *f, int i, const char *method, const char *path,
                      struct strv body, uint64_t total_ms)
{
    struct agent_engine *e = f->e;
    struct fetch_call *c = &f->calls[i];
    c->f = f;
    c->ep = (enum agent_engine_ep)i;
    buf_init(&c->body, ENGINE_MAX_BODY_BYTES);
    char auth[320];
    struct http_header h[2];
    size_t nh = 0;
    if (body.len)
        h[nh++] = (struct http_header){STRV_LIT("Content-Type"), STRV_LIT("application/json")};
    if (e->api_key) {
        snprintf(auth, sizeof auth, "Bearer %s", e->api_key);
        h[nh++] = (struct http_header){STRV_LIT("Authorization"), strv_from_cstr(auth)};
    }
    struct http_client_request req = {
        .host = e->host,
        .port = e->port,
        .method = strv_from_cstr(method),
        .target = strv_from_cstr(path),
        .headers = h,
        .n_headers = nh,
        .body = body,
        .connect_timeout_ms = 3000,
        .first_byte_timeout_ms = total_ms,
        .total_timeout_ms = total_ms,
        /* a few calls per probe: a fresh connection costs little and never meets a pooled one
         * the engine closed while idle (which would read as "engine down") */
        .no_reuse = true,
    };
    static const struct http_client_callbacks cbs = {f_head, f_data, f_done};
    int rc = http_client_request(e->client, &req, &cbs, c, &c->call);
    if (rc) {
        c->err = rc;
        c->call = NULL;
        return rc;
    }
    f->pending++;
    return 0;
}

void agent_engine_inventory(struct agent_engine *e, agent_engine_view_fn *cb, void *ctx)
{
    struct agent_fetch *f = xcalloc(1, sizeof *f);
    f->e = e;
    f->view_cb = cb;
    f->ctx = ctx;
    f->pending = 1; /* held until every call started */
    for (int i = 0; i < AGENT_EP__COUNT; i++) {
        const char *path = agent_engine_ep_path(e->kind, (enum agent_engine_ep)i);
        if (path)
            (void)start_call(f, i, "GET", path, STRV_NULL, e->timeout_ms);
        else
            buf_init(&f->calls[i].body, 0);
    }
    if (--f->pending == 0) fetch_finish(f);
}

void agent_engine_load(struct agent_engine *e, const char *model, bool unload,
                       agent_engine_op_fn *cb, void *ctx)
{
    if (e->kind != NODE_KIND_OLLAMA) {
        struct agent_engine_op_result r = {.status = 501, .code = NODE_API_CODE_UNSUPPORTED};
        snprintf(r.message, sizeof r.message,
                 "the %s engine cannot %s models on request; restart it with the model instead",
                 node_kind_name(e->kind), unload ? "unload" : "load");
        cb(&r, ctx);
        return;
    }
    struct agent_fetch *f = xcalloc(1, sizeof *f);
    f->e = e;
    f->is_op = true;
    f->unload = unload;
    snprintf(f->model, sizeof f->model, "%s", model);
    f->op_cb = cb;
    f->ctx = ctx;
    for (int i = 1; i < AGENT_EP__COUNT; i++) buf_init(&f->calls[i].body, 0);
    struct buf body;
    buf_init(&body, 4096 + NODE_API_MAX_ID * 6);
    int rc = agent_engine_ollama_load_body(&body, model, unload);
    f->pending = 1;
    if (!rc) rc = start_call(f, 0, "POST", "/api/generate", buf_view(&body), e->load_timeout_ms);
    buf_free(&body);
    if (rc) f->calls[0].err = rc;
    if (--f->pending == 0) fetch_finish(f);
}
