/*
 * lineage.h: one certificate's life in the store, from its first order through every renewal
 * (certbot's word: a lineage), for a set of names and one key kind.
 *
 * Store keys, under acme/certs/<first name as a key part>/:
 *   <kind>.pem         the chain then its private key, secret: one file, so the certificate
 *                      and its key are replaced together by one atomic write
 *   <kind>.next.key    the key of the order in flight (secret): made and stored before the
 *                      order, so a crash after finalize still has the key the CA signed
 *   <kind>.order.json  the order in flight ({"url", "directory", "names"}): resumed, not
 *                      repeated, after a crash
 *   <kind>.status.json what `moat acme status` shows: names, CA, validity, next renewal
 *                      (and the CA's ARI window when it has one), the last error and how
 *                      many attempts in a row failed
 * <kind> is "ecdsa" (P-256) or "rsa" (RSA 2048).
 */
#ifndef MOAT_ACME_LINEAGE_H
#define MOAT_ACME_LINEAGE_H

#include "acme/order.h"
#include "state/store.h"

#include <stdatomic.h>
#include <time.h>

#include <openssl/x509.h>

enum moat_acme_kind {
    MOAT_ACME_ECDSA = 0,
    MOAT_ACME_RSA,
    MOAT_ACME_KIND_COUNT /* keep last */
};

const char *moat_acme_kind_name(enum moat_acme_kind k);
/* "ecdsa"/"p256"/"ec" or "rsa"/"rsa2048"; -1 for anything else. */
int moat_acme_kind_parse(const char *s);

/* "acme/certs/<part>" for a lineage whose first name is `name`; NULL when too long. */
char *moat_acme_lineage_prefix(const char *name, char *out, size_t outlen);

struct moat_acme_cert_req {
    const char *const *names; /* the first one names the lineage */
    size_t nnames;
    enum moat_acme_kind kind;
    struct moat_acme_solver *const *solvers;
    size_t nsolvers;
    const char *preferred_chain;
    const char *profile;
    unsigned deadline_s;
    const atomic_int *cancel;
    const struct moat_acme_preflight *preflight; /* NULL: no checks before a new order */
    /* The notAfter of the installed certificate the caller saw when it decided to order (0:
     * none; NULL: order whatever is installed, as `moat acme renew` does). Another moat may
     * install one between that look and the lock; a different one found under the lock is
     * that, and nothing is ordered. */
    const time_t *seen_not_after;
};

/*
 * Order (or resume) the lineage's certificate at a's CA and install it in the store. The
 * lineage is locked for the whole order: MOAT_E_AGAIN when another moat is ordering it, or
 * installed a certificate since the caller looked (seen_not_after). The
 * outcome, success or the error, is recorded in its status. When the lineage has a certificate
 * installed and the CA has ARI (RFC 9773), the order names it as the one it replaces.
 */
MOAT_MUST_USE moat_rc moat_acme_obtain(struct moat_store *st, struct moat_acme *a,
                                       const struct moat_acme_cert_req *q, struct moat_err *err);

/* Record a failed attempt that never reached moat_acme_obtain (the CA or the account could not
 * be reached), so `moat acme status` shows it like any other failure. */
void moat_acme_status_failed(struct moat_store *st, const struct moat_acme_cert_req *q,
                             const char *directory, const char *error);

/* The installed certificate of a lineage: chain (leaf first) and key (the caller frees:
 * sk_X509_pop_free(chain, X509_free) and EVP_PKEY_free). MOAT_E_NOTFOUND when there is none. */
MOAT_MUST_USE moat_rc moat_acme_installed(struct moat_store *st, const char *name,
                                          enum moat_acme_kind kind, STACK_OF(X509) * *chain,
                                          EVP_PKEY **key, struct moat_err *err);

/* When a certificate valid [not_before, not_after] is due for renewal: a third of its life
 * left, rounded down to the hour for long lives (hour granularity; under 3 hours, a third). */
time_t moat_acme_renew_at(time_t not_before, time_t not_after);

/* Every lineage's status in the store, as a JSON array of the status objects (each with its
 * "names" and "kind"), in store order. *out is the caller's (json_decref). */
MOAT_MUST_USE moat_rc moat_acme_statuses(struct moat_store *st, json_t **out, struct moat_err *err);

/* Record in the status the CA's ARI window [start, end] for the installed certificate (the one
 * valid until not_after) and the renewal time picked in it, for `moat acme status`; a status
 * that is of another certificate is left as it is. Best effort: failures are not reported. */
void moat_acme_status_ari(struct moat_store *st, const char *name, enum moat_acme_kind kind,
                          time_t not_after, time_t start, time_t end, time_t renew_at);

/* The status of a lineage as stored (json_decref), or NULL when there is none. */
json_t *moat_acme_status_get(struct moat_store *st, const char *name, enum moat_acme_kind kind);

#endif
