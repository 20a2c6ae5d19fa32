/* test_translate — Ollama and Anthropic over chat completions: request mapping (fields, options,
 * tools, tool results), buffered answers, and streams whose output is the same whatever the
 * chunk boundaries (every 2-way cut and byte by byte) and complete only at [DONE]. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "gw/translate.h"

enum { NOW = 5000000, START = 1000000 };

static struct json_object *prepare(struct xlate *x, enum api_kind kind, enum node_kind node,
                                   const char *body, bool stream)
{
    struct buf local;
    buf_init(&local, 1 << 20);
    char why[256] = "";
    memset(x, 0, sizeof *x);
    int rc = xlate_prepare(x, xlate_mode_for(kind, node), node, strv_from_cstr(body), "routed",
                           "asked", stream, START, &local, why, sizeof why);
    buf_free(&local);
    if (rc != 0) fail_msg("prepare: rc=%d %s", rc, why);
    struct json_object *o = json_parse_strict(x->up_body.p, x->up_body.len, 64, NULL);
    assert_non_null(o);
    return o;
}

static const char *jpath(struct json_object *o, const char *a, const char *b, const char *c)
{
    struct json_object *v = o;
    const char *k[3] = {a, b, c};
    for (int i = 0; i < 3 && k[i] && v; i++) {
        if (json_object_is_type(v, json_type_array))
            v = json_object_array_get_idx(v, (size_t)(k[i][0] - '0'));
        else if (!json_object_object_get_ex(v, k[i], &v))
            v = NULL;
    }
    return v ? json_object_get_string(v) : NULL;
}

static void test_modes(void **state)
{
    (void)state;
    assert_int_equal(xlate_mode_for(API_OLLAMA_CHAT, NODE_KIND_OLLAMA), XLATE_NONE);
    assert_int_equal(xlate_mode_for(API_OLLAMA_CHAT, NODE_KIND_LLAMACPP), XLATE_OLLAMA_CHAT);
    assert_int_equal(xlate_mode_for(API_OLLAMA_EMBEDDINGS_LEGACY, NODE_KIND_OPENAI),
                     XLATE_OLLAMA_EMBEDDINGS);
    assert_int_equal(xlate_mode_for(API_ANTHROPIC_MESSAGES, NODE_KIND_OLLAMA), XLATE_ANTHROPIC);
    assert_int_equal(xlate_mode_for(API_CHAT, NODE_KIND_OLLAMA), XLATE_NONE);
    assert_true(xlate_any_node(API_OLLAMA_GENERATE));
    assert_false(xlate_any_node(API_CHAT));
}

static void test_ollama_chat_request(void **state)
{
    (void)state;
    struct xlate x;
    struct json_object *o = prepare(
        &x, API_OLLAMA_CHAT, NODE_KIND_LLAMACPP,
        "{\"model\":\"asked\",\"keep_alive\":\"5m\",\"format\":\"json\","
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"images\":[\"QUJD\"]},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
        "\"arguments\":{\"a\":1}}}]},{\"role\":\"tool\",\"content\":\"42\"}],"
        "\"options\":{\"num_predict\":7,\"temperature\":0.5,\"top_p\":0.9,\"seed\":3,"
        "\"stop\":[\"x\"],\"top_k\":20,\"num_ctx\":4096}}",
        true);
    assert_string_equal(x.target, "/v1/chat/completions");
    assert_string_equal(jpath(o, "model", NULL, NULL), "routed");
    assert_string_equal(jpath(o, "max_tokens", NULL, NULL), "7");
    assert_string_equal(jpath(o, "temperature", NULL, NULL), "0.5");
    assert_string_equal(jpath(o, "seed", NULL, NULL), "3");
    assert_string_equal(jpath(o, "stop", "0", NULL), "x");
    assert_string_equal(jpath(o, "top_k", NULL, NULL), "20");
    assert_string_equal(jpath(o, "response_format", "type", NULL), "json_object");
    assert_string_equal(jpath(o, "stream", NULL, NULL), "true");
    assert_string_equal(jpath(o, "stream_options", "include_usage", NULL), "true");
    assert_null(jpath(o, "keep_alive", NULL, NULL));
    assert_null(jpath(o, "num_ctx", NULL, NULL));
    struct json_object *m;
    assert_true(json_object_object_get_ex(o, "messages", &m));
    struct json_object *m0 = json_object_array_get_idx(m, 0);
    assert_string_equal(jpath(m0, "content", "1", NULL) ? jpath(m0, "content", "0", "type") : "",
                        "text");
    struct json_object *img = json_object_array_get_idx(json_object_object_get(m0, "content"), 1);
    assert_string_equal(jpath(img, "image_url", "url", NULL), "data:image/jpeg;base64,QUJD");
    struct json_object *m1 = json_object_array_get_idx(m, 1);
    struct json_object *call =
        json_object_array_get_idx(json_object_object_get(m1, "tool_calls"), 0);
    assert_string_equal(jpath(call, "function", "arguments", NULL), "{\"a\":1}");
    const char *id = jpath(call, "id", NULL, NULL);
    struct json_object *m2 = json_object_array_get_idx(m, 2);
    assert_string_equal(jpath(m2, "tool_call_id", NULL, NULL), id);
    json_object_put(o);
    xlate_free(&x);

    /* a generic OpenAI node gets no engine-specific knobs; a schema becomes json_schema */
    o = prepare(&x, API_OLLAMA_GENERATE, NODE_KIND_OPENAI,
                "{\"model\":\"asked\",\"system\":\"be brief\",\"prompt\":\"hello\","
                "\"format\":{\"type\":\"object\"},\"stream\":false,"
                "\"options\":{\"top_k\":20,\"num_predict\":-1}}",
                false);
    assert_null(jpath(o, "top_k", NULL, NULL));
    assert_null(jpath(o, "max_tokens", NULL, NULL));
    assert_string_equal(jpath(o, "stream", NULL, NULL), "false");
    assert_string_equal(jpath(o, "response_format", "type", NULL), "json_schema");
    assert_string_equal(jpath(o, "response_format", "json_schema", "name"), "response");
    assert_string_equal(jpath(o, "messages", "0", "role"), "system");
    assert_string_equal(jpath(o, "messages", "1", "content"), "hello");
    json_object_put(o);
    xlate_free(&x);
}

static void test_local_answers(void **state)
{
    (void)state;
    struct xlate x;
    memset(&x, 0, sizeof x);
    struct buf local;
    buf_init(&local, 1 << 16);
    char why[128];
    /* Ollama's generate without a prompt only loads the model */
    assert_int_equal(xlate_prepare(&x, XLATE_OLLAMA_GENERATE, NODE_KIND_OPENAI,
                                   strv_from_cstr("{\"model\":\"m\"}"), "m", "m", true, START,
                                   &local, why, sizeof why),
                     1);
    assert_non_null(strstr(local.p, "\"done_reason\":\"load\""));
    buf_reset(&local);
    /* count_tokens on a node that cannot tokenize: an estimate, marked */
    assert_int_equal(xlate_prepare(&x, XLATE_ANTHROPIC_COUNT, NODE_KIND_OPENAI,
                                   strv_from_cstr("{\"model\":\"m\",\"messages\":[{\"role\":"
                                                  "\"user\",\"content\":\"abcdefgh\"}]}"),
                                   "m", "m", false, START, &local, why, sizeof why),
                     1);
    assert_string_equal(local.p, "{\"input_tokens\":2,\"estimated\":true}");
    buf_reset(&local);
    /* on llama-server: its /tokenize */
    assert_int_equal(xlate_prepare(&x, XLATE_ANTHROPIC_COUNT, NODE_KIND_LLAMACPP,
                                   strv_from_cstr("{\"model\":\"m\",\"messages\":[{\"role\":"
                                                  "\"user\",\"content\":\"abcdefgh\"}]}"),
                                   "m", "m", false, START, &local, why, sizeof why),
                     0);
    assert_string_equal(x.target, "/tokenize");
    assert_non_null(strstr(x.up_body.p, "\"content\":\"abcdefgh\""));
    struct buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(xlate_body(&x, "{\"tokens\":[1,2,3,4]}", 20, NOW, &out), 0);
    assert_string_equal(out.p, "{\"input_tokens\":4}");
    buf_free(&out);
    /* a role Anthropic does not have */
    assert_int_equal(xlate_prepare(&x, XLATE_ANTHROPIC, NODE_KIND_OPENAI,
                                   strv_from_cstr("{\"model\":\"m\",\"max_tokens\":1,\"messages\":"
                                                  "[{\"role\":\"system\",\"content\":\"x\"}]}"),
                                   "m", "m", false, START, &local, why, sizeof why),
                     -1);
    assert_non_null(strstr(why, "messages.0.role"));
    buf_free(&local);
    xlate_free(&x);
}

static void test_embed(void **state)
{
    (void)state;
    struct xlate x;
    struct json_object *o =
        prepare(&x, API_OLLAMA_EMBED, NODE_KIND_OPENAI,
                "{\"model\":\"asked\",\"input\":[\"a\",\"b\"],\"truncate\":true}", false);
    assert_string_equal(x.target, "/v1/embeddings");
    assert_string_equal(jpath(o, "input", "1", NULL), "b");
    json_object_put(o);
    struct buf out;
    buf_init(&out, 1 << 16);
    const char *ans = "{\"data\":[{\"embedding\":[0.5,1]},{\"embedding\":[2,3]}],"
                      "\"usage\":{\"prompt_tokens\":4}}";
    assert_int_equal(xlate_body(&x, ans, strlen(ans), NOW, &out), 0);
    assert_non_null(strstr(out.p, "\"model\":\"asked\",\"embeddings\":[[0.5,1],[2,3]]"));
    assert_non_null(strstr(out.p, "\"prompt_eval_count\":4"));
    assert_non_null(strstr(out.p, "\"total_duration\":4000000000"));
    xlate_free(&x);
    o = prepare(&x, API_OLLAMA_EMBEDDINGS_LEGACY, NODE_KIND_OPENAI,
                "{\"model\":\"asked\",\"prompt\":\"a\"}", false);
    assert_string_equal(jpath(o, "input", NULL, NULL), "a");
    json_object_put(o);
    buf_reset(&out);
    assert_int_equal(xlate_body(&x, ans, strlen(ans), NOW, &out), 0);
    assert_string_equal(out.p, "{\"embedding\":[0.5,1]}");
    buf_reset(&out);
    assert_int_equal(xlate_body(&x, "{\"nodata\":1}", 12, NOW, &out), -1);
    assert_int_equal(xlate_body(&x, "{\"data\":[", 9, NOW, &out), -1);
    buf_free(&out);
    xlate_free(&x);
}

static void test_anthropic_request(void **state)
{
    (void)state;
    struct xlate x;
    struct json_object *o = prepare(
        &x, API_ANTHROPIC_MESSAGES, NODE_KIND_OPENAI,
        "{\"model\":\"asked\",\"max_tokens\":100,\"system\":[{\"type\":\"text\",\"text\":\"S\"}],"
        "\"stop_sequences\":[\"END\"],\"temperature\":0.2,\"top_k\":5,"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"d\",\"input_schema\":"
        "{\"type\":\"object\"}}],\"tool_choice\":{\"type\":\"any\"},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"checking\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"c\":\"P\"}"
        "}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
        "\"content\":[{\"type\":\"text\",\"text\":\"sunny\"}]},{\"type\":\"text\",\"text\":\"so?\"}"
        "]}]}",
        false);
    assert_string_equal(jpath(o, "max_tokens", NULL, NULL), "100");
    assert_string_equal(jpath(o, "stop", "0", NULL), "END");
    assert_null(jpath(o, "top_k", NULL, NULL)); /* not for a generic OpenAI node */
    assert_string_equal(jpath(o, "tools", "0", "type"), "function");
    struct json_object *t0 = json_object_array_get_idx(json_object_object_get(o, "tools"), 0);
    assert_string_equal(jpath(t0, "function", "name", NULL), "get_weather");
    assert_string_equal(jpath(t0, "function", "parameters", "type"), "object");
    assert_string_equal(jpath(o, "tool_choice", NULL, NULL), "required");
    struct json_object *m = json_object_object_get(o, "messages");
    assert_int_equal(json_object_array_length(m), 5);
    assert_string_equal(jpath(m, "0", "role", NULL), "system");
    assert_string_equal(jpath(m, "0", "content", NULL), "S");
    assert_string_equal(jpath(m, "2", "content", NULL), "checking");
    struct json_object *call = json_object_array_get_idx(
        json_object_object_get(json_object_array_get_idx(m, 2), "tool_calls"), 0);
    assert_string_equal(jpath(call, "id", NULL, NULL), "toolu_1");
    assert_string_equal(jpath(call, "function", "arguments", NULL), "{\"c\":\"P\"}");
    assert_string_equal(jpath(m, "3", "role", NULL), "tool");
    assert_string_equal(jpath(m, "3", "tool_call_id", NULL), "toolu_1");
    assert_string_equal(jpath(m, "3", "content", NULL), "sunny");
    assert_string_equal(jpath(m, "4", "content", NULL), "so?");
    json_object_put(o);
    xlate_free(&x);
}

static void test_buffered_answers(void **state)
{
    (void)state;
    struct xlate x;
    struct json_object *o = prepare(&x, API_ANTHROPIC_MESSAGES, NODE_KIND_LLAMACPP,
                                    "{\"model\":\"asked\",\"max_tokens\":10,\"messages\":"
                                    "[{\"role\":\"user\",\"content\":\"x\"}]}",
                                    false);
    json_object_put(o);
    const char *ans =
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"let me see\","
        "\"tool_calls\":[{\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"q\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}],"
        "\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":6}}";
    struct buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(xlate_body(&x, ans, strlen(ans), NOW, &out), 0);
    struct json_object *a = json_parse_strict(out.p, out.len, 64, NULL);
    assert_non_null(a);
    assert_string_equal(jpath(a, "type", NULL, NULL), "message");
    assert_string_equal(jpath(a, "model", NULL, NULL), "asked");
    assert_string_equal(jpath(a, "stop_reason", NULL, NULL), "tool_use");
    assert_string_equal(jpath(a, "content", "0", "text"), "let me see");
    assert_string_equal(jpath(a, "content", "1", "type"), "tool_use");
    assert_string_equal(jpath(a, "content", "1", "id"), "call_9");
    struct json_object *c1 = json_object_array_get_idx(json_object_object_get(a, "content"), 1);
    assert_string_equal(jpath(c1, "input", "q", NULL), "1");
    assert_string_equal(jpath(a, "usage", "input_tokens", NULL), "11");
    assert_string_equal(jpath(a, "usage", "output_tokens", NULL), "6");
    json_object_put(a);
    xlate_free(&x);

    o = prepare(&x, API_OLLAMA_CHAT, NODE_KIND_LLAMACPP,
                "{\"model\":\"asked\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                false);
    json_object_put(o);
    const char *ans2 = "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"hey\"},"
                       "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":3,"
                       "\"completion_tokens\":2},\"timings\":{\"prompt_ms\":1.5,"
                       "\"predicted_ms\":20}}";
    buf_reset(&out);
    assert_int_equal(xlate_body(&x, ans2, strlen(ans2), NOW, &out), 0);
    a = json_parse_strict(out.p, out.len, 64, NULL);
    assert_non_null(a);
    assert_string_equal(jpath(a, "message", "content", NULL), "hey");
    assert_string_equal(jpath(a, "done", NULL, NULL), "true");
    assert_string_equal(jpath(a, "done_reason", NULL, NULL), "length");
    assert_string_equal(jpath(a, "prompt_eval_count", NULL, NULL), "3");
    assert_string_equal(jpath(a, "eval_count", NULL, NULL), "2");
    assert_string_equal(jpath(a, "prompt_eval_duration", NULL, NULL), "1500000");
    assert_string_equal(jpath(a, "eval_duration", NULL, NULL), "20000000");
    assert_string_equal(jpath(a, "total_duration", NULL, NULL), "4000000000");
    json_object_put(a);
    buf_free(&out);
    xlate_free(&x);
}

/* Blanks every "created_at":"…" value (wall clock) so two runs compare. */
static void blank_times(struct buf *b)
{
    const char *key = "\"created_at\":\"";
    char *p = b->p;
    while (p && (p = strstr(p, key))) {
        p += strlen(key);
        while (*p && *p != '"') *p++ = 'T';
    }
}

/* The whole stream fed in the chunks cuts[] gives (concatenated output, done). */
static bool run_stream(enum api_kind kind, const char *in, const size_t *cuts, size_t n_cuts,
                       struct buf *all)
{
    struct xlate x;
    struct json_object *o =
        prepare(&x, kind, NODE_KIND_LLAMACPP,
                kind == API_ANTHROPIC_MESSAGES
                    ? "{\"model\":\"asked\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\","
                      "\"content\":\"x\"}],\"stream\":true}"
                    : "{\"model\":\"asked\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                true);
    json_object_put(o);
    size_t len = strlen(in), at = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        assert_int_equal(xlate_stream(&x, in + at, end - at, NOW), 0);
        assert_int_equal(buf_append(all, x.out.p, x.out.len), 0);
        at = end;
    }
    bool done = x.done;
    xlate_free(&x);
    blank_times(all);
    return done;
}

static const char *OAI_STREAM =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n"
    ": comment\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\\"data: [DONE]\\\"\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
    "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\":1}\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\n"
    "data: [DONE]\n\n"
    "data: noise after the end\n\n";

static void check_split_invariance(enum api_kind kind, const char *want_sub[], size_t n_want)
{
    struct buf whole;
    buf_init(&whole, 1 << 20);
    assert_true(run_stream(kind, OAI_STREAM, NULL, 0, &whole));
    for (size_t i = 0; i < n_want; i++)
        if (!strstr(whole.p, want_sub[i])) fail_msg("missing %s in\n%s", want_sub[i], whole.p);
    size_t len = strlen(OAI_STREAM);
    for (size_t c = 1; c < len; c++) { /* every 2-way cut */
        struct buf b;
        buf_init(&b, 1 << 20);
        assert_true(run_stream(kind, OAI_STREAM, &c, 1, &b));
        assert_int_equal(b.len, whole.len);
        assert_memory_equal(b.p, whole.p, b.len);
        buf_free(&b);
    }
    size_t *cuts = xcalloc(len, sizeof *cuts); /* byte by byte */
    for (size_t c = 1; c < len; c++) cuts[c - 1] = c;
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_true(run_stream(kind, OAI_STREAM, cuts, len - 1, &b));
    assert_int_equal(b.len, whole.len);
    assert_memory_equal(b.p, whole.p, b.len);
    xfree(cuts);
    buf_free(&b);
    /* cut before [DONE]: not complete */
    struct buf cut;
    buf_init(&cut, 1 << 20);
    const char *end = strstr(OAI_STREAM, "data: [DONE]");
    char *head = xstrndup(OAI_STREAM, (size_t)(end - OAI_STREAM));
    assert_false(run_stream(kind, head, NULL, 0, &cut));
    xfree(head);
    buf_free(&cut);
    buf_free(&whole);
}

static void test_ollama_stream(void **state)
{
    (void)state;
    const char *want[] = {
        "\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
        "\"content\":\"lo \\\"data: [DONE]\\\"\"},\"done\":false}\n",
        "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},\"done\":false}"
        "\n",
        "\"done\":true,\"done_reason\":\"stop\"",
        "\"prompt_eval_count\":5",
        "\"eval_count\":4",
    };
    check_split_invariance(API_OLLAMA_CHAT, want, sizeof want / sizeof want[0]);
    /* every line is one JSON object, and the last one is done */
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_true(run_stream(API_OLLAMA_CHAT, OAI_STREAM, NULL, 0, &b));
    int lines = 0;
    for (char *s = b.p, *nl; (nl = strchr(s, '\n')); s = nl + 1, lines++) {
        struct json_object *o = json_parse_strict(s, (size_t)(nl - s), 64, NULL);
        assert_non_null(o);
        json_object_put(o);
        if (!nl[1]) assert_non_null(strstr(s, "\"done\":true"));
    }
    assert_int_equal(lines, 4);
    buf_free(&b);
}

static void test_anthropic_stream(void **state)
{
    (void)state;
    const char *want[] = {
        "event: message_start\ndata: {\"type\":\"message_start\"",
        "event: ping\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "{\"type\":\"text_delta\",\"text\":\"Hel\"}",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}",
        "\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"f\","
        "\"input\":{}}",
        "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\"\"}",
        "{\"type\":\"input_json_delta\",\"partial_json\":\":1}\"}",
        "\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"input_"
        "tokens\":5,"
        "\"output_tokens\":4}}",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    };
    check_split_invariance(API_ANTHROPIC_MESSAGES, want, sizeof want / sizeof want[0]);
    /* the order of events names */
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_true(run_stream(API_ANTHROPIC_MESSAGES, OAI_STREAM, NULL, 0, &b));
    struct buf names;
    buf_init(&names, 1 << 16);
    for (char *s = b.p; (s = strstr(s, "event: ")); s += 7) {
        char *nl = strchr(s, '\n');
        assert_int_equal(buf_append(&names, s + 7, (size_t)(nl - s - 7)), 0);
        assert_int_equal(buf_append(&names, " ", 1), 0);
    }
    assert_string_equal(names.p, "message_start ping content_block_start content_block_delta "
                                 "content_block_delta content_block_stop content_block_start "
                                 "content_block_delta content_block_delta content_block_stop "
                                 "message_delta message_stop ");
    buf_free(&names);
    buf_free(&b);
}

/* The envelope memo (a chunk that differs from the last one only inside delta.content is read
 * by reading that string) gives what reading every chunk in full gives, whatever stands where
 * the content string stood: strings that end early, whitespace, other members, bad bytes. */
static void run_memo(enum api_kind kind, const char *in, size_t split, bool memo, struct buf *all)
{
    struct xlate x;
    struct json_object *o =
        prepare(&x, kind, NODE_KIND_LLAMACPP,
                kind == API_ANTHROPIC_MESSAGES
                    ? "{\"model\":\"asked\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\","
                      "\"content\":\"x\"}],\"stream\":true}"
                : kind == API_OLLAMA_GENERATE
                    ? "{\"model\":\"asked\",\"prompt\":\"x\"}"
                    : "{\"model\":\"asked\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                true);
    json_object_put(o);
    if (!memo) {
        buf_free(&x.memo);
        buf_init(&x.memo, 0); /* nothing fits: every chunk is read in full */
    }
    assert_int_equal(xlate_stream(&x, in, split, NOW), 0);
    assert_int_equal(buf_append(all, x.out.p, x.out.len), 0);
    assert_int_equal(x.memo.len > 0, memo); /* the last plain chunk is remembered */
    assert_int_equal(xlate_stream(&x, in + split, strlen(in + split), NOW), 0);
    assert_int_equal(buf_append(all, x.out.p, x.out.len), 0);
    /* the memo served chunks when it could, and none when it could not */
    if (memo)
        assert_true(x.memo_hits > 0);
    else
        assert_int_equal(x.memo_hits, 0);
    assert_true(x.done);
    char counts[96];
    snprintf(counts, sizeof counts, "|%lld %lld %lld %s", (long long)x.prompt_tokens,
             (long long)x.completion_tokens, (long long)x.deltas, x.finish);
    assert_int_equal(buf_append(all, counts, strlen(counts)), 0);
    xlate_free(&x);
    blank_times(all);
}

static void test_stream_memo(void **state)
{
    (void)state;
    static const char *const tokens[] = {
        "\"b\"",
        "\"caf\\u00e9 \\\"q\\\" \\ud83d\\ude00 \\\\ \xc3\xa9\"",
        "\"\"",
        "\"x\",\"content\":\"y\"",
        "\"x\"  ",
        " \"x\"",
        "\"x\",\"reasoning_content\":\"r\"",
        "\"x\"},\"finish_reason\":\"length\",\"z\":{\"a\":\"b\"",
        "\"unterminated",
        "\"esc\\\"",
        "\"bad\xff\"",
        "\"raw\x01\"",
        "null",
        "\"x\",\"content\":null",
        "\"x\"}}],\"usage\":{\"prompt_tokens\":7},\"q\":[{\"r\":{\"s\":\"t\"",
        "\"}],\\\"x\\\":\\\"",
    };
    static const char env_pre[] =
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":";
    static const char env_post[] = "},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
    struct buf in;
    buf_init(&in, 1 << 20);
    /* a chunk that read more than its content is not remembered: its other reads would be lost */
    for (int i = 0; i < 3; i++)
        assert_int_equal(buf_appendf(&in,
                                     "data: {\"choices\":[{\"delta\":{\"reasoning_content\":"
                                     "\"think\",\"content\":\"c%d\"}}]}\n\n",
                                     i),
                         0);
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        const char *parts[] = {env_pre,  "\"p\"", env_post,  env_pre, "\"p2\"",
                               env_post, env_pre, tokens[i], env_post};
        for (size_t j = 0; j < sizeof parts / sizeof parts[0]; j++)
            assert_int_equal(buf_append(&in, parts[j], strlen(parts[j])), 0);
    }
    size_t split = in.len; /* the memo holds a chunk here */
    /* the same bytes up to the content string, and as many after it, but other ones */
    assert_int_equal(buf_appendf(&in, "%s\"p\"%s%s\"p3\"%s", env_pre, env_post, env_pre,
                                 "},\"logprobs\":null,\"finish_reason\":\"s1\"}]}\n\n"),
                     0);
    assert_int_equal(buf_append_cstr(&in, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,"
                                          "\"completion_tokens\":4}}\n\ndata: [DONE]\n\n"),
                     0);
    static const enum api_kind kinds[] = {API_ANTHROPIC_MESSAGES, API_OLLAMA_CHAT,
                                          API_OLLAMA_GENERATE};
    for (size_t k = 0; k < 3; k++) {
        struct buf with, without;
        buf_init(&with, 1 << 20);
        buf_init(&without, 1 << 20);
        run_memo(kinds[k], in.p, split, true, &with);
        run_memo(kinds[k], in.p, split, false, &without);
        if (with.len != without.len || memcmp(with.p, without.p, with.len) != 0)
            fail_msg("memo changes the output:\n%s\n---- read in full:\n%s", with.p, without.p);
        /* the plain tokens are there (run_memo checks the memo served chunks) */
        assert_non_null(strstr(with.p, "p2"));
        assert_non_null(strstr(with.p, "caf\xc3\xa9 \\\"q\\\" \xf0\x9f\x98\x80 \\\\ \xc3\xa9"));
        buf_free(&with);
        buf_free(&without);
    }
    buf_free(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_ollama_chat_request),
        cmocka_unit_test(test_local_answers),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_anthropic_request),
        cmocka_unit_test(test_buffered_answers),
        cmocka_unit_test(test_ollama_stream),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_stream_memo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
