/* engine_ctx — the engines' context answers (engine_ctx.h). Strict JSON through
 * json_parse_strict; nothing kept from the tree. Any thread. */
#include "proto/engine_ctx.h"

#include <json-c/json.h>
#include <string.h>

#include "base/json.h"
#include "base/strv.h"

enum { ENGINE_CTX_MAX_DEPTH = 32 };

static struct json_object *parse_object(const char *p, size_t len, const char *what,
                                        struct gw_error *err)
{
    struct json_object *root = json_parse_strict(p ? p : "", len, ENGINE_CTX_MAX_DEPTH, err);
    if (root && !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        (void)gw_error_set(err, GW_E_INVALID, "%s: not a JSON object", what);
        return NULL;
    }
    return root;
}

int engine_ctx_llamacpp_props(const char *p, size_t len, int64_t *n_ctx, struct gw_error *err)
{
    struct json_object *root = parse_object(p, len, "/props", err);
    if (!root) return err && err->code ? err->code : GW_E_PARSE;
    int64_t v = 0;
    struct json_object *dgs = NULL;
    int rc = json_get_obj(root, "default_generation_settings", &dgs) == 0
                 ? json_get_int(dgs, "n_ctx", &v)
                 : GW_E_NOTFOUND;
    if (rc) rc = json_get_int(root, "n_ctx", &v);
    json_object_put(root);
    if (rc || v <= 0) return gw_error_set(err, GW_E_NOTFOUND, "/props: no n_ctx");
    *n_ctx = v;
    return 0;
}

/* "num_ctx 8192" on a line of Ollama's "parameters" text (name, spaces, value). */
static int64_t num_ctx_param(struct strv s)
{
    while (s.len) {
        long nl = strv_index(s, '\n');
        struct strv line = strv_trim(nl < 0 ? s : strv_sub(s, 0, (size_t)nl));
        s = nl < 0 ? STRV_NULL : strv_sub(s, (size_t)nl + 1, s.len);
        if (!strv_starts_with(line, STRV_LIT("num_ctx")) || line.len <= 7 ||
            (line.p[7] != ' ' && line.p[7] != '\t'))
            continue;
        uint64_t v;
        if (strv_to_u64(strv_trim(strv_sub(line, 7, line.len)), &v) == 0 && v > 0 && v < INT64_MAX)
            return (int64_t)v;
    }
    return 0;
}

int engine_ctx_ollama_show(const char *p, size_t len, int64_t *ctx, struct gw_error *err)
{
    struct json_object *root = parse_object(p, len, "/api/show", err);
    if (!root) return err && err->code ? err->code : GW_E_PARSE;
    int64_t v = 0;
    struct strv params;
    if (json_get_str(root, "parameters", &params) == 0) v = num_ctx_param(params);
    struct json_object *info = NULL;
    if (v <= 0 && json_get_obj(root, "model_info", &info) == 0) {
        json_object_object_foreach(info, key, val)
        {
            size_t kl = strlen(key), sl = sizeof ".context_length" - 1;
            if (kl > sl && !strcmp(key + kl - sl, ".context_length") &&
                json_object_is_type(val, json_type_int) && json_object_get_int64(val) > 0) {
                v = json_object_get_int64(val);
                break;
            }
        }
    }
    json_object_put(root);
    if (v <= 0) return gw_error_set(err, GW_E_NOTFOUND, "/api/show: no context length");
    *ctx = v;
    return 0;
}

int engine_ctx_ollama_show_body(struct buf *out, const char *model)
{
    int rc = buf_append_cstr(out, "{\"model\":");
    if (!rc) rc = json_append_str(out, model, strlen(model));
    if (!rc) rc = buf_append_cstr(out, "}");
    return rc;
}
