/* store_keys — SQL for client keys, usage minutes and the audit log (store_keys.h). Values are
 * always bound, never formatted into SQL. Store thread (run_*), loop thread (the rest). */
#include "store/store_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
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
    const char *id; /* NULL: every row */
    struct store_key_row *v;
    size_t n, cap;
};

static int run_load_keys(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct key_load *l = ctx;
    struct store_stmt *st = NULL;
    if (store_prepare(db,
                      l->id ? "SELECT id, secret_hash, prefix, spec, created_ms, updated_ms, "
                              "revoked_ms FROM client_keys WHERE id = ?1"
                            : "SELECT id, secret_hash, prefix, spec, created_ms, updated_ms, "
                              "revoked_ms FROM client_keys ORDER BY id",
                      &st))
        return store_db_error(db, "load keys", err);
    if (l->id) store_bind_text(st, 1, l->id);
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 16;
            l->v = xrealloc(l->v, l->cap * sizeof *l->v);
        }
        struct store_key_row *r = &l->v[l->n++];
        memset(r, 0, sizeof *r);
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

int store_keys_read(struct store_db *db, const char *id, struct store_key_row **out, size_t *n,
                    struct gw_error *err)
{
    struct key_load l = {.id = id};
    *out = NULL;
    *n = 0;
    int rc = run_load_keys(db, &l, err);
    if (rc) {
        store_key_rows_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
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
    const struct store_key_row *r = &j->r;
    const char *sql = NULL;
    switch (r->change) {
    case STORE_KEY_CREATE: /* an existing row (never: ids are random) keeps its revocation */
        sql = "INSERT INTO client_keys (id, secret_hash, prefix, spec, created_ms, updated_ms, "
              "revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO UPDATE SET "
              "secret_hash = excluded.secret_hash, prefix = excluded.prefix, spec = excluded.spec, "
              "updated_ms = excluded.updated_ms, revoked_ms = CASE WHEN client_keys.revoked_ms "
              "<> 0 THEN client_keys.revoked_ms ELSE excluded.revoked_ms END";
        break;
    case STORE_KEY_SECRET:
        sql = "UPDATE client_keys SET secret_hash = ?2, prefix = ?3, updated_ms = ?4 WHERE id = ?1";
        break;
    case STORE_KEY_SPEC:
        sql = "UPDATE client_keys SET spec = ?2, updated_ms = ?3 WHERE id = ?1";
        break;
    case STORE_KEY_REVOKE:
        sql = "UPDATE client_keys SET revoked_ms = ?2, updated_ms = ?3 WHERE id = ?1 AND "
              "revoked_ms = 0";
        break;
    }
    if (!sql) return gw_error_set(err, GW_E_INVALID, "put key: unknown change");
    struct store_stmt *st = NULL;
    if (store_prepare(db, sql, &st)) return store_db_error(db, "put key", err);
    store_bind_text(st, 1, r->id);
    switch (r->change) {
    case STORE_KEY_CREATE:
        store_bind_text(st, 2, r->secret_hash);
        store_bind_text(st, 3, r->prefix ? r->prefix : "");
        store_bind_text(st, 4, r->spec_json ? r->spec_json : "{}");
        store_bind_int64(st, 5, r->created_ms);
        store_bind_int64(st, 6, r->updated_ms);
        store_bind_int64(st, 7, r->revoked_ms);
        break;
    case STORE_KEY_SECRET:
        store_bind_text(st, 2, r->secret_hash);
        store_bind_text(st, 3, r->prefix ? r->prefix : "");
        store_bind_int64(st, 4, r->updated_ms);
        break;
    case STORE_KEY_SPEC:
        store_bind_text(st, 2, r->spec_json ? r->spec_json : "{}");
        store_bind_int64(st, 3, r->updated_ms);
        break;
    case STORE_KEY_REVOKE:
        store_bind_int64(st, 2, r->revoked_ms);
        store_bind_int64(st, 3, r->updated_ms);
        break;
    }
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

/* ---- limits shared by several gateways ------------------------------------------------ */

enum { MS_PER_MIN = 60000, MIN_PER_DAY = 1440 };

int64_t store_key_bucket_step(int64_t level, int64_t at_ms, int64_t now_ms, uint64_t rate,
                              int64_t give, int64_t want, int64_t *got)
{
    if (rate > (uint64_t)INT64_MAX / MS_PER_MIN / MIN_PER_DAY)
        rate = INT64_MAX / MS_PER_MIN / MIN_PER_DAY;
    int64_t cap = (int64_t)rate * MS_PER_MIN, floor = -cap * MIN_PER_DAY;
    if (now_ms > at_ms && level < cap) {
        uint64_t dt = (uint64_t)(now_ms - at_ms);
        /* a day of refill fills any bucket from its deepest debt */
        level = dt >= (uint64_t)MS_PER_MIN * MIN_PER_DAY * 2 ? cap : level + (int64_t)(dt * rate);
    }
    if (level > cap) level = cap;
    if (give > 0 && level > cap - give)
        level = cap; /* unspent beyond a full bucket is gone */
    else
        level += give;
    if (level < floor) level = floor;
    int64_t g = 0;
    if (want > 0 && level > 0) g = want < level ? want : level;
    level -= g;
    *got = g;
    return level;
}

void store_limits_round_free(struct store_limits_round *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) xfree(r->v[i].key_id);
    xfree(r->v);
    xfree(r->origin);
    xfree(r);
}

struct limits_job {
    struct store_limits_round *r;
    store_done_fn done;
    void *ctx;
};

static int by_key_id(const void *a, const void *b)
{
    return strcmp(((const struct store_key_sync *)a)->key_id,
                  ((const struct store_key_sync *)b)->key_id);
}

/* the database's clock (PostgreSQL): the buckets refill by one clock, whatever the gateways'
 * clocks say; SQLite (one gateway) has only this gateway's */
static int db_now_ms(struct store_db *db, int64_t *out, struct gw_error *err)
{
    if (store_db_engine(db) != STORE_ENGINE_POSTGRES) {
        *out = (int64_t)clock_wall_ms();
        return 0;
    }
    struct store_stmt *st = NULL;
    int rc =
        store_prepare(db, "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint", &st);
    if (!rc) rc = store_step(st);
    if (rc == STORE_ROW) *out = store_col_int64(st, 0);
    store_finalize(st);
    return rc == STORE_ROW ? 0 : store_db_error(db, "limits: clock", err);
}

/* One bucket: created full when missing, locked, refilled, given back to, taken from. */
static int64_t cap_of(uint64_t rate)
{
    uint64_t max = (uint64_t)INT64_MAX / MS_PER_MIN / MIN_PER_DAY;
    return (int64_t)(rate > max ? max : rate) * MS_PER_MIN;
}

/* The levels of the buckets the round does not touch (the keys with nothing to give or want):
 * read without a lock and refilled to now; a bucket without a row is full. */
static int peek_levels(struct store_db *db, struct store_limits_round *r, int64_t now)
{
    bool any = false;
    for (size_t i = 0; i < r->n && !any; i++)
        any = (r->v[i].rpm && !r->v[i].has_level_req) || (r->v[i].tpm && !r->v[i].has_level_tok);
    if (!any) return 0;
    struct store_stmt *st = NULL;
    if (store_prepare(db, "SELECT key_id, kind, level, at_ms FROM key_limits", &st)) return -1;
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        struct store_key_sync want = {.key_id = (char *)store_col_text(st, 0)};
        struct store_key_sync *e =
            want.key_id ? bsearch(&want, r->v, r->n, sizeof *r->v, by_key_id) : NULL;
        const char *kind = store_col_text(st, 1);
        if (!e || !kind) continue;
        bool req = !strcmp(kind, "requests");
        uint64_t rate = req ? e->rpm : e->tpm;
        bool *has = req ? &e->has_level_req : &e->has_level_tok;
        if (!rate || *has) continue;
        int64_t got;
        int64_t lv = store_key_bucket_step(store_col_int64(st, 2), store_col_int64(st, 3), now,
                                           rate, 0, 0, &got);
        *(req ? &e->level_req : &e->level_tok) = lv;
        *has = true;
    }
    store_finalize(st);
    if (rc != STORE_DONE) return -1;
    for (size_t i = 0; i < r->n; i++) {
        struct store_key_sync *e = &r->v[i];
        if (e->rpm && !e->has_level_req) {
            e->level_req = cap_of(e->rpm);
            e->has_level_req = true;
        }
        if (e->tpm && !e->has_level_tok) {
            e->level_tok = cap_of(e->tpm);
            e->has_level_tok = true;
        }
    }
    return 0;
}

static int bucket(struct store_db *db, struct store_stmt *ins, struct store_stmt *sel,
                  struct store_stmt *upd, const char *key_id, const char *kind, uint64_t rate,
                  int64_t now, int64_t give, int64_t want, int64_t *got, int64_t *level_out)
{
    int64_t cap = cap_of(rate);
    store_reset(ins);
    store_bind_text(ins, 1, key_id);
    store_bind_text(ins, 2, kind);
    store_bind_int64(ins, 3, cap);
    store_bind_int64(ins, 4, now);
    if (store_step(ins) != STORE_DONE) return -1;
    store_reset(sel);
    store_bind_text(sel, 1, key_id);
    store_bind_text(sel, 2, kind);
    if (store_step(sel) != STORE_ROW) return -1;
    int64_t level = store_col_int64(sel, 0), at = store_col_int64(sel, 1);
    store_reset(sel);
    level = store_key_bucket_step(level, at, now, rate, give, want, got);
    store_reset(upd);
    store_bind_text(upd, 1, key_id);
    store_bind_text(upd, 2, kind);
    store_bind_int64(upd, 3, level);
    store_bind_int64(upd, 4, now > at ? now : at);
    if (store_step(upd) != STORE_DONE) return -1;
    *level_out = level;
    return 0;
}

/* PostgreSQL: the fleet's tokens of every key of the round with a budget, in one statement (the
 * ids bound as one text[] literal, each quoted); the round's entries are sorted by id. */
static int totals_pg(struct store_db *db, struct store_limits_round *r)
{
    struct buf ids;
    buf_init(&ids, (size_t)1 << 30);
    int rc = buf_append_cstr(&ids, "{");
    size_t n = 0;
    for (size_t i = 0; i < r->n && !rc; i++) {
        if (!r->v[i].total) continue;
        rc = buf_append_cstr(&ids, n++ ? ",\"" : "\"");
        for (const char *c = r->v[i].key_id; *c && !rc; c++)
            rc = *c == '"' || *c == '\\' ? buf_appendf(&ids, "\\%c", *c) : buf_append(&ids, c, 1);
        if (!rc) rc = buf_append_cstr(&ids, "\"");
    }
    if (!rc) rc = buf_append_cstr(&ids, "}");
    if (rc || !n) {
        buf_free(&ids);
        return rc ? -1 : 0;
    }
    struct store_stmt *st = NULL;
    rc =
        store_prepare(db,
                      "SELECT key_id, coalesce(sum(CASE WHEN day = ?1 THEN tokens ELSE 0 END), 0), "
                      "coalesce(sum(tokens), 0) FROM key_counters WHERE key_id = ANY(?3::text[]) "
                      "AND day >= ?2 GROUP BY key_id",
                      &st);
    if (!rc) {
        store_bind_int64(st, 1, r->today);
        store_bind_int64(st, 2, r->month_first_day);
        store_bind_text(st, 3, ids.p);
        while ((rc = store_step(st)) == STORE_ROW) {
            struct store_key_sync want = {.key_id = (char *)store_col_text(st, 0)};
            struct store_key_sync *e =
                want.key_id ? bsearch(&want, r->v, r->n, sizeof *r->v, by_key_id) : NULL;
            if (!e) continue;
            e->day_tokens = (uint64_t)store_col_int64(st, 1);
            e->month_tokens = (uint64_t)store_col_int64(st, 2);
        }
        rc = rc == STORE_DONE ? 0 : -1;
    }
    store_finalize(st);
    buf_free(&ids);
    return rc;
}

static int run_limits(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct store_limits_round *r = ((struct limits_job *)ctx)->r;
    bool pg = store_db_engine(db) == STORE_ENGINE_POSTGRES;
    int64_t now = 0;
    int rc = db_now_ms(db, &now, err);
    if (rc) return rc;
    r->db_now_ms = now;
    struct store_stmt *ins = NULL, *sel = NULL, *upd = NULL, *cnt = NULL, *tot = NULL, *live = NULL;
    const char *what = "limits: prepare";
    if (store_prepare(db,
                      "INSERT INTO key_limits (key_id, kind, level, at_ms) VALUES (?1, ?2, ?3, ?4) "
                      "ON CONFLICT (key_id, kind) DO NOTHING",
                      &ins) ||
        store_prepare(db,
                      pg ? "SELECT level, at_ms FROM key_limits WHERE key_id = ?1 AND kind = ?2 "
                           "FOR UPDATE"
                         : "SELECT level, at_ms FROM key_limits WHERE key_id = ?1 AND kind = ?2",
                      &sel) ||
        store_prepare(
            db, "UPDATE key_limits SET level = ?3, at_ms = ?4 WHERE key_id = ?1 AND kind = ?2",
            &upd) ||
        store_prepare(
            db,
            "INSERT INTO key_counters (key_id, day, origin, requests, tokens, updated_ms) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key_id, day, origin) DO UPDATE "
            "SET requests = key_counters.requests + excluded.requests, "
            "tokens = key_counters.tokens + excluded.tokens, "
            "updated_ms = excluded.updated_ms",
            &cnt) ||
        store_prepare(db,
                      "SELECT coalesce(sum(CASE WHEN day = ?2 THEN tokens ELSE 0 END), 0), "
                      "coalesce(sum(tokens), 0) FROM key_counters WHERE key_id = ?1 AND day >= ?3",
                      &tot) ||
        store_prepare(db,
                      "SELECT count(DISTINCT origin) FROM key_counters WHERE key_id = '' AND "
                      "day >= ?1 AND updated_ms >= ?2",
                      &live))
        goto fail;
    /* buckets and counters, in key order (the row locks of every gateway's round too) */
    what = "limits: buckets";
    for (size_t i = 0; i < r->n; i++) {
        struct store_key_sync *e = &r->v[i];
        if (e->rpm && (e->give_req || e->want_req)) {
            if (bucket(db, ins, sel, upd, e->key_id, "requests", e->rpm, now, e->give_req,
                       e->want_req, &e->got_req, &e->level_req))
                goto fail;
            e->has_level_req = true;
        }
        if (e->tpm && (e->give_tok || e->want_tok)) {
            if (bucket(db, ins, sel, upd, e->key_id, "tokens", e->tpm, now, e->give_tok,
                       e->want_tok, &e->got_tok, &e->level_tok))
                goto fail;
            e->has_level_tok = true;
        }
    }
    what = "limits: levels";
    if (peek_levels(db, r, now)) goto fail;
    what = "limits: counters";
    for (size_t i = 0; i <= r->n; i++) {
        /* i == n: this gateway's liveness (key ''), one request per round */
        const struct store_key_sync *e = i < r->n ? &r->v[i] : NULL;
        if (e && !e->requests && !e->tokens) continue;
        store_reset(cnt);
        store_bind_text(cnt, 1, e ? e->key_id : "");
        store_bind_int64(cnt, 2, e ? e->day : r->today);
        store_bind_text(cnt, 3, r->origin);
        store_bind_int64(cnt, 4, e ? (int64_t)e->requests : 1);
        store_bind_int64(cnt, 5, e ? (int64_t)e->tokens : 0);
        store_bind_int64(cnt, 6, now);
        if (store_step(cnt) != STORE_DONE) goto fail;
    }
    what = "limits: totals";
    if (pg) {
        /* one statement for every key with a budget: an index range per key */
        if (totals_pg(db, r)) goto fail;
    } else {
        for (size_t i = 0; i < r->n; i++) {
            struct store_key_sync *e = &r->v[i];
            if (!e->total) continue;
            store_reset(tot);
            store_bind_text(tot, 1, e->key_id);
            store_bind_int64(tot, 2, r->today);
            store_bind_int64(tot, 3, r->month_first_day);
            if (store_step(tot) != STORE_ROW) goto fail;
            e->day_tokens = (uint64_t)store_col_int64(tot, 0);
            e->month_tokens = (uint64_t)store_col_int64(tot, 1);
        }
    }
    what = "limits: gateways";
    store_bind_int64(live, 1, r->today - 1);
    store_bind_int64(live, 2, now - r->live_ms);
    if (store_step(live) != STORE_ROW) goto fail;
    r->live_gateways = (unsigned)store_col_int64(live, 0);
    if (r->live_gateways == 0) r->live_gateways = 1;
    if (r->prune_before_day > 0) {
        what = "limits: prune";
        store_finalize(tot);
        tot = NULL;
        if (store_prepare(db, "DELETE FROM key_counters WHERE day < ?1", &tot)) goto fail;
        store_bind_int64(tot, 1, r->prune_before_day);
        if (store_step(tot) != STORE_DONE) goto fail;
        store_finalize(tot);
        tot = NULL;
        /* a bucket idle for a day is full: dropping it changes nothing */
        if (store_prepare(db, "DELETE FROM key_limits WHERE at_ms < ?1", &tot)) goto fail;
        store_bind_int64(tot, 1, now - (int64_t)MS_PER_MIN * MIN_PER_DAY);
        if (store_step(tot) != STORE_DONE) goto fail;
    }
    rc = 0;
    goto out;
fail:
    rc = store_db_error(db, what, err);
out:
    store_finalize(ins);
    store_finalize(sel);
    store_finalize(upd);
    store_finalize(cnt);
    store_finalize(tot);
    store_finalize(live);
    return rc;
}

static void limits_done(void *ctx, int rc, const char *msg)
{
    struct limits_job *j = ctx;
    if (j->done) j->done(j->ctx, rc, msg);
    xfree(j);
}

void store_limits_sync(struct store *s, struct store_limits_round *r, store_done_fn done, void *ctx)
{
    if (r->n > 1) qsort(r->v, r->n, sizeof *r->v, by_key_id);
    struct limits_job *j = xcalloc(1, sizeof *j);
    j->r = r;
    j->done = done;
    j->ctx = ctx;
    store_submit(s, run_limits, limits_done, j);
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
    if (store_prepare(db,
                      /* the id from the engine: SQLite's rowid, PostgreSQL's sequence (migration
                       * 7); max(id) + 1 let two gateways take one id and lose a row */
                      "INSERT INTO audit_log (at_ms, actor, role, peer, method, path, summary) "
                      "VALUES (CAST(?1 AS BIGINT), ?2, ?3, ?4, ?5, ?6, ?7)",
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
