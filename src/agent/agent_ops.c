/* agent_ops — fleet operations on the node (docs/node_api.md, docs/ops.md): POST
 * /drover/v1/ops carried out through the engine adapter (Ollama pull and delete, load and
 * unload) or a command template of the config, run as `/bin/sh -c` in its own process group
 * and killed after the timeout; the exit decides the outcome class. After the attempt the
 * agent says whether the target is listed (engine model list, or the backend.list template),
 * so the gateway can check a generic error. One operation per target at a time.
 * GET /drover/v1/inventory answers proto's inventory: the engine's models (with Ollama's
 * digests) and the backend.list backends.
 * The loop thread only. */
#include "agent/agent_ops.h"

#include <stdio.h>
#include <string.h>

#include "agent/agent_proc.h"
#include "agent/agent_upgrade.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "proto/op_result.h"

enum { OPS_MAX_OUTPUT = 64 * 1024, OPS_MAX_RUNNING = 16, OPS_LIST_TIMEOUT_MS = 30000 };

struct aop;
typedef void aop_step_fn(struct aop *o);

struct aop {
    struct agent *a;
    struct http_request *req; /* NULL once the gateway left */
    enum op_kind kind;
    bool is_model;
    char name[256];
    char key[300]; /* "model:NAME", the one-at-a-time key */
    char *params_json;
    uint64_t timeout_ms;
    /* the running command (agent_proc) and how it ended */
    struct agent_proc *proc;
    bool timed_out;
    int64_t exit_status;
    int term_signal;
    struct buf output;
    aop_step_fn *after; /* what runs once the command ended */
    /* an engine call */
    struct http_call *call;
    int status;
    struct buf body;
    /* the outcome */
    enum op_class cls;
    char message[256];
    bool listed;
    struct agent_inventory_run *inv; /* the inventory a backend.list run is for, or NULL */
    struct aop *next;
};

static struct aop *running_ops;

/* ---- templates --------------------------------------------------------------------------- */

/* Appends s single-quoted for sh: ' becomes '\''. */
static int sh_quote(struct buf *b, const char *s, size_t len)
{
    int rc = buf_append_cstr(b, "'");
    for (size_t i = 0; i < len && !rc; i++)
        rc = s[i] == '\'' ? buf_append_cstr(b, "'\\''") : buf_append(b, &s[i], 1);
    return rc ? rc : buf_append_cstr(b, "'");
}

int agent_ops_expand(const char *tmpl, const char *name, const char *params_json, struct buf *out,
                     char *why, size_t why_cap)
{
    struct json_object *params =
        params_json ? json_parse_strict(params_json, strlen(params_json), 4, NULL) : NULL;
    int rc = 0;
    for (const char *p = tmpl; *p && !rc; p++) {
        if (*p != '{') {
            rc = buf_append(out, p, 1);
            continue;
        }
        const char *end = strchr(p, '}');
        if (!end || end == p + 1 || end - p > 64) {
            snprintf(why, why_cap, "bad placeholder in template: %.40s", p);
            rc = GW_E_INVALID;
            break;
        }
        char key[64];
        memcpy(key, p + 1, (size_t)(end - p - 1));
        key[end - p - 1] = '\0';
        struct json_object *v = NULL;
        if (strcmp(key, "name") == 0) {
            rc = sh_quote(out, name, strlen(name));
        } else if (params && json_object_object_get_ex(params, key, &v) && v &&
                   (json_object_is_type(v, json_type_string) ||
                    json_object_is_type(v, json_type_int))) {
            const char *s = json_object_get_string(v);
            size_t len = json_object_is_type(v, json_type_string)
                             ? (size_t)json_object_get_string_len(v)
                             : strlen(s);
            if (memchr(s, '\0', len)) {
                snprintf(why, why_cap, "parameter '%s' holds a NUL byte", key);
                rc = GW_E_INVALID;
                break;
            }
            rc = sh_quote(out, s, len);
        } else {
            snprintf(why, why_cap, "no value for placeholder {%s}", key);
            rc = GW_E_INVALID;
            break;
        }
        p = end;
    }
    if (params) json_object_put(params);
    if (!rc) rc = buf_append(out, "", 1);
    return rc;
}

enum op_class agent_ops_exit_class(bool timed_out, int term_signal, int64_t exit_status)
{
    if (timed_out) return OP_CLASS_ABORTED;
    if (term_signal) return OP_CLASS_EXCEPTION;
    switch (exit_status) {
    case 0:
        return OP_CLASS_OK;
    case 70:
        return OP_CLASS_EXCEPTION; /* EX_SOFTWARE */
    case 77:
        return OP_CLASS_UNSAFE; /* EX_NOPERM */
    case 78:
        return OP_CLASS_CONFIG_ERROR; /* EX_CONFIG */
    case 124:
        return OP_CLASS_ABORTED; /* timeout(1) */
    default:
        return OP_CLASS_ERROR;
    }
}

bool agent_ops_list_has(const char *text, size_t len, const char *name)
{
    size_t nl = strlen(name);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t')) q++;
        const char *w = q;
        while (w < eol && *w != ' ' && *w != '\t' && *w != '\r') w++;
        if ((size_t)(w - q) == nl && memcmp(q, name, nl) == 0) return true;
        p = eol + 1;
    }
    return false;
}

/* ---- the answer --------------------------------------------------------------------------- */

static void aop_free(struct aop *o)
{
    for (struct aop **pp = &running_ops; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    if (o->a->pending) o->a->pending--;
    buf_free(&o->output);
    buf_free(&o->body);
    xfree(o->params_json);
    xfree(o);
}

static void aop_abort(struct http_request *req, void *ctx)
{
    (void)req;
    ((struct aop *)ctx)->req = NULL;
}

/* The op's answer (docs/node_api.md): always 200 with the outcome class. */
static void answer(struct http_request *req, const struct aop *o)
{
    struct node_api_op_answer ans = {.cls = o->cls, .listed = o->listed};
    snprintf(ans.message, sizeof ans.message, "%s", o->message);
    struct buf b;
    buf_init(&b, 4096);
    int rc = node_api_op_answer_emit(&b, &ans);
    (void)http_respond_json(req, rc ? 500 : 200, NULL, 0, b.p, b.len);
    buf_free(&b);
}

static void finish(struct aop *o)
{
    LOGI("op_result", "kind=%s target=%s class=%s listed=%d message=\"%s\"", op_kind_name(o->kind),
         o->key, op_class_name(o->cls), o->listed, o->message);
    /* what is installed changed: the upgrade checks list the node again */
    if (o->cls == OP_CLASS_OK && o->kind != OP_LOAD && o->kind != OP_UNLOAD)
        agent_upgrade_kick(o->a);
    if (o->req) {
        http_request_on_abort(o->req, NULL, NULL);
        answer(o->req, o);
    }
    aop_free(o);
}

static void set_outcome(struct aop *o, enum op_class cls, const char *msg)
{
    o->cls = cls;
    snprintf(o->message, sizeof o->message, "%s", msg ? msg : "");
}

/* ---- running a command ---------------------------------------------------------------------- */

static void on_command_done(const struct agent_proc_result *r, void *ctx)
{
    struct aop *o = ctx;
    o->proc = NULL;
    o->timed_out = r->timed_out;
    o->term_signal = r->term_signal;
    o->exit_status = r->exit_status;
    buf_reset(&o->output);
    if (r->out.len && buf_append(&o->output, r->out.p, r->out.len)) buf_reset(&o->output);
    aop_step_fn *next = o->after;
    o->after = NULL;
    next(o); /* may free o */
}

/* Runs cmd as `/bin/sh -c` (stderr joined to stdout); then `after` with the exit data in o.
 * False (and o->message) when it cannot start: then `after` is never called. */
static bool run_command(struct aop *o, const char *cmd, uint64_t timeout_ms, aop_step_fn *after)
{
    size_t slen = strlen(cmd) + 32;
    char *script = xmalloc(slen);
    snprintf(script, slen, "exec 2>&1; %s", cmd);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    struct agent_proc_spec spec = {
        .argv = argv,
        .timeout_ms = timeout_ms,
        .max_out_bytes = OPS_MAX_OUTPUT,
    };
    o->timed_out = false;
    o->exit_status = 0;
    o->term_signal = 0;
    buf_reset(&o->output);
    o->after = after;
    int rc = agent_proc_start(o->a->loop, &spec, on_command_done, o, &o->proc);
    xfree(script);
    if (rc) {
        o->after = NULL;
        snprintf(o->message, sizeof o->message, "could not start the command: %s", uv_strerror(rc));
        return false;
    }
    return true;
}

static const char *template_for(const struct agent *a, const char *name)
{
    for (size_t i = 0; i < AGENT_OPS_N_TEMPLATES; i++)
        if (!strcmp(agent_ops_templates[i], name)) return a->cfg.ops_commands[i];
    return NULL;
}

/* ---- listed? ------------------------------------------------------------------------------- */

static void after_list_command(struct aop *o)
{
    o->listed = !o->timed_out && !o->term_signal && o->exit_status == 0 &&
                agent_ops_list_has(o->output.p ? o->output.p : "", o->output.len, o->name);
    finish(o);
}

static void on_list_view(struct agent_engine_view *v, void *ctx)
{
    struct aop *o = ctx;
    o->listed = node_api_models_find(&v->models, strv_from_cstr(o->name)) != NULL;
    finish(o);
}

/* Checks whether the target is listed now, then answers. */
static void check_listed(struct aop *o)
{
    if (o->is_model) {
        agent_engine_inventory(&o->a->engine, on_list_view, o);
        return;
    }
    const char *list = template_for(o->a, "backend.list");
    if (!list) {
        o->listed = false;
        finish(o);
        return;
    }
    struct aop_keep {
        enum op_class cls;
        char message[256];
    } keep;
    keep.cls = o->cls;
    memcpy(keep.message, o->message, sizeof keep.message);
    if (!run_command(o, list, OPS_LIST_TIMEOUT_MS, after_list_command)) {
        o->listed = false;
        o->cls = keep.cls;
        memcpy(o->message, keep.message, sizeof keep.message);
        finish(o);
    }
}

/* ---- carrying the op out ------------------------------------------------------------------- */

static void after_op_command(struct aop *o)
{
    enum op_class cls = agent_ops_exit_class(o->timed_out, o->term_signal, o->exit_status);
    char msg[256] = "";
    /* the last line of the output says the most */
    if (o->output.len) {
        size_t end = o->output.len;
        while (end && (o->output.p[end - 1] == '\n' || o->output.p[end - 1] == '\r')) end--;
        size_t from = end; /* the last non-empty line */
        while (from && o->output.p[from - 1] != '\n') from--;
        snprintf(msg, sizeof msg, "%.*s", (int)(end - from), o->output.p + from);
    }
    if (o->timed_out)
        snprintf(msg, sizeof msg, "timed out after %llu ms", (unsigned long long)o->timeout_ms);
    else if (o->term_signal)
        snprintf(msg, sizeof msg, "killed by signal %d", o->term_signal);
    else if (!msg[0] && o->exit_status)
        snprintf(msg, sizeof msg, "exit %lld", (long long)o->exit_status);
    set_outcome(o, cls, msg);
    check_listed(o);
}

static void on_load_result(const struct agent_engine_op_result *r, void *ctx)
{
    struct aop *o = ctx;
    if (r->status == 200)
        set_outcome(o, OP_CLASS_OK, "");
    else if (r->status == 501)
        set_outcome(o, OP_CLASS_CONFIG_ERROR, r->message);
    else if (r->status == 504)
        set_outcome(o, OP_CLASS_ABORTED, r->message);
    else
        set_outcome(o, OP_CLASS_ERROR, r->message);
    check_listed(o);
}

static void on_eng_head(struct http_call *c, const struct http_response_head *h, void *ctx)
{
    (void)c;
    ((struct aop *)ctx)->status = h->status;
}

static void on_eng_data(struct http_call *c, const char *p, size_t len, void *ctx)
{
    (void)c;
    struct aop *o = ctx;
    if (o->body.len + len <= OPS_MAX_OUTPUT && buf_append(&o->body, p, len)) buf_reset(&o->body);
}

static void on_eng_done(struct http_call *c, const struct http_call_result *res, void *ctx)
{
    (void)c;
    struct aop *o = ctx;
    o->call = NULL;
    if (res->err == GW_E_TOTAL_TIMEOUT) {
        set_outcome(o, OP_CLASS_ABORTED, "the engine did not finish in time");
    } else if (res->err) {
        char m[200];
        snprintf(m, sizeof m, "engine unreachable: %s", gw_strerror(res->err));
        set_outcome(o, OP_CLASS_ERROR, m);
    } else if (o->status >= 200 && o->status < 300) {
        set_outcome(o, OP_CLASS_OK, "");
    } else {
        char m[256];
        snprintf(m, sizeof m, "engine answered %d: %.*s", o->status,
                 (int)(o->body.len > 180 ? 180 : o->body.len), o->body.p ? o->body.p : "");
        set_outcome(o, OP_CLASS_ERROR, m);
    }
    check_listed(o);
}

/* Ollama: POST /api/pull (install, upgrade) or DELETE /api/delete. */
static void ollama_model_op(struct aop *o)
{
    struct agent *a = o->a;
    bool del = o->kind == OP_DELETE;
    buf_init(&o->body, OPS_MAX_OUTPUT);
    struct buf req;
    buf_init(&req, 4096);
    int rc = buf_append_cstr(&req, "{\"model\":");
    if (!rc) rc = json_append_str(&req, o->name, strlen(o->name));
    if (!rc) rc = buf_append_cstr(&req, del ? "}" : ",\"stream\":false}");
    struct http_header h[2];
    size_t nh = 0;
    h[nh++] = (struct http_header){STRV_LIT("Content-Type"), STRV_LIT("application/json")};
    struct http_client_request rq = {
        .host = a->engine.host,
        .port = a->engine.port,
        .method = del ? STRV_LIT("DELETE") : STRV_LIT("POST"),
        .target = del ? STRV_LIT("/api/delete") : STRV_LIT("/api/pull"),
        .headers = h,
        .n_headers = nh,
        .body = {req.p, req.len},
        .connect_timeout_ms = 5000,
        .total_timeout_ms = o->timeout_ms,
    };
    static const struct http_client_callbacks cbs = {on_eng_head, on_eng_data, on_eng_done};
    if (rc || http_client_request(a->client, &rq, &cbs, o, &o->call)) {
        o->call = NULL;
        set_outcome(o, OP_CLASS_ERROR, "could not reach the engine");
        buf_free(&req);
        check_listed(o);
        return;
    }
    buf_free(&req);
}

static void start(struct aop *o)
{
    struct agent *a = o->a;
    if (o->is_model && (o->kind == OP_LOAD || o->kind == OP_UNLOAD)) {
        agent_engine_load(&a->engine, o->name, o->kind == OP_UNLOAD, on_load_result, o);
        return;
    }
    char tname[32];
    snprintf(tname, sizeof tname, "%s.%s", o->is_model ? "model" : "backend",
             op_kind_name(o->kind));
    const char *tmpl = template_for(a, tname);
    if (!tmpl && o->is_model && a->cfg.engine == NODE_KIND_OLLAMA) {
        ollama_model_op(o);
        return;
    }
    if (!tmpl) {
        char m[128];
        snprintf(m, sizeof m, "no template for %s", tname);
        set_outcome(o, OP_CLASS_CONFIG_ERROR, m);
        check_listed(o);
        return;
    }
    struct buf cmd;
    buf_init(&cmd, 64 * 1024);
    char why[160] = "";
    if (agent_ops_expand(tmpl, o->name, o->params_json, &cmd, why, sizeof why)) {
        buf_free(&cmd);
        set_outcome(o, OP_CLASS_CONFIG_ERROR, why[0] ? why : "the command is too long");
        check_listed(o);
        return;
    }
    LOGI("op_run", "kind=%s target=%s", op_kind_name(o->kind), o->key);
    bool started = run_command(o, cmd.p, o->timeout_ms, after_op_command);
    buf_free(&cmd);
    if (!started) {
        o->cls = OP_CLASS_EXCEPTION;
        check_listed(o);
    }
}

static int bad(struct http_request *req, const char *msg)
{
    return agent_answer_error(req, 400, "invalid_request_error", "invalid_op", msg, NULL, NULL);
}

void agent_ops_handle(struct agent *a, struct http_request *req)
{
    struct node_api_op op;
    struct gw_error err = {0};
    if (node_api_op_parse(req->body.p, req->body.len, &op, &err)) {
        (void)bad(req, err.msg);
        return;
    }
    struct aop *o = xcalloc(1, sizeof *o);
    o->a = a;
    o->req = req;
    o->kind = op.kind;
    o->is_model = op.is_model;
    snprintf(o->name, sizeof o->name, "%s", op.name);
    snprintf(o->key, sizeof o->key, "%s:%s", o->is_model ? "model" : "backend", o->name);
    o->params_json = op.params_json; /* taken */
    o->timeout_ms = a->cfg.ops_timeout_ms;
    if (op.timeout_ms && op.timeout_ms < o->timeout_ms) o->timeout_ms = op.timeout_ms;
    buf_init(&o->output, OPS_MAX_OUTPUT + 1);
    a->pending++;
    http_request_on_abort(req, aop_abort, o);
    unsigned n_running = 0;
    for (struct aop *r = running_ops; r; r = r->next) {
        n_running++;
        if (!strcmp(r->key, o->key)) {
            set_outcome(o, OP_CLASS_ABORTED, "another operation on this target is running");
            o->next = NULL;
        finish_standalone:
            LOGI("op_result", "kind=%s target=%s class=%s listed=0 message=\"%s\"",
                 op_kind_name(o->kind), o->key, op_class_name(o->cls), o->message);
            if (o->req) {
                http_request_on_abort(o->req, NULL, NULL);
                o->listed = false;
                answer(o->req, o);
            }
            if (a->pending) a->pending--;
            buf_free(&o->output);
            xfree(o->params_json);
            xfree(o);
            return;
        }
    }
    if (n_running >= OPS_MAX_RUNNING) {
        set_outcome(o, OP_CLASS_ABORTED, "too many operations running on this node");
        goto finish_standalone;
    }
    o->next = running_ops;
    running_ops = o;
    start(o);
}

/* ---- inventory ------------------------------------------------------------------------------ */

/* The node's inventory (proto's node_api_inventory): the models of the engine's view (its list
 * read by proto's parsers, with Ollama's digests), then the backends of the backend.list
 * template when there is one. GET /drover/v1/inventory answers it with the upgrade checks'
 * latest digests; the upgrade checker lists it in the background. */
struct agent_inventory_run {
    struct agent *a;
    agent_inventory_fn *done;
    void *ctx;
    struct node_api_inventory inv;
    bool models_ok;
    bool killed;
    struct aop *list;                   /* the backend.list run, while it runs */
    struct agent_inventory_run **track; /* the caller's pointer to this run, or NULL */
};

void agent_ops_fill_discovery(struct agent *a)
{
    struct node_api_discovery *d = &a->disc;
    d->n_ops = 0;
    bool ollama = a->cfg.engine == NODE_KIND_OLLAMA;
    static const char *const adapter[] = {"model.install", "model.upgrade", "model.delete",
                                          "model.load", "model.unload"};
    for (size_t i = 0; i < 5 && d->n_ops < 16; i++)
        if (ollama) snprintf(d->ops[d->n_ops++], sizeof d->ops[0], "%s", adapter[i]);
    for (size_t i = 0; i < AGENT_OPS_N_TEMPLATES && d->n_ops < 16; i++) {
        if (!a->cfg.ops_commands[i] || !strcmp(agent_ops_templates[i], "backend.list")) continue;
        bool dup = false;
        for (size_t j = 0; j < d->n_ops && !dup; j++)
            dup = !strcmp(d->ops[j], agent_ops_templates[i]);
        if (!dup) snprintf(d->ops[d->n_ops++], sizeof d->ops[0], "%s", agent_ops_templates[i]);
    }
}

size_t agent_ops_inventory_models(const struct node_api_models *engine,
                                  struct node_api_inv_items *out)
{
    size_t skipped = 0;
    for (size_t i = 0; i < engine->n; i++) {
        const struct node_api_model *m = &engine->v[i];
        if (node_api_inv_items_add(out, strv_from_cstr(m->id), STRV_NULL, strv_from_cstr(m->digest),
                                   STRV_NULL, NULL))
            skipped++;
    }
    return skipped;
}

size_t agent_ops_backends_parse(const char *text, size_t len, struct node_api_inv_items *out)
{
    size_t skipped = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        struct strv f[3] = {STRV_NULL, STRV_NULL, STRV_NULL};
        size_t nf = 0;
        const char *q = p;
        while (q < eol && nf < 3) {
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
            const char *w = q;
            while (w < eol && *w != ' ' && *w != '\t' && *w != '\r') w++;
            if (w > q) f[nf++] = (struct strv){q, (size_t)(w - q)};
            q = w;
        }
        if (nf && node_api_inv_items_add(out, f[0], f[1], f[2], STRV_NULL, NULL)) skipped++;
        p = eol + 1;
    }
    return skipped;
}

static void run_finish(struct agent_inventory_run *r, bool backends_ok)
{
    struct agent *a = r->a;
    if (r->track) *r->track = NULL;
    r->done(a, &r->inv, r->models_ok, backends_ok, r->ctx);
    if (a->pending) a->pending--;
    node_api_inventory_free(&r->inv);
    xfree(r);
}

static void after_inv_list(struct aop *o)
{
    struct agent_inventory_run *r = o->inv;
    r->list = NULL;
    bool ok = !o->timed_out && !o->term_signal && o->exit_status == 0;
    if (ok) {
        size_t skipped = agent_ops_backends_parse(o->output.p ? o->output.p : "", o->output.len,
                                                  &r->inv.backends);
        if (skipped)
            LOGW("inventory_backends", "skipped_lines=%zu reason=\"do not fit an item\"", skipped);
    } else if (!r->killed) {
        LOGW("inventory_backends",
             "reason=\"backend.list failed\" timed_out=%d signal=%d exit=%lld", o->timed_out,
             o->term_signal, (long long)o->exit_status);
    }
    buf_free(&o->output);
    xfree(o);
    run_finish(r, ok);
}

static void on_inv_view(struct agent_engine_view *view, void *ctx)
{
    struct agent_inventory_run *r = ctx;
    struct agent *a = r->a;
    r->models_ok = view->reachable;
    if (!view->reachable)
        LOGW("engine_down", "engine=%s url=%s reason=\"%s\"", node_kind_name(a->cfg.engine),
             a->engine.url, view->error);
    size_t skipped = agent_ops_inventory_models(&view->models, &r->inv.models);
    if (skipped) LOGW("inventory_models", "skipped=%zu reason=\"do not fit an item\"", skipped);
    const char *list = template_for(a, "backend.list");
    if (!list || r->killed) {
        run_finish(r, false);
        return;
    }
    struct aop *o = xcalloc(1, sizeof *o);
    o->a = a;
    o->inv = r;
    buf_init(&o->output, OPS_MAX_OUTPUT + 1);
    r->list = o;
    if (!run_command(o, list, OPS_LIST_TIMEOUT_MS, after_inv_list)) {
        o->exit_status = 1;
        after_inv_list(o);
    }
}

void agent_inventory_collect(struct agent *a, agent_inventory_fn *done, void *ctx,
                             struct agent_inventory_run **track)
{
    struct agent_inventory_run *r = xcalloc(1, sizeof *r);
    r->a = a;
    r->done = done;
    r->ctx = ctx;
    r->track = track;
    if (track) *track = r;
    a->pending++;
    agent_engine_inventory(&a->engine, on_inv_view, r);
}

void agent_inventory_kill(struct agent_inventory_run *r)
{
    r->killed = true;
    if (r->list && r->list->proc) agent_proc_kill(r->list->proc);
}

/* GET /drover/v1/inventory */
struct inv_req {
    struct http_request *req; /* NULL once the gateway left */
};

static void inv_req_abort(struct http_request *req, void *ctx)
{
    (void)req;
    ((struct inv_req *)ctx)->req = NULL;
}

static void on_inv_collected(struct agent *a, struct node_api_inventory *inv, bool models_ok,
                             bool backends_ok, void *ctx)
{
    struct inv_req *q = ctx;
    /* the latest digests the upgrade checks have cached; new names get checked later, in the
     * background */
    agent_upgrade_observe(a, inv, models_ok, backends_ok);
    if (q->req) {
        http_request_on_abort(q->req, NULL, NULL);
        struct buf b;
        buf_init(&b, NODE_API_MAX_INVENTORY_BYTES);
        if (node_api_inventory_emit(&b, inv)) {
            LOGW("inventory_too_large", "models=%zu backends=%zu max_bytes=%d", inv->models.n,
                 inv->backends.n, NODE_API_MAX_INVENTORY_BYTES);
            (void)agent_answer_error(q->req, 500, "server_error", NULL, "inventory too large", NULL,
                                     NULL);
        } else {
            (void)http_respond_json(q->req, 200, NULL, 0, b.p, b.len);
        }
        buf_free(&b);
    }
    xfree(q);
}

void agent_inventory_handle(struct agent *a, struct http_request *req)
{
    struct inv_req *q = xcalloc(1, sizeof *q);
    q->req = req;
    http_request_on_abort(req, inv_req_abort, q);
    agent_inventory_collect(a, on_inv_collected, q, NULL);
}
