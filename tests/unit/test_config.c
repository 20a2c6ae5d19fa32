/* Gateway config: file < env < flags precedence, file:line errors for every kind of
 * mistake, node list validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw/config.h"

static char path[64];

static const char *write_file(const char *text)
{
    snprintf(path, sizeof path, "/tmp/drover-test-config-%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_good(void **state)
{
    (void)state;
    const char *p = write_file("listen: 127.0.0.1:9000\n"
                               "health:\n"
                               "  interval: 2s\n"
                               "  rise: 1\n"
                               "faults:\n"
                               "  auto_recover: true\n"
                               "limits:\n"
                               "  max_body_bytes: 1MiB\n"
                               "nodes:\n"
                               "  - name: a\n"
                               "    url: http://127.0.0.1:9101\n"
                               "    kind: ollama\n"
                               "    labels: {gpu: a100, zone: x}\n"
                               "  - url: http://127.0.0.1:9102\n");
    struct gw_config cfg;
    struct gw_error err = {0};
    char *envp[] = {"DROVER_HEALTH_INTERVAL=3s", "DROVER_UNRELATED=1", "PATH=/bin", NULL};
    const char *sets[] = {"health.rise=4"};
    assert_int_equal(gw_config_load(&cfg, p, envp, sets, 1, &err), 0);
    assert_string_equal(cfg.listen, "127.0.0.1:9000");
    assert_int_equal(cfg.reg.probe_interval_ms, 3000); /* env beats file */
    assert_int_equal(cfg.reg.rise, 4);             /* flag beats file */
    assert_true(cfg.reg.auto_recover);
    assert_int_equal(cfg.max_body_bytes, 1 << 20);
    assert_int_equal(cfg.n_nodes, 2);
    assert_int_equal(cfg.nodes[0].kind, NODE_KIND_OLLAMA);
    assert_int_equal(cfg.nodes[0].n_labels, 2);
    assert_string_equal(cfg.nodes[0].labels[0].value, "a100");
    assert_string_equal(cfg.nodes[1].name, "127.0.0.1:9102");
    assert_int_equal(cfg.reg.fall, 3); /* default kept */
    gw_config_free(&cfg);
    unlink(p);
}

static void expect_error(const char *text, const char *want_substring)
{
    const char *p = write_file(text);
    struct gw_config cfg;
    struct gw_error err = {0};
    assert_int_not_equal(gw_config_load(&cfg, p, NULL, NULL, 0, &err), 0);
    if (!strstr(err.msg, want_substring)) {
        print_error("error '%s' lacks '%s'\n", err.msg, want_substring);
        fail();
    }
    assert_non_null(strstr(err.msg, path)); /* names the file */
    /* a failed load leaves the defaults */
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    gw_config_free(&cfg);
    unlink(p);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("listen: 1.2.3.4:80\nhelth:\n  interval: 2s\n", ":2: unknown section 'helth'");
    expect_error("health:\n  intervall: 2s\n", ":2: unknown key 'health.intervall'");
    expect_error("health:\n  interval: soon\n", ":2: health.interval: 'soon' is not a duration");
    expect_error("health:\n  rise: 0\n", ":2: health.rise: 0 is outside 1..100");
    expect_error("listen: nohost\n", ":1: listen: 'nohost' is not host:port");
    expect_error("nodes:\n  - name: a\n    url: ftp://x\n", ":2:");
    expect_error("nodes:\n  - name: a\n    url: http://127.0.0.1:1\n    kind: tgi\n",
                 ":4: kind 'tgi'");
    expect_error("nodes:\n  - url: http://127.0.0.1:1\n    name: a\n  - url: http://127.0.0.1:2\n"
                 "    name: a\n",
                 "duplicate node name 'a'");
    expect_error("listen: [a, b\n", ":");
    expect_error("a: &x 1\nb: *x\n", "anchors");
    expect_error("log_level: loud\n", ":1: log_level");
    expect_error("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", ":2: duplicate key 'listen'");
}

static void test_env_and_set_errors(void **state)
{
    (void)state;
    struct gw_config cfg;
    struct gw_error err = {0};
    char *envp[] = {"DROVER_HEALTH_FALL=many", NULL};
    assert_int_not_equal(gw_config_load(&cfg, NULL, envp, NULL, 0, &err), 0);
    assert_non_null(strstr(err.msg, "env DROVER_HEALTH_FALL"));
    gw_config_free(&cfg);
    const char *sets[] = {"nope.key=1"};
    assert_int_not_equal(gw_config_load(&cfg, NULL, NULL, sets, 1, &err), 0);
    assert_non_null(strstr(err.msg, "unknown key"));
    gw_config_free(&cfg);
    const char *missing = "/nonexistent/drover.yaml";
    assert_int_not_equal(gw_config_load(&cfg, missing, NULL, NULL, 0, &err), 0);
    assert_non_null(strstr(err.msg, missing));
    gw_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_env_and_set_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
