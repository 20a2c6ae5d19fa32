/* store_copy — a generic copy, table by table: every column of `SELECT *` read as text (or
 * NULL) on the source's thread, written with one prepared INSERT per table on the
 * destination's thread, where the engine converts text to the column's type. Generic so that
 * a new table needs one line in store_copy_tables, not new code. */
#include "store/store_copy.h"

#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "store/store_db.h"

const char *const store_copy_tables[] = {
    "nodes",         "node_labels", "catalogue",  "ops",          "ops_dead", "client_keys",
    "usage_minutes", "audit_log",   "key_limits", "key_counters", NULL,
};

struct table_dump {
    const char *table;
    int n_cols;
    char **cols;  /* names */
    char **cells; /* n_rows × n_cols, NULL for SQL NULL */
    size_t n_rows, cap;
};

struct copy_ctx {
    struct table_dump *t;
    size_t n_tables;
};

static int read_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct copy_ctx *c = ctx;
    for (size_t k = 0; k < c->n_tables; k++) {
        struct table_dump *t = &c->t[k];
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT * FROM %s", t->table); /* a constant name */
        struct store_stmt *st = NULL;
        if (store_prepare(db, sql, &st)) return store_db_error(db, t->table, err);
        int rc;
        while ((rc = store_step(st)) == STORE_ROW) {
            if (!t->cols) {
                t->n_cols = store_col_count(st);
                t->cols = xcalloc((size_t)t->n_cols, sizeof *t->cols);
                for (int i = 0; i < t->n_cols; i++) t->cols[i] = xstrdup(store_col_name(st, i));
            }
            if (t->n_rows == t->cap) {
                t->cap = t->cap ? 2 * t->cap : 64;
                t->cells = xrealloc(t->cells, t->cap * (size_t)t->n_cols * sizeof *t->cells);
            }
            char **row = &t->cells[t->n_rows * (size_t)t->n_cols];
            for (int i = 0; i < t->n_cols; i++) {
                const char *v = store_col_text(st, i);
                row[i] = v ? xstrdup(v) : NULL;
            }
            t->n_rows++;
        }
        store_finalize(st);
        if (rc != STORE_DONE) return store_db_error(db, t->table, err);
    }
    return 0;
}

static int count_rows(struct store_db *db, const char *table, long long *n, struct gw_error *err)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return store_db_error(db, table, err);
    int rc = store_step(st);
    *n = rc == STORE_ROW ? store_col_int64(st, 0) : 0;
    rc = rc == STORE_ROW ? 0 : store_db_error(db, table, err);
    store_finalize(st);
    return rc;
}

static int write_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct copy_ctx *c = ctx;
    for (size_t k = 0; k < c->n_tables; k++) {
        long long n = 0;
        int rc = count_rows(db, c->t[k].table, &n, err);
        if (rc) return rc;
        if (n)
            return gw_error_set(err, GW_E_STATE,
                                "the destination is not empty (%s has %lld rows): nothing copied",
                                c->t[k].table, n);
    }
    for (size_t k = 0; k < c->n_tables; k++) {
        struct table_dump *t = &c->t[k];
        if (!t->n_rows) continue;
        struct buf b;
        buf_init(&b, 4096);
        int rc = buf_appendf(&b, "INSERT INTO %s (", t->table);
        for (int i = 0; i < t->n_cols && !rc; i++)
            rc = buf_appendf(&b, "%s%s", i ? ", " : "", t->cols[i]);
        if (!rc) rc = buf_append_cstr(&b, ") VALUES (");
        for (int i = 0; i < t->n_cols && !rc; i++)
            rc = buf_appendf(&b, "%s?%d", i ? ", " : "", i + 1);
        if (!rc) rc = buf_append_cstr(&b, ")");
        struct store_stmt *st = NULL;
        if (rc) {
            buf_free(&b);
            return gw_error_set(err, GW_E_LIMIT, "%s: too many columns", t->table);
        }
        rc = store_prepare(db, b.p, &st) /* buf keeps a NUL after len */;
        buf_free(&b);
        if (rc) return store_db_error(db, t->table, err);
        for (size_t r = 0; r < t->n_rows && !rc; r++) {
            char **row = &t->cells[r * (size_t)t->n_cols];
            for (int i = 0; i < t->n_cols; i++) store_bind_text(st, i + 1, row[i]);
            rc = store_step(st) == STORE_DONE ? 0 : store_db_error(db, t->table, err);
            store_reset(st);
        }
        store_finalize(st);
        if (rc) return rc;
    }
    /* the copied audit rows kept their ids: the sequence that numbers new ones goes past them */
    if (store_db_engine(db) == STORE_ENGINE_POSTGRES &&
        store_exec(db, "SELECT setval('audit_log_id_seq',"
                       " coalesce((SELECT max(id) FROM audit_log), 0) + 1, false)"))
        return store_db_error(db, "audit_log_id_seq", err);
    return 0;
}

static void dump_free(struct copy_ctx *c)
{
    for (size_t k = 0; k < c->n_tables; k++) {
        struct table_dump *t = &c->t[k];
        for (size_t i = 0; i < t->n_rows * (size_t)t->n_cols; i++) xfree(t->cells[i]);
        xfree(t->cells);
        for (int i = 0; i < t->n_cols; i++) xfree(t->cols[i]);
        xfree(t->cols);
    }
    xfree(c->t);
}

int store_copy(struct store *src, struct store *dst, size_t *counts, struct gw_error *err)
{
    struct copy_ctx c = {0};
    while (store_copy_tables[c.n_tables]) c.n_tables++;
    c.t = xcalloc(c.n_tables, sizeof *c.t);
    for (size_t k = 0; k < c.n_tables; k++) c.t[k].table = store_copy_tables[k];
    int rc = store_sync(src, read_run, &c, err);
    if (!rc) rc = store_sync(dst, write_run, &c, err);
    if (!rc && counts)
        for (size_t k = 0; k < c.n_tables; k++) counts[k] = c.t[k].n_rows;
    dump_free(&c);
    return rc;
}
