/* Registry transitions (DESIGN §3, docs/gateway.md): admin intent with causes, liveness reset,
 * rise/fall for never-healthy nodes, the exclusion guard per model, ejection doubling and its
 * cap, auto recovery, marks and what ends them, busy AIMD and the trickle, Ollama's ":latest"
 * and tombstones. test_router.c covers the router's view; this file covers the state rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/log.h"
#include "gw/registry.h"

static struct node *add_kind(struct registry *reg, const char *name, int port, enum node_kind kind,
                             const char *const *models, size_t n_models)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct node *n = NULL;
    assert_int_equal(registry_add(reg, name, url, kind, NULL, &n, NULL), 0);
    struct strv ids[8];
    assert_true(n_models <= 8);
    for (size_t i = 0; i < n_models; i++) ids[i] = strv_from_cstr(models[i]);
    if (n_models) registry_set_models(n, ids, n_models);
    return n;
}

static struct node *add1(struct registry *reg, const char *name, int port, const char *model)
{
    const char *m[] = {model};
    return add_kind(reg, name, port, NODE_KIND_OPENAI, m, model ? 1 : 0);
}

static void rise(struct registry *reg, struct node *n, uint64_t now_ms)
{
    for (unsigned i = 0; i < reg->cfg.rise; i++) registry_probe_ok(reg, n, now_ms);
    assert_int_equal(n->live, LIVE_HEALTHY);
}

static struct node_model *model_of(struct node *n, const char *id)
{
    struct node_model *m = node_model_find(n, strv_from_cstr(id));
    assert_non_null(m);
    return m;
}

static void test_admin_intent(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add1(&reg, "a", 9001, "m");
    rise(&reg, a, 10);
    assert_int_equal(a->admin, ADMIN_APPROVED);
    assert_true(node_is_routable(&reg, a, 10));

    a->dirty = false;
    uint64_t gen = registry_generation;
    registry_set_admin(&reg, a, ADMIN_DRAINING, "admin drain");
    assert_int_equal(a->admin, ADMIN_DRAINING);
    assert_true(a->dirty);
    assert_true(registry_generation != gen);
    /* draining: alive, but takes nothing new, and is not a panic candidate either */
    assert_true(node_is_alive(&reg, a, 10));
    assert_false(node_is_routable(&reg, a, 10));
    assert_false(node_is_panic_candidate(a));

    /* the same intent again is no change: nothing dirtied, nothing bumped */
    a->dirty = false;
    gen = registry_generation;
    registry_set_admin(&reg, a, ADMIN_DRAINING, "again");
    assert_false(a->dirty);
    assert_int_equal(registry_generation, gen);

    registry_set_admin(&reg, a, ADMIN_PENDING, "join");
    assert_false(node_is_routable(&reg, a, 10));
    registry_set_admin(&reg, a, ADMIN_APPROVED, "approve");
    assert_true(node_is_routable(&reg, a, 10));
    /* admin intent never touches liveness or the fault record */
    assert_int_equal(a->live, LIVE_HEALTHY);
    assert_string_equal(node_admin_name(a->admin), "approved");
    registry_free(&reg);
}

/* A new address or identity: a new node as far as probes and faults go. */
static void test_reset_liveness(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add1(&reg, "a", 9001, "m");
    struct node *b = add1(&reg, "b", 9002, "m");
    rise(&reg, a, 10);
    rise(&reg, b, 10);
    for (int i = 0; i < 3; i++) registry_record_fault(&reg, a, 100, "test");
    assert_true(a->excluded);
    registry_record_success(&reg, b, 100);

    registry_reset_liveness(&reg, a, "new url");
    assert_int_equal(a->live, LIVE_UNKNOWN);
    assert_false(a->ever_healthy);
    assert_false(a->excluded);
    assert_int_equal(a->consecutive_faults, 0);
    assert_int_equal(a->ejections, 0);
    assert_int_equal(a->last_success_ms, 0);
    assert_true(a->dirty);
    /* never healthy again: out until it rises, even with a recent success on record */
    registry_record_success(&reg, a, 200);
    assert_false(node_is_routable(&reg, a, 200));
    assert_false(node_is_panic_candidate(a));
    /* one good probe is not a rise: the streak was forgotten too */
    registry_probe_ok(&reg, a, 300);
    assert_int_equal(a->live, LIVE_UNKNOWN);
    registry_probe_ok(&reg, a, 310);
    assert_true(node_is_routable(&reg, a, 310));
    registry_free(&reg);
}

/* Static nodes start unknown; they receive nothing until `rise` good probes, and failures
 * before that take them to unhealthy after `fall`, never to healthy. */
static void test_never_healthy_rise_fall(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add1(&reg, "a", 9001, "m");
    assert_int_equal(a->live, LIVE_UNKNOWN);
    assert_false(node_is_routable(&reg, a, 0));
    /* a node never healthy is not alive by traffic either */
    a->streams_active = 1;
    a->last_progress_ms = 5;
    assert_false(node_is_alive(&reg, a, 5));
    a->streams_active = 0;

    assert_false(registry_probe_failed(&reg, a, 10, "refused"));
    assert_false(registry_probe_failed(&reg, a, 20, "refused"));
    assert_int_equal(a->live, LIVE_UNKNOWN);
    assert_true(registry_probe_failed(&reg, a, 30, "refused"));
    assert_int_equal(a->live, LIVE_UNHEALTHY);
    assert_string_equal(a->last_probe_error, "refused");
    assert_false(a->ever_healthy);

    /* from unhealthy it still needs `rise` good probes in a row; a failure resets the run */
    assert_false(registry_probe_ok(&reg, a, 40));
    registry_probe_failed(&reg, a, 50, "refused");
    assert_false(registry_probe_ok(&reg, a, 60));
    assert_int_equal(a->live, LIVE_UNHEALTHY);
    assert_true(registry_probe_ok(&reg, a, 70));
    assert_int_equal(a->live, LIVE_HEALTHY);
    assert_true(a->ever_healthy);
    assert_string_equal(a->last_probe_error, "");

    /* registry_set_unhealthy takes it out at once, whatever the streak */
    registry_set_unhealthy(&reg, a, "op refused");
    assert_int_equal(a->live, LIVE_UNHEALTHY);
    assert_false(node_is_routable(&reg, a, 80));
    assert_true(node_is_panic_candidate(a)); /* once healthy: panic routing may try it */
    /* and the next good probe alone does not bring it back (rise 2) */
    registry_probe_ok(&reg, a, 90);
    assert_int_equal(a->live, LIVE_UNHEALTHY);
    registry_free(&reg);
}

/* max_excluded_percent is checked per model the node serves: a node whose other model has
 * few replicas stays in, even when the first model has plenty. */
static void test_exclusion_guard_per_model(void **state)
{
    (void)state;
    struct registry_config cfg;
    registry_config_defaults(&cfg);
    cfg.fault_threshold = 1;
    struct registry reg;
    registry_init(&reg, &cfg);
    const char *both[] = {"m1", "m2"};
    struct node *a = add_kind(&reg, "a", 9001, NODE_KIND_OPENAI, both, 2);
    struct node *b = add1(&reg, "b", 9002, "m1");
    struct node *c = add1(&reg, "c", 9003, "m1");
    struct node *d = add1(&reg, "d", 9004, "m2");
    struct node *e = add1(&reg, "e", 9005, "m2");
    struct node *all[] = {a, b, c, d, e};
    for (size_t i = 0; i < 5; i++) rise(&reg, all[i], 10);

    /* m2: a, d, e. Excluding d (1 of 3) is fine. */
    assert_true(registry_record_fault(&reg, d, 100, "t"));
    /* a: m1 would be 1 of 3 (fine) but m2 would be 2 of 3 (> 50%): refused */
    assert_false(registry_record_fault(&reg, a, 100, "t"));
    assert_false(a->excluded);
    assert_true(node_is_routable(&reg, a, 100));
    /* refused, but the fault still counts (the record stays true) */
    assert_int_equal(a->consecutive_faults, 1);
    assert_int_equal(a->faults_total, 1);
    /* b only serves m1: 1 of 3 */
    assert_true(registry_record_fault(&reg, b, 100, "t"));
    /* c would make m1 2 of 3 */
    assert_false(registry_record_fault(&reg, c, 100, "t"));

    /* a removed node does not count as a replica */
    registry_recover(&reg, d, "t");
    registry_set_admin(&reg, e, ADMIN_REMOVED, "t");
    /* m2 is now a and d: a would be 1 of 2 = 50%, allowed; m1 is b(excluded), a, c: 2 of 3 */
    assert_false(registry_record_fault(&reg, a, 100, "t"));
    registry_recover(&reg, b, "t");
    assert_true(registry_record_fault(&reg, a, 100, "t"));
    registry_free(&reg);
}

/* A node without inventory is judged against the whole fleet. */
static void test_exclusion_guard_fleet(void **state)
{
    (void)state;
    struct registry_config cfg;
    registry_config_defaults(&cfg);
    cfg.fault_threshold = 1;
    cfg.max_excluded_percent = 34;
    struct registry reg;
    registry_init(&reg, &cfg);
    struct node *a = add1(&reg, "a", 9001, NULL);
    struct node *b = add1(&reg, "b", 9002, NULL);
    struct node *c = add1(&reg, "c", 9003, NULL);
    /* 1 of 3 = 33% <= 34% */
    assert_true(registry_record_fault(&reg, a, 100, "t"));
    /* 2 of 3 */
    assert_false(registry_record_fault(&reg, b, 100, "t"));
    assert_false(registry_record_fault(&reg, c, 100, "t"));
    /* a lone node is never excluded at 50% either: it is the whole fleet */
    struct registry one;
    registry_init(&one, NULL);
    struct node *x = add1(&one, "x", 9001, "m");
    for (int i = 0; i < 10; i++) assert_false(registry_record_fault(&one, x, 100, "t"));
    assert_false(x->excluded);
    assert_int_equal(x->consecutive_faults, 10);
    registry_free(&one);
    registry_free(&reg);
}

/* 30 s × 2^(k−1), capped at 5 min; auto recovery only after the ejection time; a fault while
 * excluded does not eject again. */
static void test_ejection_doubling_and_cap(void **state)
{
    (void)state;
    struct registry_config cfg;
    registry_config_defaults(&cfg);
    assert_true(cfg.auto_recover); /* on by default */
    cfg.fault_threshold = 1;
    struct registry reg;
    registry_init(&reg, &cfg);
    struct node *a = add1(&reg, "a", 9001, "m");
    add1(&reg, "b", 9002, "m");
    rise(&reg, a, 0);
    static const uint64_t want[] = {30000, 60000, 120000, 240000, 300000, 300000};
    uint64_t now = 1000;
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        assert_true(registry_record_fault(&reg, a, now, "t"));
        assert_int_equal(a->ejections, k + 1);
        assert_int_equal(a->excluded_at_ms, now);
        assert_int_equal(a->eject_until_ms, now + want[k]);
        /* more faults while out: no new ejection, the clock is not pushed */
        assert_false(registry_record_fault(&reg, a, now + 10, "t"));
        assert_int_equal(a->ejections, k + 1);
        /* a good probe just before the time: still out */
        registry_probe_ok(&reg, a, now + want[k] - 1);
        assert_true(a->excluded);
        assert_true(registry_probe_ok(&reg, a, now + want[k]));
        assert_false(a->excluded);
        assert_int_equal(a->consecutive_faults, 0);
        assert_true(node_is_routable(&reg, a, now + want[k]));
        now += want[k] + 1000;
    }
    /* recover resets the doubling */
    registry_recover(&reg, a, "admin");
    assert_true(registry_record_fault(&reg, a, now, "t"));
    assert_int_equal(a->eject_until_ms, now + 30000);
    registry_free(&reg);
}

static void test_auto_recover_off(void **state)
{
    (void)state;
    struct registry_config cfg;
    registry_config_defaults(&cfg);
    cfg.auto_recover = false;
    struct registry reg;
    registry_init(&reg, &cfg);
    struct node *a = add1(&reg, "a", 9001, "m");
    add1(&reg, "b", 9002, "m");
    rise(&reg, a, 0);
    for (int i = 0; i < 3; i++) registry_record_fault(&reg, a, 1000, "t");
    assert_true(a->excluded);
    for (int i = 0; i < 5; i++) registry_probe_ok(&reg, a, 1000000 + (uint64_t)i);
    assert_true(a->excluded);
    assert_false(node_is_routable(&reg, a, 1000010));
    registry_recover(&reg, a, "admin");
    assert_true(node_is_routable(&reg, a, 1000010));
    registry_free(&reg);
}

/* A stored exclusion restarts its ejection time from now, with the stored doubling. */
static void test_restore(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add1(&reg, "a", 9001, "m");
    registry_restore(&reg, a, ADMIN_DRAINING, true, 3, 3, 5000);
    assert_int_equal(a->admin, ADMIN_DRAINING);
    assert_true(a->excluded);
    assert_int_equal(a->consecutive_faults, 3);
    assert_int_equal(a->eject_until_ms, 5000 + 120000);
    registry_restore(&reg, a, ADMIN_APPROVED, true, 3, 9, 5000);
    assert_int_equal(a->eject_until_ms, 5000 + 300000);
    registry_free(&reg);
}

/* Capability marks: scoped to (node, model, capability), ended early only by a success that
 * used that capability, doubling like ejections, cleared by recover. */
static void test_capability_marks(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    const char *two[] = {"m", "n"};
    struct node *a = add_kind(&reg, "a", 9001, NODE_KIND_OPENAI, two, 2);
    struct node *b = add1(&reg, "b", 9002, "m");
    struct node_model *am = model_of(a, "m");
    struct node_model *an = model_of(a, "n");
    struct node_model *bm = model_of(b, "m");

    registry_mark_capability(&reg, a, am, CAP_TOOLS, 1000, "does not support tools");
    assert_int_equal(am->caps_absent, CAP_TOOLS);
    assert_int_equal(model_marks_block(am, CAP_CHAT | CAP_TOOLS, 1000), CAP_TOOLS);
    /* only that model, only that node, only that capability */
    assert_int_equal(model_marks_block(am, CAP_CHAT, 1000), 0);
    assert_int_equal(model_marks_block(an, CAP_CHAT | CAP_TOOLS, 1000), 0);
    assert_int_equal(model_marks_block(bm, CAP_CHAT | CAP_TOOLS, 1000), 0);
    /* a second mark while the first stands changes nothing (count, lifetime) */
    registry_mark_capability(&reg, a, am, CAP_TOOLS, 2000, "again");
    assert_int_equal(am->marks->cap[3].count, 1);
    assert_int_equal(am->marks->cap[3].until_ms, 1000 + 30000);
    assert_string_equal(am->marks->cap[3].cause, "does not support tools");
    /* a bit that is not one capability is ignored */
    registry_mark_capability(&reg, a, am, CAP_CHAT | CAP_VISION, 1000, "x");
    registry_mark_capability(&reg, a, NULL, CAP_CHAT, 1000, "x");
    assert_int_equal(am->caps_absent, CAP_TOOLS);

    /* a success that did not use tools contradicts nothing */
    registry_marks_contradicted(&reg, a, am, CAP_CHAT);
    assert_int_equal(model_marks_block(am, CAP_TOOLS, 3000), CAP_TOOLS);
    /* a success with tools does */
    registry_marks_contradicted(&reg, a, am, CAP_CHAT | CAP_TOOLS);
    assert_int_equal(am->caps_absent, 0);
    assert_int_equal(model_marks_block(am, CAP_TOOLS, 3000), 0);
    registry_marks_contradicted(&reg, a, NULL, CAP_ALL); /* no model: no crash */

    /* the count survives contradiction: the next mark lives twice as long */
    registry_mark_capability(&reg, a, am, CAP_TOOLS, 10000, "again");
    assert_int_equal(am->marks->cap[3].until_ms, 10000 + 60000);
    registry_mark_capability(&reg, a, am, CAP_VISION, 10000, "no images");
    assert_int_equal(model_marks_block(am, CAP_ALL, 10000), CAP_TOOLS | CAP_VISION);
    /* contradicting vision leaves tools */
    registry_marks_contradicted(&reg, a, am, CAP_VISION);
    assert_int_equal(model_marks_block(am, CAP_ALL, 10000), CAP_TOOLS);

    /* recover clears every mark and the doubling */
    registry_recover(&reg, a, "admin");
    assert_int_equal(model_marks_block(am, CAP_ALL, 10000), 0);
    assert_null(am->marks);
    registry_mark_capability(&reg, a, am, CAP_TOOLS, 20000, "x");
    assert_int_equal(am->marks->cap[3].until_ms, 20000 + 30000);
    registry_free(&reg);
}

/* Inventory marks block every capability until a probe lists the model again or a request on
 * it succeeds; a probe that drops the model drops the entry and its marks. */
static void test_inventory_marks(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    const char *two[] = {"m", "n"};
    struct node *a = add_kind(&reg, "a", 9001, NODE_KIND_OPENAI, two, 2);
    struct node_model *am = model_of(a, "m");

    registry_mark_inventory_miss(&reg, a, am, 1000, "status 404: model not found");
    assert_true(am->inventory_miss);
    assert_int_equal(model_marks_block(am, CAP_CHAT, 1000), CAP_CHAT);
    assert_true(model_marks_block(am, 0, 1000) != 0);
    /* it does not expire with time */
    assert_int_equal(model_marks_block(am, CAP_CHAT, 1000 + 3600 * 1000), CAP_CHAT);
    assert_int_equal(model_marks_block(model_of(a, "n"), CAP_CHAT, 1000), 0);

    /* the same list again (the probe still lists it): the mark is contradicted */
    struct strv same[] = {STRV_LIT("n"), STRV_LIT("m")};
    uint64_t epoch = registry_models_epoch;
    registry_set_models(a, same, 2);
    assert_int_equal(registry_models_epoch, epoch); /* the array (and the index) stays */
    am = model_of(a, "m");
    assert_false(am->inventory_miss);
    assert_int_equal(model_marks_block(am, CAP_CHAT, 2000), 0);

    /* a changed list that still has m: contradicted too, while capability marks stay */
    registry_mark_inventory_miss(&reg, a, am, 3000, "404");
    registry_mark_capability(&reg, a, am, CAP_TOOLS, 3000, "no tools");
    struct strv grown[] = {STRV_LIT("m"), STRV_LIT("n"), STRV_LIT("o")};
    registry_set_models(a, grown, 3);
    am = model_of(a, "m");
    assert_false(am->inventory_miss);
    assert_int_equal(model_marks_block(am, CAP_CHAT | CAP_TOOLS, 3000), CAP_TOOLS);

    /* a success on the model contradicts an inventory mark */
    registry_mark_inventory_miss(&reg, a, am, 4000, "404");
    registry_marks_contradicted(&reg, a, am, CAP_CHAT);
    assert_false(am->inventory_miss);
    assert_int_equal(model_marks_block(am, CAP_TOOLS, 4000), CAP_TOOLS);

    /* dropped and listed again: a new entry, no marks */
    struct strv without[] = {STRV_LIT("n")};
    registry_set_models(a, without, 1);
    assert_null(node_model_find(a, STRV_LIT("m")));
    registry_set_models(a, grown, 3);
    am = model_of(a, "m");
    assert_int_equal(model_marks_block(am, CAP_ALL, 4000), 0);

    /* recover clears an inventory mark */
    registry_mark_inventory_miss(&reg, a, am, 5000, "404");
    registry_recover(&reg, a, "admin");
    assert_int_equal(model_marks_block(model_of(a, "m"), CAP_CHAT, 5000), 0);
    registry_free(&reg);
}

/* AIMD: a busy answer halves from the in-flight count at most once per typical latency; the
 * limit grows by one per limit's worth of successes at the limit and disappears past its cap;
 * only busy answers in a row, at least as many as were in flight, cool the node. */
static void test_busy_aimd(void **state)
{
    (void)state;
    struct registry_config cfg;
    registry_config_defaults(&cfg);
    cfg.max_conc_limit = 3;
    struct registry reg;
    registry_init(&reg, &cfg);
    struct node *a = add1(&reg, "a", 9001, "m");
    rise(&reg, a, 0);

    /* a lone busy answer (busy share low) lowers nothing */
    registry_node_busy(&reg, a, 5, 1, 500);
    assert_int_equal(a->conc_limit, 0);
    registry_node_ok(&reg, a, 1, 0);
    /* busy answers are most of its recent ones: over capacity */
    a->busy_share_pm = 1000;
    a->latency_ewma_ms = 0;
    registry_node_busy(&reg, a, 5, 1, 1000);
    assert_int_equal(a->conc_limit, 2);
    assert_int_equal(a->busy_total, 2);
    /* within the hold (no latency learned: 100 ms) no second decrease */
    registry_node_busy(&reg, a, 2, 1, 1099);
    assert_int_equal(a->conc_limit, 2);
    /* two busy answers in a row with 5 in flight do not cool it (it had 5 in flight) */
    assert_false(node_is_cooled(a, 1099));
    /* after the hold: halves again, from the limit (smaller than in-flight) */
    registry_node_ok(&reg, a, 1, 50); /* resets the busy run; latency 51 ms */
    assert_int_equal(a->consecutive_busy, 0);
    registry_node_busy(&reg, a, 9, 1, 1120); /* 120 ms after the last decrease > 51 ms */
    assert_int_equal(a->conc_limit, 1);
    /* never below 1 */
    registry_node_busy(&reg, a, 1, 1, 2000);
    assert_int_equal(a->conc_limit, 1);

    /* saturated at the limit, free below it */
    a->inflight = 1;
    assert_true(node_is_saturated(a, 2000));
    a->inflight = 0;
    assert_false(node_is_saturated(a, 2000));

    /* additive increase: one success at limit 1 makes 2; two at limit 2 make 3; below the
     * limit nothing grows */
    registry_node_ok(&reg, a, 1, 10);
    assert_int_equal(a->conc_limit, 2);
    registry_node_ok(&reg, a, 1, 10);
    registry_node_ok(&reg, a, 1, 10);
    assert_int_equal(a->conc_limit, 2);
    registry_node_ok(&reg, a, 2, 10);
    assert_int_equal(a->conc_limit, 2);
    registry_node_ok(&reg, a, 2, 10);
    assert_int_equal(a->conc_limit, 3);
    /* past max_conc_limit: no limit at all */
    for (int i = 0; i < 3; i++) registry_node_ok(&reg, a, 3, 10);
    assert_int_equal(a->conc_limit, 0);
    a->inflight = 1000;
    assert_false(node_is_saturated(a, 3000));
    registry_free(&reg);
}

/* Cooled: one request per trickle interval while nothing is in flight; the first success ends
 * the cooling; the expected wait names the trickle time. */
static void test_cooling_and_trickle(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add1(&reg, "a", 9001, "m");
    rise(&reg, a, 0);

    /* with 4 in flight, 3 busy answers in a row are not "busy to everything" */
    for (int i = 0; i < 3; i++) registry_node_busy(&reg, a, 4, 5, 1000);
    assert_false(node_is_cooled(a, 1000));
    registry_node_busy(&reg, a, 4, 5, 1000);
    assert_true(node_is_cooled(a, 1000));
    assert_int_equal(a->cooled_until_ms, 1000 + 5000);
    assert_int_equal(a->conc_limit, 1);

    /* no trickle due yet */
    assert_true(node_is_saturated(a, 1500));
    assert_int_equal(registry_expected_wait_ms(a, 1500), 500);
    /* due: one request may go */
    assert_false(node_is_saturated(a, 2000));
    registry_node_sent(&reg, a, 2000);
    assert_int_equal(a->next_trickle_ms, 3000);
    assert_true(node_is_saturated(a, 2001)); /* spent, even with nothing in flight */
    a->inflight = 1;
    assert_true(node_is_saturated(a, 3500)); /* due, but one is out already */
    a->inflight = 0;
    /* a send to a node that is not cooled does not start a trickle */
    struct node *b = add1(&reg, "b", 9002, "m");
    registry_node_sent(&reg, b, 2000);
    assert_int_equal(b->next_trickle_ms, 0);

    /* a later, shorter Retry-After never shortens the cooling; the cap applies */
    registry_node_busy(&reg, a, 1, 1, 3000);
    assert_int_equal(a->cooled_until_ms, 6000);
    registry_node_busy(&reg, a, 1, 3600, 3000);
    assert_int_equal(a->cooled_until_ms, 3000 + 60000);

    /* the first success ends it */
    registry_node_ok(&reg, a, 1, 40);
    assert_false(node_is_cooled(a, 3001));
    assert_int_equal(a->consecutive_busy, 0);
    a->inflight = 1; /* not cooled: the wait is its typical latency (first: 40 + 1) */
    assert_int_equal(registry_expected_wait_ms(a, 3001), 41);
    a->inflight = 0;

    /* recover forgets the busy state */
    for (int i = 0; i < 3; i++) registry_node_busy(&reg, a, 1, 5, 4000);
    assert_true(node_is_cooled(a, 4000));
    registry_recover(&reg, a, "admin");
    assert_false(node_is_cooled(a, 4000));
    assert_int_equal(a->conc_limit, 0);
    assert_false(node_is_saturated(a, 4000));
    registry_free(&reg);
}

/* Ollama's "x" and "x:latest" are one model on ollama nodes only; the index gives the bare
 * name as an alias unless some node lists it itself. */
static void test_ollama_latest_alias(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    const char *both[] = {"x", "x:latest"};
    struct node *o = add_kind(&reg, "o", 9001, NODE_KIND_OLLAMA, both, 2);
    const char *lat[] = {"y:latest"};
    struct node *p = add_kind(&reg, "p", 9002, NODE_KIND_OLLAMA, lat, 1);
    struct node *v = add_kind(&reg, "v", 9003, NODE_KIND_VLLM, lat, 1);

    /* the exact name first */
    assert_string_equal(node_model_find(o, STRV_LIT("x"))->id, "x");
    assert_string_equal(node_model_find(o, STRV_LIT("x:latest"))->id, "x:latest");
    assert_string_equal(node_model_find(p, STRV_LIT("y"))->id, "y:latest");
    /* not for other engines, and not for other tags */
    assert_null(node_model_find(v, STRV_LIT("y")));
    assert_null(node_model_find(p, STRV_LIT("y:lat")));
    assert_null(node_model_find(p, STRV_LIT("y:7b")));

    /* o lists both: one slot for "x", which is not an alias */
    const struct model_nodes *e = registry_model_nodes(&reg, STRV_LIT("x"));
    assert_non_null(e);
    assert_int_equal(e->n, 1);
    assert_false(e->alias);
    /* "y" reaches p only (v is vLLM), as an alias */
    e = registry_model_nodes(&reg, STRV_LIT("y"));
    assert_non_null(e);
    assert_int_equal(e->n, 1);
    assert_ptr_equal(e->slots[0].node, p);
    assert_true(e->alias);
    e = registry_model_nodes(&reg, STRV_LIT("y:latest"));
    assert_int_equal(e->n, 2);
    assert_false(e->alias);

    /* a later node that lists "y" itself makes it a real entry */
    struct node *q = add1(&reg, "q", 9004, "y");
    e = registry_model_nodes(&reg, STRV_LIT("y"));
    assert_int_equal(e->n, 2);
    assert_false(e->alias);
    assert_ptr_equal(e->slots[1].node, q);
    registry_free(&reg);
}

/* A removed node keeps its name (admin API) but loses everything else. */
static void test_tombstone(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = NULL;
    assert_int_equal(
        registry_add(&reg, "a", "http://127.0.0.1:9001", NODE_KIND_OPENAI, "key", &a, NULL), 0);
    struct strv id = STRV_LIT("m");
    registry_set_models(a, &id, 1);
    registry_set_disk(a, &id, 1);
    assert_int_equal(registry_set_label(a, "gpu", "a100"), 0);
    registry_set_str(&a->secret_hash, "abc");
    rise(&reg, a, 0);
    registry_record_fault(&reg, a, 10, "t");
    assert_non_null(registry_model_nodes(&reg, id));

    registry_tombstone(a);
    assert_ptr_equal(registry_find(&reg, STRV_LIT("a")), a);
    assert_int_equal(a->admin, ADMIN_REMOVED);
    assert_false(node_is_routable(&reg, a, 20));
    assert_false(node_is_panic_candidate(a));
    assert_int_equal(a->n_models, 0);
    assert_false(a->inventory_known);
    assert_false(node_has_on_disk(a, id));
    assert_int_equal(a->n_labels, 0);
    assert_null(a->secret_hash);
    assert_null(a->api_key);
    assert_int_equal(a->consecutive_faults, 0);
    assert_false(a->ever_healthy);
    assert_true(a->dirty);
    /* the model index forgets it */
    assert_null(registry_model_nodes(&reg, id));
    /* the name stays taken */
    assert_int_equal(
        registry_add(&reg, "a", "http://127.0.0.1:9002", NODE_KIND_OPENAI, NULL, NULL, NULL),
        GW_E_INVALID);
    registry_free(&reg);
}

int main(void)
{
    log_set_level(LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_intent),
        cmocka_unit_test(test_reset_liveness),
        cmocka_unit_test(test_never_healthy_rise_fall),
        cmocka_unit_test(test_exclusion_guard_per_model),
        cmocka_unit_test(test_exclusion_guard_fleet),
        cmocka_unit_test(test_ejection_doubling_and_cap),
        cmocka_unit_test(test_auto_recover_off),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_capability_marks),
        cmocka_unit_test(test_inventory_marks),
        cmocka_unit_test(test_busy_aimd),
        cmocka_unit_test(test_cooling_and_trickle),
        cmocka_unit_test(test_ollama_latest_alias),
        cmocka_unit_test(test_tombstone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
