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
    int64_t dead_ms; /* dead letters only */
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
/* Moves the row to ops_dead (with o's fields and dead_ms) in one transaction. */
void store_bury_op(struct store *s, const struct store_op *o, store_done_fn done, void *ctx);
/* Moves dead letter dead_id back into ops as o (attempts 0, due now) in one transaction. */
void store_raise_op(struct store *s, int64_t dead_id, const struct store_op *o, store_done_fn done,
                    void *ctx);

/* Migration SQL for the two tables, SQLite and PostgreSQL (the store's migration list). */
extern const char store_ops_schema_sql[];
extern const char store_ops_schema_pg_sql[];

#endif
