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
    assert_int_equal(validate_request(API_CHAT,
                                      STRV_LIT("{\"model\":\"m\",\"messages\":[{\"role\":\"u\"}],"
                                               "\"messages\":[{\"role\":\"u\"},{\"role\":1}]}"),
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
    /* a model name of 255 bytes fits, 256 does not */
    char body[400];
    char name[257];
    memset(name, 'x', 256);
    name[256] = '\0';
    snprintf(body, sizeof body, "{\"model\":\"%s\",\"messages\":[{\"role\":\"u\"}]}", name);
    assert_int_equal(validate_request(API_CHAT, strv_from_cstr(body), &v, &e), -1);
    assert_string_equal(e.param, "model");
    name[255] = '\0';
    snprintf(body, sizeof body, "{\"model\":\"%s\",\"messages\":[{\"role\":\"u\"}]}", name);
    assert_int_equal(validate_request(API_CHAT, strv_from_cstr(body), &v, &e), 0);
    assert_int_equal(strlen(v.model), 255);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_deep_json_refused),
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_decoding_and_repeats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
