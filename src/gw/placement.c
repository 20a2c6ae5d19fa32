/* placement — feasibility, VRAM accounting, eviction choice and cold-load choice (DESIGN §6).
 * Pure over registry and catalogue; table-driven tests in tests/unit/test_placement.c.
 * Invariant: a load is chosen only for a node that can carry it out now (an agent, an engine
 * that loads on request, the files on disk, no backoff for the pair), so neither the
 * reconciler nor a request ever sends a load that cannot succeed. */
#include "gw/placement.h"

#include <fnmatch.h>
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

/* ---- per-node state: hardware from discovery, layout, uses, cycles --------------------------- */

struct pn_gpu {
    char name[NODE_API_MAX_TEXT];
    uint64_t vram_mb; /* 0: unknown */
    char cc[16];
};
struct pn_model {
    char *id; /* owned */
    int dev;  /* device index; -1: spread over every device */
    unsigned replicas;
    uint64_t uses, seen_used_ms;
};
struct pn {
    char *name; /* owned */
    uint64_t disc_hash;
    bool hw_known; /* a discovery with a gpus list was parsed */
    struct pn_gpu *gpu;
    size_t n_gpu;
    char cuda[32], rocm[32], driver[64];
    struct pn_model *m;
    size_t n_m;
    unsigned cycles;
};
static struct pn **pns;
static size_t n_pns;
static enum place_evict evict_default;
struct evict_class {
    struct node_label sel[8];
    size_t n_sel;
    enum place_evict e;
};
static struct evict_class *evict_classes;
static size_t n_evict_classes;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static void pn_parse_hw(struct pn *p, const char *json)
{
    xfree(p->gpu);
    p->gpu = NULL;
    p->n_gpu = 0;
    p->hw_known = false;
    p->cuda[0] = p->rocm[0] = p->driver[0] = '\0';
    if (!json) return;
    struct node_api_discovery *d = xmalloc(sizeof *d);
    if (node_api_discovery_parse(json, strlen(json), d, NULL) == 0) {
        p->hw_known = true;
        p->gpu = xcalloc(d->n_gpus ? d->n_gpus : 1, sizeof *p->gpu);
        for (size_t i = 0; i < d->n_gpus; i++) {
            snprintf(p->gpu[i].name, sizeof p->gpu[i].name, "%s", d->gpus[i].name);
            p->gpu[i].vram_mb =
                d->gpus[i].vram_total_mb > 0 ? (uint64_t)d->gpus[i].vram_total_mb : 0;
            snprintf(p->gpu[i].cc, sizeof p->gpu[i].cc, "%s", d->gpus[i].compute_capability);
        }
        p->n_gpu = d->n_gpus;
        snprintf(p->cuda, sizeof p->cuda, "%s", node_api_discovery_cuda(d));
        snprintf(p->rocm, sizeof p->rocm, "%s", d->rocm_version);
        snprintf(p->driver, sizeof p->driver, "%s",
                 d->driver_version[0] ? d->driver_version
                 : d->n_gpus          ? d->gpus[0].driver_version
                                      : "");
    }
    xfree(d);
}

/* The node's record, created on first use; its hardware re-read when the discovery changed. */
static struct pn *pn_get(const struct node *n)
{
    struct pn *p = NULL;
    for (size_t i = 0; i < n_pns && !p; i++)
        if (!strcmp(pns[i]->name, n->name)) p = pns[i];
    if (!p) {
        p = xcalloc(1, sizeof *p);
        p->name = xstrdup(n->name);
        p->disc_hash = 1; /* differs from any text's hash below on the first look */
        pns = xrealloc(pns, (n_pns + 1) * sizeof *pns);
        pns[n_pns++] = p;
    }
    uint64_t h = n->discovery_json ? str_hash(n->discovery_json) : 0;
    if (h != p->disc_hash) {
        p->disc_hash = h;
        pn_parse_hw(p, n->discovery_json);
    }
    return p;
}

static struct pn_model *pn_model(struct pn *p, const char *id, bool create)
{
    for (size_t i = 0; i < p->n_m; i++)
        if (!strcmp(p->m[i].id, id)) return &p->m[i];
    if (!create) return NULL;
    p->m = xrealloc(p->m, (p->n_m + 1) * sizeof *p->m);
    struct pn_model *e = &p->m[p->n_m++];
    memset(e, 0, sizeof *e);
    e->id = xstrdup(id);
    e->dev = -1;
    return e;
}

void placement_reset(void)
{
    for (size_t i = 0; i < n_pns; i++) {
        for (size_t j = 0; j < pns[i]->n_m; j++) xfree(pns[i]->m[j].id);
        xfree(pns[i]->m);
        xfree(pns[i]->gpu);
        xfree(pns[i]->name);
        xfree(pns[i]);
    }
    xfree(pns);
    pns = NULL;
    n_pns = 0;
    (void)placement_set_eviction(NULL, NULL, 0);
}

/* Devices with known VRAM that placement can account per device (2 or more), else 0. */
static size_t pn_devices(const struct pn *p)
{
    if (p->n_gpu < 2) return 0;
    for (size_t i = 0; i < p->n_gpu; i++)
        if (!p->gpu[i].vram_mb) return 0;
    return p->n_gpu;
}

static bool gpu_qualifies(const struct cat_model *m, const struct pn_gpu *g)
{
    if (m->device_name[0] && fnmatch(m->device_name, g->name, 0) != 0) return false;
    if (m->min_compute_capability[0] &&
        (!g->cc[0] || node_api_version_cmp(g->cc, m->min_compute_capability) < 0))
        return false;
    return true;
}

static unsigned device_bits(const struct cat_model *m, const struct node *n)
{
    if (!m->device_name[0] && !m->min_compute_capability[0] && !m->cuda_min[0] && !m->cuda_max[0])
        return 0;
    struct pn *p = pn_get(n);
    unsigned bits = 0, want = m->min_devices ? m->min_devices : 1;
    unsigned names = 0, ccs = 0;
    for (size_t i = 0; i < p->n_gpu; i++) {
        const struct pn_gpu *g = &p->gpu[i];
        if (!m->device_name[0] || fnmatch(m->device_name, g->name, 0) == 0) names++;
        if (!m->min_compute_capability[0] ||
            (g->cc[0] && node_api_version_cmp(g->cc, m->min_compute_capability) >= 0))
            ccs++;
    }
    if (m->device_name[0] && names < want) bits |= PLACE_DEVICE_NAME;
    if (m->min_compute_capability[0] && ccs < want) bits |= PLACE_COMPUTE;
    if ((m->cuda_min[0] || m->cuda_max[0]) &&
        (!p->cuda[0] || !node_api_version_within(p->cuda, m->cuda_min, m->cuda_max)))
        bits |= PLACE_CUDA;
    return bits;
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
    return bits | device_bits(m, n);
}

const char *placement_reason(unsigned bits)
{
    if (bits & PLACE_REMOVED) return "the node is removed or pending";
    if (bits & PLACE_SELECTOR) return "the node's labels do not match the selector";
    if (bits & PLACE_ENGINE) return "the node runs another engine";
    if (bits & PLACE_NO_DEVICES) return "the node has too few devices";
    if (bits & PLACE_NO_VRAM) return "the node has too little VRAM";
    if (bits & PLACE_DEVICE_NAME) return "no device of the node matches the device name";
    if (bits & PLACE_COMPUTE) return "the node's devices lack the compute capability";
    if (bits & PLACE_CUDA) return "the node's CUDA version is outside the range";
    return "feasible";
}

uint64_t placement_need_mb(const struct catalogue *c, const struct node *n, const char *model)
{
    const struct cat_model *m = catalogue_find(c, strv_from_cstr(model));
    if (m && m->min_vram_mb) return m->min_vram_mb;
    const struct node_model *nm = node_model_find(n, strv_from_cstr(model));
    return nm ? nm->size_mb : 0;
}

/* The layout follows the registry: records of models no longer loaded keep only their use
 * count; a loaded model placement has not seen (loaded before the gateway started, or by
 * someone else) gets one replica on the device with the most room. */
static void pn_sync(const struct catalogue *c, const struct node *n, struct pn *p);

uint64_t placement_used_mb(const struct catalogue *c, const struct node *n)
{
    struct pn *p = pn_get(n);
    pn_sync(c, n, p);
    uint64_t used = 0;
    for (size_t i = 0; i < n->n_models; i++) {
        const struct pn_model *e = pn_model(p, n->models[i].id, false);
        used += placement_need_mb(c, n, n->models[i].id) * (e && e->replicas ? e->replicas : 1);
    }
    return used;
}

uint64_t placement_free_mb(const struct catalogue *c, const struct node *n)
{
    uint64_t used = placement_used_mb(c, n);
    return n->vram_total_mb > used ? n->vram_total_mb - used : 0;
}

unsigned placement_replicas_on(const struct node *n, const char *model)
{
    if (!node_model_find(n, strv_from_cstr(model))) return 0;
    const struct pn_model *e = pn_model(pn_get(n), model, false);
    return e && e->replicas ? e->replicas : 1;
}

unsigned placement_replicas(const struct registry *reg, const char *model, uint64_t now_ms)
{
    unsigned k = 0;
    for (size_t i = 0; i < reg->n; i++) {
        const struct node *n = reg->nodes[i];
        if (node_is_routable(reg, n, now_ms)) k += placement_replicas_on(n, model);
    }
    return k;
}

/* Free VRAM per device, leaving out the models in skip (ids, a plan being built). */
static size_t dev_free(const struct catalogue *c, const struct node *n, struct pn *p,
                       const char *const *skip, size_t n_skip, uint64_t *free_mb)
{
    size_t nd = pn_devices(p);
    if (!nd) return 0;
    int64_t f[NODE_API_MAX_GPUS];
    for (size_t d = 0; d < nd; d++) f[d] = (int64_t)p->gpu[d].vram_mb;
    for (size_t i = 0; i < n->n_models; i++) {
        const char *id = n->models[i].id;
        bool skipped = false;
        for (size_t j = 0; j < n_skip && !skipped; j++) skipped = !strcmp(skip[j], id);
        if (skipped) continue;
        const struct pn_model *e = pn_model(p, id, false);
        uint64_t mb = placement_need_mb(c, n, id) * (e && e->replicas ? e->replicas : 1);
        if (e && e->dev >= 0 && (size_t)e->dev < nd) {
            f[e->dev] -= (int64_t)mb;
        } else {
            for (size_t d = 0; d < nd; d++) f[d] -= (int64_t)((mb + nd - 1) / nd);
        }
    }
    for (size_t d = 0; d < nd; d++) free_mb[d] = f[d] > 0 ? (uint64_t)f[d] : 0;
    return nd;
}

size_t placement_device_free(const struct catalogue *c, const struct node *n, uint64_t *free_mb,
                             size_t cap, uint64_t *max_mb)
{
    struct pn *p = pn_get(n);
    pn_sync(c, n, p);
    uint64_t f[NODE_API_MAX_GPUS];
    size_t nd = dev_free(c, n, p, NULL, 0, f);
    *max_mb = 0;
    for (size_t d = 0; d < nd; d++) {
        if (d < cap) free_mb[d] = f[d];
        if (f[d] > *max_mb) *max_mb = f[d];
    }
    if (!nd) *max_mb = placement_free_mb(c, n);
    return nd;
}

/* The device a one-device model of need_mb goes on: a qualifying one with the most room (as an
 * engine spreads); -1 when none has room (or devices are not accounted). */
static int pick_dev(const struct cat_model *m, struct pn *p, size_t nd, const uint64_t *f,
                    uint64_t need_mb)
{
    int best = -1;
    for (size_t d = 0; d < nd; d++) {
        if (m && !gpu_qualifies(m, &p->gpu[d])) continue;
        if (f[d] < need_mb) continue;
        if (best < 0 || f[d] > f[best]) best = (int)d;
    }
    return best;
}

/* Does m (or need_mb of anything, m NULL) fit on n once the models in skip are gone? */
static bool fits(const struct catalogue *c, const struct node *n, struct pn *p,
                 const struct cat_model *m, uint64_t need_mb, const char *const *skip,
                 size_t n_skip)
{
    uint64_t f[NODE_API_MAX_GPUS];
    size_t nd = m ? dev_free(c, n, p, skip, n_skip, f) : 0;
    if (!nd) {
        uint64_t used = placement_used_mb(c, n);
        for (size_t j = 0; j < n_skip; j++) {
            const struct pn_model *e = pn_model(p, skip[j], false);
            uint64_t mb = placement_need_mb(c, n, skip[j]) * (e && e->replicas ? e->replicas : 1);
            used = used > mb ? used - mb : 0;
        }
        return n->vram_total_mb >= used + need_mb || need_mb == 0;
    }
    if (m->min_devices >= 2) { /* spread over every device */
        for (size_t d = 0; d < nd; d++)
            if (f[d] < (need_mb + nd - 1) / nd) return false;
        return true;
    }
    return need_mb == 0 || pick_dev(m, p, nd, f, need_mb) >= 0;
}

static void pn_sync(const struct catalogue *c, const struct node *n, struct pn *p)
{
    for (size_t i = 0; i < p->n_m; i++)
        if (p->m[i].replicas && !node_model_find(n, strv_from_cstr(p->m[i].id)))
            p->m[i].replicas = 0, p->m[i].dev = -1;
    for (size_t i = 0; i < n->n_models; i++) {
        struct pn_model *e = pn_model(p, n->models[i].id, true);
        if (e->replicas) continue;
        e->replicas = 1;
        e->dev = -1;
        size_t nd = pn_devices(p);
        const struct cat_model *m = catalogue_find(c, strv_from_cstr(e->id));
        if (!nd || (m && m->min_devices >= 2)) continue;
        uint64_t f[NODE_API_MAX_GPUS];
        const char *self = e->id;
        dev_free(c, n, p, &self, 1, f);
        int d = pick_dev(m, p, nd, f, placement_need_mb(c, n, e->id));
        if (d < 0) { /* over-committed by our accounting: the device with the most room */
            d = 0;
            for (size_t k = 1; k < nd; k++)
                if (f[k] > f[d]) d = (int)k;
        }
        e->dev = d;
    }
}

void placement_loaded(const struct catalogue *c, const struct node *n, const char *model, int dev,
                      bool held_before)
{
    struct pn *p = pn_get(n);
    pn_sync(c, n, p);
    struct pn_model *e = pn_model(p, model, true);
    const struct cat_model *m = catalogue_find(c, strv_from_cstr(model));
    unsigned max = m && m->max_per_node ? m->max_per_node : 1;
    if (!node_model_find(n, strv_from_cstr(model))) return; /* the registry has the word */
    if (dev >= 0) {
        e->dev = (size_t)dev < pn_devices(p) ? dev : -1;
        return;
    }
    if (held_before && e->replicas && e->replicas < max) e->replicas++; /* one more replica */
}

/* ---- eviction strategies ------------------------------------------------------------------ */

const char *placement_evict_name(enum place_evict e)
{
    return e == PLACE_EVICT_LFU ? "lfu" : e == PLACE_EVICT_LARGEST_IDLE ? "largest_idle" : "lru";
}

static int evict_parse_word(const char *w, size_t len, enum place_evict *e)
{
    static const enum place_evict all[] = {PLACE_EVICT_LRU, PLACE_EVICT_LFU,
                                           PLACE_EVICT_LARGEST_IDLE};
    for (size_t i = 0; i < 3; i++) {
        const char *name = placement_evict_name(all[i]);
        if (strlen(name) == len && !strncmp(name, w, len)) {
            *e = all[i];
            return 0;
        }
    }
    return GW_E_INVALID;
}

static void classes_free(void)
{
    for (size_t i = 0; i < n_evict_classes; i++)
        for (size_t j = 0; j < evict_classes[i].n_sel; j++) {
            xfree(evict_classes[i].sel[j].key);
            xfree(evict_classes[i].sel[j].value);
        }
    xfree(evict_classes);
    evict_classes = NULL;
    n_evict_classes = 0;
}

int placement_set_eviction(const char *spec, char *why, size_t why_cap)
{
    classes_free();
    evict_default = PLACE_EVICT_LRU;
    if (!spec || !*spec) return 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", spec);
    bool first = true;
    for (char *save = NULL, *item = strtok_r(buf, ";", &save); item;
         item = strtok_r(NULL, ";", &save), first = false) {
        while (*item == ' ') item++;
        char *end = item + strlen(item);
        while (end > item && end[-1] == ' ') *--end = '\0';
        char *colon = strrchr(item, ':');
        enum place_evict e;
        if (first && !colon) {
            if (evict_parse_word(item, strlen(item), &e)) goto bad;
            evict_default = e;
            continue;
        }
        if (!colon || evict_parse_word(colon + 1, strlen(colon + 1), &e)) goto bad;
        *colon = '\0';
        struct evict_class cl = {.e = e};
        for (char *s2 = NULL, *kv = strtok_r(item, ",", &s2); kv; kv = strtok_r(NULL, ",", &s2)) {
            char *eq = strchr(kv, '=');
            if (!eq || eq == kv || cl.n_sel >= 8) {
                for (size_t j = 0; j < cl.n_sel; j++) xfree(cl.sel[j].key), xfree(cl.sel[j].value);
                goto bad;
            }
            *eq = '\0';
            cl.sel[cl.n_sel].key = xstrdup(kv);
            cl.sel[cl.n_sel].value = xstrdup(eq + 1);
            cl.n_sel++;
        }
        evict_classes = xrealloc(evict_classes, (n_evict_classes + 1) * sizeof *evict_classes);
        evict_classes[n_evict_classes++] = cl;
    }
    return 0;
bad:
    if (why)
        snprintf(
            why, why_cap,
            "placement.eviction: expected \"lru|lfu|largest_idle[; key=value,...:strategy]...\"");
    classes_free();
    evict_default = PLACE_EVICT_LRU;
    return GW_E_INVALID;
}

enum place_evict placement_eviction_for(const struct node *n)
{
    for (size_t i = 0; i < n_evict_classes; i++) {
        const struct evict_class *cl = &evict_classes[i];
        bool all = true;
        for (size_t j = 0; j < cl->n_sel && all; j++) {
            bool one = false;
            for (size_t k = 0; k < n->n_labels && !one; k++)
                one = !strcmp(n->labels[k].key, cl->sel[j].key) &&
                      !strcmp(n->labels[k].value, cl->sel[j].value);
            all = one;
        }
        if (all) return cl->e;
    }
    return evict_default;
}

void placement_observe(const struct registry *reg)
{
    for (size_t i = 0; i < reg->n; i++) {
        const struct node *n = reg->nodes[i];
        struct pn *p = pn_get(n);
        for (size_t j = 0; j < n->n_models; j++) {
            const struct node_model *nm = &n->models[j];
            struct pn_model *e = pn_model(p, nm->id, true);
            if (nm->last_used_ms > e->seen_used_ms || nm->inflight) {
                e->uses++;
                e->seen_used_ms = nm->last_used_ms;
            }
        }
    }
}

uint64_t placement_uses(const struct node *n, const char *model)
{
    const struct pn_model *e = pn_model(pn_get(n), model, false);
    return e ? e->uses : 0;
}

/* Is a before b in the order victims are taken? */
static bool evict_before(enum place_evict how, const struct catalogue *c, const struct node *n,
                         struct pn *p, const struct node_model *a, const struct node_model *b)
{
    if (how == PLACE_EVICT_LFU) {
        const struct pn_model *ea = pn_model(p, a->id, false), *eb = pn_model(p, b->id, false);
        uint64_t ua = ea ? ea->uses : 0, ub = eb ? eb->uses : 0;
        if (ua != ub) return ua < ub;
    } else if (how == PLACE_EVICT_LARGEST_IDLE) {
        uint64_t sa = placement_need_mb(c, n, a->id) * placement_replicas_on(n, a->id);
        uint64_t sb = placement_need_mb(c, n, b->id) * placement_replicas_on(n, b->id);
        if (sa != sb) return sa > sb;
    }
    return a->last_used_ms < b->last_used_ms;
}

static bool evict_plan(const struct catalogue *c, const struct registry *reg, const struct node *n,
                       const struct cat_model *m, uint64_t need_mb, uint64_t now_ms,
                       const char **out, size_t cap, size_t *n_out, bool *busy)
{
    *n_out = 0;
    *busy = false;
    struct pn *p = pn_get(n);
    pn_sync(c, n, p);
    enum place_evict how = placement_eviction_for(n);
    bool taken[256] = {false};
    size_t nm = n->n_models < 256 ? n->n_models : 256;
    while (!fits(c, n, p, m, need_mb, out, *n_out) && *n_out < cap) {
        const struct node_model *best = NULL;
        size_t best_i = 0;
        for (size_t i = 0; i < nm; i++) {
            const struct node_model *mm = &n->models[i];
            if (taken[i] || (m && !strcmp(mm->id, m->id))) continue;
            const struct cat_model *cm = catalogue_find(c, strv_from_cstr(mm->id));
            if (mm->inflight > 0) {
                *busy = true;
                continue;
            }
            if (cm && cm->pinned) continue;
            if (cm && cm->replicas_min &&
                placement_replicas(reg, mm->id, now_ms) <= cm->replicas_min)
                continue;
            if (!best || evict_before(how, c, n, p, mm, best)) best = mm, best_i = i;
        }
        if (!best) break;
        taken[best_i] = true;
        out[(*n_out)++] = best->id;
    }
    return fits(c, n, p, m, need_mb, out, *n_out);
}

bool placement_evict_plan(const struct catalogue *c, const struct registry *reg,
                          const struct node *n, uint64_t need_mb, uint64_t now_ms, const char **out,
                          size_t cap, size_t *n_out, bool *busy)
{
    return evict_plan(c, reg, n, NULL, need_mb, now_ms, out, cap, n_out, busy);
}

bool placement_evict_plan_for(const struct catalogue *c, const struct registry *reg,
                              const struct node *n, const struct cat_model *m, uint64_t now_ms,
                              const char **out, size_t cap, size_t *n_out, bool *busy)
{
    return evict_plan(c, reg, n, m, m->min_vram_mb, now_ms, out, cap, n_out, busy);
}

/* ---- defrag --------------------------------------------------------------------------------- */

void placement_note_cycle(const struct node *n)
{
    pn_get(n)->cycles++;
}

unsigned placement_cycles(const struct node *n)
{
    return pn_get(n)->cycles;
}

void placement_defrag_done(const struct node *n)
{
    pn_get(n)->cycles = 0;
}

bool placement_defrag_plan(const struct catalogue *c, const struct registry *reg,
                           const struct node *n, unsigned after_cycles, struct place_defrag *out)
{
    (void)reg;
    memset(out, 0, sizeof *out);
    struct pn *p = pn_get(n);
    pn_sync(c, n, p);
    size_t nd = pn_devices(p);
    if (!after_cycles || p->cycles < after_cycles || !nd || n->inflight) return false;
    /* quiet: nothing in flight; movable: idle one-device models with one replica, not pinned */
    const char *mov[PLACE_DEFRAG_MAX];
    uint64_t mb[PLACE_DEFRAG_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n->n_models; i++) {
        const struct node_model *nm = &n->models[i];
        if (nm->inflight) return false;
        const struct cat_model *cm = catalogue_find(c, strv_from_cstr(nm->id));
        const struct pn_model *e = pn_model(p, nm->id, false);
        if ((cm && (cm->pinned || cm->min_devices >= 2)) || !e || e->dev < 0 || e->replicas != 1)
            continue;
        if (k < PLACE_DEFRAG_MAX) mov[k] = nm->id, mb[k] = placement_need_mb(c, n, nm->id), k++;
    }
    if (!k) return false;
    uint64_t f[NODE_API_MAX_GPUS];
    dev_free(c, n, p, NULL, 0, f);
    for (size_t d = 0; d < nd; d++)
        if (f[d] > out->max_free_before_mb) out->max_free_before_mb = f[d];
    /* the fixed part: everything but the movable ones; then first fit, largest first */
    dev_free(c, n, p, mov, k, f);
    int target[PLACE_DEFRAG_MAX];
    bool done[PLACE_DEFRAG_MAX] = {false};
    for (size_t r = 0; r < k; r++) {
        size_t big = k;
        for (size_t i = 0; i < k; i++)
            if (!done[i] && (big == k || mb[i] > mb[big])) big = i;
        done[big] = true;
        target[big] = -1;
        const struct cat_model *cm = catalogue_find(c, strv_from_cstr(mov[big]));
        for (size_t d = 0; d < nd && target[big] < 0; d++)
            if (f[d] >= mb[big] && (!cm || gpu_qualifies(cm, &p->gpu[d]))) target[big] = (int)d;
        if (target[big] < 0) return false; /* does not pack: leave the node as it is */
        f[target[big]] -= mb[big];
    }
    for (size_t d = 0; d < nd; d++)
        if (f[d] > out->max_free_after_mb) out->max_free_after_mb = f[d];
    if (out->max_free_after_mb <= out->max_free_before_mb) return false;
    for (size_t i = 0; i < k; i++) {
        const struct pn_model *e = pn_model(p, mov[i], false);
        if (e->dev == target[i]) continue;
        out->ids[out->n] = mov[i];
        out->dev[out->n] = target[i];
        out->n++;
    }
    return out->n > 0;
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

/* Room for one more of m on n (maybe after evicting idle models): CAN_LOAD or FULL. */
static void judge_room(const struct catalogue *c, const struct registry *reg,
                       const struct cat_model *m, const struct node *n, uint64_t now_ms,
                       struct place_verdict *v)
{
    struct pn *p = pn_get(n);
    pn_sync(c, n, p);
    v->free_mb = placement_free_mb(c, n);
    v->state = PST_CAN_LOAD;
    if (!fits(c, n, p, m, m->min_vram_mb, NULL, 0)) {
        const char *plan[64];
        size_t k;
        bool busy;
        v->needs_evict = true;
        if (!placement_evict_plan_for(c, reg, n, m, now_ms, plan, 64, &k, &busy))
            v->state = PST_FULL;
    }
}

void placement_assess(const struct catalogue *c, const struct registry *reg,
                      const struct cat_model *m, const struct node *n, uint64_t now_ms,
                      bool (*skip)(const struct node *n, void *ctx), void *skip_ctx,
                      struct place_verdict *v)
{
    memset(v, 0, sizeof *v);
    struct strv id = strv_from_cstr(m->id);
    bool routable = node_is_routable(reg, n, now_ms);
    const struct node_model *held = node_model_find(n, id);
    v->bits = placement_infeasible(m, n);
    if (v->bits) {
        v->state = PST_INFEASIBLE;
    } else if (held) {
        v->state = routable ? PST_LOADED : PST_DOWN;
        /* below max_per_node with every replica busy: one more may go here. At the maximum,
         * or without room, the node stays "loaded": never an evict-and-retry loop (seed-003) */
        unsigned count = placement_replicas_on(n, m->id);
        unsigned max = m->max_per_node ? m->max_per_node : 1;
        if (routable && count < max && held->inflight >= count && n->via_agent &&
            placement_engine_loads(n->kind) && !placement_backoff(m, n, now_ms) &&
            !(skip && skip(n, skip_ctx))) {
            struct place_verdict room = *v;
            judge_room(c, reg, m, n, now_ms, &room);
            if (room.state == PST_CAN_LOAD) {
                *v = room;
                v->adds_replica = true;
            }
        }
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
        judge_room(c, reg, m, n, now_ms, v);
    }
}

/* "needs 2 devices matching \"*A100*\", has 1 (NVIDIA A10)", "needs compute capability 8.0,
 * its devices have 7.5", "needs CUDA 12.1..12, has 11.8". The first failed constraint. */
static void device_words(const struct cat_model *m, const struct node *n, unsigned bits, char *out,
                         size_t cap)
{
    struct pn *p = pn_get(n);
    unsigned want = m->min_devices ? m->min_devices : 1;
    char have[160] = "";
    size_t len = 0;
    if (!p->n_gpu && (bits & (PLACE_DEVICE_NAME | PLACE_COMPUTE))) {
        snprintf(out, cap, "needs matching devices, its devices are not known");
        return;
    }
    if (bits & PLACE_DEVICE_NAME) {
        unsigned k = 0;
        for (size_t i = 0; i < p->n_gpu; i++) {
            if (fnmatch(m->device_name, p->gpu[i].name, 0) == 0) k++;
            if (i < 4 && len + 1 < sizeof have) {
                int w = snprintf(have + len, sizeof have - len, "%s%s", i ? ", " : "",
                                 p->gpu[i].name[0] ? p->gpu[i].name : "?");
                if (w > 0) len += (size_t)w < sizeof have - len ? (size_t)w : sizeof have - len - 1;
            }
        }
        snprintf(out, cap, "needs %u device%s matching \"%s\", has %u (%s)", want,
                 want == 1 ? "" : "s", m->device_name, k, have);
    } else if (bits & PLACE_COMPUTE) {
        for (size_t i = 0; i < p->n_gpu && i < 4; i++) {
            int w = snprintf(have + len, sizeof have - len, "%s%s", i ? ", " : "",
                             p->gpu[i].cc[0] ? p->gpu[i].cc : "unknown");
            if (w > 0) len += (size_t)w < sizeof have - len ? (size_t)w : sizeof have - len - 1;
        }
        snprintf(out, cap, "needs compute capability %s on %u device%s, its devices have %s",
                 m->min_compute_capability, want, want == 1 ? "" : "s", have);
    } else {
        char range[80];
        snprintf(range, sizeof range, "%s%s%s", m->cuda_min[0] ? m->cuda_min : "any",
                 m->cuda_max[0] ? ".." : "+", m->cuda_max);
        if (p->cuda[0])
            snprintf(out, cap, "needs CUDA %s, has %s", range, p->cuda);
        else if (p->rocm[0])
            snprintf(out, cap, "needs CUDA %s, has ROCm %s", range, p->rocm);
        else
            snprintf(out, cap, "needs CUDA %s, its CUDA version is not known", range);
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
    else if (bits & (PLACE_DEVICE_NAME | PLACE_COMPUTE | PLACE_CUDA))
        device_words(m, n, bits, out, cap);
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
