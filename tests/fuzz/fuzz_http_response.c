/* fuzz_http_response — the HTTP client's response parsing (net/http_client.c: llhttp in
 * response mode plus its callbacks: status and header caps, interim 1xx, HEAD/204/304, chunked,
 * Content-Length and EOF-delimited bodies, stray bytes, pause/resume with held body bytes).
 * The parse lives in static functions of http_client.c, so this file includes that .c (its
 * exported symbols then come from here, and the archive's copy is never pulled in) and drives
 * a conn with no socket: bytes go straight to on_read, EOF is on_read(UV_EOF), and the conn
 * "reads" as far as conn_set_reading is concerned (is_reading set by the driver; the driver
 * only feeds while it is set, which is what a paused stream means).
 * Byte 0: bit0 HEAD request, bit1 EOF after the bytes, bit2 a 128-byte head cap, bits 4-7 the
 * number of feeds (1-3); bytes 1 and 2: where the cuts go; the rest is the response.
 * Each input runs four ways (one feed / cut feeds, with / without a pause in on_head that is
 * lifted after each feed); the callbacks must keep their contract (on_head at most once and
 * first, on_data only after it, on_done at most once with the byte count delivered, error
 * codes from the documented set) and all four runs must see the same head, body and result. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/http_client.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FZ_SMALL_CAP = 128 };

struct outcome {
    bool pause_in_head;
    int n_heads, n_done;
    int status, http_minor;
    size_t n_headers;
    int64_t content_length;
    bool chunked;
    uint64_t head_hash;
    uint64_t body_bytes, body_hash;
    int err; /* valid when n_done */
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211u;
    return h;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void fz_on_head(struct http_call *call, const struct http_response_head *h, void *ctx)
{
    struct outcome *o = ctx;
    if (o->n_heads++ || o->n_done || o->body_bytes) __builtin_trap();
    if (h->status < 200 || h->status > 999) __builtin_trap(); /* 1xx are skipped, 101 fails */
    if (h->n_headers > HC_MAX_HEADERS) __builtin_trap();
    if (h->content_length < -1) __builtin_trap(); /* "-1 when absent" */
    o->status = h->status;
    o->http_minor = h->http_minor;
    o->n_headers = h->n_headers;
    o->content_length = h->content_length;
    o->chunked = h->chunked;
    uint64_t hh = 14695981039346656037u;
    for (size_t i = 0; i < h->n_headers; i++) {
        struct strv n = h->headers[i].name, v = h->headers[i].value;
        /* names are what llhttp 8 let through (it takes a lone CR in the status line as a
         * line end): callers that forward them filter with strv_is_token */
        if (v.len && (is_ows(v.p[0]) || is_ows(v.p[v.len - 1]))) __builtin_trap();
        hh = fnv(hh, &n.len, sizeof n.len);
        hh = fnv(hh, n.p, n.len);
        hh = fnv(hh, &v.len, sizeof v.len);
        hh = fnv(hh, v.p, v.len);
    }
    o->head_hash = hh;
    if (o->pause_in_head) http_call_pause(call);
}

static void fz_on_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    (void)call;
    struct outcome *o = ctx;
    if (!o->n_heads || o->n_done) __builtin_trap();
    o->body_bytes += len;
    o->body_hash = fnv(o->body_hash, p, len);
}

static void fz_on_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    (void)call;
    struct outcome *o = ctx;
    if (o->n_done++) __builtin_trap();
    if (res->got_head != (o->n_heads == 1)) __builtin_trap();
    if (res->body_bytes != o->body_bytes) __builtin_trap();
    if (res->err != 0 && res->err != GW_E_MALFORMED && res->err != GW_E_TRUNCATED) __builtin_trap();
    o->err = res->err;
}

static uv_loop_t fz_loop;

/* Lifts a pause from the loop, as the caller would: held bytes and a pending on_done come from
 * the drain idle handle. The virtual socket reads again (uv_read_start cannot fail here). */
static void resume(struct conn *c, struct http_call *call)
{
    http_call_resume(call);
    c->is_reading = true;
    (void)uv_run(&fz_loop, UV_RUN_NOWAIT);
}

static void run(const char *p, size_t len, const size_t *cuts, size_t n_cuts, bool is_head,
                bool eof, size_t max_head, bool pause, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    o->pause_in_head = pause;
    o->body_hash = 14695981039346656037u;
    struct http_client_config cfg;
    http_client_config_defaults(&cfg);
    cfg.max_response_header_bytes = max_head;
    struct http_client *cl;
    if (http_client_new(&fz_loop, &cfg, &cl)) __builtin_trap();
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_INET;
    struct conn *c = conn_new(cl, origin_get(cl, &ss, false, NULL));
    struct http_call *call = xcalloc(1, sizeof *call);
    static const struct http_client_callbacks cbs = {fz_on_head, fz_on_data, fz_on_done};
    call->cl = cl;
    call->conn = c;
    call->cb = cbs;
    call->ctx = o;
    call->is_head = is_head;
    c->call = call;
    c->state = CONN_ACTIVE;
    c->write_done = true;
    c->is_reading = true;
    cl->stats.active++;

    /* c stays allocated until the loop runs its close callbacks; the call until on_done */
    size_t from = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        if (o->n_done) break;
        if (!c->is_reading) { /* paused in on_head, or complete while paused */
            if (!call->is_paused) __builtin_trap();
            resume(c, call);
            if (o->n_done) break;
        }
        if (to > from) {
            char *copy = xmalloc(to - from); /* exact size: an overread is ASan's to see */
            memcpy(copy, p + from, to - from);
            uv_buf_t b = uv_buf_init(copy, (unsigned)(to - from));
            on_read((uv_stream_t *)&c->tcp, (ssize_t)(to - from), &b);
            xfree(copy);
        }
        from = to;
    }
    if (!o->n_done && call->is_paused) resume(c, call);
    if (!o->n_done && eof) on_read((uv_stream_t *)&c->tcp, UV_EOF, NULL);
    if (!o->n_done && call->is_paused) resume(c, call);
    http_client_free(cl); /* cancels a pending call, closes the conn */
    (void)uv_run(&fz_loop, UV_RUN_DEFAULT);
}

static void check(const struct outcome *o, bool is_head, bool eof, size_t max_head)
{
    if (eof && !o->n_done) __builtin_trap(); /* EOF ends every call */
    if (!o->n_done || o->err) return;
    if (!o->n_heads) __builtin_trap();
    (void)max_head;
    bool no_body = is_head || o->status == 204 || o->status == 304;
    if (no_body && o->body_bytes) __builtin_trap();
    if (!no_body && !o->chunked && o->content_length >= 0 &&
        o->body_bytes != (uint64_t)o->content_length)
        __builtin_trap();
}

static void same(const struct outcome *a, const struct outcome *b)
{
    if (a->n_heads != b->n_heads || a->n_done != b->n_done) __builtin_trap();
    if (a->n_done && a->err != b->err) __builtin_trap();
    if (a->n_heads && (a->status != b->status || a->http_minor != b->http_minor ||
                       a->n_headers != b->n_headers || a->content_length != b->content_length ||
                       a->chunked != b->chunked || a->head_hash != b->head_hash))
        __builtin_trap();
    /* a pending call may hold more or fewer bytes depending on the cuts, and a failed one
     * drops the bytes it held while paused */
    if (a->n_done && !a->err && (a->body_bytes != b->body_bytes || a->body_hash != b->body_hash))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool loop_ready;
    if (!loop_ready) {
        if (uv_loop_init(&fz_loop)) __builtin_trap();
        loop_ready = true;
    }
    if (size < 3) return 0;
    bool is_head = data[0] & 1, eof = data[0] & 2;
    size_t max_head = (data[0] & 4) ? FZ_SMALL_CAP : 64 * 1024;
    size_t n_cuts = (size_t)(data[0] >> 4) % 3;
    const char *p = (const char *)data + 3;
    size_t len = size - 3;
    size_t cuts[2] = {len * data[1] / 255, len * data[2] / 255};
    if (n_cuts == 2 && cuts[0] > cuts[1]) {
        size_t t = cuts[0];
        cuts[0] = cuts[1];
        cuts[1] = t;
    }

    struct outcome whole, split, whole_p, split_p;
    run(p, len, NULL, 0, is_head, eof, max_head, false, &whole);
    check(&whole, is_head, eof, max_head);
    run(p, len, cuts, n_cuts, is_head, eof, max_head, false, &split);
    check(&split, is_head, eof, max_head);
    run(p, len, NULL, 0, is_head, eof, max_head, true, &whole_p);
    check(&whole_p, is_head, eof, max_head);
    run(p, len, cuts, n_cuts, is_head, eof, max_head, true, &split_p);
    check(&split_p, is_head, eof, max_head);
    same(&whole, &split);
    same(&whole, &whole_p);
    same(&whole, &split_p);
    return 0;
}
