/* test_history — the per-minute history behind the dashboard's charts and `drover top`:
 * percentiles of a minute, minutes that roll over and go stale, outcome groups, the counters'
 * per-minute differences, the (node, model) series, and the request log's usage parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "base/mem.h"
#include "gw/events.h"
#include "gw/history.h"

static const uint64_t T0 = 1796284080000ull; /* a minute boundary */

static struct json_object *doc(struct history *h, uint64_t now, unsigned win, unsigned step)
{
    struct buf b;
    buf_init(&b, 64u << 20);
    assert_int_equal(history_json(h, now, win, step, &b), 0);
    struct json_object *o = json_tokener_parse(b.p);
    assert_non_null(o);
    buf_free(&b);
    return o;
}

static struct json_object *pt(struct json_object *d, int idx_from_end)
{
    struct json_object *p = json_object_object_get(d, "points");
    return json_object_array_get_idx(p, json_object_array_length(p) - 1 - (size_t)idx_from_end);
}

static double num(struct json_object *o, const char *k)
{
    return json_object_get_double(json_object_object_get(o, k));
}

static void test_percentiles_and_rates(void **st)
{
    (void)st;
    struct metrics m;
    metrics_init(&m);
    struct history *h = history_new(&m, T0);
    for (int i = 0; i < 99; i++) history_record(h, T0 + 1000, "a", "m", 200, "success", 10000, 5);
    history_record(h, T0 + 2000, "a", "m", 200, "success", 2000000, 5); /* one slow: 2 s */
    struct json_object *d = doc(h, T0 + 3000, 60, 1);
    struct json_object *p = pt(d, 0);
    assert_int_equal(json_object_get_int(json_object_object_get(p, "requests")), 100);
    double p50 = num(p, "latency_p50_ms"), p99 = num(p, "latency_p99_ms");
    assert_true(p50 > 6.0 && p50 <= 12.0); /* 10 ms lives in the (7.6, 11.4] bucket */
    assert_true(p99 > 6.0 && p99 <= 12.0); /* the 99th of 100 is still fast */
    assert_true(num(p, "rps") > 1.66 && num(p, "rps") < 1.67); /* 100 in a 60 s step */
    assert_true(num(p, "tokens_per_s") > 8.3 && num(p, "tokens_per_s") < 8.4);
    assert_null(json_object_object_get(p, "ttft_p50_ms")); /* no first bytes observed */
    json_object_put(d);
    history_free(h);
    metrics_free(&m);
}

static void test_minutes_roll_and_go_stale(void **st)
{
    (void)st;
    struct metrics m;
    metrics_init(&m);
    struct history *h = history_new(&m, T0);
    history_record(h, T0, "a", "m", 200, "success", 1000, 0);
    history_record(h, T0 + 60000, "a", "m", 503, "capacity", 1000, 0);
    history_record(h, T0 + 60000, "a", "m", 502, "upstream_failed", 1000, 0);
    history_record(h, T0 + 60000, "", "m", 400, "invalid_request", 1000, 0);
    history_record(h, T0 + 60000, "a", "m", 200, "stream_error", 1000, 0);
    history_record(h, T0 + 60000, "a", "m", 499, "client_gone", 1000, 0);
    struct json_object *d = doc(h, T0 + 61000, 60, 1);
    struct json_object *oc = json_object_object_get(pt(d, 0), "outcomes");
    assert_int_equal(json_object_get_int(json_object_object_get(oc, "unavailable")), 1);
    assert_int_equal(json_object_get_int(json_object_object_get(oc, "upstream")), 1);
    assert_int_equal(json_object_get_int(json_object_object_get(oc, "client_error")), 1);
    assert_int_equal(json_object_get_int(json_object_object_get(oc, "stream_error")), 1);
    assert_int_equal(json_object_get_int(json_object_object_get(oc, "client_gone")), 1);
    assert_int_equal(json_object_get_int(json_object_object_get(pt(d, 1), "requests")), 1);
    json_object_put(d);
    /* the day window: 144 points of 10 minutes */
    d = doc(h, T0 + 61000, HISTORY_MINUTES, 10);
    assert_int_equal(json_object_array_length(json_object_object_get(d, "points")), 144);
    assert_int_equal(json_object_get_int(json_object_object_get(pt(d, 0), "requests")), 6);
    json_object_put(d);
    /* a day and a minute later, yesterday's bucket of the same slot reads as empty */
    d = doc(h, T0 + 60000ull * (HISTORY_MINUTES + 1), 60, 1);
    for (int i = 0; i < 60; i++)
        assert_int_equal(json_object_get_int(json_object_object_get(pt(d, i), "requests")), 0);
    json_object_put(d);
    history_free(h);
    metrics_free(&m);
}

static void test_counter_differences_per_minute(void **st)
{
    (void)st;
    struct metrics m;
    metrics_init(&m);
    m.outcomes[OUTCOME_NODE_FAULT] = 7; /* before the history started: not counted */
    struct history *h = history_new(&m, T0);
    metrics_observe(&m.ttfb, 40000); /* 40 ms */
    metrics_observe(&m.ttfb, 40000);
    m.outcomes[OUTCOME_NODE_FAULT] += 2;
    history_tick(h, T0 + 60000);       /* closes minute 0 */
    metrics_observe(&m.ttfb, 3000000); /* 3 s, in the minute in progress */
    struct json_object *d = doc(h, T0 + 70000, 60, 1);
    struct json_object *prev = pt(d, 1), *cur = pt(d, 0);
    double t = num(prev, "ttft_p50_ms");
    assert_true(t > 25.0 && t <= 50.0);
    assert_int_equal(json_object_get_int(json_object_object_get(
                         json_object_object_get(prev, "classes"), "node_fault")),
                     2);
    assert_true(num(cur, "ttft_p50_ms") > 2500.0);
    json_object_put(d);
    history_free(h);
    metrics_free(&m);
}

static void test_series(void **st)
{
    (void)st;
    struct metrics m;
    metrics_init(&m);
    struct history *h = history_new(&m, T0);
    history_record(h, T0, "a", "m1", 200, "success", 1000, 30);
    history_record(h, T0, "a", "m1", 502, "upstream_failed", 1000, 0);
    history_record(h, T0, "b", "m1", 200, "success", 1000, 60);
    char node[16];
    for (int i = 0; i < HISTORY_SERIES_PER_MIN + 5; i++) { /* more pairs than a minute keeps */
        snprintf(node, sizeof node, "n%d", i);
        history_record(h, T0, node, "m2", 200, "success", 1000, 0);
    }
    struct json_object *d = doc(h, T0 + 1000, 60, 1);
    struct json_object *s = json_object_object_get(d, "series");
    bool saw_a = false, saw_other = false;
    for (size_t i = 0; i < json_object_array_length(s); i++) {
        struct json_object *e = json_object_array_get_idx(s, i);
        const char *n = json_object_get_string(json_object_object_get(e, "node"));
        struct json_object *err = json_object_object_get(e, "errors");
        struct json_object *tps = json_object_object_get(e, "tokens_per_s");
        if (!strcmp(n, "a")) {
            saw_a = true;
            assert_int_equal(json_object_get_int(json_object_array_get_idx(err, 59)), 1);
            assert_true(json_object_get_double(json_object_array_get_idx(tps, 59)) == 0.5);
        }
        if (!strcmp(n, "_other")) saw_other = true;
    }
    assert_true(saw_a);
    assert_true(saw_other);
    json_object_put(d);
    history_free(h);
    metrics_free(&m);
}

static void test_usage_tokens(void **st)
{
    (void)st;
    const char *oa = "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\": 42}}";
    assert_int_equal(events_body_tokens(oa, strlen(oa)), 42);
    const char *ol = "{\"done\":true,\"eval_count\":17}";
    assert_int_equal(events_body_tokens(ol, strlen(ol)), 17);
    assert_int_equal(events_body_tokens("{\"x\":1}", 7), 0);
    assert_int_equal(events_body_tokens(NULL, 0), 0);
    const char *cut = "{\"completion_tokens\":";
    assert_int_equal(events_body_tokens(cut, strlen(cut)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentiles_and_rates),
        cmocka_unit_test(test_minutes_roll_and_go_stale),
        cmocka_unit_test(test_counter_differences_per_minute),
        cmocka_unit_test(test_series),
        cmocka_unit_test(test_usage_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
