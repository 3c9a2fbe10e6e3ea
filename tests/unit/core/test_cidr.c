/*
 * test_cidr.c: address ranges (core/cidr.c): the forms moat_cidr_parse takes and the words of
 * each refusal, matching IPv4 and IPv6 at and around the prefix boundary, an IPv4 peer seen
 * through a dual-stack socket (::ffff:a.b.c.d) matching IPv4 ranges, /0, and the peer text
 * forms ("1.2.3.4:5", "[::1]:443", and bare "1.2.3.4", "2001:db8::1").
 */
#include "core/cidr.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* One range, parsed; a failure counts and leaves *out zeroed. */
static void range(const char *text, struct moat_cidr *out)
{
    const char *bad = moat_cidr_parse(text, out);
    if (bad != NULL) {
        TEST__FAIL("\"%s\" refused: %s", text, bad);
        memset(out, 0, sizeof(*out));
    }
}

/* Whether the numeric address `a` (either family) lies in the n ranges. */
static int in(const struct moat_cidr *set, size_t n, const char *a)
{
    uint8_t bin[16];
    if (inet_pton(AF_INET, a, bin) == 1) {
        return moat_cidr_match(set, n, AF_INET, bin);
    }
    if (inet_pton(AF_INET6, a, bin) == 1) {
        return moat_cidr_match(set, n, AF_INET6, bin);
    }
    TEST__FAIL("test address \"%s\" does not parse", a);
    return -1;
}

TEST_CASE(parse_forms)
{
    struct moat_cidr c;
    range("10.0.0.0/8", &c);
    EXPECT_INT(c.family, AF_INET);
    EXPECT_INT(c.bits, 8);
    EXPECT_INT(c.addr[0], 10);

    range("192.168.1.7", &c); /* a bare address is the /32 of it */
    EXPECT_INT(c.family, AF_INET);
    EXPECT_INT(c.bits, 32);
    EXPECT_INT(c.addr[3], 7);

    range("::1", &c);
    EXPECT_INT(c.family, AF_INET6);
    EXPECT_INT(c.bits, 128);
    EXPECT_INT(c.addr[15], 1);

    range("2001:db8::/32", &c);
    EXPECT_INT(c.family, AF_INET6);
    EXPECT_INT(c.bits, 32);
    EXPECT_INT(c.addr[0], 0x20);
    EXPECT_INT(c.addr[3], 0xb8);

    range("0.0.0.0/0", &c);
    EXPECT_INT(c.bits, 0);
    range("::/0", &c);
    EXPECT_INT(c.family, AF_INET6);
    EXPECT_INT(c.bits, 0);
    range("10.1.2.3/32", &c);
    EXPECT_INT(c.bits, 32);
    range("fe80::/10", &c);
    EXPECT_INT(c.bits, 10);
    range("10.0.0.128/25", &c); /* the last bit of the prefix may be set */
    EXPECT_INT(c.bits, 25);
    range("::ffff:10.0.0.0/104", &c);
    EXPECT_INT(c.family, AF_INET6);
}

TEST_CASE(parse_refusals)
{
    static const struct {
        const char *text;
        const char *why;
    } bad[] = {
        {"", "not an address"},
        {"/8", "not an address"},
        {"localhost", "not a numeric IPv4 or IPv6 address"},
        {"10.0.0", "not a numeric IPv4 or IPv6 address"},
        {"256.0.0.0/8", "not a numeric IPv4 or IPv6 address"},
        {"[::1]", "not a numeric IPv4 or IPv6 address"},
        {"10.0.0.0 /8", "not a numeric IPv4 or IPv6 address"},
        {"0123456789012345678901234567890123456789012345678901234567890123456789/8",
         "not an address"},
        {"10.0.0.0/", "the prefix length after '/' must be a number"},
        {"10.0.0.0/x", "the prefix length after '/' must be a number"},
        {"10.0.0.0/-1", "the prefix length after '/' must be a number"},
        {"10.0.0.0/33", "an IPv4 prefix length is 0 to 32"},
        {"10.0.0.0/8x", "an IPv4 prefix length is 0 to 32"},
        {"10.0.0.0/8/8", "an IPv4 prefix length is 0 to 32"},
        {"::/129", "an IPv6 prefix length is 0 to 128"},
        {"::1/999999999999999999999", "an IPv6 prefix length is 0 to 128"},
        {"10.0.0.1/8", "bits are set past the prefix length (write the network, e.g. 10.0.0.0/8)"},
        {"10.0.0.128/24",
         "bits are set past the prefix length (write the network, e.g. 10.0.0.0/8)"},
        {"1.0.0.0/0", "bits are set past the prefix length (write the network, e.g. 10.0.0.0/8)"},
        {"2001:db8::1/32",
         "bits are set past the prefix length (write the network, e.g. 10.0.0.0/8)"},
        {"fec0::/9", "bits are set past the prefix length (write the network, e.g. 10.0.0.0/8)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct moat_cidr c;
        const char *why = moat_cidr_parse(bad[i].text, &c);
        if (why == NULL) {
            TEST__FAIL("case %zu \"%s\": accepted", i, bad[i].text);
            continue;
        }
        if (strcmp(why, bad[i].why) != 0) {
            TEST__FAIL("case %zu \"%s\": got \"%s\", want \"%s\"", i, bad[i].text, why, bad[i].why);
        }
    }
}

TEST_CASE(match_v4)
{
    struct moat_cidr set[3];
    range("10.0.0.0/8", &set[0]);
    range("192.168.1.128/25", &set[1]);
    range("203.0.113.5", &set[2]);
    EXPECT_INT(in(set, 3, "10.0.0.0"), 1);
    EXPECT_INT(in(set, 3, "10.255.255.255"), 1);
    EXPECT_INT(in(set, 3, "11.0.0.0"), 0);
    EXPECT_INT(in(set, 3, "9.255.255.255"), 0);
    /* a prefix that ends inside a byte */
    EXPECT_INT(in(set, 3, "192.168.1.128"), 1);
    EXPECT_INT(in(set, 3, "192.168.1.255"), 1);
    EXPECT_INT(in(set, 3, "192.168.1.127"), 0);
    EXPECT_INT(in(set, 3, "192.168.0.200"), 0);
    EXPECT_INT(in(set, 3, "203.0.113.5"), 1);
    EXPECT_INT(in(set, 3, "203.0.113.6"), 0);
    /* an IPv4 range says nothing of IPv6 peers */
    EXPECT_INT(in(set, 3, "::a00:1"), 0);
    EXPECT_INT(in(set, 3, "2001:db8::1"), 0);
    /* nothing matches an empty set */
    EXPECT_INT(in(set, 0, "10.0.0.1"), 0);
}

TEST_CASE(match_v6)
{
    struct moat_cidr set[3];
    range("2001:db8::/32", &set[0]);
    range("::1", &set[1]);
    range("fe80::/10", &set[2]);
    EXPECT_INT(in(set, 3, "2001:db8::1"), 1);
    EXPECT_INT(in(set, 3, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), 1);
    EXPECT_INT(in(set, 3, "2001:db9::"), 0);
    EXPECT_INT(in(set, 3, "::1"), 1);
    EXPECT_INT(in(set, 3, "::2"), 0);
    EXPECT_INT(in(set, 3, "fe80::1"), 1);
    EXPECT_INT(in(set, 3, "febf:ffff::1"), 1);
    EXPECT_INT(in(set, 3, "fec0::1"), 0);
    /* an IPv6 range says nothing of IPv4 peers, 127.0.0.1 is not ::1 */
    EXPECT_INT(in(set, 3, "127.0.0.1"), 0);
}

TEST_CASE(v4_mapped_matches_v4_ranges)
{
    struct moat_cidr set[1];
    range("10.0.0.0/8", &set[0]);
    EXPECT_INT(in(set, 1, "::ffff:10.1.2.3"), 1);
    EXPECT_INT(in(set, 1, "::ffff:11.1.2.3"), 0);
    /* only the mapped form: an IPv4-compatible or other address with those bytes is not it */
    EXPECT_INT(in(set, 1, "::10.1.2.3"), 0);
    EXPECT_INT(in(set, 1, "64:ff9b::10.1.2.3"), 0);

    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    EXPECT_INT(inet_pton(AF_INET6, "::ffff:10.9.8.7", &s6.sin6_addr), 1);
    EXPECT_INT(moat_cidr_match_sa(set, 1, (const struct sockaddr *)&s6), 1);
    EXPECT_INT(moat_cidr_match_text(set, 1, "[::ffff:10.9.8.7]:443"), 1);
}

TEST_CASE(slash_zero_matches_its_family)
{
    struct moat_cidr v4, v6;
    range("0.0.0.0/0", &v4);
    range("::/0", &v6);
    EXPECT_INT(in(&v4, 1, "1.2.3.4"), 1);
    EXPECT_INT(in(&v4, 1, "255.255.255.255"), 1);
    EXPECT_INT(in(&v4, 1, "::ffff:1.2.3.4"), 1);
    EXPECT_INT(in(&v4, 1, "2001:db8::1"), 0);
    EXPECT_INT(in(&v6, 1, "2001:db8::1"), 1);
    EXPECT_INT(in(&v6, 1, "::"), 1);
    EXPECT_INT(in(&v6, 1, "1.2.3.4"), 0);
}

TEST_CASE(socket_addresses)
{
    struct moat_cidr set[2];
    range("127.0.0.0/8", &set[0]);
    range("::1", &set[1]);
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(5)};
    s4.sin_addr.s_addr = htonl(0x7f000001);
    EXPECT_INT(moat_cidr_match_sa(set, 2, (const struct sockaddr *)&s4), 1);
    s4.sin_addr.s_addr = htonl(0x80000001);
    EXPECT_INT(moat_cidr_match_sa(set, 2, (const struct sockaddr *)&s4), 0);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    EXPECT_INT(moat_cidr_match_sa(set, 2, (const struct sockaddr *)&s6), 1);
    struct sockaddr un = {.sa_family = AF_UNIX};
    EXPECT_INT(moat_cidr_match_sa(set, 2, &un), 0); /* a unix peer is nobody's range */
}

TEST_CASE(peer_text)
{
    struct moat_cidr set[3];
    range("1.2.3.0/24", &set[0]);
    range("::1", &set[1]);
    range("2001:db8::/32", &set[2]);
    EXPECT_INT(moat_cidr_match_text(set, 3, "1.2.3.4:5"), 1);
    EXPECT_INT(moat_cidr_match_text(set, 3, "1.2.4.4:5"), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, "[::1]:443"), 1);
    EXPECT_INT(moat_cidr_match_text(set, 3, "[::2]:443"), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, "[2001:db8::5]:80"), 1);
    /* bare addresses, as handlers are given the client's */
    EXPECT_INT(moat_cidr_match_text(set, 3, "1.2.3.4"), 1);
    EXPECT_INT(moat_cidr_match_text(set, 3, "1.2.4.4"), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, "::1"), 1);
    EXPECT_INT(moat_cidr_match_text(set, 3, "2001:db8::5"), 1);
    EXPECT_INT(moat_cidr_match_text(set, 3, "2001:db9::5"), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, "::ffff:1.2.3.9"), 1);
    /* a bare IPv6 address is all address: its last group is not a port */
    struct moat_cidr one;
    range("2001:db9::1", &one);
    EXPECT_INT(moat_cidr_match_text(&one, 1, "2001:db9::1:5"), 0);
    EXPECT_INT(moat_cidr_match_text(&one, 1, "[2001:db9::1]:5"), 1);
    /* what is not an address matches nothing */
    EXPECT_INT(moat_cidr_match_text(set, 3, "unix:/run/moat.sock"), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, "localhost:443"), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, ":443"), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, "[]:443"), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, ""), 0);
    EXPECT_INT(moat_cidr_match_text(set, 3, NULL), 0);
    EXPECT_INT(moat_cidr_match_text(set, 0, "1.2.3.4:5"), 0);
}

int main(void)
{
    RUN(parse_forms);
    RUN(parse_refusals);
    RUN(match_v4);
    RUN(match_v6);
    RUN(v4_mapped_matches_v4_ranges);
    RUN(slash_zero_matches_its_family);
    RUN(socket_addresses);
    RUN(peer_text);
    TEST_MAIN_END();
}
