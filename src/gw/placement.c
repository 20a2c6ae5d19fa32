/* placement — feasibility, VRAM accounting, eviction choice and cold-load choice (DESIGN §6).
 * Pure over registry and catalogue; table-driven tests in tests/unit/test_placement.c.
 * Invariant: a load is chosen only for a node that can carry it out now (an agent, an engine
 * that loads on request, the files on disk, no backoff for the pair), so neither the
 * reconciler nor a request ever sends a load that cannot succeed. */
#include "gw/placement.h"

#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "gw/ops_policy.h"

enum { PLACE_MAX_BACKOFFS = 64 };

/* the ops module's answer to "is an install of this model on that node queued?" */
static place_install_queued_fn *install_queued;
static void *install_ctx;

void placement_set_install_probe(place_install_queued_fn *fn, void *ctx)
{
    install_queued = fn;
    install_ctx = ctx;
}

unsigned placement_infeasible(const struct cat_model *m, const struct node *n)
{
    unsigned bits = 0;
    if (n->admin == ADMIN_REMOVED || n->admin == ADMIN_PENDING) bits |= PLACE_REMOVED;
    if (m->min_devices && (!n->facts_known || n->devices < m->min_devices))
        bits |= PLACE_NO_DEVICES;
    if (m->min_vram_mb && (!n->facts_known || n->vram_total_mb < m->min_vram_mb))
        bits |= PLACE_NO_VRAM;
    if (!cat_selector_matches(m, n)) bits |= PLACE_SELECTOR;
    if (m->engine >= 0 && (int)n->kind != m->engine) bits |= PLACE_ENGINE;
    return bits;
}

const char *placement_reason(unsigned bits)
{
    if (bits & PLACE_REMOVED) return "the node is removed or pending";
    if (bits & PLACE_SELECTOR) return "the node's labels do not match the selector";
    if (bits & PLACE_ENGINE) return "the node runs another engine";
    if (bits & PLACE_NO_DEVICES) return "the node has too few devices";
    if (bits & PLACE_NO_VRAM) return "the node has too little VRAM";
    return "feasible";
}

uint64_t placement_need_mb(const struct catalogue *c, const struct node *n, const char *model)
{
    const struct cat_model *m = catalogue_find(c, strv_from_cstr(model));
    if (m && m->min_vram_mb) return m->min_vram_mb;
    const struct node_model *nm = node_model_find(n, strv_from_cstr(model));
    return nm ? nm->size_mb : 0;
}

uint64_t placement_used_mb(const struct catalogue *c, const struct node *n)
{
    uint64_t used = 0;
    for (size_t i = 0; i < n->n_models; i++) used += placement_need_mb(c, n, n->models[i].id);
    return used;
}

uint64_t placement_free_mb(const struct catalogue *c, const struct node *n)
{
    uint64_t used = placement_used_mb(c, n);
    return n->vram_total_mb > used ? n->vram_total_mb - used : 0;
}

unsigned placement_replicas(const struct registry *reg, const char *model, uint64_t now_ms)
{
    unsigned k = 0;
    for (size_t i = 0; i < reg->n; i++) {
        const struct node *n = reg->nodes[i];
        if (node_is_routable(reg, n, now_ms) && node_model_find(n, strv_from_cstr(model))) k++;
    }
    return k;
}

bool placement_evict_plan(const struct catalogue *c, const struct registry *reg,
                          const struct node *n, uint64_t need_mb, uint64_t now_ms, const char **out,
                          size_t cap, size_t *n_out, bool *busy)
{
    *n_out = 0;
    *busy = false;
    uint64_t free_mb = placement_free_mb(c, n);
    if (free_mb >= need_mb) return true;
    /* candidates, least recently used first (selection by repeated minimum: lists are short) */
    bool taken[256] = {false};
    size_t nm = n->n_models < 256 ? n->n_models : 256;
    while (free_mb < need_mb && *n_out < cap) {
        const struct node_model *best = NULL;
        size_t best_i = 0;
        for (size_t i = 0; i < nm; i++) {
            const struct node_model *mm = &n->models[i];
            if (taken[i]) continue;
            const struct cat_model *cm = catalogue_find(c, strv_from_cstr(mm->id));
            if (mm->inflight > 0) {
                *busy = true;
                continue;
            }
            if (cm && cm->pinned) continue;
            if (cm && cm->replicas_min &&
                placement_replicas(reg, mm->id, now_ms) <= cm->replicas_min)
                continue;
            if (!best || mm->last_used_ms < best->last_used_ms) best = mm, best_i = i;
        }
        if (!best) break;
        taken[best_i] = true;
        out[(*n_out)++] = best->id;
        free_mb += placement_need_mb(c, n, best->id);
    }
    return free_mb >= need_mb;
}

/* ---- can the node load it ---------------------------------------------------------------- */

bool placement_engine_loads(enum node_kind kind)
{
    /* agent_engine_load(): every other engine answers 501 "cannot load models on request" */
    return kind == NODE_KIND_OLLAMA;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t id_hash(const char *s, uint64_t salt)
{
    uint64_t h = 0xcbf29ce484222325ull ^ salt;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return mix64(h);
}

uint64_t placement_inventory_print(const struct node *n)
{
    /* a sum of mixed hashes: the order the engine lists models in does not matter */
    uint64_t p = n->inventory_known ? 1 : 0;
    for (size_t i = 0; i < n->n_models; i++) p += id_hash(n->models[i].id, 0x6c);
    for (size_t i = 0; i < n->n_disk; i++) p += id_hash(n->disk[i], 0x64);
    return p;
}

static struct cat_load_backoff *backoff_find(const struct cat_model *m, const char *node)
{
    for (size_t i = 0; i < m->n_load_backoff; i++)
        if (strcmp(m->load_backoff[i].node, node) == 0) return &m->load_backoff[i];
    return NULL;
}

uint64_t placement_load_failed(struct cat_model *m, const struct node *n, uint64_t now_ms,
                               const char *why)
{
    uint64_t print = placement_inventory_print(n);
    struct cat_load_backoff *b = backoff_find(m, n->name);
    if (!b && m->n_load_backoff >= PLACE_MAX_BACKOFFS) {
        /* full: the record that ends first makes room */
        b = &m->load_backoff[0];
        for (size_t i = 1; i < m->n_load_backoff; i++)
            if (m->load_backoff[i].until_ms < b->until_ms) b = &m->load_backoff[i];
        xfree(b->node);
        memset(b, 0, sizeof *b);
        b->node = xstrdup(n->name);
    } else if (!b) {
        m->load_backoff =
            xrealloc(m->load_backoff, (m->n_load_backoff + 1) * sizeof *m->load_backoff);
        b = &m->load_backoff[m->n_load_backoff++];
        memset(b, 0, sizeof *b);
        b->node = xstrdup(n->name);
    }
    if (b->print != print) b->failures = 0; /* the node changed since: a fresh start */
    b->failures++;
    uint64_t d = ops_backoff_ms(b->failures, 1.0);
    b->until_ms = now_ms + d;
    b->print = print;
    snprintf(b->why, sizeof b->why, "%s", why ? why : "");
    return d;
}

static void backoff_drop(struct cat_model *m, size_t i)
{
    xfree(m->load_backoff[i].node);
    m->load_backoff[i] = m->load_backoff[--m->n_load_backoff];
}

void placement_load_ok(struct cat_model *m, const struct node *n)
{
    for (size_t i = 0; i < m->n_load_backoff; i++) {
        if (strcmp(m->load_backoff[i].node, n->name) == 0) {
            backoff_drop(m, i);
            return;
        }
    }
}

const struct cat_load_backoff *placement_backoff(const struct cat_model *m, const struct node *n,
                                                 uint64_t now_ms)
{
    const struct cat_load_backoff *b = backoff_find(m, n->name);
    if (!b || b->until_ms <= now_ms || b->print != placement_inventory_print(n)) return NULL;
    return b;
}

size_t placement_forget_node(struct catalogue *c, const char *node)
{
    size_t k = 0;
    for (size_t j = 0; j < c->n; j++) {
        struct cat_model *m = c->v[j];
        bool any = false;
        for (size_t i = 0; i < m->n_load_backoff;) {
            if (strcmp(m->load_backoff[i].node, node) == 0) {
                backoff_drop(m, i);
                any = true;
                k++;
                continue;
            }
            i++;
        }
        if (any) m->backoff_until_ms = 0; /* the reconciler looks again at its next pass */
    }
    return k;
}

/* Ollama lists a model pulled without a tag as NAME:latest. The gateway matches names
 * exactly (the router too: a load of NAME would show up as NAME:latest and never count as a
 * replica), so such a node stays "not on disk", but the words say what to rename. */
static bool has_tagged_files(const struct node *n, const char *model)
{
    char tagged[CAT_MAX_ID + 8];
    if (strchr(model, ':') || strlen(model) >= CAT_MAX_ID) return false;
    snprintf(tagged, sizeof tagged, "%s:latest", model);
    return node_has_on_disk(n, strv_from_cstr(tagged)) ||
           node_model_find(n, strv_from_cstr(tagged)) != NULL;
}

void placement_assess(const struct catalogue *c, const struct registry *reg,
                      const struct cat_model *m, const struct node *n, uint64_t now_ms,
                      bool (*skip)(const struct node *n, void *ctx), void *skip_ctx,
                      struct place_verdict *v)
{
    memset(v, 0, sizeof *v);
    struct strv id = strv_from_cstr(m->id);
    bool routable = node_is_routable(reg, n, now_ms);
    v->bits = placement_infeasible(m, n);
    if (v->bits) {
        v->state = PST_INFEASIBLE;
    } else if (node_model_find(n, id)) {
        v->state = routable ? PST_LOADED : PST_DOWN;
    } else if (!n->via_agent) {
        v->state = PST_NO_AGENT;
    } else if (!placement_engine_loads(n->kind)) {
        v->state = PST_ENGINE;
    } else if (!n->inventory_known) {
        v->state = PST_UNKNOWN;
    } else if (!node_has_on_disk(n, id)) {
        v->state = install_queued && install_queued(install_ctx, n->name, m->id) ? PST_INSTALLING
                                                                                 : PST_NOT_ON_DISK;
    } else if (!routable) {
        v->state = PST_DOWN;
    } else if ((v->backoff = placement_backoff(m, n, now_ms)) != NULL) {
        v->state = PST_BACKOFF;
        v->retry_at_ms = v->backoff->until_ms;
    } else if (skip && skip(n, skip_ctx)) {
        v->state = PST_SKIPPED;
    } else {
        v->free_mb = placement_free_mb(c, n);
        v->state = PST_CAN_LOAD;
        if (v->free_mb < m->min_vram_mb) {
            const char *plan[64];
            size_t k;
            bool busy;
            v->needs_evict = true;
            if (!placement_evict_plan(c, reg, n, m->min_vram_mb, now_ms, plan, 64, &k, &busy))
                v->state = PST_FULL;
        }
    }
}

static void infeasible_words(const struct cat_model *m, const struct node *n, unsigned bits,
                             char *out, size_t cap)
{
    if (bits & PLACE_REMOVED)
        snprintf(out, cap, "%s", n->admin == ADMIN_PENDING ? "pending approval" : "removed");
    else if (bits & PLACE_SELECTOR)
        snprintf(out, cap, "labels do not match the selector");
    else if (bits & PLACE_ENGINE)
        snprintf(out, cap, "runs %s, the entry wants %s", node_kind_name(n->kind),
                 node_kind_name((enum node_kind)m->engine));
    else if ((bits & PLACE_NO_DEVICES) && n->facts_known)
        snprintf(out, cap, "needs %u devices, has %u", m->min_devices, n->devices);
    else if ((bits & PLACE_NO_VRAM) && n->facts_known)
        snprintf(out, cap, "needs %llu MB VRAM, has %llu", (unsigned long long)m->min_vram_mb,
                 (unsigned long long)n->vram_total_mb);
    else if (bits & (PLACE_NO_DEVICES | PLACE_NO_VRAM))
        snprintf(out, cap, "its devices and VRAM are not known");
    else
        snprintf(out, cap, "%s", placement_reason(bits));
}

const char *placement_describe(const struct cat_model *m, const struct node *n,
                               const struct place_verdict *v, char *out, size_t cap)
{
    if (!cap) return out;
    out[0] = '\0';
    switch (v->state) {
    case PST_CAN_LOAD:
        snprintf(out, cap, "%s",
                 v->needs_evict ? "can load after evicting idle models" : "can load");
        break;
    case PST_LOADED:
        snprintf(out, cap, "loaded");
        break;
    case PST_INFEASIBLE:
        infeasible_words(m, n, v->bits, out, cap);
        break;
    case PST_NO_AGENT:
        snprintf(out, cap, "static node, no agent to load through");
        break;
    case PST_ENGINE:
        snprintf(out, cap, "engine %s cannot load on request", node_kind_name(n->kind));
        break;
    case PST_NOT_ON_DISK:
        if (has_tagged_files(n, m->id))
            snprintf(out, cap, "not on disk by this name (the node has %s:latest)", m->id);
        else
            snprintf(out, cap, "not on disk (install it first)");
        break;
    case PST_INSTALLING:
        snprintf(out, cap, "install queued, waiting for it");
        break;
    case PST_UNKNOWN:
        snprintf(out, cap, "its models are not known yet");
        break;
    case PST_DOWN:
        snprintf(out, cap, "%s%s",
                 node_model_find(n, strv_from_cstr(m->id)) ? "holds it, but " : "",
                 n->excluded                  ? "excluded"
                 : n->admin == ADMIN_DRAINING ? "draining"
                 : n->live == LIVE_UNHEALTHY  ? "unhealthy"
                                              : "not healthy yet");
        break;
    case PST_BACKOFF:
        snprintf(out, cap, "load failed %u time%s (%s)", v->backoff ? v->backoff->failures : 0,
                 v->backoff && v->backoff->failures == 1 ? "" : "s",
                 v->backoff ? v->backoff->why : "");
        break;
    case PST_SKIPPED:
        snprintf(out, cap, "a load or unload runs there");
        break;
    case PST_FULL:
        snprintf(out, cap, "full of busy or protected models");
        break;
    }
    return out;
}

size_t placement_explain(const struct catalogue *c, const struct registry *reg,
                         const struct cat_model *m, uint64_t now_ms, char *out, size_t cap)
{
    static const char more[] = "...";
    size_t len = 0;
    if (!cap) return 0;
    out[0] = '\0';
    for (size_t i = 0; i < reg->n; i++) {
        const struct node *n = reg->nodes[i];
        struct place_verdict v;
        placement_assess(c, reg, m, n, now_ms, NULL, NULL, &v);
        if (v.state == PST_CAN_LOAD || v.state == PST_LOADED) continue;
        char words[200], item[300];
        placement_describe(m, n, &v, words, sizeof words);
        int k = snprintf(item, sizeof item, "%s%s: %s", len ? "; " : "", n->name, words);
        if (k < 0) break;
        if (len + (size_t)k + sizeof more > cap) {
            /* no room for this one and the ellipsis after it: end here */
            if (len + sizeof more <= cap) {
                memcpy(out + len, more, sizeof more);
                len += sizeof more - 1;
            }
            break;
        }
        memcpy(out + len, item, (size_t)k + 1);
        len += (size_t)k;
    }
    return len;
}

/* ---- the choice ---------------------------------------------------------------------------- */

void placement_pick(const struct catalogue *c, const struct registry *reg,
                    const struct cat_model *m, uint64_t now_ms,
                    bool (*skip)(const struct node *n, void *ctx), void *skip_ctx,
                    struct place_pick *out)
{
    memset(out, 0, sizeof *out);
    bool could = false, full = false, held = false, waiting = false;
    uint64_t best_free = 0;
    bool best_evict = true;
    for (size_t i = 0; i < reg->n; i++) {
        struct node *n = reg->nodes[i];
        struct place_verdict v;
        placement_assess(c, reg, m, n, now_ms, skip, skip_ctx, &v);
        switch (v.state) {
        case PST_INFEASIBLE:
        case PST_NO_AGENT:
        case PST_ENGINE:
        case PST_NOT_ON_DISK:
            continue; /* nothing but the admin changes these */
        case PST_CAN_LOAD:
            /* room now beats evicting; most free VRAM breaks ties */
            if (!out->node || (best_evict && !v.needs_evict) ||
                (best_evict == v.needs_evict && v.free_mb > best_free)) {
                out->node = n;
                best_evict = v.needs_evict;
                best_free = v.free_mb;
            }
            break;
        case PST_FULL:
            full = true;
            break;
        case PST_LOADED:
        case PST_SKIPPED:
            held = true;
            break;
        case PST_INSTALLING:
            waiting = true;
            break;
        case PST_BACKOFF:
            waiting = true;
            if (!out->retry_at_ms || v.retry_at_ms < out->retry_at_ms)
                out->retry_at_ms = v.retry_at_ms;
            break;
        case PST_UNKNOWN:
        case PST_DOWN:
            break;
        }
        could = true;
    }
    if (out->node) {
        out->needs_evict = best_evict;
        out->retry_at_ms = 0;
        return;
    }
    out->why = !could ? PLACE_NONE_INFEASIBLE
               : full ? PLACE_NONE_FULL
               : held ? PLACE_NONE_HELD
                      : PLACE_NONE_UNHEALTHY;
    out->waiting = could && !full && !held && waiting;
}

struct node *placement_pick_cold(const struct catalogue *c, const struct registry *reg,
                                 const struct cat_model *m, uint64_t now_ms,
                                 bool (*skip)(const struct node *n, void *ctx), void *skip_ctx,
                                 bool *needs_evict, enum place_none *why)
{
    struct place_pick pk;
    placement_pick(c, reg, m, now_ms, skip, skip_ctx, &pk);
    *needs_evict = pk.needs_evict;
    if (!pk.node) *why = pk.why;
    return pk.node;
}
