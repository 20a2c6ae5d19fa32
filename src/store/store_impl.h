/* store_impl — what the store's own files share (not for other modules). Store thread only,
 * except store_migrate, which store_open runs on the caller's thread before the store thread
 * exists. */
#ifndef DROVER_STORE_STORE_IMPL_H
#define DROVER_STORE_STORE_IMPL_H
#include <sqlite3.h>

#include "base/err.h"

/* The number of migrations this build knows (the newest schema version). */
int store_migrations_count(void);

/* Applies every migration newer than the database's version, each in its own transaction, and
 * records it in schema_migrations. *version gets the schema version afterwards. Refuses a
 * database whose version is newer than this build (GW_E_INVALID). Messages start with path. */
int store_migrate(sqlite3 *db, const char *path, int *version, struct gw_error *err) WUR;

/* Fills err from the connection's last error: GW_E_INVALID for constraint violations, GW_E_IO
 * otherwise. Returns the code. what names the step ("insert node"). */
int store_db_error(sqlite3 *db, const char *what, struct gw_error *err);

#endif
