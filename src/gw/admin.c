/* admin — the admin listener: node list and actions (recover, drain, resume) over every axis
 * of DESIGN §3, /metrics in Prometheus text format, and the gateway's own /health, /healthz and
 * /readyz (open); the rest is guarded by admin_token when one is set. The loop thread only. */
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/errors_http.h"
#include "gw/events.h"
#include "gw/history.h"
#include "gw/ui.h"
#include "gw/gw.h"
#include "gw/api.h"
#include "gw/admin.h"
#include "gw/health.h"
#include "gw/join.h"
#include "gw/keys.h"
#include "gw/usage.h"
#include "gw/audit.h"
#include "base/sha256.h"
#include "gw/nodes.h"
#include "gw/models.h"
#include "gw/ops.h"
#include "gw/placement.h"

/* Who is asking (DESIGN §10): the config's admin_token is an operator; each of admin_tokens
 * has its own id and role. With no token configured at all the (loopback) admin API is open and
 * every caller is an operator, as before. Returns false when the request's token is none of
 * them. */
struct admin_principal {
    const char *id;
    enum gw_admin_role role;
};

static bool authenticate(const struct gw *g, const struct http_request *req,
                         struct admin_principal *who)
{
    if (!g->cfg.admin_token && !g->cfg.n_admin_tokens) {
        *who = (struct admin_principal){"open", ADMIN_ROLE_OPERATOR};
        return true;
    }
    if (g->cfg.admin_token && gw_bearer_matches(req, g->cfg.admin_token)) {
        *who = (struct admin_principal){"admin_token", ADMIN_ROLE_OPERATOR};
        return true;
    }
    struct strv h = http_request_header(req, "Authorization");
    const struct strv scheme = STRV_LIT("Bearer");
    if (g->cfg.n_admin_tokens && h.p && h.len > scheme.len &&
        strv_eq_ci(strv_sub(h, 0, scheme.len), scheme) && h.p[scheme.len] == ' ') {
        size_t i = scheme.len;
        while (i < h.len && h.p[i] == ' ') i++;
        struct strv tok = strv_trim(strv_sub(h, i, h.len - i));
        char hex[65];
        sha256_hex(tok.p, tok.len, hex);
        const struct gw_admin_token *found = NULL;
        for (size_t k = 0; k < g->cfg.n_admin_tokens; k++) /* every one: constant time */
            if (secret_equal(g->cfg.admin_tokens[k].hash, hex) && !found)
                found = &g->cfg.admin_tokens[k];
        if (found) {
            *who = (struct admin_principal){found->id, found->role};
            return true;
        }
    }
    return false;
}

static const char *role_name(enum gw_admin_role r)
{
    return r == ADMIN_ROLE_OPERATOR ? "operator" : "viewer";
}

static bool is_read(const struct http_request *req)
{
    return strv_eq_cstr(req->method, "GET") || strv_eq_cstr(req->method, "HEAD");
}

static int str_field(struct buf *o, const char *key, const char *v);
static int str_field_comma(struct buf *o, const char *key, const char *v)
{
    int rc = buf_append_cstr(o, ",");
    return rc ? rc : str_field(o, key, v);
}

static int str_field(struct buf *o, const char *key, const char *v)
{
    int rc = buf_appendf(o, "\"%s\":", key);
    if (!rc) rc = v ? json_append_str(o, v, strlen(v)) : buf_append_cstr(o, "null");
    return rc;
}

/* A model's marks (DESIGN §4): "capabilities_absent" (the unexpired capability marks) and
 * "marks", each with its kind, capability, cause, age and time left. */
static int marks_json(const struct node_model *m, uint64_t now, struct buf *o)
{
    unsigned live = 0; /* unexpired capability marks (an inventory mark is listed apart) */
    for (unsigned i = 0; i < CAP_N && m->marks; i++)
        if ((m->caps_absent & (1u << i)) && now < m->marks->cap[i].until_ms) live |= 1u << i;
    int rc = buf_append_cstr(o, "\"capabilities_absent\":[");
    const char *sep = "";
    for (unsigned i = 0; i < CAP_N && !rc; i++)
        if (live & (1u << i)) rc = buf_appendf(o, "%s\"%s\"", sep, cap_name(1u << i)), sep = ",";
    if (!rc) rc = buf_append_cstr(o, "],\"marks\":[");
    sep = "";
    for (unsigned i = 0; i < CAP_N && !rc && m->marks; i++) {
        const struct mark *mk = &m->marks->cap[i];
        if (!(live & (1u << i))) continue;
        rc = buf_appendf(o,
                         "%s{\"kind\":\"capability\",\"capability\":\"%s\",\"age_ms\":%llu,"
                         "\"expires_in_ms\":%llu,\"count\":%u,\"cause\":",
                         sep, cap_name(1u << i), (unsigned long long)(now - mk->at_ms),
                         (unsigned long long)(mk->until_ms - now), mk->count);
        if (!rc) rc = json_append_str(o, mk->cause, strlen(mk->cause));
        if (!rc) rc = buf_append_cstr(o, "}");
        sep = ",";
    }
    if (!rc && m->inventory_miss && m->marks) {
        const struct mark *mk = &m->marks->inventory;
        rc = buf_appendf(o, "%s{\"kind\":\"inventory\",\"age_ms\":%llu,\"cause\":", sep,
                         (unsigned long long)(now - mk->at_ms));
        if (!rc) rc = json_append_str(o, mk->cause, strlen(mk->cause));
        if (!rc) rc = buf_append_cstr(o, "}");
    }
    if (!rc) rc = buf_append_cstr(o, "]");
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
            "\"probe_ok_streak\":%u,\"probe_fail_streak\":%u,\"concurrency_limit\":%u,"
            "\"busy_total\":%llu,\"busy_in_a_row\":%u,",
            node_kind_name(n->kind), node_admin_name(n->admin), node_live_name(n->live),
            n->ever_healthy ? "true" : "false", n->excluded ? "true" : "false",
            node_is_routable(&g->reg, n, now) ? "true" : "false", n->consecutive_faults,
            (unsigned long long)n->faults_total, n->ejections,
            (unsigned long long)(n->excluded && n->eject_until_ms > now ? n->eject_until_ms - now
                                                                        : 0),
            (unsigned long long)(n->cooled_until_ms > now ? n->cooled_until_ms - now : 0),
            n->inflight, n->streams_active, (unsigned long long)n->requests_total,
            n->admin == ADMIN_DRAINING && n->inflight == 0 ? "true" : "false", n->ok_streak,
            n->fail_streak, n->conc_limit, (unsigned long long)n->busy_total, n->consecutive_busy);
    if (!rc)
        rc = str_field(o, "last_probe_error", n->last_probe_error[0] ? n->last_probe_error : NULL);
    if (!rc)
        rc = buf_appendf(o, ",\"source\":\"%s\",\"has_secret\":%s",
                         n->from_config ? "config"
                         : n->via_agent ? "agent"
                                        : "cli",
                         n->secret_hash ? "true" : "false");
    if (!rc && n->via_agent) rc = str_field_comma(o, "agent_version", n->agent_version);
    if (!rc && n->discovery_json)
        rc = buf_appendf(o, ",\"discovery\":%s", n->discovery_json); /* validated at join */
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
        if (!rc) rc = buf_appendf(o, ",\"in_flight\":%u,", m->inflight);
        /* the context a request may fill on this node (docs/routing.md "Context length") */
        if (!rc && m->ctx_tokens)
            rc = buf_appendf(o, "\"context_length\":%u,\"context_source\":\"%s\",", m->ctx_tokens,
                             m->ctx_source ? m->ctx_source : "");
        else if (!rc)
            rc = buf_append_cstr(o, "\"context_length\":null,");
        if (!rc) rc = marks_json(m, now, o);
        if (!rc) rc = buf_append_cstr(o, "}");
    }
    if (!rc) rc = buf_append_cstr(o, "]}");
    return rc;
}

static void respond_buf(struct http_request *req, int status, struct buf *b)
{
    (void)http_respond_json(req, status, NULL, 0, b->p, b->len);
    buf_free(b);
}

/* Admin transitions of DESIGN §3. Returns NULL when allowed, else the 409 reason. */
static const char *transition(struct node *n, struct strv action, enum node_admin *to)
{
    enum node_admin a = n->admin;
    *to = a;
    if (strv_eq_cstr(action, "approve")) {
        if (a == ADMIN_REMOVED) return "a removed node cannot be approved; it must join again";
        if (a == ADMIN_DRAINING) return "the node is draining; resume it instead";
        *to = ADMIN_APPROVED;
    } else if (strv_eq_cstr(action, "reject")) {
        if (a != ADMIN_PENDING) return "only a pending node can be rejected; remove it instead";
        *to = ADMIN_REMOVED;
    } else if (strv_eq_cstr(action, "drain")) {
        if (a == ADMIN_PENDING) return "a pending node cannot be drained";
        if (a == ADMIN_REMOVED) return "a removed node cannot be drained";
        *to = ADMIN_DRAINING;
    } else if (strv_eq_cstr(action, "resume")) {
        if (a != ADMIN_DRAINING && a != ADMIN_APPROVED)
            return "only a draining node can be resumed";
        *to = ADMIN_APPROVED;
    } else if (strv_eq_cstr(action, "remove")) {
        if (n->from_config) return "the node is listed in the config file; remove it there";
        *to = ADMIN_REMOVED;
    } else if (strv_eq_cstr(action, "recover")) {
        if (a == ADMIN_REMOVED) return "a removed node cannot be recovered";
    }
    return NULL;
}

static void node_answer(struct gw *g, struct http_request *req, struct node *n, bool persist)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    if (node_json(g, n, &b)) {
        buf_free(&b);
        return gw_reply_error(req, 500, "internal_error", NULL, "node too large to show");
    }
    if (persist) return nodes_persist_reply(g, n, req, 200, &b);
    respond_buf(req, 200, &b);
}

static void labels_answer(struct http_request *req, struct node *n)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    int rc = buf_append_cstr(&b, "{\"labels\":{");
    for (size_t i = 0; i < n->n_labels && !rc; i++) {
        if (i) rc = buf_append_cstr(&b, ",");
        if (!rc) rc = json_append_str(&b, n->labels[i].key, strlen(n->labels[i].key));
        if (!rc) rc = buf_append_cstr(&b, ":");
        if (!rc) rc = json_append_str(&b, n->labels[i].value, strlen(n->labels[i].value));
    }
    if (!rc) rc = buf_append_cstr(&b, "}}");
    respond_buf(req, rc ? 500 : 200, &b);
}

/* /admin/v1/nodes/NAME/labels[/KEY]: GET lists; PUT KEY {"value":"v"} sets; DELETE KEY
 * removes; PATCH {"k":"v","k2":null} sets and removes several at once. */
static void labels_route(struct gw *g, struct http_request *req, struct node *n, struct strv key)
{
    bool is_get = strv_eq_cstr(req->method, "GET");
    if (is_get && key.len == 0) return labels_answer(req, n);
    if (n->from_config)
        return gw_reply_error(req, 409, "illegal_transition", NULL,
                              "labels of a node from the config file are set in the file");
    char k[64];
    if (key.len) {
        if (!gw_label_key_is_valid(key))
            return gw_reply_error(req, 400, "invalid_label", NULL,
                                  "label keys are 1-63 of A-Z a-z 0-9 . _ - /");
        memcpy(k, key.p, key.len);
        k[key.len] = '\0';
    }
    if (strv_eq_cstr(req->method, "DELETE") && key.len) {
        if (!registry_del_label(n, k))
            return gw_reply_error(req, 404, "label_not_found", NULL, "no such label");
        LOGI("node_label_deleted", "node=%s key=%s", n->name, k);
        return node_answer(g, req, n, true);
    }
    bool put = strv_eq_cstr(req->method, "PUT") && key.len;
    bool patch = strv_eq_cstr(req->method, "PATCH") && key.len == 0;
    if (!put && !patch)
        return gw_reply_error(req, 405, "method_not_allowed", NULL,
                              "GET labels, PUT or DELETE labels/KEY, PATCH labels");
    struct gw_error jerr = {0};
    struct json_object *root = json_parse_strict(req->body.p, req->body.len, 4, &jerr);
    if (!root || !json_object_is_type(root, json_type_object)) {
        if (root) json_object_put(root);
        return gw_reply_error(req, 400, "invalid_json", NULL, "the body must be a JSON object");
    }
    if (put) {
        struct strv v;
        if (json_get_str(root, "value", &v) || !gw_label_value_is_valid(v) ||
            json_object_object_length(root) != 1) {
            json_object_put(root);
            return gw_reply_error(req, 400, "invalid_label", NULL,
                                  "expected {\"value\": \"...\"} with at most 255 printable bytes");
        }
        char *val = xstrndup(v.p, v.len);
        registry_set_label(n, k, val);
        LOGI("node_label_set", "node=%s key=%s", n->name, k);
        xfree(val);
        json_object_put(root);
        return node_answer(g, req, n, true);
    }
    /* PATCH: check everything first, then apply, so a bad entry changes nothing */
    json_object_object_foreach(root, pk, pv)
    {
        bool ok = gw_label_key_is_valid(strv_from_cstr(pk)) &&
                  (json_object_is_type(pv, json_type_null) ||
                   (json_object_is_type(pv, json_type_string) &&
                    gw_label_value_is_valid((struct strv){
                        json_object_get_string(pv), (size_t)json_object_get_string_len(pv)})));
        if (!ok) {
            json_object_put(root);
            return gw_reply_error(req, 400, "invalid_label", NULL,
                                  "expected {\"key\": \"value\" or null, ...} with valid keys");
        }
    }
    if (n->n_labels + (size_t)json_object_object_length(root) > 64) {
        json_object_put(root);
        return gw_reply_error(req, 400, "invalid_label", NULL, "at most 64 labels per node");
    }
    json_object_object_foreach(root, ak, av)
    {
        if (json_object_is_type(av, json_type_null))
            (void)registry_del_label(n, ak);
        else
            registry_set_label(n, ak, json_object_get_string(av));
    }
    json_object_put(root);
    LOGI("node_labels_patched", "node=%s", n->name);
    node_answer(g, req, n, true);
}

static void nodes_route(struct gw *g, struct http_request *req, struct strv rest)
{
    bool is_get = strv_eq_cstr(req->method, "GET");
    bool is_post = strv_eq_cstr(req->method, "POST");
    if (rest.len == 0) {
        if (!is_get) return gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET");
        bool all = strv_eq_cstr(req->query, "all=1") || strv_eq_cstr(req->query, "all=true");
        struct buf b;
        buf_init(&b, 256u << 20);
        int rc = buf_append_cstr(&b, "{\"nodes\":[");
        size_t k = 0;
        for (size_t i = 0; i < g->reg.n && !rc; i++) {
            if (g->reg.nodes[i]->admin == ADMIN_REMOVED && !all) continue;
            if (k++) rc = buf_append_cstr(&b, ",");
            if (!rc) rc = node_json(g, g->reg.nodes[i], &b);
        }
        if (!rc) rc = buf_append_cstr(&b, "]}");
        return respond_buf(req, rc ? 500 : 200, &b);
    }
    /* "/name", "/name/action", "/name/labels[/key]" */
    struct strv name = strv_sub(rest, 1, rest.len);
    struct strv action = STRV_NULL, key = STRV_NULL;
    long slash = strv_index(name, '/');
    if (slash >= 0) {
        action = strv_sub(name, (size_t)slash + 1, name.len);
        name = strv_sub(name, 0, (size_t)slash);
        long s2 = strv_index(action, '/');
        if (s2 >= 0) {
            key = strv_sub(action, (size_t)s2 + 1, action.len);
            action = strv_sub(action, 0, (size_t)s2);
            if (!strv_eq_cstr(action, "labels") || key.len == 0)
                return gw_reply_error(req, 404, "unknown_url", NULL, "unknown path");
        }
    }
    struct node *n = registry_find(&g->reg, name);
    if (!n) return gw_reply_error(req, 404, "node_not_found", NULL, "no such node");
    if (action.len == 0) {
        if (is_get) return node_answer(g, req, n, false);
        if (!strv_eq_cstr(req->method, "DELETE"))
            return gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET or DELETE");
        action = STRV_LIT("remove");
    } else if (strv_eq_cstr(action, "labels")) {
        if (n->admin == ADMIN_REMOVED && !is_get)
            return gw_reply_error(req, 409, "illegal_transition", NULL, "the node was removed");
        return labels_route(g, req, n, key);
    } else if (!is_post) {
        return gw_reply_error(req, 405, "method_not_allowed", NULL, "use POST");
    }
    static const char *const actions[] = {"approve", "reject", "drain",
                                          "resume",  "remove", "recover"};
    bool known = false;
    for (size_t i = 0; i < sizeof actions / sizeof actions[0] && !known; i++)
        known = strv_eq_cstr(action, actions[i]);
    if (!known) return gw_reply_error(req, 404, "unknown_action", NULL, "unknown node action");
    enum node_admin to;
    const char *why = transition(n, action, &to);
    if (why) return gw_reply_error(req, 409, "illegal_transition", NULL, why);
    if (strv_eq_cstr(action, "recover")) {
        registry_recover(&g->reg, n, "admin");
        placement_forget_node(&g->cat, n->name); /* its load backoffs end too */
        health_probe_now(g, n);
    } else if (to == ADMIN_REMOVED && n->admin != ADMIN_REMOVED) {
        LOGI(strv_eq_cstr(action, "reject") ? "node_rejected" : "node_removed",
             "node=%s in_flight=%u", n->name, n->inflight);
        registry_tombstone(n);
    } else if (to != n->admin) {
        char cause[48];
        snprintf(cause, sizeof cause, "admin %.*s", (int)(action.len > 20 ? 20 : action.len),
                 action.p);
        registry_set_admin(&g->reg, n, to, cause);
    }
    node_answer(g, req, n, true);
}

/* GET /admin/v1/history?window=hour|day: the per-minute ring (history.h), one point a minute
 * for the hour, one per 10 minutes for the day. */
static void history_answer(struct gw *g, struct http_request *req)
{
    bool day = strv_eq_cstr(req->query, "window=day");
    if (!g->history) return gw_reply_error(req, 503, "not_ready", NULL, "no history yet");
    struct buf b;
    buf_init(&b, 8u << 20);
    if (history_json(g->history, events_wall_ms(g), day ? HISTORY_MINUTES : 60, day ? 10 : 1, &b)) {
        buf_free(&b);
        return gw_reply_error(req, 500, "internal_error", NULL, "history too large to show");
    }
    respond_buf(req, 200, &b);
}

/* The dashboard's reads: the live request log (SSE) and the history. */
static bool dashboard_route(struct gw *g, struct http_request *req)
{
    bool events = strv_eq_cstr(req->path, "/admin/v1/events");
    if (!events && !strv_eq_cstr(req->path, "/admin/v1/history")) return false;
    if (!strv_eq_cstr(req->method, "GET"))
        gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET");
    else if (events)
        events_subscribe(g, req);
    else
        history_answer(g, req);
    return true;
}

/* POST /ui/login: the token comes as a Bearer header, so it is checked exactly as every admin
 * request's; the session gets its id and role (ui.c). */
static void dashboard_login(struct gw *g, struct http_request *req)
{
    struct admin_principal who;
    if (!authenticate(g, req, &who)) return ui_login(g, req, NULL, NULL);
    ui_login(g, req, who.id, role_name(who.role));
}

void admin_handle(struct http_request *req, void *ctx)
{
    struct gw *g = ctx;
    struct strv path = req->path;
    if (strv_eq_cstr(path, "/health")) {
        (void)http_respond_json(req, 200, NULL, 0, "{\"status\":\"ok\"}", 15);
        return;
    }
    if (api_probe_route(g, req)) return;
    if (strv_eq_cstr(path, "/ui/login")) return dashboard_login(g, req);
    if (ui_route(g, req)) return; /* the dashboard: assets, logout, session (ui.c) */
    struct admin_principal who;
    if (!authenticate(g, req, &who)) {
        const char *ui_id = NULL, *ui_role = NULL; /* a dashboard session and its CSRF header */
        enum ui_auth ua = ui_admin_auth(g, req, &ui_id, &ui_role);
        if (ua == UI_AUTH_REFUSED) return;
        if (ua == UI_AUTH_NONE) {
            struct strv tok = http_request_header(req, "Authorization");
            char shown[32];
            keys_mask_token(tok.len > 7 ? strv_sub(tok, 7, tok.len) : STRV_NULL, shown,
                            sizeof shown);
            audit_auth_failed(g, req, "admin", tok.p ? "unknown" : "missing", shown);
            return gw_reply_error(req, 401, "invalid_admin_token", NULL,
                                  "missing or wrong admin token");
        }
        who = (struct admin_principal){ui_id, strcmp(ui_role, "operator") == 0 ? ADMIN_ROLE_OPERATOR
                                                                               : ADMIN_ROLE_VIEWER};
    } else if (!g->cfg.admin_token && !g->cfg.n_admin_tokens && ui_refuse_cross_site(req)) {
        return; /* open (dev) mode: a browser page of another site may not write */
    }
    if (!is_read(req)) {
        if (who.role != ADMIN_ROLE_OPERATOR)
            return gw_reply_error(req, 403, "permission_denied", NULL,
                                  "this admin token has the viewer role: it may only read (GET)");
        /* submitted before the handler's own store writes: durable before any answer */
        audit_record(g, req, who.id, role_name(who.role), NULL);
    }
    if (dashboard_route(g, req)) return;
    if (strv_eq_cstr(path, "/metrics")) {
        struct buf b;
        buf_init(&b, 256u << 20);
        struct http_client_stats st;
        http_client_get_stats(g->client, &st);
        metrics_render(&g->metrics, &g->reg, &g->admission, &st, g->active_requests, gw_now_ms(g),
                       &b);
        if (usage_render_metrics(g, &b) ||
            buf_appendf(&b,
                        "# HELP drover_auth_failures_total Failed authentications (client and "
                        "admin listeners)\n# TYPE drover_auth_failures_total counter\n"
                        "drover_auth_failures_total %llu\n",
                        (unsigned long long)g->audit.auth_failures_total))
            LOGW("metrics_truncated", "reason=\"usage counters past the cap\"");
        struct http_header h = {STRV_LIT("Content-Type"), STRV_LIT("text/plain; version=0.0.4")};
        (void)http_respond(req, 200, &h, 1, b.p, b.len);
        buf_free(&b);
        return;
    }
    struct strv models_prefix = STRV_LIT("/admin/v1/models");
    if (strv_starts_with(path, models_prefix)) {
        struct strv rest = strv_sub(path, models_prefix.len, path.len);
        if (rest.len == 0 || rest.p[0] == '/') {
            if (rest.len == 1) rest.len = 0;
            models_admin(g, req, rest);
            return;
        }
    }
    struct strv keys_prefix = STRV_LIT("/admin/v1/keys");
    if (strv_starts_with(path, keys_prefix)) {
        struct strv rest = strv_sub(path, keys_prefix.len, path.len);
        if (rest.len == 0 || rest.p[0] == '/') {
            if (rest.len == 1) rest.len = 0;
            keys_admin(g, req, rest);
            return;
        }
    }
    if (strv_eq_cstr(path, "/admin/v1/usage")) {
        usage_admin(g, req);
        return;
    }
    if (strv_eq_cstr(path, "/admin/v1/audit")) {
        audit_admin(g, req);
        return;
    }
    struct strv ops_prefix = STRV_LIT("/admin/v1/ops");
    if (strv_starts_with(path, ops_prefix)) {
        struct strv rest = strv_sub(path, ops_prefix.len, path.len);
        if (rest.len == 0 || rest.p[0] == '/') {
            if (rest.len == 1) rest.len = 0;
            ops_admin(g, req, rest);
            return;
        }
    }
    if (strv_eq_cstr(path, "/admin/v1/inventory") && strv_eq_cstr(req->method, "GET")) {
        ops_inventory(g, req, NULL);
        return;
    }
    if (strv_eq_cstr(path, "/admin/v1/inventory/upgrades") && strv_eq_cstr(req->method, "GET")) {
        /* ?target=model:NAME (no percent-decoding needed for our names) */
        char target[300] = "";
        struct strv q = req->query, pre = STRV_LIT("target=");
        if (strv_starts_with(q, pre) && q.len - pre.len < sizeof target) {
            memcpy(target, q.p + pre.len, q.len - pre.len);
            target[q.len - pre.len] = '\0';
        }
        ops_inventory(g, req, target);
        return;
    }
    if (strv_eq_cstr(path, "/admin/v1/testing/clock") && strv_eq_cstr(req->method, "POST")) {
        ops_testing_clock(g, req);
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
    gw_reply_error(req, 404, "unknown_url", NULL, "unknown path");
}
