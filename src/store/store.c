/* store — the job queue and the store thread, for both engines. The loop thread submits jobs (a
 * FIFO under mu); the one store thread owns the database connection (struct store_db: SQLite or
 * libpq), runs each job inside one transaction (BEGIN IMMEDIATE … COMMIT on SQLite, BEGIN …
 * COMMIT on PostgreSQL) and moves it to the completed list; uv_async wakes the loop thread, which
 * pops completions one at a time, in submission order (async sends coalesce, so one wake-up may
 * find many). Invariants: a completion runs only after its transaction committed or rolled back;
 * the async handle is referenced only while some job's completion is still to run, so a loop that
 * has nothing else to do returns from uv_run exactly when the store is idle. store_close never
 * re-enters uv_run: it waits for the queue and calls the remaining completions itself.
 * PostgreSQL only: a lost connection is dropped after the job that saw it; while there is none,
 * jobs fail at once with STORE_E_UNAVAILABLE and the thread reconnects in the background with
 * backoff (250 ms doubling to 10 s). A job whose BEGIN finds a dead connection (the server
 * restarted while we were idle) reconnects at once and runs, since nothing was sent yet. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "store/store_impl.h"

enum {
    STORE_DEFAULT_BUSY_TIMEOUT_MS = 5000,
    STORE_DEFAULT_CONNECT_TIMEOUT_MS = 5000,
    STORE_DEFAULT_STATEMENT_TIMEOUT_MS = 10000,
    STORE_RECONNECT_MIN_MS = 250,
    STORE_RECONNECT_MAX_MS = 10000,
};

struct job {
    struct job *next;
    store_run_fn run;
    store_done_fn done;
    void *ctx;
    int rc;
    struct gw_error err;
    bool is_sync;     /* lives on store_sync's stack; no completion */
    bool is_finished; /* store_sync's job ran (under mu) */
};

struct store {
    uv_loop_t *loop;
    uv_async_t async; /* store thread → loop thread: completions are waiting */
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t work_cond;         /* → store thread: a job was queued, or stop */
    uv_cond_t wait_cond;         /* → waiters: a sync job finished, or the thread went idle */
    struct job *q_head, *q_tail; /* queued, not run yet (mu) */
    struct job *d_head, *d_tail; /* run, completion not called yet (mu) */
    bool is_running_job;         /* (mu) */
    bool is_stopping;            /* (mu) the thread exits once the queue is empty */
    bool is_closing;             /* loop thread only */
    unsigned n_inflight;         /* loop thread only: async jobs whose completion is pending */
    bool is_available;           /* (mu) a connection is up */
    struct store_db *db;         /* the store thread's while it runs; NULL while disconnected */
    int schema_version;
    enum store_engine engine;
    char *label; /* the path, or "postgres HOST:PORT/DB": never the URL (it may hold a password) */
    /* PostgreSQL reconnection: store thread only */
    char *url;
    char *origin; /* SET drover.origin after every connect; may be NULL */
    unsigned connect_timeout_ms, statement_timeout_ms;
    unsigned backoff_ms;
    int64_t next_connect_ms; /* monotonic */
    char down_msg[GW_ERROR_MSG_BYTES];
};

static const char *qpath(char *q, size_t cap, const char *path)
{
    return log_quote(q, cap, path, strlen(path));
}

static int64_t mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000u);
}

static void set_available(struct store *s, bool is_available)
{
    uv_mutex_lock(&s->mu);
    s->is_available = is_available;
    uv_mutex_unlock(&s->mu);
}

bool store_is_available(struct store *s)
{
    uv_mutex_lock(&s->mu);
    bool up = s->is_available;
    uv_mutex_unlock(&s->mu);
    return up;
}

/* ---- store thread --------------------------------------------------------------------- */

static void drop_connection(struct store *s, const char *why)
{
    char q[256], w[GW_ERROR_MSG_BYTES + 8];
    snprintf(s->down_msg, sizeof s->down_msg, "%s", why);
    LOGW("store_disconnected", "store=%s err=%s", qpath(q, sizeof q, s->label),
         log_quote(w, sizeof w, why, strlen(why)));
    store_db_close(s->db);
    s->db = NULL;
    s->backoff_ms = 0;
    s->next_connect_ms = 0; /* the first attempt at once */
    set_available(s, false);
}

/* One connection attempt if it is due (or forced); true when connected. */
static bool reconnect(struct store *s, bool is_forced)
{
    if (s->db) return true;
    if (s->engine != STORE_ENGINE_POSTGRES) return false;
    if (!is_forced && mono_ms() < s->next_connect_ms) return false;
    struct store_db *db = NULL;
    struct gw_error err = {0};
    char q[256], w[GW_ERROR_MSG_BYTES + 8];
    int crc =
        store_db_connect_pg(s->url, s->connect_timeout_ms, s->statement_timeout_ms, &db, &err);
    if (!crc && store_db_set_origin(db, s->origin)) {
        crc = store_db_error(db, "postgres: set origin", &err);
        store_db_close(db);
        db = NULL;
    }
    if (crc) {
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : STORE_RECONNECT_MIN_MS;
        if (s->backoff_ms > STORE_RECONNECT_MAX_MS) s->backoff_ms = STORE_RECONNECT_MAX_MS;
        s->next_connect_ms = mono_ms() + s->backoff_ms;
        snprintf(s->down_msg, sizeof s->down_msg, "%s", err.msg);
        LOGW("store_reconnect_failed", "store=%s retry_ms=%u err=%s", qpath(q, sizeof q, s->label),
             s->backoff_ms, log_quote(w, sizeof w, err.msg, strlen(err.msg)));
        return false;
    }
    s->db = db;
    s->backoff_ms = 0;
    set_available(s, true);
    LOGI("store_reconnected", "store=%s", qpath(q, sizeof q, store_db_label(db)));
    return true;
}

static void run_job(struct store *s, struct job *j)
{
    j->rc = 0;
    memset(&j->err, 0, sizeof j->err);
    if (!s->db && !reconnect(s, false)) {
        j->rc = gw_error_set(&j->err, STORE_E_UNAVAILABLE, "%s: store unavailable: %s", s->label,
                             s->down_msg);
        return;
    }
    int rc = store_db_begin(s->db);
    if (rc && store_db_is_broken(s->db)) {
        /* Found dead before anything was sent: a fresh connection may well work. */
        struct gw_error e = {0};
        store_db_error(s->db, "begin", &e);
        drop_connection(s, e.msg);
        rc = reconnect(s, true) ? store_db_begin(s->db) : STORE_E_UNAVAILABLE;
        if (!s->db) {
            j->rc = gw_error_set(&j->err, rc, "%s: store unavailable: %s", s->label, s->down_msg);
            return;
        }
    }
    if (rc) {
        char what[200];
        snprintf(what, sizeof what, "%s: begin", s->label);
        j->rc = store_db_error(s->db, what, &j->err);
    } else {
        rc = j->run(s->db, j->ctx, &j->err);
        if (rc == 0 && store_db_commit(s->db)) {
            char what[200];
            snprintf(what, sizeof what, "%s: commit", s->label);
            rc = store_db_error(s->db, what, &j->err);
        }
        if (rc != 0) {
            if (!j->err.msg[0]) gw_error_set(&j->err, rc, "%s", gw_strerror(rc));
            store_db_rollback(s->db);
        }
        j->rc = rc;
    }
    if (store_db_is_broken(s->db)) drop_connection(s, j->err.msg[0] ? j->err.msg : "lost");
}

static void store_thread_main(void *arg)
{
    struct store *s = arg;
    uv_mutex_lock(&s->mu);
    for (;;) {
        while (!s->q_head && !s->is_stopping) {
            if (s->db || s->engine != STORE_ENGINE_POSTGRES) {
                uv_cond_wait(&s->work_cond, &s->mu);
                continue;
            }
            /* Disconnected and idle: reconnect in the background when the backoff is over. */
            int64_t wait_ms = s->next_connect_ms - mono_ms();
            if (wait_ms > 0) {
                (void)uv_cond_timedwait(&s->work_cond, &s->mu, (uint64_t)wait_ms * 1000000u);
                continue;
            }
            uv_mutex_unlock(&s->mu);
            (void)reconnect(s, false);
            uv_mutex_lock(&s->mu);
        }
        struct job *j = s->q_head;
        if (!j) break; /* stopping, and nothing left */
        s->q_head = j->next;
        if (!s->q_head) s->q_tail = NULL;
        s->is_running_job = true;
        uv_mutex_unlock(&s->mu);

        run_job(s, j);

        uv_mutex_lock(&s->mu);
        s->is_running_job = false;
        if (j->is_sync) {
            j->is_finished = true; /* j may vanish as soon as mu is released */
        } else {
            j->next = NULL;
            if (s->d_tail)
                s->d_tail->next = j;
            else
                s->d_head = j;
            s->d_tail = j;
            uv_async_send(&s->async); /* the handle is closed only after this thread is joined */
        }
        uv_cond_broadcast(&s->wait_cond);
    }
    uv_mutex_unlock(&s->mu);
}

/* ---- loop thread ---------------------------------------------------------------------- */

static void enqueue(struct store *s, struct job *j)
{
    j->next = NULL;
    uv_mutex_lock(&s->mu);
    if (s->is_stopping) {
        uv_mutex_unlock(&s->mu);
        LOGE("store_misuse", "what=submit_after_close");
        abort();
    }
    if (s->q_tail)
        s->q_tail->next = j;
    else
        s->q_head = j;
    s->q_tail = j;
    uv_cond_signal(&s->work_cond);
    uv_mutex_unlock(&s->mu);
}

/* Calls the oldest pending completion, if any. */
static bool complete_one(struct store *s)
{
    uv_mutex_lock(&s->mu);
    struct job *j = s->d_head;
    if (j) {
        s->d_head = j->next;
        if (!s->d_head) s->d_tail = NULL;
    }
    uv_mutex_unlock(&s->mu);
    if (!j) return false;

    if (j->done) {
        j->done(j->ctx, j->rc, j->rc ? j->err.msg : NULL);
    } else if (j->rc) {
        char q[GW_ERROR_MSG_BYTES + 8];
        LOGE("store_job_failed", "err=%s", log_quote(q, sizeof q, j->err.msg, strlen(j->err.msg)));
    }
    xfree(j);
    if (--s->n_inflight == 0) uv_unref((uv_handle_t *)&s->async);
    return true;
}

static void on_async(uv_async_t *h)
{
    struct store *s = h->data;
    /* One at a time, re-reading the list: a completion may call store_close, which drains the
     * rest itself. */
    while (!s->is_closing && complete_one(s)) {
    }
}

static void on_async_closed(uv_handle_t *h)
{
    struct store *s = h->data;
    uv_cond_destroy(&s->wait_cond);
    uv_cond_destroy(&s->work_cond);
    uv_mutex_destroy(&s->mu);
    xfree(s->label);
    xfree(s->url);
    xfree(s->origin);
    xfree(s);
}

void store_submit(struct store *s, store_run_fn run, store_done_fn done, void *ctx)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->run = run;
    j->done = done;
    j->ctx = ctx;
    if (s->n_inflight++ == 0) uv_ref((uv_handle_t *)&s->async);
    enqueue(s, j);
}

int store_sync(struct store *s, store_run_fn run, void *ctx, struct gw_error *err)
{
    struct job j = {.run = run, .ctx = ctx, .is_sync = true};
    enqueue(s, &j);
    uv_mutex_lock(&s->mu);
    while (!j.is_finished) uv_cond_wait(&s->wait_cond, &s->mu);
    uv_mutex_unlock(&s->mu);
    if (j.rc && err) *err = j.err;
    return j.rc;
}

enum store_engine store_engine(const struct store *s)
{
    return s->engine;
}

int store_schema_version(const struct store *s)
{
    return s->schema_version;
}

void store_close(struct store *s)
{
    if (!s || s->is_closing) return;
    s->is_closing = true;

    /* Run every queued job and call its completion, here, in order. A completion may submit
     * more; those run too. The thread is idle with an empty queue when the loop ends. */
    unsigned n_completed = 0;
    for (;;) {
        uv_mutex_lock(&s->mu);
        while (s->q_head || s->is_running_job) uv_cond_wait(&s->wait_cond, &s->mu);
        uv_mutex_unlock(&s->mu);
        if (!complete_one(s)) break;
        n_completed++;
    }

    uv_mutex_lock(&s->mu);
    s->is_stopping = true;
    uv_cond_signal(&s->work_cond);
    uv_mutex_unlock(&s->mu);
    uv_thread_join(&s->thread);

    /* SQLite: the last connection to close checkpoints the WAL into the main file. */
    char q[256];
    store_db_close(s->db);
    LOGI("store_closed", "store=%s flushed_jobs=%u", qpath(q, sizeof q, s->label), n_completed);
    s->db = NULL;
    uv_close((uv_handle_t *)&s->async, on_async_closed);
}

/* ---- open ----------------------------------------------------------------------------- */

/* Refuses, before SQLite touches anything, a path whose directory is missing or not writable
 * (WAL needs to create PATH-wal and PATH-shm beside it), and an existing file that is not a
 * SQLite database (so it is never modified). A new file is created here with mode 0600; an
 * existing file open to group or others keeps its mode and is logged (store_file_mode). */
static int check_path(const char *path, struct gw_error *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? xstrdup(".") : xstrndup(path, slash == path ? 1 : (size_t)(slash - path));
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) != 0)
        rc = gw_error_set(err, GW_E_IO, "%s: directory %s: %s", path, dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        rc = gw_error_set(err, GW_E_IO, "%s: %s is not a directory", path, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        rc = gw_error_set(err, GW_E_IO, "%s: directory %s is not writable: %s", path, dir,
                          strerror(errno));
    xfree(dir);
    if (rc) return rc;

    if (stat(path, &st) != 0) {
        if (errno != ENOENT) return gw_error_set(err, GW_E_IO, "%s: %s", path, strerror(errno));
        /* The store holds key hashes and node secrets: created owner-only here rather than by
         * sqlite3_open_v2 (0644 less the umask). SQLite gives PATH-wal and PATH-shm the mode of
         * the database file, so they are 0600 too. O_EXCL: a file that appeared meanwhile is
         * someone else's and is checked below like any existing file. */
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            close(fd);
            return 0; /* an empty file is an empty database */
        }
        if (errno != EEXIST) return gw_error_set(err, GW_E_IO, "%s: %s", path, strerror(errno));
        if (stat(path, &st) != 0)
            return gw_error_set(err, GW_E_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return gw_error_set(err, GW_E_IO, "%s: not a regular file", path);
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        /* the operator's file and the operator's choice: said once, never changed */
        char q[256];
        LOGW("store_file_mode", "path=%s mode=%04o: open to group or others; chmod 600 it",
             qpath(q, sizeof q, path), (unsigned)(st.st_mode & 07777));
    }
    if (access(path, R_OK | W_OK) != 0)
        return gw_error_set(err, GW_E_IO, "%s: not writable: %s", path, strerror(errno));
    if (st.st_size == 0) return 0; /* an empty file is an empty database */

    static const char magic[16] = "SQLite format 3";
    char head[16] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gw_error_set(err, GW_E_IO, "%s: %s", path, strerror(errno));
    ssize_t n = read(fd, head, sizeof head);
    int read_errno = errno;
    close(fd);
    if (n < 0) return gw_error_set(err, GW_E_IO, "%s: %s", path, strerror(read_errno));
    if (n != (ssize_t)sizeof head || memcmp(head, magic, sizeof magic) != 0)
        return gw_error_set(err, GW_E_INVALID, "%s: not a SQLite database", path);
    return 0;
}

/* One statement whose single result row, if any, is copied into out. */
static int pragma(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (out && cap) out[0] = '\0';
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            if (out && cap) {
                const unsigned char *t = sqlite3_column_text(st, 0);
                snprintf(out, cap, "%s", t ? (const char *)t : "");
            }
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int configure(sqlite3 *db, const char *path, bool is_memory, unsigned busy_timeout_ms,
                     struct gw_error *err)
{
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db,
                         busy_timeout_ms ? (int)busy_timeout_ms : STORE_DEFAULT_BUSY_TIMEOUT_MS);
    if (!is_memory && sqlite3_db_readonly(db, "main") == 1)
        return gw_error_set(err, GW_E_IO, "%s: opened read-only (not writable)", path);
    /* A read first: a corrupt or foreign file fails here, before any write. */
    int rc = pragma(db, "SELECT count(*) FROM sqlite_master", NULL, 0);
    if ((rc & 0xff) == SQLITE_NOTADB)
        return gw_error_set(err, GW_E_INVALID, "%s: not a SQLite database", path);
    if (rc != SQLITE_OK) return gw_error_set(err, GW_E_IO, "%s: %s", path, sqlite3_errmsg(db));

    char mode[32];
    if (pragma(db, "PRAGMA journal_mode=WAL", mode, sizeof mode) != SQLITE_OK)
        return gw_error_set(err, GW_E_IO, "%s: journal_mode: %s", path, sqlite3_errmsg(db));
    if (!is_memory && strcmp(mode, "wal") != 0)
        return gw_error_set(err, GW_E_IO, "%s: cannot use WAL (journal_mode is %s)", path, mode);
    char fk[8];
    if (pragma(db, "PRAGMA synchronous=FULL", NULL, 0) != SQLITE_OK ||
        pragma(db, "PRAGMA foreign_keys=ON", NULL, 0) != SQLITE_OK ||
        pragma(db, "PRAGMA foreign_keys", fk, sizeof fk) != SQLITE_OK)
        return gw_error_set(err, GW_E_IO, "%s: pragma: %s", path, sqlite3_errmsg(db));
    if (strcmp(fk, "1") != 0)
        return gw_error_set(err, GW_E_IO, "%s: this SQLite cannot enforce foreign keys", path);
    return 0;
}

/* Opens, configures and migrates a SQLite file (or ":memory:"). */
static int open_sqlite(const struct store_config *cfg, struct store_db **out, int *version,
                       struct gw_error *err)
{
    const char *path = cfg->path;
    if (!path || !*path) return gw_error_set(err, GW_E_INVALID, "store: no database path");
    bool is_memory = strcmp(path, ":memory:") == 0;
    if (!is_memory) {
        int rc = check_path(path, err);
        if (rc) return rc;
    }
    sqlite3 *lite = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int src = sqlite3_open_v2(path, &lite, flags, NULL);
    int rc = 0;
    if (src != SQLITE_OK)
        rc = gw_error_set(err, GW_E_IO, "%s: %s", path,
                          lite ? sqlite3_errmsg(lite) : sqlite3_errstr(src));
    if (!rc) rc = configure(lite, path, is_memory, cfg->busy_timeout_ms, err);
    if (rc) {
        sqlite3_close(lite); /* NULL is fine */
        return rc;
    }
    struct store_db *db = store_db_wrap_sqlite(lite, path);
    rc = store_migrate(db, version, err);
    if (rc) {
        store_db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int open_pg(const struct store_config *cfg, struct store_db **out, int *version,
                   struct gw_error *err)
{
    if (!cfg->url || !*cfg->url)
        return gw_error_set(err, GW_E_INVALID, "store: engine postgres needs store.url");
    struct store_db *db = NULL;
    int rc =
        store_db_connect_pg(cfg->url, cfg->connect_timeout_ms, cfg->statement_timeout_ms, &db, err);
    if (!rc) rc = store_migrate(db, version, err);
    if (!rc && store_db_set_origin(db, cfg->origin))
        rc = store_db_error(db, "postgres: set origin", err);
    if (rc) {
        store_db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

int store_open(uv_loop_t *loop, const struct store_config *cfg, struct store **out,
               struct gw_error *err)
{
    struct gw_error local;
    if (!err) err = &local;
    *out = NULL;
    if (!cfg) return gw_error_set(err, GW_E_INVALID, "store: no configuration");
    struct store_db *db = NULL;
    int version = 0;
    int rc = cfg->engine == STORE_ENGINE_POSTGRES ? open_pg(cfg, &db, &version, err)
                                                  : open_sqlite(cfg, &db, &version, err);
    if (rc) return rc;

    struct store *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->db = db;
    s->engine = cfg->engine;
    s->label = xstrdup(store_db_label(db));
    s->is_available = true;
    if (cfg->engine == STORE_ENGINE_POSTGRES) {
        s->url = xstrdup(cfg->url);
        s->origin = cfg->origin ? xstrdup(cfg->origin) : NULL;
        s->connect_timeout_ms =
            cfg->connect_timeout_ms ? cfg->connect_timeout_ms : STORE_DEFAULT_CONNECT_TIMEOUT_MS;
        s->statement_timeout_ms = cfg->statement_timeout_ms ? cfg->statement_timeout_ms
                                                            : STORE_DEFAULT_STATEMENT_TIMEOUT_MS;
    }
    s->schema_version = version;
    uv_mutex_init(&s->mu);
    uv_cond_init(&s->work_cond);
    uv_cond_init(&s->wait_cond);
    uv_async_init(loop, &s->async, on_async);
    s->async.data = s;
    uv_unref((uv_handle_t *)&s->async); /* referenced only while completions are pending */
    int trc = uv_thread_create(&s->thread, store_thread_main, s);
    if (trc != 0) {
        rc = gw_error_set(err, GW_E_IO, "%s: cannot start the store thread: %s", s->label,
                          uv_strerror(trc));
        store_db_close(db);
        s->db = NULL;
        s->is_closing = true;
        uv_close((uv_handle_t *)&s->async, on_async_closed);
        return rc;
    }
    char q[256];
    LOGI("store_open", "store=%s engine=%s schema_version=%d", qpath(q, sizeof q, s->label),
         s->engine == STORE_ENGINE_POSTGRES ? "postgres" : "sqlite", version);
    *out = s;
    return 0;
}
