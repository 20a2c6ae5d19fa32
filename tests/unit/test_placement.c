/* Table-driven tests for placement (DESIGN §6): feasibility, VRAM accounting, the eviction
 * choice and the cold-load choice. */
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
    return n;
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
    assert_ptr_equal(placement_pick_cold(&c, &reg, one, NOW, NULL, NULL, &evict, &why), roomy);
    /* a node that has the files beats a roomier one that would have to fetch them */
    struct node *has = add_node(&reg, "has", 1, 20000, true);
    struct strv ids[1] = {STRV_LIT("one-dev")};
    registry_set_disk(has, ids, 1);
    assert_ptr_equal(placement_pick_cold(&c, &reg, one, NOW, NULL, NULL, &evict, &why), has);
    /* a skipped node (a load running there) is passed over */
    assert_ptr_equal(placement_pick_cold(&c, &reg, one, NOW, skip_named, "has", &evict, &why),
                     roomy);
    (void)small;
    catalogue_free(&c);
    registry_free(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feasibility),
        cmocka_unit_test(test_evict_lru_idle_only),
        cmocka_unit_test(test_evict_never_pinned_or_min_replicas),
        cmocka_unit_test(test_pick_cold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
