/* fuzz_validate — validate_request over arbitrary bytes for every API kind, and
 * validate_content_type over the same bytes as a header value. Neither may crash or read
 * past the input (the bytes are copied into an exact-size buffer, so ASan sees any overread),
 * and the contract must hold: 0 gives a non-empty model without control bytes and of the
 * length it says; -1 gives a code, a message, and a param that is a C string. An accepted
 * body must also be valid JSON by json_parse_strict (the reader's twin) or a top-level
 * object json-c refuses only for a lone surrogate escape, which validate refuses itself. The
 * context estimate (ctxfit) of an accepted body must succeed (except count_tokens) with its
 * high number at least its sure one; the refusal reader takes the bytes as any error body. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"
#include "gw/ctxfit.h"
#include "gw/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const struct validate_error *e)
{
    if (!e->code || !e->code[0]) __builtin_trap();
    if (strnlen(e->message, sizeof e->message) == sizeof e->message || !e->message[0])
        __builtin_trap();
    if (strnlen(e->param, sizeof e->param) == sizeof e->param) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = xmalloc(size ? size : 1); /* exact size: an overread is ASan's to see */
    if (size) memcpy(copy, data, size);
    struct strv body = strv_make(copy, size);
    for (int kind = 0; kind < API_KIND_COUNT; kind++) {
        struct validated v;
        struct validate_error e;
        int rc = validate_request((enum api_kind)kind, body, &v, &e);
        if (rc == -1) {
            check_error(&e);
            continue;
        }
        if (rc != 0) __builtin_trap();
        if (v.model_len == 0 || v.model_len > VALIDATE_MAX_MODEL_BYTES) __builtin_trap();
        if (strlen(v.model) != v.model_len) __builtin_trap();
        for (size_t i = 0; i < v.model_len; i++)
            if ((unsigned char)v.model[i] < 0x20 || v.model[i] == 0x7f) __builtin_trap();
        if (v.ollama != (kind >= API_OLLAMA_CHAT && kind <= API_OLLAMA_EMBEDDINGS_LEGACY))
            __builtin_trap();
        /* what validate accepts, the strict json-c parse accepts too */
        struct gw_error err = {0};
        struct json_object *o = json_parse_strict(copy, size, 32, &err);
        if (!o || !json_object_is_type(o, json_type_object)) __builtin_trap();
        json_object_put(o);
        struct ctx_need need;
        rc = ctxfit_estimate((enum api_kind)kind, body, NULL, &need);
        if (kind == API_ANTHROPIC_COUNT_TOKENS ? rc != -1 : rc != 0) __builtin_trap();
        if (rc == 0 && (need.prompt_est < need.prompt_low || !need.param ||
                        ctxfit_need_est(&need) < ctxfit_need_low(&need)))
            __builtin_trap();
    }
    uint32_t n_ctx, n_prompt;
    ctxfit_refusal_numbers(copy, size, &n_ctx, &n_prompt);
    struct validate_error e;
    int rc = validate_content_type(body, &e);
    if (rc == -1)
        check_error(&e);
    else if (rc != 0)
        __builtin_trap();
    xfree(copy);
    return 0;
}
