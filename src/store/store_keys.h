/* store_keys — client keys (hashed), per-minute usage and the admin audit log (DESIGN §10).
 * Keys: one row per key id with the SHA-256 of its secret (never the secret) and its spec
 * (entitlements and limits, JSON validated by the gateway before it is written); a revoked key
 * keeps its row (revoked_ms set) so the store remembers that client auth was ever configured.
 * Usage: counters per (minute, key, model, node), added to (never replaced) by batches the
 * gateway flushes. Audit: append-only. The loop thread calls; the store thread runs. */
#ifndef DROVER_STORE_STORE_KEYS_H
#define DROVER_STORE_STORE_KEYS_H
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* ---- keys ------------------------------------------------------------------------------ */

struct store_key_row {
    char *id;          /* "key_" + 16 hex */
    char *secret_hash; /* hex SHA-256 of the secret */
    char *prefix;      /* the first characters of the secret, to recognise it ("dk-Ab12") */
    char *spec_json;   /* name, owner, team, models, endpoints, limits, expires_ms */
    int64_t created_ms, updated_ms;
    int64_t revoked_ms; /* 0: active */
};

void store_key_row_clear(struct store_key_row *r);
void store_key_rows_free(struct store_key_row *v, size_t n);
/* Every key, revoked ones too, by id. Start-up only (synchronous). */
int store_load_keys(struct store *s, struct store_key_row **out, size_t *n,
                    struct gw_error *err) WUR;
/* Asynchronous upsert of the whole row (copied at call time). done may be NULL. */
void store_put_key(struct store *s, const struct store_key_row *r, store_done_fn done, void *ctx);

/* ---- usage ----------------------------------------------------------------------------- */

struct store_usage_row {
    int64_t minute; /* unix minute (unix ms / 60000) */
    char *key_id, *model, *node;
    uint64_t requests, errors, prompt_tokens, completion_tokens;
};

enum store_usage_group {
    STORE_USAGE_BY_KEY,
    STORE_USAGE_BY_MODEL,
    STORE_USAGE_BY_NODE,
    STORE_USAGE_BY_MINUTE,
};

struct store_usage_query {
    char *key_id, *model; /* owned by the caller; NULL: any */
    int64_t from_minute;  /* inclusive */
    int64_t to_minute;    /* exclusive */
    enum store_usage_group group_by;
    size_t max_rows; /* the answer is cut at this many rows (truncated set) */
};

/* Results of a query: rows grouped as asked (the grouped column is filled, others are NULL
 * or 0). Owned by the caller; filled on the store thread before done runs. */
struct store_usage_result {
    struct store_usage_row *rows;
    size_t n;
    int truncated;
};

void store_usage_rows_free(struct store_usage_row *v, size_t n);
/* Adds the rows' counters to the stored ones, in one transaction. Takes v (freed after). */
void store_add_usage(struct store *s, struct store_usage_row *v, size_t n, store_done_fn done,
                     void *ctx);
/* Asynchronous grouped sum. q is copied; res must live until done. */
void store_query_usage(struct store *s, const struct store_usage_query *q,
                       struct store_usage_result *res, store_done_fn done, void *ctx);
/* Synchronous grouped sum (start-up: the budgets' usage so far). */
int store_query_usage_sync(struct store *s, const struct store_usage_query *q,
                           struct store_usage_result *res, struct gw_error *err) WUR;

/* ---- audit ----------------------------------------------------------------------------- */

struct store_audit_row {
    int64_t id, at_ms;
    char *actor, *role, *peer, *method, *path, *summary;
};

struct store_audit_result {
    struct store_audit_row *rows; /* newest first */
    size_t n;
};

void store_audit_rows_free(struct store_audit_row *v, size_t n);
/* Appends one row (copied; id and at_ms ignored: assigned by the store and the wall clock). */
void store_add_audit(struct store *s, const struct store_audit_row *r, store_done_fn done,
                     void *ctx);
/* The newest rows (at most limit) with id < before_id (0: no bound). res lives until done. */
void store_query_audit(struct store *s, int64_t before_id, size_t limit,
                       struct store_audit_result *res, store_done_fn done, void *ctx);

extern const char store_keys_schema_sql[];    /* SQLite */
extern const char store_keys_schema_pg_sql[]; /* PostgreSQL */

#endif
