/* store — durable state in SQLite, on a thread of its own (DESIGN §2). The loop thread submits
 * jobs; each job runs on the store thread with the database handle, and its completion runs
 * back on the loop thread (uv_async). Nothing on the request path waits for it.
 *
 * Durability: WAL, synchronous=FULL; a job's completion is called only after its transaction
 * committed, so an admin API that answers from the completion never acknowledges a change that
 * kill -9 could lose. Schema changes are numbered migrations applied at open, in order, each in
 * its own transaction, recorded in schema_migrations. */
#ifndef DROVER_STORE_STORE_H
#define DROVER_STORE_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"

struct sqlite3;
struct store;

struct store_config {
    const char *path;         /* file path; ":memory:" for tests */
    unsigned busy_timeout_ms; /* default 5000 */
};

/* Opens (creating the file if missing; its directory must exist and be writable), sets WAL,
 * synchronous=FULL and foreign_keys=ON, applies migrations, starts the thread. Refuses an
 * existing file that is not a SQLite database without modifying it. On failure returns GW_E_*
 * (GW_E_IO, or GW_E_INVALID for a foreign file or a schema newer than this build) with a
 * one-line reason in err ("PATH: …") and *out NULL. Loop thread. */
int store_open(uv_loop_t *loop, const struct store_config *cfg, struct store **out,
               struct gw_error *err) WUR;
/* Runs every job already submitted and calls their completions (in order, on the calling
 * thread, before returning; jobs those completions submit run too), stops the thread, closes
 * the database. It never re-enters uv_run, so it is safe inside any loop callback (the SIGTERM
 * handler, a store completion). Call from the loop thread. The struct itself is freed in the
 * close callback of its async handle: the loop must run once more afterwards (as every
 * uv_run + uv_loop_close shutdown does). NULL is fine; s is invalid after the call. */
void store_close(struct store *s);

/* The schema version after open (number of migrations applied). */
int store_schema_version(const struct store *s);

/* Generic jobs, for tables that later modules add (catalogue, ops). run is called on the
 * store thread inside BEGIN IMMEDIATE … COMMIT (rolled back when run returns non-zero);
 * done on the loop thread with run's result and message. ctx belongs to the caller until
 * done returns. */
typedef int (*store_run_fn)(struct sqlite3 *db, void *ctx, struct gw_error *err);
typedef void (*store_done_fn)(void *ctx, int rc, const char *errmsg);
void store_submit(struct store *s, store_run_fn run, store_done_fn done, void *ctx);

/* Synchronous access for start-up (before serving) and for tests: runs fn on the store thread
 * inside a transaction and waits for it. Never use it on the request path. */
int store_sync(struct store *s, store_run_fn run, void *ctx, struct gw_error *err) WUR;

/* ---- nodes ---------------------------------------------------------------------------- */

struct store_label {
    char *key, *value;
};

struct store_node {
    char *name;        /* primary key */
    char *url;         /* agent or engine base URL */
    char *kind;        /* "agent", "openai", "llamacpp", "ollama", "vllm" */
    char *engine;      /* for agents: the engine kind behind it; else NULL */
    char *admin;       /* "pending", "approved", "draining", "removed" (a tombstone) */
    char *secret_hash; /* hex SHA-256 of the node secret, or NULL */
    struct store_label *labels;
    size_t n_labels;
    char *discovery_json; /* may be NULL */
    char *inventory_json; /* last known inventory, may be NULL */
    bool excluded;
    unsigned consecutive_faults;
    unsigned ejections;
    uint64_t faults_total;
    int64_t created_ms, updated_ms; /* unix ms */
};

/* Deep copy, and release of every string and the labels (all owned). */
void store_node_copy(struct store_node *dst, const struct store_node *src);
void store_node_clear(struct store_node *n);

/* All nodes, by name. Start-up only (synchronous). *out is an array to free with
 * store_nodes_free. */
int store_load_nodes(struct store *s, struct store_node **out, size_t *n, struct gw_error *err) WUR;
void store_nodes_free(struct store_node *v, size_t n);

/* Asynchronous upsert of the whole row, labels included (replaced), in one transaction. The
 * node is copied at call time. done may be NULL. */
void store_put_node(struct store *s, const struct store_node *n, store_done_fn done, void *ctx);
/* Deletes the row and its labels (the secret hash goes with it). Deleting a missing name is
 * not an error. */
void store_delete_node(struct store *s, const char *name, store_done_fn done, void *ctx);

#endif
