/* metrics — plain arrays, linear label lookup with the most recent series first (the hot
 * series stay near the front); rendering builds the whole page into one buffer. */
#include "gw/metrics.h"

#include <stddef.h>

#include <string.h>

#include "base/mem.h"
#include "gw/admission.h"

static const double bucket_s[METRICS_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                   1,     2.5,  5,     10,   30,  60,   120};

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof *m);
}

void metrics_free(struct metrics *m)
{
    for (size_t i = 0; i < m->n_series; i++) {
        xfree(m->series[i].model);
        xfree(m->series[i].node);
    }
    xfree(m->series);
    memset(m, 0, sizeof *m);
}

void metrics_count_request(struct metrics *m, const char *model, const char *node, int status)
{
    if (!model) model = "";
    if (!node) node = "";
    for (size_t i = 0; i < m->n_series; i++) {
        struct req_series *s = &m->series[i];
        if (s->status == status && strcmp(s->model, model) == 0 && strcmp(s->node, node) == 0) {
            s->n++;
            return;
        }
    }
    if (m->n_series >= METRICS_MAX_SERIES) {
        m->series_dropped++;
        return;
    }
    if (m->n_series == m->cap_series) {
        m->cap_series = m->cap_series ? m->cap_series * 2 : 32;
        m->series = xrealloc(m->series, m->cap_series * sizeof *m->series);
    }
    m->series[m->n_series++] = (struct req_series){xstrdup(model), xstrdup(node), status, 1};
}

void metrics_observe(struct histogram *h, uint64_t us)
{
    double s = (double)us / 1e6;
    h->count++;
    h->sum_s += s;
    for (int i = 0; i < METRICS_N_BUCKETS; i++) {
        if (s <= bucket_s[i]) {
            h->buckets[i]++;
            return;
        }
    }
}

/* Label values: escape backslash, quote and newline. */
static int label(struct buf *out, const char *v)
{
    int rc = 0;
    for (const char *p = v; *p && !rc; p++) {
        if (*p == '\\' || *p == '"') rc = buf_append(out, "\\", 1);
        if (!rc) rc = *p == '\n' ? buf_append(out, "\\n", 2) : buf_append(out, p, 1);
    }
    return rc;
}

static int histo(struct buf *out, const char *name, const char *help, const struct histogram *h)
{
    int rc = buf_appendf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_N_BUCKETS && !rc; i++) {
        cum += h->buckets[i];
        rc = buf_appendf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_s[i],
                         (unsigned long long)cum);
    }
    if (!rc)
        rc = buf_appendf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                         (unsigned long long)h->count, name, h->sum_s, name,
                         (unsigned long long)h->count);
    return rc;
}

static uint64_t g_inflight(const struct node *n)
{
    return n->inflight;
}
static uint64_t g_faults(const struct node *n)
{
    return n->consecutive_faults;
}
static uint64_t g_limit(const struct node *n)
{
    return n->conc_limit;
}
static uint64_t g_busy(const struct node *n)
{
    return n->busy_total;
}
static uint64_t g_prefix_hits(const struct node *n)
{
    return n->route_prefix_hits_total;
}
static uint64_t g_route_fallbacks(const struct node *n)
{
    return n->route_fallbacks_total;
}
static uint64_t g_scrape_errors(const struct node *n)
{
    return n->sig.scrape_errors_total;
}

void metrics_render(const struct metrics *m, const struct registry *reg,
                    const struct admission *adm, const struct http_client_stats *pool,
                    unsigned active_requests, uint64_t now_ms, struct buf *out)
{
    int rc =
        buf_append_cstr(out, "# HELP drover_requests_total Client requests answered, by "
                             "model, node and status.\n# TYPE drover_requests_total counter\n");
    for (size_t i = 0; i < m->n_series && !rc; i++) {
        const struct req_series *s = &m->series[i];
        rc = buf_append_cstr(out, "drover_requests_total{model=\"");
        if (!rc) rc = label(out, s->model);
        if (!rc) rc = buf_append_cstr(out, "\",node=\"");
        if (!rc) rc = label(out, s->node);
        if (!rc)
            rc = buf_appendf(out, "\",status=\"%d\"} %llu\n", s->status, (unsigned long long)s->n);
    }
    if (!rc)
        rc = buf_appendf(
            out,
            "# HELP drover_attempts_total Upstream attempts.\n"
            "# TYPE drover_attempts_total counter\ndrover_attempts_total %llu\n"
            "# HELP drover_retries_total Attempts after the first of a request.\n"
            "# TYPE drover_retries_total counter\ndrover_retries_total %llu\n"
            "# HELP drover_validation_refusals_total Requests refused before any "
            "node saw them.\n# TYPE drover_validation_refusals_total counter\n"
            "drover_validation_refusals_total %llu\n"
            "# HELP drover_stream_errors_total Streams ended with an error event.\n"
            "# TYPE drover_stream_errors_total counter\n"
            "drover_stream_errors_total %llu\n"
            "# HELP drover_client_disconnects_total Clients that left before the "
            "end.\n# TYPE drover_client_disconnects_total counter\n"
            "drover_client_disconnects_total %llu\n"
            "# HELP drover_series_dropped_total Request series not recorded (cap).\n"
            "# TYPE drover_series_dropped_total counter\n"
            "drover_series_dropped_total %llu\n",
            (unsigned long long)m->attempts_total, (unsigned long long)m->retries_total,
            (unsigned long long)m->validation_refusals, (unsigned long long)m->stream_errors_total,
            (unsigned long long)m->client_disconnects_total, (unsigned long long)m->series_dropped);
    if (!rc)
        rc = buf_append_cstr(out, "# HELP drover_outcomes_total Upstream attempts by outcome "
                                  "class.\n# TYPE drover_outcomes_total counter\n");
    for (int c = 0; c < OUTCOME__COUNT && !rc; c++)
        rc = buf_appendf(out, "drover_outcomes_total{class=\"%s\"} %llu\n",
                         outcome_class_name((enum outcome_class)c),
                         (unsigned long long)m->outcomes[c]);
    if (!rc)
        rc = buf_append_cstr(out, "# HELP drover_node_up Node routable now (1) or not (0).\n"
                                  "# TYPE drover_node_up gauge\n");
    for (size_t i = 0; i < reg->n && !rc; i++) {
        const struct node *n = reg->nodes[i];
        if (n->admin == ADMIN_REMOVED) continue;
        rc = buf_append_cstr(out, "drover_node_up{node=\"");
        if (!rc) rc = label(out, n->name);
        if (!rc) rc = buf_appendf(out, "\"} %d\n", node_is_routable(reg, n, now_ms) ? 1 : 0);
    }
    if (!rc)
        rc = buf_append_cstr(out, "# HELP drover_node_state Node state on each axis (1 for the "
                                  "current value).\n# TYPE drover_node_state gauge\n");
    for (size_t i = 0; i < reg->n && !rc; i++) {
        const struct node *n = reg->nodes[i];
        if (n->admin == ADMIN_REMOVED) continue;
        rc = buf_append_cstr(out, "drover_node_state{node=\"");
        if (!rc) rc = label(out, n->name);
        if (!rc)
            rc = buf_appendf(out, "\",admin=\"%s\",liveness=\"%s\",excluded=\"%s\"} 1\n",
                             node_admin_name(n->admin), node_live_name(n->live),
                             n->excluded ? "true" : "false");
    }
    static const struct {
        const char *name, *help, *type;
        uint64_t (*get)(const struct node *n);
    } gauges[] = {
        {"drover_node_in_flight", "Requests in flight per node.", "gauge", g_inflight},
        {"drover_node_consecutive_faults", "Node faults in a row.", "gauge", g_faults},
        {"drover_node_concurrency_limit",
         "Adaptive concurrency limit per node (0: none learned; lowered by busy answers).", "gauge",
         g_limit},
        {"drover_node_busy_total", "Busy answers (429, 503 with Retry-After) per node.", "counter",
         g_busy},
        {"drover_node_cooled", "Node answering busy to everything, cooled now (1) or not (0).",
         "gauge", NULL},
        {"drover_node_route_prefix_hits_total",
         "cache_aware picks of the node for a prompt prefix it was sent before.", "counter",
         g_prefix_hits},
        {"drover_node_route_fallbacks_total",
         "Picks of the node where the routing policy's own choice was overruled (load imbalance, "
         "bounded load, no prompt or session key).",
         "counter", g_route_fallbacks},
        {"drover_node_engine_scrape_errors_total", "Failed scrapes of the engine's load endpoint.",
         "counter", g_scrape_errors},
    };
    for (size_t k = 0; k < sizeof gauges / sizeof gauges[0] && !rc; k++) {
        rc = buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", gauges[k].name, gauges[k].help,
                         gauges[k].name, gauges[k].type);
        for (size_t i = 0; i < reg->n && !rc; i++) {
            const struct node *n = reg->nodes[i];
            if (n->admin == ADMIN_REMOVED) continue;
            uint64_t v = gauges[k].get ? gauges[k].get(n) : node_is_cooled(n, now_ms);
            rc = buf_appendf(out, "%s{node=\"", gauges[k].name);
            if (!rc) rc = label(out, n->name);
            if (!rc) rc = buf_appendf(out, "\"} %llu\n", (unsigned long long)v);
        }
    }
    /* the engines' own load reports (signals.c), for nodes that gave one */
    static const struct {
        const char *name, *help;
        size_t off;
    } sig[] = {
        {"drover_node_engine_running", "Requests the engine reports running (busy slots).",
         offsetof(struct node_signals, running)},
        {"drover_node_engine_waiting", "Requests the engine reports queued (deferred, waiting).",
         offsetof(struct node_signals, waiting)},
        {"drover_node_engine_kv_usage_ratio", "KV cache use the engine reports (0..1).",
         offsetof(struct node_signals, kv_pm)},
    };
    for (size_t k = 0; k < sizeof sig / sizeof sig[0] && !rc; k++) {
        rc = buf_appendf(out, "# HELP %s %s\n# TYPE %s gauge\n", sig[k].name, sig[k].help,
                         sig[k].name);
        for (size_t i = 0; i < reg->n && !rc; i++) {
            const struct node *n = reg->nodes[i];
            int v = *(const int *)((const char *)&n->sig + sig[k].off);
            if (n->admin == ADMIN_REMOVED || !n->sig.at_ms || v < 0) continue;
            rc = buf_appendf(out, "%s{node=\"", sig[k].name);
            if (!rc) rc = label(out, n->name);
            if (!rc)
                rc = k == 2 ? buf_appendf(out, "\"} %.3f\n", v / 1000.0)
                            : buf_appendf(out, "\"} %d\n", v);
        }
    }
    if (!rc && adm)
        rc = buf_appendf(
            out,
            "# HELP drover_queue_waiting Requests waiting for capacity now.\n"
            "# TYPE drover_queue_waiting gauge\ndrover_queue_waiting %zu\n"
            "# HELP drover_queue_entered_total Requests that waited for capacity.\n"
            "# TYPE drover_queue_entered_total counter\ndrover_queue_entered_total %llu\n"
            "# HELP drover_queue_served_total Waiting requests that got a node.\n"
            "# TYPE drover_queue_served_total counter\ndrover_queue_served_total %llu\n"
            "# HELP drover_queue_timeouts_total Waits that ran out (503 capacity).\n"
            "# TYPE drover_queue_timeouts_total counter\ndrover_queue_timeouts_total %llu\n"
            "# HELP drover_queue_rejected_total Requests refused because the queue was full.\n"
            "# TYPE drover_queue_rejected_total counter\ndrover_queue_rejected_total %llu\n"
            "# HELP drover_queue_wait_seconds_total Time served requests spent waiting.\n"
            "# TYPE drover_queue_wait_seconds_total counter\n"
            "drover_queue_wait_seconds_total %.3f\n"
            "# HELP drover_queue_tenants Keys with requests waiting now.\n"
            "# TYPE drover_queue_tenants gauge\ndrover_queue_tenants %zu\n"
            "# HELP drover_queue_pushed_out_total Waits ended to give another key its share of a "
            "full queue (503 capacity).\n"
            "# TYPE drover_queue_pushed_out_total counter\ndrover_queue_pushed_out_total %llu\n",
            adm->n, (unsigned long long)adm->entered_total, (unsigned long long)adm->served_total,
            (unsigned long long)adm->timeouts_total, (unsigned long long)adm->rejected_total,
            (double)adm->wait_ms_sum / 1000.0, admission_tenants(adm),
            (unsigned long long)adm->pushed_out_total);
    if (!rc)
        rc = buf_appendf(out,
                         "# HELP drover_in_flight Client requests in flight.\n"
                         "# TYPE drover_in_flight gauge\ndrover_in_flight %u\n"
                         "# HELP drover_pool_connections Upstream connections.\n"
                         "# TYPE drover_pool_connections gauge\n"
                         "drover_pool_connections{state=\"idle\"} %u\n"
                         "drover_pool_connections{state=\"active\"} %u\n"
                         "# HELP drover_pool_connects_total Fresh upstream connections.\n"
                         "# TYPE drover_pool_connects_total counter\n"
                         "drover_pool_connects_total %llu\n"
                         "# HELP drover_pool_reuses_total Requests on a pooled connection.\n"
                         "# TYPE drover_pool_reuses_total counter\n"
                         "drover_pool_reuses_total %llu\n"
                         "# HELP drover_pool_tls_handshakes_total TLS handshakes with nodes.\n"
                         "# TYPE drover_pool_tls_handshakes_total counter\n"
                         "drover_pool_tls_handshakes_total %llu\n"
                         "# HELP drover_pool_tls_resumed_total TLS handshakes with nodes that "
                         "resumed a session.\n"
                         "# TYPE drover_pool_tls_resumed_total counter\n"
                         "drover_pool_tls_resumed_total %llu\n",
                         active_requests, pool ? pool->idle : 0, pool ? pool->active : 0,
                         (unsigned long long)(pool ? pool->connects : 0),
                         (unsigned long long)(pool ? pool->reuses : 0),
                         (unsigned long long)(pool ? pool->tls_handshakes : 0),
                         (unsigned long long)(pool ? pool->tls_resumed : 0));
    if (!rc)
        rc = histo(out, "drover_time_to_first_byte_seconds",
                   "Time from request to the first response byte sent to the client.", &m->ttfb);
    if (!rc)
        rc = histo(out, "drover_request_duration_seconds", "Time from request to its end.",
                   &m->total);
    (void)rc; /* a page past the cap is cut; the caller sizes the buffer generously */
}
