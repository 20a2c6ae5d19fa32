/* signals: the engines' load endpoints parsed from recorded answers (llama-server /metrics and
 * /slots recorded from a real llama-server busy with 2 slots and 2 deferred requests; vLLM
 * and Ollama written from their documented formats), and how the router uses a report:
 * load raised to the engine's, corrected by what the gateway sent since; a full engine queue
 * saturates; stale reports count nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "base/mem.h"
#include "gw/registry.h"
#include "gw/router.h"
#include "gw/signals.h"

static char *fixture(const char *name, size_t *len)
{
    char path[1024];
    const char *here = __FILE__; /* …/tests/unit/test_signals.c */
    const char *slash = strrchr(here, '/');
    size_t dir = slash ? (size_t)(slash - here) : 0;
    snprintf(path, sizeof path, "%.*s/../fixtures/signals/%s", (int)dir, here, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_error("no fixture %s\n", path);
        fail();
    }
    char *buf = xmalloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static struct signals_report parse(enum signals_source src, const char *name, int want_rc)
{
    size_t len;
    char *t = fixture(name, &len);
    struct signals_report r;
    assert_int_equal(signals_parse(src, t, len, &r), want_rc);
    xfree(t);
    return r;
}

static void test_llamacpp(void **state)
{
    (void)state;
    struct signals_report r = parse(SIG_PROM_LLAMACPP, "llamacpp_metrics_busy.txt", 0);
    assert_int_equal(r.running, 2);
    assert_int_equal(r.waiting, 2);
    assert_int_equal(r.kv_pm, -1); /* this build has no kv_cache_usage_ratio */
    r = parse(SIG_PROM_LLAMACPP, "llamacpp_metrics_idle.txt", 0);
    assert_int_equal(r.running, 0);
    assert_int_equal(r.waiting, 0);
    r = parse(SIG_SLOTS, "llamacpp_slots_busy.json", 0);
    assert_int_equal(r.slots, 2);
    assert_int_equal(r.running, 2);
    assert_int_equal(r.waiting, -1);
    r = parse(SIG_SLOTS, "llamacpp_slots_idle.json", 0);
    assert_int_equal(r.slots, 2);
    assert_int_equal(r.running, 0);
    /* older builds: "state" instead of "is_processing"; and a build with the KV gauge */
    const char *old = "[{\"id\":0,\"state\":1},{\"id\":1,\"state\":0},{\"id\":2,\"state\":1}]";
    assert_int_equal(signals_parse(SIG_SLOTS, old, strlen(old), &r), 0);
    assert_int_equal(r.slots, 3);
    assert_int_equal(r.running, 2);
    const char *kv = "llamacpp:kv_cache_usage_ratio 0.97\nllamacpp:requests_processing 4\n";
    assert_int_equal(signals_parse(SIG_PROM_LLAMACPP, kv, strlen(kv), &r), 0);
    assert_int_equal(r.kv_pm, 970);
    assert_int_equal(r.running, 4);
    /* an error page or someone else's metrics say nothing */
    const char *e = "{\"error\":{\"code\":501,\"message\":\"This server does not support metrics "
                    "endpoint.\",\"type\":\"not_supported_error\"}}";
    assert_int_equal(signals_parse(SIG_PROM_LLAMACPP, e, strlen(e), &r), GW_E_INVALID);
    assert_int_equal(signals_parse(SIG_SLOTS, e, strlen(e), &r), GW_E_INVALID);
}

static void test_vllm(void **state)
{
    (void)state;
    struct signals_report r = parse(SIG_PROM_VLLM, "vllm_metrics.txt", 0);
    assert_int_equal(r.running, 7);
    assert_int_equal(r.waiting, 12);
    assert_int_equal(r.kv_pm, 913);
    /* V1: one series per engine: counts summed, KV use the fullest engine's */
    r = parse(SIG_PROM_VLLM, "vllm_v1_metrics.txt", 0);
    assert_int_equal(r.running, 5);
    assert_int_equal(r.waiting, 1);
    assert_int_equal(r.kv_pm, 500);
    r = parse(SIG_PROM_VLLM, "llamacpp_metrics_busy.txt", GW_E_INVALID);
}

static void test_ollama_ps(void **state)
{
    (void)state;
    struct signals_report r = parse(SIG_OLLAMA_PS, "ollama_ps.json", 0);
    assert_int_equal(r.models_loaded, 2);
    assert_int_equal(r.running, -1);
    r = parse(SIG_OLLAMA_PS, "ollama_ps_empty.json", 0);
    assert_int_equal(r.models_loaded, 0);
    r = parse(SIG_OLLAMA_PS, "vllm_metrics.txt", GW_E_INVALID);
}

static void test_prom_reader(void **state)
{
    (void)state;
    double sum, max;
    const char *t = "# TYPE x gauge\n"
                    "x_total 100\n"                  /* a longer name */
                    "x{a=\"}\",b=\"q\\\"}\"} 2\n"    /* '}' and \" inside labels */
                    "x 3.5\r\n"                      /* CRLF */
                    "x{a=\"1\"} NaN\n"               /* not a number we use */
                    "x{a=\"2\"} 1e1 1700000000000\n" /* with a timestamp */
                    "x";                             /* cut short */
    assert_int_equal(signals_prom_value(t, strlen(t), "x", &sum, &max), 0);
    assert_true(sum > 15.49 && sum < 15.51);
    assert_true(max > 9.99 && max < 10.01);
    assert_int_equal(signals_prom_value(t, strlen(t), "y", &sum, NULL), GW_E_NOTFOUND);
}

static void test_sources(void **state)
{
    (void)state;
    assert_int_equal(signals_source_for(NODE_KIND_LLAMACPP), SIG_PROM_LLAMACPP);
    assert_int_equal(signals_source_for(NODE_KIND_VLLM), SIG_PROM_VLLM);
    assert_int_equal(signals_source_for(NODE_KIND_OLLAMA), SIG_OLLAMA_PS);
    assert_int_equal(signals_source_for(NODE_KIND_OPENAI), SIG_NONE);
    assert_int_equal(signals_fallback(SIG_PROM_LLAMACPP), SIG_SLOTS);
    assert_int_equal(signals_fallback(SIG_SLOTS), SIG_NONE);
    assert_string_equal(signals_path(SIG_SLOTS), "/slots");
    assert_string_equal(signals_path(SIG_PROM_VLLM), "/metrics");
    assert_string_equal(signals_path(SIG_OLLAMA_PS), "/api/ps");
}

static void test_router_uses_signals(void **state)
{
    (void)state;
    struct route_params rp;
    route_params_defaults(&rp);
    rp.max_waiting = 4;
    struct node n = {0};
    n.name = "n";
    n.inflight = 1;
    /* never scraped: the gateway's own count */
    assert_int_equal(router_node_load(&n, &rp, 1000), 1);
    assert_false(router_engine_saturated(&n, &rp, 1000));
    /* the engine has other clients: 5 running + 3 waiting while we sent 1 */
    struct signals_report r = {
        .running = 5, .waiting = 3, .slots = -1, .kv_pm = -1, .models_loaded = -1};
    signals_apply(&n, SIG_PROM_LLAMACPP, &r, 1000);
    assert_string_equal(n.sig.source, "metrics");
    assert_int_equal(router_node_load(&n, &rp, 1000), 8);
    assert_false(router_engine_saturated(&n, &rp, 1000));
    /* we sent one more since the scrape: it counts in the load, but the report said nothing
     * about free slots, so it does not fill the queue */
    n.inflight = 2;
    assert_int_equal(router_node_load(&n, &rp, 1000), 9);
    assert_false(router_engine_saturated(&n, &rp, 1000));
    /* a full queue reported: saturated until requests end */
    r.waiting = 4;
    signals_apply(&n, SIG_PROM_LLAMACPP, &r, 1000);
    assert_true(router_engine_saturated(&n, &rp, 1000));
    n.inflight = 3;
    assert_true(router_engine_saturated(&n, &rp, 1000));
    n.inflight = 1; /* one of ours ended since: a waiting request took its slot */
    assert_false(router_engine_saturated(&n, &rp, 1000));
    assert_int_equal(router_node_load(&n, &rp, 1000), 8);
    /* a stale report counts nothing */
    n.inflight = 2;
    assert_int_equal(router_node_load(&n, &rp, 1000 + rp.signals_fresh_ms + 1), 2);
    assert_false(router_engine_saturated(&n, &rp, 1000 + rp.signals_fresh_ms + 1));
    /* KV nearly full adds the penalty */
    r = (struct signals_report){
        .running = 0, .waiting = 0, .slots = -1, .kv_pm = 960, .models_loaded = -1};
    n.inflight = 0;
    signals_apply(&n, SIG_PROM_VLLM, &r, 2000);
    assert_int_equal(router_node_load(&n, &rp, 2000), rp.kv_penalty);
    /* a failed scrape drops the report */
    signals_failed(&n);
    assert_int_equal(router_node_load(&n, &rp, 2000), 0);
    assert_int_equal(n.sig.scrape_errors_total, 1);
}

/* A node whose engine reports a full queue is passed over before it answers 503. */
static void test_full_engine_queue_is_saturated(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *a = NULL, *b = NULL;
    assert_int_equal(
        registry_add(&reg, "a", "http://127.0.0.1:9001", NODE_KIND_LLAMACPP, NULL, &a, NULL), 0);
    assert_int_equal(
        registry_add(&reg, "b", "http://127.0.0.1:9002", NODE_KIND_LLAMACPP, NULL, &b, NULL), 0);
    struct strv id = strv_from_cstr("m");
    registry_set_models(a, &id, 1);
    registry_set_models(b, &id, 1);
    for (unsigned i = 0; i < reg.cfg.rise; i++) {
        registry_probe_ok(&reg, a, 1000);
        registry_probe_ok(&reg, b, 1000);
    }
    struct route_params rp;
    route_params_defaults(&rp);
    rp.max_waiting = 8;
    struct signals_report full = {
        .running = 4, .waiting = 8, .slots = -1, .kv_pm = -1, .models_loaded = -1};
    signals_apply(a, SIG_PROM_LLAMACPP, &full, 1000);
    signals_apply(b, SIG_PROM_LLAMACPP, &full, 1000);
    struct route_query q = {.model = id, .cap = CAP_CHAT, .now_ms = 2000, .params = &rp};
    struct route_result res;
    router_pick(&reg, &q, &res);
    assert_int_equal(res.status, ROUTE_CAPACITY); /* both full: wait, not a 503 from a node */
    struct signals_report room = {
        .running = 4, .waiting = 1, .slots = -1, .kv_pm = -1, .models_loaded = -1};
    signals_apply(b, SIG_PROM_LLAMACPP, &room, 1500);
    for (int i = 0; i < 4; i++) {
        router_pick(&reg, &q, &res);
        assert_int_equal(res.status, ROUTE_OK);
        assert_ptr_equal(res.node, b);
    }
    registry_free(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llamacpp),
        cmocka_unit_test(test_vllm),
        cmocka_unit_test(test_ollama_ps),
        cmocka_unit_test(test_prom_reader),
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_router_uses_signals),
        cmocka_unit_test(test_full_engine_queue_is_saturated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
