/* Gateway config: file < env < flags precedence, file:line errors for every kind of
 * mistake, node list validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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
    assert_int_equal(cfg.reg.rise, 4);                 /* flag beats file */
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

/* Loads text as a whole config (no environment, no flags) into cfg; asserts it parses. */
static void parse_ok(struct gw_config *cfg, const char *text)
{
    struct gw_error err = {0};
    if (gw_config_parse(cfg, "t.yaml", text, strlen(text), &err)) {
        print_error("'%s' did not parse: %s\n", text, err.msg);
        fail();
    }
}

static void expect_refused(const struct gw_config *cur, const char *next_text, const char *want)
{
    struct gw_config next;
    struct gw_error err = {0};
    parse_ok(&next, next_text);
    assert_int_not_equal(gw_config_reload_check(cur, &next, &err), 0);
    if (!strstr(err.msg, want)) {
        print_error("refusal '%s' lacks '%s'\n", err.msg, want);
        fail();
    }
    gw_config_free(&next);
}

static void expect_taken(const struct gw_config *cur, const char *next_text)
{
    struct gw_config next;
    struct gw_error err = {0};
    parse_ok(&next, next_text);
    if (gw_config_reload_check(cur, &next, &err)) {
        print_error("reload to '%s' refused: %s\n", next_text, err.msg);
        fail();
    }
    gw_config_free(&next);
}

static const char secured[] = "admin_token: adm\n"
                              "api_key: cli\n"
                              "nodes:\n"
                              "  - name: a\n"
                              "    url: http://127.0.0.1:9101\n";

static void test_reload_fails_closed(void **state)
{
    (void)state;
    struct gw_config cur;
    parse_ok(&cur, secured);
    /* an empty file (an editor's truncated save) would drop both tokens and every node */
    expect_refused(&cur, "", "admin_token");
    expect_refused(&cur, "# nothing\n", "allow_no_auth");
    expect_refused(&cur, "api_key: cli\nnodes: [{name: a, url: 'http://127.0.0.1:9101'}]\n",
                   "no admin_token");
    expect_refused(&cur, "admin_token: adm\nnodes: [{name: a, url: 'http://127.0.0.1:9101'}]\n",
                   "no api_key");
    expect_refused(&cur, "admin_token: adm\napi_key: ''\nnodes: [{url: 'http://127.0.0.1:1'}]\n",
                   "no api_key"); /* empty is absent */
    expect_refused(&cur, "admin_token: adm\napi_key: cli\n", "allow_empty_fleet");
    expect_refused(&cur, "admin_token: adm\napi_key: cli\nnodes: []\n", "all 1 static nodes");
    /* one opt-out does not cover the other */
    expect_refused(&cur, "allow_no_auth: true\n", "allow_empty_fleet");
    expect_refused(&cur, "allow_empty_fleet: true\n", "admin_token");
    /* explicit opt-outs are honoured */
    expect_taken(&cur, "allow_no_auth: true\nallow_empty_fleet: true\n");
    expect_taken(&cur, "admin_token: adm\napi_key: cli\nallow_empty_fleet: true\n");
    expect_taken(&cur, "allow_no_auth: true\nnodes: [{url: 'http://127.0.0.1:1'}]\n");
    /* ordinary reloads: new tokens, other nodes, the same file */
    expect_taken(&cur, secured);
    expect_taken(&cur, "admin_token: new\napi_key: new\nnodes: [{url: 'http://127.0.0.1:2'}]\n");
    gw_config_free(&cur);

    /* nothing to lose: an open loopback gateway without nodes may reload to anything */
    parse_ok(&cur, "");
    expect_taken(&cur, "");
    expect_taken(&cur, "api_key: k\n");
    gw_config_free(&cur);
}

static void test_exposure(void **state)
{
    (void)state;
    struct gw_config cfg;
    struct gw_error err = {0};
    parse_ok(&cfg, ""); /* loopback defaults, no tokens */
    assert_int_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    gw_config_free(&cfg);

    parse_ok(&cfg, "listen: 0.0.0.0:8080\n");
    assert_int_not_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "client API listens on 0.0.0.0:8080"));
    gw_config_free(&cfg);

    parse_ok(&cfg, "listen: 0.0.0.0:8080\napi_key: k\nadmin_listen: '[::]:8081'\n");
    assert_int_not_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "admin API"));
    gw_config_free(&cfg);

    parse_ok(&cfg, "listen: 0.0.0.0:8080\nadmin_listen: 10.0.0.1:8081\napi_key: k\n"
                   "admin_token: t\nallow_plain_http: true\n");
    assert_int_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    gw_config_free(&cfg);

    /* tokens but no TLS: refused, saying why and what opts out (DESIGN §10) */
    parse_ok(&cfg, "listen: 0.0.0.0:8080\napi_key: k\n");
    assert_int_not_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "without TLS"));
    assert_non_null(strstr(err.msg, "allow_plain_http"));
    gw_config_free(&cfg);
    parse_ok(&cfg, "listen: 0.0.0.0:8080\napi_key: k\ntls: {cert: c.pem, key: k.pem}\n"
                   "admin_listen: 10.0.0.1:8081\nadmin_token: t\n");
    assert_int_not_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    assert_non_null(
        strstr(err.msg, "admin API listens on 10.0.0.1:8081 (not loopback) without TLS"));
    gw_config_free(&cfg);
    parse_ok(&cfg, "listen: 0.0.0.0:8080\napi_key: k\ntls: {cert: c.pem, key: k.pem}\n"
                   "admin_listen: 10.0.0.1:8081\nadmin_token: t\n"
                   "admin_tls: {cert: c.pem, key: k.pem}\n");
    assert_int_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    gw_config_free(&cfg);

    /* a published join token is refused unless a test says so */
    parse_ok(&cfg, "join: {token: dev-join-token}\n");
    assert_int_not_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "published example"));
    gw_config_free(&cfg);
    parse_ok(&cfg, "join: {token: dev-join-token, allow_example_token: true}\n");
    assert_int_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    gw_config_free(&cfg);

    parse_ok(&cfg, "listen: 0.0.0.0:8080\nallow_no_auth: true\n"); /* open, but still in clear */
    assert_int_not_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "allow_plain_http"));
    gw_config_free(&cfg);
    parse_ok(&cfg, "listen: 0.0.0.0:8080\nallow_no_auth: true\nallow_plain_http: true\n");
    assert_int_equal(gw_config_exposure_check(&cfg, NULL, NULL, &err), 0);
    gw_config_free(&cfg);

    /* on reload the running listeners count, not the file's new (ignored) addresses */
    struct gw_config cur, next;
    parse_ok(&cur, "listen: 0.0.0.0:8080\nallow_no_auth: true\n");
    parse_ok(&next, "listen: 127.0.0.1:8080\n");
    assert_int_not_equal(gw_config_reload_check(&cur, &next, &err), 0);
    assert_non_null(strstr(err.msg, "0.0.0.0:8080"));
    gw_config_free(&cur);
    gw_config_free(&next);

    assert_true(gw_host_is_loopback("127.0.0.1"));
    assert_true(gw_host_is_loopback("127.9.8.7"));
    assert_true(gw_host_is_loopback("::1"));
    assert_true(gw_host_is_loopback("::ffff:127.0.0.1"));
    assert_true(gw_host_is_loopback("LocalHost"));
    assert_false(gw_host_is_loopback("0.0.0.0"));
    assert_false(gw_host_is_loopback("::"));
    assert_false(gw_host_is_loopback("10.0.0.1"));
    assert_false(gw_host_is_loopback("128.0.0.1"));
    assert_false(gw_host_is_loopback("gateway.internal"));
}

static void test_parse_from_memory(void **state)
{
    (void)state;
    struct gw_config cfg;
    struct gw_error err = {0};
    parse_ok(&cfg, "allow_no_auth: yes\nallow_empty_fleet: false\n");
    assert_true(cfg.allow_no_auth);
    assert_false(cfg.allow_empty_fleet);
    gw_config_free(&cfg);
    const char bad[] = "health:\n  rise: 0\n";
    assert_int_not_equal(gw_config_parse(&cfg, "mem.yaml", bad, strlen(bad), &err), 0);
    assert_non_null(strstr(err.msg, "mem.yaml:2: health.rise"));
    assert_string_equal(cfg.listen, "127.0.0.1:8080"); /* defaults after a failure */
    gw_config_free(&cfg);
}

/* join.enabled without a token: generated once into a 0600 file beside the store, reused. */
static void test_join_token_generated(void **state)
{
    (void)state;
    char dir[] = "/tmp/drover-test-join-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char yaml[256], file[300];
    snprintf(yaml, sizeof yaml, "store: {path: %s/d.db}\njoin: {enabled: true}\n", dir);
    snprintf(file, sizeof file, "%s/d.db.join-token", dir);
    struct gw_config cfg;
    struct gw_error err = {0};
    char *gen;
    const char *where;
    parse_ok(&cfg, yaml);
    assert_int_equal(gw_config_join_token_resolve(&cfg, &gen, &where, &err), 0);
    assert_non_null(gen);
    assert_string_equal(where, file);
    assert_int_equal(strncmp(gen, "djt-", 4), 0);
    assert_int_equal(strlen(gen), 52);
    char first[64];
    snprintf(first, sizeof first, "%s", gen);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    gw_config_free(&cfg);

    parse_ok(&cfg, yaml); /* the second start reads it back and shows nothing */
    assert_int_equal(gw_config_join_token_resolve(&cfg, &gen, &where, &err), 0);
    assert_null(gen);
    assert_string_equal(cfg.join_token, first);
    gw_config_free(&cfg);

    assert_int_equal(chmod(file, 0644), 0); /* readable by others: refused */
    parse_ok(&cfg, yaml);
    assert_int_not_equal(gw_config_join_token_resolve(&cfg, &gen, &where, &err), 0);
    assert_non_null(strstr(err.msg, "chmod 600"));
    gw_config_free(&cfg);
    assert_int_equal(unlink(file), 0);

    /* an explicit token wins; joining off generates nothing */
    snprintf(yaml, sizeof yaml,
             "store: {path: %s/d.db}\njoin: {enabled: true, token: own-secret-1234567}\n", dir);
    parse_ok(&cfg, yaml);
    assert_int_equal(gw_config_join_token_resolve(&cfg, &gen, &where, &err), 0);
    assert_null(gen);
    assert_string_equal(cfg.join_token, "own-secret-1234567");
    gw_config_free(&cfg);
    snprintf(yaml, sizeof yaml, "store: {path: %s/d.db}\n", dir);
    parse_ok(&cfg, yaml);
    assert_int_equal(gw_config_join_token_resolve(&cfg, &gen, &where, &err), 0);
    assert_null(cfg.join_token);
    gw_config_free(&cfg);
    assert_int_not_equal(access(file, F_OK), 0);
    parse_ok(&cfg, "store: {engine: postgres, url: 'host=x'}\njoin: {enabled: true}\n");
    assert_int_not_equal(gw_config_join_token_resolve(&cfg, &gen, &where, &err), 0);
    assert_non_null(strstr(err.msg, "join.token_file"));
    gw_config_free(&cfg);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_env_and_set_errors),
        cmocka_unit_test(test_reload_fails_closed),
        cmocka_unit_test(test_exposure),
        cmocka_unit_test(test_join_token_generated),
        cmocka_unit_test(test_parse_from_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
