/* ui — assets are a sorted-by-nothing table (a dozen files, linear lookup); sessions are a
 * fixed table of UI_MAX_SESSIONS slots holding the session id and CSRF token as hex, compared
 * in constant time. Sessions live in memory only: a restart logs every browser out. The loop
 * thread only. */
#include "gw/ui.h"

#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "gw/api.h"
#include "gw/errors_http.h"
#include "gw/gw.h"

#define UI_COOKIE "drover_session"
#define UI_CSRF_HEADER "X-Drover-CSRF"

struct ui_session {
    char id[65]; /* "" : free slot */
    char csrf[65];
    char role[16]; /* "operator", "viewer" */
    char who[64];  /* the id of the admin token that opened it (audit records it) */
    uint64_t expires_ms;
};

struct ui {
    struct ui_session s[UI_MAX_SESSIONS];
    uint64_t fail_minute;
    unsigned fails;
};

void ui_start(struct gw *g)
{
    g->ui = xcalloc(1, sizeof *g->ui);
}

void ui_stop(struct gw *g)
{
    if (!g->ui) return;
    memset(g->ui, 0, sizeof *g->ui); /* no session id outlives the table */
    xfree(g->ui);
    g->ui = NULL;
}

static const struct http_header asset_security[] = {
    {STRV_LIT("Cache-Control"), STRV_LIT("no-cache")},
    {STRV_LIT("X-Content-Type-Options"), STRV_LIT("nosniff")},
    {STRV_LIT("X-Frame-Options"), STRV_LIT("DENY")},
    {STRV_LIT("Referrer-Policy"), STRV_LIT("no-referrer")},
    {STRV_LIT("Content-Security-Policy"),
     STRV_LIT("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")},
};
enum { N_SECURITY = sizeof asset_security / sizeof asset_security[0] };

static void serve_asset(struct http_request *req, struct strv name)
{
    if (name.len == 0) name = STRV_LIT("index.html");
    for (size_t i = 0; i < ui_n_assets; i++) {
        if (!strv_eq_cstr(name, ui_assets[i].path)) continue;
        struct http_header h[N_SECURITY + 1];
        memcpy(h, asset_security, sizeof asset_security);
        h[N_SECURITY] =
            (struct http_header){STRV_LIT("Content-Type"), strv_from_cstr(ui_assets[i].type)};
        bool head = strv_eq_cstr(req->method, "HEAD");
        (void)http_respond(req, 200, h, N_SECURITY + 1, ui_assets[i].data,
                           head ? 0 : ui_assets[i].len);
        return;
    }
    gw_reply_error(req, 404, "unknown_url", NULL, "no such dashboard file");
}

/* The value of the session cookie, or an empty view. */
static struct strv cookie_value(const struct http_request *req)
{
    const struct strv want = STRV_LIT(UI_COOKIE "=");
    for (size_t i = 0; i < req->n_headers; i++) {
        if (!strv_eq_ci(req->headers[i].name, STRV_LIT("Cookie"))) continue;
        struct strv c = req->headers[i].value;
        size_t p = 0;
        while (p < c.len) {
            while (p < c.len && (c.p[p] == ' ' || c.p[p] == ';')) p++;
            size_t e = p;
            while (e < c.len && c.p[e] != ';') e++;
            struct strv pair = strv_sub(c, p, e);
            if (strv_starts_with(pair, want)) return strv_sub(pair, want.len, pair.len);
            p = e;
        }
    }
    return STRV_NULL;
}

static bool hex64_equal(struct strv a, const char *b)
{
    char tmp[65];
    if (a.len != 64 || strlen(b) != 64) return false;
    memcpy(tmp, a.p, 64);
    tmp[64] = '\0';
    return secret_equal(tmp, b);
}

/* The live session the request's cookie names, or NULL (expired ones are freed here). */
static struct ui_session *find_session(struct gw *g, const struct http_request *req)
{
    struct strv v = cookie_value(req);
    if (!g->ui || v.len != 64) return NULL;
    uint64_t now = gw_now_ms(g);
    for (size_t i = 0; i < UI_MAX_SESSIONS; i++) {
        struct ui_session *s = &g->ui->s[i];
        if (!s->id[0]) continue;
        if (s->expires_ms <= now) {
            memset(s, 0, sizeof *s);
            continue;
        }
        if (hex64_equal(v, s->id)) return s;
    }
    return NULL;
}

static bool csrf_ok(const struct ui_session *s, const struct http_request *req)
{
    return hex64_equal(http_request_header(req, UI_CSRF_HEADER), s->csrf);
}

static bool is_read(const struct http_request *req)
{
    return strv_eq_cstr(req->method, "GET") || strv_eq_cstr(req->method, "HEAD");
}

bool ui_refuse_cross_site(struct http_request *req)
{
    if (is_read(req)) return false;
    struct strv site = http_request_header(req, "Sec-Fetch-Site");
    bool cross = site.p && !strv_eq_cstr(site, "same-origin") && !strv_eq_cstr(site, "none");
    struct strv origin = http_request_header(req, "Origin"),
                host = http_request_header(req, "Host");
    if (!cross && origin.p && origin.len) {
        /* Origin is scheme://host[:port]; Host is host[:port] */
        long colon = strv_index(origin, ':');
        struct strv o = colon >= 0 && (size_t)colon + 3 <= origin.len
                            ? strv_sub(origin, (size_t)colon + 3, origin.len)
                            : origin;
        cross = strv_eq_cstr(origin, "null") || !host.p || !strv_eq_ci(o, host);
    }
    if (cross) {
        LOGW("admin_cross_site_refused", "peer=%s id=%llu", req->peer, (unsigned long long)req->id);
        gw_reply_error(req, 403, "cross_site_refused", NULL,
                       "admin writes from another site's page are refused");
    }
    return cross;
}

enum ui_auth ui_admin_auth(struct gw *g, struct http_request *req, const char **who,
                           const char **role)
{
    if (!cookie_value(req).len) return UI_AUTH_NONE;
    struct ui_session *s = find_session(g, req);
    if (!s) {
        gw_reply_error(req, 401, "session_expired", NULL, "the dashboard session ended; log in");
        return UI_AUTH_REFUSED;
    }
    if (!csrf_ok(s, req)) {
        gw_reply_error(req, 401, "csrf_missing", NULL,
                       "a session cookie counts only with its " UI_CSRF_HEADER " header");
        return UI_AUTH_REFUSED;
    }
    *who = s->who;
    *role = s->role;
    return UI_AUTH_OK;
}

static bool auth_required(const struct gw *g)
{
    return g->cfg.admin_token || g->cfg.n_admin_tokens;
}

static void session_json(struct gw *g, struct http_request *req, int status,
                         const struct ui_session *s, const struct http_header *extra)
{
    struct buf b;
    buf_init(&b, 4096);
    bool auth = auth_required(g);
    int rc;
    if (!auth)
        rc = buf_append_cstr(&b, "{\"auth_required\":false,\"authenticated\":true,"
                                 "\"role\":\"operator\",\"csrf\":null}");
    else if (!s)
        rc = buf_append_cstr(&b, "{\"auth_required\":true,\"authenticated\":false}");
    else
        rc = buf_appendf(&b,
                         "{\"auth_required\":true,\"authenticated\":true,\"role\":\"%s\","
                         "\"csrf\":\"%s\",\"expires_in_s\":%llu}",
                         s->role, s->csrf,
                         (unsigned long long)((s->expires_ms - gw_now_ms(g)) / 1000));
    struct http_header h[2] = {{STRV_LIT("Cache-Control"), STRV_LIT("no-store")}};
    size_t nh = 1;
    if (extra) h[nh++] = *extra;
    if (rc) status = 500, buf_reset(&b);
    (void)http_respond_json(req, status, h, nh, b.p ? b.p : "{}", b.p ? b.len : 2);
    buf_free(&b);
}

void ui_login(struct gw *g, struct http_request *req, const char *who, const char *role)
{
    if (!strv_eq_cstr(req->method, "POST"))
        return gw_reply_error(req, 405, "method_not_allowed", NULL, "use POST");
    if (ui_refuse_cross_site(req)) return;
    if (!auth_required(g)) return session_json(g, req, 200, NULL, NULL);
    if (!g->ui) return gw_reply_error(req, 503, "shutting_down", NULL, "the gateway is stopping");
    uint64_t minute = gw_now_ms(g) / 60000;
    if (g->ui->fail_minute != minute) g->ui->fail_minute = minute, g->ui->fails = 0;
    if (g->ui->fails >= UI_LOGIN_FAILURES_PER_MIN)
        return gw_reply_error(req, 429, "too_many_logins", NULL,
                              "too many failed logins; wait a minute");
    if (!who || !role) {
        g->ui->fails++;
        LOGW("ui_login_refused", "peer=%s id=%llu", req->peer, (unsigned long long)req->id);
        return gw_reply_error(req, 401, "invalid_admin_token", NULL,
                              "send an admin token as Authorization: Bearer");
    }
    /* the body may ask for less than the token gives ({"role":"viewer"}), never more */
    char role_s[16];
    snprintf(role_s, sizeof role_s, "%s", role);
    if (req->body.len) {
        struct strv ct = http_request_header(req, "Content-Type"), want = STRV_NULL;
        if (!ct.p || !strv_starts_with(ct, STRV_LIT("application/json")))
            return gw_reply_error(req, 415, "invalid_content_type", NULL,
                                  "the body is application/json: {\"role\": \"viewer\"}");
        struct json_object *root = json_parse_strict(req->body.p, req->body.len, 4, NULL);
        bool ok = root && json_object_is_type(root, json_type_object);
        if (ok && json_object_object_get_ex(root, "role", NULL))
            ok = !json_get_str(root, "role", &want) &&
                 (strv_eq_cstr(want, "viewer") || strv_eq_cstr(want, "operator"));
        if (ok && want.len) snprintf(role_s, sizeof role_s, "%.*s", (int)want.len, want.p);
        if (root) json_object_put(root);
        if (!ok)
            return gw_reply_error(req, 400, "invalid_json", "role",
                                  "expected {\"role\": \"viewer\" or \"operator\"}");
        if (!strcmp(role_s, "operator") && strcmp(role, "operator") != 0)
            return gw_reply_error(req, 403, "permission_denied", "role",
                                  "this admin token has the viewer role");
    }
    struct ui_session *s = NULL;
    uint64_t now = gw_now_ms(g);
    for (size_t i = 0; i < UI_MAX_SESSIONS && !s; i++)
        if (!g->ui->s[i].id[0] || g->ui->s[i].expires_ms <= now) s = &g->ui->s[i];
    for (size_t i = 0; i < UI_MAX_SESSIONS; i++) /* full: the one nearest its end goes */
        if (!s || (s->id[0] && g->ui->s[i].expires_ms < s->expires_ms)) s = &g->ui->s[i];
    memset(s, 0, sizeof *s);
    if (random_secret_hex(s->id) || random_secret_hex(s->csrf)) {
        memset(s, 0, sizeof *s);
        return gw_reply_error(req, 500, "internal_error", NULL, "no randomness for a session");
    }
    snprintf(s->role, sizeof s->role, "%s", role_s);
    snprintf(s->who, sizeof s->who, "%s", who);
    s->expires_ms = now + UI_SESSION_TTL_MS;
    char cookie[256];
    snprintf(cookie, sizeof cookie,
             UI_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%u%s", s->id,
             (unsigned)(UI_SESSION_TTL_MS / 1000), req->is_tls ? "; Secure" : "");
    struct http_header set = {STRV_LIT("Set-Cookie"), strv_from_cstr(cookie)};
    LOGI("ui_login", "peer=%s token=%s role=%s id=%llu", req->peer, s->who, s->role,
         (unsigned long long)req->id);
    session_json(g, req, 200, s, &set);
}

static void logout(struct gw *g, struct http_request *req)
{
    struct http_header clear = {STRV_LIT("Set-Cookie"),
                                STRV_LIT(UI_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; "
                                                   "Max-Age=0")};
    struct ui_session *s = find_session(g, req);
    if (s && !csrf_ok(s, req))
        return gw_reply_error(req, 401, "csrf_missing", NULL, "logout needs the CSRF header");
    if (s) {
        LOGI("ui_logout", "peer=%s role=%s", req->peer, s->role);
        memset(s, 0, sizeof *s);
    }
    (void)http_respond_json(req, 200, &clear, 1, "{\"logged_out\":true}", 19);
}

bool ui_route(struct gw *g, struct http_request *req)
{
    struct strv path = req->path;
    if (strv_eq_cstr(path, "/ui") || strv_eq_cstr(path, "/")) {
        struct http_header h = {STRV_LIT("Location"), STRV_LIT("/ui/")};
        (void)http_respond(req, 302, &h, 1, NULL, 0);
        return true;
    }
    const struct strv pre = STRV_LIT("/ui/");
    if (!strv_starts_with(path, pre)) return false;
    struct strv name = strv_sub(path, pre.len, path.len);
    bool post = strv_eq_cstr(req->method, "POST");
    if (strv_eq_cstr(name, "login")) return false; /* admin.c: it checks the token (ui_login) */
    if (strv_eq_cstr(name, "logout")) {
        if (!post)
            gw_reply_error(req, 405, "method_not_allowed", NULL, "use POST");
        else if (!ui_refuse_cross_site(req))
            logout(g, req);
        return true;
    }
    if (strv_eq_cstr(name, "session")) {
        if (!is_read(req))
            gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET");
        else
            session_json(g, req, 200, find_session(g, req), NULL);
        return true;
    }
    if (!is_read(req)) {
        gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET");
        return true;
    }
    serve_asset(req, name);
    return true;
}
