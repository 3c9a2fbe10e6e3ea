/*
 * clientauth.h: mutual TLS on the server side: which clients a site asks for a certificate, which
 * CAs (and CRLs) it trusts for them, which identities it lets in, and the verified identity of a
 * connection in words for logs, 403 pages and upstream headers.
 *
 * `require` refuses at the handshake with a proper alert (unknown_ca, certificate_expired,
 * certificate_revoked, handshake_failure for an identity not on the allow-list,
 * certificate_required in TLS 1.3 when none is sent). `optional` asks for a certificate, lets the
 * handshake finish whatever the client sends, and leaves the verdict for the HTTP layer (path rules
 * answer 403).
 */
#ifndef MOAT_TLS_CLIENTAUTH_H
#define MOAT_TLS_CLIENTAUTH_H

#include "core/err.h"

#include <openssl/ssl.h>
#include <stddef.h>

enum moat_client_auth_mode {
    MOAT_CLIENT_AUTH_OFF = 0,
    MOAT_CLIENT_AUTH_OPTIONAL,
    MOAT_CLIENT_AUTH_REQUIRE,
};

/* Immutable once built; shared by a site's SSL_CTX (ex_data) and the site. */
struct moat_tls_client_auth {
    enum moat_client_auth_mode mode;
    X509_STORE *store;              /* owned: the client CAs (+ CRLs, checked for every link) */
    STACK_OF(X509_NAME) * ca_names; /* owned: sent in CertificateRequest */
    int depth;                      /* most intermediates between the client and a CA */
    char **allow;                   /* owned copies: site-wide allow-list (empty = any) */
    size_t nallow;
    unsigned char crl_digest[32]; /* SHA-256 over the CRLs' DER: part of the session ID
                                     context, so a session from before a CRL reload cannot
                                     resume (a revoked client would walk back in) */
};

/* Build from CA files (PEM bundles), CRL files (PEM or DER) and patterns. Each unreadable or
 * empty file fails with its name; a CRL that is not signed by one of the CAs is refused (it
 * would silently revoke nothing). */
MOAT_MUST_USE moat_rc moat_tls_client_auth_new(enum moat_client_auth_mode mode,
                                               const char *const *ca_files, size_t nca,
                                               const char *const *crl_files, size_t ncrl, int depth,
                                               const char *const *allow, size_t nallow,
                                               struct moat_tls_client_auth **out,
                                               struct moat_err *err);
void moat_tls_client_auth_free(struct moat_tls_client_auth *a);
/* Ask for client certificates on ctx (the ctx keeps a borrowed pointer: free `a` after ctx). */
MOAT_MUST_USE moat_rc moat_tls_client_auth_install(const struct moat_tls_client_auth *a,
                                                   SSL_CTX *ctx, struct moat_err *err);

/* A client's identity as the server saw it. Strings are empty when absent. */
struct moat_tls_identity {
    int present;       /* the client sent a certificate */
    int verified;      /* it chains to a client CA, is valid, not revoked */
    int verify_error;  /* X509_V_ERR_* when present && !verified */
    char subject[256]; /* RFC 2253 one line: "CN=alice,O=Example" */
    char issuer[256];
    char cn[128];
    char sans[512];       /* "DNS:a.example, email:alice@example.com, URI:spiffe://x/y" */
    char serial[80];      /* hex */
    char fingerprint[96]; /* SHA-256, hex with colons */
};

/* Fill `id` from a connection whose handshake finished. */
void moat_tls_identity_of(SSL *ssl, struct moat_tls_identity *id);
/* Whether the peer certificate of ssl matches one of the patterns (see clientauth.c for the
 * pattern language). n == 0 matches any certificate. */
int moat_tls_identity_allowed(SSL *ssl, const char *const *patterns, size_t n);
/* After a handshake of `ssl` failed on this thread: why its client certificate was refused,
 * with the subject (OpenSSL no longer holds the certificate). 0 when it was not refused. */
int moat_tls_client_refusal(const SSL *ssl, char *out, size_t outlen);
/* One line for logs and 403 pages: why a client is not let in ("no client certificate",
 * "certificate expired", "issuer not trusted", "revoked", "CN=x is not allowed"). */
const char *moat_tls_identity_refusal(const struct moat_tls_identity *id, int allowed, char *out,
                                      size_t outlen);

#endif
