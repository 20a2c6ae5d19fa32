/* history — the last day of traffic in one ring of per-minute buckets (1,440 of them), for
 * the dashboard's charts and `drover top`: requests, request outcomes, latency p50/p99, time
 * to first byte p50/p99, tokens per second, and per (node, model) requests and tokens. The
 * last hour is the newest 60 buckets. Everything is bounded: latency lives in 40 log-spaced
 * buckets per minute, TTFT and attempt outcome classes are read as per-minute differences of
 * the Prometheus counters (struct metrics) at each minute's close, and at most
 * HISTORY_MAX_SERIES (node, model) pairs are named (the rest count as "_other"). Nothing is
 * stored: a restart starts an empty history. The loop thread only. */
#ifndef DROVER_GW_HISTORY_H
#define DROVER_GW_HISTORY_H
#include <stdint.h>

#include "base/buf.h"
#include "gw/metrics.h"

enum {
    HISTORY_MINUTES = 1440,      /* one day */
    HISTORY_LAT_BUCKETS = 40,    /* 1 ms × 1.5^i */
    HISTORY_MAX_SERIES = 256,    /* named (node, model) pairs over the process's life */
    HISTORY_SERIES_PER_MIN = 24, /* pairs counted apart within one minute */
    HISTORY_TICK_MS = 5000,      /* how often serve closes finished minutes */
};

/* The request outcome groups of the charts. */
enum history_outcome {
    HIST_SUCCESS = 0,
    HIST_CLIENT_ERROR, /* 4xx: the client's mistake, the gateway's validation */
    HIST_UNAVAILABLE,  /* 503: no node could take it (capacity, none healthy, loading) */
    HIST_UPSTREAM,     /* 502 and other 5xx: nodes failed */
    HIST_STREAM_ERROR, /* a stream that broke after bytes went out */
    HIST_CLIENT_GONE,  /* the client left first */
    HIST__COUNT
};

struct history;

/* m is borrowed for the history's life (the gateway's counters). */
struct history *history_new(const struct metrics *m, uint64_t wall_ms);
void history_free(struct history *h); /* NULL is fine */

/* Counts one answered request in the minute of wall_ms. */
void history_record(struct history *h, uint64_t wall_ms, const char *node, const char *model,
                    int status, const char *outcome, uint64_t dur_us, uint64_t tokens);

/* Closes every minute before wall_ms's (reading the counters' differences into the minute
 * that just ended). */
void history_tick(struct history *h, uint64_t wall_ms);

/* The window's points, oldest first, each step_min minutes wide (the newest includes the
 * minute in progress): {"window_s","step_s","now_ms","points":[…],"series":[…]}. window_min
 * 1..HISTORY_MINUTES, step_min 1..window_min. */
int history_json(struct history *h, uint64_t wall_ms, unsigned window_min, unsigned step_min,
                 struct buf *out) WUR;

const char *history_outcome_name(enum history_outcome o);

#endif
