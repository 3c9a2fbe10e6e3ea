/*
 * ca.c: the local CA: create or open the root + intermediate, issue server certificates, and
 * keep zero-config certificates fresh.
 *
 * Certificates follow RFC 5280 and the CA/Browser Forum profile closely enough that browsers,
 * curl and OpenSSL accept them once the root is trusted: SANs carry the names (never the CN
 * alone), leaves have serverAuth and CA:FALSE, CAs have critical basicConstraints and keyUsage,
 * and every certificate carries key identifiers so chains build without name guessing.
 */
#include "pki/ca.h"

#include "pki/chain.h"
#include "pki/fsutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define ROOT_DAYS 3652         /* 10 years */
#define INTERMEDIATE_DAYS 1826 /* 5 years */
#define LEAF_DAYS_ZEROCONF 30
#define BACKDATE_SECONDS 3600 /* clients with a slightly slow clock still accept a new cert */
#define CN_MAX 64             /* RFC 5280 Appendix A: ub-common-name */
#define MAX_NAMES 100

static const char *const ca_files[4] = {"root.pem", "root.key", "intermediate.pem",
                                        "intermediate.key"};

void moat_ca_free(struct moat_ca *ca)
{
    if (ca == NULL) {
        return;
    }
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    X509_free(ca->root);
    free(ca->dir);
    free(ca);
}

static char *path_join(const char *dir, const char *file, const char *ext)
{
    size_t n = strlen(dir) + strlen(file) + strlen(ext) + 2;
    char *p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s%s", dir, file, ext);
    }
    return p;
}

/* ---- building certificates ---- */

/* A random positive 128-bit serial (RFC 5280 §4.1.2.2 allows up to 20 octets; the CA/B Forum
 * asks for at least 64 random bits). */
static int set_random_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn != NULL && BN_rand(bn, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

/* Ed25519/Ed448 sign without a separate digest; ECDSA uses the digest matching its curve. */
static const EVP_MD *digest_for(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448")) {
        return NULL;
    }
    if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_bits(k) > 384) {
        return EVP_sha512();
    }
    if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_bits(k) > 256) {
        return EVP_sha384();
    }
    return EVP_sha256();
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
    if (ext == NULL) {
        return 0;
    }
    int ok = X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* Cut a UTF-8 string to at most max bytes without splitting a character. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) {
        return n;
    }
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--;
    }
    return n;
}

static int set_subject(X509 *x, const char *cn)
{
    char buf[CN_MAX + 1];
    size_t n = utf8_cut(cn, CN_MAX);
    memcpy(buf, cn, n);
    buf[n] = '\0';
    X509_NAME *nm = X509_get_subject_name(x);
    return X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"moat", -1, -1,
                                      0) == 1 &&
           X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)buf, -1, -1,
                                      0) == 1;
}

static time_t asn1_to_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return timegm(&tm);
}

/*
 * A new certificate for `pub`, with subject CN `cn` (NULL: no subject), signed by `issuer_key`
 * (issuer = NULL: self-signed) and valid from now-1h to `not_after`. Extensions are added by the
 * caller before signing.
 */
static X509 *cert_new(const char *cn, EVP_PKEY *pub, X509 *issuer, time_t now, time_t not_after)
{
    X509 *x = X509_new();
    if (x == NULL) {
        return NULL;
    }
    int ok = X509_set_version(x, X509_VERSION_3) == 1 && set_random_serial(x) &&
             (cn == NULL || set_subject(x, cn)) &&
             X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
                                            : X509_get_subject_name(x)) == 1 &&
             ASN1_TIME_set(X509_getm_notBefore(x), now - BACKDATE_SECONDS) != NULL &&
             ASN1_TIME_set(X509_getm_notAfter(x), not_after) != NULL &&
             X509_set_pubkey(x, pub) == 1;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int sign(X509 *x, EVP_PKEY *key)
{
    return X509_sign(x, key, digest_for(key)) > 0;
}

static X509 *make_root(const char *cn, EVP_PKEY *key, time_t now)
{
    X509 *x = cert_new(cn, key, NULL, now, now + (time_t)ROOT_DAYS * 86400);
    /* pathlen 1: the root may sign one level of intermediates, which sign only leaves. */
    if (x == NULL || !add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:1") ||
        !add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, NULL, NID_subject_key_identifier, "hash") || !sign(x, key)) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static X509 *make_intermediate(const char *cn, EVP_PKEY *key, X509 *root, EVP_PKEY *root_key,
                               time_t now)
{
    time_t until = now + (time_t)INTERMEDIATE_DAYS * 86400;
    time_t root_until = asn1_to_time(X509_get0_notAfter(root));
    if (root_until != 0 && root_until < until) {
        until = root_until;
    }
    X509 *x = cert_new(cn, key, root, now, until);
    if (x == NULL || !add_ext(x, root, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !add_ext(x, root, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, root, NID_subject_key_identifier, "hash") ||
        !add_ext(x, root, NID_authority_key_identifier, "keyid:always") || !sign(x, root_key)) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ---- names ---- */

/* An IP literal, with the brackets of "[v6]" removed into buf; 1 when it is one. */
static int ip_literal(const char *name, char *buf, size_t n)
{
    size_t len = strlen(name);
    if (len >= n) {
        return 0;
    }
    if (len >= 2 && name[0] == '[' && name[len - 1] == ']') {
        memcpy(buf, name + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        memcpy(buf, name, len + 1);
    }
    unsigned char ip[16];
    return inet_pton(AF_INET, buf, ip) == 1 || inet_pton(AF_INET6, buf, ip) == 1;
}

/* RFC 1035 §2.3.1 host names (letters, digits, hyphens; labels 1-63, total <= 253), with an
 * optional "*." leftmost label (RFC 6125 §6.4.3) that is not the only label above it. The last
 * label may not be all digits (RFC 3696 §2), so "1.2.3.4.5" is not taken for a host name. */
static int valid_dns_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 253) {
        return 0;
    }
    const char *p = name;
    if (strncmp(p, "*.", 2) == 0) {
        p += 2;
        if (strchr(p, '.') == NULL) {
            return 0; /* "*.com" would cover a whole top-level domain */
        }
    }
    size_t label = 0;
    int digits_only = 1;
    for (; *p != '\0'; p++) {
        char ch = *p;
        if (ch == '.') {
            if (label == 0 || p[-1] == '-') {
                return 0;
            }
            label = 0;
            digits_only = 1;
            continue;
        }
        int digit = ch >= '0' && ch <= '9';
        int ok = digit || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch == '-' && label > 0);
        if (!ok || ++label > 63) {
            return 0;
        }
        digits_only = digits_only && digit;
    }
    return label > 0 && p[-1] != '-' && !digits_only;
}

static GENERAL_NAME *general_name_for(const char *name)
{
    char buf[INET6_ADDRSTRLEN + 2];
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (gn == NULL) {
        return NULL;
    }
    if (ip_literal(name, buf, sizeof(buf))) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(buf);
        if (ip == NULL) {
            GENERAL_NAME_free(gn);
            return NULL;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
        return gn;
    }
    ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
    if (dns == NULL || ASN1_STRING_set(dns, name, -1) != 1) {
        ASN1_IA5STRING_free(dns);
        GENERAL_NAME_free(gn);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
    return gn;
}

static moat_rc check_names(const char *const *names, size_t n, struct moat_err *err)
{
    if (n == 0 || n > MAX_NAMES) {
        MOAT_FAIL(err, MOAT_E_USAGE, "a certificate needs 1 to %d names, not %zu", MAX_NAMES, n);
    }
    for (size_t i = 0; i < n; i++) {
        char buf[INET6_ADDRSTRLEN + 2];
        if (names[i] == NULL) {
            MOAT_FAIL(err, MOAT_E_USAGE, "name #%zu is missing", i + 1);
        }
        if (!ip_literal(names[i], buf, sizeof(buf)) && !valid_dns_name(names[i])) {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "\"%.100s\" is neither an IP address nor a valid DNS name (letters, digits "
                      "and hyphens, dot-separated, optionally starting with \"*.\")",
                      names[i]);
        }
    }
    return MOAT_RC_OK;
}

static int add_san(X509 *x, const char *const *names, size_t n)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int ok = gens != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        GENERAL_NAME *gn = general_name_for(names[i]);
        ok = gn != NULL && sk_GENERAL_NAME_push(gens, gn) > 0;
        if (!ok) {
            GENERAL_NAME_free(gn);
        }
    }
    /* RFC 5280 §4.2.1.6: critical only when the subject is empty; ours has a CN or O. */
    ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    return ok;
}

moat_rc moat_ca_issue_server(struct moat_ca *ca, const char *const *names, size_t n, int days,
                             enum moat_key_type kt, X509 **cert_out, EVP_PKEY **key_out,
                             struct moat_err *err)
{
    *cert_out = NULL;
    *key_out = NULL;
    if (days < 1 || days > MOAT_CA_MAX_LEAF_DAYS) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "a server certificate may be valid 1 to %d days (Apple devices refuse longer), "
                  "not %d",
                  MOAT_CA_MAX_LEAF_DAYS, days);
    }
    MOAT_TRY(check_names(names, n, err));

    EVP_PKEY *key = NULL;
    MOAT_TRY(moat_key_new(kt, &key, err));

    time_t now = time(NULL);
    time_t until = now + (time_t)days * 86400;
    time_t ca_until = asn1_to_time(X509_get0_notAfter(ca->cert));
    if (ca_until != 0 && ca_until < until) {
        until = ca_until; /* a leaf must not outlive its issuer (RFC 5280 §6.1.3 checks each) */
    }
    const char *cn = strlen(names[0]) <= CN_MAX ? names[0] : NULL;
    const char *ku = EVP_PKEY_is_a(key, "RSA") ? "critical,digitalSignature,keyEncipherment"
                                               : "critical,digitalSignature";
    X509 *x = cert_new(cn, key, ca->cert, now, until);
    int ok = x != NULL && add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, ca->cert, NID_key_usage, ku) &&
             add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth") &&
             add_ext(x, ca->cert, NID_subject_key_identifier, "hash") &&
             add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always") &&
             add_san(x, names, n) && sign(x, ca->key);
    if (!ok) {
        X509_free(x);
        EVP_PKEY_free(key);
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot build the certificate for %s", names[0]);
    }
    *cert_out = x;
    *key_out = key;
    return MOAT_RC_OK;
}

/* ---- opening and creating ---- */

static void default_name(char *buf, size_t n)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "localhost");
    }
    host[sizeof(host) - 1] = '\0';
    char pwbuf[1024];
    struct passwd pw, *res = NULL;
    const char *user = NULL;
    if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res != NULL) {
        user = res->pw_name;
    }
    if (user == NULL) {
        user = getenv("USER");
    }
    if (user != NULL) {
        snprintf(buf, n, "moat local CA %.100s@%.100s", user, host);
    } else {
        snprintf(buf, n, "moat local CA uid%u@%.100s", (unsigned)geteuid(), host);
    }
}

static moat_rc pem_of_cert(X509 *x, X509 *x2, char **out, size_t *len, struct moat_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1 ||
        (x2 != NULL && PEM_write_bio_X509(bio, x2) != 1)) {
        BIO_free(bio);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot encode a certificate");
    }
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    *out = malloc((size_t)n);
    if (*out == NULL) {
        BIO_free(bio);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    memcpy(*out, p, (size_t)n);
    *len = (size_t)n;
    BIO_free(bio);
    return MOAT_RC_OK;
}

static moat_rc write_cert(const char *path, X509 *x, X509 *x2, int replace, struct moat_err *err)
{
    char *pem = NULL;
    size_t len = 0;
    MOAT_TRY(pem_of_cert(x, x2, &pem, &len, err));
    moat_rc rc = replace ? moat_fs_write_atomic(path, pem, len, 0644, err)
                         : moat_fs_write_new(path, pem, len, 0644, err);
    free(pem);
    return rc;
}

/* Make the four files; on failure remove the ones written so the folder is empty again. */
static moat_rc create_ca(struct moat_ca *ca, char *const paths[4], const char *name,
                         struct moat_err *err)
{
    char cn[256], icn[256];
    if (name == NULL) {
        default_name(cn, sizeof(cn));
    } else {
        snprintf(cn, sizeof(cn), "%s", name);
    }
    /* Keep " intermediate" visible when the root's name is long. */
    snprintf(icn, sizeof(icn), "%.*s intermediate", (int)utf8_cut(cn, CN_MAX - 13), cn);

    time_t now = time(NULL);
    EVP_PKEY *root_key = NULL;
    MOAT_TRY(moat_key_new(MOAT_KEY_EC_P256, &root_key, err));
    moat_rc rc = moat_key_new(MOAT_KEY_EC_P256, &ca->key, err);
    if (rc.kind != MOAT_OK) {
        EVP_PKEY_free(root_key);
        return rc;
    }
    ca->root = make_root(cn, root_key, now);
    ca->cert = ca->root ? make_intermediate(icn, ca->key, ca->root, root_key, now) : NULL;
    if (ca->cert == NULL) {
        EVP_PKEY_free(root_key);
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot build the local CA certificates");
    }
    int written = 0;
    rc = moat_key_save(paths[1], root_key, 0, err);
    written += rc.kind == MOAT_OK;
    if (rc.kind == MOAT_OK) {
        rc = write_cert(paths[0], ca->root, NULL, 0, err);
        written += rc.kind == MOAT_OK;
    }
    if (rc.kind == MOAT_OK) {
        rc = moat_key_save(paths[3], ca->key, 0, err);
        written += rc.kind == MOAT_OK;
    }
    if (rc.kind == MOAT_OK) {
        rc = write_cert(paths[2], ca->cert, NULL, 0, err);
        written += rc.kind == MOAT_OK;
    }
    EVP_PKEY_free(root_key);
    if (rc.kind != MOAT_OK) {
        /* Written in the order root.key, root.pem, intermediate.key, intermediate.pem. */
        static const int order[4] = {1, 0, 3, 2};
        for (int i = 0; i < written; i++) {
            unlink(paths[order[i]]);
        }
        moat_err_ctx(err, "while creating the local CA in %s", ca->dir);
    }
    return rc;
}

static moat_rc load_cert(const char *path, X509 **out, struct moat_err *err)
{
    struct moat_chain *c = NULL;
    MOAT_TRY(moat_chain_load(path, &c, err));
    *out = c->leaf;
    c->leaf = NULL;
    moat_chain_free(c);
    return MOAT_RC_OK;
}

static int is_ca_cert(X509 *x)
{
    return (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
}

static int signed_by(X509 *subject, X509 *issuer)
{
    EVP_PKEY *pk = X509_get0_pubkey(issuer);
    int ok = X509_check_issued(issuer, subject) == X509_V_OK && pk != NULL &&
             X509_verify(subject, pk) == 1;
    ERR_clear_error();
    return ok;
}

static moat_rc check_not_expired(X509 *x, const char *path, const char *dir, time_t now,
                                 struct moat_err *err)
{
    if (X509_cmp_time(X509_get0_notAfter(x), &now) > 0) {
        return MOAT_RC_OK;
    }
    moat_err_where(err, "%s", path);
    MOAT_FAIL(err, MOAT_E_CONFIG,
              "%s has expired: move the folder %s away so moat makes a new local CA (clients "
              "will then need to trust the new root)",
              path, dir);
}

static moat_rc open_ca(struct moat_ca *ca, char *const paths[4], int have_root_key,
                       struct moat_err *err)
{
    MOAT_TRY_CTX(load_cert(paths[0], &ca->root, err), err, "while opening the local CA in %s",
                 ca->dir);
    MOAT_TRY_CTX(load_cert(paths[2], &ca->cert, err), err, "while opening the local CA in %s",
                 ca->dir);
    MOAT_TRY_CTX(moat_key_load(paths[3], &ca->key, err), err, "while opening the local CA in %s",
                 ca->dir);
    const char *fix = "the files do not belong together; move the folder away so moat makes a "
                      "new local CA";
    if (!is_ca_cert(ca->root) || X509_self_signed(ca->root, 1) != 1) {
        ERR_clear_error();
        moat_err_where(err, "%s", paths[0]);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s is not a self-signed CA certificate: %s", paths[0], fix);
    }
    if (!is_ca_cert(ca->cert) || !signed_by(ca->cert, ca->root)) {
        moat_err_where(err, "%s", paths[2]);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s is not a CA certificate signed by %s: %s", paths[2],
                  paths[0], fix);
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(ca->cert), ca->key) != 1) {
        ERR_clear_error();
        moat_err_where(err, "%s", paths[3]);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s does not match %s: %s", paths[3], paths[2], fix);
    }
    if (have_root_key) {
        EVP_PKEY *rk = NULL;
        MOAT_TRY_CTX(moat_key_load(paths[1], &rk, err), err, "while opening the local CA in %s",
                     ca->dir);
        int same = EVP_PKEY_eq(X509_get0_pubkey(ca->root), rk) == 1;
        EVP_PKEY_free(rk);
        ERR_clear_error();
        if (!same) {
            moat_err_where(err, "%s", paths[1]);
            MOAT_FAIL(err, MOAT_E_CONFIG, "%s does not match %s: %s", paths[1], paths[0], fix);
        }
    }
    time_t now = time(NULL);
    MOAT_TRY(check_not_expired(ca->root, paths[0], ca->dir, now, err));
    MOAT_TRY(check_not_expired(ca->cert, paths[2], ca->dir, now, err));
    return MOAT_RC_OK;
}

/* 1 exists, 0 missing, -1 cannot tell (errno set). */
static int exists(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        return 1;
    }
    return errno == ENOENT ? 0 : -1;
}

static moat_rc open_or_create_locked(struct moat_ca *ca, char *const paths[4], const char *name,
                                     int *created, struct moat_err *err)
{
    int have[4], count = 0;
    for (int i = 0; i < 4; i++) {
        have[i] = exists(paths[i]);
        if (have[i] < 0) {
            moat_err_where(err, "%s", paths[i]);
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot look at %s", paths[i]);
        }
        count += have[i];
    }
    if (count == 0) {
        MOAT_TRY(create_ca(ca, paths, name, err));
        *created = 1;
        return MOAT_RC_OK;
    }
    /* root.key (index 1) may be offline; the other three are needed to issue. */
    if (have[0] && have[2] && have[3]) {
        return open_ca(ca, paths, have[1], err);
    }
    char present[128] = "", missing[128] = "";
    for (int i = 0; i < 4; i++) {
        char *dst = have[i] ? present : missing;
        size_t used = strlen(dst);
        snprintf(dst + used, sizeof(present) - used, "%s%s", used ? ", " : "", ca_files[i]);
    }
    moat_err_where(err, "%s", ca->dir);
    MOAT_FAIL(err, MOAT_E_CONFIG,
              "the local CA in %s is incomplete (has %s; missing %s): restore the missing files, "
              "or move the folder away so moat makes a new CA",
              ca->dir, present, missing);
}

moat_rc moat_ca_open_or_create(const char *dir, const char *name, struct moat_ca **out,
                               int *created, struct moat_err *err)
{
    int made = 0;
    *out = NULL;
    if (created != NULL) {
        *created = 0;
    }
    MOAT_TRY(moat_fs_mkdir_p(dir, 0700, err));
    struct moat_ca *ca = calloc(1, sizeof(*ca));
    char *paths[4] = {NULL, NULL, NULL, NULL};
    int ok = ca != NULL && (ca->dir = strdup(dir)) != NULL;
    for (int i = 0; ok && i < 4; i++) {
        ok = (paths[i] = path_join(dir, ca_files[i], "")) != NULL;
    }
    moat_rc rc =
        ok ? MOAT_RC_OK : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    int lock = -1;
    if (rc.kind == MOAT_OK) {
        rc = moat_fs_lock(dir, &lock, err);
    }
    if (rc.kind == MOAT_OK) {
        rc = open_or_create_locked(ca, paths, name, &made, err);
    }
    moat_fs_unlock(lock);
    for (int i = 0; i < 4; i++) {
        free(paths[i]);
    }
    if (rc.kind != MOAT_OK) {
        moat_ca_free(ca);
        return rc;
    }
    if (created != NULL) {
        *created = made;
    }
    *out = ca;
    return MOAT_RC_OK;
}

/* ---- zero-config leaves ---- */

static int valid_label(const char *label)
{
    size_t n = strlen(label);
    if (n == 0 || n > 64 || label[0] == '.') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = label[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-';
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* Can the files at these paths be served as they are? Any doubt means "issue a new one". */
static int reusable(struct moat_ca *ca, const char *cert_path, const char *key_path,
                    const char *const *names, size_t n, time_t now)
{
    struct moat_chain *c = NULL;
    EVP_PKEY *k = NULL;
    int ok = moat_ok(moat_chain_load(cert_path, &c, NULL)) &&
             moat_ok(moat_key_load(key_path, &k, NULL)) &&
             EVP_PKEY_eq(X509_get0_pubkey(c->leaf), k) == 1 && signed_by(c->leaf, ca->cert) &&
             sk_X509_num(c->extra) >= 1 && X509_cmp(sk_X509_value(c->extra, 0), ca->cert) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok = moat_chain_covers_name(c, names[i]);
    }
    if (ok) {
        time_t nb = asn1_to_time(X509_get0_notBefore(c->leaf));
        time_t na = asn1_to_time(X509_get0_notAfter(c->leaf));
        /* Renew with a third of the lifetime left, as ACME clients do. */
        ok = nb != 0 && na > nb && nb <= now && (na - now) > (na - nb) / 3;
    }
    moat_chain_free(c);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

static moat_rc issue_and_write(struct moat_ca *ca, const char *cert_path, const char *key_path,
                               const char *const *names, size_t n, struct moat_err *err)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    MOAT_TRY(moat_ca_issue_server(ca, names, n, LEAF_DAYS_ZEROCONF, MOAT_KEY_EC_P256, &x, &k, err));
    /* Key first: a crash between the two writes leaves a mismatched pair, which the next start
     * sees as not reusable and replaces. */
    moat_rc rc = moat_key_save(key_path, k, 1, err);
    if (rc.kind == MOAT_OK) {
        rc = write_cert(cert_path, x, ca->cert, 1, err);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

moat_rc moat_ca_ensure_leaf(struct moat_ca *ca, const char *certs_dir, const char *label,
                            const char *const *names, size_t n, char **cert_path, char **key_path,
                            int *issued, struct moat_err *err)
{
    *cert_path = NULL;
    *key_path = NULL;
    if (issued != NULL) {
        *issued = 0;
    }
    if (label == NULL || !valid_label(label)) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "certificate label \"%.64s\" must be 1-64 letters, digits, '.', '_' or '-' "
                  "and not start with '.'",
                  label ? label : "");
    }
    MOAT_TRY(check_names(names, n, err));
    MOAT_TRY(moat_fs_mkdir_p(certs_dir, 0700, err));
    char *cp = path_join(certs_dir, label, ".pem");
    char *kp = path_join(certs_dir, label, ".key");
    if (cp == NULL || kp == NULL) {
        free(cp);
        free(kp);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    int lock = -1;
    moat_rc rc = moat_fs_lock(certs_dir, &lock, err);
    int made = 0;
    if (rc.kind == MOAT_OK && !reusable(ca, cp, kp, names, n, time(NULL))) {
        rc = issue_and_write(ca, cp, kp, names, n, err);
        made = 1;
    }
    moat_fs_unlock(lock);
    if (rc.kind != MOAT_OK) {
        free(cp);
        free(kp);
        moat_err_ctx(err, "while making the certificate for %s", names[0]);
        return rc;
    }
    if (issued != NULL) {
        *issued = made;
    }
    *cert_path = cp;
    *key_path = kp;
    return MOAT_RC_OK;
}
