/* test_store — the store on its own thread, on both engines: every test runs on SQLite, and
 * again on PostgreSQL when DROVER_TEST_PG_URL names a database it may wipe (each test starts
 * from an empty public schema; tests/integration/test_pg.py starts a private cluster for it).
 * Open, migrations recorded once (also with several openers at once), every node field
 * round-tripped, labels replaced and cascaded, catalogue and operation rows, completions on the
 * loop thread after commit and in order, rollback of a failing job, store_close flushing what
 * is queued, durability of an acknowledged write across kill -9 of the writing process. SQLite
 * only: refusal of foreign files (left byte for byte) and of bad directories. PostgreSQL only:
 * an unreachable server refused at once, a lost connection replaced, jobs failing fast while
 * the server refuses us and succeeding again once it takes us back, statement timeout. Every
 * loop run is bounded by a watchdog timer; every child process is killed and reaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "store/store.h"
#include "store/store_catalogue.h"
#include "store/store_copy.h"
#include "store/store_keys.h"
#include "store/store_ops.h"
#include "store/store_watch.h"

enum {
    WATCHDOG_MS = 20000,
    N_MIGRATIONS = 7
}; /* nodes, ops, catalogue, keys, sync, keys sync,
       audit ids */

/* The engine the current group runs on, and PostgreSQL's URL. */
static enum store_engine g_engine = STORE_ENGINE_SQLITE;
static const char *g_pg_url;

static bool is_pg(void)
{
    return g_engine == STORE_ENGINE_POSTGRES;
}

/* ---- fixture -------------------------------------------------------------------------- */

struct fx {
    uv_loop_t loop;
    char dir[64];
    char path[128];
    uv_thread_t loop_thread;
};

/* Runs SQL on a connection of the test's own (not the store's). */
static void pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(g_pg_url);
    if (PQstatus(c) != CONNECTION_OK) fail_msg("postgres: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    ExecStatusType t = PQresultStatus(r);
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
        fail_msg("postgres: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    chmod(p, 0700); /* a read-only directory left by a test */
    return remove(p);
}

static int setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof *f);
    log_set_level(LOG_ERROR);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/drover-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/drover.db", f->dir);
    f->loop_thread = uv_thread_self();
    if (is_pg())
        pg_admin("SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE;"
                 " CREATE SCHEMA public");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    uv_run(&f->loop, UV_RUN_DEFAULT); /* close callbacks of closed stores */
    int rc = uv_loop_close(&f->loop);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS); /* before any assertion can skip it */
    xfree(f);
    assert_int_equal(rc, 0);
    return 0;
}

static void on_watchdog(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until *flag or the watchdog fires; fails the test on the latter. */
static void run_until(uv_loop_t *loop, const bool *flag)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_watchdog, WATCHDOG_MS, 0);
    while (!*flag && !expired) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_false(expired);
}

/* The fixture's configuration: path on SQLite, the URL on PostgreSQL. */
static struct store_config config_for(const char *path)
{
    return (struct store_config){.engine = g_engine,
                                 .path = path,
                                 .busy_timeout_ms = 2000,
                                 .url = g_pg_url,
                                 .connect_timeout_ms = 2000};
}

/* What the store's messages start with: the path, or "postgres HOST:PORT/DB". */
static void assert_label(const char *msg, const char *path)
{
    const char *want = is_pg() ? "postgres " : path;
    if (strncmp(msg, want, strlen(want)) != 0) fail_msg("\"%s\" should start with %s", msg, want);
}

static struct store *open_ok(struct fx *f, const char *path)
{
    struct store_config cfg = config_for(path);
    struct store *s = NULL;
    struct gw_error err = {0};
    int rc = store_open(&f->loop, &cfg, &s, &err);
    if (rc) fail_msg("store_open %s: %s", path, err.msg);
    assert_non_null(s);
    return s;
}

static void close_store(struct fx *f, struct store *s)
{
    store_close(s);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the async handle's close callback frees s */
}

/* A node with every field set, labels sorted by key (as loaded). */
static void make_node(struct store_node *n, const char *name, char *hash)
{
    static struct store_label labels[] = {{"gpu", "a10"}, {"zone", "eu-west \"1\""}};
    memset(n, 0, sizeof *n);
    n->name = (char *)name;
    n->url = "http://10.0.0.5:9300";
    n->kind = "agent";
    n->engine = "llamacpp";
    n->admin = "approved";
    sha256_hex("secret", 6, hash);
    n->secret_hash = hash;
    n->labels = labels;
    n->n_labels = 2;
    n->discovery_json = "{\"hostname\":\"gpu-01\",\"gpus\":[]}";
    n->inventory_json = "[\"llama3.2:1b\"]";
    n->excluded = true;
    n->consecutive_faults = UINT_MAX;
    n->ejections = 7;
    n->faults_total = (uint64_t)INT64_MAX;
    n->created_ms = 1763856000123;
    n->updated_ms = -1; /* any int64 survives */
}

static void assert_str_or_null(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_node_equal(const struct store_node *a, const struct store_node *b)
{
    assert_string_equal(a->name, b->name);
    assert_str_or_null(a->url, b->url);
    assert_str_or_null(a->kind, b->kind);
    assert_str_or_null(a->engine, b->engine);
    assert_str_or_null(a->admin, b->admin);
    assert_str_or_null(a->secret_hash, b->secret_hash);
    assert_str_or_null(a->discovery_json, b->discovery_json);
    assert_str_or_null(a->inventory_json, b->inventory_json);
    assert_int_equal(a->excluded, b->excluded);
    assert_int_equal(a->consecutive_faults, b->consecutive_faults);
    assert_int_equal(a->ejections, b->ejections);
    assert_true(a->faults_total == b->faults_total);
    assert_true(a->created_ms == b->created_ms);
    assert_true(a->updated_ms == b->updated_ms);
    assert_int_equal(a->n_labels, b->n_labels);
    for (size_t i = 0; i < a->n_labels; i++) {
        assert_string_equal(a->labels[i].key, b->labels[i].key);
        assert_string_equal(a->labels[i].value, b->labels[i].value);
    }
}

struct done_rec {
    struct fx *f;
    int calls;
    int rc;
    char msg[GW_ERROR_MSG_BYTES];
    bool is_done;
    bool on_loop_thread;
    int order[64];
    int n_order;
    bool committed[64];
};

static void on_done(void *ctx, int rc, const char *errmsg)
{
    struct done_rec *d = ctx;
    d->calls++;
    d->rc = rc;
    snprintf(d->msg, sizeof d->msg, "%s", errmsg ? errmsg : "");
    d->on_loop_thread = uv_thread_equal(&(uv_thread_t){uv_thread_self()}, &d->f->loop_thread);
    d->is_done = true;
}

static void put_wait(struct fx *f, struct store *s, const struct store_node *n, int want_rc)
{
    struct done_rec d = {.f = f};
    store_put_node(s, n, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.calls, 1);
    if (d.rc != want_rc) fail_msg("put: rc %d (%s), want %d", d.rc, d.msg, want_rc);
    assert_true(d.on_loop_thread);
}

static int count_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    /* ctx: in "SQL", out the count (a constant statement, no values). */
    struct {
        const char *sql;
        long long n;
    } *c = ctx;
    struct store_stmt *st = NULL;
    if (store_prepare(db, c->sql, &st)) return store_db_error(db, "prepare", err);
    int rc = store_step(st);
    c->n = rc == STORE_ROW ? store_col_int64(st, 0) : -1;
    rc = rc == STORE_ROW ? 0 : store_db_error(db, "step", err);
    store_finalize(st);
    return rc;
}

static long long count(struct store *s, const char *sql)
{
    struct {
        const char *sql;
        long long n;
    } c = {sql, -1};
    struct gw_error err = {0};
    if (store_sync(s, count_run, &c, &err)) fail_msg("%s: %s", sql, err.msg);
    return c.n;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_memory_roundtrip(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, ":memory:");
    assert_int_equal(store_schema_version(s), N_MIGRATIONS);
    assert_true(store_is_available(s));

    char hash[65];
    struct store_node n;
    make_node(&n, "gpu-01", hash);
    put_wait(f, s, &n, 0);
    /* A second node with every optional field NULL and zero counters. */
    struct store_node m = {.name = "a-static",
                           .url = "http://127.0.0.1:8081",
                           .kind = "openai",
                           .admin = "pending",
                           .created_ms = 1,
                           .updated_ms = 2};
    put_wait(f, s, &m, 0);

    struct store_node *v = NULL;
    size_t nv = 0;
    struct gw_error err = {0};
    assert_int_equal(store_load_nodes(s, &v, &nv, &err), 0);
    assert_int_equal(nv, 2);
    assert_node_equal(&v[0], &m); /* by name */
    assert_node_equal(&v[1], &n);
    assert_null(v[0].labels);

    struct store_node c;
    store_node_copy(&c, &v[1]);
    store_nodes_free(v, nv);
    assert_node_equal(&c, &n);
    store_node_clear(&c);
    assert_null(c.name);
    close_store(f, s);
    store_close(NULL);
}

static void test_migrations_recorded_once(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    assert_int_equal(store_schema_version(s), N_MIGRATIONS);
    assert_int_equal(count(s, "SELECT count(*) FROM schema_migrations"), N_MIGRATIONS);
    assert_int_equal(count(s, "SELECT max(version) FROM schema_migrations"), N_MIGRATIONS);
    long long applied = count(s, "SELECT applied_ms FROM schema_migrations WHERE version = 1");
    assert_true(applied > 1600000000000LL);
    assert_int_equal(count(s, is_pg() ? "SELECT count(*) FROM information_schema.columns"
                                        " WHERE table_schema = 'public' AND table_name = 'nodes'"
                                      : "SELECT count(*) FROM pragma_table_info('nodes')"),
                     14);
    close_store(f, s);

    s = open_ok(f, f->path);
    assert_int_equal(store_schema_version(s), N_MIGRATIONS);
    assert_int_equal(count(s, "SELECT count(*) FROM schema_migrations"), N_MIGRATIONS);
    assert_int_equal(count(s, "SELECT applied_ms FROM schema_migrations WHERE version = 1"),
                     applied);
    if (is_pg()) {
        /* a statement timeout is always set on the store's connection */
        assert_int_equal(count(s, "SELECT current_setting('statement_timeout') <> '0'"), 1);
    } else {
        /* The pragmas hold on the store's connection. */
        assert_int_equal(count(s, "SELECT foreign_keys FROM pragma_foreign_keys"), 1);
        assert_int_equal(count(s, "SELECT synchronous FROM pragma_synchronous"), 2); /* FULL */
        assert_int_equal(count(s, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
    }
    close_store(f, s);
}

static int bump_version_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    (void)ctx;
    if (store_exec(db, "INSERT INTO schema_migrations VALUES (999, 0)"))
        return store_db_error(db, "bump", err);
    return 0;
}

static void test_newer_schema_refused(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    struct gw_error err = {0};
    assert_int_equal(store_sync(s, bump_version_run, NULL, &err), 0);
    close_store(f, s);

    struct store_config cfg = config_for(f->path);
    s = (struct store *)&err; /* must come back NULL */
    assert_int_equal(store_open(&f->loop, &cfg, &s, &err), GW_E_INVALID);
    assert_null(s);
    assert_non_null(strstr(err.msg, "schema version 999 is newer"));
    assert_label(err.msg, f->path);
}

static void test_labels_replaced_and_cascaded(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    char hash[65];
    struct store_node n;
    make_node(&n, "gpu-01", hash);
    put_wait(f, s, &n, 0);
    assert_int_equal(count(s, "SELECT count(*) FROM node_labels"), 2);

    struct store_label one[] = {{"rack", "7"}};
    n.labels = one;
    n.n_labels = 1;
    n.admin = "draining";
    put_wait(f, s, &n, 0);
    struct store_node *v = NULL;
    size_t nv = 0;
    assert_int_equal(store_load_nodes(s, &v, &nv, NULL), 0);
    assert_int_equal(nv, 1);
    assert_node_equal(&v[0], &n);
    store_nodes_free(v, nv);
    assert_int_equal(count(s, "SELECT count(*) FROM node_labels"), 1);

    struct done_rec d = {.f = f};
    store_delete_node(s, "gpu-01", on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    assert_int_equal(count(s, "SELECT count(*) FROM nodes"), 0);
    assert_int_equal(count(s, "SELECT count(*) FROM node_labels"), 0);

    /* Deleting a missing name is fine; so is a NULL done. */
    d = (struct done_rec){.f = f};
    store_delete_node(s, "nobody", on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    store_delete_node(s, "nobody", NULL, NULL);
    close_store(f, s);
}

struct order_ctx {
    struct done_rec *d;
    int i;
    const char *path;
};

/* Whether another connection sees the row (so it is committed). */
static bool row_visible_elsewhere(const char *path, const char *name)
{
    if (is_pg()) {
        PGconn *c = PQconnectdb(g_pg_url);
        const char *vals[] = {name};
        PGresult *r = PQexecParams(c, "SELECT count(*) FROM nodes WHERE name = $1", 1, NULL, vals,
                                   NULL, NULL, 0);
        bool seen = PQresultStatus(r) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(r, 0, 0), "1");
        PQclear(r);
        PQfinish(c);
        return seen;
    }
    sqlite3 *db = NULL;
    bool found = false;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM nodes WHERE name = ?1", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            found = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return found;
}

static void on_ordered_done(void *ctx, int rc, const char *errmsg)
{
    struct order_ctx *o = ctx;
    struct done_rec *d = o->d;
    assert_int_equal(rc, 0);
    assert_null(errmsg);
    d->order[d->n_order++] = o->i;
    if (!uv_thread_equal(&(uv_thread_t){uv_thread_self()}, &d->f->loop_thread))
        d->on_loop_thread = false;
    if (o->path) {
        char name[16];
        snprintf(name, sizeof name, "n%02d", o->i);
        d->committed[o->i] = row_visible_elsewhere(o->path, name);
    }
}

static void put_many(struct store *s, struct done_rec *d, struct order_ctx *o, int n,
                     const char *path)
{
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%02d", i);
        struct store_node node = {.name = name,
                                  .url = "http://x",
                                  .kind = "vllm",
                                  .admin = "approved",
                                  .created_ms = i,
                                  .updated_ms = i};
        o[i] = (struct order_ctx){.d = d, .i = i, .path = path};
        store_put_node(s, &node, on_ordered_done, &o[i]); /* node is copied: name may change */
    }
}

static void test_completions_ordered_after_commit(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    enum { N = 40 };
    struct done_rec d = {.f = f, .on_loop_thread = true};
    struct order_ctx o[N];
    put_many(s, &d, o, N, f->path);
    assert_int_equal(d.n_order, 0); /* never synchronously */

    bool idle = false;
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = &idle;
    uv_timer_start(&t, on_watchdog, WATCHDOG_MS, 0);
    uv_unref((uv_handle_t *)&t);
    /* The store keeps the loop alive exactly while completions are pending. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    assert_false(idle);
    assert_int_equal(d.n_order, N);
    assert_true(d.on_loop_thread);
    for (int i = 0; i < N; i++) {
        assert_int_equal(d.order[i], i);
        assert_true(d.committed[i]);
    }
    assert_int_equal(count(s, "SELECT count(*) FROM nodes"), N);
    close_store(f, s);
}

static int failing_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    (void)ctx;
    if (store_exec(db, "INSERT INTO nodes (name, url, kind, admin, created_ms, updated_ms)"
                       " VALUES ('ghost', 'http://g', 'openai', 'approved', 0, 0)"))
        return store_db_error(db, "setup", err);
    return gw_error_set(err, GW_E_STATE, "refused after writing");
}

static int silent_failing_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    (void)db, (void)ctx, (void)err;
    return GW_E_NOTFOUND; /* no message: the store supplies one */
}

static void test_failing_job_rolls_back(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    struct done_rec d = {.f = f};
    store_submit(s, failing_run, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, GW_E_STATE);
    assert_string_equal(d.msg, "refused after writing");
    assert_int_equal(count(s, "SELECT count(*) FROM nodes"), 0);

    d = (struct done_rec){.f = f};
    store_submit(s, silent_failing_run, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, GW_E_NOTFOUND);
    assert_string_equal(d.msg, gw_strerror(GW_E_NOTFOUND));

    struct gw_error err = {0};
    assert_int_equal(store_sync(s, failing_run, NULL, &err), GW_E_STATE);
    assert_string_equal(err.msg, "refused after writing");
    assert_int_equal(count(s, "SELECT count(*) FROM nodes"), 0);

    /* A put the schema refuses (bad admin value, duplicate label key) writes nothing, not
     * even the row that came before the failing label. */
    char hash[65];
    struct store_node n;
    make_node(&n, "bad", hash);
    n.admin = "removed-ish";
    put_wait(f, s, &n, GW_E_INVALID);
    make_node(&n, "dup", hash);
    struct store_label dup[] = {{"k", "1"}, {"k", "2"}};
    n.labels = dup;
    n.n_labels = 2;
    put_wait(f, s, &n, GW_E_INVALID);
    make_node(&n, "raw-secret", hash);
    n.secret_hash = "not-a-hash";
    put_wait(f, s, &n, GW_E_INVALID);
    assert_int_equal(count(s, "SELECT count(*) FROM nodes"), 0);
    assert_int_equal(count(s, "SELECT count(*) FROM node_labels"), 0);
    close_store(f, s);
}

static void test_close_flushes_pending(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    enum { N = 25 };
    struct done_rec d = {.f = f, .on_loop_thread = true};
    struct order_ctx o[N];
    put_many(s, &d, o, N, NULL);
    store_close(s); /* the loop never ran: close must run jobs and completions itself */
    assert_int_equal(d.n_order, N);
    for (int i = 0; i < N; i++) assert_int_equal(d.order[i], i);
    assert_true(d.on_loop_thread);
    uv_run(&f->loop, UV_RUN_NOWAIT);

    s = open_ok(f, f->path);
    assert_int_equal(count(s, "SELECT count(*) FROM nodes"), N);
    close_store(f, s);
}

/* A completion that closes the store while other completions are pending (the SIGTERM path
 * can look like this): the rest still run, once each. */
struct reentrant {
    struct store *s;
    int calls;
};

static void on_done_close(void *ctx, int rc, const char *errmsg)
{
    (void)rc, (void)errmsg;
    struct reentrant *r = ctx;
    if (r->calls++ == 0) store_close(r->s);
}

static void test_close_from_completion(void **state)
{
    struct fx *f = *state;
    struct reentrant r = {0};
    r.s = open_ok(f, ":memory:");
    for (int i = 0; i < 5; i++) store_submit(r.s, silent_failing_run, on_done_close, &r);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 5);
}

static void assert_open_fails(struct fx *f, const char *path, int want, const char *needle)
{
    struct store_config cfg = {.path = path};
    struct store *s = NULL;
    struct gw_error err = {0};
    int rc = store_open(&f->loop, &cfg, &s, &err);
    assert_null(s);
    if (rc != want || !strstr(err.msg, needle))
        fail_msg("open %s: rc %d msg \"%s\", want %d and \"%s\"", path, rc, err.msg, want, needle);
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(strncmp(err.msg, path, strlen(path)), 0); /* "PATH: reason" */
    assert_int_equal(err.msg[strlen(path)], ':');
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void assert_file_is(const char *path, const void *p, size_t n)
{
    char got[8192];
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t len = fread(got, 1, sizeof got, fp);
    fclose(fp);
    assert_int_equal(len, n);
    assert_memory_equal(got, p, n);
}

static void test_foreign_file_untouched(void **state)
{
    struct fx *f = *state;
    if (is_pg()) skip(); /* SQLite files only */
    char text[4096];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 26);
    write_file(f->path, text, sizeof text);
    assert_open_fails(f, f->path, GW_E_INVALID, "not a SQLite database");
    assert_file_is(f->path, text, sizeof text);

    write_file(f->path, "tiny", 4);
    assert_open_fails(f, f->path, GW_E_INVALID, "not a SQLite database");
    assert_file_is(f->path, "tiny", 4);

    /* The right magic followed by garbage: SQLite itself must refuse it, before any write. */
    char fake[1024];
    memset(fake, 0x5a, sizeof fake);
    memcpy(fake, "SQLite format 3", 16);
    write_file(f->path, fake, sizeof fake);
    struct store_config cfg = {.path = f->path};
    struct store *s = NULL;
    struct gw_error err = {0};
    assert_true(store_open(&f->loop, &cfg, &s, &err) != 0);
    assert_null(s);
    assert_int_equal(strncmp(err.msg, f->path, strlen(f->path)), 0);
    assert_file_is(f->path, fake, sizeof fake);

    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_int_equal(access(wal, F_OK), -1);
}

static void test_bad_directory(void **state)
{
    struct fx *f = *state;
    if (is_pg()) skip(); /* SQLite files only */
    char path[200];
    snprintf(path, sizeof path, "%s/missing/drover.db", f->dir);
    assert_open_fails(f, path, GW_E_IO, "No such file or directory");

    snprintf(path, sizeof path, "%s/drover.db/x.db", f->dir); /* parent is a file */
    write_file(f->path, "", 0);
    assert_open_fails(f, path, GW_E_IO, "is not a directory");

    char ro[160];
    snprintf(ro, sizeof ro, "%s/ro", f->dir);
    assert_int_equal(mkdir(ro, 0555), 0);
    assert_int_equal(chmod(f->dir, 0755), 0);
    snprintf(path, sizeof path, "%s/drover.db", ro);
    if (geteuid() != 0) {
        assert_open_fails(f, path, GW_E_IO, "is not writable");
    } else {
        /* root ignores permissions: ask as nobody, in a child. */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(20);
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
            uv_loop_t loop;
            uv_loop_init(&loop);
            struct store_config cfg = {.path = path};
            struct store *s = NULL;
            struct gw_error err = {0};
            int rc = store_open(&loop, &cfg, &s, &err);
            _exit(rc == GW_E_IO && !s && strstr(err.msg, "is not writable") ? 0 : 1);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(access(path, F_OK), -1);
}

/* ---- kill -9 -------------------------------------------------------------------------- */

struct child_ack {
    int fd;
};

static void child_on_done(void *ctx, int rc, const char *errmsg)
{
    (void)errmsg;
    struct child_ack *a = ctx;
    char c = rc == 0 ? 'A' : 'E';
    if (write(a->fd, &c, 1) != 1) _exit(4);
}

static void child_main(const char *path, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(30); /* never outlive the test, whatever happens */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct store_config cfg = config_for(path);
    struct store *s = NULL;
    if (store_open(&loop, &cfg, &s, NULL) != 0) _exit(2);
    char hash[65];
    struct store_node n;
    make_node(&n, "survivor", hash);
    struct child_ack a = {fd};
    store_put_node(s, &n, child_on_done, &a);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once the completion ran */
    for (;;) pause();              /* never closes the store: no checkpoint, no clean exit */
}

static void test_kill9_durability(void **state)
{
    struct fx *f = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_main(f->path, fds[1]);
        _exit(5);
    }
    close(fds[1]);
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    int pr = poll(&p, 1, WATCHDOG_MS);
    char ack = 0;
    ssize_t nr = pr == 1 ? read(fds[0], &ack, 1) : -1;
    /* Kill and reap before any assertion can leave the child behind. */
    kill(pid, SIGKILL);
    int status = 0;
    pid_t w = waitpid(pid, &status, 0);
    close(fds[0]);
    assert_int_equal(w, pid);
    assert_int_equal(pr, 1);
    assert_int_equal(nr, 1);
    assert_int_equal(ack, 'A');
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    struct store *s = open_ok(f, f->path);
    struct store_node *v = NULL;
    size_t nv = 0;
    assert_int_equal(store_load_nodes(s, &v, &nv, NULL), 0);
    assert_int_equal(nv, 1);
    char hash[65];
    struct store_node want;
    make_node(&want, "survivor", hash);
    assert_node_equal(&v[0], &want);
    store_nodes_free(v, nv);
    close_store(f, s);
}

/* ---- several openers, catalogue and operations ---------------------------------------- */

struct opener {
    const char *path;
    int rc;
    int version;
    char msg[GW_ERROR_MSG_BYTES];
};

static void opener_main(void *arg)
{
    struct opener *o = arg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct store_config cfg = config_for(o->path);
    cfg.busy_timeout_ms = 10000;
    struct store *s = NULL;
    struct gw_error err = {0};
    o->rc = store_open(&loop, &cfg, &s, &err);
    snprintf(o->msg, sizeof o->msg, "%s", err.msg);
    if (!o->rc) {
        o->version = store_schema_version(s);
        store_close(s);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

/* Gateways starting together on one empty database: every one opens, each migration is
 * applied once. */
static void test_concurrent_open_migrates_once(void **state)
{
    struct fx *f = *state;
    enum { N = 4 };
    struct opener o[N];
    uv_thread_t t[N];
    for (int i = 0; i < N; i++) {
        o[i] = (struct opener){.path = f->path};
        assert_int_equal(uv_thread_create(&t[i], opener_main, &o[i]), 0);
    }
    for (int i = 0; i < N; i++) uv_thread_join(&t[i]);
    for (int i = 0; i < N; i++) {
        if (o[i].rc) fail_msg("opener %d: %s", i, o[i].msg);
        assert_int_equal(o[i].version, N_MIGRATIONS);
    }
    struct store *s = open_ok(f, f->path);
    assert_int_equal(count(s, "SELECT count(*) FROM schema_migrations"), N_MIGRATIONS);
    close_store(f, s);
}

static void test_catalogue_and_ops_roundtrip(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    struct done_rec d = {.f = f};
    store_put_catalogue(s, "llama3", "{\"engine\":\"llamacpp\"}", on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    d = (struct done_rec){.f = f};
    store_put_catalogue(s, "llama3", "{\"engine\":\"vllm\"}", on_done, &d); /* upsert */
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    d = (struct done_rec){.f = f};
    store_put_catalogue(s, "bad", "{not json", on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, GW_E_INVALID);
    struct store_cat_row *cat = NULL;
    size_t n_cat = 0;
    assert_int_equal(store_load_catalogue(s, &cat, &n_cat, NULL), 0);
    assert_int_equal(n_cat, 1);
    assert_string_equal(cat[0].id, "llama3");
    assert_string_equal(cat[0].json, "{\"engine\":\"vllm\"}");
    store_catalogue_free(cat, n_cat);

    struct store_op o = {.id = 7,
                         .node = "gpu-01",
                         .target = "model:llama3",
                         .op = "install",
                         .params_json = "{\"x\":1}",
                         .state = "pending",
                         .attempts = 3,
                         .next_try_ms = INT64_MAX,
                         .last_error = "refused",
                         .created_ms = 10,
                         .updated_ms = 20};
    d = (struct done_rec){.f = f};
    store_put_op(s, &o, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    o.dead_ms = 30;
    d = (struct done_rec){.f = f};
    store_bury_op(s, &o, on_done, &d);
    store_bury_op(s, &o, NULL, NULL); /* twice: the dead letter is replaced, not doubled */
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    struct store_op *v = NULL;
    size_t nv = 0;
    assert_int_equal(store_load_ops(s, false, &v, &nv, NULL), 0);
    assert_int_equal(nv, 0);
    store_ops_free(v, nv);
    assert_int_equal(store_load_ops(s, true, &v, &nv, NULL), 0);
    assert_int_equal(nv, 1);
    assert_true(v[0].id == 7 && v[0].attempts == 3 && v[0].dead_ms == 30);
    assert_string_equal(v[0].params_json, "{\"x\":1}");
    assert_null(v[0].last_class);
    store_ops_free(v, nv);

    o.attempts = 0;
    d = (struct done_rec){.f = f};
    store_raise_op(s, 7, &o, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    assert_int_equal(store_load_ops(s, false, &v, &nv, NULL), 0);
    assert_int_equal(nv, 1);
    assert_true(v[0].next_try_ms == INT64_MAX);
    assert_string_equal(v[0].state, "pending");
    store_ops_free(v, nv);
    assert_int_equal(count(s, "SELECT count(*) FROM ops_dead"), 0);
    close_store(f, s);
}

/* Every table the migrations create is copied by `drover store migrate`. */
static void test_copy_lists_every_table(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    long long listed = 0;
    char sql[512];
    for (size_t i = 0; store_copy_tables[i]; i++) {
        snprintf(sql, sizeof sql,
                 is_pg()
                     ? "SELECT count(*) FROM information_schema.tables"
                       " WHERE table_schema = 'public' AND table_name = '%s'"
                     : "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'",
                 store_copy_tables[i]);
        assert_int_equal(count(s, sql), 1);
        listed++;
    }
    assert_int_equal(count(s, is_pg() ? "SELECT count(*) FROM information_schema.tables"
                                        " WHERE table_schema = 'public'"
                                      : "SELECT count(*) FROM sqlite_master WHERE type = 'table'"),
                     listed + 1); /* + schema_migrations */
    close_store(f, s);
}

/* A SQLite file copied into the engine under test (PostgreSQL, or another SQLite file): every
 * row arrives, a second copy into the now full destination is refused and changes nothing. */
struct audit_count {
    int done, failed;
};

static void on_audit(void *ctx, int rc, const char *msg)
{
    (void)msg;
    struct audit_count *c = ctx;
    c->done++;
    c->failed += rc != 0;
}

static void test_copy_sqlite_into_store(void **state)
{
    struct fx *f = *state;
    char src_path[160];
    snprintf(src_path, sizeof src_path, "%s/src.db", f->dir);
    struct store_config sc = {.path = src_path};
    struct store *src = NULL;
    struct gw_error err = {0};
    assert_int_equal(store_open(&f->loop, &sc, &src, &err), 0);
    char hash[65];
    struct store_node n;
    make_node(&n, "gpu-01", hash);
    put_wait(f, src, &n, 0);
    struct store_node m = {.name = "bare", .url = "http://b", .kind = "openai", .admin = "pending"};
    put_wait(f, src, &m, 0);
    struct done_rec d = {.f = f};
    store_put_catalogue(src, "llama3", "{\"replicas\":{\"min\":1}}", NULL, NULL);
    struct store_op o = {.id = 3,
                         .node = "gpu-01",
                         .target = "model:llama3",
                         .op = "load",
                         .state = "pending",
                         .next_try_ms = 5};
    store_put_op(src, &o, on_done, &d);
    run_until(&f->loop, &d.is_done);
    struct audit_count ac = {0};
    struct store_audit_row ar = {.actor = "a",
                                 .role = "operator",
                                 .peer = "p",
                                 .method = "PUT",
                                 .path = "/x",
                                 .summary = "s"};
    for (int i = 0; i < 3; i++) store_add_audit(src, &ar, on_audit, &ac);
    while (ac.done < 3) uv_run(&f->loop, UV_RUN_ONCE);

    struct store *dst = open_ok(f, f->path);
    size_t counts[16] = {0};
    if (store_copy(src, dst, counts, &err)) fail_msg("copy: %s", err.msg);
    assert_int_equal(counts[0], 2); /* nodes */
    assert_int_equal(counts[1], 2); /* node_labels */
    assert_int_equal(counts[2], 1); /* catalogue */
    assert_int_equal(counts[3], 1); /* ops */
    /* the copied audit rows keep their ids; a new one numbers after them */
    ac = (struct audit_count){0};
    store_add_audit(dst, &ar, on_audit, &ac);
    while (ac.done < 1) uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(ac.failed, 0);
    assert_int_equal(count(dst, "SELECT max(id) FROM audit_log"), 4);
    struct store_node *v = NULL;
    size_t nv = 0;
    assert_int_equal(store_load_nodes(dst, &v, &nv, NULL), 0);
    assert_int_equal(nv, 2);
    assert_node_equal(&v[1], &n); /* every field, the extremes included */
    store_nodes_free(v, nv);
    struct store_op *ops = NULL;
    size_t n_ops = 0;
    assert_int_equal(store_load_ops(dst, false, &ops, &n_ops, NULL), 0);
    assert_int_equal(n_ops, 1);
    assert_string_equal(ops[0].op, "load");
    store_ops_free(ops, n_ops);

    assert_int_equal(store_copy(src, dst, NULL, &err), GW_E_STATE);
    assert_non_null(strstr(err.msg, "not empty"));
    assert_int_equal(count(dst, "SELECT count(*) FROM nodes"), 2);
    close_store(f, src);
    close_store(f, dst);
}

/* Two stores on one database (two gateways) adding audit rows at once: every row is kept, each
 * with its own id (max(id) + 1 gave two writers one id and refused a row). */
static void test_audit_rows_from_two_writers(void **state)
{
    struct fx *f = *state;
    struct store *a = open_ok(f, f->path), *b = open_ok(f, f->path);
    struct audit_count c = {0};
    struct store_audit_row r = {.actor = "admin",
                                .role = "operator",
                                .peer = "127.0.0.1:1",
                                .method = "PUT",
                                .path = "/admin/v1/models/m",
                                .summary = "s"};
    enum { PER = 40 };
    for (int i = 0; i < PER; i++) {
        store_add_audit(a, &r, on_audit, &c);
        store_add_audit(b, &r, on_audit, &c);
    }
    uint64_t deadline = uv_now(&f->loop) + WATCHDOG_MS;
    while (c.done < 2 * PER && uv_now(&f->loop) < deadline) uv_run(&f->loop, UV_RUN_ONCE);
    long long rows = count(a, "SELECT count(*) FROM audit_log");
    long long ids = count(a, "SELECT count(DISTINCT id) FROM audit_log");
    close_store(f, a); /* before any assertion: a failed one leaves nothing open */
    close_store(f, b);
    assert_int_equal(c.done, 2 * PER);
    assert_int_equal(c.failed, 0);
    assert_int_equal(rows, 2 * PER);
    assert_int_equal(ids, 2 * PER);
}

/* ---- PostgreSQL only ------------------------------------------------------------------ */

static void test_pg_unreachable_fails_fast(void **state)
{
    struct fx *f = *state;
    if (!is_pg()) skip();
    /* A port with nothing behind it: a clear refusal, not a hang. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    /* bound and never listened: connections are refused, and while it stays open no other
     * process can take the port (closing it first let a parallel test's listener in) */
    char url[160];
    snprintf(url, sizeof url, "host=127.0.0.1 port=%d dbname=x user=u password=hunter2",
             ntohs(a.sin_port));
    struct store_config cfg = {.engine = STORE_ENGINE_POSTGRES, .url = url};
    struct store *s = NULL;
    struct gw_error err = {0};
    int rc = store_open(&f->loop, &cfg, &s, &err);
    close(fd);
    assert_int_equal(rc, STORE_E_UNAVAILABLE);
    assert_null(s);
    assert_int_equal(strncmp(err.msg, "postgres: ", 10), 0);
    assert_null(strchr(err.msg, '\n'));
    assert_null(strstr(err.msg, "hunter2"));

    cfg.url = NULL;
    assert_int_equal(store_open(&f->loop, &cfg, &s, &err), GW_E_INVALID);
    assert_non_null(strstr(err.msg, "store.url"));
}

static int sleep_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    (void)ctx;
    if (store_exec(db, "SELECT pg_sleep(30)")) return store_db_error(db, "sleep", err);
    return 0;
}

static void test_pg_statement_timeout(void **state)
{
    struct fx *f = *state;
    if (!is_pg()) skip();
    struct store_config cfg = config_for(NULL);
    cfg.statement_timeout_ms = 200;
    struct store *s = NULL;
    struct gw_error err = {0};
    assert_int_equal(store_open(&f->loop, &cfg, &s, &err), 0);
    assert_true(store_sync(s, sleep_run, NULL, &err) != 0);
    assert_non_null(strstr(err.msg, "statement timeout"));
    /* the connection is still good for the next job */
    assert_int_equal(count(s, "SELECT count(*) FROM nodes"), 0);
    close_store(f, s);
}

/* The store's own connection is killed (a server restart, a failover): the next job finds it
 * dead before sending anything, reconnects at once and runs. */
static void test_pg_lost_connection_replaced(void **state)
{
    struct fx *f = *state;
    if (!is_pg()) skip();
    struct store *s = open_ok(f, NULL);
    /* the wait (10 s at most) makes the backend gone before the next job: without it the job
     * could reach the backend before it took the signal, and die mid-flight */
    pg_admin("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
             " WHERE application_name = 'drover' AND pid <> pg_backend_pid()");
    char hash[65];
    struct store_node n;
    make_node(&n, "after-restart", hash);
    put_wait(f, s, &n, 0);
    assert_true(store_is_available(s));
    assert_true(row_visible_elsewhere(NULL, "after-restart"));
    close_store(f, s);
}

/* The server refuses us (down, or not letting us in): jobs fail at once with
 * STORE_E_UNAVAILABLE, the store says it is unavailable, and once the server takes us back
 * the store thread reconnects by itself and jobs succeed again. */
static void test_pg_down_then_back(void **state)
{
    struct fx *f = *state;
    if (!is_pg()) skip();
    pg_admin("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drover_t') THEN"
             " CREATE ROLE drover_t LOGIN SUPERUSER; END IF; END $$;"
             " ALTER ROLE drover_t LOGIN");
    char url[512];
    snprintf(url, sizeof url, "%s user=drover_t", g_pg_url);
    struct store_config cfg = config_for(NULL);
    cfg.url = url;
    struct store *s = NULL;
    struct gw_error err = {0};
    if (store_open(&f->loop, &cfg, &s, &err)) fail_msg("open: %s", err.msg);

    pg_admin("ALTER ROLE drover_t NOLOGIN;"
             " SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = "
             "'drover_t'");
    char hash[65];
    struct store_node n;
    make_node(&n, "while-down", hash);
    for (int i = 0; i < 3; i++) {
        struct done_rec d = {.f = f};
        store_put_node(s, &n, on_done, &d);
        run_until(&f->loop, &d.is_done);
        assert_int_equal(d.rc, STORE_E_UNAVAILABLE);
        assert_non_null(strstr(d.msg, "store unavailable"));
        assert_null(strchr(d.msg, '\n'));
    }
    assert_false(store_is_available(s));

    pg_admin("ALTER ROLE drover_t LOGIN");
    /* the background reconnection (backoff at most 10 s) brings it back */
    bool up = false;
    for (int i = 0; i < 300 && !up; i++) {
        up = store_is_available(s);
        if (!up) usleep(50 * 1000);
    }
    assert_true(up);
    put_wait(f, s, &n, 0);
    assert_true(row_visible_elsewhere(NULL, "while-down"));
    close_store(f, s);
}

/* ---- several gateways (PostgreSQL) ------------------------------------------------------ */

struct claim_rec {
    bool is_done, claimed;
    int rc;
    unsigned attempts;
    char state[16];
};

static void on_claim(void *ctx, int rc, bool claimed, const struct store_op *row)
{
    struct claim_rec *c = ctx;
    c->is_done = true;
    c->rc = rc;
    c->claimed = claimed;
    if (row) {
        c->attempts = row->attempts;
        snprintf(c->state, sizeof c->state, "%s", row->state ? row->state : "");
    }
}

static struct claim_rec claim(struct fx *f, struct store *s, const char *owner, int64_t lease_ms)
{
    struct claim_rec c = {0};
    store_claim_op(s, 5, owner, 1000, lease_ms, on_claim, &c);
    run_until(&f->loop, &c.is_done);
    return c;
}

/* One gateway at a time holds an attempt; the holder alone writes its outcome; an expired lease
 * is taken over; ids come in blocks no two stores share. */
static void test_pg_op_leases(void **state)
{
    if (!is_pg()) skip();
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    struct store_op o = {.id = 5,
                         .node = "n",
                         .target = "model:m",
                         .op = "install",
                         .state = "pending",
                         .attempts = 2,
                         .next_try_ms = 500,
                         .created_ms = 1,
                         .updated_ms = 1};
    struct done_rec d = {.f = f};
    store_put_op(s, &o, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);

    struct claim_rec a = claim(f, s, "gw-a", 60000);
    assert_int_equal(a.rc, 0);
    assert_true(a.claimed);
    assert_int_equal(a.attempts, 2);
    assert_string_equal(a.state, "running");
    struct claim_rec b = claim(f, s, "gw-b", 60000);
    assert_int_equal(b.rc, 0);
    assert_false(b.claimed);
    assert_string_equal(b.state, "running"); /* the row as stored comes back */

    /* the wrong owner writes nothing */
    o.state = "done";
    d = (struct done_rec){.f = f};
    store_finish_op(s, &o, "gw-b", false, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, GW_E_STATE);
    assert_int_equal(count(s, "SELECT count(*) FROM ops WHERE state = 'running'"), 1);

    /* an expired lease is taken over, and the old holder's outcome is refused */
    pg_admin("UPDATE ops SET lease_until_ms = 0");
    b = claim(f, s, "gw-b", 60000);
    assert_true(b.claimed);
    d = (struct done_rec){.f = f};
    store_finish_op(s, &o, "gw-a", false, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, GW_E_STATE);
    /* only the holder renews; the renewal moves the lease's end from the database's now */
    pg_admin("UPDATE ops SET lease_until_ms = 1");
    d = (struct done_rec){.f = f};
    store_renew_op(s, 5, "gw-a", 60000, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, GW_E_STATE);
    d = (struct done_rec){.f = f};
    store_renew_op(s, 5, "gw-b", 60000, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    assert_int_equal(count(s, "SELECT count(*) FROM ops WHERE lease_owner = 'gw-b' AND"
                              " lease_until_ms > (extract(epoch from now()) * 1000)::bigint"),
                     1);
    o.attempts = 3;
    o.state = "pending";
    o.next_try_ms = 999999;
    d = (struct done_rec){.f = f};
    store_finish_op(s, &o, "gw-b", false, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    assert_int_equal(count(s, "SELECT count(*) FROM ops WHERE state = 'pending' AND attempts = 3"
                              " AND lease_owner IS NULL"),
                     1);
    a = claim(f, s, "gw-a", 60000); /* not due yet */
    assert_false(a.claimed);

    /* the holder buries the row */
    pg_admin("UPDATE ops SET next_try_ms = 0");
    a = claim(f, s, "gw-a", 60000);
    assert_true(a.claimed);
    o.dead_ms = 7;
    d = (struct done_rec){.f = f};
    store_finish_op(s, &o, "gw-a", true, on_done, &d);
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.rc, 0);
    assert_int_equal(count(s, "SELECT count(*) FROM ops"), 0);
    assert_int_equal(count(s, "SELECT count(*) FROM ops_dead WHERE id = 5"), 1);

    int64_t b1 = 0, b2 = 0;
    assert_int_equal(store_ops_id_block(s, &b1, NULL), 0);
    assert_int_equal(store_ops_id_block(s, &b2, NULL), 0);
    assert_true(b1 >= STORE_OPS_ID_BLOCK && b2 >= b1 + STORE_OPS_ID_BLOCK);
    store_close(s);
}

/* ---- client keys across gateways --------------------------------------------------------- */

static void put_key_wait(struct fx *f, struct store *s, const struct store_key_row *r)
{
    struct done_rec d = {.f = f};
    store_put_key(s, r, on_done, &d);
    run_until(&f->loop, &d.is_done);
    if (d.rc) fail_msg("put key: %s", d.msg);
}

struct key_read {
    const char *id;
    struct store_key_row *v;
    size_t n;
};

static int key_read_run(struct store_db *db, void *ctx, struct gw_error *err)
{
    struct key_read *r = ctx;
    return store_keys_read(db, r->id, &r->v, &r->n, err);
}

/* Each write sets only its columns, and nothing clears a revocation: a rotation and a change of
 * limits through two gateways both hold, and a late write never brings a revoked key back. */
static void test_key_writes_keep_revocation(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    char h1[65], h2[65];
    sha256_hex("one", 3, h1);
    sha256_hex("two", 3, h2);
    struct store_key_row r = {.change = STORE_KEY_CREATE,
                              .id = "key_0000000000000001",
                              .secret_hash = h1,
                              .prefix = "dk-one",
                              .spec_json = "{\"name\":\"a\"}",
                              .created_ms = 1,
                              .updated_ms = 1};
    put_key_wait(f, s, &r);
    r.change = STORE_KEY_SECRET;
    r.secret_hash = h2;
    r.prefix = "dk-two";
    r.spec_json = "{\"name\":\"stale\"}"; /* not a column of a rotation */
    r.updated_ms = 2;
    put_key_wait(f, s, &r);
    r.change = STORE_KEY_SPEC;
    r.secret_hash = h1; /* not a column of a change of spec */
    r.spec_json = "{\"name\":\"b\",\"rpm\":5}";
    r.updated_ms = 3;
    put_key_wait(f, s, &r);
    struct key_read kr = {.id = "key_0000000000000001"};
    struct gw_error err = {0};
    assert_int_equal(store_sync(s, key_read_run, &kr, &err), 0);
    assert_int_equal(kr.n, 1);
    assert_string_equal(kr.v[0].secret_hash, h2);
    assert_string_equal(kr.v[0].prefix, "dk-two");
    assert_string_equal(kr.v[0].spec_json, "{\"name\":\"b\",\"rpm\":5}");
    assert_true(kr.v[0].revoked_ms == 0 && kr.v[0].updated_ms == 3);
    store_key_rows_free(kr.v, kr.n);
    r.change = STORE_KEY_REVOKE;
    r.revoked_ms = r.updated_ms = 9;
    put_key_wait(f, s, &r);
    r.revoked_ms = 10; /* a second revocation keeps the first time */
    put_key_wait(f, s, &r);
    r.change = STORE_KEY_CREATE; /* even a whole row written over it */
    r.revoked_ms = 0;
    put_key_wait(f, s, &r);
    r.change = STORE_KEY_SPEC;
    put_key_wait(f, s, &r);
    kr = (struct key_read){0};
    assert_int_equal(store_sync(s, key_read_run, &kr, &err), 0);
    assert_int_equal(kr.n, 1);
    assert_true(kr.v[0].revoked_ms == 9);
    store_key_rows_free(kr.v, kr.n);
    close_store(f, s);
}

static void test_key_bucket_step(void **state)
{
    (void)state;
    const int64_t U = 60000;
    int64_t got = -1;
    /* full bucket of 60/min: take 100 wanted → all 60 */
    int64_t lv = store_key_bucket_step(60 * U, 0, 0, 60, 0, 100 * U, &got);
    assert_true(got == 60 * U && lv == 0);
    /* one second later: one unit refilled; a debt of 3 given back leaves -2 and nothing taken */
    lv = store_key_bucket_step(lv, 0, 1000, 60, -3 * U, U, &got);
    assert_true(lv == -2 * U && got == 0);
    /* unspent given back never fills beyond a minute's worth */
    lv = store_key_bucket_step(50 * U, 0, 0, 60, 30 * U, 0, &got);
    assert_true(lv == 60 * U && got == 0);
    /* a debt is at most a day of refill; a long idle time fills it whole */
    lv = store_key_bucket_step(0, 0, 0, 60, INT64_MIN / 4, 0, &got);
    assert_true(lv == -60 * U * 1440);
    lv = store_key_bucket_step(lv, 0, 5ll * 86400000, 60, 0, 0, &got);
    assert_true(lv == 60 * U);
    /* a clock that went back refills nothing */
    lv = store_key_bucket_step(U, 5000, 1000, 60, 0, 0, &got);
    assert_true(lv == U);
}

struct limits_done {
    struct fx *f;
    bool is_done;
    int rc;
    char msg[GW_ERROR_MSG_BYTES];
};

static void on_limits(void *ctx, int rc, const char *msg)
{
    struct limits_done *d = ctx;
    d->rc = rc;
    snprintf(d->msg, sizeof d->msg, "%s", msg ? msg : "");
    d->is_done = true;
}

static struct store_limits_round *limits_round(const char *origin, int64_t today)
{
    struct store_limits_round *r = xcalloc(1, sizeof *r);
    r->origin = xstrdup(origin);
    r->today = today;
    r->month_first_day = today - 3;
    r->live_ms = 60000;
    r->v = xcalloc(2, sizeof *r->v);
    return r;
}

static void limits_run(struct fx *f, struct store *s, struct store_limits_round *r)
{
    struct limits_done d = {.f = f};
    store_limits_sync(s, r, on_limits, &d);
    run_until(&f->loop, &d.is_done);
    if (d.rc) fail_msg("limits round: %s", d.msg);
}

/* Two gateways take allowances from one bucket: together never more than it holds; what one
 * gives back the other can take; their consumption adds up in the fleet's totals. */
static void test_limits_rounds(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, f->path);
    const int64_t U = 60000, today = 20000;
    struct store_limits_round *a = limits_round("gw-a", today);
    a->n = 2;
    a->v[0] = (struct store_key_sync){.key_id = xstrdup("key_b"), .tpm = 1000, .want_tok = 10 * U};
    a->v[1] = (struct store_key_sync){.key_id = xstrdup("key_a"),
                                      .rpm = 60,
                                      .want_req = 100 * U,
                                      .requests = 5,
                                      .tokens = 50,
                                      .day = today,
                                      .total = true};
    limits_run(f, s, a);
    /* sorted by key id for the locks; the caller finds its entries by ref or id */
    assert_string_equal(a->v[0].key_id, "key_a");
    assert_true(a->v[0].got_req == 60 * U); /* all there was */
    assert_true(a->v[0].level_req == 0);
    assert_true(a->v[1].got_tok == 10 * U && a->v[1].level_tok == 990 * U);
    assert_true(a->v[0].day_tokens == 50 && a->v[0].month_tokens == 50);
    assert_int_equal(a->live_gateways, 1);
    store_limits_round_free(a);

    struct store_limits_round *b = limits_round("gw-b", today);
    b->n = 1;
    b->v[0] = (struct store_key_sync){.key_id = xstrdup("key_a"),
                                      .rpm = 60,
                                      .want_req = 10 * U,
                                      .tokens = 30,
                                      .day = today - 1,
                                      .total = true};
    limits_run(f, s, b);
    assert_true(b->v[0].got_req < U); /* a few milliseconds of refill at most */
    assert_true(b->v[0].day_tokens == 50 && b->v[0].month_tokens == 80);
    assert_int_equal(b->live_gateways, 2);
    store_limits_round_free(b);

    /* gw-a gives back 40 it did not use; gw-b takes 10 of them */
    a = limits_round("gw-a", today);
    a->n = 1;
    a->v[0] = (struct store_key_sync){.key_id = xstrdup("key_a"), .rpm = 60, .give_req = 40 * U};
    limits_run(f, s, a);
    assert_true(a->v[0].got_req == 0 && a->v[0].level_req >= 40 * U);
    store_limits_round_free(a);
    b = limits_round("gw-b", today);
    b->n = 1;
    b->v[0] = (struct store_key_sync){.key_id = xstrdup("key_a"), .rpm = 60, .want_req = 10 * U};
    limits_run(f, s, b);
    assert_true(b->v[0].got_req == 10 * U);
    store_limits_round_free(b);
    assert_int_equal(count(s, "SELECT sum(requests) FROM key_counters WHERE key_id = ''"), 4);
    assert_int_equal(count(s, "SELECT sum(tokens) FROM key_counters WHERE key_id <> ''"), 80);

    /* a key with nothing to give or want learns the levels: key_a's as it stands (refilled),
     * a bucket nobody used yet as full */
    b = limits_round("gw-b", today);
    b->n = 2;
    b->v[0] = (struct store_key_sync){.key_id = xstrdup("key_a"), .rpm = 60};
    b->v[1] = (struct store_key_sync){.key_id = xstrdup("key_c"), .rpm = 6, .tpm = 100};
    limits_run(f, s, b);
    assert_true(b->v[0].has_level_req && b->v[0].level_req >= 30 * U &&
                b->v[0].level_req < 32 * U && b->v[0].got_req == 0);
    assert_true(b->v[1].has_level_req && b->v[1].level_req == 6 * U);
    assert_true(b->v[1].has_level_tok && b->v[1].level_tok == 100 * U);
    store_limits_round_free(b);
    assert_int_equal(count(s, "SELECT count(*) FROM key_limits WHERE key_id = 'key_c'"), 0);

    /* the leader's prune: counters older than the day given go */
    a = limits_round("gw-a", today);
    a->prune_before_day = today;
    limits_run(f, s, a);
    store_limits_round_free(a);
    assert_int_equal(count(s, "SELECT count(*) FROM key_counters WHERE day < 20000"), 0);
    close_store(f, s);
}

struct watch_rec {
    int resyncs, leaders, followers, changes, key_changes;
    char last_key[64], last_client_key[64];
};

static void on_watch(void *ctx, enum store_watch_event ev, const char *table, const char *key)
{
    struct watch_rec *w = ctx;
    if (ev == STORE_WATCH_RESYNC) w->resyncs++;
    if (ev == STORE_WATCH_LEADER) w->leaders++;
    if (ev == STORE_WATCH_FOLLOWER) w->followers++;
    if (ev == STORE_WATCH_CHANGE && !strcmp(table, "nodes")) {
        w->changes++;
        snprintf(w->last_key, sizeof w->last_key, "%s", key);
    }
    if (ev == STORE_WATCH_CHANGE && !strcmp(table, "client_keys")) {
        w->key_changes++;
        snprintf(w->last_client_key, sizeof w->last_client_key, "%s", key);
    }
}

struct watch_wait {
    struct watch_rec *a, *b;
    int what; /* 0: both listening, one leader; 1: a saw the change; 2: b is the leader;
               * 3: a is the leader; 4: a saw a client key change */
};

static void on_watch_poll(uv_timer_t *t)
{
    struct watch_wait *ww = t->data;
    bool ok = ww->what == 0
                  ? ww->a->resyncs && ww->b->resyncs && ww->a->leaders + ww->b->leaders == 1
              : ww->what == 1 ? ww->a->changes > 0
              : ww->what == 2 ? ww->b->leaders == 1
              : ww->what == 4 ? ww->a->key_changes > 0
                              : ww->a->leaders == 1;
    if (ok) uv_timer_stop(t);
}

static void watch_wait(struct fx *f, struct watch_wait *ww)
{
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = ww;
    uv_timer_start(&t, on_watch_poll, 10, 10);
    uint64_t deadline = uv_now(&f->loop) + WATCHDOG_MS;
    while (uv_is_active((uv_handle_t *)&t) && uv_now(&f->loop) < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    bool timed_out = uv_is_active((uv_handle_t *)&t);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_false(timed_out);
}

/* Two watches: both listen, one holds the lock; a change by another origin is reported, the
 * watch's own origin's is not; when the leader goes, the other takes the lock. */
static void test_pg_watch(void **state)
{
    if (!is_pg()) skip();
    struct fx *f = *state;
    struct store_config c = config_for(f->path);
    c.origin = "writer";
    struct store *s = NULL;
    assert_int_equal(store_open(&f->loop, &c, &s, NULL), 0);
    struct watch_rec ra = {0}, rb = {0};
    struct store_watch *wa = NULL, *wb = NULL;
    struct store_watch_config wc = {.url = g_pg_url,
                                    .origin = "other",
                                    .lock_key = 4242,
                                    .lease_ms = 100,
                                    .connect_timeout_ms = 2000};
    assert_int_equal(store_watch_start(&f->loop, &wc, on_watch, &ra, &wa, NULL), 0);
    wc.origin = "writer"; /* b is the writer's own watch */
    assert_int_equal(store_watch_start(&f->loop, &wc, on_watch, &rb, &wb, NULL), 0);
    struct watch_wait ww = {&ra, &rb, 0};
    watch_wait(f, &ww);

    struct store_node n = {.name = "gpu-9",
                           .url = "http://x:1",
                           .kind = "openai",
                           .admin = "approved",
                           .created_ms = 1,
                           .updated_ms = 1};
    put_wait(f, s, &n, 0);
    ww.what = 1;
    watch_wait(f, &ww);
    assert_string_equal(ra.last_key, "gpu-9");
    assert_int_equal(rb.changes, 0); /* its own origin's change */

    /* client keys notify too (migration 6) */
    char h[65];
    sha256_hex("k", 1, h);
    struct store_key_row kr = {.id = "key_00000000000000aa",
                               .secret_hash = h,
                               .prefix = "dk-k",
                               .spec_json = "{\"name\":\"k\"}"};
    put_key_wait(f, s, &kr);
    ww.what = 4;
    watch_wait(f, &ww);
    assert_string_equal(ra.last_client_key, "key_00000000000000aa");
    assert_int_equal(rb.key_changes, 0);

    /* the leader goes: the other takes the lock within a lease or two */
    if (ra.leaders) {
        store_watch_stop(wa);
        wa = NULL;
        ww.what = 2;
    } else {
        store_watch_stop(wb);
        wb = NULL;
        ww.what = 3;
    }
    watch_wait(f, &ww);
    store_watch_stop(wa);
    store_watch_stop(wb);
    store_close(s);
}

#define TESTS(X)                                                                                   \
    X(test_memory_roundtrip)                                                                       \
    X(test_migrations_recorded_once)                                                               \
    X(test_newer_schema_refused)                                                                   \
    X(test_labels_replaced_and_cascaded)                                                           \
    X(test_completions_ordered_after_commit)                                                       \
    X(test_failing_job_rolls_back)                                                                 \
    X(test_close_flushes_pending)                                                                  \
    X(test_close_from_completion)                                                                  \
    X(test_foreign_file_untouched)                                                                 \
    X(test_bad_directory)                                                                          \
    X(test_kill9_durability)                                                                       \
    X(test_concurrent_open_migrates_once)                                                          \
    X(test_catalogue_and_ops_roundtrip)                                                            \
    X(test_copy_lists_every_table)                                                                 \
    X(test_copy_sqlite_into_store)                                                                 \
    X(test_audit_rows_from_two_writers)                                                            \
    X(test_pg_unreachable_fails_fast)                                                              \
    X(test_pg_statement_timeout)                                                                   \
    X(test_pg_lost_connection_replaced)                                                            \
    X(test_pg_down_then_back)                                                                      \
    X(test_pg_op_leases)                                                                           \
    X(test_key_writes_keep_revocation)                                                             \
    X(test_key_bucket_step)                                                                        \
    X(test_limits_rounds)                                                                          \
    X(test_pg_watch)
#define ENTRY(t) cmocka_unit_test_setup_teardown(t, setup, teardown),

/* The whole suite on SQLite, then on PostgreSQL when DROVER_TEST_PG_URL is set. */
int main(void)
{
    const struct CMUnitTest tests[] = {TESTS(ENTRY)};
    int failed = cmocka_run_group_tests_name("store.sqlite", tests, NULL, NULL);
    g_pg_url = getenv("DROVER_TEST_PG_URL");
    if (g_pg_url && *g_pg_url) {
        g_engine = STORE_ENGINE_POSTGRES;
        failed += cmocka_run_group_tests_name("store.postgres", tests, NULL, NULL);
    }
    return failed;
}
