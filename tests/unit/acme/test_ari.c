/*
 * test_ari.c: ACME Renewal Information (RFC 9773) without a CA: the certificate identifier
 * against the RFC's own example and against values worked out here from the certificate's DER,
 * the refusals of certificates ARI cannot name, the strict RFC 3339 parser (accepted forms and
 * junk), the random pick's bounds, and the fetch's answers that need no network.
 */
#include "acme/ari.h"

#include "test.h"

#include <stdlib.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

/* The test's own base64url without padding (RFC 4648 §5), by hand: nothing shared with moat. */
static void ref_b64url(const unsigned char *p, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        v |= i + 1 < n ? (unsigned)p[i + 1] << 8 : 0;
        v |= i + 2 < n ? p[i + 2] : 0;
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < n) {
            out[o++] = tab[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            out[o++] = tab[v & 63];
        }
    }
    out[o] = '\0';
}

static EVP_PKEY *key(void)
{
    return EVP_EC_gen("P-256");
}

/* A certificate for `cn` with this serial (big-endian magnitude bytes), signed by signer_key
 * with issuer `issuer` (NULL: self-signed). aki_kid: the AKI keyIdentifier to put in (NULL:
 * none; with aki_issuer_only an AKI of issuer name and serial only). ski: add an SKI. */
static X509 *make_cert(const char *cn, const unsigned char *serial, size_t nserial, EVP_PKEY *k,
                       EVP_PKEY *signer_key, X509 *issuer, const unsigned char *aki_kid,
                       size_t naki, int aki_issuer_only, int ski)
{
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    BIGNUM *bn = BN_bin2bn(serial, (int)nserial, NULL);
    ASN1_INTEGER *sn = BN_to_ASN1_INTEGER(bn, NULL);
    X509_set_serialNumber(x, sn);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    if (ski) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (aki_kid != NULL || aki_issuer_only) {
        AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
        if (aki_kid != NULL) {
            akid->keyid = ASN1_OCTET_STRING_new();
            ASN1_OCTET_STRING_set(akid->keyid, aki_kid, (int)naki);
        }
        if (aki_issuer_only) {
            akid->serial = ASN1_INTEGER_new();
            ASN1_INTEGER_set(akid->serial, 7);
        }
        X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0);
        AUTHORITY_KEYID_free(akid);
    }
    X509_sign(x, signer_key, EVP_sha256());
    return x;
}

/* The content octets of the serial number, found by walking the certificate's DER by hand:
 * Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber
 * INTEGER, ... } }. */
static size_t der_len(const unsigned char *p, size_t *hl)
{
    if (p[1] < 0x80) {
        *hl = 2;
        return p[1];
    }
    size_t n = p[1] & 0x7f, l = 0;
    for (size_t i = 0; i < n; i++) {
        l = l << 8 | p[2 + i];
    }
    *hl = 2 + n;
    return l;
}

static size_t serial_from_der(X509 *x, unsigned char *out)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    EXPECT(n > 0);
    size_t hl, at = 0;
    der_len(der, &hl); /* Certificate */
    at += hl;
    der_len(der + at, &hl); /* tbsCertificate */
    at += hl;
    if (der[at] == 0xa0) { /* [0] EXPLICIT version */
        size_t l = der_len(der + at, &hl);
        at += hl + l;
    }
    EXPECT_INT(der[at], 0x02);
    size_t l = der_len(der + at, &hl);
    memcpy(out, der + at + hl, l);
    OPENSSL_free(der);
    return l;
}

TEST_CASE(cert_id_rfc9773_example)
{
    /* RFC 9773 §4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4
     * and serial 00:87:65:43:21 (DER, the 0x00 because 0x87 has its high bit set). */
    static const unsigned char kid[] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
                                        0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    static const unsigned char serial[] = {0x87, 0x65, 0x43, 0x21};
    EVP_PKEY *k = key();
    X509 *x = make_cert("rfc.example", serial, sizeof(serial), k, k, NULL, kid, sizeof(kid), 0, 0);
    char id[MOAT_ACME_ARI_ID_MAX];
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_acme_ari_cert_id(x, id, sizeof(id), &err)));
    EXPECT_STR(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    /* exactly the size it needs, and one byte less */
    size_t need = strlen(id) + 1;
    EXPECT(moat_ok(moat_acme_ari_cert_id(x, id, need, &err)));
    EXPECT_STR(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    EXPECT_INT(moat_acme_ari_cert_id(x, id, need - 1, &err).kind, MOAT_E_LIMIT);
    EXPECT_STR(id, "");
    EXPECT(strstr(err.msg, "longer than moat takes") != NULL);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* A CA with an SKI issues leaves whose AKI is that SKI (as OpenSSL's "keyid" makes it); the
 * identifier must be the CA's SKI and the serial's DER content octets read from the leaf. */
static void check_leaf_with_serial(const unsigned char *serial, size_t nserial, int want_zero)
{
    EVP_PKEY *cak = key(), *lk = key();
    static const unsigned char one[] = {1};
    X509 *ca = make_cert("test CA", one, 1, cak, cak, NULL, NULL, 0, 0, 1);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
    EXPECT(ski != NULL);
    X509 *leaf = make_cert("leaf.example", serial, nserial, lk, cak, ca, ASN1_STRING_get0_data(ski),
                           (size_t)ASN1_STRING_length(ski), 0, 0);
    unsigned char content[64];
    size_t nc = serial_from_der(leaf, content);
    EXPECT_INT(nc, nserial + (size_t)want_zero);
    if (want_zero) {
        EXPECT_INT(content[0], 0x00);
    }
    EXPECT(memcmp(content + want_zero, serial, nserial) == 0);
    char want[256], a[100], b[100];
    ref_b64url(ASN1_STRING_get0_data(ski), (size_t)ASN1_STRING_length(ski), a);
    ref_b64url(content, nc, b);
    snprintf(want, sizeof(want), "%s.%s", a, b);
    char id[MOAT_ACME_ARI_ID_MAX];
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_acme_ari_cert_id(leaf, id, sizeof(id), &err)));
    EXPECT_STR(id, want);
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(lk);
    EVP_PKEY_free(cak);
}

TEST_CASE(cert_id_from_the_der)
{
    unsigned char serial[16];
    /* high bit set: DER adds a 0x00 that the identifier keeps */
    RAND_bytes(serial, sizeof(serial));
    serial[0] |= 0x80;
    check_leaf_with_serial(serial, sizeof(serial), 1);
    /* high bit clear: no 0x00 */
    RAND_bytes(serial, sizeof(serial));
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x01);
    check_leaf_with_serial(serial, sizeof(serial), 0);
    /* a 20-byte serial (the RFC 5280 maximum) with its high bit set */
    unsigned char big[20];
    RAND_bytes(big, sizeof(big));
    big[0] |= 0x80;
    check_leaf_with_serial(big, sizeof(big), 1);
}

TEST_CASE(cert_id_refuses_what_ari_cannot_name)
{
    EVP_PKEY *k = key();
    static const unsigned char serial[] = {0x12, 0x34};
    char id[MOAT_ACME_ARI_ID_MAX] = "junk";
    struct moat_err err = {0};
    /* no AKI at all */
    X509 *x = make_cert("no-aki.example", serial, 2, k, k, NULL, NULL, 0, 0, 0);
    EXPECT_INT(moat_acme_ari_cert_id(x, id, sizeof(id), &err).kind, MOAT_E_CERT);
    EXPECT_STR(id, "");
    EXPECT(strstr(err.msg, "no Authority Key Identifier with a keyIdentifier") != NULL);
    EXPECT(strstr(err.msg, "no-aki.example") != NULL);
    X509_free(x);
    /* an AKI of issuer serial only, without keyIdentifier */
    memset(&err, 0, sizeof(err));
    x = make_cert("issuer-only.example", serial, 2, k, k, NULL, NULL, 0, 1, 0);
    EXPECT_INT(moat_acme_ari_cert_id(x, id, sizeof(id), &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "keyIdentifier") != NULL);
    X509_free(x);
    EXPECT_INT(ERR_peek_error(), 0); /* nothing left on OpenSSL's queue */
    EVP_PKEY_free(k);
}

static time_t t3339(const char *s, int *ok)
{
    time_t t = -1;
    *ok = moat_ok(moat_acme_ari_parse_time(s, strlen(s), &t));
    return t;
}

#define EXPECT_TIME(s, want)                                                                       \
    do {                                                                                           \
        int ok_;                                                                                   \
        time_t got_ = t3339((s), &ok_);                                                            \
        if (!ok_) {                                                                                \
            TEST__FAIL("\"%s\" refused, expected %lld", (s), (long long)(want));                   \
        } else {                                                                                   \
            EXPECT_INT(got_, (want));                                                              \
        }                                                                                          \
    } while (0)
#define EXPECT_REFUSED(s)                                                                          \
    do {                                                                                           \
        int ok_;                                                                                   \
        time_t got_ = t3339((s), &ok_);                                                            \
        if (ok_) {                                                                                 \
            TEST__FAIL("\"%s\" accepted as %lld, expected a refusal", (s), (long long)got_);       \
        }                                                                                          \
    } while (0)

TEST_CASE(rfc3339_accepts)
{
    /* 2025-06-01T12:00:00Z = 1748779200 (date -u -d 2025-06-01T12:00:00Z +%s) */
    EXPECT_TIME("2025-06-01T12:00:00Z", 1748779200);
    EXPECT_TIME("2025-06-01t12:00:00z", 1748779200);
    EXPECT_TIME("1970-01-01T00:00:00Z", 0);
    EXPECT_TIME("1969-12-31T23:59:59Z", -1);
    EXPECT_TIME("2000-02-29T00:00:00Z", 951782400);    /* a leap year by the 400 rule */
    EXPECT_TIME("2024-02-29T23:59:59Z", 1709251199);   /* a leap year by the 4 rule */
    EXPECT_TIME("2038-01-19T03:14:08Z", 2147483648LL); /* past 32-bit time_t */
    EXPECT_TIME("9999-12-31T23:59:59Z", 253402300799LL);
    /* offsets: local time minus the offset is UTC */
    EXPECT_TIME("2025-06-01T14:00:00+02:00", 1748779200);
    EXPECT_TIME("2025-06-01T06:30:00-05:30", 1748779200);
    EXPECT_TIME("2025-06-01T12:00:00+00:00", 1748779200);
    EXPECT_TIME("2025-06-01T12:00:00-00:00", 1748779200); /* §4.3: unknown local offset */
    EXPECT_TIME("2025-06-02T11:59:00+23:59", 1748779200);
    /* fractions are dropped, whatever their length */
    EXPECT_TIME("2025-06-01T12:00:00.5Z", 1748779200);
    EXPECT_TIME("2025-06-01T12:00:00.999999999Z", 1748779200);
    EXPECT_TIME("2025-06-01T12:00:00.000000000000000000001+00:00", 1748779200);
    /* the leap second of 2016 is the next second */
    EXPECT_TIME("2016-12-31T23:59:60Z", 1483228800);
    EXPECT_TIME("2017-01-01T00:59:60+01:00", 1483228800);
    /* Let's Encrypt's form */
    EXPECT_TIME("2025-05-31T13:30:09Z", 1748698209);
}

TEST_CASE(rfc3339_refuses_junk)
{
    EXPECT_REFUSED("");
    EXPECT_REFUSED("2025-06-01");
    EXPECT_REFUSED("2025-06-01T12:00");
    EXPECT_REFUSED("2025-06-01T12:00:00");   /* no offset */
    EXPECT_REFUSED("2025-06-01 12:00:00Z");  /* a space for T */
    EXPECT_REFUSED(" 2025-06-01T12:00:00Z"); /* leading space */
    EXPECT_REFUSED("2025-06-01T12:00:00Z "); /* trailing space */
    EXPECT_REFUSED("2025-06-01T12:00:00ZZ"); /* trailing junk */
    EXPECT_REFUSED("2025-06-01T12:00:00Zjunk");
    EXPECT_REFUSED("2025-06-01T12:00:00.Z");     /* an empty fraction */
    EXPECT_REFUSED("2025-06-01T12:00:00,5Z");    /* ISO 8601's comma is not RFC 3339 */
    EXPECT_REFUSED("2025-06-01T12:00:00+0200");  /* offset without its colon */
    EXPECT_REFUSED("2025-06-01T12:00:00+02");    /* offset without minutes */
    EXPECT_REFUSED("2025-06-01T12:00:00+24:00"); /* offset hours */
    EXPECT_REFUSED("2025-06-01T12:00:00+02:60"); /* offset minutes */
    EXPECT_REFUSED("2025-06-01T12:00:00UTC");
    EXPECT_REFUSED("2025-6-01T12:00:00Z");   /* one-digit month */
    EXPECT_REFUSED("25-06-01T12:00:00Z");    /* two-digit year */
    EXPECT_REFUSED("+2025-06-01T12:00:00Z"); /* a signed year */
    EXPECT_REFUSED("2025-00-01T12:00:00Z");
    EXPECT_REFUSED("2025-13-01T12:00:00Z");
    EXPECT_REFUSED("2025-06-00T12:00:00Z");
    EXPECT_REFUSED("2025-06-31T12:00:00Z"); /* June has 30 days */
    EXPECT_REFUSED("2025-02-29T12:00:00Z"); /* 2025 is not a leap year */
    EXPECT_REFUSED("1900-02-29T12:00:00Z"); /* nor is 1900 */
    EXPECT_REFUSED("2025-06-01T24:00:00Z");
    EXPECT_REFUSED("2025-06-01T12:60:00Z");
    EXPECT_REFUSED("2025-06-01T12:00:61Z");
    EXPECT_REFUSED("2025-06-01T12:00:60Z"); /* not the last second of a UTC day */
    EXPECT_REFUSED("2025-06-01T12:0a:00Z");
    EXPECT_REFUSED("2025/06/01T12:00:00Z");
    EXPECT_REFUSED("1748779200"); /* seconds are not a date-time */
    EXPECT_REFUSED("Sun, 01 Jun 2025 12:00:00 GMT");
    /* a NUL inside: the length says there is more than the C string */
    time_t t;
    static const char nul[] = "2025-06-01T12:00:00Z\0junk";
    EXPECT_INT(moat_acme_ari_parse_time(nul, sizeof(nul) - 1, &t).kind, MOAT_E_PEER);
    EXPECT(moat_ok(moat_acme_ari_parse_time(nul, 20, &t)));
    EXPECT_INT(t, 1748779200);
    /* a length that cuts the text short never reads past it */
    EXPECT_INT(moat_acme_ari_parse_time(nul, 19, &t).kind, MOAT_E_PEER);
    EXPECT_INT(moat_acme_ari_parse_time(nul, 0, &t).kind, MOAT_E_PEER);
}

TEST_CASE(pick_stays_in_the_window)
{
    time_t now = 1748779200, start = now + 1000, end = now + 2000;
    int low = 0, high = 0, at_start = 0;
    for (int i = 0; i < 20000; i++) {
        time_t t = moat_acme_ari_pick(start, end, now);
        if (t < start || t > end) {
            TEST__FAIL("pick %lld outside [%lld, %lld]", (long long)t, (long long)start,
                       (long long)end);
            break;
        }
        low += t < start + 500;
        high += t > end - 500;
        at_start += t == start;
    }
    /* uniform: each half gets about 10000 of 20000 (far beyond chance otherwise) */
    EXPECT(low > 9000 && low < 11000);
    EXPECT(high > 9000 && high < 11000);
    EXPECT(at_start < 100); /* not piled on an edge */
    /* a window of one second */
    EXPECT_INT(moat_acme_ari_pick(start, start + 1, now) >= start, 1);
    EXPECT_INT(moat_acme_ari_pick(start, start + 1, now) <= start + 1, 1);
    /* a long window (ten years) */
    for (int i = 0; i < 1000; i++) {
        time_t t = moat_acme_ari_pick(start, start + 315360000, now);
        EXPECT(t >= start && t <= start + 315360000);
    }
}

TEST_CASE(pick_in_a_past_or_open_window)
{
    time_t now = 1748779200;
    /* entirely past: now */
    EXPECT_INT(moat_acme_ari_pick(now - 2000, now - 1000, now), now);
    EXPECT_INT(moat_acme_ari_pick(now - 2000, now, now), now);
    /* begun already: never before now, never after the end; the past part means "now" */
    int at_now = 0;
    for (int i = 0; i < 10000; i++) {
        time_t t = moat_acme_ari_pick(now - 1000, now + 1000, now);
        EXPECT(t >= now && t <= now + 1000);
        at_now += t == now;
    }
    EXPECT(at_now > 4000 && at_now < 6000); /* the past half of the window */
    /* not a window: its end, or now when that is past */
    EXPECT_INT(moat_acme_ari_pick(now + 500, now + 100, now), now + 100);
    EXPECT_INT(moat_acme_ari_pick(now + 100, now + 100, now), now + 100);
}

TEST_CASE(fetch_without_renewal_info)
{
    /* A CA whose directory has no renewalInfo (Pebble 2.4): nothing is asked, NOTFOUND. */
    struct moat_acme *a = calloc(1, sizeof(*a));
    a->directory_url = strdup("https://ca.example/dir");
    EVP_PKEY *k = key();
    static const unsigned char kid[] = {1, 2, 3}, serial[] = {4};
    X509 *x = make_cert("leaf.example", serial, 1, k, k, NULL, kid, sizeof(kid), 0, 0);
    time_t s = 1, e = 1;
    long ra = 0;
    struct moat_err err = {0};
    EXPECT_INT(moat_acme_ari_fetch(a, x, &s, &e, &ra, &err).kind, MOAT_E_NOTFOUND);
    EXPECT(strstr(err.msg, "no renewalInfo") != NULL);
    EXPECT(strstr(err.msg, "https://ca.example/dir") != NULL);
    EXPECT_INT(s, 0);
    EXPECT_INT(e, 0);
    EXPECT_INT(ra, MOAT_ACME_ARI_RETRY_DEFAULT_S);
    /* with renewalInfo, a certificate ARI cannot name is refused before any request */
    a->dir.renewal_info = strdup("https://ca.example/renewal-info");
    X509 *bare = make_cert("bare.example", serial, 1, k, k, NULL, NULL, 0, 0, 0);
    memset(&err, 0, sizeof(err));
    EXPECT_INT(moat_acme_ari_fetch(a, bare, &s, &e, &ra, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "Authority Key Identifier") != NULL);
    X509_free(bare);
    X509_free(x);
    EVP_PKEY_free(k);
    moat_acme_free(a);
}

int main(void)
{
    RUN(cert_id_rfc9773_example);
    RUN(cert_id_from_the_der);
    RUN(cert_id_refuses_what_ari_cannot_name);
    RUN(rfc3339_accepts);
    RUN(rfc3339_refuses_junk);
    RUN(pick_stays_in_the_window);
    RUN(pick_in_a_past_or_open_window);
    RUN(fetch_without_renewal_info);
    TEST_MAIN_END();
}
