/*
 * tls_helpers.h: shared by the tls/ unit tests. Makes throw-away certificates with the OpenSSL
 * API in a temporary folder, loads them into certificate sets the way the server does (the
 * files source), builds server contexts from those sets, and drives a client SSL and a server
 * SSL against each other through a BIO pair, so handshakes run in-process with no network.
 */
#ifndef MOAT_TEST_TLS_HELPERS_H
#define MOAT_TEST_TLS_HELPERS_H

#include "cert/source.h"
#include "tls/certset.h"
#include "tls/ctx.h"

#include <ftw.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char th_dir[64];

static inline int th_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static inline void th_dir_make(void)
{
    snprintf(th_dir, sizeof(th_dir), "/tmp/moat-tls-test-XXXXXX");
    if (mkdtemp(th_dir) == NULL) {
        perror("mkdtemp");
        th_dir[0] = '\0';
    }
}

static inline void th_dir_remove(void)
{
    if (th_dir[0] != '\0') {
        nftw(th_dir, th_rm, 8, FTW_DEPTH | FTW_PHYS);
    }
}

/* "<dir>/<name>" in a static ring, good for a few paths at a time. */
static inline const char *th_path(const char *name)
{
    static char ring[16][128];
    static int at;
    char *p = ring[at++ % 16];
    snprintf(p, 128, "%s/%s", th_dir, name);
    return p;
}

static inline EVP_PKEY *th_key(const char *type)
{
    if (strcmp(type, "rsa") == 0) {
        return EVP_RSA_gen(2048);
    }
    if (strcmp(type, "p384") == 0) {
        return EVP_EC_gen("P-384");
    }
    return EVP_EC_gen("P-256");
}

/* A certificate for `cn` (also its DNS SAN), signed by issuer_key (self-signed when NULL). */
static inline X509 *th_x509(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                            int ca)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    unsigned char serial[8];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    char san[300];
    snprintf(san, sizeof(san), "DNS:%s", cn);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, &v3, ca ? NID_basic_constraints : NID_subject_alt_name,
                            ca ? "critical,CA:TRUE" : san);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
    return x;
}

static EVP_PKEY *th_ca_key;
static X509 *th_ca;

/* Write <name>.crt (leaf then the test CA) and <name>.key; returns 1 on success. */
static inline int th_cert_files(const char *name, const char *type, const char *cn)
{
    if (th_ca == NULL) {
        th_ca_key = th_key("ec");
        th_ca = th_x509(th_ca_key, "moat test CA", NULL, NULL, 1);
    }
    EVP_PKEY *key = th_key(type);
    X509 *leaf = th_x509(key, cn, th_ca, th_ca_key, 0);
    char file[80];
    snprintf(file, sizeof(file), "%s.crt", name);
    FILE *f = fopen(th_path(file), "w");
    int ok = f && PEM_write_X509(f, leaf) && PEM_write_X509(f, th_ca);
    if (f) {
        fclose(f);
    }
    snprintf(file, sizeof(file), "%s.key", name);
    f = fopen(th_path(file), "w");
    ok = ok && f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (f) {
        fclose(f);
    }
    X509_free(leaf);
    EVP_PKEY_free(key);
    return ok;
}

static inline void th_free_ca(void)
{
    X509_free(th_ca);
    EVP_PKEY_free(th_ca_key);
    th_ca = NULL;
    th_ca_key = NULL;
}

/* The two files th_cert_files wrote for <name>. */
struct th_pair_files {
    const char *cert_path;
    const char *key_path;
};

static inline struct th_pair_files th_files(const char *name)
{
    static char ring[8][2][128];
    static int at;
    char(*slot)[128] = ring[at++ % 8];
    snprintf(slot[0], 128, "%s/%s.crt", th_dir, name);
    snprintf(slot[1], 128, "%s/%s.key", th_dir, name);
    return (struct th_pair_files){slot[0], slot[1]};
}

/* Load `cert_path` and `key_path` into a set the way the server loads a site's `cert`: through
 * the files source (parsed once by pki/, then its start-up checks), quietly. *out is the set
 * (one reference for the caller) or NULL on failure, err says why. */
static inline moat_rc th_set_load(const char *cert_path, const char *key_path,
                                  struct moat_tls_certset **out, struct moat_err *err)
{
    struct moat_cert_files_opts o = {.cert_path = cert_path, .key_path = key_path, .quiet = 1};
    struct moat_cert_source *src = NULL;
    moat_rc rc = moat_cert_source_files_new(&o, &src, err);
    if (!moat_ok(rc)) {
        *out = NULL;
        return rc;
    }
    rc = moat_cert_source_load(src, out, err);
    moat_cert_source_free(src);
    return rc;
}

/* The set of the files th_cert_files wrote for <name>; NULL (said on stderr) on failure. */
static inline struct moat_tls_certset *th_set(const char *name)
{
    struct th_pair_files f = th_files(name);
    struct moat_tls_certset *s = NULL;
    struct moat_err err = {0};
    if (!moat_ok(th_set_load(f.cert_path, f.key_path, &s, &err))) {
        fprintf(stderr, "th_set %s: %s: %s\n", name, err.where, err.msg);
    }
    return s;
}

/* moat_tls_ctx_new with the options of `o` and, instead of its sets, the sets of the `n` (at
 * most 8) names given to th_cert_files. A set that cannot be loaded is passed as NULL, which
 * moat_tls_ctx_new refuses. */
static inline moat_rc th_ctx_new(const struct moat_tls_opts *o, const char *const *names, size_t n,
                                 SSL_CTX **out, struct moat_err *err)
{
    struct moat_tls_certset *sets[8] = {NULL};
    struct moat_tls_opts with = *o;
    n = n < 8 ? n : 8;
    for (size_t i = 0; i < n; i++) {
        sets[i] = th_set(names[i]);
    }
    with.sets = sets;
    with.nsets = n;
    moat_rc rc = moat_tls_ctx_new(&with, out, err);
    for (size_t i = 0; i < n; i++) {
        moat_tls_certset_unref(sets[i]);
    }
    return rc;
}

/* A client context that verifies nothing (these tests are about the server's choices). */
static inline SSL_CTX *th_client_ctx(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    return c;
}

struct th_pair {
    SSL *c, *s;
    int fail_side;           /* 0 none, 'c' or 's': the side whose handshake call failed */
    unsigned long fail_code; /* OpenSSL's last error on that side */
};

static inline void th_pair_init(struct th_pair *p, SSL_CTX *cctx, SSL_CTX *sctx)
{
    memset(p, 0, sizeof(*p));
    p->c = SSL_new(cctx);
    p->s = SSL_new(sctx);
    BIO *bc, *bs;
    BIO_new_bio_pair(&bc, 0, &bs, 0);
    SSL_set_bio(p->c, bc, bc);
    SSL_set_bio(p->s, bs, bs);
    SSL_set_connect_state(p->c);
    SSL_set_accept_state(p->s);
}

static inline void th_pair_clear(struct th_pair *p)
{
    SSL_free(p->c);
    SSL_free(p->s);
    p->c = p->s = NULL;
}

static inline int th_step(SSL *ssl, int *done)
{
    if (*done) {
        return 1;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        *done = 1;
        return 1;
    }
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Run both handshakes to the end; 1 when both succeeded. For TLS 1.3 the client then reads the
 * server's NewSessionTicket so SSL_get1_session returns a resumable session. */
static inline int th_handshake(struct th_pair *p)
{
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 64 && !(cdone && sdone); i++) {
        if (!th_step(p->c, &cdone)) {
            p->fail_side = 'c';
            p->fail_code = ERR_peek_last_error();
            ERR_clear_error();
            return 0;
        }
        if (!th_step(p->s, &sdone)) {
            p->fail_side = 's';
            p->fail_code = ERR_peek_last_error();
            ERR_clear_error();
            return 0;
        }
    }
    if (!(cdone && sdone)) {
        return 0;
    }
    char b;
    ERR_clear_error();
    if (SSL_read(p->c, &b, 1) > 0) {
        return 0; /* the server sent no application data */
    }
    ERR_clear_error();
    return 1;
}

/* One whole connection; returns 1 when it succeeded and, if `resumed`, whether it resumed. */
static inline int th_connect(SSL_CTX *cctx, SSL_CTX *sctx, const char *sni, SSL_SESSION *use,
                             SSL_SESSION **got, int *resumed)
{
    struct th_pair p;
    th_pair_init(&p, cctx, sctx);
    if (sni) {
        SSL_set_tlsext_host_name(p.c, sni);
    }
    if (use) {
        SSL_set_session(p.c, use);
    }
    int ok = th_handshake(&p);
    if (ok && resumed) {
        *resumed = SSL_session_reused(p.s);
    }
    if (ok && got) {
        *got = SSL_get1_session(p.c);
    }
    /* Close properly: OpenSSL marks the session of a connection freed without close_notify as
     * not resumable. */
    if (ok) {
        SSL_shutdown(p.c);
        SSL_shutdown(p.s);
        ERR_clear_error();
    }
    th_pair_clear(&p);
    return ok;
}

/* The CN of the certificate the server presented, in `out`. */
static inline const char *th_peer_cn(SSL *c, char *out, int outlen)
{
    out[0] = '\0';
    X509 *x = SSL_get0_peer_certificate(c);
    if (x) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, outlen);
    }
    return out;
}

#endif
