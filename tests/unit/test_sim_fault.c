/* test_sim_fault — the X-Sim-Fault / --fault grammar: every knob, combinations, refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sim/sim_fault.h"
#include "sim/sim_text.h"

static int parse(const char *s, struct sim_fault *f)
{
    struct gw_error e = {0};
    return sim_fault_parse(strv_from_cstr(s), f, &e);
}

static void test_each_knob(void **state)
{
    (void)state;
    struct sim_fault f;
    assert_int_equal(parse("status=503;retry_after=2", &f), 0);
    assert_int_equal(f.status, 503);
    assert_true(f.has_retry_after);
    assert_int_equal(f.retry_after_s, 2);
    assert_int_equal(parse("reset", &f), 0);
    assert_true(f.reset);
    assert_int_equal(parse("hang", &f), 0);
    assert_true(f.hang);
    assert_int_equal(parse("cut_after=2", &f), 0);
    assert_int_equal(f.cut_after, 2);
    assert_int_equal(parse("cut_after=0", &f), 0);
    assert_int_equal(f.cut_after, 0);
    assert_int_equal(parse("slow_headers=300", &f), 0);
    assert_int_equal(f.slow_headers_ms, 300);
    assert_int_equal(parse("reset_after_complete", &f), 0);
    assert_true(f.reset_after_complete);
    assert_false(sim_fault_is_none(&f));
}

static void test_none_and_blanks(void **state)
{
    (void)state;
    struct sim_fault f;
    assert_int_equal(parse("", &f), 0);
    assert_true(sim_fault_is_none(&f));
    assert_int_equal(f.cut_after, -1);
    assert_int_equal(parse("none", &f), 0);
    assert_true(sim_fault_is_none(&f));
    assert_int_equal(parse(" ; slow_headers = 5 ;; cut_after=3 ", &f), 0);
    assert_int_equal(f.slow_headers_ms, 5);
    assert_int_equal(f.cut_after, 3);
}

static void test_refusals(void **state)
{
    (void)state;
    struct sim_fault f;
    sim_fault_clear(&f);
    f.status = 42;
    const char *bad[] = {"status",      "status=abc",       "status=99",
                         "status=600",  "status=-1",        "retry_after=2",
                         "reset=1",     "hang=yes",         "cut_after",
                         "cut_after=x", "explode",          "status=503;reset",
                         "reset;hang",  "slow_headers=1e3", "slow_headers=99999999",
                         "status=5031"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gw_error e = {0};
        assert_int_not_equal(sim_fault_parse(strv_from_cstr(bad[i]), &f, &e), 0);
        assert_true(e.msg[0] != '\0');
        assert_int_equal(f.status, 42); /* untouched on error */
    }
}

static void test_text_deterministic(void **state)
{
    (void)state;
    assert_string_equal(sim_text_token(7, 3), sim_text_token(7, 3));
    assert_true(sim_text_token(7, 0)[0] != ' ');
    assert_true(sim_text_token(7, 1)[0] == ' ');
    assert_int_equal(sim_text_tokens(0), 0);
    assert_int_equal(sim_text_tokens(1), 1);
    assert_int_equal(sim_text_tokens(8), 2);
    assert_int_equal(sim_text_tokens(9), 3);
    double v[16], w[16];
    sim_text_embedding("abc", 3, 16, v);
    sim_text_embedding("abc", 3, 16, w);
    double n = 0;
    for (int i = 0; i < 16; i++) {
        assert_true(v[i] == w[i]);
        n += v[i] * v[i];
    }
    assert_true(n > 0.999 && n < 1.001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_knob),
        cmocka_unit_test(test_none_and_blanks),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_text_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
