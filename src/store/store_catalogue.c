/* store_catalogue — SQL for the catalogue rows. Values are bound, never formatted. */
#include "store/store_catalogue.h"

#include <string.h>

#include "base/clock.h"
#include "base/mem.h"
#include "store/store_db.h"

const char store_catalogue_schema_sql[] = "CREATE TABLE catalogue ("
                                          " id TEXT PRIMARY KEY NOT NULL CHECK (length(id) > 0),"
                                          " body TEXT NOT NULL CHECK (json_valid(body)),"
                                          " updated_ms INTEGER NOT NULL);";

/* The cast raises 22P02 (invalid_text_representation) for a body that is not JSON, which
 * store_step reports as GW_E_INVALID, as SQLite's CHECK (json_valid(body)) is. */
const char store_catalogue_schema_pg_sql[] = "CREATE TABLE catalogue ("
                                             " id TEXT COLLATE \"C\" PRIMARY KEY NOT NULL"
                                             " CHECK (length(id) > 0),"
                                             " body TEXT NOT NULL CHECK (body::jsonb IS NOT NULL),"
                                             " updated_ms BIGINT NOT NULL);";

struct cat_load {
    struct store_cat_row *v;
    size_t n, cap;
    const char *id; /* NULL: every row */
};

static int run_load(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct cat_load *l = ctx;
    struct store_stmt *st = NULL;
    if (store_prepare(db,
                      "SELECT id, body FROM catalogue WHERE CAST(?1 AS TEXT) IS NULL OR id = "
                      "CAST(?1 AS TEXT) ORDER BY id",
                      &st))
        return store_db_error(db, "load catalogue", err);
    store_bind_text(st, 1, l->id);
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 16;
            l->v = xrealloc(l->v, l->cap * sizeof *l->v);
        }
        l->v[l->n].id = xstrdup(store_col_text(st, 0));
        l->v[l->n].json = xstrdup(store_col_text(st, 1));
        l->n++;
    }
    store_finalize(st);
    if (rc != STORE_DONE) return store_db_error(db, "load catalogue", err);
    return 0;
}

void store_catalogue_free(struct store_cat_row *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xfree(v[i].id);
        xfree(v[i].json);
    }
    xfree(v);
}

int store_catalogue_read(struct store_db *db, const char *id, struct store_cat_row **out, size_t *n,
                         struct gw_error *err)
{
    struct cat_load l = {.id = id};
    *out = NULL;
    *n = 0;
    int rc = run_load(db, &l, err);
    if (rc) {
        store_catalogue_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

int store_load_catalogue(struct store *s, struct store_cat_row **out, size_t *n,
                         struct gw_error *err)
{
    struct cat_load l = {0};
    int rc = store_sync(s, run_load, &l, err);
    if (rc) {
        store_catalogue_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

struct cat_job {
    char *id, *json; /* json NULL: delete */
    store_done_fn done;
    void *ctx;
};

static int run_write(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct cat_job *j = ctx;
    struct store_stmt *st = NULL;
    const char *sql = j->json ? "INSERT INTO catalogue(id, body, updated_ms) VALUES(?1, ?2, ?3) "
                                "ON CONFLICT(id) DO UPDATE SET body = ?2, updated_ms = ?3"
                              : "DELETE FROM catalogue WHERE id = ?1";
    if (store_prepare(db, sql, &st)) return store_db_error(db, "write catalogue", err);
    store_bind_text(st, 1, j->id);
    if (j->json) {
        store_bind_text(st, 2, j->json);
        store_bind_int64(st, 3, (int64_t)clock_wall_ms());
    }
    int rc = store_step(st);
    store_finalize(st);
    if (rc != STORE_DONE) return store_db_error(db, "write catalogue", err);
    return 0;
}

static void write_done(void *ctx, int rc, const char *msg)
{
    struct cat_job *j = ctx;
    if (j->done) j->done(j->ctx, rc, msg);
    xfree(j->id);
    xfree(j->json);
    xfree(j);
}

static void submit(struct store *s, const char *id, const char *json, store_done_fn done, void *ctx)
{
    struct cat_job *j = xcalloc(1, sizeof *j);
    j->id = xstrdup(id);
    j->json = json ? xstrdup(json) : NULL;
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_write, write_done, j);
}

void store_put_catalogue(struct store *s, const char *id, const char *json, store_done_fn done,
                         void *ctx)
{
    submit(s, id, json, done, ctx);
}

void store_delete_catalogue(struct store *s, const char *id, store_done_fn done, void *ctx)
{
    submit(s, id, NULL, done, ctx);
}
