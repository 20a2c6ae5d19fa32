/* outcome — DESIGN §4 in one place. The order of the checks is the table's order of
 * precedence: completion first (authoritative), then transport failures, then statuses. */
#include "gw/outcome.h"

#include <string.h>

#include "base/err.h"

static const char *const names[OUTCOME__COUNT] = {
    "success",         "client_error", "inventory_miss",
    "capability_miss", "node_busy",    "node_misconfigured",
    "node_fault",      "stale_conn",   "context_exceeded",
};

const char *outcome_class_name(enum outcome_class c)
{
    return (unsigned)c < OUTCOME__COUNT ? names[c] : "unknown";
}

static struct outcome make(enum outcome_class cls)
{
    struct outcome o = {.cls = cls};
    switch (cls) {
    case OUTCOME_SUCCESS:
        o.fault = FAULT_RESET;
        break;
    case OUTCOME_CLIENT_ERROR:
        break;
    case OUTCOME_INVENTORY_MISS:
        o.retry_elsewhere = true;
        o.refresh_inventory = true;
        break;
    case OUTCOME_CAPABILITY_MISS:
        o.retry_elsewhere = true;
        o.mark_capability_absent = true;
        break;
    case OUTCOME_NODE_BUSY:
        o.retry_elsewhere = true;
        o.cool_node = true;
        break;
    case OUTCOME_NODE_MISCONFIGURED:
        o.retry_elsewhere = true;
        o.fault = FAULT_COUNT;
        break;
    case OUTCOME_NODE_FAULT:
        o.retry_elsewhere = true;
        o.fault = FAULT_COUNT;
        break;
    case OUTCOME_STALE_CONN:
        o.retry_same_node = true;
        break;
    case OUTCOME_CONTEXT_EXCEEDED:
        /* only to a node with a larger context (the proxy tells the router); no fault, no mark */
        o.retry_elsewhere = true;
        break;
    default:
        break;
    }
    return o;
}

struct outcome outcome_classify(const struct attempt_obs *obs)
{
    /* Completion is authoritative: noise after a complete response is not a failure. */
    if (obs->complete && obs->status >= 200 && obs->status < 300) return make(OUTCOME_SUCCESS);

    if (obs->transport_err && obs->status == 0) {
        /* Servers close idle keep-alive connections whenever they like: a reused connection
         * that failed before any byte is retried on a fresh one and costs nothing. Timeouts
         * are not such a race: the node took the request and did not answer. */
        bool is_timeout = obs->transport_err == GW_E_FIRST_BYTE_TIMEOUT ||
                          obs->transport_err == GW_E_TOTAL_TIMEOUT ||
                          obs->transport_err == GW_E_IDLE_TIMEOUT;
        if (obs->reused_conn && !obs->got_bytes && !is_timeout) return make(OUTCOME_STALE_CONN);
        return make(OUTCOME_NODE_FAULT);
    }

    int s = obs->status;
    if (s >= 200 && s < 300) {
        /* 2xx but not complete: the body was cut short or the stream broke. */
        return make(OUTCOME_NODE_FAULT);
    }
    if (s == 429) return make(OUTCOME_NODE_BUSY);
    if (s == 503 && obs->has_retry_after) return make(OUTCOME_NODE_BUSY);
    if (s == 401 || s == 403) return make(OUTCOME_NODE_MISCONFIGURED);
    if (s == 501) return make(OUTCOME_CAPABILITY_MISS);
    if (s == 404) {
        return obs->body_says_model_missing ? make(OUTCOME_INVENTORY_MISS)
                                            : make(OUTCOME_CLIENT_ERROR);
    }
    /* The request is longer than the node's context (llama-server's 400 "exceeds the available
     * context size", vLLM's "maximum context length"): the client's request, whatever the
     * status, and another node may have a larger context. */
    if (s >= 400 && obs->body_says_context) return make(OUTCOME_CONTEXT_EXCEEDED);
    if (s == 400 && obs->body_says_unsupported) return make(OUTCOME_CAPABILITY_MISS);
    if (s >= 400 && s < 500) return make(OUTCOME_CLIENT_ERROR);
    if (s >= 500 && obs->body_says_unsupported) {
        /* the node is talking, and it names a feature the request used: not a fault */
        return make(OUTCOME_CAPABILITY_MISS);
    }
    if (s >= 500) {
        struct outcome o = make(OUTCOME_NODE_FAULT);
        o.is_5xx_response = true;
        o.fault = obs->transport_err ? FAULT_COUNT : FAULT_COUNT_UNLESS_POISON;
        return o;
    }
    /* 1xx/3xx from an inference engine: not something a client can use. */
    return make(OUTCOME_NODE_FAULT);
}

static bool contains_ci(const char *p, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0 || len < n) return false;
    for (size_t i = 0; i + n <= len; i++) {
        size_t j = 0;
        while (j < n) {
            char c = p[i + j];
            if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
            if (c != needle[j]) break;
            j++;
        }
        if (j == n) return true;
    }
    return false;
}

void outcome_scan_error_body(const char *p, uint64_t len, struct attempt_obs *obs)
{
    size_t n = len > 4096 ? 4096 : (size_t)len;
    if (!p || n == 0) return;
    if (contains_ci(p, n, "model_not_found") ||
        (contains_ci(p, n, "model") &&
         (contains_ci(p, n, "not found") || contains_ci(p, n, "does not exist"))))
        obs->body_says_model_missing = true;
    if (contains_ci(p, n, "does not support") || contains_ci(p, n, "not supported") ||
        contains_ci(p, n, "unsupported"))
        obs->body_says_unsupported = true;
    /* the engines' own words for a request longer than the context (docs/routing.md) */
    static const char *const context_words[] = {
        "exceeds the available context size", /* llama-server */
        "exceed_context_size",                /* llama-server's error type */
        "maximum context length",             /* vLLM, OpenAI */
        "context_length_exceeded",            /* OpenAI's code, a gateway in front */
        "maximum model length",               /* vLLM: "longer than the maximum model length" */
        "is too long and exceeds limit",      /* vLLM V1 */
        "exceeds the context length",         /* Ollama's embed */
    };
    for (size_t i = 0; i < sizeof context_words / sizeof context_words[0]; i++)
        if (contains_ci(p, n, context_words[i])) obs->body_says_context = true;
}

unsigned outcome_named_capability(const char *p, uint64_t len, unsigned used)
{
    size_t n = len > 4096 ? 4096 : (size_t)len;
    unsigned primary = used & CAP_PRIMARY_BITS;
    unsigned features = used & ~CAP_PRIMARY_BITS;
    if (p && n) {
        /* optional features first: "does not support tools" marks tools, never chat */
        static const struct {
            const char *word;
            unsigned bit;
        } words[] = {
            {"tool", 8},         {"function", 8},    {"vision", 16},
            {"image", 16},       {"multimodal", 16}, {"response_format", 32},
            {"json_schema", 32}, {"grammar", 32},    {"embedding", 4},
            {"chat", 1},         {"completion", 2},
        };
        bool names_feature = false;
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
            if (words[i].bit & CAP_PRIMARY_BITS || !contains_ci(p, n, words[i].word)) continue;
            if (words[i].bit & features) return words[i].bit;
            names_feature = true;
        }
        /* it names a feature the request did not use: nothing we can place */
        if (names_feature) return 0;
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
            if ((words[i].bit & primary) && contains_ci(p, n, words[i].word)) return words[i].bit;
    }
    /* Named nothing we can place: the primary capability only when the request used nothing
     * optional (then there is nothing else it could mean); otherwise mark nothing. */
    return features ? 0 : primary;
}
