/* store_ops — the rows of durable fleet operations (docs/ops.md) and their dead letters.
 * The gateway keeps every row in memory and writes each change through these calls (the
 * store thread runs them; done runs on the loop thread after the commit). Ids are given by
 * the gateway (max id + 1 at load), so a row can be written before any answer comes back. */
#ifndef DROVER_STORE_STORE_OPS_H
#define DROVER_STORE_STORE_OPS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct store_op {
    int64_t id;
    char *node;        /* node name */
    char *target;      /* "model:NAME" or "backend:NAME" */
    char *op;          /* "install", "upgrade", "delete", "load", "unload" */
    char *params_json; /* JSON object or NULL */
    char *state;       /* "pending", "running", "done" (ops); NULL for dead letters */
    unsigned attempts; /* failed attempts so far */
    int64_t next_try_ms;
    char *last_error, *last_class; /* may be NULL */
    int64_t created_ms, updated_ms;
    int64_t dead_ms;        /* dead letters only */
    int64_t lease_until_ms; /* ops, several gateways: the attempt's lease ends (database clock) */
};

void store_op_copy(struct store_op *dst, const struct store_op *src); /* deep */
void store_op_clear(struct store_op *o);
void store_ops_free(struct store_op *v, size_t n);

/* Start-up only (synchronous): every row of ops (dead = false) or ops_dead (dead = true),
 * ordered by id. */
int store_load_ops(struct store *s, bool dead, struct store_op **out, size_t *n,
                   struct gw_error *err) WUR;

/* Asynchronous; the row is copied at call time; done may be NULL. */
void store_put_op(struct store *s, const struct store_op *o, store_done_fn done, void *ctx);
void store_delete_op(struct store *s, int64_t id, store_done_fn done, void *ctx);
/* Deletes dead letter id (the admin cancelled it: it will not be retried). */
void store_delete_dead_op(struct store *s, int64_t id, store_done_fn done, void *ctx);
/* Moves the row to ops_dead (with o's fields and dead_ms) in one transaction. */
void store_bury_op(struct store *s, const struct store_op *o, store_done_fn done, void *ctx);
/* Moves dead letter dead_id back into ops as o (attempts 0, due now) in one transaction. */
void store_raise_op(struct store *s, int64_t dead_id, const struct store_op *o, store_done_fn done,
                    void *ctx);

/* ---- several gateways (PostgreSQL; docs/store.md) ---------------------------------------- */

/* Store thread (inside a job): the row id of ops (dead = false) or ops_dead; id <= 0: every row. */
int store_ops_read(struct store_db *db, bool dead, int64_t id, struct store_op **out, size_t *n,
                   struct gw_error *err) WUR;

/* Start-up only (synchronous): the first id of a block of STORE_OPS_ID_BLOCK ids no other
 * gateway uses (PostgreSQL's sequence ops_id_block). */
enum { STORE_OPS_ID_BLOCK = 1000000000 };
int store_ops_id_block(struct store *s, int64_t *first, struct gw_error *err) WUR;

/* Takes the lease on row id for lease_ms (database clock) for owner, if the row is pending and
 * due at now_ms or its previous lease expired; FOR UPDATE SKIP LOCKED, so gateways claiming
 * together never wait on each other. done gets claimed and the row as stored (claimed: state
 * running, attempts so far; not claimed: as another gateway left it, NULL when it is no longer in
 * ops or rc is set) on the loop thread; the row is borrowed for the call. */
typedef void store_claim_fn(void *ctx, int rc, bool claimed, const struct store_op *row);
void store_claim_op(struct store *s, int64_t id, const char *owner, int64_t now_ms,
                    int64_t lease_ms, store_claim_fn *done, void *ctx);
/* Extends owner's lease on row id (running) to lease_ms from now (database clock), while its
 * attempt runs; GW_E_STATE when the lease was lost (expired and taken, or the row finished). */
void store_renew_op(struct store *s, int64_t id, const char *owner, int64_t lease_ms,
                    store_done_fn done, void *ctx);
/* Writes the outcome of an attempt owner holds the lease of and ends the lease; bury moves the
 * row to ops_dead instead. A lease that was lost (expired and taken) writes nothing and fails
 * with GW_E_STATE. */
void store_finish_op(struct store *s, const struct store_op *o, const char *owner, bool bury,
                     store_done_fn done, void *ctx);

/* Migration SQL for the two tables, SQLite and PostgreSQL (the store's migration list). */
extern const char store_ops_schema_sql[];
extern const char store_ops_schema_pg_sql[];

#endif
