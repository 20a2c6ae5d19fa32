/* splitter — incremental SSE and NDJSON framing over arbitrary chunk boundaries.
 * Invariant: the events delivered (and the error, if any) depend only on the bytes fed, never
 * on how they were cut. A line complete inside one chunk is handed on in place (zero copy);
 * only a line that straddles chunks is gathered in `line`, capped at the same size, so both
 * paths refuse exactly the same lines. Likewise an event whose one data line lies in the chunk
 * being fed is dispatched from the chunk (data_view); its data is copied into `data` only when
 * a second data line joins it or the chunk ends before the event does. A CR that ends one chunk is
 * remembered (last_was_cr) so an LF that starts the next is not read as a second, blank line. Once
 * a feed fails or a callback stops it, the splitter stays stopped and keeps returning that value.
 * Owner thread only. */
#include "net/splitter.h"

#include <stdint.h>
#include <string.h>

#include "base/json.h"

/* ---- SSE ---------------------------------------------------------------------------------- */

void sse_init(struct sse_splitter *s, size_t max_line_bytes)
{
    buf_init(&s->line, max_line_bytes);
    /* An event's joined data and its name are bounded by the same cap as a line. */
    buf_init(&s->data, max_line_bytes);
    buf_init(&s->event, max_line_bytes);
    s->data_view = STRV_NULL;
    s->has_data = false;
    s->last_was_cr = false;
    s->started = false;
    s->failed = 0;
}

void sse_free(struct sse_splitter *s)
{
    buf_free(&s->line);
    buf_free(&s->data);
    buf_free(&s->event);
    s->data_view = STRV_NULL;
    s->has_data = false;
}

/* The data held as a view into the chunk goes into `data` (the chunk is about to go away, or
 * another line joins it). */
static int sse_keep_data(struct sse_splitter *s)
{
    if (!s->data_view.p) return 0;
    struct strv v = s->data_view;
    s->data_view = STRV_NULL;
    return buf_append_strv(&s->data, v) ? GW_E_LIMIT : 0;
}

static int sse_dispatch(struct sse_splitter *s, sse_event_fn *fn, void *ctx)
{
    int rc = 0;
    if (s->has_data)
        rc = fn(ctx, buf_view(&s->event), s->data_view.p ? s->data_view : buf_view(&s->data));
    /* WHATWG: a blank line clears both buffers, whether or not anything was dispatched. */
    if (s->data.len) buf_reset(&s->data);
    if (s->event.len) buf_reset(&s->event);
    s->data_view = STRV_NULL;
    s->has_data = false;
    return rc;
}

/* One complete line, without its terminator; in_place when it lies in the chunk being fed
 * (not gathered in s->line), so it outlives this call until the feed returns. */
static int sse_line(struct sse_splitter *s, struct strv line, bool in_place, sse_event_fn *fn,
                    void *ctx)
{
    if (!s->started) {
        s->started = true;
        if (strv_starts_with(line, STRV_LIT("\xEF\xBB\xBF"))) line = strv_sub(line, 3, line.len);
    }
    if (line.len == 0) return sse_dispatch(s, fn, ctx);
    if (line.p[0] == ':') return 0; /* comment (keep-alive pings) */
    struct strv name = line, value = STRV_NULL;
    long colon = strv_index(line, ':');
    if (colon >= 0) {
        name = strv_sub(line, 0, (size_t)colon);
        value = strv_sub(line, (size_t)colon + 1, line.len);
        if (value.len && value.p[0] == ' ') value = strv_sub(value, 1, value.len);
    }
    if (name.len == 4 && memcmp(name.p, "data", 4) == 0) {
        if (!s->has_data && in_place) { /* the common case: one data line, no copy */
            s->data_view = value;       /* "data" without a colon: p NULL, dispatched as "" */
            s->has_data = true;
            return 0;
        }
        if (sse_keep_data(s)) return GW_E_LIMIT;
        if (s->has_data && buf_append(&s->data, "\n", 1)) return GW_E_LIMIT;
        if (buf_append_strv(&s->data, value)) return GW_E_LIMIT;
        s->has_data = true;
    } else if (name.len == 5 && memcmp(name.p, "event", 5) == 0) {
        buf_reset(&s->event);
        if (buf_append_strv(&s->event, value)) return GW_E_LIMIT;
    }
    /* id, retry and unknown fields are ignored. */
    return 0;
}

/* Where the line starting at p[i] ends: its CR or LF, or len. *lf caches the first LF at or
 * after i (len if none; SIZE_MAX before the first search), so a chunk is searched about once
 * for each of the two bytes whatever its line endings (CR-only lines included): linear time. */
static size_t sse_line_end(const char *p, size_t len, size_t i, size_t *lf)
{
    if (*lf == SIZE_MAX || *lf < i) {
        const char *n = memchr(p + i, '\n', len - i);
        *lf = n ? (size_t)(n - p) : len;
    }
    const char *cr = memchr(p + i, '\r', *lf - i);
    return cr ? (size_t)(cr - p) : *lf;
}

int sse_feed(struct sse_splitter *s, const char *p, size_t len, sse_event_fn *fn, void *ctx)
{
    if (s->failed) return s->failed;
    size_t i = 0, lf = SIZE_MAX;
    if (len && s->last_was_cr) {
        if (p[0] == '\n') i = 1; /* second half of a CRLF cut between chunks */
        s->last_was_cr = false;
    }
    while (i < len) {
        size_t j = sse_line_end(p, len, i, &lf);
        if (j == len) { /* no terminator yet: keep the partial line */
            if (buf_append(&s->line, p + i, len - i)) return s->failed = GW_E_LIMIT;
            break;
        }
        struct strv line;
        bool in_place = s->line.len == 0;
        if (!in_place) {
            if (buf_append(&s->line, p + i, j - i)) return s->failed = GW_E_LIMIT;
            line = buf_view(&s->line);
        } else {
            if (j - i > s->line.max) return s->failed = GW_E_LIMIT;
            line = strv_make(p + i, j - i);
        }
        size_t next = j + 1;
        if (p[j] == '\r') {
            if (next < len) {
                if (p[next] == '\n') next++;
            } else {
                s->last_was_cr = true;
            }
        }
        int rc = sse_line(s, line, in_place, fn, ctx);
        if (!in_place) buf_reset(&s->line);
        if (rc) return s->failed = rc;
        i = next;
    }
    /* an event still open keeps its data past this chunk */
    if (sse_keep_data(s)) return s->failed = GW_E_LIMIT;
    return 0;
}

/* ---- NDJSON ------------------------------------------------------------------------------- */

/* `line` may hold one byte past the cap: a CR that the LF after it will drop. */
void ndjson_init(struct ndjson_splitter *s, size_t max_line_bytes)
{
    buf_init(&s->line, max_line_bytes < SIZE_MAX ? max_line_bytes + 1 : max_line_bytes);
    s->failed = 0;
}

void ndjson_free(struct ndjson_splitter *s)
{
    buf_free(&s->line);
}

static size_t ndjson_max(const struct ndjson_splitter *s)
{
    return s->line.max < SIZE_MAX ? s->line.max - 1 : s->line.max;
}

static int ndjson_line(struct ndjson_splitter *s, struct strv line, ndjson_line_fn *fn, void *ctx)
{
    if (line.len && line.p[line.len - 1] == '\r') line.len--;
    if (line.len > ndjson_max(s)) return GW_E_LIMIT;
    if (line.len == 0) return 0;
    return fn(ctx, line);
}

int ndjson_feed(struct ndjson_splitter *s, const char *p, size_t len, ndjson_line_fn *fn, void *ctx)
{
    if (s->failed) return s->failed;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(p + i, '\n', len - i);
        if (!nl) {
            if (buf_append(&s->line, p + i, len - i)) return s->failed = GW_E_LIMIT;
            break;
        }
        size_t j = (size_t)(nl - p);
        struct strv line = strv_make(p + i, j - i);
        if (s->line.len) {
            if (buf_append(&s->line, p + i, j - i)) return s->failed = GW_E_LIMIT;
            line = buf_view(&s->line);
        }
        int rc = ndjson_line(s, line, fn, ctx);
        buf_reset(&s->line);
        if (rc) return s->failed = rc;
        i = j + 1;
    }
    return 0;
}

int ndjson_finish(struct ndjson_splitter *s, ndjson_line_fn *fn, void *ctx)
{
    if (s->failed) return s->failed;
    if (s->line.len == 0) return 0;
    int rc = ndjson_line(s, buf_view(&s->line), fn, ctx);
    buf_reset(&s->line);
    if (rc) s->failed = rc;
    return rc;
}

bool sse_data_is_done(struct strv data)
{
    return strv_eq_cstr(data, "[DONE]");
}

bool ndjson_line_is_done(struct strv line)
{
    if (!memmem(line.p, line.len, "\"done\"", 6)) return false; /* most lines: no parse */
    struct json_reader r;
    json_reader_init(&r, line.p, line.len, 64, NULL);
    bool more = false, done = false;
    if (json_reader_enter(&r, JSON_K_OBJECT)) return false;
    for (;;) {
        char name[8];
        size_t nl;
        if (json_reader_member(&r, name, sizeof name, &nl, &more)) return false;
        if (!more) break;
        enum json_kind k;
        if (nl == 4 && memcmp(name, "done", 4) == 0 && json_reader_peek(&r, &k) == 0 &&
            k == JSON_K_BOOL) {
            if (json_reader_bool(&r, &done)) return false;
            continue;
        }
        if (json_reader_skip(&r)) return false;
    }
    return done && json_reader_end(&r) == 0; /* the last "done" wins, as parsers read it */
}
