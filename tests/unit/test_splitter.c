/* test_splitter — SSE and NDJSON framing: WHATWG line rules, caps, early stop, and split
 * invariance (every 2-way and 3-way cut, and byte by byte, gives the one-shot event list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "net/splitter.h"

enum { MAX_LINE = 4096, REC_MAX = 1 << 20 };

/* What the callbacks saw, serialized with length prefixes so any byte compares exactly. */
struct rec {
    struct buf out;
    int count;
    int stop_at; /* 1-based event index whose callback returns stop_rc; 0: never */
    int stop_rc;
};

static void rec_init(struct rec *r)
{
    buf_init(&r->out, REC_MAX);
    r->count = 0;
    r->stop_at = 0;
    r->stop_rc = 0;
}

static int rec_stop(struct rec *r)
{
    r->count++;
    return r->count == r->stop_at ? r->stop_rc : 0;
}

static int on_event(void *ctx, struct strv event, struct strv data)
{
    struct rec *r = ctx;
    assert_int_equal(buf_appendf(&r->out, "E%zu:", event.len), 0);
    assert_int_equal(buf_append_strv(&r->out, event), 0);
    assert_int_equal(buf_appendf(&r->out, "D%zu:", data.len), 0);
    assert_int_equal(buf_append_strv(&r->out, data), 0);
    assert_int_equal(buf_append(&r->out, "\n", 1), 0);
    return rec_stop(r);
}

static int on_line(void *ctx, struct strv line)
{
    struct rec *r = ctx;
    assert_int_equal(buf_appendf(&r->out, "L%zu:", line.len), 0);
    assert_int_equal(buf_append_strv(&r->out, line), 0);
    assert_int_equal(buf_append(&r->out, "\n", 1), 0);
    return rec_stop(r);
}

enum kind { SSE, NDJSON };

/* Feeds in[0..len) cut at cuts[0..ncuts) (ascending) and returns the first non-zero result
 * (for NDJSON, ndjson_finish's result when every feed returned 0). */
static int run(enum kind k, const char *in, size_t len, const size_t *cuts, size_t ncuts,
               size_t max_line, struct rec *r)
{
    struct sse_splitter s;
    struct ndjson_splitter n;
    int rc = 0;
    if (k == SSE)
        sse_init(&s, max_line);
    else
        ndjson_init(&n, max_line);
    size_t from = 0;
    for (size_t c = 0; c <= ncuts && rc == 0; c++) {
        size_t to = c < ncuts ? cuts[c] : len;
        if (k == SSE)
            rc = sse_feed(&s, in + from, to - from, on_event, r);
        else
            rc = ndjson_feed(&n, in + from, to - from, on_line, r);
        from = to;
    }
    if (k == NDJSON && rc == 0) rc = ndjson_finish(&n, on_line, r);
    if (k == SSE)
        sse_free(&s);
    else
        ndjson_free(&n);
    return rc;
}

static int run_one(enum kind k, const char *in, size_t len, size_t max_line, struct rec *r)
{
    return run(k, in, len, NULL, 0, max_line, r);
}

static void check_same(enum kind k, const char *in, size_t len, const size_t *cuts, size_t ncuts,
                       size_t max_line, int want_rc, struct strv want)
{
    struct rec r;
    rec_init(&r);
    int rc = run(k, in, len, cuts, ncuts, max_line, &r);
    if (rc != want_rc || !strv_eq(buf_view(&r.out), want)) {
        print_error("split at");
        for (size_t c = 0; c < ncuts; c++) print_error(" %zu", cuts[c]);
        print_error(": rc %d (want %d)\n got: %s\nwant: %.*s\n", rc, want_rc,
                    r.out.p ? r.out.p : "", STRV_FMT(want));
        fail();
    }
    buf_free(&r.out);
}

/* The invariance check: one-shot result == every 2-way, 3-way and byte-by-byte result. */
static void assert_split_invariant(enum kind k, const char *in, size_t len, size_t max_line,
                                   int expect_events)
{
    struct rec ref;
    rec_init(&ref);
    int ref_rc = run_one(k, in, len, max_line, &ref);
    assert_int_equal(ref.count, expect_events);
    struct strv want = buf_view(&ref.out);
    for (size_t i = 0; i <= len; i++) {
        size_t c2[1] = {i};
        check_same(k, in, len, c2, 1, max_line, ref_rc, want);
        for (size_t j = i; j <= len; j++) {
            size_t c3[2] = {i, j};
            check_same(k, in, len, c3, 2, max_line, ref_rc, want);
        }
    }
    size_t *bytes = xmalloc((len + 1) * sizeof *bytes);
    for (size_t i = 0; i < len; i++) bytes[i] = i + 1;
    check_same(k, in, len, bytes, len ? len - 1 : 0, max_line, ref_rc, want);
    xfree(bytes);
    buf_free(&ref.out);
}

static void sse_expect(const char *in, size_t len, size_t max_line, int want_rc, const char *want)
{
    struct rec r;
    rec_init(&r);
    assert_int_equal(run_one(SSE, in, len, max_line, &r), want_rc);
    assert_string_equal(r.out.p ? r.out.p : "", want);
    buf_free(&r.out);
}

#define SSE_EXPECT(lit, want) sse_expect((lit), sizeof(lit) - 1, MAX_LINE, 0, (want))

/* ---- realistic streams ------------------------------------------------------------------- */

#define CHUNK(delta, fin)                                                                          \
    "{\"id\":\"c9\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"               \
    "\"delta\":" delta ",\"finish_reason\":" fin "}]}"

static const char openai_lf[] = "data: " CHUNK(
    "{\"role\":\"assistant\",\"content\":\"\"}",
    "null") "\n\n"
            "data: " CHUNK("{\"content\":\"Hel\"}",
                           "null") "\n\n"
                                   "data: " CHUNK("{\"content\":\"lo\"}",
                                                  "null") "\n\n"
                                                          "data: " CHUNK(
                                                              "{}", "\"stop\"") "\n\n"
                                                                                "data: [DONE]\n\n";

static const char openai_crlf[] =
    ": OPENROUTER PROCESSING\r\n\r\n"
    "data: " CHUNK("{\"content\":\"Hi\"}",
                   "null") "\r\n\r\n"
                           "data: " CHUNK("{}", "\"stop\"") "\r\n\r\n"
                                                            "data: [DONE]\r\n\r\n";

static const char openai_cr[] =
    "data: " CHUNK("{\"content\":\"a\\nb\"}", "null") "\r\r"
                                                      "event: ping\r: hb\r\r"
                                                      "data: [DONE]\r\r";

static const char sse_mixed[] = "\xEF\xBB\xBF: stream opened\n"
                                "retry: 3000\n"
                                "event: message_start\n"
                                "data: {\"type\":\"message_start\"}\n\n"
                                ": keep-alive\n\n"
                                "data: first line\r\n"
                                "data:second line\r"
                                "data\n"
                                "id: 42\n\n"
                                "event: error\n"
                                "data: {\"error\":{\"message\":\"boom\"}}\n\n"
                                "event: orphan\n\n"
                                "data: never dispatched, no blank line";

static const char ollama[] =
    "{\"model\":\"llama3.2:1b\",\"created_at\":\"2024-11-22T20:54:58.1Z\",\"message\":{\"role\":"
    "\"assistant\",\"content\":\"Hel\"},\"done\":false}\n"
    "{\"model\":\"llama3.2:1b\",\"created_at\":\"2024-11-22T20:54:58.2Z\",\"message\":{\"role\":"
    "\"assistant\",\"content\":\"lo\"},\"done\":false}\r\n"
    "\n"
    "{\"model\":\"llama3.2:1b\",\"created_at\":\"2024-11-22T20:54:58.3Z\",\"message\":{\"role\":"
    "\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"total_duration\":"
    "123456,\"eval_count\":2}\n";

static const char ollama_unterminated[] = "{\"response\":\"a\",\"done\":false}\n"
                                          "\r\n"
                                          "{\"response\":\"\",\"done\":true}";

static void test_openai_stream_events(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r);
    assert_int_equal(run_one(SSE, openai_lf, sizeof openai_lf - 1, MAX_LINE, &r), 0);
    assert_int_equal(r.count, 5);
    const char *last = strstr(r.out.p, "E0:D6:[DONE]\n");
    assert_non_null(last);
    assert_int_equal(last[strlen("E0:D6:[DONE]\n")], '\0'); /* [DONE] is the last event */
    assert_non_null(strstr(r.out.p, "\"content\":\"Hel\""));
    buf_free(&r.out);
}

static void test_line_ending_variants_agree(void **state)
{
    (void)state;
    /* The same events whatever the line ends. */
    SSE_EXPECT("data: a\n\ndata: b\n\n", "E0:D1:a\nE0:D1:b\n");
    SSE_EXPECT("data: a\r\n\r\ndata: b\r\n\r\n", "E0:D1:a\nE0:D1:b\n");
    SSE_EXPECT("data: a\r\rdata: b\r\r", "E0:D1:a\nE0:D1:b\n");
    SSE_EXPECT("data: a\r\n\rdata: b\n\r\n", "E0:D1:a\nE0:D1:b\n");
}

static void test_split_invariance_openai(void **state)
{
    (void)state;
    assert_split_invariant(SSE, openai_lf, sizeof openai_lf - 1, MAX_LINE, 5);
}

static void test_split_invariance_crlf(void **state)
{
    (void)state;
    assert_split_invariant(SSE, openai_crlf, sizeof openai_crlf - 1, MAX_LINE, 3);
}

static void test_split_invariance_cr(void **state)
{
    (void)state;
    assert_split_invariant(SSE, openai_cr, sizeof openai_cr - 1, MAX_LINE, 2);
}

static void test_split_invariance_mixed(void **state)
{
    (void)state;
    assert_split_invariant(SSE, sse_mixed, sizeof sse_mixed - 1, MAX_LINE, 3);
}

static void test_split_invariance_ndjson(void **state)
{
    (void)state;
    assert_split_invariant(NDJSON, ollama, sizeof ollama - 1, MAX_LINE, 3);
    assert_split_invariant(NDJSON, ollama_unterminated, sizeof ollama_unterminated - 1, MAX_LINE,
                           2);
}

static void test_split_invariance_of_errors(void **state)
{
    (void)state;
    /* The cap refuses the same line wherever the input is cut, after the same events. */
    static const char sse_long[] = "data: ok\n\ndata: 0123456789abcdef\n\ndata: after\n\n";
    assert_split_invariant(SSE, sse_long, sizeof sse_long - 1, 16, 1);
    static const char nd_long[] = "{\"a\":1}\r\n0123456789\r\n{\"b\":2}\n";
    assert_split_invariant(NDJSON, nd_long, sizeof nd_long - 1, 9, 1);
    assert_split_invariant(NDJSON, nd_long, sizeof nd_long - 1, 10, 3);
}

/* ---- SSE rules ----------------------------------------------------------------------------- */

static void test_sse_fields(void **state)
{
    (void)state;
    SSE_EXPECT("data:x\n\n", "E0:D1:x\n");      /* no space after the colon */
    SSE_EXPECT("data:  x \n\n", "E0:D3: x \n"); /* only one space is dropped */
    SSE_EXPECT("data\n\n", "E0:D0:\n");         /* no colon: empty value */
    SSE_EXPECT("data:\n\n", "E0:D0:\n");        /* an empty data line still dispatches */
    SSE_EXPECT("data: a\ndata: b\ndata\ndata: c\n\n", "E0:D6:a\nb\n\nc\n");
    SSE_EXPECT("Data: x\n\nDATA: y\n\n", "");         /* field names are case-sensitive */
    SSE_EXPECT("data : x\n\n", "");                   /* "data " is not "data" */
    SSE_EXPECT("data: a:b: c\n\n", "E0:D6:a:b: c\n"); /* only the first colon splits */
    SSE_EXPECT("id: 1\nretry: 10\nfoo: bar\n\n", "");
}

static void test_sse_event_names(void **state)
{
    (void)state;
    SSE_EXPECT("event: delta\ndata: 1\n\ndata: 2\n\n", "E5:deltaD1:1\nE0:D1:2\n");
    SSE_EXPECT("event: a\nevent: b\ndata: x\n\n", "E1:bD1:x\n"); /* the last one wins */
    /* An event with no data is dropped and its name does not leak into the next one. */
    SSE_EXPECT("event: lonely\n\ndata: x\n\n", "E0:D1:x\n");
    SSE_EXPECT("data: x\nevent: late\n\n", "E4:lateD1:x\n");
}

static void test_sse_comments_and_blank_lines(void **state)
{
    (void)state;
    SSE_EXPECT(":\n: ping\n\n\n\n:data: no\n\n", "");
    SSE_EXPECT("data: a\n: between\ndata: b\n\n", "E0:D3:a\nb\n");
}

static void test_sse_unfinished_event_not_dispatched(void **state)
{
    (void)state;
    SSE_EXPECT("data: a\n\ndata: b\n", "E0:D1:a\n");
    SSE_EXPECT("data: a\n\ndata: b", "E0:D1:a\n");
}

static void test_sse_bom(void **state)
{
    (void)state;
    SSE_EXPECT("\xEF\xBB\xBF"
               "data: x\n\n",
               "E0:D1:x\n");
    /* Only one, only at the very start. */
    SSE_EXPECT("\xEF\xBB\xBF\xEF\xBB\xBF"
               "data: x\n\n",
               "");
    SSE_EXPECT("data: x\n\n\xEF\xBB\xBF"
               "data: y\n\n",
               "E0:D1:x\n");
    SSE_EXPECT("\xEF\xBB\xBF\n\ndata: x\n\n", "E0:D1:x\n");
    /* A BOM cut across three feeds. */
    struct sse_splitter s;
    struct rec r;
    rec_init(&r);
    sse_init(&s, MAX_LINE);
    assert_int_equal(sse_feed(&s, "\xEF", 1, on_event, &r), 0);
    assert_int_equal(sse_feed(&s, "\xBB", 1, on_event, &r), 0);
    assert_int_equal(sse_feed(&s,
                              "\xBF"
                              "data: x\n\n",
                              10, on_event, &r),
                     0);
    assert_string_equal(r.out.p, "E0:D1:x\n");
    sse_free(&s);
    buf_free(&r.out);
}

static void test_sse_cr_at_chunk_end(void **state)
{
    (void)state;
    struct sse_splitter s;
    struct rec r;
    rec_init(&r);
    sse_init(&s, MAX_LINE);
    /* CR | LF across feeds, with an empty feed between: one line end, not two. */
    assert_int_equal(sse_feed(&s, "data: a\r", 8, on_event, &r), 0);
    assert_int_equal(sse_feed(&s, NULL, 0, on_event, &r), 0);
    assert_int_equal(sse_feed(&s, "\ndata: b\r", 9, on_event, &r), 0);
    assert_int_equal(r.count, 0);
    /* CR | CR: the second one is a blank line and dispatches. */
    assert_int_equal(sse_feed(&s, "\r", 1, on_event, &r), 0);
    assert_string_equal(r.out.p, "E0:D3:a\nb\n");
    /* CR | LF where the LF is the first byte and the blank line follows. */
    assert_int_equal(sse_feed(&s, "data: c\r", 8, on_event, &r), 0);
    assert_int_equal(sse_feed(&s, "\n", 1, on_event, &r), 0);
    assert_int_equal(sse_feed(&s, "\n", 1, on_event, &r), 0);
    assert_string_equal(r.out.p, "E0:D3:a\nb\nE0:D1:c\n");
    sse_free(&s);
    buf_free(&r.out);
}

/* An event's data line lies in the chunk it came in (dispatched without a copy): when the
 * event ends in a later chunk, the data must not depend on the first chunk's memory, which
 * the caller reuses (a socket read buffer) between feeds. */
static void test_sse_data_outlives_chunk(void **state)
{
    (void)state;
    struct sse_splitter s;
    struct rec r;
    rec_init(&r);
    sse_init(&s, MAX_LINE);
    char chunk[32];
    memcpy(chunk, "data: abc\n", 10);
    assert_int_equal(sse_feed(&s, chunk, 10, on_event, &r), 0);
    memset(chunk, 'X', sizeof chunk);
    memcpy(chunk, "\n", 1);
    assert_int_equal(sse_feed(&s, chunk, 1, on_event, &r), 0);
    assert_string_equal(r.out.p, "E0:D3:abc\n");
    /* a second data line in the next chunk joins the first */
    memcpy(chunk, "event: e\ndata: d1\n", 18);
    assert_int_equal(sse_feed(&s, chunk, 18, on_event, &r), 0);
    memset(chunk, 'Y', sizeof chunk);
    memcpy(chunk, "data: d2\n\n", 10);
    assert_int_equal(sse_feed(&s, chunk, 10, on_event, &r), 0);
    assert_string_equal(r.out.p, "E0:D3:abc\nE1:eD5:d1\nd2\n");
    /* both lines in one chunk, and "data" without a colon (an empty line of data) */
    assert_int_equal(sse_feed(&s, "data\ndata: z\n\ndata\n\n", 20, on_event, &r), 0);
    assert_string_equal(r.out.p, "E0:D3:abc\nE1:eD5:d1\nd2\nE0:D2:\nz\nE0:D0:\n");
    sse_free(&s);
    buf_free(&r.out);
}

static void test_sse_line_cap(void **state)
{
    (void)state;
    /* Exactly max bytes is fine; one more is GW_E_LIMIT. */
    sse_expect("data: 0123456789\n\n", 18, 16, 0, "E0:D10:0123456789\n");
    sse_expect("data: 0123456789a\n\n", 19, 16, GW_E_LIMIT, "");
    /* A long line with no end yet fails as soon as it passes the cap. */
    struct sse_splitter s;
    struct rec r;
    rec_init(&r);
    sse_init(&s, 16);
    assert_int_equal(sse_feed(&s, "data: ok\n\n", 10, on_event, &r), 0);
    assert_int_equal(sse_feed(&s, "data: 0123456789", 16, on_event, &r), 0);
    assert_int_equal(sse_feed(&s, "a", 1, on_event, &r), GW_E_LIMIT);
    /* and stays failed */
    assert_int_equal(sse_feed(&s, "\n\ndata: x\n\n", 11, on_event, &r), GW_E_LIMIT);
    assert_int_equal(r.count, 1);
    sse_free(&s);
    buf_free(&r.out);
}

static void test_sse_data_cap(void **state)
{
    (void)state;
    /* Each line fits, but the joined data of one event may not pass the cap either. */
    sse_expect("data: 0123456789\ndata: 0123\n\n", 29, 16, 0, "E0:D15:0123456789\n0123\n");
    sse_expect("data: 0123456789\ndata: 012345\n\n", 31, 16, GW_E_LIMIT, "");
}

static void test_sse_callback_stops(void **state)
{
    (void)state;
    struct sse_splitter s;
    struct rec r;
    rec_init(&r);
    r.stop_at = 2;
    r.stop_rc = 42;
    sse_init(&s, MAX_LINE);
    assert_int_equal(sse_feed(&s, openai_lf, sizeof openai_lf - 1, on_event, &r), 42);
    assert_int_equal(r.count, 2);
    /* No more events, ever: the splitter stays stopped with the callback's value. */
    assert_int_equal(sse_feed(&s, "data: x\n\n", 9, on_event, &r), 42);
    assert_int_equal(r.count, 2);
    sse_free(&s);
    buf_free(&r.out);
}

static void test_sse_reuse_after_free(void **state)
{
    (void)state;
    struct sse_splitter s;
    struct rec r;
    rec_init(&r);
    sse_init(&s, MAX_LINE);
    assert_int_equal(sse_feed(&s, "data: partial", 13, on_event, &r), 0);
    sse_free(&s);
    sse_init(&s, MAX_LINE);
    assert_int_equal(sse_feed(&s, "data: x\n\n", 9, on_event, &r), 0);
    assert_string_equal(r.out.p, "E0:D1:x\n");
    sse_free(&s);
    buf_free(&r.out);
}

/* ---- NDJSON ------------------------------------------------------------------------------- */

static void nd_expect(const char *in, size_t len, size_t max_line, int want_rc, const char *want)
{
    struct rec r;
    rec_init(&r);
    assert_int_equal(run_one(NDJSON, in, len, max_line, &r), want_rc);
    assert_string_equal(r.out.p ? r.out.p : "", want);
    buf_free(&r.out);
}

#define ND_EXPECT(lit, want) nd_expect((lit), sizeof(lit) - 1, MAX_LINE, 0, (want))

static void test_ndjson_lines(void **state)
{
    (void)state;
    ND_EXPECT("{\"a\":1}\n{\"b\":2}\n", "L7:{\"a\":1}\nL7:{\"b\":2}\n");
    ND_EXPECT("a\r\nb\r\n", "L1:a\nL1:b\n"); /* CR before LF dropped */
    ND_EXPECT("a\rb\n", "L3:a\rb\n");        /* a lone CR is data */
    ND_EXPECT("\n\r\n\n a \n", "L3: a \n");  /* empty lines skipped, spaces kept */
    ND_EXPECT("a\nlast", "L1:a\nL4:last\n"); /* finish delivers the tail */
    ND_EXPECT("a\nlast\r", "L1:a\nL4:last\n");
    ND_EXPECT("", "");
}

static void test_ndjson_finish(void **state)
{
    (void)state;
    struct ndjson_splitter n;
    struct rec r;
    rec_init(&r);
    ndjson_init(&n, MAX_LINE);
    assert_int_equal(ndjson_finish(&n, on_line, &r), 0); /* nothing pending: no call */
    assert_int_equal(r.count, 0);
    assert_int_equal(ndjson_feed(&n, "{\"done\":", 8, on_line, &r), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(ndjson_feed(&n, "true}", 5, on_line, &r), 0);
    assert_int_equal(ndjson_finish(&n, on_line, &r), 0);
    assert_string_equal(r.out.p, "L13:{\"done\":true}\n");
    assert_int_equal(ndjson_finish(&n, on_line, &r), 0); /* the tail is delivered once */
    assert_int_equal(r.count, 1);
    ndjson_free(&n);
    buf_free(&r.out);
}

static void test_ndjson_line_cap(void **state)
{
    (void)state;
    nd_expect("0123456789\n", 11, 10, 0, "L10:0123456789\n");
    nd_expect("0123456789\r\n", 12, 10, 0, "L10:0123456789\n"); /* the CR does not count */
    nd_expect("0123456789a\n", 12, 10, GW_E_LIMIT, "");
    nd_expect("ok\n0123456789a", 14, 10, GW_E_LIMIT, "L2:ok\n"); /* tail checked at finish */
    struct ndjson_splitter n;
    struct rec r;
    rec_init(&r);
    ndjson_init(&n, 10);
    assert_int_equal(ndjson_feed(&n, "0123456789ab", 12, on_line, &r), GW_E_LIMIT);
    assert_int_equal(ndjson_feed(&n, "\nok\n", 4, on_line, &r), GW_E_LIMIT);
    assert_int_equal(ndjson_finish(&n, on_line, &r), GW_E_LIMIT);
    assert_int_equal(r.count, 0);
    ndjson_free(&n);
    buf_free(&r.out);
}

static void test_ndjson_callback_stops(void **state)
{
    (void)state;
    struct ndjson_splitter n;
    struct rec r;
    rec_init(&r);
    r.stop_at = 1;
    r.stop_rc = 3;
    ndjson_init(&n, MAX_LINE);
    assert_int_equal(ndjson_feed(&n, ollama, sizeof ollama - 1, on_line, &r), 3);
    assert_int_equal(r.count, 1);
    assert_int_equal(ndjson_feed(&n, "x\n", 2, on_line, &r), 3);
    assert_int_equal(ndjson_finish(&n, on_line, &r), 3);
    assert_int_equal(r.count, 1);
    ndjson_free(&n);
    buf_free(&r.out);
}

static void test_stop_is_split_invariant(void **state)
{
    (void)state;
    /* Stopping at the 2nd event gives the same events and value for every cut. */
    struct rec ref;
    rec_init(&ref);
    ref.stop_at = 2;
    ref.stop_rc = 9;
    assert_int_equal(run_one(SSE, sse_mixed, sizeof sse_mixed - 1, MAX_LINE, &ref), 9);
    for (size_t i = 0; i <= sizeof sse_mixed - 1; i++) {
        struct rec r;
        rec_init(&r);
        r.stop_at = 2;
        r.stop_rc = 9;
        size_t cut[1] = {i};
        assert_int_equal(run(SSE, sse_mixed, sizeof sse_mixed - 1, cut, 1, MAX_LINE, &r), 9);
        assert_true(strv_eq(buf_view(&r.out), buf_view(&ref.out)));
        buf_free(&r.out);
    }
    buf_free(&ref.out);
}

/* Property (issue 12 §2): no byte sequence inside a JSON string value ever completes a
 * stream. Random strings, seeded with the terminal markers and their pieces, are put in a
 * JSON string (escaped as an engine escapes them), framed as an SSE event and as an NDJSON
 * line, and fed at random split points: no terminal event is ever seen; the real ones are. */
struct term_ctx {
    int sse_done, nd_done;
};
static int term_sse(void *ctx, struct strv ev, struct strv data)
{
    (void)ev;
    ((struct term_ctx *)ctx)->sse_done += sse_data_is_done(data);
    return 0;
}
static int term_nd(void *ctx, struct strv line)
{
    ((struct term_ctx *)ctx)->nd_done += ndjson_line_is_done(line);
    return 0;
}

static void feed_split(const char *p, size_t len, unsigned *seed, struct term_ctx *c)
{
    struct sse_splitter sse;
    struct ndjson_splitter nd;
    sse_init(&sse, 1 << 20);
    ndjson_init(&nd, 1 << 20);
    size_t at = 0;
    while (at < len) {
        *seed = *seed * 1103515245u + 12345u;
        size_t n = 1 + (*seed >> 16) % 17;
        if (n > len - at) n = len - at;
        assert_int_equal(sse_feed(&sse, p + at, n, term_sse, c), 0);
        assert_int_equal(ndjson_feed(&nd, p + at, n, term_nd, c), 0);
        at += n;
    }
    assert_int_equal(ndjson_finish(&nd, term_nd, c), 0);
    sse_free(&sse);
    ndjson_free(&nd);
}

static void json_escape(struct buf *b, const char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    assert_int_equal(buf_append_cstr(b, "\""), 0);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        char e[7] = {0};
        if (ch == '"' || ch == '\\') {
            e[0] = '\\', e[1] = (char)ch;
        } else if (ch < 0x20) {
            e[0] = '\\', e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[ch >> 4],
            e[5] = hex[ch & 15];
        } else {
            e[0] = (char)ch;
        }
        assert_int_equal(buf_append(b, e, strlen(e)), 0);
    }
    assert_int_equal(buf_append_cstr(b, "\""), 0);
}

static void test_no_string_completes_a_stream(void **state)
{
    (void)state;
    static const char *const pieces[] = {"data: [DONE]",
                                         "\n\n",
                                         "\n",
                                         "\r\n",
                                         "[DONE]",
                                         "\"done\":true",
                                         "{\"done\": true}",
                                         "data:",
                                         "}",
                                         "{",
                                         "\"",
                                         "\\",
                                         "x",
                                         " ",
                                         "\r"};
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char text[256];
        size_t tl = 0;
        for (int k = 0; k < 8; k++) {
            seed = seed * 1103515245u + 12345u;
            const char *pc = pieces[(seed >> 16) % (sizeof pieces / sizeof pieces[0])];
            size_t pl = strlen(pc);
            if (tl + pl >= sizeof text) break;
            memcpy(text + tl, pc, pl);
            tl += pl;
        }
        struct buf b;
        buf_init(&b, 1 << 16);
        assert_int_equal(buf_append_cstr(&b, "data: {\"content\":"), 0);
        json_escape(&b, text, tl);
        assert_int_equal(buf_append_cstr(&b, ",\"done\":false}\n\n"), 0);
        struct term_ctx c = {0, 0};
        feed_split(b.p, b.len, &seed, &c);
        assert_int_equal(c.sse_done, 0);
        assert_int_equal(c.nd_done, 0);
        buf_free(&b);
    }
    /* the real terminal events complete */
    struct term_ctx c = {0, 0};
    const char *sse_end = "data: {\"x\":1}\n\ndata: [DONE]\n\n";
    feed_split(sse_end, strlen(sse_end), &seed, &c);
    assert_int_equal(c.sse_done, 1);
    c = (struct term_ctx){0, 0};
    const char *nd_end = "{\"message\":{\"content\":\"hi\"},\"done\":false}\n{\"done\":true}\n";
    feed_split(nd_end, strlen(nd_end), &seed, &c);
    assert_int_equal(c.nd_done, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_stream_events),
        cmocka_unit_test(test_no_string_completes_a_stream),
        cmocka_unit_test(test_line_ending_variants_agree),
        cmocka_unit_test(test_split_invariance_openai),
        cmocka_unit_test(test_split_invariance_crlf),
        cmocka_unit_test(test_split_invariance_cr),
        cmocka_unit_test(test_split_invariance_mixed),
        cmocka_unit_test(test_split_invariance_ndjson),
        cmocka_unit_test(test_split_invariance_of_errors),
        cmocka_unit_test(test_sse_fields),
        cmocka_unit_test(test_sse_event_names),
        cmocka_unit_test(test_sse_comments_and_blank_lines),
        cmocka_unit_test(test_sse_unfinished_event_not_dispatched),
        cmocka_unit_test(test_sse_bom),
        cmocka_unit_test(test_sse_cr_at_chunk_end),
        cmocka_unit_test(test_sse_line_cap),
        cmocka_unit_test(test_sse_data_cap),
        cmocka_unit_test(test_sse_callback_stops),
        cmocka_unit_test(test_sse_reuse_after_free),
        cmocka_unit_test(test_ndjson_lines),
        cmocka_unit_test(test_ndjson_finish),
        cmocka_unit_test(test_sse_data_outlives_chunk),
        cmocka_unit_test(test_ndjson_line_cap),
        cmocka_unit_test(test_ndjson_callback_stops),
        cmocka_unit_test(test_stop_is_split_invariant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
