/* agent_proxy — inference passed to the engine byte for byte: the gateway's method, target,
 * headers (minus hop-by-hop ones and its Authorization, which is the gateway key) and body
 * go out; the engine's status, headers and body come back as they are, streamed as they
 * arrive. Backpressure: reading the engine stops while the gateway's write queue is above
 * its high-water mark. A gateway that leaves closes the engine connection at once (the GPU
 * stops). The agent speaks for itself only when the engine gave no answer: 502
 * engine_unreachable, 504 engine_timeout or 502 engine_malformed, with X-Drover-Engine. A
 * break after the head cuts the body (no last chunk), so the gateway sees it cut short.
 * Invariant: a proxy is freed exactly once — by on_done when the response ended, or by the
 * abort callback when the gateway left. The loop thread only. */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"

struct aproxy {
    struct agent *a;
    struct http_request *req;    /* NULL once the gateway left */
    struct http_call *call;      /* NULL once the engine call ended */
    struct http_header *up_hdrs; /* values borrowed from the request (and auth) */
    size_t n_up_hdrs;
    char auth[320];
    char model[NODE_API_MAX_ID];
    uint64_t start_ms;
    int status;
    uint64_t bytes;
    bool head_sent;
    bool paused;
    bool retried; /* the stale-connection retry was used */
};

static const char *const hop_by_hop[] = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "expect",
    "proxy-authorization",
    "authorization",
};

static bool is_hop(struct strv name)
{
    for (size_t i = 0; i < sizeof hop_by_hop / sizeof hop_by_hop[0]; i++)
        if (strv_eq_ci(name, strv_from_cstr(hop_by_hop[i]))) return true;
    return false;
}

static void proxy_free(struct aproxy *p)
{
    struct agent *a = p->a;
    if (a->in_flight > 0) a->in_flight--;
    if (a->pending > 0) a->pending--;
    agent_count_model(a, p->model, -1);
    xfree(p->up_hdrs);
    xfree(p);
}

static void log_done(struct aproxy *p, const char *outcome, int err)
{
    LOGI("proxy", "id=%llu path=%.*s model=%s status=%d bytes=%llu outcome=%s err=%s dur_ms=%llu",
         (unsigned long long)(p->req ? p->req->id : 0), STRV_FMT(p->req ? p->req->path : STRV_NULL),
         p->model[0] ? p->model : "-", p->status, (unsigned long long)p->bytes, outcome,
         err ? gw_strerror(err) : "-", (unsigned long long)(uv_now(p->a->loop) - p->start_ms));
}

static void on_abort(struct http_request *req, void *ctx)
{
    struct aproxy *p = ctx;
    (void)req;
    LOGI("client_gone", "id=%llu model=%s bytes=%llu", (unsigned long long)req->id,
         p->model[0] ? p->model : "-", (unsigned long long)p->bytes);
    p->req = NULL;
    if (p->call) http_call_cancel(p->call); /* no callback fires afterwards */
    p->call = NULL;
    proxy_free(p);
}

static void on_drain(struct http_request *req, void *ctx)
{
    struct aproxy *p = ctx;
    (void)req;
    if (p->paused && p->call) {
        p->paused = false;
        http_call_resume(p->call);
    }
}

static void on_head(struct http_call *call, const struct http_response_head *head, void *ctx)
{
    struct aproxy *p = ctx;
    (void)call;
    p->status = head->status;
    enum { MAX_HDRS = 64 };
    struct http_header h[MAX_HDRS];
    size_t n = 0;
    for (size_t i = 0; i < head->n_headers && n < MAX_HDRS; i++)
        if (!is_hop(head->headers[i].name) && strv_is_token(head->headers[i].name))
            h[n++] = head->headers[i];
    int64_t len = head->chunked ? -1 : head->content_length;
    if (http_stream_start(p->req, head->status, h, n, len) == 0) p->head_sent = true;
    /* else the gateway is gone (its abort callback follows) or the head was refused: in both
     * cases on_done ends the attempt */
}

static void on_data(struct http_call *call, const char *data, size_t len, void *ctx)
{
    struct aproxy *p = ctx;
    p->bytes += len;
    if (!p->head_sent) return;
    if (http_stream_write(p->req, data, len)) return;
    if (http_request_write_blocked(p->req) && !p->paused) {
        p->paused = true;
        http_call_pause(call);
    }
}

static bool is_timeout(int err)
{
    return err == GW_E_CONNECT_TIMEOUT || err == GW_E_FIRST_BYTE_TIMEOUT ||
           err == GW_E_IDLE_TIMEOUT || err == GW_E_TOTAL_TIMEOUT;
}

static void start_call(struct aproxy *p, bool fresh);

static void on_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct aproxy *p = ctx;
    (void)call;
    p->call = NULL;
    if (!res->got_head && res->reused_conn && !p->retried && !is_timeout(res->err)) {
        /* The engine closed a pooled connection while it was idle: nothing reached it, so
         * the same request goes again, once, on a fresh connection. */
        p->retried = true;
        LOGD("engine_stale_conn", "id=%llu err=%s", (unsigned long long)p->req->id,
             gw_strerror(res->err));
        start_call(p, true);
        return;
    }
    /* After the ending call the request is gone; if the gateway already left, its abort
     * callback must not find p, which is freed here in every case. */
    struct http_request *req = p->req;
    int rc = 0;
    if (p->head_sent) {
        if (res->err == 0) {
            log_done(p, "complete", 0);
            http_request_on_abort(req, NULL, NULL);
            http_request_on_drain(req, NULL, NULL);
            rc = http_stream_end(req);
        } else {
            log_done(p, "engine_cut", res->err);
            http_request_on_abort(req, NULL, NULL);
            http_request_on_drain(req, NULL, NULL);
            http_stream_abort(req);
        }
    } else if (res->got_head) {
        /* a head we could not relay (a header the server refused): say so plainly */
        log_done(p, "bad_head", res->err);
        http_request_on_abort(req, NULL, NULL);
        http_request_on_drain(req, NULL, NULL);
        rc = agent_answer_error(req, 502, "engine_malformed", NODE_API_CODE_ENGINE_MALFORMED,
                                "the engine's response could not be relayed",
                                NODE_API_HEADER_ENGINE, NODE_API_ENGINE_MALFORMED);
    } else {
        char msg[800];
        const char *code, *hv, *type;
        int status = 502;
        if (is_timeout(res->err) && res->err != GW_E_CONNECT_TIMEOUT) {
            status = 504;
            code = type = NODE_API_CODE_ENGINE_TIMEOUT;
            hv = NODE_API_ENGINE_TIMEOUT;
            snprintf(msg, sizeof msg, "engine timed out: %s", gw_strerror(res->err));
        } else if (res->err == GW_E_MALFORMED) {
            code = type = NODE_API_CODE_ENGINE_MALFORMED;
            hv = NODE_API_ENGINE_MALFORMED;
            snprintf(msg, sizeof msg, "engine sent a malformed response");
        } else {
            code = type = NODE_API_CODE_ENGINE_UNREACHABLE;
            hv = NODE_API_ENGINE_UNREACHABLE;
            snprintf(msg, sizeof msg, "engine unreachable: %s (%s)", gw_strerror(res->err),
                     p->a->engine.url);
        }
        LOGW("engine_error", "id=%llu status=%d code=%s err=%s", (unsigned long long)p->req->id,
             status, code, gw_strerror(res->err));
        http_request_on_abort(req, NULL, NULL);
        http_request_on_drain(req, NULL, NULL);
        rc = agent_answer_error(req, status, type, code, msg, NODE_API_HEADER_ENGINE, hv);
    }
    (void)rc; /* GW_E_CLOSED: the gateway left; the server releases the request itself */
    p->req = NULL;
    proxy_free(p);
}

/* The model named in a JSON body, for per-model accounting; empty when there is none. */
static void body_model(struct strv body, char *out, size_t cap)
{
    out[0] = '\0';
    if (!body.len || body.p[0] != '{') return;
    struct json_object *root = json_parse_strict(body.p, body.len, 64, NULL);
    if (!root) return;
    struct strv m;
    if (json_object_is_type(root, json_type_object) && json_get_str(root, "model", &m) == 0 &&
        m.len < cap) {
        memcpy(out, m.p, m.len);
        out[m.len] = '\0';
    }
    json_object_put(root);
}

static void start_call(struct aproxy *p, bool fresh)
{
    struct agent *a = p->a;
    struct http_request *req = p->req;
    struct http_client_request creq = {
        .host = a->engine.host,
        .port = a->engine.port,
        .method = req->method,
        .target = req->target,
        .headers = p->up_hdrs,
        .n_headers = p->n_up_hdrs,
        .body = req->body,
        .connect_timeout_ms = 3000,
        .first_byte_timeout_ms = a->cfg.first_byte_timeout_ms,
        .idle_timeout_ms = a->cfg.first_byte_timeout_ms,
        .no_reuse = fresh,
    };
    static const struct http_client_callbacks cbs = {on_head, on_data, on_done};
    int rc = http_client_request(a->client, &creq, &cbs, p, &p->call);
    if (rc) {
        p->call = NULL;
        p->retried = true;
        struct http_call_result res = {.err = rc};
        on_done(NULL, &res, p);
    }
}

void agent_proxy_handle(struct agent *a, struct http_request *req)
{
    struct aproxy *p = xcalloc(1, sizeof *p);
    p->a = a;
    p->req = req;
    p->start_ms = uv_now(a->loop);
    body_model(req->body, p->model, sizeof p->model);
    a->in_flight++;
    a->pending++;
    agent_count_model(a, p->model, +1);

    p->up_hdrs = xcalloc(req->n_headers + 1, sizeof *p->up_hdrs);
    size_t nh = 0;
    for (size_t i = 0; i < req->n_headers; i++)
        if (!is_hop(req->headers[i].name)) p->up_hdrs[nh++] = req->headers[i];
    if (a->engine.api_key) {
        snprintf(p->auth, sizeof p->auth, "Bearer %s", a->engine.api_key);
        p->up_hdrs[nh++] = (struct http_header){STRV_LIT("Authorization"), strv_from_cstr(p->auth)};
    }
    p->n_up_hdrs = nh;
    http_request_on_abort(req, on_abort, p);
    http_request_on_drain(req, on_drain, p);
    start_call(p, false);
}
