/* test_agent_engine — the engine adapters' pure layer on recorded bodies: llama-server
 * /v1/models, /slots (new and old shapes) and /metrics; Ollama /api/tags and /api/ps; vLLM
 * /metrics; and the one view agent_engine_build makes of them per engine kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent_engine.h"
#include "base/buf.h"

#define LIT(s) (s), sizeof(s) - 1

/* llama-server b4xxx+ (abridged "meta"); also carries an Ollama-style "models" list. */
static const char LLAMA_MODELS[] =
    "{\"models\":[{\"name\":\"qwen2.5-0.5b-instruct-q4_k_m.gguf\",\"model\":\"qwen2.5-0.5b-"
    "instruct-q4_k_m.gguf\",\"modified_at\":\"\",\"size\":\"\",\"digest\":\"\",\"type\":\"model\","
    "\"description\":\"\",\"tags\":[\"\"],\"capabilities\":[\"completion\"],\"parameters\":\"\","
    "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"\",\"families\":[\"\"],"
    "\"parameter_size\":\"\",\"quantization_level\":\"\"}}],\"object\":\"list\",\"data\":[{\"id\":"
    "\"qwen2.5-0.5b-instruct-q4_k_m.gguf\",\"object\":\"model\",\"created\":1763856000,"
    "\"owned_by\":\"llamacpp\",\"meta\":{\"vocab_type\":2,\"n_vocab\":151936,\"n_ctx_train\":"
    "32768,\"n_embd\":896,\"n_params\":494032768,\"size\":491400032}}]}";

/* Recorded from llama-server b11669 (Debian) with --metrics --slots, tiny test model. */
static const char LLAMA_MODELS_B11669[] =
    "{\"models\":[{\"name\":\"tiny-llama\",\"model\":\"tiny-llama\",\"modified_at\":\"\",\"size\":"
    "\"\",\"digest\":\"\",\"type\":\"model\",\"description\":\"\",\"tags\":[\"\"],\"capabilities\":"
    "["
    "\"completion\"],\"parameters\":\"\",\"details\":{\"parent_model\":\"\",\"format\":\"gguf\","
    "\"family\":\"\",\"families\":[\"\"],\"parameter_size\":\"\",\"quantization_level\":\"\"}}],"
    "\"object\":\"list\",\"data\":[{\"id\":\"tiny-llama\",\"aliases\":[\"tiny-llama\"],\"tags\":[],"
    "\"object\":\"model\",\"architecture\":{\"input_modalities\":[\"text\"],\"output_modalities\":["
    "\"text\"]},\"created\":1795394757,\"owned_by\":\"llamacpp\",\"meta\":{\"vocab_type\":7,"
    "\"n_vocab\":128,\"n_ctx\":256,\"n_ctx_train\":256,\"n_embd\":256,\"n_params\":1185116,"
    "\"size\":4740464,\"ftype\":\"(guessed) all F32\"}}]}";
static const char LLAMA_SLOTS_B11669[] = "[{\"id\":0,\"n_ctx\":256,\"speculative\":false,"
                                         "\"is_processing\":false},{\"id\":1,\"n_ctx\":256,"
                                         "\"speculative\":false,\"is_processing\":true}]";
static const char LLAMA_METRICS_B11669[] = "llamacpp:prompt_tokens_total 0\n"
                                           "llamacpp:prompt_tokens_cached_total 0\n"
                                           "llamacpp:n_decode_total 0\n"
                                           "llamacpp:n_tokens_max 0\n"
                                           "llamacpp:requests_processing 1\n"
                                           "llamacpp:requests_deferred 0\n"
                                           "llamacpp:n_busy_slots_per_decode 0\n";

static const char LLAMA_SLOTS[] =
    "[{\"id\":0,\"id_task\":12,\"n_ctx\":2048,\"speculative\":false,\"is_processing\":true,"
    "\"params\":{\"n_predict\":-1,\"seed\":4294967295,\"temperature\":0.800000011920929},"
    "\"next_token\":{\"has_next_token\":true,\"has_new_line\":false,\"n_remain\":-1,"
    "\"n_decoded\":7,\"stopping_word\":\"\"}},"
    "{\"id\":1,\"id_task\":-1,\"n_ctx\":2048,\"speculative\":false,\"is_processing\":false,"
    "\"params\":{\"n_predict\":-1},\"next_token\":{\"has_next_token\":true,\"n_decoded\":0}}]";

/* older servers: "state" 0 idle, 1 processing */
static const char LLAMA_SLOTS_OLD[] = "[{\"id\":0,\"state\":1,\"n_ctx\":512},{\"id\":1,\"state\":0,"
                                      "\"n_ctx\":512},{\"id\":2,\"state\":1,\"n_ctx\":512}]";

static const char LLAMA_METRICS[] =
    "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
    "# TYPE llamacpp:prompt_tokens_total counter\n"
    "llamacpp:prompt_tokens_total 123\n"
    "# HELP llamacpp:prompt_seconds_total Prompt process time\n"
    "# TYPE llamacpp:prompt_seconds_total counter\n"
    "llamacpp:prompt_seconds_total 0.412\n"
    "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.\n"
    "# TYPE llamacpp:tokens_predicted_total counter\n"
    "llamacpp:tokens_predicted_total 456\n"
    "# HELP llamacpp:n_decode_total Total number of llama_decode() calls\n"
    "# TYPE llamacpp:n_decode_total counter\n"
    "llamacpp:n_decode_total 460\n"
    "# HELP llamacpp:requests_processing Number of requests processing.\n"
    "# TYPE llamacpp:requests_processing gauge\n"
    "llamacpp:requests_processing 1\n"
    "# HELP llamacpp:requests_deferred Number of requests deferred.\n"
    "# TYPE llamacpp:requests_deferred gauge\n"
    "llamacpp:requests_deferred 2\n";

static const char OLLAMA_TAGS[] =
    "{\"models\":[{\"name\":\"llama3.2:1b\",\"model\":\"llama3.2:1b\",\"modified_at\":\"2025-01-"
    "10T10:01:02.123456789Z\",\"size\":1321098329,\"digest\":\"baf6a787fdffd633537aa2eb51cfd54cb9"
    "3ff08e28040095462bb63daf552878\",\"details\":{\"parent_model\":\"\",\"format\":\"gguf\","
    "\"family\":\"llama\",\"families\":[\"llama\"],\"parameter_size\":\"1.2B\","
    "\"quantization_level\":\"Q8_0\"}},"
    "{\"name\":\"nomic-embed-text:latest\",\"model\":\"nomic-embed-text:latest\",\"modified_at\":"
    "\"2025-01-09T08:00:00Z\",\"size\":274302450,\"digest\":\"0a109f422b47e3a30ba2b10eca18548e94"
    "4e8a23073ee3f3e947efcf3c45e59f\",\"details\":{\"parent_model\":\"\",\"format\":\"gguf\","
    "\"family\":\"nomic-bert\",\"families\":[\"nomic-bert\"],\"parameter_size\":\"137M\","
    "\"quantization_level\":\"F16\"}},"
    "{\"name\":\"all-minilm:22m\",\"model\":\"all-minilm:22m\",\"size\":45960996,\"details\":{"
    "\"family\":\"bert\",\"families\":[\"bert\"]}}]}";

static const char OLLAMA_PS[] =
    "{\"models\":[{\"name\":\"llama3.2:1b\",\"model\":\"llama3.2:1b\",\"size\":2226918400,"
    "\"digest\":\"baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878\","
    "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"llama\",\"families\":["
    "\"llama\"],\"parameter_size\":\"1.2B\",\"quantization_level\":\"Q8_0\"},\"expires_at\":"
    "\"2025-01-10T10:06:02.123456789Z\",\"size_vram\":2226918400}]}";

static const char VLLM_METRICS[] =
    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 3.0\n"
    "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 1.0\n"
    "# HELP vllm:num_requests_waiting_by_reason Waiting requests by reason.\n"
    "vllm:num_requests_waiting_by_reason{engine=\"0\",reason=\"capacity\"} 7.0\n"
    "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.\n"
    "vllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
    "0.02\n";

static const char VLLM_MODELS[] =
    "{\"object\":\"list\",\"data\":[{\"id\":\"meta-llama/Llama-3.1-8B-Instruct\",\"object\":"
    "\"model\",\"created\":1763856000,\"owned_by\":\"vllm\",\"root\":\"meta-llama/Llama-3.1-8B-"
    "Instruct\",\"parent\":null,\"max_model_len\":8192,\"permission\":[{\"id\":\"modelperm-1\"}]},"
    "{\"id\":\"BAAI/bge-m3-embed\",\"object\":\"model\",\"owned_by\":\"vllm\"}]}";

static void test_oai_models(void **state)
{
    (void)state;
    struct node_api_models l = {0};
    assert_int_equal(node_api_oai_models_parse(LIT(LLAMA_MODELS), &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].id, "qwen2.5-0.5b-instruct-q4_k_m.gguf");
    assert_int_equal(l.v[0].status, NODE_API_MODEL_LOADED);
    assert_int_equal(l.v[0].caps, CAP_CHAT | CAP_COMPLETIONS);
    node_api_models_free(&l);
    assert_int_equal(node_api_oai_models_parse(LIT(VLLM_MODELS), &l, NULL), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[1].caps, CAP_EMBEDDINGS);
    node_api_models_free(&l);
    struct gw_error err = {0};
    assert_int_not_equal(node_api_oai_models_parse(LIT("{\"object\":\"list\"}"), &l, &err), 0);
    assert_int_not_equal(node_api_oai_models_parse(LIT("<html>"), &l, &err), 0);
    node_api_models_free(&l);
}

static void test_llama_b11669(void **state)
{
    (void)state;
    struct agent_engine_bodies b;
    memset(&b, 0, sizeof b);
    b.wanted[AGENT_EP_MODELS] = b.wanted[AGENT_EP_SLOTS] = b.wanted[AGENT_EP_METRICS] = true;
    b.status[AGENT_EP_MODELS] = b.status[AGENT_EP_SLOTS] = b.status[AGENT_EP_METRICS] = 200;
    b.body[AGENT_EP_MODELS] = strv_make(LIT(LLAMA_MODELS_B11669));
    b.body[AGENT_EP_SLOTS] = strv_make(LIT(LLAMA_SLOTS_B11669));
    b.body[AGENT_EP_METRICS] = strv_make(LIT(LLAMA_METRICS_B11669));
    struct agent_engine_view v;
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_LLAMACPP, &b, &v);
    assert_true(v.reachable);
    assert_int_equal(v.models.n, 1);
    assert_string_equal(v.models.v[0].id, "tiny-llama");
    assert_int_equal(v.models.v[0].in_flight, 1);
    assert_int_equal(v.running, 1);
    assert_int_equal(v.queued, 0);
    agent_engine_view_free(&v);
    uint32_t busy, total;
    assert_int_equal(
        agent_engine_parse_llamacpp_slots(LIT(LLAMA_SLOTS_B11669), &busy, &total, NULL), 0);
    assert_int_equal(busy, 1);
    assert_int_equal(total, 2);
}

static void test_slots(void **state)
{
    (void)state;
    uint32_t busy = 99, total = 99;
    assert_int_equal(agent_engine_parse_llamacpp_slots(LIT(LLAMA_SLOTS), &busy, &total, NULL), 0);
    assert_int_equal(busy, 1);
    assert_int_equal(total, 2);
    assert_int_equal(agent_engine_parse_llamacpp_slots(LIT(LLAMA_SLOTS_OLD), &busy, &total, NULL),
                     0);
    assert_int_equal(busy, 2);
    assert_int_equal(total, 3);
    /* the server without --slots answers an error object */
    assert_int_not_equal(
        agent_engine_parse_llamacpp_slots(
            LIT("{\"error\":{\"code\":501,\"message\":\"This server does not support slots "
                "endpoint. Start it with `--slots`\",\"type\":\"not_supported_error\"}}"),
            &busy, &total, NULL),
        0);
}

static void test_prom(void **state)
{
    (void)state;
    double v = -1;
    assert_int_equal(agent_engine_prom_sum(LIT(LLAMA_METRICS), "llamacpp:requests_processing", &v),
                     0);
    assert_true(v == 1.0);
    assert_int_equal(agent_engine_prom_sum(LIT(LLAMA_METRICS), "llamacpp:requests_deferred", &v),
                     0);
    assert_true(v == 2.0);
    assert_int_equal(agent_engine_prom_sum(LIT(VLLM_METRICS), "vllm:num_requests_running", &v), 0);
    assert_true(v == 3.0);
    /* a longer name with the same prefix is not the metric */
    assert_int_equal(agent_engine_prom_sum(LIT(VLLM_METRICS), "vllm:num_requests_waiting", &v), 0);
    assert_true(v == 1.0);
    assert_int_equal(agent_engine_prom_sum(LIT(LLAMA_METRICS), "llamacpp:requests", &v),
                     GW_E_NOTFOUND);
    /* labelled samples add up; comments and garbage are skipped */
    static const char two[] = "m{a=\"x}y\"} 2\nm{a=\"z\"} 3.5\n# m 100\nm oops\nm_total 9";
    assert_int_equal(agent_engine_prom_sum(LIT(two), "m", &v), 0);
    assert_true(v == 5.5);
}

static void test_ollama_lists(void **state)
{
    (void)state;
    struct node_api_models l = {0};
    assert_int_equal(node_api_ollama_list_parse(LIT(OLLAMA_TAGS), false, &l, NULL), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0].id, "llama3.2:1b");
    assert_int_equal(l.v[0].status, NODE_API_MODEL_ON_DISK);
    assert_int_equal(l.v[0].caps, CAP_CHAT | CAP_COMPLETIONS);
    assert_int_equal(l.v[0].size_mb, 1321098329 / (1024 * 1024));
    assert_int_equal(l.v[1].caps, CAP_EMBEDDINGS); /* nomic-bert, and the name */
    assert_int_equal(l.v[2].caps, CAP_EMBEDDINGS); /* bert family only */
    /* digests: the inventory's (not part of MODEL) */
    assert_string_equal(l.v[0].digest,
                        "baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878");
    assert_string_equal(l.v[2].digest, ""); /* none given */
    /* a digest the inventory would refuse (a control byte): the model stays, its digest not */
    static const char bad[] = "{\"models\":[{\"name\":\"m:1\",\"digest\":\"ab\\ncd\"}]}";
    struct node_api_models b = {0};
    assert_int_equal(node_api_ollama_list_parse(LIT(bad), false, &b, NULL), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.v[0].id, "m:1");
    assert_string_equal(b.v[0].digest, "");
    node_api_models_free(&b);
    assert_int_equal(node_api_ollama_list_parse(LIT(OLLAMA_PS), true, &l, NULL), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.v[0].status, NODE_API_MODEL_LOADED);
    assert_int_equal(l.v[1].status, NODE_API_MODEL_ON_DISK);
    node_api_models_free(&l);
    /* ps alone: a loaded model not in tags is still listed */
    assert_int_equal(node_api_ollama_list_parse(LIT(OLLAMA_PS), true, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].status, NODE_API_MODEL_LOADED);
    node_api_models_free(&l);
    assert_int_equal(node_api_ollama_list_parse(LIT("{\"models\":[]}"), false, &l, NULL), 0);
    assert_int_equal(l.n, 0);
    assert_int_not_equal(node_api_ollama_list_parse(LIT("{}"), false, &l, NULL), 0);
    node_api_models_free(&l);
}

static void set_body(struct agent_engine_bodies *b, enum agent_engine_ep ep, int status,
                     const char *p, size_t len)
{
    b->wanted[ep] = true;
    b->status[ep] = status;
    b->body[ep] = strv_make(p, len);
}

static void test_build_llamacpp(void **state)
{
    (void)state;
    struct agent_engine_bodies b;
    memset(&b, 0, sizeof b);
    set_body(&b, AGENT_EP_MODELS, 200, LIT(LLAMA_MODELS));
    set_body(&b, AGENT_EP_SLOTS, 200, LIT(LLAMA_SLOTS_OLD));
    set_body(&b, AGENT_EP_METRICS, 200, LIT(LLAMA_METRICS));
    struct agent_engine_view v;
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_LLAMACPP, &b, &v);
    assert_true(v.reachable);
    assert_true(v.has_counts);
    assert_int_equal(v.running, 1); /* /metrics wins over /slots */
    assert_int_equal(v.queued, 2);
    assert_int_equal(v.models.n, 1);
    assert_int_equal(v.models.v[0].in_flight, 1);
    agent_engine_view_free(&v);

    /* no --metrics: /slots gives the running count */
    set_body(&b, AGENT_EP_METRICS, 501, LIT("{\"error\":{}}"));
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_LLAMACPP, &b, &v);
    assert_int_equal(v.running, 2);
    assert_int_equal(v.queued, 0);
    agent_engine_view_free(&v);

    /* engine down */
    set_body(&b, AGENT_EP_MODELS, 0, "", 0);
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_LLAMACPP, &b, &v);
    assert_false(v.reachable);
    assert_true(v.error[0] != '\0');
    agent_engine_view_free(&v);
    /* still loading: llama-server answers 503 */
    set_body(&b, AGENT_EP_MODELS, 503, LIT("{\"error\":{\"message\":\"Loading model\"}}"));
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_LLAMACPP, &b, &v);
    assert_false(v.reachable);
    assert_non_null(strstr(v.error, "503"));
    agent_engine_view_free(&v);
}

/* Recorded from llama-server b11669 (-c 2048 -np 2), abridged: a slot's context. */
static const char LLAMA_PROPS_B11669[] =
    "{\"default_generation_settings\":{\"params\":{\"seed\":4294967295,\"temperature\":0.8,"
    "\"n_predict\":-1,\"samplers\":[\"penalties\",\"top_k\"]},\"n_ctx\":1024},\"total_slots\":2,"
    "\"model_alias\":\"tiny-llama\",\"model_path\":\"/opt/drover-model/llama-dense.gguf\","
    "\"endpoint_slots\":true,\"chat_template\":\"{%- for message in messages -%}\"}";

/* Ollama 0.12's /api/ps: the context each loaded model runs with. */
static const char OLLAMA_PS_CTX[] =
    "{\"models\":[{\"name\":\"gemma3:latest\",\"model\":\"gemma3:latest\",\"size\":6591830464,"
    "\"digest\":\"a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a\",\"details\":{"
    "\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"gemma3\",\"families\":[\"gemma3\"],"
    "\"parameter_size\":\"4.3B\",\"quantization_level\":\"Q4_K_M\"},\"expires_at\":\"2025-10-17T16:"
    "47:07.93355-07:00\",\"size_vram\":5333539264,\"context_length\":4096}]}";

/* The context a request may fill, where each engine's list says it: llama-server's meta.n_ctx
 * (a slot's), vLLM's max_model_len, Ollama's /api/ps context_length; /props when the list does
 * not say it (older llama-server builds). */
static void test_context_lengths(void **state)
{
    (void)state;
    struct node_api_models l = {0};
    assert_int_equal(node_api_oai_models_parse(LIT(LLAMA_MODELS_B11669), &l, NULL), 0);
    assert_int_equal(l.v[0].ctx_tokens, 256);
    node_api_models_free(&l);
    assert_int_equal(node_api_oai_models_parse(LIT(LLAMA_MODELS), &l, NULL), 0);
    assert_int_equal(l.v[0].ctx_tokens, 0); /* n_ctx_train is the model's, not the server's */
    node_api_models_free(&l);
    assert_int_equal(node_api_oai_models_parse(LIT(VLLM_MODELS), &l, NULL), 0);
    assert_int_equal(l.v[0].ctx_tokens, 8192);
    assert_int_equal(l.v[1].ctx_tokens, 0);
    node_api_models_free(&l);
    assert_int_equal(node_api_ollama_list_parse(LIT(OLLAMA_PS_CTX), true, &l, NULL), 0);
    assert_int_equal(l.v[0].ctx_tokens, 4096);
    node_api_models_free(&l);
    assert_int_equal(node_api_ollama_list_parse(LIT(OLLAMA_TAGS), false, &l, NULL), 0);
    assert_int_equal(l.v[0].ctx_tokens, 0);
    node_api_models_free(&l);

    assert_string_equal(agent_engine_ep_path(NODE_KIND_LLAMACPP, AGENT_EP_PROPS), "/props");
    assert_null(agent_engine_ep_path(NODE_KIND_VLLM, AGENT_EP_PROPS));
    assert_null(agent_engine_ep_path(NODE_KIND_OLLAMA, AGENT_EP_PROPS));
    struct agent_engine_bodies b;
    memset(&b, 0, sizeof b);
    set_body(&b, AGENT_EP_MODELS, 200, LIT(LLAMA_MODELS));
    set_body(&b, AGENT_EP_PROPS, 200, LIT(LLAMA_PROPS_B11669));
    struct agent_engine_view v;
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_LLAMACPP, &b, &v);
    assert_int_equal(v.models.v[0].ctx_tokens, 1024);
    agent_engine_view_free(&v);
    /* the list's own n_ctx stands; /props only fills a gap */
    set_body(&b, AGENT_EP_MODELS, 200, LIT(LLAMA_MODELS_B11669));
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_LLAMACPP, &b, &v);
    assert_int_equal(v.models.v[0].ctx_tokens, 256);
    agent_engine_view_free(&v);
    /* no /props (a server without it): unknown */
    set_body(&b, AGENT_EP_MODELS, 200, LIT(LLAMA_MODELS));
    set_body(&b, AGENT_EP_PROPS, 404, LIT("{\"error\":{\"code\":404}}"));
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_LLAMACPP, &b, &v);
    assert_int_equal(v.models.v[0].ctx_tokens, 0);
    agent_engine_view_free(&v);
}

static void test_build_ollama_vllm_openai(void **state)
{
    (void)state;
    struct agent_engine_bodies b;
    memset(&b, 0, sizeof b);
    set_body(&b, AGENT_EP_MODELS, 200, LIT(OLLAMA_TAGS));
    set_body(&b, AGENT_EP_LOADED, 200, LIT(OLLAMA_PS));
    struct agent_engine_view v;
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_OLLAMA, &b, &v);
    assert_true(v.reachable);
    assert_false(v.has_counts);
    assert_int_equal(v.models.n, 3);
    assert_int_equal(v.models.v[0].status, NODE_API_MODEL_LOADED);
    agent_engine_view_free(&v);

    memset(&b, 0, sizeof b);
    set_body(&b, AGENT_EP_MODELS, 200, LIT(VLLM_MODELS));
    set_body(&b, AGENT_EP_METRICS, 200, LIT(VLLM_METRICS));
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_VLLM, &b, &v);
    assert_true(v.reachable);
    assert_int_equal(v.running, 3);
    assert_int_equal(v.queued, 1);
    assert_int_equal(v.models.n, 2);
    agent_engine_view_free(&v);

    memset(&b, 0, sizeof b);
    set_body(&b, AGENT_EP_MODELS, 200, LIT(VLLM_MODELS));
    memset(&v, 0, sizeof v);
    agent_engine_build(NODE_KIND_OPENAI, &b, &v);
    assert_true(v.reachable);
    assert_false(v.has_counts);
    assert_int_equal(v.models.v[0].status, NODE_API_MODEL_LOADED);
    agent_engine_view_free(&v);
}

static void test_paths_and_bodies(void **state)
{
    (void)state;
    assert_string_equal(agent_engine_ep_path(NODE_KIND_OLLAMA, AGENT_EP_MODELS), "/api/tags");
    assert_string_equal(agent_engine_ep_path(NODE_KIND_OLLAMA, AGENT_EP_LOADED), "/api/ps");
    assert_null(agent_engine_ep_path(NODE_KIND_OLLAMA, AGENT_EP_METRICS));
    assert_string_equal(agent_engine_ep_path(NODE_KIND_LLAMACPP, AGENT_EP_SLOTS), "/slots");
    assert_string_equal(agent_engine_ep_path(NODE_KIND_VLLM, AGENT_EP_METRICS), "/metrics");
    assert_null(agent_engine_ep_path(NODE_KIND_OPENAI, AGENT_EP_METRICS));
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(agent_engine_ollama_load_body(&b, "llama3.2:1b", false), 0);
    assert_string_equal(
        b.p, "{\"model\":\"llama3.2:1b\",\"prompt\":\"\",\"stream\":false,\"keep_alive\":-1}");
    buf_reset(&b);
    assert_int_equal(agent_engine_ollama_load_body(&b, "m", true), 0);
    assert_non_null(strstr(b.p, "\"keep_alive\":0}"));
    buf_free(&b);
    char host[64];
    int port = 0;
    assert_int_equal(
        agent_engine_parse_url("http://127.0.0.1:11434", host, sizeof host, &port, NULL), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 11434);
    assert_int_equal(agent_engine_parse_url("http://[::1]:8080/", host, sizeof host, &port, NULL),
                     0);
    assert_string_equal(host, "::1");
    assert_int_equal(agent_engine_parse_url("http://localhost", host, sizeof host, &port, NULL), 0);
    assert_int_equal(port, 80);
    assert_int_not_equal(agent_engine_parse_url("https://a:1", host, sizeof host, &port, NULL), 0);
    assert_int_not_equal(agent_engine_parse_url("http://a:99999", host, sizeof host, &port, NULL),
                         0);
    assert_int_not_equal(agent_engine_parse_url("http://a:1/v1", host, sizeof host, &port, NULL),
                         0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oai_models),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_llama_b11669),
        cmocka_unit_test(test_prom),
        cmocka_unit_test(test_ollama_lists),
        cmocka_unit_test(test_build_llamacpp),
        cmocka_unit_test(test_build_ollama_vllm_openai),
        cmocka_unit_test(test_context_lengths),
        cmocka_unit_test(test_paths_and_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
