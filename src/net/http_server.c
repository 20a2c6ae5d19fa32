/* http_server — HTTP/1.1 server on libuv; parsing is net/http_parse. One struct http_conn per
 * socket embeds its tcp and timer handles, its parser and its (single) request; the state
 * machine is in docs/http_server.md. Invariants: a connection owns at most one request at a
 * time; conn memory is freed only once both handles have closed and the request (if any) has
 * been released, so every callback may keep using its conn; abort callbacks are delivered
 * from the server's idle handle (a later loop iteration), never from inside a response call.
 * Reads land in one server-wide buffer; only bytes that must wait (pipelining) are copied.
 * Writes try uv_try_write with all pieces first and copy only the unwritten tail. Loop thread
 * only. */
#include "net/http_server.h"

#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "net/http_parse.h"
#include "net/tls.h"

enum {
    READ_BUF_BYTES = 64 * 1024,
    PENDING_MAX_BYTES = 2 * READ_BUF_BYTES, /* bytes buffered while a request is handled */
    LINGER_MS = 1000,
    LINGER_MAX_BYTES = 1024 * 1024,
    ARENA_CHUNK_BYTES = 1024, /* per request; most heads fit; held for a whole stream */
    LISTEN_BACKLOG = 511,
    TLS_COALESCE_BYTES = 16 * 1024, /* pieces up to one record are encrypted as one */
    TLS_RECORD_HANDSHAKE = 0x16,
};

enum conn_state { CS_HEAD, CS_BODY, CS_HANDLING, CS_IDLE, CS_LINGER, CS_CLOSED };

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uint64_t deadline_at; /* loop ms the current state times out (0: none); see timer_arm */
    uint64_t due_at;      /* loop ms the uv timer is set for (0: not running) */
    uv_shutdown_t shutdown_req;
    struct http_server *srv;
    struct http_conn *prev, *next; /* server's list */
    struct http_conn *defer_next;  /* server's deferred-work list */
    struct http_parser parser;
    struct http_request req;
    struct buf pending; /* received, not yet parsed */
    enum conn_state state;
    int handles_open;
    size_t queued_bytes;
    size_t linger_bytes;
    http_abort_fn *abort_fn;
    void *abort_ctx;
    http_drain_fn *drain_fn;
    void *drain_ctx;
    int64_t remaining; /* Content-Length stream: bytes still owed; -1 otherwise */
    bool is_req_held;  /* dispatched and not yet released */
    bool is_resp_started, is_chunked, is_raw, is_no_body, is_keep;
    bool is_closing, is_reading, is_blocked, in_drive, is_deferred, is_abort_owed;
    bool is_rejected;
    bool is_tls_seen;     /* the first byte of a TLS conn was looked at */
    struct tls_conn *tls; /* owned; NULL on a plain conn */
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_idle_t idle;
    struct http_server_config cfg;
    char *host, *server_name; /* owned copies */
    http_handler_fn *handler;
    void *ctx;
    struct http_conn *conns;
    struct http_conn *deferred;
    unsigned n_conns, n_rejected, n_active;
    int port;
    int handles_open;
    bool is_listening, is_draining, is_closing, is_idle_closed;
    void (*done)(void *arg);
    void *done_arg;
    struct tls_ctx *tls; /* one reference; NULL: plain */
    char read_buf[READ_BUF_BYTES];
    char tls_buf[TLS_COALESCE_BYTES];
};

struct write_block {
    uv_write_t req;
    size_t len;
    char data[];
};

static uint64_t next_request_id;

static void conn_close(struct http_conn *c);
static void conn_drive(struct http_conn *c);

/* --- small helpers -------------------------------------------------------------------- */

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

void http_server_config_defaults(struct http_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->max_header_bytes = 16 * 1024;
    cfg->max_body_bytes = 16 * 1024 * 1024;
    cfg->header_timeout_ms = 10 * 1000;
    cfg->body_timeout_ms = 60 * 1000;
    cfg->idle_timeout_ms = 60 * 1000;
    cfg->max_connections = 10000;
    cfg->write_high_water_bytes = 256 * 1024;
    cfg->write_low_water_bytes = 64 * 1024;
    cfg->server_name = NULL;
}

static void on_timer(uv_timer_t *t);

/* Sets the connection's one deadline (0 ms clears it), lazily: a deadline later than the
 * running timer is only stored and the timer re-arms itself for it when it fires; a cleared
 * one leaves the timer to fire once and find nothing. No timer-heap work per request. */
static void timer_arm(struct http_conn *c, uint64_t ms)
{
    uint64_t now = uv_now(c->tcp.loop);
    c->deadline_at = ms ? now + ms : 0;
    if (!c->deadline_at || (c->due_at && c->due_at <= c->deadline_at)) return;
    uv_timer_start(&c->timer, on_timer, ms, 0);
    c->due_at = c->deadline_at;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    struct http_conn *c = h->data;
    out->base = c->srv->read_buf;
    out->len = sizeof c->srv->read_buf;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void conn_set_reading(struct http_conn *c, bool on)
{
    if (c->is_closing || on == c->is_reading) return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0) c->is_reading = true;
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->is_reading = false;
    }
}

/* --- teardown ------------------------------------------------------------------------- */

static void server_maybe_free(struct http_server *s)
{
    if (!s->is_closing || s->handles_open || s->conns) return;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    xfree(s->host);
    xfree(s->server_name);
    tls_ctx_unref(s->tls);
    xfree(s);
    if (done) done(arg);
}

static void release_request(struct http_conn *c)
{
    if (!c->is_req_held) return;
    c->is_req_held = false;
    c->srv->n_active--;
    c->abort_fn = NULL;
    c->drain_fn = NULL;
    c->req.conn = NULL;
    arena_reset(&c->req.arena); /* keeps one chunk for the next request on this conn */
}

static void conn_maybe_free(struct http_conn *c)
{
    if (c->handles_open || c->is_req_held || c->is_deferred) return;
    struct http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->is_rejected)
        s->n_rejected--;
    else
        s->n_conns--;
    http_parser_free(&c->parser);
    if (c->tls) {
        tls_conn_free(c->tls);
        xfree(c->tls);
    }
    buf_free(&c->pending);
    arena_free(&c->req.arena);
    xfree(c);
    server_maybe_free(s);
}

static void on_conn_handle_close(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    c->handles_open--;
    conn_maybe_free(c);
}

static void on_server_handle_close(uv_handle_t *h)
{
    struct http_server *s = h->data;
    s->handles_open--;
    server_maybe_free(s);
}

static void on_idle(uv_idle_t *h)
{
    struct http_server *s = h->data;
    uv_idle_stop(h);
    struct http_conn *list = s->deferred;
    s->deferred = NULL;
    bool close_idle = s->is_closing && !s->is_idle_closed;
    if (close_idle) {
        s->is_idle_closed = true; /* later deferrals are handled by the closing path below */
    }
    while (list) {
        struct http_conn *c = list;
        list = c->defer_next;
        c->defer_next = NULL;
        if (c->is_abort_owed && c->is_req_held) {
            c->is_abort_owed = false;
            if (c->abort_fn) c->abort_fn(&c->req, c->abort_ctx);
            release_request(c);
        }
        c->is_deferred = false;
        conn_maybe_free(c);
    }
    if (close_idle) uv_close((uv_handle_t *)&s->idle, on_server_handle_close);
}

static void conn_defer(struct http_conn *c)
{
    struct http_server *s = c->srv;
    if (c->is_deferred) return;
    if (s->is_idle_closed) {
        /* Only reachable while the server is closing: deliver now (we are in a callback). */
        if (c->is_abort_owed && c->is_req_held && c->abort_fn) c->abort_fn(&c->req, c->abort_ctx);
        c->is_abort_owed = false;
        release_request(c);
        return;
    }
    c->is_deferred = true;
    c->defer_next = s->deferred;
    s->deferred = c;
    uv_idle_start(&s->idle, on_idle);
}

/* Closes at once; an in-flight request gets its abort callback later. */
static void conn_close(struct http_conn *c)
{
    if (c->is_closing) return;
    c->is_closing = true;
    c->is_reading = false;
    c->state = CS_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_close);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_close);
    if (c->is_req_held) {
        c->is_abort_owed = true;
        conn_defer(c);
    }
}

/* --- writing -------------------------------------------------------------------------- */

static void on_write(uv_write_t *w, int status)
{
    struct write_block *b = (struct write_block *)w;
    struct http_conn *c = w->handle->data;
    c->queued_bytes -= b->len;
    xfree(b);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->is_blocked && c->queued_bytes <= c->srv->cfg.write_low_water_bytes) {
        c->is_blocked = false;
        if (c->is_req_held && c->drain_fn && !c->is_closing) c->drain_fn(&c->req, c->drain_ctx);
    }
}

/* Writes the pieces to the socket in order; copies only what the socket did not take at once. */
static int conn_send(struct http_conn *c, uv_buf_t *bufs, unsigned n)
{
    if (c->is_closing) return GW_E_CLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += bufs[i].len;
    if (total == 0) return 0;
    int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w < 0 && w != UV_EAGAIN && w != UV_ENOSYS) {
        conn_close(c);
        return GW_E_CLOSED;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    if (done == total) return 0;
    size_t rest = total - done;
    struct write_block *b = xmalloc(sizeof *b + rest);
    b->len = rest;
    size_t off = 0, skip = done;
    for (unsigned i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(b->data + off, bufs[i].base + skip, len - skip);
        off += len - skip;
        skip = 0;
    }
    uv_buf_t one = uv_buf_init(b->data, (unsigned)rest);
    if (uv_write(&b->req, (uv_stream_t *)&c->tcp, &one, 1, on_write) != 0) {
        xfree(b);
        conn_close(c);
        return GW_E_CLOSED;
    }
    c->queued_bytes += rest;
    if (c->queued_bytes > c->srv->cfg.write_high_water_bytes) c->is_blocked = true;
    return 0;
}

/* Sends the ciphertext the TLS pump produced (handshake records, alerts, data). */
static int conn_tls_flush(struct http_conn *c)
{
    const char *p;
    size_t n = tls_conn_out(c->tls, &p);
    if (n == 0) return 0;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = conn_send(c, &b, 1);
    tls_conn_out_consume(c->tls, n);
    return rc;
}

/* Writes the pieces in order, through TLS on a TLS conn. Small pieces (a chunk's size line,
 * data and CRLF) are encrypted as one record. Any failure closes the conn. */
static int conn_write(struct http_conn *c, uv_buf_t *bufs, unsigned n)
{
    if (!c->tls) return conn_send(c, bufs, n);
    if (c->is_closing) return GW_E_CLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += bufs[i].len;
    int rc = 0;
    if (n > 1 && total <= sizeof c->srv->tls_buf) {
        size_t off = 0;
        for (unsigned i = 0; i < n; i++) {
            memcpy(c->srv->tls_buf + off, bufs[i].base, bufs[i].len);
            off += bufs[i].len;
        }
        rc = tls_conn_write(c->tls, c->srv->tls_buf, total);
    } else {
        for (unsigned i = 0; i < n && !rc; i++)
            if (bufs[i].len) rc = tls_conn_write(c->tls, bufs[i].base, bufs[i].len);
    }
    if (rc) {
        conn_close(c);
        return GW_E_CLOSED;
    }
    return conn_tls_flush(c);
}

/* --- closing politely ----------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *r, int status)
{
    struct http_conn *c = r->data;
    if (c->is_closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    timer_arm(c, LINGER_MS);
}

/* Everything queued is sent, the write side is shut, and input is drained for a bounded time
 * so the kernel does not answer unread input with RST and destroy our last answer. */
static void conn_linger(struct http_conn *c)
{
    if (c->is_closing || c->state == CS_LINGER) return;
    c->state = CS_LINGER;
    c->linger_bytes = 0;
    uint64_t flush_ms =
        c->srv->cfg.idle_timeout_ms > LINGER_MS ? c->srv->cfg.idle_timeout_ms : LINGER_MS;
    timer_arm(c, flush_ms); /* bounds a client that never reads what is queued */
    if (c->tls) {           /* close_notify first, so the client can tell our end from a cut */
        tls_conn_shutdown(c->tls);
        if (conn_tls_flush(c)) return;
    }
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    conn_set_reading(c, true);
}

static void conn_fail(struct http_conn *c, int status, const char *code, const char *msg)
{
    char body[256], head[512];
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    int bn = snprintf(body, sizeof body,
                      "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,"
                      "\"code\":\"%s\"}}",
                      msg, type, code);
    const char *sn = c->srv->server_name;
    int hn =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n%s%s%s%s\r\n",
                 status, http_status_reason(status), bn, status == 503 ? "Retry-After: 1\r\n" : "",
                 sn ? "Server: " : "", sn ? sn : "", sn ? "\r\n" : "");
    if (bn < 0 || hn < 0 || (size_t)hn >= sizeof head) {
        conn_close(c);
        return;
    }
    LOGD("http_refused", "peer=%s status=%d code=%s", c->req.peer, status, code);
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)hn), uv_buf_init(body, (unsigned)bn)};
    if (conn_write(c, bufs, 2) == 0) conn_linger(c);
}

static void conn_fail_parse(struct http_conn *c, int err)
{
    switch (http_parse_status(err)) {
    case 431:
        conn_fail(c, 431, "request_header_fields_too_large", "Request header fields too large");
        break;
    case 413:
        conn_fail(c, 413, "request_too_large", "Request body too large");
        break;
    default:
        conn_fail(c, 400, "invalid_request", "Malformed HTTP request");
        break;
    }
}

/* --- reading -------------------------------------------------------------------------- */

static void conn_begin_request(struct http_conn *c)
{
    http_parser_begin(&c->parser, &c->req);
}

static void conn_dispatch(struct http_conn *c)
{
    struct http_server *s = c->srv;
    c->state = CS_HANDLING;
    c->deadline_at = 0;
    c->is_req_held = true;
    s->n_active++;
    c->req.conn = c;
    c->req.id = __atomic_add_fetch(&next_request_id, 1, __ATOMIC_RELAXED);
    c->is_resp_started = c->is_chunked = c->is_raw = c->is_no_body = false;
    c->remaining = -1;
    c->is_keep = c->req.keep_alive;
    s->handler(&c->req, s->ctx);
}

/* Parses from data until a request is dispatched or the bytes run out; returns bytes used. */
static size_t conn_consume(struct http_conn *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && !c->is_closing &&
           (c->state == CS_HEAD || c->state == CS_BODY || c->state == CS_IDLE)) {
        if (c->state == CS_IDLE) {
            c->state = CS_HEAD;
            timer_arm(c, c->srv->cfg.header_timeout_ms);
        }
        size_t used = 0;
        bool complete = false;
        int rc = http_parser_feed(&c->parser, data + off, len - off, &used, &complete);
        if (rc) {
            conn_fail_parse(c, rc);
            return len;
        }
        off += used;
        if (complete) {
            conn_dispatch(c);
        } else if (c->state == CS_HEAD && http_parser_is_head_done(&c->parser)) {
            c->state = CS_BODY;
            timer_arm(c, c->srv->cfg.body_timeout_ms);
            if (http_parser_expects_continue(&c->parser)) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
                (void)conn_write(c, &b, 1);
            }
        }
    }
    return off;
}

static void conn_keep_pending(struct http_conn *c, const char *p, size_t n)
{
    if (buf_append(&c->pending, p, n) != 0) {
        /* More than a read's worth of pipelined bytes: nobody needs that. */
        conn_close(c);
        return;
    }
    if (c->pending.len >= PENDING_MAX_BYTES / 2) conn_set_reading(c, false);
}

/* Parses what was buffered while a request was being handled. */
static void conn_drive(struct http_conn *c)
{
    if (c->in_drive) return;
    c->in_drive = true;
    while (c->pending.len && !c->is_closing &&
           (c->state == CS_HEAD || c->state == CS_BODY || c->state == CS_IDLE)) {
        size_t used = conn_consume(c, c->pending.p, c->pending.len);
        buf_consume(&c->pending, used);
    }
    c->in_drive = false;
    if (c->pending.len == 0 && c->pending.p) {
        buf_free(&c->pending);
        buf_init(&c->pending, PENDING_MAX_BYTES);
    }
}

/* Plaintext bytes, from the socket or from the TLS pump. */
static void conn_on_bytes(struct http_conn *c, const char *p, size_t n)
{
    switch (c->state) {
    case CS_LINGER:
        c->linger_bytes += n;
        if (c->linger_bytes > LINGER_MAX_BYTES) conn_close(c);
        return;
    case CS_HANDLING:
        conn_keep_pending(c, p, n);
        return;
    case CS_HEAD:
    case CS_BODY:
    case CS_IDLE:
        if (c->pending.len) {
            conn_keep_pending(c, p, n);
            conn_drive(c);
            return;
        }
        c->in_drive = true;
        size_t used = conn_consume(c, p, n);
        c->in_drive = false;
        if (used < n && !c->is_closing) conn_keep_pending(c, p + used, n - used);
        conn_drive(c);
        return;
    case CS_CLOSED:
        return;
    }
}

/* Ciphertext from the socket: feed the pump, hand every plaintext byte it yields to the HTTP
 * side, send what it produced (handshake records, alerts). All of one read is decrypted at
 * once, so no plaintext ever waits inside OpenSSL while the socket is not being read; what the
 * HTTP side cannot take yet is buffered under the same cap as on a plain conn. */
static void conn_tls_read(struct http_conn *c, const char *p, size_t n)
{
    if (c->state == CS_LINGER) {
        c->linger_bytes += n;
        if (c->linger_bytes > LINGER_MAX_BYTES) conn_close(c);
        return;
    }
    if (!c->is_tls_seen) {
        c->is_tls_seen = true;
        if ((unsigned char)p[0] != TLS_RECORD_HANDSHAKE) {
            /* Plain HTTP (or anything else) on a TLS port: answer in clear that it is wrong,
             * as nginx does, instead of a TLS alert the client cannot read. */
            tls_conn_free(c->tls);
            xfree(c->tls);
            c->tls = NULL;
            LOGD("tls_plain_refused", "peer=%s", c->req.peer);
            conn_fail(c, 400, "plain_http_to_https_port",
                      "This port speaks HTTPS: the plain HTTP request was refused");
            return;
        }
    }
    if (tls_conn_feed(c->tls, p, n)) {
        conn_close(c);
        return;
    }
    char *plain = c->srv->read_buf; /* the ciphertext was copied into the pump */
    for (;;) {
        if (c->is_closing || !c->tls) return;
        long r = tls_conn_read(c->tls, plain, sizeof c->srv->read_buf);
        if (r > 0) {
            conn_on_bytes(c, plain, (size_t)r);
            /* nothing left to decrypt: no second SSL_read just to hear "want read" (with
             * released buffers it would allocate and free a record buffer each time) */
            if (c->is_closing || !c->tls || tls_conn_has_input(c->tls)) continue;
            (void)conn_tls_flush(c);
            return;
        }
        if (conn_tls_flush(c)) return;
        if (r == 0) return;
        if (r != GW_E_CLOSED)
            LOGD("tls_failed", "peer=%s reason=\"%s\"", c->req.peer, tls_conn_reason(c->tls));
        conn_close(c); /* close_notify or a broken peer: like EOF */
        return;
    }
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct http_conn *c = st->data;
    if (nread == 0 || c->is_closing) return;
    if (nread < 0) {
        conn_close(c); /* EOF or error: a request in flight is aborted */
        return;
    }
    if (c->tls)
        conn_tls_read(c, b->base, (size_t)nread);
    else
        conn_on_bytes(c, b->base, (size_t)nread);
}

static void on_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;
    c->due_at = 0;
    uint64_t now = uv_now(c->tcp.loop);
    if (!c->deadline_at) return; /* cleared since the timer was set */
    if (now < c->deadline_at) {  /* moved later since: wait for what is left */
        uv_timer_start(&c->timer, on_timer, c->deadline_at - now, 0);
        c->due_at = c->deadline_at;
        return;
    }
    c->deadline_at = 0;
    switch (c->state) {
    case CS_HEAD:
        if (http_parser_is_started(&c->parser))
            conn_fail(c, 408, "request_timeout", "Request header not received in time");
        else
            conn_close(c);
        break;
    case CS_BODY:
        conn_fail(c, 408, "request_timeout", "Request body not received in time");
        break;
    case CS_IDLE:
    case CS_LINGER:
    case CS_HANDLING:
    case CS_CLOSED:
        conn_close(c);
        break;
    }
}

/* Response ended: release the request, then keep the connection or close it politely. */
static void conn_response_done(struct http_conn *c, bool keep)
{
    struct http_server *s = c->srv;
    release_request(c);
    if (c->is_closing) return;
    if (!keep || s->is_draining || s->is_closing) {
        conn_linger(c);
        return;
    }
    c->state = CS_IDLE;
    conn_begin_request(c);
    timer_arm(c, s->cfg.idle_timeout_ms);
    conn_set_reading(c, true);
    conn_drive(c);
}

/* --- accepting ------------------------------------------------------------------------ */

static void peer_name(struct http_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof ip);
            port = ntohs(a->sin6_port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof ip);
            port = ntohs(a->sin_port);
        }
    }
    snprintf(c->req.peer, sizeof c->req.peer, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip,
             port);
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        c->req.is_peer_loopback =
            IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
    } else if (ss.ss_family == AF_INET) {
        c->req.is_peer_loopback =
            (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    }
}

static void on_accept_fail_close(uv_handle_t *h)
{
    xfree(h->data);
}

static void on_connection(uv_stream_t *l, int status)
{
    struct http_server *s = l->data;
    if (status < 0 || s->is_closing) return;
    struct http_conn *c = xcalloc(1, sizeof *c);
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_accept_fail_close);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    buf_init(&c->pending, PENDING_MAX_BYTES);
    http_parser_init(&c->parser, s->cfg.max_header_bytes, s->cfg.max_body_bytes);
    arena_init(&c->req.arena, ARENA_CHUNK_BYTES,
               s->cfg.max_header_bytes * 2 + s->cfg.max_body_bytes + ARENA_CHUNK_BYTES);
    c->remaining = -1;
    uv_tcp_nodelay(&c->tcp, 1);
    peer_name(c);
    conn_begin_request(c);
    if (s->tls) {
        c->tls = xmalloc(sizeof *c->tls);
        c->req.is_tls = true;
        if (tls_conn_init(c->tls, s->tls, NULL)) {
            xfree(c->tls);
            c->tls = NULL;
            c->is_rejected = true;
            s->n_rejected++;
            conn_close(c);
            return;
        }
    }
    if (s->n_conns >= s->cfg.max_connections) {
        c->is_rejected = true;
        s->n_rejected++;
        c->state = CS_HEAD;
        /* a flood gets not even an answer, nor does TLS (an answer would need a handshake) */
        if (s->n_rejected > s->cfg.max_connections || c->tls) {
            conn_close(c); /* a flood: not even an answer */
            return;
        }
        LOGW("http_overloaded", "peer=%s conns=%u", c->req.peer, s->n_conns);
        conn_fail(c, 503, "server_overloaded", "Too many connections; retry later");
        return;
    }
    s->n_conns++;
    c->state = CS_HEAD;
    timer_arm(c, s->cfg.header_timeout_ms);
    conn_set_reading(c, true);
}

/* --- server lifecycle ----------------------------------------------------------------- */

static void on_start_fail_close(uv_handle_t *h)
{
    struct http_server *s = h->data;
    xfree(s->host);
    xfree(s->server_name);
    xfree(s);
}

int http_server_start(uv_loop_t *loop, const struct http_server_config *cfg,
                      http_handler_fn *handler, void *ctx, struct http_server **out,
                      struct gw_error *err)
{
    struct http_server_config def;
    http_server_config_defaults(&def);
    struct http_server *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->cfg = *cfg;
    if (!s->cfg.max_header_bytes) s->cfg.max_header_bytes = def.max_header_bytes;
    if (!s->cfg.max_connections) s->cfg.max_connections = def.max_connections;
    if (!s->cfg.write_high_water_bytes) s->cfg.write_high_water_bytes = def.write_high_water_bytes;
    if (s->cfg.write_low_water_bytes > s->cfg.write_high_water_bytes)
        s->cfg.write_low_water_bytes = s->cfg.write_high_water_bytes;
    s->host = xstrdup(cfg->host ? cfg->host : def.host);
    s->server_name = cfg->server_name ? xstrdup(cfg->server_name) : NULL;
    s->cfg.host = s->host;
    s->cfg.server_name = s->server_name;
    s->handler = handler;
    s->ctx = ctx;
    s->cfg.tls = NULL;

    struct sockaddr_storage addr;
    int rc = strchr(s->host, ':') ? uv_ip6_addr(s->host, cfg->port, (struct sockaddr_in6 *)&addr)
                                  : uv_ip4_addr(s->host, cfg->port, (struct sockaddr_in *)&addr);
    if (rc) {
        gw_error_set(err, rc, "bad listen address %s", s->host);
        xfree(s->host);
        xfree(s->server_name);
        xfree(s);
        return rc;
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
    if (rc) {
        gw_error_set(err, rc, "listen on %s:%d: %s", s->host, cfg->port, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, on_start_fail_close);
        return rc;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    uv_idle_init(loop, &s->idle);
    s->idle.data = s;
    s->handles_open = 2;
    if (cfg->tls) s->tls = tls_ctx_ref(cfg->tls);
    s->is_listening = true;
    *out = s;
    return 0;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}
unsigned http_server_conn_count(const struct http_server *s)
{
    return s->n_conns;
}
unsigned http_server_active_requests(const struct http_server *s)
{
    return s->n_active;
}

int http_server_set_tls(struct http_server *s, struct tls_ctx *ctx)
{
    if (!s->tls || !ctx) return GW_E_STATE;
    struct tls_ctx *old = s->tls;
    s->tls = tls_ctx_ref(ctx);
    tls_ctx_unref(old); /* open conns hold their own references */
    return 0;
}

bool http_server_is_tls(const struct http_server *s)
{
    return s->tls != NULL;
}

bool http_request_is_private(const struct http_request *req)
{
    return req->is_tls || req->is_peer_loopback;
}

void http_server_stop_accepting(struct http_server *s)
{
    if (s->is_listening) {
        s->is_listening = false;
        uv_close((uv_handle_t *)&s->listener, on_server_handle_close);
    }
    s->is_draining = true;
    /* Idle keep-alive connections and ones that sent nothing yet have nothing to finish. */
    for (struct http_conn *c = s->conns; c; c = c->next) {
        if (c->state == CS_IDLE || (c->state == CS_HEAD && !http_parser_is_started(&c->parser)))
            conn_close(c);
    }
}

void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg)
{
    if (s->is_closing) return;
    http_server_stop_accepting(s);
    s->is_closing = true;
    s->done = done;
    s->done_arg = arg;
    for (struct http_conn *c = s->conns; c; c = c->next) conn_close(c);
    /* The idle handle delivers owed aborts once more, then closes itself. */
    uv_idle_start(&s->idle, on_idle);
}

/* --- the response --------------------------------------------------------------------- */

void http_request_on_abort(struct http_request *req, http_abort_fn *fn, void *ctx)
{
    if (!req->conn) return;
    req->conn->abort_fn = fn;
    req->conn->abort_ctx = ctx;
}

void http_request_on_drain(struct http_request *req, http_drain_fn *fn, void *ctx)
{
    if (!req->conn) return;
    req->conn->drain_fn = fn;
    req->conn->drain_ctx = ctx;
}

size_t http_request_write_queue_bytes(const struct http_request *req)
{
    return req->conn ? req->conn->queued_bytes : 0;
}

bool http_request_write_blocked(const struct http_request *req)
{
    return req->conn && req->conn->is_blocked;
}

static int resp_check(struct http_request *req, struct http_conn **out)
{
    struct http_conn *c = req->conn;
    if (!c || !c->is_req_held || req != &c->req) return GW_E_STATE;
    if (c->is_closing) return GW_E_CLOSED;
    *out = c;
    return 0;
}

static bool has_crlf(struct strv v)
{
    for (size_t i = 0; i < v.len; i++)
        if (v.p[i] == '\r' || v.p[i] == '\n' || v.p[i] == '\0') return true;
    return false;
}

enum framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_NONE };

/* Builds the response head in the request arena. */
static int build_head(struct http_conn *c, int status, const struct http_header *hdrs, size_t n,
                      enum framing fr, uint64_t len, uv_buf_t *out)
{
    size_t need = 128;
    for (size_t i = 0; i < n; i++) {
        if (!strv_is_token(hdrs[i].name) || has_crlf(hdrs[i].value)) return GW_E_STATE;
        if (strv_eq_ci(hdrs[i].name, STRV_LIT("content-length")) ||
            strv_eq_ci(hdrs[i].name, STRV_LIT("transfer-encoding")))
            return GW_E_STATE;
        if (strv_eq_ci(hdrs[i].name, STRV_LIT("connection"))) {
            if (strv_eq_ci(strv_trim(hdrs[i].value), STRV_LIT("close"))) c->is_keep = false;
            continue;
        }
        need += hdrs[i].name.len + hdrs[i].value.len + 4;
    }
    const char *reason = http_status_reason(status);
    size_t reason_len = strlen(reason);
    size_t server_name_len = c->srv->server_name ? strlen(c->srv->server_name) : 0;
    need += reason_len + server_name_len + 10;
    if (c->srv->is_draining) c->is_keep = false;
    char *p = arena_alloc(&c->req.arena, need);
    if (!p) return GW_E_LIMIT;
    /* Pieces, not printf: this runs for every answer. */
    size_t o = 0;
#define PUT(src, n)                                                                                \
    do {                                                                                           \
        memcpy(p + o, (src), (n));                                                                 \
        o += (n);                                                                                  \
    } while (0)
    PUT("HTTP/1.1 ", 9);
    o += u64_to_dec(p + o, (uint64_t)status);
    p[o++] = ' ';
    PUT(reason, reason_len);
    PUT("\r\n", 2);
    for (size_t i = 0; i < n; i++) {
        if (strv_eq_ci(hdrs[i].name, STRV_LIT("connection"))) continue;
        PUT(hdrs[i].name.p, hdrs[i].name.len);
        PUT(": ", 2);
        if (hdrs[i].value.len) PUT(hdrs[i].value.p, hdrs[i].value.len);
        PUT("\r\n", 2);
    }
    if (server_name_len) {
        PUT("Server: ", 8);
        PUT(c->srv->server_name, server_name_len);
        PUT("\r\n", 2);
    }
    if (fr == FRAME_LENGTH) {
        PUT("Content-Length: ", 16);
        o += u64_to_dec(p + o, len);
        PUT("\r\n", 2);
    } else if (fr == FRAME_CHUNKED) {
        PUT("Transfer-Encoding: chunked\r\n", 28);
    }
    if (c->is_keep)
        PUT("Connection: keep-alive\r\n\r\n", 26);
    else
        PUT("Connection: close\r\n\r\n", 21);
#undef PUT
    *out = uv_buf_init(p, (unsigned)o);
    return 0;
}

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

int http_respond(struct http_request *req, int status, const struct http_header *hdrs,
                 size_t n_hdrs, const void *body, size_t len)
{
    struct http_conn *c = NULL;
    int rc = resp_check(req, &c);
    if (rc) return rc;
    if (c->is_resp_started) return GW_E_STATE;
    bool body_ok = status_has_body(status);
    uv_buf_t bufs[2];
    rc = build_head(c, status, hdrs, n_hdrs, body_ok ? FRAME_LENGTH : FRAME_NONE, len, &bufs[0]);
    if (rc) return rc;
    c->is_resp_started = true;
    unsigned nb = 1;
    if (body_ok && len && !strv_eq_cstr(req->method, "HEAD"))
        bufs[nb++] = uv_buf_init((char *)body, (unsigned)len);
    rc = conn_write(c, bufs, nb);
    if (rc) return rc;
    conn_response_done(c, c->is_keep);
    return 0;
}

int http_respond_json(struct http_request *req, int status, const struct http_header *hdrs,
                      size_t n_hdrs, const char *json, size_t len)
{
    enum { MAX_HDRS = 32 };
    struct http_header all[MAX_HDRS + 1];
    if (n_hdrs > MAX_HDRS) return GW_E_STATE;
    all[0].name = STRV_LIT("Content-Type");
    all[0].value = STRV_LIT("application/json");
    if (n_hdrs) memcpy(all + 1, hdrs, n_hdrs * sizeof *hdrs);
    return http_respond(req, status, all, n_hdrs + 1, json, len);
}

int http_stream_start(struct http_request *req, int status, const struct http_header *hdrs,
                      size_t n_hdrs, int64_t content_length)
{
    struct http_conn *c = NULL;
    int rc = resp_check(req, &c);
    if (rc) return rc;
    if (c->is_resp_started) return GW_E_STATE;
    enum framing fr = FRAME_LENGTH;
    c->is_no_body = !status_has_body(status) || strv_eq_cstr(req->method, "HEAD");
    if (content_length >= 0) {
        c->remaining = content_length;
    } else if (req->http_minor == 0 && !c->is_no_body) {
        fr = FRAME_NONE; /* HTTP/1.0 knows no chunks: the body ends when we close */
        c->is_raw = true;
        c->is_keep = false;
    } else {
        fr = status_has_body(status) ? FRAME_CHUNKED : FRAME_NONE;
        c->is_chunked = true;
    }
    uv_buf_t head;
    rc = build_head(c, status, hdrs, n_hdrs, fr,
                    (uint64_t)(content_length > 0 ? content_length : 0), &head);
    if (rc) return rc;
    c->is_resp_started = true;
    return conn_write(c, &head, 1);
}

int http_stream_write(struct http_request *req, const void *p, size_t len)
{
    struct http_conn *c = NULL;
    int rc = resp_check(req, &c);
    if (rc) return rc;
    if (!c->is_resp_started) return GW_E_STATE;
    if (len == 0) return 0;
    if (c->remaining >= 0) {
        if (len > (uint64_t)c->remaining) return GW_E_STATE;
        c->remaining -= (int64_t)len;
    }
    if (c->is_no_body) return 0;
    if (!c->is_chunked) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
        return conn_write(c, &b, 1);
    }
    /* the chunk-size line in hex, without printf (this runs per streamed event) */
    char line[24];
    int ln = 0;
    for (int shift = (int)(sizeof len * 8) - 4; shift >= 0; shift -= 4) {
        unsigned d = (unsigned)(len >> shift) & 0xF;
        if (d || ln || shift == 0) line[ln++] = "0123456789abcdef"[d];
    }
    line[ln++] = '\r';
    line[ln++] = '\n';
    uv_buf_t bufs[3] = {uv_buf_init(line, (unsigned)ln), uv_buf_init((char *)p, (unsigned)len),
                        uv_buf_init("\r\n", 2)};
    return conn_write(c, bufs, 3);
}

int http_stream_end(struct http_request *req)
{
    struct http_conn *c = NULL;
    int rc = resp_check(req, &c);
    if (rc) return rc;
    if (!c->is_resp_started) return GW_E_STATE;
    if (c->remaining > 0) {
        /* The promised length was not delivered: the client must see a cut body. */
        release_request(c);
        conn_close(c);
        return GW_E_STATE;
    }
    if (c->is_chunked && !c->is_no_body) {
        uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
        rc = conn_write(c, &b, 1);
        if (rc) return rc;
    }
    conn_response_done(c, c->is_keep && !c->is_raw);
    return 0;
}

void http_stream_abort(struct http_request *req)
{
    struct http_conn *c = req->conn;
    if (!c || !c->is_req_held || req != &c->req) return;
    release_request(c);
    conn_close(c);
}
