/* test_buf — the capped buffer: cap enforced with the buffer unchanged, appendf past the small
 * stack path, consume, take, and the NUL that always follows the bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"

static void test_empty(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    struct strv v = buf_view(&b);
    assert_non_null(v.p);
    assert_int_equal(v.len, 0);
    assert_int_equal(buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 0);
    buf_consume(&b, 5); /* nothing to drop, no crash */
    buf_reset(&b);
    buf_free(&b);
}

static void test_append_nul_terminated(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(b.len, 3);
    assert_int_equal(b.p[3], '\0');
    assert_int_equal(buf_append_cstr(&b, "de"), 0);
    assert_int_equal(buf_append_strv(&b, STRV_LIT("f\0g")), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.p, "abcdef\0g", 9); /* and the trailing NUL */
    /* Many small appends grow it and keep it terminated. */
    for (int i = 0; i < 100000; i++) assert_int_equal(buf_append(&b, "x", 1), 0);
    assert_int_equal(b.len, 100008);
    assert_int_equal(b.p[b.len], '\0');
    assert_true(b.cap >= b.len);
    buf_free(&b);
}

static void test_cap_enforced(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 10);
    assert_int_equal(buf_append(&b, "012345", 6), 0);
    char *before = b.p;
    assert_int_equal(buf_append(&b, "abcde", 5), GW_E_LIMIT);
    assert_ptr_equal(b.p, before);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.p, "012345");
    assert_int_equal(buf_appendf(&b, "%s", "abcde"), GW_E_LIMIT);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.p, "012345");
    assert_int_equal(buf_append(&b, "abcd", 4), 0); /* exactly the cap */
    assert_string_equal(b.p, "012345abcd");
    assert_true(b.cap <= 10);
    assert_int_equal(buf_append(&b, "x", 1), GW_E_LIMIT);
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_string_equal(b.p, "012345abcd");
    /* A huge n must not wrap around the cap check. */
    assert_int_equal(buf_append(&b, "x", SIZE_MAX), GW_E_LIMIT);
    assert_int_equal(b.len, 10);
    buf_free(&b);

    buf_init(&b, 0);
    assert_int_equal(buf_append(&b, "x", 1), GW_E_LIMIT);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_appendf(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_appendf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.p, "42-x");
    /* Longer than the 256-byte stack path, onto existing content, several times. */
    char big[10001];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 3; i++) assert_int_equal(buf_appendf(&b, "[%s]%d", big, i), 0);
    assert_int_equal(b.len, 4 + 3 * (10000 + 3));
    assert_memory_equal(b.p + 4, "[qqqq", 5);
    assert_memory_equal(b.p + b.len - 2, "]2", 2);
    assert_int_equal(b.p[b.len], '\0');
    assert_int_equal(strlen(b.p), b.len);
    /* Exactly 256 and 255 bytes (the stack path's edge). */
    struct buf e;
    buf_init(&e, 1000);
    assert_int_equal(buf_appendf(&e, "%.*s", 255, big), 0);
    assert_int_equal(buf_appendf(&e, "%.*s", 256, big), 0);
    assert_int_equal(e.len, 511);
    assert_int_equal(strlen(e.p), 511);
    /* A large string past the cap leaves the buffer as it was. */
    assert_int_equal(buf_appendf(&e, "%s", big), GW_E_LIMIT);
    assert_int_equal(e.len, 511);
    assert_int_equal(strlen(e.p), 511);
    buf_free(&e);
    buf_free(&b);
}

static void test_consume(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_append_cstr(&b, "hello world"), 0);
    buf_consume(&b, 6);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.p, "world");
    buf_consume(&b, 0);
    assert_string_equal(b.p, "world");
    buf_consume(&b, 5);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.p, "");
    assert_int_equal(buf_append_cstr(&b, "abc"), 0);
    buf_consume(&b, 1000); /* more than len drops all */
    assert_int_equal(b.len, 0);
    assert_string_equal(b.p, "");
    /* consume frees room under the cap */
    buf_free(&b);
    buf_init(&b, 4);
    assert_int_equal(buf_append_cstr(&b, "abcd"), 0);
    assert_int_equal(buf_append_cstr(&b, "e"), GW_E_LIMIT);
    buf_consume(&b, 2);
    assert_int_equal(buf_append_cstr(&b, "ef"), 0);
    assert_string_equal(b.p, "cdef");
    buf_free(&b);
}

/* One allocation for a known length: the appends after it do not move the bytes; past the
 * max it does nothing and says so, and the buffer stays usable. */
static void test_reserve(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1000);
    assert_int_equal(buf_reserve(&b, 600), 0);
    assert_non_null(b.p);
    assert_int_equal(b.cap, 600);
    assert_string_equal(b.p, "");
    char *p = b.p;
    for (int i = 0; i < 60; i++) assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.len, 600);
    assert_int_equal(b.p[600], '\0');
    assert_int_equal(buf_reserve(&b, 401), GW_E_LIMIT);
    assert_int_equal(b.cap, 600);
    assert_int_equal(buf_reserve(&b, 400), 0);
    assert_int_equal(b.cap, 1000);
    assert_int_equal(buf_append(&b, "x", 1), 0);
    assert_int_equal(b.len, 601);
    assert_memory_equal(b.p + 590, "0123456789x", 12);
    buf_free(&b);
}

static void test_reset_keeps_memory(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_append_cstr(&b, "abcdef"), 0);
    char *p = b.p;
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.p, "");
    buf_free(&b);
    assert_null(b.p);
    buf_init(&b, 10);
    assert_int_equal(buf_append_cstr(&b, "again"), 0);
    assert_string_equal(b.p, "again");
    buf_free(&b);
}

static void test_take(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    size_t len = 99;
    char *s = buf_take(&b, &len); /* never appended: still an owned "" */
    assert_non_null(s);
    assert_int_equal(len, 0);
    assert_string_equal(s, "");
    xfree(s);
    assert_int_equal(buf_append(&b, "ab\0c", 4), 0);
    s = buf_take(&b, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "ab\0c", 5);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    /* The buf is empty and usable again, with its cap. */
    assert_int_equal(buf_append_cstr(&b, "next"), 0);
    assert_string_equal(b.p, "next");
    assert_ptr_not_equal(b.p, s);
    xfree(s);
    s = buf_take(&b, NULL);
    assert_string_equal(s, "next");
    xfree(s);
    buf_free(&b);
}

static void test_append_u64(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(buf_append_u64(&b, 0), 0);
    assert_int_equal(buf_append(&b, " ", 1), 0);
    assert_int_equal(buf_append_u64(&b, 1234567890), 0);
    assert_int_equal(buf_append(&b, " ", 1), 0);
    assert_int_equal(buf_append_u64(&b, UINT64_MAX), 0);
    assert_string_equal(b.p, "0 1234567890 18446744073709551615");
    buf_free(&b);
    buf_init(&b, 3);
    assert_int_equal(buf_append_u64(&b, 1000), GW_E_LIMIT); /* the cap holds */
    buf_free(&b);
    char d[20];
    assert_int_equal(u64_to_dec(d, 7), 1);
    assert_int_equal(d[0], '7');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_append_nul_terminated),
        cmocka_unit_test(test_cap_enforced),
        cmocka_unit_test(test_appendf),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_append_u64),
        cmocka_unit_test(test_reset_keeps_memory),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
