/* metrics — the gateway's counters and histograms, rendered in Prometheus text format on the
 * admin listener's /metrics. Label sets are bounded: a model label is only ever a model some
 * node reported (others are counted as "_unknown"), and the table of label sets is capped.
 * The loop thread only. */
#ifndef DROVER_GW_METRICS_H
#define DROVER_GW_METRICS_H
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "gw/outcome.h"
#include "gw/registry.h"
#include "net/http_client.h"

enum { METRICS_N_BUCKETS = 14, METRICS_MAX_SERIES = 20000 };

struct histogram {
    uint64_t buckets[METRICS_N_BUCKETS]; /* cumulative on render, per-bucket here */
    uint64_t count;
    double sum_s;
};

struct req_series {
    char *model, *node; /* owned */
    int status;
    uint64_t n;
};

struct metrics {
    struct req_series *series;
    size_t n_series, cap_series;
    uint64_t series_dropped;
    uint64_t attempts_total, retries_total, validation_refusals;
    uint64_t outcomes[OUTCOME__COUNT];
    uint64_t stream_errors_total; /* streams ended with an error event */
    uint64_t client_disconnects_total;
    uint64_t busy_total; /* busy answers from nodes */
    struct histogram ttfb, total;
};

void metrics_init(struct metrics *m);
void metrics_free(struct metrics *m);
void metrics_count_request(struct metrics *m, const char *model, const char *node, int status);
void metrics_observe(struct histogram *h, uint64_t us);
struct admission;
void metrics_render(const struct metrics *m, const struct registry *reg,
                    const struct admission *adm, const struct http_client_stats *pool,
                    unsigned active_requests, uint64_t now_ms, struct buf *out);

#endif
