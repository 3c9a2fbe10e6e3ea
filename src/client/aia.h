/*
 * aia.h: the pure half of the client's issuer lookup: the caIssuers URLs a certificate names in
 * its Authority Information Access extension (RFC 5280 §4.2.2.1), and the reading of what such
 * a URL serves (one DER certificate, a PKCS#7 "certs-only" bundle, or either in PEM).
 *
 * No I/O here: issuer.c fetches the URL over HTTP and calls the parser on the bytes, which come
 * from whoever runs that URL and are treated as hostile (tests/fuzz/fuzz_client_aia.c).
 */
#ifndef MOAT_CLIENT_AIA_H
#define MOAT_CLIENT_AIA_H

#include "core/err.h"

#include <stddef.h>

#include <openssl/x509.h>

#define MOAT_CLIENT_AIA_URL_MAX 512 /* bytes of one URL, NUL included */
#define MOAT_CLIENT_AIA_MAX_URLS 4  /* caIssuers entries looked at per certificate */
#define MOAT_CLIENT_AIA_MAX_CERTS 8 /* certificates taken from one answer */

/*
 * Copy the caIssuers URIs of x, in the certificate's order, into urls (at most max, each
 * NUL-terminated). Entries of other access methods or name types, URIs longer than
 * MOAT_CLIENT_AIA_URL_MAX - 1 and URIs holding bytes outside printable ASCII (no spaces:
 * RFC 3986 has none) are skipped. Returns how many were copied; 0 for a certificate without
 * the extension or with one that does not decode. Leaves OpenSSL's error queue empty.
 */
size_t moat_client_aia_urls(X509 *x, char (*urls)[MOAT_CLIENT_AIA_URL_MAX], size_t max);

/*
 * Read the certificates an AIA URL served: a DER certificate, a DER PKCS#7 SignedData that
 * carries certificates (RFC 5280 §4.2.2.1 "certs-only"), or PEM ("CERTIFICATE" blocks, or one
 * "PKCS7" block). DER must fill the input exactly; at most MOAT_CLIENT_AIA_MAX_CERTS are taken.
 * On success *out is a new stack with at least one certificate (owned by the caller: free with
 * sk_X509_pop_free(..., X509_free)) and *form names what was read ("DER", "PKCS#7", "PEM",
 * "PEM PKCS#7"; a static string). Refuses (MOAT_E_PEER, with the reason in err) empty input,
 * anything else, and a bundle with no certificate; *out is then NULL. Pure: no I/O, and
 * OpenSSL's error queue is left empty either way.
 */
MOAT_MUST_USE moat_rc moat_client_aia_parse(const unsigned char *p, size_t n, STACK_OF(X509) * *out,
                                            const char **form, struct moat_err *err);

#endif
