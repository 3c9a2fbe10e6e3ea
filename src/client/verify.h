/*
 * verify.h: the client's strict certificate verification and its explanation.
 *
 * Strict means: a chain to a trusted root, every certificate within its validity, the name
 * asked for in the leaf's subjectAltName (DNS or IP, never the CN: RFC 6125 §6.4.4), the leaf
 * allowed for TLS servers, and, with --crl, not revoked. Trust is the system store plus moat's
 * local CA root when it exists, plus --cafile. A verify callback records the first failure, the
 * chain as the server sent it and the path built so far, so the trace can show both and the
 * failure can be named with a kind from pki/verify.h.
 */
#ifndef MOAT_CLIENT_VERIFY_H
#define MOAT_CLIENT_VERIFY_H

#include "client/get.h"
#include "core/err.h"
#include "tls/client.h"

#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* What is trusted, loaded once per run. All fields owned. */
/* clang-format off */
struct moat_client_trust {
    X509_STORE *store;
    STACK_OF(X509) *local_roots;  /* moat's local CA root(s), to name where a root came from */
    STACK_OF(X509) *cafile_roots; /* the --cafile certificates */
    char local_path[512];         /* "" when moat has no local CA here */
    char cafile[512];
    char desc[512];               /* for people: "the system store, moat's local CA (...)" */
};
/* clang-format on */

/* The verify callback's record for one connection. All fields owned. */
/* clang-format off */
struct moat_client_vrec {
    int insecure;          /* record failures but let the handshake go on */
    int err;               /* the first X509_V_ERR_*; 0 when none */
    int depth;             /* the depth that error is about */
    X509 *err_cert;        /* the certificate that error is about */
    STACK_OF(X509) *sent;  /* the chain as the server sent it, leaf first */
    STACK_OF(X509) *built; /* the path built when the first error happened */
};
/* clang-format on */

/*
 * Build the trust of `o`: the system store (unless o->no_default_trust), moat's local CA root
 * (o->state_dir, else $MOAT_STATE, else ~/.local/share/moat; ca/root.pem, when it exists and
 * unless o->no_default_trust), --cafile, and --crl (which turns on revocation checking for the
 * leaf). Refuses unreadable or empty files, naming them (MOAT_E_NOTFOUND / MOAT_E_IO /
 * MOAT_E_CERT).
 */
MOAT_MUST_USE moat_rc moat_client_trust_load(const struct moat_client_opts *o,
                                             struct moat_client_trust *t, struct moat_err *err);
void moat_client_trust_clear(struct moat_client_trust *t);

/* Make client contexts built from `o` (tls/client.h) verify servers with `t` and the recording
 * callback: fills o->store (borrowed from t; the context takes its own reference) and
 * o->verify_cb. */
MOAT_MUST_USE moat_rc moat_client_verify_opts(struct moat_client_trust *t,
                                              struct moat_tls_client_opts *o, struct moat_err *err);
/* Per connection (made by moat_tls_client_ssl_new, which sets the name or address to check):
 * record into `v`, which must outlive the SSL's handshake. */
MOAT_MUST_USE moat_rc moat_client_verify_ssl(SSL *ssl, struct moat_client_vrec *v,
                                             struct moat_err *err);
void moat_client_vrec_clear(struct moat_client_vrec *v);

/*
 * After the handshake, successful or not: fill the hop's chain as sent, the verified path (or
 * the partial one), the root's source, verify_code/verify_depth/vkind, and, when the
 * certificate failed, h->detail with the specifics (the names the certificate has, its dates,
 * its issuer). Returns 1 when verification failed.
 */
int moat_client_verify_collect(SSL *ssl, const struct moat_client_vrec *v,
                               const struct moat_client_trust *t, time_t now,
                               struct moat_client_hop *h);

/* Where the root `root` of a path came from, for people ("--cafile FILE", "moat's local CA
 * (PATH)", or "the system store" when `trusted` says it was trusted and it is neither); ""
 * when it is none of these. */
void moat_client_trust_source(const struct moat_client_trust *t, X509 *root, int trusted, char *out,
                              size_t outlen);

/* Describe one certificate for people (subject, issuer, dates, names, key). */
void moat_client_cert_describe(X509 *x, time_t now, struct moat_client_cert *out);

#endif
