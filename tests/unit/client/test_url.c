/*
 * test_url.c: the client's URL parser and the joining of redirect locations, with every
 * refusal (schemes, credentials, ports, spaces, IPv6 without brackets, lengths).
 */
#include "client/url.h"

#include "test.h"

#include <stdlib.h>

static struct moat_client_url parse_ok(const char *text)
{
    struct moat_client_url u;
    struct moat_err err = {0};
    moat_rc rc = moat_client_url_parse(text, &u, &err);
    if (!moat_ok(rc)) {
        TEST__FAIL("parse \"%s\" failed: %s", text, err.msg);
    }
    return u;
}

static const char *parse_fail(const char *text, enum moat_errkind kind)
{
    static struct moat_err err;
    struct moat_client_url u;
    memset(&err, 0, sizeof(err));
    moat_rc rc = moat_client_url_parse(text, &u, &err);
    if (rc.kind != kind) {
        TEST__FAIL("parse \"%s\": kind %d, expected %d", text, rc.kind, kind);
    }
    return err.msg;
}

TEST_CASE(full_urls)
{
    struct moat_client_url u = parse_ok("https://Example.COM:8443/a/b?x=1#frag");
    EXPECT_INT(u.https, 1);
    EXPECT_STR(u.host, "example.com");
    EXPECT_INT(u.port, 8443);
    EXPECT_INT(u.port_given, 1);
    EXPECT_INT(u.host_ip, 0);
    EXPECT_STR(u.target, "/a/b?x=1");

    u = parse_ok("http://example.com");
    EXPECT_INT(u.https, 0);
    EXPECT_INT(u.port, 80);
    EXPECT_STR(u.target, "/");

    u = parse_ok("HTTPS://example.com?q");
    EXPECT_INT(u.port, 443);
    EXPECT_STR(u.target, "/?q");

    u = parse_ok("example.com/x");
    EXPECT_INT(u.https, 1);
    EXPECT_STR(u.host, "example.com");
    EXPECT_STR(u.target, "/x");

    u = parse_ok("https://example.com./");
    EXPECT_STR(u.host, "example.com");
}

TEST_CASE(address_literals)
{
    struct moat_client_url u = parse_ok("https://127.0.0.1:8443/");
    EXPECT_INT(u.host_ip, 4);
    EXPECT_STR(u.host, "127.0.0.1");
    u = parse_ok("https://[::1]:8443/x");
    EXPECT_INT(u.host_ip, 6);
    EXPECT_STR(u.host, "::1");
    EXPECT_INT(u.port, 8443);
    u = parse_ok("https://[2001:DB8::1]/");
    EXPECT_STR(u.host, "2001:db8::1");
    EXPECT_INT(u.port, 443);
}

TEST_CASE(refusals)
{
    EXPECT(strstr(parse_fail("", MOAT_E_USAGE), "empty") != NULL);
    EXPECT(strstr(parse_fail("ftp://example.com/", MOAT_E_USAGE), "not \"ftp://\"") != NULL);
    EXPECT(strstr(parse_fail("https://u:p@example.com/", MOAT_E_USAGE), "passwords") != NULL);
    EXPECT(strstr(parse_fail("https://example.com:/", MOAT_E_USAGE), "no port") != NULL);
    EXPECT(strstr(parse_fail("https://example.com:0/", MOAT_E_USAGE), "port 0") != NULL);
    EXPECT(strstr(parse_fail("https://example.com:65536/", MOAT_E_USAGE), "range") != NULL);
    EXPECT(strstr(parse_fail("https://example.com:8a/", MOAT_E_USAGE), "not a number") != NULL);
    EXPECT(strstr(parse_fail("https://::1/", MOAT_E_USAGE), "brackets") != NULL);
    EXPECT(strstr(parse_fail("https://[::1/", MOAT_E_USAGE), "[2001:db8::1]") != NULL);
    EXPECT(strstr(parse_fail("https://[nothex]/", MOAT_E_USAGE), "not an IPv6") != NULL);
    EXPECT(strstr(parse_fail("https://[::1]x/", MOAT_E_USAGE), "after the IPv6") != NULL);
    EXPECT(strstr(parse_fail("https:///path", MOAT_E_USAGE), "no host") != NULL);
    EXPECT(strstr(parse_fail("https://exa mple.com/", MOAT_E_USAGE), "space") != NULL);
    EXPECT(strstr(parse_fail("https://exa%41.com/", MOAT_E_USAGE), "not allowed") != NULL);
    EXPECT(strstr(parse_fail("https://a..b/", MOAT_E_USAGE), "empty label") != NULL);
    EXPECT(strstr(parse_fail("https://example.com/a b", MOAT_E_USAGE), "%20") != NULL);
    EXPECT(strstr(parse_fail("https://example.com/a\tb", MOAT_E_USAGE), "control") != NULL);
    EXPECT(strstr(parse_fail("https://example.com/\x7f", MOAT_E_USAGE), "control") != NULL);
}

TEST_CASE(limits)
{
    char big[MOAT_CLIENT_TARGET_MAX + 64];
    snprintf(big, sizeof(big), "https://example.com/");
    size_t l = strlen(big);
    memset(big + l, 'a', sizeof(big) - l - 1);
    big[sizeof(big) - 1] = '\0';
    (void)parse_fail(big, MOAT_E_LIMIT);
    /* Exactly at the limit: fits. */
    big[strlen("https://example.com/") + MOAT_CLIENT_TARGET_MAX - 2] = '\0';
    struct moat_client_url u = parse_ok(big);
    EXPECT_INT(strlen(u.target), MOAT_CLIENT_TARGET_MAX - 1);

    char host[400] = "https://";
    memset(host + 8, 'h', 300);
    host[308] = '\0';
    (void)parse_fail(host, MOAT_E_LIMIT);
}

static void join_is(const char *base, const char *loc, const char *want)
{
    struct moat_client_url b = parse_ok(base), out;
    struct moat_err err = {0};
    moat_rc rc = moat_client_url_join(&b, loc, &out, &err);
    if (!moat_ok(rc)) {
        TEST__FAIL("join %s + %s failed: %s", base, loc, err.msg);
        return;
    }
    char got[MOAT_CLIENT_TARGET_MAX + 300];
    EXPECT_STR(moat_client_url_format(&out, got, sizeof(got)), want);
}

TEST_CASE(redirect_locations)
{
    join_is("https://a.test/x/y", "https://b.test:444/z", "https://b.test:444/z");
    join_is("https://a.test/x/y", "http://b.test/", "http://b.test/");
    join_is("https://a.test:8443/x/y", "//c.test/q", "https://c.test/q");
    join_is("https://a.test:8443/x/y", "/abs?q=1#f", "https://a.test:8443/abs?q=1");
    join_is("https://a.test/x/y?old", "?new", "https://a.test/x/y?new");
    join_is("https://a.test/x/y", "z", "https://a.test/x/z");
    join_is("https://a.test/x/y/", "z", "https://a.test/x/y/z");
    join_is("https://a.test/x/y/z", "../w", "https://a.test/x/w");
    join_is("https://a.test/x/y/z", "../../../../w", "https://a.test/w");
    join_is("https://a.test/x/y/z", "./w/./v/.", "https://a.test/x/y/w/v/");
    join_is("https://a.test/x/y/z", "..", "https://a.test/x/");
    join_is("https://a.test/", "/a/b/../c?x=/../", "https://a.test/a/c?x=/../");
    /* RFC 3986 §5.2.2: absolute and network-path references lose their dot segments too. */
    join_is("https://a.test/", "https://b.test/x/../../y", "https://b.test/y");
    join_is("https://a.test/", "//b.test/./z/..", "https://b.test/");

    struct moat_client_url b = parse_ok("https://a.test/"), out;
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_join(&b, "", &out, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_client_url_join(&b, "ftp://x/", &out, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_client_url_join(&b, "/a b", &out, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_client_url_join(&b, "https://u@x/", &out, &err).kind, MOAT_E_USAGE);
}

TEST_CASE(authority_and_format)
{
    char buf[400];
    struct moat_client_url u = parse_ok("https://example.com:443/");
    EXPECT_STR(moat_client_url_authority(&u, buf, sizeof(buf)), "example.com");
    u = parse_ok("http://example.com:443/");
    EXPECT_STR(moat_client_url_authority(&u, buf, sizeof(buf)), "example.com:443");
    u = parse_ok("https://[::1]:8443/p");
    EXPECT_STR(moat_client_url_authority(&u, buf, sizeof(buf)), "[::1]:8443");
    EXPECT_STR(moat_client_url_format(&u, buf, sizeof(buf)), "https://[::1]:8443/p");
    u = parse_ok("https://[::1]/");
    EXPECT_STR(moat_client_url_authority(&u, buf, sizeof(buf)), "[::1]");
    char tiny[6];
    EXPECT_STR(moat_client_url_authority(&u, tiny, sizeof(tiny)), "[::1]");
}

int main(void)
{
    RUN(full_urls);
    RUN(address_literals);
    RUN(refusals);
    RUN(limits);
    RUN(redirect_locations);
    RUN(authority_and_format);
    TEST_MAIN_END();
}
