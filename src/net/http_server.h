/* http_server — HTTP/1.1 server on libuv + llhttp.
 *
 * One loop thread owns every connection. A connection reads one request at a time (head and
 * whole body, each under its cap), pauses reading, calls the handler, and resumes after the
 * response has been fully queued (keep-alive) or closes (Connection: close, HTTP/1.0 without
 * keep-alive, or an error). Caps and their answers:
 *   header bytes > max_header_bytes          -> 431, close
 *   body bytes   > max_body_bytes            -> 413, close (never buffered past the cap)
 *   head not complete within header_timeout  -> 408, close (slowloris)
 *   body not complete within body_timeout    -> 408, close
 *   keep-alive idle > idle_timeout           -> close silently
 *   connections > max_connections           -> 503 + close right after accept
 *   malformed request, bad header name       -> 400, close
 * Header names must be RFC 9110 tokens (llhttp lets `Host : a` through; we refuse it) and
 * values are trimmed of SP/HTAB.
 *
 * Thread: the loop thread only. */
#ifndef DROVER_NET_HTTP_SERVER_H
#define DROVER_NET_HTTP_SERVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/arena.h"
#include "base/err.h"
#include "base/strv.h"
#include "net/tls.h"

struct http_server;
struct http_conn;

struct http_header {
    struct strv name;
    struct strv value;
};

struct http_request {
    struct http_conn *conn;      /* borrowed; internal */
    uint64_t id;                 /* process-unique request id, for logs */
    struct strv method;          /* "GET", "POST", ... */
    struct strv target;          /* request target as sent: "/v1/models?x=1" */
    struct strv path;            /* target up to '?' */
    struct strv query;           /* after '?', may be empty */
    int http_minor;              /* 0 or 1 */
    bool keep_alive;             /* the client wants the connection kept */
    struct http_header *headers; /* n_headers entries, borrowed from the arena */
    size_t n_headers;
    struct strv body;      /* the whole body (Content-Length or chunked, decoded) */
    struct arena arena;    /* per-request; freed when the response ends or aborts */
    char peer[64];         /* "127.0.0.1:5432" */
    bool is_tls;           /* arrived over TLS */
    bool is_peer_loopback; /* the peer address is 127.0.0.0/8 or ::1 */
};

/* Called once per complete request. The handler owns the request until it ends the response
 * (http_respond, http_stream_end) or the abort callback fires; it may answer at once or later
 * from any loop callback. */
typedef void http_handler_fn(struct http_request *req, void *ctx);
/* Called when the client went away (or a write failed) before the response ended. After it
 * returns the request is freed: the handler must drop every pointer to it. */
typedef void http_abort_fn(struct http_request *req, void *ctx);
/* Called when the connection's write queue fell back below the low-water mark after having
 * been above the high-water mark (resume reading the upstream). */
typedef void http_drain_fn(struct http_request *req, void *ctx);

struct http_server_config {
    const char *host;              /* "127.0.0.1"; IPv6 literals accepted */
    int port;                      /* 0 picks a free port; see http_server_port() */
    size_t max_header_bytes;       /* default 16 KiB */
    size_t max_body_bytes;         /* default 16 MiB */
    uint64_t header_timeout_ms;    /* default 10 s */
    uint64_t body_timeout_ms;      /* default 60 s */
    uint64_t idle_timeout_ms;      /* default 60 s */
    unsigned max_connections;      /* default 10000 */
    size_t write_high_water_bytes; /* default 256 KiB */
    size_t write_low_water_bytes;  /* default 64 KiB */
    const char *server_name;       /* "Server:" header value; NULL for none */
    struct tls_ctx *tls;           /* borrowed (the server takes its own reference): serve
                                      TLS with it (net/tls.h); NULL: plain HTTP. The TLS
                                      handshake must finish within header_timeout_ms. */
};

/* Fills cfg with the defaults above. */
void http_server_config_defaults(struct http_server_config *cfg);

/* Binds and listens. Returns 0 and *out (owned; free with http_server_close), or a negative
 * code with err filled (address in use, bad address). */
int http_server_start(uv_loop_t *loop, const struct http_server_config *cfg,
                      http_handler_fn *handler, void *ctx, struct http_server **out,
                      struct gw_error *err) WUR;
int http_server_port(const struct http_server *s); /* the bound port */
/* Stops accepting new connections; existing ones finish their current request. */
void http_server_stop_accepting(struct http_server *s);
/* Closes the listener and every connection (in-flight requests get their abort callback);
 * the server memory is released from the last close callback. done may be NULL. */
void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg);
unsigned http_server_conn_count(const struct http_server *s);
/* Replaces the TLS context for connections accepted from now on (certificate reload); open
 * connections keep the context they started with. ctx is borrowed (the server takes a
 * reference). Refused (GW_E_STATE) on a plain server: TLS is chosen at start. */
int http_server_set_tls(struct http_server *s, struct tls_ctx *ctx) WUR;
bool http_server_is_tls(const struct http_server *s);
unsigned http_server_active_requests(const struct http_server *s);

/* --- reading the request ------------------------------------------------------------- */

/* First header with this name (case-insensitive), or STRV_NULL with .p == NULL. */
struct strv http_request_header(const struct http_request *req, const char *name);

/* True when the request may be answered with a secret: it came over TLS, or from a loopback
 * peer. Anything else crossed a network in clear, and so would the answer. */
bool http_request_is_private(const struct http_request *req);

/* --- callbacks tied to one request ---------------------------------------------------- */
void http_request_on_abort(struct http_request *req, http_abort_fn *fn, void *ctx);
void http_request_on_drain(struct http_request *req, http_drain_fn *fn, void *ctx);

/* --- the response --------------------------------------------------------------------
 * Exactly one of: http_respond (fixed body, ends the response), or http_stream_start
 * followed by http_stream_write* and http_stream_end. Header names/values are borrowed for
 * the duration of the call. The writer adds Date-less minimal framing: Content-Length or
 * Transfer-Encoding: chunked, and Connection: keep-alive/close. Callers must not pass
 * Content-Length or Transfer-Encoding themselves. After the ending call the request is
 * gone. All return 0 or GW_E_CLOSED (client gone: the abort callback will still fire once,
 * from a later loop iteration) / GW_E_STATE (misuse). */
int http_respond(struct http_request *req, int status, const struct http_header *hdrs,
                 size_t n_hdrs, const void *body, size_t len);
/* Convenience: JSON body with Content-Type: application/json. */
int http_respond_json(struct http_request *req, int status, const struct http_header *hdrs,
                      size_t n_hdrs, const char *json, size_t len);
/* content_length >= 0: a fixed-length body written in pieces; -1: chunked. */
int http_stream_start(struct http_request *req, int status, const struct http_header *hdrs,
                      size_t n_hdrs, int64_t content_length);
int http_stream_write(struct http_request *req, const void *p, size_t len);
/* Ends the response (writes the last chunk for chunked bodies). */
int http_stream_end(struct http_request *req);
/* Ends the response abnormally: closes the connection without a last chunk, so the client
 * sees a truncated body. The abort callback is not called. */
void http_stream_abort(struct http_request *req);
/* Bytes queued to the socket and not yet written. */
size_t http_request_write_queue_bytes(const struct http_request *req);
/* True above the high-water mark (caller should stop producing until the drain callback). */
bool http_request_write_blocked(const struct http_request *req);

/* Reason phrase for a status ("Not Found"); "Unknown" for others. */
const char *http_status_reason(int status);

#endif
