/* store_catalogue — catalogue entries added through the admin API, one row per model id with
 * the entry's JSON (validated by the gateway before it is written). The loop thread calls;
 * the store thread runs. */
#ifndef DROVER_STORE_STORE_CATALOGUE_H
#define DROVER_STORE_STORE_CATALOGUE_H
#include <stddef.h>

#include "store/store.h"

struct store_cat_row {
    char *id, *json;
};

/* Start-up only (synchronous). */
int store_load_catalogue(struct store *s, struct store_cat_row **out, size_t *n,
                         struct gw_error *err) WUR;
void store_catalogue_free(struct store_cat_row *v, size_t n);
/* Store thread (inside a job): the entry id (NULL: every entry). */
int store_catalogue_read(struct store_db *db, const char *id, struct store_cat_row **out, size_t *n,
                         struct gw_error *err) WUR;
/* Asynchronous upsert / delete; strings copied at call time. */
void store_put_catalogue(struct store *s, const char *id, const char *json, store_done_fn done,
                         void *ctx);
void store_delete_catalogue(struct store *s, const char *id, store_done_fn done, void *ctx);

/* Migration SQL, SQLite and PostgreSQL (the store's migration list). */
extern const char store_catalogue_schema_sql[];
extern const char store_catalogue_schema_pg_sql[];

#endif
