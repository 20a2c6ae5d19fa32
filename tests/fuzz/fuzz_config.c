/* fuzz_config — the YAML config parser (gw_config_parse: yaml_parse, the key table, nodes,
 * the catalogue) must never crash or leak, whatever the file says. An accepted config must
 * hold the invariants start-up relies on (listen addresses parse, ejection_max >= base, every
 * node has a name and a url, names are unique), and a refused one must leave the defaults and
 * a message. The reload check runs between each accepted config and the defaults, both ways. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gw/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_config cfg, def;
    struct gw_error err = {0};
    int rc = gw_config_parse(&cfg, "fuzz.yaml", (const char *)data, size, &err);
    if (rc) {
        if (rc >= 0 || !err.msg[0]) __builtin_trap();
        if (strcmp(cfg.listen, "127.0.0.1:8080") != 0 || cfg.n_nodes || cfg.n_models)
            __builtin_trap();
        gw_config_free(&cfg);
        return 0;
    }
    char host[128];
    int port;
    if (gw_parse_hostport(cfg.listen, host, sizeof host, &port) ||
        gw_parse_hostport(cfg.admin_listen, host, sizeof host, &port))
        __builtin_trap();
    if (cfg.reg.ejection_max_ms < cfg.reg.ejection_base_ms) __builtin_trap();
    for (size_t i = 0; i < cfg.n_nodes; i++) {
        if (!cfg.nodes[i].name || !cfg.nodes[i].url) __builtin_trap();
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg.nodes[i].name, cfg.nodes[j].name) == 0) __builtin_trap();
    }
    if (cfg.admin_token && !cfg.admin_token[0]) __builtin_trap(); /* empty means absent */
    if (cfg.api_key && !cfg.api_key[0]) __builtin_trap();
    gw_config_defaults(&def);
    (void)gw_config_reload_check(&def, &cfg, &err);
    rc = gw_config_reload_check(&cfg, &def, &err);
    /* the defaults have no token and no node: a config that had one may not reload to them */
    if (!rc && (cfg.admin_token || cfg.api_key || cfg.n_nodes)) __builtin_trap();
    (void)gw_config_exposure_check(&cfg, NULL, NULL, &err);
    gw_config_free(&def);
    gw_config_free(&cfg);
    return 0;
}
