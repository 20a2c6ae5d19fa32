/* api — the client listener: the OpenAI and Ollama endpoints. Inference requests go to the
 * proxy; the model lists are answered from the registry (what the fleet can serve now);
 * /healthz and /readyz answer probes without a key. The loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "gw/proxy.h"
#include "gw/api.h"
#include "gw/join.h"
#include "gw/keys.h"
#include "gw/models.h"

/* Equal in time that depends only on the lengths, never on where the bytes differ: every
 * byte of want is visited whatever tok holds. */
static bool equal_ct(struct strv tok, struct strv want)
{
    unsigned diff = tok.len != want.len;
    for (size_t i = 0; i < want.len; i++)
        diff |= (unsigned)(unsigned char)want.p[i] ^
                (unsigned)(unsigned char)(i < tok.len ? tok.p[i] : 0);
    return diff == 0;
}

/* "Authorization: Bearer <token>": the scheme name is case-insensitive and followed by one
 * or more spaces (RFC 7235 §2.1, credentials = auth-scheme 1*SP token68), so "bearer x" and
 * "BEARER   x" are the same credentials; an empty token never matches a non-empty want. */
bool gw_bearer_matches(const struct http_request *req, const char *want_s)
{
    struct strv h = http_request_header(req, "Authorization");
    const struct strv scheme = STRV_LIT("Bearer");
    if (!h.p || h.len <= scheme.len || !strv_eq_ci(strv_sub(h, 0, scheme.len), scheme) ||
        h.p[scheme.len] != ' ')
        return false;
    size_t i = scheme.len;
    while (i < h.len && h.p[i] == ' ') i++;
    struct strv tok = strv_trim(strv_sub(h, i, h.len - i));
    return equal_ct(tok, strv_from_cstr(want_s));
}

/* Distinct model ids served by routable nodes (optionally Ollama nodes only). */
static int cmp_model_nodes(const void *a, const void *b)
{
    const struct model_nodes *x = *(const struct model_nodes *const *)a;
    const struct model_nodes *y = *(const struct model_nodes *const *)b;
    size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
    int c = memcmp(x->id, y->id, n);
    return c ? c : (x->id_len > y->id_len) - (x->id_len < y->id_len);
}

/* One model as Ollama's /api/tags (or, with ps, /api/ps) lists it. Size from the first
 * routable node that reports one; details Ollama would read from the GGUF are left empty. */
static int ollama_model_json(struct gw *g, const struct model_nodes *e, uint64_t now,
                             struct buf *out, bool ps)
{
    uint64_t size_mb = 0;
    for (size_t i = 0; i < e->n && !size_mb; i++)
        if (node_is_routable(&g->reg, e->slots[i].node, now)) size_mb = e->slots[i].model->size_mb;
    int rc = buf_append_cstr(out, "{\"name\":");
    if (!rc) rc = json_append_str(out, e->id, e->id_len);
    if (!rc) rc = buf_append_cstr(out, ",\"model\":");
    if (!rc) rc = json_append_str(out, e->id, e->id_len);
    if (!rc && !ps) rc = buf_append_cstr(out, ",\"modified_at\":\"1970-01-01T00:00:00Z\"");
    if (!rc) rc = buf_append_cstr(out, ",\"size\":");
    if (!rc) rc = buf_append_u64(out, size_mb << 20);
    if (!rc)
        rc = buf_append_cstr(out, ",\"digest\":\"\",\"details\":{\"parent_model\":\"\","
                                  "\"format\":\"gguf\",\"family\":\"\",\"families\":null,"
                                  "\"parameter_size\":\"\",\"quantization_level\":\"\"}");
    if (!rc && ps) {
        rc = buf_append_cstr(out, ",\"expires_at\":\"2262-04-11T23:47:16Z\",\"size_vram\":");
        if (!rc) rc = buf_append_u64(out, size_mb << 20);
    }
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

static void list_models(struct gw *g, struct http_request *req, bool ollama,
                        const struct client_key *key)
{
    struct buf out;
    buf_init(&out, 64u << 20);
    uint64_t now = gw_now_ms(g);
    int rc = buf_append_cstr(&out, ollama ? "{\"models\":[" : "{\"object\":\"list\",\"data\":[");
    size_t emitted = 0;
    /* the catalogue first: every entry, with where it is loaded and where it could be */
    for (size_t c = 0; c < g->cat.n && !rc && !ollama; c++) {
        const struct cat_model *m = g->cat.v[c];
        if (!keys_may_list(key, strv_from_cstr(m->id))) continue; /* the key's globs */
        if (emitted++) rc = buf_append_cstr(&out, ",");
        if (!rc) rc = buf_append_cstr(&out, "{\"id\":");
        if (!rc) rc = json_append_str(&out, m->id, strlen(m->id));
        if (!rc)
            rc = buf_append_cstr(&out, ",\"object\":\"model\",\"created\":0,"
                                       "\"owned_by\":\"drover\",\"catalogued\":true,\"aliases\":[");
        for (size_t a = 0; a < m->n_aliases && !rc; a++) {
            if (a) rc = buf_append_cstr(&out, ",");
            if (!rc) rc = json_append_str(&out, m->aliases[a], strlen(m->aliases[a]));
        }
        if (!rc) rc = buf_append_cstr(&out, "],");
        if (!rc) rc = models_where_json(g, m, &out);
        if (!rc) rc = buf_append_cstr(&out, "}");
    }
    /* Served models from the model index, each once, sorted by id, with the routable nodes
     * serving it in registry order: one pass over each model's replicas, not nodes^2. */
    (void)registry_model_nodes(&g->reg, STRV_LIT("")); /* brings the index up to date */
    const struct model_index *ix = &g->reg.index;
    const struct model_nodes **served = ix->n ? xcalloc(ix->n, sizeof *served) : NULL;
    size_t n_served = 0;
    for (size_t t = 0; t < ix->cap; t++) {
        const struct model_nodes *e = &ix->tab[t];
        if (!e->id || e->alias ||
            (!ollama && catalogue_find(&g->cat, (struct strv){e->id, e->id_len})) ||
            !keys_may_list(key, (struct strv){e->id, e->id_len}))
            continue;
        for (size_t i = 0; i < e->n; i++) {
            const struct node *o = e->slots[i].node;
            /* every node kind: the Ollama API is translated for the others (docs/translate.md) */
            if (node_is_routable(&g->reg, o, now)) {
                served[n_served++] = e;
                break;
            }
        }
    }
    if (n_served) qsort(served, n_served, sizeof *served, cmp_model_nodes);
    for (size_t s = 0; s < n_served && !rc; s++) {
        const struct model_nodes *e = served[s];
        if (emitted++) rc = buf_append_cstr(&out, ",");
        if (ollama) {
            if (!rc) rc = ollama_model_json(g, e, now, &out, false);
            continue;
        }
        if (!rc) rc = buf_append_cstr(&out, "{\"id\":");
        if (!rc) rc = json_append_str(&out, e->id, e->id_len);
        if (!rc)
            rc = buf_append_cstr(&out, ",\"object\":\"model\",\"created\":0,"
                                       "\"owned_by\":\"drover\",\"nodes\":[");
        size_t k = 0;
        for (size_t i = 0; i < e->n && !rc; i++) {
            const struct node *o = e->slots[i].node;
            if (!node_is_routable(&g->reg, o, now)) continue;
            if (k++) rc = buf_append_cstr(&out, ",");
            if (!rc) rc = json_append_str(&out, o->name, strlen(o->name));
        }
        if (!rc) rc = buf_append_cstr(&out, "]}");
    }
    xfree(served);
    if (!rc) rc = buf_append_cstr(&out, "]}");
    if (rc) {
        buf_free(&out);
        (void)gw_answer(req, ANSWER_UPSTREAM_FAILED, NULL, "model list too large");
        return;
    }
    (void)http_respond_json(req, 200, NULL, 0, out.p, out.len);
    buf_free(&out);
}

/* /healthz: the process is alive. /readyz: it can serve, i.e. at least one node is routable
 * and the gateway is not shutting down; else 503 with Retry-After, so a load balancer or a
 * Kubernetes readiness probe keeps traffic away. Neither needs a token: they tell nothing but
 * a count. The same answers on both listeners (admin.c calls this too). */
bool api_probe_route(struct gw *g, struct http_request *req)
{
    if (strv_eq_cstr(req->path, "/healthz")) {
        (void)http_respond_json(req, 200, NULL, 0, "{\"status\":\"ok\"}", 15);
        return true;
    }
    if (!strv_eq_cstr(req->path, "/readyz")) return false;
    if (g->stopping) {
        (void)gw_answer(req, ANSWER_SHUTTING_DOWN, NULL, "not ready: the gateway is shutting down");
        return true;
    }
    size_t n = registry_count_routable(&g->reg, gw_now_ms(g));
    if (n == 0) {
        (void)gw_answer(req, ANSWER_NO_HEALTHY_NODES, NULL, "not ready: no node is routable yet");
        return true;
    }
    char body[64];
    int len = snprintf(body, sizeof body, "{\"status\":\"ready\",\"routable_nodes\":%zu}", n);
    (void)http_respond_json(req, 200, NULL, 0, body, (size_t)len);
    return true;
}

/* /api/ps: what runs now, i.e. every model a routable node has loaded. */
static void ollama_ps(struct gw *g, struct http_request *req)
{
    struct buf out;
    buf_init(&out, 64u << 20);
    uint64_t now = gw_now_ms(g);
    (void)registry_model_nodes(&g->reg, STRV_LIT("")); /* brings the index up to date */
    const struct model_index *ix = &g->reg.index;
    int rc = buf_append_cstr(&out, "{\"models\":[");
    size_t k = 0;
    for (size_t t = 0; t < ix->cap && !rc; t++) {
        const struct model_nodes *e = &ix->tab[t];
        if (!e->id || e->alias) continue;
        bool any = false;
        for (size_t i = 0; i < e->n && !any; i++)
            any = node_is_routable(&g->reg, e->slots[i].node, now);
        if (!any) continue;
        if (k++) rc = buf_append_cstr(&out, ",");
        if (!rc) rc = ollama_model_json(g, e, now, &out, true);
    }
    if (!rc) rc = buf_append_cstr(&out, "]}");
    if (rc) {
        struct gw_answer_ctx c = {.ollama = true};
        (void)gw_answer(req, ANSWER_UPSTREAM_FAILED, &c, "model list too large");
    } else {
        (void)http_respond_json(req, 200, NULL, 0, out.p, out.len);
    }
    buf_free(&out);
}

static bool has_embed(struct strv m)
{
    for (size_t i = 0; i + 5 <= m.len; i++)
        if (memcmp(m.p + i, "embed", 5) == 0) return true;
    return false;
}

/* /api/show {"model"} (or the older "name"): what the gateway knows of a model the fleet
 * serves; 404 in Ollama's shape otherwise. Engine details (template, parameters, GGUF facts)
 * are not known for every node kind and are left empty. */
static void ollama_show(struct gw *g, struct http_request *req)
{
    struct gw_answer_ctx c = {.ollama = true};
    struct json_object *root =
        json_parse_strict(req->body.p ? req->body.p : "", req->body.len, 32, NULL);
    struct strv model = STRV_NULL;
    if (!root || (json_get_str(root, "model", &model) && json_get_str(root, "name", &model)) ||
        !model.len) {
        if (root) json_object_put(root);
        (void)gw_answer(req, ANSWER_INVALID_REQUEST, &c, "model is required");
        return;
    }
    uint64_t now = gw_now_ms(g);
    const struct model_nodes *e = registry_model_nodes(&g->reg, model);
    bool any = false;
    for (size_t i = 0; e && i < e->n && !any; i++)
        any = node_is_routable(&g->reg, e->slots[i].node, now);
    const struct cat_model *cm = catalogue_find(&g->cat, model);
    if (!any && !cm) {
        char msg[400];
        snprintf(msg, sizeof msg, "model '%.*s' not found", (int)model.len, model.p);
        json_object_put(root);
        (void)gw_answer(req, ANSWER_MODEL_NOT_FOUND, &c, msg);
        return;
    }
    bool embed = cm && cm->caps ? !(cm->caps & (CAP_CHAT | CAP_COMPLETIONS)) : has_embed(model);
    struct buf out;
    buf_init(&out, 64 * 1024);
    int rc = buf_append_cstr(
        &out, "{\"license\":\"\",\"modelfile\":\"\",\"parameters\":\"\",\"template\":\"\","
              "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"\","
              "\"families\":null,\"parameter_size\":\"\",\"quantization_level\":\"\"},"
              "\"model_info\":{},\"capabilities\":");
    if (!rc) rc = buf_append_cstr(&out, embed ? "[\"embedding\"]" : "[\"completion\"]");
    if (!rc) rc = buf_append_cstr(&out, ",\"modified_at\":\"1970-01-01T00:00:00Z\"}");
    json_object_put(root);
    if (rc)
        (void)gw_answer(req, ANSWER_UPSTREAM_FAILED, &c, "answer too large");
    else
        (void)http_respond_json(req, 200, NULL, 0, out.p, out.len);
    buf_free(&out);
}

/* The Ollama and Anthropic routes the gateway answers beside the inference paths. Returns
 * false for any other path. */
static bool native_route(struct gw *g, struct http_request *req, bool is_get, bool is_post)
{
    struct strv path = req->path;
    bool anthropic =
        strv_eq_cstr(path, "/v1/messages") || strv_eq_cstr(path, "/v1/messages/count_tokens");
    bool version = strv_eq_cstr(path, "/api/version"), ps = strv_eq_cstr(path, "/api/ps");
    bool show = strv_eq_cstr(path, "/api/show");
    if (!anthropic && !version && !ps && !show) return false;
    bool want_post = anthropic || show;
    if (want_post ? !is_post : !is_get) {
        struct gw_answer_ctx c = {.ollama = !anthropic, .anthropic = anthropic};
        (void)gw_answer(req, ANSWER_METHOD_NOT_ALLOWED, &c, want_post ? "use POST" : "use GET");
        return true;
    }
    if (anthropic) {
        proxy_handle(g, req);
    } else if (version) {
        /* the Ollama API version the translation follows (docs/translate.md) */
        (void)http_respond_json(req, 200, NULL, 0, "{\"version\":\"0.12.0\"}", 20);
    } else if (ps) {
        ollama_ps(g, req);
    } else {
        ollama_show(g, req);
    }
    return true;
}

void api_handle(struct http_request *req, void *ctx)
{
    struct gw *g = ctx;
    struct strv path = req->path;
    bool is_get = strv_eq_cstr(req->method, "GET");
    bool is_post = strv_eq_cstr(req->method, "POST");
    if (strv_eq_cstr(path, "/health")) {
        (void)http_respond_json(req, 200, NULL, 0, "{\"status\":\"ok\"}", 15);
        return;
    }
    if (api_probe_route(g, req)) return;
    if (strv_eq_cstr(path, NODE_API_PATH_JOIN)) {
        join_handle(g, req); /* its own token, not the client API key */
        return;
    }
    bool ollama_path = strv_starts_with(path, STRV_LIT("/api/"));
    /* client keys (docs/security.md): the key is found once here; keys_admit (proxy.c) reuses
     * it for the entitlements and limits of an inference request */
    const char *why = NULL;
    struct client_key *key = keys_authenticate(g, req, &why);
    if (!key && keys_auth_required(g)) {
        keys_answer_unauthorized(g, req, why);
        return;
    }
    if (g->stopping) {
        (void)gw_answer(req, ANSWER_SHUTTING_DOWN, NULL, "the gateway is shutting down");
        return;
    }
    if (strv_eq_cstr(path, NODE_API_PATH_OAI_MODELS) ||
        strv_eq_cstr(path, NODE_API_PATH_OLLAMA_TAGS)) {
        if (!is_get) {
            (void)gw_answer(req, ANSWER_METHOD_NOT_ALLOWED, NULL, "use GET");
            return;
        }
        bool tags = strv_eq_cstr(path, NODE_API_PATH_OLLAMA_TAGS);
        if (key && !(key->spec.endpoints & (tags ? KEP_OLLAMA : KEP_MODELS))) {
            keys_reply(req, 403, "endpoint_not_allowed", "this key may not list models");
            return;
        }
        list_models(g, req, tags, key);
        return;
    }
    if (native_route(g, req, is_get, is_post)) return;
    if (node_api_is_inference_path(path)) {
        if (!is_post) {
            struct gw_answer_ctx c = {.ollama = ollama_path};
            (void)gw_answer(req, ANSWER_METHOD_NOT_ALLOWED, &c, "use POST");
            return;
        }
        proxy_handle(g, req);
        return;
    }
    struct gw_answer_ctx c = {.ollama = ollama_path};
    (void)gw_answer(req, ANSWER_NOT_FOUND_ROUTE, &c, "unknown path");
}
