/* Request validation: every refusal names its parameter; good requests pass with the
 * right model, stream flag and capability. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gw/registry.h"
#include "gw/validate.h"

struct bad_case {
    enum api_kind kind;
    const char *body;
    const char *param;
    const char *code;
};

static const struct bad_case bads[] = {
    {API_CHAT, "", "", "invalid_json"},
    {API_CHAT, "{\"model\":", "", "invalid_json"},
    {API_CHAT, "{\"model\":\"m\"} x", "", "invalid_json"},
    {API_CHAT, "[1,2]", "", "invalid_json"},
    {API_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "model", "missing_parameter"},
    {API_CHAT, "{\"model\":7,\"messages\":[{\"role\":\"user\"}]}", "model", "invalid_type"},
    {API_CHAT, "{\"model\":\"\",\"messages\":[{\"role\":\"user\"}]}", "model", "invalid_value"},
    {API_CHAT, "{\"model\":\"m\"}", "messages", "missing_parameter"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages", "invalid_value"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":{}}", "messages", "invalid_type"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[1]}", "messages[0]", "invalid_type"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", "messages[0].role",
     "invalid_value"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream\":\"yes\"}", "stream",
     "invalid_type"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"max_tokens\":1.5}",
     "max_tokens", "invalid_type"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"temperature\":\"hot\"}",
     "temperature", "invalid_type"},
    {API_COMPLETIONS, "{\"model\":\"m\"}", "prompt", "missing_parameter"},
    {API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":3}", "prompt", "invalid_type"},
    {API_EMBEDDINGS, "{\"model\":\"m\"}", "input", "missing_parameter"},
    {API_EMBEDDINGS, "{\"model\":\"m\",\"input\":[]}", "input", "invalid_value"},
    {API_OLLAMA_EMBED, "{\"model\":\"m\",\"input\":{}}", "input", "invalid_type"},
    {API_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":[1]}", "prompt", "invalid_type"},
    {API_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":\"hi\"}", "messages", "invalid_type"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", "",
     "invalid_json"},
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        struct validated v;
        struct validate_error e;
        const struct bad_case *c = &bads[i];
        int rc = validate_request(c->kind, strv_from_cstr(c->body), &v, &e);
        if (rc != -1 || strcmp(e.param, c->param) != 0 || strcmp(e.code, c->code) != 0) {
            print_error("case %zu (%s): rc=%d param='%s' code='%s' msg='%s'\n", i, c->body, rc,
                        e.param, e.code ? e.code : "(null)", e.message);
            fail();
        }
        assert_true(strlen(e.message) > 0);
    }
}

static void test_deep_json_refused(void **state)
{
    (void)state;
    char body[400];
    size_t o = 0;
    o += (size_t)snprintf(body, sizeof body, "{\"model\":\"m\",\"x\":");
    for (int i = 0; i < 100; i++) body[o++] = '[';
    body[o] = '\0';
    struct validated v;
    struct validate_error e;
    assert_int_equal(validate_request(API_CHAT, strv_from_cstr(body), &v, &e), -1);
    assert_string_equal(e.code, "invalid_json");
}

static void test_good(void **state)
{
    (void)state;
    struct validated v;
    struct validate_error e;
    assert_int_equal(
        validate_request(API_CHAT,
                         STRV_LIT("{\"model\":\"llama\",\"messages\":[{\"role\":\"user\","
                                  "\"content\":\"hi\"}],\"stream\":true,\"max_tokens\":5}"),
                         &v, &e),
        0);
    assert_string_equal(v.model, "llama");
    assert_true(v.stream);
    assert_false(v.ollama);
    assert_int_equal(v.cap, CAP_CHAT);
    assert_int_equal(validate_request(API_EMBEDDINGS,
                                      STRV_LIT("{\"model\":\"e\",\"input\":[\"a\",\"b\"]}"), &v,
                                      &e),
                     0);
    assert_int_equal(v.cap, CAP_EMBEDDINGS);
    assert_false(v.stream);
    /* Ollama streams by default */
    assert_int_equal(
        validate_request(API_OLLAMA_CHAT, STRV_LIT("{\"model\":\"m\",\"messages\":[]}"), &v, &e),
        0);
    assert_true(v.stream);
    assert_true(v.ollama);
    assert_int_equal(validate_request(API_OLLAMA_GENERATE,
                                      STRV_LIT("{\"model\":\"m\",\"prompt\":\"x\",\"stream\":false,"
                                               "\"keep_alive\":\"5m\"}"),
                                      &v, &e),
                     0);
    assert_false(v.stream);
    assert_int_equal(validate_request(API_COMPLETIONS,
                                      STRV_LIT("{\"model\":\"m\",\"prompt\":[\"a\"]} \n"), &v, &e),
                     0);
}

/* What a node's own parser would see decides: escaped member names are the names they
 * decode to, a repeated member's last value wins, escapes in the model are decoded, and the
 * message rules look inside each message (the last "role" wins there too). */
static void test_decoding_and_repeats(void **state)
{
    (void)state;
    struct validated v;
    struct validate_error e;
    assert_int_equal(validate_request(API_CHAT,
                                      STRV_LIT("{\"mod\\u0065l\":\"a\\/b\\u00e9\",\"messages\":"
                                               "[{\"role\":\"user\"}]}"),
                                      &v, &e),
                     0);
    assert_string_equal(v.model, "a/b\xc3\xa9");
    assert_int_equal(validate_request(API_CHAT,
                                      STRV_LIT("{\"model\":7,\"model\":\"second\",\"stream\":\"x\","
                                               "\"stream\":true,\"messages\":[1],\"messages\":"
                                               "[{\"role\":\"\",\"role\":\"user\"}]}"),
                                      &v, &e),
                     0);
    assert_string_equal(v.model, "second");
    assert_true(v.stream);
    /* the last occurrence also decides a refusal */
    assert_int_equal(
        validate_request(API_CHAT,
                         STRV_LIT("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
                                  "\"messages\":[{\"role\":\"user\"},{\"role\":1}]}"),
                         &v, &e),
        -1);
    assert_string_equal(e.param, "messages[1].role");
    /* null is "absent" for optional knobs, present for stream (no Ollama default) */
    assert_int_equal(validate_request(API_OLLAMA_GENERATE,
                                      STRV_LIT("{\"model\":\"m\",\"stream\":null,\"temperature\":"
                                               "null}"),
                                      &v, &e),
                     0);
    assert_false(v.stream);
    /* a model name of 256 bytes fits, 257 does not */
    char body[400];
    char name[258];
    memset(name, 'x', 257);
    name[257] = '\0';
    snprintf(body, sizeof body, "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\"}]}", name);
    assert_int_equal(validate_request(API_CHAT, strv_from_cstr(body), &v, &e), -1);
    assert_string_equal(e.param, "model");
    assert_string_equal(e.code, "invalid_value");
    name[256] = '\0';
    snprintf(body, sizeof body, "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\"}]}", name);
    assert_int_equal(validate_request(API_CHAT, strv_from_cstr(body), &v, &e), 0);
    assert_int_equal(strlen(v.model), 256);
    assert_int_equal(v.model_len, 256);
    /* a NUL in a member name, raw control bytes, bad escapes and a bare top level */
    static const char *const bad_json[] = {"{\"mo\\u0000del\":\"m\"}",
                                           "{\"model\":\"a\tb\"}",
                                           "{\"model\":\"\\x\"}",
                                           "{\"model\":\"\\u12\"}",
                                           "{\"model\":\"m\",}",
                                           "{\"model\" \"m\"}",
                                           "{\"a\":[1,]}",
                                           "{\"a\":01}",
                                           "{\"a\":tru}",
                                           "{\"a\":1} {}",
                                           "{\"a\":\"\xc0\xaf\"}"};
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        assert_int_equal(validate_request(API_CHAT, strv_from_cstr(bad_json[i]), &v, &e), -1);
        assert_string_equal(e.code, "invalid_json");
    }
    assert_int_equal(validate_request(API_CHAT, STRV_LIT("\"m\""), &v, &e), -1);
    assert_non_null(strstr(e.message, "must be a JSON object"));
}

/* ---- one case per rule: each fails when its rule is removed ---------------------------- */

#define CHAT(x) "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]," x "}"
#define OCHAT(x) "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"options\":{" x "}}"

static const struct bad_case rule_bads[] = {
    /* max_tokens / max_completion_tokens: integers 1..2^31-1 */
    {API_CHAT, CHAT("\"max_tokens\":-5"), "max_tokens", "integer_below_min_value"},
    {API_CHAT, CHAT("\"max_tokens\":0"), "max_tokens", "integer_below_min_value"},
    {API_CHAT, CHAT("\"max_tokens\":2147483648"), "max_tokens", "integer_above_max_value"},
    {API_CHAT, CHAT("\"max_tokens\":1e999999"), "max_tokens", "invalid_type"},
    {API_CHAT, CHAT("\"max_tokens\":5.0"), "max_tokens", "invalid_type"},
    {API_CHAT, CHAT("\"max_tokens\":-0"), "max_tokens", "integer_below_min_value"},
    {API_CHAT, CHAT("\"max_completion_tokens\":0"), "max_completion_tokens",
     "integer_below_min_value"},
    {API_CHAT, CHAT("\"max_completion_tokens\":99999999999999999999999"), "max_completion_tokens",
     "integer_above_max_value"},
    {API_CHAT, CHAT("\"max_completion_tokens\":\"5\""), "max_completion_tokens", "invalid_type"},
    {API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":-5}", "max_tokens",
     "integer_below_min_value"},
    /* temperature 0..2 */
    {API_CHAT, CHAT("\"temperature\":-0.1"), "temperature", "decimal_below_min_value"},
    {API_CHAT, CHAT("\"temperature\":2.01"), "temperature", "decimal_above_max_value"},
    {API_CHAT, CHAT("\"temperature\":3"), "temperature", "decimal_above_max_value"},
    {API_CHAT, CHAT("\"temperature\":1e999999"), "temperature", "decimal_above_max_value"},
    {API_CHAT, CHAT("\"temperature\":-1e999999"), "temperature", "decimal_below_min_value"},
    {API_CHAT,
     CHAT("\"temperature\":2.500000000000000000000000000000000000000000000000000000000000000000"
          "00000000000000000001"),
     "temperature", "decimal_above_max_value"},
    {API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"p\",\"temperature\":5}", "temperature",
     "decimal_above_max_value"},
    /* top_p 0..1 */
    {API_CHAT, CHAT("\"top_p\":1.5"), "top_p", "decimal_above_max_value"},
    {API_CHAT, CHAT("\"top_p\":-0.5"), "top_p", "decimal_below_min_value"},
    {API_CHAT, CHAT("\"top_p\":true"), "top_p", "invalid_type"},
    /* penalties -2..2 */
    {API_CHAT, CHAT("\"presence_penalty\":-2.5"), "presence_penalty", "decimal_below_min_value"},
    {API_CHAT, CHAT("\"presence_penalty\":2.5"), "presence_penalty", "decimal_above_max_value"},
    {API_CHAT, CHAT("\"frequency_penalty\":-3"), "frequency_penalty", "decimal_below_min_value"},
    {API_CHAT, CHAT("\"frequency_penalty\":2.0001"), "frequency_penalty",
     "decimal_above_max_value"},
    /* n 1..128, an integer */
    {API_CHAT, CHAT("\"n\":0"), "n", "integer_below_min_value"},
    {API_CHAT, CHAT("\"n\":129"), "n", "integer_above_max_value"},
    {API_CHAT, CHAT("\"n\":1.0"), "n", "invalid_type"},
    {API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"p\",\"n\":200}", "n",
     "integer_above_max_value"},
    /* seed an integer */
    {API_CHAT, CHAT("\"seed\":1.5"), "seed", "invalid_type"},
    /* stream a boolean */
    {API_CHAT, CHAT("\"stream\":1"), "stream", "invalid_type"},
    {API_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"p\",\"stream\":\"false\"}", "stream",
     "invalid_type"},
    /* roles from OpenAI's set, exactly */
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"bot\"}]}", "messages[0].role",
     "invalid_value"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"},{\"role\":\"User\"}]}",
     "messages[1].role", "invalid_value"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistantXXXXXXXX\"}]}",
     "messages[0].role", "invalid_value"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\\u0000\"}]}", "messages[0].role",
     "invalid_value"},
    {API_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\"}]}", "messages[0].role",
     "invalid_value"},
    /* lone UTF-16 surrogates in \u escapes */
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\ud800\"}]}", "",
     "invalid_json"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\udc00x\"}]}", "",
     "invalid_json"},
    {API_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\uD83D\\u0041\"}]}", "",
     "invalid_json"},
    {API_CHAT, "{\"model\":\"m\\uDBFF\",\"messages\":[{\"role\":\"user\"}]}", "", "invalid_json"},
    /* model: no control characters (C0, DEL, C1), not empty */
    {API_CHAT, "{\"model\":\"sim-chat\\u0000x\",\"messages\":[{\"role\":\"user\"}]}", "model",
     "invalid_value"},
    {API_CHAT, "{\"model\":\"sim\\nchat\",\"messages\":[{\"role\":\"user\"}]}", "model",
     "invalid_value"},
    {API_CHAT, "{\"model\":\"sim\\u001f\",\"messages\":[{\"role\":\"user\"}]}", "model",
     "invalid_value"},
    {API_CHAT, "{\"model\":\"sim\\u007f\",\"messages\":[{\"role\":\"user\"}]}", "model",
     "invalid_value"},
    {API_CHAT, "{\"model\":\"sim\\u0085\",\"messages\":[{\"role\":\"user\"}]}", "model",
     "invalid_value"},
    {API_OLLAMA_GENERATE, "{\"model\":\"\\u0000\",\"prompt\":\"p\"}", "model", "invalid_value"},
    /* embeddings: input present (OpenAI and /api/embed), prompt for /api/embeddings */
    {API_EMBEDDINGS, "{\"model\":\"m\",\"input\":null}", "input", "missing_parameter"},
    {API_EMBEDDINGS, "{\"model\":\"m\",\"input\":5}", "input", "invalid_type"},
    {API_OLLAMA_EMBED, "{\"model\":\"m\",\"prompt\":\"x\"}", "input", "missing_parameter"},
    {API_OLLAMA_EMBEDDINGS_LEGACY, "{\"model\":\"m\"}", "prompt", "missing_parameter"},
    {API_OLLAMA_EMBEDDINGS_LEGACY, "{\"model\":\"m\",\"input\":\"x\"}", "prompt",
     "missing_parameter"},
    {API_OLLAMA_EMBEDDINGS_LEGACY, "{\"model\":\"m\",\"prompt\":[\"x\"]}", "prompt",
     "invalid_type"},
    {API_OLLAMA_EMBEDDINGS_LEGACY, "{\"prompt\":\"x\"}", "model", "missing_parameter"},
    /* Ollama options */
    {API_OLLAMA_CHAT, OCHAT("\"num_predict\":\"5\""), "options.num_predict", "invalid_type"},
    {API_OLLAMA_CHAT, OCHAT("\"num_predict\":1.5"), "options.num_predict", "invalid_type"},
    {API_OLLAMA_CHAT, OCHAT("\"num_predict\":-3"), "options.num_predict",
     "integer_below_min_value"},
    {API_OLLAMA_CHAT, OCHAT("\"num_predict\":2147483648"), "options.num_predict",
     "integer_above_max_value"},
    {API_OLLAMA_GENERATE, "{\"model\":\"m\",\"options\":{\"num_predict\":1e999999}}",
     "options.num_predict", "integer_above_max_value"},
    {API_OLLAMA_CHAT, OCHAT("\"temperature\":-1"), "options.temperature",
     "decimal_below_min_value"},
    {API_OLLAMA_CHAT, OCHAT("\"temperature\":\"hot\""), "options.temperature", "invalid_type"},
    {API_OLLAMA_CHAT, OCHAT("\"temperature\":1e999999"), "options.temperature",
     "decimal_above_max_value"},
    {API_OLLAMA_CHAT, OCHAT("\"top_p\":2"), "options.top_p", "decimal_above_max_value"},
    {API_OLLAMA_CHAT, OCHAT("\"min_p\":-0.1"), "options.min_p", "decimal_below_min_value"},
    {API_OLLAMA_CHAT, OCHAT("\"seed\":1.5"), "options.seed", "invalid_type"},
    {API_OLLAMA_CHAT, OCHAT("\"top_k\":-1"), "options.top_k", "integer_below_min_value"},
    {API_OLLAMA_CHAT, OCHAT("\"mirostat\":3"), "options.mirostat", "integer_above_max_value"},
    {API_OLLAMA_GENERATE, "{\"model\":\"m\",\"options\":{\"num_ctx\":0}}", "options.num_ctx",
     "integer_below_min_value"},
    {API_OLLAMA_EMBED, "{\"model\":\"m\",\"input\":\"x\",\"options\":{\"num_ctx\":[]}}",
     "options.num_ctx", "invalid_type"},
    {API_OLLAMA_EMBEDDINGS_LEGACY,
     "{\"model\":\"m\",\"prompt\":\"x\",\"options\":{\"repeat_penalty\":{}}}",
     "options.repeat_penalty", "invalid_type"},
    {API_OLLAMA_CHAT, "{\"model\":\"m\",\"options\":[]}", "options", "invalid_type"},
    /* the last "options" counts */
    {API_OLLAMA_CHAT,
     "{\"model\":\"m\",\"options\":{\"num_predict\":5},\"options\":{\"num_predict\":-9}}",
     "options.num_predict", "integer_below_min_value"},
};

static void run_bads(const struct bad_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct validated v;
        struct validate_error e;
        const struct bad_case *c = &cases[i];
        int rc = validate_request(c->kind, strv_from_cstr(c->body), &v, &e);
        if (rc != -1 || strcmp(e.param, c->param) != 0 || !e.code || strcmp(e.code, c->code)) {
            print_error("case %zu (%s): rc=%d param='%s' code='%s' msg='%s'\n", i, c->body, rc,
                        e.param, e.code ? e.code : "(null)", e.message);
            fail();
        }
        assert_true(strlen(e.message) > 0);
    }
}

static void test_rule_refusals(void **state)
{
    (void)state;
    run_bads(rule_bads, sizeof rule_bads / sizeof rule_bads[0]);
}

/* The same rules let their boundaries and every legal form through. */
static const struct {
    enum api_kind kind;
    const char *body;
} rule_goods[] = {
    {API_CHAT, CHAT("\"max_tokens\":1,\"max_completion_tokens\":2147483647,\"n\":128")},
    {API_CHAT, CHAT("\"temperature\":0,\"top_p\":1,\"presence_penalty\":-2,"
                    "\"frequency_penalty\":2.0,\"n\":1")},
    {API_CHAT, CHAT("\"temperature\":2e0,\"top_p\":0.0,\"presence_penalty\":2E-400")},
    {API_CHAT,
     CHAT("\"temperature\":0.0000000000000000000000000000000000000000000000000000000000000000000"
          "0000000000000000000000000007")},
    {API_CHAT, CHAT("\"temperature\":null,\"max_tokens\":null,\"seed\":-99999999999")},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\"},{\"role\":\"user\"},"
               "{\"role\":\"assistant\"},{\"role\":\"tool\"},{\"role\":\"function\"},"
               "{\"role\":\"developer\"},{\"role\":\"us\\u0065r\"}]}"},
    {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
               "\"\\ud83d\\ude00 \\\\ud800 \\uFFFD \\u00e9\"}]}"},
    {API_CHAT, "{\"model\":\"llama3.1:8b-instruct-q4_K_M \\u00e9/x\",\"messages\":"
               "[{\"role\":\"user\"}]}"},
    {API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":16,\"temperature\":1.5}"},
    /* ranges are OpenAI's; embeddings and Ollama's top level only check types */
    {API_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"x\",\"temperature\":5}"},
    {API_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":0}"},
    {API_OLLAMA_CHAT, OCHAT("\"num_predict\":-1,\"temperature\":5,\"top_p\":1,\"seed\":-1")},
    {API_OLLAMA_CHAT, OCHAT("\"num_predict\":-2,\"num_ctx\":8192.0,\"stop\":[\"x\"],"
                            "\"unknown\":\"kept\",\"num_gpu\":null")},
    {API_OLLAMA_CHAT, OCHAT("\"num_predict\":1e3")},
    {API_OLLAMA_CHAT,
     "{\"model\":\"m\",\"options\":{\"num_predict\":-9},\"options\":{\"num_predict\":9}}"},
    {API_OLLAMA_CHAT, "{\"model\":\"m\",\"options\":{\"num_predict\":-9},\"options\":{}}"},
    {API_OLLAMA_EMBED, "{\"model\":\"m\",\"input\":[\"a\"],\"options\":{\"num_ctx\":512}}"},
    {API_OLLAMA_EMBEDDINGS_LEGACY, "{\"model\":\"m\",\"prompt\":\"x\"}"},
    {API_OLLAMA_EMBEDDINGS_LEGACY, "{\"model\":\"m\",\"prompt\":\"\"}"},
};

static void test_rule_boundaries_pass(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rule_goods / sizeof rule_goods[0]; i++) {
        struct validated v;
        struct validate_error e;
        int rc = validate_request(rule_goods[i].kind, strv_from_cstr(rule_goods[i].body), &v, &e);
        if (rc != 0) {
            print_error("case %zu (%s): param='%s' code='%s' msg='%s'\n", i, rule_goods[i].body,
                        e.param, e.code ? e.code : "(null)", e.message);
            fail();
        }
    }
}

/* body = the concatenation of the parts that are not NULL. */
static struct strv cat_body(char *body, size_t cap, const char *p0, const char *p1, const char *p2,
                            const char *p3, const char *p4)
{
    const char *parts[5] = {p0, p1, p2, p3, p4};
    size_t o = 0;
    for (int i = 0; i < 5; i++) {
        if (!parts[i]) continue;
        size_t n = strlen(parts[i]);
        assert_true(o + n < cap);
        memcpy(body + o, parts[i], n);
        o += n;
    }
    body[o] = '\0';
    return strv_make(body, o);
}

/* Numbers no stack buffer holds: 100,000 digits of max_tokens, of temperature, of an Ollama
 * option, and 100,000-digit fractions that are in range. */
static void test_huge_numbers(void **state)
{
    (void)state;
    enum { DIGITS = 100000 };
    static char num[DIGITS + 8];
    static char body[2 * DIGITS + 200];
    const char *chat = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],";
    const char *ochat = "{\"model\":\"m\",\"options\":{\"num_predict\":";
    struct validated v;
    struct validate_error e;
    memset(num, '9', DIGITS);
    num[DIGITS] = '\0';
    struct strv b = cat_body(body, sizeof body, chat, "\"max_tokens\":", num, "}", NULL);
    assert_int_equal(validate_request(API_CHAT, b, &v, &e), -1);
    assert_string_equal(e.param, "max_tokens");
    assert_string_equal(e.code, "integer_above_max_value");
    assert_true(strlen(e.message) < sizeof e.message);
    b = cat_body(body, sizeof body, chat, "\"max_tokens\":-", num, "}", NULL);
    assert_int_equal(validate_request(API_CHAT, b, &v, &e), -1);
    assert_string_equal(e.code, "integer_below_min_value");
    b = cat_body(body, sizeof body, chat, "\"temperature\":", num, "}", NULL);
    assert_int_equal(validate_request(API_CHAT, b, &v, &e), -1);
    assert_string_equal(e.code, "decimal_above_max_value");
    b = cat_body(body, sizeof body, ochat, num, "}}", NULL, NULL);
    assert_int_equal(validate_request(API_OLLAMA_CHAT, b, &v, &e), -1);
    assert_string_equal(e.param, "options.num_predict");
    assert_string_equal(e.code, "integer_above_max_value");
    /* 0.999…9 (99,998 nines) rounds to 1: a top_p of 1 passes, a temperature too */
    num[0] = '0';
    num[1] = '.';
    b = cat_body(body, sizeof body,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"top_p\":", num,
                 ",\"temperature\":", num, "}");
    assert_int_equal(validate_request(API_CHAT, b, &v, &e), 0);
    /* 1.999…9 rounds to 2: still a legal temperature; 1.999…9e1 is about 20 */
    num[0] = '1';
    b = cat_body(body, sizeof body, chat, "\"temperature\":", num, "e0}", NULL);
    assert_int_equal(validate_request(API_CHAT, b, &v, &e), 0);
    b = cat_body(body, sizeof body, chat, "\"temperature\":", num, "e1}", NULL);
    assert_int_equal(validate_request(API_CHAT, b, &v, &e), -1);
    assert_string_equal(e.code, "decimal_above_max_value");
    /* 0.000…01 (100,000 digits) rounds to 0 and its negative to -0: neither is below 0 */
    memset(num, '0', DIGITS);
    num[1] = '.';
    num[DIGITS - 1] = '1';
    b = cat_body(body, sizeof body, chat, "\"temperature\":", num, "}", NULL);
    assert_int_equal(validate_request(API_CHAT, b, &v, &e), 0);
    b = cat_body(body, sizeof body, chat, "\"temperature\":-", num, "}", NULL);
    assert_int_equal(validate_request(API_CHAT, b, &v, &e), 0); /* -0.0, as Python's float */
    /* an exponent past any int: 1e+999…9 and its reciprocal */
    assert_int_equal(validate_request(API_CHAT,
                                      STRV_LIT(CHAT("\"temperature\":1e+99999999999999999999999"
                                                    "999999999999999999999999999999999999999")),
                                      &v, &e),
                     -1);
    assert_string_equal(e.code, "decimal_above_max_value");
    assert_int_equal(validate_request(API_CHAT,
                                      STRV_LIT(CHAT("\"temperature\":1e-99999999999999999999999"
                                                    "999999999999999999999999999999999999999")),
                                      &v, &e),
                     0);
}

/* "sim-chat\u0000x" was routed as "sim-chat": the decoded name went into a C string. */
static void test_model_is_exactly_what_was_sent(void **state)
{
    (void)state;
    struct validated v;
    struct validate_error e;
    assert_int_equal(validate_request(API_CHAT,
                                      STRV_LIT("{\"model\":\"sim-chat\\u0000x\",\"messages\":"
                                               "[{\"role\":\"user\"}]}"),
                                      &v, &e),
                     -1);
    assert_string_equal(e.param, "model");
    assert_non_null(strstr(e.message, "control"));
    assert_int_equal(validate_request(API_CHAT,
                                      STRV_LIT("{\"model\":\"sim-chat\",\"messages\":"
                                               "[{\"role\":\"user\"}]}"),
                                      &v, &e),
                     0);
    assert_int_equal(v.model_len, strlen(v.model));
    assert_int_equal(v.model_len, 8);
}

static void test_ollama_legacy_embeddings(void **state)
{
    (void)state;
    struct validated v;
    struct validate_error e;
    assert_int_equal(validate_request(API_OLLAMA_EMBEDDINGS_LEGACY,
                                      STRV_LIT("{\"model\":\"nomic\",\"prompt\":\"hi\"}"), &v, &e),
                     0);
    assert_string_equal(v.model, "nomic");
    assert_int_equal(v.cap, CAP_EMBEDDINGS);
    assert_true(v.ollama);
    assert_false(v.stream);
    /* the newer endpoint still wants "input" */
    assert_int_equal(validate_request(API_OLLAMA_EMBED,
                                      STRV_LIT("{\"model\":\"nomic\",\"prompt\":\"hi\"}"), &v, &e),
                     -1);
    assert_string_equal(e.param, "input");
}

static void test_content_type(void **state)
{
    (void)state;
    struct validate_error e;
    static const char *const good[] = {"",
                                       "application/json",
                                       "Application/JSON",
                                       "application/json; charset=utf-8",
                                       "application/json;charset=UTF-8",
                                       "APPLICATION/JSON ; Charset=\"utf-8\"",
                                       "application/json; foo=bar",
                                       " application/json "};
    assert_int_equal(validate_content_type(STRV_NULL, &e), 0);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (validate_content_type(strv_from_cstr(good[i]), &e) != 0)
            fail_msg("refused '%s': %s", good[i], e.message);
    static const char *const bad_ct[] = {"application/x-www-form-urlencoded",
                                         "text/plain",
                                         "text/plain;charset=UTF-8",
                                         "multipart/form-data; boundary=x",
                                         "application/jsonx",
                                         "application/json-seq",
                                         "application/json; charset=iso-8859-1",
                                         "application/json; charset=\"utf-16\"",
                                         "application",
                                         ";charset=utf-8"};
    for (size_t i = 0; i < sizeof bad_ct / sizeof bad_ct[0]; i++) {
        if (validate_content_type(strv_from_cstr(bad_ct[i]), &e) != -1)
            fail_msg("accepted '%s'", bad_ct[i]);
        assert_string_equal(e.code, "invalid_content_type");
        assert_string_equal(e.param, "");
        assert_true(strlen(e.message) > 0);
    }
    /* not NUL-terminated: only len bytes count */
    assert_int_equal(validate_content_type(strv_make("application/jsonXYZ", 16), &e), 0);
}

/* The optional features a request uses, for the capability a node's refusal marks. */
static void test_features(void **state)
{
    (void)state;
    struct {
        enum api_kind kind;
        const char *body;
        unsigned features;
    } cases[] = {
        {API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0},
        {API_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}",
         CAP_TOOLS},
        {API_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[]}", 0},
        {API_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
         "\"text\":\"x\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:\"}}]}]}",
         CAP_VISION},
        {API_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"response_format\":{\"type\":\"json_object\"}}",
         CAP_RESPONSE_FORMAT},
        {API_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"response_format\":{\"type\":\"text\"}}",
         0},
        {API_OLLAMA_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[\"aGk=\"]"
         "}],"
         "\"format\":\"json\"}",
         CAP_VISION | CAP_RESPONSE_FORMAT},
        {API_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"x\",\"images\":[\"aGk=\"]}",
         CAP_VISION},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct validated v;
        struct validate_error e;
        assert_int_equal(validate_request(cases[i].kind, strv_from_cstr(cases[i].body), &v, &e), 0);
        assert_int_equal(v.features, cases[i].features);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_deep_json_refused),
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_decoding_and_repeats),
        cmocka_unit_test(test_rule_refusals),
        cmocka_unit_test(test_rule_boundaries_pass),
        cmocka_unit_test(test_huge_numbers),
        cmocka_unit_test(test_model_is_exactly_what_was_sent),
        cmocka_unit_test(test_ollama_legacy_embeddings),
        cmocka_unit_test(test_content_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
