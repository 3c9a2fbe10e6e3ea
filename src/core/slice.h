/*
 * slice.h: a pointer and a length into memory someone else owns.
 *
 * The parser hands out slices into the connection's read buffer; they live as long as that
 * buffer is not compacted (until the request is finished). A slice never owns its bytes.
 */
#ifndef MOAT_CORE_SLICE_H
#define MOAT_CORE_SLICE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const char *p;
    size_t len;
} moat_slice;

#define MOAT_SLICE_LIT(s) ((moat_slice){(s), sizeof(s) - 1})
#define MOAT_SLICE_NULL ((moat_slice){NULL, 0})
/* For printf: printf("%.*s", MOAT_SLICE_FMT(s)) */
#define MOAT_SLICE_FMT(s) (int)(s).len, (s).p

static inline moat_slice moat_slice_of(const char *p, size_t len)
{
    return (moat_slice){p, len};
}
static inline moat_slice moat_slice_cstr(const char *s)
{
    return (moat_slice){s, s ? strlen(s) : 0};
}
static inline int moat_slice_eq(moat_slice a, moat_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}
static inline int moat_ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}
/* Eight bytes at once with A-Z made a-z and every other byte as it is: a byte of 0x41-0x5a
 * (its low seven bits; the top bit clear) gets 0x20 added. No carry crosses a byte: each byte's
 * low seven bits plus 0x3f or 0x25 stays below 0x100. */
static inline uint64_t moat_ascii_lower8(uint64_t x)
{
    const uint64_t hi = 0x8080808080808080u, low7 = 0x7f7f7f7f7f7f7f7fu;
    uint64_t v = x & low7;
    uint64_t from_a = v + 0x3f3f3f3f3f3f3f3fu; /* top bit set: v >= 'A' */
    uint64_t past_z = v + 0x2525252525252525u; /* top bit set: v > 'Z' */
    uint64_t upper = from_a & ~past_z & ~x & hi;
    return x | (upper >> 2);
}
/* n <= 8 bytes in host order, the rest zero (the compares below are per byte: order does not
 * matter). */
static inline uint64_t moat_load_bytes(const char *p, size_t n)
{
    uint64_t w = 0;
    memcpy(&w, p, n);
    return w;
}
/* ASCII case-insensitive over n bytes, NUL bytes included (strncasecmp stops at one, and goes
 * through the locale). A word at a time: against a literal, the literal's side folds at
 * compile time and a header name costs one or two compares. The last word overlaps the one
 * before it rather than going byte by byte (the compare is per byte, so overlap is harmless);
 * under 8 bytes, the first and last 4 (or 2) bytes make one word. */
static inline int moat_mem_eq_nocase(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            if (moat_ascii_lower8(moat_load_bytes(a + i, 8)) !=
                moat_ascii_lower8(moat_load_bytes(b + i, 8))) {
                return 0;
            }
        }
        x = moat_load_bytes(a + n - 8, 8);
        y = moat_load_bytes(b + n - 8, 8);
    } else if (n >= 4) {
        x = moat_load_bytes(a, 4) << 32 | moat_load_bytes(a + n - 4, 4);
        y = moat_load_bytes(b, 4) << 32 | moat_load_bytes(b + n - 4, 4);
    } else if (n >= 2) {
        x = moat_load_bytes(a, 2) << 16 | moat_load_bytes(a + n - 2, 2);
        y = moat_load_bytes(b, 2) << 16 | moat_load_bytes(b + n - 2, 2);
    } else if (n == 1) {
        x = (unsigned char)a[0];
        y = (unsigned char)b[0];
    } else {
        return 1;
    }
    return moat_ascii_lower8(x) == moat_ascii_lower8(y);
}
/* ASCII case-insensitive: header names, tokens, host names. */
static inline int moat_slice_eq_nocase(moat_slice a, moat_slice b)
{
    return a.len == b.len && moat_mem_eq_nocase(a.p, b.p, a.len);
}
static inline int moat_slice_eq_lit_nocase(moat_slice a, const char *lit)
{
    return moat_slice_eq_nocase(a, moat_slice_cstr(lit));
}

/* Without the optional whitespace (SP, HTAB) around a field value (RFC 9110 §5.6.3). */
static inline moat_slice moat_slice_trim_ows(moat_slice v)
{
    while (v.len > 0 && (v.p[0] == ' ' || v.p[0] == '\t')) {
        v.p++;
        v.len--;
    }
    while (v.len > 0 && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t')) {
        v.len--;
    }
    return v;
}

#endif
