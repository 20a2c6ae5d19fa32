/* loads — cold loads and unloads through the agents (DESIGN §6). At most one load per model
 * and node runs at a time; requests that arrive meanwhile wait on it (bounded by their own
 * timers in the proxy). A load that needs room first unloads the eviction plan's models, one
 * by one, then loads. Success marks the model loaded in the registry, so the router finds it.
 * The loop thread only. */
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/gw.h"
#include "gw/upstream.h"
#include "proto/node_api.h"
#include "gw/nodes.h"
#include "gw/loads.h"
#include "gw/placement.h"

enum { LOAD_MAX_ANSWER = 64 * 1024, LOAD_MAX_EVICT = 16 };

struct load_waiter {
    load_done_fn *fn;
    void *ctx;
    struct load_waiter *next;
};

struct load {
    struct gw *g;
    char *model;
    struct node *node;
    char *options_json;
    char *evict[LOAD_MAX_EVICT];
    size_t n_evict, i_evict;
    bool unloading;    /* the current call is an unload of evict[i_evict] */
    bool plain_unload; /* this job only unloads `model` (the reconciler's idle replicas) */
    bool defrag;       /* unloads evict[], then reloads them one by one on reload_dev[] */
    int reload_dev[LOAD_MAX_EVICT];
    size_t i_reload;
    bool held_before; /* the node held the model when the load started: one more replica */
    bool cancelled;   /* ended by the gateway (stopping): says nothing about the node */
    struct http_call *call;
    int status;
    struct buf answer;
    struct load_waiter *waiters;
    uint64_t started_ms;
    struct load *next;
};

static void apply_policy(struct gw *g);

static struct load *loads_head(struct gw *g)
{
    return g->loads;
}

bool loads_running(struct gw *g, const char *model, const struct node *n)
{
    for (struct load *l = loads_head(g); l; l = l->next)
        if (!l->plain_unload && !l->defrag && !strcmp(l->model, model) && (!n || l->node == n))
            return true;
    return false;
}

bool loads_busy_node(struct gw *g, const struct node *n)
{
    for (struct load *l = loads_head(g); l; l = l->next)
        if (l->node == n) return true;
    return false;
}

unsigned loads_count(struct gw *g, const char *model)
{
    unsigned k = 0;
    for (struct load *l = loads_head(g); l; l = l->next)
        if (!l->plain_unload && !l->defrag && !strcmp(l->model, model)) k++;
    return k;
}

/* The one place where a load's end is accounted (and a failure logged): a failure of
 * (model, node) backs the pair off (placement keeps it in the catalogue entry), a success ends
 * its backoff. */
static void account_load(struct gw *g, struct load *l, bool ok, const char *why)
{
    if (l->plain_unload || l->cancelled || l->defrag) return;
    struct cat_model *cm = catalogue_find(&g->cat, strv_from_cstr(l->model));
    if (ok) {
        if (cm) placement_load_ok(cm, l->node);
        return;
    }
    /* a model the catalogue does not know (any more) has no backoff to keep */
    uint64_t d = cm ? placement_load_failed(cm, l->node, gw_now_ms(g), why) : 0;
    LOGW("model_load_failed", "node=%s model=%s retry_in_ms=%llu reason=\"%s\"", l->node->name,
         l->model, (unsigned long long)d, why ? why : "");
}

static void load_free(struct gw *g, struct load *l, bool ok, const char *why)
{
    account_load(g, l, ok, why);
    for (struct load **pp = &g->loads; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    /* a load (or the unloads before it) ended: requests waiting for room may find it now */
    admission_kick(&g->admission);
    struct load_waiter *w = l->waiters;
    l->waiters = NULL;
    while (w) {
        struct load_waiter *next = w->next;
        w->fn(w->ctx, ok, why);
        xfree(w);
        w = next;
    }
    for (size_t i = 0; i < l->n_evict; i++) xfree(l->evict[i]);
    buf_free(&l->answer);
    xfree(l->options_json);
    xfree(l->model);
    xfree(l);
}

static void step(struct load *l);

static void on_head(struct http_call *c, const struct http_response_head *h, void *ctx)
{
    (void)c;
    ((struct load *)ctx)->status = h->status;
}

static void on_data(struct http_call *c, const char *p, size_t len, void *ctx)
{
    struct load *l = ctx;
    (void)c;
    if (buf_append(&l->answer, p, len)) buf_reset(&l->answer); /* keep the status only */
}

static void on_done(struct http_call *c, const struct http_call_result *res, void *ctx)
{
    (void)c;
    struct load *l = ctx;
    struct gw *g = l->g;
    l->call = NULL;
    bool ok = res->err == 0 && l->status == 200;
    char why[200] = "";
    if (!ok) {
        if (res->err)
            snprintf(why, sizeof why, "the agent did not answer: %s", gw_strerror(res->err));
        else
            snprintf(why, sizeof why, "the agent answered %d: %.*s", l->status,
                     (int)(l->answer.len > 120 ? 120 : l->answer.len),
                     l->answer.p ? l->answer.p : "");
    }
    if (l->unloading) {
        const char *victim = l->plain_unload ? l->model : l->evict[l->i_evict];
        if (ok) {
            registry_model_unloaded(l->node, strv_from_cstr(victim));
            placement_note_cycle(l->node);
            LOGI("model_unloaded", "node=%s model=%s reason=%s", l->node->name, victim,
                 l->plain_unload ? "idle_replica"
                 : l->defrag     ? "defrag"
                                 : "evicted");
        } else {
            LOGW("model_unload_failed", "node=%s model=%s reason=\"%s\"", l->node->name, victim,
                 why);
        }
        if (l->plain_unload || !ok) {
            load_free(g, l, ok, ok ? NULL : why);
            return;
        }
        l->i_evict++;
        buf_reset(&l->answer);
        step(l);
        return;
    }
    if (l->defrag) {
        const char *id = l->evict[l->i_reload];
        if (ok) {
            registry_model_loaded(l->node, strv_from_cstr(id), 0, gw_now_ms(g));
            placement_loaded(&g->cat, l->node, id, l->reload_dev[l->i_reload], false);
            LOGI("model_loaded", "node=%s model=%s reason=defrag device=%d", l->node->name, id,
                 l->reload_dev[l->i_reload]);
        } else {
            LOGW("model_load_failed", "node=%s model=%s reason=\"defrag reload: %s\"",
                 l->node->name, id, why);
        }
        l->i_reload++;
        buf_reset(&l->answer);
        if (l->i_reload < l->n_evict) {
            step(l);
            return;
        }
        placement_defrag_done(l->node);
        LOGI("defrag_done", "node=%s moved=%zu ms=%llu", l->node->name, l->n_evict,
             (unsigned long long)(gw_now_ms(g) - l->started_ms));
        load_free(g, l, true, NULL);
        return;
    }
    if (ok) {
        struct node_api_load_answer ans;
        uint64_t size = 0; /* an answer we cannot read still says 200: the model is loaded */
        if (node_api_load_answer_parse(l->answer.p, l->answer.len, &ans, NULL) == 0 &&
            ans.size_mb > 0)
            size = (uint64_t)ans.size_mb;
        registry_model_loaded(l->node, strv_from_cstr(l->model), size, gw_now_ms(g));
        placement_loaded(&g->cat, l->node, l->model, -1, l->held_before);
        struct node_model *nm = node_model_find(l->node, strv_from_cstr(l->model));
        if (nm) nm->replicas = placement_replicas_on(l->node, l->model);
        placement_note_cycle(l->node);
        LOGI("model_loaded", "node=%s model=%s ms=%llu", l->node->name, l->model,
             (unsigned long long)(gw_now_ms(g) - l->started_ms));
    }
    load_free(g, l, ok, ok ? NULL : why); /* a failure is logged there, once */
}

/* The next call of the job: unload the next victim, or load. */
static void step(struct load *l)
{
    struct gw *g = l->g;
    struct node *n = l->node;
    const char *model = l->model;
    const char *path = NODE_API_PATH_LOAD;
    l->unloading = false;
    if (l->plain_unload || l->i_evict < l->n_evict) {
        l->unloading = true;
        path = NODE_API_PATH_UNLOAD;
        if (!l->plain_unload) model = l->evict[l->i_evict];
    } else if (l->defrag) {
        model = l->evict[l->i_reload];
    }
    const char *options = l->unloading ? NULL : l->options_json;
    if (l->defrag && !l->unloading) {
        const struct cat_model *cm = catalogue_find(&g->cat, strv_from_cstr(model));
        options = cm ? cm->load_options_json : NULL;
    }
    if (!n->api_key || n->admin == ADMIN_REMOVED) {
        load_free(g, l, false, "the node cannot be reached through an agent");
        return;
    }
    struct buf body;
    buf_init(&body, 64 * 1024);
    int rc = node_api_load_emit(&body, model, options);
    l->status = 0;
    static const struct http_client_callbacks cbs = {on_head, on_data, on_done};
    LOGI(l->unloading ? "model_unload" : "model_load", "node=%s model=%s", n->name, model);
    if (rc || upstream_agent_call(g, n, "POST", path, (struct strv){body.p, body.len},
                                  g->cfg.load_timeout_ms, &cbs, l, &l->call)) {
        l->call = NULL;
        buf_free(&body);
        load_free(g, l, false, "could not reach the agent");
        return;
    }
    buf_free(&body);
}

static struct load *job_new(struct gw *g, struct node *n, const char *model)
{
    struct load *l = xcalloc(1, sizeof *l);
    l->g = g;
    l->node = n;
    l->model = xstrdup(model);
    l->started_ms = gw_now_ms(g);
    buf_init(&l->answer, LOAD_MAX_ANSWER);
    l->next = g->loads;
    g->loads = l;
    return l;
}

void loads_start(struct gw *g, struct node *n, const char *model, const char *options_json,
                 const char *const *evict, size_t n_evict)
{
    if (loads_running(g, model, n)) return;
    apply_policy(g);
    /* the plan that counts is placement's for the entry: per device, in the node's eviction
     * order (callers that planned by size alone get the same or a better one) */
    const struct cat_model *cm = catalogue_find(&g->cat, strv_from_cstr(model));
    const char *plan[LOAD_MAX_EVICT];
    size_t k = 0;
    bool busy;
    if (cm && placement_evict_plan_for(&g->cat, &g->reg, n, cm, gw_now_ms(g), plan, LOAD_MAX_EVICT,
                                       &k, &busy)) {
        evict = plan;
        n_evict = k;
    }
    struct load *l = job_new(g, n, model);
    l->options_json = options_json ? xstrdup(options_json) : NULL;
    l->held_before = node_model_find(n, strv_from_cstr(model)) != NULL;
    for (size_t i = 0; i < n_evict && i < LOAD_MAX_EVICT; i++)
        l->evict[l->n_evict++] = xstrdup(evict[i]);
    step(l);
}

/* The config's eviction strategies, applied when the text changes (start, reload). */
static void apply_policy(struct gw *g)
{
    static char *applied;
    static bool once;
    const char *want = g->cfg.placement_eviction ? g->cfg.placement_eviction : "";
    if (once && applied && !strcmp(applied, want)) return;
    char why[200];
    if (placement_set_eviction(want, why, sizeof why))
        LOGE("placement_eviction_invalid", "value=\"%s\" reason=\"%s\"", want, why);
    xfree(applied);
    applied = xstrdup(want);
    once = true;
}

void loads_tick(struct gw *g)
{
    apply_policy(g);
    placement_observe(&g->reg);
    if (!g->cfg.defrag_after_cycles) return;
    for (size_t i = 0; i < g->reg.n; i++) {
        struct node *n = g->reg.nodes[i];
        struct place_defrag d;
        if (!n->via_agent || !placement_engine_loads(n->kind) || loads_busy_node(g, n) ||
            !node_is_routable(&g->reg, n, gw_now_ms(g)) ||
            !placement_defrag_plan(&g->cat, &g->reg, n, g->cfg.defrag_after_cycles, &d))
            continue;
        LOGI("defrag_start", "node=%s cycles=%u moves=%zu max_free_mb_before=%llu after=%llu",
             n->name, placement_cycles(n), d.n, (unsigned long long)d.max_free_before_mb,
             (unsigned long long)d.max_free_after_mb);
        struct load *l = job_new(g, n, "(defrag)");
        l->defrag = true;
        for (size_t j = 0; j < d.n && j < LOAD_MAX_EVICT; j++) {
            l->evict[l->n_evict] = xstrdup(d.ids[j]);
            l->reload_dev[l->n_evict++] = d.dev[j];
        }
        step(l);
    }
}

void loads_unload(struct gw *g, struct node *n, const char *model)
{
    struct load *l = job_new(g, n, model);
    l->plain_unload = true;
    step(l);
}

bool loads_wait(struct gw *g, const char *model, load_done_fn *fn, void *ctx)
{
    for (struct load *l = loads_head(g); l; l = l->next) {
        if (l->plain_unload || l->defrag || strcmp(l->model, model) != 0) continue;
        struct load_waiter *w = xcalloc(1, sizeof *w);
        w->fn = fn;
        w->ctx = ctx;
        w->next = l->waiters;
        l->waiters = w;
        return true;
    }
    return false;
}

void loads_unwait(struct gw *g, void *ctx)
{
    for (struct load *l = loads_head(g); l; l = l->next) {
        for (struct load_waiter **pp = &l->waiters; *pp;) {
            if ((*pp)->ctx == ctx) {
                struct load_waiter *w = *pp;
                *pp = w->next;
                xfree(w);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
}

void loads_stop(struct gw *g)
{
    while (g->loads) {
        struct load *l = g->loads;
        l->cancelled = true;
        if (l->call) http_call_cancel(l->call);
        l->call = NULL;
        load_free(g, l, false, "the gateway is stopping");
    }
}
