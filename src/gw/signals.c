/* signals — parsers for the engines' load endpoints and the writer of a node's `sig` fields.
 * The Prometheus reader is line based and allocation free: a sample line is a metric name,
 * optional {labels} (quoted values may hold '}' and escaped quotes), a space and a value.
 * JSON answers go through json_parse_strict. Fixtures of real and documented answers are in
 * tests/fixtures/signals/ (tests/unit/test_signals.c). */
#include "gw/signals.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json.h"

enum signals_source signals_source_for(enum node_kind kind)
{
    switch (kind) {
    case NODE_KIND_LLAMACPP:
        return SIG_PROM_LLAMACPP;
    case NODE_KIND_VLLM:
        return SIG_PROM_VLLM;
    case NODE_KIND_OLLAMA:
        return SIG_OLLAMA_PS;
    default:
        return SIG_NONE;
    }
}

enum signals_source signals_fallback(enum signals_source src)
{
    return src == SIG_PROM_LLAMACPP ? SIG_SLOTS : SIG_NONE;
}

const char *signals_path(enum signals_source src)
{
    switch (src) {
    case SIG_PROM_LLAMACPP:
    case SIG_PROM_VLLM:
        return "/metrics";
    case SIG_SLOTS:
        return "/slots";
    case SIG_OLLAMA_PS:
        return "/api/ps";
    default:
        return NULL;
    }
}

const char *signals_source_name(enum signals_source src)
{
    static const char *const names[] = {"", "metrics", "slots", "metrics", "api_ps"};
    return (unsigned)src <= SIG_OLLAMA_PS ? names[src] : "";
}

int signals_prom_value(const char *text, size_t len, const char *name, double *sum_out,
                       double *max_out)
{
    size_t nlen = strlen(name);
    double sum = 0, max = -INFINITY;
    bool found = false;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *q = p;
        p = eol < end ? eol + 1 : end;
        if ((size_t)(eol - q) <= nlen || q[0] == '#' || memcmp(q, name, nlen) != 0) continue;
        q += nlen;
        if (*q == '{') { /* skip the labels, honouring quoted values */
            bool quoted = false;
            for (q++; q < eol; q++) {
                if (quoted && *q == '\\' && q + 1 < eol)
                    q++;
                else if (*q == '"')
                    quoted = !quoted;
                else if (!quoted && *q == '}')
                    break;
            }
            if (q >= eol) continue;
            q++;
        }
        if (q >= eol || (*q != ' ' && *q != '\t')) continue; /* a longer name */
        while (q < eol && (*q == ' ' || *q == '\t')) q++;
        char num[64];
        size_t k = 0;
        while (q < eol && *q != ' ' && *q != '\r' && k < sizeof num - 1) num[k++] = *q++;
        num[k] = '\0';
        char *stop;
        double v = strtod(num, &stop);
        if (k == 0 || *stop || isnan(v)) continue;
        found = true;
        sum += v;
        if (v > max) max = v;
    }
    if (!found) return GW_E_NOTFOUND;
    if (sum_out) *sum_out = sum;
    if (max_out) *max_out = max;
    return 0;
}

static int clamp_int(double v)
{
    if (!(v >= 0)) return 0;
    return v > 1e9 ? 1000000000 : (int)(v + 0.5);
}

static int kv_pm_of(double ratio)
{
    if (!(ratio >= 0)) return -1;
    if (ratio > 1) ratio = 1;
    return (int)(ratio * 1000 + 0.5);
}

static int parse_prom(enum signals_source src, const char *text, size_t len,
                      struct signals_report *r)
{
    double sum, max;
    bool vllm = src == SIG_PROM_VLLM;
    const char *run = vllm ? "vllm:num_requests_running" : "llamacpp:requests_processing";
    const char *wait = vllm ? "vllm:num_requests_waiting" : "llamacpp:requests_deferred";
    if (signals_prom_value(text, len, run, &sum, NULL) == 0) r->running = clamp_int(sum);
    if (signals_prom_value(text, len, wait, &sum, NULL) == 0) r->waiting = clamp_int(sum);
    static const char *const kv_llama[] = {"llamacpp:kv_cache_usage_ratio"};
    static const char *const kv_vllm[] = {"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"};
    const char *const *kv = vllm ? kv_vllm : kv_llama;
    size_t nkv = vllm ? 2 : 1;
    for (size_t i = 0; i < nkv && r->kv_pm < 0; i++)
        if (signals_prom_value(text, len, kv[i], NULL, &max) == 0) r->kv_pm = kv_pm_of(max);
    return r->running < 0 && r->waiting < 0 ? GW_E_INVALID : 0;
}

static int parse_slots(const char *text, size_t len, struct signals_report *r)
{
    struct json_object *root = json_parse_strict(text, len, 64, NULL);
    if (!root || !json_object_is_type(root, json_type_array)) {
        if (root) json_object_put(root);
        return GW_E_INVALID;
    }
    size_t n = json_object_array_length(root);
    int busy = 0;
    for (size_t i = 0; i < n; i++) {
        struct json_object *s = json_object_array_get_idx(root, i);
        bool b;
        int64_t st;
        if (json_get_bool(s, "is_processing", &b) == 0)
            busy += b;
        else if (json_get_int(s, "state", &st) == 0) /* builds before is_processing */
            busy += st != 0;
    }
    json_object_put(root);
    r->slots = (int)n;
    r->running = busy;
    return 0;
}

static int parse_ollama_ps(const char *text, size_t len, struct signals_report *r)
{
    struct json_object *root = json_parse_strict(text, len, 64, NULL), *arr;
    if (!root || json_get_arr(root, "models", &arr)) {
        if (root) json_object_put(root);
        return GW_E_INVALID;
    }
    r->models_loaded = (int)json_object_array_length(arr);
    json_object_put(root);
    return 0;
}

int signals_parse(enum signals_source src, const char *text, size_t len, struct signals_report *r)
{
    *r = (struct signals_report){-1, -1, -1, -1, -1};
    if (!text) text = "";
    switch (src) {
    case SIG_PROM_LLAMACPP:
    case SIG_PROM_VLLM:
        return parse_prom(src, text, len, r);
    case SIG_SLOTS:
        return parse_slots(text, len, r);
    case SIG_OLLAMA_PS:
        return parse_ollama_ps(text, len, r);
    default:
        return GW_E_INVALID;
    }
}

void signals_apply(struct node *n, enum signals_source src, const struct signals_report *r,
                   uint64_t now_ms)
{
    struct node_signals *s = &n->sig;
    s->at_ms = now_ms ? now_ms : 1;
    s->running = r->running;
    s->waiting = r->waiting;
    if (r->slots >= 0)
        s->slots = r->slots;
    else if (src != SIG_SLOTS)
        s->slots = s->slots > 0 ? s->slots : -1;
    s->kv_pm = r->kv_pm;
    s->models_loaded = r->models_loaded;
    s->inflight_at = n->inflight;
    s->scrapes_total++;
    snprintf(s->source, sizeof s->source, "%s", signals_source_name(src));
}

void signals_failed(struct node *n)
{
    n->sig.at_ms = 0;
    n->sig.scrape_errors_total++;
}
