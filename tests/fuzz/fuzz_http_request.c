/* libFuzzer target for net/http_parse. The first two bytes seed how the rest is split into
 * feeds; every complete request is checked for internal consistency and parsing continues
 * with the pipelined bytes. The same input is then fed in one piece and must give the same
 * sequence of results (split invariance). Small caps so the cap paths are reached. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/arena.h"
#include "net/http_parse.h"

enum { MAX_HEAD = 512, MAX_BODY = 1024, MAX_RESULTS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    int rc;
    size_t n_requests;
    size_t lens[MAX_RESULTS];    /* body lengths */
    size_t targets[MAX_RESULTS]; /* target lengths */
    size_t n_headers[MAX_RESULTS];
};

static void check_request(const struct http_request *r)
{
    if (r->path.len > r->target.len) __builtin_trap();
    if (r->body.len > MAX_BODY || !r->body.p) __builtin_trap();
    for (size_t i = 0; i < r->n_headers; i++) {
        if (!strv_is_token(r->headers[i].name)) __builtin_trap();
        struct strv v = r->headers[i].value;
        if (v.len && (v.p[0] == ' ' || v.p[v.len - 1] == '\t')) __builtin_trap();
    }
}

static void run(const char *p, size_t len, uint32_t seed, struct outcome *o)
{
    struct http_parser ps;
    struct http_request req;
    memset(&req, 0, sizeof req);
    memset(o, 0, sizeof *o);
    arena_init(&req.arena, 1024, MAX_HEAD * 2 + MAX_BODY + 1024);
    http_parser_init(&ps, MAX_HEAD, MAX_BODY);
    http_parser_begin(&ps, &req);
    size_t off = 0;
    while (off < len && o->n_requests < MAX_RESULTS) {
        size_t n = len - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t step = 1 + (seed >> 16) % 17;
            if (step < n) n = step;
        }
        size_t used = 0;
        bool done = false;
        int rc = http_parser_feed(&ps, p + off, n, &used, &done);
        if (rc) {
            o->rc = rc;
            break;
        }
        if (used > n) __builtin_trap();
        off += used;
        if (done) {
            check_request(&req);
            o->lens[o->n_requests] = req.body.len;
            o->targets[o->n_requests] = req.target.len;
            o->n_headers[o->n_requests] = req.n_headers;
            o->n_requests++;
            arena_reset(&req.arena);
            http_parser_begin(&ps, &req);
        } else if (used != n) {
            __builtin_trap(); /* incomplete requests consume everything */
        }
    }
    http_parser_free(&ps);
    arena_free(&req.arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint32_t seed = (uint32_t)data[0] << 8 | data[1];
    const char *p = (const char *)data + 2;
    size_t len = size - 2;
    struct outcome split, whole;
    run(p, len, seed | 1, &split);
    run(p, len, 0, &whole);
    if (split.rc != whole.rc || split.n_requests != whole.n_requests) __builtin_trap();
    for (size_t i = 0; i < split.n_requests; i++) {
        if (split.lens[i] != whole.lens[i] || split.targets[i] != whole.targets[i] ||
            split.n_headers[i] != whole.n_headers[i])
            __builtin_trap();
    }
    return 0;
}
