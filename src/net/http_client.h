/* http_client — HTTP/1.1 client on the same libuv loop, with a keep-alive pool per origin
 * (host:port). A call writes one request and streams the response through callbacks:
 * on_head once, on_data zero or more times (the body decoded from chunked or Content-Length;
 * the raw bytes otherwise), on_done exactly once — unless the caller cancels, after which no
 * callback fires. Timeouts: connect, first byte (from request written to the first response
 * byte), idle (between two reads), total. A connection returns to its origin's pool only
 * after a complete response with keep-alive and no error of any kind; an idle pooled
 * connection closed by the server is dropped. Thread: the loop thread only. */
#ifndef DROVER_NET_HTTP_CLIENT_H
#define DROVER_NET_HTTP_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "base/strv.h"
#include "net/http_server.h" /* struct http_header */
#include "net/tls.h"

struct http_client;
struct http_call;

struct http_client_config {
    unsigned max_idle_per_origin;  /* default 64 */
    uint64_t pool_idle_timeout_ms; /* pooled connections older than this are closed; default 30 s */
    size_t max_response_header_bytes; /* default 64 KiB; past it the call fails GW_E_MALFORMED */
    struct tls_ctx *tls;    /* borrowed (the client takes a reference): for requests with .tls;
                               NULL: such requests are refused (GW_E_INVALID) */
    bool refuse_plain_auth; /* refuse (GW_E_INVALID) a plain-TCP request that carries an
                               Authorization header to a non-loopback address */
};
void http_client_config_defaults(struct http_client_config *cfg);

int http_client_new(uv_loop_t *loop, const struct http_client_config *cfg,
                    struct http_client **out) WUR;
/* Cancels every call (no callbacks), closes every connection, frees from close callbacks. */
void http_client_free(struct http_client *cl);
/* Replaces the TLS context for connections opened from now on (CA or client certificate
 * reload); pooled connections keep theirs. ctx is borrowed (a reference is taken). */
void http_client_set_tls(struct http_client *cl, struct tls_ctx *ctx);
/* Changes refuse_plain_auth for requests started from now on (a config reload). */
void http_client_set_refuse_plain_auth(struct http_client *cl, bool refuse);

/* True when host (no port, no brackets) is "localhost" or a loopback literal (127.0.0.0/8,
 * ::1, ::ffff:127.x.y.z): the only peers a secret may reach over plain TCP (DESIGN §10).
 * Other names and the any-addresses (0.0.0.0, ::) are not. Pure; any thread. */
bool http_host_is_loopback(const char *host);

struct http_client_request {
    const char *host; /* numeric IPv4/IPv6 address or "localhost" */
    int port;
    struct strv method;
    struct strv target;                /* "/v1/chat/completions" */
    const struct http_header *headers; /* borrowed for the call; Host and Content-Length
                                          are added by the client */
    size_t n_headers;
    struct strv body;               /* copied by the client; may be empty */
    uint64_t connect_timeout_ms;    /* 0 = none */
    uint64_t first_byte_timeout_ms; /* 0 = none */
    uint64_t idle_timeout_ms;       /* 0 = none */
    uint64_t total_timeout_ms;      /* 0 = none */
    bool no_reuse;                  /* always open a fresh connection */
    bool tls;                       /* https: TLS with the client's context; the handshake counts
                                       against connect_timeout_ms. A failed handshake or certificate
                                       check fails the call with GW_E_MALFORMED (logged with the
                                       reason) or UV_ECONNRESET (peer closed during the handshake). */
    const char *tls_name;           /* name to verify and send as SNI; NULL: host (an IP literal is
                                       checked against the certificate's IP addresses, no SNI) */
};

struct http_response_head {
    int status;
    int http_minor;
    const struct http_header *headers; /* borrowed for the on_head call */
    size_t n_headers;
    int64_t content_length; /* -1 when absent */
    bool chunked;
};

/* What happened to a call; passed to on_done. */
struct http_call_result {
    int err;             /* 0 when the response was complete */
    bool reused_conn;    /* the call ran on a connection taken from the pool */
    bool got_head;       /* on_head was called */
    uint64_t body_bytes; /* decoded body bytes delivered through on_data */
};

struct http_client_callbacks {
    void (*on_head)(struct http_call *call, const struct http_response_head *head, void *ctx);
    void (*on_data)(struct http_call *call, const char *p, size_t len, void *ctx);
    void (*on_done)(struct http_call *call, const struct http_call_result *res, void *ctx);
};

/* Starts a call. Returns 0 and *out (borrowed: valid until on_done returns or cancel), or a
 * negative code (no callback will fire). */
int http_client_request(struct http_client *cl, const struct http_client_request *req,
                        const struct http_client_callbacks *cb, void *ctx,
                        struct http_call **out) WUR;
/* Stops reading the response (backpressure); timers for idle are suspended while paused. */
void http_call_pause(struct http_call *call);
void http_call_resume(struct http_call *call);
/* Closes the connection at once; no callback fires afterwards. Safe from inside callbacks. */
void http_call_cancel(struct http_call *call);

/* Pool statistics for /metrics and tests. */
struct http_client_stats {
    uint64_t connects;                    /* fresh connections opened */
    uint64_t reuses;                      /* calls that ran on a pooled connection */
    uint64_t tls_handshakes, tls_resumed; /* TLS handshakes done, and those that resumed */
    unsigned idle;                        /* connections in pools now */
    unsigned active;                      /* calls in progress */
};
void http_client_get_stats(const struct http_client *cl, struct http_client_stats *out);

#endif
