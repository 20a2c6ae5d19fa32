/* Client keys (src/gw/keys.c, usage.c, audit.c): secrets and their hashes, glob entitlements,
 * token buckets (refill math with an injected clock), reset formatting, budget periods, the
 * parsing of a key's spec, admission and release on a gateway without a store, usage
 * aggregation and the failed-authentication log limiter; with several gateways, the shares of
 * the fleet buckets, admission from them, and key rows changed through other gateways. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "gw/audit.h"
#include "gw/gw.h"
#include "gw/keys.h"
#include "gw/sync.h"
#include "gw/usage.h"
#include "store/store_keys.h"

static uint64_t fake_us;
static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_us;
}

static int spec_from(struct key_spec *s, const char *json)
{
    key_spec_init(s);
    char why[200];
    return key_spec_apply(s, json, strlen(json), why, sizeof why);
}

static void test_secret_format_and_hash(void **state)
{
    (void)state;
    char a[KEYS_SECRET_BYTES + 1], b[KEYS_SECRET_BYTES + 1];
    assert_int_equal(keys_new_secret(a), 0);
    assert_int_equal(keys_new_secret(b), 0);
    assert_int_equal(strlen(a), 43);
    assert_memory_equal(a, "dk-", 3);
    for (size_t i = 3; i < strlen(a); i++)
        assert_true((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'z') ||
                    (a[i] >= 'A' && a[i] <= 'Z'));
    assert_string_not_equal(a, b);
    /* the table keeps SHA-256 hex of the secret, never the secret */
    struct gw g;
    memset(&g, 0, sizeof g);
    assert_int_equal(keys_open(&g, NULL), 0);
    struct key_spec s;
    assert_int_equal(spec_from(&s, "{\"name\":\"t\"}"), 0);
    struct client_key *k = keys_add_for_test(&g, a, &s);
    char hex[65];
    sha256_hex(a, strlen(a), hex);
    assert_string_equal(k->hash, hex);
    assert_null(strstr(k->hash, a + 3));
    assert_memory_equal(k->prefix, a, 8);
    /* the masked form shows 5 + 4 characters, never the rest */
    char shown[32];
    keys_mask_token(strv_from_cstr(a), shown, sizeof shown);
    assert_int_equal(strlen(shown), 12);
    assert_memory_equal(shown, a, 5);
    keys_mask_token(STRV_LIT("short"), shown, sizeof shown);
    assert_string_equal(shown, "***");
    key_spec_free(&s);
    keys_close(&g);
}

static void test_globs(void **state)
{
    (void)state;
    struct key_spec s;
    assert_int_equal(spec_from(&s, "{\"name\":\"t\",\"models\":[\"llama-*\",\"org/qwen?\"]}"), 0);
    assert_true(key_spec_allows_model(&s, STRV_LIT("llama-3-8b")));
    assert_true(key_spec_allows_model(&s, STRV_LIT("llama-")));
    assert_true(key_spec_allows_model(&s, STRV_LIT("org/qwen2")));
    assert_false(key_spec_allows_model(&s, STRV_LIT("org/qwen25")));
    assert_false(key_spec_allows_model(&s, STRV_LIT("mistral")));
    assert_false(key_spec_allows_model(&s, STRV_LIT("xllama-3")));
    assert_false(key_spec_allows_model(&s, STRV_LIT("")));
    key_spec_free(&s);
    assert_int_equal(spec_from(&s, "{\"name\":\"all\"}"), 0);
    assert_true(key_spec_allows_model(&s, STRV_LIT("anything/at:all")));
    key_spec_free(&s);
}

static void test_bucket_refill(void **state)
{
    (void)state;
    struct key_bucket b;
    key_bucket_init(&b, 60, 1000); /* one per second, 60 at most */
    assert_int_equal(key_bucket_remaining(&b, 1000), 60);
    for (int i = 0; i < 60; i++) assert_true(key_bucket_take(&b, 1, 1000));
    assert_false(key_bucket_take(&b, 1, 1000));
    assert_int_equal(key_bucket_wait_ms(&b, 1, 1000), 1000);
    assert_int_equal(key_bucket_wait_ms(&b, 1, 1400), 600); /* continuous, not per window */
    assert_false(key_bucket_take(&b, 1, 1999));
    assert_true(key_bucket_take(&b, 1, 2000));
    assert_int_equal(key_bucket_remaining(&b, 2000), 0);
    assert_int_equal(key_bucket_reset_ms(&b, 2000), 60000);
    assert_int_equal(key_bucket_remaining(&b, 2000 + 30000), 30);
    assert_int_equal(key_bucket_remaining(&b, 2000 + 600000), 60); /* capped */
    /* rpm = 2: the third in a minute waits 30 s */
    key_bucket_init(&b, 2, 0);
    assert_true(key_bucket_take(&b, 1, 0));
    assert_true(key_bucket_take(&b, 1, 10));
    assert_false(key_bucket_take(&b, 1, 20));
    assert_int_equal(key_bucket_wait_ms(&b, 1, 20), 29980); /* refilled 40 ms worth */
    /* a debt (tokens known after the answer) waits until the level is above zero */
    key_bucket_init(&b, 1000, 0);
    key_bucket_debit(&b, 1500, 0);
    assert_int_equal(key_bucket_remaining(&b, 0), 0);
    assert_int_equal(key_bucket_wait_ms(&b, 0, 0), 30001);
    assert_int_equal(key_bucket_wait_ms(&b, 0, 30001), 0);
    /* unlimited never refuses */
    key_bucket_init(&b, 0, 0);
    assert_true(key_bucket_take(&b, 1000000, 0));
    assert_int_equal(key_bucket_wait_ms(&b, 5, 0), 0);
    /* a lower rate caps the level; a higher one keeps it */
    key_bucket_init(&b, 100, 0);
    key_bucket_set_rate(&b, 10, 0);
    assert_int_equal(key_bucket_remaining(&b, 0), 10);
    key_bucket_set_rate(&b, 100, 0);
    assert_int_equal(key_bucket_remaining(&b, 0), 10);
    /* time that runs backwards refills nothing */
    key_bucket_init(&b, 60, 5000);
    assert_true(key_bucket_take(&b, 60, 5000));
    assert_int_equal(key_bucket_remaining(&b, 1000), 0);
}

static void test_reset_format(void **state)
{
    (void)state;
    char s[32];
    key_format_reset(0, s, sizeof s);
    assert_string_equal(s, "0ms");
    key_format_reset(20, s, sizeof s);
    assert_string_equal(s, "20ms");
    key_format_reset(1000, s, sizeof s);
    assert_string_equal(s, "1s");
    key_format_reset(1500, s, sizeof s);
    assert_string_equal(s, "1.5s");
    key_format_reset(360000, s, sizeof s);
    assert_string_equal(s, "6m0s");
    key_format_reset(61250, s, sizeof s);
    assert_string_equal(s, "1m1.25s");
}

static void test_budget_periods(void **state)
{
    (void)state;
    /* 2026-02-14T12:00:00Z = 1771070400000 */
    uint64_t t = 1771070400000ull;
    assert_int_equal(key_budget_period_start(KEY_BUDGET_DAY, t), 1771027200000ull);
    assert_int_equal(key_budget_period_end(KEY_BUDGET_DAY, t), 1771113600000ull);
    /* month: 2026-02-01T00:00Z .. 2026-03-01T00:00Z (28 days) */
    assert_int_equal(key_budget_period_start(KEY_BUDGET_MONTH, t), 1769904000000ull);
    assert_int_equal(key_budget_period_end(KEY_BUDGET_MONTH, t), 1772323200000ull);
    /* 2024 is a leap year: Feb has 29 days (2024-02-10 → 2024-03-01) */
    uint64_t l = 1707523200000ull;
    assert_int_equal(key_budget_period_end(KEY_BUDGET_MONTH, l) -
                         key_budget_period_start(KEY_BUDGET_MONTH, l),
                     29ull * 86400000ull);
}

static void test_spec_parse(void **state)
{
    (void)state;
    struct key_spec s;
    assert_int_equal(spec_from(&s, "{\"name\":\"a\",\"owner\":\"bob\",\"team\":\"ml\","
                                   "\"models\":[\"m*\"],\"endpoints\":[\"chat\",\"models\"],"
                                   "\"rpm\":2,\"tpm\":1000,\"max_concurrent\":3,"
                                   "\"budget_tokens\":5000,\"budget_period\":\"month\","
                                   "\"expires_ms\":null}"),
                     0);
    assert_string_equal(s.name, "a");
    assert_string_equal(s.owner, "bob");
    assert_int_equal(s.endpoints, KEP_CHAT | KEP_MODELS);
    assert_int_equal(s.rpm, 2);
    assert_int_equal(s.tpm, 1000);
    assert_int_equal(s.max_concurrent, 3);
    assert_int_equal(s.budget_tokens, 5000);
    assert_int_equal(s.budget_period, KEY_BUDGET_MONTH);
    /* round trip */
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(key_spec_to_json(&s, &b), 0);
    struct key_spec t;
    assert_int_equal(spec_from(&t, b.p), 0);
    assert_int_equal(t.rpm, 2);
    assert_int_equal(t.n_models, 1);
    assert_string_equal(t.models[0], "m*");
    key_spec_free(&t);
    buf_free(&b);
    /* an update replaces only what it names; a refused one changes nothing */
    char why[200];
    assert_int_equal(key_spec_apply(&s, "{\"rpm\":7}", 9, why, sizeof why), 0);
    assert_int_equal(s.rpm, 7);
    assert_int_equal(s.tpm, 1000);
    static const char *const bad[] = {"{\"rpm\":-1}",
                                      "{\"rpm\":1000000001}",
                                      "{\"rpm\":1.5}",
                                      "{\"rpm\":\"2\"}",
                                      "{\"models\":[]}",
                                      "{\"models\":[\"\"]}",
                                      "{\"models\":\"x\"}",
                                      "{\"endpoints\":[\"x\"]}",
                                      "{\"name\":\"\"}",
                                      "{\"name\":\"a\\nb\"}",
                                      "{\"budget_period\":\"week\"}",
                                      "{\"unknown\":1}",
                                      "[1]",
                                      "{",
                                      "",
                                      "{\"expires_ms\":-5}",
                                      "{\"name\":\"a\\u0000b\"}",
                                      "{\"max_concurrent\":1000001}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        if (key_spec_apply(&s, bad[i], strlen(bad[i]), why, sizeof why) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_true(why[0] != '\0');
        assert_int_equal(s.rpm, 7);
    }
    key_spec_free(&s);
    /* a create needs a name */
    assert_int_not_equal(spec_from(&s, "{\"rpm\":1}"), 0);
    key_spec_free(&s);
}

static void test_check_and_release(void **state)
{
    (void)state;
    clock_set_source(fake_clock, NULL);
    fake_us = 1000000;
    struct gw g;
    memset(&g, 0, sizeof g);
    assert_int_equal(keys_open(&g, NULL), 0);
    g.usage = usage_new();
    struct key_spec s;
    assert_int_equal(spec_from(&s, "{\"name\":\"t\",\"models\":[\"llama-*\"],\"rpm\":2,"
                                   "\"tpm\":100,\"max_concurrent\":1,"
                                   "\"endpoints\":[\"chat\"]}"),
                     0);
    struct client_key *k = keys_add_for_test(&g, "dk-test-secret-0123456789", &s);
    key_spec_free(&s);
    struct key_grant gr;
    uint64_t ra;
    const char *code;
    uint64_t now = clock_now_ms(), wall = 1771070400000ull;
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("mistral"), now, wall, &gr, &ra, &code),
                     403);
    assert_string_equal(code, "model_not_found");
    assert_int_equal(
        keys_check(&g, k, KEP_EMBEDDINGS, STRV_LIT("llama-3"), now, wall, &gr, &ra, &code), 403);
    assert_string_equal(code, "endpoint_not_allowed");
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("llama-3"), now, wall, &gr, &ra, &code),
                     0);
    assert_true(gr.has_req && gr.has_tok);
    assert_string_equal(gr.lim_req, "2");
    assert_string_equal(gr.rem_req, "1");
    struct http_header h[8];
    assert_int_equal(keys_grant_headers(&gr, h, 8), 6);
    assert_true(strv_eq_cstr(h[0].name, "x-ratelimit-limit-requests"));
    /* a grant as keys_admit makes it: concurrency 1 is now taken */
    k->inflight++;
    k->refs++;
    gr.key = k;
    gr.key_id = k->id;
    gr.counted = true;
    snprintf(gr.model, sizeof gr.model, "llama-3");
    struct key_grant g2;
    memset(&g2, 0, sizeof g2);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("llama-3"), now, wall, &g2, &ra, &code),
                     429);
    assert_string_equal(code, "concurrency");
    /* the answer used 150 tokens: the tokens bucket is in debt */
    keys_release(&g, &gr, 200, 100, 50, "n1");
    assert_null(gr.key);
    assert_string_equal(gr.lim_req, "2");      /* headers may be written after the release */
    keys_release(&g, &gr, 200, 100, 50, "n1"); /* once only */
    assert_int_equal(k->inflight, 0);
    assert_int_equal(usage_pending_rows(g.usage), 1);
    memset(&g2, 0, sizeof g2);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("llama-3"), now, wall, &g2, &ra, &code),
                     429);
    assert_string_equal(code, "tokens");
    assert_int_equal(ra, 31); /* 50 tokens of debt at 100/min: 30 s and a bit */
    fake_us += 31000000;
    now = clock_now_ms();
    memset(&g2, 0, sizeof g2);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("llama-3"), now, wall, &g2, &ra, &code),
                     0); /* second request of the minute (refilled a bit too) */
    memset(&g2, 0, sizeof g2);
    int st = keys_check(&g, k, KEP_CHAT, STRV_LIT("llama-3"), now, wall, &g2, &ra, &code);
    (void)st;
    /* releasing a zeroed grant does nothing */
    memset(&g2, 0, sizeof g2);
    keys_release(&g, &g2, 200, 0, 0, NULL);
    usage_free(g.usage);
    g.usage = NULL;
    keys_close(&g);
    clock_set_source(NULL, NULL);
}

static void test_rpm_third_refused(void **state)
{
    (void)state;
    struct gw g;
    memset(&g, 0, sizeof g);
    assert_int_equal(keys_open(&g, NULL), 0);
    struct key_spec s;
    assert_int_equal(spec_from(&s, "{\"name\":\"t\",\"rpm\":2}"), 0);
    struct client_key *k = keys_add_for_test(&g, "dk-rpm-secret-0123456789", &s);
    key_spec_free(&s);
    key_bucket_init(&k->req_bucket, 2, 5000);
    struct key_grant gr;
    uint64_t ra;
    const char *code;
    for (int i = 0; i < 2; i++) {
        memset(&gr, 0, sizeof gr);
        assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("m"), 5000, 0, &gr, &ra, &code), 0);
    }
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("m"), 5000, 0, &gr, &ra, &code), 429);
    assert_string_equal(code, "requests");
    assert_int_equal(ra, 30);
    assert_string_equal(gr.rem_req, "0");
    assert_string_equal(gr.reset_req, "1m0s");
    keys_close(&g);
}

static void test_budget_refuses(void **state)
{
    (void)state;
    struct gw g;
    memset(&g, 0, sizeof g);
    assert_int_equal(keys_open(&g, NULL), 0);
    struct key_spec s;
    assert_int_equal(spec_from(&s, "{\"name\":\"t\",\"budget_tokens\":100}"), 0);
    struct client_key *k = keys_add_for_test(&g, "dk-budget-secret-0123456789", &s);
    key_spec_free(&s);
    uint64_t wall = 1771070400000ull; /* noon: 12 h left in the day */
    k->budget_period_start = key_budget_period_start(KEY_BUDGET_DAY, wall);
    k->budget_used = 100;
    struct key_grant gr;
    memset(&gr, 0, sizeof gr);
    uint64_t ra;
    const char *code;
    assert_int_equal(keys_check(&g, k, 0, STRV_LIT("m"), 0, wall, &gr, &ra, &code), 429);
    assert_string_equal(code, "insufficient_quota");
    assert_int_equal(ra, 12 * 3600);
    /* the next day starts afresh */
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, k, 0, STRV_LIT("m"), 0, wall + 43200000ull, &gr, &ra, &code),
                     0);
    assert_int_equal(k->budget_used, 0);
    /* an expired key is refused as unauthorized */
    k->spec.expires_ms = wall;
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, k, 0, STRV_LIT("m"), 0, wall, &gr, &ra, &code), 401);
    keys_close(&g);
}

static void test_endpoints_of_paths(void **state)
{
    (void)state;
    assert_int_equal(key_endpoint_of_path(STRV_LIT("/v1/chat/completions")), KEP_CHAT);
    assert_int_equal(key_endpoint_of_path(STRV_LIT("/v1/completions")), KEP_COMPLETIONS);
    assert_int_equal(key_endpoint_of_path(STRV_LIT("/v1/embeddings")), KEP_EMBEDDINGS);
    assert_int_equal(key_endpoint_of_path(STRV_LIT("/api/chat")), KEP_OLLAMA);
    assert_int_equal(key_endpoint_of_path(STRV_LIT("/v1/models")), KEP_MODELS);
    assert_int_equal(key_endpoint_parse(STRV_LIT("ollama")), KEP_OLLAMA);
    assert_int_equal(key_endpoint_parse(STRV_LIT("Chat")), 0);
}

static void test_usage_aggregates_and_caps(void **state)
{
    (void)state;
    struct usage *u = usage_new();
    uint64_t t = 1771070400000ull;
    usage_add(u, "key_a", "m", "n1", 200, 10, 5, t);
    usage_add(u, "key_a", "m", "n1", 500, 1, 0, t + 1000);
    usage_add(u, "key_a", "m", "n1", 200, 1, 1, t + 60000); /* next minute */
    usage_add(u, "key_b", "m", NULL, 429, 0, 0, t);
    assert_int_equal(usage_pending_rows(u), 3);
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(usage_render(u, &b), 0);
    assert_non_null(strstr(b.p, "drover_key_requests_total{key=\"key_a\",model=\"m\"} 3\n"));
    assert_non_null(strstr(b.p, "drover_key_errors_total{key=\"key_a\",model=\"m\"} 1\n"));
    assert_non_null(strstr(b.p, "drover_key_prompt_tokens_total{key=\"key_a\",model=\"m\"} 12\n"));
    assert_non_null(strstr(b.p, "drover_key_errors_total{key=\"key_b\",model=\"m\"} 1\n"));
    buf_free(&b);
    /* Prometheus series are capped; the rest fold into _other */
    char m[32];
    for (int i = 0; i < USAGE_MAX_SERIES + 50; i++) {
        snprintf(m, sizeof m, "model-%d", i);
        usage_add(u, "key_c", m, "n", 200, 0, 0, t);
    }
    buf_init(&b, 64 << 20);
    assert_int_equal(usage_render(u, &b), 0);
    assert_non_null(strstr(b.p, "key=\"_other\",model=\"_other\""));
    size_t lines = 0;
    for (const char *p = b.p; (p = strstr(p, "drover_key_requests_total{")); p++) lines++;
    assert_true(lines <= USAGE_MAX_SERIES + 1);
    buf_free(&b);
    usage_free(u);
}

static void test_tokens_from_bodies(void **state)
{
    (void)state;
    uint64_t p, c;
    const char *oa =
        "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"\\\"usage\\\"\"}}],"
        "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}";
    assert_true(usage_tokens_from_body(oa, strlen(oa), &p, &c));
    assert_int_equal(p, 12);
    assert_int_equal(c, 7);
    const char *ol = "{\"model\":\"m\",\"done\":true,\"prompt_eval_count\":5,\"eval_count\":9}";
    assert_true(usage_tokens_from_body(ol, strlen(ol), &p, &c));
    assert_int_equal(p, 5);
    assert_int_equal(c, 9);
    const char *emb = "{\"data\":[],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":3}}";
    assert_true(usage_tokens_from_body(emb, strlen(emb), &p, &c));
    assert_int_equal(p, 3);
    assert_int_equal(c, 0);
    static const char *const none[] = {"",
                                       "[1]",
                                       "{\"usage\":null}",
                                       "{\"usage\":{\"prompt_tokens\":-1}}",
                                       "{\"usage\":{\"prompt_tokens\":1.5}}",
                                       "not json"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        assert_false(usage_tokens_from_body(none[i], strlen(none[i]), &p, &c));
        assert_int_equal(p + c, 0);
    }
}

static void test_log_limit(void **state)
{
    (void)state;
    struct log_limit l = {.per_min = 3};
    uint64_t told = 0;
    int allowed = 0;
    for (int i = 0; i < 10; i++) allowed += log_limit_allow(&l, 1000 + (uint64_t)i, &told);
    assert_int_equal(allowed, 3);
    assert_true(log_limit_allow(&l, 62000, &told));
    assert_int_equal(told, 7); /* the summary of the last window */
    assert_true(log_limit_allow(&l, 62001, &told));
    assert_int_equal(told, 0);
}

static void test_admin_tokens_config(void **state)
{
    (void)state;
    struct gw_config c, n;
    struct gw_error err = {0};
    const char *yaml = "admin_tokens:\n"
                       "  - {id: alice, token: viewer-token-0123456789, role: viewer}\n"
                       "  - {token_sha256: "
                       "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8, "
                       "role: operator}\n"
                       "keys:\n  required: true\n";
    assert_int_equal(gw_config_parse(&c, "t.yaml", yaml, strlen(yaml), &err), 0);
    assert_int_equal(c.n_admin_tokens, 2);
    assert_string_equal(c.admin_tokens[0].id, "alice");
    assert_int_equal(c.admin_tokens[0].role, ADMIN_ROLE_VIEWER);
    char hex[65];
    sha256_hex("viewer-token-0123456789", 23, hex);
    assert_string_equal(c.admin_tokens[0].hash, hex); /* only the hash is kept */
    assert_string_equal(c.admin_tokens[1].id, "token-2");
    assert_int_equal(c.admin_tokens[1].role, ADMIN_ROLE_OPERATOR);
    assert_true(c.keys_required);
    /* tokens or keys.required count for a non-loopback listener */
    xfree(c.listen);
    c.listen = xstrdup("0.0.0.0:8080");
    xfree(c.admin_listen);
    c.admin_listen = xstrdup("0.0.0.0:8081");
    c.allow_plain_http = true; /* the TLS rule is test_config's */
    assert_int_equal(gw_config_exposure_check(&c, NULL, NULL, &err), 0);
    /* a reload that drops them all is refused */
    assert_int_equal(gw_config_parse(&n, "n.yaml", "log_level: info\n", 16, &err), 0);
    assert_int_not_equal(gw_config_reload_check(&c, &n, &err), 0);
    gw_config_free(&n);
    gw_config_free(&c);
    static const char *const bad[] = {
        "admin_tokens:\n  - {token: short, role: viewer}\n",
        "admin_tokens:\n  - {token: long-enough-token-123, role: admin}\n",
        "admin_tokens:\n  - {token: long-enough-token-123}\n",
        "admin_tokens:\n  - {token_sha256: ABC, role: viewer}\n",
        "admin_tokens:\n  - {role: viewer}\n",
        "admin_tokens:\n  - {id: a, token: long-enough-token-123, role: viewer}\n"
        "  - {id: a, token: long-enough-token-456, role: viewer}\n",
        "admin_tokens:\n  - {token: long-enough-token-123, role: viewer, extra: 1}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (gw_config_parse(&c, "b.yaml", bad[i], strlen(bad[i]), &err) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err.msg, "b.yaml:"));
        gw_config_free(&c);
    }
}

/* The gateway asks a stream for its usage with every other byte of the body kept. */
static void test_ask_stream_usage(void **state)
{
    (void)state;
    const char *in =
        "  {\"model\":\"m\", "
        "\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"\\u00e9\"}]}\n";
    struct buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(usage_ask_stream_usage(strv_from_cstr(in), &out), 1);
    const char *want =
        "  {\"stream_options\":{\"include_usage\":true},\"model\":\"m\", "
        "\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"\\u00e9\"}]}\n";
    assert_string_equal(out.p, want);
    buf_free(&out);
    /* the client's own stream_options (even without include_usage) are left alone */
    const char *own = "{\"model\":\"m\",\"stream_options\":{\"include_usage\":false}}";
    buf_init(&out, 1 << 16);
    assert_int_equal(usage_ask_stream_usage(strv_from_cstr(own), &out), 0);
    assert_int_equal(out.len, 0);
    /* a nested stream_options is not the top-level one */
    const char *nested = "{\"metadata\":{\"stream_options\":1},\"model\":\"m\"}";
    assert_int_equal(usage_ask_stream_usage(strv_from_cstr(nested), &out), 1);
    assert_non_null(strstr(out.p, "{\"stream_options\":{\"include_usage\":true},\"metadata\""));
    buf_free(&out);
    buf_init(&out, 8); /* over the cap: an error, never a cut body */
    assert_int_equal(usage_ask_stream_usage(strv_from_cstr(in), &out), GW_E_LIMIT);
    buf_free(&out);
}

static void test_usage_only_chunk(void **state)
{
    (void)state;
    const char *last =
        "{\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}";
    const char *with_choice =
        "{\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"prompt_tokens\":3}}";
    const char *null_usage = "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}";
    const char *text = "{\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":{}\"}}]}";
    assert_true(usage_chunk_is_usage_only(last, strlen(last)));
    assert_false(usage_chunk_is_usage_only(with_choice, strlen(with_choice)));
    assert_false(usage_chunk_is_usage_only(null_usage, strlen(null_usage)));
    assert_false(usage_chunk_is_usage_only(text, strlen(text)));
    assert_false(usage_chunk_is_usage_only("not json", 8));
}

/* ---- several gateways --------------------------------------------------------------------- */

enum { U = 60000 };

static void test_share_grant_borrow_report(void **state)
{
    (void)state;
    struct key_share s;
    memset(&s, 0, sizeof s);
    struct key_fleet_view v = {.now_ms = 10000, .interval_ms = 250, .live = 2};
    /* never reconciled: a full bucket's share (30 of 60) may be borrowed, one unit an interval */
    assert_true(key_share_view(&s, 60, &v) == 30 * U);
    int how = key_share_may(&s, 60, 1, &v);
    assert_int_equal(how, 2);
    key_share_ask(&s, 1);
    key_share_take(&s, 1, how);
    assert_true(s.grant == -U && s.borrowed == U);
    key_share_ask(&s, 1);
    assert_int_equal(key_share_may(&s, 60, 1, &v), 0); /* max(1, 60 / (20 × 2)) an interval */
    v.now_ms += 250;
    assert_int_equal(key_share_may(&s, 60, 1, &v), 2); /* the next interval */
    /* the report gives back the debt and wants twice the demand */
    int64_t give, want;
    key_share_report(&s, 60, &give, &want);
    assert_true(give == -U && want == 4 * U && s.grant == 0 && s.demand == 0);
    /* taken from the fleet bucket: 4, leaving 20 untaken */
    key_share_reconciled(&s, 4 * U, 20 * U, v.now_ms);
    assert_true(s.grant == 4 * U && s.borrowed == 0 && s.level == 20 * U);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(key_share_may(&s, 60, 1, &v), 1);
        key_share_take(&s, 1, 1);
    }
    assert_true(s.grant == 0);
    /* remaining shows the untaken level (the fleet's); the wait is the next reconciliation */
    assert_int_equal(key_share_remaining(&s, 60, v.now_ms), 20);
    assert_int_equal(key_share_wait_ms(&s, 60, 1, &v), 250);
    /* a failed report puts everything back */
    key_share_ask(&s, 3);
    s.grant = 2 * U;
    key_share_report(&s, 60, &give, &want);
    key_share_failed(&s);
    assert_true(s.grant == 2 * U && s.demand == 3);
    /* an empty fleet bucket: no borrowing, and the wait is this gateway's share of the refill */
    memset(&s, 0, sizeof s);
    key_share_reconciled(&s, 0, 0, v.now_ms);
    v.now_ms += 250;
    assert_int_equal(key_share_may(&s, 60, 1, &v), 0);
    assert_int_equal(key_share_wait_ms(&s, 60, 1, &v), 1750); /* 2 s at 60/min over 2 gateways */
    /* borrowing at 600/min over 3 gateways: 10 an interval (5 % of the limit for all three),
     * and within this gateway's share of the untaken level (here 12 of 36) */
    memset(&s, 0, sizeof s);
    v.live = 3;
    key_share_reconciled(&s, 0, 36 * U, v.now_ms);
    int admitted = 0;
    for (int i = 0; i < 30; i++) {
        how = key_share_may(&s, 600, 1, &v);
        if (!how) break;
        key_share_take(&s, 1, how);
        admitted++;
    }
    assert_int_equal(admitted, 10);
    v.now_ms += 250; /* the next interval: 2 more (12 of the share; 250 ms of refill is 0.8) */
    for (admitted = 0; admitted < 30; admitted++) {
        how = key_share_may(&s, 600, 1, &v);
        if (!how) break;
        key_share_take(&s, 1, how);
    }
    assert_int_equal(admitted, 2);
    v.now_ms -= 250;
    v.live = 2;
    /* tokens: admitted while above zero, spent after the answer; beyond the grant is borrowed */
    memset(&s, 0, sizeof s);
    key_share_reconciled(&s, 100 * U, 0, v.now_ms);
    assert_int_equal(key_share_may(&s, 1000, 0, &v), 1);
    key_share_spend(&s, 150);
    assert_true(s.grant == -50 * U && s.borrowed == 50 * U);
    assert_int_equal(key_share_may(&s, 1000, 0, &v), 0); /* in debt, the fleet bucket empty */
}

static struct client_key *fleet_key(struct gw *g, const char *secret, const char *json)
{
    struct key_spec s;
    assert_int_equal(spec_from(&s, json), 0);
    struct client_key *k = keys_add_for_test(g, secret, &s);
    key_spec_free(&s);
    return k;
}

/* Admission on a gateway that shares its limits: a borrowed unit, then refusals until a round
 * brings an allowance; the round carries the debt back and the consumption; the budget follows
 * the fleet's total. */
static void test_fleet_admission_and_rounds(void **state)
{
    (void)state;
    clock_set_source(fake_clock, NULL);
    fake_us = 5000000000ull;
    struct gw g;
    memset(&g, 0, sizeof g);
    assert_int_equal(keys_open(&g, NULL), 0);
    keys_fleet_enable(&g, 250);
    assert_true(keys_fleet_enabled(&g));
    struct client_key *k =
        fleet_key(&g, "dk-fleet-secret-0123456789", "{\"name\":\"t\",\"rpm\":2}");
    struct client_key *b =
        fleet_key(&g, "dk-budget2-secret-0123456789", "{\"name\":\"b\",\"budget_tokens\":100}");
    struct key_grant gr;
    uint64_t ra;
    const char *code;
    /* the round's day is checked against the wall clock when it is applied */
    uint64_t now = clock_now_ms(), wall = clock_wall_ms();
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("m"), now, wall, &gr, &ra, &code), 0);
    assert_string_equal(gr.lim_req, "2");
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("m"), now, wall, &gr, &ra, &code), 429);
    assert_string_equal(code, "requests");
    assert_int_equal(ra, 1);
    /* the round: k gives back its debt and wants twice its demand; b reads its budget */
    struct store_limits_round *r = xcalloc(1, sizeof *r);
    r->origin = xstrdup("gw-test");
    keys_fleet_report(&g, r, wall, false);
    assert_int_equal(r->n, 2);
    struct store_key_sync *ek = r->v[0].ref == k ? &r->v[0] : &r->v[1];
    struct store_key_sync *eb = r->v[0].ref == b ? &r->v[0] : &r->v[1];
    assert_true(ek->rpm == 2 && ek->give_req == -U && ek->want_req == 2 * U);
    assert_true(ek->requests == 1 && eb->total);
    assert_true(r->today == (int64_t)(wall / 86400000));
    /* the store's answer: 2 taken from the fleet bucket (it holds 0 more); the fleet used 100 of
     * b's tokens today */
    ek->got_req = 2 * U;
    ek->level_req = 0;
    ek->has_level_req = true;
    eb->day_tokens = 100;
    eb->month_tokens = 100;
    r->live_gateways = 3;
    keys_fleet_apply(&g, r, 0);
    store_limits_round_free(r);
    for (int i = 0; i < 2; i++) {
        memset(&gr, 0, sizeof gr);
        assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("m"), now, wall, &gr, &ra, &code), 0);
    }
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, k, KEP_CHAT, STRV_LIT("m"), now, wall, &gr, &ra, &code), 429);
    assert_int_equal(ra, 90); /* the fleet bucket is empty: a unit of 2/min over 3 gateways */
    memset(&gr, 0, sizeof gr);
    assert_int_equal(keys_check(&g, b, KEP_CHAT, STRV_LIT("m"), now, wall, &gr, &ra, &code), 429);
    assert_string_equal(code, "insufficient_quota");
    /* a failed round gives everything back to this gateway */
    r = xcalloc(1, sizeof *r);
    r->origin = xstrdup("gw-test");
    keys_fleet_report(&g, r, wall, false);
    uint64_t unsent = k->requests_unsent;
    keys_fleet_apply(&g, r, -5);
    store_limits_round_free(r);
    assert_true(k->requests_unsent == unsent + 2);
    keys_close(&g);
    clock_set_source(NULL, NULL);
}

static struct store_key_row row_of(const char *id, char *hash, const char *secret, const char *spec)
{
    sha256_hex(secret, strlen(secret), hash);
    return (struct store_key_row){.id = (char *)id,
                                  .secret_hash = hash,
                                  .prefix = "dk-x",
                                  .spec_json = (char *)spec,
                                  .created_ms = 1,
                                  .updated_ms = 2};
}

/* Key rows another gateway changed: created, rotated, changed, revoked (and never back), a row
 * that cannot be read (refused), a local write in flight (wins), and the full re-read. */
static void test_remote_rows(void **state)
{
    (void)state;
    struct gw g;
    memset(&g, 0, sizeof g);
    assert_int_equal(keys_open(&g, NULL), 0);
    assert_false(keys_auth_required(&g));
    char h1[65], h2[65];
    struct store_key_row r = row_of("key_r1", h1, "dk-one", "{\"name\":\"a\"}");
    keys_apply_remote(&g, "key_r1", &r);
    assert_true(keys_auth_required(&g)); /* a key exists: the API is closed from now on */
    struct client_key *k = keys_find_id(&g, STRV_LIT("key_r1"));
    assert_non_null(k);
    assert_string_equal(k->hash, h1);
    /* rotated and changed */
    r = row_of("key_r1", h2, "dk-two", "{\"name\":\"a\",\"rpm\":7}");
    keys_apply_remote(&g, "key_r1", &r);
    assert_ptr_equal(keys_find_id(&g, STRV_LIT("key_r1")), k);
    assert_string_equal(k->hash, h2);
    assert_int_equal(k->spec.rpm, 7);
    /* a local write in flight: a re-read copy of the row does not take it back (the row is read
     * again once the write completed), but a revocation is final and applies at once */
    void *w = sync_write(&g, SYNC_KEY, "key_r1", NULL, NULL);
    r = row_of("key_r1", h1, "dk-one", "{\"name\":\"a\"}");
    keys_apply_remote(&g, "key_r1", &r);
    assert_string_equal(k->hash, h2);
    r = row_of("key_r1", h2, "dk-two", "{\"name\":\"a\"}");
    r.revoked_ms = 5;
    keys_apply_remote(&g, "key_r1", &r);
    assert_null(keys_find_id(&g, STRV_LIT("key_r1")));
    sync_write_done(w, 0, NULL);
    /* revoked: a stale copy never brings it back */
    r.revoked_ms = 0;
    keys_apply_remote(&g, "key_r1", &r);
    assert_null(keys_find_id(&g, STRV_LIT("key_r1")));
    /* a row this gateway cannot read grants nothing */
    r = row_of("key_r2", h1, "dk-one", "{\"name\":\"b\"}");
    keys_apply_remote(&g, "key_r2", &r);
    assert_non_null(keys_find_id(&g, STRV_LIT("key_r2")));
    r.spec_json = "{\"name\":\"b\",\"rpm\":-1}";
    keys_apply_remote(&g, "key_r2", &r);
    assert_null(keys_find_id(&g, STRV_LIT("key_r2")));
    /* the full re-read: keys without a row leave, new ones come */
    struct store_key_row rows[2];
    char h3[65], h4[65];
    rows[0] = row_of("key_r3", h3, "dk-three", "{\"name\":\"c\"}");
    rows[1] = row_of("key_r4", h4, "dk-four", "{\"name\":\"d\"}");
    keys_apply_remote(&g, "key_r3", &rows[0]);
    struct client_key *gone = fleet_key(&g, "dk-gone-0123456789", "{\"name\":\"gone\"}");
    char gone_id[24];
    snprintf(gone_id, sizeof gone_id, "%s", gone->id);
    keys_resync(&g, rows, 2);
    assert_non_null(keys_find_id(&g, STRV_LIT("key_r3")));
    assert_non_null(keys_find_id(&g, STRV_LIT("key_r4")));
    assert_null(keys_find_id(&g, strv_from_cstr(gone_id)));
    /* a row deleted from the table: the key goes */
    keys_apply_remote(&g, "key_r3", NULL);
    assert_null(keys_find_id(&g, STRV_LIT("key_r3")));
    assert_true(keys_auth_required(&g));
    sync_free(&g);
    keys_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_format_and_hash),
        cmocka_unit_test(test_globs),
        cmocka_unit_test(test_bucket_refill),
        cmocka_unit_test(test_reset_format),
        cmocka_unit_test(test_budget_periods),
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_check_and_release),
        cmocka_unit_test(test_rpm_third_refused),
        cmocka_unit_test(test_budget_refuses),
        cmocka_unit_test(test_endpoints_of_paths),
        cmocka_unit_test(test_usage_aggregates_and_caps),
        cmocka_unit_test(test_tokens_from_bodies),
        cmocka_unit_test(test_ask_stream_usage),
        cmocka_unit_test(test_usage_only_chunk),
        cmocka_unit_test(test_log_limit),
        cmocka_unit_test(test_admin_tokens_config),
        cmocka_unit_test(test_share_grant_borrow_report),
        cmocka_unit_test(test_fleet_admission_and_rounds),
        cmocka_unit_test(test_remote_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
