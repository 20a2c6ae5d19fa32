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

/* The body as a short printable summary (control bytes dropped, cut at 240 bytes). */
static void summarize(const struct http_request *req, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < req->body.len && o + 4 < cap && o < 240; i++) {
        unsigned char c = (unsigned char)req->body.p[i];
        if (c >= 0x20 && c != 0x7f) out[o++] = (char)c;
    }
    if (req->body.len > o && o + 4 < cap) memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
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
    store_add_audit(g->store, &r, NULL, NULL);
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
