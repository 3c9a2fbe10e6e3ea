/*
 * buf.h: the one buffer type of the program.
 *
 * Linear: bytes are read from `rd` and written at `wr`; [rd, wr) is the unread data. `limit` is
 * the hard size the buffer may grow to and *is* the protocol limit: a parser that needs more
 * than `limit` bytes in one piece gets MOAT_E_LIMIT and the caller answers 414/431.
 *
 * Invariants: rd <= wr <= cap <= limit; base == NULL iff cap == 0.
 * Storage comes from malloc today; the worker keeps idle buffers in a free list so the steady
 * state allocates nothing (see serve/worker.c).
 */
#ifndef MOAT_CORE_BUF_H
#define MOAT_CORE_BUF_H

#include "core/err.h"
#include "core/slice.h"

#include <stddef.h>
#include <string.h>

struct moat_buf {
    char *base; /* owned */
    size_t cap;
    size_t rd;
    size_t wr;
    size_t limit;
};

void moat_buf_init(struct moat_buf *b, size_t limit);
/* Frees storage; the buffer stays usable (empty). */
void moat_buf_clear(struct moat_buf *b);
MOAT_MUST_USE moat_rc moat_buf_printf(struct moat_buf *b, const char *fmt, ...) MOAT_PRINTF(2, 3);
/* Move the unread data to the start; invalidates slices. */
void moat_buf_compact(struct moat_buf *b);
/* moat_buf_reserve's slow path. */
MOAT_MUST_USE moat_rc moat_buf_grow(struct moat_buf *b, size_t n);

/* Make room for at least `n` more bytes at wr, compacting or growing within limit.
 * Compaction moves data: slices into the buffer are invalid afterwards. Inline, as is
 * append: nearly every call finds the room there (an HTTP/2 request appends three pieces per
 * field), and the call into buf.c cost more than the copy. */
MOAT_MUST_USE static inline moat_rc moat_buf_reserve(struct moat_buf *b, size_t n)
{
    return b->cap - b->wr >= n ? MOAT_RC_OK : moat_buf_grow(b, n);
}
/* Append bytes (reserving as needed). */
MOAT_MUST_USE static inline moat_rc moat_buf_append(struct moat_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return MOAT_RC_OK;
    }
    if (b->cap - b->wr < n) {
        MOAT_TRY(moat_buf_grow(b, n));
    }
    memcpy(b->base + b->wr, p, n);
    b->wr += n;
    return MOAT_RC_OK;
}

static inline size_t moat_buf_len(const struct moat_buf *b)
{
    return b->wr - b->rd;
}
static inline char *moat_buf_rdptr(const struct moat_buf *b)
{
    return b->base + b->rd;
}
static inline char *moat_buf_wrptr(const struct moat_buf *b)
{
    return b->base + b->wr;
}
static inline size_t moat_buf_room(const struct moat_buf *b)
{
    return b->cap - b->wr;
}
/* Consume n bytes from the front; an empty buffer rewinds to 0 for free. */
static inline void moat_buf_consume(struct moat_buf *b, size_t n)
{
    b->rd += n;
    if (b->rd == b->wr) {
        b->rd = b->wr = 0;
    }
}

#endif
