/* admin_client — one blocking request to the gateway's admin API for the CLI (`drover nodes`,
 * later `models` and `ops`): a private libuv loop runs the project's HTTP client until the
 * answer is complete or the timeout passes. Single-threaded; the CLI makes a handful of calls. */
#include "cli/admin_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"
#include "net/http_client.h"

struct call_state {
    int status;
    int err;
    bool done;
    struct buf *body;
};

static void on_head(struct http_call *c, const struct http_response_head *h, void *ctx)
{
    (void)c;
    ((struct call_state *)ctx)->status = h->status;
}

static void on_data(struct http_call *c, const char *p, size_t len, void *ctx)
{
    struct call_state *st = ctx;
    if (buf_append(st->body, p, len)) {
        st->err = GW_E_LIMIT;
        http_call_cancel(c);
        st->done = true;
    }
}

static void on_done(struct http_call *c, const struct http_call_result *res, void *ctx)
{
    (void)c;
    struct call_state *st = ctx;
    if (!st->err) st->err = res->err;
    st->done = true;
}

int admin_url_parse(const char *url, char *host, size_t host_cap, int *port)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0) p += 7;
    size_t n = strlen(p);
    while (n && p[n - 1] == '/') n--;
    const char *colon = NULL;
    for (size_t i = 0; i < n; i++)
        if (p[i] == ':') colon = p + i;
    if (!colon || colon == p || (size_t)(colon - p) >= host_cap) return GW_E_INVALID;
    char *end = NULL;
    long v = strtol(colon + 1, &end, 10);
    if (end != p + n || v <= 0 || v > 65535) return GW_E_INVALID;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
    *port = (int)v;
    return 0;
}

int admin_request(const struct admin_target *t, const char *method, const char *path,
                  const char *body, int *status, struct buf *out, struct gw_error *err)
{
    char host[128];
    int port;
    if (admin_url_parse(t->url, host, sizeof host, &port))
        return gw_error_set(err, GW_E_INVALID, "admin URL '%s' must look like http://HOST:PORT",
                            t->url);
    uv_loop_t loop;
    if (uv_loop_init(&loop)) return gw_error_set(err, GW_E_STATE, "cannot start a loop");
    struct http_client *cl = NULL;
    struct http_client_config cc;
    http_client_config_defaults(&cc);
    if (http_client_new(&loop, &cc, &cl)) {
        uv_loop_close(&loop);
        return gw_error_set(err, GW_E_STATE, "cannot create an HTTP client");
    }
    char auth[600];
    struct http_header hdrs[2];
    size_t nh = 0;
    if (t->token && *t->token) {
        snprintf(auth, sizeof auth, "Bearer %s", t->token);
        hdrs[nh++] = (struct http_header){STRV_LIT("Authorization"), strv_from_cstr(auth)};
    }
    if (body)
        hdrs[nh++] = (struct http_header){STRV_LIT("Content-Type"), STRV_LIT("application/json")};
    struct http_client_request rq = {
        .host = host,
        .port = port,
        .method = strv_from_cstr(method),
        .target = strv_from_cstr(path),
        .headers = hdrs,
        .n_headers = nh,
        .body = body ? strv_from_cstr(body) : STRV_NULL,
        .connect_timeout_ms = 3000,
        .total_timeout_ms = t->timeout_ms ? t->timeout_ms : 30000,
        .no_reuse = true,
    };
    struct call_state st = {.body = out};
    static const struct http_client_callbacks cbs = {on_head, on_data, on_done};
    struct http_call *call = NULL;
    int rc = http_client_request(cl, &rq, &cbs, &st, &call);
    if (rc) {
        st.err = rc;
        st.done = true;
    }
    while (!st.done) uv_run(&loop, UV_RUN_ONCE);
    http_client_free(cl);
    uv_run(&loop, UV_RUN_DEFAULT); /* the client's close callbacks */
    uv_loop_close(&loop);
    if (st.err) return gw_error_set(err, st.err, "%s %s: %s", method, t->url, gw_strerror(st.err));
    *status = st.status;
    return 0;
}

const char *admin_json_str(struct json_object *o, const char *key, const char *dflt)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !v || json_object_is_type(v, json_type_null))
        return dflt;
    return json_object_get_string(v);
}

int admin_print_refusal(const char *prog, int status, const struct buf *b)
{
    struct json_object *root = json_parse_strict(b->p ? b->p : "", b->len, 16, NULL);
    struct json_object *e = NULL;
    if (root && json_object_object_get_ex(root, "error", &e) && e)
        fprintf(stderr, "%s: %d %s: %s\n", prog, status, admin_json_str(e, "code", "error"),
                admin_json_str(e, "message", ""));
    else
        fprintf(stderr, "%s: %d %.*s\n", prog, status, (int)(b->len > 200 ? 200 : b->len),
                b->p ? b->p : "");
    if (root) json_object_put(root);
    return 1;
}
