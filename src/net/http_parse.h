/* http_parse — incremental HTTP/1.x request parser: llhttp plus the caps and checks the
 * gateway needs, with no libuv. The caller feeds bytes as they arrive and asks "is a request
 * complete, and how many bytes did it take?"; bytes after a complete request (pipelining) are
 * left unconsumed for the next one. Caps: the whole head (request line, headers, CRLFs) must
 * fit in max_header_bytes (HTTP_PARSE_E_HEADER_TOO_LARGE, answer 431); the body must fit in
 * max_body_bytes, checked from Content-Length before any body byte and at every chunk header
 * of a chunked body (HTTP_PARSE_E_BODY_TOO_LARGE, answer 413), so nothing past the cap is
 * ever buffered. Header names must be RFC 9110 tokens (`Host : a` is refused, 400) and values
 * are trimmed of SP/HTAB. Trailers of chunked bodies are parsed and dropped (never stored;
 * their time is bounded by the body timeout). Owner thread only. */
#ifndef DROVER_NET_HTTP_PARSE_H
#define DROVER_NET_HTTP_PARSE_H
#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "net/http_server.h"

enum http_parse_err {
    HTTP_PARSE_E_BAD_REQUEST = -5101,      /* malformed; answer 400 */
    HTTP_PARSE_E_HEADER_TOO_LARGE = -5102, /* head over max_header_bytes; answer 431 */
    HTTP_PARSE_E_BODY_TOO_LARGE = -5103,   /* body over max_body_bytes; answer 413 */
};

struct http_parse_span; /* internal */

struct http_parser {
    llhttp_t ll;
    struct http_request *req; /* borrowed: the request being filled */
    size_t max_header_bytes;
    size_t max_body_bytes;
    size_t head_bytes;             /* head bytes fed so far (request line to blank line) */
    struct buf head;               /* target, names and values as they arrive */
    struct http_parse_span *spans; /* owned; one per header */
    size_t n_spans, cap_spans;
    size_t url_len;
    struct buf body;   /* chunked or large bodies, copied to the arena at the end */
    char *body_direct; /* small Content-Length bodies go straight to the arena */
    size_t body_len;
    int err;         /* first error seen, 0 if none */
    bool is_started; /* a byte of the current request was fed */
    bool is_head_done;
    bool is_done;
    bool in_field;
    bool expects_continue;
};

/* Prepares p; caps of 0 mean "nothing allowed" and are the caller's business. */
void http_parser_init(struct http_parser *p, size_t max_header_bytes, size_t max_body_bytes);
/* Releases what p owns (not the request). p may be re-initialised afterwards. */
void http_parser_free(struct http_parser *p);
/* Starts a new request: req (borrowed until the request is complete or p is freed) must have
 * an initialised arena; its fields are overwritten. Must be called before the first feed and
 * after every complete request. Pending bytes from the previous feed are the caller's. */
void http_parser_begin(struct http_parser *p, struct http_request *req);
/* Feeds len bytes. Returns 0 and sets *consumed (bytes used, <= len) and *complete (the
 * request is complete and filled in; bytes after it are not consumed), or a negative
 * HTTP_PARSE_E_* code, after which p only answers errors until the next begin. */
int http_parser_feed(struct http_parser *p, const char *data, size_t len, size_t *consumed,
                     bool *complete) WUR;
bool http_parser_is_started(const struct http_parser *p);
bool http_parser_is_head_done(const struct http_parser *p);
/* True once the head is done if the client sent `Expect: 100-continue` and body is pending. */
bool http_parser_expects_continue(const struct http_parser *p);
/* 400, 413 or 431 for an HTTP_PARSE_E_* code (400 for anything else). */
int http_parse_status(int err);

#endif
