/* agent_config — one table of scalar keys drives the YAML file, DROVER_AGENT_* variables and
 * flags; `labels` (map) and `discovery` (override object) exist only in the file, plus
 * `--label k=v` on the command line. Dotted keys (tls.cert) are nested maps in the file and
 * DROVER_AGENT_TLS_CERT in the environment. The checks at the end refuse settings that would
 * put a secret on the network in clear (DESIGN §10). Main thread, before the loop. */
#include "agent/agent_config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_engine.h"
#include "agent/agent_upgrade.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/yaml.h"
#include "net/http_client.h"

enum ktype { K_STR, K_ENGINE, K_DURATION, K_LOGLEVEL, K_BOOL, K_UINT };

struct key_def {
    const char *name;
    enum ktype type;
    size_t off;
    uint64_t min, max;
};

#define OFF(f) offsetof(struct agent_config, f)
static const struct key_def keys[] = {
    {"gateway", K_STR, OFF(gateway), 0, 0},
    {"join_token", K_STR, OFF(join_token), 0, 0},
    {"engine", K_ENGINE, OFF(engine), 0, 0},
    {"engine_url", K_STR, OFF(engine_url), 0, 0},
    {"engine_api_key", K_STR, OFF(engine_api_key), 0, 0},
    {"name", K_STR, OFF(name), 0, 0},
    {"listen", K_STR, OFF(listen), 0, 0},
    {"advertise", K_STR, OFF(advertise), 0, 0},
    {"state_file", K_STR, OFF(state_file), 0, 0},
    {"nvidia_smi", K_STR, OFF(nvidia_smi), 0, 0},
    {"poll_interval", K_DURATION, OFF(poll_ms), 100, 3600000},
    {"engine_timeout", K_DURATION, OFF(engine_timeout_ms), 10, 600000},
    {"first_byte_timeout", K_DURATION, OFF(first_byte_timeout_ms), 10, 86400000},
    {"load_timeout", K_DURATION, OFF(load_timeout_ms), 10, 86400000},
    {"shutdown_grace", K_DURATION, OFF(shutdown_grace_ms), 0, 3600000},
    {"discovery_interval", K_DURATION, OFF(discovery_interval_ms), 100, 86400000},
    {"log_level", K_LOGLEVEL, OFF(log_level), 0, 0},
    {"ops_timeout", K_DURATION, OFF(ops_timeout_ms), 100, 86400000},
    {"tls.cert", K_STR, OFF(tls_cert), 0, 0},
    {"tls.key", K_STR, OFF(tls_key), 0, 0},
    {"tls.client_ca", K_STR, OFF(tls_client_ca), 0, 0},
    {"tls.min_version", K_STR, OFF(tls_min_version), 0, 0},
    {"gateway_ca_file", K_STR, OFF(gateway_ca_file), 0, 0},
    {"allow_plain_http", K_BOOL, OFF(allow_plain_http), 0, 0},
    {"upgrade_check.models", K_STR, OFF(upgrade_check_models), 0, 0},
    {"upgrade_check.backends", K_STR, OFF(upgrade_check_backends), 0, 0},
    {"upgrade_check.interval", K_DURATION, OFF(upgrade_check_interval_ms), 1000, 30 * 86400000ULL},
    {"upgrade_check.timeout", K_DURATION, OFF(upgrade_check_timeout_ms), 100, 3600000},
    {"upgrade_check.concurrency", K_UINT, OFF(upgrade_check_concurrency), 1, 64},
};

const char *const agent_ops_templates[AGENT_OPS_N_TEMPLATES] = {
    "model.install",   "model.upgrade",  "model.delete", "backend.install",
    "backend.upgrade", "backend.delete", "backend.list",
};
#undef OFF
enum { N_KEYS = sizeof keys / sizeof keys[0], AGENT_CONFIG_MAX_BYTES = 1024 * 1024 };

static void defaults(struct agent_config *c)
{
    memset(c, 0, sizeof *c);
    c->engine = NODE_KIND_LLAMACPP;
    c->listen = xstrdup("127.0.0.1:9300");
    c->state_file = xstrdup("drover-agent.state");
    c->nvidia_smi = xstrdup("nvidia-smi");
    c->poll_ms = 10000;
    c->engine_timeout_ms = 5000;
    c->first_byte_timeout_ms = 600000;
    c->load_timeout_ms = 600000;
    c->shutdown_grace_ms = 30000;
    c->discovery_interval_ms = 60000;
    c->ops_timeout_ms = 600000;
    c->upgrade_check_interval_ms = 3600000;
    c->upgrade_check_timeout_ms = 60000;
    c->upgrade_check_concurrency = 2;
    c->log_level = LOG_INFO;
}

static int set_key(struct agent_config *c, const struct key_def *k, const char *val,
                   const char *where, struct gw_error *err)
{
    char *base = (char *)c + k->off;
    switch (k->type) {
    case K_STR: {
        char **dst = (char **)(void *)base;
        xfree(*dst);
        *dst = val[0] ? xstrdup(val) : NULL;
        return 0;
    }
    case K_ENGINE:
        if (node_kind_parse(val, (enum node_kind *)(void *)base))
            return gw_error_set(err, GW_E_INVALID,
                                "%s%s: '%s' is not one of llamacpp, ollama, vllm, openai", where,
                                k->name, val);
        return 0;
    case K_DURATION: {
        uint64_t v;
        if (parse_duration_ms_str(val, &v) || v < k->min || v > k->max)
            return gw_error_set(
                err, GW_E_INVALID, "%s%s: '%s' is not a duration between %llums and %llums", where,
                k->name, val, (unsigned long long)k->min, (unsigned long long)k->max);
        *(uint64_t *)(void *)base = v;
        return 0;
    }
    case K_LOGLEVEL:
        if (log_parse_level(val, (enum log_level *)(void *)base))
            return gw_error_set(err, GW_E_INVALID, "%s%s: '%s' is not a log level", where, k->name,
                                val);
        return 0;
    case K_BOOL:
        if (parse_bool_str(val, (bool *)(void *)base))
            return gw_error_set(err, GW_E_INVALID, "%s%s: '%s' is not true or false", where,
                                k->name, val);
        return 0;
    case K_UINT: {
        uint64_t v;
        if (strv_to_u64(strv_from_cstr(val), &v) || v < k->min || v > k->max)
            return gw_error_set(
                err, GW_E_INVALID, "%s%s: '%s' is not a whole number from %llu to %llu", where,
                k->name, val, (unsigned long long)k->min, (unsigned long long)k->max);
        *(uint64_t *)(void *)base = v;
        return 0;
    }
    }
    return GW_E_INVALID;
}

static const struct key_def *find_key(const char *name, size_t len)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strlen(keys[i].name) == len && strncmp(keys[i].name, name, len) == 0) return &keys[i];
    return NULL;
}

/* An environment variable's name, lower-cased: '_' stands for the '.' of a dotted key. */
static const struct key_def *find_env_key(const char *lower, size_t len)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *k = keys[i].name;
        if (strlen(k) != len) continue;
        size_t j = 0;
        while (j < len && (k[j] == lower[j] || (k[j] == '.' && lower[j] == '_'))) j++;
        if (j == len) return &keys[i];
    }
    return NULL;
}

static int add_label(struct agent_config *c, const char *k, const char *v, const char *where,
                     struct gw_error *err)
{
    if (!k[0] || strlen(k) >= NODE_API_MAX_TEXT || strlen(v) >= NODE_API_MAX_TEXT)
        return gw_error_set(err, GW_E_INVALID, "%slabels: keys and values of 1..%d bytes", where,
                            NODE_API_MAX_TEXT - 1);
    for (size_t i = 0; i < c->n_labels; i++)
        if (strcmp(c->labels[i].key, k) == 0) {
            snprintf(c->labels[i].value, sizeof c->labels[i].value, "%s", v);
            return 0;
        }
    if (c->n_labels >= NODE_API_MAX_LABELS)
        return gw_error_set(err, GW_E_INVALID, "%slabels: more than %d", where,
                            NODE_API_MAX_LABELS);
    snprintf(c->labels[c->n_labels].key, NODE_API_MAX_TEXT, "%s", k);
    snprintf(c->labels[c->n_labels].value, NODE_API_MAX_TEXT, "%s", v);
    c->n_labels++;
    return 0;
}

/* YAML → JSON text for the discovery override: unquoted integer scalars become numbers. */
static int yaml_to_json(const struct ynode *n, struct buf *out)
{
    int rc = 0;
    if (n->type == YNODE_SCALAR) {
        uint64_t v;
        if (!n->quoted && ynode_u64(n, &v) == 0)
            return buf_appendf(out, "%llu", (unsigned long long)v);
        return json_append_str(out, n->scalar, strlen(n->scalar));
    }
    rc = buf_append_cstr(out, n->type == YNODE_MAP ? "{" : "[");
    for (size_t i = 0; i < n->n && !rc; i++) {
        if (i) rc = buf_append_cstr(out, ",");
        if (!rc && n->type == YNODE_MAP) {
            rc = json_append_str(out, n->keys[i], strlen(n->keys[i]));
            if (!rc) rc = buf_append_cstr(out, ":");
        }
        if (!rc) rc = yaml_to_json(n->kids[i], out);
    }
    if (!rc) rc = buf_append_cstr(out, n->type == YNODE_MAP ? "}" : "]");
    return rc;
}

static int load_file(struct agent_config *c, const char *path, struct gw_error *err)
{
    struct ynode *root = yaml_load_file(path, AGENT_CONFIG_MAX_BYTES, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    int rc = 0;
    char where[600];
    if (root->type != YNODE_MAP) {
        rc = gw_error_set(err, GW_E_INVALID, "%s:%d: expected a map of settings", path, root->line);
        goto out;
    }
    for (size_t i = 0; i < root->n && !rc; i++) {
        const char *key = root->keys[i];
        struct ynode *v = root->kids[i];
        snprintf(where, sizeof where, "%s:%d: ", path, root->key_lines[i]);
        if (strcmp(key, "labels") == 0) {
            if (v->type != YNODE_MAP) {
                rc = gw_error_set(err, GW_E_INVALID, "%slabels: expected a map", where);
                break;
            }
            for (size_t l = 0; l < v->n && !rc; l++) {
                snprintf(where, sizeof where, "%s:%d: ", path, v->key_lines[l]);
                if (v->kids[l]->type != YNODE_SCALAR)
                    rc = gw_error_set(err, GW_E_INVALID, "%slabels.%s: expected a string", where,
                                      v->keys[l]);
                else
                    rc = add_label(c, v->keys[l], v->kids[l]->scalar, where, err);
            }
            continue;
        }
        if (strcmp(key, "ops_commands") == 0) {
            if (v->type != YNODE_MAP) {
                rc = gw_error_set(err, GW_E_INVALID, "%sops_commands: expected a map", where);
                break;
            }
            for (size_t t = 0; t < v->n && !rc; t++) {
                snprintf(where, sizeof where, "%s:%d: ", path, v->key_lines[t]);
                size_t k = 0;
                while (k < AGENT_OPS_N_TEMPLATES && strcmp(agent_ops_templates[k], v->keys[t])) k++;
                if (k == AGENT_OPS_N_TEMPLATES)
                    rc = gw_error_set(err, GW_E_INVALID,
                                      "%sops_commands.%s: not one of model.install, "
                                      "model.upgrade, model.delete, backend.install, "
                                      "backend.upgrade, backend.delete, backend.list",
                                      where, v->keys[t]);
                else if (v->kids[t]->type != YNODE_SCALAR || !*v->kids[t]->scalar)
                    rc = gw_error_set(err, GW_E_INVALID, "%sops_commands.%s: expected a command",
                                      where, v->keys[t]);
                else {
                    xfree(c->ops_commands[k]);
                    c->ops_commands[k] = xstrdup(v->kids[t]->scalar);
                }
            }
            continue;
        }
        if (strcmp(key, "discovery") == 0) {
            if (v->type != YNODE_MAP) {
                rc = gw_error_set(err, GW_E_INVALID, "%sdiscovery: expected a map", where);
                break;
            }
            struct buf b;
            buf_init(&b, AGENT_CONFIG_MAX_BYTES);
            if (yaml_to_json(v, &b)) {
                buf_free(&b);
                rc = gw_error_set(err, GW_E_INVALID, "%sdiscovery: too large", where);
                break;
            }
            xfree(c->discovery_json);
            c->discovery_json = buf_take(&b, NULL);
            struct node_api_discovery d;
            node_api_discovery_init(&d);
            struct gw_error e2 = {0};
            if (agent_config_apply_discovery(c, &d, &e2))
                rc = gw_error_set(err, GW_E_INVALID, "%sdiscovery: %s", where, e2.msg);
            continue;
        }
        if (v->type == YNODE_MAP) { /* tls: {cert: …} is tls.cert */
            for (size_t m = 0; m < v->n && !rc; m++) {
                char dotted[128];
                snprintf(where, sizeof where, "%s:%d: ", path, v->key_lines[m]);
                snprintf(dotted, sizeof dotted, "%s.%s", key, v->keys[m]);
                const struct key_def *k = find_key(dotted, strlen(dotted));
                if (!k)
                    rc = gw_error_set(err, GW_E_INVALID, "%sunknown key '%s'", where, dotted);
                else if (v->kids[m]->type != YNODE_SCALAR)
                    rc = gw_error_set(err, GW_E_INVALID, "%s%s: expected a single value", where,
                                      dotted);
                else
                    rc = set_key(c, k, v->kids[m]->scalar, where, err);
            }
            continue;
        }
        const struct key_def *k = find_key(key, strlen(key));
        if (!k) {
            rc = gw_error_set(err, GW_E_INVALID, "%sunknown key '%s'", where, key);
            break;
        }
        if (v->type != YNODE_SCALAR) {
            rc = gw_error_set(err, GW_E_INVALID, "%s%s: expected a single value", where, key);
            break;
        }
        rc = set_key(c, k, v->scalar, where, err);
    }
out:
    ynode_free(root);
    return rc;
}

static int check_tls(const struct agent_config *c, struct gw_error *err);

int agent_config_load(struct agent_config *c, const char *path, char *const *env,
                      const char *const *sets, size_t n_sets, struct gw_error *err)
{
    defaults(c);
    int rc = 0;
    if (path && (rc = load_file(c, path, err))) return rc;
    for (size_t e = 0; env && env[e]; e++) {
        static const char pre[] = "DROVER_AGENT_";
        if (strncmp(env[e], pre, sizeof pre - 1) != 0) continue;
        const char *name = env[e] + sizeof pre - 1;
        const char *eq = strchr(name, '=');
        if (!eq) continue;
        char lower[64];
        size_t n = (size_t)(eq - name);
        if (n >= sizeof lower) continue;
        for (size_t i = 0; i < n; i++)
            lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
        lower[n] = '\0';
        const struct key_def *k = find_env_key(lower, n);
        if (!k) continue; /* other tools' variables share the prefix rarely; ignore */
        char where[96];
        snprintf(where, sizeof where, "DROVER_AGENT_%.*s: ", (int)n, name);
        if ((rc = set_key(c, k, eq + 1, where, err))) return rc;
    }
    for (size_t i = 0; i < n_sets; i++) {
        const char *eq = strchr(sets[i], '=');
        if (!eq) return gw_error_set(err, GW_E_INVALID, "'%s': expected KEY=VALUE", sets[i]);
        size_t n = (size_t)(eq - sets[i]);
        if (n == 5 && strncmp(sets[i], "label", 5) == 0) {
            const char *kv = eq + 1, *eq2 = strchr(kv, '=');
            if (!eq2) return gw_error_set(err, GW_E_INVALID, "--label %s: expected KEY=VALUE", kv);
            char key[NODE_API_MAX_TEXT];
            snprintf(key, sizeof key, "%.*s", (int)(eq2 - kv), kv);
            if ((rc = add_label(c, key, eq2 + 1, "--label: ", err))) return rc;
            continue;
        }
        const struct key_def *k = find_key(sets[i], n);
        if (!k) return gw_error_set(err, GW_E_INVALID, "unknown key '%.*s'", (int)n, sets[i]);
        if ((rc = set_key(c, k, eq + 1, "", err))) return rc;
    }
    if (!c->engine_url) {
        static const char *const def[NODE_KIND_COUNT] = {
            [NODE_KIND_LLAMACPP] = "http://127.0.0.1:8080",
            [NODE_KIND_OLLAMA] = "http://127.0.0.1:11434",
            [NODE_KIND_VLLM] = "http://127.0.0.1:8000",
            [NODE_KIND_OPENAI] = "http://127.0.0.1:8000",
        };
        c->engine_url = xstrdup(def[c->engine]);
    }
    if (!c->name) {
        char host[256];
        if (gethostname(host, sizeof host) != 0) host[0] = '\0';
        host[sizeof host - 1] = '\0';
        /* a hostname is a valid node name unless it is not; then say so */
        c->name = xstrdup(host[0] ? host : "node");
    }
    if (!node_api_name_is_valid(strv_from_cstr(c->name)))
        return gw_error_set(err, GW_E_INVALID, "name: '%s' is not 1..63 of [A-Za-z0-9._-]",
                            c->name);
    if (c->gateway && !c->join_token)
        return gw_error_set(err, GW_E_INVALID, "join_token: needed to join %s", c->gateway);
    if (!c->state_file) return gw_error_set(err, GW_E_INVALID, "state_file: must not be empty");
    static const char *const checks[] = {"upgrade_check.models", "upgrade_check.backends"};
    for (int i = 0; i < 2; i++) {
        const char *t = i ? c->upgrade_check_backends : c->upgrade_check_models;
        char why[200];
        if (t && agent_upgrade_template_check(t, why, sizeof why))
            return gw_error_set(err, GW_E_INVALID, "%s: %s", checks[i], why);
    }
    return check_tls(c, err) || agent_config_exposure_check(c, err) ? GW_E_INVALID : 0;
}

int agent_config_split_hostport(const char *addr, char *host, size_t cap, int *port)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon == addr) return GW_E_INVALID;
    const char *hs = addr, *he = colon;
    if (*hs == '[') {
        if (he[-1] != ']') return GW_E_INVALID;
        hs++;
        he--;
    }
    size_t n = (size_t)(he - hs);
    if (n == 0 || n >= cap) return GW_E_INVALID;
    memcpy(host, hs, n);
    host[n] = '\0';
    uint64_t p;
    if (strv_to_u64(strv_from_cstr(colon + 1), &p) || p > 65535) return GW_E_INVALID;
    *port = (int)p;
    return 0;
}

bool agent_config_has_tls(const struct agent_config *c)
{
    return c->tls_cert && c->tls_key;
}

/* Settings that go together, and URLs that must agree with them. */
static int check_tls(const struct agent_config *c, struct gw_error *err)
{
    char host[128];
    int port;
    if (agent_config_split_hostport(c->listen, host, sizeof host, &port))
        return gw_error_set(err, GW_E_INVALID, "listen: '%s' is not HOST:PORT",
                            c->listen ? c->listen : "");
    if (!c->tls_cert != !c->tls_key)
        return gw_error_set(err, GW_E_INVALID, "tls.cert and tls.key go together: set both");
    if (c->tls_client_ca && !c->tls_cert)
        return gw_error_set(err, GW_E_INVALID,
                            "tls.client_ca: mutual TLS needs the listener's tls.cert and tls.key");
    if (c->tls_min_version && strcmp(c->tls_min_version, "1.2") != 0 &&
        strcmp(c->tls_min_version, "1.3") != 0)
        return gw_error_set(err, GW_E_INVALID, "tls.min_version: '%s' is not 1.2 or 1.3",
                            c->tls_min_version);
    if (c->advertise && agent_config_has_tls(c) && strncmp(c->advertise, "https://", 8) != 0)
        return gw_error_set(err, GW_E_INVALID,
                            "advertise: '%s' while the agent serves TLS: advertise an https:// URL",
                            c->advertise);
    bool gw_tls = false;
    if (c->gateway) {
        struct gw_error e2 = {0};
        if (agent_engine_parse_base_url(c->gateway, host, sizeof host, &port, &gw_tls, &e2))
            return gw_error_set(err, GW_E_INVALID, "gateway: %s", e2.msg);
    }
    if (c->gateway_ca_file && !gw_tls)
        return gw_error_set(err, GW_E_INVALID,
                            "gateway_ca_file: set, but the gateway URL is not https:// ('%s')",
                            c->gateway ? c->gateway : "none");
    return 0;
}

int agent_config_exposure_check(const struct agent_config *c, struct gw_error *err)
{
    if (c->allow_plain_http) return 0;
    char host[128];
    int port;
    if (!agent_config_has_tls(c) &&
        (agent_config_split_hostport(c->listen, host, sizeof host, &port) ||
         !http_host_is_loopback(host)))
        return gw_error_set(err, GW_E_INVALID,
                            "the agent listens on %s (not loopback) without TLS: the gateway's "
                            "key, prompts and answers would cross the network in clear; set "
                            "tls.cert and tls.key, or allow_plain_http: true (a TLS proxy in "
                            "front, a private network)",
                            c->listen ? c->listen : "");
    bool gw_tls = false;
    if (c->gateway &&
        agent_engine_parse_base_url(c->gateway, host, sizeof host, &port, &gw_tls, NULL))
        return gw_error_set(err, GW_E_INVALID, "gateway: '%s' is not an http(s):// URL",
                            c->gateway);
    if (c->gateway && !gw_tls && !http_host_is_loopback(host))
        return gw_error_set(err, GW_E_INVALID,
                            "the gateway %s is plain http to a non-loopback address: the join "
                            "token and the node secret would cross the network in clear; use "
                            "its https:// URL (gateway_ca_file for a private CA), or "
                            "allow_plain_http: true (a private network)",
                            c->gateway);
    return 0;
}

void agent_config_advertise(const struct agent_config *c, const char *listen_addr, char *out,
                            size_t cap)
{
    if (c->advertise)
        snprintf(out, cap, "%s", c->advertise);
    else
        snprintf(out, cap, "%s://%s", agent_config_has_tls(c) ? "https" : "http", listen_addr);
}

void agent_config_free(struct agent_config *c)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].type == K_STR) xfree(*(char **)(void *)((char *)c + keys[i].off));
    xfree(c->discovery_json);
    for (size_t i = 0; i < AGENT_OPS_N_TEMPLATES; i++) xfree(c->ops_commands[i]);
    memset(c, 0, sizeof *c);
}

int agent_config_apply_discovery(const struct agent_config *c, struct node_api_discovery *d,
                                 struct gw_error *err)
{
    if (!c->discovery_json) return 0;
    struct json_object *o =
        json_parse_strict(c->discovery_json, strlen(c->discovery_json), NODE_API_MAX_DEPTH, err);
    if (!o) return err ? err->code : GW_E_PARSE;
    int rc = node_api_discovery_parse_json(o, d, err);
    json_object_put(o);
    return rc;
}
