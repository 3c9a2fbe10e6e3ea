/*
 * ari.h: ACME Renewal Information (RFC 9773, "ARI"): the CA says when it wants a certificate
 * renewed (a window), and a new order names the certificate it replaces.
 *
 * A certificate is named by its ARI certificate identifier (§4.1); its window is read with a
 * plain GET of <renewalInfo>/<certID> (§4.2, no account needed), and the renewal time is a
 * random moment in that window (§4.2, step 2), so that a CA's many subscribers do not all come
 * back at once. The CA's Retry-After says when to ask again (§4.3).
 */
#ifndef MOAT_ACME_ARI_H
#define MOAT_ACME_ARI_H

#include "acme/client.h"

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

/* Enough for the identifier of any certificate moat names (a 64-byte key identifier and a
 * 64-byte serial number); longer ones are refused. */
#define MOAT_ACME_ARI_ID_MAX 192

/* When to ask again (seconds): the CA's Retry-After held to [MIN, MAX]; DEFAULT when it sent
 * none or one that does not parse (RFC 9773 §4.3.3 counts that as a long-term error). */
#define MOAT_ACME_ARI_RETRY_MIN_S 3600
#define MOAT_ACME_ARI_RETRY_MAX_S 86400
#define MOAT_ACME_ARI_RETRY_DEFAULT_S (6 * 3600)

/*
 * The ARI certificate identifier of `leaf` (RFC 9773 §4.1) into out:
 * base64url(keyIdentifier of its Authority Key Identifier) "." base64url(the DER content
 * octets of its serial number, a leading 0x00 included), without padding. MOAT_E_CERT for a
 * certificate without an AKI keyIdentifier (ARI cannot name it); MOAT_E_LIMIT when out is too
 * small (MOAT_ACME_ARI_ID_MAX is always enough for what moat accepts). out is "" on failure.
 */
MOAT_MUST_USE moat_rc moat_acme_ari_cert_id(X509 *leaf, char *out, size_t outlen,
                                            struct moat_err *err);

/*
 * Read the CA's suggested renewal window for `leaf` (RFC 9773 §4.2): GET
 * <a->dir.renewalInfo>/<certID>, unauthenticated (a needs no account). On success
 * *window_start < *window_end. *retry_after_s is set in every case once the CA answered (the
 * CA's Retry-After held to [MOAT_ACME_ARI_RETRY_MIN_S, MOAT_ACME_ARI_RETRY_MAX_S], or
 * MOAT_ACME_ARI_RETRY_DEFAULT_S), and is the default otherwise: it is when to ask again.
 * An explanationURL from the CA is said through a->say.
 *
 * Fails with MOAT_E_NOTFOUND when the CA offers no renewalInfo (nothing to ask), MOAT_E_CERT
 * when the certificate cannot be named, MOAT_E_PEER when the CA could not be reached, refused
 * (a 404: it does not know the certificate) or answered something that is not a window: times
 * that are not RFC 3339, or an end that is not after the start (§4.2 makes that invalid).
 */
MOAT_MUST_USE moat_rc moat_acme_ari_fetch(struct moat_acme *a, X509 *leaf, time_t *window_start,
                                          time_t *window_end, long *retry_after_s,
                                          struct moat_err *err);

/*
 * When to renew within [start, end]: a moment drawn uniformly at random (getrandom(2)), or
 * `now` when that moment, or the whole window, is already past (RFC 9773 §4.2, step 3: renew
 * at once). Never earlier than `now`, never later than `end` unless the window is past.
 */
time_t moat_acme_ari_pick(time_t start, time_t end, time_t now);

/*
 * An RFC 3339 date-time (§5.6) of exactly len bytes as a time: "2025-06-01T12:00:00Z",
 * "...T12:00:00.123+02:00"; 'T' and 'Z' in either case, any number of fraction digits (dropped,
 * not rounded), the offset applied, a leap second (":60", only at 23:59 UTC) taken as the next
 * second. Refused (MOAT_E_PEER, no words: the caller says what the time was for): a missing or
 * extra part, a day the month does not have, hours past 23 or minutes past 59 (in the time or
 * the offset), a space for 'T', spaces anywhere, a NUL inside.
 */
MOAT_MUST_USE moat_rc moat_acme_ari_parse_time(const char *s, size_t len, time_t *out);

#endif
