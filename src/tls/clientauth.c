/*
 * clientauth.c: server-side client certificates (see clientauth.h).
 *
 * Pattern language of allow-lists: `kind:glob` or a bare glob. Kinds: cn, dns, email, uri, ip,
 * subject (the RFC 2253 one-line subject, e.g. "CN=alice,O=Example"). A bare glob is tried
 * against the CN and every DNS, email, URI and IP SAN. `*` matches any run of characters,
 * dots and slashes included ("*.svc.example" matches "a.b.svc.example"), `?` one character;
 * matching ignores ASCII case except for URIs.
 */
#include "tls/clientauth.h"

#include "pki/crl.h"
#include "pki/verify.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int ctx_idx = -1;

static void idx_init(void)
{
    ctx_idx = SSL_CTX_get_ex_new_index(0, "moat client auth", NULL, NULL, NULL);
}

void moat_tls_client_auth_free(struct moat_tls_client_auth *a)
{
    if (a == NULL) {
        return;
    }
    X509_STORE_free(a->store);
    sk_X509_NAME_pop_free(a->ca_names, X509_NAME_free);
    for (size_t i = 0; i < a->nallow; i++) {
        free(a->allow[i]);
    }
    free(a->allow);
    free(a);
}

static moat_rc add_cas(struct moat_tls_client_auth *a, const char *path, struct moat_err *err)
{
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL_SSL(err, MOAT_E_CONFIG, "cannot read the client CA file");
    }
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int is_ca = X509_check_ca(x) > 0;
        int ok = is_ca && X509_STORE_add_cert(a->store, x) == 1;
        X509_NAME *nm = ok ? X509_NAME_dup(X509_get_subject_name(x)) : NULL;
        if (nm != NULL && sk_X509_NAME_push(a->ca_names, nm) <= 0) {
            X509_NAME_free(nm);
            nm = NULL;
        }
        X509_free(x);
        if (!is_ca) {
            BIO_free(bio);
            moat_err_where(err, "%s", path);
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "holds a certificate that is not a CA: client_ca takes the CA certificates "
                      "that issue client certificates (e.g. the root.pem of `moat ca init`)");
        }
        if (nm == NULL) {
            BIO_free(bio);
            MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot add a client CA");
        }
        n++;
    }
    BIO_free(bio);
    ERR_clear_error(); /* the end of the PEM stream reads as an error */
    if (n == 0) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_CONFIG, "holds no PEM certificate (client_ca needs CA certificates)");
    }
    return MOAT_RC_OK;
}

static moat_rc add_one_crl(struct moat_tls_client_auth *a, const char *path, X509_CRL *crl,
                           EVP_MD_CTX *md, struct moat_err *err)
{
    /* A CRL from a CA we do not trust for clients would revoke nothing: say so now. */
    int signed_by_ours = 0;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(a->store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs) && !signed_by_ours; i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca != NULL && X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1) {
            signed_by_ours = 1;
        }
    }
    ERR_clear_error();
    if (!signed_by_ours) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "holds a CRL that is not signed by any client_ca of this site: list the CA "
                  "that issued it with client_ca");
    }
    unsigned char *der = NULL;
    int derlen = i2d_X509_CRL(crl, &der);
    if (derlen > 0) {
        EVP_DigestUpdate(md, der, (size_t)derlen);
    }
    OPENSSL_free(der);
    if (X509_STORE_add_crl(a->store, crl) != 1) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot add the CRL %s", path);
    }
    return MOAT_RC_OK;
}

/* Every CRL of the file (a PEM bundle, e.g. `moat ca crl`'s, or one DER CRL). */
static moat_rc add_crl(struct moat_tls_client_auth *a, const char *path, EVP_MD_CTX *md,
                       struct moat_err *err)
{
    STACK_OF(X509_CRL) *crls = NULL;
    moat_rc rc = moat_crl_load(path, &crls, err);
    if (!moat_ok(rc)) {
        if (err != NULL && err->where[0] == '\0') {
            moat_err_where(err, "%s", path);
        }
        return moat_rc_of(MOAT_E_CONFIG);
    }
    for (int i = 0; moat_ok(rc) && i < sk_X509_CRL_num(crls); i++) {
        rc = add_one_crl(a, path, sk_X509_CRL_value(crls, i), md, err);
    }
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}

moat_rc moat_tls_client_auth_new(enum moat_client_auth_mode mode, const char *const *ca_files,
                                 size_t nca, const char *const *crl_files, size_t ncrl, int depth,
                                 const char *const *allow, size_t nallow,
                                 struct moat_tls_client_auth **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_tls_client_auth *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    a->mode = mode;
    a->depth = depth > 0 ? depth : 4;
    a->store = X509_STORE_new();
    a->ca_names = sk_X509_NAME_new_null();
    a->allow = nallow ? calloc(nallow, sizeof(char *)) : NULL;
    moat_rc rc = MOAT_RC_OK;
    if (a->store == NULL || a->ca_names == NULL || (nallow && a->allow == NULL)) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    for (size_t i = 0; moat_ok(rc) && i < nallow; i++) {
        a->allow[i] = strdup(allow[i]);
        rc = a->allow[i] ? MOAT_RC_OK
                         : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        a->nallow = i + 1;
    }
    for (size_t i = 0; moat_ok(rc) && i < nca; i++) {
        rc = add_cas(a, ca_files[i], err);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (moat_ok(rc) && (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)) {
        rc = moat_err_ssl(err, MOAT_E_NOMEM, __FILE__, __LINE__, "cannot digest the CRLs");
    }
    for (size_t i = 0; moat_ok(rc) && i < ncrl; i++) {
        rc = add_crl(a, crl_files[i], md, err);
    }
    unsigned int dlen = 0;
    if (moat_ok(rc) && EVP_DigestFinal_ex(md, a->crl_digest, &dlen) != 1) {
        rc = moat_err_ssl(err, MOAT_E_NOMEM, __FILE__, __LINE__, "cannot digest the CRLs");
    }
    EVP_MD_CTX_free(md);
    if (moat_ok(rc) && ncrl > 0) {
        /* Every link is checked: a revoked intermediate refuses all its clients. */
        X509_STORE_set_flags(a->store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    if (!moat_ok(rc)) {
        moat_tls_client_auth_free(a);
        return rc;
    }
    *out = a;
    return MOAT_RC_OK;
}

/* ---- identities and patterns ----------------------------------------------------------- */

static int glob_match(const char *pattern, const char *value, int casefold)
{
    return value[0] != '\0' && fnmatch(pattern, value, casefold ? FNM_CASEFOLD : 0) == 0;
}

static void name_oneline(const X509_NAME *nm, char *out, size_t outlen)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL) {
        return;
    }
    if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        int n = BIO_read(b, out, (int)outlen - 1);
        out[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
}

static void cn_of(X509 *x, char *out, size_t outlen)
{
    out[0] = '\0';
    int i = X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_commonName, -1);
    if (i < 0) {
        return;
    }
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(X509_get_subject_name(x), i));
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, s);
    if (n > 0) {
        snprintf(out, outlen, "%.*s", n, (const char *)u);
    }
    OPENSSL_free(u);
}

/* Call fn(kind, value) for each SAN that is a string; stops when fn returns non-zero. */
static int each_san(X509 *x, int (*fn)(const char *kind, const char *value, void *arg), void *arg)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int hit = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !hit; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char buf[512];
        const char *kind = NULL;
        buf[0] = '\0';
        if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
            const ASN1_IA5STRING *s = g->d.ia5;
            /* An embedded NUL would let "a.example\0.evil" pose as "a.example": skip it. */
            if ((size_t)s->length < sizeof(buf) && memchr(s->data, 0, (size_t)s->length) == NULL) {
                memcpy(buf, s->data, (size_t)s->length);
                buf[s->length] = '\0';
                kind = g->type == GEN_DNS ? "dns" : g->type == GEN_EMAIL ? "email" : "uri";
            }
        } else if (g->type == GEN_IPADD) {
            /* Written the way the config writes them (RFC 5952 for IPv6), so "ip:::1" matches. */
            int af = g->d.ip->length == 4 ? AF_INET : g->d.ip->length == 16 ? AF_INET6 : 0;
            if (af != 0 && inet_ntop(af, g->d.ip->data, buf, sizeof(buf)) != NULL) {
                kind = "ip";
            }
        }
        if (kind != NULL) {
            hit = fn(kind, buf, arg);
        }
    }
    GENERAL_NAMES_free(gens);
    return hit;
}

struct match_arg {
    const char *kind; /* NULL: any */
    const char *glob;
};

static int san_matches(const char *kind, const char *value, void *arg)
{
    const struct match_arg *m = arg;
    if (m->kind != NULL && strcmp(m->kind, kind) != 0) {
        return 0;
    }
    return glob_match(m->glob, value, strcmp(kind, "uri") != 0);
}

static int pattern_matches(X509 *x, const char *pattern)
{
    static const char *const kinds[] = {"cn", "dns", "email", "uri", "ip", "subject"};
    struct match_arg m = {NULL, pattern};
    const char *colon = strchr(pattern, ':');
    if (colon != NULL) {
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            size_t kl = strlen(kinds[i]);
            if ((size_t)(colon - pattern) == kl && strncasecmp(pattern, kinds[i], kl) == 0) {
                m.kind = kinds[i];
                m.glob = colon + 1;
            }
        }
    }
    char buf[256];
    if (m.kind == NULL || strcmp(m.kind, "cn") == 0) {
        cn_of(x, buf, sizeof(buf));
        if (glob_match(m.glob, buf, 1)) {
            return 1;
        }
    }
    if (m.kind != NULL && strcmp(m.kind, "subject") == 0) {
        name_oneline(X509_get_subject_name(x), buf, sizeof(buf));
        return glob_match(m.glob, buf, 1);
    }
    if (m.kind != NULL && strcmp(m.kind, "cn") == 0) {
        return 0;
    }
    return each_san(x, san_matches, &m);
}

static int x509_allowed(X509 *x, const char *const *patterns, size_t n)
{
    if (n == 0) {
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (pattern_matches(x, patterns[i])) {
            return 1;
        }
    }
    return 0;
}

int moat_tls_identity_allowed(SSL *ssl, const char *const *patterns, size_t n)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    return x != NULL && x509_allowed(x, patterns, n);
}

struct san_text {
    char *out;
    size_t cap;
};

static int san_append(const char *kind, const char *value, void *arg)
{
    struct san_text *t = arg;
    size_t len = strlen(t->out);
    char up[8];
    size_t i = 0;
    for (; kind[i] && i < sizeof(up) - 1; i++) {
        up[i] = (char)(kind[i] >= 'a' && kind[i] <= 'z' ? kind[i] - 32 : kind[i]);
    }
    up[i] = '\0';
    snprintf(t->out + len, t->cap - len, "%s%s:%s", len ? ", " : "", up, value);
    return 0;
}

void moat_tls_identity_of(SSL *ssl, struct moat_tls_identity *id)
{
    memset(id, 0, sizeof(*id));
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (x == NULL) {
        return;
    }
    id->present = 1;
    long vr = SSL_get_verify_result(ssl);
    id->verified = vr == X509_V_OK;
    id->verify_error = (int)vr;
    name_oneline(X509_get_subject_name(x), id->subject, sizeof(id->subject));
    name_oneline(X509_get_issuer_name(x), id->issuer, sizeof(id->issuer));
    cn_of(x, id->cn, sizeof(id->cn));
    struct san_text t = {id->sans, sizeof(id->sans)};
    each_san(x, san_append, &t);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex != NULL) {
        snprintf(id->serial, sizeof(id->serial), "%s", hex);
    }
    OPENSSL_free(hex);
    BN_free(bn);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1) {
        size_t off = 0;
        for (unsigned int i = 0; i < mdlen && off + 3 < sizeof(id->fingerprint); i++) {
            off += (size_t)snprintf(id->fingerprint + off, sizeof(id->fingerprint) - off, "%s%02X",
                                    i ? ":" : "", md[i]);
        }
    }
    ERR_clear_error();
}

const char *moat_tls_identity_refusal(const struct moat_tls_identity *id, int allowed, char *out,
                                      size_t outlen)
{
    if (!id->present) {
        snprintf(out, outlen, "no client certificate was presented");
    } else if (!id->verified && id->verify_error == X509_V_ERR_APPLICATION_VERIFICATION) {
        snprintf(out, outlen, "the client certificate %s is not allowed here", id->subject);
    } else if (!id->verified) {
        enum moat_verify_kind k = moat_verify_kind_from_x509(id->verify_error, NULL);
        snprintf(out, outlen, "the client certificate (%s) was refused: %s", id->subject,
                 moat_verify_kind_message(k));
    } else if (!allowed) {
        snprintf(out, outlen, "the client certificate %s is not allowed here", id->subject);
    } else {
        snprintf(out, outlen, "accepted");
    }
    return out;
}

/* ---- handshake ------------------------------------------------------------------------- */

/* The last refusal on this thread: OpenSSL drops the peer certificate of a failed handshake,
 * so the subject and the reason are kept here for the log line that follows at once. */
static _Thread_local struct {
    const SSL *ssl;
    int error;
    char subject[256];
} last_refusal;

int moat_tls_client_refusal(const SSL *ssl, char *out, size_t outlen)
{
    if (last_refusal.ssl != ssl || ssl == NULL) {
        return 0;
    }
    struct moat_tls_identity id = {.present = 1, .verify_error = last_refusal.error};
    snprintf(id.subject, sizeof(id.subject), "%s", last_refusal.subject);
    moat_tls_identity_refusal(&id, 1, out, outlen);
    last_refusal.ssl = NULL;
    return 1;
}

static int verify_cb(int preverify_ok, X509_STORE_CTX *sctx)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct moat_tls_client_auth *a =
        ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx) : NULL;
    if (a == NULL) {
        return preverify_ok;
    }
    if (preverify_ok && X509_STORE_CTX_get_error_depth(sctx) == 0 && a->nallow > 0 &&
        !x509_allowed(X509_STORE_CTX_get_current_cert(sctx), (const char *const *)a->allow,
                      a->nallow)) {
        /* Not on the site's allow-list: access_denied at the handshake when required. */
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
        preverify_ok = 0;
    }
    if (a->mode == MOAT_CLIENT_AUTH_OPTIONAL) {
        /* The verdict stays in SSL_get_verify_result for the HTTP layer; the handshake goes on. */
        return 1;
    }
    if (!preverify_ok) {
        X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
        last_refusal.ssl = ssl;
        last_refusal.error = X509_STORE_CTX_get_error(sctx);
        last_refusal.subject[0] = '\0';
        if (leaf != NULL) {
            name_oneline(X509_get_subject_name(leaf), last_refusal.subject,
                         sizeof(last_refusal.subject));
        }
    }
    return preverify_ok;
}

moat_rc moat_tls_client_auth_install(const struct moat_tls_client_auth *a, SSL_CTX *ctx,
                                     struct moat_err *err)
{
    pthread_once(&idx_once, idx_init);
    if (ctx_idx < 0 || !SSL_CTX_set_ex_data(ctx, ctx_idx, (void *)a)) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot attach client authentication");
    }
    if (a == NULL || a->mode == MOAT_CLIENT_AUTH_OFF) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return MOAT_RC_OK;
    }
    int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
    if (a->mode == MOAT_CLIENT_AUTH_REQUIRE) {
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(ctx, mode, verify_cb);
    SSL_CTX_set_verify_depth(ctx, a->depth);
    if (SSL_CTX_set1_verify_cert_store(ctx, a->store) != 1) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot set the client CA store");
    }
    STACK_OF(X509_NAME) *names = sk_X509_NAME_deep_copy(a->ca_names, X509_NAME_dup, X509_NAME_free);
    if (names == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot set the client CA names");
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    return MOAT_RC_OK;
}
