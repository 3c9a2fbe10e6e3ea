/*
 * test_httpdate.c: IMF-fixdate writing, the three accepted input forms (RFC 9110 §5.6.7), the
 * refusals, and the per-thread "now" cache.
 */
#include "core/httpdate.h"

#include "test.h"

#include <stdint.h>

static const char *fmt(time_t t)
{
    static char out[MOAT_HTTPDATE_SIZE];
    if (!moat_ok(moat_httpdate_format(t, out, sizeof(out)))) {
        return "ERR";
    }
    return out;
}

/* Parse a C string; -1 on failure (no test date is one second before the epoch). */
static long long parse(const char *s)
{
    time_t t = 0;
    if (!moat_ok(moat_httpdate_parse(s, strlen(s), &t))) {
        return -1;
    }
    return (long long)t;
}

TEST_CASE(test_format_known_dates)
{
    EXPECT_STR(fmt(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    EXPECT_STR(fmt(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    EXPECT_STR(fmt(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
    EXPECT_STR(fmt(1709164799), "Wed, 28 Feb 2024 23:59:59 GMT");
    EXPECT_STR(fmt(1709251199), "Thu, 29 Feb 2024 23:59:59 GMT");
    EXPECT_STR(fmt(2147483647), "Tue, 19 Jan 2038 03:14:07 GMT");
    EXPECT_STR(fmt(4102444800), "Fri, 01 Jan 2100 00:00:00 GMT");
    EXPECT_STR(fmt(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
    EXPECT_STR(fmt(-86400), "Wed, 31 Dec 1969 00:00:00 GMT");
    EXPECT_STR(fmt((time_t)INT64_C(253402300799)), "Fri, 31 Dec 9999 23:59:59 GMT");
    EXPECT_INT(strlen(fmt(784111777)), MOAT_HTTPDATE_LEN);
}

TEST_CASE(test_format_refusals)
{
    char out[MOAT_HTTPDATE_SIZE];
    EXPECT_INT(moat_httpdate_format(0, out, MOAT_HTTPDATE_SIZE - 1).kind, MOAT_E_LIMIT);
    EXPECT_INT(moat_httpdate_format((time_t)INT64_C(253402300800), out, sizeof(out)).kind,
               MOAT_E_INTERNAL);
    EXPECT_INT(moat_httpdate_format((time_t)INT64_MAX, out, sizeof(out)).kind, MOAT_E_INTERNAL);
    EXPECT_INT(moat_httpdate_format((time_t)INT64_MIN, out, sizeof(out)).kind, MOAT_E_INTERNAL);
}

TEST_CASE(test_format_matches_gmtime)
{
    /* Walk ~140 years in irregular steps and compare with libc. */
    for (int64_t t = -86400LL * 365; t < 4200000000LL; t += 7777777 + 13) {
        struct tm tm;
        time_t tt = (time_t)t;
        gmtime_r(&tt, &tm);
        char want[64];
        strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        EXPECT_STR(fmt(tt), want);
        EXPECT_INT(parse(want), t);
    }
}

TEST_CASE(test_parse_three_forms)
{
    EXPECT_INT(parse("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    EXPECT_INT(parse("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    EXPECT_INT(parse("Sun Nov  6 08:49:37 1994"), 784111777);
    EXPECT_INT(parse("Sun Nov 16 08:49:37 1994"), 784111777 + 10 * 86400);
    EXPECT_INT(parse("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    EXPECT_INT(parse("Thu, 29 Feb 2024 12:00:00 GMT"), 1709208000);
    /* Leap second reads as :59. */
    EXPECT_INT(parse("Sat, 31 Dec 2016 23:59:60 GMT"), 1483228799);
    /* The day name is not checked against the date (recipients only need the time). */
    EXPECT_INT(parse("Mon, 06 Nov 1994 08:49:37 GMT"), 784111777);
}

TEST_CASE(test_parse_rfc850_year_window)
{
    /* §5.6.7: more than 50 years ahead means the previous century. Relative to today's year. */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int cy = tm.tm_year + 1900;
    char s[64];
    /* Next year with the same two digits: ahead by < 50, stays in this century or the next. */
    int ahead = cy + 10;
    snprintf(s, sizeof(s), "Monday, 01-Jan-%02d 00:00:00 GMT", ahead % 100);
    time_t t;
    EXPECT(moat_ok(moat_httpdate_parse(s, strlen(s), &t)));
    struct tm got;
    gmtime_r(&t, &got);
    EXPECT_INT(got.tm_year + 1900, ahead);
    /* cy + 55 would be more than 50 years ahead, so these digits mean cy - 45. */
    int back = cy - 45;
    snprintf(s, sizeof(s), "Monday, 01-Jan-%02d 00:00:00 GMT", back % 100);
    EXPECT(moat_ok(moat_httpdate_parse(s, strlen(s), &t)));
    gmtime_r(&t, &got);
    EXPECT_INT(got.tm_year + 1900, back);
}

TEST_CASE(test_parse_refusals)
{
    const char *bad[] = {
        "",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 2023 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 23:60:00 GMT",
        "Sun, 06 Nov 1994 23:59:61 GMT",
        "Sun, 06 Xyz 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTX",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:3",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov +994 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sundae, 06-Nov-94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov 06 08:49:37 1994 ",
        "Sun Nov  0 08:49:37 1994",
        "1994-11-06T08:49:37Z",
        "784111777",
        "Sun,",
        "Sun ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i]) != -1) {
            TEST__FAIL("accepted \"%s\"", bad[i]);
        }
    }
    /* A NUL inside the given length is refused, not taken as the end. */
    time_t t = 42;
    EXPECT(!moat_ok(moat_httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT\0", 30, &t)));
    EXPECT_INT(t, 42);
    /* Length cut short. */
    EXPECT(!moat_ok(moat_httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT", 28, &t)));
}

TEST_CASE(test_now_cache)
{
    const char *a = moat_httpdate_now(784111777);
    EXPECT_STR(a, "Sun, 06 Nov 1994 08:49:37 GMT");
    const char *b = moat_httpdate_now(784111777);
    EXPECT(a == b);
    EXPECT_STR(moat_httpdate_now(784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
    EXPECT_STR(moat_httpdate_now((time_t)INT64_MAX), "Thu, 01 Jan 1970 00:00:00 GMT");
    EXPECT_STR(moat_httpdate_now(0), "Thu, 01 Jan 1970 00:00:00 GMT");
}

int main(void)
{
    RUN(test_format_known_dates);
    RUN(test_format_refusals);
    RUN(test_format_matches_gmtime);
    RUN(test_parse_three_forms);
    RUN(test_parse_rfc850_year_window);
    RUN(test_parse_refusals);
    RUN(test_now_cache);
    TEST_MAIN_END();
}
