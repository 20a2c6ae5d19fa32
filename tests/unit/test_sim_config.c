/* test_sim_config — flags and YAML: defaults, override order, models, errors with file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sim/sim_config.h"

static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/test_sim_config_%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int parse(struct sim_config *c, int argc, char **argv, struct gw_error *e)
{
    sim_config_defaults(c);
    FILE *devnull = fopen("/dev/null", "w");
    int rc = sim_config_parse_args(c, argc, argv, devnull, e);
    fclose(devnull);
    return rc;
}

static void test_defaults_and_flags(void **state)
{
    (void)state;
    struct sim_config c;
    struct gw_error e = {0};
    char *argv[] = {"sim",
                    "--nodes",
                    "3",
                    "--model",
                    "llama3:8b",
                    "--model",
                    "emb:embedding",
                    "--ttft-per-token-ms=0.5",
                    "--preload",
                    "--fault",
                    "status=503"};
    assert_int_equal(parse(&c, 11, argv, &e), 0);
    assert_int_equal(c.nodes, 3);
    assert_int_equal(c.slots, 4);
    assert_true(c.preload_all);
    assert_true(c.ttft_per_token_ms == 0.5);
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[0]->name, "llama3:8b");
    assert_int_equal(c.models[0]->kind, SIM_MODEL_CHAT);
    assert_string_equal(c.models[1]->name, "emb");
    assert_int_equal(c.models[1]->kind, SIM_MODEL_EMBEDDING);
    assert_int_equal(c.n_faults, 1);
    assert_int_equal(sim_config_find_model(&c, "llama3:8b", 9), 0);
    assert_int_equal(sim_config_find_model(&c, "emb:latest", 10), 1);
    assert_int_equal(sim_config_find_model(&c, "nope", 4), -1);
    sim_config_free(&c);
}

static void test_bad_flags(void **state)
{
    (void)state;
    const char *cases[][3] = {
        {"sim", "--nodes", "0"},        {"sim", "--slots", "x"},        {"sim", "--bogus", "1"},
        {"sim", "--fault-rate", "2"},   {"sim", "--fault", "boom"},     {"sim", "--port", "70000"},
        {"sim", "--fault-rate", "0.5"}, {"sim", "--log-level", "loud"}, {"sim", "stray", "x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sim_config c;
        struct gw_error e = {0};
        assert_true(parse(&c, 3, (char **)cases[i], &e) < 0);
        assert_true(e.msg[0] != '\0');
        sim_config_free(&c);
    }
}

static void test_yaml_and_override(void **state)
{
    (void)state;
    const char *path = write_tmp("nodes: 2\nslots: 3\nfault_rate: 0.5\nfaults: [reset]\n"
                                 "models:\n  - name: a\n    vram_mb: 10\n    nodes: [1]\n"
                                 "  - b:embedding\n");
    char *argv[] = {"sim", "--slots", "7", "--config", (char *)path};
    struct sim_config c;
    struct gw_error e = {0};
    assert_int_equal(parse(&c, 5, argv, &e), 0);
    assert_int_equal(c.nodes, 2);
    assert_int_equal(c.slots, 7); /* the flag wins although it came first */
    assert_int_equal(c.n_faults, 1);
    assert_true(c.faults[0].reset);
    assert_int_equal(c.n_models, 2);
    assert_int_equal(sim_config_model_vram_mb(&c, c.models[0]), 10);
    assert_false(sim_config_model_on_node(c.models[0], 0));
    assert_true(sim_config_model_on_node(c.models[0], 1));
    assert_int_equal(c.models[1]->kind, SIM_MODEL_EMBEDDING);
    sim_config_free(&c);
    unlink(path);
}

static void test_yaml_errors_have_lines(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"nodes: 1\nslots: many\n", ":2:"},
        {"nodes: 1\nwhat: 2\n", ":2:"},
        {"models:\n  - name: a\n    color: red\n", ":3:"},
        {"nodes: [1\n", ":"},
        {"- just a list\n", ":1:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_tmp(cases[i][0]);
        struct sim_config c;
        struct gw_error e = {0};
        sim_config_defaults(&c);
        assert_true(sim_config_load_yaml(&c, path, &e) < 0);
        assert_non_null(strstr(e.msg, path));
        assert_non_null(strstr(e.msg, cases[i][1]));
        sim_config_free(&c);
        unlink(path);
    }
}

/* The context of a model on a node: its own `ctx`, else the node's hardware context_size,
 * else --ctx; --hide-ctx says where it is not shown. */
static void test_context(void **state)
{
    (void)state;
    const char *path = write_tmp("nodes: 3\nctx: 4096\nhide_ctx: models\n"
                                 "models:\n  - name: a\n    ctx: 512\n  - b\n"
                                 "hardware:\n  - context_size: 0\n  - context_size: 2048\n");
    char *argv[] = {"sim", "--config", (char *)path};
    struct sim_config c;
    struct gw_error e = {0};
    assert_int_equal(parse(&c, 3, argv, &e), 0);
    assert_int_equal(sim_config_ctx(&c, c.models[0], 1), 512);  /* the model's own */
    assert_int_equal(sim_config_ctx(&c, c.models[1], 1), 2048); /* node 1's hardware */
    assert_int_equal(sim_config_ctx(&c, c.models[1], 0), 4096); /* --ctx */
    assert_int_equal(sim_config_ctx(&c, c.models[1], 2), 4096);
    assert_int_equal(sim_config_ctx(&c, NULL, 1), 2048);
    assert_int_equal(sim_config_ctx_hidden(&c), 1);
    sim_config_free(&c);
    unlink(path);
    char *plain[] = {"sim", "--ctx", "100"};
    assert_int_equal(parse(&c, 3, plain, &e), 0);
    assert_int_equal(sim_config_ctx(&c, c.models[0], 0), 100);
    assert_int_equal(sim_config_ctx_hidden(&c), 0);
    sim_config_free(&c);
    char *all[] = {"sim", "--hide-ctx", "all"};
    assert_int_equal(parse(&c, 3, all, &e), 0);
    assert_int_equal(sim_config_ctx_hidden(&c), 2);
    assert_int_equal(sim_config_ctx(&c, c.models[0], 0), 0); /* unlimited */
    sim_config_free(&c);
    char *bad[] = {"sim", "--hide-ctx", "some"};
    assert_true(parse(&c, 3, bad, &e) < 0);
    assert_non_null(strstr(e.msg, "--hide-ctx"));
    sim_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_flags),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_yaml_and_override),
        cmocka_unit_test(test_yaml_errors_have_lines),
        cmocka_unit_test(test_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
