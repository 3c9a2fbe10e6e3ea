/*
 * httpdate.h: the HTTP date format (RFC 9110 §5.6.7), written and read.
 *
 * Written: always IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT", for Date, Last-Modified and the
 * access log. Read: IMF-fixdate and the two obsolete forms a recipient must still accept
 * (RFC 850 and asctime), for If-Modified-Since and If-Range.
 */
#ifndef MOAT_CORE_HTTPDATE_H
#define MOAT_CORE_HTTPDATE_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Characters in an IMF-fixdate, and the buffer size that holds one with its NUL. */
#define MOAT_HTTPDATE_LEN 29
#define MOAT_HTTPDATE_SIZE 30

/*
 * Write `t` (seconds since the epoch, UTC) as IMF-fixdate into out[0..outcap), NUL-terminated.
 * Refuses with MOAT_E_LIMIT when outcap < MOAT_HTTPDATE_SIZE and with MOAT_E_INTERNAL when the
 * year is outside 0..9999 (the format has exactly four digits). No allocation, no locale.
 */
/* The calendar arithmetic every date parser of moat uses (proleptic Gregorian, no time zone,
 * no libc): days since 1970-01-01 of year y, month m (1..12), day d (1..31), and the days of a
 * month. */
int64_t moat_days_from_civil(int64_t y, int m, int d);
int moat_days_in_month(int64_t y, int m);

MOAT_MUST_USE moat_rc moat_httpdate_format(time_t t, char *out, size_t outcap);

/*
 * Parse an HTTP-date in any of the three forms (exactly, no surrounding spaces: the caller
 * trims OWS) into seconds since the epoch. Names and "GMT" are case-sensitive (§5.6.7).
 * A two-digit RFC 850 year that would be more than 50 years in the future is taken as the
 * most recent past year with those digits, as §5.6.7 requires ("now" is read from the clock
 * for this one obsolete form only). A second of 60 (leap second) reads as 59. Refuses with
 * MOAT_E_PEER anything else: wrong day of month, out-of-range fields, trailing bytes.
 * *out is untouched on failure.
 */
MOAT_MUST_USE moat_rc moat_httpdate_parse(const char *s, size_t len, time_t *out);

/*
 * The IMF-fixdate of `now`, formatted at most once per second per thread (nginx
 * ngx_times.c does the same for Date). The string lives in thread-local storage and stays
 * valid until this thread calls again with a different second. Never NULL: a time that cannot
 * be formatted gives the epoch.
 */
const char *moat_httpdate_now(time_t now);

#endif
