/*
 * fmt.c: see fmt.h.
 */
#include "core/fmt.h"

/* Digits come out least significant first; write them reversed. */
static size_t put_reversed(char *out, const char *tmp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    return n;
}

size_t moat_fmt_dec(char *out, uint64_t v)
{
    /* Count the digits, then write them from the last: no buffer to reverse (every answer's
     * status and length come through here). */
    size_t n = 1;
    for (uint64_t t = v; t >= 10; t /= 10) {
        n++;
    }
    for (size_t i = n; i-- > 0; v /= 10) {
        out[i] = (char)('0' + v % 10);
    }
    return n;
}

size_t moat_fmt_hex(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[MOAT_FMT_HEX_MAX];
    size_t n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v != 0);
    return put_reversed(out, tmp, n);
}
