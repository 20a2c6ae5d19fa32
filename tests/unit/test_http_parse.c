/* Unit tests for net/http_parse: llhttp quirks, caps, chunked, keep-alive, pipelining and
 * split invariance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/arena.h"
#include "base/mem.h"
#include "net/http_parse.h"

struct fixture {
    struct http_parser p;
    struct http_request req;
};

static void fx_init(struct fixture *f, size_t max_head, size_t max_body)
{
    memset(f, 0, sizeof *f);
    arena_init(&f->req.arena, 4096, max_head * 2 + max_body + 4096);
    http_parser_init(&f->p, max_head, max_body);
    http_parser_begin(&f->p, &f->req);
}

static void fx_next(struct fixture *f)
{
    arena_reset(&f->req.arena);
    http_parser_begin(&f->p, &f->req);
}

static void fx_free(struct fixture *f)
{
    http_parser_free(&f->p);
    arena_free(&f->req.arena);
}

/* Feeds s in pieces of `step` bytes (0 = all at once); returns the feed result and sets
 * *used to bytes consumed until completion. */
static int feed_steps(struct fixture *f, const char *s, size_t len, size_t step, size_t *used,
                      bool *complete)
{
    size_t off = 0;
    *complete = false;
    while (off < len) {
        size_t n = step ? step : len;
        if (n > len - off) n = len - off;
        size_t c = 0;
        int rc = http_parser_feed(&f->p, s + off, n, &c, complete);
        if (rc) return rc;
        off += c;
        if (*complete) break;
        assert_int_equal(c, n);
    }
    *used = off;
    return 0;
}

static int feed_str(struct fixture *f, const char *s, size_t *used, bool *complete)
{
    return feed_steps(f, s, strlen(s), 0, used, complete);
}

static void test_simple_get(void **state)
{
    struct fixture f;
    fx_init(&f, 1024, 1024);
    const char *s = "GET /v1/models?x=1&y=2 HTTP/1.1\r\nHost: a\r\nX-Thing:\t  v a l \t\r\n\r\n";
    size_t used;
    bool done;
    assert_int_equal(feed_str(&f, s, &used, &done), 0);
    assert_true(done);
    assert_int_equal(used, strlen(s));
    assert_true(strv_eq_cstr(f.req.method, "GET"));
    assert_true(strv_eq_cstr(f.req.target, "/v1/models?x=1&y=2"));
    assert_true(strv_eq_cstr(f.req.path, "/v1/models"));
    assert_true(strv_eq_cstr(f.req.query, "x=1&y=2"));
    assert_int_equal(f.req.n_headers, 2);
    assert_true(strv_eq_cstr(http_request_header(&f.req, "x-thing"), "v a l"));
    assert_true(strv_eq_cstr(http_request_header(&f.req, "HOST"), "a"));
    assert_null(http_request_header(&f.req, "missing").p);
    assert_true(f.req.keep_alive);
    assert_int_equal(f.req.http_minor, 1);
    assert_int_equal(f.req.body.len, 0);
    assert_non_null(f.req.body.p);
    fx_free(&f);
}

static void test_space_before_colon_refused(void **state)
{
    struct fixture f;
    fx_init(&f, 1024, 1024);
    size_t used;
    bool done;
    int rc = feed_str(&f, "GET / HTTP/1.1\r\nHost : a\r\n\r\n", &used, &done);
    assert_int_equal(rc, HTTP_PARSE_E_BAD_REQUEST);
    assert_int_equal(http_parse_status(rc), 400);
    /* Errors are sticky until the next begin. */
    size_t c;
    assert_int_equal(http_parser_feed(&f.p, "x", 1, &c, &done), HTTP_PARSE_E_BAD_REQUEST);
    fx_free(&f);
}

static void test_garbage_refused(void **state)
{
    const char *bad[] = {
        "HELLO\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nA\x01: b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fixture f;
        fx_init(&f, 1024, 1024);
        size_t used;
        bool done;
        int rc = feed_str(&f, bad[i], &used, &done);
        if (rc != HTTP_PARSE_E_BAD_REQUEST) fail_msg("case %zu: rc %d", i, rc);
        fx_free(&f);
    }
}

static void test_header_cap(void **state)
{
    struct fixture f;
    fx_init(&f, 64, 1024);
    char s[256];
    size_t used;
    bool done;
    /* Exactly 64 bytes of head is fine. */
    const char *ok = "GET / HTTP/1.1\r\nX: 01234567890123456789012345678901234567890\r\n\r\n";
    assert_int_equal(strlen(ok), 64);
    assert_int_equal(feed_str(&f, ok, &used, &done), 0);
    assert_true(done);
    fx_next(&f);
    snprintf(s, sizeof s, "GET / HTTP/1.1\r\nX: %060d\r\n\r\n", 0);
    assert_int_equal(feed_str(&f, s, &used, &done), HTTP_PARSE_E_HEADER_TOO_LARGE);
    assert_int_equal(http_parse_status(HTTP_PARSE_E_HEADER_TOO_LARGE), 431);
    fx_free(&f);

    /* Byte by byte: the error comes as the 65th byte arrives, not later. */
    fx_init(&f, 64, 1024);
    size_t fed = 0;
    int rc = 0;
    for (; fed < strlen(s) && rc == 0; fed++) {
        size_t c;
        rc = http_parser_feed(&f.p, s + fed, 1, &c, &done);
    }
    assert_int_equal(rc, HTTP_PARSE_E_HEADER_TOO_LARGE);
    assert_true(fed <= 65);
    fx_free(&f);
}

static void test_body_cap_content_length(void **state)
{
    struct fixture f;
    fx_init(&f, 1024, 10);
    size_t used;
    bool done;
    /* Refused from the header alone, before any body byte. */
    int rc = feed_str(&f, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", &used, &done);
    assert_int_equal(rc, HTTP_PARSE_E_BODY_TOO_LARGE);
    assert_int_equal(http_parse_status(rc), 413);
    fx_free(&f);

    fx_init(&f, 1024, 10);
    assert_int_equal(
        feed_str(&f, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", &used, &done), 0);
    assert_true(done);
    assert_true(strv_eq_cstr(f.req.body, "0123456789"));
    fx_free(&f);
}

static void test_body_cap_chunked(void **state)
{
    struct fixture f;
    fx_init(&f, 1024, 10);
    size_t used;
    bool done;
    /* 6 + 5 > 10: refused at the second chunk header, before its data. */
    const char *s = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\n";
    assert_int_equal(feed_str(&f, s, &used, &done), HTTP_PARSE_E_BODY_TOO_LARGE);
    assert_true(f.p.body_len <= 10);
    fx_free(&f);
    /* A single giant chunk size is refused too. */
    fx_init(&f, 1024, 10);
    s = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n";
    assert_int_equal(feed_str(&f, s, &used, &done), HTTP_PARSE_E_BODY_TOO_LARGE);
    fx_free(&f);
}

static void test_chunked_decoding(void **state)
{
    struct fixture f;
    fx_init(&f, 1024, 1024);
    size_t used;
    bool done;
    const char *s = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: t\r\n\r\n";
    assert_int_equal(feed_str(&f, s, &used, &done), 0);
    assert_true(done);
    assert_int_equal(used, strlen(s));
    assert_true(strv_eq_cstr(f.req.body, "hello world"));
    assert_int_equal(f.req.body.p[f.req.body.len], '\0');
    fx_free(&f);
}

static void test_keep_alive(void **state)
{
    struct {
        const char *s;
        bool keep;
        int minor;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", true, 1},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false, 1},
        {"GET / HTTP/1.0\r\n\r\n", false, 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture f;
        fx_init(&f, 1024, 1024);
        size_t used;
        bool done;
        assert_int_equal(feed_str(&f, cases[i].s, &used, &done), 0);
        assert_true(done);
        if (f.req.keep_alive != cases[i].keep) fail_msg("case %zu keep-alive", i);
        assert_int_equal(f.req.http_minor, cases[i].minor);
        fx_free(&f);
    }
}

static void test_pipelining(void **state)
{
    struct fixture f;
    fx_init(&f, 1024, 1024);
    const char *s = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /b HTTP/1.1\r\n\r\n"
                    "GET /c HTTP/1.1\r\n\r\nGET /d";
    size_t len = strlen(s), off = 0, used;
    bool done;
    const char *paths[] = {"/a", "/b", "/c"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(http_parser_feed(&f.p, s + off, len - off, &used, &done), 0);
        assert_true(done);
        assert_true(strv_eq_cstr(f.req.path, paths[i]));
        if (i == 0) assert_true(strv_eq_cstr(f.req.body, "abc"));
        off += used;
        fx_next(&f);
    }
    assert_int_equal(http_parser_feed(&f.p, s + off, len - off, &used, &done), 0);
    assert_false(done);
    assert_int_equal(used, len - off);
    assert_true(http_parser_is_started(&f.p));
    assert_false(http_parser_is_head_done(&f.p));
    fx_free(&f);
}

static void test_expect_continue(void **state)
{
    struct fixture f;
    fx_init(&f, 1024, 1024);
    size_t used;
    bool done;
    assert_int_equal(
        feed_str(&f, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", &used,
                 &done),
        0);
    assert_false(done);
    assert_true(http_parser_is_head_done(&f.p));
    assert_true(http_parser_expects_continue(&f.p));
    assert_int_equal(feed_str(&f, "hi", &used, &done), 0);
    assert_true(done);
    assert_false(http_parser_expects_continue(&f.p));
    fx_free(&f);
}

/* Every split of the same bytes into two or three pieces yields the same request. */
static void test_split_invariance(void **state)
{
    const char *s = "POST /v1/chat?q=1 HTTP/1.1\r\nHost: h\r\nA-B:  x y \r\n"
                    "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                    "GET /next HTTP/1.1\r\n\r\n";
    size_t len = strlen(s);
    size_t first_len = strlen(s) - strlen("GET /next HTTP/1.1\r\n\r\n");
    for (size_t i = 1; i < len; i++) {
        for (size_t j = i; j < len; j += 7) {
            struct fixture f;
            fx_init(&f, 1024, 1024);
            size_t cuts[3] = {i, j, len};
            size_t off = 0, used;
            bool done = false;
            for (int k = 0; k < 3 && !done; k++) {
                if (cuts[k] <= off) continue;
                assert_int_equal(http_parser_feed(&f.p, s + off, cuts[k] - off, &used, &done), 0);
                off += used;
                if (!done) assert_int_equal(off, cuts[k]);
            }
            assert_true(done);
            assert_int_equal(off, first_len);
            assert_true(strv_eq_cstr(f.req.target, "/v1/chat?q=1"));
            assert_true(strv_eq_cstr(f.req.body, "abcde"));
            assert_int_equal(f.req.n_headers, 3);
            assert_true(strv_eq_cstr(http_request_header(&f.req, "a-b"), "x y"));
            fx_free(&f);
        }
    }
    /* Byte by byte too. */
    struct fixture f;
    fx_init(&f, 1024, 1024);
    size_t used;
    bool done;
    assert_int_equal(feed_steps(&f, s, len, 1, &used, &done), 0);
    assert_true(done);
    assert_int_equal(used, first_len);
    assert_true(strv_eq_cstr(f.req.body, "abcde"));
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_space_before_colon_refused),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_header_cap),
        cmocka_unit_test(test_body_cap_content_length),
        cmocka_unit_test(test_body_cap_chunked),
        cmocka_unit_test(test_chunked_decoding),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_split_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
