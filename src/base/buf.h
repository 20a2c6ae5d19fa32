/* buf — growable byte buffer with a hard cap. Appends past `max` fail with GW_E_LIMIT and
 * leave the buffer unchanged, so a stranger can never grow one without bound. The bytes are
 * always followed by a NUL (not counted in len) so they can be handed to C APIs. The owner
 * thread only. */
#ifndef DROVER_BASE_BUF_H
#define DROVER_BASE_BUF_H
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/strv.h"

struct buf {
    char *p;    /* owned; NULL until the first append */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated (excluding the NUL slot) */
    size_t max; /* hard cap on len */
};

void buf_init(struct buf *b, size_t max);
int buf_append(struct buf *b, const void *p, size_t n) WUR;
/* Room for n more bytes in one allocation (a known Content-Length). A hint: past max it does
 * nothing and returns GW_E_LIMIT, and the append that would pass max reports it again. */
int buf_reserve(struct buf *b, size_t n);
/* Room for n more bytes, grown as an append grows (doubling), for a writer that fills them in
 * place: they go at b->p + b->len, and buf_commit(b, k) then takes the k <= n bytes written.
 * GW_E_LIMIT (and b unchanged) when n more would pass max. */
int buf_grow(struct buf *b, size_t n) WUR;
void buf_commit(struct buf *b, size_t k);
int buf_append_strv(struct buf *b, struct strv v) WUR;
int buf_append_cstr(struct buf *b, const char *s) WUR;
int buf_appendf(struct buf *b, const char *fmt, ...) WUR PRINTF_LIKE(2, 3);
/* v in decimal (hot paths: no printf). */
int buf_append_u64(struct buf *b, uint64_t v) WUR;
/* Writes v in decimal to out (at least 20 bytes, no NUL) and returns the digit count. */
size_t u64_to_dec(char *out, uint64_t v);
/* Drops the first n bytes (n > len drops all). */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b); /* len = 0, keeps memory */
void buf_free(struct buf *b);  /* releases memory; the buf may be reused after buf_init */
struct strv buf_view(const struct buf *b);
/* Hands the bytes to the caller (owned, NUL-terminated, never NULL) and empties b. */
char *buf_take(struct buf *b, size_t *len_out);

#endif
