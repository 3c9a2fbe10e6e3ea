/*
 * crlurl.h: where a CA's revocation lists are published, and the pointer to them that the CA
 * writes into every certificate it issues (crlDistributionPoints, RFC 5280 §4.2.1.13).
 *
 * A CA folder remembers two addresses in its `settings` file (see below): `crl_url`, where
 * the CRL of its intermediate is published (the list of revoked leaves, `moat ca crl` writes
 * it to crl.pem), which every leaf the intermediate signs points at; and `root_crl_url`, where
 * the root's CRL is published (revoked intermediates, root-crl.pem), which every intermediate
 * the root signs points at. Each certificate points at the CRL of the CA that signed it,
 * because that is the CRL that can list it. The root itself points nowhere: a trust anchor is
 * never checked against a list it would sign itself.
 *
 * The settings file is text, one `key value` per line, `#` starts a comment:
 *
 *     crl_url http://ca.example.com/crl/intermediate.crl
 *     root_crl_url http://ca.example.com/crl/root.crl
 *
 * Only http:// URLs are accepted: RFC 5280 §4.2.1.13 describes http and ldap, clients fetch
 * CRLs over plain HTTP (a CRL is signed, so it needs no TLS), and fetching one over HTTPS would
 * need the revocation status of that server's own certificate first.
 */
#ifndef MOAT_PKI_CRLURL_H
#define MOAT_PKI_CRLURL_H

#include "core/err.h"

#include <stddef.h>

#include <openssl/x509.h>

#define MOAT_CRLURL_FILE "settings"
#define MOAT_CRLURL_MAX 1000 /* bytes of one URL; far above any real one */

/*
 * Is `url` a CRL address moat writes into certificates? http:// (any case), a host (a DNS
 * name, an IPv4 address or an IPv6 address in brackets), an optional port 1..65535, and a
 * path of at least one character after the first '/', made of RFC 3986 path characters
 * (letters, digits, -._~!$&'()*+,;=:@/ and %XX). Refused, each with the fix: https:// and
 * other schemes, no path, user:password@, a query or fragment, spaces and other characters
 * that must be percent-encoded, more than MOAT_CRLURL_MAX bytes. MOAT_E_USAGE.
 */
MOAT_MUST_USE moat_rc moat_crlurl_check(const char *url, struct moat_err *err);

/* The path of a checked URL ("/crl/ca.crl"): a pointer into `url`. */
const char *moat_crlurl_path(const char *url);

/* The settings a CA folder keeps. Both strings owned (NULL: not set). */
struct moat_crlurl_settings {
    char *crl_url;
    char *root_crl_url;
};

/* Free both strings and set them to NULL. */
void moat_crlurl_clear(struct moat_crlurl_settings *s);

/*
 * Parse settings text of `len` bytes (`name` stands for the file in messages). A line with an
 * unknown key, a key given twice, a missing or extra value, or a URL moat_crlurl_check refuses
 * fails with MOAT_E_CONFIG and err->where "name:line". On failure *out is left empty.
 */
MOAT_MUST_USE moat_rc moat_crlurl_parse(const char *text, size_t len, const char *name,
                                        struct moat_crlurl_settings *out, struct moat_err *err);

/* Load `<ca_dir>/settings` into *out (cleared first); a missing file gives empty settings. */
MOAT_MUST_USE moat_rc moat_crlurl_load(const char *ca_dir, struct moat_crlurl_settings *out,
                                       struct moat_err *err);

/* Write `<ca_dir>/settings` (0644, atomically). The caller holds the folder's lock. */
MOAT_MUST_USE moat_rc moat_crlurl_save(const char *ca_dir, const struct moat_crlurl_settings *s,
                                       struct moat_err *err);

/* Add a non-critical crlDistributionPoints extension (RFC 5280 §4.2.1.13 says it SHOULD be
 * non-critical) with one distribution point whose fullName is the URI `url`. 0 on failure. */
int moat_crlurl_add_ext(X509 *x, const char *url);

/* The first fullName URI of x's crlDistributionPoints into buf (NUL-terminated, cut to fit);
 * returns 1, or 0 with buf "" when there is none. */
int moat_crlurl_of(X509 *x, char *buf, size_t n);

#endif
