/* audit — the admin audit log (store's audit_log) and the rate-limited log of failed
 * authentications (audit.h). The loop thread only. */
#include "gw/audit.h"

#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "store/store_keys.h"

bool log_limit_allow(struct log_limit *l, uint64_t now_ms, uint64_t *told)
{
    *told = 0;
    if (now_ms >= l->window_start_ms + 60000 || now_ms < l->window_start_ms) {
        *told = l->suppressed;
        l->suppressed = 0;
        l->in_window = 0;
        l->window_start_ms = now_ms;
    }
    if (l->in_window < l->per_min) {
        l->in_window++;
        return true;
    }
    l->suppressed++;
    return false;
}

void audit_auth_failed(struct gw *g, const struct http_request *req, const char *listener,
                       const char *why, const char *shown_token)
{
    struct audit *a = &g->audit;
    a->auth_failures_total++;
    a->auth_fail.per_min = g->cfg.auth_log_per_min;
    uint64_t told = 0;
    bool ok = log_limit_allow(&a->auth_fail, clock_now_ms(), &told);
    if (told) LOGW("auth_failures_suppressed", "count=%llu window=60s", (unsigned long long)told);
    if (!ok) return;
    char q[80];
    LOGW("auth_failed", "id=%llu listener=%s peer=%s reason=%s token=%s path=%s",
         (unsigned long long)req->id, listener, req->peer, why, shown_token,
         log_quote(q, sizeof q, req->path.p ? req->path.p : "", req->path.len));
}

/* Member names whose values never reach the audit log (a body may carry an engine's or a
 * registry's credential, e.g. an install's parameters). */
static bool is_secret_name(const char *k)
{
    static const char *const words[] = {"token",         "secret",     "password",
                                        "passwd",        "api_key",    "apikey",
                                        "authorization", "credential", "private"};
    char low[64];
    size_t n = 0;
    for (; k[n] && n + 1 < sizeof low; n++)
        low[n] = (char)(k[n] >= 'A' && k[n] <= 'Z' ? k[n] + 32 : k[n]);
    low[n] = '\0';
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(low, words[i])) return true;
    return false;
}

static void redact(struct json_object *o)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            redact(json_object_array_get_idx(o, i));
        return;
    }
    if (!json_object_is_type(o, json_type_object)) return;
    json_object_object_foreach(o, k, v)
    {
        if (is_secret_name(k) && !json_object_is_type(v, json_type_null))
            json_object_object_add(o, k, json_object_new_string("***"));
        else
            redact(v);
    }
}

/* The body as a short summary: JSON with the values of secret-looking members replaced by
 * "***", else the printable bytes; cut at 240 bytes. */
static void summarize(const struct http_request *req, char *out, size_t cap)
{
    struct json_object *root =
        req->body.len ? json_parse_strict(req->body.p, req->body.len, 16, NULL) : NULL;
    const char *src = req->body.p;
    size_t len = req->body.len;
    if (root) {
        redact(root);
        src = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
        len = strlen(src);
    } else if (len) {
        src = "(not JSON)";
        len = strlen(src); /* a body we cannot read for secrets is not copied */
    }
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < cap && o < 240; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c != 0x7f) out[o++] = (char)c;
    }
    if (len > o && o + 4 < cap) memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
    if (root) json_object_put(root);
}

/* An audit row that did not reach the store is said in the log, never dropped in silence (the
 * admin_write line above it still names the write). */
static void on_audit_stored(void *ctx, int rc, const char *msg)
{
    (void)ctx;
    if (rc) LOGW("audit_write_failed", "err=\"%s\"", msg ? msg : "?");
}

void audit_record(struct gw *g, const struct http_request *req, const char *actor, const char *role,
                  const char *summary)
{
    char method[16], path[512], sum[256];
    snprintf(method, sizeof method, "%.*s", (int)(req->method.len < 15 ? req->method.len : 15),
             req->method.p);
    snprintf(path, sizeof path, "%.*s", (int)(req->target.len < 511 ? req->target.len : 511),
             req->target.p);
    if (summary)
        snprintf(sum, sizeof sum, "%s", summary);
    else
        summarize(req, sum, sizeof sum);
    char q[600];
    LOGI("admin_write", "id=%llu actor=%s role=%s peer=%s method=%s path=%s",
         (unsigned long long)req->id, actor, role, req->peer, method,
         log_quote(q, sizeof q, path, strlen(path)));
    if (!g->store) return;
    struct store_audit_row r = {.actor = (char *)actor,
                                .role = (char *)role,
                                .peer = (char *)req->peer,
                                .method = method,
                                .path = path,
                                .summary = sum};
    store_add_audit(g->store, &r, on_audit_stored, NULL);
}

struct audit_answer {
    struct http_request *req;
    struct store_audit_result res;
};

static void answer_abort(struct http_request *req, void *ctx)
{
    (void)req;
    ((struct audit_answer *)ctx)->req = NULL;
}

static int str_member(struct buf *b, const char *k, const char *v)
{
    int rc = buf_appendf(b, ",\"%s\":", k);
    if (!rc) rc = json_append_str(b, v ? v : "", v ? strlen(v) : 0);
    return rc;
}

static void audit_done(void *ctx, int rc, const char *msg)
{
    struct audit_answer *a = ctx;
    if (a->req) {
        http_request_on_abort(a->req, NULL, NULL);
        if (rc) {
            gw_reply_error(a->req, 503, "store_unavailable", NULL,
                           msg ? msg : "the audit log could not be read");
        } else {
            struct buf b;
            buf_init(&b, 64u << 20);
            int e = buf_append_cstr(&b, "{\"entries\":[");
            for (size_t i = 0; i < a->res.n && !e; i++) {
                const struct store_audit_row *r = &a->res.rows[i];
                if (i) e = buf_append_cstr(&b, ",");
                if (!e)
                    e = buf_appendf(&b, "{\"id\":%lld,\"at_ms\":%lld", (long long)r->id,
                                    (long long)r->at_ms);
                if (!e) e = str_member(&b, "actor", r->actor);
                if (!e) e = str_member(&b, "role", r->role);
                if (!e) e = str_member(&b, "peer", r->peer);
                if (!e) e = str_member(&b, "method", r->method);
                if (!e) e = str_member(&b, "path", r->path);
                if (!e) e = str_member(&b, "summary", r->summary);
                if (!e) e = buf_append_cstr(&b, "}");
            }
            if (!e) e = buf_append_cstr(&b, "]}");
            (void)http_respond_json(a->req, e ? 500 : 200, NULL, 0, b.p, b.len);
            buf_free(&b);
        }
    }
    store_audit_rows_free(a->res.rows, a->res.n);
    xfree(a);
}

static uint64_t query_u64(struct strv q, const char *name, uint64_t dflt)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < q.len;) {
        size_t j = i;
        while (j < q.len && q.p[j] != '&') j++;
        struct strv part = strv_sub(q, i, j - i);
        uint64_t v;
        if (part.len > nl && part.p[nl] == '=' && !memcmp(part.p, name, nl) &&
            strv_to_u64(strv_sub(part, nl + 1, part.len), &v) == 0)
            return v;
        i = j + 1;
    }
    return dflt;
}

void audit_admin(struct gw *g, struct http_request *req)
{
    if (!strv_eq_cstr(req->method, "GET"))
        return gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET");
    if (!g->store)
        return gw_reply_error(req, 503, "store_unavailable", NULL, "no store: no audit log");
    uint64_t limit = query_u64(req->query, "limit", 100);
    if (limit == 0 || limit > 10000) limit = 100;
    struct audit_answer *a = xcalloc(1, sizeof *a);
    a->req = req;
    http_request_on_abort(req, answer_abort, a);
    store_query_audit(g->store, (int64_t)query_u64(req->query, "before", 0), (size_t)limit, &a->res,
                      audit_done, a);
}
