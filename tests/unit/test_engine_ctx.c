/* engine_ctx: the engines' own context answers, on recorded bodies — llama-server's /props
 * (b11669, and an older build's top-level n_ctx) and Ollama's /api/show (a Modelfile that
 * sets num_ctx, and one that does not: the model's <arch>.context_length). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "proto/engine_ctx.h"

#define LIT(s) (s), sizeof(s) - 1

static const char PROPS_B11669[] =
    "{\"default_generation_settings\":{\"params\":{\"seed\":4294967295,\"n_predict\":-1},"
    "\"n_ctx\":1024},\"total_slots\":1,\"model_alias\":\"tiny-llama\",\"model_path\":\"/opt/"
    "drover-model/llama-dense.gguf\",\"modalities\":{\"vision\":false},\"chat_template\":\"x\"}";

/* Ollama 0.6's /api/show, abridged (llama3.2 with a Modelfile PARAMETER num_ctx 8192) */
static const char SHOW_NUM_CTX[] =
    "{\"license\":\"LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\",\"modelfile\":\"FROM ...\","
    "\"parameters\":\"num_ctx                        8192\\nstop                           "
    "\\\"<|start_header_id|>\\\"\\nstop                           \\\"<|eot_id|>\\\"\","
    "\"template\":\"{{ .Prompt }}\",\"details\":{\"format\":\"gguf\",\"family\":\"llama\"},"
    "\"model_info\":{\"general.architecture\":\"llama\",\"general.parameter_count\":1235814432,"
    "\"llama.attention.head_count\":32,\"llama.context_length\":131072,"
    "\"llama.embedding_length\":2048},\"modified_at\":\"2025-01-10T10:01:02Z\"}";

/* without num_ctx: the model's own context length */
static const char SHOW_MODEL_INFO[] =
    "{\"parameters\":\"stop \\\"<|im_end|>\\\"\",\"model_info\":{\"general.architecture\":"
    "\"qwen2\",\"qwen2.block_count\":24,\"qwen2.context_length\":32768},\"capabilities\":["
    "\"completion\",\"tools\"]}";

static void test_props(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(engine_ctx_llamacpp_props(LIT(PROPS_B11669), &v, NULL), 0);
    assert_int_equal(v, 1024);
    assert_int_equal(engine_ctx_llamacpp_props(LIT("{\"n_ctx\":4096,\"total_slots\":4}"), &v, NULL),
                     0);
    assert_int_equal(v, 4096);
    struct gw_error err = {0};
    assert_int_equal(engine_ctx_llamacpp_props(LIT("{\"total_slots\":4}"), &v, &err),
                     GW_E_NOTFOUND);
    assert_int_equal(
        engine_ctx_llamacpp_props(LIT("{\"default_generation_settings\":{\"n_ctx\":0}}"), &v, NULL),
        GW_E_NOTFOUND);
    assert_int_not_equal(engine_ctx_llamacpp_props(LIT("<html>"), &v, &err), 0);
    assert_int_not_equal(engine_ctx_llamacpp_props(LIT("[1]"), &v, &err), 0);
    assert_int_equal(v, 4096); /* untouched by the failures */
}

static void test_ollama_show(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(engine_ctx_ollama_show(LIT(SHOW_NUM_CTX), &v, NULL), 0);
    assert_int_equal(v, 8192); /* what the Modelfile runs it with, not the model's 131072 */
    assert_int_equal(engine_ctx_ollama_show(LIT(SHOW_MODEL_INFO), &v, NULL), 0);
    assert_int_equal(v, 32768);
    assert_int_equal(
        engine_ctx_ollama_show(LIT("{\"parameters\":\"num_ctxx 5\\nnum_ctx abc\"}"), &v, NULL),
        GW_E_NOTFOUND);
    assert_int_equal(
        engine_ctx_ollama_show(LIT("{\"model_info\":{\"x.context_length\":\"1\"}}"), &v, NULL),
        GW_E_NOTFOUND);
    struct gw_error err = {0};
    assert_int_not_equal(engine_ctx_ollama_show(LIT("{"), &v, &err), 0);
    struct buf b;
    buf_init(&b, 1024);
    assert_int_equal(engine_ctx_ollama_show_body(&b, "llama3.2:1b \"x\""), 0);
    assert_int_equal(b.len, strlen("{\"model\":\"llama3.2:1b \\\"x\\\"\"}"));
    assert_memory_equal(b.p, "{\"model\":\"llama3.2:1b \\\"x\\\"\"}", b.len);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_props),
        cmocka_unit_test(test_ollama_show),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
