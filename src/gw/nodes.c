/* nodes — the durable side of the registry. Every node (static or joined) has a row in the
 * store; admin changes are written at once and acknowledged only after the commit (see
 * nodes_persist), live state that changes often (fault record, inventory) is marked dirty by
 * the registry and written by a flush timer. At start-up the stored rows are loaded before the
 * config's static nodes are applied: the file owns a static node's address, kind, key and
 * labels; the store owns its admin intent and fault record. A stored static node that left the
 * file is deleted. The loop thread only. */
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "gw/health.h"
#include "gw/nodes.h"
#include "gw/sync.h"
#include "gw/upstream.h"
#include "store/store.h"

static int admin_parse(const char *s, enum node_admin *out)
{
    static const char *const names[] = {"pending", "approved", "draining", "removed"};
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, names[i]) == 0) {
            *out = (enum node_admin)i;
            return 0;
        }
    }
    return GW_E_INVALID;
}

/* The row for n. Strings are borrowed from n except *inventory (owned by the caller). */
static void snapshot(const struct node *n, struct store_node *r, struct store_label *labels,
                     char **inventory)
{
    memset(r, 0, sizeof *r);
    r->name = n->name;
    r->url = n->url;
    r->kind = n->via_agent ? "agent" : (char *)node_kind_name(n->kind);
    r->engine = n->via_agent ? (char *)node_kind_name(n->kind) : NULL;
    r->admin = (char *)node_admin_name(n->admin);
    r->secret_hash = n->secret_hash;
    for (size_t i = 0; i < n->n_labels; i++)
        labels[i] = (struct store_label){n->labels[i].key, n->labels[i].value};
    r->labels = labels;
    r->n_labels = n->from_config ? 0 : n->n_labels; /* the file owns static nodes' labels */
    r->discovery_json = n->discovery_json;
    struct buf b;
    buf_init(&b, 1u << 20);
    int rc = buf_append_cstr(&b, "[");
    for (size_t i = 0; i < n->n_models && !rc; i++) {
        if (i) rc = buf_append_cstr(&b, ",");
        if (!rc) rc = json_append_str(&b, n->models[i].id, strlen(n->models[i].id));
    }
    if (!rc) rc = buf_append_cstr(&b, "]");
    size_t len;
    *inventory = rc || !n->inventory_known ? (buf_free(&b), NULL) : buf_take(&b, &len);
    r->inventory_json = *inventory;
    r->excluded = n->excluded;
    r->consecutive_faults = n->consecutive_faults;
    r->ejections = n->ejections;
    r->faults_total = n->faults_total;
    r->created_ms = n->created_ms;
    r->updated_ms = (int64_t)clock_wall_ms();
}

/* Several gateways: the flush writes only what this gateway observes (store_put_node_facts),
 * never admin intent, identity or labels, so a stale copy here cannot undo another gateway's
 * admin change. */
static void persist_facts(struct gw *g, struct node *n)
{
    n->dirty = false;
    struct store_label *labels = xcalloc(n->n_labels ? n->n_labels : 1, sizeof *labels);
    struct store_node row;
    char *inv = NULL;
    snapshot(n, &row, labels, &inv);
    store_put_node_facts(g->store, &row, NULL, NULL);
    xfree(inv);
    xfree(labels);
}

void nodes_persist(struct gw *g, struct node *n, store_done_fn done, void *ctx)
{
    n->dirty = false;
    if (!g->store) {
        if (done) done(ctx, 0, NULL);
        return;
    }
    struct store_label *labels = xcalloc(n->n_labels ? n->n_labels : 1, sizeof *labels);
    struct store_node row;
    char *inv = NULL;
    snapshot(n, &row, labels, &inv);
    /* copies the row */
    store_put_node(g->store, &row, sync_write_done, sync_write(g, SYNC_NODE, n->name, done, ctx));
    xfree(inv);
    xfree(labels);
}

static void on_flush(uv_timer_t *t)
{
    struct gw *g = t->data;
    nodes_flush_dirty(g);
}

void nodes_flush_dirty(struct gw *g)
{
    for (size_t i = 0; i < g->reg.n; i++) {
        struct node *n = g->reg.nodes[i];
        if (!n->dirty) continue;
        if (g->sync && g->store && n->admin != ADMIN_REMOVED)
            persist_facts(g, n);
        else
            nodes_persist(g, n, NULL, NULL);
    }
}

void nodes_flush_start(struct gw *g)
{
    uv_timer_init(g->loop, &g->flush_timer);
    g->flush_timer.data = g;
    uv_timer_start(&g->flush_timer, on_flush, g->cfg.store_flush_ms, g->cfg.store_flush_ms);
}

void nodes_flush_stop(struct gw *g)
{
    uv_timer_stop(&g->flush_timer);
    uv_close((uv_handle_t *)&g->flush_timer, NULL);
    nodes_flush_dirty(g);
}

static void load_inventory(struct node *n, const char *json)
{
    if (!json) return;
    struct json_object *root = json_parse_strict(json, strlen(json), 4, NULL);
    if (!root) return;
    if (json_object_is_type(root, json_type_array)) {
        size_t k = json_object_array_length(root);
        struct strv *ids = xcalloc(k ? k : 1, sizeof *ids);
        size_t m = 0;
        for (size_t i = 0; i < k; i++) {
            struct json_object *e = json_object_array_get_idx(root, i);
            if (json_object_is_type(e, json_type_string))
                ids[m++] =
                    (struct strv){json_object_get_string(e), (size_t)json_object_get_string_len(e)};
        }
        registry_set_models(n, ids, m);
        xfree(ids);
    }
    json_object_put(root);
}

/* Applies a stored row to a fresh registry node. */
static void apply_row(struct gw *g, struct node *n, const struct store_node *r)
{
    enum node_admin a = ADMIN_APPROVED;
    if (admin_parse(r->admin, &a)) a = n->admin;
    registry_restore(&g->reg, n, a, r->excluded, r->consecutive_faults, r->ejections, gw_now_ms(g));
    n->faults_total = r->faults_total;
    n->created_ms = r->created_ms;
    load_inventory(n, r->inventory_json);
    n->inventory_known = false; /* until a probe says so; the list is kept for placement */
}

static bool in_config(const struct gw_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (strcmp(cfg->nodes[i].name, name) == 0) return true;
    return false;
}

int nodes_load(struct gw *g, struct gw_error *err)
{
    struct store_node *rows = NULL;
    size_t n_rows = 0;
    if (g->store) {
        int rc = store_load_nodes(g->store, &rows, &n_rows, err);
        if (rc) return rc;
    }
    int64_t now = (int64_t)clock_wall_ms();
    for (size_t i = 0; i < n_rows; i++) {
        const struct store_node *r = &rows[i];
        bool agent = r->kind && strcmp(r->kind, "agent") == 0;
        if (agent && in_config(&g->cfg, r->name)) {
            /* the file took the name over: its row replaces the agent's at the first flush */
            LOGW("node_config_overrides_agent", "node=%s", r->name);
            continue;
        }
        if (!agent) {
            if (!in_config(&g->cfg, r->name)) {
                LOGI("node_forgotten", "node=%s reason=\"no longer in the config file\"", r->name);
                store_delete_node(g->store, r->name, NULL, NULL);
            }
            continue; /* applied below, with the file's address */
        }
        enum node_kind kind = NODE_KIND_OPENAI;
        if (!r->engine || node_kind_parse(r->engine, &kind))
            LOGW("node_row_engine", "node=%s engine=%s using=openai", r->name,
                 r->engine ? r->engine : "-");
        struct node *n = NULL;
        if (registry_add(&g->reg, r->name, r->url, kind, r->secret_hash, &n, err)) {
            LOGW("node_row_skipped", "node=%s reason=\"%s\"", r->name, err ? err->msg : "bad");
            continue;
        }
        n->via_agent = true;
        registry_set_str(&n->secret_hash, r->secret_hash);
        registry_set_str(&n->discovery_json, r->discovery_json);
        registry_set_facts_from_discovery(n, n->discovery_json);
        for (size_t l = 0; l < r->n_labels; l++)
            registry_set_label(n, r->labels[l].key, r->labels[l].value);
        apply_row(g, n, r);
        n->dirty = false;
    }
    for (size_t i = 0; i < g->cfg.n_nodes; i++) {
        const struct gw_node_config *nc = &g->cfg.nodes[i];
        struct node *n = NULL;
        if (registry_add(&g->reg, nc->name, nc->url, nc->kind, nc->api_key, &n, err)) return -1;
        n->from_config = true;
        n->created_ms = now;
        for (size_t l = 0; l < nc->n_labels; l++)
            registry_set_label(n, nc->labels[l].key, nc->labels[l].value);
        for (size_t j = 0; j < n_rows; j++)
            if (strcmp(rows[j].name, nc->name) == 0 &&
                !(rows[j].kind && strcmp(rows[j].kind, "agent") == 0))
                apply_row(g, n, &rows[j]);
        if (n->admin == ADMIN_PENDING || n->admin == ADMIN_REMOVED)
            registry_set_admin(&g->reg, n, ADMIN_APPROVED, "listed in the config file");
        n->dirty = true; /* written by the first flush */
    }
    if (g->store) store_nodes_free(rows, n_rows);
    /* The HTTP client refuses these nodes' calls (DESIGN §10): say why once, here, rather
     * than leave only failed probes to explain it. */
    for (size_t i = 0; i < g->reg.n && !g->cfg.upstream_allow_plain_secrets; i++) {
        const struct node *n = g->reg.nodes[i];
        if (n->api_key && n->admin != ADMIN_REMOVED && upstream_is_plain_beyond_loopback(n))
            LOGW("node_unreachable_in_clear",
                 "node=%s url=%s reason=\"its key would cross the network in clear: every call "
                 "is refused; use an https:// URL, or upstream.allow_plain_secrets: true\"",
                 n->name, n->url);
    }
    return 0;
}

/* ---- answers that wait for the commit --------------------------------------------------- */

void nodes_persist_reply(struct gw *g, struct node *n, struct http_request *req, int status,
                         struct buf *body)
{
    /* a failed write leaves the change in memory: the flush timer writes it again */
    nodes_persist(g, n, gw_reply_done, gw_reply_new(req, status, body, &n->dirty));
    /* an admin recover is local state (fault record, marks) on every gateway: tell the others,
     * after the row (FIFO), so they clear theirs too */
    struct strv tail = STRV_LIT("/recover");
    if (g->sync && req->path.len > tail.len &&
        strv_eq(strv_sub(req->path, req->path.len - tail.len, req->path.len), tail))
        sync_notify_recover(g, n->name);
}

/* ---- several gateways: rows other gateways wrote ---------------------------------------- */

static bool labels_equal(const struct node *n, const struct store_node *r)
{
    if (n->n_labels != r->n_labels) return false;
    for (size_t i = 0; i < r->n_labels; i++) {
        bool found = false;
        for (size_t j = 0; j < n->n_labels && !found; j++)
            found = !strcmp(n->labels[j].key, r->labels[i].key) &&
                    !strcmp(n->labels[j].value, r->labels[i].value);
        if (!found) return false;
    }
    return true;
}

static bool str_differs(const char *a, const char *b)
{
    if (!a || !*a) return b && *b;
    return !b || strcmp(a, b) != 0;
}

void nodes_apply_remote(struct gw *g, const char *name, const struct store_node *r)
{
    if (sync_defer_remote(g, SYNC_NODE, name)) return; /* ours is newer (sync.h) */
    struct node *n = registry_find(&g->reg, strv_from_cstr(name));
    if (!r) {
        if (n && !n->from_config && n->admin != ADMIN_REMOVED) {
            LOGI("node_removed", "node=%s by=remote in_flight=%u", n->name, n->inflight);
            registry_tombstone(n);
            n->dirty = false;
            registry_generation++;
        }
        return;
    }
    enum node_admin a;
    if (admin_parse(r->admin, &a)) return;
    bool agent = r->kind && strcmp(r->kind, "agent") == 0;
    if (!n) {
        /* static nodes come from each gateway's own file; a removed row needs no node */
        if (!agent || a == ADMIN_REMOVED) return;
        enum node_kind kind = NODE_KIND_OPENAI;
        if (r->engine && node_kind_parse(r->engine, &kind)) kind = NODE_KIND_OPENAI;
        struct gw_error err = {0};
        if (registry_add(&g->reg, r->name, r->url, kind, r->secret_hash, &n, &err)) {
            LOGW("node_row_skipped", "node=%s reason=\"%s\"", r->name, err.msg);
            return;
        }
        n->via_agent = true;
        registry_set_str(&n->secret_hash, r->secret_hash);
        registry_set_str(&n->discovery_json, r->discovery_json);
        registry_set_facts_from_discovery(n, n->discovery_json);
        for (size_t l = 0; l < r->n_labels; l++)
            registry_set_label(n, r->labels[l].key, r->labels[l].value);
        registry_restore(&g->reg, n, a, false, 0, 0, gw_now_ms(g));
        n->created_ms = r->created_ms;
        n->dirty = false;
        registry_generation++;
        LOGI("node_added", "node=%s by=remote admin=%s", n->name, node_admin_name(a));
        health_attach(g, n); /* this gateway's own observation of it */
        if (a == ADMIN_APPROVED) health_probe_now(g, n);
        return;
    }
    if (n->from_config != !agent) return; /* the file took the name, or the reverse */
    if (a == ADMIN_REMOVED) {
        if (n->admin != ADMIN_REMOVED) nodes_apply_remote(g, name, NULL);
        return;
    }
    bool changed = false;
    if (agent) {
        if (str_differs(n->url, r->url) && r->url && registry_set_url(n, r->url) == 0)
            changed = true;
        if (str_differs(n->secret_hash, r->secret_hash) ||
            (n->admin == ADMIN_REMOVED && r->secret_hash)) {
            registry_set_str(&n->secret_hash, r->secret_hash);
            registry_set_str(&n->api_key, r->secret_hash); /* the gateway key H */
            changed = true;
        }
        if (str_differs(n->discovery_json, r->discovery_json)) {
            registry_set_str(&n->discovery_json, r->discovery_json);
            registry_set_facts_from_discovery(n, n->discovery_json);
            changed = true;
        }
        if (!labels_equal(n, r)) {
            registry_clear_labels(n);
            for (size_t l = 0; l < r->n_labels; l++)
                registry_set_label(n, r->labels[l].key, r->labels[l].value);
            LOGI("node_labels_changed", "node=%s by=remote", n->name);
            changed = true;
        }
    }
    if (a != n->admin) {
        registry_set_admin(&g->reg, n, a, "remote change");
        changed = true;
    }
    if (changed) {
        registry_generation++;
        health_attach(g, n);
        if (n->admin == ADMIN_APPROVED || n->admin == ADMIN_DRAINING) health_probe_now(g, n);
    }
}

void nodes_resync(struct gw *g, const struct store_node *rows, size_t n_rows)
{
    for (size_t i = 0; i < n_rows; i++) nodes_apply_remote(g, rows[i].name, &rows[i]);
    for (size_t i = 0; i < g->reg.n; i++) {
        struct node *n = g->reg.nodes[i];
        if (n->from_config || !n->via_agent || n->admin == ADMIN_REMOVED) continue;
        bool found = false;
        for (size_t j = 0; j < n_rows && !found; j++) found = strcmp(rows[j].name, n->name) == 0;
        if (!found) nodes_apply_remote(g, n->name, NULL);
    }
}
