/*
 * client.c: the TLS client policy (see client.h) and the two calls that apply it: one context
 * per purpose (the proxy's origin, a `moat get` run), one SSL per connection with SNI and the
 * name or address check. Every client SSL_CTX and SSL of moat is made here, so the policy
 * cannot drift between its users.
 */
#include "tls/client.h"
#include "core/priv.h"
#include "pki/key.h"

#include "tls/policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* ECDHE for forward secrecy, AEAD only (no CBC: Lucky13 and padding oracles). Wider than the
 * server's list on purpose: a client meets servers it does not choose (AES-256 first, as
 * OpenSSL orders them, and P-521 for the servers that insist on it). */
const char moat_tls_client_ciphers12[] = "ECDHE+AESGCM:ECDHE+CHACHA20";
const char moat_tls_client_groups[] = "X25519:P-256:P-384:P-521";

#define ALPN_WIRE_MAX 512

/* No passphrase prompt: an encrypted key fails at once instead of waiting on a terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static moat_rc set_policy(SSL_CTX *ctx, const struct moat_tls_client_opts *o, struct moat_err *err)
{
    int min = o->min_version ? o->min_version : MOAT_TLS_MIN_VERSION;
    int max = o->max_version ? o->max_version : MOAT_TLS_MAX_VERSION;
    if (min > max) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the lowest TLS version asked for is above the highest");
    }
    /* Set explicitly, whatever the system's openssl.cnf says, so the policy is the same on
     * every host. */
    if (SSL_CTX_set_min_proto_version(ctx, min) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, max) != 1 ||
        SSL_CTX_set_cipher_list(ctx, o->ciphers12 ? o->ciphers12 : moat_tls_client_ciphers12) !=
            1 ||
        SSL_CTX_set1_groups_list(ctx, o->groups ? o->groups : moat_tls_client_groups) != 1) {
        MOAT_FAIL_SSL(err, MOAT_E_USAGE, "cannot set the TLS policy");
    }
    uint64_t opts = MOAT_TLS_COMMON_OPTIONS;
    if (o->allow_unexpected_eof) {
        opts |= SSL_OP_IGNORE_UNEXPECTED_EOF;
    }
    SSL_CTX_set_options(ctx, opts);
    if (o->nalpn > 0) {
        unsigned char wire[ALPN_WIRE_MAX];
        size_t at = 0;
        for (size_t i = 0; i < o->nalpn; i++) {
            size_t l = o->alpn[i] ? strlen(o->alpn[i]) : 0;
            if (l == 0 || l > 255 || at + 1 + l > sizeof(wire)) {
                MOAT_FAIL(err, MOAT_E_USAGE, "bad ALPN protocol name (1 to 255 bytes each)");
            }
            wire[at++] = (unsigned char)l;
            memcpy(&wire[at], o->alpn[i], l);
            at += l;
        }
        /* 0 is success here, unlike the rest of OpenSSL. */
        if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)at) != 0) {
            MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot set the ALPN list");
        }
    }
    return MOAT_RC_OK;
}

static moat_rc set_trust(SSL_CTX *ctx, const struct moat_tls_client_opts *o, struct moat_err *err)
{
    if (o->no_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return MOAT_RC_OK;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, o->verify_cb);
    if (o->store != NULL) {
        if (X509_STORE_up_ref(o->store) != 1) {
            MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot share the trust store");
        }
        SSL_CTX_set_cert_store(ctx, o->store);
        return MOAT_RC_OK;
    }
    if (o->system_trust) {
        /* No system store is not an error: the other sources may be enough. */
        SSL_CTX_set_default_verify_paths(ctx);
    }
    if (o->ca_file != NULL && SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
        moat_err_where(err, "%s", o->ca_file);
        MOAT_FAIL_SSL(err, MOAT_E_CONFIG, "cannot load the CA file %s", o->ca_file);
    }
    if (o->ca_file_if_readable != NULL && access(o->ca_file_if_readable, R_OK) == 0) {
        (void)SSL_CTX_load_verify_locations(ctx, o->ca_file_if_readable, NULL);
    }
    ERR_clear_error();
    return MOAT_RC_OK;
}

static moat_rc load_client_cert(SSL_CTX *ctx, const char *cert, const char *key,
                                struct moat_err *err);

/* Read as root until the privileges are dropped, as the sites' keys are. */
static moat_rc set_client_cert(SSL_CTX *ctx, const char *cert, const char *key,
                               struct moat_err *err)
{
    int raised = moat_priv_raise();
    moat_rc rc = moat_priv_user() != NULL ? moat_key_file_check_mode(key, err) : MOAT_RC_OK;
    if (moat_ok(rc)) {
        rc = load_client_cert(ctx, cert, key, err);
    }
    moat_priv_restore(raised);
    return rc;
}

static moat_rc load_client_cert(SSL_CTX *ctx, const char *cert, const char *key,
                                struct moat_err *err)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        moat_err_where(err, "%s", cert);
        MOAT_FAIL_SSL(err, MOAT_E_CERT, "cannot load the client certificate %s", cert);
    }
    EVP_PKEY *pk = NULL;
    BIO *b = BIO_new_file(key, "r");
    if (b != NULL) {
        pk = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
        BIO_free(b);
    }
    if (pk == NULL) {
        moat_err_where(err, "%s", key);
        MOAT_FAIL_SSL(err, MOAT_E_CERT,
                      "cannot load the client key %s (it must be an unencrypted PEM key)", key);
    }
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), pk) != 1) {
        EVP_PKEY_free(pk);
        ERR_clear_error();
        moat_err_where(err, "%s", key);
        MOAT_FAIL(err, MOAT_E_CERT, "the key %s does not belong to the certificate %s", key, cert);
    }
    int used = SSL_CTX_use_PrivateKey(ctx, pk);
    EVP_PKEY_free(pk);
    if (used != 1) {
        MOAT_FAIL_SSL(err, MOAT_E_CERT, "cannot use the key %s", key);
    }
    return MOAT_RC_OK;
}

moat_rc moat_tls_client_ctx_new(const struct moat_tls_client_opts *o, SSL_CTX **out,
                                struct moat_err *err)
{
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot create a TLS client context");
    }
    moat_rc rc = set_policy(ctx, o, err);
    if (moat_ok(rc)) {
        rc = set_trust(ctx, o, err);
    }
    if (moat_ok(rc) && o->cert_path != NULL) {
        rc = set_client_cert(ctx, o->cert_path, o->key_path ? o->key_path : o->cert_path, err);
    }
    if (!moat_ok(rc)) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return MOAT_RC_OK;
}

int moat_tls_client_host_ip(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return 4;
    }
    return inet_pton(AF_INET6, host, &a6) == 1 ? 6 : 0;
}

moat_rc moat_tls_client_ssl_new(SSL_CTX *ctx, const char *host, SSL **out, struct moat_err *err)
{
    *out = NULL;
    if (host == NULL || host[0] == '\0') {
        MOAT_FAIL(err, MOAT_E_USAGE, "a TLS connection needs the server's name or address");
    }
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot start TLS");
    }
    SSL_set_connect_state(ssl);
    int ip = moat_tls_client_host_ip(host);
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    /* RFC 6125 §6.4.4: the CN is not a name to check once there are SANs; browsers never look
     * at it, and neither does moat (a certificate without SANs fails here as it would there). */
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                           X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(p, host) : X509_VERIFY_PARAM_set1_host(p, host, 0);
    /* RFC 6066 §3: SNI carries host names only, never address literals. */
    if (ok == 1 && !ip) {
        ok = SSL_set_tlsext_host_name(ssl, host);
    }
    if (ok != 1) {
        SSL_free(ssl);
        MOAT_FAIL_SSL(err, MOAT_E_USAGE, "cannot check the certificate against \"%s\"", host);
    }
    *out = ssl;
    return MOAT_RC_OK;
}
