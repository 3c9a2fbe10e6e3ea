/*
 * httpdate.c: HTTP-date writer, reader and the per-thread "now" cache (see httpdate.h).
 *
 * Calendar arithmetic is done here (days from a civil date, and back) instead of through
 * timegm/gmtime_r so that the reader is pure, needs no TZ, and behaves the same on every libc;
 * the algorithm is the well-known proleptic Gregorian one on 400-year eras.
 */
#include "core/httpdate.h"

#include <stdint.h>
#include <string.h>

static const char day_short[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const day_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                        "Thursday", "Friday", "Saturday"};
static const char month_short[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

int64_t moat_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int moat_days_in_month(int64_t y, int m)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) {
        return 29;
    }
    return len[m - 1];
}

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

moat_rc moat_httpdate_format(time_t t, char *out, size_t outcap)
{
    MOAT_ENSURE_REF(out);
    MOAT_ENSURE(outcap >= MOAT_HTTPDATE_SIZE, MOAT_E_LIMIT);
    int64_t secs = (int64_t)t;
    /* 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z: the years four digits can write. */
    MOAT_ENSURE(secs >= INT64_C(-62167219200) && secs <= INT64_C(253402300799), MOAT_E_INTERNAL);
    /* Floor division so times before 1970 land on the right day. */
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    /* 1970-01-01 was a Thursday (index 4). */
    int wd = (int)(((days % 7) + 7 + 4) % 7);

    char *p = out;
    memcpy(p, day_short[wd], 3);
    memcpy(p + 3, ", ", 2);
    put2(p + 5, d);
    p[7] = ' ';
    memcpy(p + 8, month_short[m - 1], 3);
    p[11] = ' ';
    put2(p + 12, (int)(y / 100));
    put2(p + 14, (int)(y % 100));
    p[16] = ' ';
    put2(p + 17, (int)(rem / 3600));
    p[19] = ':';
    put2(p + 20, (int)(rem / 60 % 60));
    p[22] = ':';
    put2(p + 23, (int)(rem % 60));
    memcpy(p + 25, " GMT", 5); /* with the NUL */
    return MOAT_RC_OK;
}

/* A small cursor over the input; every reader checks bounds and advances only on success. */
struct rd {
    const char *p;
    size_t len;
    size_t i;
};

static int rd_lit(struct rd *r, const char *lit)
{
    size_t n = strlen(lit);
    if (r->len - r->i < n || memcmp(r->p + r->i, lit, n) != 0) {
        return 0;
    }
    r->i += n;
    return 1;
}

/* Exactly n digits. */
static int rd_digits(struct rd *r, size_t n, int *v)
{
    if (r->len - r->i < n) {
        return 0;
    }
    int acc = 0;
    for (size_t k = 0; k < n; k++) {
        char c = r->p[r->i + k];
        if (c < '0' || c > '9') {
            return 0;
        }
        acc = acc * 10 + (c - '0');
    }
    r->i += n;
    *v = acc;
    return 1;
}

static int rd_month(struct rd *r, int *m)
{
    for (int k = 0; k < 12; k++) {
        if (rd_lit(r, month_short[k])) {
            *m = k + 1;
            return 1;
        }
    }
    return 0;
}

/* time-of-day = hour ":" minute ":" second */
static int rd_time(struct rd *r, int *hh, int *mm, int *ss)
{
    return rd_digits(r, 2, hh) && rd_lit(r, ":") && rd_digits(r, 2, mm) && rd_lit(r, ":") &&
           rd_digits(r, 2, ss);
}

static int rd_day_short(struct rd *r)
{
    for (int k = 0; k < 7; k++) {
        if (rd_lit(r, day_short[k])) {
            return 1;
        }
    }
    return 0;
}

/* RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is the most recent past one. */
static int64_t rfc850_year(int yy)
{
    time_t now = time(NULL);
    int64_t days = (int64_t)now / 86400;
    int64_t cy;
    int cm, cd;
    civil_from_days(days, &cy, &cm, &cd);
    int64_t y = cy - cy % 100 + yy;
    if (y > cy + 50) {
        y -= 100;
    } else if (y <= cy - 50) {
        y += 100;
    }
    return y;
}

moat_rc moat_httpdate_parse(const char *s, size_t len, time_t *out)
{
    MOAT_ENSURE(s != NULL && out != NULL, MOAT_E_INTERNAL);
    struct rd r = {s, len, 0};
    int64_t y = 0;
    int yv = 0, m = 0, d = 0, hh = 0, mm = 0, ss = 0;
    int ok = 0;

    if (len >= 4 && s[3] == ',') {
        /* IMF-fixdate: day-name "," SP date1 SP time-of-day SP GMT */
        ok = rd_day_short(&r) && rd_lit(&r, ", ") && rd_digits(&r, 2, &d) && rd_lit(&r, " ") &&
             rd_month(&r, &m) && rd_lit(&r, " ") && rd_digits(&r, 4, &yv) && rd_lit(&r, " ") &&
             rd_time(&r, &hh, &mm, &ss) && rd_lit(&r, " GMT");
        y = yv;
    } else if (len >= 4 && s[3] == ' ') {
        /* asctime-date: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP year */
        ok = rd_day_short(&r) && rd_lit(&r, " ") && rd_month(&r, &m) && rd_lit(&r, " ");
        if (ok && rd_lit(&r, " ")) {
            ok = rd_digits(&r, 1, &d);
        } else if (ok) {
            ok = rd_digits(&r, 2, &d);
        }
        ok = ok && rd_lit(&r, " ") && rd_time(&r, &hh, &mm, &ss) && rd_lit(&r, " ") &&
             rd_digits(&r, 4, &yv);
        y = yv;
    } else {
        /* rfc850-date: day-name-l "," SP date2 SP time-of-day SP GMT, date2 = dd-Mon-yy */
        for (int k = 0; k < 7 && !ok; k++) {
            ok = rd_lit(&r, day_long[k]);
        }
        ok = ok && rd_lit(&r, ", ") && rd_digits(&r, 2, &d) && rd_lit(&r, "-") &&
             rd_month(&r, &m) && rd_lit(&r, "-") && rd_digits(&r, 2, &yv) && rd_lit(&r, " ") &&
             rd_time(&r, &hh, &mm, &ss) && rd_lit(&r, " GMT");
        if (ok) {
            y = rfc850_year(yv);
        }
    }
    MOAT_ENSURE(ok && r.i == len, MOAT_E_PEER);
    MOAT_ENSURE(d >= 1 && d <= moat_days_in_month(y, m), MOAT_E_PEER);
    /* RFC 9110 §5.6.7 allows second 60 (a leap second); time_t has no slot for it. */
    MOAT_ENSURE(hh <= 23 && mm <= 59 && ss <= 60, MOAT_E_PEER);
    if (ss == 60) {
        ss = 59;
    }
    int64_t t = moat_days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
    /* A 32-bit time_t cannot hold every four-digit year. */
    MOAT_ENSURE((int64_t)(time_t)t == t, MOAT_E_PEER);
    *out = (time_t)t;
    return MOAT_RC_OK;
}

const char *moat_httpdate_now(time_t now)
{
    static _Thread_local time_t cached_at = -1;
    static _Thread_local char cached[MOAT_HTTPDATE_SIZE];
    if (now != cached_at || cached[0] == '\0') {
        if (!moat_ok(moat_httpdate_format(now, cached, sizeof(cached)))) {
            memcpy(cached, "Thu, 01 Jan 1970 00:00:00 GMT", MOAT_HTTPDATE_SIZE);
        }
        cached_at = now;
    }
    return cached;
}
