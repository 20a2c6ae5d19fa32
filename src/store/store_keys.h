/* store_keys — client keys (hashed), per-minute usage and the admin audit log (DESIGN §10).
 * Keys: one row per key id with the SHA-256 of its secret (never the secret) and its spec
 * (entitlements and limits, JSON validated by the gateway before it is written); a revoked key
 * keeps its row (revoked_ms set) so the store remembers that client auth was ever configured.
 * Usage: counters per (minute, key, model, node), added to (never replaced) by batches the
 * gateway flushes. Audit: append-only. The loop thread calls; the store thread runs. */
#ifndef DROVER_STORE_STORE_KEYS_H
#define DROVER_STORE_STORE_KEYS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* ---- keys ------------------------------------------------------------------------------ */

/* What a write of a key row changes. A key row is shared by every gateway on the store, and two
 * admins may change one key through two gateways at once: each write sets only its own columns,
 * so a rotation through one gateway and a change of limits through another both hold, and
 * nothing ever clears revoked_ms (a revoked key stays revoked, whatever another write says). */
enum store_key_change {
    STORE_KEY_CREATE, /* the whole row (a new key) */
    STORE_KEY_SECRET, /* secret_hash, prefix, updated_ms (rotation) */
    STORE_KEY_SPEC,   /* spec, updated_ms */
    STORE_KEY_REVOKE, /* revoked_ms, updated_ms, unless revoked already */
};

struct store_key_row {
    enum store_key_change change; /* store_put_key only */
    char *id;                     /* "key_" + 16 hex */
    char *secret_hash;            /* hex SHA-256 of the secret */
    char *prefix;    /* the first characters of the secret, to recognise it ("dk-Ab12") */
    char *spec_json; /* name, owner, team, models, endpoints, limits, expires_ms */
    int64_t created_ms, updated_ms;
    int64_t revoked_ms; /* 0: active */
};

void store_key_row_clear(struct store_key_row *r);
void store_key_rows_free(struct store_key_row *v, size_t n);
/* Every key, revoked ones too, by id. Start-up only (synchronous). */
int store_load_keys(struct store *s, struct store_key_row **out, size_t *n,
                    struct gw_error *err) WUR;
/* Asynchronous write of the columns r->change names (copied at call time). done may be NULL. */
void store_put_key(struct store *s, const struct store_key_row *r, store_done_fn done, void *ctx);
/* Store thread (inside a job): the row of key id (NULL: every row, by id), revoked ones too; *n
 * is 0 when there is none. Free with store_key_rows_free. */
int store_keys_read(struct store_db *db, const char *id, struct store_key_row **out, size_t *n,
                    struct gw_error *err) WUR;

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

/* ---- limits shared by several gateways (docs/deploy.md "Client keys and limits") ---------
 * One bucket per key and kind (requests, tokens) in key_limits: level is what no gateway holds,
 * in units × 60000, refilled at the key's rate per minute by the database's clock, up to one
 * minute's worth. A gateway gives back what it did not spend of its last allowance (negative: it
 * spent more, a debt) and takes its next one, with the row locked, so the allowances of all the
 * gateways never exceed what the bucket held. Consumption is added to key_counters per key, UTC
 * day and gateway (origin), which gives the budgets' fleet totals; key_id '' is each gateway's
 * liveness. */

/* One key in a reconciliation: what this gateway gives and asks, and what it gets back. */
struct store_key_sync {
    char *key_id; /* owned */
    void *ref;    /* the caller's, untouched */
    /* buckets: rate per minute (0: the key has no such limit), give and want in units × 60000 */
    uint64_t rpm, tpm;
    int64_t give_req, want_req, give_tok, want_tok;
    /* consumption since the last reconciliation, counted in key_counters under day */
    uint64_t requests, tokens;
    int64_t day;
    bool total; /* read the fleet's tokens for the key (it has a budget) */
    /* results: what was taken, and the untaken level (refilled to now; a bucket nobody used is
     * full) of each kind with a rate */
    int64_t got_req, level_req, got_tok, level_tok;
    bool has_level_req, has_level_tok;
    uint64_t day_tokens, month_tokens; /* the fleet's, today and since month_first_day */
};

struct store_limits_round {
    char *origin; /* this gateway (owned) */
    struct store_key_sync *v;
    size_t n;
    int64_t today, month_first_day; /* UTC days (unix ms / 86400000) */
    int64_t live_ms;                /* a gateway whose liveness row is older is gone */
    int64_t prune_before_day;       /* > 0: delete counters older, and buckets idle for a day */
    /* results */
    unsigned live_gateways; /* with this one */
    int64_t db_now_ms;
};

/* Takes the round (its entries, sorted by key id here: the locks are always taken in one order)
 * and runs it as one job: buckets, counters, this gateway's liveness, then the fleet totals.
 * done runs on the loop thread; the caller then frees the round with store_limits_round_free. */
void store_limits_sync(struct store *s, struct store_limits_round *r, store_done_fn done,
                       void *ctx);
void store_limits_round_free(struct store_limits_round *r);
/* The bucket arithmetic of one reconciliation (pure): refills level from at_ms to now_ms at rate
 * per minute (at most rate × 60000, one minute's worth), adds give (a debt when negative; the
 * level never falls below a day of refill in debt), then takes at most want of what is left
 * above zero into *got. Returns the new level. */
int64_t store_key_bucket_step(int64_t level, int64_t at_ms, int64_t now_ms, uint64_t rate,
                              int64_t give, int64_t want, int64_t *got);

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
