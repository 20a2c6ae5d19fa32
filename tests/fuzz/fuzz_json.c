/* fuzz_json — json_parse_strict with a depth cap must never crash, must fail only with its
 * documented codes, and whatever it accepts must survive json-c's own serializer: the output
 * parses again (strictly, same cap), to an equal value, and serializes to the same bytes.
 * Differential: the allocation-free json_reader (request validation's parser) must accept
 * exactly what json_parse_strict accepts, and a top-level string must decode to json-c's
 * bytes (except with \uD... escapes: json-c turns some valid surrogate pairs, such as
 * \ud837\ude00 for U+1DE00, into U+FFFD, where the reader decodes them as RFC 8259 says). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_DEPTH = 16 };

/* 1 when the reader takes the whole input as one value. */
static int reader_accepts(const char *p, size_t n)
{
    struct gw_error err = {0};
    struct json_reader r;
    json_reader_init(&r, p, n, FUZZ_DEPTH, &err);
    if (json_reader_skip(&r) || json_reader_end(&r)) {
        if (err.code != GW_E_PARSE && err.code != GW_E_DEPTH) __builtin_trap();
        return 0;
    }
    return 1;
}

static int has_surrogate_escape(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 2 < n; i++)
        if (p[i] == '\\' && p[i + 1] == 'u' && (p[i + 2] == 'd' || p[i + 2] == 'D')) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_error err = {0};
    struct json_object *o = json_parse_strict((const char *)data, size, FUZZ_DEPTH, &err);
    int by_reader = reader_accepts((const char *)data, size);
    /* json_parse_strict refuses a bare top-level null (GW_E_INVALID) that the reader takes. */
    if (by_reader != (o != NULL || err.code == GW_E_INVALID)) __builtin_trap();
    if (o && json_object_is_type(o, json_type_string) && !has_surrogate_escape(data, size)) {
        char buf[256];
        size_t len = 0;
        struct json_reader r;
        json_reader_init(&r, (const char *)data, size, FUZZ_DEPTH, &err);
        if (json_reader_string(&r, buf, sizeof buf, &len)) __builtin_trap();
        size_t want = (size_t)json_object_get_string_len(o);
        if (len != want) __builtin_trap();
        if (memcmp(buf, json_object_get_string(o), len < sizeof buf ? len : sizeof buf) != 0)
            __builtin_trap();
    }
    if (!o) {
        if (err.code != GW_E_PARSE && err.code != GW_E_DEPTH && err.code != GW_E_INVALID)
            __builtin_trap();
        return 0;
    }
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
    struct json_object *o2 = json_parse_strict(s, n, FUZZ_DEPTH, &err);
    if (!o2) __builtin_trap();
    if (!json_object_equal(o, o2)) __builtin_trap();
    size_t n2 = 0;
    const char *s2 = json_object_to_json_string_length(o2, JSON_C_TO_STRING_PLAIN, &n2);
    if (n2 != n || memcmp(s, s2, n) != 0) __builtin_trap();
    json_object_put(o2);
    json_object_put(o);
    return 0;
}
