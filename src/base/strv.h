/* strv — borrowed string views. A strv never owns its bytes and is not NUL-terminated;
 * copy (xstrndup, arena_strndup) what must outlive the buffer it points into. Any thread. */
#ifndef DROVER_BASE_STRV_H
#define DROVER_BASE_STRV_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct strv {
    const char *p;
    size_t len;
};

#define STRV_LIT(s) ((struct strv){(s), sizeof(s) - 1})
#define STRV_NULL ((struct strv){NULL, 0})
#define STRV_FMT(v) (int)(v).len, (v).p /* printf("%.*s", STRV_FMT(v)) */

struct strv strv_from_cstr(const char *s); /* s may be NULL: empty view */
struct strv strv_make(const char *p, size_t len);
bool strv_eq(struct strv a, struct strv b);
bool strv_eq_ci(struct strv a, struct strv b); /* ASCII case-insensitive */
bool strv_eq_cstr(struct strv a, const char *s);
bool strv_starts_with(struct strv a, struct strv prefix);
struct strv strv_trim(struct strv a);                        /* strips SP and HTAB at both ends */
struct strv strv_sub(struct strv a, size_t off, size_t len); /* clamps to a */
/* Index of c in a, or -1. */
long strv_index(struct strv a, char c);
/* Strict decimal: digits only, no sign or space, no overflow. GW_E_PARSE otherwise. */
int strv_to_u64(struct strv a, uint64_t *out) WUR;
/* True if every byte is an RFC 9110 tchar and a is not empty. */
bool strv_is_token(struct strv a);

#endif
