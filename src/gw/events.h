/* events — the live request log: every answered client request becomes one event, kept in a
 * bounded ring (the last EVENTS_RING) and pushed as server-sent events to the subscribers of
 * GET /admin/v1/events; each event is also handed to the per-minute history (history.h).
 * A subscriber whose socket cannot keep up loses events (counted, and told in a comment
 * line), never the gateway's memory. The loop thread only. */
#ifndef DROVER_GW_EVENTS_H
#define DROVER_GW_EVENTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "net/http_server.h"

enum {
    EVENTS_RING = 512,           /* events kept for a new subscriber's backlog */
    EVENTS_MAX_SUBSCRIBERS = 32, /* open SSE streams; beyond: 503 */
    EVENTS_BACKLOG = 100,        /* events replayed to a new subscriber by default */
    EVENTS_HEARTBEAT_MS = 15000, /* a comment line keeps proxies from closing an idle stream */
};

struct gw;
struct node;

/* One answered request, as proxy.c's request log sees it. Every pointer is borrowed for the
 * duration of events_request(). */
struct req_event {
    uint64_t id;            /* the request id of the logs */
    const char *model;      /* as the client asked ("" when unknown) */
    const char *node;       /* the node that answered last, or NULL */
    int status;             /* what the client got */
    const char *outcome;    /* "success", "client_error", "stream_error", "client_gone", or the
                               gateway's own answer code ("upstream_failed", "capacity", …) */
    const char *last_class; /* the outcome class of the last attempt (DESIGN §4), or NULL */
    unsigned attempts;
    uint64_t dur_us;
    bool stream;
    struct node *const *tried; /* the nodes tried, in order */
    size_t n_tried;
    const struct buf *body; /* a buffered (non-stream) answer, for its usage; may be NULL */
};

/* Allocates g->events and g->history (which it feeds and ticks) and starts their timer. */
void events_start(struct gw *g);
/* Ends every subscriber's stream, frees the history and closes the timer; g->events is
 * freed from the close callback. Safe when events_start was never called. */
void events_stop(struct gw *g);

/* Records one answered request: the ring, the subscribers, the history. Does nothing when
 * the module is not started (unit tests of the proxy). */
void events_request(struct gw *g, const struct req_event *ev);

/* GET /admin/v1/events: an SSE stream. Query `backlog=N` (0..EVENTS_RING) replays the last N
 * events first (default EVENTS_BACKLOG); a `Last-Event-ID` header replays what came after it.
 * 503 when EVENTS_MAX_SUBSCRIBERS streams are open. */
void events_subscribe(struct gw *g, struct http_request *req);

/* Completion tokens named in an answer's usage ("completion_tokens", Ollama's "eval_count");
 * 0 when it names none. */
uint64_t events_body_tokens(const char *p, size_t len);

/* Unix epoch milliseconds on the loop's clock (the wall clock read once at start). */
uint64_t events_wall_ms(const struct gw *g);

#endif
