/* store_watch — the coordination connection (see store_watch.h). One thread owns the
 * connection; it waits in poll() on the connection's socket and on a pipe that store_watch_stop
 * writes, so it reacts at once to a notification, a lost connection or a stop. Events go to a
 * list under mu and a uv_async wakes the loop thread, which delivers them in order. */
#include "store/store_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "store/store_impl.h"

enum { WATCH_RECONNECT_MIN_MS = 250, WATCH_RECONNECT_MAX_MS = 10000 };

struct event {
    struct event *next;
    enum store_watch_event ev;
    char *table, *key;
};

struct store_watch {
    uv_async_t async;
    uv_thread_t thread;
    uv_mutex_t mu;
    struct event *head, *tail; /* (mu) */
    bool is_stopping;          /* (mu) */
    int wake[2];               /* pipe: stop */
    store_watch_fn *fn;
    void *ctx;
    /* store thread of the watch only */
    char *url, *origin;
    int64_t lock_key;
    unsigned lease_ms, connect_timeout_ms;
    struct store_db *db;
    bool is_leader;
};

static int64_t mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000u);
}

static void post(struct store_watch *w, enum store_watch_event ev, const char *table,
                 const char *key)
{
    struct event *e = xcalloc(1, sizeof *e);
    e->ev = ev;
    e->table = table ? xstrdup(table) : NULL;
    e->key = key ? xstrdup(key) : NULL;
    uv_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = e;
    else
        w->head = e;
    w->tail = e;
    uv_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
}

static bool is_stopping(struct store_watch *w)
{
    uv_mutex_lock(&w->mu);
    bool s = w->is_stopping;
    uv_mutex_unlock(&w->mu);
    return s;
}

/* Sleeps up to ms, or less when a stop is asked (or the connection has input). */
static void wait_for(struct store_watch *w, int64_t ms)
{
    struct pollfd p[2] = {{.fd = w->wake[0], .events = POLLIN},
                          {.fd = w->db ? PQsocket(store_db_pgconn(w->db)) : -1, .events = POLLIN}};
    if (ms < 0) ms = 0;
    (void)poll(p, w->db ? 2 : 1, (int)ms);
}

static void lost(struct store_watch *w, const char *why)
{
    char q[GW_ERROR_MSG_BYTES + 8];
    LOGW("store_watch_lost", "leader=%s err=%s", w->is_leader ? "yes" : "no",
         log_quote(q, sizeof q, why, strlen(why)));
    store_db_close(w->db);
    w->db = NULL;
    if (w->is_leader) {
        w->is_leader = false;
        post(w, STORE_WATCH_FOLLOWER, NULL, NULL);
    }
    post(w, STORE_WATCH_DOWN, NULL, NULL);
}

/* Delivers pending notifications; "TABLE ORIGIN KEY" (the key may hold spaces). */
static void drain_notifies(struct store_watch *w)
{
    PGconn *pg = store_db_pgconn(w->db);
    PGnotify *n;
    while ((n = PQnotifies(pg)) != NULL) {
        char *p = n->extra;
        char *sp1 = p ? strchr(p, ' ') : NULL;
        char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (sp1 && sp2) {
            *sp1 = *sp2 = '\0';
            if (!w->origin || strcmp(sp1 + 1, w->origin) != 0)
                post(w, STORE_WATCH_CHANGE, p, sp2 + 1);
        }
        PQfreemem(n);
    }
}

/* One query whose first column of the first row is "t" (or any row for SELECT 1). */
static int query_bool(struct store_watch *w, const char *sql, bool *out)
{
    struct store_stmt *st = NULL;
    int rc = store_prepare(w->db, sql, &st);
    if (!rc) {
        rc = store_step(st);
        if (rc == STORE_ROW) {
            *out = store_col_int64(st, 0) != 0;
            rc = 0;
        } else if (rc == STORE_DONE) {
            rc = GW_E_IO;
        }
    }
    store_finalize(st);
    return rc;
}

static void watch_main(void *arg)
{
    struct store_watch *w = arg;
    unsigned backoff_ms = 0;
    int64_t next_connect_ms = 0, next_check_ms = 0;
    char q[GW_ERROR_MSG_BYTES + 8];
    while (!is_stopping(w)) {
        int64_t now = mono_ms();
        if (!w->db) {
            if (now < next_connect_ms) {
                wait_for(w, next_connect_ms - now);
                continue;
            }
            struct gw_error err = {0};
            struct store_db *db = NULL;
            int rc = store_db_connect_pg(w->url, w->connect_timeout_ms, 0, &db, &err);
            if (!rc && store_exec(db, "LISTEN drover")) {
                rc = store_db_error(db, "postgres: listen", &err);
                store_db_close(db);
            }
            if (rc) {
                backoff_ms = backoff_ms ? backoff_ms * 2 : WATCH_RECONNECT_MIN_MS;
                if (backoff_ms > WATCH_RECONNECT_MAX_MS) backoff_ms = WATCH_RECONNECT_MAX_MS;
                /* never slower than a lease: changes missed meanwhile wait for this reconnect */
                if (w->lease_ms && backoff_ms > w->lease_ms) backoff_ms = (unsigned)w->lease_ms;
                next_connect_ms = mono_ms() + backoff_ms;
                LOGW("store_watch_reconnect_failed", "retry_ms=%u err=%s", backoff_ms,
                     log_quote(q, sizeof q, err.msg, strlen(err.msg)));
                continue;
            }
            w->db = db;
            backoff_ms = 0;
            next_check_ms = 0;
            LOGI("store_watch_connected", "store=%s", store_db_label(db));
            post(w, STORE_WATCH_RESYNC, NULL, NULL);
            continue;
        }
        if (now >= next_check_ms) {
            /* a follower asks for the lock; a leader makes sure its session is still there */
            bool got = false;
            char sql[96];
            if (w->is_leader)
                snprintf(sql, sizeof sql, "SELECT 1");
            else
                snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(%lld)",
                         (long long)w->lock_key);
            if (query_bool(w, sql, &got)) {
                char what[GW_ERROR_MSG_BYTES];
                struct gw_error err = {0};
                store_db_error(w->db, "postgres: lock", &err);
                snprintf(what, sizeof what, "%s", err.msg);
                lost(w, what);
                next_connect_ms = mono_ms(); /* at once, then back off */
                continue;
            }
            if (!w->is_leader && got) {
                w->is_leader = true;
                LOGI("leader_acquired", "lock=%lld", (long long)w->lock_key);
                post(w, STORE_WATCH_LEADER, NULL, NULL);
            }
            next_check_ms = mono_ms() + w->lease_ms;
            drain_notifies(w);
            continue;
        }
        drain_notifies(w);
        wait_for(w, next_check_ms - now);
        PGconn *pg = store_db_pgconn(w->db);
        if (!PQconsumeInput(pg) || PQstatus(pg) != CONNECTION_OK) {
            char what[GW_ERROR_MSG_BYTES];
            snprintf(what, sizeof what, "%s", PQerrorMessage(pg));
            for (char *c = what; *c; c++)
                if (*c == '\n') *c = ' ';
            lost(w, what[0] ? what : "connection lost");
            next_connect_ms = mono_ms();
            continue;
        }
        drain_notifies(w);
    }
    store_db_close(w->db); /* the lock, if held, goes with the session */
    w->db = NULL;
}

static void on_async(uv_async_t *h)
{
    struct store_watch *w = h->data;
    for (;;) {
        uv_mutex_lock(&w->mu);
        struct event *e = w->head;
        if (e) {
            w->head = e->next;
            if (!w->head) w->tail = NULL;
        }
        bool stopping = w->is_stopping;
        uv_mutex_unlock(&w->mu);
        if (!e) break;
        if (!stopping) w->fn(w->ctx, e->ev, e->table, e->key);
        xfree(e->table);
        xfree(e->key);
        xfree(e);
    }
}

static void on_closed(uv_handle_t *h)
{
    struct store_watch *w = h->data;
    uv_mutex_destroy(&w->mu);
    xfree(w->url);
    xfree(w->origin);
    xfree(w);
}

int store_watch_start(uv_loop_t *loop, const struct store_watch_config *cfg, store_watch_fn *fn,
                      void *ctx, struct store_watch **out, struct gw_error *err)
{
    *out = NULL;
    struct store_watch *w = xcalloc(1, sizeof *w);
    if (pipe2(w->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        xfree(w);
        return gw_error_set(err, GW_E_IO, "store watch: pipe: %s", strerror(e));
    }
    w->fn = fn;
    w->ctx = ctx;
    w->url = xstrdup(cfg->url);
    w->origin = cfg->origin ? xstrdup(cfg->origin) : NULL;
    w->lock_key = cfg->lock_key;
    w->lease_ms = cfg->lease_ms ? cfg->lease_ms : 10000;
    w->connect_timeout_ms = cfg->connect_timeout_ms;
    uv_mutex_init(&w->mu);
    uv_async_init(loop, &w->async, on_async);
    w->async.data = w;
    uv_unref((uv_handle_t *)&w->async); /* never keeps the loop alive by itself */
    int rc = uv_thread_create(&w->thread, watch_main, w);
    if (rc) {
        close(w->wake[0]);
        close(w->wake[1]);
        uv_close((uv_handle_t *)&w->async, on_closed);
        return gw_error_set(err, GW_E_IO, "store watch: thread: %s", uv_strerror(rc));
    }
    *out = w;
    return 0;
}

void store_watch_stop(struct store_watch *w)
{
    if (!w) return;
    uv_mutex_lock(&w->mu);
    w->is_stopping = true;
    uv_mutex_unlock(&w->mu);
    ssize_t n = write(w->wake[1], "x", 1);
    (void)n;
    uv_thread_join(&w->thread);
    close(w->wake[0]);
    close(w->wake[1]);
    struct event *e = w->head;
    while (e) {
        struct event *next = e->next;
        xfree(e->table);
        xfree(e->key);
        xfree(e);
        e = next;
    }
    w->head = w->tail = NULL;
    uv_close((uv_handle_t *)&w->async, on_closed);
}
