/* translate — Ollama and Anthropic clients over OpenAI-compatible nodes (docs/translate.md).
 * Requests are parsed with json-c (strict, depth-capped) and rebuilt as chat completions or
 * embeddings; answers are read back the same way. Streams are split into SSE events by the
 * shared splitter, so the output is the same whatever the chunk boundaries, and only the
 * node's `[DONE]` event completes a stream (DESIGN §4). The per-token path builds no tree:
 * a chunk is read with the allocation-free json_reader, or, when it differs from the last one
 * only inside delta.content (the envelope memo), by reading that string alone; each event is
 * written into the output with one reservation. The loop thread only. */
#include "gw/translate.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "base/mem.h"

enum {
    XLATE_MAX_BODY = 256 * 1024 * 1024,
    XLATE_MAX_EVENT = 4 * 1024 * 1024,
    XLATE_MAX_DEPTH = 64,
};

/* ---- small helpers ------------------------------------------------------------------- */

static struct json_object *member(struct json_object *o, const char *k)
{
    struct json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object)) return NULL;
    if (!json_object_object_get_ex(o, k, &v)) return NULL;
    return v;
}

static const char *mstr(struct json_object *o, const char *k)
{
    struct json_object *v = member(o, k);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool is_num(struct json_object *v)
{
    return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double));
}

/* Adds a borrowed value to a new tree (the reference count keeps both trees right). */
static void add_ref(struct json_object *to, const char *k, struct json_object *v)
{
    json_object_object_add(to, k, json_object_get(v));
}

static int append_json(struct buf *out, struct json_object *o)
{
    size_t n;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    return buf_append(out, s, n);
}

/* Inline, so a literal's length is known at compile time. */
static inline int app(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* The per-token writers reserve an event's bytes once and fill them in place. */
static char *put(char *d, const char *s, size_t n)
{
    memcpy(d, s, n);
    return d + n;
}

static int app_str(struct buf *b, const char *s)
{
    return json_append_str(b, s ? s : "", s ? strlen(s) : 0);
}

static int app_i64(struct buf *b, int64_t v)
{
    if (v < 0) {
        int rc = app(b, "-");
        return rc ? rc : buf_append_u64(b, (uint64_t)(-(v + 1)) + 1);
    }
    return buf_append_u64(b, (uint64_t)v);
}

enum { CREATED_AT_MAX = 64 };

/* RFC 3339 UTC with nanoseconds, as Ollama writes created_at, quoted, at d (CREATED_AT_MAX
 * bytes of room); returns its length. The date part is formatted once a second (this runs
 * once per streamed token). */
static size_t put_created_at(char *d)
{
    static __thread time_t cached_sec = -1;
    static __thread char date[40];
    static __thread size_t date_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        date_len = strftime(date, sizeof date, "\"%Y-%m-%dT%H:%M:%S.", &tm);
        cached_sec = ts.tv_sec;
    }
    memcpy(d, date, date_len);
    long ns = ts.tv_nsec;
    for (int i = 8; i >= 0; i--, ns /= 10) d[date_len + (size_t)i] = (char)('0' + ns % 10);
    memcpy(d + date_len + 9, "Z\"", 2);
    return date_len + 11;
}

static int app_created_at(struct buf *b)
{
    char s[CREATED_AT_MAX];
    return buf_append(b, s, put_created_at(s));
}

enum xlate_mode xlate_mode_for(enum api_kind kind, enum node_kind node)
{
    bool ollama_node = node == NODE_KIND_OLLAMA;
    switch (kind) {
    case API_OLLAMA_CHAT:
        return ollama_node ? XLATE_NONE : XLATE_OLLAMA_CHAT;
    case API_OLLAMA_GENERATE:
        return ollama_node ? XLATE_NONE : XLATE_OLLAMA_GENERATE;
    case API_OLLAMA_EMBED:
        return ollama_node ? XLATE_NONE : XLATE_OLLAMA_EMBED;
    case API_OLLAMA_EMBEDDINGS_LEGACY:
        return ollama_node ? XLATE_NONE : XLATE_OLLAMA_EMBEDDINGS;
    case API_ANTHROPIC_MESSAGES:
        return XLATE_ANTHROPIC;
    case API_ANTHROPIC_COUNT_TOKENS:
        return XLATE_ANTHROPIC_COUNT;
    default:
        return XLATE_NONE;
    }
}

bool xlate_any_node(enum api_kind kind)
{
    return kind >= API_OLLAMA_CHAT && kind < API_KIND_COUNT;
}

const char *xlate_content_type(const struct xlate *x)
{
    if (!x->stream) return "application/json";
    return x->mode == XLATE_ANTHROPIC ? "text/event-stream" : "application/x-ndjson";
}

void xlate_free(struct xlate *x)
{
    buf_free(&x->up_body);
    buf_free(&x->out);
    buf_free(&x->scratch);
    buf_free(&x->head);
    buf_free(&x->memo);
    if (x->sse_used) sse_free(&x->sse);
    for (size_t i = 0; i < x->n_tools; i++) buf_free(&x->tools[i].args);
    x->sse_used = false;
    x->n_tools = 0;
    x->mode = XLATE_NONE;
}

/* ---- requests ------------------------------------------------------------------------ */

/* Sampling knobs the OpenAI API lacks but llama-server and vLLM take. */
static bool takes_extra_sampling(enum node_kind k)
{
    return k == NODE_KIND_LLAMACPP || k == NODE_KIND_VLLM || k == NODE_KIND_OLLAMA;
}

/* Ollama's options (and "format") on a chat completions request. */
static void ollama_options(struct json_object *in, struct json_object *req, enum node_kind node)
{
    struct json_object *opt = member(in, "options");
    struct json_object *v;
    if ((v = member(opt, "num_predict")) && is_num(v) && json_object_get_int64(v) > 0)
        json_object_object_add(req, "max_tokens", json_object_new_int64(json_object_get_int64(v)));
    static const char *const same[] = {
        "temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if ((v = member(opt, same[i])) && !json_object_is_type(v, json_type_null))
            add_ref(req, same[i], v);
    if (takes_extra_sampling(node)) {
        if ((v = member(opt, "top_k")) && is_num(v)) add_ref(req, "top_k", v);
        if ((v = member(opt, "min_p")) && is_num(v)) add_ref(req, "min_p", v);
        if ((v = member(opt, "repeat_penalty")) && is_num(v))
            add_ref(req, node == NODE_KIND_VLLM ? "repetition_penalty" : "repeat_penalty", v);
    }
    struct json_object *fmt = member(in, "format");
    if (fmt && json_object_is_type(fmt, json_type_string) &&
        strcmp(json_object_get_string(fmt), "json") == 0) {
        struct json_object *rf = json_object_new_object();
        json_object_object_add(rf, "type", json_object_new_string("json_object"));
        json_object_object_add(req, "response_format", rf);
    } else if (fmt && json_object_is_type(fmt, json_type_object)) {
        struct json_object *rf = json_object_new_object(), *js = json_object_new_object();
        json_object_object_add(rf, "type", json_object_new_string("json_schema"));
        json_object_object_add(js, "name", json_object_new_string("response"));
        add_ref(js, "schema", fmt);
        json_object_object_add(rf, "json_schema", js);
        json_object_object_add(req, "response_format", rf);
    }
}

/* Text (and Ollama's base64 images) as OpenAI content: a string, or parts with images. */
static struct json_object *ollama_content(const char *text, struct json_object *images)
{
    size_t n = images && json_object_is_type(images, json_type_array)
                   ? json_object_array_length(images)
                   : 0;
    if (!n) return json_object_new_string(text ? text : "");
    struct json_object *parts = json_object_new_array();
    if (text && text[0]) {
        struct json_object *t = json_object_new_object();
        json_object_object_add(t, "type", json_object_new_string("text"));
        json_object_object_add(t, "text", json_object_new_string(text));
        json_object_array_add(parts, t);
    }
    for (size_t i = 0; i < n; i++) {
        const char *b64 = json_object_get_string(json_object_array_get_idx(images, i));
        struct buf url;
        buf_init(&url, XLATE_MAX_BODY);
        if (app(&url, "data:image/jpeg;base64,") || app(&url, b64 ? b64 : "")) {
            buf_free(&url);
            continue;
        }
        struct json_object *p = json_object_new_object(), *iu = json_object_new_object();
        json_object_object_add(p, "type", json_object_new_string("image_url"));
        json_object_object_add(iu, "url", json_object_new_string_len(url.p, (int)url.len));
        json_object_object_add(p, "image_url", iu);
        json_object_array_add(parts, p);
        buf_free(&url);
    }
    return parts;
}

/* Ollama tool calls ({"function":{"name","arguments":{…}}}) as OpenAI's (arguments a string). */
static struct json_object *ollama_tool_calls(struct json_object *calls, int *next_id)
{
    struct json_object *out = json_object_new_array();
    size_t n = json_object_array_length(calls);
    for (size_t i = 0; i < n; i++) {
        struct json_object *fn = member(json_object_array_get_idx(calls, i), "function");
        struct json_object *c = json_object_new_object(), *f = json_object_new_object();
        char id[32];
        snprintf(id, sizeof id, "call_%d", (*next_id)++);
        json_object_object_add(c, "id", json_object_new_string(id));
        json_object_object_add(c, "type", json_object_new_string("function"));
        const char *name = mstr(fn, "name");
        json_object_object_add(f, "name", json_object_new_string(name ? name : ""));
        struct json_object *args = member(fn, "arguments");
        json_object_object_add(
            f, "arguments",
            json_object_new_string(
                args ? json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE)
                     : "{}"));
        json_object_object_add(c, "function", f);
        json_object_array_add(out, c);
    }
    return out;
}

static int ollama_chat_request(struct json_object *in, struct json_object *req, bool generate,
                               char *why, size_t why_cap)
{
    struct json_object *msgs = json_object_new_array();
    json_object_object_add(req, "messages", msgs);
    if (generate) {
        const char *system = mstr(in, "system");
        if (system && system[0]) {
            struct json_object *m = json_object_new_object();
            json_object_object_add(m, "role", json_object_new_string("system"));
            json_object_object_add(m, "content", json_object_new_string(system));
            json_object_array_add(msgs, m);
        }
        struct json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string("user"));
        json_object_object_add(m, "content",
                               ollama_content(mstr(in, "prompt"), member(in, "images")));
        json_object_array_add(msgs, m);
        return 0;
    }
    struct json_object *in_msgs = member(in, "messages");
    size_t n = in_msgs && json_object_is_type(in_msgs, json_type_array)
                   ? json_object_array_length(in_msgs)
                   : 0;
    int next_id = 0, tool_id = 0;
    for (size_t i = 0; i < n; i++) {
        struct json_object *im = json_object_array_get_idx(in_msgs, i);
        const char *role = mstr(im, "role");
        struct json_object *content = member(im, "content");
        if (content && !json_object_is_type(content, json_type_string) &&
            !json_object_is_type(content, json_type_null)) {
            snprintf(why, why_cap, "messages[%zu].content must be a string", i);
            return -1;
        }
        struct json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string(role ? role : "user"));
        json_object_object_add(m, "content",
                               ollama_content(mstr(im, "content"), member(im, "images")));
        struct json_object *calls = member(im, "tool_calls");
        if (calls && json_object_is_type(calls, json_type_array) &&
            json_object_array_length(calls) > 0) {
            tool_id = next_id;
            json_object_object_add(m, "tool_calls", ollama_tool_calls(calls, &next_id));
        }
        if (role && strcmp(role, "tool") == 0) {
            /* Ollama names the tool, OpenAI the call: answers follow their calls in order */
            char id[32];
            snprintf(id, sizeof id, "call_%d", tool_id < next_id ? tool_id++ : tool_id);
            json_object_object_add(m, "tool_call_id", json_object_new_string(id));
        }
        json_object_array_add(msgs, m);
    }
    struct json_object *tools = member(in, "tools");
    if (tools && json_object_is_type(tools, json_type_array) && json_object_array_length(tools))
        add_ref(req, "tools", tools);
    return 0;
}

/* Anthropic content blocks of one text-like value ("system", a tool_result's content). */
static void blocks_text(struct json_object *c, struct buf *out)
{
    if (!c) return;
    if (json_object_is_type(c, json_type_string)) {
        (void)app(out, json_object_get_string(c));
        return;
    }
    if (!json_object_is_type(c, json_type_array)) return;
    size_t n = json_object_array_length(c);
    for (size_t i = 0; i < n; i++) {
        const char *t = mstr(json_object_array_get_idx(c, i), "text");
        if (!t) continue;
        if (out->len) (void)app(out, "\n");
        (void)app(out, t);
    }
}

static struct json_object *image_part(struct json_object *block)
{
    struct json_object *src = member(block, "source");
    const char *type = mstr(src, "type");
    struct buf url;
    buf_init(&url, XLATE_MAX_BODY);
    if (type && strcmp(type, "base64") == 0) {
        const char *mt = mstr(src, "media_type");
        if (app(&url, "data:") || app(&url, mt ? mt : "image/png") || app(&url, ";base64,") ||
            app(&url, mstr(src, "data") ? mstr(src, "data") : "")) {
            buf_free(&url);
            return NULL;
        }
    } else if (type && strcmp(type, "url") == 0 && mstr(src, "url")) {
        if (app(&url, mstr(src, "url"))) {
            buf_free(&url);
            return NULL;
        }
    } else {
        return NULL;
    }
    struct json_object *p = json_object_new_object(), *iu = json_object_new_object();
    json_object_object_add(p, "type", json_object_new_string("image_url"));
    json_object_object_add(iu, "url", json_object_new_string_len(url.p, (int)url.len));
    json_object_object_add(p, "image_url", iu);
    buf_free(&url);
    return p;
}

/* One Anthropic message: tool results become "tool" messages (before the rest of the user's
 * turn, as chat completions want them right after the assistant's calls), tool_use blocks the
 * assistant's tool_calls, text and images the content. */
static int anthropic_message(struct json_object *im, size_t i, struct json_object *msgs, char *why,
                             size_t why_cap)
{
    const char *role = mstr(im, "role");
    if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)) {
        snprintf(why, why_cap, "messages.%zu.role: Input should be 'user' or 'assistant'", i);
        return -1;
    }
    struct json_object *c = member(im, "content");
    if (c && json_object_is_type(c, json_type_string)) {
        struct json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string(role));
        add_ref(m, "content", c);
        json_object_array_add(msgs, m);
        return 0;
    }
    if (!c || !json_object_is_type(c, json_type_array)) {
        snprintf(why, why_cap, "messages.%zu.content: Input should be a string or a list", i);
        return -1;
    }
    struct json_object *parts = json_object_new_array();
    struct json_object *calls = json_object_new_array();
    bool has_image = false;
    size_t n = json_object_array_length(c);
    for (size_t k = 0; k < n; k++) {
        struct json_object *b = json_object_array_get_idx(c, k);
        const char *type = mstr(b, "type");
        if (!type) continue;
        if (strcmp(type, "text") == 0) {
            struct json_object *p = json_object_new_object();
            json_object_object_add(p, "type", json_object_new_string("text"));
            json_object_object_add(p, "text",
                                   json_object_new_string(mstr(b, "text") ? mstr(b, "text") : ""));
            json_object_array_add(parts, p);
        } else if (strcmp(type, "image") == 0) {
            struct json_object *p = image_part(b);
            if (p) {
                json_object_array_add(parts, p);
                has_image = true;
            }
        } else if (strcmp(type, "tool_use") == 0) {
            struct json_object *call = json_object_new_object(), *f = json_object_new_object();
            json_object_object_add(call, "id",
                                   json_object_new_string(mstr(b, "id") ? mstr(b, "id") : ""));
            json_object_object_add(call, "type", json_object_new_string("function"));
            json_object_object_add(f, "name",
                                   json_object_new_string(mstr(b, "name") ? mstr(b, "name") : ""));
            struct json_object *input = member(b, "input");
            json_object_object_add(
                f, "arguments",
                json_object_new_string(
                    input ? json_object_to_json_string_ext(
                                input, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                          : "{}"));
            json_object_object_add(call, "function", f);
            json_object_array_add(calls, call);
        } else if (strcmp(type, "tool_result") == 0) {
            struct buf t;
            buf_init(&t, XLATE_MAX_BODY);
            blocks_text(member(b, "content"), &t);
            struct json_object *m = json_object_new_object();
            json_object_object_add(m, "role", json_object_new_string("tool"));
            json_object_object_add(
                m, "tool_call_id",
                json_object_new_string(mstr(b, "tool_use_id") ? mstr(b, "tool_use_id") : ""));
            json_object_object_add(m, "content",
                                   json_object_new_string_len(t.p ? t.p : "", (int)t.len));
            json_object_array_add(msgs, m);
            buf_free(&t);
        }
        /* thinking, redacted_thinking, documents: nothing a chat completion can carry */
    }
    size_t n_parts = json_object_array_length(parts);
    size_t n_calls = json_object_array_length(calls);
    if (n_parts || n_calls) {
        struct json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string(role));
        if (!has_image) {
            /* plain text as a string: every OpenAI-compatible engine takes that */
            struct buf t;
            buf_init(&t, XLATE_MAX_BODY);
            blocks_text(parts, &t);
            json_object_object_add(m, "content",
                                   n_parts || !n_calls
                                       ? json_object_new_string_len(t.p ? t.p : "", (int)t.len)
                                       : NULL);
            buf_free(&t);
            json_object_put(parts);
        } else {
            json_object_object_add(m, "content", parts);
        }
        if (n_calls)
            json_object_object_add(m, "tool_calls", calls);
        else
            json_object_put(calls);
        json_object_array_add(msgs, m);
    } else {
        json_object_put(parts);
        json_object_put(calls);
    }
    return 0;
}

static int anthropic_request(struct json_object *in, struct json_object *req, enum node_kind node,
                             char *why, size_t why_cap)
{
    struct json_object *msgs = json_object_new_array();
    json_object_object_add(req, "messages", msgs);
    struct json_object *sys = member(in, "system");
    if (sys && !json_object_is_type(sys, json_type_null)) {
        struct buf t;
        buf_init(&t, XLATE_MAX_BODY);
        blocks_text(sys, &t);
        struct json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string("system"));
        json_object_object_add(m, "content",
                               json_object_new_string_len(t.p ? t.p : "", (int)t.len));
        json_object_array_add(msgs, m);
        buf_free(&t);
    }
    struct json_object *in_msgs = member(in, "messages");
    size_t n = in_msgs && json_object_is_type(in_msgs, json_type_array)
                   ? json_object_array_length(in_msgs)
                   : 0;
    for (size_t i = 0; i < n; i++)
        if (anthropic_message(json_object_array_get_idx(in_msgs, i), i, msgs, why, why_cap))
            return -1;
    struct json_object *v;
    if ((v = member(in, "max_tokens")) && is_num(v)) add_ref(req, "max_tokens", v);
    if ((v = member(in, "temperature")) && is_num(v)) add_ref(req, "temperature", v);
    if ((v = member(in, "top_p")) && is_num(v)) add_ref(req, "top_p", v);
    if ((v = member(in, "top_k")) && is_num(v) && takes_extra_sampling(node))
        add_ref(req, "top_k", v);
    if ((v = member(in, "stop_sequences")) && json_object_is_type(v, json_type_array) &&
        json_object_array_length(v))
        add_ref(req, "stop", v);
    const char *user = mstr(member(in, "metadata"), "user_id");
    if (user) json_object_object_add(req, "user", json_object_new_string(user));
    struct json_object *tools = member(in, "tools");
    size_t nt =
        tools && json_object_is_type(tools, json_type_array) ? json_object_array_length(tools) : 0;
    if (nt) {
        struct json_object *out = json_object_new_array();
        for (size_t i = 0; i < nt; i++) {
            struct json_object *t = json_object_array_get_idx(tools, i);
            const char *name = mstr(t, "name");
            if (!name) continue; /* server tools (web search …) have no chat completion form */
            struct json_object *o = json_object_new_object(), *f = json_object_new_object();
            json_object_object_add(o, "type", json_object_new_string("function"));
            json_object_object_add(f, "name", json_object_new_string(name));
            if (mstr(t, "description"))
                json_object_object_add(f, "description",
                                       json_object_new_string(mstr(t, "description")));
            if ((v = member(t, "input_schema"))) add_ref(f, "parameters", v);
            json_object_object_add(o, "function", f);
            json_object_array_add(out, o);
        }
        json_object_object_add(req, "tools", out);
    }
    struct json_object *tc = member(in, "tool_choice");
    const char *tct = mstr(tc, "type");
    if (tct && nt) {
        if (strcmp(tct, "auto") == 0)
            json_object_object_add(req, "tool_choice", json_object_new_string("auto"));
        else if (strcmp(tct, "any") == 0)
            json_object_object_add(req, "tool_choice", json_object_new_string("required"));
        else if (strcmp(tct, "none") == 0)
            json_object_object_add(req, "tool_choice", json_object_new_string("none"));
        else if (strcmp(tct, "tool") == 0 && mstr(tc, "name")) {
            struct json_object *o = json_object_new_object(), *f = json_object_new_object();
            json_object_object_add(o, "type", json_object_new_string("function"));
            json_object_object_add(f, "name", json_object_new_string(mstr(tc, "name")));
            json_object_object_add(o, "function", f);
            json_object_object_add(req, "tool_choice", o);
        }
        struct json_object *dp = member(tc, "disable_parallel_tool_use");
        if (dp && json_object_get_boolean(dp))
            json_object_object_add(req, "parallel_tool_calls", json_object_new_boolean(0));
    }
    return 0;
}

/* The text count_tokens counts: system, every text block, tool results, tool definitions. */
static void count_text(struct json_object *in, struct buf *t)
{
    blocks_text(member(in, "system"), t);
    struct json_object *msgs = member(in, "messages");
    size_t n =
        msgs && json_object_is_type(msgs, json_type_array) ? json_object_array_length(msgs) : 0;
    for (size_t i = 0; i < n; i++) {
        struct json_object *c = member(json_object_array_get_idx(msgs, i), "content");
        if (t->len) (void)app(t, "\n");
        blocks_text(c, t);
        size_t nb = c && json_object_is_type(c, json_type_array) ? json_object_array_length(c) : 0;
        for (size_t k = 0; k < nb; k++) {
            struct json_object *b = json_object_array_get_idx(c, k);
            blocks_text(member(b, "content"), t);
            if (member(b, "input")) (void)append_json(t, member(b, "input"));
        }
    }
    struct json_object *tools = member(in, "tools");
    if (tools) (void)append_json(t, tools);
}

int xlate_prepare(struct xlate *x, enum xlate_mode mode, enum node_kind node, struct strv body,
                  const char *route_model, const char *client_model, bool stream, uint64_t start_us,
                  struct buf *local, char *why, size_t why_cap)
{
    xlate_free(x);
    memset(x, 0, sizeof *x);
    x->mode = mode;
    x->node_kind = node;
    x->stream = stream;
    x->start_us = start_us;
    x->open_block = -1;
    x->prompt_tokens = x->completion_tokens = -1;
    x->prompt_ms = x->predicted_ms = -1;
    snprintf(x->model, sizeof x->model, "%s", client_model);
    snprintf(x->msg_id, sizeof x->msg_id, "msg_drover%016llx",
             (unsigned long long)(start_us * 2654435761u));
    buf_init(&x->up_body, XLATE_MAX_BODY);
    buf_init(&x->out, XLATE_MAX_BODY);
    buf_init(&x->scratch, XLATE_SCRATCH_BYTES);
    buf_init(&x->head, XLATE_MAX_EVENT);
    buf_init(&x->memo, XLATE_MEMO_BYTES);
    struct json_object *in = json_parse_strict(body.p, body.len, XLATE_MAX_DEPTH, NULL);
    if (!in || !json_object_is_type(in, json_type_object)) {
        if (in) json_object_put(in);
        snprintf(why, why_cap, "the request body is not a JSON object");
        return -1;
    }
    struct json_object *req = json_object_new_object();
    json_object_object_add(req, "model", json_object_new_string(route_model));
    int rc = 0;
    switch (mode) {
    case XLATE_OLLAMA_CHAT:
    case XLATE_OLLAMA_GENERATE: {
        bool gen = mode == XLATE_OLLAMA_GENERATE;
        struct json_object *m = member(in, "messages");
        if ((gen && (!mstr(in, "prompt") || !mstr(in, "prompt")[0]) && !member(in, "images")) ||
            (!gen && (!m || json_object_array_length(m) == 0))) {
            /* Ollama loads the model and answers at once; an OpenAI node has nothing to load */
            bool unload = member(in, "keep_alive") && is_num(member(in, "keep_alive")) &&
                          json_object_get_double(member(in, "keep_alive")) == 0;
            (void)app(local, "{\"model\":");
            (void)app_str(local, client_model);
            (void)app(local, ",\"created_at\":");
            (void)app_created_at(local);
            (void)app(local, gen ? ",\"response\":\"\""
                                 : ",\"message\":{\"role\":\"assistant\",\"content\":\"\"}");
            (void)app(local, ",\"done\":true,\"done_reason\":");
            (void)app(local, unload ? "\"unload\"}" : "\"load\"}");
            rc = 1;
            break;
        }
        x->target = "/v1/chat/completions";
        rc = ollama_chat_request(in, req, gen, why, why_cap);
        ollama_options(in, req, node);
        break;
    }
    case XLATE_OLLAMA_EMBED:
    case XLATE_OLLAMA_EMBEDDINGS: {
        x->target = "/v1/embeddings";
        add_ref(req, "input", member(in, mode == XLATE_OLLAMA_EMBED ? "input" : "prompt"));
        struct json_object *d = member(in, "dimensions");
        if (d && is_num(d)) add_ref(req, "dimensions", d);
        stream = x->stream = false;
        break;
    }
    case XLATE_ANTHROPIC:
        x->target = "/v1/chat/completions";
        rc = anthropic_request(in, req, node, why, why_cap);
        break;
    case XLATE_ANTHROPIC_COUNT: {
        struct buf t;
        buf_init(&t, XLATE_MAX_BODY);
        count_text(in, &t);
        stream = x->stream = false;
        if (node == NODE_KIND_LLAMACPP || node == NODE_KIND_VLLM) {
            x->target = "/tokenize";
            if (node == NODE_KIND_LLAMACPP) {
                json_object_object_del(req, "model");
                json_object_object_add(req, "add_special", json_object_new_boolean(1));
            }
            /* llama-server's /tokenize reads "content"; vLLM's reads "prompt" */
            json_object_object_add(req, node == NODE_KIND_LLAMACPP ? "content" : "prompt",
                                   json_object_new_string_len(t.p ? t.p : "", (int)t.len));
        } else {
            /* The node cannot tokenize: an estimate (4 bytes a token), marked as one. */
            rc = app(local, "{\"input_tokens\":");
            if (!rc) rc = buf_append_u64(local, (t.len + 3) / 4);
            if (!rc) rc = app(local, ",\"estimated\":true}");
            if (rc) snprintf(why, why_cap, "the estimate does not fit");
            rc = rc ? -1 : 1;
        }
        buf_free(&t);
        break;
    }
    default:
        snprintf(why, why_cap, "no translation");
        rc = -1;
    }
    if (rc == 0 && stream) {
        json_object_object_add(req, "stream", json_object_new_boolean(1));
        struct json_object *so = json_object_new_object();
        json_object_object_add(so, "include_usage", json_object_new_boolean(1));
        json_object_object_add(req, "stream_options", so);
    } else if (rc == 0 && (mode == XLATE_OLLAMA_CHAT || mode == XLATE_OLLAMA_GENERATE ||
                           mode == XLATE_ANTHROPIC)) {
        json_object_object_add(req, "stream", json_object_new_boolean(0));
    }
    if (rc == 0 && append_json(&x->up_body, req)) {
        snprintf(why, why_cap, "the translated request is too large");
        rc = -1;
    }
    json_object_put(req);
    json_object_put(in);
    return rc;
}

/* ---- answers: shared pieces ---------------------------------------------------------- */

static void read_usage(struct xlate *x, struct json_object *root)
{
    struct json_object *u = member(root, "usage");
    struct json_object *v;
    if ((v = member(u, "prompt_tokens")) && is_num(v)) x->prompt_tokens = json_object_get_int64(v);
    if ((v = member(u, "completion_tokens")) && is_num(v))
        x->completion_tokens = json_object_get_int64(v);
    struct json_object *t = member(root, "timings"); /* llama-server */
    if ((v = member(t, "prompt_ms")) && is_num(v)) x->prompt_ms = json_object_get_double(v);
    if ((v = member(t, "predicted_ms")) && is_num(v)) x->predicted_ms = json_object_get_double(v);
    if ((v = member(t, "prompt_n")) && is_num(v) && x->prompt_tokens < 0)
        x->prompt_tokens = json_object_get_int64(v);
    if ((v = member(t, "predicted_n")) && is_num(v) && x->completion_tokens < 0)
        x->completion_tokens = json_object_get_int64(v);
}

static const char *ollama_done_reason(const char *finish)
{
    return finish && strcmp(finish, "length") == 0 ? "length" : "stop";
}

static const char *anthropic_stop_reason(const char *finish)
{
    if (!finish || !finish[0]) return "end_turn";
    if (strcmp(finish, "length") == 0) return "max_tokens";
    if (strcmp(finish, "tool_calls") == 0 || strcmp(finish, "function_call") == 0)
        return "tool_use";
    return "end_turn";
}

/* Ollama's closing fields: done_reason, counts, durations (ns). Timings from the node when
 * it gave them (llama-server), else from the gateway's clock. */
static int ollama_tail(struct xlate *x, struct buf *o, uint64_t now_us)
{
    uint64_t total_ns = (now_us > x->start_us ? now_us - x->start_us : 0) * 1000u;
    uint64_t first = x->first_us ? x->first_us : now_us;
    uint64_t prompt_ns = x->prompt_ms >= 0
                             ? (uint64_t)(x->prompt_ms * 1e6)
                             : (first > x->start_us ? first - x->start_us : 0) * 1000u;
    uint64_t eval_ns = x->predicted_ms >= 0 ? (uint64_t)(x->predicted_ms * 1e6)
                                            : (now_us > first ? now_us - first : 0) * 1000u;
    int64_t evals = x->completion_tokens >= 0 ? x->completion_tokens : x->deltas;
    int rc = app(o, ",\"done\":true,\"done_reason\":");
    if (!rc) rc = app_str(o, ollama_done_reason(x->finish));
    if (!rc) rc = app(o, ",\"total_duration\":");
    if (!rc) rc = buf_append_u64(o, total_ns);
    if (!rc) rc = app(o, ",\"load_duration\":0,\"prompt_eval_count\":");
    if (!rc) rc = app_i64(o, x->prompt_tokens >= 0 ? x->prompt_tokens : 0);
    if (!rc) rc = app(o, ",\"prompt_eval_duration\":");
    if (!rc) rc = buf_append_u64(o, prompt_ns);
    if (!rc) rc = app(o, ",\"eval_count\":");
    if (!rc) rc = app_i64(o, evals);
    if (!rc) rc = app(o, ",\"eval_duration\":");
    if (!rc) rc = buf_append_u64(o, eval_ns);
    if (!rc) rc = app(o, "}");
    return rc;
}

/* The start every Ollama line shares, up to created_at's value, built at the first use. */
static int ollama_head_ready(struct xlate *x)
{
    if (x->head.len) return 0;
    int rc = app(&x->head, "{\"model\":");
    if (!rc) rc = app_str(&x->head, x->model);
    if (!rc) rc = app(&x->head, ",\"created_at\":");
    if (rc) buf_reset(&x->head);
    return rc;
}

static int ollama_head(struct xlate *x, struct buf *o)
{
    int rc = ollama_head_ready(x);
    if (!rc) rc = buf_append_strv(o, buf_view(&x->head));
    if (!rc) rc = app_created_at(o);
    return rc;
}

/* Ollama's tool calls from the arguments' text (an object; a string that is not JSON is kept
 * as a string under "arguments" so nothing is lost). */
static int ollama_tool_calls_out(struct buf *o, struct xlate_tool *t, size_t n)
{
    int rc = app(o, ",\"tool_calls\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        if (i) rc = app(o, ",");
        if (!rc) rc = app(o, "{\"function\":{\"name\":");
        if (!rc) rc = app_str(o, t[i].name);
        if (!rc) rc = app(o, ",\"arguments\":");
        struct json_object *a =
            t[i].args.len ? json_parse_strict(t[i].args.p, t[i].args.len, XLATE_MAX_DEPTH, NULL)
                          : json_object_new_object();
        if (!rc) rc = a ? append_json(o, a) : json_append_str(o, t[i].args.p, t[i].args.len);
        if (a) json_object_put(a);
        if (!rc) rc = app(o, "}}");
    }
    if (!rc) rc = app(o, "]");
    return rc;
}

static void tool_calls_in(struct xlate *x, struct json_object *calls, bool stream);

/* ---- buffered answers ---------------------------------------------------------------- */

static int body_ollama_chat(struct xlate *x, struct json_object *root, uint64_t now_us,
                            struct buf *o)
{
    struct json_object *ch = json_object_array_get_idx(member(root, "choices"), 0);
    struct json_object *msg = member(ch, "message");
    if (!msg) return -1;
    const char *fr = mstr(ch, "finish_reason");
    snprintf(x->finish, sizeof x->finish, "%s", fr ? fr : "stop");
    read_usage(x, root);
    struct json_object *calls = member(msg, "tool_calls");
    if (calls && json_object_is_type(calls, json_type_array)) tool_calls_in(x, calls, false);
    const char *content = mstr(msg, "content");
    const char *thinking = mstr(msg, "reasoning_content");
    int rc = ollama_head(x, o);
    if (x->mode == XLATE_OLLAMA_GENERATE) {
        if (!rc) rc = app(o, ",\"response\":");
        if (!rc) rc = app_str(o, content);
        if (!rc && thinking) rc = app(o, ",\"thinking\":");
        if (!rc && thinking) rc = app_str(o, thinking);
    } else {
        if (!rc) rc = app(o, ",\"message\":{\"role\":\"assistant\",\"content\":");
        if (!rc) rc = app_str(o, content);
        if (!rc && thinking) rc = app(o, ",\"thinking\":");
        if (!rc && thinking) rc = app_str(o, thinking);
        if (!rc && x->n_tools) rc = ollama_tool_calls_out(o, x->tools, x->n_tools);
        if (!rc) rc = app(o, "}");
    }
    if (!rc) rc = ollama_tail(x, o, now_us);
    return rc;
}

static int body_ollama_embed(struct xlate *x, struct json_object *root, uint64_t now_us,
                             struct buf *o)
{
    struct json_object *data = member(root, "data");
    if (!data || !json_object_is_type(data, json_type_array)) return -1;
    read_usage(x, root);
    size_t n = json_object_array_length(data);
    int rc;
    if (x->mode == XLATE_OLLAMA_EMBEDDINGS) {
        struct json_object *e = member(json_object_array_get_idx(data, 0), "embedding");
        if (!e) return -1;
        rc = app(o, "{\"embedding\":");
        if (!rc) rc = append_json(o, e);
        if (!rc) rc = app(o, "}");
        return rc;
    }
    rc = app(o, "{\"model\":");
    if (!rc) rc = app_str(o, x->model);
    if (!rc) rc = app(o, ",\"embeddings\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        struct json_object *e = member(json_object_array_get_idx(data, i), "embedding");
        if (!e) return -1;
        if (i) rc = app(o, ",");
        if (!rc) rc = append_json(o, e);
    }
    if (!rc) rc = app(o, "],\"total_duration\":");
    if (!rc) rc = buf_append_u64(o, (now_us > x->start_us ? now_us - x->start_us : 0) * 1000u);
    if (!rc) rc = app(o, ",\"load_duration\":0,\"prompt_eval_count\":");
    if (!rc) rc = app_i64(o, x->prompt_tokens >= 0 ? x->prompt_tokens : 0);
    if (!rc) rc = app(o, "}");
    return rc;
}

static int anthropic_usage(struct xlate *x, struct buf *o)
{
    int rc = app(o, "\"usage\":{\"input_tokens\":");
    if (!rc) rc = app_i64(o, x->prompt_tokens >= 0 ? x->prompt_tokens : 0);
    if (!rc) rc = app(o, ",\"output_tokens\":");
    if (!rc) rc = app_i64(o, x->completion_tokens >= 0 ? x->completion_tokens : x->deltas);
    if (!rc) rc = app(o, "}");
    return rc;
}

/* A tool's arguments as Anthropic's "input" object ({} when the node sent nothing usable). */
static int tool_input(struct buf *o, const struct xlate_tool *t)
{
    struct json_object *a =
        t->args.len ? json_parse_strict(t->args.p, t->args.len, XLATE_MAX_DEPTH, NULL) : NULL;
    int rc = a && json_object_is_type(a, json_type_object) ? append_json(o, a) : app(o, "{}");
    if (a) json_object_put(a);
    return rc;
}

static int body_anthropic(struct xlate *x, struct json_object *root, struct buf *o)
{
    struct json_object *ch = json_object_array_get_idx(member(root, "choices"), 0);
    struct json_object *msg = member(ch, "message");
    if (!msg) return -1;
    const char *fr = mstr(ch, "finish_reason");
    snprintf(x->finish, sizeof x->finish, "%s", fr ? fr : "stop");
    read_usage(x, root);
    struct json_object *calls = member(msg, "tool_calls");
    if (calls && json_object_is_type(calls, json_type_array)) tool_calls_in(x, calls, false);
    const char *content = mstr(msg, "content");
    int rc = app(o, "{\"id\":");
    if (!rc) rc = app_str(o, x->msg_id);
    if (!rc) rc = app(o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    if (!rc) rc = app_str(o, x->model);
    if (!rc) rc = app(o, ",\"content\":[");
    bool any = false;
    if (!rc && content && content[0]) {
        rc = app(o, "{\"type\":\"text\",\"text\":");
        if (!rc) rc = app_str(o, content);
        if (!rc) rc = app(o, "}");
        any = true;
    }
    for (size_t i = 0; i < x->n_tools && !rc; i++) {
        if (any) rc = app(o, ",");
        any = true;
        if (!rc) rc = app(o, "{\"type\":\"tool_use\",\"id\":");
        if (!rc) rc = app_str(o, x->tools[i].id);
        if (!rc) rc = app(o, ",\"name\":");
        if (!rc) rc = app_str(o, x->tools[i].name);
        if (!rc) rc = app(o, ",\"input\":");
        if (!rc) rc = tool_input(o, &x->tools[i]);
        if (!rc) rc = app(o, "}");
    }
    if (!rc) rc = app(o, "],\"stop_reason\":");
    if (!rc) rc = app_str(o, x->n_tools ? "tool_use" : anthropic_stop_reason(x->finish));
    if (!rc) rc = app(o, ",\"stop_sequence\":null,");
    if (!rc) rc = anthropic_usage(x, o);
    if (!rc) rc = app(o, "}");
    return rc;
}

static int body_count(struct json_object *root, struct buf *o)
{
    struct json_object *t = member(root, "tokens");
    int64_t n;
    if (t && json_object_is_type(t, json_type_array))
        n = (int64_t)json_object_array_length(t);
    else if (member(root, "count") && is_num(member(root, "count")))
        n = json_object_get_int64(member(root, "count"));
    else
        return -1;
    int rc = app(o, "{\"input_tokens\":");
    if (!rc) rc = app_i64(o, n);
    if (!rc) rc = app(o, "}");
    return rc;
}

int xlate_body(struct xlate *x, const char *p, size_t len, uint64_t now_us, struct buf *out)
{
    struct json_object *root = json_parse_strict(p ? p : "", len, XLATE_MAX_DEPTH, NULL);
    if (!root) return -1;
    int rc;
    switch (x->mode) {
    case XLATE_OLLAMA_CHAT:
    case XLATE_OLLAMA_GENERATE:
        rc = body_ollama_chat(x, root, now_us, out);
        break;
    case XLATE_OLLAMA_EMBED:
    case XLATE_OLLAMA_EMBEDDINGS:
        rc = body_ollama_embed(x, root, now_us, out);
        break;
    case XLATE_ANTHROPIC:
        rc = body_anthropic(x, root, out);
        break;
    case XLATE_ANTHROPIC_COUNT:
        rc = body_count(root, out);
        break;
    default:
        rc = -1;
    }
    json_object_put(root);
    return rc;
}

/* ---- streams ------------------------------------------------------------------------- */

static struct xlate_tool *tool_at(struct xlate *x, size_t idx)
{
    while (x->n_tools <= idx && x->n_tools < XLATE_MAX_TOOLS) {
        struct xlate_tool *t = &x->tools[x->n_tools++];
        memset(t, 0, sizeof *t);
        buf_init(&t->args, XLATE_MAX_EVENT);
        t->block = -1;
    }
    return idx < x->n_tools ? &x->tools[idx] : NULL;
}

/* OpenAI tool calls (whole, or stream fragments keyed by "index") into x->tools. */
static void tool_calls_in(struct xlate *x, struct json_object *calls, bool stream)
{
    size_t n = json_object_array_length(calls);
    for (size_t i = 0; i < n; i++) {
        struct json_object *c = json_object_array_get_idx(calls, i);
        struct json_object *ix = member(c, "index");
        size_t idx = stream && ix && is_num(ix) ? (size_t)json_object_get_int64(ix) : i;
        struct xlate_tool *t = tool_at(x, idx);
        if (!t) continue;
        const char *id = mstr(c, "id");
        struct json_object *fn = member(c, "function");
        const char *name = mstr(fn, "name");
        const char *args = mstr(fn, "arguments");
        if (id && !t->id[0]) snprintf(t->id, sizeof t->id, "%s", id);
        if (!t->id[0]) snprintf(t->id, sizeof t->id, "toolu_drover_%zu", idx);
        if (name && !t->name[0]) snprintf(t->name, sizeof t->name, "%s", name);
        if (args) (void)app(&t->args, args);
    }
}

static int sse_event(struct buf *o, const char *name)
{
    int rc = app(o, "event: ");
    if (!rc) rc = app(o, name);
    if (!rc) rc = app(o, "\ndata: ");
    return rc;
}

static int close_block(struct xlate *x, struct buf *o)
{
    if (x->open_block < 0) return 0;
    int rc = sse_event(o, "content_block_stop");
    if (!rc) rc = app(o, "{\"type\":\"content_block_stop\",\"index\":");
    if (!rc) rc = buf_append_u64(o, (uint64_t)x->open_block);
    if (!rc) rc = app(o, "}\n\n");
    x->open_block = -1;
    return rc;
}

static int anthropic_start(struct xlate *x, struct buf *o)
{
    if (x->started) return 0;
    x->started = true;
    int rc = sse_event(o, "message_start");
    if (!rc) rc = app(o, "{\"type\":\"message_start\",\"message\":{\"id\":");
    if (!rc) rc = app_str(o, x->msg_id);
    if (!rc) rc = app(o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    if (!rc) rc = app_str(o, x->model);
    if (!rc)
        rc = app(o, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                    "\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n");
    if (!rc) rc = sse_event(o, "ping");
    if (!rc) rc = app(o, "{\"type\":\"ping\"}\n\n");
    return rc;
}

static int anthropic_text(struct xlate *x, struct buf *o, const char *text, size_t len)
{
    if (x->open_block < 0 || !x->open_is_text) {
        int rc = close_block(x, o);
        x->open_block = x->next_block++;
        x->open_is_text = true;
        if (!rc) rc = sse_event(o, "content_block_start");
        if (!rc) rc = app(o, "{\"type\":\"content_block_start\",\"index\":");
        if (!rc) rc = buf_append_u64(o, (uint64_t)x->open_block);
        if (!rc) rc = app(o, ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
        if (rc) return rc;
    }
    static const char pre[] = "event: content_block_delta\ndata: "
                              "{\"type\":\"content_block_delta\",\"index\":",
                      mid[] = ",\"delta\":{\"type\":\"text_delta\",\"text\":", post[] = "}}\n\n";
    size_t str_len = json_str_len(text, len);
    if (buf_grow(o, sizeof pre + 20 + sizeof mid + str_len + sizeof post)) return GW_E_LIMIT;
    char *d0 = o->p + o->len, *d = d0;
    d = put(d, pre, sizeof pre - 1);
    d += u64_to_dec(d, (uint64_t)x->open_block);
    d = put(d, mid, sizeof mid - 1);
    d += json_put_str(d, text, len);
    d = put(d, post, sizeof post - 1);
    buf_commit(o, (size_t)(d - d0));
    return 0;
}

/* Tool call fragments as tool_use blocks: a block opens when a call's id or name arrives,
 * its arguments stream as input_json_delta. */
static int anthropic_tools(struct xlate *x, struct buf *o, struct json_object *calls)
{
    int rc = 0;
    size_t n = json_object_array_length(calls);
    for (size_t i = 0; i < n && !rc; i++) {
        struct json_object *c = json_object_array_get_idx(calls, i);
        struct json_object *ix = member(c, "index");
        size_t idx = ix && is_num(ix) ? (size_t)json_object_get_int64(ix) : i;
        struct xlate_tool *t = tool_at(x, idx);
        if (!t) continue;
        struct json_object *fn = member(c, "function");
        const char *id = mstr(c, "id"), *name = mstr(fn, "name"), *args = mstr(fn, "arguments");
        if (id && !t->id[0]) snprintf(t->id, sizeof t->id, "%s", id);
        if (name && !t->name[0]) snprintf(t->name, sizeof t->name, "%s", name);
        if (t->block < 0) {
            if (!t->id[0]) snprintf(t->id, sizeof t->id, "toolu_drover_%zu", idx);
            rc = close_block(x, o);
            t->block = x->open_block = x->next_block++;
            x->open_is_text = false;
            if (!rc) rc = sse_event(o, "content_block_start");
            if (!rc) rc = app(o, "{\"type\":\"content_block_start\",\"index\":");
            if (!rc) rc = buf_append_u64(o, (uint64_t)t->block);
            if (!rc) rc = app(o, ",\"content_block\":{\"type\":\"tool_use\",\"id\":");
            if (!rc) rc = app_str(o, t->id);
            if (!rc) rc = app(o, ",\"name\":");
            if (!rc) rc = app_str(o, t->name);
            if (!rc) rc = app(o, ",\"input\":{}}}\n\n");
        }
        if (!rc && args && args[0] && t->block == x->open_block) {
            rc = sse_event(o, "content_block_delta");
            if (!rc) rc = app(o, "{\"type\":\"content_block_delta\",\"index\":");
            if (!rc) rc = buf_append_u64(o, (uint64_t)t->block);
            if (!rc) rc = app(o, ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
            if (!rc) rc = app_str(o, args);
            if (!rc) rc = app(o, "}}\n\n");
        }
    }
    return rc;
}

static int anthropic_end(struct xlate *x, struct buf *o)
{
    int rc = anthropic_start(x, o);
    if (!rc) rc = close_block(x, o);
    if (!rc) rc = sse_event(o, "message_delta");
    if (!rc) rc = app(o, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
    if (!rc) rc = app_str(o, x->n_tools ? "tool_use" : anthropic_stop_reason(x->finish));
    if (!rc) rc = app(o, ",\"stop_sequence\":null},");
    if (!rc) rc = anthropic_usage(x, o);
    if (!rc) rc = app(o, "}\n\n");
    if (!rc) rc = sse_event(o, "message_stop");
    if (!rc) rc = app(o, "{\"type\":\"message_stop\"}\n\n");
    return rc;
}

static int ollama_delta(struct xlate *x, struct buf *o, bool thinking, const char *text, size_t len)
{
    bool gen = x->mode == XLATE_OLLAMA_GENERATE;
    static const char gen_text[] = ",\"response\":",
                      gen_think[] = ",\"response\":\"\",\"thinking\":",
                      chat_text[] = ",\"message\":{\"role\":\"assistant\",\"content\":",
                      chat_think[] = ",\"message\":{\"role\":\"assistant\",\"content\":\"\","
                                     "\"thinking\":",
                      gen_tail[] = ",\"done\":false}\n", chat_tail[] = "},\"done\":false}\n";
    const char *mid = gen ? (thinking ? gen_think : gen_text) : (thinking ? chat_think : chat_text);
    size_t mid_len = gen ? (thinking ? sizeof gen_think : sizeof gen_text) - 1
                         : (thinking ? sizeof chat_think : sizeof chat_text) - 1;
    const char *tail = gen ? gen_tail : chat_tail;
    size_t tail_len = (gen ? sizeof gen_tail : sizeof chat_tail) - 1;
    int rc = ollama_head_ready(x);
    if (rc) return rc;
    size_t str_len = json_str_len(text, len);
    if (buf_grow(o, x->head.len + CREATED_AT_MAX + mid_len + str_len + tail_len)) return GW_E_LIMIT;
    char *d0 = o->p + o->len, *d = d0;
    d = put(d, x->head.p, x->head.len);
    d += put_created_at(d);
    d = put(d, mid, mid_len);
    d += json_put_str(d, text, len);
    d = put(d, tail, tail_len);
    buf_commit(o, (size_t)(d - d0));
    return 0;
}

static int ollama_end(struct xlate *x, struct buf *o, uint64_t now_us)
{
    bool gen = x->mode == XLATE_OLLAMA_GENERATE;
    int rc = 0;
    if (!gen && x->n_tools) { /* Ollama sends calls whole, in a chunk of their own */
        rc = ollama_head(x, o);
        if (!rc) rc = app(o, ",\"message\":{\"role\":\"assistant\",\"content\":\"\"");
        if (!rc) rc = ollama_tool_calls_out(o, x->tools, x->n_tools);
        if (!rc) rc = app(o, "},\"done\":false}\n");
    }
    if (!rc) rc = ollama_head(x, o);
    if (!rc)
        rc = app(o, gen ? ",\"response\":\"\""
                        : ",\"message\":{\"role\":\"assistant\",\"content\":\"\"}");
    if (!rc) rc = ollama_tail(x, o, now_us);
    if (!rc) rc = app(o, "\n");
    return rc;
}

struct feed_ctx {
    struct xlate *x;
    uint64_t now_us;
};

/* What one chunk says, read without a tree (the per-token path). */
struct chunk {
    struct strv content, reasoning, finish;
    bool has_content, has_reasoning, has_finish;
    int reads;                      /* members read into the chunk or into x (usage, timings) */
    size_t content_at, content_end; /* the content string's bytes in the chunk, quotes included */
};

static bool member_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

/* A number member's value into *out (kept when the value is not a number). */
static int fast_num(struct json_reader *r, double *out)
{
    enum json_kind k;
    if (json_reader_peek(r, &k)) return -1;
    size_t start = r->pos;
    if (json_reader_skip(r)) return -1;
    if (k != JSON_K_INT && k != JSON_K_DOUBLE) return 0;
    char t[64];
    while (start < r->pos && (r->p[start] == ' ' || r->p[start] == '\t' || r->p[start] == '\n' ||
                              r->p[start] == '\r'))
        start++;
    size_t n = r->pos - start < sizeof t - 1 ? r->pos - start : sizeof t - 1;
    memcpy(t, r->p + start, n);
    t[n] = '\0';
    *out = strtod(t, NULL);
    return 0;
}

/* A string member decoded into the scratch buffer (which must have room: a string longer than
 * the scratch sends the chunk to the tree parser). */
static int fast_str(struct json_reader *r, struct buf *scratch, struct chunk *c, struct strv *out,
                    bool *has)
{
    enum json_kind k;
    if (json_reader_peek(r, &k)) return -1;
    if (k != JSON_K_STRING) return json_reader_skip(r);
    size_t room = scratch->cap - scratch->len, len, at = r->pos;
    if (json_reader_string(r, scratch->p + scratch->len, room, &len)) return -1;
    if (len > room) return 1;
    *out = (struct strv){scratch->p + scratch->len, len};
    scratch->len += len;
    *has = true;
    c->reads++;
    if (out == &c->content) c->content_at = at, c->content_end = r->pos;
    return 0;
}

/* choices[0].delta: content, reasoning_content; tool calls go to the tree parser. */
static int fast_delta(struct json_reader *r, struct buf *scratch, struct chunk *c)
{
    char name[32];
    size_t nl;
    bool more;
    enum json_kind k;
    int rc;
    if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
    while (1) {
        if (json_reader_member(r, name, sizeof name, &nl, &more)) return -1;
        if (!more) return 0;
        if (member_is(name, nl, "content")) {
            if ((rc = fast_str(r, scratch, c, &c->content, &c->has_content))) return rc;
        } else if (member_is(name, nl, "reasoning_content")) {
            if ((rc = fast_str(r, scratch, c, &c->reasoning, &c->has_reasoning))) return rc;
        } else if (member_is(name, nl, "tool_calls")) {
            if (json_reader_peek(r, &k)) return -1;
            if (k != JSON_K_NULL) return 1;
            if (json_reader_skip(r)) return -1;
        } else if (json_reader_skip(r)) {
            return -1;
        }
    }
}

/* choices: one object (finish_reason, delta); more than one choice goes to the tree parser. */
static int fast_choices(struct json_reader *r, struct buf *scratch, struct chunk *c)
{
    char name[32];
    size_t nl, i = 0;
    bool more;
    enum json_kind k;
    int rc;
    if (json_reader_enter(r, JSON_K_ARRAY)) return -1;
    while (1) {
        if (json_reader_element(r, &more)) return -1;
        if (!more) return 0;
        if (i++ > 0) return 1;
        if (json_reader_peek(r, &k)) return -1;
        if (k != JSON_K_OBJECT) return 1;
        if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
        while (1) {
            if (json_reader_member(r, name, sizeof name, &nl, &more)) return -1;
            if (!more) break;
            if (member_is(name, nl, "finish_reason")) {
                if ((rc = fast_str(r, scratch, c, &c->finish, &c->has_finish))) return rc;
            } else if (member_is(name, nl, "delta")) {
                if (json_reader_peek(r, &k)) return -1;
                if (k == JSON_K_OBJECT) {
                    if ((rc = fast_delta(r, scratch, c))) return rc;
                } else if (json_reader_skip(r)) {
                    return -1;
                }
            } else if (json_reader_skip(r)) {
                return -1;
            }
        }
    }
}

/* usage (prompt_tokens, completion_tokens) or llama-server's timings into x. */
static int fast_counts(struct xlate *x, struct json_reader *r, struct chunk *c, bool usage)
{
    char name[32];
    size_t nl;
    bool more;
    c->reads++;
    if (json_reader_enter(r, JSON_K_OBJECT)) return -1;
    while (1) {
        if (json_reader_member(r, name, sizeof name, &nl, &more)) return -1;
        if (!more) return 0;
        double v = -1;
        bool known =
            usage ? member_is(name, nl, "prompt_tokens") || member_is(name, nl, "completion_tokens")
                  : member_is(name, nl, "prompt_ms") || member_is(name, nl, "predicted_ms") ||
                        member_is(name, nl, "prompt_n") || member_is(name, nl, "predicted_n");
        if (!known) {
            if (json_reader_skip(r)) return -1;
            continue;
        }
        if (fast_num(r, &v)) return -1;
        if (v < 0) continue;
        if (member_is(name, nl, "prompt_tokens"))
            x->prompt_tokens = (int64_t)v;
        else if (member_is(name, nl, "completion_tokens"))
            x->completion_tokens = (int64_t)v;
        else if (member_is(name, nl, "prompt_ms"))
            x->prompt_ms = v;
        else if (member_is(name, nl, "predicted_ms"))
            x->predicted_ms = v;
        else if (member_is(name, nl, "prompt_n") && x->prompt_tokens < 0)
            x->prompt_tokens = (int64_t)v;
        else if (member_is(name, nl, "predicted_n") && x->completion_tokens < 0)
            x->completion_tokens = (int64_t)v;
    }
}

/* Reads the members the stream needs: choices[0].delta.{content,reasoning_content},
 * choices[0].finish_reason, usage, timings; every other member is only checked (the whole
 * chunk must be JSON, as for the tree parser). A member's kind is looked at only when its
 * name is one of these. 1 when the chunk needs the tree parser (tool calls, more than one
 * choice, a long string), -1 when it is not JSON. */
static int fast_chunk(struct xlate *x, struct strv data, struct buf *scratch, struct chunk *c)
{
    struct json_reader r;
    json_reader_init(&r, data.p, data.len, XLATE_MAX_DEPTH, NULL);
    char name[32];
    size_t nl;
    bool more;
    enum json_kind k;
    int rc;
    if (json_reader_enter(&r, JSON_K_OBJECT)) return -1;
    while (1) {
        if (json_reader_member(&r, name, sizeof name, &nl, &more)) return -1;
        if (!more) break;
        bool usage = false;
        if (member_is(name, nl, "choices")) {
            if (json_reader_peek(&r, &k)) return -1;
            if (k == JSON_K_ARRAY) {
                if ((rc = fast_choices(&r, scratch, c))) return rc;
                continue;
            }
        } else if ((usage = member_is(name, nl, "usage")) || member_is(name, nl, "timings")) {
            if (json_reader_peek(&r, &k)) return -1;
            if (k == JSON_K_OBJECT) {
                if ((rc = fast_counts(x, &r, c, usage))) return rc;
                continue;
            }
        }
        if (json_reader_skip(&r)) return -1;
    }
    return json_reader_end(&r) ? -1 : 0;
}

/* A chunk that differs from the last memoised one (x->memo) only inside the delta's content
 * string: the bytes before that string and after it are the same, so a reader is in the same
 * state at both ends as it was in the memoised chunk, where the content string was the only
 * member read (nothing else to replay) and everything else was checked. Reading the string,
 * and finding that it ends exactly where the same bytes resume, then reads the whole chunk: a
 * node's stream repeats its envelope (id, model, created, index…) in every token. 1 when the
 * chunk is not such a chunk (fast_chunk decides). */
static int memo_chunk(const struct xlate *x, struct strv data, struct buf *scratch, struct chunk *c)
{
    const struct buf *m = &x->memo;
    if (!m->len) return 1;
    size_t pre = x->memo_at, post = m->len - x->memo_end;
    if (data.len < pre + post || memcmp(data.p, m->p, pre) != 0 ||
        memcmp(data.p + data.len - post, m->p + x->memo_end, post) != 0)
        return 1;
    struct json_reader r;
    json_reader_init(&r, data.p + pre, data.len - pre - post, XLATE_MAX_DEPTH, NULL);
    size_t room = scratch->cap - scratch->len, len;
    if (json_reader_string(&r, scratch->p + scratch->len, room, &len) || r.pos != r.len ||
        len > room)
        return 1;
    c->content = (struct strv){scratch->p + scratch->len, len};
    c->has_content = true;
    scratch->len += len;
    return 0;
}

/* Remembers a chunk whose only member read was its content string (XLATE_MEMO_BYTES at most). */
static void memo_keep(struct xlate *x, struct strv data, const struct chunk *c)
{
    buf_reset(&x->memo);
    if (c->reads != 1 || !c->has_content || buf_append(&x->memo, data.p, data.len)) {
        buf_reset(&x->memo);
        return;
    }
    x->memo_at = c->content_at;
    x->memo_end = c->content_end;
}

/* The chunk's text and finish reason to the client (both paths). */
static int emit_chunk(struct xlate *x, struct buf *o, const struct chunk *c, uint64_t now_us)
{
    int rc = 0;
    if (c->has_finish && c->finish.len < sizeof x->finish) {
        memcpy(x->finish, c->finish.p, c->finish.len);
        x->finish[c->finish.len] = '\0';
    }
    if (x->mode == XLATE_ANTHROPIC && !x->started) rc = anthropic_start(x, o);
    if ((c->content.len || c->reasoning.len) && !x->first_us) x->first_us = now_us;
    if (!rc && c->reasoning.len && x->mode != XLATE_ANTHROPIC)
        rc = ollama_delta(x, o, true, c->reasoning.p, c->reasoning.len);
    if (!rc && c->content.len) {
        x->deltas++;
        rc = x->mode == XLATE_ANTHROPIC ? anthropic_text(x, o, c->content.p, c->content.len)
                                        : ollama_delta(x, o, false, c->content.p, c->content.len);
    }
    return rc;
}

static int on_event(void *ctx, struct strv event, struct strv data)
{
    struct feed_ctx *f = ctx;
    struct xlate *x = f->x;
    struct buf *o = &x->out;
    (void)event;
    if (x->done) return 0; /* noise after completion */
    if (sse_data_is_done(data)) {
        int rc = x->mode == XLATE_ANTHROPIC ? anthropic_end(x, o) : ollama_end(x, o, f->now_us);
        x->done = true;
        return rc;
    }
    struct chunk fc = {0};
    struct buf *scratch = &x->scratch;
    if (!scratch->p) (void)buf_reserve(scratch, XLATE_SCRATCH_BYTES);
    scratch->len = 0;
    if (scratch->p && memo_chunk(x, data, scratch, &fc) == 0) { /* (else fc, scratch kept) */
        x->memo_hits++;
        return emit_chunk(x, o, &fc, f->now_us);
    }
    int frc = scratch->p ? fast_chunk(x, data, scratch, &fc) : 1;
    if (frc < 0) return 0; /* not JSON: nothing a client could use (the stream's end decides) */
    if (frc == 0) {
        memo_keep(x, data, &fc);
        return emit_chunk(x, o, &fc, f->now_us);
    }
    struct json_object *root = json_parse_strict(data.p, data.len, XLATE_MAX_DEPTH, NULL);
    if (!root) return 0;
    read_usage(x, root);
    struct json_object *ch = json_object_array_get_idx(member(root, "choices"), 0);
    struct json_object *d = member(ch, "delta");
    struct json_object *c = member(d, "content");
    struct json_object *r = member(d, "reasoning_content");
    struct json_object *calls = member(d, "tool_calls");
    const char *fr = mstr(ch, "finish_reason");
    if (fr) snprintf(x->finish, sizeof x->finish, "%s", fr);
    int rc = 0;
    if (x->mode == XLATE_ANTHROPIC && !x->started) rc = anthropic_start(x, o);
    size_t clen =
        c && json_object_is_type(c, json_type_string) ? (size_t)json_object_get_string_len(c) : 0;
    size_t rlen =
        r && json_object_is_type(r, json_type_string) ? (size_t)json_object_get_string_len(r) : 0;
    if ((clen || rlen) && !x->first_us) x->first_us = f->now_us;
    if (!rc && rlen && x->mode != XLATE_ANTHROPIC)
        rc = ollama_delta(x, o, true, json_object_get_string(r), rlen);
    if (!rc && clen) {
        x->deltas++;
        rc = x->mode == XLATE_ANTHROPIC
                 ? anthropic_text(x, o, json_object_get_string(c), clen)
                 : ollama_delta(x, o, false, json_object_get_string(c), clen);
    }
    if (!rc && calls && json_object_is_type(calls, json_type_array)) {
        if (!x->first_us) x->first_us = f->now_us;
        if (x->mode == XLATE_ANTHROPIC)
            rc = anthropic_tools(x, o, calls);
        else
            tool_calls_in(x, calls, true);
    }
    json_object_put(root);
    return rc;
}

int xlate_stream(struct xlate *x, const char *p, size_t len, uint64_t now_us)
{
    buf_reset(&x->out);
    if (x->failed) return x->failed;
    if (!x->sse_used) {
        sse_init(&x->sse, XLATE_MAX_EVENT);
        x->sse_used = true;
    }
    struct feed_ctx f = {x, now_us};
    int rc = sse_feed(&x->sse, p, len, on_event, &f);
    if (rc) x->failed = rc < 0 ? rc : GW_E_INVALID;
    return x->failed;
}
