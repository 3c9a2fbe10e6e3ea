/*
 * ca.c: certificate authorities: create or open a root + intermediate, renew the intermediate,
 * sign leaves (after names, days, policy and name constraints are checked), make self-signed
 * certificates, and keep zero-config certificates fresh.
 *
 * Certificates follow RFC 5280 and the CA/Browser Forum profile closely enough that browsers,
 * curl and OpenSSL accept them once the root is trusted: SANs carry the names (never the CN
 * alone), leaves have serverAuth or clientAuth and CA:FALSE, CAs have critical basicConstraints
 * and keyUsage, and every certificate carries key identifiers so chains build without name
 * guessing.
 */
#include "pki/ca.h"

#include "pki/chain.h"
#include "pki/crlurl.h"
#include "pki/fsutil.h"
#include "pki/names.h"

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
#define CN_MAX 64 /* RFC 5280 Appendix A: ub-common-name */
#define DAY 86400

enum { F_ROOT_PEM = 0, F_ROOT_KEY, F_INT_PEM, F_INT_KEY, F_COUNT };
static const char *const ca_files[F_COUNT] = {"root.pem", "root.key", "intermediate.pem",
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
    moat_policy_free(ca->policy);
    free(ca->crl_url);
    free(ca->root_crl_url);
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

/* Subject "O=moat, CN=cn" for moat's own CAs (org 1), "CN=cn" otherwise. */
static int set_subject(X509 *x, const char *cn, int org)
{
    char buf[CN_MAX + 1];
    size_t n = utf8_cut(cn, CN_MAX);
    memcpy(buf, cn, n);
    buf[n] = '\0';
    X509_NAME *nm = X509_get_subject_name(x);
    return (!org || X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8,
                                               (const unsigned char *)"moat", -1, -1, 0) == 1) &&
           X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)buf, -1, -1,
                                      0) == 1;
}

time_t moat_ca_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        return 0;
    }
    return timegm(&tm);
}

/*
 * A new certificate for `pub`, with subject CN `cn` (NULL: an empty subject), issued by
 * `issuer` (NULL: self-signed) and valid from not_before to not_after. Extensions are added by
 * the caller before signing.
 */
static X509 *cert_new(const char *cn, int org, EVP_PKEY *pub, X509 *issuer, time_t not_before,
                      time_t not_after)
{
    X509 *x = X509_new();
    if (x == NULL) {
        return NULL;
    }
    int ok = X509_set_version(x, X509_VERSION_3) == 1 && set_random_serial(x) &&
             (cn == NULL || set_subject(x, cn, org)) &&
             X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
                                            : X509_get_subject_name(x)) == 1 &&
             ASN1_TIME_set(X509_getm_notBefore(x), not_before) != NULL &&
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

/* RFC 5280 §4.2.1.10: "Conforming CAs MUST mark this extension as critical". */
static int add_constraints(X509 *x, NAME_CONSTRAINTS *nc)
{
    return nc == NULL || X509_add1_ext_i2d(x, NID_name_constraints, nc, 1, X509V3_ADD_DEFAULT) == 1;
}

static X509 *make_root(const char *cn, int org, EVP_PKEY *key, NAME_CONSTRAINTS *nc, time_t now)
{
    X509 *x =
        cert_new(cn, org, key, NULL, now - MOAT_CA_BACKDATE_SECONDS, now + (time_t)ROOT_DAYS * DAY);
    /* pathlen 1: the root may sign one level of intermediates, which sign only leaves. */
    if (x == NULL || !add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:1") ||
        !add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, NULL, NID_subject_key_identifier, "hash") || !add_constraints(x, nc) ||
        !sign(x, key)) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* `crl_url`: the root's CRL, the list that can revoke this intermediate (NULL: none). */
static X509 *make_intermediate(const char *cn, int org, EVP_PKEY *key, NAME_CONSTRAINTS *nc,
                               X509 *root, EVP_PKEY *root_key, const char *crl_url, time_t now)
{
    time_t until = now + (time_t)INTERMEDIATE_DAYS * DAY;
    time_t root_until = moat_ca_asn1_time(X509_get0_notAfter(root));
    if (root_until != 0 && root_until < until) {
        until = root_until;
    }
    X509 *x = cert_new(cn, org, key, root, now - MOAT_CA_BACKDATE_SECONDS, until);
    if (x == NULL || !add_ext(x, root, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !add_ext(x, root, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, root, NID_subject_key_identifier, "hash") ||
        !add_ext(x, root, NID_authority_key_identifier, "keyid:always") ||
        !add_constraints(x, nc) || (crl_url != NULL && !moat_crlurl_add_ext(x, crl_url)) ||
        !sign(x, root_key)) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ---- leaves ---- */

moat_rc moat_ca_leaf_validity(time_t now, int days, time_t issuer_not_after, time_t *not_before,
                              time_t *not_after, int *cut, struct moat_err *err)
{
    if (cut != NULL) {
        *cut = 0;
    }
    if (days < 1) {
        MOAT_FAIL(err, MOAT_E_USAGE, "a certificate must be valid at least 1 day, not %d", days);
    }
    if (issuer_not_after != 0 && issuer_not_after - now < DAY) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the issuing CA %s: renew it first (moat ca intermediate)",
                  issuer_not_after <= now ? "has expired" : "expires within a day");
    }
    *not_before = now - MOAT_CA_BACKDATE_SECONDS;
    *not_after = now + (time_t)days * DAY;
    if (issuer_not_after != 0 && issuer_not_after < *not_after) {
        *not_after = issuer_not_after;
        if (cut != NULL) {
            *cut = 1;
        }
    }
    return MOAT_RC_OK;
}

static int add_san(X509 *x, const char *const *names, size_t n, int subject_empty)
{
    GENERAL_NAMES *gens = moat_names_to_general(names, n);
    /* RFC 5280 §4.2.1.6: critical exactly when the subject is empty. */
    int ok = gens != NULL && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, subject_empty,
                                               X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    return ok;
}

/* The leaf profile shared by CA-signed and self-signed certificates. */
static int add_leaf_exts(X509 *x, X509 *issuer, const struct moat_ca_leaf *l, EVP_PKEY *pub,
                         int subject_empty)
{
    /* RFC 5280 §4.2.1.3: TLS 1.2 RSA key exchange encrypts to the server's key, so an RSA
     * server key also needs keyEncipherment; everything else only signs. */
    int rsa_server = !l->client && EVP_PKEY_is_a(pub, "RSA");
    const char *ku =
        rsa_server ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature";
    return add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
           add_ext(x, issuer, NID_key_usage, ku) &&
           add_ext(x, issuer, NID_ext_key_usage, l->client ? "clientAuth" : "serverAuth") &&
           add_ext(x, issuer, NID_subject_key_identifier, "hash") &&
           add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") &&
           add_san(x, l->names, l->n, subject_empty);
}

static moat_rc check_leaf(const struct moat_ca_leaf *l, struct moat_err *err)
{
    int max = l->client ? MOAT_CA_MAX_CLIENT_DAYS : MOAT_CA_MAX_LEAF_DAYS;
    if (l->days < 1 || l->days > max) {
        if (l->client) {
            MOAT_FAIL(err, MOAT_E_USAGE, "a client certificate may be valid 1 to %d days, not %d",
                      max, l->days);
        }
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "a server certificate may be valid 1 to %d days (Apple devices refuse longer), "
                  "not %d",
                  max, l->days);
    }
    return moat_names_check(l->names, l->n, l->client, err);
}

moat_rc moat_ca_sign(struct moat_ca *ca, const struct moat_ca_leaf *l, time_t now, X509 **out,
                     struct moat_err *err)
{
    *out = NULL;
    if (now == 0) {
        now = time(NULL);
    }
    if (l->pub == NULL) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "no key to certify");
    }
    MOAT_TRY(check_leaf(l, err));
    char policy_path[PATH_MAX];
    snprintf(policy_path, sizeof(policy_path), "%s/%s", ca->dir ? ca->dir : ".", MOAT_POLICY_FILE);
    MOAT_TRY(moat_policy_check(ca->policy, policy_path, l->names, l->n, l->days, l->client, err));
    X509 *cas[2] = {ca->cert, ca->root};
    MOAT_TRY(moat_policy_check_constraints(cas, ca->root ? 2 : 1, l->names, l->n, err));
    time_t nb = 0, na = 0;
    MOAT_TRY(moat_ca_leaf_validity(now, l->days, moat_ca_asn1_time(X509_get0_notAfter(ca->cert)),
                                   &nb, &na, NULL, err));
    const char *cn = strlen(l->names[0]) <= CN_MAX ? l->names[0] : NULL;
    X509 *x = cert_new(cn, 0, l->pub, ca->cert, nb, na);
    /* RFC 5280 §4.2.1.13: the leaf points at its issuer's CRL, the one that can list it. */
    if (x == NULL || !add_leaf_exts(x, ca->cert, l, l->pub, cn == NULL) ||
        (ca->crl_url != NULL && !moat_crlurl_add_ext(x, ca->crl_url)) || !sign(x, ca->key)) {
        X509_free(x);
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot build the certificate for %s", l->names[0]);
    }
    *out = x;
    return MOAT_RC_OK;
}

moat_rc moat_ca_self_signed(const struct moat_ca_leaf *l, EVP_PKEY *key, time_t now, X509 **out,
                            struct moat_err *err)
{
    *out = NULL;
    if (now == 0) {
        now = time(NULL);
    }
    EVP_PKEY *pub = l->pub ? l->pub : key;
    if (key == NULL || EVP_PKEY_eq(pub, key) != 1) {
        ERR_clear_error();
        MOAT_FAIL(err, MOAT_E_USAGE, "a self-signed certificate is signed by its own key");
    }
    MOAT_TRY(check_leaf(l, err));
    time_t nb = 0, na = 0;
    MOAT_TRY(moat_ca_leaf_validity(now, l->days, 0, &nb, &na, NULL, err));
    const char *cn = strlen(l->names[0]) <= CN_MAX ? l->names[0] : NULL;
    X509 *x = cert_new(cn, 0, pub, NULL, nb, na);
    /* Self-signed with an empty subject would have an empty issuer too, which RFC 5280
     * §4.1.2.4 forbids: such a certificate gets the CN cut to fit instead. */
    if (x != NULL && cn == NULL && !set_subject(x, l->names[0], 0)) {
        X509_free(x);
        x = NULL;
    }
    if (x != NULL && cn == NULL) {
        X509_set_issuer_name(x, X509_get_subject_name(x));
    }
    if (x == NULL || !add_leaf_exts(x, NULL, l, pub, 0) || !sign(x, key)) {
        X509_free(x);
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot build the certificate for %s", l->names[0]);
    }
    *out = x;
    return MOAT_RC_OK;
}

moat_rc moat_ca_issue_server(struct moat_ca *ca, const char *const *names, size_t n, int days,
                             enum moat_key_type kt, X509 **cert_out, EVP_PKEY **key_out,
                             struct moat_err *err)
{
    *cert_out = NULL;
    *key_out = NULL;
    struct moat_ca_leaf l = {.names = names, .n = n, .days = days, .client = 0};
    MOAT_TRY(check_leaf(&l, err));
    EVP_PKEY *key = NULL;
    MOAT_TRY(moat_key_new(kt, &key, err));
    l.pub = key;
    moat_rc rc = moat_ca_sign(ca, &l, 0, cert_out, err);
    if (!moat_ok(rc)) {
        EVP_PKEY_free(key);
        return rc;
    }
    *key_out = key;
    return MOAT_RC_OK;
}

/* ---- writing ---- */

static moat_rc pem_of_certs(X509 *const *certs, size_t n, char **out, size_t *len,
                            struct moat_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        ok = PEM_write_bio_X509(bio, certs[i]) == 1;
    }
    if (!ok) {
        BIO_free(bio);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot encode a certificate");
    }
    char *p = NULL;
    long blen = BIO_get_mem_data(bio, &p);
    *out = malloc(blen > 0 ? (size_t)blen : 1);
    if (*out == NULL) {
        BIO_free(bio);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    memcpy(*out, p, (size_t)blen);
    *len = (size_t)blen;
    BIO_free(bio);
    return MOAT_RC_OK;
}

moat_rc moat_ca_write_certs(const char *path, X509 *const *certs, size_t n, int replace,
                            struct moat_err *err)
{
    char *pem = NULL;
    size_t len = 0;
    MOAT_TRY(pem_of_certs(certs, n, &pem, &len, err));
    moat_rc rc = replace ? moat_fs_write_atomic(path, pem, len, 0644, err)
                         : moat_fs_write_new(path, pem, len, 0644, err);
    free(pem);
    if (rc.kind == MOAT_E_IO && err != NULL && err->sys_errno == EEXIST) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_IO, "%s already exists: moat does not replace it (move it away)",
                  path);
    }
    return rc;
}

static moat_rc write_cert(const char *path, X509 *x, X509 *x2, int replace, struct moat_err *err)
{
    X509 *v[2] = {x, x2};
    return moat_ca_write_certs(path, v, x2 ? 2 : 1, replace, err);
}

/* ---- creating ---- */

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

/* "<cn> intermediate", keeping " intermediate" visible when the root's name is long. */
static void intermediate_name(const char *root_cn, char *out, size_t n)
{
    snprintf(out, n, "%.*s intermediate", (int)utf8_cut(root_cn, CN_MAX - 13), root_cn);
}

static const struct moat_ca_opts default_opts = {.key_type = MOAT_KEY_EC_P256};

/* Both URLs of `o` that are set must be ones moat writes into certificates. */
static moat_rc check_opt_urls(const struct moat_ca_opts *o, struct moat_err *err)
{
    if (o->crl_url != NULL) {
        MOAT_TRY(moat_crlurl_check(o->crl_url, err));
    }
    if (o->root_crl_url != NULL) {
        MOAT_TRY(moat_crlurl_check(o->root_crl_url, err));
    }
    return MOAT_RC_OK;
}

/* The CRL addresses a new CA starts with: those of `o` when it gives any (written to the
 * settings file later), else what the folder's settings file already says. */
static moat_rc initial_settings(const struct moat_ca *ca, const struct moat_ca_opts *o,
                                struct moat_crlurl_settings *st, struct moat_err *err)
{
    *st = (struct moat_crlurl_settings){0};
    if (o->crl_url == NULL && o->root_crl_url == NULL) {
        return moat_crlurl_load(ca->dir, st, err);
    }
    st->crl_url = o->crl_url ? strdup(o->crl_url) : NULL;
    st->root_crl_url = o->root_crl_url ? strdup(o->root_crl_url) : NULL;
    if ((o->crl_url && !st->crl_url) || (o->root_crl_url && !st->root_crl_url)) {
        moat_crlurl_clear(st);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

/* Make the four files (and the settings when `o` gives URLs); on failure remove the ones
 * written so the folder is empty again. */
static moat_rc create_ca(struct moat_ca *ca, char *const paths[F_COUNT],
                         const struct moat_ca_opts *o, struct moat_err *err)
{
    char cn[256], icn[256];
    int org = o->name == NULL; /* moat's own local CA says so in its subject */
    if (o->name == NULL) {
        default_name(cn, sizeof(cn));
    } else {
        snprintf(cn, sizeof(cn), "%s", o->name);
    }
    intermediate_name(cn, icn, sizeof(icn));

    MOAT_TRY(check_opt_urls(o, err));
    struct moat_crlurl_settings st;
    MOAT_TRY(initial_settings(ca, o, &st, err));
    moat_rc rc = MOAT_RC_OK;
    NAME_CONSTRAINTS *nc =
        moat_policy_constraints_new(o->permit, o->npermit, o->exclude, o->nexclude, &rc, err);
    if (!moat_ok(rc)) {
        moat_crlurl_clear(&st);
        return rc;
    }
    time_t now = time(NULL);
    EVP_PKEY *root_key = NULL;
    rc = moat_key_new(o->key_type, &root_key, err);
    if (rc.kind == MOAT_OK) {
        rc = moat_key_new(o->key_type, &ca->key, err);
    }
    if (rc.kind == MOAT_OK) {
        ca->root = make_root(cn, org, root_key, nc, now);
        ca->cert = ca->root ? make_intermediate(icn, org, ca->key, nc, ca->root, root_key,
                                                st.root_crl_url, now)
                            : NULL;
        if (ca->cert == NULL) {
            rc = moat_err_ssl(err, MOAT_E_INTERNAL, __FILE__, __LINE__,
                              "cannot build the CA certificates");
        }
    }
    NAME_CONSTRAINTS_free(nc);
    if (rc.kind != MOAT_OK) {
        EVP_PKEY_free(root_key);
        moat_crlurl_clear(&st);
        return rc;
    }
    int written = 0;
    rc = moat_key_save(paths[F_ROOT_KEY], root_key, 0, err);
    written += rc.kind == MOAT_OK;
    if (rc.kind == MOAT_OK) {
        rc = write_cert(paths[F_ROOT_PEM], ca->root, NULL, 0, err);
        written += rc.kind == MOAT_OK;
    }
    if (rc.kind == MOAT_OK) {
        rc = moat_key_save(paths[F_INT_KEY], ca->key, 0, err);
        written += rc.kind == MOAT_OK;
    }
    if (rc.kind == MOAT_OK) {
        rc = write_cert(paths[F_INT_PEM], ca->cert, NULL, 0, err);
        written += rc.kind == MOAT_OK;
    }
    EVP_PKEY_free(root_key);
    if (rc.kind == MOAT_OK && (o->crl_url != NULL || o->root_crl_url != NULL)) {
        rc = moat_crlurl_save(ca->dir, &st, err);
    }
    if (rc.kind != MOAT_OK) {
        static const int order[F_COUNT] = {F_ROOT_KEY, F_ROOT_PEM, F_INT_KEY, F_INT_PEM};
        for (int i = 0; i < written; i++) {
            unlink(paths[order[i]]);
        }
        moat_crlurl_clear(&st);
        moat_err_ctx(err, "while creating the CA in %s", ca->dir);
        return rc;
    }
    ca->crl_url = st.crl_url;
    ca->root_crl_url = st.root_crl_url;
    return rc;
}

/* ---- opening ---- */

/* ca->crl_url and ca->root_crl_url from <dir>/settings (a bad line names the file and line). */
static moat_rc load_settings(struct moat_ca *ca, struct moat_err *err)
{
    struct moat_crlurl_settings st;
    MOAT_TRY_CTX(moat_crlurl_load(ca->dir, &st, err), err, "while opening the CA in %s", ca->dir);
    free(ca->crl_url);
    free(ca->root_crl_url);
    ca->crl_url = st.crl_url;
    ca->root_crl_url = st.root_crl_url;
    return MOAT_RC_OK;
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
    if (strstr(path, "intermediate") != NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "%s has expired: make a new one with `moat ca intermediate --ca %s` (needs "
                  "root.key), or move the folder %s away so moat makes a new local CA",
                  path, dir, dir);
    }
    MOAT_FAIL(err, MOAT_E_CONFIG,
              "%s has expired: move the folder %s away so moat makes a new local CA (clients "
              "will then need to trust the new root)",
              path, dir);
}

static moat_rc load_root_key(struct moat_ca *ca, const char *path, EVP_PKEY **out,
                             struct moat_err *err)
{
    EVP_PKEY *rk = NULL;
    MOAT_TRY_CTX(moat_key_load(path, &rk, err), err, "while opening the CA in %s", ca->dir);
    int same = EVP_PKEY_eq(X509_get0_pubkey(ca->root), rk) == 1;
    ERR_clear_error();
    if (!same) {
        EVP_PKEY_free(rk);
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "%s does not match %s/root.pem: the files do not belong together; move the "
                  "folder away so moat makes a new local CA",
                  path, ca->dir);
    }
    *out = rk;
    return MOAT_RC_OK;
}

static moat_rc open_ca(struct moat_ca *ca, char *const paths[F_COUNT], int have_root_key,
                       struct moat_err *err)
{
    MOAT_TRY_CTX(load_cert(paths[F_ROOT_PEM], &ca->root, err), err,
                 "while opening the local CA in %s", ca->dir);
    MOAT_TRY_CTX(load_cert(paths[F_INT_PEM], &ca->cert, err), err,
                 "while opening the local CA in %s", ca->dir);
    MOAT_TRY_CTX(moat_key_load(paths[F_INT_KEY], &ca->key, err), err,
                 "while opening the local CA in %s", ca->dir);
    const char *fix = "the files do not belong together; move the folder away so moat makes a "
                      "new local CA";
    if (!is_ca_cert(ca->root) || X509_self_signed(ca->root, 1) != 1) {
        ERR_clear_error();
        moat_err_where(err, "%s", paths[F_ROOT_PEM]);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s is not a self-signed CA certificate: %s",
                  paths[F_ROOT_PEM], fix);
    }
    if (!is_ca_cert(ca->cert) || !signed_by(ca->cert, ca->root)) {
        moat_err_where(err, "%s", paths[F_INT_PEM]);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s is not a CA certificate signed by %s: %s",
                  paths[F_INT_PEM], paths[F_ROOT_PEM], fix);
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(ca->cert), ca->key) != 1) {
        ERR_clear_error();
        moat_err_where(err, "%s", paths[F_INT_KEY]);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s does not match %s: %s", paths[F_INT_KEY],
                  paths[F_INT_PEM], fix);
    }
    if (have_root_key) {
        EVP_PKEY *rk = NULL;
        MOAT_TRY(load_root_key(ca, paths[F_ROOT_KEY], &rk, err));
        EVP_PKEY_free(rk);
    }
    time_t now = time(NULL);
    MOAT_TRY(check_not_expired(ca->root, paths[F_ROOT_PEM], ca->dir, now, err));
    MOAT_TRY(check_not_expired(ca->cert, paths[F_INT_PEM], ca->dir, now, err));
    MOAT_TRY(load_settings(ca, err));
    return moat_policy_load(ca->dir, &ca->policy, err);
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

enum ca_mode { MODE_OPEN_OR_CREATE = 0, MODE_OPEN, MODE_INIT };

static moat_rc run_locked(struct moat_ca *ca, char *const paths[F_COUNT], enum ca_mode mode,
                          const struct moat_ca_opts *o, int *created, struct moat_err *err)
{
    int have[F_COUNT], count = 0;
    for (int i = 0; i < F_COUNT; i++) {
        have[i] = exists(paths[i]);
        if (have[i] < 0) {
            moat_err_where(err, "%s", paths[i]);
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot look at %s", paths[i]);
        }
        count += have[i];
    }
    if (count == 0 && mode == MODE_OPEN) {
        moat_err_where(err, "%s", ca->dir);
        MOAT_FAIL(err, MOAT_E_NOTFOUND,
                  "there is no CA in %s: create one with `moat ca init --dir %s` (or give the "
                  "right folder with --ca)",
                  ca->dir, ca->dir);
    }
    if (count > 0 && mode == MODE_INIT) {
        moat_err_where(err, "%s", ca->dir);
        if (o->crl_url != NULL || o->root_crl_url != NULL) {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "%s already holds a CA: moat never replaces one; to give it CRL URLs, use "
                      "`moat ca set --ca %s --crl-url URL` (and --root-crl-url URL)",
                      ca->dir, ca->dir);
        }
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "%s already holds a CA: moat never replaces one (its certificates would stop "
                  "working); choose another --dir, or move the folder away first",
                  ca->dir);
    }
    if (count == 0) {
        MOAT_TRY(create_ca(ca, paths, o, err));
        MOAT_TRY(moat_policy_load(ca->dir, &ca->policy, err));
        *created = 1;
        return MOAT_RC_OK;
    }
    /* root.key may be offline; the other three are needed to issue. */
    if (have[F_ROOT_PEM] && have[F_INT_PEM] && have[F_INT_KEY]) {
        return open_ca(ca, paths, have[F_ROOT_KEY], err);
    }
    char present[128] = "", missing[128] = "";
    for (int i = 0; i < F_COUNT; i++) {
        char *dst = have[i] ? present : missing;
        size_t used = strlen(dst);
        snprintf(dst + used, sizeof(present) - used, "%s%s", used ? ", " : "", ca_files[i]);
    }
    moat_err_where(err, "%s", ca->dir);
    if (have[F_ROOT_PEM] && have[F_ROOT_KEY] && !have[F_INT_PEM] && !have[F_INT_KEY]) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the CA in %s has a root but no intermediate: make one with `moat ca "
                  "intermediate --ca %s`",
                  ca->dir, ca->dir);
    }
    MOAT_FAIL(err, MOAT_E_CONFIG,
              "the local CA in %s is incomplete (has %s; missing %s): restore the missing files, "
              "or move the folder away so moat makes a new CA",
              ca->dir, present, missing);
}

/* The folder's CA file paths, malloc'ed; 0 when out of memory. */
static int paths_make(const char *dir, char *paths[F_COUNT])
{
    int ok = 1;
    for (int i = 0; i < F_COUNT; i++) {
        paths[i] = ok ? path_join(dir, ca_files[i], "") : NULL;
        ok = ok && paths[i] != NULL;
    }
    return ok;
}

static void paths_free(char *paths[F_COUNT])
{
    for (int i = 0; i < F_COUNT; i++) {
        free(paths[i]);
        paths[i] = NULL;
    }
}

static moat_rc ca_run(const char *dir, enum ca_mode mode, const struct moat_ca_opts *o,
                      struct moat_ca **out, int *created, struct moat_err *err)
{
    int made = 0;
    *out = NULL;
    if (created != NULL) {
        *created = 0;
    }
    if (mode == MODE_OPEN) {
        struct stat st;
        if (stat(dir, &st) != 0 && errno == ENOENT) {
            moat_err_where(err, "%s", dir);
            MOAT_FAIL(err, MOAT_E_NOTFOUND,
                      "there is no CA folder %s: create a CA with `moat ca init --dir %s` (or "
                      "give the right folder with --ca)",
                      dir, dir);
        }
    }
    MOAT_TRY(moat_fs_mkdir_p(dir, 0700, err));
    struct moat_ca *ca = calloc(1, sizeof(*ca));
    char *paths[F_COUNT] = {NULL};
    int ok = ca != NULL && (ca->dir = strdup(dir)) != NULL && paths_make(dir, paths);
    moat_rc rc =
        ok ? MOAT_RC_OK : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    int lock = -1;
    if (rc.kind == MOAT_OK) {
        rc = moat_fs_lock(dir, &lock, err);
    }
    if (rc.kind == MOAT_OK) {
        rc = run_locked(ca, paths, mode, o ? o : &default_opts, &made, err);
    }
    moat_fs_unlock(lock);
    paths_free(paths);
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

moat_rc moat_ca_open_or_create(const char *dir, const char *name, struct moat_ca **out,
                               int *created, struct moat_err *err)
{
    struct moat_ca_opts o = {.name = name, .key_type = MOAT_KEY_EC_P256};
    return ca_run(dir, MODE_OPEN_OR_CREATE, &o, out, created, err);
}

moat_rc moat_ca_open(const char *dir, struct moat_ca **out, struct moat_err *err)
{
    return ca_run(dir, MODE_OPEN, NULL, out, NULL, err);
}

moat_rc moat_ca_init(const char *dir, const struct moat_ca_opts *o, struct moat_ca **out,
                     struct moat_err *err)
{
    struct moat_ca *ca = NULL;
    if (out != NULL) {
        *out = NULL;
    }
    if (o != NULL) {
        MOAT_TRY(check_opt_urls(o, err)); /* before the folder is made */
    }
    MOAT_TRY(ca_run(dir, MODE_INIT, o, &ca, NULL, err));
    if (out != NULL) {
        *out = ca;
    } else {
        moat_ca_free(ca);
    }
    return MOAT_RC_OK;
}

moat_rc moat_ca_default_dir(char **out, struct moat_err *err)
{
    char buf[PATH_MAX];
    *out = NULL;
    const char *state = getenv("MOAT_STATE");
    if (state != NULL && state[0] != '\0') {
        snprintf(buf, sizeof(buf), "%s/ca", state);
    } else {
        const char *home = getenv("HOME");
        char pwbuf[1024];
        struct passwd pw, *res = NULL;
        if ((home == NULL || home[0] == '\0') &&
            getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res != NULL) {
            home = res->pw_dir;
        }
        if (home == NULL || home[0] == '\0') {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "cannot find moat's local CA: set MOAT_STATE or HOME, or give --ca DIR");
        }
        snprintf(buf, sizeof(buf), "%s/.local/share/moat/ca", home);
    }
    *out = strdup(buf);
    if (*out == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

/* ---- intermediates ---- */

/* Keep the old intermediate under a dated name before it is replaced: certificates it issued
 * stay verifiable, and its CRL can still be made from its key. */
static moat_rc archive_intermediate(const char *dir, time_t now, struct moat_err *err)
{
    char stamp[32];
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
    static const char *const ext[2] = {"pem", "key"};
    for (int i = 0; i < 2; i++) {
        char from[PATH_MAX], to[PATH_MAX];
        snprintf(from, sizeof(from), "%s/intermediate.%s", dir, ext[i]);
        snprintf(to, sizeof(to), "%s/intermediate-%s.%s", dir, stamp, ext[i]);
        if (link(from, to) != 0) {
            moat_err_where(err, "%s", to);
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot keep the old intermediate as %s", to);
        }
    }
    return MOAT_RC_OK;
}

/* Note the URLs `o` gives for a new intermediate: root_crl_url in the root's folder; crl_url
 * in the root's folder (out_dir NULL: an in-place renewal) or in out_dir, a new issuing CA,
 * whose settings hold nothing else. Called with the folders locked. */
static moat_rc intermediate_settings(const struct moat_ca *root_ca, const char *out_dir,
                                     const struct moat_ca_opts *o, struct moat_err *err)
{
    const char *to_root = out_dir == NULL ? o->crl_url : NULL;
    if (o->root_crl_url != NULL || to_root != NULL) {
        struct moat_crlurl_settings st;
        MOAT_TRY(moat_crlurl_load(root_ca->dir, &st, err));
        char **slots[2] = {&st.root_crl_url, &st.crl_url};
        const char *vals[2] = {o->root_crl_url, to_root};
        moat_rc rc = MOAT_RC_OK;
        for (int i = 0; i < 2 && moat_ok(rc); i++) {
            if (vals[i] != NULL) {
                free(*slots[i]);
                *slots[i] = strdup(vals[i]);
                if (*slots[i] == NULL) {
                    rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
                }
            }
        }
        if (moat_ok(rc)) {
            rc = moat_crlurl_save(root_ca->dir, &st, err);
        }
        moat_crlurl_clear(&st);
        MOAT_TRY(rc);
    }
    if (out_dir != NULL && o->crl_url != NULL) {
        struct moat_crlurl_settings st = {.crl_url = (char *)o->crl_url};
        MOAT_TRY(moat_crlurl_save(out_dir, &st, err));
    }
    return MOAT_RC_OK;
}

static moat_rc new_intermediate_locked(struct moat_ca *root_ca, const char *out_dir,
                                       const struct moat_ca_opts *o, struct moat_err *err)
{
    char rk_path[PATH_MAX];
    snprintf(rk_path, sizeof(rk_path), "%s/root.key", root_ca->dir);
    if (exists(rk_path) != 1) {
        moat_err_where(err, "%s", rk_path);
        MOAT_FAIL(err, MOAT_E_NOTFOUND,
                  "%s is not there: a new intermediate is signed with the root key (bring it "
                  "back from where it is kept offline)",
                  rk_path);
    }
    EVP_PKEY *root_key = NULL;
    MOAT_TRY(load_root_key(root_ca, rk_path, &root_key, err));
    char cn[256], root_cn[256] = "moat CA";
    X509_NAME_get_text_by_NID(X509_get_subject_name(root_ca->root), NID_commonName, root_cn,
                              sizeof(root_cn));
    if (o->name != NULL) {
        snprintf(cn, sizeof(cn), "%s", o->name);
    } else {
        intermediate_name(root_cn, cn, sizeof(cn));
    }
    /* Keep moat's "O=moat" marking when the root has it. */
    int org = X509_NAME_get_index_by_NID(X509_get_subject_name(root_ca->root), NID_organizationName,
                                         -1) >= 0;
    moat_rc rc = MOAT_RC_OK;
    NAME_CONSTRAINTS *nc =
        moat_policy_constraints_new(o->permit, o->npermit, o->exclude, o->nexclude, &rc, err);
    EVP_PKEY *key = NULL;
    if (moat_ok(rc)) {
        rc = moat_key_new(o->key_type, &key, err);
    }
    time_t now = time(NULL);
    X509 *x = NULL;
    const char *root_crl = o->root_crl_url ? o->root_crl_url : root_ca->root_crl_url;
    if (moat_ok(rc)) {
        x = make_intermediate(cn, org, key, nc, root_ca->root, root_key, root_crl, now);
        if (x == NULL) {
            rc = moat_err_ssl(err, MOAT_E_INTERNAL, __FILE__, __LINE__,
                              "cannot build the intermediate certificate");
        }
    }
    NAME_CONSTRAINTS_free(nc);
    EVP_PKEY_free(root_key);
    int same = out_dir == NULL || strcmp(out_dir, root_ca->dir) == 0;
    const char *dir = same ? root_ca->dir : out_dir;
    char kp[PATH_MAX], cp[PATH_MAX], rp[PATH_MAX];
    snprintf(kp, sizeof(kp), "%s/intermediate.key", dir);
    snprintf(cp, sizeof(cp), "%s/intermediate.pem", dir);
    snprintf(rp, sizeof(rp), "%s/root.pem", dir);
    /* Settings before the certificate files: a failure then leaves the old intermediate in
     * place with at most a new address noted, never a new intermediate with stale settings. */
    if (moat_ok(rc)) {
        rc = intermediate_settings(root_ca, same ? NULL : out_dir, o, err);
    }
    if (moat_ok(rc) && same) {
        /* Key first: a crash between the two leaves a pair that does not match, which opening
         * reports, and the archived pair restores. */
        rc = exists(cp) == 1 && exists(kp) == 1 ? archive_intermediate(dir, now, err) : MOAT_RC_OK;
        if (moat_ok(rc)) {
            rc = moat_key_save(kp, key, 1, err);
        }
        if (moat_ok(rc)) {
            rc = write_cert(cp, x, NULL, 1, err);
        }
    } else if (moat_ok(rc)) {
        rc = write_cert(rp, root_ca->root, NULL, 0, err);
        if (moat_ok(rc)) {
            rc = moat_key_save(kp, key, 0, err);
        }
        if (moat_ok(rc)) {
            rc = write_cert(cp, x, NULL, 0, err);
        }
    }
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* Only the root, for making an intermediate: the old intermediate may have expired, been lost
 * or never made (a failed init), and none of that must stop its replacement. */
static moat_rc open_root(const char *dir, struct moat_ca **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_ca *ca = calloc(1, sizeof(*ca));
    char *path = path_join(dir, "root.pem", "");
    if (ca == NULL || path == NULL || (ca->dir = strdup(dir)) == NULL) {
        free(path);
        moat_ca_free(ca);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_rc rc = load_cert(path, &ca->root, err);
    if (rc.kind == MOAT_E_NOTFOUND) {
        moat_err_where(err, "%s", dir);
        rc =
            moat_err_set(err, MOAT_E_NOTFOUND, __FILE__, __LINE__,
                         "there is no CA in %s: create one with `moat ca init --dir %s`", dir, dir);
    } else if (moat_ok(rc) && (!is_ca_cert(ca->root) || X509_self_signed(ca->root, 1) != 1)) {
        ERR_clear_error();
        moat_err_where(err, "%s", path);
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "%s is not a self-signed CA certificate", path);
    } else if (moat_ok(rc)) {
        rc = check_not_expired(ca->root, path, dir, time(NULL), err);
    }
    if (moat_ok(rc)) {
        rc = load_settings(ca, err);
    }
    free(path);
    if (!moat_ok(rc)) {
        moat_ca_free(ca);
        return rc;
    }
    *out = ca;
    return MOAT_RC_OK;
}

moat_rc moat_ca_intermediate(const char *root_dir, const char *out_dir,
                             const struct moat_ca_opts *o, struct moat_ca **out,
                             struct moat_err *err)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (o == NULL) {
        o = &default_opts;
    }
    MOAT_TRY(check_opt_urls(o, err));
    struct moat_ca *root_ca = NULL;
    MOAT_TRY(open_root(root_dir, &root_ca, err));
    int same = out_dir == NULL || strcmp(out_dir, root_dir) == 0;
    moat_rc rc = MOAT_RC_OK;
    int lock = -1, out_lock = -1;
    if (!same) {
        char *paths[F_COUNT] = {NULL};
        rc = moat_fs_mkdir_p(out_dir, 0700, err);
        if (moat_ok(rc)) {
            rc = moat_fs_lock(out_dir, &out_lock, err);
        }
        if (moat_ok(rc) && !paths_make(out_dir, paths)) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        }
        for (int i = 0; moat_ok(rc) && i < F_COUNT; i++) {
            if (exists(paths[i]) != 0) {
                moat_err_where(err, "%s", out_dir);
                rc = moat_err_set(err, MOAT_E_USAGE, __FILE__, __LINE__,
                                  "%s already holds CA files (%s): give an empty folder to --out",
                                  out_dir, ca_files[i]);
            }
        }
        paths_free(paths);
    }
    if (moat_ok(rc)) {
        rc = moat_fs_lock(root_dir, &lock, err);
    }
    if (moat_ok(rc)) {
        rc = new_intermediate_locked(root_ca, out_dir, o, err);
    }
    moat_fs_unlock(lock);
    moat_fs_unlock(out_lock);
    moat_ca_free(root_ca);
    if (!moat_ok(rc)) {
        moat_err_ctx(err, "while making an intermediate for the CA in %s", root_dir);
        return rc;
    }
    struct moat_ca *ca = NULL;
    MOAT_TRY(moat_ca_open(same ? root_dir : out_dir, &ca, err));
    if (out != NULL) {
        *out = ca;
    } else {
        moat_ca_free(ca);
    }
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
        /* After `moat ca set --crl-url` the next start or reload issues a certificate that
         * points at the new address. */
        char url[MOAT_CRLURL_MAX + 1];
        int has = moat_crlurl_of(c->leaf, url, sizeof(url));
        ok = ca->crl_url != NULL ? has && strcmp(url, ca->crl_url) == 0 : !has;
    }
    if (ok) {
        time_t nb = moat_ca_asn1_time(X509_get0_notBefore(c->leaf));
        time_t na = moat_ca_asn1_time(X509_get0_notAfter(c->leaf));
        /* Renew with a third of the lifetime left, as ACME clients do. */
        ok = nb != 0 && na > nb && nb <= now && (na - now) > (na - nb) / 3;
    }
    moat_chain_free(c);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

int moat_ca_leaf_reusable(struct moat_ca *ca, const char *cert_path, const char *key_path,
                          const char *const *names, size_t n, time_t now)
{
    return reusable(ca, cert_path, key_path, names, n, now);
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
    MOAT_TRY(moat_names_check(names, n, 0, err));
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

/* ---- settings ---- */

/* *slot = v: NULL leaves it, "" removes it. */
static int set_slot(char **slot, const char *v)
{
    if (v == NULL) {
        return 1;
    }
    free(*slot);
    *slot = v[0] != '\0' ? strdup(v) : NULL;
    return v[0] == '\0' || *slot != NULL;
}

moat_rc moat_ca_set_crl_urls(struct moat_ca *ca, const char *crl_url, const char *root_crl_url,
                             struct moat_err *err)
{
    if (crl_url != NULL && crl_url[0] != '\0') {
        MOAT_TRY(moat_crlurl_check(crl_url, err));
    }
    if (root_crl_url != NULL && root_crl_url[0] != '\0') {
        MOAT_TRY(moat_crlurl_check(root_crl_url, err));
        char rk[PATH_MAX];
        snprintf(rk, sizeof(rk), "%s/root.key", ca->dir);
        if (exists(rk) != 1) {
            moat_err_where(err, "%s", ca->dir);
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "%s has no root.key: the root's CRL URL goes into the intermediates the "
                      "root signs, so set it in the folder that holds root.key",
                      ca->dir);
        }
    }
    int lock = -1;
    MOAT_TRY(moat_fs_lock(ca->dir, &lock, err));
    struct moat_crlurl_settings st;
    moat_rc rc = moat_crlurl_load(ca->dir, &st, err);
    if (moat_ok(rc) &&
        (!set_slot(&st.crl_url, crl_url) || !set_slot(&st.root_crl_url, root_crl_url))) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    if (moat_ok(rc)) {
        rc = moat_crlurl_save(ca->dir, &st, err);
    }
    moat_fs_unlock(lock);
    if (!moat_ok(rc)) {
        moat_crlurl_clear(&st);
        moat_err_ctx(err, "while changing the settings of the CA in %s", ca->dir);
        return rc;
    }
    free(ca->crl_url);
    free(ca->root_crl_url);
    ca->crl_url = st.crl_url;
    ca->root_crl_url = st.root_crl_url;
    return MOAT_RC_OK;
}
