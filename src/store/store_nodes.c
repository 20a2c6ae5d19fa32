/* store_nodes — the nodes table: deep copies of struct store_node, the start-up load, and the
 * asynchronous upsert and delete. A put copies the node at call time, so the caller may change
 * or free its own copy at once; the job owns the copy until its completion has run. Values are
 * always bound to prepared statements. Run functions execute on the store thread; everything
 * else on the loop thread. */
#include "store/store.h"

#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "store/store_impl.h"

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void store_node_copy(struct store_node *dst, const struct store_node *src)
{
    *dst = *src;
    dst->name = dup_or_null(src->name);
    dst->url = dup_or_null(src->url);
    dst->kind = dup_or_null(src->kind);
    dst->engine = dup_or_null(src->engine);
    dst->admin = dup_or_null(src->admin);
    dst->secret_hash = dup_or_null(src->secret_hash);
    dst->discovery_json = dup_or_null(src->discovery_json);
    dst->inventory_json = dup_or_null(src->inventory_json);
    dst->labels = NULL;
    if (src->n_labels) {
        dst->labels = xcalloc(src->n_labels, sizeof *dst->labels);
        for (size_t i = 0; i < src->n_labels; i++) {
            dst->labels[i].key = dup_or_null(src->labels[i].key);
            dst->labels[i].value = dup_or_null(src->labels[i].value);
        }
    }
}

void store_node_clear(struct store_node *n)
{
    if (!n) return;
    xfree(n->name);
    xfree(n->url);
    xfree(n->kind);
    xfree(n->engine);
    xfree(n->admin);
    xfree(n->secret_hash);
    xfree(n->discovery_json);
    xfree(n->inventory_json);
    for (size_t i = 0; i < n->n_labels; i++) {
        xfree(n->labels[i].key);
        xfree(n->labels[i].value);
    }
    xfree(n->labels);
    memset(n, 0, sizeof *n);
}

void store_nodes_free(struct store_node *v, size_t n)
{
    for (size_t i = 0; i < n; i++) store_node_clear(&v[i]);
    xfree(v);
}

/* ---- store thread --------------------------------------------------------------------- */

static char *column_dup(struct store_stmt *st, int i)
{
    return dup_or_null(store_col_text(st, i));
}

static const char PUT_SQL[] =
    "INSERT INTO nodes (name, url, kind, engine, admin, secret_hash, discovery_json,"
    " inventory_json, excluded, consecutive_faults, ejections, faults_total, created_ms,"
    " updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    " ON CONFLICT (name) DO UPDATE SET url = excluded.url, kind = excluded.kind,"
    " engine = excluded.engine, admin = excluded.admin, secret_hash = excluded.secret_hash,"
    " discovery_json = excluded.discovery_json, inventory_json = excluded.inventory_json,"
    " excluded = excluded.excluded, consecutive_faults = excluded.consecutive_faults,"
    " ejections = excluded.ejections, faults_total = excluded.faults_total,"
    " created_ms = excluded.created_ms, updated_ms = excluded.updated_ms";

/* Several gateways: what one gateway observes (fault record, inventory, discovery) is written
 * without touching what is shared (admin intent, identity, labels), which only admin actions
 * and joins write; a missing row is inserted whole. */
static const char PUT_FACTS_SQL[] =
    "INSERT INTO nodes (name, url, kind, engine, admin, secret_hash, discovery_json,"
    " inventory_json, excluded, consecutive_faults, ejections, faults_total, created_ms,"
    " updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    " ON CONFLICT (name) DO UPDATE SET"
    " discovery_json = excluded.discovery_json, inventory_json = excluded.inventory_json,"
    " excluded = excluded.excluded, consecutive_faults = excluded.consecutive_faults,"
    " ejections = excluded.ejections, faults_total = excluded.faults_total,"
    " updated_ms = excluded.updated_ms";

static int put_row_sql(struct store_db *db, const char *sql, const struct store_node *n,
                       struct gw_error *err);

static int put_row(struct store_db *db, const struct store_node *n, struct gw_error *err)
{
    return put_row_sql(db, PUT_SQL, n, err);
}

static int put_row_sql(struct store_db *db, const char *sql, const struct store_node *n,
                       struct gw_error *err)
{
    if (n->faults_total > (uint64_t)INT64_MAX)
        return gw_error_set(err, GW_E_INVALID, "node %s: faults_total out of range",
                            n->name ? n->name : "?");
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return store_db_error(db, "prepare put node", err);
    store_bind_text(st, 1, n->name);
    store_bind_text(st, 2, n->url);
    store_bind_text(st, 3, n->kind);
    store_bind_text(st, 4, n->engine);
    store_bind_text(st, 5, n->admin);
    store_bind_text(st, 6, n->secret_hash);
    store_bind_text(st, 7, n->discovery_json);
    store_bind_text(st, 8, n->inventory_json);
    store_bind_int64(st, 9, n->excluded ? 1 : 0);
    store_bind_int64(st, 10, (int64_t)n->consecutive_faults);
    store_bind_int64(st, 11, (int64_t)n->ejections);
    store_bind_int64(st, 12, (int64_t)n->faults_total);
    store_bind_int64(st, 13, (int64_t)n->created_ms);
    store_bind_int64(st, 14, (int64_t)n->updated_ms);
    int rc = store_step(st) == STORE_DONE ? 0 : store_db_error(db, "put node", err);
    store_finalize(st);
    return rc;
}

static int put_labels(struct store_db *db, const struct store_node *n, struct gw_error *err)
{
    struct store_stmt *del = NULL, *ins = NULL;
    int rc = 0;
    if (store_prepare(db, "DELETE FROM node_labels WHERE node = ?1", &del) ||
        store_prepare(db, "INSERT INTO node_labels (node, key, value) VALUES (?1, ?2, ?3)", &ins)) {
        rc = store_db_error(db, "prepare labels", err);
        goto out;
    }
    store_bind_text(del, 1, n->name);
    if (store_step(del) != STORE_DONE) {
        rc = store_db_error(db, "delete labels", err);
        goto out;
    }
    store_bind_text(ins, 1, n->name);
    for (size_t i = 0; i < n->n_labels; i++) {
        store_bind_text(ins, 2, n->labels[i].key);
        store_bind_text(ins, 3, n->labels[i].value);
        if (store_step(ins) != STORE_DONE) {
            rc = store_db_error(db, "put label", err);
            goto out;
        }
        store_reset(ins);
    }
out:
    store_finalize(del);
    store_finalize(ins);
    return rc;
}

static int put_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    const struct store_node *n = ctx; /* first member of struct node_job */
    int rc = put_row(db, n, err);
    if (!rc) rc = put_labels(db, n, err);
    return rc;
}

static int put_facts_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    return put_row_sql(db, PUT_FACTS_SQL, ctx, err);
}

static int notify_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    const struct store_node *n = ctx; /* name holds the payload */
    if (store_db_engine(db) != STORE_ENGINE_POSTGRES) return 0;
    struct store_stmt *st = NULL;
    if (store_prepare(db, "SELECT pg_notify('drover', ?1)", &st))
        return store_db_error(db, "prepare notify", err);
    store_bind_text(st, 1, n->name);
    int rc = store_step(st);
    store_finalize(st);
    return rc == STORE_ROW || rc == STORE_DONE ? 0 : store_db_error(db, "notify", err);
}

static int delete_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    const struct store_node *n = ctx;
    struct store_stmt *st = NULL;
    if (store_prepare(db, "DELETE FROM nodes WHERE name = ?1", &st))
        return store_db_error(db, "prepare delete node", err);
    store_bind_text(st, 1, n->name);
    /* node_labels goes with it: ON DELETE CASCADE, foreign_keys=ON. */
    int rc = store_step(st) == STORE_DONE ? 0 : store_db_error(db, "delete node", err);
    store_finalize(st);
    return rc;
}

struct load_ctx {
    struct store_node *v;
    size_t n, cap;
    const char *name; /* NULL: every row */
};

static int load_labels(struct store_stmt *st, struct store_node *n)
{
    store_reset(st);
    store_bind_text(st, 1, n->name);
    size_t cap = 0;
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        if (n->n_labels == cap) {
            cap = cap ? 2 * cap : 4;
            n->labels = xrealloc(n->labels, cap * sizeof *n->labels);
        }
        n->labels[n->n_labels].key = column_dup(st, 0);
        n->labels[n->n_labels].value = column_dup(st, 1);
        n->n_labels++;
    }
    return rc == STORE_DONE ? 0 : -1;
}

static int load_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct load_ctx *l = ctx;
    struct store_stmt *st = NULL, *lst = NULL;
    int rc = 0;
    if (store_prepare(db,
                      "SELECT name, url, kind, engine, admin, secret_hash, discovery_json,"
                      " inventory_json, excluded, consecutive_faults, ejections,"
                      " faults_total, created_ms, updated_ms FROM nodes"
                      " WHERE CAST(?1 AS TEXT) IS NULL OR name = CAST(?1 AS TEXT) ORDER BY name",
                      &st) ||
        store_prepare(db, "SELECT key, value FROM node_labels WHERE node = ?1 ORDER BY key",
                      &lst)) {
        rc = store_db_error(db, "prepare load nodes", err);
        goto out;
    }
    store_bind_text(st, 1, l->name);
    int src;
    while ((src = store_step(st)) == STORE_ROW) {
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 8;
            l->v = xrealloc(l->v, l->cap * sizeof *l->v);
        }
        struct store_node *n = &l->v[l->n++];
        memset(n, 0, sizeof *n);
        n->name = column_dup(st, 0);
        n->url = column_dup(st, 1);
        n->kind = column_dup(st, 2);
        n->engine = column_dup(st, 3);
        n->admin = column_dup(st, 4);
        n->secret_hash = column_dup(st, 5);
        n->discovery_json = column_dup(st, 6);
        n->inventory_json = column_dup(st, 7);
        n->excluded = store_col_int64(st, 8) != 0;
        n->consecutive_faults = (unsigned)store_col_int64(st, 9);
        n->ejections = (unsigned)store_col_int64(st, 10);
        n->faults_total = (uint64_t)store_col_int64(st, 11);
        n->created_ms = store_col_int64(st, 12);
        n->updated_ms = store_col_int64(st, 13);
        if (!n->name || load_labels(lst, n) != 0) {
            rc = store_db_error(db, "load node labels", err);
            goto out;
        }
    }
    if (src != STORE_DONE) rc = store_db_error(db, "load nodes", err);
out:
    store_finalize(st);
    store_finalize(lst);
    return rc;
}

int store_nodes_read(struct store_db *db, const char *name, struct store_node **out, size_t *n,
                     struct gw_error *err)
{
    struct load_ctx l = {.name = name};
    *out = NULL;
    *n = 0;
    int rc = load_run(db, &l, err);
    if (rc) {
        store_nodes_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

/* ---- loop thread ---------------------------------------------------------------------- */

int store_load_nodes(struct store *s, struct store_node **out, size_t *n, struct gw_error *err)
{
    struct load_ctx l = {0};
    *out = NULL;
    *n = 0;
    int rc = store_sync(s, load_run, &l, err);
    if (rc) {
        store_nodes_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

struct node_job {
    struct store_node node; /* first: the run functions see a struct store_node */
    store_done_fn done;
    void *ctx;
    const char *what;
};

static void node_job_done(void *ctx, int rc, const char *errmsg)
{
    struct node_job *j = ctx;
    if (j->done) {
        j->done(j->ctx, rc, errmsg);
    } else if (rc) {
        char qn[128], qe[GW_ERROR_MSG_BYTES + 8];
        const char *name = j->node.name ? j->node.name : "";
        LOGE("store_node_failed", "op=%s node=%s err=%s", j->what,
             log_quote(qn, sizeof qn, name, strlen(name)),
             log_quote(qe, sizeof qe, errmsg, strlen(errmsg)));
    }
    store_node_clear(&j->node);
    xfree(j);
}

void store_put_node(struct store *s, const struct store_node *n, store_done_fn done, void *ctx)
{
    struct node_job *j = xcalloc(1, sizeof *j);
    store_node_copy(&j->node, n);
    j->done = done;
    j->ctx = ctx;
    j->what = "put";
    store_submit(s, put_run, node_job_done, j);
}

void store_put_node_facts(struct store *s, const struct store_node *n, store_done_fn done,
                          void *ctx)
{
    struct node_job *j = xcalloc(1, sizeof *j);
    store_node_copy(&j->node, n);
    j->done = done;
    j->ctx = ctx;
    j->what = "put_facts";
    store_submit(s, put_facts_run, node_job_done, j);
}

void store_notify(struct store *s, const char *payload)
{
    struct node_job *j = xcalloc(1, sizeof *j);
    j->node.name = dup_or_null(payload);
    j->what = "notify";
    store_submit(s, notify_run, node_job_done, j);
}

void store_delete_node(struct store *s, const char *name, store_done_fn done, void *ctx)
{
    struct node_job *j = xcalloc(1, sizeof *j);
    j->node.name = dup_or_null(name);
    j->done = done;
    j->ctx = ctx;
    j->what = "delete";
    store_submit(s, delete_run, node_job_done, j);
}
