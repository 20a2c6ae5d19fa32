/* http_parse — llhttp with caps. Invariant: nothing a client sends is held beyond the caps:
 * llhttp sees at most the bytes that still fit in max_header_bytes while the head is being
 * read, the body cap is checked before body bytes are copied (Content-Length up front, each
 * chunk size at its header), and llhttp is paused at the end of each message so pipelined
 * bytes stay with the caller. Names/values arrive in pieces and are gathered in `head`, then
 * copied once into the request arena when the head completes. No libuv; owner thread only. */
#include "net/http_parse.h"

#include <string.h>

#include "base/mem.h"

enum { BODY_DIRECT_MAX = 16 * 1024, HEAD_KEEP_BYTES = 4096, SPANS_KEEP = 32 };

struct http_parse_span {
    size_t name_off, name_len, value_off, value_len;
};

static struct http_parser *from_ll(llhttp_t *ll)
{
    return ll->data;
}

static int fail(struct http_parser *p, int err)
{
    if (!p->err) p->err = err;
    return -1;
}

static int head_append(struct http_parser *p, const char *at, size_t len)
{
    if (buf_append(&p->head, at, len)) return fail(p, HTTP_PARSE_E_HEADER_TOO_LARGE);
    return 0;
}

static int on_message_begin(llhttp_t *ll)
{
    struct http_parser *p = from_ll(ll);
    p->is_started = true;
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    return head_append(from_ll(ll), at, len);
}

static int on_url_complete(llhttp_t *ll)
{
    struct http_parser *p = from_ll(ll);
    p->url_len = p->head.len;
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct http_parser *p = from_ll(ll);
    if (p->is_head_done) return 0; /* trailers: dropped */
    if (!p->in_field) {
        if (p->n_spans == p->cap_spans) {
            p->cap_spans = p->cap_spans ? p->cap_spans * 2 : 16;
            p->spans = xrealloc(p->spans, p->cap_spans * sizeof *p->spans);
        }
        struct http_parse_span *s = &p->spans[p->n_spans++];
        s->name_off = p->head.len;
        s->name_len = s->value_len = 0;
        s->value_off = 0;
        p->in_field = true;
    }
    p->spans[p->n_spans - 1].name_len += len;
    return head_append(p, at, len);
}

static int on_header_field_complete(llhttp_t *ll)
{
    struct http_parser *p = from_ll(ll);
    if (p->is_head_done) return 0;
    p->in_field = false;
    p->spans[p->n_spans - 1].value_off = p->head.len;
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct http_parser *p = from_ll(ll);
    if (p->is_head_done) return 0; /* trailers: dropped */
    p->spans[p->n_spans - 1].value_len += len;
    return head_append(p, at, len);
}

static int on_headers_complete(llhttp_t *ll)
{
    struct http_parser *p = from_ll(ll);
    struct http_request *r = p->req;
    if (ll->http_major != 1 || ll->method == HTTP_CONNECT) return fail(p, HTTP_PARSE_E_BAD_REQUEST);
    /* Upgrade offers (curl's h2c) are declined by answering in HTTP/1.1 as usual. */
    ll->upgrade = 0;
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->max_body_bytes)
        return fail(p, HTTP_PARSE_E_BODY_TOO_LARGE);

    /* One copy of everything into the arena; views point into it. */
    char *copy = arena_strndup(&r->arena, p->head.p ? p->head.p : "", p->head.len);
    struct http_header *h = p->n_spans ? arena_alloc(&r->arena, p->n_spans * sizeof *h) : NULL;
    if (!copy || (p->n_spans && !h)) return fail(p, HTTP_PARSE_E_HEADER_TOO_LARGE);
    for (size_t i = 0; i < p->n_spans; i++) {
        const struct http_parse_span *s = &p->spans[i];
        h[i].name = strv_make(copy + s->name_off, s->name_len);
        if (!strv_is_token(h[i].name)) return fail(p, HTTP_PARSE_E_BAD_REQUEST);
        h[i].value = strv_trim(strv_make(copy + s->value_off, s->value_len));
    }
    r->headers = h;
    r->n_headers = p->n_spans;
    r->method = strv_from_cstr(llhttp_method_name((llhttp_method_t)ll->method));
    r->target = strv_make(copy, p->url_len);
    long q = strv_index(r->target, '?');
    r->path = q < 0 ? r->target : strv_sub(r->target, 0, (size_t)q);
    r->query = q < 0 ? strv_make(copy + p->url_len, 0)
                     : strv_sub(r->target, (size_t)q + 1, p->url_len - (size_t)q - 1);
    r->http_minor = ll->http_minor;
    if (r->target.len == 0) return fail(p, HTTP_PARSE_E_BAD_REQUEST);

    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length <= BODY_DIRECT_MAX &&
        ll->content_length > 0) {
        p->body_direct = arena_alloc(&r->arena, (size_t)ll->content_length + 1);
        if (!p->body_direct) return fail(p, HTTP_PARSE_E_BODY_TOO_LARGE);
    }
    bool has_body =
        (ll->flags & F_CHUNKED) || ((ll->flags & F_CONTENT_LENGTH) && ll->content_length);
    struct strv expect = http_request_header(r, "expect");
    p->expects_continue =
        has_body && ll->http_minor >= 1 && strv_eq_ci(expect, STRV_LIT("100-continue"));

    p->is_head_done = true;
    /* Idle connections should not keep a large scratch buffer. */
    if (p->head.cap > HEAD_KEEP_BYTES) {
        size_t max = p->head.max;
        buf_free(&p->head);
        buf_init(&p->head, max);
    }
    if (p->cap_spans > SPANS_KEEP) {
        xfree(p->spans);
        p->spans = NULL;
        p->cap_spans = 0;
    }
    return 0;
}

static int on_chunk_header(llhttp_t *ll)
{
    struct http_parser *p = from_ll(ll);
    if (ll->content_length > p->max_body_bytes - p->body_len)
        return fail(p, HTTP_PARSE_E_BODY_TOO_LARGE);
    return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct http_parser *p = from_ll(ll);
    if (len > p->max_body_bytes - p->body_len) return fail(p, HTTP_PARSE_E_BODY_TOO_LARGE);
    if (p->body_direct) {
        memcpy(p->body_direct + p->body_len, at, len);
    } else if (buf_append(&p->body, at, len)) {
        return fail(p, HTTP_PARSE_E_BODY_TOO_LARGE);
    }
    p->body_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    struct http_parser *p = from_ll(ll);
    struct http_request *r = p->req;
    if (p->body_direct) {
        p->body_direct[p->body_len] = '\0';
        r->body = strv_make(p->body_direct, p->body_len);
    } else if (p->body.len) {
        r->body = arena_strv(&r->arena, buf_view(&p->body));
        buf_free(&p->body);
        buf_init(&p->body, p->max_body_bytes);
        if (!r->body.p) return fail(p, HTTP_PARSE_E_BODY_TOO_LARGE);
    } else {
        r->body = strv_make("", 0);
    }
    r->keep_alive = llhttp_should_keep_alive(ll) != 0;
    p->is_done = true;
    return HPE_PAUSED; /* keep pipelined bytes for the next request */
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_parser_init(struct http_parser *p, size_t max_header_bytes, size_t max_body_bytes)
{
    memset(p, 0, sizeof *p);
    llhttp_init(&p->ll, HTTP_REQUEST, &settings);
    p->ll.data = p;
    p->max_header_bytes = max_header_bytes;
    p->max_body_bytes = max_body_bytes;
    buf_init(&p->head, max_header_bytes);
    buf_init(&p->body, max_body_bytes);
}

void http_parser_free(struct http_parser *p)
{
    buf_free(&p->head);
    buf_free(&p->body);
    xfree(p->spans);
    p->spans = NULL;
    p->n_spans = p->cap_spans = 0;
    p->req = NULL;
}

void http_parser_begin(struct http_parser *p, struct http_request *req)
{
    if (llhttp_get_errno(&p->ll) == HPE_PAUSED) {
        llhttp_resume(&p->ll);
    } else if (llhttp_get_errno(&p->ll) != HPE_OK) {
        llhttp_init(&p->ll, HTTP_REQUEST, &settings);
        p->ll.data = p;
    }
    p->req = req;
    p->head_bytes = 0;
    buf_reset(&p->head);
    p->n_spans = 0;
    p->url_len = 0;
    buf_reset(&p->body);
    p->body_direct = NULL;
    p->body_len = 0;
    p->err = 0;
    p->is_started = p->is_head_done = p->is_done = p->in_field = false;
    p->expects_continue = false;
    req->method = req->target = req->path = req->query = STRV_NULL;
    req->headers = NULL;
    req->n_headers = 0;
    req->body = STRV_NULL;
    req->http_minor = 1;
    req->keep_alive = false;
}

static int map_llhttp(struct http_parser *p, llhttp_errno_t e)
{
    if (p->err) return p->err;
    (void)e;
    return HTTP_PARSE_E_BAD_REQUEST;
}

int http_parser_feed(struct http_parser *p, const char *data, size_t len, size_t *consumed,
                     bool *complete)
{
    *consumed = 0;
    *complete = false;
    if (p->err) return p->err;
    if (p->is_done) return 0;
    size_t off = 0;
    if (len) p->is_started = true;
    while (off < len) {
        size_t n = len - off;
        if (!p->is_head_done) {
            /* llhttp never sees a head byte past the cap. */
            size_t room = p->max_header_bytes - p->head_bytes;
            if (room == 0) return p->err = HTTP_PARSE_E_HEADER_TOO_LARGE;
            if (n > room) n = room;
        }
        bool was_head = !p->is_head_done;
        llhttp_errno_t e = llhttp_execute(&p->ll, data + off, n);
        size_t used = n;
        if (e == HPE_PAUSED && p->is_done) {
            used = (size_t)(llhttp_get_error_pos(&p->ll) - (data + off));
        } else if (e != HPE_OK) {
            return p->err = map_llhttp(p, e);
        }
        if (was_head && !p->is_head_done) p->head_bytes += used;
        off += used;
        if (p->is_done) {
            *complete = true;
            break;
        }
        if (!p->is_head_done && p->head_bytes >= p->max_header_bytes)
            return p->err = HTTP_PARSE_E_HEADER_TOO_LARGE;
    }
    *consumed = off;
    return 0;
}

bool http_parser_is_started(const struct http_parser *p)
{
    return p->is_started;
}
bool http_parser_is_head_done(const struct http_parser *p)
{
    return p->is_head_done;
}
bool http_parser_expects_continue(const struct http_parser *p)
{
    return p->expects_continue && !p->is_done;
}

struct strv http_request_header(const struct http_request *req, const char *name)
{
    struct strv n = strv_from_cstr(name);
    for (size_t i = 0; i < req->n_headers; i++)
        if (strv_eq_ci(req->headers[i].name, n)) return req->headers[i].value;
    return STRV_NULL;
}

int http_parse_status(int err)
{
    switch (err) {
    case HTTP_PARSE_E_HEADER_TOO_LARGE:
        return 431;
    case HTTP_PARSE_E_BODY_TOO_LARGE:
        return 413;
    default:
        return 400;
    }
}
