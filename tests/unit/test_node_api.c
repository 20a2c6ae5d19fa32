/* test_node_api — the shapes of docs/node_api.md: MODEL list, discovery, health, models answer,
 * join body and join answer, ops and the inventory each emitted and parsed back to the same
 * values; the parsers' refusals (wrong types, unknown status, bad names and secrets, values
 * that do not fit, lists past their cap); the name tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/mem.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "proto/node_api.h"

#define LIT(s) (s), sizeof(s) - 1

static const char *S64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void fill_models(struct node_api_models *l)
{
    struct node_api_model *m = node_api_models_add(l, STRV_LIT("llama3.2:1b"));
    m->status = NODE_API_MODEL_LOADED;
    m->caps = CAP_CHAT | CAP_COMPLETIONS;
    m->in_flight = 3;
    m->size_mb = 1234;
    m->ctx_tokens = 8192;
    m = node_api_models_add(l, STRV_LIT("nomic-embed-text"));
    m->status = NODE_API_MODEL_ON_DISK;
    m->caps = CAP_EMBEDDINGS;
    m = node_api_models_add(l, STRV_LIT("qwen \"quoted\""));
    m->status = NODE_API_MODEL_LOADING;
    m->caps = CAP_CHAT;
}

static void assert_models_equal(const struct node_api_models *a, const struct node_api_models *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->v[i].id, b->v[i].id);
        assert_int_equal(a->v[i].status, b->v[i].status);
        assert_int_equal(a->v[i].caps, b->v[i].caps);
        assert_int_equal(a->v[i].in_flight, b->v[i].in_flight);
        assert_int_equal(a->v[i].size_mb, b->v[i].size_mb);
        assert_int_equal(a->v[i].ctx_tokens, b->v[i].ctx_tokens);
    }
}

static void test_names(void **state)
{
    (void)state;
    enum node_kind e;
    assert_int_equal(node_kind_parse("ollama", &e), 0);
    assert_int_equal(e, NODE_KIND_OLLAMA);
    assert_string_equal(node_kind_name(NODE_KIND_VLLM), "vllm");
    assert_int_equal(node_kind_parse("tgi", &e), GW_E_INVALID);
    assert_string_equal(cap_name(CAP_EMBEDDINGS), "embeddings");
    assert_string_equal(cap_name(CAP_VISION), "vision");
    assert_string_equal(cap_name(64), "?");
    assert_int_equal(node_api_caps_guess(STRV_LIT("nomic-embed-text"), STRV_NULL), CAP_EMBEDDINGS);
    assert_int_equal(node_api_caps_guess(STRV_LIT("all-minilm"), STRV_LIT("bert")), CAP_EMBEDDINGS);
    assert_int_equal(node_api_caps_guess(STRV_LIT("llama3"), STRV_LIT("llama")),
                     CAP_CHAT | CAP_COMPLETIONS);
    assert_true(node_api_name_is_valid(STRV_LIT("gpu-01.a_b")));
    assert_false(node_api_name_is_valid(STRV_LIT("")));
    assert_false(node_api_name_is_valid(STRV_LIT("a b")));
    assert_false(node_api_name_is_valid(strv_from_cstr(S64))); /* 64 chars: too long */
    assert_true(node_api_secret_is_valid(strv_from_cstr(S64)));
    assert_false(node_api_secret_is_valid(STRV_LIT("abc")));
}

static void test_health_roundtrip(void **state)
{
    (void)state;
    struct node_api_health h = {.ok = true,
                                .engine = NODE_KIND_LLAMACPP,
                                .engine_reachable = true,
                                .in_flight = 2,
                                .queued = 5};
    snprintf(h.engine_url, sizeof h.engine_url, "http://127.0.0.1:8080");
    fill_models(&h.models);
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(node_api_health_emit(&b, &h), 0);
    struct node_api_health g;
    struct gw_error err = {0};
    assert_int_equal(node_api_health_parse(b.p, b.len, &g, &err), 0);
    assert_true(g.ok);
    assert_int_equal(g.engine, NODE_KIND_LLAMACPP);
    assert_string_equal(g.engine_url, "http://127.0.0.1:8080");
    assert_true(g.engine_reachable);
    assert_int_equal(g.in_flight, 2);
    assert_int_equal(g.queued, 5);
    assert_models_equal(&h.models, &g.models);
    node_api_health_free(&g);

    /* engine down */
    h.ok = false;
    h.engine_reachable = false;
    buf_reset(&b);
    assert_int_equal(node_api_health_emit(&b, &h), 0);
    assert_non_null(strstr(b.p, "\"status\":\"engine_down\""));
    assert_int_equal(node_api_health_parse(b.p, b.len, &g, &err), 0);
    assert_false(g.ok);
    assert_false(g.engine_reachable);
    node_api_health_free(&g);
    node_api_health_free(&h);
    buf_free(&b);
}

static void test_health_refusals(void **state)
{
    (void)state;
    struct node_api_health g;
    struct gw_error err = {0};
    /* unknown fields are ignored, unknown capabilities skipped */
    assert_int_equal(node_api_health_parse(LIT("{\"status\":\"ok\",\"new\":1,\"models\":[{\"id\":"
                                               "\"m\",\"status\":\"loaded\",\"capabilities\":["
                                               "\"chat\",\"telepathy\"]}]}"),
                                           &g, &err),
                     0);
    assert_int_equal(g.models.n, 1);
    assert_int_equal(g.models.v[0].caps, CAP_CHAT);
    assert_int_equal(g.models.v[0].size_mb, -1);
    node_api_health_free(&g);
    static const char *const bad[] = {
        "",
        "[]",
        "{\"models\":[]}",
        "{\"status\":1}",
        "{\"status\":\"ok\",\"in_flight\":\"2\"}",
        "{\"status\":\"ok\",\"models\":{}}",
        "{\"status\":\"ok\",\"models\":[{\"status\":\"loaded\"}]}",
        "{\"status\":\"ok\",\"models\":[{\"id\":\"m\",\"status\":\"hot\"}]}",
        "{\"status\":\"ok\",\"models\":[{\"id\":\"m\",\"status\":\"loaded\",\"in_flight\":1.5}]}",
        "{\"status\":\"ok\",\"engine\":{\"kind\":\"tgi\"}}",
        "{\"status\":\"ok\",\"engine\":{\"reachable\":\"yes\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        int rc = node_api_health_parse(bad[i], strlen(bad[i]), &g, &err);
        if (rc == 0) fail_msg("accepted: %s", bad[i]);
        assert_true(err.msg[0] != '\0');
        node_api_health_free(&g);
    }
}

/* GET /drover/v1/models (agent) carries the same MODEL list as the health answer, which is
 * where the gateway reads it: the two lists are the same JSON. */
static void test_models_answer_roundtrip(void **state)
{
    (void)state;
    struct node_api_health h = {.ok = true, .engine = NODE_KIND_OLLAMA, .engine_reachable = true};
    fill_models(&h.models);
    struct buf ma, hb;
    buf_init(&ma, 1 << 20);
    buf_init(&hb, 1 << 20);
    assert_int_equal(node_api_models_answer_emit(&ma, &h.models), 0);
    assert_int_equal(node_api_health_emit(&hb, &h), 0);
    /* the context a model's requests may fill, where the agent read it (and only there) */
    size_t seen = 0;
    for (const char *q = hb.p; (q = memmem(q, hb.len - (size_t)(q - hb.p), "context_length", 14));
         q++)
        seen++;
    assert_int_equal(seen, 1);
    assert_non_null(memmem(hb.p, hb.len, "\"context_length\":8192", 21));
    struct json_object *mo = json_parse_strict(ma.p, ma.len, 16, NULL);
    struct json_object *ho = json_parse_strict(hb.p, hb.len, 16, NULL);
    struct json_object *ml = NULL, *hl = NULL;
    assert_int_equal(json_get_arr(mo, "models", &ml), 0);
    assert_int_equal(json_get_arr(ho, "models", &hl), 0);
    assert_true(json_object_equal(ml, hl));
    struct node_api_health g;
    assert_int_equal(node_api_health_parse(hb.p, hb.len, &g, NULL), 0);
    assert_models_equal(&h.models, &g.models);
    assert_non_null(node_api_models_find(&g.models, STRV_LIT("nomic-embed-text")));
    assert_null(node_api_models_find(&g.models, STRV_LIT("nomic")));
    json_object_put(mo);
    json_object_put(ho);
    node_api_health_free(&g);
    node_api_health_free(&h);
    buf_free(&ma);
    buf_free(&hb);
}

static void fill_discovery(struct node_api_discovery *d)
{
    node_api_discovery_init(d);
    snprintf(d->hostname, sizeof d->hostname, "gpu-01");
    snprintf(d->os, sizeof d->os, "Debian GNU/Linux 12 (bookworm)");
    snprintf(d->kernel, sizeof d->kernel, "6.1.0-18-amd64");
    d->cpus = 16;
    d->ram_mb = 64000;
    d->n_gpus = 2;
    for (int i = 0; i < 2; i++) {
        struct node_api_gpu *g = &d->gpus[i];
        g->index = i;
        snprintf(g->name, sizeof g->name, "NVIDIA A10");
        g->vram_total_mb = 23028;
        g->vram_free_mb = i ? -1 : 22000;
        snprintf(g->compute_capability, sizeof g->compute_capability, "8.6");
        snprintf(g->driver_version, sizeof g->driver_version, "550.54.15");
        snprintf(g->cuda_version, sizeof g->cuda_version, "12.4");
    }
    d->n_ops = 2;
    snprintf(d->ops[0], sizeof d->ops[0], "model.install");
    snprintf(d->ops[1], sizeof d->ops[1], "backend.delete");
}

static void assert_discovery_equal(const struct node_api_discovery *a,
                                   const struct node_api_discovery *b)
{
    assert_string_equal(a->hostname, b->hostname);
    assert_string_equal(a->os, b->os);
    assert_string_equal(a->kernel, b->kernel);
    assert_int_equal(a->cpus, b->cpus);
    assert_int_equal(a->ram_mb, b->ram_mb);
    assert_int_equal(a->n_gpus, b->n_gpus);
    assert_int_equal(a->has_ops || a->n_ops, b->has_ops);
    assert_int_equal(a->n_ops, b->n_ops);
    for (size_t i = 0; i < a->n_ops; i++) assert_string_equal(a->ops[i], b->ops[i]);
    for (size_t i = 0; i < a->n_gpus; i++) {
        assert_int_equal(a->gpus[i].index, b->gpus[i].index);
        assert_string_equal(a->gpus[i].name, b->gpus[i].name);
        assert_int_equal(a->gpus[i].vram_total_mb, b->gpus[i].vram_total_mb);
        assert_int_equal(a->gpus[i].vram_free_mb, b->gpus[i].vram_free_mb);
        assert_string_equal(a->gpus[i].compute_capability, b->gpus[i].compute_capability);
        assert_string_equal(a->gpus[i].driver_version, b->gpus[i].driver_version);
        assert_string_equal(a->gpus[i].cuda_version, b->gpus[i].cuda_version);
    }
}

static void test_join_roundtrip(void **state)
{
    (void)state;
    struct node_api_join j;
    memset(&j, 0, sizeof j);
    snprintf(j.name, sizeof j.name, "gpu-01");
    snprintf(j.url, sizeof j.url, "http://10.0.0.5:9300");
    j.engine = NODE_KIND_OLLAMA;
    j.n_labels = 2;
    snprintf(j.labels[0].key, NODE_API_MAX_TEXT, "zone");
    snprintf(j.labels[0].value, NODE_API_MAX_TEXT, "a");
    snprintf(j.labels[1].key, NODE_API_MAX_TEXT, "gpu");
    snprintf(j.labels[1].value, NODE_API_MAX_TEXT, "a10 \"x\"");
    snprintf(j.secret, sizeof j.secret, "%s", S64);
    j.has_discovery = true;
    fill_discovery(&j.discovery);
    snprintf(j.agent_version, sizeof j.agent_version, "0.1.0");
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(node_api_join_emit(&b, &j), 0);
    /* the documented shape */
    assert_non_null(strstr(b.p, "\"name\":\"gpu-01\""));
    assert_non_null(strstr(b.p, "\"engine\":\"ollama\""));
    assert_non_null(strstr(b.p, "\"labels\":{\"zone\":\"a\",\"gpu\":\"a10 \\\"x\\\"\"}"));
    assert_non_null(strstr(b.p, "\"vram_total_mb\":23028"));
    struct node_api_join r;
    char param[NODE_API_MAX_PARAM];
    struct gw_error err = {0};
    assert_int_equal(node_api_join_parse(b.p, b.len, &r, param, &err), 0);
    assert_string_equal(r.name, j.name);
    assert_string_equal(r.url, j.url);
    assert_int_equal(r.engine, j.engine);
    assert_int_equal(r.n_labels, 2);
    assert_string_equal(r.labels[1].value, "a10 \"x\"");
    assert_string_equal(r.secret, S64);
    assert_true(r.has_discovery);
    assert_discovery_equal(&j.discovery, &r.discovery);
    assert_string_equal(r.agent_version, "0.1.0");

    /* without the optional parts */
    j.secret[0] = '\0';
    j.has_discovery = false;
    j.n_labels = 0;
    buf_reset(&b);
    assert_int_equal(node_api_join_emit(&b, &j), 0);
    assert_null(strstr(b.p, "secret"));
    assert_int_equal(node_api_join_parse(b.p, b.len, &r, param, &err), 0);
    assert_false(r.has_discovery);
    assert_int_equal(r.secret[0], '\0');
    buf_free(&b);
}

static void test_join_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *body, *param;
    } bad[] = {
        {"{\"url\":\"http://a:1\",\"engine\":\"ollama\"}", "name"},
        {"{\"name\":\"a b\",\"url\":\"http://a:1\",\"engine\":\"ollama\"}", "name"},
        {"{\"name\":\"n\",\"engine\":\"ollama\"}", "url"},
        {"{\"name\":\"n\",\"url\":\"ftp://a\",\"engine\":\"ollama\"}", "url"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"tgi\"}", "engine"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"labels\":{\"a\":1}}",
         "labels"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"labels\":[]}", "labels"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"secret\":\"xyz\"}",
         "secret"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"discovery\":{\"cpus\":"
         "\"many\"}}",
         "discovery"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"gpu_count\":2}",
         "gpu_count"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"labels\":{\"a b\":\"x\"}}",
         "labels"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"labels\":{\"a\":\"\\n\"}}",
         "labels"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"secret\":"
         "\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\"}",
         "secret"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"discovery\":\"big\"}",
         "discovery"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"discovery\":{\"ops\":"
         "[1]}}",
         "discovery"},
        {"{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":\"vllm\",\"agent_version\":7}",
         "agent_version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct node_api_join r;
        char param[NODE_API_MAX_PARAM];
        struct gw_error err = {0};
        int rc = node_api_join_parse(bad[i].body, strlen(bad[i].body), &r, param, &err);
        if (rc == 0) fail_msg("accepted: %s", bad[i].body);
        assert_string_equal(param, bad[i].param);
    }
    struct node_api_join r;
    assert_int_equal(node_api_join_parse(LIT("{not json"), &r, NULL, NULL), GW_E_PARSE);
    char param[NODE_API_MAX_PARAM] = "x";
    assert_int_equal(node_api_join_parse(LIT("[1]"), &r, param, NULL), GW_E_INVALID);
    assert_string_equal(param, "");
    /* null is the absence of an optional field */
    assert_int_equal(node_api_join_parse(LIT("{\"name\":\"n\",\"url\":\"http://a:1\",\"engine\":"
                                             "\"vllm\",\"labels\":null,\"secret\":null,"
                                             "\"discovery\":null,\"agent_version\":null}"),
                                         &r, param, NULL),
                     0);
    assert_false(r.has_discovery);
    assert_int_equal(r.secret[0], '\0');
}

static void test_join_answer(void **state)
{
    (void)state;
    struct node_api_join_answer a = {.state = NODE_API_JOIN_APPROVED, .poll_ms = 10000};
    snprintf(a.name, sizeof a.name, "gpu-01");
    snprintf(a.secret, sizeof a.secret, "%s", S64);
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(node_api_join_answer_emit(&b, &a), 0);
    struct node_api_join_answer r;
    assert_int_equal(node_api_join_answer_parse(b.p, b.len, &r, NULL), 0);
    assert_int_equal(r.state, NODE_API_JOIN_APPROVED);
    assert_string_equal(r.secret, S64);
    assert_int_equal(r.poll_ms, 10000);
    assert_string_equal(r.name, "gpu-01");
    buf_free(&b);
    assert_int_equal(node_api_join_answer_parse(
                         LIT("{\"name\":\"n\",\"state\":\"pending\",\"poll_ms\":500}"), &r, NULL),
                     0);
    assert_int_equal(r.state, NODE_API_JOIN_PENDING);
    assert_int_equal(r.secret[0], '\0');
    assert_int_equal(r.poll_ms, 500);
    assert_int_equal(node_api_join_answer_parse(LIT("{\"state\":\"draining\"}"), &r, NULL), 0);
    assert_int_equal(r.state, NODE_API_JOIN_DRAINING);
    /* every state the gateway answers reads back */
    for (int st = NODE_API_JOIN_PENDING; st <= NODE_API_JOIN_DRAINING; st++) {
        struct node_api_join_answer e = {.state = (enum node_api_join_state)st, .poll_ms = 7};
        snprintf(e.name, sizeof e.name, "n");
        buf_init(&b, 4096);
        assert_int_equal(node_api_join_answer_emit(&b, &e), 0);
        assert_int_equal(node_api_join_answer_parse(b.p, b.len, &r, NULL), 0);
        assert_int_equal(r.state, st);
        assert_int_equal(r.secret[0], '\0');
        buf_free(&b);
    }
    assert_int_not_equal(node_api_join_answer_parse(LIT("{\"state\":\"weird\"}"), &r, NULL), 0);
    assert_int_not_equal(
        node_api_join_answer_parse(LIT("{\"state\":\"approved\",\"secret\":\"short\"}"), &r, NULL),
        0);
}

static void test_discovery(void **state)
{
    (void)state;
    struct node_api_discovery d, r;
    fill_discovery(&d);
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(node_api_discovery_emit(&b, &d), 0);
    struct json_object *o = json_parse_strict(b.p, b.len, 16, NULL);
    assert_non_null(o);
    node_api_discovery_init(&r);
    assert_int_equal(node_api_discovery_parse_json(o, &r, NULL), 0);
    json_object_put(o);
    assert_discovery_equal(&d, &r);

    /* a partial object (the config override) replaces only what it names */
    o = json_parse_strict(LIT("{\"hostname\":\"fixed\",\"gpus\":[]}"), 16, NULL);
    assert_int_equal(node_api_discovery_parse_json(o, &r, NULL), 0);
    json_object_put(o);
    assert_string_equal(r.hostname, "fixed");
    assert_string_equal(r.os, d.os);
    assert_int_equal(r.cpus, 16);
    assert_int_equal(r.n_gpus, 0);
    o = json_parse_strict(LIT("{\"ram_mb\":\"lots\"}"), 16, NULL);
    struct gw_error err = {0};
    assert_int_equal(node_api_discovery_parse_json(o, &r, &err), GW_E_INVALID);
    assert_non_null(strstr(err.msg, "ram_mb"));
    json_object_put(o);
    buf_free(&b);
}

/* Issue 18: per node CUDA/ROCm and driver versions, installed items with digests. */
static void test_discovery_versions_installed(void **state)
{
    (void)state;
    struct node_api_discovery d, r;
    node_api_discovery_init(&d);
    d.n_gpus = 1;
    snprintf(d.gpus[0].name, sizeof d.gpus[0].name, "NVIDIA A100-SXM4-80GB");
    d.gpus[0].vram_total_mb = 81920;
    d.gpus[0].vram_free_mb = -1;
    snprintf(d.gpus[0].compute_capability, sizeof d.gpus[0].compute_capability, "8.0");
    snprintf(d.gpus[0].cuda_version, sizeof d.gpus[0].cuda_version, "12.2");
    assert_string_equal(node_api_discovery_cuda(&d), "12.2"); /* from the GPU */
    snprintf(d.cuda_version, sizeof d.cuda_version, "12.4");
    snprintf(d.driver_version, sizeof d.driver_version, "550.54.15");
    assert_non_null(node_api_discovery_add_installed(&d, true, "llama3:8b", "sha256:aaa"));
    struct node_api_installed *it = node_api_discovery_add_installed(&d, false, "cuda12", "d1");
    snprintf(it->latest_digest, sizeof it->latest_digest, "d2");
    it->checked_ms = 1700000000000;
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(node_api_discovery_emit(&b, &d), 0);
    assert_int_equal(node_api_discovery_parse(b.p, b.len, &r, NULL), 0);
    assert_string_equal(node_api_discovery_cuda(&r), "12.4");
    assert_string_equal(r.driver_version, "550.54.15");
    assert_string_equal(r.rocm_version, "");
    assert_int_equal(r.n_installed, 2);
    assert_true(r.installed[0].is_model);
    assert_string_equal(r.installed[0].digest, "sha256:aaa");
    assert_string_equal(r.installed[0].latest_digest, "");
    assert_int_equal(r.installed[0].checked_ms, -1);
    assert_false(r.installed[1].is_model);
    assert_string_equal(r.installed[1].latest_digest, "d2");
    assert_int_equal(r.installed[1].checked_ms, 1700000000000);
    /* a bad item is refused with the field named */
    struct gw_error err = {0};
    assert_int_equal(
        node_api_discovery_parse(LIT("{\"installed\":[{\"kind\":\"disk\"}]}"), &r, &err),
        GW_E_INVALID);
    assert_non_null(strstr(err.msg, "installed"));
    /* past the cap: the first ones are kept */
    buf_reset(&b);
    assert_int_equal(buf_append_cstr(&b, "{\"installed\":["), 0);
    for (int i = 0; i < NODE_API_MAX_INSTALLED + 5; i++)
        assert_int_equal(
            buf_appendf(&b, "%s{\"kind\":\"model\",\"name\":\"m%d\"}", i ? "," : "", i), 0);
    assert_int_equal(buf_append_cstr(&b, "]}"), 0);
    assert_int_equal(node_api_discovery_parse(b.p, b.len, &r, NULL), 0);
    assert_int_equal(r.n_installed, NODE_API_MAX_INSTALLED);
    assert_true(r.installed_truncated);
    /* versions compare by number, not by text */
    assert_true(node_api_version_cmp("12.10", "12.9") > 0);
    assert_true(node_api_version_cmp("12.4", "12.4.0") == 0);
    assert_true(node_api_version_cmp("11.8", "12") < 0);
    assert_true(node_api_version_within("12.4", "12.1", "12"));
    assert_false(node_api_version_within("13.0", "12.1", "12"));
    assert_false(node_api_version_within("12.0", "12.1", ""));
    assert_true(node_api_version_within("12.2.1", NULL, "12.2"));
    assert_false(node_api_version_within("12.3", NULL, "12.2"));
    buf_free(&b);
}

/* POST /drover/v1/models/load and /unload: the gateway emits, the agent parses; the agent
 * answers, the gateway parses. */
static void test_load_roundtrip(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(node_api_load_emit(&b, "qwen \"q\"", "{\"num_ctx\":4096}"), 0);
    assert_non_null(strstr(b.p, "\"options\":{\"num_ctx\":4096}"));
    char model[NODE_API_MAX_ID];
    assert_int_equal(node_api_load_parse(b.p, b.len, model, NULL), 0);
    assert_string_equal(model, "qwen \"q\"");
    buf_reset(&b);
    assert_int_equal(node_api_load_emit(&b, "m", NULL), 0);
    assert_string_equal(b.p, "{\"model\":\"m\"}");
    assert_int_not_equal(node_api_load_parse(LIT("{\"model\":\"\"}"), model, NULL), 0);
    assert_int_not_equal(node_api_load_parse(LIT("{\"model\":1}"), model, NULL), 0);

    struct node_api_load_answer a = {.unloaded = false, .size_mb = 1234}, r;
    snprintf(a.model, sizeof a.model, "m");
    buf_reset(&b);
    assert_int_equal(node_api_load_answer_emit(&b, &a), 0);
    assert_int_equal(node_api_load_answer_parse(b.p, b.len, &r, NULL), 0);
    assert_string_equal(r.model, "m");
    assert_false(r.unloaded);
    assert_int_equal(r.size_mb, 1234);
    a.unloaded = true;
    a.size_mb = -1;
    buf_reset(&b);
    assert_int_equal(node_api_load_answer_emit(&b, &a), 0);
    assert_string_equal(b.p, "{\"model\":\"m\",\"status\":\"unloaded\"}");
    assert_int_equal(node_api_load_answer_parse(b.p, b.len, &r, NULL), 0);
    assert_true(r.unloaded);
    assert_int_equal(r.size_mb, -1);
    buf_free(&b);
}

/* POST /drover/v1/ops: the gateway emits the op, the agent parses it; the agent answers, the
 * gateway parses the answer. */
static void test_op_roundtrip(void **state)
{
    (void)state;
    struct node_api_op o = {.kind = OP_UPGRADE,
                            .is_model = false,
                            .params_json = (char *)"{\"version\":\"1.2\"}",
                            .timeout_ms = 600000,
                            .op_id = 7};
    snprintf(o.name, sizeof o.name, "llama \"cpp\"");
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(node_api_op_emit(&b, &o), 0);
    struct node_api_op r;
    assert_int_equal(node_api_op_parse(b.p, b.len, &r, NULL), 0);
    assert_int_equal(r.kind, OP_UPGRADE);
    assert_false(r.is_model);
    assert_string_equal(r.name, o.name);
    assert_string_equal(r.params_json, "{\"version\":\"1.2\"}");
    assert_int_equal(r.timeout_ms, 600000);
    assert_int_equal(r.op_id, 7);
    xfree(r.params_json);
    o.params_json = NULL;
    o.is_model = true;
    buf_reset(&b);
    assert_int_equal(node_api_op_emit(&b, &o), 0);
    assert_non_null(strstr(b.p, "\"params\":{}"));
    assert_int_equal(node_api_op_parse(b.p, b.len, &r, NULL), 0);
    assert_true(r.is_model);
    assert_string_equal(r.params_json, "{}");
    xfree(r.params_json);
    static const char *const bad[] = {
        "{\"op\":\"fly\",\"target\":{\"kind\":\"model\",\"name\":\"m\"}}",
        "{\"op\":\"install\",\"target\":{\"kind\":\"disk\",\"name\":\"m\"}}",
        "{\"op\":\"install\",\"target\":{\"kind\":\"model\",\"name\":\"\"}}",
        "{\"op\":\"install\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_not_equal(node_api_op_parse(bad[i], strlen(bad[i]), &r, NULL), 0);

    for (int c = 0; c < OP_CLASS_COUNT; c++) {
        struct node_api_op_answer a = {.cls = (enum op_class)c, .listed = c % 2}, ar;
        snprintf(a.message, sizeof a.message, "said \"%d\"\n", c);
        buf_reset(&b);
        assert_int_equal(node_api_op_answer_emit(&b, &a), 0);
        assert_int_equal(node_api_op_answer_parse(b.p, b.len, &ar, NULL), 0);
        assert_int_equal(ar.cls, c);
        assert_string_equal(ar.message, a.message);
        assert_int_equal(ar.listed, a.listed);
    }
    struct node_api_op_answer ar;
    assert_int_not_equal(node_api_op_answer_parse(LIT("{\"class\":\"meh\"}"), &ar, NULL), 0);
    assert_int_equal(ar.cls, OP_CLASS_ERROR);
    buf_free(&b);
}

/* GET /drover/v1/inventory: the agent emits, the gateway parses back the same items; the bytes
 * are those the hand-written agent sent before proto had the message (name, then version and
 * digest when known), so agents and gateways of either age read each other. */
static void test_inventory_roundtrip(void **state)
{
    (void)state;
    struct node_api_inventory inv = {0};
    assert_int_equal(node_api_inv_items_add(&inv.models, STRV_LIT("llama3.2:1b"), STRV_NULL,
                                            STRV_LIT("sha256:aa"), STRV_NULL, NULL),
                     0);
    assert_int_equal(node_api_inv_items_add(&inv.backends, STRV_LIT("cuda12"), STRV_LIT("12.4"),
                                            STRV_LIT("sha256:b4ck"), STRV_NULL, NULL),
                     0);
    struct buf b;
    buf_init(&b, NODE_API_MAX_INVENTORY_BYTES);
    assert_int_equal(node_api_inventory_emit(&b, &inv), 0);
    assert_string_equal(b.p, "{\"models\":[{\"name\":\"llama3.2:1b\",\"digest\":\"sha256:aa\"}],"
                             "\"backends\":[{\"name\":\"cuda12\",\"version\":\"12.4\","
                             "\"digest\":\"sha256:b4ck\"}]}");
    /* every field, quotes and UTF-8, an item with the name only */
    assert_int_equal(node_api_inv_items_add(&inv.models, STRV_LIT("qwen \"q\" \xc3\xa9"),
                                            STRV_LIT("v1"), STRV_LIT("sha256:01"),
                                            STRV_LIT("sha256:02"), NULL),
                     0);
    assert_int_equal(node_api_inv_items_add(&inv.backends, STRV_LIT("vulkan"), STRV_NULL,
                                            STRV_LIT(""), STRV_NULL, NULL),
                     0);
    buf_reset(&b);
    assert_int_equal(node_api_inventory_emit(&b, &inv), 0);
    struct node_api_inventory back;
    assert_int_equal(node_api_inventory_parse(b.p, b.len, &back, NULL), 0);
    const struct node_api_inv_items *lists[2][2] = {{&inv.models, &back.models},
                                                    {&inv.backends, &back.backends}};
    for (int l = 0; l < 2; l++) {
        assert_int_equal(lists[l][0]->n, lists[l][1]->n);
        for (size_t i = 0; i < lists[l][0]->n; i++) {
            const struct node_api_inv_item *x = &lists[l][0]->v[i], *y = &lists[l][1]->v[i];
            assert_string_equal(x->name, y->name);
            assert_string_equal(x->version, y->version);
            assert_string_equal(x->digest, y->digest);
            assert_string_equal(x->latest_digest, y->latest_digest);
        }
    }
    assert_int_equal(back.models.n, 2);
    assert_string_equal(back.models.v[1].latest_digest, "sha256:02");
    assert_string_equal(back.backends.v[1].digest, ""); /* "" is unknown: not sent */
    /* emitting what was parsed gives the same bytes */
    struct buf b2;
    buf_init(&b2, NODE_API_MAX_INVENTORY_BYTES);
    assert_int_equal(node_api_inventory_emit(&b2, &back), 0);
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.p, b.p, b.len);
    const struct node_api_inv_item *it =
        node_api_inv_items_find(&back.backends, STRV_LIT("cuda12"));
    assert_non_null(it);
    assert_string_equal(it->version, "12.4");
    assert_null(node_api_inv_items_find(&back.backends, STRV_LIT("cuda")));
    node_api_inventory_free(&back);
    /* an empty inventory */
    node_api_inventory_free(&inv);
    buf_reset(&b);
    assert_int_equal(node_api_inventory_emit(&b, &inv), 0);
    assert_string_equal(b.p, "{\"models\":[],\"backends\":[]}");
    assert_int_equal(node_api_inventory_parse(b.p, b.len, &back, NULL), 0);
    assert_int_equal(back.models.n + back.backends.n, 0);
    node_api_inventory_free(&back);
    buf_free(&b);
    buf_free(&b2);
}

/* What agents send that proto's emitter would not: null for an unknown value, fields proto
 * does not know, repeated names (the first one is the one a lookup finds). */
static void test_inventory_lenient(void **state)
{
    (void)state;
    static const char body[] =
        "{\"models\":[{\"name\":\"m1\",\"version\":null,\"digest\":\"sha256:1\",\"size\":7,"
        "\"extra\":{\"a\":[1]}},{\"name\":\"m1\",\"digest\":\"sha256:2\"}],"
        "\"backends\":[{\"name\":\"b\",\"latest_digest\":null}],\"agent\":\"newer\"}";
    struct node_api_inventory inv;
    assert_int_equal(node_api_inventory_parse(LIT(body), &inv, NULL), 0);
    assert_int_equal(inv.models.n, 2);
    assert_string_equal(inv.models.v[0].version, "");
    assert_string_equal(node_api_inv_items_find(&inv.models, STRV_LIT("m1"))->digest, "sha256:1");
    assert_int_equal(inv.backends.n, 1);
    assert_string_equal(inv.backends.v[0].latest_digest, "");
    node_api_inventory_free(&inv);
}

static void test_inventory_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int code;
        const char *msg; /* a part of err.msg */
    } rows[] = {
        {"", GW_E_PARSE, ""},
        {"{\"models\":[", GW_E_PARSE, ""},
        {"[]", GW_E_INVALID, "expected a JSON object"},
        {"{}", GW_E_INVALID, "models: missing"},
        {"{\"models\":[]}", GW_E_INVALID, "backends: missing"},
        {"{\"models\":{},\"backends\":[]}", GW_E_INVALID, "models: expected an array"},
        {"{\"models\":[],\"backends\":null}", GW_E_INVALID, "backends: expected an array"},
        {"{\"models\":[\"m\"],\"backends\":[]}", GW_E_INVALID, "models[0]: expected an object"},
        {"{\"models\":[{\"name\":\"a\"},{}],\"backends\":[]}", GW_E_INVALID,
         "models[1].name: expected a non-empty string"},
        {"{\"models\":[{\"name\":\"\"}],\"backends\":[]}", GW_E_INVALID,
         "models[0].name: expected a non-empty string"},
        {"{\"models\":[{\"name\":7}],\"backends\":[]}", GW_E_INVALID, "models[0].name"},
        {"{\"models\":[],\"backends\":[{\"name\":\"b\",\"digest\":1}]}", GW_E_INVALID,
         "backends[0].digest: expected a string"},
        {"{\"models\":[],\"backends\":[{\"name\":\"b\",\"version\":[]}]}", GW_E_INVALID,
         "backends[0].version: expected a string"},
        {"{\"models\":[{\"name\":\"m\",\"latest_digest\":true}],\"backends\":[]}", GW_E_INVALID,
         "models[0].latest_digest: expected a string"},
        {"{\"models\":[{\"name\":\"a\\u0000b\"}],\"backends\":[]}", GW_E_INVALID,
         "models[0].name: holds a control byte"},
        {"{\"models\":[{\"name\":\"a\",\"digest\":\"x\\ny\"}],\"backends\":[]}", GW_E_INVALID,
         "models[0].digest: holds a control byte"},
        {"{\"models\":[{\"name\":\"a\",\"digest\":\"\xff\"}],\"backends\":[]}", GW_E_PARSE, ""},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct node_api_inventory inv;
        struct gw_error err = {0};
        int rc = node_api_inventory_parse(rows[i].body, strlen(rows[i].body), &inv, &err);
        if (rc != rows[i].code || !strstr(err.msg, rows[i].msg))
            fail_msg("row %zu: rc %d msg '%s'", i, rc, err.msg);
        assert_true(err.msg[0] != '\0');
        node_api_inventory_free(&inv); /* also after an error */
    }

    /* values that do not fit their field are refused, never cut */
    struct buf b;
    buf_init(&b, NODE_API_MAX_INVENTORY_BYTES + 16);
    char digest[NODE_API_MAX_DIGEST + 1];
    memset(digest, 'a', sizeof digest - 1);
    digest[sizeof digest - 1] = '\0';
    assert_int_equal(buf_appendf(&b,
                                 "{\"models\":[{\"name\":\"m\",\"digest\":\"%s\"}],"
                                 "\"backends\":[]}",
                                 digest),
                     0);
    struct node_api_inventory inv;
    struct gw_error err = {0};
    assert_int_equal(node_api_inventory_parse(b.p, b.len, &inv, &err), GW_E_INVALID);
    assert_non_null(strstr(err.msg, "models[0].digest: longer than 79 bytes"));
    node_api_inventory_free(&inv);
    digest[NODE_API_MAX_DIGEST - 1] = '\0'; /* 79 bytes fit */
    buf_reset(&b);
    assert_int_equal(buf_appendf(&b,
                                 "{\"models\":[{\"name\":\"m\",\"digest\":\"%s\"}],"
                                 "\"backends\":[]}",
                                 digest),
                     0);
    assert_int_equal(node_api_inventory_parse(b.p, b.len, &inv, NULL), 0);
    assert_string_equal(inv.models.v[0].digest, digest);
    node_api_inventory_free(&inv);
    char name[NODE_API_MAX_ID + 1];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    buf_reset(&b);
    assert_int_equal(buf_appendf(&b, "{\"models\":[],\"backends\":[{\"name\":\"%s\"}]}", name), 0);
    assert_int_equal(node_api_inventory_parse(b.p, b.len, &inv, &err), GW_E_INVALID);
    assert_non_null(strstr(err.msg, "backends[0].name: longer than 255 bytes"));
    node_api_inventory_free(&inv);

    /* too many items in a list, and a body past the cap */
    buf_reset(&b);
    int rc = buf_append_cstr(&b, "{\"backends\":[],\"models\":[");
    for (int i = 0; i <= NODE_API_MAX_INV_ITEMS && !rc; i++)
        rc = buf_appendf(&b, "%s{\"name\":\"m%d\"}", i ? "," : "", i);
    if (!rc) rc = buf_append_cstr(&b, "]}");
    assert_int_equal(rc, 0);
    assert_int_equal(node_api_inventory_parse(b.p, b.len, &inv, &err), GW_E_LIMIT);
    assert_non_null(strstr(err.msg, "models: more than 4096 items"));
    node_api_inventory_free(&inv);
    buf_reset(&b);
    rc = buf_append_cstr(&b, "{\"models\":[],\"backends\":[],\"pad\":\"");
    while (!rc && b.len <= NODE_API_MAX_INVENTORY_BYTES) rc = buf_append_cstr(&b, "xxxxxxxx");
    if (!rc) rc = buf_append_cstr(&b, "\"}");
    assert_int_equal(rc, 0);
    assert_int_equal(node_api_inventory_parse(b.p, b.len, &inv, &err), GW_E_LIMIT);
    node_api_inventory_free(&inv);
    buf_free(&b);

    /* the emitter's side: add refuses the same values, and the list's cap */
    struct node_api_inv_items l = {0};
    assert_int_equal(node_api_inv_items_add(&l, STRV_NULL, STRV_NULL, STRV_NULL, STRV_NULL, &err),
                     GW_E_INVALID);
    assert_int_equal(
        node_api_inv_items_add(&l, STRV_LIT("m"), STRV_NULL, strv_from_cstr(name), STRV_NULL, &err),
        GW_E_INVALID);
    assert_int_equal(
        node_api_inv_items_add(&l, STRV_LIT("m\t2"), STRV_NULL, STRV_NULL, STRV_NULL, &err),
        GW_E_INVALID);
    assert_int_equal(l.n, 0);
    for (int i = 0; i < NODE_API_MAX_INV_ITEMS; i++)
        assert_int_equal(
            node_api_inv_items_add(&l, STRV_LIT("m"), STRV_NULL, STRV_NULL, STRV_NULL, NULL), 0);
    assert_int_equal(
        node_api_inv_items_add(&l, STRV_LIT("m"), STRV_NULL, STRV_NULL, STRV_NULL, &err),
        GW_E_LIMIT);
    xfree(l.v);
}

/* Paths and kinds both sides name the same way. */
static void test_paths(void **state)
{
    (void)state;
    assert_string_equal(node_api_models_path(NODE_KIND_OLLAMA), "/api/tags");
    assert_string_equal(node_api_models_path(NODE_KIND_VLLM), "/v1/models");
    assert_true(node_api_is_inference_path(STRV_LIT("/api/embeddings")));
    assert_false(node_api_is_inference_path(STRV_LIT("/v1/models")));
    assert_true(node_api_is_proxied(STRV_LIT("GET"), STRV_LIT("/api/tags")));
    assert_true(node_api_is_proxied(STRV_LIT("POST"), STRV_LIT("/v1/chat/completions")));
    assert_false(node_api_is_proxied(STRV_LIT("GET"), STRV_LIT("/v1/chat/completions")));
    assert_false(node_api_is_proxied(STRV_LIT("POST"), STRV_LIT(NODE_API_PATH_OPS)));
    for (int k = 0; k < NODE_KIND_COUNT; k++) {
        enum node_kind back;
        assert_int_equal(node_kind_parse(node_kind_name((enum node_kind)k), &back), 0);
        assert_int_equal(back, k);
    }
    assert_true(node_api_label_key_is_valid(STRV_LIT("topology.kubernetes.io/zone")));
    assert_false(node_api_label_key_is_valid(STRV_LIT("")));
    assert_false(node_api_label_value_is_valid(STRV_LIT("a\tb")));
    assert_true(node_api_label_value_is_valid(STRV_LIT("")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_health_roundtrip),
        cmocka_unit_test(test_health_refusals),
        cmocka_unit_test(test_models_answer_roundtrip),
        cmocka_unit_test(test_join_roundtrip),
        cmocka_unit_test(test_join_refusals),
        cmocka_unit_test(test_join_answer),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_discovery_versions_installed),
        cmocka_unit_test(test_load_roundtrip),
        cmocka_unit_test(test_op_roundtrip),
        cmocka_unit_test(test_inventory_roundtrip),
        cmocka_unit_test(test_inventory_lenient),
        cmocka_unit_test(test_inventory_refusals),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
