/*
 * test_cachepolicy.c: RFC 9111's rules (http/cachepolicy.c): Cache-Control parsing (case,
 * quotes, duplicates, junk, invalid delta-seconds), storability of answers (no-store and
 * must-understand, private, Authorization, Set-Cookie, Vary: *, statuses), lifetimes
 * (s-maxage over max-age over Expires over the heuristic), the age calculation of §4.2.3, and
 * which stored answers may serve which requests.
 */
#include "http/cachepolicy.h"
#include "test.h"

#include <string.h>

static struct moat_cc cc_of(const char *v)
{
    struct moat_cc cc;
    moat_cc_init(&cc);
    moat_cc_parse(&cc, (moat_slice){.p = v, .len = strlen(v)});
    return cc;
}

static struct moat_buf lines_of(const char *text)
{
    return (struct moat_buf){.base = (char *)text, .cap = strlen(text), .wr = strlen(text)};
}

TEST_CASE(parse)
{
    struct moat_cc c = cc_of("Max-Age=60, no-cache, S-MAXAGE=\"30\", private=\"x, y\", public");
    EXPECT_INT(c.max_age, 60);
    EXPECT_INT(c.s_maxage, 30);
    EXPECT(c.flags & MOAT_CC_NO_CACHE);
    EXPECT(c.flags & MOAT_CC_PRIVATE);
    EXPECT(c.flags & MOAT_CC_PUBLIC);
    c = cc_of("max-age=abc");
    EXPECT_INT(c.max_age, 0); /* invalid: stale */
    c = cc_of("max-age=10, max-age=20");
    EXPECT_INT(c.max_age, 0); /* repeated: stale */
    c = cc_of("max-stale, stale-if-error=5 junk, min-fresh=3");
    EXPECT(c.flags & MOAT_CC_MAX_STALE_ANY);
    EXPECT_INT(c.stale_if_error, 5);
    EXPECT_INT(c.min_fresh, 3);
    c = cc_of("max-age=99999999999999999999");
    EXPECT_INT(c.max_age, 2147483648LL);
    c = cc_of(",,, ,");
    EXPECT_INT(c.flags, 0);
}

TEST_CASE(storable)
{
    struct moat_field auth = {.name = {.p = "Authorization", .len = 13},
                              .value = {.p = "x", .len = 1}};
    struct moat_buf l = lines_of("Cache-Control: max-age=60\r\n");
    EXPECT(moat_cache_storable(200, &l, NULL, 0) == NULL);
    EXPECT(moat_cache_storable(206, &l, NULL, 0) != NULL);
    EXPECT(moat_cache_storable(200, &l, &auth, 1) != NULL);
    l = lines_of("Cache-Control: public, max-age=60\r\n");
    EXPECT(moat_cache_storable(200, &l, &auth, 1) == NULL);
    l = lines_of("Cache-Control: max-age=60, no-store\r\n");
    EXPECT(moat_cache_storable(200, &l, NULL, 0) != NULL);
    l = lines_of("Cache-Control: max-age=60, no-store, must-understand\r\n");
    EXPECT(moat_cache_storable(200, &l, NULL, 0) == NULL);
    l = lines_of("Cache-Control: max-age=60, private\r\n");
    EXPECT(moat_cache_storable(200, &l, NULL, 0) != NULL);
    l = lines_of("Cache-Control: max-age=60\r\nVary: accept, *\r\n");
    EXPECT(moat_cache_storable(200, &l, NULL, 0) != NULL);
    l = lines_of("Cache-Control: max-age=60\r\nSet-Cookie: a=1\r\n");
    EXPECT(moat_cache_storable(200, &l, NULL, 0) != NULL);
    l = lines_of("Cache-Control: s-maxage=60\r\nSet-Cookie: a=1\r\n");
    EXPECT(moat_cache_storable(200, &l, NULL, 0) == NULL);
    l = lines_of("Content-Type: text/plain\r\n");
    EXPECT(moat_cache_storable(200, &l, NULL, 0) == NULL); /* heuristically cacheable */
    EXPECT(moat_cache_storable(302, &l, NULL, 0) != NULL); /* not without explicit freshness */
    struct moat_field ns = {.name = {.p = "cache-control", .len = 13},
                            .value = {.p = "no-store", .len = 8}};
    l = lines_of("Cache-Control: max-age=60\r\n");
    EXPECT(moat_cache_storable(200, &l, &ns, 1) != NULL);
}

TEST_CASE(lifetime)
{
    struct moat_cache_heuristic h = {.percent = 10, .max_s = 86400};
    int heur;
    struct moat_buf l = lines_of("Cache-Control: max-age=60, s-maxage=5\r\n");
    EXPECT_INT(moat_cache_lifetime(200, &l, 1000, &h, &heur), 5);
    l = lines_of("Cache-Control: max-age=60\r\nExpires: Thu, 01 Jan 1970 00:20:00 GMT\r\n");
    EXPECT_INT(moat_cache_lifetime(200, &l, 1000, &h, &heur), 60);
    l = lines_of("Expires: Thu, 01 Jan 1970 00:20:00 GMT\r\n"); /* 1200 */
    EXPECT_INT(moat_cache_lifetime(200, &l, 1000, &h, &heur), 200);
    l = lines_of("Expires: 0\r\n");
    EXPECT_INT(moat_cache_lifetime(200, &l, 1000, &h, &heur), 0);
    l = lines_of("Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    EXPECT_INT(moat_cache_lifetime(200, &l, 10000, &h, &heur), 1000);
    EXPECT_INT(heur, 1);
    EXPECT_INT(moat_cache_lifetime(200, &l, 10000000, &h, &heur), 86400); /* capped */
    EXPECT_INT(moat_cache_lifetime(302, &l, 10000, &h, &heur), 0);
}

TEST_CASE(age)
{
    /* request at 100, answer at 102 with Date 90 and Age 5; now 110 */
    EXPECT_INT(moat_cache_age(110, 100, 102, 90, 5), 12 + 8);
    EXPECT_INT(moat_cache_age(110, 100, 102, 102, 5), 7 + 8);
    EXPECT_INT(moat_cache_age(102, 102, 102, 200, 0), 0); /* a Date in the future */
}

TEST_CASE(usable)
{
    struct moat_cc r = cc_of("max-age=60"), q = cc_of("");
    EXPECT_INT(moat_cache_usable(60, 10, &r, &q), 1);
    EXPECT_INT(moat_cache_usable(60, 60, &r, &q), 0);
    q = cc_of("max-age=5");
    EXPECT_INT(moat_cache_usable(60, 10, &r, &q), 0);
    q = cc_of("min-fresh=55");
    EXPECT_INT(moat_cache_usable(60, 10, &r, &q), 0);
    q = cc_of("no-cache");
    EXPECT_INT(moat_cache_usable(60, 10, &r, &q), 0);
    q = cc_of("max-stale=30");
    EXPECT_INT(moat_cache_usable(60, 80, &r, &q), 1);
    EXPECT_INT(moat_cache_usable(60, 100, &r, &q), 0);
    q = cc_of("max-stale");
    EXPECT_INT(moat_cache_usable(60, 1000, &r, &q), 1);
    r = cc_of("max-age=60, must-revalidate");
    EXPECT_INT(moat_cache_usable(60, 80, &r, &q), 0);
    r = cc_of("s-maxage=60");
    EXPECT_INT(moat_cache_usable(60, 80, &r, &q), 0);
    r = cc_of("max-age=60, no-cache");
    q = cc_of("");
    EXPECT_INT(moat_cache_usable(60, 1, &r, &q), 0);
}

int main(void)
{
    RUN(parse);
    RUN(storable);
    RUN(lifetime);
    RUN(age);
    RUN(usable);
    TEST_MAIN_END();
}
