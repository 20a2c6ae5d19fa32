/* store_migrations — the schema, as numbered migrations. Migration N is migrations[N - 1];
 * a migration once released is never edited, only followed by a new one. Each runs in its own
 * BEGIN IMMEDIATE transaction that also re-reads the current version, so two processes opening
 * the same file at once cannot apply one twice. Runs on store_open's thread, before the store
 * thread starts. */
#include "store/store_impl.h"
#include "store/store_ops.h"
#include "store/store_catalogue.h"

#include <string.h>

#include "base/clock.h"
#include "base/log.h"

static const char *const migrations[] = {
    /* 1: nodes (one row per struct store_node; admin intent only — liveness is never
     * stored) and their labels. secret_hash holds hex SHA-256 of the node secret, never the
     * secret itself. */
    "CREATE TABLE nodes ("
    "  name TEXT PRIMARY KEY NOT NULL CHECK (length(name) > 0),"
    "  url TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('agent', 'openai', 'llamacpp', 'ollama', 'vllm')),"
    "  engine TEXT CHECK (engine IS NULL OR engine IN ('openai', 'llamacpp', 'ollama', 'vllm')),"
    "  admin TEXT NOT NULL CHECK (admin IN ('pending', 'approved', 'draining', 'removed')),"
    "  secret_hash TEXT CHECK (secret_hash IS NULL OR"
    "    (length(secret_hash) = 64 AND secret_hash NOT GLOB '*[^0-9a-f]*')),"
    "  discovery_json TEXT,"
    "  inventory_json TEXT,"
    "  excluded INTEGER NOT NULL DEFAULT 0 CHECK (excluded IN (0, 1)),"
    "  consecutive_faults INTEGER NOT NULL DEFAULT 0"
    "    CHECK (consecutive_faults BETWEEN 0 AND 4294967295),"
    "  ejections INTEGER NOT NULL DEFAULT 0 CHECK (ejections BETWEEN 0 AND 4294967295),"
    "  faults_total INTEGER NOT NULL DEFAULT 0 CHECK (faults_total >= 0),"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE node_labels ("
    "  node TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,"
    "  key TEXT NOT NULL CHECK (length(key) > 0),"
    "  value TEXT NOT NULL,"
    "  PRIMARY KEY (node, key)"
    ") STRICT, WITHOUT ROWID;",
    /* 2: durable fleet operations and their dead letters (docs/ops.md) */
    store_ops_schema_sql,
    /* 3: catalogue entries added through the admin API (the file's are not stored) */
    store_catalogue_schema_sql,
};

enum { N_MIGRATIONS = sizeof migrations / sizeof migrations[0] };

int store_migrations_count(void)
{
    return N_MIGRATIONS;
}

int store_db_error(sqlite3 *db, const char *what, struct gw_error *err)
{
    int code = (sqlite3_extended_errcode(db) & 0xff) == SQLITE_CONSTRAINT ? GW_E_INVALID : GW_E_IO;
    return gw_error_set(err, code, "%s: %s", what, sqlite3_errmsg(db));
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int read_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int record(sqlite3 *db, int version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db, "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, version);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)clock_wall_ms());
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* One step: in a single transaction, read the version and apply the next migration if any.
 * *applied tells whether it did. */
static int step(sqlite3 *db, const char *path, int *version, int *applied, struct gw_error *err)
{
    *applied = 0;
    if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK)
        return gw_error_set(err, GW_E_IO, "%s: begin: %s", path, sqlite3_errmsg(db));
    int rc = exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "version INTEGER PRIMARY KEY, applied_ms INTEGER)");
    int cur = 0;
    if (rc == SQLITE_OK) rc = read_version(db, &cur);
    if (rc != SQLITE_OK) {
        gw_error_set(err, GW_E_IO, "%s: schema_migrations: %s", path, sqlite3_errmsg(db));
        goto fail;
    }
    if (cur > N_MIGRATIONS) {
        gw_error_set(err, GW_E_INVALID,
                     "%s: schema version %d is newer than this drover knows (%d)", path, cur,
                     N_MIGRATIONS);
        goto fail;
    }
    if (cur < N_MIGRATIONS) {
        int next = cur + 1;
        if (exec(db, migrations[next - 1]) != SQLITE_OK || record(db, next) != SQLITE_OK) {
            gw_error_set(err, GW_E_IO, "%s: migration %d: %s", path, next, sqlite3_errmsg(db));
            goto fail;
        }
        cur = next;
        *applied = 1;
    }
    if (exec(db, "COMMIT") != SQLITE_OK) {
        gw_error_set(err, GW_E_IO, "%s: commit: %s", path, sqlite3_errmsg(db));
        goto fail;
    }
    *version = cur;
    return 0;
fail:
    if (!sqlite3_get_autocommit(db)) exec(db, "ROLLBACK");
    return err ? err->code : GW_E_IO;
}

int store_migrate(sqlite3 *db, const char *path, int *version, struct gw_error *err)
{
    struct gw_error local;
    if (!err) err = &local;
    for (;;) {
        int applied = 0;
        int rc = step(db, path, version, &applied, err);
        if (rc) return rc;
        if (!applied) return 0;
        char q[128];
        LOGI("store_migrated", "path=%s version=%d", log_quote(q, sizeof q, path, strlen(path)),
             *version);
    }
}
