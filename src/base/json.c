/* json — strict parsing and typed access over json-c. */
#include "base/json.h"

#include <stdint.h>
#include <string.h>

#include "base/buf.h"

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Length of the RFC 8259 number at p, or 0 if the bytes there are not one. */
static size_t number_len(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t k = 0;
    if (k < n && u[k] == '-') k++;
    if (k < n && u[k] == '0') {
        k++;
    } else if (k < n && is_digit(u[k])) {
        while (k < n && is_digit(u[k])) k++;
    } else {
        return 0;
    }
    if (k < n && u[k] == '.') {
        if (++k >= n || !is_digit(u[k])) return 0;
        while (k < n && is_digit(u[k])) k++;
    }
    if (k < n && (u[k] == 'e' || u[k] == 'E')) {
        k++;
        if (k < n && (u[k] == '+' || u[k] == '-')) k++;
        if (k >= n || !is_digit(u[k])) return 0;
        while (k < n && is_digit(u[k])) k++;
    }
    if (k < n &&
        (is_digit(u[k]) || u[k] == '.' || u[k] == '+' || u[k] == '-' || u[k] == 'e' || u[k] == 'E'))
        return 0; /* 01, 1.5.2, 1e5e5 */
    return k;
}

/* Length of true/false/null at p, or 0. */
static size_t literal_len(const char *p, size_t n)
{
    const char *word;
    size_t k;
    switch (n ? p[0] : 0) {
    case 't':
        word = "true", k = 4;
        break;
    case 'f':
        word = "false", k = 5;
        break;
    case 'n':
        word = "null", k = 4;
        break;
    default:
        return 0;
    }
    if (n < k || memcmp(p, word, k) != 0) return 0;
    if (n > k && ((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z') ||
                  is_digit((unsigned char)p[k]) || p[k] == '_'))
        return 0;
    return k;
}

/* Length of the well-formed UTF-8 sequence (RFC 3629) starting with a byte >= 0x80 at u, or 0:
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_len(const unsigned char *u, size_t n)
{
    unsigned char c = u[0], lo = 0x80, hi = 0xBF;
    size_t k;
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < k || u[1] < lo || u[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if (u[i] < 0x80 || u[i] > 0xBF) return 0;
    return k;
}

/* True if the string that closed just before `from` is followed by ':' (a member name). */
static bool is_member_name(const char *p, size_t len, size_t from)
{
    while (from < len && (p[from] == ' ' || p[from] == '\t' || p[from] == '\r' || p[from] == '\n'))
        from++;
    return from < len && p[from] == ':';
}

/* json-c's strict mode still takes things that are not JSON (RFC 8259): single-quoted member
 * names, raw control bytes in strings, overlong or surrogate UTF-8, NaN and Infinity, numbers like
 * "1." or "-.5"; and it cuts member names at \u0000 ("model\u0000x" becomes "model") where a
 * node's parser would not. One lexical pass refuses all of these, and NUL bytes, first; json-c
 * then checks the structure. */
static int prescan(const char *p, size_t len, struct gw_error *err)
{
    bool in_str = false, esc = false, has_nul = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == 0) return gw_error_set(err, GW_E_PARSE, "JSON contains a NUL byte");
        if (in_str) {
            if (esc) {
                esc = false;
                if (c == 'u' && len - i > 4 && memcmp(p + i + 1, "0000", 4) == 0) has_nul = true;
            } else if (c == '\\') {
                esc = true;
            } else if (c == '"') {
                in_str = false;
                if (has_nul && is_member_name(p, len, i + 1))
                    return gw_error_set(err, GW_E_PARSE, "invalid JSON: NUL in member name");
            } else if (c < 0x20) {
                return gw_error_set(err, GW_E_PARSE, "invalid JSON: control byte in string at %zu",
                                    i);
            } else if (c >= 0x80) {
                /* json-c's own check lets overlong forms and surrogates through. */
                size_t n = utf8_len((const unsigned char *)p + i, len - i);
                if (n == 0) return gw_error_set(err, GW_E_PARSE, "invalid UTF-8 at byte %zu", i);
                i += n - 1;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
            has_nul = false;
            continue;
        }
        if (strchr(" \t\r\n{}[],:", c)) continue; /* c is not NUL here */
        size_t n = 0;
        if (c == '-' || is_digit(c))
            n = number_len(p + i, len - i);
        else if (c == 't' || c == 'f' || c == 'n')
            n = literal_len(p + i, len - i);
        if (n == 0) return gw_error_set(err, GW_E_PARSE, "invalid JSON at byte %zu", i);
        i += n - 1;
    }
    return 0;
}

struct json_object *json_parse_strict(const char *p, size_t len, int max_depth,
                                      struct gw_error *err)
{
    if (len > (size_t)INT32_MAX) {
        gw_error_set(err, GW_E_LIMIT, "JSON body too large");
        return NULL;
    }
    if (len == 0) {
        gw_error_set(err, GW_E_PARSE, "empty body, expected JSON");
        return NULL;
    }
    if (prescan(p, len, err)) return NULL;
    struct json_tokener *tok = json_tokener_new_ex(max_depth > 0 ? max_depth : 1);
    if (!tok) {
        gw_error_set(err, GW_E_PARSE, "JSON parser unavailable");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *root = json_tokener_parse_ex(tok, p, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (!root && jerr == json_tokener_continue && end == len) {
        /* A value with no closing byte (a bare number, true, null) needs the end of input
         * signalled: json-c takes a NUL as that signal. */
        root = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    if (!root) {
        if (jerr == json_tokener_success) {
            /* json-c's JSON null is a NULL object, which this API cannot return. */
            gw_error_set(err, GW_E_INVALID, "JSON null is not accepted as a whole body");
        } else if (jerr == json_tokener_continue) {
            gw_error_set(err, GW_E_PARSE, "JSON ends early");
        } else if (jerr == json_tokener_error_depth) {
            gw_error_set(err, GW_E_DEPTH, "JSON nested deeper than %d", max_depth);
        } else {
            gw_error_set(err, GW_E_PARSE, "invalid JSON at byte %zu: %s", end,
                         json_tokener_error_desc(jerr));
        }
        json_tokener_free(tok);
        return NULL;
    }
    /* Whitespace after the value is allowed; anything else is not. */
    for (size_t i = end; i < len; i++) {
        char c = p[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            gw_error_set(err, GW_E_PARSE, "invalid JSON: trailing bytes at %zu", i);
            json_object_put(root);
            json_tokener_free(tok);
            return NULL;
        }
    }
    json_tokener_free(tok);
    return root;
}

static int member(struct json_object *o, const char *key, struct json_object **v)
{
    if (!o || !json_object_is_type(o, json_type_object)) return GW_E_INVALID;
    if (!json_object_object_get_ex(o, key, v)) return GW_E_NOTFOUND;
    return 0;
}

int json_get_str(struct json_object *o, const char *key, struct strv *out)
{
    struct json_object *v;
    int rc = member(o, key, &v);
    if (rc) return rc;
    if (!json_object_is_type(v, json_type_string)) return GW_E_INVALID;
    out->p = json_object_get_string(v);
    out->len = (size_t)json_object_get_string_len(v);
    return 0;
}

int json_get_int(struct json_object *o, const char *key, int64_t *out)
{
    struct json_object *v;
    int rc = member(o, key, &v);
    if (rc) return rc;
    if (!json_object_is_type(v, json_type_int)) return GW_E_INVALID;
    *out = json_object_get_int64(v);
    return 0;
}

int json_get_num(struct json_object *o, const char *key, double *out)
{
    struct json_object *v;
    int rc = member(o, key, &v);
    if (rc) return rc;
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return GW_E_INVALID;
    *out = json_object_get_double(v);
    return 0;
}

int json_get_bool(struct json_object *o, const char *key, bool *out)
{
    struct json_object *v;
    int rc = member(o, key, &v);
    if (rc) return rc;
    if (!json_object_is_type(v, json_type_boolean)) return GW_E_INVALID;
    *out = json_object_get_boolean(v) != 0;
    return 0;
}

static int get_typed(struct json_object *o, const char *key, enum json_type t,
                     struct json_object **out)
{
    struct json_object *v;
    int rc = member(o, key, &v);
    if (rc) return rc;
    if (!json_object_is_type(v, t)) return GW_E_INVALID;
    *out = v;
    return 0;
}

int json_get_obj(struct json_object *o, const char *key, struct json_object **out)
{
    return get_typed(o, key, json_type_object, out);
}

int json_get_arr(struct json_object *o, const char *key, struct json_object **out)
{
    return get_typed(o, key, json_type_array, out);
}

bool json_is_null(struct json_object *o, const char *key)
{
    struct json_object *v;
    return member(o, key, &v) == 0 && v == NULL;
}

size_t json_str_len(const char *s, size_t len)
{
    size_t n = len + 2;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
            n += 1;
        else if (c < 0x20)
            n += 5;
    }
    return n;
}

size_t json_put_str(char *dst, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *d = dst;
    *d++ = '"';
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        memcpy(d, s + i - run, run);
        d += run;
        run = 0;
        *d++ = '\\';
        switch (c) {
        case '"':
            *d++ = '"';
            break;
        case '\\':
            *d++ = '\\';
            break;
        case '\n':
            *d++ = 'n';
            break;
        case '\r':
            *d++ = 'r';
            break;
        case '\t':
            *d++ = 't';
            break;
        default:
            *d++ = 'u', *d++ = '0', *d++ = '0', *d++ = hex[c >> 4], *d++ = hex[c & 15];
        }
    }
    if (run) memcpy(d, s + len - run, run);
    d += run;
    *d++ = '"';
    return (size_t)(d - dst);
}

int json_append_str(struct buf *out, const char *s, size_t len)
{
    /* one escaper (json_put_str) into room reserved at once: out is unchanged on failure */
    int rc = buf_grow(out, json_str_len(s, len));
    if (rc) return rc;
    buf_commit(out, json_put_str(out->p + out->len, s, len));
    return 0;
}

/* Skips a string token starting at p[i] == '"'; returns the index after its closing quote. */
static size_t skip_string(const char *p, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (p[i] == '\\') {
            i++;
        } else if (p[i] == '"') {
            return i + 1;
        }
    }
    return len;
}

int json_top_string_span(const char *p, size_t len, const char *key, size_t *start, size_t *end)
{
    size_t klen = strlen(key);
    int depth = 0;
    bool expect_key = false;
    for (size_t i = 0; i < len;) {
        char c = p[i];
        if (c == '{' || c == '[') {
            depth++;
            expect_key = c == '{' && depth == 1;
            i++;
        } else if (c == '}' || c == ']') {
            depth--;
            i++;
        } else if (c == ',') {
            expect_key = depth == 1;
            i++;
        } else if (c == '"') {
            size_t s = i, e = skip_string(p, len, i);
            if (depth == 1 && expect_key) {
                expect_key = false;
                bool match = e - s - 2 == klen && memcmp(p + s + 1, key, klen) == 0;
                i = e;
                while (i < len &&
                       (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' || p[i] == ':'))
                    i++;
                if (match) {
                    if (i >= len || p[i] != '"') return GW_E_INVALID;
                    *start = i;
                    *end = skip_string(p, len, i);
                    return 0;
                }
                continue;
            }
            i = e;
        } else {
            i++;
        }
    }
    return GW_E_NOTFOUND;
}

/* ---- json_reader ---------------------------------------------------------------------------
 * A pull reader over the bytes: each call checks exactly what it consumes with the lexical
 * rules above (number_len, literal_len, utf8_len), so a caller that reads a body to its end
 * (json_reader_end) has checked all of it, structure included, without building a tree. */

void json_reader_init(struct json_reader *r, const char *p, size_t len, int max_depth,
                      struct gw_error *err)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->depth = 0;
    r->max_depth = max_depth > 0 ? max_depth : 1;
    r->fresh = false;
    r->err = err;
}

static void jr_ws(struct json_reader *r)
{
    while (r->pos < r->len) {
        char c = r->p[r->pos];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') break;
        r->pos++;
    }
}

static int jr_fail(struct json_reader *r)
{
    if (r->pos >= r->len) return gw_error_set(r->err, GW_E_PARSE, "JSON ends early");
    if (r->p[r->pos] == '\0') return gw_error_set(r->err, GW_E_PARSE, "JSON contains a NUL byte");
    return gw_error_set(r->err, GW_E_PARSE, "invalid JSON at byte %zu", r->pos);
}

int json_reader_peek(struct json_reader *r, enum json_kind *kind)
{
    jr_ws(r);
    if (r->pos >= r->len) return jr_fail(r);
    /* As json-c counts: a value inside d open containers is at level d + 1, scalars too. */
    if (r->depth >= r->max_depth)
        return gw_error_set(r->err, GW_E_DEPTH, "JSON nested deeper than %d", r->max_depth);
    const char *p = r->p + r->pos;
    size_t n = r->len - r->pos;
    switch (*p) {
    case '{':
        *kind = JSON_K_OBJECT;
        return 0;
    case '[':
        *kind = JSON_K_ARRAY;
        return 0;
    case '"':
        *kind = JSON_K_STRING;
        return 0;
    case 't':
    case 'f':
    case 'n':
        if (!literal_len(p, n)) return jr_fail(r);
        *kind = *p == 'n' ? JSON_K_NULL : JSON_K_BOOL;
        return 0;
    default:
        break;
    }
    size_t k = number_len(p, n);
    if (!k) return jr_fail(r);
    *kind = JSON_K_INT;
    for (size_t i = 0; i < k; i++)
        if (p[i] == '.' || p[i] == 'e' || p[i] == 'E') *kind = JSON_K_DOUBLE;
    return 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

static void put_byte(char *dst, size_t cap, size_t *k, unsigned char b)
{
    if (dst && *k < cap) dst[*k] = (char)b;
    (*k)++;
}

static void put_cp(char *dst, size_t cap, size_t *k, unsigned cp)
{
    if (cp < 0x80) {
        put_byte(dst, cap, k, (unsigned char)cp);
    } else if (cp < 0x800) {
        put_byte(dst, cap, k, (unsigned char)(0xC0 | cp >> 6));
        put_byte(dst, cap, k, (unsigned char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        put_byte(dst, cap, k, (unsigned char)(0xE0 | cp >> 12));
        put_byte(dst, cap, k, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        put_byte(dst, cap, k, (unsigned char)(0x80 | (cp & 0x3F)));
    } else {
        put_byte(dst, cap, k, (unsigned char)(0xF0 | cp >> 18));
        put_byte(dst, cap, k, (unsigned char)(0x80 | (cp >> 12 & 0x3F)));
        put_byte(dst, cap, k, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        put_byte(dst, cap, k, (unsigned char)(0x80 | (cp & 0x3F)));
    }
}

/* The bytes of w that a string scan must stop at: a quote, a backslash, a control byte
 * (< 0x20) or >= 0x80, each marked by its high bit, with the word-at-a-time tests ("has a zero
 * byte", "has a byte less than n"). A test may also mark bytes after the first marked one
 * (a borrow carries up), never before it, so the lowest mark is exact. */
static uint64_t word_stops(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    uint64_t has_q = (q - ones) & ~q & highs;
    uint64_t has_b = (b - ones) & ~b & highs;
    uint64_t has_ctl = (w - ones * 0x20) & ~w & highs;
    return (w & highs) | has_q | has_b | has_ctl;
}

static bool is_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The end of the run of plain bytes (printable ASCII but quote and backslash) from i. */
static size_t plain_run(const char *p, size_t n, size_t i)
{
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t m = word_stops(w);
        if (!m) {
            i += 8;
            continue;
        }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return i + ((size_t)__builtin_ctzll(m) >> 3); /* the lowest address's mark */
#else
        break;
#endif
    }
    while (i < n && is_plain((unsigned char)p[i])) i++;
    return i;
}

/* Reads the string at r->pos (its opening quote), decoding into dst; *nul is set when it
 * held an escaped NUL. */
static int jr_str(struct json_reader *r, char *dst, size_t cap, size_t *len, bool *nul)
{
    const char *p = r->p;
    size_t n = r->len, i = r->pos + 1, k = 0;
    *nul = false;
    while (i < n) {
        /* The common case first: a run of plain ASCII (no quote, backslash, control byte or
         * byte >= 0x80), passed over 8 bytes a step and copied in one piece. A 128 KiB prompt
         * is nearly all such bytes. */
        size_t run = plain_run(p, n, i);
        if (run > i) {
            if (dst && k < cap) memcpy(dst + k, p + i, run - i < cap - k ? run - i : cap - k);
            k += run - i;
            i = run;
            if (i >= n) break;
        }
        unsigned char c = (unsigned char)p[i];
        if (c == '"') {
            r->pos = i + 1;
            *len = k;
            return 0;
        }
        if (c < 0x20) {
            r->pos = i;
            if (c == 0) return jr_fail(r);
            return gw_error_set(r->err, GW_E_PARSE, "invalid JSON: control byte in string at %zu",
                                i);
        }
        if (c >= 0x80) {
            size_t u = utf8_len((const unsigned char *)p + i, n - i);
            if (!u) return gw_error_set(r->err, GW_E_PARSE, "invalid UTF-8 at byte %zu", i);
            for (size_t j = 0; j < u; j++) put_byte(dst, cap, &k, (unsigned char)p[i + j]);
            i += u;
            continue;
        }
        if (c != '\\') {
            put_byte(dst, cap, &k, c);
            i++;
            continue;
        }
        if (i + 1 >= n) break;
        char e = p[i + 1];
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *hit = e ? strchr(from, e) : NULL;
        if (hit) {
            put_byte(dst, cap, &k, (unsigned char)to[hit - from]);
            i += 2;
            continue;
        }
        unsigned cp;
        if (e != 'u' || n - i < 6 || hex4(p + i + 2, &cp)) {
            r->pos = i;
            return jr_fail(r);
        }
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (n - i >= 6 && p[i] == '\\' && p[i + 1] == 'u' && hex4(p + i + 2, &lo) == 0 &&
                lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else {
                cp = 0xFFFD;
            }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD;
        }
        if (cp == 0) *nul = true;
        put_cp(dst, cap, &k, cp);
    }
    r->pos = n;
    return jr_fail(r);
}

int json_reader_string(struct json_reader *r, char *dst, size_t cap, size_t *len)
{
    int rc;
    enum json_kind kind;
    if ((rc = json_reader_peek(r, &kind))) return rc;
    if (kind != JSON_K_STRING) return gw_error_set(r->err, GW_E_PARSE, "not a JSON string");
    bool nul;
    size_t dummy;
    return jr_str(r, dst, cap, len ? len : &dummy, &nul);
}

int json_reader_bool(struct json_reader *r, bool *out)
{
    int rc;
    enum json_kind kind;
    if ((rc = json_reader_peek(r, &kind))) return rc;
    if (kind != JSON_K_BOOL) return gw_error_set(r->err, GW_E_PARSE, "not a JSON boolean");
    *out = r->p[r->pos] == 't';
    r->pos += *out ? 4 : 5;
    return 0;
}

int json_reader_enter(struct json_reader *r, enum json_kind kind)
{
    int rc;
    enum json_kind got;
    if ((rc = json_reader_peek(r, &got))) return rc;
    if (got != kind || (kind != JSON_K_OBJECT && kind != JSON_K_ARRAY))
        return gw_error_set(r->err, GW_E_PARSE, "not a JSON %s",
                            kind == JSON_K_OBJECT ? "object" : "array");
    r->depth++;
    r->pos++;
    r->fresh = true;
    return 0;
}

/* Before a member or element: the container's end (left, *more false), or the separator. */
static int jr_next(struct json_reader *r, char close, bool *more)
{
    jr_ws(r);
    if (r->pos >= r->len) return jr_fail(r);
    char c = r->p[r->pos];
    if (c == close) {
        r->pos++;
        r->depth--;
        r->fresh = false;
        *more = false;
        return 0;
    }
    if (!r->fresh) {
        if (c != ',') return jr_fail(r);
        r->pos++;
        jr_ws(r);
    }
    r->fresh = false;
    *more = true;
    return 0;
}

int json_reader_member(struct json_reader *r, char *name, size_t cap, size_t *name_len, bool *more)
{
    int rc;
    if ((rc = jr_next(r, '}', more))) return rc;
    if (!*more) return 0;
    if (r->pos >= r->len || r->p[r->pos] != '"') return jr_fail(r);
    bool nul;
    size_t dummy;
    if ((rc = jr_str(r, name, cap, name_len ? name_len : &dummy, &nul))) return rc;
    if (nul) return gw_error_set(r->err, GW_E_PARSE, "invalid JSON: NUL in member name");
    jr_ws(r);
    if (r->pos >= r->len || r->p[r->pos] != ':') return jr_fail(r);
    r->pos++;
    return 0;
}

int json_reader_element(struct json_reader *r, bool *more)
{
    return jr_next(r, ']', more);
}

/* One value passed over: the checks of json_reader_peek and of the reads it stands for, each
 * byte looked at once (a scalar's length is not measured twice). */
int json_reader_skip(struct json_reader *r)
{
    int rc;
    jr_ws(r);
    if (r->pos >= r->len) return jr_fail(r);
    if (r->depth >= r->max_depth)
        return gw_error_set(r->err, GW_E_DEPTH, "JSON nested deeper than %d", r->max_depth);
    const char *p = r->p + r->pos;
    size_t n = r->len - r->pos, k;
    bool more = true, nul;
    switch (*p) {
    case '"':
        return jr_str(r, NULL, 0, &k, &nul);
    case '[':
        r->depth++;
        r->pos++;
        r->fresh = true;
        while (1) {
            if ((rc = json_reader_element(r, &more))) return rc;
            if (!more) return 0;
            if ((rc = json_reader_skip(r))) return rc;
        }
    case '{':
        r->depth++;
        r->pos++;
        r->fresh = true;
        while (1) {
            if ((rc = json_reader_member(r, NULL, 0, &k, &more))) return rc;
            if (!more) return 0;
            if ((rc = json_reader_skip(r))) return rc;
        }
    case 't':
    case 'f':
    case 'n':
        k = literal_len(p, n);
        break;
    default:
        k = number_len(p, n);
    }
    if (!k) return jr_fail(r);
    r->pos += k;
    return 0;
}

int json_reader_end(struct json_reader *r)
{
    jr_ws(r);
    if (r->pos < r->len)
        return gw_error_set(r->err, GW_E_PARSE, "invalid JSON: trailing bytes at %zu", r->pos);
    return 0;
}
