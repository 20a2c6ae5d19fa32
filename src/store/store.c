/* store — the job queue and the store thread. The loop thread submits jobs (a FIFO under mu);
 * the one store thread owns the sqlite3 handle, runs each job inside BEGIN IMMEDIATE … COMMIT
 * and moves it to the completed list; uv_async wakes the loop thread, which pops completions
 * one at a time, in submission order (async sends coalesce, so one wake-up may find many).
 * Invariants: a completion runs only after its transaction committed or rolled back; the async
 * handle is referenced only while some job's completion is still to run, so a loop that has
 * nothing else to do returns from uv_run exactly when the store is idle. store_close never
 * re-enters uv_run: it waits for the queue and calls the remaining completions itself. */
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

enum { STORE_DEFAULT_BUSY_TIMEOUT_MS = 5000 };

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
    sqlite3 *db;                 /* the store thread's while it runs */
    int schema_version;
    char *path;
};

static const char *qpath(char *q, size_t cap, const char *path)
{
    return log_quote(q, cap, path, strlen(path));
}

/* ---- store thread --------------------------------------------------------------------- */

static void run_job(struct store *s, struct job *j)
{
    j->rc = 0;
    memset(&j->err, 0, sizeof j->err);
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        j->rc = gw_error_set(&j->err, GW_E_IO, "%s: begin: %s", s->path, sqlite3_errmsg(s->db));
        return;
    }
    int rc = j->run(s->db, j->ctx, &j->err);
    if (rc == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = gw_error_set(&j->err, GW_E_IO, "%s: commit: %s", s->path, sqlite3_errmsg(s->db));
    if (rc != 0) {
        if (!j->err.msg[0]) gw_error_set(&j->err, rc, "%s", gw_strerror(rc));
        if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    j->rc = rc;
}

static void store_thread_main(void *arg)
{
    struct store *s = arg;
    uv_mutex_lock(&s->mu);
    for (;;) {
        while (!s->q_head && !s->is_stopping) uv_cond_wait(&s->work_cond, &s->mu);
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
    xfree(s->path);
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

    /* The last connection to close checkpoints the WAL into the main file. */
    char q[256];
    if (sqlite3_close(s->db) != SQLITE_OK)
        LOGE("store_close_failed", "path=%s err=%s", qpath(q, sizeof q, s->path),
             sqlite3_errmsg(s->db));
    else
        LOGI("store_closed", "path=%s flushed_jobs=%u", qpath(q, sizeof q, s->path), n_completed);
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

int store_open(uv_loop_t *loop, const struct store_config *cfg, struct store **out,
               struct gw_error *err)
{
    struct gw_error local;
    if (!err) err = &local;
    *out = NULL;
    const char *path = cfg ? cfg->path : NULL;
    if (!path || !*path) return gw_error_set(err, GW_E_INVALID, "store: no database path");
    bool is_memory = strcmp(path, ":memory:") == 0;
    if (!is_memory) {
        int rc = check_path(path, err);
        if (rc) return rc;
    }

    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int src = sqlite3_open_v2(path, &db, flags, NULL);
    int rc = 0;
    int version = 0;
    if (src != SQLITE_OK)
        rc = gw_error_set(err, GW_E_IO, "%s: %s", path,
                          db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
    if (!rc) rc = configure(db, path, is_memory, cfg->busy_timeout_ms, err);
    if (!rc) rc = store_migrate(db, path, &version, err);
    if (rc) {
        sqlite3_close(db); /* NULL is fine */
        return rc;
    }

    struct store *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->db = db;
    s->path = xstrdup(path);
    s->schema_version = version;
    uv_mutex_init(&s->mu);
    uv_cond_init(&s->work_cond);
    uv_cond_init(&s->wait_cond);
    uv_async_init(loop, &s->async, on_async);
    s->async.data = s;
    uv_unref((uv_handle_t *)&s->async); /* referenced only while completions are pending */
    int trc = uv_thread_create(&s->thread, store_thread_main, s);
    if (trc != 0) {
        rc = gw_error_set(err, GW_E_IO, "%s: cannot start the store thread: %s", path,
                          uv_strerror(trc));
        sqlite3_close(db);
        s->db = NULL;
        s->is_closing = true;
        uv_close((uv_handle_t *)&s->async, on_async_closed);
        return rc;
    }
    char q[256];
    LOGI("store_open", "path=%s schema_version=%d", qpath(q, sizeof q, path), version);
    *out = s;
    return 0;
}
