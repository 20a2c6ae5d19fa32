/* store_ops — SQL for the operation rows and dead letters, run on the store thread through
 * store_submit/store_sync. Values are always bound, never formatted into SQL. */
#include "store/store_ops.h"

#include <string.h>

#include "base/mem.h"
#include "store/store_db.h"

const char store_ops_schema_sql[] =
    "CREATE TABLE ops ("
    " id INTEGER PRIMARY KEY,"
    " node TEXT NOT NULL,"
    " target TEXT NOT NULL,"
    " op TEXT NOT NULL CHECK (op IN ('install','upgrade','delete','load','unload')),"
    " params TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('pending','running','done')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_try_ms INTEGER NOT NULL DEFAULT 0,"
    " last_error TEXT, last_class TEXT,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    " UNIQUE (node, target, op));"
    "CREATE TABLE ops_dead ("
    " id INTEGER PRIMARY KEY,"
    " node TEXT NOT NULL, target TEXT NOT NULL, op TEXT NOT NULL, params TEXT,"
    " attempts INTEGER NOT NULL, last_error TEXT, last_class TEXT,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, dead_ms INTEGER NOT NULL);";

const char store_ops_schema_pg_sql[] =
    "CREATE TABLE ops ("
    " id BIGINT PRIMARY KEY,"
    " node TEXT COLLATE \"C\" NOT NULL,"
    " target TEXT COLLATE \"C\" NOT NULL,"
    " op TEXT NOT NULL CHECK (op IN ('install','upgrade','delete','load','unload')),"
    " params TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('pending','running','done')),"
    " attempts BIGINT NOT NULL DEFAULT 0,"
    " next_try_ms BIGINT NOT NULL DEFAULT 0,"
    " last_error TEXT, last_class TEXT,"
    " created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,"
    " UNIQUE (node, target, op));"
    "CREATE TABLE ops_dead ("
    " id BIGINT PRIMARY KEY,"
    " node TEXT NOT NULL, target TEXT NOT NULL, op TEXT NOT NULL, params TEXT,"
    " attempts BIGINT NOT NULL, last_error TEXT, last_class TEXT,"
    " created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, dead_ms BIGINT NOT NULL);";

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void store_op_copy(struct store_op *dst, const struct store_op *src)
{
    *dst = *src;
    dst->node = dup_or_null(src->node);
    dst->target = dup_or_null(src->target);
    dst->op = dup_or_null(src->op);
    dst->params_json = dup_or_null(src->params_json);
    dst->state = dup_or_null(src->state);
    dst->last_error = dup_or_null(src->last_error);
    dst->last_class = dup_or_null(src->last_class);
}

void store_op_clear(struct store_op *o)
{
    xfree(o->node);
    xfree(o->target);
    xfree(o->op);
    xfree(o->params_json);
    xfree(o->state);
    xfree(o->last_error);
    xfree(o->last_class);
    memset(o, 0, sizeof *o);
}

void store_ops_free(struct store_op *v, size_t n)
{
    for (size_t i = 0; i < n; i++) store_op_clear(&v[i]);
    xfree(v);
}

/* Keeps the engine's class (GW_E_INVALID, STORE_E_UNAVAILABLE); anything else is GW_E_STATE,
 * as the gateway's operations code expects. */
static int sql_fail(struct store_db *db, struct gw_error *err, const char *what)
{
    int rc = store_db_error(db, what, err);
    if (rc != GW_E_INVALID && rc != STORE_E_UNAVAILABLE) err->code = rc = GW_E_STATE;
    return rc;
}

/* ---- load ------------------------------------------------------------------------------ */

struct load_job {
    bool dead;
    int64_t id; /* > 0: that row only */
    struct store_op *v;
    size_t n, cap;
};

static int run_load(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct load_job *j = ctx;
    const char *sql = j->dead
                          ? "SELECT id,node,target,op,params,NULL,attempts,0,last_error,last_class,"
                            "created_ms,updated_ms,dead_ms,0 FROM ops_dead"
                            " WHERE CAST(?1 AS BIGINT) <= 0 OR id = CAST(?1 AS BIGINT) ORDER BY id"
                          : "SELECT id,node,target,op,params,state,attempts,next_try_ms,last_error,"
                            "last_class,created_ms,updated_ms,0,lease_until_ms FROM ops"
                            " WHERE CAST(?1 AS BIGINT) <= 0 OR id = CAST(?1 AS BIGINT) ORDER BY id";
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return sql_fail(db, err, "load ops");
    store_bind_int64(st, 1, j->id);
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        if (j->n == j->cap) {
            j->cap = j->cap ? j->cap * 2 : 16;
            j->v = xrealloc(j->v, j->cap * sizeof *j->v);
        }
        struct store_op *o = &j->v[j->n++];
        memset(o, 0, sizeof *o);
        o->id = store_col_int64(st, 0);
        o->node = dup_or_null(store_col_text(st, 1));
        o->target = dup_or_null(store_col_text(st, 2));
        o->op = dup_or_null(store_col_text(st, 3));
        o->params_json = dup_or_null(store_col_text(st, 4));
        o->state = dup_or_null(store_col_text(st, 5));
        o->attempts = (unsigned)store_col_int64(st, 6);
        o->next_try_ms = store_col_int64(st, 7);
        o->last_error = dup_or_null(store_col_text(st, 8));
        o->last_class = dup_or_null(store_col_text(st, 9));
        o->created_ms = store_col_int64(st, 10);
        o->updated_ms = store_col_int64(st, 11);
        o->dead_ms = store_col_int64(st, 12);
        o->lease_until_ms = store_col_int64(st, 13);
    }
    store_finalize(st);
    if (rc != STORE_DONE) return sql_fail(db, err, "load ops");
    return 0;
}

int store_ops_read(struct store_db *db, bool dead, int64_t id, struct store_op **out, size_t *n,
                   struct gw_error *err)
{
    struct load_job j = {.dead = dead, .id = id};
    int rc = run_load(db, &j, err);
    if (rc) {
        store_ops_free(j.v, j.n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = j.v;
    *n = j.n;
    return 0;
}

int store_load_ops(struct store *s, bool dead, struct store_op **out, size_t *n,
                   struct gw_error *err)
{
    struct load_job j = {.dead = dead};
    int rc = store_sync(s, run_load, &j, err);
    if (rc) {
        store_ops_free(j.v, j.n);
        return rc;
    }
    *out = j.v;
    *n = j.n;
    return 0;
}

/* ---- writes ---------------------------------------------------------------------------- */

struct write_job {
    struct store_op op;
    int64_t other_id;
    store_done_fn done;
    void *ctx;
};

static int put_row(struct store_db *db, const struct store_op *o, struct gw_error *err)
{
    static const char sql[] =
        "INSERT INTO ops(id,node,target,op,params,state,attempts,next_try_ms,last_error,"
        "last_class,created_ms,updated_ms) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12) "
        "ON CONFLICT(id) DO UPDATE SET node=?2,target=?3,op=?4,params=?5,state=?6,"
        "attempts=?7,next_try_ms=?8,last_error=?9,last_class=?10,updated_ms=?12";
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return sql_fail(db, err, "put op");
    store_bind_int64(st, 1, o->id);
    store_bind_text(st, 2, o->node);
    store_bind_text(st, 3, o->target);
    store_bind_text(st, 4, o->op);
    store_bind_text(st, 5, o->params_json);
    store_bind_text(st, 6, o->state ? o->state : "pending");
    store_bind_int64(st, 7, o->attempts);
    store_bind_int64(st, 8, o->next_try_ms);
    store_bind_text(st, 9, o->last_error);
    store_bind_text(st, 10, o->last_class);
    store_bind_int64(st, 11, o->created_ms);
    store_bind_int64(st, 12, o->updated_ms);
    int rc = store_step(st);
    store_finalize(st);
    return rc == STORE_DONE ? 0 : sql_fail(db, err, "put op");
}

static int delete_row(struct store_db *db, const char *table, int64_t id, struct gw_error *err)
{
    struct store_stmt *st = NULL;
    const char *sql = strcmp(table, "ops") == 0 ? "DELETE FROM ops WHERE id=?1"
                                                : "DELETE FROM ops_dead WHERE id=?1";
    if (store_prepare(db, sql, &st)) return sql_fail(db, err, "delete op");
    store_bind_int64(st, 1, id);
    int rc = store_step(st);
    store_finalize(st);
    return rc == STORE_DONE ? 0 : sql_fail(db, err, "delete op");
}

static int run_put(struct store_db *db, void *ctx, struct gw_error *err)
{
    return put_row(db, &((struct write_job *)ctx)->op, err);
}

static int run_delete(struct store_db *db, void *ctx, struct gw_error *err)
{
    return delete_row(db, "ops", ((struct write_job *)ctx)->op.id, err);
}

static int run_delete_dead(struct store_db *db, void *ctx, struct gw_error *err)
{
    return delete_row(db, "ops_dead", ((struct write_job *)ctx)->op.id, err);
}

static int run_bury_row(struct store_db *db, const struct store_op *o, struct gw_error *err)
{
    static const char sql[] =
        "INSERT INTO ops_dead(id,node,target,op,params,attempts,last_error,"
        "last_class,created_ms,updated_ms,dead_ms) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11) "
        "ON CONFLICT(id) DO UPDATE SET node=?2,target=?3,op=?4,params=?5,attempts=?6,"
        "last_error=?7,last_class=?8,created_ms=?9,updated_ms=?10,dead_ms=?11";
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return sql_fail(db, err, "bury op");
    store_bind_int64(st, 1, o->id);
    store_bind_text(st, 2, o->node);
    store_bind_text(st, 3, o->target);
    store_bind_text(st, 4, o->op);
    store_bind_text(st, 5, o->params_json);
    store_bind_int64(st, 6, o->attempts);
    store_bind_text(st, 7, o->last_error);
    store_bind_text(st, 8, o->last_class);
    store_bind_int64(st, 9, o->created_ms);
    store_bind_int64(st, 10, o->updated_ms);
    store_bind_int64(st, 11, o->dead_ms);
    int rc = store_step(st);
    store_finalize(st);
    return rc != STORE_DONE ? sql_fail(db, err, "bury op") : 0;
}

static int run_bury(struct store_db *db, void *ctx, struct gw_error *err)
{
    const struct store_op *o = &((struct write_job *)ctx)->op;
    int rc = run_bury_row(db, o, err);
    return rc ? rc : delete_row(db, "ops", o->id, err);
}

static int run_raise(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct write_job *j = ctx;
    int rc = delete_row(db, "ops_dead", j->other_id, err);
    return rc ? rc : put_row(db, &j->op, err);
}

static void write_done(void *ctx, int rc, const char *msg)
{
    struct write_job *j = ctx;
    if (j->done) j->done(j->ctx, rc, msg);
    store_op_clear(&j->op);
    xfree(j);
}

struct finish_job;
static void finish_done(void *ctx, int rc, const char *msg);

static void submit(struct store *s, store_run_fn run, const struct store_op *o, int64_t other,
                   store_done_fn done, void *ctx)
{
    struct write_job *j = xcalloc(1, sizeof *j);
    store_op_copy(&j->op, o);
    j->other_id = other;
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run, write_done, j);
}

void store_put_op(struct store *s, const struct store_op *o, store_done_fn done, void *ctx)
{
    submit(s, run_put, o, 0, done, ctx);
}

void store_delete_op(struct store *s, int64_t id, store_done_fn done, void *ctx)
{
    struct store_op o = {.id = id};
    submit(s, run_delete, &o, 0, done, ctx);
}

void store_delete_dead_op(struct store *s, int64_t id, store_done_fn done, void *ctx)
{
    struct store_op o = {.id = id};
    submit(s, run_delete_dead, &o, 0, done, ctx);
}

void store_bury_op(struct store *s, const struct store_op *o, store_done_fn done, void *ctx)
{
    submit(s, run_bury, o, 0, done, ctx);
}

void store_raise_op(struct store *s, int64_t dead_id, const struct store_op *o, store_done_fn done,
                    void *ctx)
{
    submit(s, run_raise, o, dead_id, done, ctx);
}

/* ---- several gateways --------------------------------------------------------------------- */

static int run_id_block(struct store_db *db, void *ctx, struct gw_error *err)
{
    int64_t *first = ctx;
    *first = 0;
    if (store_db_engine(db) != STORE_ENGINE_POSTGRES) return 0;
    struct store_stmt *st = NULL;
    if (store_prepare(db, "SELECT nextval('ops_id_block')", &st))
        return sql_fail(db, err, "ops id block");
    int rc = store_step(st);
    if (rc == STORE_ROW) *first = store_col_int64(st, 0) * (int64_t)STORE_OPS_ID_BLOCK;
    store_finalize(st);
    return rc == STORE_ROW ? 0 : sql_fail(db, err, "ops id block");
}

int store_ops_id_block(struct store *s, int64_t *first, struct gw_error *err)
{
    return store_sync(s, run_id_block, first, err);
}

/* the database's clock, in unix ms: leases never depend on the gateways' clocks agreeing */
#define DB_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

struct claim_job {
    int64_t id, now_ms, lease_ms;
    char *owner;
    bool claimed;
    struct store_op row;
    store_claim_fn *done;
    void *ctx;
};

static int run_claim(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct claim_job *j = ctx;
    static const char sql[] =
        "UPDATE ops SET state = 'running', lease_owner = ?2, lease_until_ms = " DB_NOW_MS
        " + ?3 WHERE id = (SELECT id FROM ops WHERE id = ?1 AND ((state = 'pending' AND"
        " next_try_ms <= ?4) OR (state = 'running' AND lease_until_ms < " DB_NOW_MS "))"
        " FOR UPDATE SKIP LOCKED)"
        " RETURNING id,node,target,op,params,state,attempts,next_try_ms,last_error,last_class,"
        "created_ms,updated_ms,lease_until_ms";
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return sql_fail(db, err, "claim op");
    store_bind_int64(st, 1, j->id);
    store_bind_text(st, 2, j->owner);
    store_bind_int64(st, 3, j->lease_ms);
    store_bind_int64(st, 4, j->now_ms);
    int rc = store_step(st);
    if (rc == STORE_ROW) {
        struct store_op *o = &j->row;
        j->claimed = true;
        o->id = store_col_int64(st, 0);
        o->node = dup_or_null(store_col_text(st, 1));
        o->target = dup_or_null(store_col_text(st, 2));
        o->op = dup_or_null(store_col_text(st, 3));
        o->params_json = dup_or_null(store_col_text(st, 4));
        o->state = dup_or_null(store_col_text(st, 5));
        o->attempts = (unsigned)store_col_int64(st, 6);
        o->next_try_ms = store_col_int64(st, 7);
        o->last_error = dup_or_null(store_col_text(st, 8));
        o->last_class = dup_or_null(store_col_text(st, 9));
        o->created_ms = store_col_int64(st, 10);
        o->updated_ms = store_col_int64(st, 11);
        o->lease_until_ms = store_col_int64(st, 12);
    }
    store_finalize(st);
    if (rc == STORE_DONE) {
        /* not ours: the row as it stands, so the caller's copy is not left behind */
        struct store_op *v = NULL;
        size_t n = 0;
        int rrc = store_ops_read(db, false, j->id, &v, &n, err);
        if (rrc) return rrc;
        if (n) {
            j->row = v[0];
            memset(&v[0], 0, sizeof v[0]);
        }
        store_ops_free(v, n);
        return 0;
    }
    return rc == STORE_ROW ? 0 : sql_fail(db, err, "claim op");
}

static void claim_done(void *ctx, int rc, const char *msg)
{
    (void)msg;
    struct claim_job *j = ctx;
    j->done(j->ctx, rc, rc ? false : j->claimed, rc || !j->row.id ? NULL : &j->row);
    store_op_clear(&j->row);
    xfree(j->owner);
    xfree(j);
}

void store_claim_op(struct store *s, int64_t id, const char *owner, int64_t now_ms,
                    int64_t lease_ms, store_claim_fn *done, void *ctx)
{
    struct claim_job *j = xcalloc(1, sizeof *j);
    j->id = id;
    j->owner = xstrdup(owner);
    j->now_ms = now_ms;
    j->lease_ms = lease_ms;
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_claim, claim_done, j);
}

struct finish_job {
    struct write_job w; /* first: write_done frees it */
    char *owner;
    bool bury;
};

static int run_finish(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct finish_job *j = ctx;
    const struct store_op *o = &j->w.op;
    static const char upd[] =
        "UPDATE ops SET state = ?3, attempts = ?4, next_try_ms = ?5, last_error = ?6,"
        " last_class = ?7, updated_ms = ?8, lease_owner = NULL, lease_until_ms = 0"
        " WHERE id = ?1 AND lease_owner = ?2 RETURNING id";
    static const char del[] = "DELETE FROM ops WHERE id = ?1 AND lease_owner = ?2 RETURNING id";
    struct store_stmt *st = NULL;
    if (store_prepare(db, j->bury ? del : upd, &st)) return sql_fail(db, err, "finish op");
    store_bind_int64(st, 1, o->id);
    store_bind_text(st, 2, j->owner);
    if (!j->bury) {
        store_bind_text(st, 3, o->state ? o->state : "pending");
        store_bind_int64(st, 4, o->attempts);
        store_bind_int64(st, 5, o->next_try_ms);
        store_bind_text(st, 6, o->last_error);
        store_bind_text(st, 7, o->last_class);
        store_bind_int64(st, 8, o->updated_ms);
    }
    int rc = store_step(st);
    store_finalize(st);
    if (rc == STORE_DONE)
        return gw_error_set(err, GW_E_STATE,
                            "op %lld: the lease was lost (another gateway took it)",
                            (long long)o->id);
    if (rc != STORE_ROW) return sql_fail(db, err, "finish op");
    return j->bury ? run_bury_row(db, o, err) : 0;
}

void store_finish_op(struct store *s, const struct store_op *o, const char *owner, bool bury,
                     store_done_fn done, void *ctx)
{
    struct finish_job *j = xcalloc(1, sizeof *j);
    store_op_copy(&j->w.op, o);
    j->w.done = done;
    j->w.ctx = ctx;
    j->owner = xstrdup(owner);
    j->bury = bury;
    store_submit(s, run_finish, finish_done, j);
}

struct renew_job {
    int64_t id, lease_ms;
    char *owner;
    store_done_fn done;
    void *ctx;
};

static int run_renew(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct renew_job *j = ctx;
    static const char sql[] = "UPDATE ops SET lease_until_ms = " DB_NOW_MS " + ?3"
                              " WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'"
                              " RETURNING id";
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return sql_fail(db, err, "renew op lease");
    store_bind_int64(st, 1, j->id);
    store_bind_text(st, 2, j->owner);
    store_bind_int64(st, 3, j->lease_ms);
    int rc = store_step(st);
    store_finalize(st);
    if (rc == STORE_DONE)
        return gw_error_set(err, GW_E_STATE,
                            "op %lld: the lease was lost (another gateway took it)",
                            (long long)j->id);
    return rc == STORE_ROW ? 0 : sql_fail(db, err, "renew op lease");
}

static void renew_done(void *ctx, int rc, const char *msg)
{
    struct renew_job *j = ctx;
    if (j->done) j->done(j->ctx, rc, msg);
    xfree(j->owner);
    xfree(j);
}

void store_renew_op(struct store *s, int64_t id, const char *owner, int64_t lease_ms,
                    store_done_fn done, void *ctx)
{
    struct renew_job *j = xcalloc(1, sizeof *j);
    j->id = id;
    j->owner = xstrdup(owner);
    j->lease_ms = lease_ms;
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_renew, renew_done, j);
}

static void finish_done(void *ctx, int rc, const char *msg)
{
    struct finish_job *j = ctx;
    xfree(j->owner);
    write_done(&j->w, rc, msg); /* frees j (w is its first member) */
}
