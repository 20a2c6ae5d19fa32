/* http_client — HTTP/1.1 calls and per-origin keep-alive pools on the caller's uv loop.
 * A struct conn owns its TCP handle, a phase timer (connect / first byte / idle / pool expiry),
 * a total timer and an idle handle that delivers body bytes held while paused; it is freed
 * only in the close callback of the last of them, and a cancelled call is freed there too, so
 * cancel is safe from inside any callback. Invariant: a conn enters its origin's pool only
 * after a complete response with keep-alive on both sides, the request fully written, no
 * stray byte and no error; an idle pooled conn keeps reading and any EOF or byte drops it.
 * User callbacks are only ever called from libuv callbacks, never from an API function.
 * State table: docs/http_client.md. Thread: the loop thread only. */
#include "net/http_client.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"

enum {
    HC_READ_BUF_BYTES = 64 * 1024,
    HC_MAX_HEADERS = 256,
    HC_MAX_REQUEST_HEAD_BYTES = 256 * 1024,
    HC_MAX_HELD_BYTES = 4 * HC_READ_BUF_BYTES, /* held bytes come from one read buffer */
    HC_CONN_HANDLES = 3,
    HC_KEEP_REQUEST_BYTES = 16 * 1024, /* an idle conn keeps request buffers up to this */
    HC_TLS_COALESCE_BYTES = 16 * 1024, /* head + body up to one record: encrypted as one */
    HC_TLS_NAME_BYTES = 256,
};

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct link {
    struct link *prev, *next;
};

static void link_init(struct link *l)
{
    l->prev = l->next = l;
}
static bool link_is_empty(const struct link *l)
{
    return l->next == l;
}

static void link_insert_head(struct link *head, struct link *l)
{
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}

static void link_remove(struct link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    link_init(l);
}

struct origin {
    struct link link; /* in client->origins */
    struct link idle; /* pooled conns, most recently pooled first */
    unsigned n_idle;
    unsigned refs;                    /* conns that point here */
    struct sockaddr_storage addr;     /* the key: family, address and port, */
    bool tls;                         /* plus TLS or not, */
    char tls_name[HC_TLS_NAME_BYTES]; /* plus the name TLS verifies */
};

struct tls_block { /* ciphertext the socket did not take at once */
    uv_write_t req;
    struct conn *conn;
    char data[];
};

enum conn_state { CONN_CONNECTING, CONN_ACTIVE, CONN_IDLE, CONN_CLOSING };
enum hdr_cb_state { HDR_NONE, HDR_FIELD, HDR_VALUE };

struct hdr_ent {
    size_t name_off, name_len, value_off, value_len;
};

struct conn {
    uv_tcp_t tcp;
    /* One timer per connection for every deadline (connect, first byte, idle, total, pool
     * expiry), set lazily: moving a deadline later only stores it, and the timer, when it
     * fires, re-arms itself for what is due then (see timer_sync). That is no timer-heap work
     * per request or per streamed chunk. */
    uv_timer_t timer;
    uint64_t phase_at; /* loop ms: the current phase (or the pooled conn) times out; 0 none */
    uint64_t total_at; /* loop ms: the call's total time is up; 0 none */
    uint64_t due_at;   /* loop ms the uv timer is set for; 0 when it is not running */
    uv_idle_t drain;
    uv_connect_t connect_req;
    uv_write_t write_req;
    struct http_client *cl;
    struct origin *origin;
    struct link all_link;  /* in client->conns */
    struct link idle_link; /* in origin->idle while CONN_IDLE */
    enum conn_state state;
    int open_handles;
    bool is_reading;
    struct http_call *call; /* NULL when idle; a cancelled call stays here until close */
    llhttp_t parser;
    /* request bytes: owned by the conn so they outlive any call while the write is queued */
    struct buf req_head;
    char *req_body;
    size_t req_body_len, req_body_cap; /* kept across requests up to HC_KEEP_REQUEST_BYTES */
    bool write_pending, write_done;
    /* response */
    struct buf hdr; /* header names and values, referenced by ents */
    struct hdr_ent *ents;
    size_t n_ents, cap_ents;
    struct http_header *hdr_out;
    enum hdr_cb_state hdr_state;
    size_t status_bytes;
    struct buf held; /* decoded body received while paused */
    bool got_first_byte, is_interim, msg_done, keep_alive, saw_eof, stray_bytes;
    bool idle_armed; /* the phase is the idle timeout: each read moves phase_at (on_read) */
    int cb_err;
    struct tls_conn *tls; /* owned; NULL on a plain conn */
    unsigned tls_writes;  /* tls_blocks in flight */
};

struct http_call {
    struct http_client *cl;
    struct conn *conn;
    struct http_client_callbacks cb;
    void *ctx;
    uint64_t connect_timeout_ms, first_byte_timeout_ms, idle_timeout_ms, total_timeout_ms;
    bool is_head, wants_close;
    bool is_paused, is_cancelled, is_done;
    struct http_call_result res;
};

struct http_client {
    uv_loop_t *loop;
    struct http_client_config cfg;
    llhttp_settings_t settings;
    struct link origins;
    struct link conns;
    unsigned n_conns;
    bool is_freeing;
    struct http_client_stats stats;
    struct buf head;     /* the next request's head; swapped with the conn's, so no malloc */
    struct tls_ctx *tls; /* one reference, or NULL */
    char read_buf[HC_READ_BUF_BYTES]; /* shared: every read is consumed before returning */
    char tls_buf[HC_TLS_COALESCE_BYTES];
};

static void conn_close(struct conn *c);
static void call_finish(struct conn *c, int err);

void http_client_config_defaults(struct http_client_config *cfg)
{
    cfg->max_idle_per_origin = 64;
    cfg->pool_idle_timeout_ms = 30 * 1000;
    cfg->max_response_header_bytes = 64 * 1024;
    cfg->tls = NULL;
    cfg->refuse_plain_auth = false;
}

/* ---- origins ---------------------------------------------------------------------------- */

static int resolve(const char *host, int port, struct sockaddr_storage *ss)
{
    if (!host || port <= 0 || port > 65535) return GW_E_INVALID;
    memset(ss, 0, sizeof *ss);
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
    const char *h = host;
    char tmp[INET6_ADDRSTRLEN];
    size_t n = strlen(host);
    if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof tmp) {
        memcpy(tmp, host + 1, n - 2);
        tmp[n - 2] = '\0';
        h = tmp;
    }
    if (uv_ip6_addr(h, port, (struct sockaddr_in6 *)ss) == 0) return 0;
    return GW_E_INVALID;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
}

/* Compared as socket addresses, not formatted: this runs for every request. */
static struct origin *origin_get(struct http_client *cl, const struct sockaddr_storage *ss,
                                 bool tls, const char *tls_name)
{
    for (struct link *l = cl->origins.next; l != &cl->origins; l = l->next) {
        struct origin *o = CONTAINER_OF(l, struct origin, link);
        if (same_addr(&o->addr, ss) && o->tls == tls &&
            (!tls || strcmp(o->tls_name, tls_name) == 0))
            return o;
    }
    struct origin *o = xcalloc(1, sizeof *o);
    link_init(&o->idle);
    o->addr = *ss;
    o->tls = tls;
    if (tls) snprintf(o->tls_name, sizeof o->tls_name, "%s", tls_name);
    link_insert_head(&cl->origins, &o->link);
    return o;
}

static void origin_unref(struct origin *o)
{
    if (--o->refs > 0) return;
    link_remove(&o->link);
    xfree(o);
}

/* ---- conn lifecycle ------------------------------------------------------------------- */

static void client_destroy(struct http_client *cl)
{
    buf_free(&cl->head);
    tls_ctx_unref(cl->tls);
    while (!link_is_empty(&cl->origins)) {
        struct origin *o = CONTAINER_OF(cl->origins.next, struct origin, link);
        link_remove(&o->link);
        xfree(o);
    }
    xfree(cl);
}

static void conn_close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles > 0) return;
    struct http_client *cl = c->cl;
    xfree(c->call); /* a cancelled call; finished calls were detached */
    buf_free(&c->req_head);
    xfree(c->req_body);
    buf_free(&c->hdr);
    buf_free(&c->held);
    xfree(c->ents);
    xfree(c->hdr_out);
    if (c->tls) {
        tls_conn_free(c->tls);
        xfree(c->tls);
    }
    origin_unref(c->origin);
    link_remove(&c->all_link);
    cl->n_conns--;
    xfree(c);
    if (cl->is_freeing && cl->n_conns == 0) client_destroy(cl);
}

static struct conn *conn_new(struct http_client *cl, struct origin *o)
{
    struct conn *c = xcalloc(1, sizeof *c);
    c->cl = cl;
    c->origin = o;
    o->refs++;
    link_init(&c->idle_link);
    link_insert_head(&cl->conns, &c->all_link);
    cl->n_conns++;
    /* uv_tcp_init without flags and uv_timer_init / uv_idle_init cannot fail. */
    (void)uv_tcp_init(cl->loop, &c->tcp);
    (void)uv_timer_init(cl->loop, &c->timer);
    (void)uv_idle_init(cl->loop, &c->drain);
    c->tcp.data = c->timer.data = c->drain.data = c;
    c->connect_req.data = c->write_req.data = c;
    c->open_handles = HC_CONN_HANDLES;
    buf_init(&c->req_head, HC_MAX_REQUEST_HEAD_BYTES);
    buf_init(&c->hdr, cl->cfg.max_response_header_bytes);
    buf_init(&c->held, HC_MAX_HELD_BYTES);
    llhttp_init(&c->parser, HTTP_RESPONSE, &cl->settings);
    c->parser.data = c;
    return c;
}

static void pool_unlink(struct conn *c)
{
    link_remove(&c->idle_link);
    c->origin->n_idle--;
    c->cl->stats.idle--;
}

static void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSING) return;
    if (c->state == CONN_IDLE) pool_unlink(c);
    c->state = CONN_CLOSING;
    c->is_reading = false;
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    uv_close((uv_handle_t *)&c->timer, conn_close_cb);
    uv_close((uv_handle_t *)&c->drain, conn_close_cb);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct conn *c = h->data;
    b->base = c->cl->read_buf;
    b->len = sizeof c->cl->read_buf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* Returns 0 or a libuv error; reading errors are the call's failure. */
static int conn_set_reading(struct conn *c, bool want)
{
    if (want == c->is_reading) return 0;
    if (want) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (rc < 0) return rc;
    } else {
        (void)uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->is_reading = want;
    return 0;
}

static void on_conn_timer(uv_timer_t *t);

/* Makes sure the timer fires no later than the earliest deadline. A timer already due
 * earlier is left alone (it re-syncs when it fires); no deadline at all leaves it to fire
 * once and find nothing to do. */
static void timer_sync(struct conn *c)
{
    uint64_t want = c->phase_at;
    if (c->total_at && (!want || c->total_at < want)) want = c->total_at;
    if (!want || (c->due_at && c->due_at <= want)) return;
    uint64_t now = uv_now(c->tcp.loop);
    (void)uv_timer_start(&c->timer, on_conn_timer, want > now ? want - now : 0, 0);
    c->due_at = want;
}

/* Sets the phase deadline for what the conn waits for now (or clears it). */
static void conn_arm_phase(struct conn *c)
{
    uint64_t ms = 0;
    struct http_call *call = c->call;
    if (c->state == CONN_CONNECTING) {
        ms = call->connect_timeout_ms;
    } else if (c->state == CONN_ACTIVE && call && !c->msg_done && !call->is_paused) {
        if (c->got_first_byte)
            ms = call->idle_timeout_ms;
        else if (c->write_done)
            ms = call->first_byte_timeout_ms;
    }
    c->idle_armed = ms && c->got_first_byte && c->state == CONN_ACTIVE;
    c->phase_at = ms ? uv_now(c->tcp.loop) + ms : 0;
    timer_sync(c);
}

static void reset_response(struct conn *c)
{
    llhttp_init(&c->parser, HTTP_RESPONSE, &c->cl->settings);
    c->parser.data = c;
    buf_reset(&c->hdr);
    buf_reset(&c->held);
    c->n_ents = 0;
    c->hdr_state = HDR_NONE;
    c->status_bytes = 0;
    c->got_first_byte = c->is_interim = c->msg_done = c->keep_alive = false;
    c->idle_armed = false;
    c->saw_eof = c->stray_bytes = false;
    c->write_done = false;
    c->cb_err = 0;
}

static void pool_put(struct conn *c)
{
    struct http_client *cl = c->cl;
    struct origin *o = c->origin;
    if (cl->cfg.max_idle_per_origin == 0) {
        conn_close(c);
        return;
    }
    if (o->n_idle >= cl->cfg.max_idle_per_origin) /* evict the least recently used */
        conn_close(CONTAINER_OF(o->idle.prev, struct conn, idle_link));
    reset_response(c);
    if (c->req_body_cap > HC_KEEP_REQUEST_BYTES) { /* a big prompt's copy is not kept idle */
        xfree(c->req_body);
        c->req_body = NULL;
        c->req_body_cap = c->req_body_len = 0;
    }
    if (c->req_head.cap > HC_KEEP_REQUEST_BYTES) buf_free(&c->req_head);
    if (conn_set_reading(c, true) < 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_IDLE;
    link_insert_head(&o->idle, &c->idle_link);
    o->n_idle++;
    cl->stats.idle++;
    c->total_at = 0;
    c->phase_at = cl->cfg.pool_idle_timeout_ms
                      ? uv_now(c->tcp.loop) + cl->cfg.pool_idle_timeout_ms
                      : 0; /* in CONN_IDLE the phase deadline is the pool expiry */
    timer_sync(c);
}

static struct conn *pool_take(struct origin *o)
{
    if (link_is_empty(&o->idle)) return NULL;
    struct conn *c = CONTAINER_OF(o->idle.next, struct conn, idle_link);
    pool_unlink(c);
    c->phase_at = 0;
    c->state = CONN_ACTIVE;
    return c;
}

static bool conn_is_poolable(const struct conn *c, const struct http_call *call)
{
    return c->state == CONN_ACTIVE && c->keep_alive && !c->saw_eof && !c->stray_bytes &&
           c->write_done && !c->write_pending && !call->wants_close && !c->cl->is_freeing;
}

/* ---- call completion ------------------------------------------------------------------ */

/* Ends the call on c with err: the conn is pooled or closed first, then on_done runs, then the
 * call is freed. Nothing may touch the call after this returns. */
static void call_finish(struct conn *c, int err)
{
    struct http_call *call = c->call;
    c->call = NULL;
    call->is_done = true;
    call->res.err = err;
    c->cl->stats.active--;
    c->total_at = c->phase_at = 0;
    (void)uv_idle_stop(&c->drain);
    if (err == 0 && conn_is_poolable(c, call))
        pool_put(c);
    else
        conn_close(c);
    if (call->cb.on_done) call->cb.on_done(call, &call->res, call->ctx);
    xfree(call);
}

/* The response was parsed to its end: finish now unless the caller is paused or has body
 * bytes still held for it (then the drain handle finishes after resume). */
static void response_complete(struct conn *c)
{
    c->phase_at = c->total_at = 0; /* completion is authoritative */
    if (c->call->is_paused || c->held.len > 0) {
        (void)conn_set_reading(c, false);
        return;
    }
    /* Finishing now: the connection goes back to the pool still reading (an idle pooled
     * connection reads, to notice the server closing it), so no stop-and-start of the read
     * per request — that was two epoll_ctl calls for every proxied request. */
    call_finish(c, 0);
}

static void deliver(struct conn *c, const char *p, size_t len)
{
    struct http_call *call = c->call;
    call->res.body_bytes += len;
    if (call->cb.on_data) call->cb.on_data(call, p, len, call->ctx);
}

static void conn_tls_pump(struct conn *c);

static void on_drain(uv_idle_t *h)
{
    struct conn *c = h->data;
    (void)uv_idle_stop(h);
    struct http_call *call = c->call;
    if (c->state != CONN_ACTIVE || !call || call->is_paused) return;
    if (c->held.len > 0) {
        deliver(c, c->held.p, c->held.len);
        if (c->state == CONN_CLOSING) return; /* cancelled from on_data */
        buf_reset(&c->held);
        if (call->is_paused) return;
    }
    if (c->msg_done) {
        call_finish(c, 0);
        return;
    }
    int rc = conn_set_reading(c, true);
    if (rc < 0) {
        call_finish(c, rc);
        return;
    }
    conn_arm_phase(c);
    if (c->tls && tls_conn_has_input(c->tls)) conn_tls_pump(c); /* left there by the pause */
}

/* ---- llhttp callbacks ------------------------------------------------------------------ */

static int hdr_append(struct conn *c, const char *at, size_t len)
{
    if (buf_append(&c->hdr, at, len) != 0) {
        c->cb_err = GW_E_MALFORMED; /* past max_response_header_bytes */
        return -1;
    }
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    /* The reason phrase is not kept, but it counts against the head cap. */
    c->status_bytes += len;
    if (c->status_bytes > c->cl->cfg.max_response_header_bytes) {
        c->cb_err = GW_E_MALFORMED;
        return -1;
    }
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->hdr_state != HDR_FIELD) {
        if (c->n_ents == HC_MAX_HEADERS) {
            c->cb_err = GW_E_MALFORMED;
            return -1;
        }
        if (c->n_ents == c->cap_ents) {
            c->cap_ents = c->cap_ents ? c->cap_ents * 2 : 16;
            c->ents = xrealloc(c->ents, c->cap_ents * sizeof *c->ents);
            c->hdr_out = xrealloc(c->hdr_out, c->cap_ents * sizeof *c->hdr_out);
        }
        c->ents[c->n_ents++] = (struct hdr_ent){c->hdr.len, 0, c->hdr.len, 0};
        c->hdr_state = HDR_FIELD;
    }
    c->ents[c->n_ents - 1].name_len += len;
    return hdr_append(c, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->n_ents == 0) return 0;
    struct hdr_ent *e = &c->ents[c->n_ents - 1];
    if (c->hdr_state != HDR_VALUE) {
        e->value_off = c->hdr.len;
        e->value_len = 0;
        c->hdr_state = HDR_VALUE;
    }
    e->value_len += len;
    return hdr_append(c, at, len);
}

static int on_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    struct http_call *call = c->call;
    int status = llhttp_get_status_code(p);
    /* llhttp takes 1-3 digits ("HTTP/1.1 28"); a length past INT64_MAX would turn negative */
    if (status < 100 || ((p->flags & F_CONTENT_LENGTH) && p->content_length > INT64_MAX)) {
        c->cb_err = GW_E_MALFORMED;
        return -1;
    }
    if (status == 101) { /* we never ask to switch protocols */
        c->cb_err = GW_E_MALFORMED;
        return -1;
    }
    if (status < 200) { /* 100 Continue, 103 Early Hints: skip (below 100 refused above) */
        c->is_interim = true;
        return 1;
    }
    /* hdr_out grows with ents (on_header_field): no allocation per response */
    for (size_t i = 0; i < c->n_ents; i++) {
        const struct hdr_ent *e = &c->ents[i];
        c->hdr_out[i].name = strv_make(c->hdr.p + e->name_off, e->name_len);
        c->hdr_out[i].value = strv_trim(strv_make(c->hdr.p + e->value_off, e->value_len));
    }
    struct http_response_head head = {
        .status = status,
        .http_minor = llhttp_get_http_minor(p),
        .headers = c->hdr_out,
        .n_headers = c->n_ents,
        .content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1,
        .chunked = (p->flags & F_CHUNKED) != 0,
    };
    call->res.got_head = true;
    if (call->cb.on_head) call->cb.on_head(call, &head, call->ctx);
    if (c->state == CONN_CLOSING) return -1;
    /* llhttp would wait for a Content-Length body after HEAD, 204 or 304: there is none. */
    if (call->is_head || status == 204 || status == 304) return 1;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->call->is_paused || c->held.len > 0) {
        if (buf_append(&c->held, at, len) != 0) {
            c->cb_err = GW_E_LIMIT;
            return -1;
        }
        return 0;
    }
    deliver(c, at, len);
    return c->state == CONN_CLOSING ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (c->is_interim) {
        c->is_interim = false;
        buf_reset(&c->hdr);
        c->n_ents = 0;
        c->hdr_state = HDR_NONE;
        return 0;
    }
    c->msg_done = true;
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED; /* stop at the end of the message: anything after it is stray */
}

/* ---- reading --------------------------------------------------------------------------- */

static void feed(struct conn *c, const char *p, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, p, len);
    if (c->state == CONN_CLOSING) return; /* cancelled or freed from a callback */
    if (e == HPE_OK) return;
    if (e == HPE_PAUSED && c->msg_done) {
        const char *end = llhttp_get_error_pos(&c->parser);
        if (end && end < p + len) c->stray_bytes = true;
        response_complete(c);
        return;
    }
    call_finish(c, c->cb_err ? c->cb_err : GW_E_MALFORMED);
}

static void on_eof(struct conn *c)
{
    c->saw_eof = true;
    (void)llhttp_finish(&c->parser); /* completes an EOF-delimited body */
    if (c->state == CONN_CLOSING) return;
    if (c->msg_done) {
        response_complete(c);
        return;
    }
    call_finish(c, c->cb_err ? c->cb_err : GW_E_TRUNCATED);
}

/* Response bytes (plaintext) for the active call. */
static void on_plain(struct conn *c, const char *p, size_t n)
{
    if (c->idle_armed) {
        /* streaming: a later deadline is only stored; the timer, when it fires, re-arms
         * itself for what is left instead of being restarted on every chunk */
        c->phase_at = uv_now(c->tcp.loop) + c->call->idle_timeout_ms;
    } else {
        c->got_first_byte = true;
        conn_arm_phase(c);
    }
    feed(c, p, n);
}

static int conn_start_exchange(struct conn *c);
static void conn_tls_on_read(struct conn *c, ssize_t nread, const uv_buf_t *b);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (c->state == CONN_CLOSING || nread == 0) return;
    if (c->tls) {
        conn_tls_on_read(c, nread, b);
        return;
    }
    if (c->state == CONN_IDLE) { /* the server closed or spoke out of turn: drop it */
        conn_close(c);
        return;
    }
    if (c->state != CONN_ACTIVE || !c->call) return;
    if (nread == UV_EOF) {
        on_eof(c);
        return;
    }
    if (nread < 0) {
        call_finish(c, (int)nread);
        return;
    }
    on_plain(c, b->base, (size_t)nread);
}

/* ---- TLS ------------------------------------------------------------------------------- */

static void on_tls_write(uv_write_t *w, int status)
{
    struct tls_block *b = (struct tls_block *)w;
    struct conn *c = b->conn;
    xfree(b);
    c->tls_writes--;
    if (c->state == CONN_CLOSING) return;
    if (status < 0) {
        if (c->state == CONN_ACTIVE && c->call && !c->msg_done) {
            call_finish(c, status);
        } else {
            c->write_pending = false; /* keeps it out of the pool: write_done stays false */
            if (c->state == CONN_IDLE || !c->call) conn_close(c);
        }
        return;
    }
    if (c->tls_writes == 0 && c->write_pending) {
        c->write_pending = false;
        c->write_done = true;
        if (c->state == CONN_ACTIVE && c->call) conn_arm_phase(c);
    }
}

/* Sends what the pump produced; what the socket does not take at once is copied and queued. */
static int conn_tls_flush(struct conn *c)
{
    const char *p;
    size_t n = tls_conn_out(c->tls, &p);
    if (n == 0) return 0;
    uv_buf_t one = uv_buf_init((char *)p, (unsigned)n);
    int w = uv_try_write((uv_stream_t *)&c->tcp, &one, 1);
    if (w < 0 && w != UV_EAGAIN && w != UV_ENOSYS) return w;
    size_t done = w > 0 ? (size_t)w : 0;
    if (done < n) {
        struct tls_block *b = xmalloc(sizeof *b + (n - done));
        b->conn = c;
        memcpy(b->data, p + done, n - done);
        uv_buf_t rest = uv_buf_init(b->data, (unsigned)(n - done));
        int rc = uv_write(&b->req, (uv_stream_t *)&c->tcp, &rest, 1, on_tls_write);
        if (rc < 0) {
            xfree(b);
            return rc;
        }
        c->tls_writes++;
    }
    tls_conn_out_consume(c->tls, n);
    return 0;
}

/* Encrypts the request (head and body in one record when they fit) and sends it. */
static int conn_tls_send_request(struct conn *c)
{
    struct http_client *cl = c->cl;
    size_t hl = c->req_head.len, bl = c->req_body_len;
    int rc;
    if (hl + bl <= sizeof cl->tls_buf) {
        memcpy(cl->tls_buf, c->req_head.p, hl);
        if (bl) memcpy(cl->tls_buf + hl, c->req_body, bl);
        rc = tls_conn_write(c->tls, cl->tls_buf, hl + bl);
    } else {
        rc = tls_conn_write(c->tls, c->req_head.p, hl);
        if (!rc && bl) rc = tls_conn_write(c->tls, c->req_body, bl);
    }
    if (rc) return rc;
    rc = conn_tls_flush(c);
    if (rc) return rc;
    if (c->tls_writes)
        c->write_pending = true;
    else
        c->write_done = true;
    return 0;
}

/* Decrypts everything the pump can give. Stops while the call is paused or its response is
 * complete and waiting for resume (the ciphertext stays in the pump; on_drain pumps again). */
static void conn_tls_pump(struct conn *c)
{
    char *plain = c->cl->read_buf; /* the ciphertext was copied into the pump */
    for (;;) {
        if (c->state == CONN_CLOSING) return;
        if (c->state == CONN_ACTIVE && c->call && (c->call->is_paused || c->msg_done)) break;
        long r = tls_conn_read(c->tls, plain, sizeof c->cl->read_buf);
        if (r > 0) {
            if (c->state != CONN_ACTIVE || !c->call) { /* spoke out of turn */
                conn_close(c);
                return;
            }
            on_plain(c, plain, (size_t)r);
            continue;
        }
        int frc = conn_tls_flush(c);
        if (r == 0 && !frc) {
            if (c->state == CONN_CONNECTING && tls_conn_is_open(c->tls)) {
                c->state = CONN_ACTIVE; /* handshake done: now the request */
                c->cl->stats.tls_handshakes++;
                if (tls_conn_resumed(c->tls)) c->cl->stats.tls_resumed++;
                int rc = conn_start_exchange(c);
                if (rc < 0) {
                    call_finish(c, rc);
                    return;
                }
                continue;
            }
            return;
        }
        if (c->state == CONN_IDLE || !c->call) {
            conn_close(c);
            return;
        }
        if (frc) {
            call_finish(c, frc);
        } else if (r == GW_E_CLOSED && c->state == CONN_ACTIVE) {
            on_eof(c); /* close_notify ends an EOF-delimited body like a FIN */
        } else {
            struct sockaddr_storage *a = &c->origin->addr;
            char ip[INET6_ADDRSTRLEN] = "?";
            if (a->ss_family == AF_INET6)
                uv_ip6_name((struct sockaddr_in6 *)a, ip, sizeof ip);
            else
                uv_ip4_name((struct sockaddr_in *)a, ip, sizeof ip);
            LOGW("tls_failed", "peer=%s name=%s reason=\"%s\"", ip,
                 c->origin->tls_name[0] ? c->origin->tls_name : "-", tls_conn_reason(c->tls));
            call_finish(c, GW_E_MALFORMED);
        }
        return;
    }
    (void)conn_tls_flush(c);
}

static void conn_tls_on_read(struct conn *c, ssize_t nread, const uv_buf_t *b)
{
    if (nread < 0) {
        if (c->state == CONN_IDLE || !c->call) {
            conn_close(c);
        } else if (c->state == CONN_CONNECTING) {
            call_finish(c, nread == UV_EOF ? UV_ECONNRESET : (int)nread);
        } else if (nread == UV_EOF) {
            on_eof(c);
        } else {
            call_finish(c, (int)nread);
        }
        return;
    }
    if (tls_conn_feed(c->tls, b->base, (size_t)nread)) {
        if (c->call && c->state != CONN_IDLE)
            call_finish(c, GW_E_LIMIT);
        else
            conn_close(c);
        return;
    }
    conn_tls_pump(c);
}

/* ---- timers, connect, write ------------------------------------------------------------ */

static void on_conn_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    c->due_at = 0;
    uint64_t now = uv_now(c->tcp.loop);
    if (c->state == CONN_IDLE) {
        if (c->phase_at && now >= c->phase_at)
            conn_close(c); /* pooled too long */
        else
            timer_sync(c);
        return;
    }
    if (!c->call || (c->state != CONN_CONNECTING && c->state != CONN_ACTIVE)) return;
    if (c->total_at && now >= c->total_at) {
        call_finish(c, GW_E_TOTAL_TIMEOUT);
    } else if (c->phase_at && now >= c->phase_at) {
        if (c->state == CONN_CONNECTING)
            call_finish(c, GW_E_CONNECT_TIMEOUT);
        else
            call_finish(c, c->got_first_byte ? GW_E_IDLE_TIMEOUT : GW_E_FIRST_BYTE_TIMEOUT);
    } else {
        timer_sync(c); /* a deadline moved later since the timer was set */
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->write_pending = false;
    if (c->state != CONN_ACTIVE || !c->call) return;
    if (status < 0) {
        /* A response already parsed to its end stands; the conn is not pooled (!write_done). */
        if (!c->msg_done) call_finish(c, status);
        return;
    }
    c->write_done = true;
    conn_arm_phase(c);
}

/* Starts the exchange on a connected conn: one uv_write of head + body, then reading. */
static int conn_start_exchange(struct conn *c)
{
    reset_response(c);
    if (c->tls) {
        int trc = conn_tls_send_request(c);
        if (trc < 0) return trc;
        if (!c->call->is_paused) {
            trc = conn_set_reading(c, true);
            if (trc < 0) return trc;
        }
        conn_arm_phase(c);
        return 0;
    }
    uv_buf_t bufs[2];
    unsigned n = 0;
    bufs[n++] = uv_buf_init(c->req_head.p, (unsigned)c->req_head.len);
    if (c->req_body_len) bufs[n++] = uv_buf_init(c->req_body, (unsigned)c->req_body_len);
    /* Try the write at once: a request that fits the socket buffer (nearly all) then costs
     * no write request and no POLLOUT round trip (libuv re-arms epoll after a queued write
     * completes: one epoll_ctl per request). What is left goes through uv_write. */
    int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w < 0 && w != UV_EAGAIN && w != UV_ENOSYS) return w;
    size_t done = w > 0 ? (size_t)w : 0;
    unsigned first = 0;
    while (first < n && done >= bufs[first].len) done -= bufs[first++].len;
    int rc;
    if (first < n) {
        bufs[first].base += done;
        bufs[first].len -= done;
        rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs + first, n - first, on_write);
        if (rc < 0) return rc;
        c->write_pending = true;
    } else {
        c->write_done = true;
    }
    if (!c->call->is_paused) {
        rc = conn_set_reading(c, true);
        if (rc < 0) return rc;
    }
    conn_arm_phase(c);
    return 0;
}

/* "address port name": what identifies a TLS destination for session resumption. */
static void origin_session_key(const struct origin *o, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (o->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&o->addr;
        (void)uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&o->addr;
        (void)uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
    }
    snprintf(out, cap, "%s %u %s", ip, port, o->tls_name);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state != CONN_CONNECTING || !c->call) return; /* closed: status is UV_ECANCELED */
    if (status < 0) {
        call_finish(c, status);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    if (c->origin->tls) {
        /* stays CONNECTING (under the connect deadline) until the handshake is done */
        c->tls = xmalloc(sizeof *c->tls);
        int rc = tls_conn_init(c->tls, c->cl->tls, c->origin->tls_name);
        if (rc < 0) {
            xfree(c->tls);
            c->tls = NULL;
            call_finish(c, rc);
            return;
        }
        /* resume the last session this destination gave us (one full handshake per
         * destination and reload, not per connection) */
        char key[INET6_ADDRSTRLEN + HC_TLS_NAME_BYTES + 16];
        origin_session_key(c->origin, key, sizeof key);
        tls_conn_session_key(c->tls, key);
        rc = tls_conn_connect(c->tls);
        if (!rc) rc = conn_tls_flush(c);
        if (!rc) rc = conn_set_reading(c, true);
        if (rc < 0) call_finish(c, rc == GW_E_STATE ? GW_E_MALFORMED : rc);
        return;
    }
    c->state = CONN_ACTIVE;
    int rc = conn_start_exchange(c);
    if (rc < 0) call_finish(c, rc);
}

/* ---- request building ------------------------------------------------------------------ */

static bool is_field_value_ok(struct strv v)
{
    for (size_t i = 0; i < v.len; i++)
        if (v.p[i] == '\r' || v.p[i] == '\n' || v.p[i] == '\0') return false;
    return true;
}

static bool is_target_ok(struct strv t)
{
    if (t.len == 0) return false;
    for (size_t i = 0; i < t.len; i++) {
        unsigned char ch = (unsigned char)t.p[i];
        if (ch <= ' ' || ch == 0x7f) return false;
    }
    return true;
}

/* True if the comma-separated list v holds token tok (ASCII case-insensitive). */
static bool has_token_ci(struct strv v, const char *tok)
{
    struct strv want = strv_from_cstr(tok);
    while (v.len > 0) {
        long comma = strv_index(v, ',');
        size_t n = comma < 0 ? v.len : (size_t)comma;
        if (strv_eq_ci(strv_trim(strv_sub(v, 0, n)), want)) return true;
        v = strv_sub(v, comma < 0 ? v.len : n + 1, v.len);
    }
    return false;
}

static int build_head(struct buf *b, const struct http_client_request *req, bool *wants_close)
{
    bool has_host = false;
    *wants_close = false;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (!strv_is_token(h->name) || !is_field_value_ok(h->value)) return GW_E_INVALID;
        if (strv_eq_ci(h->name, STRV_LIT("host"))) has_host = true;
        if (strv_eq_ci(h->name, STRV_LIT("connection")) && has_token_ci(h->value, "close"))
            *wants_close = true;
    }
    /* Pieces, not printf: this runs for every proxied request. */
    int rc = buf_append_strv(b, req->method);
    if (!rc) rc = buf_append(b, " ", 1);
    if (!rc) rc = buf_append_strv(b, req->target);
    if (!rc) rc = buf_append(b, " HTTP/1.1\r\n", 11);
    if (!rc && !has_host) {
        /* As the caller named the host; an IPv6 literal gets its brackets. */
        bool is_v6 = strchr(req->host, ':') != NULL && req->host[0] != '[';
        rc = buf_append(b, is_v6 ? "Host: [" : "Host: ", is_v6 ? 7 : 6);
        if (!rc) rc = buf_append_cstr(b, req->host);
        if (!rc) rc = buf_append(b, is_v6 ? "]:" : ":", is_v6 ? 2 : 1);
        if (!rc) rc = buf_append_u64(b, (uint64_t)req->port);
        if (!rc) rc = buf_append(b, "\r\n", 2);
    }
    bool needs_length = req->body.len > 0 || strv_eq(req->method, STRV_LIT("POST")) ||
                        strv_eq(req->method, STRV_LIT("PUT"));
    if (!rc && needs_length) {
        rc = buf_append(b, "Content-Length: ", 16);
        if (!rc) rc = buf_append_u64(b, req->body.len);
        if (!rc) rc = buf_append(b, "\r\n", 2);
    }
    for (size_t i = 0; i < req->n_headers && !rc; i++) {
        const struct http_header *h = &req->headers[i];
        /* The client frames the body it copied; the caller's framing headers would lie. */
        if (strv_eq_ci(h->name, STRV_LIT("content-length")) ||
            strv_eq_ci(h->name, STRV_LIT("transfer-encoding")))
            continue;
        rc = buf_append_strv(b, h->name);
        if (!rc) rc = buf_append(b, ": ", 2);
        if (!rc) rc = buf_append_strv(b, h->value);
        if (!rc) rc = buf_append(b, "\r\n", 2);
    }
    if (!rc) rc = buf_append(b, "\r\n", 2);
    return rc;
}

/* The conn keeps its own copy of the body, so the caller's bytes need not outlive the write;
 * the allocation is reused by the next request on the conn. */
static void conn_set_body(struct conn *c, struct strv v)
{
    if (v.len > c->req_body_cap) {
        size_t cap = (v.len + 63) & ~(size_t)63;
        xfree(c->req_body);
        c->req_body = xmalloc(cap);
        c->req_body_cap = cap;
    }
    if (v.len) memcpy(c->req_body, v.p, v.len);
    c->req_body_len = v.len;
}

/* Hands the head built in cl->head to the conn; cl->head takes the conn's old buffer. */
static void swap_head(struct conn *c)
{
    struct buf t = c->req_head;
    c->req_head = c->cl->head;
    c->cl->head = t;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
}

bool http_host_is_loopback(const char *host)
{
    if (!host) return false;
    if (strcasecmp(host, "localhost") == 0) return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false; /* a name other than localhost, or 0.0.0.0 / :: (every interface) */
}

static bool has_header(const struct http_client_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strv_eq_ci(req->headers[i].name, strv_from_cstr(name))) return true;
    return false;
}

/* ---- public API ------------------------------------------------------------------------ */

int http_client_new(uv_loop_t *loop, const struct http_client_config *cfg, struct http_client **out)
{
    if (!loop || !out) return GW_E_INVALID;
    struct http_client *cl = xcalloc(1, sizeof *cl);
    cl->loop = loop;
    if (cfg)
        cl->cfg = *cfg;
    else
        http_client_config_defaults(&cl->cfg);
    cl->cfg.tls = NULL;
    if (cfg && cfg->tls) cl->tls = tls_ctx_ref(cfg->tls);
    if (cl->cfg.max_response_header_bytes == 0) cl->cfg.max_response_header_bytes = 64 * 1024;
    llhttp_settings_init(&cl->settings);
    cl->settings.on_status = on_status;
    cl->settings.on_header_field = on_header_field;
    cl->settings.on_header_value = on_header_value;
    cl->settings.on_headers_complete = on_headers_complete;
    cl->settings.on_body = on_body;
    cl->settings.on_message_complete = on_message_complete;
    link_init(&cl->origins);
    link_init(&cl->conns);
    buf_init(&cl->head, HC_MAX_REQUEST_HEAD_BYTES);
    *out = cl;
    return 0;
}

void http_client_set_tls(struct http_client *cl, struct tls_ctx *ctx)
{
    struct tls_ctx *old = cl->tls;
    cl->tls = ctx ? tls_ctx_ref(ctx) : NULL;
    tls_ctx_unref(old); /* open conns hold their own references */
}

void http_client_set_refuse_plain_auth(struct http_client *cl, bool refuse)
{
    cl->cfg.refuse_plain_auth = refuse;
}

void http_client_free(struct http_client *cl)
{
    if (!cl || cl->is_freeing) return;
    cl->is_freeing = true;
    for (struct link *l = cl->conns.next; l != &cl->conns; l = l->next) {
        struct conn *c = CONTAINER_OF(l, struct conn, all_link);
        struct http_call *call = c->call;
        if (call && !call->is_done && !call->is_cancelled) {
            call->is_cancelled = true;
            cl->stats.active--;
        }
        conn_close(c);
    }
    if (cl->n_conns == 0) client_destroy(cl);
}

int http_client_request(struct http_client *cl, const struct http_client_request *req,
                        const struct http_client_callbacks *cb, void *ctx, struct http_call **out)
{
    if (!cl || !req || !cb || !out) return GW_E_INVALID;
    if (cl->is_freeing) return GW_E_STATE;
    if (!strv_is_token(req->method) || !is_target_ok(req->target)) return GW_E_INVALID;
    if (req->body.len > UINT32_MAX || (req->body.len && !req->body.p)) return GW_E_INVALID;
    if (req->n_headers && !req->headers) return GW_E_INVALID;
    struct sockaddr_storage ss;
    int rc = resolve(req->host, req->port, &ss);
    if (rc < 0) return rc;
    if (req->tls && !cl->tls) return GW_E_INVALID;
    if (!req->tls && cl->cfg.refuse_plain_auth && !is_loopback(&ss) &&
        has_header(req, "authorization"))
        return GW_E_INVALID; /* a secret would cross the network in clear */
    const char *tls_name = req->tls_name ? req->tls_name : req->host;
    if (req->tls && strlen(tls_name) >= HC_TLS_NAME_BYTES) return GW_E_INVALID;
    struct origin *o = origin_get(cl, &ss, req->tls, tls_name);

    bool wants_close;
    buf_reset(&cl->head);
    rc = build_head(&cl->head, req, &wants_close);
    if (rc < 0) {
        if (o->refs == 0 && o->n_idle == 0) {
            o->refs = 1;
            origin_unref(o);
        }
        return rc;
    }

    struct http_call *call = xcalloc(1, sizeof *call);
    call->cl = cl;
    call->cb = *cb;
    call->ctx = ctx;
    call->connect_timeout_ms = req->connect_timeout_ms;
    call->first_byte_timeout_ms = req->first_byte_timeout_ms;
    call->idle_timeout_ms = req->idle_timeout_ms;
    call->total_timeout_ms = req->total_timeout_ms;
    call->is_head = strv_eq(req->method, STRV_LIT("HEAD"));
    call->wants_close = wants_close;

    struct conn *c;
    while (!req->no_reuse && (c = pool_take(o)) != NULL) {
        swap_head(c);
        conn_set_body(c, req->body);
        c->call = call;
        if (conn_start_exchange(c) == 0) {
            call->res.reused_conn = true;
            cl->stats.reuses++;
            goto started;
        }
        /* The pooled conn is unusable: the head goes back for the next; drop it and retry. */
        c->call = NULL;
        swap_head(c);
        conn_close(c);
    }

    c = conn_new(cl, o);
    swap_head(c);
    conn_set_body(c, req->body);
    c->state = CONN_CONNECTING;
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&o->addr, on_connect);
    if (rc < 0) {
        conn_close(c);
        xfree(call);
        return rc;
    }
    c->call = call;
    cl->stats.connects++;
    conn_arm_phase(c);

started:
    call->conn = c;
    cl->stats.active++;
    c->total_at = call->total_timeout_ms ? uv_now(cl->loop) + call->total_timeout_ms : 0;
    timer_sync(c);
    *out = call;
    return 0;
}

void http_call_pause(struct http_call *call)
{
    if (!call || call->is_done || call->is_cancelled || call->is_paused) return;
    call->is_paused = true;
    struct conn *c = call->conn;
    if (c->state != CONN_ACTIVE) return; /* reading starts on connect unless paused */
    (void)conn_set_reading(c, false);
    (void)uv_idle_stop(&c->drain);
    conn_arm_phase(c);
}

void http_call_resume(struct http_call *call)
{
    if (!call || call->is_done || call->is_cancelled || !call->is_paused) return;
    call->is_paused = false;
    struct conn *c = call->conn;
    if (c->state != CONN_ACTIVE) return;
    /* Held bytes and a pending on_done are delivered from the loop, never from in here. */
    (void)uv_idle_start(&c->drain, on_drain);
}

void http_call_cancel(struct http_call *call)
{
    if (!call || call->is_done || call->is_cancelled) return;
    call->is_cancelled = true;
    call->cl->stats.active--;
    conn_close(call->conn); /* the call is freed in the conn's close callback */
}

void http_client_get_stats(const struct http_client *cl, struct http_client_stats *out)
{
    *out = cl->stats;
}
