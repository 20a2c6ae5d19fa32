/* proxy — the data path of one client request (DESIGN §2, §4): route, forward the client's
 * original bytes over a pooled upstream connection, stream the answer back with backpressure,
 * classify the attempt with outcome_classify() and hand the outcome to accounting (the one
 * module that changes nodes), then decide what the client gets: a retry on another node while
 * nothing reached the client, a wait in the admission queue when every node is busy, an error
 * event that ends a broken stream. Completion of a stream is recognised only at event
 * boundaries (the SSE/NDJSON splitters). Non-streaming answers are buffered until complete so
 * a node that dies mid-body costs the client nothing. A client that leaves cancels the
 * upstream at once, at no cost to the node. The loop thread only. */
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/freelist.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/accounting.h"
#include "gw/admission.h"
#include "gw/ctxfit.h"
#include "gw/errors_http.h"
#include "gw/events.h"
#include "gw/gw.h"
#include "gw/proxy.h"
#include "gw/keys.h"
#include "gw/loads.h"
#include "gw/usage.h"
#include "gw/outcome.h"
#include "gw/placement.h"
#include "gw/prefix_cache.h"
#include "gw/router.h"
#include "gw/translate.h"
#include "gw/upstream.h"
#include "gw/validate.h"
#include "net/splitter.h"

enum {
    PROXY_MAX_ATTEMPTS = 16,
    PROXY_MAX_STALE_RETRIES = 2,
    PROXY_MAX_BUSY_RETRIES = 64, /* busy answers one request may see (the wait bounds it too) */
    PROXY_MAX_ERROR_BODY = 64 * 1024,
    PROXY_MAX_BUFFERED_BODY = 256 * 1024 * 1024,
    PROXY_MAX_EVENT_BYTES = 4 * 1024 * 1024, /* one SSE event or NDJSON line of a stream */
    PROXY_SPARES = 64,                       /* freed request states kept for reuse */
    PROXY_ANSWER_HEADERS = 11, /* answer_headers(): 4 own, 6 of the key grant, X-Drover-Route */
};

struct proxy {
    struct gw *g;
    struct http_request *req; /* NULL once the client is gone */
    enum api_kind kind;
    struct validated v;
    struct strv model; /* the routed model, resolved once: the catalogue's id or the client's */
    unsigned caps;     /* CAP_* the request uses (primary | features) */
    struct node *tried[PROXY_MAX_ATTEMPTS];
    size_t n_tried;
    struct acct_request acct; /* the poison rule and busy answers across attempts */
    unsigned attempts;
    unsigned busy_attempts;  /* attempts answered busy (they do not count toward max_attempts) */
    unsigned panic_attempts; /* attempts on nodes not alive (panic routing) */
    unsigned stale_retries;
    bool fresh_only;
    bool retry_same; /* next attempt: the same node on a fresh connection */
    uint64_t start_us;
    uint64_t deadline_ms;

    /* the current attempt */
    struct node *node;
    struct http_call *call;
    enum route_tier tier;
    uint64_t attempt_start_ms;
    int status;
    bool has_retry_after;
    uint64_t retry_after_s;
    char content_type[128];
    bool head_sent;      /* the client has our status line */
    bool stream_counted; /* node->streams_active was raised */
    struct buf body;     /* buffered body (non-stream success, or any error) */
    bool body_overflow;
    bool splitter_used; /* the splitter of this stream kind was initialised */
    struct sse_splitter sse;
    struct ndjson_splitter nd;
    bool done_seen;  /* the terminal event ([DONE], or an NDJSON line with "done":true) */
    int splitter_rc; /* GW_E_LIMIT once an event was over the cap (for the log) */
    bool paused;

    /* history for the final answer */
    enum outcome_class last_cls;
    int last_client_status;
    struct buf last_error; /* body of the last capability_miss, returned if nothing else works */
    int last_error_status;

    /* placement (DESIGN §6): the catalogue entry's id, the body with an alias resolved, and
     * the bounded wait for a cold load or for capacity */
    char cat_id[CAT_MAX_ID];
    struct buf up_body;
    struct proxy_wait *wait;
    uint64_t wait_until_ms;
    unsigned loads_seen; /* loads this request waited on (a failing load is not retried forever) */
    bool waiting_load;
    struct admission_waiter queue; /* waiting for capacity (DESIGN §5 `capacity`) */
    uint64_t queue_until_ms;       /* the wait budget for capacity, set at the first wait */
    bool waking;                   /* start_attempt runs from the queue's wake */
    struct key_grant grant;        /* keys.c: the client key's admission (released once) */
    bool usage_asked;              /* we added include_usage: the usage chunk is not relayed */
    bool has_stream_usage;         /* the stream told its tokens (usage chunk, last NDJSON line) */
    uint64_t stream_pt, stream_ct; /* those tokens, for keys_release */
    struct buf relay;              /* usage_asked: this read's events, re-framed for the client */

    struct xlate xl; /* the client's API over a node that speaks another (docs/translate.md) */
    /* routing (docs/routing.md): the last pick's explanation, for X-Drover-Route and the log */
    bool route_header; /* the client sent X-Drover-Explain: 1, or routing.explain is on */
    char route[ROUTE_EXPLAIN_BYTES];
    /* context length (docs/routing.md "Context length"): what the request needs, estimated
     * once when a node of the model has a known context; a context that refused it */
    struct ctx_need need;
    bool need_done;
    bool ctx_refused;      /* a node refused it as longer than its context */
    unsigned ctx_refusals; /* attempts that ended so */
    uint32_t ctx_floor;    /* the largest context that refused it: only larger ones are tried */
    uint32_t fail_ctx_max; /* the largest context of a node that failed otherwise (unknown:
                              UINT32_MAX), 0: none */
};

/* A timer that may outlive its proxy: closed asynchronously, freed in its close callback. */
struct proxy_wait {
    uv_timer_t t;
    struct proxy *p; /* NULL once the proxy is gone */
};

static void start_attempt(struct proxy *p);

static uint64_t now_us(void)
{
    return clock_mono_us();
}

/* The model id the nodes know: the catalogue's id when the client used an alias. */
static const char *route_model(const struct proxy *p)
{
    return p->cat_id[0] ? p->cat_id : p->v.model;
}

/* Ends the current attempt's accounting (in-flight counts, stream liveness). */
static void attempt_end(struct proxy *p)
{
    if (!p->node) return;
    acct_end(p->g, p->node, p->model, &p->stream_counted);
    p->call = NULL;
}

static void splitter_free(struct proxy *p)
{
    if (!p->splitter_used) return;
    if (p->v.ollama)
        ndjson_free(&p->nd);
    else
        sse_free(&p->sse);
    p->splitter_used = false;
}

static void wait_close_cb(uv_handle_t *h)
{
    xfree(h->data);
}

static void wait_cancel(struct proxy *p)
{
    if (p->waiting_load) loads_unwait(p->g, p);
    p->waiting_load = false;
    if (!p->wait) return;
    uv_timer_stop(&p->wait->t);
    p->wait->p = NULL;
    uv_close((uv_handle_t *)&p->wait->t, wait_close_cb);
    p->wait = NULL;
}

static void proxy_free(struct proxy *p)
{
    keys_release(p->g, &p->grant, 499, 0, 0, p->node ? p->node->name : NULL); /* no-op if done */
    wait_cancel(p);
    splitter_free(p);
    if (p->queue.queued) admission_leave(&p->g->admission, &p->queue);
    buf_free(&p->up_body);
    buf_free(&p->relay);
    buf_free(&p->body);
    buf_free(&p->last_error);
    xlate_free(&p->xl);
    struct gw *g = p->g;
    if (g->active_requests > 0) g->active_requests--;
    /* The state is larger than malloc's per-thread cache takes: a few are kept for reuse. */
    freelist_put(&g->proxy_spares, p);
}

static struct proxy *proxy_alloc(struct gw *g)
{
    if (!g->proxy_spares.obj_bytes)
        freelist_init(&g->proxy_spares, sizeof(struct proxy), PROXY_SPARES);
    return freelist_get(&g->proxy_spares);
}

void proxy_start(struct gw *g)
{
    if (!g->admission.started)
        admission_init(&g->admission, g->loop, (size_t)g->cfg.queue_max, 100);
    g->admission.max = (size_t)g->cfg.queue_max; /* a reload may change it */
}

void proxy_stop(struct gw *g)
{
    admission_close(&g->admission);
}

void proxy_free_spares(struct gw *g)
{
    freelist_drain(&g->proxy_spares);
}

/* The request, for its final answer: the abort callback is cleared first, because a client
 * that left makes the answer fail with GW_E_CLOSED while the server still owes us its abort
 * callback, which would then reach a freed proxy. p->req is NULL afterwards. */
static struct http_request *take_req(struct proxy *p)
{
    struct http_request *req = p->req;
    if (req) http_request_on_abort(req, NULL, NULL);
    p->req = NULL;
    return req;
}

static void log_request(struct proxy *p, int status, const char *outcome)
{
    uint64_t dur_us = now_us() - p->start_us;
    metrics_observe(&p->g->metrics.total, dur_us);
    metrics_count_request(&p->g->metrics, p->v.model[0] ? p->v.model : "_unknown",
                          p->node ? p->node->name : "", status);
    uint64_t pt = 0, ct = 0;
    if (status >= 200 && status < 300 && !p->v.stream)
        (void)usage_tokens_from_body(p->body.p, p->body.len, &pt, &ct);
    else if (p->xl.mode && p->v.stream) /* translated: the translator read the node's usage */
        pt = p->xl.prompt_tokens > 0 ? (uint64_t)p->xl.prompt_tokens : 0,
        ct = p->xl.completion_tokens > 0 ? (uint64_t)p->xl.completion_tokens : 0;
    else if (p->has_stream_usage)
        pt = p->stream_pt, ct = p->stream_ct;
    keys_release(p->g, &p->grant, status, pt, ct, p->node ? p->node->name : NULL);
    LOGI("request", "id=%llu model=%s node=%s status=%d attempts=%u outcome=%s dur_ms=%llu%s%s%s",
         (unsigned long long)(p->req ? p->req->id : 0), p->v.model, p->node ? p->node->name : "-",
         status, p->attempts, outcome, (unsigned long long)(dur_us / 1000),
         p->route[0] ? " route=\"" : "", p->route, p->route[0] ? "\"" : "");
    events_request(p->g, &(struct req_event){
                             .id = p->req ? p->req->id : 0,
                             .model = p->v.model,
                             .node = p->node ? p->node->name : NULL,
                             .status = status,
                             .outcome = outcome,
                             .last_class = p->attempts ? outcome_class_name(p->last_cls) : NULL,
                             .attempts = p->attempts,
                             .dur_us = dur_us,
                             .stream = p->v.stream,
                             .tried = p->tried,
                             .n_tried = p->n_tried,
                             .body = p->v.stream ? NULL : &p->body,
                         });
}

/* Response headers for a proxied answer: content type plus X-Drover-Node/Attempts, and
 * X-Drover-Route when asked (h must hold PROXY_ANSWER_HEADERS). */
static size_t answer_headers(struct proxy *p, struct http_header *h, char *att, size_t att_cap)
{
    size_t n = 0;
    const char *ct = p->content_type[0]            ? p->content_type
                     : p->v.stream && !p->v.ollama ? "text/event-stream"
                     : p->v.stream                 ? "application/x-ndjson"
                                                   : "application/json";
    h[n++] = (struct http_header){STRV_LIT("Content-Type"), strv_from_cstr(ct)};
    if (p->v.stream) h[n++] = (struct http_header){STRV_LIT("Cache-Control"), STRV_LIT("no-cache")};
    if (p->node)
        h[n++] = (struct http_header){STRV_LIT("X-Drover-Node"), strv_from_cstr(p->node->name)};
    size_t att_len = att_cap >= 20 ? u64_to_dec(att, p->attempts) : 0;
    h[n++] = (struct http_header){STRV_LIT("X-Drover-Attempts"), (struct strv){att, att_len}};
    n += keys_grant_headers(&p->grant, h + n, 6);
    if (p->route_header && p->route[0])
        h[n++] = (struct http_header){STRV_LIT("X-Drover-Route"), strv_from_cstr(p->route)};
    return n;
}

/* The final failure answer when no attempt succeeded. */
static void answer_failure(struct proxy *p, enum gw_answer a, uint64_t retry_after_s,
                           const char *msg)
{
    struct gw_answer_ctx ctx = {
        .node = p->node ? p->node->name : NULL,
        .attempts = p->attempts,
        .retry_after_s = retry_after_s,
        .ollama = p->v.ollama,
        .anthropic = p->v.anthropic,
    };
    int status = gw_answer_info(a)->status;
    log_request(p, status, gw_answer_info(a)->code);
    struct http_request *req = take_req(p);
    if (req) (void)gw_answer(req, a, &ctx, msg);
}

/* Returns the node's client error to the client: as it is when it already has our shape,
 * wrapped in an OpenAI error object otherwise. */
static void answer_client_error(struct proxy *p, int status, struct buf *body)
{
    struct buf out;
    buf_init(&out, PROXY_MAX_ERROR_BODY + 1024);
    struct json_object *root = json_parse_strict(body->p ? body->p : "", body->len, 32, NULL);
    struct json_object *e = NULL;
    bool has_obj = root && json_object_object_get_ex(root, "error", &e) && e &&
                   json_object_is_type(e, json_type_object);
    bool has_str = root && !has_obj && e && json_object_is_type(e, json_type_string);
    int rc = 0;
    if (p->v.anthropic) {
        const char *msg = has_obj   ? json_object_get_string(json_object_object_get(e, "message"))
                          : has_str ? json_object_get_string(e)
                                    : NULL;
        char raw[1024];
        snprintf(raw, sizeof raw, "%.*s", (int)(body->len < 1000 ? body->len : 1000),
                 body->p ? body->p : "");
        rc = gw_anthropic_error_json(&out, status, msg ? msg : raw[0] ? raw : "error");
    } else if (p->v.ollama ? (has_str || has_obj) : has_obj) {
        rc = buf_append(&out, body->p, body->len);
    } else if (p->v.ollama) {
        const char *msg =
            has_obj ? json_object_get_string(json_object_object_get(e, "message")) : NULL;
        rc = buf_append_cstr(&out, "{\"error\":");
        if (!rc) {
            if (msg)
                rc = json_append_str(&out, msg, strlen(msg));
            else
                rc = json_append_str(&out, body->p ? body->p : "", body->len);
        }
        if (!rc) rc = buf_append_cstr(&out, "}");
    } else {
        char msg[1024];
        if (has_str)
            snprintf(msg, sizeof msg, "%s", json_object_get_string(e));
        else
            snprintf(msg, sizeof msg, "%.*s", (int)(body->len < 1000 ? body->len : 1000),
                     body->p ? body->p : "");
        rc = gw_error_json(&out, msg[0] ? msg : http_status_reason(status), "invalid_request_error",
                           NULL, NULL);
    }
    if (root) json_object_put(root);
    if (rc) {
        buf_reset(&out);
        if (gw_error_json(&out, "the node refused the request", "invalid_request_error", NULL,
                          NULL))
            buf_reset(&out);
    }
    struct http_header h[PROXY_ANSWER_HEADERS];
    char att[24];
    p->content_type[0] = '\0';
    bool stream = p->v.stream;
    p->v.stream = false;
    size_t n = answer_headers(p, h, att, sizeof att);
    p->v.stream = stream;
    log_request(p, status, "client_error");
    struct http_request *req = take_req(p);
    if (req) (void)http_respond(req, status, h, n, out.p, out.len);
    buf_free(&out);
}

/* A stream already reached the client: end it with an error event and no [DONE] (or a final
 * NDJSON line with "error" on the Ollama API). */
static void end_stream_with_error(struct proxy *p, const char *why)
{
    struct buf ev;
    buf_init(&ev, 2048);
    int rc;
    if (p->v.anthropic) {
        rc = buf_append_cstr(&ev, "event: error\ndata: ");
        if (!rc) rc = gw_anthropic_error_json(&ev, 500, why);
        if (!rc) rc = buf_append_cstr(&ev, "\n\n");
    } else if (p->v.ollama) {
        rc = buf_append_cstr(&ev, "{\"error\":");
        if (!rc) rc = json_append_str(&ev, why, strlen(why));
        if (!rc) rc = buf_append_cstr(&ev, "}\n");
    } else {
        rc = buf_append_cstr(&ev, "data: ");
        if (!rc) rc = gw_error_json(&ev, why, "server_error", NULL, "upstream_failed");
        if (!rc) rc = buf_append_cstr(&ev, "\n\n");
    }
    p->g->metrics.stream_errors_total++;
    log_request(p, p->status ? p->status : 200, "stream_error");
    struct http_request *req = take_req(p);
    if (req) {
        if (!rc) (void)http_stream_write(req, ev.p, ev.len);
        (void)http_stream_end(req);
    }
    buf_free(&ev);
}

static void on_drain(struct http_request *req, void *ctx)
{
    struct proxy *p = ctx;
    (void)req;
    if (p->paused && p->call) {
        p->paused = false;
        http_call_resume(p->call);
    }
}

static void on_abort(struct http_request *req, void *ctx)
{
    struct proxy *p = ctx;
    p->req = NULL;
    p->g->metrics.client_disconnects_total++;
    LOGI("client_gone", "id=%llu model=%s node=%s attempts=%u", (unsigned long long)req->id,
         p->v.model, p->node ? p->node->name : "-", p->attempts);
    if (p->call) {
        /* Close the upstream at once so the GPU stops generating; no fault for the node. */
        http_call_cancel(p->call);
        attempt_end(p);
        proxy_free(p);
    } else if (p->wait || p->waiting_load || p->queue.queued) {
        /* waiting for a cold load or for capacity: the load goes on for the next client */
        log_request(p, 499, "client_gone");
        proxy_free(p);
    }
    /* else: between attempts (a retry is being set up synchronously) — cannot happen, since
     * retries start from inside on_done before returning to the loop. */
}

/* Reads the tokens a stream reports (the include_usage chunk); when the gateway asked for
 * them, re-frames every other event into p->relay and keeps the usage-only chunk back. */
static int on_sse_event(void *ctx, struct strv event, struct strv data)
{
    struct proxy *p = ctx;
    bool drop = false;
    if (sse_data_is_done(data)) {
        p->done_seen = true;
    } else if (memmem(data.p, data.len, "\"usage\"", 7) &&
               usage_tokens_from_body(data.p, data.len, &p->stream_pt, &p->stream_ct)) {
        p->has_stream_usage = true;
        drop = p->usage_asked && usage_chunk_is_usage_only(data.p, data.len);
    }
    if (!p->usage_asked || drop) return 0;
    int rc = 0;
    if (event.len) {
        rc = buf_append_cstr(&p->relay, "event: ");
        if (!rc) rc = buf_append_strv(&p->relay, event);
        if (!rc) rc = buf_append(&p->relay, "\n", 1);
    }
    /* data lines joined with LF go back as one "data:" line each */
    for (size_t i = 0; !rc && i <= data.len;) {
        size_t e = i;
        while (e < data.len && data.p[e] != '\n') e++;
        rc = buf_append(&p->relay, "data: ", 6);
        if (!rc) rc = buf_append(&p->relay, data.p + i, e - i);
        if (!rc) rc = buf_append(&p->relay, "\n", 1);
        i = e + 1;
    }
    if (!rc) rc = buf_append(&p->relay, "\n", 1);
    return rc;
}

static int on_ndjson_line(void *ctx, struct strv line)
{
    struct proxy *p = ctx;
    if (ndjson_line_is_done(line)) {
        p->done_seen = true;
        /* Ollama's last line: prompt_eval_count / eval_count */
        if (usage_tokens_from_body(line.p, line.len, &p->stream_pt, &p->stream_ct))
            p->has_stream_usage = true;
    }
    return 0;
}

/* Feeds a streamed chunk to the splitter of its kind: completion is an event, never a byte
 * pattern (the same text inside a JSON string is content). */
static void scan_events(struct proxy *p, const char *data, size_t len)
{
    if (p->done_seen || len == 0) return;
    if (!p->splitter_used) {
        if (p->v.ollama)
            ndjson_init(&p->nd, PROXY_MAX_EVENT_BYTES);
        else
            sse_init(&p->sse, PROXY_MAX_EVENT_BYTES);
        p->splitter_used = true;
    }
    /* a splitter that failed (an event over the cap) stays failed: no completion is seen */
    if (p->v.ollama)
        p->splitter_rc = ndjson_feed(&p->nd, data, len, on_ndjson_line, p);
    else
        p->splitter_rc = sse_feed(&p->sse, data, len, on_sse_event, p);
}

static void on_head(struct http_call *call, const struct http_response_head *head, void *ctx)
{
    struct proxy *p = ctx;
    (void)call;
    p->status = head->status;
    for (size_t i = 0; i < head->n_headers; i++) {
        const struct http_header *h = &head->headers[i];
        if (strv_eq_ci(h->name, STRV_LIT("Content-Type"))) {
            size_t n = h->value.len < sizeof p->content_type - 1 ? h->value.len
                                                                 : sizeof p->content_type - 1;
            memcpy(p->content_type, h->value.p, n);
            p->content_type[n] = '\0';
        } else if (strv_eq_ci(h->name, STRV_LIT("Retry-After"))) {
            p->has_retry_after = true;
            uint64_t s;
            p->retry_after_s = strv_to_u64(strv_trim(h->value), &s) == 0 ? s : 1;
        }
    }
    p->has_stream_usage = false; /* this attempt's stream tells its own */
    if (p->status >= 200 && p->status < 300) {
        if (p->xl.mode)
            snprintf(p->content_type, sizeof p->content_type, "%s", xlate_content_type(&p->xl));
        buf_init(&p->body, PROXY_MAX_BUFFERED_BODY);
        /* A buffered answer of known length: one allocation, not a doubling series. */
        if (!p->v.stream && head->content_length > 0 &&
            head->content_length <= PROXY_MAX_BUFFERED_BODY)
            buf_reserve(&p->body, (size_t)head->content_length);
    } else {
        buf_init(&p->body, PROXY_MAX_ERROR_BODY);
    }
}

static void on_data(struct http_call *call, const char *data, size_t len, void *ctx)
{
    struct proxy *p = ctx;
    bool ok = p->status >= 200 && p->status < 300;
    if (!ok || !p->v.stream) {
        if (!p->body_overflow && buf_append(&p->body, data, len)) p->body_overflow = true;
        return;
    }
    /* A streaming 2xx: relay at once. */
    acct_progress(p->g, p->node, true, &p->stream_counted);
    if (p->xl.mode) {
        /* translated: the client gets the translator's bytes; completion is the node's [DONE] */
        p->splitter_rc = xlate_stream(&p->xl, data, len, now_us());
        p->done_seen = p->xl.done;
        data = p->xl.out.p;
        len = p->xl.out.len;
        if (!len) return;
    } else if (p->usage_asked && !p->done_seen) {
        buf_reset(&p->relay);
        scan_events(p, data, len);
        data = p->relay.p;
        len = p->relay.len;
        if (!len) return;
    } else {
        scan_events(p, data, len);
    }
    if (!p->req) return;
    if (!p->head_sent) {
        struct http_header h[PROXY_ANSWER_HEADERS];
        char att[24];
        size_t nh = answer_headers(p, h, att, sizeof att);
        if (http_stream_start(p->req, p->status, h, nh, -1)) return;
        p->head_sent = true;
        metrics_observe(&p->g->metrics.ttfb, now_us() - p->start_us);
    }
    if (http_stream_write(p->req, data, len)) return; /* the abort callback follows */
    if (http_request_write_blocked(p->req) && !p->paused) {
        p->paused = true;
        http_call_pause(call);
    }
}

static void finish_success(struct proxy *p)
{
    acct_settle(p->g, &p->acct);
    if (p->head_sent) {
        log_request(p, p->status, "success");
        struct http_request *req = take_req(p);
        if (req) (void)http_stream_end(req);
        return;
    }
    if (!p->req) return;
    struct http_header h[PROXY_ANSWER_HEADERS];
    char att[24];
    size_t n = answer_headers(p, h, att, sizeof att);
    metrics_observe(&p->g->metrics.ttfb, now_us() - p->start_us);
    log_request(p, p->status, "success");
    struct http_request *req = take_req(p);
    (void)http_respond(req, p->status, h, n, p->body.p, p->body.len);
}

/* Replaces the buffered body with its translation; true when the node's body is malformed. */
static bool xlate_body_swap(struct proxy *p)
{
    struct buf t;
    buf_init(&t, PROXY_MAX_BUFFERED_BODY);
    if (xlate_body(&p->xl, p->body.p, p->body.len, now_us(), &t)) {
        buf_free(&t);
        return true;
    }
    buf_free(&p->body);
    p->body = t;
    return false;
}

static void on_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct proxy *p = ctx;
    (void)call;
    struct gw *g = p->g;
    if (p->splitter_used && p->v.ollama && res->err == 0)
        p->splitter_rc = ndjson_finish(&p->nd, on_ndjson_line, p); /* a last line without LF */
    bool streamed = p->v.stream && p->status >= 200 && p->status < 300;
    /* a translated buffered answer the node's API cannot have sent is a malformed response */
    bool xl_bad = p->xl.mode && !streamed && res->err == 0 && !p->body_overflow &&
                  p->status >= 200 && p->status < 300 && xlate_body_swap(p);
    struct attempt_obs obs = {
        .transport_err = res->err,
        .status = res->got_head ? p->status : 0,
        .has_retry_after = p->has_retry_after,
        /* a stream is complete only at its terminal event; a buffered answer at its end */
        .complete = streamed ? p->done_seen : (res->err == 0 && !p->body_overflow && !xl_bad),
        .reused_conn = res->reused_conn,
        .got_bytes = res->got_head,
    };
    if (obs.status >= 400) outcome_scan_error_body(p->body.p, p->body.len, &obs);
    struct outcome o = outcome_classify(&obs);
    p->last_cls = o.cls;
    struct node *node = p->node;
    uint64_t now = gw_now_ms(g);
    if (o.cls != OUTCOME_SUCCESS && o.cls != OUTCOME_CLIENT_ERROR &&
        o.cls != OUTCOME_CONTEXT_EXCEEDED)
        LOGW("attempt_failed", "id=%llu node=%s model=%s class=%s status=%d err=%s reused=%d",
             (unsigned long long)(p->req ? p->req->id : 0), node->name, route_model(p),
             outcome_class_name(o.cls), obs.status, gw_strerror(res->err), res->reused_conn);
    if (o.cls == OUTCOME_STALE_CONN && p->stale_retries < PROXY_MAX_STALE_RETRIES) {
        /* same node, fresh connection, not a new attempt: nothing to account */
        attempt_end(p);
        p->stale_retries++;
        p->fresh_only = true;
        p->retry_same = true;
        p->n_tried--;
        p->attempts--;
        buf_free(&p->body);
        start_attempt(p);
        return;
    }
    if (o.cls == OUTCOME_STALE_CONN)
        o = outcome_classify(&(struct attempt_obs){.transport_err = res->err});
    if (o.cls != OUTCOME_SUCCESS && o.cls != OUTCOME_CLIENT_ERROR &&
        o.cls != OUTCOME_CONTEXT_EXCEEDED) {
        /* a node that might have held the request failed otherwise: not a context 400 */
        const struct node_model *fm = node_model_find(node, p->model);
        uint32_t c = fm && fm->ctx_tokens ? fm->ctx_tokens : UINT32_MAX;
        if (c > p->fail_ctx_max) p->fail_ctx_max = c;
    }
    struct acct_attempt a = {
        .node = node,
        .model = p->model,
        .caps = p->caps,
        .status = obs.status,
        .transport_err = res->err,
        .retry_after_s = p->has_retry_after ? p->retry_after_s : 0,
        .body = p->body.p,
        .body_len = p->body.len,
        .dur_ms = now - p->attempt_start_ms,
    };
    /* accounting runs before attempt_end: it sees the node's in-flight count with this
     * attempt still in it, as it was when the node answered */
    acct_outcome(g, &p->acct, &a, &o);
    attempt_end(p);

    if (o.cls == OUTCOME_SUCCESS) {
        finish_success(p);
        proxy_free(p);
        return;
    }
    if (o.cls == OUTCOME_CLIENT_ERROR) {
        answer_client_error(p, p->status, &p->body);
        proxy_free(p);
        return;
    }
    if (o.cls == OUTCOME_NODE_BUSY && p->n_tried > 0 && p->tried[p->n_tried - 1] == node) {
        /* A busy answer is about this moment: the node stays a candidate (the router sees it
         * saturated at its lowered limit, so the request waits in the admission queue for it
         * or takes another), and it costs no attempt; the wait budget bounds the retries. */
        p->n_tried--;
        p->busy_attempts++;
    }
    if (o.cls == OUTCOME_CONTEXT_EXCEEDED) {
        /* The node counted exactly: only a node with a larger context may take it now
         * (accounting already learned what the node said its context is). */
        uint32_t n_ctx, n_prompt;
        ctxfit_refusal_numbers(p->body.p, p->body.len, &n_ctx, &n_prompt);
        const struct node_model *m = node_model_find(node, p->model);
        if (!n_ctx && m) n_ctx = m->ctx_tokens;
        if (n_ctx > p->ctx_floor) p->ctx_floor = n_ctx;
        if (!p->need.known) (void)ctxfit_estimate(p->kind, p->req->body, &g->cfg.ctxfit, &p->need);
        if (n_prompt) {
            p->need.known = p->need.exact = true;
            p->need.prompt_est = p->need.prompt_low = n_prompt;
        }
        p->need_done = true;
        p->ctx_refused = true;
        p->ctx_refusals++;
        LOGI("context_refused", "id=%llu node=%s model=%s n_ctx=%u n_prompt=%u status=%d",
             (unsigned long long)(p->req ? p->req->id : 0), node->name, route_model(p), n_ctx,
             n_prompt, obs.status);
    }
    if (o.cls == OUTCOME_CAPABILITY_MISS) {
        /* kept: returned to the client if no node can do it */
        buf_free(&p->last_error);
        p->last_error = p->body;
        buf_init(&p->body, 0);
        p->last_error_status = p->status >= 500 ? 400 : p->status; /* 501, 5xx "unsupported" */
    }
    if (p->head_sent) {
        /* Bytes reached the client: no retry. The node's fault counts even if it was a 5xx
         * status, since a stream that breaks is no poison request. */
        acct_settle(g, &p->acct);
        end_stream_with_error(p, "the node failed in the middle of the response");
        proxy_free(p);
        return;
    }
    buf_free(&p->body);
    if (acct_is_poison(&p->acct)) {
        /* The same request failed with 5xx on two nodes: a poison request. Count nothing. */
        acct_forgive(&p->acct);
        LOGW("poison_request", "model=%s attempts=%u", route_model(p), p->attempts);
        answer_failure(p, ANSWER_UPSTREAM_FAILED, 0,
                       "the request failed on two nodes with a server error; not retrying");
        proxy_free(p);
        return;
    }
    if (!p->req) {
        proxy_free(p);
        return;
    }
    start_attempt(p);
}

#define HOP(s)                                                                                     \
    {                                                                                              \
        (s), sizeof(s) - 1                                                                         \
    }
static const struct strv hop_by_hop[] = {
    HOP("connection"),        HOP("keep-alive"), HOP("proxy-connection"),
    HOP("transfer-encoding"), HOP("te"),         HOP("trailer"),
    HOP("upgrade"),           HOP("host"),       HOP("content-length"),
    HOP("authorization"),     HOP("expect"),     HOP("proxy-authorization"),
    HOP("x-api-key"), /* Anthropic clients' key for the gateway: never the node's */
};
#undef HOP

static bool is_hop(struct strv name)
{
    for (size_t i = 0; i < sizeof hop_by_hop / sizeof hop_by_hop[0]; i++)
        if (strv_eq_ci(name, hop_by_hop[i])) return true;
    return false;
}

/* RFC 9110 §7.6.1: a header named in Connection is hop-by-hop too. */
static bool named_in_connection(const struct http_request *req, struct strv name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (!strv_eq_ci(req->headers[i].name, STRV_LIT("connection"))) continue;
        struct strv v = req->headers[i].value;
        while (v.len) {
            long comma = strv_index(v, ',');
            struct strv tok = strv_trim(comma < 0 ? v : strv_sub(v, 0, (size_t)comma));
            if (tok.len && strv_eq_ci(tok, name)) return true;
            v = comma < 0 ? STRV_NULL : strv_sub(v, (size_t)comma + 1, v.len);
        }
    }
    return false;
}

/* Rebuilt for the node (X-Forwarded-For), or dropped when clients are not trusted. */
static bool is_forwarded(const struct gw *g, struct strv name)
{
    return strv_eq_ci(name, STRV_LIT("x-forwarded-for")) ||
           (!g->cfg.trust_forwarded && strv_eq_ci(name, STRV_LIT("forwarded")));
}

/* X-Forwarded-For for the node: the client's address, after the incoming list when the
 * gateway trusts what its clients say (proxy.trust_forwarded) and alone otherwise. */
static size_t forwarded_for(const struct gw *g, const struct http_request *req, char *out,
                            size_t cap)
{
    struct strv peer = strv_from_cstr(req->peer);
    size_t colon = peer.len;
    while (colon > 0 && peer.p[colon - 1] != ':') colon--;
    if (colon > 1) peer = strv_sub(peer, 0, colon - 1); /* "addr:port" without the port */
    if (peer.len >= 2 && peer.p[0] == '[') peer = strv_sub(peer, 1, peer.len - 1);
    size_t n = 0;
    if (g->cfg.trust_forwarded) {
        for (size_t i = 0; i < req->n_headers; i++) {
            if (!strv_eq_ci(req->headers[i].name, STRV_LIT("x-forwarded-for"))) continue;
            struct strv v = strv_trim(req->headers[i].value);
            if (!v.len || n + v.len + 2 >= cap) continue;
            memcpy(out + n, v.p, v.len);
            n += v.len;
            out[n++] = ',';
            out[n++] = ' ';
        }
    }
    if (n + peer.len >= cap) return 0;
    memcpy(out + n, peer.p, peer.len);
    return n + peer.len;
}

/* 400 context_length_exceeded, in OpenAI's words, naming the largest context n_ctx. */
static void answer_context(struct proxy *p, uint32_t n_ctx)
{
    char msg[400];
    ctxfit_message(msg, sizeof msg, n_ctx, &p->need);
    struct gw_answer_ctx ctx = {
        .node = p->node ? p->node->name : NULL,
        .attempts = p->attempts,
        .param = p->need.param ? p->need.param : "messages",
        .ollama = p->v.ollama,
        .anthropic = p->v.anthropic,
    };
    log_request(p, 400, "context_length_exceeded");
    struct http_request *req = take_req(p);
    if (req) (void)gw_answer(req, ANSWER_CONTEXT_LENGTH, &ctx, msg);
}

/* No node can take the next attempt: answer with what the history says. */
static void give_up(struct proxy *p, const struct route_result *r)
{
    /* no other node was tried (a busy answer takes its node back off the tried list) */
    if (p->n_tried == 1) acct_settle(p->g, &p->acct);
    /* Context length: no node can hold the request (the estimate says so before any attempt,
     * or nodes refused it and none larger is left) is the client's 400; a larger node that is
     * down or busy now is the usual transient 503. */
    uint32_t n_ctx = r->ctx_max > p->ctx_floor ? r->ctx_max : p->ctx_floor;
    if (r->status == ROUTE_CONTEXT_EXCEEDED) {
        answer_context(p, n_ctx);
        return;
    }
    /* a context refusal is no failure of a node: the other attempts decide the rest */
    unsigned tried = p->attempts - p->ctx_refusals;
    if (p->ctx_refused) {
        if (r->status == ROUTE_FEASIBLE_UNHEALTHY || r->status == ROUTE_NO_HEALTHY_NODES) {
            answer_failure(p, ANSWER_FEASIBLE_UNHEALTHY, 3,
                           "only nodes that are unhealthy now have a context long enough for "
                           "this request; retry shortly");
            return;
        }
        if (r->status == ROUTE_CAPACITY) {
            answer_failure(p, ANSWER_CAPACITY, r->retry_after_s ? r->retry_after_s : 1,
                           "every node with a context long enough for this request is busy; "
                           "retry shortly");
            return;
        }
        if (p->fail_ctx_max <= p->ctx_floor) {
            /* every node that might hold it refused it too, or there is none */
            answer_context(p, n_ctx);
            return;
        }
        /* a node with a larger context failed otherwise: its failure is the answer */
    }
    if (p->last_error.len || p->last_error_status) {
        if (r->status == ROUTE_EXHAUSTED) {
            answer_client_error(p, p->last_error_status ? p->last_error_status : 400,
                                &p->last_error);
            return;
        }
    }
    if (tried > 0 && p->acct.busy_count == tried) {
        answer_failure(p, ANSWER_CAPACITY, p->acct.busy_retry_s,
                       "every node that serves this model is busy; retry shortly");
        return;
    }
    if (tried > 0 && p->panic_attempts == tried) {
        /* Only nodes already down were tried (panic routing) and they are still down: the
         * answer is the transient one the client would have had without trying them. */
        bool any = registry_count_routable(&p->g->reg, gw_now_ms(p->g)) > 0;
        answer_failure(p, any ? ANSWER_FEASIBLE_UNHEALTHY : ANSWER_NO_HEALTHY_NODES, any ? 3 : 5,
                       any ? "the nodes that serve this model are unhealthy now; retry shortly"
                           : "no healthy nodes at the moment; retry shortly");
        return;
    }
    if (tried > 0) {
        answer_failure(p, ANSWER_UPSTREAM_FAILED, 0, "every attempt failed on the nodes");
        return;
    }
    char msg[400];
    switch (r->status) {
    case ROUTE_MODEL_NOT_FOUND:
        snprintf(msg, sizeof msg, "The model '%s' does not exist on any node", p->v.model);
        answer_failure(p, ANSWER_MODEL_NOT_FOUND, 0, msg);
        break;
    case ROUTE_NO_HEALTHY_NODES:
        answer_failure(p, ANSWER_NO_HEALTHY_NODES, r->retry_after_s,
                       "no healthy nodes at the moment; retry shortly");
        break;
    case ROUTE_FEASIBLE_UNHEALTHY:
        snprintf(msg, sizeof msg,
                 "the nodes that serve '%s' are unhealthy or excluded now; retry shortly",
                 p->v.model);
        answer_failure(p, ANSWER_FEASIBLE_UNHEALTHY, r->retry_after_s, msg);
        break;
    case ROUTE_CAPACITY:
        answer_failure(p, ANSWER_CAPACITY, r->retry_after_s,
                       "every node that serves this model is busy; retry shortly");
        break;
    default:
        answer_failure(p, ANSWER_UPSTREAM_FAILED, 0, "no node could take the request");
    }
}

/* ---- placement: on-disk nodes, cold loads, bounded waits (DESIGN §6) ------------------ */

static void on_wait_timer(uv_timer_t *t)
{
    struct proxy_wait *w = t->data;
    struct proxy *p = w->p;
    if (!p) return;
    bool was_loading = p->waiting_load;
    uint64_t now = gw_now_ms(p->g);
    wait_cancel(p);
    if (now >= p->wait_until_ms) {
        if (was_loading) {
            char msg[300];
            snprintf(msg, sizeof msg, "the model '%s' is loading; retry shortly", route_model(p));
            answer_failure(p, ANSWER_MODEL_LOADING, 0, msg);
        } else {
            answer_failure(p, ANSWER_CAPACITY, 1,
                           "every node that could serve this model is busy; retry shortly");
        }
        proxy_free(p);
        return;
    }
    start_attempt(p);
}

/* The deadline of a wait for a load (the load's own completion wakes it sooner). */
static void arm_wait(struct proxy *p)
{
    struct gw *g = p->g;
    uint64_t now = gw_now_ms(g);
    uint64_t left = p->wait_until_ms > now ? p->wait_until_ms - now : 0;
    struct proxy_wait *w = xcalloc(1, sizeof *w);
    w->p = p;
    uv_timer_init(g->loop, &w->t);
    w->t.data = w;
    p->wait = w;
    uv_timer_start(&w->t, on_wait_timer, left, 0);
}

static void on_load_done(void *ctx, bool ok, const char *why)
{
    struct proxy *p = ctx;
    (void)ok;
    (void)why;
    p->waiting_load = false; /* the load already dropped this waiter */
    wait_cancel(p);
    start_attempt(p); /* loaded: the router finds it; failed: placement looks again */
}

static bool node_loading(const struct node *n, void *ctx)
{
    return loads_busy_node(ctx, n);
}

/* A load of the model runs: wait for it within the budget, or say it is loading. */
static bool wait_for_load(struct proxy *p, const struct cat_model *cm, bool can_wait)
{
    if (!can_wait) {
        char msg[400];
        snprintf(msg, sizeof msg, "the model '%s' is loading; retry shortly", cm->id);
        answer_failure(p, ANSWER_MODEL_LOADING, 0, msg);
        proxy_free(p);
        return true;
    }
    p->loads_seen++;
    p->waiting_load = loads_wait(p->g, cm->id, on_load_done, p);
    arm_wait(p);
    return true;
}

/* After the router found no loaded replica: returns true when it took the request over
 * (waiting, or answered and freed); false to go on with *r (which may now be a node). */
static bool wait_capacity(struct proxy *p, bool waking, uint64_t until);

static bool placement_fallback(struct proxy *p, const struct cat_model *cm, struct route_result *r,
                               bool waking)
{
    struct gw *g = p->g;
    uint64_t now = gw_now_ms(g);
    if (!p->wait_until_ms) p->wait_until_ms = now + g->cfg.load_wait_ms;
    bool can_wait = now < p->wait_until_ms;
    if (r->status != ROUTE_MODEL_NOT_FOUND && r->status != ROUTE_FEASIBLE_UNHEALTHY &&
        r->status != ROUTE_NO_HEALTHY_NODES)
        return false;
    char msg[600];
    if (p->loads_seen < 2 && loads_running(g, cm->id, NULL)) {
        return wait_for_load(p, cm, can_wait);
    }
    bool evict = false;
    enum place_none why = PLACE_NONE_INFEASIBLE;
    struct node *n = p->loads_seen < 2 ? placement_pick_cold(&g->cat, &g->reg, cm, now,
                                                             node_loading, g, &evict, &why)
                                       : NULL;
    if (n) {
        const char *plan[16];
        size_t k = 0;
        bool busy;
        if (evict)
            (void)placement_evict_plan(&g->cat, &g->reg, n, cm->min_vram_mb, now, plan, 16, &k,
                                       &busy);
        LOGI("cold_load", "model=%s node=%s evict=%zu", cm->id, n->name, k);
        loads_start(g, n, cm->id, cm->load_options_json, plan, k);
        return wait_for_load(p, cm, can_wait);
    }
    if (p->loads_seen >= 2) {
        snprintf(msg, sizeof msg, "loading the model '%s' failed", cm->id);
        answer_failure(p, ANSWER_UPSTREAM_FAILED, 0, msg);
        proxy_free(p);
        return true;
    }
    switch (why) {
    case PLACE_NONE_INFEASIBLE: {
        if (r->status == ROUTE_FEASIBLE_UNHEALTHY) return false; /* a non-agent node has it */
        char nodes[360]; /* per node, why not: "gpu-1: engine llamacpp cannot load on request" */
        size_t k = placement_explain(&g->cat, &g->reg, cm, now, nodes, sizeof nodes);
        snprintf(msg, sizeof msg, "no node could ever serve '%s'%s%s", cm->id,
                 k ? ": " : " (no nodes)", k ? nodes : "");
        answer_failure(p, ANSWER_NO_FEASIBLE_NODE, 0, msg);
        break;
    }
    case PLACE_NONE_UNHEALTHY:
        snprintf(msg, sizeof msg,
                 "the nodes that could serve '%s' are unhealthy or excluded now; retry shortly",
                 cm->id);
        answer_failure(p, ANSWER_FEASIBLE_UNHEALTHY, 3, msg);
        break;
    case PLACE_NONE_HELD: /* its replicas are loading or busy elsewhere: wait for them */
    case PLACE_NONE_FULL: /* busy models may finish and become evictable */
        if (can_wait && wait_capacity(p, waking, p->wait_until_ms)) return true;
        answer_failure(p, ANSWER_CAPACITY, 1,
                       "every node that could serve this model is busy; retry shortly");
        break;
    }
    proxy_free(p);
    return true;
}

static void on_queue_wake(struct admission_waiter *w, bool timed_out)
{
    struct proxy *p = (struct proxy *)((char *)w - offsetof(struct proxy, queue));
    if (timed_out) p->queue_until_ms = 1; /* the budget is spent: the next capacity answers */
    p->waking = true;
    start_attempt(p);
}

/* The admission queue's tenant of a request: its client key (one line without keys). */
static uint64_t queue_tenant(const char *key_id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *c = key_id ? key_id : ""; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    return h;
}

/* Every node that could serve is busy (cooled or at its limit), or every node that could load
 * the model is full of models in use: wait in the admission queue instead of an instant 503,
 * within the budget (until, or queue.max_wait when 0; the first wait's budget holds for the
 * request). Woken when capacity frees (an attempt or a load ended) or by the queue's poll.
 * Returns false when the request cannot wait (budget spent, queue full): the caller answers
 * 503 capacity. */
static bool wait_capacity(struct proxy *p, bool waking, uint64_t until)
{
    struct gw *g = p->g;
    uint64_t now = gw_now_ms(g);
    if (!p->queue_until_ms) {
        p->queue_until_ms = until ? until : now + g->cfg.queue_wait_ms;
        if (p->queue_until_ms > p->deadline_ms) p->queue_until_ms = p->deadline_ms;
    }
    if (now >= p->queue_until_ms) return false;
    if (waking) {
        admission_requeue(&g->admission, &p->queue);
        return true;
    }
    p->queue.wake = on_queue_wake;
    p->queue.tenant = queue_tenant(p->grant.key_id);
    if (admission_enter(&g->admission, &p->queue, now, p->queue_until_ms)) return false;
    return true;
}

/* The attempt's translation for the picked node (rebuilt per attempt: a retry starts a fresh
 * stream). Returns true when the request was answered instead (the gateway's own answer where
 * Ollama would answer without generating, or a request the translation cannot express). */
static bool xlate_attempt(struct proxy *p, const struct node *node)
{
    enum xlate_mode m = xlate_mode_for(p->kind, node->kind);
    if (m == XLATE_NONE) {
        xlate_free(&p->xl);
        return false;
    }
    struct buf local;
    buf_init(&local, 64 * 1024);
    char why[300] = "";
    int rc = xlate_prepare(&p->xl, m, node->kind, p->req->body, route_model(p), p->v.model,
                           p->v.stream, p->start_us, &local, why, sizeof why);
    if (rc > 0) {
        log_request(p, 200, "local");
        struct http_request *req = take_req(p);
        if (req) (void)http_respond_json(req, 200, NULL, 0, local.p, local.len);
    } else if (rc < 0) {
        answer_failure(p, ANSWER_INVALID_REQUEST, 0, why);
    }
    buf_free(&local);
    if (rc) proxy_free(p);
    return rc != 0;
}

/* Whether a node of the model has said its context: only then is a request's size estimated
 * (a fleet that says nothing pays nothing). */
static bool model_has_ctx(struct registry *reg, struct strv model)
{
    const struct model_nodes *mn = registry_model_nodes(reg, model);
    for (size_t i = 0; mn && i < mn->n; i++)
        if (mn->slots[i].model->ctx_tokens) return true;
    return false;
}

/* The routing policy's inputs (docs/routing.md): the prompt text for cache_aware, the
 * session key (routing.session.header, else the body's `user`) for session. */
static void route_fill(struct proxy *p, const struct cat_model *cm, struct route_query *q)
{
    struct gw *g = p->g;
    struct http_request *req = p->req;
    q->params = &g->cfg.route;
    q->policy = router_policy_for(cm, &g->cfg.route);
    q->explain = p->route_header || log_level_current <= LOG_INFO;
    if (q->policy == ROUTE_POLICY_CACHE_AWARE) {
        q->prefix =
            prefix_cache_ensure(&g->prefix, g->cfg.prefix_max_entries, g->cfg.prefix_node_entries,
                                g->cfg.prefix_block_bytes, g->cfg.prefix_bytes);
        if (q->prefix) q->prompt = prefix_cache_render(q->prefix, req->body);
    } else if (q->policy == ROUTE_POLICY_SESSION) {
        if (g->cfg.session_header)
            q->session = strv_trim(http_request_header(req, g->cfg.session_header));
        size_t s, e;
        if (!q->session.len && !json_top_string_span(req->body.p, req->body.len, "user", &s, &e) &&
            e - s >= 2)
            q->session =
                (struct strv){req->body.p + s + 1, e - s - 2}; /* the raw bytes inside the quotes */
    }
}

static void start_attempt(struct proxy *p)
{
    struct gw *g = p->g;
    bool waking = p->waking;
    p->waking = false;
    uint64_t now = gw_now_ms(g);
    struct route_result r = {0};
    struct cat_model *cm = NULL;
    /* A stale pooled connection is retried once on the same node over a fresh connection;
     * every other retry goes through the router, which skips the nodes already tried. */
    bool same_node = p->retry_same && p->node && p->n_tried < PROXY_MAX_ATTEMPTS;
    p->retry_same = false;
    if (same_node) {
        r.status = ROUTE_OK;
        r.node = p->node;
    } else if (p->attempts - p->busy_attempts >= g->cfg.max_attempts ||
               p->n_tried >= PROXY_MAX_ATTEMPTS || p->busy_attempts >= PROXY_MAX_BUSY_RETRIES ||
               (p->attempts > 0 && now > p->deadline_ms)) {
        r.status = ROUTE_EXHAUSTED;
    } else {
        cm = p->cat_id[0] ? catalogue_find(&g->cat, strv_from_cstr(p->cat_id)) : NULL;
        struct route_query q = {
            .cat = cm,
            .model = p->model,
            .cap = p->caps,
            .ollama_only = p->v.ollama,
            .tried = p->tried,
            .n_tried = p->n_tried,
            .now_ms = now,
        };
        route_fill(p, cm, &q);
        if (!p->need_done && model_has_ctx(&g->reg, p->model)) {
            p->need_done = true;
            (void)ctxfit_estimate(p->kind, p->req->body, &g->cfg.ctxfit, &p->need);
        }
        q.need = &p->need;
        q.ctx_floor = p->ctx_floor;
        router_pick(&g->reg, &q, &r);
        if (r.status != ROUTE_OK && q.ollama_only && xlate_any_node(p->kind)) {
            /* no Ollama node can take it: any node, with translation (docs/translate.md) */
            q.ollama_only = false;
            router_pick(&g->reg, &q, &r);
        }
        if (r.status == ROUTE_OK && q.explain) snprintf(p->route, sizeof p->route, "%s", r.explain);
        if (r.status == ROUTE_CAPACITY) {
            if (wait_capacity(p, waking, 0)) return;
        } else if (r.status != ROUTE_OK && cm && placement_fallback(p, cm, &r, waking)) {
            return;
        }
    }
    if (r.status != ROUTE_OK) {
        give_up(p, &r);
        proxy_free(p);
        return;
    }
    if (waking) admission_served(&g->admission, &p->queue, now);
    if (xlate_attempt(p, r.node)) return;
    p->fresh_only = same_node;
    p->tier = r.tier;
    if (r.tier == TIER_PANIC && !same_node) p->panic_attempts++;
    struct node *node = r.node;
    p->node = node;
    p->tried[p->n_tried++] = node;
    p->attempts++;
    g->metrics.attempts_total++;
    if (p->attempts > 1) g->metrics.retries_total++;
    p->status = 0;
    p->has_retry_after = false;
    p->retry_after_s = 0;
    p->content_type[0] = '\0';
    p->body_overflow = false;
    splitter_free(p);
    p->done_seen = false;
    p->paused = false;
    p->attempt_start_ms = now;
    buf_init(&p->body, PROXY_MAX_ERROR_BODY);

    struct http_request *req = p->req;
    /* The client copies the head before http_client_request returns: the list can live on
     * the stack unless the client sent very many headers. */
    struct http_header small[32];
    struct http_header *up = req->n_headers + 4 <= sizeof small / sizeof small[0]
                                 ? small
                                 : xcalloc(req->n_headers + 4, sizeof *up);
    size_t nh = 0;
    bool has_conn = false;
    for (size_t i = 0; i < req->n_headers; i++)
        has_conn |= strv_eq_ci(req->headers[i].name, STRV_LIT("connection"));
    for (size_t i = 0; i < req->n_headers; i++) {
        struct strv name = req->headers[i].name;
        if (is_hop(name) || is_forwarded(g, name) || (has_conn && named_in_connection(req, name)))
            continue;
        if (p->xl.mode && (strv_eq_ci(name, STRV_LIT("content-type")) ||
                           strv_eq_ci(name, STRV_LIT("accept-encoding"))))
            continue; /* the translated body is JSON and the translator reads it unencoded */
        up[nh++] = req->headers[i];
    }
    if (p->xl.mode)
        up[nh++] = (struct http_header){STRV_LIT("Content-Type"), STRV_LIT("application/json")};
    char xff[512];
    size_t xff_len = forwarded_for(g, req, xff, sizeof xff);
    if (xff_len)
        up[nh++] = (struct http_header){STRV_LIT("X-Forwarded-For"), (struct strv){xff, xff_len}};
    struct upstream_auth auth;
    nh += upstream_auth_header(node, &auth, &up[nh]);
    struct http_client_request creq = {
        .method = req->method,
        .target = p->xl.mode ? strv_from_cstr(p->xl.target) : req->target,
        .headers = up,
        .n_headers = nh,
        .body = p->xl.mode       ? buf_view(&p->xl.up_body)
                : p->up_body.len ? (struct strv){p->up_body.p, p->up_body.len}
                                 : req->body,
        .connect_timeout_ms = g->cfg.connect_timeout_ms,
        .first_byte_timeout_ms = g->cfg.first_byte_timeout_ms,
        .idle_timeout_ms = g->cfg.upstream_idle_timeout_ms,
        .total_timeout_ms = g->cfg.total_timeout_ms,
        .no_reuse = p->fresh_only,
    };
    static const struct http_client_callbacks cbs = {on_head, on_data, on_done};
    upstream_address(node, &creq);
    acct_begin(g, node, p->model);
    int rc = http_client_request(g->client, &creq, &cbs, p, &p->call);
    if (up != small) xfree(up);
    if (rc) {
        /* Could not even start (out of sockets): a transport failure of this node. */
        struct http_call_result res = {.err = rc};
        p->call = (struct http_call *)1; /* on_done's attempt_end clears it */
        on_done(NULL, &res, p);
    }
}

/* The client named the model by an alias: the node gets the same bytes with only the
 * top-level "model" value replaced by the catalogue's id. */
static int rewrite_model(struct proxy *p, const char *id)
{
    struct strv b = p->req->body;
    size_t s, e;
    if (json_top_string_span(b.p, b.len, "model", &s, &e)) return GW_E_INVALID;
    buf_init(&p->up_body, b.len + strlen(id) * 2 + 16);
    int rc = buf_append(&p->up_body, b.p, s);
    if (!rc) rc = json_append_str(&p->up_body, id, strlen(id));
    if (!rc) rc = buf_append(&p->up_body, b.p + e, b.len - e);
    return rc;
}

/* Adds stream_options.include_usage to the node's body when the client did not set
 * stream_options (docs/security.md "Streamed usage"); every other byte is kept. */
static int ask_stream_usage(struct proxy *p)
{
    struct strv b = p->up_body.len ? buf_view(&p->up_body) : p->req->body;
    struct buf nb;
    buf_init(&nb, b.len + 64);
    int rc = usage_ask_stream_usage(b, &nb);
    if (rc <= 0) {
        buf_free(&nb);
        return rc;
    }
    buf_free(&p->up_body);
    p->up_body = nb;
    p->usage_asked = true;
    buf_init(&p->relay, PROXY_MAX_BUFFERED_BODY);
    return 0;
}

void proxy_handle(struct gw *g, struct http_request *req)
{
    enum api_kind kind;
    struct strv path = req->path;
    if (strv_eq_cstr(path, "/v1/chat/completions"))
        kind = API_CHAT;
    else if (strv_eq_cstr(path, "/v1/completions"))
        kind = API_COMPLETIONS;
    else if (strv_eq_cstr(path, "/v1/embeddings"))
        kind = API_EMBEDDINGS;
    else if (strv_eq_cstr(path, "/api/chat"))
        kind = API_OLLAMA_CHAT;
    else if (strv_eq_cstr(path, "/api/generate"))
        kind = API_OLLAMA_GENERATE;
    else if (strv_eq_cstr(path, "/api/embed"))
        kind = API_OLLAMA_EMBED;
    else if (strv_eq_cstr(path, "/api/embeddings"))
        kind = API_OLLAMA_EMBEDDINGS_LEGACY;
    else if (strv_eq_cstr(path, "/v1/messages"))
        kind = API_ANTHROPIC_MESSAGES;
    else if (strv_eq_cstr(path, "/v1/messages/count_tokens"))
        kind = API_ANTHROPIC_COUNT_TOKENS;
    else {
        (void)gw_answer(req, ANSWER_NOT_FOUND_ROUTE, NULL, "unknown path");
        return;
    }
    proxy_start(g);
    struct proxy *p = proxy_alloc(g);
    p->g = g;
    p->req = req;
    p->kind = kind;
    p->start_us = now_us();
    p->deadline_ms = gw_now_ms(g) + g->cfg.request_deadline_ms;
    buf_init(&p->body, 0);
    buf_init(&p->last_error, PROXY_MAX_ERROR_BODY);
    g->active_requests++;
    struct validate_error verr;
    /* OpenAI reads a body only as application/json; Ollama reads any (docs/validation.md) */
    if ((kind < API_OLLAMA_CHAT &&
         validate_content_type(http_request_header(req, "Content-Type"), &verr)) ||
        validate_request(kind, req->body, &p->v, &verr)) {
        g->metrics.validation_refusals++;
        struct gw_answer_ctx ctx = {.param = verr.param[0] ? verr.param : NULL,
                                    .code = verr.code,
                                    .ollama = kind >= API_OLLAMA_CHAT &&
                                              kind <= API_OLLAMA_EMBEDDINGS_LEGACY,
                                    .anthropic = kind >= API_ANTHROPIC_MESSAGES};
        p->v.ollama = ctx.ollama;
        p->v.anthropic = ctx.anthropic;
        log_request(p, 400, "invalid_request");
        (void)gw_answer(req, ANSWER_INVALID_REQUEST, &ctx, verr.message);
        proxy_free(p);
        return;
    }
    struct cat_model *cm = catalogue_find(&g->cat, strv_from_cstr(p->v.model));
    if (cm) {
        snprintf(p->cat_id, sizeof p->cat_id, "%s", cm->id);
        if (cm->caps && !(cm->caps & p->v.cap)) {
            char msg[400];
            snprintf(msg, sizeof msg, "the model '%s' does not support %s", cm->id,
                     cap_name(p->v.cap));
            answer_failure(p, ANSWER_CAPABILITY_MISSING, 0, msg);
            proxy_free(p);
            return;
        }
        if (strcmp(cm->id, p->v.model) != 0 && rewrite_model(p, cm->id)) {
            answer_failure(p, ANSWER_INVALID_REQUEST, 0, "could not resolve the model alias");
            proxy_free(p);
            return;
        }
    }
    /* the routed model, resolved once and carried: every mark and count names it */
    p->model = strv_from_cstr(route_model(p));
    p->caps = p->v.cap | p->v.features;
    if (keys_admit(g, req, p->model, &p->grant)) { /* answered: 401, 403 or 429 */
        log_request(p, p->grant.status, "key_refused");
        proxy_free(p);
        return;
    }
    /* An OpenAI stream tells its tokens only when asked: ask for every client key (its usage
     * and limits count tokens). Asking changes the engine's last events (llama-server moves
     * its timings into the usage chunk, which the client does not see), so on an open API, or
     * with the config's single api_key, the stream goes to the client exactly as the node
     * sends it. */
    const struct client_key *k = p->grant.key;
    bool count_tokens = k && !k->legacy;
    if (count_tokens && p->v.stream && (kind == API_CHAT || kind == API_COMPLETIONS) &&
        ask_stream_usage(p)) {
        answer_failure(p, ANSWER_INVALID_REQUEST, 0, "could not prepare the stream's usage");
        proxy_free(p);
        return;
    }
    p->route[0] = '\0';
    p->route_header = g->cfg.routing_explain ||
                      strv_eq_cstr(strv_trim(http_request_header(req, "X-Drover-Explain")), "1");
    http_request_on_abort(req, on_abort, p);
    http_request_on_drain(req, on_drain, p);
    start_attempt(p);
}
