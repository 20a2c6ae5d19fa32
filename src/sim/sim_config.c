/* sim_config — one option table drives both the flag parser and the YAML loader, so every
 * knob has the same name (dashes on the command line, underscores in YAML), range and help
 * line. YAML is read whole (capped) with libyaml's document API so errors carry line numbers.
 * Main thread only, before the loop runs. */
#include "sim/sim_config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/mem.h"
#include "base/strv.h"

enum { SIM_YAML_MAX_BYTES = 1024 * 1024 };

enum opt_type {
    OPT_STR,
    OPT_U64,
    OPT_UINT,
    OPT_INT_PORT,
    OPT_DBL,
    OPT_BOOL,
    OPT_LEVEL,
    OPT_SIZE,
    OPT_MODEL,
    OPT_FAULT,
    OPT_CONFIG,
    OPT_HELP
};

struct opt {
    const char *flag; /* without the leading "--" */
    enum opt_type type;
    size_t off;
    double max;
    const char *arg;
    const char *help;
};

#define OFF(f) offsetof(struct sim_config, f)

static const struct opt opts[] = {
    {"config", OPT_CONFIG, 0, 0, "FILE", "YAML file with any of these keys (flags win)"},
    {"host", OPT_STR, OFF(host), 0, "ADDR", "listen address (default 127.0.0.1)"},
    {"port", OPT_INT_PORT, OFF(port), 65535, "N",
     "first node's port; 0 finds K consecutive free ports (default 0)"},
    {"nodes", OPT_UINT, OFF(nodes), SIM_MAX_NODES, "K", "virtual nodes on consecutive ports (1)"},
    {"port-file", OPT_STR, OFF(port_file), 0, "FILE", "write the node ports, one per line"},
    {"log-level", OPT_LEVEL, OFF(log_level), 0, "L", "debug|info|warn|error|off (info)"},
    {"model", OPT_MODEL, 0, 0, "NAME[:embedding]",
     "serve a model (repeatable; :embedding for embedding-only)"},
    {"preload", OPT_BOOL, OFF(preload_all), 0, "", "load every model at start-up"},
    {"tokens-per-second", OPT_DBL, OFF(tokens_per_second), 1e6, "X",
     "stream pacing per request; 0 = as fast as possible (0)"},
    {"ttft-ms", OPT_DBL, OFF(ttft_ms), 3.6e6, "X", "base time to first token (0)"},
    {"ttft-per-token-ms", OPT_DBL, OFF(ttft_per_token_ms), 3.6e6, "X",
     "added per prompt token not in the prefix cache (0)"},
    {"slots", OPT_UINT, OFF(slots), 1e6, "N", "parallel requests per node (4)"},
    {"queue", OPT_UINT, OFF(queue_max), 1e6, "N", "requests waiting per node; beyond: 503 (64)"},
    {"busy-retry-after", OPT_UINT, OFF(busy_retry_after_s), 86400, "S",
     "Retry-After on the queue-full 503 (1)"},
    {"load-ms", OPT_U64, OFF(load_ms), 3.6e6, "N", "model load latency (0)"},
    {"unload-ms", OPT_U64, OFF(unload_ms), 3.6e6, "N", "model unload latency (0)"},
    {"node-vram-mb", OPT_U64, OFF(node_vram_mb), 1e12, "N",
     "VRAM per node; loading past it evicts the LRU idle model (0 = unlimited)"},
    {"model-vram-mb", OPT_U64, OFF(model_vram_mb), 1e12, "N", "default VRAM per model (1024)"},
    {"ctx", OPT_U64, OFF(ctx), 1e9, "N",
     "context per request in tokens, enforced like llama-server; 0 = unlimited (0)"},
    {"hide-ctx", OPT_STR, OFF(hide_ctx), 0, "WHERE",
     "none|models|all: where the context is not shown (none)"},
    {"max-tokens", OPT_UINT, OFF(default_max_tokens), 1e6, "N",
     "tokens generated when the request sets no limit (16)"},
    {"max-tokens-cap", OPT_UINT, OFF(max_tokens_cap), 1e7, "N",
     "upper bound on any request (4096)"},
    {"cache-blocks", OPT_UINT, OFF(cache_blocks), 1e7, "N",
     "prefix cache size per node in blocks; 0 disables (1024)"},
    {"block-tokens", OPT_UINT, OFF(block_tokens), 4096, "N", "tokens per cache block (16)"},
    {"embedding-dims", OPT_UINT, OFF(embedding_dims), 65536, "N", "embedding size (16)"},
    {"seed", OPT_U64, OFF(seed), 1.8e19, "N", "seed of the fault-rate dice (1)"},
    {"fault-rate", OPT_DBL, OFF(fault_rate), 1, "X",
     "share of model requests that get a --fault (0)"},
    {"fault", OPT_FAULT, 0, 0, "SPEC", "fault for --fault-rate (repeatable; one picked at random)"},
    {"max-header-bytes", OPT_SIZE, OFF(max_header_bytes), 1e9, "N", "server cap (16384)"},
    {"max-body-bytes", OPT_SIZE, OFF(max_body_bytes), 1e12, "N", "server cap (16 MiB)"},
    {"header-timeout-ms", OPT_U64, OFF(header_timeout_ms), 8.64e7, "N", "server cap (10000)"},
    {"body-timeout-ms", OPT_U64, OFF(body_timeout_ms), 8.64e7, "N", "server cap (60000)"},
    {"idle-timeout-ms", OPT_U64, OFF(idle_timeout_ms), 8.64e7, "N", "server cap (60000)"},
    {"max-connections", OPT_UINT, OFF(max_connections), 1e7, "N", "server cap per node (10000)"},
    {"help", OPT_HELP, 0, 0, "", "this text"},
};

enum { N_OPTS = sizeof opts / sizeof opts[0] };

void sim_config_defaults(struct sim_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = xstrdup("127.0.0.1");
    c->nodes = 1;
    c->log_level = LOG_INFO;
    c->slots = 4;
    c->queue_max = 64;
    c->busy_retry_after_s = 1;
    c->model_vram_mb = 1024;
    c->default_max_tokens = 16;
    c->max_tokens_cap = 4096;
    c->cache_blocks = 1024;
    c->block_tokens = 16;
    c->embedding_dims = 16;
    c->seed = 1;
    c->max_header_bytes = 16 * 1024;
    c->max_body_bytes = 16 * 1024 * 1024;
    c->header_timeout_ms = 10000;
    c->body_timeout_ms = 60000;
    c->idle_timeout_ms = 60000;
    c->max_connections = 10000;
}

static void spec_free(struct sim_model_spec *m)
{
    if (!m) return;
    xfree(m->name);
    xfree(m->on_nodes);
    xfree(m);
}

void sim_config_free(struct sim_config *c)
{
    xfree(c->host);
    xfree(c->port_file);
    for (size_t i = 0; i < c->n_models; i++) spec_free(c->models[i]);
    xfree(c->models);
    xfree(c->hw);
    xfree(c->hide_ctx);
    memset(c, 0, sizeof *c);
}

void sim_config_usage(FILE *out)
{
    fprintf(out, "usage: drover sim [options]\n\n"
                 "A simulated inference engine speaking the OpenAI and Ollama wire formats.\n"
                 "Prints 'drover-sim ready port=<first> nodes=<K>' once every node listens.\n\n"
                 "options (each also a YAML key, with '_' for '-'):\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts[i].flag, opts[i].arg[0] ? " " : "",
                 opts[i].arg);
        fprintf(out, "  %-32s %s\n", left, opts[i].help);
    }
    fprintf(out, "\nfault SPEC (also the X-Sim-Fault request header), ';'-separated:\n"
                 "  status=NNN[;retry_after=S] | reset | hang | cut_after=N | slow_headers=MS |\n"
                 "  reset_after_complete\n");
}

long sim_config_find_model(const struct sim_config *c, const char *name, size_t len)
{
    struct strv want = strv_make(name, len);
    for (size_t i = 0; i < c->n_models; i++) {
        struct strv have = strv_from_cstr(c->models[i]->name);
        if (strv_eq(want, have)) return (long)i;
        /* Ollama's habit: "x" and "x:latest" are one model. */
        if (want.len == have.len + 7 && strv_starts_with(want, have) &&
            memcmp(want.p + have.len, ":latest", 7) == 0)
            return (long)i;
        if (have.len == want.len + 7 && strv_starts_with(have, want) &&
            memcmp(have.p + want.len, ":latest", 7) == 0)
            return (long)i;
    }
    return -1;
}

static struct sim_model_spec *spec_new(const char *name, size_t len)
{
    struct sim_model_spec *m = xcalloc(1, sizeof *m);
    m->name = xstrndup(name, len);
    m->vram_mb = UINT64_MAX;
    m->load_ms = -1;
    m->unload_ms = -1;
    return m;
}

/* Adds m, replacing a spec of the same name. Takes m. */
static int add_spec(struct sim_config *c, struct sim_model_spec *m, struct gw_error *err)
{
    long i = sim_config_find_model(c, m->name, strlen(m->name));
    if (i >= 0) {
        spec_free(c->models[i]);
        c->models[i] = m;
        return 0;
    }
    if (c->n_models >= SIM_MAX_MODELS) {
        spec_free(m);
        return gw_error_set(err, GW_E_LIMIT, "more than %d models", SIM_MAX_MODELS);
    }
    c->models = xrealloc(c->models, (c->n_models + 1) * sizeof *c->models);
    c->models[c->n_models++] = m;
    return 0;
}

struct sim_model_spec *sim_config_add_pulled(struct sim_config *c, const char *name, size_t len)
{
    long i = sim_config_find_model(c, name, len);
    if (i >= 0) return c->models[i];
    struct sim_model_spec *m = spec_new(name, len);
    c->models = xrealloc(c->models, (c->n_models + 1) * sizeof *c->models);
    c->models[c->n_models++] = m;
    return m;
}

static bool is_valid_model_name(struct strv n)
{
    if (n.len == 0 || n.len > 200) return false;
    for (size_t i = 0; i < n.len; i++) {
        unsigned char ch = (unsigned char)n.p[i];
        if (ch <= ' ' || ch == '"' || ch == '\\' || ch >= 0x7f) return false;
    }
    return true;
}

int sim_config_add_model_arg(struct sim_config *c, const char *arg, struct gw_error *err)
{
    struct strv a = strv_from_cstr(arg);
    enum sim_model_kind kind = SIM_MODEL_CHAT;
    const char *colon = strrchr(arg, ':');
    if (colon) {
        struct strv suffix = strv_from_cstr(colon + 1);
        bool known = true;
        if (strv_eq_cstr(suffix, "embedding") || strv_eq_cstr(suffix, "embed"))
            kind = SIM_MODEL_EMBEDDING;
        else if (!strv_eq_cstr(suffix, "chat"))
            known = false; /* part of the name, as in llama3:8b */
        if (known) a.len = (size_t)(colon - arg);
    }
    if (!is_valid_model_name(a)) return gw_error_set(err, GW_E_INVALID, "bad model name '%s'", arg);
    struct sim_model_spec *m = spec_new(a.p, a.len);
    m->kind = kind;
    return add_spec(c, m, err);
}

uint64_t sim_config_model_vram_mb(const struct sim_config *c, const struct sim_model_spec *m)
{
    return m->vram_mb == UINT64_MAX ? c->model_vram_mb : m->vram_mb;
}

uint64_t sim_config_ctx(const struct sim_config *c, const struct sim_model_spec *m, unsigned node)
{
    if (m && m->ctx) return m->ctx;
    if (node < c->n_hw && c->hw[node].context_size) return c->hw[node].context_size;
    return c->ctx;
}

int sim_config_ctx_hidden(const struct sim_config *c)
{
    if (!c->hide_ctx || !strcmp(c->hide_ctx, "none")) return 0;
    return strcmp(c->hide_ctx, "models") ? 2 : 1;
}

uint64_t sim_config_model_load_ms(const struct sim_config *c, const struct sim_model_spec *m)
{
    return m->load_ms < 0 ? c->load_ms : (uint64_t)m->load_ms;
}

uint64_t sim_config_model_unload_ms(const struct sim_config *c, const struct sim_model_spec *m)
{
    return m->unload_ms < 0 ? c->unload_ms : (uint64_t)m->unload_ms;
}

unsigned sim_config_model_dims(const struct sim_config *c, const struct sim_model_spec *m)
{
    return m->dims ? m->dims : c->embedding_dims;
}

bool sim_config_model_on_node(const struct sim_model_spec *m, unsigned node)
{
    if (!m->on_nodes) return true;
    for (size_t i = 0; i < m->n_on_nodes; i++)
        if (m->on_nodes[i] == node) return true;
    return false;
}

/* --- values ------------------------------------------------------------------------- */

static int parse_u64(const char *s, double max, uint64_t *out)
{
    uint64_t v;
    if (strv_to_u64(strv_from_cstr(s), &v)) return GW_E_PARSE;
    if ((double)v > max) return GW_E_INVALID;
    *out = v;
    return 0;
}

static int parse_dbl(const char *s, double max, double *out)
{
    if (!s[0]) return GW_E_PARSE;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return GW_E_PARSE;
    if (v < 0 || v > max) return GW_E_INVALID;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "on"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "off"))
        *out = false;
    else
        return GW_E_PARSE;
    return 0;
}

static int add_fault(struct sim_config *c, const char *s, struct gw_error *err)
{
    if (c->n_faults >= SIM_MAX_FAULTS)
        return gw_error_set(err, GW_E_LIMIT, "more than %d faults", SIM_MAX_FAULTS);
    struct sim_fault f;
    struct gw_error e = {0};
    if (sim_fault_parse(strv_from_cstr(s), &f, &e))
        return gw_error_set(err, GW_E_PARSE, "bad fault '%s': %s", s, e.msg);
    c->faults[c->n_faults++] = f;
    return 0;
}

/* Sets one scalar option from its text. */
static int set_opt(struct sim_config *c, const struct opt *o, const char *val, struct gw_error *err)
{
    char *base = (char *)c;
    uint64_t u = 0;
    double d = 0;
    bool b = false;
    int rc = 0;
    switch (o->type) {
    case OPT_STR: {
        char **p = (char **)(base + o->off);
        if (!val[0]) return gw_error_set(err, GW_E_INVALID, "%s: empty value", o->flag);
        xfree(*p);
        *p = xstrdup(val);
        return 0;
    }
    case OPT_U64:
    case OPT_UINT:
    case OPT_SIZE:
    case OPT_INT_PORT:
        rc = parse_u64(val, o->max, &u);
        if (rc == GW_E_PARSE)
            return gw_error_set(err, rc, "%s: '%s' is not a whole number", o->flag, val);
        if (rc) return gw_error_set(err, rc, "%s: %s is above %.0f", o->flag, val, o->max);
        if (o->type == OPT_U64)
            *(uint64_t *)(base + o->off) = u;
        else if (o->type == OPT_UINT)
            *(unsigned *)(base + o->off) = (unsigned)u;
        else if (o->type == OPT_SIZE)
            *(size_t *)(base + o->off) = (size_t)u;
        else
            *(int *)(base + o->off) = (int)u;
        return 0;
    case OPT_DBL:
        rc = parse_dbl(val, o->max, &d);
        if (rc == GW_E_PARSE)
            return gw_error_set(err, rc, "%s: '%s' is not a number", o->flag, val);
        if (rc) return gw_error_set(err, rc, "%s: %s is outside 0..%g", o->flag, val, o->max);
        memcpy(base + o->off, &d, sizeof d); /* a double member at offsetof: no aliasing cast */
        return 0;
    case OPT_BOOL:
        if (parse_bool(val, &b))
            return gw_error_set(err, GW_E_PARSE, "%s: '%s' is not a boolean", o->flag, val);
        *(bool *)(base + o->off) = b;
        return 0;
    case OPT_LEVEL: {
        enum log_level l;
        if (log_parse_level(val, &l))
            return gw_error_set(err, GW_E_PARSE, "%s: unknown level '%s'", o->flag, val);
        *(enum log_level *)(base + o->off) = l;
        return 0;
    }
    case OPT_MODEL:
        return sim_config_add_model_arg(c, val, err);
    case OPT_FAULT:
        return add_fault(c, val, err);
    case OPT_CONFIG:
    case OPT_HELP:
        break;
    }
    return gw_error_set(err, GW_E_INVALID, "%s: not settable here", o->flag);
}

static const struct opt *find_flag(struct strv name)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strv_eq_cstr(name, opts[i].flag)) return &opts[i];
    return NULL;
}

/* YAML key -> option: same name with '_' for '-'. */
static const struct opt *find_key(const char *key)
{
    char flag[64];
    size_t n = strlen(key);
    if (n >= sizeof flag) return NULL;
    for (size_t i = 0; i <= n; i++) flag[i] = key[i] == '_' ? '-' : key[i];
    return find_flag(strv_make(flag, n));
}

/* --- YAML ----------------------------------------------------------------------------- */

struct ydoc {
    yaml_document_t doc;
    const char *path;
    struct gw_error *err;
};

static int yerr(struct ydoc *y, yaml_node_t *n, const char *fmt, const char *a)
{
    char msg[320];
    snprintf(msg, sizeof msg, fmt, a);
    return gw_error_set(y->err, GW_E_INVALID, "%s:%zu: %s", y->path, n ? n->start_mark.line + 1 : 0,
                        msg);
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int yaml_model(struct sim_config *c, struct ydoc *y, yaml_node_t *n)
{
    if (n->type == YAML_SCALAR_NODE) {
        struct gw_error e = {0};
        if (sim_config_add_model_arg(c, scalar(n), &e)) return yerr(y, n, "%s", e.msg);
        return 0;
    }
    if (n->type != YAML_MAPPING_NODE) return yerr(y, n, "%s", "a model is a name or a mapping");
    struct sim_model_spec *m = spec_new("", 0);
    int rc = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top && !rc;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&y->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&y->doc, p->value);
        const char *key = scalar(k), *val = scalar(v);
        uint64_t u = 0;
        bool b = false;
        if (!key) {
            rc = yerr(y, k, "%s", "model keys must be scalars");
        } else if (!strcmp(key, "nodes")) {
            if (v->type != YAML_SEQUENCE_NODE) {
                rc = yerr(y, v, "%s", "model nodes: expected a list of node indexes");
                continue;
            }
            xfree(m->on_nodes);
            m->on_nodes = NULL;
            m->n_on_nodes = 0;
            size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
            m->on_nodes = xcalloc(cnt ? cnt : 1, sizeof *m->on_nodes);
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top && !rc; it++) {
                yaml_node_t *e = yaml_document_get_node(&y->doc, *it);
                if (!scalar(e) || parse_u64(scalar(e), SIM_MAX_NODES, &u))
                    rc = yerr(y, e, "%s", "model nodes: expected node indexes");
                else
                    m->on_nodes[m->n_on_nodes++] = u;
            }
        } else if (!val) {
            rc = yerr(y, v, "model %s: expected a scalar", key);
        } else if (!strcmp(key, "name")) {
            if (!is_valid_model_name(strv_from_cstr(val))) {
                rc = yerr(y, v, "bad model name '%s'", val);
            } else {
                xfree(m->name);
                m->name = xstrdup(val);
            }
        } else if (!strcmp(key, "kind")) {
            if (!strcmp(val, "chat"))
                m->kind = SIM_MODEL_CHAT;
            else if (!strcmp(val, "embedding"))
                m->kind = SIM_MODEL_EMBEDDING;
            else
                rc = yerr(y, v, "model kind '%s': expected chat or embedding", val);
        } else if (!strcmp(key, "vram_mb") || !strcmp(key, "load_ms") ||
                   !strcmp(key, "unload_ms") || !strcmp(key, "dims") || !strcmp(key, "ctx")) {
            if (parse_u64(val, 1e12, &u)) {
                rc = yerr(y, v, "model %s: expected a whole number", key);
            } else if (key[0] == 'c') {
                m->ctx = u;
            } else if (key[0] == 'v') {
                m->vram_mb = u;
            } else if (key[0] == 'l') {
                m->load_ms = (int64_t)u;
            } else if (key[0] == 'u') {
                m->unload_ms = (int64_t)u;
            } else if (u == 0 || u > 65536) {
                rc = yerr(y, v, "%s", "model dims: expected 1..65536");
            } else {
                m->dims = (unsigned)u;
            }
        } else if (!strcmp(key, "preload")) {
            if (parse_bool(val, &b))
                rc = yerr(y, v, "%s", "model preload: expected a boolean");
            else
                m->preload = b;
        } else {
            rc = yerr(y, k, "unknown model key '%s'", key);
        }
    }
    if (!rc && !m->name[0]) rc = yerr(y, n, "%s", "model without a name");
    if (rc) {
        spec_free(m);
        return rc;
    }
    struct gw_error e = {0};
    if (add_spec(c, m, &e)) return yerr(y, n, "%s", e.msg);
    return 0;
}

static int copy_text(char *dst, size_t cap, const char *val)
{
    if (strlen(val) >= cap) return -1;
    snprintf(dst, cap, "%s", val);
    return 0;
}

/* hardware: [{gpus: [{name, vram_mb, compute_capability}], cuda_version, rocm_version,
 * driver_version, context_size}, ...] — item i is node i's. */
static int yaml_hw(struct sim_config *c, struct ydoc *y, yaml_node_t *v)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return yerr(y, v, "%s", "hardware: expected a list (item i is node i)");
    size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    xfree(c->hw);
    c->hw = xcalloc(cnt ? cnt : 1, sizeof *c->hw);
    c->n_hw = cnt;
    size_t i = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *n = yaml_document_get_node(&y->doc, *it);
        struct sim_hw *hw = &c->hw[i];
        if (n->type != YAML_MAPPING_NODE) return yerr(y, n, "%s", "hardware: expected mappings");
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(&y->doc, p->key);
            yaml_node_t *e = yaml_document_get_node(&y->doc, p->value);
            const char *key = scalar(k), *val = scalar(e);
            uint64_t u;
            if (!key) return yerr(y, k, "%s", "hardware keys must be scalars");
            if (!strcmp(key, "gpus")) {
                if (e->type != YAML_SEQUENCE_NODE)
                    return yerr(y, e, "%s", "hardware gpus: expected a list");
                for (yaml_node_item_t *gi = e->data.sequence.items.start;
                     gi < e->data.sequence.items.top; gi++) {
                    yaml_node_t *g = yaml_document_get_node(&y->doc, *gi);
                    if (g->type != YAML_MAPPING_NODE || hw->n_gpus >= SIM_MAX_GPUS)
                        return yerr(y, g, "%s", "hardware gpus: at most 16 mappings");
                    struct sim_gpu *gpu = &hw->gpus[hw->n_gpus++];
                    for (yaml_node_pair_t *q = g->data.mapping.pairs.start;
                         q < g->data.mapping.pairs.top; q++) {
                        const char *gk = scalar(yaml_document_get_node(&y->doc, q->key));
                        yaml_node_t *gvn = yaml_document_get_node(&y->doc, q->value);
                        const char *gv = scalar(gvn);
                        int bad = !gk || !gv;
                        if (!bad && !strcmp(gk, "name"))
                            bad = copy_text(gpu->name, sizeof gpu->name, gv);
                        else if (!bad && !strcmp(gk, "vram_mb"))
                            bad = parse_u64(gv, 1e9, &gpu->vram_mb);
                        else if (!bad && !strcmp(gk, "compute_capability"))
                            bad = copy_text(gpu->compute_capability, sizeof gpu->compute_capability,
                                            gv);
                        else
                            bad = 1;
                        if (bad)
                            return yerr(y, gvn,
                                        "hardware gpu key '%s': expected name, "
                                        "vram_mb or compute_capability",
                                        gk ? gk : "?");
                    }
                }
            } else if (!val) {
                return yerr(y, e, "hardware %s: expected a scalar", key);
            } else if (!strcmp(key, "cuda_version")) {
                if (copy_text(hw->cuda_version, sizeof hw->cuda_version, val))
                    return yerr(y, e, "%s", "hardware cuda_version: too long");
            } else if (!strcmp(key, "rocm_version")) {
                if (copy_text(hw->rocm_version, sizeof hw->rocm_version, val))
                    return yerr(y, e, "%s", "hardware rocm_version: too long");
            } else if (!strcmp(key, "driver_version")) {
                if (copy_text(hw->driver_version, sizeof hw->driver_version, val))
                    return yerr(y, e, "%s", "hardware driver_version: too long");
            } else if (!strcmp(key, "context_size")) {
                if (parse_u64(val, 1e9, &u))
                    return yerr(y, e, "%s", "hardware context_size: expected a whole number");
                hw->context_size = u;
            } else {
                return yerr(y, k, "unknown hardware key '%s'", key);
            }
        }
    }
    return 0;
}

static int yaml_top(struct sim_config *c, struct ydoc *y, yaml_node_t *root)
{
    if (!root) return 0; /* an empty file sets nothing */
    if (root->type != YAML_MAPPING_NODE) return yerr(y, root, "%s", "expected a mapping");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&y->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&y->doc, p->value);
        const char *key = scalar(k);
        if (!key) return yerr(y, k, "%s", "keys must be scalars");
        if (!strcmp(key, "hardware")) {
            int rc = yaml_hw(c, y, v);
            if (rc) return rc;
            continue;
        }
        const struct opt *o = find_key(key);
        if (!o || o->type == OPT_CONFIG || o->type == OPT_HELP) {
            if (strcmp(key, "models") && strcmp(key, "faults"))
                return yerr(y, k, "unknown key '%s'", key);
            o = find_key(strcmp(key, "models") ? "fault" : "model");
        }
        if ((o->type == OPT_MODEL || o->type == OPT_FAULT) && v->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                yaml_node_t *e = yaml_document_get_node(&y->doc, *it);
                int rc;
                if (o->type == OPT_MODEL) {
                    rc = yaml_model(c, y, e);
                } else if (!scalar(e)) {
                    rc = yerr(y, e, "%s", "faults: expected a list of fault specs");
                } else {
                    struct gw_error er = {0};
                    rc = add_fault(c, scalar(e), &er) ? yerr(y, e, "%s", er.msg) : 0;
                }
                if (rc) return rc;
            }
            continue;
        }
        if (o->type == OPT_MODEL && v->type == YAML_MAPPING_NODE) {
            int rc = yaml_model(c, y, v);
            if (rc) return rc;
            continue;
        }
        const char *val = scalar(v);
        if (!val) return yerr(y, v, "%s: expected a scalar", key);
        struct gw_error e = {0};
        if (set_opt(c, o, val, &e)) return yerr(y, v, "%s", e.msg);
    }
    return 0;
}

int sim_config_load_yaml(struct sim_config *c, const char *path, struct gw_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return gw_error_set(err, -errno, "%s:0: cannot open: %s", path, strerror(errno));
    char *data = xmalloc(SIM_YAML_MAX_BYTES + 1);
    size_t n = fread(data, 1, SIM_YAML_MAX_BYTES + 1, f);
    int read_err = ferror(f);
    fclose(f);
    if (read_err || n > SIM_YAML_MAX_BYTES) {
        xfree(data);
        return gw_error_set(err, GW_E_LIMIT, "%s:0: %s", path,
                            read_err ? "read error" : "file larger than 1 MiB");
    }
    yaml_parser_t parser;
    struct ydoc y = {.path = path, .err = err};
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, n);
    int rc;
    if (!yaml_parser_load(&parser, &y.doc)) {
        rc = gw_error_set(err, GW_E_PARSE, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                          parser.problem ? parser.problem : "YAML syntax error");
    } else {
        rc = yaml_top(c, &y, yaml_document_get_root_node(&y.doc));
        yaml_document_delete(&y.doc);
    }
    yaml_parser_delete(&parser);
    xfree(data);
    return rc;
}

/* --- flags -------------------------------------------------------------------------- */

int sim_config_parse_args(struct sim_config *c, int argc, char **argv, FILE *out,
                          struct gw_error *err)
{
    /* Pass 1: --help and --config, so flags override the file whatever the order. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            sim_config_usage(out);
            return 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return gw_error_set(err, GW_E_INVALID, "--config needs a value");
            path = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            path = argv[i] + 9;
        }
        if (path) {
            int rc = sim_config_load_yaml(c, path, err);
            if (rc) return rc;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return gw_error_set(err, GW_E_INVALID, "unexpected argument '%s'", a);
        struct strv name = strv_from_cstr(a + 2);
        const char *val = NULL;
        long eq = strv_index(name, '=');
        if (eq >= 0) {
            val = a + 2 + eq + 1;
            name.len = (size_t)eq;
        }
        const struct opt *o = find_flag(name);
        if (!o) return gw_error_set(err, GW_E_INVALID, "unknown flag '%s'", a);
        if (o->type == OPT_BOOL && !val) {
            *(bool *)((char *)c + o->off) = true;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return gw_error_set(err, GW_E_INVALID, "--%s needs a value", o->flag);
            val = argv[++i];
        }
        if (o->type == OPT_CONFIG) continue;
        int rc = set_opt(c, o, val, err);
        if (rc && o->type != OPT_MODEL && o->type != OPT_FAULT) {
            struct gw_error e = *err;
            return gw_error_set(err, rc, "--%s", e.msg);
        }
        if (rc) return rc;
    }
    if (c->nodes == 0) return gw_error_set(err, GW_E_INVALID, "--nodes must be at least 1");
    if (c->slots == 0) return gw_error_set(err, GW_E_INVALID, "--slots must be at least 1");
    if (c->block_tokens == 0)
        return gw_error_set(err, GW_E_INVALID, "--block-tokens must be at least 1");
    if (c->port && (unsigned)c->port + c->nodes - 1 > 65535)
        return gw_error_set(err, GW_E_INVALID, "--port %d + --nodes %u passes 65535", c->port,
                            c->nodes);
    if (c->fault_rate > 0 && c->n_faults == 0)
        return gw_error_set(err, GW_E_INVALID, "--fault-rate needs at least one --fault");
    if (c->hide_ctx && strcmp(c->hide_ctx, "none") && strcmp(c->hide_ctx, "models") &&
        strcmp(c->hide_ctx, "all"))
        return gw_error_set(err, GW_E_INVALID, "--hide-ctx: '%s' is not none, models or all",
                            c->hide_ctx);
    if (c->n_models == 0) {
        int rc = sim_config_add_model_arg(c, "sim-chat", err);
        if (!rc) rc = sim_config_add_model_arg(c, "sim-embed:embedding", err);
        if (rc) return rc;
    }
    return 0;
}
