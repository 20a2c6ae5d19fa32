/* splitter — incremental SSE and NDJSON framing. Both give the same events whatever the chunk
 * boundaries of the input (a test feeds every split of the same bytes and compares). Lines are
 * capped (max_line_bytes); a longer line is an error (GW_E_LIMIT) and the splitter stays
 * failed. Owner thread only. */
#ifndef DROVER_NET_SPLITTER_H
#define DROVER_NET_SPLITTER_H
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/strv.h"

/* Return non-zero to stop feeding; feed returns that value, and so does every later feed (the
 * splitter stays stopped). Views are borrowed for the duration of the call only. */
typedef int sse_event_fn(void *ctx, struct strv event, struct strv data);
typedef int ndjson_line_fn(void *ctx, struct strv line);

/* SSE (WHATWG event-stream): lines end in LF, CR or CRLF; "data:" lines join with LF; a blank
 * line dispatches; ':' lines are comments; "event:" sets the event name; a leading UTF-8 BOM
 * is dropped; events with no data line are not dispatched. `event` is empty when the event
 * named none (WHATWG's default type "message"); id, retry and unknown fields are ignored. An
 * event's joined data and its name are capped at max_line_bytes like a line (GW_E_LIMIT). An
 * unfinished event at the end of the stream is never dispatched, so there is no finish call. */
struct sse_splitter {
    struct buf line;
    struct buf data;
    struct buf event;
    struct strv data_view; /* the event's only data line, still in the caller's chunk */
    bool has_data;
    bool last_was_cr;
    bool started;
    int failed;
};
void sse_init(struct sse_splitter *s, size_t max_line_bytes);
int sse_feed(struct sse_splitter *s, const char *p, size_t len, sse_event_fn *fn, void *ctx) WUR;
void sse_free(struct sse_splitter *s);

/* NDJSON: lines end in LF (a CR before it is dropped); empty lines are skipped; a final line
 * without LF is delivered by ndjson_finish. */
struct ndjson_splitter {
    struct buf line;
    int failed;
};
void ndjson_init(struct ndjson_splitter *s, size_t max_line_bytes);
int ndjson_feed(struct ndjson_splitter *s, const char *p, size_t len, ndjson_line_fn *fn,
                void *ctx) WUR;
int ndjson_finish(struct ndjson_splitter *s, ndjson_line_fn *fn, void *ctx) WUR;
void ndjson_free(struct ndjson_splitter *s);

/* Terminal events (DESIGN §4 "completion only at event boundaries"): an SSE event whose data
 * is exactly [DONE]; an NDJSON line that parses to an object whose "done" member is true.
 * Given whole events or lines as the splitters deliver them, never raw bytes, so the same
 * text inside a JSON string is content. */
bool sse_data_is_done(struct strv data);
bool ndjson_line_is_done(struct strv line);

#endif
