/* test_agent_config — the agent's TLS settings (docs/agent.md "TLS") through all three
 * sources (a nested tls: map in YAML, DROVER_AGENT_TLS_* variables, flags), the checks that
 * refuse settings that do not go together, the fail-closed rule for plain HTTP beyond
 * loopback (DESIGN §10), the advertised URL's scheme, and the gateway URL parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_config.h"
#include "agent/agent_engine.h"

static char yaml_path[64];

static int load(struct agent_config *c, const char *yaml, char *const *env, const char *const *sets,
                size_t n_sets, struct gw_error *err)
{
    const char *path = NULL;
    if (yaml) {
        snprintf(yaml_path, sizeof yaml_path, "/tmp/drover-agent-config.XXXXXX");
        int fd = mkstemp(yaml_path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
        close(fd);
        path = yaml_path;
    }
    int rc = agent_config_load(c, path, env, sets, n_sets, err);
    if (yaml) unlink(yaml_path);
    return rc;
}

/* Loads and expects a refusal whose message holds want; frees the config. */
static void refused(const char *yaml, const char *const *sets, size_t n_sets, const char *want)
{
    struct agent_config c;
    struct gw_error err = {0};
    assert_int_equal(load(&c, yaml, NULL, sets, n_sets, &err), GW_E_INVALID);
    if (!strstr(err.msg, want)) fail_msg("'%s' does not say '%s'", err.msg, want);
    agent_config_free(&c);
}

static void test_tls_from_yaml_env_and_flags(void **state)
{
    (void)state;
    struct agent_config c;
    struct gw_error err = {0};
    const char *yaml = "gateway: https://gw.example:8443\n"
                       "join_token: t\n"
                       "gateway_ca_file: /etc/drover/fleet-ca.pem\n"
                       "listen: 0.0.0.0:9300\n"
                       "advertise: https://10.0.0.5:9300\n"
                       "tls:\n"
                       "  cert: /etc/drover/agent.pem\n"
                       "  key: /etc/drover/agent.key\n"
                       "  min_version: \"1.3\"\n";
    char *env[] = {"DROVER_AGENT_TLS_CLIENT_CA=/etc/drover/gw-ca.pem", "PATH=/bin", NULL};
    assert_int_equal(load(&c, yaml, env, NULL, 0, &err), 0);
    assert_string_equal(c.tls_cert, "/etc/drover/agent.pem");
    assert_string_equal(c.tls_key, "/etc/drover/agent.key");
    assert_string_equal(c.tls_min_version, "1.3");
    assert_string_equal(c.tls_client_ca, "/etc/drover/gw-ca.pem");
    assert_string_equal(c.gateway_ca_file, "/etc/drover/fleet-ca.pem");
    assert_true(agent_config_has_tls(&c));
    assert_false(c.allow_plain_http);
    agent_config_free(&c);

    /* flags win over the file; an empty value clears a setting */
    const char *sets[] = {"tls.key=/other.key", "tls.client_ca=", "allow_plain_http=true"};
    assert_int_equal(load(&c, yaml, env, sets, 3, &err), 0);
    assert_string_equal(c.tls_key, "/other.key");
    assert_null(c.tls_client_ca);
    assert_true(c.allow_plain_http);
    agent_config_free(&c);

    /* an unknown member of the tls map is named with its line */
    refused("tls:\n  cert: a\n  kee: b\n", NULL, 0, ":3: unknown key 'tls.kee'");
    refused("tls:\n  cert:\n    - a\n", NULL, 0, "tls.cert: expected a single value");
    const char *bad_bool[] = {"allow_plain_http=maybe"};
    refused(NULL, bad_bool, 1, "allow_plain_http: 'maybe' is not true or false");
}

static void test_tls_settings_that_go_together(void **state)
{
    (void)state;
    const char *cert_only[] = {"tls.cert=/a.pem"};
    refused(NULL, cert_only, 1, "tls.cert and tls.key go together");
    const char *ca_only[] = {"tls.client_ca=/ca.pem"};
    refused(NULL, ca_only, 1, "tls.client_ca: mutual TLS needs the listener's tls.cert");
    const char *minv[] = {"tls.cert=/a.pem", "tls.key=/a.key", "tls.min_version=1.1"};
    refused(NULL, minv, 3, "tls.min_version: '1.1' is not 1.2 or 1.3");
    const char *adv[] = {"tls.cert=/a.pem", "tls.key=/a.key", "advertise=http://127.0.0.1:9300"};
    refused(NULL, adv, 3, "advertise an https:// URL");
    const char *ca_plain[] = {"gateway=http://127.0.0.1:8080", "join_token=t",
                              "gateway_ca_file=/ca.pem"};
    refused(NULL, ca_plain, 3, "gateway_ca_file: set, but the gateway URL is not https://");
    const char *ca_alone[] = {"gateway_ca_file=/ca.pem"};
    refused(NULL, ca_alone, 1, "gateway_ca_file");
    const char *bad_url[] = {"gateway=ftp://127.0.0.1", "join_token=t"};
    refused(NULL, bad_url, 2, "gateway:");
    const char *bad_listen[] = {"listen=nowhere"};
    refused(NULL, bad_listen, 1, "listen: 'nowhere' is not HOST:PORT");
}

static void test_plain_http_beyond_loopback(void **state)
{
    (void)state;
    /* the join token and the secret to a non-loopback gateway in clear */
    const char *gw_plain[] = {"gateway=http://10.0.0.1:8080", "join_token=t"};
    refused(NULL, gw_plain, 2,
            "the gateway http://10.0.0.1:8080 is plain http to a non-loopback address");
    const char *gw_name[] = {"gateway=http://gw.example:8080", "join_token=t"};
    refused(NULL, gw_name, 2, "allow_plain_http: true");
    /* the gateway's key, prompts and answers to a plain listener beyond loopback */
    const char *any[] = {"listen=0.0.0.0:9300"};
    refused(NULL, any, 1, "the agent listens on 0.0.0.0:9300 (not loopback) without TLS");
    const char *v6[] = {"listen=[::]:9300"};
    refused(NULL, v6, 1, "(not loopback) without TLS");

    struct agent_config c;
    struct gw_error err = {0};
    const char *ok[][4] = {
        {"gateway=http://127.0.0.1:8080", "join_token=t", "listen=127.0.0.1:0", NULL},
        {"gateway=http://localhost:8080", "join_token=t", "listen=[::1]:9300", NULL},
        {"gateway=http://[::1]:8080", "join_token=t", "listen=localhost:9300", NULL},
        {"gateway=https://10.0.0.1:8443", "join_token=t", "listen=127.0.0.1:0", NULL},
        {"gateway=http://10.0.0.1:8080", "join_token=t", "allow_plain_http=1", NULL},
        {"listen=0.0.0.0:9300", "tls.cert=/a.pem", "tls.key=/a.key", NULL},
        {"listen=0.0.0.0:9300", "allow_plain_http=true", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        size_t n = 0;
        while (n < 4 && ok[i][n]) n++;
        if (load(&c, NULL, NULL, ok[i], n, &err)) fail_msg("case %zu: %s", i, err.msg);
        assert_int_equal(agent_config_exposure_check(&c, &err), 0);
        agent_config_free(&c);
    }
}

static void test_advertise(void **state)
{
    (void)state;
    struct agent_config c;
    struct gw_error err = {0};
    char url[256];
    assert_int_equal(load(&c, NULL, NULL, NULL, 0, &err), 0);
    agent_config_advertise(&c, "127.0.0.1:9300", url, sizeof url);
    assert_string_equal(url, "http://127.0.0.1:9300");
    agent_config_free(&c);
    const char *tls[] = {"tls.cert=/a.pem", "tls.key=/a.key"};
    assert_int_equal(load(&c, NULL, NULL, tls, 2, &err), 0);
    agent_config_advertise(&c, "127.0.0.1:40123", url, sizeof url);
    assert_string_equal(url, "https://127.0.0.1:40123");
    agent_config_free(&c);
    const char *set[] = {"tls.cert=/a.pem", "tls.key=/a.key", "advertise=https://10.0.0.5:9300"};
    assert_int_equal(load(&c, NULL, NULL, set, 3, &err), 0);
    agent_config_advertise(&c, "0.0.0.0:9300", url, sizeof url);
    assert_string_equal(url, "https://10.0.0.5:9300");
    agent_config_free(&c);
}

static void test_parse_base_url(void **state)
{
    (void)state;
    char host[64];
    int port = 0;
    bool tls = false;
    assert_int_equal(
        agent_engine_parse_base_url("https://10.0.0.1", host, sizeof host, &port, &tls, NULL), 0);
    assert_string_equal(host, "10.0.0.1");
    assert_int_equal(port, 443);
    assert_true(tls);
    assert_int_equal(
        agent_engine_parse_base_url("http://[::1]:8080/", host, sizeof host, &port, &tls, NULL), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8080);
    assert_false(tls);
    assert_int_equal(agent_engine_parse_base_url("https://gw.example:8443", host, sizeof host,
                                                 &port, &tls, NULL),
                     0);
    assert_string_equal(host, "gw.example");
    assert_int_equal(port, 8443);
    assert_true(tls);
    assert_int_equal(agent_engine_parse_base_url("ftp://gw", host, sizeof host, &port, &tls, NULL),
                     GW_E_INVALID);
    assert_int_equal(
        agent_engine_parse_base_url("https://gw/v1", host, sizeof host, &port, &tls, NULL),
        GW_E_INVALID);
    /* the engine stays plain http */
    struct gw_error err = {0};
    assert_int_equal(
        agent_engine_parse_url("https://127.0.0.1:8080", host, sizeof host, &port, &err),
        GW_E_INVALID);
    assert_non_null(strstr(err.msg, "expected http://HOST:PORT"));
    assert_int_equal(agent_engine_parse_url("http://127.0.0.1", host, sizeof host, &port, NULL), 0);
    assert_int_equal(port, 80);
}

static void test_split_hostport(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(agent_config_split_hostport("[::1]:9300", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9300);
    assert_int_equal(agent_config_split_hostport("0.0.0.0:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(agent_config_split_hostport("9300", host, sizeof host, &port), GW_E_INVALID);
    assert_int_equal(agent_config_split_hostport("h:70000", host, sizeof host, &port),
                     GW_E_INVALID);
    assert_int_equal(agent_config_split_hostport(NULL, host, sizeof host, &port), GW_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_from_yaml_env_and_flags),
        cmocka_unit_test(test_tls_settings_that_go_together),
        cmocka_unit_test(test_plain_http_beyond_loopback),
        cmocka_unit_test(test_advertise),
        cmocka_unit_test(test_parse_base_url),
        cmocka_unit_test(test_split_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
