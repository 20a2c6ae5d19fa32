/* catalogue — validation and lookup of catalogue entries. The YAML form is converted to a
 * json-c object with the types the schema expects, then the one JSON validator runs, so the
 * file and the admin API cannot disagree. */
#include "gw/catalogue.h"

#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"
#include "base/yaml.h"
#include "gw/router.h"

void cat_model_free(struct cat_model *m)
{
    if (!m) return;
    xfree(m->id);
    for (size_t i = 0; i < m->n_aliases; i++) xfree(m->aliases[i]);
    xfree(m->aliases);
    for (size_t i = 0; i < m->n_selector; i++) {
        xfree(m->selector[i].key);
        xfree(m->selector[i].value);
    }
    xfree(m->selector);
    xfree(m->load_options_json);
    for (size_t i = 0; i < m->n_load_backoff; i++) xfree(m->load_backoff[i].node);
    xfree(m->load_backoff);
    xfree(m);
}

void catalogue_free(struct catalogue *c)
{
    for (size_t i = 0; i < c->n; i++) cat_model_free(c->v[i]);
    xfree(c->v);
    c->v = NULL;
    c->n = 0;
}

static bool name_ok(const char *s, size_t len)
{
    if (len == 0 || len >= CAT_MAX_ID) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\') return false;
    }
    return true;
}

static int bad(char *field, size_t fcap, const char *f, char *why, size_t wcap, const char *w)
{
    snprintf(field, fcap, "%s", f);
    snprintf(why, wcap, "%s", w);
    return GW_E_INVALID;
}

static int get_uint(struct json_object *o, const char *key, uint64_t max, uint64_t *out,
                    bool *present)
{
    struct json_object *v = NULL;
    *present =
        json_object_object_get_ex(o, key, &v) && v && !json_object_is_type(v, json_type_null);
    if (!*present) return 0;
    if (!json_object_is_type(v, json_type_int)) return GW_E_INVALID;
    int64_t x = json_object_get_int64(v);
    if (x < 0 || (uint64_t)x > max) return GW_E_INVALID;
    *out = (uint64_t)x;
    return 0;
}

static int constraints_from_json(struct json_object *o, struct cat_model *m, char *field,
                                 size_t fcap, char *why, size_t wcap);

int cat_model_from_json(struct json_object *o, struct cat_model **out, char *field, size_t fcap,
                        char *why, size_t wcap)
{
    *out = NULL;
    if (!o || !json_object_is_type(o, json_type_object))
        return bad(field, fcap, "", why, wcap, "a model must be an object");
    static const char *const known[] = {"id",
                                        "aliases",
                                        "engine",
                                        "capabilities",
                                        "min_devices",
                                        "min_vram_mb",
                                        "selector",
                                        "replicas",
                                        "pinned",
                                        "load_options",
                                        "min_compute_capability",
                                        "cuda_version",
                                        "device_name",
                                        "max_per_node",
                                        "routing"};
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !ok; i++)
            ok = !strcmp(key, known[i]);
        if (!ok) return bad(field, fcap, key, why, wcap, "unknown field");
    }
    struct cat_model *m = xcalloc(1, sizeof *m);
    m->engine = -1;
    m->replicas_min = 0;
    m->max_per_node = 1;
    struct strv id;
    if (json_get_str(o, "id", &id) || !name_ok(id.p, id.len)) {
        cat_model_free(m);
        return bad(field, fcap, "id", why, wcap,
                   "'id' must be a non-empty string without spaces or quotes");
    }
    m->id = xstrndup(id.p, id.len);
    struct json_object *v = NULL;
    if (json_object_object_get_ex(o, "aliases", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
        bool ok = json_object_is_type(v, json_type_array) && n <= CAT_MAX_ALIASES;
        m->aliases = xcalloc(n ? n : 1, sizeof *m->aliases);
        for (size_t i = 0; ok && i < n; i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            ok = json_object_is_type(e, json_type_string) &&
                 name_ok(json_object_get_string(e), (size_t)json_object_get_string_len(e)) &&
                 strcmp(json_object_get_string(e), m->id) != 0;
            if (ok) m->aliases[m->n_aliases++] = xstrdup(json_object_get_string(e));
        }
        if (!ok) {
            cat_model_free(m);
            return bad(field, fcap, "aliases", why, wcap,
                       "'aliases' must be a list of at most 16 names other than the id");
        }
    }
    v = NULL;
    if (json_object_object_get_ex(o, "engine", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        enum node_kind k;
        if (!json_object_is_type(v, json_type_string) ||
            (strcmp(json_object_get_string(v), "any") != 0 &&
             node_kind_parse(json_object_get_string(v), &k))) {
            cat_model_free(m);
            return bad(field, fcap, "engine", why, wcap,
                       "'engine' must be llamacpp, ollama, vllm, openai or any");
        }
        if (strcmp(json_object_get_string(v), "any") != 0) m->engine = (int)k;
    }
    v = NULL;
    if (json_object_object_get_ex(o, "capabilities", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        bool ok = json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0;
        for (size_t i = 0; ok && i < json_object_array_length(v); i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            const char *s =
                json_object_is_type(e, json_type_string) ? json_object_get_string(e) : "";
            if (!strcmp(s, "chat"))
                m->caps |= CAP_CHAT;
            else if (!strcmp(s, "completions"))
                m->caps |= CAP_COMPLETIONS;
            else if (!strcmp(s, "embeddings"))
                m->caps |= CAP_EMBEDDINGS;
            else
                ok = false;
        }
        if (!ok) {
            cat_model_free(m);
            return bad(field, fcap, "capabilities", why, wcap,
                       "'capabilities' must be a non-empty list of chat, completions, embeddings");
        }
    }
    uint64_t x = 0;
    bool present = false;
    if (get_uint(o, "min_devices", 64, &x, &present)) {
        cat_model_free(m);
        return bad(field, fcap, "min_devices", why, wcap, "'min_devices' must be 0..64");
    }
    if (present) m->min_devices = (unsigned)x;
    if (get_uint(o, "min_vram_mb", 100ull << 20, &x, &present)) {
        cat_model_free(m);
        return bad(field, fcap, "min_vram_mb", why, wcap,
                   "'min_vram_mb' must be a whole number of MiB");
    }
    if (present) m->min_vram_mb = x;
    v = NULL;
    if (json_object_object_get_ex(o, "selector", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        bool ok = json_object_is_type(v, json_type_object) &&
                  json_object_object_length(v) <= CAT_MAX_SELECTOR;
        m->selector = xcalloc(CAT_MAX_SELECTOR, sizeof *m->selector);
        if (ok) {
            json_object_object_foreach(v, sk, sv)
            {
                if (!json_object_is_type(sv, json_type_string)) {
                    ok = false;
                    break;
                }
                m->selector[m->n_selector].key = xstrdup(sk);
                m->selector[m->n_selector].value = xstrdup(json_object_get_string(sv));
                m->n_selector++;
            }
        }
        if (!ok) {
            cat_model_free(m);
            return bad(field, fcap, "selector", why, wcap,
                       "'selector' must be a mapping of at most 16 label values");
        }
    }
    v = NULL;
    if (json_object_object_get_ex(o, "replicas", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_object)) {
            cat_model_free(m);
            return bad(field, fcap, "replicas", why, wcap, "'replicas' must be {min, max}");
        }
        json_object_object_foreach(v, rk, rv)
        {
            (void)rv;
            if (strcmp(rk, "min") && strcmp(rk, "max")) {
                char f[64];
                snprintf(f, sizeof f, "replicas.%s", rk);
                cat_model_free(m);
                return bad(field, fcap, f, why, wcap, "unknown field");
            }
        }
        if (get_uint(v, "min", 1000, &x, &present)) {
            cat_model_free(m);
            return bad(field, fcap, "replicas.min", why, wcap, "'replicas.min' must be 0..1000");
        }
        if (present) m->replicas_min = (unsigned)x;
        if (get_uint(v, "max", 1000, &x, &present)) {
            cat_model_free(m);
            return bad(field, fcap, "replicas.max", why, wcap, "'replicas.max' must be 0..1000");
        }
        if (present) m->replicas_max = (unsigned)x;
        if (m->replicas_max && m->replicas_max < m->replicas_min) {
            cat_model_free(m);
            return bad(field, fcap, "replicas.max", why, wcap,
                       "'replicas.max' must be at least 'replicas.min' (or 0: no limit)");
        }
    }
    v = NULL;
    if (json_object_object_get_ex(o, "pinned", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            cat_model_free(m);
            return bad(field, fcap, "pinned", why, wcap, "'pinned' must be true or false");
        }
        m->pinned = json_object_get_boolean(v);
    }
    v = NULL;
    if (json_object_object_get_ex(o, "routing", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        enum route_policy rpol;
        if (!json_object_is_type(v, json_type_string) ||
            route_policy_parse(json_object_get_string(v), &rpol)) {
            cat_model_free(m);
            return bad(field, fcap, "routing", why, wcap,
                       "'routing' must be least_loaded, cache_aware, session or round_robin");
        }
        m->routing = (int)rpol;
    }
    v = NULL;
    if (json_object_object_get_ex(o, "load_options", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_object)) {
            cat_model_free(m);
            return bad(field, fcap, "load_options", why, wcap, "'load_options' must be a mapping");
        }
        m->load_options_json = xstrdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    }
    if (constraints_from_json(o, m, field, fcap, why, wcap)) {
        cat_model_free(m);
        return GW_E_INVALID;
    }
    *out = m;
    return 0;
}

/* A version: "12.4", "8.0", or a whole number (YAML's unquoted 12). */
static bool version_from_json(struct json_object *v, char *out, size_t cap)
{
    char tmp[64];
    if (json_object_is_type(v, json_type_int))
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_object_get_int64(v));
    else if (json_object_is_type(v, json_type_string) &&
             (size_t)json_object_get_string_len(v) < sizeof tmp)
        snprintf(tmp, sizeof tmp, "%s", json_object_get_string(v));
    else
        return false;
    if (!tmp[0] || strlen(tmp) >= cap) return false;
    bool digit = true; /* digits and dots, starting with a digit */
    for (const char *p = tmp; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p == '.' && p != tmp))) digit = false;
    if (!digit) return false;
    snprintf(out, cap, "%s", tmp);
    return true;
}

static bool present_json(struct json_object *o, const char *key, struct json_object **v)
{
    *v = NULL;
    return json_object_object_get_ex(o, key, v) && *v && !json_object_is_type(*v, json_type_null);
}

/* min_compute_capability, cuda_version {min, max}, device_name, max_per_node. */
static int constraints_from_json(struct json_object *o, struct cat_model *m, char *field,
                                 size_t fcap, char *why, size_t wcap)
{
    struct json_object *v;
    if (present_json(o, "min_compute_capability", &v) &&
        !version_from_json(v, m->min_compute_capability, sizeof m->min_compute_capability))
        return bad(field, fcap, "min_compute_capability", why, wcap,
                   "'min_compute_capability' must be a version such as \"8.0\"");
    if (present_json(o, "cuda_version", &v)) {
        if (!json_object_is_type(v, json_type_object))
            return bad(field, fcap, "cuda_version", why, wcap,
                       "'cuda_version' must be {min, max} (either may be left out)");
        json_object_object_foreach(v, ck, cv)
        {
            bool is_min = !strcmp(ck, "min");
            char f[64];
            snprintf(f, sizeof f, "cuda_version.%s", ck);
            if (!is_min && strcmp(ck, "max"))
                return bad(field, fcap, f, why, wcap, "unknown field");
            if (json_object_is_type(cv, json_type_null)) continue;
            if (!version_from_json(cv, is_min ? m->cuda_min : m->cuda_max, sizeof m->cuda_min))
                return bad(field, fcap, f, why, wcap, "must be a version such as \"12.1\"");
        }
        if (m->cuda_min[0] && m->cuda_max[0] &&
            !node_api_version_within(m->cuda_min, NULL, m->cuda_max))
            return bad(field, fcap, "cuda_version.max", why, wcap,
                       "'cuda_version.max' must be at least 'cuda_version.min'");
    }
    if (present_json(o, "device_name", &v)) {
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
            (size_t)json_object_get_string_len(v) >= sizeof m->device_name)
            return bad(field, fcap, "device_name", why, wcap,
                       "'device_name' must be a glob of 1..127 bytes (\"*A100*\")");
        snprintf(m->device_name, sizeof m->device_name, "%s", json_object_get_string(v));
    }
    uint64_t x = 0;
    bool present = false;
    if (get_uint(o, "max_per_node", 64, &x, &present) || (present && x == 0))
        return bad(field, fcap, "max_per_node", why, wcap, "'max_per_node' must be 1..64");
    if (present) m->max_per_node = (unsigned)x;
    return 0;
}

/* YAML → JSON with the schema's types: numbers and booleans where the schema wants them. */
static struct json_object *yaml_to_json(const struct ynode *n, const char *key)
{
    if (n->type == YNODE_SCALAR) {
        static const char *const ints[] = {"min_devices", "min_vram_mb", "min", "max",
                                           "max_per_node"};
        for (size_t i = 0; key && i < sizeof ints / sizeof ints[0]; i++) {
            uint64_t v;
            if (!strcmp(key, ints[i]) && ynode_u64(n, &v) == 0)
                return json_object_new_int64((int64_t)v);
        }
        bool b;
        if (key && !strcmp(key, "pinned") && ynode_bool(n, &b) == 0)
            return json_object_new_boolean(b);
        return json_object_new_string(n->scalar);
    }
    if (n->type == YNODE_SEQ) {
        struct json_object *a = json_object_new_array();
        for (size_t i = 0; i < n->n; i++) json_object_array_add(a, yaml_to_json(n->kids[i], NULL));
        return a;
    }
    struct json_object *o = json_object_new_object();
    for (size_t i = 0; i < n->n; i++)
        json_object_object_add(o, n->keys[i], yaml_to_json(n->kids[i], n->keys[i]));
    return o;
}

int cat_model_from_yaml(const struct ynode *m, struct cat_model **out, char *field, size_t fcap,
                        int *line, char *why, size_t wcap)
{
    *line = m->line;
    if (m->type != YNODE_MAP) {
        *out = NULL;
        return bad(field, fcap, "", why, wcap, "each model must be a mapping");
    }
    struct json_object *o = yaml_to_json(m, NULL);
    int rc = cat_model_from_json(o, out, field, fcap, why, wcap);
    json_object_put(o);
    if (rc) {
        /* the line of the field named, when it is a key of this entry (or of replicas) */
        char top[64];
        snprintf(top, sizeof top, "%s", field);
        char *dot = strchr(top, '.');
        if (dot) *dot = '\0';
        for (size_t i = 0; i < m->n; i++) {
            if (strcmp(m->keys[i], top) != 0) continue;
            *line = m->key_lines[i];
            const struct ynode *kid = m->kids[i];
            if (dot && kid->type == YNODE_MAP)
                for (size_t j = 0; j < kid->n; j++)
                    if (!strcmp(kid->keys[j], dot + 1)) *line = kid->key_lines[j];
        }
    }
    return rc;
}

static int str_list(struct buf *b, char *const *v, size_t n)
{
    int rc = buf_append_cstr(b, "[");
    for (size_t i = 0; i < n && !rc; i++) {
        if (i) rc = buf_append_cstr(b, ",");
        if (!rc) rc = json_append_str(b, v[i], strlen(v[i]));
    }
    return rc ? rc : buf_append_cstr(b, "]");
}

int cat_model_to_json(const struct cat_model *m, struct buf *b)
{
    int rc = buf_append_cstr(b, "{\"id\":");
    if (!rc) rc = json_append_str(b, m->id, strlen(m->id));
    if (!rc) rc = buf_append_cstr(b, ",\"aliases\":");
    if (!rc) rc = str_list(b, m->aliases, m->n_aliases);
    if (!rc)
        rc = buf_appendf(b, ",\"engine\":\"%s\"",
                         m->engine < 0 ? "any" : node_kind_name((enum node_kind)m->engine));
    if (!rc && m->caps) { /* absent: not declared (every capability assumed) */
        const char *sep = "";
        rc = buf_append_cstr(b, ",\"capabilities\":[");
        if (!rc && (m->caps & CAP_CHAT)) rc = buf_appendf(b, "%s\"chat\"", sep), sep = ",";
        if (!rc && (m->caps & CAP_COMPLETIONS))
            rc = buf_appendf(b, "%s\"completions\"", sep), sep = ",";
        if (!rc && (m->caps & CAP_EMBEDDINGS)) rc = buf_appendf(b, "%s\"embeddings\"", sep);
        if (!rc) rc = buf_append_cstr(b, "]");
    }
    if (!rc)
        rc = buf_appendf(b, ",\"min_devices\":%u,\"min_vram_mb\":%llu,\"selector\":{",
                         m->min_devices, (unsigned long long)m->min_vram_mb);
    for (size_t i = 0; i < m->n_selector && !rc; i++) {
        if (i) rc = buf_append_cstr(b, ",");
        if (!rc) rc = json_append_str(b, m->selector[i].key, strlen(m->selector[i].key));
        if (!rc) rc = buf_append_cstr(b, ":");
        if (!rc) rc = json_append_str(b, m->selector[i].value, strlen(m->selector[i].value));
    }
    if (!rc)
        rc = buf_appendf(b,
                         "},\"replicas\":{\"min\":%u,\"max\":%u},\"pinned\":%s,\"load_options\":%s",
                         m->replicas_min, m->replicas_max, m->pinned ? "true" : "false",
                         m->load_options_json ? m->load_options_json : "null");
    if (!rc && m->min_compute_capability[0])
        rc = buf_appendf(b, ",\"min_compute_capability\":\"%s\"", m->min_compute_capability);
    if (!rc && (m->cuda_min[0] || m->cuda_max[0])) {
        rc = buf_append_cstr(b, ",\"cuda_version\":{");
        if (!rc && m->cuda_min[0]) rc = buf_appendf(b, "\"min\":\"%s\"", m->cuda_min);
        if (!rc && m->cuda_max[0])
            rc = buf_appendf(b, "%s\"max\":\"%s\"", m->cuda_min[0] ? "," : "", m->cuda_max);
        if (!rc) rc = buf_append_cstr(b, "}");
    }
    if (!rc && m->device_name[0]) {
        rc = buf_append_cstr(b, ",\"device_name\":");
        if (!rc) rc = json_append_str(b, m->device_name, strlen(m->device_name));
    }
    if (!rc) rc = buf_appendf(b, ",\"max_per_node\":%u", m->max_per_node);
    if (!rc && m->routing)
        rc =
            buf_appendf(b, ",\"routing\":\"%s\"", route_policy_name((enum route_policy)m->routing));
    if (!rc) rc = buf_appendf(b, ",\"source\":\"%s\"}", m->from_config ? "config" : "api");
    return rc;
}

struct cat_model *catalogue_find(const struct catalogue *c, struct strv name)
{
    for (size_t i = 0; i < c->n; i++) {
        struct cat_model *m = c->v[i];
        if (strv_eq_cstr(name, m->id)) return m;
    }
    for (size_t i = 0; i < c->n; i++)
        for (size_t a = 0; a < c->v[i]->n_aliases; a++)
            if (strv_eq_cstr(name, c->v[i]->aliases[a])) return c->v[i];
    return NULL;
}

void catalogue_put(struct catalogue *c, struct cat_model *m)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i]->id, m->id) == 0) {
            /* the new entry starts with no reconciler backoff: an edit (here or through another
             * gateway) may have made feasible what failed before, so it gets a fresh try */
            cat_model_free(c->v[i]);
            c->v[i] = m;
            return;
        }
    }
    c->v = xrealloc(c->v, (c->n + 1) * sizeof *c->v);
    c->v[c->n++] = m;
}

bool catalogue_remove(struct catalogue *c, const char *id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i]->id, id) == 0) {
            cat_model_free(c->v[i]);
            memmove(&c->v[i], &c->v[i + 1], (c->n - i - 1) * sizeof *c->v);
            c->n--;
            return true;
        }
    }
    return false;
}

const char *catalogue_name_clash(const struct catalogue *c, const struct cat_model *m)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct cat_model *o = c->v[i];
        if (!strcmp(o->id, m->id)) continue; /* the entry being replaced */
        struct strv names[CAT_MAX_ALIASES + 1];
        size_t k = 0;
        names[k++] = strv_from_cstr(m->id);
        for (size_t a = 0; a < m->n_aliases; a++) names[k++] = strv_from_cstr(m->aliases[a]);
        for (size_t j = 0; j < k; j++) {
            if (strv_eq_cstr(names[j], o->id)) return o->id;
            for (size_t a = 0; a < o->n_aliases; a++)
                if (strv_eq_cstr(names[j], o->aliases[a])) return o->aliases[a];
        }
    }
    return NULL;
}

bool cat_selector_matches(const struct cat_model *m, const struct node *n)
{
    for (size_t i = 0; i < m->n_selector; i++) {
        bool ok = false;
        for (size_t j = 0; j < n->n_labels && !ok; j++)
            ok = !strcmp(n->labels[j].key, m->selector[i].key) &&
                 !strcmp(n->labels[j].value, m->selector[i].value);
        if (!ok) return false;
    }
    return true;
}
