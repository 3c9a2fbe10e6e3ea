// fuzz-sources: src/core/proxyproto.c src/core/err.c
/*
 * fuzz_proxyproto.c: libFuzzer target for the PROXY protocol parser (v1 and v2) and builders.
 *
 * Every parse reads an exact-size heap copy, so ASan sees any read past the bytes given.
 * Checks:
 *   - the result is consistent with its status (why on INVALID, need_min <= need_max on
 *     NEED_MORE, consumed within the input and the spec's bounds on OK, family matching the
 *     sockaddrs, TLV region inside the header and made of whole TLVs, SSL ones of whole
 *     sub-TLVs);
 *   - the first `consumed` bytes alone parse to the same result;
 *   - every prefix (cuts for long inputs) gets NEED_MORE or the whole input's answer, NEED_MORE
 *     never turns into NOT_PROXY for a valid header, need_min/need_max bound where the header
 *     ends, and after need_max more bytes the answer is decided;
 *   - a smaller max_len only refuses, never changes an accepted header;
 *   - addresses format within MOAT_PP_ADDR_STRLEN;
 *   - an accepted TCP4/TCP6 header rebuilt as v2 (with its authority/ALPN, and CRC32c) and as
 *     v1 parses back to the same addresses and TLVs; builds fail cleanly one byte short;
 *   - the builders fed addresses and TLVs made from the input round-trip too, and so do LOCAL
 *     and address-less PROXY headers.
 */
#include "core/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static enum moat_pp_status parse(const uint8_t *p, size_t n, size_t max_len,
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

static int same(const struct moat_pp_result *a, const struct moat_pp_result *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

static void check_tlvs(const uint8_t *hdr, const struct moat_pp_result *r)
{
    struct moat_pp_tlv_iter it;
    struct moat_pp_tlv t;
    size_t covered = 0;
    int crcs = 0;
    moat_pp_tlv_iter_init(&it, hdr, r);
    while (moat_pp_tlv_next(&it, &t)) {
        CHECK(t.value >= hdr + r->tlv_off && t.value + t.len <= hdr + r->tlv_off + r->tlv_len);
        covered += 3 + t.len;
        if (t.type == MOAT_PP2_TYPE_CRC32C) {
            CHECK(t.len == 4);
            crcs++;
        }
        struct moat_pp_tlv_iter sub;
        uint8_t client;
        uint32_t verify;
        int is_ssl = moat_pp_tlv_ssl(&t, &client, &verify, &sub);
        CHECK(is_ssl == (t.type == MOAT_PP2_TYPE_SSL));
        if (is_ssl) {
            size_t sub_covered = 0;
            struct moat_pp_tlv s;
            while (moat_pp_tlv_next(&sub, &s)) {
                CHECK(s.value >= t.value + 5 && s.value + s.len <= t.value + t.len);
                sub_covered += 3 + s.len;
            }
            CHECK(sub_covered == t.len - 5);
        }
    }
    CHECK(covered == r->tlv_len);
    CHECK(crcs <= 1);
}

static void check_addr(const struct sockaddr_storage *ss, enum moat_pp_family fam)
{
    char out[MOAT_PP_ADDR_STRLEN];
    for (int with_port = 0; with_port < 2; with_port++) {
        size_t n = moat_pp_addr_format(ss, with_port, out, sizeof(out));
        CHECK(n == strlen(out));
        CHECK((n > 0) == (fam != MOAT_PP_FAM_UNSPEC));
        if (n > 0) {
            char small[MOAT_PP_ADDR_STRLEN];
            CHECK(moat_pp_addr_format(ss, with_port, small, n) == 0 && small[0] == '\0');
            CHECK(moat_pp_addr_format(ss, with_port, small, n + 1) == n);
        }
    }
}

static void check_ok(const uint8_t *p, size_t n, const struct moat_pp_result *r)
{
    CHECK(r->consumed <= n);
    CHECK(r->version == 1 || r->version == 2);
    CHECK(r->why == NULL && r->need_min == 0 && r->need_max == 0);
    if (r->version == 1) {
        CHECK(r->consumed >= 15 && r->consumed <= MOAT_PP_V1_MAX);
        CHECK(p[r->consumed - 2] == '\r' && p[r->consumed - 1] == '\n');
        CHECK(r->tlv_off == 0 && r->tlv_len == 0);
        CHECK(r->command == MOAT_PP_CMD_PROXY);
        CHECK(r->family != MOAT_PP_FAM_UNIX);
    } else {
        CHECK(r->consumed >= MOAT_PP_V2_HEAD && r->consumed <= MOAT_PP_V2_MAX);
        CHECK(r->tlv_off >= MOAT_PP_V2_HEAD && r->tlv_off + r->tlv_len == r->consumed);
        check_tlvs(p, r);
    }
    static const int af[] = {AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX};
    CHECK(r->family <= MOAT_PP_FAM_UNIX);
    CHECK(r->src.ss_family == af[r->family] && r->dst.ss_family == af[r->family]);
    CHECK((r->family == MOAT_PP_FAM_UNSPEC) == (r->transport == MOAT_PP_PROTO_UNSPEC));
    if (r->command == MOAT_PP_CMD_LOCAL) {
        CHECK(r->family == MOAT_PP_FAM_UNSPEC);
    }
    check_addr(&r->src, r->family);
    check_addr(&r->dst, r->family);
}

/* Same addresses and the same authority/ALPN TLV values. */
static void check_rebuilt(const uint8_t *hdr, const struct moat_pp_result *r,
                          const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                          moat_slice authority, moat_slice alpn)
{
    CHECK(memcmp(&r->src, src, sizeof(*src)) == 0);
    CHECK(memcmp(&r->dst, dst, sizeof(*dst)) == 0);
    struct moat_pp_tlv t;
    int has = moat_pp_tlv_find(hdr, r, MOAT_PP2_TYPE_AUTHORITY, &t);
    CHECK(has == (authority.len > 0));
    CHECK(!has || (t.len == authority.len && memcmp(t.value, authority.p, t.len) == 0));
    has = moat_pp_tlv_find(hdr, r, MOAT_PP2_TYPE_ALPN, &t);
    CHECK(has == (alpn.len > 0));
    CHECK(!has || (t.len == alpn.len && memcmp(t.value, alpn.p, t.len) == 0));
}

/* Build v2 and v1 headers for these ends and parse them back. */
static void round_trip(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                       moat_slice authority, moat_slice alpn, unsigned flags)
{
    static uint8_t out[MOAT_PP_V2_MAX];
    const struct sockaddr *s = (const struct sockaddr *)src, *d = (const struct sockaddr *)dst;
    size_t n = moat_pp_v2_build(out, sizeof(out), s, d, authority, alpn, flags);
    CHECK(n >= MOAT_PP_V2_HEAD);
    uint8_t *exact = malloc(n);
    CHECK(moat_pp_v2_build(exact, n, s, d, authority, alpn, flags) == n);
    CHECK(memcmp(exact, out, n) == 0);
    CHECK(moat_pp_v2_build(exact, n - 1, s, d, authority, alpn, flags) == 0);
    struct moat_pp_result r;
    CHECK(parse(exact, n, MOAT_PP_V2_MAX, &r) == MOAT_PP_OK);
    CHECK(r.consumed == n && r.command == MOAT_PP_CMD_PROXY);
    check_ok(exact, n, &r);
    /* Mixed families come back as IPv6; compare only when both ends had the same one. */
    if (src->ss_family == dst->ss_family) {
        check_rebuilt(exact, &r, src, dst, authority, alpn);
    }
    struct moat_pp_tlv t;
    CHECK(moat_pp_tlv_find(exact, &r, MOAT_PP2_TYPE_CRC32C, &t) == !!(flags & MOAT_PP_V2_CRC32C));
    free(exact);

    char line[MOAT_PP_V1_MAX];
    n = moat_pp_v1_build(line, sizeof(line), s, d);
    CHECK(n >= 15 && n <= MOAT_PP_V1_MAX);
    CHECK(moat_pp_v1_build(line, n - 1, s, d) == 0);
    CHECK(parse((const uint8_t *)line, n, MOAT_PP_V2_MAX, &r) == MOAT_PP_OK && r.consumed == n);
    if (src->ss_family == dst->ss_family) {
        CHECK(memcmp(&r.src, src, sizeof(*src)) == 0 && memcmp(&r.dst, dst, sizeof(*dst)) == 0);
    }
}

/* No source (LOCAL) or a family PROXY cannot carry (PROXY + UNSPEC): no addresses, same TLVs. */
static void addressless_trip(const struct sockaddr_storage *dst, moat_slice authority,
                             moat_slice alpn, unsigned flags)
{
    static uint8_t out[MOAT_PP_V2_MAX];
    struct sockaddr_storage su;
    memset(&su, 0, sizeof(su));
    su.ss_family = AF_UNIX;
    const struct sockaddr *srcs[2] = {NULL, (const struct sockaddr *)&su};
    for (int i = 0; i < 2; i++) {
        size_t n = moat_pp_v2_build(out, sizeof(out), srcs[i], (const struct sockaddr *)dst,
                                    authority, alpn, flags);
        CHECK(n >= MOAT_PP_V2_HEAD);
        struct moat_pp_result r;
        CHECK(parse(out, n, MOAT_PP_V2_MAX, &r) == MOAT_PP_OK && r.consumed == n);
        check_ok(out, n, &r);
        CHECK(r.command == (i == 0 ? MOAT_PP_CMD_LOCAL : MOAT_PP_CMD_PROXY));
        CHECK(r.family == MOAT_PP_FAM_UNSPEC);
        struct sockaddr_storage none;
        memset(&none, 0, sizeof(none));
        check_rebuilt(out, &r, &none, &none, authority, alpn);
        char line[MOAT_PP_V1_MAX];
        n = moat_pp_v1_build(line, sizeof(line), srcs[i], (const struct sockaddr *)dst);
        CHECK(n == 15 && memcmp(line, "PROXY UNKNOWN\r\n", 15) == 0);
    }
}

/* Prefix p[0..k) against the whole input's answer. */
static void check_prefix(const uint8_t *p, size_t n, size_t k, enum moat_pp_status whole_st,
                         const struct moat_pp_result *whole)
{
    struct moat_pp_result r;
    enum moat_pp_status st = parse(p, k, MOAT_PP_V2_MAX, &r);
    if (whole_st == MOAT_PP_OK && k < whole->consumed) {
        CHECK(st == MOAT_PP_NEED_MORE);
        CHECK(k + r.need_min <= whole->consumed && whole->consumed <= k + r.need_max);
        return;
    }
    if (st == MOAT_PP_NEED_MORE) {
        CHECK(r.need_min >= 1 && r.need_min <= r.need_max);
        CHECK(k < n || whole_st == MOAT_PP_NEED_MORE);
        if (k + r.need_max <= n) {
            struct moat_pp_result later;
            CHECK(parse(p, k + r.need_max, MOAT_PP_V2_MAX, &later) != MOAT_PP_NEED_MORE);
        }
        return;
    }
    /* Decided early: the same answer as the whole input. */
    CHECK(st == whole_st);
    CHECK(st != MOAT_PP_OK || same(&r, whole));
    CHECK(st != MOAT_PP_INVALID || r.why == whole->why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct moat_pp_result whole;
    enum moat_pp_status st = parse(data, size, MOAT_PP_V2_MAX, &whole);
    CHECK(st <= MOAT_PP_INVALID);
    CHECK((st == MOAT_PP_INVALID) == (whole.why != NULL));
    CHECK(whole.why == NULL || whole.why[0] != '\0');
    if (st == MOAT_PP_NEED_MORE) {
        CHECK(whole.need_min >= 1 && whole.need_min <= whole.need_max);
    }
    if (st == MOAT_PP_NOT_PROXY) {
        CHECK(size > 0 && whole.version == 0);
    }

    if (size <= 300) {
        for (size_t k = 0; k <= size; k++) {
            check_prefix(data, size, k, st, &whole);
        }
    } else {
        size_t cuts[] = {0, 1, 6, 12, 13, 14, 15, 16, 106, 107, size / 2, size - 1, size};
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
            if (cuts[i] <= size) {
                check_prefix(data, size, cuts[i], st, &whole);
            }
        }
    }

    /* A cap only refuses. */
    size_t cap = MOAT_PP_V2_HEAD + size % 128;
    struct moat_pp_result capped;
    enum moat_pp_status cst = parse(data, size, cap, &capped);
    if (cst == MOAT_PP_OK) {
        CHECK(st == MOAT_PP_OK && same(&capped, &whole));
    }
    if (st == MOAT_PP_OK && (whole.version == 1 || whole.consumed <= cap)) {
        CHECK(cst == MOAT_PP_OK);
    }

    if (st == MOAT_PP_OK) {
        check_ok(data, size, &whole);
        struct moat_pp_result again;
        CHECK(parse(data, whole.consumed, MOAT_PP_V2_MAX, &again) == MOAT_PP_OK);
        CHECK(same(&again, &whole));
        if (whole.family == MOAT_PP_FAM_INET || whole.family == MOAT_PP_FAM_INET6) {
            moat_slice authority = MOAT_SLICE_NULL, alpn = MOAT_SLICE_NULL;
            struct moat_pp_tlv t;
            if (moat_pp_tlv_find(data, &whole, MOAT_PP2_TYPE_AUTHORITY, &t)) {
                authority = moat_slice_of((const char *)t.value, t.len);
            }
            if (moat_pp_tlv_find(data, &whole, MOAT_PP2_TYPE_ALPN, &t)) {
                alpn = moat_slice_of((const char *)t.value, t.len);
            }
            round_trip(&whole.src, &whole.dst, authority, alpn, size & 1 ? MOAT_PP_V2_CRC32C : 0);
        }
    }

    /* The builders with ends and TLVs straight from the input. */
    if (size >= 37) {
        struct sockaddr_storage ends[2];
        const uint8_t *a = data + 1;
        for (int i = 0; i < 2; i++) {
            memset(&ends[i], 0, sizeof(ends[i]));
            if (data[0] & (1u << i)) {
                struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
                memcpy(&sin6.sin6_addr, a + 18 * i, 16);
                memcpy(&sin6.sin6_port, a + 18 * i + 16, 2);
                memcpy(&ends[i], &sin6, sizeof(sin6));
            } else {
                struct sockaddr_in sin = {.sin_family = AF_INET};
                memcpy(&sin.sin_addr, a + 18 * i, 4);
                memcpy(&sin.sin_port, a + 18 * i + 16, 2);
                memcpy(&ends[i], &sin, sizeof(sin));
            }
        }
        size_t rest = size - 37, split = rest / 2;
        moat_slice authority = moat_slice_of((const char *)data + 37, split);
        moat_slice alpn = moat_slice_of((const char *)data + 37 + split, rest - split);
        round_trip(&ends[0], &ends[1], authority, alpn, data[0] & 4 ? MOAT_PP_V2_CRC32C : 0);
        addressless_trip(&ends[1], authority, alpn, data[0] & 4 ? MOAT_PP_V2_CRC32C : 0);
    }
    return 0;
}
