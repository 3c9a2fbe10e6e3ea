/*
 * aia.c: caIssuers URLs out of a certificate, and certificates out of what such a URL served.
 *
 * RFC 5280 §4.2.2.1 says the answer is one DER certificate (application/pkix-cert) or a
 * BER/DER "certs-only" CMS message (application/pkcs7-mime); some CAs serve PEM anyway, so PEM
 * is read too. The bytes come from a server nobody vouched for: every length is checked against
 * the input, and the input must be exactly one object (no trailing bytes after DER).
 */
#include "client/aia.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#define AIA_INPUT_MAX (1024 * 1024) /* far above any real answer; the fetch stops at 64 KiB */

static int printable_url(const unsigned char *p, int n)
{
    if (n <= 0 || n >= MOAT_CLIENT_AIA_URL_MAX) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

size_t moat_client_aia_urls(X509 *x, char (*urls)[MOAT_CLIENT_AIA_URL_MAX], size_t max)
{
    size_t n = 0;
    AUTHORITY_INFO_ACCESS *aia = x ? X509_get_ext_d2i(x, NID_info_access, NULL, NULL) : NULL;
    for (int i = 0; aia != NULL && i < sk_ACCESS_DESCRIPTION_num(aia) && n < max; i++) {
        const ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        if (ad == NULL || OBJ_obj2nid(ad->method) != NID_ad_ca_issuers || ad->location == NULL ||
            ad->location->type != GEN_URI) {
            continue;
        }
        const ASN1_IA5STRING *s = ad->location->d.uniformResourceIdentifier;
        if (s == NULL || !printable_url(s->data, s->length)) {
            continue;
        }
        memcpy(urls[n], s->data, (size_t)s->length);
        urls[n][s->length] = '\0';
        n++;
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    ERR_clear_error(); /* a malformed extension leaves decoding errors behind */
    return n;
}

/* Move up to MOAT_CLIENT_AIA_MAX_CERTS certificates of a PKCS#7 SignedData into out. */
static int take_pkcs7(PKCS7 *p7, STACK_OF(X509) * out)
{
    if (p7 == NULL || OBJ_obj2nid(p7->type) != NID_pkcs7_signed || p7->d.sign == NULL) {
        return 0;
    }
    STACK_OF(X509) *certs = p7->d.sign->cert;
    for (int i = 0;
         certs != NULL && i < sk_X509_num(certs) && sk_X509_num(out) < MOAT_CLIENT_AIA_MAX_CERTS;
         i++) {
        X509 *c = sk_X509_value(certs, i);
        if (c == NULL || X509_up_ref(c) != 1) {
            continue;
        }
        if (sk_X509_push(out, c) <= 0) {
            X509_free(c);
            return -1;
        }
    }
    return sk_X509_num(out);
}

static int read_der(const unsigned char *p, size_t n, STACK_OF(X509) * out, const char **form)
{
    const unsigned char *q = p;
    X509 *x = d2i_X509(NULL, &q, (long)n);
    if (x != NULL && q == p + n) {
        if (sk_X509_push(out, x) <= 0) {
            X509_free(x);
            return -1;
        }
        *form = "DER";
        return 1;
    }
    X509_free(x);
    q = p;
    PKCS7 *p7 = d2i_PKCS7(NULL, &q, (long)n);
    int got = 0;
    if (p7 != NULL && q == p + n) {
        got = take_pkcs7(p7, out);
        *form = "PKCS#7";
    }
    PKCS7_free(p7);
    return got;
}

static int read_pem(const unsigned char *p, size_t n, STACK_OF(X509) * out, const char **form)
{
    BIO *b = BIO_new_mem_buf(p, (int)n);
    if (b == NULL) {
        return -1;
    }
    while (sk_X509_num(out) < MOAT_CLIENT_AIA_MAX_CERTS) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (x == NULL) {
            break;
        }
        if (sk_X509_push(out, x) <= 0) {
            X509_free(x);
            BIO_free(b);
            return -1;
        }
    }
    BIO_free(b);
    if (sk_X509_num(out) > 0) {
        *form = "PEM";
        return sk_X509_num(out);
    }
    b = BIO_new_mem_buf(p, (int)n);
    if (b == NULL) {
        return -1;
    }
    PKCS7 *p7 = PEM_read_bio_PKCS7(b, NULL, NULL, NULL);
    BIO_free(b);
    int got = take_pkcs7(p7, out);
    if (p7 != NULL) {
        *form = "PEM PKCS#7";
    }
    PKCS7_free(p7);
    return got;
}

moat_rc moat_client_aia_parse(const unsigned char *p, size_t n, STACK_OF(X509) * *out,
                              const char **form, struct moat_err *err)
{
    *out = NULL;
    *form = "";
    if (p == NULL || n == 0) {
        MOAT_FAIL(err, MOAT_E_PEER, "the answer is empty");
    }
    if (n > AIA_INPUT_MAX) {
        MOAT_FAIL(err, MOAT_E_PEER, "the answer is larger than %d KiB", AIA_INPUT_MAX / 1024);
    }
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (sk == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    /* DER starts with a SEQUENCE (0x30); PEM is text with a BEGIN line somewhere. */
    int got = 0;
    int pem = memmem(p, n, "-----BEGIN ", 11) != NULL;
    if (p[0] == 0x30) {
        got = read_der(p, n, sk, form);
    }
    if (got == 0 && pem) {
        got = read_pem(p, n, sk, form);
    }
    ERR_clear_error(); /* failed decodings and the PEM reader's "no start line" at the end */
    if (got <= 0) {
        int empty_bundle = strcmp(*form, "PKCS#7") == 0 || strcmp(*form, "PEM PKCS#7") == 0;
        sk_X509_pop_free(sk, X509_free);
        *form = "";
        if (got < 0) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        if (empty_bundle) {
            MOAT_FAIL(err, MOAT_E_PEER, "the answer is a PKCS#7 bundle without a certificate");
        }
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the answer is not a certificate: neither DER, a PKCS#7 bundle with "
                  "certificates, nor PEM (it starts with byte 0x%02x)",
                  p[0]);
    }
    *out = sk;
    return MOAT_RC_OK;
}
