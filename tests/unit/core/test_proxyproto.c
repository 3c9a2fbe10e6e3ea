/*
 * Unit tests for core/proxyproto.c: the spec's v1 examples and every field form, v2 families,
 * headers captured from a real HAProxy 2.6 (with CRC32c, unique-id, SSL, ALPN and authority
 * TLVs), byte-exact v2 builds parsed back, every header split at every byte, NOT_PROXY on TLS
 * and HTTP, and one INVALID case per rule the parser enforces.
 *
 * Includes the .c to reach the CRC32c function.
 */
#include "core/proxyproto.c"
#include "test.h"

#include <stdlib.h>

/* Parse an exact-size heap copy, so ASan catches any read past n. */
static enum moat_pp_status parse_n(const void *p, size_t n, size_t max_len,
                                   struct moat_pp_result *r)
{
    uint8_t *c = malloc(n > 0 ? n : 1);
    if (n > 0) {
        memcpy(c, p, n);
    }
    enum moat_pp_status st = moat_pp_parse(n > 0 ? c : NULL, n, max_len, r);
    free(c);
    return st;
}

static enum moat_pp_status parse_str(const char *s, struct moat_pp_result *r)
{
    return parse_n(s, strlen(s), MOAT_PP_V2_MAX, r);
}

/* "addr:port" of a result address; four rotating buffers so one EXPECT can use two. */
static const char *addr(const struct sockaddr_storage *ss)
{
    static char bufs[4][MOAT_PP_ADDR_STRLEN];
    static int k;
    char *b = bufs[k++ % 4];
    if (moat_pp_addr_format(ss, 1, b, MOAT_PP_ADDR_STRLEN) == 0) {
        snprintf(b, MOAT_PP_ADDR_STRLEN, "(none, family %d)", ss->ss_family);
    }
    return b;
}

/* A v2 header: signature, ver_cmd, fam, the given length field, then body. */
static size_t v2_raw(uint8_t *out, uint8_t ver_cmd, uint8_t fam, size_t len_field, const void *body,
                     size_t body_len)
{
    memcpy(out, v2_sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len_field >> 8);
    out[15] = (uint8_t)len_field;
    if (body_len > 0) {
        memcpy(out + 16, body, body_len);
    }
    return 16 + body_len;
}

static size_t v2_hdr(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const void *body, size_t body_len)
{
    return v2_raw(out, ver_cmd, fam, body_len, body, body_len);
}

static struct sockaddr_storage sa4(const char *a, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, a, &sin.sin_addr) != 1) {
        fprintf(stderr, "bad test address %s\n", a);
    }
    memcpy(&ss, &sin, sizeof(sin));
    return ss;
}

static struct sockaddr_storage sa6(const char *a, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    if (inet_pton(AF_INET6, a, &sin6.sin6_addr) != 1) {
        fprintf(stderr, "bad test address %s\n", a);
    }
    memcpy(&ss, &sin6, sizeof(sin6));
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/*
 * Feed `p` one more byte at a time: NEED_MORE (with need_min <= missing <= need_max) until
 * `whole` bytes, then the same status and result as the whole input at every length from there.
 * Returns the number of prefixes that broke the rule (0 = fine).
 */
static int split_everywhere(const uint8_t *p, size_t n, size_t max_len)
{
    struct moat_pp_result full, part;
    enum moat_pp_status want = parse_n(p, n, max_len, &full);
    size_t end = want == MOAT_PP_OK ? full.consumed : n;
    int bad = 0;
    for (size_t k = 0; k <= n; k++) {
        enum moat_pp_status st = parse_n(p, k, max_len, &part);
        if (k < end && want == MOAT_PP_OK) {
            if (st != MOAT_PP_NEED_MORE || part.need_min > end - k || part.need_max < end - k) {
                fprintf(stderr, "  prefix %zu/%zu: status %d need %zu..%zu\n", k, end, st,
                        part.need_min, part.need_max);
                bad++;
            }
            continue;
        }
        if (st == MOAT_PP_NEED_MORE && k < n) {
            continue;
        }
        if (st != want || (want == MOAT_PP_OK && memcmp(&part, &full, sizeof(full)) != 0) ||
            (want == MOAT_PP_INVALID && part.why != full.why)) {
            fprintf(stderr, "  prefix %zu/%zu: status %d, whole %d\n", k, n, st, want);
            bad++;
        }
    }
    return bad;
}

/* Headers captured from HAProxy 2.6.12 (send-proxy-v2, proxy-v2-options crc32c,unique-id, and
 * ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c behind an SSL bind with ALPN h2),
 * each followed by the 5 bytes the client sent: "hello". */
static const uint8_t hap_tcp4[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x2a,
    0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0x8d, 0xc4, 0xb7, 0xfd, 0x03, 0x00, 0x04, 0x60,
    0x63, 0x1e, 0x7d, 0x05, 0x00, 0x14, 0x6d, 0x6f, 0x61, 0x74, 0x2d, 0x31, 0x32, 0x37, 0x2e, 0x30,
    0x2e, 0x30, 0x2e, 0x31, 0x2d, 0x33, 0x36, 0x32, 0x39, 0x32, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
};
static const uint8_t hap_tcp6[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21,
    0x00, 0x3c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xe7, 0x44, 0xb7, 0xfe, 0x03, 0x00, 0x04, 0xdb,
    0x31, 0x7c, 0xbe, 0x05, 0x00, 0x0e, 0x6d, 0x6f, 0x61, 0x74, 0x2d, 0x3a, 0x3a, 0x31,
    0x2d, 0x35, 0x39, 0x32, 0x30, 0x34, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
};
static const uint8_t hap_ssl[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x6b,
    0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0x95, 0xdc, 0xb7, 0xff, 0x03, 0x00, 0x04, 0x80,
    0xa9, 0xb2, 0x9b, 0x01, 0x00, 0x02, 0x68, 0x32, 0x02, 0x00, 0x09, 0x6d, 0x6f, 0x61, 0x74, 0x2e,
    0x74, 0x65, 0x73, 0x74, 0x20, 0x00, 0x44, 0x01, 0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0x07, 0x54,
    0x4c, 0x53, 0x76, 0x31, 0x2e, 0x33, 0x25, 0x00, 0x05, 0x45, 0x43, 0x32, 0x35, 0x36, 0x24, 0x00,
    0x11, 0x65, 0x63, 0x64, 0x73, 0x61, 0x2d, 0x77, 0x69, 0x74, 0x68, 0x2d, 0x53, 0x48, 0x41, 0x32,
    0x35, 0x36, 0x23, 0x00, 0x16, 0x54, 0x4c, 0x53, 0x5f, 0x41, 0x45, 0x53, 0x5f, 0x32, 0x35, 0x36,
    0x5f, 0x47, 0x43, 0x4d, 0x5f, 0x53, 0x48, 0x41, 0x33, 0x38, 0x34, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
};

/* ---- CRC32c ---- */

TEST_CASE(crc32c_check_value)
{
    /* The standard check value of CRC-32C (Castagnoli) and RFC 3720 B.4's 32 zero bytes. */
    const char *nine = "123456789";
    EXPECT_INT(crc32c_update(0xffffffffu, (const uint8_t *)nine, 9) ^ 0xffffffffu, 0xe3069283u);
    uint8_t zeros[32] = {0};
    EXPECT_INT(crc32c_update(0xffffffffu, zeros, 32) ^ 0xffffffffu, 0x8a9136aau);
}

/* ---- v1 ---- */

TEST_CASE(v1_spec_examples)
{
    struct moat_pp_result r;
    const char *tcp4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    EXPECT_INT(parse_str(tcp4, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, 56);
    EXPECT_INT(r.version, 1);
    EXPECT_INT(r.command, MOAT_PP_CMD_PROXY);
    EXPECT_INT(r.family, MOAT_PP_FAM_INET);
    EXPECT_INT(r.transport, MOAT_PP_PROTO_STREAM);
    EXPECT_STR(addr(&r.src), "255.255.255.255:65535");
    EXPECT_STR(addr(&r.dst), "255.255.255.255:65535");
    EXPECT_INT(r.tlv_len, 0);

    const char *tcp6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    EXPECT_INT(parse_str(tcp6, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, 104);
    EXPECT_INT(r.family, MOAT_PP_FAM_INET6);
    EXPECT_STR(addr(&r.src), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");

    /* The worst case of the spec: 107 bytes, and the rest of an UNKNOWN line is ignored. */
    const char *unk = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    EXPECT_INT(strlen(unk), 107);
    EXPECT_INT(parse_str(unk, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, 107);
    EXPECT_INT(r.command, MOAT_PP_CMD_PROXY);
    EXPECT_INT(r.family, MOAT_PP_FAM_UNSPEC);
    EXPECT_INT(r.src.ss_family, AF_UNSPEC);
    EXPECT_INT(r.dst.ss_family, AF_UNSPEC);

    EXPECT_INT(parse_str("PROXY UNKNOWN\r\n", &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, 15);
    EXPECT_INT(r.family, MOAT_PP_FAM_UNSPEC);
    EXPECT_INT(parse_str("PROXY UNKNOWN anything \x01 at all\r\n", &r), MOAT_PP_OK);
}

TEST_CASE(v1_followed_by_data)
{
    struct moat_pp_result r;
    const char *in = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n\r\n";
    EXPECT_INT(parse_str(in, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));
    EXPECT_STR(addr(&r.src), "192.168.0.1:56324");
    EXPECT_STR(addr(&r.dst), "192.168.0.11:443");
    EXPECT(split_everywhere((const uint8_t *)in, strlen(in), MOAT_PP_V2_MAX) == 0);
}

TEST_CASE(v1_field_forms)
{
    struct moat_pp_result r;
    EXPECT_INT(parse_str("PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n", &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.src), "0.0.0.0:0");
    EXPECT_STR(addr(&r.dst), "10.0.0.1:1");
    /* Leading zeros in a port: the spec only says decimal 0-65535; HAProxy reads them too. */
    EXPECT_INT(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 00080 08080\r\n", &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.src), "1.2.3.4:80");
    EXPECT_STR(addr(&r.dst), "5.6.7.8:8080");
    EXPECT_INT(parse_str("PROXY TCP6 ::1 ::2 1 2\r\n", &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.src), "[::1]:1");
    EXPECT_STR(addr(&r.dst), "[::2]:2");
    EXPECT_INT(parse_str("PROXY TCP6 2001:DB8::A ::ffff:192.0.2.1 443 65535\r\n", &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.src), "[2001:db8::a]:443");
    EXPECT_STR(addr(&r.dst), "[::ffff:192.0.2.1]:65535");
    EXPECT_INT(parse_str("PROXY TCP6 :: 1:2:3:4:5:6:7:8 0 0\r\n", &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.dst), "[1:2:3:4:5:6:7:8]:0");
}

TEST_CASE(v1_invalid)
{
    static const struct {
        const char *in;
        const char *why;
    } cases[] = {
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "bad v1 destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", "bad v1 source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 000001 1\r\n", "bad v1 source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 1\r\n", "bad v1 source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 1\r\n", "bad v1 source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1a 1\r\n", "bad v1 source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 0x10 1\r\n", "bad v1 source port"},
        {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad v1 source address"},
        {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "bad v1 source address"},
        {"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "bad v1 source address"},
        {"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "bad v1 source address"},
        {"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "bad v1 destination address"},
        {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad v1 source address"},
        {"PROXY TCP6 ::1 :::1 1 2\r\n", "bad v1 destination address"},
        {"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad v1 source address"},
        {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1 fields must be separated"},
        {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "v1 fields must be separated"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1 line has too many fields"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1 line has too many fields"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1 line has too few fields"},
        {"PROXY TCP4 \r\n", "v1 line has too few fields"},
        {"PROXY TCP4\r\n", "bad v1 protocol"},
        {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY UNKNOWNX\r\n", "bad v1 protocol"},
        {"PROXY UNKNOWN\n", "bad v1 protocol"},
        {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "v1 CR not followed by LF"},
        {"PROXY UNKNOWN\r\r\n", "v1 CR not followed by LF"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1 line longer"}, /* bare LF: waits for CR */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct moat_pp_result r;
        size_t n = strlen(cases[i].in);
        if (i == sizeof(cases) / sizeof(cases[0]) - 1) {
            /* The bare-LF line never finds its CR: padded to 106 bytes it is too long. */
            char buf[128];
            memset(buf, 'x', sizeof(buf));
            memcpy(buf, cases[i].in, n);
            EXPECT_INT(parse_n(buf, n, MOAT_PP_V2_MAX, &r), MOAT_PP_NEED_MORE);
            EXPECT_INT(parse_n(buf, 106, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
        } else {
            EXPECT_INT(parse_n(cases[i].in, n, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
        }
        if (r.why == NULL || strncmp(r.why, cases[i].why, strlen(cases[i].why)) != 0) {
            TEST__FAIL("case %zu \"%s\": why \"%s\", expected \"%s...\"", i, cases[i].in,
                       r.why ? r.why : "(null)", cases[i].why);
        }
        EXPECT_INT(r.version, 1);
    }
    /* A NUL inside an address is not the end of it. */
    struct moat_pp_result r;
    static const char nul[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
    EXPECT_INT(parse_n(nul, sizeof(nul) - 1, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    EXPECT_STR(r.why, "bad v1 source address");
}

TEST_CASE(v1_length_limit)
{
    struct moat_pp_result r;
    /* 108 bytes with CRLF: one more than the spec allows, refused as soon as 106 bytes without
     * a CR are in. */
    char line[160];
    int n = snprintf(line, sizeof(line), "PROXY UNKNOWN %092d\r\n", 0);
    EXPECT_INT(n, 108);
    EXPECT_INT(parse_n(line, (size_t)n, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    EXPECT_STR(r.why, "v1 line longer than 107 bytes");
    EXPECT_INT(parse_n(line, 106, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    EXPECT_INT(parse_n(line, 105, MOAT_PP_V2_MAX, &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.need_min, 2);
    EXPECT_INT(r.need_max, 2);
    /* CR at offset 105, LF at 106: exactly 107, accepted. */
    n = snprintf(line, sizeof(line), "PROXY UNKNOWN %091d\r\n", 0);
    EXPECT_INT(n, 107);
    EXPECT_INT(parse_n(line, (size_t)n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(parse_n(line, 106, MOAT_PP_V2_MAX, &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.need_min, 1);
    /* A TCP4 line padded with a long port is refused by length, not by its field. */
    memset(line, '1', sizeof(line));
    memcpy(line, "PROXY TCP4 1.2.3.4 5.6.7.8 1 ", 29);
    EXPECT_INT(parse_n(line, 120, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    EXPECT_STR(r.why, "v1 line longer than 107 bytes");
}

TEST_CASE(v1_need_more_hints)
{
    struct moat_pp_result r;
    EXPECT_INT(parse_n("", 0, MOAT_PP_V2_MAX, &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.need_min, 15);
    EXPECT_INT(r.need_max, MOAT_PP_V2_MAX);
    EXPECT_INT(r.version, 0);
    EXPECT_INT(parse_str("P", &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.need_min, 14);
    EXPECT_INT(r.need_max, 106);
    EXPECT_INT(parse_str("PROXY ", &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.version, 1);
    EXPECT_INT(r.need_min, 9);
    EXPECT_INT(parse_str("PROXY UNKNOWN", &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.need_min, 2);
    EXPECT_INT(parse_str("PROXY UNKNOWN\r", &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.need_min, 1);
    EXPECT_INT(r.need_max, 1);
}

/* ---- telling PROXY from anything else ---- */

TEST_CASE(not_proxy_from_first_bytes)
{
    struct moat_pp_result r;
    static const uint8_t tls[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03};
    EXPECT_INT(parse_n(tls, sizeof(tls), MOAT_PP_V2_MAX, &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_n(tls, 1, MOAT_PP_V2_MAX, &r), MOAT_PP_NOT_PROXY); /* from byte one */
    EXPECT_INT(parse_str("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_str("G", &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_str("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_str("PRI", &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_str("PUT / HTTP/1.1\r\n", &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_str("PROXYX", &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_str("proxy TCP4", &r), MOAT_PP_NOT_PROXY);
    /* RFC 9112 §2.2 lets a client send empty lines before a request: not a v2 signature. */
    EXPECT_INT(parse_str("\r\n\r\nGET / HTTP/1.1\r\n", &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_str("\r\nGET", &r), MOAT_PP_NOT_PROXY);
    EXPECT_INT(parse_n("\r\n\r\n\0\r\nQUIX", 12, MOAT_PP_V2_MAX, &r), MOAT_PP_NOT_PROXY);
    /* Prefixes of both signatures wait. */
    EXPECT_INT(parse_str("PROX", &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(parse_str("\r\n\r\n", &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.need_min, 12);
    EXPECT_INT(parse_n("\r\n\r\n\0\r\nQUIT\n", 12, MOAT_PP_V2_MAX, &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.version, 2);
    EXPECT_INT(r.need_min, 4);
}

/* ---- v2 ---- */

TEST_CASE(v2_haproxy_tcp4_crc_unique_id)
{
    struct moat_pp_result r;
    EXPECT_INT(parse_n(hap_tcp4, sizeof(hap_tcp4), MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, sizeof(hap_tcp4) - 5);
    EXPECT(memcmp(hap_tcp4 + r.consumed, "hello", 5) == 0);
    EXPECT_INT(r.version, 2);
    EXPECT_INT(r.command, MOAT_PP_CMD_PROXY);
    EXPECT_INT(r.family, MOAT_PP_FAM_INET);
    EXPECT_INT(r.transport, MOAT_PP_PROTO_STREAM);
    EXPECT_STR(addr(&r.src), "127.0.0.1:36292");
    EXPECT_STR(addr(&r.dst), "127.0.0.1:47101");
    EXPECT_INT(r.tlv_off, 28);
    EXPECT_INT(r.tlv_len, 30);
    struct moat_pp_tlv t;
    EXPECT(moat_pp_tlv_find(hap_tcp4, &r, MOAT_PP2_TYPE_UNIQUE_ID, &t));
    EXPECT_SLICE(moat_slice_of((const char *)t.value, t.len), "moat-127.0.0.1-36292");
    EXPECT(moat_pp_tlv_find(hap_tcp4, &r, MOAT_PP2_TYPE_CRC32C, &t));
    EXPECT_INT(t.len, 4);
    EXPECT(!moat_pp_tlv_find(hap_tcp4, &r, MOAT_PP2_TYPE_AUTHORITY, &t));
    EXPECT(split_everywhere(hap_tcp4, sizeof(hap_tcp4), MOAT_PP_V2_MAX) == 0);
}

TEST_CASE(v2_haproxy_tcp6)
{
    struct moat_pp_result r;
    EXPECT_INT(parse_n(hap_tcp6, sizeof(hap_tcp6), MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, sizeof(hap_tcp6) - 5);
    EXPECT_INT(r.family, MOAT_PP_FAM_INET6);
    EXPECT_STR(addr(&r.src), "[::1]:59204");
    EXPECT_STR(addr(&r.dst), "[::1]:47102");
    struct moat_pp_tlv t;
    EXPECT(moat_pp_tlv_find(hap_tcp6, &r, MOAT_PP2_TYPE_UNIQUE_ID, &t));
    EXPECT_SLICE(moat_slice_of((const char *)t.value, t.len), "moat-::1-59204");
    EXPECT(split_everywhere(hap_tcp6, sizeof(hap_tcp6), MOAT_PP_V2_MAX) == 0);
}

TEST_CASE(v2_haproxy_ssl_tlvs)
{
    struct moat_pp_result r;
    EXPECT_INT(parse_n(hap_ssl, sizeof(hap_ssl), MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, sizeof(hap_ssl) - 5);
    EXPECT_STR(addr(&r.dst), "127.0.0.1:47103");
    /* All TLVs in order: CRC32c, ALPN, authority, SSL. */
    struct moat_pp_tlv_iter it;
    struct moat_pp_tlv t;
    moat_pp_tlv_iter_init(&it, hap_ssl, &r);
    static const uint8_t types[] = {MOAT_PP2_TYPE_CRC32C, MOAT_PP2_TYPE_ALPN,
                                    MOAT_PP2_TYPE_AUTHORITY, MOAT_PP2_TYPE_SSL};
    size_t k = 0;
    while (moat_pp_tlv_next(&it, &t)) {
        EXPECT(k < sizeof(types));
        if (k < sizeof(types)) {
            EXPECT_INT(t.type, types[k]);
        }
        k++;
    }
    EXPECT_INT(k, 4);
    EXPECT(moat_pp_tlv_find(hap_ssl, &r, MOAT_PP2_TYPE_ALPN, &t));
    EXPECT_SLICE(moat_slice_of((const char *)t.value, t.len), "h2");
    EXPECT(moat_pp_tlv_find(hap_ssl, &r, MOAT_PP2_TYPE_AUTHORITY, &t));
    EXPECT_SLICE(moat_slice_of((const char *)t.value, t.len), "moat.test");

    EXPECT(moat_pp_tlv_find(hap_ssl, &r, MOAT_PP2_TYPE_SSL, &t));
    uint8_t client = 0xff;
    uint32_t verify = 0xffffffffu;
    struct moat_pp_tlv_iter sub;
    EXPECT(moat_pp_tlv_ssl(&t, &client, &verify, &sub));
    EXPECT_INT(client, MOAT_PP2_CLIENT_SSL);
    EXPECT_INT(verify, 0);
    static const struct {
        uint8_t type;
        const char *value;
    } subs[] = {{MOAT_PP2_SUBTYPE_SSL_VERSION, "TLSv1.3"},
                {MOAT_PP2_SUBTYPE_SSL_KEY_ALG, "EC256"},
                {MOAT_PP2_SUBTYPE_SSL_SIG_ALG, "ecdsa-with-SHA256"},
                {MOAT_PP2_SUBTYPE_SSL_CIPHER, "TLS_AES_256_GCM_SHA384"}};
    k = 0;
    struct moat_pp_tlv s;
    while (moat_pp_tlv_next(&sub, &s)) {
        if (k < 4) {
            EXPECT_INT(s.type, subs[k].type);
            EXPECT_SLICE(moat_slice_of((const char *)s.value, s.len), subs[k].value);
        }
        k++;
    }
    EXPECT_INT(k, 4);
    /* Not an SSL TLV. */
    EXPECT(moat_pp_tlv_find(hap_ssl, &r, MOAT_PP2_TYPE_ALPN, &t));
    EXPECT(!moat_pp_tlv_ssl(&t, &client, &verify, &sub));
    EXPECT(split_everywhere(hap_ssl, sizeof(hap_ssl), MOAT_PP_V2_MAX) == 0);
}

TEST_CASE(v2_crc_mismatch)
{
    struct moat_pp_result r;
    uint8_t h[sizeof(hap_tcp4)];
    /* Any one bit changed anywhere in the header (the CRC field included) is caught, except in
     * the CRC TLV's own type byte (offset 28): that turns it into an unknown TLV, unchecked. */
    for (size_t i = 16; i < sizeof(hap_tcp4) - 5; i++) {
        if (i == 28) {
            continue;
        }
        memcpy(h, hap_tcp4, sizeof(h));
        h[i] ^= 0x04;
        enum moat_pp_status st = parse_n(h, sizeof(h), MOAT_PP_V2_MAX, &r);
        if (st == MOAT_PP_OK) {
            TEST__FAIL("bit flip at %zu accepted", i);
        }
    }
    memcpy(h, hap_tcp4, sizeof(h));
    h[16] ^= 0x01; /* source address */
    EXPECT_INT(parse_n(h, sizeof(h), MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    EXPECT_STR(r.why, "v2 CRC32c mismatch");
    memcpy(h, hap_tcp4, sizeof(h));
    h[34] ^= 0x80; /* the checksum itself */
    EXPECT_INT(parse_n(h, sizeof(h), MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    EXPECT_STR(r.why, "v2 CRC32c mismatch");
    /* The bytes after the header are not covered. */
    memcpy(h, hap_tcp4, sizeof(h));
    h[sizeof(h) - 1] ^= 0xff;
    EXPECT_INT(parse_n(h, sizeof(h), MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
}

TEST_CASE(v2_families)
{
    struct moat_pp_result r;
    uint8_t h[512];
    static const uint8_t a4[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb};
    size_t n = v2_hdr(h, 0x21, 0x11, a4, sizeof(a4));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, 28);
    EXPECT_STR(addr(&r.src), "192.0.2.1:56324");
    EXPECT_STR(addr(&r.dst), "198.51.100.7:443");
    EXPECT_INT(r.tlv_off, 28);
    EXPECT_INT(r.tlv_len, 0);
    struct moat_pp_tlv_iter it;
    struct moat_pp_tlv t;
    moat_pp_tlv_iter_init(&it, h, &r);
    EXPECT(!moat_pp_tlv_next(&it, &t));

    /* UDP over IPv4: parsed, reported as DGRAM for the caller to refuse. */
    n = v2_hdr(h, 0x21, 0x12, a4, sizeof(a4));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.family, MOAT_PP_FAM_INET);
    EXPECT_INT(r.transport, MOAT_PP_PROTO_DGRAM);

    uint8_t a6[36] = {0x20, 0x01, 0x0d,     0xb8,        [15] = 1, [16] = 0x20, 0x01,
                      0x0d, 0xb8, [31] = 2, [32] = 0x30, 0x39,     0x00,        0x50};
    n = v2_hdr(h, 0x21, 0x21, a6, sizeof(a6));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.family, MOAT_PP_FAM_INET6);
    EXPECT_INT(r.transport, MOAT_PP_PROTO_STREAM);
    EXPECT_STR(addr(&r.src), "[2001:db8::1]:12345");
    EXPECT_STR(addr(&r.dst), "[2001:db8::2]:80");
    n = v2_hdr(h, 0x21, 0x22, a6, sizeof(a6));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.transport, MOAT_PP_PROTO_DGRAM);

    uint8_t au[216] = {0};
    memcpy(au, "/run/client.sock", 16);
    memcpy(au + 108, "\0abstract", 9);
    n = v2_hdr(h, 0x21, 0x31, au, sizeof(au));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.family, MOAT_PP_FAM_UNIX);
    EXPECT_INT(r.src.ss_family, AF_UNIX);
    EXPECT_STR(addr(&r.src), "unix:/run/client.sock");
    EXPECT_STR(addr(&r.dst), "unix:@abstract");
    EXPECT_INT(r.consumed, 232);
    n = v2_hdr(h, 0x21, 0x32, au, sizeof(au));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.transport, MOAT_PP_PROTO_DGRAM);

    /* PROXY with AF_UNSPEC: no addresses, TLVs right after the fixed part. */
    static const uint8_t noop[] = {MOAT_PP2_TYPE_NOOP, 0x00, 0x02, 0xaa, 0xbb};
    n = v2_hdr(h, 0x21, 0x00, noop, sizeof(noop));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.command, MOAT_PP_CMD_PROXY);
    EXPECT_INT(r.family, MOAT_PP_FAM_UNSPEC);
    EXPECT_INT(r.src.ss_family, AF_UNSPEC);
    EXPECT_INT(r.tlv_off, 16);
    EXPECT_INT(r.tlv_len, 5);
    EXPECT(moat_pp_tlv_find(h, &r, MOAT_PP2_TYPE_NOOP, &t));
    EXPECT_INT(t.len, 2);

    /* Extra bytes after a family's addresses are TLVs, here three of type 0 and length 0. */
    uint8_t pad[21] = {0};
    memcpy(pad, a4, 12);
    n = v2_hdr(h, 0x21, 0x11, pad, sizeof(pad));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.tlv_len, 9);
}

TEST_CASE(v2_local)
{
    struct moat_pp_result r;
    uint8_t h[512];
    size_t n = v2_hdr(h, 0x20, 0x00, NULL, 0);
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, 16);
    EXPECT_INT(r.command, MOAT_PP_CMD_LOCAL);
    EXPECT_INT(r.family, MOAT_PP_FAM_UNSPEC);
    EXPECT_INT(r.src.ss_family, AF_UNSPEC);

    /* LOCAL with addresses: the block is ignored (spec §2.2), TLVs after it still read. */
    static const uint8_t body[] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x02, 0x00, 0x01, 'x'};
    n = v2_hdr(h, 0x20, 0x11, body, sizeof(body));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.command, MOAT_PP_CMD_LOCAL);
    EXPECT_INT(r.family, MOAT_PP_FAM_UNSPEC);
    EXPECT_INT(r.transport, MOAT_PP_PROTO_UNSPEC);
    EXPECT_INT(r.src.ss_family, AF_UNSPEC);
    struct moat_pp_tlv t;
    EXPECT(moat_pp_tlv_find(h, &r, MOAT_PP2_TYPE_AUTHORITY, &t));
    EXPECT_SLICE(moat_slice_of((const char *)t.value, t.len), "x");

    /* LOCAL with a family but fewer bytes than its addresses: accepted, nothing read. */
    n = v2_hdr(h, 0x20, 0x21, body, 4);
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, 20);
    EXPECT_INT(r.tlv_len, 0);

    /* LOCAL's family byte must still be a defined one. */
    n = v2_hdr(h, 0x20, 0x41, NULL, 0);
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
}

TEST_CASE(v2_invalid)
{
    struct moat_pp_result r;
    uint8_t h[600];
    uint8_t a4[40] = {127, 0, 0, 1, 127, 0, 0, 2, 0, 1, 0, 2};
    static const struct {
        uint8_t ver_cmd, fam;
        size_t len;
        const char *why;
    } cases[] = {
        {0x11, 0x11, 12, "unsupported version"},
        {0x31, 0x11, 12, "unsupported version"},
        {0x01, 0x11, 12, "unsupported version"},
        {0xf1, 0x11, 12, "unsupported version"},
        {0x22, 0x11, 12, "v2 command is neither LOCAL nor PROXY"},
        {0x2f, 0x11, 12, "v2 command is neither LOCAL nor PROXY"},
        {0x21, 0x13, 12, "v2 unknown address family/protocol"},
        {0x21, 0x10, 12, "v2 unknown address family/protocol"},
        {0x21, 0x01, 12, "v2 unknown address family/protocol"},
        {0x21, 0x41, 12, "v2 unknown address family/protocol"},
        {0x21, 0x11, 11, "v2 family/length mismatch"},
        {0x21, 0x11, 0, "v2 family/length mismatch"},
        {0x21, 0x12, 11, "v2 family/length mismatch"},
        {0x21, 0x21, 35, "v2 family/length mismatch"},
        {0x21, 0x21, 12, "v2 family/length mismatch"},
        {0x21, 0x31, 215, "v2 family/length mismatch"},
        {0x21, 0x32, 36, "v2 family/length mismatch"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t body[216] = {0};
        memcpy(body, a4, 12);
        size_t n = v2_hdr(h, cases[i].ver_cmd, cases[i].fam, body, cases[i].len);
        EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
        if (r.why == NULL || strncmp(r.why, cases[i].why, strlen(cases[i].why)) != 0) {
            TEST__FAIL("case %zu: why \"%s\", expected \"%s...\"", i, r.why ? r.why : "(null)",
                       cases[i].why);
        }
        EXPECT_INT(r.version, 2);
    }
    /* Decided early: the version byte alone, the family byte alone, the length field alone. */
    size_t n = v2_hdr(h, 0x11, 0x11, a4, 12);
    EXPECT_INT(parse_n(h, 13, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    n = v2_hdr(h, 0x21, 0x99, a4, 12);
    EXPECT_INT(parse_n(h, 14, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    n = v2_raw(h, 0x21, 0x21, 20, a4, 20);
    EXPECT_INT(parse_n(h, 16, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    EXPECT(n > 16);

    /* The caller's cap on the whole header, refused from the length field. */
    n = v2_raw(h, 0x21, 0x11, 0xffff, a4, 12);
    EXPECT_INT(parse_n(h, 16, 4096, &r), MOAT_PP_INVALID);
    EXPECT_STR(r.why, "v2 header longer than the configured limit");
    n = v2_hdr(h, 0x21, 0x11, a4, 39); /* addresses and nine empty TLVs of type 0 */
    EXPECT_INT(parse_n(h, n, 55, &r), MOAT_PP_OK);
    EXPECT_INT(parse_n(h, n, 54, &r), MOAT_PP_INVALID);
    /* Without a cap, 65535 bytes of length is legal and waits for all of it. */
    n = v2_raw(h, 0x21, 0x11, 0xffff, a4, 12);
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_NEED_MORE);
    EXPECT_INT(r.need_min, 65535 - 12);
    EXPECT_INT(r.need_max, 65535 - 12);
}

TEST_CASE(v2_invalid_tlvs)
{
    static const struct {
        uint8_t tlvs[24];
        size_t len;
        const char *why;
    } cases[] = {
        {{0x02}, 1, "v2 TLV overflows the header (truncated TLV header)"},
        {{0x02, 0x00}, 2, "v2 TLV overflows the header (truncated TLV header)"},
        {{0x02, 0x00, 0x02, 'x'}, 4, "v2 TLV overflows the header"},
        {{0x02, 0xff, 0xff, 'x'}, 4, "v2 TLV overflows the header"},
        {{0x04, 0x00, 0x00, 0x02, 0x00}, 5, "v2 TLV overflows the header (truncated TLV header)"},
        {{0x03, 0x00, 0x03, 1, 2, 3}, 6, "v2 CRC32c TLV is not 4 bytes"},
        {{0x03, 0x00, 0x05, 1, 2, 3, 4, 5}, 8, "v2 CRC32c TLV is not 4 bytes"},
        {{0x20, 0x00, 0x04, 1, 0, 0, 0}, 7, "v2 SSL TLV shorter than 5 bytes"},
        {{0x20, 0x00, 0x07, 1, 0, 0, 0, 0, 0x21, 0x00}, 10, "v2 SSL sub-TLV overflows its TLV"},
        {{0x20, 0x00, 0x09, 1, 0, 0, 0, 0, 0x21, 0x00, 0x02, 'x'},
         12,
         "v2 SSL sub-TLV overflows its TLV"},
    };
    uint8_t h[128], body[64];
    static const uint8_t a4[12] = {127, 0, 0, 1, 127, 0, 0, 2, 0, 1, 0, 2};
    struct moat_pp_result r;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(body, a4, 12);
        memcpy(body + 12, cases[i].tlvs, cases[i].len);
        size_t n = v2_hdr(h, 0x21, 0x11, body, 12 + cases[i].len);
        EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
        if (r.why == NULL || strcmp(r.why, cases[i].why) != 0) {
            TEST__FAIL("case %zu: why \"%s\", expected \"%s\"", i, r.why ? r.why : "(null)",
                       cases[i].why);
        }
    }
    /* A well-formed SSL TLV (no sub-TLVs, then one) is fine. */
    static const uint8_t ssl[] = {0x20, 0x00, 0x0f, 0x07, 0x00, 0x00, 0x00, 0x01, 0x22,
                                  0x00, 0x07, 'c',  'l',  'i',  'e',  'n',  't',  '1'};
    memcpy(body, a4, 12);
    memcpy(body + 12, ssl, sizeof(ssl));
    size_t n = v2_hdr(h, 0x21, 0x11, body, 12 + sizeof(ssl));
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    struct moat_pp_tlv t, s;
    struct moat_pp_tlv_iter sub;
    uint8_t client;
    uint32_t verify;
    EXPECT(moat_pp_tlv_find(h, &r, MOAT_PP2_TYPE_SSL, &t));
    EXPECT(moat_pp_tlv_ssl(&t, &client, &verify, &sub));
    EXPECT_INT(client, MOAT_PP2_CLIENT_SSL | MOAT_PP2_CLIENT_CERT_CONN | MOAT_PP2_CLIENT_CERT_SESS);
    EXPECT_INT(verify, 1);
    EXPECT(moat_pp_tlv_next(&sub, &s));
    EXPECT_INT(s.type, MOAT_PP2_SUBTYPE_SSL_CN);
    EXPECT_SLICE(moat_slice_of((const char *)s.value, s.len), "client1");
    EXPECT(!moat_pp_tlv_next(&sub, &s));

    /* The iterator stops at a TLV that does not fit, on bytes the parser never saw. */
    static const uint8_t raw[] = {0x20, 0x00, 0x0b, 0x01, 0,    0, 0, 0,
                                  0x21, 0x00, 0x01, 'x',  0x22, 0, 9, 'y'};
    struct moat_pp_tlv outer = {.type = MOAT_PP2_TYPE_SSL, .value = raw + 3, .len = 13};
    EXPECT(moat_pp_tlv_ssl(&outer, NULL, NULL, &sub));
    EXPECT(moat_pp_tlv_next(&sub, &s));
    EXPECT_INT(s.type, MOAT_PP2_SUBTYPE_SSL_VERSION);
    EXPECT(!moat_pp_tlv_next(&sub, &s));
    EXPECT(!moat_pp_tlv_next(&sub, &s));
    outer.len = 4;
    EXPECT(!moat_pp_tlv_ssl(&outer, NULL, NULL, &sub));

    /* Two CRC32c TLVs, even both right, are refused: which one was zeroed? */
    uint8_t two[64];
    memcpy(two, a4, 12);
    memcpy(two + 12, "\x03\x00\x04\0\0\0\0\x03\x00\x04\0\0\0\0", 14);
    n = v2_hdr(h, 0x21, 0x11, two, 26);
    EXPECT_INT(parse_n(h, n, MOAT_PP_V2_MAX, &r), MOAT_PP_INVALID);
    EXPECT_STR(r.why, "v2 header has two CRC32c TLVs");
}

/* ---- building ---- */

TEST_CASE(v2_build_byte_exact)
{
    struct sockaddr_storage src = sa4("192.0.2.1", 56324), dst = sa4("198.51.100.7", 443);
    uint8_t out[128];
    size_t n = moat_pp_v2_build(out, sizeof(out), SA(src), SA(dst), MOAT_SLICE_LIT("example.com"),
                                MOAT_SLICE_LIT("h2"), MOAT_PP_V2_CRC32C);
    /* CRC value computed independently (bitwise CRC-32C in Python) over this header. */
    static const uint8_t want[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
        0x21, 0x11, 0x00, 0x26,                                                 /* PROXY TCP4 */
        0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x07, 0xdc, 0x04, 0x01, 0xbb, /* addresses */
        0x01, 0x00, 0x02, 'h',  '2',                                            /* ALPN */
        0x02, 0x00, 0x0b, 'e',  'x',  'a',  'm',  'p',  'l',  'e',  '.',  'c',
        'o',  'm',  0x03, 0x00, 0x04, 0xc7, 0x0d, 0xee, 0xdf, /* CRC32c */
    };
    EXPECT_INT(n, sizeof(want));
    EXPECT(memcmp(out, want, sizeof(want)) == 0);

    struct moat_pp_result r;
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, n);
    EXPECT_STR(addr(&r.src), "192.0.2.1:56324");
    EXPECT_STR(addr(&r.dst), "198.51.100.7:443");
    struct moat_pp_tlv t;
    EXPECT(moat_pp_tlv_find(out, &r, MOAT_PP2_TYPE_AUTHORITY, &t));
    EXPECT_SLICE(moat_slice_of((const char *)t.value, t.len), "example.com");
    EXPECT(moat_pp_tlv_find(out, &r, MOAT_PP2_TYPE_ALPN, &t));
    EXPECT_SLICE(moat_slice_of((const char *)t.value, t.len), "h2");
    EXPECT(split_everywhere(out, n, MOAT_PP_V2_MAX) == 0);

    /* Without TLVs: just the 28 bytes. */
    n = moat_pp_v2_build(out, sizeof(out), SA(src), SA(dst), MOAT_SLICE_NULL, MOAT_SLICE_NULL, 0);
    EXPECT_INT(n, 28);
    EXPECT(memcmp(out, want, 14) == 0);
    EXPECT_INT(out[15], 12);
    EXPECT(memcmp(out + 16, want + 16, 12) == 0);
}

TEST_CASE(v2_build_families)
{
    uint8_t out[256];
    struct moat_pp_result r;
    struct sockaddr_storage s6 = sa6("2001:db8::1", 40000), d6 = sa6("2001:db8::2", 443);
    struct sockaddr_storage s4 = sa4("203.0.113.9", 5555);
    size_t n =
        moat_pp_v2_build(out, sizeof(out), SA(s6), SA(d6), MOAT_SLICE_NULL, MOAT_SLICE_NULL, 0);
    EXPECT_INT(n, 52);
    EXPECT_INT(out[12], 0x21);
    EXPECT_INT(out[13], 0x21);
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.src), "[2001:db8::1]:40000");
    EXPECT_STR(addr(&r.dst), "[2001:db8::2]:443");

    /* One of each: TCP6 with the IPv4 end mapped, no address lost. */
    n = moat_pp_v2_build(out, sizeof(out), SA(s4), SA(d6), MOAT_SLICE_NULL, MOAT_SLICE_NULL, 0);
    EXPECT_INT(n, 52);
    EXPECT_INT(out[13], 0x21);
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.src), "[::ffff:203.0.113.9]:5555");
    EXPECT_STR(addr(&r.dst), "[2001:db8::2]:443");
    n = moat_pp_v2_build(out, sizeof(out), SA(d6), SA(s4), MOAT_SLICE_NULL, MOAT_SLICE_NULL, 0);
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.dst), "[::ffff:203.0.113.9]:5555");

    /* No source: LOCAL, UNSPEC, TLVs still carried. */
    n = moat_pp_v2_build(out, sizeof(out), NULL, SA(d6), MOAT_SLICE_LIT("a.example"),
                         MOAT_SLICE_NULL, MOAT_PP_V2_CRC32C);
    EXPECT_INT(n, 16 + 12 + 7);
    EXPECT_INT(out[12], 0x20);
    EXPECT_INT(out[13], 0x00);
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.command, MOAT_PP_CMD_LOCAL);
    struct moat_pp_tlv t;
    EXPECT(moat_pp_tlv_find(out, &r, MOAT_PP2_TYPE_AUTHORITY, &t));
    EXPECT_INT(t.len, 9);

    /* A family PROXY cannot carry for us: PROXY + UNSPEC. */
    struct sockaddr_storage su;
    memset(&su, 0, sizeof(su));
    su.ss_family = AF_UNIX;
    n = moat_pp_v2_build(out, sizeof(out), SA(su), SA(d6), MOAT_SLICE_NULL, MOAT_SLICE_NULL, 0);
    EXPECT_INT(n, 16);
    EXPECT_INT(out[12], 0x21);
    EXPECT_INT(out[13], 0x00);
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.command, MOAT_PP_CMD_PROXY);
    EXPECT_INT(r.family, MOAT_PP_FAM_UNSPEC);
}

TEST_CASE(v2_build_refuses_what_does_not_fit)
{
    struct sockaddr_storage src = sa4("192.0.2.1", 1), dst = sa4("192.0.2.2", 2);
    uint8_t out[128];
    size_t full = moat_pp_v2_build(out, sizeof(out), SA(src), SA(dst), MOAT_SLICE_LIT("host"),
                                   MOAT_SLICE_LIT("http/1.1"), MOAT_PP_V2_CRC32C);
    EXPECT_INT(full, 16 + 12 + 7 + 11 + 7);
    for (size_t cap = 0; cap < full; cap++) {
        uint8_t *exact = malloc(cap > 0 ? cap : 1);
        size_t n = moat_pp_v2_build(exact, cap, SA(src), SA(dst), MOAT_SLICE_LIT("host"),
                                    MOAT_SLICE_LIT("http/1.1"), MOAT_PP_V2_CRC32C);
        if (n != 0) {
            TEST__FAIL("cap %zu gave %zu", cap, n);
        }
        free(exact);
    }
    /* A TLV over 65535 bytes, or a header over the 16-bit length, cannot be said. */
    size_t big = 70000;
    char *huge = malloc(big);
    uint8_t *buf = malloc(2 * big);
    memset(huge, 'a', big);
    EXPECT_INT(moat_pp_v2_build(buf, 2 * big, SA(src), SA(dst), moat_slice_of(huge, 65536),
                                MOAT_SLICE_NULL, 0),
               0);
    EXPECT_INT(moat_pp_v2_build(buf, 2 * big, SA(src), SA(dst), moat_slice_of(huge, 40000),
                                moat_slice_of(huge, 40000), 0),
               0);
    size_t n = moat_pp_v2_build(buf, 2 * big, SA(src), SA(dst), moat_slice_of(huge, 65535 - 15),
                                MOAT_SLICE_NULL, 0);
    EXPECT_INT(n, MOAT_PP_V2_MAX);
    struct moat_pp_result r;
    EXPECT_INT(parse_n(buf, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(r.consumed, MOAT_PP_V2_MAX);
    EXPECT_INT(parse_n(buf, n, 4096, &r), MOAT_PP_INVALID);
    free(huge);
    free(buf);
}

TEST_CASE(v1_build)
{
    char out[MOAT_PP_V1_MAX];
    struct sockaddr_storage s4 = sa4("192.0.2.1", 56324), d4 = sa4("198.51.100.7", 443);
    struct sockaddr_storage s6 = sa6("2001:db8::1", 1), d6 = sa6("::1", 65535);
    struct moat_pp_result r;
    size_t n = moat_pp_v1_build(out, sizeof(out), SA(s4), SA(d4));
    EXPECT_SLICE(moat_slice_of(out, n), "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.src), "192.0.2.1:56324");
    n = moat_pp_v1_build(out, sizeof(out), SA(s6), SA(d6));
    EXPECT_SLICE(moat_slice_of(out, n), "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_STR(addr(&r.dst), "[::1]:65535");
    n = moat_pp_v1_build(out, sizeof(out), SA(s4), SA(d6));
    EXPECT_SLICE(moat_slice_of(out, n), "PROXY TCP6 ::ffff:192.0.2.1 ::1 56324 65535\r\n");
    n = moat_pp_v1_build(out, sizeof(out), NULL, SA(d6));
    EXPECT_SLICE(moat_slice_of(out, n), "PROXY UNKNOWN\r\n");
    EXPECT_INT(moat_pp_v1_build(out, 14, NULL, NULL), 0);
    EXPECT_INT(moat_pp_v1_build(out, 15, NULL, NULL), 15);
    /* The longest possible line fits in MOAT_PP_V1_MAX. */
    struct sockaddr_storage f1 = sa6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    n = moat_pp_v1_build(out, sizeof(out), SA(f1), SA(f1));
    EXPECT_INT(n, 104);
    EXPECT_INT(parse_n(out, n, MOAT_PP_V2_MAX, &r), MOAT_PP_OK);
    EXPECT_INT(moat_pp_v1_build(out, 103, SA(f1), SA(f1)), 0);
}

TEST_CASE(addr_format)
{
    char out[MOAT_PP_ADDR_STRLEN];
    struct sockaddr_storage s4 = sa4("192.0.2.1", 8080), s6 = sa6("2001:db8::1", 443);
    EXPECT_INT(moat_pp_addr_format(&s4, 1, out, sizeof(out)), 14);
    EXPECT_STR(out, "192.0.2.1:8080");
    EXPECT_INT(moat_pp_addr_format(&s4, 0, out, sizeof(out)), 9);
    EXPECT_STR(out, "192.0.2.1");
    EXPECT_INT(moat_pp_addr_format(&s6, 1, out, sizeof(out)), 17);
    EXPECT_STR(out, "[2001:db8::1]:443");
    EXPECT_INT(moat_pp_addr_format(&s6, 0, out, sizeof(out)), 11);
    EXPECT_STR(out, "2001:db8::1");
    /* Too small: 0 and an empty string, never a cut address. */
    EXPECT_INT(moat_pp_addr_format(&s6, 1, out, 17), 0);
    EXPECT_STR(out, "");
    EXPECT_INT(moat_pp_addr_format(&s6, 1, out, 18), 17);
    EXPECT_INT(moat_pp_addr_format(&s6, 1, NULL, 0), 0);
    struct sockaddr_storage none;
    memset(&none, 0, sizeof(none));
    EXPECT_INT(moat_pp_addr_format(&none, 1, out, sizeof(out)), 0);
    EXPECT_STR(out, "");
    /* AF_UNIX: the whole 108-byte path, and unprintable bytes shown as '?'. */
    struct sockaddr_storage su;
    memset(&su, 0, sizeof(su));
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memset(un.sun_path, 'p', sizeof(un.sun_path));
    un.sun_path[3] = '\n';
    memcpy(&su, &un, sizeof(un));
    size_t n = moat_pp_addr_format(&su, 1, out, sizeof(out));
    EXPECT_INT(n, 5 + 108);
    EXPECT(strncmp(out, "unix:ppp?pp", 11) == 0);
    un.sun_path[0] = '\0';
    memcpy(&su, &un, sizeof(un));
    n = moat_pp_addr_format(&su, 1, out, sizeof(out));
    EXPECT_INT(n, 6 + 107);
    EXPECT(strncmp(out, "unix:@pp?pp", 11) == 0);
}

int main(void)
{
    RUN(crc32c_check_value);
    RUN(v1_spec_examples);
    RUN(v1_followed_by_data);
    RUN(v1_field_forms);
    RUN(v1_invalid);
    RUN(v1_length_limit);
    RUN(v1_need_more_hints);
    RUN(not_proxy_from_first_bytes);
    RUN(v2_haproxy_tcp4_crc_unique_id);
    RUN(v2_haproxy_tcp6);
    RUN(v2_haproxy_ssl_tlvs);
    RUN(v2_crc_mismatch);
    RUN(v2_families);
    RUN(v2_local);
    RUN(v2_invalid);
    RUN(v2_invalid_tlvs);
    RUN(v2_build_byte_exact);
    RUN(v2_build_families);
    RUN(v2_build_refuses_what_does_not_fit);
    RUN(v1_build);
    RUN(addr_format);
    TEST_MAIN_END();
}
