/* fuzz_json — json_parse_strict with a depth cap must never crash, must fail only with its
 * documented codes, and whatever it accepts must survive json-c's own serializer: the output
 * parses again (strictly, same cap), to an equal value, and serializes to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_DEPTH = 16 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_error err = {0};
    struct json_object *o = json_parse_strict((const char *)data, size, FUZZ_DEPTH, &err);
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
