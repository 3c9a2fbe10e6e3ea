/*
 * chain.c: load a server's certificate file and check it the way clients will, before the
 * server starts.
 *
 * The checks look at the file as written (leaf first, then each issuer, RFC 8446 §4.4.2: "each
 * following certificate SHOULD directly certify the one immediately preceding it") rather than
 * running a full path build, so each failure can point at one certificate of the file and say
 * what to change in the file. Full path validation for clients lives in tls/verify.c.
 */
#include "pki/chain.h"

#include "pki/fsutil.h"
#include "pki/internal.h"
#include "pki/key.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* A system CA bundle is a few hundred KiB; leave room. */
#define TRUST_FILE_MAX (16 * 1024 * 1024)

void moat_chain_free(struct moat_chain *c)
{
    if (c == NULL) {
        return;
    }
    X509_free(c->leaf);
    sk_X509_pop_free(c->extra, X509_free);
    free(c->path);
    free(c);
}

static int is_cert_label(const char *label)
{
    return strcmp(label, "CERTIFICATE") == 0 || strcmp(label, "X509 CERTIFICATE") == 0 ||
           strcmp(label, "TRUSTED CERTIFICATE") == 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Append the certificates of every PEM block to `certs`. *n_key / *n_csr count blocks that
 * explain an empty result. */
static moat_rc read_pem_certs(const unsigned char *data, size_t len, const char *name,
                              STACK_OF(X509) * certs, int *n_key, int *n_csr, struct moat_err *err)
{
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot allocate a buffer for %s", name);
    }
    moat_rc rc = MOAT_RC_OK;
    for (int block = 1; rc.kind == MOAT_OK; block++) {
        char *label = NULL, *header = NULL;
        unsigned char *der = NULL;
        long dlen = 0;
        if (PEM_read_bio(bio, &label, &header, &der, &dlen) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
                ERR_clear_error();
                moat_err_where(err, "%s", name);
                rc = moat_err_set(err, MOAT_E_CERT, __FILE__, __LINE__,
                                  "%s is not valid PEM after certificate #%d (a block is cut "
                                  "short or its base64 is damaged): copy the file again in full",
                                  name, sk_X509_num(certs));
            }
            ERR_clear_error();
            break;
        }
        if (is_cert_label(label)) {
            const unsigned char *p = der;
            /* "TRUSTED CERTIFICATE" carries OpenSSL's trust settings after the certificate. */
            X509 *x = strcmp(label, "TRUSTED CERTIFICATE") == 0 ? d2i_X509_AUX(NULL, &p, dlen)
                                                                : d2i_X509(NULL, &p, dlen);
            if (x == NULL) {
                moat_err_where(err, "%s", name);
                rc = moat_err_ssl(err, MOAT_E_CERT, __FILE__, __LINE__,
                                  "certificate #%d in %s is damaged and cannot be decoded",
                                  sk_X509_num(certs) + 1, name);
            } else if (sk_X509_push(certs, x) <= 0) {
                X509_free(x);
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
            }
        } else if (ends_with(label, "PRIVATE KEY")) {
            (*n_key)++;
        } else if (ends_with(label, "CERTIFICATE REQUEST")) {
            (*n_csr)++;
        }
        OPENSSL_free(label);
        OPENSSL_free(header);
        OPENSSL_clear_free(der, dlen > 0 ? (size_t)dlen : 0);
    }
    BIO_free(bio);
    return rc;
}

static moat_rc read_certs(const void *data, size_t len, const char *name, STACK_OF(X509) * certs,
                          struct moat_err *err)
{
    int n_key = 0, n_csr = 0;
    if (len > INT_MAX) {
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_LIMIT, "%s is too big to be a certificate file", name);
    }
    if (memmem(data, len, "-----BEGIN ", 11) != NULL) {
        MOAT_TRY(read_pem_certs(data, len, name, certs, &n_key, &n_csr, err));
    } else if (len > 0) {
        const unsigned char *p = data;
        X509 *x = d2i_X509(NULL, &p, (long)len);
        if (x != NULL && p == (const unsigned char *)data + len && sk_X509_push(certs, x) > 0) {
            x = NULL;
        }
        X509_free(x);
        ERR_clear_error();
    }
    if (sk_X509_num(certs) > 0) {
        return MOAT_RC_OK;
    }
    moat_err_where(err, "%s", name);
    if (n_key > 0) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s holds a private key but no certificate: give the certificate file here "
                  "(were the certificate and key swapped?)",
                  name);
    }
    if (n_csr > 0) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s holds a certificate signing request (CSR), not a certificate: send the CSR "
                  "to your CA and use the certificate it returns",
                  name);
    }
    size_t i = 0;
    while (i < len && (((const char *)data)[i] == ' ' || ((const char *)data)[i] == '\n' ||
                       ((const char *)data)[i] == '\r' || ((const char *)data)[i] == '\t')) {
        i++;
    }
    if (i == len) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s is empty: it should hold PEM certificates (-----BEGIN CERTIFICATE-----)",
                  name);
    }
    MOAT_FAIL(err, MOAT_E_CERT,
              "%s holds no certificate: a certificate file is PEM (-----BEGIN CERTIFICATE-----) "
              "or one DER certificate",
              name);
}

moat_rc moat_chain_load_mem(const void *data, size_t len, const char *name, struct moat_chain **out,
                            struct moat_err *err)
{
    *out = NULL;
    if (name == NULL) {
        name = "<memory>";
    }
    STACK_OF(X509) *certs = sk_X509_new_null();
    struct moat_chain *c = calloc(1, sizeof(*c));
    char *path = strdup(name);
    if (certs == NULL || c == NULL || path == NULL) {
        sk_X509_free(certs);
        free(c);
        free(path);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory loading %s", name);
    }
    moat_rc rc = read_certs(data, len, name, certs, err);
    if (rc.kind != MOAT_OK) {
        sk_X509_pop_free(certs, X509_free);
        free(c);
        free(path);
        return rc;
    }
    c->leaf = sk_X509_shift(certs);
    c->extra = certs;
    c->path = path;
    *out = c;
    return MOAT_RC_OK;
}

static moat_rc chain_load_limit(const char *path, size_t max, struct moat_chain **out,
                                struct moat_err *err)
{
    unsigned char *data = NULL;
    size_t len = 0;
    *out = NULL;
    MOAT_TRY(moat_fs_read_file(path, max, &data, &len, err));
    moat_rc rc = moat_chain_load_mem(data, len, path, out, err);
    /* A combined file may hold the private key too. */
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

moat_rc moat_chain_load(const char *path, struct moat_chain **out, struct moat_err *err)
{
    return chain_load_limit(path, MOAT_KEY_FILE_MAX, out, err);
}

/* ---- checks ---- */

static const char *subject_str(const X509 *x, char *buf, size_t n)
{
    return moat_pki__name_str(X509_get_subject_name(x), buf, n);
}

static const char *issuer_str(const X509 *x, char *buf, size_t n)
{
    return moat_pki__name_str(X509_get_issuer_name(x), buf, n);
}

static const char *time_str(const ASN1_TIME *t, char *buf, size_t n)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(buf, n, "%Y-%m-%d %H:%M UTC", &tm) == 0) {
        snprintf(buf, n, "(unreadable date)");
    }
    return buf;
}

/* How far `t` is from `now`, for people: "3 days ago" / "in 2 days" / "less than a day ago".
 * Rounded to the nearest day (47 hours is "2 days"); under a day reads "less than a day". */
static const char *span_str(const ASN1_TIME *t, time_t now, char *buf, size_t n)
{
    int day = 0, sec = 0;
    ASN1_TIME *nt = ASN1_TIME_set(NULL, now);
    if (nt == NULL || ASN1_TIME_diff(&day, &sec, t, nt) != 1) {
        ASN1_TIME_free(nt);
        snprintf(buf, n, "at an unknown time");
        return buf;
    }
    ASN1_TIME_free(nt);
    /* day and sec share a sign: positive when t is in the past. */
    long long total = (long long)day * 86400 + sec;
    int past = total >= 0;
    long long abs_s = past ? total : -total;
    long long days = (abs_s + 43200) / 86400; /* nearest whole day */
    if (abs_s < 86400) {
        snprintf(buf, n, "less than a day %s", past ? "ago" : "from now");
    } else {
        snprintf(buf, n, "%s%lld day%s%s", past ? "" : "in ", days, days == 1 ? "" : "s",
                 past ? " ago" : "");
    }
    return buf;
}

struct checker {
    const struct moat_chain *c;
    X509 **all; /* leaf then extra, borrowed */
    int n;
    X509_STORE *trust;       /* borrowed, may be NULL */
    X509_STORE *anchor;      /* borrowed, may be NULL */
    const char *anchor_name; /* never NULL */
    time_t now;
    moat_chain_warn_cb warn; /* may be NULL */
    void *warn_arg;
    enum moat_verify_kind kind;
    struct moat_err *err;
};

/* The chain is served, but clients may refuse it: say so once, with both fixes. */
static void warn(struct checker *ck, enum moat_verify_kind kind, const char *fmt, ...)
    MOAT_PRINTF(3, 4);

static void warn(struct checker *ck, enum moat_verify_kind kind, const char *fmt, ...)
{
    if (ck->warn == NULL) {
        return;
    }
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ck->warn(ck->warn_arg, kind, msg);
}

#define CHECK_FAIL(ck, k, ...)                                                                     \
    do {                                                                                           \
        (ck)->kind = (k);                                                                          \
        moat_err_where((ck)->err, "%s", (ck)->c->path);                                            \
        return moat_err_set((ck)->err, MOAT_E_CERT, __FILE__, __LINE__, __VA_ARGS__);              \
    } while (0)

/* -1 expired, 1 not yet valid, 0 valid, 2 unreadable dates. */
static int validity(const X509 *x, time_t now)
{
    time_t t = now;
    int after = X509_cmp_time(X509_get0_notAfter(x), &t);
    int before = X509_cmp_time(X509_get0_notBefore(x), &t);
    if (after == 0 || before == 0) {
        return 2;
    }
    if (after < 0) {
        return -1;
    }
    if (before > 0) {
        return 1;
    }
    return 0;
}

static moat_rc check_key(struct checker *ck, EVP_PKEY *key)
{
    if (key == NULL) {
        return MOAT_RC_OK;
    }
    EVP_PKEY *pub = X509_get0_pubkey(ck->c->leaf);
    if (pub != NULL && EVP_PKEY_eq(pub, key) == 1) {
        return MOAT_RC_OK;
    }
    ERR_clear_error();
    /* The key may belong to a later certificate of the file: then the order is wrong, which
     * is a different fix from "wrong key" (an intermediate put before the leaf). */
    for (int i = 0; i < sk_X509_num(ck->c->extra); i++) {
        X509 *x = sk_X509_value(ck->c->extra, i);
        EVP_PKEY *xp = X509_get0_pubkey(x);
        if (xp != NULL && EVP_PKEY_eq(xp, key) == 1 && X509_check_ca(x) == 0) {
            char s1[160], s2[160];
            CHECK_FAIL(ck, MOAT_V_KEY_MISMATCH,
                       "%s is in the wrong order: the certificate of this key (%s) is number %d "
                       "in the file, after %s; put the server's own certificate first, then "
                       "its intermediates",
                       ck->c->path, subject_str(x, s1, sizeof(s1)), i + 2,
                       subject_str(ck->c->leaf, s2, sizeof(s2)));
        }
    }
    ERR_clear_error();
    char have[64], want[64];
    moat_key_describe(key, have, sizeof(have));
    moat_key_describe(pub, want, sizeof(want));
    CHECK_FAIL(ck, MOAT_V_KEY_MISMATCH,
               "%s does not match the private key (certificate key: %s, private key: %s): use the "
               "key the CSR was made from",
               ck->c->path, want, have);
}

static moat_rc check_leaf_dates(struct checker *ck)
{
    X509 *x = ck->c->leaf;
    char when[64], now_s[64], span[64];
    ASN1_TIME *nowt = ASN1_TIME_set(NULL, ck->now);
    time_str(nowt, now_s, sizeof(now_s));
    ASN1_TIME_free(nowt);
    switch (validity(x, ck->now)) {
    case 0:
        return MOAT_RC_OK;
    case -1:
        CHECK_FAIL(ck, MOAT_V_EXPIRED,
                   "%s expired on %s (%s): renew the certificate and install the new one",
                   ck->c->path, time_str(X509_get0_notAfter(x), when, sizeof(when)),
                   span_str(X509_get0_notAfter(x), ck->now, span, sizeof(span)));
    case 1:
        CHECK_FAIL(ck, MOAT_V_NOT_YET_VALID,
                   "%s is not valid until %s (%s; this machine's clock says %s): check "
                   "the clock, or wait",
                   ck->c->path, time_str(X509_get0_notBefore(x), when, sizeof(when)),
                   span_str(X509_get0_notBefore(x), ck->now, span, sizeof(span)), now_s);
    default:
        CHECK_FAIL(ck, MOAT_V_OTHER, "%s has unreadable validity dates", ck->c->path);
    }
}

static moat_rc check_leaf_use(struct checker *ck)
{
    X509 *x = ck->c->leaf;
    uint32_t flags = X509_get_extension_flags(x);
    if (flags & EXFLAG_INVALID) {
        CHECK_FAIL(ck, MOAT_V_OTHER,
                   "%s has malformed extensions that clients will reject: reissue it", ck->c->path);
    }
    if (flags & EXFLAG_CA) {
        CHECK_FAIL(ck, MOAT_V_NOT_CA,
                   "%s is a CA certificate (basicConstraints CA:TRUE), not a server certificate: "
                   "browsers refuse it; issue a server certificate from this CA instead (if it "
                   "was made with `openssl req -x509`, add -addext "
                   "\"basicConstraints=critical,CA:FALSE\")",
                   ck->c->path);
    }
    /* RFC 5280 §4.2.1.12: when EKU is present, the certificate is only for the listed uses. */
    if ((flags & EXFLAG_XKUSAGE) &&
        (X509_get_extended_key_usage(x) & (XKU_SSL_SERVER | XKU_ANYEKU)) == 0) {
        CHECK_FAIL(ck, MOAT_V_BAD_KEY_USAGE,
                   "%s is not for TLS servers: its extendedKeyUsage lacks serverAuth (it is a "
                   "client, e-mail or code-signing certificate?); ask the CA for a TLS server "
                   "certificate",
                   ck->c->path);
    }
    /* RFC 5280 §4.2.1.3: a TLS server signs (ECDHE, TLS 1.3) or, for TLS 1.2 RSA key
     * exchange, decrypts. */
    if ((flags & EXFLAG_KUSAGE) &&
        (X509_get_key_usage(x) & (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT)) == 0) {
        CHECK_FAIL(ck, MOAT_V_BAD_KEY_USAGE,
                   "%s has a keyUsage without digitalSignature, so it cannot sign TLS "
                   "handshakes: reissue it as a TLS server certificate",
                   ck->c->path);
    }
    return MOAT_RC_OK;
}

/* Did `issuer` sign `subject`? Names and signature only: whether the issuer may act as a CA is
 * a separate question, so that the message can say which of the two is wrong. */
static int issued_by(X509 *issuer, X509 *subject)
{
    EVP_PKEY *pk = X509_get0_pubkey(issuer);
    int ok = X509_NAME_cmp(X509_get_subject_name(issuer), X509_get_issuer_name(subject)) == 0 &&
             pk != NULL && X509_verify(subject, pk) == 1;
    ERR_clear_error();
    return ok;
}

/* RFC 5280 §4.2.1.9 and §4.2.1.3: an issuer needs CA:TRUE and, when keyUsage is present,
 * keyCertSign. */
static int may_issue(X509 *x)
{
    uint32_t flags = X509_get_extension_flags(x);
    return (flags & EXFLAG_CA) != 0 &&
           ((flags & EXFLAG_KUSAGE) == 0 || (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) != 0);
}

static int self_signed(X509 *x)
{
    int ok = X509_self_signed(x, 1) == 1;
    ERR_clear_error();
    return ok;
}

static moat_rc check_order(struct checker *ck)
{
    char s1[160], s2[160], s3[160];
    for (int i = 0; i + 1 < ck->n; i++) {
        X509 *cur = ck->all[i], *next = ck->all[i + 1];
        if (issued_by(next, cur)) {
            if (!may_issue(next)) {
                CHECK_FAIL(ck, MOAT_V_NOT_CA,
                           "certificate #%d in %s (%s) issued #%d but is not a CA certificate "
                           "(CA:TRUE with keyCertSign): clients will refuse the chain; get the "
                           "chain from your CA again",
                           i + 2, ck->c->path, subject_str(next, s1, sizeof(s1)), i + 1);
            }
            continue;
        }
        if (self_signed(cur)) {
            CHECK_FAIL(ck, MOAT_V_BAD_SIGNATURE,
                       "certificate #%d in %s (%s) is a root but more certificates follow it: "
                       "order the file leaf first, then each issuer; the root, if present, "
                       "comes last",
                       i + 1, ck->c->path, subject_str(cur, s1, sizeof(s1)));
        }
        for (int j = 0; j < ck->n; j++) {
            if (j != i && j != i + 1 && issued_by(ck->all[j], cur)) {
                CHECK_FAIL(ck, MOAT_V_BAD_SIGNATURE,
                           "the certificates in %s are in the wrong order: #%d (%s) was issued "
                           "by #%d (%s), which must come right after it; order the file leaf "
                           "first, then each issuer (the 'fullchain' file is in this order)",
                           ck->c->path, i + 1, subject_str(cur, s1, sizeof(s1)), j + 1,
                           subject_str(ck->all[j], s2, sizeof(s2)));
            }
        }
        if (X509_NAME_cmp(X509_get_subject_name(next), X509_get_issuer_name(cur)) == 0) {
            CHECK_FAIL(ck, MOAT_V_BAD_SIGNATURE,
                       "certificate #%d in %s (%s) has the name of #%d's issuer but did not sign "
                       "it (an old or different intermediate with the same name?): get the "
                       "current chain from your CA",
                       i + 2, ck->c->path, subject_str(next, s1, sizeof(s1)), i + 1);
        }
        CHECK_FAIL(ck, MOAT_V_MISSING_INTERMEDIATE,
                   "missing intermediate: %s was issued by %s, which is not in %s (the next "
                   "certificate, #%d, is %s); append the intermediate certificate(s) in order "
                   "(use the 'fullchain' file)",
                   subject_str(cur, s1, sizeof(s1)), issuer_str(cur, s2, sizeof(s2)), ck->c->path,
                   i + 2, subject_str(next, s3, sizeof(s3)));
    }
    return MOAT_RC_OK;
}

/* Does the trust store hold a self-signed root named like x? (A file may end with an old
 * cross-signed copy of a root the clients already trust; then its expiry does not matter.) */
static int trust_has_root_named(X509_STORE *trust, X509 *x)
{
    if (trust == NULL) {
        return 0;
    }
    int found = 0;
    STACK_OF(X509) *certs = X509_STORE_get1_all_certs(trust);
    for (int i = 0; certs != NULL && i < sk_X509_num(certs) && !found; i++) {
        X509 *r = sk_X509_value(certs, i);
        found = X509_NAME_cmp(X509_get_subject_name(r), X509_get_subject_name(x)) == 0 &&
                self_signed(r);
    }
    sk_X509_pop_free(certs, X509_free);
    return found;
}

static moat_rc check_extra_dates(struct checker *ck)
{
    char s1[160], when[64], span[64];
    for (int i = 1; i < ck->n; i++) {
        X509 *x = ck->all[i];
        int v = validity(x, ck->now);
        if (v == 0 || trust_has_root_named(ck->trust, x) || trust_has_root_named(ck->anchor, x)) {
            continue;
        }
        if (v == -1) {
            CHECK_FAIL(ck, MOAT_V_EXPIRED,
                       "certificate #%d in %s (%s) expired on %s (%s): get the current "
                       "intermediate from your CA (its 'fullchain' file of today)",
                       i + 1, ck->c->path, subject_str(x, s1, sizeof(s1)),
                       time_str(X509_get0_notAfter(x), when, sizeof(when)),
                       span_str(X509_get0_notAfter(x), ck->now, span, sizeof(span)));
        }
        if (v == 1) {
            CHECK_FAIL(ck, MOAT_V_NOT_YET_VALID,
                       "certificate #%d in %s (%s) is not valid until %s: check this machine's "
                       "clock",
                       i + 1, ck->c->path, subject_str(x, s1, sizeof(s1)),
                       time_str(X509_get0_notBefore(x), when, sizeof(when)));
        }
        CHECK_FAIL(ck, MOAT_V_OTHER, "certificate #%d in %s has unreadable validity dates", i + 1,
                   ck->c->path);
    }
    return MOAT_RC_OK;
}

/* The certificates of `store` named like x's issuer, hashed folders (the system's) included;
 * NULL when there are none. The caller frees the stack (sk_X509_pop_free). */
static STACK_OF(X509) * issuers_named(X509_STORE *store, X509 *x)
{
    STACK_OF(X509) *found = NULL;
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    if (sctx != NULL && X509_STORE_CTX_init(sctx, store, x, NULL) == 1) {
        found = X509_STORE_CTX_get1_certs(sctx, X509_get_issuer_name(x));
    }
    X509_STORE_CTX_free(sctx);
    ERR_clear_error();
    return found;
}

/* The first certificate of `named` that signed x (borrowed from `named`), or NULL. */
static X509 *signer_of(STACK_OF(X509) * named, X509 *x)
{
    for (int i = 0; named != NULL && i < sk_X509_num(named); i++) {
        if (issued_by(sk_X509_value(named, i), x)) {
            return sk_X509_value(named, i);
        }
    }
    return NULL;
}

/* Same certificate: same name and same key (a root re-encoded or re-signed is still it). */
static int same_cert(X509 *a, X509 *b)
{
    int same = X509_cmp(a, b) == 0 ||
               (X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) == 0 &&
                X509_get0_pubkey(a) != NULL && X509_get0_pubkey(b) != NULL &&
                EVP_PKEY_eq(X509_get0_pubkey(a), X509_get0_pubkey(b)) == 1);
    ERR_clear_error();
    return same;
}

/* "CN = A, CN = B" for the first few certificates of the anchor, for "it holds ..." */
static const char *anchor_holds(X509_STORE *anchor, char *buf, size_t n)
{
    STACK_OF(X509) *all = X509_STORE_get1_all_certs(anchor);
    size_t used = 0;
    buf[0] = '\0';
    int total = all != NULL ? sk_X509_num(all) : 0;
    for (int i = 0; i < total && i < 3; i++) {
        char nm[160];
        int w = snprintf(buf + used, n - used, "%s%s", i > 0 ? "; " : "",
                         subject_str(sk_X509_value(all, i), nm, sizeof(nm)));
        if (w < 0 || (size_t)w >= n - used) {
            break;
        }
        used += (size_t)w;
    }
    if (total > 3 && used + 16 < n) {
        snprintf(buf + used, n - used, " and %d more", total - 3);
    }
    if (total == 0) {
        snprintf(buf, n, "no certificate");
    }
    sk_X509_pop_free(all, X509_free);
    return buf;
}

/* With cert_ca / --ca: the operator said which CA the certificate comes from, so a chain that
 * does not lead there is certainly wrong, and each way it can fail gets its own words. */
static moat_rc check_anchor(struct checker *ck, X509 *last)
{
    char s1[160], s2[160], held[600], when[64];
    const char *aname = ck->anchor_name;
    /* The file itself carries the named CA (its root, or the intermediate that was named). */
    STACK_OF(X509) *all = X509_STORE_get1_all_certs(ck->anchor);
    int found = 0;
    for (int i = 1; i < ck->n && !found; i++) {
        for (int j = 0; all != NULL && j < sk_X509_num(all) && !found; j++) {
            found = same_cert(sk_X509_value(all, j), ck->all[i]);
        }
    }
    sk_X509_pop_free(all, X509_free);
    if (found) {
        return MOAT_RC_OK;
    }
    if (self_signed(last)) {
        CHECK_FAIL(ck, MOAT_V_UNKNOWN_ISSUER,
                   "wrong CA: %s ends with the root %s, which is not the CA in %s (that holds "
                   "%s): the certificate comes from another CA; name its root in cert_ca (or "
                   "--ca), or use a certificate issued by the CA in %s",
                   ck->c->path, subject_str(last, s1, sizeof(s1)), aname,
                   anchor_holds(ck->anchor, held, sizeof(held)), aname);
    }
    STACK_OF(X509) *named = issuers_named(ck->anchor, last);
    X509 *signer = signer_of(named, last);
    int n_named = named != NULL ? sk_X509_num(named) : 0;
    X509 *issuer = signer != NULL && X509_up_ref(signer) == 1 ? signer : NULL;
    sk_X509_pop_free(named, X509_free);
    if (issuer == NULL && n_named > 0) {
        CHECK_FAIL(ck, MOAT_V_BAD_SIGNATURE,
                   "bad signature: %s holds a CA named %s, the issuer of %s in %s, but that CA "
                   "did not sign it (another key under the same name: a CA made again, or the "
                   "wrong file); name the CA that really issued it in cert_ca (or --ca), or get "
                   "the certificate again from the CA in %s",
                   aname, issuer_str(last, s1, sizeof(s1)), subject_str(last, s2, sizeof(s2)),
                   ck->c->path, aname);
    }
    if (issuer == NULL) {
        CHECK_FAIL(ck, MOAT_V_UNKNOWN_ISSUER,
                   "wrong CA: %s in %s was issued by %s, which is neither in the file nor in %s "
                   "(that holds %s): either the certificate comes from another CA (name its "
                   "root in cert_ca or --ca), or an intermediate between them is missing "
                   "(append it to %s: use the CA's full-chain file)",
                   subject_str(last, s1, sizeof(s1)), ck->c->path, issuer_str(last, s2, sizeof(s2)),
                   aname, anchor_holds(ck->anchor, held, sizeof(held)), ck->c->path);
    }
    moat_rc rc = MOAT_RC_OK;
    subject_str(issuer, s1, sizeof(s1));
    if (!may_issue(issuer)) {
        ck->kind = MOAT_V_NOT_CA;
        moat_err_where(ck->err, "%s", ck->c->path);
        rc = moat_err_set(ck->err, MOAT_E_CERT, __FILE__, __LINE__,
                          "%s in %s signed %s but is not a CA certificate (CA:TRUE with "
                          "keyCertSign): clients will refuse the chain; name the real CA in "
                          "cert_ca (or --ca)",
                          s1, aname, ck->c->path);
    } else if (validity(issuer, ck->now) == -1) {
        ck->kind = MOAT_V_EXPIRED;
        moat_err_where(ck->err, "%s", ck->c->path);
        rc = moat_err_set(ck->err, MOAT_E_CERT, __FILE__, __LINE__,
                          "the CA %s in %s, which issued %s, expired on %s: clients will refuse "
                          "the chain; renew the CA and issue the certificate again",
                          s1, aname, ck->c->path,
                          time_str(X509_get0_notAfter(issuer), when, sizeof(when)));
    } else if (!self_signed(issuer)) {
        warn(ck, MOAT_V_MISSING_INTERMEDIATE,
             "%s: %s was issued by the intermediate %s, which is in %s but not in %s; served "
             "anyway, but clients that trust only the root will refuse it: append %s to %s "
             "(the CA's full-chain file has both)",
             ck->c->path, subject_str(last, s2, sizeof(s2)), s1, aname, ck->c->path, s1,
             ck->c->path);
    }
    X509_free(issuer);
    return rc;
}

static moat_rc check_complete(struct checker *ck)
{
    X509 *last = ck->all[ck->n - 1];
    if (ck->anchor != NULL) {
        return check_anchor(ck, last);
    }
    if (ck->trust == NULL || self_signed(last)) {
        return MOAT_RC_OK;
    }
    STACK_OF(X509) *named = issuers_named(ck->trust, last);
    int signed_ok = signer_of(named, last) != NULL;
    int n_named = named != NULL ? sk_X509_num(named) : 0;
    sk_X509_pop_free(named, X509_free);
    if (signed_ok) {
        return MOAT_RC_OK;
    }
    /* Whether the absent issuer is an intermediate the file should carry or a private root
     * the clients trust, only the operator knows: never a refusal (nginx, Caddy and HAProxy
     * serve such a file too), but a warning that names both cases and the fix for each. */
    char s1[160], s2[160];
    subject_str(last, s1, sizeof(s1));
    issuer_str(last, s2, sizeof(s2));
    if (n_named > 0) {
        warn(ck, MOAT_V_BAD_SIGNATURE,
             "%s: the last certificate (%s) names %s as its issuer; this machine trusts a CA of "
             "that name, but not the one that signed it (another key under the same name). "
             "Served anyway: clients that trust the CA this machine has will refuse it; if your "
             "clients trust the real issuer, name its root with `cert_ca ROOT.pem` in the site "
             "(moat serve: --ca ROOT.pem) to have the chain checked",
             ck->c->path, s1, s2);
    } else if (ck->n == 1) {
        warn(ck, MOAT_V_MISSING_INTERMEDIATE,
             "%s holds only the server certificate (%s), and its issuer %s is neither in the "
             "file nor known to this machine. Served anyway, because moat cannot tell which of "
             "two cases this is: (a) if %s is an intermediate CA (public CAs and most company "
             "CAs issue from one), clients will refuse the certificate: append the "
             "intermediate's certificate to %s, or use the CA's full-chain file instead; (b) if "
             "%s is your own root CA (openssl x509 -req -CA, mkcert, a small internal CA), "
             "nothing to do for clients that trust it; optionally name it with `cert_ca "
             "ROOT.pem` in the site (moat serve: --ca ROOT.pem) so that moat checks the chain "
             "and this warning goes away",
             ck->c->path, s1, s2, s2, ck->c->path, s2);
    } else {
        warn(ck, MOAT_V_UNKNOWN_ISSUER,
             "%s: the last certificate (#%d, %s) was issued by %s, normally a root, which this "
             "machine does not know. Served anyway: fine if your clients trust %s; name its "
             "certificate with `cert_ca ROOT.pem` in the site (moat serve: --ca ROOT.pem), or "
             "with `trust ROOT.pem`, to have moat check the chain",
             ck->c->path, ck->n, s1, s2, s2);
    }
    return MOAT_RC_OK;
}

moat_rc moat_chain_check_with(const struct moat_chain *c, const struct moat_chain_check_opts *o,
                              enum moat_verify_kind *kind, struct moat_err *err)
{
    struct checker ck = {.c = c,
                         .trust = o->trust,
                         .anchor = o->anchor,
                         .anchor_name = o->anchor_name != NULL ? o->anchor_name : "cert_ca",
                         .now = o->now,
                         .warn = o->warn,
                         .warn_arg = o->warn_arg,
                         .kind = MOAT_V_OK,
                         .err = err};
    EVP_PKEY *key = o->key;
    if (kind != NULL) {
        *kind = MOAT_V_OTHER;
    }
    if (c == NULL || c->leaf == NULL) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "no certificate to check");
    }
    int n_extra = c->extra ? sk_X509_num(c->extra) : 0;
    ck.n = 1 + n_extra;
    ck.all = calloc((size_t)ck.n, sizeof(*ck.all));
    if (ck.all == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory checking %s", c->path);
    }
    ck.all[0] = c->leaf;
    for (int i = 0; i < n_extra; i++) {
        ck.all[i + 1] = sk_X509_value(c->extra, i);
    }
    moat_rc rc = check_key(&ck, key);
    if (rc.kind == MOAT_OK) {
        rc = check_leaf_dates(&ck);
    }
    if (rc.kind == MOAT_OK) {
        rc = check_leaf_use(&ck);
    }
    if (rc.kind == MOAT_OK) {
        rc = check_order(&ck);
    }
    if (rc.kind == MOAT_OK) {
        rc = check_extra_dates(&ck);
    }
    if (rc.kind == MOAT_OK) {
        rc = check_complete(&ck);
    }
    free(ck.all);
    /* X509_get_extension_flags and X509_cmp_time push entries when a certificate is malformed;
     * the words are already in err, so leave no entries behind for the next caller. */
    ERR_clear_error();
    if (kind != NULL) {
        *kind = rc.kind == MOAT_OK ? MOAT_V_OK : ck.kind;
    }
    return rc;
}

moat_rc moat_chain_check_kind(const struct moat_chain *c, EVP_PKEY *key, X509_STORE *trust,
                              time_t now, enum moat_verify_kind *kind, struct moat_err *err)
{
    struct moat_chain_check_opts o = {.key = key, .trust = trust, .now = now};
    return moat_chain_check_with(c, &o, kind, err);
}

moat_rc moat_chain_check(const struct moat_chain *c, EVP_PKEY *key, X509_STORE *trust, time_t now,
                         struct moat_err *err)
{
    return moat_chain_check_kind(c, key, trust, now, NULL, err);
}

int moat_chain_covers_name(const struct moat_chain *c, const char *name)
{
    if (c == NULL || c->leaf == NULL || name == NULL) {
        return 0;
    }
    char buf[256];
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof(buf)) {
        return 0;
    }
    /* "[::1]" as written in URLs and Host headers. */
    if (name[0] == '[' && name[len - 1] == ']') {
        memcpy(buf, name + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        memcpy(buf, name, len + 1);
    }
    unsigned char ip[16];
    if (inet_pton(AF_INET, buf, ip) == 1 || inet_pton(AF_INET6, buf, ip) == 1) {
        int r = X509_check_ip_asc(c->leaf, buf, 0);
        ERR_clear_error();
        return r == 1;
    }
    size_t blen = strlen(buf);
    if (blen > 1 && buf[blen - 1] == '.') {
        buf[--blen] = '\0';
    }
    /* Browsers ignore the subject CN (RFC 6125 §6.4.4 allows it only without DNS SANs, and the
     * CA/B Forum requires SANs) and reject partial wildcards like "f*.example.com". */
    unsigned flags = X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;
    int r = X509_check_host(c->leaf, buf, blen, flags, NULL);
    ERR_clear_error();
    return r == 1;
}

moat_rc moat_trust_store_new(const char *const *extra_files, size_t n, int system_defaults,
                             X509_STORE **out, struct moat_err *err)
{
    *out = NULL;
    X509_STORE *st = X509_STORE_new();
    if (st == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot create a trust store");
    }
    /* A machine without a system bundle still gets a store; the checks then say which issuer
     * is missing, which is the better message. */
    if (system_defaults && X509_STORE_set_default_paths(st) != 1) {
        ERR_clear_error();
    }
    for (size_t i = 0; i < n; i++) {
        struct moat_chain *c = NULL;
        moat_rc rc = chain_load_limit(extra_files[i], TRUST_FILE_MAX, &c, err);
        if (rc.kind != MOAT_OK) {
            X509_STORE_free(st);
            moat_err_ctx(err, "while reading the CA file %s", extra_files[i]);
            return rc;
        }
        int ok = X509_STORE_add_cert(st, c->leaf) == 1;
        for (int j = 0; ok && j < sk_X509_num(c->extra); j++) {
            ok = X509_STORE_add_cert(st, sk_X509_value(c->extra, j)) == 1;
        }
        moat_chain_free(c);
        if (!ok) {
            X509_STORE_free(st);
            moat_err_where(err, "%s", extra_files[i]);
            MOAT_FAIL_SSL(err, MOAT_E_CERT, "cannot add the certificates of %s to the trust store",
                          extra_files[i]);
        }
    }
    *out = st;
    return MOAT_RC_OK;
}
