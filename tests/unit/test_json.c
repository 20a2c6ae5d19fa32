/* test_json — the strict json-c wrapper: what it refuses, the depth cap, typed getters, and
 * json_append_str round-tripping through the parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"

static int parse_code(const char *p, size_t len, int depth)
{
    struct gw_error err = {0};
    struct json_object *o = json_parse_strict(p, len, depth, &err);
    if (o) {
        json_object_put(o);
        return 0;
    }
    assert_int_not_equal(err.code, 0);
    assert_true(err.msg[0] != '\0');
    return err.code;
}

#define CODE(lit) parse_code((lit), sizeof(lit) - 1, JSON_DEFAULT_MAX_DEPTH)

static void test_accepts_json(void **state)
{
    (void)state;
    assert_int_equal(
        CODE("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"), 0);
    assert_int_equal(CODE("[]"), 0);
    assert_int_equal(CODE("\"s\""), 0);
    /* Values with no closing byte at the very end of the body. */
    assert_int_equal(CODE("1"), 0);
    assert_int_equal(CODE("-0.5e-3"), 0);
    assert_int_equal(CODE("true"), 0);
    assert_int_equal(CODE("false"), 0);
    assert_int_equal(CODE("[null,1E5,-0,0.25]"), 0);
    assert_int_equal(CODE("\"\\u0000\\ud83d\\ude00\\/\""), 0);
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    assert_int_equal(CODE("{} \t\r\n"), 0);
    assert_int_equal(CODE(" \n{}"), 0);
    assert_int_equal(CODE("1 \n"), 0);
    assert_int_equal(CODE("{} x"), GW_E_PARSE);
    assert_int_equal(CODE("{}{}"), GW_E_PARSE);
    assert_int_equal(CODE("[1]]"), GW_E_PARSE);
    assert_int_equal(CODE("1 2"), GW_E_PARSE);
    assert_int_equal(CODE("\"a\"\"b\""), GW_E_PARSE);
    assert_int_equal(CODE("{}\f"), GW_E_PARSE);
}

static void test_refuses_non_json(void **state)
{
    (void)state;
    const char *bad[] = {
        "{'a':1}",     "['a']",  "{\"a\":1,}", "[1,]",      "[01]",       "[1.]",
        "[.5]",        "[+1]",   "[1e]",       "[-]",       "[NaN]",      "[Infinity]",
        "[-Infinity]", "[True]", "[nul]",      "[nulll]",   "/* c */ {}", "{} // c",
        "{a:1}",       "\"\t\"", "\"a\nb\"",   "[\"\\x\"]", "\"\\u12\"",  "{\"a\"}",
        "{\"a\" 1}",   "[1 2]",  "{",          "[",         "\"open",     "{\"a\":",
        "tru",         "-",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_code(bad[i], strlen(bad[i]), JSON_DEFAULT_MAX_DEPTH);
        if (rc != GW_E_PARSE) fail_msg("accepted or wrong code %d: %s", rc, bad[i]);
    }
}

static void test_nul_in_member_name(void **state)
{
    (void)state;
    /* json-c would read this key as "model": an ambiguity with the node's parser, refused. */
    assert_int_equal(CODE("{\"model\\u0000x\":\"m\"}"), GW_E_PARSE);
    assert_int_equal(CODE("{\"a\":{\"\\u0000\" :1}}"), GW_E_PARSE);
    /* In a value it is kept whole. */
    assert_int_equal(CODE("{\"content\":\"a\\u0000b\"}"), 0);
    assert_int_equal(CODE("[\"\\u0000\", 1]"), 0);
    assert_int_equal(CODE("{\"k\\\\u0000\":1}"), 0); /* an escaped backslash, then text */
}

static void test_empty_body(void **state)
{
    (void)state;
    assert_int_equal(parse_code("", 0, 8), GW_E_PARSE);
    assert_int_equal(parse_code(NULL, 0, 8), GW_E_PARSE);
    assert_int_equal(CODE("   \r\n"), GW_E_PARSE);
    /* json-c's null is a NULL object: refused with its own reason, not mistaken for success. */
    assert_int_equal(CODE("null"), GW_E_INVALID);
    assert_int_equal(CODE(" null "), GW_E_INVALID);
}

static void test_nul_byte(void **state)
{
    (void)state;
    assert_int_equal(CODE("{\"a\":\"b\0c\"}"), GW_E_PARSE);
    assert_int_equal(CODE("{}\0"), GW_E_PARSE);
    assert_int_equal(CODE("\0{}"), GW_E_PARSE);
    assert_int_equal(CODE("1\0"), GW_E_PARSE);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_int_equal(CODE("\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e\""), 0);
    assert_int_equal(CODE("{\"\xc3\xa9\":\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"}"), 0);
    const char *bad[] = {
        "\"\xff\"",             /* never valid */
        "\"\x80\"",             /* lone continuation */
        "\"\xc3\"",             /* cut short at the end */
        "\"\xc3x\"",            /* cut short */
        "\"\xc0\xaf\"",         /* overlong '/' */
        "\"\xe0\x80\xaf\"",     /* overlong */
        "\"\xf0\x80\x80\xaf\"", /* overlong */
        "\"\xed\xa0\x80\"",     /* UTF-16 surrogate */
        "\"\xf4\x90\x80\x80\"", /* past U+10FFFF */
        "\"\xf5\x80\x80\x80\"",
        "{\"\xff\":1}", /* in a key */
        "[\xc3\xa9]",   /* outside a string */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_code(bad[i], strlen(bad[i]), JSON_DEFAULT_MAX_DEPTH);
        if (rc != GW_E_PARSE) fail_msg("accepted or wrong code %d for case %zu", rc, i);
    }
}

static void nest(char *out, int depth, const char *open, const char *close)
{
    size_t o = 0;
    for (int i = 0; i < depth; i++) out[o++] = open[0];
    for (int i = 0; i < depth; i++) out[o++] = close[0];
    out[o] = '\0';
}

static void test_depth_cap(void **state)
{
    (void)state;
    char s[2048];
    /* max_depth counts nesting levels: exactly max is fine, one more is GW_E_DEPTH. */
    for (int max = 1; max <= 40; max += 13) {
        nest(s, max, "[", "]");
        assert_int_equal(parse_code(s, strlen(s), max), 0);
        nest(s, max + 1, "[", "]");
        assert_int_equal(parse_code(s, strlen(s), max), GW_E_DEPTH);
        /* {"k":{"k":{}}}: max wrappers around an empty object is max + 1 levels. */
        char t[2048];
        size_t o = 0;
        for (int i = 0; i < max; i++) o += (size_t)snprintf(t + o, sizeof t - o, "{\"k\":");
        o += (size_t)snprintf(t + o, sizeof t - o, "{}");
        for (int i = 0; i < max; i++) t[o++] = '}';
        t[o] = '\0';
        assert_int_equal(parse_code(t, o, max + 1), 0);
        assert_int_equal(parse_code(t, o, max), GW_E_DEPTH);
    }
    nest(s, JSON_DEFAULT_MAX_DEPTH, "[", "]");
    assert_int_equal(parse_code(s, strlen(s), JSON_DEFAULT_MAX_DEPTH), 0);
    nest(s, 1000, "[", "]");
    assert_int_equal(parse_code(s, strlen(s), JSON_DEFAULT_MAX_DEPTH), GW_E_DEPTH);
    /* A deep but unfinished body is refused by depth, before the end is reached. */
    assert_int_equal(parse_code(s, 500, JSON_DEFAULT_MAX_DEPTH), GW_E_DEPTH);
}

static void test_err_may_be_null(void **state)
{
    (void)state;
    assert_null(json_parse_strict("{", 1, 8, NULL));
    assert_null(json_parse_strict("[[[]]]", 6, 2, NULL));
    struct json_object *o = json_parse_strict("{}", 2, 8, NULL);
    assert_non_null(o);
    json_object_put(o);
}

static const char getters_doc[] =
    "{\"s\":\"str\",\"z\":\"a\\u0000b\",\"i\":42,\"neg\":-7,\"d\":1.5,"
    "\"b\":true,\"o\":{\"x\":1},\"a\":[1,2],\"n\":null}";

static void test_getters(void **state)
{
    (void)state;
    struct json_object *root = json_parse_strict(getters_doc, sizeof getters_doc - 1, 8, NULL);
    assert_non_null(root);
    struct strv sv = STRV_LIT("untouched");
    int64_t i = 99;
    double d = 9.5;
    bool b = false;
    struct json_object *o = NULL;

    assert_int_equal(json_get_str(root, "s", &sv), 0);
    assert_true(strv_eq_cstr(sv, "str"));
    assert_int_equal(json_get_str(root, "z", &sv), 0);
    assert_int_equal(sv.len, 3); /* embedded NUL kept, length honest */
    assert_int_equal(json_get_int(root, "i", &i), 0);
    assert_int_equal(i, 42);
    assert_int_equal(json_get_int(root, "neg", &i), 0);
    assert_int_equal(i, -7);
    assert_int_equal(json_get_num(root, "d", &d), 0);
    assert_true(d == 1.5);
    assert_int_equal(json_get_num(root, "i", &d), 0); /* int is a number */
    assert_true(d == 42.0);
    assert_int_equal(json_get_bool(root, "b", &b), 0);
    assert_true(b);
    assert_int_equal(json_get_obj(root, "o", &o), 0);
    assert_int_equal(json_get_int(o, "x", &i), 0);
    assert_int_equal(i, 1);
    assert_int_equal(json_get_arr(root, "a", &o), 0);
    assert_int_equal(json_object_array_length(o), 2);
    assert_true(json_is_null(root, "n"));
    assert_false(json_is_null(root, "s"));
    assert_false(json_is_null(root, "absent"));

    /* Absent vs wrong type, and out untouched on both. */
    sv = STRV_LIT("untouched");
    i = 99;
    d = 9.5;
    b = false;
    o = NULL;
    assert_int_equal(json_get_str(root, "absent", &sv), GW_E_NOTFOUND);
    assert_int_equal(json_get_str(root, "i", &sv), GW_E_INVALID);
    assert_int_equal(json_get_str(root, "n", &sv), GW_E_INVALID);
    assert_true(strv_eq_cstr(sv, "untouched"));
    assert_int_equal(json_get_int(root, "absent", &i), GW_E_NOTFOUND);
    assert_int_equal(json_get_int(root, "d", &i), GW_E_INVALID); /* integers only */
    assert_int_equal(json_get_int(root, "s", &i), GW_E_INVALID);
    assert_int_equal(i, 99);
    assert_int_equal(json_get_num(root, "absent", &d), GW_E_NOTFOUND);
    assert_int_equal(json_get_num(root, "s", &d), GW_E_INVALID);
    assert_int_equal(json_get_num(root, "b", &d), GW_E_INVALID);
    assert_true(d == 9.5);
    assert_int_equal(json_get_bool(root, "absent", &b), GW_E_NOTFOUND);
    assert_int_equal(json_get_bool(root, "i", &b), GW_E_INVALID);
    assert_int_equal(json_get_bool(root, "s", &b), GW_E_INVALID);
    assert_false(b);
    assert_int_equal(json_get_obj(root, "absent", &o), GW_E_NOTFOUND);
    assert_int_equal(json_get_obj(root, "a", &o), GW_E_INVALID);
    assert_int_equal(json_get_obj(root, "n", &o), GW_E_INVALID);
    assert_int_equal(json_get_arr(root, "absent", &o), GW_E_NOTFOUND);
    assert_int_equal(json_get_arr(root, "o", &o), GW_E_INVALID);
    assert_null(o);

    /* Getters on something that is not an object. */
    struct json_object *arr = NULL;
    assert_int_equal(json_get_arr(root, "a", &arr), 0);
    assert_int_equal(json_get_int(arr, "0", &i), GW_E_INVALID);
    assert_int_equal(json_get_int(NULL, "x", &i), GW_E_INVALID);
    assert_false(json_is_null(arr, "x"));
    json_object_put(root);
}

/* Appends s as a literal, wraps it in an array, parses it back and compares the bytes. */
static void roundtrip(const char *s, size_t len)
{
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(buf_append(&b, "[", 1), 0);
    assert_int_equal(json_append_str(&b, s, len), 0);
    assert_int_equal(buf_append(&b, "]", 1), 0);
    struct gw_error err = {0};
    struct json_object *root = json_parse_strict(b.p, b.len, 4, &err);
    if (!root) fail_msg("did not parse back: %s (%s)", b.p, err.msg);
    struct json_object *v = json_object_array_get_idx(root, 0);
    assert_true(json_object_is_type(v, json_type_string));
    assert_int_equal((size_t)json_object_get_string_len(v), len);
    assert_memory_equal(json_object_get_string(v), s, len);
    json_object_put(root);
    buf_free(&b);
}

static void test_append_str_roundtrip(void **state)
{
    (void)state;
    char all[127];
    for (int c = 1; c <= 0x7f; c++) {
        char one = (char)c;
        roundtrip(&one, 1);
        all[c - 1] = (char)c;
    }
    roundtrip(all, sizeof all);
    roundtrip("", 0);
    roundtrip(NULL, 0);
    const char utf8[] = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf";
    roundtrip(utf8, sizeof utf8 - 1);
    const char mixed[] = "\"quoted\"\\back\\slash\n\r\t\b\f\x01\x1f\x7f</script>\xc3\xa9";
    roundtrip(mixed, sizeof mixed - 1);
}

static void test_append_str_escapes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 256);
    assert_int_equal(json_append_str(&b, "a\"b\\c\nd\x01\x1f", 9), 0);
    assert_string_equal(b.p, "\"a\\\"b\\\\c\\nd\\u0001\\u001f\"");
    buf_free(&b);
}

/* json_put_str writes exactly json_str_len bytes, the same bytes json_append_str appends. */
static void put_same(const char *s, size_t len)
{
    struct buf want;
    buf_init(&want, 1 << 16);
    assert_int_equal(json_append_str(&want, s, len), 0);
    size_t n = json_str_len(s, len);
    assert_int_equal(n, want.len);
    char *got = xmalloc(n + 1);
    got[n] = '#';
    assert_int_equal(json_put_str(got, s, len), n);
    assert_memory_equal(got, want.p, n);
    assert_int_equal(got[n], '#');
    xfree(got);
    buf_free(&want);
}

static void test_put_str(void **state)
{
    (void)state;
    char all[256];
    for (int c = 0; c <= 0xff; c++) {
        char one = (char)c;
        put_same(&one, 1);
        all[c] = (char)c;
    }
    put_same(all, sizeof all);
    put_same("", 0);
    put_same(NULL, 0);
    const char mixed[] = "\"q\"\\b\n\r\t\b\f\x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x98\x80 plain run";
    put_same(mixed, sizeof mixed - 1);
}

static void test_append_str_cap(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 12);
    assert_int_equal(buf_append(&b, "pre:", 4), 0);
    /* Needs 4 + 2 + 10 bytes: over the cap of 12, and b must be left exactly as it was. */
    assert_int_equal(json_append_str(&b, "\n\n\n\n\n", 5), GW_E_LIMIT);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.p, "pre:");
    assert_int_equal(json_append_str(&b, "0123456", 7), GW_E_LIMIT);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.p, "pre:");
    assert_int_equal(json_append_str(&b, "012345", 6), 0); /* exactly 12 */
    assert_string_equal(b.p, "pre:\"012345\"");
    buf_free(&b);
}

/* json_top_string_span: the top-level "model" value only, whatever surrounds it. */
static void test_top_string_span(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want; /* want NULL: not found or not a string */
        int rc;
    } rows[] = {
        {"{\"model\":\"a\"}", "\"a\"", 0},
        {"{ \"messages\": [{\"model\": \"inner\"}], \"model\" : \"outer\" }", "\"outer\"", 0},
        {"{\"x\":{\"model\":\"deep\"},\"model\":\"m\\\"q\"}", "\"m\\\"q\"", 0},
        {"{\"note\":\"\\\"model\\\": \\\"no\\\"\",\"model\":\"yes\"}", "\"yes\"", 0},
        {"{\"models\":\"b\"}", NULL, GW_E_NOTFOUND},
        {"{\"model\":5}", NULL, GW_E_INVALID},
        {"[\"model\",\"x\"]", NULL, GW_E_NOTFOUND},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t s = 0, e = 0;
        int rc = json_top_string_span(rows[i].json, strlen(rows[i].json), "model", &s, &e);
        assert_int_equal(rc, rows[i].rc);
        if (rows[i].want) {
            assert_int_equal(e - s, strlen(rows[i].want));
            assert_memory_equal(rows[i].json + s, rows[i].want, e - s);
        }
    }
}

/* The pull reader: walking an object member by member, decoded names and strings (escapes,
 * surrogate pairs, a lone surrogate, truncation to the caller's buffer), kinds, the depth cap
 * counted as json-c counts it, and the refusals. */
static void test_reader(void **state)
{
    (void)state;
    const char *text = " {\"a\\u0062\":[1,2.5,-3e2],\"s\":\"x\\n\\ud83d\\ude00\\udc00\\u00e9\","
                       "\"t\":true,\"n\":null,\"o\":{}} ";
    struct gw_error err = {0};
    struct json_reader r;
    json_reader_init(&r, text, strlen(text), 8, &err);
    assert_int_equal(json_reader_enter(&r, JSON_K_OBJECT), 0);
    char name[8], str[8];
    size_t len;
    bool more, b;
    enum json_kind k;
    assert_int_equal(json_reader_member(&r, name, sizeof name, &len, &more), 0);
    assert_true(more);
    assert_int_equal(len, 2);
    assert_memory_equal(name, "ab", 2);
    assert_int_equal(json_reader_enter(&r, JSON_K_ARRAY), 0);
    enum json_kind kinds[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(json_reader_element(&r, &more), 0);
        assert_true(more);
        assert_int_equal(json_reader_peek(&r, &kinds[i]), 0);
        assert_int_equal(json_reader_skip(&r), 0);
    }
    assert_int_equal(kinds[0], JSON_K_INT);
    assert_int_equal(kinds[1], JSON_K_DOUBLE);
    assert_int_equal(kinds[2], JSON_K_DOUBLE);
    assert_int_equal(json_reader_element(&r, &more), 0);
    assert_false(more);
    assert_int_equal(json_reader_member(&r, name, sizeof name, &len, &more), 0);
    assert_int_equal(json_reader_string(&r, str, sizeof str, &len), 0);
    /* "x\n" + U+1F600 (4 bytes) + U+FFFD (3) + U+00E9 (2) = 11 bytes, 8 kept */
    assert_int_equal(len, 11);
    assert_memory_equal(str, "x\n\xf0\x9f\x98\x80\xef\xbf", 8);
    assert_int_equal(json_reader_member(&r, name, sizeof name, &len, &more), 0);
    assert_int_equal(json_reader_bool(&r, &b), 0);
    assert_true(b);
    assert_int_equal(json_reader_member(&r, name, sizeof name, &len, &more), 0);
    assert_int_equal(json_reader_peek(&r, &k), 0);
    assert_int_equal(k, JSON_K_NULL);
    assert_int_equal(json_reader_bool(&r, &b), GW_E_PARSE); /* null is not a boolean */
    json_reader_init(&r, text, strlen(text), 8, &err);
    assert_int_equal(json_reader_skip(&r), 0);
    assert_int_equal(json_reader_end(&r), 0);

    /* depth: "[[]]" needs 2, "[[1]]" needs 3 (the scalar counts), as in json-c */
    json_reader_init(&r, "[[]]", 4, 2, &err);
    assert_int_equal(json_reader_skip(&r), 0);
    json_reader_init(&r, "[[1]]", 5, 2, &err);
    assert_int_equal(json_reader_skip(&r), GW_E_DEPTH);
    json_reader_init(&r, "[[1]]", 5, 3, &err);
    assert_int_equal(json_reader_skip(&r), 0);

    static const char *const bad[] = {
        "",      "{",          "[1,]",  "{\"a\"}",  "{\"a\":}",         "[01]",
        "[1.]",  "[-]",        "[NaN]", "['a']",    "\"\\u00\"",        "\"\\q\"",
        "[nul]", "{\"a\":1,}", "{1:2}", "\"\x01\"", "\"\xed\xa0\x80\"", "\"\xc1\x81\"",
        "[1 2]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_reader_init(&r, bad[i], strlen(bad[i]), 8, &err);
        int rc = json_reader_skip(&r);
        if (rc == 0) rc = json_reader_end(&r);
        if (rc != GW_E_PARSE) {
            print_error("case %zu '%s': rc %d\n", i, bad[i], rc);
            fail();
        }
    }
    /* the 8-bytes-at-a-time scan: a special byte at every offset of a long string is seen */
    for (size_t at = 0; at < 24; at++) {
        char doc[40], out[40];
        size_t n = 0, got = 0;
        doc[n++] = '"';
        for (size_t i = 0; i < 24; i++) {
            if (i == at) {
                doc[n++] = '\\';
                doc[n++] = 'n';
            } else {
                doc[n++] = (char)('a' + i % 26);
            }
        }
        doc[n++] = '"';
        json_reader_init(&r, doc, n, 8, &err);
        assert_int_equal(json_reader_string(&r, out, sizeof out, &got), 0);
        assert_int_equal(got, 24);
        assert_int_equal(out[at], '\n');
        for (int kind = 0; kind < 3; kind++) {
            static const char bad_byte[3] = {0x01, (char)0xff, 0x1f};
            memset(doc, 'a', 30);
            doc[0] = '"';
            doc[29] = '"';
            doc[1 + at] = bad_byte[kind];
            json_reader_init(&r, doc, 30, 8, &err);
            assert_int_equal(json_reader_string(&r, out, sizeof out, &got), GW_E_PARSE);
        }
        /* neighbours one above and below a quote (a borrow across bytes must not hide it) */
        for (int fill = 0; fill < 2; fill++) {
            memset(doc, fill ? '!' : '#', 30);
            doc[0] = '"';
            doc[29] = '"';
            doc[1 + at] = '"'; /* ends the string early: what follows is not JSON */
            json_reader_init(&r, doc, 30, 8, &err);
            assert_int_equal(json_reader_string(&r, out, sizeof out, &got), 0);
            assert_int_equal(got, at);
            assert_int_equal(json_reader_end(&r), GW_E_PARSE);
        }
        memset(doc, ' ', 30); /* 0x20, the lowest plain byte, around a two-byte character */
        doc[0] = '"';
        doc[29] = '"';
        doc[1 + at] = (char)0xc3;
        doc[2 + at] = (char)0xa9;
        json_reader_init(&r, doc, 30, 8, &err);
        assert_int_equal(json_reader_string(&r, out, sizeof out, &got), 0);
        assert_int_equal(got, 28);
        assert_memory_equal(out + at, "\xc3\xa9 ", 3);
    }
    json_reader_init(&r, "[1] x", 5, 8, &err);
    assert_int_equal(json_reader_skip(&r), 0);
    assert_int_equal(json_reader_end(&r), GW_E_PARSE);
    json_reader_init(&r, "{\"a\\u0000\":1}", 13, 8, &err);
    assert_int_equal(json_reader_skip(&r), GW_E_PARSE);
    assert_non_null(strstr(err.msg, "NUL in member name"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_json),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_refuses_non_json),
        cmocka_unit_test(test_nul_in_member_name),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_err_may_be_null),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_append_str_roundtrip),
        cmocka_unit_test(test_append_str_escapes),
        cmocka_unit_test(test_put_str),
        cmocka_unit_test(test_append_str_cap),
        cmocka_unit_test(test_top_string_span),
        cmocka_unit_test(test_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
