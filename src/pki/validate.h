/*
 * validate.h: full path validation of a certificate, offline, with every problem named.
 *
 * `moat verify` builds the path from a certificate through the intermediates it was given to a
 * trusted root, as a TLS client would (RFC 5280 §6), and reports each problem it meets as a
 * kind from verify.h plus the specifics (which certificate, which dates, which names). Unlike a
 * TLS handshake it does not stop at the first problem: a certificate that is both expired and
 * for the wrong name gets both said.
 */
#ifndef MOAT_PKI_VALIDATE_H
#define MOAT_PKI_VALIDATE_H

#include "core/err.h"
#include "pki/verify.h"

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

/* What to check a certificate against. All pointers borrowed. */
/* clang-format off */
struct moat_validate_opts {
    X509_STORE *trust;         /* the trusted roots (see moat_trust_store_new) */
    STACK_OF(X509) *untrusted; /* intermediates offered (may be NULL) */
    STACK_OF(X509_CRL) *crls;  /* revocation lists (may be NULL: revocation not checked) */
    const char *host;          /* DNS name or IP address the leaf must cover (NULL: none) */
    int client;                /* check for a TLS client certificate instead of a server */
    time_t now;                /* the time to check at; 0: the clock */
};
/* clang-format on */

#define MOAT_VALIDATE_MAX_PROBLEMS 8

struct moat_validate_problem {
    enum moat_verify_kind kind;
    int x509_err; /* the X509_V_ERR_* it came from */
    int depth;    /* the certificate it is about: 0 the leaf, 1 its issuer... */
    char detail[512];
};

/* clang-format off */
struct moat_validate_result {
    enum moat_verify_kind kind; /* the first problem's kind; MOAT_V_OK when valid */
    STACK_OF(X509) *path;       /* owned: the path built, leaf first (up to the root if found) */
    struct moat_validate_problem problems[MOAT_VALIDATE_MAX_PROBLEMS];
    size_t nproblems;           /* problems past the maximum are dropped */
};
/* clang-format on */

/*
 * Validate `leaf` with `o`: chain building, CA flags and path lengths, key usage for the
 * purpose, the name, keys and signatures strong enough for OpenSSL security level 2 (RSA/DSA
 * 2048+, no MD5 or SHA-1 signatures: MOAT_V_WEAK_KEY / MOAT_V_WEAK_SIGNATURE), revocation when
 * CRLs are given (a CRL is needed for the leaf's issuer; the other links are checked when a CRL
 * for them is given), and validity dates. Returns MOAT_OK when the check ran, whatever it found
 * (see r->kind); an error only when it could not run. `r` is cleared with
 * moat_validate_result_clear.
 */
MOAT_MUST_USE moat_rc moat_validate(X509 *leaf, const struct moat_validate_opts *o,
                                    struct moat_validate_result *r, struct moat_err *err);

void moat_validate_result_clear(struct moat_validate_result *r);

#endif
