/* node_api — the shapes of docs/node_api.md. Emitters build JSON by hand into a capped buf
 * (strings through json_append_str); parsers go through json_parse_strict and copy into fixed
 * fields, so a parsed struct never borrows from the json-c tree. Any thread. */
#include "proto/node_api.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"

static const char *const kind_names[NODE_KIND_COUNT] = {"openai", "llamacpp", "ollama", "vllm"};
static const char *const status_names[] = {"loaded", "loading", "on_disk"};
static const char *const cap_names[CAP_N] = {"chat",  "completions", "embeddings",
                                             "tools", "vision",      "response_format"};

const char *node_kind_name(enum node_kind k)
{
    return (unsigned)k < NODE_KIND_COUNT ? kind_names[k] : "?";
}

static int kind_parse(struct strv s, enum node_kind *out)
{
    for (unsigned i = 0; i < NODE_KIND_COUNT; i++)
        if (strv_eq_cstr(s, kind_names[i])) {
            *out = (enum node_kind)i;
            return 0;
        }
    return GW_E_INVALID;
}

int node_kind_parse(const char *s, enum node_kind *out)
{
    return s ? kind_parse(strv_from_cstr(s), out) : GW_E_INVALID;
}

const char *node_api_models_path(enum node_kind k)
{
    return k == NODE_KIND_OLLAMA ? NODE_API_PATH_OLLAMA_TAGS : NODE_API_PATH_OAI_MODELS;
}

bool node_api_is_inference_path(struct strv path)
{
    static const char *const posts[] = {
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/chat",
        "/api/generate",        "/api/embed",      "/api/embeddings"};
    for (size_t i = 0; i < sizeof posts / sizeof posts[0]; i++)
        if (strv_eq_cstr(path, posts[i])) return true;
    return false;
}

bool node_api_is_proxied(struct strv method, struct strv path)
{
    if (strv_eq_cstr(method, "POST")) return node_api_is_inference_path(path);
    return strv_eq_cstr(method, "GET") && (strv_eq_cstr(path, NODE_API_PATH_OAI_MODELS) ||
                                           strv_eq_cstr(path, NODE_API_PATH_OLLAMA_TAGS));
}

static const char *model_status_name(enum node_api_model_status s)
{
    return (unsigned)s < 3 ? status_names[s] : "unknown";
}

static int model_status_parse(struct strv s, enum node_api_model_status *out)
{
    for (unsigned i = 0; i < 3; i++)
        if (strv_eq_cstr(s, status_names[i])) {
            *out = (enum node_api_model_status)i;
            return 0;
        }
    return GW_E_INVALID;
}

const char *cap_name(unsigned cap_bit)
{
    for (unsigned i = 0; i < CAP_N; i++)
        if (cap_bit == 1u << i) return cap_names[i];
    return "?";
}

static int cap_parse(struct strv s, unsigned *bit)
{
    for (unsigned i = 0; i < CAP_N; i++)
        if (strv_eq_cstr(s, cap_names[i])) {
            *bit = 1u << i;
            return 0;
        }
    return GW_E_INVALID;
}

static bool contains_ci(struct strv s, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= s.len; i++)
        if (strv_eq_ci(strv_make(s.p + i, k), strv_make(needle, k))) return true;
    return false;
}

unsigned node_api_caps_guess(struct strv name, struct strv family)
{
    if (contains_ci(name, "embed") || contains_ci(family, "embed") || contains_ci(family, "bert"))
        return CAP_EMBEDDINGS;
    return CAP_CHAT | CAP_COMPLETIONS;
}

static bool is_ascii_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool node_api_name_is_valid(struct strv s)
{
    if (s.len == 0 || s.len >= NODE_API_MAX_NAME) return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (!is_ascii_alnum(c) && c != '.' && c != '_' && c != '-') return false;
    }
    return true;
}

bool node_api_secret_is_valid(struct strv s)
{
    if (s.len != NODE_API_SECRET_HEX) return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

bool node_api_label_key_is_valid(struct strv s)
{
    if (s.len == 0 || s.len > NODE_API_MAX_LABEL_KEY) return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (!is_ascii_alnum(c) && c != '.' && c != '_' && c != '-' && c != '/') return false;
    }
    return true;
}

bool node_api_label_value_is_valid(struct strv s)
{
    if (s.len > NODE_API_MAX_LABEL_VALUE) return false;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.p[i] < 0x20) return false;
    return true;
}

static void copy_strv(char *dst, size_t cap, struct strv v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    /* never cut a UTF-8 sequence: a strict parser would refuse the copy */
    if (n < v.len)
        while (n > 0 && ((unsigned char)v.p[n] & 0xC0) == 0x80) n--;
    if (n) memcpy(dst, v.p, n);
    dst[n] = '\0';
}

/* --- models ---------------------------------------------------------------------------- */

struct node_api_model *node_api_models_add(struct node_api_models *l, struct strv id)
{
    if (l->n >= NODE_API_MAX_MODELS) return NULL;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    struct node_api_model *m = &l->v[l->n++];
    memset(m, 0, sizeof *m);
    copy_strv(m->id, sizeof m->id, id);
    m->size_mb = -1;
    return m;
}

struct node_api_model *node_api_models_find(struct node_api_models *l, struct strv id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strv_eq_cstr(id, l->v[i].id)) return &l->v[i];
    return NULL;
}

void node_api_models_free(struct node_api_models *l)
{
    xfree(l->v);
    memset(l, 0, sizeof *l);
}

static int append_kv_str(struct buf *out, const char *key, const char *val, bool comma)
{
    int rc = comma ? buf_append_cstr(out, ",") : 0;
    if (!rc) rc = json_append_str(out, key, strlen(key));
    if (!rc) rc = buf_append_cstr(out, ":");
    if (!rc) rc = json_append_str(out, val, strlen(val));
    return rc;
}

static int append_kv_int(struct buf *out, const char *key, int64_t v, bool comma)
{
    return buf_appendf(out, "%s\"%s\":%" PRId64, comma ? "," : "", key, v);
}

static int model_emit(struct buf *out, const struct node_api_model *m)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "id", m->id, false);
    if (!rc) rc = append_kv_str(out, "status", model_status_name(m->status), true);
    if (!rc) rc = buf_append_cstr(out, ",\"capabilities\":[");
    bool first = true;
    for (unsigned i = 0; i < CAP_N && !rc; i++) {
        if (!(m->caps & (1u << i))) continue;
        if (!first) rc = buf_append_cstr(out, ",");
        first = false;
        if (!rc) rc = json_append_str(out, cap_names[i], strlen(cap_names[i]));
    }
    if (!rc) rc = buf_append_cstr(out, "]");
    if (!rc) rc = append_kv_int(out, "in_flight", m->in_flight, true);
    if (!rc && m->size_mb >= 0) rc = append_kv_int(out, "size_mb", m->size_mb, true);
    if (!rc && m->ctx_tokens > 0) rc = append_kv_int(out, "context_length", m->ctx_tokens, true);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

static int models_emit(struct buf *out, const struct node_api_models *l)
{
    int rc = buf_append_cstr(out, "[");
    for (size_t i = 0; i < l->n && !rc; i++) {
        if (i) rc = buf_append_cstr(out, ",");
        if (!rc) rc = model_emit(out, &l->v[i]);
    }
    if (!rc) rc = buf_append_cstr(out, "]");
    return rc;
}

/* Optional integer member: absent keeps *out; wrong type is GW_E_INVALID naming the key. */
static int opt_int(struct json_object *o, const char *key, int64_t *out, struct gw_error *err)
{
    int rc = json_get_int(o, key, out);
    if (rc == GW_E_NOTFOUND || rc == 0) return 0;
    return gw_error_set(err, GW_E_INVALID, "%s: expected an integer", key);
}

static int opt_str(struct json_object *o, const char *key, char *dst, size_t cap,
                   struct gw_error *err)
{
    struct strv v;
    int rc = json_get_str(o, key, &v);
    if (rc == GW_E_NOTFOUND) return 0;
    if (rc) return gw_error_set(err, GW_E_INVALID, "%s: expected a string", key);
    copy_strv(dst, cap, v);
    return 0;
}

static int model_parse(struct json_object *o, struct node_api_models *l, struct gw_error *err)
{
    if (!json_object_is_type(o, json_type_object))
        return gw_error_set(err, GW_E_INVALID, "models: expected objects");
    struct strv id, st;
    if (json_get_str(o, "id", &id) || id.len == 0 || memchr(id.p, '\0', id.len))
        return gw_error_set(err, GW_E_INVALID, "models.id: expected a non-empty string");
    if (json_get_str(o, "status", &st))
        return gw_error_set(err, GW_E_INVALID, "models.status: expected a string");
    enum node_api_model_status status;
    if (model_status_parse(st, &status))
        return gw_error_set(err, GW_E_INVALID, "models.status: unknown '%.*s'", STRV_FMT(st));
    struct node_api_model *m = node_api_models_add(l, id);
    if (!m) return gw_error_set(err, GW_E_LIMIT, "models: more than %d", NODE_API_MAX_MODELS);
    m->status = status;
    struct json_object *caps = NULL;
    int rc = json_get_arr(o, "capabilities", &caps);
    if (rc == 0) {
        size_t n = json_object_array_length(caps);
        for (size_t i = 0; i < n; i++) {
            struct json_object *c = json_object_array_get_idx(caps, i);
            if (!json_object_is_type(c, json_type_string))
                return gw_error_set(err, GW_E_INVALID, "models.capabilities: expected strings");
            unsigned bit;
            if (cap_parse(
                    strv_make(json_object_get_string(c), (size_t)json_object_get_string_len(c)),
                    &bit) == 0)
                m->caps |= bit;
        }
    } else if (rc != GW_E_NOTFOUND) {
        return gw_error_set(err, GW_E_INVALID, "models.capabilities: expected an array");
    }
    int64_t v = 0;
    if ((rc = opt_int(o, "in_flight", &v, err))) return rc;
    m->in_flight = v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    if ((rc = opt_int(o, "size_mb", &m->size_mb, err))) return rc;
    if ((rc = opt_int(o, "context_length", &m->ctx_tokens, err))) return rc;
    if (m->ctx_tokens < 0) m->ctx_tokens = 0;
    return 0;
}

static int models_parse_json(struct json_object *arr, struct node_api_models *l,
                             struct gw_error *err)
{
    if (!arr || !json_object_is_type(arr, json_type_array))
        return gw_error_set(err, GW_E_INVALID, "models: expected an array");
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        int rc = model_parse(json_object_array_get_idx(arr, i), l, err);
        if (rc) return rc;
    }
    return 0;
}

/* --- discovery ------------------------------------------------------------------------- */

void node_api_discovery_init(struct node_api_discovery *d)
{
    memset(d, 0, sizeof *d);
    d->cpus = -1;
    d->ram_mb = -1;
}

static int gpu_emit(struct buf *out, const struct node_api_gpu *g)
{
    int rc = buf_appendf(out, "{\"index\":%d", g->index);
    if (!rc) rc = append_kv_str(out, "name", g->name, true);
    if (!rc && g->vram_total_mb >= 0) rc = append_kv_int(out, "vram_total_mb", g->vram_total_mb, 1);
    if (!rc && g->vram_free_mb >= 0) rc = append_kv_int(out, "vram_free_mb", g->vram_free_mb, 1);
    if (!rc) rc = append_kv_str(out, "compute_capability", g->compute_capability, true);
    if (!rc) rc = append_kv_str(out, "driver_version", g->driver_version, true);
    if (!rc) rc = append_kv_str(out, "cuda_version", g->cuda_version, true);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

int node_api_discovery_emit(struct buf *out, const struct node_api_discovery *d)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "hostname", d->hostname, false);
    if (!rc) rc = append_kv_str(out, "os", d->os, true);
    if (!rc) rc = append_kv_str(out, "kernel", d->kernel, true);
    if (!rc && d->cpus >= 0) rc = append_kv_int(out, "cpus", d->cpus, true);
    if (!rc && d->ram_mb >= 0) rc = append_kv_int(out, "ram_mb", d->ram_mb, true);
    if (!rc) rc = buf_append_cstr(out, ",\"gpus\":[");
    for (size_t i = 0; i < d->n_gpus && !rc; i++) {
        if (i) rc = buf_append_cstr(out, ",");
        if (!rc) rc = gpu_emit(out, &d->gpus[i]);
    }
    if (!rc) rc = buf_append_cstr(out, "]");
    if (!rc && d->cuda_version[0]) rc = append_kv_str(out, "cuda_version", d->cuda_version, true);
    if (!rc && d->rocm_version[0]) rc = append_kv_str(out, "rocm_version", d->rocm_version, true);
    if (!rc && d->driver_version[0])
        rc = append_kv_str(out, "driver_version", d->driver_version, true);
    if (!rc && d->n_installed) {
        rc = buf_append_cstr(out, ",\"installed\":[");
        for (size_t i = 0; i < d->n_installed && !rc; i++) {
            const struct node_api_installed *it = &d->installed[i];
            rc = buf_append_cstr(out, i ? ",{" : "{");
            if (!rc) rc = append_kv_str(out, "kind", it->is_model ? "model" : "backend", false);
            if (!rc) rc = append_kv_str(out, "name", it->name, true);
            if (!rc && it->digest[0]) rc = append_kv_str(out, "digest", it->digest, true);
            if (!rc && it->latest_digest[0])
                rc = append_kv_str(out, "latest_digest", it->latest_digest, true);
            if (!rc && it->checked_ms >= 0)
                rc = append_kv_int(out, "checked_ms", it->checked_ms, true);
            if (!rc) rc = buf_append_cstr(out, "}");
        }
        if (!rc) rc = buf_append_cstr(out, "]");
    }
    if (!rc && (d->has_ops || d->n_ops)) {
        rc = buf_append_cstr(out, ",\"ops\":[");
        for (size_t i = 0; i < d->n_ops && !rc; i++) {
            if (i) rc = buf_append_cstr(out, ",");
            if (!rc) rc = json_append_str(out, d->ops[i], strlen(d->ops[i]));
        }
        if (!rc) rc = buf_append_cstr(out, "]");
    }
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

static int gpu_parse(struct json_object *o, struct node_api_gpu *g, struct gw_error *err)
{
    if (!json_object_is_type(o, json_type_object))
        return gw_error_set(err, GW_E_INVALID, "gpus: expected objects");
    memset(g, 0, sizeof *g);
    g->vram_total_mb = g->vram_free_mb = -1;
    int64_t idx = 0;
    int rc = opt_int(o, "index", &idx, err);
    if (!rc) g->index = (int)idx;
    if (!rc) rc = opt_str(o, "name", g->name, sizeof g->name, err);
    if (!rc) rc = opt_int(o, "vram_total_mb", &g->vram_total_mb, err);
    if (!rc) rc = opt_int(o, "vram_free_mb", &g->vram_free_mb, err);
    if (!rc)
        rc = opt_str(o, "compute_capability", g->compute_capability, sizeof g->compute_capability,
                     err);
    if (!rc) rc = opt_str(o, "driver_version", g->driver_version, sizeof g->driver_version, err);
    if (!rc) rc = opt_str(o, "cuda_version", g->cuda_version, sizeof g->cuda_version, err);
    return rc;
}

static int discovery_ops_parse(struct json_object *o, struct node_api_discovery *d,
                               struct gw_error *err)
{
    struct json_object *arr = NULL;
    int rc = json_get_arr(o, "ops", &arr);
    if (rc == GW_E_NOTFOUND) return 0;
    if (rc) return gw_error_set(err, GW_E_INVALID, "ops: expected an array");
    size_t n = json_object_array_length(arr);
    if (n > sizeof d->ops / sizeof d->ops[0])
        return gw_error_set(err, GW_E_LIMIT, "ops: more than %zu",
                            sizeof d->ops / sizeof d->ops[0]);
    d->has_ops = true;
    d->n_ops = 0;
    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(e, json_type_string) ||
            (size_t)json_object_get_string_len(e) >= sizeof d->ops[0])
            return gw_error_set(err, GW_E_INVALID, "ops: expected short strings");
        snprintf(d->ops[d->n_ops++], sizeof d->ops[0], "%s", json_object_get_string(e));
    }
    return 0;
}

struct node_api_installed *node_api_discovery_add_installed(struct node_api_discovery *d,
                                                            bool is_model, const char *name,
                                                            const char *digest)
{
    if (d->n_installed >= NODE_API_MAX_INSTALLED) {
        d->installed_truncated = true;
        return NULL;
    }
    struct node_api_installed *it = &d->installed[d->n_installed++];
    memset(it, 0, sizeof *it);
    it->is_model = is_model;
    it->checked_ms = -1;
    snprintf(it->name, sizeof it->name, "%s", name ? name : "");
    snprintf(it->digest, sizeof it->digest, "%s", digest ? digest : "");
    return it;
}

const char *node_api_discovery_cuda(const struct node_api_discovery *d)
{
    if (d->cuda_version[0]) return d->cuda_version;
    for (size_t i = 0; i < d->n_gpus; i++)
        if (d->gpus[i].cuda_version[0]) return d->gpus[i].cuda_version;
    return "";
}

int node_api_version_cmp(const char *a, const char *b)
{
    while (*a || *b) {
        unsigned long x = 0, y = 0;
        while (*a >= '0' && *a <= '9') x = x * 10 + (unsigned long)(*a++ - '0');
        while (*b >= '0' && *b <= '9') y = y * 10 + (unsigned long)(*b++ - '0');
        if (x != y) return x < y ? -1 : 1;
        /* skip to the next numeric part ("12.4" → "4"; "535.104.05" works the same) */
        while (*a && (*a < '0' || *a > '9')) a++;
        while (*b && (*b < '0' || *b > '9')) b++;
    }
    return 0;
}

bool node_api_version_within(const char *v, const char *min, const char *max)
{
    if (min && min[0] && node_api_version_cmp(v, min) < 0) return false;
    if (!max || !max[0]) return true;
    /* v cut to as many parts as max has */
    size_t parts = 1;
    for (const char *p = max; *p; p++) parts += *p == '.';
    char cut[64];
    size_t k = 0, seen = 1;
    for (const char *p = v; *p && k + 1 < sizeof cut; p++) {
        if (*p == '.' && ++seen > parts) break;
        cut[k++] = *p;
    }
    cut[k] = '\0';
    return node_api_version_cmp(cut, max) <= 0;
}

static int installed_parse(struct json_object *o, struct node_api_discovery *d,
                           struct gw_error *err)
{
    struct json_object *arr = NULL;
    int rc = json_get_arr(o, "installed", &arr);
    if (rc == GW_E_NOTFOUND) return 0;
    if (rc) return gw_error_set(err, GW_E_INVALID, "installed: expected an array");
    d->n_installed = 0;
    d->installed_truncated = false;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *e = json_object_array_get_idx(arr, i);
        struct strv kind, name;
        if (!json_object_is_type(e, json_type_object) || json_get_str(e, "kind", &kind) ||
            (!strv_eq_cstr(kind, "model") && !strv_eq_cstr(kind, "backend")) ||
            json_get_str(e, "name", &name) || !name.len)
            return gw_error_set(err, GW_E_INVALID,
                                "installed: expected {kind: model|backend, name, ...}");
        struct node_api_installed tmp;
        memset(&tmp, 0, sizeof tmp);
        copy_strv(tmp.name, sizeof tmp.name, name);
        tmp.is_model = strv_eq_cstr(kind, "model");
        tmp.checked_ms = -1;
        if ((rc = opt_str(e, "digest", tmp.digest, sizeof tmp.digest, err))) return rc;
        if ((rc = opt_str(e, "latest_digest", tmp.latest_digest, sizeof tmp.latest_digest, err)))
            return rc;
        if ((rc = opt_int(e, "checked_ms", &tmp.checked_ms, err))) return rc;
        if (d->n_installed >= NODE_API_MAX_INSTALLED) {
            d->installed_truncated = true;
            continue;
        }
        d->installed[d->n_installed++] = tmp;
    }
    return 0;
}

int node_api_discovery_parse(const char *p, size_t len, struct node_api_discovery *d,
                             struct gw_error *err)
{
    node_api_discovery_init(d);
    struct json_object *root = json_parse_strict(p ? p : "", len, NODE_API_MAX_DEPTH, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    int rc = node_api_discovery_parse_json(root, d, err);
    json_object_put(root);
    return rc;
}

bool node_api_discovery_takes_op(const struct node_api_discovery *d, const char *op)
{
    for (size_t i = 0; i < d->n_ops; i++)
        if (strcmp(d->ops[i], op) == 0) return true;
    return false;
}

int node_api_discovery_parse_json(struct json_object *o, struct node_api_discovery *d,
                                  struct gw_error *err)
{
    if (!o || !json_object_is_type(o, json_type_object))
        return gw_error_set(err, GW_E_INVALID, "discovery: expected an object");
    int rc = opt_str(o, "hostname", d->hostname, sizeof d->hostname, err);
    if (!rc) rc = opt_str(o, "os", d->os, sizeof d->os, err);
    if (!rc) rc = opt_str(o, "kernel", d->kernel, sizeof d->kernel, err);
    if (!rc) rc = opt_int(o, "cpus", &d->cpus, err);
    if (!rc) rc = opt_int(o, "ram_mb", &d->ram_mb, err);
    if (!rc) rc = discovery_ops_parse(o, d, err);
    if (!rc) rc = opt_str(o, "cuda_version", d->cuda_version, sizeof d->cuda_version, err);
    if (!rc) rc = opt_str(o, "rocm_version", d->rocm_version, sizeof d->rocm_version, err);
    if (!rc) rc = opt_str(o, "driver_version", d->driver_version, sizeof d->driver_version, err);
    if (!rc) rc = installed_parse(o, d, err);
    if (rc) return rc;
    struct json_object *gpus = NULL;
    rc = json_get_arr(o, "gpus", &gpus);
    if (rc == GW_E_NOTFOUND) return 0;
    if (rc) return gw_error_set(err, GW_E_INVALID, "gpus: expected an array");
    size_t n = json_object_array_length(gpus);
    if (n > NODE_API_MAX_GPUS)
        return gw_error_set(err, GW_E_LIMIT, "gpus: more than %d", NODE_API_MAX_GPUS);
    d->n_gpus = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = gpu_parse(json_object_array_get_idx(gpus, i), &d->gpus[i], err))) return rc;
        d->n_gpus = i + 1;
    }
    return 0;
}

/* --- health ---------------------------------------------------------------------------- */

int node_api_health_emit(struct buf *out, const struct node_api_health *h)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "status", h->ok ? "ok" : "engine_down", false);
    if (!rc) rc = buf_append_cstr(out, ",\"engine\":{");
    if (!rc) rc = append_kv_str(out, "kind", node_kind_name(h->engine), false);
    if (!rc) rc = append_kv_str(out, "url", h->engine_url, true);
    if (!rc) rc = buf_appendf(out, ",\"reachable\":%s}", h->engine_reachable ? "true" : "false");
    if (!rc) rc = append_kv_int(out, "in_flight", h->in_flight, true);
    if (!rc) rc = append_kv_int(out, "queued", h->queued, true);
    if (!rc) rc = buf_append_cstr(out, ",\"models\":");
    if (!rc) rc = models_emit(out, &h->models);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

/* The body as a JSON object of at most cap bytes (strict, depth-capped), or NULL with err. */
static struct json_object *parse_root_capped(const char *p, size_t len, size_t cap,
                                             struct gw_error *err)
{
    if (len > cap) {
        gw_error_set(err, GW_E_LIMIT, "body larger than %zu bytes", cap);
        return NULL;
    }
    struct json_object *root = json_parse_strict(p ? p : "", len, NODE_API_MAX_DEPTH, err);
    if (root && !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        gw_error_set(err, GW_E_INVALID, "expected a JSON object");
        return NULL;
    }
    return root;
}

static struct json_object *parse_root(const char *p, size_t len, struct gw_error *err)
{
    return parse_root_capped(p, len, NODE_API_MAX_BODY_BYTES, err);
}

int node_api_health_parse(const char *p, size_t len, struct node_api_health *h,
                          struct gw_error *err)
{
    memset(h, 0, sizeof *h);
    struct json_object *root = parse_root(p, len, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    int rc = 0;
    struct strv st;
    if (json_get_str(root, "status", &st)) {
        rc = gw_error_set(err, GW_E_INVALID, "status: expected a string");
        goto out;
    }
    h->ok = strv_eq_cstr(st, "ok");
    struct json_object *eng = NULL;
    rc = json_get_obj(root, "engine", &eng);
    if (rc == 0) {
        struct strv kind;
        if (json_get_str(eng, "kind", &kind) == 0 && kind_parse(kind, &h->engine)) {
            rc = gw_error_set(err, GW_E_INVALID, "engine.kind: unknown '%.*s'", STRV_FMT(kind));
            goto out;
        }
        if ((rc = opt_str(eng, "url", h->engine_url, sizeof h->engine_url, err))) goto out;
        bool r = h->ok;
        int brc = json_get_bool(eng, "reachable", &r);
        if (brc && brc != GW_E_NOTFOUND) {
            rc = gw_error_set(err, GW_E_INVALID, "engine.reachable: expected a boolean");
            goto out;
        }
        h->engine_reachable = r;
    } else if (rc != GW_E_NOTFOUND) {
        rc = gw_error_set(err, GW_E_INVALID, "engine: expected an object");
        goto out;
    }
    rc = opt_int(root, "in_flight", &h->in_flight, err);
    if (!rc) rc = opt_int(root, "queued", &h->queued, err);
    if (rc) goto out;
    struct json_object *models = NULL;
    rc = json_get_arr(root, "models", &models);
    if (rc == GW_E_NOTFOUND) {
        rc = 0;
    } else if (rc) {
        rc = gw_error_set(err, GW_E_INVALID, "models: expected an array");
    } else {
        rc = models_parse_json(models, &h->models, err);
    }
out:
    json_object_put(root);
    return rc;
}

void node_api_health_free(struct node_api_health *h)
{
    node_api_models_free(&h->models);
}

int node_api_models_answer_emit(struct buf *out, const struct node_api_models *l)
{
    int rc = buf_append_cstr(out, "{\"models\":");
    if (!rc) rc = models_emit(out, l);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

/* --- join ------------------------------------------------------------------------------ */

int node_api_join_emit(struct buf *out, const struct node_api_join *j)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "name", j->name, false);
    if (!rc) rc = append_kv_str(out, "url", j->url, true);
    if (!rc) rc = append_kv_str(out, "engine", node_kind_name(j->engine), true);
    if (!rc) rc = buf_append_cstr(out, ",\"labels\":{");
    for (size_t i = 0; i < j->n_labels && !rc; i++)
        rc = append_kv_str(out, j->labels[i].key, j->labels[i].value, i > 0);
    if (!rc) rc = buf_append_cstr(out, "}");
    if (!rc && j->secret[0]) rc = append_kv_str(out, "secret", j->secret, true);
    if (!rc && j->has_discovery) {
        rc = buf_append_cstr(out, ",\"discovery\":");
        if (!rc) rc = node_api_discovery_emit(out, &j->discovery);
    }
    if (!rc && j->agent_version[0]) rc = append_kv_str(out, "agent_version", j->agent_version, 1);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

static int set_param(char param[NODE_API_MAX_PARAM], const char *name, int code)
{
    /* an empty member name is still named, as the two quotes it was sent as */
    if (param) snprintf(param, NODE_API_MAX_PARAM, "%s", name[0] ? name : "\"\"");
    return code;
}

/* An optional member: 0 and *v when present and not null, GW_E_NOTFOUND when absent or null. */
static int opt_member(struct json_object *o, const char *key, struct json_object **v)
{
    *v = NULL;
    if (!json_object_object_get_ex(o, key, v) || !*v || json_object_is_type(*v, json_type_null))
        return GW_E_NOTFOUND;
    return 0;
}

static int join_labels(struct json_object *v, struct node_api_join *j, struct gw_error *err)
{
    if (!json_object_is_type(v, json_type_object))
        return gw_error_set(err, GW_E_INVALID, "'labels' must be an object of strings");
    if (json_object_object_length(v) > NODE_API_MAX_LABELS)
        return gw_error_set(err, GW_E_INVALID, "at most %d labels", NODE_API_MAX_LABELS);
    json_object_object_foreach(v, key, val)
    {
        struct strv value = {json_object_get_string(val), (size_t)json_object_get_string_len(val)};
        if (!node_api_label_key_is_valid(strv_from_cstr(key)) ||
            !json_object_is_type(val, json_type_string) || !node_api_label_value_is_valid(value))
            return gw_error_set(err, GW_E_INVALID,
                                "label keys are 1-63 of A-Z a-z 0-9 . _ - /, values strings of "
                                "at most 255 printable bytes");
        struct node_api_label *l = &j->labels[j->n_labels++];
        snprintf(l->key, sizeof l->key, "%s", key);
        copy_strv(l->value, sizeof l->value, value);
    }
    return 0;
}

static int join_discovery(struct json_object *v, struct node_api_join *j, struct gw_error *err)
{
    if (!json_object_is_type(v, json_type_object) ||
        strlen(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)) >
            NODE_API_MAX_DISCOVERY_BYTES)
        return gw_error_set(err, GW_E_INVALID, "'discovery' must be an object of at most 64 KiB");
    j->has_discovery = true;
    return node_api_discovery_parse_json(v, &j->discovery, err);
}

int node_api_join_parse(const char *p, size_t len, struct node_api_join *j,
                        char param[NODE_API_MAX_PARAM], struct gw_error *err)
{
    memset(j, 0, sizeof *j);
    node_api_discovery_init(&j->discovery);
    if (param) param[0] = '\0';
    if (len > NODE_API_MAX_BODY_BYTES)
        return gw_error_set(err, GW_E_PARSE, "body larger than %d bytes", NODE_API_MAX_BODY_BYTES);
    struct json_object *root = json_parse_strict(p ? p : "", len, NODE_API_MAX_DEPTH, err);
    if (!root) return err ? (err->code = GW_E_PARSE) : GW_E_PARSE;
    int rc = 0;
    if (!json_object_is_type(root, json_type_object)) {
        rc = gw_error_set(err, GW_E_INVALID, "the body must be a JSON object");
        goto out;
    }
    static const char *const known[] = {"name",   "url",       "engine",       "labels",
                                        "secret", "discovery", "agent_version"};
    json_object_object_foreach(root, key, val)
    {
        (void)val;
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) {
            rc = set_param(param, key, gw_error_set(err, GW_E_INVALID, "unknown field"));
            goto out;
        }
    }
    struct strv v;
    if (json_get_str(root, "name", &v) || !node_api_name_is_valid(v)) {
        rc = gw_error_set(err, GW_E_INVALID, "'name' must be 1-63 characters of A-Z a-z 0-9 . _ -");
        rc = set_param(param, "name", rc);
        goto out;
    }
    copy_strv(j->name, sizeof j->name, v);
    if (json_get_str(root, "url", &v) || v.len == 0 || v.len > NODE_API_MAX_JOIN_URL ||
        (!strv_starts_with(v, STRV_LIT("http://")) && !strv_starts_with(v, STRV_LIT("https://")))) {
        rc = gw_error_set(err, GW_E_INVALID, "'url' must be a string like http://10.0.0.5:9300");
        rc = set_param(param, "url", rc);
        goto out;
    }
    copy_strv(j->url, sizeof j->url, v);
    if (json_get_str(root, "engine", &v) || kind_parse(v, &j->engine)) {
        rc = gw_error_set(err, GW_E_INVALID,
                          "'engine' must be one of llamacpp, ollama, vllm, openai");
        rc = set_param(param, "engine", rc);
        goto out;
    }
    struct json_object *o;
    if (opt_member(root, "labels", &o) == 0 && (rc = join_labels(o, j, err))) {
        rc = set_param(param, "labels", rc);
        goto out;
    }
    if (opt_member(root, "secret", &o) == 0) {
        if (json_get_str(root, "secret", &v) || !node_api_secret_is_valid(v)) {
            rc = gw_error_set(err, GW_E_INVALID, "'secret' must be 64 lowercase hex characters");
            rc = set_param(param, "secret", rc);
            goto out;
        }
        copy_strv(j->secret, sizeof j->secret, v);
    }
    if (opt_member(root, "discovery", &o) == 0 && (rc = join_discovery(o, j, err))) {
        rc = set_param(param, "discovery", rc);
        goto out;
    }
    if (opt_member(root, "agent_version", &o) == 0) {
        if (json_get_str(root, "agent_version", &v) || v.len > NODE_API_MAX_VERSION) {
            rc = gw_error_set(err, GW_E_INVALID, "'agent_version' must be a short string");
            rc = set_param(param, "agent_version", rc);
            goto out;
        }
        copy_strv(j->agent_version, sizeof j->agent_version, v);
    }
out:
    json_object_put(root);
    return rc;
}

static const char *join_state_name(enum node_api_join_state s)
{
    static const char *const names[] = {"pending", "approved", "draining"};
    return (unsigned)s < 3 ? names[s] : "pending";
}

int node_api_join_answer_emit(struct buf *out, const struct node_api_join_answer *a)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "name", a->name, false);
    if (!rc) rc = append_kv_str(out, "state", join_state_name(a->state), true);
    if (!rc && a->poll_ms) rc = append_kv_int(out, "poll_ms", (int64_t)a->poll_ms, true);
    if (!rc && a->secret[0]) rc = append_kv_str(out, "secret", a->secret, true);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

int node_api_join_answer_parse(const char *p, size_t len, struct node_api_join_answer *a,
                               struct gw_error *err)
{
    memset(a, 0, sizeof *a);
    struct json_object *root = parse_root(p, len, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    int rc = 0;
    struct strv v;
    if (json_get_str(root, "state", &v)) {
        rc = gw_error_set(err, GW_E_INVALID, "state: expected a string");
        goto out;
    }
    if (strv_eq_cstr(v, "pending")) {
        a->state = NODE_API_JOIN_PENDING;
    } else if (strv_eq_cstr(v, "approved")) {
        a->state = NODE_API_JOIN_APPROVED;
    } else if (strv_eq_cstr(v, "draining")) {
        a->state = NODE_API_JOIN_DRAINING;
    } else {
        rc = gw_error_set(err, GW_E_INVALID, "state: unknown '%.*s'", STRV_FMT(v));
        goto out;
    }
    if ((rc = opt_str(root, "name", a->name, sizeof a->name, err))) goto out;
    rc = json_get_str(root, "secret", &v);
    if (rc == 0) {
        if (!node_api_secret_is_valid(v)) {
            rc = gw_error_set(err, GW_E_INVALID, "secret: 64 hex characters");
            goto out;
        }
        copy_strv(a->secret, sizeof a->secret, v);
    } else if (rc != GW_E_NOTFOUND) {
        rc = gw_error_set(err, GW_E_INVALID, "secret: expected a string");
        goto out;
    }
    int64_t poll = 0;
    if ((rc = opt_int(root, "poll_ms", &poll, err))) goto out;
    a->poll_ms = poll > 0 ? (uint64_t)poll : 0;
    rc = 0;
out:
    json_object_put(root);
    return rc;
}

/* --- load and unload --------------------------------------------------------------------- */

int node_api_load_emit(struct buf *out, const char *model, const char *options_json)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "model", model, false);
    if (!rc && options_json) rc = buf_appendf(out, ",\"options\":%s", options_json);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

int node_api_load_parse(const char *p, size_t len, char model[NODE_API_MAX_ID],
                        struct gw_error *err)
{
    model[0] = '\0';
    struct json_object *root = parse_root(p, len, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    struct strv v;
    int rc = 0;
    if (json_get_str(root, "model", &v) || v.len == 0 || v.len >= NODE_API_MAX_ID)
        rc = gw_error_set(err, GW_E_INVALID, "expected a JSON body {\"model\":\"NAME\"}");
    else
        copy_strv(model, NODE_API_MAX_ID, v);
    json_object_put(root);
    return rc;
}

int node_api_load_answer_emit(struct buf *out, const struct node_api_load_answer *a)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "model", a->model, false);
    if (!rc) rc = append_kv_str(out, "status", a->unloaded ? "unloaded" : "loaded", true);
    if (!rc && a->size_mb >= 0) rc = append_kv_int(out, "size_mb", a->size_mb, true);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

int node_api_load_answer_parse(const char *p, size_t len, struct node_api_load_answer *a,
                               struct gw_error *err)
{
    memset(a, 0, sizeof *a);
    a->size_mb = -1;
    struct json_object *root = parse_root(p, len, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    struct strv st;
    int rc = opt_str(root, "model", a->model, sizeof a->model, err);
    if (!rc && json_get_str(root, "status", &st) == 0) a->unloaded = strv_eq_cstr(st, "unloaded");
    if (!rc) rc = opt_int(root, "size_mb", &a->size_mb, err);
    json_object_put(root);
    return rc;
}

/* --- fleet operations -------------------------------------------------------------------- */

int node_api_op_emit(struct buf *out, const struct node_api_op *o)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "op", op_kind_name(o->kind), false);
    if (!rc) rc = buf_append_cstr(out, ",\"target\":{");
    if (!rc) rc = append_kv_str(out, "kind", o->is_model ? "model" : "backend", false);
    if (!rc) rc = append_kv_str(out, "name", o->name, true);
    if (!rc) rc = buf_appendf(out, "},\"params\":%s", o->params_json ? o->params_json : "{}");
    if (!rc && o->timeout_ms) rc = append_kv_int(out, "timeout_ms", (int64_t)o->timeout_ms, true);
    if (!rc && o->op_id) rc = append_kv_int(out, "op_id", o->op_id, true);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

int node_api_op_parse(const char *p, size_t len, struct node_api_op *o, struct gw_error *err)
{
    memset(o, 0, sizeof *o);
    struct json_object *root = parse_root(p, len, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    struct json_object *target = NULL, *params = NULL;
    struct strv opv, kind, name;
    int64_t timeout_ms = 0, op_id = 0;
    int rc = 0;
    if (json_get_str(root, "op", &opv) || op_kind_parse(opv, &o->kind) ||
        json_get_obj(root, "target", &target) || json_get_str(target, "kind", &kind) ||
        json_get_str(target, "name", &name) || name.len == 0 || name.len >= NODE_API_MAX_ID ||
        memchr(name.p, '\0', name.len) ||
        (!strv_eq_cstr(kind, "model") && !strv_eq_cstr(kind, "backend"))) {
        rc = gw_error_set(err, GW_E_INVALID,
                          "expected {\"op\",\"target\":{\"kind\":\"model|backend\",\"name\"},"
                          "\"params\",\"timeout_ms\"}");
        goto out;
    }
    o->is_model = strv_eq_cstr(kind, "model");
    copy_strv(o->name, sizeof o->name, name);
    if (json_get_int(root, "timeout_ms", &timeout_ms) == 0 && timeout_ms > 0)
        o->timeout_ms = (uint64_t)timeout_ms;
    if (json_get_int(root, "op_id", &op_id) == 0) o->op_id = op_id;
    if (json_get_obj(root, "params", &params) == 0)
        o->params_json = xstrdup(json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN));
out:
    json_object_put(root);
    return rc;
}

int node_api_op_answer_emit(struct buf *out, const struct node_api_op_answer *a)
{
    int rc = buf_append_cstr(out, "{");
    if (!rc) rc = append_kv_str(out, "class", op_class_name(a->cls), false);
    if (!rc) rc = append_kv_str(out, "message", a->message, true);
    if (!rc) rc = buf_appendf(out, ",\"listed\":%s}", a->listed ? "true" : "false");
    return rc;
}

int node_api_op_answer_parse(const char *p, size_t len, struct node_api_op_answer *a,
                             struct gw_error *err)
{
    memset(a, 0, sizeof *a);
    a->cls = OP_CLASS_ERROR;
    struct json_object *root = parse_root(p, len, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    struct strv cs, ms;
    int rc = 0;
    if (json_get_str(root, "class", &cs) || op_class_parse(cs, &a->cls)) {
        a->cls = OP_CLASS_ERROR;
        rc = gw_error_set(err, GW_E_INVALID, "class: expected an outcome class");
    } else {
        if (json_get_str(root, "message", &ms) == 0) copy_strv(a->message, sizeof a->message, ms);
        if (json_get_bool(root, "listed", &a->listed)) a->listed = false;
    }
    json_object_put(root);
    return rc;
}

/* --- the engines' own model lists (read by the agent and by the gateway's probe of a node
 * without an agent: one parser for both) ----------------------------------------------- */

int node_api_oai_models_parse(const char *p, size_t len, struct node_api_models *out,
                              struct gw_error *err)
{
    struct json_object *root = json_parse_strict(p ? p : "", len, NODE_API_ENGINE_MAX_DEPTH, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    struct json_object *data = NULL;
    int rc = 0;
    if (!json_object_is_type(root, json_type_object) || json_get_arr(root, "data", &data)) {
        rc = gw_error_set(err, GW_E_INVALID, "/v1/models: no \"data\" array");
        goto out;
    }
    size_t n = json_object_array_length(data);
    for (size_t i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(data, i);
        struct strv id;
        if (!json_object_is_type(m, json_type_object) || json_get_str(m, "id", &id) || !id.len)
            continue;
        if (node_api_models_find(out, id)) continue;
        struct node_api_model *nm = node_api_models_add(out, id);
        if (!nm) break;
        nm->status = NODE_API_MODEL_LOADED;
        nm->caps = node_api_caps_guess(id, STRV_NULL);
        /* the context a request may fill: vLLM's max_model_len, llama-server's per-slot n_ctx */
        int64_t ctx = 0;
        struct json_object *meta = NULL;
        if (json_get_int(m, "max_model_len", &ctx) &&
            (json_get_obj(m, "meta", &meta) || json_get_int(meta, "n_ctx", &ctx)))
            ctx = 0;
        nm->ctx_tokens = ctx > 0 ? ctx : 0;
    }
out:
    json_object_put(root);
    return rc;
}

int node_api_ollama_list_parse(const char *p, size_t len, bool ps, struct node_api_models *out,
                               struct gw_error *err)
{
    struct json_object *root = json_parse_strict(p ? p : "", len, NODE_API_ENGINE_MAX_DEPTH, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    struct json_object *models = NULL;
    int rc = 0;
    if (!json_object_is_type(root, json_type_object) || json_get_arr(root, "models", &models)) {
        rc = gw_error_set(err, GW_E_INVALID, "%s: no \"models\" array",
                          ps ? "/api/ps" : "/api/tags");
        goto out;
    }
    size_t n = json_object_array_length(models);
    for (size_t i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(models, i);
        struct strv name;
        if (!json_object_is_type(m, json_type_object)) continue;
        if ((json_get_str(m, "name", &name) || !name.len) &&
            (json_get_str(m, "model", &name) || !name.len))
            continue;
        struct strv family = STRV_NULL;
        struct json_object *details = NULL;
        if (json_get_obj(m, "details", &details) == 0) {
            if (json_get_str(details, "family", &family)) family = STRV_NULL;
            struct json_object *fams = NULL;
            if (json_get_arr(details, "families", &fams) == 0) {
                for (size_t f = 0; f < json_object_array_length(fams); f++) {
                    struct json_object *fv = json_object_array_get_idx(fams, f);
                    if (!json_object_is_type(fv, json_type_string)) continue;
                    struct strv s = strv_make(json_object_get_string(fv),
                                              (size_t)json_object_get_string_len(fv));
                    if (node_api_caps_guess(STRV_NULL, s) == CAP_EMBEDDINGS) family = s;
                }
            }
        }
        struct node_api_model *nm = node_api_models_find(out, name);
        if (!nm) {
            nm = node_api_models_add(out, name);
            if (!nm) break;
            nm->status = ps ? NODE_API_MODEL_LOADED : NODE_API_MODEL_ON_DISK;
        } else if (ps) {
            nm->status = NODE_API_MODEL_LOADED;
        }
        nm->caps = node_api_caps_guess(name, family);
        int64_t size = 0;
        if (nm->size_mb < 0 && json_get_int(m, "size", &size) == 0 && size >= 0)
            nm->size_mb = size / (1024 * 1024);
        /* a digest the inventory would refuse (too long to keep whole, control bytes) is not
         * kept: the model stays listed, its digest unknown */
        struct strv digest;
        if (!nm->digest[0] && json_get_str(m, "digest", &digest) == 0 &&
            digest.len < sizeof nm->digest && node_api_digest_is_valid(digest))
            copy_strv(nm->digest, sizeof nm->digest, digest);
        int64_t ctx = 0; /* /api/ps: the context the model is loaded with */
        if (json_get_int(m, "context_length", &ctx) == 0 && ctx > 0) nm->ctx_tokens = ctx;
    }
out:
    json_object_put(root);
    return rc;
}

/* --- inventory --------------------------------------------------------------------------- */

static bool holds_control_byte(struct strv v)
{
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.p[i] < 0x20) return true;
    return false;
}

/* A value of an ITEM: fits cap (with its NUL) and holds no control byte. */
static int inv_value_check(struct strv v, size_t cap, const char *list, size_t idx,
                           const char *field, struct gw_error *err)
{
    if (v.len >= cap)
        return gw_error_set(err, GW_E_INVALID, "%s[%zu].%s: longer than %zu bytes", list, idx,
                            field, cap - 1);
    if (holds_control_byte(v))
        return gw_error_set(err, GW_E_INVALID, "%s[%zu].%s: holds a control byte", list, idx,
                            field);
    return 0;
}

bool node_api_digest_is_valid(struct strv s)
{
    return s.len > 0 && s.len < NODE_API_MAX_DIGEST && !holds_control_byte(s);
}

/* node_api_inv_items_add with the list's name for err (the parser names the JSON path). */
static int inv_add(struct node_api_inv_items *l, const char *list, struct strv name,
                   struct strv version, struct strv digest, struct strv latest,
                   struct gw_error *err)
{
    size_t idx = l->n;
    if (l->n >= NODE_API_MAX_INV_ITEMS)
        return gw_error_set(err, GW_E_LIMIT, "%s: more than %d items", list,
                            NODE_API_MAX_INV_ITEMS);
    if (!name.len)
        return gw_error_set(err, GW_E_INVALID, "%s[%zu].name: expected a non-empty string", list,
                            idx);
    struct node_api_inv_item *it = NULL;
    int rc = inv_value_check(name, sizeof it->name, list, idx, "name", err);
    if (!rc) rc = inv_value_check(version, sizeof it->version, list, idx, "version", err);
    if (!rc) rc = inv_value_check(digest, sizeof it->digest, list, idx, "digest", err);
    if (!rc)
        rc = inv_value_check(latest, sizeof it->latest_digest, list, idx, "latest_digest", err);
    if (rc) return rc;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    it = &l->v[l->n++];
    memset(it, 0, sizeof *it);
    copy_strv(it->name, sizeof it->name, name);
    copy_strv(it->version, sizeof it->version, version);
    copy_strv(it->digest, sizeof it->digest, digest);
    copy_strv(it->latest_digest, sizeof it->latest_digest, latest);
    return 0;
}

int node_api_inv_items_add(struct node_api_inv_items *l, struct strv name, struct strv version,
                           struct strv digest, struct strv latest_digest, struct gw_error *err)
{
    return inv_add(l, "items", name, version, digest, latest_digest, err);
}

const struct node_api_inv_item *node_api_inv_items_find(const struct node_api_inv_items *l,
                                                        struct strv name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strv_eq_cstr(name, l->v[i].name)) return &l->v[i];
    return NULL;
}

void node_api_inventory_free(struct node_api_inventory *inv)
{
    xfree(inv->models.v);
    xfree(inv->backends.v);
    memset(inv, 0, sizeof *inv);
}

int node_api_inv_items_emit(struct buf *out, const struct node_api_inv_items *l)
{
    int rc = buf_append_cstr(out, "[");
    for (size_t i = 0; i < l->n && !rc; i++) {
        const struct node_api_inv_item *it = &l->v[i];
        if (i) rc = buf_append_cstr(out, ",");
        if (!rc) rc = buf_append_cstr(out, "{");
        if (!rc) rc = append_kv_str(out, "name", it->name, false);
        if (!rc && it->version[0]) rc = append_kv_str(out, "version", it->version, true);
        if (!rc && it->digest[0]) rc = append_kv_str(out, "digest", it->digest, true);
        if (!rc && it->latest_digest[0])
            rc = append_kv_str(out, "latest_digest", it->latest_digest, true);
        if (!rc) rc = buf_append_cstr(out, "}");
    }
    if (!rc) rc = buf_append_cstr(out, "]");
    return rc;
}

int node_api_inventory_emit(struct buf *out, const struct node_api_inventory *inv)
{
    int rc = buf_append_cstr(out, "{\"models\":");
    if (!rc) rc = node_api_inv_items_emit(out, &inv->models);
    if (!rc) rc = buf_append_cstr(out, ",\"backends\":");
    if (!rc) rc = node_api_inv_items_emit(out, &inv->backends);
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}

/* An optional string value of an ITEM: absent or null is STRV_NULL. */
static int inv_opt_str(struct json_object *o, const char *key, struct strv *out, const char *list,
                       size_t idx, struct gw_error *err)
{
    *out = STRV_NULL;
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !v) return 0;
    if (json_get_str(o, key, out))
        return gw_error_set(err, GW_E_INVALID, "%s[%zu].%s: expected a string", list, idx, key);
    return 0;
}

static int inv_list_parse(struct json_object *root, const char *list, struct node_api_inv_items *l,
                          struct gw_error *err)
{
    struct json_object *arr = NULL;
    int rc = json_get_arr(root, list, &arr);
    if (rc == GW_E_NOTFOUND) return gw_error_set(err, GW_E_INVALID, "%s: missing", list);
    if (rc) return gw_error_set(err, GW_E_INVALID, "%s: expected an array", list);
    size_t n = json_object_array_length(arr);
    if (n > NODE_API_MAX_INV_ITEMS)
        return gw_error_set(err, GW_E_LIMIT, "%s: more than %d items", list,
                            NODE_API_MAX_INV_ITEMS);
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(o, json_type_object))
            return gw_error_set(err, GW_E_INVALID, "%s[%zu]: expected an object", list, i);
        struct strv name, version, digest, latest;
        if (json_get_str(o, "name", &name))
            return gw_error_set(err, GW_E_INVALID, "%s[%zu].name: expected a non-empty string",
                                list, i);
        if ((rc = inv_opt_str(o, "version", &version, list, i, err)) ||
            (rc = inv_opt_str(o, "digest", &digest, list, i, err)) ||
            (rc = inv_opt_str(o, "latest_digest", &latest, list, i, err)) ||
            (rc = inv_add(l, list, name, version, digest, latest, err)))
            return rc;
    }
    return 0;
}

int node_api_inventory_parse(const char *p, size_t len, struct node_api_inventory *inv,
                             struct gw_error *err)
{
    memset(inv, 0, sizeof *inv);
    struct json_object *root = parse_root_capped(p, len, NODE_API_MAX_INVENTORY_BYTES, err);
    if (!root) return err ? err->code : GW_E_PARSE;
    int rc = inv_list_parse(root, "models", &inv->models, err);
    if (!rc) rc = inv_list_parse(root, "backends", &inv->backends, err);
    json_object_put(root);
    return rc;
}
