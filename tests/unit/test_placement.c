/* Table-driven tests for placement (DESIGN §6): feasibility, VRAM accounting, the eviction
 * choice, the cold-load choice (only nodes that can load: engine, disk, backoff) and the load
 * backoff per (model, node). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "gw/placement.h"

enum { NOW = 1000000 };

static struct node *add_node(struct registry *reg, const char *name, unsigned devices,
                             uint64_t vram, bool healthy)
{
    struct node *n = NULL;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", 9000 + (int)reg->n);
    assert_int_equal(registry_add(reg, name, url, NODE_KIND_OLLAMA, "k", &n, NULL), 0);
    n->via_agent = true;
    n->facts_known = true;
    n->devices = devices;
    n->vram_total_mb = vram;
    n->live = healthy ? LIVE_HEALTHY : LIVE_UNHEALTHY;
    n->ever_healthy = healthy;
    n->inventory_known = true; /* the agent's first probe came back */
    return n;
}

static struct node *add_kind(struct registry *reg, const char *name, enum node_kind kind,
                             bool via_agent)
{
    struct node *n = add_node(reg, name, 1, 24000, true);
    n->kind = kind;
    n->via_agent = via_agent;
    return n;
}

/* The node's on-disk list: ids separated by spaces. */
static void disk(struct node *n, const char *ids)
{
    struct strv v[16];
    size_t k = 0;
    char copy[256];
    snprintf(copy, sizeof copy, "%s", ids);
    for (char *save = NULL, *t = strtok_r(copy, " ", &save); t && k < 16;
         t = strtok_r(NULL, " ", &save))
        v[k++] = strv_from_cstr(t);
    registry_set_disk(n, v, k);
}

static void load(struct node *n, const char *id, uint64_t last_used, unsigned inflight)
{
    registry_model_loaded(n, strv_from_cstr(id), 0, last_used);
    node_model_find(n, strv_from_cstr(id))->inflight = inflight;
}

static struct cat_model *cat(struct catalogue *c, const char *id, unsigned devices, uint64_t vram,
                             unsigned rmin, bool pinned)
{
    struct cat_model *m = xcalloc(1, sizeof *m);
    m->id = xstrdup(id);
    m->engine = -1;
    m->min_devices = devices;
    m->min_vram_mb = vram;
    m->replicas_min = rmin;
    m->pinned = pinned;
    catalogue_put(c, m);
    return m;
}

static void test_feasibility(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct node *one = add_node(&reg, "one", 1, 24000, true);
    struct node *two = add_node(&reg, "two", 2, 48000, true);
    struct cat_model *big = cat(&c, "big", 2, 40000, 0, false);
    struct cat_model *small = cat(&c, "small", 1, 8000, 0, false);
    assert_int_equal(placement_infeasible(big, one), PLACE_NO_DEVICES | PLACE_NO_VRAM);
    assert_int_equal(placement_infeasible(big, two), 0);
    assert_int_equal(placement_infeasible(small, one), 0);
    small->selector = xcalloc(1, sizeof *small->selector);
    small->selector[0].key = xstrdup("zone");
    small->selector[0].value = xstrdup("a");
    small->n_selector = 1;
    assert_int_equal(placement_infeasible(small, one), PLACE_SELECTOR);
    registry_set_label(one, "zone", "a");
    assert_int_equal(placement_infeasible(small, one), 0);
    small->engine = NODE_KIND_VLLM;
    assert_int_equal(placement_infeasible(small, one), PLACE_ENGINE);
    two->admin = ADMIN_PENDING;
    assert_int_equal(placement_infeasible(big, two), PLACE_REMOVED);
    struct node *unknown = add_node(&reg, "unknown", 0, 0, true);
    unknown->facts_known = false;
    assert_int_equal(placement_infeasible(big, unknown), PLACE_NO_DEVICES | PLACE_NO_VRAM);
    catalogue_free(&c);
    registry_free(&reg);
}

static void test_evict_lru_idle_only(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct node *n = add_node(&reg, "n", 1, 30000, true);
    cat(&c, "old", 0, 10000, 0, false);
    cat(&c, "older", 0, 10000, 0, false);
    cat(&c, "busy", 0, 10000, 0, false);
    cat(&c, "new", 0, 10000, 0, false);
    load(n, "old", 200, 0);
    load(n, "older", 100, 0);
    load(n, "busy", 50, 1);
    assert_int_equal(placement_free_mb(&c, n), 0);
    const char *plan[8];
    size_t k;
    bool busy;
    assert_true(placement_evict_plan(&c, &reg, n, 10000, NOW, plan, 8, &k, &busy));
    assert_int_equal(k, 1);
    assert_string_equal(plan[0], "older"); /* least recently used idle, not the busy one */
    assert_true(placement_evict_plan(&c, &reg, n, 20000, NOW, plan, 8, &k, &busy));
    assert_int_equal(k, 2);
    assert_string_equal(plan[1], "old");
    assert_false(placement_evict_plan(&c, &reg, n, 30000, NOW, plan, 8, &k, &busy));
    assert_true(busy); /* only the busy one is in the way */
    catalogue_free(&c);
    registry_free(&reg);
}

static void test_evict_never_pinned_or_min_replicas(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct node *n = add_node(&reg, "n", 1, 20000, true);
    struct node *m2 = add_node(&reg, "m2", 1, 20000, true);
    cat(&c, "pinned", 0, 10000, 0, true);
    cat(&c, "kept", 0, 10000, 2, false);
    load(n, "pinned", 1, 0);
    load(n, "kept", 2, 0);
    load(m2, "kept", 2, 0);
    const char *plan[8];
    size_t k;
    bool busy;
    /* "kept" has 2 replicas and min 2: protected; "pinned" is pinned */
    assert_false(placement_evict_plan(&c, &reg, n, 10000, NOW, plan, 8, &k, &busy));
    assert_int_equal(k, 0);
    assert_false(busy);
    /* a third replica elsewhere makes one of them evictable */
    struct node *m3 = add_node(&reg, "m3", 1, 20000, true);
    load(m3, "kept", 2, 0);
    assert_true(placement_evict_plan(&c, &reg, n, 10000, NOW, plan, 8, &k, &busy));
    assert_string_equal(plan[0], "kept");
    catalogue_free(&c);
    registry_free(&reg);
}

static bool skip_named(const struct node *n, void *ctx)
{
    return strcmp(n->name, ctx) == 0;
}

static void test_pick_cold(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct node *small = add_node(&reg, "small", 1, 16000, true);
    struct node *big = add_node(&reg, "big", 2, 48000, true);
    struct node *bigger = add_node(&reg, "bigger", 2, 80000, false); /* down */
    struct cat_model *two = cat(&c, "two-dev", 2, 30000, 0, false);
    cat(&c, "filler", 0, 30000, 0, false);
    disk(small, "two-dev one-dev");
    disk(big, "two-dev one-dev");
    disk(bigger, "two-dev one-dev");
    bool evict;
    enum place_none why;
    /* only 2-device nodes; the healthy one wins */
    assert_ptr_equal(placement_pick_cold(&c, &reg, two, NOW, NULL, NULL, &evict, &why), big);
    assert_false(evict);
    /* fill it with an idle model: it still wins, by eviction */
    load(big, "filler", 5, 0);
    assert_ptr_equal(placement_pick_cold(&c, &reg, two, NOW, NULL, NULL, &evict, &why), big);
    assert_true(evict);
    /* busy filler: no node */
    node_model_find(big, strv_from_cstr("filler"))->inflight = 1;
    assert_null(placement_pick_cold(&c, &reg, two, NOW, NULL, NULL, &evict, &why));
    assert_int_equal(why, PLACE_NONE_FULL);
    /* the only 2-device nodes down: unhealthy, not infeasible */
    big->live = LIVE_UNHEALTHY;
    assert_null(placement_pick_cold(&c, &reg, two, NOW, NULL, NULL, &evict, &why));
    assert_int_equal(why, PLACE_NONE_UNHEALTHY);
    /* no 2-device node at all: infeasible */
    big->devices = 1;
    bigger->devices = 1;
    assert_null(placement_pick_cold(&c, &reg, two, NOW, NULL, NULL, &evict, &why));
    assert_int_equal(why, PLACE_NONE_INFEASIBLE);
    /* most free VRAM first among those that fit now */
    struct cat_model *one = cat(&c, "one-dev", 1, 1000, 0, false);
    struct node *roomy = add_node(&reg, "roomy", 1, 64000, true);
    disk(roomy, "one-dev");
    assert_ptr_equal(placement_pick_cold(&c, &reg, one, NOW, NULL, NULL, &evict, &why), roomy);
    /* a roomier node without the files is never asked: an Ollama load of a model it does not
     * have answers 404 "try pulling it first" */
    struct node *roomiest = add_node(&reg, "roomiest", 1, 96000, true);
    assert_ptr_equal(placement_pick_cold(&c, &reg, one, NOW, NULL, NULL, &evict, &why), roomy);
    /* a skipped node (a load running there) is passed over */
    assert_ptr_equal(placement_pick_cold(&c, &reg, one, NOW, skip_named, "roomy", &evict, &why),
                     small);
    (void)roomiest;
    (void)small;
    catalogue_free(&c);
    registry_free(&reg);
}

static bool installing_on(void *ctx, const char *node, const char *model)
{
    (void)model;
    return strcmp(node, ctx) == 0;
}

/* Issue 12 §4: only nodes whose engine loads on request and that have the files. */
static void test_pick_only_nodes_that_can_load(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct cat_model *m = cat(&c, "m", 0, 0, 1, false); /* no engine constraint */
    struct node *llama = add_kind(&reg, "llama", NODE_KIND_LLAMACPP, true);
    struct node *vllm = add_kind(&reg, "vllm", NODE_KIND_VLLM, true);
    struct node *bare = add_kind(&reg, "bare", NODE_KIND_OLLAMA, true);
    struct node *stat = add_kind(&reg, "static", NODE_KIND_OLLAMA, false);
    disk(llama, "m");
    disk(vllm, "m");
    disk(stat, "m");
    bool evict;
    enum place_none why;
    /* llama.cpp and vLLM cannot load on request, Ollama only what is on its disk, a static
     * node has no agent: nobody can, and it is for ever (404 no_feasible_node) */
    assert_null(placement_pick_cold(&c, &reg, m, NOW, NULL, NULL, &evict, &why));
    assert_int_equal(why, PLACE_NONE_INFEASIBLE);
    struct place_verdict v;
    placement_assess(&c, &reg, m, llama, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_ENGINE);
    placement_assess(&c, &reg, m, vllm, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_ENGINE);
    placement_assess(&c, &reg, m, bare, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_NOT_ON_DISK);
    placement_assess(&c, &reg, m, stat, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_NO_AGENT);
    /* the 404's words name every node and why */
    char out[512];
    size_t k = placement_explain(&c, &reg, m, NOW, out, sizeof out);
    assert_int_equal(k, strlen(out));
    assert_non_null(strstr(out, "llama: engine llamacpp cannot load on request"));
    assert_non_null(strstr(out, "vllm: engine vllm cannot load on request"));
    assert_non_null(strstr(out, "bare: not on disk"));
    assert_non_null(strstr(out, "static: static node"));
    /* an install queued for bare: wait for it (not infeasible), and still no load there */
    placement_set_install_probe(installing_on, "bare");
    struct place_pick pk;
    placement_pick(&c, &reg, m, NOW, NULL, NULL, &pk);
    assert_null(pk.node);
    assert_true(pk.waiting);
    assert_int_equal(pk.why, PLACE_NONE_UNHEALTHY);
    placement_assess(&c, &reg, m, bare, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_INSTALLING);
    placement_set_install_probe(NULL, NULL);
    /* only by another name (Ollama's tag): still not loaded there, and the words say so */
    disk(bare, "m:latest");
    placement_assess(&c, &reg, m, bare, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_NOT_ON_DISK);
    assert_string_equal(placement_describe(m, bare, &v, out, sizeof out),
                        "not on disk by this name (the node has m:latest)");
    /* the install landed: the probe's disk list names it, and now bare is the one */
    disk(bare, "m other");
    assert_ptr_equal(placement_pick_cold(&c, &reg, m, NOW, NULL, NULL, &evict, &why), bare);
    /* an Ollama node whose inventory is not known yet is not called infeasible */
    bare->inventory_known = false;
    assert_null(placement_pick_cold(&c, &reg, m, NOW, NULL, NULL, &evict, &why));
    assert_int_equal(why, PLACE_NONE_UNHEALTHY);
    bare->inventory_known = true;
    /* a llama.cpp node that holds it serves it: not infeasible, just held */
    registry_model_loaded(llama, strv_from_cstr("m"), 0, NOW);
    bare->live = LIVE_UNHEALTHY;
    assert_null(placement_pick_cold(&c, &reg, m, NOW, NULL, NULL, &evict, &why));
    assert_int_equal(why, PLACE_NONE_HELD);
    /* devices: the words carry the numbers */
    struct cat_model *two = cat(&c, "two", 2, 0, 0, false);
    placement_assess(&c, &reg, two, bare, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_INFEASIBLE);
    assert_string_equal(placement_describe(two, bare, &v, out, sizeof out),
                        "needs 2 devices, has 1");
    /* capped: the text ends in "..." and stays inside the buffer */
    char small[40];
    k = placement_explain(&c, &reg, m, NOW, small, sizeof small);
    assert_true(k < sizeof small);
    assert_int_equal(k, strlen(small));
    assert_non_null(strstr(small, "..."));
    assert_int_equal(placement_explain(&c, &reg, m, NOW, small, 0), 0);
    catalogue_free(&c);
    registry_free(&reg);
}

/* A failed load backs the (model, node) pair off; picking another node in between does not
 * reset it; a change of the node's lists or the admin's recover does. */
static void test_backoff_per_pair(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct cat_model *m = cat(&c, "m", 0, 1000, 1, false);
    struct node *a = add_node(&reg, "a", 1, 48000, true); /* roomier: picked first */
    struct node *b = add_node(&reg, "b", 1, 24000, true);
    disk(a, "m");
    disk(b, "m");
    struct place_pick pk;
    placement_pick(&c, &reg, m, NOW, NULL, NULL, &pk);
    assert_ptr_equal(pk.node, a);
    assert_int_equal(placement_load_failed(m, a, NOW, "the agent answered 502"), 30000);
    /* a is out for 30 s: b is picked */
    placement_pick(&c, &reg, m, NOW + 1, NULL, NULL, &pk);
    assert_ptr_equal(pk.node, b);
    assert_int_equal(placement_load_failed(m, b, NOW + 1, "the agent answered 502"), 30000);
    /* both out: nobody, waiting, and when to look again */
    placement_pick(&c, &reg, m, NOW + 2, NULL, NULL, &pk);
    assert_null(pk.node);
    assert_true(pk.waiting);
    assert_int_equal(pk.retry_at_ms, NOW + 30000);
    char out[256];
    placement_explain(&c, &reg, m, NOW + 2, out, sizeof out);
    assert_non_null(strstr(out, "a: load failed 1 time (the agent answered 502)"));
    /* a's backoff ends first; its next failure doubles: b's pick did not reset it */
    placement_pick(&c, &reg, m, NOW + 30000, NULL, NULL, &pk);
    assert_ptr_equal(pk.node, a);
    assert_int_equal(placement_load_failed(m, a, NOW + 30000, "again"), 60000);
    assert_non_null(placement_backoff(m, a, NOW + 89999));
    assert_null(placement_backoff(m, a, NOW + 90000));
    /* doubling stops at 15 min */
    uint64_t d = 0;
    for (int i = 0; i < 12; i++) d = placement_load_failed(m, a, NOW + 30000, "again");
    assert_int_equal(d, 15 * 60 * 1000);
    /* the node's on-disk list changes (a pull, a delete): its backoff ends, and the next
     * failure starts again at 30 s */
    disk(a, "m other");
    assert_null(placement_backoff(m, a, NOW + 30001));
    assert_int_equal(placement_load_failed(m, a, NOW + 30001, "x"), 30000);
    /* so does its loaded list */
    registry_model_loaded(a, strv_from_cstr("other"), 0, NOW);
    assert_null(placement_backoff(m, a, NOW + 30002));
    assert_int_equal(placement_load_failed(m, a, NOW + 30002, "x"), 30000);
    /* the admin's recover of b forgets b's backoff (and lets the reconciler look at once) */
    m->backoff_until_ms = NOW + 99999;
    assert_non_null(placement_backoff(m, b, NOW + 2));
    assert_int_equal(placement_forget_node(&c, "b"), 1);
    assert_null(placement_backoff(m, b, NOW + 2));
    assert_int_equal(m->backoff_until_ms, 0);
    assert_non_null(placement_backoff(m, a, NOW + 30003)); /* not a's */
    /* a successful load of the pair ends it too */
    placement_load_ok(m, a);
    assert_null(placement_backoff(m, a, NOW + 30003));
    assert_int_equal(placement_load_failed(m, a, NOW + 30003, "x"), 30000);
    catalogue_free(&c);
    registry_free(&reg);
}

/* ---- issue 18 ------------------------------------------------------------------------------ */

/* A node whose agent reported GPUs "name/vram/cc" separated by '|' and a CUDA version. */
static struct node *add_gpus(struct registry *reg, const char *name, const char *gpus,
                             const char *cuda, const char *rocm)
{
    char json[2048], copy[512];
    size_t len = (size_t)snprintf(json, sizeof json, "{\"hostname\":\"%s\",\"gpus\":[", name);
    snprintf(copy, sizeof copy, "%s", gpus);
    unsigned k = 0;
    uint64_t total = 0;
    for (char *save = NULL, *t = strtok_r(copy, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
        char gname[64], cc[16];
        unsigned long mb;
        assert_int_equal(sscanf(t, "%63[^/]/%lu/%15s", gname, &mb, cc), 3);
        len += (size_t)snprintf(json + len, sizeof json - len,
                                "%s{\"index\":%u,\"name\":\"%s\",\"vram_total_mb\":%lu,"
                                "\"compute_capability\":\"%s\"}",
                                k ? "," : "", k, gname, mb, cc);
        k++;
        total += mb;
    }
    len += (size_t)snprintf(json + len, sizeof json - len, "]");
    if (cuda)
        len += (size_t)snprintf(json + len, sizeof json - len, ",\"cuda_version\":\"%s\"", cuda);
    if (rocm)
        len += (size_t)snprintf(json + len, sizeof json - len, ",\"rocm_version\":\"%s\"", rocm);
    snprintf(json + len, sizeof json - len, "}");
    struct node *n = add_node(reg, name, k, total, true);
    n->discovery_json = xstrdup(json);
    return n;
}

static const char *words(const struct catalogue *c, const struct registry *reg,
                         const struct cat_model *m, const struct node *n, char *out, size_t cap)
{
    struct place_verdict v;
    placement_assess(c, reg, m, n, NOW, NULL, NULL, &v);
    return placement_describe(m, n, &v, out, cap);
}

static void test_device_constraints(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct node *a100 = add_gpus(&reg, "a100", "NVIDIA A100-SXM4-80GB/81920/8.0", "12.4", NULL);
    struct node *t4 = add_gpus(&reg, "t4", "Tesla T4/15360/7.5", "11.8", NULL);
    struct node *mi = add_gpus(&reg, "mi", "AMD Instinct MI250/65536/gfx90a", NULL, "6.0");
    struct node *blind = add_node(&reg, "blind", 1, 24000, true); /* no discovery text */
    struct cat_model *m = cat(&c, "m", 1, 8000, 0, false);
    snprintf(m->min_compute_capability, sizeof m->min_compute_capability, "8.0");
    snprintf(m->cuda_min, sizeof m->cuda_min, "12.1");
    snprintf(m->cuda_max, sizeof m->cuda_max, "12");
    snprintf(m->device_name, sizeof m->device_name, "*A100*");
    assert_int_equal(placement_infeasible(m, a100), 0);
    assert_int_equal(placement_infeasible(m, t4), PLACE_COMPUTE | PLACE_CUDA | PLACE_DEVICE_NAME);
    assert_int_equal(placement_infeasible(m, mi) & PLACE_CUDA, PLACE_CUDA);
    assert_int_equal(placement_infeasible(m, blind),
                     PLACE_COMPUTE | PLACE_CUDA | PLACE_DEVICE_NAME);
    char w[200];
    assert_string_equal(words(&c, &reg, m, t4, w, sizeof w),
                        "needs 1 device matching \"*A100*\", has 0 (Tesla T4)");
    m->device_name[0] = '\0';
    assert_string_equal(words(&c, &reg, m, t4, w, sizeof w),
                        "needs compute capability 8.0 on 1 device, its devices have 7.5");
    m->min_compute_capability[0] = '\0';
    assert_string_equal(words(&c, &reg, m, t4, w, sizeof w), "needs CUDA 12.1..12, has 11.8");
    assert_string_equal(words(&c, &reg, m, mi, w, sizeof w), "needs CUDA 12.1..12, has ROCm 6.0");
    /* the 404's text names each node and the constraint it fails */
    char all[600];
    placement_explain(&c, &reg, m, NOW, all, sizeof all);
    assert_non_null(strstr(all, "t4: needs CUDA 12.1..12, has 11.8"));
    assert_non_null(strstr(all, "mi: needs CUDA 12.1..12, has ROCm 6.0"));
    assert_null(strstr(all, "a100: needs")); /* a100 only lacks the files */
    /* a changed discovery is read again */
    xfree(t4->discovery_json);
    t4->discovery_json = xstrdup("{\"gpus\":[{\"index\":0,\"name\":\"Tesla T4\"}],"
                                 "\"cuda_version\":\"12.2\"}");
    assert_int_equal(placement_infeasible(m, t4), 0);
    /* two devices wanted: both must qualify */
    struct node *mixed =
        add_gpus(&reg, "mixed", "NVIDIA A100/40960/8.0|Tesla T4/15360/7.5", "12.4", NULL);
    m->min_devices = 2;
    snprintf(m->min_compute_capability, sizeof m->min_compute_capability, "8.0");
    assert_int_equal(placement_infeasible(m, mixed), PLACE_COMPUTE);
    catalogue_free(&c);
    registry_free(&reg);
    placement_reset();
}

/* Free VRAM split over devices: a one-device model needs its VRAM on one device. */
static void test_per_device_fit_and_defrag(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct node *n = add_gpus(&reg, "n", "GPU/4000/8.6|GPU/4000/8.6", "12.4", NULL);
    disk(n, "a b big");
    cat(&c, "a", 1, 1500, 1, false);
    cat(&c, "b", 1, 1500, 1, false);
    struct cat_model *big = cat(&c, "big", 1, 3000, 0, false);
    /* a goes to device 0, b to the device with the most room: 1 */
    load(n, "a", 10, 0);
    placement_loaded(&c, n, "a", -1, false);
    load(n, "b", 20, 0);
    placement_loaded(&c, n, "b", -1, false);
    uint64_t f[4], max;
    assert_int_equal(placement_device_free(&c, n, f, 4, &max), 2);
    assert_int_equal(f[0], 2500);
    assert_int_equal(f[1], 2500);
    assert_int_equal(placement_free_mb(&c, n), 5000); /* enough in total, not on one device */
    struct place_verdict v;
    placement_assess(&c, &reg, big, n, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_FULL); /* a and b are at replicas.min: not evictable */
    /* no defrag before the cycles, nor while something runs */
    struct place_defrag d;
    assert_false(placement_defrag_plan(&c, &reg, n, 3, &d));
    for (int i = 0; i < 3; i++) placement_note_cycle(n);
    node_model_find(n, strv_from_cstr("a"))->inflight = 1;
    assert_false(placement_defrag_plan(&c, &reg, n, 3, &d));
    node_model_find(n, strv_from_cstr("a"))->inflight = 0;
    assert_true(placement_defrag_plan(&c, &reg, n, 3, &d));
    assert_int_equal(d.max_free_before_mb, 2500);
    assert_int_equal(d.max_free_after_mb, 4000);
    assert_int_equal(d.n, 1); /* one moves next to the other */
    /* carry it out as loads.c does: unload, reload on the target */
    char moved[16];
    snprintf(moved, sizeof moved, "%s", d.ids[0]);
    int to = d.dev[0];
    registry_model_unloaded(n, strv_from_cstr(moved));
    load(n, moved, 30, 0);
    placement_loaded(&c, n, moved, to, false);
    placement_defrag_done(n);
    assert_int_equal(placement_cycles(n), 0);
    placement_device_free(&c, n, f, 4, &max);
    assert_int_equal(max, 4000);
    placement_assess(&c, &reg, big, n, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_CAN_LOAD);
    assert_false(v.needs_evict);
    catalogue_free(&c);
    registry_free(&reg);
    placement_reset();
}

static void test_eviction_strategies(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct node *n = add_node(&reg, "n", 1, 10000, true);
    n->labels = xcalloc(1, sizeof *n->labels);
    n->labels[0].key = xstrdup("tier");
    n->labels[0].value = xstrdup("big");
    n->n_labels = 1;
    struct node *plain = add_node(&reg, "plain", 1, 10000, true);
    cat(&c, "small-old", 0, 2000, 0, false);
    cat(&c, "large-new", 0, 6000, 0, false);
    cat(&c, "hot", 0, 2000, 0, false);
    struct cat_model *want = cat(&c, "want", 0, 2000, 0, false);
    struct node *both[] = {n, plain};
    for (int i = 0; i < 2; i++) {
        load(both[i], "small-old", 10, 0);
        load(both[i], "hot", 20, 0);
        load(both[i], "large-new", 30, 0);
    }
    /* "hot" is used at every pass, the others once */
    placement_observe(&reg);
    for (int t = 0; t < 5; t++) {
        node_model_find(n, strv_from_cstr("hot"))->last_used_ms = 100 + (uint64_t)t;
        node_model_find(plain, strv_from_cstr("hot"))->last_used_ms = 100 + (uint64_t)t;
        placement_observe(&reg);
    }
    assert_true(placement_uses(n, "hot") > placement_uses(n, "small-old"));
    const char *plan[8];
    size_t k;
    bool busy;
    /* lru (default): the least recently used first */
    assert_true(placement_evict_plan_for(&c, &reg, n, want, NOW, plan, 8, &k, &busy));
    assert_int_equal(k, 1);
    assert_string_equal(plan[0], "small-old");
    /* largest idle for tier=big, lfu elsewhere */
    char why[200];
    assert_int_equal(placement_set_eviction("lfu; tier=big:largest_idle", why, sizeof why), 0);
    assert_int_equal(placement_eviction_for(n), PLACE_EVICT_LARGEST_IDLE);
    assert_int_equal(placement_eviction_for(plain), PLACE_EVICT_LFU);
    assert_true(placement_evict_plan_for(&c, &reg, n, want, NOW, plan, 8, &k, &busy));
    assert_int_equal(k, 1);
    assert_string_equal(plan[0], "large-new");
    assert_true(placement_evict_plan_for(&c, &reg, plain, want, NOW, plan, 8, &k, &busy));
    assert_int_equal(k, 1);
    assert_string_not_equal(plan[0], "hot"); /* the least used goes, not the hot one */
    assert_int_equal(placement_set_eviction("mru", why, sizeof why), GW_E_INVALID);
    assert_int_equal(placement_eviction_for(n), PLACE_EVICT_LRU); /* a bad value resets */
    assert_int_equal(placement_set_eviction("lru; tier:lfu", why, sizeof why), GW_E_INVALID);
    catalogue_free(&c);
    registry_free(&reg);
    placement_reset();
}

static void test_max_per_node(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct catalogue c = {0};
    struct node *n = add_node(&reg, "n", 1, 10000, true);
    disk(n, "m other");
    struct cat_model *m = cat(&c, "m", 0, 3000, 0, false);
    m->max_per_node = 2;
    cat(&c, "other", 0, 3000, 0, true); /* pinned: never evicted */
    load(n, "other", 5, 0);
    load(n, "m", 10, 0);
    placement_loaded(&c, n, "m", -1, false);
    assert_int_equal(placement_replicas_on(n, "m"), 1);
    struct place_verdict v;
    /* an idle replica: the node serves it, no second one */
    placement_assess(&c, &reg, m, n, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_LOADED);
    /* every replica busy, below the per-node maximum, room: one more may go there */
    node_model_find(n, strv_from_cstr("m"))->inflight = 1;
    placement_assess(&c, &reg, m, n, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_CAN_LOAD);
    assert_true(v.adds_replica);
    struct place_pick pk;
    placement_pick(&c, &reg, m, NOW, NULL, NULL, &pk);
    assert_ptr_equal(pk.node, n);
    placement_loaded(&c, n, "m", -1, true);
    assert_int_equal(placement_replicas_on(n, "m"), 2);
    assert_int_equal(placement_replicas(&reg, "m", NOW), 2);
    assert_int_equal(placement_used_mb(&c, n), 9000); /* 2 x 3000 + 3000 */
    /* at the maximum and busy: "loaded", never full (no evict-and-retry loop: seed-003) */
    node_model_find(n, strv_from_cstr("m"))->inflight = 5;
    placement_assess(&c, &reg, m, n, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_LOADED);
    placement_pick(&c, &reg, m, NOW, NULL, NULL, &pk);
    assert_null(pk.node);
    assert_int_equal(pk.why, PLACE_NONE_HELD);
    /* a third load is refused by the record too */
    placement_loaded(&c, n, "m", -1, true);
    assert_int_equal(placement_replicas_on(n, "m"), 2);
    /* below the maximum but no room (the pinned one stays): still "loaded", not "full" */
    m->max_per_node = 3;
    placement_assess(&c, &reg, m, n, NOW, NULL, NULL, &v);
    assert_int_equal(v.state, PST_LOADED);
    /* unloaded: the record goes with it */
    registry_model_unloaded(n, strv_from_cstr("m"));
    assert_int_equal(placement_replicas_on(n, "m"), 0);
    assert_int_equal(placement_used_mb(&c, n), 3000);
    catalogue_free(&c);
    registry_free(&reg);
    placement_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feasibility),
        cmocka_unit_test(test_device_constraints),
        cmocka_unit_test(test_per_device_fit_and_defrag),
        cmocka_unit_test(test_eviction_strategies),
        cmocka_unit_test(test_max_per_node),
        cmocka_unit_test(test_evict_lru_idle_only),
        cmocka_unit_test(test_evict_never_pinned_or_min_replicas),
        cmocka_unit_test(test_pick_cold),
        cmocka_unit_test(test_pick_only_nodes_that_can_load),
        cmocka_unit_test(test_backoff_per_pair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
