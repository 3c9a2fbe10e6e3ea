/*
 * buf.c: growth and compaction of struct moat_buf. Growth doubles up to `limit`, so a buffer
 * that is allowed 32 KiB but only ever sees 500-byte requests stays small.
 */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void moat_buf_init(struct moat_buf *b, size_t limit)
{
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
    b->limit = limit;
}

void moat_buf_clear(struct moat_buf *b)
{
    free(b->base);
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
}

void moat_buf_compact(struct moat_buf *b)
{
    if (b->rd == 0) {
        return;
    }
    size_t len = b->wr - b->rd;
    if (len > 0) {
        memmove(b->base, b->base + b->rd, len);
    }
    b->rd = 0;
    b->wr = len;
}

moat_rc moat_buf_grow(struct moat_buf *b, size_t n)
{
    if (b->cap - b->wr >= n) {
        return MOAT_RC_OK;
    }
    size_t len = b->wr - b->rd;
    if (n > b->limit || len > b->limit - n) {
        return moat_rc_of(MOAT_E_LIMIT);
    }
    if (b->cap - len >= n && b->rd > 0) {
        moat_buf_compact(b);
        return MOAT_RC_OK;
    }
    size_t want = b->cap ? b->cap : 1024;
    while (want < len + n) {
        want *= 2;
    }
    if (want > b->limit) {
        want = b->limit;
    }
    moat_buf_compact(b);
    char *p = realloc(b->base, want);
    if (p == NULL) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    b->base = p;
    b->cap = want;
    return MOAT_RC_OK;
}

moat_rc moat_buf_printf(struct moat_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    MOAT_TRY(moat_buf_reserve(b, (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf(b->base + b->wr, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->wr += (size_t)n;
    return MOAT_RC_OK;
}
