/* validate — per-API field rules over one strict parse. The parse is the only allocation and
 * is released before returning; nothing here touches the network. */
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

static const char *type_name(struct json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a boolean";
    case json_type_double:
    case json_type_int:
        return "a number";
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    case json_type_string:
        return "a string";
    }
    return "unknown";
}

static int want_type(struct json_object *root, const char *key, bool (*ok)(struct json_object *),
                     const char *want, struct validate_error *e)
{
    struct json_object *v;
    if (!json_object_object_get_ex(root, key, &v) || v == NULL) return 0; /* absent/null: ok */
    if (ok(v)) return 0;
    char msg[200];
    snprintf(msg, sizeof msg, "'%s' must be %s, not %s", key, want, type_name(v));
    return bad(e, "invalid_type", key, msg);
}

static bool is_number(struct json_object *v)
{
    return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}
static bool is_int(struct json_object *v)
{
    return json_object_is_type(v, json_type_int);
}
static bool is_bool(struct json_object *v)
{
    return json_object_is_type(v, json_type_boolean);
}
static bool is_string(struct json_object *v)
{
    return json_object_is_type(v, json_type_string);
}
static bool is_object(struct json_object *v)
{
    return json_object_is_type(v, json_type_object);
}
static bool is_str_or_array(struct json_object *v)
{
    return json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_array);
}
static bool is_str_or_number(struct json_object *v)
{
    return is_string(v) || is_number(v);
}

static int check_messages(struct json_object *root, bool required_nonempty,
                          struct validate_error *e)
{
    struct json_object *msgs;
    int rc = json_get_arr(root, "messages", &msgs);
    if (rc == GW_E_NOTFOUND) {
        if (!required_nonempty) return 0;
        return bad(e, "missing_parameter", "messages", "'messages' is required");
    }
    if (rc) return bad(e, "invalid_type", "messages", "'messages' must be an array");
    size_t n = json_object_array_length(msgs);
    if (n == 0 && required_nonempty)
        return bad(e, "invalid_value", "messages", "'messages' must not be empty");
    for (size_t i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i);
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!m || !json_object_is_type(m, json_type_object))
            return bad(e, "invalid_type", param, "each message must be an object");
        struct strv role;
        if (json_get_str(m, "role", &role) || role.len == 0) {
            snprintf(param, sizeof param, "messages[%zu].role", i);
            return bad(e, "invalid_value", param, "each message needs a string 'role'");
        }
    }
    return 0;
}

static int check(enum api_kind kind, struct json_object *root, struct validated *out,
                 struct validate_error *e)
{
    if (!json_object_is_type(root, json_type_object))
        return bad(e, "invalid_json", NULL, "the request body must be a JSON object");
    struct strv model;
    int rc = json_get_str(root, "model", &model);
    if (rc == GW_E_NOTFOUND) return bad(e, "missing_parameter", "model", "'model' is required");
    if (rc) return bad(e, "invalid_type", "model", "'model' must be a string");
    if (model.len == 0) return bad(e, "invalid_value", "model", "'model' must not be empty");
    if (model.len >= sizeof out->model)
        return bad(e, "invalid_value", "model", "'model' is too long");
    memcpy(out->model, model.p, model.len);
    out->model[model.len] = '\0';

    if (want_type(root, "stream", is_bool, "a boolean", e)) return -1;
    bool stream = false;
    struct json_object *sv;
    if (json_object_object_get_ex(root, "stream", &sv) && sv) stream = json_object_get_boolean(sv);

    switch (kind) {
    case API_CHAT:
        out->cap = CAP_CHAT;
        if (check_messages(root, true, e)) return -1;
        break;
    case API_COMPLETIONS: {
        out->cap = CAP_COMPLETIONS;
        struct json_object *p;
        if (!json_object_object_get_ex(root, "prompt", &p) || !p)
            return bad(e, "missing_parameter", "prompt", "'prompt' is required");
        if (want_type(root, "prompt", is_str_or_array, "a string or an array", e)) return -1;
        break;
    }
    case API_EMBEDDINGS:
    case API_OLLAMA_EMBED: {
        out->cap = CAP_EMBEDDINGS;
        struct json_object *in;
        if (!json_object_object_get_ex(root, "input", &in) || !in)
            return bad(e, "missing_parameter", "input", "'input' is required");
        if (want_type(root, "input", is_str_or_array, "a string or an array", e)) return -1;
        if (json_object_is_type(in, json_type_array) && json_object_array_length(in) == 0)
            return bad(e, "invalid_value", "input", "'input' must not be empty");
        stream = false;
        break;
    }
    case API_OLLAMA_CHAT:
        out->cap = CAP_CHAT;
        if (check_messages(root, false, e)) return -1;
        break;
    case API_OLLAMA_GENERATE:
        out->cap = CAP_COMPLETIONS;
        if (want_type(root, "prompt", is_string, "a string", e)) return -1;
        break;
    }
    out->ollama =
        kind == API_OLLAMA_CHAT || kind == API_OLLAMA_GENERATE || kind == API_OLLAMA_EMBED;
    /* Ollama streams unless told otherwise. */
    if (out->ollama && kind != API_OLLAMA_EMBED && !json_object_object_get_ex(root, "stream", &sv))
        stream = true;
    out->stream = stream;

    static const char *const numbers[] = {"temperature", "top_p", "frequency_penalty",
                                          "presence_penalty"};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (want_type(root, numbers[i], is_number, "a number", e)) return -1;
    static const char *const ints[] = {"max_tokens", "max_completion_tokens", "n", "seed"};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (want_type(root, ints[i], is_int, "an integer", e)) return -1;
    if (want_type(root, "stream_options", is_object, "an object", e)) return -1;
    if (want_type(root, "options", is_object, "an object", e)) return -1;
    if (want_type(root, "stop", is_str_or_array, "a string or an array", e)) return -1;
    if (want_type(root, "response_format", is_object, "an object", e)) return -1;
    if (want_type(root, "keep_alive", is_str_or_number, "a string or a number", e)) return -1;
    return 0;
}

int validate_request(enum api_kind kind, struct strv body, struct validated *out,
                     struct validate_error *verr)
{
    memset(out, 0, sizeof *out);
    memset(verr, 0, sizeof *verr);
    struct gw_error err = {0};
    struct json_object *root = json_parse_strict(body.p, body.len, VALIDATE_MAX_DEPTH, &err);
    if (!root) {
        char msg[300];
        snprintf(msg, sizeof msg, "could not parse the request body as JSON: %s", err.msg);
        return bad(verr, "invalid_json", NULL, msg);
    }
    int rc = check(kind, root, out, verr);
    json_object_put(root);
    return rc;
}
