/* Table tests for the agent's operation pieces: template expansion with shell quoting (an
 * injection attempt stays one literal argument), the exit → outcome class table, and the
 * backend.list reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agent_ops.h"

static void test_expand(void **state)
{
    (void)state;
    static const struct {
        const char *tmpl, *name, *params, *want; /* want NULL: refused */
    } rows[] = {
        {"apt-get install -y {name}", "cuda12", NULL, "apt-get install -y 'cuda12'"},
        {"fetch {name} {version}", "m", "{\"version\":\"1.2\"}", "fetch 'm' '1.2'"},
        {"x {name}", "a'; rm -rf /; '", NULL, "x 'a'\\''; rm -rf /; '\\'''"},
        {"x {name} {n}", "m", "{\"n\":3}", "x 'm' '3'"},
        {"x {version}", "m", NULL, NULL},
        {"x {unclosed", "m", NULL, NULL},
        {"x {}", "m", NULL, NULL},
        {"no placeholders", "m", NULL, "no placeholders"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct buf b;
        buf_init(&b, 4096);
        char why[160] = "";
        int rc = agent_ops_expand(rows[i].tmpl, rows[i].name, rows[i].params, &b, why, sizeof why);
        if (rows[i].want) {
            assert_int_equal(rc, 0);
            assert_string_equal(b.p, rows[i].want);
        } else {
            assert_int_not_equal(rc, 0);
            assert_true(why[0] != '\0');
        }
        buf_free(&b);
    }
}

static void test_exit_classes(void **state)
{
    (void)state;
    static const struct {
        bool timed_out;
        int sig;
        int64_t status;
        enum op_class want;
    } rows[] = {
        {false, 0, 0, OP_CLASS_OK},         {true, 9, 0, OP_CLASS_ABORTED},
        {false, 11, 0, OP_CLASS_EXCEPTION}, {false, 0, 70, OP_CLASS_EXCEPTION},
        {false, 0, 77, OP_CLASS_UNSAFE},    {false, 0, 78, OP_CLASS_CONFIG_ERROR},
        {false, 0, 124, OP_CLASS_ABORTED},  {false, 0, 1, OP_CLASS_ERROR},
        {false, 0, 2, OP_CLASS_ERROR},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(agent_ops_exit_class(rows[i].timed_out, rows[i].sig, rows[i].status),
                         rows[i].want);
}

static void test_list_has(void **state)
{
    (void)state;
    const char *out = "cuda12 12.4 sha256:aa\n  rocm 6.0\nvulkan\n";
    assert_true(agent_ops_list_has(out, strlen(out), "cuda12"));
    assert_true(agent_ops_list_has(out, strlen(out), "rocm"));
    assert_true(agent_ops_list_has(out, strlen(out), "vulkan"));
    assert_false(agent_ops_list_has(out, strlen(out), "cuda"));
    assert_false(agent_ops_list_has(out, strlen(out), "12.4"));
    assert_false(agent_ops_list_has("", 0, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_exit_classes),
        cmocka_unit_test(test_list_has),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
