/* ops — durable fleet operations (DESIGN §7, docs/ops.md). Every row lives in memory and is
 * written through to the store before anyone is told about it. The admin API issues rows
 * (one per node, keyed by node, target and op) and answers per node; the reconciler timer
 * retries due rows of healthy nodes with backoff and moves a row to the dead letters after its
 * 10th failure. Attempts are POST /drover/v1/ops to the node's agent. Due times are wall-clock
 * milliseconds (they survive restarts) read through ops_now_ms(), which tests can move forward
 * with `testing.clock_control`. The loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "gw/upstream.h"
#include "proto/node_api.h"
#include "gw/nodes.h"
#include "gw/ops.h"
#include "gw/ops_policy.h"
#include "gw/placement.h"
#include "gw/sync.h"
#include "store/store_ops.h"

enum {
    OPS_MAX_ROWS = 100000,
    OPS_ATTEMPT_MARGIN_MS = 5000, /* on top of the op timeout, for the agent's answer */
    OPS_MAX_ANSWER_BYTES = 64 * 1024,
};

struct op_row {
    struct gw *g;
    struct store_op s; /* owned strings */
    enum op_kind kind;
    bool running;
    struct http_call *call;
    struct buf answer;
    int status;
    struct issue *waiter; /* an admin request waiting for this attempt, or NULL */
    size_t waiter_slot;
    uint64_t renew_at_ms; /* several gateways: when the attempt's lease is renewed (loop clock) */
};

struct ops {
    struct op_row **rows;
    size_t n;
    struct store_op *dead;
    size_t n_dead;
    int64_t next_id;
    uv_timer_t timer;
    bool started;
};

/* One admin request: per-node results, answered when every row is stored and every immediate
 * attempt finished (or answer_wait passed). */
struct issue_result {
    char *node;
    const char *result; /* "success", "queued", "error", "skipped" */
    char *reason;       /* owned, may be NULL */
    int64_t op_id;
};

struct issue {
    struct gw *g;
    struct http_request *req; /* NULL once the client left */
    struct issue_result *res;
    size_t n_res;
    unsigned pending; /* stores and attempts still to come */
    uv_timer_t wait;
    bool answered;
};

static void attempt_start(struct gw *g, struct op_row *r);

/* Several gateways share the rows (PostgreSQL): attempts are taken with a lease
 * (store_claim_op) and finished only by the lease's holder; ids come from a block of our own. */
static bool is_shared(const struct gw *g)
{
    return g->store && store_engine(g->store) == STORE_ENGINE_POSTGRES;
}

int64_t ops_now_ms(const struct gw *g)
{
    return (int64_t)clock_wall_ms(); /* base/clock: wall time + the testing offset */
}

/* ---- rows -------------------------------------------------------------------------------- */

static bool target_is_valid(const char *t, bool *is_model)
{
    if (!t) return false;
    if (strncmp(t, "model:", 6) == 0 && t[6]) {
        *is_model = true;
        return strlen(t) < 300;
    }
    if (strncmp(t, "backend:", 8) == 0 && t[8]) {
        *is_model = false;
        return strlen(t) < 300;
    }
    return false;
}

static struct op_row *row_find(struct ops *o, const char *node, const char *target, const char *op)
{
    for (size_t i = 0; i < o->n; i++) {
        struct store_op *s = &o->rows[i]->s;
        if (!strcmp(s->node, node) && !strcmp(s->target, target) && !strcmp(s->op, op))
            return o->rows[i];
    }
    return NULL;
}

static struct op_row *row_by_id(struct ops *o, int64_t id)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->rows[i]->s.id == id) return o->rows[i];
    return NULL;
}

static void set_str(char **f, const char *v)
{
    xfree(*f);
    *f = v ? xstrdup(v) : NULL;
}

/* The callback context of a write of operation row id (sync.h: re-reads queued before it do
 * not overwrite the row meanwhile); pass with sync_write_done. */
static void *op_write(struct gw *g, int64_t id, store_done_fn done, void *ctx)
{
    char key[24];
    return sync_write(g, SYNC_OP, sync_op_key(id, key), done, ctx);
}

static void row_persist(struct gw *g, struct op_row *r, store_done_fn done, void *ctx)
{
    r->s.updated_ms = ops_now_ms(g);
    if (g->store)
        store_put_op(g->store, &r->s, sync_write_done, op_write(g, r->s.id, done, ctx));
    else if (done)
        done(ctx, 0, NULL);
}

/* Stores the outcome of an attempt this gateway made: with several gateways the lease holder's
 * write, which also ends the lease (store_finish_op; bury: into the dead letters); alone, the
 * row itself (bury: moved to the dead letters). */
static void write_outcome(struct gw *g, struct op_row *r, bool bury)
{
    if (!g->store) return;
    r->s.updated_ms = ops_now_ms(g);
    if (is_shared(g))
        store_finish_op(g->store, &r->s, g->origin, bury, sync_write_done,
                        op_write(g, r->s.id, NULL, NULL));
    else if (bury)
        store_bury_op(g->store, &r->s, sync_write_done, op_write(g, r->s.id, NULL, NULL));
    else
        row_persist(g, r, NULL, NULL);
}

static void row_remove(struct ops *o, struct op_row *r)
{
    for (size_t i = 0; i < o->n; i++) {
        if (o->rows[i] != r) continue;
        o->rows[i] = o->rows[--o->n];
        break;
    }
    buf_free(&r->answer);
    store_op_clear(&r->s);
    xfree(r);
}

/* placement's question (docs/placement.md): is an install of model on node queued or running?
 * Then no load goes there; the reconciler waits for the files. */
static bool install_queued(void *ctx, const char *node, const char *model)
{
    struct gw *g = ctx;
    char target[320];
    snprintf(target, sizeof target, "model:%s", model);
    struct op_row *r = g->ops ? row_find(g->ops, node, target, "install") : NULL;
    return r && r->s.state && strcmp(r->s.state, "done") != 0;
}

/* ---- the JSON of rows ---------------------------------------------------------------------- */

static int str_or_null(struct buf *b, const char *s)
{
    return s ? json_append_str(b, s, strlen(s)) : buf_append_cstr(b, "null");
}

static int row_json(struct buf *b, const struct store_op *s, bool dead, int64_t now)
{
    int rc = buf_appendf(b, "{\"id\":%lld,\"node\":", (long long)s->id);
    if (!rc) rc = str_or_null(b, s->node);
    if (!rc) rc = buf_append_cstr(b, ",\"target\":");
    if (!rc) rc = str_or_null(b, s->target);
    if (!rc) rc = buf_append_cstr(b, ",\"op\":");
    if (!rc) rc = str_or_null(b, s->op);
    if (!rc) rc = buf_appendf(b, ",\"params\":%s", s->params_json ? s->params_json : "null");
    if (!rc && !dead) rc = buf_append_cstr(b, ",\"state\":");
    if (!rc && !dead) rc = str_or_null(b, s->state);
    if (!rc) rc = buf_appendf(b, ",\"attempts\":%u", s->attempts);
    if (!rc && !dead)
        rc = buf_appendf(b, ",\"next_try_ms\":%lld,\"next_try_in_ms\":%lld",
                         (long long)s->next_try_ms,
                         (long long)(s->next_try_ms > now ? s->next_try_ms - now : 0));
    if (!rc) rc = buf_append_cstr(b, ",\"last_error\":");
    if (!rc) rc = str_or_null(b, s->last_error);
    if (!rc) rc = buf_append_cstr(b, ",\"last_class\":");
    if (!rc) rc = str_or_null(b, s->last_class);
    if (!rc)
        rc = buf_appendf(b, ",\"created_ms\":%lld,\"updated_ms\":%lld", (long long)s->created_ms,
                         (long long)s->updated_ms);
    if (!rc && dead) rc = buf_appendf(b, ",\"dead_ms\":%lld", (long long)s->dead_ms);
    if (!rc) rc = buf_append_cstr(b, "}");
    return rc;
}

/* ---- issuing ------------------------------------------------------------------------------- */

static void issue_free(uv_handle_t *h)
{
    struct issue *is = h->data;
    for (size_t i = 0; i < is->n_res; i++) {
        xfree(is->res[i].node);
        xfree(is->res[i].reason);
    }
    xfree(is->res);
    xfree(is);
}

static void issue_answer(struct issue *is)
{
    if (is->answered) return;
    is->answered = true;
    uv_timer_stop(&is->wait);
    /* rows still waited on forget this issue */
    struct ops *o = is->g->ops;
    for (size_t i = 0; i < o->n; i++)
        if (o->rows[i]->waiter == is) o->rows[i]->waiter = NULL;
    if (is->req) {
        struct buf b;
        buf_init(&b, 64u << 20);
        int rc = buf_append_cstr(&b, "{\"results\":[");
        for (size_t i = 0; i < is->n_res && !rc; i++) {
            struct issue_result *r = &is->res[i];
            if (i) rc = buf_append_cstr(&b, ",");
            if (!rc) rc = buf_append_cstr(&b, "{\"node\":");
            if (!rc) rc = str_or_null(&b, r->node);
            if (!rc) rc = buf_appendf(&b, ",\"result\":\"%s\",\"reason\":", r->result);
            if (!rc) rc = str_or_null(&b, r->reason);
            if (!rc && r->op_id) rc = buf_appendf(&b, ",\"op_id\":%lld", (long long)r->op_id);
            if (!rc) rc = buf_append_cstr(&b, "}");
        }
        if (!rc) rc = buf_append_cstr(&b, "]}");
        http_request_on_abort(is->req, NULL, NULL);
        (void)http_respond_json(is->req, rc ? 500 : 200, NULL, 0, b.p, b.len);
        buf_free(&b);
        is->req = NULL;
    }
    uv_close((uv_handle_t *)&is->wait, issue_free);
}

static void issue_step(struct issue *is)
{
    if (is->pending > 0) is->pending--;
    if (is->pending == 0) issue_answer(is);
}

static void issue_abort(struct http_request *req, void *ctx)
{
    (void)req;
    ((struct issue *)ctx)->req = NULL;
}

static void on_issue_wait(uv_timer_t *t)
{
    /* attempts still running are reported as queued: they finish in the background */
    issue_answer(t->data);
}

static struct issue_result *issue_add(struct issue *is, const char *node, const char *result,
                                      const char *reason)
{
    is->res = xrealloc(is->res, (is->n_res + 1) * sizeof *is->res);
    struct issue_result *r = &is->res[is->n_res++];
    r->node = xstrdup(node);
    r->result = result;
    r->reason = reason ? xstrdup(reason) : NULL;
    r->op_id = 0;
    return r;
}

struct stored_ctx {
    struct issue *is;
    struct op_row *row; /* start an attempt once stored, or NULL */
    size_t slot;
    int64_t row_id;
};

static void on_row_stored(void *ctx, int rc, const char *msg)
{
    struct stored_ctx *sc = ctx;
    struct issue *is = sc->is;
    struct gw *g = is->g;
    struct op_row *r = row_by_id(g->ops, sc->row_id);
    if (rc) {
        LOGE("op_store_failed", "op=%lld reason=\"%s\"", (long long)sc->row_id, msg ? msg : "?");
        is->res[sc->slot].result = "error";
        set_str(&is->res[sc->slot].reason, "the operation could not be stored");
    } else if (r && sc->row) {
        /* the node is healthy: try at once; the answer waits for it (bounded). The reconciler
         * may have started the attempt already (the row was due the moment it was issued):
         * then this answer waits for that attempt. An older request waiting on the same row
         * is answered by its own timer. */
        if (r->running) {
            r->waiter = is;
            r->waiter_slot = sc->slot;
            is->pending++;
        } else if (r->s.state && strcmp(r->s.state, "done") == 0) {
            is->res[sc->slot].result = "success"; /* the reconciler was quicker */
        } else if (r->s.attempts > 0) {
            /* the reconciler's attempt already failed: the same answer as if it were ours (a
             * node that did not answer at all leaves the op queued, DESIGN §7) */
            bool unreachable = r->s.last_class && strcmp(r->s.last_class, "unreachable") == 0;
            is->res[sc->slot].result = unreachable ? "queued" : "error";
            set_str(&is->res[sc->slot].reason, r->s.last_error);
        } else {
            r->waiter = is;
            r->waiter_slot = sc->slot;
            is->pending++;
            attempt_start(g, r);
        }
    }
    xfree(sc);
    issue_step(is);
}

static bool node_takes(const struct node *n, const char *target, const char *op, bool *known)
{
    /* an agent lists the ops it takes in its discovery: "ops": ["model.install", …] */
    *known = false;
    if (!n->discovery_json) return false;
    struct node_api_discovery *d = xmalloc(sizeof *d);
    bool yes = false;
    if (node_api_discovery_parse(n->discovery_json, strlen(n->discovery_json), d, NULL) == 0 &&
        d->has_ops) {
        *known = true;
        char want[64];
        snprintf(want, sizeof want, "%s.%s",
                 strncmp(target, "model:", 6) == 0 ? "model" : "backend", op);
        yes = node_api_discovery_takes_op(d, want);
    }
    xfree(d);
    return yes;
}

static bool labels_match(const struct node *n, struct json_object *selector)
{
    if (!selector) return true;
    json_object_object_foreach(selector, k, v)
    {
        bool ok = false;
        for (size_t i = 0; i < n->n_labels && !ok; i++)
            ok = !strcmp(n->labels[i].key, k) &&
                 !strcmp(n->labels[i].value, json_object_get_string(v));
        if (!ok) return false;
    }
    return true;
}

static bool node_ready_for_ops(const struct gw *g, const struct node *n)
{
    return (n->admin == ADMIN_APPROVED || n->admin == ADMIN_DRAINING) && n->api_key &&
           n->live == LIVE_HEALTHY && !node_is_cooled(n, gw_now_ms(g));
}

/* Considers one node for the op; adds its result and, when it takes it, its row. */
static void issue_node(struct issue *is, struct node *n, const char *target, enum op_kind kind,
                       const char *params)
{
    struct gw *g = is->g;
    struct ops *o = g->ops;
    const char *op = op_kind_name(kind);
    if (n->admin == ADMIN_REMOVED) {
        issue_add(is, n->name, "skipped", "the node was removed");
        return;
    }
    if (n->admin == ADMIN_PENDING) {
        issue_add(is, n->name, "skipped", "the node is pending approval");
        return;
    }
    if (!n->via_agent) {
        issue_add(is, n->name, "skipped", "static node: no agent to carry the operation out");
        return;
    }
    bool known = false;
    if (!node_takes(n, target, op, &known)) {
        issue_add(is, n->name, "skipped",
                  known ? "the node's agent does not take this operation"
                        : "the node's agent has not said which operations it takes");
        return;
    }
    struct op_row *r = row_find(o, n->name, target, op);
    if (!r) {
        if (o->n >= OPS_MAX_ROWS) {
            issue_add(is, n->name, "error", "too many operations queued");
            return;
        }
        r = xcalloc(1, sizeof *r);
        r->g = g;
        r->s.id = o->next_id++;
        r->s.node = xstrdup(n->name);
        r->s.target = xstrdup(target);
        r->s.op = xstrdup(op);
        r->s.created_ms = ops_now_ms(g);
        r->kind = kind;
        o->rows = xrealloc(o->rows, (o->n + 1) * sizeof *o->rows);
        o->rows[o->n++] = r;
    }
    /* issuing again updates the row: new params, a clean record, due now */
    set_str(&r->s.params_json, params);
    set_str(&r->s.state, "pending");
    r->s.attempts = 0;
    r->s.next_try_ms = ops_now_ms(g);
    set_str(&r->s.last_error, NULL);
    set_str(&r->s.last_class, NULL);
    bool ready = node_ready_for_ops(g, n) && !r->running;
    struct issue_result *res = issue_add(is, n->name, "queued",
                                         ready        ? NULL
                                         : r->running ? "an attempt is running"
                                                      : "the node is not healthy now");
    res->op_id = r->s.id;
    struct stored_ctx *sc = xcalloc(1, sizeof *sc);
    sc->is = is;
    sc->row = ready ? r : NULL;
    sc->slot = is->n_res - 1;
    sc->row_id = r->s.id;
    is->pending++;
    LOGI("op_issued", "op=%lld node=%s target=%s kind=%s", (long long)r->s.id, n->name, target, op);
    row_persist(g, r, on_row_stored, sc);
}

static void ops_issue(struct gw *g, struct http_request *req)
{
    struct gw_error jerr = {0};
    struct json_object *root = json_parse_strict(req->body.p, req->body.len, 8, &jerr);
    if (!root || !json_object_is_type(root, json_type_object)) {
        if (root) json_object_put(root);
        return gw_reply_error(req, 400, "invalid_json", NULL, "the body must be a JSON object");
    }
    json_object_object_foreach(root, key, val)
    {
        (void)val;
        if (strcmp(key, "op") && strcmp(key, "target") && strcmp(key, "nodes") &&
            strcmp(key, "selector") && strcmp(key, "params")) {
            json_object_put(root);
            return gw_reply_error(req, 400, "invalid_op", key, "unknown field");
        }
    }
    struct strv opv, tv;
    enum op_kind kind;
    if (json_get_str(root, "op", &opv) || op_kind_parse(opv, &kind)) {
        json_object_put(root);
        return gw_reply_error(req, 400, "invalid_op", "op",
                              "'op' must be install, upgrade, delete, load or unload");
    }
    char target[300];
    bool is_model = false;
    if (json_get_str(root, "target", &tv) || tv.len >= sizeof target) {
        json_object_put(root);
        return gw_reply_error(req, 400, "invalid_op", "target",
                              "'target' must be \"model:NAME\" or \"backend:NAME\"");
    }
    memcpy(target, tv.p, tv.len);
    target[tv.len] = '\0';
    if (!target_is_valid(target, &is_model)) {
        json_object_put(root);
        return gw_reply_error(req, 400, "invalid_op", "target",
                              "'target' must be \"model:NAME\" or \"backend:NAME\"");
    }
    if (!is_model && (kind == OP_LOAD || kind == OP_UNLOAD)) {
        json_object_put(root);
        return gw_reply_error(req, 400, "invalid_op", "op", "only models are loaded and unloaded");
    }
    struct json_object *nodes = NULL, *selector = NULL, *params = NULL;
    if (json_object_object_get_ex(root, "nodes", &nodes) && nodes) {
        bool ok = json_object_is_type(nodes, json_type_array) &&
                  json_object_array_length(nodes) > 0 && json_object_array_length(nodes) <= 10000;
        for (size_t i = 0; ok && i < json_object_array_length(nodes); i++)
            ok = json_object_is_type(json_object_array_get_idx(nodes, i), json_type_string);
        if (!ok) {
            json_object_put(root);
            return gw_reply_error(req, 400, "invalid_op", "nodes",
                                  "'nodes' must be a non-empty array of node names");
        }
    }
    if (json_object_object_get_ex(root, "selector", &selector) && selector) {
        bool ok = json_object_is_type(selector, json_type_object);
        json_object_object_foreach(selector, sk, sv)
        {
            (void)sk;
            ok = ok && json_object_is_type(sv, json_type_string);
        }
        if (!ok) {
            json_object_put(root);
            return gw_reply_error(req, 400, "invalid_op", "selector",
                                  "'selector' must be an object of label values");
        }
    }
    const char *params_s = NULL;
    if (json_object_object_get_ex(root, "params", &params) && params &&
        !json_object_is_type(params, json_type_null)) {
        if (!json_object_is_type(params, json_type_object)) {
            json_object_put(root);
            return gw_reply_error(req, 400, "invalid_op", "params", "'params' must be an object");
        }
        params_s = json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN);
    }
    struct issue *is = xcalloc(1, sizeof *is);
    is->g = g;
    is->req = req;
    uv_timer_init(g->loop, &is->wait);
    is->wait.data = is;
    http_request_on_abort(req, issue_abort, is);
    is->pending = 1; /* held until every node was considered */
    if (nodes) {
        for (size_t i = 0; i < json_object_array_length(nodes); i++) {
            const char *name = json_object_get_string(json_object_array_get_idx(nodes, i));
            struct node *n = registry_find(&g->reg, strv_from_cstr(name));
            if (!n)
                issue_add(is, name, "skipped", "no such node");
            else if (labels_match(n, selector))
                issue_node(is, n, target, kind, params_s);
            else
                issue_add(is, name, "skipped", "the node does not match the selector");
        }
    } else {
        for (size_t i = 0; i < g->reg.n; i++) {
            struct node *n = g->reg.nodes[i];
            if (n->admin == ADMIN_REMOVED || !labels_match(n, selector)) continue;
            issue_node(is, n, target, kind, params_s);
        }
    }
    json_object_put(root);
    uv_timer_start(&is->wait, on_issue_wait, g->cfg.ops_answer_wait_ms, 0);
    issue_step(is);
}

/* ---- attempts ----------------------------------------------------------------------------- */

static void on_att_head(struct http_call *c, const struct http_response_head *h, void *ctx)
{
    (void)c;
    ((struct op_row *)ctx)->status = h->status;
}

static void on_att_data(struct http_call *c, const char *p, size_t len, void *ctx)
{
    struct op_row *r = ctx;
    if (buf_append(&r->answer, p, len)) http_call_cancel(c), r->call = NULL, r->status = -1;
}

static void finish_attempt(struct gw *g, struct op_row *r, bool answered, enum op_class cls,
                           bool listed, const char *msg);

static void on_att_done(struct http_call *c, const struct http_call_result *res, void *ctx)
{
    (void)c;
    struct op_row *r = ctx;
    r->call = NULL;
    struct gw *g = r->g;
    bool answered = res->err == 0 && r->status > 0;
    enum op_class cls = OP_CLASS_ERROR;
    bool listed = false;
    char msg[256] = "";
    if (!answered) {
        snprintf(msg, sizeof msg, "the agent did not answer: %s", gw_strerror(res->err));
    } else {
        struct node_api_op_answer ans;
        if (node_api_op_answer_parse(r->answer.p, r->answer.len, &ans, NULL)) {
            /* an answer we cannot read is a generic error, verified like any other */
            snprintf(msg, sizeof msg, "status %d without an outcome class", r->status);
        } else {
            snprintf(msg, sizeof msg, "%.200s", ans.message);
        }
        cls = ans.cls;
        listed = ans.listed;
    }
    buf_free(&r->answer);
    finish_attempt(g, r, answered, cls, listed, msg);
}

static void finish_attempt(struct gw *g, struct op_row *r, bool answered, enum op_class cls,
                           bool listed, const char *msg)
{
    struct ops *o = g->ops;
    r->running = false;
    struct node *n = registry_find(&g->reg, strv_from_cstr(r->s.node));
    if (!answered && n && n->live != LIVE_UNHEALTHY) {
        /* a node that does not answer at all is marked unhealthy before the failure counts */
        registry_set_unhealthy(&g->reg, n, "no answer to an operation");
    }
    enum ops_verdict v = ops_judge(r->kind, answered, cls, listed);
    struct issue *is = r->waiter;
    r->waiter = NULL;
    if (v == OPS_DONE) {
        set_str(&r->s.state, "done");
        set_str(&r->s.last_class, op_class_name(cls));
        set_str(&r->s.last_error, cls == OP_CLASS_OK ? NULL : msg);
        LOGI("op_done", "op=%lld node=%s target=%s kind=%s class=%s", (long long)r->s.id, r->s.node,
             r->s.target, r->s.op, op_class_name(cls));
        if (is) is->res[r->waiter_slot].result = "success";
        write_outcome(g, r, false);
    } else {
        r->s.attempts++;
        set_str(&r->s.last_class, answered ? op_class_name(cls) : "unreachable");
        set_str(&r->s.last_error, msg);
        double jitter = 0.8 + 0.4 * ((double)rand() / (double)RAND_MAX);
        r->s.next_try_ms = ops_now_ms(g) + (int64_t)ops_backoff_ms(r->s.attempts, jitter);
        set_str(&r->s.state, "pending");
        if (is) {
            is->res[r->waiter_slot].result = answered ? "error" : "queued";
            set_str(&is->res[r->waiter_slot].reason, msg);
        }
        if (ops_is_dead(r->s.attempts)) {
            r->s.dead_ms = ops_now_ms(g);
            r->s.updated_ms = r->s.dead_ms;
            LOGW("op_dead", "op=%lld node=%s target=%s kind=%s attempts=%u last=\"%s\"",
                 (long long)r->s.id, r->s.node, r->s.target, r->s.op, r->s.attempts, msg);
            write_outcome(g, r, true);
            o->dead = xrealloc(o->dead, (o->n_dead + 1) * sizeof *o->dead);
            store_op_copy(&o->dead[o->n_dead++], &r->s);
            set_str(&o->dead[o->n_dead - 1].state, NULL);
            if (is) is->res[r->waiter_slot].result = "error";
            row_remove(o, r);
        } else {
            LOGW("op_failed",
                 "op=%lld node=%s target=%s kind=%s attempts=%u class=%s "
                 "next_try_in_ms=%lld error=\"%s\"",
                 (long long)r->s.id, r->s.node, r->s.target, r->s.op, r->s.attempts,
                 r->s.last_class, (long long)(r->s.next_try_ms - ops_now_ms(g)), msg);
            write_outcome(g, r, false);
        }
    }
    if (is) issue_step(is);
}

static void attempt_send(struct gw *g, struct op_row *r, struct node *n);

struct claim_ctx {
    struct gw *g;
    int64_t id;
};

/* Several gateways: an attempt's lease is three periods (store.lease, or ops.interval when
 * the ticks that renew it are further apart), renewed every store.lease while the attempt runs
 * (ops_tick), so a long attempt keeps it and a gateway killed mid-attempt hands its row over
 * within a few periods, however long ops.timeout is. */
static int64_t attempt_lease_ms(const struct gw *g)
{
    uint64_t period = g->cfg.store_lease_ms;
    if (g->cfg.ops_interval_ms > period) period = g->cfg.ops_interval_ms;
    return 3 * (int64_t)period;
}

static void on_renewed(void *ctx, int rc, const char *msg)
{
    struct claim_ctx *cc = ctx;
    if (rc == GW_E_STATE)
        LOGW("op_lease_lost", "op=%lld err=\"%s\" then=\"our outcome will not be written\"",
             (long long)cc->id, msg ? msg : "?");
    else if (rc)
        LOGW("op_lease_renew_failed", "op=%lld err=\"%s\"", (long long)cc->id, msg ? msg : "?");
    xfree(cc);
}

static void renew_leases(struct gw *g)
{
    struct ops *o = g->ops;
    uint64_t now = gw_now_ms(g);
    for (size_t i = 0; i < o->n; i++) {
        struct op_row *r = o->rows[i];
        if (!r->running || !r->call || now < r->renew_at_ms) continue;
        r->renew_at_ms = now + g->cfg.store_lease_ms;
        struct claim_ctx *cc = xmalloc(sizeof *cc);
        cc->g = g;
        cc->id = r->s.id;
        store_renew_op(g->store, r->s.id, g->origin, attempt_lease_ms(g), on_renewed, cc);
    }
}

static void on_claimed(void *ctx, int rc, bool claimed, const struct store_op *row)
{
    struct claim_ctx *cc = ctx;
    struct gw *g = cc->g;
    struct ops *o = g->ops;
    struct op_row *r = o && o->started ? row_by_id(o, cc->id) : NULL;
    xfree(cc);
    if (!r) return; /* gone, or shutting down: the lease expires by itself */
    struct node *n = registry_find(&g->reg, strv_from_cstr(r->s.node));
    if (rc || !claimed || !n || !n->api_key) {
        /* another gateway holds it or finished it, or the store is away */
        r->running = false;
        struct issue *is = r->waiter;
        r->waiter = NULL;
        if (is) {
            is->res[r->waiter_slot].result = "queued";
            set_str(&is->res[r->waiter_slot].reason,
                    rc ? "the store is unavailable" : "another gateway is attempting it");
            issue_step(is);
        }
        if (claimed) {
            set_str(&r->s.state, "pending"); /* the lease expires; any gateway retakes it */
        } else if (!rc && row) {
            /* the row as another gateway left it (notifications that came while we were
             * claiming were not applied to it) */
            struct store_op keep = r->s;
            store_op_copy(&r->s, row);
            store_op_clear(&keep);
        } else if (!rc) {
            row_remove(o, r); /* done and buried or pruned elsewhere; its dead letter comes by
                               * notification or the next full re-read */
        }
        return;
    }
    /* the row as stored: attempts by every gateway so far */
    struct store_op keep = r->s;
    store_op_copy(&r->s, row);
    store_op_clear(&keep);
    if (op_kind_parse(strv_from_cstr(r->s.op), &r->kind)) r->kind = OP_INSTALL;
    r->renew_at_ms = gw_now_ms(g) + g->cfg.store_lease_ms;
    attempt_send(g, r, n);
}

static void attempt_start(struct gw *g, struct op_row *r)
{
    struct node *n = registry_find(&g->reg, strv_from_cstr(r->s.node));
    if (!n || !n->api_key) return;
    r->running = true;
    if (is_shared(g)) {
        struct claim_ctx *cc = xmalloc(sizeof *cc);
        cc->g = g;
        cc->id = r->s.id;
        store_claim_op(g->store, r->s.id, g->origin, ops_now_ms(g), attempt_lease_ms(g), on_claimed,
                       cc);
        return;
    }
    set_str(&r->s.state, "running");
    row_persist(g, r, NULL, NULL);
    attempt_send(g, r, n);
}

static void attempt_send(struct gw *g, struct op_row *r, struct node *n)
{
    struct buf body;
    buf_init(&body, 64 * 1024);
    const char *colon = strchr(r->s.target, ':');
    struct node_api_op op = {
        .kind = r->kind,
        .is_model = strncmp(r->s.target, "model:", 6) == 0,
        .params_json = r->s.params_json,
        .timeout_ms = g->cfg.ops_timeout_ms,
        .op_id = r->s.id,
    };
    size_t name_len = strlen(colon + 1);
    int rc = name_len < sizeof op.name ? 0 : GW_E_LIMIT;
    if (!rc) memcpy(op.name, colon + 1, name_len + 1);
    if (!rc) rc = node_api_op_emit(&body, &op);
    buf_init(&r->answer, OPS_MAX_ANSWER_BYTES);
    r->status = 0;
    static const struct http_client_callbacks cbs = {on_att_head, on_att_data, on_att_done};
    LOGI("op_attempt", "op=%lld node=%s target=%s kind=%s attempt=%u", (long long)r->s.id,
         r->s.node, r->s.target, r->s.op, r->s.attempts + 1);
    if (rc ||
        upstream_agent_call(g, n, "POST", NODE_API_PATH_OPS, (struct strv){body.p, body.len},
                            g->cfg.ops_timeout_ms + OPS_ATTEMPT_MARGIN_MS, &cbs, r, &r->call)) {
        r->call = NULL;
        buf_free(&r->answer);
        finish_attempt(g, r, false, OP_CLASS_ERROR, false, "could not start the request");
    }
    buf_free(&body);
}

/* ---- the reconciler ---------------------------------------------------------------------- */

void ops_tick(struct gw *g)
{
    struct ops *o = g->ops;
    if (!o) return;
    /* several gateways: the queue pauses while the store is away (leases cannot be taken) */
    if (is_shared(g) && !store_is_available(g->store)) return;
    if (is_shared(g)) renew_leases(g);
    int64_t now = ops_now_ms(g), wall = (int64_t)clock_wall_ms();
    for (size_t i = 0; i < o->n; i++) {
        struct op_row *r = o->rows[i];
        if (r->running) continue;
        bool due = strcmp(r->s.state, "pending") == 0 && r->s.next_try_ms <= now;
        /* another gateway's attempt whose lease ran out (it died mid-attempt): take it over; the
         * claim decides, with the database's clock */
        bool orphan =
            is_shared(g) && strcmp(r->s.state, "running") == 0 && r->s.lease_until_ms < wall;
        if (!due && !orphan) continue;
        struct node *n = registry_find(&g->reg, strv_from_cstr(r->s.node));
        if (!n || !node_ready_for_ops(g, n)) continue; /* stays queued until the node is back */
        attempt_start(g, r);
        /* attempt_start may have finished the row at once (and removed it) */
        if (i < o->n && o->rows[i] != r) i--;
    }
}

static void on_tick(uv_timer_t *t)
{
    ops_tick(t->data);
}

/* ---- start-up: load and prune ------------------------------------------------------------ */

static bool prune_reason(const struct gw *g, const struct store_op *s, const char **why)
{
    bool is_model;
    enum op_kind k;
    struct node *n = s->node ? registry_find(&g->reg, strv_from_cstr(s->node)) : NULL;
    if (!s->target || !target_is_valid(s->target, &is_model))
        *why = "empty or malformed target";
    else if (!s->op || op_kind_parse(strv_from_cstr(s->op), &k))
        *why = "unknown op";
    else if (!n)
        *why = "the node is gone";
    else if (n->admin == ADMIN_REMOVED)
        *why = "the node was removed";
    else
        return false;
    return true;
}

int ops_start(struct gw *g, struct gw_error *err)
{
    struct ops *o = xcalloc(1, sizeof *o);
    g->ops = o;
    o->next_id = 1;
    placement_set_install_probe(install_queued, g);
    struct store_op *rows = NULL, *dead = NULL;
    size_t n_rows = 0, n_dead = 0;
    if (g->store) {
        if (is_shared(g)) {
            int64_t first = 0;
            if (store_ops_id_block(g->store, &first, err)) return -1;
            if (first > o->next_id) o->next_id = first;
        }
        if (store_load_ops(g->store, false, &rows, &n_rows, err)) return -1;
        if (store_load_ops(g->store, true, &dead, &n_dead, err)) {
            store_ops_free(rows, n_rows);
            return -1;
        }
    }
    size_t pruned = 0;
    for (size_t i = 0; i < n_rows; i++) {
        struct store_op *s = &rows[i];
        if (s->id >= o->next_id) o->next_id = s->id + 1;
        const char *why;
        /* several gateways: the leader prunes (ops_on_leader) */
        if (!is_shared(g) && prune_reason(g, s, &why)) {
            LOGI("op_pruned", "op=%lld node=%s target=%s reason=\"%s\"", (long long)s->id,
                 s->node ? s->node : "-", s->target ? s->target : "-", why);
            store_delete_op(g->store, s->id, NULL, NULL);
            pruned++;
            continue;
        }
        struct op_row *r = xcalloc(1, sizeof *r);
        r->g = g;
        r->s = *s;
        memset(s, 0, sizeof *s);                                                    /* moved */
        if (op_kind_parse(strv_from_cstr(r->s.op), &r->kind)) r->kind = OP_INSTALL; /* pruned */
        if (!r->s.state || (!is_shared(g) && strcmp(r->s.state, "running") == 0)) {
            /* killed mid-attempt: the attempt's answer is lost; the op is idempotent on the
             * agent, so it is simply due again */
            set_str(&r->s.state, "pending");
            store_put_op(g->store, &r->s, NULL, NULL);
        }
        o->rows = xrealloc(o->rows, (o->n + 1) * sizeof *o->rows);
        o->rows[o->n++] = r;
    }
    store_ops_free(rows, n_rows);
    for (size_t i = 0; i < n_dead; i++)
        if (dead[i].id >= o->next_id) o->next_id = dead[i].id + 1;
    o->dead = dead;
    o->n_dead = n_dead;
    uv_timer_init(g->loop, &o->timer);
    o->timer.data = g;
    uv_timer_start(&o->timer, on_tick, g->cfg.ops_interval_ms, g->cfg.ops_interval_ms);
    o->started = true;
    LOGI("ops_loaded", "pending=%zu dead=%zu pruned=%zu", o->n, o->n_dead, pruned);
    return 0;
}

/* ---- several gateways (sync.c) ----------------------------------------------------------- */

void ops_on_leader(struct gw *g)
{
    struct ops *o = g->ops;
    if (!o || !o->started || !is_shared(g)) return;
    size_t pruned = 0;
    for (size_t i = 0; i < o->n;) {
        struct op_row *r = o->rows[i];
        const char *why;
        if (r->running || !prune_reason(g, &r->s, &why)) {
            i++;
            continue;
        }
        LOGI("op_pruned", "op=%lld node=%s target=%s reason=\"%s\"", (long long)r->s.id,
             r->s.node ? r->s.node : "-", r->s.target ? r->s.target : "-", why);
        store_delete_op(g->store, r->s.id, sync_write_done, op_write(g, r->s.id, NULL, NULL));
        row_remove(o, r); /* moves the last row to i */
        pruned++;
    }
    if (pruned) LOGI("ops_pruned", "pruned=%zu by=leader", pruned);
}

static void dead_apply(struct ops *o, int64_t id, const struct store_op *dead)
{
    size_t i = 0;
    while (i < o->n_dead && o->dead[i].id != id) i++;
    if (dead && i == o->n_dead) {
        o->dead = xrealloc(o->dead, (o->n_dead + 1) * sizeof *o->dead);
        store_op_copy(&o->dead[o->n_dead++], dead);
    } else if (dead) {
        store_op_clear(&o->dead[i]);
        store_op_copy(&o->dead[i], dead);
    } else if (i < o->n_dead) {
        store_op_clear(&o->dead[i]);
        o->dead[i] = o->dead[--o->n_dead];
    }
}

void ops_apply_remote(struct gw *g, int64_t id, const struct store_op *row,
                      const struct store_op *dead)
{
    struct ops *o = g->ops;
    char key[24];
    if (!o || !o->started || sync_defer_remote(g, SYNC_OP, sync_op_key(id, key))) return;
    dead_apply(o, id, dead);
    struct op_row *r = row_by_id(o, id);
    if (r && r->running) return; /* our attempt: we hold the lease and write its outcome */
    if (!row) {
        if (r) row_remove(o, r);
        return;
    }
    if (!r) {
        if (o->n >= OPS_MAX_ROWS) return;
        /* the same (node, target, op) under another id: the store's row wins */
        struct op_row *old = row_find(o, row->node, row->target, row->op);
        if (old && !old->running) row_remove(o, old);
        r = xcalloc(1, sizeof *r);
        r->g = g;
        o->rows = xrealloc(o->rows, (o->n + 1) * sizeof *o->rows);
        o->rows[o->n++] = r;
    } else {
        store_op_clear(&r->s);
    }
    store_op_copy(&r->s, row);
    if (!r->s.state) set_str(&r->s.state, "pending");
    if (op_kind_parse(strv_from_cstr(r->s.op), &r->kind)) r->kind = OP_INSTALL;
}

void ops_resync(struct gw *g, const struct store_op *rows, size_t n, const struct store_op *dead,
                size_t n_dead)
{
    struct ops *o = g->ops;
    if (!o || !o->started) return;
    for (size_t i = 0; i < n; i++) ops_apply_remote(g, rows[i].id, &rows[i], NULL);
    for (size_t i = 0; i < o->n;) {
        struct op_row *r = o->rows[i];
        char key[24];
        bool found = r->running || sync_defer_remote(g, SYNC_OP, sync_op_key(r->s.id, key));
        for (size_t j = 0; j < n && !found; j++) found = rows[j].id == r->s.id;
        if (found) {
            i++;
            continue;
        }
        row_remove(o, r);
    }
    /* the dead letters read, except those with a write of ours queued: ours stand for them */
    struct store_op *v = xcalloc(n_dead + o->n_dead + 1, sizeof *v);
    size_t k = 0;
    char key[24];
    for (size_t i = 0; i < n_dead; i++)
        if (!sync_defer_remote(g, SYNC_OP, sync_op_key(dead[i].id, key)))
            store_op_copy(&v[k++], &dead[i]);
    for (size_t i = 0; i < o->n_dead; i++)
        if (sync_defer_remote(g, SYNC_OP, sync_op_key(o->dead[i].id, key)))
            store_op_copy(&v[k++], &o->dead[i]);
    store_ops_free(o->dead, o->n_dead);
    o->dead = v;
    o->n_dead = k;
}

static void on_ops_closed(uv_handle_t *h)
{
    struct gw *g = h->data;
    struct ops *o = g->ops;
    for (size_t i = 0; i < o->n; i++) {
        buf_free(&o->rows[i]->answer);
        store_op_clear(&o->rows[i]->s);
        xfree(o->rows[i]);
    }
    xfree(o->rows);
    store_ops_free(o->dead, o->n_dead);
    xfree(o);
    g->ops = NULL;
}

void ops_stop(struct gw *g)
{
    struct ops *o = g->ops;
    if (!o || !o->started) return;
    o->started = false;
    for (size_t i = 0; i < o->n; i++) {
        struct op_row *r = o->rows[i];
        if (r->call) http_call_cancel(r->call);
        bool was_sending = r->call != NULL;
        r->call = NULL;
        r->running = false;
        r->waiter = NULL;
        /* an attempt cut by shutdown is due again at the next start; several gateways: only an
         * attempt this gateway holds the lease of, handed back (another's is not ours to touch) */
        if (r->s.state && strcmp(r->s.state, "running") == 0) {
            set_str(&r->s.state, "pending");
            if (!is_shared(g) || was_sending) write_outcome(g, r, false);
        }
    }
    uv_timer_stop(&o->timer);
    uv_close((uv_handle_t *)&o->timer, on_ops_closed);
}

/* ---- admin routes ------------------------------------------------------------------------- */

static void list_rows(struct gw *g, struct http_request *req, bool all)
{
    struct ops *o = g->ops;
    struct buf b;
    buf_init(&b, 256u << 20);
    int64_t now = ops_now_ms(g);
    int rc = buf_append_cstr(&b, "{\"ops\":[");
    size_t k = 0;
    for (size_t i = 0; i < o->n && !rc; i++) {
        if (!all && strcmp(o->rows[i]->s.state, "done") == 0) continue;
        if (k++) rc = buf_append_cstr(&b, ",");
        if (!rc) rc = row_json(&b, &o->rows[i]->s, false, now);
    }
    if (!rc) rc = buf_append_cstr(&b, "]}");
    (void)http_respond_json(req, rc ? 500 : 200, NULL, 0, b.p, b.len);
    buf_free(&b);
}

static void list_dead(struct gw *g, struct http_request *req)
{
    struct ops *o = g->ops;
    struct buf b;
    buf_init(&b, 256u << 20);
    int rc = buf_append_cstr(&b, "{\"dead\":[");
    for (size_t i = 0; i < o->n_dead && !rc; i++) {
        if (i) rc = buf_append_cstr(&b, ",");
        if (!rc) rc = row_json(&b, &o->dead[i], true, 0);
    }
    if (!rc) rc = buf_append_cstr(&b, "]}");
    (void)http_respond_json(req, rc ? 500 : 200, NULL, 0, b.p, b.len);
    buf_free(&b);
}

static void retry_dead(struct gw *g, struct http_request *req, int64_t id)
{
    struct ops *o = g->ops;
    size_t i = 0;
    while (i < o->n_dead && o->dead[i].id != id) i++;
    if (i == o->n_dead)
        return gw_reply_error(req, 404, "op_not_found", NULL, "no such dead letter");
    struct store_op *d = &o->dead[i];
    struct node *n = registry_find(&g->reg, strv_from_cstr(d->node));
    if (!n || n->admin == ADMIN_REMOVED)
        return gw_reply_error(req, 409, "illegal_transition", NULL, "the node is gone");
    if (row_find(o, d->node, d->target, d->op))
        return gw_reply_error(req, 409, "illegal_transition", NULL,
                              "the same operation was issued again since; it is already queued");
    struct op_row *r = xcalloc(1, sizeof *r);
    r->g = g;
    store_op_copy(&r->s, d);
    if (op_kind_parse(strv_from_cstr(r->s.op), &r->kind))
        r->kind = OP_INSTALL; /* checked at load */
    set_str(&r->s.state, "pending");
    r->s.attempts = 0;
    r->s.next_try_ms = ops_now_ms(g);
    r->s.dead_ms = 0;
    r->s.updated_ms = ops_now_ms(g);
    o->rows = xrealloc(o->rows, (o->n + 1) * sizeof *o->rows);
    o->rows[o->n++] = r;
    store_op_clear(d);
    o->dead[i] = o->dead[--o->n_dead];
    LOGI("op_raised", "op=%lld node=%s target=%s kind=%s", (long long)r->s.id, r->s.node,
         r->s.target, r->s.op);
    /* the answer is the row as it now stands, sent once the move is committed */
    struct buf b;
    buf_init(&b, 1u << 20);
    if (row_json(&b, &r->s, false, ops_now_ms(g))) buf_reset(&b);
    struct gw_reply *reply = gw_reply_new(req, 200, &b, NULL);
    if (g->store)
        store_raise_op(g->store, r->s.id, &r->s, sync_write_done,
                       op_write(g, r->s.id, gw_reply_done, reply));
    else
        gw_reply_done(reply, 0, NULL);
}

/* DELETE /admin/v1/ops/dead/{id}: the admin gives up on a dead letter; it is gone for good. */
static void cancel_dead(struct gw *g, struct http_request *req, int64_t id)
{
    struct ops *o = g->ops;
    size_t i = 0;
    while (i < o->n_dead && o->dead[i].id != id) i++;
    if (i == o->n_dead)
        return gw_reply_error(req, 404, "op_not_found", NULL, "no such dead letter");
    LOGI("op_cancelled", "op=%lld node=%s target=%s kind=%s", (long long)id, o->dead[i].node,
         o->dead[i].target, o->dead[i].op);
    struct buf b;
    buf_init(&b, 1u << 20);
    if (row_json(&b, &o->dead[i], true, 0)) buf_reset(&b);
    store_op_clear(&o->dead[i]);
    o->dead[i] = o->dead[--o->n_dead];
    struct gw_reply *reply = gw_reply_new(req, 200, &b, NULL);
    if (g->store)
        store_delete_dead_op(g->store, id, sync_write_done, op_write(g, id, gw_reply_done, reply));
    else
        gw_reply_done(reply, 0, NULL);
}

void ops_admin(struct gw *g, struct http_request *req, struct strv rest)
{
    bool get = strv_eq_cstr(req->method, "GET"), post = strv_eq_cstr(req->method, "POST");
    if (!g->ops) return gw_reply_error(req, 503, "not_ready", NULL, "operations are not loaded");
    if (rest.len == 0) {
        if (post) return ops_issue(g, req);
        if (get)
            return list_rows(
                g, req, strv_eq_cstr(req->query, "all=1") || strv_eq_cstr(req->query, "all=true"));
        return gw_reply_error(req, 405, "method_not_allowed", NULL, "GET or POST");
    }
    if (strv_eq_cstr(rest, "/dead")) {
        if (!get) return gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET");
        return list_dead(g, req);
    }
    struct strv pre = STRV_LIT("/dead/"), suf = STRV_LIT("/retry");
    if (strv_starts_with(rest, pre) && strv_eq_cstr(req->method, "DELETE")) {
        uint64_t id;
        if (strv_to_u64(strv_sub(rest, pre.len, rest.len - pre.len), &id))
            return gw_reply_error(req, 404, "op_not_found", NULL, "no such dead letter");
        return cancel_dead(g, req, (int64_t)id);
    }
    if (strv_starts_with(rest, pre) && rest.len > pre.len + suf.len &&
        strv_eq(strv_sub(rest, rest.len - suf.len, rest.len), suf)) {
        if (!post) return gw_reply_error(req, 405, "method_not_allowed", NULL, "use POST");
        uint64_t id;
        if (strv_to_u64(strv_sub(rest, pre.len, rest.len - suf.len - pre.len), &id))
            return gw_reply_error(req, 404, "op_not_found", NULL, "no such dead letter");
        return retry_dead(g, req, (int64_t)id);
    }
    gw_reply_error(req, 404, "unknown_url", NULL, "unknown path");
}

/* POST /admin/v1/testing/clock {"advance_ms": N}: moves the operations' clock forward, for
 * tests of schedules measured in hours. Off unless testing.clock_control is set. */
void ops_testing_clock(struct gw *g, struct http_request *req)
{
    if (!g->cfg.testing_clock_control)
        return gw_reply_error(req, 404, "unknown_url", NULL, "unknown path");
    int64_t adv = 0;
    struct json_object *root = json_parse_strict(req->body.p, req->body.len, 4, NULL);
    if (!root || json_get_int(root, "advance_ms", &adv) || adv < 0) {
        if (root) json_object_put(root);
        return gw_reply_error(req, 400, "invalid_json", "advance_ms",
                              "expected {\"advance_ms\": N} with N >= 0");
    }
    json_object_put(root);
    int64_t offset = clock_advance_wall_ms(adv);
    LOGI("testing_clock", "advance_ms=%lld offset_ms=%lld", (long long)adv, (long long)offset);
    if (g->ops) ops_tick(g);
    char out[96];
    int len = snprintf(out, sizeof out, "{\"now_ms\":%lld}", (long long)ops_now_ms(g));
    (void)http_respond_json(req, 200, NULL, 0, out, (size_t)len);
}

/* ---- inventory and the upgrade check ----------------------------------------------------- */

/* GET /admin/v1/inventory: every approved agent node's models and backends with version and
 * digest, asked of the agents at once (bounded by the probe timeout) and read with proto's
 * inventory parser. GET /admin/v1/inventory/upgrades?target=model:NAME compares each node's
 * digest of the target with the latest digest the agent knows, else with the digest most
 * nodes have. */
struct inv_node {
    struct inv *inv;
    struct node *node;
    struct http_call *call;
    int status;
    struct buf body;
    struct node_api_inventory parsed; /* owned; valid when error is "" */
    char error[GW_ERROR_MSG_BYTES + 64];
};

struct inv {
    struct gw *g;
    struct http_request *req;
    struct inv_node *nodes;
    size_t n;
    unsigned pending;
    char target[300]; /* upgrades: the target asked about; "" for the plain inventory */
};

static void inv_abort(struct http_request *req, void *ctx)
{
    (void)req;
    ((struct inv *)ctx)->req = NULL;
}

/* The item named name in the node's models or backends, or NULL (also for a node in error). */
static const struct node_api_inv_item *inv_item(const struct inv_node *in, bool model,
                                                const char *name)
{
    if (in->error[0]) return NULL;
    return node_api_inv_items_find(model ? &in->parsed.models : &in->parsed.backends,
                                   strv_from_cstr(name));
}

static int emit_upgrades(struct inv *inv, struct buf *b)
{
    bool model = strncmp(inv->target, "model:", 6) == 0;
    const char *name = strchr(inv->target, ':') + 1;
    /* the reference: the digest most nodes have */
    const char *ref = NULL;
    size_t best = 0;
    for (size_t i = 0; i < inv->n; i++) {
        const struct node_api_inv_item *it = inv_item(&inv->nodes[i], model, name);
        if (!it || !it->digest[0]) continue;
        size_t count = 0;
        for (size_t j = 0; j < inv->n; j++) {
            const struct node_api_inv_item *jt = inv_item(&inv->nodes[j], model, name);
            if (jt && !strcmp(jt->digest, it->digest)) count++;
        }
        if (count > best) best = count, ref = it->digest;
    }
    int rc = buf_append_cstr(b, "{\"target\":");
    if (!rc) rc = json_append_str(b, inv->target, strlen(inv->target));
    if (!rc) rc = buf_append_cstr(b, ",\"fleet_digest\":");
    if (!rc) rc = str_or_null(b, ref);
    if (!rc) rc = buf_append_cstr(b, ",\"nodes\":[");
    size_t k = 0;
    for (size_t i = 0; i < inv->n && !rc; i++) {
        const struct inv_node *in = &inv->nodes[i];
        const struct node_api_inv_item *it = inv_item(in, model, name);
        if (!it && !in->error[0]) continue;
        const char *d = it && it->digest[0] ? it->digest : NULL;
        const char *latest = it && it->latest_digest[0] ? it->latest_digest : NULL;
        if (k++) rc = buf_append_cstr(b, ",");
        if (!rc) rc = buf_append_cstr(b, "{\"node\":");
        if (!rc) rc = json_append_str(b, in->node->name, strlen(in->node->name));
        if (!rc) rc = buf_append_cstr(b, ",\"digest\":");
        if (!rc) rc = str_or_null(b, d);
        if (!rc) rc = buf_append_cstr(b, ",\"latest_digest\":");
        if (!rc) rc = str_or_null(b, latest);
        bool outdated =
            d && ((latest && strcmp(d, latest) != 0) || (!latest && ref && strcmp(d, ref) != 0));
        const char *why = !d       ? "no digest known"
                          : latest ? "compared with the latest digest the node knows"
                                   : "compared with the digest most nodes have";
        if (in->error[0]) why = in->error;
        if (!rc) rc = buf_appendf(b, ",\"outdated\":%s,\"basis\":", outdated ? "true" : "false");
        if (!rc) rc = json_append_str(b, why, strlen(why));
        if (!rc) rc = buf_append_cstr(b, "}");
    }
    if (!rc) rc = buf_append_cstr(b, "]}");
    return rc;
}

/* {"nodes":[{"name","models":[ITEM…],"backends":[ITEM…],"error"}…]}: the lists as proto
 * emits them, empty for a node in error. */
static int emit_inventory(struct inv *inv, struct buf *b)
{
    static const struct node_api_inv_items none = {0};
    int rc = buf_append_cstr(b, "{\"nodes\":[");
    for (size_t i = 0; i < inv->n && !rc; i++) {
        const struct inv_node *in = &inv->nodes[i];
        bool ok = !in->error[0];
        if (i) rc = buf_append_cstr(b, ",");
        if (!rc) rc = buf_append_cstr(b, "{\"name\":");
        if (!rc) rc = json_append_str(b, in->node->name, strlen(in->node->name));
        if (!rc) rc = buf_append_cstr(b, ",\"models\":");
        if (!rc) rc = node_api_inv_items_emit(b, ok ? &in->parsed.models : &none);
        if (!rc) rc = buf_append_cstr(b, ",\"backends\":");
        if (!rc) rc = node_api_inv_items_emit(b, ok ? &in->parsed.backends : &none);
        if (!rc) rc = buf_append_cstr(b, ",\"error\":");
        if (!rc) rc = str_or_null(b, ok ? NULL : in->error);
        if (!rc) rc = buf_append_cstr(b, "}");
    }
    if (!rc) rc = buf_append_cstr(b, "]}");
    return rc;
}

static void inv_finish(struct inv *inv)
{
    if (inv->req) {
        struct buf b;
        buf_init(&b, 256u << 20);
        int rc = inv->target[0] ? emit_upgrades(inv, &b) : emit_inventory(inv, &b);
        http_request_on_abort(inv->req, NULL, NULL);
        (void)http_respond_json(inv->req, rc ? 500 : 200, NULL, 0, b.p, b.len);
        buf_free(&b);
    }
    for (size_t i = 0; i < inv->n; i++) {
        buf_free(&inv->nodes[i].body);
        node_api_inventory_free(&inv->nodes[i].parsed);
    }
    xfree(inv->nodes);
    xfree(inv);
}

static void inv_set_error(struct inv_node *in, const char *why)
{
    snprintf(in->error, sizeof in->error, "%s", why);
}

static void inv_head(struct http_call *c, const struct http_response_head *h, void *ctx)
{
    (void)c;
    ((struct inv_node *)ctx)->status = h->status;
}

static void inv_data(struct http_call *c, const char *p, size_t len, void *ctx)
{
    struct inv_node *in = ctx;
    if (buf_append(&in->body, p, len)) {
        http_call_cancel(c);
        in->call = NULL;
        inv_set_error(in, "inventory too large");
        if (--in->inv->pending == 0) inv_finish(in->inv);
    }
}

static void inv_done(struct http_call *c, const struct http_call_result *res, void *ctx)
{
    (void)c;
    struct inv_node *in = ctx;
    in->call = NULL;
    struct gw_error err = {0};
    if (res->err) {
        inv_set_error(in, "the agent did not answer");
    } else if (in->status != 200) {
        inv_set_error(in, "the agent refused the inventory request");
    } else if (node_api_inventory_parse(in->body.p, in->body.len, &in->parsed, &err)) {
        snprintf(in->error, sizeof in->error, "the agent's inventory is malformed: %s", err.msg);
        LOGW("inventory_malformed", "node=%s reason=\"%s\"", in->node->name, err.msg);
    }
    buf_free(&in->body); /* parsed: the bytes are not needed any more */
    if (--in->inv->pending == 0) inv_finish(in->inv);
}

void ops_inventory(struct gw *g, struct http_request *req, const char *target)
{
    if (target) {
        bool is_model;
        if (!target_is_valid(target, &is_model))
            return gw_reply_error(req, 400, "invalid_target", "target",
                                  "'target' must be model:NAME or backend:NAME");
    }
    struct inv *inv = xcalloc(1, sizeof *inv);
    inv->g = g;
    inv->req = req;
    if (target) snprintf(inv->target, sizeof inv->target, "%s", target);
    inv->nodes = xcalloc(g->reg.n ? g->reg.n : 1, sizeof *inv->nodes);
    for (size_t i = 0; i < g->reg.n; i++) {
        struct node *n = g->reg.nodes[i];
        if (!n->via_agent || !n->api_key ||
            (n->admin != ADMIN_APPROVED && n->admin != ADMIN_DRAINING))
            continue;
        struct inv_node *in = &inv->nodes[inv->n++];
        in->inv = inv;
        in->node = n;
        buf_init(&in->body, NODE_API_MAX_INVENTORY_BYTES);
    }
    http_request_on_abort(req, inv_abort, inv);
    inv->pending = 1;
    for (size_t i = 0; i < inv->n; i++) {
        struct inv_node *in = &inv->nodes[i];
        static const struct http_client_callbacks cbs = {inv_head, inv_data, inv_done};
        inv->pending++;
        if (upstream_agent_call(g, in->node, "GET", NODE_API_PATH_INVENTORY, STRV_NULL,
                                g->cfg.probe_timeout_ms, &cbs, in, &in->call)) {
            in->call = NULL;
            inv_set_error(in, "could not ask the agent");
            inv->pending--;
        }
    }
    if (--inv->pending == 0) inv_finish(inv);
}
