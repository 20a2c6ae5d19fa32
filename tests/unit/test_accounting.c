/* Accounting (DESIGN §4 "One accounting step"): each attempt's outcome, through the same calls
 * the proxy makes (acct_begin, acct_outcome, acct_end, then acct_settle / acct_is_poison at the
 * request's end), on a minimal struct gw: a real loop for the clock, a registry, metrics. No
 * node has a health probe attached, so health_probe_now on an inventory miss does nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/log.h"
#include "base/mem.h"
#include "gw/accounting.h"
#include "gw/gw.h"

struct fixture {
    uv_loop_t loop;
    struct gw g;
};

static struct fixture *fx_new(void)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->g.loop = &f->loop;
    registry_init(&f->g.reg, NULL);
    metrics_init(&f->g.metrics);
    return f;
}

static int setup(void **state)
{
    *state = fx_new();
    return 0;
}

static void fx_free(struct fixture *f)
{
    metrics_free(&f->g.metrics);
    registry_free(&f->g.reg);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    xfree(f);
}

static int teardown(void **state)
{
    fx_free(*state);
    return 0;
}

static struct node *add(struct fixture *f, const char *name, int port, const char *const *models,
                        size_t n_models)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct node *n = NULL;
    assert_int_equal(registry_add(&f->g.reg, name, url, NODE_KIND_OPENAI, NULL, &n, NULL), 0);
    struct strv ids[4];
    for (size_t i = 0; i < n_models; i++) ids[i] = strv_from_cstr(models[i]);
    registry_set_models(n, ids, n_models);
    for (unsigned i = 0; i < f->g.reg.cfg.rise; i++) registry_probe_ok(&f->g.reg, n, 1);
    return n;
}

struct
try {
    int status;
    int transport_err;
    const char *body;
    uint64_t retry_after_s;
    unsigned caps;
    const char *model;
};

/* One attempt as the proxy runs it; returns the capability marked. */
static unsigned attempt(struct fixture *f, struct acct_request *r, struct node *n, struct try t)
{
    struct strv model = strv_from_cstr(t.model ? t.model : "m");
    acct_begin(&f->g, n, model);
    struct attempt_obs obs = {
        .transport_err = t.transport_err,
        .status = t.status,
        .has_retry_after = t.retry_after_s > 0,
        .complete = t.status >= 200 && t.status < 300,
        .got_bytes = t.status != 0,
    };
    size_t blen = t.body ? strlen(t.body) : 0;
    if (t.status >= 400) outcome_scan_error_body(t.body, blen, &obs);
    struct outcome o = outcome_classify(&obs);
    struct acct_attempt a = {
        .node = n,
        .model = model,
        .caps = t.caps ? t.caps : CAP_CHAT,
        .status = t.status,
        .transport_err = t.transport_err,
        .retry_after_s = t.retry_after_s,
        .body = t.body,
        .body_len = blen,
        .dur_ms = 10,
    };
    unsigned marked = acct_outcome(&f->g, r, &a, &o);
    bool stream_counted = false;
    acct_end(&f->g, n, model, &stream_counted);
    return marked;
}

static struct node_model *model_of(struct node *n, const char *id)
{
    struct node_model *m = node_model_find(n, strv_from_cstr(id));
    assert_non_null(m);
    return m;
}

/* In-flight counts go up and down per node and per model; a stream counts once. */
static void test_begin_progress_end(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"m", "n"};
    struct node *a = add(f, "a", 9001, ms, 2);
    acct_begin(&f->g, a, STRV_LIT("m"));
    acct_begin(&f->g, a, STRV_LIT("m"));
    assert_int_equal(a->inflight, 2);
    assert_int_equal(model_of(a, "m")->inflight, 2);
    assert_int_equal(model_of(a, "n")->inflight, 0);
    bool sc = false;
    acct_progress(&f->g, a, true, &sc);
    acct_progress(&f->g, a, true, &sc);
    assert_int_equal(a->streams_active, 1);
    acct_end(&f->g, a, STRV_LIT("m"), &sc);
    assert_false(sc);
    assert_int_equal(a->streams_active, 0);
    assert_int_equal(a->inflight, 1);
    assert_int_equal(model_of(a, "m")->inflight, 1);
    bool sc2 = false;
    acct_end(&f->g, a, STRV_LIT("m"), &sc2);
    acct_end(&f->g, a, STRV_LIT("m"), &sc2); /* never below zero */
    assert_int_equal(a->inflight, 0);
    assert_int_equal(model_of(a, "m")->inflight, 0);
}

/* Success resets the fault run and ends the marks for what the request used (only those). */
static void test_success_resets_and_contradicts(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"m"};
    struct node *a = add(f, "a", 9001, ms, 1);
    add(f, "b", 9002, ms, 1);
    struct acct_request r = {0};
    attempt(f, &r, a, (struct try){.transport_err = UV_ECONNREFUSED});
    attempt(f, &r, a, (struct try){.transport_err = UV_ECONNRESET});
    assert_int_equal(a->consecutive_faults, 2); /* transport failures count at once */
    struct node_model *m = model_of(a, "m");
    registry_mark_capability(&f->g.reg, a, m, CAP_TOOLS, 1, "no tools");
    registry_mark_capability(&f->g.reg, a, m, CAP_VISION, 1, "no vision");
    registry_mark_inventory_miss(&f->g.reg, a, m, 1, "404");

    attempt(f, &r, a, (struct try){.status = 200, .caps = CAP_CHAT | CAP_TOOLS});
    assert_int_equal(a->consecutive_faults, 0);
    assert_false(m->inventory_miss);
    assert_int_equal(m->caps_absent, CAP_VISION);
    assert_int_equal(a->requests_total, 1);
    assert_true(a->last_success_ms > 0);
    assert_int_equal(f->g.metrics.outcomes[OUTCOME_SUCCESS], 1);
    assert_int_equal(f->g.metrics.outcomes[OUTCOME_NODE_FAULT], 2);
}

/* A client error costs the node nothing and proves it alive; it resets nothing either. */
static void test_client_error_leaves_faults(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"m"};
    struct node *a = add(f, "a", 9001, ms, 1);
    struct acct_request r = {0};
    attempt(f, &r, a, (struct try){.transport_err = UV_ETIMEDOUT});
    assert_int_equal(a->consecutive_faults, 1);
    a->last_success_ms = 0;
    attempt(f, &r, a, (struct try){.status = 400, .body = "{\"error\":\"bad temperature\"}"});
    assert_int_equal(f->g.metrics.outcomes[OUTCOME_CLIENT_ERROR], 1);
    assert_int_equal(a->consecutive_faults, 1);
    assert_int_equal(a->faults_total, 1);
    assert_true(a->last_success_ms > 0);
    acct_settle(&f->g, &r);
    assert_int_equal(a->consecutive_faults, 1);
}

/* A busy answer lowers the limit (never off), costs no fault, and is remembered for the
 * request's Retry-After. */
static void test_busy_lowers_limit(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"m"};
    struct node *a = add(f, "a", 9001, ms, 1);
    struct acct_request r = {0};
    /* 7 others in flight, and this one: 8 when it answered */
    for (int i = 0; i < 7; i++) acct_begin(&f->g, a, STRV_LIT("m"));
    /* a lone busy answer among successes lowers nothing */
    struct acct_request r0 = {0};
    attempt(f, &r0, a, (struct try){.status = 429, .retry_after_s = 7});
    assert_int_equal(a->conc_limit, 0);
    a->busy_share_pm = 1000; /* busy answers are most of its recent ones (EWMA) */
    attempt(f, &r, a, (struct try){.status = 429, .retry_after_s = 7});
    assert_int_equal(a->conc_limit, 4);
    assert_false(node_is_cooled(a, gw_now_ms(&f->g)));
    assert_int_equal(a->consecutive_faults, 0);
    assert_int_equal(a->busy_total, 2);
    assert_int_equal(f->g.metrics.busy_total, 2);
    assert_int_equal(r.busy_count, 1);
    assert_int_equal(r.busy_retry_s, 7);
    assert_int_equal(a->inflight, 7);
}

/* The limit grows only from successes at the limit: with limit 2 and requests one at a time
 * (one in flight when each answers), it must stay 2 (docs/gateway.md "Busy answers": "grows by
 * one per limit's worth of successes at the limit"). */
static void test_limit_grows_only_at_the_limit(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"m"};
    struct node *a = add(f, "a", 9001, ms, 1);
    struct acct_request r = {0};
    /* 4 in flight at the busy answer: the limit becomes 2 */
    for (int i = 0; i < 3; i++) acct_begin(&f->g, a, STRV_LIT("m"));
    a->busy_share_pm = 1000; /* busy answers are most of its recent ones (EWMA) */
    attempt(f, &r, a, (struct try){.status = 429, .retry_after_s = 1});
    for (int i = 0; i < 3; i++) {
        bool sc = false;
        acct_end(&f->g, a, STRV_LIT("m"), &sc);
    }
    assert_int_equal(a->conc_limit, 2);
    assert_int_equal(a->inflight, 0);
    for (int i = 0; i < 6; i++) attempt(f, &r, a, (struct try){.status = 200});
    assert_int_equal(a->conc_limit, 2);
    /* at the limit (this one and another in flight) it grows after 2 */
    acct_begin(&f->g, a, STRV_LIT("m"));
    attempt(f, &r, a, (struct try){.status = 200});
    attempt(f, &r, a, (struct try){.status = 200});
    assert_int_equal(a->conc_limit, 3);
}

/* A busy answer halves from the in-flight count when the node answered: 3 in flight
 * (this request included) gives 1. */
static void test_busy_halves_from_inflight_at_answer(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"m"};
    struct node *a = add(f, "a", 9001, ms, 1);
    struct acct_request r = {0};
    for (int i = 0; i < 2; i++) acct_begin(&f->g, a, STRV_LIT("m"));
    a->busy_share_pm = 1000; /* busy answers are most of its recent ones (EWMA) */
    attempt(f, &r, a, (struct try){.status = 429, .retry_after_s = 1});
    assert_int_equal(a->conc_limit, 1);
}

/* A capability miss marks only the capability the answer names, on the routed model only, and
 * costs no fault. */
static void test_capability_miss_marks_named(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"cat-id", "other"};
    struct node *a = add(f, "a", 9001, ms, 2);
    struct acct_request r = {0};
    unsigned marked = attempt(
        f, &r, a,
        (struct try){.status = 400,
                     .body = "{\"error\":{\"message\":\"this model does not support tools\"}}",
                     .caps = CAP_CHAT | CAP_TOOLS,
                     .model = "cat-id"});
    assert_int_equal(marked, CAP_TOOLS);
    assert_int_equal(f->g.metrics.outcomes[OUTCOME_CAPABILITY_MISS], 1);
    uint64_t now = gw_now_ms(&f->g);
    assert_int_equal(model_marks_block(model_of(a, "cat-id"), CAP_ALL, now), CAP_TOOLS);
    assert_int_equal(model_marks_block(model_of(a, "other"), CAP_ALL, now), 0);
    assert_int_equal(a->consecutive_faults, 0);
    acct_settle(&f->g, &r);
    assert_int_equal(a->consecutive_faults, 0);
    /* the cause is kept, sanitised (no quotes) */
    assert_non_null(strstr(model_of(a, "cat-id")->marks->cap[3].cause, "status 400"));
    assert_null(strchr(model_of(a, "cat-id")->marks->cap[3].cause, '"'));
    /* a 501 naming nothing, on a request that used an optional feature: marks nothing */
    marked = attempt(f, &r, a,
                     (struct try){.status = 501,
                                  .body = "not implemented",
                                  .caps = CAP_CHAT | CAP_VISION,
                                  .model = "other"});
    assert_int_equal(marked, 0);
    assert_int_equal(model_of(a, "other")->caps_absent, 0);
    /* a model the node does not list: nothing to mark, no crash */
    marked = attempt(f, &r, a,
                     (struct try){.status = 400,
                                  .body = "does not support tools",
                                  .caps = CAP_CHAT | CAP_TOOLS,
                                  .model = "unknown"});
    assert_int_equal(marked, 0);
}

/* An inventory miss marks the routed model, not the node's fault record. */
static void test_inventory_miss(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"m", "n"};
    struct node *a = add(f, "a", 9001, ms, 2);
    struct acct_request r = {0};
    attempt(
        f, &r, a,
        (struct try){.status = 404, .body = "{\"error\":{\"message\":\"model 'm' not found\"}}"});
    assert_int_equal(f->g.metrics.outcomes[OUTCOME_INVENTORY_MISS], 1);
    assert_true(model_of(a, "m")->inventory_miss);
    assert_false(model_of(a, "n")->inventory_miss);
    assert_int_equal(a->consecutive_faults, 0);
}

/* The poison rule: a 5xx on two nodes counts against neither; a 5xx then a success elsewhere
 * counts once against the first; a lone 5xx (no other node tried) counts. */
static void test_poison_rule(void **state)
{
    struct fixture *f = *state;
    const char *ms[] = {"m"};
    struct node *a = add(f, "a", 9001, ms, 1);
    struct node *b = add(f, "b", 9002, ms, 1);
    struct node *c = add(f, "c", 9003, ms, 1);

    struct acct_request r = {0};
    attempt(f, &r, a, (struct try){.status = 500, .body = "boom"});
    assert_int_equal(a->consecutive_faults, 0); /* held back */
    assert_false(acct_is_poison(&r));
    attempt(f, &r, b, (struct try){.status = 502, .body = "boom"});
    assert_true(acct_is_poison(&r));
    acct_forgive(&r);
    acct_settle(&f->g, &r); /* whatever the proxy does after, nothing is left to count */
    assert_int_equal(a->consecutive_faults, 0);
    assert_int_equal(b->consecutive_faults, 0);
    assert_int_equal(a->faults_total + b->faults_total, 0);

    struct acct_request r2 = {0};
    attempt(f, &r2, a, (struct try){.status = 500, .body = "boom"});
    attempt(f, &r2, c, (struct try){.status = 200});
    assert_false(acct_is_poison(&r2));
    acct_settle(&f->g, &r2);
    assert_int_equal(a->consecutive_faults, 1);
    assert_int_equal(c->consecutive_faults, 0);
    acct_settle(&f->g, &r2); /* settling twice counts once */
    assert_int_equal(a->consecutive_faults, 1);
    assert_int_equal(a->faults_total, 1);

    /* a transport failure and then a 5xx elsewhere: the transport failure counted at once,
     * and one 5xx is no poison */
    struct acct_request r3 = {0};
    attempt(f, &r3, b, (struct try){.transport_err = UV_ECONNRESET});
    assert_int_equal(b->consecutive_faults, 1);
    attempt(f, &r3, c, (struct try){.status = 500, .body = "boom"});
    assert_false(acct_is_poison(&r3));
    acct_settle(&f->g, &r3);
    assert_int_equal(c->consecutive_faults, 1);
}

int main(void)
{
    log_set_level(LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_begin_progress_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_resets_and_contradicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_error_leaves_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_lowers_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_grows_only_at_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_halves_from_inflight_at_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capability_miss_marks_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inventory_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poison_rule, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
