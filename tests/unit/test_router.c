/* Router and registry rules: least in-flight, round-robin ties, the §5 reasons, exclusion
 * with max_excluded_percent, rise/fall debounce, streaming keeps a node alive, ejection
 * backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gw/catalogue.h"
#include "gw/config.h"
#include "gw/prefix_cache.h"
#include "gw/registry.h"
#include "gw/router.h"

static struct node *add(struct registry *reg, const char *name, int port, const char *model)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct node *n = NULL;
    assert_int_equal(registry_add(reg, name, url, NODE_KIND_OPENAI, NULL, &n, NULL), 0);
    if (model) {
        struct strv id = strv_from_cstr(model);
        registry_set_models(n, &id, 1);
    }
    return n;
}

static void make_healthy(struct registry *reg, struct node *n)
{
    for (unsigned i = 0; i < reg->cfg.rise; i++) registry_probe_ok(reg, n, 1000);
    assert_int_equal(n->live, LIVE_HEALTHY);
}

static struct route_result pick(struct registry *reg, const char *model, unsigned cap)
{
    struct route_query q = {.model = strv_from_cstr(model), .cap = cap, .now_ms = 5000};
    struct route_result r;
    router_pick(reg, &q, &r);
    return r;
}

static void test_least_inflight_and_round_robin(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add(&reg, "a", 9001, "m");
    struct node *b = add(&reg, "b", 9002, "m");
    struct node *c = add(&reg, "c", 9003, "m");
    make_healthy(&reg, a);
    make_healthy(&reg, b);
    make_healthy(&reg, c);
    /* ties rotate over all three */
    int seen[3] = {0};
    for (int i = 0; i < 6; i++) {
        struct route_result r = pick(&reg, "m", CAP_CHAT);
        assert_int_equal(r.status, ROUTE_OK);
        seen[r.node == a ? 0 : r.node == b ? 1 : 2]++;
    }
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 2);
    assert_int_equal(seen[2], 2);
    /* fewest in-flight wins */
    a->inflight = 3;
    c->inflight = 1;
    for (int i = 0; i < 4; i++) assert_ptr_equal(pick(&reg, "m", CAP_CHAT).node, b);
    registry_free(&reg);
}

/* max_per_node: a node running three replicas of the model shares its in-flight among them */
static void test_replicas_share_the_load(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add(&reg, "a", 9001, "m");
    struct node *b = add(&reg, "b", 9002, "m");
    make_healthy(&reg, a);
    make_healthy(&reg, b);
    a->inflight = 3;
    b->inflight = 2;
    for (int i = 0; i < 4; i++) assert_ptr_equal(pick(&reg, "m", CAP_CHAT).node, b);
    node_model_find(a, strv_from_cstr("m"))->replicas = 3; /* one each: less than b's two */
    for (int i = 0; i < 4; i++) assert_ptr_equal(pick(&reg, "m", CAP_CHAT).node, a);
    a->inflight = 6; /* two each: a tie with b, so both get picks */
    int seen_a = 0;
    for (int i = 0; i < 4; i++) seen_a += pick(&reg, "m", CAP_CHAT).node == a;
    assert_int_equal(seen_a, 2);
    registry_free(&reg);
}

static void test_reasons(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    /* empty fleet */
    assert_int_equal(pick(&reg, "m", CAP_CHAT).status, ROUTE_NO_HEALTHY_NODES);
    struct node *a = add(&reg, "a", 9001, "m");
    struct node *b = add(&reg, "b", 9002, "other");
    /* nodes exist, none ever healthy: retry shortly, never 404 */
    struct route_result r = pick(&reg, "m", CAP_CHAT);
    assert_int_equal(r.status, ROUTE_NO_HEALTHY_NODES);
    assert_int_equal(r.retry_after_s, 5);
    make_healthy(&reg, b);
    /* the node with the model is down, another is up: feasible_node_unhealthy */
    r = pick(&reg, "m", CAP_CHAT);
    assert_int_equal(r.status, ROUTE_FEASIBLE_UNHEALTHY);
    assert_int_equal(r.retry_after_s, 3);
    assert_int_equal(pick(&reg, "nope", CAP_CHAT).status, ROUTE_MODEL_NOT_FOUND);
    make_healthy(&reg, a);
    assert_ptr_equal(pick(&reg, "m", CAP_CHAT).node, a);
    /* a capability mark makes the only node a last resort, never takes it away */
    registry_mark_capability(&reg, a, node_model_find(a, strv_from_cstr("m")), CAP_CHAT, 4000,
                             "test");
    r = pick(&reg, "m", CAP_CHAT);
    assert_int_equal(r.status, ROUTE_OK);
    assert_int_equal(r.tier, TIER_MARKED);
    assert_int_equal(pick(&reg, "m", CAP_EMBEDDINGS).tier, TIER_NORMAL);
    registry_recover(&reg, a, "test");
    assert_int_equal(pick(&reg, "m", CAP_CHAT).tier, TIER_NORMAL);
    /* busy to everything (busy_cool_after answers in a row): capacity, Retry-After computed */
    for (unsigned i = 0; i < reg.cfg.busy_cool_after; i++) registry_node_busy(&reg, a, 1, 3, 4500);
    r = pick(&reg, "m", CAP_CHAT);
    assert_int_equal(r.status, ROUTE_CAPACITY);
    assert_int_equal(r.wait_ms, 500); /* its trickle request is due 1 s after it cooled */
    assert_int_equal(r.retry_after_s, 1);
    /* the trickle: one request, then none until the next interval */
    struct route_query tq = {.model = STRV_LIT("m"), .cap = CAP_CHAT, .now_ms = 5600};
    router_pick(&reg, &tq, &r);
    assert_int_equal(r.status, ROUTE_OK);
    registry_node_sent(&reg, a, 5600);
    router_pick(&reg, &tq, &r);
    assert_int_equal(r.status, ROUTE_CAPACITY);
    /* one success ends the cooling at once */
    registry_node_ok(&reg, a, 1, 10);
    assert_false(node_is_cooled(a, 5600));
    registry_recover(&reg, a, "test");
    /* draining and pending nodes take nothing new */
    a->admin = ADMIN_DRAINING;
    assert_int_equal(pick(&reg, "m", CAP_CHAT).status, ROUTE_FEASIBLE_UNHEALTHY);
    a->admin = ADMIN_PENDING;
    assert_int_equal(pick(&reg, "m", CAP_CHAT).status, ROUTE_FEASIBLE_UNHEALTHY);
    a->admin = ADMIN_APPROVED;
    /* tried nodes are skipped */
    struct node *tried[] = {a};
    struct route_query q = {
        .model = STRV_LIT("m"), .cap = CAP_CHAT, .tried = tried, .n_tried = 1, .now_ms = 5000};
    router_pick(&reg, &q, &r);
    assert_int_equal(r.status, ROUTE_EXHAUSTED);
    registry_free(&reg);
}

/* The model index follows every inventory change: a probe with a new list, a cold load, an
 * unload, a tombstone, a node added after the index was built; an unchanged list keeps the
 * model array; and over a larger fleet it lists exactly the nodes a scan would find. */
static void test_model_index(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add(&reg, "a", 9001, "m");
    make_healthy(&reg, a);
    assert_ptr_equal(pick(&reg, "m", CAP_CHAT).node, a);
    assert_int_equal(pick(&reg, "x", CAP_CHAT).status, ROUTE_MODEL_NOT_FOUND);
    /* the same list again (as every probe reports it) keeps the array */
    struct node_model *before = a->models;
    uint64_t epoch = registry_models_epoch;
    struct strv same = STRV_LIT("m");
    registry_set_models(a, &same, 1);
    assert_ptr_equal(a->models, before);
    assert_true(registry_models_epoch == epoch);
    /* a list with a repeat is not "the same" as a longer one */
    struct strv two[2] = {STRV_LIT("m"), STRV_LIT("x")};
    registry_set_models(a, two, 2);
    assert_ptr_equal(pick(&reg, "x", CAP_CHAT).node, a);
    struct strv rep[2] = {STRV_LIT("m"), STRV_LIT("m")};
    registry_set_models(a, rep, 2);
    assert_int_equal(a->n_models, 1);
    assert_int_equal(pick(&reg, "x", CAP_CHAT).status, ROUTE_MODEL_NOT_FOUND);
    /* a cold load and an unload */
    registry_model_loaded(a, STRV_LIT("y"), 100, 5000);
    assert_ptr_equal(pick(&reg, "y", CAP_CHAT).node, a);
    registry_model_unloaded(a, STRV_LIT("y"));
    assert_int_equal(pick(&reg, "y", CAP_CHAT).status, ROUTE_MODEL_NOT_FOUND);
    /* a node added after the index was built */
    struct node *b = add(&reg, "b", 9002, "z");
    make_healthy(&reg, b);
    assert_ptr_equal(pick(&reg, "z", CAP_CHAT).node, b);
    /* a tombstone drops the node's models */
    registry_tombstone(b);
    assert_null(registry_model_nodes(&reg, STRV_LIT("z")));
    assert_int_equal(pick(&reg, "z", CAP_CHAT).status, ROUTE_MODEL_NOT_FOUND);
    registry_free(&reg);

    /* 300 nodes, each listing 2 of 13 models: the index agrees with a scan */
    registry_init(&reg, NULL);
    char name[24], model[24], model2[24];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "n%d", i);
        snprintf(model, sizeof model, "model-%d", i % 13);
        snprintf(model2, sizeof model2, "model-%d", (i * 7 + 3) % 13);
        struct node *n = add(&reg, name, 10000 + i, model);
        struct strv ids[2] = {strv_from_cstr(model), strv_from_cstr(model2)};
        registry_set_models(n, ids, 2);
        make_healthy(&reg, n);
    }
    for (int k = 0; k < 13; k++) {
        snprintf(model, sizeof model, "model-%d", k);
        size_t want = 0;
        for (size_t i = 0; i < reg.n; i++)
            want += node_model_find(reg.nodes[i], strv_from_cstr(model)) != NULL;
        const struct model_nodes *mn = registry_model_nodes(&reg, strv_from_cstr(model));
        assert_non_null(mn);
        assert_int_equal(mn->n, want);
        for (size_t i = 0; i < mn->n; i++) {
            assert_ptr_equal(node_model_find(mn->slots[i].node, strv_from_cstr(model)),
                             mn->slots[i].model);
        }
        struct route_result r = pick(&reg, model, CAP_CHAT);
        assert_int_equal(r.status, ROUTE_OK);
        assert_non_null(node_model_find(r.node, strv_from_cstr(model)));
    }
    assert_null(registry_model_nodes(&reg, STRV_LIT("model-13")));
    registry_free(&reg);
}

static void test_debounce_and_streaming(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add(&reg, "a", 9001, "m");
    /* one good probe is not enough to rise */
    registry_probe_ok(&reg, a, 10);
    assert_int_not_equal(a->live, LIVE_HEALTHY);
    registry_probe_ok(&reg, a, 20);
    assert_int_equal(a->live, LIVE_HEALTHY);
    /* one or two misses keep it in; the third takes it out */
    registry_probe_failed(&reg, a, 30, "timeout");
    registry_probe_failed(&reg, a, 40, "timeout");
    assert_true(node_is_routable(&reg, a, 40));
    registry_probe_failed(&reg, a, 50, "timeout");
    assert_false(node_is_routable(&reg, a, 50));
    /* a good probe in between resets the fall count */
    registry_probe_ok(&reg, a, 60);
    registry_probe_ok(&reg, a, 70);
    registry_probe_failed(&reg, a, 80, "x");
    registry_probe_failed(&reg, a, 90, "x");
    registry_probe_ok(&reg, a, 100);
    registry_probe_failed(&reg, a, 110, "x");
    registry_probe_failed(&reg, a, 120, "x");
    assert_true(node_is_routable(&reg, a, 120));
    /* streaming tokens: probe failures do not count */
    a->streams_active = 1;
    a->last_progress_ms = 125;
    for (int i = 0; i < 5; i++) registry_probe_failed(&reg, a, 130, "busy");
    assert_int_equal(a->live, LIVE_HEALTHY);
    registry_free(&reg);
}

static void test_exclusion(void **state)
{
    (void)state;
    struct registry_config cfg;
    registry_config_defaults(&cfg);
    cfg.auto_recover = true;
    struct registry reg;
    registry_init(&reg, &cfg);
    struct node *a = add(&reg, "a", 9001, "m");
    struct node *b = add(&reg, "b", 9002, "m");
    struct node *c = add(&reg, "c", 9003, "m");
    make_healthy(&reg, a);
    make_healthy(&reg, b);
    make_healthy(&reg, c);
    assert_false(registry_record_fault(&reg, a, 1000, "test"));
    assert_false(registry_record_fault(&reg, a, 1000, "test"));
    registry_record_success(&reg, a, 1000); /* a success resets the run */
    assert_false(registry_record_fault(&reg, a, 1000, "test"));
    assert_false(registry_record_fault(&reg, a, 1000, "test"));
    assert_true(registry_record_fault(&reg, a, 1000, "test"));
    assert_true(a->excluded);
    assert_int_equal(a->eject_until_ms, 1000 + 30000);
    assert_false(node_is_routable(&reg, a, 2000));
    /* with 3 nodes and 50%, a second exclusion is refused */
    for (int i = 0; i < 5; i++) registry_record_fault(&reg, b, 1000, "test");
    assert_false(b->excluded);
    /* auto recovery only after the ejection time */
    registry_probe_ok(&reg, a, 20000);
    assert_true(a->excluded);
    registry_probe_ok(&reg, a, 31000);
    assert_false(a->excluded);
    /* the second ejection doubles */
    for (int i = 0; i < 3; i++) registry_record_fault(&reg, a, 40000, "test");
    assert_true(a->excluded);
    assert_int_equal(a->eject_until_ms, 40000 + 60000);
    /* admin recover clears everything */
    registry_recover(&reg, a, "test");
    assert_false(a->excluded);
    assert_int_equal(a->ejections, 0);
    assert_true(node_is_routable(&reg, a, 40000));
    registry_free(&reg);
}

/* Marks are evidence with a scope and a lifetime (DESIGN §4): per node, model and capability;
 * a marked node is a last resort; a capability mark expires like an ejection; the next probe
 * that still lists the model clears an inventory mark. */
static void test_marks(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add(&reg, "a", 9001, "m");
    struct node *b = add(&reg, "b", 9002, "m");
    make_healthy(&reg, a);
    make_healthy(&reg, b);
    struct node_model *ma = node_model_find(a, strv_from_cstr("m"));
    /* "does not support tools" marks tools on a: plain chats still go anywhere */
    registry_mark_capability(&reg, a, ma, CAP_TOOLS, 4000, "no tools");
    for (int i = 0; i < 4; i++) {
        struct route_result r = pick(&reg, "m", CAP_CHAT);
        assert_int_equal(r.status, ROUTE_OK);
        assert_int_equal(r.tier, TIER_NORMAL);
    }
    /* a chat with tools prefers b, and takes a only when b is already tried */
    struct route_result r = pick(&reg, "m", CAP_CHAT | CAP_TOOLS);
    assert_ptr_equal(r.node, b);
    struct node *tried[] = {b};
    struct route_query q = {.model = STRV_LIT("m"),
                            .cap = CAP_CHAT | CAP_TOOLS,
                            .tried = tried,
                            .n_tried = 1,
                            .now_ms = 5000};
    router_pick(&reg, &q, &r);
    assert_ptr_equal(r.node, a);
    assert_int_equal(r.tier, TIER_MARKED);
    /* the mark expires after the ejection base (30 s), then doubles on the next mark */
    assert_int_equal(model_marks_block(ma, CAP_TOOLS, 4000 + 29999), CAP_TOOLS);
    assert_int_equal(model_marks_block(ma, CAP_TOOLS, 4000 + 30000), 0);
    registry_mark_capability(&reg, a, ma, CAP_TOOLS, 40000, "no tools");
    assert_int_equal(ma->marks->cap[3].until_ms, 40000 + 60000);
    assert_string_equal(ma->marks->cap[3].cause, "no tools");
    /* an inventory mark: gone with the next probe that still lists the model */
    registry_mark_inventory_miss(&reg, a, ma, 5000, "404");
    assert_true(model_marks_block(ma, CAP_CHAT, 5000) != 0);
    struct strv id = STRV_LIT("m");
    registry_set_models(a, &id, 1);
    ma = node_model_find(a, id);
    assert_false(ma->inventory_miss);
    assert_int_equal(model_marks_block(ma, CAP_CHAT, 5000), 0);
    /* recover clears every mark */
    registry_recover(&reg, a, "test");
    assert_int_equal(model_marks_block(ma, CAP_TOOLS, 40001), 0);
    registry_free(&reg);
}

/* Busy is not dead (issue 20): one busy answer lowers the node's limit, never switches it
 * off; successes at the limit grow it back; only busy answers in a row cool the node. */
static void test_busy_limits(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add(&reg, "a", 9001, "m");
    make_healthy(&reg, a);
    a->inflight = 8;
    /* random busy answers among successes change no limit (one in ten, as in bench S6) */
    for (int i = 0; i < 50; i++) {
        if (i % 10 == 0)
            registry_node_busy(&reg, a, 8, 60, 5000);
        else
            registry_node_ok(&reg, a, 8, 10);
    }
    assert_int_equal(a->conc_limit, 0);
    /* busy answers that are most of the recent ones: over capacity, the limit halves */
    for (int i = 0; i < 11; i++) registry_node_busy(&reg, a, 16, 60, 5000);
    assert_int_equal(a->conc_limit, 8);
    assert_false(node_is_cooled(a, 5000));
    /* another busy answer from the same moment does not halve again */
    registry_node_busy(&reg, a, 16, 60, 5001);
    assert_int_equal(a->conc_limit, 8);
    a->conc_limit = 4;
    /* at its limit it takes nothing new; below it, it does */
    assert_int_equal(pick(&reg, "m", CAP_CHAT).status, ROUTE_CAPACITY);
    a->inflight = 3;
    assert_int_equal(pick(&reg, "m", CAP_CHAT).status, ROUTE_OK);
    /* a success resets the busy run; 4 successes at the limit add one */
    for (int i = 0; i < 4; i++) registry_node_ok(&reg, a, 4, 10);
    assert_int_equal(a->conc_limit, 5);
    assert_int_equal(a->consecutive_busy, 0);
    /* busy to everything: cooled for Retry-After capped at busy.max_retry_after, then one */
    for (unsigned i = 0; i < reg.cfg.busy_cool_after; i++)
        registry_node_busy(&reg, a, 1, 600, 6000);
    assert_true(node_is_cooled(a, 6000));
    assert_true(node_is_cooled(a, 6000 + 59999));
    assert_false(node_is_cooled(a, 6000 + 60000));
    assert_int_equal(a->conc_limit, 1);
    registry_free(&reg);
}

/* Busy is not dead (issue 12 §3): a node whose probes fail while it completes requests stays
 * routable; when no replica is healthy, panic routing tries the ones not excluded. */
static void test_alive_by_traffic_and_panic(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add(&reg, "a", 9001, "m");
    struct node *b = add(&reg, "b", 9002, "m");
    make_healthy(&reg, a);
    make_healthy(&reg, b);
    for (int i = 0; i < 3; i++) registry_probe_failed(&reg, a, 2000, "timeout");
    assert_int_equal(a->live, LIVE_UNHEALTHY);
    registry_record_success(&reg, a, 4000);
    assert_true(node_is_routable(&reg, a, 5000));
    /* interval × fall later without another success, the probes' verdict stands */
    assert_false(node_is_routable(&reg, a, 4000 + 30001));
    /* both down: panic routing tries them rather than answering 503 untried */
    for (int i = 0; i < 3; i++) registry_probe_failed(&reg, b, 2000, "timeout");
    struct route_query q = {.model = STRV_LIT("m"), .cap = CAP_CHAT, .now_ms = 40000};
    struct route_result r;
    router_pick(&reg, &q, &r);
    assert_int_equal(r.status, ROUTE_OK);
    assert_int_equal(r.tier, TIER_PANIC);
    /* excluded nodes are not panic candidates; with the threshold at 0, no panic at all */
    reg.cfg.panic_percent = 0;
    router_pick(&reg, &q, &r);
    assert_int_equal(r.status, ROUTE_NO_HEALTHY_NODES);
    registry_free(&reg);
}

/* Ollama names "x" and "x:latest" the same model; other engines do not. */
static void test_ollama_latest(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *o = NULL;
    assert_int_equal(
        registry_add(&reg, "o", "http://127.0.0.1:9001", NODE_KIND_OLLAMA, NULL, &o, NULL), 0);
    struct strv id = STRV_LIT("llama3:latest");
    registry_set_models(o, &id, 1);
    make_healthy(&reg, o);
    struct node *v = add(&reg, "v", 9002, "qwen:latest");
    make_healthy(&reg, v);
    assert_ptr_equal(pick(&reg, "llama3", CAP_CHAT).node, o);
    assert_ptr_equal(pick(&reg, "llama3:latest", CAP_CHAT).node, o);
    assert_ptr_equal(node_model_find(o, STRV_LIT("llama3")), node_model_find(o, id));
    assert_int_equal(pick(&reg, "qwen", CAP_CHAT).status, ROUTE_MODEL_NOT_FOUND);
    const struct model_nodes *e = registry_model_nodes(&reg, STRV_LIT("llama3"));
    assert_true(e->alias);
    registry_free(&reg);
}

static void test_bad_urls(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    const char *bad[] = {"127.0.0.1:80",   "http://",        "http://host", "http://h:0",
                         "http://h:70000", "http://h:80/v1", "ftp://h:21"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gw_error err = {0};
        assert_int_equal(registry_add(&reg, "x", bad[i], NODE_KIND_OPENAI, NULL, NULL, &err),
                         GW_E_INVALID);
        assert_true(strlen(err.msg) > 0);
    }
    assert_int_equal(reg.n, 0);
    struct node *n;
    assert_int_equal(
        registry_add(&reg, "tls", "https://127.0.0.1:8443", NODE_KIND_OPENAI, NULL, &n, NULL), 0);
    assert_true(n->tls);
    assert_int_equal(registry_add(&reg, "v6", "http://[::1]:8080/", NODE_KIND_VLLM, NULL, &n, NULL),
                     0);
    assert_string_equal(n->host, "::1");
    assert_int_equal(n->port, 8080);
    assert_int_equal(
        registry_add(&reg, "v6", "http://[::1]:8081", NODE_KIND_VLLM, NULL, NULL, NULL),
        GW_E_INVALID);
    registry_free(&reg);
}

/* ---- routing policies (docs/routing.md) ---------------------------------------------- */

static struct route_result pick_with(struct registry *reg, enum route_policy pol,
                                     const struct route_params *rp, struct prefix_cache *pc,
                                     const char *prompt, const char *session)
{
    struct route_query q = {.model = strv_from_cstr("m"),
                            .cap = CAP_CHAT,
                            .now_ms = 5000,
                            .policy = pol,
                            .params = rp,
                            .prefix = pc,
                            .prompt = prompt ? strv_from_cstr(prompt) : STRV_NULL,
                            .session = session ? strv_from_cstr(session) : STRV_NULL,
                            .explain = true};
    struct route_result r;
    router_pick(reg, &q, &r);
    assert_int_equal(r.status, ROUTE_OK);
    return r;
}

static void fleet(struct registry *reg, struct node **v, size_t n)
{
    registry_init(reg, NULL);
    static const char *const names[] = {"a", "b", "c", "d", "e", "f"};
    for (size_t i = 0; i < n; i++) {
        v[i] = add(reg, names[i], 9001 + (int)i, "m");
        make_healthy(reg, v[i]);
    }
}

static void long_prompt(char *out, size_t cap, unsigned sys, unsigned user)
{
    size_t n = 0;
    for (unsigned i = 0; n + 40 < cap && i < 30; i++)
        n += (size_t)snprintf(out + n, cap - n, "system prompt %u sentence %u. ", sys, i);
    snprintf(out + n, cap - n, "user %u asks a question about something long enough", user);
}

static void test_policy_per_model(void **state)
{
    (void)state;
    struct route_params rp;
    route_params_defaults(&rp);
    assert_int_equal(router_policy_for(NULL, &rp), ROUTE_POLICY_LEAST_LOADED);
    rp.policy = ROUTE_POLICY_CACHE_AWARE;
    struct cat_model cm = {0};
    assert_int_equal(router_policy_for(&cm, &rp), ROUTE_POLICY_CACHE_AWARE);
    cm.routing = ROUTE_POLICY_SESSION;
    assert_int_equal(router_policy_for(&cm, &rp), ROUTE_POLICY_SESSION);
    assert_int_equal(router_policy_for(NULL, NULL), ROUTE_POLICY_LEAST_LOADED);
    /* from the config file: a global policy and per-model ones */
    const char *yaml = "routing:\n  policy: cache_aware\n  explain: true\n"
                       "models:\n  - id: chat\n    routing: session\n"
                       "  - id: other\n";
    struct gw_config cfg;
    struct gw_error err = {0};
    assert_int_equal(gw_config_parse(&cfg, "t.yaml", yaml, strlen(yaml), &err), 0);
    assert_int_equal(cfg.route.policy, ROUTE_POLICY_CACHE_AWARE);
    assert_true(cfg.routing_explain);
    assert_int_equal(cfg.n_models, 2);
    assert_int_equal(router_policy_for(cfg.models[0], &cfg.route), ROUTE_POLICY_SESSION);
    assert_int_equal(router_policy_for(cfg.models[1], &cfg.route), ROUTE_POLICY_CACHE_AWARE);
    gw_config_free(&cfg);
    const char *bad = "routing:\n  policy: random\n";
    assert_int_not_equal(gw_config_parse(&cfg, "t.yaml", bad, strlen(bad), &err), 0);
    assert_non_null(strstr(err.msg, "routing.policy"));
    gw_config_free(&cfg);
    const char *bad2 = "models:\n  - id: chat\n    routing: fastest\n";
    assert_int_not_equal(gw_config_parse(&cfg, "t.yaml", bad2, strlen(bad2), &err), 0);
    assert_non_null(strstr(err.msg, "routing"));
    gw_config_free(&cfg);
}

static void test_cache_aware_follows_prefix(void **state)
{
    (void)state;
    struct registry reg;
    struct node *v[3];
    fleet(&reg, v, 3);
    struct route_params rp;
    route_params_defaults(&rp);
    struct prefix_cache *pc = prefix_cache_new(100000, 0, 64, 8192);
    char p[3][2048];
    for (unsigned s = 0; s < 3; s++) long_prompt(p[s], sizeof p[s], s, 0);
    struct node *home[3];
    for (unsigned s = 0; s < 3; s++) {
        struct route_result r = pick_with(&reg, ROUTE_POLICY_CACHE_AWARE, &rp, pc, p[s], NULL);
        assert_string_equal(r.fallback, "no_match");
        home[s] = r.node;
    }
    /* new prefixes spread (fewest entries first), then each prefix stays home */
    assert_ptr_not_equal(home[0], home[1]);
    assert_ptr_not_equal(home[1], home[2]);
    assert_ptr_not_equal(home[0], home[2]);
    for (int i = 0; i < 9; i++) {
        struct route_result r = pick_with(&reg, ROUTE_POLICY_CACHE_AWARE, &rp, pc, p[i % 3], NULL);
        assert_ptr_equal(r.node, home[i % 3]);
        assert_null(r.fallback);
        assert_int_equal(r.match_pm, 1000);
        assert_non_null(strstr(r.explain, "policy=cache_aware node="));
        assert_non_null(strstr(r.explain, "match=1.00 loads=0/0/0"));
    }
    /* a conversation's next turn (the same text and more) goes home too */
    char longer[4096];
    snprintf(longer, sizeof longer, "%s assistant: an answer of some length. user: and then?",
             p[1]);
    assert_ptr_equal(pick_with(&reg, ROUTE_POLICY_CACHE_AWARE, &rp, pc, longer, NULL).node,
                     home[1]);
    /* no prompt (embeddings, or the cache off): least loaded */
    v[0]->inflight = 2;
    v[1]->inflight = 1;
    struct route_result r = pick_with(&reg, ROUTE_POLICY_CACHE_AWARE, &rp, pc, NULL, NULL);
    assert_ptr_equal(r.node, v[2]);
    assert_string_equal(r.fallback, "no_prompt");
    r = pick_with(&reg, ROUTE_POLICY_CACHE_AWARE, &rp, NULL, p[0], NULL);
    assert_ptr_equal(r.node, v[2]);
    prefix_cache_free(pc);
    registry_free(&reg);
}

/* One hot prefix cannot pin all traffic to one node: requests pile up in flight on the node
 * that has it until max−min passes balance_abs, then the escape sends them elsewhere (where
 * the prefix then gets cached too). */
static void test_imbalance_escape(void **state)
{
    (void)state;
    struct registry reg;
    struct node *v[3];
    fleet(&reg, v, 3);
    struct route_params rp;
    route_params_defaults(&rp);
    rp.balance_abs = 4;
    struct prefix_cache *pc = prefix_cache_new(100000, 0, 64, 8192);
    char hot[2048];
    long_prompt(hot, sizeof hot, 7, 0);
    unsigned escapes = 0;
    for (int i = 0; i < 60; i++) {
        struct route_result r = pick_with(&reg, ROUTE_POLICY_CACHE_AWARE, &rp, pc, hot, NULL);
        r.node->inflight++; /* nothing finishes: the worst case for a hot prefix */
        if (r.fallback && !strcmp(r.fallback, "imbalance")) {
            escapes++;
            assert_non_null(strstr(r.explain, "fallback=imbalance"));
        }
        unsigned lo = UINT32_MAX, hi = 0;
        for (int k = 0; k < 3; k++) {
            if (v[k]->inflight < lo) lo = v[k]->inflight;
            if (v[k]->inflight > hi) hi = v[k]->inflight;
        }
        assert_true(hi - lo <= rp.balance_abs + 1);
    }
    assert_true(escapes > 0);
    for (int k = 0; k < 3; k++) assert_true(v[k]->inflight >= 60 / 3 - 3);
    /* a saturated node is never picked, whatever its prefix */
    for (int k = 0; k < 3; k++) v[k]->inflight = 0;
    struct node *home = pick_with(&reg, ROUTE_POLICY_CACHE_AWARE, &rp, pc, hot, NULL).node;
    home->conc_limit = 1;
    home->inflight = 1;
    for (int i = 0; i < 5; i++)
        assert_ptr_not_equal(pick_with(&reg, ROUTE_POLICY_CACHE_AWARE, &rp, pc, hot, NULL).node,
                             home);
    prefix_cache_free(pc);
    registry_free(&reg);
}

static void test_session_affinity_survives_restart(void **state)
{
    (void)state;
    struct registry reg;
    struct node *v[4];
    fleet(&reg, v, 4);
    struct route_params rp;
    route_params_defaults(&rp);
    enum { K = 64 };
    struct node *first[K];
    char key[K][24];
    unsigned per[4] = {0};
    for (int i = 0; i < K; i++) {
        snprintf(key[i], sizeof key[i], "user-%d", i);
        first[i] = pick_with(&reg, ROUTE_POLICY_SESSION, &rp, NULL, NULL, key[i]).node;
        per[first[i] == v[0] ? 0 : first[i] == v[1] ? 1 : first[i] == v[2] ? 2 : 3]++;
        /* the same key again: the same node */
        assert_ptr_equal(pick_with(&reg, ROUTE_POLICY_SESSION, &rp, NULL, NULL, key[i]).node,
                         first[i]);
    }
    for (int k = 0; k < 4; k++) assert_true(per[k] > 0); /* keys spread over every node */
    /* b goes down: only b's sessions move */
    for (unsigned i = 0; i < reg.cfg.fall; i++) registry_probe_failed(&reg, v[1], 2000, "down");
    assert_int_equal(v[1]->live, LIVE_UNHEALTHY);
    for (int i = 0; i < K; i++) {
        struct node *n = pick_with(&reg, ROUTE_POLICY_SESSION, &rp, NULL, NULL, key[i]).node;
        assert_ptr_not_equal(n, v[1]);
        if (first[i] != v[1]) assert_ptr_equal(n, first[i]);
    }
    /* b comes back (a restart): every session is where it was */
    for (unsigned i = 0; i < reg.cfg.rise; i++) registry_probe_ok(&reg, v[1], 3000);
    for (int i = 0; i < K; i++)
        assert_ptr_equal(pick_with(&reg, ROUTE_POLICY_SESSION, &rp, NULL, NULL, key[i]).node,
                         first[i]);
    /* bounded load: a session's node far above the mean is passed over, and comes back */
    struct node *home = first[0];
    home->inflight = 10;
    struct route_result r = pick_with(&reg, ROUTE_POLICY_SESSION, &rp, NULL, NULL, key[0]);
    assert_ptr_not_equal(r.node, home);
    assert_string_equal(r.fallback, "bounded_load");
    home->inflight = 0;
    assert_ptr_equal(pick_with(&reg, ROUTE_POLICY_SESSION, &rp, NULL, NULL, key[0]).node, home);
    /* no key: least loaded */
    v[0]->inflight = v[1]->inflight = v[2]->inflight = 3;
    r = pick_with(&reg, ROUTE_POLICY_SESSION, &rp, NULL, NULL, NULL);
    assert_ptr_equal(r.node, v[3]);
    assert_string_equal(r.fallback, "no_session");
    registry_free(&reg);
}

static void test_round_robin_ignores_load(void **state)
{
    (void)state;
    struct registry reg;
    struct node *v[3];
    fleet(&reg, v, 3);
    v[0]->inflight = 5;
    unsigned seen[3] = {0};
    for (int i = 0; i < 9; i++) {
        struct node *n = pick_with(&reg, ROUTE_POLICY_ROUND_ROBIN, NULL, NULL, NULL, NULL).node;
        seen[n == v[0] ? 0 : n == v[1] ? 1 : 2]++;
    }
    assert_int_equal(seen[0], 3);
    assert_int_equal(seen[1], 3);
    assert_int_equal(seen[2], 3);
    registry_free(&reg);
}

static void set_ctx(struct node *n, const char *model, uint32_t ctx)
{
    registry_set_model_ctx(n, node_model_find(n, strv_from_cstr(model)), ctx, "models");
}

static struct route_result pick_need(struct registry *reg, const struct ctx_need *need,
                                     uint32_t floor)
{
    struct route_query q = {.model = STRV_LIT("m"),
                            .cap = CAP_CHAT,
                            .now_ms = 5000,
                            .need = need,
                            .ctx_floor = floor,
                            .explain = true};
    struct route_result r;
    router_pick(reg, &q, &r);
    return r;
}

/* Context length (docs/routing.md): a node too small is never a candidate, one the estimate
 * cannot settle comes after the nodes that surely hold the request (largest first), unknown
 * contexts constrain nothing, and the reasons say 400 (no node can ever hold it) apart from
 * 503 (only a node that is down or busy could). */
static void test_context_filter(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *small = add(&reg, "small", 9001, "m");
    struct node *mid = add(&reg, "mid", 9002, "m");
    struct node *big = add(&reg, "big", 9003, "m");
    make_healthy(&reg, small);
    make_healthy(&reg, mid);
    make_healthy(&reg, big);
    set_ctx(small, "m", 512);
    set_ctx(mid, "m", 2048);
    set_ctx(big, "m", 8192);
    /* a short request: anywhere (ties rotate over all three) */
    struct ctx_need shortn = {.known = true, .prompt_est = 40, .prompt_low = 5};
    int seen[3] = {0};
    for (int i = 0; i < 6; i++) {
        struct route_result r = pick_need(&reg, &shortn, 0);
        assert_int_equal(r.status, ROUTE_OK);
        assert_int_equal(r.tier, TIER_NORMAL);
        seen[r.node == small ? 0 : r.node == mid ? 1 : 2]++;
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    /* 1500..3000 tokens: small surely too small, mid tight, big fits: always big, even when
     * big is the busiest */
    struct ctx_need longn = {
        .known = true, .prompt_est = 2900, .prompt_low = 1400, .completion = 100};
    big->inflight = 5;
    for (int i = 0; i < 4; i++) {
        struct route_result r = pick_need(&reg, &longn, 0);
        assert_ptr_equal(r.node, big);
        assert_int_equal(r.tier, TIER_NORMAL);
        assert_non_null(strstr(r.explain, "need=3000 ctx=8192"));
    }
    /* big down: the tight node is tried (the engine counts exactly), never the small one */
    for (unsigned i = 0; i < reg.cfg.fall; i++) registry_probe_failed(&reg, big, 5000, "down");
    reg.cfg.panic_percent = 0;
    struct route_result r = pick_need(&reg, &longn, 0);
    assert_ptr_equal(r.node, mid);
    assert_int_equal(r.tier, TIER_TIGHT);
    assert_non_null(strstr(r.explain, "tier=tight"));
    /* mid refused (its context, 2048, is the floor now): only big could hold it, and big is
     * down: the transient 503, not a 400 */
    struct node *tried[1] = {mid};
    struct route_query q = {.model = STRV_LIT("m"),
                            .cap = CAP_CHAT,
                            .now_ms = 5000,
                            .need = &longn,
                            .ctx_floor = 2048,
                            .tried = tried,
                            .n_tried = 1};
    router_pick(&reg, &q, &r);
    assert_int_equal(r.status, ROUTE_FEASIBLE_UNHEALTHY);
    /* more than any node's context, surely: 400, naming the largest context */
    struct ctx_need hugen = {.known = true, .prompt_est = 30000, .prompt_low = 9000};
    r = pick_need(&reg, &hugen, 0);
    assert_int_equal(r.status, ROUTE_CONTEXT_EXCEEDED);
    assert_int_equal(r.ctx_max, 8192);
    /* the floor alone rules out every context at most that large */
    r = pick_need(&reg, NULL, 8192);
    assert_int_equal(r.status, ROUTE_CONTEXT_EXCEEDED);
    assert_string_equal(route_status_name(ROUTE_CONTEXT_EXCEEDED), "context_exceeded");
    /* a node whose context is unknown holds anything until it says otherwise */
    struct node *anon = add(&reg, "anon", 9004, "m");
    make_healthy(&reg, anon);
    r = pick_need(&reg, &hugen, 0);
    assert_ptr_equal(r.node, anon);
    assert_int_equal(r.tier, TIER_NORMAL);
    /* no estimate: nothing is judged */
    r = pick_need(&reg, NULL, 0);
    assert_int_equal(r.status, ROUTE_OK);
    registry_free(&reg);
}

/* Only tight nodes: the one with the largest context first, then the least loaded. */
static void test_context_tight_prefers_the_largest(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = add(&reg, "a", 9001, "m");
    struct node *b = add(&reg, "b", 9002, "m");
    struct node *c = add(&reg, "c", 9003, "m");
    make_healthy(&reg, a);
    make_healthy(&reg, b);
    make_healthy(&reg, c);
    set_ctx(a, "m", 1024);
    set_ctx(b, "m", 2048);
    set_ctx(c, "m", 2048);
    struct ctx_need n = {.known = true, .prompt_est = 4000, .prompt_low = 1000};
    b->inflight = 2;
    for (int i = 0; i < 3; i++) {
        struct route_result r = pick_need(&reg, &n, 0);
        assert_ptr_equal(r.node, c);
        assert_int_equal(r.tier, TIER_TIGHT);
    }
    /* a mark is worse than a tight context */
    set_ctx(a, "m", 8192);
    registry_mark_capability(&reg, a, node_model_find(a, STRV_LIT("m")), CAP_CHAT, 5000, "test");
    assert_ptr_equal(pick_need(&reg, &n, 0).node, c);
    registry_free(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_least_inflight_and_round_robin),
        cmocka_unit_test(test_replicas_share_the_load),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_model_index),
        cmocka_unit_test(test_debounce_and_streaming),
        cmocka_unit_test(test_exclusion),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_marks),
        cmocka_unit_test(test_busy_limits),
        cmocka_unit_test(test_alive_by_traffic_and_panic),
        cmocka_unit_test(test_ollama_latest),
        cmocka_unit_test(test_policy_per_model),
        cmocka_unit_test(test_cache_aware_follows_prefix),
        cmocka_unit_test(test_imbalance_escape),
        cmocka_unit_test(test_session_affinity_survives_restart),
        cmocka_unit_test(test_round_robin_ignores_load),
        cmocka_unit_test(test_context_filter),
        cmocka_unit_test(test_context_tight_prefers_the_largest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
