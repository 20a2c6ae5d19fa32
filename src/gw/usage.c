/* usage — per-key usage counters: a pending table of (minute, key, model, node) rows flushed to
 * the store in batches by a timer, and cumulative (key, model) counters for /metrics, both
 * capped (usage.h). The loop thread only. */
#include "gw/usage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "store/store_keys.h"

struct usage_row {
    int64_t minute;
    char *key_id, *model, *node; /* owned */
    uint64_t requests, errors, prompt, completion;
};

struct usage_series {
    char *key_id, *model;
    uint64_t requests, errors, prompt, completion;
};

struct usage {
    struct usage_row *rows; /* pending, unordered */
    size_t n, cap;
    size_t *ix; /* open addressing into rows (index + 1; 0 empty) */
    size_t ix_cap;
    uint64_t dropped;
    struct usage_series *series;
    size_t n_series, cap_series;
    size_t *six; /* open addressing into series (index + 1; 0 empty) */
    size_t six_cap;
    size_t other; /* index + 1 of the "_other" series, 0 until it exists */
    uint64_t flushes, flush_failures;
    uv_timer_t timer;
    bool timer_on;
};

struct usage *usage_new(void)
{
    return xcalloc(1, sizeof(struct usage));
}

static void rows_clear(struct usage *u)
{
    for (size_t i = 0; i < u->n; i++) {
        xfree(u->rows[i].key_id);
        xfree(u->rows[i].model);
        xfree(u->rows[i].node);
    }
    u->n = 0;
    if (u->ix) memset(u->ix, 0, u->ix_cap * sizeof *u->ix);
}

void usage_free(struct usage *u)
{
    if (!u) return;
    rows_clear(u);
    xfree(u->rows);
    xfree(u->ix);
    for (size_t i = 0; i < u->n_series; i++) {
        xfree(u->series[i].key_id);
        xfree(u->series[i].model);
    }
    xfree(u->series);
    xfree(u->six);
    xfree(u);
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

static uint64_t row_hash(int64_t minute, const char *k, const char *m, const char *n)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)minute;
    return fnv(fnv(fnv(h, k), m), n);
}

static void ix_rebuild(struct usage *u, size_t cap)
{
    xfree(u->ix);
    u->ix = xcalloc(cap, sizeof *u->ix);
    u->ix_cap = cap;
    for (size_t i = 0; i < u->n; i++) {
        struct usage_row *r = &u->rows[i];
        size_t s = (size_t)(row_hash(r->minute, r->key_id, r->model, r->node) & (cap - 1));
        while (u->ix[s]) s = (s + 1) & (cap - 1);
        u->ix[s] = i + 1;
    }
}

static char *label_dup(const char *s)
{
    size_t n = strnlen(s ? s : "", USAGE_MAX_LABEL);
    return xstrndup(s ? s : "", n);
}

void usage_add(struct usage *u, const char *key_id, const char *model, const char *node, int status,
               uint64_t prompt, uint64_t completion, uint64_t wall_ms)
{
    char kb[USAGE_MAX_LABEL + 1], mb[USAGE_MAX_LABEL + 1], nb[USAGE_MAX_LABEL + 1];
    snprintf(kb, sizeof kb, "%s", key_id ? key_id : "open");
    snprintf(mb, sizeof mb, "%s", model && *model ? model : "_unknown");
    snprintf(nb, sizeof nb, "%s", node ? node : "");
    bool error = status == 0 || status >= 400;
    int64_t minute = (int64_t)(wall_ms / 60000);
    /* pending row */
    if (u->ix_cap < 2 * (u->n + 1)) ix_rebuild(u, u->ix_cap ? 2 * u->ix_cap : 64);
    size_t s = (size_t)(row_hash(minute, kb, mb, nb) & (u->ix_cap - 1));
    struct usage_row *r = NULL;
    while (u->ix[s]) {
        struct usage_row *c = &u->rows[u->ix[s] - 1];
        if (c->minute == minute && !strcmp(c->key_id, kb) && !strcmp(c->model, mb) &&
            !strcmp(c->node, nb)) {
            r = c;
            break;
        }
        s = (s + 1) & (u->ix_cap - 1);
    }
    if (!r && u->n >= USAGE_MAX_PENDING) {
        u->dropped++;
    } else {
        if (!r) {
            if (u->n == u->cap) {
                u->cap = u->cap ? 2 * u->cap : 64;
                u->rows = xrealloc(u->rows, u->cap * sizeof *u->rows);
            }
            r = &u->rows[u->n++];
            memset(r, 0, sizeof *r);
            r->minute = minute;
            r->key_id = label_dup(kb);
            r->model = label_dup(mb);
            r->node = label_dup(nb);
            u->ix[s] = u->n;
        }
        r->requests++;
        r->errors += error;
        r->prompt += prompt;
        r->completion += completion;
    }
    /* Prometheus series (key, model), capped: the rest add up in key="_other",
     * model="_other"; found by hash, so a request costs the same with 2,000 series */
    if (u->six_cap < 2 * (u->n_series + 2)) {
        size_t cap = u->six_cap ? 2 * u->six_cap : 64;
        xfree(u->six);
        u->six = xcalloc(cap, sizeof *u->six);
        u->six_cap = cap;
        for (size_t i = 0; i < u->n_series; i++) {
            size_t h =
                (size_t)(row_hash(0, u->series[i].key_id, u->series[i].model, "") & (cap - 1));
            while (u->six[h]) h = (h + 1) & (cap - 1);
            u->six[h] = i + 1;
        }
    }
    struct usage_series *se = NULL;
    size_t h = (size_t)(row_hash(0, kb, mb, "") & (u->six_cap - 1));
    while (u->six[h] && !se) {
        struct usage_series *c = &u->series[u->six[h] - 1];
        if (!strcmp(c->key_id, kb) && !strcmp(c->model, mb))
            se = c;
        else
            h = (h + 1) & (u->six_cap - 1);
    }
    if (!se && u->n_series >= USAGE_MAX_SERIES && u->other) se = &u->series[u->other - 1];
    if (!se) {
        if (u->n_series == u->cap_series) {
            u->cap_series = u->cap_series ? 2 * u->cap_series : 16;
            u->series = xrealloc(u->series, u->cap_series * sizeof *u->series);
        }
        se = &u->series[u->n_series++];
        memset(se, 0, sizeof *se);
        bool other = u->n_series > USAGE_MAX_SERIES;
        se->key_id = xstrdup(other ? "_other" : kb);
        se->model = xstrdup(other ? "_other" : mb);
        if (other) {
            u->other = u->n_series;
        } else {
            u->six[h] = u->n_series; /* h is the empty slot the probe stopped at */
        }
    }
    se->requests++;
    se->errors += error;
    se->prompt += prompt;
    se->completion += completion;
}

size_t usage_pending_rows(const struct usage *u)
{
    return u->n;
}

uint64_t usage_dropped(const struct usage *u)
{
    return u->dropped;
}

/* A Prometheus label value: \, " and newline escaped. */
static int label(struct buf *o, const char *s)
{
    int rc = 0;
    for (; *s && !rc; s++) {
        if (*s == '\\' || *s == '"')
            rc = buf_appendf(o, "\\%c", *s);
        else if (*s == '\n')
            rc = buf_append_cstr(o, "\\n");
        else
            rc = buf_append(o, s, 1);
    }
    return rc;
}

int usage_render(const struct usage *u, struct buf *o)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } m[] = {
        {"drover_key_requests_total", "Requests answered, per client key and model",
         offsetof(struct usage_series, requests)},
        {"drover_key_errors_total", "Requests answered with an error (status >= 400)",
         offsetof(struct usage_series, errors)},
        {"drover_key_prompt_tokens_total", "Prompt tokens, per client key and model",
         offsetof(struct usage_series, prompt)},
        {"drover_key_completion_tokens_total", "Completion tokens, per client key and model",
         offsetof(struct usage_series, completion)},
    };
    int rc = 0;
    for (size_t k = 0; k < sizeof m / sizeof m[0] && !rc; k++) {
        rc = buf_appendf(o, "# HELP %s %s\n# TYPE %s counter\n", m[k].name, m[k].help, m[k].name);
        for (size_t i = 0; i < u->n_series && !rc; i++) {
            const struct usage_series *se = &u->series[i];
            rc = buf_appendf(o, "%s{key=\"", m[k].name);
            if (!rc) rc = label(o, se->key_id);
            if (!rc) rc = buf_append_cstr(o, "\",model=\"");
            if (!rc) rc = label(o, se->model);
            if (!rc)
                rc = buf_appendf(
                    o, "\"} %llu\n",
                    (unsigned long long)*(const uint64_t *)((const char *)se + m[k].off));
        }
    }
    if (!rc)
        rc = buf_appendf(o,
                         "# HELP drover_usage_rows_dropped_total Usage rows not recorded (the "
                         "pending table was full)\n# TYPE drover_usage_rows_dropped_total "
                         "counter\ndrover_usage_rows_dropped_total %llu\n"
                         "# HELP drover_usage_flush_failures_total Usage batches the store "
                         "refused\n# TYPE drover_usage_flush_failures_total counter\n"
                         "drover_usage_flush_failures_total %llu\n",
                         (unsigned long long)u->dropped, (unsigned long long)u->flush_failures);
    return rc;
}

/* The decimal integer value the reader is at (after a peek said JSON_K_INT); skips it. */
static bool reader_u64(struct json_reader *r, uint64_t *out)
{
    size_t start = r->pos;
    if (json_reader_skip(r)) return false;
    uint64_t v;
    if (strv_to_u64(strv_trim(strv_make(r->p + start, r->pos - start)), &v)) return false;
    *out = v;
    return true;
}

static bool int_member(struct json_reader *r, uint64_t *out, bool *found)
{
    enum json_kind k;
    if (json_reader_peek(r, &k)) return false;
    if (k == JSON_K_INT) {
        if (reader_u64(r, out)) *found = true;
        return true;
    }
    return json_reader_skip(r) == 0;
}

bool usage_tokens_from_body(const char *p, size_t len, uint64_t *prompt, uint64_t *completion)
{
    *prompt = *completion = 0;
    if (!p || !len) return false;
    struct json_reader r;
    json_reader_init(&r, p, len, 64, NULL);
    enum json_kind k;
    if (json_reader_peek(&r, &k) || k != JSON_K_OBJECT || json_reader_enter(&r, k)) return false;
    bool found = false;
    for (;;) {
        char name[32];
        size_t nl;
        bool more;
        if (json_reader_member(&r, name, sizeof name, &nl, &more) || !more) break;
        if (nl < sizeof name)
            name[nl] = '\0';
        else
            name[0] = '\0';
        if (!strcmp(name, "prompt_eval_count")) {
            if (!int_member(&r, prompt, &found)) break;
        } else if (!strcmp(name, "eval_count")) {
            if (!int_member(&r, completion, &found)) break;
        } else if (!strcmp(name, "usage") && !json_reader_peek(&r, &k) && k == JSON_K_OBJECT) {
            if (json_reader_enter(&r, k)) break;
            bool ok = true;
            for (;;) {
                char un[32];
                size_t ul;
                bool umore;
                if (json_reader_member(&r, un, sizeof un, &ul, &umore)) {
                    ok = false;
                    break;
                }
                if (!umore) break;
                if (ul < sizeof un)
                    un[ul] = '\0';
                else
                    un[0] = '\0';
                uint64_t *dst = !strcmp(un, "prompt_tokens")       ? prompt
                                : !strcmp(un, "completion_tokens") ? completion
                                                                   : NULL;
                uint64_t ignored;
                if (!int_member(&r, dst ? dst : &ignored, dst ? &found : &(bool){false})) {
                    ok = false;
                    break;
                }
            }
            if (!ok) break;
        } else if (json_reader_skip(&r)) {
            break;
        }
    }
    return found;
}

/* The kind of the top-level member name of an object body, or -1 when absent or not an object. */
static int top_member_kind(const char *p, size_t len, const char *name)
{
    struct json_reader r;
    json_reader_init(&r, p, len, 64, NULL);
    enum json_kind k;
    if (json_reader_peek(&r, &k) || k != JSON_K_OBJECT || json_reader_enter(&r, k)) return -1;
    for (;;) {
        char n[32];
        size_t nl;
        bool more;
        if (json_reader_member(&r, n, sizeof n, &nl, &more) || !more) return -1;
        if (nl == strlen(name) && nl < sizeof n && !memcmp(n, name, nl))
            return json_reader_peek(&r, &k) ? -1 : (int)k;
        if (json_reader_skip(&r)) return -1;
    }
}

int usage_ask_stream_usage(struct strv body, struct buf *out)
{
    if (top_member_kind(body.p, body.len, "stream_options") >= 0) return 0; /* the client's */
    size_t i = 0;
    while (i < body.len &&
           (body.p[i] == ' ' || body.p[i] == '\t' || body.p[i] == '\r' || body.p[i] == '\n'))
        i++;
    if (i >= body.len || body.p[i] != '{') return GW_E_INVALID;
    /* a member follows: the body has at least "model" (validated), so the comma is right */
    static const char ins[] = "\"stream_options\":{\"include_usage\":true},";
    int rc = buf_append(out, body.p, i + 1);
    if (!rc) rc = buf_append(out, ins, sizeof ins - 1);
    if (!rc) rc = buf_append(out, body.p + i + 1, body.len - i - 1);
    return rc ? rc : 1;
}

bool usage_chunk_is_usage_only(const char *p, size_t len)
{
    if (top_member_kind(p, len, "usage") != JSON_K_OBJECT) return false;
    int k = top_member_kind(p, len, "choices");
    if (k < 0) return true;
    if (k != JSON_K_ARRAY) return false;
    /* "choices": [] — the chunk OpenAI adds for include_usage */
    struct json_reader r;
    json_reader_init(&r, p, len, 64, NULL);
    enum json_kind jk;
    if (json_reader_peek(&r, &jk) || json_reader_enter(&r, jk)) return false;
    for (;;) {
        char n[32];
        size_t nl;
        bool more;
        if (json_reader_member(&r, n, sizeof n, &nl, &more) || !more) return false;
        if (nl == 7 && !memcmp(n, "choices", 7)) {
            if (json_reader_enter(&r, JSON_K_ARRAY)) return false;
            return json_reader_element(&r, &more) == 0 && !more;
        }
        if (json_reader_skip(&r)) return false;
    }
}

/* ---- gateway wiring ---------------------------------------------------------------------- */

static void flush_done(void *ctx, int rc, const char *msg)
{
    struct gw *g = ctx;
    if (rc) {
        if (g->usage) g->usage->flush_failures++;
        LOGE("usage_flush_failed", "reason=\"%s\"", msg ? msg : "?");
    }
}

void usage_flush(struct gw *g)
{
    struct usage *u = g->usage;
    if (!u || u->n == 0) return;
    if (!g->store) {
        rows_clear(u);
        return;
    }
    struct store_usage_row *v = xcalloc(u->n, sizeof *v);
    for (size_t i = 0; i < u->n; i++) {
        struct usage_row *r = &u->rows[i];
        v[i] = (struct store_usage_row){r->minute,   r->key_id, r->model,  r->node,
                                        r->requests, r->errors, r->prompt, r->completion};
        r->key_id = r->model = r->node = NULL; /* moved */
    }
    size_t n = u->n;
    rows_clear(u);
    u->flushes++;
    store_add_usage(g->store, v, n, flush_done, g);
}

static void on_timer(uv_timer_t *t)
{
    usage_flush(t->data);
}

int usage_start(struct gw *g)
{
    if (!g->usage) g->usage = usage_new();
    struct usage *u = g->usage;
    if (!u->timer_on) {
        uv_timer_init(g->loop, &u->timer);
        u->timer.data = g;
        u->timer_on = true;
    }
    uint64_t ms = g->cfg.usage_flush_ms ? g->cfg.usage_flush_ms : 10000;
    uv_timer_start(&u->timer, on_timer, ms, ms);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    usage_free(h->data);
}

void usage_stop(struct gw *g)
{
    struct usage *u = g->usage;
    if (!u) return;
    usage_flush(g);
    g->usage = NULL;
    if (u->timer_on) {
        uv_timer_stop(&u->timer);
        u->timer.data = u;
        uv_close((uv_handle_t *)&u->timer, timer_closed);
    } else {
        usage_free(u);
    }
}

void usage_record(struct gw *g, const char *key_id, const char *model, const char *node, int status,
                  uint64_t prompt_tokens, uint64_t completion_tokens)
{
    if (!g->usage) return;
    usage_add(g->usage, key_id, model, node, status, prompt_tokens, completion_tokens,
              clock_wall_ms());
}

int usage_render_metrics(struct gw *g, struct buf *out)
{
    return g->usage ? usage_render(g->usage, out) : 0;
}

/* ---- GET /admin/v1/usage ----------------------------------------------------------------- */

struct usage_answer {
    struct http_request *req; /* NULL once the client left */
    struct store_usage_result res;
    enum store_usage_group by;
    int64_t from_s, to_s;
};

static void answer_abort(struct http_request *req, void *ctx)
{
    (void)req;
    ((struct usage_answer *)ctx)->req = NULL;
}

static void query_done(void *ctx, int rc, const char *msg)
{
    struct usage_answer *a = ctx;
    if (a->req) {
        http_request_on_abort(a->req, NULL, NULL);
        if (rc) {
            gw_reply_error(a->req, 503, "store_unavailable", NULL,
                           msg ? msg : "the usage could not be read");
        } else {
            static const char *const names[] = {"key", "model", "node", "minute"};
            struct buf b;
            buf_init(&b, 64u << 20);
            int e = buf_appendf(&b, "{\"group_by\":\"%s\",\"from\":%lld,\"to\":%lld,\"rows\":[",
                                names[a->by], (long long)a->from_s, (long long)a->to_s);
            for (size_t i = 0; i < a->res.n && !e; i++) {
                const struct store_usage_row *r = &a->res.rows[i];
                if (i) e = buf_append_cstr(&b, ",");
                if (!e) e = buf_appendf(&b, "{\"%s\":", names[a->by]);
                if (!e) {
                    if (a->by == STORE_USAGE_BY_MINUTE)
                        e = buf_appendf(&b, "%lld", (long long)r->minute * 60);
                    else {
                        const char *v = a->by == STORE_USAGE_BY_KEY     ? r->key_id
                                        : a->by == STORE_USAGE_BY_MODEL ? r->model
                                                                        : r->node;
                        e = json_append_str(&b, v ? v : "", v ? strlen(v) : 0);
                    }
                }
                if (!e)
                    e = buf_appendf(&b,
                                    ",\"requests\":%llu,\"errors\":%llu,\"prompt_tokens\":%llu,"
                                    "\"completion_tokens\":%llu,\"total_tokens\":%llu}",
                                    (unsigned long long)r->requests, (unsigned long long)r->errors,
                                    (unsigned long long)r->prompt_tokens,
                                    (unsigned long long)r->completion_tokens,
                                    (unsigned long long)(r->prompt_tokens + r->completion_tokens));
            }
            if (!e) e = buf_appendf(&b, "],\"truncated\":%s}", a->res.truncated ? "true" : "false");
            (void)http_respond_json(a->req, e ? 500 : 200, NULL, 0, b.p, b.len);
            buf_free(&b);
        }
    }
    store_usage_rows_free(a->res.rows, a->res.n);
    xfree(a);
}

/* The value of name in a query string (no percent-decoding: ids, model names and numbers);
 * copies at most cap - 1 bytes; false when absent or too long. */
static bool query_get(struct strv q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < q.len) {
        size_t j = i;
        while (j < q.len && q.p[j] != '&') j++;
        struct strv part = strv_sub(q, i, j - i);
        if (part.len > nl && part.p[nl] == '=' && !memcmp(part.p, name, nl)) {
            size_t vl = part.len - nl - 1;
            if (vl >= cap) return false;
            memcpy(out, part.p + nl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        i = j + 1;
    }
    return false;
}

void usage_admin(struct gw *g, struct http_request *req)
{
    if (!strv_eq_cstr(req->method, "GET"))
        return gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET");
    if (!g->store)
        return gw_reply_error(req, 503, "store_unavailable", NULL, "no store: usage is not kept");
    char key[128] = "", model[256] = "", from[32] = "", to[32] = "", by[16] = "key";
    bool has_key = query_get(req->query, "key", key, sizeof key) && key[0];
    bool has_model = query_get(req->query, "model", model, sizeof model) && model[0];
    (void)query_get(req->query, "group_by", by, sizeof by);
    uint64_t now_s = clock_wall_ms() / 1000, f = now_s >= 86400 ? now_s - 86400 : 0, t = now_s + 60;
    if ((query_get(req->query, "from", from, sizeof from) &&
         strv_to_u64(strv_from_cstr(from), &f)) ||
        (query_get(req->query, "to", to, sizeof to) && strv_to_u64(strv_from_cstr(to), &t)))
        return gw_reply_error(req, 400, "invalid_query", "from", "from and to are unix seconds");
    static const char *const names[] = {"key", "model", "node", "minute"};
    int gb = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(by, names[i])) gb = i;
    if (gb < 0)
        return gw_reply_error(req, 400, "invalid_query", "group_by",
                              "group_by is key, model, node or minute");
    usage_flush(g); /* pending rows first: the store runs jobs in order */
    struct usage_answer *a = xcalloc(1, sizeof *a);
    a->req = req;
    a->by = (enum store_usage_group)gb;
    a->from_s = (int64_t)f;
    a->to_s = (int64_t)t;
    struct store_usage_query q = {
        .key_id = has_key ? key : NULL,
        .model = has_model ? model : NULL,
        .from_minute = (int64_t)(f / 60),
        .to_minute = (int64_t)((t + 59) / 60),
        .group_by = a->by,
        .max_rows = 10000,
    };
    http_request_on_abort(req, answer_abort, a);
    store_query_usage(g->store, &q, &a->res, query_done, a);
}
