/* sync — several gateways on one PostgreSQL (DESIGN §9). store_watch reports each change
 * another gateway committed as (table, key); this module re-reads that row on the store thread
 * (a job in the store's FIFO, so it sees every write this gateway queued before) and applies it
 * on the loop thread through the owning module (nodes_apply_remote, models_apply_remote,
 * ops_apply_remote, keys_apply_remote), which applies only what is shared: admin intent,
 * identities, labels, catalogue entries, operation rows, client keys. Liveness, fault records,
 * exclusions and marks stay local; a remote recover (an explicit notification) clears this
 * gateway's own fault record and marks. After every (re)connection of the watch, everything is
 * re-read (what was notified meanwhile is lost). The leader (PostgreSQL's session advisory lock,
 * held by the watch's connection) runs the fleet-wide periodic jobs: the replicas reconciler and
 * the prune of dead operation rows. The loop thread only. */
#include "gw/sync.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "gw/keys.h"
#include "gw/models.h"
#include "gw/nodes.h"
#include "gw/ops.h"
#include "gw/placement.h"
#include "store/store_catalogue.h"
#include "store/store_keys.h"
#include "store/store_ops.h"
#include "store/store_watch.h"

enum { SYNC_LEADER_LOCK = 0x64726f77 }; /* "drow": the leader of fleet-wide jobs */

enum what { WHAT_NODE, WHAT_MODEL, WHAT_OP, WHAT_KEY, WHAT_ALL };

struct reread;

struct sync {
    struct store_watch *watch;
    uv_timer_t retry; /* a re-read failed (the store away): re-read everything later */
    /* Row re-reads are batched: one job in the store's queue at a time reads every row it
     * carries in one transaction; what is notified meanwhile waits in `next` (each row once)
     * and goes as the next job when this one completes. A burst of notifications (three per
     * operation from each other gateway) costs one round of transactions, not one each. */
    bool batch_in_flight;
    struct reread **next;
    size_t n_next;
};

static void reread(struct gw *g, enum what what, const char *key);

static struct sync *container_of_retry(uv_handle_t *h)
{
    return (struct sync *)((char *)h - offsetof(struct sync, retry));
}

void sync_make_origin(struct gw *g)
{
    char hex[65];
    if (random_secret_hex(hex)) snprintf(hex, sizeof hex, "%08x", (unsigned)rand());
    snprintf(g->origin, sizeof g->origin, "gw-%.12s", hex);
}

/* ---- one row ------------------------------------------------------------------------------ */

struct reread {
    struct gw *g;
    enum what what;
    char *key;
    struct store_node *nodes;
    size_t n_nodes;
    struct store_cat_row *cat;
    size_t n_cat;
    struct store_op *ops, *dead;
    size_t n_ops, n_dead;
    struct store_key_row *keys;
    size_t n_keys;
};

static int run_reread(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct reread *r = ctx;
    int rc = 0;
    int64_t id = 0;
    switch (r->what) {
    case WHAT_NODE:
        return store_nodes_read(db, r->key, &r->nodes, &r->n_nodes, err);
    case WHAT_MODEL:
        return store_catalogue_read(db, r->key, &r->cat, &r->n_cat, err);
    case WHAT_OP:
        id = strtoll(r->key, NULL, 10);
        if (id <= 0) return 0;
        rc = store_ops_read(db, false, id, &r->ops, &r->n_ops, err);
        if (!rc) rc = store_ops_read(db, true, id, &r->dead, &r->n_dead, err);
        return rc;
    case WHAT_KEY:
        return store_keys_read(db, r->key, &r->keys, &r->n_keys, err);
    case WHAT_ALL:
        rc = store_nodes_read(db, NULL, &r->nodes, &r->n_nodes, err);
        if (!rc) rc = store_catalogue_read(db, NULL, &r->cat, &r->n_cat, err);
        if (!rc) rc = store_ops_read(db, false, 0, &r->ops, &r->n_ops, err);
        if (!rc) rc = store_ops_read(db, true, 0, &r->dead, &r->n_dead, err);
        if (!rc) rc = store_keys_read(db, NULL, &r->keys, &r->n_keys, err);
        return rc;
    }
    return 0;
}

static void reread_free(struct reread *r)
{
    store_nodes_free(r->nodes, r->n_nodes);
    store_catalogue_free(r->cat, r->n_cat);
    store_ops_free(r->ops, r->n_ops);
    store_ops_free(r->dead, r->n_dead);
    store_key_rows_free(r->keys, r->n_keys);
    xfree(r->key);
    xfree(r);
}

static void on_retry(uv_timer_t *t)
{
    struct gw *g = t->data;
    if (!g->stopping && g->sync) reread(g, WHAT_ALL, NULL);
}

/* Applies one re-read row on the loop thread (the owning module decides what is shared). */
static void apply_row(struct gw *g, struct reread *r)
{
    switch (r->what) {
    case WHAT_NODE:
        nodes_apply_remote(g, r->key, r->n_nodes ? &r->nodes[0] : NULL);
        break;
    case WHAT_MODEL:
        models_apply_remote(g, r->key, r->n_cat ? r->cat[0].json : NULL);
        break;
    case WHAT_OP:
        ops_apply_remote(g, strtoll(r->key, NULL, 10), r->n_ops ? &r->ops[0] : NULL,
                         r->n_dead ? &r->dead[0] : NULL);
        break;
    case WHAT_KEY:
        keys_apply_remote(g, r->key, r->n_keys ? &r->keys[0] : NULL);
        break;
    case WHAT_ALL:
        nodes_resync(g, r->nodes, r->n_nodes);
        models_resync(g, r->cat, r->n_cat);
        ops_resync(g, r->ops, r->n_ops, r->dead, r->n_dead);
        keys_resync(g, r->keys, r->n_keys);
        LOGI("sync_resynced", "nodes=%zu models=%zu ops=%zu dead=%zu keys=%zu", r->n_nodes,
             r->n_cat, r->n_ops, r->n_dead, r->n_keys);
        break;
    }
}

static void reread_failed(struct gw *g, const struct reread *r, const char *msg)
{
    /* the store is away: what this change said is re-read with everything, later */
    LOGW("sync_reread_failed", "what=%d key=%s err=\"%s\"", (int)r->what, r->key ? r->key : "-",
         msg ? msg : "?");
    if (!g->stopping && g->sync && !uv_is_active((uv_handle_t *)&g->sync->retry))
        uv_timer_start(&g->sync->retry, on_retry, g->cfg.store_lease_ms, 0);
}

static void on_reread(void *ctx, int rc, const char *msg)
{
    struct reread *r = ctx;
    struct gw *g = r->g;
    if (rc)
        reread_failed(g, r, msg);
    else if (!g->stopping && (g->sync || r->what != WHAT_ALL))
        apply_row(g, r);
    reread_free(r);
}

struct batch {
    struct gw *g;
    struct reread **v;
    size_t n;
};

static int run_batch(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct batch *b = ctx;
    for (size_t i = 0; i < b->n; i++) {
        int rc = run_reread(db, b->v[i], err);
        if (rc) return rc;
    }
    return 0;
}

static void submit_batch(struct gw *g);

static void on_batch(void *ctx, int rc, const char *msg)
{
    struct batch *b = ctx;
    struct gw *g = b->g;
    for (size_t i = 0; i < b->n; i++) {
        if (rc && i == 0)
            reread_failed(g, b->v[i], msg); /* one full re-read later covers them all */
        else if (!rc && !g->stopping && g->sync)
            apply_row(g, b->v[i]);
        reread_free(b->v[i]);
    }
    xfree(b->v);
    xfree(b);
    if (g->sync) {
        g->sync->batch_in_flight = false;
        if (!g->stopping) submit_batch(g);
    }
}

static void submit_batch(struct gw *g)
{
    struct sync *s = g->sync;
    if (s->batch_in_flight || !s->n_next) return;
    struct batch *b = xcalloc(1, sizeof *b);
    b->g = g;
    b->v = s->next;
    b->n = s->n_next;
    s->next = NULL;
    s->n_next = 0;
    s->batch_in_flight = true;
    store_submit(g->store, run_batch, on_batch, b);
}

static void reread(struct gw *g, enum what what, const char *key)
{
    struct sync *s = g->sync;
    if (s && what != WHAT_ALL) {
        for (size_t i = 0; i < s->n_next; i++) /* already due to be read in the next batch */
            if (s->next[i]->what == what && strcmp(s->next[i]->key, key) == 0) return;
    }
    struct reread *r = xcalloc(1, sizeof *r);
    r->g = g;
    r->what = what;
    r->key = key ? xstrdup(key) : NULL;
    if (!s || what == WHAT_ALL) {
        store_submit(g->store, run_reread, on_reread, r);
        return;
    }
    s->next = xrealloc(s->next, (s->n_next + 1) * sizeof *s->next);
    s->next[s->n_next++] = r;
    submit_batch(g);
}

/* ---- local writes in flight ----------------------------------------------------------------- */

struct sync_pending {
    enum sync_table table;
    char *key;
    unsigned writes; /* queued and not yet completed */
    bool reread;     /* re-read the row when they completed (sync_defer_remote) */
};

struct sync_write_ctx {
    struct gw *g;
    enum sync_table table;
    char *key;
    store_done_fn done;
    void *ctx;
};

static struct sync_pending *pending_find(const struct gw *g, enum sync_table t, const char *key)
{
    for (size_t i = 0; i < g->n_pending; i++)
        if (g->pending[i].table == t && strcmp(g->pending[i].key, key) == 0) return &g->pending[i];
    return NULL;
}

void *sync_write(struct gw *g, enum sync_table t, const char *key, store_done_fn done, void *ctx)
{
    struct sync_pending *p = pending_find(g, t, key);
    if (!p) {
        g->pending = xrealloc(g->pending, (g->n_pending + 1) * sizeof *g->pending);
        p = &g->pending[g->n_pending++];
        *p = (struct sync_pending){.table = t, .key = xstrdup(key)};
    }
    p->writes++;
    struct sync_write_ctx *w = xmalloc(sizeof *w);
    *w = (struct sync_write_ctx){.g = g, .table = t, .key = xstrdup(key), .done = done, .ctx = ctx};
    return w;
}

static const enum what what_of[] = {
    [SYNC_NODE] = WHAT_NODE, [SYNC_MODEL] = WHAT_MODEL, [SYNC_OP] = WHAT_OP, [SYNC_KEY] = WHAT_KEY};

void sync_write_done(void *ctx, int rc, const char *msg)
{
    struct sync_write_ctx *w = ctx;
    struct gw *g = w->g;
    struct sync_pending *p = pending_find(g, w->table, w->key);
    bool reread_now = false;
    if (p && --p->writes == 0) {
        reread_now = p->reread;
        xfree(p->key);
        *p = g->pending[--g->n_pending];
    }
    if ((rc || reread_now) && !g->stopping && g->store) {
        /* memory ran ahead of the store (a failed write), or another gateway's change waited
         * for this write: read back what the store holds */
        if (rc)
            LOGW("store_write_failed", "table=%d key=%s err=\"%s\" then=reread", (int)w->table,
                 w->key, msg ? msg : "?");
        reread(g, what_of[w->table], w->key);
    }
    if (w->done) w->done(w->ctx, rc, msg);
    xfree(w->key);
    xfree(w);
}

bool sync_defer_remote(struct gw *g, enum sync_table t, const char *key)
{
    struct sync_pending *p = key ? pending_find(g, t, key) : NULL;
    if (p) p->reread = true;
    return p != NULL;
}

const char *sync_op_key(int64_t id, char out[24])
{
    snprintf(out, 24, "%lld", (long long)id);
    return out;
}

void sync_free(struct gw *g)
{
    for (size_t i = 0; i < g->n_pending; i++) xfree(g->pending[i].key);
    xfree(g->pending);
    g->pending = NULL;
    g->n_pending = 0;
}

/* ---- events ------------------------------------------------------------------------------- */

static void remote_recover(struct gw *g, const char *name)
{
    struct node *n = registry_find(&g->reg, strv_from_cstr(name));
    if (!n || n->admin == ADMIN_REMOVED) return;
    registry_recover(&g->reg, n, "remote recover");
    placement_forget_node(&g->cat, n->name);
}

static void on_event(void *ctx, enum store_watch_event ev, const char *table, const char *key)
{
    struct gw *g = ctx;
    if (g->stopping || !g->sync) return;
    switch (ev) {
    case STORE_WATCH_CHANGE:
        if (!strcmp(table, "nodes"))
            reread(g, WHAT_NODE, key);
        else if (!strcmp(table, "catalogue"))
            reread(g, WHAT_MODEL, key);
        else if (!strcmp(table, "ops"))
            reread(g, WHAT_OP, key);
        else if (!strcmp(table, "client_keys"))
            reread(g, WHAT_KEY, key);
        else if (!strcmp(table, "recover"))
            remote_recover(g, key);
        break;
    case STORE_WATCH_RESYNC:
        reread(g, WHAT_ALL, NULL);
        break;
    case STORE_WATCH_DOWN:
        break; /* logged by the watch; the store's own connection reports its state */
    case STORE_WATCH_LEADER:
        g->is_leader = true;
        LOGI("leader", "origin=%s role=leader", g->origin);
        ops_on_leader(g);
        models_reconcile(g);
        break;
    case STORE_WATCH_FOLLOWER:
        g->is_leader = false;
        LOGW("leader", "origin=%s role=follower reason=\"lost the coordination connection\"",
             g->origin);
        break;
    }
}

static void on_sync_closed(uv_handle_t *h)
{
    xfree(container_of_retry(h));
}

int sync_start(struct gw *g, struct gw_error *err)
{
    g->is_leader = true; /* one gateway: every job is its own */
    if (!g->store || store_engine(g->store) != STORE_ENGINE_POSTGRES) return 0;
    g->is_leader = false;
    struct sync *s = xcalloc(1, sizeof *s);
    struct store_watch_config wc = {
        .url = g->cfg.store_url,
        .origin = g->origin,
        .lock_key = SYNC_LEADER_LOCK,
        .lease_ms = (unsigned)g->cfg.store_lease_ms,
        .connect_timeout_ms = 5000,
    };
    g->sync = s;
    uv_timer_init(g->loop, &s->retry);
    s->retry.data = g;
    if (store_watch_start(g->loop, &wc, on_event, g, &s->watch, err)) {
        g->sync = NULL;
        uv_close((uv_handle_t *)&s->retry, on_sync_closed);
        return -1;
    }
    LOGI("sync_started", "origin=%s lease_ms=%llu", g->origin,
         (unsigned long long)g->cfg.store_lease_ms);
    return 0;
}

void sync_stop(struct gw *g)
{
    struct sync *s = g->sync;
    if (!s) return;
    g->sync = NULL;
    g->is_leader = false;
    for (size_t i = 0; i < s->n_next; i++) reread_free(s->next[i]); /* never submitted */
    xfree(s->next);
    s->next = NULL;
    s->n_next = 0;
    store_watch_stop(s->watch);
    uv_timer_stop(&s->retry);
    uv_close((uv_handle_t *)&s->retry, on_sync_closed);
}

void sync_notify_recover(struct gw *g, const char *name)
{
    if (!g->sync || !g->store) return;
    char payload[320];
    snprintf(payload, sizeof payload, "recover %s %s", g->origin, name);
    store_notify(g->store, payload);
}
