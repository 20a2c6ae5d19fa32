/* store_migrations — the schema, as numbered migrations for both engines. Migration N is
 * migrations[N - 1] = {N, SQLite DDL, PostgreSQL DDL}; a migration once released is never
 * edited, only followed by a new one (append {N + 1, …, …} at the end; both texts are required).
 * Each runs in its own transaction that also re-reads the current version, so two processes
 * opening the same store at once cannot apply one twice: SQLite's BEGIN IMMEDIATE takes the
 * write lock; on PostgreSQL the transaction first takes pg_advisory_xact_lock (DDL is
 * transactional there, so a migration and its schema_migrations row commit together). Runs on
 * store_open's thread, before the store thread starts. */
#include "store/store_impl.h"
#include "store/store_ops.h"
#include "store/store_catalogue.h"
#include "store/store_keys.h"

#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"

struct store_migration {
    int version;
    const char *sqlite_sql;
    const char *pg_sql;
};

/* 1: nodes (one row per struct store_node; admin intent only — liveness is never stored) and
 * their labels. secret_hash holds hex SHA-256 of the node secret, never the secret itself. */
static const char nodes_sqlite_sql[] =
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
    ") STRICT, WITHOUT ROWID;";

/* The same on PostgreSQL: BIGINT for every integer, a regex for the hash, and the C collation
 * on keys so that ORDER BY gives SQLite's (bytewise) order whatever the database's locale. */
static const char nodes_pg_sql[] =
    "CREATE TABLE nodes ("
    "  name TEXT COLLATE \"C\" PRIMARY KEY NOT NULL CHECK (length(name) > 0),"
    "  url TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('agent', 'openai', 'llamacpp', 'ollama', 'vllm')),"
    "  engine TEXT CHECK (engine IS NULL OR engine IN ('openai', 'llamacpp', 'ollama', 'vllm')),"
    "  admin TEXT NOT NULL CHECK (admin IN ('pending', 'approved', 'draining', 'removed')),"
    "  secret_hash TEXT CHECK (secret_hash IS NULL OR secret_hash ~ '^[0-9a-f]{64}$'),"
    "  discovery_json TEXT,"
    "  inventory_json TEXT,"
    "  excluded INTEGER NOT NULL DEFAULT 0 CHECK (excluded IN (0, 1)),"
    "  consecutive_faults BIGINT NOT NULL DEFAULT 0"
    "    CHECK (consecutive_faults BETWEEN 0 AND 4294967295),"
    "  ejections BIGINT NOT NULL DEFAULT 0 CHECK (ejections BETWEEN 0 AND 4294967295),"
    "  faults_total BIGINT NOT NULL DEFAULT 0 CHECK (faults_total >= 0),"
    "  created_ms BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL"
    ");"
    "CREATE TABLE node_labels ("
    "  node TEXT COLLATE \"C\" NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,"
    "  key TEXT COLLATE \"C\" NOT NULL CHECK (length(key) > 0),"
    "  value TEXT NOT NULL,"
    "  PRIMARY KEY (node, key)"
    ");";

/* 5: several gateways (DESIGN §9, docs/store.md). ops rows carry a lease (owner and expiry,
 * in the database's clock) so one gateway at a time attempts an operation. PostgreSQL only:
 * ops ids come in blocks from ops_id_block (a gateway takes a block at start-up), and every
 * change to a shared table sends NOTIFY drover 'TABLE ORIGIN KEY' at commit (ORIGIN: the writing
 * session's drover.origin), which the other gateways re-read. */
static const char sync_sqlite_sql[] =
    "ALTER TABLE ops ADD COLUMN lease_owner TEXT;"
    "ALTER TABLE ops ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0;";

static const char sync_pg_sql[] =
    "ALTER TABLE ops ADD COLUMN lease_owner TEXT;"
    "ALTER TABLE ops ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0;"
    "CREATE SEQUENCE ops_id_block START 1;"
    "CREATE FUNCTION drover_notify() RETURNS trigger LANGUAGE plpgsql AS $f$"
    " DECLARE r jsonb; k text; t text;"
    " BEGIN"
    "  IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;"
    "  t := CASE TG_TABLE_NAME WHEN 'node_labels' THEN 'nodes' WHEN 'ops_dead' THEN 'ops'"
    "       ELSE TG_TABLE_NAME END;"
    "  k := CASE TG_TABLE_NAME WHEN 'nodes' THEN r->>'name' WHEN 'node_labels' THEN r->>'node'"
    "       ELSE r->>'id' END;"
    "  PERFORM pg_notify('drover', t || ' ' ||"
    "    coalesce(nullif(current_setting('drover.origin', true), ''), '-') || ' ' || k);"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE TRIGGER nodes_notify AFTER INSERT OR UPDATE OR DELETE ON nodes"
    " FOR EACH ROW EXECUTE FUNCTION drover_notify();"
    "CREATE TRIGGER node_labels_notify AFTER INSERT OR UPDATE OR DELETE ON node_labels"
    " FOR EACH ROW EXECUTE FUNCTION drover_notify();"
    "CREATE TRIGGER catalogue_notify AFTER INSERT OR UPDATE OR DELETE ON catalogue"
    " FOR EACH ROW EXECUTE FUNCTION drover_notify();"
    "CREATE TRIGGER ops_notify AFTER INSERT OR UPDATE OR DELETE ON ops"
    " FOR EACH ROW EXECUTE FUNCTION drover_notify();"
    "CREATE TRIGGER ops_dead_notify AFTER INSERT OR UPDATE OR DELETE ON ops_dead"
    " FOR EACH ROW EXECUTE FUNCTION drover_notify();";

/* 6: client keys across gateways (docs/deploy.md "Client keys and limits"). PostgreSQL: changes
 * of client_keys notify like the other shared tables ('client_keys ORIGIN ID'), so a key created,
 * changed, rotated or revoked through one gateway is re-read by the others at once. Both engines
 * get the tables of the shared limits (used only with several gateways): key_limits holds one
 * bucket per key and kind whose level (units × 60000) is what no gateway has taken yet; the
 * gateways give back what they did not use and take their next allowance from it, with the row
 * locked; key_counters adds up each gateway's consumption per key and UTC day (the budgets' fleet
 * totals), and each gateway's liveness under key_id ''. */
static const char keys_sync_sqlite_sql[] =
    "CREATE TABLE key_limits ("
    "  key_id TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('requests', 'tokens')),"
    "  level INTEGER NOT NULL,"
    "  at_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (key_id, kind)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE key_counters ("
    "  key_id TEXT NOT NULL,"
    "  day INTEGER NOT NULL,"
    "  origin TEXT NOT NULL,"
    "  requests INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),"
    "  tokens INTEGER NOT NULL DEFAULT 0 CHECK (tokens >= 0),"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (key_id, day, origin)"
    ") STRICT, WITHOUT ROWID;";

static const char keys_sync_pg_sql[] =
    "CREATE TABLE key_limits ("
    "  key_id TEXT COLLATE \"C\" NOT NULL,"
    "  kind TEXT COLLATE \"C\" NOT NULL CHECK (kind IN ('requests', 'tokens')),"
    "  level BIGINT NOT NULL,"
    "  at_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (key_id, kind)"
    ");"
    "CREATE TABLE key_counters ("
    "  key_id TEXT COLLATE \"C\" NOT NULL,"
    "  day BIGINT NOT NULL,"
    "  origin TEXT COLLATE \"C\" NOT NULL,"
    "  requests BIGINT NOT NULL DEFAULT 0 CHECK (requests >= 0),"
    "  tokens BIGINT NOT NULL DEFAULT 0 CHECK (tokens >= 0),"
    "  updated_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (key_id, day, origin)"
    ");"
    "CREATE TRIGGER client_keys_notify AFTER INSERT OR UPDATE OR DELETE ON client_keys"
    " FOR EACH ROW EXECUTE FUNCTION drover_notify();";

/* 7: audit rows get their id from the engine: several gateways writing at once took the same
 * max(id) + 1 and one row was refused. SQLite's INTEGER PRIMARY KEY is the rowid already. */
static const char audit_id_sqlite_sql[] = "SELECT 1;";
static const char audit_id_pg_sql[] =
    "CREATE SEQUENCE audit_log_id_seq OWNED BY audit_log.id;"
    "SELECT setval('audit_log_id_seq', coalesce((SELECT max(id) FROM audit_log), 0) + 1, false);"
    "ALTER TABLE audit_log ALTER COLUMN id SET DEFAULT nextval('audit_log_id_seq');";

static const struct store_migration migrations[] = {
    {1, nodes_sqlite_sql, nodes_pg_sql},
    /* 2: durable fleet operations and their dead letters (docs/ops.md) */
    {2, store_ops_schema_sql, store_ops_schema_pg_sql},
    /* 3: catalogue entries added through the admin API (the file's are not stored) */
    {3, store_catalogue_schema_sql, store_catalogue_schema_pg_sql},
    /* 4: client keys (hashed), usage per minute, the admin audit log (docs/security.md) */
    {4, store_keys_schema_sql, store_keys_schema_pg_sql},
    {5, sync_sqlite_sql, sync_pg_sql},
    {6, keys_sync_sqlite_sql, keys_sync_pg_sql},
    {7, audit_id_sqlite_sql, audit_id_pg_sql},
};

enum { N_MIGRATIONS = sizeof migrations / sizeof migrations[0] };

int store_migrations_count(void)
{
    return N_MIGRATIONS;
}

static int read_version(struct store_db *db, int *out)
{
    struct store_stmt *st = NULL;
    int rc = store_prepare(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", &st);
    if (!rc) {
        rc = store_step(st);
        if (rc == STORE_ROW) {
            *out = (int)store_col_int64(st, 0);
            rc = 0;
        } else if (rc == STORE_DONE) {
            rc = GW_E_IO;
        }
    }
    store_finalize(st);
    return rc;
}

static int record(struct store_db *db, int version)
{
    struct store_stmt *st = NULL;
    int rc = store_prepare(
        db, "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)", &st);
    if (!rc) {
        store_bind_int64(st, 1, version);
        store_bind_int64(st, 2, (int64_t)clock_wall_ms());
        rc = store_step(st);
        if (rc == STORE_DONE) rc = 0;
    }
    store_finalize(st);
    return rc;
}

/* One step: in a single transaction, read the version and apply the next migration if any.
 * *applied tells whether it did. */
static int step(struct store_db *db, int *version, int *applied, struct gw_error *err)
{
    const char *label = store_db_label(db);
    bool is_pg = store_db_engine(db) == STORE_ENGINE_POSTGRES;
    *applied = 0;
    if (store_db_begin(db)) return store_db_error(db, label, err);
    int rc = 0;
    if (is_pg) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d)", STORE_PG_MIGRATION_LOCK);
        rc = store_exec(db, sql);
    }
    if (!rc)
        rc = store_exec(db, is_pg ? "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                    "version INTEGER PRIMARY KEY, applied_ms BIGINT)"
                                  : "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                    "version INTEGER PRIMARY KEY, applied_ms INTEGER)");
    int cur = 0;
    if (!rc) rc = read_version(db, &cur);
    if (rc) {
        char what[200];
        snprintf(what, sizeof what, "%s: schema_migrations", label);
        store_db_error(db, what, err);
        goto fail;
    }
    if (cur > N_MIGRATIONS) {
        gw_error_set(err, GW_E_INVALID,
                     "%s: schema version %d is newer than this drover knows (%d)", label, cur,
                     N_MIGRATIONS);
        goto fail;
    }
    if (cur < N_MIGRATIONS) {
        const struct store_migration *m = &migrations[cur];
        if (m->version != cur + 1) { /* a merge that numbered two migrations alike */
            gw_error_set(err, GW_E_INVALID, "%s: migration %d is listed as %d", label, cur + 1,
                         m->version);
            goto fail;
        }
        if (store_exec(db, is_pg ? m->pg_sql : m->sqlite_sql) || record(db, m->version)) {
            char what[200];
            snprintf(what, sizeof what, "%s: migration %d", label, m->version);
            store_db_error(db, what, err);
            goto fail;
        }
        cur = m->version;
        *applied = 1;
    }
    if (store_db_commit(db)) {
        char what[200];
        snprintf(what, sizeof what, "%s: commit", label);
        store_db_error(db, what, err);
        goto fail;
    }
    *version = cur;
    return 0;
fail:
    store_db_rollback(db);
    return err->code ? err->code : GW_E_IO;
}

int store_migrate(struct store_db *db, int *version, struct gw_error *err)
{
    struct gw_error local = {0};
    if (!err) err = &local;
    for (;;) {
        int applied = 0;
        int rc = step(db, version, &applied, err);
        if (rc) return rc;
        if (!applied) return 0;
        const char *label = store_db_label(db);
        char q[200];
        LOGI("store_migrated", "store=%s version=%d", log_quote(q, sizeof q, label, strlen(label)),
             *version);
    }
}
