/* validate — per-API field rules over one strict pass of base/json's reader: no tree and no
 * allocation (this runs for every request; a json-c parse was a tenth of the gateway's CPU in
 * the non-stream benchmark). Nothing here touches the network. */
#include "gw/validate.h"

#include <stdio.h>
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
                                               "keep_alive"};

enum { NO_BAD = -1, BAD_NOT_OBJECT = 1, BAD_ROLE = 2 };

struct facts {
    int kind[K_COUNT]; /* enum json_kind, or -1 */
    char model[256];
    size_t model_len;
    bool stream;
    size_t messages_n, input_n;
    long messages_bad_at; /* first element breaking the rules, or -1 */
    int messages_bad_why;
};

static const char *kind_name(int k)
{
    switch (k) {
    case JSON_K_NULL:
        return "null";
    case JSON_K_BOOL:
        return "a boolean";
    case JSON_K_INT:
    case JSON_K_DOUBLE:
        return "a number";
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

static int lookup(const char *name, size_t len)
{
    for (int k = 0; k < K_COUNT; k++)
        if (strlen(key_names[k]) == len && memcmp(key_names[k], name, len) == 0) return k;
    return -1;
}

/* One message: an object with a non-empty string "role" (the last "role" wins). */
static int read_message(struct json_reader *r, int *why)
{
    enum json_kind kind;
    if (json_reader_peek(r, &kind)) return -1;
    if (kind != JSON_K_OBJECT) {
        *why = BAD_NOT_OBJECT;
        return json_reader_skip(r);
    }
    if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
    bool role_ok = false, more;
    char name[8];
    size_t name_len;
    while (1) {
        if (json_reader_member(r, name, sizeof name, &name_len, &more)) return -1;
        if (!more) break;
        if (name_len == 4 && memcmp(name, "role", 4) == 0) {
            if (json_reader_peek(r, &kind)) return -1;
            size_t len = 0;
            if (kind == JSON_K_STRING) {
                if (json_reader_string(r, NULL, 0, &len)) return -1;
            } else if (json_reader_skip(r)) {
                return -1;
            }
            role_ok = kind == JSON_K_STRING && len > 0;
        } else if (json_reader_skip(r)) {
            return -1;
        }
    }
    *why = role_ok ? 0 : BAD_ROLE;
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
            if (read_message(r, &why)) return -1;
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

/* Reads the whole body once, checking its JSON and keeping what the rules need. Returns 0,
 * 1 when it is valid JSON but not an object, or -1 on bad JSON (err filled). */
static int read_facts(struct strv body, struct facts *f, struct gw_error *err)
{
    for (int k = 0; k < K_COUNT; k++) f->kind[k] = -1;
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
        int k = name_len < sizeof name ? lookup(name, name_len) : -1;
        if (json_reader_peek(&r, &kind)) return -1;
        if (k >= 0) f->kind[k] = (int)kind;
        int rc;
        if (k == K_MODEL && kind == JSON_K_STRING) {
            rc = json_reader_string(&r, f->model, sizeof f->model, &f->model_len);
        } else if (k == K_STREAM && kind == JSON_K_BOOL) {
            rc = json_reader_bool(&r, &f->stream);
        } else if (k == K_MESSAGES && kind == JSON_K_ARRAY) {
            rc = read_array(&r, true, f, &f->messages_n);
        } else if (k == K_INPUT && kind == JSON_K_ARRAY) {
            rc = read_array(&r, false, f, &f->input_n);
        } else {
            rc = json_reader_skip(&r);
        }
        if (rc) return -1;
    }
    return json_reader_end(&r) ? -1 : 0;
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
    snprintf(msg, sizeof msg, "'%s' must be %s, not %s", key_names[key], what, kind_name(k));
    return bad(e, "invalid_type", key_names[key], msg);
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
    return bad(e, "invalid_value", param, "each message needs a string 'role'");
}

static int check(enum api_kind kind, const struct facts *f, struct validated *out,
                 struct validate_error *e)
{
    int mk = f->kind[K_MODEL];
    if (mk < 0) return bad(e, "missing_parameter", "model", "'model' is required");
    if (mk != JSON_K_STRING) return bad(e, "invalid_type", "model", "'model' must be a string");
    if (f->model_len == 0) return bad(e, "invalid_value", "model", "'model' must not be empty");
    if (f->model_len >= sizeof out->model)
        return bad(e, "invalid_value", "model", "'model' is too long");
    memcpy(out->model, f->model, f->model_len);
    out->model[f->model_len] = '\0';

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
    case API_OLLAMA_CHAT:
        out->cap = CAP_CHAT;
        if (check_messages(f, false, e)) return -1;
        break;
    case API_OLLAMA_GENERATE:
        out->cap = CAP_COMPLETIONS;
        if (want(f, K_PROMPT, f->kind[K_PROMPT] == JSON_K_STRING, "a string", e)) return -1;
        break;
    }
    out->ollama =
        kind == API_OLLAMA_CHAT || kind == API_OLLAMA_GENERATE || kind == API_OLLAMA_EMBED;
    /* Ollama streams unless told otherwise. */
    if (out->ollama && kind != API_OLLAMA_EMBED && f->kind[K_STREAM] < 0) stream = true;
    out->stream = stream;

    for (int k = K_TEMPERATURE; k <= K_PRESENCE_PENALTY; k++)
        if (want(f, (enum key)k, is_number(f->kind[k]), "a number", e)) return -1;
    for (int k = K_MAX_TOKENS; k <= K_SEED; k++)
        if (want(f, (enum key)k, f->kind[k] == JSON_K_INT, "an integer", e)) return -1;
    if (want(f, K_STREAM_OPTIONS, f->kind[K_STREAM_OPTIONS] == JSON_K_OBJECT, "an object", e))
        return -1;
    if (want(f, K_OPTIONS, f->kind[K_OPTIONS] == JSON_K_OBJECT, "an object", e)) return -1;
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
    return check(kind, &f, out, verr);
}
