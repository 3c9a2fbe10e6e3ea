/*
 * verify.c: trust loading, the recording verify callback, and the words for a failed
 * certificate check (the kinds themselves come from pki/verify.h).
 */
#include "client/verify.h"

#include "client/internal.h"
#include "pki/chain.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define sk_X509_pop_free_all(sk) sk_X509_pop_free((sk), X509_free)

static int vrec_idx = -1;
static pthread_once_t vrec_once = PTHREAD_ONCE_INIT;

static void vrec_idx_init(void)
{
    vrec_idx = SSL_get_ex_new_index(0, "moat client verify record", NULL, NULL, NULL);
}

static void append(char *out, size_t outlen, const char *s)
{
    size_t l = strlen(out);
    if (l + 1 < outlen) {
        snprintf(out + l, outlen - l, "%s", s);
    }
}

static moat_rc load_certs(const char *path, STACK_OF(X509) * *out, struct moat_err *err)
{
    struct moat_chain *c = NULL;
    MOAT_TRY(moat_chain_load(path, &c, err));
    STACK_OF(X509) *sk = sk_X509_new_null();
    int ok = sk != NULL && sk_X509_push(sk, c->leaf) > 0;
    if (ok) {
        X509_up_ref(c->leaf);
    }
    for (int i = 0; ok && i < sk_X509_num(c->extra); i++) {
        X509 *x = sk_X509_value(c->extra, i);
        ok = sk_X509_push(sk, x) > 0;
        if (ok) {
            X509_up_ref(x);
        }
    }
    moat_chain_free(c);
    if (!ok) {
        sk_X509_pop_free_all(sk);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    *out = sk;
    return MOAT_RC_OK;
}

static moat_rc load_crls(X509_STORE *st, const char *path, struct moat_err *err)
{
    BIO *b = BIO_new_file(path, "r");
    if (b == NULL) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL_SSL(err, MOAT_E_NOTFOUND, "cannot read the CRL file %s", path);
    }
    int n = 0;
    for (;;) {
        X509_CRL *crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
        if (crl == NULL) {
            break;
        }
        int ok = X509_STORE_add_crl(st, crl) == 1;
        X509_CRL_free(crl);
        if (!ok) {
            BIO_free(b);
            MOAT_FAIL_SSL(err, MOAT_E_CERT, "cannot use the CRL in %s", path);
        }
        n++;
    }
    BIO_free(b);
    ERR_clear_error(); /* the read loop ends with "no start line" */
    if (n == 0) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_CERT, "%s holds no PEM CRL (-----BEGIN X509 CRL-----)", path);
    }
    /* Leaf only: intermediates' CRLs are rarely at hand, and a missing one would fail every
     * connection (X509_V_FLAG_CRL_CHECK_ALL would demand them). */
    X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    return MOAT_RC_OK;
}

static void local_ca_path(const struct moat_client_opts *o, char *out, size_t outlen)
{
    out[0] = '\0';
    if (o->no_local_ca) {
        return;
    }
    const char *dir = o->state_dir;
    if (dir == NULL || dir[0] == '\0') {
        dir = getenv("MOAT_STATE");
    }
    if (dir != NULL && dir[0] != '\0') {
        snprintf(out, outlen, "%s/ca/root.pem", dir);
    } else {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0') {
            return;
        }
        snprintf(out, outlen, "%s/.local/share/moat/ca/root.pem", home);
    }
    if (access(out, R_OK) != 0) {
        out[0] = '\0';
    }
}

moat_rc moat_client_trust_load(const struct moat_client_opts *o, struct moat_client_trust *t,
                               struct moat_err *err)
{
    memset(t, 0, sizeof(*t));
    const char *files[2];
    size_t n = 0;
    if (!o->no_default_trust) {
        local_ca_path(o, t->local_path, sizeof(t->local_path));
        if (t->local_path[0] != '\0') {
            files[n++] = t->local_path;
        }
    }
    if (o->cafile != NULL) {
        snprintf(t->cafile, sizeof(t->cafile), "%s", o->cafile);
        files[n++] = o->cafile;
    }
    MOAT_TRY(moat_trust_store_new(files, n, !o->no_default_trust, &t->store, err));
    moat_rc rc = MOAT_RC_OK;
    if (t->local_path[0] != '\0') {
        rc = load_certs(t->local_path, &t->local_roots, err);
    }
    if (moat_ok(rc) && o->cafile != NULL) {
        rc = load_certs(o->cafile, &t->cafile_roots, err);
    }
    if (moat_ok(rc) && o->crl != NULL) {
        rc = load_crls(t->store, o->crl, err);
    }
    if (!moat_ok(rc)) {
        moat_client_trust_clear(t);
        return rc;
    }
    if (!o->no_default_trust) {
        append(t->desc, sizeof(t->desc), "the system store");
    }
    if (t->local_path[0] != '\0') {
        append(t->desc, sizeof(t->desc), t->desc[0] ? ", moat's local CA (" : "moat's local CA (");
        append(t->desc, sizeof(t->desc), t->local_path);
        append(t->desc, sizeof(t->desc), ")");
    }
    if (o->cafile != NULL) {
        append(t->desc, sizeof(t->desc), t->desc[0] ? ", --cafile " : "--cafile ");
        append(t->desc, sizeof(t->desc), o->cafile);
    }
    if (t->desc[0] == '\0') {
        append(t->desc, sizeof(t->desc), "no root at all (--no-default-trust without --cafile)");
    }
    return MOAT_RC_OK;
}

void moat_client_trust_clear(struct moat_client_trust *t)
{
    X509_STORE_free(t->store);
    sk_X509_pop_free_all(t->local_roots);
    sk_X509_pop_free_all(t->cafile_roots);
    memset(t, 0, sizeof(*t));
}

static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct moat_client_vrec *v = ssl ? SSL_get_ex_data(ssl, vrec_idx) : NULL;
    if (v == NULL) {
        return ok;
    }
    if (v->sent == NULL) {
        /* For a TLS peer, the untrusted list is exactly the chain as sent, leaf first. */
        STACK_OF(X509) *u = X509_STORE_CTX_get0_untrusted(sctx);
        v->sent = u ? X509_chain_up_ref(u) : NULL;
    }
    if (!ok && v->err == 0) {
        v->err = X509_STORE_CTX_get_error(sctx);
        v->depth = X509_STORE_CTX_get_error_depth(sctx);
        X509 *c = X509_STORE_CTX_get_current_cert(sctx);
        if (c != NULL && X509_up_ref(c) == 1) {
            v->err_cert = c;
        }
        v->built = X509_STORE_CTX_get1_chain(sctx);
    }
    return v->insecure ? 1 : ok;
}

moat_rc moat_client_verify_opts(struct moat_client_trust *t, struct moat_tls_client_opts *o,
                                struct moat_err *err)
{
    pthread_once(&vrec_once, vrec_idx_init);
    if (vrec_idx < 0) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot register the verify record");
    }
    o->store = t->store;
    o->verify_cb = verify_cb;
    return MOAT_RC_OK;
}

moat_rc moat_client_verify_ssl(SSL *ssl, struct moat_client_vrec *v, struct moat_err *err)
{
    if (SSL_set_ex_data(ssl, vrec_idx, v) != 1) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot attach the verify record");
    }
    return MOAT_RC_OK;
}

void moat_client_vrec_clear(struct moat_client_vrec *v)
{
    X509_free(v->err_cert);
    sk_X509_pop_free_all(v->sent);
    sk_X509_pop_free_all(v->built);
    v->err_cert = NULL;
    v->sent = v->built = NULL;
    v->err = 0;
}

static void name_line(const X509_NAME *n, char *out, size_t outlen)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL) {
        return;
    }
    X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *p = NULL;
    long len = BIO_get_mem_data(b, &p);
    if (len > 0 && p != NULL) {
        size_t l = (size_t)len < outlen ? (size_t)len : outlen - 1;
        memcpy(out, p, l);
        out[l] = '\0';
    }
    BIO_free(b);
    if (out[0] == '\0') {
        snprintf(out, outlen, "(empty name)");
    }
}

static void time_line(const ASN1_TIME *t, char *out, size_t outlen)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        snprintf(out, outlen, "?");
        return;
    }
    strftime(out, outlen, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Whole days from `now` to t (negative when t is past). */
static long days_until(const ASN1_TIME *t, time_t now)
{
    ASN1_TIME *n = ASN1_TIME_set(NULL, now);
    int day = 0, sec = 0;
    long out = 0;
    if (n != NULL && t != NULL && ASN1_TIME_diff(&day, &sec, n, t) == 1) {
        out = day;
    }
    ASN1_TIME_free(n);
    return out;
}

static void san_line(X509 *x, char *out, size_t outlen)
{
    out[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char one[300] = "";
        if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
            const ASN1_IA5STRING *s = g->d.ia5;
            const char *tag = g->type == GEN_DNS ? "DNS" : g->type == GEN_EMAIL ? "email" : "URI";
            snprintf(one, sizeof(one), "%s:%.*s", tag, s->length > 250 ? 250 : s->length,
                     (const char *)s->data);
        } else if (g->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN] = "?";
            const ASN1_OCTET_STRING *s = g->d.ip;
            if (s->length == 4) {
                inet_ntop(AF_INET, s->data, ip, sizeof(ip));
            } else if (s->length == 16) {
                inet_ntop(AF_INET6, s->data, ip, sizeof(ip));
            }
            snprintf(one, sizeof(one), "IP:%s", ip);
        } else {
            continue;
        }
        if (out[0] != '\0') {
            append(out, outlen, ", ");
        }
        append(out, outlen, one);
    }
    GENERAL_NAMES_free(gens);
}

static void key_line(X509 *x, char *out, size_t outlen)
{
    EVP_PKEY *k = X509_get0_pubkey(x);
    if (k == NULL) {
        snprintf(out, outlen, "?");
        return;
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        char g[64] = "";
        size_t gl = 0;
        if (EVP_PKEY_get_group_name(k, g, sizeof(g), &gl) != 1) {
            snprintf(g, sizeof(g), "?");
        }
        const char *nice = strcmp(g, "prime256v1") == 0  ? "P-256"
                           : strcmp(g, "secp384r1") == 0 ? "P-384"
                           : strcmp(g, "secp521r1") == 0 ? "P-521"
                                                         : g;
        moat_client__fmt(out, outlen, "EC %s", nice);
    } else if (EVP_PKEY_is_a(k, "RSA") || EVP_PKEY_is_a(k, "RSA-PSS")) {
        snprintf(out, outlen, "RSA %d", EVP_PKEY_get_bits(k));
    } else {
        snprintf(out, outlen, "%s", EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "?");
    }
}

void moat_client_cert_describe(X509 *x, time_t now, struct moat_client_cert *out)
{
    memset(out, 0, sizeof(*out));
    name_line(X509_get_subject_name(x), out->subject, sizeof(out->subject));
    name_line(X509_get_issuer_name(x), out->issuer, sizeof(out->issuer));
    time_line(X509_get0_notBefore(x), out->not_before, sizeof(out->not_before));
    time_line(X509_get0_notAfter(x), out->not_after, sizeof(out->not_after));
    out->days_left = days_until(X509_get0_notAfter(x), now);
    out->days_to_start = days_until(X509_get0_notBefore(x), now);
    san_line(x, out->names, sizeof(out->names));
    key_line(x, out->key, sizeof(out->key));
    const char *sig = OBJ_nid2ln(X509_get_signature_nid(x));
    snprintf(out->sig, sizeof(out->sig), "%s", sig ? sig : "?");
    out->is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
    out->self_signed = X509_self_signed(x, 0) == 1;
    ERR_clear_error();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1) {
        size_t o = 0;
        for (unsigned i = 0; i < 16 && i < mdlen && o + 4 < sizeof(out->sha256); i++) {
            o += (size_t)snprintf(out->sha256 + o, sizeof(out->sha256) - o, "%s%02X", i ? ":" : "",
                                  md[i]);
        }
    }
}

static int in_stack(STACK_OF(X509) * sk, X509 *x)
{
    for (int i = 0; sk != NULL && i < sk_X509_num(sk); i++) {
        if (X509_cmp(sk_X509_value(sk, i), x) == 0) {
            return 1;
        }
    }
    return 0;
}

void moat_client_trust_source(const struct moat_client_trust *t, X509 *root, int trusted, char *out,
                              size_t outlen)
{
    out[0] = '\0';
    if (in_stack(t->cafile_roots, root)) {
        moat_client__fmt(out, outlen, "--cafile %s", t->cafile);
    } else if (in_stack(t->local_roots, root)) {
        moat_client__fmt(out, outlen, "moat's local CA (%s)", t->local_path);
    } else if (trusted) {
        moat_client__fmt(out, outlen, "the system store");
    }
}

static void eku_line(X509 *x, char *out, size_t outlen)
{
    out[0] = '\0';
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    for (int i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku); i++) {
        const char *sn = OBJ_nid2sn(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)));
        if (out[0] != '\0') {
            append(out, outlen, ", ");
        }
        append(out, outlen, sn ? sn : "?");
    }
    EXTENDED_KEY_USAGE_free(eku);
}

/* The specifics of a certificate failure, in the hop's own terms. */
static void explain(const struct moat_client_vrec *v, const struct moat_client_trust *t,
                    struct moat_client_hop *h)
{
    const struct moat_client_cert *leaf = h->nsent > 0 ? &h->sent[0] : NULL;
    struct moat_client_cert errc;
    memset(&errc, 0, sizeof(errc));
    if (v->err_cert != NULL) {
        moat_client_cert_describe(v->err_cert, time(NULL), &errc);
    } else if (leaf != NULL) {
        errc = *leaf;
    }
    const char *which = h->verify_depth == 0 ? "the server's certificate" : "the intermediate";
    char *d = h->detail;
    size_t dl = sizeof(h->detail);
    switch (h->vkind) {
    case MOAT_V_EXPIRED:
        moat_client__fmt(d, dl, "%s %s expired on %s (%ld day%s ago)", which, errc.subject,
                         errc.not_after, -errc.days_left, errc.days_left == -1 ? "" : "s");
        break;
    case MOAT_V_NOT_YET_VALID:
        moat_client__fmt(d, dl,
                         "%s %s is valid only from %s (in %ld day%s); check this machine's "
                         "clock and the server's",
                         which, errc.subject, errc.not_before, errc.days_to_start,
                         errc.days_to_start == 1 ? "" : "s");
        break;
    case MOAT_V_NAME_MISMATCH:
        if (leaf != NULL && leaf->names[0] != '\0') {
            moat_client__fmt(d, dl, "asked for \"%s\", but the certificate is only for: %s",
                             h->url.host, leaf->names);
        } else {
            moat_client__fmt(d, dl,
                             "asked for \"%s\", but the certificate has no subjectAltName (its "
                             "subject %s is not checked: RFC 6125 §6.4.4)",
                             h->url.host, leaf ? leaf->subject : "?");
        }
        break;
    case MOAT_V_SELF_SIGNED:
        moat_client__fmt(d, dl,
                         "the server sent a self-signed certificate (%s), which is not among the "
                         "trusted roots (%s)",
                         errc.subject, t->desc);
        break;
    case MOAT_V_MISSING_INTERMEDIATE:
        if (h->nsent <= 1) {
            moat_client__fmt(
                d, dl,
                "the server sent only its own certificate; its issuer \"%s\" was "
                "neither sent nor found among the trusted roots (%s). If that issuer is "
                "an intermediate, the server must send it after the leaf",
                errc.issuer, t->desc);
        } else {
            moat_client__fmt(d, dl,
                             "the server sent %zu certificates, but none of them is the issuer "
                             "\"%s\" of %s",
                             h->nsent, errc.issuer, errc.subject);
        }
        break;
    case MOAT_V_UNKNOWN_ISSUER:
        moat_client__fmt(d, dl,
                         "the chain ends at \"%s\", which is not among the roots trusted here (%s)",
                         errc.self_signed ? errc.subject : errc.issuer, t->desc);
        break;
    case MOAT_V_BAD_KEY_USAGE: {
        char eku[256] = "";
        if (v->err_cert != NULL) {
            eku_line(v->err_cert, eku, sizeof(eku));
        }
        moat_client__fmt(d, dl, "%s %s may not be used by a TLS server%s%s%s", which, errc.subject,
                         eku[0] ? " (its extendedKeyUsage is " : "", eku,
                         eku[0] ? ", no serverAuth)" : "");
        break;
    }
    case MOAT_V_REVOKED: {
        char serial[80] = "?";
        if (v->err_cert != NULL) {
            BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(v->err_cert), NULL);
            char *hex = bn ? BN_bn2hex(bn) : NULL;
            snprintf(serial, sizeof(serial), "%s", hex ? hex : "?");
            OPENSSL_free(hex);
            BN_free(bn);
        }
        moat_client__fmt(d, dl,
                         "%s %s (serial %s) is listed as revoked in the CRL given with --crl",
                         which, errc.subject, serial);
        break;
    }
    default:
        if (h->verify_code == X509_V_ERR_UNABLE_TO_GET_CRL) {
            moat_client__fmt(d, dl,
                             "--crl holds no CRL from \"%s\", the issuer of %s, so its "
                             "revocation cannot be checked (give that issuer's CRL, or drop "
                             "--crl)",
                             errc.issuer, errc.subject);
            break;
        }
        if (h->verify_code == X509_V_ERR_CRL_HAS_EXPIRED ||
            h->verify_code == X509_V_ERR_CRL_NOT_YET_VALID) {
            moat_client__fmt(d, dl,
                             "the CRL given with --crl for \"%s\" is %s (fetch a "
                             "current one from the issuer)",
                             errc.issuer,
                             h->verify_code == X509_V_ERR_CRL_HAS_EXPIRED ? "out of date"
                                                                          : "not valid yet");
            break;
        }
        moat_client__fmt(d, dl, "%s %s: %s (OpenSSL verify error %d)", which, errc.subject,
                         X509_verify_cert_error_string(h->verify_code), h->verify_code);
        break;
    }
}

int moat_client_verify_collect(SSL *ssl, const struct moat_client_vrec *v,
                               const struct moat_client_trust *t, time_t now,
                               struct moat_client_hop *h)
{
    STACK_OF(X509) *sent = v->sent ? v->sent : SSL_get_peer_cert_chain(ssl);
    h->nsent = 0;
    for (int i = 0; sent != NULL && i < sk_X509_num(sent) && h->nsent < MOAT_CLIENT_MAX_CHAIN;
         i++) {
        moat_client_cert_describe(sk_X509_value(sent, i), now, &h->sent[h->nsent++]);
    }
    h->verify_code = v->err;
    h->verify_depth = v->depth;
    STACK_OF(X509) *path = v->err ? v->built : SSL_get0_verified_chain(ssl);
    h->npath = 0;
    for (int i = 0; path != NULL && i < sk_X509_num(path) && h->npath < MOAT_CLIENT_MAX_CHAIN;
         i++) {
        moat_client_cert_describe(sk_X509_value(path, i), now, &h->path[h->npath++]);
    }
    int n = path ? sk_X509_num(path) : 0;
    h->path_complete = v->err == 0 && n > 0 && h->nsent > 0;
    h->root_source[0] = '\0';
    if (n > 0) {
        moat_client_trust_source(t, sk_X509_value(path, n - 1), h->path_complete, h->root_source,
                                 sizeof(h->root_source));
    }
    if (v->err == 0) {
        h->vkind = MOAT_V_OK;
        return 0;
    }
    h->vkind = moat_verify_kind_from_x509(v->err, v->err_cert);
    explain(v, t, h);
    return 1;
}
