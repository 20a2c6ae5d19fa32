/* Table-driven tests for the failure taxonomy (DESIGN §4): every row of the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "base/err.h"
#include "gw/outcome.h"
#include "gw/registry.h"

struct row {
    const char *what;
    struct attempt_obs obs;
    enum outcome_class cls;
    bool retry_elsewhere;
    bool retry_same;
    enum fault_action fault;
};

static const struct row rows[] = {
    {"200 complete",
     {.status = 200, .complete = true, .got_bytes = true},
     OUTCOME_SUCCESS,
     false,
     false,
     FAULT_RESET},
    {"reset after complete is success",
     {.status = 200, .complete = true, .transport_err = UV_ECONNRESET, .got_bytes = true},
     OUTCOME_SUCCESS,
     false,
     false,
     FAULT_RESET},
    {"400 engine rejects",
     {.status = 400, .complete = true},
     OUTCOME_CLIENT_ERROR,
     false,
     false,
     FAULT_NONE},
    {"400 longer than the node's context: the client's, a larger node may take it",
     {.status = 400, .complete = true, .body_says_context = true},
     OUTCOME_CONTEXT_EXCEEDED,
     true,
     false,
     FAULT_NONE},
    {"500 naming the context: the request's size, never a fault",
     {.status = 500, .complete = true, .body_says_context = true},
     OUTCOME_CONTEXT_EXCEEDED,
     true,
     false,
     FAULT_NONE},
    {"404 route whatever the body says",
     {.status = 404, .complete = true, .body_says_context = true},
     OUTCOME_CLIENT_ERROR,
     false,
     false,
     FAULT_NONE},
    {"413", {.status = 413, .complete = true}, OUTCOME_CLIENT_ERROR, false, false, FAULT_NONE},
    {"422", {.status = 422, .complete = true}, OUTCOME_CLIENT_ERROR, false, false, FAULT_NONE},
    {"404 route",
     {.status = 404, .complete = true},
     OUTCOME_CLIENT_ERROR,
     false,
     false,
     FAULT_NONE},
    {"404 model not found",
     {.status = 404, .complete = true, .body_says_model_missing = true},
     OUTCOME_INVENTORY_MISS,
     true,
     false,
     FAULT_NONE},
    {"501", {.status = 501, .complete = true}, OUTCOME_CAPABILITY_MISS, true, false, FAULT_NONE},
    {"400 does not support chat",
     {.status = 400, .complete = true, .body_says_unsupported = true},
     OUTCOME_CAPABILITY_MISS,
     true,
     false,
     FAULT_NONE},
    {"429", {.status = 429, .complete = true}, OUTCOME_NODE_BUSY, true, false, FAULT_NONE},
    {"503 + Retry-After",
     {.status = 503, .has_retry_after = true, .complete = true},
     OUTCOME_NODE_BUSY,
     true,
     false,
     FAULT_NONE},
    {"401",
     {.status = 401, .complete = true},
     OUTCOME_NODE_MISCONFIGURED,
     true,
     false,
     FAULT_COUNT},
    {"403",
     {.status = 403, .complete = true},
     OUTCOME_NODE_MISCONFIGURED,
     true,
     false,
     FAULT_COUNT},
    {"500",
     {.status = 500, .complete = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT_UNLESS_POISON},
    {"502",
     {.status = 502, .complete = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT_UNLESS_POISON},
    {"503 without Retry-After",
     {.status = 503, .complete = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT_UNLESS_POISON},
    {"504",
     {.status = 504, .complete = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT_UNLESS_POISON},
    {"refused", {.transport_err = UV_ECONNREFUSED}, OUTCOME_NODE_FAULT, true, false, FAULT_COUNT},
    {"reset on fresh connection",
     {.transport_err = UV_ECONNRESET},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT},
    {"reset on reused connection before any byte",
     {.transport_err = UV_ECONNRESET, .reused_conn = true},
     OUTCOME_STALE_CONN,
     false,
     true,
     FAULT_NONE},
    {"EOF on reused connection before any byte",
     {.transport_err = GW_E_TRUNCATED, .reused_conn = true},
     OUTCOME_STALE_CONN,
     false,
     true,
     FAULT_NONE},
    {"first-byte timeout on reused connection is a fault",
     {.transport_err = GW_E_FIRST_BYTE_TIMEOUT, .reused_conn = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT},
    {"connect timeout",
     {.transport_err = GW_E_CONNECT_TIMEOUT},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT},
    {"idle timeout mid-body",
     {.transport_err = GW_E_IDLE_TIMEOUT, .status = 200, .got_bytes = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT},
    {"malformed response",
     {.transport_err = GW_E_MALFORMED, .got_bytes = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT},
    {"body cut short",
     {.transport_err = GW_E_TRUNCATED, .status = 200, .got_bytes = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT},
    {"stream ended without [DONE]",
     {.status = 200, .got_bytes = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT},
    {"500 then reset counts at once",
     {.status = 500, .transport_err = UV_ECONNRESET, .got_bytes = true},
     OUTCOME_NODE_FAULT,
     true,
     false,
     FAULT_COUNT},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *r = &rows[i];
        struct outcome o = outcome_classify(&r->obs);
        if (o.cls != r->cls || o.retry_elsewhere != r->retry_elsewhere ||
            o.retry_same_node != r->retry_same || o.fault != r->fault) {
            print_error("row '%s': got class=%s retry=%d same=%d fault=%d\n", r->what,
                        outcome_class_name(o.cls), o.retry_elsewhere, o.retry_same_node, o.fault);
            fail();
        }
    }
}

static void test_actions(void **state)
{
    (void)state;
    struct attempt_obs miss = {.status = 404, .complete = true, .body_says_model_missing = true};
    assert_true(outcome_classify(&miss).refresh_inventory);
    struct attempt_obs cap = {.status = 501, .complete = true};
    assert_true(outcome_classify(&cap).mark_capability_absent);
    struct attempt_obs busy = {.status = 429, .complete = true};
    assert_true(outcome_classify(&busy).cool_node);
    struct attempt_obs five = {.status = 502, .complete = true};
    assert_true(outcome_classify(&five).is_5xx_response);
    struct attempt_obs refused = {.transport_err = UV_ECONNREFUSED};
    assert_false(outcome_classify(&refused).is_5xx_response);
}

static void test_scan(void **state)
{
    (void)state;
    struct attempt_obs o = {0};
    const char *ollama = "{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}";
    outcome_scan_error_body(ollama, strlen(ollama), &o);
    assert_true(o.body_says_model_missing);
    assert_false(o.body_says_unsupported);

    struct attempt_obs v = {0};
    const char *vllm = "{\"object\":\"error\",\"message\":\"The model `m` does not exist.\"}";
    outcome_scan_error_body(vllm, strlen(vllm), &v);
    assert_true(v.body_says_model_missing);

    struct attempt_obs c = {0};
    const char *cap = "{\"error\":\"\\\"nomic\\\" does not support chat\"}";
    outcome_scan_error_body(cap, strlen(cap), &c);
    assert_true(c.body_says_unsupported);
    assert_false(c.body_says_model_missing);

    /* a request longer than the context, in each engine's words */
    static const char *const context[] = {
        /* llama-server b11669, recorded */
        "{\"error\":{\"code\":400,\"message\":\"request (1610 tokens) exceeds the available "
        "context size (1024 tokens), try increasing it\",\"type\":\"exceed_context_size_error\","
        "\"n_prompt_tokens\":1610,\"n_ctx\":1024}}",
        /* vLLM */
        "{\"object\":\"error\",\"message\":\"This model's maximum context length is 2048 "
        "tokens. However, you requested 3000 tokens (2000 in the messages, 1000 in the "
        "completion). Please reduce the length of the messages or completion.\",\"type\":"
        "\"BadRequestError\",\"param\":null,\"code\":400}",
        "{\"message\":\"The decoder prompt (length 5000) is longer than the maximum model "
        "length of 4096.\"}",
        "{\"message\":\"Input prompt (5000 tokens) is too long and exceeds limit of 4096\"}",
        /* Ollama's embed */
        "{\"error\":\"the input length exceeds the context length\"}",
        /* a gateway in front (OpenAI's code) */
        "{\"error\":{\"message\":\"...\",\"code\":\"context_length_exceeded\"}}",
    };
    for (size_t i = 0; i < sizeof context / sizeof context[0]; i++) {
        struct attempt_obs x = {.status = 400, .complete = true};
        outcome_scan_error_body(context[i], strlen(context[i]), &x);
        assert_true(x.body_says_context);
        assert_false(x.body_says_unsupported);
        assert_int_equal(outcome_classify(&x).cls, OUTCOME_CONTEXT_EXCEEDED);
    }
    struct attempt_obs nc = {0};
    outcome_scan_error_body(cap, strlen(cap), &nc);
    assert_false(nc.body_says_context);
    assert_string_equal(outcome_class_name(OUTCOME_CONTEXT_EXCEEDED), "context_exceeded");

    struct attempt_obs r = {0};
    const char *route = "404 page not found";
    outcome_scan_error_body(route, strlen(route), &r);
    assert_false(r.body_says_model_missing);
}

/* The capability a miss marks is the one the node's answer names (DESIGN §4): "does not support
 * tools" marks tools, never chat; with nothing named and features used, nothing is marked. */
static void test_named_capability(void **state)
{
    (void)state;
    const char *tools = "{\"error\":\"llama3 does not support tools\"}";
    assert_int_equal(outcome_named_capability(tools, strlen(tools), CAP_CHAT | CAP_TOOLS),
                     CAP_TOOLS);
    /* the request used no tools: the answer names nothing it used, so nothing is marked */
    assert_int_equal(outcome_named_capability(tools, strlen(tools), CAP_CHAT), 0);
    const char *img = "image input is not supported by this model";
    assert_int_equal(outcome_named_capability(img, strlen(img), CAP_CHAT | CAP_VISION), CAP_VISION);
    const char *vague = "not implemented";
    assert_int_equal(outcome_named_capability(vague, strlen(vague), CAP_CHAT | CAP_TOOLS), 0);
    assert_int_equal(outcome_named_capability(vague, strlen(vague), CAP_EMBEDDINGS),
                     CAP_EMBEDDINGS);
    const char *emb = "This server does not support embeddings. Start it with `--embeddings`";
    assert_int_equal(outcome_named_capability(emb, strlen(emb), CAP_EMBEDDINGS), CAP_EMBEDDINGS);
    /* a 5xx that names an unsupported feature is a capability miss, not a fault */
    struct attempt_obs o = {.status = 500};
    const char *rf = "response_format json_schema is unsupported";
    outcome_scan_error_body(rf, strlen(rf), &o);
    assert_int_equal(outcome_classify(&o).cls, OUTCOME_CAPABILITY_MISS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_actions),
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_named_capability),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
