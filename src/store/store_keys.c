/* store_keys — SQL for client keys, usage minutes and the audit log (store_keys.h). Values are
 * always bound, never formatted into SQL. Store thread (run_*), loop thread (the rest). */
#include "store/store_keys.h"

#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/mem.h"
#include "store/store_db.h"

const char store_keys_schema_sql[] =
    "CREATE TABLE client_keys ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) > 0),"
    "  secret_hash TEXT NOT NULL UNIQUE CHECK"
    "    (length(secret_hash) = 64 AND secret_hash NOT GLOB '*[^0-9a-f]*'),"
    "  prefix TEXT NOT NULL,"
    "  spec TEXT NOT NULL CHECK (json_valid(spec)),"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  revoked_ms INTEGER NOT NULL DEFAULT 0"
    ") STRICT;"
    "CREATE TABLE usage_minutes ("
    "  minute INTEGER NOT NULL,"
    "  key_id TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  node TEXT NOT NULL,"
    "  requests INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),"
    "  errors INTEGER NOT NULL DEFAULT 0 CHECK (errors >= 0),"
    "  prompt_tokens INTEGER NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),"
    "  completion_tokens INTEGER NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),"
    "  PRIMARY KEY (minute, key_id, model, node)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX usage_minutes_key ON usage_minutes (key_id, minute);"
    "CREATE TABLE audit_log ("
    "  id INTEGER PRIMARY KEY,"
    "  at_ms INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  peer TEXT NOT NULL,"
    "  method TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  summary TEXT NOT NULL"
    ") STRICT;";

/* The same on PostgreSQL: BIGINT integers, a regex for the hash, a jsonb cast for the spec,
 * the C collation on keys (bytewise ORDER BY, as SQLite). Audit ids are max + 1, given by the
 * insert itself on both engines (no sequence: `drover store migrate` copies rows as they are). */
const char store_keys_schema_pg_sql[] =
    "CREATE TABLE client_keys ("
    "  id TEXT COLLATE \"C\" PRIMARY KEY NOT NULL CHECK (length(id) > 0),"
    "  secret_hash TEXT NOT NULL UNIQUE CHECK (secret_hash ~ '^[0-9a-f]{64}$'),"
    "  prefix TEXT NOT NULL,"
    "  spec TEXT NOT NULL CHECK (spec::jsonb IS NOT NULL),"
    "  created_ms BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL,"
    "  revoked_ms BIGINT NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE usage_minutes ("
    "  minute BIGINT NOT NULL,"
    "  key_id TEXT COLLATE \"C\" NOT NULL,"
    "  model TEXT COLLATE \"C\" NOT NULL,"
    "  node TEXT COLLATE \"C\" NOT NULL,"
    "  requests BIGINT NOT NULL DEFAULT 0 CHECK (requests >= 0),"
    "  errors BIGINT NOT NULL DEFAULT 0 CHECK (errors >= 0),"
    "  prompt_tokens BIGINT NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),"
    "  completion_tokens BIGINT NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),"
    "  PRIMARY KEY (minute, key_id, model, node)"
    ");"
    "CREATE INDEX usage_minutes_key ON usage_minutes (key_id, minute);"
    "CREATE TABLE audit_log ("
    "  id BIGINT PRIMARY KEY,"
    "  at_ms BIGINT NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  peer TEXT NOT NULL,"
    "  method TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  summary TEXT NOT NULL"
    ");";

static char *dup_col(struct store_stmt *st, int i)
{
    const char *t = store_col_text(st, i);
    return t ? xstrdup(t) : NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* ---- keys ------------------------------------------------------------------------------ */

void store_key_row_clear(struct store_key_row *r)
{
    xfree(r->id);
    xfree(r->secret_hash);
    xfree(r->prefix);
    xfree(r->spec_json);
    memset(r, 0, sizeof *r);
}

void store_key_rows_free(struct store_key_row *v, size_t n)
{
    for (size_t i = 0; i < n; i++) store_key_row_clear(&v[i]);
    xfree(v);
}

struct key_load {
    struct store_key_row *v;
    size_t n, cap;
};

static int run_load_keys(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct key_load *l = ctx;
    struct store_stmt *st = NULL;
    if (store_prepare(db,
                      "SELECT id, secret_hash, prefix, spec, created_ms, updated_ms, "
                      "revoked_ms FROM client_keys ORDER BY id",
                      &st))
        return store_db_error(db, "load keys", err);
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 16;
            l->v = xrealloc(l->v, l->cap * sizeof *l->v);
        }
        struct store_key_row *r = &l->v[l->n++];
        r->id = dup_col(st, 0);
        r->secret_hash = dup_col(st, 1);
        r->prefix = dup_col(st, 2);
        r->spec_json = dup_col(st, 3);
        r->created_ms = store_col_int64(st, 4);
        r->updated_ms = store_col_int64(st, 5);
        r->revoked_ms = store_col_int64(st, 6);
    }
    store_finalize(st);
    if (rc != STORE_DONE) return store_db_error(db, "load keys", err);
    return 0;
}

int store_load_keys(struct store *s, struct store_key_row **out, size_t *n, struct gw_error *err)
{
    struct key_load l = {0};
    int rc = store_sync(s, run_load_keys, &l, err);
    if (rc) {
        store_key_rows_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

struct key_job {
    struct store_key_row r;
    store_done_fn done;
    void *ctx;
};

static int run_put_key(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct key_job *j = ctx;
    struct store_stmt *st = NULL;
    if (store_prepare(
            db,
            "INSERT INTO client_keys (id, secret_hash, prefix, spec, created_ms, updated_ms, "
            "revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO UPDATE SET "
            "secret_hash = ?2, prefix = ?3, spec = ?4, updated_ms = ?6, revoked_ms = ?7",
            &st))
        return store_db_error(db, "put key", err);
    store_bind_text(st, 1, j->r.id);
    store_bind_text(st, 2, j->r.secret_hash);
    store_bind_text(st, 3, j->r.prefix ? j->r.prefix : "");
    store_bind_text(st, 4, j->r.spec_json ? j->r.spec_json : "{}");
    store_bind_int64(st, 5, j->r.created_ms);
    store_bind_int64(st, 6, j->r.updated_ms);
    store_bind_int64(st, 7, j->r.revoked_ms);
    int rc = store_step(st);
    store_finalize(st);
    if (rc != STORE_DONE) return store_db_error(db, "put key", err);
    return 0;
}

static void key_job_done(void *ctx, int rc, const char *msg)
{
    struct key_job *j = ctx;
    if (j->done) j->done(j->ctx, rc, msg);
    store_key_row_clear(&j->r);
    xfree(j);
}

void store_put_key(struct store *s, const struct store_key_row *r, store_done_fn done, void *ctx)
{
    struct key_job *j = xcalloc(1, sizeof *j);
    j->r = *r;
    j->r.id = dup_or_null(r->id);
    j->r.secret_hash = dup_or_null(r->secret_hash);
    j->r.prefix = dup_or_null(r->prefix);
    j->r.spec_json = dup_or_null(r->spec_json);
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_put_key, key_job_done, j);
}

/* ---- usage ----------------------------------------------------------------------------- */

void store_usage_rows_free(struct store_usage_row *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xfree(v[i].key_id);
        xfree(v[i].model);
        xfree(v[i].node);
    }
    xfree(v);
}

struct usage_add {
    struct store_usage_row *v;
    size_t n;
    store_done_fn done;
    void *ctx;
};

static int run_add_usage(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct usage_add *j = ctx;
    struct store_stmt *st = NULL;
    if (store_prepare(
            db,
            "INSERT INTO usage_minutes (minute, key_id, model, node, requests, errors, "
            "prompt_tokens, completion_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
            "ON CONFLICT(minute, key_id, model, node) DO UPDATE SET "
            "requests = usage_minutes.requests + excluded.requests, "
            "errors = usage_minutes.errors + excluded.errors, "
            "prompt_tokens = usage_minutes.prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = usage_minutes.completion_tokens + excluded.completion_tokens",
            &st))
        return store_db_error(db, "add usage", err);
    for (size_t i = 0; i < j->n; i++) {
        const struct store_usage_row *r = &j->v[i];
        store_reset(st);
        store_bind_int64(st, 1, r->minute);
        store_bind_text(st, 2, r->key_id ? r->key_id : "");
        store_bind_text(st, 3, r->model ? r->model : "");
        store_bind_text(st, 4, r->node ? r->node : "");
        store_bind_int64(st, 5, (int64_t)r->requests);
        store_bind_int64(st, 6, (int64_t)r->errors);
        store_bind_int64(st, 7, (int64_t)r->prompt_tokens);
        store_bind_int64(st, 8, (int64_t)r->completion_tokens);
        if (store_step(st) != STORE_DONE) {
            int rc = store_db_error(db, "add usage", err);
            store_finalize(st);
            return rc;
        }
    }
    store_finalize(st);
    return 0;
}

static void usage_add_done(void *ctx, int rc, const char *msg)
{
    struct usage_add *j = ctx;
    if (j->done) j->done(j->ctx, rc, msg);
    store_usage_rows_free(j->v, j->n);
    xfree(j);
}

void store_add_usage(struct store *s, struct store_usage_row *v, size_t n, store_done_fn done,
                     void *ctx)
{
    struct usage_add *j = xcalloc(1, sizeof *j);
    j->v = v;
    j->n = n;
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_add_usage, usage_add_done, j);
}

struct usage_q {
    struct store_usage_query q;
    struct store_usage_result *res;
    store_done_fn done;
    void *ctx;
};

static int run_query_usage(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct usage_q *j = ctx;
    static const char *const col[] = {"key_id", "model", "node", "minute"};
    const char *g = col[j->q.group_by <= STORE_USAGE_BY_MINUTE ? j->q.group_by : 0];
    char sql[512];
    /* g comes from the table above, never from the request */
    /* the filters are constant fragments; their values are bound (?3 and ?4 exist only when
     * used: PostgreSQL cannot type a parameter that is only compared with NULL) */
    snprintf(sql, sizeof sql,
             "SELECT %s, sum(requests), sum(errors), sum(prompt_tokens), "
             "sum(completion_tokens) FROM usage_minutes WHERE minute >= ?1 AND minute < ?2%s%s "
             "GROUP BY %s ORDER BY %s LIMIT %zu",
             g, j->q.key_id ? " AND key_id = ?3" : "",
             j->q.model ? (j->q.key_id ? " AND model = ?4" : " AND model = ?3") : "", g, g,
             (j->q.max_rows ? j->q.max_rows : 10000) + 1);
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return store_db_error(db, "query usage", err);
    store_bind_int64(st, 1, j->q.from_minute);
    store_bind_int64(st, 2, j->q.to_minute);
    if (j->q.key_id) store_bind_text(st, 3, j->q.key_id);
    if (j->q.model) store_bind_text(st, j->q.key_id ? 4 : 3, j->q.model);
    size_t max = j->q.max_rows ? j->q.max_rows : 10000;
    struct store_usage_result *r = j->res;
    size_t cap = 0;
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        if (r->n == max) {
            r->truncated = 1;
            continue;
        }
        if (r->n == cap) {
            cap = cap ? 2 * cap : 16;
            r->rows = xrealloc(r->rows, cap * sizeof *r->rows);
        }
        struct store_usage_row *u = &r->rows[r->n++];
        memset(u, 0, sizeof *u);
        switch (j->q.group_by) {
        case STORE_USAGE_BY_MODEL:
            u->model = dup_col(st, 0);
            break;
        case STORE_USAGE_BY_NODE:
            u->node = dup_col(st, 0);
            break;
        case STORE_USAGE_BY_MINUTE:
            u->minute = store_col_int64(st, 0);
            break;
        default:
            u->key_id = dup_col(st, 0);
        }
        u->requests = (uint64_t)store_col_int64(st, 1);
        u->errors = (uint64_t)store_col_int64(st, 2);
        u->prompt_tokens = (uint64_t)store_col_int64(st, 3);
        u->completion_tokens = (uint64_t)store_col_int64(st, 4);
    }
    store_finalize(st);
    if (rc != STORE_DONE) return store_db_error(db, "query usage", err);
    return 0;
}

static void usage_q_free(struct usage_q *j)
{
    xfree(j->q.key_id);
    xfree(j->q.model);
    xfree(j);
}

static void usage_q_done(void *ctx, int rc, const char *msg)
{
    struct usage_q *j = ctx;
    if (j->done) j->done(j->ctx, rc, msg);
    usage_q_free(j);
}

static struct usage_q *usage_q_new(const struct store_usage_query *q,
                                   struct store_usage_result *res)
{
    struct usage_q *j = xcalloc(1, sizeof *j);
    j->q = *q;
    j->q.key_id = dup_or_null(q->key_id);
    j->q.model = dup_or_null(q->model);
    j->res = res;
    memset(res, 0, sizeof *res);
    return j;
}

void store_query_usage(struct store *s, const struct store_usage_query *q,
                       struct store_usage_result *res, store_done_fn done, void *ctx)
{
    struct usage_q *j = usage_q_new(q, res);
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_query_usage, usage_q_done, j);
}

int store_query_usage_sync(struct store *s, const struct store_usage_query *q,
                           struct store_usage_result *res, struct gw_error *err)
{
    struct usage_q *j = usage_q_new(q, res);
    int rc = store_sync(s, run_query_usage, j, err);
    usage_q_free(j);
    return rc;
}

/* ---- audit ----------------------------------------------------------------------------- */

static void audit_row_clear(struct store_audit_row *r)
{
    xfree(r->actor);
    xfree(r->role);
    xfree(r->peer);
    xfree(r->method);
    xfree(r->path);
    xfree(r->summary);
}

void store_audit_rows_free(struct store_audit_row *v, size_t n)
{
    for (size_t i = 0; i < n; i++) audit_row_clear(&v[i]);
    xfree(v);
}

struct audit_job {
    struct store_audit_row r;
    int64_t before_id;
    size_t limit;
    struct store_audit_result *res;
    store_done_fn done;
    void *ctx;
};

static int run_add_audit(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct audit_job *j = ctx;
    struct store_stmt *st = NULL;
    if (store_prepare(
            db,
            "INSERT INTO audit_log (id, at_ms, actor, role, peer, method, path, "
            "summary) SELECT coalesce(max(id), 0) + 1, CAST(?1 AS BIGINT), ?2, ?3, ?4, ?5, ?6, ?7 "
            "FROM audit_log",
            &st))
        return store_db_error(db, "add audit", err);
    store_bind_int64(st, 1, j->r.at_ms);
    const char *v[] = {j->r.actor, j->r.role, j->r.peer, j->r.method, j->r.path, j->r.summary};
    for (int i = 0; i < 6; i++) store_bind_text(st, 2 + i, v[i] ? v[i] : "");
    int rc = store_step(st);
    store_finalize(st);
    if (rc != STORE_DONE) return store_db_error(db, "add audit", err);
    return 0;
}

static void audit_job_done(void *ctx, int rc, const char *msg)
{
    struct audit_job *j = ctx;
    if (j->done) j->done(j->ctx, rc, msg);
    audit_row_clear(&j->r);
    xfree(j);
}

void store_add_audit(struct store *s, const struct store_audit_row *r, store_done_fn done,
                     void *ctx)
{
    struct audit_job *j = xcalloc(1, sizeof *j);
    j->r.at_ms = (int64_t)clock_wall_ms();
    j->r.actor = dup_or_null(r->actor);
    j->r.role = dup_or_null(r->role);
    j->r.peer = dup_or_null(r->peer);
    j->r.method = dup_or_null(r->method);
    j->r.path = dup_or_null(r->path);
    j->r.summary = dup_or_null(r->summary);
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_add_audit, audit_job_done, j);
}

static int run_query_audit(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct audit_job *j = ctx;
    struct store_stmt *st = NULL;
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT id, at_ms, actor, role, peer, method, path, summary FROM audit_log%s "
             "ORDER BY id DESC LIMIT %zu",
             j->before_id > 0 ? " WHERE id < ?1" : "", j->limit);
    if (store_prepare(db, sql, &st)) return store_db_error(db, "query audit", err);
    if (j->before_id > 0) store_bind_int64(st, 1, j->before_id);
    struct store_audit_result *r = j->res;
    size_t cap = 0;
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        if (r->n == cap) {
            cap = cap ? 2 * cap : 16;
            r->rows = xrealloc(r->rows, cap * sizeof *r->rows);
        }
        struct store_audit_row *a = &r->rows[r->n++];
        a->id = store_col_int64(st, 0);
        a->at_ms = store_col_int64(st, 1);
        a->actor = dup_col(st, 2);
        a->role = dup_col(st, 3);
        a->peer = dup_col(st, 4);
        a->method = dup_col(st, 5);
        a->path = dup_col(st, 6);
        a->summary = dup_col(st, 7);
    }
    store_finalize(st);
    if (rc != STORE_DONE) return store_db_error(db, "query audit", err);
    return 0;
}

void store_query_audit(struct store *s, int64_t before_id, size_t limit,
                       struct store_audit_result *res, store_done_fn done, void *ctx)
{
    struct audit_job *j = xcalloc(1, sizeof *j);
    j->before_id = before_id;
    j->limit = limit ? limit : 100;
    j->res = res;
    memset(res, 0, sizeof *res);
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_query_audit, audit_job_done, j);
}
