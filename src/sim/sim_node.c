/* sim_node — the scheduling half of a virtual node. A request is admitted into a free slot or
 * the FIFO queue (503 past queue_max), then waits for its model: an unloaded model starts
 * loading (load_ms, plus unload_ms of any idle LRU model evicted to fit node VRAM), and every
 * waiter proceeds when it is loaded. Invariants: busy_slots == admitted requests holding a
 * slot; vram_used_mb == sum of vram_mb over models LOADING, LOADED or UNLOADING.
 * Loop thread only. */
#include "sim/sim_node.h"

#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"

static void kick(struct sim_model_state *ms);

void sim_node_init(struct sim_node *n, struct sim *sim, unsigned index)
{
    memset(n, 0, sizeof *n);
    n->sim = sim;
    n->index = index;
    sim_cache_init(&n->cache, sim->cfg->cache_blocks);
    struct sim_config *c = sim->cfg;
    for (size_t i = 0; i < c->n_models; i++) {
        if (!sim_config_model_on_node(c->models[i], index)) continue;
        struct sim_model_state *ms = sim_node_add_model(n, c->models[i]);
        if (c->preload_all || ms->spec->preload) {
            uint64_t v = sim_config_model_vram_mb(c, ms->spec);
            if (c->node_vram_mb && n->vram_used_mb + v > c->node_vram_mb) continue;
            ms->phase = SIM_LOADED;
            ms->vram_mb = v;
            n->vram_used_mb += v;
            ms->loaded_wall_ms = clock_wall_ms();
        }
    }
}

void sim_node_close_handles(struct sim_node *n)
{
    for (size_t i = 0; i < n->n_models; i++) {
        struct sim_model_state *ms = n->models[i];
        if (ms->timer_ready && !uv_is_closing((uv_handle_t *)&ms->timer))
            uv_close((uv_handle_t *)&ms->timer, NULL);
    }
}

void sim_node_free(struct sim_node *n)
{
    for (size_t i = 0; i < n->n_models; i++) xfree(n->models[i]);
    xfree(n->models);
    sim_cache_free(&n->cache);
}

struct sim_model_state *sim_node_model(struct sim_node *n, struct strv name)
{
    long i = sim_config_find_model(n->sim->cfg, name.p, name.len);
    if (i < 0) return NULL;
    struct sim_model_spec *spec = n->sim->cfg->models[i];
    for (size_t k = 0; k < n->n_models; k++)
        if (n->models[k]->spec == spec) return n->models[k]->present ? n->models[k] : NULL;
    return NULL;
}

struct sim_model_state *sim_node_add_model(struct sim_node *n, struct sim_model_spec *spec)
{
    for (size_t k = 0; k < n->n_models; k++) {
        if (n->models[k]->spec == spec) {
            n->models[k]->present = true;
            return n->models[k];
        }
    }
    struct sim_model_state *ms = xcalloc(1, sizeof *ms);
    ms->node = n;
    ms->spec = spec;
    ms->present = true;
    n->models = xrealloc(n->models, (n->n_models + 1) * sizeof *n->models);
    n->models[n->n_models++] = ms;
    return ms;
}

static void timer_start(struct sim_model_state *ms, uint64_t ms_delay, uv_timer_cb cb)
{
    if (!ms->timer_ready) {
        uv_timer_init(ms->node->sim->loop, &ms->timer);
        ms->timer.data = ms;
        ms->timer_ready = true;
    }
    uv_timer_start(&ms->timer, cb, ms_delay, 0);
}

static void drop_vram(struct sim_model_state *ms)
{
    ms->node->vram_used_mb -= ms->vram_mb;
    ms->vram_mb = 0;
}

static void fail_waiters(struct sim_model_state *ms, int status, const char *code, const char *msg)
{
    while (ms->waiters) {
        struct sim_req *r = ms->waiters;
        ms->waiters = r->next;
        r->next = NULL;
        sim_api_fail(r, status, code, msg);
    }
    ms->waiters_tail = NULL;
}

static void on_unloaded(uv_timer_t *t)
{
    struct sim_model_state *ms = t->data;
    ms->phase = SIM_UNLOADED;
    drop_vram(ms);
    LOGI("sim_unload", "node=%u model=%s", ms->node->index, ms->spec->name);
    kick(ms);
    /* VRAM came free: models waiting for room may fit now. */
    struct sim_node *n = ms->node;
    for (size_t i = 0; i < n->n_models; i++)
        if (n->models[i]->waiters && n->models[i]->phase == SIM_UNLOADED) kick(n->models[i]);
}

void sim_node_unload(struct sim_model_state *ms)
{
    if (ms->phase != SIM_LOADED || ms->inflight) return;
    uint64_t d = sim_config_model_unload_ms(ms->node->sim->cfg, ms->spec);
    ms->phase = SIM_UNLOADING;
    if (d == 0) {
        ms->phase = SIM_UNLOADED;
        drop_vram(ms);
        LOGI("sim_unload", "node=%u model=%s", ms->node->index, ms->spec->name);
        return;
    }
    timer_start(ms, d, on_unloaded);
}

void sim_node_delete_model(struct sim_model_state *ms)
{
    ms->present = false;
    if (ms->phase == SIM_LOADED || ms->phase == SIM_UNLOADING) {
        if (ms->timer_ready) uv_timer_stop(&ms->timer);
        ms->phase = SIM_UNLOADED;
        drop_vram(ms);
    }
    /* A LOADING model finishes its timer and then notices it is gone. */
    if (ms->phase != SIM_LOADING) fail_waiters(ms, 404, "model_not_found", "model deleted");
}

static void on_loaded(uv_timer_t *t)
{
    struct sim_model_state *ms = t->data;
    if (!ms->present) {
        ms->phase = SIM_UNLOADED;
        drop_vram(ms);
        fail_waiters(ms, 404, "model_not_found", "model deleted");
        return;
    }
    ms->phase = SIM_LOADED;
    ms->loaded_wall_ms = clock_wall_ms();
    ms->last_used_ms = clock_mono_ms();
    ms->node->m.loads++;
    LOGI("sim_loaded", "node=%u model=%s", ms->node->index, ms->spec->name);
    kick(ms);
}

/* The least recently used loaded model that nobody is using or waiting for, or NULL. */
static struct sim_model_state *evictable(struct sim_node *n)
{
    struct sim_model_state *best = NULL;
    for (size_t i = 0; i < n->n_models; i++) {
        struct sim_model_state *ms = n->models[i];
        if (ms->phase != SIM_LOADED || ms->inflight || ms->waiters) continue;
        if (!best || ms->last_used_ms < best->last_used_ms) best = ms;
    }
    return best;
}

/* Moves a model's waiters on: serve them if loaded, start a load if possible. */
static void kick(struct sim_model_state *ms)
{
    struct sim_node *n = ms->node;
    struct sim_config *c = n->sim->cfg;
    if (!ms->waiters) return;
    if (!ms->present) {
        fail_waiters(ms, 404, "model_not_found", "model deleted");
        return;
    }
    if (ms->phase == SIM_LOADED) {
        while (ms->waiters) {
            struct sim_req *r = ms->waiters;
            ms->waiters = r->next;
            r->next = NULL;
            sim_api_ready(r);
        }
        ms->waiters_tail = NULL;
        return;
    }
    if (ms->phase != SIM_UNLOADED) return; /* LOADING or UNLOADING: wait for its timer */
    uint64_t need = sim_config_model_vram_mb(c, ms->spec);
    if (c->node_vram_mb && need > c->node_vram_mb) {
        fail_waiters(ms, 500, "insufficient_vram", "model needs more VRAM than the node has");
        return;
    }
    uint64_t delay = sim_config_model_load_ms(c, ms->spec);
    while (c->node_vram_mb && n->vram_used_mb + need > c->node_vram_mb) {
        struct sim_model_state *victim = evictable(n);
        if (!victim) return; /* retried when a request ends or a model unloads */
        LOGI("sim_evict", "node=%u model=%s for=%s", n->index, victim->spec->name, ms->spec->name);
        delay += sim_config_model_unload_ms(c, victim->spec);
        victim->phase = SIM_UNLOADED;
        drop_vram(victim);
        n->m.evictions++;
    }
    ms->phase = SIM_LOADING;
    ms->vram_mb = need;
    n->vram_used_mb += need;
    LOGI("sim_loading", "node=%u model=%s load_ms=%llu", n->index, ms->spec->name,
         (unsigned long long)delay);
    timer_start(ms, delay, on_loaded);
}

static void start(struct sim_req *r)
{
    struct sim_model_state *ms = r->model;
    r->has_slot = true;
    r->node->busy_slots++;
    r->t_slot_us = clock_mono_us();
    r->phase = SIM_REQ_LOADING;
    if (ms->phase == SIM_LOADED && ms->present) {
        sim_api_ready(r);
        return;
    }
    r->next = NULL;
    if (ms->waiters_tail)
        ms->waiters_tail->next = r;
    else
        ms->waiters = r;
    ms->waiters_tail = r;
    kick(ms);
}

int sim_node_admit(struct sim_req *r)
{
    struct sim_node *n = r->node;
    struct sim_config *c = n->sim->cfg;
    if (n->busy_slots < c->slots && !n->queue) {
        start(r);
        return 0;
    }
    if (n->queue_len >= c->queue_max) {
        n->m.rejected_busy++;
        return GW_E_LIMIT;
    }
    r->phase = SIM_REQ_QUEUED;
    r->next = NULL;
    if (n->queue_tail)
        n->queue_tail->next = r;
    else
        n->queue = r;
    n->queue_tail = r;
    n->queue_len++;
    return 0;
}

/* Unlinks r from a singly linked list with head/tail; true if it was there. */
static bool unlink_req(struct sim_req **head, struct sim_req **tail, struct sim_req *r)
{
    struct sim_req *prev = NULL;
    for (struct sim_req *x = *head; x; prev = x, x = x->next) {
        if (x != r) continue;
        if (prev)
            prev->next = x->next;
        else
            *head = x->next;
        if (*tail == x) *tail = prev;
        x->next = NULL;
        return true;
    }
    return false;
}

void sim_node_release(struct sim_req *r)
{
    struct sim_node *n = r->node;
    if (r->phase == SIM_REQ_QUEUED && unlink_req(&n->queue, &n->queue_tail, r)) n->queue_len--;
    if (r->model && r->phase == SIM_REQ_LOADING)
        (void)unlink_req(&r->model->waiters, &r->model->waiters_tail, r);
    if (r->counted_inflight) {
        r->counted_inflight = false;
        r->model->inflight--;
        r->model->last_used_ms = clock_mono_ms();
    }
    if (!r->has_slot) return;
    r->has_slot = false;
    n->busy_slots--;
    if (n->sim->stopping) return;
    /* Start queued requests while slots are free. */
    while (n->queue && n->busy_slots < n->sim->cfg->slots) {
        struct sim_req *q = n->queue;
        n->queue = q->next;
        if (!n->queue) n->queue_tail = NULL;
        n->queue_len--;
        q->next = NULL;
        start(q);
    }
    /* A model may have been waiting for another to go idle. */
    for (size_t i = 0; i < n->n_models; i++)
        if (n->models[i]->waiters && n->models[i]->phase == SIM_UNLOADED) kick(n->models[i]);
}

static void metric(struct sim_out *o, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    sim_out_fmt(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                (unsigned long long)v);
}

void sim_node_metrics(struct sim_node *n, struct sim_out *o)
{
    unsigned loaded = 0;
    for (size_t i = 0; i < n->n_models; i++) loaded += n->models[i]->phase == SIM_LOADED;
    metric(o, "llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.",
           n->m.prompt_tokens);
    metric(o, "llamacpp:tokens_predicted_total", "counter",
           "Number of generation tokens processed.", n->m.predicted_tokens);
    metric(o, "llamacpp:requests_processing", "gauge", "Number of requests processing.",
           n->busy_slots);
    metric(o, "llamacpp:requests_deferred", "gauge", "Number of requests deferred.", n->queue_len);
    metric(o, "drover_sim_requests_total", "counter", "Model requests received.", n->m.requests);
    metric(o, "drover_sim_prompt_cache_hit_tokens_total", "counter",
           "Prompt tokens served from the prefix cache.", n->m.cached_tokens);
    metric(o, "drover_sim_rejected_busy_total", "counter", "Requests refused with a full queue.",
           n->m.rejected_busy);
    metric(o, "drover_sim_faults_total", "counter", "Faults injected.", n->m.faults);
    metric(o, "drover_sim_model_loads_total", "counter", "Model loads completed.", n->m.loads);
    metric(o, "drover_sim_model_evictions_total", "counter", "Models evicted for VRAM.",
           n->m.evictions);
    metric(o, "drover_sim_models_loaded", "gauge", "Models loaded now.", loaded);
    metric(o, "drover_sim_vram_used_mb", "gauge", "VRAM held by models.", n->vram_used_mb);
    metric(o, "drover_sim_slots", "gauge", "Parallel slots.", n->sim->cfg->slots);
}
