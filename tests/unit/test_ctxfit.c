/* ctxfit: the estimate of a request's tokens (what counts, what does not, the completion of
 * each API), the judgement of a node's context, OpenAI's wording of the refusal, and the
 * numbers read from the engines' own refusals (recorded from llama-server b11669; vLLM's
 * wordings from its source). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "gw/config.h"
#include "gw/ctxfit.h"

static struct ctx_need est(enum api_kind kind, const char *body)
{
    struct ctx_need n;
    assert_int_equal(ctxfit_estimate(kind, strv_from_cstr(body), NULL, &n), 0);
    assert_true(n.known);
    return n;
}

/* ceil(bytes / 3) + 8 per message + 8, and bytes / 8 */
static void assert_sizes(const struct ctx_need *n, unsigned text_bytes, unsigned msgs, unsigned ids)
{
    assert_int_equal(n->prompt_est, (text_bytes + 2) / 3 + 8 * msgs + 8 + ids);
    assert_int_equal(n->prompt_low, text_bytes / 8 + ids);
}

static void test_chat_counts_text_not_media(void **state)
{
    (void)state;
    /* an image part (its type named after the data, as clients send it) counts nothing */
    char *big = xmalloc(20000);
    int len = snprintf(big, 20000,
                       "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"You are "
                       "terse.\"},{\"role\":\"user\",\"content\":[{\"text\":\"hello world\","
                       "\"type\":\"text\"},{\"image_url\":{\"url\":\"data:image/png;base64,");
    memset(big + len, 'A', 12000);
    snprintf(big + len + 12000, 20000 - (size_t)len - 12000,
             "\"},\"type\":\"image_url\"}]}],\"max_tokens\":100,\"temperature\":0}");
    struct ctx_need n = est(API_CHAT, big);
    /* system(6) You are terse.(14) user(4) hello world(11) text(4) */
    assert_sizes(&n, 39, 2, 0);
    assert_int_equal(n.completion, 100);
    assert_string_equal(n.param, "messages");
    assert_false(n.exact);
    xfree(big);

    /* max_completion_tokens wins over max_tokens; escapes count as what they decode to */
    n = est(API_CHAT, "{\"model\":\"m\",\"max_tokens\":5,\"max_completion_tokens\":7,"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9\\n\"}]}");
    assert_sizes(&n, 4 + 6, 1, 0); /* user, "café\n" is 6 bytes of UTF-8 */
    assert_int_equal(n.completion, 7);
    /* no limit given: no completion */
    n = est(API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(n.completion, 0);
    /* tool calls' arguments are text; tool definitions count their whole JSON */
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]";
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"m\",\"tools\":%s,\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
             "[{\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}",
             tools);
    n = est(API_CHAT, body);
    /* tools JSON, assistant(9) c1(2) f(1) {}(2) */
    assert_sizes(&n, (unsigned)strlen(tools) + 9 + 2 + 1 + 2, 1, 0);
}

static void test_other_apis(void **state)
{
    (void)state;
    /* completions: token ids count exactly; a batch needs what its largest item needs */
    struct ctx_need n =
        est(API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,2,3,4,5],\"max_tokens\":3}");
    assert_sizes(&n, 0, 0, 5);
    assert_int_equal(n.completion, 3);
    assert_string_equal(n.param, "prompt");
    n = est(API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"aaaaaaaaaaaaaaaaaaaaaaaa\",\"b\"]}");
    assert_sizes(&n, 24, 0, 0);
    n = est(API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[[1,2],[1,2,3,4]],\"suffix\":\"xyz\"}");
    assert_sizes(&n, 3, 0, 4);
    /* embeddings: input, never a completion */
    n = est(API_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"twelve bytes\",\"max_tokens\":9}");
    assert_sizes(&n, 12, 0, 0);
    assert_int_equal(n.completion, 0);
    assert_string_equal(n.param, "input");
    /* Ollama: options.num_predict; "images" are not text; -1 is no limit */
    n = est(API_OLLAMA_CHAT,
            "{\"model\":\"m\",\"options\":{\"temperature\":0,\"num_predict\":50},"
            "\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"images\":["
            "\"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhf\"]}]}");
    assert_sizes(&n, 6, 1, 0);
    assert_int_equal(n.completion, 50);
    n = est(API_OLLAMA_GENERATE, "{\"model\":\"m\",\"system\":\"be brief\",\"prompt\":\"why?\","
                                 "\"options\":{\"num_predict\":-1}}");
    assert_sizes(&n, 8 + 4, 0, 0);
    assert_int_equal(n.completion, 0);
    assert_string_equal(n.param, "prompt");
    /* Anthropic: system blocks, an image block's base64 not counted, max_tokens */
    n = est(
        API_ANTHROPIC_MESSAGES,
        "{\"model\":\"m\",\"max_tokens\":64,\"system\":[{\"type\":\"text\",\"text\":\"rules\"}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{"
        "\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"QUFBQUFBQUFBQUFB\"}},"
        "{\"type\":\"text\",\"text\":\"what is it\"}]}]}");
    assert_sizes(&n, 4 + 5 + 4 + 4 + 10, 1, 0); /* text rules user text "what is it" */
    assert_int_equal(n.completion, 64);
    /* nothing to judge: counting tokens, the check switched off */
    struct ctx_need none;
    assert_int_equal(ctxfit_estimate(API_ANTHROPIC_COUNT_TOKENS,
                                     STRV_LIT("{\"model\":\"m\",\"messages\":[]}"), NULL, &none),
                     -1);
    assert_false(none.known);
    struct ctxfit_params off;
    ctxfit_params_defaults(&off);
    off.enabled = false;
    assert_int_equal(ctxfit_estimate(API_CHAT, STRV_LIT("{\"model\":\"m\"}"), &off, &none), -1);
    assert_false(none.known);
    /* other ratios */
    struct ctxfit_params cp;
    ctxfit_params_defaults(&cp);
    cp.estimate_bytes_per_tok = 4;
    cp.refuse_bytes_per_tok = 2;
    assert_int_equal(
        ctxfit_estimate(API_COMPLETIONS, STRV_LIT("{\"prompt\":\"0123456789ab\"}"), &cp, &none), 0);
    assert_int_equal(none.prompt_est, 3 + 8);
    assert_int_equal(none.prompt_low, 6);
    /* from the config file; the completion left out when told */
    const char *yaml = "routing:\n  context:\n    estimate_bytes_per_token: 4\n"
                       "    refuse_bytes_per_token: 2\n    count_completion: false\n";
    struct gw_config cfg;
    struct gw_error err = {0};
    assert_int_equal(gw_config_parse(&cfg, "t.yaml", yaml, strlen(yaml), &err), 0);
    assert_true(cfg.ctxfit.enabled);
    assert_int_equal(ctxfit_estimate(API_CHAT,
                                     STRV_LIT("{\"max_tokens\":50,\"messages\":[{\"role\":"
                                              "\"user\",\"content\":\"12345678\"}]}"),
                                     &cfg.ctxfit, &none),
                     0);
    assert_int_equal(none.prompt_est, 3 + 8 + 8); /* user + 8 bytes, /4 */
    assert_int_equal(none.prompt_low, 6);
    assert_int_equal(none.completion, 0);
    gw_config_free(&cfg);
    const char *bad = "routing:\n  context:\n    refuse_bytes_per_token: 0\n";
    assert_int_not_equal(gw_config_parse(&cfg, "t.yaml", bad, strlen(bad), &err), 0);
    assert_non_null(strstr(err.msg, "refuse_bytes_per_token"));
    gw_config_free(&cfg);
}

/* What llama-server b11669 counted (the e2e test's tiny model: a 128-token vocabulary, so
 * about 5 bytes a token) lies between the two numbers: the estimate above, the floor below. */
static void test_estimate_brackets_a_real_count(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned repeat;
        unsigned counted; /* usage.prompt_tokens through the chat template */
    } seen[] = {
        {"hello world ", 83, 210},
        {"hello world ", 166, 409},
    };
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) {
        size_t tl = strlen(seen[i].text);
        char *body = xmalloc(tl * seen[i].repeat + 128);
        size_t n = (size_t)snprintf(body, 64, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
        for (unsigned k = 0; k < seen[i].repeat; k++, n += tl) memcpy(body + n, seen[i].text, tl);
        memcpy(body + n, "\"}]}", 5);
        struct ctx_need c = est(API_CHAT, body);
        assert_true(c.prompt_est >= seen[i].counted);
        assert_true(c.prompt_low <= seen[i].counted);
        xfree(body);
    }
}

static void test_judge(void **state)
{
    (void)state;
    struct ctx_need n = {.known = true, .prompt_est = 1000, .prompt_low = 400, .completion = 100};
    assert_int_equal(ctxfit_need_est(&n), 1100);
    assert_int_equal(ctxfit_need_low(&n), 500);
    assert_int_equal(ctxfit_judge(0, &n, 0), CTX_FITS); /* unknown context: no constraint */
    assert_int_equal(ctxfit_judge(4096, &n, 0), CTX_FITS);
    assert_int_equal(ctxfit_judge(1100, &n, 0), CTX_FITS);
    assert_int_equal(ctxfit_judge(1099, &n, 0), CTX_TIGHT);
    assert_int_equal(ctxfit_judge(500, &n, 0), CTX_TIGHT);
    assert_int_equal(ctxfit_judge(499, &n, 0), CTX_TOO_SMALL);
    /* a context that refused the request: nothing at most that large */
    assert_int_equal(ctxfit_judge(4096, &n, 4096), CTX_TOO_SMALL);
    assert_int_equal(ctxfit_judge(8192, &n, 4096), CTX_FITS);
    assert_int_equal(ctxfit_judge(0, &n, 4096), CTX_FITS);
    assert_int_equal(ctxfit_judge(100, NULL, 0), CTX_FITS);
    struct ctx_need unknown = {0};
    assert_int_equal(ctxfit_judge(100, &unknown, 0), CTX_FITS);
    assert_string_equal(ctxfit_name(CTX_TIGHT), "tight");
    /* saturating sums */
    struct ctx_need huge = {.known = true, .prompt_est = UINT32_MAX, .completion = 5};
    assert_int_equal(ctxfit_need_est(&huge), UINT32_MAX);
}

static void test_message(void **state)
{
    (void)state;
    char m[400];
    struct ctx_need n = {.known = true, .prompt_est = 5000, .param = "messages"};
    ctxfit_message(m, sizeof m, 4096, &n);
    assert_string_equal(m, "This model's maximum context length is 4096 tokens. However, your "
                           "messages resulted in 5000 tokens. Please reduce the length of the "
                           "messages.");
    n.completion = 100;
    n.param = "prompt";
    ctxfit_message(m, sizeof m, 4096, &n);
    assert_string_equal(m, "This model's maximum context length is 4096 tokens. However, you "
                           "requested 5100 tokens (5000 in the prompt, 100 in the completion). "
                           "Please reduce the length of the prompt or completion.");
    ctxfit_message(m, sizeof m, 0, &n);
    assert_non_null(strstr(m, "longer than this model's context length"));
    char tiny[16];
    assert_int_equal(ctxfit_message(tiny, sizeof tiny, 4096, &n), sizeof tiny - 1);
}

static void test_refusal_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        uint32_t n_ctx, n_prompt;
    } rows[] = {
        /* llama-server b11669, recorded */
        {"{\"error\":{\"code\":400,\"message\":\"request (1610 tokens) exceeds the available "
         "context size (1024 tokens), try increasing it\",\"type\":\"exceed_context_size_error\","
         "\"n_prompt_tokens\":1610,\"n_ctx\":1024}}",
         1024, 1610},
        /* older llama-server: the message only */
        {"{\"error\":{\"code\":400,\"message\":\"the request exceeds the available context size, "
         "try increasing it\",\"type\":\"exceed_context_size_error\"}}",
         0, 0},
        /* vLLM's wordings */
        {"{\"object\":\"error\",\"message\":\"This model's maximum context length is 2048 tokens. "
         "However, you requested 3000 tokens (2000 in the messages, 1000 in the completion). "
         "Please reduce the length of the messages or completion.\",\"type\":"
         "\"BadRequestError\",\"param\":null,\"code\":400}",
         2048, 2000},
        {"{\"object\":\"error\",\"message\":\"This model's maximum context length is 2048 tokens. "
         "However, your messages resulted in 2600 tokens. Please reduce the length of the "
         "messages.\",\"code\":400}",
         2048, 2600},
        {"{\"message\":\"'max_tokens' or 'max_completion_tokens' is too large: 1000. This model's "
         "maximum context length is 2048 tokens and your request has 1500 input tokens (1000 > "
         "2048 - 1500).\"}",
         2048, 1500},
        {"{\"message\":\"The decoder prompt (length 5000) is longer than the maximum model length "
         "of 4096. Make sure that `max_model_len` is no smaller than the number of text tokens.\"}",
         4096, 5000},
        {"{\"message\":\"Input prompt (5000 tokens) is too long and exceeds limit of 4096\"}", 4096,
         5000},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint32_t c = 99, p = 99;
        ctxfit_refusal_numbers(rows[i].body, strlen(rows[i].body), &c, &p);
        if (c != rows[i].n_ctx || p != rows[i].n_prompt) {
            print_error("row %zu: n_ctx=%u n_prompt=%u\n", i, c, p);
            fail();
        }
    }
    uint32_t c = 1, p = 1;
    ctxfit_refusal_numbers(NULL, 0, &c, &p);
    assert_int_equal(c + p, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_counts_text_not_media),
        cmocka_unit_test(test_other_apis),
        cmocka_unit_test(test_estimate_brackets_a_real_count),
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_refusal_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
