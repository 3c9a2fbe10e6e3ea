/*
 * test_clienthello.c: the ClientHello peek parser (tls/clienthello.c) on real ClientHellos that
 * OpenSSL writes into a memory BIO (no network): with and without SNI and ALPN, TLS 1.0, 1.2 and
 * 1.3 clients, a large TLS 1.3 hello, every prefix, the same hello cut by hand into records of
 * every size, and one OpenSSL splits itself. Then each refusal, on hellos edited from real ones
 * (extensions re-encoded with one thing broken) or built by hand.
 *
 * Every peek runs on a heap copy of exactly the bytes given, so ASan sees any read past them.
 */
#include "tls/clienthello.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>

#include "test.h"

/* --- helpers: peeking --- */

static enum moat_ch_status peek(const uint8_t *p, size_t n, struct moat_ch_info *ci)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (n > 0) {
        memcpy(copy, p, n);
    }
    enum moat_ch_status st = moat_ch_peek(n ? copy : NULL, n, ci);
    free(copy);
    return st;
}

/* Every proper prefix is NEED_MORE with a need above the prefix and not above the whole. */
static void expect_prefixes(const uint8_t *p, size_t n, size_t whole)
{
    struct moat_ch_info ci;
    for (size_t k = 0; k < n; k++) {
        enum moat_ch_status st = peek(p, k, &ci);
        if (st != MOAT_CH_NEED_MORE || ci.need <= k || ci.need > whole) {
            EXPECT_INT(k, -1); /* prints the prefix length that failed */
            EXPECT_STR(moat_ch_status_name(st), "need_more");
            EXPECT_INT(ci.need, whole);
            return;
        }
    }
}

/* OK for all n bytes (hello_len == n unless trailing bytes follow), with this SNI ("" none). */
static struct moat_ch_info expect_ok(const uint8_t *p, size_t n, size_t hello_len, const char *sni)
{
    struct moat_ch_info ci;
    enum moat_ch_status st = peek(p, n, &ci);
    EXPECT_STR(moat_ch_status_name(st), "ok");
    if (st != MOAT_CH_OK) {
        fprintf(stderr, "  reason: %s at %zu\n", ci.reason ? ci.reason : "-", ci.err_off);
    }
    EXPECT_INT(ci.hello_len, hello_len);
    EXPECT_STR(ci.sni, sni);
    EXPECT_INT(ci.sni_len, strlen(sni));
    EXPECT_INT(ci.has_sni, sni[0] != '\0');
    EXPECT(ci.reason == NULL);
    return ci;
}

/* INVALID with a reason containing `why`; no prefix is OK or NOT_TLS. */
static void expect_invalid(const uint8_t *p, size_t n, const char *why)
{
    struct moat_ch_info ci;
    enum moat_ch_status st = peek(p, n, &ci);
    EXPECT_STR(moat_ch_status_name(st), "invalid");
    EXPECT(ci.reason != NULL && strstr(ci.reason, why) != NULL);
    if (ci.reason == NULL || strstr(ci.reason, why) == NULL) {
        fprintf(stderr, "  reason: \"%s\", expected \"%s\"\n", ci.reason ? ci.reason : "-", why);
    }
    EXPECT(ci.err_off <= n);
    EXPECT_INT(ci.has_sni, 0);
    EXPECT_INT(ci.hello_len, 0);
    for (size_t k = 0; k < n; k++) {
        st = peek(p, k, &ci);
        if (st != MOAT_CH_NEED_MORE && st != MOAT_CH_INVALID) {
            EXPECT_INT(k, -1);
            return;
        }
    }
}

static void expect_not_tls(const uint8_t *p, size_t n, size_t err_off)
{
    struct moat_ch_info ci;
    EXPECT_STR(moat_ch_status_name(peek(p, n, &ci)), "not_tls");
    EXPECT(ci.reason != NULL);
    EXPECT_INT(ci.err_off, err_off);
}

/* --- helpers: real ClientHellos from OpenSSL --- */

struct hopts {
    const char *sni;
    const char *alpn; /* wire format, NUL-terminated */
    int min_version, max_version;
    const char *groups;  /* TLS 1.3 groups, the first gets the key share */
    const char *ciphers; /* TLS 1.2 cipher string */
    int extras;          /* OCSP status request, post-handshake auth, custom extensions */
    size_t custom_len;   /* one custom extension of this many bytes (0: none) */
};

static uint8_t custom_data[65536];

static int custom_add(SSL *s, unsigned int type, unsigned int context, const unsigned char **out,
                      size_t *outlen, X509 *x, size_t chainidx, int *al, void *arg)
{
    *out = custom_data;
    *outlen = *(const size_t *)arg;
    return 1;
}

/* The bytes a fresh client writes before it waits for the server: the ClientHello records. */
static size_t make_hello(const struct hopts *o, uint8_t *buf, size_t cap)
{
    static size_t custom_len, small = 7;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (o->min_version) {
        SSL_CTX_set_min_proto_version(ctx, o->min_version);
    }
    if (o->max_version) {
        SSL_CTX_set_max_proto_version(ctx, o->max_version);
    }
    if (o->ciphers) {
        EXPECT_INT(SSL_CTX_set_cipher_list(ctx, o->ciphers), 1);
    }
    if (o->custom_len) {
        custom_len = o->custom_len;
        EXPECT_INT(SSL_CTX_add_custom_ext(ctx, 0x1234, SSL_EXT_CLIENT_HELLO, custom_add, NULL,
                                          &custom_len, NULL, NULL),
                   1);
    }
    if (o->extras) {
        for (unsigned t = 0x2000; t < 0x2006; t++) {
            EXPECT_INT(SSL_CTX_add_custom_ext(ctx, t, SSL_EXT_CLIENT_HELLO, custom_add, NULL,
                                              &small, NULL, NULL),
                       1);
        }
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    if (o->sni) {
        EXPECT_INT(SSL_set_tlsext_host_name(ssl, o->sni), 1);
    }
    if (o->alpn) {
        EXPECT_INT(
            SSL_set_alpn_protos(ssl, (const unsigned char *)o->alpn, (unsigned)strlen(o->alpn)), 0);
    }
    if (o->groups) {
        EXPECT_INT(SSL_set1_groups_list(ssl, o->groups), 1);
    }
    if (o->extras) {
        SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
        SSL_set_post_handshake_auth(ssl, 1);
    }
    SSL_set_connect_state(ssl);
    int r = SSL_connect(ssl);
    EXPECT_INT(r, -1);
    EXPECT_INT(SSL_get_error(ssl, r), SSL_ERROR_WANT_READ);
    BIO *wb = SSL_get_wbio(ssl);
    size_t len = (size_t)BIO_pending(wb);
    EXPECT(len > 0 && len <= cap);
    if (len > cap) {
        len = 0;
    }
    EXPECT_INT(BIO_read(wb, buf, (int)len), (int)len);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return len;
}

static const struct hopts basic = {.sni = "example.test", .alpn = "\x02h2\x08http/1.1"};

/* --- helpers: records --- */

/* The reference reassembly: the handshake bytes of the records at p (all of them). */
static size_t msg_of(const uint8_t *p, size_t n, uint8_t *msg)
{
    size_t at = 0, m = 0;
    while (at + 5 <= n && p[at] == 22) {
        size_t len = (size_t)p[at + 3] << 8 | p[at + 4];
        memcpy(msg + m, p + at + 5, len);
        m += len;
        at += 5 + len;
    }
    return m;
}

static uint8_t *put_record(uint8_t *o, uint8_t type, const uint8_t *payload, size_t len)
{
    o[0] = type;
    o[1] = 3;
    o[2] = 1;
    o[3] = (uint8_t)(len >> 8);
    o[4] = (uint8_t)len;
    memcpy(o + 5, payload, len);
    return o + 5 + len;
}

/* The message cut into handshake records of sizes[0], sizes[1], ... (cycled); the length. */
static size_t frag(const uint8_t *msg, size_t mlen, const size_t *sizes, size_t nsizes,
                   uint8_t *out)
{
    uint8_t *o = out;
    for (size_t at = 0, i = 0; at < mlen; i++) {
        size_t k = sizes[i % nsizes];
        if (k > mlen - at) {
            k = mlen - at;
        }
        o = put_record(o, 22, msg + at, k);
        at += k;
    }
    return (size_t)(o - out);
}

static void set16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void set24(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 16);
    set16(p + 1, v);
}

/* --- helpers: editing a ClientHello's extensions --- */

#define ED_EXTS 48
struct edit {
    uint8_t fixed[1024]; /* the body from legacy_version through the compression methods */
    size_t fixed_len;
    int no_block; /* no extensions length at all */
    size_t n;
    struct {
        unsigned type;
        uint8_t data[4096];
        size_t len;
        long len_delta; /* added to the declared length */
    } e[ED_EXTS];
};

static struct edit ed;

/* Split the (one-message) hello at p into ed. */
static void ed_split(const uint8_t *p, size_t n)
{
    static uint8_t msg[70000];
    size_t m = msg_of(p, n, msg);
    memset(&ed, 0, sizeof(ed));
    size_t at = 4 + 2 + 32;
    at += 1 + msg[at];
    at += 2 + ((size_t)msg[at] << 8 | msg[at + 1]);
    at += 1 + msg[at];
    ed.fixed_len = at - 4;
    memcpy(ed.fixed, msg + 4, ed.fixed_len);
    at += 2;
    while (at < m && ed.n < ED_EXTS) {
        ed.e[ed.n].type = (unsigned)msg[at] << 8 | msg[at + 1];
        size_t len = (size_t)msg[at + 2] << 8 | msg[at + 3];
        EXPECT(len <= sizeof(ed.e[0].data));
        memcpy(ed.e[ed.n].data, msg + at + 4, len);
        ed.e[ed.n].len = len;
        ed.n++;
        at += 4 + len;
    }
    EXPECT_INT(at, m);
}

static int ed_find(unsigned type)
{
    for (size_t i = 0; i < ed.n; i++) {
        if (ed.e[i].type == type) {
            return (int)i;
        }
    }
    return -1;
}

/* Set (replace or append) the extension `type`. */
static void ed_set(unsigned type, const void *data, size_t len)
{
    int i = ed_find(type);
    if (i < 0) {
        i = (int)ed.n++;
    }
    ed.e[i].type = type;
    memcpy(ed.e[i].data, data, len);
    ed.e[i].len = len;
    ed.e[i].len_delta = 0;
}

static void ed_append_copy(int i)
{
    ed.e[ed.n++] = ed.e[i];
}

static void ed_del(unsigned type)
{
    int i = ed_find(type);
    if (i >= 0) {
        memmove(&ed.e[i], &ed.e[i + 1], (ed.n - (size_t)i - 1) * sizeof(ed.e[0]));
        ed.n--;
    }
}

/* The hello in one record; `block_delta` is added to the declared extensions length and
 * `msg_delta` to the handshake length (the record length is the true one). */
static size_t ed_build_ex(uint8_t *out, long block_delta, long msg_delta)
{
    static uint8_t msg[70000];
    size_t block = 0;
    for (size_t i = 0; i < ed.n; i++) {
        block += 4 + ed.e[i].len;
    }
    size_t body = ed.fixed_len + (ed.no_block ? 0 : 2 + block);
    size_t hl = body + (size_t)msg_delta;
    uint8_t *m = msg;
    *m++ = 1;
    *m++ = (uint8_t)(hl >> 16);
    *m++ = (uint8_t)(hl >> 8);
    *m++ = (uint8_t)hl;
    memcpy(m, ed.fixed, ed.fixed_len);
    m += ed.fixed_len;
    if (!ed.no_block) {
        size_t bl = block + (size_t)block_delta;
        *m++ = (uint8_t)(bl >> 8);
        *m++ = (uint8_t)bl;
        for (size_t i = 0; i < ed.n; i++) {
            size_t dl = ed.e[i].len + (size_t)ed.e[i].len_delta;
            *m++ = (uint8_t)(ed.e[i].type >> 8);
            *m++ = (uint8_t)ed.e[i].type;
            *m++ = (uint8_t)(dl >> 8);
            *m++ = (uint8_t)dl;
            memcpy(m, ed.e[i].data, ed.e[i].len);
            m += ed.e[i].len;
        }
    }
    size_t mlen = (size_t)(m - msg);
    size_t sizes[] = {16384};
    return frag(msg, mlen, sizes, 1, out);
}

static size_t ed_build(uint8_t *out)
{
    return ed_build_ex(out, 0, 0);
}

/* A server_name body with one entry of `type` and `name` (`len` bytes). */
static size_t sni_body(uint8_t *d, uint8_t type, const char *name, size_t len)
{
    d[0] = (uint8_t)((len + 3) >> 8);
    d[1] = (uint8_t)(len + 3);
    d[2] = type;
    d[3] = (uint8_t)(len >> 8);
    d[4] = (uint8_t)len;
    memcpy(d + 5, name, len);
    return len + 5;
}

/* The fixed fields by hand: version, a session ID of sid bytes, ncs suites, ncomp methods. */
static void ed_fixed(unsigned version, size_t sid, size_t ncs_bytes, size_t ncomp)
{
    uint8_t *f = ed.fixed;
    *f++ = (uint8_t)(version >> 8);
    *f++ = (uint8_t)version;
    memset(f, 0xab, 32);
    f += 32;
    *f++ = (uint8_t)sid;
    memset(f, 0x11, sid);
    f += sid;
    *f++ = (uint8_t)(ncs_bytes >> 8);
    *f++ = (uint8_t)ncs_bytes;
    memset(f, 0x13, ncs_bytes);
    f += ncs_bytes;
    *f++ = (uint8_t)ncomp;
    memset(f, 0, ncomp);
    f += ncomp;
    ed.fixed_len = (size_t)(f - ed.fixed);
}

static uint8_t h[70000], h2[140000];

/* --- real hellos --- */

TEST_CASE(tls13_sni_alpn)
{
    size_t n = make_hello(&basic, h, sizeof(h));
    struct moat_ch_info ci = expect_ok(h, n, n, "example.test");
    EXPECT_INT(ci.record_version, 0x0301);
    EXPECT_INT(ci.legacy_version, 0x0303);
    EXPECT_INT(ci.has_supported_versions, 1);
    EXPECT_INT(ci.offers_tls13, 1);
    EXPECT_INT(ci.max_version, 0x0304);
    EXPECT_INT(ci.has_alpn, 1);
    EXPECT_INT(ci.alpn_count, 2);
    EXPECT_INT(ci.alpn_truncated, 0);
    EXPECT_INT(ci.alpn_len, 12);
    EXPECT(memcmp(ci.alpn, "\x02h2\x08http/1.1", 12) == 0);
    EXPECT_SLICE(moat_ch_alpn_at(&ci, 0), "h2");
    EXPECT_SLICE(moat_ch_alpn_at(&ci, 1), "http/1.1");
    EXPECT(moat_ch_alpn_at(&ci, 2).p == NULL);
    EXPECT_INT(moat_ch_alpn_offers(&ci, "h2", 2), 1);
    EXPECT_INT(moat_ch_alpn_offers(&ci, "http/1.1", 8), 1);
    EXPECT_INT(moat_ch_alpn_offers(&ci, "h3", 2), 0);
    EXPECT_INT(moat_ch_alpn_offers(&ci, "http/1.", 7), 0);
    EXPECT_INT(ci.need, 0);
    expect_prefixes(h, n, n);
}

TEST_CASE(no_sni_no_alpn)
{
    struct hopts o = {0};
    size_t n = make_hello(&o, h, sizeof(h));
    struct moat_ch_info ci = expect_ok(h, n, n, "");
    EXPECT_INT(ci.has_alpn, 0);
    EXPECT_INT(ci.alpn_count, 0);
    EXPECT(moat_ch_alpn_at(&ci, 0).p == NULL);
    EXPECT_INT(ci.offers_tls13, 1);
    expect_prefixes(h, n, n);
}

TEST_CASE(sni_case_and_trailing_dot_folded)
{
    struct hopts o = {.sni = "WWW.Example.TEST."};
    size_t n = make_hello(&o, h, sizeof(h));
    expect_ok(h, n, n, "www.example.test");
    o.sni = "under_score.example";
    n = make_hello(&o, h, sizeof(h));
    expect_ok(h, n, n, "under_score.example");
}

TEST_CASE(tls12_max_client)
{
    struct hopts o = basic;
    o.max_version = TLS1_2_VERSION;
    size_t n = make_hello(&o, h, sizeof(h));
    struct moat_ch_info ci = expect_ok(h, n, n, "example.test");
    EXPECT_INT(ci.legacy_version, 0x0303);
    EXPECT_INT(ci.has_supported_versions, 0);
    EXPECT_INT(ci.offers_tls13, 0);
    EXPECT_INT(ci.max_version, 0x0303);
    EXPECT_INT(ci.alpn_count, 2);
    expect_prefixes(h, n, n);
}

TEST_CASE(tls10_client)
{
    struct hopts o = {.sni = "old.example",
                      .min_version = TLS1_VERSION,
                      .max_version = TLS1_VERSION,
                      .ciphers = "DEFAULT@SECLEVEL=0"};
    size_t n = make_hello(&o, h, sizeof(h));
    struct moat_ch_info ci = expect_ok(h, n, n, "old.example");
    EXPECT_INT(ci.record_version, 0x0301);
    EXPECT_INT(ci.legacy_version, 0x0301);
    EXPECT_INT(ci.max_version, 0x0301);
    EXPECT_INT(ci.offers_tls13, 0);
}

TEST_CASE(tls13_large_hello_many_extensions)
{
    struct hopts o = basic;
    o.groups = "ffdhe4096:X25519:P-256:P-384:P-521:ffdhe2048:ffdhe3072";
    o.extras = 1;
    size_t n = make_hello(&o, h, sizeof(h));
    EXPECT(n > 700);
    ed_split(h, n);
    EXPECT(ed.n >= 16);
    int ks = ed_find(51); /* key_share: one 512-byte ffdhe4096 share */
    EXPECT(ks >= 0 && ed.e[ks].len > 512);
    struct moat_ch_info ci = expect_ok(h, n, n, "example.test");
    EXPECT_INT(ci.offers_tls13, 1);
    EXPECT_INT(ci.alpn_count, 2);
    expect_prefixes(h, n, n);
    /* The editor round-trips a real hello byte for byte (the other tests rely on it). */
    EXPECT_INT(ed_build(h2), n);
    EXPECT(memcmp(h2, h, n) == 0);
}

TEST_CASE(need_is_exact_once_lengths_known)
{
    size_t n = make_hello(&basic, h, sizeof(h));
    struct moat_ch_info ci;
    EXPECT_INT(peek(h, 0, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(ci.need, 50); /* record header, handshake header, the smallest fixed fields */
    EXPECT_INT(peek(h, 4, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(ci.need, 50);
    for (size_t k = 9; k < n; k++) {
        EXPECT_INT(peek(h, k, &ci), MOAT_CH_NEED_MORE);
        if (ci.need != n) {
            EXPECT_INT(ci.need, n);
            break;
        }
    }
    /* Split in two records: before the second header arrives, at least its 5 bytes more. */
    static uint8_t msg[70000];
    size_t m = msg_of(h, n, msg);
    size_t sizes[] = {100, 16384};
    size_t f = frag(msg, m, sizes, 2, h2);
    EXPECT_INT(f, n + 5);
    EXPECT_INT(peek(h2, 105, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(ci.need, f);
    EXPECT_INT(peek(h2, 50, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(ci.need, f);
    EXPECT_INT(peek(h2, 107, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(ci.need, f);
}

TEST_CASE(refragmented_by_hand)
{
    size_t n = make_hello(&basic, h, sizeof(h));
    static uint8_t msg[70000];
    size_t m = msg_of(h, n, msg);
    EXPECT_INT(m, n - 5);
    /* Every record size from 1 byte to the whole message. */
    for (size_t s = 1; s <= m; s++) {
        size_t f = frag(msg, m, &s, 1, h2);
        struct moat_ch_info ci;
        if (peek(h2, f, &ci) != MOAT_CH_OK || strcmp(ci.sni, "example.test") != 0 ||
            ci.hello_len != f || ci.alpn_count != 2 || ci.offers_tls13 != 1) {
            EXPECT_INT(s, -1);
            break;
        }
    }
    /* Uneven sizes, the SNI cut inside its name; every prefix of the 1-byte split. */
    size_t uneven[] = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89};
    size_t f = frag(msg, m, uneven, 10, h2);
    expect_ok(h2, f, f, "example.test");
    expect_prefixes(h2, f, f);
    size_t one = 1;
    f = frag(msg, m, &one, 1, h2);
    EXPECT_INT(f, m * 6);
    expect_ok(h2, f, f, "example.test");
    expect_prefixes(h2, f, f);
}

TEST_CASE(split_by_openssl_itself)
{
    /* A ClientHello over 16 KiB: OpenSSL writes it as two records. */
    struct hopts o = basic;
    o.custom_len = 16500;
    size_t n = make_hello(&o, h, sizeof(h));
    EXPECT(n > 16384 + 10 && n <= MOAT_CH_MAX);
    EXPECT_INT((size_t)h[3] << 8 | h[4], 16384);
    EXPECT_INT(h[16384 + 5], 22);
    struct moat_ch_info ci = expect_ok(h, n, n, "example.test");
    EXPECT_INT(ci.alpn_count, 2);
    for (size_t k = 0; k < n; k += 97) {
        EXPECT_INT(peek(h, k, &ci), MOAT_CH_NEED_MORE);
    }
    expect_prefixes(h + 0, 16384 + 5 + 6, n);
}

TEST_CASE(larger_than_the_cap)
{
    struct hopts o = basic;
    o.custom_len = 20000;
    size_t n = make_hello(&o, h, sizeof(h));
    EXPECT(n > MOAT_CH_MAX);
    struct moat_ch_info ci;
    EXPECT_INT(peek(h, n, &ci), MOAT_CH_INVALID);
    EXPECT_STR(ci.reason, "ClientHello larger than 17408 bytes");
    /* Decided from the handshake header: the first 9 bytes. */
    EXPECT_INT(peek(h, 9, &ci), MOAT_CH_INVALID);
    EXPECT_INT(peek(h, 8, &ci), MOAT_CH_NEED_MORE);

    /* Record headers count: a 3 KiB hello in 1-byte records takes 18 KiB. */
    o.custom_len = 3000;
    n = make_hello(&o, h, sizeof(h));
    static uint8_t msg[70000];
    size_t m = msg_of(h, n, msg);
    size_t one = 1, two = 2;
    size_t f = frag(msg, m, &one, 1, h2);
    EXPECT(f > MOAT_CH_MAX);
    expect_invalid(h2, f, "ClientHello larger than");
    /* Refused when the records reach the cap: a lower bound of the rest can only assume one
     * more record for it. */
    EXPECT_INT(peek(h2, f, &ci), MOAT_CH_INVALID);
    EXPECT(ci.err_off > MOAT_CH_MAX - 6 && ci.err_off <= MOAT_CH_MAX);
    f = frag(msg, m, &two, 1, h2);
    EXPECT(f < MOAT_CH_MAX);
    expect_ok(h2, f, f, "example.test");
}

TEST_CASE(followed_by_more_bytes)
{
    size_t n = make_hello(&basic, h, sizeof(h));
    memcpy(h2, h, n);
    uint8_t *o = put_record(h2 + n, 20, (const uint8_t *)"\x01", 1); /* ChangeCipherSpec */
    o = put_record(o, 23, (const uint8_t *)"early data", 10);
    memcpy(o, "GET / HTTP/1.1\r\n", 16);
    size_t total = (size_t)(o + 16 - h2);
    expect_ok(h2, total, n, "example.test");
    for (size_t k = n; k <= total; k++) {
        struct moat_ch_info ci;
        EXPECT_INT(peek(h2, k, &ci), MOAT_CH_OK);
        EXPECT_INT(ci.hello_len, n);
    }
    /* Another hello right behind: only the first counts. */
    memcpy(h2 + n, h, n);
    expect_ok(h2, 2 * n, n, "example.test");
}

/* --- not TLS --- */

TEST_CASE(not_tls)
{
    const char *http = "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
    for (size_t k = 1; k <= strlen(http); k++) {
        expect_not_tls((const uint8_t *)http, k, 0);
    }
    expect_not_tls((const uint8_t *)"SSH-2.0-OpenSSH_9.2\r\n", 21, 0);
    expect_not_tls((const uint8_t *)"\x00\x00\x00\x00", 4, 0);
    expect_not_tls((const uint8_t *)"\x17\x03\x03\x00\x10", 5, 0); /* application data */
    expect_not_tls((const uint8_t *)"\x15\x03\x03\x00\x02", 5, 0); /* alert */
    expect_not_tls((const uint8_t *)"\x16\x02", 2, 1);
    expect_not_tls((const uint8_t *)"\x16\x03\x05", 3, 2);
    expect_not_tls((const uint8_t *)"\x16\xfe\xfd", 3, 1); /* DTLS */
    struct moat_ch_info ci;
    EXPECT_INT(peek((const uint8_t *)"\x16", 1, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(peek((const uint8_t *)"\x16\x03", 2, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(peek((const uint8_t *)"\x16\x03\x00", 3, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(peek((const uint8_t *)"\x16\x03\x04\x00", 4, &ci), MOAT_CH_NEED_MORE);
    EXPECT(ci.reason == NULL);
    EXPECT_INT(moat_ch_peek(NULL, 0, &ci), MOAT_CH_NEED_MORE);
    /* Random bytes are never OK. */
    uint32_t x = 12345;
    for (int round = 0; round < 2000; round++) {
        size_t len = 1 + (size_t)(round % 300);
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245 + 12345;
            h[i] = (uint8_t)(x >> 16);
        }
        if (round % 2) {
            memcpy(h, "\x16\x03\x01", 3);
        }
        EXPECT(peek(h, len, &ci) != MOAT_CH_OK);
    }
}

TEST_CASE(sslv2_hello)
{
    /* SSLv2-compatible CLIENT-HELLO: 2-byte header with the high bit, type 1, version 3.1. */
    const uint8_t v2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
    struct moat_ch_info ci;
    EXPECT_INT(peek(v2, 1, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(ci.need, 3);
    EXPECT_INT(peek(v2, 2, &ci), MOAT_CH_NEED_MORE);
    EXPECT_INT(peek(v2, sizeof(v2), &ci), MOAT_CH_INVALID);
    EXPECT(strstr(ci.reason, "SSLv2") != NULL);
    EXPECT_INT(peek(v2, 3, &ci), MOAT_CH_INVALID);
    expect_not_tls((const uint8_t *)"\x80\x05\x07", 3, 0);
    expect_not_tls((const uint8_t *)"\xff\xff\xff\xff", 4, 0);
}

/* --- records --- */

TEST_CASE(interleaved_and_bad_records)
{
    size_t n = make_hello(&basic, h, sizeof(h));
    static uint8_t msg[70000];
    size_t m = msg_of(h, n, msg);
    const uint8_t types[] = {20, 21, 23, 24};
    for (size_t t = 0; t < sizeof(types); t++) {
        uint8_t *o = put_record(h2, 22, msg, 60);
        o = put_record(o, types[t], (const uint8_t *)"\x01\x00", 2);
        o = put_record(o, 22, msg + 60, m - 60);
        expect_invalid(h2, (size_t)(o - h2), "record other than handshake");
    }
    /* An empty handshake record between two halves. */
    uint8_t *o = put_record(h2, 22, msg, 60);
    o = put_record(o, 22, msg, 0);
    o = put_record(o, 22, msg + 60, m - 60);
    expect_invalid(h2, (size_t)(o - h2), "empty handshake record");
    /* A later record with another version major. */
    o = put_record(h2, 22, msg, 60);
    uint8_t *second = o;
    o = put_record(o, 22, msg + 60, m - 60);
    second[1] = 2;
    expect_invalid(h2, (size_t)(o - h2), "record version is not 3.x");
    second[1] = 3;
    second[2] = 9;
    expect_invalid(h2, (size_t)(o - h2), "above 3.4");
    /* A record that goes on past the message: one more byte in the last record, or a header
     * split so that the first record already holds more than the message. */
    memcpy(h2, h, n);
    h2[n] = 0;
    set16(h2 + 3, n - 5 + 1);
    expect_invalid(h2, n + 1, "past the end of the ClientHello");
    o = put_record(h2, 22, msg, 2);
    o = put_record(o, 22, msg + 2, m - 2);
    o[0] = 0;
    set16(h2 + 7 + 3, m - 2 + 1); /* the second record's length */
    expect_invalid(h2, (size_t)(o - h2) + 1, "past the end of the ClientHello");
    o = put_record(h2, 22, msg, 100); /* the length is known when the second record comes */
    o = put_record(o, 22, msg + 100, m - 100);
    o[0] = 0;
    set16(h2 + 105 + 3, m - 100 + 1);
    expect_invalid(h2, (size_t)(o - h2) + 1, "past the end of the ClientHello");
    /* A record over 2^14 bytes. */
    memcpy(h2, "\x16\x03\x01\x40\x01\x01\x00\x40\x00", 9);
    expect_invalid(h2, 9, "longer than 2^14");
    /* The handshake length smaller than the record: the record goes on past it. */
    memcpy(h2, h, n);
    set24(h2 + 6, m - 4 - 1);
    expect_invalid(h2, n, "past the end of the ClientHello");
}

TEST_CASE(not_a_client_hello)
{
    size_t n = make_hello(&basic, h, sizeof(h));
    memcpy(h2, h, n);
    h2[5] = 2; /* ServerHello */
    expect_invalid(h2, n, "not a ClientHello");
    expect_invalid(h2, 6, "not a ClientHello");
    /* Too short for the fixed fields. */
    memcpy(h2, "\x16\x03\x01\x00\x10\x01\x00\x00\x0c", 9);
    expect_invalid(h2, 9, "too short");
}

/* --- fixed fields, by hand --- */

TEST_CASE(fixed_fields)
{
    memset(&ed, 0, sizeof(ed));
    ed_fixed(0x0303, 32, 4, 1);
    ed.no_block = 1;
    size_t n = ed_build(h);
    struct moat_ch_info ci = expect_ok(h, n, n, "");
    EXPECT_INT(ci.max_version, 0x0303);
    EXPECT_INT(ci.has_alpn, 0);
    expect_prefixes(h, n, n);
    /* An empty extensions block is fine too. */
    ed.no_block = 0;
    n = ed_build(h);
    expect_ok(h, n, n, "");
    /* legacy_version above 3.3 without supported_versions: at most TLS 1.2 (RFC 8446 §4.2.1). */
    ed_fixed(0x0304, 0, 2, 1);
    n = ed_build(h);
    ci = expect_ok(h, n, n, "");
    EXPECT_INT(ci.legacy_version, 0x0304);
    EXPECT_INT(ci.max_version, 0x0303);
    ed_fixed(0x0300, 0, 2, 1);
    n = ed_build(h);
    ci = expect_ok(h, n, n, "");
    EXPECT_INT(ci.max_version, 0x0300);

    ed_fixed(0x0203, 0, 2, 1);
    n = ed_build(h);
    expect_invalid(h, n, "version is not 3.x");
    ed_fixed(0x0303, 33, 2, 1);
    n = ed_build(h);
    expect_invalid(h, n, "session ID longer than 32");
    ed_fixed(0x0303, 0, 0, 1);
    n = ed_build(h);
    expect_invalid(h, n, "cipher suite list empty");
    ed_fixed(0x0303, 0, 3, 1);
    n = ed_build(h);
    expect_invalid(h, n, "cipher suite list empty or of odd length");
    ed_fixed(0x0303, 0, 2, 0);
    ed_set(0, "\x00\x01\x00\x00\x00\x00\x00", 7); /* pad so the body is long enough */
    n = ed_build(h);
    expect_invalid(h, n, "no compression method");
    ed.n = 0;
    /* Suites running past the message. */
    ed_fixed(0x0303, 0, 2, 1);
    ed.fixed[35] = 0;
    ed.fixed[36] = 200;
    ed.no_block = 1;
    n = ed_build(h);
    expect_invalid(h, n, "ends inside its cipher suites");
    /* One byte after the compression methods: no room for the extensions length. */
    ed_fixed(0x0303, 0, 2, 1);
    ed.fixed[ed.fixed_len++] = 0;
    n = ed_build(h);
    expect_invalid(h, n, "ends inside its extensions length");
}

/* --- extensions, edited from a real hello --- */

static size_t fresh(void)
{
    size_t n = make_hello(&basic, h, sizeof(h));
    ed_split(h, n);
    return n;
}

TEST_CASE(extension_lengths)
{
    fresh();
    size_t n = ed_build_ex(h2, -1, 0);
    expect_invalid(h2, n, "extensions length does not match");
    n = ed_build_ex(h2, 1, 0);
    expect_invalid(h2, n, "extensions length does not match");
    /* One extension longer than what is left: the last one, and one in the middle. */
    fresh();
    ed.e[ed.n - 1].len_delta = 1;
    n = ed_build(h2);
    expect_invalid(h2, n, "extension overruns the extensions");
    fresh();
    ed.e[2].len_delta = 400;
    n = ed_build(h2);
    expect_invalid(h2, n, "extension overruns");
    /* Shorter than declared: the following bytes read as a bad header or a bad body. */
    fresh();
    ed.e[ed.n - 1].len_delta = -1;
    n = ed_build(h2);
    expect_invalid(h2, n, "extension header overruns");
    /* The handshake length one byte longer: the extensions no longer fill the message. */
    fresh();
    n = ed_build_ex(h2, 0, 1);
    expect_invalid(h2, n, "extensions length does not match");
}

TEST_CASE(duplicate_extensions)
{
    fresh();
    ed_append_copy(ed_find(0));
    size_t n = ed_build(h2);
    expect_invalid(h2, n, "two server_name extensions");
    fresh();
    ed_append_copy(ed_find(16));
    n = ed_build(h2);
    expect_invalid(h2, n, "appears twice");
    fresh();
    ed_set(0xffff, "", 0);
    ed_set(0x0a0a, "", 0);
    n = ed_build(h2);
    expect_ok(h2, n, n, "example.test");
    ed_append_copy(ed_find(0xffff));
    n = ed_build(h2);
    expect_invalid(h2, n, "appears twice");
}

TEST_CASE(pre_shared_key_last)
{
    fresh();
    ed_set(41, "\x00\x00", 2);
    size_t n = ed_build(h2);
    expect_ok(h2, n, n, "example.test");
    ed_set(0x4444, "", 0);
    n = ed_build(h2);
    expect_invalid(h2, n, "pre_shared_key is not the last");
}

TEST_CASE(server_name_refusals)
{
    uint8_t d[1024];
    fresh();
    size_t n = ed_build(h2);
    expect_ok(h2, n, n, "example.test");

    ed_set(0, d, sni_body(d, 0, "", 0));
    n = ed_build(h2);
    expect_invalid(h2, n, "empty host_name");
    ed_set(0, d, sni_body(d, 1, "a.example", 9));
    n = ed_build(h2);
    expect_invalid(h2, n, "other than host_name");
    ed_set(0, "\x00\x00", 2);
    n = ed_build(h2);
    expect_invalid(h2, n, "empty server_name list");
    ed_set(0, "", 0);
    n = ed_build(h2);
    expect_invalid(h2, n, "shorter than its list length");
    size_t l = sni_body(d, 0, "a.example", 9);
    d[1]++;
    ed_set(0, d, l);
    n = ed_build(h2);
    expect_invalid(h2, n, "list length does not match");
    l = sni_body(d, 0, "a.example", 9);
    d[4]++;
    ed_set(0, d, l);
    n = ed_build(h2);
    expect_invalid(h2, n, "host_name overruns");
    /* Two host_name entries; a host_name and another type. */
    l = sni_body(d, 0, "a.example", 9);
    memcpy(d + l,
           "\x00\x00\x01"
           "b",
           4);
    d[1] = (uint8_t)(l - 2 + 4);
    ed_set(0, d, l + 4);
    n = ed_build(h2);
    expect_invalid(h2, n, "two host_name entries");
    d[l] = 1;
    ed_set(0, d, l + 4);
    n = ed_build(h2);
    expect_invalid(h2, n, "other than host_name");
    /* No server_name at all. */
    ed_del(0);
    n = ed_build(h2);
    expect_ok(h2, n, n, "");
}

TEST_CASE(host_name_syntax)
{
    uint8_t d[1024];
    struct {
        const char *name;
        size_t len;
        const char *want; /* NULL: invalid */
    } cases[] = {
        {"a", 1, "a"},
        {"a.", 2, "a"},
        {"A-B_c.Example.TEST", 18, "a-b_c.example.test"},
        {"192.0.2.1", 9, "192.0.2.1"},
        {"xn--bcher-kva.example", 21, "xn--bcher-kva.example"},
        {".", 1, NULL},
        {"a..", 3, NULL},
        {"a..b", 4, NULL},
        {".a", 2, NULL},
        {"a b.example", 11, NULL},
        {"a\0b.example", 11, NULL},
        {"b\xc3\xbc"
         "cher.example",
         15, NULL},
        {"a.example:443", 13, NULL},
        {"*.example", 9, NULL},
        {"[::1]", 5, NULL},
        {"a/b", 3, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fresh();
        ed_set(0, d, sni_body(d, 0, cases[i].name, cases[i].len));
        size_t n = ed_build(h2);
        if (cases[i].want) {
            expect_ok(h2, n, n, cases[i].want);
        } else {
            expect_invalid(h2, n, "host_name");
        }
    }
    /* 63-byte labels and 253 bytes in all (254 with the trailing dot) are fine; 64 and 254 are
     * not. */
    char name[300];
    memset(name, 'x', 64);
    memcpy(name + 64, ".example", 8);
    fresh();
    ed_set(0, d, sni_body(d, 0, name + 1, 71));
    size_t n = ed_build(h2);
    char want[80];
    memcpy(want, name + 1, 71);
    want[71] = '\0';
    struct moat_ch_info ci = expect_ok(h2, n, n, want);
    fresh();
    ed_set(0, d, sni_body(d, 0, name, 72));
    n = ed_build(h2);
    expect_invalid(h2, n, "label over 63");
    for (size_t i = 0; i < 255; i++) {
        name[i] = (i % 2) ? '.' : 'a';
    }
    name[255] = '\0';
    fresh();
    ed_set(0, d, sni_body(d, 0, name, 253));
    n = ed_build(h2);
    EXPECT_INT(peek(h2, n, &ci), MOAT_CH_OK);
    EXPECT_INT(ci.sni_len, 253);
    EXPECT(memcmp(ci.sni, name, 253) == 0 && ci.sni[253] == '\0');
    fresh();
    ed_set(0, d, sni_body(d, 0, name, 254)); /* "a.a...a." */
    n = ed_build(h2);
    EXPECT_INT(peek(h2, n, &ci), MOAT_CH_OK);
    EXPECT_INT(ci.sni_len, 253);
    fresh();
    name[253] = 'b';
    ed_set(0, d, sni_body(d, 0, name, 254));
    n = ed_build(h2);
    expect_invalid(h2, n, "253");
    fresh();
    ed_set(0, d, sni_body(d, 0, name, 255));
    n = ed_build(h2);
    expect_invalid(h2, n, "longer than 253");
}

TEST_CASE(alpn_refusals_and_limits)
{
    fresh();
    ed_set(16, "\x00\x00", 2);
    size_t n = ed_build(h2);
    expect_invalid(h2, n, "empty ALPN list");
    ed_set(16, "\x00\x03\x02h2\x00", 6);
    n = ed_build(h2);
    expect_invalid(h2, n, "ALPN list length does not match");
    ed_set(16, "\x00\x04\x02h2\x00", 6);
    n = ed_build(h2);
    expect_invalid(h2, n, "empty ALPN protocol name");
    ed_set(16, "\x00\x03\x03h2", 5);
    n = ed_build(h2);
    expect_invalid(h2, n, "ALPN protocol name overruns");
    ed_set(16, "\x00", 1);
    n = ed_build(h2);
    expect_invalid(h2, n, "ALPN extension shorter");

    /* Nine names: eight kept, in order. */
    uint8_t d[1024];
    size_t l = 2;
    for (int i = 0; i < 9; i++) {
        d[l++] = 2;
        d[l++] = 'p';
        d[l++] = (uint8_t)('0' + i);
    }
    d[0] = 0;
    d[1] = (uint8_t)(l - 2);
    ed_set(16, d, l);
    n = ed_build(h2);
    struct moat_ch_info ci = expect_ok(h2, n, n, "example.test");
    EXPECT_INT(ci.alpn_count, 8);
    EXPECT_INT(ci.alpn_truncated, 1);
    EXPECT_SLICE(moat_ch_alpn_at(&ci, 7), "p7");
    EXPECT_INT(moat_ch_alpn_offers(&ci, "p8", 2), 0);
    /* A 255-byte name fills the 256 bytes; "h2" after it is not kept (order is kept). */
    d[2] = 255;
    memset(d + 3, 'n', 255);
    memcpy(d + 258, "\x02h2", 3);
    d[0] = 1;
    d[1] = 3; /* 259 */
    ed_set(16, d, 261);
    n = ed_build(h2);
    ci = expect_ok(h2, n, n, "example.test");
    EXPECT_INT(ci.alpn_count, 1);
    EXPECT_INT(ci.alpn_len, 256);
    EXPECT_INT(ci.alpn_truncated, 1);
    EXPECT_INT(moat_ch_alpn_at(&ci, 0).len, 255);
    EXPECT_INT(moat_ch_alpn_offers(&ci, "h2", 2), 0);
    /* 200 bytes kept, 100 do not fit; "h2" would, but it comes after them. */
    d[2] = 200;
    memset(d + 3, 'a', 200);
    d[203] = 100;
    memset(d + 204, 'b', 100);
    memcpy(d + 304, "\x02h2", 3);
    d[0] = 1;
    d[1] = 49; /* 305 */
    ed_set(16, d, 307);
    n = ed_build(h2);
    ci = expect_ok(h2, n, n, "example.test");
    EXPECT_INT(ci.alpn_count, 1);
    EXPECT_INT(ci.alpn_len, 201);
    EXPECT_INT(ci.alpn_truncated, 1);
    EXPECT_INT(moat_ch_alpn_offers(&ci, "h2", 2), 0);
}

TEST_CASE(supported_versions)
{
    fresh();
    ed_set(43, "\x06\x0a\x0a\x03\x04\x03\x03", 7); /* GREASE, 1.3, 1.2 */
    size_t n = ed_build(h2);
    struct moat_ch_info ci = expect_ok(h2, n, n, "example.test");
    EXPECT_INT(ci.offers_tls13, 1);
    EXPECT_INT(ci.max_version, 0x0304);
    ed_set(43, "\x04\x7f\x1c\x03\x03", 5); /* a draft and 1.2 */
    n = ed_build(h2);
    ci = expect_ok(h2, n, n, "example.test");
    EXPECT_INT(ci.offers_tls13, 0);
    EXPECT_INT(ci.max_version, 0x0303);
    ed_set(43, "\x02\x0a\x0a", 3);
    n = ed_build(h2);
    ci = expect_ok(h2, n, n, "example.test");
    EXPECT_INT(ci.has_supported_versions, 1);
    EXPECT_INT(ci.max_version, 0);
    ed_set(43, "\x03\x03\x04\x03", 4);
    n = ed_build(h2);
    expect_invalid(h2, n, "odd length");
    ed_set(43, "\x00", 1);
    n = ed_build(h2);
    expect_invalid(h2, n, "supported_versions list empty");
    ed_set(43, "\x04\x03\x04", 3);
    n = ed_build(h2);
    expect_invalid(h2, n, "supported_versions length does not match");
    ed_set(43, "", 0);
    n = ed_build(h2);
    expect_invalid(h2, n, "supported_versions extension is empty");
}

TEST_CASE(status_names)
{
    EXPECT_STR(moat_ch_status_name(MOAT_CH_OK), "ok");
    EXPECT_STR(moat_ch_status_name(MOAT_CH_NEED_MORE), "need_more");
    EXPECT_STR(moat_ch_status_name(MOAT_CH_NOT_TLS), "not_tls");
    EXPECT_STR(moat_ch_status_name(MOAT_CH_INVALID), "invalid");
    EXPECT_STR(moat_ch_status_name(MOAT_CH_STATUS_COUNT), "?");
}

int main(void)
{
    RUN(tls13_sni_alpn);
    RUN(no_sni_no_alpn);
    RUN(sni_case_and_trailing_dot_folded);
    RUN(tls12_max_client);
    RUN(tls10_client);
    RUN(tls13_large_hello_many_extensions);
    RUN(need_is_exact_once_lengths_known);
    RUN(refragmented_by_hand);
    RUN(split_by_openssl_itself);
    RUN(larger_than_the_cap);
    RUN(followed_by_more_bytes);
    RUN(not_tls);
    RUN(sslv2_hello);
    RUN(interleaved_and_bad_records);
    RUN(not_a_client_hello);
    RUN(fixed_fields);
    RUN(extension_lengths);
    RUN(duplicate_extensions);
    RUN(pre_shared_key_last);
    RUN(server_name_refusals);
    RUN(host_name_syntax);
    RUN(alpn_refusals_and_limits);
    RUN(supported_versions);
    RUN(status_names);
    TEST_MAIN_END();
}
