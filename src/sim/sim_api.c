/* sim_api — the wire formats of a virtual node: OpenAI (/v1/...) and Ollama (/api/...) routes,
 * error bodies in each format's shape, fault injection, and token pacing with uv timers.
 * A request's life: fault decision -> (slow_headers delay) -> parse and validate -> admit to a
 * slot or the queue (sim_node) -> model loaded -> TTFT timer -> tokens -> end. Each struct
 * sim_req owns one timer; it is freed from that timer's close callback, after the response
 * ended or the client went away, whichever comes first. Loop thread only. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "proto/node_api.h"
#include "sim/sim_node.h"
#include "sim/sim_out.h"
#include "sim/sim_sock.h"
#include "sim/sim_text.h"

enum {
    SIM_JSON_MAX_DEPTH = 64,
    SIM_OUT_MAX_BYTES = 64 * 1024 * 1024,
    SIM_MAX_INPUTS = 2048,
    SIM_RESET_DELAY_MS = 30, /* lets a complete response reach the client before the RST */
    SIM_PULL_STEPS = 4,
};

static const char *const fingerprint = "drover-sim";

/* --- request lifecycle ---------------------------------------------------------------- */

static void req_free_cb(uv_handle_t *h)
{
    struct sim_req *r = h->data;
    xfree(r->prompt);
    for (size_t i = 0; i < r->n_inputs; i++) xfree(r->inputs[i]);
    xfree(r->inputs);
    xfree(r);
}

/* The response ended (or the client left): give back the slot and free r soon. */
static void req_done(struct sim_req *r)
{
    if (r->closing) return;
    sim_node_release(r);
    r->closing = true;
    r->phase = SIM_REQ_DONE;
    r->http = NULL;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, req_free_cb);
}

static void on_abort(struct http_request *req, void *ctx)
{
    struct sim_req *r = ctx;
    (void)req;
    LOGD("sim_client_gone", "node=%u req=%s", r->node->index, r->id);
    r->http = NULL;
    req_done(r);
}

/* A write said the client is gone: stop producing and wait for the abort callback. */
static void req_gone(struct sim_req *r)
{
    r->gone = true;
    uv_timer_stop(&r->timer);
}

static void timer_in(struct sim_req *r, uint64_t ms, uv_timer_cb cb)
{
    uv_timer_start(&r->timer, cb, ms, 0);
}

static struct sim_req *req_of(uv_timer_t *t)
{
    return t->data;
}

/* --- writing ------------------------------------------------------------------------- */

static bool is_ollama_path(struct strv path)
{
    return strv_starts_with(path, STRV_LIT("/api/"));
}

struct hdrs {
    struct http_header h[4];
    size_t n;
    char retry[16];
};

static void hdr_add(struct hdrs *h, const char *name, const char *value)
{
    h->h[h->n].name = strv_from_cstr(name);
    h->h[h->n].value = strv_from_cstr(value);
    h->n++;
}

static void on_reset_timer(uv_timer_t *t)
{
    struct sim_req *r = req_of(t);
    if (sim_sock_matches(r->reset_fd, r->node->port, r->peer)) (void)sim_sock_reset(r->reset_fd);
    req_done(r);
}

/* The response is complete; reset_after_complete sends the RST a moment later. */
static void after_complete(struct sim_req *r)
{
    r->http = NULL;
    if (!r->fault.reset_after_complete || r->reset_fd < 0) {
        req_done(r);
        return;
    }
    sim_node_release(r);
    r->phase = SIM_REQ_RESET_WAIT;
    timer_in(r, SIM_RESET_DELAY_MS, on_reset_timer);
}

static void prepare_reset(struct sim_req *r)
{
    if (r->fault.reset_after_complete && r->http)
        r->reset_fd = sim_sock_find(r->node->port, r->http->peer);
}

/* Sends a whole response, honouring cut_after (bytes) and reset_after_complete. */
static void respond(struct sim_req *r, int status, struct hdrs *h, const char *ctype,
                    const char *body, size_t len)
{
    if (!r->http) return;
    if (ctype) hdr_add(h, "Content-Type", ctype);
    if (r->fault.cut_after >= 0 && (uint64_t)r->fault.cut_after < len) {
        if (http_stream_start(r->http, status, h->h, h->n, (int64_t)len) ||
            http_stream_write(r->http, body, (size_t)r->fault.cut_after)) {
            req_gone(r);
            return;
        }
        http_stream_abort(r->http);
        r->http = NULL;
        req_done(r);
        return;
    }
    prepare_reset(r);
    if (http_respond(r->http, status, h->h, h->n, body, len)) {
        req_gone(r);
        return;
    }
    after_complete(r);
}

static void respond_out(struct sim_req *r, int status, struct hdrs *h, const char *ctype,
                        struct sim_out *o)
{
    if (o->err) {
        const char *m = "{\"error\":\"response too large\"}";
        struct hdrs none = {0};
        respond(r, 500, &none, "application/json", m, strlen(m));
    } else {
        respond(r, status, h, ctype, o->b.p ? o->b.p : "", o->b.len);
    }
    sim_out_free(o);
}

static const char *error_type(int status)
{
    if (status == 401) return "authentication_error";
    if (status < 500) return "invalid_request_error";
    if (status == 503) return "unavailable_error";
    return "server_error";
}

/* An error in the request's format: OpenAI {"error":{...}} or Ollama {"error":"..."}. */
static void respond_error(struct sim_req *r, int status, const char *code, const char *msg,
                          int retry_after_s)
{
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    if (r->ollama) {
        sim_out_raw(&o, "{\"error\":");
        sim_out_cstr(&o, msg);
        sim_out_raw(&o, "}");
    } else {
        sim_out_raw(&o, "{\"error\":{\"message\":");
        sim_out_cstr(&o, msg);
        sim_out_fmt(&o, ",\"type\":\"%s\",\"param\":null,\"code\":", error_type(status));
        if (code)
            sim_out_cstr(&o, code);
        else
            sim_out_fmt(&o, "%d", status);
        sim_out_raw(&o, "}}");
    }
    if (retry_after_s >= 0) {
        snprintf(h.retry, sizeof h.retry, "%d", retry_after_s);
        hdr_add(&h, "Retry-After", h.retry);
    }
    respond_out(r, status, &h, "application/json", &o);
}

static bool stream_begin(struct sim_req *r, const char *ctype)
{
    struct hdrs h = {0};
    hdr_add(&h, "Content-Type", ctype);
    hdr_add(&h, "Cache-Control", "no-cache");
    prepare_reset(r);
    if (http_stream_start(r->http, 200, h.h, h.n, -1)) {
        req_gone(r);
        return false;
    }
    if (r->fault.cut_after == 0) {
        http_stream_abort(r->http);
        r->http = NULL;
        req_done(r);
        return false;
    }
    return true;
}

/* Writes one SSE event or NDJSON line; false when the stream is over (cut or client gone). */
static bool stream_event(struct sim_req *r, struct sim_out *o)
{
    bool ok = !o->err && http_stream_write(r->http, o->b.p, o->b.len) == 0;
    sim_out_reset(o);
    if (!ok) {
        req_gone(r);
        return false;
    }
    r->events++;
    if (r->fault.cut_after >= 0 && r->events >= (uint64_t)r->fault.cut_after) {
        LOGD("sim_cut", "node=%u req=%s events=%llu", r->node->index, r->id,
             (unsigned long long)r->events);
        http_stream_abort(r->http);
        r->http = NULL;
        req_done(r);
        return false;
    }
    return true;
}

static void stream_complete(struct sim_req *r)
{
    if (http_stream_end(r->http)) {
        req_gone(r);
        return;
    }
    after_complete(r);
}

/* --- small renderers ------------------------------------------------------------------ */

static void iso_time(char *out, size_t cap, uint64_t wall_us)
{
    time_t s = (time_t)(wall_us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%06lluZ", date, (unsigned long long)(wall_us % 1000000));
}

static uint64_t wall_us(void)
{
    return clock_wall_ms() * 1000 + clock_mono_us() % 1000;
}

static void digest_hex(const char *name, char out[65])
{
    for (int i = 0; i < 4; i++) {
        uint64_t h = sim_text_hash((uint64_t)i, name, strlen(name));
        snprintf(out + i * 16, 17, "%016llx", (unsigned long long)h);
    }
}

static uint64_t model_bytes(struct sim_node *n, struct sim_model_spec *m)
{
    return sim_config_model_vram_mb(n->sim->cfg, m) * 1024 * 1024;
}

/* The context of a model on this node (sim_config_ctx), and whether the model lists show it. */
static uint64_t model_ctx(const struct sim_node *n, const struct sim_model_state *ms)
{
    return sim_config_ctx(n->sim->cfg, ms ? ms->spec : NULL, n->index);
}

static bool ctx_in_lists(const struct sim_node *n)
{
    return sim_config_ctx_hidden(n->sim->cfg) == 0;
}

static void ollama_model_obj(struct sim_out *o, struct sim_node *n, struct sim_model_state *ms,
                             bool ps)
{
    char digest[65], t[48];
    digest_hex(ms->spec->name, digest);
    sim_out_raw(o, "{\"name\":");
    sim_out_cstr(o, ms->spec->name);
    sim_out_raw(o, ",\"model\":");
    sim_out_cstr(o, ms->spec->name);
    if (!ps) {
        iso_time(t, sizeof t, 1700000000ULL * 1000000);
        sim_out_fmt(o, ",\"modified_at\":\"%s\"", t);
    }
    sim_out_fmt(o, ",\"size\":%llu,\"digest\":\"%s\"", (unsigned long long)model_bytes(n, ms->spec),
                digest);
    sim_out_fmt(o,
                ",\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"sim\","
                "\"families\":[\"sim\"],\"parameter_size\":\"%s\","
                "\"quantization_level\":\"Q4_K_M\"}",
                ms->spec->kind == SIM_MODEL_EMBEDDING ? "137M" : "8B");
    if (ps) {
        iso_time(t, sizeof t, (clock_wall_ms() + 5 * 60 * 1000) * 1000);
        sim_out_fmt(o, ",\"expires_at\":\"%s\",\"size_vram\":%llu", t,
                    (unsigned long long)ms->vram_mb * 1024 * 1024);
        /* Ollama's /api/ps: the context the model is loaded with */
        if (model_ctx(n, ms) && ctx_in_lists(n))
            sim_out_fmt(o, ",\"context_length\":%llu", (unsigned long long)model_ctx(n, ms));
    }
    sim_out_raw(o, "}");
}

/* --- simple routes -------------------------------------------------------------------- */

static void h_health(struct sim_req *r)
{
    const char *b = "{\"status\":\"ok\"}";
    struct hdrs h = {0};
    respond(r, 200, &h, "application/json", b, strlen(b));
}

static void h_root(struct sim_req *r)
{
    const char *b = "Ollama is running";
    struct hdrs h = {0};
    respond(r, 200, &h, "text/plain; charset=utf-8", b, strlen(b));
}

static void h_version(struct sim_req *r)
{
    const char *b = "{\"version\":\"0.6.0\"}";
    struct hdrs h = {0};
    respond(r, 200, &h, "application/json", b, strlen(b));
}

/* GET /sim/v1/hardware: the node's hardware in the discovery shape of node_api (gpus, per
 * node CUDA/ROCm and driver versions) plus "context_size" and live "vram_used_mb". */
static void h_hardware(struct sim_req *r)
{
    const struct sim_config *c = r->node->sim->cfg;
    const struct sim_hw *hw = r->node->index < c->n_hw ? &c->hw[r->node->index] : NULL;
    struct node_api_discovery *d = xmalloc(sizeof *d);
    node_api_discovery_init(d);
    snprintf(d->hostname, sizeof d->hostname, "sim-%u", r->node->index);
    for (size_t i = 0; hw && i < hw->n_gpus; i++) {
        struct node_api_gpu *g = &d->gpus[d->n_gpus++];
        g->index = (int)i;
        snprintf(g->name, sizeof g->name, "%s", hw->gpus[i].name);
        g->vram_total_mb = (int64_t)hw->gpus[i].vram_mb;
        g->vram_free_mb = -1;
        snprintf(g->compute_capability, sizeof g->compute_capability, "%s",
                 hw->gpus[i].compute_capability);
    }
    if (hw) {
        snprintf(d->cuda_version, sizeof d->cuda_version, "%s", hw->cuda_version);
        snprintf(d->rocm_version, sizeof d->rocm_version, "%s", hw->rocm_version);
        snprintf(d->driver_version, sizeof d->driver_version, "%s", hw->driver_version);
    }
    struct buf b;
    buf_init(&b, 1 << 20);
    int rc = node_api_discovery_emit(&b, d);
    xfree(d);
    if (!rc) {
        b.len--; /* reopen the object */
        rc = buf_appendf(&b, ",\"context_size\":%llu,\"vram_used_mb\":%llu}",
                         (unsigned long long)(hw ? hw->context_size : 0),
                         (unsigned long long)r->node->vram_used_mb);
    }
    struct hdrs h = {0};
    if (rc)
        respond_error(r, 500, "server_error", "hardware answer too large", -1);
    else
        respond(r, 200, &h, "application/json", b.p, b.len);
    buf_free(&b);
}

static void h_metrics(struct sim_req *r)
{
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    sim_node_metrics(r->node, &o);
    respond_out(r, 200, &h, "text/plain; version=0.0.4", &o);
}

static void h_oai_models(struct sim_req *r)
{
    struct sim_node *n = r->node;
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    sim_out_raw(&o, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < n->n_models; i++) {
        struct sim_model_state *ms = n->models[i];
        if (!ms->present) continue;
        sim_out_raw(&o, first ? "{\"id\":" : ",{\"id\":");
        first = false;
        sim_out_cstr(&o, ms->spec->name);
        sim_out_fmt(&o, ",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"%s\"",
                    fingerprint);
        /* vLLM's max_model_len, llama-server's meta.n_ctx (per slot) */
        uint64_t ctx = model_ctx(n, ms);
        if (ctx && ctx_in_lists(n))
            sim_out_fmt(&o, ",\"max_model_len\":%llu,\"meta\":{\"n_ctx\":%llu}",
                        (unsigned long long)ctx, (unsigned long long)ctx);
        sim_out_raw(&o, "}");
    }
    sim_out_raw(&o, "]}");
    respond_out(r, 200, &h, "application/json", &o);
}

static void h_tags(struct sim_req *r, bool ps)
{
    struct sim_node *n = r->node;
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    sim_out_raw(&o, "{\"models\":[");
    bool first = true;
    for (size_t i = 0; i < n->n_models; i++) {
        struct sim_model_state *ms = n->models[i];
        if (!ms->present || (ps && ms->phase != SIM_LOADED)) continue;
        if (!first) sim_out_raw(&o, ",");
        first = false;
        ollama_model_obj(&o, n, ms, ps);
    }
    sim_out_raw(&o, "]}");
    respond_out(r, 200, &h, "application/json", &o);
}

/* GET /props, llama-server's shape: a slot's context in default_generation_settings.n_ctx
 * (the node's, else its first model's), total_slots, the model. 404 with --hide-ctx all. */
static void h_props(struct sim_req *r)
{
    struct sim_node *n = r->node;
    if (sim_config_ctx_hidden(n->sim->cfg) == 2) {
        respond_error(r, 404, "not_found", "not found", -1);
        return;
    }
    struct sim_model_state *first = NULL;
    for (size_t i = 0; i < n->n_models && !first; i++)
        if (n->models[i]->present) first = n->models[i];
    uint64_t ctx = sim_config_ctx(n->sim->cfg, NULL, n->index);
    if (!ctx) ctx = model_ctx(n, first);
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    sim_out_fmt(&o,
                "{\"default_generation_settings\":{\"params\":{\"n_predict\":-1},\"n_ctx\":%llu},"
                "\"total_slots\":%u,\"model_alias\":",
                (unsigned long long)ctx, n->sim->cfg->slots);
    sim_out_cstr(&o, first ? first->spec->name : "");
    sim_out_raw(&o, ",\"model_path\":\"/sim/model.gguf\",\"build_info\":\"drover-sim\"}");
    respond_out(r, 200, &h, "application/json", &o);
}

/* POST /api/show {"model":"x"}, Ollama's shape: "parameters" with num_ctx and "model_info"
 * with <arch>.context_length (both absent with --hide-ctx all or no context). */
static void h_show(struct sim_req *r)
{
    struct sim_node *n = r->node;
    struct gw_error e = {0};
    struct json_object *root =
        json_parse_strict(r->http->body.p, r->http->body.len, SIM_JSON_MAX_DEPTH, &e);
    struct strv name = STRV_NULL;
    if (!root || !json_object_is_type(root, json_type_object) ||
        (json_get_str(root, "model", &name) && json_get_str(root, "name", &name))) {
        respond_error(r, 400, "invalid_request", root ? "model is required" : e.msg, -1);
        if (root) json_object_put(root);
        return;
    }
    struct sim_model_state *ms = sim_node_model(n, name);
    if (!ms) {
        char msg[300];
        snprintf(msg, sizeof msg, "model '%.*s' not found", (int)(name.len > 200 ? 200 : name.len),
                 name.p);
        respond_error(r, 404, "model_not_found", msg, -1);
        json_object_put(root);
        return;
    }
    json_object_put(root);
    uint64_t ctx = sim_config_ctx_hidden(n->sim->cfg) == 2 ? 0 : model_ctx(n, ms);
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    sim_out_raw(&o, "{\"license\":\"\",\"modelfile\":\"FROM sim\\n\",\"parameters\":");
    char params[96];
    if (ctx)
        snprintf(params, sizeof params, "num_ctx                        %llu\nstop \"<|eot|>\"",
                 (unsigned long long)ctx);
    else
        snprintf(params, sizeof params, "stop \"<|eot|>\"");
    sim_out_cstr(&o, params);
    sim_out_fmt(&o, ",\"template\":\"{{ .Prompt }}\",\"details\":{\"format\":\"gguf\","
                    "\"family\":\"sim\"},\"model_info\":{\"general.architecture\":\"sim\"");
    if (ctx) sim_out_fmt(&o, ",\"sim.context_length\":%llu", (unsigned long long)ctx);
    sim_out_raw(&o, "},\"capabilities\":[\"completion\"]}");
    respond_out(r, 200, &h, "application/json", &o);
}

/* --- request parsing ---------------------------------------------------------------- */

struct parse {
    struct json_object *root;
    struct strv model;
    char msg[256];
};

static int bad(struct parse *p, const char *fmt, const char *a)
{
    snprintf(p->msg, sizeof p->msg, fmt, a);
    return GW_E_INVALID;
}

/* Optional bool: absent keeps *out. */
static int opt_bool(struct parse *p, struct json_object *o, const char *key, bool *out)
{
    int rc = json_get_bool(o, key, out);
    if (rc == GW_E_INVALID && !json_is_null(o, key)) return bad(p, "'%s' must be a boolean", key);
    return 0;
}

static int opt_count(struct parse *p, struct json_object *o, const char *key, int64_t *out)
{
    int rc = json_get_int(o, key, out);
    if (rc == GW_E_INVALID && !json_is_null(o, key)) return bad(p, "'%s' must be an integer", key);
    return 0;
}

/* Appends a message's text content (string, or array of {type:text,text}) to o. */
static int append_content(struct parse *p, struct json_object *msg, struct sim_out *o,
                          size_t *content_bytes)
{
    struct json_object *c = NULL;
    if (!json_object_object_get_ex(msg, "content", &c) || !c) return 0;
    if (json_object_is_type(c, json_type_string)) {
        size_t len = (size_t)json_object_get_string_len(c);
        sim_out_mem(o, json_object_get_string(c), len);
        *content_bytes += len;
        return 0;
    }
    if (!json_object_is_type(c, json_type_array))
        return bad(p, "%s", "message content must be a string or an array of parts");
    size_t n = json_object_array_length(c);
    for (size_t i = 0; i < n; i++) {
        struct json_object *part = json_object_array_get_idx(c, i);
        struct strv text;
        if (json_get_str(part, "text", &text) == 0) {
            sim_out_mem(o, text.p, text.len);
            *content_bytes += text.len;
        }
    }
    return 0;
}

/* messages -> rendered prompt; empty_ok for Ollama's load-only chat. */
static int parse_messages(struct parse *p, struct sim_req *r, bool empty_ok)
{
    struct json_object *msgs;
    int rc = json_get_arr(p->root, "messages", &msgs);
    if (rc == GW_E_NOTFOUND && empty_ok) return 0;
    if (rc) return bad(p, "%s", "'messages' must be an array");
    size_t n = json_object_array_length(msgs);
    if (n == 0) {
        if (empty_ok) return 0;
        return bad(p, "%s", "'messages' must not be empty");
    }
    struct sim_out o;
    size_t content = 0;
    sim_out_init(&o, SIZE_MAX / 2);
    for (size_t i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i);
        struct strv role;
        if (!m || !json_object_is_type(m, json_type_object)) {
            sim_out_free(&o);
            return bad(p, "%s", "each message must be an object");
        }
        if (json_get_str(m, "role", &role)) {
            sim_out_free(&o);
            return bad(p, "%s", "each message needs a string 'role'");
        }
        sim_out_mem(&o, role.p, role.len);
        sim_out_raw(&o, ": ");
        if (append_content(p, m, &o, &content)) {
            sim_out_free(&o);
            return GW_E_INVALID;
        }
        sim_out_raw(&o, "\n");
    }
    r->prompt = buf_take(&o.b, &r->prompt_len);
    r->prompt_tokens = sim_text_tokens(content);
    if (r->prompt_tokens == 0) r->prompt_tokens = 1;
    return 0;
}

static void set_prompt(struct sim_req *r, const char *s, size_t len)
{
    r->prompt = xstrndup(s, len);
    r->prompt_len = len;
    r->prompt_tokens = sim_text_tokens(len);
    if (r->prompt_tokens == 0) r->prompt_tokens = 1;
}

/* "prompt": string or array of strings (joined). */
static int parse_prompt(struct parse *p, struct sim_req *r, bool required)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(p->root, "prompt", &v) || !v) {
        if (required) return bad(p, "%s", "'prompt' is required");
        return 0;
    }
    if (json_object_is_type(v, json_type_string)) {
        if (!required && json_object_get_string_len(v) == 0) return 0;
        set_prompt(r, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        return 0;
    }
    if (!json_object_is_type(v, json_type_array) || required == false)
        return bad(p, "%s", "'prompt' must be a string");
    struct sim_out o;
    sim_out_init(&o, SIZE_MAX / 2);
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        struct json_object *e = json_object_array_get_idx(v, i);
        if (e && json_object_is_type(e, json_type_string))
            sim_out_mem(&o, json_object_get_string(e), (size_t)json_object_get_string_len(e));
        else
            sim_out_raw(&o, json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN));
    }
    size_t len;
    char *s = buf_take(&o.b, &len);
    set_prompt(r, s, len);
    xfree(s);
    return 0;
}

/* "input": a string or an array (strings, or token arrays hashed as their JSON text). */
static int parse_input(struct parse *p, struct sim_req *r)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(p->root, "input", &v) || !v)
        return bad(p, "%s", "'input' is required");
    size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
    if (json_object_is_type(v, json_type_array) && n == 0)
        return bad(p, "%s", "'input' must not be empty");
    if (n > SIM_MAX_INPUTS) return bad(p, "%s", "too many inputs");
    if (!json_object_is_type(v, json_type_array) && !json_object_is_type(v, json_type_string))
        return bad(p, "%s", "'input' must be a string or an array");
    r->inputs = xcalloc(n, sizeof *r->inputs);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        struct json_object *e =
            json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : v;
        if (e && json_object_is_type(e, json_type_string))
            r->inputs[i] =
                xstrndup(json_object_get_string(e), (size_t)json_object_get_string_len(e));
        else
            r->inputs[i] = xstrdup(json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN));
        r->n_inputs++;
        bytes += strlen(r->inputs[i]);
    }
    r->prompt_tokens = sim_text_tokens(bytes);
    if (r->prompt_tokens == 0) r->prompt_tokens = 1;
    struct json_object *f = NULL;
    if (json_object_object_get_ex(p->root, "encoding_format", &f) && f) {
        const char *fs = json_object_is_type(f, json_type_string) ? json_object_get_string(f) : "";
        if (strcmp(fs, "base64") == 0)
            r->base64 = true;
        else if (strcmp(fs, "float") != 0)
            return bad(p, "%s", "'encoding_format' must be \"float\" or \"base64\"");
    }
    return 0;
}

/* The vector as OpenAI sends it for encoding_format "base64": float32, little-endian. */
static void out_base64_floats(struct sim_out *o, const double *v, unsigned dims)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char bytes[4 * 3] = {0};
    size_t n = 0;
    char enc[4];
    sim_out_raw(o, "\"");
    for (unsigned d = 0; d <= dims; d++) {
        if (d < dims) {
            float x = (float)v[d];
            uint32_t u;
            memcpy(&u, &x, sizeof u);
            for (int k = 0; k < 4; k++) bytes[n++] = (unsigned char)(u >> (8 * k));
        }
        /* emit whole groups of three bytes; at the end, the rest with padding */
        size_t i = 0;
        for (; i + 3 <= n; i += 3) {
            uint32_t g = (uint32_t)bytes[i] << 16 | (uint32_t)bytes[i + 1] << 8 | bytes[i + 2];
            enc[0] = tab[g >> 18 & 63], enc[1] = tab[g >> 12 & 63];
            enc[2] = tab[g >> 6 & 63], enc[3] = tab[g & 63];
            sim_out_mem(o, enc, 4);
        }
        memmove(bytes, bytes + i, n - i);
        n -= i;
        if (d == dims && n) {
            uint32_t g = (uint32_t)bytes[0] << 16 | (n > 1 ? (uint32_t)bytes[1] << 8 : 0);
            enc[0] = tab[g >> 18 & 63], enc[1] = tab[g >> 12 & 63];
            enc[2] = n > 1 ? tab[g >> 6 & 63] : '=', enc[3] = '=';
            sim_out_mem(o, enc, 4);
        }
    }
    sim_out_raw(o, "\"");
}

static bool keep_alive_zero(struct json_object *root)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(root, "keep_alive", &v) || !v) return false;
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
        return json_object_get_double(v) == 0;
    if (!json_object_is_type(v, json_type_string)) return false;
    const char *s = json_object_get_string(v);
    return !strcmp(s, "0") || !strcmp(s, "0s") || !strcmp(s, "0m") || !strcmp(s, "0h");
}

static void set_max_tokens(struct sim_req *r, int64_t asked)
{
    struct sim_config *c = r->node->sim->cfg;
    if (asked > 0) {
        r->max_tokens = (uint64_t)asked;
        r->length_limited = true;
    } else {
        r->max_tokens = c->default_max_tokens;
    }
    if (r->max_tokens > c->max_tokens_cap) r->max_tokens = c->max_tokens_cap;
}

/* Fills r from the parsed body for its API; 400 message in p->msg on failure. */
static int parse_api(struct parse *p, struct sim_req *r)
{
    struct json_object *root = p->root;
    int64_t max = -1, seed = 0;
    int rc = 0;
    r->stream = r->ollama && r->api != SIM_API_OLL_EMBED;
    if ((rc = opt_bool(p, root, "stream", &r->stream))) return rc;
    switch (r->api) {
    case SIM_API_OAI_CHAT:
    case SIM_API_OAI_COMPLETION: {
        struct json_object *so;
        if (json_get_obj(root, "stream_options", &so) == 0 &&
            (rc = opt_bool(p, so, "include_usage", &r->include_usage)))
            return rc;
        if ((rc = opt_count(p, root, "max_tokens", &max))) return rc;
        if (max < 0 && (rc = opt_count(p, root, "max_completion_tokens", &max))) return rc;
        if ((rc = opt_count(p, root, "seed", &seed))) return rc;
        if (r->api == SIM_API_OAI_CHAT)
            rc = parse_messages(p, r, false);
        else
            rc = parse_prompt(p, r, true);
        if (rc) return rc;
        if (max == 0) return bad(p, "%s", "'max_tokens' must be at least 1");
        set_max_tokens(r, max);
        break;
    }
    case SIM_API_OLL_CHAT:
    case SIM_API_OLL_GENERATE: {
        struct json_object *opts;
        if (json_get_obj(root, "options", &opts) == 0) {
            if ((rc = opt_count(p, opts, "num_predict", &max))) return rc;
            if ((rc = opt_count(p, opts, "seed", &seed))) return rc;
        }
        if (r->api == SIM_API_OLL_CHAT)
            rc = parse_messages(p, r, true);
        else
            rc = parse_prompt(p, r, false);
        if (rc) return rc;
        r->unload_after = keep_alive_zero(root);
        r->load_only = r->prompt == NULL;
        set_max_tokens(r, max);
        break;
    }
    case SIM_API_OAI_EMBED:
    case SIM_API_OLL_EMBED:
        if ((rc = parse_input(p, r))) return rc;
        r->unload_after = r->ollama && keep_alive_zero(root);
        break;
    default:
        break;
    }
    if (r->prompt) r->seed = sim_text_hash((uint64_t)seed, r->prompt, r->prompt_len);
    return 0;
}

/* --- generation ------------------------------------------------------------------------ */

static void event_open(struct sim_req *r, struct sim_out *o)
{
    if (r->api == SIM_API_OAI_CHAT || r->api == SIM_API_OAI_COMPLETION) {
        sim_out_raw(o, "data: {\"id\":");
        sim_out_cstr(o, r->id);
        sim_out_fmt(o, ",\"object\":\"%s\",\"created\":%llu,\"model\":",
                    r->api == SIM_API_OAI_CHAT ? "chat.completion.chunk" : "text_completion",
                    (unsigned long long)r->created_s);
        sim_out_cstr(o, r->model->spec->name);
        sim_out_fmt(o, ",\"system_fingerprint\":\"%s\",\"choices\":[", fingerprint);
    } else {
        char t[48];
        iso_time(t, sizeof t, wall_us());
        sim_out_raw(o, "{\"model\":");
        sim_out_cstr(o, r->model->spec->name);
        sim_out_fmt(o, ",\"created_at\":\"%s\",", t);
    }
}

static const char *finish_reason(const struct sim_req *r)
{
    return r->length_limited ? "length" : "stop";
}

static void usage_obj(struct sim_req *r, struct sim_out *o)
{
    sim_out_fmt(o,
                "\"usage\":{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
                "\"total_tokens\":%llu,\"prompt_tokens_details\":{\"cached_tokens\":%llu}}",
                (unsigned long long)r->prompt_tokens, (unsigned long long)r->n_out,
                (unsigned long long)(r->prompt_tokens + r->n_out),
                (unsigned long long)r->cached_tokens);
}

/* Ollama's closing counters (durations in nanoseconds). */
static void ollama_done(struct sim_req *r, struct sim_out *o, const char *reason)
{
    uint64_t now = clock_mono_us();
    uint64_t prompt_us = r->t_first_us > r->t_loaded_us ? r->t_first_us - r->t_loaded_us : 0;
    uint64_t eval_us = r->t_first_us && now > r->t_first_us ? now - r->t_first_us : 0;
    sim_out_fmt(o,
                "\"done_reason\":\"%s\",\"done\":true,\"total_duration\":%llu,"
                "\"load_duration\":%llu,\"prompt_eval_count\":%llu,"
                "\"prompt_eval_duration\":%llu,\"eval_count\":%llu,\"eval_duration\":%llu}",
                reason, (unsigned long long)(now - r->t_arrive_us) * 1000,
                (unsigned long long)r->load_us * 1000, (unsigned long long)r->prompt_tokens,
                (unsigned long long)prompt_us * 1000, (unsigned long long)r->n_out,
                (unsigned long long)eval_us * 1000);
}

/* One token as a stream event. */
static void event_token(struct sim_req *r, struct sim_out *o, const char *tok)
{
    event_open(r, o);
    switch (r->api) {
    case SIM_API_OAI_CHAT:
        sim_out_raw(o, "{\"index\":0,\"delta\":{\"content\":");
        sim_out_cstr(o, tok);
        sim_out_raw(o, "},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        break;
    case SIM_API_OAI_COMPLETION:
        sim_out_raw(o, "{\"text\":");
        sim_out_cstr(o, tok);
        sim_out_raw(o, ",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        break;
    case SIM_API_OLL_CHAT:
        sim_out_raw(o, "\"message\":{\"role\":\"assistant\",\"content\":");
        sim_out_cstr(o, tok);
        sim_out_raw(o, "},\"done\":false}\n");
        break;
    default:
        sim_out_raw(o, "\"response\":");
        sim_out_cstr(o, tok);
        sim_out_raw(o, ",\"done\":false}\n");
        break;
    }
}

static void finish_stats(struct sim_req *r)
{
    r->node->m.predicted_tokens += r->n_out;
    sim_node_release(r);
    if (r->unload_after && r->model) sim_node_unload(r->model);
}

static void stream_finish(struct sim_req *r)
{
    struct sim_out o;
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    finish_stats(r);
    if (r->api == SIM_API_OAI_CHAT || r->api == SIM_API_OAI_COMPLETION) {
        event_open(r, &o);
        if (r->api == SIM_API_OAI_CHAT)
            sim_out_raw(&o, "{\"index\":0,\"delta\":{},");
        else
            sim_out_raw(&o, "{\"text\":\"\",\"index\":0,");
        sim_out_fmt(&o, "\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n", finish_reason(r));
        if (!stream_event(r, &o)) goto out;
        if (r->include_usage) {
            event_open(r, &o);
            sim_out_raw(&o, "],"); /* the usage chunk has "choices":[] */
            usage_obj(r, &o);
            sim_out_raw(&o, "}\n\n");
            if (!stream_event(r, &o)) goto out;
        }
        sim_out_raw(&o, "data: [DONE]\n\n");
        if (!stream_event(r, &o)) goto out;
    } else {
        event_open(r, &o);
        if (r->api == SIM_API_OLL_CHAT)
            sim_out_raw(&o, "\"message\":{\"role\":\"assistant\",\"content\":\"\"},");
        else
            sim_out_raw(&o, "\"response\":\"\",");
        ollama_done(r, &o, finish_reason(r));
        sim_out_raw(&o, "\n");
        if (!stream_event(r, &o)) goto out;
    }
    stream_complete(r);
out:
    sim_out_free(&o);
}

static uint64_t token_due_us(const struct sim_req *r, uint64_t i)
{
    double tps = r->node->sim->cfg->tokens_per_second;
    if (tps <= 0) return r->t_first_us;
    return r->t_first_us + (uint64_t)((double)i * 1e6 / tps);
}

static void on_token_timer(uv_timer_t *t);

/* Emits every token that is due, then schedules the next one or finishes. */
static void stream_pump(struct sim_req *r)
{
    struct sim_out o;
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    uint64_t now = clock_mono_us();
    while (r->n_out < r->max_tokens && token_due_us(r, r->n_out) <= now) {
        if (http_request_write_blocked(r->http)) {
            r->blocked = true;
            sim_out_free(&o);
            return;
        }
        event_token(r, &o, sim_text_token(r->seed, r->n_out));
        r->n_out++;
        if (!stream_event(r, &o)) {
            sim_out_free(&o);
            return;
        }
    }
    sim_out_free(&o);
    if (r->n_out < r->max_tokens) {
        uint64_t due = token_due_us(r, r->n_out);
        timer_in(r, (due - now + 999) / 1000, on_token_timer);
        return;
    }
    stream_finish(r);
}

static void on_token_timer(uv_timer_t *t)
{
    struct sim_req *r = req_of(t);
    if (r->http && !r->gone) stream_pump(r);
}

static void on_drain(struct http_request *req, void *ctx)
{
    struct sim_req *r = ctx;
    (void)req;
    if (r->blocked && r->http && !r->gone) {
        r->blocked = false;
        stream_pump(r);
    }
}

static void respond_full(struct sim_req *r)
{
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    r->n_out = r->max_tokens;
    finish_stats(r);
    struct sim_out text;
    sim_out_init(&text, SIM_OUT_MAX_BYTES);
    for (uint64_t i = 0; i < r->n_out; i++) sim_out_raw(&text, sim_text_token(r->seed, i));
    const char *tp = text.b.p ? text.b.p : "";
    if (r->api == SIM_API_OAI_CHAT || r->api == SIM_API_OAI_COMPLETION) {
        bool chat = r->api == SIM_API_OAI_CHAT;
        sim_out_raw(&o, "{\"id\":");
        sim_out_cstr(&o, r->id);
        sim_out_fmt(&o, ",\"object\":\"%s\",\"created\":%llu,\"model\":",
                    chat ? "chat.completion" : "text_completion", (unsigned long long)r->created_s);
        sim_out_cstr(&o, r->model->spec->name);
        sim_out_fmt(&o, ",\"system_fingerprint\":\"%s\",\"choices\":[{\"index\":0,", fingerprint);
        if (chat) {
            sim_out_raw(&o, "\"message\":{\"role\":\"assistant\",\"content\":");
            sim_out_str(&o, tp, text.b.len);
            sim_out_raw(&o, "},");
        } else {
            sim_out_raw(&o, "\"text\":");
            sim_out_str(&o, tp, text.b.len);
            sim_out_raw(&o, ",");
        }
        sim_out_fmt(&o, "\"logprobs\":null,\"finish_reason\":\"%s\"}],", finish_reason(r));
        usage_obj(r, &o);
        sim_out_raw(&o, "}");
    } else {
        event_open(r, &o);
        if (r->api == SIM_API_OLL_CHAT) {
            sim_out_raw(&o, "\"message\":{\"role\":\"assistant\",\"content\":");
            sim_out_str(&o, tp, text.b.len);
            sim_out_raw(&o, "},");
        } else {
            sim_out_raw(&o, "\"response\":");
            sim_out_str(&o, tp, text.b.len);
            sim_out_raw(&o, ",");
        }
        ollama_done(r, &o, finish_reason(r));
    }
    sim_out_free(&text);
    respond_out(r, 200, &h, "application/json", &o);
}

static void on_full_timer(uv_timer_t *t)
{
    struct sim_req *r = req_of(t);
    if (r->http && !r->gone) respond_full(r);
}

static void on_first_token(uv_timer_t *t)
{
    struct sim_req *r = req_of(t);
    if (!r->http || r->gone) return;
    r->t_first_us = clock_mono_us();
    r->phase = SIM_REQ_STREAM;
    if (!r->stream) {
        uint64_t last_due = r->max_tokens ? token_due_us(r, r->max_tokens - 1) : r->t_first_us;
        timer_in(r, (last_due - r->t_first_us + 999) / 1000, on_full_timer);
        return;
    }
    bool oai = r->api == SIM_API_OAI_CHAT || r->api == SIM_API_OAI_COMPLETION;
    if (!stream_begin(r, oai ? "text/event-stream" : "application/x-ndjson")) return;
    if (r->api == SIM_API_OAI_CHAT) {
        struct sim_out o;
        sim_out_init(&o, SIM_OUT_MAX_BYTES);
        event_open(r, &o);
        sim_out_raw(&o, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                        "\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        bool ok = stream_event(r, &o);
        sim_out_free(&o);
        if (!ok) return;
    }
    stream_pump(r);
}

static void respond_embeddings(struct sim_req *r)
{
    unsigned dims = sim_config_model_dims(r->node->sim->cfg, r->model->spec);
    double *v = xcalloc(dims, sizeof *v);
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    finish_stats(r);
    if (r->ollama) {
        sim_out_raw(&o, "{\"model\":");
        sim_out_cstr(&o, r->model->spec->name);
        sim_out_raw(&o, ",\"embeddings\":[");
    } else {
        sim_out_raw(&o, "{\"object\":\"list\",\"data\":[");
    }
    for (size_t i = 0; i < r->n_inputs; i++) {
        sim_text_embedding(r->inputs[i], strlen(r->inputs[i]), dims, v);
        if (i) sim_out_raw(&o, ",");
        if (!r->ollama)
            sim_out_fmt(&o, "{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i);
        if (r->base64 && !r->ollama) {
            out_base64_floats(&o, v, dims);
            sim_out_raw(&o, "}");
            continue;
        }
        sim_out_raw(&o, "[");
        for (unsigned d = 0; d < dims; d++) sim_out_fmt(&o, d ? ",%.7f" : "%.7f", v[d]);
        sim_out_raw(&o, r->ollama ? "]" : "]}");
    }
    uint64_t now = clock_mono_us();
    if (r->ollama) {
        sim_out_fmt(&o,
                    "],\"total_duration\":%llu,\"load_duration\":%llu,\"prompt_eval_count\":%llu}",
                    (unsigned long long)(now - r->t_arrive_us) * 1000,
                    (unsigned long long)r->load_us * 1000, (unsigned long long)r->prompt_tokens);
    } else {
        sim_out_raw(&o, "],\"model\":");
        sim_out_cstr(&o, r->model->spec->name);
        sim_out_fmt(&o, ",\"usage\":{\"prompt_tokens\":%llu,\"total_tokens\":%llu}}",
                    (unsigned long long)r->prompt_tokens, (unsigned long long)r->prompt_tokens);
    }
    xfree(v);
    respond_out(r, 200, &h, "application/json", &o);
}

static void on_embed_timer(uv_timer_t *t)
{
    struct sim_req *r = req_of(t);
    if (r->http && !r->gone) respond_embeddings(r);
}

/* Ollama generate/chat without a prompt: load (or unload with keep_alive 0) and say so. */
static void respond_load_only(struct sim_req *r)
{
    struct sim_out o;
    struct hdrs h = {0};
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    finish_stats(r);
    event_open(r, &o);
    if (r->api == SIM_API_OLL_CHAT)
        sim_out_raw(&o, "\"message\":{\"role\":\"assistant\",\"content\":\"\"},");
    else
        sim_out_raw(&o, "\"response\":\"\",");
    ollama_done(r, &o, r->unload_after ? "unload" : "load");
    respond_out(r, 200, &h, "application/json", &o);
}

static uint64_t ms_of(double x)
{
    return x <= 0 ? 0 : (uint64_t)llround(x);
}

void sim_api_ready(struct sim_req *r)
{
    struct sim_node *n = r->node;
    struct sim_config *c = n->sim->cfg;
    r->phase = SIM_REQ_COMPUTE;
    r->model->inflight++;
    r->counted_inflight = true;
    r->t_loaded_us = clock_mono_us();
    r->load_us = r->t_loaded_us - r->t_slot_us;
    if (r->load_only) {
        respond_load_only(r);
        return;
    }
    uint64_t uncached = r->prompt_tokens;
    if (r->prompt && r->n_inputs == 0) {
        size_t block_bytes = (size_t)c->block_tokens * SIM_TEXT_BYTES_PER_TOKEN;
        size_t max = r->prompt_len / block_bytes;
        uint64_t *keys = xmalloc((max ? max : 1) * sizeof *keys);
        uint64_t mseed = sim_text_hash(0, r->model->spec->name, strlen(r->model->spec->name));
        size_t nk = sim_cache_block_keys(mseed, r->prompt, r->prompt_len, block_bytes, keys, max);
        size_t hit = sim_cache_match(&n->cache, keys, nk);
        xfree(keys);
        r->cached_tokens = (uint64_t)hit * c->block_tokens;
        if (r->cached_tokens > r->prompt_tokens) r->cached_tokens = r->prompt_tokens;
        uncached = r->prompt_tokens - r->cached_tokens;
    }
    n->m.prompt_tokens += r->prompt_tokens;
    n->m.cached_tokens += r->cached_tokens;
    uint64_t delay = ms_of(c->ttft_ms + c->ttft_per_token_ms * (double)uncached);
    LOGD("sim_compute", "node=%u req=%s prompt_tokens=%llu cached=%llu ttft_ms=%llu", n->index,
         r->id, (unsigned long long)r->prompt_tokens, (unsigned long long)r->cached_tokens,
         (unsigned long long)delay);
    timer_in(r, delay, r->n_inputs ? on_embed_timer : on_first_token);
}

void sim_api_fail(struct sim_req *r, int status, const char *code, const char *msg)
{
    sim_node_release(r);
    respond_error(r, status, code, msg, -1);
}

/* --- pull and delete ----------------------------------------------------------------- */

static void on_pull_timer(uv_timer_t *t);

static void pull_line(struct sim_req *r, struct sim_out *o, unsigned step, const char *digest,
                      uint64_t total)
{
    if (step == 0) {
        sim_out_raw(o, "{\"status\":\"pulling manifest\"}\n");
    } else if (step <= SIM_PULL_STEPS) {
        sim_out_fmt(o,
                    "{\"status\":\"pulling %.12s\",\"digest\":\"sha256:%s\",\"total\":%llu,"
                    "\"completed\":%llu}\n",
                    digest, digest, (unsigned long long)total,
                    (unsigned long long)(total * step / SIM_PULL_STEPS));
    } else if (step == SIM_PULL_STEPS + 1) {
        sim_out_raw(o, "{\"status\":\"verifying sha256 digest\"}\n");
    } else if (step == SIM_PULL_STEPS + 2) {
        sim_out_raw(o, "{\"status\":\"writing manifest\"}\n");
    } else {
        sim_out_raw(o, "{\"status\":\"success\"}\n");
    }
    (void)r;
}

static void pull_step(struct sim_req *r)
{
    struct sim_config *c = r->node->sim->cfg;
    struct sim_model_spec *spec = sim_config_add_pulled(c, r->prompt, r->prompt_len);
    bool present = sim_node_model(r->node, strv_make(r->prompt, r->prompt_len)) != NULL;
    uint64_t load_ms = present ? 0 : sim_config_model_load_ms(c, spec);
    unsigned last = SIM_PULL_STEPS + 3;
    if (!r->stream) {
        if (r->pull_step == 0) {
            r->pull_step = last;
            timer_in(r, load_ms, on_pull_timer);
            return;
        }
        sim_node_add_model(r->node, spec);
        const char *b = "{\"status\":\"success\"}";
        struct hdrs h = {0};
        respond(r, 200, &h, "application/json", b, strlen(b));
        return;
    }
    if (r->pull_step == 0 && !stream_begin(r, "application/x-ndjson")) return;
    char digest[65];
    digest_hex(spec->name, digest);
    struct sim_out o;
    sim_out_init(&o, SIM_OUT_MAX_BYTES);
    if (r->pull_step == last) sim_node_add_model(r->node, spec);
    pull_line(r, &o, r->pull_step, digest, model_bytes(r->node, spec));
    bool ok = stream_event(r, &o);
    sim_out_free(&o);
    if (!ok) return;
    if (r->pull_step == last) {
        LOGI("sim_pulled", "node=%u model=%s", r->node->index, spec->name);
        stream_complete(r);
        return;
    }
    r->pull_step++;
    bool progress = r->pull_step >= 1 && r->pull_step <= SIM_PULL_STEPS;
    timer_in(r, progress ? load_ms / SIM_PULL_STEPS : 0, on_pull_timer);
}

static void on_pull_timer(uv_timer_t *t)
{
    struct sim_req *r = req_of(t);
    if (r->http && !r->gone) pull_step(r);
}

/* --- model routes ----------------------------------------------------------------------- */

static int model_name(struct parse *p, bool ollama)
{
    int rc = json_get_str(p->root, "model", &p->model);
    if (rc == GW_E_NOTFOUND && ollama) rc = json_get_str(p->root, "name", &p->model);
    if (rc == GW_E_NOTFOUND || (rc == 0 && p->model.len == 0))
        return bad(p, "%s", ollama ? "model is required" : "you must provide a model parameter");
    if (rc) return bad(p, "%s", "'model' must be a string");
    return 0;
}

static void respond_not_found(struct sim_req *r, struct strv model)
{
    char msg[300];
    if (r->ollama)
        snprintf(msg, sizeof msg, "model \"%.*s\" not found, try pulling it first",
                 (int)(model.len > 200 ? 200 : model.len), model.p);
    else
        snprintf(msg, sizeof msg,
                 "The model `%.*s` does not exist or you do not have access to it.",
                 (int)(model.len > 200 ? 200 : model.len), model.p);
    respond_error(r, 404, "model_not_found", msg, -1);
}

static void h_delete(struct sim_req *r)
{
    struct parse p = {0};
    struct gw_error e = {0};
    p.root = json_parse_strict(r->http->body.p, r->http->body.len, SIM_JSON_MAX_DEPTH, &e);
    if (!p.root) {
        respond_error(r, 400, "invalid_json", e.msg, -1);
        return;
    }
    if (model_name(&p, true)) {
        respond_error(r, 400, "invalid_request", p.msg, -1);
    } else {
        struct sim_model_state *ms = sim_node_model(r->node, p.model);
        if (!ms) {
            char msg[300];
            snprintf(msg, sizeof msg, "model '%.*s' not found",
                     (int)(p.model.len > 200 ? 200 : p.model.len), p.model.p);
            respond_error(r, 404, "model_not_found", msg, -1);
        } else {
            LOGI("sim_delete", "node=%u model=%s", r->node->index, ms->spec->name);
            sim_node_delete_model(ms);
            struct hdrs h = {0};
            respond(r, 200, &h, NULL, "", 0);
        }
    }
    json_object_put(p.root);
}

/* The model's context on this node, as its engine enforces it: llama-server refuses a prompt
 * of at least n_ctx tokens (400, its own words and fields) and stops generating at the end of
 * the context; Ollama keeps the last n_ctx tokens of the prompt. True when answered. */
static bool enforce_ctx(struct sim_req *r)
{
    uint64_t ctx = model_ctx(r->node, r->model);
    if (!ctx) return false;
    if (r->api == SIM_API_OLL_CHAT || r->api == SIM_API_OLL_GENERATE) {
        if (r->prompt_tokens > ctx) r->prompt_tokens = ctx;
        return false;
    }
    if (r->api != SIM_API_OAI_CHAT && r->api != SIM_API_OAI_COMPLETION) return false;
    if (r->prompt_tokens >= ctx) {
        char body[400];
        int len = snprintf(body, sizeof body,
                           "{\"error\":{\"code\":400,\"message\":\"request (%llu tokens) exceeds "
                           "the available context size (%llu tokens), try increasing it\","
                           "\"type\":\"exceed_context_size_error\",\"n_prompt_tokens\":%llu,"
                           "\"n_ctx\":%llu}}",
                           (unsigned long long)r->prompt_tokens, (unsigned long long)ctx,
                           (unsigned long long)r->prompt_tokens, (unsigned long long)ctx);
        struct hdrs h = {0};
        LOGD("sim_context_exceeded", "node=%u req=%s prompt_tokens=%llu n_ctx=%llu", r->node->index,
             r->id, (unsigned long long)r->prompt_tokens, (unsigned long long)ctx);
        respond(r, 400, &h, "application/json", body, (size_t)len);
        return true;
    }
    if (r->prompt_tokens + r->max_tokens > ctx) {
        r->max_tokens = ctx - r->prompt_tokens;
        r->length_limited = true;
    }
    return false;
}

static void h_model_route(struct sim_req *r)
{
    struct sim_node *n = r->node;
    struct parse p = {0};
    struct gw_error e = {0};
    p.root = json_parse_strict(r->http->body.p, r->http->body.len, SIM_JSON_MAX_DEPTH, &e);
    if (!p.root) {
        respond_error(r, 400, "invalid_json", e.msg, -1);
        return;
    }
    if (model_name(&p, r->ollama)) {
        respond_error(r, 400, "invalid_request", p.msg, -1);
        goto out;
    }
    if (r->api == SIM_API_OLL_PULL) {
        struct strv m = p.model;
        bool ok = m.len <= 200;
        for (size_t i = 0; i < m.len && ok; i++)
            ok = (unsigned char)m.p[i] > ' ' && m.p[i] != '"' && m.p[i] != '\\' &&
                 (unsigned char)m.p[i] < 0x7f;
        if (!ok) {
            respond_error(r, 400, "invalid_request", "invalid model name", -1);
            goto out;
        }
        r->stream = true;
        if (opt_bool(&p, p.root, "stream", &r->stream)) {
            respond_error(r, 400, "invalid_request", p.msg, -1);
            goto out;
        }
        r->prompt = xstrndup(m.p, m.len);
        r->prompt_len = m.len;
        r->phase = SIM_REQ_PULL;
        pull_step(r);
        goto out;
    }
    r->model = sim_node_model(n, p.model);
    if (!r->model) {
        respond_not_found(r, p.model);
        goto out;
    }
    bool embed = r->api == SIM_API_OAI_EMBED || r->api == SIM_API_OLL_EMBED;
    bool is_embed_model = r->model->spec->kind == SIM_MODEL_EMBEDDING;
    if (embed != is_embed_model) {
        char msg[300];
        const char *what = embed ? "embeddings"
                           : (r->api == SIM_API_OAI_CHAT || r->api == SIM_API_OLL_CHAT)
                               ? "chat"
                               : "generate";
        snprintf(msg, sizeof msg, "\"%.*s\" does not support %s",
                 (int)(p.model.len > 200 ? 200 : p.model.len), p.model.p, what);
        respond_error(r, 400, "model_not_supported", msg, -1);
        goto out;
    }
    if (parse_api(&p, r)) {
        respond_error(r, 400, "invalid_request", p.msg, -1);
        goto out;
    }
    if (enforce_ctx(r)) goto out;
    n->m.requests++;
    if (sim_node_admit(r)) {
        respond_error(r, 503, "server_busy",
                      r->ollama ? "server busy, please try again.  maximum pending requests "
                                  "exceeded"
                                : "server busy: every slot is in use and the queue is full",
                      (int)n->sim->cfg->busy_retry_after_s);
    }
out:
    json_object_put(p.root);
}

/* --- routing and faults ------------------------------------------------------------------ */

enum route_kind {
    R_HEALTH,
    R_METRICS,
    R_OAI_MODELS,
    R_TAGS,
    R_PS,
    R_VERSION,
    R_ROOT,
    R_DELETE,
    R_MODEL,
    R_HARDWARE,
    R_PROPS,
    R_SHOW,
};

struct route {
    const char *method;
    const char *path;
    enum route_kind kind;
    enum sim_api api;
};

static const struct route routes[] = {
    {"GET", "/health", R_HEALTH, SIM_API_OTHER},
    {"GET", "/metrics", R_METRICS, SIM_API_OTHER},
    {"GET", "/v1/models", R_OAI_MODELS, SIM_API_OTHER},
    {"POST", "/v1/chat/completions", R_MODEL, SIM_API_OAI_CHAT},
    {"POST", "/v1/completions", R_MODEL, SIM_API_OAI_COMPLETION},
    {"POST", "/v1/embeddings", R_MODEL, SIM_API_OAI_EMBED},
    {"GET", "/api/tags", R_TAGS, SIM_API_OTHER},
    {"GET", "/api/ps", R_PS, SIM_API_OTHER},
    {"GET", "/api/version", R_VERSION, SIM_API_OTHER},
    {"GET", "/sim/v1/hardware", R_HARDWARE, SIM_API_OTHER},
    {"GET", "/props", R_PROPS, SIM_API_OTHER},
    {"POST", "/api/show", R_SHOW, SIM_API_OTHER},
    {"POST", "/api/chat", R_MODEL, SIM_API_OLL_CHAT},
    {"POST", "/api/generate", R_MODEL, SIM_API_OLL_GENERATE},
    {"POST", "/api/embed", R_MODEL, SIM_API_OLL_EMBED},
    {"POST", "/api/pull", R_MODEL, SIM_API_OLL_PULL},
    {"DELETE", "/api/delete", R_DELETE, SIM_API_OTHER},
    {"GET", "/", R_ROOT, SIM_API_OTHER},
    {"HEAD", "/", R_ROOT, SIM_API_OTHER},
};

enum { N_ROUTES = sizeof routes / sizeof routes[0] };

/* The route for method+path; *path_known tells 405 from 404 when NULL. */
static const struct route *find_route(const struct http_request *req, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < N_ROUTES; i++) {
        if (!strv_eq_cstr(req->path, routes[i].path)) continue;
        *path_known = true;
        if (strv_eq_cstr(req->method, routes[i].method)) return &routes[i];
    }
    return NULL;
}

static void dispatch(struct sim_req *r, const struct route *rt, bool path_known)
{
    if (!rt) {
        respond_error(r, path_known ? 405 : 404, path_known ? "method_not_allowed" : "not_found",
                      path_known ? "method not allowed" : "not found", -1);
        return;
    }
    switch (rt->kind) {
    case R_HEALTH:
        h_health(r);
        break;
    case R_METRICS:
        h_metrics(r);
        break;
    case R_OAI_MODELS:
        h_oai_models(r);
        break;
    case R_TAGS:
        h_tags(r, false);
        break;
    case R_PS:
        h_tags(r, true);
        break;
    case R_VERSION:
        h_version(r);
        break;
    case R_ROOT:
        h_root(r);
        break;
    case R_DELETE:
        h_delete(r);
        break;
    case R_MODEL:
        h_model_route(r);
        break;
    case R_HARDWARE:
        h_hardware(r);
        break;
    case R_PROPS:
        h_props(r);
        break;
    case R_SHOW:
        h_show(r);
        break;
    }
}

static void do_reset(struct sim_req *r)
{
    int fd = sim_sock_find(r->node->port, r->http->peer);
    if (fd >= 0)
        (void)sim_sock_reset(fd);
    else
        LOGW("sim_reset_unavailable", "node=%u req=%s peer=%s", r->node->index, r->id, r->peer);
    http_stream_abort(r->http);
    r->http = NULL;
    req_done(r);
}

static void after_delay(struct sim_req *r)
{
    bool path_known;
    const struct route *rt = find_route(r->http, &path_known);
    if (r->fault.hang) {
        r->phase = SIM_REQ_HANG; /* until the client leaves or the server closes */
        return;
    }
    if (r->fault.reset) {
        do_reset(r);
        return;
    }
    if (r->fault.status) {
        char msg[64];
        snprintf(msg, sizeof msg, "simulated fault: status %d", r->fault.status);
        respond_error(r, r->fault.status, "sim_fault", msg,
                      r->fault.has_retry_after ? (int)r->fault.retry_after_s : -1);
        return;
    }
    dispatch(r, rt, path_known);
}

static void on_delay_timer(uv_timer_t *t)
{
    struct sim_req *r = req_of(t);
    if (r->http && !r->gone) after_delay(r);
}

void sim_api_handle(struct http_request *req, void *ctx)
{
    struct sim_node *n = ctx;
    struct sim *sim = n->sim;
    struct sim_req *r = xcalloc(1, sizeof *r);
    r->node = n;
    r->http = req;
    r->ollama = is_ollama_path(req->path);
    r->reset_fd = -1;
    r->t_arrive_us = clock_mono_us();
    r->created_s = clock_wall_ms() / 1000;
    snprintf(r->peer, sizeof r->peer, "%s", req->peer);
    uv_timer_init(sim->loop, &r->timer);
    r->timer.data = r;
    sim_fault_clear(&r->fault);
    http_request_on_abort(req, on_abort, r);
    http_request_on_drain(req, on_drain, r);

    bool path_known;
    const struct route *rt = find_route(req, &path_known);
    r->api = rt ? rt->api : SIM_API_OTHER;
    snprintf(r->id, sizeof r->id, "%s-%u-%llu",
             r->api == SIM_API_OAI_CHAT ? "chatcmpl"
                                        : (r->api == SIM_API_OAI_COMPLETION ? "cmpl" : "req"),
             n->index, (unsigned long long)++sim->next_req_id);

    struct strv spec = http_request_header(req, "X-Sim-Fault");
    if (spec.p) {
        struct gw_error e = {0};
        if (sim_fault_parse(spec, &r->fault, &e)) {
            char msg[300];
            snprintf(msg, sizeof msg, "bad X-Sim-Fault: %s", e.msg);
            respond_error(r, 400, "invalid_fault", msg, -1);
            return;
        }
    } else if (rt && rt->kind == R_MODEL && sim->cfg->fault_rate > 0 && sim->cfg->n_faults) {
        double dice = (double)(sim_text_rand(&sim->rng) >> 11) / (double)(1ULL << 53);
        if (dice < sim->cfg->fault_rate)
            r->fault = sim->cfg->faults[sim_text_rand(&sim->rng) % sim->cfg->n_faults];
    }
    if (!sim_fault_is_none(&r->fault)) {
        n->m.faults++;
        LOGD("sim_fault", "node=%u req=%s", n->index, r->id);
    }
    LOGD("sim_request", "node=%u req=%s method=%.*s path=%.*s", n->index, r->id,
         STRV_FMT(req->method), STRV_FMT(req->path));
    if (r->fault.slow_headers_ms) {
        r->phase = SIM_REQ_DELAY;
        timer_in(r, r->fault.slow_headers_ms, on_delay_timer);
        return;
    }
    after_delay(r);
}
