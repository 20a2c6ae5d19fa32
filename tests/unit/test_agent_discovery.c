/* test_agent_discovery — nvidia-smi CSV and banner parsing on sample output, os-release and
 * meminfo parsing, and the config pieces that shape discovery and joining: the YAML override,
 * file:line errors, labels, and the state file (atomic, 0600, round trip). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/agent_config.h"
#include "agent/agent_discovery.h"

#define LIT(s) (s), sizeof(s) - 1

static const char SMI_CSV[] = "0, NVIDIA A10, 23028, 22000, 8.6, 550.54.15\n"
                              "1, NVIDIA GeForce RTX 4090, 24564, 1024, 8.9, 550.54.15\r\n"
                              "\n"
                              "2, Tesla T4, [N/A], [Not Supported], 7.5, 550.54.15";

static const char SMI_BANNER[] =
    "Sat Nov 22 20:54:58 2026       \n"
    "+-----------------------------------------------------------------------------------------+\n"
    "| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |\n"
    "|-----------------------------------------+------------------------+----------------------+\n";

static void test_nvidia_smi(void **state)
{
    (void)state;
    struct node_api_discovery d;
    node_api_discovery_init(&d);
    assert_int_equal(agent_discovery_parse_nvidia_smi(LIT(SMI_CSV), &d, NULL), 0);
    assert_int_equal(d.n_gpus, 3);
    assert_int_equal(d.gpus[0].index, 0);
    assert_string_equal(d.gpus[0].name, "NVIDIA A10");
    assert_int_equal(d.gpus[0].vram_total_mb, 23028);
    assert_int_equal(d.gpus[0].vram_free_mb, 22000);
    assert_string_equal(d.gpus[0].compute_capability, "8.6");
    assert_string_equal(d.gpus[0].driver_version, "550.54.15");
    assert_string_equal(d.gpus[1].name, "NVIDIA GeForce RTX 4090");
    assert_string_equal(d.gpus[1].driver_version, "550.54.15"); /* CR dropped */
    assert_int_equal(d.gpus[2].vram_total_mb, -1);
    assert_int_equal(d.gpus[2].vram_free_mb, -1);
    /* empty output: no GPUs */
    assert_int_equal(agent_discovery_parse_nvidia_smi("", 0, &d, NULL), 0);
    assert_int_equal(d.n_gpus, 0);
    /* an error line (driver gone) */
    struct gw_error err = {0};
    assert_int_equal(agent_discovery_parse_nvidia_smi(
                         LIT("NVIDIA-SMI has failed because it couldn't communicate with the "
                             "NVIDIA driver.\n"),
                         &d, &err),
                     GW_E_PARSE);
    assert_non_null(strstr(err.msg, "line 1"));
    assert_int_equal(agent_discovery_parse_nvidia_smi(LIT("x, A10, 1, 1, 8.6, 5\n"), &d, &err),
                     GW_E_PARSE);
    char cuda[32];
    assert_int_equal(agent_discovery_parse_cuda_version(LIT(SMI_BANNER), cuda, sizeof cuda), 0);
    assert_string_equal(cuda, "12.4");
    assert_int_equal(agent_discovery_parse_cuda_version(LIT("no banner"), cuda, sizeof cuda),
                     GW_E_NOTFOUND);
}

static void test_os_mem(void **state)
{
    (void)state;
    char os[64];
    assert_int_equal(agent_discovery_parse_os_release(
                         LIT("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 "
                             "(bookworm)\"\nID=debian\n"),
                         os, sizeof os),
                     0);
    assert_string_equal(os, "Debian GNU/Linux 12 (bookworm)");
    assert_int_equal(agent_discovery_parse_os_release(LIT("PRETTY_NAME=Alpine\n"), os, sizeof os),
                     0);
    assert_string_equal(os, "Alpine");
    assert_int_equal(agent_discovery_parse_os_release(LIT("ID=x\n"), os, sizeof os), GW_E_NOTFOUND);
    int64_t mb = 0;
    assert_int_equal(
        agent_discovery_parse_meminfo(LIT("MemTotal:       65536000 kB\nMemFree:  1 kB\n"), &mb),
        0);
    assert_int_equal(mb, 64000);
    /* collection on this machine fills the basics */
    struct node_api_discovery d;
    node_api_discovery_init(&d);
    agent_discovery_collect(&d, "off");
    assert_true(d.hostname[0] != '\0');
    assert_true(d.cpus > 0);
    assert_int_equal(d.n_gpus, 0);
}

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/test_agent_cfg_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_config(void **state)
{
    (void)state;
    const char *path = write_tmp("gateway: http://127.0.0.1:8080\n"
                                 "join_token: tok\n"
                                 "engine: ollama\n"
                                 "name: gpu-01\n"
                                 "poll_interval: 2s\n"
                                 "labels:\n"
                                 "  zone: a\n"
                                 "discovery:\n"
                                 "  hostname: fixed-host\n"
                                 "  cpus: 8\n"
                                 "  gpus:\n"
                                 "    - index: 0\n"
                                 "      name: NVIDIA A10\n"
                                 "      vram_total_mb: 23028\n"
                                 "      compute_capability: \"8.6\"\n");
    struct agent_config c;
    struct gw_error err = {0};
    char *env[] = {"DROVER_AGENT_JOIN_TOKEN=from-env", "OTHER=1", NULL};
    const char *sets[] = {"label=gpu=a10", "engine_url=http://127.0.0.1:1234"};
    assert_int_equal(agent_config_load(&c, path, env, sets, 2, &err), 0);
    assert_string_equal(c.gateway, "http://127.0.0.1:8080");
    assert_string_equal(c.join_token, "from-env"); /* env over file */
    assert_int_equal(c.engine, NODE_KIND_OLLAMA);
    assert_string_equal(c.engine_url, "http://127.0.0.1:1234");
    assert_int_equal(c.poll_ms, 2000);
    assert_int_equal(c.n_labels, 2);
    assert_string_equal(c.labels[1].key, "gpu");
    assert_string_equal(c.labels[1].value, "a10");
    struct node_api_discovery d;
    node_api_discovery_init(&d);
    snprintf(d.os, sizeof d.os, "detected");
    assert_int_equal(agent_config_apply_discovery(&c, &d, &err), 0);
    assert_string_equal(d.hostname, "fixed-host");
    assert_string_equal(d.os, "detected");
    assert_int_equal(d.cpus, 8);
    assert_int_equal(d.n_gpus, 1);
    assert_int_equal(d.gpus[0].vram_total_mb, 23028);
    assert_string_equal(d.gpus[0].compute_capability, "8.6");
    agent_config_free(&c);
    unlink(path);

    /* default engine URL follows the kind */
    assert_int_equal(agent_config_load(&c, NULL, NULL, (const char *[]){"engine=ollama"}, 1, &err),
                     0);
    assert_string_equal(c.engine_url, "http://127.0.0.1:11434");
    agent_config_free(&c);

    /* one-line errors with file:line */
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"engine: llamacpp\nengine_typo: 1\n", ":2: unknown key 'engine_typo'"},
        {"engine: tgi\n", ":1: engine: 'tgi' is not one of"},
        {"poll_interval: soon\n", ":1: poll_interval"},
        {"labels: [a]\n", ":1: labels: expected a map"},
        {"name: x\ndiscovery:\n  cpus: many\n", ":2: discovery: cpus"},
        {"gateway: http://a:1\n", "join_token"},
        {"name: \"bad name\"\n", "name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = write_tmp(bad[i].text);
        memset(&err, 0, sizeof err);
        int rc = agent_config_load(&c, path, NULL, NULL, 0, &err);
        agent_config_free(&c);
        unlink(path);
        if (rc == 0) fail_msg("accepted: %s", bad[i].text);
        if (!strstr(err.msg, bad[i].want)) fail_msg("'%s' lacks '%s'", err.msg, bad[i].want);
        assert_null(strchr(err.msg, '\n'));
    }
}

static void test_state_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_agent_state_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/agent.state", dir);
    char secret[NODE_API_SECRET_HEX + 1];
    assert_int_equal(agent_state_load(path, secret, NULL), GW_E_NOTFOUND);
    const char *s = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    struct gw_error err = {0};
    assert_int_equal(agent_state_save(path, "gpu-01", s, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0); /* renamed away */
    assert_int_equal(agent_state_load(path, secret, &err), 0);
    assert_string_equal(secret, s);
    /* a second save replaces the secret */
    const char *s2 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    assert_int_equal(agent_state_save(path, "gpu-01", s2, &err), 0);
    assert_int_equal(agent_state_load(path, secret, &err), 0);
    assert_string_equal(secret, s2);
    /* garbage is an error, not an empty secret */
    FILE *f = fopen(path, "w");
    fputs("{\"secret\":\"short\"}", f);
    fclose(f);
    assert_int_equal(agent_state_load(path, secret, &err), GW_E_INVALID);
    unlink(path);
    rmdir(dir);
    /* an unwritable place fails with a reason */
    assert_int_not_equal(agent_state_save("/nonexistent-dir/x.state", "n", s, &err), 0);
    assert_non_null(strstr(err.msg, "nonexistent"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nvidia_smi),
        cmocka_unit_test(test_os_mem),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_state_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
