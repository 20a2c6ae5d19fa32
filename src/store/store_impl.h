/* store_impl — what the store's own files share (not for other modules). Store thread only,
 * except opening and migrating, which store_open runs on the caller's thread before the store
 * thread exists. */
#ifndef DROVER_STORE_STORE_IMPL_H
#define DROVER_STORE_STORE_IMPL_H
#include <sqlite3.h>
#include <stdbool.h>

#include "base/err.h"
#include "store/store_db.h"

/* The number of migrations this build knows (the newest schema version). */
int store_migrations_count(void);

/* Applies every migration newer than the database's version, each in its own transaction, and
 * records it in schema_migrations. On PostgreSQL each step also holds
 * pg_advisory_xact_lock(STORE_PG_MIGRATION_LOCK), so gateways starting together apply each
 * migration once. *version gets the schema version afterwards. Refuses a database whose
 * version is newer than this build (GW_E_INVALID). Messages start with the store's label. */
int store_migrate(struct store_db *db, int *version, struct gw_error *err) WUR;
enum { STORE_PG_MIGRATION_LOCK = 0x64726f76 }; /* "drov" */

/* A connection. SQLite: takes an open, configured handle. PostgreSQL: connects to url (a
 * libpq connection string or URI; its own connect_timeout, options and target_session_attrs
 * win over the defaults given here) within connect_timeout_ms per host, sets statement_timeout
 * to statement_timeout_ms unless the URL set one, and waits at most statement_timeout_ms plus
 * a margin for any answer. The reason of a failure is "postgres: …" in err. */
struct store_db *store_db_wrap_sqlite(sqlite3 *lite, const char *path);
int store_db_connect_pg(const char *url, unsigned connect_timeout_ms, unsigned statement_timeout_ms,
                        struct store_db **out, struct gw_error *err) WUR;
void store_db_close(struct store_db *db); /* NULL is fine */

/* PostgreSQL: names this session's writes in the NOTIFY payloads of the change triggers
 * (SET drover.origin), so a gateway can skip its own changes. No-op on SQLite. */
int store_db_set_origin(struct store_db *db, const char *origin) WUR;
/* The libpq connection (PGconn *) of a PostgreSQL db, for store_watch; NULL for SQLite. */
void *store_db_pgconn(struct store_db *db);

/* "PATH" for SQLite, "postgres HOST:PORT/DB" for PostgreSQL: the prefix of messages. */
const char *store_db_label(const struct store_db *db);
/* The PostgreSQL connection was lost or timed out: close it and connect again. */
bool store_db_is_broken(const struct store_db *db);

/* One job's transaction: BEGIN IMMEDIATE (SQLite) or BEGIN (PostgreSQL); COMMIT; ROLLBACK if
 * one is open (never fails). */
int store_db_begin(struct store_db *db) WUR;
int store_db_commit(struct store_db *db) WUR;
void store_db_rollback(struct store_db *db);

#endif
