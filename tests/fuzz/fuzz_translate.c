/* fuzz_translate — differential: a node's SSE stream translated for the client (Ollama chat,
 * Ollama generate, Anthropic) must give the same bytes, the same completion and the same
 * counts whether it is fed whole with the envelope memo on (the per-token path of translate.c)
 * or in pieces with the memo off (every chunk read in full). Byte 0 picks the mode and node
 * kind, byte 1 seeds the cuts; the rest is the stream. Any difference traps. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "gw/translate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_CUTS = 16, NOW_US = 5000000 };

struct run {
    struct buf out;
    int rc;
    bool done;
    int64_t prompt_tokens, completion_tokens, deltas;
    size_t n_tools;
    char finish[24];
};

/* created_at is the wall clock: blanked so two runs compare. */
static void blank_times(struct buf *b)
{
    static const char key[] = "\"created_at\":\"";
    for (size_t i = 0; b->p && i + sizeof key - 1 <= b->len; i++) {
        if (memcmp(b->p + i, key, sizeof key - 1) != 0) continue;
        for (i += sizeof key - 1; i < b->len && b->p[i] != '"'; i++) b->p[i] = 'T';
    }
}

static void run(enum api_kind kind, enum node_kind node, bool memo, const char *p, size_t len,
                const size_t *cuts, size_t ncuts, struct run *r)
{
    static const char *const bodies[] = {
        "{\"model\":\"m\",\"max_tokens\":9,\"stream\":true,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"prompt\":\"x\"}",
    };
    const char *body = kind == API_ANTHROPIC_MESSAGES ? bodies[0]
                       : kind == API_OLLAMA_CHAT      ? bodies[1]
                                                      : bodies[2];
    struct xlate x;
    memset(&x, 0, sizeof x);
    struct buf local;
    buf_init(&local, 1 << 16);
    char why[128];
    if (xlate_prepare(&x, xlate_mode_for(kind, node), node, strv_from_cstr(body), "m", "m", true, 1,
                      &local, why, sizeof why))
        __builtin_trap();
    buf_free(&local);
    if (!memo) {
        buf_free(&x.memo);
        buf_init(&x.memo, 0); /* nothing fits: every chunk is read in full */
    }
    buf_init(&r->out, 1 << 26);
    r->rc = 0;
    size_t from = 0;
    for (size_t c = 0; c <= ncuts && r->rc == 0; c++) {
        size_t to = c < ncuts ? cuts[c] : len;
        r->rc = xlate_stream(&x, p + from, to - from, NOW_US);
        if (buf_append(&r->out, x.out.p, x.out.len)) __builtin_trap();
        from = to;
    }
    blank_times(&r->out);
    r->done = x.done;
    r->prompt_tokens = x.prompt_tokens;
    r->completion_tokens = x.completion_tokens;
    r->deltas = x.deltas;
    r->n_tools = x.n_tools;
    memcpy(r->finish, x.finish, sizeof r->finish);
    xlate_free(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    static const enum api_kind kinds[] = {API_ANTHROPIC_MESSAGES, API_OLLAMA_CHAT,
                                          API_OLLAMA_GENERATE};
    enum api_kind kind = kinds[data[0] % 3];
    enum node_kind node = (data[0] & 4) ? NODE_KIND_LLAMACPP : NODE_KIND_OPENAI;
    const char *p = (const char *)data + 2;
    size_t len = size - 2;

    struct run a, b;
    run(kind, node, true, p, len, NULL, 0, &a);

    size_t cuts[MAX_CUTS];
    size_t ncuts = 1 + data[1] % MAX_CUTS, at = 0;
    uint32_t seed = data[1] * 2654435761u + 1;
    for (size_t i = 0; i < ncuts; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t left = len - at;
        at += left ? (seed >> 8) % (left + 1) / (ncuts - i > 1 ? 2 : 1) : 0;
        cuts[i] = at;
    }
    run(kind, node, false, p, len, cuts, ncuts, &b);

    if (a.rc != b.rc || a.done != b.done || a.prompt_tokens != b.prompt_tokens ||
        a.completion_tokens != b.completion_tokens || a.deltas != b.deltas ||
        a.n_tools != b.n_tools || memcmp(a.finish, b.finish, sizeof a.finish) != 0 ||
        !strv_eq(buf_view(&a.out), buf_view(&b.out)))
        __builtin_trap();
    buf_free(&a.out);
    buf_free(&b.out);
    return 0;
}
