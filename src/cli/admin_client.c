/* admin_client — one blocking request to the gateway's admin API for the CLI (`drover nodes`,
 * `models` and `ops`): a private libuv loop runs the project's HTTP client until the answer is
 * complete or the timeout passes. It also words every failure the same way for all commands:
 * one line on stderr that says what went wrong and what to do about it.
 * Single-threaded; the CLI makes a handful of calls. */
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

void admin_target_init(struct admin_target *t, uint64_t timeout_ms)
{
    const char *url = getenv("DROVER_ADMIN_URL");
    t->url = url && *url ? url : "http://127.0.0.1:8081";
    t->token = getenv("DROVER_ADMIN_TOKEN");
    t->timeout_ms = timeout_ms;
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

int admin_print_refusal(const char *prog, const struct admin_target *t, int status,
                        const struct buf *b)
{
    struct json_object *root = json_parse_strict(b->p ? b->p : "", b->len, 16, NULL);
    struct json_object *e = NULL;
    const char *code = "error";
    if (root && json_object_object_get_ex(root, "error", &e) && e &&
        json_object_is_type(e, json_type_object)) {
        code = admin_json_str(e, "code", "error");
        const char *param = admin_json_str(e, "param", NULL);
        fprintf(stderr, "%s: %d %s: %s%s%s%s\n", prog, status, code,
                admin_json_str(e, "message", ""), param ? " (field '" : "", param ? param : "",
                param ? "')" : "");
    } else {
        fprintf(stderr, "%s: %d %.*s\n", prog, status, (int)(b->len > 200 ? 200 : b->len),
                b->p ? b->p : "");
    }
    if (status == 401)
        fprintf(stderr, "%s: the admin token was refused: set --token or DROVER_ADMIN_TOKEN\n",
                prog);
    else if (status == 404 && !strcmp(code, "op_not_found"))
        fprintf(stderr, "%s: see 'drover ops dead' for the dead letters\n", prog);
    else if (status == 404 && (!strcmp(code, "node_not_found") || !strcmp(code, "model_not_found")))
        fprintf(stderr, "%s: see '%s ls'%s\n", prog, prog,
                !strcmp(code, "node_not_found") ? " (--all: removed ones too)" : "");
    else if (status == 404 && !strcmp(code, "unknown_url"))
        fprintf(stderr,
                "%s: the gateway at %s does not know this call (is it an older drover, "
                "or is --admin the client listener?)\n",
                prog, t->url);
    if (root) json_object_put(root);
    return 1;
}

int admin_call(const char *prog, const struct admin_target *t, const char *method, const char *path,
               const char *body, int *status, struct buf *out, struct json_object **root)
{
    struct gw_error err = {0};
    *status = 0;
    if (root) *root = NULL;
    char host[128];
    int port;
    if (admin_url_parse(t->url, host, sizeof host, &port)) {
        fprintf(stderr,
                "%s: the admin URL '%s' must look like http://HOST:PORT (set --admin or "
                "DROVER_ADMIN_URL)\n",
                prog, t->url);
        return 2;
    }
    int rc = admin_request(t, method, path, body, status, out, &err);
    if (rc == GW_E_LIMIT) {
        fprintf(stderr, "%s: the answer of the admin API at %s is too large\n", prog, t->url);
        return 1;
    }
    if (rc) {
        fprintf(stderr,
                "%s: cannot reach the admin API at %s: %s (is `drover serve` running? set "
                "--admin or DROVER_ADMIN_URL)\n",
                prog, t->url, rc > -4096 ? uv_strerror(rc) : gw_strerror(rc));
        return 1;
    }
    if (*status < 200 || *status > 299) return admin_print_refusal(prog, t, *status, out);
    if (root) {
        *root = json_parse_strict(out->p ? out->p : "", out->len, 64, NULL);
        if (!*root) {
            fprintf(stderr, "%s: the answer of %s is not JSON (is --admin the admin listener?)\n",
                    prog, t->url);
            return 1;
        }
    }
    return 0;
}

int admin_unknown_command(const char *prog, const char *cmd, const char *list)
{
    fprintf(stderr, "%s: unknown command '%s' (commands: %s; see '%s --help')\n", prog, cmd, list,
            prog);
    return 2;
}
