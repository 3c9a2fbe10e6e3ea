/*
 * test_hello.c: moat check's hand-built hellos and its reader of server flights. The hellos are
 * read back by moat's own server-side ClientHello parser (tls/clienthello.c), which refuses any
 * length that does not add up; the flights are written here byte by byte, as a server would.
 */
#include "check/hello.h"
#include "check/suites.h"
#include "tls/clienthello.h"

#include "test.h"

#include <stdint.h>
#include <stdlib.h>

static const uint16_t SUITES12[] = {0xC02F, 0xC030, 0x009E, 0x002F};
static const uint16_t SUITES13[] = {0x1301, 0x1302, 0x1303};
static const uint16_t GROUPS[] = {0x001D, 0x0017};
static const uint16_t SIGALGS[] = {0x0804, 0x0403};

TEST_CASE(tls12_hello_parses_with_sni_and_alpn)
{
    struct moat_hello_spec s = {.version = MOAT_CHECK_TLS12,
                                .suites = SUITES12,
                                .nsuites = 4,
                                .groups = GROUPS,
                                .ngroups = 2,
                                .sigalgs = SIGALGS,
                                .nsigalgs = 2,
                                .sni = "example.test",
                                .alpn = "h2,http/1.1",
                                .status_request = 1,
                                .heartbeat = 1,
                                .fallback_scsv = 1,
                                .deflate = 1};
    uint8_t b[MOAT_HELLO_MAX];
    size_t n = moat_hello_build(&s, b, sizeof(b));
    EXPECT(n > 0);
    struct moat_ch_info ci;
    EXPECT_INT(moat_ch_peek(b, n, &ci), MOAT_CH_OK);
    EXPECT_INT(ci.hello_len, n);
    EXPECT_STR(ci.sni, "example.test");
    EXPECT(moat_ch_alpn_offers(&ci, "h2", 2));
    EXPECT(moat_ch_alpn_offers(&ci, "http/1.1", 8));
    EXPECT(!ci.offers_tls13);
}

TEST_CASE(tls13_hello_offers_only_tls13_and_no_sni_for_an_address)
{
    struct moat_hello_spec s = {.version = MOAT_CHECK_TLS13,
                                .suites = SUITES13,
                                .nsuites = 3,
                                .groups = GROUPS,
                                .ngroups = 2,
                                .sigalgs = SIGALGS,
                                .nsigalgs = 2,
                                .sni = "127.0.0.1",
                                .x25519_share = 1};
    uint8_t b[MOAT_HELLO_MAX];
    size_t n = moat_hello_build(&s, b, sizeof(b));
    struct moat_ch_info ci;
    EXPECT_INT(moat_ch_peek(b, n, &ci), MOAT_CH_OK);
    EXPECT(ci.offers_tls13);
    EXPECT(!ci.has_sni);
}

TEST_CASE(sslv3_hello_is_bare_and_too_big_a_spec_builds_nothing)
{
    struct moat_hello_spec s = {
        .version = MOAT_CHECK_SSL3, .suites = SUITES12, .nsuites = 4, .no_extensions = 1};
    uint8_t b[MOAT_HELLO_MAX];
    size_t n = moat_hello_build(&s, b, sizeof(b));
    EXPECT(n > 0);
    EXPECT_INT(b[1], 3);
    EXPECT_INT(b[2], 0); /* SSLv3's record version */
    struct moat_ch_info ci;
    EXPECT_INT(moat_ch_peek(b, n, &ci), MOAT_CH_OK);
    uint16_t many[3000];
    for (size_t i = 0; i < 3000; i++) {
        many[i] = (uint16_t)i;
    }
    s.suites = many;
    s.nsuites = 3000;
    EXPECT_INT(moat_hello_build(&s, b, sizeof(b)), 0);
    s.nsuites = 0;
    EXPECT_INT(moat_hello_build(&s, b, sizeof(b)), 0);
}

/* A flight written as a server writes it. */
struct fl {
    uint8_t p[4096];
    size_t n;
};

static void u8(struct fl *f, unsigned v)
{
    f->p[f->n++] = (uint8_t)v;
}
static void u16(struct fl *f, unsigned v)
{
    u8(f, v >> 8);
    u8(f, v);
}
static void u24(struct fl *f, size_t v)
{
    u8(f, (unsigned)(v >> 16));
    u16(f, (unsigned)v & 0xffff);
}
static void bytes(struct fl *f, const void *p, size_t n)
{
    memcpy(f->p + f->n, p, n);
    f->n += n;
}

/* Handshake messages of `hs` cut into records of at most `cut` bytes. */
static void records(struct fl *out, const struct fl *hs, size_t cut)
{
    for (size_t at = 0; at < hs->n; at += cut) {
        size_t l = hs->n - at < cut ? hs->n - at : cut;
        u8(out, 22);
        u16(out, 0x0303);
        u16(out, (unsigned)l);
        bytes(out, hs->p + at, l);
    }
}

static void server_hello(struct fl *hs, unsigned version, const uint8_t *random, unsigned suite,
                         const struct fl *exts)
{
    u8(hs, 2);
    u24(hs, 2 + 32 + 1 + 2 + 1 + (exts ? 2 + exts->n : 0));
    u16(hs, version);
    bytes(hs, random, 32);
    u8(hs, 0);
    u16(hs, suite);
    u8(hs, 0);
    if (exts != NULL) {
        u16(hs, (unsigned)exts->n);
        bytes(hs, exts->p, exts->n);
    }
}

static void tls12_flight(struct fl *hs)
{
    static const uint8_t rnd[32] = {1, 2, 3};
    struct fl e = {{0}, 0};
    u16(&e, 0xff01); /* renegotiation_info */
    u16(&e, 1);
    u8(&e, 0);
    u16(&e, 23); /* extended_master_secret */
    u16(&e, 0);
    u16(&e, 16); /* ALPN h2 */
    u16(&e, 5);
    u16(&e, 3);
    u8(&e, 2);
    bytes(&e, "h2", 2);
    server_hello(hs, 0x0303, rnd, 0xC02F, &e);
    u8(hs, 11); /* Certificate: one 3-byte "certificate" */
    u24(hs, 3 + 3 + 3);
    u24(hs, 3 + 3);
    u24(hs, 3);
    bytes(hs, "abc", 3);
    u8(hs, 12); /* ServerKeyExchange: named curve x25519, 32-byte key, rsa_pss_rsae_sha256 */
    u24(hs, 1 + 2 + 1 + 32 + 2 + 2 + 4);
    u8(hs, 3);
    u16(hs, 0x001D);
    u8(hs, 32);
    for (int i = 0; i < 32; i++) {
        u8(hs, 9);
    }
    u16(hs, 0x0804);
    u16(hs, 4);
    bytes(hs, "sign", 4);
    u8(hs, 14); /* ServerHelloDone */
    u24(hs, 0);
}

TEST_CASE(tls12_flight_in_any_record_size)
{
    struct fl hs = {{0}, 0};
    tls12_flight(&hs);
    static const size_t cuts[] = {16384, 7, 1};
    for (size_t c = 0; c < 3; c++) {
        struct fl w = {{0}, 0};
        records(&w, &hs, cuts[c]);
        struct moat_hello_reply r;
        EXPECT_INT(moat_hello_read(w.p, w.n, MOAT_CHECK_TLS12, SUITES12, 4, &r), MOAT_HELLO_SERVER);
        EXPECT_INT(r.version, 0x0303);
        EXPECT_INT(r.suite, 0xC02F);
        EXPECT_INT(r.group, 0x001D);
        EXPECT_INT(r.ske_sigalg, 0x0804);
        EXPECT_INT(r.certs, 1);
        EXPECT(r.ext_reneg && r.ext_ems && !r.ext_heartbeat);
        EXPECT_STR(r.alpn, "h2");
        EXPECT_INT(r.used, w.n);
        /* Every proper prefix asks for more. */
        for (size_t k = 0; k < w.n; k += 1 + w.n / 50) {
            EXPECT_INT(moat_hello_read(w.p, k, MOAT_CHECK_TLS12, SUITES12, 4, &r), MOAT_HELLO_MORE);
        }
    }
}

TEST_CASE(hello_retry_request_names_the_group)
{
    static const uint8_t hrr[32] = {0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11,
                                    0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
                                    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E,
                                    0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C};
    struct fl e = {{0}, 0};
    u16(&e, 43);
    u16(&e, 2);
    u16(&e, 0x0304);
    u16(&e, 51);
    u16(&e, 2);
    u16(&e, 0x0017);
    struct fl hs = {{0}, 0}, w = {{0}, 0};
    server_hello(&hs, 0x0303, hrr, 0x1302, &e);
    records(&w, &hs, 16384);
    struct moat_hello_reply r;
    EXPECT_INT(moat_hello_read(w.p, w.n, MOAT_CHECK_TLS13, SUITES13, 3, &r), MOAT_HELLO_HRR);
    EXPECT_INT(r.version, 0x0304);
    EXPECT_INT(r.group, 0x0017);
    EXPECT_INT(r.suite, 0x1302);
    /* The same for a hello that did not offer 1.3: refused, the server broke the rules. */
    EXPECT_INT(moat_hello_read(w.p, w.n, MOAT_CHECK_TLS12, SUITES13, 3, &r), MOAT_HELLO_BAD);
}

TEST_CASE(refusals_and_broken_answers)
{
    static const uint8_t alert[] = {21, 3, 3, 0, 2, 2, 40};
    struct moat_hello_reply r;
    EXPECT_INT(moat_hello_read(alert, sizeof(alert), MOAT_CHECK_TLS12, SUITES12, 4, &r),
               MOAT_HELLO_ALERT);
    EXPECT_INT(r.alert_desc, 40);
    static const char http[] = "HTTP/1.1 400 Bad Request\r\n";
    EXPECT_INT(
        moat_hello_read((const uint8_t *)http, sizeof(http) - 1, MOAT_CHECK_TLS12, SUITES12, 4, &r),
        MOAT_HELLO_NOT_TLS);
    /* A suite that was not offered. */
    static const uint8_t rnd[32] = {7};
    struct fl hs = {{0}, 0}, w = {{0}, 0};
    server_hello(&hs, 0x0303, rnd, 0x0005, NULL);
    records(&w, &hs, 16384);
    EXPECT_INT(moat_hello_read(w.p, w.n, MOAT_CHECK_TLS12, SUITES12, 4, &r), MOAT_HELLO_BAD);
    EXPECT(strstr(r.why, "not offered") != NULL);
    /* A version above the one offered. */
    struct fl hs2 = {{0}, 0}, w2 = {{0}, 0};
    server_hello(&hs2, 0x0303, rnd, 0x002F, NULL);
    records(&w2, &hs2, 16384);
    EXPECT_INT(moat_hello_read(w2.p, w2.n, MOAT_CHECK_TLS11, SUITES12, 4, &r), MOAT_HELLO_BAD);
    /* An extension longer than what holds it. */
    struct fl e = {{0}, 0};
    u16(&e, 0xff01);
    u16(&e, 200);
    u8(&e, 0);
    struct fl hs3 = {{0}, 0}, w3 = {{0}, 0};
    server_hello(&hs3, 0x0303, rnd, 0x002F, &e);
    records(&w3, &hs3, 16384);
    EXPECT_INT(moat_hello_read(w3.p, w3.n, MOAT_CHECK_TLS12, SUITES12, 4, &r), MOAT_HELLO_BAD);
    /* A record longer than TLS allows. */
    static const uint8_t big[] = {22, 3, 3, 0xff, 0xff};
    EXPECT_INT(moat_hello_read(big, sizeof(big), MOAT_CHECK_TLS12, SUITES12, 4, &r),
               MOAT_HELLO_BAD);
}

TEST_CASE(dhe_prime_size)
{
    static const uint8_t rnd[32] = {5};
    static const uint16_t dhe[] = {0x009E};
    struct fl hs = {{0}, 0}, w = {{0}, 0};
    server_hello(&hs, 0x0303, rnd, 0x009E, NULL);
    u8(&hs, 12);
    /* p: a leading zero byte, then 0x01 and 127 more bytes: 1 + 127 * 8 = 1017 bits. */
    u24(&hs, 2 + 129 + 2 + 1 + 2 + 1 + 2 + 2 + 1);
    u16(&hs, 129);
    u8(&hs, 0);
    u8(&hs, 1);
    for (int i = 0; i < 127; i++) {
        u8(&hs, 0xff);
    }
    u16(&hs, 1);
    u8(&hs, 2);
    u16(&hs, 1);
    u8(&hs, 3);
    u16(&hs, 0x0401);
    u16(&hs, 1);
    u8(&hs, 0);
    u8(&hs, 14);
    u24(&hs, 0);
    records(&w, &hs, 100);
    struct moat_hello_reply r;
    EXPECT_INT(moat_hello_read(w.p, w.n, MOAT_CHECK_TLS12, dhe, 1, &r), MOAT_HELLO_SERVER);
    EXPECT_INT(r.dh_bits, 1017);
    EXPECT_INT(r.ske_sigalg, 0x0401);
}

TEST_CASE(sslv2_and_heartbeat_answers)
{
    static const uint8_t v2[] = {0x80, 0x20, 0x04, 0x00, 0x01, 0x00, 0x02};
    struct moat_hello_reply r;
    EXPECT_INT(moat_hello_read(v2, sizeof(v2), 0x0002, NULL, 0, &r), MOAT_HELLO_SSLV2);
    uint8_t b[64];
    size_t n = moat_hello_build_sslv2(b, sizeof(b));
    EXPECT(n > 0 && (b[0] & 0x80) && b[2] == 1);
    EXPECT_INT(((b[0] & 0x7f) << 8 | b[1]) + 2, n);
    n = moat_hello_build_heartbleed(0x0303, b, sizeof(b));
    EXPECT_INT(n, 8);
    EXPECT_INT(b[0], 24);
    static const uint8_t answer[] = {22, 3, 3, 0, 1, 0, 24, 3, 3, 0, 3, 2, 0, 0};
    EXPECT_INT(moat_hello_heartbeat_answer(answer, sizeof(answer)), 3);
    EXPECT_INT(moat_hello_heartbeat_answer(answer, 6), 0);
}

TEST_CASE(names)
{
    char b[8];
    EXPECT_STR(moat_check_suite_name(0xC02F, b, sizeof(b)),
               "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    EXPECT_STR(moat_check_suite_name(0xFAFA, b, sizeof(b)), "0xFAFA");
    EXPECT_STR(moat_check_group_name(0x001D, b, sizeof(b)), "x25519");
    EXPECT_STR(moat_check_version_name(0x0301, b, sizeof(b)), "TLS 1.0");
    size_t n;
    const struct moat_check_suite *t = moat_check_suites(&n);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = i + 1; k < n; k++) {
            EXPECT(t[i].code != t[k].code); /* each suite once */
        }
    }
}

int main(void)
{
    RUN(tls12_hello_parses_with_sni_and_alpn);
    RUN(tls13_hello_offers_only_tls13_and_no_sni_for_an_address);
    RUN(sslv3_hello_is_bare_and_too_big_a_spec_builds_nothing);
    RUN(tls12_flight_in_any_record_size);
    RUN(hello_retry_request_names_the_group);
    RUN(refusals_and_broken_answers);
    RUN(dhe_prime_size);
    RUN(sslv2_and_heartbeat_answers);
    RUN(names);
    TEST_MAIN_END();
}
