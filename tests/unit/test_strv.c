/* test_strv — string views: trim, case-insensitive compare, strict u64 parsing, tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/strv.h"

static void test_trim(void **state)
{
    (void)state;
    assert_true(strv_eq_cstr(strv_trim(STRV_LIT("  a b \t")), "a b"));
    assert_true(strv_eq_cstr(strv_trim(STRV_LIT("\t\tx")), "x"));
    assert_int_equal(strv_trim(STRV_LIT(" \t \t")).len, 0);
    assert_int_equal(strv_trim(STRV_LIT("")).len, 0);
    assert_int_equal(strv_trim(STRV_NULL).len, 0);
    /* Only SP and HTAB (HTTP's OWS): CR, LF and NUL are content. */
    assert_true(strv_eq_cstr(strv_trim(STRV_LIT("\r\n a\r")), "\r\n a\r"));
    struct strv v = strv_trim(STRV_LIT(" mid "));
    assert_int_equal(v.len, 3);
    assert_int_equal(v.p[0], 'm');
}

static void test_eq(void **state)
{
    (void)state;
    assert_true(strv_eq_ci(STRV_LIT("Content-Length"), STRV_LIT("content-LENGTH")));
    assert_true(strv_eq_ci(STRV_LIT(""), STRV_NULL));
    assert_false(strv_eq_ci(STRV_LIT("abc"), STRV_LIT("abcd")));
    assert_false(strv_eq_ci(STRV_LIT("abc"), STRV_LIT("abd")));
    /* Only ASCII letters fold: '@' vs '`', '[' vs '{', and bytes >= 0x80 are distinct. */
    assert_false(strv_eq_ci(STRV_LIT("@"), STRV_LIT("`")));
    assert_false(strv_eq_ci(STRV_LIT("["), STRV_LIT("{")));
    assert_false(strv_eq_ci(STRV_LIT("\xc0"), STRV_LIT("\xe0")));
    assert_true(strv_eq_ci(STRV_LIT("a\0b"), STRV_LIT("A\0B")));
    assert_true(strv_eq(STRV_LIT("a\0b"), STRV_LIT("a\0b")));
    assert_false(strv_eq(STRV_LIT("a\0b"), STRV_LIT("a\0c")));
    assert_true(strv_eq(STRV_NULL, STRV_LIT("")));
    /* strv_eq_cstr: prefixes either way, embedded NUL, empty */
    assert_true(strv_eq_cstr(STRV_LIT("/v1/models"), "/v1/models"));
    assert_false(strv_eq_cstr(STRV_LIT("/v1/model"), "/v1/models"));
    assert_false(strv_eq_cstr(STRV_LIT("/v1/models/x"), "/v1/models"));
    assert_false(strv_eq_cstr(STRV_LIT("a\0"), "a"));
    assert_true(strv_eq_cstr(STRV_NULL, ""));
    assert_false(strv_eq_cstr(STRV_NULL, "a"));
    assert_true(strv_eq_cstr(STRV_LIT("x"), "x"));
    assert_false(strv_eq_cstr(STRV_LIT("x"), "X"));
    assert_true(strv_eq_cstr(strv_from_cstr(NULL), ""));
}

static void test_sub_index_prefix(void **state)
{
    (void)state;
    struct strv s = STRV_LIT("bearer token");
    assert_true(strv_starts_with(s, STRV_LIT("bearer ")));
    assert_true(strv_starts_with(s, STRV_NULL));
    assert_false(strv_starts_with(STRV_LIT("be"), STRV_LIT("bearer")));
    assert_int_equal(strv_index(s, ' '), 6);
    assert_int_equal(strv_index(s, 'z'), -1);
    assert_int_equal(strv_index(STRV_NULL, 'a'), -1);
    assert_true(strv_eq_cstr(strv_sub(s, 7, 100), "token"));
    assert_int_equal(strv_sub(s, 100, 5).len, 0);
    assert_true(strv_eq_cstr(strv_sub(s, 0, 6), "bearer"));
}

static int to_u64(const char *s, uint64_t *out)
{
    return strv_to_u64(strv_from_cstr(s), out);
}

static void test_to_u64(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(to_u64("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(to_u64("8080", &v), 0);
    assert_int_equal(v, 8080);
    assert_int_equal(to_u64("007", &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(to_u64("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(to_u64("18446744073709551610", &v), 0);
    assert_true(v == UINT64_MAX - 5);
    /* Overflow, by one and by a lot. */
    v = 123;
    const char *bad[] = {"18446744073709551616",
                         "18446744073709551620",
                         "99999999999999999999",
                         "184467440737095516150",
                         "100000000000000000000000000000",
                         "",
                         "-1",
                         "+1",
                         " 1",
                         "1 ",
                         "1a",
                         "0x10",
                         "1.0",
                         "1e3",
                         "١",
                         "12\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (to_u64(bad[i], &v) != GW_E_PARSE) fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(v, 123); /* untouched */
    }
    assert_int_equal(strv_to_u64(STRV_LIT("12\0"), &v), GW_E_PARSE);
    assert_int_equal(strv_to_u64(STRV_NULL, &v), GW_E_PARSE);
    assert_int_equal(strv_to_u64(strv_make("123456", 3), &v), 0); /* honours len */
    assert_int_equal(v, 123);
}

static void test_is_token(void **state)
{
    (void)state;
    assert_true(strv_is_token(STRV_LIT("Content-Type")));
    assert_true(strv_is_token(STRV_LIT("x-drover-node")));
    assert_true(strv_is_token(STRV_LIT("!#$%&'*+-.^_`|~09AZaz")));
    assert_false(strv_is_token(STRV_LIT("")));
    assert_false(strv_is_token(STRV_NULL));
    const char *bad[] = {"a b", "a:b", "a\tb", "(",    ")",    "<",    ">", "@",
                         ",",   ";",   "\\",   "\"",   "/",    "[",    "]", "?",
                         "=",   "{",   "}",    "\x7f", "\x80", "\xff", "\r"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (strv_is_token(strv_from_cstr(bad[i]))) fail_msg("token: \"%s\"", bad[i]);
    assert_false(strv_is_token(STRV_LIT("a\0b"))); /* NUL is not a tchar */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_eq),
        cmocka_unit_test(test_sub_index_prefix),
        cmocka_unit_test(test_to_u64),
        cmocka_unit_test(test_is_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
