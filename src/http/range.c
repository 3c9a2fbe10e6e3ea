/* range.c: see range.h. */
#include "http/range.h"

#include "core/httpdate.h"

#include <string.h>
#include <strings.h>

int moat_if_range_holds(moat_slice raw, const char *etag, size_t elen, time_t lm, int lm_ok,
                        time_t now)
{
    moat_slice v = moat_slice_trim_ows(raw);
    if (v.len == 0) {
        return 1;
    }
    if (v.p[0] == '"') {
        return v.len == elen && memcmp(v.p, etag, elen) == 0;
    }
    if (v.p[0] == 'W' && v.len > 1 && v.p[1] == '/') {
        return 0;
    }
    time_t t;
    if (!lm_ok || !moat_ok(moat_httpdate_parse(v.p, v.len, &t))) {
        return 0;
    }
    return t == lm && (now <= 0 || lm < now);
}

/* Digits with saturation: a first-pos beyond 2^64 is simply unsatisfiable, a
 * last-pos beyond it is clamped like any other. Returns the number of digits
 * read. */
static size_t read_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        unsigned d = (unsigned)(p[i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *out = v;
    return i;
}

enum moat_range moat_range_parse(moat_slice raw, uint64_t size, uint64_t *first, uint64_t *last)
{
    moat_slice v = moat_slice_trim_ows(raw);
    static const char unit[] = "bytes=";
    size_t un = sizeof(unit) - 1;
    /* §14.1: range units are case-insensitive. */
    if (v.len < un || strncasecmp(v.p, unit, un) != 0) {
        return MOAT_RANGE_IGNORE;
    }
    const char *p = v.p + un;
    size_t n = v.len - un;
    if (memchr(p, ',', n) != NULL) {
        return MOAT_RANGE_IGNORE;
    }
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t')) {
        i++;
    }
    uint64_t a = 0, b = UINT64_MAX;
    int suffix = 0;
    if (i < n && p[i] == '-') {
        suffix = 1;
        i++;
        size_t d = read_u64(p + i, n - i, &a);
        if (d == 0) {
            return MOAT_RANGE_IGNORE;
        }
        i += d;
    } else {
        size_t d = read_u64(p + i, n - i, &a);
        if (d == 0) {
            return MOAT_RANGE_IGNORE;
        }
        i += d;
        if (i >= n || p[i] != '-') {
            return MOAT_RANGE_IGNORE;
        }
        i++;
        d = read_u64(p + i, n - i, &b);
        if (d == 0) {
            b = UINT64_MAX;
        }
        i += d;
        if (b < a) {
            return MOAT_RANGE_IGNORE; /* §14.1.1: last-pos < first-pos is invalid */
        }
    }
    if (i != n) {
        return MOAT_RANGE_IGNORE;
    }
    /* An empty representation has no satisfiable range at all. */
    if (size == 0) {
        return MOAT_RANGE_UNSATISFIABLE;
    }
    if (suffix) {
        if (a == 0) {
            return MOAT_RANGE_UNSATISFIABLE;
        }
        *first = a >= size ? 0 : size - a;
        *last = size - 1;
        return MOAT_RANGE_PARTIAL;
    }
    if (a >= size) {
        return MOAT_RANGE_UNSATISFIABLE;
    }
    *first = a;
    *last = b >= size ? size - 1 : b;
    return MOAT_RANGE_PARTIAL;
}
