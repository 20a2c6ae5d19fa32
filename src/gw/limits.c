/* limits — the rounds that reconcile client keys' limits with the other gateways (limits.h). One
 * round at a time: a periodic timer (keys.sync_interval) and a one-shot timer for refusals (at
 * most every LIMITS_WAKE_GAP_MS) submit a round when none is in flight; a refusal during a round
 * submits the next one as soon as it completes. The leader also prunes old counters once an
 * hour. Both timers are embedded here; the struct is freed by the last close callback. The loop
 * thread only. */
#include "gw/limits.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/keys.h"
#include "store/store_keys.h"

enum {
    LIMITS_WAKE_GAP_MS = 20,         /* rounds after refusals, at most this often */
    LIMITS_PRUNE_EVERY_MS = 3600000, /* the leader deletes old counters */
    LIMITS_KEEP_DAYS = 62,           /* counters kept: the longest budget period and a month */
    LIMITS_LIVE_MIN_MS = 2000,       /* a gateway silent this long is not counted live */
};

struct limits {
    struct gw *g;
    uv_timer_t tick, wake;
    unsigned handles; /* open timers: freed when the last one closed */
    bool busy;        /* a round is in the store's queue */
    bool rewake;      /* a refusal came during it */
    uint64_t interval_ms, last_submit_ms, last_prune_ms;
    uint64_t rounds, failures;
    bool failing;
};

struct round {
    struct gw *g;
    struct store_limits_round *r;
};

static void submit(struct gw *g, struct limits *l, bool final);

static void round_done(void *ctx, int rc, const char *msg)
{
    struct round *c = ctx;
    struct gw *g = c->g;
    keys_fleet_apply(g, c->r, rc);
    struct limits *l = g->limits;
    if (l) {
        l->busy = false;
        if (rc) {
            l->failures++;
            if (!l->failing)
                LOGW("limits_round_failed",
                     "err=\"%s\" then=\"each gateway spends what it holds and borrows its share\"",
                     msg ? msg : "?");
            l->failing = true;
        } else if (l->failing) {
            LOGI("limits_round_ok", "after_failures=%llu", (unsigned long long)l->failures);
            l->failing = false;
        }
        if (l->rewake) {
            l->rewake = false;
            limits_wake(g);
        }
    }
    store_limits_round_free(c->r);
    xfree(c);
}

static void submit(struct gw *g, struct limits *l, bool final)
{
    if (l->busy || !g->store || !g->keys) return;
    struct store_limits_round *r = xcalloc(1, sizeof *r);
    r->origin = xstrdup(g->origin);
    keys_fleet_report(g, r, clock_wall_ms(), final);
    r->live_ms = (int64_t)(4 * l->interval_ms > LIMITS_LIVE_MIN_MS ? 4 * l->interval_ms
                                                                   : LIMITS_LIVE_MIN_MS);
    uint64_t now = gw_now_ms(g);
    if (g->is_leader && !final &&
        (!l->last_prune_ms || now - l->last_prune_ms >= LIMITS_PRUNE_EVERY_MS)) {
        r->prune_before_day = r->today - LIMITS_KEEP_DAYS;
        l->last_prune_ms = now ? now : 1;
    }
    l->busy = true;
    l->last_submit_ms = now;
    l->rounds++;
    struct round *c = xmalloc(sizeof *c);
    *c = (struct round){.g = g, .r = r};
    store_limits_sync(g->store, r, round_done, c);
}

static void on_tick(uv_timer_t *t)
{
    struct limits *l = t->data;
    submit(l->g, l, false);
}

void limits_wake(struct gw *g)
{
    struct limits *l = g->limits;
    if (!l) return;
    if (l->busy) {
        l->rewake = true;
        return;
    }
    if (uv_is_active((uv_handle_t *)&l->wake)) return;
    uint64_t since = gw_now_ms(g) - l->last_submit_ms;
    uv_timer_start(&l->wake, on_tick, since >= LIMITS_WAKE_GAP_MS ? 0 : LIMITS_WAKE_GAP_MS - since,
                   0);
}

int limits_start(struct gw *g)
{
    if (!g->sync || !g->store || !g->keys) return 0; /* one gateway: its own limits */
    struct limits *l = xcalloc(1, sizeof *l);
    l->g = g;
    l->interval_ms = g->cfg.keys_sync_ms ? g->cfg.keys_sync_ms : 250;
    uv_timer_init(g->loop, &l->tick);
    uv_timer_init(g->loop, &l->wake);
    l->tick.data = l->wake.data = l;
    l->handles = 2;
    g->limits = l;
    keys_fleet_enable(g, l->interval_ms);
    uv_timer_start(&l->tick, on_tick, l->interval_ms, l->interval_ms);
    LOGI("limits_started", "interval_ms=%llu", (unsigned long long)l->interval_ms);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct limits *l = h->data;
    if (--l->handles == 0) xfree(l);
}

void limits_stop(struct gw *g)
{
    struct limits *l = g->limits;
    if (!l) return;
    /* a last round gives back what this gateway holds and counts what it spent (the store runs it
     * before it closes); one in flight already carries most of it */
    submit(g, l, true);
    g->limits = NULL;
    uv_timer_stop(&l->tick);
    uv_timer_stop(&l->wake);
    uv_close((uv_handle_t *)&l->tick, on_closed);
    uv_close((uv_handle_t *)&l->wake, on_closed);
}
