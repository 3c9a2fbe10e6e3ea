/*
 * crl.h: revocation: the CA's index of the certificates it issued and revoked, and the
 * certificate revocation lists (CRLs, RFC 5280 §5) made from it.
 *
 * The index is `index.txt` in the CA folder, one line per certificate, tab-separated:
 *
 *     V|R  serial-hex  not-after  revoked-at|-  reason|-  issuer-key-id-hex  subject
 *
 * (times as YYYYMMDDHHMMSSZ). `moat cert issue` and `moat ca sign` add a V line; `moat ca
 * revoke` turns it into R (or adds an R line for a certificate issued before the index
 * existed). The file is rewritten whole and atomically under the CA folder's lock, so a reader
 * never sees half of it and two writers never lose each other's lines. `crlnumber` holds the
 * last CRL number issued (RFC 5280 §5.2.3 asks for a monotonically increasing one).
 */
#ifndef MOAT_PKI_CRL_H
#define MOAT_PKI_CRL_H

#include "core/err.h"
#include "pki/ca.h"

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#define MOAT_CRL_INDEX_FILE "index.txt"
#define MOAT_CRL_NUMBER_FILE "crlnumber"
#define MOAT_CRL_DEFAULT_DAYS 7

/* RFC 5280 §5.3.1 CRLReason values moat lets people give (certificateHold is left out: a hold
 * that can be lifted is not something a small CA should offer). */
enum moat_crl_reason {
    MOAT_CRL_UNSPECIFIED = 0,
    MOAT_CRL_KEY_COMPROMISE = 1,
    MOAT_CRL_CA_COMPROMISE = 2,
    MOAT_CRL_AFFILIATION_CHANGED = 3,
    MOAT_CRL_SUPERSEDED = 4,
    MOAT_CRL_CESSATION = 5,
    MOAT_CRL_REASON_COUNT /* keep last */
};

/* "unspecified", "key-compromise", "ca-compromise", "affiliation-changed", "superseded",
 * "cessation-of-operation" (also the RFC's camelCase spellings). MOAT_E_USAGE with the list
 * otherwise. */
MOAT_MUST_USE moat_rc moat_crl_reason_parse(const char *s, enum moat_crl_reason *out,
                                            struct moat_err *err);
const char *moat_crl_reason_name(enum moat_crl_reason r);

/* Add `cert` (issued by this CA) to the index of `ca` as valid. */
MOAT_MUST_USE moat_rc moat_crl_record(const struct moat_ca *ca, X509 *cert, struct moat_err *err);

/*
 * Mark `cert` revoked at `now` (0: the clock) for `reason`. The certificate must have been
 * signed by this CA's intermediate or its root (an intermediate being revoked); anything else
 * is MOAT_E_USAGE, as is a certificate revoked already (saying when). *issuer_is_root (may be
 * NULL) says whose CRL will list it.
 */
MOAT_MUST_USE moat_rc moat_crl_revoke(const struct moat_ca *ca, X509 *cert,
                                      enum moat_crl_reason reason, time_t now, int *issuer_is_root,
                                      struct moat_err *err);

/* One entry of the index, as read. */
struct moat_crl_entry {
    int revoked;
    char serial[80]; /* upper-case hex */
    time_t not_after;
    time_t revoked_at; /* 0 when valid */
    enum moat_crl_reason reason;
    char issuer_kid[80]; /* hex key identifier of the issuing CA */
    char subject[256];
};

/* Read the index of the CA in `ca_dir` (missing: no entries). *out is an array of *n entries
 * to free(); a malformed line is MOAT_E_CONFIG with "index.txt:line". */
MOAT_MUST_USE moat_rc moat_crl_index_read(const char *ca_dir, struct moat_crl_entry **out,
                                          size_t *n, struct moat_err *err);

/*
 * A CRL signed by the intermediate (`root` 0) or by the root (`root` 1, root.key must be in
 * the folder), listing every certificate of the index that this CA certificate revoked: v2,
 * thisUpdate now, nextUpdate now + `days` (1..365), authorityKeyIdentifier, the next CRL
 * number, reason codes (none for "unspecified", RFC 5280 §5.3.1). *out is owned by the caller.
 */
MOAT_MUST_USE moat_rc moat_crl_make(const struct moat_ca *ca, int root, int days, time_t now,
                                    X509_CRL **out, struct moat_err *err);

/*
 * How many certificates that `issuer` signed are revoked in the index of the CA in `ca_dir` but
 * missing from `crl` (revocations made after the CRL was written)? Into *missing. A missing
 * index counts none; a malformed one fails as moat_crl_index_read does.
 */
MOAT_MUST_USE moat_rc moat_crl_unpublished(const char *ca_dir, X509 *issuer, X509_CRL *crl,
                                           size_t *missing, struct moat_err *err);

/* Write `n` CRLs as PEM, in order, to `path` (0644, atomically replaced). */
MOAT_MUST_USE moat_rc moat_crl_write(const char *path, X509_CRL *const *crls, size_t n,
                                     struct moat_err *err);

/*
 * Every CRL of a PEM file (or one DER CRL), for a verifier. Failures name the file: missing,
 * unreadable, no CRL in it (MOAT_E_CERT, saying what it holds instead when it is a
 * certificate), damaged. *out is owned by the caller (sk_X509_CRL_pop_free with X509_CRL_free).
 */
/* clang-format off */
MOAT_MUST_USE moat_rc moat_crl_load(const char *path, STACK_OF(X509_CRL) **out,
                                    struct moat_err *err);
/* clang-format on */

#endif
