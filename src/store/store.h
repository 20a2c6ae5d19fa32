/* store — durable state in SQLite (embedded, the default) or PostgreSQL (several gateways), on
 * a thread of its own (DESIGN §2, §9). The loop thread submits jobs; each job runs on the store
 * thread with the database connection, and its completion runs back on the loop thread
 * (uv_async). Nothing on the request path waits for it. Jobs are written once for both engines
 * with the statement API of store/store_db.h.
 *
 * Durability: a job's completion is called only after its transaction committed (SQLite: WAL,
 * synchronous=FULL; PostgreSQL: its own commit, synchronous_commit as the server is set), so an
 * admin API that answers from the completion never acknowledges a change that kill -9 of the
 * gateway could lose. Schema changes are numbered migrations applied at open, in order, each in
 * its own transaction, recorded in schema_migrations. PostgreSQL down: jobs fail at once with
 * STORE_E_UNAVAILABLE while the store thread reconnects with backoff; nothing hangs. */
#ifndef DROVER_STORE_STORE_H
#define DROVER_STORE_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "store/store_db.h"

struct store;

struct store_config {
    enum store_engine engine;      /* STORE_ENGINE_SQLITE (0, the default) or _POSTGRES */
    const char *path;              /* SQLite: file path; ":memory:" for tests */
    unsigned busy_timeout_ms;      /* SQLite: default 5000 */
    const char *url;               /* PostgreSQL: a libpq connection string or URI; multi-host
                                    * with target_session_attrs=read-write as libpq takes it */
    unsigned connect_timeout_ms;   /* PostgreSQL: per host, default 5000 (unless url sets one) */
    unsigned statement_timeout_ms; /* PostgreSQL: default 10000 (unless url's options set one);
                                    * any answer is awaited at most this + 2 s */
    const char *origin;            /* PostgreSQL: this gateway's name in change notifications
                                    * (docs/store.md, "Several gateways"); may be NULL */
};

/* SQLite: opens (creating the file if missing; its directory must exist and be writable), sets
 * WAL, synchronous=FULL and foreign_keys=ON. Refuses an existing file that is not a SQLite
 * database without modifying it. PostgreSQL: connects (bounded by connect_timeout_ms). Then
 * applies migrations and starts the thread. On failure returns GW_E_* (GW_E_IO;
 * STORE_E_UNAVAILABLE when PostgreSQL cannot be reached; GW_E_INVALID for a foreign file or a
 * schema newer than this build) with a one-line reason in err ("PATH: …", "postgres: …") and
 * *out NULL; the URL (it may hold a password) is never in a message. Loop thread. */
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

/* False while the PostgreSQL connection is down (jobs fail at once with STORE_E_UNAVAILABLE,
 * and admin writes can answer 503 store_unavailable without submitting). Always true for
 * SQLite. Any thread. */
bool store_is_available(struct store *s);

/* The engine the store runs on. Any thread. */
enum store_engine store_engine(const struct store *s);

/* Generic jobs, for tables that later modules add (catalogue, ops). run is called on the
 * store thread inside one transaction (rolled back when run returns non-zero), with the
 * connection for store_prepare & co.; done on the loop thread with run's result and message.
 * ctx belongs to the caller until done returns. */
typedef int (*store_run_fn)(struct store_db *db, void *ctx, struct gw_error *err);
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
/* Several gateways: upsert that, for an existing row, writes only what this gateway observes
 * (discovery, inventory, fault record) and leaves admin intent, identity and labels as stored. */
void store_put_node_facts(struct store *s, const struct store_node *n, store_done_fn done,
                          void *ctx);
/* Store thread (inside a job): the row named name (NULL: every row, by name) with its labels;
 * *n is 0 when there is none. Free with store_nodes_free. */
int store_nodes_read(struct store_db *db, const char *name, struct store_node **out, size_t *n,
                     struct gw_error *err) WUR;
/* PostgreSQL: NOTIFY drover with payload, sent after the jobs queued before it committed (FIFO).
 * No-op on SQLite. */
void store_notify(struct store *s, const char *payload);
/* Deletes the row and its labels (the secret hash goes with it). Deleting a missing name is
 * not an error. */
void store_delete_node(struct store *s, const char *name, store_done_fn done, void *ctx);

#endif
