/* ctxfit — one pass of base/json's reader over the request body (no tree, no allocation):
 * the decoded bytes of every string the engine renders into the prompt, skipping media parts
 * (an object whose "type" names an image, audio, file or document, and "images" arrays: their
 * base64 is not text and their token cost depends on the model), and the completion limit.
 * Tool definitions count their whole JSON text (templates print them as JSON). A batch of
 * prompts or inputs needs what its largest item needs (each is its own sequence); a prompt of
 * token ids counts exactly. */
#include "gw/ctxfit.h"

#include <stdio.h>
#include <string.h>

#include "base/json.h"

enum {
    CTXFIT_MAX_DEPTH = 32,
    CTXFIT_PER_MESSAGE = 8, /* a chat template's tokens around one message (role, markers) */
    CTXFIT_PER_REQUEST = 8, /* BOS, the assistant's opening */
};

void ctxfit_params_defaults(struct ctxfit_params *cp)
{
    *cp = (struct ctxfit_params){
        .enabled = true,
        .estimate_bytes_per_tok = 3,
        .refuse_bytes_per_tok = 8,
        .count_completion = true,
    };
}

static bool name_is(const char *name, size_t len, size_t cap, const char *want)
{
    return len < cap && len == strlen(want) && memcmp(name, want, len) == 0;
}

static bool is_media_type(const char *v, size_t len, size_t cap)
{
    static const char *const media[] = {"image_url", "input_image", "image",    "input_audio",
                                        "audio",     "file",        "document", "video_url"};
    for (size_t i = 0; i < sizeof media / sizeof media[0]; i++)
        if (name_is(v, len, cap, media[i])) return true;
    return false;
}

/* Adds the text bytes of the value at the reader to *bytes. */
static int count_value(struct json_reader *r, uint64_t *bytes)
{
    enum json_kind k;
    if (json_reader_peek(r, &k)) return -1;
    bool more;
    size_t len;
    switch (k) {
    case JSON_K_STRING:
        if (json_reader_string(r, NULL, 0, &len)) return -1;
        *bytes += len;
        return 0;
    case JSON_K_ARRAY:
        if (json_reader_enter(r, JSON_K_ARRAY)) return -1;
        while (1) {
            if (json_reader_element(r, &more)) return -1;
            if (!more) return 0;
            if (count_value(r, bytes)) return -1;
        }
    case JSON_K_OBJECT: {
        if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
        uint64_t sub = 0;
        bool media = false;
        char name[16];
        while (1) {
            if (json_reader_member(r, name, sizeof name, &len, &more)) return -1;
            if (!more) break;
            if (name_is(name, len, sizeof name, "images")) {
                if (json_reader_skip(r)) return -1;
                continue;
            }
            if (name_is(name, len, sizeof name, "type") && json_reader_peek(r, &k) == 0 &&
                k == JSON_K_STRING) {
                char v[16];
                size_t vl;
                if (json_reader_string(r, v, sizeof v, &vl)) return -1;
                media |= is_media_type(v, vl, sizeof v);
                sub += vl;
                continue;
            }
            if (count_value(r, &sub)) return -1;
        }
        if (!media) *bytes += sub;
        return 0;
    }
    default:
        return json_reader_skip(r);
    }
}

/* "prompt" / "input": a string; an array of token ids (one prompt, counted exactly); or a
 * batch of strings or token arrays (the largest item). */
static int count_prompt(struct json_reader *r, uint64_t *bytes, uint64_t *tokens)
{
    enum json_kind k;
    if (json_reader_peek(r, &k)) return -1;
    if (k != JSON_K_ARRAY) return count_value(r, bytes);
    if (json_reader_enter(r, JSON_K_ARRAY)) return -1;
    uint64_t ids = 0, max_bytes = 0, max_tokens = 0;
    bool more;
    while (1) {
        if (json_reader_element(r, &more)) return -1;
        if (!more) break;
        if (json_reader_peek(r, &k)) return -1;
        if (k == JSON_K_INT) {
            ids++;
            if (json_reader_skip(r)) return -1;
        } else if (k == JSON_K_ARRAY) {
            uint64_t n = 0;
            if (json_reader_enter(r, JSON_K_ARRAY)) return -1;
            while (1) {
                if (json_reader_element(r, &more)) return -1;
                if (!more) break;
                n++;
                if (json_reader_skip(r)) return -1;
            }
            if (n > max_tokens) max_tokens = n;
        } else {
            uint64_t b = 0;
            if (count_value(r, &b)) return -1;
            if (b > max_bytes) max_bytes = b;
        }
    }
    *bytes += max_bytes;
    *tokens += ids > max_tokens ? ids : max_tokens;
    return 0;
}

/* A positive integer member, else -1. */
static int read_limit(struct json_reader *r, int64_t *out)
{
    enum json_kind k;
    if (json_reader_peek(r, &k)) return -1;
    if (k != JSON_K_INT) return json_reader_skip(r);
    size_t at = r->pos;
    if (json_reader_skip(r)) return -1;
    int64_t v = 0;
    for (size_t i = at; i < r->pos && v < INT32_MAX; i++)
        if (r->p[i] >= '0' && r->p[i] <= '9') v = v * 10 + (r->p[i] - '0');
    *out = r->p[at] == '-' || v == 0 ? -1 : v > UINT32_MAX ? UINT32_MAX : v;
    return 0;
}

static int read_options(struct json_reader *r, int64_t *num_predict)
{
    enum json_kind k;
    if (json_reader_peek(r, &k)) return -1;
    if (k != JSON_K_OBJECT) return json_reader_skip(r);
    if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
    char name[16];
    size_t len;
    bool more;
    while (1) {
        if (json_reader_member(r, name, sizeof name, &len, &more)) return -1;
        if (!more) return 0;
        int rc = name_is(name, len, sizeof name, "num_predict") ? read_limit(r, num_predict)
                                                                : json_reader_skip(r);
        if (rc) return -1;
    }
}

static uint32_t sat32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

int ctxfit_estimate(enum api_kind kind, struct strv body, const struct ctxfit_params *cp,
                    struct ctx_need *need)
{
    memset(need, 0, sizeof *need);
    struct ctxfit_params defaults;
    if (!cp) {
        ctxfit_params_defaults(&defaults);
        cp = &defaults;
    }
    if (!cp->enabled || kind == API_ANTHROPIC_COUNT_TOKENS || kind >= API_KIND_COUNT) return -1;
    struct json_reader r;
    json_reader_init(&r, body.p, body.len, CTXFIT_MAX_DEPTH, NULL);
    if (json_reader_enter(&r, JSON_K_OBJECT)) return -1;
    uint64_t text = 0, msgs = 0, ids = 0;
    int64_t max_tokens = -1, max_completion = -1, num_predict = -1;
    char name[32];
    size_t len;
    bool more;
    while (1) {
        if (json_reader_member(&r, name, sizeof name, &len, &more)) return -1;
        if (!more) break;
        enum json_kind k;
        if (json_reader_peek(&r, &k)) return -1;
        int rc;
        if (name_is(name, len, sizeof name, "messages") && k == JSON_K_ARRAY) {
            rc = json_reader_enter(&r, JSON_K_ARRAY);
            while (!rc) {
                if ((rc = json_reader_element(&r, &more)) || !more) break;
                msgs++;
                rc = count_value(&r, &text);
            }
        } else if (name_is(name, len, sizeof name, "system") ||
                   name_is(name, len, sizeof name, "suffix")) {
            rc = count_value(&r, &text);
        } else if (name_is(name, len, sizeof name, "tools") ||
                   name_is(name, len, sizeof name, "functions")) {
            size_t at = r.pos;
            rc = json_reader_skip(&r);
            text += r.pos - at;
        } else if (name_is(name, len, sizeof name, "prompt") ||
                   name_is(name, len, sizeof name, "input")) {
            rc = count_prompt(&r, &text, &ids);
        } else if (name_is(name, len, sizeof name, "max_tokens")) {
            rc = read_limit(&r, &max_tokens);
        } else if (name_is(name, len, sizeof name, "max_completion_tokens")) {
            rc = read_limit(&r, &max_completion);
        } else if (name_is(name, len, sizeof name, "options")) {
            rc = read_options(&r, &num_predict);
        } else {
            rc = json_reader_skip(&r);
        }
        if (rc) return -1;
    }
    int64_t completion = 0;
    const char *param = "messages";
    switch (kind) {
    case API_CHAT:
        completion = max_completion > 0 ? max_completion : max_tokens;
        break;
    case API_COMPLETIONS:
        completion = max_tokens;
        param = "prompt";
        break;
    case API_ANTHROPIC_MESSAGES:
        completion = max_tokens;
        break;
    case API_OLLAMA_CHAT:
        completion = num_predict;
        break;
    case API_OLLAMA_GENERATE:
        completion = num_predict;
        param = "prompt";
        break;
    case API_OLLAMA_EMBEDDINGS_LEGACY:
        param = "prompt";
        break;
    default: /* embeddings: no completion */
        param = "input";
        break;
    }
    uint64_t e = cp->estimate_bytes_per_tok ? cp->estimate_bytes_per_tok : 1;
    uint64_t f = cp->refuse_bytes_per_tok ? cp->refuse_bytes_per_tok : 1;
    need->known = true;
    need->prompt_est =
        sat32((text + e - 1) / e + msgs * CTXFIT_PER_MESSAGE + CTXFIT_PER_REQUEST + ids);
    need->prompt_low = sat32(text / f + ids);
    need->completion = completion > 0 && cp->count_completion ? sat32((uint64_t)completion) : 0;
    need->param = param;
    return 0;
}

uint32_t ctxfit_need_est(const struct ctx_need *need)
{
    return sat32((uint64_t)need->prompt_est + need->completion);
}

uint32_t ctxfit_need_low(const struct ctx_need *need)
{
    return sat32((uint64_t)need->prompt_low + need->completion);
}

enum ctx_fit ctxfit_judge(uint32_t ctx, const struct ctx_need *need, uint32_t floor)
{
    if (!ctx) return CTX_FITS;
    if (floor && ctx <= floor) return CTX_TOO_SMALL;
    if (!need || !need->known) return CTX_FITS;
    if (ctxfit_need_low(need) > ctx) return CTX_TOO_SMALL;
    if (ctxfit_need_est(need) > ctx) return CTX_TIGHT;
    return CTX_FITS;
}

const char *ctxfit_name(enum ctx_fit f)
{
    return f == CTX_FITS ? "fits" : f == CTX_TIGHT ? "tight" : "too_small";
}

size_t ctxfit_message(char *out, size_t cap, uint32_t n_ctx, const struct ctx_need *need)
{
    const char *what = need && need->param ? need->param : "messages";
    uint32_t prompt = need ? need->prompt_est : 0;
    int w;
    if (!n_ctx)
        w = snprintf(out, cap,
                     "The request is longer than this model's context length on every node "
                     "that serves it. Please reduce the length of the %s.",
                     what);
    else if (need && need->completion)
        w = snprintf(out, cap,
                     "This model's maximum context length is %u tokens. However, you requested "
                     "%u tokens (%u in the %s, %u in the completion). Please reduce the length "
                     "of the %s or completion.",
                     n_ctx, ctxfit_need_est(need), prompt, what, need->completion, what);
    else
        w = snprintf(out, cap,
                     "This model's maximum context length is %u tokens. However, your %s "
                     "resulted in %u tokens. Please reduce the length of the %s.",
                     n_ctx, what, prompt, what);
    if (w < 0) return 0;
    return (size_t)w < cap ? (size_t)w : cap ? cap - 1 : 0;
}

/* The number after the first (case-sensitive) needle, or 0. */
static uint32_t number_after(const char *p, size_t n, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++) {
        if (memcmp(p + i, needle, nl) != 0) continue;
        size_t j = i + nl;
        uint64_t v = 0;
        bool any = false;
        while (j < n && p[j] >= '0' && p[j] <= '9' && v < UINT32_MAX) {
            v = v * 10 + (uint64_t)(p[j++] - '0');
            any = true;
        }
        if (any) return sat32(v);
    }
    return 0;
}

void ctxfit_refusal_numbers(const char *p, size_t len, uint32_t *n_ctx, uint32_t *n_prompt)
{
    *n_ctx = *n_prompt = 0;
    if (!p || !len) return;
    size_t n = len > 4096 ? 4096 : len;
    static const char *const ctx_needles[] = {
        "\"n_ctx\":",                         /* llama-server's error object */
        "available context size (",           /* its message */
        "maximum context length is ",         /* vLLM, OpenAI */
        "maximum model length of ",           /* vLLM: "longer than the maximum model length" */
        "exceeds limit of ",                  /* vLLM V1: "is too long and exceeds limit of" */
        "exceeds maximum context length of ", /* others */
    };
    static const char *const prompt_needles[] = {
        "\"n_prompt_tokens\":", /* llama-server */
        "request (",            /* llama-server: "request (1610 tokens) exceeds ..." */
        "request has ",         /* vLLM: "your request has 1500 input tokens (1000 > ..." */
        "resulted in ",         /* vLLM, OpenAI: "your messages resulted in 3000 tokens" */
        "prompt (length ",      /* vLLM: "The decoder prompt (length 5000)" */
        "prompt (",             /* vLLM V1: "Input prompt (5000 tokens) is too long" */
        "tokens (",             /* vLLM: "you requested 3000 tokens (2000 in the messages" */
    };
    for (size_t i = 0; i < sizeof ctx_needles / sizeof ctx_needles[0] && !*n_ctx; i++)
        *n_ctx = number_after(p, n, ctx_needles[i]);
    for (size_t i = 0; i < sizeof prompt_needles / sizeof prompt_needles[0] && !*n_prompt; i++)
        *n_prompt = number_after(p, n, prompt_needles[i]);
}
