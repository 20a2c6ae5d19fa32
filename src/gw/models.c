/* models — the catalogue at run time: the file's entries and the admin API's (persisted in
 * the store), /admin/v1/models, and the replicas reconciler (DESIGN §6): keep replicas.min
 * loaded on feasible nodes, add one when every replica is busy and the entry allows more,
 * unload idle extras; never send a load that cannot succeed (placement picks only nodes whose
 * engine loads on request, with the files on disk and no backoff for the pair), say why once
 * per change of reason, back off while the fleet cannot satisfy a model and look again when
 * the fleet changes. The loop thread only. */
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "gw/models.h"
#include "gw/loads.h"
#include "gw/placement.h"
#include "gw/sync.h"
#include "store/store_catalogue.h"

enum { MODELS_BACKOFF_MAX_MS = 5 * 60 * 1000 };

static uint64_t reconcile_passes; /* shown in the admin API: tests count passes, not seconds */

static bool skip_loading(const struct node *n, void *ctx);
static void unmet_reason(struct gw *g, const struct cat_model *m, uint64_t now,
                         const struct place_pick *pk, char *out, size_t cap);

/* ---- start-up and reload ------------------------------------------------------------- */

/* The file's entries replace the file's previous ones; API entries stay unless the file now
 * takes their name (the file wins, as for nodes). */
void models_apply_config(struct gw *g)
{
    for (size_t i = 0; i < g->cat.n;) {
        if (g->cat.v[i]->from_config) {
            catalogue_remove(&g->cat, g->cat.v[i]->id);
            continue;
        }
        i++;
    }
    for (size_t i = 0; i < g->cfg.n_models; i++) {
        const struct cat_model *src = g->cfg.models[i];
        /* a deep copy through JSON keeps one code path for building entries */
        struct buf b;
        buf_init(&b, 1u << 20);
        struct cat_model *m = NULL;
        char field[64] = "", why[200] = "";
        if (cat_model_to_json(src, &b) == 0) {
            struct json_object *o = json_parse_strict(b.p, b.len, 16, NULL);
            if (o) {
                json_object_object_del(o, "source");
                (void)cat_model_from_json(o, &m, field, sizeof field, why, sizeof why);
                json_object_put(o);
            }
        }
        buf_free(&b);
        if (!m) {
            LOGE("catalogue_copy_failed", "model=%s field=%s reason=\"%s\"", src->id, field, why);
            continue;
        }
        m->from_config = true;
        if (catalogue_find(&g->cat, strv_from_cstr(m->id)))
            LOGW("model_config_overrides_api", "model=%s", m->id);
        catalogue_remove(&g->cat, m->id);
        catalogue_put(&g->cat, m);
    }
    registry_generation++;
}

int models_load(struct gw *g, struct gw_error *err)
{
    struct store_cat_row *rows = NULL;
    size_t n = 0;
    if (g->store && store_load_catalogue(g->store, &rows, &n, err)) return -1;
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_parse_strict(rows[i].json, strlen(rows[i].json), 16, NULL);
        struct cat_model *m = NULL;
        char field[64], why[200];
        if (o) json_object_object_del(o, "source");
        if (!o || cat_model_from_json(o, &m, field, sizeof field, why, sizeof why)) {
            LOGW("catalogue_row_skipped", "model=%s reason=\"%s %s\"", rows[i].id,
                 o ? field : "not JSON", o ? why : "");
        } else {
            catalogue_put(&g->cat, m);
        }
        if (o) json_object_put(o);
    }
    if (g->store) store_catalogue_free(rows, n);
    models_apply_config(g);
    LOGI("catalogue_loaded", "models=%zu", g->cat.n);
    return 0;
}

/* ---- several gateways --------------------------------------------------------------------- */

void models_apply_remote(struct gw *g, const char *id, const char *json)
{
    if (sync_defer_remote(g, SYNC_MODEL, id)) return; /* ours is newer (sync.h) */
    struct cat_model *old = catalogue_find(&g->cat, strv_from_cstr(id));
    if (old && (old->from_config || strcmp(old->id, id) != 0)) return; /* the file's, or an alias */
    if (!json) {
        if (old) {
            catalogue_remove(&g->cat, id);
            registry_generation++;
            LOGI("model_removed", "model=%s by=remote", id);
        }
        return;
    }
    if (old) {
        struct buf b;
        buf_init(&b, 1u << 20);
        bool same = cat_model_to_json(old, &b) == 0 && b.len == strlen(json) &&
                    memcmp(b.p, json, b.len) == 0;
        buf_free(&b);
        if (same) return;
    }
    struct json_object *o = json_parse_strict(json, strlen(json), 16, NULL);
    struct cat_model *m = NULL;
    char field[64] = "", why[200] = "";
    if (o) json_object_object_del(o, "source");
    if (!o || cat_model_from_json(o, &m, field, sizeof field, why, sizeof why)) {
        LOGW("catalogue_row_skipped", "model=%s reason=\"%s %s\"", id, o ? field : "not JSON",
             o ? why : "");
        if (o) json_object_put(o);
        return;
    }
    json_object_put(o);
    if (old) catalogue_remove(&g->cat, id);
    const char *clash = catalogue_name_clash(&g->cat, m);
    if (clash) {
        LOGW("catalogue_row_skipped", "model=%s reason=\"the name %s is taken here\"", id, clash);
        cat_model_free(m);
        return;
    }
    catalogue_put(&g->cat, m);
    registry_generation++;
    LOGI(old ? "model_changed" : "model_added", "model=%s by=remote", id);
}

void models_resync(struct gw *g, const struct store_cat_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) models_apply_remote(g, rows[i].id, rows[i].json);
    for (size_t i = 0; i < g->cat.n;) {
        struct cat_model *m = g->cat.v[i];
        bool found = m->from_config || sync_defer_remote(g, SYNC_MODEL, m->id);
        for (size_t j = 0; j < n && !found; j++) found = strcmp(rows[j].id, m->id) == 0;
        char idc[CAT_MAX_ID];
        snprintf(idc, sizeof idc, "%s", m->id);
        if (!found && catalogue_remove(&g->cat, idc)) {
            registry_generation++;
            LOGI("model_removed", "model=%s by=remote", idc);
            continue; /* v[i] is another entry now */
        }
        i++;
    }
}

/* ---- admin API --------------------------------------------------------------------------- */

/* Where each catalogued model is loaded and where it could be (GET /admin/v1/models, and the
 * extra fields of /v1/models). */
int models_where_json(struct gw *g, const struct cat_model *m, struct buf *b)
{
    uint64_t now = gw_now_ms(g);
    int rc = buf_append_cstr(b, "\"loaded_on\":[");
    size_t k = 0;
    for (size_t i = 0; i < g->reg.n && !rc; i++) {
        struct node *n = g->reg.nodes[i];
        if (!node_model_find(n, strv_from_cstr(m->id)) || placement_infeasible(m, n)) continue;
        if (k++) rc = buf_append_cstr(b, ",");
        if (!rc) rc = json_append_str(b, n->name, strlen(n->name));
    }
    if (!rc) rc = buf_append_cstr(b, "],\"could_load_on\":[");
    k = 0;
    for (size_t i = 0; i < g->reg.n && !rc; i++) {
        struct node *n = g->reg.nodes[i];
        if (!n->via_agent || placement_infeasible(m, n) ||
            node_model_find(n, strv_from_cstr(m->id)))
            continue;
        if (k++) rc = buf_append_cstr(b, ",");
        if (!rc) rc = json_append_str(b, n->name, strlen(n->name));
    }
    if (!rc)
        rc = buf_appendf(b, "],\"replicas_routable\":%u,\"loading\":%u",
                         placement_replicas(&g->reg, m->id, now), loads_count(g, m->id));
    return rc;
}

/* "replicas_status": what min asks, what is there, why not more; "placement": per node, what
 * it can do for the model (docs/placement.md). */
static int status_json(struct gw *g, const struct cat_model *m, struct buf *b)
{
    uint64_t now = gw_now_ms(g);
    unsigned present = placement_replicas(&g->reg, m->id, now);
    unsigned loading = loads_count(g, m->id);
    int rc = buf_appendf(b,
                         ",\"replicas_status\":{\"wanted\":%u,\"present\":%u,\"loading\":%u,"
                         "\"reconciler_passes\":%llu,\"leader\":%s,\"unmet_reason\":",
                         m->replicas_min, present, loading, (unsigned long long)reconcile_passes,
                         !g->sync || g->is_leader ? "true" : "false");
    if (!rc && present + loading >= m->replicas_min) {
        rc = buf_append_cstr(b, "null");
    } else if (!rc) {
        struct place_pick pk;
        char why[sizeof m->last_why];
        placement_pick(&g->cat, &g->reg, m, now, skip_loading, g, &pk);
        if (pk.node)
            snprintf(why, sizeof why, "a load on %s is due at the reconciler's next pass",
                     pk.node->name);
        else
            unmet_reason(g, m, now, &pk, why, sizeof why);
        rc = json_append_str(b, why, strlen(why));
    }
    if (!rc) rc = buf_append_cstr(b, "},\"placement\":{");
    for (size_t i = 0; i < g->reg.n && !rc; i++) {
        const struct node *n = g->reg.nodes[i];
        struct place_verdict v;
        char words[200];
        placement_assess(&g->cat, &g->reg, m, n, now, skip_loading, g, &v);
        placement_describe(m, n, &v, words, sizeof words);
        if (i) rc = buf_append_cstr(b, ",");
        if (!rc) rc = json_append_str(b, n->name, strlen(n->name));
        if (!rc) rc = buf_append_cstr(b, ":");
        if (!rc) rc = json_append_str(b, words, strlen(words));
    }
    if (!rc) rc = buf_append_cstr(b, "}");
    return rc;
}

static int entry_json(struct gw *g, const struct cat_model *m, struct buf *b)
{
    int rc = cat_model_to_json(m, b);
    if (rc) return rc;
    b->len--; /* reopen the object */
    rc = buf_append_cstr(b, ",");
    if (!rc) rc = models_where_json(g, m, b);
    if (!rc && m->last_why[0]) {
        rc = buf_append_cstr(b, ",\"reconciler\":");
        if (!rc) rc = json_append_str(b, m->last_why, strlen(m->last_why));
    }
    if (!rc) rc = status_json(g, m, b);
    if (!rc) rc = buf_append_cstr(b, "}");
    return rc;
}

static void persist_then_answer(struct gw *g, struct http_request *req, const char *id,
                                const char *json, int status, struct buf *body)
{
    struct gw_reply *r = gw_reply_new(req, status, body, NULL);
    if (!g->store)
        gw_reply_done(r, 0, NULL);
    else if (json)
        store_put_catalogue(g->store, id, json, sync_write_done,
                            sync_write(g, SYNC_MODEL, id, gw_reply_done, r));
    else
        store_delete_catalogue(g->store, id, sync_write_done,
                               sync_write(g, SYNC_MODEL, id, gw_reply_done, r));
}

static void put_model(struct gw *g, struct http_request *req, struct strv path_id)
{
    struct gw_error jerr = {0};
    struct json_object *o = json_parse_strict(req->body.p, req->body.len, 16, &jerr);
    if (!o) return gw_reply_error(req, 400, "invalid_json", NULL, "the body must be JSON");
    if (path_id.len && json_object_is_type(o, json_type_object) &&
        !json_object_object_get_ex(o, "id", NULL))
        json_object_object_add(o, "id", json_object_new_string_len(path_id.p, (int)path_id.len));
    struct cat_model *m = NULL;
    char field[64] = "", why[200] = "";
    if (cat_model_from_json(o, &m, field, sizeof field, why, sizeof why)) {
        json_object_put(o);
        return gw_reply_error(req, 400, "invalid_model", field[0] ? field : NULL, why);
    }
    json_object_put(o);
    if (path_id.len && !strv_eq_cstr(path_id, m->id)) {
        cat_model_free(m);
        return gw_reply_error(req, 400, "invalid_model", "id", "the id differs from the path's");
    }
    struct cat_model *old = catalogue_find(&g->cat, strv_from_cstr(m->id));
    if ((old && old->from_config) || (old && strcmp(old->id, m->id) != 0)) {
        const char *why2 = old->from_config ? "the model is defined in the config file"
                                            : "the id is an alias of another model";
        cat_model_free(m);
        return gw_reply_error(req, 409, "illegal_transition", "id", why2);
    }
    const char *clash = catalogue_name_clash(&g->cat, m);
    if (clash) {
        char msg[300];
        snprintf(msg, sizeof msg, "the name '%s' is used by another model", clash);
        cat_model_free(m);
        return gw_reply_error(req, 409, "name_taken", "aliases", msg);
    }
    struct buf stored;
    buf_init(&stored, 1u << 20);
    if (cat_model_to_json(m, &stored)) {
        cat_model_free(m);
        buf_free(&stored);
        return gw_reply_error(req, 500, "internal_error", NULL, "entry too large");
    }
    char *json = buf_take(&stored, &(size_t){0});
    bool created = old == NULL;
    catalogue_put(&g->cat, m);
    registry_generation++;
    LOGI(created ? "model_added" : "model_changed", "model=%s", m->id);
    struct buf b;
    buf_init(&b, 1u << 20);
    if (entry_json(g, m, &b)) buf_reset(&b);
    persist_then_answer(g, req, m->id, json, created ? 201 : 200, &b);
    xfree(json);
}

void models_admin(struct gw *g, struct http_request *req, struct strv rest)
{
    bool get = strv_eq_cstr(req->method, "GET");
    if (rest.len == 0) {
        if (strv_eq_cstr(req->method, "POST")) return put_model(g, req, STRV_NULL);
        if (!get) return gw_reply_error(req, 405, "method_not_allowed", NULL, "GET or POST");
        struct buf b;
        buf_init(&b, 64u << 20);
        int rc = buf_append_cstr(&b, "{\"models\":[");
        for (size_t i = 0; i < g->cat.n && !rc; i++) {
            if (i) rc = buf_append_cstr(&b, ",");
            if (!rc) rc = entry_json(g, g->cat.v[i], &b);
        }
        if (!rc) rc = buf_append_cstr(&b, "]}");
        (void)http_respond_json(req, rc ? 500 : 200, NULL, 0, b.p, b.len);
        buf_free(&b);
        return;
    }
    struct strv id = strv_sub(rest, 1, rest.len);
    if (strv_eq_cstr(req->method, "PUT")) return put_model(g, req, id);
    struct cat_model *m = catalogue_find(&g->cat, id);
    if (!m || !strv_eq_cstr(id, m->id))
        return gw_reply_error(req, 404, "model_not_found", NULL, "no such catalogue entry");
    if (get) {
        struct buf b;
        buf_init(&b, 1u << 20);
        int rc = entry_json(g, m, &b);
        (void)http_respond_json(req, rc ? 500 : 200, NULL, 0, b.p, b.len);
        buf_free(&b);
        return;
    }
    if (!strv_eq_cstr(req->method, "DELETE"))
        return gw_reply_error(req, 405, "method_not_allowed", NULL, "GET, PUT or DELETE");
    if (m->from_config)
        return gw_reply_error(req, 409, "illegal_transition", NULL,
                              "the model is defined in the config file; remove it there");
    char idc[CAT_MAX_ID];
    snprintf(idc, sizeof idc, "%s", m->id);
    catalogue_remove(&g->cat, idc);
    LOGI("model_removed", "model=%s", idc);
    struct buf b;
    buf_init(&b, 256);
    if (buf_appendf(&b, "{\"deleted\":true}")) buf_reset(&b);
    persist_then_answer(g, req, idc, NULL, 200, &b);
}

/* ---- the replicas reconciler ------------------------------------------------------------- */

static void say_why(struct cat_model *m, const char *why)
{
    /* once per change of reason, not once per pass */
    if (strcmp(m->last_why, why) != 0)
        LOGW("reconcile_blocked", "model=%s reason=\"%s\"", m->id, why);
    snprintf(m->last_why, sizeof m->last_why, "%s", why);
}

/* retry_at_ms (0: none): a load backoff that ends sooner than the exponential delay. */
static void back_off(struct gw *g, struct cat_model *m, uint64_t now, uint64_t retry_at_ms)
{
    m->backoff_failures++;
    uint64_t d = g->cfg.reconcile_interval_ms;
    for (unsigned k = 1; k < m->backoff_failures && d < MODELS_BACKOFF_MAX_MS; k++) d *= 2;
    if (d > MODELS_BACKOFF_MAX_MS) d = MODELS_BACKOFF_MAX_MS;
    m->backoff_until_ms = now + d;
    if (retry_at_ms && retry_at_ms < m->backoff_until_ms) m->backoff_until_ms = retry_at_ms;
    m->seen_generation = registry_generation;
}

static bool skip_loading(const struct node *n, void *ctx)
{
    return loads_busy_node(ctx, n);
}

static void unmet_reason(struct gw *g, const struct cat_model *m, uint64_t now,
                         const struct place_pick *pk, char *out, size_t cap)
{
    const char *kind = pk->waiting ? "waiting for an install or the end of a load backoff"
                       : pk->why == PLACE_NONE_INFEASIBLE ? "no node can load it"
                       : pk->why == PLACE_NONE_UNHEALTHY  ? "the nodes that could hold it are down"
                       : pk->why == PLACE_NONE_HELD
                           ? "every node that could hold it already holds a "
                             "replica or is loading"
                           : "the nodes that could hold it are full of busy or "
                             "protected models";
    char nodes[400];
    size_t k = placement_explain(&g->cat, &g->reg, m, now, nodes, sizeof nodes);
    snprintf(out, cap, "%s%s%s", kind, k ? ": " : "", k ? nodes : "");
}

static void add_replica(struct gw *g, struct cat_model *m, uint64_t now, const char *because)
{
    struct place_pick pk;
    placement_pick(&g->cat, &g->reg, m, now, skip_loading, g, &pk);
    struct node *n = pk.node;
    if (!n) {
        char why[sizeof m->last_why];
        unmet_reason(g, m, now, &pk, why, sizeof why);
        say_why(m, why);
        back_off(g, m, now, pk.retry_at_ms);
        return;
    }
    const char *plan[16];
    size_t k = 0;
    bool busy;
    if (pk.needs_evict)
        (void)placement_evict_plan(&g->cat, &g->reg, n, m->min_vram_mb, now, plan, 16, &k, &busy);
    LOGI("replica_load", "model=%s node=%s because=%s evict=%zu", m->id, n->name, because, k);
    m->last_why[0] = '\0';
    m->backoff_failures = 0;
    loads_start(g, n, m->id, m->load_options_json, plan, k);
}

void models_reconcile(struct gw *g)
{
    /* several gateways: one pass for the fleet, on the leader (sync.c) */
    if (g->sync && !g->is_leader) return;
    uint64_t now = gw_now_ms(g);
    reconcile_passes++;
    loads_tick(g); /* placement's per-pass work: eviction config, LFU counts, defrag */
    for (size_t i = 0; i < g->cat.n; i++) {
        struct cat_model *m = g->cat.v[i];
        if (m->backoff_until_ms > now && m->seen_generation == registry_generation) continue;
        unsigned routable = placement_replicas(&g->reg, m->id, now);
        unsigned loading = loads_count(g, m->id);
        unsigned have = routable + loading;
        if (have < m->replicas_min) {
            add_replica(g, m, now, "below_min");
            continue;
        }
        if (loading) continue;
        /* all replicas busy and room for one more */
        bool all_busy = routable > 0;
        for (size_t j = 0; j < g->reg.n && all_busy; j++) {
            struct node *n = g->reg.nodes[j];
            struct node_model *nm = node_model_find(n, strv_from_cstr(m->id));
            if (nm && node_is_routable(&g->reg, n, now) && nm->inflight == 0) all_busy = false;
        }
        if (all_busy && m->replicas_max > routable) {
            add_replica(g, m, now, "all_busy");
            continue;
        }
        /* idle extra replicas go, one per tick, never below min */
        if (routable > m->replicas_min && routable > 0 && g->cfg.replica_idle_ms) {
            for (size_t j = 0; j < g->reg.n; j++) {
                struct node *n = g->reg.nodes[j];
                struct node_model *nm = node_model_find(n, strv_from_cstr(m->id));
                if (!nm || !n->via_agent || m->pinned || nm->inflight ||
                    !node_is_routable(&g->reg, n, now) ||
                    now - nm->last_used_ms < g->cfg.replica_idle_ms || loads_busy_node(g, n))
                    continue;
                LOGI("replica_unload", "model=%s node=%s idle_ms=%llu", m->id, n->name,
                     (unsigned long long)(now - nm->last_used_ms));
                loads_unload(g, n, m->id);
                break;
            }
        }
    }
}

static void on_reconcile(uv_timer_t *t)
{
    models_reconcile(t->data);
}

void models_start(struct gw *g)
{
    uv_timer_init(g->loop, &g->replicas_timer);
    g->replicas_timer.data = g;
    uv_timer_start(&g->replicas_timer, on_reconcile, g->cfg.reconcile_interval_ms,
                   g->cfg.reconcile_interval_ms);
}

void models_stop(struct gw *g)
{
    uv_timer_stop(&g->replicas_timer);
    uv_close((uv_handle_t *)&g->replicas_timer, NULL);
    loads_stop(g);
}
