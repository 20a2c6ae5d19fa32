/* test_sim_out — the simulator's capped output: appends of every kind, JSON string escaping,
 * the cap (a refused append leaves the bytes as they were), the sticky first error (later
 * appends that would fit are no-ops), reset, and the 512-byte line limit of sim_out_fmt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sim/sim_out.h"

static void assert_out(const struct sim_out *o, const char *want)
{
    assert_int_equal(o->b.len, strlen(want));
    if (o->b.len) assert_memory_equal(o->b.p, want, o->b.len);
}

static void test_appends(void **state)
{
    (void)state;
    struct sim_out o;
    sim_out_init(&o, 4096);
    sim_out_raw(&o, "{\"a\":");
    sim_out_cstr(&o, "x\"y\\z\n\t\x01");
    sim_out_raw(&o, ",\"b\":");
    sim_out_str(&o, "abcdef", 3); /* only len bytes */
    sim_out_raw(&o, ",\"n\":");
    sim_out_fmt(&o, "%d,\"f\":%.2f", 42, 1.5);
    sim_out_mem(&o, "}", 1);
    assert_int_equal(o.err, 0);
    assert_out(&o, "{\"a\":\"x\\\"y\\\\z\\n\\t\\u0001\",\"b\":\"abc\",\"n\":42,\"f\":1.50}");
    assert_int_equal(o.b.p[o.b.len], '\0'); /* NUL-terminated for C APIs */
    sim_out_free(&o);
}

/* NULL strings are written as "" rather than crashing; embedded NULs are escaped. */
static void test_null_and_nul(void **state)
{
    (void)state;
    struct sim_out o;
    sim_out_init(&o, 64);
    sim_out_cstr(&o, NULL);
    sim_out_str(&o, NULL, 5);
    sim_out_str(&o, "a\0b", 3);
    assert_int_equal(o.err, 0);
    assert_out(&o, "\"\"\"\"\"a\\u0000b\"");
    sim_out_free(&o);
}

/* The cap: the append that would pass it fails with GW_E_LIMIT and leaves the buffer as it
 * was; every later append is a no-op even when it would fit; reset starts over. */
static void test_cap_is_sticky(void **state)
{
    (void)state;
    struct sim_out o;
    sim_out_init(&o, 8);
    sim_out_raw(&o, "12345");
    assert_int_equal(o.err, 0);
    sim_out_raw(&o, "6789");
    assert_int_equal(o.err, GW_E_LIMIT);
    assert_out(&o, "12345");
    sim_out_raw(&o, "6");
    sim_out_mem(&o, "7", 1);
    sim_out_cstr(&o, "");
    sim_out_fmt(&o, "%d", 8);
    assert_int_equal(o.err, GW_E_LIMIT);
    assert_out(&o, "12345");
    sim_out_reset(&o);
    assert_int_equal(o.err, 0);
    assert_out(&o, "");
    sim_out_raw(&o, "12345678"); /* exactly the cap */
    assert_int_equal(o.err, 0);
    assert_out(&o, "12345678");
    sim_out_free(&o);
}

/* A JSON string that does not fit leaves no half-written literal behind. */
static void test_str_over_cap_leaves_nothing(void **state)
{
    (void)state;
    struct sim_out o;
    sim_out_init(&o, 10);
    sim_out_raw(&o, "[");
    sim_out_cstr(&o, "a\"b\"c\"d\"e");
    assert_int_equal(o.err, GW_E_LIMIT);
    assert_out(&o, "[");
    assert_int_equal(o.b.p[o.b.len], '\0');
    sim_out_free(&o);
}

/* sim_out_fmt writes lines shorter than 512 bytes; a longer one is refused, not truncated. */
static void test_fmt_line_limit(void **state)
{
    (void)state;
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct sim_out o;
    sim_out_init(&o, 1 << 20);
    sim_out_fmt(&o, "%.*s", 511, big);
    assert_int_equal(o.err, 0);
    assert_int_equal(o.b.len, 511);
    sim_out_fmt(&o, "%.*s", 512, big);
    assert_int_equal(o.err, GW_E_LIMIT);
    assert_int_equal(o.b.len, 511);
    sim_out_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends),        cmocka_unit_test(test_null_and_nul),
        cmocka_unit_test(test_cap_is_sticky),  cmocka_unit_test(test_str_over_cap_leaves_nothing),
        cmocka_unit_test(test_fmt_line_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
