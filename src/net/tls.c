/* tls — OpenSSL 3 over two memory BIOs per connection (SSL_set_bio): the owner moves bytes
 * between the socket and the BIOs, so TLS fits libuv's read/write callbacks with no blocking
 * and no second event source. The write BIO is unbounded (a memory BIO never says "retry" on
 * write), so SSL_write always takes everything; the owner's write queue and high-water mark
 * still bound how much ciphertext waits for a slow peer. Thread: see tls.h. */
#include "net/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "base/mem.h"

enum { TLS_CLIENT_SESSIONS = 256 }; /* destinations a client context remembers a session for */

/* A client's session for one destination (tls_conn_session_key), for resumption. */
struct tls_client_session {
    char *key;
    SSL_SESSION *sess; /* one reference */
    uint64_t used;     /* LRU clock */
};

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    unsigned refs;
    bool is_server;
    /* clients: the last session each destination gave us. A context's cache dies with it, so
     * a reloaded trust (CA file) never resumes a session verified under the old one. */
    pthread_mutex_t mu;
    struct tls_client_session *sessions; /* TLS_CLIENT_SESSIONS slots */
    uint64_t clock;
};

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_conn = -1; /* SSL ex_data: the struct tls_conn (client connections) */

static void ex_init(void)
{
    ex_conn = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* OpenSSL hands over each session a server gives this client connection (at the end of a
 * TLS 1.2 handshake, with each TLS 1.3 ticket): a copy is kept under the connection's key (a
 * copy, because OpenSSL marks the connection's own session unresumable when the connection
 * ends without close_notify, as pooled connections do). Returns 0: OpenSSL keeps its own. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_conn *t = ex_conn >= 0 ? SSL_get_ex_data(ssl, ex_conn) : NULL;
    if (!t || !t->session_key || !t->ctx || !t->ctx->sessions) return 0;
    struct tls_ctx *c = t->ctx;
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy) return 0;
    pthread_mutex_lock(&c->mu);
    struct tls_client_session *slot = NULL, *oldest = &c->sessions[0];
    for (size_t i = 0; i < TLS_CLIENT_SESSIONS && !slot; i++) {
        struct tls_client_session *e = &c->sessions[i];
        if (e->key && strcmp(e->key, t->session_key) == 0) slot = e;
        if (e->used < oldest->used) oldest = e;
    }
    if (!slot) {
        slot = oldest;
        xfree(slot->key);
        slot->key = xstrdup(t->session_key);
    }
    if (slot->sess) SSL_SESSION_free(slot->sess);
    slot->sess = copy;
    slot->used = ++c->clock;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static const unsigned char alpn_http11[] = "\x08http/1.1";

enum {
    TLS_SESSION_CACHE_MAX = 20000, /* TLS 1.2 sessions kept for resumption (LRU) */
    TLS_SESSION_LIFETIME_S = 7200, /* tickets and cached sessions */
};

static int min_version(const char *v, int *out)
{
    if (!v || !*v || strcmp(v, "1.2") == 0) {
        *out = TLS1_2_VERSION;
        return 0;
    }
    if (strcmp(v, "1.3") == 0) {
        *out = TLS1_3_VERSION;
        return 0;
    }
    return GW_E_INVALID;
}

static int ssl_fail(struct gw_error *err, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    char reason[160];
    ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    return gw_error_set(err, GW_E_INVALID, "%s %s: %s", what, file ? file : "", reason);
}

/* Servers speak HTTP/1.1 only: a client that offers ALPN without it is refused (RFC 7301),
 * one that offers no ALPN at all is served. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, alpn_http11, sizeof alpn_http11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *ctx_base(const SSL_METHOD *m, const char *minv, struct gw_error *err)
{
    int v;
    if (min_version(minv, &v)) {
        gw_error_set(err, GW_E_INVALID, "tls min_version '%s' is not 1.2 or 1.3", minv);
        return NULL;
    }
    SSL_CTX *c = SSL_CTX_new(m);
    if (!c) {
        ssl_fail(err, "SSL_CTX_new", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, v);
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* idle keep-alive connections give their 34 KiB of record buffers back */
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    return c;
}

/* Mutual TLS: the handshake fails unless the client presents a certificate that chains to a
 * CA of ca_file (and is fit for client authentication when it names its purposes). The CA
 * names are sent in the CertificateRequest so a client with several certificates picks the
 * right one. */
static int require_client_cert(SSL_CTX *c, const char *ca_file, struct gw_error *err)
{
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (!names) {
        if (ERR_peek_last_error()) return ssl_fail(err, "tls client CA file", ca_file);
        return gw_error_set(err, GW_E_INVALID, "tls client CA file %s: no certificate in it",
                            ca_file);
    }
    if (SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return ssl_fail(err, "tls client CA file", ca_file);
    }
    SSL_CTX_set_client_CA_list(c, names); /* takes names */
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

int tls_server_ctx_new(const struct tls_server_config *cfg, struct tls_ctx **out,
                       struct gw_error *err)
{
    if (!cfg->cert_file || !cfg->key_file)
        return gw_error_set(err, GW_E_INVALID, "tls needs both a certificate and a key file");
    ERR_clear_error();
    SSL_CTX *c = ctx_base(TLS_server_method(), cfg->min_version, err);
    if (!c) return GW_E_INVALID;
    int rc = 0;
    if (SSL_CTX_use_certificate_chain_file(c, cfg->cert_file) != 1)
        rc = ssl_fail(err, "tls certificate", cfg->cert_file);
    else if (SSL_CTX_use_PrivateKey_file(c, cfg->key_file, SSL_FILETYPE_PEM) != 1)
        rc = ssl_fail(err, "tls key", cfg->key_file);
    else if (SSL_CTX_check_private_key(c) != 1)
        rc = ssl_fail(err, "tls key does not match the certificate", cfg->key_file);
    if (!rc && cfg->client_ca_file) rc = require_client_cert(c, cfg->client_ca_file, err);
    if (rc) {
        SSL_CTX_free(c);
        return rc;
    }
    SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
    /* Resumption (docs/tls.md): TLS 1.3 tickets and the TLS 1.2 session cache, both bounded.
     * One ticket per full handshake instead of OpenSSL's two: each costs a session encoding,
     * an encryption and a MAC on the handshake path, and an HTTP/1.1 client resumes one
     * connection with one ticket. */
    SSL_CTX_set_num_tickets(c, 1);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(c, TLS_SESSION_CACHE_MAX);
    SSL_CTX_set_timeout(c, TLS_SESSION_LIFETIME_S);
    static const unsigned char sid_ctx[] = "drover";
    (void)SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1);
    struct tls_ctx *t = xcalloc(1, sizeof *t);
    t->ssl_ctx = c;
    t->refs = 1;
    t->is_server = true;
    *out = t;
    return 0;
}

int tls_client_ctx_new(const struct tls_client_config *cfg, struct tls_ctx **out,
                       struct gw_error *err)
{
    ERR_clear_error();
    SSL_CTX *c = ctx_base(TLS_client_method(), cfg->min_version, err);
    if (!c) return GW_E_INVALID;
    int rc = 0;
    if (cfg->ca_file) {
        if (SSL_CTX_load_verify_locations(c, cfg->ca_file, NULL) != 1)
            rc = ssl_fail(err, "tls CA file", cfg->ca_file);
    } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
        rc = ssl_fail(err, "tls system CA store", NULL);
    }
    if (!rc && cfg->cert_file) {
        if (!cfg->key_file)
            rc = gw_error_set(err, GW_E_INVALID, "tls client certificate %s has no key file",
                              cfg->cert_file);
        else if (SSL_CTX_use_certificate_chain_file(c, cfg->cert_file) != 1)
            rc = ssl_fail(err, "tls client certificate", cfg->cert_file);
        else if (SSL_CTX_use_PrivateKey_file(c, cfg->key_file, SSL_FILETYPE_PEM) != 1)
            rc = ssl_fail(err, "tls client key", cfg->key_file);
        else if (SSL_CTX_check_private_key(c) != 1)
            rc = ssl_fail(err, "tls client key does not match the certificate", cfg->key_file);
    }
    if (!rc && SSL_CTX_set_alpn_protos(c, alpn_http11, sizeof alpn_http11 - 1) != 0)
        rc = ssl_fail(err, "tls alpn", NULL);
    if (rc) {
        SSL_CTX_free(c);
        return rc;
    }
    SSL_CTX_set_verify(c, cfg->no_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    /* sessions are kept by tls_conn_session_key, not by OpenSSL's own (server-side) cache */
    (void)pthread_once(&ex_once, ex_init);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, on_new_session);
    struct tls_ctx *t = xcalloc(1, sizeof *t);
    t->ssl_ctx = c;
    t->refs = 1;
    pthread_mutex_init(&t->mu, NULL);
    t->sessions = xcalloc(TLS_CLIENT_SESSIONS, sizeof *t->sessions);
    *out = t;
    return 0;
}

struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx)
{
    ctx->refs++;
    return ctx;
}

void tls_ctx_unref(struct tls_ctx *ctx)
{
    if (!ctx || --ctx->refs > 0) return;
    if (ctx->sessions) {
        for (size_t i = 0; i < TLS_CLIENT_SESSIONS; i++) {
            xfree(ctx->sessions[i].key);
            if (ctx->sessions[i].sess) SSL_SESSION_free(ctx->sessions[i].sess);
        }
        xfree(ctx->sessions);
        pthread_mutex_destroy(&ctx->mu);
    }
    SSL_CTX_free(ctx->ssl_ctx);
    xfree(ctx);
}

void tls_conn_session_key(struct tls_conn *t, const char *key)
{
    struct tls_ctx *c = t->ctx;
    if (!t->ssl || t->is_server || !c || !c->sessions || !key || t->session_key) return;
    t->session_key = xstrdup(key);
    SSL_set_ex_data(t->ssl, ex_conn, t);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < TLS_CLIENT_SESSIONS; i++) {
        struct tls_client_session *e = &c->sessions[i];
        if (!e->key || strcmp(e->key, key) != 0) continue;
        if (e->sess && SSL_SESSION_is_resumable(e->sess)) {
            (void)SSL_set_session(t->ssl, e->sess); /* takes its own reference */
            e->used = ++c->clock;
        }
        break;
    }
    pthread_mutex_unlock(&c->mu);
}

bool tls_conn_resumed(const struct tls_conn *t)
{
    return t->ssl && SSL_session_reused(t->ssl) == 1;
}

/* "127.0.0.1", "::1" or "[::1]" -> the bare address in ip; false for names. */
static bool ip_literal(const char *host, char *ip, size_t cap)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= cap) return false;
    memcpy(ip, host, n);
    ip[n] = '\0';
    unsigned char bin[16];
    return inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1;
}

int tls_conn_init(struct tls_conn *t, struct tls_ctx *ctx, const char *peer_name)
{
    memset(t, 0, sizeof *t);
    SSL *ssl = SSL_new(ctx->ssl_ctx);
    if (!ssl) return GW_E_INVALID;
    BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
    if (!r || !w) {
        BIO_free(r);
        BIO_free(w);
        SSL_free(ssl);
        return GW_E_INVALID;
    }
    /* an empty BIO means "no bytes yet", not end of stream */
    BIO_set_mem_eof_return(r, -1);
    BIO_set_mem_eof_return(w, -1);
    SSL_set_bio(ssl, r, w);
    t->is_server = ctx->is_server;
    if (t->is_server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        char ip[64];
        int ok = 1;
        if (peer_name && ip_literal(peer_name, ip, sizeof ip)) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip);
        } else if (peer_name) {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok =
                SSL_set_tlsext_host_name(ssl, peer_name) == 1 && SSL_set1_host(ssl, peer_name) == 1;
        }
        if (!ok) {
            SSL_free(ssl);
            return GW_E_INVALID;
        }
    }
    t->ssl = ssl;
    t->rbio = r;
    t->wbio = w;
    t->ctx = tls_ctx_ref(ctx);
    t->state = TLS_HANDSHAKE;
    return 0;
}

void tls_conn_free(struct tls_conn *t)
{
    if (t->ssl) SSL_free(t->ssl); /* frees both BIOs */
    xfree(t->session_key);
    t->session_key = NULL;
    t->ssl = t->rbio = t->wbio = NULL;
    tls_ctx_unref(t->ctx);
    t->ctx = NULL;
}

/* Records what failed the connection; OpenSSL's per-thread error queue is left empty so a
 * later, unrelated connection never reads this one's error. */
static void fail(struct tls_conn *t)
{
    t->state = TLS_FAILED;
    unsigned long e = ERR_peek_last_error();
    if (e) t->err_code = e;
    ERR_clear_error();
}

int tls_conn_connect(struct tls_conn *t)
{
    if (!t->ssl || t->is_server || t->state != TLS_HANDSHAKE) return GW_E_STATE;
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->state = TLS_OPEN;
        return 0;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    fail(t);
    return GW_E_STATE;
}

int tls_conn_feed(struct tls_conn *t, const void *p, size_t n)
{
    size_t done = 0;
    if (n && BIO_write_ex(t->rbio, p, n, &done) != 1) return GW_E_LIMIT;
    return 0;
}

long tls_conn_read(struct tls_conn *t, void *out, size_t cap)
{
    if (t->state == TLS_FAILED) return GW_E_MALFORMED;
    if (t->state == TLS_CLOSED) return GW_E_CLOSED;
    size_t got = 0;
    int rc = SSL_read_ex(t->ssl, out, cap, &got);
    if (rc == 1) {
        t->state = TLS_OPEN;
        return (long)got;
    }
    int e = SSL_get_error(t->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        if (t->state == TLS_HANDSHAKE && SSL_is_init_finished(t->ssl)) t->state = TLS_OPEN;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        t->got_close_notify = true;
        t->state = TLS_CLOSED;
        return GW_E_CLOSED;
    default:
        fail(t);
        return GW_E_MALFORMED;
    }
}

int tls_conn_write(struct tls_conn *t, const void *p, size_t n)
{
    if (t->state == TLS_CLOSED || t->state == TLS_FAILED) return GW_E_CLOSED;
    if (!SSL_is_init_finished(t->ssl)) return GW_E_STATE;
    t->state = TLS_OPEN;
    const char *s = p;
    while (n > 0) {
        size_t done = 0;
        if (SSL_write_ex(t->ssl, s, n, &done) != 1) {
            fail(t);
            return GW_E_CLOSED;
        }
        s += done;
        n -= done;
    }
    return 0;
}

void tls_conn_shutdown(struct tls_conn *t)
{
    if (!t->ssl || t->state == TLS_FAILED) return;
    if (SSL_is_init_finished(t->ssl)) (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}

size_t tls_conn_out(struct tls_conn *t, const char **p)
{
    char *d = NULL;
    long n = t->wbio ? BIO_get_mem_data((BIO *)t->wbio, &d) : 0;
    *p = d;
    return n > 0 ? (size_t)n : 0;
}

void tls_conn_out_consume(struct tls_conn *t, size_t n)
{
    const char *p;
    size_t have = tls_conn_out(t, &p);
    if (n >= have) {
        (void)BIO_reset((BIO *)t->wbio);
        return;
    }
    char skip[4096];
    while (n > 0) {
        size_t k = n < sizeof skip ? n : sizeof skip, got = 0;
        if (BIO_read_ex((BIO *)t->wbio, skip, k, &got) != 1 || got == 0) break;
        n -= got;
    }
}

bool tls_conn_has_input(struct tls_conn *t)
{
    /* SSL_has_pending: processed or unprocessed bytes inside OpenSSL (a record read ahead) */
    return t->ssl && (BIO_ctrl_pending((BIO *)t->rbio) > 0 || SSL_has_pending(t->ssl));
}

bool tls_conn_is_open(const struct tls_conn *t)
{
    return t->state == TLS_OPEN;
}

const char *tls_conn_reason(const struct tls_conn *t)
{
    if (!t->err_code) return t->state == TLS_FAILED ? "tls failure" : "none";
    const char *r = ERR_reason_error_string(t->err_code);
    return r ? r : "tls failure";
}

const char *tls_conn_version(const struct tls_conn *t)
{
    return t->ssl ? SSL_get_version(t->ssl) : "none";
}

void tls_conn_alpn(const struct tls_conn *t, char *out, size_t cap)
{
    const unsigned char *p = NULL;
    unsigned n = 0;
    if (t->ssl) SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (!cap) return;
    if (n >= cap) n = (unsigned)cap - 1;
    if (n) memcpy(out, p, n);
    out[n] = '\0';
}
