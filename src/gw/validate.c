/* validate — per-API field rules over one strict pass of base/json's reader: no tree and no
 * allocation (this runs for every request; a json-c parse was a tenth of the gateway's CPU in
 * the non-stream benchmark). The pass keeps, per member the rules look at, its kind and (for
 * numbers) its text; the rules then run on those facts. Numbers are judged by the value a
 * node's parser would see (strtod's rounding, as Python's float and Go's ParseFloat), so
 * 100,000 digits or 1e999999 are simply out of range. Nothing here touches the network. */
#include "gw/validate.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "gw/registry.h"

enum { VALIDATE_MAX_DEPTH = 32 };

/* Copies as much of src as fits; messages longer than the field are cut, by intent. */
static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int bad(struct validate_error *e, const char *code, const char *param, const char *msg)
{
    e->code = code;
    copy_cut(e->param, sizeof e->param, param ? param : "");
    copy_cut(e->message, sizeof e->message, msg);
    return -1;
}

/* The members the rules look at. Each keeps the kind of its last occurrence (a repeated name:
 * the last one wins, as in json-c, Python and the engines' parsers); -1 when absent. */
enum key {
    K_MODEL,
    K_STREAM,
    K_MESSAGES,
    K_PROMPT,
    K_INPUT,
    K_TEMPERATURE,
    K_TOP_P,
    K_FREQUENCY_PENALTY,
    K_PRESENCE_PENALTY,
    K_MAX_TOKENS,
    K_MAX_COMPLETION_TOKENS,
    K_N,
    K_SEED,
    K_STREAM_OPTIONS,
    K_OPTIONS,
    K_STOP,
    K_RESPONSE_FORMAT,
    K_KEEP_ALIVE,
    K_TOOLS,
    K_FUNCTIONS,
    K_FORMAT,
    K_IMAGES,
    K_COUNT
};
static const char *const key_names[K_COUNT] = {"model",
                                               "stream",
                                               "messages",
                                               "prompt",
                                               "input",
                                               "temperature",
                                               "top_p",
                                               "frequency_penalty",
                                               "presence_penalty",
                                               "max_tokens",
                                               "max_completion_tokens",
                                               "n",
                                               "seed",
                                               "stream_options",
                                               "options",
                                               "stop",
                                               "response_format",
                                               "keep_alive",
                                               "tools",
                                               "functions",
                                               "format",
                                               "images"};

/* A number's rule: an integer (the JSON text has no fraction or exponent; for Ollama's
 * options, any integral value, as Go's float64 decoding takes 5.0) within [min, max]. */
struct range {
    int key;
    bool integer;
    double min, max;
};

/* OpenAI's ranges (chat and completions). */
static const struct range openai_ranges[] = {
    {K_TEMPERATURE, false, 0, 2},        {K_TOP_P, false, 0, 1},
    {K_FREQUENCY_PENALTY, false, -2, 2}, {K_PRESENCE_PENALTY, false, -2, 2},
    {K_MAX_TOKENS, true, 1, INT32_MAX},  {K_MAX_COMPLETION_TOKENS, true, 1, INT32_MAX},
    {K_N, true, 1, VALIDATE_MAX_N},
};

/* Ollama's options (api/types.go Options and Runner): the ones with a meaning outside their
 * range get it; the others are typed and kept to what the engine's int or float holds.
 * Unknown options pass (Ollama ignores them with a warning). */
enum opt {
    O_NUM_PREDICT,
    O_NUM_CTX,
    O_NUM_KEEP,
    O_NUM_BATCH,
    O_NUM_GPU,
    O_MAIN_GPU,
    O_NUM_THREAD,
    O_TOP_K,
    O_REPEAT_LAST_N,
    O_MIROSTAT,
    O_SEED,
    O_TEMPERATURE,
    O_TOP_P,
    O_MIN_P,
    O_TYPICAL_P,
    O_REPEAT_PENALTY,
    O_PRESENCE_PENALTY,
    O_FREQUENCY_PENALTY,
    O_MIROSTAT_TAU,
    O_MIROSTAT_ETA,
    O_COUNT
};
static const char *const opt_names[O_COUNT] = {"num_predict",
                                               "num_ctx",
                                               "num_keep",
                                               "num_batch",
                                               "num_gpu",
                                               "main_gpu",
                                               "num_thread",
                                               "top_k",
                                               "repeat_last_n",
                                               "mirostat",
                                               "seed",
                                               "temperature",
                                               "top_p",
                                               "min_p",
                                               "typical_p",
                                               "repeat_penalty",
                                               "presence_penalty",
                                               "frequency_penalty",
                                               "mirostat_tau",
                                               "mirostat_eta"};
#define NO_LIMIT HUGE_VAL
static const struct range ollama_ranges[O_COUNT] = {
    {O_NUM_PREDICT, true, -2, INT32_MAX}, /* -1 no limit, -2 fill the context */
    {O_NUM_CTX, true, 1, INT32_MAX},
    {O_NUM_KEEP, true, -1, INT32_MAX}, /* -1 keeps the whole prompt */
    {O_NUM_BATCH, true, 1, INT32_MAX},
    {O_NUM_GPU, true, -1, INT32_MAX}, /* -1 lets Ollama decide */
    {O_MAIN_GPU, true, 0, INT32_MAX},
    {O_NUM_THREAD, true, 0, INT32_MAX}, /* 0 lets Ollama decide */
    {O_TOP_K, true, 0, INT32_MAX},
    {O_REPEAT_LAST_N, true, -1, INT32_MAX}, /* -1 the whole context */
    {O_MIROSTAT, true, 0, 2},
    {O_SEED, true, INT32_MIN, INT32_MAX}, /* -1 random */
    {O_TEMPERATURE, false, 0, NO_LIMIT},
    {O_TOP_P, false, 0, 1},
    {O_MIN_P, false, 0, 1},
    {O_TYPICAL_P, false, 0, NO_LIMIT},
    {O_REPEAT_PENALTY, false, -NO_LIMIT, NO_LIMIT},
    {O_PRESENCE_PENALTY, false, -NO_LIMIT, NO_LIMIT},
    {O_FREQUENCY_PENALTY, false, -NO_LIMIT, NO_LIMIT},
    {O_MIROSTAT_TAU, false, -NO_LIMIT, NO_LIMIT},
    {O_MIROSTAT_ETA, false, -NO_LIMIT, NO_LIMIT},
};

/* The roles OpenAI takes (and Ollama's four among them). */
static const char *const roles[] = {"system", "user", "assistant", "tool", "function", "developer"};

enum { NO_BAD = -1, BAD_NOT_OBJECT = 1, BAD_ROLE = 2, BAD_ROLE_VALUE = 3 };

struct facts {
    int kind[K_COUNT];        /* enum json_kind, or -1 */
    struct strv num[K_COUNT]; /* a number's text, borrowed from the body */
    char model[VALIDATE_MAX_MODEL_BYTES];
    size_t model_len; /* the full decoded length, even past the buffer */
    bool stream;
    size_t messages_n, input_n;
    long messages_bad_at; /* first element breaking the rules, or -1 */
    int messages_bad_why;
    int opt_kind[O_COUNT]; /* the last "options" object's members, as kind and num */
    struct strv opt_num[O_COUNT];
    unsigned features; /* optional CAP_* the request uses (tools, vision, response format) */
};

static const char *kind_name(int k)
{
    switch (k) {
    case JSON_K_NULL:
        return "null";
    case JSON_K_BOOL:
        return "a boolean";
    case JSON_K_INT:
        return "an integer";
    case JSON_K_DOUBLE:
        return "a decimal";
    case JSON_K_OBJECT:
        return "an object";
    case JSON_K_ARRAY:
        return "an array";
    case JSON_K_STRING:
        return "a string";
    default:
        return "unknown";
    }
}

static int lookup(const char *const *names, int n, const char *name, size_t len)
{
    /* the first byte first: most members of a request are not among the names */
    for (int k = 0; k < n; k++)
        if (len && names[k][0] == name[0] && strlen(names[k]) == len &&
            memcmp(names[k], name, len) == 0)
            return k;
    return -1;
}

/* Passes over the number at the reader (its kind already peeked) and gives its text. The
 * reader's pos is at the number's first byte after a peek. */
static int read_number(struct json_reader *r, struct strv *text)
{
    size_t at = r->pos;
    if (json_reader_skip(r)) return -1;
    *text = strv_make(r->p + at, r->pos - at);
    return 0;
}

/* The value of a JSON number's text (already checked by the reader), rounded as strtod does.
 * A text too long for the stack buffer keeps its first 40 significant digits and an exponent
 * clamped far past double's range: the same verdict for every range check, without
 * allocating for 100,000 digits. */
static double num_value(struct strv t)
{
    /* The common short forms ("256", "0.7", "-1.5e-3") exactly, without strtod (Clinger's fast
     * path: a mantissa below 2^53 and a power of ten below 10^23 are exact doubles, and one
     * IEEE multiplication or division of exact values rounds correctly). */
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    if (t.len <= 24) {
        size_t i = t.p[0] == '-';
        uint64_t mant = 0;
        int digits = 0, exp10 = 0;
        for (; i < t.len && t.p[i] >= '0' && t.p[i] <= '9'; i++, digits++)
            mant = mant * 10 + (uint64_t)(t.p[i] - '0');
        if (i < t.len && t.p[i] == '.')
            for (i++; i < t.len && t.p[i] >= '0' && t.p[i] <= '9'; i++, digits++, exp10--)
                mant = mant * 10 + (uint64_t)(t.p[i] - '0');
        if (i < t.len) { /* an exponent: at most 2 digits here */
            i++;
            bool eneg = t.p[i] == '-';
            if (t.p[i] == '-' || t.p[i] == '+') i++;
            int e = 0, ed = 0;
            for (; i < t.len; i++, ed++) e = e * 10 + (t.p[i] - '0');
            exp10 = ed > 2 ? 999 : exp10 + (eneg ? -e : e);
        }
        if (digits <= 15 && exp10 >= -22 && exp10 <= 22) {
            double v = (double)mant;
            v = exp10 < 0 ? v / pow10[-exp10] : v * pow10[exp10];
            return t.p[0] == '-' ? -v : v;
        }
    }
    char buf[80];
    if (t.len < 64) {
        memcpy(buf, t.p, t.len);
        buf[t.len] = '\0';
        return strtod(buf, NULL);
    }
    enum { KEEP = 40, EXP_CAP = 100000 };
    size_t i = 0, nd = 0;
    bool neg = t.p[0] == '-';
    if (neg) i++;
    char digits[KEEP];
    long long exp10 = 0; /* value = digits × 10^exp10 */
    for (; i < t.len && t.p[i] >= '0' && t.p[i] <= '9'; i++) {
        if (nd == 0 && t.p[i] == '0') continue;
        if (nd < KEEP)
            digits[nd++] = t.p[i];
        else
            exp10++;
    }
    if (i < t.len && t.p[i] == '.')
        for (i++; i < t.len && t.p[i] >= '0' && t.p[i] <= '9'; i++) {
            if (nd == 0 && t.p[i] == '0') {
                exp10--;
            } else if (nd < KEEP) {
                digits[nd++] = t.p[i];
                exp10--;
            }
        }
    if (i < t.len && (t.p[i] == 'e' || t.p[i] == 'E')) {
        i++;
        bool eneg = i < t.len && t.p[i] == '-';
        if (i < t.len && (t.p[i] == '-' || t.p[i] == '+')) i++;
        long long e = 0;
        for (; i < t.len && t.p[i] >= '0' && t.p[i] <= '9'; i++)
            if (e < EXP_CAP * 10LL) e = e * 10 + (t.p[i] - '0');
        exp10 += eneg ? -e : e;
    }
    if (nd == 0) return neg ? -0.0 : 0.0;
    if (exp10 > EXP_CAP) exp10 = EXP_CAP;
    if (exp10 < -EXP_CAP) exp10 = -EXP_CAP;
    snprintf(buf, sizeof buf, "%s%.*se%lld", neg ? "-" : "", (int)nd, digits, exp10);
    return strtod(buf, NULL);
}

/* A message's "content" array: does a part carry an image? */
static int read_content_parts(struct json_reader *r, unsigned *features)
{
    if (json_reader_enter(r, JSON_K_ARRAY)) return -1;
    bool more;
    while (1) {
        if (json_reader_element(r, &more)) return -1;
        if (!more) return 0;
        enum json_kind kind;
        if (json_reader_peek(r, &kind)) return -1;
        if (kind != JSON_K_OBJECT) {
            if (json_reader_skip(r)) return -1;
            continue;
        }
        if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
        char name[8];
        size_t nl;
        while (1) {
            if (json_reader_member(r, name, sizeof name, &nl, &more)) return -1;
            if (!more) break;
            if (nl == 4 && memcmp(name, "type", 4) == 0 && json_reader_peek(r, &kind) == 0 &&
                kind == JSON_K_STRING) {
                char v[16];
                size_t len = 0;
                if (json_reader_string(r, v, sizeof v, &len)) return -1;
                if ((len == 9 && memcmp(v, "image_url", 9) == 0) ||
                    (len == 11 && memcmp(v, "input_image", 11) == 0))
                    *features |= CAP_VISION;
            } else if (json_reader_skip(r)) {
                return -1;
            }
        }
    }
}

/* A non-empty array (tools, images) is a feature in use. */
static int read_nonempty(struct json_reader *r, bool *nonempty)
{
    if (json_reader_enter(r, JSON_K_ARRAY)) return -1;
    bool more;
    *nonempty = false;
    while (1) {
        if (json_reader_element(r, &more)) return -1;
        if (!more) return 0;
        *nonempty = true;
        if (json_reader_skip(r)) return -1;
    }
}

/* "response_format": a structured format unless its type is "text". */
static int read_response_format(struct json_reader *r, unsigned *features)
{
    if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
    bool more;
    char name[8];
    size_t nl;
    while (1) {
        if (json_reader_member(r, name, sizeof name, &nl, &more)) return -1;
        if (!more) return 0;
        enum json_kind kind;
        if (nl == 4 && memcmp(name, "type", 4) == 0 && json_reader_peek(r, &kind) == 0 &&
            kind == JSON_K_STRING) {
            char v[8];
            size_t len = 0;
            if (json_reader_string(r, v, sizeof v, &len)) return -1;
            if (!(len == 4 && memcmp(v, "text", 4) == 0)) *features |= CAP_RESPONSE_FORMAT;
        } else if (json_reader_skip(r)) {
            return -1;
        }
    }
}

/* One message: an object with a "role" that is one of roles[] (the last "role" wins). Image
 * parts and Ollama's "images" mark the request as using vision. */
static int read_message(struct json_reader *r, int *why, unsigned *features)
{
    enum json_kind kind;
    if (json_reader_peek(r, &kind)) return -1;
    if (kind != JSON_K_OBJECT) {
        *why = BAD_NOT_OBJECT;
        return json_reader_skip(r);
    }
    if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
    int role = BAD_ROLE;
    bool more;
    char name[8];
    size_t name_len;
    while (1) {
        if (json_reader_member(r, name, sizeof name, &name_len, &more)) return -1;
        if (!more) break;
        if (name_len == 4 && memcmp(name, "role", 4) == 0) {
            if (json_reader_peek(r, &kind)) return -1;
            if (kind != JSON_K_STRING) {
                role = BAD_ROLE;
                if (json_reader_skip(r)) return -1;
                continue;
            }
            char v[12];
            size_t len = 0;
            if (json_reader_string(r, v, sizeof v, &len)) return -1;
            role = len == 0 ? BAD_ROLE : BAD_ROLE_VALUE;
            if (len <= sizeof v &&
                lookup(roles, (int)(sizeof roles / sizeof roles[0]), v, len) >= 0)
                role = 0;
        } else if (name_len == 7 && memcmp(name, "content", 7) == 0 &&
                   json_reader_peek(r, &kind) == 0 && kind == JSON_K_ARRAY) {
            if (read_content_parts(r, features)) return -1;
        } else if (name_len == 6 && memcmp(name, "images", 6) == 0 &&
                   json_reader_peek(r, &kind) == 0 && kind == JSON_K_ARRAY) {
            bool any;
            if (read_nonempty(r, &any)) return -1;
            if (any) *features |= CAP_VISION;
        } else if (json_reader_skip(r)) {
            return -1;
        }
    }
    *why = role;
    return 0;
}

/* Counts an array's elements; for messages, checks each one. */
static int read_array(struct json_reader *r, bool messages, struct facts *f, size_t *n)
{
    if (json_reader_enter(r, JSON_K_ARRAY)) return -1;
    *n = 0;
    if (messages) f->messages_bad_at = NO_BAD;
    bool more;
    while (1) {
        if (json_reader_element(r, &more)) return -1;
        if (!more) return 0;
        if (messages) {
            int why = 0;
            if (read_message(r, &why, &f->features)) return -1;
            if (why && f->messages_bad_at == NO_BAD) {
                f->messages_bad_at = (long)*n;
                f->messages_bad_why = why;
            }
        } else if (json_reader_skip(r)) {
            return -1;
        }
        (*n)++;
    }
}

/* The Ollama "options" object: the kind and number text of each option in opt_names. */
static int read_options(struct json_reader *r, struct facts *f)
{
    for (int o = 0; o < O_COUNT; o++) f->opt_kind[o] = -1;
    if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
    char name[24];
    size_t name_len;
    bool more;
    while (1) {
        if (json_reader_member(r, name, sizeof name, &name_len, &more)) return -1;
        if (!more) return 0;
        int o = name_len < sizeof name ? lookup(opt_names, O_COUNT, name, name_len) : -1;
        enum json_kind kind;
        if (json_reader_peek(r, &kind)) return -1;
        if (o >= 0) f->opt_kind[o] = (int)kind;
        int rc = o >= 0 && (kind == JSON_K_INT || kind == JSON_K_DOUBLE)
                     ? read_number(r, &f->opt_num[o])
                     : json_reader_skip(r);
        if (rc) return -1;
    }
}

/* Reads the whole body once, checking its JSON and keeping what the rules need. Returns 0,
 * 1 when it is valid JSON but not an object, or -1 on bad JSON (err filled). */
static int read_facts(struct strv body, struct facts *f, struct gw_error *err)
{
    for (int k = 0; k < K_COUNT; k++) f->kind[k] = -1;
    for (int o = 0; o < O_COUNT; o++) f->opt_kind[o] = -1;
    f->features = 0;
    if (body.len == 0) return gw_error_set(err, GW_E_PARSE, "empty body, expected JSON");
    struct json_reader r;
    json_reader_init(&r, body.p, body.len, VALIDATE_MAX_DEPTH, err);
    enum json_kind kind;
    if (json_reader_peek(&r, &kind)) return -1;
    if (kind != JSON_K_OBJECT) return json_reader_skip(&r) || json_reader_end(&r) ? -1 : 1;
    if (json_reader_enter(&r, JSON_K_OBJECT)) return -1;
    char name[32];
    size_t name_len;
    bool more;
    while (1) {
        if (json_reader_member(&r, name, sizeof name, &name_len, &more)) return -1;
        if (!more) break;
        int k = name_len < sizeof name ? lookup(key_names, K_COUNT, name, name_len) : -1;
        if (json_reader_peek(&r, &kind)) return -1;
        if (k >= 0) f->kind[k] = (int)kind;
        int rc;
        if (k < 0) {
            rc = json_reader_skip(&r);
        } else if (k == K_MODEL && kind == JSON_K_STRING) {
            rc = json_reader_string(&r, f->model, sizeof f->model, &f->model_len);
        } else if (k == K_STREAM && kind == JSON_K_BOOL) {
            rc = json_reader_bool(&r, &f->stream);
        } else if (k == K_MESSAGES && kind == JSON_K_ARRAY) {
            rc = read_array(&r, true, f, &f->messages_n);
        } else if (k == K_INPUT && kind == JSON_K_ARRAY) {
            rc = read_array(&r, false, f, &f->input_n);
        } else if (k == K_OPTIONS && kind == JSON_K_OBJECT) {
            rc = read_options(&r, f);
        } else if ((k == K_TOOLS || k == K_FUNCTIONS || k == K_IMAGES) && kind == JSON_K_ARRAY) {
            bool any = false;
            rc = read_nonempty(&r, &any);
            if (any) f->features |= k == K_IMAGES ? CAP_VISION : CAP_TOOLS;
        } else if (k == K_RESPONSE_FORMAT && kind == JSON_K_OBJECT) {
            rc = read_response_format(&r, &f->features);
        } else if (k == K_FORMAT && (kind == JSON_K_STRING || kind == JSON_K_OBJECT)) {
            f->features |= CAP_RESPONSE_FORMAT; /* Ollama: "json" or a JSON schema */
            rc = json_reader_skip(&r);
        } else if (kind == JSON_K_INT || kind == JSON_K_DOUBLE) {
            rc = read_number(&r, &f->num[k]);
        } else {
            rc = json_reader_skip(&r);
        }
        if (rc) return -1;
    }
    return json_reader_end(&r) ? -1 : 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (unsigned)((c | 0x20) - 'a' + 10);
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* True when a \u escape names half of a UTF-16 surrogate pair without its other half. The
 * reader decodes such an escape to U+FFFD; a strict parser (serde_json, Go's encoder on the
 * way back, the engines' tokenizers) refuses or mangles it, so the gateway refuses it first.
 * Only for a body the reader accepted: there a backslash occurs only inside strings and
 * starts a 2- or 6-byte escape, so a scan from one backslash to the next is exact. memchr
 * skips the plain text fast. */
static bool has_lone_surrogate(struct strv body)
{
    const char *p = body.p, *end = body.p + body.len;
    while (p < end && (p = memchr(p, '\\', (size_t)(end - p)))) {
        unsigned cp, lo;
        if (end - p < 6 || p[1] != 'u' || hex4(p + 2, &cp)) {
            p += 2;
            continue;
        }
        p += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return true;
        if (cp < 0xD800 || cp > 0xDBFF) continue;
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xDC00 ||
            lo > 0xDFFF)
            return true;
        p += 6;
    }
    return false;
}

static bool is_number(int k)
{
    return k == JSON_K_INT || k == JSON_K_DOUBLE;
}

static bool is_str_or_array(int k)
{
    return k == JSON_K_STRING || k == JSON_K_ARRAY;
}

/* Absent or null passes; otherwise the kind must be one of what `ok` takes. */
static int want(const struct facts *f, enum key key, bool ok, const char *what,
                struct validate_error *e)
{
    int k = f->kind[key];
    if (k < 0 || k == JSON_K_NULL || ok) return 0;
    char msg[200];
    snprintf(msg, sizeof msg, "Invalid type for '%s': expected %s, but got %s instead.",
             key_names[key], what, kind_name(k));
    return bad(e, "invalid_type", key_names[key], msg);
}

/* A number against its range, worded and coded as OpenAI does ("Invalid 'n': integer above
 * maximum value. Expected a value <= 128, but got 129 instead."). kind is the JSON kind
 * (absent, null and non-numbers pass: their type is checked elsewhere). */
static int in_range(const struct range *rg, const char *param, int kind, struct strv text,
                    bool integral_doubles, struct validate_error *e)
{
    if (!is_number(kind)) return 0;
    char msg[240];
    if (rg->integer && kind == JSON_K_DOUBLE && !integral_doubles) {
        snprintf(msg, sizeof msg,
                 "Invalid type for '%s': expected an integer, but got a decimal instead.", param);
        return bad(e, "invalid_type", param, msg);
    }
    double v = num_value(text);
    if (rg->integer && isfinite(v) && v != floor(v)) {
        snprintf(msg, sizeof msg,
                 "Invalid type for '%s': expected an integer, but got a decimal instead.", param);
        return bad(e, "invalid_type", param, msg);
    }
    /* strtod gives ±inf past double's range: that is past any bound too */
    bool low = v < rg->min || (isinf(v) && v < 0);
    bool high = v > rg->max || (isinf(v) && v > 0);
    if (!low && !high) return 0;
    int shown = text.len > 24 ? 24 : (int)text.len;
    const char *more = text.len > 24 ? "..." : "";
    double bound = low ? rg->min : rg->max;
    char limit[40];
    if (isinf(bound))
        snprintf(limit, sizeof limit, "a finite value");
    else
        snprintf(limit, sizeof limit, "a value %s %.17g", low ? ">=" : "<=", bound);
    snprintf(msg, sizeof msg, "Invalid '%s': %s %s value. Expected %s, but got %.*s%s instead.",
             param, rg->integer ? "integer" : "decimal", low ? "below minimum" : "above maximum",
             limit, shown, text.p, more);
    const char *code = rg->integer ? (low ? "integer_below_min_value" : "integer_above_max_value")
                                   : (low ? "decimal_below_min_value" : "decimal_above_max_value");
    return bad(e, code, param, msg);
}

static int check_model(const struct facts *f, struct validated *out, struct validate_error *e)
{
    int mk = f->kind[K_MODEL];
    if (mk < 0) return bad(e, "missing_parameter", "model", "'model' is required");
    if (mk != JSON_K_STRING) return bad(e, "invalid_type", "model", "'model' must be a string");
    if (f->model_len == 0) return bad(e, "invalid_value", "model", "'model' must not be empty");
    if (f->model_len > VALIDATE_MAX_MODEL_BYTES) {
        char msg[120];
        snprintf(msg, sizeof msg, "'model' is longer than %d bytes", VALIDATE_MAX_MODEL_BYTES);
        return bad(e, "invalid_value", "model", msg);
    }
    /* A model name is an identifier: no C0 control byte (an escaped NUL once cut the name
     * where C code reads it, routing "m\u0000x" as "m"), no DEL, no C1 control (U+0080 to
     * U+009F, encoded C2 80 to C2 9F). The reader already refused bad UTF-8. */
    for (size_t i = 0; i < f->model_len; i++) {
        unsigned char c = (unsigned char)f->model[i];
        bool c1 = c == 0xC2 && i + 1 < f->model_len && (unsigned char)f->model[i + 1] < 0xA0;
        if (c < 0x20 || c == 0x7F || c1)
            return bad(e, "invalid_value", "model", "'model' must not contain control characters");
    }
    memcpy(out->model, f->model, f->model_len);
    out->model[f->model_len] = '\0';
    out->model_len = f->model_len;
    return 0;
}

static int check_messages(const struct facts *f, bool required_nonempty, struct validate_error *e)
{
    int k = f->kind[K_MESSAGES];
    if (k < 0) {
        if (!required_nonempty) return 0;
        return bad(e, "missing_parameter", "messages", "'messages' is required");
    }
    if (k != JSON_K_ARRAY) return bad(e, "invalid_type", "messages", "'messages' must be an array");
    if (f->messages_n == 0 && required_nonempty)
        return bad(e, "invalid_value", "messages", "'messages' must not be empty");
    if (f->messages_bad_at == NO_BAD) return 0;
    char param[64];
    if (f->messages_bad_why == BAD_NOT_OBJECT) {
        snprintf(param, sizeof param, "messages[%ld]", f->messages_bad_at);
        return bad(e, "invalid_type", param, "each message must be an object");
    }
    snprintf(param, sizeof param, "messages[%ld].role", f->messages_bad_at);
    if (f->messages_bad_why == BAD_ROLE_VALUE)
        return bad(e, "invalid_value", param,
                   "Invalid value for 'role'. Supported values are: 'system', 'assistant', "
                   "'user', 'function', 'tool', and 'developer'.");
    return bad(e, "invalid_value", param, "each message needs a string 'role'");
}

/* The Ollama options: typed (a number where Ollama wants one) and in range. */
static int check_options(const struct facts *f, struct validate_error *e)
{
    if (f->kind[K_OPTIONS] != JSON_K_OBJECT) return 0;
    for (int o = 0; o < O_COUNT; o++) {
        int k = f->opt_kind[o];
        if (k < 0 || k == JSON_K_NULL) continue;
        char param[40];
        snprintf(param, sizeof param, "options.%s", opt_names[o]);
        if (!is_number(k)) {
            char msg[160];
            snprintf(msg, sizeof msg, "option \"%s\" must be %s, not %s", opt_names[o],
                     ollama_ranges[o].integer ? "an integer" : "a number", kind_name(k));
            return bad(e, "invalid_type", param, msg);
        }
        if (in_range(&ollama_ranges[o], param, k, f->opt_num[o], true, e)) return -1;
    }
    return 0;
}

static int check(enum api_kind kind, const struct facts *f, struct validated *out,
                 struct validate_error *e)
{
    if (check_model(f, out, e)) return -1;
    if (want(f, K_STREAM, f->kind[K_STREAM] == JSON_K_BOOL, "a boolean", e)) return -1;
    bool stream = f->kind[K_STREAM] == JSON_K_BOOL && f->stream;

    switch (kind) {
    case API_CHAT:
        out->cap = CAP_CHAT;
        if (check_messages(f, true, e)) return -1;
        break;
    case API_COMPLETIONS:
        out->cap = CAP_COMPLETIONS;
        if (f->kind[K_PROMPT] < 0 || f->kind[K_PROMPT] == JSON_K_NULL)
            return bad(e, "missing_parameter", "prompt", "'prompt' is required");
        if (want(f, K_PROMPT, is_str_or_array(f->kind[K_PROMPT]), "a string or an array", e))
            return -1;
        break;
    case API_EMBEDDINGS:
    case API_OLLAMA_EMBED:
        out->cap = CAP_EMBEDDINGS;
        if (f->kind[K_INPUT] < 0 || f->kind[K_INPUT] == JSON_K_NULL)
            return bad(e, "missing_parameter", "input", "'input' is required");
        if (want(f, K_INPUT, is_str_or_array(f->kind[K_INPUT]), "a string or an array", e))
            return -1;
        if (f->kind[K_INPUT] == JSON_K_ARRAY && f->input_n == 0)
            return bad(e, "invalid_value", "input", "'input' must not be empty");
        stream = false;
        break;
    case API_OLLAMA_EMBEDDINGS_LEGACY:
        /* The older Ollama endpoint embeds one "prompt" string and has no "input". */
        out->cap = CAP_EMBEDDINGS;
        if (f->kind[K_PROMPT] < 0 || f->kind[K_PROMPT] == JSON_K_NULL)
            return bad(e, "missing_parameter", "prompt", "'prompt' is required");
        if (want(f, K_PROMPT, f->kind[K_PROMPT] == JSON_K_STRING, "a string", e)) return -1;
        stream = false;
        break;
    case API_OLLAMA_CHAT:
        out->cap = CAP_CHAT;
        if (check_messages(f, false, e)) return -1;
        break;
    case API_OLLAMA_GENERATE:
        out->cap = CAP_COMPLETIONS;
        if (want(f, K_PROMPT, f->kind[K_PROMPT] == JSON_K_STRING, "a string", e)) return -1;
        break;
    case API_ANTHROPIC_MESSAGES:
    case API_ANTHROPIC_COUNT_TOKENS:
        /* Anthropic: messages required and not empty, max_tokens required (not for counting) */
        out->cap = CAP_CHAT;
        if (check_messages(f, true, e)) return -1;
        if (kind == API_ANTHROPIC_COUNT_TOKENS) {
            stream = false;
            break;
        }
        if (f->kind[K_MAX_TOKENS] < 0 || f->kind[K_MAX_TOKENS] == JSON_K_NULL)
            return bad(e, "missing_parameter", "max_tokens", "max_tokens: Field required");
        if (in_range(&openai_ranges[4], "max_tokens", f->kind[K_MAX_TOKENS], f->num[K_MAX_TOKENS],
                     false, e))
            return -1;
        break;
    default:
        return bad(e, "invalid_value", NULL, "unknown API");
    }
    out->ollama = kind >= API_OLLAMA_CHAT && kind <= API_OLLAMA_EMBEDDINGS_LEGACY;
    out->anthropic = kind == API_ANTHROPIC_MESSAGES || kind == API_ANTHROPIC_COUNT_TOKENS;
    out->features = out->cap == CAP_EMBEDDINGS ? 0 : f->features;
    /* Ollama streams unless told otherwise (its embeddings never stream). */
    if ((kind == API_OLLAMA_CHAT || kind == API_OLLAMA_GENERATE) && f->kind[K_STREAM] < 0)
        stream = true;
    out->stream = stream;

    for (int k = K_TEMPERATURE; k <= K_PRESENCE_PENALTY; k++)
        if (want(f, (enum key)k, is_number(f->kind[k]), "a number", e)) return -1;
    for (int k = K_MAX_TOKENS; k <= K_SEED; k++)
        if (want(f, (enum key)k, f->kind[k] == JSON_K_INT, "an integer", e)) return -1;
    if (kind == API_CHAT || kind == API_COMPLETIONS) {
        for (size_t i = 0; i < sizeof openai_ranges / sizeof openai_ranges[0]; i++) {
            const struct range *rg = &openai_ranges[i];
            if (in_range(rg, key_names[rg->key], f->kind[rg->key], f->num[rg->key], false, e))
                return -1;
        }
    }
    if (want(f, K_STREAM_OPTIONS, f->kind[K_STREAM_OPTIONS] == JSON_K_OBJECT, "an object", e))
        return -1;
    if (want(f, K_OPTIONS, f->kind[K_OPTIONS] == JSON_K_OBJECT, "an object", e)) return -1;
    if (out->ollama && check_options(f, e)) return -1;
    if (want(f, K_STOP, is_str_or_array(f->kind[K_STOP]), "a string or an array", e)) return -1;
    if (want(f, K_RESPONSE_FORMAT, f->kind[K_RESPONSE_FORMAT] == JSON_K_OBJECT, "an object", e))
        return -1;
    if (want(f, K_KEEP_ALIVE,
             f->kind[K_KEEP_ALIVE] == JSON_K_STRING || is_number(f->kind[K_KEEP_ALIVE]),
             "a string or a number", e))
        return -1;
    return 0;
}

int validate_request(enum api_kind kind, struct strv body, struct validated *out,
                     struct validate_error *verr)
{
    memset(out, 0, sizeof *out);
    memset(verr, 0, sizeof *verr);
    struct gw_error err = {0};
    struct facts f;
    int rc = read_facts(body, &f, &err);
    if (rc < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "could not parse the request body as JSON: %s", err.msg);
        return bad(verr, "invalid_json", NULL, msg);
    }
    if (rc > 0) return bad(verr, "invalid_json", NULL, "the request body must be a JSON object");
    if (has_lone_surrogate(body))
        return bad(verr, "invalid_json", NULL,
                   "could not parse the request body as JSON: a \\u escape names a lone UTF-16 "
                   "surrogate");
    return check(kind, &f, out, verr);
}

/* ---- Content-Type --------------------------------------------------------------------- */

static struct strv trim_ows(struct strv s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) s.p++, s.len--;
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t')) s.len--;
    return s;
}

/* The first `;`-separated piece of s (trimmed), and s advanced past it. */
static struct strv next_piece(struct strv *s)
{
    size_t i = 0;
    bool quoted = false;
    for (; i < s->len && (quoted || s->p[i] != ';'); i++)
        if (s->p[i] == '"') quoted = !quoted;
    struct strv piece = trim_ows(strv_make(s->p, i));
    *s = i < s->len ? strv_make(s->p + i + 1, s->len - i - 1) : strv_make(s->p + s->len, 0);
    return piece;
}

int validate_content_type(struct strv content_type, struct validate_error *err)
{
    memset(err, 0, sizeof *err);
    struct strv rest = content_type.p ? content_type : strv_make("", 0);
    if (trim_ows(rest).len == 0) return 0; /* absent: the body is read as JSON */
    struct strv media = next_piece(&rest);
    char msg[200];
    if (!strv_eq_ci(media, STRV_LIT("application/json"))) {
        int shown = media.len > 60 ? 60 : (int)media.len;
        snprintf(msg, sizeof msg,
                 "Content-Type must be application/json, not '%.*s' (with curl, add -H "
                 "'Content-Type: application/json')",
                 shown, media.p);
        return bad(err, "invalid_content_type", NULL, msg);
    }
    while (rest.len) {
        struct strv param = next_piece(&rest);
        long eq = strv_index(param, '=');
        if (param.len == 0 || eq < 0) continue;
        struct strv name = trim_ows(strv_make(param.p, (size_t)eq));
        struct strv value = trim_ows(strv_make(param.p + eq + 1, param.len - (size_t)eq - 1));
        if (value.len >= 2 && value.p[0] == '"' && value.p[value.len - 1] == '"')
            value = strv_make(value.p + 1, value.len - 2);
        if (strv_eq_ci(name, STRV_LIT("charset")) && !strv_eq_ci(value, STRV_LIT("utf-8")) &&
            !strv_eq_ci(value, STRV_LIT("utf8"))) {
            int shown = value.len > 40 ? 40 : (int)value.len;
            snprintf(msg, sizeof msg, "the request body must be UTF-8 JSON, not charset '%.*s'",
                     shown, value.p);
            return bad(err, "invalid_content_type", NULL, msg);
        }
    }
    return 0;
}
