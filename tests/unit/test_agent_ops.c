/* Table tests for the agent's operation pieces: template expansion with shell quoting (an
 * injection attempt stays one literal argument), the exit → outcome class table, the
 * backend.list reader, and the inventory built from an engine's list and backend.list output
 * as the gateway parses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agent_ops.h"
#include "base/mem.h"

#define LIT(s) (s), sizeof(s) - 1

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

/* backend.list output → the inventory's backends: NAME [VERSION [DIGEST]], extra words
 * ignored, blank lines and CRLF handled, a line that does not fit an item skipped. */
static void test_inventory_backends(void **state)
{
    (void)state;
    char longword[NODE_API_MAX_ID + 8];
    memset(longword, 'x', sizeof longword - 1);
    longword[sizeof longword - 1] = '\0';
    struct buf out;
    buf_init(&out, 64 * 1024);
    assert_int_equal(buf_appendf(&out,
                                 "cuda12 12.4 sha256:aa extra words\r\n\n  rocm\t6.0\nvulkan\n"
                                 "%s 1.0\n   \nlast 2",
                                 longword),
                     0);
    struct node_api_inv_items l = {0};
    assert_int_equal(agent_ops_backends_parse(out.p, out.len, &l), 1);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.v[0].name, "cuda12");
    assert_string_equal(l.v[0].version, "12.4");
    assert_string_equal(l.v[0].digest, "sha256:aa");
    assert_string_equal(l.v[1].name, "rocm");
    assert_string_equal(l.v[1].version, "6.0");
    assert_string_equal(l.v[1].digest, "");
    assert_string_equal(l.v[2].name, "vulkan");
    assert_string_equal(l.v[2].version, "");
    assert_string_equal(l.v[3].name, "last");
    assert_string_equal(l.v[3].version, "2");
    xfree(l.v);
    memset(&l, 0, sizeof l);
    assert_int_equal(agent_ops_backends_parse("", 0, &l), 0);
    assert_int_equal(l.n, 0);
    buf_free(&out);
}

/* The engine's list read by proto's parsers (Ollama's digests kept, an OpenAI list has none)
 * becomes the agent's inventory; the gateway's parser reads back what the agent emits. */
static void test_inventory_from_engine(void **state)
{
    (void)state;
    static const char tags[] =
        "{\"models\":[{\"name\":\"llama3.2:1b\",\"model\":\"llama3.2:1b\",\"size\":1321098329,"
        "\"digest\":\"baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878\"},"
        "{\"name\":\"all-minilm:22m\",\"size\":45960996},"
        "{\"name\":\"odd\",\"digest\":7}]}";
    static const char oai[] =
        "{\"object\":\"list\",\"data\":[{\"id\":\"qwen\"},{\"id\":\"qwen\"}]}";
    struct node_api_models engine = {0};
    assert_int_equal(node_api_ollama_list_parse(LIT(tags), false, &engine, NULL), 0);
    struct node_api_inventory inv = {0};
    assert_int_equal(agent_ops_inventory_models(&engine, &inv.models), 0);
    node_api_models_free(&engine);
    assert_int_equal(node_api_oai_models_parse(LIT(oai), &engine, NULL), 0);
    assert_int_equal(agent_ops_inventory_models(&engine, &inv.models), 0);
    node_api_models_free(&engine);
    static const char list[] = "cuda12 1.0 sha256:b4ck\n";
    assert_int_equal(agent_ops_backends_parse(LIT(list), &inv.backends), 0);

    struct buf b;
    buf_init(&b, NODE_API_MAX_INVENTORY_BYTES);
    assert_int_equal(node_api_inventory_emit(&b, &inv), 0);
    assert_string_equal(
        b.p, "{\"models\":[{\"name\":\"llama3.2:1b\",\"digest\":\"baf6a787fdffd633537aa2eb51cfd54"
             "cb93ff08e28040095462bb63daf552878\"},{\"name\":\"all-minilm:22m\"},{\"name\":"
             "\"odd\"},{\"name\":\"qwen\"}],\"backends\":[{\"name\":\"cuda12\",\"version\":"
             "\"1.0\",\"digest\":\"sha256:b4ck\"}]}");
    struct node_api_inventory back;
    struct gw_error err = {0};
    assert_int_equal(node_api_inventory_parse(b.p, b.len, &back, &err), 0);
    assert_int_equal(back.models.n, 4);
    assert_string_equal(back.models.v[0].digest, inv.models.v[0].digest);
    assert_string_equal(back.backends.v[0].version, "1.0");
    node_api_inventory_free(&back);
    node_api_inventory_free(&inv);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_exit_classes),
        cmocka_unit_test(test_list_has),
        cmocka_unit_test(test_inventory_backends),
        cmocka_unit_test(test_inventory_from_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
