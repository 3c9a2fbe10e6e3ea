/*
 * range.h: one byte range of a request (RFC 9110 §14), and whether its If-Range still holds,
 * for every handler that answers a range from a whole representation it has: the static
 * files and the cache's stored answers.
 */
#ifndef MOAT_HTTP_RANGE_H
#define MOAT_HTTP_RANGE_H

#include "core/slice.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum moat_range {
    MOAT_RANGE_IGNORE = 0,   /* absent, invalid, or several ranges: the whole body (200) */
    MOAT_RANGE_PARTIAL,      /* 206 with [first, last] */
    MOAT_RANGE_UNSATISFIABLE /* 416 */
};

/* RFC 9110 §14.1.2 / §14.2, for one byte range of a body of `size` bytes. Several ranges are
 * ignored, which §14.2 allows: multipart/byteranges buys little and is a known amplification
 * vector. */
enum moat_range moat_range_parse(moat_slice raw, uint64_t size, uint64_t *first, uint64_t *last);

/*
 * RFC 9110 §13.1.5: a Range is honoured only if If-Range (`raw`; absent: it holds) still
 * matches: an entity-tag by strong comparison, or a date equal to Last-Modified (`lm`, when
 * lm_ok), which itself must be strong, i.e. at least a second older than `now` (§8.8.2.2), or
 * two writes in one second could splice two versions together.
 */
int moat_if_range_holds(moat_slice raw, const char *etag, size_t elen, time_t lm, int lm_ok,
                        time_t now);

#endif
