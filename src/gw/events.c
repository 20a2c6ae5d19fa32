/* events — the ring is a fixed array of rendered JSON lines (1 MiB, rendered through one
 * reused buffer: no allocation per request) indexed by sequence number modulo EVENTS_RING, so a
 * replay is a walk back from the newest; subscribers are a fixed table of open SSE responses. A
 * subscriber over its socket's high-water mark skips events (counted and reported in a `: dropped
 * N` comment once it drains) instead of queueing them. Streams end when the gateway stops
 * (events_stop) or the client leaves (abort callback). The loop thread only. */
#include "gw/events.h"

#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "gw/history.h"
#include "gw/registry.h"

enum { EVENT_MAX_BYTES = 2048 };

struct subscriber {
    struct http_request *req; /* NULL: free slot */
    struct events *ev;
    uint64_t dropped; /* events skipped since the last report */
};

struct events {
    struct gw *g;
    uv_timer_t heartbeat;
    char ring[EVENTS_RING][EVENT_MAX_BYTES]; /* rendered events ("{…}"), NUL-terminated */
    struct buf scratch;                      /* reused for rendering: no malloc per request */
    uint64_t seq; /* sequence number of the next event; the newest is seq-1 */
    struct subscriber subs[EVENTS_MAX_SUBSCRIBERS];
    uint64_t wall_at_start_ms, loop_at_start_ms;
    unsigned ticks;
};

uint64_t events_wall_ms(const struct gw *g)
{
    if (!g->events) return clock_wall_ms();
    return g->events->wall_at_start_ms + (gw_now_ms(g) - g->events->loop_at_start_ms);
}

static void write_event(struct subscriber *s, uint64_t seq, const char *json)
{
    char head[48];
    int n = snprintf(head, sizeof head, "id: %llu\ndata: ", (unsigned long long)seq);
    if (http_stream_write(s->req, head, (size_t)n) || http_stream_write(s->req, json, strlen(json)))
        return; /* the abort callback follows */
    (void)http_stream_write(s->req, "\n\n", 2);
}

/* Every HISTORY_TICK_MS: close finished minutes of the history; every EVENTS_HEARTBEAT_MS:
 * a comment line to each subscriber (and the count of what it missed). */
static void on_tick(uv_timer_t *t)
{
    struct events *ev = t->data;
    if (ev->g->history) history_tick(ev->g->history, events_wall_ms(ev->g));
    if (++ev->ticks < EVENTS_HEARTBEAT_MS / HISTORY_TICK_MS) return;
    ev->ticks = 0;
    for (size_t i = 0; i < EVENTS_MAX_SUBSCRIBERS; i++) {
        struct subscriber *s = &ev->subs[i];
        if (!s->req || http_request_write_blocked(s->req)) continue;
        char line[64];
        int n = s->dropped ? snprintf(line, sizeof line, ": dropped %llu\n\n",
                                      (unsigned long long)s->dropped)
                           : snprintf(line, sizeof line, ": ping\n\n");
        s->dropped = 0;
        (void)http_stream_write(s->req, line, (size_t)n);
    }
}

void events_start(struct gw *g)
{
    struct events *ev = xcalloc(1, sizeof *ev);
    ev->g = g;
    buf_init(&ev->scratch, EVENT_MAX_BYTES);
    ev->wall_at_start_ms = clock_wall_ms();
    ev->loop_at_start_ms = gw_now_ms(g);
    uv_timer_init(g->loop, &ev->heartbeat);
    ev->heartbeat.data = ev;
    uv_timer_start(&ev->heartbeat, on_tick, HISTORY_TICK_MS, HISTORY_TICK_MS);
    g->events = ev;
    g->history = history_new(&g->metrics, events_wall_ms(g));
}

static void on_closed(uv_handle_t *h)
{
    struct events *ev = h->data;
    buf_free(&ev->scratch);
    xfree(ev);
}

void events_stop(struct gw *g)
{
    struct events *ev = g->events;
    if (!ev) return;
    for (size_t i = 0; i < EVENTS_MAX_SUBSCRIBERS; i++) {
        struct http_request *req = ev->subs[i].req;
        if (!req) continue;
        ev->subs[i].req = NULL;
        http_request_on_abort(req, NULL, NULL);
        (void)http_stream_end(req);
    }
    g->events = NULL;
    history_free(g->history);
    g->history = NULL;
    uv_close((uv_handle_t *)&ev->heartbeat, on_closed);
}

uint64_t events_body_tokens(const char *p, size_t len)
{
    static const char *const keys[] = {"\"completion_tokens\":", "\"eval_count\":"};
    if (!p) return 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        size_t kl = strlen(keys[k]);
        const char *at = memmem(p, len, keys[k], kl);
        if (!at) continue;
        const char *q = at + kl, *end = p + len;
        while (q < end && *q == ' ') q++;
        uint64_t v = 0;
        size_t digits = 0;
        while (q < end && *q >= '0' && *q <= '9' && digits < 12)
            v = v * 10 + (uint64_t)(*q++ - '0'), digits++;
        if (digits) return v;
    }
    return 0;
}

static int render(const struct req_event *e, uint64_t seq, uint64_t wall_ms, uint64_t tokens,
                  struct buf *o)
{
    int rc =
        buf_appendf(o, "{\"seq\":%llu,\"id\":%llu,\"ts\":%llu,\"model\":", (unsigned long long)seq,
                    (unsigned long long)e->id, (unsigned long long)wall_ms);
    const char *model = e->model ? e->model : "";
    if (!rc) rc = json_append_str(o, model, strnlen(model, 256));
    if (!rc) rc = buf_append_cstr(o, ",\"node\":");
    if (!rc)
        rc = e->node ? json_append_str(o, e->node, strlen(e->node)) : buf_append_cstr(o, "null");
    if (!rc)
        rc = buf_appendf(o,
                         ",\"status\":%d,\"attempts\":%u,\"dur_ms\":%.1f,\"stream\":%s,"
                         "\"tokens\":%llu,\"outcome\":",
                         e->status, e->attempts, (double)e->dur_us / 1000.0,
                         e->stream ? "true" : "false", (unsigned long long)tokens);
    const char *oc = e->outcome ? e->outcome : "";
    if (!rc) rc = json_append_str(o, oc, strlen(oc));
    if (!rc) rc = buf_append_cstr(o, ",\"class\":");
    if (!rc)
        rc = e->last_class ? json_append_str(o, e->last_class, strlen(e->last_class))
                           : buf_append_cstr(o, "null");
    if (!rc) rc = buf_append_cstr(o, ",\"tried\":[");
    for (size_t i = 0; i < e->n_tried && !rc; i++) {
        if (i) rc = buf_append_cstr(o, ",");
        const char *nm = e->tried[i] ? e->tried[i]->name : "";
        if (!rc) rc = json_append_str(o, nm, strlen(nm));
    }
    if (!rc) rc = buf_append_cstr(o, "]}");
    return rc;
}

void events_request(struct gw *g, const struct req_event *e)
{
    struct events *ev = g->events;
    if (!ev) return;
    uint64_t wall = events_wall_ms(g);
    uint64_t tokens = e->body && e->status >= 200 && e->status < 300
                          ? events_body_tokens(e->body->p, e->body->len)
                          : 0;
    if (g->history)
        history_record(g->history, wall, e->node, e->model, e->status, e->outcome, e->dur_us,
                       tokens);
    struct buf *b = &ev->scratch;
    buf_reset(b);
    if (render(e, ev->seq, wall, tokens, b) || buf_append(b, "", 1))
        return; /* an event past the cap (a request that tried very many nodes) is not shown */
    size_t slot = ev->seq % EVENTS_RING;
    memcpy(ev->ring[slot], b->p, b->len);
    uint64_t seq = ev->seq++;
    for (size_t i = 0; i < EVENTS_MAX_SUBSCRIBERS; i++) {
        struct subscriber *s = &ev->subs[i];
        if (!s->req) continue;
        if (http_request_write_blocked(s->req)) {
            s->dropped++;
            continue;
        }
        write_event(s, seq, ev->ring[slot]);
    }
}

static void on_abort(struct http_request *req, void *ctx)
{
    struct subscriber *s = ctx;
    (void)req;
    s->req = NULL;
    s->dropped = 0;
}

static uint64_t query_u64(struct strv q, const char *key, uint64_t dflt)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < q.len; i++) {
        if ((i == 0 || q.p[i - 1] == '&') && memcmp(q.p + i, key, kl) == 0 && q.p[i + kl] == '=') {
            uint64_t v = 0;
            size_t j = i + kl + 1, d = 0;
            while (j < q.len && q.p[j] >= '0' && q.p[j] <= '9' && d < 12)
                v = v * 10 + (uint64_t)(q.p[j++] - '0'), d++;
            return d ? v : dflt;
        }
    }
    return dflt;
}

void events_subscribe(struct gw *g, struct http_request *req)
{
    struct events *ev = g->events;
    struct subscriber *s = NULL;
    for (size_t i = 0; ev && i < EVENTS_MAX_SUBSCRIBERS && !s; i++)
        if (!ev->subs[i].req) s = &ev->subs[i];
    if (!s) {
        gw_reply_error(req, 503, "capacity", NULL, "too many event streams are open");
        return;
    }
    uint64_t backlog = query_u64(req->query, "backlog", EVENTS_BACKLOG);
    struct strv last = http_request_header(req, "Last-Event-ID");
    if (last.p && last.len) {
        uint64_t id = 0;
        if (!strv_to_u64(last, &id)) backlog = id + 1 < ev->seq ? ev->seq - (id + 1) : 0;
    }
    if (backlog > EVENTS_RING) backlog = EVENTS_RING;
    if (backlog > ev->seq) backlog = ev->seq;
    struct http_header h[3] = {
        {STRV_LIT("Content-Type"), STRV_LIT("text/event-stream")},
        {STRV_LIT("Cache-Control"), STRV_LIT("no-cache")},
        {STRV_LIT("X-Accel-Buffering"), STRV_LIT("no")},
    };
    if (http_stream_start(req, 200, h, 3, -1)) return;
    s->req = req;
    s->ev = ev;
    s->dropped = 0;
    http_request_on_abort(req, on_abort, s);
    if (http_stream_write(req, "retry: 2000\n\n", 13)) return;
    for (uint64_t q = ev->seq - backlog; q < ev->seq && s->req; q++)
        write_event(s, q, ev->ring[q % EVENTS_RING]);
}
