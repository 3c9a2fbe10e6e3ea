/*
 * challenges.c: the challenge table, its solvers, the webroot solver and the TLS-ALPN-01
 * certificate (see challenges.h).
 *
 * The table is small (one entry per name being validated right now) and short-lived, so it
 * is a fixed array under a mutex: no allocation on lookup, and a full table is an error the
 * order reports instead of a growing structure nobody bounds.
 */
#include "acme/challenges.h"

#include "pki/fsutil.h"
#include "tls/certset.h"
#include "tls/ctx.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define TABLE_SLOTS 64
#define TOKEN_MAX 257
#define KA_MAX 400
#define NAME_MAX_LEN 256

struct slot {
    int used;
    int alpn; /* 0: HTTP-01 (token -> key authorization); 1: TLS-ALPN-01 (name -> cert) */
    char token[TOKEN_MAX];
    char name[NAME_MAX_LEN];
    char key_authz[KA_MAX];
    X509 *cert;
    EVP_PKEY *key;
    time_t expires; /* another node's answer: forgotten then even if its removal is lost */
};

struct moat_acme_challenges {
    pthread_mutex_t mu;
    atomic_int nalpn;
    struct slot slots[TABLE_SLOTS];
    moat_acme_challenge_hook hook; /* told of the solvers' answers (a cluster passes them on) */
    void *hook_data;
    unsigned settle_ms;
};

moat_rc moat_acme_challenges_new(struct moat_acme_challenges **out, struct moat_err *err)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&(*out)->mu, NULL);
    return MOAT_RC_OK;
}

static void slot_clear(struct slot *s)
{
    X509_free(s->cert);
    EVP_PKEY_free(s->key);
    OPENSSL_cleanse(s, sizeof(*s));
}

void moat_acme_challenges_free(struct moat_acme_challenges *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < TABLE_SLOTS; i++) {
        slot_clear(&t->slots[i]);
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int moat_acme_challenges_http01(struct moat_acme_challenges *t, const char *path, size_t len,
                                char *out, size_t outlen)
{
    size_t pl = sizeof(MOAT_ACME_HTTP01_PREFIX) - 1;
    if (t == NULL || len <= pl || memcmp(path, MOAT_ACME_HTTP01_PREFIX, pl) != 0) {
        return 0;
    }
    const char *tok = path + pl;
    size_t tl = len - pl;
    int found = 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; !found && i < TABLE_SLOTS; i++) {
        const struct slot *s = &t->slots[i];
        if (s->used && !s->alpn && strlen(s->token) == tl && memcmp(s->token, tok, tl) == 0 &&
            strlen(s->key_authz) < outlen && (s->expires == 0 || s->expires > time(NULL))) {
            memcpy(out, s->key_authz, strlen(s->key_authz) + 1);
            found = 1;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return found;
}

int moat_acme_challenges_alpn_active(struct moat_acme_challenges *t)
{
    return t != NULL && atomic_load(&t->nalpn) > 0;
}

int moat_acme_challenges_alpn(struct moat_acme_challenges *t, const char *name, X509 **cert,
                              EVP_PKEY **key)
{
    int found = 0;
    /* Most ClientHellos offering only acme-tls/1 come while nothing is being validated
     * (scanners): the counter answers them without the lock. */
    if (t == NULL || name == NULL || atomic_load(&t->nalpn) == 0) {
        return 0;
    }
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; !found && i < TABLE_SLOTS; i++) {
        struct slot *s = &t->slots[i];
        if (s->used && s->alpn && strcasecmp(s->name, name) == 0 &&
            (s->expires == 0 || s->expires > time(NULL))) {
            X509_up_ref(s->cert);
            EVP_PKEY_up_ref(s->key);
            *cert = s->cert;
            *key = s->key;
            found = 1;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return found;
}

/* --- the TLS-ALPN-01 certificate --- */

moat_rc moat_acme_alpn_cert_new(const char *name, const char *key_authz, X509 **cert,
                                EVP_PKEY **key, struct moat_err *err)
{
    *cert = NULL;
    *key = NULL;
    unsigned char digest[32];
    unsigned int dl = 0;
    if (!EVP_Digest(key_authz, strlen(key_authz), digest, &dl, EVP_sha256(), NULL)) {
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "SHA-256 failed");
    }
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_OCTET_STRING *inner = ASN1_OCTET_STRING_new();
    unsigned char *der = NULL;
    int derlen = 0;
    ASN1_OCTET_STRING *ext_data = ASN1_OCTET_STRING_new();
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1); /* id-pe-acmeIdentifier */
    X509_EXTENSION *ext = NULL;
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    moat_rc rc = MOAT_RC_OK;
    if (k == NULL || x == NULL || inner == NULL || ext_data == NULL || oid == NULL ||
        gens == NULL || gn == NULL || ia5 == NULL ||
        !ASN1_OCTET_STRING_set(inner, digest, (int)dl) ||
        (derlen = i2d_ASN1_OCTET_STRING(inner, &der)) <= 0 ||
        !ASN1_OCTET_STRING_set(ext_data, der, derlen) ||
        (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, ext_data)) == NULL ||
        !ASN1_STRING_set(ia5, name, (int)strlen(name))) {
        rc = moat_err_ssl(err, MOAT_E_INTERNAL, __FILE__, __LINE__,
                          "making the TLS-ALPN-01 certificate failed");
        goto done;
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    ia5 = NULL;
    sk_GENERAL_NAME_push(gens, gn);
    gn = NULL;
    X509_NAME *subj = X509_get_subject_name(x);
    /* A CN holds 64 characters at most (RFC 5280 ub-common-name) and a DNS name up to 253:
     * a longer name is in the SAN only, and with an empty subject the SAN is critical. */
    int cn = strlen(name) <= 64;
    if (RAND_bytes(serial, sizeof(serial)) != 1 ||
        (serial[0] &= 0x7f, bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || !X509_set_version(x, 2) ||
        (cn && !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)name,
                                           -1, -1, 0)) ||
        !X509_set_issuer_name(x, subj) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) || !X509_set_pubkey(x, k) ||
        !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, !cn, X509V3_ADD_DEFAULT) ||
        !X509_add_ext(x, ext, -1) || !X509_sign(x, k, EVP_sha256())) {
        rc = moat_err_ssl(err, MOAT_E_INTERNAL, __FILE__, __LINE__,
                          "making the TLS-ALPN-01 certificate failed");
        goto done;
    }
    *cert = x;
    *key = k;
    x = NULL;
    k = NULL;
done:
    BN_free(bn);
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(gens);
    X509_EXTENSION_free(ext);
    ASN1_OBJECT_free(oid);
    ASN1_OCTET_STRING_free(ext_data);
    OPENSSL_free(der);
    ASN1_OCTET_STRING_free(inner);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

/* --- table solvers --- */

struct table_solver {
    struct moat_acme_solver base;
    struct moat_acme_challenges *t;
    int alpn;
};

moat_rc moat_acme_challenges_put(struct moat_acme_challenges *t, int alpn, const char *ident,
                                 const char *token, const char *key_authz, unsigned ttl_s,
                                 struct moat_err *err)
{
    if (strlen(token) >= TOKEN_MAX || strlen(key_authz) >= KA_MAX ||
        strlen(ident) >= NAME_MAX_LEN) {
        MOAT_FAIL(err, MOAT_E_PEER, "the challenge's token or name is too long");
    }
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    if (alpn) {
        MOAT_TRY(moat_acme_alpn_cert_new(ident, key_authz, &cert, &key, err));
    }
    time_t now = time(NULL);
    pthread_mutex_lock(&t->mu);
    struct slot *free_slot = NULL;
    for (size_t i = 0; i < TABLE_SLOTS; i++) {
        struct slot *s = &t->slots[i];
        if (s->used && ((s->alpn == alpn &&
                         (alpn ? strcasecmp(s->name, ident) == 0 : strcmp(s->token, token) == 0)) ||
                        (s->expires != 0 && s->expires <= now))) {
            /* the same name or token again (the newest answer wins), or one that lapsed */
            if (s->alpn) {
                atomic_fetch_sub(&t->nalpn, 1);
            }
            slot_clear(s);
        }
        if (!s->used && free_slot == NULL) {
            free_slot = s;
        }
    }
    if (free_slot != NULL) {
        free_slot->used = 1;
        free_slot->alpn = alpn;
        /* lengths checked above */
        memcpy(free_slot->token, token, strlen(token) + 1);
        memcpy(free_slot->name, ident, strlen(ident) + 1);
        memcpy(free_slot->key_authz, key_authz, strlen(key_authz) + 1);
        free_slot->cert = cert;
        free_slot->key = key;
        free_slot->expires = ttl_s != 0 ? now + (time_t)ttl_s : 0;
        if (alpn) {
            atomic_fetch_add(&t->nalpn, 1);
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (free_slot == NULL) {
        X509_free(cert);
        EVP_PKEY_free(key);
        MOAT_FAIL(err, MOAT_E_LIMIT, "more than %d challenges at once", TABLE_SLOTS);
    }
    return MOAT_RC_OK;
}

void moat_acme_challenges_remove(struct moat_acme_challenges *t, int alpn, const char *ident,
                                 const char *token)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < TABLE_SLOTS; i++) {
        struct slot *s = &t->slots[i];
        if (s->used && s->alpn == alpn && strcmp(s->token, token) == 0 &&
            strcasecmp(s->name, ident) == 0) {
            slot_clear(s);
            if (alpn) {
                atomic_fetch_sub(&t->nalpn, 1);
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void moat_acme_challenges_on_change(struct moat_acme_challenges *t, moat_acme_challenge_hook fn,
                                    void *data, unsigned settle_ms)
{
    t->hook = fn;
    t->hook_data = data;
    t->settle_ms = settle_ms;
}

static moat_rc table_present(struct moat_acme_solver *base, const char *ident, const char *token,
                             const char *key_authz, struct moat_err *err)
{
    struct table_solver *ts = (struct table_solver *)base;
    struct moat_acme_challenges *t = ts->t;
    MOAT_TRY(moat_acme_challenges_put(t, ts->alpn, ident, token, key_authz, 0, err));
    if (t->hook != NULL) {
        t->hook(t->hook_data, 1, ts->alpn, ident, token, key_authz);
        /* The other nodes get the answer asynchronously: give them a moment before the CA is
         * told to look (it may ask any of them). */
        struct timespec ts_wait = {t->settle_ms / 1000, (long)(t->settle_ms % 1000) * 1000000L};
        nanosleep(&ts_wait, NULL);
    }
    return MOAT_RC_OK;
}

static void table_cleanup(struct moat_acme_solver *base, const char *ident, const char *token)
{
    struct table_solver *ts = (struct table_solver *)base;
    moat_acme_challenges_remove(ts->t, ts->alpn, ident, token);
    if (ts->t->hook != NULL) {
        ts->t->hook(ts->t->hook_data, 0, ts->alpn, ident, token, "");
    }
}

static void plain_free(struct moat_acme_solver *s)
{
    free(s);
}

static const struct moat_acme_solver_ops http01_table_ops = {
    .type = "http-01",
    .present = table_present,
    .cleanup = table_cleanup,
    .free = plain_free,
};
static const struct moat_acme_solver_ops alpn_table_ops = {
    .type = "tls-alpn-01",
    .present = table_present,
    .cleanup = table_cleanup,
    .free = plain_free,
};

moat_rc moat_acme_table_solver_new(struct moat_acme_challenges *t, const char *type,
                                   struct moat_acme_solver **out, struct moat_err *err)
{
    *out = NULL;
    int alpn = strcmp(type, "tls-alpn-01") == 0;
    if (!alpn && strcmp(type, "http-01") != 0) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "no table solver for %s", type);
    }
    struct table_solver *ts = calloc(1, sizeof(*ts));
    if (ts == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    ts->base.ops = alpn ? &alpn_table_ops : &http01_table_ops;
    ts->t = t;
    ts->alpn = alpn;
    *out = &ts->base;
    return MOAT_RC_OK;
}

/* --- webroot --- */

struct webroot_solver {
    struct moat_acme_solver base;
    char dir[PATH_MAX - TOKEN_MAX - 2]; /* <webroot>/.well-known/acme-challenge */
};

static moat_rc webroot_present(struct moat_acme_solver *base, const char *ident, const char *token,
                               const char *key_authz, struct moat_err *err)
{
    struct webroot_solver *w = (struct webroot_solver *)base;
    char path[PATH_MAX];
    /* The token is base64url (order.c checked), so it cannot leave the folder. */
    snprintf(path, sizeof(path), "%s/%s", w->dir, token);
    /* The web server serving the webroot may run as another user: the folders moat makes
     * must be readable by it whatever moat's umask (folders already there are left alone). */
    char wk[PATH_MAX];
    snprintf(wk, sizeof(wk), "%.*s", (int)(strrchr(w->dir, '/') - w->dir), w->dir);
    int had_wk = access(wk, F_OK) == 0, had_dir = access(w->dir, F_OK) == 0;
    MOAT_TRY(moat_fs_mkdir_p(w->dir, 0755, err));
    if (!had_wk) {
        (void)chmod(wk, 0755);
    }
    if (!had_dir) {
        (void)chmod(w->dir, 0755);
    }
    return moat_fs_write_atomic(path, key_authz, strlen(key_authz), 0644, err);
}

static void webroot_cleanup(struct moat_acme_solver *base, const char *ident, const char *token)
{
    struct webroot_solver *w = (struct webroot_solver *)base;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", w->dir, token);
    (void)unlink(path);
}

static const struct moat_acme_solver_ops webroot_ops = {
    .type = "http-01",
    .present = webroot_present,
    .cleanup = webroot_cleanup,
    .free = plain_free,
};

moat_rc moat_acme_webroot_solver_new(const char *webroot, struct moat_acme_solver **out,
                                     struct moat_err *err)
{
    *out = NULL;
    struct webroot_solver *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    int n = snprintf(w->dir, sizeof(w->dir), "%s/.well-known/acme-challenge", webroot);
    if (n < 0 || (size_t)n >= sizeof(w->dir)) {
        free(w);
        MOAT_FAIL(err, MOAT_E_USAGE, "the webroot path is too long");
    }
    if (access(webroot, W_OK) != 0) {
        int e = errno;
        free(w);
        moat_err_where(err, "%s", webroot);
        return moat_err_sys(err, MOAT_E_CONFIG, e, __FILE__, __LINE__,
                            "the webroot %s cannot be written (HTTP-01 answers go into its "
                            ".well-known/acme-challenge/)",
                            webroot);
    }
    w->base.ops = &webroot_ops;
    *out = &w->base;
    return MOAT_RC_OK;
}

void moat_acme_solver_free(struct moat_acme_solver *s)
{
    if (s != NULL) {
        s->ops->free(s);
    }
}

moat_rc moat_acme_alpn_ctx_new(SSL_CTX **out, struct moat_err *err)
{
    *out = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    MOAT_TRY(moat_acme_alpn_cert_new("acme.invalid", "-", &cert, &key, err));
    struct moat_tls_certset *set = NULL;
    MOAT_TRY(moat_tls_certset_new(cert, NULL, key, "TLS-ALPN-01 stand-in", NULL, 0, &set, err));
    static const char *const alpn[] = {MOAT_ACME_TLS_ALPN};
    struct moat_tls_opts o = {.sets = &set, .nsets = 1, .alpn = alpn, .nalpn = 1};
    moat_rc rc = moat_tls_ctx_new(&o, out, err);
    moat_tls_certset_unref(set);
    return rc;
}
