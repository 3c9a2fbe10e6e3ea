/*
 * slice.h: a pointer and a length into memory someone else owns.
 *
 * The parser hands out slices into the connection's read buffer; they live as long as that
 * buffer is not compacted (until the request is finished). A slice never owns its bytes.
 */
#ifndef MOAT_CORE_SLICE_H
#define MOAT_CORE_SLICE_H

#include <stddef.h>
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
/* ASCII case-insensitive over n bytes, NUL bytes included (strncasecmp stops at one, and goes
 * through the locale: a call per header name it was, most of them ending at the first byte). */
static inline int moat_mem_eq_nocase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (moat_ascii_lower((unsigned char)a[i]) != moat_ascii_lower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
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
