/* history — a ring of HISTORY_MINUTES buckets indexed by wall minute modulo the ring size; a
 * bucket whose minute is not the one asked for is stale and reads as empty, so an idle gap
 * costs nothing to skip. Percentiles merge the buckets of a step and interpolate inside the
 * log-spaced bucket they fall in (as Prometheus' histogram_quantile does). The loop thread
 * only. */
#include "gw/history.h"

#include <math.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"

/* The bounds of struct metrics' histograms (metrics.c renders the same table). */
static const double ttfb_bound_s[METRICS_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                       1,     2.5,  5,     10,   30,  60,   120};
_Static_assert(METRICS_N_BUCKETS == 14, "history.c copies metrics.c's bucket bounds");

struct hseries {
    uint16_t key; /* index into history.keys; HISTORY_MAX_SERIES: "_other" */
    uint32_t requests, errors;
    uint64_t tokens;
};

struct bucket {
    int64_t minute; /* wall minute it holds; -1: never used */
    uint32_t requests;
    uint32_t outcomes[HIST__COUNT];
    uint32_t lat[HISTORY_LAT_BUCKETS + 1]; /* last: beyond the table */
    uint32_t ttfb[METRICS_N_BUCKETS + 1];  /* read at close; last: +Inf */
    uint64_t classes[OUTCOME__COUNT];      /* attempts by outcome class, read at close */
    uint64_t tokens;
    uint16_t n_series;
    struct hseries series[HISTORY_SERIES_PER_MIN];
};

struct history {
    const struct metrics *m;
    struct bucket *b; /* HISTORY_MINUTES */
    int64_t cur;      /* the minute being filled */
    double lat_bound_ms[HISTORY_LAT_BUCKETS];
    uint64_t seen_ttfb[METRICS_N_BUCKETS + 1], seen_classes[OUTCOME__COUNT];
    char *keys[HISTORY_MAX_SERIES][2]; /* owned node, model */
    size_t n_keys;
};

const char *history_outcome_name(enum history_outcome o)
{
    static const char *const names[HIST__COUNT] = {"success",  "client_error", "unavailable",
                                                   "upstream", "stream_error", "client_gone"};
    return (unsigned)o < HIST__COUNT ? names[o] : "other";
}

static void read_counters(const struct metrics *m, uint64_t ttfb[], uint64_t classes[])
{
    uint64_t sum = 0;
    for (int i = 0; i < METRICS_N_BUCKETS; i++) ttfb[i] = m->ttfb.buckets[i], sum += ttfb[i];
    ttfb[METRICS_N_BUCKETS] = m->ttfb.count - sum;
    for (int c = 0; c < OUTCOME__COUNT; c++) classes[c] = m->outcomes[c];
}

static struct bucket *slot(struct history *h, int64_t minute)
{
    return &h->b[(uint64_t)minute % HISTORY_MINUTES];
}

static void open_minute(struct history *h, int64_t minute)
{
    struct bucket *b = slot(h, minute);
    memset(b, 0, sizeof *b);
    b->minute = minute;
    h->cur = minute;
}

struct history *history_new(const struct metrics *m, uint64_t wall_ms)
{
    struct history *h = xcalloc(1, sizeof *h);
    h->m = m;
    h->b = xcalloc(HISTORY_MINUTES, sizeof *h->b);
    for (size_t i = 0; i < HISTORY_MINUTES; i++) h->b[i].minute = -1;
    double bound = 1.0;
    for (int i = 0; i < HISTORY_LAT_BUCKETS; i++, bound *= 1.5) h->lat_bound_ms[i] = bound;
    read_counters(m, h->seen_ttfb, h->seen_classes);
    open_minute(h, (int64_t)(wall_ms / 60000));
    return h;
}

void history_free(struct history *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->n_keys; i++) xfree(h->keys[i][0]), xfree(h->keys[i][1]);
    xfree(h->b);
    xfree(h);
}

/* The current minute's counter differences go into it, then the next minute opens. */
void history_tick(struct history *h, uint64_t wall_ms)
{
    int64_t now = (int64_t)(wall_ms / 60000);
    if (now <= h->cur) return;
    uint64_t ttfb[METRICS_N_BUCKETS + 1], classes[OUTCOME__COUNT];
    read_counters(h->m, ttfb, classes);
    struct bucket *b = slot(h, h->cur);
    for (int i = 0; i <= METRICS_N_BUCKETS; i++)
        b->ttfb[i] = (uint32_t)(ttfb[i] - h->seen_ttfb[i]), h->seen_ttfb[i] = ttfb[i];
    for (int c = 0; c < OUTCOME__COUNT; c++)
        b->classes[c] = classes[c] - h->seen_classes[c], h->seen_classes[c] = classes[c];
    open_minute(h, now); /* the minutes between stay stale: they read as empty */
}

static uint16_t series_key(struct history *h, const char *node, const char *model)
{
    for (size_t i = 0; i < h->n_keys; i++)
        if (!strcmp(h->keys[i][0], node) && !strcmp(h->keys[i][1], model)) return (uint16_t)i;
    if (h->n_keys == HISTORY_MAX_SERIES) return HISTORY_MAX_SERIES;
    h->keys[h->n_keys][0] = xstrdup(node);
    h->keys[h->n_keys][1] = xstrdup(model);
    return (uint16_t)h->n_keys++;
}

static enum history_outcome classify(int status, const char *outcome)
{
    if (outcome && !strcmp(outcome, "stream_error")) return HIST_STREAM_ERROR;
    if (status == 499 || (outcome && !strcmp(outcome, "client_gone"))) return HIST_CLIENT_GONE;
    if (status >= 200 && status < 400) return HIST_SUCCESS;
    if (status == 503) return HIST_UNAVAILABLE;
    if (status >= 500) return HIST_UPSTREAM;
    return HIST_CLIENT_ERROR;
}

void history_record(struct history *h, uint64_t wall_ms, const char *node, const char *model,
                    int status, const char *outcome, uint64_t dur_us, uint64_t tokens)
{
    history_tick(h, wall_ms);
    struct bucket *b = slot(h, h->cur);
    enum history_outcome oc = classify(status, outcome);
    b->requests++;
    b->outcomes[oc]++;
    b->tokens += tokens;
    double ms = (double)dur_us / 1000.0;
    int i = 0;
    while (i < HISTORY_LAT_BUCKETS && ms > h->lat_bound_ms[i]) i++;
    b->lat[i]++;
    if (!node || !*node) return; /* answered by the gateway itself: no node to count */
    uint16_t key = series_key(h, node, model && *model ? model : "_unknown");
    struct hseries *s = NULL;
    for (uint16_t k = 0; k < b->n_series && !s; k++)
        if (b->series[k].key == key) s = &b->series[k];
    if (!s && b->n_series < HISTORY_SERIES_PER_MIN) {
        s = &b->series[b->n_series++];
        s->key = key;
    }
    if (!s) { /* the minute's table is full: the last slot becomes "_other" */
        s = &b->series[HISTORY_SERIES_PER_MIN - 1];
        s->key = HISTORY_MAX_SERIES;
    }
    s->requests++;
    if (oc != HIST_SUCCESS && oc != HIST_CLIENT_ERROR && oc != HIST_CLIENT_GONE) s->errors++;
    s->tokens += tokens;
}

/* The q-quantile of a histogram with n buckets whose upper bounds are bound[] (the last
 * bucket, index n, is unbounded: its answer is the last bound). -1 when empty. */
static double quantile(const uint64_t *cnt, const double *bound, int n, double q)
{
    uint64_t total = 0;
    for (int i = 0; i <= n; i++) total += cnt[i];
    if (!total) return -1;
    double rank = q * (double)total, cum = 0;
    for (int i = 0; i <= n; i++) {
        if (cum + (double)cnt[i] >= rank && cnt[i]) {
            if (i == n) return bound[n - 1];
            double lo = i ? bound[i - 1] : 0, hi = bound[i];
            return lo + (hi - lo) * ((rank - cum) / (double)cnt[i]);
        }
        cum += (double)cnt[i];
    }
    return bound[n - 1];
}

static int num(struct buf *o, const char *key, double v)
{
    if (v < 0) return buf_appendf(o, ",\"%s\":null", key);
    return buf_appendf(o, ",\"%s\":%.3f", key, v);
}

int history_json(struct history *h, uint64_t wall_ms, unsigned window_min, unsigned step_min,
                 struct buf *o)
{
    history_tick(h, wall_ms);
    if (window_min < 1 || window_min > HISTORY_MINUTES) window_min = 60;
    if (step_min < 1 || step_min > window_min) step_min = 1;
    unsigned n_points = (window_min + step_min - 1) / step_min;
    int64_t last = h->cur, first = last - (int64_t)(n_points * step_min) + 1;
    double ttfb_ms[METRICS_N_BUCKETS];
    for (int i = 0; i < METRICS_N_BUCKETS; i++) ttfb_ms[i] = ttfb_bound_s[i] * 1000.0;
    /* which series had traffic in the window */
    bool used[HISTORY_MAX_SERIES + 1] = {0};
    int rc = buf_appendf(o, "{\"window_s\":%u,\"step_s\":%u,\"now_ms\":%llu,\"points\":[",
                         window_min * 60, step_min * 60, (unsigned long long)wall_ms);
    for (unsigned p = 0; p < n_points && !rc; p++) {
        int64_t from = first + (int64_t)(p * step_min);
        uint64_t req = 0, tokens = 0, outc[HIST__COUNT] = {0}, cls[OUTCOME__COUNT] = {0};
        uint64_t lat[HISTORY_LAT_BUCKETS + 1] = {0}, tt[METRICS_N_BUCKETS + 1] = {0};
        for (int64_t mi = from; mi < from + (int64_t)step_min; mi++) {
            if (mi < 0) continue;
            const struct bucket *b = slot(h, mi);
            if (b->minute != mi) continue;
            req += b->requests;
            tokens += b->tokens;
            for (int i = 0; i < HIST__COUNT; i++) outc[i] += b->outcomes[i];
            for (int i = 0; i < OUTCOME__COUNT; i++) cls[i] += b->classes[i];
            for (int i = 0; i <= HISTORY_LAT_BUCKETS; i++) lat[i] += b->lat[i];
            for (int i = 0; i <= METRICS_N_BUCKETS; i++) tt[i] += b->ttfb[i];
            for (uint16_t k = 0; k < b->n_series; k++) used[b->series[k].key] = true;
            if (mi == h->cur) { /* the minute in progress: the counters' differences so far */
                uint64_t t2[METRICS_N_BUCKETS + 1], c2[OUTCOME__COUNT];
                read_counters(h->m, t2, c2);
                for (int i = 0; i <= METRICS_N_BUCKETS; i++) tt[i] += t2[i] - h->seen_ttfb[i];
                for (int i = 0; i < OUTCOME__COUNT; i++) cls[i] += c2[i] - h->seen_classes[i];
            }
        }
        double secs = 60.0 * step_min;
        rc = buf_appendf(o,
                         "%s{\"t\":%llu,\"requests\":%llu,\"rps\":%.3f,\"tokens\":%llu,"
                         "\"tokens_per_s\":%.3f",
                         p ? "," : "", (unsigned long long)from * 60000ull, (unsigned long long)req,
                         (double)req / secs, (unsigned long long)tokens, (double)tokens / secs);
        if (!rc)
            rc = num(o, "latency_p50_ms", quantile(lat, h->lat_bound_ms, HISTORY_LAT_BUCKETS, 0.5));
        if (!rc)
            rc =
                num(o, "latency_p99_ms", quantile(lat, h->lat_bound_ms, HISTORY_LAT_BUCKETS, 0.99));
        if (!rc) rc = num(o, "ttft_p50_ms", quantile(tt, ttfb_ms, METRICS_N_BUCKETS, 0.5));
        if (!rc) rc = num(o, "ttft_p99_ms", quantile(tt, ttfb_ms, METRICS_N_BUCKETS, 0.99));
        if (!rc) rc = buf_append_cstr(o, ",\"outcomes\":{");
        for (int i = 0; i < HIST__COUNT && !rc; i++)
            rc = buf_appendf(o, "%s\"%s\":%llu", i ? "," : "",
                             history_outcome_name((enum history_outcome)i),
                             (unsigned long long)outc[i]);
        if (!rc) rc = buf_append_cstr(o, "},\"classes\":{");
        for (int i = 0; i < OUTCOME__COUNT && !rc; i++)
            rc = buf_appendf(o, "%s\"%s\":%llu", i ? "," : "",
                             outcome_class_name((enum outcome_class)i), (unsigned long long)cls[i]);
        if (!rc) rc = buf_append_cstr(o, "}}");
    }
    if (!rc) rc = buf_append_cstr(o, "],\"series\":[");
    bool first_s = true;
    for (size_t k = 0; k <= HISTORY_MAX_SERIES && !rc; k++) {
        if (!used[k]) continue;
        const char *node = k < h->n_keys ? h->keys[k][0] : "_other";
        const char *model = k < h->n_keys ? h->keys[k][1] : "_other";
        rc = buf_append_cstr(o, first_s ? "{\"node\":" : ",{\"node\":");
        first_s = false;
        if (!rc) rc = json_append_str(o, node, strlen(node));
        if (!rc) rc = buf_append_cstr(o, ",\"model\":");
        if (!rc) rc = json_append_str(o, model, strlen(model));
        const char *arrays[3] = {"rps", "tokens_per_s", "errors"};
        for (int a = 0; a < 3 && !rc; a++) {
            rc = buf_appendf(o, ",\"%s\":[", arrays[a]);
            for (unsigned p = 0; p < n_points && !rc; p++) {
                int64_t from = first + (int64_t)(p * step_min);
                uint64_t v = 0;
                for (int64_t mi = from; mi < from + (int64_t)step_min; mi++) {
                    if (mi < 0) continue;
                    const struct bucket *b = slot(h, mi);
                    if (b->minute != mi) continue;
                    for (uint16_t s = 0; s < b->n_series; s++) {
                        if (b->series[s].key != k) continue;
                        v += a == 0   ? b->series[s].requests
                             : a == 1 ? b->series[s].tokens
                                      : b->series[s].errors;
                    }
                }
                double secs = 60.0 * step_min;
                rc = a == 2 ? buf_appendf(o, "%s%llu", p ? "," : "", (unsigned long long)v)
                            : buf_appendf(o, "%s%.3f", p ? "," : "", (double)v / secs);
            }
            if (!rc) rc = buf_append_cstr(o, "]");
        }
        if (!rc) rc = buf_append_cstr(o, "}");
    }
    if (!rc) rc = buf_append_cstr(o, "]}");
    return rc;
}
