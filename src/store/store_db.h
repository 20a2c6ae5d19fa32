/* store_db — one small statement API over the store's two engines (SQLite, PostgreSQL via
 * libpq), so that every table module (nodes, ops, catalogue, …) writes its SQL once. Modelled
 * on SQLite's own: prepare, bind, step, column, reset, finalize.
 *
 * SQL is written with numbered placeholders ?1, ?2, … (both engines; for PostgreSQL they are
 * rewritten to $1, $2, … outside quoted literals). Values are always bound, never formatted
 * into SQL text. DML must be portable (INSERT … ON CONFLICT … DO UPDATE, no INSERT OR REPLACE,
 * no engine functions); DDL differs per engine and lives in the migrations (store_migrations.c).
 * PostgreSQL gets every value as text and infers its type from the statement; columns come
 * back as text, and store_col_int64 parses them.
 *
 * Thread: a struct store_db belongs to one thread at a time (the store thread once store_open
 * returned); statements never outlive their job. */
#ifndef DROVER_STORE_STORE_DB_H
#define DROVER_STORE_STORE_DB_H
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

enum store_engine { STORE_ENGINE_SQLITE = 0, STORE_ENGINE_POSTGRES = 1 };

/* The store is unreachable (PostgreSQL down, connection lost, no connection yet): nothing was
 * written, or, for a connection lost during COMMIT, possibly written. Admin writes answer 503
 * store_unavailable for it. */
enum { STORE_E_UNAVAILABLE = GW_E_CLOSED };

/* store_step's results besides a negative error. */
enum { STORE_DONE = 0, STORE_ROW = 1 };

struct store_db;
struct store_stmt;

enum store_engine store_db_engine(const struct store_db *db);

/* Prepares sql (placeholders ?1 … ?N). On failure returns GW_E_* and *out is NULL; the reason
 * is the connection's last error (store_db_error). */
int store_prepare(struct store_db *db, const char *sql, struct store_stmt **out) WUR;
/* Bindings are copied; NULL text binds SQL NULL. i counts from 1. They survive store_reset. */
void store_bind_text(struct store_stmt *st, int i, const char *s);
void store_bind_int64(struct store_stmt *st, int i, int64_t v);
void store_bind_null(struct store_stmt *st, int i);
/* Runs the statement (the first call) and moves to the next row: STORE_ROW, STORE_DONE, or a
 * negative GW_E_* (GW_E_INVALID for a constraint or a value the schema refuses,
 * STORE_E_UNAVAILABLE when the connection is gone, GW_E_IO otherwise). */
int store_step(struct store_stmt *st) WUR;
/* The current row's columns (i from 0). Text is NULL for SQL NULL and valid until the next
 * step, reset or finalize. Column names are known after the first step. */
const char *store_col_text(struct store_stmt *st, int i);
int64_t store_col_int64(struct store_stmt *st, int i);
bool store_col_is_null(struct store_stmt *st, int i);
int store_col_count(struct store_stmt *st);
const char *store_col_name(struct store_stmt *st, int i);
/* Ready to run again with the same (or re-bound) values. */
void store_reset(struct store_stmt *st);
void store_finalize(struct store_stmt *st); /* NULL is fine */

/* Runs constant SQL without values; it may hold several statements (migrations). */
int store_exec(struct store_db *db, const char *sql) WUR;

/* Fills err from the connection's last error as "what: reason" and returns its code (the one
 * store_step or store_exec returned). */
int store_db_error(struct store_db *db, const char *what, struct gw_error *err);

#endif
