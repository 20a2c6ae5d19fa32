/* buf — capped growable buffer. Invariant: len <= max, and p[len] == 0 whenever p != NULL. */
#include "base/buf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"

void buf_init(struct buf *b, size_t max)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

/* Room for n more bytes: doubling for appends, exactly n for a known length. */
static int reserve(struct buf *b, size_t n, bool exact)
{
    if (n > b->max - b->len) return GW_E_LIMIT;
    size_t need = b->len + n;
    if (need <= b->cap && b->p) return 0;
    size_t cap = exact ? need : b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max) cap = b->max;
    b->p = xrealloc(b->p, cap + 1);
    b->p[b->len] = '\0';
    b->cap = cap;
    return 0;
}

int buf_reserve(struct buf *b, size_t n)
{
    return reserve(b, n, true);
}

int buf_grow(struct buf *b, size_t n)
{
    return reserve(b, n, false);
}

void buf_commit(struct buf *b, size_t k)
{
    b->len += k;
    b->p[b->len] = '\0';
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n, false);
    if (rc) return rc;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int buf_append_strv(struct buf *b, struct strv v)
{
    return buf_append(b, v.p, v.len);
}

int buf_append_cstr(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return GW_E_INVALID;
    if ((size_t)n < sizeof small) return buf_append(b, small, (size_t)n);
    int rc = reserve(b, (size_t)n, false);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
    }
    if (b->p) b->p[b->len] = '\0';
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->p) b->p[0] = '\0';
}

void buf_free(struct buf *b)
{
    xfree(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

struct strv buf_view(const struct buf *b)
{
    struct strv v = {b->p ? b->p : "", b->len};
    return v;
}

char *buf_take(struct buf *b, size_t *len_out)
{
    char *p = b->p ? b->p : xstrdup("");
    if (len_out) *len_out = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

size_t u64_to_dec(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

int buf_append_u64(struct buf *b, uint64_t v)
{
    char d[20];
    return buf_append(b, d, u64_to_dec(d, v));
}
