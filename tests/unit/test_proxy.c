/* test_proxy — the attempt state table of docs/gateway.md ("A request's life"), in process: one
 * libuv loop holds a real gateway (struct gw built as `drover serve` builds it: config
 * defaults, registry, metrics, the upstream client, the client listener on port 0 with
 * api_handle, the admission queue) and fake nodes, each a tiny http_server on port 0 that
 * answers from a script shared by the fleet (whichever node gets the n-th request plays the
 * n-th entry: a status and body, a stream that ends cleanly, or a stream cut after its first
 * event). A client request goes to the gateway's port with the project's http_client. Cases:
 * a retried 500 (counted once), poison, a stream broken after the first byte, "data: [DONE]"
 * inside a JSON string, a busy answer that costs no attempt, a client error passed through,
 * and a refused node tried by panic routing. Every loop run is bounded by a watchdog. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/api.h"
#include "gw/gw.h"
#include "gw/proxy.h"
#include "net/http_client.h"
#include "net/http_server.h"

enum {
    WATCHDOG_MS = 8000,
    MAX_NODES = 3,
    MAX_SCRIPT = 16,
    CUT_AFTER_MS = 30, /* a cut stream closes this long after its first event */
};

/* ---- fake nodes ------------------------------------------------------------------------ */

enum play {
    PLAY_JSON,       /* http_respond(status, body), Retry-After when retry_after */
    PLAY_STREAM_END, /* 200 text/event-stream, body, then a clean end (last chunk) */
    PLAY_STREAM_CUT, /* 200 text/event-stream, body (may be ""), then the connection closes */
};

struct step {
    enum play play;
    int status;
    const char *body;
    const char *retry_after;
};

struct fx;

struct fnode {
    struct fx *f;
    struct http_server *srv;
    int port;
    struct node *n;
    const char *name;
    unsigned requests;
};

struct cut {
    uv_timer_t t;
    struct http_request *req; /* NULL once the gateway went away */
};

/* ---- the client's view ----------------------------------------------------------------- */

struct answer {
    bool done;
    int err;
    int status;
    char attempts[16];
    char node[32];
    char retry_after[16];
    struct buf body;
};

struct fx {
    uv_loop_t loop;
    struct gw g;
    int api_port;
    struct fnode nodes[MAX_NODES];
    size_t n_nodes;
    struct step script[MAX_SCRIPT];
    size_t n_script, next_step;
    struct http_client *cli;
    struct answer ans;
    unsigned open_handles; /* servers not yet closed */
};

static void cut_close_cb(uv_handle_t *h)
{
    xfree(h->data);
}

static void on_cut_abort(struct http_request *req, void *ctx)
{
    (void)req;
    struct cut *c = ctx;
    c->req = NULL;
}

static void on_cut(uv_timer_t *t)
{
    struct cut *c = t->data;
    if (c->req) http_stream_abort(c->req);
    uv_close((uv_handle_t *)&c->t, cut_close_cb);
}

static void node_handle(struct http_request *req, void *ctx)
{
    struct fnode *fn = ctx;
    struct fx *f = fn->f;
    fn->requests++;
    if (f->next_step >= f->n_script) {
        (void)http_respond_json(req, 599, NULL, 0, "{}", 2); /* unscripted: fails the test */
        return;
    }
    const struct step *s = &f->script[f->next_step++];
    struct http_header h[2];
    size_t nh = 0;
    switch (s->play) {
    case PLAY_JSON:
        if (s->retry_after)
            h[nh++] = (struct http_header){STRV_LIT("Retry-After"), strv_from_cstr(s->retry_after)};
        (void)http_respond_json(req, s->status, h, nh, s->body, strlen(s->body));
        return;
    case PLAY_STREAM_END:
    case PLAY_STREAM_CUT:
        h[nh++] = (struct http_header){STRV_LIT("Content-Type"), STRV_LIT("text/event-stream")};
        assert_int_equal(http_stream_start(req, 200, h, nh, -1), 0);
        if (s->body[0]) assert_int_equal(http_stream_write(req, s->body, strlen(s->body)), 0);
        if (s->play == PLAY_STREAM_END) {
            assert_int_equal(http_stream_end(req), 0);
            return;
        }
        struct cut *c = xcalloc(1, sizeof *c);
        c->req = req;
        http_request_on_abort(req, on_cut_abort, c);
        uv_timer_init(&f->loop, &c->t);
        c->t.data = c;
        uv_timer_start(&c->t, on_cut, CUT_AFTER_MS, 0);
        return;
    }
}

static struct http_server *listen0(struct fx *f, http_handler_fn *fn, void *ctx, int *port)
{
    struct http_server_config hc;
    http_server_config_defaults(&hc);
    hc.host = "127.0.0.1";
    hc.port = 0;
    struct http_server *srv = NULL;
    struct gw_error err = {0};
    if (http_server_start(&f->loop, &hc, fn, ctx, &srv, &err)) fail_msg("listen: %s", err.msg);
    *port = http_server_port(srv);
    return srv;
}

/* A node serving model "m", healthy after `rise` good probes (no health probes run here). */
static struct fnode *add_node(struct fx *f, const char *name)
{
    assert_true(f->n_nodes < MAX_NODES);
    struct fnode *fn = &f->nodes[f->n_nodes++];
    fn->f = f;
    fn->name = name;
    fn->srv = listen0(f, node_handle, fn, &fn->port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fn->port);
    assert_int_equal(registry_add(&f->g.reg, name, url, NODE_KIND_OPENAI, NULL, &fn->n, NULL), 0);
    struct strv ids[] = {STRV_LIT("m")};
    registry_set_models(fn->n, ids, 1);
    for (unsigned i = 0; i < f->g.reg.cfg.rise; i++)
        registry_probe_ok(&f->g.reg, fn->n, gw_now_ms(&f->g));
    assert_true(node_is_routable(&f->g.reg, fn->n, gw_now_ms(&f->g)));
    return fn;
}

static void script(struct fx *f, struct step s)
{
    assert_true(f->n_script < MAX_SCRIPT);
    f->script[f->n_script++] = s;
}

/* ---- fixture ----------------------------------------------------------------------------- */

static int setup(void **state)
{
    log_set_level(LOG_OFF);
    struct fx *f = xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    struct gw *g = &f->g;
    gw_config_defaults(&g->cfg);
    g->loop = &f->loop;
    g->started_ms = uv_now(g->loop);
    registry_init(&g->reg, &g->cfg.reg);
    metrics_init(&g->metrics);
    struct http_client_config cc;
    http_client_config_defaults(&cc);
    cc.max_idle_per_origin = (unsigned)g->cfg.max_idle_per_node;
    cc.refuse_plain_auth = !g->cfg.upstream_allow_plain_secrets;
    assert_int_equal(http_client_new(g->loop, &cc, &g->client), 0);
    g->api_srv = listen0(f, api_handle, g, &f->api_port);
    proxy_start(g);
    http_client_config_defaults(&cc);
    assert_int_equal(http_client_new(&f->loop, &cc, &f->cli), 0);
    buf_init(&f->ans.body, 1 << 20);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    struct gw *g = &f->g;
    http_client_free(f->cli);
    http_client_free(g->client);
    http_server_close(g->api_srv, NULL, NULL);
    for (size_t i = 0; i < f->n_nodes; i++) http_server_close(f->nodes[i].srv, NULL, NULL);
    proxy_stop(g);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* every close callback */
    int rc = uv_loop_close(&f->loop);
    registry_free(&g->reg);
    catalogue_free(&g->cat);
    proxy_free_spares(g);
    metrics_free(&g->metrics);
    gw_config_free(&g->cfg);
    buf_free(&f->ans.body);
    xfree(f);
    assert_int_equal(rc, 0);
    return 0;
}

/* ---- the client ---------------------------------------------------------------------------- */

static void copy_header(char *dst, size_t cap, struct strv v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    memcpy(dst, v.p, n);
    dst[n] = '\0';
}

static void cli_head(struct http_call *call, const struct http_response_head *head, void *ctx)
{
    (void)call;
    struct answer *a = ctx;
    a->status = head->status;
    for (size_t i = 0; i < head->n_headers; i++) {
        const struct http_header *h = &head->headers[i];
        if (strv_eq_ci(h->name, STRV_LIT("X-Drover-Attempts")))
            copy_header(a->attempts, sizeof a->attempts, h->value);
        else if (strv_eq_ci(h->name, STRV_LIT("X-Drover-Node")))
            copy_header(a->node, sizeof a->node, h->value);
        else if (strv_eq_ci(h->name, STRV_LIT("Retry-After")))
            copy_header(a->retry_after, sizeof a->retry_after, h->value);
    }
}

static void cli_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    (void)call;
    struct answer *a = ctx;
    assert_int_equal(buf_append(&a->body, p, len), 0);
}

static void cli_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    (void)call;
    struct answer *a = ctx;
    a->err = res->err;
    a->done = true;
}

static void on_watchdog(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Sends one chat request to the gateway and runs the loop until the answer ended. */
static const struct answer *ask(struct fx *f, bool stream)
{
    static const char body_plain[] =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    static const char body_stream[] =
        "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const struct http_header h[] = {{STRV_LIT("Content-Type"), STRV_LIT("application/json")}};
    struct http_client_request r = {
        .host = "127.0.0.1",
        .port = f->api_port,
        .method = STRV_LIT("POST"),
        .target = STRV_LIT("/v1/chat/completions"),
        .headers = h,
        .n_headers = 1,
        .body = stream ? STRV_LIT(body_stream) : STRV_LIT(body_plain),
        .total_timeout_ms = WATCHDOG_MS,
    };
    static const struct http_client_callbacks cbs = {cli_head, cli_data, cli_done};
    struct http_call *call = NULL;
    assert_int_equal(http_client_request(f->cli, &r, &cbs, &f->ans, &call), 0);
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_watchdog, WATCHDOG_MS, 0);
    while (!f->ans.done && !expired) uv_run(&f->loop, UV_RUN_ONCE);
    /* the gateway's own end of the request (accounting, freeing) ran before the answer's last
     * byte left it; let the cut timers and closes of this turn finish too */
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (expired) fail_msg("no answer within %d ms", WATCHDOG_MS);
    assert_int_equal(f->ans.err, 0);
    return &f->ans;
}

static bool body_has(const struct answer *a, const char *s)
{
    return a->body.p && strstr(a->body.p, s) != NULL;
}

static const char ok_body[] =
    "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"hello\"},"
    "\"finish_reason\":\"stop\"}]}";
static const char err500[] = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}";
static const char first_event[] = "data: {\"choices\":[{\"delta\":{\"content\":\"he\"}}]}\n\n";

/* The node that got request k of a two-node test, and the other one. */
static struct fnode *served(struct fx *f, unsigned want)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        if (f->nodes[i].requests == want) return &f->nodes[i];
    fail_msg("no node served %u requests", want);
    return NULL;
}

/* ---- the cases ---------------------------------------------------------------------------- */

/* attempting -> failure (5xx) -> routing -> attempting on another node -> success: the client
 * gets the second node's answer, X-Drover-Attempts 2, and the held 500 counts once against the
 * node that sent it (it succeeded elsewhere, so it was no poison request). */
static void test_500_then_success_elsewhere(void **state)
{
    struct fx *f = *state;
    add_node(f, "a");
    add_node(f, "b");
    script(f, (struct step){PLAY_JSON, 500, err500, NULL});
    script(f, (struct step){PLAY_JSON, 200, ok_body, NULL});
    const struct answer *a = ask(f, false);
    assert_int_equal(a->status, 200);
    assert_string_equal(a->attempts, "2");
    assert_true(body_has(a, "\"hello\""));
    assert_int_equal(f->nodes[0].requests + f->nodes[1].requests, 2);
    struct fnode *first = served(f, 1);
    struct fnode *second = first == &f->nodes[0] ? &f->nodes[1] : &f->nodes[0];
    assert_int_equal(second->requests, 1);
    assert_string_equal(a->node, second->name);
    assert_true(first->n->faults_total == 1);
    assert_int_equal(first->n->consecutive_faults, 1);
    assert_true(second->n->faults_total == 0);
    assert_int_equal(first->n->inflight + second->n->inflight, 0);
    assert_int_equal(f->g.active_requests, 0);
}

/* 5xx on two nodes: a poison request. 502 upstream_failed, and nothing counted on either. */
static void test_poison_counts_nothing(void **state)
{
    struct fx *f = *state;
    add_node(f, "a");
    add_node(f, "b");
    script(f, (struct step){PLAY_JSON, 500, err500, NULL});
    script(f, (struct step){PLAY_JSON, 500, err500, NULL});
    const struct answer *a = ask(f, false);
    assert_int_equal(a->status, 502);
    assert_true(body_has(a, "upstream_failed"));
    assert_false(body_has(a, "boom")); /* the node's body is not shown */
    assert_int_equal(f->nodes[0].requests, 1);
    assert_int_equal(f->nodes[1].requests, 1);
    for (size_t i = 0; i < 2; i++) {
        assert_true(f->nodes[i].n->faults_total == 0);
        assert_int_equal(f->nodes[i].n->consecutive_faults, 0);
        assert_int_equal(f->nodes[i].n->inflight, 0);
    }
    assert_int_equal(f->g.active_requests, 0);
}

/* streaming -> upstream fails after bytes went out -> done: the client has the first event,
 * then an error event, and no [DONE]; the node's fault counts; no retry (one node request). */
static void test_stream_cut_after_first_byte(void **state)
{
    struct fx *f = *state;
    add_node(f, "a");
    add_node(f, "b");
    script(f, (struct step){PLAY_STREAM_CUT, 200, first_event, NULL});
    const struct answer *a = ask(f, true);
    assert_int_equal(a->status, 200);
    assert_true(body_has(a, first_event));
    assert_true(body_has(a, "data: {\"error\""));
    assert_false(body_has(a, "[DONE]"));
    struct fnode *cut = served(f, 1);
    assert_int_equal(f->nodes[0].requests + f->nodes[1].requests, 1);
    assert_true(cut->n->faults_total == 1);
    assert_int_equal(cut->n->streams_active, 0);
    assert_int_equal(cut->n->inflight, 0);
    assert_true(f->g.metrics.stream_errors_total == 1);
}

/* attempting -> 2xx head, stream -> failure before the first body byte: nothing reached the
 * client yet, so the request is retried on another node and the client sees one clean stream;
 * the broken attempt counts against its node (a transport failure always counts). */
static void test_stream_fails_before_first_byte_is_retried(void **state)
{
    struct fx *f = *state;
    add_node(f, "a");
    add_node(f, "b");
    static const char good[] = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
                               "data: [DONE]\n\n";
    script(f, (struct step){PLAY_STREAM_CUT, 200, "", NULL});
    script(f, (struct step){PLAY_STREAM_END, 200, good, NULL});
    const struct answer *a = ask(f, true);
    assert_int_equal(a->status, 200);
    assert_string_equal(a->attempts, "2");
    assert_int_equal(a->body.len, strlen(good));
    assert_memory_equal(a->body.p, good, a->body.len);
    struct fnode *first = served(f, 1);
    assert_int_equal(f->nodes[0].requests + f->nodes[1].requests, 2);
    struct fnode *second = first == &f->nodes[0] ? &f->nodes[1] : &f->nodes[0];
    assert_string_equal(a->node, second->name);
    assert_true(first->n->faults_total == 1);
    assert_true(second->n->faults_total == 0);
    assert_true(f->g.metrics.stream_errors_total == 0);
}

/* Completion is an event, not a byte pattern: a node that streams "data: [DONE]" inside a JSON
 * string and then ends its body cleanly did not complete. Error event, fault counted. */
static void test_done_inside_string_is_not_complete(void **state)
{
    struct fx *f = *state;
    add_node(f, "a");
    static const char tricky[] =
        "data: {\"choices\":[{\"delta\":{\"content\":\"\\ndata: [DONE]\\n\\n\"}}]}\n\n";
    script(f, (struct step){PLAY_STREAM_END, 200, tricky, NULL});
    const struct answer *a = ask(f, true);
    assert_int_equal(a->status, 200);
    assert_true(body_has(a, tricky));
    assert_true(body_has(a, "data: {\"error\""));
    assert_true(f->nodes[0].n->faults_total == 1);
    assert_true(f->g.metrics.stream_errors_total == 1);
}

/* The control for the case above: the same stream with a real terminal event is a success. */
static void test_stream_with_done_event_succeeds(void **state)
{
    struct fx *f = *state;
    add_node(f, "a");
    static const char good[] = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
                               "data: [DONE]\n\n";
    script(f, (struct step){PLAY_STREAM_END, 200, good, NULL});
    const struct answer *a = ask(f, true);
    assert_int_equal(a->status, 200);
    assert_int_equal(a->body.len, strlen(good));
    assert_memory_equal(a->body.p, good, a->body.len);
    assert_string_equal(a->attempts, "1");
    assert_true(f->nodes[0].n->faults_total == 0);
    assert_true(f->g.metrics.stream_errors_total == 0);
}

/* A busy answer (503 + Retry-After) is about that moment: the request moves on, and the busy
 * attempt costs none of retry.max_attempts (set to 1 here: without that rule the request
 * would end at the busy answer). Nothing is counted as a fault. */
static void test_busy_costs_no_attempt(void **state)
{
    struct fx *f = *state;
    f->g.cfg.max_attempts = 1;
    add_node(f, "a");
    add_node(f, "b");
    script(f, (struct step){PLAY_JSON, 503, "{\"error\":\"busy\"}", "1"});
    script(f, (struct step){PLAY_JSON, 200, ok_body, NULL});
    const struct answer *a = ask(f, false);
    assert_int_equal(a->status, 200);
    assert_true(body_has(a, "\"hello\""));
    assert_string_equal(a->attempts, "2");
    struct fnode *busy = served(f, 1);
    struct fnode *other = busy == &f->nodes[0] ? &f->nodes[1] : &f->nodes[0];
    assert_string_equal(a->node, other->name);
    assert_true(busy->n->busy_total == 1);
    assert_true(busy->n->faults_total == 0 && other->n->faults_total == 0);
    assert_true(f->g.metrics.busy_total == 1);
}

/* A client error is the client's: passed through as the node sent it, no retry, nothing
 * counted. */
static void test_client_error_passed_through(void **state)
{
    struct fx *f = *state;
    add_node(f, "a");
    add_node(f, "b");
    static const char bad[] = "{\"error\":{\"message\":\"max_tokens is too large\","
                              "\"type\":\"invalid_request_error\",\"param\":\"max_tokens\"}}";
    script(f, (struct step){PLAY_JSON, 400, bad, NULL});
    const struct answer *a = ask(f, false);
    assert_int_equal(a->status, 400);
    assert_int_equal(a->body.len, strlen(bad));
    assert_memory_equal(a->body.p, bad, a->body.len);
    assert_string_equal(a->attempts, "1");
    assert_int_equal(f->nodes[0].requests + f->nodes[1].requests, 1);
    for (size_t i = 0; i < 2; i++) {
        assert_true(f->nodes[i].n->faults_total == 0);
        assert_int_equal(f->nodes[i].n->consecutive_faults, 0);
    }
}

/* Panic routing: the model's only replica is unhealthy, so it is tried anyway; it refuses the
 * connection. The client gets the transient answer it would have had without the try: 503
 * with a Retry-After, never a 502. */
static void test_panic_refused_is_503(void **state)
{
    struct fx *f = *state;
    struct fnode *fn = add_node(f, "a");
    /* nothing listens on the node's port any more */
    http_server_close(fn->srv, NULL, NULL);
    fn->srv = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    f->n_nodes = 0;
    registry_set_unhealthy(&f->g.reg, fn->n, "test: probes failed");
    assert_false(node_is_routable(&f->g.reg, fn->n, gw_now_ms(&f->g)));
    const struct answer *a = ask(f, false);
    assert_int_equal(a->status, 503);
    assert_true(a->retry_after[0] != '\0');
    uint64_t ra = 0;
    assert_int_equal(strv_to_u64(strv_from_cstr(a->retry_after), &ra), 0);
    assert_true(ra > 0);
    assert_string_equal(a->attempts, "1"); /* it was tried */
    assert_true(fn->n->faults_total == 1); /* a refused connection is a transport fault */
    assert_int_equal(fn->n->inflight, 0);
}

/* Poison rule: a held 5xx counts when no other node was tried. A busy answer from the same node
 * first does not make it "another node". */
static void test_busy_then_500_on_only_node_counts(void **state)
{
    struct fx *f = *state;
    struct fnode *fn = add_node(f, "a");
    script(f, (struct step){PLAY_JSON, 503, "{\"error\":\"busy\"}", "1"});
    script(f, (struct step){PLAY_JSON, 500, err500, NULL});
    const struct answer *a = ask(f, false);
    assert_int_equal(fn->requests, 2);
    assert_int_equal(a->status, 502);
    assert_string_equal(a->attempts, "2");
    assert_true(fn->n->busy_total == 1);
    assert_true(fn->n->faults_total == 1);
}

int main(void)
{
#define ENTRY(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        ENTRY(test_500_then_success_elsewhere),
        ENTRY(test_poison_counts_nothing),
        ENTRY(test_stream_cut_after_first_byte),
        ENTRY(test_stream_fails_before_first_byte_is_retried),
        ENTRY(test_done_inside_string_is_not_complete),
        ENTRY(test_stream_with_done_event_succeeds),
        ENTRY(test_busy_costs_no_attempt),
        ENTRY(test_client_error_passed_through),
        ENTRY(test_panic_refused_is_503),
        ENTRY(test_busy_then_500_on_only_node_counts),
    };
#undef ENTRY
    return cmocka_run_group_tests(tests, NULL, NULL);
}
