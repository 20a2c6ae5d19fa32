/* registry — node state for the loop thread. The three axes of DESIGN §3 are separate
 * fields and every rule that moves one of them lives here, so health, proxy and the admin API
 * cannot disagree on what "routable" means. */
#include "gw/registry.h"

#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"

void registry_config_defaults(struct registry_config *cfg)
{
    cfg->rise = 2;
    cfg->fall = 3;
    cfg->fault_threshold = 3;
    /* A node restarted after a crash comes back without an admin; the exponential ejection
     * keeps a flapping node out longer each time (docs/gateway.md). */
    cfg->auto_recover = true;
    cfg->ejection_base_ms = 30000;
    cfg->ejection_max_ms = 300000;
    cfg->max_excluded_percent = 50;
    cfg->stream_alive_ms = 10000;
    cfg->probe_interval_ms = 10000;
    cfg->panic_percent = 50;
    cfg->busy_cool_after = 3;
    cfg->busy_max_cool_ms = 60000;
    cfg->max_conc_limit = 4096;
    cfg->busy_trickle_ms = 1000;
}

void registry_init(struct registry *reg, const struct registry_config *cfg)
{
    memset(reg, 0, sizeof *reg);
    if (cfg) {
        reg->cfg = *cfg;
    } else {
        registry_config_defaults(&reg->cfg);
    }
}

/* Bumped whenever a node's model array is replaced, grown, shrunk or freed: the model index
 * (below) holds pointers into those arrays and rebuilds when this moves. */
uint64_t registry_models_epoch = 1;

static void free_models(struct node *n)
{
    registry_models_epoch++;
    for (size_t i = 0; i < n->n_models; i++) {
        xfree(n->models[i].id);
        xfree(n->models[i].marks);
    }
    xfree(n->models);
    n->models = NULL;
    n->n_models = 0;
}

static void free_disk(struct node *n)
{
    for (size_t i = 0; i < n->n_disk; i++) xfree(n->disk[i]);
    xfree(n->disk);
    n->disk = NULL;
    n->n_disk = 0;
}

static void node_free(struct node *n)
{
    free_models(n);
    free_disk(n);
    for (size_t i = 0; i < n->n_labels; i++) {
        xfree(n->labels[i].key);
        xfree(n->labels[i].value);
    }
    xfree(n->labels);
    xfree(n->name);
    xfree(n->url);
    xfree(n->api_key);
    xfree(n->secret_hash);
    xfree(n->discovery_json);
    xfree(n->agent_version);
    xfree(n);
}

static void index_clear(struct model_index *ix)
{
    for (size_t i = 0; i < ix->cap; i++) xfree(ix->tab[i].slots);
    xfree(ix->tab);
    memset(ix, 0, sizeof *ix);
}

void registry_free(struct registry *reg)
{
    index_clear(&reg->index);
    for (size_t i = 0; i < reg->n; i++) node_free(reg->nodes[i]);
    xfree(reg->nodes);
    reg->nodes = NULL;
    reg->n = 0;
}

const char *node_admin_name(enum node_admin a)
{
    static const char *const names[] = {"pending", "approved", "draining", "removed"};
    return (unsigned)a < 4 ? names[a] : "?";
}

const char *node_live_name(enum node_live l)
{
    static const char *const names[] = {"unknown", "healthy", "unhealthy"};
    return (unsigned)l < 3 ? names[l] : "?";
}

/* "http://host:port" with an optional trailing slash; host is an IPv4 literal, [IPv6] or
 * localhost. */
static int parse_url(const char *url, char *host, size_t host_cap, int *port, bool *tls)
{
    struct strv u = strv_from_cstr(url);
    *tls = strv_starts_with(u, STRV_LIT("https://"));
    if (!*tls && !strv_starts_with(u, STRV_LIT("http://"))) return GW_E_INVALID;
    u = strv_sub(u, *tls ? 8 : 7, u.len);
    if (u.len && u.p[u.len - 1] == '/') u.len--;
    if (strv_index(u, '/') >= 0 || u.len == 0) return GW_E_INVALID;
    struct strv h, p;
    if (u.p[0] == '[') {
        long close = strv_index(u, ']');
        if (close < 0 || (size_t)close + 1 >= u.len || u.p[close + 1] != ':') return GW_E_INVALID;
        h = strv_sub(u, 1, (size_t)close - 1);
        p = strv_sub(u, (size_t)close + 2, u.len);
    } else {
        long colon = strv_index(u, ':');
        if (colon <= 0) return GW_E_INVALID;
        h = strv_sub(u, 0, (size_t)colon);
        p = strv_sub(u, (size_t)colon + 1, u.len);
    }
    uint64_t pv;
    if (h.len == 0 || h.len >= host_cap || strv_to_u64(p, &pv) || pv == 0 || pv > 65535)
        return GW_E_INVALID;
    memcpy(host, h.p, h.len);
    host[h.len] = '\0';
    *port = (int)pv;
    return 0;
}

int registry_add(struct registry *reg, const char *name, const char *url, enum node_kind kind,
                 const char *api_key, struct node **out, struct gw_error *err)
{
    if (!name || !*name) return gw_error_set(err, GW_E_INVALID, "node name is empty");
    if (registry_find(reg, strv_from_cstr(name)))
        return gw_error_set(err, GW_E_INVALID, "duplicate node name '%s'", name);
    struct node *n = xcalloc(1, sizeof *n);
    if (parse_url(url, n->host, sizeof n->host, &n->port, &n->tls)) {
        xfree(n);
        return gw_error_set(err, GW_E_INVALID,
                            "node '%s': url '%s' must look like http://127.0.0.1:8000 or "
                            "https://10.0.0.5:8443",
                            name, url);
    }
    n->name = xstrdup(name);
    n->url = xstrdup(url);
    n->kind = kind;
    n->api_key = api_key && *api_key ? xstrdup(api_key) : NULL;
    n->admin = ADMIN_APPROVED;
    n->live = LIVE_UNKNOWN;
    reg->nodes = xrealloc(reg->nodes, (reg->n + 1) * sizeof *reg->nodes);
    reg->nodes[reg->n++] = n;
    if (out) *out = n;
    return 0;
}

int registry_set_label(struct node *n, const char *key, const char *value)
{
    registry_generation++;
    for (size_t i = 0; i < n->n_labels; i++) {
        if (strcmp(n->labels[i].key, key) == 0) {
            xfree(n->labels[i].value);
            n->labels[i].value = xstrdup(value);
            return 0;
        }
    }
    n->labels = xrealloc(n->labels, (n->n_labels + 1) * sizeof *n->labels);
    n->labels[n->n_labels].key = xstrdup(key);
    n->labels[n->n_labels].value = xstrdup(value);
    n->n_labels++;
    return 0;
}

bool registry_del_label(struct node *n, const char *key)
{
    registry_generation++;
    for (size_t i = 0; i < n->n_labels; i++) {
        if (strcmp(n->labels[i].key, key) == 0) {
            xfree(n->labels[i].key);
            xfree(n->labels[i].value);
            n->labels[i] = n->labels[--n->n_labels];
            return true;
        }
    }
    return false;
}

void registry_clear_labels(struct node *n)
{
    for (size_t i = 0; i < n->n_labels; i++) {
        xfree(n->labels[i].key);
        xfree(n->labels[i].value);
    }
    xfree(n->labels);
    n->labels = NULL;
    n->n_labels = 0;
}

int registry_set_url(struct node *n, const char *url)
{
    char host[sizeof n->host];
    int port;
    bool tls;
    if (parse_url(url, host, sizeof host, &port, &tls)) return GW_E_INVALID;
    memcpy(n->host, host, sizeof host);
    n->port = port;
    n->tls = tls;
    registry_set_str(&n->url, url);
    return 0;
}

void registry_set_str(char **field, const char *value)
{
    if (*field && value && strcmp(*field, value) == 0) return;
    xfree(*field);
    *field = value && *value ? xstrdup(value) : NULL;
}

void registry_tombstone(struct node *n)
{
    n->admin = ADMIN_REMOVED;
    registry_set_str(&n->secret_hash, NULL);
    registry_set_str(&n->api_key, NULL);
    registry_set_str(&n->discovery_json, NULL);
    registry_clear_labels(n);
    free_models(n);
    free_disk(n);
    n->facts_known = false;
    n->inventory_known = false;
    n->live = LIVE_UNKNOWN;
    n->ever_healthy = false;
    n->ok_streak = n->fail_streak = 0;
    n->consecutive_faults = 0;
    n->excluded = false;
    n->ejections = 0;
    n->dirty = true;
}

struct node *registry_find(const struct registry *reg, struct strv name)
{
    for (size_t i = 0; i < reg->n; i++)
        if (strv_eq_cstr(name, reg->nodes[i]->name)) return reg->nodes[i];
    return NULL;
}

bool node_is_alive(const struct registry *reg, const struct node *n, uint64_t now_ms)
{
    if (n->live == LIVE_HEALTHY) return true;
    /* Busy is not dead: a node streaming tokens right now, or one that completed a request
     * within interval × fall, is alive whatever a probe says; but a node never seen healthy
     * stays out until it rises. */
    if (!n->ever_healthy) return false;
    if (n->streams_active > 0 && now_ms - n->last_progress_ms <= reg->cfg.stream_alive_ms)
        return true;
    return n->last_success_ms &&
           now_ms - n->last_success_ms <= reg->cfg.probe_interval_ms * reg->cfg.fall;
}

bool node_is_panic_candidate(const struct node *n)
{
    return n->admin == ADMIN_APPROVED && !n->excluded && n->ever_healthy;
}

bool node_is_routable(const struct registry *reg, const struct node *n, uint64_t now_ms)
{
    return n->admin == ADMIN_APPROVED && !n->excluded && node_is_alive(reg, n, now_ms);
}

bool node_is_cooled(const struct node *n, uint64_t now_ms)
{
    return now_ms < n->cooled_until_ms;
}

bool node_is_saturated(const struct node *n, uint64_t now_ms)
{
    if (n->conc_limit && n->inflight >= n->conc_limit) return true;
    /* cooled: one request at a time, one per trickle interval, to learn when it recovers */
    return now_ms < n->cooled_until_ms && (n->inflight > 0 || now_ms < n->next_trickle_ms);
}

void registry_node_sent(struct registry *reg, struct node *n, uint64_t now_ms)
{
    if (now_ms < n->cooled_until_ms) n->next_trickle_ms = now_ms + reg->cfg.busy_trickle_ms;
}

void registry_marks_contradicted(struct registry *reg, struct node *n, struct node_model *m,
                                 unsigned caps)
{
    (void)reg;
    if (!m || !(m->inventory_miss || (m->caps_absent & caps))) return;
    unsigned cleared = m->caps_absent & caps;
    m->caps_absent &= ~caps;
    for (unsigned i = 0; i < CAP_N; i++)
        if (cleared & (1u << i)) m->marks->cap[i].at_ms = m->marks->cap[i].until_ms = 0;
    m->inventory_miss = false;
    LOGI("mark_cleared", "node=%s model=%s cause=\"the node served it\"", n->name, m->id);
}

void registry_set_admin(struct registry *reg, struct node *n, enum node_admin to, const char *cause)
{
    (void)reg;
    if (n->admin == to) return;
    enum node_admin from = n->admin;
    n->admin = to;
    n->dirty = true;
    registry_generation++;
    LOGI("node_admin", "node=%s from=%s to=%s cause=\"%s\" in_flight=%u", n->name,
         node_admin_name(from), node_admin_name(to), cause, n->inflight);
}

void registry_reset_liveness(struct registry *reg, struct node *n, const char *cause)
{
    (void)reg;
    n->live = LIVE_UNKNOWN;
    n->ever_healthy = false;
    n->ok_streak = n->fail_streak = 0;
    n->last_success_ms = 0;
    n->consecutive_faults = 0;
    n->excluded = false;
    n->ejections = 0;
    n->dirty = true;
    LOGI("node_liveness_reset", "node=%s cause=\"%s\"", n->name, cause);
}

void registry_set_unhealthy(struct registry *reg, struct node *n, const char *cause)
{
    snprintf(n->last_probe_error, sizeof n->last_probe_error, "%s", cause);
    n->ok_streak = 0;
    n->fail_streak = reg->cfg.fall;
    n->last_success_ms = 0;
    if (n->live == LIVE_UNHEALTHY) return;
    n->live = LIVE_UNHEALTHY;
    LOGW("node_unhealthy", "node=%s reason=\"%s\"", n->name, cause);
}

void registry_restore(struct registry *reg, struct node *n, enum node_admin admin, bool excluded,
                      unsigned consecutive_faults, unsigned ejections, uint64_t now_ms)
{
    n->admin = admin;
    n->excluded = excluded;
    n->consecutive_faults = consecutive_faults;
    n->ejections = ejections;
    if (excluded) {
        /* the ejection time starts again from now: the node has been out at least that long */
        uint64_t eject = reg->cfg.ejection_base_ms;
        for (unsigned k = 1; k < ejections && eject < reg->cfg.ejection_max_ms; k++) eject *= 2;
        if (eject > reg->cfg.ejection_max_ms) eject = reg->cfg.ejection_max_ms;
        n->excluded_at_ms = now_ms;
        n->eject_until_ms = now_ms + eject;
    }
}

static uint64_t backoff_ms(const struct registry *reg, unsigned k)
{
    uint64_t t = reg->cfg.ejection_base_ms;
    for (unsigned i = 1; i < k && t < reg->cfg.ejection_max_ms; i++) t *= 2;
    return t > reg->cfg.ejection_max_ms ? reg->cfg.ejection_max_ms : t;
}

static struct model_marks *marks_of(struct node_model *m)
{
    if (!m->marks) m->marks = xcalloc(1, sizeof *m->marks);
    return m->marks;
}

static unsigned cap_index(unsigned cap_bit)
{
    for (unsigned i = 0; i < CAP_N; i++)
        if (cap_bit == 1u << i) return i;
    return CAP_N;
}

void registry_mark_capability(struct registry *reg, struct node *n, struct node_model *m,
                              unsigned cap_bit, uint64_t now_ms, const char *cause)
{
    unsigned i = cap_index(cap_bit);
    if (i >= CAP_N || !m) return;
    struct mark *mk = &marks_of(m)->cap[i];
    if (mk->at_ms && now_ms < mk->until_ms) return; /* already marked: the evidence stands */
    mk->count++;
    mk->at_ms = now_ms;
    mk->until_ms = now_ms + backoff_ms(reg, mk->count);
    snprintf(mk->cause, sizeof mk->cause, "%s", cause ? cause : "");
    m->caps_absent |= cap_bit;
    LOGW("mark_capability", "node=%s model=%s capability=%s count=%u for_ms=%llu cause=\"%s\"",
         n->name, m->id, cap_name(cap_bit), mk->count, (unsigned long long)(mk->until_ms - now_ms),
         mk->cause);
}

void registry_mark_inventory_miss(struct registry *reg, struct node *n, struct node_model *m,
                                  uint64_t now_ms, const char *cause)
{
    (void)reg;
    if (!m) return;
    struct mark *mk = &marks_of(m)->inventory;
    if (m->inventory_miss) return;
    mk->count++;
    mk->at_ms = now_ms;
    mk->until_ms = 0;
    snprintf(mk->cause, sizeof mk->cause, "%s", cause ? cause : "");
    m->inventory_miss = true;
    LOGW("mark_inventory", "node=%s model=%s cause=\"%s\"", n->name, m->id, mk->cause);
}

unsigned model_marks_block(const struct node_model *m, unsigned caps, uint64_t now_ms)
{
    if (m->inventory_miss) return caps ? caps : 1;
    unsigned hit = m->caps_absent & caps;
    if (!hit) return 0;
    unsigned live = 0;
    for (unsigned i = 0; i < CAP_N; i++)
        if ((hit & (1u << i)) && now_ms < m->marks->cap[i].until_ms) live |= 1u << i;
    return live;
}

static void clear_marks(struct node *n)
{
    for (size_t i = 0; i < n->n_models; i++) {
        struct node_model *m = &n->models[i];
        xfree(m->marks);
        m->marks = NULL;
        m->caps_absent = 0;
        m->inventory_miss = false;
    }
}

/* Ollama names "llama3" and "llama3:latest" the same model; the bare name is an alias there. */
static const struct strv latest_tag = STRV_LIT(":latest");

static bool is_latest_of(const struct node_model *m, struct strv bare)
{
    return m->id && m->id_len == bare.len + latest_tag.len &&
           memcmp(m->id, bare.p, bare.len) == 0 &&
           memcmp(m->id + bare.len, latest_tag.p, latest_tag.len) == 0;
}

struct node_model *node_model_find(const struct node *n, struct strv model)
{
    /* the router's inner loop: lengths first, no strlen */
    for (size_t i = 0; i < n->n_models; i++) {
        const struct node_model *m = &n->models[i];
        if (m->id_len == model.len && m->id && memcmp(m->id, model.p, model.len) == 0)
            return &n->models[i];
    }
    if (n->kind == NODE_KIND_OLLAMA)
        for (size_t i = 0; i < n->n_models; i++)
            if (is_latest_of(&n->models[i], model)) return &n->models[i];
    return NULL;
}

/* True when ids (which may repeat) name exactly the node's current models. */
static bool models_same(const struct node *n, const struct strv *ids, size_t n_ids)
{
    if (!n->inventory_known || n_ids != n->n_models) return false;
    for (size_t i = 0; i < n_ids; i++) {
        if (!node_model_find(n, ids[i])) return false;
        for (size_t j = 0; j < i; j++)
            if (strv_eq(ids[i], ids[j])) return false; /* a repeat: some model is not listed */
    }
    return true;
}

void registry_set_models(struct node *n, const struct strv *ids, size_t n_ids)
{
    /* Every probe reports the inventory; an unchanged one keeps the array (and the model
     * index that points into it) as it is. */
    if (models_same(n, ids, n_ids)) {
        /* the probe still lists them: inventory marks were wrong (or the model is back) */
        for (size_t i = 0; i < n->n_models; i++) {
            struct node_model *m = &n->models[i];
            if (!m->inventory_miss) continue;
            m->inventory_miss = false;
            LOGI("mark_cleared", "node=%s model=%s mark=inventory cause=\"listed by probe\"",
                 n->name, m->id);
        }
        return;
    }
    bool same = n->inventory_known;
    for (size_t i = 0; i < n_ids && same; i++) same = node_model_find(n, ids[i]) != NULL;
    size_t old_count = n->n_models;
    struct node_model *models = n_ids ? xcalloc(n_ids, sizeof *models) : NULL;
    size_t count = 0;
    for (size_t i = 0; i < n_ids; i++) {
        bool dup = false;
        for (size_t j = 0; j < count && !dup; j++) dup = strv_eq_cstr(ids[i], models[j].id);
        if (dup) continue;
        struct node_model *old = node_model_find(n, ids[i]);
        if (old) {
            models[count] = *old;
            models[count].inventory_miss = false; /* listed again: the mark is contradicted */
            old->id = NULL;                       /* moved */
            old->id_len = 0;
            old->marks = NULL;
        } else {
            models[count].id = xstrndup(ids[i].p, ids[i].len);
            models[count].id_len = ids[i].len;
        }
        count++;
    }
    same = same && count == old_count;
    free_models(n);
    n->models = models;
    n->n_models = count;
    if (!same) registry_generation++;
    n->inventory_known = true;
    if (!same) n->dirty = true;
}

uint64_t registry_generation;

void registry_set_disk(struct node *n, const struct strv *ids, size_t n_ids)
{
    bool same = n_ids == n->n_disk;
    for (size_t i = 0; i < n_ids && same; i++) same = node_has_on_disk(n, ids[i]);
    if (same) return;
    free_disk(n);
    n->disk = n_ids ? xcalloc(n_ids, sizeof *n->disk) : NULL;
    for (size_t i = 0; i < n_ids; i++) n->disk[n->n_disk++] = xstrndup(ids[i].p, ids[i].len);
    registry_generation++;
}

bool node_has_on_disk(const struct node *n, struct strv model)
{
    for (size_t i = 0; i < n->n_disk; i++)
        if (strv_eq_cstr(model, n->disk[i])) return true;
    return false;
}

void registry_set_model_ctx(struct node *n, struct node_model *m, uint32_t ctx_tokens,
                            const char *source)
{
    if (!m) return;
    if (m->ctx_tokens != ctx_tokens)
        LOGI("model_context", "node=%s model=%s ctx=%u was=%u source=%s", n->name, m->id,
             ctx_tokens, m->ctx_tokens, source ? source : "-");
    m->ctx_tokens = ctx_tokens;
    m->ctx_source = ctx_tokens ? source : NULL;
}

void registry_model_loaded(struct node *n, struct strv id, uint64_t size_mb, uint64_t now_ms)
{
    struct node_model *m = node_model_find(n, id);
    if (!m) {
        n->models = xrealloc(n->models, (n->n_models + 1) * sizeof *n->models);
        m = &n->models[n->n_models++];
        memset(m, 0, sizeof *m);
        m->id = xstrndup(id.p, id.len);
        m->id_len = id.len;
        n->dirty = true;
        registry_models_epoch++;
    }
    if (size_mb) m->size_mb = size_mb;
    m->last_used_ms = now_ms;
}

void registry_model_unloaded(struct node *n, struct strv id)
{
    for (size_t i = 0; i < n->n_models; i++) {
        if (!strv_eq_cstr(id, n->models[i].id)) continue;
        xfree(n->models[i].id);
        xfree(n->models[i].marks);
        n->models[i] = n->models[--n->n_models];
        n->dirty = true;
        registry_models_epoch++;
        registry_generation++;
        return;
    }
}

void registry_set_facts_from_discovery(struct node *n, const char *json)
{
    n->devices = 0;
    n->vram_total_mb = 0;
    n->facts_known = false;
    if (!json) return;
    struct json_object *root = json_parse_strict(json, strlen(json), 16, NULL);
    if (!root) return;
    struct json_object *gpus = NULL;
    if (json_get_arr(root, "gpus", &gpus) == 0) {
        n->facts_known = true;
        for (size_t i = 0; i < json_object_array_length(gpus); i++) {
            int64_t mb = 0;
            n->devices++;
            if (json_get_int(json_object_array_get_idx(gpus, i), "vram_total_mb", &mb) == 0 &&
                mb > 0)
                n->vram_total_mb += (uint64_t)mb;
        }
    }
    json_object_put(root);
}

bool registry_probe_ok(struct registry *reg, struct node *n, uint64_t now_ms)
{
    n->last_probe_ms = now_ms;
    n->last_probe_error[0] = '\0';
    n->fail_streak = 0;
    n->ok_streak++;
    bool changed = false;
    if (n->live != LIVE_HEALTHY && n->ok_streak >= reg->cfg.rise) {
        n->live = LIVE_HEALTHY;
        n->ever_healthy = true;
        changed = true;
        LOGI("node_healthy", "node=%s", n->name);
    }
    if (n->excluded && reg->cfg.auto_recover && now_ms >= n->eject_until_ms) {
        n->excluded = false;
        n->consecutive_faults = 0;
        n->dirty = true;
        changed = true;
        LOGI("node_auto_recovered", "node=%s ejections=%u", n->name, n->ejections);
    }
    return changed;
}

bool registry_probe_failed(struct registry *reg, struct node *n, uint64_t now_ms, const char *why)
{
    n->last_probe_ms = now_ms;
    snprintf(n->last_probe_error, sizeof n->last_probe_error, "%s", why ? why : "failed");
    /* Tokens flowing right now prove the node alive; a probe that lost the race to a busy
     * engine does not count against it. */
    if (n->streams_active > 0 && now_ms - n->last_progress_ms <= reg->cfg.stream_alive_ms)
        return false;
    n->ok_streak = 0;
    n->fail_streak++;
    if (n->live == LIVE_UNKNOWN && !n->ever_healthy) {
        if (n->fail_streak >= reg->cfg.fall) {
            n->live = LIVE_UNHEALTHY;
            return true;
        }
        return false;
    }
    if (n->live == LIVE_HEALTHY && n->fail_streak >= reg->cfg.fall) {
        n->live = LIVE_UNHEALTHY;
        LOGW("node_unhealthy", "node=%s reason=\"%s\"", n->name, n->last_probe_error);
        return true;
    }
    return false;
}

bool registry_probe_is_busy(const struct registry *reg, const struct node *n, uint64_t now_ms)
{
    if (n->inflight == 0) return false;
    return (n->last_progress_ms && now_ms - n->last_progress_ms <= reg->cfg.stream_alive_ms) ||
           (n->last_success_ms && now_ms - n->last_success_ms <= reg->cfg.stream_alive_ms);
}

void registry_probe_busy(struct registry *reg, struct node *n, uint64_t now_ms, const char *why)
{
    (void)reg;
    n->last_probe_ms = now_ms;
    snprintf(n->last_probe_error, sizeof n->last_probe_error, "busy: %s", why ? why : "timeout");
    LOGI("probe_busy", "node=%s in_flight=%u reason=\"%s\"", n->name, n->inflight,
         why ? why : "timeout");
}

void registry_note_alive(struct registry *reg, struct node *n, uint64_t now_ms)
{
    (void)reg;
    n->last_success_ms = now_ms ? now_ms : 1;
}

void registry_record_success(struct registry *reg, struct node *n, uint64_t now_ms)
{
    (void)reg;
    if (n->consecutive_faults) n->dirty = true;
    n->consecutive_faults = 0;
    n->last_success_ms = now_ms ? now_ms : 1;
}

/* Would excluding n push some model past max_excluded_percent of the nodes serving it? */
static bool exclusion_allowed(const struct registry *reg, const struct node *n)
{
    if (n->n_models == 0) {
        /* No inventory: judge against the whole fleet. */
        size_t total = 0, excluded = 0;
        for (size_t i = 0; i < reg->n; i++) {
            if (reg->nodes[i]->admin == ADMIN_REMOVED) continue;
            total++;
            excluded += reg->nodes[i]->excluded;
        }
        return (excluded + 1) * 100 <= total * reg->cfg.max_excluded_percent;
    }
    for (size_t m = 0; m < n->n_models; m++) {
        struct strv id = strv_from_cstr(n->models[m].id);
        size_t total = 0, excluded = 0;
        for (size_t i = 0; i < reg->n; i++) {
            const struct node *o = reg->nodes[i];
            if (o->admin == ADMIN_REMOVED || !node_model_find(o, id)) continue;
            total++;
            excluded += o->excluded;
        }
        if ((excluded + 1) * 100 > total * reg->cfg.max_excluded_percent) return false;
    }
    return true;
}

bool registry_record_fault(struct registry *reg, struct node *n, uint64_t now_ms, const char *cause)
{
    n->consecutive_faults++;
    n->faults_total++;
    n->dirty = true;
    if (n->excluded || n->consecutive_faults < reg->cfg.fault_threshold) return false;
    if (!exclusion_allowed(reg, n)) {
        LOGW("node_exclusion_refused", "node=%s faults=%u reason=max_excluded_percent", n->name,
             n->consecutive_faults);
        return false;
    }
    n->excluded = true;
    n->ejections++;
    n->excluded_at_ms = now_ms;
    uint64_t eject = reg->cfg.ejection_base_ms;
    for (unsigned k = 1; k < n->ejections && eject < reg->cfg.ejection_max_ms; k++) eject *= 2;
    if (eject > reg->cfg.ejection_max_ms) eject = reg->cfg.ejection_max_ms;
    n->eject_until_ms = now_ms + eject;
    LOGW("node_excluded", "node=%s faults=%u ejections=%u eject_ms=%llu cause=\"%s\"", n->name,
         n->consecutive_faults, n->ejections, (unsigned long long)eject, cause ? cause : "");
    return true;
}

void registry_recover(struct registry *reg, struct node *n, const char *cause)
{
    (void)reg;
    n->excluded = false;
    n->consecutive_faults = 0;
    n->ejections = 0;
    n->eject_until_ms = 0;
    n->cooled_until_ms = 0;
    n->conc_limit = 0;
    n->consecutive_busy = 0;
    n->next_trickle_ms = 0;
    clear_marks(n);
    n->dirty = true;
    LOGI("node_recovered", "node=%s cause=\"%s\"", n->name, cause);
}

void registry_node_busy(struct registry *reg, struct node *n, unsigned in_flight,
                        uint64_t retry_after_s, uint64_t now_ms)
{
    n->busy_total++;
    n->consecutive_busy++;
    n->busy_share_pm += (1000 - n->busy_share_pm) / 16;
    /* "busy to everything": at least cool_after answers in a row, and at least as many as it
     * had requests in flight, with no success between (random busy answers under concurrency
     * rarely line up that long) */
    if (n->consecutive_busy >= reg->cfg.busy_cool_after && n->consecutive_busy >= in_flight) {
        /* busy to everything lately: out for what it asks (capped), then one at a time */
        uint64_t ms = (retry_after_s ? retry_after_s : 1) * 1000;
        if (ms > reg->cfg.busy_max_cool_ms) ms = reg->cfg.busy_max_cool_ms;
        if (now_ms + ms > n->cooled_until_ms) n->cooled_until_ms = now_ms + ms;
        n->conc_limit = 1;
        n->limit_credit = 0;
        n->last_decrease_ms = now_ms;
        n->next_trickle_ms = now_ms + reg->cfg.busy_trickle_ms;
        LOGW("node_cooled", "node=%s busy_in_a_row=%u for_ms=%llu", n->name, n->consecutive_busy,
             (unsigned long long)ms);
        return;
    }
    /* A random busy answer among successes is about that request: only when busy answers are
     * half of the recent ones is the node over its capacity, and the limit comes down (bench
     * S6: halving on every busy answer at a 10 % random busy rate kept limits at 1–3 with 64
     * free slots). One decrease per latency: a burst from one moment counts once. */
    if (n->busy_share_pm < 500) return;
    uint64_t hold = n->latency_ewma_ms ? n->latency_ewma_ms : 100;
    if (n->last_decrease_ms && now_ms - n->last_decrease_ms < hold) return;
    unsigned base = n->conc_limit && n->conc_limit < in_flight ? n->conc_limit : in_flight;
    unsigned lim = base / 2;
    if (lim < 1) lim = 1;
    if (n->conc_limit == 0 || lim < n->conc_limit) n->conc_limit = lim;
    n->limit_credit = 0;
    n->last_decrease_ms = now_ms;
    LOGI("node_limit", "node=%s limit=%u cause=busy in_flight=%u", n->name, n->conc_limit,
         in_flight);
}

void registry_node_ok(struct registry *reg, struct node *n, unsigned in_flight, uint64_t dur_ms)
{
    n->consecutive_busy = 0;
    n->busy_share_pm -= n->busy_share_pm / 16;
    if (n->cooled_until_ms) {
        /* never cooled longer than it keeps saying so */
        n->cooled_until_ms = 0;
        LOGI("node_uncooled", "node=%s", n->name);
    }
    n->latency_ewma_ms = n->latency_ewma_ms ? (n->latency_ewma_ms * 7 + dur_ms) / 8 : dur_ms + 1;
    if (!n->conc_limit || in_flight < n->conc_limit) return; /* not limited by it: no growth */
    /* additive increase: +1 per limit's worth of successes at the limit */
    if (++n->limit_credit < n->conc_limit) return;
    n->limit_credit = 0;
    n->conc_limit++;
    if (n->conc_limit > reg->cfg.max_conc_limit) n->conc_limit = 0;
}

uint64_t registry_expected_wait_ms(const struct node *n, uint64_t now_ms)
{
    if (now_ms < n->cooled_until_ms && n->inflight == 0 && n->next_trickle_ms > now_ms)
        return n->next_trickle_ms - now_ms;
    if (now_ms < n->cooled_until_ms && n->inflight == 0) return 1;
    uint64_t lat = n->latency_ewma_ms ? n->latency_ewma_ms : 1000;
    return lat ? lat : 1;
}

size_t registry_count_routable(const struct registry *reg, uint64_t now_ms)
{
    size_t c = 0;
    for (size_t i = 0; i < reg->n; i++) c += node_is_routable(reg, reg->nodes[i], now_ms);
    return c;
}

/* The model index: model id -> the nodes listing it, with a pointer to each node's entry.
 * Open addressing, power-of-two table, FNV-1a; rebuilt from scratch when the models epoch
 * moved (inventories change rarely: a probe that reports the same list changes nothing). */
static uint64_t hash_id(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static struct model_nodes *index_slot(struct model_index *ix, const char *id, size_t len,
                                      uint64_t h)
{
    size_t mask = ix->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        struct model_nodes *e = &ix->tab[i];
        if (!e->id || (e->hash == h && e->id_len == len && memcmp(e->id, id, len) == 0)) return e;
    }
}

static void index_put(struct model_index *ix, struct node *nd, struct node_model *m, size_t len,
                      bool alias)
{
    uint64_t h = hash_id(m->id, len);
    struct model_nodes *e = index_slot(ix, m->id, len, h);
    if (!e->id) {
        e->id = m->id;
        e->id_len = len;
        e->hash = h;
        e->alias = alias;
        ix->n++;
    } else if (!alias) {
        e->alias = false; /* some node lists the bare name itself */
    }
    for (size_t i = 0; i < e->n; i++)
        if (e->slots[i].node == nd) return; /* "x" and "x:latest" both listed: one slot */
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->slots = xrealloc(e->slots, e->cap * sizeof *e->slots);
    }
    e->slots[e->n++] = (struct model_slot){nd, m};
}

static void index_build(struct registry *reg)
{
    struct model_index *ix = &reg->index;
    index_clear(ix);
    size_t total = 0;
    for (size_t i = 0; i < reg->n; i++) total += 2 * reg->nodes[i]->n_models;
    size_t cap = 8;
    while (cap < total * 2) cap *= 2; /* load factor at most 1/2 (distinct ids <= total) */
    ix->tab = xcalloc(cap, sizeof *ix->tab);
    ix->cap = cap;
    for (size_t i = 0; i < reg->n; i++) {
        struct node *nd = reg->nodes[i];
        for (size_t k = 0; k < nd->n_models; k++) {
            struct node_model *m = &nd->models[k];
            if (!m->id) continue;
            index_put(ix, nd, m, m->id_len, false);
            /* Ollama: "x:latest" is also reachable as "x" (an alias entry, not listed) */
            if (nd->kind == NODE_KIND_OLLAMA && m->id_len > latest_tag.len &&
                memcmp(m->id + m->id_len - latest_tag.len, latest_tag.p, latest_tag.len) == 0)
                index_put(ix, nd, m, m->id_len - latest_tag.len, true);
        }
    }
    ix->epoch = registry_models_epoch;
    ix->nodes_seen = reg->n;
}

const struct model_nodes *registry_model_nodes(struct registry *reg, struct strv model)
{
    struct model_index *ix = &reg->index;
    if (!ix->tab || ix->epoch != registry_models_epoch || ix->nodes_seen != reg->n)
        index_build(reg);
    struct model_nodes *e = index_slot(ix, model.p, model.len, hash_id(model.p, model.len));
    return e->id ? e : NULL;
}
