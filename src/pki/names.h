/*
 * names.h: the names a certificate is for, as people type them on the command line.
 *
 * One place decides what "example.com", "*.example.com", "10.0.0.1", "[::1]", "ada@example.com"
 * and "spiffe://example.org/web" are, whether they are well formed, and how each becomes a
 * subjectAltName entry (RFC 5280 §4.2.1.6): the CA, the CSR maker, the signing policy and the
 * name-constraint check all read names through it, so they never disagree.
 */
#ifndef MOAT_PKI_NAMES_H
#define MOAT_PKI_NAMES_H

#include "core/err.h"

#include <stddef.h>

#include <openssl/x509v3.h>

enum moat_name_kind {
    MOAT_NAME_DNS = 0, /* a host name, possibly "*.wildcard" (dNSName) */
    MOAT_NAME_IP,      /* IPv4 or IPv6, "[v6]" accepted (iPAddress) */
    MOAT_NAME_EMAIL,   /* local@domain (rfc822Name) */
    MOAT_NAME_URI,     /* scheme://... or urn:... (uniformResourceIdentifier) */
    MOAT_NAME_INVALID,
    MOAT_NAME_KIND_COUNT /* keep last */
};

/* The most names one certificate may carry (browsers cope with far more; people rarely need). */
#define MOAT_NAMES_MAX 100

/*
 * What `name` is. DNS names follow RFC 1035 §2.3.1 (letters, digits, hyphens; labels 1-63;
 * total <= 253; a trailing dot is not accepted), with an optional "*." leftmost label that is
 * not directly above a top-level domain (RFC 6125 §6.4.3), and a last label that is not all
 * digits (RFC 3696 §2). E-mail: a local part of printable ASCII without spaces, '@', a DNS name.
 * URI: "scheme://" or "urn:" followed by printable ASCII without spaces (RFC 3986). Anything
 * else, NULL or longer than 1024 bytes is MOAT_NAME_INVALID.
 */
enum moat_name_kind moat_name_kind_of(const char *name);

/* "DNS name", "IP address", "e-mail address", "URI" or "invalid name". */
const char *moat_name_kind_word(enum moat_name_kind k);

/*
 * Check 1 to MOAT_NAMES_MAX names for a certificate: each must be valid, and a server
 * certificate (`client` 0) takes only DNS names and IP addresses (TLS clients match nothing
 * else, RFC 6125 §6). MOAT_E_USAGE naming the bad name otherwise.
 */
MOAT_MUST_USE moat_rc moat_names_check(const char *const *names, size_t n, int client,
                                       struct moat_err *err);

/* The subjectAltName entries for checked names (see moat_names_check), or NULL when out of
 * memory. Owned by the caller (GENERAL_NAMES_free). */
GENERAL_NAMES *moat_names_to_general(const char *const *names, size_t n);

/*
 * The names of a subjectAltName extension, as text in the forms moat_name_kind_of accepts
 * (IPv6 without brackets), in order. Entries of other types (directory names, otherName...) are
 * skipped and counted in *skipped (may be NULL). *out is an array of *n malloc'ed strings,
 * freed with moat_names_free; a NULL `gens` gives an empty array.
 */
MOAT_MUST_USE moat_rc moat_names_from_general(const GENERAL_NAMES *gens, char ***out, size_t *n,
                                              size_t *skipped, struct moat_err *err);

/* Free an array made by moat_names_from_general. NULL does nothing. */
void moat_names_free(char **names, size_t n);

/* One general name in words for people: "DNS:example.com", "IP:10.0.0.1", "email:a@b",
 * "URI:spiffe://x", "dirName:CN = x", ... written into buf (n bytes); returns buf. */
const char *moat_name_general_str(const GENERAL_NAME *gn, char *buf, size_t n);

#endif
