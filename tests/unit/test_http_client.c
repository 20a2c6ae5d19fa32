/* Unit tests for net/http_client: a scripted libuv TCP server in the same loop answers each
 * request per a mode (fixed, chunked, small writes, hang, stall, reset, garbage, EOF body...)
 * and counts accepted connections, requests and client EOFs. Every loop run is bounded by a
 * watchdog timer; every timeout is at most 300 ms. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/buf.h"
#include "base/mem.h"
#include "net/http_client.h"

/* ---- scripted server ----------------------------------------------------------------- */

enum srv_mode {
    M_FIXED,           /* 200, Content-Length 11, "hello world", keep-alive */
    M_CHUNKED,         /* 200 chunked "hel" "lo w" "orld", one write */
    M_SMALL_WRITES,    /* the chunked response, 2 bytes per write every ms */
    M_KEEP_THEN_CLOSE, /* fixed response, then the server closes 30 ms later */
    M_HANG,            /* never answers */
    M_STALL,           /* head with Content-Length 100 and "partial", then nothing */
    M_TRUNCATE,        /* as stall, then closes (FIN) */
    M_RESET_BEFORE,    /* RST before any byte */
    M_RESET_MID,       /* as stall, then RST 50 ms later */
    M_GARBAGE,         /* bytes that are not HTTP */
    M_CONN_CLOSE,      /* fixed response with Connection: close, then closes */
    M_EOF_BODY,        /* no Content-Length, not chunked: body until EOF */
    M_TRICKLE,         /* chunked, "ab" every trickle_ms, trickle_chunks times, then end */
    M_NO_BODY,         /* status srv.status with Content-Length 50 and no body bytes */
    M_INTERIM,         /* 100 Continue, then 200 "ok" */
    M_BIG_HEADER,      /* a 2000-byte header */
    M_STRAY,           /* fixed response followed by stray bytes in the same write */
    M_BIG_BODY,        /* 200 with a BIG_BODY_BYTES body, one write */
};

enum { BIG_BODY_BYTES = 16 * 1024 * 1024 };

enum { SRV_MAX_CONNS = 32 };

struct srv;

struct srv_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct srv *srv;
    struct buf in;
    enum srv_mode mode;
    size_t step;
    int handles;
    bool closing;
    int slot;
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    enum srv_mode mode;
    int status;
    int trickle_chunks;
    uint64_t trickle_ms;
    int accepted, requests, peer_closed;
    char last_request[4096];
    size_t last_request_len;
    struct srv_conn *conns[SRV_MAX_CONNS];
};

static const char resp_fixed[] = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
static const char resp_chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "3\r\nhel\r\n4\r\nlo w\r\n4\r\norld\r\n0\r\n\r\n";
static const char resp_partial[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";

struct srv_wr {
    uv_write_t req;
    struct srv_conn *sc;
    bool close_after;
    char data[];
};

static void sc_close_cb(uv_handle_t *h)
{
    struct srv_conn *sc = h->data;
    if (--sc->handles > 0) return;
    sc->srv->conns[sc->slot] = NULL;
    buf_free(&sc->in);
    xfree(sc);
}

static void sc_close(struct srv_conn *sc, bool reset)
{
    if (sc->closing) return;
    sc->closing = true;
    if (!reset || uv_tcp_close_reset(&sc->tcp, sc_close_cb) != 0)
        uv_close((uv_handle_t *)&sc->tcp, sc_close_cb);
    uv_close((uv_handle_t *)&sc->timer, sc_close_cb);
}

static void srv_write_cb(uv_write_t *req, int status)
{
    struct srv_wr *w = (struct srv_wr *)req;
    if (w->close_after) sc_close(w->sc, false);
    xfree(w);
}

static void srv_write(struct srv_conn *sc, const char *p, size_t n, bool close_after)
{
    if (sc->closing) return;
    struct srv_wr *w = xmalloc(sizeof *w + n);
    w->sc = sc;
    w->close_after = close_after;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&sc->tcp, &b, 1, srv_write_cb) != 0) xfree(w);
}

static void srv_write_str(struct srv_conn *sc, const char *s, bool close_after)
{
    srv_write(sc, s, strlen(s), close_after);
}

static void sc_on_timer(uv_timer_t *t)
{
    struct srv_conn *sc = t->data;
    struct srv *srv = sc->srv;
    switch (sc->mode) {
    case M_SMALL_WRITES: {
        size_t total = sizeof resp_chunked - 1;
        size_t n = total - sc->step < 2 ? total - sc->step : 2;
        srv_write(sc, resp_chunked + sc->step, n, false);
        sc->step += n;
        if (sc->step >= total) uv_timer_stop(t);
        break;
    }
    case M_KEEP_THEN_CLOSE:
        sc_close(sc, false);
        break;
    case M_RESET_MID:
        sc_close(sc, true);
        break;
    case M_TRICKLE:
        srv_write_str(sc, "2\r\nab\r\n", false);
        if ((int)++sc->step == srv->trickle_chunks) {
            srv_write_str(sc, "0\r\n\r\n", false);
            uv_timer_stop(t);
        }
        break;
    default:
        break;
    }
}

static void srv_answer(struct srv_conn *sc)
{
    struct srv *srv = sc->srv;
    char tmp[4096];
    sc->mode = srv->mode;
    sc->step = 0;
    switch (sc->mode) {
    case M_FIXED:
        srv_write_str(sc, resp_fixed, false);
        break;
    case M_CHUNKED:
        srv_write_str(sc, resp_chunked, false);
        break;
    case M_SMALL_WRITES:
        uv_timer_start(&sc->timer, sc_on_timer, 1, 1);
        break;
    case M_KEEP_THEN_CLOSE:
        srv_write_str(sc, resp_fixed, false);
        uv_timer_start(&sc->timer, sc_on_timer, 30, 0);
        break;
    case M_HANG:
        break;
    case M_STALL:
        srv_write_str(sc, resp_partial, false);
        break;
    case M_TRUNCATE:
        srv_write_str(sc, resp_partial, true);
        break;
    case M_RESET_BEFORE:
        sc_close(sc, true);
        break;
    case M_RESET_MID:
        srv_write_str(sc, resp_partial, false);
        uv_timer_start(&sc->timer, sc_on_timer, 50, 0);
        break;
    case M_GARBAGE:
        srv_write_str(sc, "SSH-2.0-OpenSSH_9.6\r\n\r\n", false);
        break;
    case M_CONN_CLOSE:
        srv_write_str(sc,
                      "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\n"
                      "hello world",
                      true);
        break;
    case M_EOF_BODY:
        srv_write_str(sc, "HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nhello eof body", true);
        break;
    case M_TRICKLE:
        srv_write_str(sc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false);
        uv_timer_start(&sc->timer, sc_on_timer, srv->trickle_ms, srv->trickle_ms);
        break;
    case M_NO_BODY:
        snprintf(tmp, sizeof tmp, "HTTP/1.1 %d X\r\nContent-Length: 50\r\n\r\n", srv->status);
        srv_write_str(sc, tmp, false);
        break;
    case M_INTERIM:
        srv_write_str(sc,
                      "HTTP/1.1 100 Continue\r\n\r\n"
                      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                      false);
        break;
    case M_STRAY:
        srv_write_str(sc, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello worldHTTP/1.1 200",
                      false);
        break;
    case M_BIG_BODY: {
        char *big = xmalloc(BIG_BODY_BYTES + 64);
        int n = snprintf(big, 64, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_BODY_BYTES);
        memset(big + n, 'x', BIG_BODY_BYTES);
        srv_write(sc, big, (size_t)n + BIG_BODY_BYTES, false);
        xfree(big);
        break;
    }
    case M_BIG_HEADER: {
        size_t n = (size_t)snprintf(tmp, sizeof tmp, "HTTP/1.1 200 OK\r\nX-Big: ");
        memset(tmp + n, 'x', 2000);
        n += 2000;
        memcpy(tmp + n, "\r\nContent-Length: 0\r\n\r\n", 23);
        srv_write(sc, tmp, n + 23, false);
        break;
    }
    }
}

/* Consumes every complete request (head + Content-Length body) in sc->in. */
static void srv_process(struct srv_conn *sc)
{
    for (;;) {
        if (sc->closing || sc->in.len == 0) return;
        const char *end = strstr(sc->in.p, "\r\n\r\n");
        if (!end) return;
        size_t head_len = (size_t)(end - sc->in.p) + 4;
        size_t body_len = 0;
        for (const char *h = sc->in.p; h < end; h++) {
            if (strncasecmp(h, "\r\ncontent-length:", 17) == 0) {
                body_len = strtoul(h + 17, NULL, 10);
                break;
            }
        }
        if (sc->in.len < head_len + body_len) return;
        struct srv *srv = sc->srv;
        size_t n = head_len + body_len;
        srv->last_request_len = n < sizeof srv->last_request ? n : sizeof srv->last_request - 1;
        memcpy(srv->last_request, sc->in.p, srv->last_request_len);
        srv->last_request[srv->last_request_len] = '\0';
        srv->requests++;
        buf_consume(&sc->in, n);
        srv_answer(sc);
    }
}

static void sc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char slab[65536];
    b->base = slab;
    b->len = sizeof slab;
}

static void sc_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct srv_conn *sc = s->data;
    if (nread < 0) {
        sc->srv->peer_closed++;
        sc_close(sc, false);
        return;
    }
    if (nread == 0) return;
    assert_int_equal(buf_append(&sc->in, b->base, (size_t)nread), 0);
    srv_process(sc);
}

static void srv_on_conn(uv_stream_t *l, int status)
{
    struct srv *srv = l->data;
    if (status < 0) return;
    struct srv_conn *sc = xcalloc(1, sizeof *sc);
    sc->srv = srv;
    buf_init(&sc->in, 1 << 20);
    uv_tcp_init(srv->loop, &sc->tcp);
    uv_timer_init(srv->loop, &sc->timer);
    sc->tcp.data = sc->timer.data = sc;
    sc->handles = 2;
    sc->slot = -1;
    for (int i = 0; i < SRV_MAX_CONNS; i++) {
        if (!srv->conns[i]) {
            srv->conns[i] = sc;
            sc->slot = i;
            break;
        }
    }
    assert_true(sc->slot >= 0);
    assert_int_equal(uv_accept(l, (uv_stream_t *)&sc->tcp), 0);
    srv->accepted++;
    uv_read_start((uv_stream_t *)&sc->tcp, sc_alloc, sc_read);
}

static void srv_start(struct srv *srv, uv_loop_t *loop)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->status = 200;
    srv->trickle_chunks = 5;
    srv->trickle_ms = 10;
    struct sockaddr_in sa;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_init(loop, &srv->listener), 0);
    srv->listener.data = srv;
    assert_int_equal(uv_tcp_bind(&srv->listener, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 64, srv_on_conn), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len), 0);
    srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(struct srv *srv)
{
    uv_close((uv_handle_t *)&srv->listener, NULL);
    for (int i = 0; i < SRV_MAX_CONNS; i++)
        if (srv->conns[i]) sc_close(srv->conns[i], false);
}

/* ---- fixture ------------------------------------------------------------------------- */

struct fx {
    uv_loop_t loop;
    uv_timer_t watchdog;
    bool fired;
    struct srv srv;
    struct http_client *cl;
    uv_tcp_t l6; /* an extra socket a test may open; closed by teardown */
    bool has_l6;
};

static void on_watchdog(uv_timer_t *t)
{
    struct fx *fx = t->data;
    fx->fired = true;
}

typedef bool pred_fn(void *arg);

/* Runs the loop until pred(arg) holds or ms pass; returns pred's final value (or true for a
 * plain timed run with pred NULL). */
static bool run_until(struct fx *fx, pred_fn *pred, void *arg, uint64_t ms)
{
    fx->fired = false;
    uv_timer_start(&fx->watchdog, on_watchdog, ms, 0);
    while (!fx->fired && !(pred && pred(arg))) uv_run(&fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->watchdog);
    return pred ? pred(arg) : true;
}

static void run_for(struct fx *fx, uint64_t ms)
{
    (void)run_until(fx, NULL, NULL, ms);
}

static struct fx *fx_new(const struct http_client_config *cfg)
{
    struct fx *fx = xcalloc(1, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    uv_timer_init(&fx->loop, &fx->watchdog);
    fx->watchdog.data = fx;
    srv_start(&fx->srv, &fx->loop);
    assert_int_equal(http_client_new(&fx->loop, cfg, &fx->cl), 0);
    return fx;
}

static int setup(void **state)
{
    *state = fx_new(NULL);
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    if (fx->cl) http_client_free(fx->cl);
    srv_stop(&fx->srv);
    if (fx->has_l6) uv_close((uv_handle_t *)&fx->l6, NULL);
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
    uint64_t deadline = uv_hrtime() + 2000ull * 1000 * 1000;
    while (uv_run(&fx->loop, UV_RUN_NOWAIT) && uv_hrtime() < deadline) uv_sleep(1);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    xfree(fx);
    return 0;
}

/* ---- call recorder ------------------------------------------------------------------- */

struct rec {
    struct fx *fx;
    struct http_call *call;
    int heads, datas, dones;
    int status;
    int64_t content_length;
    bool chunked;
    char body[8192];
    size_t body_len;
    struct http_call_result res;
    bool pause_on_head, cancel_on_head, cancel_on_done;
    bool count_only;          /* large bodies: count bytes, keep none */
    struct rec *cancel_other; /* cancelled from this call's on_head */
    int pause_on_data_n, cancel_on_data_n;
    struct rec *next; /* started from on_done when set */
    struct http_client_request next_req;
};

static void rec_on_head(struct http_call *call, const struct http_response_head *h, void *ctx)
{
    struct rec *r = ctx;
    assert_ptr_equal(call, r->call);
    r->heads++;
    r->status = h->status;
    r->content_length = h->content_length;
    r->chunked = h->chunked;
    if (r->pause_on_head) http_call_pause(call);
    if (r->cancel_on_head) http_call_cancel(call);
    if (r->cancel_other) http_call_cancel(r->cancel_other->call);
}

static void rec_start(struct rec *r, struct fx *fx, const struct http_client_request *req);

static void rec_on_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    struct rec *r = ctx;
    assert_ptr_equal(call, r->call);
    r->datas++;
    if (r->count_only) {
        r->body_len += len;
        return;
    }
    assert_true(r->body_len + len <= sizeof r->body);
    memcpy(r->body + r->body_len, p, len);
    r->body_len += len;
    if (r->datas == r->pause_on_data_n) http_call_pause(call);
    if (r->datas == r->cancel_on_data_n) http_call_cancel(call);
}

static void rec_on_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct rec *r = ctx;
    assert_ptr_equal(call, r->call);
    r->dones++;
    r->res = *res;
    if (r->cancel_on_done) http_call_cancel(call); /* a no-op: the call is finishing */
    if (r->next) rec_start(r->next, r->fx, &r->next_req);
}

static const struct http_client_callbacks rec_cb = {rec_on_head, rec_on_data, rec_on_done};

static void rec_start(struct rec *r, struct fx *fx, const struct http_client_request *req)
{
    r->fx = fx;
    assert_int_equal(http_client_request(fx->cl, req, &rec_cb, r, &r->call), 0);
}

static bool rec_is_done(void *arg)
{
    return ((struct rec *)arg)->dones > 0;
}

static struct http_client_request get_req(struct fx *fx)
{
    return (struct http_client_request){
        .host = "127.0.0.1",
        .port = fx->srv.port,
        .method = STRV_LIT("GET"),
        .target = STRV_LIT("/v1/models"),
    };
}

/* Starts req and runs until on_done (bounded); fails the test if it never came. */
static void call_and_wait(struct fx *fx, struct rec *r, const struct http_client_request *req)
{
    rec_start(r, fx, req);
    assert_true(run_until(fx, rec_is_done, r, 1000));
    assert_int_equal(r->dones, 1);
}

static void assert_body(const struct rec *r, const char *want)
{
    assert_int_equal(r->body_len, strlen(want));
    assert_memory_equal(r->body, want, r->body_len);
    assert_int_equal(r->res.body_bytes, strlen(want));
}

struct int_ge {
    const int *p;
    int v;
};

static bool int_is_ge(void *arg)
{
    struct int_ge *g = arg;
    return *g->p >= g->v;
}

static bool wait_int(struct fx *fx, const int *p, int v, uint64_t ms)
{
    struct int_ge g = {p, v};
    return run_until(fx, int_is_ge, &g, ms);
}

static bool pool_is_empty(void *arg)
{
    struct http_client_stats st;
    http_client_get_stats(arg, &st);
    return st.idle == 0;
}

static struct http_client_stats stats_of(struct fx *fx)
{
    struct http_client_stats st;
    http_client_get_stats(fx->cl, &st);
    return st;
}

/* ---- tests: bodies ------------------------------------------------------------------- */

static void test_content_length(void **state)
{
    struct fx *fx = *state;
    struct rec r = {0};
    struct http_client_request req = get_req(fx);
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.content_length, 11);
    assert_false(r.chunked);
    assert_true(r.res.got_head);
    assert_false(r.res.reused_conn);
    assert_body(&r, "hello world");
    struct http_client_stats st = stats_of(fx);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.active, 0);
}

static void test_chunked(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_CHUNKED;
    struct rec r = {0};
    struct http_client_request req = get_req(fx);
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_true(r.chunked);
    assert_int_equal(r.content_length, -1);
    assert_body(&r, "hello world");
    assert_int_equal(stats_of(fx).idle, 1);
}

static void test_small_writes(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_SMALL_WRITES;
    struct rec r = {0};
    struct http_client_request req = get_req(fx);
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_int_equal(r.status, 200);
    assert_body(&r, "hello world");
    assert_true(r.datas >= 3);
}

static void test_eof_body_not_pooled(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_EOF_BODY;
    struct rec r = {0};
    struct http_client_request req = get_req(fx);
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_int_equal(r.content_length, -1);
    assert_body(&r, "hello eof body");
    assert_int_equal(stats_of(fx).idle, 0);
    fx->srv.mode = M_FIXED;
    struct rec r2 = {0};
    call_and_wait(fx, &r2, &req);
    assert_int_equal(r2.res.err, 0);
    assert_false(r2.res.reused_conn);
    assert_int_equal(fx->srv.accepted, 2);
}

static void test_interim_100_skipped(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_INTERIM;
    struct rec r = {0};
    struct http_client_request req = get_req(fx);
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.status, 200);
    assert_body(&r, "ok");
}

static void test_no_body_for_head_204_304(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_NO_BODY;
    struct http_client_request req = get_req(fx);
    req.method = STRV_LIT("HEAD");
    req.first_byte_timeout_ms = 300;
    req.idle_timeout_ms = 300;
    struct rec r = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_int_equal(r.content_length, 50);
    assert_body(&r, "");
    int statuses[] = {304, 204};
    req.method = STRV_LIT("GET");
    for (int i = 0; i < 2; i++) {
        fx->srv.status = statuses[i];
        struct rec r2 = {0};
        call_and_wait(fx, &r2, &req);
        assert_int_equal(r2.res.err, 0);
        assert_int_equal(r2.status, statuses[i]);
        assert_body(&r2, "");
        assert_true(r2.res.reused_conn); /* framing stayed in step */
    }
    assert_int_equal(fx->srv.accepted, 1);
}

static void test_request_format(void **state)
{
    struct fx *fx = *state;
    struct http_header hdrs[] = {
        {STRV_LIT("X-Test"), STRV_LIT("yes")},
        {STRV_LIT("Content-Length"), STRV_LIT("999")},
    };
    struct http_client_request req = get_req(fx);
    req.method = STRV_LIT("POST");
    req.target = STRV_LIT("/v1/chat/completions");
    req.headers = hdrs;
    req.n_headers = 2;
    req.body = STRV_LIT("{\"a\":1}");
    struct rec r = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    const char *got = fx->srv.last_request;
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", fx->srv.port);
    assert_true(strncmp(got, "POST /v1/chat/completions HTTP/1.1\r\n", 36) == 0);
    assert_non_null(strstr(got, host));
    assert_non_null(strstr(got, "\r\nContent-Length: 7\r\n"));
    assert_null(strstr(got, "999"));
    assert_non_null(strstr(got, "\r\nX-Test: yes\r\n"));
    size_t n = fx->srv.last_request_len;
    assert_true(n > 9 && memcmp(got + n - 9, "\r\n{\"a\":1}", 9) == 0);
}

/* ---- tests: pooling ------------------------------------------------------------------ */

static void test_reuse(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    struct rec r1 = {0}, r2 = {0};
    call_and_wait(fx, &r1, &req);
    assert_false(r1.res.reused_conn);
    assert_int_equal(stats_of(fx).idle, 1);
    call_and_wait(fx, &r2, &req);
    assert_int_equal(r2.res.err, 0);
    assert_true(r2.res.reused_conn);
    assert_body(&r2, "hello world");
    assert_int_equal(fx->srv.accepted, 1);
    assert_int_equal(fx->srv.requests, 2);
    struct http_client_stats st = stats_of(fx);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.reuses, 1);
    assert_int_equal(st.idle, 1);
}

/* A pooled conn keeps its copy of the request body for the next request: each request on it
 * still carries exactly its own bytes, whether the next body is smaller or larger. */
static void test_reuse_body_sizes(void **state)
{
    struct fx *fx = *state;
    static char big[20000], mid[3000];
    memset(big, 'a', sizeof big);
    for (size_t i = 0; i < sizeof mid; i++) mid[i] = (char)('0' + i % 10);
    struct strv bodies[] = {{big, sizeof big}, STRV_LIT("{\"b\":2}"), {mid, sizeof mid}};
    for (size_t i = 0; i < 3; i++) {
        struct http_client_request req = get_req(fx);
        req.method = STRV_LIT("POST");
        req.body = bodies[i];
        struct rec r = {0};
        call_and_wait(fx, &r, &req);
        assert_int_equal(r.res.err, 0);
        assert_int_equal(r.res.reused_conn, i > 0);
        char cl[48];
        snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", bodies[i].len);
        assert_non_null(strstr(fx->srv.last_request, cl));
        if (i == 0) continue; /* the record holds the first 4 KiB only */
        size_t n = fx->srv.last_request_len;
        assert_true(n > bodies[i].len);
        assert_memory_equal(fx->srv.last_request + n - bodies[i].len, bodies[i].p, bodies[i].len);
        assert_memory_equal(fx->srv.last_request + n - bodies[i].len - 4, "\r\n\r\n", 4);
    }
    assert_int_equal(fx->srv.accepted, 1);
    assert_int_equal(fx->srv.requests, 3);
}

static void test_reuse_from_on_done(void **state)
{
    struct fx *fx = *state;
    struct rec r1 = {0}, r2 = {0};
    r1.next = &r2;
    r1.next_req = get_req(fx);
    struct http_client_request req = get_req(fx);
    rec_start(&r1, fx, &req);
    assert_true(run_until(fx, rec_is_done, &r2, 1000));
    assert_int_equal(r2.res.err, 0);
    assert_true(r2.res.reused_conn);
    assert_body(&r2, "hello world");
    assert_int_equal(fx->srv.accepted, 1);
}

static void test_connection_close_not_pooled(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_CONN_CLOSE;
    struct http_client_request req = get_req(fx);
    struct rec r1 = {0}, r2 = {0};
    call_and_wait(fx, &r1, &req);
    assert_int_equal(r1.res.err, 0);
    assert_body(&r1, "hello world");
    assert_int_equal(stats_of(fx).idle, 0);
    call_and_wait(fx, &r2, &req);
    assert_int_equal(r2.res.err, 0);
    assert_false(r2.res.reused_conn);
    assert_int_equal(fx->srv.accepted, 2);
}

static void test_caller_connection_close_not_pooled(void **state)
{
    struct fx *fx = *state;
    struct http_header h = {STRV_LIT("Connection"), STRV_LIT("close")};
    struct http_client_request req = get_req(fx);
    req.headers = &h;
    req.n_headers = 1;
    struct rec r = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_int_equal(stats_of(fx).idle, 0);
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
}

static void test_pooled_conn_closed_by_server_is_dropped(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_KEEP_THEN_CLOSE;
    struct http_client_request req = get_req(fx);
    struct rec r1 = {0}, r2 = {0};
    call_and_wait(fx, &r1, &req);
    assert_int_equal(r1.res.err, 0);
    assert_int_equal(stats_of(fx).idle, 1);
    assert_true(run_until(fx, pool_is_empty, fx->cl, 300)); /* EOF seen while idle */
    fx->srv.mode = M_FIXED;
    call_and_wait(fx, &r2, &req);
    assert_int_equal(r2.res.err, 0);
    assert_false(r2.res.reused_conn);
    assert_body(&r2, "hello world");
    assert_int_equal(fx->srv.accepted, 2);
    assert_int_equal(stats_of(fx).connects, 2);
}

static void test_pool_idle_timeout(void **state)
{
    struct fx *fx = *state;
    http_client_free(fx->cl);
    struct http_client_config cfg;
    http_client_config_defaults(&cfg);
    cfg.pool_idle_timeout_ms = 50;
    assert_int_equal(http_client_new(&fx->loop, &cfg, &fx->cl), 0);
    struct http_client_request req = get_req(fx);
    struct rec r = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(stats_of(fx).idle, 1);
    assert_true(run_until(fx, pool_is_empty, fx->cl, 300));
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
}

static void test_max_idle_per_origin(void **state)
{
    struct fx *fx = *state;
    http_client_free(fx->cl);
    struct http_client_config cfg;
    http_client_config_defaults(&cfg);
    cfg.max_idle_per_origin = 1;
    assert_int_equal(http_client_new(&fx->loop, &cfg, &fx->cl), 0);
    struct http_client_request req = get_req(fx);
    struct rec r1 = {0}, r2 = {0};
    rec_start(&r1, fx, &req);
    rec_start(&r2, fx, &req);
    assert_int_equal(stats_of(fx).active, 2);
    assert_true(run_until(fx, rec_is_done, &r1, 1000));
    assert_true(run_until(fx, rec_is_done, &r2, 1000));
    assert_int_equal(fx->srv.accepted, 2);
    assert_int_equal(stats_of(fx).idle, 1);
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
}

/* A failure on a connection taken from the pool says so: the gateway retries it at once. */
static void test_error_on_reused_conn_is_flagged(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    struct rec r1 = {0}, r2 = {0};
    call_and_wait(fx, &r1, &req);
    fx->srv.mode = M_RESET_BEFORE;
    call_and_wait(fx, &r2, &req);
    assert_int_equal(r2.res.err, UV_ECONNRESET);
    assert_true(r2.res.reused_conn);
    assert_false(r2.res.got_head);
}

/* ---- tests: errors never pool -------------------------------------------------------- */

/* Runs one call in mode m, checks its error, then shows the next call opens a new conn. */
static void expect_error_then_fresh(struct fx *fx, enum srv_mode m, struct http_client_request *req,
                                    int want_err, bool want_head, const char *want_body)
{
    fx->srv.mode = m;
    struct rec r = {0}, r2 = {0};
    call_and_wait(fx, &r, req);
    assert_int_equal(r.res.err, want_err);
    assert_int_equal(r.res.got_head, want_head);
    assert_int_equal(r.heads, want_head ? 1 : 0);
    assert_body(&r, want_body);
    assert_int_equal(stats_of(fx).idle, 0);
    assert_int_equal(stats_of(fx).active, 0);
    fx->srv.mode = M_FIXED;
    int accepted = fx->srv.accepted;
    call_and_wait(fx, &r2, req);
    assert_int_equal(r2.res.err, 0);
    assert_false(r2.res.reused_conn);
    assert_int_equal(fx->srv.accepted, accepted + 1);
}

static void test_stray_bytes_not_pooled(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_STRAY;
    struct http_client_request req = get_req(fx);
    struct rec r = {0}, r2 = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0); /* completion is authoritative */
    assert_body(&r, "hello world");
    assert_int_equal(stats_of(fx).idle, 0);
    fx->srv.mode = M_FIXED;
    call_and_wait(fx, &r2, &req);
    assert_false(r2.res.reused_conn);
    assert_int_equal(fx->srv.accepted, 2);
}

static void test_truncated(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    expect_error_then_fresh(fx, M_TRUNCATE, &req, GW_E_TRUNCATED, true, "partial");
}

static void test_reset_before_headers(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    expect_error_then_fresh(fx, M_RESET_BEFORE, &req, UV_ECONNRESET, false, "");
}

static void test_reset_mid_body(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    expect_error_then_fresh(fx, M_RESET_MID, &req, UV_ECONNRESET, true, "partial");
}

static void test_garbage(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    expect_error_then_fresh(fx, M_GARBAGE, &req, GW_E_MALFORMED, false, "");
}

static void test_header_cap(void **state)
{
    struct fx *fx = *state;
    http_client_free(fx->cl);
    struct http_client_config cfg;
    http_client_config_defaults(&cfg);
    cfg.max_response_header_bytes = 512;
    assert_int_equal(http_client_new(&fx->loop, &cfg, &fx->cl), 0);
    struct http_client_request req = get_req(fx);
    expect_error_then_fresh(fx, M_BIG_HEADER, &req, GW_E_MALFORMED, false, "");
}

/* ---- tests: timeouts ----------------------------------------------------------------- */

static void test_connect_refused(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    uv_tcp_t *tmp = &fx->l6;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&fx->loop, tmp);
    fx->has_l6 = true;
    assert_int_equal(uv_tcp_bind(tmp, (const struct sockaddr *)&sa, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(tmp, (struct sockaddr *)&ss, &len);
    req.port = ntohs(((struct sockaddr_in *)&ss)->sin_port); /* bound, never listening */
    req.connect_timeout_ms = 300;
    struct rec r = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, UV_ECONNREFUSED);
    assert_false(r.res.got_head);
}

/* A listener with backlog 0 whose accept queue is full drops SYNs, so connect hangs. */
static void test_connect_timeout(void **state)
{
    struct fx *fx = *state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    int fillers[3];
    for (int i = 0; i < 3; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM, 0);
        fcntl(fillers[i], F_SETFL, O_NONBLOCK);
        (void)connect(fillers[i], (struct sockaddr *)&sa, sizeof sa);
        run_for(fx, 10);
    }
    struct http_client_request req = get_req(fx);
    req.port = ntohs(sa.sin_port);
    req.connect_timeout_ms = 100;
    req.total_timeout_ms = 300;
    struct rec r = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, GW_E_CONNECT_TIMEOUT);
    assert_int_equal(stats_of(fx).active, 0);
    for (int i = 0; i < 3; i++) close(fillers[i]);
    close(lfd);
}

static void test_first_byte_timeout(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    req.first_byte_timeout_ms = 100;
    req.idle_timeout_ms = 20; /* applies only after the first byte */
    expect_error_then_fresh(fx, M_HANG, &req, GW_E_FIRST_BYTE_TIMEOUT, false, "");
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
}

static void test_idle_timeout(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    req.first_byte_timeout_ms = 300;
    req.idle_timeout_ms = 100;
    expect_error_then_fresh(fx, M_STALL, &req, GW_E_IDLE_TIMEOUT, true, "partial");
}

/* A stream whose chunks come more often than the idle timeout, for several idle windows, is
 * never cut: each read moves the deadline and the timer re-arms itself for what is left. */
static void test_idle_deadline_moves_with_reads(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_TRICKLE;
    fx->srv.trickle_chunks = 12;
    fx->srv.trickle_ms = 20;
    struct http_client_request req = get_req(fx);
    req.first_byte_timeout_ms = 200;
    req.idle_timeout_ms = 60; /* four windows pass during the 240 ms of chunks */
    struct rec r = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_true(r.res.body_bytes > 0);
}

static void test_total_timeout(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_TRICKLE;
    fx->srv.trickle_chunks = 100;
    fx->srv.trickle_ms = 10;
    struct http_client_request req = get_req(fx);
    req.first_byte_timeout_ms = 100;
    req.idle_timeout_ms = 100; /* never reached: a chunk every 10 ms */
    req.total_timeout_ms = 150;
    struct rec r = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, GW_E_TOTAL_TIMEOUT);
    assert_true(r.res.got_head);
    assert_true(r.res.body_bytes > 0 && r.res.body_bytes < 200);
    assert_int_equal(stats_of(fx).idle, 0);
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
}

/* ---- tests: pause, cancel, free ------------------------------------------------------ */

static void test_pause_on_head_until_resume(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_TRICKLE; /* 5 chunks, every 10 ms */
    struct http_client_request req = get_req(fx);
    req.idle_timeout_ms = 50; /* suspended while paused */
    struct rec r = {0};
    r.pause_on_head = true;
    rec_start(&r, fx, &req);
    assert_true(wait_int(fx, &r.heads, 1, 300));
    run_for(fx, 150); /* the server is done sending by now */
    assert_int_equal(r.datas, 0);
    assert_int_equal(r.dones, 0);
    http_call_resume(r.call);
    assert_int_equal(r.datas, 0); /* nothing is delivered from inside resume */
    assert_true(run_until(fx, rec_is_done, &r, 1000));
    assert_int_equal(r.res.err, 0);
    assert_body(&r, "ababababab");
    assert_int_equal(stats_of(fx).idle, 1);
}

/* Pause is real backpressure: the client stops reading, so the server's writes queue up. */
static void test_pause_stops_reading(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_BIG_BODY;
    struct http_client_request req = get_req(fx);
    req.idle_timeout_ms = 100; /* suspended while paused */
    struct rec r = {0};
    r.pause_on_head = true;
    r.count_only = true;
    rec_start(&r, fx, &req);
    assert_true(wait_int(fx, &r.heads, 1, 1000));
    run_for(fx, 200);
    assert_int_equal(r.dones, 0);
    assert_true(r.body_len < BIG_BODY_BYTES);
    assert_non_null(fx->srv.conns[0]);
    assert_true(uv_stream_get_write_queue_size((uv_stream_t *)&fx->srv.conns[0]->tcp) > 0);
    http_call_resume(r.call);
    assert_true(run_until(fx, rec_is_done, &r, 5000));
    assert_int_equal(r.res.err, 0);
    assert_int_equal(r.body_len, BIG_BODY_BYTES);
    assert_int_equal(r.res.body_bytes, BIG_BODY_BYTES);
}

static void test_pause_in_on_data_holds_rest(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_CHUNKED; /* one write, three chunks */
    struct http_client_request req = get_req(fx);
    struct rec r = {0};
    r.pause_on_data_n = 1;
    rec_start(&r, fx, &req);
    assert_true(wait_int(fx, &r.datas, 1, 300));
    run_for(fx, 100);
    assert_int_equal(r.datas, 1);
    assert_int_equal(r.dones, 0);
    assert_int_equal(stats_of(fx).active, 1);
    http_call_resume(r.call);
    assert_true(run_until(fx, rec_is_done, &r, 1000));
    assert_int_equal(r.res.err, 0);
    assert_body(&r, "hello world");
    assert_int_equal(stats_of(fx).idle, 1);
}

static void test_cancel_in_on_data(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_CHUNKED;
    struct http_client_request req = get_req(fx);
    struct rec r = {0};
    r.cancel_on_data_n = 1;
    rec_start(&r, fx, &req);
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300)); /* the server sees EOF */
    run_for(fx, 30);
    assert_int_equal(r.datas, 1);
    assert_int_equal(r.dones, 0);
    struct http_client_stats st = stats_of(fx);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.idle, 0);
}

static void test_cancel_in_on_head(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    struct rec r = {0};
    r.cancel_on_head = true;
    rec_start(&r, fx, &req);
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
    run_for(fx, 30);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.datas, 0);
    assert_int_equal(r.dones, 0);
    assert_int_equal(stats_of(fx).idle, 0);
}

static void test_cancel_in_on_done_is_noop(void **state)
{
    struct fx *fx = *state;
    struct http_client_request req = get_req(fx);
    struct rec r = {0};
    r.cancel_on_done = true;
    call_and_wait(fx, &r, &req);
    run_for(fx, 30);
    assert_int_equal(r.dones, 1);
    assert_int_equal(r.res.err, 0);
    assert_int_equal(stats_of(fx).idle, 1);
    assert_int_equal(fx->srv.peer_closed, 0);
}

static void test_cancel_hanging_call(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_HANG;
    struct http_client_request req = get_req(fx);
    struct rec r = {0};
    rec_start(&r, fx, &req);
    assert_true(wait_int(fx, &fx->srv.requests, 1, 300));
    http_call_cancel(r.call);
    assert_int_equal(stats_of(fx).active, 0);
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
    assert_int_equal(r.dones, 0);
    fx->srv.mode = M_FIXED;
    struct rec r2 = {0};
    call_and_wait(fx, &r2, &req);
    assert_int_equal(r2.res.err, 0);
    assert_false(r2.res.reused_conn);
    assert_int_equal(fx->srv.accepted, 2);
}

static void test_callback_cancels_other_call(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_HANG;
    struct http_client_request req = get_req(fx);
    struct rec a = {0}, b = {0};
    rec_start(&b, fx, &req);
    assert_true(wait_int(fx, &fx->srv.requests, 1, 300));
    fx->srv.mode = M_FIXED;
    a.cancel_other = &b;
    call_and_wait(fx, &a, &req);
    assert_int_equal(a.res.err, 0);
    assert_body(&a, "hello world");
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
    run_for(fx, 20);
    assert_int_equal(b.dones, 0);
    assert_int_equal(stats_of(fx).active, 0);
    assert_int_equal(stats_of(fx).idle, 1);
}

static void test_client_free_with_active_call(void **state)
{
    struct fx *fx = *state;
    fx->srv.mode = M_HANG;
    struct http_client_request req = get_req(fx);
    struct rec r = {0};
    rec_start(&r, fx, &req);
    assert_true(wait_int(fx, &fx->srv.requests, 1, 300));
    http_client_free(fx->cl);
    fx->cl = NULL;
    assert_true(wait_int(fx, &fx->srv.peer_closed, 1, 300));
    assert_int_equal(r.dones, 0);
}

static void test_invalid_requests(void **state)
{
    struct fx *fx = *state;
    struct http_call *call = NULL;
    struct rec r = {0};
    struct http_client_request req = get_req(fx);
    req.host = "node-1.example";
    assert_int_equal(http_client_request(fx->cl, &req, &rec_cb, &r, &call), GW_E_INVALID);
    req = get_req(fx);
    struct http_header bad = {STRV_LIT("X-A"), STRV_LIT("a\r\nInjected: 1")};
    req.headers = &bad;
    req.n_headers = 1;
    assert_int_equal(http_client_request(fx->cl, &req, &rec_cb, &r, &call), GW_E_INVALID);
    req = get_req(fx);
    req.target = STRV_LIT("/a b");
    assert_int_equal(http_client_request(fx->cl, &req, &rec_cb, &r, &call), GW_E_INVALID);
    run_for(fx, 20);
    assert_int_equal(r.dones, 0);
    assert_int_equal(fx->srv.accepted, 0);
    /* localhost resolves to 127.0.0.1 */
    req = get_req(fx);
    req.host = "localhost";
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_non_null(strstr(fx->srv.last_request, "\r\nHost: localhost:"));
}

/* IPv6 literals: resolved, bracketed in Host; skipped where the host has no ::1. */
static void test_ipv6_literal(void **state)
{
    struct fx *fx = *state;
    uv_tcp_t *l6 = &fx->l6;
    struct sockaddr_in6 sa;
    assert_int_equal(uv_ip6_addr("::1", 0, &sa), 0);
    uv_tcp_init(&fx->loop, l6);
    fx->has_l6 = true;
    l6->data = &fx->srv;
    if (uv_tcp_bind(l6, (const struct sockaddr *)&sa, 0) != 0 ||
        uv_listen((uv_stream_t *)l6, 8, srv_on_conn) != 0)
        skip(); /* no IPv6 loopback in this environment */
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(l6, (struct sockaddr *)&ss, &len);
    struct http_client_request req = get_req(fx);
    req.host = "::1";
    req.port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    struct rec r = {0}, r2 = {0};
    call_and_wait(fx, &r, &req);
    assert_int_equal(r.res.err, 0);
    assert_body(&r, "hello world");
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: [::1]:%d\r\n", req.port);
    assert_non_null(strstr(fx->srv.last_request, host));
    req.host = "[::1]";
    call_and_wait(fx, &r2, &req);
    assert_int_equal(r2.res.err, 0);
    assert_true(r2.res.reused_conn); /* same origin however it is spelled */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_content_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_body_not_pooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim_100_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_body_for_head_204_304, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_body_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_from_on_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_not_pooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caller_connection_close_not_pooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pooled_conn_closed_by_server_is_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_idle_per_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_on_reused_conn_is_flagged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_bytes_not_pooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_before_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_byte_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_deadline_moves_with_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_on_head_until_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_stops_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_in_on_data_holds_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_in_on_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_in_on_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_in_on_done_is_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_hanging_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_cancels_other_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_free_with_active_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_literal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
