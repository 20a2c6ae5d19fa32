/* Table-driven tests for the durable operations' rules (docs/ops.md): the backoff schedule,
 * the dead-letter threshold, the outcome classes and what an answer means for the row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gw/ops_policy.h"

static void test_backoff_schedule(void **state)
{
    (void)state;
    static const struct {
        unsigned failures;
        uint64_t want_ms;
    } rows[] = {
        {1, 30000},  {2, 60000},  {3, 120000}, {4, 240000},  {5, 480000},
        {6, 900000}, {7, 900000}, {9, 900000}, {40, 900000}, {0, 30000},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(ops_backoff_ms(rows[i].failures, 1.0), rows[i].want_ms);
}

static void test_backoff_jitter_bounds(void **state)
{
    (void)state;
    assert_int_equal(ops_backoff_ms(1, 0.8), 24000);
    assert_int_equal(ops_backoff_ms(1, 1.2), 36000);
    assert_int_equal(ops_backoff_ms(1, 0.0), 24000);    /* clamped */
    assert_int_equal(ops_backoff_ms(1, 7.0), 36000);    /* clamped */
    assert_int_equal(ops_backoff_ms(10, 1.2), 1080000); /* the cap, jittered */
}

static void test_dead_letter_threshold(void **state)
{
    (void)state;
    for (unsigned k = 0; k < 10; k++) assert_false(ops_is_dead(k));
    assert_true(ops_is_dead(10));
    assert_true(ops_is_dead(11));
}

static void test_classes(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool explicit_failure;
    } rows[] = {
        {"ok", false},    {"exception", true}, {"config_error", true},
        {"unsafe", true}, {"aborted", true},   {"error", false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        enum op_class c;
        assert_int_equal(op_class_parse(strv_from_cstr(rows[i].name), &c), 0);
        assert_string_equal(op_class_name(c), rows[i].name);
        assert_int_equal(op_class_is_explicit_failure(c), rows[i].explicit_failure);
    }
    enum op_class c;
    assert_int_equal(op_class_parse(strv_from_cstr("okay"), &c), GW_E_INVALID);
    enum op_kind k;
    assert_int_equal(op_kind_parse(strv_from_cstr("upgrade"), &k), 0);
    assert_int_equal(k, OP_UPGRADE);
    assert_int_equal(op_kind_parse(strv_from_cstr("reinstall"), &k), GW_E_INVALID);
}

static void test_judge(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        enum op_kind kind;
        bool answered;
        enum op_class cls;
        bool listed;
        enum ops_verdict want;
    } rows[] = {
        {"ok install", OP_INSTALL, true, OP_CLASS_OK, false, OPS_DONE},
        {"no answer", OP_INSTALL, false, OP_CLASS_OK, true, OPS_FAILED},
        {"exception even if listed", OP_INSTALL, true, OP_CLASS_EXCEPTION, true, OPS_FAILED},
        {"config error", OP_DELETE, true, OP_CLASS_CONFIG_ERROR, false, OPS_FAILED},
        {"unsafe", OP_DELETE, true, OP_CLASS_UNSAFE, false, OPS_FAILED},
        {"aborted", OP_UPGRADE, true, OP_CLASS_ABORTED, true, OPS_FAILED},
        {"generic error, install verified", OP_INSTALL, true, OP_CLASS_ERROR, true, OPS_DONE},
        {"generic error, install not there", OP_INSTALL, true, OP_CLASS_ERROR, false, OPS_FAILED},
        {"generic error, upgrade verified", OP_UPGRADE, true, OP_CLASS_ERROR, true, OPS_DONE},
        {"generic error, delete verified gone", OP_DELETE, true, OP_CLASS_ERROR, false, OPS_DONE},
        {"generic error, delete still there", OP_DELETE, true, OP_CLASS_ERROR, true, OPS_FAILED},
        {"generic error, load verified", OP_LOAD, true, OP_CLASS_ERROR, true, OPS_DONE},
        {"generic error, unload verified", OP_UNLOAD, true, OP_CLASS_ERROR, false, OPS_DONE},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        enum ops_verdict v = ops_judge(rows[i].kind, rows[i].answered, rows[i].cls, rows[i].listed);
        if (v != rows[i].want) fail_msg("row '%s': got %d want %d", rows[i].what, v, rows[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_backoff_jitter_bounds),
        cmocka_unit_test(test_dead_letter_threshold),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_judge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
