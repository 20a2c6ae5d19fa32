/* config — one table of scalar keys drives the YAML file, the environment and --set, so the
 * three can never disagree on names, types or validation. Nodes are a list in the file. */
#include "gw/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/sha256.h"
#include "base/strv.h"
#include "base/yaml.h"
#include "gw/catalogue.h"
#include "net/http_client.h"

enum key_type { K_STR, K_ADDR, K_LOGLEVEL, K_U64, K_U32, K_BOOL, K_DURATION, K_SIZE, K_PERCENT };

struct key_def {
    const char *path;
    enum key_type type;
    size_t off;
    uint64_t min, max; /* for numbers */
};

#define OFF(f) offsetof(struct gw_config, f)
static const struct key_def keys[] = {
    {"listen", K_ADDR, OFF(listen), 0, 0},
    {"admin_listen", K_ADDR, OFF(admin_listen), 0, 0},
    {"admin_token", K_STR, OFF(admin_token), 0, 0},
    {"api_key", K_STR, OFF(api_key), 0, 0},
    {"log_level", K_LOGLEVEL, OFF(log_level), 0, 0},
    {"allow_no_auth", K_BOOL, OFF(allow_no_auth), 0, 0},
    {"allow_empty_fleet", K_BOOL, OFF(allow_empty_fleet), 0, 0},
    {"allow_plain_http", K_BOOL, OFF(allow_plain_http), 0, 0},
    {"limits.max_header_bytes", K_SIZE, OFF(max_header_bytes), 1024, 1 << 20},
    {"limits.max_body_bytes", K_SIZE, OFF(max_body_bytes), 1024, 1ull << 31},
    {"limits.max_connections", K_U64, OFF(max_connections), 1, 1000000},
    {"limits.header_timeout", K_DURATION, OFF(header_timeout_ms), 10, 3600000},
    {"limits.body_timeout", K_DURATION, OFF(body_timeout_ms), 10, 3600000},
    {"limits.idle_timeout", K_DURATION, OFF(client_idle_timeout_ms), 10, 86400000},
    {"upstream.connect_timeout", K_DURATION, OFF(connect_timeout_ms), 1, 600000},
    {"upstream.first_byte_timeout", K_DURATION, OFF(first_byte_timeout_ms), 1, 86400000},
    {"upstream.idle_timeout", K_DURATION, OFF(upstream_idle_timeout_ms), 1, 86400000},
    {"upstream.total_timeout", K_DURATION, OFF(total_timeout_ms), 0, 86400000},
    {"upstream.max_idle_per_node", K_U64, OFF(max_idle_per_node), 0, 100000},
    {"upstream.ca_file", K_STR, OFF(upstream_ca_file), 0, 0},
    {"upstream.client_cert", K_STR, OFF(upstream_client_cert), 0, 0},
    {"upstream.client_key", K_STR, OFF(upstream_client_key), 0, 0},
    {"upstream.allow_plain_secrets", K_BOOL, OFF(upstream_allow_plain_secrets), 0, 0},
    {"tls.cert", K_STR, OFF(tls_cert), 0, 0},
    {"tls.key", K_STR, OFF(tls_key), 0, 0},
    {"tls.min_version", K_STR, OFF(tls_min_version), 0, 0},
    {"admin_tls.cert", K_STR, OFF(admin_tls_cert), 0, 0},
    {"admin_tls.key", K_STR, OFF(admin_tls_key), 0, 0},
    {"admin_tls.min_version", K_STR, OFF(admin_tls_min_version), 0, 0},
    {"retry.max_attempts", K_U64, OFF(max_attempts), 1, 16},
    {"retry.deadline", K_DURATION, OFF(request_deadline_ms), 1, 86400000},
    {"health.interval", K_DURATION, OFF(reg.probe_interval_ms), 10, 86400000},
    {"health.jitter", K_DURATION, OFF(probe_jitter_ms), 0, 3600000},
    {"health.timeout", K_DURATION, OFF(probe_timeout_ms), 10, 600000},
    {"health.rise", K_U32, OFF(reg.rise), 1, 100},
    {"health.fall", K_U32, OFF(reg.fall), 1, 100},
    {"health.stream_alive", K_DURATION, OFF(reg.stream_alive_ms), 0, 3600000},
    {"faults.threshold", K_U32, OFF(reg.fault_threshold), 1, 1000},
    {"faults.auto_recover", K_BOOL, OFF(reg.auto_recover), 0, 0},
    {"faults.ejection_base", K_DURATION, OFF(reg.ejection_base_ms), 1, 86400000},
    {"faults.ejection_max", K_DURATION, OFF(reg.ejection_max_ms), 1, 86400000},
    {"faults.max_excluded_percent", K_PERCENT, OFF(reg.max_excluded_percent), 0, 100},
    {"routing.panic_threshold", K_PERCENT, OFF(reg.panic_percent), 0, 100},
    {"routing.policy", K_STR, OFF(routing_policy), 0, 0},
    {"routing.explain", K_BOOL, OFF(routing_explain), 0, 0},
    {"routing.cache_aware.match_threshold", K_PERCENT, OFF(route.match_threshold_pct), 0, 100},
    {"routing.cache_aware.balance_abs", K_U32, OFF(route.balance_abs), 0, 1000000},
    {"routing.cache_aware.balance_rel", K_U32, OFF(route.balance_rel_pct), 100, 100000},
    {"routing.cache_aware.max_entries", K_U64, OFF(prefix_max_entries), 0, 1u << 26},
    {"routing.cache_aware.node_entries", K_U64, OFF(prefix_node_entries), 0, 1u << 26},
    {"routing.cache_aware.block_bytes", K_SIZE, OFF(prefix_block_bytes), 16, 65536},
    {"routing.cache_aware.prefix_bytes", K_SIZE, OFF(prefix_bytes), 64, 1u << 20},
    {"routing.session.header", K_STR, OFF(session_header), 0, 0},
    {"routing.session.load_factor", K_U32, OFF(route.session_load_pct), 100, 100000},
    {"routing.signals.enabled", K_BOOL, OFF(signals_enabled), 0, 0},
    {"routing.signals.max_waiting", K_U32, OFF(route.max_waiting), 0, 1000000},
    {"routing.signals.kv_high", K_PERCENT, OFF(route.kv_high_pct), 0, 100},
    {"routing.signals.kv_penalty", K_U32, OFF(route.kv_penalty), 0, 1000000},
    {"routing.signals.max_age", K_DURATION, OFF(route.signals_fresh_ms), 0, 86400000},
    {"routing.context.enabled", K_BOOL, OFF(ctxfit.enabled), 0, 0},
    {"routing.context.estimate_bytes_per_token", K_U32, OFF(ctxfit.estimate_bytes_per_tok), 1, 64},
    {"routing.context.refuse_bytes_per_token", K_U32, OFF(ctxfit.refuse_bytes_per_tok), 1, 64},
    {"routing.context.count_completion", K_BOOL, OFF(ctxfit.count_completion), 0, 0},
    {"busy.cool_after", K_U32, OFF(reg.busy_cool_after), 1, 1000},
    {"busy.max_retry_after", K_DURATION, OFF(reg.busy_max_cool_ms), 0, 3600000},
    {"busy.max_limit", K_U32, OFF(reg.max_conc_limit), 1, 1000000},
    {"busy.trickle_interval", K_DURATION, OFF(reg.busy_trickle_ms), 1, 3600000},
    {"queue.max", K_U64, OFF(queue_max), 0, 1000000},
    {"queue.max_wait", K_DURATION, OFF(queue_wait_ms), 0, 3600000},
    {"proxy.trust_forwarded", K_BOOL, OFF(trust_forwarded), 0, 0},
    {"shutdown.grace", K_DURATION, OFF(shutdown_grace_ms), 0, 3600000},
    {"store.engine", K_STR, OFF(store_engine), 0, 0},
    {"store.path", K_STR, OFF(store_path), 0, 0},
    {"store.url", K_STR, OFF(store_url), 0, 0},
    {"store.flush_interval", K_DURATION, OFF(store_flush_ms), 10, 3600000},
    {"store.lease", K_DURATION, OFF(store_lease_ms), 100, 3600000},
    {"join.token", K_STR, OFF(join_token), 0, 0},
    {"join.enabled", K_BOOL, OFF(join_enabled), 0, 0},
    {"join.token_file", K_STR, OFF(join_token_file), 0, 0},
    {"join.allow_example_token", K_BOOL, OFF(join_allow_example_token), 0, 0},
    {"join.auto_approve", K_BOOL, OFF(auto_approve), 0, 0},
    {"join.poll_interval", K_DURATION, OFF(agent_poll_ms), 100, 86400000},
    {"ops.interval", K_DURATION, OFF(ops_interval_ms), 10, 3600000},
    {"ops.timeout", K_DURATION, OFF(ops_timeout_ms), 100, 86400000},
    {"ops.answer_wait", K_DURATION, OFF(ops_answer_wait_ms), 0, 600000},
    {"testing.clock_control", K_BOOL, OFF(testing_clock_control), 0, 0},
    {"keys.required", K_BOOL, OFF(keys_required), 0, 0},
    {"keys.sync_interval", K_DURATION, OFF(keys_sync_ms), 20, 10000},
    {"usage.flush_interval", K_DURATION, OFF(usage_flush_ms), 10, 3600000},
    {"audit.auth_log_per_minute", K_U32, OFF(auth_log_per_min), 0, 100000},
    {"placement.reconcile_interval", K_DURATION, OFF(reconcile_interval_ms), 10, 3600000},
    {"placement.replica_idle", K_DURATION, OFF(replica_idle_ms), 0, 86400000},
    {"placement.eviction", K_STR, OFF(placement_eviction), 0, 0},
    {"placement.defrag_after_cycles", K_U32, OFF(defrag_after_cycles), 0, 1000000},
    {"placement.load_wait", K_DURATION, OFF(load_wait_ms), 0, 3600000},
    {"placement.load_timeout", K_DURATION, OFF(load_timeout_ms), 100, 86400000},
};
#undef OFF
enum { N_KEYS = sizeof keys / sizeof keys[0] };

void gw_config_defaults(struct gw_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = xstrdup("127.0.0.1:8080");
    cfg->admin_listen = xstrdup("127.0.0.1:8081");
    cfg->log_level = LOG_INFO;
    cfg->max_header_bytes = 16 * 1024;
    cfg->max_body_bytes = 16u << 20;
    cfg->max_connections = 10000;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 60000;
    cfg->client_idle_timeout_ms = 60000;
    cfg->connect_timeout_ms = 2000;
    cfg->first_byte_timeout_ms = 300000; /* a cold model load on a big GPU takes minutes */
    cfg->upstream_idle_timeout_ms = 60000;
    cfg->total_timeout_ms = 0;
    cfg->max_idle_per_node = 64;
    cfg->max_attempts = 3;
    cfg->queue_max = 1024;
    cfg->queue_wait_ms = 10000;
    cfg->request_deadline_ms = 30000;
    cfg->probe_jitter_ms = 1000;
    cfg->probe_timeout_ms = 5000;
    registry_config_defaults(&cfg->reg);
    cfg->shutdown_grace_ms = 30000;
    cfg->store_engine = xstrdup("sqlite");
    cfg->store_path = xstrdup("drover.db");
    cfg->store_flush_ms = 1000;
    cfg->store_lease_ms = 10000;
    cfg->agent_poll_ms = 10000;
    cfg->ops_interval_ms = 5000;
    cfg->ops_timeout_ms = 600000;
    cfg->ops_answer_wait_ms = 10000;
    cfg->reconcile_interval_ms = 10000;
    cfg->replica_idle_ms = 600000;
    cfg->load_wait_ms = 30000;
    cfg->load_timeout_ms = 600000;
    cfg->usage_flush_ms = 10000;
    cfg->keys_sync_ms = 250;
    cfg->auth_log_per_min = 10;
    route_params_defaults(&cfg->route);
    cfg->routing_policy = xstrdup("least_loaded");
    cfg->prefix_max_entries = 262144;
    cfg->prefix_node_entries = 8192;
    cfg->prefix_block_bytes = 64;
    cfg->prefix_bytes = 32 * 1024;
    cfg->session_header = xstrdup("X-Session-Id");
    cfg->signals_enabled = true;
    ctxfit_params_defaults(&cfg->ctxfit);
}

static void free_nodes(struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        struct gw_node_config *n = &cfg->nodes[i];
        xfree(n->name);
        xfree(n->url);
        xfree(n->api_key);
        for (size_t j = 0; j < n->n_labels; j++) {
            xfree(n->labels[j].key);
            xfree(n->labels[j].value);
        }
        xfree(n->labels);
    }
    xfree(cfg->nodes);
    cfg->nodes = NULL;
    cfg->n_nodes = 0;
}

static void free_admin_tokens(struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->n_admin_tokens; i++) xfree(cfg->admin_tokens[i].id);
    xfree(cfg->admin_tokens);
    cfg->admin_tokens = NULL;
    cfg->n_admin_tokens = 0;
}

void gw_config_free(struct gw_config *cfg)
{
    free_admin_tokens(cfg);
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].type == K_STR || keys[i].type == K_ADDR) {
            char **p = (char **)((char *)cfg + keys[i].off);
            xfree(*p);
            *p = NULL;
        }
    }
    free_nodes(cfg);
    for (size_t i = 0; i < cfg->n_models; i++) cat_model_free(cfg->models[i]);
    xfree(cfg->models);
    cfg->models = NULL;
    cfg->n_models = 0;
    xfree(cfg->path);
    cfg->path = NULL;
    xfree(cfg->join_token_from);
    cfg->join_token_from = NULL;
}

int gw_parse_hostport(const char *s, char *host, size_t host_cap, int *port)
{
    struct strv v = strv_from_cstr(s);
    struct strv h, p;
    if (v.len && v.p[0] == '[') {
        long close = strv_index(v, ']');
        if (close < 0 || (size_t)close + 1 >= v.len || v.p[close + 1] != ':') return GW_E_INVALID;
        h = strv_sub(v, 1, (size_t)close - 1);
        p = strv_sub(v, (size_t)close + 2, v.len);
    } else {
        long colon = -1;
        for (size_t i = 0; i < v.len; i++)
            if (v.p[i] == ':') colon = (long)i;
        if (colon <= 0) return GW_E_INVALID;
        h = strv_sub(v, 0, (size_t)colon);
        p = strv_sub(v, (size_t)colon + 1, v.len);
    }
    uint64_t pv;
    if (h.len == 0 || h.len >= host_cap || strv_to_u64(p, &pv) || pv > 65535) return GW_E_INVALID;
    memcpy(host, h.p, h.len);
    host[h.len] = '\0';
    *port = (int)pv;
    return 0;
}

/* Sets one key from a string; returns 0 or GW_E_INVALID with why filled. */
static int set_key(struct gw_config *cfg, const struct key_def *k, const char *val, char *why,
                   size_t why_cap)
{
    void *field = (char *)cfg + k->off;
    uint64_t v = 0;
    int rc = 0;
    switch (k->type) {
    case K_STR:
        xfree(*(char **)field);
        *(char **)field = *val ? xstrdup(val) : NULL;
        return 0;
    case K_ADDR: {
        char host[128];
        int port;
        if (gw_parse_hostport(val, host, sizeof host, &port)) {
            snprintf(why, why_cap, "'%s' is not host:port", val);
            return GW_E_INVALID;
        }
        xfree(*(char **)field);
        *(char **)field = xstrdup(val);
        return 0;
    }
    case K_LOGLEVEL:
        if (log_parse_level(val, (enum log_level *)field)) {
            snprintf(why, why_cap, "'%s' is not one of debug, info, warn, error, off", val);
            return GW_E_INVALID;
        }
        return 0;
    case K_BOOL:
        if (parse_bool_str(val, (bool *)field)) {
            snprintf(why, why_cap, "'%s' is not true or false", val);
            return GW_E_INVALID;
        }
        return 0;
    case K_DURATION:
        rc = parse_duration_ms_str(val, &v);
        if (rc) snprintf(why, why_cap, "'%s' is not a duration (500ms, 10s, 2m)", val);
        break;
    case K_SIZE:
        rc = parse_size_bytes_str(val, &v);
        if (rc) snprintf(why, why_cap, "'%s' is not a size (16384, 16KiB, 4MiB)", val);
        break;
    case K_U64:
    case K_U32:
    case K_PERCENT:
        rc = strv_to_u64(strv_from_cstr(val), &v) ? GW_E_INVALID : 0;
        if (rc) snprintf(why, why_cap, "'%s' is not a non-negative integer", val);
        break;
    }
    if (rc) return GW_E_INVALID;
    if (v < k->min || v > k->max) {
        snprintf(why, why_cap, "%llu is outside %llu..%llu", (unsigned long long)v,
                 (unsigned long long)k->min, (unsigned long long)k->max);
        return GW_E_INVALID;
    }
    if (k->type == K_U32 || k->type == K_PERCENT) {
        *(unsigned *)field = (unsigned)v;
    } else {
        *(uint64_t *)field = v;
    }
    return 0;
}

static const struct key_def *find_key(const char *path)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].path, path) == 0) return &keys[i];
    return NULL;
}

static int load_nodes(struct gw_config *cfg, const char *file, const struct ynode *seq,
                      struct gw_error *err)
{
    if (seq->type != YNODE_SEQ)
        return gw_error_set(err, GW_E_INVALID, "%s:%d: nodes must be a list", file, seq->line);
    cfg->nodes = xcalloc(seq->n ? seq->n : 1, sizeof *cfg->nodes);
    for (size_t i = 0; i < seq->n; i++) {
        const struct ynode *m = seq->kids[i];
        struct gw_node_config *nc = &cfg->nodes[cfg->n_nodes++];
        nc->kind = NODE_KIND_OPENAI;
        if (m->type != YNODE_MAP)
            return gw_error_set(err, GW_E_INVALID, "%s:%d: each node must be a mapping", file,
                                m->line);
        for (size_t j = 0; j < m->n; j++) {
            const char *key = m->keys[j];
            const struct ynode *v = m->kids[j];
            int line = m->key_lines[j];
            bool is_scalar = v->type == YNODE_SCALAR;
            if (strcmp(key, "labels") == 0) {
                if (v->type != YNODE_MAP)
                    return gw_error_set(err, GW_E_INVALID, "%s:%d: labels must be a mapping", file,
                                        line);
                nc->labels = xcalloc(v->n ? v->n : 1, sizeof *nc->labels);
                for (size_t l = 0; l < v->n; l++) {
                    if (v->kids[l]->type != YNODE_SCALAR)
                        return gw_error_set(err, GW_E_INVALID, "%s:%d: label '%s' must be a string",
                                            file, v->key_lines[l], v->keys[l]);
                    nc->labels[nc->n_labels].key = xstrdup(v->keys[l]);
                    nc->labels[nc->n_labels].value = xstrdup(v->kids[l]->scalar);
                    nc->n_labels++;
                }
                continue;
            }
            if (!is_scalar)
                return gw_error_set(err, GW_E_INVALID, "%s:%d: node key '%s' must be a string",
                                    file, line, key);
            if (strcmp(key, "name") == 0) {
                xfree(nc->name);
                nc->name = xstrdup(v->scalar);
            } else if (strcmp(key, "url") == 0) {
                xfree(nc->url);
                nc->url = xstrdup(v->scalar);
            } else if (strcmp(key, "api_key") == 0) {
                xfree(nc->api_key);
                nc->api_key = xstrdup(v->scalar);
            } else if (strcmp(key, "kind") == 0) {
                if (node_kind_parse(v->scalar, &nc->kind))
                    return gw_error_set(err, GW_E_INVALID,
                                        "%s:%d: kind '%s' is not one of openai, llamacpp, "
                                        "ollama, vllm",
                                        file, line, v->scalar);
            } else {
                return gw_error_set(err, GW_E_INVALID, "%s:%d: unknown node key '%s'", file, line,
                                    key);
            }
        }
        if (!nc->url)
            return gw_error_set(err, GW_E_INVALID, "%s:%d: node needs a url", file, m->line);
        if (!nc->name) nc->name = xstrdup(nc->url + (strncmp(nc->url, "http://", 7) ? 0 : 7));
        struct registry probe;
        registry_init(&probe, NULL);
        struct gw_error uerr = {0};
        int rc = registry_add(&probe, nc->name, nc->url, nc->kind, NULL, NULL, &uerr);
        registry_free(&probe);
        if (rc) return gw_error_set(err, GW_E_INVALID, "%s:%d: %s", file, m->line, uerr.msg);
        for (size_t k = 0; k + 1 < cfg->n_nodes; k++)
            if (strcmp(cfg->nodes[k].name, nc->name) == 0)
                return gw_error_set(err, GW_E_INVALID, "%s:%d: duplicate node name '%s'", file,
                                    m->line, nc->name);
    }
    return 0;
}

static int load_models(struct gw_config *cfg, const char *file, const struct ynode *seq,
                       struct gw_error *err)
{
    if (seq->type != YNODE_SEQ)
        return gw_error_set(err, GW_E_INVALID, "%s:%d: models must be a list", file, seq->line);
    for (size_t i = 0; i < seq->n; i++) {
        struct cat_model *m = NULL;
        char field[64] = "", why[200] = "";
        int line = seq->kids[i]->line;
        if (cat_model_from_yaml(seq->kids[i], &m, field, sizeof field, &line, why, sizeof why))
            return gw_error_set(err, GW_E_INVALID, "%s:%d: models[%zu]%s%s: %s", file, line, i,
                                field[0] ? "." : "", field, why);
        m->from_config = true;
        struct catalogue tmp = {cfg->models, cfg->n_models};
        const char *clash = catalogue_name_clash(&tmp, m);
        bool dup = catalogue_find(&tmp, strv_from_cstr(m->id)) != NULL;
        if (clash || dup) {
            int rc = gw_error_set(err, GW_E_INVALID,
                                  "%s:%d: models[%zu]: the name '%s' is used "
                                  "twice",
                                  file, seq->kids[i]->line, i, clash ? clash : m->id);
            cat_model_free(m);
            return rc;
        }
        cfg->models = xrealloc(cfg->models, (cfg->n_models + 1) * sizeof *cfg->models);
        cfg->models[cfg->n_models++] = m;
    }
    return 0;
}

static bool is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return false;
    return n == 64;
}

/* admin_tokens: [{id, token | token_sha256, role: viewer|operator}] */
static int load_admin_tokens(struct gw_config *cfg, const char *file, const struct ynode *seq,
                             struct gw_error *err)
{
    if (seq->type != YNODE_SEQ)
        return gw_error_set(err, GW_E_INVALID, "%s:%d: admin_tokens must be a list", file,
                            seq->line);
    free_admin_tokens(cfg);
    cfg->admin_tokens = xcalloc(seq->n ? seq->n : 1, sizeof *cfg->admin_tokens);
    for (size_t i = 0; i < seq->n; i++) {
        const struct ynode *m = seq->kids[i];
        struct gw_admin_token *t = &cfg->admin_tokens[cfg->n_admin_tokens++];
        t->role = ADMIN_ROLE_VIEWER;
        bool has_role = false;
        if (m->type != YNODE_MAP)
            return gw_error_set(err, GW_E_INVALID, "%s:%d: each admin token must be a mapping",
                                file, m->line);
        for (size_t j = 0; j < m->n; j++) {
            const char *key = m->keys[j];
            const struct ynode *v = m->kids[j];
            int line = m->key_lines[j];
            if (v->type != YNODE_SCALAR)
                return gw_error_set(err, GW_E_INVALID, "%s:%d: '%s' must be a string", file, line,
                                    key);
            const char *sv = v->scalar;
            if (!strcmp(key, "id")) {
                if (!*sv || strlen(sv) > 63)
                    return gw_error_set(err, GW_E_INVALID, "%s:%d: id: 1-63 characters", file,
                                        line);
                xfree(t->id);
                t->id = xstrdup(sv);
            } else if (!strcmp(key, "token")) {
                if (strlen(sv) < 16)
                    return gw_error_set(err, GW_E_INVALID, "%s:%d: token: at least 16 characters",
                                        file, line);
                if (t->hash[0])
                    return gw_error_set(err, GW_E_INVALID,
                                        "%s:%d: give token or token_sha256, not both", file, line);
                sha256_hex(sv, strlen(sv), t->hash);
            } else if (!strcmp(key, "token_sha256")) {
                if (!is_hex64(sv))
                    return gw_error_set(err, GW_E_INVALID,
                                        "%s:%d: token_sha256: 64 lowercase hex characters", file,
                                        line);
                if (t->hash[0])
                    return gw_error_set(err, GW_E_INVALID,
                                        "%s:%d: give token or token_sha256, not both", file, line);
                memcpy(t->hash, sv, 65);
            } else if (!strcmp(key, "role")) {
                has_role = true;
                if (!strcmp(sv, "viewer"))
                    t->role = ADMIN_ROLE_VIEWER;
                else if (!strcmp(sv, "operator"))
                    t->role = ADMIN_ROLE_OPERATOR;
                else
                    return gw_error_set(err, GW_E_INVALID,
                                        "%s:%d: role '%s' is not viewer or operator", file, line,
                                        sv);
            } else {
                return gw_error_set(err, GW_E_INVALID, "%s:%d: unknown admin token key '%s'", file,
                                    line, key);
            }
        }
        if (!t->hash[0])
            return gw_error_set(err, GW_E_INVALID,
                                "%s:%d: an admin token needs token or "
                                "token_sha256",
                                file, m->line);
        if (!has_role)
            return gw_error_set(err, GW_E_INVALID,
                                "%s:%d: an admin token needs a role (viewer "
                                "or operator)",
                                file, m->line);
        if (!t->id) {
            char id[32];
            snprintf(id, sizeof id, "token-%zu", i + 1);
            t->id = xstrdup(id);
        }
        for (size_t k = 0; k + 1 < cfg->n_admin_tokens; k++)
            if (!strcmp(cfg->admin_tokens[k].id, t->id) ||
                !strcmp(cfg->admin_tokens[k].hash, t->hash))
                return gw_error_set(err, GW_E_INVALID,
                                    "%s:%d: admin token '%s' repeats an id or a token", file,
                                    m->line, t->id);
    }
    return 0;
}

/* Walks a map recursively, matching dotted paths against the key table. */
static int apply_map(struct gw_config *cfg, const char *file, const struct ynode *map,
                     const char *prefix, struct gw_error *err)
{
    for (size_t i = 0; i < map->n; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", map->keys[i]);
        const struct ynode *v = map->kids[i];
        int line = map->key_lines[i];
        if (!*prefix && strcmp(path, "nodes") == 0) {
            int rc = load_nodes(cfg, file, v, err);
            if (rc) return rc;
            continue;
        }
        if (!*prefix && strcmp(path, "admin_tokens") == 0) {
            int rc = load_admin_tokens(cfg, file, v, err);
            if (rc) return rc;
            continue;
        }
        if (!*prefix && strcmp(path, "models") == 0) {
            int rc = load_models(cfg, file, v, err);
            if (rc) return rc;
            continue;
        }
        if (v->type == YNODE_MAP) {
            bool is_section = false;
            size_t plen = strlen(path);
            for (size_t k = 0; k < N_KEYS && !is_section; k++)
                is_section = strncmp(keys[k].path, path, plen) == 0 && keys[k].path[plen] == '.';
            if (!is_section)
                return gw_error_set(err, GW_E_INVALID, "%s:%d: unknown section '%s'", file, line,
                                    path);
            int rc = apply_map(cfg, file, v, path, err);
            if (rc) return rc;
            continue;
        }
        const struct key_def *k = find_key(path);
        if (!k) return gw_error_set(err, GW_E_INVALID, "%s:%d: unknown key '%s'", file, line, path);
        if (v->type != YNODE_SCALAR)
            return gw_error_set(err, GW_E_INVALID, "%s:%d: '%s' must be a single value", file, line,
                                path);
        char why[160];
        if (set_key(cfg, k, v->scalar, why, sizeof why))
            return gw_error_set(err, GW_E_INVALID, "%s:%d: %s: %s", file, line, path, why);
    }
    return 0;
}

enum { CONFIG_MAX_BYTES = 1 << 20 };

static int apply_root(struct gw_config *cfg, const char *file, const struct ynode *root,
                      struct gw_error *err)
{
    if (root->type != YNODE_MAP)
        return gw_error_set(err, GW_E_INVALID, "%s:%d: the config must be a mapping", file,
                            root->line);
    return apply_map(cfg, file, root, "", err);
}

/* Rules across keys, after every source was applied. */
static int check_whole(struct gw_config *cfg, struct gw_error *err)
{
    if (route_policy_parse(cfg->routing_policy ? cfg->routing_policy : "least_loaded",
                           &cfg->route.policy))
        return gw_error_set(err, GW_E_INVALID,
                            "routing.policy: '%s' is not least_loaded, cache_aware, session or "
                            "round_robin",
                            cfg->routing_policy);
    if (cfg->reg.ejection_max_ms < cfg->reg.ejection_base_ms)
        return gw_error_set(err, GW_E_INVALID,
                            "faults.ejection_max must be >= faults.ejection_base");
    const char *engine = cfg->store_engine ? cfg->store_engine : "sqlite";
    if (strcmp(engine, "sqlite") != 0 && strcmp(engine, "postgres") != 0)
        return gw_error_set(err, GW_E_INVALID, "store.engine: '%s' is not sqlite or postgres",
                            engine);
    if (strcmp(engine, "postgres") == 0 && !cfg->store_url)
        return gw_error_set(err, GW_E_INVALID,
                            "store.engine is postgres but store.url is not set (a libpq "
                            "connection string, e.g. host=db1,db2 dbname=drover "
                            "target_session_attrs=read-write)");
    static const struct {
        const char *name;
        size_t cert, key, minv;
    } pairs[] = {
        {"tls", offsetof(struct gw_config, tls_cert), offsetof(struct gw_config, tls_key),
         offsetof(struct gw_config, tls_min_version)},
        {"admin_tls", offsetof(struct gw_config, admin_tls_cert),
         offsetof(struct gw_config, admin_tls_key),
         offsetof(struct gw_config, admin_tls_min_version)},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const char *cert = *(char *const *)((const char *)cfg + pairs[i].cert);
        const char *key = *(char *const *)((const char *)cfg + pairs[i].key);
        const char *minv = *(char *const *)((const char *)cfg + pairs[i].minv);
        if (!cert != !key)
            return gw_error_set(err, GW_E_INVALID, "%s.cert and %s.key go together: set both",
                                pairs[i].name, pairs[i].name);
        if (minv && strcmp(minv, "1.2") != 0 && strcmp(minv, "1.3") != 0)
            return gw_error_set(err, GW_E_INVALID, "%s.min_version '%s' is not 1.2 or 1.3",
                                pairs[i].name, minv);
    }
    if (!cfg->upstream_client_cert != !cfg->upstream_client_key)
        return gw_error_set(err, GW_E_INVALID,
                            "upstream.client_cert and upstream.client_key go together: set both");
    return 0;
}

static void env_name(const char *path, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "DROVER_");
    for (size_t i = 0; path[i] && o + 1 < cap; i++) {
        char c = path[i];
        out[o++] = c == '.' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    out[o] = '\0';
}

int gw_config_load(struct gw_config *cfg, const char *path, char *const *envp,
                   const char *const *sets, size_t n_sets, struct gw_error *err)
{
    gw_config_defaults(cfg);
    int rc = 0;
    if (path) {
        cfg->path = xstrdup(path);
        struct ynode *root = yaml_load_file(path, CONFIG_MAX_BYTES, err);
        if (!root) {
            rc = GW_E_INVALID;
            goto fail;
        }
        rc = apply_root(cfg, path, root, err);
        ynode_free(root);
        if (rc) goto fail;
    }
    for (size_t e = 0; envp && envp[e]; e++) {
        if (strncmp(envp[e], "DROVER_", 7) != 0) continue;
        const char *eq = strchr(envp[e], '=');
        if (!eq) continue;
        for (size_t i = 0; i < N_KEYS; i++) {
            char name[96];
            env_name(keys[i].path, name, sizeof name);
            if (strlen(name) != (size_t)(eq - envp[e]) || strncmp(name, envp[e], strlen(name)))
                continue;
            char why[160];
            if (set_key(cfg, &keys[i], eq + 1, why, sizeof why)) {
                rc = gw_error_set(err, GW_E_INVALID, "env %s: %s", name, why);
                goto fail;
            }
        }
    }
    for (size_t s = 0; s < n_sets; s++) {
        const char *eq = strchr(sets[s], '=');
        char key[128];
        size_t klen = eq ? (size_t)(eq - sets[s]) : 0;
        if (!eq || klen == 0 || klen >= sizeof key) {
            rc = gw_error_set(err, GW_E_INVALID, "flag --set %s: expected key=value", sets[s]);
            goto fail;
        }
        memcpy(key, sets[s], klen);
        key[klen] = '\0';
        const struct key_def *k = find_key(key);
        if (!k) {
            rc = gw_error_set(err, GW_E_INVALID, "flag --set %s: unknown key", key);
            goto fail;
        }
        char why[160];
        if (set_key(cfg, k, eq + 1, why, sizeof why)) {
            rc = gw_error_set(err, GW_E_INVALID, "flag --set %s: %s", key, why);
            goto fail;
        }
    }
    rc = check_whole(cfg, err);
    if (rc) goto fail;
    return 0;
fail:
    gw_config_free(cfg);
    gw_config_defaults(cfg);
    return rc;
}

int gw_config_parse(struct gw_config *cfg, const char *name, const char *text, size_t len,
                    struct gw_error *err)
{
    gw_config_defaults(cfg);
    int rc = 0;
    if (len > CONFIG_MAX_BYTES) {
        rc = gw_error_set(err, GW_E_LIMIT, "%s: larger than %d bytes", name, CONFIG_MAX_BYTES);
        goto fail;
    }
    struct ynode *root = yaml_parse(text, len, err);
    if (!root) {
        rc = GW_E_INVALID;
        goto fail;
    }
    rc = apply_root(cfg, name, root, err);
    ynode_free(root);
    if (!rc) rc = check_whole(cfg, err);
    if (!rc) return 0;
fail:
    gw_config_free(cfg);
    gw_config_defaults(cfg);
    return rc;
}

bool gw_host_is_loopback(const char *host)
{
    return http_host_is_loopback(host);
}

static bool addr_is_loopback(const char *addr)
{
    char host[128];
    int port;
    return addr && gw_parse_hostport(addr, host, sizeof host, &port) == 0 &&
           gw_host_is_loopback(host);
}

/* Join tokens published in this repository's examples and docs: anyone can read them. */
static const char *const example_join_tokens[] = {"dev-join-token", "join-token", "changeme",
                                                  "change-me", "secret"};

bool gw_join_token_is_example(const char *token)
{
    for (size_t i = 0; i < sizeof example_join_tokens / sizeof *example_join_tokens; i++)
        if (token && strcasecmp(token, example_join_tokens[i]) == 0) return true;
    return false;
}

static bool has_tls(const char *cert, const char *key)
{
    return cert && *cert && key && *key;
}

int gw_config_exposure_check(const struct gw_config *cfg, const char *listen,
                             const char *admin_listen, struct gw_error *err)
{
    if (!listen) listen = cfg->listen;
    if (!admin_listen) admin_listen = cfg->admin_listen;
    if (!cfg->allow_no_auth && !cfg->api_key && !cfg->keys_required && !addr_is_loopback(listen))
        return gw_error_set(err, GW_E_INVALID,
                            "the client API listens on %s (not loopback) without an api_key; set "
                            "api_key or keys.required: true, or allow_no_auth: true to run it "
                            "open",
                            listen);
    if (!cfg->allow_no_auth && !cfg->admin_token && !cfg->n_admin_tokens &&
        !addr_is_loopback(admin_listen))
        return gw_error_set(err, GW_E_INVALID,
                            "the admin API listens on %s (not loopback) without an admin_token; "
                            "set admin_token, or allow_no_auth: true to run it open",
                            admin_listen);
    /* DESIGN §10: secrets never travel in clear beyond loopback */
    if (!cfg->allow_plain_http && !has_tls(cfg->tls_cert, cfg->tls_key) &&
        !addr_is_loopback(listen))
        return gw_error_set(err, GW_E_INVALID,
                            "the client API listens on %s (not loopback) without TLS: client keys "
                            "would cross the network in clear; set tls.cert and tls.key, or "
                            "allow_plain_http: true (a TLS proxy in front, a private network)",
                            listen);
    if (!cfg->allow_plain_http && !has_tls(cfg->admin_tls_cert, cfg->admin_tls_key) &&
        !addr_is_loopback(admin_listen))
        return gw_error_set(err, GW_E_INVALID,
                            "the admin API listens on %s (not loopback) without TLS: admin tokens "
                            "would cross the network in clear; set admin_tls.cert and "
                            "admin_tls.key, or allow_plain_http: true",
                            admin_listen);
    if (cfg->join_token && !cfg->join_allow_example_token &&
        gw_join_token_is_example(cfg->join_token))
        return gw_error_set(err, GW_E_INVALID,
                            "join.token is a published example value: anyone could ask to join; "
                            "remove join.token (with join.enabled: true one is generated and "
                            "stored) or set a secret of your own (join.allow_example_token: true "
                            "for tests only)");
    if (cfg->join_token && !*cfg->join_token)
        return gw_error_set(err, GW_E_INVALID, "join.token is empty; remove it or set a secret");
    return 0;
}

/* The generated token's file: join.token_file, else beside a SQLite store file. NULL with
 * *ephemeral when the store keeps nothing (":memory:"); NULL without it for PostgreSQL. */
static char *join_token_path(const struct gw_config *cfg, bool *ephemeral)
{
    *ephemeral = false;
    if (cfg->join_token_file && *cfg->join_token_file) return xstrdup(cfg->join_token_file);
    if (cfg->store_engine && strcmp(cfg->store_engine, "postgres") == 0) return NULL;
    if (!cfg->store_path || !*cfg->store_path || strcmp(cfg->store_path, ":memory:") == 0) {
        *ephemeral = true;
        return NULL;
    }
    size_t n = strlen(cfg->store_path) + sizeof ".join-token";
    char *p = xmalloc(n);
    snprintf(p, n, "%s.join-token", cfg->store_path);
    return p;
}

static int read_token_file(const char *path, int fd, char **out, struct gw_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return gw_error_set(err, GW_E_IO, "join token file %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077))
        return gw_error_set(err, GW_E_INVALID,
                            "join token file %s: must be a regular file readable by its owner "
                            "only (chmod 600)",
                            path);
    char b[256];
    ssize_t n = read(fd, b, sizeof b - 1);
    if (n < 0) return gw_error_set(err, GW_E_IO, "join token file %s: %s", path, strerror(errno));
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' ')) n--;
    b[n] = '\0';
    if (n < 16 ||
        strspn(b, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != (size_t)n)
        return gw_error_set(err, GW_E_INVALID,
                            "join token file %s: not a token (16+ letters, digits, - or _); "
                            "remove it to generate a new one",
                            path);
    *out = xstrdup(b);
    return 0;
}

int gw_config_join_token_resolve(struct gw_config *cfg, char **generated, const char **where,
                                 struct gw_error *err)
{
    *generated = NULL;
    *where = NULL;
    if (cfg->join_token || !cfg->join_enabled) return 0;
    bool ephemeral;
    char *path = join_token_path(cfg, &ephemeral);
    if (!path && !ephemeral)
        return gw_error_set(err, GW_E_INVALID,
                            "join.enabled without join.token on PostgreSQL: set join.token (the "
                            "same on every gateway) or join.token_file");
    if (path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            int rc = read_token_file(path, fd, &cfg->join_token, err);
            close(fd);
            if (!rc)
                cfg->join_token_from = path;
            else
                xfree(path);
            return rc;
        }
        if (errno != ENOENT) {
            int e = errno;
            xfree(path);
            return gw_error_set(err, GW_E_IO, "join token file: %s", strerror(e));
        }
    }
    /* "djt-" + 48 hex characters: 192 bits from getrandom */
    unsigned char raw[24];
    if (random_bytes(raw, sizeof raw)) {
        xfree(path);
        return gw_error_set(err, GW_E_IO, "join token: no random bytes from the kernel");
    }
    char tok[4 + 2 * sizeof raw + 1] = "djt-";
    for (size_t i = 0; i < sizeof raw; i++) snprintf(tok + 4 + 2 * i, 3, "%02x", raw[i]);
    if (path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            int e = errno;
            gw_error_set(err, GW_E_IO, "join token file %s: %s", path, strerror(e));
            xfree(path);
            return GW_E_IO;
        }
        size_t len = strlen(tok);
        bool ok = write(fd, tok, len) == (ssize_t)len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
        close(fd);
        if (!ok) {
            (void)unlink(path);
            gw_error_set(err, GW_E_IO, "join token file %s: cannot write it", path);
            xfree(path);
            return GW_E_IO;
        }
        cfg->join_token_from = path;
    }
    cfg->join_token = xstrdup(tok);
    *generated = cfg->join_token;
    *where = path ? path : "(not stored: store.path is :memory:)";
    return 0;
}

int gw_config_reload_check(const struct gw_config *cur, const struct gw_config *next,
                           struct gw_error *err)
{
    if (!next->allow_no_auth) {
        if ((cur->admin_token || cur->n_admin_tokens) && !next->admin_token &&
            !next->n_admin_tokens)
            return gw_error_set(err, GW_E_INVALID,
                                "the new config has no admin_token: the admin API would be open; "
                                "set allow_no_auth: true to drop it on purpose");
        if ((cur->api_key || cur->keys_required) && !next->api_key && !next->keys_required)
            return gw_error_set(err, GW_E_INVALID,
                                "the new config has no api_key: the client API would be open; "
                                "set allow_no_auth: true to drop it on purpose");
    }
    if (cur->n_nodes > 0 && next->n_nodes == 0 && !next->allow_empty_fleet)
        return gw_error_set(err, GW_E_INVALID,
                            "the new config has no nodes: all %zu static nodes would be removed; "
                            "set allow_empty_fleet: true to remove them on purpose",
                            cur->n_nodes);
    /* the listeners keep their addresses across a reload */
    return gw_config_exposure_check(next, cur->listen, cur->admin_listen, err);
}

void gw_config_dump(const struct gw_config *cfg, void (*line)(const char *s, void *ctx), void *ctx)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key_def *k = &keys[i];
        const void *f = (const char *)cfg + k->off;
        char s[256];
        switch (k->type) {
        case K_STR:
        case K_ADDR: {
            const char *v = *(char *const *)f;
            bool secret = strstr(k->path, "token") || strstr(k->path, "key") ||
                          strcmp(k->path, "store.url") == 0; /* may hold a password */
            snprintf(s, sizeof s, "%s = %s", k->path, !v ? "" : secret ? "(set)" : v);
            break;
        }
        case K_LOGLEVEL: {
            static const char *const lv[] = {"debug", "info", "warn", "error", "off"};
            snprintf(s, sizeof s, "%s = %s", k->path, lv[*(const enum log_level *)f]);
            break;
        }
        case K_BOOL:
            snprintf(s, sizeof s, "%s = %s", k->path, *(const bool *)f ? "true" : "false");
            break;
        case K_U32:
        case K_PERCENT:
            snprintf(s, sizeof s, "%s = %u", k->path, *(const unsigned *)f);
            break;
        case K_DURATION:
            snprintf(s, sizeof s, "%s = %llums", k->path, (unsigned long long)*(const uint64_t *)f);
            break;
        default:
            snprintf(s, sizeof s, "%s = %llu", k->path, (unsigned long long)*(const uint64_t *)f);
        }
        line(s, ctx);
    }
}
