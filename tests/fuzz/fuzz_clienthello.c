// fuzz-sources: src/tls/clienthello.c src/core/err.c
/*
 * fuzz_clienthello.c: the ClientHello peek parser (tls/clienthello.c) on what a client sends
 * before any TLS exists. Besides not crashing or reading past the bytes given (each peek below
 * runs on an exact-size heap copy, so ASan sees a one-byte overread), every answer must keep its
 * promises:
 *   - NEED_MORE: need > n; NOT_TLS and INVALID: a reason, err_off <= n; the info otherwise zero;
 *   - OK: hello_len <= n; the first hello_len bytes alone give the same answer; proper prefixes
 *     (a few of them, the last byte included) give NEED_MORE with need in (k, hello_len]; the
 *     same handshake message cut into records of another size (1..64 bytes, from the input)
 *     gives the same answer; the host name is lower case and well formed; the ALPN names add up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/clienthello.h"

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

static enum moat_ch_status peek_copy(const uint8_t *p, size_t n, struct moat_ch_info *ci)
{
    uint8_t *c = malloc(n ? n : 1);
    check(c != NULL);
    if (n > 0) {
        memcpy(c, p, n);
    }
    enum moat_ch_status st = moat_ch_peek(n ? c : NULL, n, ci);
    free(c);
    return st;
}

static int same(const struct moat_ch_info *a, const struct moat_ch_info *b)
{
    return a->has_sni == b->has_sni && a->sni_len == b->sni_len && strcmp(a->sni, b->sni) == 0 &&
           a->has_alpn == b->has_alpn && a->alpn_len == b->alpn_len &&
           memcmp(a->alpn, b->alpn, a->alpn_len) == 0 && a->alpn_count == b->alpn_count &&
           a->alpn_truncated == b->alpn_truncated && a->legacy_version == b->legacy_version &&
           a->max_version == b->max_version && a->offers_tls13 == b->offers_tls13 &&
           a->has_supported_versions == b->has_supported_versions;
}

static void check_ok_fields(const struct moat_ch_info *ci)
{
    check(ci->reason == NULL && ci->need == 0);
    check(ci->sni_len == strlen(ci->sni) && ci->sni_len <= MOAT_CH_HOST_MAX);
    check(ci->has_sni == (ci->sni_len > 0));
    for (size_t i = 0; i < ci->sni_len; i++) {
        char c = ci->sni[i];
        check((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.');
    }
    check(ci->sni_len == 0 ||
          (ci->sni[0] != '.' && ci->sni[ci->sni_len - 1] != '.' && strstr(ci->sni, "..") == NULL));
    size_t at = 0, count = 0;
    while (at < ci->alpn_len) {
        check(ci->alpn[at] > 0);
        moat_slice s = moat_ch_alpn_at(ci, count);
        check(s.p == (const char *)ci->alpn + at + 1 && s.len == ci->alpn[at]);
        check(moat_ch_alpn_offers(ci, s.p, s.len));
        at += 1 + ci->alpn[at];
        count++;
    }
    check(at == ci->alpn_len && count == ci->alpn_count && count <= MOAT_CH_ALPN_MAX);
    check(moat_ch_alpn_at(ci, count).p == NULL);
    check(ci->has_alpn || (ci->alpn_count == 0 && !ci->alpn_truncated));
    check(!ci->offers_tls13 || ci->max_version >= 0x0304);
}

/* The reference reassembly: the handshake payload of the records up to hello_len. */
static size_t reassemble(const uint8_t *p, size_t hello_len, uint8_t *msg)
{
    size_t at = 0, m = 0;
    while (at < hello_len) {
        check(p[at] == 22 && at + 5 <= hello_len);
        size_t len = (size_t)p[at + 3] << 8 | p[at + 4];
        check(len > 0 && at + 5 + len <= hello_len);
        memcpy(msg + m, p + at + 5, len);
        m += len;
        at += 5 + len;
    }
    return m;
}

static void check_ok(const uint8_t *data, size_t size, const struct moat_ch_info *ci)
{
    check_ok_fields(ci);
    size_t hl = ci->hello_len;
    check(hl >= 5 + 4 + 41 && hl <= size && hl <= MOAT_CH_MAX);
    struct moat_ch_info again;
    check(peek_copy(data, hl, &again) == MOAT_CH_OK && same(ci, &again) && again.hello_len == hl);
    size_t cuts[] = {0, 1, 5, 6, 9, hl / 3, hl / 2, hl - 6, hl - 5, hl - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        size_t k = cuts[i];
        if (k >= hl) {
            continue;
        }
        struct moat_ch_info pre;
        check(peek_copy(data, k, &pre) == MOAT_CH_NEED_MORE);
        check(pre.need > k && pre.need <= hl && pre.reason == NULL);
    }

    /* The same message in records of another size. */
    static uint8_t msg[MOAT_CH_MAX], rec[2 * MOAT_CH_MAX];
    size_t m = reassemble(data, hl, msg);
    size_t step = 1 + (size_t)data[hl - 1] % 64, f = 0;
    for (size_t at = 0; at < m; at += step) {
        size_t k = m - at < step ? m - at : step;
        if (f + 5 + k > sizeof(rec)) {
            return;
        }
        rec[f] = 22;
        rec[f + 1] = data[1];
        rec[f + 2] = data[2];
        rec[f + 3] = (uint8_t)(k >> 8);
        rec[f + 4] = (uint8_t)k;
        memcpy(rec + f + 5, msg + at, k);
        f += 5 + k;
    }
    struct moat_ch_info re;
    enum moat_ch_status st = peek_copy(rec, f, &re);
    if (f > MOAT_CH_MAX) {
        check(st == MOAT_CH_INVALID); /* the record headers went over the cap */
        return;
    }
    check(st == MOAT_CH_OK && same(ci, &re) && re.hello_len == f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct moat_ch_info ci;
    enum moat_ch_status st = peek_copy(data, size, &ci);
    switch (st) {
    case MOAT_CH_OK:
        check_ok(data, size, &ci);
        break;
    case MOAT_CH_NEED_MORE:
        check(ci.need > size && ci.reason == NULL && ci.hello_len == 0 && !ci.has_sni);
        break;
    case MOAT_CH_NOT_TLS:
    case MOAT_CH_INVALID:
        check(ci.reason != NULL && ci.err_off <= size && ci.need == 0 && ci.hello_len == 0 &&
              !ci.has_sni && ci.sni[0] == '\0' && ci.alpn_count == 0);
        /* NOT_TLS is decided from the first bytes: a record header at most. */
        check(st != MOAT_CH_NOT_TLS || ci.err_off < 5);
        break;
    default:
        check(0);
    }
    return 0;
}
