/*
 * cachepolicy.h: the rules of RFC 9111 for a shared cache, as pure functions of fields and
 * times: the Cache-Control directives of a request and of a response, whether a response may
 * be stored, its freshness lifetime (explicit or heuristic), its current age, and whether a
 * stored response may answer a request. No storage, no I/O: serve/cache.c keeps the entries.
 */
#ifndef MOAT_HTTP_CACHEPOLICY_H
#define MOAT_HTTP_CACHEPOLICY_H

#include "core/buf.h"
#include "core/slice.h"
#include "http/field.h"

#include <stdint.h>
#include <time.h>

/* Cache-Control directives (RFC 9111 §5.2). Seconds are -1 when absent. */
#define MOAT_CC_NO_STORE 0x001u
#define MOAT_CC_NO_CACHE 0x002u /* qualified or not: a shared cache treats both alike */
#define MOAT_CC_PRIVATE 0x004u  /* the same */
#define MOAT_CC_PUBLIC 0x008u
#define MOAT_CC_MUST_REVALIDATE 0x010u
#define MOAT_CC_PROXY_REVALIDATE 0x020u
#define MOAT_CC_NO_TRANSFORM 0x040u
#define MOAT_CC_ONLY_IF_CACHED 0x080u
#define MOAT_CC_MUST_UNDERSTAND 0x100u
#define MOAT_CC_IMMUTABLE 0x200u
#define MOAT_CC_MAX_STALE_ANY 0x400u /* max-stale without a value */

struct moat_cc {
    unsigned flags;
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error, max_stale, min_fresh;
};

/* The directives of one Cache-Control value, added to *cc (start from moat_cc_init). A
 * malformed delta-seconds makes its directive count as absent, except max-age and s-maxage,
 * which then count as 0 (RFC 9111 §4.2.1: invalid freshness information means stale). */
void moat_cc_init(struct moat_cc *cc);
void moat_cc_parse(struct moat_cc *cc, moat_slice value);

/* The directives of a request's fields, or of a response's header lines. A request's
 * `Pragma: no-cache` without Cache-Control counts as no-cache (RFC 9111 §5.4). */
void moat_cc_of_fields(struct moat_cc *cc, const struct moat_field *f, size_t n);
void moat_cc_of_lines(struct moat_cc *cc, const struct moat_buf *lines);

/* The value of the first header line named `lc_name` (lower case) in `lines`; NULL slice when
 * there is none. */
moat_slice moat_lines_field(const struct moat_buf *lines, const char *lc_name);

/* The heuristics (docs/cache.md): a fraction of the time since Last-Modified, at most max. */
struct moat_cache_heuristic {
    unsigned percent; /* 10 */
    int64_t max_s;    /* 86400 */
};

/*
 * Whether a shared cache may store a response (RFC 9111 §3) with `status` and `lines` to a
 * GET request with these fields; NULL when it may, else the reason ("no-store", "private",
 * "Authorization", "Set-Cookie", "Vary: *", "status"). A response without explicit freshness
 * is storable when its status is heuristically cacheable (its lifetime may then be 0).
 */
const char *moat_cache_storable(int status, const struct moat_buf *lines,
                                const struct moat_field *req_fields, size_t nreq);

/* The freshness lifetime in seconds (§4.2.1): s-maxage, max-age, Expires - Date, else the
 * heuristic for heuristically cacheable statuses with Last-Modified (§4.2.2), else 0.
 * `date`: the response's Date (or when it arrived). *heuristic: 1 when the heuristic gave it. */
int64_t moat_cache_lifetime(int status, const struct moat_buf *lines, time_t date,
                            const struct moat_cache_heuristic *h, int *heuristic);

/* The age at `now` (§4.2.3) of a response that arrived at response_time for a request sent
 * at request_time, with its Date and Age fields. */
int64_t moat_cache_age(time_t now, time_t request_time, time_t response_time, time_t date,
                       int64_t age_field);

/* Whether a response of lifetime `life`, now `age` old, with response directives `rcc`, may
 * answer a request with directives `qcc` without revalidation (§4.2, §5.2.1): 1 when it is
 * fresh enough for both, or stale within the request's max-stale and the response allows
 * serving it stale (no must-revalidate, proxy-revalidate or s-maxage); else 0. */
int moat_cache_usable(int64_t life, int64_t age, const struct moat_cc *rcc,
                      const struct moat_cc *qcc);

/* A status a cache may store on heuristics (RFC 9110 §15.1: "heuristically cacheable"). */
int moat_cache_status_heuristic(int status);

#endif
