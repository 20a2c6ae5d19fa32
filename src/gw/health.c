/* health — active probes of every node (DESIGN §3): GET the node's probe path (upstream.h:
 * /drover/v1/health on an agent, /api/tags on Ollama, /v1/models elsewhere) every interval ± jitter
 * with its own timeout, on the shared keep-alive pool. A good answer is a probe success and
 * refreshes the node's inventory; anything else is a failure; the registry applies rise/fall. The
 * first probe of each node is spread over the jitter window so a thousand nodes do not all fire at
 * once. A probe that fails on a reused pooled connection before any byte is retried at once on a
 * fresh one (the server closed an idle connection; that says nothing about the node). After a
 * good probe the engine's load endpoint is scraped on its own call (signals.h: llama-server
 * /metrics or /slots, vLLM /metrics, Ollama /api/ps); a scrape never changes liveness, and one
 * that fails only drops the node's signals. The context length of each model (docs/routing.md
 * "Context length") comes with the model list where the engine puts it there (vLLM's
 * max_model_len, llama-server's meta.n_ctx, an agent's MODEL); otherwise it is asked on a call
 * of its own after a good probe: llama-server's /props, Ollama's /api/show one model at a time
 * — for models whose context is not known yet, and every CTX_REFRESH_PROBES good probes for
 * all (an engine restarted with another context). The loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/gw.h"
#include "gw/health.h"
#include "gw/signals.h"
#include "gw/upstream.h"
#include "proto/engine_ctx.h"
#include "proto/node_api.h"

enum {
    PROBE_MAX_BODY = 4 * 1024 * 1024,
    SIGNALS_MAX_BODY = 2 * 1024 * 1024,
    CTX_MAX_BODY = 4 * 1024 * 1024, /* /props carries the chat template; /api/show the license */
    CTX_REFRESH_PROBES = 6,         /* every this many good probes, ask about every model again */
};

struct probe {
    struct gw *g;
    struct node *node;
    uv_timer_t timer;
    struct http_call *call;
    struct buf body;
    int status;
    bool again_fresh;
    bool stopping;
    /* the engine's load endpoint (signals.h), scraped after each good probe */
    enum signals_source sig_src; /* SIG_NONE: nothing to scrape (or every endpoint is off) */
    struct http_call *sig_call;
    struct buf sig_body;
    int sig_status;
    /* the context length: /props (llama-server) or /api/show per model (Ollama) */
    struct http_call *ctx_call;
    struct buf ctx_body, ctx_req;
    int ctx_status;
    unsigned ctx_probes;             /* good probes since every model was last asked about */
    bool ctx_all;                    /* this round asks about every model */
    bool ctx_off;                    /* the endpoint is not there (404/405/501): until a refresh */
    bool ctx_said_off;               /* ... and the log said so once */
    size_t ctx_next;                 /* Ollama: the next model index to consider */
    char ctx_model[NODE_API_MAX_ID]; /* Ollama: the model asked about */
};

static void start_scrape(struct probe *pr);
static void start_ctx(struct probe *pr);

static void schedule(struct probe *pr, uint64_t delay_ms);

static uint64_t jitter(uint64_t j)
{
    return j ? (uint64_t)rand() % (2 * j + 1) : 0;
}

static uint32_t ctx32(int64_t v)
{
    return v <= 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* An agent's /drover/v1/health (docs/node_api.md), read by proto's parser: routable
 * inventory is the models with status "loaded"; an agent whose engine is down is a failed
 * probe. */
static void parse_agent_health(struct probe *pr)
{
    struct gw *g = pr->g;
    struct node_api_health h;
    struct gw_error err = {0};
    if (node_api_health_parse(pr->body.p, pr->body.len, &h, &err)) {
        char why[96];
        snprintf(why, sizeof why, "bad health answer: %.70s", err.msg);
        node_api_health_free(&h);
        registry_probe_failed(&g->reg, pr->node, gw_now_ms(g), why);
        return;
    }
    if (!h.ok) {
        node_api_health_free(&h);
        registry_probe_failed(&g->reg, pr->node, gw_now_ms(g), "agent says engine_down");
        return;
    }
    size_t n = h.models.n;
    struct strv *ids = xcalloc(n ? n : 1, sizeof *ids);
    struct strv *disk = xcalloc(n ? n : 1, sizeof *disk);
    int64_t *sizes = xcalloc(n ? n : 1, sizeof *sizes);
    size_t k = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        const struct node_api_model *m = &h.models.v[i];
        struct strv id = strv_from_cstr(m->id);
        if (id.len == 0) continue;
        if (m->status != NODE_API_MODEL_LOADED) {
            /* on disk (or loading): placement may send requests or a load there */
            disk[d++] = id;
            continue;
        }
        sizes[k] = m->size_mb > 0 ? m->size_mb : 0;
        ids[k++] = id;
    }
    registry_set_models(pr->node, ids, k);
    for (size_t i = 0; i < k; i++) {
        struct node_model *nm = node_model_find(pr->node, ids[i]);
        const struct node_api_model *am = node_api_models_find(&h.models, ids[i]);
        if (nm && am && am->ctx_tokens > 0) /* what the agent read from its engine */
            registry_set_model_ctx(pr->node, nm, ctx32(am->ctx_tokens), "agent");
        if (nm && sizes[i]) nm->size_mb = (uint64_t)sizes[i];
        /* a replica that just appeared has not been idle: its idle time starts now */
        if (nm && nm->last_used_ms == 0) nm->last_used_ms = gw_now_ms(g);
    }
    registry_set_disk(pr->node, disk, d);
    xfree(sizes);
    xfree(disk);
    xfree(ids);
    node_api_health_free(&h);
    registry_probe_ok(&g->reg, pr->node, gw_now_ms(g));
}

/* Returns whether the probe was good (the side calls follow only a good one). */
static bool parse_inventory(struct probe *pr)
{
    if (pr->node->via_agent) {
        parse_agent_health(pr);
        return false; /* an agent's node has no side calls: it reports for itself */
    }
    /* the engine's own list, read by the parser the agent uses too (proto) */
    struct node_api_models l = {0};
    struct gw_error err = {0};
    bool ollama = pr->node->kind == NODE_KIND_OLLAMA; /* /api/tags: models[].name */
    int rc = ollama ? node_api_ollama_list_parse(pr->body.p, pr->body.len, false, &l, &err)
                    : node_api_oai_models_parse(pr->body.p, pr->body.len, &l, &err);
    if (rc) {
        node_api_models_free(&l);
        registry_probe_failed(&pr->g->reg, pr->node, gw_now_ms(pr->g),
                              err.msg[0] ? err.msg : "model list is not JSON");
        return false;
    }
    struct strv *ids = xcalloc(l.n ? l.n : 1, sizeof *ids);
    for (size_t i = 0; i < l.n; i++) ids[i] = strv_from_cstr(l.v[i].id);
    registry_set_models(pr->node, ids, l.n);
    for (size_t i = 0; i < l.n; i++) /* vLLM's max_model_len, llama-server's meta.n_ctx */
        if (l.v[i].ctx_tokens > 0)
            registry_set_model_ctx(pr->node, node_model_find(pr->node, ids[i]),
                                   ctx32(l.v[i].ctx_tokens), "models");
    xfree(ids);
    node_api_models_free(&l);
    registry_probe_ok(&pr->g->reg, pr->node, gw_now_ms(pr->g));
    return true;
}

static void on_head(struct http_call *call, const struct http_response_head *head, void *ctx)
{
    struct probe *pr = ctx;
    (void)call;
    pr->status = head->status;
}

static void on_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    struct probe *pr = ctx;
    if (buf_append(&pr->body, p, len)) {
        http_call_cancel(call);
        pr->call = NULL;
        buf_free(&pr->body);
        registry_probe_failed(&pr->g->reg, pr->node, gw_now_ms(pr->g), "model list too large");
        schedule(pr, pr->g->cfg.reg.probe_interval_ms);
    }
}

static void start_probe(struct probe *pr, bool fresh);

static void on_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct probe *pr = ctx;
    (void)call;
    pr->call = NULL;
    struct gw *g = pr->g;
    if (res->err == 0 && pr->status == 200) {
        if (parse_inventory(pr)) {
            start_scrape(pr);
            start_ctx(pr);
        }
    } else if (res->err && res->reused_conn && !res->got_head && !pr->again_fresh &&
               res->err != GW_E_TOTAL_TIMEOUT && res->err != GW_E_FIRST_BYTE_TIMEOUT) {
        buf_free(&pr->body);
        pr->again_fresh = true;
        start_probe(pr, true);
        return;
    } else {
        char why[96];
        if (res->err)
            snprintf(why, sizeof why, "%s", gw_strerror(res->err));
        else
            snprintf(why, sizeof why, "status %d", pr->status);
        /* Busy is not dead: a probe that timed out (or found no free slot) while the node's
         * requests progress lost a race to real work; it counts neither way. */
        bool timed_out = res->err == GW_E_TOTAL_TIMEOUT || res->err == GW_E_FIRST_BYTE_TIMEOUT ||
                         res->err == GW_E_IDLE_TIMEOUT || pr->status == 503 || pr->status == 429;
        uint64_t now = gw_now_ms(g);
        if (timed_out && registry_probe_is_busy(&g->reg, pr->node, now))
            registry_probe_busy(&g->reg, pr->node, now, why);
        else
            registry_probe_failed(&g->reg, pr->node, now, why);
    }
    buf_free(&pr->body);
    pr->again_fresh = false;
    schedule(pr, g->cfg.reg.probe_interval_ms);
}

static void start_probe(struct probe *pr, bool fresh)
{
    struct gw *g = pr->g;
    struct node *n = pr->node;
    if (pr->stopping || n->admin == ADMIN_REMOVED) return;
    if (n->admin == ADMIN_PENDING || (n->via_agent && !n->api_key)) {
        /* nothing to ask yet: a pending node gets no traffic, an agent without its key
         * would answer 401 */
        schedule(pr, g->cfg.reg.probe_interval_ms);
        return;
    }
    buf_init(&pr->body, PROBE_MAX_BODY);
    pr->status = 0;
    struct http_header hdrs[1];
    struct upstream_auth auth;
    size_t nh = upstream_auth_header(n, &auth, &hdrs[0]);
    struct http_client_request req = {
        .method = STRV_LIT("GET"),
        .target = upstream_probe_path(n),
        .headers = hdrs,
        .n_headers = nh,
        .connect_timeout_ms = g->cfg.probe_timeout_ms < g->cfg.connect_timeout_ms
                                  ? g->cfg.probe_timeout_ms
                                  : g->cfg.connect_timeout_ms,
        .total_timeout_ms = g->cfg.probe_timeout_ms,
        .no_reuse = fresh,
    };
    upstream_address(n, &req);
    static const struct http_client_callbacks cbs = {on_head, on_data, on_done};
    int rc = http_client_request(g->client, &req, &cbs, pr, &pr->call);
    if (rc) {
        pr->call = NULL;
        buf_free(&pr->body);
        registry_probe_failed(&g->reg, n, gw_now_ms(g), gw_strerror(rc));
        schedule(pr, g->cfg.reg.probe_interval_ms);
    }
}

/* ---- engine load signals ----------------------------------------------------------- */

static void sig_on_head(struct http_call *call, const struct http_response_head *head, void *ctx)
{
    struct probe *pr = ctx;
    (void)call;
    pr->sig_status = head->status;
}

static void sig_on_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    struct probe *pr = ctx;
    (void)call;
    if (buf_append(&pr->sig_body, p, len)) pr->sig_status = -1; /* too large: dropped */
}

static void sig_on_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct probe *pr = ctx;
    (void)call;
    pr->sig_call = NULL;
    struct node *n = pr->node;
    struct signals_report r;
    if (res->err == 0 && pr->sig_status == 200 &&
        signals_parse(pr->sig_src, pr->sig_body.p, pr->sig_body.len, &r) == 0) {
        signals_apply(n, pr->sig_src, &r, gw_now_ms(pr->g));
    } else {
        signals_failed(n);
        if (res->err == 0 &&
            (pr->sig_status == 404 || pr->sig_status == 501 || pr->sig_status == 200)) {
            /* switched off (llama-server without --metrics answers 501) or not this format:
             * try the next endpoint from the next probe on, and say so once */
            enum signals_source next = signals_fallback(pr->sig_src);
            LOGI("signals_off", "node=%s path=%s status=%d next=%s", n->name,
                 signals_path(pr->sig_src), pr->sig_status, next ? signals_path(next) : "none");
            pr->sig_src = next;
        }
    }
    buf_free(&pr->sig_body);
}

static void start_scrape(struct probe *pr)
{
    struct gw *g = pr->g;
    struct node *n = pr->node;
    if (!g->cfg.signals_enabled || pr->sig_call || pr->stopping || n->via_agent) return;
    if (!pr->sig_src) return;
    buf_init(&pr->sig_body, SIGNALS_MAX_BODY);
    pr->sig_status = 0;
    struct http_header hdrs[1];
    struct upstream_auth auth;
    size_t nh = upstream_auth_header(n, &auth, &hdrs[0]);
    struct http_client_request req = {
        .method = STRV_LIT("GET"),
        .target = strv_from_cstr(signals_path(pr->sig_src)),
        .headers = hdrs,
        .n_headers = nh,
        .connect_timeout_ms = g->cfg.probe_timeout_ms < g->cfg.connect_timeout_ms
                                  ? g->cfg.probe_timeout_ms
                                  : g->cfg.connect_timeout_ms,
        .total_timeout_ms = g->cfg.probe_timeout_ms,
    };
    upstream_address(n, &req);
    static const struct http_client_callbacks cbs = {sig_on_head, sig_on_data, sig_on_done};
    if (http_client_request(g->client, &req, &cbs, pr, &pr->sig_call)) {
        pr->sig_call = NULL;
        buf_free(&pr->sig_body);
        signals_failed(n);
    }
}

/* ---- context length ------------------------------------------------------------------ */

static bool ctx_wanted(const struct probe *pr, const struct node_model *m, const char *source)
{
    /* what the model list said is renewed by every probe: never asked about again */
    if (m->ctx_tokens && m->ctx_source && strcmp(m->ctx_source, "models") == 0) return false;
    return !m->ctx_tokens || (pr->ctx_all && m->ctx_source && !strcmp(m->ctx_source, source));
}

static void ctx_on_head(struct http_call *call, const struct http_response_head *head, void *ctx)
{
    struct probe *pr = ctx;
    (void)call;
    pr->ctx_status = head->status;
}

static void ctx_on_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    struct probe *pr = ctx;
    (void)call;
    if (buf_append(&pr->ctx_body, p, len)) pr->ctx_status = -1; /* too large: not read */
}

static bool ctx_next_call(struct probe *pr);

static void ctx_on_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct probe *pr = ctx;
    (void)call;
    pr->ctx_call = NULL;
    struct node *n = pr->node;
    bool ollama = n->kind == NODE_KIND_OLLAMA;
    int64_t v = 0;
    struct gw_error err = {0};
    bool ok = res->err == 0 && pr->ctx_status == 200 &&
              (ollama ? engine_ctx_ollama_show(pr->ctx_body.p, pr->ctx_body.len, &v, &err)
                      : engine_ctx_llamacpp_props(pr->ctx_body.p, pr->ctx_body.len, &v, &err)) == 0;
    if (ok && ollama) {
        registry_set_model_ctx(n, node_model_find(n, strv_from_cstr(pr->ctx_model)), ctx32(v),
                               "api_show");
    } else if (ok) {
        /* llama-server serves one model (a slot's n_ctx is every model's) */
        for (size_t i = 0; i < n->n_models; i++)
            if (ctx_wanted(pr, &n->models[i], "props"))
                registry_set_model_ctx(n, &n->models[i], ctx32(v), "props");
    } else if (res->err == 0 && ((pr->ctx_status == 404 && !ollama) /* Ollama: that model */ ||
                                 pr->ctx_status == 405 || pr->ctx_status == 501)) {
        if (!pr->ctx_said_off)
            LOGI("context_unknown", "node=%s path=%s status=%d", n->name,
                 ollama ? ENGINE_CTX_PATH_OLLAMA_SHOW : ENGINE_CTX_PATH_PROPS, pr->ctx_status);
        pr->ctx_said_off = true;
        pr->ctx_off = true; /* not this engine's: asked again at the next refresh */
    } else {
        LOGD("context_unknown", "node=%s status=%d err=%s reason=\"%s\"", n->name, pr->ctx_status,
             gw_strerror(res->err), err.msg);
    }
    buf_free(&pr->ctx_body);
    buf_free(&pr->ctx_req);
    if (ollama && !pr->ctx_off && !pr->stopping) (void)ctx_next_call(pr);
}

/* Starts the next call of this round; false when the round is over. */
static bool ctx_next_call(struct probe *pr)
{
    struct gw *g = pr->g;
    struct node *n = pr->node;
    bool ollama = n->kind == NODE_KIND_OLLAMA;
    const char *path = ollama ? ENGINE_CTX_PATH_OLLAMA_SHOW : ENGINE_CTX_PATH_PROPS;
    if (ollama) {
        while (pr->ctx_next < n->n_models && !ctx_wanted(pr, &n->models[pr->ctx_next], "api_show"))
            pr->ctx_next++;
        if (pr->ctx_next >= n->n_models) return false;
        snprintf(pr->ctx_model, sizeof pr->ctx_model, "%s", n->models[pr->ctx_next++].id);
        buf_init(&pr->ctx_req, NODE_API_MAX_ID * 6 + 32);
        if (engine_ctx_ollama_show_body(&pr->ctx_req, pr->ctx_model)) {
            buf_free(&pr->ctx_req);
            return false;
        }
    } else {
        bool any = false;
        for (size_t i = 0; i < n->n_models && !any; i++)
            any = ctx_wanted(pr, &n->models[i], "props");
        if (!any) return false;
    }
    buf_init(&pr->ctx_body, CTX_MAX_BODY);
    pr->ctx_status = 0;
    struct http_header hdrs[2];
    struct upstream_auth auth;
    size_t nh = upstream_auth_header(n, &auth, &hdrs[0]);
    if (ollama)
        hdrs[nh++] = (struct http_header){STRV_LIT("Content-Type"), STRV_LIT("application/json")};
    struct http_client_request req = {
        .method = ollama ? STRV_LIT("POST") : STRV_LIT("GET"),
        .target = strv_from_cstr(path),
        .headers = hdrs,
        .n_headers = nh,
        .body = ollama ? buf_view(&pr->ctx_req) : STRV_NULL,
        .connect_timeout_ms = g->cfg.probe_timeout_ms < g->cfg.connect_timeout_ms
                                  ? g->cfg.probe_timeout_ms
                                  : g->cfg.connect_timeout_ms,
        .total_timeout_ms = g->cfg.probe_timeout_ms,
    };
    upstream_address(n, &req);
    static const struct http_client_callbacks cbs = {ctx_on_head, ctx_on_data, ctx_on_done};
    if (http_client_request(g->client, &req, &cbs, pr, &pr->ctx_call)) {
        pr->ctx_call = NULL;
        buf_free(&pr->ctx_body);
        buf_free(&pr->ctx_req);
        return false;
    }
    return true;
}

/* After a good probe of a node without an agent: a round of context calls when a model's
 * context is not known, or every CTX_REFRESH_PROBES probes. */
static void start_ctx(struct probe *pr)
{
    struct node *n = pr->node;
    if (pr->stopping || pr->ctx_call || n->via_agent) return;
    if (n->kind != NODE_KIND_LLAMACPP && n->kind != NODE_KIND_OLLAMA) return;
    if (++pr->ctx_probes >= CTX_REFRESH_PROBES) {
        pr->ctx_probes = 0;
        pr->ctx_all = true;
        pr->ctx_off = false;
        /* an engine endpoint switched off by one odd answer gets another chance too */
        pr->sig_src = signals_source_for(n->kind);
    } else {
        pr->ctx_all = false;
    }
    if (pr->ctx_off) return;
    pr->ctx_next = 0;
    (void)ctx_next_call(pr);
}

static void on_timer(uv_timer_t *t)
{
    struct probe *pr = t->data;
    if (!pr->call) start_probe(pr, false);
}

static void schedule(struct probe *pr, uint64_t delay_ms)
{
    if (pr->stopping) return;
    /* Jitter spreads probes of many nodes; it never exceeds a quarter of the interval, so a
     * short interval (tests, small fleets) keeps its meaning. */
    uint64_t j = pr->g->cfg.probe_jitter_ms;
    if (j > pr->g->cfg.reg.probe_interval_ms / 4) j = pr->g->cfg.reg.probe_interval_ms / 4;
    uint64_t d = delay_ms + jitter(j);
    d = d > j ? d - j : 1;
    uv_timer_start(&pr->timer, on_timer, d, 0);
}

void health_attach(struct gw *g, struct node *n)
{
    if (n->health) return;
    struct probe *pr = xcalloc(1, sizeof *pr);
    pr->g = g;
    pr->node = n;
    pr->sig_src = signals_source_for(n->kind);
    uv_timer_init(g->loop, &pr->timer);
    pr->timer.data = pr;
    n->health = pr;
    /* spread the first probes over the jitter window (at most one interval) */
    uint64_t spread = g->cfg.probe_jitter_ms < g->cfg.reg.probe_interval_ms
                          ? g->cfg.probe_jitter_ms
                          : g->cfg.reg.probe_interval_ms;
    uv_timer_start(&pr->timer, on_timer, spread ? (uint64_t)rand() % spread : 0, 0);
}

void health_probe_now(struct gw *g, struct node *n)
{
    (void)g;
    struct probe *pr = n->health;
    if (!pr || pr->call || pr->stopping) return;
    uv_timer_stop(&pr->timer);
    uv_timer_start(&pr->timer, on_timer, 0, 0);
}

void health_start(struct gw *g)
{
    for (size_t i = 0; i < g->reg.n; i++) health_attach(g, g->reg.nodes[i]);
}

static void on_close(uv_handle_t *h)
{
    xfree(h->data);
}

void health_stop(struct gw *g)
{
    for (size_t i = 0; i < g->reg.n; i++) {
        struct probe *pr = g->reg.nodes[i]->health;
        if (!pr) continue;
        pr->stopping = true;
        if (pr->call) http_call_cancel(pr->call);
        pr->call = NULL;
        buf_free(&pr->body);
        if (pr->sig_call) http_call_cancel(pr->sig_call);
        pr->sig_call = NULL;
        buf_free(&pr->sig_body);
        if (pr->ctx_call) http_call_cancel(pr->ctx_call);
        pr->ctx_call = NULL;
        buf_free(&pr->ctx_body);
        buf_free(&pr->ctx_req);
        uv_close((uv_handle_t *)&pr->timer, on_close);
        g->reg.nodes[i]->health = NULL;
    }
}
