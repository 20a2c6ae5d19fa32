/* admin — the admin listener: node list and actions (recover, drain, resume) over every axis
 * of DESIGN §3, /metrics in Prometheus text format, and the gateway's own /health. Guarded by
 * admin_token when one is set. The loop thread only. */
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "gw/errors_http.h"
#include "gw/gw.h"

static bool authorized(const struct gw *g, const struct http_request *req)
{
    if (!g->cfg.admin_token) return true;
    struct strv h = http_request_header(req, "Authorization");
    if (!h.p || !strv_starts_with(h, STRV_LIT("Bearer "))) return false;
    struct strv tok = strv_trim(strv_sub(h, 7, h.len));
    struct strv want = strv_from_cstr(g->cfg.admin_token);
    unsigned diff = tok.len != want.len;
    for (size_t i = 0; i < want.len; i++)
        diff |= (unsigned)(want.p[i] ^ (i < tok.len ? tok.p[i] : 0));
    return diff == 0;
}

static int str_field(struct buf *o, const char *key, const char *v)
{
    int rc = buf_appendf(o, "\"%s\":", key);
    if (!rc) rc = v ? json_append_str(o, v, strlen(v)) : buf_append_cstr(o, "null");
    return rc;
}

static int node_json(const struct gw *g, const struct node *n, struct buf *o)
{
    uint64_t now = gw_now_ms(g);
    int rc = buf_append_cstr(o, "{");
    if (!rc) rc = str_field(o, "name", n->name);
    if (!rc) rc = buf_append_cstr(o, ",");
    if (!rc) rc = str_field(o, "url", n->url);
    if (!rc)
        rc = buf_appendf(
            o,
            ",\"kind\":\"%s\",\"admin\":\"%s\",\"liveness\":\"%s\","
            "\"ever_healthy\":%s,\"excluded\":%s,\"routable\":%s,"
            "\"consecutive_faults\":%u,\"faults_total\":%llu,\"ejections\":%u,"
            "\"eject_remaining_ms\":%llu,\"cooling_ms\":%llu,\"in_flight\":%u,"
            "\"streams\":%u,\"requests_total\":%llu,\"drained\":%s,"
            "\"probe_ok_streak\":%u,\"probe_fail_streak\":%u,",
            node_kind_name(n->kind), node_admin_name(n->admin), node_live_name(n->live),
            n->ever_healthy ? "true" : "false", n->excluded ? "true" : "false",
            node_is_routable(&g->reg, n, now) ? "true" : "false", n->consecutive_faults,
            (unsigned long long)n->faults_total, n->ejections,
            (unsigned long long)(n->excluded && n->eject_until_ms > now ? n->eject_until_ms - now
                                                                        : 0),
            (unsigned long long)(n->cooled_until_ms > now ? n->cooled_until_ms - now : 0),
            n->inflight, n->streams_active, (unsigned long long)n->requests_total,
            n->admin == ADMIN_DRAINING && n->inflight == 0 ? "true" : "false", n->ok_streak,
            n->fail_streak);
    if (!rc)
        rc = str_field(o, "last_probe_error", n->last_probe_error[0] ? n->last_probe_error : NULL);
    if (!rc) rc = buf_append_cstr(o, ",\"labels\":{");
    for (size_t i = 0; i < n->n_labels && !rc; i++) {
        if (i) rc = buf_append_cstr(o, ",");
        if (!rc) rc = json_append_str(o, n->labels[i].key, strlen(n->labels[i].key));
        if (!rc) rc = buf_append_cstr(o, ":");
        if (!rc) rc = json_append_str(o, n->labels[i].value, strlen(n->labels[i].value));
    }
    if (!rc) rc = buf_append_cstr(o, "},\"models\":[");
    for (size_t i = 0; i < n->n_models && !rc; i++) {
        const struct node_model *m = &n->models[i];
        if (i) rc = buf_append_cstr(o, ",");
        if (!rc) rc = buf_append_cstr(o, "{");
        if (!rc) rc = str_field(o, "id", m->id);
        if (!rc) rc = buf_appendf(o, ",\"in_flight\":%u,\"capabilities_absent\":[", m->inflight);
        const char *sep = "";
        if (!rc && (m->caps_absent & CAP_CHAT)) rc = buf_appendf(o, "%s\"chat\"", sep), sep = ",";
        if (!rc && (m->caps_absent & CAP_COMPLETIONS))
            rc = buf_appendf(o, "%s\"completions\"", sep), sep = ",";
        if (!rc && (m->caps_absent & CAP_EMBEDDINGS)) rc = buf_appendf(o, "%s\"embeddings\"", sep);
        if (!rc) rc = buf_append_cstr(o, "]}");
    }
    if (!rc) rc = buf_append_cstr(o, "]}");
    return rc;
}

static void respond_buf(struct http_request *req, int status, struct buf *b)
{
    (void)http_respond_json(req, status, NULL, 0, b->p, b->len);
    buf_free(b);
}

static void error(struct http_request *req, int status, const char *code, const char *msg)
{
    struct buf b;
    buf_init(&b, 4096);
    if (gw_error_json(&b, msg, status == 401 ? "authentication_error" : "invalid_request_error",
                      NULL, code))
        buf_reset(&b);
    respond_buf(req, status, &b);
}

static void nodes_route(struct gw *g, struct http_request *req, struct strv rest)
{
    bool is_get = strv_eq_cstr(req->method, "GET");
    bool is_post = strv_eq_cstr(req->method, "POST");
    struct buf b;
    buf_init(&b, 256u << 20);
    if (rest.len == 0) {
        if (!is_get) return error(req, 405, "method_not_allowed", "use GET");
        int rc = buf_append_cstr(&b, "{\"nodes\":[");
        size_t k = 0;
        for (size_t i = 0; i < g->reg.n && !rc; i++) {
            if (g->reg.nodes[i]->admin == ADMIN_REMOVED) continue;
            if (k++) rc = buf_append_cstr(&b, ",");
            if (!rc) rc = node_json(g, g->reg.nodes[i], &b);
        }
        if (!rc) rc = buf_append_cstr(&b, "]}");
        return respond_buf(req, rc ? 500 : 200, &b);
    }
    /* "/name" or "/name/action" */
    struct strv name = strv_sub(rest, 1, rest.len);
    struct strv action = STRV_NULL;
    long slash = strv_index(name, '/');
    if (slash >= 0) {
        action = strv_sub(name, (size_t)slash + 1, name.len);
        name = strv_sub(name, 0, (size_t)slash);
    }
    struct node *n = registry_find(&g->reg, name);
    if (!n || n->admin == ADMIN_REMOVED) {
        buf_free(&b);
        return error(req, 404, "node_not_found", "no such node");
    }
    if (action.len == 0) {
        if (!is_get) {
            buf_free(&b);
            return error(req, 405, "method_not_allowed", "use GET");
        }
        int rc = node_json(g, n, &b);
        return respond_buf(req, rc ? 500 : 200, &b);
    }
    if (!is_post) {
        buf_free(&b);
        return error(req, 405, "method_not_allowed", "use POST");
    }
    if (strv_eq_cstr(action, "recover")) {
        registry_recover(&g->reg, n);
        LOGI("node_recovered", "node=%s by=admin", n->name);
        health_probe_now(g, n);
    } else if (strv_eq_cstr(action, "drain")) {
        if (n->admin == ADMIN_PENDING) {
            buf_free(&b);
            return error(req, 409, "illegal_transition", "a pending node cannot be drained");
        }
        n->admin = ADMIN_DRAINING;
        LOGI("node_draining", "node=%s in_flight=%u", n->name, n->inflight);
    } else if (strv_eq_cstr(action, "resume")) {
        if (n->admin != ADMIN_DRAINING && n->admin != ADMIN_APPROVED) {
            buf_free(&b);
            return error(req, 409, "illegal_transition", "only a draining node can be resumed");
        }
        n->admin = ADMIN_APPROVED;
        LOGI("node_resumed", "node=%s", n->name);
    } else {
        buf_free(&b);
        return error(req, 404, "unknown_action", "unknown node action");
    }
    int rc = node_json(g, n, &b);
    respond_buf(req, rc ? 500 : 200, &b);
}

void admin_handle(struct http_request *req, void *ctx)
{
    struct gw *g = ctx;
    struct strv path = req->path;
    if (strv_eq_cstr(path, "/health")) {
        (void)http_respond_json(req, 200, NULL, 0, "{\"status\":\"ok\"}", 15);
        return;
    }
    if (!authorized(g, req))
        return error(req, 401, "invalid_admin_token", "missing or wrong admin token");
    if (strv_eq_cstr(path, "/metrics")) {
        struct buf b;
        buf_init(&b, 256u << 20);
        struct http_client_stats st;
        http_client_get_stats(g->client, &st);
        metrics_render(&g->metrics, &g->reg, &st, g->active_requests, gw_now_ms(g), &b);
        struct http_header h = {STRV_LIT("Content-Type"), STRV_LIT("text/plain; version=0.0.4")};
        (void)http_respond(req, 200, &h, 1, b.p, b.len);
        buf_free(&b);
        return;
    }
    struct strv prefix = STRV_LIT("/admin/v1/nodes");
    if (strv_starts_with(path, prefix)) {
        struct strv rest = strv_sub(path, prefix.len, path.len);
        if (rest.len == 0 || rest.p[0] == '/') {
            if (rest.len == 1) rest.len = 0;
            nodes_route(g, req, rest);
            return;
        }
    }
    error(req, 404, "unknown_url", "unknown path");
}
