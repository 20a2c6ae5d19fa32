/* strv — string view helpers; no allocation anywhere in this file. */
#include "base/strv.h"

#include <string.h>

struct strv strv_from_cstr(const char *s)
{
    struct strv v = {s, s ? strlen(s) : 0};
    return v;
}

struct strv strv_make(const char *p, size_t len)
{
    struct strv v = {p, len};
    return v;
}

bool strv_eq(struct strv a, struct strv b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

bool strv_eq_ci(struct strv a, struct strv b)
{
    if (a.len != b.len) return false;
    for (size_t i = 0; i < a.len; i++)
        if (lower(a.p[i]) != lower(b.p[i])) return false;
    return true;
}

bool strv_eq_cstr(struct strv a, const char *s)
{
    /* no strlen: stops at the first difference (request paths are matched this way) */
    for (size_t i = 0; i < a.len; i++)
        if (s[i] == '\0' || s[i] != a.p[i]) return false;
    return s[a.len] == '\0';
}

bool strv_starts_with(struct strv a, struct strv prefix)
{
    return a.len >= prefix.len && (prefix.len == 0 || memcmp(a.p, prefix.p, prefix.len) == 0);
}

struct strv strv_trim(struct strv a)
{
    while (a.len && (a.p[0] == ' ' || a.p[0] == '\t')) a.p++, a.len--;
    while (a.len && (a.p[a.len - 1] == ' ' || a.p[a.len - 1] == '\t')) a.len--;
    return a;
}

struct strv strv_sub(struct strv a, size_t off, size_t len)
{
    if (off > a.len) off = a.len;
    if (len > a.len - off) len = a.len - off;
    struct strv v = {a.p ? a.p + off : NULL, len};
    return v;
}

long strv_index(struct strv a, char c)
{
    const char *q = a.len ? memchr(a.p, c, a.len) : NULL;
    return q ? (long)(q - a.p) : -1;
}

int strv_to_u64(struct strv a, uint64_t *out)
{
    if (a.len == 0 || a.len > 20) return GW_E_PARSE;
    uint64_t v = 0;
    for (size_t i = 0; i < a.len; i++) {
        unsigned d = (unsigned char)a.p[i] - '0';
        if (d > 9) return GW_E_PARSE;
        if (v > (UINT64_MAX - d) / 10) return GW_E_PARSE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

bool strv_is_token(struct strv a)
{
    if (a.len == 0) return false;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char c = (unsigned char)a.p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
        switch (c) { /* RFC 9110 tchar punctuation; a switch, not strchr: runs per header byte */
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            continue;
        default:
            return false;
        }
    }
    return true;
}
