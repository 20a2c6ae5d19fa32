/* store_db — the statement API of store_db.h over SQLite and over libpq. SQLite statements map
 * one to one. A PostgreSQL statement keeps its SQL (placeholders rewritten to $N) and its
 * values as text; the first store_step sends it with PQsendQueryParams and waits for the
 * answer with poll() against a deadline, so a server or network that stops answering costs a
 * bounded time, never a hang: past the deadline the connection is dropped (the server rolls
 * the transaction back) and marked broken for the store thread to reconnect. Store thread
 * (or store_open's caller before the thread exists). */
#include "store/store_db.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/mem.h"
#include "store/store_impl.h"

enum {
    STORE_PG_ANSWER_MARGIN_MS = 2000, /* beyond statement_timeout before we give up */
    STORE_DB_MSG_BYTES = 200,
};

struct store_db {
    enum store_engine engine;
    sqlite3 *lite;
    PGconn *pg;
    unsigned answer_timeout_ms; /* PostgreSQL: wait this long for any answer */
    bool is_broken;
    int last_code;
    char last_msg[STORE_DB_MSG_BYTES];
    char label[160];
};

struct store_stmt {
    struct store_db *db;
    sqlite3_stmt *lite;
    /* PostgreSQL */
    char *sql;
    int n_params;
    char **values; /* owned; NULL is SQL NULL */
    PGresult *res;
    int row, n_rows; /* row: the current row + 1 */
};

enum store_engine store_db_engine(const struct store_db *db)
{
    return db->engine;
}

const char *store_db_label(const struct store_db *db)
{
    return db->label;
}

bool store_db_is_broken(const struct store_db *db)
{
    return db->is_broken || (db->pg && PQstatus(db->pg) != CONNECTION_OK);
}

static int set_last(struct store_db *db, int code, const char *msg)
{
    db->last_code = code;
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) n--; /* libpq ends with "\n" */
    if (n >= sizeof db->last_msg) n = sizeof db->last_msg - 1;
    memcpy(db->last_msg, msg, n);
    db->last_msg[n] = '\0';
    for (char *p = db->last_msg; *p; p++)
        if (*p == '\n' || *p == '\t') *p = ' '; /* one line, always */
    return code;
}

int store_db_error(struct store_db *db, const char *what, struct gw_error *err)
{
    int code = db->last_code ? db->last_code : GW_E_IO;
    return gw_error_set(err, code, "%s: %s", what, db->last_msg[0] ? db->last_msg : "failed");
}

/* ---- SQLite ---------------------------------------------------------------------------- */

static int lite_fail(struct store_db *db)
{
    int ext = sqlite3_extended_errcode(db->lite);
    int code = (ext & 0xff) == SQLITE_CONSTRAINT ? GW_E_INVALID : GW_E_IO;
    return set_last(db, code, sqlite3_errmsg(db->lite));
}

struct store_db *store_db_wrap_sqlite(sqlite3 *lite, const char *path)
{
    struct store_db *db = xcalloc(1, sizeof *db);
    db->engine = STORE_ENGINE_SQLITE;
    db->lite = lite;
    snprintf(db->label, sizeof db->label, "%s", path);
    return db;
}

/* ---- PostgreSQL ------------------------------------------------------------------------ */

static void pg_notice(void *arg, const char *message)
{
    (void)arg, (void)message; /* "relation already exists, skipping" and the like */
}

/* Maps a failed result: constraint (class 23) and data exceptions (class 22: a value the
 * schema's types refuse, invalid JSON in a CHECK) are the caller's; connection exceptions
 * (class 08), shutdown (57P01…57P03) and a dead connection are unavailability. */
static int pg_fail(struct store_db *db, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : "";
    if (!msg || !*msg) msg = PQerrorMessage(db->pg);
    int code = GW_E_IO;
    if (PQstatus(db->pg) != CONNECTION_OK) {
        db->is_broken = true;
        code = STORE_E_UNAVAILABLE;
    } else if (state && (!strncmp(state, "23", 2) || !strncmp(state, "22", 2))) {
        code = GW_E_INVALID;
    } else if (state && (!strncmp(state, "08", 2) || !strncmp(state, "57P0", 4))) {
        db->is_broken = true;
        code = STORE_E_UNAVAILABLE;
    }
    return set_last(db, code, msg && *msg ? msg : "query failed");
}

static bool pg_is_ok(const PGresult *r)
{
    ExecStatusType t = PQresultStatus(r);
    return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK || t == PGRES_EMPTY_QUERY;
}

static int64_t mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000u);
}

/* Waits for the whole answer of what was sent; returns the first failed result, else the
 * last one (owned), or NULL with the connection marked broken. */
static PGresult *pg_wait(struct store_db *db)
{
    int64_t deadline = mono_ms() + db->answer_timeout_ms;
    PGresult *keep = NULL;
    for (;;) {
        while (PQisBusy(db->pg)) {
            int64_t left = deadline - mono_ms();
            if (left <= 0) {
                set_last(db, STORE_E_UNAVAILABLE, "no answer from the server in time");
                db->is_broken = true; /* dropping the connection rolls the server's side back */
                PQclear(keep);
                return NULL;
            }
            struct pollfd p = {.fd = PQsocket(db->pg), .events = POLLIN};
            int pr = poll(&p, 1, (int)left);
            if (pr < 0 && errno != EINTR) {
                set_last(db, STORE_E_UNAVAILABLE, strerror(errno));
                db->is_broken = true;
                PQclear(keep);
                return NULL;
            }
            if (pr > 0 && !PQconsumeInput(db->pg)) {
                pg_fail(db, NULL);
                db->is_broken = true;
                PQclear(keep);
                return NULL;
            }
        }
        PGresult *r = PQgetResult(db->pg);
        if (!r) break;
        if (keep && !pg_is_ok(keep)) {
            PQclear(r); /* the first failure is the one to report */
        } else {
            PQclear(keep);
            keep = r;
        }
    }
    if (!keep) {
        pg_fail(db, NULL);
        db->is_broken = true;
    }
    return keep;
}

/* Sends and waits; NULL values are SQL NULL. Returns 0 with *out (owned) or GW_E_*. */
static int pg_query(struct store_db *db, const char *sql, int n, const char *const *values,
                    PGresult **out)
{
    *out = NULL;
    if (store_db_is_broken(db))
        return set_last(db, STORE_E_UNAVAILABLE, "the connection to the server is lost");
    int sent = n >= 0 ? PQsendQueryParams(db->pg, sql, n, NULL, values, NULL, NULL, 0)
                      : PQsendQuery(db->pg, sql);
    if (!sent) return pg_fail(db, NULL);
    PGresult *r = pg_wait(db);
    if (!r) return db->last_code;
    if (!pg_is_ok(r)) {
        int rc = pg_fail(db, r);
        PQclear(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int pg_exec(struct store_db *db, const char *sql)
{
    PGresult *r = NULL;
    int rc = pg_query(db, sql, -1, NULL, &r);
    PQclear(r);
    return rc;
}

int store_db_connect_pg(const char *url, unsigned connect_timeout_ms, unsigned statement_timeout_ms,
                        struct store_db **out, struct gw_error *err)
{
    *out = NULL;
    char connect_s[16];
    /* libpq counts whole seconds and treats 1 as 2 */
    snprintf(connect_s, sizeof connect_s, "%u",
             connect_timeout_ms ? (connect_timeout_ms + 999) / 1000 : 5);
    /* Defaults first, the operator's string last: libpq keeps the last value of a keyword,
     * so anything the URL sets wins (connect_timeout, keepalives, target_session_attrs). */
    const char *const keys[] = {
        "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
        "keepalives_count", "application_name", "dbname",          NULL};
    const char *const vals[] = {connect_s, "1", "10", "5", "3", "drover", url, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg) return gw_error_set(err, GW_E_IO, "postgres: out of memory");
    if (PQstatus(pg) != CONNECTION_OK) {
        struct store_db tmp = {.engine = STORE_ENGINE_POSTGRES, .pg = pg};
        set_last(&tmp, STORE_E_UNAVAILABLE, PQerrorMessage(pg));
        PQfinish(pg);
        return gw_error_set(err, STORE_E_UNAVAILABLE, "postgres: %s", tmp.last_msg);
    }
    PQsetNoticeProcessor(pg, pg_notice, NULL);
    struct store_db *db = xcalloc(1, sizeof *db);
    db->engine = STORE_ENGINE_POSTGRES;
    db->pg = pg;
    unsigned st_ms = statement_timeout_ms ? statement_timeout_ms : 10000;
    db->answer_timeout_ms = st_ms + STORE_PG_ANSWER_MARGIN_MS;
    snprintf(db->label, sizeof db->label, "postgres %s:%s/%s", PQhost(pg) ? PQhost(pg) : "?",
             PQport(pg) ? PQport(pg) : "?", PQdb(pg) ? PQdb(pg) : "?");

    /* statement_timeout: the server ends a statement that runs too long (it may wait on a
     * lock another gateway holds); kept when the URL's options set one. */
    PGresult *r = NULL;
    int rc = pg_query(db, "SHOW statement_timeout", -1, NULL, &r);
    if (!rc && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "SET statement_timeout = %u", st_ms);
        rc = pg_exec(db, sql);
    }
    PQclear(r);
    if (!rc) rc = pg_exec(db, "SET client_min_messages = warning");
    if (rc) {
        gw_error_set(err, rc, "postgres: %s", db->last_msg);
        store_db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

int store_db_set_origin(struct store_db *db, const char *origin)
{
    if (db->engine != STORE_ENGINE_POSTGRES || !origin) return 0;
    const char *v[1] = {origin};
    PGresult *r = NULL;
    int rc = pg_query(db, "SELECT set_config('drover.origin', $1, false)", 1, v, &r);
    PQclear(r);
    return rc;
}

void *store_db_pgconn(struct store_db *db)
{
    return db->pg;
}

void store_db_close(struct store_db *db)
{
    if (!db) return;
    if (db->lite) sqlite3_close(db->lite);
    if (db->pg) PQfinish(db->pg);
    xfree(db);
}

/* ---- transactions ---------------------------------------------------------------------- */

int store_db_begin(struct store_db *db)
{
    if (db->engine == STORE_ENGINE_POSTGRES) return pg_exec(db, "BEGIN");
    return sqlite3_exec(db->lite, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0
                                                                                    : lite_fail(db);
}

int store_db_commit(struct store_db *db)
{
    if (db->engine == STORE_ENGINE_POSTGRES) return pg_exec(db, "COMMIT");
    return sqlite3_exec(db->lite, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : lite_fail(db);
}

void store_db_rollback(struct store_db *db)
{
    if (db->engine == STORE_ENGINE_POSTGRES) {
        if (!store_db_is_broken(db) && PQtransactionStatus(db->pg) != PQTRANS_IDLE)
            (void)pg_exec(db, "ROLLBACK");
        return;
    }
    if (!sqlite3_get_autocommit(db->lite)) sqlite3_exec(db->lite, "ROLLBACK", NULL, NULL, NULL);
}

int store_exec(struct store_db *db, const char *sql)
{
    if (db->engine == STORE_ENGINE_POSTGRES) return pg_exec(db, sql);
    return sqlite3_exec(db->lite, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : lite_fail(db);
}

/* ---- statements ------------------------------------------------------------------------ */

/* ?N → $N outside '…' and "…"; returns the highest N. */
static int rewrite_placeholders(char *sql)
{
    int max = 0;
    char quote = 0;
    for (char *p = sql; *p; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '?' && p[1] >= '0' && p[1] <= '9') {
            *p = '$';
            int n = (int)strtol(p + 1, NULL, 10);
            if (n > max) max = n;
        }
    }
    return max;
}

int store_prepare(struct store_db *db, const char *sql, struct store_stmt **out)
{
    *out = NULL;
    struct store_stmt *st = xcalloc(1, sizeof *st);
    st->db = db;
    if (db->engine == STORE_ENGINE_SQLITE) {
        if (sqlite3_prepare_v2(db->lite, sql, -1, &st->lite, NULL) != SQLITE_OK) {
            int rc = lite_fail(db);
            xfree(st);
            return rc;
        }
    } else {
        st->sql = xstrdup(sql);
        st->n_params = rewrite_placeholders(st->sql);
        if (st->n_params) st->values = xcalloc((size_t)st->n_params, sizeof *st->values);
    }
    *out = st;
    return 0;
}

static void pg_set(struct store_stmt *st, int i, char *v)
{
    if (i < 1 || i > st->n_params) {
        xfree(v); /* like SQLite's SQLITE_RANGE, caught by the statement failing */
        return;
    }
    xfree(st->values[i - 1]);
    st->values[i - 1] = v;
}

void store_bind_text(struct store_stmt *st, int i, const char *s)
{
    if (st->lite) {
        if (s)
            sqlite3_bind_text(st->lite, i, s, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st->lite, i);
        return;
    }
    pg_set(st, i, s ? xstrdup(s) : NULL);
}

void store_bind_int64(struct store_stmt *st, int i, int64_t v)
{
    if (st->lite) {
        sqlite3_bind_int64(st->lite, i, (sqlite3_int64)v);
        return;
    }
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    pg_set(st, i, xstrdup(buf));
}

void store_bind_null(struct store_stmt *st, int i)
{
    store_bind_text(st, i, NULL);
}

int store_step(struct store_stmt *st)
{
    struct store_db *db = st->db;
    if (st->lite) {
        int rc = sqlite3_step(st->lite);
        if (rc == SQLITE_ROW) return STORE_ROW;
        if (rc == SQLITE_DONE) return STORE_DONE;
        return lite_fail(db);
    }
    if (!st->res) {
        int rc = pg_query(db, st->sql, st->n_params, (const char *const *)st->values, &st->res);
        if (rc) return rc;
        st->row = 0;
        st->n_rows = PQresultStatus(st->res) == PGRES_TUPLES_OK ? PQntuples(st->res) : 0;
    }
    if (st->row < st->n_rows) {
        st->row++;
        return STORE_ROW;
    }
    return STORE_DONE;
}

const char *store_col_text(struct store_stmt *st, int i)
{
    if (st->lite) return (const char *)sqlite3_column_text(st->lite, i);
    if (!st->res || st->row < 1 || i < 0 || i >= PQnfields(st->res) ||
        PQgetisnull(st->res, st->row - 1, i))
        return NULL;
    return PQgetvalue(st->res, st->row - 1, i);
}

int64_t store_col_int64(struct store_stmt *st, int i)
{
    if (st->lite) return (int64_t)sqlite3_column_int64(st->lite, i);
    const char *t = store_col_text(st, i);
    if (!t) return 0;
    if (!strcmp(t, "t")) return 1; /* a boolean expression */
    if (!strcmp(t, "f")) return 0;
    return (int64_t)strtoll(t, NULL, 10);
}

bool store_col_is_null(struct store_stmt *st, int i)
{
    if (st->lite) return sqlite3_column_type(st->lite, i) == SQLITE_NULL;
    return store_col_text(st, i) == NULL;
}

int store_col_count(struct store_stmt *st)
{
    if (st->lite) return sqlite3_column_count(st->lite);
    return st->res ? PQnfields(st->res) : 0;
}

const char *store_col_name(struct store_stmt *st, int i)
{
    if (st->lite) return sqlite3_column_name(st->lite, i);
    return st->res && i >= 0 && i < PQnfields(st->res) ? PQfname(st->res, i) : NULL;
}

void store_reset(struct store_stmt *st)
{
    if (st->lite) {
        sqlite3_reset(st->lite);
        return;
    }
    PQclear(st->res);
    st->res = NULL;
    st->row = st->n_rows = 0;
}

void store_finalize(struct store_stmt *st)
{
    if (!st) return;
    if (st->lite) sqlite3_finalize(st->lite);
    PQclear(st->res);
    for (int i = 0; i < st->n_params; i++) xfree(st->values[i]);
    xfree(st->values);
    xfree(st->sql);
    xfree(st);
}
