/*
 * test_aia.c: the caIssuers URLs taken from a certificate (other access methods, other name
 * types and unprintable URIs skipped) and the reading of what an AIA URL serves: DER, PKCS#7
 * (DER and PEM), PEM certificates, and refusals with words for everything else (empty,
 * garbage, trailing bytes, truncated DER, a bundle without certificates), with OpenSSL's error
 * queue left empty each time.
 */
#include "client/aia.h"

#include "test.h"

#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

static EVP_PKEY *key;

/* A self-signed certificate for `cn` with the given AIA value (NULL: no extension). */
static X509 *make_cert(const char *cn, const char *aia)
{
    X509 *x = X509_new();
    EXPECT(x != NULL);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    if (aia != NULL) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_info_access, aia);
        EXPECT(e != NULL);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    EXPECT(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static size_t der_of(X509 *x, unsigned char **out)
{
    *out = NULL;
    int n = i2d_X509(x, out);
    EXPECT(n > 0);
    return n > 0 ? (size_t)n : 0;
}

static size_t pem_of(X509 *x, char *buf, size_t buflen)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    size_t l = n > 0 && (size_t)n < buflen ? (size_t)n : 0;
    memcpy(buf, p, l);
    BIO_free(b);
    return l;
}

/* A certs-only PKCS#7 SignedData with the given certificates, DER. */
static size_t p7_of(X509 **xs, int n, unsigned char **out)
{
    PKCS7 *p7 = PKCS7_new();
    EXPECT(PKCS7_set_type(p7, NID_pkcs7_signed) == 1);
    EXPECT(PKCS7_content_new(p7, NID_pkcs7_data) == 1);
    for (int i = 0; i < n; i++) {
        EXPECT(PKCS7_add_certificate(p7, xs[i]) == 1);
    }
    *out = NULL;
    int len = i2d_PKCS7(p7, out);
    PKCS7_free(p7);
    EXPECT(len > 0);
    return len > 0 ? (size_t)len : 0;
}

static int parse(const void *p, size_t n, STACK_OF(X509) * *out, const char **form,
                 struct moat_err *err)
{
    memset(err, 0, sizeof(*err));
    moat_rc rc = moat_client_aia_parse(p, n, out, form, err);
    EXPECT_INT(ERR_peek_error(), 0);
    EXPECT((rc.kind == MOAT_OK) == (*out != NULL));
    EXPECT(rc.kind == MOAT_OK || err->msg[0] != '\0');
    return rc.kind == MOAT_OK ? sk_X509_num(*out) : -1;
}

static const char *subject_cn(STACK_OF(X509) * sk, int i)
{
    static char cn[64];
    cn[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(sk_X509_value(sk, i)), NID_commonName, cn,
                              sizeof(cn));
    return cn;
}

TEST_CASE(urls_are_the_ca_issuers_ones)
{
    X509 *x =
        make_cert("leaf", "OCSP;URI:http://ocsp.example/,caIssuers;URI:http://a.example/i.der,"
                          "caIssuers;DNS:not-a-uri.example,caIssuers;URI:ldap://b.example/cn=i");
    char urls[MOAT_CLIENT_AIA_MAX_URLS][MOAT_CLIENT_AIA_URL_MAX];
    size_t n = moat_client_aia_urls(x, urls, MOAT_CLIENT_AIA_MAX_URLS);
    EXPECT_INT(n, 2);
    EXPECT_STR(urls[0], "http://a.example/i.der");
    EXPECT_STR(urls[1], "ldap://b.example/cn=i");
    /* At most `max`. */
    EXPECT_INT(moat_client_aia_urls(x, urls, 1), 1);
    EXPECT_STR(urls[0], "http://a.example/i.der");
    EXPECT_INT(ERR_peek_error(), 0);
    X509_free(x);

    x = make_cert("plain", NULL);
    EXPECT_INT(moat_client_aia_urls(x, urls, MOAT_CLIENT_AIA_MAX_URLS), 0);
    EXPECT_INT(moat_client_aia_urls(NULL, urls, MOAT_CLIENT_AIA_MAX_URLS), 0);
    X509_free(x);
}

TEST_CASE(unprintable_and_overlong_urls_are_skipped)
{
    X509 *x = make_cert("leaf", "caIssuers;URI:http://a.example/with space,"
                                "caIssuers;URI:http://ok.example/i.der");
    char urls[MOAT_CLIENT_AIA_MAX_URLS][MOAT_CLIENT_AIA_URL_MAX];
    EXPECT_INT(moat_client_aia_urls(x, urls, MOAT_CLIENT_AIA_MAX_URLS), 1);
    EXPECT_STR(urls[0], "http://ok.example/i.der");
    X509_free(x);

    char conf[MOAT_CLIENT_AIA_URL_MAX + 64];
    int l = snprintf(conf, sizeof(conf), "caIssuers;URI:http://x.example/");
    memset(conf + l, 'a', MOAT_CLIENT_AIA_URL_MAX);
    /* "caIssuers;URI:" is 14 bytes: the longest URL that fits is MOAT_CLIENT_AIA_URL_MAX - 1. */
    conf[14 + MOAT_CLIENT_AIA_URL_MAX - 1] = '\0';
    x = make_cert("longest", conf);
    EXPECT_INT(moat_client_aia_urls(x, urls, MOAT_CLIENT_AIA_MAX_URLS), 1);
    EXPECT_INT(strlen(urls[0]), MOAT_CLIENT_AIA_URL_MAX - 1);
    X509_free(x);
    conf[14 + MOAT_CLIENT_AIA_URL_MAX - 1] = 'a';
    conf[14 + MOAT_CLIENT_AIA_URL_MAX] = '\0';
    x = make_cert("too long", conf);
    EXPECT_INT(moat_client_aia_urls(x, urls, MOAT_CLIENT_AIA_MAX_URLS), 0);
    X509_free(x);
}

TEST_CASE(der_pem_and_pkcs7_are_read)
{
    X509 *a = make_cert("issuer a", NULL);
    X509 *b = make_cert("root b", NULL);
    struct moat_err err;
    STACK_OF(X509) *sk = NULL;
    const char *form = NULL;

    unsigned char *der = NULL;
    size_t n = der_of(a, &der);
    EXPECT_INT(parse(der, n, &sk, &form, &err), 1);
    EXPECT_STR(form, "DER");
    EXPECT_STR(subject_cn(sk, 0), "issuer a");
    sk_X509_pop_free(sk, X509_free);

    /* DER must be exactly one object: trailing bytes or a cut are refused. */
    unsigned char *more = malloc(n + 1);
    memcpy(more, der, n);
    more[n] = 0;
    EXPECT_INT(parse(more, n + 1, &sk, &form, &err), -1);
    EXPECT(strstr(err.msg, "not a certificate") != NULL);
    EXPECT_INT(parse(der, n - 1, &sk, &form, &err), -1);
    EXPECT_INT(err.kind, MOAT_E_PEER);
    free(more);
    OPENSSL_free(der);

    char pem[8192];
    size_t l1 = pem_of(a, pem, sizeof(pem));
    size_t l2 = pem_of(b, pem + l1, sizeof(pem) - l1);
    EXPECT_INT(parse(pem, l1 + l2, &sk, &form, &err), 2);
    EXPECT_STR(form, "PEM");
    EXPECT_STR(subject_cn(sk, 1), "root b");
    sk_X509_pop_free(sk, X509_free);

    X509 *both[2] = {a, b};
    unsigned char *p7 = NULL;
    n = p7_of(both, 2, &p7);
    EXPECT_INT(parse(p7, n, &sk, &form, &err), 2);
    EXPECT_STR(form, "PKCS#7");
    EXPECT_STR(subject_cn(sk, 0), "issuer a");
    sk_X509_pop_free(sk, X509_free);

    /* The same bundle in PEM ("-----BEGIN PKCS7-----"). */
    PKCS7 *obj = NULL;
    const unsigned char *q = p7;
    obj = d2i_PKCS7(NULL, &q, (long)n);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PKCS7(bio, obj);
    char *pp = NULL;
    long pl = BIO_get_mem_data(bio, &pp);
    EXPECT_INT(parse(pp, (size_t)pl, &sk, &form, &err), 2);
    EXPECT_STR(form, "PEM PKCS#7");
    sk_X509_pop_free(sk, X509_free);
    BIO_free(bio);
    PKCS7_free(obj);
    OPENSSL_free(p7);

    /* A bundle without certificates says so. */
    n = p7_of(NULL, 0, &p7);
    EXPECT_INT(parse(p7, n, &sk, &form, &err), -1);
    EXPECT(strstr(err.msg, "without a certificate") != NULL);
    OPENSSL_free(p7);
    X509_free(a);
    X509_free(b);
}

TEST_CASE(many_certificates_are_capped)
{
    X509 *xs[MOAT_CLIENT_AIA_MAX_CERTS + 3];
    for (int i = 0; i < MOAT_CLIENT_AIA_MAX_CERTS + 3; i++) {
        xs[i] = make_cert("many", NULL);
    }
    unsigned char *p7 = NULL;
    size_t n = p7_of(xs, MOAT_CLIENT_AIA_MAX_CERTS + 3, &p7);
    struct moat_err err;
    STACK_OF(X509) *sk = NULL;
    const char *form = NULL;
    EXPECT_INT(parse(p7, n, &sk, &form, &err), MOAT_CLIENT_AIA_MAX_CERTS);
    sk_X509_pop_free(sk, X509_free);
    OPENSSL_free(p7);
    for (int i = 0; i < MOAT_CLIENT_AIA_MAX_CERTS + 3; i++) {
        X509_free(xs[i]);
    }
}

TEST_CASE(garbage_is_refused_with_words)
{
    struct moat_err err;
    STACK_OF(X509) *sk = NULL;
    const char *form = NULL;
    EXPECT_INT(parse("", 0, &sk, &form, &err), -1);
    EXPECT(strstr(err.msg, "empty") != NULL);
    EXPECT_INT(parse(NULL, 0, &sk, &form, &err), -1);
    const char html[] = "<html><body>404</body></html>";
    EXPECT_INT(parse(html, sizeof(html) - 1, &sk, &form, &err), -1);
    EXPECT(strstr(err.msg, "0x3c") != NULL);
    EXPECT_STR(form, "");
    const unsigned char seq[] = {0x30, 0x82, 0xff, 0xff, 0x01};
    EXPECT_INT(parse(seq, sizeof(seq), &sk, &form, &err), -1);
    const char badpem[] = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    EXPECT_INT(parse(badpem, sizeof(badpem) - 1, &sk, &form, &err), -1);
    /* Larger than anything real. */
    size_t big = 2 * 1024 * 1024;
    unsigned char *p = calloc(1, big);
    p[0] = 0x30;
    EXPECT_INT(parse(p, big, &sk, &form, &err), -1);
    EXPECT(strstr(err.msg, "larger") != NULL);
    free(p);
}

int main(void)
{
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY_keygen_init(kc);
    EVP_PKEY_CTX_set_group_name(kc, "P-256");
    EVP_PKEY_keygen(kc, &key);
    EVP_PKEY_CTX_free(kc);
    RUN(urls_are_the_ca_issuers_ones);
    RUN(unprintable_and_overlong_urls_are_skipped);
    RUN(der_pem_and_pkcs7_are_read);
    RUN(many_certificates_are_capped);
    RUN(garbage_is_refused_with_words);
    EVP_PKEY_free(key);
    TEST_MAIN_END();
}
