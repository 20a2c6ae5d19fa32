/* fuzz_sse — differential: the SSE splitter must give the same events and the same result
 * whether the input comes in one piece, in pieces cut where the first byte says, or byte by
 * byte. Byte 0 seeds the cuts; byte 1 picks the line cap and an early stop; the rest is the
 * stream. Any difference traps. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "net/splitter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rec {
    struct buf out;
    int count;
    int stop_at;
};

static int on_event(void *ctx, struct strv event, struct strv data)
{
    struct rec *r = ctx;
    /* Length-prefixed so any byte compares exactly; the cap only bounds the fuzzer's memory. */
    if (buf_appendf(&r->out, "E%zu:%.*sD%zu:", event.len, STRV_FMT(event), data.len) ||
        buf_append_strv(&r->out, data))
        __builtin_trap();
    r->count++;
    return r->count == r->stop_at ? 77 : 0;
}

static int run(const char *p, size_t len, const size_t *cuts, size_t ncuts, size_t max_line,
               struct rec *r)
{
    struct sse_splitter s;
    sse_init(&s, max_line);
    int rc = 0;
    size_t from = 0;
    for (size_t c = 0; c <= ncuts && rc == 0; c++) {
        size_t to = c < ncuts ? cuts[c] : len;
        rc = sse_feed(&s, p + from, to - from, on_event, r);
        from = to;
    }
    sse_free(&s);
    return rc;
}

static void check(const char *p, size_t len, const size_t *cuts, size_t ncuts, size_t max_line,
                  int stop_at, int want_rc, const struct buf *want)
{
    struct rec r = {.count = 0, .stop_at = stop_at};
    buf_init(&r.out, 1 << 24);
    int rc = run(p, len, cuts, ncuts, max_line, &r);
    if (rc != want_rc || !strv_eq(buf_view(&r.out), buf_view(want))) __builtin_trap();
    buf_free(&r.out);
}

enum { MAX_CUTS = 16 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint32_t seed = data[0] * 2654435761u + 1;
    size_t max_line = (data[1] & 0x80) ? 4096 : 1 + (data[1] & 0x3f);
    int stop_at = (data[1] & 0x40) ? 1 + (data[1] & 3) : 0;
    const char *p = (const char *)data + 2;
    size_t len = size - 2;

    struct rec ref = {.count = 0, .stop_at = stop_at};
    buf_init(&ref.out, 1 << 24);
    int ref_rc = run(p, len, NULL, 0, max_line, &ref);

    /* Cuts chosen from byte 0: a few ascending positions (repeats make empty feeds). */
    size_t cuts[MAX_CUTS];
    size_t ncuts = 1 + data[0] % MAX_CUTS;
    size_t at = 0;
    for (size_t i = 0; i < ncuts; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t left = len - at;
        at += left ? (seed >> 8) % (left + 1) / (ncuts - i > 1 ? 2 : 1) : 0;
        cuts[i] = at;
    }
    check(p, len, cuts, ncuts, max_line, stop_at, ref_rc, &ref.out);

    /* A 2-way cut after each of the first 64 line ends: where CR/LF pairs may be torn apart. */
    for (size_t i = 0, seen = 0; i < len && seen < 64; i++) {
        if (p[i] == '\r' || p[i] == '\n') {
            seen++;
            size_t c1[1] = {i + 1};
            check(p, len, c1, 1, max_line, stop_at, ref_rc, &ref.out);
        }
    }

    /* Byte by byte. */
    if (len > 1 && len <= 4096) {
        size_t bytes[4096];
        for (size_t i = 0; i + 1 < len; i++) bytes[i] = i + 1;
        check(p, len, bytes, len - 1, max_line, stop_at, ref_rc, &ref.out);
    }
    buf_free(&ref.out);
    return 0;
}
