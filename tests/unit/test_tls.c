/* Unit tests for net/tls and TLS in net/http_server + net/http_client. A test CA, a server
 * certificate (SAN 127.0.0.1, ::1, localhost) and a client certificate are made once with
 * the openssl CLI in a temporary directory. The pump tests shuttle bytes between an in-memory
 * client and server (no sockets); the HTTP tests run a TLS server and client in one loop with
 * a watchdog timer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/mem.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/tls.h"

static char dir[256];
static char ca_pem[300], srv_crt[300], srv_key[300], cli_crt[300], cli_key[300];

static int make_certs(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/drover-tls-unit.XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
    snprintf(srv_crt, sizeof srv_crt, "%s/srv.pem", dir);
    snprintf(srv_key, sizeof srv_key, "%s/srv.key", dir);
    snprintf(cli_crt, sizeof cli_crt, "%s/cli.pem", dir);
    snprintf(cli_key, sizeof cli_key, "%s/cli.key", dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=test-ca -keyout ca.key -out ca.pem && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=srv "
             "-keyout srv.key -out srv.csr && "
             "printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\\n' > srv.ext && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile srv.ext -out srv.pem && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=cli "
             "-keyout cli.key -out cli.csr && "
             "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-out cli.pem >/dev/null 2>&1",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_certs(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the pump, in memory ---------------------------------------------------------------- */

static struct tls_ctx *server_ctx(void)
{
    struct tls_server_config sc = {.cert_file = srv_crt, .key_file = srv_key};
    struct tls_ctx *t = NULL;
    struct gw_error err = {0};
    assert_int_equal(tls_server_ctx_new(&sc, &t, &err), 0);
    return t;
}

static struct tls_ctx *client_ctx(const char *ca)
{
    struct tls_client_config cc = {.ca_file = ca};
    struct tls_ctx *t = NULL;
    struct gw_error err = {0};
    assert_int_equal(tls_client_ctx_new(&cc, &t, &err), 0);
    return t;
}

/* Moves ciphertext from a to b, step bytes per feed (0: all at once). Returns bytes moved. */
static size_t move(struct tls_conn *a, struct tls_conn *b, size_t step)
{
    const char *p;
    size_t n = tls_conn_out(a, &p), moved = n;
    char *copy = xmalloc(n ? n : 1);
    memcpy(copy, p, n);
    tls_conn_out_consume(a, n);
    for (size_t off = 0; off < n;) {
        size_t k = step && n - off > step ? step : n - off;
        assert_int_equal(tls_conn_feed(b, copy + off, k), 0);
        off += k;
        char sink[1];
        if (step) (void)tls_conn_read(b, sink, 0); /* drive the handshake on every piece */
    }
    xfree(copy);
    return moved;
}

/* Pumps both ways until nothing moves; returns false if either side failed. */
static bool handshake(struct tls_conn *c, struct tls_conn *s, size_t step)
{
    char buf[64];
    assert_int_equal(tls_conn_connect(c), 0);
    for (int i = 0; i < 50; i++) {
        size_t m = move(c, s, step);
        if (tls_conn_read(s, buf, sizeof buf) < 0) return false;
        m += move(s, c, step);
        if (tls_conn_read(c, buf, sizeof buf) < 0) return false;
        if (!m && tls_conn_is_open(c) && tls_conn_is_open(s)) return true;
        if (!m) return false;
    }
    return false;
}

static void test_handshake_and_alpn(void **state)
{
    (void)state;
    struct tls_ctx *sc = server_ctx(), *cc = client_ctx(ca_pem);
    struct tls_conn s, c;
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, cc, "127.0.0.1"), 0);
    assert_true(handshake(&c, &s, 0));
    char alpn[32];
    tls_conn_alpn(&c, alpn, sizeof alpn);
    assert_string_equal(alpn, "http/1.1");
    assert_string_equal(tls_conn_version(&s), "TLSv1.3");
    assert_int_equal(tls_conn_write(&c, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    move(&c, &s, 0);
    char buf[64];
    assert_int_equal(tls_conn_read(&s, buf, sizeof buf), 18);
    assert_memory_equal(buf, "GET / HTTP/1.1\r\n\r\n", 18);
    tls_conn_free(&s);
    tls_conn_free(&c);
    tls_ctx_unref(sc);
    tls_ctx_unref(cc); /* both conns released theirs: ASan sees any leak */
}

/* One handshake between fresh connections of sc and cc with the client's session key; returns
 * whether the client resumed. Both sides read once more so TLS 1.3 tickets reach the client. */
static bool connect_with_key(struct tls_ctx *sc, struct tls_ctx *cc, const char *key)
{
    struct tls_conn s, c;
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, cc, "127.0.0.1"), 0);
    tls_conn_session_key(&c, key);
    assert_true(handshake(&c, &s, 0));
    assert_int_equal(tls_conn_write(&c, "x", 1), 0);
    move(&c, &s, 0);
    char buf[8];
    assert_int_equal(tls_conn_read(&s, buf, sizeof buf), 1);
    move(&s, &c, 0);
    (void)tls_conn_read(&c, buf, sizeof buf);
    bool resumed = tls_conn_resumed(&c);
    assert_true(tls_conn_resumed(&s) == resumed);
    tls_conn_free(&s);
    tls_conn_free(&c);
    return resumed;
}

/* A client context resumes the session a destination gave it (by the caller's key); another
 * key, a new client context (a reload of the trust) or a server that lost its ticket keys (a
 * reload) does a full handshake. */
static void test_client_session_resumption(void **state)
{
    (void)state;
    struct tls_ctx *sc = server_ctx(), *cc = client_ctx(ca_pem);
    assert_false(connect_with_key(sc, cc, "127.0.0.1 443 a"));
    assert_true(connect_with_key(sc, cc, "127.0.0.1 443 a"));
    assert_true(connect_with_key(sc, cc, "127.0.0.1 443 a"));
    assert_false(connect_with_key(sc, cc, "127.0.0.1 444 a"));
    struct tls_ctx *cc2 = client_ctx(ca_pem);
    assert_false(connect_with_key(sc, cc2, "127.0.0.1 443 a"));
    tls_ctx_unref(cc2);
    tls_ctx_unref(cc);
    /* a server that reloaded (new ticket keys) declines the old session: a full handshake,
     * verified as always, and its new session resumes next time */
    struct tls_ctx *sc2 = server_ctx(), *cc3 = client_ctx(ca_pem);
    assert_false(connect_with_key(sc, cc3, "k"));
    assert_false(connect_with_key(sc2, cc3, "k"));
    assert_true(connect_with_key(sc2, cc3, "k"));
    tls_ctx_unref(cc3);
    tls_ctx_unref(sc2);
    tls_ctx_unref(sc);
}

static void test_split_reads(void **state)
{
    (void)state;
    struct tls_ctx *sc = server_ctx(), *cc = client_ctx(ca_pem);
    struct tls_conn s, c;
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, cc, "localhost"), 0);
    assert_true(handshake(&c, &s, 1)); /* one byte per feed */
    const char msg[] = "hello over a byte-at-a-time wire";
    assert_int_equal(tls_conn_write(&s, msg, sizeof msg - 1), 0);
    const char *p;
    size_t n = tls_conn_out(&s, &p);
    char got[128];
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(tls_conn_feed(&c, p + i, 1), 0);
        long r = tls_conn_read(&c, got + have, sizeof got - have);
        assert_true(r >= 0);
        if (i + 1 < n) assert_int_equal(r, 0); /* nothing before the record is whole */
        have += (size_t)r;
    }
    tls_conn_out_consume(&s, n);
    assert_int_equal(have, sizeof msg - 1);
    assert_memory_equal(got, msg, have);
    tls_conn_free(&s);
    tls_conn_free(&c);
    tls_ctx_unref(sc);
    tls_ctx_unref(cc);
}

static void test_large_body(void **state)
{
    (void)state;
    struct tls_ctx *sc = server_ctx(), *cc = client_ctx(ca_pem);
    struct tls_conn s, c;
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, cc, "127.0.0.1"), 0);
    assert_true(handshake(&c, &s, 0));
    enum { BIG = 3 * 1024 * 1024 + 17 };
    char *big = xmalloc(BIG), *back = xmalloc(BIG);
    for (size_t i = 0; i < BIG; i++) big[i] = (char)(i * 31 + 7);
    assert_int_equal(tls_conn_write(&s, big, BIG), 0);
    const char *p;
    size_t n = tls_conn_out(&s, &p);
    assert_true(n > BIG); /* all of it, framed in records */
    size_t have = 0;
    for (size_t off = 0; off < n; off += 65536) { /* socket-sized reads */
        size_t k = n - off < 65536 ? n - off : 65536;
        assert_int_equal(tls_conn_feed(&c, p + off, k), 0);
        long r;
        while ((r = tls_conn_read(&c, back + have, BIG - have)) > 0) have += (size_t)r;
        assert_int_equal(r, 0);
    }
    tls_conn_out_consume(&s, n);
    assert_int_equal(have, BIG);
    assert_memory_equal(back, big, BIG);
    xfree(big);
    xfree(back);
    tls_conn_free(&s);
    tls_conn_free(&c);
    tls_ctx_unref(sc);
    tls_ctx_unref(cc);
}

static void test_close_notify(void **state)
{
    (void)state;
    struct tls_ctx *sc = server_ctx(), *cc = client_ctx(ca_pem);
    struct tls_conn s, c;
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, cc, "127.0.0.1"), 0);
    assert_true(handshake(&c, &s, 0));
    tls_conn_shutdown(&c);
    assert_true(move(&c, &s, 0) > 0);
    char buf[16];
    assert_int_equal(tls_conn_read(&s, buf, sizeof buf), GW_E_CLOSED);
    assert_true(s.got_close_notify);
    assert_int_equal(tls_conn_write(&s, "x", 1), GW_E_CLOSED);
    tls_conn_free(&s);
    tls_conn_free(&c);
    tls_ctx_unref(sc);
    tls_ctx_unref(cc);
}

static void test_renegotiation_refused(void **state)
{
    (void)state;
    struct tls_ctx *sc = server_ctx(), *cc = client_ctx(ca_pem);
    struct tls_conn s, c;
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, cc, "127.0.0.1"), 0);
    SSL_set_max_proto_version(c.ssl, TLS1_2_VERSION); /* 1.3 has no renegotiation at all */
    assert_true(handshake(&c, &s, 0));
    assert_string_equal(tls_conn_version(&s), "TLSv1.2");
    assert_int_equal(SSL_renegotiate(c.ssl), 0);       /* our own clients never start one */
    SSL_clear_options(c.ssl, SSL_OP_NO_RENEGOTIATION); /* a hostile client does */
    assert_int_equal(SSL_renegotiate(c.ssl), 1);
    char buf[16];
    (void)SSL_do_handshake(c.ssl);
    for (int i = 0; i < 5; i++) {
        move(&c, &s, 0);
        (void)tls_conn_read(&s, buf, sizeof buf);
        move(&s, &c, 0);
        (void)SSL_do_handshake(c.ssl);
    }
    assert_int_equal(SSL_num_renegotiations(s.ssl), 0);
    assert_true(SSL_renegotiate_pending(c.ssl)); /* it never completed */
    ERR_clear_error();
    tls_conn_free(&s);
    tls_conn_free(&c);
    tls_ctx_unref(sc);
    tls_ctx_unref(cc);
}

static void test_verify_failures(void **state)
{
    (void)state;
    struct tls_ctx *sc = server_ctx(), *cc = client_ctx(ca_pem), *sys = client_ctx(NULL);
    struct tls_conn s, c;
    /* an address the certificate does not name */
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, cc, "10.9.8.7"), 0);
    assert_false(handshake(&c, &s, 0));
    assert_string_equal(tls_conn_reason(&c), "certificate verify failed");
    tls_conn_free(&s);
    tls_conn_free(&c);
    /* a CA the client does not trust (the system store) */
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, sys, "127.0.0.1"), 0);
    assert_false(handshake(&c, &s, 0));
    assert_string_equal(tls_conn_reason(&c), "certificate verify failed");
    tls_conn_free(&s);
    tls_conn_free(&c);
    /* TLS 1.1 */
    assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
    assert_int_equal(tls_conn_init(&c, cc, "127.0.0.1"), 0);
    SSL_set_min_proto_version(c.ssl, TLS1_VERSION);
    SSL_set_max_proto_version(c.ssl, TLS1_1_VERSION);
    SSL_set_security_level(c.ssl, 0);
    assert_false(handshake(&c, &s, 0));
    tls_conn_free(&s);
    tls_conn_free(&c);
    tls_ctx_unref(sc);
    tls_ctx_unref(cc);
    tls_ctx_unref(sys);
}

/* Mutual TLS: a server with client_ca_file admits a client certificate of that CA and
 * refuses a client that presents none. */
static void test_client_certificate_required(void **state)
{
    (void)state;
    struct tls_server_config scfg = {
        .cert_file = srv_crt, .key_file = srv_key, .client_ca_file = ca_pem};
    struct tls_client_config ccfg = {.ca_file = ca_pem, .cert_file = cli_crt, .key_file = cli_key};
    struct tls_ctx *sc = NULL, *with = NULL, *without = client_ctx(ca_pem);
    struct gw_error err = {0};
    assert_int_equal(tls_server_ctx_new(&scfg, &sc, &err), 0);
    assert_int_equal(tls_client_ctx_new(&ccfg, &with, &err), 0);
    for (int v = 0; v < 2; v++) { /* TLS 1.3, then 1.2 */
        struct tls_conn s, c;
        assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
        assert_int_equal(tls_conn_init(&c, with, "127.0.0.1"), 0);
        if (v) SSL_set_max_proto_version(c.ssl, TLS1_2_VERSION);
        assert_true(handshake(&c, &s, 0));
        assert_int_equal(tls_conn_write(&c, "ping", 4), 0);
        move(&c, &s, 0);
        char buf[16];
        assert_int_equal(tls_conn_read(&s, buf, sizeof buf), 4);
        assert_memory_equal(buf, "ping", 4);
        tls_conn_free(&s);
        tls_conn_free(&c);
        /* no certificate: the server fails the handshake */
        assert_int_equal(tls_conn_init(&s, sc, NULL), 0);
        assert_int_equal(tls_conn_init(&c, without, "127.0.0.1"), 0);
        if (v) SSL_set_max_proto_version(c.ssl, TLS1_2_VERSION);
        assert_false(handshake(&c, &s, 0));
        assert_int_equal(s.state, TLS_FAILED);
        assert_string_not_equal(tls_conn_reason(&s), "none");
        tls_conn_free(&s);
        tls_conn_free(&c);
    }
    tls_ctx_unref(sc);
    tls_ctx_unref(with);
    tls_ctx_unref(without);
    /* a client CA file that holds no certificate, or none at all, is refused by name */
    scfg.client_ca_file = srv_key;
    assert_int_equal(tls_server_ctx_new(&scfg, &sc, &err), GW_E_INVALID);
    assert_non_null(strstr(err.msg, srv_key));
    scfg.client_ca_file = "/nonexistent-ca.pem";
    assert_int_equal(tls_server_ctx_new(&scfg, &sc, &err), GW_E_INVALID);
    assert_non_null(strstr(err.msg, "/nonexistent-ca.pem"));
}

static void test_bad_files(void **state)
{
    (void)state;
    struct tls_ctx *t = NULL;
    struct gw_error err = {0};
    struct tls_server_config sc = {.cert_file = srv_crt, .key_file = cli_key};
    assert_int_equal(tls_server_ctx_new(&sc, &t, &err), GW_E_INVALID);
    assert_non_null(strstr(err.msg, cli_key)); /* names the key that does not fit */
    sc.cert_file = "/nonexistent.pem";
    assert_int_equal(tls_server_ctx_new(&sc, &t, &err), GW_E_INVALID);
    assert_non_null(strstr(err.msg, "/nonexistent.pem"));
    sc =
        (struct tls_server_config){.cert_file = srv_crt, .key_file = srv_key, .min_version = "1.1"};
    assert_int_equal(tls_server_ctx_new(&sc, &t, &err), GW_E_INVALID);
}

/* ---- HTTP over TLS on a loop --------------------------------------------------------------- */

struct run {
    uv_loop_t loop;
    uv_timer_t watchdog;
    struct http_server *srv;
    struct http_client *cl;
    size_t body_bytes;
    int status, err, done, want;
    bool reused[8];
    size_t big;
};

static char *big_body;

static void handle(struct http_request *req, void *ctx)
{
    struct run *r = ctx;
    assert_true(req->is_tls);
    assert_true(http_request_is_private(req));
    if (strv_eq_cstr(req->path, "/big"))
        assert_int_equal(http_respond(req, 200, NULL, 0, big_body, r->big), 0);
    else
        assert_int_equal(http_respond(req, 200, NULL, 0, req->body.p, req->body.len), 0);
}

static void on_head(struct http_call *call, const struct http_response_head *h, void *ctx)
{
    ((struct run *)ctx)->status = h->status;
}
static void on_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    ((struct run *)ctx)->body_bytes += len;
}
static void on_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct run *r = ctx;
    if (res->err) r->err = res->err;
    if (r->done < 8) r->reused[r->done] = res->reused_conn;
    if (++r->done == r->want) uv_stop(&r->loop);
}
static void on_watchdog(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void run_calls(struct run *r, const char *target, const char *body, int n, const char *name)
{
    static const struct http_client_callbacks cbs = {on_head, on_data, on_done};
    r->want = r->done + n;
    for (int i = 0; i < n; i++) {
        struct http_client_request rq = {
            .host = "127.0.0.1",
            .port = http_server_port(r->srv),
            .method = STRV_LIT("POST"),
            .target = strv_from_cstr(target),
            .body = strv_from_cstr(body),
            .connect_timeout_ms = 2000,
            .first_byte_timeout_ms = 5000,
            .tls = true,
            .tls_name = name,
        };
        struct http_call *call;
        assert_int_equal(http_client_request(r->cl, &rq, &cbs, r, &call), 0);
        uv_timer_start(&r->watchdog, on_watchdog, 10000, 0);
        uv_run(&r->loop, UV_RUN_DEFAULT); /* sequential: each reuses the pooled conn */
    }
}

static void start(struct run *r, struct tls_ctx *cctx)
{
    memset(r, 0, sizeof *r);
    uv_loop_init(&r->loop);
    uv_timer_init(&r->loop, &r->watchdog);
    struct tls_ctx *sc = server_ctx();
    struct http_server_config hc;
    http_server_config_defaults(&hc);
    hc.port = 0;
    hc.tls = sc;
    struct gw_error err = {0};
    assert_int_equal(http_server_start(&r->loop, &hc, handle, r, &r->srv, &err), 0);
    tls_ctx_unref(sc);
    struct http_client_config cc;
    http_client_config_defaults(&cc);
    cc.tls = cctx;
    assert_int_equal(http_client_new(&r->loop, &cc, &r->cl), 0);
}

static void stop(struct run *r)
{
    http_client_free(r->cl);
    http_server_close(r->srv, NULL, NULL);
    uv_close((uv_handle_t *)&r->watchdog, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

static void test_http_keepalive_over_tls(void **state)
{
    (void)state;
    struct tls_ctx *cc = client_ctx(ca_pem);
    struct run r;
    start(&r, cc);
    tls_ctx_unref(cc);
    run_calls(&r, "/echo", "{\"hello\":1}", 3, NULL);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_bytes, 3 * 11);
    assert_false(r.reused[0]);
    assert_true(r.reused[1] && r.reused[2]);
    struct http_client_stats st;
    http_client_get_stats(r.cl, &st);
    assert_int_equal(st.connects, 1);
    /* a large response through the pump and the client's reads */
    r.big = 5 * 1024 * 1024 + 3;
    big_body = xmalloc(r.big);
    memset(big_body, 'z', r.big);
    r.body_bytes = 0;
    run_calls(&r, "/big", "", 1, "localhost"); /* by name: SNI + DNS check, a new origin */
    assert_int_equal(r.err, 0);
    assert_int_equal(r.body_bytes, r.big);
    stop(&r);
    xfree(big_body);
}

static void test_http_untrusted_server(void **state)
{
    (void)state;
    struct tls_ctx *cc = client_ctx(NULL); /* system store: the test CA is unknown */
    struct run r;
    start(&r, cc);
    tls_ctx_unref(cc);
    run_calls(&r, "/echo", "x", 1, NULL);
    assert_int_equal(r.err, GW_E_MALFORMED);
    assert_int_equal(r.status, 0);
    stop(&r);
}

static void test_refuse_plain_auth(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct http_client_config cc;
    http_client_config_defaults(&cc);
    cc.refuse_plain_auth = true;
    struct http_client *cl;
    assert_int_equal(http_client_new(&loop, &cc, &cl), 0);
    struct http_header h = {STRV_LIT("Authorization"), STRV_LIT("Bearer s3cret")};
    struct http_client_request rq = {.host = "192.0.2.1",
                                     .port = 9,
                                     .method = STRV_LIT("GET"),
                                     .target = STRV_LIT("/"),
                                     .headers = &h,
                                     .n_headers = 1};
    static const struct http_client_callbacks cbs = {on_head, on_data, on_done};
    struct http_call *call;
    assert_int_equal(http_client_request(cl, &rq, &cbs, NULL, &call), GW_E_INVALID);
    rq.tls = true; /* https with no context is refused too */
    assert_int_equal(http_client_request(cl, &rq, &cbs, NULL, &call), GW_E_INVALID);
    /* a reload can turn the refusal off (upstream.allow_plain_secrets) and on again */
    rq.tls = false;
    http_client_set_refuse_plain_auth(cl, false);
    assert_int_equal(http_client_request(cl, &rq, &cbs, NULL, &call), 0);
    http_call_cancel(call);
    http_client_set_refuse_plain_auth(cl, true);
    assert_int_equal(http_client_request(cl, &rq, &cbs, NULL, &call), GW_E_INVALID);
    http_client_free(cl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_host_is_loopback(void **state)
{
    (void)state;
    const char *yes[] = {"127.0.0.1",        "127.1.2.3", "::1",
                         "::ffff:127.0.0.1", "localhost", "LocalHost"};
    const char *no[] = {"10.0.0.5",   "192.0.2.1",         "0.0.0.0", "::",   "::ffff:10.0.0.1",
                        "gw.example", "localhost.example", "",        "[::1]"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(http_host_is_loopback(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) assert_false(http_host_is_loopback(no[i]));
    assert_false(http_host_is_loopback(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_alpn),
        cmocka_unit_test(test_client_session_resumption),
        cmocka_unit_test(test_split_reads),
        cmocka_unit_test(test_large_body),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_renegotiation_refused),
        cmocka_unit_test(test_verify_failures),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_http_keepalive_over_tls),
        cmocka_unit_test(test_http_untrusted_server),
        cmocka_unit_test(test_refuse_plain_auth),
        cmocka_unit_test(test_client_certificate_required),
        cmocka_unit_test(test_host_is_loopback),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
