/* tls — TLS (OpenSSL 3) as a record pump over memory BIOs, for connections driven by libuv.
 * A struct tls_conn never touches a socket: the owner feeds the ciphertext it read
 * (tls_conn_feed), pulls plaintext (tls_conn_read, which also drives the handshake), pushes
 * plaintext (tls_conn_write) and takes the ciphertext to send (tls_conn_out / tls_conn_out_consume)
 * after every one of those calls. Policy: TLS 1.2 or later, no renegotiation, no compression,
 * ALPN http/1.1; servers present a certificate and key read from PEM files and may require a
 * client certificate signed by a CA of their own (mutual TLS); clients verify the peer against
 * the system store or a pinned CA file, check the host name or IP address, send SNI for names
 * (never for IP literals) and may present a certificate.
 * A struct tls_ctx is refcounted: a connection holds a reference for its life, so replacing a
 * listener's context (certificate reload) never disturbs open connections.
 * Thread: a tls_ctx may be shared read-only across threads (OpenSSL's SSL_CTX is); a tls_conn
 * belongs to its owner's thread. */
#ifndef DROVER_NET_TLS_H
#define DROVER_NET_TLS_H
#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

struct tls_ctx;

struct tls_server_config {
    const char *cert_file;      /* PEM chain, leaf first; required */
    const char *key_file;       /* PEM private key; required */
    const char *min_version;    /* "1.2" (default, NULL) or "1.3" */
    const char *client_ca_file; /* PEM CAs: require a client certificate signed by one of them
                                   (mutual TLS); NULL: no client certificate asked */
};

struct tls_client_config {
    const char *ca_file;     /* PEM CAs to trust instead of the system store; NULL: system */
    const char *cert_file;   /* client certificate for mutual TLS; NULL: none */
    const char *key_file;    /* its key; required when cert_file is set */
    const char *min_version; /* as for servers */
    bool no_verify;          /* tests only: accept any certificate */
};

/* Build a context from files. Return 0 and *out (one reference, owned), or GW_E_INVALID with
 * err naming the file and OpenSSL's reason (missing file, key not matching the certificate,
 * bad min_version). */
int tls_server_ctx_new(const struct tls_server_config *cfg, struct tls_ctx **out,
                       struct gw_error *err) WUR;
int tls_client_ctx_new(const struct tls_client_config *cfg, struct tls_ctx **out,
                       struct gw_error *err) WUR;
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx); /* returns ctx */
void tls_ctx_unref(struct tls_ctx *ctx);          /* NULL is fine */

enum tls_state { TLS_HANDSHAKE, TLS_OPEN, TLS_CLOSED, TLS_FAILED };

struct tls_conn {
    void *ssl;           /* SSL *, owned */
    void *rbio, *wbio;   /* owned by ssl: network -> TLS, TLS -> network */
    struct tls_ctx *ctx; /* one reference */
    enum tls_state state;
    bool is_server;
    bool got_close_notify;
    unsigned long err_code; /* OpenSSL error that failed the connection, for logs; 0: none */
    char *session_key;      /* clients: the destination's name in the session cache, owned */
};

/* Set up t as a server (peer_name NULL) or client. For clients, peer_name is the host the
 * caller dialled: an IP literal is checked against the certificate's IP addresses, a name
 * against its DNS names and sent as SNI. Return 0 or GW_E_INVALID. */
int tls_conn_init(struct tls_conn *t, struct tls_ctx *ctx, const char *peer_name) WUR;
void tls_conn_free(struct tls_conn *t); /* safe on a zeroed or already freed t */

/* Client, after tls_conn_init and before tls_conn_connect: resume the session the context
 * keeps for key (the caller's name of the destination: address, port and verified name) if it
 * has one, and keep under key the sessions this connection is given. Each client context keeps
 * the last session of up to 256 destinations (least recently used go first); a new context
 * (a reload) starts empty. A server that declines resumption costs nothing: a full handshake,
 * verified as always. */
void tls_conn_session_key(struct tls_conn *t, const char *key);
/* Whether the handshake resumed a session (no certificate exchange). */
bool tls_conn_resumed(const struct tls_conn *t);
/* Client: start the handshake (queues the ClientHello). Return 0 or GW_E_STATE. */
int tls_conn_connect(struct tls_conn *t) WUR;
/* Give the pump n ciphertext bytes read from the socket (copied). Return 0. */
int tls_conn_feed(struct tls_conn *t, const void *p, size_t n) WUR;
/* Read up to cap plaintext bytes. Return > 0 bytes, 0 when more ciphertext is needed (the
 * handshake may have progressed: check tls_conn_out), GW_E_CLOSED after the peer's
 * close_notify, or GW_E_MALFORMED when the peer broke the protocol (handshake failure,
 * bad certificate, a plain HTTP request, renegotiation attempt). */
long tls_conn_read(struct tls_conn *t, void *out, size_t cap);
/* Encrypt all n bytes (memory BIOs never block). Return 0, GW_E_STATE before the handshake
 * completed, or GW_E_CLOSED. */
int tls_conn_write(struct tls_conn *t, const void *p, size_t n) WUR;
/* Queue close_notify. */
void tls_conn_shutdown(struct tls_conn *t);
/* Ciphertext waiting to be sent: a borrowed view valid until the next call on t. */
size_t tls_conn_out(struct tls_conn *t, const char **p);
void tls_conn_out_consume(struct tls_conn *t, size_t n);
/* Ciphertext fed and not yet decrypted, plus decrypted bytes not yet read. */
bool tls_conn_has_input(struct tls_conn *t);
bool tls_conn_is_open(const struct tls_conn *t);
/* Human reason for the last failure ("certificate verify failed", ...); static storage. */
const char *tls_conn_reason(const struct tls_conn *t);
/* "TLSv1.3" for an open connection. */
const char *tls_conn_version(const struct tls_conn *t);
/* The negotiated ALPN protocol ("http/1.1") into out (NUL-terminated); "" when none. */
void tls_conn_alpn(const struct tls_conn *t, char *out, size_t cap);

#endif
