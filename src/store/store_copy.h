/* store_copy — copies every durable row of one store into another (`drover store migrate`,
 * e.g. a single gateway's SQLite file into the PostgreSQL that several gateways will share).
 * Both stores are open (so both carry this build's schema); the destination must be empty. */
#ifndef DROVER_STORE_STORE_COPY_H
#define DROVER_STORE_STORE_COPY_H
#include <stddef.h>

#include "store/store.h"

/* The tables copied, in foreign-key order (parents first), NULL-terminated. A migration that
 * adds a table adds it here too (test_store checks that every table is listed). */
extern const char *const store_copy_tables[];

/* Reads every row of every listed table from src, then writes them all into dst in one
 * transaction: all or nothing. Refuses (GW_E_STATE) a destination that holds any row of a
 * listed table. counts[i] (optional, as many as tables) gets the rows copied per table.
 * Synchronous (store_sync): not for a serving gateway. */
int store_copy(struct store *src, struct store *dst, size_t *counts, struct gw_error *err) WUR;

#endif
